//! A node's progress, built up from the spans of its heartbeats (see
//! [`ProgressSpan`](swarmcast_proto::ProgressSpan) for the rule).
//!
//! A heartbeat carries only the progress items that changed since the point of the node's
//! stream of changes that the bootstrap last acknowledged, so a broadcast that stopped changing
//! (complete, failed) costs nothing per beat. The registry keeps the merged whole set in the
//! node's [`NodeRecord`], with the change number it reflects
//! ([`NodeRecord::progress_seq`]); that number travels with the set through anti-entropy and
//! snapshots, so whichever bootstrap a node talks to next knows where it stands.

use swarmcast_proto::{BroadcastId, NodeRecord, Progress, ProgressSpan};

/// The progress part of one heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// Items: with a span, those that changed in it; without, the whole set.
    pub items: Vec<Progress>,
    /// Where the items sit in the node's stream; `None`: a node that predates spans.
    pub span: Option<ProgressSpan>,
    /// With a span: broadcasts forgotten in it.
    pub removed: Vec<BroadcastId>,
}

/// The progress a bootstrap holds for a node after a heartbeat: the items (sorted by broadcast
/// id) and the change number they reflect. `held` is what the registry holds for the node
/// (`None`: nothing, or an entry of another incarnation).
///
/// A span applies iff `since <= held seq < upto` (or `since == 0`, which replaces, and then
/// only if `upto` is above the held number); otherwise the held progress stays as it was, and
/// the node, told the held number, sends what follows it. Without a span (an older node) the
/// items replace the set and the number is 0.
pub fn merge_progress(held: Option<&NodeRecord>, update: ProgressUpdate) -> (Vec<Progress>, u64) {
    let held_seq = held.map_or(0, |r| r.progress_seq);
    let held_items = || held.map(|r| r.progress.clone()).unwrap_or_default();
    let Some(span) = update.span else {
        let mut items = update.items;
        sort_dedup(&mut items);
        return (items, 0);
    };
    let applies = span.upto > held_seq && (span.since == 0 || span.since <= held_seq);
    if !applies {
        return (held_items(), held_seq);
    }
    let mut items = if span.since == 0 {
        Vec::new()
    } else {
        let mut items = held_items();
        // Held sets from older nodes need not be sorted.
        sort_dedup(&mut items);
        items
    };
    for id in &update.removed {
        if let Ok(i) = items.binary_search_by(|p| p.broadcast.cmp(id)) {
            items.remove(i);
        }
    }
    let mut changed = update.items;
    sort_dedup(&mut changed);
    if changed.len() > items.len() / 8 {
        // Many changes (a page of a whole set): one merge of two sorted lists.
        let mut out = Vec::with_capacity(items.len() + changed.len());
        let mut old = items.into_iter().peekable();
        for p in changed {
            while let Some(o) = old.next_if(|o| o.broadcast < p.broadcast) {
                out.push(o);
            }
            old.next_if(|o| o.broadcast == p.broadcast);
            out.push(p);
        }
        out.extend(old);
        items = out;
    } else {
        for p in changed {
            match items.binary_search_by(|o| o.broadcast.cmp(&p.broadcast)) {
                Ok(i) => items[i] = p,
                Err(i) => items.insert(i, p),
            }
        }
    }
    (items, span.upto)
}

/// Sort by broadcast id; of two items of one broadcast keep the later.
fn sort_dedup(items: &mut Vec<Progress>) {
    if items.is_sorted_by(|a, b| a.broadcast < b.broadcast) {
        return;
    }
    // Stable, so that of equal ids the later one is last; keep it.
    items.sort_by_key(|p| p.broadcast);
    let mut out: Vec<Progress> = Vec::with_capacity(items.len());
    for p in items.drain(..) {
        match out.last_mut() {
            Some(last) if last.broadcast == p.broadcast => *last = p,
            _ => out.push(p),
        }
    }
    *items = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcast_proto::{NodeId, Role, Version};

    fn item(b: u8, held: u64) -> Progress {
        Progress {
            broadcast: BroadcastId([b; 32]),
            held,
            total: 10,
            complete: held == 10,
            failed: None,
        }
    }

    fn record(items: Vec<Progress>, seq: u64) -> NodeRecord {
        NodeRecord {
            id: NodeId([1; 32]),
            name: "n".into(),
            role: Role::Node,
            addrs: vec![],
            version: Version::new(1, 1),
            progress: items,
            progress_seq: seq,
            pull: false,
            groups: Vec::new(),
        }
    }

    fn update(since: u64, upto: u64, items: Vec<Progress>, removed: &[u8]) -> ProgressUpdate {
        ProgressUpdate {
            items,
            span: Some(ProgressSpan { since, upto }),
            removed: removed.iter().map(|&b| BroadcastId([b; 32])).collect(),
        }
    }

    #[track_caller]
    fn held(items: &[Progress]) -> Vec<(u8, u64)> {
        items.iter().map(|p| (p.broadcast.0[0], p.held)).collect()
    }

    #[test]
    fn a_span_from_the_held_point_applies_changes_and_removals() {
        let r = record(vec![item(1, 10), item(2, 3), item(3, 10)], 7);
        let (items, seq) = merge_progress(Some(&r), update(7, 9, vec![item(2, 5)], &[3]));
        assert_eq!(held(&items), [(1, 10), (2, 5)]);
        assert_eq!(seq, 9);
        // An item never seen before is inserted in order.
        let r = record(items, seq);
        let (items, _) = merge_progress(Some(&r), update(9, 10, vec![item(0, 1)], &[]));
        assert_eq!(held(&items), [(0, 1), (1, 10), (2, 5)]);
    }

    #[test]
    fn a_span_from_before_the_held_point_applies_too_it_repeats_what_is_held() {
        // The answer to 7..9 was lost; the node sends 7..11 with everything since 7.
        let r = record(vec![item(1, 10), item(2, 5)], 9);
        let (items, seq) =
            merge_progress(Some(&r), update(7, 11, vec![item(2, 6), item(4, 1)], &[]));
        assert_eq!(held(&items), [(1, 10), (2, 6), (4, 1)]);
        assert_eq!(seq, 11);
    }

    #[test]
    fn a_span_past_the_held_point_or_behind_it_is_ignored() {
        let r = record(vec![item(1, 10)], 5);
        // A gap: 6 and 7 are unknown here.
        let (items, seq) = merge_progress(Some(&r), update(7, 9, vec![item(2, 1)], &[1]));
        assert_eq!((held(&items), seq), (vec![(1, 10)], 5));
        // Stale: nothing past what is held.
        let (items, seq) = merge_progress(Some(&r), update(3, 5, vec![item(1, 2)], &[]));
        assert_eq!((held(&items), seq), (vec![(1, 10)], 5));
        // A stale first page must not wipe a newer set.
        let (items, seq) = merge_progress(Some(&r), update(0, 4, vec![], &[]));
        assert_eq!((held(&items), seq), (vec![(1, 10)], 5));
    }

    #[test]
    fn a_whole_set_replaces_and_its_pages_continue_it() {
        let r = record(vec![item(9, 1)], 0);
        let (items, seq) =
            merge_progress(Some(&r), update(0, 4, vec![item(2, 1), item(1, 1)], &[]));
        assert_eq!((held(&items), seq), (vec![(1, 1), (2, 1)], 4));
        let r = record(items, seq);
        let (items, seq) = merge_progress(Some(&r), update(4, 8, vec![item(3, 1)], &[]));
        assert_eq!((held(&items), seq), (vec![(1, 1), (2, 1), (3, 1)], 8));
        // Nothing held (a new bootstrap) takes a first page.
        let (items, seq) = merge_progress(None, update(0, 2, vec![item(5, 5)], &[]));
        assert_eq!((held(&items), seq), (vec![(5, 5)], 2));
        // ...but not a later one: it does not know what came before.
        let (items, seq) = merge_progress(None, update(2, 3, vec![item(5, 6)], &[]));
        assert_eq!((held(&items), seq), (vec![], 0));
    }

    #[test]
    fn an_older_node_sends_the_whole_set_every_time() {
        let r = record(vec![item(1, 10)], 12);
        let u = ProgressUpdate {
            items: vec![item(3, 1), item(2, 1), item(3, 2)],
            span: None,
            removed: vec![],
        };
        let (items, seq) = merge_progress(Some(&r), u);
        assert_eq!((held(&items), seq), (vec![(2, 1), (3, 2)], 0));
    }

    #[test]
    fn a_large_page_merges_like_single_changes() {
        let base: Vec<Progress> = (0..50).map(|b| item(b * 2, 1)).collect();
        let changes: Vec<Progress> = (0..40).map(|b| item(b * 3, 2)).collect();
        let r = record(base.clone(), 1);
        let (merged, _) = merge_progress(Some(&r), update(1, 2, changes.clone(), &[]));
        let mut expect: std::collections::BTreeMap<u8, u64> =
            base.iter().map(|p| (p.broadcast.0[0], p.held)).collect();
        for p in &changes {
            expect.insert(p.broadcast.0[0], p.held);
        }
        assert_eq!(held(&merged), expect.into_iter().collect::<Vec<_>>());
    }
}

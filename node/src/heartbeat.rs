//! What a heartbeat carries: the pure half of membership's heartbeats. No clock, no I/O.
//!
//! [`ProgressSync`] numbers every change of this node's progress (an item added or changed, a
//! broadcast forgotten) and decides, from what the bootstrap in use last acknowledged, which
//! changes the next heartbeat carries (see [`ProgressSpan`] for the wire rule). A broadcast
//! that stopped changing costs nothing per beat: an idle node's heartbeats carry no progress.
//!
//! * Nothing acknowledged yet (a new bootstrap, a restarted one, one that holds another
//!   incarnation's progress, or an acknowledgement from before the oldest change still
//!   remembered): the whole set, from change 0, in pages of at most
//!   [`ProgressSyncConfig::page`] items, each continuing the one before, so that no heartbeat
//!   passes the bootstrap's limit (4096 items) or the frame size however many broadcasts are
//!   kept.
//! * Acknowledged up to `w`: every change after `w`, paged the same way.
//! * A lost answer changes nothing: the next heartbeat repeats from the same `w` (a bootstrap
//!   that took the lost one applies the overlap again, which is harmless). After a failover the
//!   next bootstrap is sent the changes since the last acknowledgement; if it is behind (a
//!   replica that lags) or knows nothing, it ignores them and says where it stands, and the
//!   heartbeat after that starts there.
//! * A bootstrap that predates spans (no acknowledgement in its answers) gets the whole set in
//!   every heartbeat as before, at most [`ProgressSyncConfig::legacy_max`] items, unfinished
//!   broadcasts first.
//!
//! Forgotten broadcasts are remembered as removals ([`ProgressSyncConfig::max_removals`] at
//! most); a bootstrap acknowledged before the oldest one forgotten gets the whole set.
//!
//! # Call order
//! Before each heartbeat: [`ProgressSync::handle_report`] with the data plane's whole current
//! progress, then [`ProgressSync::poll_payload`] for what to send. On its answer:
//! [`ProgressSync::handle_ack`] with the answer's `progress_ack`. A heartbeat that got no answer
//! needs no call.
//!
//! [`records_to_announce`] decides which of this node's broadcast records go to the bootstrap.

use std::collections::{BTreeMap, BTreeSet};

use swarmcast_proto::{BroadcastId, BroadcastRecord, Progress, ProgressSpan};

/// Tuning of a [`ProgressSync`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProgressSyncConfig {
    /// Most items (changed plus removed) one heartbeat carries. Default 1024: a whole set of
    /// 5,000 broadcasts reaches a new bootstrap in 5 heartbeats, each about 100 KB.
    pub(crate) page: usize,
    /// Forgotten broadcasts remembered as removals. Default 4096.
    pub(crate) max_removals: usize,
    /// Most items a heartbeat to a bootstrap that predates spans carries (its limit). Default
    /// 4096.
    pub(crate) legacy_max: usize,
}

impl Default for ProgressSyncConfig {
    fn default() -> Self {
        Self {
            page: 1024,
            max_removals: 4096,
            legacy_max: 4096,
        }
    }
}

/// Where the bootstrap in use stands, as its last answer said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acked {
    /// It holds nothing of this incarnation (or nothing was answered yet).
    Nothing,
    /// It holds the progress as of this change.
    At(u64),
    /// It predates spans: it takes whole sets only.
    Legacy,
}

/// One broadcast's latest change: its number and the item (`None`: forgotten).
#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    progress: Option<Progress>,
}

/// The progress part of one heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProgressPayload {
    /// Items that changed in the span (or the whole set, without one).
    pub(crate) items: Vec<Progress>,
    /// Where they sit in this node's stream (`None`: a whole set for an older bootstrap).
    pub(crate) span: Option<ProgressSpan>,
    /// Broadcasts forgotten in the span.
    pub(crate) removed: Vec<BroadcastId>,
}

/// This node's stream of progress changes and what the bootstrap acknowledged of it. See the
/// [module docs](self).
#[derive(Clone, Debug)]
pub(crate) struct ProgressSync {
    config: ProgressSyncConfig,
    /// The number of the latest change.
    seq: u64,
    entries: BTreeMap<BroadcastId, Entry>,
    /// Every entry's change number.
    by_seq: BTreeMap<u64, BroadcastId>,
    /// Change numbers of the entries that are removals.
    removals: BTreeSet<u64>,
    /// Removals up to this number were forgotten: a delta can start only at or after it.
    floor: u64,
    acked: Acked,
}

impl ProgressSync {
    pub(crate) fn new(config: ProgressSyncConfig) -> Self {
        Self {
            config,
            seq: 0,
            entries: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            removals: BTreeSet::new(),
            floor: 0,
            acked: Acked::Nothing,
        }
    }

    /// The data plane's whole current progress: number what changed since the previous one.
    /// O(items), with no change numbered for an item that is as it was.
    pub(crate) fn handle_report(&mut self, progress: &[Progress]) {
        let mut current: BTreeSet<BroadcastId> = BTreeSet::new();
        for p in progress {
            current.insert(p.broadcast);
            let same = self
                .entries
                .get(&p.broadcast)
                .and_then(|e| e.progress.as_ref())
                .is_some_and(|old| old == p);
            if !same {
                self.record(p.broadcast, Some(p.clone()));
            }
        }
        let gone: Vec<BroadcastId> = self
            .entries
            .iter()
            .filter(|(id, e)| e.progress.is_some() && !current.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.record(id, None);
        }
        while self.removals.len() > self.config.max_removals {
            let Some(seq) = self.removals.pop_first() else {
                break;
            };
            if let Some(id) = self.by_seq.remove(&seq) {
                self.entries.remove(&id);
            }
            self.floor = self.floor.max(seq);
        }
    }

    fn record(&mut self, id: BroadcastId, progress: Option<Progress>) {
        self.seq += 1;
        if let Some(old) = self.entries.get(&id) {
            self.by_seq.remove(&old.seq);
            self.removals.remove(&old.seq);
        }
        self.by_seq.insert(self.seq, id);
        if progress.is_none() {
            self.removals.insert(self.seq);
        }
        self.entries.insert(
            id,
            Entry {
                seq: self.seq,
                progress,
            },
        );
    }

    /// What the next heartbeat carries.
    pub(crate) fn poll_payload(&self) -> ProgressPayload {
        match self.acked {
            Acked::Legacy => self.whole_set(),
            Acked::At(w) if w >= self.floor && w <= self.seq => self.span_from(w),
            Acked::At(_) | Acked::Nothing => self.span_from(0),
        }
    }

    /// Every change after `since` (from 0: every item, no removals), at most a page.
    fn span_from(&self, since: u64) -> ProgressPayload {
        let mut items = Vec::new();
        let mut removed = Vec::new();
        let mut upto = self.seq;
        let mut rest = self.by_seq.range(since + 1..).peekable();
        while let Some((&seq, id)) = rest.next() {
            match self.entries.get(id).and_then(|e| e.progress.as_ref()) {
                Some(p) => items.push(p.clone()),
                // Starting from nothing, a removal says nothing.
                None if since == 0 => continue,
                None => removed.push(*id),
            }
            if items.len() + removed.len() >= self.config.page.max(1) && rest.peek().is_some() {
                upto = seq;
                break;
            }
        }
        ProgressPayload {
            items,
            span: Some(ProgressSpan { since, upto }),
            removed,
        }
    }

    /// The whole set for a bootstrap that predates spans, unfinished broadcasts first.
    fn whole_set(&self) -> ProgressPayload {
        let settled = |p: &Progress| p.complete || p.failed.is_some();
        let all = self.entries.values().filter_map(|e| e.progress.as_ref());
        let (mut items, done): (Vec<Progress>, Vec<Progress>) =
            all.cloned().partition(|p| !settled(p));
        // The newest settled ones next: the ones a `--wait` may still be asking about.
        let mut done: Vec<(u64, Progress)> = done
            .into_iter()
            .map(|p| (self.entries.get(&p.broadcast).map_or(0, |e| e.seq), p))
            .collect();
        done.sort_by_key(|d| std::cmp::Reverse(d.0));
        items.extend(done.into_iter().map(|(_, p)| p));
        items.truncate(self.config.legacy_max);
        ProgressPayload {
            items,
            span: None,
            removed: Vec::new(),
        }
    }

    /// The answer to a heartbeat: the change number the bootstrap now holds (0: none of this
    /// incarnation), or `None` from a bootstrap that predates spans.
    pub(crate) fn handle_ack(&mut self, ack: Option<u64>) {
        self.acked = match ack {
            None => Acked::Legacy,
            Some(0) => Acked::Nothing,
            Some(w) => Acked::At(w),
        };
    }

    /// How many broadcasts the stream holds an item for.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.progress.is_some())
            .count()
    }
}

/// The records of `mine` (this node's broadcasts) that the bootstrap in use lacks or holds at
/// an older version, as far as its registry view (`held`: a record's version there) tells.
/// A record the bootstrap took is not sent again; one it lost (a restart with a wiped disk, a
/// failover to one that never heard of it) shows missing in its next answer and is sent then.
pub(crate) fn records_to_announce(
    mine: &[BroadcastRecord],
    held: impl Fn(&BroadcastId) -> Option<u64>,
) -> Vec<BroadcastRecord> {
    mine.iter()
        .filter(|r| held(&r.id).is_none_or(|v| v < r.version))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use swarmcast_bootstrap::registry::{ProgressUpdate, merge_progress};
    use swarmcast_proto::{BroadcastState, NodeId, NodeRecord, Role, Version};

    use super::*;

    fn id(n: u32) -> BroadcastId {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        BroadcastId(b)
    }

    fn item(n: u32, held: u64) -> Progress {
        Progress {
            broadcast: id(n),
            held,
            total: 10,
            complete: held == 10,
            failed: None,
        }
    }

    fn small(page: usize) -> ProgressSync {
        ProgressSync::new(ProgressSyncConfig {
            page,
            max_removals: 8,
            legacy_max: 5,
        })
    }

    /// A bootstrap's copy of the node's progress, applied by the bootstrap's own rule.
    #[derive(Clone, Debug, Default)]
    struct Bootstrap {
        record: Option<NodeRecord>,
    }

    impl Bootstrap {
        /// Take one heartbeat; the answer's ack.
        fn beat(&mut self, payload: &ProgressPayload) -> u64 {
            let update = ProgressUpdate {
                items: payload.items.clone(),
                span: payload.span,
                removed: payload.removed.clone(),
            };
            let (progress, seq) = merge_progress(self.record.as_ref(), update);
            self.record = Some(NodeRecord {
                id: NodeId([1; 32]),
                name: "n".into(),
                role: Role::Node,
                addrs: vec![],
                version: Version::new(1, 1),
                progress,
                progress_seq: seq,
                pull: false,
                groups: Vec::new(),
            });
            seq
        }

        fn held(&self) -> BTreeMap<BroadcastId, u64> {
            (self.record.iter().flat_map(|r| r.progress.iter()))
                .map(|p| (p.broadcast, p.held))
                .collect()
        }
    }

    fn truth(progress: &[Progress]) -> BTreeMap<BroadcastId, u64> {
        progress.iter().map(|p| (p.broadcast, p.held)).collect()
    }

    /// Beat until the bootstrap holds the same as the node (at most `max` beats); how many.
    #[track_caller]
    fn converge(
        sync: &mut ProgressSync,
        b: &mut Bootstrap,
        progress: &[Progress],
        max: usize,
    ) -> usize {
        for n in 1..=max {
            sync.handle_report(progress);
            let payload = sync.poll_payload();
            let ack = b.beat(&payload);
            sync.handle_ack(Some(ack));
            if b.held() == truth(progress) && sync.poll_payload().items.is_empty() {
                return n;
            }
        }
        panic!("no convergence in {max} beats: {:?}", b.held());
    }

    #[test]
    fn settled_progress_costs_nothing_per_beat() {
        let mut sync = small(100);
        let mut b = Bootstrap::default();
        let all: Vec<Progress> = (0..50).map(|n| item(n, 10)).collect();
        converge(&mut sync, &mut b, &all, 1);
        for _ in 0..3 {
            sync.handle_report(&all);
            let p = sync.poll_payload();
            assert!(p.items.is_empty() && p.removed.is_empty(), "{p:?}");
            sync.handle_ack(Some(b.beat(&p)));
        }
        // One broadcast progressing costs one item.
        let mut now = all.clone();
        now.push(item(99, 3));
        sync.handle_report(&now);
        let p = sync.poll_payload();
        assert_eq!(p.items, vec![item(99, 3)]);
        sync.handle_ack(Some(b.beat(&p)));
        assert_eq!(b.held(), truth(&now));
    }

    #[test]
    fn a_whole_set_goes_in_pages_below_the_limit() {
        let mut sync = small(16);
        let mut b = Bootstrap::default();
        let all: Vec<Progress> = (0..100).map(|n| item(n, n as u64 % 11)).collect();
        sync.handle_report(&all);
        let first = sync.poll_payload();
        assert_eq!(first.items.len(), 16);
        assert_eq!(first.span.map(|s| s.since), Some(0));
        let beats = converge(&mut sync, &mut b, &all, 20);
        assert_eq!(beats, 7, "ceil(100 / 16)");
    }

    #[test]
    fn forgetting_a_broadcast_removes_it_at_the_bootstrap() {
        let mut sync = small(100);
        let mut b = Bootstrap::default();
        let all: Vec<Progress> = (0..5).map(|n| item(n, 10)).collect();
        converge(&mut sync, &mut b, &all, 1);
        let kept = &all[2..];
        sync.handle_report(kept);
        let p = sync.poll_payload();
        assert_eq!(p.removed, vec![id(0), id(1)]);
        assert!(p.items.is_empty());
        sync.handle_ack(Some(b.beat(&p)));
        assert_eq!(b.held(), truth(kept));
    }

    #[test]
    fn a_lost_answer_loses_nothing() {
        let mut sync = small(100);
        let mut b = Bootstrap::default();
        let mut all: Vec<Progress> = (0..5).map(|n| item(n, 1)).collect();
        converge(&mut sync, &mut b, &all, 1);
        // The bootstrap takes a heartbeat, but its answer is lost.
        all[0].held = 5;
        sync.handle_report(&all);
        let _ = b.beat(&sync.poll_payload());
        // And one is lost before it arrives.
        all[1].held = 5;
        sync.handle_report(&all);
        let _lost = sync.poll_payload();
        all.remove(4);
        converge(&mut sync, &mut b, &all, 1);
    }

    #[test]
    fn a_restarted_bootstrap_gets_the_whole_set() {
        let mut sync = small(100);
        let mut b = Bootstrap::default();
        let all: Vec<Progress> = (0..30).map(|n| item(n, 10)).collect();
        converge(&mut sync, &mut b, &all, 1);
        // Restarted without its snapshot: it holds nothing and ignores a delta.
        let mut fresh = Bootstrap::default();
        sync.handle_report(&all);
        let p = sync.poll_payload();
        assert!(p.items.is_empty());
        let ack = fresh.beat(&p);
        assert_eq!(ack, 0, "it holds nothing");
        sync.handle_ack(Some(ack));
        assert_eq!(sync.poll_payload().items.len(), 30, "the whole set next");
        converge(&mut sync, &mut fresh, &all, 1);
    }

    #[test]
    fn a_failover_to_a_lagging_replica_catches_it_up_from_where_it_stands() {
        let mut sync = small(100);
        let mut b1 = Bootstrap::default();
        let mut all: Vec<Progress> = (0..10).map(|n| item(n, 1)).collect();
        converge(&mut sync, &mut b1, &all, 1);
        // b2 replicated b1 at this point...
        let mut b2 = b1.clone();
        // ...and b1 took more that b2 never saw.
        for p in &mut all[..5] {
            p.held = 7;
        }
        converge(&mut sync, &mut b1, &all, 1);
        all.remove(9);
        all[6].held = 9;
        // Failover: b2 is behind the last acknowledgement; it ignores the delta, says where
        // it stands, and the next heartbeat starts there.
        sync.handle_report(&all);
        let p = sync.poll_payload();
        let ack = b2.beat(&p);
        assert_eq!(b2.held().len(), 10, "ignored: {:?}", b2.held());
        sync.handle_ack(Some(ack));
        converge(&mut sync, &mut b2, &all, 1);
    }

    #[test]
    fn a_replica_ahead_of_the_last_acknowledgement_takes_the_overlap() {
        let mut sync = small(100);
        let mut b1 = Bootstrap::default();
        let mut all: Vec<Progress> = (0..4).map(|n| item(n, 1)).collect();
        converge(&mut sync, &mut b1, &all, 1);
        all[0].held = 3;
        sync.handle_report(&all);
        let _ = b1.beat(&sync.poll_payload()); // answer lost
        let mut b2 = b1.clone(); // replicated, then b1 died
        all[1].held = 3;
        converge(&mut sync, &mut b2, &all, 1);
    }

    #[test]
    fn too_many_removals_forgotten_means_the_whole_set() {
        let mut sync = small(100);
        let mut b = Bootstrap::default();
        let all: Vec<Progress> = (0..20).map(|n| item(n, 10)).collect();
        converge(&mut sync, &mut b, &all, 1);
        let old = b.clone();
        // Twelve forgotten: more than the 8 removals remembered.
        let kept = &all[12..];
        sync.handle_report(kept);
        let mut b_now = old.clone();
        // A bootstrap that stood at the old point can no longer get a delta: the whole set.
        let ack = old.record.as_ref().map_or(0, |r| r.progress_seq);
        sync.handle_ack(Some(ack));
        let p = sync.poll_payload();
        assert_eq!(p.span.map(|s| s.since), Some(0));
        converge(&mut sync, &mut b_now, kept, 1);
    }

    #[test]
    fn an_older_bootstrap_gets_the_whole_set_each_time_unfinished_first() {
        let mut sync = small(100);
        let mut all: Vec<Progress> = (0..8).map(|n| item(n, 10)).collect();
        all.push(item(50, 2));
        sync.handle_report(&all);
        sync.handle_ack(None);
        for _ in 0..2 {
            let p = sync.poll_payload();
            assert_eq!(p.span, None);
            assert_eq!(p.items.len(), 5, "legacy_max");
            assert_eq!(p.items[0], item(50, 2), "the unfinished one first");
            // then the newest settled ones
            assert_eq!(p.items[1].broadcast, id(7));
        }
        assert_eq!(sync.len(), 9);
    }

    #[test]
    fn a_record_is_announced_until_the_bootstrap_holds_its_version() {
        let rec = |n: u32, version| BroadcastRecord {
            id: id(n),
            name: format!("b{n}"),
            origin: NodeId([2; 32]),
            size: 1,
            chunks: 1,
            state: BroadcastState::Active,
            version,
            seq: 1,
            published_ms: 0,
            audience: None,
        };
        let mine = vec![rec(1, 1), rec(2, 2), rec(3, 1)];
        let held: BTreeMap<BroadcastId, u64> = [(id(1), 1), (id(2), 1)].into_iter().collect();
        let out = records_to_announce(&mine, |i| held.get(i).copied());
        let ids: Vec<_> = out.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![id(2), id(3)], "2 is newer here, 3 unknown there");
    }
}

//! `node fetch`: asking for one broadcast, the newest version of a name or an exact id, which
//! a node that pulls on demand ([`BroadcastConfig::pull`](super::BroadcastConfig::pull)) fetches
//! only when asked, and any node fetches again once removed here.
//!
//! What a fetch resolves to is decided from what this node knows: the registry's records (every
//! live broadcast of the fleet, with its origin) and what it holds. The manifest then comes as
//! any other, from a neighbour that announced the broadcast (announcements are kept while
//! unasked, so the fetch knows who holds what) or from the origin at its registry address, and
//! the transfer fetches from every neighbour holding pieces.

use std::time::Instant;

use swarmcast_proto::{BroadcastId, BroadcastState};
use tracing::info;

use super::{Broadcasts, ReportDue, TargetError};

impl Broadcasts {
    /// Whether this node fetches the manifest of `id` when it hears of it: always, unless it
    /// pulls on demand and `id` was not asked for, or `id` is restricted to others
    /// ([`may_receive`](Self::may_receive)).
    pub(super) fn wants(&self, id: BroadcastId) -> bool {
        (!self.config.pull || self.asked.contains(&id)) && self.may_receive(id)
    }

    /// `node fetch`: ask for what `target` names, a name (its newest live version), an id or a
    /// unique id prefix (4 hex digits or more) of a broadcast the registry lists or this node
    /// holds. Returns the id asked for. A version held here already is left as it is (being
    /// received, complete or seeding); one removed here or remembered as failed is fetched
    /// again. Refused: an unknown target, an older version not held here (the versions rules
    /// fetch only the newest) and one its origin failed or cancelled.
    pub fn fetch(&mut self, now: Instant, target: &str) -> Result<Vec<BroadcastId>, TargetError> {
        let id = self.resolve_fetch(target)?;
        if self.broadcasts.contains_key(&id) {
            return Ok(vec![id]);
        }
        if let Some(refusal) = self.fetch_refusal(target, id) {
            return Err(refusal);
        }
        let name = (self.records.get(&id))
            .map(|r| r.name.clone())
            .unwrap_or_default();
        info!(broadcast = %id.short(), %name, "fetch asked for");
        self.removed.remove(&id);
        self.lost.remove(&id);
        self.asked.insert(id);
        if let Some(u) = self.unknown_entry(now, id) {
            // Asked now: do not wait out a backoff.
            u.retry_at = None;
        }
        self.fetch_manifest(id);
        self.report_change(ReportDue::Now);
        Ok(vec![id])
    }

    /// The broadcast `target` names for [`fetch`](Self::fetch).
    fn resolve_fetch(&self, target: &str) -> Result<BroadcastId, TargetError> {
        if let Some(newest) = self.newest_live(target) {
            return Ok(newest.2);
        }
        // No live record of the name: the newest version held here, if any.
        let held = (self.names.get(target).into_iter().flatten())
            .filter_map(|id| self.key_of(*id))
            .max();
        if let Some(key) = held {
            return Ok(key.2);
        }
        // Versions of the name restricted to others are not among its live versions here.
        let for_others = (self.records.values())
            .filter(|r| r.name == target && r.state == BroadcastState::Active)
            .filter(|r| !self.may_receive_record(r))
            .map(|r| r.version_key())
            .max();
        if let Some(key) = for_others {
            return Ok(key.2);
        }
        if self.max_seq.contains_key(target) {
            return Err(TargetError::Ended(target.to_owned()));
        }
        let hex = target.to_ascii_lowercase();
        if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TargetError::NoSuchName(target.to_owned()));
        }
        let mut ids: Vec<BroadcastId> = (self.records.keys())
            .chain(self.broadcasts.keys())
            .copied()
            .filter(|id| id.to_hex().starts_with(&hex))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let id = match ids.as_slice() {
            [] => return Err(TargetError::NoSuchName(target.to_owned())),
            [id] => *id,
            _ => return Err(TargetError::Ambiguous(target.to_owned())),
        };
        if self.broadcasts.contains_key(&id) {
            return Ok(id);
        }
        // Only records are left: the id is not held here.
        let Some(r) = self.records.get(&id) else {
            return Err(TargetError::NoSuchName(target.to_owned()));
        };
        if r.state != BroadcastState::Active {
            return Err(TargetError::Ended(target.to_owned()));
        }
        if self.is_superseded(r) {
            return Err(TargetError::Superseded {
                target: target.to_owned(),
                name: r.name.clone(),
            });
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Instant;

    use swarmcast_proto::{BroadcastRecord, BroadcastState, NodeId};

    use super::super::tests::{
        ME, ORIGIN, actions, fetch_of, fetched, have, node, origin_entry, state, version_manifest,
        version_record,
    };
    use super::super::{
        BroadcastAction, BroadcastConfig, Broadcasts, ManifestSource, Strategy, TargetError,
    };
    use crate::bitfield::Bitfield;
    use crate::listing::BroadcastPhase;

    fn pulling(max_unknown: usize) -> Broadcasts {
        let config = BroadcastConfig {
            pull: true,
            max_unknown,
            ..BroadcastConfig::default()
        };
        Broadcasts::new(config, node(ME), 7)
    }

    fn pushing() -> Broadcasts {
        let config = BroadcastConfig {
            strategy: Strategy::Swarm,
            ..BroadcastConfig::default()
        };
        Broadcasts::new(config, node(ME), 7)
    }

    fn requested_from(a: &[BroadcastAction]) -> Vec<NodeId> {
        a.iter()
            .filter_map(|a| match a {
                BroadcastAction::Request { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    /// A `--pull` node hears of a broadcast (a record, a neighbour's announcement) and fetches
    /// nothing, until asked: then the announcer gives the manifest, and the transfer knows that
    /// it holds pieces.
    #[test]
    fn a_pull_node_fetches_no_manifest_until_asked_and_then_from_the_announcer() {
        let now = Instant::now();
        let mut c = pulling(64);
        let (m, layout, id) = version_manifest("ds", 2, 1);
        c.handle_registry(
            now,
            vec![origin_entry()],
            vec![version_record(id, "ds", 2, 1)],
        );
        c.handle_peer_up(now, node(5));
        c.handle_peer_message(now, node(5), have(id, 2, &[0, 1]));
        // Later timers fetch nothing either.
        c.handle_timeout(now + std::time::Duration::from_secs(5));
        let a = actions(&mut c);
        assert!(fetch_of(&a).is_empty(), "{a:?}");
        assert!(c.list().is_empty());
        assert_eq!(c.fetch(now, "ds").unwrap(), vec![id]);
        assert_eq!(
            fetch_of(&actions(&mut c)),
            vec![ManifestSource::Peer(node(5))]
        );
        c.handle_manifest_fetched(now, id, Ok(m.to_bytes()));
        let a = actions(&mut c);
        assert!(
            matches!(&a[..], [BroadcastAction::CreateWorkspace { id: i, .. }] if *i == id),
            "{a:?}"
        );
        c.add_receiver(now, id, m, layout, Bitfield::new(2), false, None);
        let from = requested_from(&actions(&mut c));
        assert!(
            !from.is_empty() && from.iter().all(|p| *p == node(5)),
            "{from:?}"
        );
        // Asking again names the broadcast being received.
        assert_eq!(c.fetch(now, "ds").unwrap(), vec![id]);
        assert!(fetch_of(&actions(&mut c)).is_empty());
    }

    /// The same core without `pull` fetches at once (the flag decides, nothing else).
    #[test]
    fn without_pull_the_same_inputs_fetch_at_once() {
        let now = Instant::now();
        let mut c = pushing();
        let (_, _, id) = version_manifest("ds", 2, 1);
        c.handle_registry(
            now,
            vec![origin_entry()],
            vec![version_record(id, "ds", 2, 1)],
        );
        assert_eq!(fetched(&actions(&mut c)), vec![id]);
    }

    /// A fetch is tracked even when the unknown broadcasts heard of fill `max_unknown`.
    #[test]
    fn an_asked_broadcast_is_tracked_past_max_unknown() {
        let now = Instant::now();
        let mut c = pulling(1);
        let ids: Vec<_> = (1..=3)
            .map(|k| version_manifest(&format!("n{k}"), 1, k).2)
            .collect();
        let records: Vec<BroadcastRecord> = (ids.iter().zip(1..))
            .map(|(id, k)| version_record(*id, &format!("n{k}"), 1, 1))
            .collect();
        c.handle_registry(now, vec![origin_entry()], records);
        assert!(fetched(&actions(&mut c)).is_empty());
        assert_eq!(c.fetch(now, "n3").unwrap(), vec![ids[2]]);
        assert_eq!(
            fetch_of(&actions(&mut c)),
            vec![ManifestSource::Origin {
                node: node(ORIGIN),
                addr: super::super::tests::origin_addr()
            }]
        );
    }

    /// On a pull node, records do not take the unknown slots (`max_unknown`) that announcements
    /// need: an announcement heard after many records is still kept, and a fetch asks its
    /// announcer; the registry's mentions keep it from expiring.
    #[test]
    fn records_leave_the_unknown_slots_to_announcements_on_a_pull_node() {
        let now = Instant::now();
        let mut c = pulling(1);
        let (_, _, a) = version_manifest("a", 1, 1);
        let (_, _, b) = version_manifest("b", 1, 2);
        let records = vec![version_record(a, "a", 1, 1), version_record(b, "b", 1, 1)];
        c.handle_registry(now, vec![origin_entry()], records.clone());
        c.handle_peer_up(now, node(5));
        c.handle_peer_message(now, node(5), have(b, 1, &[0]));
        let later = now + BroadcastConfig::default().unknown_ttl / 2 * 3;
        c.handle_registry(later, vec![origin_entry()], records);
        c.handle_timeout(later);
        assert!(fetched(&actions(&mut c)).is_empty());
        assert_eq!(c.fetch(later, "b").unwrap(), vec![b]);
        assert_eq!(
            fetch_of(&actions(&mut c)),
            vec![ManifestSource::Peer(node(5))]
        );
    }

    /// What a fetch resolves to: a name's newest live version, an id or a unique prefix; an
    /// unknown name, an older version and an ended one are refused with why.
    #[test]
    fn fetch_resolves_the_newest_version_and_refuses_what_cannot_come() {
        let now = Instant::now();
        let mut c = pulling(64);
        let (_, _, v1) = version_manifest("ds", 1, 1);
        let (_, _, v2) = version_manifest("ds", 1, 2);
        let (_, _, gone) = version_manifest("old", 1, 3);
        let cancelled = BroadcastRecord {
            state: BroadcastState::Cancelled,
            ..version_record(gone, "old", 1, 1)
        };
        c.handle_registry(
            now,
            vec![origin_entry()],
            vec![
                version_record(v2, "ds", 1, 2),
                version_record(v1, "ds", 1, 1),
                cancelled,
            ],
        );
        let _ = actions(&mut c);
        assert_eq!(
            c.fetch(now, "nope"),
            Err(TargetError::NoSuchName("nope".into()))
        );
        assert_eq!(
            c.fetch(now, "0000000000"),
            Err(TargetError::NoSuchName("0000000000".into()))
        );
        assert!(
            c.fetch(now, "nope")
                .unwrap_err()
                .to_string()
                .starts_with("no broadcast named \"nope\"")
        );
        assert_eq!(
            c.fetch(now, &v1.to_hex()),
            Err(TargetError::Superseded {
                target: v1.to_hex(),
                name: "ds".into()
            })
        );
        assert_eq!(c.fetch(now, "old"), Err(TargetError::Ended("old".into())));
        assert_eq!(
            c.fetch(now, &gone.to_hex()),
            Err(TargetError::Ended(gone.to_hex()))
        );
        assert!(
            fetched(&actions(&mut c)).is_empty(),
            "nothing refused is fetched"
        );
        assert_eq!(c.fetch(now, &v2.to_hex()[..8]).unwrap(), vec![v2]);
        assert_eq!(fetched(&actions(&mut c)), vec![v2]);
        assert_eq!(c.fetch(now, "ds").unwrap(), vec![v2]);
    }

    /// Without `--pull`, a version removed here (`node rm`) is not fetched again by itself,
    /// but is when asked.
    #[test]
    fn a_removed_version_is_fetched_again_when_asked() {
        let now = Instant::now();
        let mut c = pushing();
        let (m, layout, id) = version_manifest("ds", 1, 1);
        let records = vec![version_record(id, "ds", 1, 1)];
        c.handle_registry(now, vec![origin_entry()], records.clone());
        assert_eq!(fetched(&actions(&mut c)), vec![id]);
        c.add_receiver(now, id, m, layout, Bitfield::new(1), false, None);
        assert_eq!(c.remove("ds").unwrap(), vec![id]);
        c.handle_registry(now, vec![origin_entry()], records);
        assert!(fetched(&actions(&mut c)).is_empty());
        assert_eq!(c.fetch(now, "ds").unwrap(), vec![id]);
        assert_eq!(fetched(&actions(&mut c)), vec![id]);
    }

    /// An asked version superseded before its manifest came is remembered as superseded (so
    /// that `node fetch --wait` hears why), and the newer one is not fetched unasked.
    #[test]
    fn an_asked_version_superseded_before_its_manifest_is_remembered_so() {
        let now = Instant::now();
        let mut c = pulling(64);
        let (_, _, v1) = version_manifest("ds", 1, 1);
        let (_, _, v2) = version_manifest("ds", 1, 2);
        c.handle_registry(
            now,
            vec![origin_entry()],
            vec![version_record(v1, "ds", 1, 1)],
        );
        c.fetch(now, "ds").unwrap();
        assert_eq!(fetched(&actions(&mut c)), vec![v1]);
        c.handle_registry(
            now,
            vec![origin_entry()],
            vec![
                version_record(v1, "ds", 1, 1),
                version_record(v2, "ds", 1, 2),
            ],
        );
        assert!(fetched(&actions(&mut c)).is_empty());
        assert_eq!(state(&c, v1), BroadcastPhase::Superseded);
        // The answer to the old fetch is dropped; the new version is one fetch away.
        c.handle_manifest_fetched(now, v1, Err(super::super::tests::failed_fetch()));
        assert!(fetched(&actions(&mut c)).is_empty());
        assert_eq!(c.fetch(now, "ds").unwrap(), vec![v2]);
        assert_eq!(fetched(&actions(&mut c)), vec![v2]);
    }
}

//! What the daemon reports about itself: the answers of the control socket (`node status`,
//! `node send`, `node send --wait`) in their JSON shapes, and membership's part of them. A leaf:
//! plain serde types that every task may import without importing each other.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use swarmcast_proto::{
    Audience, BroadcastId, BroadcastRecord, NodeRecord, Progress, RegistryEntry, Role, Status,
};

/// What `node send` answers at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishInfo {
    /// Hex broadcast id.
    pub id: String,
    /// Directory name.
    pub name: String,
    /// Bytes of file data.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Chunks.
    pub chunks: u64,
    /// Chunk size.
    pub chunk_size: u32,
    /// File bytes the origin read and hashed (the others kept the previous version's hashes).
    #[serde(default)]
    pub hashed_bytes: u64,
    /// Worth telling the sender (`--to` names no node the registry knows, yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `node status` (also its JSON shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Hex NodeId.
    pub id: String,
    /// Certificate name.
    pub name: String,
    /// This run's incarnation.
    pub incarnation: u64,
    /// Bound QUIC address.
    pub listen: SocketAddr,
    /// Address given to others.
    pub advertise: SocketAddr,
    /// Whether a bootstrap has accepted the registration.
    pub registered: bool,
    /// The bootstrap in use.
    pub bootstrap: Option<SocketAddr>,
    /// Every known seed and whether it answers.
    pub seeds: Vec<SeedStatus>,
    /// Current neighbours.
    pub neighbours: Vec<NeighbourStatus>,
    /// Entries in the last registry view.
    pub registry_size: usize,
    /// Alive entries in the last registry view.
    pub registry_alive: usize,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// Chunk payload bytes this process uploaded to each peer (hex NodeId), all broadcasts: this
    /// node's row of the traffic matrix.
    #[serde(default)]
    pub uploaded_to: std::collections::BTreeMap<String, u64>,
    /// What the latest answered heartbeat carried.
    #[serde(default)]
    pub last_heartbeat: Option<HeartbeatStats>,
    /// The restricted broadcasts this node holds, with their audience (unrestricted ones are
    /// not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted: Vec<RestrictedBroadcast>,
    /// The broadcasts this node holds whose priority is high or low (normal ones are not
    /// listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prioritized: Vec<PrioritizedBroadcast>,
}

/// A broadcast of high or low priority this node holds, as `node status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrioritizedBroadcast {
    /// Hex broadcast id.
    pub id: String,
    /// Directory name.
    pub name: String,
    /// Its priority (from its manifest).
    pub priority: swarmcast_proto::Priority,
}

/// A restricted broadcast this node holds (its own or one it receives), as `node status`
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestrictedBroadcast {
    /// Hex broadcast id.
    pub id: String,
    /// Directory name.
    pub name: String,
    /// Who may receive it (from its manifest).
    pub audience: Audience,
}

/// Fleet-wide progress of one broadcast, as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetProgress {
    /// Hex broadcast id.
    pub id: String,
    /// Bytes of the broadcast.
    pub bytes: u64,
    /// Chunks of the broadcast.
    pub chunks: u64,
    /// Alive nodes that take part (see [`takes_part`]): the nodes `--wait` waits for.
    pub nodes_alive: u64,
    /// Alive nodes holding the whole broadcast (published, or its origin).
    pub nodes_complete: u64,
    /// Alive nodes that refused or failed the broadcast: name, reason. They will not complete.
    #[serde(default)]
    pub nodes_failed: Vec<(String, String)>,
    /// Chunks held, summed over alive nodes.
    pub chunks_held: u64,
    /// Set when the broadcast failed (at the origin or here).
    pub failed: Option<String>,
    /// Per node: name, chunks held (alive nodes only).
    pub nodes: Vec<(String, u64)>,
}

/// Whether `node` takes part in `broadcast` (`record`: its registry record, when known), so
/// that `--wait` waits for it: the first part of the completion rule. Its origin always does.
/// A node outside a restricted broadcast's audience (judged by the name and the groups its
/// certificate carries, as the bootstraps recorded them) never does. A pull node
/// (`node join --pull`) does only once it has `progress` for it (it asked for it, or holds
/// something of it): a pull node receives nothing unasked.
pub fn takes_part(
    node: &NodeRecord,
    record: Option<&BroadcastRecord>,
    progress: Option<&Progress>,
) -> bool {
    if record.is_some_and(|r| r.origin == node.id) {
        return true;
    }
    let audience = record.and_then(|r| r.audience.as_ref());
    if audience.is_some_and(|a| !a.admits(&node.name, &node.groups)) {
        return false;
    }
    !node.pull || progress.is_some()
}

/// Where one node stands with one broadcast: half of the completion rule, defined here once
/// for the node's heartbeats, the control socket and `node send --wait`
/// ([`FleetProgress::outcome`] is the other half).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOutcome {
    /// Still receiving (or not started).
    Pending,
    /// Holds the whole broadcast: published, or its origin.
    Complete,
    /// Refused or failed it: it will not complete.
    Failed,
}

impl NodeOutcome {
    /// The outcome of a node's progress item, for a broadcast of `chunks` chunks as the caller
    /// knows it (0: unknown). `complete` is explicit (a broadcast of empty files has no chunks);
    /// older nodes do not send it, and are complete once they hold every chunk.
    pub fn of(progress: &Progress, chunks: u64) -> Self {
        if progress.failed.is_some() {
            Self::Failed
        } else if progress.complete || (chunks > 0 && progress.held >= chunks) {
            Self::Complete
        } else {
            Self::Pending
        }
    }

    /// Complete or failed: waiting longer changes nothing.
    pub fn is_settled(self) -> bool {
        self != Self::Pending
    }
}

/// Where the fleet stands with one broadcast ([`FleetProgress::outcome`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetOutcome {
    /// Some alive node is still pending, or no node is alive yet.
    Pending,
    /// Every alive node is complete.
    Complete,
    /// Every alive node is complete or failed, and this many failed.
    NodesFailed(u64),
    /// The broadcast itself failed (at the origin or here), with the reason.
    BroadcastFailed(String),
}

impl FleetOutcome {
    /// Anything but [`Pending`](Self::Pending): waiting longer changes nothing.
    pub fn is_settled(&self) -> bool {
        *self != Self::Pending
    }
}

impl FleetProgress {
    /// Fleet progress of broadcast `id` (its registry `record`, when known) from registry
    /// `entries`: every alive node that [`takes_part`], with its [`NodeOutcome`]. `failed` is
    /// left for the caller, who words the record's state (failed or cancelled by the origin).
    pub fn from_registry(
        id: BroadcastId,
        record: Option<&BroadcastRecord>,
        entries: &[RegistryEntry],
    ) -> Self {
        let chunks = record.map_or(0, |r| r.chunks);
        let mut out = FleetProgress {
            id: id.to_hex(),
            bytes: record.map_or(0, |r| r.size),
            chunks,
            nodes_alive: 0,
            nodes_complete: 0,
            nodes_failed: Vec::new(),
            chunks_held: 0,
            failed: None,
            nodes: Vec::new(),
        };
        for e in entries {
            if e.record.role != Role::Node || e.status != Status::Alive {
                continue;
            }
            let progress = e.record.progress.iter().find(|p| p.broadcast == id);
            if !takes_part(&e.record, record, progress) {
                continue;
            }
            out.nodes_alive += 1;
            let held = progress.map_or(0, |p| p.held.min(chunks));
            out.chunks_held += held;
            match progress.map(|p| NodeOutcome::of(p, chunks)) {
                Some(NodeOutcome::Failed) => {
                    // A peer's text: bounded before it reaches a terminal.
                    let reason: String = (progress.iter().flat_map(|p| p.failed.iter()))
                        .flat_map(|f| f.chars())
                        .take(200)
                        .collect();
                    out.nodes_failed.push((e.record.name.clone(), reason));
                }
                Some(NodeOutcome::Complete) => out.nodes_complete += 1,
                Some(NodeOutcome::Pending) | None => {}
            }
            out.nodes.push((e.record.name.clone(), held));
        }
        out
    }

    /// The fleet half of the completion rule: settled once every alive node that takes part
    /// ([`takes_part`]) is complete or failed (see [`NodeOutcome::of`] for one node), or once
    /// the broadcast failed.
    pub fn outcome(&self) -> FleetOutcome {
        if let Some(f) = &self.failed {
            return FleetOutcome::BroadcastFailed(f.clone());
        }
        let failed = self.nodes_failed.len() as u64;
        if self.nodes_alive == 0 || self.nodes_complete + failed < self.nodes_alive {
            FleetOutcome::Pending
        } else if failed == 0 {
            FleetOutcome::Complete
        } else {
            FleetOutcome::NodesFailed(failed)
        }
    }
}

/// One seed's reachability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedStatus {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether a connection to it is up.
    pub reachable: bool,
    /// The last error met, if any.
    pub last_error: Option<String>,
    /// Failed attempts since it last answered.
    pub failures: u32,
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighbourStatus {
    /// Hex NodeId.
    pub id: String,
    /// Certificate name, when connected.
    pub name: Option<String>,
    /// Its address.
    pub addr: SocketAddr,
    /// "outbound" or "inbound".
    pub direction: String,
    /// "dialling" or "connected".
    pub state: String,
    /// Smoothed RTT of application pings, in ms.
    pub rtt_ms: Option<f64>,
    /// Banned for serving bad chunks: a serve-only link, never fetched from.
    #[serde(default)]
    pub banned: bool,
}

/// Membership's part of `node status`, and the latest registry view.
#[derive(Debug, Clone, Default)]
pub(crate) struct MembershipStatus {
    pub(crate) bootstrap: Option<SocketAddr>,
    pub(crate) registered: bool,
    pub(crate) seeds: Vec<SeedStatus>,
    pub(crate) registry_size: usize,
    pub(crate) registry_alive: usize,
    pub(crate) view: Vec<RegistryEntry>,
    pub(crate) view_broadcasts: Vec<BroadcastRecord>,
    pub(crate) last_heartbeat: Option<HeartbeatStats>,
}

/// What the latest answered heartbeat carried (`node status --json`: `last_heartbeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatStats {
    /// Progress items it carried: the changes the bootstrap had not acknowledged (a page of
    /// the whole set for a bootstrap that knew nothing of this node).
    pub progress_items: usize,
    /// Broadcasts it said this node forgot.
    pub progress_removed: usize,
    /// Its encoded size in bytes (frame included).
    pub bytes: usize,
    /// Broadcast records announced before it (those the bootstrap lacked).
    pub announced: usize,
    /// The change number of this node's progress the bootstrap acknowledged (absent: a
    /// bootstrap that predates progress spans).
    pub acked: Option<u64>,
}

#[cfg(test)]
mod tests {
    use swarmcast_proto::{Audience, BroadcastState, NodeId, Version};

    use super::*;

    fn item(held: u64, total: u64, complete: bool, failed: Option<&str>) -> Progress {
        Progress {
            broadcast: BroadcastId([1; 32]),
            held,
            total,
            complete,
            failed: failed.map(Into::into),
        }
    }

    #[test]
    fn a_node_is_complete_when_it_says_so_or_holds_every_chunk_failed_first() {
        use NodeOutcome::*;
        assert_eq!(NodeOutcome::of(&item(3, 4, false, None), 4), Pending);
        assert_eq!(
            NodeOutcome::of(&item(4, 4, false, None), 4),
            Complete,
            "older node"
        );
        assert_eq!(
            NodeOutcome::of(&item(0, 0, true, None), 0),
            Complete,
            "empty files"
        );
        assert_eq!(
            NodeOutcome::of(&item(4, 4, false, None), 0),
            Pending,
            "size unknown"
        );
        assert_eq!(NodeOutcome::of(&item(4, 4, true, Some("x")), 4), Failed);
        assert!(!Pending.is_settled() && Complete.is_settled() && Failed.is_settled());
    }

    fn fleet(alive: u64, complete: u64, failed: usize, broadcast_failed: bool) -> FleetProgress {
        FleetProgress {
            id: String::new(),
            bytes: 1,
            chunks: 1,
            nodes_alive: alive,
            nodes_complete: complete,
            nodes_failed: vec![("n".into(), "r".into()); failed],
            chunks_held: 0,
            failed: broadcast_failed.then(|| "cancelled".into()),
            nodes: Vec::new(),
        }
    }

    #[test]
    fn a_fleet_is_settled_once_every_alive_node_is_complete_or_failed() {
        use FleetOutcome::*;
        assert_eq!(fleet(0, 0, 0, false).outcome(), Pending, "nobody alive yet");
        assert_eq!(fleet(3, 2, 0, false).outcome(), Pending);
        assert_eq!(fleet(3, 3, 0, false).outcome(), Complete);
        assert_eq!(fleet(3, 2, 1, false).outcome(), NodesFailed(1));
        assert_eq!(fleet(3, 1, 1, false).outcome(), Pending);
        assert_eq!(
            fleet(3, 3, 0, true).outcome(),
            BroadcastFailed("cancelled".into())
        );
        assert!(!Pending.is_settled() && Complete.is_settled());
    }

    fn node(n: u8, pull: bool, groups: &[&str], progress: Option<(u64, bool)>) -> RegistryEntry {
        RegistryEntry {
            record: NodeRecord {
                id: NodeId([n; 32]),
                name: format!("n{n}"),
                role: Role::Node,
                addrs: Vec::new(),
                version: Version::new(1, 1),
                progress: (progress.iter())
                    .map(|&(held, complete)| item(held, 4, complete, None))
                    .collect(),
                progress_seq: 0,
                pull,
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            },
            status: Status::Alive,
            age_ms: 0,
        }
    }

    fn record(audience: Option<Audience>) -> BroadcastRecord {
        BroadcastRecord {
            id: BroadcastId([1; 32]),
            name: "d".into(),
            origin: NodeId([1; 32]),
            size: 4,
            chunks: 4,
            state: BroadcastState::Active,
            version: 1,
            seq: 1,
            published_ms: 0,
            audience,
        }
    }

    #[test]
    fn a_pull_node_counts_only_once_it_has_progress_for_the_broadcast() {
        let id = BroadcastId([1; 32]);
        let r = record(None);
        let origin = node(1, false, &[], Some((4, true)));
        let done = node(2, false, &[], Some((4, true)));
        let pull_idle = node(3, true, &[], None);
        let fleet =
            FleetProgress::from_registry(id, Some(&r), &[origin.clone(), done.clone(), pull_idle]);
        assert_eq!(
            (fleet.nodes_alive, fleet.outcome()),
            (2, FleetOutcome::Complete)
        );
        assert_eq!(fleet.nodes.len(), 2, "the idle pull node is not listed");
        // Once it fetched (it has progress), it is waited for like any other node.
        let pull_fetching = node(3, true, &[], Some((1, false)));
        let fleet = FleetProgress::from_registry(
            id,
            Some(&r),
            &[origin.clone(), done.clone(), pull_fetching],
        );
        assert_eq!(
            (fleet.nodes_alive, fleet.outcome()),
            (3, FleetOutcome::Pending)
        );
        let pull_done = node(3, true, &[], Some((4, true)));
        let fleet = FleetProgress::from_registry(id, Some(&r), &[origin, done, pull_done]);
        assert_eq!(
            (fleet.nodes_alive, fleet.outcome()),
            (3, FleetOutcome::Complete)
        );
        // A push node without progress is waited for (it has not started yet).
        let fleet = FleetProgress::from_registry(id, Some(&r), &[node(2, false, &[], None)]);
        assert_eq!(fleet.outcome(), FleetOutcome::Pending);
    }

    #[test]
    fn a_restricted_broadcast_counts_its_audience_and_origin_only() {
        let id = BroadcastId([1; 32]);
        let audience = Audience {
            names: vec!["n2".into()],
            groups: vec!["gpu".into()],
        };
        let r = record(Some(audience));
        let origin = node(1, false, &[], Some((4, true)));
        let named = node(2, false, &[], Some((4, true)));
        let grouped = node(3, false, &["cpu", "gpu"], None);
        let outside = node(4, false, &["cpu"], None);
        let entries = [origin.clone(), named.clone(), grouped, outside.clone()];
        let fleet = FleetProgress::from_registry(id, Some(&r), &entries);
        assert_eq!(
            (fleet.nodes_alive, fleet.outcome()),
            (3, FleetOutcome::Pending)
        );
        let grouped = node(3, false, &["gpu"], Some((4, true)));
        let fleet =
            FleetProgress::from_registry(id, Some(&r), &[origin, named, grouped, outside.clone()]);
        assert_eq!(
            (fleet.nodes_alive, fleet.outcome()),
            (3, FleetOutcome::Complete)
        );
        assert!(!takes_part(&outside.record, Some(&r), None));
        // Not even with progress (a node outside holds nothing of it).
        let p = item(1, 4, false, None);
        assert!(!takes_part(&outside.record, Some(&r), Some(&p)));
        // The origin takes part whatever the audience says.
        let mut origin_outside = outside.record.clone();
        origin_outside.id = r.origin;
        assert!(takes_part(&origin_outside, Some(&r), None));
    }
}

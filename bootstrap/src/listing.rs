//! The JSON shape of `swarmcast registry --json`: one bootstrap's view with ids in hex and
//! addresses as text. The CLI renders it and the harnesses read it back with the same types.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use swarmcast_certs::PeerInfo;
use swarmcast_proto::{Audience, BroadcastState, RegistryView, Role, Status};

/// One bootstrap's whole view (`registry --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryListing {
    /// The bootstrap that answered.
    pub bootstrap: ListedBootstrap,
    /// Every node and bootstrap entry.
    pub nodes: Vec<ListedEntry>,
    /// Every broadcast record.
    pub broadcasts: Vec<ListedBroadcast>,
}

/// The bootstrap that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedBootstrap {
    /// The address it was asked at.
    pub addr: SocketAddr,
    /// Its certificate name.
    pub name: String,
    /// Its id, hex.
    pub id: String,
}

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEntry {
    /// Node id, hex.
    pub id: String,
    /// Certificate name.
    pub name: String,
    /// Certificate role.
    pub role: Role,
    /// Dialable addresses.
    pub addrs: Vec<SocketAddr>,
    /// Version: incarnation.
    pub incarnation: u64,
    /// Version: heartbeat counter.
    pub heartbeat: u64,
    /// Liveness at the answering bootstrap.
    pub status: Status,
    /// Milliseconds since the version last advanced there.
    pub age_ms: u64,
    /// Per-broadcast progress of the latest heartbeat.
    pub progress: Vec<ListedProgress>,
    /// Joined with `--pull`.
    #[serde(default)]
    pub pull: bool,
    /// The groups its certificate names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Progress of one node on one broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedProgress {
    /// Broadcast id, hex.
    pub broadcast: String,
    /// Chunks held durably.
    pub held: u64,
    /// Chunks in the broadcast.
    pub total: u64,
}

/// One broadcast record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedBroadcast {
    /// Broadcast id, hex.
    pub id: String,
    /// Base name of the sent directory.
    pub name: String,
    /// Origin node id, hex.
    pub origin: String,
    /// Bytes of file data.
    pub size: u64,
    /// Chunks.
    pub chunks: u64,
    /// As the origin declares it.
    pub state: BroadcastState,
    /// Record version.
    pub version: u64,
    /// Restricted (`node send --to`): who may receive it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
}

impl RegistryListing {
    /// The view of bootstrap `peer`, asked at `addr`.
    pub fn new(addr: SocketAddr, peer: &PeerInfo, view: &RegistryView) -> Self {
        Self {
            bootstrap: ListedBootstrap {
                addr,
                name: peer.name.clone(),
                id: peer.id.to_hex(),
            },
            nodes: view
                .nodes
                .iter()
                .map(|e| ListedEntry {
                    id: e.record.id.to_hex(),
                    name: e.record.name.clone(),
                    role: e.record.role,
                    addrs: e.record.addrs.clone(),
                    incarnation: e.record.version.incarnation,
                    heartbeat: e.record.version.heartbeat,
                    status: e.status,
                    age_ms: e.age_ms,
                    progress: e
                        .record
                        .progress
                        .iter()
                        .map(|p| ListedProgress {
                            broadcast: p.broadcast.to_hex(),
                            held: p.held,
                            total: p.total,
                        })
                        .collect(),
                    pull: e.record.pull,
                    groups: e.record.groups.clone(),
                })
                .collect(),
            broadcasts: view
                .broadcasts
                .iter()
                .map(|b| ListedBroadcast {
                    id: b.id.to_hex(),
                    name: b.name.clone(),
                    origin: b.origin.to_hex(),
                    size: b.size,
                    chunks: b.chunks,
                    state: b.state,
                    version: b.version,
                    audience: b.audience.clone(),
                })
                .collect(),
        }
    }

    /// Entries with role `role`.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &ListedEntry> {
        self.nodes.iter().filter(move |e| e.role == role)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use swarmcast_proto::{BroadcastId, BroadcastRecord, NodeId, NodeRecord, Progress};
    use swarmcast_proto::{RegistryEntry, Version};

    fn view() -> RegistryView {
        RegistryView {
            nodes: vec![RegistryEntry {
                record: NodeRecord {
                    progress_seq: 0,
                    id: NodeId([1; 32]),
                    name: "n1".into(),
                    role: Role::Node,
                    addrs: vec![SocketAddr::from(([127, 0, 0, 1], 4000))],
                    version: Version {
                        incarnation: 7,
                        heartbeat: 9,
                    },
                    progress: vec![Progress {
                        broadcast: BroadcastId([2; 32]),
                        held: 3,
                        total: 4,
                        complete: false,
                        failed: None,
                    }],
                    pull: true,
                    groups: vec!["gpu".into()],
                },
                status: Status::Suspect,
                age_ms: 1200,
            }],
            broadcasts: vec![BroadcastRecord {
                id: BroadcastId([2; 32]),
                name: "data".into(),
                origin: NodeId([1; 32]),
                size: 10,
                chunks: 4,
                state: BroadcastState::Active,
                version: 1,
                seq: 0,
                published_ms: 0,
                audience: None,
            }],
            cursor: None,
            partial: false,
            removed: Vec::new(),
            progress_ack: None,
        }
    }

    #[test]
    fn the_json_shape_is_the_documented_one_and_reads_back() {
        let peer = PeerInfo {
            id: NodeId([3; 32]),
            name: "b1".into(),
            role: Role::Bootstrap,
            groups: Vec::new(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 5000));
        let listing = RegistryListing::new(addr, &peer, &view());
        let v: serde_json::Value = serde_json::to_value(&listing).unwrap();
        assert_eq!(v["bootstrap"]["addr"], "127.0.0.1:5000");
        assert_eq!(v["bootstrap"]["id"], "03".repeat(32));
        let n = &v["nodes"][0];
        assert_eq!(n["id"], "01".repeat(32));
        assert_eq!(n["role"], "node");
        assert_eq!(n["status"], "suspect");
        assert_eq!(n["addrs"][0], "127.0.0.1:4000");
        assert_eq!(
            (n["incarnation"].as_u64(), n["heartbeat"].as_u64()),
            (Some(7), Some(9))
        );
        assert_eq!(n["progress"][0]["broadcast"], "02".repeat(32));
        assert_eq!(
            (&n["pull"], &n["groups"][0]),
            (&serde_json::json!(true), &serde_json::json!("gpu"))
        );
        assert_eq!(v["broadcasts"][0]["state"], "active");
        assert_eq!(v["broadcasts"][0]["origin"], "01".repeat(32));
        let back: RegistryListing = serde_json::from_value(v).unwrap();
        assert_eq!(back, listing);
        assert_eq!(back.with_role(Role::Node).count(), 1);
        assert_eq!(back.with_role(Role::Bootstrap).count(), 0);
    }
}

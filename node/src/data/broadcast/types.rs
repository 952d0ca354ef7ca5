//! The core's settings, inputs it names and the actions it emits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarmcast_proto::{BroadcastId, BroadcastRecord, Message, NodeId, Progress};

use crate::manifest::{Layout, Manifest, ManifestLimits};
use crate::swarm::SwarmConfig;

/// Who serves the receivers of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Receivers fetch from every neighbour that has a piece; the origin super-seeds.
    #[default]
    Swarm,
    /// Client-server: receivers fetch only from the origin, which serves every request (no
    /// super-seeding). Every node of the fleet must run with it, and each receiver needs the
    /// origin among its neighbours (a full mesh: `--neighbours` at least the fleet size).
    /// The baseline `bench swarm --strategy origin-only` compares the swarm with.
    OriginOnly,
}

impl Strategy {
    /// Whether a transfer may ask `peer` for pieces: anyone in a swarm, only the origin in
    /// client-server mode.
    pub fn may_fetch_from(self, peer: NodeId, origin: Option<NodeId>) -> bool {
        self == Strategy::Swarm || origin == Some(peer)
    }

    /// Whether the origin super-seeds (declines repeats during its first round).
    pub fn super_seeds(self) -> bool {
        self == Strategy::Swarm
    }
}

/// Complete versions of a name a node keeps unless `node join --keep` says otherwise.
pub const DEFAULT_KEEP: usize = 2;

/// Settings of the broadcast core.
#[derive(Debug, Clone)]
pub struct BroadcastConfig {
    /// Who serves receivers.
    pub strategy: Strategy,
    /// Settings of every transfer.
    pub swarm: SwarmConfig,
    /// What a fetched manifest may hold.
    pub limits: ManifestLimits,
    /// Most unknown broadcasts tracked at once (default 64).
    pub max_unknown: usize,
    /// First wait before retrying a failed manifest fetch (default 200 ms).
    pub manifest_retry_min: Duration,
    /// Longest wait between manifest fetch attempts (default 10 s).
    pub manifest_retry_max: Duration,
    /// An unknown broadcast nobody mentions for this long is forgotten (default 60 s; the
    /// registry mentions every live broadcast at each heartbeat).
    pub unknown_ttl: Duration,
    /// Shortest time between two [`DataReport`]s that only carry progress (held chunks,
    /// uploads); a change of lifecycle is reported at once (default 100 ms). Building a report
    /// costs O(broadcasts), so it is never done per event.
    pub report_interval: Duration,
    /// Complete versions kept per name (default 2; at least 1): `node join --keep`.
    pub keep: usize,
    /// Bytes all workspaces on this node may take (`node join --max-disk`; default none).
    pub max_disk: Option<u64>,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Swarm,
            swarm: SwarmConfig::default(),
            limits: ManifestLimits::default(),
            max_unknown: 64,
            manifest_retry_min: Duration::from_millis(200),
            manifest_retry_max: Duration::from_secs(10),
            unknown_ttl: Duration::from_secs(60),
            report_interval: Duration::from_millis(100),
            keep: DEFAULT_KEEP,
            max_disk: None,
        }
    }
}

/// Where to fetch a manifest from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestSource {
    /// A neighbour that announced the broadcast, over its connection.
    Peer(NodeId),
    /// The origin, dialled at its registry address (its certificate must carry `node`).
    Origin {
        /// The origin's id.
        node: NodeId,
        /// Its first registered address.
        addr: SocketAddr,
    },
}

/// What the shell must do. See the [module docs](self) for the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BroadcastAction {
    /// Send `msg` to neighbour `peer` (dropped if its queue is full).
    Send {
        /// The neighbour.
        peer: NodeId,
        /// What to send.
        msg: Message,
    },
    /// Send `msg` to every neighbour.
    Flood {
        /// What to send.
        msg: Message,
    },
    /// Serve `id` from now on: the origin's source, or a receiver's durable chunks.
    Serve {
        /// The broadcast.
        id: BroadcastId,
        /// Whether the origin declines repeats until every chunk was sent once.
        super_seed: bool,
    },
    /// Stop serving `id`.
    Unserve {
        /// The broadcast.
        id: BroadcastId,
    },
    /// Fetch the manifest of `id`.
    FetchManifest {
        /// The broadcast.
        id: BroadcastId,
        /// From whom.
        from: ManifestSource,
    },
    /// Create the workspace of `id` from its verified manifest.
    CreateWorkspace {
        /// The broadcast.
        id: BroadcastId,
        /// The manifest's canonical bytes (checked against `id`).
        bytes: Vec<u8>,
        /// The decoded, validated manifest.
        manifest: Arc<Manifest>,
        /// Its layout.
        layout: Arc<Layout>,
    },
    /// Ask `peer` for chunks `first..first + count` (piece `piece`) of `id`.
    Request {
        /// The broadcast.
        id: BroadcastId,
        /// The neighbour.
        peer: NodeId,
        /// The piece.
        piece: u32,
        /// Its first chunk.
        first: u32,
        /// Its chunks.
        count: u32,
    },
    /// Abort that request; report nothing about it.
    Cancel {
        /// The broadcast.
        id: BroadcastId,
        /// The neighbour.
        peer: NodeId,
        /// The piece.
        piece: u32,
    },
    /// Abort every request of `id`; report nothing about them.
    AbortRequests {
        /// The broadcast.
        id: BroadcastId,
    },
    /// `peer` served bad data too often: close its connection and tell the neighbour core.
    Ban {
        /// The neighbour.
        peer: NodeId,
    },
    /// Make the chunks written to `id`'s workspace durable (group commit).
    Commit {
        /// The broadcast.
        id: BroadcastId,
    },
    /// Finish `id`'s complete workspace (modes, sync, the `complete` marker); which version
    /// `received/<name>` points at is a separate [`Link`](Self::Link).
    Finalize {
        /// The broadcast.
        id: BroadcastId,
    },
    /// Point `received/<name>` at `id`'s data (atomically replacing the link there).
    Link {
        /// The name.
        name: String,
        /// The version it is to point at.
        id: BroadcastId,
    },
    /// Remove `received/<name>` if it points at `id` (no version of the name is left).
    Unlink {
        /// The name.
        name: String,
        /// The version it pointed at.
        id: BroadcastId,
    },
    /// Remove `id`'s directory from the data dir, crash-safe (never an origin's source).
    Remove {
        /// The broadcast.
        id: BroadcastId,
    },
    /// Persist where `id` stands among its name's versions, so that a restart knows it
    /// without the registry.
    SaveVersion {
        /// The broadcast.
        id: BroadcastId,
        /// Its publication.
        publication: Publication,
    },
}

/// Where a version stands among the versions of its name: its publication `seq` (a Lamport
/// clock, see [`swarmcast_proto::BroadcastRecord::seq`]) and when it was published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Publication {
    /// Publication sequence of the version within its name.
    pub seq: u64,
    /// Milliseconds since the Unix epoch by the origin's clock (0: unknown).
    pub published_ms: u64,
}

/// What the data plane tells membership: progress for heartbeats, records to announce, and the
/// traffic matrix row for `node status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataReport {
    /// Chunks held per broadcast not failed.
    pub progress: Vec<Progress>,
    /// Records of the broadcasts this node originates.
    pub records: Vec<BroadcastRecord>,
    /// Chunk bytes uploaded to each peer by this process.
    pub uploaded_to: HashMap<NodeId, u64>,
    /// A broadcast is ready to be received but waits for the registry to name its origin (its
    /// record reaches a node only with a registry view): ask the registry now, not at the next
    /// heartbeat period. A neighbour's `Have` announces a broadcast within a round trip of its
    /// publication, but the record came with the next heartbeat, so receivers sent their first
    /// request 0.1–1.1 s after `node send` started (the lab, 8 receivers), in the phase of their
    /// heartbeats, while the origin's uplink idled.
    pub awaiting_registry: bool,
}

//! The core's settings, inputs it names and the actions it emits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarmcast_proto::{Audience, BroadcastId, BroadcastRecord, Message, NodeId, Progress};

use crate::listing::BroadcastPhase;
use crate::manifest::{Layout, Manifest, ManifestLimits};
use crate::status::RestrictedBroadcast;
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
    /// Shortest time between the starts of two group commits of one broadcast (default 50 ms),
    /// unless every piece has arrived: a commit `fdatasync`s the files written and the
    /// journal, and back to back they cost a receiver about 15% of its CPU on loopback (one
    /// per piece or two). A SIGKILL loses what arrived within about this long.
    pub commit_interval: Duration,
    /// Shortest time between two [`DataReport`]s that only carry progress (held chunks,
    /// uploads); a change of lifecycle is reported at once (default 100 ms). Building a report
    /// costs O(broadcasts), so it is never done per event.
    pub report_interval: Duration,
    /// A transfer that made no progress for this long while connected peers hold chunks it
    /// lacks is reported once ([`BroadcastAction::Stalled`]; default 5 s).
    pub stall_after: Duration,
    /// A stall is reported only if it still holds this much later: a holder whose news just
    /// arrived gets the time to answer (default 1 s).
    pub stall_confirm: Duration,
    /// Timers run at least this often while a transfer is active (default 1 s); a gap of more
    /// than twice it between two runs means this process was not running (SIGSTOP, a
    /// suspended VM), and every stall window starts over, since no peer could be asked then.
    pub tick: Duration,
    /// Complete versions kept per name (default 2; at least 1): `node join --keep`.
    pub keep: usize,
    /// Bytes all workspaces on this node may take (`node join --max-disk`; default none).
    pub max_disk: Option<u64>,
    /// Broadcasts remembered as failed, superseded or cancelled without data here (for
    /// `node ls` and `--wait`, which hear why): the newest this many (default 256). An older
    /// one is forgotten: it leaves `node ls` and the heartbeats, and only its id is kept so
    /// that it is never fetched again.
    pub max_lost: usize,
    /// Pull on demand (`node join --pull`): no manifest is fetched, and so no workspace made,
    /// for a broadcast this node was not asked for with [`Broadcasts::fetch`] (`node fetch`).
    /// Announcements and records are still heard (so that a fetch knows who holds what), and
    /// what the node holds is still served (default `false`: every broadcast is received).
    ///
    /// [`Broadcasts::fetch`]: super::Broadcasts::fetch
    pub pull: bool,
    /// This node's certificate name: what restricted broadcasts' audiences name (default
    /// empty: in no audience of names).
    pub cert_name: String,
    /// This node's certificate groups (`certs issue --group`; default none).
    pub cert_groups: Vec<String>,
}

/// Group-commit period (the default [`BroadcastConfig::commit_interval`]): a commit starts when
/// verified chunks wait, none runs and the last started this long ago (at once when every piece
/// has arrived), so a SIGKILL loses at most what arrived during about this long plus a commit's
/// own time (the chaos `refetch` check's bound) plus the requests in flight.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);

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
            commit_interval: COMMIT_INTERVAL,
            report_interval: Duration::from_millis(100),
            stall_after: Duration::from_secs(5),
            stall_confirm: Duration::from_secs(1),
            tick: Duration::from_secs(1),
            keep: DEFAULT_KEEP,
            max_disk: None,
            max_lost: 256,
            pull: false,
            cert_name: String::new(),
            cert_groups: Vec::new(),
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

/// What the shell must do. The module docs of the broadcast core give the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BroadcastAction {
    /// Send `msg` (a `Have` or `HaveUpdate`) to neighbour `peer`. Never dropped: while its
    /// link is busy, advertisements of one broadcast are merged into one.
    Send {
        /// The neighbour.
        peer: NodeId,
        /// What to send.
        msg: Message,
    },
    /// Send `msg` (a `Have` or `HaveUpdate`) to every neighbour, as [`Send`](Self::Send).
    Flood {
        /// What to send.
        msg: Message,
    },
    /// Serve `id` from now on: the origin's source, or a receiver's chunks verified and written.
    Serve {
        /// The broadcast.
        id: BroadcastId,
        /// Whether the origin declines repeats until every chunk was sent once.
        super_seed: bool,
        /// A restricted broadcast's audience (its manifest's): every request from a peer
        /// whose certificate it does not admit is refused ([`super::serve_verdict`]).
        audience: Option<swarmcast_proto::Audience>,
        /// Its priority (its manifest's): upload slots go to higher priorities first
        /// ([`priority::UploadSlots`](super::priority::UploadSlots)).
        priority: swarmcast_proto::Priority,
    },
    /// Stop serving `id`.
    Unserve {
        /// The broadcast.
        id: BroadcastId,
    },
    /// Keep `id` known to the serving side but refuse every request for it (`Unavailable`:
    /// it failed here), as the origin does once its source changed under the broadcast.
    RefuseServing {
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
        /// Files another broadcast kept here holds whole and identical: hard-link them.
        links: Vec<LocalLink>,
        /// Chunks another broadcast kept here holds with the same hash: copy them locally
        /// (verified against the hash) and make them durable before reporting the workspace,
        /// instead of fetching them. A link or copy that fails is simply fetched.
        local: Vec<LocalCopy>,
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
    /// Point `received/<name>` at `id`'s data (atomically replacing the link there). At most
    /// one `Link` or `Unlink` per name is under way; the shell reports its end
    /// ([`Broadcasts::handle_linked`](super::Broadcasts::handle_linked)).
    Link {
        /// The name.
        name: String,
        /// The version it is to point at.
        id: BroadcastId,
    },
    /// Remove `received/<name>` if it points at `id` (no version of the name is left); the
    /// shell reports its end ([`Broadcasts::handle_unlinked`](super::Broadcasts::handle_unlinked)).
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
    /// A transfer made no progress for [`stall_after`](BroadcastConfig::stall_after) although
    /// connected peers hold chunks it lacks: log it (once per stall) with what it waits for.
    /// Nothing to carry out; it is the invariant that catches a stall early.
    Stalled {
        /// The broadcast.
        id: BroadcastId,
        /// Chunks it still lacks.
        missing: u32,
        /// Connected peers (not banned) holding chunks it lacks, with how many.
        holders: Vec<(NodeId, u32)>,
        /// Per peer the transfer knows: requests outstanding, whether suspect.
        requests: Vec<(NodeId, u32, bool)>,
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

/// One chunk of a new workspace to copy from a broadcast kept on this node (incremental
/// transfer: what did not change between versions never crosses the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalCopy {
    /// The chunk of the new broadcast.
    pub chunk: u32,
    /// The broadcast that holds the same bytes.
    pub from: BroadcastId,
    /// Its chunk.
    pub from_chunk: u32,
}

/// A file of a new workspace identical to one a broadcast kept on this node holds whole (same
/// size, chunk size and chunk hashes): linked rather than copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLink {
    /// The manifest entry of the new broadcast.
    pub entry: u32,
    /// The broadcast that holds it.
    pub from: BroadcastId,
    /// Its manifest entry.
    pub from_entry: u32,
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
    pub uploaded_to: BTreeMap<NodeId, u64>,
    /// A broadcast is ready to be received but waits for the registry to name its origin (its
    /// record reaches a node only with a registry view): ask the registry now, not at the next
    /// heartbeat period. A neighbour's `Have` announces a broadcast within a round trip of its
    /// publication, but the record came with the next heartbeat, so receivers sent their first
    /// request 0.1–1.1 s after `node send` started (the lab, 8 receivers), in the phase of their
    /// heartbeats, while the origin's uplink idled.
    pub awaiting_registry: bool,
    /// The restricted broadcasts this node holds (its own and those it receives), with their
    /// audience, for `node status`.
    pub restricted: Vec<RestrictedBroadcast>,
    /// The broadcasts this node holds whose priority is not normal, for `node status`.
    pub prioritized: Vec<crate::status::PrioritizedBroadcast>,
}

/// One line of `node ls` (also its JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BroadcastInfo {
    /// Hex broadcast id.
    pub id: String,
    /// Directory name.
    pub name: String,
    /// Where it stands here; in JSON (and on the control socket) `"receiving"`, `"complete"`,
    /// `"seeding"`, `"failed"`, `"superseded"` or `"cancelled"`.
    pub state: BroadcastPhase,
    /// Publication sequence of this version among its name's versions (0: unknown yet).
    #[serde(default)]
    pub seq: u64,
    /// When its origin published it, ms since the Unix epoch (0: unknown).
    #[serde(default)]
    pub published_ms: u64,
    /// Whether `received/<name>` points at this version.
    #[serde(default)]
    pub current: bool,
    /// Chunks durably held.
    pub chunks_held: u64,
    /// Chunks in the broadcast.
    pub chunks_total: u64,
    /// Bytes durably held.
    pub bytes_held: u64,
    /// Bytes in the broadcast.
    pub bytes_total: u64,
    /// Where the copy is: `received/<name>` for the current version, the workspace's data
    /// directory for the others, the source dir at the origin (absolute when the data dir is).
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Chunk payload bytes received from peers by this process (duplicates and bad ones included).
    pub fetched_bytes: u64,
    /// Chunks already durable when this process started (resume).
    pub resumed_chunks: u64,
    /// Chunk payload bytes uploaded to peers by this process.
    pub uploaded_bytes: u64,
    /// Who may receive it, for a restricted broadcast (`node send --to`); absent (`null` is
    /// never written) for an unrestricted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
    /// `node send --priority`, from the manifest (normal for a broadcast whose manifest this
    /// node never held). Always written in JSON: `"high"`, `"normal"` or `"low"`.
    #[serde(default)]
    pub priority: swarmcast_proto::Priority,
}

impl BroadcastInfo {
    /// Whether this node holds the whole broadcast (complete, or the origin).
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }
}

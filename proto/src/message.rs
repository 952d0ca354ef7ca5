//! Every message that crosses the wire, control plane and data plane.
//!
//! Messages are encoded as *named* msgpack (structs as maps keyed by field name, enum variants
//! with a body as a map `{variant: body}`, variants without one as their name); see the crate
//! docs for the details and the reason. Adding an optional field (with `#[serde(default)]`) or a
//! new variant keeps `swarmcast/1`; anything else bumps the ALPN.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ids::{BroadcastId, NodeId, Role, Version};

/// One protocol message. The variant says what it is; see each body for who sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    // ----- control plane: node -> bootstrap -----
    /// First message of a node to a bootstrap. Answered by [`Message::Registered`].
    Register(Register),
    /// Periodic liveness and progress. Answered by [`Message::Ack`].
    Heartbeat(Heartbeat),
    /// Ask for the whole registry. Answered by [`Message::Registry`].
    Lookup(Lookup),
    /// Register a broadcast (origin only). Answered by [`Message::Ack`].
    Announce(Announce),

    // ----- control plane: bootstrap -> node -----
    /// Answer to [`Message::Register`].
    Registered(Registered),
    /// Answer to a request that carries nothing back.
    Ack(Ack),
    /// A bootstrap's whole view of the registry (peer list).
    Registry(RegistryView),

    // ----- control plane: bootstrap <-> bootstrap (anti-entropy) -----
    /// Versions of everything the sender holds. Answered by [`Message::Delta`].
    Digest(Digest),
    /// Entries the receiver lacks, and what the sender wants back.
    Delta(Delta),

    // ----- either plane -----
    /// Liveness probe; also measures RTT. Answered by [`Message::Pong`] with the same nonce.
    Ping(Ping),
    /// Answer to [`Message::Ping`].
    Pong(Ping),
    /// A typed refusal. The sender closes the stream after it.
    Error(ErrorMsg),

    // ----- data plane: node <-> node -----
    /// Which chunks of a broadcast the sender holds, as a bitfield.
    Have(Have),
    /// Chunks the sender has newly acquired.
    HaveUpdate(HaveUpdate),
    /// Ask for a run of consecutive chunks (a piece). Each is answered by its own
    /// [`Message::ChunkData`] and payload, in order; a refusal is one [`Message::Error`].
    ChunkRequest(ChunkRequest),
    /// Header of a chunk; exactly `len` raw bytes follow the frame.
    ChunkData(ChunkHeader),
    /// Ask for a broadcast's manifest. Answered by [`Message::ManifestData`].
    ManifestRequest(ManifestRequest),
    /// Header of a manifest; exactly `len` raw bytes (the canonical manifest) follow the frame.
    ManifestData(ManifestHeader),
}

/// A node's registration. `id` is a claim checked against the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The NodeId the sender claims; refused unless it equals its certificate's.
    pub id: NodeId,
    /// Incarnation of this process (rises at every start).
    pub incarnation: u64,
    /// Addresses other nodes can dial.
    pub addrs: Vec<SocketAddr>,
    /// The node was joined with `--pull`: it receives only what it asks for (see
    /// [`NodeRecord::pull`]). Omitted when false (older nodes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pull: bool,
}

/// Answer to [`Register`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The NodeId the bootstrap recorded (from the certificate).
    pub id: NodeId,
    /// Addresses of every bootstrap the answering one knows, itself included.
    pub bootstraps: Vec<SocketAddr>,
}

/// A heartbeat. `id` is a claim checked against the certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The NodeId the sender claims.
    pub id: NodeId,
    /// The sender's current version.
    pub version: Version,
    /// Addresses other nodes can dial.
    pub addrs: Vec<SocketAddr>,
    /// Per-broadcast progress: with [`Heartbeat::progress_span`], the items that changed in
    /// that span of the sender's progress stream; without (older nodes), every item, replacing
    /// what the bootstrap held.
    #[serde(default)]
    pub progress: Vec<Progress>,
    /// Where `progress` and `progress_removed` sit in the sender's stream of progress changes
    /// (see [`ProgressSpan`]). Absent (older nodes): `progress` is the whole set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_span: Option<ProgressSpan>,
    /// With a span: broadcasts the sender forgot within it (their items are to be dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress_removed: Vec<BroadcastId>,
    /// Set: answer with [`Message::Registry`] carrying what changed since this cursor (the
    /// whole registry if the cursor is not from the answering bootstrap's current run, e.g.
    /// [`RegistryCursor::default`]). Unset (older nodes): answer [`Message::Ack`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_since: Option<RegistryCursor>,
    /// The node was joined with `--pull` (as in its [`Register`]; the bootstrap builds the
    /// record from each heartbeat). Omitted when false (older nodes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pull: bool,
}

/// A position in one bootstrap's stream of registry changes.
///
/// `epoch` names the bootstrap's run (its incarnation); `seq` counts its changes. A cursor is
/// meaningful only to the bootstrap run that issued it; any other answers with everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegistryCursor {
    /// The issuing bootstrap's run; 0 is never issued.
    pub epoch: u64,
    /// Changes up to this one are included.
    pub seq: u64,
}

/// A span of a node's stream of progress changes, carried by a [`Heartbeat`].
///
/// A node numbers every change of its progress (an item added, changed or forgotten) 1, 2, 3...
/// within one incarnation; the items in a heartbeat with span `(since, upto]` are the latest
/// state of every broadcast whose change is numbered in that span, and `progress_removed` the
/// broadcasts forgotten in it. A bootstrap holding the node's progress as of `w` (its
/// [`NodeRecord::progress_seq`], same incarnation) applies the span iff `since <= w < upto`,
/// and then holds it as of `upto`. `since == 0` starts from nothing: the held items are
/// replaced (a whole set, or the first page of one: a whole set is sent in pages of bounded
/// size, each continuing the one before). Any other span is ignored. The answer's
/// [`RegistryView::progress_ack`] tells the node where the bootstrap stands, so that a lost
/// answer, a restarted or replaced bootstrap, or a replica that lags is caught up from its own
/// point (or from nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressSpan {
    /// The changes apply on top of the state as of this change number (0: on top of nothing).
    pub since: u64,
    /// After them the receiver holds the state as of this change number.
    pub upto: u64,
}

/// Progress of one broadcast at one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Which broadcast.
    pub broadcast: BroadcastId,
    /// Chunks held durably.
    pub held: u64,
    /// Chunks in the broadcast.
    pub total: u64,
    /// The node holds the whole broadcast: it published it under `received/`, or it is the
    /// origin. Needed because a broadcast of empty files has no chunks, so `held == total`
    /// cannot tell done from not started. Omitted when false (older peers: derive it from
    /// `held == total > 0`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub complete: bool,
    /// Why this node will not complete the broadcast (no space, a bad manifest, a failed
    /// commit...): it refused or failed it. Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Ask for the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {}

/// Empty acknowledgement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// Register or update a broadcast record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The record; its `origin` must be the sender's certificate NodeId.
    pub record: BroadcastRecord,
}

/// A node's registry entry as it travels between processes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Identity (from the certificate at the bootstrap that first accepted it).
    pub id: NodeId,
    /// Certificate name.
    pub name: String,
    /// Certificate role.
    pub role: Role,
    /// Dialable addresses.
    pub addrs: Vec<SocketAddr>,
    /// Merge key: higher wins.
    pub version: Version,
    /// Per-broadcast progress: the whole set, as the node's heartbeats built it up.
    #[serde(default)]
    pub progress: Vec<Progress>,
    /// The change number of the node's progress stream (this incarnation) that `progress`
    /// reflects (see [`ProgressSpan`]); 0 (omitted): a whole set from a node that predates
    /// spans, or nothing yet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub progress_seq: u64,
    /// The node pulls (`node join --pull`): it receives a broadcast only once it asked for it
    /// (`node send --wait` does not wait for it until it holds or reports something of that
    /// broadcast). Set from the node's own `Register` and `Heartbeat`; omitted when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pull: bool,
    /// The groups its certificate names (`certs issue --group`), written by the bootstrap from
    /// the certificate of the connection, never taken from a message. Omitted when empty (and
    /// from bootstraps that predate groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A record with the time since its version last advanced at the sender.
///
/// Freshness travels as an age, never a wall-clock time, so clock skew cannot revive or kill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryUpdate {
    /// The record.
    pub record: NodeRecord,
    /// Milliseconds since the sender saw this version advance.
    pub age_ms: u64,
}

/// Liveness as one bootstrap observes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Version advanced recently.
    Alive,
    /// No advance for the suspect timeout.
    Suspect,
    /// No advance for the dead timeout.
    Dead,
}

/// One line of a bootstrap's registry view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The record.
    pub record: NodeRecord,
    /// Liveness as the answering bootstrap sees it.
    pub status: Status,
    /// Milliseconds since the version last advanced, at the answering bootstrap.
    pub age_ms: u64,
}

/// A bootstrap's view: whole, or (`partial`) what changed since a [`RegistryCursor`].
///
/// A partial view lists the entries whose record (apart from its heartbeat counter) or status
/// changed, the broadcast records that changed, and the ids of entries dropped since; the
/// receiver applies it to its copy (replacing entries by id). In a partial view, the
/// heartbeat counter and age of an entry are those at its latest listed change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryView {
    /// Every node and bootstrap entry (partial: the changed ones).
    pub nodes: Vec<RegistryEntry>,
    /// Every broadcast record (partial: the changed ones).
    pub broadcasts: Vec<BroadcastRecord>,
    /// Where this view brings its receiver; absent in answers to [`Message::Lookup`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<RegistryCursor>,
    /// Only what changed since the cursor the request carried.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
    /// Partial: entries dropped since that cursor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<NodeId>,
    /// In answers to a [`Heartbeat`]: the change number of the sender's progress stream that
    /// the answering bootstrap now holds (its [`NodeRecord::progress_seq`], 0 if it holds none
    /// of this incarnation). The next heartbeat continues from it. Absent: a bootstrap that
    /// predates [`ProgressSpan`]s, which wants the whole set every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_ack: Option<u64>,
}

/// State of a broadcast as its origin declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastState {
    /// Being distributed (or complete and still served).
    Active,
    /// The origin gave up (for example, the source changed under it).
    Failed,
    /// The origin cancelled it (`node cancel`): receivers stop and free the space.
    Cancelled,
}

/// A broadcast in the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastRecord {
    /// BLAKE3 of the canonical manifest.
    pub id: BroadcastId,
    /// Base name of the sent directory.
    pub name: String,
    /// NodeId of the node that ran `node send`.
    pub origin: NodeId,
    /// Total bytes of file data.
    pub size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Declared state.
    pub state: BroadcastState,
    /// Merge key: the origin bumps it on every change; higher wins.
    pub version: u64,
    /// Publication sequence of this version of `name`, a Lamport clock: the origin sets it to
    /// one more than the highest `seq` of any record of the same name it knows (registry view
    /// and its own). Versions of a name are ordered by `(seq, origin, id)`, highest newest; two
    /// origins publishing the same name at once get the same `seq` and the higher origin id
    /// wins. 0 (omitted on the wire): a record from a node that predates versions, the oldest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// When the origin published this version, in milliseconds since the Unix epoch by the
    /// origin's clock: shown by `node ls`, never used to order versions (`seq` does). 0
    /// (omitted on the wire): unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub published_ms: u64,
    /// Set: a restricted broadcast (`node send --to`), for these nodes and groups only (and
    /// its origin). A copy of the manifest's own audience, for nodes that do not hold the
    /// manifest: a node outside it fetches nothing of the broadcast, and `node send --wait`
    /// counts only the nodes inside. Omitted when unrestricted (older origins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
}

/// Who may receive a restricted broadcast: the nodes named, and the nodes whose certificate
/// names one of the groups (`certs issue --group`). Its origin always may. Both lists sorted
/// and without duplicates; each omitted when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Audience {
    /// Certificate names (DNS names) of nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Groups, as certificates carry them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Audience {
    /// Whether a node with certificate name `name` and certificate groups `groups` is in
    /// this audience: it is named, or one of its groups is. (The origin is in every audience
    /// of its own broadcasts; callers that know it check that first.) The one rule, for every
    /// node serving the broadcast, every node deciding whether to fetch it, and `--wait`.
    pub fn admits(&self, name: &str, groups: &[String]) -> bool {
        self.names.iter().any(|n| n == name) || groups.iter().any(|g| self.groups.contains(g))
    }

    /// Sorted and without duplicates (the form manifests and records carry).
    pub fn canonical(mut self) -> Self {
        self.names.sort();
        self.names.dedup();
        self.groups.sort();
        self.groups.dedup();
        self
    }

    /// In [`canonical`](Self::canonical) form.
    pub fn is_canonical(&self) -> bool {
        self.names.windows(2).all(|w| w[0] < w[1]) && self.groups.windows(2).all(|w| w[0] < w[1])
    }
}

/// How a broadcast competes with others for a node's links (`node send --priority`): a
/// higher one is given request budget and upload slots first, equal ones share them. Carried
/// in the manifest (so the broadcast id binds it); absent means [`Priority::Normal`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Gets what the others leave, with a small floor so that it is never starved.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Gets the bandwidth first.
    High,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Whether this is the default (omitted from manifests).
    pub fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }

    /// `"high"`, `"normal"` or `"low"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Audience {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.names.iter().map(String::as_str);
        let groups = self.groups.iter().map(|g| format!("group:{g}"));
        let all: Vec<String> = names.map(str::to_owned).chain(groups).collect();
        f.write_str(&all.join(", "))
    }
}

impl BroadcastRecord {
    /// The key that orders versions of one name: higher is newer.
    pub fn version_key(&self) -> (u64, NodeId, BroadcastId) {
        (self.seq, self.origin, self.id)
    }
}

/// Anti-entropy step one: what the sender holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// (node, version) for every entry.
    pub nodes: Vec<(NodeId, Version)>,
    /// (broadcast, version) for every record.
    pub broadcasts: Vec<(BroadcastId, u64)>,
}

/// Anti-entropy step two (and three): entries, plus what the sender wants back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Entries newer at the sender than in the digest it answers.
    pub nodes: Vec<EntryUpdate>,
    /// Broadcast records newer at the sender.
    pub broadcasts: Vec<BroadcastRecord>,
    /// Nodes for which the digest was newer: send them back.
    #[serde(default)]
    pub want_nodes: Vec<NodeId>,
    /// Broadcasts for which the digest was newer: send them back.
    #[serde(default)]
    pub want_broadcasts: Vec<BroadcastId>,
}

/// Ping or pong body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed back unchanged.
    pub nonce: u64,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The certificate does not allow this (wrong role, another node's entry, or a restricted
    /// broadcast whose audience the certificate is not in).
    Forbidden,
    /// The request is malformed or not expected here.
    BadRequest,
    /// The thing asked for is not known here.
    NotFound,
    /// Temporarily unable to serve (overloaded, shutting down).
    Unavailable,
    /// The origin declines: the chunk is already in the swarm, fetch it from a peer.
    Elsewhere,
}

/// A typed refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

/// Index of a chunk within a broadcast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkIndex(pub u32);

/// A full bitfield of held chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Have {
    /// Which broadcast.
    pub broadcast: BroadcastId,
    /// Number of chunks; `bits` has exactly `ceil(chunks / 8)` bytes, MSB first.
    pub chunks: u32,
    /// The bitfield.
    #[serde(with = "serde_bytes")]
    pub bits: Vec<u8>,
    /// The sender is the broadcast's origin (it says so of itself only). A receiver may take
    /// this as the origin until the registry's record, whose origin the bootstraps checked
    /// against the announcer's certificate, says otherwise: so a transfer starts as soon as the
    /// origin's `Have` arrives, without waiting a heartbeat for the record. Omitted when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_origin: bool,
    /// The publication `seq` of this version of its name, as the sender knows it (0, omitted:
    /// unknown). Taken, like `from_origin`, until the registry's record says: so a receiver
    /// can place a version among its name's versions as soon as it has it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The broadcast's audience as the sender knows it (its manifest's), when restricted. A
    /// node outside it fetches nothing (not even the manifest); taken only until the
    /// registry's record says. Omitted when unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Audience>,
}

/// Chunks newly held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaveUpdate {
    /// Which broadcast.
    pub broadcast: BroadcastId,
    /// The new chunks.
    pub chunks: Vec<ChunkIndex>,
}

/// Ask for `count` consecutive chunks from `index` (at most [`MAX_CHUNKS_PER_REQUEST`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// Which broadcast.
    pub broadcast: BroadcastId,
    /// The first chunk.
    pub index: ChunkIndex,
    /// How many consecutive chunks, from `index` (batching for small files). Each is answered by
    /// its own [`ChunkHeader`] and payload, in order, on the same stream. Absent means 1.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// Most chunks one [`ChunkRequest`] may ask for.
pub const MAX_CHUNKS_PER_REQUEST: u32 = 1024;

/// Header of a chunk payload; `len` raw bytes follow the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// Which broadcast.
    pub broadcast: BroadcastId,
    /// Which chunk.
    pub index: ChunkIndex,
    /// Payload length in bytes.
    pub len: u32,
}

/// Ask for a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRequest {
    /// Which broadcast.
    pub broadcast: BroadcastId,
}

/// Header of a manifest payload; `len` raw bytes follow the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    /// Which broadcast; the payload's BLAKE3 must equal it.
    pub broadcast: BroadcastId,
    /// Payload length in bytes.
    pub len: u64,
}

impl Message {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Register(_) => "register",
            Message::Heartbeat(_) => "heartbeat",
            Message::Lookup(_) => "lookup",
            Message::Announce(_) => "announce",
            Message::Registered(_) => "registered",
            Message::Ack(_) => "ack",
            Message::Registry(_) => "registry",
            Message::Digest(_) => "digest",
            Message::Delta(_) => "delta",
            Message::Ping(_) => "ping",
            Message::Pong(_) => "pong",
            Message::Error(_) => "error",
            Message::Have(_) => "have",
            Message::HaveUpdate(_) => "have_update",
            Message::ChunkRequest(_) => "chunk_request",
            Message::ChunkData(_) => "chunk_data",
            Message::ManifestRequest(_) => "manifest_request",
            Message::ManifestData(_) => "manifest_data",
        }
    }

    /// A typed error message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Message::Error(ErrorMsg {
            code,
            message: message.into(),
        })
    }
}

//! The data-plane shell: one actor owns every broadcast this node knows (the origin's sources
//! and the receivers' workspaces with their [`Transfer`] cores), turns neighbour messages and
//! finished requests into core inputs, and carries out the cores' actions with request tasks.
//!
//! Flow of a broadcast:
//! 1. The origin publishes (`node send`): manifest built from the directory, saved, served from
//!    the source in place, announced to the registry, and a full `Have` sent to every neighbour.
//! 2. A node hearing a `Have` (or seeing a registry record) for an unknown id fetches the manifest
//!    from that peer (or dials the origin), checks it against the id, validates it, creates its
//!    workspace and sends its own `Have` to every neighbour: the flood, deduplicated by id.
//! 3. Pieces are requested as the core decides, verified and written as they arrive, and made
//!    durable by a group commit every [`COMMIT_INTERVAL`]; only durable pieces are advertised
//!    (`HaveUpdate`) and served. When all are durable the directory is published under
//!    `received/<name>`, and the node keeps serving.

mod fetch;
pub(crate) mod serve;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use swarmcast_proto::{
    BroadcastId, BroadcastRecord, BroadcastState, ChunkIndex, Have, HaveUpdate, Limits, Message,
    NodeId, Progress, RegistryEntry, Role, Status,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, error, info, warn};

use crate::bitfield::Bitfield;
use crate::daemon::{Shared, Strategy};
use crate::manifest::{Layout, Manifest, ManifestLimits, manifest_id};
use crate::store::{self, Source, StoredKind, Workspace};
use crate::swarm::{SwarmAction, SwarmConfig, Transfer};
use fetch::Outcome;
use serve::{Catalog, Reader, Servable, ServeEvent};

/// Group-commit period of received chunks.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(50);
/// Most unknown broadcasts tracked at once (bounds what peers can make us remember).
const MAX_UNKNOWN: usize = 64;
/// Per-attempt timeout of a manifest fetch.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a transfer may ask `peer` for pieces: anyone in a swarm, only the origin in
/// client-server mode.
fn may_fetch_from(strategy: Strategy, peer: NodeId, origin: Option<NodeId>) -> bool {
    strategy == Strategy::Swarm || origin == Some(peer)
}

/// Inputs of the data-plane actor.
#[derive(Debug)]
pub(crate) enum DataInput {
    /// A neighbour connection is up (or replaced).
    PeerUp {
        id: NodeId,
        conn: quinn::Connection,
        tx: mpsc::Sender<Message>,
    },
    /// A neighbour is gone.
    PeerDown { id: NodeId },
    /// A data-plane message on a neighbour's control stream.
    PeerMessage { id: NodeId, msg: Message },
    /// A fresh registry view.
    Registry {
        nodes: Vec<RegistryEntry>,
        broadcasts: Vec<BroadcastRecord>,
    },
    /// `node send`.
    Publish {
        dir: PathBuf,
        chunk_size: u32,
        /// Whose permissions the directory is read with.
        read_as: crate::manifest::ReadAs,
        reply: oneshot::Sender<Result<PublishInfo, String>>,
    },
    /// `node ls`.
    List {
        reply: oneshot::Sender<Vec<BroadcastInfo>>,
    },
    /// Internal: a manifest was built by a blocking task.
    Built {
        result: Result<(Manifest, Vec<u8>, PathBuf), String>,
        reply: oneshot::Sender<Result<PublishInfo, String>>,
    },
    /// Internal: a manifest fetch ended.
    ManifestFetched {
        id: BroadcastId,
        result: Result<Vec<u8>, String>,
    },
    /// Internal: a piece request ended.
    PieceDone {
        id: BroadcastId,
        peer: NodeId,
        piece: u32,
        outcome: Outcome,
        bytes: u64,
    },
    /// Internal: a group commit ended.
    Committed {
        id: BroadcastId,
        result: Result<Vec<u32>, String>,
    },
    /// Internal: publication under `received/` ended.
    Finalized {
        id: BroadcastId,
        result: Result<PathBuf, String>,
    },
    /// From the serving side.
    Serve(ServeEvent),
}

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
}

/// One line of `node ls` (also its JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastInfo {
    /// Hex broadcast id.
    pub id: String,
    /// Directory name.
    pub name: String,
    /// "receiving", "complete", "seeding" or "failed".
    pub state: String,
    /// Chunks durably held.
    pub chunks_held: u64,
    /// Chunks in the broadcast.
    pub chunks_total: u64,
    /// Bytes durably held.
    pub bytes_held: u64,
    /// Bytes in the broadcast.
    pub bytes_total: u64,
    /// Where the copy is: `received/<name>` once complete, the source dir at the origin.
    pub path: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Chunk payload bytes received from peers by this process (duplicates and bad ones included).
    pub fetched_bytes: u64,
    /// Chunks already durable when this process started (resume).
    pub resumed_chunks: u64,
    /// Chunk payload bytes uploaded to peers by this process.
    pub uploaded_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Seeding,
    Receiving,
    Complete,
    Failed(String),
}

struct Bcast {
    id: BroadcastId,
    manifest: Arc<Manifest>,
    layout: Arc<Layout>,
    state: State,
    origin: Option<NodeId>,
    source: Option<PathBuf>,
    ws: Option<Arc<Workspace>>,
    transfer: Option<Transfer>,
    held_chunks: Bitfield,
    in_flight: HashMap<(NodeId, u32), AbortHandle>,
    committing: bool,
    dirty: bool,
    finalizing: bool,
    path: Option<PathBuf>,
    fetched_bytes: u64,
    uploaded_bytes: u64,
    resumed_chunks: u64,
    version: u64,
}

impl Bcast {
    /// A broadcast in `state` holding `held_chunks`, with nothing in flight and no counters yet.
    fn new(
        id: BroadcastId,
        manifest: Arc<Manifest>,
        layout: Arc<Layout>,
        state: State,
        held_chunks: Bitfield,
    ) -> Self {
        Self {
            id,
            manifest,
            layout,
            state,
            origin: None,
            source: None,
            ws: None,
            transfer: None,
            held_chunks,
            in_flight: HashMap::new(),
            committing: false,
            dirty: false,
            finalizing: false,
            path: None,
            fetched_bytes: 0,
            uploaded_bytes: 0,
            resumed_chunks: 0,
            version: 0,
        }
    }

    fn bytes_held(&self) -> u64 {
        if self.held_chunks.is_complete() {
            return self.layout.total_bytes;
        }
        self.held_chunks
            .iter_ones()
            .map(|c| u64::from(self.layout.chunks[c as usize].len))
            .sum()
    }

    fn piece_bitfield(&self, chunks: &Bitfield) -> Bitfield {
        let mut p = Bitfield::new(self.layout.piece_count());
        for piece in 0..self.layout.piece_count() {
            if self.layout.chunks_of(piece).all(|c| chunks.get(c)) {
                p.set(piece);
            }
        }
        p
    }

    fn have(&self) -> Message {
        Message::Have(Have {
            broadcast: self.id,
            chunks: self.layout.chunk_count(),
            bits: self.held_chunks.as_bytes().to_vec(),
        })
    }

    fn info(&self) -> BroadcastInfo {
        let (state, error) = match &self.state {
            State::Seeding => ("seeding", None),
            State::Receiving => ("receiving", None),
            State::Complete => ("complete", None),
            State::Failed(e) => ("failed", Some(e.clone())),
        };
        let path = self
            .path
            .as_ref()
            .or(self.source.as_ref())
            .map(|p| p.display().to_string());
        BroadcastInfo {
            id: self.id.to_hex(),
            name: self.manifest.name.clone(),
            state: state.to_owned(),
            chunks_held: u64::from(self.held_chunks.count_ones()),
            chunks_total: u64::from(self.layout.chunk_count()),
            bytes_held: self.bytes_held(),
            bytes_total: self.layout.total_bytes,
            path,
            error,
            fetched_bytes: self.fetched_bytes,
            resumed_chunks: self.resumed_chunks,
            uploaded_bytes: self.uploaded_bytes,
        }
    }

    fn record(&self, me: NodeId) -> Option<BroadcastRecord> {
        self.source.as_ref()?;
        Some(BroadcastRecord {
            id: self.id,
            name: self.manifest.name.clone(),
            origin: me,
            size: self.layout.total_bytes,
            chunks: u64::from(self.layout.chunk_count()),
            state: if matches!(self.state, State::Failed(_)) {
                BroadcastState::Failed
            } else {
                BroadcastState::Active
            },
            version: self.version,
        })
    }
}

struct Peer {
    conn: quinn::Connection,
    tx: mpsc::Sender<Message>,
}

/// A broadcast whose manifest we do not have yet.
struct Unknown {
    /// Peers that said they have it, not yet asked.
    sources: Vec<NodeId>,
    fetching: bool,
    attempts: u32,
}

pub(crate) struct DataPlane {
    shared: Arc<Shared>,
    tx: mpsc::Sender<DataInput>,
    peers_tx: mpsc::Sender<crate::peers::Input>,
    catalog: Arc<Catalog>,
    limits: ManifestLimits,
    swarm: SwarmConfig,
    broadcasts: HashMap<BroadcastId, Bcast>,
    failed: HashMap<BroadcastId, (String, String)>,
    unknown: HashMap<BroadcastId, Unknown>,
    peers: HashMap<NodeId, Peer>,
    /// Latest have bitfields (chunks) per broadcast and peer.
    haves: HashMap<BroadcastId, HashMap<NodeId, Bitfield>>,
    records: HashMap<BroadcastId, BroadcastRecord>,
    nodes: Vec<RegistryEntry>,
    /// Chunk bytes uploaded to each peer by this process (the traffic matrix's row).
    uploaded_to: HashMap<NodeId, u64>,
    seed: u64,
    metrics: crate::metrics::Metrics,
}

impl DataPlane {
    pub(crate) fn new(
        shared: Arc<Shared>,
        tx: mpsc::Sender<DataInput>,
        peers_tx: mpsc::Sender<crate::peers::Input>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            shared,
            tx,
            peers_tx,
            catalog,
            limits: ManifestLimits::default(),
            swarm: SwarmConfig::default(),
            broadcasts: HashMap::new(),
            failed: HashMap::new(),
            unknown: HashMap::new(),
            peers: HashMap::new(),
            haves: HashMap::new(),
            records: HashMap::new(),
            nodes: Vec::new(),
            uploaded_to: HashMap::new(),
            seed: rand::random(),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// Count into `metrics` (`--metrics`).
    pub(crate) fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reload every broadcast of the data dir: origins resume seeding, receivers resume fetching.
    pub(crate) fn resume(&mut self) {
        let data_dir = self.shared.config.data_dir.clone();
        let stored = match store::list(&data_dir) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot list stored broadcasts");
                return;
            }
        };
        for s in stored {
            let id = s.id;
            let result = match s.kind {
                StoredKind::Origin { source } => self.resume_origin(id, source),
                StoredKind::Receiver { .. } => self.resume_receiver(id),
            };
            if let Err(e) = result {
                warn!(broadcast = %id.short(), error = %e, "cannot resume broadcast");
                self.failed.insert(id, (String::new(), e));
            }
        }
    }

    fn resume_origin(&mut self, id: BroadcastId, source: PathBuf) -> Result<(), String> {
        let path = self
            .shared
            .config
            .data_dir
            .join("broadcasts")
            .join(id.to_hex())
            .join("manifest");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest = Manifest::decode(&bytes, &id, &self.limits).map_err(|e| e.to_string())?;
        info!(broadcast = %id.short(), name = %manifest.name, source = %source.display(), "resuming as origin");
        self.add_origin(id, manifest, bytes, source);
        Ok(())
    }

    fn resume_receiver(&mut self, id: BroadcastId) -> Result<(), String> {
        let ws = Workspace::open(&self.shared.config.data_dir, id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "workspace vanished".to_owned())?;
        let ws = Arc::new(ws);
        let held = ws.held();
        info!(broadcast = %id.short(), name = %ws.manifest().name, held = held.count_ones(), total = held.len(), "resuming as receiver");
        self.add_receiver(id, ws, None);
        if let Some(b) = self.broadcasts.get_mut(&id) {
            b.resumed_chunks = u64::from(b.held_chunks.count_ones());
        }
        Ok(())
    }

    fn add_origin(&mut self, id: BroadcastId, manifest: Manifest, bytes: Vec<u8>, source: PathBuf) {
        let manifest = Arc::new(manifest);
        let layout = Arc::new(Layout::new(&manifest));
        let src = Arc::new(Source::new(
            source.clone(),
            manifest.clone(),
            layout.clone(),
        ));
        let servable = Arc::new(Servable {
            manifest_bytes: Arc::new(bytes.clone()),
            layout: layout.clone(),
            reader: Reader::Source(src),
            failed: Default::default(),
            // Client-server serves every request: no first round that declines repeats.
            first_round: (self.shared.config.strategy == Strategy::Swarm)
                .then(|| std::sync::Mutex::new(serve::SuperSeed::new(layout.chunk_count()))),
        });
        self.catalog.insert(id, servable);
        let held = Bitfield::full(layout.chunk_count());
        let mut b = Bcast::new(id, manifest, layout, State::Seeding, held);
        b.origin = Some(self.shared.id);
        b.source = Some(source);
        b.version = 1;
        let have = b.have();
        self.broadcasts.insert(id, b);
        self.unknown.remove(&id);
        self.flood(have);
    }

    /// Start receiving into `ws`. `origin` may be unknown yet (learned from the registry).
    fn add_receiver(&mut self, id: BroadcastId, ws: Arc<Workspace>, origin: Option<NodeId>) {
        let manifest = ws.manifest().clone();
        let layout = ws.layout().clone();
        let held_chunks = ws.held();
        let servable = Arc::new(Servable {
            manifest_bytes: Arc::new(manifest.to_bytes()),
            layout: layout.clone(),
            reader: Reader::Workspace(ws.clone()),
            failed: Default::default(),
            first_round: None,
        });
        self.catalog.insert(id, servable);
        let complete = ws.is_complete();
        // Complete only once published under `received/` (see `Finalized`).
        let mut b = Bcast::new(id, manifest, layout, State::Receiving, held_chunks);
        b.origin = origin.or_else(|| self.records.get(&id).map(|r| r.origin));
        b.ws = Some(ws);
        if complete {
            b.finalizing = true;
            self.spawn_finalize(&b);
        }
        let have = b.have();
        self.broadcasts.insert(id, b);
        self.unknown.remove(&id);
        self.start_transfer(id);
        self.flood(have);
    }

    /// Create the transfer core once the origin is known.
    fn start_transfer(&mut self, id: BroadcastId) {
        let strategy = self.shared.config.strategy;
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        if b.transfer.is_some() || b.state != State::Receiving {
            return;
        }
        if b.origin.is_none() {
            b.origin = self.records.get(&id).map(|r| r.origin);
        }
        let Some(origin) = b.origin else {
            debug!(broadcast = %id.short(), "waiting for the registry to name the origin");
            return;
        };
        let pieces: Vec<u64> = b.layout.pieces.iter().map(|p| p.bytes).collect();
        let held = b.piece_bitfield(&b.held_chunks);
        self.seed = self.seed.wrapping_add(1);
        let mut t = Transfer::new(self.swarm.clone(), pieces, held, origin, self.seed);
        let now = Instant::now();
        if let Some(haves) = self.haves.get(&id) {
            for (peer, chunks) in haves {
                if self.peers.contains_key(peer) && may_fetch_from(strategy, *peer, Some(origin)) {
                    t.handle_peer_have(now, *peer, &b.piece_bitfield(chunks));
                }
            }
        }
        info!(broadcast = %id.short(), name = %b.manifest.name, pieces = b.layout.piece_count(), "receiving");
        b.transfer = Some(t);
    }

    fn flood(&self, msg: Message) {
        for p in self.peers.values() {
            let _ = p.tx.try_send(msg.clone());
        }
    }

    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<DataInput>,
        mut serve_rx: mpsc::Receiver<ServeEvent>,
    ) {
        self.resume();
        self.publish_state();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                input = rx.recv() => match input {
                    Some(i) => self.handle(i),
                    None => return,
                },
                ev = serve_rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle(DataInput::Serve(ev));
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            self.drive(Instant::now());
            self.publish_state();
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut d = now + Duration::from_secs(1);
        for b in self.broadcasts.values() {
            if let Some(t) = b.transfer.as_ref().and_then(Transfer::poll_timeout) {
                d = d.min(t);
            }
            if b.dirty && !b.committing {
                d = d.min(now + COMMIT_INTERVAL);
            }
        }
        d.max(now)
    }

    fn handle(&mut self, input: DataInput) {
        let now = Instant::now();
        match input {
            DataInput::PeerUp { id, conn, tx } => {
                for b in self.broadcasts.values() {
                    let _ = tx.try_send(b.have());
                }
                self.peers.insert(id, Peer { conn, tx });
            }
            DataInput::PeerDown { id } => {
                self.peers.remove(&id);
                for h in self.haves.values_mut() {
                    h.remove(&id);
                }
                for b in self.broadcasts.values_mut() {
                    if let Some(t) = b.transfer.as_mut() {
                        t.handle_peer_gone(now, id);
                    }
                    b.in_flight.retain(|(p, _), h| {
                        if *p == id {
                            h.abort();
                        }
                        *p != id
                    });
                }
            }
            DataInput::PeerMessage { id, msg } => self.handle_peer_message(now, id, msg),
            DataInput::Registry { nodes, broadcasts } => self.handle_registry(nodes, broadcasts),
            DataInput::Publish {
                dir,
                chunk_size,
                read_as,
                reply,
            } => {
                let limits = self.limits;
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = Manifest::from_dir_as(&dir, chunk_size, &limits, &read_as)
                        .map_err(|e| e.to_string())
                        .and_then(|m| {
                            let canonical = dir.canonicalize().map_err(|e| e.to_string())?;
                            let bytes = m.to_bytes();
                            Ok((m, bytes, canonical))
                        });
                    let _ = tx.blocking_send(DataInput::Built { result, reply });
                });
            }
            DataInput::Built { result, reply } => {
                let answer = result.and_then(|(m, bytes, dir)| self.publish(m, bytes, dir));
                let _ = reply.send(answer);
            }
            DataInput::List { reply } => {
                let mut out: Vec<BroadcastInfo> =
                    self.broadcasts.values().map(Bcast::info).collect();
                for (id, (name, error)) in &self.failed {
                    out.push(BroadcastInfo {
                        id: id.to_hex(),
                        name: name.clone(),
                        state: "failed".into(),
                        chunks_held: 0,
                        chunks_total: 0,
                        bytes_held: 0,
                        bytes_total: 0,
                        path: None,
                        error: Some(error.clone()),
                        fetched_bytes: 0,
                        resumed_chunks: 0,
                        uploaded_bytes: 0,
                    });
                }
                out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
                let _ = reply.send(out);
            }
            DataInput::ManifestFetched { id, result } => self.handle_manifest(id, result),
            DataInput::PieceDone {
                id,
                peer,
                piece,
                outcome,
                bytes,
            } => {
                let Some(b) = self.broadcasts.get_mut(&id) else {
                    return;
                };
                b.in_flight.remove(&(peer, piece));
                b.fetched_bytes += bytes;
                self.metrics.downloaded(&id, bytes);
                let Some(t) = b.transfer.as_mut() else { return };
                match outcome {
                    Outcome::Ok => {
                        self.metrics.piece_verified();
                        t.handle_piece_received(now, peer, piece);
                        b.dirty = true;
                    }
                    Outcome::Bad(why) => {
                        self.metrics.piece_rejected();
                        warn!(broadcast = %id.short(), peer = %peer.short(), piece, %why, "peer served a bad chunk");
                        t.handle_piece_bad(now, peer, piece);
                    }
                    Outcome::Declined => t.handle_piece_declined(now, peer, piece),
                    Outcome::Failed(why) => {
                        debug!(broadcast = %id.short(), peer = %peer.short(), piece, %why, "piece request failed");
                        t.handle_piece_failed(now, peer, piece);
                    }
                }
            }
            DataInput::Committed { id, result } => self.handle_committed(now, id, result),
            DataInput::Finalized { id, result } => {
                let Some(b) = self.broadcasts.get_mut(&id) else {
                    return;
                };
                b.finalizing = false;
                match result {
                    Ok(path) => {
                        info!(broadcast = %id.short(), name = %b.manifest.name, path = %path.display(), "broadcast complete");
                        b.path = Some(path);
                        b.state = State::Complete;
                    }
                    Err(e) => {
                        error!(broadcast = %id.short(), error = %e, "cannot publish the received directory");
                        b.state = State::Failed(e);
                    }
                }
            }
            DataInput::Serve(ServeEvent::SourceChanged { id, error }) => {
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    if !matches!(b.state, State::Failed(_)) {
                        error!(broadcast = %id.short(), name = %b.manifest.name, %error, "broadcast FAILED: the source directory changed while it was being sent");
                        b.state = State::Failed(error);
                        b.version += 1;
                    }
                }
            }
            DataInput::Serve(ServeEvent::Uploaded { id, peer, bytes }) => {
                self.metrics.uploaded(&id, bytes);
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    b.uploaded_bytes += bytes;
                }
                *self.uploaded_to.entry(peer).or_default() += bytes;
            }
        }
    }

    fn publish(
        &mut self,
        m: Manifest,
        bytes: Vec<u8>,
        dir: PathBuf,
    ) -> Result<PublishInfo, String> {
        let id = manifest_id(&bytes);
        let layout = Layout::new(&m);
        let files = m
            .entries
            .iter()
            .filter(|e| matches!(e.kind, crate::manifest::EntryKind::File { .. }))
            .count() as u64;
        let info = PublishInfo {
            id: id.to_hex(),
            name: m.name.clone(),
            bytes: layout.total_bytes,
            files,
            chunks: u64::from(layout.chunk_count()),
            chunk_size: m.chunk_size,
        };
        if let Some(b) = self.broadcasts.get(&id) {
            if b.source.is_some() && !matches!(b.state, State::Failed(_)) {
                return Ok(info);
            }
        }
        store::save_origin(&self.shared.config.data_dir, id, &bytes, &dir)
            .map_err(|e| e.to_string())?;
        info!(broadcast = %id.short(), name = %m.name, bytes = layout.total_bytes, chunks = layout.chunk_count(), "publishing");
        self.broadcasts.remove(&id);
        self.add_origin(id, m, bytes, dir);
        Ok(info)
    }

    fn handle_peer_message(&mut self, now: Instant, peer: NodeId, msg: Message) {
        match msg {
            Message::Have(h) => {
                let id = h.broadcast;
                let strategy = self.shared.config.strategy;
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    let Ok(bits) = Bitfield::from_bytes(b.layout.chunk_count(), &h.bits) else {
                        warn!(peer = %peer.short(), "malformed have bitfield; ignoring");
                        return;
                    };
                    if h.chunks != b.layout.chunk_count() {
                        return;
                    }
                    let pieces = b.piece_bitfield(&bits);
                    let usable = may_fetch_from(strategy, peer, b.origin);
                    if let Some(t) = b.transfer.as_mut().filter(|_| usable) {
                        t.handle_peer_have(now, peer, &pieces);
                    }
                    self.haves.entry(id).or_default().insert(peer, bits);
                } else if !self.failed.contains_key(&id) {
                    // An announcement: remember who has it and fetch the manifest.
                    if let Ok(bits) = Bitfield::from_bytes(h.chunks, &h.bits) {
                        if self.unknown.len() < MAX_UNKNOWN || self.unknown.contains_key(&id) {
                            self.haves.entry(id).or_default().insert(peer, bits);
                            let u = self.unknown.entry(id).or_insert(Unknown {
                                sources: Vec::new(),
                                fetching: false,
                                attempts: 0,
                            });
                            if !u.sources.contains(&peer) {
                                u.sources.push(peer);
                            }
                            self.fetch_manifest(id);
                        }
                    }
                }
            }
            Message::HaveUpdate(u) => {
                let id = u.broadcast;
                let strategy = self.shared.config.strategy;
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    let total = b.layout.chunk_count();
                    let bits = self
                        .haves
                        .entry(id)
                        .or_default()
                        .entry(peer)
                        .or_insert_with(|| Bitfield::new(total));
                    let mut pieces = HashSet::new();
                    for c in u.chunks {
                        if c.0 < total && bits.set(c.0) {
                            pieces.insert(b.layout.piece_of[c.0 as usize]);
                        }
                    }
                    let usable = may_fetch_from(strategy, peer, b.origin);
                    if let Some(t) = b.transfer.as_mut().filter(|_| usable) {
                        for p in pieces {
                            if b.layout.chunks_of(p).all(|c| bits.get(c)) {
                                t.handle_peer_piece(now, peer, p);
                            }
                        }
                    }
                }
            }
            other => {
                debug!(peer = %peer.short(), kind = other.kind(), "ignoring message on control stream")
            }
        }
    }

    fn handle_registry(&mut self, nodes: Vec<RegistryEntry>, broadcasts: Vec<BroadcastRecord>) {
        self.nodes = nodes;
        for r in broadcasts {
            let id = r.id;
            self.records.insert(id, r.clone());
            if r.state == BroadcastState::Failed {
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    if b.state == State::Receiving {
                        warn!(broadcast = %id.short(), name = %r.name, "origin declared the broadcast failed; stopping");
                        b.state = State::Failed("the origin declared the broadcast failed".into());
                        b.transfer = None;
                        for h in b.in_flight.values() {
                            h.abort();
                        }
                        b.in_flight.clear();
                        self.catalog.remove(&id);
                    }
                }
                continue;
            }
            if self.broadcasts.contains_key(&id) {
                self.start_transfer(id);
            } else if !self.failed.contains_key(&id) && self.unknown.len() < MAX_UNKNOWN {
                self.unknown.entry(id).or_insert(Unknown {
                    sources: Vec::new(),
                    fetching: false,
                    attempts: 0,
                });
                self.fetch_manifest(id);
            }
        }
    }

    /// Start a manifest fetch for an unknown broadcast, if none is running.
    fn fetch_manifest(&mut self, id: BroadcastId) {
        let Some(u) = self.unknown.get_mut(&id) else {
            return;
        };
        if u.fetching {
            return;
        }
        // Ask a neighbour that has it, else any neighbour, else dial the origin.
        let peer = u
            .sources
            .iter()
            .copied()
            .find(|p| self.peers.contains_key(p));
        let conn = peer
            .and_then(|p| self.peers.get(&p))
            .map(|p| p.conn.clone());
        if let Some(p) = peer {
            u.sources.retain(|s| *s != p);
        }
        let origin = self.records.get(&id).and_then(|r| {
            let entry = self
                .nodes
                .iter()
                .find(|e| e.record.id == r.origin && e.status != Status::Dead)?;
            Some((r.origin, entry.record.addrs.first().copied()?))
        });
        if conn.is_none() && origin.is_none() {
            return;
        }
        u.fetching = true;
        u.attempts += 1;
        let tx = self.tx.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let limits = Limits::default();
            let result = match (conn, origin) {
                (Some(c), _) => fetch::fetch_manifest(&c, id, &limits, MANIFEST_TIMEOUT).await,
                (None, Some((oid, addr))) => {
                    match swarmcast_net::connect(
                        &shared.endpoint,
                        &shared.client_config,
                        addr,
                        MANIFEST_TIMEOUT,
                    )
                    .await
                    {
                        Ok((c, p)) if p.id == oid && p.role == Role::Node => {
                            let r = fetch::fetch_manifest(&c, id, &limits, MANIFEST_TIMEOUT).await;
                            c.close(swarmcast_net::CloseCode::Shutdown.into(), b"done");
                            r
                        }
                        Ok((c, _)) => {
                            c.close(
                                swarmcast_net::CloseCode::WrongPeer.into(),
                                b"unexpected identity",
                            );
                            Err("the origin's address answered with another identity".into())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                (None, None) => Err("no source".into()),
            };
            let _ = tx.send(DataInput::ManifestFetched { id, result }).await;
        });
    }

    fn handle_manifest(&mut self, id: BroadcastId, result: Result<Vec<u8>, String>) {
        let Some(u) = self.unknown.get_mut(&id) else {
            return;
        };
        u.fetching = false;
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                debug!(broadcast = %id.short(), error = %e, "manifest fetch failed; will retry");
                if u.attempts < 20 {
                    self.fetch_manifest(id);
                }
                return;
            }
        };
        let manifest = match Manifest::decode(&bytes, &id, &self.limits) {
            Ok(m) => m,
            Err(e) => {
                error!(broadcast = %id.short(), error = %e, "rejected manifest");
                self.unknown.remove(&id);
                self.haves.remove(&id);
                self.failed
                    .insert(id, (String::new(), format!("rejected manifest: {e}")));
                return;
            }
        };
        let name = manifest.name.clone();
        let data_dir = self.shared.config.data_dir.clone();
        let manifest = Arc::new(manifest);
        let layout = Arc::new(Layout::new(&manifest));
        match Workspace::create(&data_dir, id, &bytes, manifest, layout) {
            Ok(ws) => self.add_receiver(id, Arc::new(ws), None),
            Err(e) => {
                error!(broadcast = %id.short(), %name, error = %e, "cannot create the workspace");
                self.unknown.remove(&id);
                self.failed.insert(id, (name, e.to_string()));
            }
        }
    }

    fn handle_committed(
        &mut self,
        now: Instant,
        id: BroadcastId,
        result: Result<Vec<u32>, String>,
    ) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        b.committing = false;
        let chunks = match result {
            Ok(c) => c,
            Err(e) => {
                error!(broadcast = %id.short(), error = %e, "commit failed");
                b.state = State::Failed(format!("commit failed: {e}"));
                b.transfer = None;
                return;
            }
        };
        let mut pieces = HashSet::new();
        for c in &chunks {
            if b.held_chunks.set(*c) {
                pieces.insert(b.layout.piece_of[*c as usize]);
            }
        }
        let durable: Vec<u32> = pieces
            .into_iter()
            .filter(|p| b.layout.chunks_of(*p).all(|c| b.held_chunks.get(c)))
            .collect();
        if let Some(t) = b.transfer.as_mut() {
            t.handle_durable(now, &durable);
        }
        if !chunks.is_empty() {
            let update = Message::HaveUpdate(HaveUpdate {
                broadcast: id,
                chunks: chunks.into_iter().map(ChunkIndex).collect(),
            });
            for p in self.peers.values() {
                let _ = p.tx.try_send(update.clone());
            }
        }
    }

    fn spawn_finalize(&self, b: &Bcast) {
        spawn_finalize(&self.tx, b);
    }
}

/// Publish a complete workspace under `received/` on the blocking pool.
fn spawn_finalize(tx: &mpsc::Sender<DataInput>, b: &Bcast) {
    let Some(ws) = b.ws.clone() else { return };
    let tx = tx.clone();
    let id = b.id;
    tokio::task::spawn_blocking(move || {
        let result = ws.finalize().map_err(|e| e.to_string());
        let _ = tx.blocking_send(DataInput::Finalized { id, result });
    });
}

impl DataPlane {
    /// Advance every transfer's clock, carry out its actions, and run group commits.
    fn drive(&mut self, now: Instant) {
        let ids: Vec<BroadcastId> = self.broadcasts.keys().copied().collect();
        for id in ids {
            let Some(b) = self.broadcasts.get_mut(&id) else {
                continue;
            };
            if b.dirty && !b.committing {
                if let Some(ws) = b.ws.clone() {
                    b.dirty = false;
                    b.committing = true;
                    let tx = self.tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = ws.commit().map_err(|e| e.to_string());
                        let _ = tx.blocking_send(DataInput::Committed { id, result });
                    });
                }
            }
            let Some(t) = b.transfer.as_mut() else {
                continue;
            };
            t.handle_timeout(now);
            let mut actions = Vec::new();
            while let Some(a) = t.poll_action() {
                actions.push(a);
            }
            for a in actions {
                self.perform(id, a, now);
            }
        }
    }

    fn perform(&mut self, id: BroadcastId, action: SwarmAction, now: Instant) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        match action {
            SwarmAction::Request { peer, piece } => {
                let (Some(p), Some(ws)) = (self.peers.get(&peer), b.ws.clone()) else {
                    if let Some(t) = b.transfer.as_mut() {
                        t.handle_peer_gone(now, peer);
                    }
                    return;
                };
                let range = b.layout.chunks_of(piece);
                let (first, count) = (range.start, range.end - range.start);
                let conn = p.conn.clone();
                let layout = b.layout.clone();
                let tx = self.tx.clone();
                let task = tokio::spawn(async move {
                    let (outcome, bytes) =
                        fetch::fetch_piece(conn, ws, layout, id, first, count).await;
                    let _ = tx
                        .send(DataInput::PieceDone {
                            id,
                            peer,
                            piece,
                            outcome,
                            bytes,
                        })
                        .await;
                });
                b.in_flight.insert((peer, piece), task.abort_handle());
            }
            SwarmAction::Cancel { peer, piece } => {
                if let Some(h) = b.in_flight.remove(&(peer, piece)) {
                    h.abort();
                }
            }
            SwarmAction::Ban { peer } => {
                warn!(broadcast = %id.short(), peer = %peer.short(), "banning peer after repeated bad chunks");
                self.metrics.peer_banned();
                let _ = self
                    .peers_tx
                    .try_send(crate::peers::Input::Ban { id: peer });
            }
            SwarmAction::Complete => {
                if !b.finalizing && b.state == State::Receiving {
                    b.finalizing = true;
                    spawn_finalize(&self.tx, b);
                }
            }
        }
    }

    /// Progress for heartbeats, records for the registry.
    fn publish_state(&self) {
        let progress = self
            .broadcasts
            .values()
            .filter(|b| !matches!(b.state, State::Failed(_)))
            .map(|b| Progress {
                broadcast: b.id,
                held: u64::from(b.held_chunks.count_ones()),
                total: u64::from(b.layout.chunk_count()),
            })
            .collect();
        let records = self
            .broadcasts
            .values()
            .filter_map(|b| b.record(self.shared.id))
            .collect();
        self.shared
            .set_data(progress, records, self.uploaded_to.clone());
        let mut states = [0usize; 4];
        for b in self.broadcasts.values() {
            states[match b.state {
                State::Seeding => 0,
                State::Receiving => 1,
                State::Complete => 2,
                State::Failed(_) => 3,
            }] += 1;
        }
        states[3] += self.failed.len();
        self.metrics.set_state(self.peers.len(), states);
    }
}

//! The data-plane shell: one actor owns the [`Broadcasts`] core and the I/O handles of every
//! broadcast this node knows (the origin's sources, the receivers' workspaces, the requests in
//! flight), turns neighbour messages and finished tasks into core inputs, and carries out the
//! core's [`BroadcastAction`]s with tasks. It decides nothing: every policy (lifecycle, commit
//! and finalize timing, what to advertise and serve, manifest retries, the strategy,
//! super-seeding) is in [`broadcast`].
//!
//! Flow of a broadcast:
//! 1. The origin publishes (`node send`): manifest built from the directory, saved, served from
//!    the source in place, announced to the registry, and a full `Have` sent to every neighbour.
//! 2. A node hearing a `Have` (or seeing a registry record) for an unknown id fetches the manifest
//!    from that peer (or dials the origin), checks it against the id, validates it, creates its
//!    workspace and sends its own `Have` to every neighbour: the flood, deduplicated by id.
//! 3. Pieces are requested as the transfer core decides, verified and written as they arrive,
//!    and advertised (`HaveUpdate`) and served as soon as they are written; group commits make
//!    them durable, and only durable pieces count as held (progress, what a restart keeps).
//!    When all are durable the directory is published under `received/<name>`, and the node
//!    keeps serving.

pub mod broadcast;
mod error;
mod fetch;
mod local;
pub(crate) mod serve;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmcast_proto::{BroadcastId, Limits, Message, NodeId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tracing::{info, warn};

pub use broadcast::{
    BroadcastAction, BroadcastConfig, BroadcastInfo, Broadcasts, COMMIT_INTERVAL, DEFAULT_KEEP,
    DataReport, Failure, ManifestFetchError, ManifestSource, PieceError, Publication, ResumeError,
    Strategy, SuperSeed, TargetError,
};
pub use error::PublishError;

/// What a node logs (once, at warn) when the stall invariant fires
/// ([`BroadcastAction::Stalled`]); the chaos runner fails a run whose logs contain it.
pub const STALL_WARNING: &str =
    "no progress for 5 s although connected peers hold chunks this node lacks";
use serve::{Catalog, Reader, Servable};

use crate::handles::Dialer;
use crate::inputs::{DataInput, ServeEvent};
use crate::manifest::{Layout, Manifest, manifest_id};
use crate::outbox::Outbox;
pub use crate::status::PublishInfo;
use crate::store::{self, Source, StoredKind, Workspace};

/// Per-attempt timeout of a manifest fetch.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The I/O side of one broadcast.
struct Io {
    manifest_bytes: Arc<Vec<u8>>,
    layout: Arc<Layout>,
    reader: Reader,
    in_flight: HashMap<(NodeId, u32), InFlight>,
}

/// A request's task, and the payload bytes it has read so far (the trace's cancel events give
/// them).
struct InFlight {
    task: AbortHandle,
    received: Arc<std::sync::atomic::AtomicU64>,
}

impl InFlight {
    fn abort(&self) {
        self.task.abort();
    }
}

impl Io {
    fn workspace(&self) -> Option<&Arc<Workspace>> {
        match &self.reader {
            Reader::Workspace(ws) => Some(ws),
            Reader::Source(_) => None,
        }
    }
}

struct Peer {
    conn: quinn::Connection,
    outbox: Arc<Outbox>,
}

/// What the data plane needs of the node's settings.
#[derive(Debug, Clone)]
pub(crate) struct DataConfig {
    /// Where manifests, workspaces and `received/` live.
    pub(crate) data_dir: PathBuf,
    /// Who serves receivers.
    pub(crate) strategy: Strategy,
    /// Complete versions kept per name.
    pub(crate) keep: usize,
    /// Disk budget of every workspace together.
    pub(crate) max_disk: Option<u64>,
    /// Receive only what `node fetch` asks for.
    pub(crate) pull: bool,
    /// This node's certificate name and groups (restricted broadcasts' audiences).
    pub(crate) cert_name: String,
    pub(crate) cert_groups: Vec<String>,
    /// Test-only: each manifest build takes this much longer.
    pub(crate) fault_hash_delay: Option<std::time::Duration>,
}

pub(crate) struct DataPlane {
    core: Broadcasts,
    data_dir: PathBuf,
    dialer: Dialer,
    /// Its own inbox, for the tasks it starts to report back.
    tx: mpsc::Sender<DataInput>,
    /// To the neighbour actor: bans, unbounded so that the data plane never waits for it (the
    /// core bans each peer at most once; see `peers` for why nothing here may wait).
    bans: mpsc::UnboundedSender<NodeId>,
    catalog: Arc<Catalog>,
    /// Progress, records and uploads, read by membership and `node status`.
    report: watch::Sender<DataReport>,
    io: HashMap<BroadcastId, Io>,
    peers: HashMap<NodeId, Peer>,
    metrics: crate::metrics::Metrics,
    fault_hash_delay: Option<std::time::Duration>,
}

impl DataPlane {
    pub(crate) fn new(
        me: NodeId,
        config: DataConfig,
        dialer: Dialer,
        tx: mpsc::Sender<DataInput>,
        bans: mpsc::UnboundedSender<NodeId>,
        catalog: Arc<Catalog>,
        report: watch::Sender<DataReport>,
    ) -> Self {
        let core_config = BroadcastConfig {
            strategy: config.strategy,
            keep: config.keep,
            max_disk: config.max_disk,
            pull: config.pull,
            cert_name: config.cert_name,
            cert_groups: config.cert_groups,
            ..BroadcastConfig::default()
        };
        Self {
            core: Broadcasts::new(core_config, me, rand::random()),
            // Absolute, so that `node ls` shows absolute paths whatever the daemon's cwd.
            data_dir: std::path::absolute(&config.data_dir).unwrap_or(config.data_dir),
            dialer,
            tx,
            bans,
            catalog,
            report,
            io: HashMap::new(),
            peers: HashMap::new(),
            metrics: crate::metrics::Metrics::default(),
            fault_hash_delay: config.fault_hash_delay,
        }
    }

    /// Count into `metrics` (`--metrics`).
    pub(crate) fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reload every broadcast of the data dir: origins resume seeding, receivers resume fetching.
    fn resume(&mut self, now: Instant) {
        let data_dir = self.data_dir.clone();
        store::sweep_dead(&data_dir);
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
                StoredKind::Origin { source } => self.resume_origin(now, id, source),
                StoredKind::Receiver { .. } => self.resume_receiver(now, id),
            };
            if let Err(e) = result {
                warn!(broadcast = %id.short(), error = %e, "cannot resume broadcast");
                self.core
                    .add_failed(id, String::new(), Failure::Resume(Arc::new(e)));
            }
        }
    }

    /// Abort every request in flight to `peer` (they end without a report).
    fn abort_requests_to(&mut self, peer: NodeId) {
        for io in self.io.values_mut() {
            io.in_flight.retain(|(p, _), h| {
                if *p == peer {
                    h.abort();
                }
                *p != peer
            });
        }
    }

    fn resume_origin(
        &mut self,
        now: Instant,
        id: BroadcastId,
        source: PathBuf,
    ) -> Result<(), ResumeError> {
        let data_dir = &self.data_dir;
        let bytes = store::read_manifest(data_dir, id)?.ok_or(ResumeError::NoManifest)?;
        let manifest = Manifest::decode(&bytes, &id, &self.core.config().limits)?;
        info!(broadcast = %id.short(), name = %manifest.name, source = %source.display(), "resuming as origin");
        let known = self.publication(id);
        self.add_origin(now, id, manifest, bytes, source, known);
        Ok(())
    }

    fn resume_receiver(&mut self, now: Instant, id: BroadcastId) -> Result<(), ResumeError> {
        let ws = Workspace::open(&self.data_dir, id)?.ok_or(ResumeError::Vanished)?;
        let ws = Arc::new(ws);
        let held = ws.held();
        info!(broadcast = %id.short(), name = %ws.manifest().name, held = held.count_ones(), total = held.len(), "resuming as receiver");
        let received = self.data_dir.join(store::RECEIVED_DIR);
        if store::linked_version(&received, &ws.manifest().name) == Some(id) {
            self.core.note_shown(&ws.manifest().name, id);
        }
        let known = self.publication(id);
        self.add_receiver(now, id, ws, true, known);
        Ok(())
    }

    /// The publication persisted for `id`, if any.
    fn publication(&self, id: BroadcastId) -> Option<Publication> {
        store::read_version(&self.data_dir, id)
            .map(|(seq, published_ms)| Publication { seq, published_ms })
    }

    fn add_origin(
        &mut self,
        now: Instant,
        id: BroadcastId,
        manifest: Manifest,
        bytes: Vec<u8>,
        source: PathBuf,
        known: Option<Publication>,
    ) {
        let manifest = Arc::new(manifest);
        let layout = Arc::new(Layout::new(&manifest));
        let src = Source::new(source.clone(), manifest.clone(), layout.clone());
        self.io.insert(
            id,
            Io {
                manifest_bytes: Arc::new(bytes),
                layout: layout.clone(),
                reader: Reader::Source(Arc::new(src)),
                in_flight: HashMap::new(),
            },
        );
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.core
            .add_origin(now, id, manifest, layout, source, known, wall_ms);
    }

    fn add_receiver(
        &mut self,
        now: Instant,
        id: BroadcastId,
        ws: Arc<Workspace>,
        resumed: bool,
        known: Option<Publication>,
    ) {
        let manifest = ws.manifest().clone();
        let layout = ws.layout().clone();
        let held = ws.held();
        self.io.insert(
            id,
            Io {
                manifest_bytes: Arc::new(manifest.to_bytes()),
                layout: layout.clone(),
                reader: Reader::Workspace(ws),
                in_flight: HashMap::new(),
            },
        );
        self.core
            .add_receiver(now, id, manifest, layout, held, resumed, known);
    }

    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<DataInput>,
        mut serve_rx: mpsc::Receiver<ServeEvent>,
    ) {
        self.resume(Instant::now());
        self.perform_all();
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                // Serving tasks wait for room to report (uploads, a changed source) while they
                // hold an upload permit: their few events go first.
                ev = serve_rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle_serve(ev);
                    }
                }
                input = rx.recv() => match input {
                    Some(i) => self.handle(i),
                    None => return,
                },
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            // Also after an input: a busy inbox must not keep due timers waiting.
            let now = Instant::now();
            if deadline <= now {
                self.core.handle_timeout(now);
            }
            self.perform_all();
        }
    }

    /// Move one input into the core (or answer it from the core).
    fn handle(&mut self, input: DataInput) {
        let now = Instant::now();
        match input {
            DataInput::PeerUp { id, conn, outbox } => {
                if self.peers.insert(id, Peer { conn, outbox }).is_some() {
                    // A replaced connection: its requests went with the old one (the core
                    // starts the peer afresh).
                    self.abort_requests_to(id);
                }
                self.core.handle_peer_up(now, id);
            }
            DataInput::PeerDown { id } => {
                self.peers.remove(&id);
                self.abort_requests_to(id);
                self.core.handle_peer_down(now, id);
            }
            DataInput::PeerMessage { id, msg } => self.core.handle_peer_message(now, id, msg),
            DataInput::Registry { nodes, broadcasts } => {
                self.core.handle_registry(now, nodes, broadcasts)
            }
            DataInput::Publish {
                dir,
                chunk_size,
                rehash,
                audience,
                priority,
                read_as,
                reply,
            } => self.spawn_build(
                dir,
                (chunk_size, rehash),
                (audience, priority),
                read_as,
                reply,
            ),
            DataInput::Built { result, reply } => {
                let answer = result.and_then(|(b, bytes, dir)| {
                    let stamps = b.stamps;
                    let hashed_bytes = b.hashed_bytes;
                    let mut info = self.publish(now, b.manifest, bytes, dir)?;
                    info.hashed_bytes = hashed_bytes;
                    if let Ok(id) = info.id.parse() {
                        if let Err(e) = store::save_stamps(&self.data_dir, id, &stamps) {
                            warn!(broadcast = %info.id, error = %e, "cannot save the file stamps; the next version hashes everything");
                        }
                    }
                    Ok(info)
                });
                let _ = reply.send(answer);
            }
            DataInput::List { reply } => {
                let _ = reply.send(self.core.list());
            }
            DataInput::Remove { target, reply } => {
                let _ = reply.send(self.core.remove(&target));
            }
            DataInput::Cancel { target, reply } => {
                let _ = reply.send(self.core.cancel(&target));
            }
            DataInput::Fetch { target, reply } => {
                let _ = reply.send(self.core.fetch(now, &target));
            }
            DataInput::ManifestFetched { id, result } => {
                self.core.handle_manifest_fetched(now, id, result)
            }
            DataInput::WorkspaceCreated { id, name, result } => match result {
                Ok(ws) => self.add_receiver(now, id, ws, false, None),
                Err(e) => self.core.handle_workspace_failed(id, name, e),
            },
            DataInput::PieceDone {
                id,
                peer,
                piece,
                result,
                bytes,
            } => {
                if let Some(io) = self.io.get_mut(&id) {
                    io.in_flight.remove(&(peer, piece));
                }
                self.metrics.downloaded(&id, bytes);
                if self.catalog.trace.enabled() {
                    let (outcome, why) = match &result {
                        Ok(()) => ("ok", String::new()),
                        Err(e) => ("failed", e.to_string()),
                    };
                    self.catalog.trace.emit(
                        "got",
                        Some(&id.short()),
                        &serde_json::json!({
                            "peer": peer.short(), "piece": piece, "outcome": outcome,
                            "bytes": bytes, "why": why,
                        }),
                    );
                }
                match result {
                    Ok(()) => {
                        self.metrics.piece_verified();
                        self.core.handle_piece_received(now, id, peer, piece, bytes)
                    }
                    Err(e) => {
                        if matches!(e, PieceError::BadChunk { .. }) {
                            self.metrics.piece_rejected();
                        }
                        self.core
                            .handle_piece_failed(now, id, peer, piece, &e, bytes)
                    }
                }
            }
            DataInput::Committed { id, result } => self.core.handle_durable(now, id, result),
            DataInput::Finalized { id, result } => {
                if result.is_ok() {
                    (self.catalog.trace).emit("done", Some(&id.short()), &serde_json::json!({}));
                }
                self.core.handle_finalized(now, id, result)
            }
            DataInput::Linked { name, id, result } => self.core.handle_linked(&name, id, result),
            DataInput::Unlinked { name, id, result } => {
                self.core.handle_unlinked(&name, id, result)
            }
        }
    }

    fn handle_serve(&mut self, ev: ServeEvent) {
        match ev {
            ServeEvent::SourceChanged { id, index } => self.core.handle_source_changed(id, index),
            ServeEvent::Uploaded { id, peer, bytes } => {
                self.metrics.uploaded(&id, bytes);
                self.core.handle_uploaded(id, peer, bytes)
            }
            ServeEvent::Admit {
                id,
                first,
                end,
                reply,
            } => {
                let admitted = (self.core).handle_serve_request(Instant::now(), id, first, end);
                // A request task gone (its stream reset) needs no answer.
                let _ = reply.send(admitted);
            }
            ServeEvent::Served {
                id,
                first,
                end,
                delivered,
            } => (self.core).handle_served(Instant::now(), id, first, end, delivered),
        }
    }

    /// Build the manifest of `dir` on the blocking pool; `Built` carries it back.
    fn spawn_build(
        &self,
        dir: PathBuf,
        (chunk_size, rehash): (u32, bool),
        (audience, priority): (Option<swarmcast_proto::Audience>, swarmcast_proto::Priority),
        read_as: crate::manifest::ReadAs,
        reply: oneshot::Sender<Result<PublishInfo, PublishError>>,
    ) {
        let limits = self.core.config().limits;
        let tx = self.tx.clone();
        // The previous version of this name sent from here, whose hashes unchanged files keep.
        let previous = (!rehash)
            .then(|| dir.file_name()?.to_str())
            .flatten()
            .and_then(|name| self.core.previous_own_version(name));
        let data_dir = self.data_dir.clone();
        let fault_delay = self.fault_hash_delay;
        tokio::task::spawn_blocking(move || {
            if let Some(d) = fault_delay {
                std::thread::sleep(d);
            }
            let reuse = previous.and_then(|id| store::hash_reuse(&data_dir, id));
            let result = Manifest::build(&dir, chunk_size, &limits, &read_as, reuse.as_ref())
                .map_err(PublishError::from)
                .and_then(|mut m| {
                    // Restricted: the audience is part of the manifest, so of the id.
                    m.manifest.audience = audience;
                    // So is the priority: every node that holds it schedules by it.
                    m.manifest.priority = priority;
                    let canonical =
                        dir.canonicalize()
                            .map_err(|source| PublishError::Canonicalize {
                                dir: dir.clone(),
                                source,
                            })?;
                    let bytes = m.manifest.to_bytes();
                    if reuse.is_some() {
                        info!(
                            hashed_bytes = m.hashed_bytes,
                            "reused the hashes of unchanged files"
                        );
                    }
                    Ok((m, bytes, canonical))
                });
            let _ = tx.blocking_send(DataInput::Built { result, reply });
        });
    }

    fn publish(
        &mut self,
        now: Instant,
        m: Manifest,
        bytes: Vec<u8>,
        dir: PathBuf,
    ) -> Result<PublishInfo, PublishError> {
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
            hashed_bytes: layout.total_bytes,
            warnings: Vec::new(),
        };
        if self.core.is_seeding(&id) {
            return Ok(info);
        }
        store::save_origin(&self.data_dir, id, &bytes, &dir)?;
        info!(broadcast = %id.short(), name = %m.name, bytes = layout.total_bytes, chunks = layout.chunk_count(), "publishing");
        self.add_origin(now, id, m, bytes, dir, None);
        Ok(info)
    }

    /// Carry out every action the core has, then tell membership the new state.
    fn perform_all(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.perform(action);
        }
        self.publish_state();
    }

    fn perform(&mut self, action: BroadcastAction) {
        match action {
            BroadcastAction::Send { peer, msg } => {
                if let Some(p) = self.peers.get(&peer) {
                    self.advertise(&p.outbox, &msg);
                }
            }
            BroadcastAction::Flood { msg } => {
                if let Message::HaveUpdate(u) = &msg {
                    let chunks: Vec<u32> = u.chunks.iter().map(|c| c.0).collect();
                    self.catalog.trace.emit(
                        "adv",
                        Some(&u.broadcast.short()),
                        &serde_json::json!({ "chunks": chunks }),
                    );
                }
                for p in self.peers.values() {
                    self.advertise(&p.outbox, &msg);
                }
            }
            BroadcastAction::Serve {
                id,
                super_seed,
                audience,
                priority,
            } => {
                if let Some(io) = self.io.get(&id) {
                    let servable = Servable {
                        manifest_bytes: io.manifest_bytes.clone(),
                        layout: io.layout.clone(),
                        reader: io.reader.clone(),
                        refused: Default::default(),
                        audience,
                        priority,
                        super_seed,
                    };
                    self.catalog.insert(id, Arc::new(servable));
                }
            }
            BroadcastAction::Unserve { id } => self.catalog.remove(&id),
            BroadcastAction::RefuseServing { id } => self.catalog.refuse(&id),
            BroadcastAction::FetchManifest { id, from } => self.spawn_fetch_manifest(id, from),
            BroadcastAction::CreateWorkspace {
                id,
                bytes,
                manifest,
                layout,
                links,
                local,
            } => {
                // Creating the directories and files of a large manifest, and copying what is
                // held here already, takes a while: off the actor, which keeps serving.
                let name = manifest.name.clone();
                let data_dir = self.data_dir.clone();
                let tx = self.tx.clone();
                let reader = |b| self.io.get(&b).map(|io| io.reader.clone());
                let froms = links.iter().map(|l| l.from);
                let sources = local::sources_of(froms.chain(local.iter().map(|c| c.from)), reader);
                tokio::task::spawn_blocking(move || {
                    let result =
                        Workspace::create(&data_dir, id, &bytes, manifest, layout).map(Arc::new);
                    if let Ok(ws) = &result {
                        local::take_local(ws, &links, &local, &sources);
                    }
                    let _ = tx.blocking_send(DataInput::WorkspaceCreated { id, name, result });
                });
            }
            BroadcastAction::Request {
                id,
                peer,
                piece,
                first,
                count,
            } => self.spawn_request(id, peer, piece, first, count),
            BroadcastAction::Cancel { id, peer, piece } => {
                if let Some(h) = self
                    .io
                    .get_mut(&id)
                    .and_then(|io| io.in_flight.remove(&(peer, piece)))
                {
                    h.abort();
                    let bytes = h.received.load(std::sync::atomic::Ordering::Relaxed);
                    self.catalog.trace.emit(
                        "got",
                        Some(&id.short()),
                        &serde_json::json!({
                            "peer": peer.short(), "piece": piece, "outcome": "cancelled",
                            "bytes": bytes, "why": "",
                        }),
                    );
                }
            }
            BroadcastAction::AbortRequests { id } => {
                if let Some(io) = self.io.get_mut(&id) {
                    for (_, h) in io.in_flight.drain() {
                        h.abort();
                    }
                }
            }
            BroadcastAction::Ban { peer } => {
                self.metrics.peer_banned();
                // The connection stays up (serve-only), so its requests must end here.
                for io in self.io.values_mut() {
                    io.in_flight.retain(|&(p, _), h| {
                        if p == peer {
                            h.abort();
                        }
                        p != peer
                    });
                }
                let _ = self.bans.send(peer);
            }
            BroadcastAction::Commit { id } => {
                let Some(ws) = self.io.get(&id).and_then(Io::workspace).cloned() else {
                    return;
                };
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = ws.commit();
                    let _ = tx.blocking_send(DataInput::Committed { id, result });
                });
            }
            BroadcastAction::Finalize { id } => {
                let Some(ws) = self.io.get(&id).and_then(Io::workspace).cloned() else {
                    return;
                };
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = ws.complete();
                    let _ = tx.blocking_send(DataInput::Finalized { id, result });
                });
            }
            BroadcastAction::Link { name, id } => {
                let received = self.data_dir.join(store::RECEIVED_DIR);
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = store::link_received(&received, &name, id);
                    let _ = tx.blocking_send(DataInput::Linked { name, id, result });
                });
            }
            BroadcastAction::Unlink { name, id } => {
                let received = self.data_dir.join(store::RECEIVED_DIR);
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = store::unlink_received(&received, &name, id);
                    let _ = tx.blocking_send(DataInput::Unlinked { name, id, result });
                });
            }
            BroadcastAction::Remove { id } => {
                // Requests were aborted and serving stopped by the actions before this one.
                if let Some(io) = self.io.remove(&id) {
                    for (_, h) in io.in_flight {
                        h.abort();
                    }
                }
                self.catalog.remove(&id);
                let data_dir = self.data_dir.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store::remove(&data_dir, id) {
                        warn!(broadcast = %id.short(), error = %e, "cannot remove broadcast from disk");
                    }
                });
            }
            BroadcastAction::Stalled {
                id,
                missing,
                holders,
                requests,
            } => {
                let holders: Vec<String> = holders
                    .iter()
                    .map(|(p, n)| format!("{}:{n}", p.short()))
                    .collect();
                let requests: Vec<String> = requests
                    .iter()
                    .map(|(p, n, suspect)| {
                        format!(
                            "{}:{n}{}",
                            p.short(),
                            if *suspect { " suspect" } else { "" }
                        )
                    })
                    .collect();
                warn!(broadcast = %id.short(), missing, holders = ?holders, requests = ?requests,
                    "{STALL_WARNING}");
                self.catalog.trace.emit(
                    "stall",
                    Some(&id.short()),
                    &serde_json::json!({ "missing": missing, "holders": holders, "requests": requests }),
                );
            }
            BroadcastAction::SaveVersion { id, publication } => {
                let data_dir = self.data_dir.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = store::save_version(
                        &data_dir,
                        id,
                        publication.seq,
                        publication.published_ms,
                    ) {
                        warn!(broadcast = %id.short(), error = %e, "cannot save the version");
                    }
                });
            }
        }
    }

    /// Merge a `Have` or `HaveUpdate` into a neighbour's outbox (see [`Outbox`]).
    fn advertise(&self, outbox: &Outbox, msg: &Message) {
        let broadcast = match msg {
            Message::Have(h) => h.broadcast,
            Message::HaveUpdate(u) => u.broadcast,
            other => {
                warn!(
                    kind = other.kind(),
                    "the core asked to send a message that is no advertisement"
                );
                return;
            }
        };
        let Some(chunks) = self.io.get(&broadcast).map(|io| io.layout.chunk_count()) else {
            return;
        };
        if let Err(e) = outbox.advertise(msg, chunks) {
            warn!(broadcast = %broadcast.short(), error = %e, "advertisement not queued");
        }
    }

    fn spawn_request(&mut self, id: BroadcastId, peer: NodeId, piece: u32, first: u32, count: u32) {
        let tx = self.tx.clone();
        let conn = self.peers.get(&peer).map(|p| p.conn.clone());
        let io = self.io.get_mut(&id);
        let ws = io.as_ref().and_then(|io| io.workspace().cloned());
        let Some(conn) = conn else {
            // The core asks only peers it was told are up, as this map is kept; should they
            // ever disagree, tell the core the peer is gone so that its pieces go elsewhere.
            self.core.handle_peer_down(Instant::now(), peer);
            return;
        };
        let (Some(io), Some(ws)) = (io, ws) else {
            // Requests are only for receivers, whose workspace is in `io` from the start.
            return;
        };
        let layout = io.layout.clone();
        let pool = self.catalog.pool().clone();
        let cap = self.catalog.download_cap();
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = received.clone();
        let task = tokio::spawn(async move {
            let (result, bytes) =
                fetch::fetch_piece(conn, ws, layout, pool, id, first, count, progress, cap).await;
            let done = DataInput::PieceDone {
                id,
                peer,
                piece,
                result,
                bytes,
            };
            let _ = tx.send(done).await;
        });
        let request = InFlight {
            task: task.abort_handle(),
            received,
        };
        io.in_flight.insert((peer, piece), request);
        if self.catalog.trace.enabled() {
            let depth = io.in_flight.keys().filter(|(p, _)| *p == peer).count();
            self.catalog.trace.emit(
                "req",
                Some(&id.short()),
                &serde_json::json!({
                    "peer": peer.short(), "piece": piece, "first": first, "count": count,
                    "depth": depth,
                }),
            );
        }
    }

    fn spawn_fetch_manifest(&self, id: BroadcastId, from: ManifestSource) {
        let tx = self.tx.clone();
        let limits = Limits::default();
        let result = async move |r| {
            let _ = tx.send(DataInput::ManifestFetched { id, result: r }).await;
        };
        match from {
            ManifestSource::Peer(peer) => {
                let Some(conn) = self.peers.get(&peer).map(|p| p.conn.clone()) else {
                    // Gone since the core chose it: report the failure, it retries elsewhere.
                    let gone = ManifestFetchError::NotConnected(peer);
                    tokio::spawn(async move { result(Err(gone)).await });
                    return;
                };
                tokio::spawn(async move {
                    result(fetch::fetch_manifest(&conn, id, &limits, MANIFEST_TIMEOUT).await).await
                });
            }
            ManifestSource::Origin { node, addr } => {
                let dialer = self.dialer.clone();
                tokio::spawn(async move {
                    let r = fetch::fetch_manifest_from_origin(
                        &dialer,
                        node,
                        addr,
                        id,
                        MANIFEST_TIMEOUT,
                    )
                    .await;
                    result(r).await
                });
            }
        }
    }

    /// Progress for heartbeats, records for the registry, uploads for `node status`: when the
    /// core has a new report (it decides when, at a bounded rate).
    fn publish_state(&mut self) {
        let Some(report) = self.core.poll_report(Instant::now()) else {
            return;
        };
        self.metrics
            .set_state(self.peers.len(), self.core.state_counts());
        self.report.send_if_modified(|r| {
            let changed = *r != report;
            if changed {
                *r = report;
            }
            changed
        });
    }
}

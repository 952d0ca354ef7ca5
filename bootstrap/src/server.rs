//! The bootstrap server shell: QUIC in, registry core in the middle, anti-entropy and snapshots
//! out. All protocol decisions are in [`crate::registry`]; this file only moves bytes and time.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use swarmcast_certs::{LiveIdentity, PeerInfo};
use swarmcast_net::wire::{self, WireError};
use swarmcast_net::{CloseCode, RefusedHandshakes, incarnation};
use swarmcast_proto::{
    Ack, Delta, ErrorCode, Limits, Message, NodeId, NodeRecord, Ping, Registered, RegistryCursor,
    RegistryView, Role, Version,
};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::ClientError;
use crate::metrics::BootstrapMetrics;
use crate::registry::{
    ChangeLog, ChangeLogConfig, MAX_SEQ_AHEAD, ProgressUpdate, Registry, RegistryConfig,
};
use crate::replication::{FellowKind, FellowRetry, Retry};
use crate::snapshot;

/// Most addresses a node may advertise.
pub const MAX_ADDRS: usize = 16;
/// Most per-broadcast progress items (changed plus removed) a heartbeat may carry. Nodes send
/// changes only, and a whole set in pages below this ([`ProgressSpan`](swarmcast_proto::ProgressSpan)).
pub const MAX_PROGRESS: usize = 4096;

/// Settings of a bootstrap server.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Fellow bootstraps to replicate with (more are learned from the registry).
    pub peers: Vec<SocketAddr>,
    /// Where the registry snapshot and incarnation live; `None` keeps nothing on disk. Made
    /// private at start (0700, files 0600, whatever the umask).
    pub data_dir: Option<PathBuf>,
    /// Liveness timeouts.
    pub registry: RegistryConfig,
    /// Push-pull period with each fellow.
    pub anti_entropy_interval: Duration,
    /// How often a changed registry is snapshotted.
    pub snapshot_interval: Duration,
    /// Timeout of one request to a fellow.
    pub request_timeout: Duration,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<SocketAddr>,
    /// How often the identity directory is re-read (a renewed certificate or changed trust
    /// bundle is used without a restart); default [`swarmcast_net::RELOAD_EVERY`], 10 s.
    pub identity_reload: Duration,
}

impl BootstrapConfig {
    /// Defaults: anti-entropy every 300 ms, snapshot every 1 s, 2 s request timeout.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            peers: Vec::new(),
            data_dir: None,
            registry: RegistryConfig::default(),
            anti_entropy_interval: Duration::from_millis(300),
            snapshot_interval: Duration::from_secs(1),
            metrics: None,
            request_timeout: Duration::from_secs(2),
            identity_reload: swarmcast_net::RELOAD_EVERY,
        }
    }
}

/// Why a bootstrap server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The metrics address could not be bound.
    #[error(transparent)]
    Metrics(#[from] swarmcast_metrics::MetricsError),
    /// The identity's certificate does not have the bootstrap role.
    #[error("identity {name} has role {role}; a bootstrap needs a bootstrap certificate")]
    WrongRole {
        /// Certificate name.
        name: String,
        /// Its role.
        role: Role,
    },
    /// TLS configuration failed.
    #[error("certificates: {0}")]
    Cert(#[from] swarmcast_certs::CertError),
    /// Binding the socket or touching the data dir failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The data dir is not a directory of this user, or could not be made private.
    #[error(transparent)]
    DataDir(#[from] swarmcast_net::DataDirError),
    /// The listen address cannot be advertised to others.
    #[error("cannot advertise unspecified address {0}; listen on a concrete address")]
    Unspecified(SocketAddr),
}

struct Shared {
    me: PeerInfo,
    addr: SocketAddr,
    incarnation: u64,
    config: BootstrapConfig,
    limits: Limits,
    registry: Mutex<Registry>,
    /// Numbered views for heartbeat answers; locked before `registry` when both are.
    changes: Mutex<ChangeLog>,
    heartbeat: Mutex<u64>,
    refused: RefusedHandshakes,
    metrics: BootstrapMetrics,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock would be a bug in the pure core; keep serving.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What changed since `since`, from a view at most `ChangeLogConfig::refresh` old.
    fn changes_since(&self, now: Instant, since: RegistryCursor) -> RegistryView {
        let mut log = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if log.needs_view(now) {
            let registry = self.registry();
            // Unchanged but for heartbeat counters and ages: nothing to number, and no copy of
            // a registry whose records carry every node's progress.
            if log.generation() != Some(registry.generation()) {
                let view = registry.view(now);
                log.handle_view_at(now, &view, registry.generation());
            }
        }
        log.answer(since)
    }

    /// Bump and record this bootstrap's own entry.
    fn beat(&self, now: Instant) {
        let hb = {
            let mut h = self.heartbeat.lock().unwrap_or_else(|p| p.into_inner());
            *h += 1;
            *h
        };
        let record = NodeRecord {
            progress_seq: 0,
            id: self.me.id,
            name: self.me.name.clone(),
            role: Role::Bootstrap,
            addrs: vec![self.addr],
            version: Version::new(self.incarnation, hb),
            progress: Vec::new(),
            pull: false,
            groups: Vec::new(),
        };
        self.registry().observe(now, record);
    }

    /// Addresses of fellow bootstraps: configured ones plus live ones in the registry.
    fn fellows(&self, now: Instant) -> BTreeSet<SocketAddr> {
        let mut out: BTreeSet<SocketAddr> = self.config.peers.iter().copied().collect();
        out.extend(self.registry().bootstrap_addrs(now, &self.me.id));
        out.remove(&self.addr);
        out
    }
}

/// Run a bootstrap server until `shutdown` resolves.
pub async fn run(
    live: Arc<LiveIdentity>,
    config: BootstrapConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BootstrapError> {
    // Name, role and key never change while it runs (a reload refuses another identity).
    let identity = live.identity();
    if identity.role() != Role::Bootstrap {
        return Err(BootstrapError::WrongRole {
            name: identity.name().to_owned(),
            role: identity.role(),
        });
    }
    if config.listen.ip().is_unspecified() {
        return Err(BootstrapError::Unspecified(config.listen));
    }
    // Private before anything is written there: 0700, files 0600, whatever the umask.
    if let Some(dir) = &config.data_dir {
        swarmcast_net::private_dir::prepare(dir, None)?;
    }
    let metrics_listener = match config.metrics {
        Some(addr) => Some(swarmcast_metrics::bind(addr).await?),
        None => None,
    };
    let transport = swarmcast_net::transport_config();
    let server = live.server_config(transport.clone())?;
    let client_config = live.client_config(transport)?;
    let endpoint = swarmcast_net::endpoint(config.listen, Some(server)).map_err(|source| {
        BootstrapError::Io {
            what: format!("binding {}", config.listen),
            source,
        }
    })?;
    let addr = endpoint.local_addr().map_err(|source| BootstrapError::Io {
        what: "local address".into(),
        source,
    })?;
    let incarnation =
        incarnation::next(config.data_dir.as_deref()).map_err(|source| BootstrapError::Io {
            what: "incarnation file".into(),
            source,
        })?;
    let mut registry = Registry::new(config.registry.clone());
    if let Some(dir) = &config.data_dir {
        let now = Instant::now();
        match snapshot::load(dir) {
            Ok(Some(snap)) => {
                let n = snap.nodes.len();
                for u in snap.nodes {
                    registry.merge(now, u);
                }
                for b in snap.broadcasts {
                    registry.merge_broadcast(b);
                }
                info!(entries = n, "registry snapshot loaded");
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "registry snapshot unreadable; starting empty"),
        }
    }
    let me = PeerInfo {
        id: identity.node_id(),
        name: identity.name().to_owned(),
        role: Role::Bootstrap,
        groups: Vec::new(),
    };
    info!(%addr, id = %me.id, name = %me.name, incarnation, "bootstrap listening");
    let (metrics, mut metrics_registry) = BootstrapMetrics::new();
    let cert_expiry = swarmcast_metrics::register_cert_expiry(&mut metrics_registry);
    let shared = Arc::new(Shared {
        me,
        addr,
        incarnation,
        limits: Limits::default(),
        registry: Mutex::new(registry),
        changes: Mutex::new(ChangeLog::new(incarnation, ChangeLogConfig::default())),
        heartbeat: Mutex::new(0),
        refused: RefusedHandshakes::new(),
        metrics,
        config,
    });
    shared.beat(Instant::now());

    let mut tasks = JoinSet::new();
    if let Some(l) = metrics_listener {
        if let Ok(addr) = l.local_addr() {
            info!(%addr, "serving metrics");
        }
        tasks.spawn(swarmcast_metrics::serve(l, Arc::new(metrics_registry)));
    }
    let reload = shared.config.identity_reload;
    tasks.spawn(
        swarmcast_net::watch_identity(live, reload, move |t| {
            cert_expiry.set(t);
        })
        .instrument(info_span!("identity")),
    );
    tasks.spawn(accept_loop(endpoint.clone(), shared.clone()));
    tasks.spawn(tick_loop(endpoint.clone(), client_config, shared.clone()));
    if shared.config.data_dir.is_some() {
        tasks.spawn(snapshot_loop(shared.clone()));
    }
    shutdown.await;
    info!("bootstrap shutting down");
    tasks.abort_all();
    if let Some(dir) = &shared.config.data_dir {
        let (nodes, broadcasts) = shared.registry().export(Instant::now());
        if let Err(e) = snapshot::save(dir, nodes, broadcasts) {
            warn!(error = %e, "final snapshot failed");
        }
    }
    endpoint.close(CloseCode::Shutdown.into(), b"shutdown");
    endpoint.wait_idle().await;
    Ok(())
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    shared.refused.handle(Instant::now(), remote, &e);
                    return;
                }
            };
            let peer = match swarmcast_certs::peer_info(&conn) {
                Ok(p) => p,
                Err(e) => {
                    warn!(%remote, error = %e, "peer certificate unreadable");
                    conn.close(CloseCode::Forbidden.into(), b"certificate");
                    return;
                }
            };
            let span = info_span!("conn", %remote, peer = %peer.name, role = %peer.role);
            serve_connection(conn, peer, shared).instrument(span).await;
        });
    }
}

async fn serve_connection(conn: quinn::Connection, peer: PeerInfo, shared: Arc<Shared>) {
    debug!("connection up");
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "connection closed");
                return;
            }
        };
        let shared = shared.clone();
        let peer = peer.clone();
        let conn = conn.clone();
        tokio::spawn(
            async move {
                let limits = shared.limits;
                let timeout = shared.config.request_timeout;
                let read = wire::read_message_sized(&mut recv, &limits);
                let (request, request_bytes) = match tokio::time::timeout(timeout, read).await {
                    Ok(Ok(Some(m))) => m,
                    Ok(Ok(None)) => return,
                    Ok(Err(WireError::Decode(e))) => {
                        warn!(error = %e.for_log(), "undecodable request; closing connection");
                        conn.close(CloseCode::Protocol.into(), b"protocol error");
                        return;
                    }
                    Ok(Err(e)) => {
                        debug!(error = %e, "request read failed");
                        return;
                    }
                    Err(_) => {
                        let _ = recv.stop(CloseCode::Protocol.into());
                        return;
                    }
                };
                let kind = request.kind();
                let replication = matches!(request, Message::Digest(_) | Message::Delta(_))
                    && peer.role == Role::Bootstrap;
                let answer = handle_request(&shared, &peer, request, Instant::now());
                if let Message::Error(e) = &answer {
                    warn!(request = kind, code = ?e.code, reason = %e.message, "request refused");
                }
                let answer_bytes =
                    match wire::write_message_sized(&mut send, &answer, &limits).await {
                        Ok(n) => n,
                        Err(e) => {
                            debug!(error = %e, "answer not delivered");
                            0
                        }
                    };
                if replication {
                    shared
                        .metrics
                        .anti_entropy_bytes(answer_bytes, request_bytes);
                }
                if answer_bytes == 0 {
                    return;
                }
                let _ = send.finish();
            }
            .in_current_span(),
        );
    }
}

/// Authorize and answer one request. Identity always comes from `peer` (the certificate).
fn handle_request(shared: &Shared, peer: &PeerInfo, request: Message, now: Instant) -> Message {
    match request {
        Message::Register(r) => {
            if let Some(refusal) = check_own_entry(peer, r.id, &r.addrs) {
                return refusal;
            }
            let record = NodeRecord {
                progress_seq: 0,
                id: peer.id,
                name: peer.name.clone(),
                role: peer.role,
                addrs: r.addrs,
                version: Version::new(r.incarnation, 0),
                progress: Vec::new(),
                pull: r.pull,
                groups: peer.groups.clone(),
            };
            let fresh = shared.registry().observe(now, record);
            info!(node = %peer.name, id = %peer.id.short(), incarnation = r.incarnation, fresh, "node registered");
            let mut bootstraps: Vec<SocketAddr> = shared.fellows(now).into_iter().collect();
            bootstraps.insert(0, shared.addr);
            Message::Registered(Registered {
                id: peer.id,
                bootstraps,
            })
        }
        Message::Heartbeat(h) => {
            if let Some(refusal) = check_own_entry(peer, h.id, &h.addrs) {
                return refusal;
            }
            if h.progress.len() + h.progress_removed.len() > MAX_PROGRESS {
                return Message::error(ErrorCode::BadRequest, "too many progress items");
            }
            let record = NodeRecord {
                id: peer.id,
                name: peer.name.clone(),
                role: peer.role,
                addrs: h.addrs,
                version: h.version,
                progress: Vec::new(),
                progress_seq: 0,
                pull: h.pull,
                groups: peer.groups.clone(),
            };
            let update = ProgressUpdate {
                items: h.progress,
                span: h.progress_span,
                removed: h.progress_removed,
            };
            let ack = shared.registry().observe_heartbeat(now, record, update);
            match h.changes_since {
                Some(since) => {
                    let mut view = shared.changes_since(now, since);
                    view.progress_ack = Some(ack);
                    Message::Registry(view)
                }
                None => Message::Ack(Ack {}),
            }
        }
        Message::Lookup(_) => Message::Registry(shared.registry().view(now)),
        Message::Announce(a) => {
            if a.record.origin != peer.id {
                return Message::error(
                    ErrorCode::Forbidden,
                    format!(
                        "broadcast origin {} is not the sender {}",
                        a.record.origin, peer.id
                    ),
                );
            }
            let mut registry = shared.registry();
            let highest = registry.max_seq(&a.record.name);
            if a.record.seq > highest.saturating_add(MAX_SEQ_AHEAD) {
                return Message::error(
                    ErrorCode::BadRequest,
                    format!(
                        "broadcast {:?} seq {} is more than {MAX_SEQ_AHEAD} above the highest held for that name ({highest})",
                        a.record.name, a.record.seq
                    ),
                );
            }
            registry.merge_broadcast(a.record);
            Message::Ack(Ack {})
        }
        Message::Digest(d) => {
            if peer.role != Role::Bootstrap {
                return forbidden_replication(peer);
            }
            Message::Delta(shared.registry().delta_for(now, &d))
        }
        Message::Delta(d) => {
            if peer.role != Role::Bootstrap {
                return forbidden_replication(peer);
            }
            shared.registry().apply_delta(now, &d);
            Message::Ack(Ack {})
        }
        Message::Ping(p) => Message::Pong(Ping { nonce: p.nonce }),
        other => Message::error(
            ErrorCode::BadRequest,
            format!("{} is not a bootstrap request", other.kind()),
        ),
    }
}

/// The request path of a bootstrap server without its QUIC shell: a frame as a peer's stream
/// delivers it, decoded with the server's limits and answered by the same code, against a real
/// registry core. For fuzzing (`fuzz/`, target `bootstrap`) and tests; the server itself goes
/// through [`wire::read_message`].
pub struct RequestPath {
    shared: Shared,
}

impl std::fmt::Debug for RequestPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestPath")
            .field("me", &self.shared.me)
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl RequestPath {
    /// A server identity `me` listening on `addr`, with an empty registry. Nothing is bound and
    /// nothing is written to disk.
    pub fn new(me: PeerInfo, addr: SocketAddr, config: BootstrapConfig) -> Self {
        let registry = Mutex::new(Registry::new(config.registry.clone()));
        Self {
            shared: Shared {
                me,
                addr,
                incarnation: 1,
                config,
                limits: Limits::default(),
                registry,
                changes: Mutex::new(ChangeLog::new(1, ChangeLogConfig::default())),
                heartbeat: Mutex::new(0),
                refused: RefusedHandshakes::new(),
                metrics: BootstrapMetrics::default(),
            },
        }
    }

    /// Decode `frame` (length prefix, body and any payload, as sent on a request stream) the
    /// way the server does and answer it as coming from `peer` at `now`. `Err` where the server
    /// would close the stream or the connection: undecodable bytes, an incomplete frame, or a
    /// payload frame (chunk or manifest data) where a request was expected.
    pub fn answer(
        &self,
        peer: &PeerInfo,
        frame: &[u8],
        now: Instant,
    ) -> Result<Message, WireError> {
        match swarmcast_proto::decode(frame, &self.shared.limits)? {
            None => Err(WireError::Unexpected("incomplete frame")),
            Some((swarmcast_proto::Frame::Message(m), _)) => {
                Ok(handle_request(&self.shared, peer, m, now))
            }
            Some(_) => Err(WireError::Unexpected(
                "payload frame where a message was expected",
            )),
        }
    }

    /// Bump this server's own entry and advance the registry's clock, as its tick does.
    pub fn tick(&self, now: Instant) {
        self.shared.beat(now);
        let mut reg = self.shared.registry();
        reg.handle_timeout(now);
        while reg.poll_event().is_some() {}
    }

    /// The registry core, for what a fellow's answers do to it (see `exchange`).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.shared.registry()
    }
}

fn check_own_entry(peer: &PeerInfo, claimed: NodeId, addrs: &[SocketAddr]) -> Option<Message> {
    if peer.role != Role::Node {
        return Some(Message::error(
            ErrorCode::Forbidden,
            "only node certificates may register",
        ));
    }
    if claimed != peer.id {
        return Some(Message::error(
            ErrorCode::Forbidden,
            format!(
                "registration claims NodeId {claimed} but the certificate's is {}",
                peer.id
            ),
        ));
    }
    if addrs.len() > MAX_ADDRS {
        return Some(Message::error(ErrorCode::BadRequest, "too many addresses"));
    }
    None
}

fn forbidden_replication(peer: &PeerInfo) -> Message {
    Message::error(
        ErrorCode::Forbidden,
        format!(
            "{} has role {}; only bootstraps may replicate",
            peer.name, peer.role
        ),
    )
}

/// Beat, advance the core's clock, and keep one replication task per fellow.
async fn tick_loop(
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    shared: Arc<Shared>,
) {
    let mut interval = tokio::time::interval(shared.config.anti_entropy_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fellows: std::collections::HashMap<SocketAddr, tokio::task::JoinHandle<()>> =
        Default::default();
    loop {
        interval.tick().await;
        let now = Instant::now();
        shared.beat(now);
        {
            let mut reg = shared.registry();
            reg.handle_timeout(now);
            while let Some(event) = reg.poll_event() {
                log_event(&event);
            }
            shared.metrics.set_entries(reg.status_counts(now));
        }
        for addr in shared.fellows(now) {
            let alive = fellows.get(&addr).is_some_and(|h| !h.is_finished());
            if !alive {
                let task = replicate(
                    endpoint.clone(),
                    client_config.clone(),
                    shared.clone(),
                    addr,
                )
                .instrument(info_span!("fellow", %addr));
                fellows.insert(addr, tokio::spawn(task));
            }
        }
    }
}

/// Push-pull with one fellow forever: digest out, delta back, wanted entries out.
async fn replicate(
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    shared: Arc<Shared>,
    addr: SocketAddr,
) {
    let period = shared.config.anti_entropy_interval;
    let timeout = shared.config.request_timeout;
    let kind = if shared.config.peers.contains(&addr) {
        FellowKind::Configured
    } else {
        FellowKind::Discovered
    };
    let mut retry = FellowRetry::new(period, kind);
    loop {
        let conn = match swarmcast_net::connect(&endpoint, &client_config, addr, timeout).await {
            Ok((conn, peer)) if peer.role == Role::Bootstrap && peer.id != shared.me.id => {
                info!(fellow = %peer.name, "replicating");
                retry.handle_connected(Instant::now());
                conn
            }
            Ok((conn, peer)) => {
                warn!(name = %peer.name, role = %peer.role, "not a fellow bootstrap; not replicating with it");
                conn.close(CloseCode::Unwanted.into(), b"not a fellow");
                return;
            }
            Err(e) => {
                let failed = retry.handle_connect_failed(Instant::now());
                if failed.report {
                    debug!(error = %e, failures = failed.failures, "fellow unreachable");
                }
                match failed.retry {
                    // A fellow that is gone for good is dropped from the registry, and with it
                    // this task.
                    Retry::Forget => return,
                    Retry::At(at) => tokio::time::sleep_until(at.into()).await,
                }
                continue;
            }
        };
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let result = exchange(&conn, &shared, timeout).await;
            if result.is_ok() {
                shared.metrics.round();
            }
            if let Err(e) = result {
                if matches!(e, ClientError::Wire(WireError::Refused { .. })) {
                    warn!(error = %e, "fellow refused replication");
                } else {
                    debug!(error = %e, "anti-entropy round failed");
                }
                conn.close(CloseCode::Shutdown.into(), b"reconnect");
                break;
            }
        }
    }
}

async fn exchange(
    conn: &quinn::Connection,
    shared: &Shared,
    timeout: Duration,
) -> Result<(), ClientError> {
    let digest = shared.registry().digest();
    let (answer, bytes) =
        wire::request_sized(conn, &Message::Digest(digest), &shared.limits, timeout).await?;
    shared
        .metrics
        .anti_entropy_bytes(bytes.sent, bytes.received);
    let Message::Delta(delta) = answer else {
        return Err(WireError::Unexpected("expected Delta").into());
    };
    let now = Instant::now();
    let back: Delta = {
        let mut reg = shared.registry();
        reg.apply_delta(now, &delta);
        reg.answer_wants(now, &delta.want_nodes, &delta.want_broadcasts)
    };
    if !back.nodes.is_empty() || !back.broadcasts.is_empty() {
        let (answer, bytes) =
            wire::request_sized(conn, &Message::Delta(back), &shared.limits, timeout).await?;
        shared
            .metrics
            .anti_entropy_bytes(bytes.sent, bytes.received);
        match answer {
            Message::Ack(_) => {}
            _ => return Err(WireError::Unexpected("expected Ack").into()),
        }
    }
    Ok(())
}

async fn snapshot_loop(shared: Arc<Shared>) {
    let Some(dir) = shared.config.data_dir.clone() else {
        return;
    };
    let mut interval = tokio::time::interval(shared.config.snapshot_interval);
    loop {
        interval.tick().await;
        let (nodes, broadcasts) = shared.registry().export(Instant::now());
        let dir = dir.clone();
        let result =
            tokio::task::spawn_blocking(move || snapshot::save(&dir, nodes, broadcasts)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "registry snapshot failed"),
            Err(e) => warn!(error = %e, "registry snapshot task failed"),
        }
    }
}

/// One log line per registry event, naming the node by name and short id.
fn log_event(event: &crate::registry::RegistryEvent) {
    use crate::registry::RegistryEvent;
    match event {
        RegistryEvent::Added { id, name } => {
            info!(node = %name, id = %id.short(), "registry: entry added");
        }
        RegistryEvent::StatusChanged { id, name, from, to } => {
            info!(node = %name, id = %id.short(), ?from, ?to, "registry: status changed");
        }
        RegistryEvent::Dropped { id, name } => {
            info!(node = %name, id = %id.short(), "registry: entry dropped");
        }
        other => info!(event = ?other, "registry"),
    }
}

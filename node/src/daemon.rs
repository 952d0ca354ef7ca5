//! The node daemon: wires the QUIC endpoint, membership, the neighbour actor and the control
//! socket together, and owns the state `node status` reports.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::collections::HashMap;
use swarmcast_certs::Identity;

use swarmcast_proto::{
    BroadcastId, BroadcastRecord, BroadcastState, NodeId, Progress, RegistryEntry, Role, Status,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span};

use crate::control::{
    self, ControlRequest, ControlResponse, FleetProgress, NeighbourStatus, NodeStatus, SeedStatus,
};
use crate::data::serve::{Catalog, ServeEvent};
use crate::data::{DataInput, DataPlane};
use crate::membership::{JoinError, Membership};
use crate::neighbours::NeighbourConfig;
use crate::peers;

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

/// Settings of a node daemon.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Bootstraps to register through (more are learned from them).
    pub seeds: Vec<SocketAddr>,
    /// QUIC address to bind.
    pub listen: SocketAddr,
    /// Address given to others; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// Incarnation, control socket and (later) broadcasts live here.
    pub data_dir: PathBuf,
    /// Heartbeat period (default 1 s); registry lookups follow it.
    pub heartbeat: Duration,
    /// Give up when no seed accepted the registration in this time (default: never).
    pub join_timeout: Option<Duration>,
    /// Neighbour selection and liveness.
    pub neighbours: NeighbourConfig,
    /// Who serves receivers: the swarm (default), or only the origin (a baseline for
    /// benchmarks).
    pub strategy: Strategy,
    /// Test-only fault: serve corrupted chunk payloads (`SWARMCAST_FAULT_CORRUPT=1`).
    pub fault_corrupt: bool,
    /// Test-only fault: wait this long before serving each chunk request, to slow a transfer
    /// down enough to interrupt it mid-way (`SWARMCAST_FAULT_SERVE_DELAY_MS`).
    pub fault_serve_delay: Option<Duration>,
    /// Members of this group (gid) may use the control socket too (`--control-group`).
    pub control_group: Option<u32>,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<SocketAddr>,
}

impl NodeConfig {
    /// Defaults for everything but the seeds and the data dir.
    pub fn new(seeds: Vec<SocketAddr>, data_dir: PathBuf) -> Self {
        Self {
            seeds,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            data_dir,
            heartbeat: Duration::from_secs(1),
            join_timeout: None,
            neighbours: NeighbourConfig::default(),
            strategy: Strategy::Swarm,
            fault_corrupt: false,
            fault_serve_delay: None,
            control_group: None,
            metrics: None,
        }
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The identity is not a node certificate.
    #[error("identity {name} has role {role}; a node needs a node certificate")]
    WrongRole {
        /// Certificate name.
        name: String,
        /// Its role.
        role: Role,
    },
    /// No seed given.
    #[error("at least one --seed is needed")]
    NoSeeds,
    /// The advertised address would be useless to others.
    #[error("cannot advertise {0}; pass --advertise with a concrete address")]
    Unadvertisable(SocketAddr),
    /// TLS configuration failed.
    #[error("certificates: {0}")]
    Cert(#[from] swarmcast_certs::CertError),
    /// Filesystem or socket failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// The metrics address could not be bound.
    #[error(transparent)]
    Metrics(#[from] swarmcast_metrics::MetricsError),
    /// Joining timed out.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// An internal task ended unexpectedly (a bug); restarting resumes from the data dir.
    #[error("internal error: the {0} task ended unexpectedly")]
    Internal(&'static str),
}

#[derive(Debug, Default)]
struct Dynamic {
    progress: Vec<Progress>,
    records: Vec<BroadcastRecord>,
    uploaded_to: HashMap<NodeId, u64>,
    view: Vec<RegistryEntry>,
    view_broadcasts: Vec<BroadcastRecord>,
    bootstrap: Option<SocketAddr>,
    registered: bool,
    seeds: Vec<SeedStatus>,
    neighbours: Vec<NeighbourStatus>,
    registry_size: usize,
    registry_alive: usize,
}

/// What every part of the daemon shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: SocketAddr,
    pub(crate) config: NodeConfig,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) serve_tx: mpsc::Sender<ServeEvent>,
    pub(crate) data_tx: mpsc::Sender<DataInput>,
    started: Instant,
    dynamic: Mutex<Dynamic>,
}

impl Shared {
    fn dynamic(&self) -> MutexGuard<'_, Dynamic> {
        self.dynamic.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn registered(&self) -> bool {
        self.dynamic().registered
    }

    pub(crate) fn set_bootstrap(&self, b: Option<SocketAddr>) {
        let mut d = self.dynamic();
        d.bootstrap = b;
        d.registered |= b.is_some();
    }

    pub(crate) fn set_seeds(&self, seeds: Vec<SeedStatus>) {
        self.dynamic().seeds = seeds;
    }

    pub(crate) fn set_registry_size(&self, size: usize, alive: usize) {
        let mut d = self.dynamic();
        d.registry_size = size;
        d.registry_alive = alive;
    }

    pub(crate) fn set_neighbours(&self, n: Vec<NeighbourStatus>) {
        self.dynamic().neighbours = n;
    }

    /// Progress for heartbeats, broadcast records to announce, and upload counters.
    pub(crate) fn set_data(
        &self,
        progress: Vec<Progress>,
        records: Vec<BroadcastRecord>,
        uploaded_to: HashMap<NodeId, u64>,
    ) {
        let mut d = self.dynamic();
        d.progress = progress;
        d.records = records;
        d.uploaded_to = uploaded_to;
    }

    pub(crate) fn progress(&self) -> Vec<Progress> {
        self.dynamic().progress.clone()
    }

    pub(crate) fn records(&self) -> Vec<BroadcastRecord> {
        self.dynamic().records.clone()
    }

    pub(crate) fn set_view(&self, nodes: Vec<RegistryEntry>, broadcasts: Vec<BroadcastRecord>) {
        let mut d = self.dynamic();
        d.view = nodes;
        d.view_broadcasts = broadcasts;
    }

    /// Fleet progress of one broadcast from the latest registry view.
    fn fleet(&self, id: BroadcastId) -> FleetProgress {
        let d = self.dynamic();
        let record = d.view_broadcasts.iter().find(|r| r.id == id);
        let chunks = record.map_or(0, |r| r.chunks);
        let mut out = FleetProgress {
            id: id.to_hex(),
            bytes: record.map_or(0, |r| r.size),
            chunks,
            nodes_alive: 0,
            nodes_complete: 0,
            chunks_held: 0,
            failed: record
                .filter(|r| r.state == BroadcastState::Failed)
                .map(|_| "the origin declared the broadcast failed".to_owned()),
            nodes: Vec::new(),
        };
        for e in &d.view {
            if e.record.role != Role::Node || e.status != Status::Alive {
                continue;
            }
            out.nodes_alive += 1;
            let held = e
                .record
                .progress
                .iter()
                .find(|p| p.broadcast == id)
                .map_or(0, |p| p.held.min(chunks));
            out.chunks_held += held;
            if chunks > 0 && held == chunks {
                out.nodes_complete += 1;
            }
            out.nodes.push((e.record.name.clone(), held));
        }
        out
    }

    fn status(&self) -> NodeStatus {
        let d = self.dynamic();
        NodeStatus {
            id: self.id.to_hex(),
            name: self.name.clone(),
            incarnation: self.incarnation,
            listen: self.listen,
            advertise: self.advertise,
            registered: d.registered,
            bootstrap: d.bootstrap,
            seeds: d.seeds.clone(),
            neighbours: d.neighbours.clone(),
            registry_size: d.registry_size,
            registry_alive: d.registry_alive,
            uptime_s: self.started.elapsed().as_secs(),
            uploaded_to: d
                .uploaded_to
                .iter()
                .map(|(id, bytes)| (id.to_hex(), *bytes))
                .collect(),
        }
    }
}

impl control::Handler for Shared {
    async fn handle(
        &self,
        caller: control::Credentials,
        request: ControlRequest,
    ) -> ControlResponse {
        match request {
            ControlRequest::Status => ControlResponse::Status(Box::new(self.status())),
            ControlRequest::Send { dir, chunk_size } => {
                let (reply, answer) = oneshot::channel();
                let input = DataInput::Publish {
                    dir,
                    chunk_size,
                    read_as: crate::manifest::ReadAs::caller(caller),
                    reply,
                };
                if self.data_tx.send(input).await.is_err() {
                    return ControlResponse::Error("the daemon is shutting down".into());
                }
                match answer.await {
                    Ok(Ok(info)) => ControlResponse::Sent(info),
                    Ok(Err(e)) => ControlResponse::Error(e),
                    Err(_) => ControlResponse::Error("the daemon is shutting down".into()),
                }
            }
            ControlRequest::List => {
                let (reply, answer) = oneshot::channel();
                if self.data_tx.send(DataInput::List { reply }).await.is_err() {
                    return ControlResponse::Error("the daemon is shutting down".into());
                }
                match answer.await {
                    Ok(list) => ControlResponse::List(list),
                    Err(_) => ControlResponse::Error("the daemon is shutting down".into()),
                }
            }
            ControlRequest::Fleet { id } => match id.parse::<BroadcastId>() {
                Ok(id) => ControlResponse::Fleet(self.fleet(id)),
                Err(e) => ControlResponse::Error(format!("bad broadcast id: {e}")),
            },
        }
    }
}

/// Run a node daemon until `shutdown` resolves (or the join timeout passes).
pub async fn run(
    identity: Identity,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    if identity.role() != Role::Node {
        return Err(NodeError::WrongRole {
            name: identity.name().to_owned(),
            role: identity.role(),
        });
    }
    if config.seeds.is_empty() {
        return Err(NodeError::NoSeeds);
    }
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| NodeError::Io { what, source }
    };
    control::prepare_data_dir(&config.data_dir, config.control_group)?;
    // Own the data dir before anything else: a second daemon on it must fail fast.
    let control_listener = control::bind(&config.data_dir, config.control_group).await?;
    let (metrics, registry) = crate::metrics::Metrics::new();
    let metrics_listener = match config.metrics {
        Some(addr) => Some(swarmcast_metrics::bind(addr).await?),
        None => None,
    };
    let incarnation =
        swarmcast_net::incarnation::next(Some(&config.data_dir)).map_err(io("incarnation file"))?;

    let transport = swarmcast_net::transport_config();
    let server_config = identity.server_config(transport.clone())?;
    let client_config = identity.client_config(transport)?;
    let endpoint = quinn::Endpoint::server(server_config, config.listen)
        .map_err(io(&format!("binding {}", config.listen)))?;
    let listen = endpoint.local_addr().map_err(io("local address"))?;
    let advertise = config.advertise.unwrap_or(listen);
    if advertise.ip().is_unspecified() || advertise.port() == 0 {
        return Err(NodeError::Unadvertisable(advertise));
    }
    let (data_tx, data_rx) = mpsc::channel(1024);
    let (serve_tx, serve_rx) = mpsc::channel(1024);
    let catalog = Arc::new(Catalog::new(config.fault_corrupt, config.fault_serve_delay));
    if config.fault_corrupt {
        tracing::warn!("FAULT INJECTION: this node serves corrupted chunks");
    }
    let shared = Arc::new(Shared {
        catalog,
        serve_tx,
        data_tx: data_tx.clone(),
        id: identity.node_id(),
        name: identity.name().to_owned(),
        incarnation,
        listen,
        advertise,
        config,
        endpoint: endpoint.clone(),
        client_config,
        started: Instant::now(),
        dynamic: Mutex::default(),
    });
    info!(id = %shared.id, name = %shared.name, %listen, %advertise, incarnation, "node starting");

    let access = control::ControlAccess::own(shared.config.control_group);
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(%addr, "serving metrics");
        }
        tokio::spawn(swarmcast_metrics::serve(l, Arc::new(registry)))
    });
    let mut control_task = tokio::spawn(control::serve(control_listener, shared.clone(), access));
    let (peers_tx, peers_rx) = mpsc::channel(256);
    let mut peers_task = tokio::spawn(
        peers::run(shared.clone(), peers_tx.clone(), peers_rx).instrument(info_span!("peers")),
    );
    let data = DataPlane::new(
        shared.clone(),
        data_tx,
        peers_tx.clone(),
        shared.catalog.clone(),
    )
    .with_metrics(metrics);
    let mut data_task = tokio::spawn(data.run(data_rx, serve_rx).instrument(info_span!("data")));
    let membership = Membership::new(shared.clone(), peers_tx);
    // An internal task that ends is a bug (a panic): stop loudly so that a supervisor restarts
    // the node, which then resumes from its data dir, rather than limp on with a frozen part.
    let died = |what: &'static str| {
        move |r: Result<(), tokio::task::JoinError>| {
            let why = match r {
                Err(e) if e.is_panic() => "panicked",
                _ => "stopped",
            };
            tracing::error!(task = what, why, "internal task ended; stopping the node");
            Err(NodeError::Internal(what))
        }
    };
    let result = tokio::select! {
        r = membership.run() => r.map_err(NodeError::from),
        () = shutdown => Ok(()),
        r = &mut data_task => died("data plane")(r),
        r = &mut peers_task => died("neighbours")(r),
        r = &mut control_task => died("control socket")(r),
    };
    info!("node stopping");
    control_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    peers_task.abort();
    data_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&shared.config.data_dir));
    endpoint.close(swarmcast_net::CloseCode::Shutdown.into(), b"shutdown");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

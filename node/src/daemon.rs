//! The node daemon: binds the QUIC endpoint and the control socket, then wires the tasks
//! together, each with the handles it uses and nothing more:
//!
//! | task | gets | sends to |
//! |---|---|---|
//! | membership | [`Me`], a [`Dialer`], the data plane's [`DataReport`](crate::data::DataReport) (watch), the board's fleet reads (watch), the metrics | data plane (`Registry`), neighbours (`Registry`), its status |
//! | neighbours (`peers`) | its id, a [`Dialer`], a [`Server`] | data plane (`PeerUp`/`PeerDown`/`PeerMessage`), its status |
//! | accept | the endpoint, a [`Server`] | neighbours (`Connected`) |
//! | data plane | its id, a [`Dialer`], the catalog | neighbours (`Ban`, unbounded), neighbours' outboxes (`Have`, `HaveUpdate`), its [`DataReport`](crate::data::DataReport) |
//! | control socket | the [`StatusBoard`] | data plane (`Publish`, `List`) |

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use swarmcast_certs::LiveIdentity;
use swarmcast_proto::{BroadcastId, Role};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use crate::accept;
use crate::control::{self, ControlRequest, ControlResponse};
use crate::data::serve::Catalog;
use crate::data::{DataConfig, DataPlane};
use crate::handles::{Dialer, Me, Server, StatusBoard};
use crate::inputs::DataInput;
use crate::manifest::check_audience;
use crate::membership::{JoinError, Membership, MembershipConfig, MembershipLinks};
use crate::neighbours::NeighbourConfig;
use crate::peers;

pub use crate::data::Strategy;

/// Settings of a node daemon.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Bootstraps to register through (more are learned from them).
    pub seeds: Vec<SocketAddr>,
    /// QUIC address to bind.
    pub listen: SocketAddr,
    /// Address given to others; defaults to the bound address.
    pub advertise: Option<SocketAddr>,
    /// Incarnation, control socket and broadcasts (manifests, workspaces, `received/`) live
    /// here.
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
    /// Test-only fault: every manifest build (`node send`) takes at least this much longer, as
    /// hashing a large directory on a loaded machine does (`SWARMCAST_FAULT_HASH_DELAY_MS`).
    pub fault_hash_delay: Option<Duration>,
    /// Members of this group (gid) may use the control socket too (`--control-group`).
    pub control_group: Option<u32>,
    /// Serve Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<SocketAddr>,
    /// Complete versions kept per name (`--keep`, default [`crate::data::DEFAULT_KEEP`]).
    pub keep: usize,
    /// Bytes every broadcast received here may take together (`--max-disk`).
    pub max_disk: Option<u64>,
    /// Pull on demand (`--pull`): receive only what `node fetch` asks for (see
    /// [`BroadcastConfig::pull`](crate::data::BroadcastConfig::pull)).
    pub pull: bool,
    /// Upload cap over every peer and broadcast, bytes per second (`--max-upload`).
    pub max_upload: Option<u64>,
    /// Download cap over every peer and broadcast, bytes per second (`--max-download`).
    pub max_download: Option<u64>,
    /// How often the identity directory is re-read, so that a renewed certificate or a
    /// changed trust bundle is used without a restart (default
    /// [`swarmcast_net::RELOAD_EVERY`], 10 s).
    pub identity_reload: Duration,
    /// The congestion controller of every connection (`--congestion`, an experiment; Cubic).
    pub congestion: swarmcast_net::Congestion,
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
            fault_hash_delay: None,
            control_group: None,
            metrics: None,
            keep: crate::data::DEFAULT_KEEP,
            max_disk: None,
            pull: false,
            max_upload: None,
            max_download: None,
            identity_reload: swarmcast_net::RELOAD_EVERY,
            congestion: swarmcast_net::Congestion::default(),
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

/// Answers the control socket: status from the board, broadcasts from the data plane.
#[derive(Debug)]
struct ControlHandler {
    board: StatusBoard,
    data_tx: mpsc::Sender<DataInput>,
}

impl ControlHandler {
    /// Hand `input` to the data plane and answer with the ids it acted on, or its refusal.
    async fn ids_answer(
        &self,
        input: DataInput,
        answer: oneshot::Receiver<Result<Vec<BroadcastId>, crate::data::TargetError>>,
    ) -> ControlResponse {
        if self.data_tx.send(input).await.is_err() {
            return ControlResponse::Error("the daemon is shutting down".into());
        }
        match answer.await {
            Ok(Ok(ids)) => ControlResponse::Done(ids.iter().map(BroadcastId::to_hex).collect()),
            Ok(Err(e)) => ControlResponse::Error(e.to_string()),
            Err(_) => ControlResponse::Error("the daemon is shutting down".into()),
        }
    }
}

impl control::Handler for ControlHandler {
    async fn handle(
        &self,
        caller: control::Credentials,
        request: ControlRequest,
    ) -> ControlResponse {
        const STOPPING: &str = "the daemon is shutting down";
        match request {
            ControlRequest::Status => ControlResponse::Status(Box::new(self.board.status())),
            ControlRequest::Send {
                dir,
                chunk_size,
                rehash,
                audience,
                priority,
                ..
            } => {
                let audience = audience.map(swarmcast_proto::Audience::canonical);
                if let Some(e) = audience.as_ref().and_then(|a| check_audience(a).err()) {
                    return ControlResponse::Error(format!("--to: {e}"));
                }
                // A name the registry does not know may be a node yet to join: allowed, said.
                let unknown: Vec<String> = audience.as_ref().map_or_else(Vec::new, |a| {
                    let known = self.board.node_names();
                    (a.names.iter())
                        .filter(|n| !known.contains(*n))
                        .cloned()
                        .collect()
                });
                let (reply, answer) = oneshot::channel();
                let input = DataInput::Publish {
                    dir,
                    chunk_size,
                    rehash,
                    audience,
                    priority,
                    read_as: crate::manifest::ReadAs::caller(caller),
                    reply,
                };
                if self.data_tx.send(input).await.is_err() {
                    return ControlResponse::Error(STOPPING.into());
                }
                match answer.await {
                    Ok(Ok(mut info)) => {
                        for name in unknown {
                            warn!(broadcast = %info.id, node = %name, "--to names a node the registry does not know (yet)");
                            info.warnings.push(format!(
                                "--to {name}: no node of that name is in the registry (yet); it may fetch the broadcast once it joins"
                            ));
                        }
                        ControlResponse::Sent(info)
                    }
                    Ok(Err(e)) => ControlResponse::Error(e.to_string()),
                    Err(_) => ControlResponse::Error(STOPPING.into()),
                }
            }
            ControlRequest::List => {
                let (reply, answer) = oneshot::channel();
                if self.data_tx.send(DataInput::List { reply }).await.is_err() {
                    return ControlResponse::Error(STOPPING.into());
                }
                match answer.await {
                    Ok(list) => ControlResponse::List(list),
                    Err(_) => ControlResponse::Error(STOPPING.into()),
                }
            }
            ControlRequest::Remove { target }
            | ControlRequest::Cancel { target }
            | ControlRequest::Fetch { target }
                if target.len() > 4096 =>
            {
                ControlResponse::Error("target too long".into())
            }
            ControlRequest::Remove { target } => {
                let (reply, answer) = oneshot::channel();
                let input = DataInput::Remove { target, reply };
                self.ids_answer(input, answer).await
            }
            ControlRequest::Cancel { target } => {
                let (reply, answer) = oneshot::channel();
                let input = DataInput::Cancel { target, reply };
                self.ids_answer(input, answer).await
            }
            ControlRequest::Fetch { target } => {
                let (reply, answer) = oneshot::channel();
                let input = DataInput::Fetch { target, reply };
                self.ids_answer(input, answer).await
            }
            ControlRequest::Fleet { id } => match id.parse::<BroadcastId>() {
                Ok(id) => ControlResponse::Fleet(self.board.fleet(id)),
                Err(e) => ControlResponse::Error(format!("bad broadcast id: {e}")),
            },
        }
    }
}

/// Run a node daemon until `shutdown` resolves (or the join timeout passes).
/// Raise the soft limit on open files to the hard one. A receiver keeps two descriptors per
/// broadcast it holds (the `data/` handle it serves from and its `held` journal): 5,000 kept
/// broadcasts took 6,340 at a receiver (`bench sends`), past the usual soft limit of 1024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => warn!(error = %e, soft, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the open-file limit"),
    }
}

pub async fn run(
    live: Arc<LiveIdentity>,
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    // Name, role and key never change while it runs (a reload refuses another identity).
    let identity = live.identity();
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
    raise_fd_limit();
    // Own the data dir before anything else: a second daemon on it must fail fast.
    let control_listener = control::bind(&config.data_dir, config.control_group).await?;
    let (metrics, mut registry) = crate::metrics::Metrics::new();
    let cert_expiry = swarmcast_metrics::register_cert_expiry(&mut registry);
    let metrics_listener = match config.metrics {
        Some(addr) => Some(swarmcast_metrics::bind(addr).await?),
        None => None,
    };
    let incarnation =
        swarmcast_net::incarnation::next(Some(&config.data_dir)).map_err(io("incarnation file"))?;

    let transport = swarmcast_net::transport_config_with(config.congestion);
    let server_config = live.server_config(transport.clone())?;
    let client_config = live.client_config(transport)?;
    let endpoint = swarmcast_net::endpoint(config.listen, Some(server_config))
        .map_err(io(&format!("binding {}", config.listen)))?;
    let listen = endpoint.local_addr().map_err(io("local address"))?;
    let advertise = config.advertise.unwrap_or(listen);
    if advertise.ip().is_unspecified() || advertise.port() == 0 {
        return Err(NodeError::Unadvertisable(advertise));
    }
    let me = Me {
        id: identity.node_id(),
        name: identity.name().to_owned(),
        incarnation,
        listen,
        advertise,
    };
    info!(id = %me.id, name = %me.name, %listen, %advertise, incarnation, "node starting");
    if config.fault_corrupt {
        tracing::warn!("FAULT INJECTION: this node serves corrupted chunks");
    }
    let dialer = Dialer::new(endpoint.clone(), client_config);
    let (data_tx, data_rx) = mpsc::channel(1024);
    let (serve_tx, serve_rx) = mpsc::channel(1024);
    let (peers_tx, peers_rx) = mpsc::channel(256);
    // Unbounded so that the data plane never waits for the neighbour actor, which waits for it
    // (see `peers`); it carries at most one ban per peer.
    let (bans_tx, bans_rx) = mpsc::unbounded_channel();
    let catalog = Arc::new(
        Catalog::new(
            config.fault_corrupt,
            config.fault_serve_delay,
            crate::wiretrace::WireTrace::from_env(identity.node_id()),
        )
        .with_caps(config.max_upload, config.max_download),
    );
    let server = Server {
        catalog: catalog.clone(),
        events: serve_tx,
    };
    let (board, writers) = StatusBoard::new(me.clone());

    let handler = ControlHandler {
        board: board.clone(),
        data_tx: data_tx.clone(),
    };
    let access = control::ControlAccess::own(config.control_group);
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(%addr, "serving metrics");
        }
        tokio::spawn(swarmcast_metrics::serve(l, Arc::new(registry)))
    });
    let identity_task = tokio::spawn(
        swarmcast_net::watch_identity(live, config.identity_reload, move |t| {
            cert_expiry.set(t);
        })
        .instrument(info_span!("identity")),
    );
    let mut control_task =
        tokio::spawn(control::serve(control_listener, Arc::new(handler), access));
    let mut accept_task = tokio::spawn(
        accept::run(endpoint.clone(), server.clone(), peers_tx.clone())
            .instrument(info_span!("accept")),
    );
    let neighbours = peers::NeighbourTask {
        me: me.id,
        config: config.neighbours.clone(),
        dialer: dialer.clone(),
        server,
        data_tx: data_tx.clone(),
        status: writers.neighbours,
    };
    let mut peers_task = tokio::spawn(
        peers::run(neighbours, peers_tx.clone(), peers_rx, bans_rx).instrument(info_span!("peers")),
    );
    let data_config = DataConfig {
        data_dir: config.data_dir.clone(),
        strategy: config.strategy,
        keep: config.keep,
        max_disk: config.max_disk,
        pull: config.pull,
        cert_name: identity.name().to_owned(),
        cert_groups: identity.groups().to_vec(),
        fault_hash_delay: config.fault_hash_delay,
    };
    let data = DataPlane::new(
        me.id,
        data_config,
        dialer.clone(),
        data_tx.clone(),
        bans_tx,
        catalog,
        writers.data,
    )
    .with_metrics(metrics.clone());
    let mut data_task = tokio::spawn(data.run(data_rx, serve_rx).instrument(info_span!("data")));
    let membership = Membership::new(
        me,
        MembershipConfig {
            seeds: config.seeds.clone(),
            heartbeat: config.heartbeat,
            join_timeout: config.join_timeout,
            pull: config.pull,
        },
        MembershipLinks {
            dialer,
            data: board.data(),
            fleet_reads: board.fleet_reads(),
            status: writers.membership,
            data_tx,
            peers_tx,
            metrics,
        },
    );
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
        r = &mut accept_task => died("accept")(r),
        r = &mut control_task => died("control socket")(r),
    };
    info!("node stopping");
    identity_task.abort();
    control_task.abort();
    if let Some(t) = metrics_task {
        t.abort();
    }
    accept_task.abort();
    peers_task.abort();
    data_task.abort();
    let _ = std::fs::remove_file(control::socket_path(&config.data_dir));
    endpoint.close(swarmcast_net::CloseCode::Shutdown.into(), b"shutdown");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

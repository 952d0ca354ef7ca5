//! Membership shell: carries out what the membership core ([`machine`]) decides. One prober
//! task per seed keeps a connection to it (waiting as the core's [`Backoff`] says between
//! failed dials) and reports it; the membership loop feeds the core those reports, the data
//! plane's [`DataReport`] and the fleet reads of the status board, and runs the registrations
//! and heartbeat exchanges it asks for, one at a time. Each registry view goes on to the
//! neighbour actor and the data plane; heartbeats carry the data plane's progress
//! ([`ProgressSync`]) and announce its records ([`records_to_announce`]). The shell decides
//! nothing: no timing, retry or failover of its own.

mod handout;
mod machine;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmcast_bootstrap::registry::RegistryMirror;
use swarmcast_bootstrap::{BootstrapClient, ClientError};
use swarmcast_net::CertRefusal;
use swarmcast_proto::{Heartbeat, NodeRecord, RegistryEntry, RegistryView, Role, Status, Version};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use self::machine::{Action, Backoff, CoreConfig, MembershipCore};
use crate::data::broadcast::DataReport;
use crate::handles::{Dialer, Me};
use crate::heartbeat::{ProgressSync, ProgressSyncConfig, records_to_announce};
use crate::inputs::{DataInput, FleetReads, NeighbourInput as Input};
use crate::metrics::Metrics;
use crate::status::{HeartbeatStats, MembershipStatus, SeedStatus};

/// Why membership gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No seed accepted the registration in time.
    #[error("no seed accepted the registration within {after:?}{}", seed_errors(.last_errors))]
    Timeout {
        /// The join timeout.
        after: Duration,
        /// Each seed's latest error (connection or registration), in seed order.
        last_errors: Vec<(SocketAddr, SeedError)>,
    },
}

impl JoinError {
    /// The first seed whose handshake failed over a certificate, and how: what tells a node
    /// given another cluster's certificate (see [`CertRefusal::is_untrusted_issuer`]).
    pub fn cert_refusal(&self) -> Option<(SocketAddr, CertRefusal)> {
        match self {
            Self::Timeout { last_errors, .. } => last_errors
                .iter()
                .find_map(|(seed, e)| Some((*seed, e.cert_refusal()?))),
        }
    }
}

/// What went wrong with one seed, kept as the client's typed error (shared: the seed's slot
/// and the join error both hold it).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// Connecting to the seed failed.
    #[error(transparent)]
    Connect(Arc<ClientError>),
    /// The seed did not accept the registration.
    #[error(transparent)]
    Register(Arc<ClientError>),
    /// A heartbeat (or the lookup after it) failed.
    #[error(transparent)]
    Beat(Arc<ClientError>),
}

impl SeedError {
    /// The client's error.
    pub fn client_error(&self) -> &ClientError {
        match self {
            Self::Connect(e) | Self::Register(e) | Self::Beat(e) => e,
        }
    }

    /// The certificate refusal behind it, if any.
    pub fn cert_refusal(&self) -> Option<CertRefusal> {
        self.client_error().cert_refusal()
    }
}

/// A registry entry without its progress items.
fn without_progress(e: &RegistryEntry) -> RegistryEntry {
    let r = &e.record;
    RegistryEntry {
        record: NodeRecord {
            id: r.id,
            name: r.name.clone(),
            role: r.role,
            addrs: r.addrs.clone(),
            version: r.version,
            progress: Vec::new(),
            progress_seq: r.progress_seq,
            pull: r.pull,
            groups: r.groups.clone(),
        },
        status: e.status,
        age_ms: e.age_ms,
    }
}

fn seed_errors(errors: &[(SocketAddr, SeedError)]) -> String {
    errors.iter().map(|(a, e)| format!("; {a}: {e}")).collect()
}

/// Membership's settings.
#[derive(Debug, Clone)]
pub(crate) struct MembershipConfig {
    /// Bootstraps to register through (more are learned from them).
    pub(crate) seeds: Vec<SocketAddr>,
    /// Heartbeat period; registry lookups follow it.
    pub(crate) heartbeat: Duration,
    /// Give up when no seed accepted the registration in this time.
    pub(crate) join_timeout: Option<Duration>,
    /// `--pull`: said in the registration and every heartbeat, so that the registry tells
    /// `node send --wait` not to wait for this node unless it asked for a broadcast.
    pub(crate) pull: bool,
}

/// What membership reads and whom it tells.
#[derive(Debug)]
pub(crate) struct MembershipLinks {
    pub(crate) dialer: Dialer,
    /// The data plane's progress and records, for heartbeats and announcements; its news
    /// (a completion, a publication) asks the core for a beat off the period.
    pub(crate) data: watch::Receiver<DataReport>,
    /// How often fleet progress was read, by whether the broadcast was settled: the core
    /// beats off its period (at most one per 50 ms) while `node send --wait` follows an
    /// unfinished broadcast, so that fleet progress reaches the sender within a few round
    /// trips, not periods.
    pub(crate) fleet_reads: watch::Receiver<FleetReads>,
    /// Its part of `node status`.
    pub(crate) status: watch::Sender<MembershipStatus>,
    /// Registry views for the data plane.
    pub(crate) data_tx: mpsc::Sender<DataInput>,
    /// Registry views for the neighbour actor.
    pub(crate) peers_tx: mpsc::Sender<Input>,
    /// Where the heartbeat round trip is observed.
    pub(crate) metrics: Metrics,
}

/// What a prober reports.
#[derive(Debug)]
enum SeedEvent {
    /// A connection to the seed is up.
    Up(SocketAddr, BootstrapClient),
    /// A dial failed.
    Failed(SocketAddr, SeedError),
    /// The connection closed.
    Gone(SocketAddr),
}

pub(crate) struct Membership {
    me: Me,
    links: MembershipLinks,
    core: MembershipCore<SeedError>,
    /// Every seed's connection, as its prober last reported it.
    clients: BTreeMap<SocketAddr, BootstrapClient>,
    events_tx: mpsc::Sender<SeedEvent>,
    events: mpsc::Receiver<SeedEvent>,
    heartbeat: u64,
    /// The current bootstrap's registry, kept up to date by the changes its heartbeat
    /// answers carry.
    mirror: RegistryMirror,
    /// Which progress each heartbeat carries (the changes the bootstrap has not acknowledged).
    progress: ProgressSync,
    /// When a beat's view is handed on.
    handout: handout::Handout,
    /// The bootstraps the last view handed on named (for beats that hand nothing on).
    bootstraps: Vec<SocketAddr>,
    /// `--pull`, said in the registration and each heartbeat.
    pull: bool,
}

impl Membership {
    pub(crate) fn new(me: Me, config: MembershipConfig, links: MembershipLinks) -> Self {
        let core_config = CoreConfig::new(config.heartbeat, config.join_timeout);
        let core = MembershipCore::new(core_config, me.advertise, &config.seeds, Instant::now());
        let (events_tx, events) = mpsc::channel(64);
        Self {
            me,
            links,
            core,
            clients: BTreeMap::new(),
            events_tx,
            events,
            heartbeat: 0,
            mirror: RegistryMirror::default(),
            progress: ProgressSync::new(ProgressSyncConfig::default()),
            handout: handout::Handout::default(),
            bootstraps: Vec::new(),
            pull: config.pull,
        }
    }

    /// Run until the process stops; fails only on the join timeout. Moves events between the
    /// probers, the watch channels and the core, in the core's call order.
    pub(crate) async fn run(mut self) -> Result<(), JoinError> {
        let mut data = self.links.data.clone();
        let mut reads = self.links.fleet_reads.clone();
        // What the fleet hears of with the first beat, which is due at once.
        self.core
            .handle_report(Instant::now(), &data.borrow_and_update());
        self.drive().await?;
        let (mut data_open, mut reads_open) = (true, true);
        loop {
            let timeout = self.core.poll_timeout();
            tokio::select! {
                biased;
                // Never `None`: this task holds a sender.
                Some(event) = self.events.recv() => self.handle_event(event),
                () = sleep_until(timeout), if timeout.is_some() => {
                    self.core.handle_timeout(Instant::now());
                }
                changed = reads.changed(), if reads_open => {
                    reads_open = changed.is_ok();
                    let latest = *reads.borrow_and_update();
                    self.core.handle_fleet_reads(Instant::now(), latest);
                }
                changed = data.changed(), if data_open => {
                    data_open = changed.is_ok();
                    if data_open {
                        self.core.handle_report(Instant::now(), &data.borrow_and_update());
                    }
                }
            }
            self.drive().await?;
        }
    }

    fn handle_event(&mut self, event: SeedEvent) {
        let now = Instant::now();
        match event {
            SeedEvent::Up(addr, client) => {
                self.clients.insert(addr, client);
                self.core.handle_seed_up(now, addr);
            }
            SeedEvent::Failed(addr, error) => self.core.handle_seed_failed(now, addr, error),
            SeedEvent::Gone(addr) => {
                self.clients.remove(&addr);
                self.core.handle_seed_gone(now, addr);
            }
        }
    }

    /// Carry out the core's actions (their answers may bring more), then publish the status.
    async fn drive(&mut self) -> Result<(), JoinError> {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Probe(addr) => {
                    let dialer = self.links.dialer.clone();
                    let config = self.core.config().clone();
                    let events = self.events_tx.clone();
                    let seed = rand::random();
                    let span = info_span!("seed", %addr);
                    tokio::spawn(probe(dialer, config, events, addr, seed).instrument(span));
                }
                Action::Register(addr) => self.register(addr).await,
                Action::Beat(addr) => self.beat(addr).await,
                Action::Close(addr) => {
                    if let Some(c) = self.clients.get(&addr) {
                        c.close();
                    }
                }
                Action::WarnUnreachable => {
                    let seeds: Vec<SocketAddr> = self.core.seeds().iter().map(|s| s.addr).collect();
                    warn!(?seeds, "no bootstrap reachable; retrying");
                }
                Action::GiveUp { after, last_errors } => {
                    return Err(JoinError::Timeout { after, last_errors });
                }
            }
        }
        self.publish_status();
        Ok(())
    }

    /// The seed's connection, if it is up.
    fn client(&self, addr: SocketAddr) -> Option<BootstrapClient> {
        self.clients.get(&addr).filter(|c| !c.is_closed()).cloned()
    }

    async fn register(&mut self, addr: SocketAddr) {
        let Some(client) = self.client(addr) else {
            self.core.handle_seed_gone(Instant::now(), addr);
            return;
        };
        let addrs = vec![self.me.advertise];
        let register = swarmcast_proto::Register {
            id: self.me.id,
            incarnation: self.me.incarnation,
            addrs,
            pull: self.pull,
        };
        let result = client.register_with(register).await;
        let now = Instant::now();
        match result {
            Ok(reg) => {
                info!(bootstrap = %addr, name = %client.peer().name, "registered");
                self.core.handle_registered(now, addr, reg.bootstraps);
            }
            Err(e) => {
                warn!(bootstrap = %addr, error = %e, "registration failed");
                let e = SeedError::Register(Arc::new(e));
                self.core.handle_register_failed(now, addr, e);
            }
        }
    }

    async fn beat(&mut self, addr: SocketAddr) {
        let Some(client) = self.client(addr) else {
            self.core.handle_seed_gone(Instant::now(), addr);
            return;
        };
        match self.exchange(&client).await {
            Ok(view) => {
                let bootstraps = match view {
                    Some(view) => {
                        let b = self.hand_out(view).await;
                        self.bootstraps.clone_from(&b);
                        b
                    }
                    None => self.bootstraps.clone(),
                };
                let awaiting = self.links.data.borrow().awaiting_registry;
                (self.core).handle_beat_ok(Instant::now(), addr, bootstraps, awaiting);
            }
            Err(e) => {
                warn!(bootstrap = %addr, error = %e, "bootstrap stopped answering; failing over");
                let e = SeedError::Beat(Arc::new(e));
                self.core.handle_beat_failed(Instant::now(), addr, e);
            }
        }
    }

    /// Give a registry view to the status board, the data plane and the neighbours; the
    /// bootstraps it names (not dead).
    async fn hand_out(&mut self, view: RegistryView) -> Vec<SocketAddr> {
        let alive = (view.nodes.iter())
            .filter(|e| e.status == Status::Alive)
            .count();
        let bootstraps = (view.nodes.iter())
            .filter(|e| e.record.role == Role::Bootstrap && e.status != Status::Dead)
            .flat_map(|e| e.record.addrs.iter().copied())
            .collect();
        // The data plane and the neighbours use addresses and liveness, never progress (every
        // node's, for every broadcast it keeps): only the status board (fleet progress, for
        // `--wait`) keeps it, and takes it without a copy.
        let bare: Vec<RegistryEntry> = view.nodes.iter().map(without_progress).collect();
        let broadcasts = view.broadcasts.clone();
        self.links.status.send_modify(|s| {
            s.registry_size = view.nodes.len();
            s.registry_alive = alive;
            s.view = view.nodes;
            s.view_broadcasts = view.broadcasts;
        });
        let registry = DataInput::Registry {
            nodes: bare.clone(),
            broadcasts,
        };
        // A receiver gone means the daemon is stopping.
        let _ = self.links.data_tx.send(registry).await;
        let _ = self.links.peers_tx.send(Input::Registry(bare)).await;
        bootstraps
    }

    async fn exchange(
        &mut self,
        client: &BootstrapClient,
    ) -> Result<Option<RegistryView>, swarmcast_bootstrap::ClientError> {
        {
            let report = self.links.data.borrow();
            self.progress.handle_report(&report.progress);
        }
        let records = {
            let report = self.links.data.borrow();
            records_to_announce(&report.records, |id| {
                self.mirror.broadcast(id).map(|r| r.version)
            })
        };
        let announced = records.len();
        for record in records {
            match client.announce(record).await {
                Ok(()) => {}
                // A refusal is about that record (its origin or seq), not the connection: the
                // heartbeat goes on.
                Err(swarmcast_bootstrap::ClientError::Wire(
                    swarmcast_net::wire::WireError::Refused { code, message },
                )) => {
                    warn!(bootstrap = %client.addr(), ?code, %message, "broadcast record refused");
                }
                Err(e) => return Err(e),
            }
        }
        self.heartbeat += 1;
        let payload = self.progress.poll_payload();
        let hb = Heartbeat {
            id: self.me.id,
            version: Version::new(self.me.incarnation, self.heartbeat),
            addrs: vec![self.me.advertise],
            progress: payload.items,
            progress_span: payload.span,
            progress_removed: payload.removed,
            changes_since: Some(self.mirror.since()),
            pull: self.pull,
        };
        let stats = HeartbeatStats {
            progress_items: hb.progress.len(),
            progress_removed: hb.progress_removed.len(),
            bytes: {
                let mut out = Vec::new();
                let msg = swarmcast_proto::Message::Heartbeat(hb.clone());
                let limits = swarmcast_proto::Limits::default();
                swarmcast_proto::encode(&msg, &limits, &mut out).map_or(0, |()| out.len())
            },
            announced,
            acked: None,
        };
        // The answer carries what changed since the mirror's cursor (everything the first
        // time, and after a failover); a bootstrap that only acknowledges is asked for all.
        let sent = Instant::now();
        let answer = client.heartbeat_changes(hb).await?;
        self.links.metrics.heartbeat_rtt(sent.elapsed());
        let view = match answer {
            Some(changes) => changes,
            None => client.lookup().await?,
        };
        self.progress.handle_ack(view.progress_ack);
        let stats = HeartbeatStats {
            acked: view.progress_ack,
            ..stats
        };
        self.links
            .status
            .send_modify(|s| s.last_heartbeat = Some(stats));
        let changed = self.mirror.apply(view);
        // The whole copy only when it is to be handed on (see `handout`).
        Ok(self.handout.after_beat(changed).then(|| self.mirror.view()))
    }

    /// The core's view of the seeds and the bootstrap in use, on the status board (only when
    /// it changed: this runs after every event).
    fn publish_status(&self) {
        let seeds: Vec<SeedStatus> = (self.core.seeds().iter())
            .map(|s| SeedStatus {
                addr: s.addr,
                reachable: s.live,
                last_error: s.last_error.as_ref().map(ToString::to_string),
                failures: s.failures,
            })
            .collect();
        let bootstrap = self.core.current();
        let registered = self.core.registered();
        self.links.status.send_if_modified(|s| {
            let changed =
                s.seeds != seeds || s.bootstrap != bootstrap || s.registered != registered;
            s.seeds = seeds;
            s.bootstrap = bootstrap;
            s.registered = registered;
            changed
        });
    }
}

/// Sleep until `at` (`None`: forever; the branch is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Keep a connection to one seed and report it: connect, wait for it to close, and after a
/// failed dial wait as the core's [`Backoff`] says. Ends when membership does.
async fn probe(
    dialer: Dialer,
    config: CoreConfig,
    events: mpsc::Sender<SeedEvent>,
    addr: SocketAddr,
    seed: u64,
) {
    let mut backoff = Backoff::new(&config, seed);
    loop {
        match dialer.bootstrap(addr, config.dial_timeout()).await {
            Ok(mut client) => {
                client.set_timeout(config.request_timeout());
                debug!(name = %client.peer().name, "seed reachable");
                backoff.handle_success();
                let conn = client.connection().clone();
                if events.send(SeedEvent::Up(addr, client)).await.is_err() {
                    return;
                }
                let reason = conn.closed().await;
                debug!(%reason, "seed connection closed");
                if events.send(SeedEvent::Gone(addr)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let wait = backoff.handle_failure();
                let e = SeedError::Connect(Arc::new(e));
                if backoff.failures() == 1 {
                    info!(error = %e, "seed unreachable; retrying with backoff");
                }
                if events.send(SeedEvent::Failed(addr, e)).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

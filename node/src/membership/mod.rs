//! Membership shell: keeps a connection to every seed (retrying failed ones with exponential
//! backoff and jitter), registers through the first seed that answers, heartbeats, fails over
//! when its bootstrap stops answering, and hands each registry view to the neighbour actor and
//! the data plane. Its heartbeats carry the data plane's progress and announce its records,
//! read from the data plane's [`DataReport`] watch channel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use swarmcast_bootstrap::registry::RegistryMirror;
use swarmcast_bootstrap::{BootstrapClient, ClientError};
use swarmcast_net::CertRefusal;
use swarmcast_proto::{
    Heartbeat, NodeRecord, Progress, RegistryEntry, RegistryView, Role, Status, Version,
};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::data::broadcast::DataReport;
use crate::handles::{Dialer, Me};
use crate::heartbeat::{ProgressSync, ProgressSyncConfig, records_to_announce};
use crate::inputs::{DataInput, NeighbourInput as Input};
use crate::status::{HeartbeatStats, MembershipStatus, SeedStatus};
use crate::sync::lock;

/// Shortest time between two heartbeats asked for off the period (a nudge).
pub(crate) const MIN_NUDGE_SPACING: Duration = Duration::from_millis(50);

/// While the data plane waits for the registry to name a broadcast's origin
/// (`DataReport::awaiting_registry`), heartbeats go this often instead of once a period, at most
/// [`AWAIT_REGISTRY_BEATS`] in a row: the origin's own record may reach the bootstrap a moment
/// after the receivers first ask.
const AWAIT_REGISTRY_SPACING: Duration = Duration::from_millis(100);
const AWAIT_REGISTRY_BEATS: u32 = 30;

/// One seed's live state, shared between its prober task and the membership loop.
#[derive(Debug, Default)]
struct Slot {
    client: Option<BootstrapClient>,
    last_error: Option<SeedError>,
    failures: u32,
}

type Slots = Arc<Mutex<BTreeMap<SocketAddr, Slot>>>;

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

/// Whether the data plane's report changed in a way the fleet should hear of at once: a
/// broadcast completed here, or one was published (or changed state) here.
fn worth_a_beat(old: &DataReport, new: &DataReport) -> bool {
    // Complete (published, or every chunk held) or failed: what `--wait` is waiting to hear.
    let settled =
        |p: &Progress| p.complete || p.failed.is_some() || (p.total > 0 && p.held == p.total);
    // Sets of the old report, so that this is O(broadcasts), not O(broadcasts²).
    let was_settled: std::collections::HashSet<_> = old
        .progress
        .iter()
        .filter(|o| settled(o))
        .map(|o| o.broadcast)
        .collect();
    let completed = new
        .progress
        .iter()
        .any(|p| settled(p) && !was_settled.contains(&p.broadcast));
    let old_records: std::collections::HashSet<_> =
        old.records.iter().map(|o| (o.id, o.state)).collect();
    let published = new
        .records
        .iter()
        .any(|r| !old_records.contains(&(r.id, r.state)));
    completed || published || (new.awaiting_registry && !old.awaiting_registry)
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
}

/// What membership reads and whom it tells.
#[derive(Debug)]
pub(crate) struct MembershipLinks {
    pub(crate) dialer: Dialer,
    /// The data plane's progress and records, for heartbeats and announcements.
    pub(crate) data: watch::Receiver<DataReport>,
    /// Wakes the loop for a heartbeat now, off its period (at most one per
    /// [`MIN_NUDGE_SPACING`]): while `node send --wait` follows an unfinished broadcast. The
    /// loop also beats at once when this node's copy of a broadcast completes and when it
    /// publishes one (seen in `data`). Fleet progress then reaches the sender within a few round
    /// trips, not periods.
    pub(crate) beat_now: Arc<tokio::sync::Notify>,
    /// Its part of `node status`.
    pub(crate) status: watch::Sender<MembershipStatus>,
    /// Registry views for the data plane.
    pub(crate) data_tx: mpsc::Sender<DataInput>,
    /// Registry views for the neighbour actor.
    pub(crate) peers_tx: mpsc::Sender<Input>,
}

pub(crate) struct Membership {
    me: Me,
    config: MembershipConfig,
    links: MembershipLinks,
    slots: Slots,
    order: Vec<SocketAddr>,
    current: Option<BootstrapClient>,
    heartbeat: u64,
    /// The current bootstrap's registry, kept up to date by the changes its heartbeat
    /// answers carry.
    mirror: RegistryMirror,
    /// Which progress each heartbeat carries (the changes the bootstrap has not acknowledged).
    progress: ProgressSync,
}

impl Membership {
    pub(crate) fn new(me: Me, config: MembershipConfig, links: MembershipLinks) -> Self {
        Self {
            me,
            config,
            links,
            slots: Arc::default(),
            order: Vec::new(),
            current: None,
            heartbeat: 0,
            mirror: RegistryMirror::default(),
            progress: ProgressSync::new(ProgressSyncConfig::default()),
        }
    }

    fn registered(&self) -> bool {
        self.links.status.borrow().registered
    }

    fn set_bootstrap(&self, b: Option<SocketAddr>) {
        self.links.status.send_modify(|s| {
            s.bootstrap = b;
            s.registered |= b.is_some();
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, Slot>> {
        lock(&self.slots)
    }

    /// Start probing a seed (once per address).
    fn add_seed(&mut self, addr: SocketAddr) {
        if addr == self.me.advertise || self.order.contains(&addr) {
            return;
        }
        self.order.push(addr);
        self.lock().insert(addr, Slot::default());
        let slots = self.slots.clone();
        let dialer = self.links.dialer.clone();
        let heartbeat = self.config.heartbeat;
        tokio::spawn(probe(dialer, heartbeat, slots, addr).instrument(info_span!("seed", %addr)));
    }

    /// Run until the process stops; fails only on the join timeout.
    pub(crate) async fn run(mut self) -> Result<(), JoinError> {
        for s in self.config.seeds.clone() {
            self.add_seed(s);
        }
        let started = Instant::now();
        let period = self.config.heartbeat;
        // While no bootstrap is in use, retry quickly: a prober may connect at any moment.
        let retry = period.min(Duration::from_millis(100));
        let mut failing_since: Option<Instant> = None;
        let mut last_warn: Option<Instant> = None;
        let mut next = tokio::time::Instant::now();
        let mut last_beat = next;
        let mut data = self.links.data.clone();
        let mut seen = data.borrow_and_update().clone();
        let beat_now = self.links.beat_now.clone();
        let mut data_open = true;
        // Beats in a row asked for by `awaiting_registry`, and when the next such beat is due.
        let mut awaited = 0u32;
        let mut soon: Option<tokio::time::Instant> = None;
        loop {
            let extra = soon.filter(|&s| s < next);
            let nudged = tokio::select! {
                // An extra beat (`awaiting_registry`) counts as a nudge: the period keeps its phase.
                () = tokio::time::sleep_until(extra.unwrap_or(next)) => extra.is_some(),
                () = beat_now.notified() => true,
                changed = data.changed(), if data_open => {
                    data_open = changed.is_ok();
                    let now = data.borrow_and_update().clone();
                    let news = data_open && worth_a_beat(&seen, &now);
                    seen = now;
                    if !news {
                        continue;
                    }
                    true
                }
            };
            if nudged {
                // Nudges come from many places; keep them from turning into a busy loop.
                tokio::time::sleep_until(last_beat + MIN_NUDGE_SPACING).await;
            }
            last_beat = tokio::time::Instant::now();
            let ok = self.beat().await;
            self.publish_status();
            if ok {
                failing_since = None;
                let awaiting = data.borrow().awaiting_registry;
                awaited = if awaiting { awaited + 1 } else { 0 };
                soon = (awaiting && awaited <= AWAIT_REGISTRY_BEATS)
                    .then(|| tokio::time::Instant::now() + AWAIT_REGISTRY_SPACING);
                if nudged {
                    // An extra beat; the period keeps its phase.
                    continue;
                }
                next += period;
                // After a stall (slow bootstrap, suspended process) beat at once, then on period.
                next = next.max(tokio::time::Instant::now());
                continue;
            }
            next = tokio::time::Instant::now() + retry;
            let since = *failing_since.get_or_insert_with(Instant::now);
            if !self.registered() {
                if let Some(limit) = self.config.join_timeout {
                    if started.elapsed() >= limit {
                        let slots = self.lock();
                        let last_errors = (self.order.iter())
                            .filter_map(|a| Some((*a, slots.get(a)?.last_error.clone()?)))
                            .collect();
                        return Err(JoinError::Timeout {
                            after: limit,
                            last_errors,
                        });
                    }
                }
            }
            if since.elapsed() >= Duration::from_secs(2)
                && last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
            {
                last_warn = Some(Instant::now());
                warn!(seeds = ?self.order, "no bootstrap reachable; retrying");
            }
        }
    }

    /// One heartbeat period: make sure a bootstrap is in use, beat, look up. True on success.
    async fn beat(&mut self) -> bool {
        // Try the current bootstrap first, then every other live seed in order.
        for _ in 0..=self.order.len() {
            if self.current.as_ref().is_none_or(|c| c.is_closed()) {
                self.current = None;
                if !self.choose().await {
                    return false;
                }
            }
            let Some(client) = self.current.clone() else {
                return false;
            };
            match self.exchange(&client).await {
                Ok(view) => {
                    self.learn(&view);
                    // The data plane and the neighbours use addresses and liveness, never
                    // progress (every node's, for every broadcast it keeps): only the status
                    // board (fleet progress, for `--wait`) keeps it, and takes it without a copy.
                    let bare: Vec<RegistryEntry> =
                        view.nodes.iter().map(without_progress).collect();
                    let broadcasts = view.broadcasts.clone();
                    self.links.status.send_modify(|s| {
                        s.view = view.nodes;
                        s.view_broadcasts = view.broadcasts;
                    });
                    let _ = self
                        .links
                        .data_tx
                        .send(DataInput::Registry {
                            nodes: bare.clone(),
                            broadcasts,
                        })
                        .await;
                    let _ = self.links.peers_tx.send(Input::Registry(bare)).await;
                    return true;
                }
                Err(e) => {
                    warn!(bootstrap = %client.addr(), error = %e, "bootstrap stopped answering; failing over");
                    self.fail(client.addr(), SeedError::Beat(Arc::new(e)));
                    client.close();
                    self.current = None;
                }
            }
        }
        false
    }

    async fn exchange(
        &mut self,
        client: &BootstrapClient,
    ) -> Result<RegistryView, swarmcast_bootstrap::ClientError> {
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
        let view = match client.heartbeat_changes(hb).await? {
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
        self.mirror.apply(view);
        Ok(self.mirror.view())
    }

    /// Register through the first live seed, in the order given. True on success.
    async fn choose(&mut self) -> bool {
        let candidates: Vec<BootstrapClient> = {
            let slots = self.lock();
            self.order
                .iter()
                .filter_map(|a| slots.get(a).and_then(|s| s.client.clone()))
                .filter(|c| !c.is_closed())
                .collect()
        };
        for client in candidates {
            let addrs = vec![self.me.advertise];
            match client
                .register(self.me.id, self.me.incarnation, addrs)
                .await
            {
                Ok(reg) => {
                    info!(bootstrap = %client.addr(), name = %client.peer().name, "registered");
                    for b in reg.bootstraps {
                        self.add_seed(b);
                    }
                    self.set_bootstrap(Some(client.addr()));
                    self.current = Some(client);
                    return true;
                }
                Err(e) => {
                    warn!(bootstrap = %client.addr(), error = %e, "registration failed");
                    self.fail(client.addr(), SeedError::Register(Arc::new(e)));
                    client.close();
                }
            }
        }
        self.set_bootstrap(None);
        false
    }

    fn fail(&self, addr: SocketAddr, error: SeedError) {
        if let Some(slot) = self.lock().get_mut(&addr) {
            slot.last_error = Some(error);
        }
    }

    /// Bootstraps found in the registry become seeds too.
    fn learn(&mut self, view: &RegistryView) {
        let alive = view
            .nodes
            .iter()
            .filter(|e| e.status == Status::Alive)
            .count();
        self.links.status.send_modify(|s| {
            s.registry_size = view.nodes.len();
            s.registry_alive = alive;
        });
        let found: Vec<SocketAddr> = view
            .nodes
            .iter()
            .filter(|e| e.record.role == Role::Bootstrap && e.status != Status::Dead)
            .flat_map(|e| e.record.addrs.iter().copied())
            .collect();
        for a in found {
            self.add_seed(a);
        }
    }

    fn publish_status(&self) {
        let seeds = self
            .order
            .iter()
            .filter_map(|a| {
                let slots = self.lock();
                slots.get(a).map(|s| SeedStatus {
                    addr: *a,
                    reachable: s.client.as_ref().is_some_and(|c| !c.is_closed()),
                    last_error: s.last_error.as_ref().map(ToString::to_string),
                    failures: s.failures,
                })
            })
            .collect();
        self.links.status.send_modify(|s| s.seeds = seeds);
    }
}

/// Keep a connection to one seed: connect, wait for it to close, retry with backoff and jitter.
async fn probe(dialer: Dialer, heartbeat: Duration, slots: Slots, addr: SocketAddr) {
    let builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let mut backoff = builder.build();
    loop {
        let timeout = heartbeat.max(Duration::from_secs(1)) * 2;
        match dialer.bootstrap(addr, timeout).await {
            Ok(mut client) => {
                client.set_timeout(heartbeat.max(Duration::from_millis(500)));
                debug!(name = %client.peer().name, "seed reachable");
                let conn = client.connection().clone();
                if let Some(slot) = lock(&slots).get_mut(&addr) {
                    slot.client = Some(client);
                    slot.failures = 0;
                }
                backoff = builder.build();
                let reason = conn.closed().await;
                debug!(%reason, "seed connection closed");
                if let Some(slot) = lock(&slots).get_mut(&addr) {
                    slot.client = None;
                }
            }
            Err(e) => {
                let e = SeedError::Connect(Arc::new(e));
                let failures = {
                    let mut guard = lock(&slots);
                    let Some(slot) = guard.get_mut(&addr) else {
                        return;
                    };
                    slot.failures = slot.failures.saturating_add(1);
                    slot.last_error = Some(e.clone());
                    slot.failures
                };
                if failures == 1 {
                    info!(error = %e, "seed unreachable; retrying with backoff");
                }
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcast_proto::{BroadcastId, BroadcastRecord, BroadcastState, NodeId, Progress};

    fn report(held: u64, state: Option<BroadcastState>) -> DataReport {
        DataReport {
            progress: vec![Progress {
                broadcast: BroadcastId([1; 32]),
                held,
                total: 4,
                complete: held == 4,
                failed: None,
            }],
            records: state
                .map(|state| BroadcastRecord {
                    id: BroadcastId([1; 32]),
                    name: "d".into(),
                    origin: NodeId([2; 32]),
                    size: 4,
                    chunks: 4,
                    state,
                    version: 0,
                    seq: 0,
                    published_ms: 0,
                })
                .into_iter()
                .collect(),
            uploaded_to: Default::default(),
            awaiting_registry: false,
        }
    }

    #[test]
    fn a_completion_or_a_publication_is_worth_a_beat_mere_progress_is_not() {
        assert!(
            !worth_a_beat(&report(1, None), &report(2, None)),
            "progress"
        );
        assert!(
            worth_a_beat(&report(3, None), &report(4, None)),
            "completed"
        );
        assert!(
            !worth_a_beat(&report(4, None), &report(4, None)),
            "already complete"
        );
        let active = Some(BroadcastState::Active);
        assert!(
            worth_a_beat(&report(4, None), &report(4, active)),
            "published"
        );
        let awaiting = DataReport {
            awaiting_registry: true,
            ..report(1, None)
        };
        assert!(
            worth_a_beat(&report(1, None), &awaiting),
            "waiting for the registry to name an origin"
        );
        assert!(!worth_a_beat(&awaiting, &awaiting), "asked already");
        assert!(
            !worth_a_beat(&report(4, active), &report(4, active)),
            "no news"
        );
        let failed = Some(BroadcastState::Failed);
        assert!(
            worth_a_beat(&report(4, active), &report(4, failed)),
            "failed"
        );
    }
}

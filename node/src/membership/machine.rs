//! Membership core: which seed to register through, when to heartbeat, when to fail over, when
//! to give up, when to warn, and how long a seed's prober waits before it dials again.
//!
//! [`MembershipCore`] is pure, in the manner of quinn-proto: it opens no sockets and reads no
//! clock. The shell (`super`) feeds it inputs with the current time and carries out the
//! [`Action`]s it emits; [`Backoff`] is the prober's half, with its jitter drawn from a seeded
//! RNG. It is generic over the shell's error type `E`, which it only keeps (each seed's latest
//! error, for `node status` and the join timeout's report).
//!
//! # What it decides
//! * **Seed order.** Seeds are kept in the order given, then in the order learnt (from a
//!   registration's answer and from bootstrap entries of the registry), each once, never this
//!   node's own address. A seed is *live* while its prober reports a connection up.
//! * **Registration and failover.** A heartbeat goes through the bootstrap in use. Without one,
//!   the node registers through the first live seed in order; a seed whose registration fails
//!   is closed and the next live one is tried. A heartbeat that fails closes its bootstrap and
//!   fails over the same way at once, at most one more exchange than there are seeds per beat.
//! * **Period and retries.** A beat that succeeds schedules the next one a period later (after a
//!   stall, at once, then on period again). A beat that fails (no live seed, or every one
//!   failed) is retried after [`CoreConfig::retry`] (the period, at most 100 ms): a prober may
//!   connect at any moment.
//! * **Join timeout.** While no bootstrap ever accepted the registration, a failed beat after
//!   [`CoreConfig::join_timeout`] gives up ([`Action::GiveUp`] with each seed's latest error).
//! * **Warnings.** Failing for [`CoreConfig::warn_after`] (2 s) logs that no bootstrap is
//!   reachable ([`Action::WarnUnreachable`]), at most once per [`CoreConfig::warn_every`] (5 s).
//! * **Nudges.** A beat off the period, at least [`CoreConfig::nudge_spacing`] (50 ms) after the
//!   previous beat, when the data plane's report has news for the fleet (a broadcast settled or
//!   was published here, or the data plane started waiting for the registry), and when the
//!   fleet progress of an unsettled broadcast was read (`node send --wait`). A nudged beat
//!   keeps the period's phase; any beat answers every nudge asked before it started.
//! * **Awaiting the registry.** After a successful beat while the report says
//!   `awaiting_registry`, the next beat comes [`CoreConfig::await_registry_spacing`] (100 ms)
//!   later, at most [`CoreConfig::await_registry_beats`] (30) in a row.
//! * **Backoff.** A prober whose dial failed waits [`Backoff::handle_failure`]: doubling from
//!   [`CoreConfig::backoff_min`] (200 ms) to [`CoreConfig::backoff_max`] (5 s), plus a random
//!   jitter of up to as much again; a connection that came up starts over.
//!
//! # Call order
//! 1. Create the core with [`MembershipCore::new`] and drain [`poll_action`] (a
//!    [`Action::Probe`] per seed).
//! 2. Feed every input through the matching `handle_*` method, with `now` read just before:
//!    the probers' reports ([`handle_seed_up`], [`handle_seed_failed`], [`handle_seed_gone`]),
//!    the data plane's report ([`handle_report`]) and the fleet reads ([`handle_fleet_reads`]).
//! 3. After every `handle_*` call, drain [`poll_action`] and carry each action out. A
//!    [`Action::Register`] or [`Action::Beat`] is answered, once done, by its `handle_*`
//!    call (`handle_registered` or `handle_register_failed`; `handle_beat_ok` or
//!    `handle_beat_failed`), or by `handle_seed_gone` when the seed's connection is gone; at
//!    most one of them is outstanding, and no timer runs meanwhile. Then re-arm the timer with
//!    [`poll_timeout`] (`None`: an exchange is outstanding, or the core gave up).
//! 4. When the clock reaches `poll_timeout()`, call [`handle_timeout`] and go to step 3.
//!
//! Answers about a seed the core is not waiting for are ignored.
//!
//! [`poll_action`]: MembershipCore::poll_action
//! [`poll_timeout`]: MembershipCore::poll_timeout
//! [`handle_timeout`]: MembershipCore::handle_timeout
//! [`handle_seed_up`]: MembershipCore::handle_seed_up
//! [`handle_seed_failed`]: MembershipCore::handle_seed_failed
//! [`handle_seed_gone`]: MembershipCore::handle_seed_gone
//! [`handle_report`]: MembershipCore::handle_report
//! [`handle_fleet_reads`]: MembershipCore::handle_fleet_reads

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcast_proto::{BroadcastId, BroadcastState};

use crate::data::broadcast::DataReport;
use crate::inputs::FleetReads;
use crate::status::NodeOutcome;

/// The core's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CoreConfig {
    /// Heartbeat period.
    pub(crate) heartbeat: Duration,
    /// Give up when no seed accepted the registration in this time (`None`: never).
    pub(crate) join_timeout: Option<Duration>,
    /// How soon a failed beat is retried. Default: the period, at most 100 ms.
    pub(crate) retry: Duration,
    /// Shortest time between a beat and a nudged one after it. Default 50 ms.
    pub(crate) nudge_spacing: Duration,
    /// Time between beats while the data plane awaits the registry. Default 100 ms.
    pub(crate) await_registry_spacing: Duration,
    /// Most such beats in a row. Default 30.
    pub(crate) await_registry_beats: u32,
    /// Failing this long is worth a warning. Default 2 s.
    pub(crate) warn_after: Duration,
    /// At most one warning per this. Default 5 s.
    pub(crate) warn_every: Duration,
    /// A prober's first wait after a failed dial. Default 200 ms.
    pub(crate) backoff_min: Duration,
    /// Its longest wait before jitter. Default 5 s.
    pub(crate) backoff_max: Duration,
}

impl CoreConfig {
    /// The defaults for this period and join timeout.
    pub(crate) fn new(heartbeat: Duration, join_timeout: Option<Duration>) -> Self {
        Self {
            heartbeat,
            join_timeout,
            retry: heartbeat.min(Duration::from_millis(100)),
            nudge_spacing: Duration::from_millis(50),
            await_registry_spacing: Duration::from_millis(100),
            await_registry_beats: 30,
            warn_after: Duration::from_secs(2),
            warn_every: Duration::from_secs(5),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// How long a prober's dial may take: two periods, at least 2 s.
    pub(crate) fn dial_timeout(&self) -> Duration {
        self.heartbeat.max(Duration::from_secs(1)) * 2
    }

    /// How long one request to a bootstrap may take: a period, at least 500 ms.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.heartbeat.max(Duration::from_millis(500))
    }
}

/// What the shell does for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action<E> {
    /// Start keeping a connection to this seed (a prober), reporting it with
    /// `handle_seed_up`, `handle_seed_failed` and `handle_seed_gone`.
    Probe(SocketAddr),
    /// Register through this seed's connection.
    Register(SocketAddr),
    /// One heartbeat exchange (announcements, heartbeat, lookup) with this bootstrap.
    Beat(SocketAddr),
    /// Close the connection to this seed (its prober reconnects).
    Close(SocketAddr),
    /// Log that no bootstrap is reachable.
    WarnUnreachable,
    /// Stop: no seed accepted the registration within `after`.
    GiveUp {
        after: Duration,
        /// Each seed's latest error, in seed order.
        last_errors: Vec<(SocketAddr, E)>,
    },
}

/// One seed as the core knows it.
#[derive(Debug, Clone)]
pub(crate) struct Seed<E> {
    pub(crate) addr: SocketAddr,
    /// Its prober reports a connection up, and it has not failed since.
    pub(crate) live: bool,
    /// Failed dials since it last answered.
    pub(crate) failures: u32,
    pub(crate) last_error: Option<E>,
}

/// Where a beat stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the timer.
    Idle,
    /// A registration through this seed is outstanding.
    Registering(SocketAddr),
    /// A heartbeat exchange with this bootstrap is outstanding.
    Beating(SocketAddr),
    /// Gave up on the join timeout.
    GaveUp,
}

/// What the fleet has heard of this node's report: the last report's settled broadcasts,
/// records and `awaiting_registry`.
#[derive(Debug, Default)]
struct Seen {
    settled: HashSet<BroadcastId>,
    records: HashSet<(BroadcastId, BroadcastState)>,
    awaiting: bool,
}

impl Seen {
    fn of(report: &DataReport) -> Self {
        Self {
            settled: (report.progress.iter())
                .filter(|p| NodeOutcome::of(p, p.total).is_settled())
                .map(|p| p.broadcast)
                .collect(),
            records: report.records.iter().map(|r| (r.id, r.state)).collect(),
            awaiting: report.awaiting_registry,
        }
    }

    /// Whether `new` has news the fleet should hear of at once: a broadcast settled here
    /// (what `--wait` is waiting to hear), one was published (or changed state) here, or the
    /// data plane started waiting for the registry. Mere progress is not.
    fn news(&self, new: &Self) -> bool {
        new.settled.iter().any(|b| !self.settled.contains(b))
            || new.records.iter().any(|r| !self.records.contains(r))
            || (new.awaiting && !self.awaiting)
    }
}

/// The membership core. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct MembershipCore<E> {
    config: CoreConfig,
    /// This node's own address, never a seed.
    advertise: SocketAddr,
    started: Instant,
    seeds: Vec<Seed<E>>,
    /// The bootstrap in use.
    current: Option<SocketAddr>,
    /// Some bootstrap accepted the registration once.
    registered: bool,
    phase: Phase,
    /// Whether the beat under way is a nudged one, and its failed exchanges.
    nudged: bool,
    exchanges: usize,
    /// When the next beat on period is due.
    next: Instant,
    /// When the latest beat started.
    last_beat: Instant,
    /// A nudge waits for its beat.
    nudge: bool,
    /// An extra beat while awaiting the registry, and how many were in a row.
    soon: Option<Instant>,
    awaited: u32,
    failing_since: Option<Instant>,
    last_warn: Option<Instant>,
    seen: Seen,
    reads: FleetReads,
    actions: VecDeque<Action<E>>,
}

impl<E: Clone> MembershipCore<E> {
    /// A core for these seeds; the first beat is due at once.
    pub(crate) fn new(
        config: CoreConfig,
        advertise: SocketAddr,
        seeds: &[SocketAddr],
        now: Instant,
    ) -> Self {
        let mut core = Self {
            config,
            advertise,
            started: now,
            seeds: Vec::new(),
            current: None,
            registered: false,
            phase: Phase::Idle,
            nudged: false,
            exchanges: 0,
            next: now,
            last_beat: now,
            nudge: false,
            soon: None,
            awaited: 0,
            failing_since: None,
            last_warn: None,
            seen: Seen::default(),
            reads: FleetReads::default(),
            actions: VecDeque::new(),
        };
        for &s in seeds {
            core.add_seed(s);
        }
        core
    }

    /// The settings.
    pub(crate) fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Every seed, in order.
    pub(crate) fn seeds(&self) -> &[Seed<E>] {
        &self.seeds
    }

    /// The bootstrap in use.
    pub(crate) fn current(&self) -> Option<SocketAddr> {
        self.current
    }

    /// Whether some bootstrap accepted the registration once.
    pub(crate) fn registered(&self) -> bool {
        self.registered
    }

    /// The next action, if any.
    pub(crate) fn poll_action(&mut self) -> Option<Action<E>> {
        self.actions.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): `None` while an exchange is
    /// outstanding or after giving up.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Idle {
            return None;
        }
        let mut at = self.next;
        if let Some(s) = self.soon.filter(|&s| s < self.next) {
            at = s;
        }
        if self.nudge {
            at = at.min(self.last_beat + self.config.nudge_spacing);
        }
        Some(at)
    }

    /// The clock reached [`poll_timeout`](Self::poll_timeout) (early calls do nothing).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Idle {
            return;
        }
        let nudge_due = self.nudge && now >= self.last_beat + self.config.nudge_spacing;
        let soon_due = self.soon.is_some_and(|s| s < self.next && now >= s);
        if now >= self.next {
            self.start(now, false);
        } else if nudge_due || soon_due {
            self.start(now, true);
        }
    }

    /// The data plane's latest report: a beat soon if it has news for the fleet.
    pub(crate) fn handle_report(&mut self, _now: Instant, report: &DataReport) {
        let seen = Seen::of(report);
        if self.seen.news(&seen) {
            self.nudge = true;
        }
        self.seen = seen;
    }

    /// The latest count of fleet reads: a beat soon if an unsettled broadcast was read since
    /// the last count (someone follows it: its last completion should reach them within a few
    /// round trips, not periods).
    pub(crate) fn handle_fleet_reads(&mut self, _now: Instant, reads: FleetReads) {
        if reads.unsettled > self.reads.unsettled {
            self.nudge = true;
        }
        self.reads = reads;
    }

    /// A seed's prober has a connection up.
    pub(crate) fn handle_seed_up(&mut self, _now: Instant, addr: SocketAddr) {
        if let Some(s) = self.seed_mut(addr) {
            s.live = true;
            s.failures = 0;
        }
    }

    /// A seed's prober failed to dial it.
    pub(crate) fn handle_seed_failed(&mut self, _now: Instant, addr: SocketAddr, error: E) {
        if let Some(s) = self.seed_mut(addr) {
            s.live = false;
            s.failures = s.failures.saturating_add(1);
            s.last_error = Some(error);
        }
    }

    /// A seed's connection is gone (its prober saw it close, or the shell found it closed when
    /// about to use it).
    pub(crate) fn handle_seed_gone(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(s) = self.seed_mut(addr) {
            s.live = false;
        }
        if self.current == Some(addr) {
            self.current = None;
        }
        if matches!(self.phase, Phase::Registering(a) | Phase::Beating(a) if a == addr) {
            self.step(now);
        }
    }

    /// The registration through `addr` was accepted; it named these bootstraps.
    pub(crate) fn handle_registered(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        bootstraps: impl IntoIterator<Item = SocketAddr>,
    ) {
        if self.phase != Phase::Registering(addr) {
            return;
        }
        self.current = Some(addr);
        self.registered = true;
        for b in bootstraps {
            self.add_seed(b);
        }
        self.step(now);
    }

    /// The registration through `addr` failed.
    pub(crate) fn handle_register_failed(&mut self, now: Instant, addr: SocketAddr, error: E) {
        if self.phase != Phase::Registering(addr) {
            return;
        }
        self.lose(addr, error);
        self.step(now);
    }

    /// The heartbeat exchange with `addr` succeeded; its registry view named these
    /// bootstraps (not dead). `awaiting_registry`: the data plane's latest report says so.
    pub(crate) fn handle_beat_ok(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        bootstraps: impl IntoIterator<Item = SocketAddr>,
        awaiting_registry: bool,
    ) {
        if self.phase != Phase::Beating(addr) {
            return;
        }
        for b in bootstraps {
            self.add_seed(b);
        }
        self.phase = Phase::Idle;
        self.failing_since = None;
        self.awaited = if awaiting_registry {
            self.awaited + 1
        } else {
            0
        };
        self.soon = (awaiting_registry && self.awaited <= self.config.await_registry_beats)
            .then(|| now + self.config.await_registry_spacing);
        if !self.nudged {
            // After a stall (slow bootstrap, suspended process) beat at once, then on period.
            self.next = (self.next + self.config.heartbeat).max(now);
        }
    }

    /// The heartbeat exchange with `addr` failed: fail over.
    pub(crate) fn handle_beat_failed(&mut self, now: Instant, addr: SocketAddr, error: E) {
        if self.phase != Phase::Beating(addr) {
            return;
        }
        self.lose(addr, error);
        self.exchanges += 1;
        if self.exchanges > self.seeds.len() {
            self.fail(now);
        } else {
            self.step(now);
        }
    }

    fn seed_mut(&mut self, addr: SocketAddr) -> Option<&mut Seed<E>> {
        self.seeds.iter_mut().find(|s| s.addr == addr)
    }

    fn add_seed(&mut self, addr: SocketAddr) {
        if addr == self.advertise || self.seeds.iter().any(|s| s.addr == addr) {
            return;
        }
        self.seeds.push(Seed {
            addr,
            live: false,
            failures: 0,
            last_error: None,
        });
        self.actions.push_back(Action::Probe(addr));
    }

    /// A seed failed a request: close it, and stop using it.
    fn lose(&mut self, addr: SocketAddr, error: E) {
        if let Some(s) = self.seed_mut(addr) {
            s.live = false;
            s.last_error = Some(error);
        }
        if self.current == Some(addr) {
            self.current = None;
        }
        self.actions.push_back(Action::Close(addr));
    }

    fn start(&mut self, now: Instant, nudged: bool) {
        self.nudge = false;
        self.soon = None;
        self.last_beat = now;
        self.nudged = nudged;
        self.exchanges = 0;
        self.step(now);
    }

    /// The beat's next exchange: through the bootstrap in use, else register through the first
    /// live seed, else the beat failed.
    fn step(&mut self, now: Instant) {
        if let Some(cur) = self.current {
            self.phase = Phase::Beating(cur);
            self.actions.push_back(Action::Beat(cur));
        } else if let Some(s) = self.seeds.iter().find(|s| s.live) {
            self.phase = Phase::Registering(s.addr);
            self.actions.push_back(Action::Register(s.addr));
        } else {
            self.fail(now);
        }
    }

    fn fail(&mut self, now: Instant) {
        self.phase = Phase::Idle;
        self.next = now + self.config.retry;
        let since = *self.failing_since.get_or_insert(now);
        if let Some(limit) = self.config.join_timeout {
            if !self.registered && now.duration_since(self.started) >= limit {
                self.phase = Phase::GaveUp;
                let last_errors = (self.seeds.iter())
                    .filter_map(|s| Some((s.addr, s.last_error.clone()?)))
                    .collect();
                self.actions.push_back(Action::GiveUp {
                    after: limit,
                    last_errors,
                });
                return;
            }
        }
        if now.duration_since(since) >= self.config.warn_after
            && (self.last_warn).is_none_or(|t| now.duration_since(t) >= self.config.warn_every)
        {
            self.last_warn = Some(now);
            self.actions.push_back(Action::WarnUnreachable);
        }
    }
}

/// How long a seed's prober waits after each failed dial. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff with its jitter drawn from an RNG seeded with `seed`.
    pub(crate) fn new(config: &CoreConfig, seed: u64) -> Self {
        Self {
            min: config.backoff_min,
            max: config.backoff_max,
            failures: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A dial failed: the wait before the next one.
    pub(crate) fn handle_failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(31);
        let base = self.min.saturating_mul(1 << doublings).min(self.max);
        base + base.mul_f64(self.rng.random::<f64>())
    }

    /// A connection came up: the next failure starts over.
    pub(crate) fn handle_success(&mut self) {
        self.failures = 0;
    }

    /// Failed dials in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

//! The simulation: every node's [`Broadcasts`] core, the connections between them, and the
//! event queue of a virtual clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcast_proto::{BroadcastId, BroadcastRecord, BroadcastState, ErrorCode, Message, NodeId};

use super::net::{MB, Net, Rates, manifest, node_id, random_graph};
use crate::bitfield::Bitfield;
use crate::data::{
    BroadcastAction, BroadcastConfig, Broadcasts, ManifestFetchError, ManifestSource, PieceError,
    Strategy,
};
use crate::store::StoreError;

/// Give up after this much virtual time.
pub const HORIZON: u64 = 600_000_000_000;

/// The one faulty receiver of a run, drawn per seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No faulty receiver.
    None,
    /// It accepts requests and never answers them (it downloads and announces normally).
    Stalled,
    /// It serves only pieces that fail verification.
    Corrupt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Ev {
    /// A message on the control stream (`Have`, `HaveUpdate`).
    Msg {
        to: usize,
        from: usize,
        msg: Message,
    },
    ManifestRequest {
        up: usize,
        down: usize,
    },
    Manifest {
        up: usize,
        down: usize,
        found: bool,
    },
    Request {
        up: usize,
        down: usize,
        piece: u32,
    },
    Cancel {
        up: usize,
        down: usize,
        piece: u32,
    },
    Data {
        up: usize,
        down: usize,
        piece: u32,
    },
    Failed {
        up: usize,
        down: usize,
        piece: u32,
    },
    Declined {
        up: usize,
        down: usize,
        piece: u32,
    },
    Timer {
        node: usize,
    },
    /// The late joiner's connections come up.
    Join {
        node: usize,
    },
    /// A scheduled fault's time has come (an index into `Sim::faults`).
    Fault {
        index: usize,
    },
}

impl Ev {
    /// The node whose process handles the event (`None`: the simulation itself).
    fn target(&self) -> Option<usize> {
        match *self {
            Ev::Msg { to, .. } => Some(to),
            Ev::ManifestRequest { up, .. } | Ev::Request { up, .. } | Ev::Cancel { up, .. } => {
                Some(up)
            }
            Ev::Manifest { down, .. }
            | Ev::Data { down, .. }
            | Ev::Failed { down, .. }
            | Ev::Declined { down, .. } => Some(down),
            Ev::Timer { node } => Some(node),
            Ev::Join { .. } | Ev::Fault { .. } => None,
        }
    }
}

/// Whether a node's process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Life {
    Up,
    /// Stopped (SIGSTOP): it handles nothing, sends and reads nothing; its links stay up.
    Paused,
    /// Killed: its links are down; what it held durably stays on its disk.
    Down,
}

pub(super) struct Node {
    pub(super) id: NodeId,
    pub(super) core: Broadcasts,
    /// Pieces durably held.
    pub(super) has: Bitfield,
    /// Pieces received, waiting for a commit.
    pub(super) pending: Vec<u32>,
    /// Whether it serves the broadcast (its manifest too).
    pub(super) serving: bool,
    pub(super) up: f64,
    pub(super) down: f64,
    pub(super) neighbours: BTreeSet<usize>,
    pub(super) timer: Option<u64>,
    pub(super) done_at: Option<u64>,
    pub(super) uploaded: f64,
    pub(super) life: Life,
    /// The neighbours it had at the start (or gets when it joins late): a restarted or
    /// resumed node connects again to those that are up.
    pub(super) links: BTreeSet<usize>,
    /// Restarts scheduled and not yet carried out: a killed node with none will not complete.
    pub(super) restarts_due: u32,
    /// Times restarted (each restart seeds its new core afresh from the run's seed and this).
    pub(super) restarts: u32,
    /// Events that reached it while it was paused, handled when it resumes.
    pub(super) stash: Vec<Ev>,
}

/// One connection's sending side: `up` serves `down`.
#[derive(Default)]
pub(super) struct Conn {
    pub(super) open: bool,
    pub(super) queue: VecDeque<u32>,
    /// Bytes left of the head of the queue.
    pub(super) remaining: f64,
    pub(super) rate: f64,
    /// Payload bytes sent over the run.
    pub(super) sent: f64,
    /// When `remaining` and `sent` were last brought up to date (nanoseconds): between rate
    /// changes a connection's bytes are counted when its piece ends, not at every event.
    pub(super) since: u64,
    /// When the head of the queue ends at the current rate (`u64::MAX`: not sending); the
    /// `finishing` heap's entry for it is current iff it says the same.
    pub(super) finish: u64,
}

/// A run: every node's core, the connections and the event queue. Call [`Sim::new`], then
/// [`Sim::run`], then read [`Sim::outcome`].
#[allow(missing_debug_implementations)]
pub struct Sim {
    pub(super) net: Net,
    /// When the origin last sent a byte, nanoseconds.
    pub(super) origin_last: u64,
    /// Per resource (uploads `0..n`, downloads `n..2n`): whether it is saturated, as of the
    /// last rate computation (its shaped queue is then full).
    pub(super) saturated: Vec<bool>,
    pub(super) base: Instant,
    pub(super) id: BroadcastId,
    pub(super) manifest_bytes: Vec<u8>,
    pub(super) now: u64,
    pub(super) seq: u64,
    pub(super) nodes: Vec<Node>,
    pub(super) ids: BTreeMap<NodeId, usize>,
    /// Indexed `up * nodes + down`.
    pub(super) conns: Vec<Conn>,
    /// Every connection ever open, as (up, down).
    pub(super) links: Vec<(usize, usize)>,
    /// Connections sending, as of the last rate computation.
    pub(super) active: Vec<(usize, usize)>,
    /// When each sending connection's current piece ends, as (time, up, down); entries whose
    /// time is no longer the connection's `finish` are stale and skipped.
    pub(super) finishing: BinaryHeap<Reverse<(u64, usize, usize)>>,
    pub(super) events: BTreeMap<(u64, u64), Ev>,
    pub(super) fault: Fault,
    pub(super) faulty: usize,
    pub(super) declines: u32,
    pub(super) rates_dirty: bool,
    /// The earliest time of the next rate computation ([`Net::rate_quantum`]).
    pub(super) next_rates: u64,
    /// (banning node, banned node).
    pub(super) bans: BTreeSet<(usize, usize)>,
    /// Bad pieces delivered, per (downloader, uploader).
    pub(super) bad_delivered: BTreeMap<(usize, usize), u32>,
    pub(super) requests_after_ban: u32,
    pub(super) stalls: u32,
    pub(super) duplicates: u32,
    /// Bytes the origin sent to each node.
    pub(super) origin_to: Vec<f64>,
    /// The late joiner and the neighbours it gets when it joins.
    pub(super) late: Option<(usize, BTreeSet<usize>)>,
    /// Every action every core emitted, in order, with its time and node (when asked for).
    pub(super) trace: Option<Vec<String>>,
    pub(super) seed: u64,
    pub(super) record: BroadcastRecord,
    /// Scheduled faults, and when each was carried out (nanoseconds).
    pub(super) faults: Vec<super::schedule::ScheduledFault>,
    pub(super) fired: Vec<Option<u64>>,
    /// The faults triggered by the fleet's progress and not yet carried out, by descending
    /// fraction (the next one last).
    pub(super) by_progress: Vec<usize>,
    /// Pieces durably held, summed over the receivers.
    pub(super) held_total: u64,
    /// Whether the set of nodes that must complete, or their completions, changed since the
    /// last check.
    pub(super) check_done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// At the time asked for: more is to happen.
    Running,
    /// The run is over.
    Done,
}

/// What a run varies.
#[derive(Clone, Debug)]
pub struct Setup {
    pub fault: Fault,
    /// The network.
    pub net: Net,
    /// Whether the origin sends each piece only once until it has sent them all, declining
    /// the other requests (as `node/src/data/serve.rs` does).
    pub superseed: bool,
    /// Whether the last receiver joins late ([`LATE_JOIN`]), when its neighbours already hold
    /// pieces: its first transfer then starts from many full `Have`s at once.
    pub late: bool,
    /// Whether to record every action ([`Sim::trace`]).
    pub trace: bool,
}

/// When the late joiner's connections come up: its neighbours hold pieces by then.
pub const LATE_JOIN: u64 = 300_000_000;

impl Sim {
    /// A run of `setup` seeded with `seed`: the graph, the capacities and every core's RNG
    /// come from it.
    pub fn new(seed: u64, setup: &Setup) -> Self {
        let Setup {
            fault,
            ref net,
            superseed,
            late,
            trace,
        } = *setup;
        let mut rng = StdRng::seed_from_u64(seed);
        let n = net.receivers + 1;
        let adj = random_graph(&mut rng, n, net.degree);
        let faulty = rng.random_range(1..n);
        let base = Instant::now();
        let (m, layout, manifest_bytes, id) = manifest(net);
        let pieces = net.pieces;
        let record = BroadcastRecord {
            id,
            name: m.name.clone(),
            origin: node_id(0),
            size: layout.total_bytes,
            chunks: u64::from(layout.chunk_count()),
            state: BroadcastState::Active,
            version: 1,
            seq: 0,
            published_ms: 0,
            audience: None,
        };
        let mut adj = adj;
        // The late joiner is the last node: it and its neighbours see nothing of each other
        // until `Ev::Join`.
        let late = late.then(|| {
            let l = n - 1;
            let links = std::mem::take(&mut adj[l]);
            for &b in &links {
                adj[b].remove(&l);
            }
            (l, links)
        });
        let mut nodes = Vec::new();
        for (i, neighbours) in adj.into_iter().enumerate() {
            let (up, down, has, mut core) = if i == 0 {
                // Super-seeding is the origin's in swarm mode; without it the origin serves
                // every request (as in client-server mode, whose only other difference is
                // whom receivers fetch from).
                let strategy = if superseed {
                    Strategy::Swarm
                } else {
                    Strategy::OriginOnly
                };
                let config = BroadcastConfig {
                    strategy,
                    ..BroadcastConfig::default()
                };
                let mut core = Broadcasts::new(config, node_id(i), 0);
                core.add_origin(
                    base,
                    id,
                    m.clone(),
                    layout.clone(),
                    "/origin".into(),
                    None,
                    0,
                );
                (
                    net.origin_up,
                    2.0 * net.origin_up,
                    Bitfield::full(pieces),
                    core,
                )
            } else {
                let (up, down) = match &net.rates {
                    Rates::Drawn(uploads) => {
                        let up = rng.random_range(uploads.clone()) * MB;
                        (up, 2.0 * up)
                    }
                    Rates::Fixed(rates) => rates[i - 1],
                };
                let config = BroadcastConfig {
                    swarm: net.swarm.clone(),
                    ..BroadcastConfig::default()
                };
                let core = Broadcasts::new(config, node_id(i), rng.random());
                (up, down, Bitfield::new(pieces), core)
            };
            // The registry names the origin; no addresses, so manifests come from neighbours.
            core.handle_registry(base, Vec::new(), vec![record.clone()]);
            for &b in &neighbours {
                core.handle_peer_up(base, node_id(b));
            }
            nodes.push(Node {
                id: node_id(i),
                core,
                has,
                pending: Vec::new(),
                serving: false,
                up,
                down,
                links: neighbours.clone(),
                neighbours,
                timer: None,
                done_at: None,
                uploaded: 0.0,
                life: Life::Up,
                restarts_due: 0,
                restarts: 0,
                stash: Vec::new(),
            });
        }
        let ids = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let mut sim = Self {
            net: net.clone(),
            origin_last: 0,
            saturated: vec![false; 2 * n],
            base,
            id,
            manifest_bytes,
            now: 0,
            seq: 0,
            nodes,
            ids,
            conns: (0..n * n).map(|_| Conn::default()).collect(),
            links: Vec::new(),
            active: Vec::new(),
            finishing: BinaryHeap::new(),
            events: BTreeMap::new(),
            fault,
            faulty,
            declines: 0,
            rates_dirty: false,
            next_rates: 0,
            bans: BTreeSet::new(),
            bad_delivered: BTreeMap::new(),
            requests_after_ban: 0,
            stalls: 0,
            duplicates: 0,
            origin_to: vec![0.0; n],
            late,
            trace: trace.then(Vec::new),
            seed,
            record,
            faults: Vec::new(),
            fired: Vec::new(),
            by_progress: Vec::new(),
            held_total: 0,
            check_done: true,
        };
        for a in 0..n {
            for b in sim.nodes[a].neighbours.clone() {
                sim.conns[a * n + b].open = true;
                sim.links.push((a, b));
            }
        }
        for a in 0..n {
            sim.drain(a);
        }
        if let Some((node, _)) = sim.late {
            sim.push(LATE_JOIN, Ev::Join { node });
        }
        sim
    }

    /// The late joiner ([`Setup::late`]) and whether it completed.
    pub fn late_joiner(&self) -> Option<(usize, bool)> {
        self.late
            .as_ref()
            .map(|&(l, _)| (l, self.nodes[l].done_at.is_some()))
    }

    /// Every action every core emitted, in order, with its time and node (with
    /// [`Setup::trace`]; taken once).
    pub fn take_trace(&mut self) -> Option<Vec<String>> {
        self.trace.take()
    }

    /// The network this run models.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Seconds the origin's uplink was busy (what it uploaded over its capacity), and the
    /// virtual time of its last byte sent.
    pub fn origin_busy(&self) -> (f64, f64) {
        (
            self.nodes[0].uploaded / self.net.origin_up,
            self.origin_last as f64 / 1e9,
        )
    }

    pub(super) fn index(&self, id: NodeId) -> usize {
        self.ids[&id]
    }

    pub(super) fn conn(&mut self, up: usize, down: usize) -> &mut Conn {
        let n = self.nodes.len();
        &mut self.conns[up * n + down]
    }

    pub(super) fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    pub(super) fn push(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    /// How long a message (or a piece's last byte) from `from` takes to reach `to`: the wire,
    /// plus a full FIFO on each saturated shaped link it crosses.
    pub(super) fn delay(&self, from: usize, to: usize) -> u64 {
        let n = self.nodes.len();
        let mut d = self.net.half_rtt;
        if self.saturated[from] {
            d += self.net.queue;
        }
        if self.net.queue_down && self.saturated[n + to] {
            d += self.net.queue;
        }
        d
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].neighbours.contains(&b)
    }

    /// Whether an answer of `up` to `down` reaches `down`'s core: not once `down` banned `up`
    /// (the shell aborted those requests).
    fn answered(&self, up: usize, down: usize) -> bool {
        self.linked(up, down) && !self.bans.contains(&(down, up))
    }

    /// Run until every receiver that must complete has, nothing is left to happen, or the
    /// virtual clock passes [`HORIZON`].
    pub fn run(&mut self) {
        while self.run_until(HORIZON) == Progress::Running {}
    }

    /// Run until the virtual clock reaches `until` (nanoseconds from the start), or the run
    /// ends first ([`Sim::run`]); say which.
    pub fn run_until(&mut self, until: u64) -> Progress {
        loop {
            if self.check_done {
                self.check_done = false;
                if (1..self.nodes.len())
                    .all(|i| !self.must_complete(i) || self.nodes[i].done_at.is_some())
                {
                    return Progress::Done;
                }
            }
            if self.rates_dirty && self.now >= self.next_rates {
                self.recompute_rates();
                self.next_rates = self.now + self.net.rate_quantum;
            }
            let next_ev = self.events.keys().next().map(|k| k.0);
            let next_ev = match (next_ev, self.rates_dirty) {
                (Some(t), true) => Some(t.min(self.next_rates)),
                (None, true) => Some(self.next_rates),
                (t, false) => t,
            };
            let t = match (next_ev, self.next_completion()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return Progress::Done,
                },
            };
            if t > HORIZON {
                return Progress::Done;
            }
            if t > until {
                return Progress::Running;
            }
            self.advance(t.max(self.now));
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let ev = entry.remove();
                self.handle(ev);
            }
            self.progress_faults();
        }
    }

    /// Whether receiver `i` must complete for the run to end: not the faulty receiver of a
    /// stalled or corrupt run, nor a node killed for good.
    pub(super) fn must_complete(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        (self.fault == Fault::None || i != self.faulty)
            && !(n.life == Life::Down && n.restarts_due == 0)
    }

    /// The virtual time, nanoseconds from the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The fleet's progress: pieces durably held over all receivers, as a fraction of what
    /// they would hold complete.
    pub fn fleet_progress(&self) -> f64 {
        let whole = (self.nodes.len() as u64 - 1) * u64::from(self.net.pieces);
        self.held_total as f64 / whole.max(1) as f64
    }

    fn handle(&mut self, ev: Ev) {
        if let Some(node) = ev.target() {
            match self.nodes[node].life {
                Life::Up => {}
                // Its timer is re-armed when it resumes.
                Life::Paused if matches!(ev, Ev::Timer { .. }) => return,
                Life::Paused => {
                    self.nodes[node].stash.push(ev);
                    return;
                }
                Life::Down if matches!(ev, Ev::Timer { .. }) => return,
                // Messages to a killed node: every handler below checks the link first.
                Life::Down => {}
            }
        }
        let now = self.instant();
        let id = self.id;
        match ev {
            Ev::Msg { to, from, msg } => {
                if self.linked(to, from) {
                    let from_id = self.nodes[from].id;
                    self.nodes[to].core.handle_peer_message(now, from_id, msg);
                    self.drain(to);
                }
            }
            Ev::ManifestRequest { up, down } => {
                if self.linked(up, down) {
                    let found = self.nodes[up].serving;
                    let delay = self.delay(up, down);
                    self.push(delay, Ev::Manifest { up, down, found });
                }
            }
            Ev::Manifest { up, down, found } => {
                if self.linked(up, down) {
                    let result = if found {
                        Ok(self.manifest_bytes.clone())
                    } else {
                        Err(ManifestFetchError::Refused {
                            code: ErrorCode::NotFound,
                            message: "unknown broadcast".into(),
                        })
                    };
                    self.nodes[down]
                        .core
                        .handle_manifest_fetched(now, id, result);
                    self.drain(down);
                }
            }
            Ev::Request { up, down, piece } => self.on_request(up, down, piece),
            Ev::Cancel { up, down, piece } => {
                let c = self.conn(up, down);
                if let Some(i) = c.queue.iter().position(|&p| p == piece) {
                    if i == 0 {
                        self.settle(up, down);
                    }
                    let c = self.conn(up, down);
                    c.queue.remove(i);
                    if up == 0 {
                        self.nodes[0]
                            .core
                            .handle_served(now, id, piece, piece + 1, false);
                    }
                    let piece_bytes = self.net.piece_bytes as f64;
                    let c = self.conn(up, down);
                    if i == 0 {
                        c.remaining = piece_bytes;
                    }
                    if c.queue.is_empty() {
                        self.rates_dirty = true;
                    }
                    if i == 0 {
                        self.schedule_finish(up, down);
                    }
                }
            }
            Ev::Data { up, down, piece } => self.on_data(up, down, piece),
            Ev::Failed { up, down, piece } => {
                if self.answered(up, down) {
                    let from = self.nodes[up].id;
                    let refused = PieceError::Refused {
                        code: ErrorCode::NotFound,
                        message: "not held".into(),
                    };
                    self.nodes[down]
                        .core
                        .handle_piece_failed(now, id, from, piece, &refused, 0);
                    self.drain(down);
                }
            }
            Ev::Declined { up, down, piece } => {
                if self.answered(up, down) {
                    let from = self.nodes[up].id;
                    self.nodes[down].core.handle_piece_failed(
                        now,
                        id,
                        from,
                        piece,
                        &PieceError::Declined,
                        0,
                    );
                    self.drain(down);
                }
            }
            Ev::Timer { node } => {
                if self.nodes[node].timer == Some(self.now) {
                    self.nodes[node].timer = None;
                    self.nodes[node].core.handle_timeout(now);
                    self.drain(node);
                }
            }
            Ev::Fault { index } => self.apply_fault(index),
            Ev::Join { node } => {
                let links = self
                    .late
                    .as_ref()
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                let n = self.nodes.len();
                for b in links {
                    self.nodes[node].links.insert(b);
                    self.nodes[b].links.insert(node);
                    self.nodes[node].neighbours.insert(b);
                    self.nodes[b].neighbours.insert(node);
                    for (u, d) in [(node, b), (b, node)] {
                        self.conns[u * n + d].open = true;
                        if !self.links.contains(&(u, d)) {
                            self.links.push((u, d));
                        }
                    }
                    let (a_id, b_id) = (self.nodes[node].id, self.nodes[b].id);
                    self.nodes[node].core.handle_peer_up(now, b_id);
                    self.nodes[b].core.handle_peer_up(now, a_id);
                    self.drain(b);
                }
                self.drain(node);
            }
        }
    }

    /// A request reaches the uploader: queue it, or refuse it.
    fn on_request(&mut self, up: usize, down: usize, piece: u32) {
        if !self.linked(up, down) {
            return;
        }
        // As the node's shell does, a piece written but not yet durable is served: the core
        // advertised it on arrival (`handle_piece_received`), commits follow at their pace.
        let n = &self.nodes[up];
        if !n.has.get(piece) && !n.pending.contains(&piece) {
            let delay = self.delay(up, down);
            self.push(delay, Ev::Failed { up, down, piece });
            return;
        }
        let now = self.instant();
        // The origin's core admits or declines each request (super-seeding), as the node's
        // serving shell asks it to.
        let id = self.id;
        if up == 0
            && !self.nodes[0]
                .core
                .handle_serve_request(now, id, piece, piece + 1)
        {
            self.declines += 1;
            let delay = self.delay(up, down);
            self.push(delay, Ev::Declined { up, down, piece });
            return;
        }
        let piece_bytes = self.net.piece_bytes as f64;
        let c = self.conn(up, down);
        c.queue.push_back(piece);
        if c.queue.len() == 1 {
            c.remaining = piece_bytes;
            self.rates_dirty = true;
        }
    }

    /// A piece reaches the downloader: verify (bad if from the corrupt node), write; the core
    /// then asks for the commit that makes it held and announced.
    fn on_data(&mut self, up: usize, down: usize, piece: u32) {
        if !self.answered(up, down) {
            return;
        }
        let now = self.instant();
        let id = self.id;
        let from = self.nodes[up].id;
        if self.fault == Fault::Corrupt && up == self.faulty {
            *self.bad_delivered.entry((down, up)).or_default() += 1;
            let bad = PieceError::BadChunk {
                index: piece,
                source: StoreError::HashMismatch { index: piece },
            };
            self.nodes[down].core.handle_piece_failed(
                now,
                id,
                from,
                piece,
                &bad,
                self.net.piece_bytes,
            );
        } else {
            let bytes = self.net.piece_bytes;
            let n = &mut self.nodes[down];
            if n.has.get(piece) || n.pending.contains(&piece) {
                self.duplicates += 1;
            } else {
                n.pending.push(piece);
            }
            n.core.handle_piece_received(now, id, from, piece, bytes);
        }
        self.drain(down);
    }

    /// Carry out `node`'s actions as the data-plane shell does, then re-arm its timer.
    pub(super) fn drain(&mut self, node: usize) {
        let id = self.id;
        while let Some(action) = self.nodes[node].core.poll_action() {
            let now = self.instant();
            if let Some(trace) = self.trace.as_mut() {
                trace.push(format!("{} #{node} {action:?}", self.now));
            }
            match action {
                BroadcastAction::Send { peer, msg } => {
                    let to = self.index(peer);
                    self.push(
                        self.delay(node, to),
                        Ev::Msg {
                            to,
                            from: node,
                            msg,
                        },
                    );
                }
                BroadcastAction::Flood { msg } => {
                    for to in self.nodes[node].neighbours.clone() {
                        let msg = msg.clone();
                        self.push(
                            self.delay(node, to),
                            Ev::Msg {
                                to,
                                from: node,
                                msg,
                            },
                        );
                    }
                }
                BroadcastAction::Serve { .. } => self.nodes[node].serving = true,
                BroadcastAction::Unserve { .. } => self.nodes[node].serving = false,
                BroadcastAction::FetchManifest { from, .. } => match from {
                    ManifestSource::Peer(peer) => {
                        let up = self.index(peer);
                        self.push(self.delay(node, up), Ev::ManifestRequest { up, down: node });
                    }
                    ManifestSource::Origin { .. } => panic!("the registry has no addresses"),
                },
                BroadcastAction::CreateWorkspace {
                    manifest, layout, ..
                } => {
                    // What it made durable before a restart is still on its disk.
                    let held = self.nodes[node].has.clone();
                    self.nodes[node]
                        .core
                        .add_receiver(now, id, manifest, layout, held, false, None);
                }
                BroadcastAction::Request { peer, piece, .. } => {
                    let up = self.index(peer);
                    if self.bans.contains(&(node, up)) {
                        self.requests_after_ban += 1;
                    }
                    self.push(
                        self.delay(node, up),
                        Ev::Request {
                            up,
                            down: node,
                            piece,
                        },
                    );
                }
                BroadcastAction::Cancel { peer, piece, .. } => {
                    let up = self.index(peer);
                    self.push(
                        self.delay(node, up),
                        Ev::Cancel {
                            up,
                            down: node,
                            piece,
                        },
                    );
                }
                BroadcastAction::AbortRequests { .. } => panic!("nobody fails the broadcast"),
                BroadcastAction::Ban { peer } => {
                    // As the node does: the connection stays up as a serve-only link, so the
                    // banned peer is still served; the requests to it end here, and its core is
                    // told nothing.
                    let other = self.index(peer);
                    assert!(self.bans.insert((node, other)), "banned twice");
                    self.settle(other, node);
                    let c = self.conn(other, node);
                    if !c.queue.is_empty() {
                        c.queue.clear();
                        c.remaining = 0.0;
                        self.rates_dirty = true;
                    }
                }
                BroadcastAction::Commit { .. } => {
                    let n = &mut self.nodes[node];
                    let chunks = std::mem::take(&mut n.pending);
                    for &c in &chunks {
                        if !n.has.get(c) {
                            n.has.set(c);
                            self.held_total += 1;
                        }
                    }
                    n.core.handle_durable(now, id, Ok(chunks));
                }
                BroadcastAction::Finalize { .. } => {
                    let n = &mut self.nodes[node];
                    assert!(n.done_at.is_none() || n.restarts > 0, "Finalize twice");
                    assert!(n.has.is_complete());
                    // A node restarted complete publishes again; it completed the first time.
                    n.done_at.get_or_insert(self.now);
                    self.check_done = true;
                    n.core.handle_finalized(now, id, Ok("/received/sim".into()));
                }
                BroadcastAction::Stalled { .. } => self.stalls += 1,
                // Only what names and persists versions: no transfer is at stake.
                BroadcastAction::SaveVersion { .. }
                | BroadcastAction::Link { .. }
                | BroadcastAction::Unlink { .. } => {}
                other => panic!("unexpected action {other:?}"),
            }
        }
        let timeout = self.nodes[node].core.poll_timeout();
        let at = timeout
            .map(|t| (t.saturating_duration_since(self.base).as_nanos() as u64).max(self.now));
        if at != self.nodes[node].timer {
            self.nodes[node].timer = at;
            if let Some(at) = at {
                self.push(at - self.now, Ev::Timer { node });
            }
        }
    }
}

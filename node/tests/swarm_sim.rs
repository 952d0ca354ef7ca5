//! Broadcast cores wired together on a virtual clock: one origin, 30 receivers, a file of 256
//! pieces of 1 MiB. Every node runs the node's own broadcast core, [`Broadcasts`], with the
//! default [`BroadcastConfig`]: it floods the announcement, fetches the manifest from a
//! neighbour that announced it, and runs a [`Transfer`](swarmcast_node::swarm::Transfer) with the
//! default `SwarmConfig` per receiver, asks for group commits and advertises what they made
//! durable. The simulation carries out the core's actions as the data-plane shell does.
//!
//! # The model
//! * **Graph.** A random graph in which every node has at least 8 neighbours (and at most 12,
//!   bar a few forced over), as the neighbour core's default target of 8 builds; every link
//!   is one connection. The graph is redrawn until it is connected. (Not a full mesh: receivers
//!   see only their neighbours, which is what makes sparing the origin hard.)
//! * **Capacities.** The origin uploads at 50 MB/s; each receiver uploads at a rate drawn
//!   uniformly from 5–50 MB/s and downloads at twice that.
//! * **Transfers.** A connection serves its requests first come, first served, one piece at a
//!   time. Connections that are sending share the capacities max-min fairly (progressive
//!   filling over every uploader's upload and every downloader's download), as congestion
//!   control between flows roughly does. RTT is 1 ms: every message takes 0.5 ms.
//! * **Manifest.** The registry names the origin from the start (without addresses); a receiver
//!   learns of the broadcast from a neighbour's `Have` and fetches the manifest from it (one
//!   RTT), which the core checks against the id before the workspace is made.
//! * **Durability.** A commit is durable at once: a piece received is held when the core's
//!   commit ends, in the same instant; its holder announces it to every neighbour (0.5 ms
//!   later) and serves it from then on.
//! * **Faults.** A *stalled* receiver accepts requests and never answers them (it downloads and
//!   announces normally, the worst case: its pieces look available). A *corrupt* receiver
//!   serves only pieces that fail verification. A `Ban` works as in the node: the banning
//!   node's requests to the banned peer end (their answers never reach its core), it never
//!   asks the peer again, and the connection stays up as a serve-only link, so the banned peer
//!   is still served and its core is told nothing. The faulty receiver is drawn at random per
//!   seed.
//! * **A late joiner** (the trace test): the last receiver's connections come up only after
//!   300 ms, when its neighbours already hold pieces, so its transfer starts from many full
//!   `Have`s at once.
//! * **Super-seeding** (the fault-free baseline and the super-seeding tests, as in swarm mode;
//!   off in the stalled and corrupt runs): the origin's core admits or declines each request
//!   (`Broadcasts::handle_serve_request`, and `handle_served` at its end, as the node's serving
//!   shell does; one chunk per piece here): it sends each piece once, declines other requests for it while that copy is
//!   on its way and for `RESEND_AFTER` after its last byte left, and sends it again after that.
//!
//! # What is checked, per seed (tests `seed_N::*`)
//! * every receiver completes (but for the faulty one);
//! * the origin uploads less than 1.5 copies of the file (fault-free runs);
//! * the time to the last completion `T` is within 1.5× of the lower bound
//!   `T* = max(F/u_origin, F/d_min, N·F/(u_origin + Σ u_i))`;
//! * with a stalled receiver, the others complete within 1.5× the fault-free time;
//! * with a corrupt receiver, exactly the neighbours that got 3 bad pieces from it banned it,
//!   and none asked it for anything afterwards;
//! * with a super-seeding origin and a stalled receiver, the same bounds hold;
//! * two runs of one seed emit the same actions at the same times (`one_seed_gives_one_trace`).
//!
//! # Against the lab (`lab_agreement`)
//! [`Net::lab`] describes a `bench swarm` configuration instead: fixed link rates, the
//! product's 256 KiB pieces, full meshes up to 8 neighbours, the wire's measured overhead, and
//! shaped FIFOs that delay what crosses a saturated link (its doc says what is modelled and
//! what is taken from the lab). For each configuration whose median BENCHMARKS.md records, the
//! simulated user's T must fall within 15% of the lab's; the figures and the commands that
//! measured them are written beside them in `lab_figures`.
//!
//! The figures are printed with `eprintln!` (`--nocapture`). `many_seeds` (20 seeds) and
//! `capacity_bound` (fast receivers, so that the swarm's total upload bounds T*) are ignored by
//! default: run them with `cargo test --release -p swarmcast-node --test swarm_sim -- --ignored
//! --nocapture`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcast_node::bitfield::Bitfield;
use swarmcast_node::data::{
    BroadcastAction, BroadcastConfig, Broadcasts, ManifestFetchError, ManifestSource, PieceError,
    Strategy,
};
use swarmcast_node::manifest::{ChunkHash, Entry, EntryKind, Layout, Manifest, manifest_id};
use swarmcast_node::store::StoreError;
use swarmcast_node::swarm::SwarmConfig;
use swarmcast_proto::{BroadcastId, BroadcastRecord, BroadcastState, ErrorCode, Message, NodeId};

const MIB: u64 = 1 << 20;
const MB: f64 = 1e6;
const RECEIVERS: usize = 30;
const PIECES: u32 = 256;
const DEGREE: usize = 8;
const MAX_DEGREE: usize = 12;
const ORIGIN_UP: f64 = 50.0 * MB;
/// Half the RTT, in nanoseconds.
const HALF_RTT: u64 = 500_000;

/// The network a run models. [`Net::default`] is the model described at the top (30 receivers
/// of drawn capacities, 1 MiB pieces, 0.5 ms per message, no queues); [`Net::lab`] describes a
/// `bench swarm` configuration (see `lab_agreement`).
#[derive(Clone, Debug)]
struct Net {
    receivers: usize,
    pieces: u32,
    /// Bytes per piece (one chunk per piece).
    piece_bytes: u64,
    /// The origin's upload, payload bytes per second.
    origin_up: f64,
    /// Receivers' (upload, download) payload capacities.
    rates: Rates,
    /// Neighbours per node (a full mesh when the fleet is smaller).
    degree: usize,
    /// A message's time on the wire without queueing, nanoseconds.
    half_rtt: u64,
    /// The shaped links' queues: a message or a piece's last byte crossing a saturated
    /// shaped link waits this long in its FIFO (nanoseconds), on the sender's uplink and, with
    /// `queue_down`, the receiver's downlink too.
    queue: u64,
    queue_down: bool,
    /// The lower bound's rates (the links' configured rates, which the lab's T* counts as
    /// payload): origin upload and receivers' (upload, download), bytes per second.
    bound: Option<(f64, Vec<(f64, f64)>)>,
    /// What the simulated completion leaves out of the user's figure: from the start of
    /// `node send` to the origin's first announcement, and from the last completion to the
    /// return of `--wait`, nanoseconds.
    before: u64,
    after: u64,
    /// The receivers' swarm settings (the default, unless an experiment changes them).
    swarm: SwarmConfig,
}

#[derive(Clone, Debug)]
enum Rates {
    /// Each receiver's upload drawn uniformly from this range (MB/s), its download twice that.
    Drawn(std::ops::Range<f64>),
    /// Given per receiver.
    Fixed(Vec<(f64, f64)>),
}

impl Net {
    fn with_uploads(uploads: std::ops::Range<f64>) -> Self {
        Self {
            receivers: RECEIVERS,
            pieces: PIECES,
            piece_bytes: MIB,
            origin_up: ORIGIN_UP,
            rates: Rates::Drawn(uploads),
            degree: DEGREE,
            half_rtt: HALF_RTT,
            queue: 0,
            queue_down: false,
            bound: None,
            before: 0,
            after: 0,
            swarm: SwarmConfig::default(),
        }
    }

    fn bytes(&self) -> f64 {
        (u64::from(self.pieces) * self.piece_bytes) as f64
    }
}
/// Give up after this much virtual time.
const HORIZON: u64 = 600_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Stalled,
    Corrupt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
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
}

struct Node {
    id: NodeId,
    core: Broadcasts,
    /// Pieces durably held.
    has: Bitfield,
    /// Pieces received, waiting for a commit.
    pending: Vec<u32>,
    /// Whether it serves the broadcast (its manifest too).
    serving: bool,
    up: f64,
    down: f64,
    neighbours: BTreeSet<usize>,
    timer: Option<u64>,
    done_at: Option<u64>,
    uploaded: f64,
}

/// One connection's sending side: `up` serves `down`.
#[derive(Default)]
struct Conn {
    open: bool,
    queue: VecDeque<u32>,
    /// Bytes left of the head of the queue.
    remaining: f64,
    rate: f64,
}

struct Sim {
    net: Net,
    /// When the origin last sent a byte, nanoseconds.
    origin_last: u64,
    /// Per resource (uploads `0..n`, downloads `n..2n`): whether it is saturated, as of the
    /// last rate computation (its shaped queue is then full).
    saturated: Vec<bool>,
    base: Instant,
    id: BroadcastId,
    manifest_bytes: Vec<u8>,
    now: u64,
    seq: u64,
    nodes: Vec<Node>,
    ids: BTreeMap<NodeId, usize>,
    /// Indexed `up * nodes + down`.
    conns: Vec<Conn>,
    /// Every connection ever open, as (up, down).
    links: Vec<(usize, usize)>,
    /// Connections sending, as of the last rate computation.
    active: Vec<(usize, usize)>,
    events: BTreeMap<(u64, u64), Ev>,
    fault: Fault,
    faulty: usize,
    declines: u32,
    rates_dirty: bool,
    /// (banning node, banned node).
    bans: BTreeSet<(usize, usize)>,
    /// Bad pieces delivered, per (downloader, uploader).
    bad_delivered: BTreeMap<(usize, usize), u32>,
    requests_after_ban: u32,
    stalls: u32,
    duplicates: u32,
    /// Bytes the origin sent to each node.
    origin_to: Vec<f64>,
    /// The late joiner and the neighbours it gets when it joins.
    late: Option<(usize, BTreeSet<usize>)>,
    /// Every action every core emitted, in order, with its time and node (when asked for).
    trace: Option<Vec<String>>,
}

/// One file of `net.pieces` chunks of `net.piece_bytes`: one chunk per piece.
fn manifest(net: &Net) -> (Arc<Manifest>, Arc<Layout>, Vec<u8>, BroadcastId) {
    let m = Manifest {
        version: swarmcast_node::manifest::MANIFEST_VERSION,
        name: "sim".into(),
        chunk_size: net.piece_bytes as u32,
        root_mode: Some(0o755),
        entries: vec![Entry {
            path: "file".into(),
            kind: EntryKind::File {
                size: u64::from(net.pieces) * net.piece_bytes,
                mode: 0o644,
                chunks: (0..net.pieces)
                    .map(|i| {
                        let mut h = [0u8; 32];
                        h[..4].copy_from_slice(&i.to_be_bytes());
                        ChunkHash(h)
                    })
                    .collect(),
            },
        }],
        audience: None,
        priority: swarmcast_proto::Priority::Normal,
    };
    let bytes = m.to_bytes();
    let id = manifest_id(&bytes);
    let layout = Arc::new(Layout::new(&m));
    assert_eq!(layout.piece_count(), net.pieces);
    (Arc::new(m), layout, bytes, id)
}

fn node_id(n: usize) -> NodeId {
    let mut bytes = [0u8; 32];
    let mixed = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    bytes[..8].copy_from_slice(&mixed.to_be_bytes());
    NodeId(bytes)
}

/// A connected random graph on `n` nodes, each of degree at least `degree` (a full mesh if
/// there are not that many others).
fn random_graph(rng: &mut StdRng, n: usize, degree: usize) -> Vec<BTreeSet<usize>> {
    if n <= degree + 1 {
        return (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
    }
    loop {
        let mut adj = vec![BTreeSet::new(); n];
        let mut order: Vec<usize> = (0..n).collect();
        rand::seq::SliceRandom::shuffle(&mut order[..], rng);
        for &i in &order {
            let mut tries = 0;
            while adj[i].len() < degree && tries < 1000 {
                tries += 1;
                let j = rng.random_range(0..n);
                let cap = if tries > 500 { n } else { MAX_DEGREE };
                if j != i && !adj[i].contains(&j) && adj[j].len() < cap {
                    adj[i].insert(j);
                    adj[j].insert(i);
                }
            }
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(i) = stack.pop() {
            for &j in &adj[i] {
                if !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if seen.iter().all(|&s| s) {
            return adj;
        }
    }
}

/// What one run measured.
#[derive(Debug)]
struct Outcome {
    /// Completion of the last receiver that must complete, seconds.
    t: f64,
    t_star: f64,
    origin_copies: f64,
    /// The same, without what the origin sent the faulty receiver itself.
    origin_copies_to_others: f64,
    /// Receivers that must complete but did not.
    incomplete: usize,
    faulty: usize,
    faulty_done: bool,
    bans: BTreeSet<(usize, usize)>,
    bad_delivered: BTreeMap<(usize, usize), u32>,
    requests_after_ban: u32,
    banned_in_cores: BTreeSet<(usize, usize)>,
    duplicates: u32,
    /// Requests the origin declined (super-seeding).
    declines: u32,
    /// Stall reports (`BroadcastAction::Stalled`): a transfer with no progress for 5 s while
    /// connected peers held what it lacked.
    stalls: u32,
}

impl Sim {
    fn new(seed: u64, setup: &Setup) -> Self {
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
                neighbours,
                timer: None,
                done_at: None,
                uploaded: 0.0,
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
            events: BTreeMap::new(),
            fault,
            faulty,
            declines: 0,
            rates_dirty: false,
            bans: BTreeSet::new(),
            bad_delivered: BTreeMap::new(),
            requests_after_ban: 0,
            stalls: 0,
            duplicates: 0,
            origin_to: vec![0.0; n],
            late,
            trace: trace.then(Vec::new),
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

    fn index(&self, id: NodeId) -> usize {
        self.ids[&id]
    }

    fn conn(&mut self, up: usize, down: usize) -> &mut Conn {
        let n = self.nodes.len();
        &mut self.conns[up * n + down]
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn push(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    /// How long a message (or a piece's last byte) from `from` takes to reach `to`: the wire,
    /// plus a full FIFO on each saturated shaped link it crosses.
    fn delay(&self, from: usize, to: usize) -> u64 {
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

    fn sending(&self, up: usize, c: &Conn) -> bool {
        c.open && !c.queue.is_empty() && !(self.fault == Fault::Stalled && up == self.faulty)
    }

    /// Max-min fair rates of the sending connections (progressive filling).
    fn recompute_rates(&mut self) {
        self.rates_dirty = false;
        let n = self.nodes.len();
        for &(u, d) in &self.active {
            self.conns[u * n + d].rate = 0.0;
        }
        let flows: Vec<(usize, usize)> = self
            .links
            .iter()
            .copied()
            .filter(|&(u, d)| self.sending(u, &self.conns[u * n + d]))
            .collect();
        // Resources 0..n are uploads, n..2n downloads.
        let mut cap: Vec<f64> = (0..2 * n)
            .map(|r| {
                if r < n {
                    self.nodes[r].up
                } else {
                    self.nodes[r - n].down
                }
            })
            .collect();
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); 2 * n];
        for (f, &(u, d)) in flows.iter().enumerate() {
            users[u].push(f);
            users[n + d].push(f);
        }
        let mut count: Vec<usize> = users.iter().map(Vec::len).collect();
        let mut busy: Vec<usize> = (0..2 * n).filter(|&r| count[r] > 0).collect();
        let mut rate = vec![f64::NAN; flows.len()];
        while !busy.is_empty() {
            let mut best = 0;
            let mut share = f64::INFINITY;
            for (i, &r) in busy.iter().enumerate() {
                let s = cap[r] / count[r] as f64;
                if s < share {
                    (best, share) = (i, s);
                }
            }
            let r = busy.swap_remove(best);
            for &f in &users[r] {
                if !rate[f].is_nan() {
                    continue;
                }
                rate[f] = share;
                let (u, d) = flows[f];
                for res in [u, n + d] {
                    cap[res] -= share;
                    count[res] -= 1;
                }
            }
            busy.retain(|&r| count[r] > 0);
        }
        let mut used = vec![0.0; 2 * n];
        for (f, &(u, d)) in flows.iter().enumerate() {
            let r = rate[f].max(0.0);
            self.conns[u * n + d].rate = r;
            used[u] += r;
            used[n + d] += r;
        }
        for (r, used) in used.iter().enumerate() {
            let cap = if r < n {
                self.nodes[r].up
            } else {
                self.nodes[r - n].down
            };
            self.saturated[r] = *used >= 0.98 * cap;
        }
        self.active = flows;
    }

    fn next_completion(&self) -> Option<u64> {
        let n = self.nodes.len();
        self.active
            .iter()
            .map(|&(u, d)| &self.conns[u * n + d])
            .filter(|c| c.rate > 0.0 && !c.queue.is_empty())
            .map(|c| self.now + (c.remaining.max(0.0) / c.rate * 1e9).ceil() as u64)
            .min()
    }

    fn advance(&mut self, to: u64) {
        let n = self.nodes.len();
        let dt = (to - self.now) as f64 / 1e9;
        self.now = to;
        let mut done = Vec::new();
        for &(up, down) in &self.active {
            let c = &mut self.conns[up * n + down];
            if c.queue.is_empty() || c.rate <= 0.0 {
                continue;
            }
            let sent = (c.rate * dt).min(c.remaining.max(0.0));
            self.nodes[up].uploaded += sent;
            if up == 0 && sent > 0.0 {
                self.origin_last = to;
            }
            if up == 0 {
                self.origin_to[down] += sent;
            }
            c.remaining -= c.rate * dt;
            if c.remaining <= 1.0 {
                done.push((up, down));
            }
        }
        for (up, down) in done {
            let c = self.conn(up, down);
            let piece = c.queue.pop_front().unwrap();
            if up == 0 {
                let now = self.instant();
                let id = self.id;
                self.nodes[0]
                    .core
                    .handle_served(now, id, piece, piece + 1, true);
            }
            let piece_bytes = self.net.piece_bytes as f64;
            let c = self.conn(up, down);
            c.remaining = if c.queue.is_empty() { 0.0 } else { piece_bytes };
            if c.queue.is_empty() {
                self.rates_dirty = true;
            }
            let delay = self.delay(up, down);
            self.push(delay, Ev::Data { up, down, piece });
        }
    }

    fn run(&mut self) {
        let must: Vec<usize> = (1..self.nodes.len())
            .filter(|&i| self.fault == Fault::None || i != self.faulty)
            .collect();
        loop {
            if must.iter().all(|&i| self.nodes[i].done_at.is_some()) {
                return;
            }
            if self.rates_dirty {
                self.recompute_rates();
            }
            let next_ev = self.events.keys().next().map(|k| k.0);
            let t = match (next_ev, self.next_completion()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return,
                },
            };
            if t > HORIZON {
                return;
            }
            self.advance(t.max(self.now));
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let ev = entry.remove();
                self.handle(ev);
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
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
            Ev::Join { node } => {
                let links = self
                    .late
                    .as_ref()
                    .map(|(_, l)| l.clone())
                    .unwrap_or_default();
                let n = self.nodes.len();
                for b in links {
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
        if !self.nodes[up].has.get(piece) {
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
    fn drain(&mut self, node: usize) {
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
                    let held = Bitfield::new(self.net.pieces);
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
                        n.has.set(c);
                    }
                    n.core.handle_durable(now, id, Ok(chunks));
                }
                BroadcastAction::Finalize { .. } => {
                    let n = &mut self.nodes[node];
                    assert!(n.done_at.is_none(), "Finalize twice");
                    assert!(n.has.is_complete());
                    n.done_at = Some(self.now);
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

    fn outcome(&self) -> Outcome {
        let f = self.net.bytes();
        let (origin_up, rates): (f64, Vec<(f64, f64)>) = match &self.net.bound {
            Some((origin, rates)) => (*origin, rates.clone()),
            None => (
                self.net.origin_up,
                self.nodes[1..].iter().map(|n| (n.up, n.down)).collect(),
            ),
        };
        let d_min = rates.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let sum_up: f64 = rates.iter().map(|r| r.0).sum();
        let t_star = (f / origin_up)
            .max(f / d_min)
            .max(rates.len() as f64 * f / (origin_up + sum_up));
        let must = |i: &usize| self.fault == Fault::None || *i != self.faulty;
        let t = (1..self.nodes.len())
            .filter(must)
            .filter_map(|i| self.nodes[i].done_at)
            .max()
            .map_or(0, |t| self.net.before + t + self.net.after) as f64
            / 1e9;
        let incomplete = (1..self.nodes.len())
            .filter(must)
            .filter(|&i| self.nodes[i].done_at.is_none())
            .count();
        let mut banned_in_cores = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            let Some(transfer) = n.core.transfer(&self.id) else {
                continue;
            };
            for s in transfer.peers() {
                if s.banned {
                    banned_in_cores.insert((i, self.index(s.id)));
                }
            }
        }
        Outcome {
            t,
            t_star,
            origin_copies: self.nodes[0].uploaded / f,
            origin_copies_to_others: (self.nodes[0].uploaded - self.origin_to[self.faulty]) / f,
            incomplete,
            faulty: self.faulty,
            faulty_done: self.nodes[self.faulty].done_at.is_some(),
            bans: self.bans.clone(),
            bad_delivered: self.bad_delivered.clone(),
            requests_after_ban: self.requests_after_ban,
            banned_in_cores,
            duplicates: self.duplicates,
            declines: self.declines,
            stalls: self.stalls,
        }
    }
}

/// Receivers' upload capacities, in MB/s.
const UPLOADS: std::ops::Range<f64> = 5.0..50.0;

fn run(seed: u64, fault: Fault) -> Outcome {
    run_with(seed, fault, UPLOADS)
}

/// What a run varies.
#[derive(Clone, Debug)]
struct Setup {
    fault: Fault,
    /// The network.
    net: Net,
    /// Whether the origin sends each piece only once until it has sent them all, declining
    /// the other requests (as `node/src/data/serve.rs` does).
    superseed: bool,
    /// Whether the last receiver joins late ([`LATE_JOIN`]), when its neighbours already hold
    /// pieces: its first transfer then starts from many full `Have`s at once.
    late: bool,
    /// Whether to record every action ([`Sim::trace`]).
    trace: bool,
}

/// When the late joiner's connections come up: its neighbours hold pieces by then.
const LATE_JOIN: u64 = 300_000_000;

fn run_with(seed: u64, fault: Fault, uploads: std::ops::Range<f64>) -> Outcome {
    run_setup(
        seed,
        &Setup {
            fault,
            net: Net::with_uploads(uploads),
            superseed: false,
            late: false,
            trace: false,
        },
    )
}

fn run_setup(seed: u64, setup: &Setup) -> Outcome {
    let fault = setup.fault;
    let mut sim = Sim::new(seed, setup);
    sim.run();
    let o = sim.outcome();
    let superseed = if setup.superseed {
        ", super-seeding"
    } else {
        ""
    };
    eprintln!(
        "seed {seed} {fault:?}{superseed}: T = {:.2} s, T* = {:.2} s, T/T* = {:.3}; origin \
         uploaded {:.3} copies ({:.3} to receivers other than #{}); {} declined; {} duplicate \
         pieces received; {} bans; #{} completed: {}",
        o.t,
        o.t_star,
        o.t / o.t_star,
        o.origin_copies,
        o.origin_copies_to_others,
        o.faulty,
        o.declines,
        o.duplicates,
        o.bans.len(),
        o.faulty,
        o.faulty_done,
    );
    o
}

/// The fault-free run of `seed` (< 8), computed once. The origin super-seeds, as it always
/// does in swarm mode: it is kept busy (`Transfer` asks it for a new stripe at once, not only
/// when starving), so without super-seeding it would upload past 1.5 copies.
fn baseline(seed: u64) -> &'static Outcome {
    static RUNS: [OnceLock<Outcome>; 8] = [const { OnceLock::new() }; 8];
    RUNS[seed as usize].get_or_init(|| {
        run_setup(
            seed,
            &Setup {
                fault: Fault::None,
                net: Net::with_uploads(UPLOADS),
                superseed: true,
                late: false,
                trace: false,
            },
        )
    })
}

fn check_baseline(seed: u64) {
    let o = baseline(seed);
    assert_eq!(o.incomplete, 0, "seed {seed}: receivers did not complete");
    assert!(o.origin_copies < 1.5, "seed {seed}: {o:?}");
    assert!(o.t / o.t_star < 1.5, "seed {seed}: {o:?}");
    assert!(o.bans.is_empty(), "seed {seed}: {o:?}");
    assert_eq!(o.stalls, 0, "seed {seed}: a fault-free run stalled: {o:?}");
}

fn check_stalled(seed: u64) {
    let base = baseline(seed);
    let o = run(seed, Fault::Stalled);
    assert_eq!(o.incomplete, 0, "seed {seed}: receivers did not complete");
    assert!(
        o.t < 1.5 * base.t,
        "seed {seed}: {:.2} s vs {:.2} s",
        o.t,
        base.t
    );
    assert!(
        o.bans.is_empty(),
        "seed {seed}: a stall is no ground for a ban"
    );
    eprintln!(
        "seed {seed}: the stalled receiver costs {:+.1}% ({:.2} s vs {:.2} s), origin {:.3} vs \
         {:.3} copies",
        (o.t / base.t - 1.0) * 100.0,
        o.t,
        base.t,
        o.origin_copies,
        base.origin_copies
    );
}

fn check_corrupt(seed: u64) {
    let o = run(seed, Fault::Corrupt);
    assert_eq!(o.incomplete, 0, "seed {seed}: receivers did not complete");
    assert_eq!(o.requests_after_ban, 0, "seed {seed}: asked after the ban");
    for (&(victim, server), &bad) in &o.bad_delivered {
        assert_eq!(server, o.faulty);
        assert_eq!(
            o.bans.contains(&(victim, server)),
            bad >= 3,
            "seed {seed}: #{victim} got {bad} bad pieces: {o:?}"
        );
        assert_eq!(
            o.banned_in_cores.contains(&(victim, server)),
            bad >= 3,
            "seed {seed}"
        );
    }
    assert!(
        o.bans.iter().all(|&(_, banned)| banned == o.faulty),
        "seed {seed}: an honest node was banned: {o:?}"
    );
    assert!(
        !o.bans.is_empty(),
        "seed {seed}: nobody banned the corrupt node"
    );
    eprintln!(
        "seed {seed}: corrupt receiver #{} banned by {} neighbours; others done at T/T* = {:.3}",
        o.faulty,
        o.bans.len(),
        o.t / o.t_star
    );
}

/// With an origin that sends each piece once in its first round (as the baseline's does) and
/// `fault`: everyone (else) completes, within 1.5× T* (and 1.5× the fault-free run).
fn check_superseed(seed: u64, fault: Fault) {
    let base = baseline(seed);
    let o = run_setup(
        seed,
        &Setup {
            fault,
            net: Net::with_uploads(UPLOADS),
            superseed: true,
            late: false,
            trace: false,
        },
    );
    assert_eq!(o.incomplete, 0, "seed {seed}: receivers did not complete");
    assert!(o.t / o.t_star < 1.5, "seed {seed}: {o:?}");
    assert!(o.t < 1.5 * base.t, "seed {seed}: {o:?}");
    assert!(o.origin_copies < 1.5, "seed {seed}: {o:?}");
}

macro_rules! seeds {
    ($($name:ident: $seed:expr),* $(,)?) => {$(
        mod $name {
            #[test]
            fn fault_free() {
                super::check_baseline($seed);
            }

            #[test]
            fn stalled_receiver() {
                super::check_stalled($seed);
            }

            #[test]
            fn corrupt_receiver() {
                super::check_corrupt($seed);
            }

            #[test]
            fn superseeding_origin_stalled_receiver() {
                super::check_superseed($seed, super::Fault::Stalled);
            }

        }
    )*};
}

seeds!(seed_1: 1, seed_2: 2, seed_3: 3);

/// More seeds, for the figures: `cargo test --release -p swarmcast-node --test swarm_sim --
/// --ignored --nocapture`.
#[test]
#[ignore = "slow in debug; run with --release"]
fn many_seeds() {
    type Row = [f64; 8];
    let mut rows: Vec<Row> = Vec::new();
    for seed in 10..30 {
        let base = run(seed, Fault::None);
        let stalled = run(seed, Fault::Stalled);
        let corrupt = run(seed, Fault::Corrupt);
        let superseed = |fault| {
            let setup = Setup {
                fault,
                net: Net::with_uploads(UPLOADS),
                superseed: true,
                late: false,
                trace: false,
            };
            run_setup(seed, &setup)
        };
        let (ss, ss_stalled) = (superseed(Fault::None), superseed(Fault::Stalled));
        for o in [&base, &stalled, &corrupt, &ss, &ss_stalled] {
            assert_eq!(o.incomplete, 0, "seed {seed}");
        }
        rows.push([
            base.t / base.t_star,
            base.origin_copies,
            stalled.t / base.t,
            stalled.origin_copies,
            corrupt.t / base.t,
            corrupt.origin_copies_to_others,
            ss.origin_copies,
            ss_stalled.t / base.t,
        ]);
    }
    let labels = [
        "fault-free T/T*",
        "fault-free origin copies",
        "stalled T / fault-free T",
        "stalled origin copies",
        "corrupt T / fault-free T",
        "corrupt origin copies (to others)",
        "super-seeding origin copies",
        "super-seeding + stalled T / fault-free T",
    ];
    eprintln!("over {} seeds, min / mean / max:", rows.len());
    for (i, label) in labels.iter().enumerate() {
        let v: Vec<f64> = rows.iter().map(|r| r[i]).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        eprintln!("  {label:<42} {min:.3} / {mean:.3} / {max:.3}");
    }
}

/// Fast receivers (25–50 MB/s up), so that the swarm's total upload, not the slowest
/// download, bounds T*.
#[test]
#[ignore = "slow in debug; run with --release"]
fn capacity_bound() {
    for seed in 1..6 {
        let o = run_with(seed, Fault::None, 25.0..50.0);
        assert_eq!(o.incomplete, 0);
    }
}

/// Two runs of one seed emit the same actions, in the same order, at the same virtual times:
/// every core is reproducible from its seed, and no hasher's random order leaks into a decision.
/// The late joiner starts its transfer from many neighbours' full `Have`s at once (so the order
/// in which a core goes through its peers shows), and the stalled receiver brings timeouts,
/// probes, cancels and the endgame in.
#[test]
fn one_seed_gives_one_trace() {
    let setup = Setup {
        fault: Fault::Stalled,
        net: Net::with_uploads(UPLOADS),
        superseed: true,
        late: true,
        trace: true,
    };
    let trace = |seed| {
        let mut sim = Sim::new(seed, &setup);
        sim.run();
        assert_eq!(sim.outcome().incomplete, 0, "seed {seed}");
        let late = sim.late.as_ref().map(|(l, _)| *l).unwrap();
        assert!(
            sim.nodes[late].done_at.is_some(),
            "seed {seed}: the late joiner completed"
        );
        sim.trace.take().unwrap()
    };
    for seed in [1, 2] {
        let (a, b) = (trace(seed), trace(seed));
        if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
            panic!(
                "seed {seed}: the runs part at action {i}:\n{}\n{}",
                a[i], b[i]
            );
        }
        assert_eq!(a.len(), b.len(), "seed {seed}");
        eprintln!("seed {seed}: {} actions, twice alike", a.len());
    }
}

/// How a `bench swarm` configuration's links are shaped.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// HTB on both directions of each host's link, a 50 ms byte FIFO each.
    HtbBoth,
    /// A tbf on each host's uplink (50 ms queue); downloads unshaped.
    TbfUplink,
}

impl Net {
    /// A `bench swarm` configuration: the origin's and each receiver's link rate in Mbit/s
    /// (`receivers[i]` for receiver `i + 1`), `mib` of data in the product's default pieces.
    ///
    /// What the model takes from the lab, beside the configured rates:
    /// * **The wire's overhead.** A link carries the payload plus IP/UDP/QUIC headers and
    ///   retransmissions: the lab's switch counters gave 1.05 × F on the origin's link for 1.00 ×
    ///   F of payload with HTB both ways (drops at the receivers' download FIFOs, where several
    ///   senders meet), 1.03 × F with tbf on uplinks only (headers alone). Payload capacity is
    ///   the link rate over that.
    /// * **Queues.** Every shaped link has a 50 ms FIFO, which congestion control keeps full
    ///   while the link is saturated: a message (a request, an advert, a manifest) or a piece's
    ///   last byte that crosses a saturated shaped link waits 50 ms there (uplinks in both
    ///   shapes, downlinks too with HTB). So request round trips grow with load, as in the lab.
    /// * **Connections.** One QUIC connection per neighbour pair, its pieces sent one after
    ///   another (streams in order: the node's piece streams share one priority), connections
    ///   sharing each link max-min fairly (what competing congestion controllers converge to).
    ///   QUIC's stream and connection windows (2 MiB and 4 MiB) exceed what a peer has in
    ///   flight at these rates (its request budget of about 200 ms of its throughput), so they
    ///   do not bind, and are not modelled; neither is slow start (the initial window doubles
    ///   in a few 0.2 ms RTTs on an empty veth).
    /// * **What the cores do not see.** The user's figure starts at `node send`, and the first
    ///   announcement leaves after the origin hashed the directory and answered the control
    ///   socket (the lab's first requests: 0.13–0.15 s after the start); it ends when `--wait`
    ///   hears of the last completion through the registry (0.18–0.25 s after it). Both are
    ///   taken as measured (medians of the N=4 and N=8 runs in BENCHMARKS.md), not modelled.
    fn lab(shape: Shape, origin_mbit: f64, receivers: &[f64], mib: u64) -> Self {
        let mbit = |r: f64| r * 1e6 / 8.0;
        let overhead = match shape {
            Shape::HtbBoth => 1.05,
            Shape::TbfUplink => 1.03,
        };
        // Unshaped downloads: a veth on this machine moves several Gbit/s.
        let down = |r: f64| match shape {
            Shape::HtbBoth => mbit(r),
            Shape::TbfUplink => mbit(10_000.0),
        };
        let piece_bytes = u64::from(swarmcast_node::manifest::PIECE_BYTES);
        Self {
            receivers: receivers.len(),
            pieces: (mib * MIB / piece_bytes) as u32,
            piece_bytes,
            origin_up: mbit(origin_mbit) / overhead,
            rates: Rates::Fixed(
                receivers
                    .iter()
                    .map(|&r| (mbit(r) / overhead, down(r) / overhead))
                    .collect(),
            ),
            degree: DEGREE,
            half_rtt: 100_000,
            queue: 25_000_000,
            queue_down: matches!(shape, Shape::HtbBoth),
            bound: Some((
                mbit(origin_mbit),
                receivers.iter().map(|&r| (mbit(r), down(r))).collect(),
            )),
            before: 140_000_000,
            after: 200_000_000,
            swarm: SwarmConfig::default(),
        }
    }
}

/// A lab figure the simulator is held to: the configuration, and the median T/T* that
/// `bench swarm` measured for it (T from the start of `node send` to the return of `--wait`).
struct LabFigure {
    what: &'static str,
    net: Net,
    /// Median T/T* in the lab.
    lab: f64,
}

fn lab_figures() -> Vec<LabFigure> {
    let fleet = |n: usize, r: f64| vec![r; n];
    let mut hetero = vec![50.0; 7];
    hetero.push(10.0);
    vec![
        // BENCHMARKS.md "A least window of two pieces" (main at min_window 2), 3 runs each,
        // load < 1:
        // sudo target/release/swarmcast bench swarm --receivers 4 --rate-mbit 50 --size 64MiB
        //   --strategy swarm [--shape tbf-uplink]
        LabFigure {
            what: "N=4 x 50 Mbit/s, HTB both ways, 64 MiB",
            net: Net::lab(Shape::HtbBoth, 50.0, &fleet(4, 50.0), 64),
            lab: 1.144,
        },
        LabFigure {
            what: "N=4 x 50 Mbit/s, tbf uplink, 64 MiB",
            net: Net::lab(Shape::TbfUplink, 50.0, &fleet(4, 50.0), 64),
            lab: 1.108,
        },
        // ... --receivers 8 --rate-mbit 25 --size 64MiB ...
        LabFigure {
            what: "N=8 x 25 Mbit/s, HTB both ways, 64 MiB",
            net: Net::lab(Shape::HtbBoth, 25.0, &fleet(8, 25.0), 64),
            lab: 1.194,
        },
        LabFigure {
            what: "N=8 x 25 Mbit/s, tbf uplink, 64 MiB",
            net: Net::lab(Shape::TbfUplink, 25.0, &fleet(8, 25.0), 64),
            lab: 1.134,
        },
        // The two below were measured before min_window 2 (which the simulation says changes
        // them by 0.2% and 1.2%):
        // BENCHMARKS.md "Neighbour liveness from any packet", 3 runs:
        // ... --receivers 16 --rate-mbit 20 --size 128MiB --strategy swarm --trace DIR
        LabFigure {
            what: "N=16 x 20 Mbit/s, HTB both ways, 128 MiB",
            net: Net::lab(Shape::HtbBoth, 20.0, &fleet(16, 20.0), 128),
            lab: 1.231,
        },
        // ... --receivers 8 --rate-mbit 50 --host-rate origin=100 --host-rate r8=10 --size 64MiB
        // (T* is the slow receiver's bound, F/d_slow)
        LabFigure {
            what: "origin 100, 7 x 50, one at 10 Mbit/s, HTB both ways, 64 MiB",
            net: Net::lab(Shape::HtbBoth, 100.0, &hetero, 64),
            lab: 1.097,
        },
    ]
}

/// The simulator against the lab: for each `bench swarm` configuration whose median is
/// recorded in BENCHMARKS.md, the simulated T (median of 3 seeds) falls within 15% of the lab's.
#[test]
fn lab_agreement() {
    let mut off = Vec::new();
    for f in lab_figures() {
        let mut runs: Vec<Outcome> = (1..=3)
            .map(|seed| {
                let setup = Setup {
                    fault: Fault::None,
                    net: f.net.clone(),
                    superseed: true,
                    late: false,
                    trace: false,
                };
                let mut sim = Sim::new(seed, &setup);
                sim.run();
                sim.outcome()
            })
            .collect();
        runs.sort_by(|a, b| a.t.total_cmp(&b.t));
        let o = &runs[1];
        assert_eq!(o.incomplete, 0, "{}", f.what);
        let ratio = o.t / (f.lab * o.t_star);
        eprintln!(
            "{}: simulated T = {:.2} s = {:.3} T* (origin {:.3} copies), lab {:.3} T*: {:+.1}%",
            f.what,
            o.t,
            o.t / o.t_star,
            o.origin_copies,
            f.lab,
            (ratio - 1.0) * 100.0
        );
        if (ratio - 1.0).abs() > 0.15 {
            off.push(f.what);
        }
    }
    assert!(off.is_empty(), "off by more than 15%: {off:?}");
}

/// How much the lab's N=4 HTB figure depends on the shaped FIFOs' occupancy (the model's one
/// fitted parameter, [`Net::lab`]): `cargo test -p swarmcast-node --test swarm_sim
/// queue_sensitivity -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures; asserts nothing beyond completion"]
fn queue_sensitivity() {
    for ms in [0u64, 10, 25, 50] {
        for queue_down in [false, true] {
            let mut net = Net::lab(Shape::HtbBoth, 50.0, &[50.0; 4], 64);
            net.queue = ms * 1_000_000;
            net.queue_down = queue_down;
            let setup = Setup {
                fault: Fault::None,
                net,
                superseed: true,
                late: false,
                trace: false,
            };
            let mut sim = Sim::new(1, &setup);
            sim.run();
            let o = sim.outcome();
            assert_eq!(o.incomplete, 0);
            let busy = sim.nodes[0].uploaded / sim.net.origin_up;
            let last = sim.origin_last as f64 / 1e9;
            eprintln!(
                "queue {ms} ms (downlinks too: {queue_down}): T/T* {:.3}, {} declined; the \
                 origin's uplink busy {busy:.2} s of the {last:.2} s to its last byte",
                o.t / o.t_star,
                o.declines
            );
        }
    }
}

/// An experiment on the lab configurations: each with the swarm settings given in the
/// environment (`TARGET_QUEUE_MS`, a comma-separated list, default 200; `MIN_WINDOW`), median
/// T/T* of 3 seeds. `MIN_WINDOW=1 cargo test --release -p swarmcast-node --test swarm_sim
/// lab_sweep -- --ignored --nocapture` is how `min_window` 2 was found.
#[test]
#[ignore = "an experiment: prints figures"]
fn lab_sweep() {
    let queues: Vec<u64> = std::env::var("TARGET_QUEUE_MS")
        .unwrap_or_else(|_| "200".into())
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    let min_window: Option<u32> = std::env::var("MIN_WINDOW").ok().map(|w| w.parse().unwrap());
    for f in lab_figures() {
        for &ms in &queues {
            let mut net = f.net.clone();
            net.swarm.target_queue = Duration::from_millis(ms);
            if let Some(w) = min_window {
                net.swarm.min_window = w;
            }
            let mut ts: Vec<f64> = (1..=3)
                .map(|seed| {
                    let setup = Setup {
                        fault: Fault::None,
                        net: net.clone(),
                        superseed: true,
                        late: false,
                        trace: false,
                    };
                    let mut sim = Sim::new(seed, &setup);
                    sim.run();
                    let o = sim.outcome();
                    o.t / o.t_star
                })
                .collect();
            ts.sort_by(f64::total_cmp);
            eprintln!("{}, target_queue {ms} ms: T/T* {:.3}", f.what, ts[1]);
        }
    }
}

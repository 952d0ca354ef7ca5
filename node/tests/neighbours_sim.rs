//! Neighbour cores wired together in memory, on a virtual clock.
//!
//! The harness plays the shell's side of the contract in `swarmcast_node::neighbours`: one
//! accepted connection per peer, silent drops of superseded connections, closes reported to the
//! other end only for its accepted connection. Every failure names its seed.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use swarmcast_node::neighbours::{
    Action, DialFailure, Direction, NeighbourConfig, NeighbourState, Neighbours,
};
use swarmcast_proto::{NodeId, NodeRecord, RegistryEntry, Role, Status, Version};

fn node_id(n: usize) -> NodeId {
    // Spread the ids so that their order is unrelated to the node numbers.
    let mut bytes = [0u8; 32];
    let mixed = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    bytes[..8].copy_from_slice(&mixed.to_be_bytes());
    NodeId(bytes)
}

fn node_addr(n: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 1, (n >> 8) as u8, n as u8), 7000))
}

fn registry(nodes: usize) -> Vec<RegistryEntry> {
    let mut entries: Vec<RegistryEntry> = (0..nodes)
        .map(|n| RegistryEntry {
            record: NodeRecord {
                progress_seq: 0,
                id: node_id(n),
                name: format!("n{n}"),
                role: Role::Node,
                addrs: vec![node_addr(n)],
                version: Version::new(1, 1),
                progress: Vec::new(),
                pull: false,
                groups: Vec::new(),
            },
            status: Status::Alive,
            age_ms: 0,
        })
        .collect();
    // A bootstrap, which must never be dialled as a neighbour.
    let mut bootstrap = entries[0].clone();
    bootstrap.record.id = NodeId([0xbb; 32]);
    bootstrap.record.role = Role::Bootstrap;
    bootstrap.record.addrs = vec![SocketAddr::from(([10, 9, 9, 9], 7000))];
    entries.push(bootstrap);
    entries
}

/// What a dial to a dead node looks like to the dialler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeadDials {
    /// It fails at once (the host answers "port unreachable").
    Refused,
    /// Nothing comes back; the core's dial timeout must fire.
    BlackHole,
}

struct SimNode {
    id: NodeId,
    addr: SocketAddr,
    core: Neighbours,
    alive: bool,
    /// The shell's accepted connection per peer.
    conns: BTreeMap<NodeId, usize>,
}

/// A connection: who dialled whom.
struct Conn {
    ends: [usize; 2],
}

struct Sim {
    seed: u64,
    now: Instant,
    nodes: Vec<SimNode>,
    index: BTreeMap<NodeId, usize>,
    conns: Vec<Conn>,
    /// Pongs in flight, by arrival time: (to, from, connection, nonce).
    pongs: BTreeMap<(Instant, u64), (usize, NodeId, usize, u64)>,
    seq: u64,
    dead_dials: DeadDials,
    registry: Vec<RegistryEntry>,
}

impl Sim {
    fn new(nodes: usize, config: &NeighbourConfig, seed: u64, dead_dials: DeadDials) -> Self {
        let nodes: Vec<SimNode> = (0..nodes)
            .map(|n| SimNode {
                id: node_id(n),
                addr: node_addr(n),
                core: Neighbours::new(config.clone(), node_id(n), seed * 1_000 + n as u64),
                alive: true,
                conns: BTreeMap::new(),
            })
            .collect();
        let index = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let registry = registry(nodes.len());
        Self {
            seed,
            now: Instant::now(),
            nodes,
            index,
            conns: Vec::new(),
            pongs: BTreeMap::new(),
            seq: 0,
            dead_dials,
            registry,
        }
    }

    /// Round-trip time between two nodes: 1 to 20 ms, symmetric.
    fn rtt(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = (a.min(b), a.max(b));
        Duration::from_millis(1 + ((lo * 31 + hi * 17) % 20) as u64)
    }

    fn feed_registry(&mut self) {
        for node in self.nodes.iter_mut().filter(|n| n.alive) {
            node.core.handle_registry(self.now, &self.registry);
        }
    }

    /// Carries out every queued action until all cores are quiet.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].alive {
                    continue;
                }
                while let Some(action) = self.nodes[i].core.poll_action() {
                    progressed = true;
                    self.apply(i, action);
                }
                while self.nodes[i].core.poll_event().is_some() {}
            }
            if !progressed {
                break;
            }
        }
    }

    fn apply(&mut self, i: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Dial { id, addr } => {
                let j = self.index[&id];
                assert_eq!(self.nodes[j].addr, addr, "seed {}", self.seed);
                if !self.nodes[j].alive {
                    if self.dead_dials == DeadDials::Refused {
                        self.nodes[i]
                            .core
                            .handle_dial_failed(now, id, DialFailure::Unreachable);
                    }
                    return;
                }
                let c = self.conns.len();
                self.conns.push(Conn { ends: [i, j] });
                // The dialler's handshake completes first, then the acceptor's.
                if !self.nodes[i]
                    .core
                    .handle_connected(now, id, addr, Direction::Outbound)
                {
                    return; // closed before the acceptor saw it
                }
                self.adopt(i, id, c);
                let (from, from_addr) = (self.nodes[i].id, self.nodes[i].addr);
                if self.nodes[j]
                    .core
                    .handle_connected(now, from, from_addr, Direction::Inbound)
                {
                    self.adopt(j, from, c);
                } else {
                    self.closed_by(j, c);
                }
            }
            Action::Close { id, .. } => {
                if let Some(c) = self.nodes[i].conns.remove(&id) {
                    self.closed_by(i, c);
                }
            }
            Action::Ping { id, nonce } => {
                let Some(&c) = self.nodes[i].conns.get(&id) else {
                    return;
                };
                let j = self.index[&id];
                let me = self.nodes[i].id;
                if self.nodes[j].alive && self.nodes[j].conns.get(&me) == Some(&c) {
                    self.seq += 1;
                    let at = now + self.rtt(i, j);
                    self.pongs.insert((at, self.seq), (i, id, c, nonce));
                }
            }
        }
    }

    /// Node `k` accepted connection `c` to `peer`; an older one is closed silently.
    fn adopt(&mut self, k: usize, peer: NodeId, c: usize) {
        if let Some(old) = self.nodes[k].conns.insert(peer, c) {
            if old != c {
                self.closed_by(k, old);
            }
        }
    }

    /// Node `k` closed connection `c`: the other end reports it if it is its accepted one.
    fn closed_by(&mut self, k: usize, c: usize) {
        let ends = self.conns[c].ends;
        let other = if ends[0] == k { ends[1] } else { ends[0] };
        let me = self.nodes[k].id;
        let node = &mut self.nodes[other];
        if node.alive && node.conns.get(&me) == Some(&c) {
            node.conns.remove(&me);
            node.core.handle_closed(self.now, me);
        }
    }

    /// Runs the clock to `until`, firing timers and delivering pongs in time order.
    fn run_until(&mut self, until: Instant) {
        // Consecutive steps without the clock moving: a core whose timer never advances.
        let mut stuck = 0u32;
        loop {
            self.pump();
            let timers = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .filter_map(|n| n.core.poll_timeout());
            let pong = self.pongs.keys().next().map(|&(t, _)| t);
            let Some(next) = timers.chain(pong).min() else {
                break;
            };
            if next > until {
                break;
            }
            stuck = if next > self.now { 0 } else { stuck + 1 };
            assert!(
                stuck < 10_000,
                "seed {}: a timer does not advance",
                self.seed
            );
            self.now = self.now.max(next);
            while let Some(entry) = self.pongs.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (to, from, c, nonce) = entry.remove();
                let node = &mut self.nodes[to];
                if node.alive && node.conns.get(&from) == Some(&c) {
                    node.core.handle_pong(self.now, from, nonce);
                }
            }
            for node in self.nodes.iter_mut().filter(|n| n.alive) {
                if node.core.poll_timeout().is_some_and(|t| t <= self.now) {
                    node.core.handle_timeout(self.now);
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].alive)
    }

    /// A transfer in progress: every live node reports data-plane traffic on each link to a
    /// live peer (none on links to the dead: the worst case, where the dead peer was the only
    /// one sending).
    fn traffic(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            let peers: Vec<NodeId> = self
                .connected_peers(i)
                .into_iter()
                .filter(|p| self.index.get(p).is_some_and(|&j| self.nodes[j].alive))
                .collect();
            for p in peers {
                self.nodes[i].core.handle_activity(now, p);
            }
        }
        self.pump();
    }

    /// [`Sim::run_until`], reporting traffic every 500 ms if `busy`.
    fn run_busy_until(&mut self, until: Instant, busy: bool) {
        if !busy {
            return self.run_until(until);
        }
        while self.now < until {
            self.traffic();
            let step = (self.now + Duration::from_millis(500)).min(until);
            self.run_until(step);
            self.now = self.now.max(step);
        }
    }

    fn connected_peers(&self, i: usize) -> BTreeSet<NodeId> {
        self.nodes[i]
            .core
            .neighbours()
            .into_iter()
            .filter(|n| n.state == NeighbourState::Connected)
            .map(|n| n.id)
            .collect()
    }

    /// Cores and shells agree, and both ends of every connection hold the same one.
    #[track_caller]
    fn assert_consistent(&self) {
        for i in self.alive() {
            let connected = self.connected_peers(i);
            let shell: BTreeSet<NodeId> = self.nodes[i].conns.keys().copied().collect();
            assert_eq!(
                connected, shell,
                "seed {}: node {i} core and shell differ",
                self.seed
            );
            for (&peer, &c) in &self.nodes[i].conns {
                let j = self.index[&peer];
                if self.nodes[j].alive {
                    assert_eq!(
                        self.nodes[j].conns.get(&self.nodes[i].id),
                        Some(&c),
                        "seed {}: nodes {i} and {j} disagree on their connection",
                        self.seed
                    );
                }
            }
        }
    }

    fn kill(&mut self, victims: &[usize]) {
        for &v in victims {
            self.nodes[v].alive = false;
        }
    }
}

/// Runs a fleet to steady state, kills `kills` nodes, and checks that every survivor is back to
/// `min(target, alive - 1)` connected neighbours, none of them dead, within `deadline`.
/// Returns the slowest recovery.
fn kill_and_recover(
    nodes: usize,
    kills: usize,
    seed: u64,
    dead_dials: DeadDials,
    deadline: Duration,
    busy: bool,
) -> Duration {
    let config = NeighbourConfig::default();
    let mut sim = Sim::new(nodes, &config, seed, dead_dials);
    let mut rng = StdRng::seed_from_u64(seed);
    // Nodes join over the first second, so their ping cycles are not in step.
    let start = sim.now;
    let mut joins: Vec<(Duration, usize)> = (0..nodes)
        .map(|i| (Duration::from_micros(rng.random_range(0..1_000_000)), i))
        .collect();
    joins.sort();
    for (at, i) in joins {
        sim.run_until(start + at);
        let now = sim.now;
        sim.nodes[i].core.handle_registry(now, &sim.registry);
    }
    // Kill at an arbitrary point of the ping cycles (of the idle cycles too when idle).
    let at = if busy {
        5_000 + rng.random_range(0..250)
    } else {
        20_000 + rng.random_range(0..5_000)
    };
    sim.run_busy_until(start + Duration::from_millis(at), busy);
    sim.assert_consistent();
    let want = config.target.min(nodes - 1);
    for i in sim.alive() {
        let n = sim.nodes[i].core.connected_count();
        assert!(
            n >= want,
            "seed {seed}: node {i} has {n} neighbours before the kill"
        );
        assert!(n <= config.max_neighbours, "seed {seed}: node {i} has {n}");
    }

    let victims: Vec<usize> = sample(&mut rng, nodes, kills).into_vec();
    let dead: BTreeSet<NodeId> = victims.iter().map(|&v| sim.nodes[v].id).collect();
    let killed_at = sim.now;
    sim.kill(&victims);
    let want = config.target.min(nodes - kills - 1);
    let former: Vec<usize> = sim
        .alive()
        .filter(|&i| !sim.connected_peers(i).is_disjoint(&dead))
        .collect();
    assert!(!former.is_empty());

    // Step 10 ms at a time, noting when each former neighbour is whole again. The registry
    // still lists the dead as alive: the bootstrap has not noticed yet.
    let mut recovered: BTreeMap<usize, Duration> = BTreeMap::new();
    let step = Duration::from_millis(10);
    while sim.now < killed_at + deadline {
        if busy && (sim.now - killed_at).as_millis() % 500 == 0 {
            sim.traffic();
        }
        sim.run_until(sim.now + step);
        if (sim.now - killed_at).as_millis() % 1_000 == 0 {
            sim.feed_registry();
        }
        for &i in &former {
            let peers = sim.connected_peers(i);
            if peers.len() >= want && peers.is_disjoint(&dead) {
                recovered.entry(i).or_insert(sim.now - killed_at);
            } else {
                recovered.remove(&i);
            }
        }
    }
    sim.assert_consistent();
    for &i in &former {
        let peers = sim.connected_peers(i);
        assert!(
            peers.len() >= want,
            "seed {seed}: node {i} has {} of {want} neighbours {deadline:?} after the kill",
            peers.len()
        );
    }
    for i in sim.alive() {
        assert!(
            sim.connected_peers(i).is_disjoint(&dead),
            "seed {seed}: node {i} still holds a dead peer"
        );
        if dead_dials == DeadDials::Refused {
            let links: BTreeSet<NodeId> = sim.nodes[i]
                .core
                .neighbours()
                .iter()
                .map(|n| n.id)
                .collect();
            assert!(
                links.is_disjoint(&dead),
                "seed {seed}: node {i} dials the dead"
            );
        }
    }
    recovered.values().copied().max().unwrap_or_default()
}

#[test]
fn thirty_idle_nodes_recover_within_the_idle_bound() {
    // No transfer: links are pinged every 5 s, so the pings alone (the registry here never
    // says dead) take up to 16 s; plus one hedge delay for each of the other dead nodes.
    let config = NeighbourConfig::default();
    let deadline = config.idle_loss_detection_bound() + config.dial_hedge_after * 2;
    for seed in 0..4 {
        let slowest = kill_and_recover(30, 3, seed, DeadDials::BlackHole, deadline, false);
        eprintln!("seed {seed}: slowest recovery {slowest:?}");
        assert!(
            slowest >= config.ping_timeout + config.idle_ping_interval * 2,
            "seed {seed}: {slowest:?} is faster than idle pings can tell"
        );
    }
}

#[test]
fn thirty_nodes_recover_within_two_seconds_of_three_kills() {
    // 2 x the 1 s ping timeout. Loss detection alone takes up to 1.75 s with the defaults.
    let deadline = Duration::from_secs(2);
    for seed in 0..8 {
        let slowest = kill_and_recover(30, 3, seed, DeadDials::Refused, deadline, true);
        eprintln!("seed {seed}: slowest recovery {slowest:?}");
        assert!(
            slowest <= deadline,
            "seed {seed}: slowest recovery {slowest:?}"
        );
        assert!(
            slowest >= Duration::from_millis(1_400),
            "seed {seed}: {slowest:?} is too fast"
        );
    }
}

#[test]
fn thirty_nodes_recover_when_dials_to_the_dead_hang() {
    // Detection (1.75 s), plus one hedge delay (0.5 s) for each of the two other dead nodes a
    // replacement dial can pick before a live one.
    let config = NeighbourConfig::default();
    let deadline = config.loss_detection_bound() + config.dial_hedge_after * 2;
    for seed in 0..8 {
        let slowest = kill_and_recover(30, 3, seed, DeadDials::BlackHole, deadline, true);
        eprintln!("seed {seed}: slowest recovery {slowest:?}");
    }
}

#[test]
fn small_fleet_is_a_full_mesh_and_stays_one_after_a_kill() {
    for seed in 0..4 {
        // 6 nodes, target 8: everyone connects to all 5 others, then to the 4 survivors.
        kill_and_recover(
            6,
            1,
            seed,
            DeadDials::BlackHole,
            Duration::from_secs(2),
            true,
        );
    }
}

// ----- duplicate connections: every interleaving of a simultaneous dial -----

/// Something a shell learns about a connection.
#[derive(Clone, Copy, Debug)]
enum Report {
    /// Its handshake completed here.
    Done,
    /// The other end closed it.
    Closed,
}

/// Two nodes that dial each other at once. Connection `c` is dialled by node `c`.
#[derive(Clone)]
struct Race {
    cores: [Neighbours; 2],
    ids: [NodeId; 2],
    /// The shell's accepted connection, per node.
    current: [Option<usize>; 2],
    /// `done[node][conn]`: the handshake completed at that node.
    done: [[bool; 2]; 2],
    /// `dropped[node][conn]`: that node closed or aborted it.
    dropped: [[bool; 2]; 2],
    /// What is still to be delivered, per (connection, node), in order.
    queues: BTreeMap<(usize, usize), VecDeque<Report>>,
    now: Instant,
}

impl Race {
    fn new(ids: [NodeId; 2]) -> Self {
        let now = Instant::now();
        let cores = [0, 1].map(|k| {
            let mut core = Neighbours::new(NeighbourConfig::default(), ids[k], k as u64);
            let peer = [RegistryEntry {
                record: NodeRecord {
                    progress_seq: 0,
                    id: ids[1 - k],
                    name: "peer".into(),
                    role: Role::Node,
                    addrs: vec![node_addr(1 - k)],
                    version: Version::new(1, 1),
                    progress: Vec::new(),
                    pull: false,
                    groups: Vec::new(),
                },
                status: Status::Alive,
                age_ms: 0,
            }];
            core.handle_registry(now, &peer);
            assert_eq!(
                core.poll_action(),
                Some(Action::Dial {
                    id: ids[1 - k],
                    addr: node_addr(1 - k)
                })
            );
            core
        });
        let mut queues = BTreeMap::new();
        for c in 0..2 {
            queues.insert((c, c), VecDeque::from([Report::Done]));
        }
        Self {
            cores,
            ids,
            current: [None; 2],
            done: [[false; 2]; 2],
            dropped: [[false; 2]; 2],
            queues,
            now,
        }
    }

    fn push(&mut self, c: usize, node: usize, report: Report) {
        self.queues.entry((c, node)).or_default().push_back(report);
    }

    /// Node `k` drops connection `c`; the other end hears of it.
    fn drop_conn(&mut self, k: usize, c: usize) {
        if !self.dropped[k][c] {
            self.dropped[k][c] = true;
            self.push(c, 1 - k, Report::Closed);
        }
    }

    fn deliver(&mut self, c: usize, k: usize) {
        let report = self.queues.get_mut(&(c, k)).unwrap().pop_front().unwrap();
        self.queues.retain(|_, q| !q.is_empty());
        let peer = self.ids[1 - k];
        match report {
            Report::Done if self.dropped[k][c] => {}
            Report::Done => {
                self.done[k][c] = true;
                let direction = if c == k {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                if c == k {
                    // The dialler finished; the acceptor's handshake completes later.
                    self.push(c, 1 - k, Report::Done);
                }
                if self.cores[k].handle_connected(self.now, peer, node_addr(1 - k), direction) {
                    if let Some(old) = self.current[k].replace(c) {
                        if old != c {
                            self.drop_conn(k, old);
                        }
                    }
                    // Abort our own dial if it is still in flight: nobody ever sees it.
                    if c != k && !self.done[k][k] {
                        self.dropped[k][k] = true;
                    }
                } else {
                    self.drop_conn(k, c);
                }
            }
            Report::Closed => {
                self.dropped[k][c] = true;
                if self.current[k] == Some(c) {
                    self.current[k] = None;
                    self.cores[k].handle_closed(self.now, peer);
                }
            }
        }
        self.drain(k);
    }

    fn drain(&mut self, k: usize) {
        while let Some(action) = self.cores[k].poll_action() {
            match action {
                Action::Dial { .. } => panic!("node {k} redialled during the race"),
                Action::Close { .. } => {
                    if let Some(c) = self.current[k].take() {
                        self.drop_conn(k, c);
                    }
                }
                Action::Ping { .. } => {}
            }
        }
    }
}

/// Explores every delivery order; returns how many complete orders there were.
fn explore(race: Race, keep: usize) -> usize {
    let keys: Vec<(usize, usize)> = race.queues.keys().copied().collect();
    if keys.is_empty() {
        for k in 0..2 {
            assert_eq!(
                race.current[k],
                Some(keep),
                "node {k} kept the wrong connection"
            );
            assert!(
                !race.dropped[k][keep],
                "node {k} dropped the kept connection"
            );
            let neighbours = race.cores[k].neighbours();
            assert_eq!(neighbours.len(), 1, "node {k}: {neighbours:?}");
            assert_eq!(neighbours[0].state, NeighbourState::Connected);
            let expected = if keep == k {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            assert_eq!(neighbours[0].direction, expected, "node {k}");
        }
        return 1;
    }
    keys.into_iter()
        .map(|(c, k)| {
            let mut next = race.clone();
            next.deliver(c, k);
            explore(next, keep)
        })
        .sum()
}

#[test]
fn simultaneous_dials_keep_the_same_connection_on_both_sides_in_every_order() {
    let (small, large) = (NodeId([1; 32]), NodeId([2; 32]));
    for ids in [[small, large], [large, small]] {
        let keep = if ids[0] < ids[1] { 0 } else { 1 };
        let orders = explore(Race::new(ids), keep);
        assert!(orders >= 6, "only {orders} orders explored");
    }
}

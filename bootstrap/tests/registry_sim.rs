//! Deterministic simulation of the registry core on a virtual clock.
//!
//! Three bootstraps and fifty nodes, no sockets and no real time: messages are events in a queue
//! keyed by virtual milliseconds, each lost with probability 10 % and otherwise delayed by
//! 5–80 ms. Nodes heartbeat every second to one bootstrap; a heartbeat not acknowledged within
//! 400 ms is sent again (with a new version), and after two unanswered sends in a row the node fails over to another
//! bootstrap. Bootstraps run push-pull anti-entropy with each fellow every 300 ms. The cores are
//! driven exactly as the shell drives them: inputs, then `poll_event`, then `poll_timeout`.
//!
//! Each seed runs four phases, checking at every step that no live node is ever reported dead:
//! (a) staggered start and convergence, (b) five nodes die and are detected, (c) a bootstrap is
//! killed and restarted empty and catches up in one round, (d) the dead are garbage-collected
//! everywhere and never come back. Set `REGISTRY_SIM_SEED=n` to run a single seed.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcast_bootstrap::registry::{Registry, RegistryConfig, RegistryEvent};
use swarmcast_proto::{Delta, Digest, NodeId, NodeRecord, Role, Status, Version};

/// Virtual milliseconds.
type Ms = u64;

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
const BOOTSTRAPS: usize = 3;
const NODES: usize = 50;
const KILLED_NODES: usize = 5;
const HEARTBEAT: Ms = 1000;
const ANTI_ENTROPY: Ms = 300;
const LOSS: f64 = 0.10;
const MIN_DELAY: Ms = 5;
const MAX_DELAY: Ms = 80;
const START_SPREAD: Ms = 2000;
/// A heartbeat not acknowledged within this long is sent again.
const ACK_TIMEOUT: Ms = 400;
/// A node fails over after this many sends in a row went unanswered.
const SWITCH_AFTER_UNACKED: u32 = 2;
/// Replicas may trail each other by this many heartbeats and still count as converged.
const LAG_BEATS: u64 = 1;

/// Phase (b): when the nodes die.
const KILL_NODES_AT: Ms = 8_000;
/// Phase (c): when a bootstrap dies, and for how long.
const KILL_BOOTSTRAP_AT: Ms = KILL_NODES_AT + 9_000;
const BOOTSTRAP_DOWNTIME: Ms = 2_000;

fn ms(d: Duration) -> Ms {
    u64::try_from(d.as_millis()).unwrap()
}

#[derive(Debug)]
enum Msg {
    Heartbeat {
        node: usize,
        request: u64,
        record: NodeRecord,
        sent_at: Ms,
    },
    Ack {
        request: u64,
    },
    Digest {
        from: usize,
        from_epoch: u32,
        digest: Digest,
    },
    Delta {
        from: usize,
        from_epoch: u32,
        delta: Delta,
    },
    Answer {
        delta: Delta,
    },
}

#[derive(Debug)]
enum Dest {
    /// A bootstrap process: `epoch` changes when it restarts, which breaks its connections.
    Boot {
        boot: usize,
        epoch: u32,
    },
    Node(usize),
}

#[derive(Debug)]
enum Event {
    Beat(usize),
    AckTimeout { node: usize, request: u64 },
    Tick { boot: usize, epoch: u32 },
    Deliver { to: Dest, msg: Msg },
}

#[derive(Debug)]
struct Boot {
    reg: Registry,
    up: bool,
    epoch: u32,
}

#[derive(Debug)]
struct SimNode {
    record: NodeRecord,
    boot: usize,
    alive: bool,
    /// Sends in a row that went unanswered.
    unacked: u32,
    /// The request whose acknowledgement the node is waiting for.
    awaiting: Option<u64>,
    /// Send time of the newest heartbeat some bootstrap received.
    last_delivered: Option<Ms>,
}

#[derive(Debug)]
struct Sim {
    seed: u64,
    rng: StdRng,
    config: RegistryConfig,
    base: Instant,
    now: Ms,
    seq: u64,
    queue: BTreeMap<(Ms, u64), Event>,
    boots: Vec<Boot>,
    nodes: Vec<SimNode>,
    index: BTreeMap<NodeId, usize>,
    /// First instant each bootstrap reported each dead node `Dead`.
    dead_seen: BTreeMap<(usize, usize), Ms>,
    /// When each bootstrap dropped each dead node.
    dropped_seen: BTreeMap<(usize, usize), Ms>,
    suspect_since: BTreeMap<(usize, usize), Ms>,
    longest_suspect: Ms,
    steps: u64,
    sent: u64,
    lost: u64,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        // The default failure detector (suspect 3 s, dead 6 s); GC after 10 s instead of 60 s
        // only to keep the virtual run short.
        let config = RegistryConfig {
            gc_after: Duration::from_secs(10),
            ..RegistryConfig::default()
        };
        let nodes: Vec<SimNode> = (0..NODES)
            .map(|i| SimNode {
                record: NodeRecord {
                    progress_seq: 0,
                    id: NodeId(rng.random()),
                    name: format!("node-{i:02}"),
                    role: Role::Node,
                    addrs: vec![SocketAddr::from(([10, 0, 0, 1], 7000 + i as u16))],
                    version: Version::new(1, 0),
                    progress: Vec::new(),
                    pull: false,
                    groups: Vec::new(),
                },
                boot: i % BOOTSTRAPS,
                alive: true,
                unacked: 0,
                awaiting: None,
                last_delivered: None,
            })
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.record.id, i))
            .collect();
        let boots = (0..BOOTSTRAPS)
            .map(|_| Boot {
                reg: Registry::new(config.clone()),
                up: true,
                epoch: 0,
            })
            .collect();
        let mut sim = Self {
            seed,
            rng,
            config,
            // The only clock read: an origin for virtual instants.
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            boots,
            nodes,
            index,
            dead_seen: BTreeMap::new(),
            dropped_seen: BTreeMap::new(),
            suspect_since: BTreeMap::new(),
            longest_suspect: 0,
            steps: 0,
            sent: 0,
            lost: 0,
        };
        for boot in 0..BOOTSTRAPS {
            let phase = sim.rng.random_range(0..ANTI_ENTROPY);
            sim.schedule(phase, Event::Tick { boot, epoch: 0 });
        }
        sim
    }

    fn instant(&self, at: Ms) -> Instant {
        self.base + Duration::from_millis(at)
    }

    fn schedule(&mut self, at: Ms, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Send over the lossy network.
    fn send(&mut self, to: Dest, msg: Msg) {
        self.sent += 1;
        if self.rng.random_bool(LOSS) {
            self.lost += 1;
            return;
        }
        let at = self.now + self.rng.random_range(MIN_DELAY..=MAX_DELAY);
        self.schedule(at, Event::Deliver { to, msg });
    }

    fn to_boot(&self, boot: usize) -> Dest {
        Dest::Boot {
            boot,
            epoch: self.boots[boot].epoch,
        }
    }

    /// Start every node at a random instant in `[0, START_SPREAD]`; returns the last start.
    fn start_nodes(&mut self) -> Ms {
        let mut last = 0;
        for i in 0..NODES {
            let at = self.rng.random_range(0..=START_SPREAD);
            last = last.max(at);
            self.schedule(at, Event::Beat(i));
        }
        last
    }

    fn process(&mut self, event: Event) {
        let now = self.instant(self.now);
        match event {
            Event::Beat(i) => {
                if !self.nodes[i].alive {
                    return;
                }
                self.send_heartbeat(i);
                self.schedule(self.now + HEARTBEAT, Event::Beat(i));
            }
            Event::AckTimeout { node: i, request } => {
                let node = &mut self.nodes[i];
                if !node.alive || node.awaiting != Some(request) {
                    return;
                }
                node.unacked += 1;
                if node.unacked >= SWITCH_AFTER_UNACKED {
                    let other = self.rng.random_range(1..BOOTSTRAPS);
                    let node = &mut self.nodes[i];
                    node.boot = (node.boot + other) % BOOTSTRAPS;
                    node.unacked = 0;
                }
                self.send_heartbeat(i);
            }
            Event::Tick { boot, epoch } => {
                if !self.boots[boot].up || self.boots[boot].epoch != epoch {
                    return;
                }
                for fellow in (0..BOOTSTRAPS).filter(|f| *f != boot) {
                    let digest = self.boots[boot].reg.digest();
                    let to = self.to_boot(fellow);
                    self.send(
                        to,
                        Msg::Digest {
                            from: boot,
                            from_epoch: epoch,
                            digest,
                        },
                    );
                }
                self.schedule(self.now + ANTI_ENTROPY, Event::Tick { boot, epoch });
            }
            Event::Deliver {
                to: Dest::Node(i),
                msg: Msg::Ack { request },
            } => {
                let node = &mut self.nodes[i];
                if node.awaiting == Some(request) {
                    node.awaiting = None;
                    node.unacked = 0;
                }
            }
            Event::Deliver {
                to: Dest::Node(_), ..
            } => unreachable!("nodes only receive acks"),
            Event::Deliver {
                to: Dest::Boot { boot, epoch },
                msg,
            } => {
                if !self.boots[boot].up || self.boots[boot].epoch != epoch {
                    return; // connection reset
                }
                let reg = &mut self.boots[boot].reg;
                match msg {
                    Msg::Heartbeat {
                        node,
                        request,
                        record,
                        sent_at,
                    } => {
                        reg.observe(now, record);
                        let last = &mut self.nodes[node].last_delivered;
                        *last = Some(last.map_or(sent_at, |l| l.max(sent_at)));
                        self.send(Dest::Node(node), Msg::Ack { request });
                    }
                    Msg::Digest {
                        from,
                        from_epoch,
                        digest,
                    } => {
                        let delta = reg.delta_for(now, &digest);
                        let to = Dest::Boot {
                            boot: from,
                            epoch: from_epoch,
                        };
                        self.send(
                            to,
                            Msg::Delta {
                                from: boot,
                                from_epoch: epoch,
                                delta,
                            },
                        );
                    }
                    Msg::Delta {
                        from,
                        from_epoch,
                        delta,
                    } => {
                        reg.apply_delta(now, &delta);
                        let answer =
                            reg.answer_wants(now, &delta.want_nodes, &delta.want_broadcasts);
                        if !answer.nodes.is_empty() || !answer.broadcasts.is_empty() {
                            let to = Dest::Boot {
                                boot: from,
                                epoch: from_epoch,
                            };
                            self.send(to, Msg::Answer { delta: answer });
                        }
                    }
                    Msg::Answer { delta } => {
                        reg.apply_delta(now, &delta);
                    }
                    Msg::Ack { .. } => unreachable!("bootstraps receive no acks"),
                }
            }
        }
    }

    /// Send node `i`'s record with a new version to its bootstrap and await the acknowledgement.
    ///
    /// Retries bump the version too: anti-entropy carries only versions, so a fresher sighting of
    /// the same version would not reach the fellows.
    fn send_heartbeat(&mut self, i: usize) {
        self.seq += 1;
        let request = self.seq;
        let node = &mut self.nodes[i];
        node.record.version.heartbeat += 1;
        node.awaiting = Some(request);
        let msg = Msg::Heartbeat {
            node: i,
            request,
            record: node.record.clone(),
            sent_at: self.now,
        };
        let boot = node.boot;
        let to = self.to_boot(boot);
        self.send(to, msg);
        self.schedule(
            self.now + ACK_TIMEOUT,
            Event::AckTimeout { node: i, request },
        );
    }

    /// The next instant a core wants `handle_timeout`, rounded up to a virtual millisecond.
    fn next_timeout(&self) -> Option<Ms> {
        self.boots
            .iter()
            .filter(|b| b.up)
            .filter_map(|b| b.reg.poll_timeout())
            .map(|t| {
                let d = t.saturating_duration_since(self.base);
                ms(d) + u64::from(d.subsec_nanos() % 1_000_000 != 0)
            })
            .min()
    }

    /// Advance to the next event or timeout, if it is not after `end`. Returns whether it did.
    fn step(&mut self, end: Ms) -> bool {
        let next_event = self.queue.first_key_value().map(|(k, _)| k.0);
        let Some(at) = [next_event, self.next_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            self.now = end;
            return false;
        };
        if at > end {
            self.now = end;
            return false;
        }
        self.now = self.now.max(at);
        self.steps += 1;
        let now = self.instant(self.now);
        for boot in self.boots.iter_mut().filter(|b| b.up) {
            if boot.reg.poll_timeout().is_some_and(|t| t <= now) {
                boot.reg.handle_timeout(now);
            }
        }
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let event = entry.remove();
            self.process(event);
        }
        self.drain_events();
        self.check_invariants();
        true
    }

    /// Run until `end`, or until `done` holds after a step; returns when it held.
    fn run_until(&mut self, end: Ms, mut done: impl FnMut(&Self) -> bool) -> Option<Ms> {
        while self.step(end) {
            if done(self) {
                return Some(self.now);
            }
        }
        None
    }

    fn drain_events(&mut self) {
        for b in 0..BOOTSTRAPS {
            while let Some(event) = self.boots[b].reg.poll_event() {
                let (seed, now) = (self.seed, self.now);
                match event {
                    RegistryEvent::StatusChanged { id, from, to, .. } => {
                        let i = self.index[&id];
                        let name = &self.nodes[i].record.name;
                        assert!(
                            !(self.nodes[i].alive && to == Status::Dead),
                            "seed {seed}: bootstrap {b} reported live {name} dead at {now} ms"
                        );
                        if to == Status::Suspect {
                            self.suspect_since.insert((b, i), now);
                        }
                        if from == Status::Suspect {
                            if let Some(since) = self.suspect_since.remove(&(b, i)) {
                                if self.nodes[i].alive {
                                    self.longest_suspect = self.longest_suspect.max(now - since);
                                }
                            }
                        }
                    }
                    RegistryEvent::Dropped { id, .. } => {
                        let i = self.index[&id];
                        let name = &self.nodes[i].record.name;
                        assert!(
                            !self.nodes[i].alive,
                            "seed {seed}: bootstrap {b} dropped live {name} at {now} ms"
                        );
                        self.dropped_seen.insert((b, i), now);
                    }
                    RegistryEvent::Added { id, .. } => {
                        let i = self.index[&id];
                        let name = &self.nodes[i].record.name;
                        assert!(
                            !self.dropped_seen.contains_key(&(b, i)),
                            "seed {seed}: bootstrap {b} resurrected {name} at {now} ms"
                        );
                    }
                    _ => {}
                }
            }
        }
    }

    /// At every step: no live node is dead anywhere; note when dead nodes are first seen dead.
    fn check_invariants(&mut self) {
        let now = self.instant(self.now);
        for (b, boot) in self.boots.iter().enumerate().filter(|(_, b)| b.up) {
            for (i, node) in self.nodes.iter().enumerate() {
                let status = boot.reg.status(now, &node.record.id);
                if node.alive {
                    assert_ne!(
                        status,
                        Some(Status::Dead),
                        "seed {}: bootstrap {b} has live {} dead at {} ms",
                        self.seed,
                        node.record.name,
                        self.now
                    );
                } else if status == Some(Status::Dead) {
                    self.dead_seen.entry((b, i)).or_insert(self.now);
                }
            }
        }
    }

    /// Node versions as bootstrap `b` sees them.
    fn versions(&self, b: usize) -> BTreeMap<NodeId, Version> {
        let view = self.boots[b].reg.view(self.instant(self.now));
        view.nodes
            .into_iter()
            .map(|e| (e.record.id, e.record.version))
            .collect()
    }

    /// Every live bootstrap lists the same nodes, at versions within `LAG_BEATS` of each other.
    fn views_agree(&self) -> bool {
        let views: Vec<_> = (0..BOOTSTRAPS)
            .filter(|b| self.boots[*b].up)
            .map(|b| self.versions(b))
            .collect();
        views.windows(2).all(|w| {
            w[0].len() == w[1].len()
                && w[0].iter().zip(&w[1]).all(|((ia, va), (ib, vb))| {
                    ia == ib
                        && va.incarnation == vb.incarnation
                        && va.heartbeat.abs_diff(vb.heartbeat) <= LAG_BEATS
                })
        })
    }

    fn all_alive_everywhere(&self) -> bool {
        let now = self.instant(self.now);
        self.boots.iter().filter(|b| b.up).all(|boot| {
            self.nodes
                .iter()
                .all(|n| boot.reg.status(now, &n.record.id) == Some(Status::Alive))
        })
    }

    fn status_everywhere(&self, nodes: &[usize], status: Option<Status>) -> bool {
        let now = self.instant(self.now);
        self.boots.iter().filter(|b| b.up).all(|boot| {
            nodes
                .iter()
                .all(|i| boot.reg.status(now, &self.nodes[*i].record.id) == status)
        })
    }
}

/// What one seed measured, in virtual milliseconds.
#[derive(Debug)]
struct Report {
    seed: u64,
    /// (a) From the last node start to all 50 alive everywhere with agreeing views.
    converged_after: Ms,
    /// (b) Detection of the dead by every bootstrap, relative to the kill (min, max).
    detected_after: (Ms, Ms),
    /// (b) The same, relative to each node's last heartbeat that got through (min).
    detected_after_last_beat: Ms,
    /// (c) From the restart of an emptied bootstrap to views agreeing.
    restart_caught_up_after: Ms,
    /// (d) Garbage collection of the dead by every bootstrap, relative to the kill (min, max).
    dropped_after: (Ms, Ms),
    /// The longest stretch any bootstrap held a live node suspect.
    longest_suspect: Ms,
    lost: u64,
    sent: u64,
    steps: u64,
}

fn run_seed(seed: u64) -> Report {
    let mut sim = Sim::new(seed);
    let dead_after = ms(sim.config.dead_after);
    let drop_after = ms(sim.config.drop_after());

    // (a) Staggered start: all alive everywhere, views agree, within 3 s of the last start.
    let last_start = sim.start_nodes();
    let converged = sim
        .run_until(last_start + 10_000, |s| {
            s.now >= last_start && s.all_alive_everywhere() && s.views_agree()
        })
        .unwrap_or_else(|| panic!("seed {seed}: never converged"));
    let converged_after = converged - last_start;
    assert!(
        converged_after <= 3_000,
        "seed {seed}: converged {converged_after} ms after the last start"
    );

    // (b) Five nodes stop beating; every bootstrap detects them within dead_after + 1 s.
    sim.run_until(KILL_NODES_AT, |_| false);
    let mut killed: Vec<usize> = Vec::new();
    while killed.len() < KILLED_NODES {
        let i = sim.rng.random_range(0..NODES);
        if !killed.contains(&i) {
            killed.push(i);
            sim.nodes[i].alive = false;
        }
    }
    sim.run_until(KILL_NODES_AT + dead_after + 2_000, |s| {
        s.status_everywhere(&killed, Some(Status::Dead))
    })
    .unwrap_or_else(|| panic!("seed {seed}: the dead were not all detected"));
    let mut detected = Vec::new();
    let mut after_last_beat = Ms::MAX;
    for b in 0..BOOTSTRAPS {
        for &i in &killed {
            let at = sim.dead_seen[&(b, i)];
            let last_beat = sim.nodes[i].last_delivered.unwrap();
            assert!(
                at >= last_beat + dead_after,
                "seed {seed}: bootstrap {b} declared node {i} dead {} ms after its last heartbeat",
                at.saturating_sub(last_beat)
            );
            after_last_beat = after_last_beat.min(at - last_beat);
            detected.push(at - KILL_NODES_AT);
        }
    }
    let detected_after = (
        *detected.iter().min().unwrap(),
        *detected.iter().max().unwrap(),
    );
    assert!(
        detected_after.1 <= dead_after + 1_000,
        "seed {seed}: detection took {} ms",
        detected_after.1
    );
    // No earlier than dead_after minus one heartbeat, unless the last beats were lost: the
    // precise bound (dead_after after the last beat that got through) is asserted above.
    assert!(
        detected_after.0 + 2 * HEARTBEAT >= dead_after,
        "seed {seed}: detected after only {} ms",
        detected_after.0
    );

    // (c) A bootstrap dies, its nodes fail over, and it comes back with an empty registry.
    sim.run_until(KILL_BOOTSTRAP_AT, |_| false);
    let victim = sim.rng.random_range(0..BOOTSTRAPS);
    sim.boots[victim].up = false;
    sim.boots[victim].epoch += 1;
    sim.run_until(KILL_BOOTSTRAP_AT + BOOTSTRAP_DOWNTIME, |_| false);
    let restart = sim.now;
    let epoch = sim.boots[victim].epoch + 1;
    sim.boots[victim] = Boot {
        reg: Registry::new(sim.config.clone()),
        up: true,
        epoch,
    };
    sim.suspect_since.retain(|(b, _), _| *b != victim);
    let phase = sim.rng.random_range(0..ANTI_ENTROPY);
    sim.schedule(
        restart + phase,
        Event::Tick {
            boot: victim,
            epoch,
        },
    );
    assert!(sim.boots[victim].reg.is_empty());
    let caught_up = sim
        .run_until(restart + 5_000, |s| {
            !s.boots[victim].reg.is_empty()
                && s.views_agree()
                && s.status_everywhere(&killed, Some(Status::Dead))
        })
        .unwrap_or_else(|| panic!("seed {seed}: restarted bootstrap never caught up"));
    let restart_caught_up_after = caught_up - restart;
    assert!(
        restart_caught_up_after <= 2 * ANTI_ENTROPY + MAX_DELAY,
        "seed {seed}: restarted bootstrap caught up after {restart_caught_up_after} ms"
    );

    // (d) The dead are dropped everywhere once past drop_after, and never come back.
    sim.run_until(KILL_NODES_AT + drop_after + 3_000, |_| false);
    assert!(sim.status_everywhere(&killed, None));
    let mut dropped = Vec::new();
    for b in 0..BOOTSTRAPS {
        for &i in &killed {
            let at = *sim
                .dropped_seen
                .get(&(b, i))
                .unwrap_or_else(|| panic!("seed {seed}: bootstrap {b} never dropped node {i}"));
            let last_beat = sim.nodes[i].last_delivered.unwrap();
            assert!(
                at > last_beat + drop_after,
                "seed {seed}: dropped too early"
            );
            dropped.push(at - KILL_NODES_AT);
        }
        assert_eq!(sim.boots[b].reg.len(), NODES - KILLED_NODES, "seed {seed}");
    }
    let dropped_after = (
        *dropped.iter().min().unwrap(),
        *dropped.iter().max().unwrap(),
    );
    assert!(
        dropped_after.1 <= drop_after + 1_000,
        "seed {seed}: dropped after {} ms",
        dropped_after.1
    );
    let end = sim.now;
    sim.run_until(end + 2_000, |s| s.views_agree())
        .unwrap_or_else(|| panic!("seed {seed}: views diverged at the end"));

    Report {
        seed,
        converged_after,
        detected_after,
        detected_after_last_beat: after_last_beat,
        restart_caught_up_after,
        dropped_after,
        longest_suspect: sim.longest_suspect,
        lost: sim.lost,
        sent: sim.sent,
        steps: sim.steps,
    }
}

#[test]
fn three_bootstraps_fifty_nodes_lossy_network() {
    let seeds: Vec<u64> = match std::env::var("REGISTRY_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("REGISTRY_SIM_SEED is a number")],
        Err(_) => SEEDS.to_vec(),
    };
    // Seeds are independent: run them side by side, report in order.
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| scope.spawn(move || run_seed(seed)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for r in &reports {
        eprintln!(
            "seed {}: converged {} ms after last start; dead detected {}..{} ms after kill \
             (>= {} ms after last delivered beat); restarted bootstrap whole after {} ms; \
             dead dropped {}..{} ms after kill; longest live suspect {} ms; \
             {} of {} messages lost; {} steps",
            r.seed,
            r.converged_after,
            r.detected_after.0,
            r.detected_after.1,
            r.detected_after_last_beat,
            r.restart_caught_up_after,
            r.dropped_after.0,
            r.dropped_after.1,
            r.longest_suspect,
            r.lost,
            r.sent,
            r.steps
        );
    }
}

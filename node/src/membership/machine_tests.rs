//! The membership core on a virtual clock, against a model of the seeds.

use std::collections::BTreeSet;

use swarmcast_proto::{BroadcastRecord, NodeId, Progress};

use super::*;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 7000))
}

const ME: u8 = 99;

fn last_octet(a: &SocketAddr) -> u8 {
    match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets()[3],
        std::net::IpAddr::V6(_) => unreachable!("test addresses are IPv4"),
    }
}

/// The seeds as the core's shell would see them: which answer dials, registrations and beats.
#[derive(Debug, Default)]
struct World {
    reachable: BTreeSet<SocketAddr>,
    refuse_register: BTreeSet<SocketAddr>,
    fail_beat: BTreeSet<SocketAddr>,
    /// Closed by the core; their probers reconnect before the next timeout.
    closed: BTreeSet<SocketAddr>,
    /// Bootstraps a registration names.
    named: Vec<SocketAddr>,
    awaiting_registry: bool,
}

/// A core, its clock and what it did.
struct Sim {
    core: MembershipCore<String>,
    start: Instant,
    now: Instant,
    world: World,
    /// Every action but `Probe`, with its time since the start.
    log: Vec<(Duration, Action<String>)>,
    probed: Vec<SocketAddr>,
}

impl Sim {
    fn new(config: CoreConfig, seeds: &[u8], world: World) -> Self {
        let start = Instant::now();
        let seeds: Vec<SocketAddr> = seeds.iter().map(|&n| addr(n)).collect();
        let core = MembershipCore::new(config, addr(ME), &seeds, start);
        let mut sim = Self {
            core,
            start,
            now: start,
            world,
            log: Vec::new(),
            probed: Vec::new(),
        };
        sim.drain();
        sim
    }

    fn at(&self) -> Duration {
        self.now - self.start
    }

    /// Carry out every action, as the shell would, answering from the world.
    fn drain(&mut self) {
        while let Some(a) = self.core.poll_action() {
            let now = self.now;
            match &a {
                Action::Probe(s) => {
                    self.probed.push(*s);
                    if self.world.reachable.contains(s) {
                        self.core.handle_seed_up(now, *s);
                    } else {
                        self.core
                            .handle_seed_failed(now, *s, format!("{s} unreachable"));
                    }
                    continue;
                }
                Action::Register(s) if self.world.refuse_register.contains(s) => {
                    self.core
                        .handle_register_failed(now, *s, format!("{s} refused"));
                }
                Action::Register(s) => {
                    let named = self.world.named.clone();
                    self.core.handle_registered(now, *s, named);
                }
                Action::Beat(s) if self.world.fail_beat.contains(s) => {
                    self.core
                        .handle_beat_failed(now, *s, format!("{s} timed out"));
                }
                Action::Beat(s) => {
                    let awaiting = self.world.awaiting_registry;
                    self.core.handle_beat_ok(now, *s, [], awaiting);
                }
                Action::Close(s) => {
                    self.world.closed.insert(*s);
                }
                Action::WarnUnreachable | Action::GiveUp { .. } => {}
            }
            let at = self.at();
            self.log.push((at, a));
        }
    }

    /// Run the timer until `until` (since the start) or until the core gave up.
    fn run_until(&mut self, until: Duration) {
        while let Some(t) = self.core.poll_timeout() {
            if t > self.start + until {
                break;
            }
            self.now = self.now.max(t);
            for s in std::mem::take(&mut self.world.closed) {
                if self.world.reachable.contains(&s) {
                    self.core.handle_seed_up(self.now, s);
                }
            }
            self.core.handle_timeout(self.now);
            self.drain();
        }
        self.now = self.now.max(self.start + until);
    }

    /// The exchanges (registrations and beats) in order.
    fn exchanges(&self) -> Vec<String> {
        (self.log.iter())
            .filter_map(|(_, a)| match a {
                Action::Register(s) => Some(format!("register .{}", last_octet(s))),
                Action::Beat(s) => Some(format!("beat .{}", last_octet(s))),
                _ => None,
            })
            .collect()
    }

    /// When each beat went out, in ms since the start.
    fn beat_times(&self) -> Vec<u128> {
        (self.log.iter())
            .filter(|(_, a)| matches!(a, Action::Beat(_)))
            .map(|(t, _)| t.as_millis())
            .collect()
    }

    fn count(&self, f: impl Fn(&Action<String>) -> bool) -> usize {
        self.log.iter().filter(|(_, a)| f(a)).count()
    }
}

fn reachable(seeds: &[u8]) -> World {
    World {
        reachable: seeds.iter().map(|&n| addr(n)).collect(),
        ..World::default()
    }
}

fn config() -> CoreConfig {
    CoreConfig::new(Duration::from_secs(1), None)
}

#[test]
fn seeds_are_kept_in_order_once_each_never_this_node() {
    let world = World {
        named: vec![addr(3), addr(1), addr(ME), addr(4)],
        ..reachable(&[1, 2])
    };
    let mut sim = Sim::new(config(), &[1, 2, 1, ME], world);
    assert_eq!(sim.probed, vec![addr(1), addr(2)]);
    sim.run_until(Duration::ZERO);
    assert_eq!(
        sim.probed,
        vec![addr(1), addr(2), addr(3), addr(4)],
        "learnt"
    );
    let order: Vec<SocketAddr> = sim.core.seeds().iter().map(|s| s.addr).collect();
    assert_eq!(order, sim.probed);
}

#[test]
fn registration_goes_through_the_first_live_seed_and_fails_over_in_order() {
    // Seed 1 does not answer, 2 refuses the registration, 3 takes it.
    let world = World {
        refuse_register: [addr(2)].into(),
        ..reachable(&[2, 3, 4])
    };
    let mut sim = Sim::new(config(), &[1, 2, 3, 4], world);
    sim.run_until(Duration::ZERO);
    assert_eq!(sim.exchanges(), ["register .2", "register .3", "beat .3"]);
    assert_eq!(sim.core.current(), Some(addr(3)));
    assert!(sim.core.registered());
    let closed = sim.count(|a| *a == Action::Close(addr(2)));
    assert_eq!(closed, 1, "a seed that refused is closed");
    // Bootstrap 3 stops answering: the same beat fails over to the next live seed in order (2,
    // reconnected meanwhile, comes first).
    sim.world.fail_beat.insert(addr(3));
    sim.world.refuse_register.clear();
    sim.log.clear();
    sim.run_until(Duration::from_secs(1));
    assert_eq!(sim.exchanges(), ["beat .3", "register .2", "beat .2"]);
    assert_eq!(
        sim.beat_times(),
        [1000, 1000],
        "at once, not a period later"
    );
    assert_eq!(sim.core.current(), Some(addr(2)));
    let last_error = &sim.core.seeds()[2].last_error;
    assert_eq!(last_error.as_deref(), Some("127.0.0.3:7000 timed out"));
}

#[test]
fn a_beat_tries_each_bootstrap_once_then_retries_soon() {
    let world = World {
        fail_beat: [addr(1), addr(2)].into(),
        ..reachable(&[1, 2])
    };
    let mut sim = Sim::new(config(), &[1, 2], world);
    sim.run_until(Duration::ZERO);
    assert_eq!(
        sim.exchanges(),
        ["register .1", "beat .1", "register .2", "beat .2"]
    );
    // Failed: retried after 100 ms (the period is 1 s), not on period.
    assert_eq!(
        sim.core.poll_timeout(),
        Some(sim.start + Duration::from_millis(100))
    );
}

#[test]
fn the_join_timeout_gives_up_only_while_unregistered() {
    let config = CoreConfig::new(Duration::from_secs(1), Some(Duration::from_secs(3)));
    let mut sim = Sim::new(config.clone(), &[1, 2], World::default());
    sim.run_until(Duration::from_secs(10));
    let gave_up: Vec<_> = (sim.log.iter())
        .filter(|(_, a)| matches!(a, Action::GiveUp { .. }))
        .collect();
    assert_eq!(gave_up.len(), 1, "{:?}", sim.log);
    let (at, Action::GiveUp { after, last_errors }) = gave_up[0] else {
        unreachable!("filtered")
    };
    assert_eq!(*after, Duration::from_secs(3));
    assert_eq!(at.as_millis(), 3000, "the first retry at or past the limit");
    let seeds: Vec<_> = last_errors.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        seeds,
        [addr(1), addr(2)],
        "each seed's error, in seed order"
    );
    assert_eq!(sim.core.poll_timeout(), None, "it stopped");

    // Registered once, then every bootstrap lost: it keeps retrying.
    let mut sim = Sim::new(config, &[1], reachable(&[1]));
    sim.run_until(Duration::from_secs(1));
    sim.world.fail_beat.insert(addr(1));
    sim.run_until(Duration::from_secs(10));
    assert_eq!(sim.count(|a| matches!(a, Action::GiveUp { .. })), 0);
    assert!(sim.core.poll_timeout().is_some());
}

#[test]
fn no_bootstrap_reachable_is_warned_of_after_2_s_then_every_5_s() {
    let mut sim = Sim::new(config(), &[1], World::default());
    sim.run_until(Duration::from_secs(20));
    let warned: Vec<u128> = (sim.log.iter())
        .filter(|(_, a)| *a == Action::WarnUnreachable)
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(warned, [2000, 7000, 12000, 17000]);
    // Once a beat succeeds, a new outage waits its 2 s again.
    sim.world.reachable.insert(addr(1));
    sim.core.handle_seed_up(sim.now, addr(1));
    sim.run_until(Duration::from_secs(21));
    sim.world.fail_beat.insert(addr(1));
    sim.log.clear();
    sim.run_until(Duration::from_secs(30));
    let warned: Vec<u128> = (sim.log.iter())
        .filter(|(_, a)| *a == Action::WarnUnreachable)
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(warned, [23100, 28100], "failing since 21.1 s");
}

#[test]
fn beats_follow_the_period_and_beat_at_once_after_a_stall() {
    let mut sim = Sim::new(config(), &[1], reachable(&[1]));
    sim.run_until(Duration::from_millis(3500));
    assert_eq!(sim.beat_times(), [0, 1000, 2000, 3000]);
    // The beat due at 4 s stalls for 2.2 s (a slow bootstrap): the next goes at once, then on
    // period from there.
    sim.now = sim.start + Duration::from_secs(4);
    sim.core.handle_timeout(sim.now);
    assert_eq!(sim.core.poll_action(), Some(Action::Beat(addr(1))));
    assert_eq!(
        sim.core.poll_timeout(),
        None,
        "no timer while a beat is outstanding"
    );
    sim.now = sim.start + Duration::from_millis(6200);
    sim.core.handle_beat_ok(sim.now, addr(1), [], false);
    assert_eq!(sim.core.poll_timeout(), Some(sim.now));
    sim.run_until(Duration::from_millis(7500));
    assert_eq!(sim.beat_times(), [0, 1000, 2000, 3000, 6200, 7200]);
}

fn report(held: u64, published: bool) -> DataReport {
    DataReport {
        progress: vec![Progress {
            broadcast: BroadcastId([1; 32]),
            held,
            total: 4,
            complete: held == 4,
            failed: None,
        }],
        records: (published.then(|| BroadcastRecord {
            id: BroadcastId([2; 32]),
            name: "d".into(),
            origin: NodeId([2; 32]),
            size: 4,
            chunks: 4,
            state: BroadcastState::Active,
            version: 0,
            seq: 0,
            published_ms: 0,
            audience: None,
        }))
        .into_iter()
        .collect(),
        uploaded_to: Default::default(),
        awaiting_registry: false,
        restricted: Vec::new(),
        prioritized: Vec::new(),
    }
}

#[test]
fn news_nudges_a_beat_50_ms_after_the_last_and_keeps_the_period() {
    let mut sim = Sim::new(config(), &[1], reachable(&[1]));
    sim.run_until(Duration::from_millis(10));
    // Mere progress: nothing.
    sim.core.handle_report(sim.now, &report(2, false));
    sim.run_until(Duration::from_millis(500));
    assert_eq!(sim.beat_times(), [0]);
    // A completion: a beat at once (well past 50 ms since the last).
    sim.core.handle_report(sim.now, &report(4, false));
    // A publication right after: 50 ms after that beat.
    sim.run_until(Duration::from_millis(510));
    sim.core.handle_report(sim.now, &report(4, true));
    // Asked again with no news: nothing more.
    sim.core.handle_report(sim.now, &report(4, true));
    sim.run_until(Duration::from_millis(2100));
    assert_eq!(sim.beat_times(), [0, 500, 550, 1000, 2000]);
}

#[test]
fn a_beat_answers_every_nudge_asked_before_it_started() {
    let mut sim = Sim::new(config(), &[1], reachable(&[1]));
    // The report at start (a restarted origin's records) asks for a beat: the first one, due
    // at once, is it.
    sim.core.handle_report(sim.now, &report(4, true));
    sim.run_until(Duration::from_millis(900));
    assert_eq!(sim.beat_times(), [0]);
    // A nudge while the period's beat is due: one beat, on period.
    sim.now = sim.start + Duration::from_millis(1000);
    sim.core.handle_report(sim.now, &report(1, false));
    sim.core.handle_report(sim.now, &report(4, false));
    sim.run_until(Duration::from_millis(1900));
    assert_eq!(sim.beat_times(), [0, 1000]);
}

#[test]
fn reading_an_unsettled_fleet_nudges_a_settled_one_does_not() {
    let mut sim = Sim::new(config(), &[1], reachable(&[1]));
    sim.run_until(Duration::from_millis(300));
    let mut reads = FleetReads::default();
    reads.settled += 1;
    sim.core.handle_fleet_reads(sim.now, reads);
    sim.run_until(Duration::from_millis(400));
    assert_eq!(sim.beat_times(), [0]);
    // `--wait` polls an unfinished broadcast every 25 ms: a beat every 50 ms at most.
    for _ in 0..8 {
        reads.unsettled += 1;
        sim.core.handle_fleet_reads(sim.now, reads);
        let t = sim.at() + Duration::from_millis(25);
        sim.run_until(t);
    }
    assert_eq!(sim.beat_times(), [0, 400, 450, 500, 550, 600]);
}

#[test]
fn awaiting_the_registry_beats_every_100_ms_at_most_30_in_a_row() {
    let world = World {
        awaiting_registry: true,
        ..reachable(&[1])
    };
    let mut sim = Sim::new(CoreConfig::new(Duration::from_secs(10), None), &[1], world);
    sim.run_until(Duration::from_secs(9));
    let beats = sim.beat_times();
    assert_eq!(beats.len(), 31, "the first and 30 more: {beats:?}");
    assert_eq!(&beats[..3], [0, 100, 200]);
    assert_eq!(beats[30], 3000);
    sim.run_until(Duration::from_secs(10));
    assert_eq!(sim.beat_times().len(), 32, "then on period");
}

#[test]
fn backoff_doubles_from_200_ms_to_5_s_with_jitter_up_to_as_much_again() {
    let config = config();
    let mut b = Backoff::new(&config, 7);
    let bases = [200, 400, 800, 1600, 3200, 5000, 5000, 5000];
    let waits: Vec<Duration> = bases.iter().map(|_| b.handle_failure()).collect();
    for (wait, base) in waits.iter().zip(bases) {
        let base = Duration::from_millis(base);
        assert!(*wait >= base && *wait < base * 2, "{wait:?} for {base:?}");
    }
    assert_eq!(b.failures(), 8);
    let jittered = waits
        .iter()
        .zip(bases)
        .any(|(w, b)| w.as_millis() != u128::from(b));
    assert!(jittered, "{waits:?}");
    // One seed, one sequence.
    let mut again = Backoff::new(&config, 7);
    let same: Vec<Duration> = bases.iter().map(|_| again.handle_failure()).collect();
    assert_eq!(same, waits);
    // A connection that came up starts over.
    b.handle_success();
    assert!(b.handle_failure() < Duration::from_millis(400));
    // However long it fails.
    for _ in 0..100 {
        assert!(b.handle_failure() < Duration::from_secs(10));
    }
}

#[test]
fn a_settlement_or_a_publication_is_news_mere_progress_is_not() {
    let news = |old: &DataReport, new: &DataReport| Seen::of(old).news(&Seen::of(new));
    assert!(!news(&report(1, false), &report(2, false)), "progress");
    assert!(news(&report(3, false), &report(4, false)), "completed");
    assert!(
        !news(&report(4, false), &report(4, false)),
        "already complete"
    );
    assert!(news(&report(4, false), &report(4, true)), "published");
    assert!(!news(&report(4, true), &report(4, true)), "no news");
    let mut failed = report(1, true);
    failed.progress[0].failed = Some("bad manifest".into());
    assert!(news(&report(1, true), &failed), "failed here");
    let mut cancelled = report(4, true);
    cancelled.records[0].state = BroadcastState::Cancelled;
    assert!(news(&report(4, true), &cancelled), "changed state");
    let awaiting = DataReport {
        awaiting_registry: true,
        ..report(1, false)
    };
    assert!(
        news(&report(1, false), &awaiting),
        "waiting for the registry"
    );
    assert!(!news(&awaiting, &awaiting), "asked already");
}

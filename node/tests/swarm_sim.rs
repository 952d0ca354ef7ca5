//! The fleet simulator's checks: one origin, 30 receivers, a file of 256 pieces of 1 MiB, every
//! node running the node's own broadcast core on a virtual clock. The simulator is the
//! library's `swarmcast_node::sim`, whose module docs describe the model; `swarmcast sim` runs
//! it from the command line. These tests hold it to its claims.
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
//! `Net::lab` describes a `bench swarm` configuration instead: fixed link rates, the
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

use std::sync::OnceLock;
use std::time::Duration;

use swarmcast_node::sim::{Fault, Net, Outcome, Setup, Shape, Sim};

/// Receivers' upload capacities, in MB/s.
const UPLOADS: std::ops::Range<f64> = 5.0..50.0;

fn run(seed: u64, fault: Fault) -> Outcome {
    run_with(seed, fault, UPLOADS)
}

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
        let (_, late_done) = sim.late_joiner().unwrap();
        assert!(late_done, "seed {seed}: the late joiner completed");
        sim.take_trace().unwrap()
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
            let (busy, last) = sim.origin_busy();
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

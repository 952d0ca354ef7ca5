//! Unit tests of the swarm core on a virtual clock.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use swarmcast_proto::NodeId;

use super::*;

const MB: u64 = 1_000_000;

/// Peer `n`; the origin is 0.
fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

const ORIGIN: u8 = 0;

fn bits(len: u32, ones: impl IntoIterator<Item = u32>) -> Bitfield {
    let mut b = Bitfield::new(len);
    for i in ones {
        b.set(i);
    }
    b
}

/// A core on a virtual clock.
struct Driver {
    t: Transfer,
    now: Instant,
}

impl Driver {
    fn new(config: SwarmConfig, pieces: u32, held: &[u32], seed: u64) -> Self {
        let held = bits(pieces, held.iter().copied());
        Self {
            t: Transfer::new(config, vec![MB; pieces as usize], held, id(ORIGIN), seed),
            now: Instant::now(),
        }
    }

    fn pieces(&self) -> u32 {
        self.t.held().len()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn actions(&mut self) -> Vec<SwarmAction> {
        std::iter::from_fn(|| self.t.poll_action()).collect()
    }

    /// Drain the actions; all must be requests, returned as (peer, piece).
    #[track_caller]
    fn requests(&mut self) -> Vec<(u8, u32)> {
        self.actions()
            .into_iter()
            .map(|a| match a {
                SwarmAction::Request { peer, piece } => (peer.0[0], piece),
                other => panic!("expected only requests, got {other:?}"),
            })
            .collect()
    }

    fn have(&mut self, peer: u8, pieces: impl IntoIterator<Item = u32>) {
        let b = bits(self.pieces(), pieces);
        self.t.handle_peer_have(self.now, id(peer), &b);
    }

    fn have_all(&mut self, peer: u8) {
        self.have(peer, 0..self.pieces());
    }

    /// `piece` arrives from `peer` and is durable at once.
    fn deliver(&mut self, peer: u8, piece: u32) {
        self.t.handle_piece_received(self.now, id(peer), piece);
        self.t.handle_durable(self.now, &[piece]);
    }

    fn stats(&self, peer: u8) -> PeerStats {
        self.t
            .peers()
            .into_iter()
            .find(|s| s.id == id(peer))
            .unwrap()
    }
}

fn config(window: u32) -> SwarmConfig {
    SwarmConfig {
        initial_window: window,
        ..SwarmConfig::for_test()
    }
}

/// Peer 1 has everything, 2 has 0..5, 3 has 0..3: availability 3 for 0..3, 2 for 3..5, 1 for
/// 5..10. Peers 2 and 3 announce first (and take one piece each); peer 1's first request is
/// then the first piece of its pick order.
fn first_pick_of_peer_1(seed: u64) -> u32 {
    let mut d = Driver::new(config(1), 10, &[], seed);
    d.have(2, 0..5);
    d.have(3, 0..3);
    d.requests();
    d.have_all(1);
    let reqs = d.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0, 1);
    reqs[0].1
}

#[test]
fn rarest_first_with_seeded_random_ties() {
    let picks: Vec<u32> = (0..32).map(first_pick_of_peer_1).collect();
    assert!(
        picks.iter().all(|p| (5..10).contains(p)),
        "not the rarest: {picks:?}"
    );
    let distinct: BTreeSet<u32> = picks.iter().copied().collect();
    assert!(distinct.len() >= 3, "ties not broken at random: {picks:?}");
    let again: Vec<u32> = (0..32).map(first_pick_of_peer_1).collect();
    assert_eq!(picks, again, "not deterministic per seed");
}

#[test]
fn rarest_first_follows_have_updates() {
    // Peer 1 has everything with a window of 1; every other piece is made common by peers
    // 2..=4, so each of peer 1's requests is one of the pieces only it has (the odd ones).
    let config = SwarmConfig {
        max_window: 1,
        ..config(1)
    };
    let mut d = Driver::new(config, 20, &[], 7);
    for p in 2..=4 {
        d.have(p, []);
        for piece in (0..20).step_by(2) {
            d.t.handle_peer_piece(d.now, id(p), piece);
        }
    }
    // Peers 2..=4 took even pieces; what they took is not peer 1's business.
    d.requests();
    d.have_all(1);
    for _ in 0..10 {
        let reqs = d.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        let (peer, piece) = reqs[0];
        assert_eq!(peer, 1);
        assert_eq!(piece % 2, 1, "asked peer 1 for common piece {piece}");
        d.advance(Duration::from_millis(10));
        d.deliver(1, piece);
    }
}

/// Answer every request at once, in order, until nothing is outstanding; returns every request
/// made, in order.
fn answer_all(d: &mut Driver, mut pending: VecDeque<(u8, u32)>) -> Vec<(u8, u32)> {
    let mut log: Vec<(u8, u32)> = pending.iter().copied().collect();
    while let Some((peer, piece)) = pending.pop_front() {
        d.advance(Duration::from_millis(1));
        d.deliver(peer, piece);
        for a in d.actions() {
            if let SwarmAction::Request { peer, piece } = a {
                pending.push_back((peer.0[0], piece));
                log.push((peer.0[0], piece));
            }
        }
    }
    log
}

#[test]
fn origin_is_asked_only_for_what_no_other_peer_has() {
    for seed in 0..8 {
        let mut d = Driver::new(config(16), 10, &[], seed);
        d.have(1, 0..4);
        let mut first = d.requests();
        let from_1: BTreeSet<u32> = first.iter().map(|&(_, p)| p).collect();
        assert_eq!(from_1, (0..4).collect());
        d.have_all(ORIGIN);
        first.extend(d.requests());
        let log = answer_all(&mut d, first.into());
        assert!(d.t.is_complete());
        let mut to_origin: Vec<u32> = log
            .iter()
            .filter(|&&(p, _)| p == ORIGIN)
            .map(|&(_, piece)| piece)
            .collect();
        to_origin.sort_unstable();
        assert_eq!(to_origin, (4..10).collect::<Vec<_>>(), "seed {seed}");
    }

    // A piece peer 1 announces later is not asked of the origin either.
    let mut d = Driver::new(config(1), 10, &[], 1);
    d.have(1, [0]);
    d.requests();
    d.have_all(ORIGIN);
    assert_ne!(d.requests(), vec![(ORIGIN, 0)]);
    for piece in 1..10 {
        d.t.handle_peer_piece(d.now, id(1), piece);
    }
    // Peer 1 now has everything: the origin's answers lead to no new request to it.
    for _ in 0..12 {
        let Some(SwarmAction::Request { peer, piece }) = d.t.poll_action() else {
            break;
        };
        assert_eq!(
            peer,
            id(ORIGIN),
            "only the origin had a request outstanding"
        );
        d.deliver(ORIGIN, piece);
        let reqs = d.requests();
        assert!(
            reqs.iter().all(|&(p, _)| p == 1),
            "origin asked again: {reqs:?}"
        );
    }
}

#[test]
fn origin_stripes_tile_what_nobody_else_has_and_never_wait() {
    let mut starts = BTreeSet::new();
    for seed in 0..16 {
        let mut d = Driver::new(config(64), 20, &[], seed);
        d.have(1, [10]);
        assert_eq!(d.requests(), vec![(1, 10)]);
        d.have_all(ORIGIN);
        // Peer 1 still has piece 10 in flight: the origin is asked for everything else at
        // once, each piece once, in a few runs of consecutive pieces.
        let asked: Vec<u32> = d.requests().into_iter().map(|(_, p)| p).collect();
        starts.insert(asked[0]);
        let breaks = asked.windows(2).filter(|w| w[1] != (w[0] + 1) % 20).count();
        assert!(breaks <= 3, "seed {seed}: {asked:?}");
        let all: BTreeSet<u32> = asked.iter().copied().collect();
        assert_eq!(all.len(), asked.len(), "seed {seed}: asked twice");
        assert_eq!(all, (0..20).filter(|&p| p != 10).collect(), "seed {seed}");
    }
    assert!(
        starts.len() >= 4,
        "stripes do not start at random: {starts:?}"
    );
}

#[test]
fn the_origin_is_asked_for_new_data_whenever_its_window_has_room() {
    // Without this the origin's uplink idled while receivers traded among themselves.
    let mut d = Driver::new(config(2), 12, &[], 5);
    d.have(1, 0..6);
    let from_1 = d.requests();
    assert!(from_1.iter().all(|&(p, _)| p == 1));
    d.have_all(ORIGIN);
    let mut to_origin = d.requests();
    assert_eq!(to_origin.len(), 2, "the origin's window is full");
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    for _ in 0..6 {
        // Peer 1 still has requests live; the origin answers and is asked again at once.
        let (_, piece) = to_origin.remove(0);
        assert!(piece >= 6, "piece {piece} is at peer 1");
        assert!(seen.insert(piece), "piece {piece} asked twice");
        d.advance(Duration::from_millis(5));
        d.deliver(ORIGIN, piece);
        to_origin.extend(d.requests().into_iter().filter(|&(p, _)| p == ORIGIN));
        assert!(
            !to_origin.is_empty() || seen.len() == 6,
            "origin idle after {seen:?}"
        );
    }
    assert_eq!(seen, (6..12).collect());
}

#[test]
fn a_piece_the_origin_declines_is_fetched_elsewhere_or_later() {
    let config = SwarmConfig {
        min_request_timeout: Duration::from_secs(10),
        ..config(4)
    };
    for neighbour_gets_it in [true, false] {
        let mut d = Driver::new(config.clone(), 4, &[], 1);
        d.have_all(ORIGIN);
        assert_eq!(d.requests().len(), 4);
        for piece in [0, 1, 3] {
            d.deliver(ORIGIN, piece);
        }
        d.advance(Duration::from_millis(1));
        let window = d.stats(ORIGIN).window;
        d.t.handle_piece_declined(d.now, id(ORIGIN), 2);
        assert!(
            d.requests().is_empty(),
            "declined piece asked again at once"
        );
        assert_eq!(d.stats(ORIGIN).window, window, "a decline is no failure");
        let retry = d.t.poll_timeout().unwrap();
        assert_eq!(retry, d.now + Duration::from_secs(10));
        if neighbour_gets_it {
            d.have(1, [2]);
            assert_eq!(d.requests(), vec![(1, 2)]);
        } else {
            d.now = retry;
            d.t.handle_timeout(d.now);
            assert_eq!(d.requests(), vec![(ORIGIN, 2)]);
        }
    }
}

#[test]
fn origin_serves_everything_when_alone_and_takes_over_when_a_peer_leaves() {
    let mut d = Driver::new(config(64), 10, &[], 3);
    d.have_all(ORIGIN);
    let from_origin: BTreeSet<u32> = d.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(from_origin, (0..10).collect());

    let mut d = Driver::new(config(64), 10, &[], 3);
    d.have(1, 0..5);
    d.have_all(ORIGIN);
    let mut to_origin = Vec::new();
    for (peer, piece) in d.requests() {
        assert_eq!(peer == 1, piece < 5);
        if peer == ORIGIN {
            to_origin.push(piece);
        }
    }
    d.t.handle_peer_gone(d.now, id(1));
    for (peer, piece) in d.requests() {
        assert_eq!(peer, ORIGIN);
        to_origin.push(piece);
    }
    to_origin.sort_unstable();
    assert_eq!(to_origin, (0..10).collect::<Vec<_>>());
}

/// Serve `id`'s requests first come, first served at `rate` bytes/s, `count` times.
fn serve_fifo(d: &mut Driver, peer: u8, rate: u64, count: usize, queue: &mut VecDeque<u32>) {
    for _ in 0..count {
        queue.extend(d.requests().into_iter().map(|(p, piece)| {
            assert_eq!(p, peer);
            piece
        }));
        let Some(piece) = queue.pop_front() else {
            return;
        };
        d.advance(Duration::from_secs_f64(MB as f64 / rate as f64));
        d.deliver(peer, piece);
        let s = d.stats(peer);
        assert!(s.in_flight <= 64);
    }
}

#[test]
fn window_follows_throughput_and_halves_on_failure() {
    let mut d = Driver::new(SwarmConfig::for_test(), 2000, &[], 1);
    d.have_all(1);
    assert_eq!(d.stats(1).window, 4);
    let mut queue = VecDeque::new();
    serve_fifo(&mut d, 1, 100 * MB, 300, &mut queue);
    // 100 MB/s × 200 ms / 1 MB = 20 pieces.
    let s = d.stats(1);
    assert!((18..=22).contains(&s.window), "{s:?}");
    assert!((s.rate - 100e6).abs() < 5e6, "{s:?}");
    assert_eq!(s.in_flight as usize, queue.len() + d.requests().len());

    let piece = queue.pop_front().unwrap();
    d.t.handle_piece_failed(d.now, id(1), piece);
    assert_eq!(d.stats(1).window, s.window / 2);
    // The piece is back in the pool, but the window is full.
    assert!(d.t.pool.contains(piece));
    assert!(d.requests().is_empty());

    // A slow peer's window drops to the least, 2 (one piece queued behind the one on the
    // wire), not below: 1 MB/s × 200 ms < 1 MB.
    let mut d = Driver::new(SwarmConfig::for_test(), 100, &[], 1);
    d.have_all(2);
    serve_fifo(&mut d, 2, MB, 20, &mut VecDeque::new());
    assert_eq!(d.stats(2).window, 2);
    // With a least of 1, it drops to 1.
    let config = SwarmConfig {
        min_window: 1,
        ..SwarmConfig::for_test()
    };
    let mut d = Driver::new(config, 100, &[], 1);
    d.have_all(2);
    serve_fifo(&mut d, 2, MB, 20, &mut VecDeque::new());
    assert_eq!(d.stats(2).window, 1);
}

#[test]
fn fast_peers_serve_more() {
    let mut d = Driver::new(SwarmConfig::for_test(), 4000, &[], 5);
    d.have_all(1);
    d.have_all(2);
    // Peer 1 serves at 100 MB/s, peer 2 at 10 MB/s, each FIFO; 1 ms steps.
    let rates = [100.0e6, 10.0e6];
    let mut queues = [VecDeque::new(), VecDeque::new()];
    let mut progress = [0.0f64; 2];
    for _ in 0..2000 {
        for (peer, piece) in d.requests() {
            queues[peer as usize - 1].push_back(piece);
        }
        d.advance(Duration::from_millis(1));
        for i in 0..2 {
            if queues[i].is_empty() {
                continue;
            }
            progress[i] += rates[i] * 0.001;
            if progress[i] >= MB as f64 {
                progress[i] -= MB as f64;
                let piece = queues[i].pop_front().unwrap();
                d.deliver(i as u8 + 1, piece);
            }
        }
    }
    let (fast, slow) = (d.stats(1), d.stats(2));
    assert!(fast.window > 4 * slow.window, "{fast:?} {slow:?}");
    assert!(
        fast.bytes_received > 5 * slow.bytes_received,
        "{fast:?} {slow:?}"
    );
}

#[test]
fn never_more_than_the_hard_cap_in_flight() {
    let config = SwarmConfig {
        max_in_flight_per_peer: 8,
        ..SwarmConfig::for_test()
    };
    let mut d = Driver::new(config, 1000, &[], 2);
    d.have_all(1);
    let mut queue = VecDeque::new();
    serve_fifo(&mut d, 1, 1000 * MB, 200, &mut queue);
    let s = d.stats(1);
    assert!(s.window > 8, "{s:?}");
    assert!(s.in_flight <= 8, "{s:?}");
    assert!(queue.len() + d.requests().len() <= 8);
}

#[test]
fn deadlines_return_pieces_to_the_pool_and_late_answers_count() {
    let config = SwarmConfig {
        endgame_duplicates: 0,
        ..config(4)
    };
    let mut d = Driver::new(config, 4, &[], 9);
    d.have_all(1);
    let to_1: BTreeSet<u32> = d.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(to_1.len(), 4);
    d.have_all(2);
    assert!(d.requests().is_empty(), "no duplicates outside endgame");
    let sent = d.now;
    // First the grace: peer 1 delivered nothing, so it stops counting; nothing else changes.
    d.now = d.t.poll_timeout().unwrap();
    assert_eq!(d.now, sent + Duration::from_millis(30));
    d.t.handle_timeout(d.now);
    assert!(d.requests().is_empty());
    let deadline = d.t.poll_timeout().unwrap();
    assert_eq!(deadline, sent + Duration::from_millis(300));

    d.now = deadline;
    d.t.handle_timeout(d.now);
    let mut to_2 = BTreeSet::new();
    let mut cancelled = BTreeSet::new();
    for a in d.actions() {
        match a {
            SwarmAction::Request { peer, piece } if peer == id(2) => {
                to_2.insert(piece);
            }
            // Asked elsewhere: peer 1 stops sending it (no duplicate bytes).
            SwarmAction::Cancel { peer, piece } if peer == id(1) => {
                assert!(
                    to_2.contains(&piece),
                    "cancelled before it was asked elsewhere"
                );
                cancelled.insert(piece);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(to_2, to_1, "expired pieces go to the other peer");
    assert_eq!(cancelled, to_1, "and are cancelled where they expired");
    let s = d.stats(1);
    assert!(s.suspect && s.window == 2 && s.in_flight == 0, "{s:?}");
}

#[test]
fn a_late_answer_to_an_expired_request_still_counts() {
    // Peer 1 alone: its expired requests are asked of nobody else, so they stay outstanding.
    let mut d = Driver::new(config(4), 4, &[], 9);
    d.have_all(1);
    assert_eq!(d.requests().len(), 4);
    // The grace, then the deadline.
    for _ in 0..2 {
        d.now = d.t.poll_timeout().unwrap();
        d.t.handle_timeout(d.now);
    }
    assert!(d.stats(1).suspect);
    d.actions();
    d.advance(Duration::from_millis(5));
    d.t.handle_piece_received(d.now, id(1), 0);
    assert!(d.t.obtained.get(0), "the late copy is taken");
    assert!(!d.stats(1).suspect, "an answer makes the peer healthy");
}

#[test]
fn a_stalled_peer_is_only_probed() {
    // Peer 2's window at 500 ms of queue covers the transfer's pieces early, so that the stalled
    // peer's probes end by their deadlines (a probe whose piece arrives from peer 2 first is
    // replaced at once, which with a smaller window happens more often).
    let config = SwarmConfig {
        target_queue: Duration::from_millis(500),
        ..config(4)
    };
    let mut d = Driver::new(config, 150, &[], 4);
    d.have_all(1);
    d.have_all(2);
    let first = d.requests();
    let stalled: Vec<u32> = first
        .iter()
        .filter(|&&(p, _)| p == 1)
        .map(|&(_, piece)| piece)
        .collect();
    assert_eq!(stalled.len(), 4);
    // Peer 2 answers everything at once; peer 1 never answers.
    let mut pending: VecDeque<u32> = first
        .iter()
        .filter(|&&(p, _)| p == 2)
        .map(|&(_, x)| x)
        .collect();
    let mut probes = 0;
    let mut cancelled = BTreeSet::new();
    for _ in 0..2000 {
        if d.t.is_complete() {
            break;
        }
        d.advance(Duration::from_millis(10));
        if d.t.poll_timeout().is_some_and(|t| t <= d.now) {
            d.t.handle_timeout(d.now);
        }
        if let Some(piece) = pending.pop_front() {
            d.deliver(2, piece);
        }
        for a in d.actions() {
            match a {
                SwarmAction::Request { peer, piece } if peer == id(2) => pending.push_back(piece),
                SwarmAction::Request { peer, .. } => {
                    assert_eq!(peer, id(1));
                    probes += 1;
                }
                SwarmAction::Cancel { peer, piece } => {
                    assert_eq!(peer, id(1));
                    cancelled.insert(piece);
                }
                SwarmAction::Complete => {}
                SwarmAction::Ban { .. } => panic!("no ban for a stall"),
            }
        }
    }
    assert!(d.t.is_complete(), "a stalled peer held the transfer back");
    // 1.5 s of pieces at one per 10 ms; deadline 300 ms, then probes 300 ms after it, and
    // 600 ms after the probe's own deadline.
    assert!((1..=3).contains(&probes), "probes: {probes}");
    assert!(stalled.iter().all(|p| cancelled.contains(p)));
    assert!(d.stats(1).suspect);
}

#[test]
fn endgame_duplicates_then_cancels() {
    let mut d = Driver::new(config(2), 2, &[], 6);
    d.have_all(1);
    assert_eq!(d.requests().len(), 2);
    d.have_all(2);
    // Every missing piece is in flight: peer 2 gets one duplicate of each.
    let dups: BTreeSet<(u8, u32)> = d.requests().into_iter().collect();
    assert_eq!(dups, [(2, 0), (2, 1)].into_iter().collect());
    // No third copy.
    d.have_all(3);
    assert!(d.requests().is_empty());

    d.deliver(1, 0);
    assert_eq!(
        d.actions(),
        vec![SwarmAction::Cancel {
            peer: id(2),
            piece: 0
        }]
    );
    d.deliver(2, 1);
    assert_eq!(
        d.actions(),
        vec![
            SwarmAction::Cancel {
                peer: id(1),
                piece: 1
            },
            SwarmAction::Complete
        ]
    );

    // Without endgame duplicates, nothing is asked twice.
    let mut d = Driver::new(
        SwarmConfig {
            endgame_duplicates: 0,
            ..config(2)
        },
        2,
        &[],
        6,
    );
    d.have_all(1);
    d.requests();
    d.have_all(2);
    assert!(d.requests().is_empty());
}

#[test]
fn endgame_prefers_fast_peers() {
    let mut d = Driver::new(config(1), 4, &[], 8);
    // Measure peer 1 (fast) and peer 2 (slow) on a piece each.
    d.have(1, [0]);
    d.have(2, [1]);
    assert_eq!(d.requests(), vec![(1, 0), (2, 1)]);
    d.advance(Duration::from_millis(10));
    d.t.handle_piece_received(d.now, id(1), 0);
    d.advance(Duration::from_millis(190));
    d.t.handle_piece_received(d.now, id(2), 1);
    assert!(d.stats(1).rate > 10.0 * d.stats(2).rate);
    // Piece 2 goes to peer 4; peers 1 and 2 learn they have it, but piece 3 (nobody has it)
    // keeps the pool non-empty: no endgame yet.
    d.have(4, [2]);
    assert_eq!(d.requests(), vec![(4, 2)]);
    d.t.handle_peer_piece(d.now, id(1), 2);
    d.t.handle_peer_piece(d.now, id(2), 2);
    assert!(d.requests().is_empty());
    // Peer 3 brings piece 3: the pool empties, and the one extra copy of piece 2 goes to the
    // fast peer.
    d.have(3, [3]);
    assert_eq!(d.requests(), vec![(3, 3), (1, 2)]);
}

#[test]
fn three_strikes_ban_once_and_for_good() {
    let mut d = Driver::new(config(4), 20, &[], 11);
    d.have_all(1);
    let reqs = d.requests();
    assert_eq!(reqs.len(), 4);
    let bad = reqs[0].1;
    d.t.handle_piece_bad(d.now, id(1), bad);
    let again = d.requests();
    assert!(!again.is_empty());
    assert!(
        again.iter().all(|&(_, p)| p != bad),
        "bad piece asked of its server again"
    );
    d.t.handle_piece_bad(d.now, id(1), reqs[1].1);
    d.requests();
    assert_eq!(d.stats(1).strikes, 2);
    d.t.handle_piece_bad(d.now, id(1), reqs[2].1);
    assert_eq!(d.actions(), vec![SwarmAction::Ban { peer: id(1) }]);
    let s = d.stats(1);
    assert!(s.banned && s.in_flight == 0, "{s:?}");

    // Never asked again: not on a new bitfield, a have, a late bad piece or a timeout.
    d.have_all(1);
    d.t.handle_peer_piece(d.now, id(1), 5);
    d.t.handle_piece_bad(d.now, id(1), 6);
    d.advance(Duration::from_secs(10));
    d.t.handle_timeout(d.now);
    d.t.handle_peer_gone(d.now, id(1));
    d.have_all(1);
    assert!(d.actions().is_empty());
    assert!(d.stats(1).banned);
    // Others are asked instead.
    d.have_all(2);
    let reqs = d.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|&(p, _)| p == 2));
}

#[test]
fn a_bad_copy_does_not_count_as_available() {
    // Only peer 1 and the origin have piece 0; peer 1 serves it bad: the origin is asked.
    let mut d = Driver::new(config(4), 1, &[], 12);
    d.have_all(1);
    d.have_all(ORIGIN);
    assert_eq!(d.requests(), vec![(1, 0)]);
    d.t.handle_piece_bad(d.now, id(1), 0);
    assert_eq!(d.requests(), vec![(ORIGIN, 0)]);
}

#[test]
fn resume_never_asks_for_held_pieces() {
    let mut d = Driver::new(config(64), 6, &[0, 2, 4], 13);
    d.have_all(1);
    d.have_all(ORIGIN);
    let asked: BTreeSet<u32> = d.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(asked, [1, 3, 5].into_iter().collect());
    assert_eq!(d.t.held().count_ones(), 3);
    assert!(!d.t.is_complete());
}

#[test]
fn complete_exactly_once_after_all_durable() {
    let mut d = Driver::new(config(64), 3, &[], 14);
    d.have_all(1);
    let reqs = d.requests();
    // Received is not enough.
    for &(_, piece) in &reqs {
        d.t.handle_piece_received(d.now, id(1), piece);
    }
    assert!(d.actions().is_empty());
    assert!(!d.t.is_complete());
    assert_eq!(d.t.poll_timeout(), None, "nothing left to time out");
    d.t.handle_durable(d.now, &[0, 1]);
    assert!(d.actions().is_empty());
    d.t.handle_durable(d.now, &[2]);
    assert_eq!(d.actions(), vec![SwarmAction::Complete]);
    d.t.handle_durable(d.now, &[0, 1, 2]);
    d.have_all(2);
    d.t.handle_timeout(d.now);
    assert!(d.actions().is_empty());
    assert!(d.t.is_complete());

    // Everything already held: Complete first, nothing requested.
    let mut d = Driver::new(config(64), 3, &[0, 1, 2], 14);
    assert_eq!(d.actions(), vec![SwarmAction::Complete]);
    d.have_all(1);
    assert!(d.actions().is_empty());
    let mut d = Driver::new(config(64), 0, &[], 14);
    assert_eq!(d.actions(), vec![SwarmAction::Complete]);
}

#[test]
fn peer_gone_returns_its_requests_at_once() {
    let mut d = Driver::new(
        SwarmConfig {
            endgame_duplicates: 0,
            ..config(4)
        },
        4,
        &[],
        15,
    );
    d.have_all(1);
    d.have_all(2);
    let to_1: BTreeSet<u32> = d.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(to_1.len(), 4);
    d.t.handle_peer_gone(d.now, id(1));
    let to_2: BTreeSet<u32> = d.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(to_2, to_1);
    assert!(d.t.peers().iter().all(|s| s.id != id(1)));
}

#[test]
fn bad_input_is_ignored() {
    let mut d = Driver::new(config(4), 8, &[], 16);
    d.t.handle_peer_have(d.now, id(1), &Bitfield::new(9));
    d.t.handle_peer_piece(d.now, id(1), 8);
    d.t.handle_piece_received(d.now, id(1), 99);
    d.t.handle_piece_bad(d.now, id(1), 99);
    d.t.handle_durable(d.now, &[99]);
    d.t.handle_piece_failed(d.now, id(3), 0);
    assert!(d.actions().is_empty());
    // An unsolicited but verified piece still counts.
    d.deliver(3, 2);
    assert!(d.t.held().get(2));
}

/// 100k pieces, 16 peers holding random halves plus the origin; every request is answered in
/// turn: everything completes with few duplicates, and the time taken is printed (no
/// O(pieces × peers) work per event).
#[test]
fn scales_to_many_pieces() {
    use rand::{Rng, SeedableRng};
    // 100k pieces take 0.3 s in release; debug builds check a fifth of that.
    const PIECES: u32 = if cfg!(debug_assertions) {
        20_000
    } else {
        100_000
    };
    let started = std::time::Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut d = Driver::new(SwarmConfig::for_test(), PIECES, &[], 17);
    let mut pending = VecDeque::new();
    d.have_all(ORIGIN);
    for peer in 1..=16u8 {
        let pieces: Vec<u32> = (0..PIECES).filter(|_| rng.random_bool(0.5)).collect();
        d.have(peer, pieces);
    }
    let mut steps = 0u64;
    loop {
        for a in d.actions() {
            if let SwarmAction::Request { peer, piece } = a {
                pending.push_back((peer.0[0], piece));
            }
        }
        let Some((peer, piece)) = pending.pop_front() else {
            break;
        };
        d.advance(Duration::from_micros(100));
        d.deliver(peer, piece);
        steps += 1;
    }
    assert!(d.t.is_complete());
    assert!(steps < u64::from(PIECES) * 11 / 10, "{steps} responses");
    eprintln!(
        "{PIECES} pieces, 17 peers: {steps} responses in {:?}",
        started.elapsed()
    );
}

/// Memory for pieces in flight is bounded per transfer, not per peer: with many peers each
/// willing to take 64 requests, live requests never exceed `max_in_flight_bytes`.
#[test]
fn bytes_in_flight_are_capped_across_peers() {
    let config = SwarmConfig {
        initial_window: 64,
        max_in_flight_bytes: 10 * MB,
        ..SwarmConfig::for_test()
    };
    let mut d = Driver::new(config, 400, &[], 1);
    for p in 1..=8 {
        d.have_all(p);
    }
    d.t.handle_timeout(d.now);
    let first = d.requests();
    assert_eq!(
        first.len(),
        10,
        "10 pieces of 1 MB fit the 10 MB budget: {first:?}"
    );
    // Each answer frees room for exactly one more request.
    let (peer, piece) = first[0];
    d.deliver(peer, piece);
    d.t.handle_timeout(d.now);
    assert_eq!(d.requests().len(), 1);
}

#[test]
fn a_peer_whose_requests_fail_is_backed_off_not_asked_in_a_loop() {
    let mut d = Driver::new(config(4), 8, &[], 2);
    d.have_all(1);
    let reqs = d.requests();
    assert_eq!(reqs.len(), 4);
    // Every request fails at once (say, its connection is gone bad).
    for &(_, piece) in &reqs {
        d.t.handle_piece_failed(d.now, id(1), piece);
    }
    assert!(d.requests().is_empty(), "asked again at once");
    let s = d.stats(1);
    assert!(s.suspect, "{s:?}");
    // Four failures in a row: a probe after 8 × the backoff, then longer waits while it keeps
    // failing.
    let wake = d.t.poll_timeout().unwrap();
    assert_eq!(wake, d.now + FAILURE_BACKOFF * 8);
    let mut waits = Vec::new();
    for _ in 0..4 {
        let wake = d.t.poll_timeout().unwrap();
        waits.push(wake - d.now);
        d.now = wake;
        d.t.handle_timeout(d.now);
        let probe = d.requests();
        assert_eq!(probe.len(), 1, "{probe:?}");
        d.t.handle_piece_failed(d.now, id(1), probe[0].1);
    }
    // Doubling, up to `max_probe_backoff` (2 s in tests).
    assert!(
        waits.windows(2).all(|w| w[1] >= w[0]) && waits[3] > waits[0],
        "{waits:?}"
    );
    // An answer ends it.
    let wake = d.t.poll_timeout().unwrap();
    d.now = wake;
    d.t.handle_timeout(d.now);
    let probe = d.requests();
    d.deliver(1, probe[0].1);
    assert!(!d.stats(1).suspect);
    assert!(!d.requests().is_empty());
}

mod silent;

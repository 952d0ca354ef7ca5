//! A peer whose claims are not backed by a delivered piece: `first_piece_grace`.

use super::*;

/// `SwarmConfig::for_test().first_piece_grace`.
const GRACE: Duration = Duration::from_millis(30);

/// What happened to the other peers while the origin served a transfer.
#[derive(Debug)]
struct Run {
    /// Virtual time from the first request to `Complete`.
    took: Duration,
    /// Requests sent to each peer but the origin, by peer.
    asked: BTreeMap<u8, u32>,
    /// Requests sent to the origin.
    to_origin: u32,
}

/// Drive `d` on a 1 ms clock until it completes (at most 10 s): the origin answers its requests
/// first come first served, one piece per `origin_ms`; each peer of `late` answers its requests
/// once they are `late[peer]` old; every other peer never answers (nor do the late ones when
/// their `Option` is `None`). Deadlines and the grace run as the shell runs them.
#[track_caller]
fn drive(d: &mut Driver, origin_ms: u64, late: &BTreeMap<u8, Duration>) -> Run {
    let start = d.now;
    let mut origin_queue: VecDeque<u32> = VecDeque::new();
    let mut at_peers: Vec<(u8, u32, Instant)> = Vec::new();
    let mut asked: BTreeMap<u8, u32> = BTreeMap::new();
    let mut to_origin = 0;
    let mut next_origin = start;
    for _ in 0..10_000 {
        for a in d.actions() {
            match a {
                SwarmAction::Request { peer, piece } if peer == id(ORIGIN) => {
                    origin_queue.push_back(piece);
                    to_origin += 1;
                }
                SwarmAction::Request { peer, piece } => {
                    *asked.entry(peer.0[0]).or_default() += 1;
                    at_peers.push((peer.0[0], piece, d.now));
                }
                SwarmAction::Cancel { peer, piece } if peer == id(ORIGIN) => {
                    origin_queue.retain(|&p| p != piece);
                }
                SwarmAction::Cancel { peer, piece } => {
                    at_peers.retain(|&(p, x, _)| !(p == peer.0[0] && x == piece));
                }
                SwarmAction::Complete => {
                    return Run {
                        took: d.now - start,
                        asked,
                        to_origin,
                    };
                }
                SwarmAction::Ban { peer } => panic!("{peer} banned"),
            }
        }
        d.advance(Duration::from_millis(1));
        if d.t.poll_timeout().is_some_and(|t| t <= d.now) {
            d.t.handle_timeout(d.now);
        }
        if d.now >= next_origin {
            if let Some(piece) = origin_queue.pop_front() {
                d.deliver(ORIGIN, piece);
                next_origin = d.now + Duration::from_millis(origin_ms);
            }
        }
        let now = d.now;
        let due: Vec<(u8, u32)> = at_peers
            .iter()
            .filter(|&&(p, _, sent)| late.get(&p).is_some_and(|&l| now >= sent + l))
            .map(|&(p, piece, _)| (p, piece))
            .collect();
        at_peers.retain(|&(p, x, _)| !due.contains(&(p, x)));
        for (p, piece) in due {
            d.deliver(p, piece);
        }
    }
    panic!("not complete after 10 s: {:?}", d.t.peers());
}

/// The benchmark's attack (`hostile_time_cost`: 3.4 s instead of 0.41 s for 128 MiB): the
/// origin is asked first, then a neighbour claims every piece and never answers. Without the
/// grace every piece but the origin's first window waited in the pool for the liar's deadline
/// (`min_request_timeout`, 300 ms here), the origin idle meanwhile. A liar answering a byte a
/// second is the same to the core: it counts pieces, never bytes.
#[test]
fn a_holder_claiming_everything_that_never_answers_holds_nothing_back() {
    for seed in 0..8 {
        let mut d = Driver::new(config(4), 64, &[], seed);
        d.have_all(ORIGIN);
        d.have_all(1);
        let run = drive(&mut d, 1, &BTreeMap::new());
        // 64 pieces at 1 ms from the origin and a few ms of grace, far below the liar's
        // deadline: the origin answered its first requests within 1-4 ms, so the grace is at
        // its floor, a quarter of `first_piece_grace` (a fixed 30 ms took 90 ms).
        assert!(
            run.took < Duration::from_millis(64) + GRACE / 2,
            "seed {seed}: {run:?}"
        );
        // Only its first window: no endgame copies, no new pieces.
        assert!(run.asked[&1] <= 4, "seed {seed}: {run:?}");
    }
}

/// Before the grace, the liar's claims count (an honest peer is trusted at once), after it
/// they do not, and its first piece makes them count again.
#[test]
fn a_silent_peer_counts_again_from_its_first_piece() {
    let mut d = Driver::new(config(2), 8, &[], 3);
    d.have_all(1);
    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    let pooled = (0..8).find(|&p| d.t.pool.contains(p)).unwrap();
    assert_eq!(d.t.pool.avail(pooled), 1);
    assert_eq!(
        d.t.poll_timeout(),
        Some(d.now + GRACE),
        "the grace is armed"
    );
    d.advance(GRACE - Duration::from_millis(1));
    d.t.handle_timeout(d.now);
    assert_eq!(d.t.pool.avail(pooled), 1, "counted until the grace ends");
    d.advance(Duration::from_millis(1));
    d.t.handle_timeout(d.now);
    assert!(d.requests().is_empty());
    assert_eq!(d.t.pool.avail(pooled), 0, "counted after the grace");
    let s = d.stats(1);
    // Not a failure: its requests, window and health stay.
    assert!(
        s.silent && !s.suspect && s.window == 2 && s.in_flight == 2,
        "{s:?}"
    );
    // The deadline is the next timer, not the grace again.
    assert_eq!(
        d.t.poll_timeout(),
        Some(d.now - GRACE + Duration::from_millis(300))
    );
    d.advance(Duration::from_millis(5));
    d.deliver(1, reqs[0].1);
    assert_eq!(
        d.t.pool.avail(pooled),
        1,
        "not counted again after its first piece"
    );
    assert!(!d.stats(1).silent);
    // Proven: a later slow request does not silence it again (its deadline does what the
    // grace did).
    let more = d.requests();
    assert!(!more.is_empty());
    d.advance(GRACE * 4);
    d.t.handle_timeout(d.now);
    assert_eq!(d.t.pool.avail(pooled), 1);
}

/// An honest peer on a fast link delivers within the grace: it is never silent, and the origin
/// is asked only for what nobody else has, as without the grace.
#[test]
fn an_honest_peer_answering_within_the_grace_is_not_penalised() {
    for seed in 0..8 {
        let mut d = Driver::new(config(4), 40, &[], seed);
        d.have(1, 0..20);
        d.have_all(ORIGIN);
        let late = BTreeMap::from([(1, GRACE - Duration::from_millis(5))]);
        let run = drive(&mut d, 1, &late);
        assert!(!d.stats(1).silent);
        assert_eq!(run.to_origin, 20, "seed {seed}: {run:?}");
        assert_eq!(run.asked[&1], 20, "seed {seed}: {run:?}");
    }
}

/// A slow-start peer whose first piece takes longer than the grace: while silent the origin
/// covers what only it has; its own requests are neither cancelled nor suspect, and it takes
/// its share again once it delivers.
#[test]
fn a_slow_first_piece_costs_only_what_the_origin_covers_meanwhile() {
    let mut d = Driver::new(config(4), 200, &[], 5);
    d.have(1, 0..100);
    d.have_all(ORIGIN);
    let late = BTreeMap::from([(1, GRACE * 2)]);
    let run = drive(&mut d, 1, &late);
    let s = d.stats(1);
    assert!(!s.silent && !s.suspect, "{s:?}");
    // It delivered far more than its first window, and the origin did not take its whole half.
    assert!(run.asked[&1] > 20, "{run:?}");
    assert!(run.to_origin < 180, "{run:?}");
}

/// The grace is `request_timeout_factor` (4) × the transfer's typical service time, between a
/// quarter of `first_piece_grace` and all of it.
#[test]
fn the_grace_follows_the_service_time_within_its_bounds() {
    // Four requests sent at once, answered `step` apart: service times step, 2 step, 3 step and
    // 4 step, an EWMA (gain 1/4) of about 2.27 step.
    let answered = |step: Duration| {
        let mut d = Driver::new(config(4), 40, &[], 1);
        d.have_all(ORIGIN);
        let reqs = d.requests();
        assert_eq!(reqs.len(), 4);
        for (_, piece) in reqs {
            d.advance(step);
            d.deliver(ORIGIN, piece);
        }
        d.t.first_piece_grace()
    };
    let before = Driver::new(config(4), 4, &[], 1).t.first_piece_grace();
    assert_eq!(before, GRACE, "before any answer");
    // 4 × 1.13 ms: under the floor.
    assert_eq!(answered(Duration::from_micros(500)), GRACE / 4);
    // 4 × 9.06 ms: over the cap.
    assert_eq!(answered(Duration::from_millis(4)), GRACE);
    // 4 × 4.53 ms.
    let g = answered(Duration::from_millis(2));
    assert!(
        g.abs_diff(Duration::from_micros(18_125)) < Duration::from_micros(10),
        "{g:?}"
    );
}

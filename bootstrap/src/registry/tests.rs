#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use swarmcast_proto::{BroadcastState, Progress, Role};

use super::time::{age_ms, instant_before};
use super::*;

const NS: Duration = Duration::from_nanos(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn bid(n: u8) -> BroadcastId {
    BroadcastId([n; 32])
}

fn rec(n: u8, incarnation: u64, heartbeat: u64) -> NodeRecord {
    NodeRecord {
        progress_seq: 0,
        id: id(n),
        name: format!("node-{n:02}"),
        role: Role::Node,
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 4000 + u16::from(n)))],
        version: Version::new(incarnation, heartbeat),
        progress: Vec::new(),
        pull: false,
        groups: Vec::new(),
    }
}

fn upd(n: u8, incarnation: u64, heartbeat: u64, age_ms: u64) -> EntryUpdate {
    EntryUpdate {
        record: rec(n, incarnation, heartbeat),
        age_ms,
    }
}

fn bcast(n: u8, version: u64, state: BroadcastState) -> BroadcastRecord {
    BroadcastRecord {
        id: bid(n),
        name: format!("dir-{n}"),
        origin: id(n),
        size: 1000,
        chunks: 4,
        state,
        version,
        seq: 0,
        published_ms: 0,
        audience: None,
    }
}

fn events(reg: &mut Registry) -> Vec<RegistryEvent> {
    std::iter::from_fn(|| reg.poll_event()).collect()
}

#[track_caller]
fn assert_age(reg: &Registry, now: Instant, n: u8, expected_ms: u64) {
    let view = reg.view(now);
    let entry = view.nodes.iter().find(|e| e.record.id == id(n)).unwrap();
    assert_eq!(entry.age_ms, expected_ms, "age of node {n}");
}

fn changed(from: Status, to: Status, n: u8) -> RegistryEvent {
    RegistryEvent::StatusChanged {
        id: id(n),
        name: format!("node-{n:02}"),
        from,
        to,
    }
}

#[test]
fn config_defaults_are_documented_values() {
    let c = RegistryConfig::default();
    assert_eq!(c.suspect_after, Duration::from_secs(3));
    assert_eq!(c.dead_after, Duration::from_secs(6));
    assert_eq!(c.gc_after, Duration::from_secs(60));
    assert_eq!(c.drop_after(), Duration::from_secs(66));
    let t = RegistryConfig::for_test();
    assert!(t.suspect_after < t.dead_after && t.drop_after() < c.suspect_after);
}

#[test]
fn observe_adds_once_and_refreshes_on_repeat() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    assert!(reg.is_empty());
    assert!(reg.observe(t, rec(1, 1, 0)));
    assert_eq!(
        events(&mut reg),
        [RegistryEvent::Added {
            id: id(1),
            name: "node-01".into()
        }]
    );
    assert_eq!(reg.len(), 1);
    assert_eq!(reg.get(&id(1)), Some(&rec(1, 1, 0)));
    assert_eq!(reg.status(t, &id(1)), Some(Status::Alive));
    // The same record at the same instant changes nothing; later, it refreshes the age only.
    assert!(!reg.observe(t, rec(1, 1, 0)));
    assert!(reg.observe(t + ms(500), rec(1, 1, 0)));
    assert_age(&reg, t + ms(700), 1, 200);
    assert_eq!(events(&mut reg), []);
}

#[test]
fn higher_version_replaces_record_wholesale() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    let mut first = rec(1, 1, 1);
    first.progress = vec![Progress {
        broadcast: bid(9),
        held: 1,
        total: 4,
        complete: false,
        failed: None,
    }];
    reg.observe(t, first);
    let mut newer = rec(1, 1, 2);
    newer.addrs = vec![SocketAddr::from(([10, 0, 0, 1], 9))];
    assert!(reg.merge(
        t + ms(1000),
        EntryUpdate {
            record: newer.clone(),
            age_ms: 100,
        }
    ));
    assert_eq!(reg.get(&id(1)), Some(&newer));
    assert_age(&reg, t + ms(1000), 1, 100);
}

#[test]
fn stale_update_is_ignored() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    reg.observe(t, rec(1, 2, 5));
    events(&mut reg);
    let later = t + ms(2000);
    assert!(!reg.merge(later, upd(1, 2, 4, 0)));
    assert!(!reg.merge(later, upd(1, 1, 99, 0)));
    assert!(!reg.observe(later, rec(1, 2, 0)));
    assert_eq!(reg.get(&id(1)).unwrap().version, Version::new(2, 5));
    assert_age(&reg, later, 1, 2000);
    assert_eq!(events(&mut reg), []);
}

#[test]
fn equal_version_keeps_the_fresher_age() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    reg.merge(t, upd(1, 1, 3, 900));
    assert!(reg.merge(t, upd(1, 1, 3, 100)), "fresher");
    assert!(!reg.merge(t, upd(1, 1, 3, 500)), "older");
    assert!(!reg.merge(t, upd(1, 1, 3, 100)), "same");
    assert_age(&reg, t, 1, 100);
}

#[test]
fn equal_version_conflicting_contents_resolve_the_same_either_way() {
    let t = Instant::now();
    let a = upd(1, 1, 3, 100);
    let mut b = upd(1, 1, 3, 300);
    b.record.addrs = vec![SocketAddr::from(([200, 0, 0, 1], 9))];
    let mut ab = Registry::new(RegistryConfig::default());
    ab.merge(t, a.clone());
    ab.merge(t, b.clone());
    let mut ba = Registry::new(RegistryConfig::default());
    ba.merge(t, b.clone());
    ba.merge(t, a);
    assert_eq!(ab.export(t), ba.export(t));
    // The greater contents win, with the fresher of the two ages.
    assert_eq!(ab.get(&id(1)), Some(&b.record));
    assert_age(&ab, t, 1, 100);
}

#[test]
fn status_boundaries_are_exact() {
    let c = RegistryConfig::default();
    let t = Instant::now();
    let mut reg = Registry::new(c.clone());
    reg.observe(t, rec(1, 1, 0));
    let at = |d: Duration| reg.status(t + d, &id(1));
    assert_eq!(at(Duration::ZERO), Some(Status::Alive));
    assert_eq!(at(c.suspect_after - NS), Some(Status::Alive));
    assert_eq!(at(c.suspect_after), Some(Status::Suspect));
    assert_eq!(at(c.dead_after - NS), Some(Status::Suspect));
    assert_eq!(at(c.dead_after), Some(Status::Dead));
    assert_eq!(at(c.drop_after()), Some(Status::Dead));
    assert_eq!(at(c.drop_after() + NS), None);
    // Expired entries leave views and exports at once, before any `handle_timeout`.
    let gone = t + c.drop_after() + NS;
    assert!(reg.view(gone).nodes.is_empty());
    assert!(reg.export(gone).0.is_empty());
    assert_eq!(reg.view(gone - NS).nodes.len(), 1);
}

#[test]
fn handle_timeout_emits_each_transition_at_poll_timeout() {
    let c = RegistryConfig::for_test();
    let t = Instant::now();
    let mut reg = Registry::new(c.clone());
    assert_eq!(reg.poll_timeout(), None);
    reg.observe(t, rec(1, 1, 0));
    events(&mut reg);

    assert_eq!(reg.poll_timeout(), Some(t + c.suspect_after));
    reg.handle_timeout(t + c.suspect_after - NS);
    assert_eq!(events(&mut reg), []);
    reg.handle_timeout(t + c.suspect_after);
    assert_eq!(
        events(&mut reg),
        [changed(Status::Alive, Status::Suspect, 1)]
    );

    assert_eq!(reg.poll_timeout(), Some(t + c.dead_after));
    reg.handle_timeout(t + c.dead_after);
    assert_eq!(
        events(&mut reg),
        [changed(Status::Suspect, Status::Dead, 1)]
    );

    let drop_at = t + c.drop_after() + NS;
    assert_eq!(reg.poll_timeout(), Some(drop_at));
    reg.handle_timeout(drop_at - NS);
    assert_eq!(events(&mut reg), []);
    assert_eq!(reg.len(), 1);
    reg.handle_timeout(drop_at);
    assert_eq!(
        events(&mut reg),
        [RegistryEvent::Dropped {
            id: id(1),
            name: "node-01".into()
        }]
    );
    assert!(reg.is_empty());
    assert_eq!(reg.get(&id(1)), None);
    assert!(reg.digest().nodes.is_empty());

    // The tombstone is forgotten `gc_after` later, silently.
    let forget_at = drop_at + c.gc_after;
    assert_eq!(reg.poll_timeout(), Some(forget_at));
    reg.handle_timeout(forget_at);
    assert_eq!(events(&mut reg), []);
    assert_eq!(reg.poll_timeout(), None);
    assert!(reg.nodes.is_empty() && reg.deadlines.is_empty());
}

#[test]
fn a_late_timeout_reports_one_jump() {
    let c = RegistryConfig::for_test();
    let t = Instant::now();
    let mut reg = Registry::new(c.clone());
    reg.observe(t, rec(1, 1, 0));
    events(&mut reg);
    reg.handle_timeout(t + c.dead_after + ms(10));
    assert_eq!(events(&mut reg), [changed(Status::Alive, Status::Dead, 1)]);
    // Nothing else is due before the drop.
    assert_eq!(reg.poll_timeout(), Some(t + c.drop_after() + NS));
}

#[test]
fn a_new_version_revives_a_dead_entry() {
    let c = RegistryConfig::for_test();
    let t = Instant::now();
    let mut reg = Registry::new(c.clone());
    reg.observe(t, rec(1, 1, 0));
    reg.handle_timeout(t + c.dead_after);
    events(&mut reg);
    let later = t + c.dead_after + ms(5);
    assert!(reg.observe(later, rec(1, 1, 1)));
    assert_eq!(events(&mut reg), [changed(Status::Dead, Status::Alive, 1)]);
    assert_eq!(reg.poll_timeout(), Some(later + c.suspect_after));
    // A fresher copy of the same version from a fellow moves the deadline too.
    assert!(reg.merge(later + ms(100), upd(1, 1, 1, 0)));
    assert_eq!(reg.poll_timeout(), Some(later + ms(100) + c.suspect_after));
}

#[test]
fn gc_drop_leaves_a_tombstone_that_only_a_newer_version_passes() {
    let c = RegistryConfig::for_test();
    let t = Instant::now();
    let mut reg = Registry::new(c.clone());
    reg.observe(t, rec(1, 1, 7));
    let dropped = t + c.drop_after() + NS;
    reg.handle_timeout(dropped);
    events(&mut reg);
    // A fellow that still holds the entry (it looks a little fresher there) cannot bring it back.
    assert!(!reg.merge(dropped, upd(1, 1, 7, 0)));
    assert!(!reg.merge(dropped, upd(1, 1, 6, 0)));
    assert_eq!(reg.status(dropped, &id(1)), None);
    // A restarted node (new incarnation) is welcome.
    assert!(reg.observe(dropped, rec(1, 2, 0)));
    assert_eq!(
        events(&mut reg),
        [RegistryEvent::Added {
            id: id(1),
            name: "node-01".into()
        }]
    );
    assert_eq!(reg.status(dropped, &id(1)), Some(Status::Alive));
}

#[test]
fn an_entry_expired_before_handle_timeout_is_reported_dropped_when_replaced() {
    let c = RegistryConfig::for_test();
    let t = Instant::now();
    let mut reg = Registry::new(c.clone());
    reg.observe(t, rec(1, 1, 0));
    events(&mut reg);
    let late = t + c.drop_after() + ms(1);
    assert!(
        !reg.observe(late, rec(1, 1, 0)),
        "expired: acts as a tombstone"
    );
    assert!(reg.observe(late, rec(1, 2, 0)));
    assert_eq!(
        events(&mut reg),
        [
            RegistryEvent::Dropped {
                id: id(1),
                name: "node-01".into()
            },
            RegistryEvent::Added {
                id: id(1),
                name: "node-01".into()
            }
        ]
    );
    reg.handle_timeout(late);
    assert_eq!(events(&mut reg), []);
}

#[test]
fn update_past_the_drop_horizon_is_ignored() {
    let c = RegistryConfig::default();
    let horizon = u64::try_from(c.drop_after().as_millis()).unwrap();
    let t = Instant::now();
    let mut reg = Registry::new(c);
    assert!(!reg.merge(t, upd(1, 1, 0, horizon + 1)));
    assert!(reg.is_empty());
    assert!(reg.merge(t, upd(1, 1, 0, horizon)));
    assert_eq!(reg.status(t, &id(1)), Some(Status::Dead));
    assert_eq!(
        events(&mut reg),
        [RegistryEvent::Added {
            id: id(1),
            name: "node-01".into()
        }]
    );
}

#[test]
fn huge_age_does_not_panic_and_is_ignored() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    assert!(!reg.merge(t, upd(1, 1, 0, u64::MAX)));
    let delta = Delta {
        nodes: vec![upd(2, 1, 0, u64::MAX)],
        ..Delta::default()
    };
    assert!(!reg.apply_delta(t, &delta));
    assert!(reg.is_empty());

    // Even a configuration that accepts any age copes.
    let mut lax = Registry::new(RegistryConfig {
        gc_after: Duration::MAX,
        ..RegistryConfig::default()
    });
    assert!(lax.merge(t, upd(1, 1, 0, u64::MAX)));
    assert_eq!(lax.status(t, &id(1)), Some(Status::Dead));
    lax.handle_timeout(t + ms(1));
    let _ = lax.poll_timeout();
    let _ = lax.export(t);
}

#[test]
fn time_helpers_saturate_and_round_up() {
    let t = Instant::now();
    assert!(instant_before(t, Duration::MAX) <= t);
    assert_eq!(instant_before(t, ms(1500)), t - ms(1500));
    assert_eq!(age_ms(t, t - ms(5)), 5);
    assert_eq!(age_ms(t, t - ms(5) - NS), 6);
    assert_eq!(age_ms(t, t + ms(5)), 0);
}

#[test]
fn delta_for_sends_what_the_other_lacks_and_wants_what_it_has_newer() {
    let t = Instant::now();
    let mut a = Registry::new(RegistryConfig::default());
    a.merge(t, upd(1, 1, 5, 10));
    a.merge(t, upd(2, 1, 3, 20));
    a.merge(t, upd(3, 1, 1, 30));
    a.merge(t, upd(5, 2, 0, 40));
    a.merge_broadcast(bcast(1, 2, BroadcastState::Active));
    a.merge_broadcast(bcast(2, 1, BroadcastState::Active));
    a.merge_broadcast(bcast(4, 3, BroadcastState::Active));
    let digest = Digest {
        nodes: vec![
            (id(4), Version::new(1, 1)), // unknown here
            (id(1), Version::new(1, 5)), // equal
            (id(2), Version::new(1, 4)), // newer there
            (id(5), Version::new(1, 9)), // older there (lower incarnation)
            (id(4), Version::new(1, 0)), // duplicate
        ],
        broadcasts: vec![(bid(1), 1), (bid(3), 1), (bid(4), 3)],
    };
    let later = t + ms(100);
    let delta = a.delta_for(later, &digest);
    assert_eq!(delta.nodes, [upd(3, 1, 1, 130), upd(5, 2, 0, 140)]);
    assert_eq!(delta.want_nodes, [id(2), id(4)]);
    assert_eq!(
        delta.broadcasts,
        [
            bcast(1, 2, BroadcastState::Active),
            bcast(2, 1, BroadcastState::Active)
        ]
    );
    assert_eq!(delta.want_broadcasts, [bid(3)]);

    // An empty digest gets everything and wants nothing.
    let all = a.delta_for(later, &Digest::default());
    assert_eq!(all.nodes.len(), 4);
    assert_eq!(all.broadcasts.len(), 3);
    assert!(all.want_nodes.is_empty() && all.want_broadcasts.is_empty());
    // Our own digest gets nothing.
    assert_eq!(a.delta_for(later, &a.digest()), Delta::default());
}

#[test]
fn delta_for_respects_tombstones() {
    let c = RegistryConfig::for_test();
    let t = Instant::now();
    let mut a = Registry::new(c.clone());
    a.observe(t, rec(1, 1, 5));
    let now = t + c.drop_after() + NS;
    a.handle_timeout(now);
    let same = Digest {
        nodes: vec![(id(1), Version::new(1, 5))],
        ..Digest::default()
    };
    assert!(a.delta_for(now, &same).want_nodes.is_empty());
    let newer = Digest {
        nodes: vec![(id(1), Version::new(2, 0))],
        ..Digest::default()
    };
    assert_eq!(a.delta_for(now, &newer).want_nodes, [id(1)]);
}

#[test]
fn answer_wants_returns_exactly_the_known_wanted_entries() {
    let t = Instant::now();
    let mut a = Registry::new(RegistryConfig::default());
    a.merge(t, upd(1, 1, 1, 10));
    a.merge(t, upd(2, 1, 1, 20));
    a.merge_broadcast(bcast(1, 1, BroadcastState::Active));
    let answer = a.answer_wants(t, &[id(2), id(9), id(2)], &[bid(1), bid(7)]);
    assert_eq!(
        answer,
        Delta {
            nodes: vec![upd(2, 1, 1, 20)],
            broadcasts: vec![bcast(1, 1, BroadcastState::Active)],
            want_nodes: vec![],
            want_broadcasts: vec![],
        }
    );
}

#[test]
fn one_push_pull_round_makes_both_sides_equal() {
    let t = Instant::now();
    let mut a = Registry::new(RegistryConfig::default());
    let mut b = Registry::new(RegistryConfig::default());
    a.merge(t, upd(1, 1, 5, 10));
    a.merge(t, upd(2, 1, 3, 20));
    a.merge(t, upd(3, 1, 1, 30));
    b.merge(t, upd(2, 1, 4, 25));
    b.merge(t, upd(3, 1, 0, 5));
    b.merge(t, upd(4, 3, 0, 50));
    a.merge_broadcast(bcast(1, 2, BroadcastState::Active));
    b.merge_broadcast(bcast(1, 3, BroadcastState::Failed));
    b.merge_broadcast(bcast(2, 1, BroadcastState::Active));
    assert_ne!(a.digest(), b.digest());

    // A initiates: A.digest -> B.delta_for -> A.apply_delta + A.answer_wants -> B.apply_delta.
    let delta = b.delta_for(t, &a.digest());
    assert!(a.apply_delta(t, &delta));
    let answer = a.answer_wants(t, &delta.want_nodes, &delta.want_broadcasts);
    assert!(answer.want_nodes.is_empty() && answer.want_broadcasts.is_empty());
    assert!(b.apply_delta(t, &answer));

    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.export(t), b.export(t));
    assert_eq!(a.view(t), b.view(t));
    assert_eq!(a.len(), 4);
    assert_eq!(a.get(&id(2)).unwrap().version, Version::new(1, 4));
    // A second round changes nothing.
    let again = b.delta_for(t, &a.digest());
    assert_eq!(again, Delta::default());
}

#[test]
fn view_is_sorted_by_name_then_id_with_status_and_age() {
    let c = RegistryConfig::default();
    let t = Instant::now();
    let mut reg = Registry::new(c);
    let mut r = rec(3, 1, 0);
    r.name = "alpha".into();
    reg.merge(
        t,
        EntryUpdate {
            record: r,
            age_ms: 4000,
        },
    );
    let mut r = rec(1, 1, 0);
    r.name = "beta".into();
    reg.merge(
        t,
        EntryUpdate {
            record: r,
            age_ms: 0,
        },
    );
    let mut r = rec(2, 1, 0);
    r.name = "alpha".into();
    reg.merge(
        t,
        EntryUpdate {
            record: r,
            age_ms: 7000,
        },
    );
    reg.merge_broadcast(bcast(2, 1, BroadcastState::Active));
    let mut b = bcast(1, 1, BroadcastState::Active);
    b.name = "zz".into();
    reg.merge_broadcast(b);

    let view = reg.view(t);
    let lines: Vec<(&str, NodeId, Status, u64)> = view
        .nodes
        .iter()
        .map(|e| (e.record.name.as_str(), e.record.id, e.status, e.age_ms))
        .collect();
    assert_eq!(
        lines,
        [
            ("alpha", id(2), Status::Dead, 7000),
            ("alpha", id(3), Status::Suspect, 4000),
            ("beta", id(1), Status::Alive, 0),
        ]
    );
    let names: Vec<&str> = view.broadcasts.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["dir-2", "zz"]);
}

#[test]
fn broadcast_merge_keeps_higher_version_and_breaks_ties_deterministically() {
    let mut reg = Registry::new(RegistryConfig::default());
    assert!(reg.merge_broadcast(bcast(1, 2, BroadcastState::Active)));
    assert_eq!(
        events(&mut reg),
        [RegistryEvent::BroadcastAdded { id: bid(1) }]
    );
    assert!(!reg.merge_broadcast(bcast(1, 1, BroadcastState::Failed)));
    assert!(!reg.merge_broadcast(bcast(1, 2, BroadcastState::Active)));
    assert!(reg.merge_broadcast(bcast(1, 2, BroadcastState::Failed)));
    assert!(!reg.merge_broadcast(bcast(1, 2, BroadcastState::Active)));
    assert!(reg.merge_broadcast(bcast(1, 3, BroadcastState::Active)));
    assert_eq!(events(&mut reg), []);
    assert_eq!(reg.broadcast_count(), 1);
    assert_eq!(reg.digest().broadcasts, [(bid(1), 3)]);

    let mut other = Registry::new(RegistryConfig::default());
    other.merge_broadcast(bcast(1, 2, BroadcastState::Failed));
    other.merge_broadcast(bcast(1, 2, BroadcastState::Active));
    assert_eq!(
        other.view(Instant::now()).broadcasts,
        [bcast(1, 2, BroadcastState::Failed)]
    );
}

#[test]
fn events_are_bounded_dropping_the_oldest() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    let extra = 5_u16;
    for i in 0..(MAX_EVENTS as u16 + extra) {
        let mut r = rec(0, 1, 0);
        r.id.0[..2].copy_from_slice(&i.to_be_bytes());
        reg.observe(t, r);
    }
    assert_eq!(reg.events.len(), MAX_EVENTS);
    assert_eq!(reg.events_dropped(), u64::from(extra));
    let Some(RegistryEvent::Added { id: first, .. }) = reg.poll_event() else {
        panic!("expected an Added event");
    };
    assert_eq!(first.0[..2], extra.to_be_bytes());
}

#[test]
fn apply_delta_reports_whether_anything_changed() {
    let t = Instant::now();
    let mut reg = Registry::new(RegistryConfig::default());
    let delta = Delta {
        nodes: vec![upd(1, 1, 1, 0), upd(2, 1, 1, 0)],
        broadcasts: vec![bcast(1, 1, BroadcastState::Active)],
        want_nodes: vec![id(7)],
        want_broadcasts: vec![],
    };
    assert!(reg.apply_delta(t, &delta));
    assert!(!reg.apply_delta(t, &delta));
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.get(&id(7)), None);
}

fn span(since: u64, upto: u64, items: Vec<Progress>) -> ProgressUpdate {
    ProgressUpdate {
        items,
        span: Some(swarmcast_proto::ProgressSpan { since, upto }),
        removed: Vec::new(),
    }
}

fn prog(b: u8, held: u64) -> Progress {
    Progress {
        broadcast: bid(b),
        held,
        total: 4,
        complete: held == 4,
        failed: None,
    }
}

#[test]
fn heartbeat_progress_is_merged_from_spans_and_replicates_with_its_change_number() {
    let t0 = Instant::now();
    let mut b1 = Registry::new(RegistryConfig::default());
    let ack = b1.observe_heartbeat(t0, rec(1, 5, 1), span(0, 2, vec![prog(1, 4), prog(2, 1)]));
    assert_eq!(ack, 2);
    let ack = b1.observe_heartbeat(t0 + ms(10), rec(1, 5, 2), span(2, 3, vec![prog(2, 3)]));
    assert_eq!(ack, 3);
    let held = |r: &Registry| {
        let rec = r.get(&id(1)).unwrap();
        let items: Vec<(u8, u64)> = rec
            .progress
            .iter()
            .map(|p| (p.broadcast.0[0], p.held))
            .collect();
        (items, rec.progress_seq)
    };
    assert_eq!(held(&b1), (vec![(1, 4), (2, 3)], 3));

    // A fellow gets the merged set and its number by anti-entropy, and continues from it.
    let mut b2 = Registry::new(RegistryConfig::default());
    let delta = b1.delta_for(t0 + ms(20), &b2.digest());
    b2.apply_delta(t0 + ms(20), &delta);
    assert_eq!(held(&b2), held(&b1));
    let ack = b2.observe_heartbeat(t0 + ms(30), rec(1, 5, 3), span(3, 4, vec![prog(3, 1)]));
    assert_eq!(ack, 4);
    assert_eq!(held(&b2), (vec![(1, 4), (2, 3), (3, 1)], 4));

    // A heartbeat of an older version changes nothing, and is told where the registry stands.
    let ack = b2.observe_heartbeat(t0 + ms(40), rec(1, 5, 2), span(4, 9, vec![prog(1, 0)]));
    assert_eq!(ack, 4);
    assert_eq!(held(&b2).1, 4);

    // A restarted node (new incarnation) starts from nothing: a delta is not applied to the
    // old incarnation's set, and the ack says 0 so that it sends the whole set.
    let ack = b2.observe_heartbeat(t0 + ms(50), rec(1, 6, 1), span(4, 5, vec![prog(4, 1)]));
    assert_eq!(ack, 0);
    assert_eq!(held(&b2), (vec![], 0));
    let ack = b2.observe_heartbeat(t0 + ms(60), rec(1, 6, 2), span(0, 1, vec![prog(4, 1)]));
    assert_eq!(ack, 1);
    assert_eq!(held(&b2), (vec![(4, 1)], 1));
}

#[test]
fn generation_moves_with_what_a_view_shows_not_with_heartbeat_counters() {
    let t0 = Instant::now();
    let mut r = Registry::new(RegistryConfig::default());
    r.observe(t0, rec(1, 5, 1));
    let g = r.generation();
    // A heartbeat that only advances the counter: a view shows nothing new.
    r.observe(t0 + ms(10), rec(1, 5, 2));
    assert_eq!(r.generation(), g);
    // New addresses do.
    let mut moved = rec(1, 5, 3);
    moved.addrs = vec![SocketAddr::from(([127, 0, 0, 1], 9))];
    r.observe(t0 + ms(20), moved);
    let g2 = r.generation();
    assert!(g2 > g);
    // So does progress, a broadcast record and a status change.
    let ack = r.observe_heartbeat(t0 + ms(30), rec(1, 5, 4), span(0, 1, vec![prog(1, 1)]));
    assert_eq!(ack, 1);
    let g3 = r.generation();
    assert!(g3 > g2);
    r.merge_broadcast(bcast(1, 1, BroadcastState::Active));
    let g4 = r.generation();
    assert!(g4 > g3);
    r.handle_timeout(t0 + ms(30) + RegistryConfig::default().suspect_after + ms(1));
    assert!(r.generation() > g4, "suspect");
}

#[test]
fn progress_claimed_on_broadcasts_nobody_announced_is_bounded_and_announced_ones_are_kept() {
    let t0 = Instant::now();
    let mut r = Registry::new(RegistryConfig::default());
    r.merge_broadcast(bcast(1, 1, BroadcastState::Active));
    let bogus = |page: u32| -> Vec<Progress> {
        (0..MAX_UNKNOWN_PROGRESS as u32)
            .map(|i| {
                let mut b = [0xee; 32];
                b[..4].copy_from_slice(&(page * 100_000 + i).to_be_bytes());
                Progress {
                    broadcast: BroadcastId(b),
                    ..prog(9, 4)
                }
            })
            .collect()
    };
    // Three beats of a whole heartbeat's worth of claims each, the announced one in the last.
    let mut seq = 0;
    for page in 0..3 {
        let mut items = bogus(page);
        if page == 2 {
            items.push(prog(1, 4));
        }
        let ack = r.observe_heartbeat(
            t0 + ms(u64::from(page) * 10),
            rec(7, 1, u64::from(page) + 1),
            span(seq, seq + 1, items),
        );
        seq += 1;
        assert_eq!(ack, seq, "the span still applies");
    }
    let held = &r.get(&id(7)).unwrap().progress;
    let unknown = held.iter().filter(|p| p.broadcast != bid(1)).count();
    assert_eq!(
        unknown, MAX_UNKNOWN_PROGRESS,
        "the first claims held, the rest ignored"
    );
    assert!(
        held.iter().any(|p| p.broadcast == bid(1) && p.complete),
        "progress on an announced broadcast is always kept"
    );
    let page_of = |p: &Progress| {
        u32::from_be_bytes([
            p.broadcast.0[0],
            p.broadcast.0[1],
            p.broadcast.0[2],
            p.broadcast.0[3],
        ]) / 100_000
    };
    assert!(
        held.iter()
            .all(|p| p.broadcast == bid(1) || page_of(p) == 0),
        "the first page is what is held"
    );
}

//! Heartbeat answers as changes since a cursor, on a virtual clock: one registry core, its
//! change log, and mirrors of twenty nodes heartbeating at random, while nodes join, change
//! progress, die, are garbage-collected and come back. After every answer a node's mirror must
//! equal the registry's view (ignoring heartbeat counters and ages, which partial answers do not
//! carry), and an idle registry's answers must be empty.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcast_bootstrap::registry::{
    ChangeLog, ChangeLogConfig, Registry, RegistryConfig, RegistryMirror,
};
use swarmcast_proto::{
    BroadcastId, BroadcastRecord, BroadcastState, NodeId, NodeRecord, Progress, RegistryCursor,
    RegistryView, Role, Status, Version,
};

const NODES: usize = 20;

fn node_id(n: usize) -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[0] = n as u8 + 1;
    NodeId(bytes)
}

fn record(n: usize, incarnation: u64, heartbeat: u64, held: u64) -> NodeRecord {
    NodeRecord {
        progress_seq: 0,
        id: node_id(n),
        name: format!("n{n:02}"),
        role: Role::Node,
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 7000 + n as u16))],
        version: Version::new(incarnation, heartbeat),
        progress: vec![Progress {
            broadcast: BroadcastId([7; 32]),
            held,
            total: 100,
            complete: false,
            failed: None,
        }],
        pull: false,
        groups: Vec::new(),
    }
}

/// What a node acts on: everything but heartbeat counters and ages.
fn essence(view: &RegistryView) -> Vec<(NodeId, Status, u64, Vec<Progress>)> {
    view.nodes
        .iter()
        .map(|e| {
            (
                e.record.id,
                e.status,
                e.record.version.incarnation,
                e.record.progress.clone(),
            )
        })
        .collect()
}

struct Node {
    alive: bool,
    incarnation: u64,
    heartbeat: u64,
    held: u64,
    next_beat: Instant,
    mirror: RegistryMirror,
}

fn answer(
    log: &mut ChangeLog,
    registry: &Registry,
    now: Instant,
    since: RegistryCursor,
) -> RegistryView {
    if log.needs_view(now) {
        log.handle_view(now, &registry.view(now));
    }
    log.answer(since)
}

#[test]
fn mirrors_follow_the_registry_through_churn() {
    for seed in 0..6u64 {
        run(seed);
    }
}

fn run(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let config = RegistryConfig::for_test();
    let mut registry = Registry::new(config.clone());
    // A refresh of zero: every answer sees the registry as it is, so mirrors must match exactly.
    let mut log = ChangeLog::new(
        7,
        ChangeLogConfig {
            refresh: Duration::ZERO,
            max_removed: 8,
        },
    );
    let start = Instant::now();
    let mut now = start;
    let mut nodes: Vec<Node> = (0..NODES)
        .map(|_| Node {
            alive: true,
            incarnation: 1,
            heartbeat: 0,
            held: 0,
            next_beat: start + Duration::from_millis(rng.random_range(0..200)),
            mirror: RegistryMirror::default(),
        })
        .collect();
    let mut partial_answers = 0;
    let mut whole_answers = 0;
    let step = Duration::from_millis(10);
    while now < start + Duration::from_secs(20) {
        now += step;
        registry.handle_timeout(now);
        while registry.poll_event().is_some() {}
        // Churn: a node dies, one comes back with a new incarnation, one makes progress.
        if rng.random_bool(0.01) {
            let i = rng.random_range(0..NODES);
            if nodes[i].alive {
                nodes[i].alive = false;
            } else {
                nodes[i].alive = true;
                nodes[i].incarnation += 1;
                nodes[i].heartbeat = 0;
                nodes[i].mirror = RegistryMirror::default();
            }
        }
        if rng.random_bool(0.02) {
            let i = rng.random_range(0..NODES);
            nodes[i].held = (nodes[i].held + 1).min(100);
        }
        if rng.random_bool(0.002) {
            registry.merge_broadcast(BroadcastRecord {
                id: BroadcastId([rng.random_range(1..4u8); 32]),
                name: "b".into(),
                origin: node_id(0),
                size: 1,
                chunks: 1,
                state: BroadcastState::Active,
                version: rng.random_range(1..5),
                seq: 0,
                published_ms: 0,
                audience: None,
            });
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            if !n.alive || now < n.next_beat {
                continue;
            }
            n.next_beat = now + Duration::from_millis(200);
            n.heartbeat += 1;
            registry.observe(now, record(i, n.incarnation, n.heartbeat, n.held));
            let since = n.mirror.since();
            let view = answer(&mut log, &registry, now, since);
            if view.partial {
                partial_answers += 1;
            } else {
                whole_answers += 1;
            }
            n.mirror.apply(view);
            assert_eq!(
                essence(&n.mirror.view()),
                essence(&registry.view(now)),
                "seed {seed}: node {i}'s mirror differs at {:?}",
                now - start
            );
            assert_eq!(n.mirror.view().broadcasts, registry.view(now).broadcasts);
        }
    }
    assert!(
        partial_answers > whole_answers * 5,
        "{partial_answers} vs {whole_answers}"
    );

    // A quiet fleet: everyone alive and heartbeating, nothing else changing. After one round
    // to catch up, answers are empty while the heartbeat counters keep advancing.
    for (i, n) in nodes.iter_mut().enumerate() {
        if !n.alive {
            n.alive = true;
            n.incarnation += 1;
            n.heartbeat = 0;
        }
        n.heartbeat += 1;
        registry.observe(now, record(i, n.incarnation, n.heartbeat, n.held));
    }
    for _ in 0..2 {
        for n in nodes.iter_mut() {
            let view = answer(&mut log, &registry, now, n.mirror.since());
            n.mirror.apply(view);
        }
        now += Duration::from_millis(150);
        for (i, n) in nodes.iter_mut().enumerate() {
            n.heartbeat += 1;
            registry.observe(now, record(i, n.incarnation, n.heartbeat, n.held));
        }
    }
    let mut cursors = BTreeMap::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        n.heartbeat += 1;
        registry.observe(now, record(i, n.incarnation, n.heartbeat, n.held));
        let view = answer(&mut log, &registry, now, n.mirror.since());
        assert!(view.partial, "seed {seed}");
        assert!(
            view.nodes.is_empty() && view.broadcasts.is_empty() && view.removed.is_empty(),
            "seed {seed}: an idle answer carries {view:?}"
        );
        cursors.insert(i, n.mirror.since());
        n.mirror.apply(view);
    }
    // Another bootstrap (another epoch) answers a cursor it did not issue with everything.
    let mut other = ChangeLog::new(8, ChangeLogConfig::default());
    let view = answer(&mut other, &registry, now, cursors[&0]);
    assert!(!view.partial);
    assert_eq!(essence(&view), essence(&registry.view(now)));
}

#[test]
fn a_cursor_older_than_the_remembered_removals_gets_everything() {
    let config = RegistryConfig::for_test();
    let mut registry = Registry::new(config.clone());
    let mut log = ChangeLog::new(
        1,
        ChangeLogConfig {
            refresh: Duration::ZERO,
            max_removed: 2,
        },
    );
    let t0 = Instant::now();
    for i in 0..5 {
        registry.observe(t0, record(i, 1, 1, 0));
    }
    let mut mirror = RegistryMirror::default();
    mirror.apply(answer(&mut log, &registry, t0, mirror.since()));
    assert_eq!(mirror.view().nodes.len(), 5);
    let old = mirror.since();
    // Nodes 0..3 stop; the rest keep beating until the three are dropped.
    let mut now = t0;
    let mut hb = 1;
    while now < t0 + config.drop_after() + Duration::from_millis(100) {
        now += Duration::from_millis(50);
        hb += 1;
        for i in 3..5 {
            registry.observe(now, record(i, 1, hb, 0));
        }
        registry.handle_timeout(now);
        log.handle_view(now, &registry.view(now));
    }
    assert_eq!(registry.view(now).nodes.len(), 2);
    // Three removals, two remembered: the old cursor cannot be continued.
    let view = log.answer(old);
    assert!(!view.partial);
    assert!(mirror.apply(view));
    assert_eq!(mirror.view().nodes.len(), 2);
    // A partial answer that does not continue the mirror's cursor is refused.
    let mut stranger = RegistryMirror::default();
    let mut partial = log.answer(mirror.since());
    assert!(partial.partial);
    partial.removed.push(node_id(3));
    assert!(!stranger.apply(partial));
    assert_eq!(stranger.since(), RegistryCursor::default());
}

//! Property tests: any sequence of inputs keeps the neighbour core's invariants.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use swarmcast_node::neighbours::{
    Action, DialFailure, Direction, NeighbourConfig, NeighbourState, Neighbours, Unsent,
};
use swarmcast_proto::{NodeId, NodeRecord, RegistryEntry, Role, Status, Version};

/// Peers 0..PEERS; the core itself is `SELF`, in the middle of the id order.
const PEERS: u8 = 12;
const SELF: u8 = 6;

fn id(n: u8) -> NodeId {
    NodeId([n; 32])
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 2, 0, n), 7000))
}

#[derive(Clone, Debug)]
enum Op {
    Registry(Vec<(u8, Status, Role)>),
    Connected(u8, Direction),
    DialFailed(u8, DialFailure),
    Congested(u8, bool),
    Closed(u8),
    /// Answer the latest ping to the peer (or a made-up nonce if none).
    Pong(u8),
    Ban(u8),
    /// Let time pass, then fire the timer.
    Wait(u16),
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        6 => Just(Status::Alive),
        1 => Just(Status::Suspect),
        1 => Just(Status::Dead)
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![8 => Just(Role::Node), 1 => Just(Role::Bootstrap)]
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    let direction = prop_oneof![Just(Direction::Outbound), Just(Direction::Inbound)];
    prop_oneof![
        1 => prop::collection::vec((peer.clone(), status(), role()), 0..12).prop_map(Op::Registry),
        4 => (peer.clone(), direction).prop_map(|(n, d)| Op::Connected(n, d)),
        1 => (peer.clone(), prop_oneof![
            Just(DialFailure::Unreachable),
            Just(DialFailure::Refused),
            Just(DialFailure::WrongPeer),
        ])
            .prop_map(|(n, f)| Op::DialFailed(n, f)),
        1 => (peer.clone(), any::<bool>()).prop_map(|(n, ping)| Op::Congested(n, ping)),
        1 => peer.clone().prop_map(Op::Closed),
        4 => peer.clone().prop_map(Op::Pong),
        1 => peer.prop_map(Op::Ban),
        4 => (0u16..3_000).prop_map(Op::Wait),
    ]
}

fn entry(n: u8, status: Status, role: Role) -> RegistryEntry {
    RegistryEntry {
        record: NodeRecord {
            progress_seq: 0,
            id: id(n),
            name: format!("n{n}"),
            role,
            addrs: vec![addr(n)],
            version: Version::new(1, 1),
            progress: Vec::new(),
            pull: false,
            groups: Vec::new(),
        },
        status,
        age_ms: 0,
    }
}

/// What the test knows, to judge the core's actions.
#[derive(Default)]
struct Model {
    /// Dialable peers per the latest registry.
    candidates: BTreeSet<NodeId>,
    banned: BTreeSet<NodeId>,
    last_nonce: BTreeMap<NodeId, u64>,
}

/// Invariants of the core's state.
fn check(core: &Neighbours, model: &Model, config: &NeighbourConfig) {
    let neighbours = core.neighbours();
    let ids: Vec<NodeId> = neighbours.iter().map(|n| n.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "neighbours sorted by id, one per peer");
    assert!(neighbours.len() <= config.max_neighbours);
    let dialling = neighbours
        .iter()
        .filter(|n| n.state == NeighbourState::Dialling)
        .count();
    assert!(
        dialling <= config.max_parallel_dials,
        "{dialling} dials in flight"
    );
    assert!(!ids.contains(&id(SELF)), "self is a neighbour");
    for n in &neighbours {
        assert!(
            !model.banned.contains(&n.id),
            "banned {:?} is a neighbour",
            n.id
        );
        if n.state == NeighbourState::Dialling {
            assert_eq!(n.direction, Direction::Outbound);
        }
    }
    assert_eq!(
        core.connected_count(),
        neighbours
            .iter()
            .filter(|n| n.state == NeighbourState::Connected)
            .count()
    );
}

/// The core's records, by peer.
fn snapshot(core: &Neighbours) -> BTreeMap<NodeId, NeighbourState> {
    core.neighbours()
        .into_iter()
        .map(|n| (n.id, n.state))
        .collect()
}

/// Drains the actions of one call, checking each against the records before and after it.
fn drain(
    core: &mut Neighbours,
    model: &mut Model,
    linked_before: &BTreeMap<NodeId, NeighbourState>,
) {
    let after = snapshot(core);
    let mut dialled = BTreeSet::new();
    while let Some(action) = core.poll_action() {
        match action {
            Action::Dial { id: peer, addr: a } => {
                assert!(
                    model.candidates.contains(&peer),
                    "dialled non-candidate {peer:?}"
                );
                assert!(!model.banned.contains(&peer));
                assert_ne!(peer, id(SELF));
                assert_eq!(a, addr(peer.0[0]));
                assert!(dialled.insert(peer), "dialled {peer:?} twice at once");
                assert_eq!(after.get(&peer), Some(&NeighbourState::Dialling));
            }
            Action::Close { id: peer, .. } => {
                assert!(linked_before.contains_key(&peer), "closed unknown {peer:?}");
                assert!(!after.contains_key(&peer), "closed {peer:?} but kept it");
            }
            Action::Ping { id: peer, nonce } => {
                assert_eq!(after.get(&peer), Some(&NeighbourState::Connected));
                model.last_nonce.insert(peer, nonce);
            }
        }
    }
    while core.poll_event().is_some() {}
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_input_sequence_keeps_the_invariants(seed: u64, ops in prop::collection::vec(op(), 1..120)) {
        let config = NeighbourConfig {
            target: 3,
            max_neighbours: 5,
            max_parallel_dials: 2,
            // Banned peers are cut off here; serve-only links have unit tests of their own.
            max_serve_only: 0,
            ..NeighbourConfig::default()
        };
        let mut core = Neighbours::new(config.clone(), id(SELF), seed);
        let mut model = Model::default();
        let mut now = Instant::now();
        for op in ops {
            let before = snapshot(&core);
            match op {
                Op::Registry(entries) => {
                    let entries: Vec<RegistryEntry> =
                        entries.into_iter().map(|(n, s, r)| entry(n, s, r)).collect();
                    let mut dead = BTreeSet::new();
                    model.candidates.clear();
                    for e in &entries {
                        match (e.status, e.record.role) {
                            (Status::Dead, _) => { dead.insert(e.record.id); }
                            (Status::Alive, Role::Node) if e.record.id != id(SELF) => {
                                model.candidates.insert(e.record.id);
                            }
                            _ => {}
                        }
                    }
                    model.candidates.retain(|c| !dead.contains(c));
                    core.handle_registry(now, &entries);
                    let after: BTreeSet<NodeId> =
                        core.neighbours().into_iter().map(|n| n.id).collect();
                    prop_assert!(after.is_disjoint(&dead), "a dead peer is kept");
                }
                Op::Connected(n, direction) => {
                    let accepted = core.handle_connected(now, id(n), addr(n), direction);
                    let was = before.get(&id(n)).copied();
                    if n == SELF || model.banned.contains(&id(n)) {
                        prop_assert!(!accepted);
                    }
                    if direction == Direction::Outbound {
                        prop_assert_eq!(accepted, was == Some(NeighbourState::Dialling));
                    } else if was.is_none() && accepted {
                        prop_assert!(before.len() < config.max_neighbours);
                    }
                    if accepted {
                        let state = core.neighbours().into_iter().find(|x| x.id == id(n)).unwrap();
                        prop_assert_eq!(state.state, NeighbourState::Connected);
                        prop_assert_eq!(state.direction, direction);
                    }
                }
                Op::DialFailed(n, f) => core.handle_dial_failed(now, id(n), f),
                Op::Congested(n, ping) => {
                    let unsent = match ping {
                        true => Unsent::Ping { nonce: 1 },
                        false => Unsent::Pong,
                    };
                    core.handle_congested(now, id(n), unsent)
                }
                Op::Closed(n) => core.handle_closed(now, id(n)),
                Op::Pong(n) => {
                    let nonce = model.last_nonce.get(&id(n)).copied().unwrap_or(42);
                    core.handle_pong(now, id(n), nonce);
                }
                Op::Ban(n) => {
                    model.banned.insert(id(n));
                    core.handle_ban(now, id(n));
                }
                Op::Wait(ms) => {
                    // Fire every timer due on the way, as a shell would, then one at the end.
                    let until = now + Duration::from_millis(u64::from(ms));
                    let mut fired = 0;
                    while let Some(t) = core.poll_timeout() {
                        if t > until {
                            break;
                        }
                        now = now.max(t);
                        let before = snapshot(&core);
                        core.handle_timeout(now);
                        drain(&mut core, &mut model, &before);
                        check(&core, &model, &config);
                        prop_assert!(core.poll_timeout().is_none_or(|t| t > now), "timer stuck");
                        fired += 1;
                        prop_assert!(fired < 10_000, "timer does not advance");
                    }
                    now = until;
                    let before = snapshot(&core);
                    core.handle_timeout(now);
                    drain(&mut core, &mut model, &before);
                    prop_assert!(core.poll_timeout().is_none_or(|t| t > now), "timer stuck");
                    continue;
                }
            }
            drain(&mut core, &mut model, &before);
            check(&core, &model, &config);
        }
    }
}

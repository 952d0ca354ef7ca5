//! The merge laws, as properties over arbitrary sets of updates.
//!
//! Every registry here is built at one fixed `now` from whole-millisecond ages, so the time
//! translation (`last_advanced = now - age`, exported as `age`) is exact and two registries can
//! be compared through their exported canonical form.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use proptest::prelude::*;
use swarmcast_proto::{BroadcastState, Progress, Role};

use super::*;

/// One input to a registry.
#[derive(Clone, Debug)]
enum Item {
    Node(EntryUpdate),
    Broadcast(BroadcastRecord),
}

/// Node updates from a pool of 4 ids with colliding versions; contents vary within a version (to
/// exercise the tie-break) and ages reach past the drop horizon of `for_test` (1.6 s).
fn node_update() -> impl Strategy<Value = EntryUpdate> {
    (
        0..4u8,
        0..3u64,
        0..4u64,
        0..2000u64,
        0..2u8,
        0..2u16,
        0..2u64,
    )
        .prop_map(
            |(n, incarnation, heartbeat, age_ms, name, port, held)| EntryUpdate {
                record: NodeRecord {
                    progress_seq: 0,
                    id: NodeId([n; 32]),
                    name: format!("n{n}-{name}"),
                    role: if name == 0 {
                        Role::Node
                    } else {
                        Role::Bootstrap
                    },
                    addrs: vec![SocketAddr::from(([127, 0, 0, 1], 7000 + port))],
                    version: Version::new(incarnation, heartbeat),
                    progress: vec![Progress {
                        broadcast: BroadcastId([1; 32]),
                        held,
                        total: 2,
                        complete: false,
                        failed: None,
                    }],
                    pull: false,
                    groups: Vec::new(),
                },
                age_ms,
            },
        )
}

fn broadcast() -> impl Strategy<Value = BroadcastRecord> {
    (0..3u8, 0..3u64, any::<bool>(), 0..2u8, 0..2u64, 0..2u64).prop_map(
        |(n, version, failed, name, size, seq)| BroadcastRecord {
            id: BroadcastId([n; 32]),
            name: format!("b{n}-{name}"),
            origin: NodeId([n; 32]),
            size,
            chunks: 1,
            state: if failed {
                BroadcastState::Failed
            } else {
                BroadcastState::Active
            },
            version,
            seq,
            published_ms: 0,
            audience: None,
        },
    )
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => node_update().prop_map(Item::Node),
        1 => broadcast().prop_map(Item::Broadcast),
    ]
}

fn items() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(item(), 0..24)
}

fn apply(reg: &mut Registry, now: Instant, items: &[Item]) {
    for item in items {
        match item.clone() {
            Item::Node(u) => {
                reg.merge(now, u);
            }
            Item::Broadcast(b) => {
                reg.merge_broadcast(b);
            }
        }
    }
}

fn build(now: Instant, items: &[Item]) -> Registry {
    let mut reg = Registry::new(RegistryConfig::for_test());
    apply(&mut reg, now, items);
    reg
}

/// `a ⊔ b`: a copy of `a` with everything of `b` merged in.
fn join(now: Instant, a: &Registry, b: &Registry) -> Registry {
    let mut out = a.clone();
    let (nodes, broadcasts) = b.export(now);
    for u in nodes {
        out.merge(now, u);
    }
    for r in broadcasts {
        out.merge_broadcast(r);
    }
    out
}

/// Everything that makes up a registry's state at `now`.
type Canonical = (
    (Vec<EntryUpdate>, Vec<BroadcastRecord>),
    RegistryView,
    Digest,
);

fn canonical(now: Instant, reg: &Registry) -> Canonical {
    (reg.export(now), reg.view(now), reg.digest())
}

fn now() -> Instant {
    Instant::now()
}

proptest! {
    #[test]
    fn any_order_gives_the_same_state(
        (items, shuffled) in items().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        let now = now();
        prop_assert_eq!(canonical(now, &build(now, &items)), canonical(now, &build(now, &shuffled)));
    }

    #[test]
    fn merge_is_commutative(a in items(), b in items()) {
        let now = now();
        let (a, b) = (build(now, &a), build(now, &b));
        prop_assert_eq!(canonical(now, &join(now, &a, &b)), canonical(now, &join(now, &b, &a)));
    }

    #[test]
    fn merge_is_associative(a in items(), b in items(), c in items()) {
        let now = now();
        let (a, b, c) = (build(now, &a), build(now, &b), build(now, &c));
        let left = join(now, &join(now, &a, &b), &c);
        let right = join(now, &a, &join(now, &b, &c));
        prop_assert_eq!(canonical(now, &left), canonical(now, &right));
    }

    #[test]
    fn merge_is_idempotent(items in items()) {
        let now = now();
        let once = build(now, &items);
        let doubled: Vec<Item> = items.iter().flat_map(|i| [i.clone(), i.clone()]).collect();
        prop_assert_eq!(canonical(now, &build(now, &doubled)), canonical(now, &once));
        let mut twice = once.clone();
        apply(&mut twice, now, &items);
        prop_assert_eq!(canonical(now, &twice), canonical(now, &once));
        prop_assert_eq!(canonical(now, &join(now, &once, &once)), canonical(now, &once));
    }

    /// Not just a lattice, the right one: each id ends at the highest version among the updates
    /// young enough to count, with the youngest age among those of that version.
    #[test]
    fn merge_keeps_the_newest_version_and_its_freshest_age(items in items()) {
        let now = now();
        let horizon = u64::try_from(RegistryConfig::for_test().drop_after().as_millis()).unwrap();
        let mut expected: BTreeMap<NodeId, (Version, u64)> = BTreeMap::new();
        for item in &items {
            if let Item::Node(u) = item {
                if u.age_ms > horizon {
                    continue;
                }
                let e = expected.entry(u.record.id).or_insert((u.record.version, u.age_ms));
                if u.record.version > e.0 {
                    *e = (u.record.version, u.age_ms);
                } else if u.record.version == e.0 {
                    e.1 = e.1.min(u.age_ms);
                }
            }
        }
        let got: BTreeMap<NodeId, (Version, u64)> = build(now, &items)
            .export(now)
            .0
            .into_iter()
            .map(|u| (u.record.id, (u.record.version, u.age_ms)))
            .collect();
        prop_assert_eq!(got, expected);
    }

    /// One push-pull round leaves both sides with the same versions of everything.
    #[test]
    fn one_push_pull_round_equalizes_versions(a in items(), b in items()) {
        let now = now();
        let (mut a, mut b) = (build(now, &a), build(now, &b));
        let delta = b.delta_for(now, &a.digest());
        a.apply_delta(now, &delta);
        let answer = a.answer_wants(now, &delta.want_nodes, &delta.want_broadcasts);
        b.apply_delta(now, &answer);
        prop_assert_eq!(a.digest(), b.digest());
    }
}

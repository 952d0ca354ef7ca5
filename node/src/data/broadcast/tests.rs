//! The broadcast core on a virtual clock.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmcast_proto::{
    BroadcastId, BroadcastRecord, BroadcastState, ChunkIndex, Have, HaveUpdate, Message, NodeId,
    NodeRecord, RegistryEntry, Role, Status, Version,
};

use super::*;
use crate::bitfield::Bitfield;
use crate::data::error::{ManifestFetchError, PieceError};
use crate::manifest::{ChunkHash, Entry, EntryKind, Layout, Manifest, manifest_id};
use crate::swarm::SwarmConfig;

const CHUNK: u32 = 1 << 20;

fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

const ME: u8 = 1;
const ORIGIN: u8 = 9;

/// A manifest of one file of `chunks` full chunks (one piece each), its bytes and id.
fn manifest(chunks: u32) -> (Arc<Manifest>, Arc<Layout>, Vec<u8>, BroadcastId) {
    let m = Manifest {
        version: crate::manifest::MANIFEST_VERSION,
        name: "dir".into(),
        chunk_size: CHUNK,
        entries: vec![Entry {
            path: "f".into(),
            kind: EntryKind::File {
                size: u64::from(chunks) * u64::from(CHUNK),
                mode: 0o644,
                chunks: (0..chunks).map(|i| ChunkHash([i as u8; 32])).collect(),
            },
        }],
    };
    let bytes = m.to_bytes();
    let id = manifest_id(&bytes);
    let layout = Arc::new(Layout::new(&m));
    (Arc::new(m), layout, bytes, id)
}

fn record(id: BroadcastId, chunks: u32, state: BroadcastState) -> BroadcastRecord {
    BroadcastRecord {
        id,
        name: "dir".into(),
        origin: node(ORIGIN),
        size: u64::from(chunks) * u64::from(CHUNK),
        chunks: u64::from(chunks),
        state,
        version: 1,
        seq: 0,
    }
}

fn origin_entry() -> RegistryEntry {
    RegistryEntry {
        record: NodeRecord {
            id: node(ORIGIN),
            name: "origin".into(),
            role: Role::Node,
            version: Version::new(1, 1),
            addrs: vec![origin_addr()],
            progress: Vec::new(),
        },
        status: Status::Alive,
        age_ms: 0,
    }
}

fn origin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4000))
}

fn have(id: BroadcastId, chunks: u32, held: &[u32]) -> Message {
    let mut bits = Bitfield::new(chunks);
    for c in held {
        bits.set(*c);
    }
    Message::Have(Have {
        broadcast: id,
        chunks,
        bits: bits.as_bytes().to_vec(),
    })
}

fn core(strategy: Strategy) -> Broadcasts {
    let config = BroadcastConfig {
        strategy,
        ..BroadcastConfig::default()
    };
    Broadcasts::new(config, node(ME), 7)
}

fn actions(c: &mut Broadcasts) -> Vec<BroadcastAction> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn requests(actions: &[BroadcastAction]) -> Vec<(NodeId, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            BroadcastAction::Request { peer, piece, .. } => Some((*peer, *piece)),
            _ => None,
        })
        .collect()
}

fn count(actions: &[BroadcastAction], f: impl Fn(&BroadcastAction) -> bool) -> usize {
    actions.iter().filter(|a| f(a)).count()
}

#[track_caller]
fn state(c: &Broadcasts, id: BroadcastId) -> String {
    let hex = id.to_hex();
    c.list().into_iter().find(|b| b.id == hex).unwrap().state
}

/// A receiver of a `chunks`-chunk broadcast, the origin named by the registry and connected.
fn receiving(strategy: Strategy, chunks: u32, now: Instant) -> (Broadcasts, BroadcastId) {
    let mut c = core(strategy);
    let (m, layout, _, id) = manifest(chunks);
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![record(id, chunks, BroadcastState::Active)],
    );
    c.handle_peer_up(now, node(ORIGIN));
    // The registry made it unknown; adding the workspace replaces that.
    let _ = actions(&mut c);
    c.add_receiver(now, id, m, layout, Bitfield::new(chunks), false);
    (c, id)
}

#[test]
fn a_receiver_is_served_announced_and_asks_the_origin() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 4, now);
    let a = actions(&mut c);
    assert!(a.contains(&BroadcastAction::Serve {
        id,
        super_seed: false
    }));
    assert!(a.contains(&BroadcastAction::Flood {
        msg: have(id, 4, &[])
    }));
    c.handle_peer_message(now, node(ORIGIN), have(id, 4, &[0, 1, 2, 3]));
    let a = actions(&mut c);
    assert!(
        requests(&a).iter().all(|(p, _)| *p == node(ORIGIN)) && !requests(&a).is_empty(),
        "{a:?}"
    );
    assert_eq!(state(&c, id), "receiving");
}

#[test]
fn lifecycle_commit_then_advertise_then_finalize_once() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 2, now);
    c.handle_peer_message(now, node(ORIGIN), have(id, 2, &[0, 1]));
    let mut asked = requests(&actions(&mut c));
    let mut finalizes = 0;
    let mut t = now;
    let mut rounds = 0;
    while let Some((peer, piece)) = asked.pop() {
        rounds += 1;
        assert!(rounds <= 2, "each piece is asked once");
        t += Duration::from_millis(10);
        let held = c.report().progress[0].held;
        c.handle_piece_received(t, id, peer, piece, u64::from(CHUNK));
        let a = actions(&mut c);
        assert_eq!(
            count(&a, |a| *a == BroadcastAction::Commit { id }),
            1,
            "{a:?}"
        );
        // Received is advertised at once (a forwarded piece never waits for an fsync), but
        // held (progress, resume) only once the commit says durable.
        let update = BroadcastAction::Flood {
            msg: Message::HaveUpdate(HaveUpdate {
                broadcast: id,
                chunks: vec![ChunkIndex(piece)],
            }),
        };
        assert!(a.contains(&update), "{a:?}");
        assert_eq!(c.report().progress[0].held, held);
        asked.extend(requests(&a));
        c.handle_durable(t, id, Ok(vec![piece]));
        let a = actions(&mut c);
        assert!(!a.contains(&update), "advertised twice: {a:?}");
        assert_eq!(c.report().progress[0].held, held + 1);
        finalizes += count(&a, |a| *a == BroadcastAction::Finalize { id });
        asked.extend(requests(&a));
    }
    assert_eq!(finalizes, 1);
    assert_eq!(state(&c, id), "receiving", "complete only once published");
    c.handle_finalized(t, id, Ok("/d/received/dir".into()));
    assert!(actions(&mut c).is_empty());
    let info = c.list().pop().unwrap();
    assert_eq!(info.state, "complete");
    assert_eq!(info.path.as_deref(), Some("/d/received/dir"));
    assert_eq!(info.fetched_bytes, 2 * u64::from(CHUNK));
}

#[test]
fn one_commit_runs_at_a_time_and_pieces_waiting_share_the_next() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 4, now);
    c.handle_peer_message(now, node(ORIGIN), have(id, 4, &[0, 1, 2, 3]));
    let _ = actions(&mut c);
    let commits =
        |c: &mut Broadcasts| count(&actions(c), |a| matches!(a, BroadcastAction::Commit { .. }));
    // Reports of pieces not asked for are still taken while they are missing.
    c.handle_piece_received(now, id, node(ORIGIN), 0, 1);
    assert_eq!(commits(&mut c), 1);
    // Two more arrive while the commit runs: no second commit yet.
    c.handle_piece_received(now, id, node(ORIGIN), 1, 1);
    c.handle_piece_received(now, id, node(ORIGIN), 2, 1);
    assert_eq!(commits(&mut c), 0);
    // The first ends: one commit for both waiting.
    c.handle_durable(now, id, Ok(vec![0]));
    assert_eq!(commits(&mut c), 1);
    c.handle_durable(now, id, Ok(vec![1, 2]));
    assert_eq!(commits(&mut c), 0, "nothing waits");
    assert_eq!(c.report().progress[0].held, 3);
}

#[test]
fn a_failed_commit_fails_the_broadcast() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 2, now);
    c.handle_peer_message(now, node(ORIGIN), have(id, 2, &[0, 1]));
    let _ = actions(&mut c);
    c.handle_piece_received(now, id, node(ORIGIN), 0, 1);
    let _ = actions(&mut c);
    let e = StoreError::Corrupt { index: 0 };
    c.handle_durable(now, id, Err(e));
    let info = c.list().pop().unwrap();
    assert_eq!(info.state, "failed");
    assert!(info.error.unwrap().starts_with("commit failed"));
    // No transfer any more: a late answer starts no commit.
    c.handle_piece_received(now, id, node(ORIGIN), 1, 1);
    assert!(actions(&mut c).is_empty());
}

#[test]
fn a_resumed_complete_workspace_is_finalized_at_once() {
    let now = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (m, layout, _, id) = manifest(3);
    c.add_receiver(now, id, m, layout, Bitfield::full(3), true);
    let a = actions(&mut c);
    assert_eq!(count(&a, |a| *a == BroadcastAction::Finalize { id }), 1);
    assert_eq!(c.list()[0].resumed_chunks, 3);
    // The registry naming the origin later starts a transfer that is already complete: no
    // second finalize.
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![record(id, 3, BroadcastState::Active)],
    );
    let a = actions(&mut c);
    assert_eq!(
        count(&a, |a| *a == BroadcastAction::Finalize { id }),
        0,
        "{a:?}"
    );
}

#[test]
fn the_origin_declaring_failure_stops_a_receiver() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 2, now);
    let _ = actions(&mut c);
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![record(id, 2, BroadcastState::Failed)],
    );
    let a = actions(&mut c);
    assert!(a.contains(&BroadcastAction::AbortRequests { id }));
    assert!(a.contains(&BroadcastAction::Unserve { id }));
    assert_eq!(state(&c, id), "failed");
    // Reported with the reason, so that `--wait` stops counting on this node.
    let p = progress(&c, id);
    assert_eq!(
        p.failed.as_deref(),
        Some("the origin declared the broadcast failed")
    );
}

#[test]
fn origin_super_seeds_in_a_swarm_only() {
    let now = Instant::now();
    for (strategy, super_seed) in [(Strategy::Swarm, true), (Strategy::OriginOnly, false)] {
        let mut c = core(strategy);
        let (m, layout, _, id) = manifest(2);
        c.add_origin(now, id, m, layout, "/src/dir".into());
        let a = actions(&mut c);
        assert_eq!(a[0], BroadcastAction::Serve { id, super_seed });
        assert!(c.is_seeding(&id));
        assert_eq!(c.report().records[0].version, 1);
        c.handle_source_changed(id, 1);
        assert!(!c.is_seeding(&id));
        let r = &c.report().records[0];
        assert_eq!((r.state, r.version), (BroadcastState::Failed, 2));
        let info = c.list().pop().unwrap();
        assert_eq!(info.state, "failed");
        assert!(info.error.unwrap().contains("source changed under chunk 1"));
    }
}

#[test]
fn a_new_neighbour_gets_a_full_have_of_everything() {
    let now = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (m, layout, _, id) = manifest(2);
    c.add_origin(now, id, m, layout, "/src/dir".into());
    let _ = actions(&mut c);
    c.handle_peer_up(now, node(5));
    assert_eq!(
        actions(&mut c),
        vec![BroadcastAction::Send {
            peer: node(5),
            msg: have(id, 2, &[0, 1])
        }]
    );
}

#[test]
fn strategy_filter_origin_only_asks_nobody_but_the_origin() {
    let now = Instant::now();
    for (strategy, asks_peer) in [(Strategy::Swarm, true), (Strategy::OriginOnly, false)] {
        let (mut c, id) = receiving(strategy, 4, now);
        c.handle_peer_up(now, node(5));
        let _ = actions(&mut c);
        c.handle_peer_message(now, node(5), have(id, 4, &[0, 1, 2, 3]));
        let asked = requests(&actions(&mut c));
        assert_eq!(
            asked.iter().any(|(p, _)| *p == node(5)),
            asks_peer,
            "{strategy:?}: {asked:?}"
        );
        // Have-updates pass the same filter.
        c.handle_peer_up(now, node(6));
        let _ = actions(&mut c);
        let update = Message::HaveUpdate(HaveUpdate {
            broadcast: id,
            chunks: (0..4).map(ChunkIndex).collect(),
        });
        c.handle_peer_message(now, node(6), update);
        let asked = requests(&actions(&mut c));
        assert_eq!(
            asked.iter().any(|(p, _)| *p == node(6)),
            asks_peer,
            "{strategy:?}: {asked:?}"
        );
        assert!(Strategy::OriginOnly.may_fetch_from(node(ORIGIN), Some(node(ORIGIN))));
    }
}

fn fetch_of(a: &[BroadcastAction]) -> Vec<ManifestSource> {
    a.iter()
        .filter_map(|a| match a {
            BroadcastAction::FetchManifest { from, .. } => Some(*from),
            _ => None,
        })
        .collect()
}

fn failed_fetch() -> ManifestFetchError {
    ManifestFetchError::Timeout(Duration::from_secs(10))
}

#[test]
fn manifest_fetch_asks_the_announcer_then_the_origin_with_backoff() {
    let t0 = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (_, _, bytes, id) = manifest(2);
    c.handle_peer_up(t0, node(5));
    c.handle_peer_message(t0, node(5), have(id, 2, &[0]));
    assert_eq!(
        fetch_of(&actions(&mut c)),
        vec![ManifestSource::Peer(node(5))]
    );
    // One fetch at a time: a registry view meanwhile starts nothing.
    c.handle_registry(
        t0,
        vec![origin_entry()],
        vec![record(id, 2, BroadcastState::Active)],
    );
    assert!(fetch_of(&actions(&mut c)).is_empty());
    // It fails: no immediate retry, but a timer 200-300 ms out.
    c.handle_manifest_fetched(t0, id, Err(failed_fetch()));
    assert!(actions(&mut c).is_empty());
    let first = c.poll_timeout().unwrap() - t0;
    assert!(
        first >= Duration::from_millis(200) && first <= Duration::from_millis(300),
        "{first:?}"
    );
    // Neither a registry view nor an early timer bypasses the backoff.
    let t1 = t0 + first / 2;
    c.handle_registry(
        t1,
        vec![origin_entry()],
        vec![record(id, 2, BroadcastState::Active)],
    );
    c.handle_timeout(t1);
    assert!(actions(&mut c).is_empty());
    // Due: the announcer was asked already, so the origin is dialled.
    let t2 = t0 + first;
    c.handle_timeout(t2);
    assert_eq!(
        fetch_of(&actions(&mut c)),
        vec![ManifestSource::Origin {
            node: node(ORIGIN),
            addr: origin_addr()
        }]
    );
    // A second failure backs off about twice as long.
    c.handle_manifest_fetched(t2, id, Err(failed_fetch()));
    let second = c.poll_timeout().unwrap() - t2;
    assert!(
        second >= Duration::from_millis(400) && second <= Duration::from_millis(600),
        "{second:?}"
    );
    // A new neighbour announcing it is tried at once.
    c.handle_peer_up(t2, node(6));
    c.handle_peer_message(t2, node(6), have(id, 2, &[1]));
    assert_eq!(
        fetch_of(&actions(&mut c)),
        vec![ManifestSource::Peer(node(6))]
    );
    // This one answers: the verified manifest becomes a workspace to create.
    c.handle_manifest_fetched(t2, id, Ok(bytes.clone()));
    let a = actions(&mut c);
    assert!(
        matches!(&a[..], [BroadcastAction::CreateWorkspace { id: i, bytes: b, .. }] if *i == id && *b == bytes),
        "{a:?}"
    );
}

#[test]
fn manifest_backoff_is_capped() {
    let mut t = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (_, _, _, id) = manifest(2);
    c.handle_registry(
        t,
        vec![origin_entry()],
        vec![record(id, 2, BroadcastState::Active)],
    );
    for _ in 0..12 {
        assert_eq!(fetch_of(&actions(&mut c)).len(), 1);
        c.handle_manifest_fetched(t, id, Err(failed_fetch()));
        let wait = c.poll_timeout().unwrap() - t;
        assert!(wait <= Duration::from_secs(15), "{wait:?}");
        t += wait;
        // The registry keeps mentioning it, so it never expires.
        c.handle_registry(
            t,
            vec![origin_entry()],
            vec![record(id, 2, BroadcastState::Active)],
        );
        c.handle_timeout(t);
    }
    assert_eq!(fetch_of(&actions(&mut c)).len(), 1, "still trying");
}

#[test]
fn unknown_broadcasts_nobody_mentions_expire_and_free_their_slot() {
    let t0 = Instant::now();
    let config = BroadcastConfig {
        max_unknown: 1,
        ..BroadcastConfig::default()
    };
    let ttl = config.unknown_ttl;
    let mut c = Broadcasts::new(config, node(ME), 1);
    let (_, _, _, a) = manifest(2);
    let (_, _, _, b) = manifest(3);
    c.handle_peer_up(t0, node(5));
    c.handle_peer_message(t0, node(5), have(a, 2, &[0]));
    assert_eq!(fetch_of(&actions(&mut c)).len(), 1);
    c.handle_manifest_fetched(t0, a, Err(failed_fetch()));
    // Full: a second unknown broadcast is not tracked.
    c.handle_peer_message(t0, node(5), have(b, 3, &[0]));
    assert!(actions(&mut c).is_empty());
    // `a` is retried once (nobody left to ask), then forgotten after the TTL.
    let mut t = t0;
    while let Some(next) = c.poll_timeout() {
        assert!(next <= t0 + ttl, "expires on time");
        t = next;
        c.handle_timeout(t);
        let fetched = fetch_of(&actions(&mut c));
        assert!(
            fetched.is_empty(),
            "nobody to ask, yet fetched from {fetched:?}"
        );
    }
    assert_eq!(t, t0 + ttl);
    // The slot is free again.
    c.handle_peer_message(t, node(5), have(b, 3, &[0]));
    assert_eq!(
        fetch_of(&actions(&mut c)),
        vec![ManifestSource::Peer(node(5))]
    );
}

#[test]
fn a_rejected_manifest_fails_for_good() {
    let now = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (_, _, _, id) = manifest(2);
    c.handle_peer_up(now, node(5));
    c.handle_peer_message(now, node(5), have(id, 2, &[0]));
    let _ = actions(&mut c);
    c.handle_manifest_fetched(now, id, Ok(b"not the manifest".to_vec()));
    assert!(actions(&mut c).is_empty());
    let info = c.list().pop().unwrap();
    assert_eq!(info.state, "failed");
    assert!(info.error.unwrap().starts_with("rejected manifest"));
    c.handle_peer_up(now, node(6));
    c.handle_peer_message(now, node(6), have(id, 2, &[0]));
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![record(id, 2, BroadcastState::Active)],
    );
    assert!(fetch_of(&actions(&mut c)).is_empty(), "never fetched again");
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn bad_chunks_get_a_peer_banned_and_declines_do_not() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 8, now);
    c.handle_peer_up(now, node(5));
    let _ = actions(&mut c);
    c.handle_peer_message(now, node(5), have(id, 8, &[0, 1, 2, 3, 4, 5, 6, 7]));
    let mut pending: Vec<(NodeId, u32)> = requests(&actions(&mut c));
    let bad = |index| PieceError::BadChunk {
        index,
        source: StoreError::HashMismatch { index },
    };
    let mut bad_reports = 0;
    let mut banned = false;
    let mut t = now;
    while let Some((peer, piece)) = pending.pop() {
        t += Duration::from_millis(1);
        assert!(t < now + Duration::from_secs(600), "no ban in sight");
        if peer == node(5) {
            bad_reports += 1;
            c.handle_piece_failed(t, id, peer, piece, &bad(piece), 10);
        } else {
            c.handle_piece_failed(t, id, peer, piece, &PieceError::Declined, 0);
        }
        let a = actions(&mut c);
        if a.contains(&BroadcastAction::Ban { peer: node(5) }) {
            banned = true;
            break;
        }
        pending.extend(requests(&a));
        if pending.is_empty() {
            t += Duration::from_secs(1);
            c.handle_timeout(t);
            pending.extend(requests(&actions(&mut c)));
        }
    }
    assert!(banned, "a peer serving bad chunks is banned");
    assert_eq!(bad_reports, SwarmConfig::default().max_strikes as usize);
}

/// Requests of broadcast `id` in `actions`.
fn requests_of(actions: &[BroadcastAction], of: BroadcastId) -> Vec<(NodeId, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            BroadcastAction::Request {
                id, peer, piece, ..
            } if *id == of => Some((*peer, *piece)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_banned_in_one_broadcast_is_never_fetched_from_in_another_but_stays_a_peer() {
    let now = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (ma, la, _, a) = manifest(8);
    let (mb, lb, _, b) = manifest(4);
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![
            record(a, 8, BroadcastState::Active),
            record(b, 4, BroadcastState::Active),
        ],
    );
    c.handle_peer_up(now, node(ORIGIN));
    c.handle_peer_up(now, node(5));
    c.add_receiver(now, a, ma, la, Bitfield::new(8), false);
    c.add_receiver(now, b, mb, lb, Bitfield::new(4), false);
    let _ = actions(&mut c);
    c.handle_peer_message(now, node(5), have(a, 8, &[0, 1, 2, 3, 4, 5, 6, 7]));
    let mut pending = requests_of(&actions(&mut c), a);
    let bad = |index| PieceError::BadChunk {
        index,
        source: StoreError::HashMismatch { index },
    };
    let mut t = now;
    let mut banned = false;
    while let Some((peer, piece)) = pending.pop() {
        t += Duration::from_millis(1);
        assert!(t < now + Duration::from_secs(600), "no ban in sight");
        if peer == node(5) {
            c.handle_piece_failed(t, a, peer, piece, &bad(piece), 10);
        } else {
            c.handle_piece_failed(t, a, peer, piece, &PieceError::Declined, 0);
        }
        let acts = actions(&mut c);
        if acts.contains(&BroadcastAction::Ban { peer: node(5) }) {
            banned = true;
            break;
        }
        pending.extend(requests_of(&acts, a));
        if pending.is_empty() {
            t += Duration::from_secs(1);
            c.handle_timeout(t);
            pending.extend(requests_of(&actions(&mut c), a));
        }
    }
    assert!(banned);
    assert!(c.is_banned(&node(5)));
    // Broadcast b hears of everything the banned peer holds, and the origin declines every
    // request: b never asks the banned peer.
    c.handle_peer_message(t, node(5), have(b, 4, &[0, 1, 2, 3]));
    c.handle_peer_message(t, node(ORIGIN), have(b, 4, &[0, 1, 2, 3]));
    let mut asked = Vec::new();
    for _ in 0..30 {
        t += Duration::from_secs(1);
        c.handle_timeout(t);
        let acts = actions(&mut c);
        assert!(
            !acts.contains(&BroadcastAction::Ban { peer: node(5) }),
            "banned once, not once per broadcast"
        );
        for (peer, piece) in requests_of(&acts, b) {
            asked.push(peer);
            c.handle_piece_failed(t, b, peer, piece, &PieceError::Declined, 0);
        }
        asked.extend(requests_of(&actions(&mut c), b).into_iter().map(|(p, _)| p));
    }
    assert!(!asked.is_empty(), "b fetches from someone");
    assert!(
        !asked.contains(&node(5)),
        "asked the banned peer: {asked:?}"
    );
    // It is still a peer: it gets the haves of new broadcasts (it is served).
    c.handle_peer_up(t, node(5));
    assert!(
        actions(&mut c)
            .iter()
            .any(|x| matches!(x, BroadcastAction::Send { peer, .. } if *peer == node(5)))
    );
}

#[test]
fn requests_go_only_to_connected_peers() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 4, now);
    c.handle_peer_message(now, node(ORIGIN), have(id, 4, &[0, 1, 2, 3]));
    let _ = actions(&mut c);
    c.handle_peer_down(now, node(ORIGIN));
    let _ = actions(&mut c);
    // A have from a peer that is not (or no longer) connected asks nobody.
    c.handle_peer_message(now, node(7), have(id, 4, &[0, 1, 2, 3]));
    assert!(requests(&actions(&mut c)).is_empty());
}

#[track_caller]
fn progress(c: &Broadcasts, id: BroadcastId) -> Progress {
    c.report()
        .progress
        .into_iter()
        .find(|p| p.broadcast == id)
        .unwrap()
}

#[test]
fn a_broadcast_without_chunks_reports_complete_once_published() {
    let now = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (m, layout, _, id) = manifest(0);
    c.add_receiver(now, id, m, layout, Bitfield::full(0), false);
    let a = actions(&mut c);
    assert_eq!(count(&a, |a| *a == BroadcastAction::Finalize { id }), 1);
    // held == total == 0, yet not complete until published.
    let p = progress(&c, id);
    assert_eq!((p.held, p.total, p.complete), (0, 0, false));
    c.handle_finalized(now, id, Ok(PathBuf::from("received/dir")));
    assert!(progress(&c, id).complete);
}

#[test]
fn failures_are_reported_with_their_reason_and_the_real_total() {
    let now = Instant::now();
    // A commit failure.
    let (mut c, id) = receiving(Strategy::Swarm, 2, now);
    c.handle_durable(now, id, Err(StoreError::Corrupt { index: 0 }));
    let p = progress(&c, id);
    assert!(p.failed.unwrap().starts_with("commit failed"));
    assert!(!p.complete);
    // A workspace that could not be made: no manifest here, the record gives the total.
    let mut c = core(Strategy::Swarm);
    let (_, _, _, id) = manifest(5);
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![record(id, 5, BroadcastState::Active)],
    );
    let _ = actions(&mut c);
    let err = StoreError::io("/data/broadcasts", std::io::Error::other("no space"));
    c.handle_workspace_failed(id, "dir".into(), err);
    let p = progress(&c, id);
    assert_eq!(p.total, 5);
    assert!(p.failed.unwrap().starts_with("cannot create the workspace"));
    let info = c.list().pop().unwrap();
    assert_eq!((info.chunks_total, info.state.as_str()), (5, "failed"));
}

/// A manifest like [`manifest`] with another name (so another id).
fn named_manifest(name: &str, chunks: u32) -> (Arc<Manifest>, Arc<Layout>, BroadcastId) {
    let (m, _, _, _) = manifest(chunks);
    let mut m = (*m).clone();
    m.name = name.into();
    let id = manifest_id(&m.to_bytes());
    let layout = Arc::new(Layout::new(&m));
    (Arc::new(m), layout, id)
}

/// Units of work (see `crate::work`) of 20 events at a receiver of a `chunks`-chunk broadcast
/// that also seeds `others` broadcasts: each a piece received, then made durable, with what
/// the shell does after every event (drain the actions, ask for a report and the next
/// timeout).
fn work_of_events(chunks: u32, others: usize) -> u64 {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, chunks, now);
    for k in 0..others {
        let (m, layout, oid) = named_manifest(&format!("other{k}"), 1);
        c.add_origin(now, oid, m, layout, PathBuf::from("/src"));
    }
    let all = Bitfield::full(chunks);
    c.handle_peer_message(
        now,
        node(ORIGIN),
        Message::Have(Have {
            broadcast: id,
            chunks,
            bits: all.as_bytes().to_vec(),
        }),
    );
    let mut asked = requests(&actions(&mut c));
    assert!(c.poll_report(now).is_some());
    let mut t = now;
    let ((), work) = crate::work::count(|| {
        for _ in 0..20 {
            // Within one report interval: progress is reported at most once per interval.
            t += Duration::from_millis(1);
            let (peer, piece) = asked.pop().unwrap();
            c.handle_piece_received(t, id, peer, piece, u64::from(CHUNK));
            asked.extend(requests(&actions(&mut c)));
            let _ = c.poll_report(t);
            let _ = c.poll_timeout();
            c.handle_durable(t, id, Ok(vec![piece]));
            asked.extend(requests(&actions(&mut c)));
            let _ = c.poll_report(t);
            let _ = c.poll_timeout();
        }
    });
    // The progress made is reported once the interval is over.
    let r = c.poll_report(t + Duration::from_millis(100)).unwrap();
    assert_eq!(
        r.progress.iter().find(|p| p.broadcast == id).unwrap().held,
        20
    );
    work
}

#[test]
fn the_work_of_an_event_does_not_grow_with_the_chunks_or_the_broadcasts_kept() {
    let base = work_of_events(10_000, 1);
    let many_chunks = work_of_events(1_000_000, 1);
    let many_broadcasts = work_of_events(10_000, 2_000);
    // The same events cost the same work: a walk over the chunks (a bitfield word per 64
    // chunks: 15,625 here) or over the broadcasts (2,000) per event would add at least that
    // much per event.
    assert!(
        many_chunks <= base + 20,
        "10k chunks: {base}, 1M chunks: {many_chunks}"
    );
    assert!(
        many_broadcasts <= base + 20,
        "1 broadcast: {base}, 2000 more: {many_broadcasts}"
    );
}

#[test]
fn progress_is_reported_at_a_bounded_rate_and_lifecycle_changes_at_once() {
    let now = Instant::now();
    let (mut c, id) = receiving(Strategy::Swarm, 8, now);
    c.handle_peer_message(now, node(ORIGIN), have(id, 8, &[0, 1, 2, 3, 4, 5, 6, 7]));
    let mut asked = requests(&actions(&mut c));
    // Adding the receiver is news: reported at once.
    assert!(c.poll_report(now).is_some());
    assert_eq!(c.poll_report(now), None, "nothing changed since");
    let (peer, piece) = asked.pop().unwrap();
    c.handle_piece_received(now, id, peer, piece, 1);
    c.handle_durable(now, id, Ok(vec![piece]));
    let _ = actions(&mut c);
    let interval = c.config().report_interval;
    assert_eq!(c.poll_report(now), None, "progress waits for the interval");
    let due = now + interval;
    assert!(
        c.poll_timeout().is_some_and(|t| t <= due),
        "the timer covers the report"
    );
    let r = c.poll_report(due).unwrap();
    assert_eq!(r, c.report());
    assert_eq!(r.progress[0].held, 1);
    // A lifecycle change (the origin failed it) is reported at once, interval or not.
    c.handle_registry(
        due,
        vec![origin_entry()],
        vec![record(id, 8, BroadcastState::Failed)],
    );
    let r = c.poll_report(due).unwrap();
    assert!(r.progress[0].failed.is_some(), "{r:?}");
}

/// A receiver whose workspace exists before the registry named the origin says so in its
/// report at once (membership then asks the registry instead of waiting for its period), and
/// stops saying so, at once too, when the record arrives and the transfer starts.
#[test]
fn a_receiver_waiting_for_its_origin_asks_for_the_registry_at_once() {
    let now = Instant::now();
    let mut c = core(Strategy::Swarm);
    let (m, layout, _, id) = manifest(4);
    c.handle_peer_up(now, node(ORIGIN));
    // Heard of by a neighbour's `Have`: no record yet.
    c.handle_peer_message(now, node(ORIGIN), have(id, 4, &[0, 1, 2, 3]));
    let _ = actions(&mut c);
    let _ = c.poll_report(now);
    c.add_receiver(now, id, m, layout, Bitfield::new(4), false);
    assert!(
        requests(&actions(&mut c)).is_empty(),
        "no origin, no transfer"
    );
    let r = c.poll_report(now).unwrap();
    assert!(r.awaiting_registry, "{r:?}");
    c.handle_registry(
        now,
        vec![origin_entry()],
        vec![record(id, 4, BroadcastState::Active)],
    );
    assert!(
        !requests(&actions(&mut c)).is_empty(),
        "the transfer started"
    );
    let r = c.poll_report(now).unwrap();
    assert!(!r.awaiting_registry, "{r:?}");
    // A receiver that knew the origin from the start never waits.
    let (mut c, _) = receiving(Strategy::Swarm, 4, now);
    let _ = actions(&mut c);
    assert!(!c.poll_report(now).unwrap().awaiting_registry);
}

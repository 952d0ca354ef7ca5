//! What a bootstrap accepts as a broadcast announcement, through the server's own request path
//! (decode, authorization, answer) against a real registry core.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Instant;

use swarmcast_bootstrap::registry::{MAX_SEQ_AHEAD, RegistryConfig};
use swarmcast_bootstrap::server::{BootstrapConfig, RequestPath};
use swarmcast_certs::PeerInfo;
use swarmcast_proto::{
    Announce, BroadcastId, BroadcastRecord, BroadcastState, ErrorCode, Limits, Message, NodeId,
    Role, encode,
};

fn node(i: u8) -> PeerInfo {
    PeerInfo {
        id: NodeId([i; 32]),
        name: format!("n{i}"),
        role: Role::Node,
        groups: Vec::new(),
    }
}

fn path() -> RequestPath {
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let mut config = BootstrapConfig::new(addr);
    config.registry = RegistryConfig::for_test();
    let me = PeerInfo {
        id: NodeId([0xee; 32]),
        name: "b1".into(),
        role: Role::Bootstrap,
        groups: Vec::new(),
    };
    RequestPath::new(me, addr, config)
}

fn record(id: u8, name: &str, origin: &PeerInfo, seq: u64) -> BroadcastRecord {
    BroadcastRecord {
        id: BroadcastId([id; 32]),
        name: name.into(),
        origin: origin.id,
        size: 1,
        chunks: 1,
        state: BroadcastState::Active,
        version: 1,
        seq,
        published_ms: 0,
        audience: None,
    }
}

fn announce(path: &RequestPath, from: &PeerInfo, record: BroadcastRecord) -> Message {
    let mut frame = Vec::new();
    encode(
        &Message::Announce(Announce { record }),
        &Limits::default(),
        &mut frame,
    )
    .unwrap();
    path.answer(from, &frame, Instant::now()).unwrap()
}

#[track_caller]
fn refused(answer: &Message, code: ErrorCode, says: &str) {
    match answer {
        Message::Error(e) => {
            assert_eq!(e.code, code, "{e:?}");
            assert!(
                e.message.contains(says),
                "{:?} does not say {says:?}",
                e.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_record_announced_by_another_node_than_its_origin_is_refused() {
    let path = path();
    let (origin, other) = (node(1), node(2));
    let answer = announce(&path, &other, record(1, "ds", &origin, 1));
    refused(&answer, ErrorCode::Forbidden, "is not the sender");
    assert_eq!(path.registry().broadcast_count(), 0);
    assert!(matches!(
        announce(&path, &origin, record(1, "ds", &origin, 1)),
        Message::Ack(_)
    ));
    assert_eq!(path.registry().broadcast_count(), 1);
}

#[test]
fn a_seq_more_than_the_bound_above_the_highest_for_its_name_is_refused() {
    let path = path();
    let origin = node(1);
    assert!(matches!(
        announce(&path, &origin, record(1, "ds", &origin, 5)),
        Message::Ack(_)
    ));
    // 5 + MAX_SEQ_AHEAD is the most that is accepted; one more is refused, naming the rule.
    let answer = announce(
        &path,
        &origin,
        record(2, "ds", &origin, 5 + MAX_SEQ_AHEAD + 1),
    );
    refused(&answer, ErrorCode::BadRequest, "above the highest held");
    assert_eq!(path.registry().max_seq("ds"), 5);
    assert!(matches!(
        announce(&path, &origin, record(3, "ds", &origin, 5 + MAX_SEQ_AHEAD)),
        Message::Ack(_)
    ));
    assert_eq!(path.registry().max_seq("ds"), 5 + MAX_SEQ_AHEAD);
    // Another name has its own highest (none yet: up to the bound from 0).
    assert!(matches!(
        announce(&path, &origin, record(4, "other", &origin, MAX_SEQ_AHEAD)),
        Message::Ack(_)
    ));
    refused(
        &announce(&path, &origin, record(5, "new", &origin, MAX_SEQ_AHEAD + 1)),
        ErrorCode::BadRequest,
        "seq",
    );
}

fn ask(path: &RequestPath, from: &PeerInfo, msg: Message) -> Message {
    let mut frame = Vec::new();
    encode(&msg, &Limits::default(), &mut frame).unwrap();
    path.answer(from, &frame, Instant::now()).unwrap()
}

/// A node's record says whether it pulls (as its register and heartbeats say) and which
/// groups its certificate names (from the connection's certificate: a message cannot claim
/// any), and keeps both through its heartbeats.
#[test]
fn a_record_takes_pull_from_the_node_and_groups_from_its_certificate() {
    use swarmcast_proto::{Heartbeat, Register, Version};
    let path = path();
    let mut peer = node(3);
    peer.groups = vec!["gpu".into()];
    let addrs = vec!["127.0.0.1:7003".parse().unwrap()];
    let registered = ask(
        &path,
        &peer,
        Message::Register(Register {
            id: peer.id,
            incarnation: 5,
            addrs: addrs.clone(),
            pull: true,
        }),
    );
    assert!(
        matches!(registered, Message::Registered(_)),
        "{registered:?}"
    );
    let record = |path: &RequestPath| {
        let view = path.registry().view(Instant::now());
        let e = view.nodes.iter().find(|e| e.record.id == peer.id).cloned();
        e.unwrap().record
    };
    let r = record(&path);
    assert!(r.pull);
    assert_eq!(r.groups, vec!["gpu".to_owned()]);
    let beat = |pull: bool, heartbeat: u64| {
        Message::Heartbeat(Heartbeat {
            id: peer.id,
            version: Version::new(5, heartbeat),
            addrs: addrs.clone(),
            progress: Vec::new(),
            progress_span: None,
            progress_removed: Vec::new(),
            changes_since: None,
            pull,
        })
    };
    assert!(matches!(ask(&path, &peer, beat(true, 1)), Message::Ack(_)));
    let r = record(&path);
    assert!(r.pull && r.groups == ["gpu"], "{r:?}");
    // A node restarted without --pull says so with its next beat.
    assert!(matches!(ask(&path, &peer, beat(false, 2)), Message::Ack(_)));
    assert!(!record(&path).pull);
}

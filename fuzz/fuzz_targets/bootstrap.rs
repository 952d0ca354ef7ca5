//! A peer's request frames through a bootstrap server's request path
//! (`server::RequestPath::answer`: the server's decode, authorization and answer, against a real
//! registry core), interleaved with a fellow's answers to this server's anti-entropy digest and
//! with the passing of time.
//!
//! Input: steps of `[ctl: u8][len: u16 LE][len bytes]`. The low 3 bits of `ctl` pick who sends
//! the bytes: 0-3 are node certificates, 4-6 bootstrap certificates (fellows), 7 means the bytes
//! are a fellow's answer to this server's `Digest` (applied as `exchange` does). The high 5 bits
//! advance the clock by that many 50 ms before the step (the registry runs with the test
//! timeouts, so entries turn suspect, dead and are dropped).
//!
//! Properties: nothing panics; every answer encodes within the limits (else the peer would hear
//! nothing); node certificates never get to replicate, and what a node registers is held under
//! its certificate's identity; and at the end the registry replicates: one push-pull round with
//! an empty fellow, or merging its export into an empty registry, gives the same digest.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use swarmcast_bootstrap::registry::{Registry, RegistryConfig};
use swarmcast_bootstrap::server::{BootstrapConfig, RequestPath};
use swarmcast_certs::PeerInfo;
use swarmcast_proto::{ErrorCode, Frame, Limits, Message, NodeId, Role, decode, encode};

fn peer(i: u8) -> PeerInfo {
    let role = if i < 4 { Role::Node } else { Role::Bootstrap };
    PeerInfo {
        id: NodeId([i + 1; 32]),
        name: format!("{}{i}", role.as_str()),
        role,
        groups: Vec::new(),
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let addr: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
    let mut config = BootstrapConfig::new(addr);
    config.registry = RegistryConfig::for_test();
    let me = PeerInfo {
        id: NodeId([0xee; 32]),
        name: "bootstrap-me".into(),
        role: Role::Bootstrap,
        groups: Vec::new(),
    };
    let path = RequestPath::new(me, addr, config);
    let limits = Limits::default();
    let mut now = base();
    path.tick(now);

    let mut rest = data;
    while let [ctl, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        now += Duration::from_millis(50) * u32::from(ctl >> 3);
        path.tick(now);
        let who = ctl & 7;
        if who == 7 {
            fellow_answer(&path, bytes, now, &limits);
            continue;
        }
        let peer = peer(who);
        let Ok(answer) = path.answer(&peer, bytes, now) else {
            continue;
        };
        let mut out = Vec::new();
        encode(&answer, &limits, &mut out).expect("every answer is sendable");
        let request = match decode(bytes, &limits) {
            Ok(Some((Frame::Message(m), _))) => m,
            other => panic!("answered a frame that does not decode: {other:?}"),
        };
        match (&request, &answer) {
            (Message::Digest(_) | Message::Delta(_), _) if peer.role == Role::Node => {
                assert!(
                    matches!(&answer, Message::Error(e) if e.code == ErrorCode::Forbidden),
                    "a node replicated: {answer:?}"
                );
            }
            (Message::Register(_), Message::Registered(_))
            | (Message::Heartbeat(_), Message::Ack(_) | Message::Registry(_)) => {
                let reg = path.registry();
                if let Some(record) = reg.get(&peer.id) {
                    assert_eq!(record.name, peer.name);
                    assert_eq!(record.role, Role::Node);
                }
            }
            _ => {}
        }
    }

    // The registry replicates.
    let mut a = path.registry();
    a.handle_timeout(now);
    let mut b = Registry::new(RegistryConfig::for_test());
    let delta = a.delta_for(now, &b.digest());
    b.apply_delta(now, &delta);
    let back = b.answer_wants(now, &delta.want_nodes, &delta.want_broadcasts);
    a.apply_delta(now, &back);
    b.handle_timeout(now);
    assert_eq!(
        a.digest(),
        b.digest(),
        "one push-pull round with an empty fellow"
    );

    let mut c = Registry::new(RegistryConfig::for_test());
    let (nodes, broadcasts) = a.export(now);
    for u in nodes {
        c.merge(now, u);
    }
    for r in broadcasts {
        c.merge_broadcast(r);
    }
    c.handle_timeout(now);
    assert_eq!(
        a.digest(),
        c.digest(),
        "export merged into an empty registry"
    );
});

/// What `exchange` does with a fellow's answer to this server's digest.
fn fellow_answer(path: &RequestPath, bytes: &[u8], now: Instant, limits: &Limits) {
    let Ok(Some((Frame::Message(Message::Delta(delta)), _))) = decode(bytes, limits) else {
        return;
    };
    let mut reg = path.registry();
    reg.apply_delta(now, &delta);
    let back = reg.answer_wants(now, &delta.want_nodes, &delta.want_broadcasts);
    let mut out = Vec::new();
    encode(&Message::Delta(back), limits, &mut out).expect("the wanted entries are sendable");
}

//! The neighbour actor over real QUIC on 127.0.0.1: what it owes the data plane arrives even
//! when the data plane's inbox is full.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};

use swarmcast_certs::testing::TestCluster;

use super::*;
use crate::data::serve::Catalog;
use crate::wiretrace::WireTrace;

const T: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Six neighbours dial in and hang up while the data plane's inbox has room for one input and
/// nobody drains it. Once it is drained, every one of them came up once and went down once, in
/// that order. (The actor used to `try_send` these: all but the first `PeerUp` were lost, and a
/// connection that closed by itself sent no `PeerDown` at all.)
#[tokio::test]
async fn every_peer_up_and_down_reaches_a_full_data_plane() {
    let cluster = TestCluster::new();
    let me = cluster.issue("me", Role::Node);
    let transport = swarmcast_net::transport_config();
    let endpoint =
        quinn::Endpoint::server(me.server_config(transport.clone()).unwrap(), loopback()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let client_config = me.client_config(transport.clone()).unwrap();
    let (serve_tx, _serve_rx) = mpsc::channel(16);
    let server = Server {
        catalog: Arc::new(Catalog::new(false, None, WireTrace::default())),
        events: serve_tx,
    };
    let (data_tx, mut data_rx) = mpsc::channel(1);
    let (status, _status_rx) = watch::channel(Vec::new());
    let task = NeighbourTask {
        me: me.node_id(),
        config: NeighbourConfig::default(),
        dialer: Dialer::new(endpoint.clone(), client_config),
        server: server.clone(),
        data_tx,
        status,
    };
    let (tx, rx) = mpsc::channel(256);
    let (_bans_tx, bans_rx) = mpsc::unbounded_channel();
    let actor = tokio::spawn(run(task, tx.clone(), rx, bans_rx));
    let acceptor = tokio::spawn(accept::run(endpoint.clone(), server, tx));

    const PEERS: usize = 6;
    let mut ids = BTreeSet::new();
    let mut peers = Vec::new();
    for n in 0..PEERS {
        let peer = cluster.issue(&format!("peer{n}"), Role::Node);
        ids.insert(peer.node_id());
        let client = quinn::Endpoint::client(loopback()).unwrap();
        let config = peer.client_config(transport.clone()).unwrap();
        let (conn, _) = swarmcast_net::connect(&client, &config, addr, T)
            .await
            .unwrap();
        // As a dialling neighbour does: the control stream opens with a ping.
        let (mut send, recv) = conn.open_bi().await.unwrap();
        let ping = Message::Ping(Ping { nonce: 0 });
        wire::write_message(&mut send, &ping, &Limits::default())
            .await
            .unwrap();
        peers.push((client, conn, send, recv));
    }
    // The actor has taken the first in and waits for room; the others queue behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, conn, ..) in &peers {
        conn.close(quinn::VarInt::from_u32(0), b"bye");
    }
    let mut up = BTreeSet::new();
    let mut down = BTreeSet::new();
    while down.len() < PEERS {
        let input = tokio::time::timeout(T, data_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("lost: up {} of {PEERS}, down {}", up.len(), down.len()))
            .expect("the actor runs");
        match input {
            DataInput::PeerUp { id, .. } => {
                assert!(!down.contains(&id), "up after down");
                assert!(up.insert(id), "up twice");
            }
            DataInput::PeerDown { id } => {
                assert!(up.contains(&id), "down before up");
                assert!(down.insert(id), "down twice");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(up, ids);
    assert_eq!(down, ids);
    actor.abort();
    acceptor.abort();
}

//! The net layer over real QUIC on 127.0.0.1: dialling, one-request streams, close codes.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use swarmcast_certs::Role;
use swarmcast_certs::testing::TestCluster;
use swarmcast_net::wire::{self, WireError};
use swarmcast_net::{CertRefusal, CloseCode, DialError, RefusedBy, connect, transport_config};
use swarmcast_proto::{ErrorCode, Limits, Message, Ping};

const T: Duration = Duration::from_secs(5);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A server that answers each request stream by the nonce of its ping: 1 → pong, 2 → a typed
/// refusal, 3 → finish without an answer, 4 → close the connection with `CloseCode::WrongPeer`.
fn serve(endpoint: quinn::Endpoint) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(incoming) = endpoint.accept().await else {
            return;
        };
        let Ok(conn) = incoming.await else { return };
        let limits = Limits::default();
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let Ok(Some(Message::Ping(ping))) = wire::read_message(&mut recv, &limits).await else {
                conn.close(CloseCode::Protocol.into(), b"not a ping");
                return;
            };
            let answer = match ping.nonce {
                1 => Message::Pong(ping),
                2 => Message::error(ErrorCode::Forbidden, "no"),
                3 => {
                    let _ = send.finish();
                    continue;
                }
                _ => {
                    conn.close(CloseCode::WrongPeer.into(), b"go away");
                    return;
                }
            };
            if wire::write_message(&mut send, &answer, &limits)
                .await
                .is_ok()
            {
                let _ = send.finish();
            }
        }
    })
}

fn ping(nonce: u64) -> Message {
    Message::Ping(Ping { nonce })
}

#[tokio::test]
async fn connect_request_and_close_codes() {
    let cluster = TestCluster::new();
    let server_id = cluster.issue("server", Role::Bootstrap);
    let client_id = cluster.issue("client", Role::Node);
    let server = quinn::Endpoint::server(
        server_id
            .server_config(transport_config())
            .expect("server config"),
        loopback(),
    )
    .expect("bind server");
    let addr = server.local_addr().expect("server addr");
    let task = serve(server);

    let client = quinn::Endpoint::client(loopback()).expect("bind client");
    let config = client_id
        .client_config(transport_config())
        .expect("client config");
    let (conn, peer) = connect(&client, &config, addr, T).await.expect("connect");
    assert_eq!(peer.id, server_id.node_id());
    assert_eq!(peer.role, Role::Bootstrap);
    assert_eq!(peer.name, "server");

    let limits = Limits::default();
    match wire::request(&conn, &ping(1), &limits, T).await {
        Ok(Message::Pong(p)) => assert_eq!(p.nonce, 1),
        other => panic!("expected a pong, got {other:?}"),
    }
    match wire::request(&conn, &ping(2), &limits, T).await {
        Err(WireError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::Forbidden);
            assert_eq!(message, "no");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        matches!(
            wire::request(&conn, &ping(3), &limits, T).await,
            Err(WireError::Unexpected(_))
        ),
        "a stream finished without an answer is an error"
    );
    let _ = wire::request(&conn, &ping(4), &limits, T).await;
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                CloseCode::from_code(close.error_code),
                Some(CloseCode::WrongPeer)
            );
            assert_eq!(&close.reason[..], b"go away");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    task.await.expect("server task");
}

#[tokio::test]
async fn connect_gives_up_after_its_timeout() {
    let cluster = TestCluster::new();
    let client_id = cluster.issue("client", Role::Node);
    // A bound UDP socket that never answers: the handshake cannot complete.
    let silent = std::net::UdpSocket::bind(loopback()).expect("bind silent socket");
    let addr = silent.local_addr().expect("silent addr");
    let client = quinn::Endpoint::client(loopback()).expect("bind client");
    let config = client_id
        .client_config(transport_config())
        .expect("client config");
    let timeout = Duration::from_millis(300);
    match connect(&client, &config, addr, timeout).await {
        Err(DialError::Wire(WireError::Timeout(t))) => assert_eq!(t, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Two clusters' certificates meet: the dialler refuses the server's certificate (its chain
/// ends at another CA), and each side reads that from the typed error, not from its text.
#[tokio::test]
async fn a_foreign_ca_is_read_from_the_error_type_on_both_sides() {
    let ours = TestCluster::new();
    let theirs = TestCluster::new();
    let server_id = ours.issue("server", Role::Bootstrap);
    let client_id = theirs.issue("client", Role::Node);
    let server = quinn::Endpoint::server(
        server_id
            .server_config(transport_config())
            .expect("server config"),
        loopback(),
    )
    .expect("bind server");
    let addr = server.local_addr().expect("server addr");
    let accepted = tokio::spawn(async move {
        let incoming = server.accept().await.expect("an incoming connection");
        incoming.await.map(|_| ())
    });
    let client = quinn::Endpoint::client(loopback()).expect("bind client");
    let config = client_id
        .client_config(transport_config())
        .expect("client config");
    let err = connect(&client, &config, addr, T)
        .await
        .expect_err("a foreign CA's server is refused");
    let refusal = err.cert_refusal().expect("a certificate refusal");
    assert_eq!(refusal.by, RefusedBy::ThisSide, "{err}");
    assert!(refusal.is_untrusted_issuer(), "{refusal}");
    assert_eq!(refusal.alert_name(), "UnknownCA");
    // The server hears the client's alert in its close.
    let server_err = accepted
        .await
        .expect("accept task")
        .expect_err("the handshake failed");
    let refusal = CertRefusal::of(&server_err).expect("the client's refusal");
    assert_eq!(refusal.by, RefusedBy::Peer, "{server_err}");
    assert!(refusal.is_untrusted_issuer());
    // A timeout is no refusal.
    let silent = std::net::UdpSocket::bind(loopback()).expect("bind silent socket");
    let quiet = connect(
        &client,
        &config,
        silent.local_addr().expect("silent addr"),
        Duration::from_millis(200),
    )
    .await
    .expect_err("nobody answers");
    assert_eq!(quiet.cert_refusal(), None);
}

/// Bytes the client has received (UDP payload) when the control stream's second message is
/// read, after the server queued `DATA` bytes of piece data on two request streams and then
/// wrote that message, with the control stream at [`wire::CONTROL_PRIORITY`] or not.
async fn received_before_control_message(prioritised: bool) -> u64 {
    const DATA: usize = 1900 << 10;
    let cluster = TestCluster::new();
    let server_id = cluster.issue("server", Role::Node);
    let client_id = cluster.issue("client", Role::Node);
    let server = quinn::Endpoint::server(
        server_id
            .server_config(transport_config())
            .expect("server config"),
        loopback(),
    )
    .expect("bind server");
    let addr = server.local_addr().expect("server addr");
    let task = tokio::spawn(async move {
        let conn = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        let limits = Limits::default();
        let (mut control, mut replies) = conn.open_bi().await.expect("control stream");
        wire::write_message(&mut control, &ping(0), &limits)
            .await
            .expect("first ping");
        // Once answered, the first ping has left: the control stream has nothing queued, as
        // between two messages of a neighbour's control stream.
        let answer = wire::read_message(&mut replies, &limits).await;
        assert!(matches!(answer, Ok(Some(Message::Pong(_)))), "{answer:?}");
        if prioritised {
            wire::prioritise_control(&control).expect("priority");
        }
        for _ in 0..2 {
            let (mut piece, _) = conn.open_bi().await.expect("piece stream");
            piece.write_all(&vec![7u8; DATA]).await.expect("piece");
            piece.finish().expect("finish");
        }
        wire::write_message(&mut control, &Message::Pong(Ping { nonce: 1 }), &limits)
            .await
            .expect("pong");
        conn.closed().await;
    });
    let client = quinn::Endpoint::client(loopback()).expect("bind client");
    let config = client_id
        .client_config(transport_config())
        .expect("client config");
    let (conn, _) = connect(&client, &config, addr, T).await.expect("connect");
    let limits = Limits::default();
    let (mut answers, mut control) = conn.accept_bi().await.expect("accept control");
    let first = wire::read_message(&mut control, &limits).await;
    assert!(matches!(first, Ok(Some(Message::Ping(_)))), "{first:?}");
    wire::write_message(&mut answers, &Message::Pong(Ping { nonce: 0 }), &limits)
        .await
        .expect("answer the first ping");
    let second = tokio::time::timeout(T, wire::read_message(&mut control, &limits)).await;
    assert!(
        matches!(second, Ok(Ok(Some(Message::Pong(Ping { nonce: 1 }))))),
        "{second:?}"
    );
    let received = conn.stats().udp_rx.bytes;
    conn.close(CloseCode::Shutdown.into(), b"done");
    task.await.expect("server task");
    assert!(received > 0);
    received
}

/// Streams are sent in write order (`send_fairness(false)`), so a message on a control stream
/// of default priority waits behind every piece queued on the connection; at
/// `CONTROL_PRIORITY` it goes first.
#[tokio::test]
async fn a_prioritised_control_stream_overtakes_queued_pieces() {
    let data = 2 * (1900u64 << 10);
    let plain = received_before_control_message(false).await;
    assert!(
        plain >= data,
        "at the default priority the message came after all {data} bytes of pieces, not after {plain}"
    );
    let prioritised = received_before_control_message(true).await;
    assert!(
        prioritised < data / 4,
        "a prioritised control message came after {prioritised} of {data} bytes of pieces"
    );
}

//! Accept and dispatch: every inbound QUIC connection is checked (a node certificate), then
//! either becomes a neighbour (its first stream opens with a ping: handed to the neighbour actor)
//! or is a one-off request connection (for example a manifest fetch from a node that is not a
//! neighbour), whose streams are served without making the peer a neighbour. The request
//! streams of every connection are served here too.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use swarmcast_net::wire::{self, WireError};
use swarmcast_net::{CloseCode, RefusedHandshakes};
use swarmcast_proto::{Limits, Message, NodeId, Role};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::abandon::{self, AbandonBudget, StreamEnd};
use crate::data::serve::{self, until_expired};
use crate::handles::Server;
use crate::inputs::{Link, NeighbourInput as Input};
use crate::neighbours::Direction;
use crate::streams::{FirstKind, FirstStream};

/// Accept inbound connections on `endpoint` until it closes.
pub(crate) async fn run(endpoint: quinn::Endpoint, server: Server, tx: mpsc::Sender<Input>) {
    // A refused handshake (a peer of another CA, an expired certificate) is logged with the
    // peer's address and the reason, rate-limited; other failed handshakes at debug.
    let refused = Arc::new(RefusedHandshakes::new());
    while let Some(incoming) = endpoint.accept().await {
        let tx = tx.clone();
        let server = server.clone();
        let refused = refused.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    refused.handle(std::time::Instant::now(), addr, &e);
                    return;
                }
            };
            let peer = match swarmcast_certs::peer_info(&conn) {
                Ok(p) if p.role == Role::Node => p,
                Ok(p) => {
                    debug!(%addr, role = %p.role, "inbound from a non-node; refusing");
                    conn.close(CloseCode::Forbidden.into(), b"nodes only");
                    return;
                }
                Err(e) => {
                    warn!(%addr, error = %e, "inbound certificate unreadable");
                    conn.close(CloseCode::Forbidden.into(), b"certificate");
                    return;
                }
            };
            // How long the peer may take to open its first stream and speak on it, and what
            // its first message makes of the connection, are the core's.
            let mut first = FirstStream::new(Instant::now());
            let Ok(Ok((send, mut recv))) = until_expired(&mut first, conn.accept_bi()).await else {
                conn.close(CloseCode::Protocol.into(), b"no stream");
                return;
            };
            first.stream_opened(Instant::now());
            let message = until_expired(
                &mut first,
                wire::read_message(&mut recv, &Limits::default()),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
            match (first.first_message(message.as_ref()), message) {
                (FirstKind::Neighbour, _) => {}
                (FirstKind::Request, Some(request)) => {
                    serve_requests(server, conn, peer.id, Some((send, recv, request))).await;
                    return;
                }
                _ => {
                    conn.close(CloseCode::Protocol.into(), b"bad first stream");
                    return;
                }
            }
            let link = Link {
                id: peer.id,
                name: peer.name,
                addr,
                direction: Direction::Inbound,
                conn,
                send,
                recv,
            };
            let _ = tx.send(Input::Connected(Box::new(link))).await;
        });
    }
}

/// Serve request streams on `conn` until it closes: chunk and manifest requests, each judged
/// by the peer's certificate (restricted broadcasts).
pub(crate) async fn serve_requests(
    server: Server,
    conn: quinn::Connection,
    peer: NodeId,
    first: Option<(quinn::SendStream, quinn::RecvStream, Message)>,
) {
    let who = Arc::new(serve::Requester::of(&conn, peer));
    if let Some((send, recv, request)) = first {
        let (catalog, events) = (server.catalog.clone(), server.events.clone());
        let who = who.clone();
        tokio::spawn(async move {
            if let Err(e) =
                serve::serve_stream(catalog, events, who, send, recv, Some(request)).await
            {
                debug!(error = %e, "request stream failed");
            }
        });
    }
    let budget = Arc::new(Mutex::new(AbandonBudget::new(Instant::now())));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return,
        };
        let (catalog, events) = (server.catalog.clone(), server.events.clone());
        let (conn, budget, who) = (conn.clone(), budget.clone(), who.clone());
        tokio::spawn(async move {
            let result = serve::serve_stream(catalog, events, who, send, recv, None).await;
            let end = stream_end(&result);
            let (close, abandoned) = {
                let mut b = budget.lock().unwrap_or_else(|p| p.into_inner());
                (b.record(Instant::now(), end), b.abandoned())
            };
            if close {
                warn!(peer = %peer.short(), abandoned, window_s = abandon::WINDOW.as_secs(), "peer abandons most of its request streams (rapid reset); closing its connection");
                conn.close(CloseCode::Protocol.into(), b"too many abandoned streams");
                return;
            }
            match result {
                Ok(()) => {}
                Err(WireError::Decode(e)) => {
                    warn!(error = %e.for_log(), "undecodable request; closing connection");
                    conn.close(serve::BAD_REQUEST_CLOSE.into(), b"protocol error");
                }
                Err(e) => debug!(error = %e, "request stream failed"),
            }
        });
    }
}

/// How a served stream ended, for the [`AbandonBudget`].
fn stream_end(result: &Result<(), WireError>) -> StreamEnd {
    use quinn::{ReadError, ReadExactError, WriteError};
    match result {
        Ok(()) => StreamEnd::Answered,
        Err(WireError::Write(WriteError::Stopped(_)))
        | Err(WireError::Read(ReadExactError::ReadError(ReadError::Reset(_)))) => {
            StreamEnd::Abandoned
        }
        Err(_) => StreamEnd::Other,
    }
}

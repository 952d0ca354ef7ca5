//! Requesting side of the data plane: fetch one piece (a run of chunks) or a manifest over a
//! fresh request stream, verifying and writing each chunk as it arrives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarmcast_net::CloseCode;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{
    BroadcastId, ChunkIndex, ChunkRequest, ErrorCode, Frame, Limits, ManifestRequest, Message,
    NodeId, Role,
};

use super::error::{ManifestFetchError, PieceError};
use crate::handles::Dialer;
use crate::manifest::Layout;
use crate::store::{StoreError, Workspace};

/// Fetch chunks `first..first + count` of `id` from `conn` into `ws`. Returns how it ended and
/// the payload bytes received.
pub(crate) async fn fetch_piece(
    conn: quinn::Connection,
    ws: Arc<Workspace>,
    layout: Arc<Layout>,
    id: BroadcastId,
    first: u32,
    count: u32,
) -> (Result<(), PieceError>, u64) {
    let mut received = 0u64;
    let result = exchange_piece(&conn, &ws, &layout, id, first, count, &mut received).await;
    (result, received)
}

async fn exchange_piece(
    conn: &quinn::Connection,
    ws: &Arc<Workspace>,
    layout: &Layout,
    id: BroadcastId,
    first: u32,
    count: u32,
    received: &mut u64,
) -> Result<(), PieceError> {
    let limits = Limits::default();
    let (mut send, mut recv) = conn.open_bi().await.map_err(WireError::from)?;
    let req = Message::ChunkRequest(ChunkRequest {
        broadcast: id,
        index: ChunkIndex(first),
        count,
    });
    wire::write_message(&mut send, &req, &limits).await?;
    send.finish().map_err(WireError::from)?;
    for index in first..first + count {
        let expected_len = layout.chunk(index).map(|c| c.len);
        match wire::read_frame(&mut recv, &limits).await? {
            Some(Frame::Chunk { header, data }) => {
                if header.broadcast != id
                    || header.index.0 != index
                    || Some(header.len) != expected_len
                {
                    return Err(PieceError::UnexpectedHeader {
                        wanted: index,
                        got: header.index.0,
                    });
                }
                *received += data.len() as u64;
                let ws = ws.clone();
                let written = tokio::task::spawn_blocking(move || ws.write_chunk(index, &data))
                    .await
                    .map_err(|_| PieceError::WriteTask { index })?;
                match written {
                    Ok(()) => {}
                    Err(
                        source @ (StoreError::HashMismatch { .. } | StoreError::WrongLength { .. }),
                    ) => return Err(PieceError::BadChunk { index, source }),
                    Err(source) => return Err(PieceError::Store { index, source }),
                }
            }
            Some(Frame::Message(Message::Error(e))) if e.code == ErrorCode::Elsewhere => {
                return Err(PieceError::Declined);
            }
            Some(Frame::Message(Message::Error(e))) => {
                return Err(PieceError::Refused {
                    code: e.code,
                    message: e.message,
                });
            }
            Some(_) => return Err(PieceError::UnexpectedFrame),
            None => {
                return Err(PieceError::EndedEarly {
                    received: index - first,
                    count,
                });
            }
        }
    }
    Ok(())
}

/// Fetch the manifest bytes of `id` (not yet checked against the id).
pub(crate) async fn fetch_manifest(
    conn: &quinn::Connection,
    id: BroadcastId,
    limits: &Limits,
    timeout: Duration,
) -> Result<Vec<u8>, ManifestFetchError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(WireError::from)?;
        let req = Message::ManifestRequest(ManifestRequest { broadcast: id });
        wire::write_message(&mut send, &req, limits).await?;
        send.finish().map_err(WireError::from)?;
        match wire::read_frame(&mut recv, limits).await? {
            Some(Frame::Manifest { header, data }) if header.broadcast == id => Ok(data),
            Some(Frame::Message(Message::Error(e))) => Err(ManifestFetchError::Refused {
                code: e.code,
                message: e.message,
            }),
            _ => Err(ManifestFetchError::UnexpectedAnswer),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ManifestFetchError::Timeout(timeout))?
}

/// Dial the origin `node` at `addr` (refusing any other identity) and fetch the manifest of `id`
/// on a one-off connection.
pub(crate) async fn fetch_manifest_from_origin(
    dialer: &Dialer,
    node: NodeId,
    addr: SocketAddr,
    id: BroadcastId,
    timeout: Duration,
) -> Result<Vec<u8>, ManifestFetchError> {
    let (conn, peer) = dialer.connect(addr, timeout).await?;
    if peer.id != node || peer.role != Role::Node {
        conn.close(CloseCode::WrongPeer.into(), b"unexpected identity");
        return Err(ManifestFetchError::WrongPeer {
            addr,
            expected: node,
            met: peer.id,
            role: peer.role,
        });
    }
    let result = fetch_manifest(&conn, id, &Limits::default(), timeout).await;
    conn.close(CloseCode::Shutdown.into(), b"done");
    result
}

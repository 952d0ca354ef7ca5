//! Requesting side of the data plane: fetch one piece (a run of chunks) or a manifest over a
//! fresh request stream; a piece's payloads go into one pooled buffer, then are verified and
//! written in one blocking task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use swarmcast_net::CloseCode;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{
    BroadcastId, ChunkIndex, ChunkRequest, ErrorCode, Frame, Limits, ManifestRequest, Message,
    NodeId, Role,
};

use super::broadcast::{ManifestFetchError, PieceError};
use crate::handles::Dialer;
use crate::manifest::Layout;
use crate::ratelimit::{self, Limiter};
use crate::store::{BufPool, PooledBuf, StoreError, Workspace};

/// Fetch chunks `first..first + count` of `id` from `conn` into `ws`. Returns how it ended and
/// the payload bytes received; `progress` counts them as they arrive, so that the bytes of a
/// request aborted half-way (a cancel) are known too.
///
/// The payloads are read straight into one pooled buffer for the whole piece (a piece is at most
/// one chunk size of bytes), then verified and written by one blocking task
/// ([`Workspace::write_run`]): one hop to the blocking pool per piece, whatever its number of
/// chunks, and no allocation or zeroing per chunk.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch_piece(
    conn: quinn::Connection,
    ws: Arc<Workspace>,
    layout: Arc<Layout>,
    pool: BufPool,
    id: BroadcastId,
    first: u32,
    count: u32,
    progress: Arc<AtomicU64>,
    cap: Option<Arc<Limiter>>,
) -> (Result<(), PieceError>, u64) {
    let cap = cap.as_deref();
    let result = exchange_piece(&conn, &ws, &layout, &pool, id, first, count, &progress, cap).await;
    (result, progress.load(Ordering::Relaxed))
}

#[allow(clippy::too_many_arguments)]
async fn exchange_piece(
    conn: &quinn::Connection,
    ws: &Arc<Workspace>,
    layout: &Layout,
    pool: &BufPool,
    id: BroadcastId,
    first: u32,
    count: u32,
    received: &AtomicU64,
    cap: Option<&Limiter>,
) -> Result<(), PieceError> {
    let limits = Limits::default();
    let lens: Vec<Option<u32>> = (first..first.saturating_add(count))
        .map(|i| layout.chunk(i).map(|c| c.len))
        .collect();
    let total: usize = lens.iter().map(|l| l.unwrap_or(0) as usize).sum();
    let (mut send, mut recv) = conn.open_bi().await.map_err(WireError::from)?;
    let req = Message::ChunkRequest(ChunkRequest {
        broadcast: id,
        index: ChunkIndex(first),
        count,
    });
    wire::write_message(&mut send, &req, &limits).await?;
    send.finish().map_err(WireError::from)?;
    let mut buf: Option<PooledBuf> = None;
    let mut at = 0usize;
    for (index, expected_len) in (first..).zip(lens) {
        match wire::read_header(&mut recv, &limits).await? {
            Some(Message::ChunkData(header)) => {
                if header.broadcast != id
                    || header.index.0 != index
                    || Some(header.len) != expected_len
                {
                    return Err(PieceError::UnexpectedHeader {
                        wanted: index,
                        got: header.index.0,
                    });
                }
                // Taken when the first chunk arrives: a declined request costs no buffer.
                let buf = buf.get_or_insert_with(|| pool.take(total));
                let end = at + header.len as usize;
                // In slices, each let through by the download cap (if any); reading slower
                // holds back the sender through flow control.
                while at < end {
                    let upto = match cap {
                        Some(_) => (at + ratelimit::SLICE).min(end),
                        None => end,
                    };
                    ratelimit::take(cap, upto - at).await;
                    recv.read_exact(&mut buf.as_mut_slice()[at..upto])
                        .await
                        .map_err(WireError::from)?;
                    at = upto;
                }
                received.fetch_add(u64::from(header.len), Ordering::Relaxed);
            }
            Some(Message::Error(e)) if e.code == ErrorCode::Elsewhere => {
                return Err(PieceError::Declined);
            }
            Some(Message::Error(e)) => {
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
    let Some(buf) = buf else {
        // Chunks are never empty (an empty file has none), so this is a request of nothing.
        return Ok(());
    };
    let writer = ws.clone();
    let written = tokio::task::spawn_blocking(move || writer.write_run(first, buf.as_slice()))
        .await
        .map_err(|_| PieceError::WriteTask { index: first })?;
    match written {
        Ok(()) => Ok(()),
        Err(
            source @ (StoreError::HashMismatch { index } | StoreError::WrongLength { index, .. }),
        ) => Err(PieceError::BadChunk { index, source }),
        Err(source) => Err(PieceError::Store {
            index: first,
            source,
        }),
    }
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

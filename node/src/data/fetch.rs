//! Requesting side of the data plane: fetch one piece (a run of chunks) or a manifest over a
//! fresh request stream, verifying and writing each chunk as it arrives.

use std::sync::Arc;
use std::time::Duration;

use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{
    BroadcastId, ChunkIndex, ChunkRequest, Frame, Limits, ManifestRequest, Message,
};

use crate::manifest::Layout;
use crate::store::{StoreError, Workspace};

/// How a piece request ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Every chunk verified and written (pending durability).
    Ok,
    /// A chunk failed verification: the peer served bad data.
    Bad(String),
    /// The origin declined: the piece is already in the swarm (super-seeding).
    Declined,
    /// Transport error, refusal, or a malformed answer.
    Failed(String),
}

/// Fetch chunks `first..first + count` of `id` from `conn` into `ws`. Returns the outcome and the
/// payload bytes received.
pub(crate) async fn fetch_piece(
    conn: quinn::Connection,
    ws: Arc<Workspace>,
    layout: Arc<Layout>,
    id: BroadcastId,
    first: u32,
    count: u32,
) -> (Outcome, u64) {
    let mut received = 0u64;
    let result = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let req = Message::ChunkRequest(ChunkRequest {
            broadcast: id,
            index: ChunkIndex(first),
            count,
        });
        wire::write_message(&mut send, &req, &Limits::default()).await?;
        send.finish()?;
        let limits = Limits::default();
        for index in first..first + count {
            let expected_len = layout.chunk(index).map(|c| c.len);
            match wire::read_frame(&mut recv, &limits).await? {
                Some(Frame::Chunk { header, data }) => {
                    if header.broadcast != id
                        || header.index.0 != index
                        || Some(header.len) != expected_len
                    {
                        return Ok(Outcome::Failed(format!(
                            "unexpected chunk header {:?} (wanted index {index})",
                            header.index
                        )));
                    }
                    received += data.len() as u64;
                    let ws = ws.clone();
                    let written = tokio::task::spawn_blocking(move || ws.write_chunk(index, &data))
                        .await
                        .map_err(|_| WireError::Unexpected("write task failed"))?;
                    match written {
                        Ok(()) => {}
                        Err(
                            e @ (StoreError::HashMismatch { .. } | StoreError::WrongLength { .. }),
                        ) => {
                            return Ok(Outcome::Bad(e.to_string()));
                        }
                        Err(e) => {
                            return Ok(Outcome::Failed(format!("storing chunk {index}: {e}")));
                        }
                    }
                }
                Some(Frame::Message(Message::Error(e))) => {
                    if e.code == swarmcast_proto::ErrorCode::Elsewhere {
                        return Ok(Outcome::Declined);
                    }
                    return Ok(Outcome::Failed(format!(
                        "refused: {:?} {}",
                        e.code, e.message
                    )));
                }
                Some(_) => return Ok(Outcome::Failed("unexpected frame".into())),
                None => return Ok(Outcome::Failed("stream ended early".into())),
            }
        }
        Ok::<_, WireError>(Outcome::Ok)
    }
    .await;
    match result {
        Ok(o) => (o, received),
        Err(e) => (Outcome::Failed(e.to_string()), received),
    }
}

/// Fetch the manifest bytes of `id` (not yet checked against the id).
pub(crate) async fn fetch_manifest(
    conn: &quinn::Connection,
    id: BroadcastId,
    limits: &Limits,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let req = Message::ManifestRequest(ManifestRequest { broadcast: id });
        wire::write_message(&mut send, &req, limits)
            .await
            .map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        match wire::read_frame(&mut recv, limits)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(Frame::Manifest { header, data }) if header.broadcast == id => Ok(data),
            Some(Frame::Message(Message::Error(e))) => {
                Err(format!("refused: {:?} {}", e.code, e.message))
            }
            _ => Err("unexpected answer to a manifest request".to_owned()),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no manifest within {timeout:?}"))?
}

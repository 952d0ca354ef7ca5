//! Serving side of the data plane: answers chunk and manifest requests on request streams.
//!
//! One request per bidirectional stream. Reads run on the blocking pool; at most
//! [`MAX_CONCURRENT_UPLOADS`] pieces are being read and sent at once for the whole node, so
//! memory is bounded by pieces in flight, never by file size.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::sync::{read, write};

use swarmcast_net::CloseCode;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{
    BroadcastId, ChunkHeader, ChunkIndex, ChunkRequest, ErrorCode, Limits, MAX_CHUNKS_PER_REQUEST,
    ManifestHeader, Message, encode,
};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::broadcast::SuperSeed;
use crate::manifest::Layout;
use crate::store::{Source, StoreError, Workspace};
use crate::sync::lock;

/// Pieces being uploaded at once by one node.
pub const MAX_CONCURRENT_UPLOADS: usize = 16;

/// Where a broadcast's chunks are read from.
#[derive(Debug, Clone)]
pub(crate) enum Reader {
    /// The origin's source directory.
    Source(Arc<Source>),
    /// A receiver's workspace (held chunks only).
    Workspace(Arc<Workspace>),
}

impl Reader {
    fn read(&self, index: u32) -> Result<Vec<u8>, StoreError> {
        match self {
            Reader::Source(s) => s.read_chunk(index),
            Reader::Workspace(w) => w.read_chunk(index),
        }
    }
}

/// A broadcast this node can serve.
#[derive(Debug)]
pub(crate) struct Servable {
    pub(crate) manifest_bytes: Arc<Vec<u8>>,
    pub(crate) layout: Arc<Layout>,
    pub(crate) reader: Reader,
    /// Set when the origin found its source changed: serve nothing more.
    pub(crate) failed: std::sync::atomic::AtomicBool,
    /// At the origin in a swarm: which chunks have left it at least once (super-seeding, see
    /// [`SuperSeed`]). `None` for receivers and in client-server mode.
    pub(crate) first_round: Option<std::sync::Mutex<SuperSeed>>,
}

/// Everything servable, shared by the data plane (writer) and request tasks (readers).
#[derive(Debug)]
pub(crate) struct Catalog {
    map: RwLock<HashMap<BroadcastId, Arc<Servable>>>,
    uploads: Option<Arc<Semaphore>>,
    /// Fault injection for tests: serve corrupted bytes.
    pub(crate) corrupt: bool,
    /// Fault injection for tests: serve at most one chunk request per this interval.
    pub(crate) delay: Option<std::time::Duration>,
    throttle: tokio::sync::Mutex<()>,
    /// The wire trace (off unless asked for).
    pub(crate) trace: crate::wiretrace::WireTrace,
}

/// Events the serving side reports to the data plane.
#[derive(Debug)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum ServeEvent {
    /// The origin's source no longer matches the manifest at chunk `index`.
    SourceChanged { id: BroadcastId, index: u32 },
    /// Bytes uploaded to a peer.
    Uploaded {
        id: BroadcastId,
        peer: swarmcast_proto::NodeId,
        bytes: u64,
    },
}

impl Catalog {
    pub(crate) fn new(
        corrupt: bool,
        delay: Option<std::time::Duration>,
        trace: crate::wiretrace::WireTrace,
    ) -> Self {
        Self {
            map: RwLock::default(),
            uploads: Some(Arc::new(Semaphore::new(MAX_CONCURRENT_UPLOADS))),
            corrupt,
            delay,
            throttle: tokio::sync::Mutex::new(()),
            trace,
        }
    }

    pub(crate) fn insert(&self, id: BroadcastId, s: Arc<Servable>) {
        write(&self.map).insert(id, s);
    }

    pub(crate) fn remove(&self, id: &BroadcastId) {
        write(&self.map).remove(id);
    }

    fn get(&self, id: &BroadcastId) -> Option<Arc<Servable>> {
        read(&self.map).get(id).cloned()
    }
}

/// Serve one request stream. `first` is the request if the caller already read it.
pub(crate) async fn serve_stream(
    catalog: Arc<Catalog>,
    events: tokio::sync::mpsc::Sender<ServeEvent>,
    peer: swarmcast_proto::NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    first: Option<Message>,
) -> Result<(), WireError> {
    let limits = Limits::default();
    let request = match first {
        Some(m) => m,
        None => match wire::read_message(&mut recv, &limits).await? {
            Some(m) => m,
            None => return Ok(()),
        },
    };
    match request {
        Message::ChunkRequest(r) => {
            if !catalog.trace.enabled() {
                return serve_chunks(&catalog, &events, peer, &mut send, r).await;
            }
            let start = crate::wiretrace::now_us();
            let (b, first, count) = (r.broadcast, r.index.0, r.count);
            let result = serve_chunks(&catalog, &events, peer, &mut send, r).await;
            catalog.trace.emit(
                "serve",
                Some(&b.short()),
                &serde_json::json!({
                    "peer": peer.short(), "first": first, "count": count, "start": start,
                    "outcome": if result.is_ok() { "answered" } else { "error" },
                }),
            );
            result
        }
        Message::ManifestRequest(r) => {
            let Some(s) = catalog.get(&r.broadcast) else {
                return refuse(&mut send, ErrorCode::NotFound, "unknown broadcast").await;
            };
            let mut buf = Vec::new();
            let header = Message::ManifestData(ManifestHeader {
                broadcast: r.broadcast,
                len: s.manifest_bytes.len() as u64,
            });
            encode(&header, &limits, &mut buf)?;
            send.write_all(&buf).await?;
            send.write_all(&s.manifest_bytes).await?;
            send.finish()?;
            Ok(())
        }
        other => {
            refuse(
                &mut send,
                ErrorCode::BadRequest,
                &format!("{} is not a data request", other.kind()),
            )
            .await
        }
    }
}

async fn refuse(send: &mut quinn::SendStream, code: ErrorCode, why: &str) -> Result<(), WireError> {
    wire::write_message(send, &Message::error(code, why), &Limits::default()).await?;
    send.finish()?;
    Ok(())
}

async fn serve_chunks(
    catalog: &Arc<Catalog>,
    events: &tokio::sync::mpsc::Sender<ServeEvent>,
    peer: swarmcast_proto::NodeId,
    send: &mut quinn::SendStream,
    r: ChunkRequest,
) -> Result<(), WireError> {
    let Some(s) = catalog.get(&r.broadcast) else {
        return refuse(send, ErrorCode::NotFound, "unknown broadcast").await;
    };
    if s.failed.load(std::sync::atomic::Ordering::Relaxed) {
        return refuse(
            send,
            ErrorCode::Unavailable,
            "broadcast failed at this node",
        )
        .await;
    }
    let total = s.layout.chunk_count();
    let first = r.index.0;
    let end = first.checked_add(r.count);
    if r.count == 0 || r.count > MAX_CHUNKS_PER_REQUEST || end.is_none_or(|e| e > total) {
        return refuse(send, ErrorCode::BadRequest, "chunk range out of bounds").await;
    }
    if let Some(round) = &s.first_round {
        let admitted = lock(round).admit(std::time::Instant::now(), first, first + r.count);
        if !admitted {
            return refuse(
                send,
                ErrorCode::Elsewhere,
                "already sent into the swarm; fetch it from a peer",
            )
            .await;
        }
    }
    let _permit = match &catalog.uploads {
        Some(sem) => Some(
            sem.clone()
                .acquire_owned()
                .await
                .map_err(|_| WireError::Unexpected("shutting down"))?,
        ),
        None => None,
    };
    if let Some(d) = catalog.delay {
        let _one_at_a_time = catalog.throttle.lock().await;
        tokio::time::sleep(d).await;
    }
    let limits = Limits::default();
    let mut sent = 0u64;
    for index in first..first + r.count {
        let reader = s.reader.clone();
        let data = tokio::task::spawn_blocking(move || reader.read(index))
            .await
            .map_err(|_| WireError::Unexpected("read task failed"))?;
        let mut data = match data {
            Ok(d) => d,
            Err(StoreError::SourceChanged { .. }) | Err(StoreError::Corrupt { .. })
                if matches!(s.reader, Reader::Source(_)) =>
            {
                s.failed.store(true, std::sync::atomic::Ordering::Relaxed);
                let error = super::Failure::SourceChanged { index };
                warn!(broadcast = %r.broadcast.short(), index, "source changed mid-broadcast; failing the broadcast");
                let _ = events
                    .send(ServeEvent::SourceChanged {
                        id: r.broadcast,
                        index,
                    })
                    .await;
                return refuse(send, ErrorCode::Unavailable, &error.to_string()).await;
            }
            Err(e) => {
                debug!(index, error = %e, "chunk not servable");
                return refuse(send, ErrorCode::NotFound, &e.to_string()).await;
            }
        };
        if catalog.corrupt {
            if let Some(b) = data.first_mut() {
                *b ^= 0xff;
            }
        }
        let header = Message::ChunkData(ChunkHeader {
            broadcast: r.broadcast,
            index: ChunkIndex(index),
            len: data.len() as u32,
        });
        let mut buf = Vec::with_capacity(64);
        encode(&header, &limits, &mut buf)?;
        send.write_all(&buf).await?;
        send.write_all(&data).await?;
        sent += data.len() as u64;
    }
    send.finish()?;
    let _ = events.try_send(ServeEvent::Uploaded {
        id: r.broadcast,
        peer,
        bytes: sent,
    });
    Ok(())
}

/// Close code for a peer that sent a bad request stream.
pub(crate) const BAD_REQUEST_CLOSE: CloseCode = CloseCode::Protocol;

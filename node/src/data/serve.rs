//! Serving side of the data plane: answers chunk and manifest requests on request streams.
//!
//! One request per bidirectional stream. A request's chunks are read in runs of up to
//! [`MAX_RUN_BYTES`] (at least one chunk), each run in one blocking task straight into a pooled
//! buffer, and handed to quinn as `Bytes` slices of that buffer: no allocation, no zeroing and no
//! copy on the way. At most [`MAX_CONCURRENT_UPLOADS`] requests are served at once for the whole
//! node (their slots given out by priority: [`UploadGate`], which only wakes the requests the
//! pure [`UploadSlots`] grants), and each keeps its upload permit until the peer has acknowledged every byte, so the
//! buffers alive (read, queued in quinn, or unacknowledged) are bounded by pieces in flight,
//! never by file size.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;

use crate::ratelimit::{self, Limiter};
use crate::sync::{read, write};

use swarmcast_net::CloseCode;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{
    BroadcastId, ChunkHeader, ChunkIndex, ChunkRequest, ErrorCode, Limits, MAX_CHUNKS_PER_REQUEST,
    ManifestHeader, Message, encode,
};
use tracing::{debug, warn};

use super::broadcast::Failure;
use super::broadcast::priority::{Ticket, UploadSlots};
use crate::inputs::ServeEvent;
use crate::manifest::Layout;
use crate::store::{BufPool, Source, StoreError, Workspace};
use crate::streams::{AckEnd, Deadline, Expired, ServedStream};
use swarmcast_proto::Priority;

/// Pieces being uploaded at once by one node.
pub const MAX_CONCURRENT_UPLOADS: usize = 16;

/// Bytes read and queued at once per request (a run of small chunks), unless one chunk is
/// larger.
pub const MAX_RUN_BYTES: usize = 1 << 20;

/// Idle chunk buffers a node keeps for reuse (serving and fetching).
const POOL_IDLE_BYTES: usize = 16 << 20;

/// Where a broadcast's chunks are read from.
#[derive(Debug, Clone)]
pub(crate) enum Reader {
    /// The origin's source directory.
    Source(Arc<Source>),
    /// A receiver's workspace (chunks verified and written).
    Workspace(Arc<Workspace>),
}

impl Reader {
    /// Chunks `first..` into `buf` (see [`Source::read_run`] and [`Workspace::read_run`]).
    pub(super) fn read_run(&self, first: u32, buf: &mut [u8]) -> Result<(), StoreError> {
        match self {
            Reader::Source(s) => s.read_run(first, buf),
            Reader::Workspace(w) => w.read_run(first, buf),
        }
    }
}

/// A broadcast this node can serve.
#[derive(Debug)]
pub(crate) struct Servable {
    pub(crate) manifest_bytes: Arc<Vec<u8>>,
    pub(crate) layout: Arc<Layout>,
    pub(crate) reader: Reader,
    /// Refuse every request (`Unavailable`): set by the data plane when the core says so
    /// ([`BroadcastAction::RefuseServing`]: the origin's source changed), never by a request.
    ///
    /// [`BroadcastAction::RefuseServing`]: super::broadcast::BroadcastAction::RefuseServing
    pub(crate) refused: std::sync::atomic::AtomicBool,
    /// A restricted broadcast's audience, as the core handed it
    /// ([`BroadcastAction::Serve`](super::broadcast::BroadcastAction::Serve)): each request is
    /// judged by [`serve_verdict`](super::broadcast::serve_verdict) against the requester's
    /// certificate before anything is read.
    pub(crate) audience: Option<swarmcast_proto::Audience>,
    /// Its priority, as the core handed it: its chunk requests wait for an upload slot by it
    /// ([`UploadSlots`](super::broadcast::priority::UploadSlots)).
    pub(crate) priority: swarmcast_proto::Priority,
    /// At the origin in a swarm: each chunk request is put to the core first (super-seeding,
    /// see [`SuperSeed`](super::broadcast::SuperSeed)), and its end reported. `false` for receivers and in client-server
    /// mode.
    pub(crate) super_seed: bool,
}

/// Who asks: the identity and the certificate's name and groups of a connection's peer.
#[derive(Debug, Clone)]
pub(crate) struct Requester {
    pub(crate) id: swarmcast_proto::NodeId,
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
}

impl Requester {
    /// The peer of `conn`, known as `id`; a certificate that cannot be read (the handshake
    /// verified it, so this does not happen) names nobody, and is refused every restricted
    /// broadcast.
    pub(crate) fn of(conn: &quinn::Connection, id: swarmcast_proto::NodeId) -> Self {
        match swarmcast_certs::peer_info(conn) {
            Ok(p) => Self {
                id,
                name: p.name,
                groups: p.groups,
            },
            Err(_) => Self {
                id,
                name: String::new(),
                groups: Vec::new(),
            },
        }
    }
}

/// Everything servable, shared by the data plane (writer) and request tasks (readers).
#[derive(Debug)]
pub(crate) struct Catalog {
    map: RwLock<HashMap<BroadcastId, Arc<Servable>>>,
    uploads: Option<Arc<UploadGate>>,
    /// Chunk buffers, shared with the fetching side.
    pool: BufPool,
    /// Fault injection for tests: serve corrupted bytes.
    pub(crate) corrupt: bool,
    /// Fault injection for tests: serve at most one chunk request per this interval.
    pub(crate) delay: Option<std::time::Duration>,
    throttle: tokio::sync::Mutex<()>,
    /// The wire trace (off unless asked for).
    pub(crate) trace: crate::wiretrace::WireTrace,
    /// `--max-upload`: every chunk served, to every peer, passes this cap.
    upload_cap: Option<Arc<Limiter>>,
    /// `--max-download`: every chunk fetched passes this cap (kept here, beside the buffer
    /// pool, as the one thing both sides share).
    download_cap: Option<Arc<Limiter>>,
}

impl Catalog {
    pub(crate) fn new(
        corrupt: bool,
        delay: Option<std::time::Duration>,
        trace: crate::wiretrace::WireTrace,
    ) -> Self {
        Self {
            map: RwLock::default(),
            uploads: Some(Arc::new(UploadGate::new(MAX_CONCURRENT_UPLOADS))),
            pool: BufPool::new(POOL_IDLE_BYTES),
            corrupt,
            delay,
            throttle: tokio::sync::Mutex::new(()),
            trace,
            upload_cap: None,
            download_cap: None,
        }
    }

    /// With bandwidth caps, bytes per second (`None`: uncapped).
    pub(crate) fn with_caps(mut self, upload: Option<u64>, download: Option<u64>) -> Self {
        self.upload_cap = upload.map(|r| Arc::new(Limiter::new(r)));
        self.download_cap = download.map(|r| Arc::new(Limiter::new(r)));
        self
    }

    /// The download cap, for the fetching side.
    pub(crate) fn download_cap(&self) -> Option<Arc<Limiter>> {
        self.download_cap.clone()
    }

    /// The node's chunk buffers.
    pub(crate) fn pool(&self) -> &BufPool {
        &self.pool
    }

    pub(crate) fn insert(&self, id: BroadcastId, s: Arc<Servable>) {
        write(&self.map).insert(id, s);
    }

    pub(crate) fn remove(&self, id: &BroadcastId) {
        write(&self.map).remove(id);
    }

    /// Refuse every request for `id` from now on (see [`Servable::refused`]).
    pub(crate) fn refuse(&self, id: &BroadcastId) {
        if let Some(s) = read(&self.map).get(id) {
            s.refused.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn get(&self, id: &BroadcastId) -> Option<Arc<Servable>> {
        read(&self.map).get(id).cloned()
    }
}

/// The node's upload slots: the pure [`UploadSlots`] decides who gets one, this only wakes
/// the requests it names.
#[derive(Debug)]
pub(crate) struct UploadGate {
    inner: std::sync::Mutex<GateInner>,
}

#[derive(Debug)]
struct GateInner {
    slots: UploadSlots,
    next: Ticket,
    waiting: HashMap<Ticket, tokio::sync::oneshot::Sender<()>>,
}

impl GateInner {
    /// Wake the requests granted a slot.
    fn wake(&mut self, granted: Vec<Ticket>) {
        for t in granted {
            if let Some(tx) = self.waiting.remove(&t) {
                // Its receiver lives as long as its `Waiting`, which removes the ticket under
                // this lock before it goes: the send cannot fail.
                let _ = tx.send(());
            }
        }
    }
}

/// A slot held; given back when dropped.
#[derive(Debug)]
pub(crate) struct UploadPermit {
    gate: Arc<UploadGate>,
    priority: Priority,
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        let mut g = self.gate.lock();
        let granted = g.slots.handle_released(Instant::now(), self.priority);
        g.wake(granted);
    }
}

/// A request waiting for a slot: dropped before it got one, it gives up its place (or, granted
/// meanwhile, the slot).
struct Waiting {
    gate: Arc<UploadGate>,
    ticket: Ticket,
    priority: Priority,
    rx: Option<tokio::sync::oneshot::Receiver<()>>,
    done: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut g = self.gate.lock();
        if g.waiting.remove(&self.ticket).is_some() {
            let (_, granted) = g
                .slots
                .handle_abandoned(Instant::now(), self.ticket, self.priority);
            g.wake(granted);
        } else {
            // Granted, but nobody will use it.
            let granted = g.slots.handle_released(Instant::now(), self.priority);
            g.wake(granted);
        }
    }
}

impl UploadGate {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: std::sync::Mutex::new(GateInner {
                slots: UploadSlots::new(capacity),
                next: 0,
                waiting: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateInner> {
        // A panic while holding it would be a bug in the few lines above; the slots stay
        // consistent (each call is one update), so go on with them.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for a request of a broadcast of `priority`, when the slots' core grants one.
    pub(crate) async fn acquire(
        gate: &Arc<UploadGate>,
        priority: Priority,
    ) -> Result<UploadPermit, tokio::sync::oneshot::error::RecvError> {
        let mut waiting = {
            let mut g = gate.lock();
            let ticket = g.next;
            g.next += 1;
            let (tx, rx) = tokio::sync::oneshot::channel();
            g.waiting.insert(ticket, tx);
            let granted = g.slots.handle_request(Instant::now(), ticket, priority);
            g.wake(granted);
            Waiting {
                gate: gate.clone(),
                ticket,
                priority,
                rx: Some(rx),
                done: false,
            }
        };
        if let Some(rx) = waiting.rx.as_mut() {
            rx.await?;
        }
        waiting.done = true;
        Ok(UploadPermit {
            gate: gate.clone(),
            priority,
        })
    }
}

/// `fut`'s output, or what expired once `core`'s deadline is reached (the shell only sleeps
/// until the instants the core names; an early wake-up changes nothing).
pub(crate) async fn until_expired<T>(
    core: &mut impl Deadline,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Expired> {
    tokio::pin!(fut);
    loop {
        let Some(at) = core.poll_timeout() else {
            return Ok(fut.await);
        };
        if let Ok(out) = tokio::time::timeout_at(at.into(), &mut fut).await {
            return Ok(out);
        }
        if let Some(expired) = core.handle_timeout(Instant::now()) {
            return Err(expired);
        }
    }
}

/// Serve one request stream. `first` is the request if the caller already read it.
pub(crate) async fn serve_stream(
    catalog: Arc<Catalog>,
    events: tokio::sync::mpsc::Sender<ServeEvent>,
    who: Arc<Requester>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    first: Option<Message>,
) -> Result<(), WireError> {
    let peer = who.id;
    let limits = Limits::default();
    let (request, mut life) = match first {
        Some(m) => (m, ServedStream::with_request()),
        None => {
            // A request is one small frame sent at once: a stream that trickles it (or sends
            // part of it and stops) is given up on when the core says so, so slowloris streams
            // hold nothing for long.
            let mut life = ServedStream::awaiting_request(Instant::now());
            let read = until_expired(&mut life, wire::read_message(&mut recv, &limits)).await;
            match read {
                Ok(Ok(Some(m))) => {
                    life.request_read();
                    (m, life)
                }
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(expired) => {
                    let _ = recv.stop(BAD_REQUEST_CLOSE.into());
                    let _ = send.reset(BAD_REQUEST_CLOSE.into());
                    return Err(WireError::Timeout(expired.after()));
                }
            }
        }
    };
    match request {
        Message::ChunkRequest(r) => {
            if let Some(refusal) = forbidden(&catalog, &r.broadcast, &who) {
                return refuse(&mut send, ErrorCode::Forbidden, &refusal).await;
            }
            if !catalog.trace.enabled() {
                return serve_chunks(&catalog, &events, peer, &mut send, r, &mut life).await;
            }
            let start = crate::wiretrace::now_us();
            let (b, first, count) = (r.broadcast, r.index.0, r.count);
            let result = serve_chunks(&catalog, &events, peer, &mut send, r, &mut life).await;
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
            if let Some(refusal) = forbidden(&catalog, &r.broadcast, &who) {
                return refuse(&mut send, ErrorCode::Forbidden, &refusal).await;
            }
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

/// The refusal of a request for `id` from `who`, when the broadcast is restricted to others
/// (the decision is [`serve_verdict`](super::broadcast::serve_verdict)'s).
fn forbidden(catalog: &Catalog, id: &BroadcastId, who: &Requester) -> Option<String> {
    let s = catalog.get(id)?;
    let verdict = super::broadcast::serve_verdict(s.audience.as_ref(), &who.name, &who.groups);
    verdict.err().map(|e| {
        debug!(broadcast = %id.short(), peer = %who.id.short(), name = %who.name, "refused: not in the audience");
        e.to_string()
    })
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
    life: &mut ServedStream,
) -> Result<(), WireError> {
    let Some(s) = catalog.get(&r.broadcast) else {
        return refuse(send, ErrorCode::NotFound, "unknown broadcast").await;
    };
    if s.refused.load(std::sync::atomic::Ordering::Relaxed) {
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
    let mut round_send = None;
    if s.super_seed {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (id, end) = (r.broadcast, first + r.count);
        let asked = events.send(ServeEvent::Admit {
            id,
            first,
            end,
            reply,
        });
        // No answer: the data plane is gone (the node is stopping).
        if asked.await.is_err() || !answer.await.unwrap_or(false) {
            return refuse(
                send,
                ErrorCode::Elsewhere,
                "already sent into the swarm; fetch it from a peer",
            )
            .await;
        }
        round_send = Some(RoundSend {
            events: events.clone(),
            id,
            first,
            end,
            delivered: false,
        });
    }
    // Waiting for an upload slot: a requester that abandons the stream meanwhile (a cancel,
    // or a rapid-reset attack) costs no read and no slot.
    let stopped = send.stopped();
    let wait = async {
        let permit = match &catalog.uploads {
            Some(gate) => Some(
                UploadGate::acquire(gate, s.priority)
                    .await
                    .map_err(|_| WireError::Unexpected("shutting down"))?,
            ),
            None => None,
        };
        if let Some(d) = catalog.delay {
            let _one_at_a_time = catalog.throttle.lock().await;
            tokio::time::sleep(d).await;
        }
        Ok::<_, WireError>(permit)
    };
    let _permit = tokio::select! {
        biased;
        Ok(Some(code)) = stopped => return Err(WireError::Write(quinn::WriteError::Stopped(code))),
        permit = wait => permit?,
    };
    let limits = Limits::default();
    let mut sent = 0u64;
    let end = first + r.count;
    let mut index = first;
    while index < end {
        let run_end = run_end(&s.layout, index, end);
        let lens: Vec<u32> = (index..run_end)
            .map(|c| s.layout.chunks[c as usize].len)
            .collect();
        let bytes: usize = lens.iter().map(|l| *l as usize).sum();
        let mut buf = catalog.pool.take(bytes);
        let reader = s.reader.clone();
        let (read, mut buf) = tokio::task::spawn_blocking(move || {
            let read = reader.read_run(index, buf.as_mut_slice());
            (read, buf)
        })
        .await
        .map_err(|_| WireError::Unexpected("read task failed"))?;
        match read {
            Ok(()) => {}
            Err(StoreError::SourceChanged { index, .. }) | Err(StoreError::Corrupt { index })
                if matches!(s.reader, Reader::Source(_)) =>
            {
                // This request cannot be served; whether the broadcast fails (and every later
                // request is refused) is the core's decision.
                let error = Failure::SourceChanged { index };
                warn!(broadcast = %r.broadcast.short(), index, "source changed mid-broadcast; reporting it");
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
        }
        if catalog.corrupt {
            corrupt_each(buf.as_mut_slice(), &lens);
        }
        let mut frames = frames(r.broadcast, index, &lens, buf.freeze(), &limits)?;
        match catalog.upload_cap.as_deref() {
            None => send.write_all_chunks(&mut frames).await?,
            Some(cap) => {
                // In slices, each let through by the cap: a second's excess is one slice.
                for frame in frames {
                    let mut at = 0;
                    while at < frame.len() {
                        let end = (at + ratelimit::SLICE).min(frame.len());
                        cap.take(end - at).await;
                        send.write_chunk(frame.slice(at..end)).await?;
                        at = end;
                    }
                }
            }
        }
        sent += bytes as u64;
        index = run_end;
    }
    send.finish()?;
    // Waits for room: the data plane drains these first and waits for nothing itself.
    let _ = events
        .send(ServeEvent::Uploaded {
            id: r.broadcast,
            peer,
            bytes: sent,
        })
        .await;
    // Keep the permit (and so bound the buffers still queued in quinn) until the peer has
    // acknowledged everything, or stopped the stream, or the connection is gone, or the core
    // gives up on it.
    life.written(Instant::now());
    match until_expired(life, send.stopped()).await {
        Ok(Ok(None)) => life.ended(AckEnd::Acknowledged),
        Ok(Ok(Some(_))) => life.ended(AckEnd::Stopped),
        Ok(Err(_)) => life.ended(AckEnd::Lost),
        // Given up: not delivered.
        Err(_) => {}
    }
    if let Some(r) = &mut round_send {
        r.delivered = life.delivered();
    }
    Ok(())
}

/// An admitted send of the origin's super-seeding: reports its end to the core when dropped,
/// however the serving ended (`delivered` only once the requester acknowledged every byte).
/// The report is never lost: when the data plane's inbox is full it is sent by a task of its
/// own (a lost one would keep its chunks "on their way" for good).
struct RoundSend {
    events: tokio::sync::mpsc::Sender<ServeEvent>,
    id: BroadcastId,
    first: u32,
    end: u32,
    delivered: bool,
}

impl Drop for RoundSend {
    fn drop(&mut self) {
        let ev = ServeEvent::Served {
            id: self.id,
            first: self.first,
            end: self.end,
            delivered: self.delivered,
        };
        match self.events.try_send(ev) {
            Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(ev)) => {
                let events = self.events.clone();
                // Outside a runtime the node is stopping: nobody needs the report.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = events.send(ev).await;
                    });
                }
            }
        }
    }
}

/// Where the run starting at `first` ends (exclusive, at most `end`): at least one chunk, then
/// as many as fit in [`MAX_RUN_BYTES`].
fn run_end(layout: &Layout, first: u32, end: u32) -> u32 {
    let mut bytes = 0usize;
    let mut c = first;
    while c < end {
        let len = layout.chunks[c as usize].len as usize;
        if c > first && bytes + len > MAX_RUN_BYTES {
            break;
        }
        bytes += len;
        c += 1;
    }
    c
}

/// Fault injection: flip the first byte of every chunk of a run.
fn corrupt_each(buf: &mut [u8], lens: &[u32]) {
    let mut at = 0usize;
    for len in lens {
        if let Some(b) = buf.get_mut(at).filter(|_| *len > 0) {
            *b ^= 0xff;
        }
        at += *len as usize;
    }
}

/// The frames of a run of chunks `first..` of lengths `lens` whose bytes are `data`: for each,
/// its header and then a slice of `data` (no copy). The headers share one allocation.
fn frames(
    broadcast: BroadcastId,
    first: u32,
    lens: &[u32],
    data: Bytes,
    limits: &Limits,
) -> Result<Vec<Bytes>, WireError> {
    let mut headers = Vec::with_capacity(lens.len() * 64);
    let mut ends = Vec::with_capacity(lens.len());
    for (k, len) in lens.iter().enumerate() {
        let header = Message::ChunkData(ChunkHeader {
            broadcast,
            index: ChunkIndex(first + k as u32),
            len: *len,
        });
        encode(&header, limits, &mut headers)?;
        ends.push(headers.len());
    }
    let headers = Bytes::from(headers);
    let mut out = Vec::with_capacity(lens.len() * 2);
    let (mut h, mut d) = (0usize, 0usize);
    for (len, end) in lens.iter().zip(ends) {
        out.push(headers.slice(h..end));
        out.push(data.slice(d..d + *len as usize));
        h = end;
        d += *len as usize;
    }
    Ok(out)
}

/// Close code for a peer that sent a bad request stream.
pub(crate) const BAD_REQUEST_CLOSE: CloseCode = CloseCode::Protocol;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn frames_are_headers_then_slices_that_decode_back() {
        let limits = Limits::default();
        let id = BroadcastId([7; 32]);
        let data = Bytes::from((0..30u8).collect::<Vec<_>>());
        let frames = frames(id, 5, &[10, 0, 20], data.clone(), &limits).unwrap();
        assert_eq!(frames.len(), 6);
        let wire: Vec<u8> = frames.iter().flat_map(|b| b.iter().copied()).collect();
        let mut at = 0;
        for (k, (index, range)) in [(5, 0..10), (6, 10..10), (7, 10..30)]
            .into_iter()
            .enumerate()
        {
            let (frame, used) = swarmcast_proto::decode(&wire[at..], &limits)
                .unwrap()
                .unwrap();
            match frame {
                swarmcast_proto::Frame::Chunk { header, data: d } => {
                    assert_eq!(header.broadcast, id);
                    assert_eq!(header.index, ChunkIndex(index), "frame {k}");
                    assert_eq!(&d[..], &data[range]);
                }
                other => panic!("frame {k}: {other:?}"),
            }
            at += used;
        }
        assert_eq!(at, wire.len());
    }

    #[test]
    fn corruption_flips_the_first_byte_of_each_chunk() {
        let mut buf = vec![0u8; 6];
        corrupt_each(&mut buf, &[2, 0, 4]);
        assert_eq!(buf, [0xff, 0, 0xff, 0, 0, 0]);
    }

    const CHUNK: u32 = 4096;

    /// A node serving one broadcast of 4 chunks of 7s over loopback, and a client connected.
    struct Loopback {
        conn: quinn::Connection,
        id: BroadcastId,
        peer: swarmcast_proto::NodeId,
        catalog: Arc<Catalog>,
        /// The data plane's inbox for serving events, with room for `room`.
        events: tokio::sync::mpsc::Receiver<ServeEvent>,
        server: tokio::task::JoinHandle<()>,
        _client: quinn::Endpoint,
        _dir: tempfile::TempDir,
    }

    async fn loopback(super_seed: bool, room: usize) -> Loopback {
        loopback_for(super_seed, room, None).await
    }

    /// [`loopback`] serving a broadcast restricted to `audience`; the client's certificate is
    /// named `client` and carries group `cpu`.
    async fn loopback_for(
        super_seed: bool,
        room: usize,
        audience: Option<swarmcast_proto::Audience>,
    ) -> Loopback {
        use std::net::{Ipv4Addr, SocketAddr};
        use swarmcast_certs::testing::TestCluster;
        use swarmcast_proto::Role;

        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), vec![7u8; 4 * CHUNK as usize]).unwrap();
        let mut m = crate::manifest::Manifest::from_dir(
            &src,
            CHUNK,
            &crate::manifest::ManifestLimits::default(),
        )
        .unwrap();
        m.audience = audience.clone();
        let bytes = m.to_bytes();
        let id = crate::manifest::manifest_id(&bytes);
        let layout = Arc::new(Layout::new(&m));
        let m = Arc::new(m);
        let source = Source::new(src.canonicalize().unwrap(), m, layout.clone());
        let catalog = Arc::new(Catalog::new(false, None, Default::default()));
        catalog.insert(
            id,
            Arc::new(Servable {
                manifest_bytes: Arc::new(bytes),
                layout,
                reader: Reader::Source(Arc::new(source)),
                refused: Default::default(),
                audience,
                priority: Priority::Normal,
                super_seed,
            }),
        );

        let cluster = TestCluster::new();
        let (server_id, client_id) = (
            cluster.issue("server", Role::Node),
            cluster.issue_with_groups("client", Role::Node, &["cpu".to_owned()]),
        );
        let transport = swarmcast_net::transport_config();
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let endpoint = quinn::Endpoint::server(
            server_id.server_config(transport.clone()).unwrap(),
            loopback,
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let (events, events_rx) = tokio::sync::mpsc::channel(room);
        let peer = client_id.node_id();
        let served = catalog.clone();
        let server = tokio::spawn(async move {
            let conn = endpoint.accept().await.unwrap().await.unwrap();
            while let Ok((send, recv)) = conn.accept_bi().await {
                let (catalog, events) = (served.clone(), events.clone());
                let who = Arc::new(Requester::of(&conn, peer));
                tokio::spawn(serve_stream(catalog, events, who, send, recv, None));
            }
        });
        let client = quinn::Endpoint::client(loopback).unwrap();
        let config = client_id.client_config(transport).unwrap();
        let t = Duration::from_secs(10);
        let (conn, _) = swarmcast_net::connect(&client, &config, addr, t)
            .await
            .unwrap();
        Loopback {
            conn,
            id,
            peer,
            catalog,
            events: events_rx,
            server,
            _client: client,
            _dir: dir,
        }
    }

    /// Ask for chunk `index`: its bytes, or the refusal's code.
    async fn ask(
        conn: quinn::Connection,
        id: BroadcastId,
        index: u32,
    ) -> Result<Vec<u8>, ErrorCode> {
        let limits = Limits::default();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let req = Message::ChunkRequest(ChunkRequest {
            broadcast: id,
            index: ChunkIndex(index),
            count: 1,
        });
        wire::write_message(&mut send, &req, &limits).await.unwrap();
        send.finish().unwrap();
        match wire::read_header(&mut recv, &limits).await.unwrap() {
            Some(Message::ChunkData(h)) => {
                let mut data = vec![0u8; h.len as usize];
                recv.read_exact(&mut data).await.unwrap();
                Ok(data)
            }
            Some(Message::Error(e)) => Err(e.code),
            other => panic!("chunk {index}: {other:?}"),
        }
    }

    /// Ask for the manifest: its bytes, or the refusal's code.
    async fn ask_manifest(conn: quinn::Connection, id: BroadcastId) -> Result<Vec<u8>, ErrorCode> {
        let limits = Limits::default();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let req = Message::ManifestRequest(swarmcast_proto::ManifestRequest { broadcast: id });
        wire::write_message(&mut send, &req, &limits).await.unwrap();
        send.finish().unwrap();
        match wire::read_header(&mut recv, &limits).await.unwrap() {
            Some(Message::ManifestData(h)) => {
                let mut data = vec![0u8; h.len as usize];
                recv.read_exact(&mut data).await.unwrap();
                Ok(data)
            }
            Some(Message::Error(e)) => Err(e.code),
            other => panic!("manifest: {other:?}"),
        }
    }

    /// A restricted broadcast is served, manifest and chunks, only to a peer whose
    /// certificate the audience admits (by name or by group), over a real connection; anyone
    /// else is refused `Forbidden` before anything is read.
    #[tokio::test]
    async fn a_restricted_broadcast_is_served_to_its_audience_only() {
        use swarmcast_proto::Audience;
        let others = Audience {
            names: vec!["server".into()],
            groups: vec!["gpu".into()],
        };
        let l = loopback_for(false, 8, Some(others)).await;
        assert_eq!(
            ask_manifest(l.conn.clone(), l.id).await,
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            ask(l.conn.clone(), l.id, 0).await,
            Err(ErrorCode::Forbidden)
        );
        for admitted in [
            Audience {
                names: vec!["client".into()],
                groups: Vec::new(),
            },
            Audience {
                names: Vec::new(),
                groups: vec!["cpu".into()],
            },
        ] {
            let l = loopback_for(false, 8, Some(admitted)).await;
            let manifest = ask_manifest(l.conn.clone(), l.id).await.unwrap();
            assert_eq!(crate::manifest::manifest_id(&manifest), l.id);
            assert_eq!(
                ask(l.conn.clone(), l.id, 1).await.unwrap(),
                vec![7u8; CHUNK as usize]
            );
        }
    }

    async fn next_event(l: &mut Loopback) -> ServeEvent {
        let t = Duration::from_secs(10);
        match tokio::time::timeout(t, l.events.recv()).await {
            Ok(Some(ev)) => ev,
            other => panic!("no serving event: {other:?}"),
        }
    }

    /// The origin's super-seeding is the core's decision: each request is put to the data
    /// plane (`Admit`) before a byte is read, a declined one is answered `Elsewhere`, and an
    /// admitted one's end is reported (`Served`, delivered once the requester read it all).
    #[tokio::test]
    async fn a_super_seeding_origin_asks_the_core_and_reports_each_send_end() {
        let mut l = loopback(true, 8).await;
        let asked = tokio::spawn(ask(l.conn.clone(), l.id, 2));
        match next_event(&mut l).await {
            ServeEvent::Admit {
                id,
                first,
                end,
                reply,
            } => {
                assert_eq!((id, first, end), (l.id, 2, 3));
                reply.send(true).unwrap();
            }
            other => panic!("asked first: {other:?}"),
        }
        assert_eq!(asked.await.unwrap(), Ok(vec![7u8; CHUNK as usize]));
        assert!(matches!(
            next_event(&mut l).await,
            ServeEvent::Uploaded { .. }
        ));
        match next_event(&mut l).await {
            ServeEvent::Served {
                id,
                first,
                end,
                delivered,
            } => assert_eq!((id, first, end, delivered), (l.id, 2, 3, true)),
            other => panic!("the send's end: {other:?}"),
        }
        // Declined: `Elsewhere`, nothing read, nothing to report.
        let asked = tokio::spawn(ask(l.conn.clone(), l.id, 2));
        match next_event(&mut l).await {
            ServeEvent::Admit { reply, .. } => reply.send(false).unwrap(),
            other => panic!("asked first: {other:?}"),
        }
        assert_eq!(asked.await.unwrap(), Err(ErrorCode::Elsewhere));
        let more = tokio::time::timeout(Duration::from_millis(200), l.events.recv()).await;
        assert!(more.is_err(), "nothing after a decline: {more:?}");
        l.server.abort();
    }

    /// Eight requests are answered while the data plane's inbox for serving events has room for
    /// one and nobody drains it: once drained, it holds all eight uploads. (The serving side
    /// used to `try_send` them: seven were lost, and `node status` under-counted.)
    #[tokio::test]
    async fn every_upload_is_reported_to_a_full_data_plane() {
        const REQUESTS: u32 = 8;
        let mut l = loopback(false, 1).await;
        let (conn, id, peer) = (l.conn.clone(), l.id, l.peer);
        let t = Duration::from_secs(10);
        let asked: Vec<_> = (0..REQUESTS)
            .map(|k| tokio::spawn(ask(conn.clone(), id, k % 4)))
            .collect();
        for a in asked {
            let data = tokio::time::timeout(t, a).await.unwrap().unwrap();
            assert_eq!(data, Ok(vec![7u8; CHUNK as usize]));
        }
        let mut uploaded = 0;
        for _ in 0..REQUESTS {
            match tokio::time::timeout(t, l.events.recv()).await {
                Ok(Some(ServeEvent::Uploaded {
                    id: b,
                    peer: p,
                    bytes,
                })) => {
                    assert_eq!((b, p), (id, peer));
                    uploaded += bytes;
                }
                other => panic!("after {uploaded} bytes: {other:?}"),
            }
        }
        assert_eq!(uploaded, u64::from(REQUESTS * CHUNK));
        // The core said to refuse it (`RefuseServing`): every request is refused from then on.
        l.catalog.refuse(&id);
        assert_eq!(ask(conn, id, 0).await, Err(ErrorCode::Unavailable));
        l.server.abort();
    }
}

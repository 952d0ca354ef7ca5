//! Neighbour shell: one actor owns the [`Neighbours`] core, dials QUIC connections (inbound
//! ones come from [`accept`](crate::accept)), runs one control stream per neighbour (pings and
//! pongs for liveness; `Have` and `HaveUpdate` passed to the data plane, and the data plane's
//! messages sent) and turns connection events into core inputs.
//!
//! The dialler of a connection opens its control stream and sends a first ping at once, so the
//! acceptor's `accept_bi` returns. Every dial checks that the certificate met carries the NodeId
//! the registry gave; any other peer is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmcast_net::CloseCode;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{Limits, Message, NodeId, Ping, RegistryEntry, Role};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::accept;
use crate::control::NeighbourStatus;
use crate::data::DataInput;
use crate::handles::{Dialer, Server};
use crate::neighbours::{
    Action, Direction, LossReason, NeighbourConfig, NeighbourState, Neighbours,
};

/// The shortest time between two activity reports of one link to the core: well below
/// [`NeighbourConfig::active_for`](crate::neighbours::NeighbourConfig::active_for).
const ACTIVITY_REPORT: Duration = Duration::from_millis(500);

/// Inputs of the neighbour actor.
#[derive(Debug)]
pub(crate) enum Input {
    /// A fresh registry view.
    Registry(Vec<RegistryEntry>),
    /// A connection is up, with its control stream.
    Connected(Box<Link>),
    /// A dial failed.
    DialFailed { id: NodeId, error: String },
    /// A connection ended.
    Closed { id: NodeId, stable_id: usize },
    /// A pong arrived.
    Pong { id: NodeId, nonce: u64 },
    /// Data-plane traffic (a have or have-update, either way) on the link to this peer.
    Active { id: NodeId },
    /// The data plane caught this peer serving bad data too often.
    Ban { id: NodeId },
}

/// A connection to a neighbour with its control stream.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) direction: Direction,
    pub(crate) conn: quinn::Connection,
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
}

/// What the neighbour actor and its link tasks use.
#[derive(Debug, Clone)]
pub(crate) struct NeighbourTask {
    /// This node.
    pub(crate) me: NodeId,
    pub(crate) config: NeighbourConfig,
    pub(crate) dialer: Dialer,
    /// Serves the request streams of neighbour connections.
    pub(crate) server: Server,
    /// Peer events and data messages for the data plane.
    pub(crate) data_tx: mpsc::Sender<DataInput>,
    /// Its part of `node status`.
    pub(crate) status: watch::Sender<Vec<NeighbourStatus>>,
}

struct Entry {
    conn: quinn::Connection,
    name: String,
    tx: mpsc::Sender<Message>,
}

/// Run the neighbour actor until aborted.
pub(crate) async fn run(
    task: NeighbourTask,
    tx: mpsc::Sender<Input>,
    mut rx: mpsc::Receiver<Input>,
) {
    let shared = Arc::new(task);
    let mut core = Neighbours::new(shared.config.clone(), shared.me, rand::random::<u64>());
    let mut links: HashMap<NodeId, Entry> = HashMap::new();
    loop {
        let deadline = core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let input = tokio::select! {
            biased;
            input = rx.recv() => match input {
                Some(i) => Some(i),
                None => return,
            },
            () = tokio::time::sleep_until(deadline.into()) => None,
        };
        let now = Instant::now();
        if let Some(input) = input {
            handle_input(&shared, &tx, &mut core, &mut links, now, input);
        }
        core.handle_timeout(now);
        while let Some(action) = core.poll_action() {
            perform(&shared, &tx, &mut links, action);
        }
        while let Some(event) = core.poll_event() {
            info!(?event, "neighbours");
        }
        publish(&shared, &core, &links);
    }
}

fn handle_input(
    shared: &Arc<NeighbourTask>,
    tx: &mpsc::Sender<Input>,
    core: &mut Neighbours,
    links: &mut HashMap<NodeId, Entry>,
    now: Instant,
    input: Input,
) {
    match input {
        Input::Registry(entries) => core.handle_registry(now, &entries),
        Input::DialFailed { id, error } => {
            debug!(peer = %id.short(), %error, "dial failed");
            core.handle_dial_failed(now, id);
        }
        Input::Pong { id, nonce } => core.handle_pong(now, id, nonce),
        Input::Active { id } => core.handle_activity(now, id),
        // The core keeps the connection as a serve-only link or asks for a `Close`; the data
        // plane has already stopped fetching from the peer.
        Input::Ban { id } => core.handle_ban(now, id),
        Input::Closed { id, stable_id } => {
            // Only the connection the core knows about counts; a duplicate closing is noise.
            if links
                .get(&id)
                .is_some_and(|e| e.conn.stable_id() == stable_id)
            {
                links.remove(&id);
                core.handle_closed(now, id);
            }
        }
        Input::Connected(link) => {
            let link = *link;
            if !core.handle_connected(now, link.id, link.addr, link.direction) {
                debug!(peer = %link.name, "connection not wanted");
                link.conn.close(CloseCode::Unwanted.into(), b"unwanted");
                return;
            }
            if let Some(old) = links.remove(&link.id) {
                // The core kept the new connection of a duplicated pair; drop the old one quietly.
                old.conn.close(CloseCode::Unwanted.into(), b"duplicate");
            }
            let (ltx, lrx) = mpsc::channel(1024);
            let _ = shared.data_tx.try_send(DataInput::PeerUp {
                id: link.id,
                conn: link.conn.clone(),
                tx: ltx.clone(),
            });
            links.insert(
                link.id,
                Entry {
                    conn: link.conn.clone(),
                    name: link.name.clone(),
                    tx: ltx,
                },
            );
            let span = info_span!("neighbour", peer = %link.name, addr = %link.addr);
            tokio::spawn(drive_link(shared.clone(), tx.clone(), link, lrx).instrument(span));
        }
    }
}

fn perform(
    shared: &Arc<NeighbourTask>,
    tx: &mpsc::Sender<Input>,
    links: &mut HashMap<NodeId, Entry>,
    action: Action,
) {
    match action {
        Action::Dial { id, addr } => {
            let span = info_span!("dial", peer = %id.short(), %addr);
            tokio::spawn(dial(shared.clone(), tx.clone(), id, addr).instrument(span));
        }
        Action::Close { id, reason } => {
            if let Some(e) = links.remove(&id) {
                info!(peer = %e.name, ?reason, "dropping neighbour");
                match reason {
                    LossReason::Banned => e.conn.close(CloseCode::Forbidden.into(), b"banned"),
                    _ => e.conn.close(CloseCode::Lost.into(), b"lost"),
                }
                let _ = shared.data_tx.try_send(DataInput::PeerDown { id });
            }
        }
        Action::Ping { id, nonce } => {
            if let Some(e) = links.get(&id) {
                // A full queue means the link is stuck; the missed pong will tell the core.
                let _ = e.tx.try_send(Message::Ping(Ping { nonce }));
            }
        }
    }
}

fn publish(shared: &NeighbourTask, core: &Neighbours, links: &HashMap<NodeId, Entry>) {
    let list = core
        .neighbours()
        .into_iter()
        .map(|n| NeighbourStatus {
            id: n.id.to_hex(),
            name: links.get(&n.id).map(|e| e.name.clone()),
            addr: n.addr,
            direction: match n.direction {
                Direction::Outbound => "outbound",
                Direction::Inbound => "inbound",
            }
            .to_owned(),
            state: match n.state {
                NeighbourState::Dialling => "dialling",
                NeighbourState::Connected => "connected",
            }
            .to_owned(),
            rtt_ms: n.rtt.map(|d| d.as_secs_f64() * 1000.0),
            banned: n.banned,
        })
        .collect();
    shared.status.send_if_modified(|old| {
        let changed = *old != list;
        if changed {
            *old = list;
        }
        changed
    });
}

async fn dial(shared: Arc<NeighbourTask>, tx: mpsc::Sender<Input>, id: NodeId, addr: SocketAddr) {
    let timeout = shared.config.dial_timeout;
    let result = async {
        let (conn, peer) = shared
            .dialer
            .connect(addr, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if peer.id != id || peer.role != Role::Node {
            warn!(expected = %id, met = %peer.id, role = %peer.role, "peer is not who the registry said; refusing");
            conn.close(CloseCode::WrongPeer.into(), b"unexpected identity");
            return Err(format!("expected NodeId {id}, met {} ({})", peer.id, peer.role));
        }
        let (mut send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        // The first frame makes the stream visible to the acceptor.
        wire::write_message(&mut send, &Message::Ping(Ping { nonce: 0 }), &Limits::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Link {
            id,
            name: peer.name,
            addr,
            direction: Direction::Outbound,
            conn,
            send,
            recv,
        })
    }
    .await;
    let input = match result {
        Ok(link) => Input::Connected(Box::new(link)),
        Err(error) => Input::DialFailed { id, error },
    };
    let _ = tx.send(input).await;
}

/// Pump one neighbour's control stream until its connection ends.
async fn drive_link(
    shared: Arc<NeighbourTask>,
    tx: mpsc::Sender<Input>,
    link: Link,
    mut outbox: mpsc::Receiver<Message>,
) {
    let Link {
        id,
        conn,
        mut send,
        mut recv,
        ..
    } = link;
    let stable_id = conn.stable_id();
    // Pongs and adverts go before the piece data queued on this connection.
    if let Err(e) = wire::prioritise_control(&send) {
        debug!(error = %e, "control stream closed before it could be prioritised");
    }
    let limits = Limits::default();
    let (reply_tx, mut replies) = mpsc::channel::<Message>(16);
    // Haves and have-updates either way mean a transfer with this peer: tell the core (which
    // then pings fast), at most every ACTIVITY_REPORT.
    // (A mutex, not a cell: the future must be Send. Only this task takes it.)
    let reported = std::sync::Mutex::new(None::<Instant>);
    let active = || {
        let now = Instant::now();
        let mut last = reported.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| now >= t + ACTIVITY_REPORT) {
            *last = Some(now);
            let _ = tx.try_send(Input::Active { id });
        }
    };
    let writer = async {
        loop {
            let msg = tokio::select! {
                m = outbox.recv() => m,
                m = replies.recv() => m,
            };
            let Some(msg) = msg else { return };
            if matches!(msg, Message::Have(_) | Message::HaveUpdate(_)) {
                active();
            }
            if let Err(e) = wire::write_message(&mut send, &msg, &limits).await {
                debug!(error = %e, "control stream write failed");
                return;
            }
        }
    };
    let reader = async {
        loop {
            match wire::read_message(&mut recv, &limits).await {
                Ok(Some(Message::Ping(p))) => {
                    let _ = reply_tx.try_send(Message::Pong(p));
                }
                Ok(Some(Message::Pong(p))) => {
                    let _ = tx.send(Input::Pong { id, nonce: p.nonce }).await;
                }
                Ok(Some(msg @ (Message::Have(_) | Message::HaveUpdate(_)))) => {
                    active();
                    let _ = shared
                        .data_tx
                        .send(DataInput::PeerMessage { id, msg })
                        .await;
                }
                Ok(Some(other)) => {
                    debug!(kind = other.kind(), "ignoring control message");
                }
                Ok(None) => return,
                Err(WireError::Decode(e)) => {
                    warn!(error = %e, "undecodable control stream; closing connection");
                    conn.close(CloseCode::Protocol.into(), b"protocol error");
                    return;
                }
                Err(e) => {
                    debug!(error = %e, "control stream ended");
                    return;
                }
            }
        }
    };
    let requests = accept::serve_requests(shared.server.clone(), conn.clone(), id, None);
    let ended = tokio::select! {
        () = writer => "control stream writer ended",
        () = reader => "control stream reader ended",
        () = requests => "request streams ended",
        reason = conn.closed() => {
            debug!(%reason, "neighbour connection closed");
            "connection closed"
        }
    };
    debug!(ended, "neighbour link done");
    conn.close(CloseCode::Shutdown.into(), b"done");
    let _ = tx.send(Input::Closed { id, stable_id }).await;
}

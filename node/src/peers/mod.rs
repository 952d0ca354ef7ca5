//! Neighbour shell: one actor owns the [`Neighbours`] core, dials QUIC connections (inbound
//! ones come from [`accept`](crate::accept)), runs one control stream per neighbour (pings and
//! pongs for liveness; `Have` and `HaveUpdate` passed to the data plane, and the data plane's
//! messages sent) and turns connection events into core inputs.
//!
//! The dialler of a connection opens its control stream and sends a first ping at once, so the
//! acceptor's `accept_bi` returns. Every dial checks that the certificate met carries the NodeId
//! the registry gave; any other peer is refused.
//!
//! # Nothing is lost
//! * The data plane hears of every neighbour that comes up and every one that goes
//!   (`PeerUp`, `PeerDown`, whether the core closed the connection or it closed by itself), and
//!   the core of every link's activity: those sends wait for room.
//! * Pings and pongs go through the link's [`Outbox`]; one that finds no room is a congested
//!   link, and the core hears of it ([`Neighbours::handle_congested`]).
//! * The data plane's `Have`s and `HaveUpdate`s go into the same outbox, merged per broadcast
//!   while the writer is held up, so back-pressure coalesces them instead of dropping them.
//!
//! Why waiting cannot deadlock: this actor waits only for the data plane's inbox, and the data
//! plane waits for nothing (its actions are spawned tasks, outbox merges and one unbounded send:
//! a `Ban`, of which the broadcast core emits at most one per peer for the node's life, so that
//! channel stays small). The data plane therefore always drains its inbox, and this actor's
//! sends, like the link tasks' (to this actor and to the data plane), always complete. The
//! chain of waits runs link tasks → this actor → the data plane, and never back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmcast_net::CloseCode;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{Limits, Message, NodeId, Ping, Role};
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::accept;
use crate::handles::{Dialer, Server};
use crate::inputs::{DataInput, Link, NeighbourDialError, NeighbourInput as Input};
use crate::neighbours::{
    Action, Direction, LossReason, NeighbourConfig, NeighbourState, Neighbours, Unsent,
};
use crate::outbox::Outbox;
use crate::status::NeighbourStatus;

#[cfg(test)]
mod tests;

/// The shortest time between two activity reports of one link to the core: well below
/// [`NeighbourConfig::active_for`](crate::neighbours::NeighbourConfig::active_for).
const ACTIVITY_REPORT: Duration = Duration::from_millis(500);

/// How often a link reads its connection's receive counter for [`Input::Heard`]: well within
/// a ping timeout (1 s), and a wake-up of a few microseconds per link.
const HEARD_EVERY: Duration = Duration::from_millis(250);

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
    outbox: Arc<Outbox>,
}

/// Run the neighbour actor until aborted. `bans` are the data plane's (unbounded: see the
/// [module docs](self)).
pub(crate) async fn run(
    task: NeighbourTask,
    tx: mpsc::Sender<Input>,
    mut rx: mpsc::Receiver<Input>,
    mut bans: mpsc::UnboundedReceiver<NodeId>,
) {
    let shared = Arc::new(task);
    let mut core = Neighbours::new(shared.config.clone(), shared.me, rand::random::<u64>());
    let mut links: HashMap<NodeId, Entry> = HashMap::new();
    let mut bans_open = true;
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
            ban = bans.recv(), if bans_open => match ban {
                Some(id) => Some(Input::Ban { id }),
                None => {
                    bans_open = false;
                    None
                }
            },
            () = tokio::time::sleep_until(deadline.into()) => None,
        };
        let now = Instant::now();
        if let Some(input) = input {
            handle_input(&shared, &tx, &mut core, &mut links, now, input).await;
        }
        core.handle_timeout(now);
        while let Some(action) = core.poll_action() {
            perform(&shared, &tx, &mut core, &mut links, now, action).await;
        }
        while let Some(event) = core.poll_event() {
            info!(?event, "neighbours");
        }
        publish(&shared, &core, &links);
    }
}

async fn handle_input(
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
            let failure = error.failure();
            debug!(peer = %id.short(), %error, ?failure, "dial failed");
            core.handle_dial_failed(now, id, failure);
        }
        Input::Pong { id, nonce } => core.handle_pong(now, id, nonce),
        Input::Congested { id, unsent } => {
            debug!(peer = %id.short(), ?unsent, "control stream congested");
            core.handle_congested(now, id, unsent);
        }
        Input::Active { id } => core.handle_activity(now, id),
        Input::Heard { id } => core.handle_heard(now, id),
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
                // The data plane drops its requests to the peer (they fail anyway) and sends it
                // nothing more.
                let _ = shared.data_tx.send(DataInput::PeerDown { id }).await;
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
            let outbox = Arc::new(Outbox::default());
            // Before the link's task starts: the data plane hears of the peer before any of its
            // messages.
            let up = DataInput::PeerUp {
                id: link.id,
                conn: link.conn.clone(),
                outbox: outbox.clone(),
            };
            let _ = shared.data_tx.send(up).await;
            links.insert(
                link.id,
                Entry {
                    conn: link.conn.clone(),
                    name: link.name.clone(),
                    outbox: outbox.clone(),
                },
            );
            let span = info_span!("neighbour", peer = %link.name, addr = %link.addr);
            tokio::spawn(drive_link(shared.clone(), tx.clone(), link, outbox).instrument(span));
        }
    }
}

async fn perform(
    shared: &Arc<NeighbourTask>,
    tx: &mpsc::Sender<Input>,
    core: &mut Neighbours,
    links: &mut HashMap<NodeId, Entry>,
    now: Instant,
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
                let _ = shared.data_tx.send(DataInput::PeerDown { id }).await;
            }
        }
        Action::Ping { id, nonce } => {
            let queued = links.get(&id).map(|e| e.outbox.ping(nonce));
            if let Some(Err(full)) = queued {
                debug!(peer = %id.short(), error = %full, "ping not queued");
                core.handle_congested(now, id, Unsent::Ping { nonce });
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
        let (conn, peer) = shared.dialer.connect(addr, timeout).await?;
        if peer.id != id || peer.role != Role::Node {
            warn!(expected = %id, met = %peer.id, role = %peer.role, "peer is not who the registry said; refusing");
            conn.close(CloseCode::WrongPeer.into(), b"unexpected identity");
            return Err(NeighbourDialError::WrongPeer {
                expected: id,
                met: peer.id,
                role: peer.role,
            });
        }
        let (mut send, recv) = conn.open_bi().await.map_err(WireError::from)?;
        // The first frame makes the stream visible to the acceptor.
        wire::write_message(&mut send, &Message::Ping(Ping { nonce: 0 }), &Limits::default())
            .await?;
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

/// Tell the core of data-plane traffic on the link to `id`, at most every [`ACTIVITY_REPORT`].
/// (`reported` is a mutex, not a cell, because the link's future must be `Send`; only its task
/// takes it.)
async fn report_active(
    tx: &mpsc::Sender<Input>,
    reported: &std::sync::Mutex<Option<Instant>>,
    id: NodeId,
) {
    let now = Instant::now();
    let due = {
        let mut last = reported.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| now >= t + ACTIVITY_REPORT);
        if due {
            *last = Some(now);
        }
        due
    };
    if due {
        let _ = tx.send(Input::Active { id }).await;
    }
}

/// Pump one neighbour's control stream until its connection ends.
async fn drive_link(
    shared: Arc<NeighbourTask>,
    tx: mpsc::Sender<Input>,
    link: Link,
    outbox: Arc<Outbox>,
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
    // Haves and have-updates either way mean a transfer with this peer: the core then pings
    // fast.
    let reported = std::sync::Mutex::new(None::<Instant>);
    let writer = async {
        loop {
            // Everything queued meanwhile, advertisements merged (see `Outbox`).
            for msg in outbox.next().await {
                if matches!(msg, Message::Have(_) | Message::HaveUpdate(_)) {
                    report_active(&tx, &reported, id).await;
                }
                if let Err(e) = wire::write_message(&mut send, &msg, &limits).await {
                    debug!(error = %e, "control stream write failed");
                    return;
                }
            }
        }
    };
    let reader = async {
        loop {
            match wire::read_message(&mut recv, &limits).await {
                Ok(Some(Message::Ping(p))) => {
                    if let Err(full) = outbox.pong(p.nonce) {
                        debug!(error = %full, "pong not queued");
                        let unsent = Unsent::Pong;
                        let _ = tx.send(Input::Congested { id, unsent }).await;
                    }
                }
                Ok(Some(Message::Pong(p))) => {
                    let _ = tx.send(Input::Pong { id, nonce: p.nonce }).await;
                }
                Ok(Some(msg @ (Message::Have(_) | Message::HaveUpdate(_)))) => {
                    report_active(&tx, &reported, id).await;
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
    // Any packet from the peer is proof of life (see `Neighbours::handle_heard`): the
    // connection's receive counter is read every `HEARD_EVERY`, and an advance is reported.
    let heard = async {
        let mut seen = conn.stats().udp_rx.datagrams;
        loop {
            tokio::time::sleep(HEARD_EVERY).await;
            let now = conn.stats().udp_rx.datagrams;
            if now > seen {
                seen = now;
                if tx.send(Input::Heard { id }).await.is_err() {
                    return;
                }
            }
        }
    };
    let requests = accept::serve_requests(shared.server.clone(), conn.clone(), id, None);
    let ended = tokio::select! {
        () = heard => "neighbour actor gone",
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

//! Neighbour core: which peers a node keeps QUIC connections to.
//!
//! [`Neighbours`] is pure, in the manner of quinn-proto: it opens no sockets and reads no clock.
//! The shell feeds it inputs with the current time and carries out the [`Action`]s it emits.
//! Randomness comes from an RNG seeded at construction, so a run is reproducible from its seed.
//!
//! # What it does
//! * **Refill.** Whenever live neighbours plus fresh dials fall below
//!   [`NeighbourConfig::target`], it dials candidates from the latest registry view, chosen at
//!   random with low RTT favoured (RTTs are remembered from earlier connections). A lost
//!   neighbour is replaced in the same call that loses it. With fewer candidates than the
//!   target it connects to all of them (a full mesh).
//! * **Pings.** Every connected neighbour gets a [`Action::Ping`] each
//!   [`ping_interval`](NeighbourConfig::ping_interval) while its link is *active* (the shell
//!   reported data-plane traffic on it, [`handle_activity`](Neighbours::handle_activity), within
//!   [`active_for`](NeighbourConfig::active_for)), and each
//!   [`idle_ping_interval`](NeighbourConfig::idle_ping_interval) otherwise, so that an idle
//!   fleet costs almost nothing while a transfer still notices a dead peer fast; pongs give a
//!   smoothed RTT; a ping
//!   unanswered for [`ping_timeout`](NeighbourConfig::ping_timeout) is a miss, and
//!   [`max_missed_pings`](NeighbourConfig::max_missed_pings) consecutive misses lose the
//!   neighbour. Any packet from the peer is proof of life too
//!   ([`handle_heard`](Neighbours::handle_heard)): it settles the pings sent before it, so a
//!   peer whose pongs queue behind its own data at a full download link is not lost.
//! * **Loss.** A neighbour is lost when its connection closes, when it misses its pings, when the
//!   registry marks it dead, or when it is banned. Peers whose connection closed, whose dial
//!   failed, or who missed their pings enter a cooldown and are not dialled for a while: an
//!   exponential backoff from [`failure_cooldown_min`](NeighbourConfig::failure_cooldown_min)
//!   to [`failure_cooldown`](NeighbourConfig::failure_cooldown). A dial that failed because
//!   the handshake refused a certificate, or because the address answered with another
//!   identity ([`DialFailure`]), is no passing fault: that peer waits the longest cooldown at
//!   once, and a wrong identity only until the registry gives the peer another address.
//! * **Congestion.** A ping or pong the shell could not queue on a control stream
//!   ([`handle_congested`](Neighbours::handle_congested)) is a congested link: each counts as
//!   one missed ping at once (a ping that never left cannot be answered, and is not counted
//!   again when its timeout passes), so a link that stays congested is lost like a silent one.
//! * **Bans.** A banned peer (the data plane caught it serving bad chunks) is never dialled
//!   again, but it is not cut off: its disk may be faulty rather than the peer hostile, and it
//!   still needs a verified copy of its own. Its connection is kept as a *serve-only* link
//!   (the data plane never fetches from it) that holds no neighbour slot, so a replacement
//!   is dialled at once and the banned peer never takes the place of an honest source; when
//!   the banned peer dials in later, it is accepted as serve-only too. At most
//!   [`max_serve_only`](NeighbourConfig::max_serve_only) such links are kept; beyond that a
//!   ban closes the connection ([`LossReason::Banned`]) and inbound connections of banned
//!   peers are refused.
//!
//! # Call order
//! 1. Create the core with [`Neighbours::new`].
//! 2. Feed every input through the matching `handle_*` method, with `now` read just before:
//!    [`handle_registry`](Neighbours::handle_registry) for each registry view from the
//!    bootstrap, [`handle_connected`](Neighbours::handle_connected),
//!    [`handle_dial_failed`](Neighbours::handle_dial_failed),
//!    [`handle_closed`](Neighbours::handle_closed), [`handle_pong`](Neighbours::handle_pong),
//!    [`handle_activity`](Neighbours::handle_activity), [`handle_heard`](Neighbours::handle_heard),
//!    [`handle_ban`](Neighbours::handle_ban),
//!    [`handle_congested`](Neighbours::handle_congested).
//! 3. After every `handle_*` call, drain [`poll_action`](Neighbours::poll_action) until it
//!    returns `None` and carry each action out, then drain
//!    [`poll_event`](Neighbours::poll_event) (optional: events are for logs and status; the
//!    queue keeps the latest 256), then re-arm the timer with
//!    [`poll_timeout`](Neighbours::poll_timeout).
//! 4. When the timer fires (the clock reached `poll_timeout()`), call
//!    [`handle_timeout`](Neighbours::handle_timeout) and go to step 3. `None` means no timer.
//!
//! Every `handle_*` call already refills neighbour slots, so a replacement [`Action::Dial`] is
//! ready as soon as the call that lost a neighbour returns; calling `handle_timeout` right
//! after each `handle_*`, as quinn-proto's shells do, is allowed and harmless.
//!
//! # The shell's side of the contract
//! The shell keeps at most one *accepted* connection per peer [`NodeId`], mirroring the core's
//! single record per peer.
//! * [`Action::Dial`]: connect to `addr`. Once the handshake is done, check that the NodeId of
//!   the peer's certificate equals `id`, then call `handle_connected(id, addr, Outbound)`. If the
//!   handshake fails or times out, or the certificate names another NodeId, close it and call
//!   `handle_dial_failed(id, failure)` with what went wrong ([`DialFailure`]).
//! * An inbound connection: once the handshake is done, take the NodeId from the peer's
//!   certificate (never from a message) and call `handle_connected(id, remote, Inbound)`.
//! * `handle_connected` returned `true`: this connection is now *the* connection to `id`.
//!   Close any other connection the shell holds to `id`, and abort any dial to `id` still in
//!   flight, **silently**: do not report them to the core. This happens when both peers dial
//!   each other at once, or when a peer reconnects after a restart.
//! * `handle_connected` returned `false`: close the new connection (with the close code for
//!   [`LossReason::Refused`]) and forget it; do not report its end. An earlier accepted
//!   connection to `id`, if any, stays.
//! * [`Action::Close`]: close the accepted connection to `id`, or abort the dial to `id`, with
//!   the close code for `reason`. Do not report its end to the core.
//! * [`Action::Ping`]: send `Message::Ping { nonce }` on the control stream of the accepted
//!   connection to `id`. When a `Message::Pong` arrives on that connection, call
//!   `handle_pong(id, nonce)`. If the ping cannot be queued, call
//!   `handle_congested(id, Unsent::Ping { nonce })`. (The shell answers the peer's pings
//!   itself; a pong it cannot queue is reported with `Unsent::Pong`.)
//! * The accepted connection to `id` closed (by the peer, idle timeout, error): call
//!   `handle_closed(id)`. Only ever report the accepted connection: a late report about a
//!   connection the shell was told to drop would kill its successor.
//!
//! Reports about peers the core holds no record of, and failed dials that the core no longer
//! waits for, are ignored, so a report that races with a `Close` does no harm.
//!
//! # Duplicate connections
//! When two peers dial each other at once, both keep the connection **dialled by the peer
//! with the smaller NodeId**. In `handle_connected`, with `self` the local NodeId:
//!
//! | core's record of `id`   | new `Outbound`          | new `Inbound`                          |
//! |-------------------------|-------------------------|----------------------------------------|
//! | none                    | refuse (not asked for)  | accept unless at `max_neighbours`      |
//! | dialling                | accept (our dial is up) | accept iff `id < self`, else refuse    |
//! | connected, outbound     | refuse                  | accept iff `id < self`, else refuse    |
//! | connected, inbound      | refuse                  | accept (the peer reconnected)          |
//!
//! Self is always refused. A banned peer's outbound row never applies (it is never dialled);
//! its inbound connection with no record is accepted only while fewer than `max_serve_only`
//! serve-only links exist, and `max_neighbours` does not apply to it. Both sides follow the same table, so whichever
//! order the four handshakes complete in, both end up with the connection the smaller peer
//! dialled (the simulation in `node/tests/neighbours_sim.rs` checks every interleaving). In
//! some orders the larger peer first sees its own refused dial close and records a spurious
//! `Lost { Closed }` before accepting the right connection.

mod config;
mod link;
mod select;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use swarmcast_proto::{NodeId, RegistryEntry, Role, Status};
use tracing::debug;

pub use config::{NeighbourConfig, NeighbourConfigError};
pub use link::{Direction, NeighbourState};
use link::{Link, Phase};

/// The cooldown after `failures` failures in a row (at least 1): doubling from
/// `failure_cooldown_min`, capped at `failure_cooldown`.
fn backoff(config: &NeighbourConfig, failures: u32) -> Duration {
    let max = config.failure_cooldown;
    let doublings = failures.saturating_sub(1).min(20);
    config
        .failure_cooldown_min
        .checked_mul(1 << doublings)
        .map_or(max, |d| d.min(max))
}

/// The failures in a row after which [`backoff`] gives the longest cooldown.
fn longest_backoff_failures(config: &NeighbourConfig) -> u32 {
    (1..=21)
        .find(|&f| backoff(config, f) >= config.failure_cooldown)
        .unwrap_or(21)
}

/// How soon a node with no neighbour at all retries peers that are in their failure cooldown.
pub const ISOLATED_RETRY: Duration = Duration::from_secs(1);

/// At most this many [`Event`]s wait in the queue; older ones are dropped first.
pub const MAX_EVENTS: usize = 256;

/// Why a dial failed, as the core tells failures apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DialFailure {
    /// No answer in time, or the connection failed on the way: the peer may be down or out of
    /// reach for now. The usual backoff applies.
    Unreachable,
    /// The TLS handshake refused a certificate, either side's (another cluster's CA, an expired
    /// certificate): retrying soon will not help. The longest cooldown applies at once.
    Refused,
    /// The address answered with another identity than the registry's: the registry's address
    /// for the peer is stale (the peer moved, another node took the address). The longest
    /// cooldown applies at once, and ends when the registry gives the peer another address.
    WrongPeer,
}

/// A control message the shell could not queue (see
/// [`handle_congested`](Neighbours::handle_congested)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unsent {
    /// The ping of [`Action::Ping`] with this nonce.
    Ping {
        /// Its nonce.
        nonce: u64,
    },
    /// The pong answering one of the peer's pings.
    Pong,
}

/// Why a neighbour (or a dial) ended. The shell maps it to a QUIC application close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossReason {
    /// The connection closed or timed out (reported by the shell).
    Closed,
    /// The neighbour missed `max_missed_pings` consecutive pings.
    PingsMissed,
    /// The registry marks the peer dead.
    RegistryDead,
    /// The dial failed or timed out.
    DialFailed,
    /// The peer was banned.
    Banned,
    /// Not a loss: the close code for a connection `handle_connected` refused.
    Refused,
}

/// A neighbour, for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// The peer.
    pub id: NodeId,
    /// The address dialled, or the remote address of the inbound connection.
    pub addr: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// Dialling or connected.
    pub state: NeighbourState,
    /// Smoothed RTT, from this connection or an earlier one to the same peer.
    pub rtt: Option<Duration>,
    /// When the dial started, or when the connection was accepted.
    pub since: Instant,
    /// Banned: a serve-only link, never fetched from and holding no neighbour slot.
    pub banned: bool,
}

/// What the shell must do. See the [module docs](self) for the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect to `addr`; the peer's certificate must carry NodeId `id`.
    Dial {
        /// The peer expected.
        id: NodeId,
        /// Where to dial.
        addr: SocketAddr,
    },
    /// Close the connection to `id`, or abort the dial to it; do not report it afterwards.
    Close {
        /// The peer.
        id: NodeId,
        /// Why, for the close code.
        reason: LossReason,
    },
    /// Send `Message::Ping { nonce }` on the control stream of the connection to `id`.
    Ping {
        /// The peer.
        id: NodeId,
        /// Echoed in the pong.
        nonce: u64,
    },
}

/// Something that happened, for logs and status. Nothing depends on reading them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A connection to `id` was accepted as its neighbour connection.
    Connected {
        /// The peer.
        id: NodeId,
        /// Who dialled.
        direction: Direction,
    },
    /// `handle_connected` refused a connection.
    Refused {
        /// The peer.
        id: NodeId,
        /// Who dialled.
        direction: Direction,
    },
    /// A neighbour was lost, or a dial failed (`reason` is then `DialFailed`).
    Lost {
        /// The peer.
        id: NodeId,
        /// Why.
        reason: LossReason,
    },
    /// A connected neighbour was banned and its connection kept as a serve-only link: it is
    /// never fetched from and no longer holds a neighbour slot.
    ServeOnly {
        /// The peer.
        id: NodeId,
    },
    /// A control message to `id` could not be queued: its link is congested.
    Congested {
        /// The peer.
        id: NodeId,
        /// What was not sent.
        unsent: Unsent,
    },
    /// A new neighbour took the slot of one lost earlier.
    Replaced {
        /// The neighbour lost.
        lost: NodeId,
        /// The new neighbour.
        by: NodeId,
    },
}

/// A peer's cooldown.
#[derive(Clone, Copy, Debug)]
struct Cooldown {
    since: Instant,
    until: Instant,
    /// For a wrong identity: the address that gave it. The cooldown ends when the registry
    /// gives the peer another one.
    stale_addr: Option<SocketAddr>,
}

/// The neighbour core. See the [module docs](self) for the call order and the contract.
#[derive(Clone, Debug)]
pub struct Neighbours {
    config: NeighbourConfig,
    self_id: NodeId,
    rng: StdRng,
    /// The latest `now` given; `None` before the first call.
    now: Option<Instant>,
    /// Dialable peers from the latest registry view: Alive, role Node, not self.
    candidates: BTreeMap<NodeId, SocketAddr>,
    /// One record per neighbour, dialling or connected.
    links: BTreeMap<NodeId, Link>,
    /// Smoothed RTT per peer, kept across connections.
    srtt: BTreeMap<NodeId, Duration>,
    /// Peers not to dial until `until`; `since` is when their cooldown began.
    cooldown: BTreeMap<NodeId, Cooldown>,
    /// Failures in a row per peer, for the backoff of its cooldown.
    failures: BTreeMap<NodeId, u32>,
    /// Of those, the ones whose established connection ended (rather than a dial that failed):
    /// an isolated node retries these early.
    dropped: BTreeSet<NodeId>,
    /// Peers never to connect to again.
    banned: BTreeSet<NodeId>,
    /// The next ping nonce; starts at a random value and counts up.
    next_nonce: u64,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Lost neighbours whose slot has not been taken yet, oldest first, for [`Event::Replaced`].
    unreplaced: VecDeque<NodeId>,
}

impl Neighbours {
    /// A core for the node `self_id`, with its RNG seeded from `rng_seed`.
    pub fn new(config: NeighbourConfig, self_id: NodeId, rng_seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let next_nonce = rng.random();
        Self {
            config,
            self_id,
            rng,
            now: None,
            candidates: BTreeMap::new(),
            links: BTreeMap::new(),
            srtt: BTreeMap::new(),
            cooldown: BTreeMap::new(),
            failures: BTreeMap::new(),
            dropped: BTreeSet::new(),
            banned: BTreeSet::new(),
            next_nonce,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            unreplaced: VecDeque::new(),
        }
    }

    /// A fresh registry view from the bootstrap.
    ///
    /// The candidates become the entries that are Alive, of role Node, not self, and with at
    /// least one address (the first is dialled). A neighbour the view marks Dead is lost: its
    /// connection or dial is closed with [`LossReason::RegistryDead`]. Suspect neighbours are
    /// kept but not dialled anew; neighbours missing from the view are kept.
    pub fn handle_registry(&mut self, now: Instant, entries: &[RegistryEntry]) {
        self.advance(now);
        let mut candidates = BTreeMap::new();
        let mut dead = BTreeSet::new();
        for entry in entries {
            let record = &entry.record;
            if record.id == self.self_id {
                continue;
            }
            match entry.status {
                Status::Dead => {
                    dead.insert(record.id);
                }
                Status::Alive if record.role == Role::Node => {
                    if let Some(&addr) = record.addrs.first() {
                        candidates.insert(record.id, addr);
                    }
                }
                Status::Alive | Status::Suspect => {}
            }
        }
        for id in &dead {
            candidates.remove(id);
            if self.links.contains_key(id) {
                self.lose(now, *id, LossReason::RegistryDead, true);
            }
        }
        // A peer that answered with another identity at its old address: its new one is
        // worth a dial at once.
        self.cooldown.retain(|id, c| {
            c.stale_addr
                .is_none_or(|stale| candidates.get(id).is_none_or(|a| *a == stale))
        });
        self.candidates = candidates;
        self.refill(now);
    }

    /// A connection to `id` is up: our dial finished (`Outbound`) or we accepted one
    /// (`Inbound`).
    ///
    /// Returns `false` if the shell must close this connection: it is from self or a banned
    /// peer, it would exceed `max_neighbours`, it is a dial the core did not ask for (or gave
    /// up on), or it loses the duplicate tie-break (see the module docs). Returns `true` if it
    /// is now *the* connection to `id`, and the shell must silently drop any other it has.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        id: NodeId,
        addr: SocketAddr,
        direction: Direction,
    ) -> bool {
        self.advance(now);
        let accepted = self.accepts(id, direction);
        if accepted {
            let fresh = !self.links.get(&id).is_some_and(Link::is_connected);
            self.links.insert(id, Link::connected(now, addr, direction));
            debug!(peer = %id, ?direction, "neighbour connected");
            self.push_event(Event::Connected { id, direction });
            if fresh && !self.banned.contains(&id) {
                if let Some(lost) = self.unreplaced.pop_front() {
                    self.push_event(Event::Replaced { lost, by: id });
                }
            }
        } else {
            debug!(peer = %id, ?direction, "connection refused");
            self.push_event(Event::Refused { id, direction });
        }
        self.refill(now);
        accepted
    }

    /// The dial to `id` failed: `failure` says how (see [`DialFailure`]).
    ///
    /// The peer enters cooldown (the longest at once unless it was merely
    /// [`Unreachable`](DialFailure::Unreachable)) and another candidate is dialled. Ignored
    /// unless the core is dialling `id`.
    pub fn handle_dial_failed(&mut self, now: Instant, id: NodeId, failure: DialFailure) {
        self.advance(now);
        let Some(addr) = self
            .links
            .get(&id)
            .filter(|l| l.is_dialling())
            .map(|l| l.addr)
        else {
            self.refill(now);
            return;
        };
        debug!(peer = %id, %addr, ?failure, "dial failed");
        self.lose(now, id, LossReason::DialFailed, false);
        if failure != DialFailure::Unreachable {
            let failures = self.failures.entry(id).or_insert(0);
            // As many failures in a row as the longest cooldown takes, so that the next
            // failure waits as long.
            *failures = (*failures).max(longest_backoff_failures(&self.config));
            let stale_addr = (failure == DialFailure::WrongPeer).then_some(addr);
            self.cooldown.insert(
                id,
                Cooldown {
                    since: now,
                    until: now + self.config.failure_cooldown,
                    stale_addr,
                },
            );
        }
        self.refill(now);
    }

    /// The shell could not queue `unsent` on the control stream to `id`: the link is
    /// congested. It counts as one missed ping at once (an unsent ping is settled, so that its
    /// timeout does not count it again); `max_missed_pings` of them in a row, misses by timeout
    /// included, lose the neighbour. A pong resets the count as usual. Ignored unless `id` is
    /// connected.
    pub fn handle_congested(&mut self, now: Instant, id: NodeId, unsent: Unsent) {
        self.advance(now);
        let max_missed = self.config.effective_max_missed();
        let Some(Phase::Connected(pinger)) = self.links.get_mut(&id).map(|l| &mut l.phase) else {
            return;
        };
        let nonce = match unsent {
            Unsent::Ping { nonce } => Some(nonce),
            Unsent::Pong => None,
        };
        let missed = pinger.congested(nonce);
        self.push_event(Event::Congested { id, unsent });
        if missed >= max_missed {
            debug!(peer = %id, "congested neighbour missed its pings");
            self.lose(now, id, LossReason::PingsMissed, true);
        }
        self.refill(now);
    }

    /// The accepted connection to `id` closed; the peer enters cooldown and the slot is
    /// refilled. During a dial this counts as a failed dial. Ignored for unknown peers.
    pub fn handle_closed(&mut self, now: Instant, id: NodeId) {
        self.advance(now);
        let reason = match self.links.get(&id).map(|link| &link.phase) {
            Some(Phase::Dialling) => Some(LossReason::DialFailed),
            Some(Phase::Connected(_)) => Some(LossReason::Closed),
            None => None,
        };
        if let Some(reason) = reason {
            self.lose(now, id, reason, false);
        }
        self.refill(now);
    }

    /// A pong from `id`. If `nonce` is an outstanding ping's, the RTT sample updates the
    /// smoothed RTT (`srtt = 7/8 srtt + 1/8 sample`, the first sample taken as is) and the miss
    /// count resets; stale or unknown nonces are ignored.
    pub fn handle_pong(&mut self, now: Instant, id: NodeId, nonce: u64) {
        self.advance(now);
        let Some(Phase::Connected(pinger)) = self.links.get_mut(&id).map(|link| &mut link.phase)
        else {
            return;
        };
        let Some(sample) = pinger.pong(now, nonce) else {
            return;
        };
        let srtt = match self.srtt.get(&id) {
            Some(&old) => (old * 7 + sample) / 8,
            None => sample,
        };
        self.srtt.insert(id, srtt);
    }

    /// Bans `id` for the life of this core: it is never dialled again. A dial to it is
    /// aborted. Its connection, if up, is kept as a serve-only link (no longer holding a
    /// neighbour slot, so a replacement is dialled) while fewer than
    /// [`max_serve_only`](NeighbourConfig::max_serve_only) exist, and closed with
    /// [`LossReason::Banned`] otherwise. Banning a peer again does nothing.
    pub fn handle_ban(&mut self, now: Instant, id: NodeId) {
        self.advance(now);
        if !self.banned.insert(id) {
            return;
        }
        // Counted before `id` joins the banned set's links.
        let serve_only = self.serve_only_count() - usize::from(self.links.contains_key(&id));
        match self.links.get(&id) {
            Some(link) if link.is_connected() && serve_only < self.config.max_serve_only => {
                debug!(peer = %id, "banned neighbour kept as serve-only");
                self.unreplaced.push_back(id);
                if self.unreplaced.len() > self.config.target.max(1) {
                    self.unreplaced.pop_front();
                }
                self.push_event(Event::ServeOnly { id });
            }
            Some(_) => self.lose(now, id, LossReason::Banned, true),
            None => {}
        }
        self.refill(now);
    }

    /// Whether `id` is banned.
    pub fn is_banned(&self, id: &NodeId) -> bool {
        self.banned.contains(id)
    }

    /// Data-plane traffic with `id` (a `Have` or `HaveUpdate` either way): its link is active
    /// for [`NeighbourConfig::active_for`], pinged every
    /// [`NeighbourConfig::ping_interval`] (the next ping comes forward if it was due later).
    /// The shell may report at most once every few hundred milliseconds per link. Ignored
    /// for a peer that is not connected.
    pub fn handle_activity(&mut self, now: Instant, id: NodeId) {
        self.advance(now);
        let interval = self.config.effective_ping_interval();
        if let Some(Phase::Connected(pinger)) = self.links.get_mut(&id).map(|l| &mut l.phase) {
            pinger.activity(now, self.config.active_for, interval);
        }
    }

    /// Packets arrived from `id` on its connection since the shell last looked (at most every
    /// few hundred milliseconds per link): proof of life, like a pong. Every ping sent before
    /// now is settled and the miss count resets, so a peer whose pongs wait behind its own
    /// data in a full download queue is not lost while that data keeps arriving; a peer that
    /// went silent (dead, stopped, cut off) still misses its pings and is lost as before.
    /// Ignored for a peer that is not connected.
    pub fn handle_heard(&mut self, now: Instant, id: NodeId) {
        self.advance(now);
        if let Some(Phase::Connected(pinger)) = self.links.get_mut(&id).map(|l| &mut l.phase) {
            pinger.heard(now);
        }
    }

    /// Whether the link to `id` is connected and active at `now`.
    pub fn is_active(&self, now: Instant, id: &NodeId) -> bool {
        matches!(self.links.get(id).map(|l| &l.phase), Some(Phase::Connected(p)) if p.is_active(now))
    }

    /// The timer fired: time out dials, count missed pings, send due pings, refill slots.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.cooldown.retain(|_, c| c.until > now);

        let timed_out: Vec<NodeId> = self
            .links
            .iter()
            .filter(|(_, link)| link.is_dialling() && link.since + self.config.dial_timeout <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in timed_out {
            debug!(peer = %id, "dial timed out");
            self.lose(now, id, LossReason::DialFailed, true);
        }

        let fast = self.config.effective_ping_interval();
        let slow = self.config.effective_idle_ping_interval();
        let max_missed = self.config.effective_max_missed();
        let mut silent = Vec::new();
        for (&id, link) in &mut self.links {
            let Phase::Connected(pinger) = &mut link.phase else {
                continue;
            };
            if pinger.expire(now, self.config.ping_timeout) >= max_missed {
                silent.push(id);
            } else if pinger.is_due(now) {
                let nonce = self.next_nonce;
                self.next_nonce = nonce.wrapping_add(1);
                let interval = if pinger.is_active(now) { fast } else { slow };
                pinger.sent(now, nonce, interval);
                self.actions.push_back(Action::Ping { id, nonce });
            }
        }
        for id in silent {
            debug!(peer = %id, "neighbour missed its pings");
            self.lose(now, id, LossReason::PingsMissed, true);
        }

        self.refill(now);
    }

    /// The next action for the shell, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must next be called; `None` if nothing is timed.
    ///
    /// May be at or before the latest `now` given, meaning "at once".
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now?;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for link in self.links.values() {
            match &link.phase {
                Phase::Dialling => {
                    at(link.since + self.config.dial_timeout);
                    // A dial turning stale frees its slot for a hedge dial.
                    let stale = link.since + self.config.dial_hedge_after;
                    if stale > now {
                        at(stale);
                    }
                }
                Phase::Connected(pinger) => at(pinger.deadline(self.config.ping_timeout)),
            }
        }
        if self.slots_taken(now) < self.config.target {
            // Below target: wake when a candidate leaves cooldown (sooner when isolated).
            let isolated = !self.sources().any(Link::is_connected);
            self.candidates
                .keys()
                .filter(|id| !self.links.contains_key(id) && !self.banned.contains(id))
                .filter_map(|id| self.cooldown.get(id).map(|c| (id, *c)))
                .filter(|(_, c)| c.until > now)
                .for_each(|(id, c)| {
                    let retry = Some(c.since + ISOLATED_RETRY)
                        .filter(|t| isolated && self.dropped.contains(id) && *t > now);
                    at(retry.map_or(c.until, |t| t.min(c.until)));
                });
        }
        next
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Every neighbour, dialling or connected, sorted by id.
    pub fn neighbours(&self) -> Vec<NeighbourInfo> {
        self.links
            .iter()
            .map(|(&id, link)| NeighbourInfo {
                id,
                addr: link.addr,
                direction: link.direction,
                state: link.state(),
                rtt: self.srtt.get(&id).copied(),
                since: link.since,
                banned: self.banned.contains(&id),
            })
            .collect()
    }

    /// How many neighbours are connected.
    pub fn connected_count(&self) -> usize {
        self.links
            .values()
            .filter(|link| link.is_connected())
            .count()
    }

    /// Records the latest time given; time never runs backwards here.
    fn advance(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |old| old.max(now)));
    }

    /// Links to banned peers (serve-only; a banned peer's dial is aborted at the ban).
    fn serve_only_count(&self) -> usize {
        self.links
            .keys()
            .filter(|id| self.banned.contains(id))
            .count()
    }

    /// Links to peers not banned: the ones that count toward `target` and `max_neighbours`.
    fn sources(&self) -> impl Iterator<Item = &Link> {
        self.links
            .iter()
            .filter(|(id, _)| !self.banned.contains(id))
            .map(|(_, link)| link)
    }

    /// The duplicate tie-break and admission table of the module docs.
    fn accepts(&self, id: NodeId, direction: Direction) -> bool {
        if id == self.self_id {
            return false;
        }
        let banned = self.banned.contains(&id);
        let smaller_peer = id < self.self_id;
        match (self.links.get(&id), direction) {
            (_, Direction::Outbound) if banned => false,
            (None, Direction::Outbound) => false,
            (None, Direction::Inbound) if banned => {
                self.serve_only_count() < self.config.max_serve_only
            }
            (None, Direction::Inbound) => self.sources().count() < self.config.max_neighbours,
            (Some(link), Direction::Outbound) => link.is_dialling(),
            (Some(link), Direction::Inbound) => {
                smaller_peer || (link.is_connected() && link.direction == Direction::Inbound)
            }
        }
    }

    /// Neighbour slots held: connected neighbours plus dials not yet stale (serve-only links
    /// hold none).
    fn slots_taken(&self, now: Instant) -> usize {
        self.sources()
            .filter(|link| link.is_connected() || link.since + self.config.dial_hedge_after > now)
            .count()
    }

    /// Drops the record of `id`, closing it if `close`; failures put the peer in cooldown.
    fn lose(&mut self, now: Instant, id: NodeId, reason: LossReason, close: bool) {
        let Some(link) = self.links.remove(&id) else {
            return;
        };
        if close {
            self.actions.push_back(Action::Close { id, reason });
        }
        if matches!(
            reason,
            LossReason::Closed | LossReason::PingsMissed | LossReason::DialFailed
        ) {
            // A connection that lived through a whole maximal cooldown starts the count again.
            if link.is_connected() && link.since + self.config.failure_cooldown <= now {
                self.failures.remove(&id);
            }
            let failures = self.failures.entry(id).or_insert(0);
            *failures = failures.saturating_add(1);
            let wait = backoff(&self.config, *failures);
            self.cooldown.insert(
                id,
                Cooldown {
                    since: now,
                    until: now + wait,
                    stale_addr: None,
                },
            );
            if link.is_connected() {
                self.dropped.insert(id);
            } else {
                self.dropped.remove(&id);
            }
        }
        // A serve-only link held no slot; a link banned just now did.
        if link.is_connected() && (reason == LossReason::Banned || !self.banned.contains(&id)) {
            debug!(peer = %id, ?reason, "neighbour lost");
            self.unreplaced.push_back(id);
            if self.unreplaced.len() > self.config.target.max(1) {
                self.unreplaced.pop_front();
            }
        }
        self.push_event(Event::Lost { id, reason });
    }

    /// Dials candidates while slots are free and the dial budget allows.
    fn refill(&mut self, now: Instant) {
        let taken = self.slots_taken(now);
        let dialling = self.links.values().filter(|l| l.is_dialling()).count();
        let want = self
            .config
            .target
            .saturating_sub(taken)
            .min(self.config.max_parallel_dials.saturating_sub(dialling))
            .min(
                self.config
                    .max_neighbours
                    .saturating_sub(self.sources().count()),
            );
        if want == 0 {
            return;
        }
        // A node with no neighbour at all (for example one that was suspended, whose peers all
        // closed on it at once) must not sit out the full cooldown of every peer the registry
        // says is alive: it retries them after ISOLATED_RETRY.
        let isolated = !self.sources().any(Link::is_connected);
        let eligible: Vec<(NodeId, Option<Duration>)> = self
            .candidates
            .keys()
            .filter(|id| {
                !self.links.contains_key(id)
                    && !self.banned.contains(id)
                    && self.cooldown.get(id).is_none_or(|c| {
                        c.until <= now
                            || (isolated
                                && self.dropped.contains(id)
                                && c.since + ISOLATED_RETRY <= now)
                    })
            })
            .map(|&id| (id, self.srtt.get(&id).copied()))
            .collect();
        for id in select::pick(&mut self.rng, &eligible, want) {
            // Picked from the keys of `candidates`, so the lookup cannot fail.
            let Some(&addr) = self.candidates.get(&id) else {
                continue;
            };
            debug!(peer = %id, %addr, "dialling");
            self.links.insert(id, Link::dialling(now, addr));
            self.actions.push_back(Action::Dial { id, addr });
        }
    }

    /// Queues an event, dropping the oldest beyond [`MAX_EVENTS`].
    fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

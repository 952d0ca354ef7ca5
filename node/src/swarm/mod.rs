//! Swarm core: the piece scheduling of one transfer (one broadcast, at one receiver).
//!
//! [`Transfer`] is pure, in the manner of quinn-proto: it opens nothing and reads no clock. The
//! shell feeds it what happened, with the current time, and carries out the [`SwarmAction`]s it
//! emits. Randomness comes from an RNG seeded at construction, so a run is reproducible.
//!
//! # What it decides
//! * **Rarest first.** A missing piece that no live request covers sits in the *pool*, ordered
//!   by availability: how many connected, unbanned, answering peers other than the origin have
//!   it (and did not serve it bad). Each peer with room in its window is given the rarest pooled
//!   pieces it has, fastest peers first; equal availability is broken at random.
//! * **A claim counts once it is backed.** A peer that has delivered no piece of this transfer
//!   yet, and whose oldest request is older than a grace (`request_timeout_factor` times the
//!   transfer's typical service time, within a quarter of
//!   [`first_piece_grace`](SwarmConfig::first_piece_grace) and all of it), is *silent*: its
//!   pieces stop counting
//!   towards availability, so the origin is asked for what only it claims, and it gets no
//!   endgame copies. It keeps its requests and its window, and counts again from its first
//!   piece. Otherwise a neighbour whose `Have` claims every piece and that never answers (or
//!   trickles a byte a second: pieces count, not bytes) held the pool for `min_request_timeout`
//!   while the origin idled.
//! * **The origin for new data only, and always busy.** The origin is asked only for pooled
//!   pieces of availability 0: pieces that no other peer can give us and that are not in
//!   flight. Among those, a receiver walks *stripes* of consecutive pieces, each from a random
//!   start up to where another receiver's pieces begin, and jumps to a new stripe at once, so
//!   the origin's pipeline stays full from the first byte to the last. Receivers see only their
//!   neighbours, so random picks would overlap; stripes keep the origin's upload near one copy
//!   of the data (see `origin.rs`). With the origin as the only peer it serves everything.
//! * **An adaptive pipeline per peer.** A peer's throughput is an EWMA of the bytes it
//!   delivered per second while requests were outstanding (sampled over at least
//!   [`min_rate_sample`](SwarmConfig::min_rate_sample)). Its window, the requests kept
//!   outstanding, is `clamp(ceil(rate × target_queue / mean piece bytes), min_window, max_window)`,
//!   growing at most twofold per sample and starting at
//!   [`initial_window`](SwarmConfig::initial_window). A failure or a timeout halves the window
//!   and the rate estimate. No peer ever has more than
//!   [`max_in_flight_per_peer`](SwarmConfig::max_in_flight_per_peer) requests outstanding.
//! * **Deadlines.** Each request expires at `max(min_request_timeout, request_timeout_factor ×
//!   bytes outstanding at that peer / its rate)`. An expired request releases its piece to the
//!   pool (another peer may be asked) but stays outstanding until then: a late answer is still
//!   taken if the piece is still missing. Once the piece is asked of another peer, the expired
//!   request is cancelled, so that its bytes do not arrive twice. A peer whose request
//!   expired is *suspect*: it no longer counts towards availability (so the origin covers what
//!   only it has) and gets a single *probe* request at a time, after a backoff that doubles up to
//!   [`max_probe_backoff`](SwarmConfig::max_probe_backoff). A probe leaves its piece in the pool,
//!   so a stalled peer never holds the transfer back. Any answer makes the peer healthy again.
//! * **Endgame.** Once every missing piece is in flight, a piece may be asked of up to
//!   [`endgame_duplicates`](SwarmConfig::endgame_duplicates) more peers that have it (peers in
//!   descending rate, pieces with the fewest copies and oldest requests first). When one copy
//!   lands, the others get [`SwarmAction::Cancel`].
//! * **Strikes.** Each bad piece is a strike, and the peer is never asked for that piece again.
//!   At [`max_strikes`](SwarmConfig::max_strikes) the core emits [`SwarmAction::Ban`] once,
//!   drops the peer's requests and never asks it again, whatever it later announces.
//!
//! Memory is O(pieces) for the transfer plus one bitfield per peer; the action queue never holds
//! more than the outstanding requests, their cancels, one ban per peer and `Complete`. An event
//! costs O(peers × log peers) plus a scan of the pool that stops at the first pieces the peer has;
//! availability is kept incrementally (O(1) per have-update), and only a peer's whole bitfield
//! (its first, a replacement, its loss, a ban, a change of health) or the start of a new stripe
//! at the origin costs O(pieces). 100k pieces with 17 peers take about 3 µs per response in a
//! release build (the `scales_to_many_pieces` test).
//!
//! # Call order
//! 1. Create the core with [`Transfer::new`], with the pieces already durable (resume).
//! 2. Feed every input through the matching `handle_*` method, with `now` read just before:
//!    * a neighbour's full have-bitfield: [`handle_peer_have`](Transfer::handle_peer_have) (it
//!      becomes a source; a later bitfield replaces the earlier one);
//!    * a neighbour's have-update: [`handle_peer_piece`](Transfer::handle_peer_piece);
//!    * the connection to a neighbour closed:
//!      [`handle_peer_gone`](Transfer::handle_peer_gone);
//!    * a response verified and written: [`handle_piece_received`](Transfer::handle_piece_received);
//!      a response that failed its hash: [`handle_piece_bad`](Transfer::handle_piece_bad); a
//!      request the origin declined because the piece is already elsewhere (its super-seeding
//!      first round): [`handle_piece_declined`](Transfer::handle_piece_declined); a request that
//!      ended otherwise (error, refusal, reset stream):
//!      [`handle_piece_failed`](Transfer::handle_piece_failed);
//!    * pieces made durable: [`handle_durable`](Transfer::handle_durable).
//! 3. After every `handle_*` call, drain [`poll_action`](Transfer::poll_action) until it
//!    returns `None` and carry each action out, then re-arm the timer with
//!    [`poll_timeout`](Transfer::poll_timeout) (`None`: no timer).
//! 4. When the clock reaches `poll_timeout()`, call [`handle_timeout`](Transfer::handle_timeout)
//!    and go to step 3. A `poll_timeout()` already in the past (deadlines are only checked in
//!    `handle_timeout`) means: call `handle_timeout` now.
//!
//! Every `handle_*` call schedules: the requests it makes possible are ready as soon as it
//! returns. (`poll_timeout` also covers the waits of the origin plan.)
//!
//! # The shell's side of the contract
//! * [`SwarmAction::Request`]: open a stream to `peer` and ask for `piece`. Exactly one of
//!   `handle_piece_received`, `handle_piece_bad`, `handle_piece_declined` or
//!   `handle_piece_failed` reports how it ended, unless the core cancelled it, banned the peer,
//!   or the peer was reported gone first. (A late report after a cancel is harmless: a piece
//!   still missing is taken, anything else is ignored.)
//! * [`SwarmAction::Cancel`]: reset that request's stream and report nothing about it.
//! * [`SwarmAction::Ban`]: close the connection to `peer` and tell the neighbour core; there is
//!   no need to report the peer gone afterwards (doing so is harmless).
//! * [`SwarmAction::Complete`]: every piece is durable; emitted once.
//! * A piece verified and written is reported with `handle_piece_received` (it is no longer
//!   missing) and, once durable, with `handle_durable` (it is then held). A piece that is
//!   received but never made durable is not fetched again: the shell must fail the transfer.
//! * Reports about unknown pieces, bitfields of the wrong length, and reports about banned peers
//!   are ignored.

mod config;
mod origin;
mod peer;
mod pool;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use swarmcast_proto::NodeId;
use tracing::debug;

pub use config::SwarmConfig;
use origin::OriginPlan;
use peer::{Health, Peer, RequestKind};
use pool::Pool;

use crate::bitfield::Bitfield;

/// Weight of a new answer in the transfer's service-time EWMA.
const SERVICE_GAIN: f64 = 0.25;

/// How long a peer whose request failed waits for its next (probe) request; doubles with each
/// failure in a row (see [`Transfer::handle_piece_failed`]).
pub const FAILURE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// What the shell must do. See the [module docs](self) for the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwarmAction {
    /// Ask `peer` for `piece`.
    Request {
        /// The peer.
        peer: NodeId,
        /// The piece index.
        piece: u32,
    },
    /// Reset the stream of the request for `piece` at `peer`: another copy landed.
    Cancel {
        /// The peer.
        peer: NodeId,
        /// The piece index.
        piece: u32,
    },
    /// `peer` served `max_strikes` bad pieces: close the connection, tell the neighbour core.
    Ban {
        /// The peer.
        peer: NodeId,
    },
    /// Every piece is durable. Emitted once.
    Complete,
}

/// What a transfer may use while other transfers of the node compete with it, as the
/// broadcast core hands it out ([`Transfer::set_share`]; the rule is
/// `data::broadcast::priority`'s). The default is no limit beyond the config's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    /// Bytes of live requests across all peers, instead of
    /// [`max_in_flight_bytes`](SwarmConfig::max_in_flight_bytes) (`None`: that).
    pub max_in_flight_bytes: Option<u64>,
    /// Peers at which at most this many requests may be outstanding (a higher-priority
    /// transfer fetches there), whatever the peer's window.
    pub capped: BTreeMap<NodeId, u32>,
}

impl Share {
    /// `free` slots at `peer`, which has `outstanding` requests, within this share.
    fn free_at(&self, peer: NodeId, free: u32, outstanding: usize) -> u32 {
        match self.capped.get(&peer) {
            Some(&cap) => {
                free.min(cap.saturating_sub(u32::try_from(outstanding).unwrap_or(u32::MAX)))
            }
            None => free,
        }
    }
}

/// One peer as the core sees it, for status output.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStats {
    /// The peer.
    pub id: NodeId,
    /// Whether it is the origin of the broadcast.
    pub is_origin: bool,
    /// Measured throughput in bytes per second (EWMA); 0 until measured.
    pub rate: f64,
    /// Requests it may have outstanding.
    pub window: u32,
    /// Requests outstanding, expired ones included.
    pub in_flight: u32,
    /// Bad pieces it served.
    pub strikes: u32,
    /// Banned: never asked again.
    pub banned: bool,
    /// A request timed out and nothing came back since.
    pub suspect: bool,
    /// It has delivered no piece yet and its oldest request is past
    /// [`first_piece_grace`](SwarmConfig::first_piece_grace): its pieces do not count.
    pub silent: bool,
    /// Bytes it delivered in answer to our requests.
    pub bytes_received: u64,
}

/// The scheduling core of one transfer. See the [module docs](self) for the call order.
#[derive(Clone, Debug)]
pub struct Transfer {
    config: SwarmConfig,
    /// Bytes of each piece.
    piece_bytes: Vec<u64>,
    /// Mean of `piece_bytes` (at least 1).
    mean_piece_bytes: f64,
    /// Durable pieces.
    held: Bitfield,
    /// Pieces no longer missing: durable, or received and awaiting durability.
    obtained: Bitfield,
    origin: NodeId,
    rng: StdRng,
    /// Missing pieces without a live request, by availability.
    pool: Pool,
    /// Live requests per piece.
    live: Vec<u16>,
    peers: BTreeMap<NodeId, Peer>,
    actions: VecDeque<SwarmAction>,
    complete_emitted: bool,
    /// How this receiver uses the origin.
    origin_plan: OriginPlan,
    /// The latest `now` given to a handler.
    last_now: Option<Instant>,
    /// EWMA of the time from a request to its answer, over every answer of the transfer;
    /// `None` before the first.
    service: Option<Duration>,
    /// What the broadcast core lets this transfer use beside the others ([`Share`]).
    share: Share,
}

impl Transfer {
    /// A transfer of `piece_bytes.len()` pieces from a broadcast whose origin is `origin`.
    ///
    /// `held` are the pieces already durable (resume); they are never requested. Bits past
    /// the number of pieces are ignored. If every piece is held, [`SwarmAction::Complete`] is
    /// the first action.
    pub fn new(
        config: SwarmConfig,
        piece_bytes: Vec<u64>,
        held: Bitfield,
        origin: NodeId,
        rng_seed: u64,
    ) -> Self {
        let n = u32::try_from(piece_bytes.len()).unwrap_or(u32::MAX);
        let piece_bytes: Vec<u64> = piece_bytes.into_iter().take(n as usize).collect();
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let mut own = Bitfield::new(n);
        for i in held.iter_ones().take_while(|&i| i < n) {
            own.set(i);
        }
        let pool = Pool::with_pieces(n, own.iter_zeros(), &mut rng);
        let total: u64 = piece_bytes.iter().sum();
        let mean_piece_bytes = (total as f64 / f64::from(n.max(1))).max(1.0);
        let origin_plan = OriginPlan::new(n, &mut rng);
        let mut t = Self {
            config,
            piece_bytes,
            mean_piece_bytes,
            obtained: own.clone(),
            held: own,
            origin,
            rng,
            pool,
            live: vec![0; n as usize],
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
            complete_emitted: false,
            origin_plan,
            last_now: None,
            service: None,
            share: Share::default(),
        };
        t.check_complete();
        t
    }

    /// Number of pieces.
    fn pieces(&self) -> u32 {
        self.held.len()
    }

    /// `peer`'s full bitfield of pieces, replacing any earlier one; the peer becomes a source.
    pub fn handle_peer_have(&mut self, now: Instant, peer: NodeId, have: &Bitfield) {
        if have.len() != self.pieces() {
            debug!(%peer, len = have.len(), "have-bitfield of the wrong length ignored");
            return;
        }
        if self.peer_entry(peer).banned {
            return;
        }
        self.set_counted(peer, false);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.have = have.clone();
        }
        self.sync_counted(peer);
        self.schedule(now);
    }

    /// `peer` now has `piece`.
    pub fn handle_peer_piece(&mut self, now: Instant, peer: NodeId, piece: u32) {
        if piece >= self.pieces() {
            return;
        }
        self.peer_entry(peer);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.banned || !p.have.set(piece) {
            return;
        }
        if p.counted && p.serves(piece) {
            self.pool.inc(piece, &mut self.rng);
        }
        // Only this peer can be given a request because of it.
        let can_ask = p.free_slots(now, &self.config).0 > 0;
        if can_ask && !self.obtained.get(piece) {
            self.schedule(now);
        }
    }

    /// The connection to `peer` is gone: its requests return to the pool at once.
    pub fn handle_peer_gone(&mut self, now: Instant, peer: NodeId) {
        match self.peers.get(&peer) {
            None => return,
            Some(p) if p.banned => return,
            Some(_) => {}
        }
        self.set_counted(peer, false);
        self.drop_requests(peer);
        self.peers.remove(&peer);
        self.schedule(now);
    }

    /// `piece` from `peer` was verified and written (durability pending): it is no longer
    /// missing. Credits the peer's throughput and cancels other requests for the piece.
    pub fn handle_piece_received(&mut self, now: Instant, peer: NodeId, piece: u32) {
        if piece >= self.pieces() {
            return;
        }
        self.obtain(piece);
        let bytes = self.piece_bytes[piece as usize];
        let mut revived = false;
        let answered = self.peers.get_mut(&peer).filter(|p| !p.banned);
        if let Some((p, r)) = answered.and_then(|p| p.take_request(piece).map(|r| (p, r))) {
            if r.kind == RequestKind::Live {
                let l = &mut self.live[piece as usize];
                *l = l.saturating_sub(1);
            }
            p.credit(now, bytes, &self.config, self.mean_piece_bytes);
            p.proven = true;
            let took = now.saturating_duration_since(r.sent);
            self.service = Some(match self.service {
                Some(s) if took >= s => s + (took - s).mul_f64(SERVICE_GAIN),
                Some(s) => s - (s - took).mul_f64(SERVICE_GAIN),
                None => took,
            });
            if p.health != Health::Healthy || p.silent {
                p.health = Health::Healthy;
                p.silent = false;
                revived = true;
            }
        }
        if revived {
            debug!(%peer, "suspect or silent peer answered");
            self.sync_counted(peer);
        }
        self.cancel_others(piece, Some(peer));
        self.schedule(now);
    }

    /// `piece` from `peer` failed verification: a strike; the piece returns to the pool and is
    /// never asked of `peer` again. At `max_strikes` the peer is banned.
    pub fn handle_piece_bad(&mut self, now: Instant, peer: NodeId, piece: u32) {
        if piece >= self.pieces() {
            return;
        }
        self.peer_entry(peer);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.banned {
            return;
        }
        let released = p
            .take_request(piece)
            .is_some_and(|r| r.kind == RequestKind::Live);
        p.strikes += 1;
        let strikes = p.strikes;
        if !p.bad.contains(&piece) {
            if p.counted && p.serves(piece) {
                self.pool.dec(piece, &mut self.rng);
            }
            p.bad.push(piece);
        }
        debug!(%peer, piece, strikes, "bad piece");
        if released {
            self.unlive(piece);
        }
        if strikes >= self.config.max_strikes.max(1) {
            self.ban(peer);
        }
        self.schedule(now);
    }

    /// The request for `piece` at `peer` ended without data (error, refusal, reset stream):
    /// the piece returns to the pool, the peer's window halves, and the peer is suspect (one
    /// probe at a time) for [`FAILURE_BACKOFF`] doubling with each failure in a row. Without the
    /// backoff a peer whose requests fail at once (a connection gone bad) was asked again in a
    /// tight loop: 34,000 failed requests in one 20 s lab run.
    pub fn handle_piece_failed(&mut self, now: Instant, peer: NodeId, piece: u32) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| !p.banned) else {
            return;
        };
        let Some(r) = p.take_request(piece) else {
            return;
        };
        p.shrink();
        let failures = match p.health {
            Health::Healthy => 1,
            Health::Suspect { timeouts, .. } => timeouts.saturating_add(1),
        };
        let backoff = FAILURE_BACKOFF
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.config.max_probe_backoff);
        p.health = Health::Suspect {
            timeouts: failures,
            probe_at: Some(now + backoff),
        };
        if r.kind == RequestKind::Live {
            self.unlive(piece);
        }
        self.sync_counted(peer);
        self.schedule(now);
    }

    /// The origin declined the request for `piece` because the piece is already elsewhere in
    /// the swarm (its first round, in which it sends each piece once). The piece returns to the
    /// pool; the origin is not penalised, and is not asked for it again for
    /// `min_request_timeout`, by when it should have turned up at a neighbour. From a peer other
    /// than the origin this counts as [`handle_piece_failed`](Self::handle_piece_failed).
    pub fn handle_piece_declined(&mut self, now: Instant, peer: NodeId, piece: u32) {
        if peer != self.origin {
            return self.handle_piece_failed(now, peer, piece);
        }
        let Some(p) = self.peers.get_mut(&peer).filter(|p| !p.banned) else {
            return;
        };
        let Some(r) = p.take_request(piece) else {
            return;
        };
        // An answer: the origin is alive (it never counts towards availability).
        p.health = Health::Healthy;
        let until = now + self.config.min_request_timeout;
        self.origin_plan.declined(piece, until);
        if r.kind == RequestKind::Live {
            self.unlive(piece);
        }
        self.schedule(now);
    }

    /// `pieces` are durable: now held. Emits [`SwarmAction::Complete`] once all are.
    pub fn handle_durable(&mut self, now: Instant, pieces: &[u32]) {
        for &piece in pieces {
            if piece < self.pieces() && self.held.set(piece) {
                self.obtain(piece);
                self.cancel_others(piece, None);
            }
        }
        self.check_complete();
        self.schedule(now);
    }

    /// Expire the requests past their deadline, stop counting the peers gone silent, then
    /// schedule.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.silence(now);
        self.schedule(now);
    }

    /// The next action for the shell, oldest first.
    pub fn poll_action(&mut self) -> Option<SwarmAction> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None` for never.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.obtained.is_complete() {
            return None;
        }
        let origin = self.origin_plan.wake_after(self.last_now);
        let grace = self.first_piece_grace();
        self.peers
            .values()
            .filter(|p| !p.banned)
            .filter_map(|p| p.next_timeout(grace))
            .chain(origin)
            .min()
    }

    /// The request budget the broadcast core gives this transfer while others compete with it
    /// (see [`Share`]); a changed share schedules at once (a looser one makes room).
    pub fn set_share(&mut self, now: Instant, share: Share) {
        if self.share != share {
            self.share = share;
            self.schedule(now);
        }
    }

    /// The share in force.
    pub fn share(&self) -> &Share {
        &self.share
    }

    /// Peers this transfer has requests outstanding at (banned ones excepted).
    pub fn busy_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        (self.peers.values())
            .filter(|p| !p.banned && !p.requests.is_empty())
            .map(|p| p.id)
    }

    /// Durable pieces.
    pub fn held(&self) -> &Bitfield {
        &self.held
    }

    /// Whether every piece has arrived (verified and written; durable or not).
    pub fn has_every_piece(&self) -> bool {
        self.obtained.is_complete()
    }

    /// Whether every piece is durable.
    pub fn is_complete(&self) -> bool {
        self.held.is_complete()
    }

    /// Every peer known, in NodeId order (banned peers stay listed).
    pub fn peers(&self) -> Vec<PeerStats> {
        self.peers
            .values()
            .map(|p| PeerStats {
                id: p.id,
                is_origin: p.is_origin,
                rate: p.rate.unwrap_or(0.0),
                window: p.window,
                in_flight: p.requests.len() as u32,
                strikes: p.strikes,
                banned: p.banned,
                suspect: p.health != Health::Healthy,
                silent: p.silent,
                bytes_received: p.bytes_received,
            })
            .collect()
    }

    /// How long a peer may go without its first piece before it is silent:
    /// `request_timeout_factor` times the transfer's typical service time, within a quarter of
    /// [`first_piece_grace`](SwarmConfig::first_piece_grace) and all of it (all of it before any
    /// answer).
    fn first_piece_grace(&self) -> Duration {
        let max = self.config.first_piece_grace;
        let Some(service) = self.service else {
            return max;
        };
        service
            .saturating_mul(self.config.request_timeout_factor.max(1))
            .clamp(max / 4, max)
    }

    /// The record of `id`, created empty if unknown.
    fn peer_entry(&mut self, id: NodeId) -> &mut Peer {
        let n = self.pieces();
        let is_origin = id == self.origin;
        let config = &self.config;
        self.peers
            .entry(id)
            .or_insert_with(|| Peer::new(id, n, is_origin, config))
    }

    /// Count `id`'s pieces in the availability iff it should count.
    fn sync_counted(&mut self, id: NodeId) {
        let want = self.peers.get(&id).is_some_and(Peer::should_count);
        self.set_counted(id, want);
    }

    /// Add `id`'s pieces to the availability, or take them out. O(pieces) when it changes.
    fn set_counted(&mut self, id: NodeId, counted: bool) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.counted == counted {
            return;
        }
        p.counted = counted;
        for piece in p.have.iter_ones() {
            if !p.bad.contains(&piece) {
                if counted {
                    self.pool.inc(piece, &mut self.rng);
                } else {
                    self.pool.dec(piece, &mut self.rng);
                }
            }
        }
    }

    /// One live request fewer for `piece`; back to the pool if none is left and it is missing.
    fn unlive(&mut self, piece: u32) {
        let l = &mut self.live[piece as usize];
        *l = l.saturating_sub(1);
        if *l == 0 && !self.obtained.get(piece) {
            self.pool.insert(piece, &mut self.rng);
        }
    }

    /// Forget every request outstanding at `id` (no cancels: the connection is going).
    fn drop_requests(&mut self, id: NodeId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        for r in p.clear_requests() {
            if r.kind == RequestKind::Live {
                self.unlive(r.piece);
            }
        }
    }

    /// `piece` is no longer missing.
    fn obtain(&mut self, piece: u32) {
        if self.obtained.set(piece) {
            self.pool.remove(piece);
        }
    }

    /// Cancel every request for `piece` except at `keep`.
    fn cancel_others(&mut self, piece: u32, keep: Option<NodeId>) {
        for p in self.peers.values_mut() {
            if Some(p.id) == keep || p.banned {
                continue;
            }
            if let Some(r) = p.take_request(piece) {
                if r.kind == RequestKind::Live {
                    let l = &mut self.live[piece as usize];
                    *l = l.saturating_sub(1);
                }
                self.actions
                    .push_back(SwarmAction::Cancel { peer: p.id, piece });
            }
        }
    }

    /// Ban `id`: emit the ban, drop its requests and pieces.
    fn ban(&mut self, id: NodeId) {
        self.set_counted(id, false);
        self.drop_requests(id);
        if let Some(p) = self.peers.get_mut(&id) {
            debug!(peer = %id, strikes = p.strikes, "peer banned");
            p.banned = true;
            p.have = Bitfield::new(0);
            p.bad = Vec::new();
            p.health = Health::Healthy;
            self.actions.push_back(SwarmAction::Ban { peer: id });
        }
    }

    fn check_complete(&mut self) {
        if self.held.is_complete() && !self.complete_emitted {
            self.complete_emitted = true;
            self.actions.push_back(SwarmAction::Complete);
        }
    }
}

//! Deciding what to ask of whom: deadlines, the per-peer fill, endgame.

use std::time::Instant;

use swarmcast_proto::NodeId;
use tracing::debug;

use super::origin::Sources;
use super::peer::{Health, Peer, RequestKind};
use super::{SwarmAction, Transfer};

/// A piece in flight that endgame may duplicate.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    piece: u32,
    /// Live requests for it.
    copies: u16,
    /// Its oldest live request.
    since: Instant,
}

impl Transfer {
    /// Handle requests and probes past their deadline: their peer becomes suspect, and all its
    /// live requests expire with them (they queue behind the one that is stuck), releasing
    /// their pieces to the pool.
    pub(super) fn expire(&mut self, now: Instant) {
        let mut released = Vec::new();
        let mut suspects = Vec::new();
        for p in self.peers.values_mut().filter(|p| !p.banned) {
            let timed_out = p
                .requests
                .iter()
                .any(|r| r.kind != RequestKind::Expired && r.deadline <= now);
            if timed_out {
                for r in &mut p.requests {
                    if r.kind == RequestKind::Live {
                        released.push(r.piece);
                    }
                    r.kind = RequestKind::Expired;
                }
                p.shrink();
                let timeouts = match p.health {
                    Health::Healthy => 1,
                    Health::Suspect { timeouts, .. } => timeouts.saturating_add(1),
                };
                let probe_at = now + Peer::probe_backoff(&self.config, timeouts);
                p.health = Health::Suspect {
                    timeouts,
                    probe_at: Some(probe_at),
                };
                debug!(peer = %p.id, timeouts, "request timed out; peer suspect");
                suspects.push(p.id);
            }
        }
        for piece in released {
            self.unlive(piece);
        }
        for id in suspects {
            self.sync_counted(id);
        }
    }

    /// Stop counting the pieces of every peer that has delivered nothing within the first-piece
    /// grace of its oldest request (see
    /// [`SwarmConfig::first_piece_grace`](super::SwarmConfig::first_piece_grace)).
    pub(super) fn silence(&mut self, now: Instant) {
        let grace = self.first_piece_grace();
        let silent: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| p.silent_at(grace).is_some_and(|t| t <= now))
            .map(|p| p.id)
            .collect();
        for id in silent {
            if let Some(p) = self.peers.get_mut(&id) {
                debug!(peer = %id, "no piece yet within the grace; its pieces stop counting");
                p.silent = true;
            }
            self.sync_counted(id);
        }
    }

    /// Give every peer with room in its window the rarest pieces it can serve, fastest peers
    /// first; then, if every missing piece is in flight, endgame duplicates.
    pub(super) fn schedule(&mut self, now: Instant) {
        self.last_now = Some(now);
        if self.obtained.is_complete() {
            return;
        }
        let mut order: Vec<(f64, NodeId)> = self
            .peers
            .values()
            .filter(|p| !p.banned)
            .map(|p| (p.rate.unwrap_or(0.0), p.id))
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut live_bytes = self.live_bytes();
        for &(_, id) in &order {
            self.fill(now, id, &mut live_bytes);
        }
        if self.pool.len() == 0 {
            self.endgame(now, &order);
        }
    }

    /// Requests for `id` from the pool, up to its free slots and the transfer's byte budget;
    /// `live_bytes` is the running total of live request bytes, kept up to date here.
    fn fill(&mut self, now: Instant, id: NodeId, live_bytes: &mut u64) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let (free, kind) = peer.free_slots(now, &self.config);
        let free = self.share.free_at(id, free, peer.requests.len());
        if free == 0 {
            return;
        }
        if let Health::Suspect { probe_at, .. } = &mut peer.health {
            // Due: probe now, or on every later call until a piece turns up.
            *probe_at = None;
        }
        let picks = if peer.is_origin {
            let src = Sources {
                pool: &self.pool,
                origin: self.peers.get(&id),
                pieces: self.pieces(),
            };
            (self.origin_plan).picks(now, src, &mut self.rng, free as usize)
        } else {
            // A counted peer counts itself in the availability of what it has, so it can skip
            // level 0; a suspect or silent one does not.
            let from = u32::from(peer.counted);
            let mut picks = Vec::new();
            for &piece in self.pool.at_least(from) {
                if peer.serves(piece) && !peer.requested(piece) {
                    picks.push(piece);
                    if picks.len() >= free as usize {
                        break;
                    }
                }
            }
            picks
        };
        let budget = (self.share.max_in_flight_bytes).unwrap_or(self.config.max_in_flight_bytes);
        for piece in picks {
            // The budget bounds live requests; a probe is one trial request per suspect peer.
            if kind == RequestKind::Live {
                let bytes = self.piece_bytes[piece as usize];
                if *live_bytes > 0 && *live_bytes + bytes > budget {
                    break;
                }
                *live_bytes += bytes;
            }
            self.send(now, id, piece, kind);
        }
    }

    /// Bytes of live requests outstanding at every peer.
    fn live_bytes(&self) -> u64 {
        self.peers
            .values()
            .flat_map(|p| p.requests.iter())
            .filter(|r| r.kind == RequestKind::Live)
            .map(|r| self.piece_bytes[r.piece as usize])
            .sum()
    }

    /// When nothing is left in the pool: duplicate requests of pieces in flight.
    fn endgame(&mut self, now: Instant, order: &[(f64, NodeId)]) {
        let max_copies = 1 + self.config.endgame_duplicates.min(255) as u16;
        if max_copies <= 1 {
            return;
        }
        let mut in_flight: Vec<InFlight> = Vec::new();
        for p in self.peers.values() {
            for r in p.requests.iter().filter(|r| r.kind == RequestKind::Live) {
                in_flight.push(InFlight {
                    piece: r.piece,
                    copies: self.live[r.piece as usize],
                    since: r.sent,
                });
            }
        }
        if in_flight.is_empty() {
            return;
        }
        in_flight.sort_by(|a, b| a.piece.cmp(&b.piece).then(a.since.cmp(&b.since)));
        in_flight.dedup_by_key(|f| f.piece);
        in_flight.sort_by(|a, b| a.copies.cmp(&b.copies).then(a.since.cmp(&b.since)));
        for &(_, id) in order {
            let Some(peer) = self.peers.get(&id) else {
                continue;
            };
            let (free, kind) = peer.free_slots(now, &self.config);
            let free = self.share.free_at(id, free, peer.requests.len());
            // A silent peer has not delivered its first piece: no copy is hurried there.
            if free == 0 || kind != RequestKind::Live || peer.silent {
                continue;
            }
            let picks: Vec<u32> = in_flight
                .iter()
                .map(|f| f.piece)
                .filter(|&piece| {
                    self.live[piece as usize] < max_copies
                        && peer.serves(piece)
                        && !peer.requested(piece)
                        && (!peer.is_origin || self.pool.avail(piece) == 0)
                })
                .take(free as usize)
                .collect();
            for piece in picks {
                self.send(now, id, piece, RequestKind::Live);
            }
        }
    }

    /// Emit a request for `piece` to `id`.
    fn send(&mut self, now: Instant, id: NodeId, piece: u32, kind: RequestKind) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let queued: u64 = peer
            .requests
            .iter()
            .map(|r| self.piece_bytes[r.piece as usize])
            .sum();
        let bytes = self.piece_bytes[piece as usize];
        peer.push_request(now, piece, bytes, kind, &self.config, queued);
        if peer.is_origin {
            self.origin_plan.asked(piece);
        }
        if kind == RequestKind::Live {
            self.live[piece as usize] = self.live[piece as usize].saturating_add(1);
            self.pool.remove(piece);
        }
        self.actions
            .push_back(SwarmAction::Request { peer: id, piece });
        if kind == RequestKind::Live {
            self.cancel_expired(piece, id);
        }
    }

    /// `piece` was just asked of `except`: cancel the expired requests for it elsewhere, so
    /// that a slow peer stops sending bytes that would arrive twice (their server stops on
    /// the reset). Under 2% loss these late copies were about 30% of the bytes received.
    fn cancel_expired(&mut self, piece: u32, except: NodeId) {
        for p in self.peers.values_mut().filter(|p| p.id != except) {
            let expired = p
                .requests
                .iter()
                .any(|r| r.piece == piece && r.kind == RequestKind::Expired);
            if expired {
                p.take_request(piece);
                self.actions
                    .push_back(SwarmAction::Cancel { peer: p.id, piece });
            }
        }
    }
}

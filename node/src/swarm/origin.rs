//! How a receiver uses the origin: one stripe of pieces, then only when starving.
//!
//! The pool alone would have every receiver next to the origin ask it for random pieces that
//! none of its own neighbours has. Receivers see only their neighbours, and a piece fetched by
//! a receiver elsewhere takes a second or so to show up around another, so random picks collide:
//! in the simulation (`node/tests/swarm_sim.rs`) the origin then uploads 1.45–1.6 copies. So
//! among the pieces the origin may serve (pool level 0), the order is:
//!
//! 1. **A stripe.** From a random start, the receiver asks the origin for consecutive pieces,
//!    stepping over the ones it asked before, and *stops* at the first piece that is somewhere
//!    else (held or in flight elsewhere, or announced by a neighbour): the start of another
//!    receiver's stripe, which is by then old enough to be known. Stripes tile the piece
//!    space with little overlap, and the origin's capacity flows to the stripes still running.
//! 2. **Starving.** After that, the receiver asks the origin only while it has no live request
//!    at any other peer, and only after a random wait of up to
//!    [`origin_patience`](super::SwarmConfig::origin_patience), so that receivers running dry
//!    together do not all fetch the same pieces. It then jumps into a large run of pieces only
//!    the origin can give (runs weighted by the square of their length, at random within the
//!    run's middle half, so that two jumpers rarely meet) and walks a new stripe from there.
//!    This is how pieces whose holders left, stalled or were banned get fetched.
//!
//! A receiver whose only peer is the origin walks one stripe round the whole piece space. Over
//! 20 seeds of the simulation the origin uploads 1.00–1.32 copies (mean 1.13), with the same
//! completion times as random picks.
//!
//! An origin that sends each piece only once in its first round (super-seeding) declines the
//! others ([`Transfer::handle_piece_declined`]): such a piece ends the stripe, and is not asked of
//! the origin again for `min_request_timeout`, by when it should be at a neighbour.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;
use swarmcast_proto::NodeId;

use super::Transfer;
use super::peer::RequestKind;
use crate::bitfield::Bitfield;

/// Runs shorter than this are entered at their start.
const SHORT_RUN: u32 = 8;

/// Jumps to a new stripe per call (each costs O(pieces)).
const MAX_JUMPS: u32 = 4;

/// This receiver's use of the origin. See the [module docs](self).
#[derive(Clone, Debug)]
pub(super) struct OriginPlan {
    /// The next piece of the current stripe.
    cursor: u32,
    /// Whether a stripe is being walked.
    walking: bool,
    /// Pieces ever asked of the origin.
    asked: Bitfield,
    /// While starving outside a stripe: when the origin may be asked again.
    patience: Option<Instant>,
    /// Pieces the origin declined (they are elsewhere), not to be asked of it again before
    /// `retry_declined`.
    declined: Bitfield,
    retry_declined: Option<Instant>,
}

impl OriginPlan {
    /// A plan whose first stripe starts at a random piece.
    pub(super) fn new(pieces: u32, rng: &mut StdRng) -> Self {
        Self {
            cursor: if pieces > 0 {
                rng.random_range(0..pieces)
            } else {
                0
            },
            walking: true,
            asked: Bitfield::new(pieces),
            patience: None,
            declined: Bitfield::new(pieces),
            retry_declined: None,
        }
    }

    /// The earliest instant after `now` at which the core waits to ask the origin again.
    /// (Waits already over are taken up by the next scheduling, not by a timer.)
    pub(super) fn wake_after(&self, now: Option<Instant>) -> Option<Instant> {
        [self.patience, self.retry_declined]
            .into_iter()
            .flatten()
            .filter(|&t| now.is_none_or(|now| t > now))
            .min()
    }

    /// The origin declined `piece`: do not ask it again before `until` (nor for any piece it
    /// declines meanwhile).
    pub(super) fn declined(&mut self, piece: u32, until: Instant) {
        self.declined.set(piece);
        self.retry_declined = Some(until);
    }

    /// `piece` was asked of the origin.
    pub(super) fn asked(&mut self, piece: u32) {
        self.asked.set(piece);
    }
}

impl Transfer {
    /// Up to `free` pieces to ask of the origin `id`, in stripe order.
    pub(super) fn origin_picks(&mut self, now: Instant, id: NodeId, free: usize) -> Vec<u32> {
        let n = self.pieces();
        let mut picks = Vec::new();
        if self.origin_plan.retry_declined.is_some_and(|t| t <= now) {
            self.origin_plan.retry_declined = None;
            self.origin_plan.declined = Bitfield::new(n);
        }
        if n == 0 || free == 0 || self.pool.level(0).is_empty() {
            self.origin_plan.patience = None;
            return picks;
        }
        let starving = !self
            .peers
            .values()
            .any(|p| !p.is_origin && p.requests.iter().any(|r| r.kind == RequestKind::Live));
        if !starving {
            self.origin_plan.patience = None;
        }
        let mut jumps = 0;
        let mut steps = 0;
        while picks.len() < free && steps <= n {
            if !self.origin_plan.walking {
                if !starving || jumps == MAX_JUMPS || !self.patience_over(now) {
                    break;
                }
                jumps += 1;
                let Some(start) = self.gap_start(id) else {
                    break;
                };
                self.origin_plan.cursor = start;
                self.origin_plan.walking = true;
            }
            steps += 1;
            let p = self.origin_plan.cursor;
            if self.origin_may_serve(id, p) && !picks.contains(&p) {
                picks.push(p);
                self.origin_plan.cursor = (p + 1) % n;
            } else if self.origin_plan.asked.get(p) && !self.origin_plan.declined.get(p) {
                self.origin_plan.cursor = (p + 1) % n;
            } else {
                self.origin_plan.walking = false;
            }
        }
        picks
    }

    /// Starving: whether the random wait before asking the origin again is over (starting it
    /// if need be). Once over, the next starvation draws a new wait.
    fn patience_over(&mut self, now: Instant) -> bool {
        let max = self.config.origin_patience;
        let until = match self.origin_plan.patience {
            Some(t) => t,
            None if max.is_zero() => now,
            None => {
                let t = now + self.rng.random_range(Duration::ZERO..=max);
                self.origin_plan.patience = Some(t);
                t
            }
        };
        if until <= now {
            self.origin_plan.patience = None;
            true
        } else {
            false
        }
    }

    /// Whether `piece` may be asked of the origin `id` now: in the pool, of availability 0,
    /// not already asked of it, and not recently declined by it.
    fn origin_may_serve(&self, id: NodeId, piece: u32) -> bool {
        self.pool.contains(piece)
            && self.pool.avail(piece) == 0
            && !self.origin_plan.declined.get(piece)
            && self
                .peers
                .get(&id)
                .is_some_and(|o| o.serves(piece) && !o.requested(piece))
    }

    /// A random start within the middle half of a run of pieces only the origin can give (the
    /// start of a short run), runs weighted by the square of their length. O(pieces); `None` if
    /// there is none.
    fn gap_start(&mut self, id: NodeId) -> Option<u32> {
        let n = self.pieces();
        // Runs as (start, length), the one wrapping past the end merged with the first.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut i = 0;
        while i < n {
            if self.origin_may_serve(id, i) {
                let start = i;
                while i < n && self.origin_may_serve(id, i) {
                    i += 1;
                }
                runs.push((start, i - start));
            } else {
                i += 1;
            }
        }
        if runs.len() > 1 {
            let (first, last) = (runs[0], runs[runs.len() - 1]);
            if first.0 == 0 && last.0 + last.1 == n {
                runs[0] = (last.0, last.1 + first.1);
                runs.pop();
            }
        }
        let weight = |len: u32| u64::from(len) * u64::from(len);
        let total: u64 = runs.iter().map(|r| weight(r.1)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.rng.random_range(0..total);
        let &(start, len) = runs.iter().find(|r| {
            let w = weight(r.1);
            if x < w {
                return true;
            }
            x -= w;
            false
        })?;
        if len < SHORT_RUN {
            return Some(start);
        }
        let offset = self.rng.random_range(len / 4..len - len / 4);
        Some((start + offset) % n)
    }
}

//! How a receiver uses the origin: stripes of pieces nobody else has, with the origin's
//! pipeline kept full from the first byte to the last.
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
//! 2. **The next stripe, at once.** When a stripe ends, the receiver jumps into a large run of
//!    pieces only the origin can give (runs weighted by the square of their length, at random
//!    within the run's middle half, so that two jumpers rarely meet) and walks a new stripe
//!    from there, as long as its window at the origin has room. When the origin's uplink is
//!    the bottleneck (T* = F/u_s), every moment it idles adds to T: the lab's trace showed the
//!    origin idle for 40–60% of a run when receivers asked it only when starving. Asking it
//!    only for pieces of availability 0 keeps it sending new data; the receivers trade the
//!    rest. This is also how pieces whose holders left, stalled or were banned get fetched.
//!
//! A receiver whose only peer is the origin walks one stripe round the whole piece space. Over
//! 20 seeds of the simulation the origin uploads 1.00–1.32 copies (mean 1.13), with the same
//! completion times as random picks.
//!
//! An origin that sends each piece only once in its first round (super-seeding) declines the
//! others ([`Transfer::handle_piece_declined`](super::Transfer::handle_piece_declined)): such a piece ends the stripe, and is not asked of
//! the origin again for `min_request_timeout`, by when it should be at a neighbour.

use std::time::Instant;

use super::peer::Peer;
use super::pool::Pool;
use crate::bitfield::Bitfield;
use rand::Rng;
use rand::rngs::StdRng;

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
            declined: Bitfield::new(pieces),
            retry_declined: None,
        }
    }

    /// The earliest instant after `now` at which the core waits to ask the origin again.
    /// (Waits already over are taken up by the next scheduling, not by a timer.)
    pub(super) fn wake_after(&self, now: Option<Instant>) -> Option<Instant> {
        self.retry_declined
            .filter(|&t| now.is_none_or(|now| t > now))
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

/// What the plan reads of its transfer: the pool of missing pieces and the origin's record.
#[derive(Clone, Copy)]
pub(super) struct Sources<'a> {
    /// The transfer's pool.
    pub(super) pool: &'a Pool,
    /// The origin, if it is a peer.
    pub(super) origin: Option<&'a Peer>,
    /// Pieces in the broadcast.
    pub(super) pieces: u32,
}

impl OriginPlan {
    /// Up to `free` pieces to ask of the origin, in stripe order.
    pub(super) fn picks(
        &mut self,
        now: Instant,
        src: Sources<'_>,
        rng: &mut StdRng,
        free: usize,
    ) -> Vec<u32> {
        let n = src.pieces;
        let mut picks = Vec::new();
        if self.retry_declined.is_some_and(|t| t <= now) {
            self.retry_declined = None;
            self.declined = Bitfield::new(n);
        }
        if n == 0 || free == 0 || src.pool.level(0).is_empty() {
            return picks;
        }
        let mut jumps = 0;
        let mut steps = 0;
        // Each piece is stepped on at most twice (a walk, and once more after a jump).
        while picks.len() < free && steps <= 2 * n {
            if !self.walking {
                if jumps == MAX_JUMPS {
                    break;
                }
                jumps += 1;
                let Some(start) = self.gap_start(src, rng, &picks) else {
                    break;
                };
                self.cursor = start;
                self.walking = true;
            }
            steps += 1;
            let p = self.cursor;
            if self.may_serve(src, p) && !picks.contains(&p) {
                picks.push(p);
                self.cursor = (p + 1) % n;
            } else if self.asked.get(p) && !self.declined.get(p) {
                self.cursor = (p + 1) % n;
            } else {
                self.walking = false;
            }
        }
        picks
    }

    /// Whether `piece` may be asked of the origin now: in the pool, of availability 0, not
    /// already asked of it, and not recently declined by it.
    fn may_serve(&self, src: Sources<'_>, piece: u32) -> bool {
        src.pool.contains(piece)
            && src.pool.avail(piece) == 0
            && !self.declined.get(piece)
            && src
                .origin
                .is_some_and(|o| o.serves(piece) && !o.requested(piece))
    }

    /// A random start within the middle half of a run of pieces only the origin can give (the
    /// start of a short run), runs weighted by the square of their length, leaving out `picked`
    /// (chosen in this pass, not yet requested: jumping into them wasted the jumps and left the
    /// origin's window unfilled). O(pieces); `None` if there is none.
    fn gap_start(&self, src: Sources<'_>, rng: &mut StdRng, picked: &[u32]) -> Option<u32> {
        let n = src.pieces;
        let open = |i: u32| self.may_serve(src, i) && !picked.contains(&i);
        // Runs as (start, length), the one wrapping past the end merged with the first.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        crate::work::tick(u64::from(n));
        let mut i = 0;
        while i < n {
            if open(i) {
                let start = i;
                while i < n && open(i) {
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
        let mut x = rng.random_range(0..total);
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
        let offset = rng.random_range(len / 4..len - len / 4);
        Some((start + offset) % n)
    }
}

//! The origin's super-seeding first round.

use crate::bitfield::Bitfield;

/// The origin's first round: until every chunk has been sent once, a chunk is sent only once, so
/// the origin uploads one copy of the data and the receivers trade the rest among themselves.
/// A request for chunks that have all been sent already is declined (`Elsewhere`): the requester
/// gets them from the peer that has them. After the first round the origin serves whatever it is
/// asked, for stragglers and for pieces whose only receiver died before passing them on.
///
/// Pure: the serving side asks [`admit`](SuperSeed::admit) per request; the simulation in
/// `node/tests/swarm_sim.rs` runs this same type.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    sent: Bitfield,
}

impl SuperSeed {
    /// A first round over `chunks` chunks, none sent yet.
    pub fn new(chunks: u32) -> Self {
        Self {
            sent: Bitfield::new(chunks),
        }
    }

    /// Whether to serve chunks `first..end`; marks them sent when it says yes. A range with at
    /// least one chunk not sent yet is served whole.
    pub fn admit(&mut self, first: u32, end: u32) -> bool {
        if self.sent.is_complete() {
            return true;
        }
        if (first..end).all(|c| self.sent.get(c)) {
            return false;
        }
        for c in first..end {
            self.sent.set(c);
        }
        true
    }

    /// Whether every chunk has been sent at least once (the first round is over).
    pub fn is_over(&self) -> bool {
        self.sent.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_round_sends_each_chunk_once_then_anything() {
        let mut s = SuperSeed::new(4);
        assert!(s.admit(0, 2));
        assert!(!s.admit(0, 1), "already sent");
        assert!(!s.admit(1, 2), "already sent");
        assert!(!s.is_over());
        assert!(s.admit(1, 3), "partly new");
        assert!(s.admit(3, 4));
        assert!(s.is_over());
        assert!(s.admit(0, 1), "second round: anything");
    }
}

//! The origin's super-seeding.

use std::time::{Duration, Instant};

/// How long after sending a chunk the origin declines to send it again.
pub const RESEND_AFTER: Duration = Duration::from_secs(2);

/// The origin's super-seeding: a chunk is sent once, and again only [`RESEND_AFTER`] after it
/// was last sent, so the origin uploads about one copy of the data and the receivers trade the
/// rest among themselves. A request for chunks that were all sent more recently is declined
/// (`Elsewhere`): the requester gets them from the peer that has them, which by then has
/// advertised them. A chunk whose only receiver died before passing it on is sent again after
/// the wait, and so are a straggler's.
///
/// (Until every chunk had been sent once, the origin used to serve everything afterwards; in the
/// lab's wire trace that sent the pieces still in flight at the end of the first round a second
/// time, and the origin uploaded 1.3 × F.)
///
/// Pure: the serving side asks [`admit`](SuperSeed::admit) per request with the time now; the
/// simulation in `node/tests/swarm_sim.rs` runs this same type on its virtual clock.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    /// When each chunk was last sent; `None`: never.
    sent: Vec<Option<Instant>>,
}

impl SuperSeed {
    /// Super-seeding over `chunks` chunks, none sent yet.
    pub fn new(chunks: u32) -> Self {
        Self {
            sent: vec![None; chunks as usize],
        }
    }

    /// Whether to serve chunks `first..end` at `now`; marks them sent when it says yes. A range
    /// with at least one chunk not sent in the last [`RESEND_AFTER`] is served whole. Chunks
    /// past the end are ignored.
    pub fn admit(&mut self, now: Instant, first: u32, end: u32) -> bool {
        let end = (end as usize).min(self.sent.len());
        let range = (first as usize).min(end)..end;
        let recent = |t: &Option<Instant>| {
            t.is_some_and(|t| now.saturating_duration_since(t) < RESEND_AFTER)
        };
        if self.sent[range.clone()].iter().all(recent) {
            return false;
        }
        for t in &mut self.sent[range] {
            *t = Some(now);
        }
        true
    }

    /// Whether every chunk has been sent at least once (the first round is over).
    pub fn is_over(&self) -> bool {
        self.sent.iter().all(Option::is_some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chunk_is_sent_once_then_again_only_after_a_wait() {
        let t0 = Instant::now();
        let mut s = SuperSeed::new(4);
        assert!(s.admit(t0, 0, 2));
        assert!(!s.admit(t0, 0, 1), "already sent");
        assert!(!s.admit(t0, 1, 2), "already sent");
        assert!(!s.is_over());
        assert!(s.admit(t0, 1, 3), "partly new");
        assert!(s.admit(t0, 3, 4));
        assert!(s.is_over());
        // Every chunk sent once: still no second copy of a chunk sent just now.
        let soon = t0 + RESEND_AFTER / 2;
        assert!(!s.admit(soon, 0, 1), "sent recently");
        let later = t0 + RESEND_AFTER;
        assert!(s.admit(later, 0, 1), "its holder had time to pass it on");
        assert!(!s.admit(later, 0, 1), "sent again just now");
        assert!(s.admit(later, 0, 2), "chunk 1 was last sent 2 s ago");
        assert!(!s.admit(later, 1, 2), "and now again");
    }
}

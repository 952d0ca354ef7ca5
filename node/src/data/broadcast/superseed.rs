//! The origin's super-seeding.

use std::time::{Duration, Instant};

/// How long after a chunk was last delivered the origin declines to send it again.
pub const RESEND_AFTER: Duration = Duration::from_secs(2);

/// The origin's super-seeding: a chunk is sent once, and again only `RESEND_AFTER` after its
/// last copy was delivered (its stream acknowledged), never while a copy is still on its way, so
/// the origin uploads about one copy of the data and the receivers trade the rest among
/// themselves. A request for chunks none of which is due is declined (`Elsewhere`): the
/// requester gets them from the peer that has them, which by then has advertised them. A chunk
/// whose only receiver died before passing it on is sent again after the wait, and so are a
/// straggler's; a send that failed leaves its chunks as they were before it.
///
/// The wait runs from the *end* of a send, not its start: on a slow link a piece waits behind the
/// others queued on its connection, and 8 receivers × 25 Mbit/s in the netns lab put 1–2 s
/// between admitting a piece and its last byte leaving; a wait counted from the admission ran
/// out while the first copy was still queued, and the origin sent pieces twice (1.06–1.41 × F).
///
/// (Until every chunk had been sent once, the origin used to serve everything afterwards; in the
/// lab's wire trace that sent the pieces still in flight at the end of the first round a second
/// time, and the origin uploaded 1.3 × F.)
///
/// Pure: the serving side asks [`admit`](SuperSeed::admit) per request with the time now and
/// reports the end of every admitted send with [`finished`](SuperSeed::finished); the
/// simulation in `node/tests/swarm_sim.rs` runs this same type on its virtual clock.
#[derive(Debug, Clone)]
pub struct SuperSeed {
    /// When each chunk's last copy was delivered; `None`: never.
    sent: Vec<Option<Instant>>,
    /// Copies of each chunk admitted and not yet finished.
    sending: Vec<u16>,
}

impl SuperSeed {
    /// Super-seeding over `chunks` chunks, none sent yet.
    pub fn new(chunks: u32) -> Self {
        Self {
            sent: vec![None; chunks as usize],
            sending: vec![0; chunks as usize],
        }
    }

    /// Whether to serve chunks `first..end` at `now`. A range with at least one chunk *due*
    /// (no copy on its way, and none delivered in the last `RESEND_AFTER`) is served whole,
    /// and its chunks count as on their way until [`finished`](Self::finished). Chunks past the
    /// end are ignored.
    pub fn admit(&mut self, now: Instant, first: u32, end: u32) -> bool {
        let range = self.range(first, end);
        let due = range.clone().any(|c| {
            self.sending[c] == 0
                && self.sent[c].is_none_or(|t| now.saturating_duration_since(t) >= RESEND_AFTER)
        });
        if !due {
            return false;
        }
        for c in range {
            self.sending[c] = self.sending[c].saturating_add(1);
        }
        true
    }

    /// A send of chunks `first..end` that [`admit`](Self::admit) allowed ended at `now`:
    /// `delivered` if the requester acknowledged every byte, else (an error, a reset stream, a
    /// lost connection) the chunks are as they were before it.
    pub fn finished(&mut self, now: Instant, first: u32, end: u32, delivered: bool) {
        for c in self.range(first, end) {
            self.sending[c] = self.sending[c].saturating_sub(1);
            if delivered {
                self.sent[c] = Some(now);
            }
        }
    }

    /// Whether every chunk has been delivered at least once (the first round is over).
    pub fn is_over(&self) -> bool {
        self.sent.iter().all(Option::is_some)
    }

    fn range(&self, first: u32, end: u32) -> std::ops::Range<usize> {
        let end = (end as usize).min(self.sent.len());
        (first as usize).min(end)..end
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
        s.finished(t0, 0, 2, true);
        assert!(!s.admit(t0, 0, 1), "already sent");
        assert!(!s.admit(t0, 1, 2), "already sent");
        assert!(!s.is_over());
        assert!(s.admit(t0, 1, 3), "partly new");
        s.finished(t0, 1, 3, true);
        assert!(s.admit(t0, 3, 4));
        s.finished(t0, 3, 4, true);
        assert!(s.is_over());
        // Every chunk sent once: still no second copy of a chunk sent just now.
        let soon = t0 + RESEND_AFTER / 2;
        assert!(!s.admit(soon, 0, 1), "sent recently");
        let later = t0 + RESEND_AFTER;
        assert!(s.admit(later, 0, 1), "its holder had time to pass it on");
        s.finished(later, 0, 1, true);
        assert!(!s.admit(later, 0, 1), "sent again just now");
        assert!(s.admit(later, 0, 2), "chunk 1 was last sent 2 s ago");
        s.finished(later, 0, 2, true);
        assert!(!s.admit(later, 1, 2), "and now again");
    }

    /// On a slow link a copy is still on its way long after it was admitted: no second copy
    /// then, and the wait starts when the first is delivered.
    #[test]
    fn no_second_copy_while_the_first_is_on_its_way() {
        let t0 = Instant::now();
        let mut s = SuperSeed::new(2);
        assert!(s.admit(t0, 0, 1));
        let queued = t0 + 3 * RESEND_AFTER;
        assert!(!s.admit(queued, 0, 1), "the first copy is still being sent");
        s.finished(queued, 0, 1, true);
        assert!(!s.is_over());
        assert!(
            !s.admit(queued + RESEND_AFTER / 2, 0, 1),
            "delivered just now"
        );
        assert!(
            s.admit(queued + RESEND_AFTER, 0, 1),
            "delivered long enough ago"
        );
        // A range is due as soon as one of its chunks is.
        assert!(
            s.admit(queued + RESEND_AFTER, 0, 2),
            "chunk 1 was never sent"
        );
    }

    /// A send that failed (reset, lost connection) did not deliver: its chunks are due again at
    /// once if they were before.
    #[test]
    fn a_failed_send_leaves_its_chunks_as_they_were() {
        let t0 = Instant::now();
        let mut s = SuperSeed::new(3);
        assert!(s.admit(t0, 0, 2));
        s.finished(t0, 0, 2, false);
        assert!(s.admit(t0, 0, 1), "never delivered");
        s.finished(t0, 0, 1, true);
        assert!(s.admit(t0, 1, 2));
        s.finished(t0 + RESEND_AFTER / 4, 1, 2, false);
        assert!(s.admit(t0, 1, 2), "the failed copy was the only one");
        // Two copies of chunk 1 on their way (a range is served whole when one chunk is due):
        // one failing leaves the other.
        assert!(s.admit(t0, 1, 3), "chunk 2 is due");
        s.finished(t0, 1, 3, false);
        assert!(
            !s.admit(t0, 1, 2),
            "the first copy of chunk 1 is on its way"
        );
        assert!(!s.is_over());
        s.finished(t0, 1, 2, true);
        assert!(s.admit(t0, 2, 3), "chunk 2's copy failed");
        s.finished(t0, 2, 3, true);
        assert!(s.is_over());
        // Out-of-range reports are ignored.
        s.finished(t0, 9, 12, true);
        assert!(!s.admit(t0, 9, 12));
    }
}

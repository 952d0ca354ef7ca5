//! The rapid-reset defence: a requester that opens request streams and abandons them (resets
//! or stops them before the answer is done) makes this node read chunks and start answers for
//! nothing, at the cost of a few bytes each. Per connection, in windows of [`WINDOW`]: once
//! more than [`MAX_ABANDONED`] streams were abandoned and they outnumber the answered ones by
//! more than [`RATIO`] to one, the connection is closed. An honest requester abandons only
//! what it cancels (a chunk that arrived from elsewhere near the end of a transfer), a small
//! share of what it asks. Pure: the caller passes `now`.

use std::time::{Duration, Instant};

/// The window over which streams are counted.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Abandoned streams in one window that are never enough on their own.
pub(crate) const MAX_ABANDONED: u32 = 256;
/// Abandoned to answered, beyond which (and past [`MAX_ABANDONED`]) the connection is closed.
pub(crate) const RATIO: u32 = 2;

/// How a request stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// Answered (data or a refusal), or ended by the requester without a request.
    Answered,
    /// The requester reset or stopped it before the answer was done.
    Abandoned,
    /// Anything else (a timeout, the connection gone): not counted.
    Other,
}

/// The streams of one connection.
#[derive(Debug)]
pub(crate) struct AbandonBudget {
    window_start: Instant,
    answered: u32,
    abandoned: u32,
    tripped: bool,
}

impl AbandonBudget {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            answered: 0,
            abandoned: 0,
            tripped: false,
        }
    }

    /// One stream ended. `true` exactly once: the connection is to be closed now.
    pub(crate) fn record(&mut self, now: Instant, end: StreamEnd) -> bool {
        if self.tripped {
            return false;
        }
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.answered = 0;
            self.abandoned = 0;
        }
        match end {
            StreamEnd::Answered => self.answered = self.answered.saturating_add(1),
            StreamEnd::Abandoned => self.abandoned = self.abandoned.saturating_add(1),
            StreamEnd::Other => {}
        }
        self.tripped =
            self.abandoned > MAX_ABANDONED && self.abandoned > self.answered.saturating_mul(RATIO);
        self.tripped
    }

    /// Streams abandoned in the current window.
    pub(crate) fn abandoned(&self) -> u32 {
        self.abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_abandoning_most_of_its_streams_is_cut_off_once() {
        let t = Instant::now();
        let mut b = AbandonBudget::new(t);
        let mut closed = 0;
        for i in 0..1000u32 {
            let now = t + Duration::from_millis(u64::from(i));
            closed += u32::from(b.record(now, StreamEnd::Abandoned));
            if closed == 1 {
                assert_eq!(i, MAX_ABANDONED, "just past the floor");
                break;
            }
        }
        assert_eq!(closed, 1);
        assert!(
            !b.record(t + Duration::from_secs(1), StreamEnd::Abandoned),
            "once"
        );
    }

    #[test]
    fn an_honest_requester_cancelling_some_streams_is_not() {
        let t = Instant::now();
        let mut b = AbandonBudget::new(t);
        // 3,000 requests in 9 s, every fourth cancelled (far more than an end game cancels).
        for i in 0..3000u32 {
            let end = if i % 4 == 0 {
                StreamEnd::Abandoned
            } else {
                StreamEnd::Answered
            };
            assert!(!b.record(t + Duration::from_millis(u64::from(i) * 3), end));
        }
        // A burst of cancels alone, below the floor, in a fresh window: still fine.
        let later = t + WINDOW * 2;
        for _ in 0..MAX_ABANDONED {
            assert!(!b.record(later, StreamEnd::Abandoned));
        }
        // Counts start over each window: 200 abandoned per window never trips.
        let mut b = AbandonBudget::new(t);
        for w in 0..10u32 {
            for _ in 0..200 {
                assert!(!b.record(t + WINDOW * w, StreamEnd::Abandoned));
            }
        }
        assert_eq!(b.abandoned(), 200);
        // Timeouts and lost connections are not counted either way.
        let mut b = AbandonBudget::new(t);
        for _ in 0..1000 {
            assert!(!b.record(t, StreamEnd::Other));
        }
    }
}

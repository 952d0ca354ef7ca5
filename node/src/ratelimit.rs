//! Bandwidth caps (`node join --max-upload`, `--max-download`): one token bucket per direction
//! over every peer and broadcast together.
//!
//! [`TokenBucket`] is the pure core: it takes `now` and a number of bytes and says how long the
//! caller must wait before sending (or reading) them. It lends: a reservation larger than what
//! is in the bucket is granted at once and paid for by waiting, so that concurrent streams queue
//! fairly in reservation order and none starves. The bucket holds at most [`BURST`] worth of the
//! rate, so that no one-second window carries more than the rate plus that burst.
//!
//! Why not `governor`: it is well kept, but it counts cells against a quota whose burst must
//! cover the largest single reservation (a slice of a chunk here), and it hides its clock; this
//! core is 40 lines, takes `now` like every other core here, and is tested with a virtual clock.
//!
//! [`Limiter`] is the thin async shell: a lock around the bucket and a sleep.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most a bucket saves up, as time at its rate: what may pass at once after a quiet spell.
pub const BURST: Duration = Duration::from_millis(20);

/// The largest slice of bytes reserved at once: a chunk is sent or read in slices of at most
/// this, so that a window's excess is at most one slice.
pub const SLICE: usize = 16 << 10;

/// What a cap charges beyond the payload, in percent: QUIC, UDP and IP headers, so that the cap
/// holds on the wire, where an operator measures it (3.3% measured in the netns lab at 20 Mbit/s).
pub const WIRE_OVERHEAD_PERCENT: u64 = 4;

/// A token bucket of bytes.
#[derive(Debug)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: f64,
    /// Bytes the bucket holds at most.
    burst: f64,
    /// Bytes available now; negative: lent out, to be waited for.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second (more than 0).
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        let burst = (rate * BURST.as_secs_f64()).max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Reserve `bytes` at `now`: how long to wait before they may go.
    pub fn reserve(&mut self, now: Instant, bytes: u64) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A shared cap: reserve, then wait.
#[derive(Debug)]
pub struct Limiter {
    bucket: Mutex<TokenBucket>,
    rate: u64,
}

impl Limiter {
    /// A cap of `rate` bytes per second.
    pub fn new(rate: u64) -> Self {
        Self {
            bucket: Mutex::new(TokenBucket::new(rate, Instant::now())),
            rate,
        }
    }

    /// The cap, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Wait until `bytes` of payload (and their headers, [`WIRE_OVERHEAD_PERCENT`]) may pass.
    pub async fn take(&self, bytes: usize) {
        let bytes = bytes as u64;
        let wire = bytes + bytes * WIRE_OVERHEAD_PERCENT / 100;
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(Instant::now(), wire);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Wait on `limit` (if any) for `bytes`.
pub async fn take(limit: Option<&Limiter>, bytes: usize) {
    if let Some(l) = limit {
        l.take(bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Senders reserving slices back to back on a virtual clock, each waiting what it is told:
    /// the bytes that pass in every one-second window.
    fn windows(rate: u64, senders: usize, seconds: u64) -> Vec<u64> {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate, t0);
        // Each sender's next moment to reserve.
        let mut next = vec![t0; senders];
        let mut per_second = vec![0u64; seconds as usize];
        loop {
            let (i, &at) = next
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| **t)
                .unwrap_or((0, &t0));
            let wait = b.reserve(at, SLICE as u64);
            let sent_at = at + wait;
            let s = sent_at.duration_since(t0).as_secs();
            if s >= seconds {
                return per_second;
            }
            per_second[s as usize] += SLICE as u64;
            next[i] = sent_at;
        }
    }

    #[test]
    fn no_second_carries_more_than_the_rate_and_one_burst() {
        for (rate, senders) in [(2_500_000u64, 1usize), (2_500_000, 8), (12_500_000, 3)] {
            let w = windows(rate, senders, 10);
            for (s, &bytes) in w.iter().enumerate() {
                let limit = rate as f64 * (1.0 + BURST.as_secs_f64()) + SLICE as f64;
                assert!(
                    (bytes as f64) <= limit,
                    "second {s}: {bytes} bytes at a cap of {rate}/s ({senders} senders)"
                );
            }
            // ... and the cap is used, not wasted: every full second within a slice of it.
            for &bytes in &w[1..] {
                assert!(bytes as f64 >= rate as f64 - SLICE as f64, "{w:?}");
            }
        }
    }

    #[test]
    fn a_quiet_spell_saves_up_only_a_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1_000_000, t0);
        assert_eq!(b.reserve(t0, 20_000), Duration::ZERO, "a full bucket");
        // An hour idle: still only 20 ms worth, then waiting.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.reserve(later, 20_000), Duration::ZERO);
        let wait = b.reserve(later, 100_000);
        assert_eq!(wait, Duration::from_millis(100));
        // A second reservation queues behind the first.
        assert_eq!(b.reserve(later, 100_000), Duration::from_millis(200));
        // A clock that steps back is not a refill.
        assert!(b.reserve(t0, 1) > Duration::from_millis(200));
    }
}

//! Replication retry policy: when to dial a fellow bootstrap again, and when to forget it.
//!
//! An I/O-free core, one per fellow. It reads no clock: the shell passes `now` with each
//! input and sleeps until the instant the core names.
//!
//! Call order, for each dial of the fellow:
//! 1. the shell dials;
//! 2. on success it calls [`FellowRetry::handle_connected`] (the failure count resets) and runs
//!    anti-entropy rounds until one fails, then dials again at once;
//! 3. on failure it calls [`FellowRetry::handle_connect_failed`], and either sleeps until the
//!    [`Retry::At`] instant or, on [`Retry::Forget`], ends the fellow's task.
//!
//! Policy: after `n` consecutive failed dials the next one waits `base × min(n, 10)`, with
//! `base` the anti-entropy period (at least 100 ms). A fellow named by `--peer` is retried
//! for ever; one learnt from the registry is forgotten once more than
//! [`MAX_FAILURES_BEFORE_FORGET`] dials in a row have failed (the registry drops a bootstrap
//! that is gone for good, and with it the reason to dial).

use std::time::{Duration, Instant};

/// Consecutive failed dials after which an unconfigured fellow is forgotten (on the next one).
pub const MAX_FAILURES_BEFORE_FORGET: u32 = 10;

/// The backoff grows linearly up to this many times the base.
pub const MAX_BACKOFF_FACTOR: u32 = 10;

/// The smallest base period of the backoff.
pub const MIN_BASE: Duration = Duration::from_millis(100);

/// How a fellow became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FellowKind {
    /// Named by `--peer`: retried for ever.
    Configured,
    /// Learnt from the registry: forgotten after repeated failures.
    Discovered,
}

/// What to do after a failed dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Dial again at this instant.
    At(Instant),
    /// Stop dialling this fellow.
    Forget,
}

/// What a failed dial means, for the shell to act on and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectFailed {
    pub retry: Retry,
    /// Consecutive failures so far, this one included.
    pub failures: u32,
    /// Whether this failure is worth a log line (the first, then every 20th).
    pub report: bool,
}

/// The retry state of one fellow.
#[derive(Debug, Clone)]
pub struct FellowRetry {
    base: Duration,
    kind: FellowKind,
    failures: u32,
}

impl FellowRetry {
    /// `period` is the anti-entropy period.
    pub fn new(period: Duration, kind: FellowKind) -> Self {
        Self {
            base: period.max(MIN_BASE),
            kind,
            failures: 0,
        }
    }

    /// A dial succeeded: the next failure starts the backoff afresh.
    pub fn handle_connected(&mut self, _now: Instant) {
        self.failures = 0;
    }

    /// A dial failed at `now`.
    pub fn handle_connect_failed(&mut self, now: Instant) -> ConnectFailed {
        self.failures = self.failures.saturating_add(1);
        let failures = self.failures;
        let report = failures == 1 || failures % 20 == 0;
        let retry = if failures > MAX_FAILURES_BEFORE_FORGET && self.kind == FellowKind::Discovered
        {
            Retry::Forget
        } else {
            Retry::At(now + self.base * failures.min(MAX_BACKOFF_FACTOR))
        };
        ConnectFailed {
            retry,
            failures,
            report,
        }
    }

    /// Consecutive failed dials.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(2);

    #[track_caller]
    fn wait(r: &mut FellowRetry, now: Instant) -> Duration {
        match r.handle_connect_failed(now).retry {
            Retry::At(at) => at - now,
            Retry::Forget => panic!("forgotten after {} failures", r.failures()),
        }
    }

    #[test]
    fn backoff_grows_linearly_and_caps_at_ten_periods() {
        let mut now = Instant::now();
        let mut r = FellowRetry::new(PERIOD, FellowKind::Configured);
        for n in 1..=10u32 {
            let d = wait(&mut r, now);
            assert_eq!(d, PERIOD * n, "failure {n}");
            now += d;
        }
        for _ in 0..50 {
            let d = wait(&mut r, now);
            assert_eq!(d, PERIOD * 10);
            now += d;
        }
    }

    #[test]
    fn a_short_period_backs_off_from_at_least_100ms() {
        let now = Instant::now();
        let mut r = FellowRetry::new(Duration::from_millis(10), FellowKind::Configured);
        assert_eq!(wait(&mut r, now), Duration::from_millis(100));
        assert_eq!(wait(&mut r, now), Duration::from_millis(200));
    }

    #[test]
    fn a_configured_peer_is_never_dropped() {
        let mut now = Instant::now();
        let mut r = FellowRetry::new(PERIOD, FellowKind::Configured);
        for _ in 0..1000 {
            now += wait(&mut r, now);
        }
        assert_eq!(r.failures(), 1000);
    }

    #[test]
    fn an_unconfigured_fellow_is_dropped_after_ten_consecutive_failures() {
        let mut now = Instant::now();
        let mut r = FellowRetry::new(PERIOD, FellowKind::Discovered);
        for _ in 0..MAX_FAILURES_BEFORE_FORGET {
            now += wait(&mut r, now);
        }
        let last = r.handle_connect_failed(now);
        assert_eq!(last.retry, Retry::Forget);
        assert_eq!(last.failures, 11);
    }

    #[test]
    fn a_success_resets_the_backoff_and_the_count() {
        let mut now = Instant::now();
        let mut r = FellowRetry::new(PERIOD, FellowKind::Discovered);
        for _ in 0..MAX_FAILURES_BEFORE_FORGET {
            now += wait(&mut r, now);
        }
        r.handle_connected(now);
        assert_eq!(r.failures(), 0);
        assert_eq!(wait(&mut r, now), PERIOD, "backoff starts afresh");
        // Ten more failures in a row are tolerated again.
        for _ in 1..MAX_FAILURES_BEFORE_FORGET {
            now += wait(&mut r, now);
        }
        assert_eq!(r.handle_connect_failed(now).retry, Retry::Forget);
    }

    #[test]
    fn the_first_and_every_twentieth_failure_are_reported() {
        let now = Instant::now();
        let mut r = FellowRetry::new(PERIOD, FellowKind::Configured);
        let reported: Vec<u32> = (0..60)
            .map(|_| r.handle_connect_failed(now))
            .filter(|f| f.report)
            .map(|f| f.failures)
            .collect();
        assert_eq!(reported, vec![1, 20, 40, 60]);
    }
}

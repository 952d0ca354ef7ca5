//! Conversions between local instants and the ages that travel on the wire.

use std::time::{Duration, Instant};

/// Whole milliseconds from `then` to `now`, rounded up (so a relayed entry never looks fresher
/// than it is) and saturating at `u64::MAX`. An instant after `now` has age 0.
pub(super) fn age_ms(now: Instant, then: Instant) -> u64 {
    let age = now.saturating_duration_since(then);
    let ms = age.as_millis() + u128::from(age.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `now - age`, or the earliest instant the platform can represent on the way there.
///
/// `Instant` cannot go below some platform-defined origin (e.g. boot time), and an age comes from
/// a peer; this never panics. The search halves its step on every failure, so it takes at most
/// about 2 × 64 steps.
pub(super) fn instant_before(now: Instant, age: Duration) -> Instant {
    if let Some(t) = now.checked_sub(age) {
        return t;
    }
    let mut at = now;
    let mut remaining = age;
    let mut step = age;
    while !step.is_zero() {
        match at.checked_sub(step) {
            Some(t) => {
                at = t;
                remaining -= step;
                step = step.min(remaining);
            }
            None => step /= 2,
        }
    }
    at
}

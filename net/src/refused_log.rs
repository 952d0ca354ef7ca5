//! Which refused handshakes to log: a pure rate limiter (no clock read; the caller passes
//! `now`).
//!
//! A peer with another cluster's certificate retries for ever, so a server that logged every
//! refusal would log several lines a second per such peer, and one that logged none leaves the
//! operator blind. [`RefusedLog`] lets the first refusal of each key (the peer's IP and the
//! reason) through at once, then at most one per [`RefusedLogConfig::every`], saying how many
//! were held back in between. Memory is bounded: at most [`RefusedLogConfig::max_keys`] keys
//! are remembered; past that, keys whose interval has run out are forgotten, and if none has,
//! every new key shares one overflow slot (so a flood of sources still logs at most one line
//! per interval beyond the keys already held).
//!
//! Call order: [`RefusedLog::handle_refusal`] for each refused handshake; log when it returns
//! `Some`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Settings of a [`RefusedLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusedLogConfig {
    /// At most one line per key per this interval (after the first, which is logged at once).
    pub every: Duration,
    /// Most keys remembered.
    pub max_keys: usize,
}

impl Default for RefusedLogConfig {
    /// One line per peer and reason per 30 s, 1024 keys.
    fn default() -> Self {
        Self {
            every: Duration::from_secs(30),
            max_keys: 1024,
        }
    }
}

/// What a refusal is counted under: the peer's IP (not its port: a client that redials may
/// use a new one) and the reason.
pub type RefusalKey = (IpAddr, String);

#[derive(Clone, Copy, Debug)]
struct Slot {
    logged_at: Instant,
    held_back: u64,
}

/// The rate limiter; see the module docs.
#[derive(Debug)]
pub struct RefusedLog {
    config: RefusedLogConfig,
    slots: BTreeMap<RefusalKey, Slot>,
    overflow: Option<Slot>,
}

/// A refusal to log now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Refusals under the same key (or, with `overflow`, from any source not remembered) that
    /// were not logged since the last line.
    pub held_back: u64,
    /// This key was not remembered: too many sources at once.
    pub overflow: bool,
}

impl RefusedLog {
    /// An empty log.
    pub fn new(config: RefusedLogConfig) -> Self {
        Self {
            config,
            slots: BTreeMap::new(),
            overflow: None,
        }
    }

    /// A handshake from `key` was refused at `now`: `Some` if it is to be logged.
    pub fn handle_refusal(&mut self, now: Instant, key: RefusalKey) -> Option<LogLine> {
        let every = self.config.every;
        let due = |slot: &Slot| now.saturating_duration_since(slot.logged_at) >= every;
        if let Some(slot) = self.slots.get_mut(&key) {
            return Self::admit(slot, due(slot), now, false);
        }
        if self.slots.len() >= self.config.max_keys {
            self.slots.retain(|_, slot| !due(slot));
        }
        if self.slots.len() < self.config.max_keys {
            self.slots.insert(
                key,
                Slot {
                    logged_at: now,
                    held_back: 0,
                },
            );
            return Some(LogLine {
                held_back: 0,
                overflow: false,
            });
        }
        match &mut self.overflow {
            Some(slot) => {
                let is_due = due(slot);
                Self::admit(slot, is_due, now, true)
            }
            None => {
                self.overflow = Some(Slot {
                    logged_at: now,
                    held_back: 0,
                });
                Some(LogLine {
                    held_back: 0,
                    overflow: true,
                })
            }
        }
    }

    fn admit(slot: &mut Slot, due: bool, now: Instant, overflow: bool) -> Option<LogLine> {
        if due {
            let line = LogLine {
                held_back: slot.held_back,
                overflow,
            };
            *slot = Slot {
                logged_at: now,
                held_back: 0,
            };
            Some(line)
        } else {
            slot.held_back = slot.held_back.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8, why: &str) -> RefusalKey {
        (IpAddr::from([10, 0, 0, last]), why.to_owned())
    }

    #[test]
    fn first_at_once_then_one_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut log = RefusedLog::new(RefusedLogConfig {
            every: Duration::from_secs(30),
            max_keys: 8,
        });
        let first = log.handle_refusal(t0, key(1, "unknown ca"));
        assert_eq!(first.map(|l| l.held_back), Some(0));
        // A retry every 200 ms for 29.8 s: nothing more.
        for i in 1..150u64 {
            let at = t0 + Duration::from_millis(200 * i);
            assert_eq!(log.handle_refusal(at, key(1, "unknown ca")), None, "at {i}");
        }
        // Another source and another reason are not held back by the first.
        assert!(log.handle_refusal(t0, key(2, "unknown ca")).is_some());
        assert!(log.handle_refusal(t0, key(1, "expired")).is_some());
        let again = log.handle_refusal(t0 + Duration::from_secs(30), key(1, "unknown ca"));
        assert_eq!(
            again,
            Some(LogLine {
                held_back: 149,
                overflow: false
            })
        );
        assert_eq!(
            log.handle_refusal(t0 + Duration::from_secs(31), key(1, "unknown ca")),
            None
        );
    }

    #[test]
    fn bounded_memory_with_one_overflow_slot() {
        let t0 = Instant::now();
        let mut log = RefusedLog::new(RefusedLogConfig {
            every: Duration::from_secs(30),
            max_keys: 2,
        });
        assert!(log.handle_refusal(t0, key(1, "x")).is_some());
        assert!(log.handle_refusal(t0, key(2, "x")).is_some());
        // Full: new sources share one slot.
        let over = log.handle_refusal(t0, key(3, "x"));
        assert_eq!(
            over,
            Some(LogLine {
                held_back: 0,
                overflow: true
            })
        );
        for last in 4..100 {
            assert_eq!(log.handle_refusal(t0, key(last, "x")), None);
        }
        assert_eq!(log.slots.len(), 2);
        // Once the remembered keys' interval ran out they make room again.
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            log.handle_refusal(later, key(50, "x")),
            Some(LogLine {
                held_back: 0,
                overflow: false
            })
        );
        assert_eq!(log.slots.len(), 1);
    }
}

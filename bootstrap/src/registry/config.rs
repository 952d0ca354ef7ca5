//! Timeouts of the registry's failure detector and garbage collector.

use std::time::Duration;

use swarmcast_proto::Status;

/// Timeouts of the failure detector and the garbage collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// An entry whose version has not advanced for this long is [`Status::Suspect`].
    pub suspect_after: Duration,
    /// An entry whose version has not advanced for this long is [`Status::Dead`].
    pub dead_after: Duration,
    /// How long a dead entry is kept, counted from its death: it is dropped once its age exceeds
    /// `dead_after + gc_after`. Its tombstone is kept for another `gc_after`.
    pub gc_after: Duration,
}

impl Default for RegistryConfig {
    /// Suspect after 3 s, dead after 6 s, dropped 60 s after death (age over 66 s).
    ///
    /// With nodes beating every second, a node must miss three beats to be suspected and six to
    /// be declared dead, which 10 % message loss essentially never causes.
    fn default() -> Self {
        Self {
            suspect_after: Duration::from_secs(3),
            dead_after: Duration::from_secs(6),
            gc_after: Duration::from_secs(60),
        }
    }
}

/// Why a set of registry timeouts cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryConfigError {
    /// An entry would be declared dead before (or as) it is suspected.
    #[error("dead_after ({dead_after:?}) must be longer than suspect_after ({suspect_after:?})")]
    DeadBeforeSuspect {
        /// The suspicion timeout.
        suspect_after: Duration,
        /// The death timeout.
        dead_after: Duration,
    },
}

impl RegistryConfig {
    /// Timeouts as given, checked: `dead_after` must be longer than `suspect_after`.
    pub fn new(
        suspect_after: Duration,
        dead_after: Duration,
        gc_after: Duration,
    ) -> Result<Self, RegistryConfigError> {
        if dead_after <= suspect_after {
            return Err(RegistryConfigError::DeadBeforeSuspect {
                suspect_after,
                dead_after,
            });
        }
        Ok(Self {
            suspect_after,
            dead_after,
            gc_after,
        })
    }

    /// Short timeouts for tests: suspect after 300 ms, dead after 600 ms, dropped 1 s later.
    pub fn for_test() -> Self {
        Self {
            suspect_after: Duration::from_millis(300),
            dead_after: Duration::from_millis(600),
            gc_after: Duration::from_secs(1),
        }
    }

    /// The age past which an entry is dropped: `dead_after + gc_after`.
    pub fn drop_after(&self) -> Duration {
        self.dead_after.saturating_add(self.gc_after)
    }

    /// The age past which a tombstone is forgotten: `drop_after + gc_after`.
    pub(super) fn forget_after(&self) -> Duration {
        self.drop_after().saturating_add(self.gc_after)
    }

    /// Status at `age`, or `None` once the entry has expired.
    pub(super) fn classify(&self, age: Duration) -> Option<Status> {
        if age > self.drop_after() {
            None
        } else if age >= self.dead_after {
            Some(Status::Dead)
        } else if age >= self.suspect_after {
            Some(Status::Suspect)
        } else {
            Some(Status::Alive)
        }
    }

    /// The smallest age after `age` at which [`Self::classify`] may change.
    pub(super) fn next_boundary(&self, age: Duration) -> Option<Duration> {
        let gone = self.drop_after().checked_add(Duration::from_nanos(1));
        [Some(self.suspect_after), Some(self.dead_after), gone]
            .into_iter()
            .flatten()
            .filter(|b| *b > age)
            .min()
    }
}

#[cfg(test)]
mod checked_tests {
    use super::*;

    #[test]
    fn dead_must_follow_suspect() {
        let s = Duration::from_secs(3);
        let g = Duration::from_secs(60);
        assert!(RegistryConfig::new(s, Duration::from_secs(6), g).is_ok());
        for dead in [s, Duration::from_secs(1)] {
            assert_eq!(
                RegistryConfig::new(s, dead, g),
                Err(RegistryConfigError::DeadBeforeSuspect {
                    suspect_after: s,
                    dead_after: dead
                })
            );
        }
    }
}

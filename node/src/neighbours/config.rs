//! Tuning of the neighbour core.

use std::time::Duration;

/// Tuning of [`Neighbours`](super::Neighbours).
///
/// [`Default`] is the production setting; [`NeighbourConfig::for_test`] is smaller and faster.
/// Values are taken as given (parse, don't validate), with two guards in the core: a
/// `ping_interval` below 1 ms counts as 1 ms, and a `max_missed_pings` of 0 counts as 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourConfig {
    /// Outbound dials aim for this many live neighbours in total; inbound neighbours count too.
    ///
    /// Default 8. When the registry offers fewer candidates, the node connects to all of them
    /// (a full mesh).
    pub target: usize,
    /// Inbound connections beyond this many neighbours (connected or being dialled) are refused.
    ///
    /// Default `2 * target + 4` = 20.
    pub max_neighbours: usize,
    /// How often each connected neighbour is sent an application ping. Default 250 ms.
    pub ping_interval: Duration,
    /// A ping unanswered for this long counts as missed. Default 1 s.
    pub ping_timeout: Duration,
    /// This many consecutive missed pings make a neighbour lost. Default 3.
    ///
    /// A neighbour that falls silent is therefore declared lost between
    /// `ping_timeout + (max_missed_pings - 1) * ping_interval` (minus one RTT) and
    /// [`NeighbourConfig::loss_detection_bound`] after it stopped answering: 1.5 s to 1.75 s
    /// with the defaults.
    pub max_missed_pings: u32,
    /// A dial not completed by then fails, and the peer enters cooldown. Default 2 s.
    pub dial_timeout: Duration,
    /// A dial still pending after this long stops holding its neighbour slot, so another
    /// candidate is dialled beside it (the stalled dial goes on until `dial_timeout`).
    ///
    /// This bounds the cost of picking a candidate that died but is still listed as alive: a
    /// black-holed dial costs `dial_hedge_after`, not `dial_timeout`. Default 500 ms (a QUIC
    /// handshake takes one or two round trips). The price is that both dials may succeed,
    /// leaving the node briefly one neighbour above `target`.
    pub dial_hedge_after: Duration,
    /// Peers whose connection closed, whose dial failed, or who missed their pings are not
    /// dialled again for a while: `failure_cooldown_min` after the first failure, doubling
    /// with each further failure in a row, up to this. Default 30 s.
    pub failure_cooldown: Duration,
    /// The cooldown after a first failure (see `failure_cooldown`). A connection that lived
    /// at least `failure_cooldown` before it failed starts the count again. Default 1 s, so
    /// that peers come back within seconds of a healed partition while a peer that keeps
    /// failing is soon dialled only every 30 s.
    pub failure_cooldown_min: Duration,
    /// At most this many dials are in flight at once, stalled ones included. Default 4.
    pub max_parallel_dials: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        Self::with_target(8)
    }
}

/// Why a neighbour setting cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NeighbourConfigError {
    /// A node with no neighbours can neither fetch nor serve.
    #[error("the neighbour target must be at least 1")]
    NoTarget,
}

impl NeighbourConfig {
    /// [`with_target`](Self::with_target), refusing a target of 0.
    pub fn try_with_target(target: usize) -> Result<Self, NeighbourConfigError> {
        if target == 0 {
            return Err(NeighbourConfigError::NoTarget);
        }
        Ok(Self::with_target(target))
    }

    /// The defaults, with `target` neighbours and `max_neighbours = 2 * target + 4`.
    pub fn with_target(target: usize) -> Self {
        Self {
            target,
            max_neighbours: 2 * target + 4,
            ping_interval: Duration::from_millis(250),
            ping_timeout: Duration::from_secs(1),
            max_missed_pings: 3,
            dial_timeout: Duration::from_secs(2),
            dial_hedge_after: Duration::from_millis(500),
            failure_cooldown: Duration::from_secs(30),
            failure_cooldown_min: Duration::from_secs(1),
            max_parallel_dials: 4,
        }
    }

    /// A small, fast setting for tests: 4 neighbours (at most 12), pings every 50 ms timing out
    /// after 200 ms, dials timing out after 400 ms (hedged after 100 ms), cooldown 5 s from the
    /// first failure on (no backoff).
    pub fn for_test() -> Self {
        Self {
            target: 4,
            max_neighbours: 12,
            ping_interval: Duration::from_millis(50),
            ping_timeout: Duration::from_millis(200),
            max_missed_pings: 3,
            dial_timeout: Duration::from_millis(400),
            dial_hedge_after: Duration::from_millis(100),
            failure_cooldown: Duration::from_secs(5),
            failure_cooldown_min: Duration::from_secs(5),
            max_parallel_dials: 4,
        }
    }

    /// The longest a neighbour can stay silent before it is declared lost:
    /// `ping_timeout + max_missed_pings * ping_interval` (1.75 s with the defaults).
    ///
    /// Holds when the shell calls `handle_timeout` at every `poll_timeout`.
    pub fn loss_detection_bound(&self) -> Duration {
        self.ping_timeout + self.effective_ping_interval() * self.effective_max_missed()
    }

    /// `ping_interval`, at least 1 ms so that pinging can never spin.
    pub(super) fn effective_ping_interval(&self) -> Duration {
        self.ping_interval.max(Duration::from_millis(1))
    }

    /// `max_missed_pings`, at least 1.
    pub(super) fn effective_max_missed(&self) -> u32 {
        self.max_missed_pings.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_of_zero_is_refused() {
        assert_eq!(
            NeighbourConfig::try_with_target(0),
            Err(NeighbourConfigError::NoTarget)
        );
        let c = NeighbourConfig::try_with_target(3).expect("3 is a valid target");
        assert_eq!((c.target, c.max_neighbours), (3, 10));
    }
}

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
    /// How often a connected neighbour is sent an application ping while the link is *active*
    /// (see `active_for`). Default 250 ms.
    pub ping_interval: Duration,
    /// How often a connected neighbour is sent an application ping while the link is idle.
    /// Default 5 s.
    ///
    /// An idle link is also watched by QUIC (keep-alives, idle timeout 10 s) and by the
    /// registry (a neighbour that stops heartbeating is dead there after 6 s), so slow pings
    /// cost idle detection little; see [`NeighbourConfig::idle_loss_detection_bound`].
    pub idle_ping_interval: Duration,
    /// A link stays active this long after the shell last reported data-plane traffic on it
    /// ([`Neighbours::handle_activity`](super::Neighbours::handle_activity)). Default 5 s.
    ///
    /// Keep it above [`NeighbourConfig::loss_detection_bound`]: then a neighbour that dies
    /// during a transfer is detected at the fast rate even if it was the only one sending.
    pub active_for: Duration,
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
    /// At most this many *serve-only* links: connections to banned peers, kept (or accepted
    /// when the banned peer dials in) so that it can still fetch from this node, but never
    /// fetched from. They hold no neighbour slot (`target` and `max_neighbours` count only
    /// the other links). Beyond this many, a ban closes the connection. Default 4; 0 closes
    /// every banned peer's connection.
    pub max_serve_only: usize,
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
            idle_ping_interval: Duration::from_secs(5),
            active_for: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(1),
            max_missed_pings: 3,
            dial_timeout: Duration::from_secs(2),
            dial_hedge_after: Duration::from_millis(500),
            failure_cooldown: Duration::from_secs(30),
            failure_cooldown_min: Duration::from_secs(1),
            max_parallel_dials: 4,
            max_serve_only: 4,
        }
    }

    /// A small, fast setting for tests: 4 neighbours (at most 12), pings every 50 ms (idle or
    /// not) timing out after 200 ms, dials timing out after 400 ms (hedged after 100 ms), cooldown 5 s from the
    /// first failure on (no backoff), at most 2 serve-only links.
    pub fn for_test() -> Self {
        Self {
            target: 4,
            max_neighbours: 12,
            ping_interval: Duration::from_millis(50),
            idle_ping_interval: Duration::from_millis(50),
            active_for: Duration::from_secs(1),
            ping_timeout: Duration::from_millis(200),
            max_missed_pings: 3,
            dial_timeout: Duration::from_millis(400),
            dial_hedge_after: Duration::from_millis(100),
            failure_cooldown: Duration::from_secs(5),
            failure_cooldown_min: Duration::from_secs(5),
            max_parallel_dials: 4,
            max_serve_only: 2,
        }
    }

    /// The longest an *active* neighbour can stay silent before it is declared lost:
    /// `ping_timeout + max_missed_pings * ping_interval` (1.75 s with the defaults).
    ///
    /// Holds when the shell calls `handle_timeout` at every `poll_timeout`, for a neighbour
    /// that falls silent while its link is active (within `active_for` of the last activity;
    /// with `active_for` above this bound, fast pings continue until the loss).
    pub fn loss_detection_bound(&self) -> Duration {
        self.ping_timeout + self.effective_ping_interval() * self.effective_max_missed()
    }

    /// The longest an *idle* neighbour can stay silent before its pings lose it:
    /// `ping_timeout + max_missed_pings * idle_ping_interval` (16 s with the defaults). In
    /// practice the registry (dead after 6 s without a heartbeat, learnt at the next heartbeat)
    /// or QUIC's idle timeout (10 s) usually tells first.
    pub fn idle_loss_detection_bound(&self) -> Duration {
        self.ping_timeout + self.effective_idle_ping_interval() * self.effective_max_missed()
    }

    /// `ping_interval`, at least 1 ms so that pinging can never spin.
    pub(super) fn effective_ping_interval(&self) -> Duration {
        self.ping_interval.max(Duration::from_millis(1))
    }

    /// `idle_ping_interval`, never below the active interval.
    pub(super) fn effective_idle_ping_interval(&self) -> Duration {
        self.idle_ping_interval.max(self.effective_ping_interval())
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

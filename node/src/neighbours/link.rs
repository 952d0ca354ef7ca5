//! One neighbour slot: a dial in flight, or a connection and its pings.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Who dialled a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This node dialled the peer.
    Outbound,
    /// The peer dialled this node.
    Inbound,
}

/// Where a neighbour is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighbourState {
    /// Our dial is in flight.
    Dialling,
    /// The connection is up.
    Connected,
}

/// The core's record of one neighbour: at most one per peer.
#[derive(Clone, Debug)]
pub(super) struct Link {
    /// Address dialled, or the remote address of the accepted connection.
    pub(super) addr: SocketAddr,
    /// Who dialled.
    pub(super) direction: Direction,
    /// When the dial started or the connection was accepted.
    pub(super) since: Instant,
    /// Dialling or connected.
    pub(super) phase: Phase,
}

/// Where a [`Link`] is in its life.
#[derive(Clone, Debug)]
pub(super) enum Phase {
    /// Our dial is in flight.
    Dialling,
    /// The connection is up and being pinged.
    Connected(Pinger),
}

impl Link {
    /// A dial we just asked the shell for.
    pub(super) fn dialling(now: Instant, addr: SocketAddr) -> Self {
        Self {
            addr,
            direction: Direction::Outbound,
            since: now,
            phase: Phase::Dialling,
        }
    }

    /// A connection just accepted; its first ping is due at once.
    pub(super) fn connected(now: Instant, addr: SocketAddr, direction: Direction) -> Self {
        Self {
            addr,
            direction,
            since: now,
            phase: Phase::Connected(Pinger::new(now)),
        }
    }

    /// The public state.
    pub(super) fn state(&self) -> NeighbourState {
        match self.phase {
            Phase::Dialling => NeighbourState::Dialling,
            Phase::Connected(_) => NeighbourState::Connected,
        }
    }

    /// Whether this is a dial in flight.
    pub(super) fn is_dialling(&self) -> bool {
        matches!(self.phase, Phase::Dialling)
    }

    /// Whether the connection is up.
    pub(super) fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected(_))
    }
}

/// Ping bookkeeping of one connection.
///
/// Pings go out every interval whether or not earlier ones were answered, so several can be
/// outstanding (about `ping_timeout / ping_interval`). A pong for any outstanding nonce proves
/// the peer alive: it yields an RTT sample, settles that ping and every older one, and resets
/// the miss count. Each ping that reaches its timeout unanswered is one miss.
#[derive(Clone, Debug)]
pub(super) struct Pinger {
    /// When the next ping is due.
    next_ping: Instant,
    /// Unanswered pings, oldest first: (nonce, sent at).
    outstanding: VecDeque<(u64, Instant)>,
    /// Consecutive misses since the last pong.
    missed: u32,
    /// The link counts as active (fast pings) until then.
    active_until: Option<Instant>,
}

impl Pinger {
    fn new(now: Instant) -> Self {
        Self {
            next_ping: now,
            outstanding: VecDeque::new(),
            missed: 0,
            active_until: None,
        }
    }

    /// Whether the link is active at `now`.
    pub(super) fn is_active(&self, now: Instant) -> bool {
        self.active_until.is_some_and(|t| now < t)
    }

    /// Data-plane traffic at `now`: active until `now + active_for`, and the next ping no
    /// later than `interval` from now (it may have been scheduled at the idle rate).
    pub(super) fn activity(&mut self, now: Instant, active_for: Duration, interval: Duration) {
        self.active_until = Some(now + active_for);
        self.next_ping = self.next_ping.min(now + interval);
    }

    /// Counts every outstanding ping older than `timeout` as missed; returns the consecutive
    /// misses so far.
    pub(super) fn expire(&mut self, now: Instant, timeout: Duration) -> u32 {
        while let Some(&(_, sent)) = self.outstanding.front() {
            if sent + timeout > now {
                break;
            }
            self.outstanding.pop_front();
            self.missed += 1;
        }
        self.missed
    }

    /// Whether a ping is due.
    pub(super) fn is_due(&self, now: Instant) -> bool {
        self.next_ping <= now
    }

    /// Records a ping just sent; the next one is due `interval` later.
    pub(super) fn sent(&mut self, now: Instant, nonce: u64, interval: Duration) {
        self.outstanding.push_back((nonce, now));
        self.next_ping = now + interval;
    }

    /// A ping or pong the shell could not queue: one miss now; the unsent ping (`nonce`) is
    /// settled, since it cannot be answered. Returns the consecutive misses so far.
    pub(super) fn congested(&mut self, nonce: Option<u64>) -> u32 {
        if let Some(pos) = nonce.and_then(|n| self.outstanding.iter().position(|&(o, _)| o == n)) {
            self.outstanding.remove(pos);
        }
        self.missed += 1;
        self.missed
    }

    /// The peer was heard from (packets arrived on its connection) at `now`: it is alive, so
    /// every ping sent before now is settled and the miss count resets. No RTT sample: the
    /// packets answer no ping in particular.
    pub(super) fn heard(&mut self, now: Instant) {
        while self
            .outstanding
            .front()
            .is_some_and(|&(_, sent)| sent <= now)
        {
            self.outstanding.pop_front();
        }
        self.missed = 0;
    }

    /// A pong: the RTT sample if `nonce` is outstanding, `None` if it is stale or unknown.
    pub(super) fn pong(&mut self, now: Instant, nonce: u64) -> Option<Duration> {
        let pos = self.outstanding.iter().position(|&(n, _)| n == nonce)?;
        let (_, sent) = self.outstanding[pos];
        self.outstanding.drain(..=pos);
        self.missed = 0;
        Some(now.saturating_duration_since(sent))
    }

    /// The next instant this pinger needs attention: a ping due or a ping timing out.
    pub(super) fn deadline(&self, timeout: Duration) -> Instant {
        match self.outstanding.front() {
            Some(&(_, sent)) => self.next_ping.min(sent + timeout),
            None => self.next_ping,
        }
    }
}

//! What the core knows of one peer: its pieces, its requests, its measured throughput.

use std::time::{Duration, Instant};

/// Longest deadline given to one request, whatever the peer's measured rate.
pub(super) const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

use swarmcast_proto::NodeId;

use super::SwarmConfig;
use crate::bitfield::Bitfield;

/// Weight of a new sample in the rate EWMA.
const RATE_GAIN: f64 = 0.25;

/// Longest probe backoff as a power of two of `min_request_timeout`, before `max_probe_backoff`.
const MAX_BACKOFF_SHIFT: u32 = 16;

/// One request outstanding at a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Request {
    /// The piece asked for.
    pub piece: u32,
    /// When it was emitted.
    pub sent: Instant,
    /// When it expires (meaningless once [`RequestKind::Expired`]).
    pub deadline: Instant,
    /// What it counts for.
    pub kind: RequestKind,
}

/// How a request counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestKind {
    /// Covers its piece: the piece is out of the pool while a live request covers it.
    Live,
    /// Sent to a suspect peer to see whether it answers again; leaves the piece in the pool.
    Probe,
    /// Past its deadline; its piece went back to the pool, but an answer is still welcome.
    Expired,
}

/// Whether a peer answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// Answers in time: gets requests up to its window and counts towards availability.
    Healthy,
    /// A request timed out and nothing came back since: gets one probe at a time after a
    /// backoff, and does not count towards availability (so the origin serves what only it has).
    Suspect {
        /// Consecutive timeouts.
        timeouts: u32,
        /// When the next probe may go; `None` once it is due (or in flight).
        probe_at: Option<Instant>,
    },
}

/// One peer of the transfer.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub id: NodeId,
    pub is_origin: bool,
    /// Its pieces (empty once banned).
    pub have: Bitfield,
    /// Pieces it served that failed verification (fewer than `max_strikes`).
    pub bad: Vec<u32>,
    /// Outstanding requests (at most `max_in_flight_per_peer`).
    pub requests: Vec<Request>,
    /// EWMA of bytes per second; `None` until measured.
    pub rate: Option<f64>,
    /// Bytes received since `sample_start`, not yet in `rate`.
    sample_bytes: u64,
    /// Start of the current rate sample; `None` while nothing is outstanding.
    sample_start: Option<Instant>,
    pub window: u32,
    pub strikes: u32,
    pub banned: bool,
    pub bytes_received: u64,
    pub health: Health,
    /// Whether its pieces are counted in the pool's availability.
    pub counted: bool,
    /// It delivered a piece of this transfer.
    pub proven: bool,
    /// Unproven, and its oldest request is older than `first_piece_grace`: its pieces do not
    /// count towards availability until it delivers one.
    pub silent: bool,
}

impl Peer {
    pub(super) fn new(id: NodeId, pieces: u32, is_origin: bool, config: &SwarmConfig) -> Self {
        Self {
            id,
            is_origin,
            have: Bitfield::new(pieces),
            bad: Vec::new(),
            requests: Vec::new(),
            rate: None,
            sample_bytes: 0,
            sample_start: None,
            window: config.initial_window.clamp(1, config.max_window.max(1)),
            strikes: 0,
            banned: false,
            bytes_received: 0,
            health: Health::Healthy,
            counted: false,
            proven: false,
            silent: false,
        }
    }

    /// Whether its pieces should count towards availability.
    pub(super) fn should_count(&self) -> bool {
        !self.is_origin && !self.banned && self.health == Health::Healthy && !self.silent
    }

    /// When this peer turns silent if it delivers nothing before: `grace` after its oldest
    /// request, while it has delivered no piece of the transfer. `None` once it has, or is
    /// silent already, or has nothing outstanding. (The origin, a banned or a suspect peer does
    /// not count anyway.)
    pub(super) fn silent_at(&self, grace: Duration) -> Option<Instant> {
        let healthy = self.health == Health::Healthy;
        if self.proven || self.silent || self.is_origin || self.banned || !healthy {
            return None;
        }
        let oldest = self.requests.iter().map(|r| r.sent).min()?;
        Some(oldest.checked_add(grace).unwrap_or(oldest))
    }

    /// Whether this peer's copy of `piece` counts (it has it and did not serve it bad).
    pub(super) fn serves(&self, piece: u32) -> bool {
        self.have.get(piece) && !self.bad.contains(&piece)
    }

    /// Whether a request for `piece` is outstanding here.
    pub(super) fn requested(&self, piece: u32) -> bool {
        self.requests.iter().any(|r| r.piece == piece)
    }

    /// Remove the request for `piece`, if any.
    pub(super) fn take_request(&mut self, piece: u32) -> Option<Request> {
        let i = self.requests.iter().position(|r| r.piece == piece)?;
        Some(self.requests.swap_remove(i))
    }

    /// Remove every request.
    pub(super) fn clear_requests(&mut self) -> Vec<Request> {
        self.sample_start = None;
        self.sample_bytes = 0;
        std::mem::take(&mut self.requests)
    }

    /// Record a request emitted at `now`, with its deadline.
    pub(super) fn push_request(
        &mut self,
        now: Instant,
        piece: u32,
        bytes: u64,
        kind: RequestKind,
        config: &SwarmConfig,
        queued_bytes: u64,
    ) {
        let timeout = self.request_timeout(config, queued_bytes + bytes);
        let deadline = now.checked_add(timeout).unwrap_or(now);
        if self.requests.is_empty() {
            // Idle time is not throughput: a busy period starts a new sample.
            self.sample_start = Some(now);
            self.sample_bytes = 0;
        }
        self.requests.push(Request {
            piece,
            sent: now,
            deadline,
            kind,
        });
    }

    /// `max(min, factor × queued / rate)`, at most [`MAX_REQUEST_TIMEOUT`] (a peer measured at a
    /// crawl must not push a deadline past what an `Instant` can hold).
    fn request_timeout(&self, config: &SwarmConfig, queued: u64) -> Duration {
        let min = config.min_request_timeout;
        let t = match self.rate {
            Some(rate) if rate > 0.0 => {
                let secs = f64::from(config.request_timeout_factor) * queued as f64 / rate;
                Duration::try_from_secs_f64(secs).map_or(MAX_REQUEST_TIMEOUT, |d| d.max(min))
            }
            _ => min,
        };
        t.min(MAX_REQUEST_TIMEOUT.max(min))
    }

    /// `bytes` arrived at `now` in answer to a request: fold them into the rate and resize the
    /// window.
    pub(super) fn credit(
        &mut self,
        now: Instant,
        bytes: u64,
        config: &SwarmConfig,
        mean_piece: f64,
    ) {
        self.bytes_received += bytes;
        self.sample_bytes += bytes;
        let start = *self.sample_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < config.min_rate_sample || elapsed.is_zero() {
            return;
        }
        let sample = self.sample_bytes as f64 / elapsed.as_secs_f64();
        self.rate = Some(match self.rate {
            Some(r) => r + RATE_GAIN * (sample - r),
            None => sample,
        });
        self.sample_bytes = 0;
        self.sample_start = Some(now);
        self.resize(config, mean_piece);
    }

    /// Window from the measured rate: grows at most twofold per sample, shrinks at once.
    fn resize(&mut self, config: &SwarmConfig, mean_piece: f64) {
        let Some(rate) = self.rate else { return };
        let max = config.max_window.max(1);
        let want = (rate * config.target_queue.as_secs_f64() / mean_piece.max(1.0)).ceil();
        let least = f64::from(config.min_window.clamp(1, max));
        let want = if want.is_finite() {
            (want.max(least) as u64).min(u64::from(max)) as u32
        } else {
            max
        };
        self.window = if want > self.window {
            want.min(self.window.saturating_mul(2))
        } else {
            want
        };
    }

    /// A failure or a timeout: halve the window and the rate estimate.
    pub(super) fn shrink(&mut self) {
        self.window = (self.window / 2).max(1);
        if let Some(r) = &mut self.rate {
            *r /= 2.0;
        }
    }

    /// Requests that may be added now: up to the window while healthy, one probe at a time
    /// when suspect and due; never past the hard cap.
    pub(super) fn free_slots(&self, now: Instant, config: &SwarmConfig) -> (u32, RequestKind) {
        let outstanding = self.requests.len() as u32;
        let cap = config.max_in_flight_per_peer.max(1);
        if self.banned || outstanding >= cap {
            return (0, RequestKind::Live);
        }
        match self.health {
            Health::Healthy => (
                self.window.min(cap).saturating_sub(outstanding),
                RequestKind::Live,
            ),
            Health::Suspect { probe_at, .. } => {
                let due = probe_at.is_none_or(|t| t <= now);
                let probing = self.requests.iter().any(|r| r.kind == RequestKind::Probe);
                (u32::from(due && !probing), RequestKind::Probe)
            }
        }
    }

    /// Backoff before the probe that follows `timeouts` consecutive timeouts.
    pub(super) fn probe_backoff(config: &SwarmConfig, timeouts: u32) -> Duration {
        let shift = timeouts.saturating_sub(1).min(MAX_BACKOFF_SHIFT);
        config
            .min_request_timeout
            .saturating_mul(1 << shift)
            .min(config.max_probe_backoff)
    }

    /// Earliest instant something of this peer's needs the clock; `grace` is the transfer's
    /// first-piece grace.
    pub(super) fn next_timeout(&self, grace: Duration) -> Option<Instant> {
        let mut next = match self.health {
            Health::Suspect { probe_at, .. } => probe_at,
            Health::Healthy => None,
        };
        next = match (next, self.silent_at(grace)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for r in &self.requests {
            if r.kind != RequestKind::Expired && next.is_none_or(|t| r.deadline < t) {
                next = Some(r.deadline);
            }
        }
        next
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    /// A peer measured at a crawl once made `now + timeout` overflow and panic the data plane.
    #[test]
    fn a_crawling_peer_gets_a_bounded_deadline() {
        let config = SwarmConfig::default();
        let mut p = Peer::new(NodeId([1; 32]), 4, false, &config);
        // 4 × 1 MiB / rate ≈ 1.5e19 s: fits a Duration, not an Instant.
        p.rate = Some(2.8e-13);
        let now = Instant::now();
        p.push_request(now, 0, 1 << 20, RequestKind::Live, &config, 0);
        let d = p.requests[0].deadline;
        assert!(d > now && d <= now + MAX_REQUEST_TIMEOUT, "{:?}", d - now);
        assert_eq!(p.request_timeout(&config, 0), config.min_request_timeout);
    }
}

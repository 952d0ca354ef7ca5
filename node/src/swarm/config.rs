//! Tuning of the swarm core.

use std::time::Duration;

/// Tuning of [`Transfer`](super::Transfer).
///
/// [`Default`] is the production setting; [`SwarmConfig::for_test`] has short timeouts for unit
/// tests. Values are taken as given (parse, don't validate), with guards in the core: windows
/// and caps of 0 count as 1, and `endgame_duplicates` is capped at 255.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Hard cap on requests outstanding at one peer, expired ones included: the core never
    /// emits a request beyond it, whatever the window says. Default 64.
    pub max_in_flight_per_peer: u32,
    /// Window of a peer whose throughput has not been measured yet. Default 4.
    pub initial_window: u32,
    /// Smallest window a measured rate sets (a failure or a timeout may still halve it to 1
    /// until the next sample). Default 2: one piece queued at the peer behind the one on the
    /// wire, so its uplink does not idle for a round trip between pieces. With one, a peer
    /// whose rate × `target_queue` is under a piece (the origin's four connections at N=4 ×
    /// 50 Mbit/s, every connection at N=8 × 25) got its next request only after the previous
    /// answer arrived; round trips that shaped links' queues stretch to 50–100 ms then cost
    /// that much of each piece's time. Found in the simulation (`node/tests/swarm_sim.rs`
    /// `lab_sweep`: N=4 HTB 1.214 → 1.118 × T*, N=8 HTB 1.170 → 1.102, none worse); in the
    /// netns lab (BENCHMARKS.md "A least window of two pieces") N=4 HTB 1.171 → 1.144 and
    /// N=8 HTB 1.235 → 1.194.
    pub min_window: u32,
    /// Largest window. Default 64.
    pub max_window: u32,
    /// How much work, in time at the peer's measured rate, to keep queued at a peer:
    /// `window = clamp(ceil(rate × target_queue / mean piece bytes), min_window, max_window)`.
    /// Default 200 ms: every requester keeps this much queued at a peer, so a piece asked of a
    /// busy peer waits about this long behind the others (a server's queue is its uplink ×
    /// target_queue), and a piece must cross a hop or two before the last receiver has it. In
    /// the netns lab 500 ms made requests wait 500–700 ms at peers (N=4 × 50 Mbit/s) and the
    /// last pieces reached the last receivers about a second after the origin's last byte;
    /// 200 ms gave T/T* 1.157 against 1.182 (N=4) and 1.209 against 1.252 (8 × 25 Mbit/s).
    pub target_queue: Duration,
    /// Shortest request deadline. Default 3 s.
    pub min_request_timeout: Duration,
    /// A request's deadline is `max(min_request_timeout, factor × expected service time)`,
    /// where the expected service time is the bytes outstanding at that peer (this request
    /// included) over the peer's measured rate. Default 4.
    pub request_timeout_factor: u32,
    /// Bad pieces from one peer that get it banned. Default 3.
    pub max_strikes: u32,
    /// In endgame, extra copies of one in-flight piece that may be requested from other
    /// peers. Default 1.
    pub endgame_duplicates: u32,
    /// Bytes are credited to a peer's rate over intervals at least this long, so that
    /// responses landing together do not read as an infinite rate. Default 10 ms.
    pub min_rate_sample: Duration,
    /// A peer whose request timed out is suspect: it is probed with one request after
    /// `min_request_timeout`, then after twice that, and so on up to this. Default 60 s.
    pub max_probe_backoff: Duration,
    /// Bytes of live requests outstanding across all peers of the transfer: this bounds the
    /// memory a receiver spends on pieces in flight, whatever the number of peers. Fast peers
    /// get the budget first. At least one request is always allowed. Default 32 MiB.
    pub max_in_flight_bytes: u64,
    /// A peer that has delivered no piece of this transfer yet, and whose oldest request has
    /// been outstanding longer than its *grace*, is *silent*: its pieces stop counting towards
    /// availability (so the origin, and other peers, are asked for them) until it delivers one.
    /// The grace is `request_timeout_factor` times the transfer's typical service time (an EWMA
    /// of the time from a request to its answer, over every answer), kept between a quarter of
    /// this and this; before any answer, this. A neighbour whose `Have` claims every piece and
    /// that then answers nothing (or a byte a second) otherwise held every piece it claimed in
    /// the pool for `min_request_timeout` while the origin idled: 3.4 s instead of 0.41 s for
    /// 128 MiB on loopback. It is not a failure: a silent peer keeps its requests and its
    /// window, and is not suspect; only a deadline makes it so. Pieces, not bytes, count as
    /// delivered. Default 150 ms (so 37.5 ms at least).
    pub first_piece_grace: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            max_in_flight_per_peer: 64,
            initial_window: 4,
            min_window: 2,
            max_window: 64,
            target_queue: Duration::from_millis(200),
            min_request_timeout: Duration::from_secs(3),
            request_timeout_factor: 4,
            max_strikes: 3,
            endgame_duplicates: 1,
            min_rate_sample: Duration::from_millis(10),
            max_probe_backoff: Duration::from_secs(60),
            max_in_flight_bytes: 32 << 20,
            first_piece_grace: Duration::from_millis(150),
        }
    }
}

impl SwarmConfig {
    /// The defaults with short timeouts for tests: requests time out after 300 ms at least,
    /// probes back off to 2 s at most, rates are sampled over 1 ms, and a peer that delivered
    /// nothing is silent 7.5–30 ms after its oldest request.
    pub fn for_test() -> Self {
        Self {
            min_request_timeout: Duration::from_millis(300),
            first_piece_grace: Duration::from_millis(30),
            min_rate_sample: Duration::from_millis(1),
            max_probe_backoff: Duration::from_secs(2),
            ..Self::default()
        }
    }
}

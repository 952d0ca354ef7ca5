//! The network a run models: hosts' capacities, the graph, the wire's delays and the shaped
//! links' queues, and the one-file manifest the origin sends.

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;
use swarmcast_proto::{BroadcastId, NodeId};

use crate::manifest::{ChunkHash, Entry, EntryKind, Layout, Manifest, manifest_id};
use crate::swarm::SwarmConfig;

/// A mebibyte.
pub const MIB: u64 = 1 << 20;
/// A megabyte per second, in bytes per second.
pub const MB: f64 = 1e6;
/// The default model's receivers.
pub const RECEIVERS: usize = 30;
/// The default model's pieces (of 1 MiB).
pub const PIECES: u32 = 256;
/// Neighbours per node: the neighbour core's default target.
pub const DEGREE: usize = 8;
/// The most neighbours a node takes before the graph builder forces more.
pub const MAX_DEGREE: usize = 12;
/// The default model's origin upload.
pub const ORIGIN_UP: f64 = 50.0 * MB;
/// Half the RTT, in nanoseconds.
pub const HALF_RTT: u64 = 500_000;

/// The network a run models. [`Net::with_uploads`] is the model the crate docs describe (30 receivers
/// of drawn capacities, 1 MiB pieces, 0.5 ms per message, no queues); [`Net::lab`] describes a
/// `bench swarm` configuration (the `lab_agreement` test of `node/tests/swarm_sim.rs`).
#[derive(Clone, Debug)]
pub struct Net {
    pub receivers: usize,
    pub pieces: u32,
    /// Bytes per piece (one chunk per piece).
    pub piece_bytes: u64,
    /// The origin's upload, payload bytes per second.
    pub origin_up: f64,
    /// Receivers' (upload, download) payload capacities.
    pub rates: Rates,
    /// Neighbours per node (a full mesh when the fleet is smaller).
    pub degree: usize,
    /// A message's time on the wire without queueing, nanoseconds.
    pub half_rtt: u64,
    /// The shaped links' queues: a message or a piece's last byte crossing a saturated
    /// shaped link waits this long in its FIFO (nanoseconds), on the sender's uplink and, with
    /// `queue_down`, the receiver's downlink too.
    pub queue: u64,
    pub queue_down: bool,
    /// The lower bound's rates (the links' configured rates, which the lab's T* counts as
    /// payload): origin upload and receivers' (upload, download), bytes per second.
    pub bound: Option<(f64, Vec<(f64, f64)>)>,
    /// What the simulated completion leaves out of the user's figure: from the start of
    /// `node send` to the origin's first announcement, and from the last completion to the
    /// return of `--wait`, nanoseconds.
    pub before: u64,
    pub after: u64,
    /// The receivers' swarm settings (the default, unless an experiment changes them).
    pub swarm: SwarmConfig,
    /// Recompute the fair rates at most this often (nanoseconds; 0: at every change, exact).
    /// A connection that starts waits for the next recomputation, and one that ends holds
    /// its share until then: an aggregation for large fleets, where changes come many per
    /// piece time.
    pub rate_quantum: u64,
}

#[derive(Clone, Debug)]
pub enum Rates {
    /// Each receiver's upload drawn uniformly from this range (MB/s), its download twice that.
    Drawn(std::ops::Range<f64>),
    /// Given per receiver.
    Fixed(Vec<(f64, f64)>),
}

impl Net {
    /// The default model with receivers' uploads drawn from `uploads` (MB/s).
    pub fn with_uploads(uploads: std::ops::Range<f64>) -> Self {
        Self {
            receivers: RECEIVERS,
            pieces: PIECES,
            piece_bytes: MIB,
            origin_up: ORIGIN_UP,
            rates: Rates::Drawn(uploads),
            degree: DEGREE,
            half_rtt: HALF_RTT,
            queue: 0,
            queue_down: false,
            bound: None,
            before: 0,
            after: 0,
            swarm: SwarmConfig::default(),
            rate_quantum: 0,
        }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> f64 {
        (u64::from(self.pieces) * self.piece_bytes) as f64
    }
}

/// How a `bench swarm` configuration's links are shaped.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// HTB on both directions of each host's link, a 50 ms byte FIFO each.
    HtbBoth,
    /// A tbf on each host's uplink (50 ms queue); downloads unshaped.
    TbfUplink,
}

impl Net {
    /// A `bench swarm` configuration: the origin's and each receiver's link rate in Mbit/s
    /// (`receivers[i]` for receiver `i + 1`), `mib` of data in the product's default pieces.
    ///
    /// What the model takes from the lab, beside the configured rates:
    /// * **The wire's overhead.** A link carries the payload plus IP/UDP/QUIC headers and
    ///   retransmissions: the lab's switch counters gave 1.05 × F on the origin's link for 1.00 ×
    ///   F of payload with HTB both ways (drops at the receivers' download FIFOs, where several
    ///   senders meet), 1.03 × F with tbf on uplinks only (headers alone). Payload capacity is
    ///   the link rate over that.
    /// * **Queues.** Every shaped link has a 50 ms FIFO, which congestion control keeps full
    ///   while the link is saturated: a message (a request, an advert, a manifest) or a piece's
    ///   last byte that crosses a saturated shaped link waits 50 ms there (uplinks in both
    ///   shapes, downlinks too with HTB). So request round trips grow with load, as in the lab.
    /// * **Connections.** One QUIC connection per neighbour pair, its pieces sent one after
    ///   another (streams in order: the node's piece streams share one priority), connections
    ///   sharing each link max-min fairly (what competing congestion controllers converge to).
    ///   QUIC's stream and connection windows (2 MiB and 4 MiB) exceed what a peer has in
    ///   flight at these rates (its request budget of about 200 ms of its throughput), so they
    ///   do not bind, and are not modelled; neither is slow start (the initial window doubles
    ///   in a few 0.2 ms RTTs on an empty veth).
    /// * **What the cores do not see.** The user's figure starts at `node send`, and the first
    ///   announcement leaves after the origin hashed the directory and answered the control
    ///   socket (the lab's first requests: 0.13–0.15 s after the start); it ends when `--wait`
    ///   hears of the last completion through the registry (0.18–0.25 s after it). Both are
    ///   taken as measured (medians of the N=4 and N=8 runs in BENCHMARKS.md), not modelled.
    pub fn lab(shape: Shape, origin_mbit: f64, receivers: &[f64], mib: u64) -> Self {
        let mbit = |r: f64| r * 1e6 / 8.0;
        let overhead = match shape {
            Shape::HtbBoth => 1.05,
            Shape::TbfUplink => 1.03,
        };
        // Unshaped downloads: a veth on this machine moves several Gbit/s.
        let down = |r: f64| match shape {
            Shape::HtbBoth => mbit(r),
            Shape::TbfUplink => mbit(10_000.0),
        };
        let piece_bytes = u64::from(crate::manifest::PIECE_BYTES);
        Self {
            receivers: receivers.len(),
            pieces: (mib * MIB / piece_bytes) as u32,
            piece_bytes,
            origin_up: mbit(origin_mbit) / overhead,
            rates: Rates::Fixed(
                receivers
                    .iter()
                    .map(|&r| (mbit(r) / overhead, down(r) / overhead))
                    .collect(),
            ),
            degree: DEGREE,
            half_rtt: 100_000,
            queue: 25_000_000,
            queue_down: matches!(shape, Shape::HtbBoth),
            bound: Some((
                mbit(origin_mbit),
                receivers.iter().map(|&r| (mbit(r), down(r))).collect(),
            )),
            before: 140_000_000,
            after: 200_000_000,
            swarm: SwarmConfig::default(),
            rate_quantum: 0,
        }
    }
}

/// One file of `net.pieces` chunks of `net.piece_bytes`: one chunk per piece.
pub(crate) fn manifest(net: &Net) -> (Arc<Manifest>, Arc<Layout>, Vec<u8>, BroadcastId) {
    let m = Manifest {
        version: crate::manifest::MANIFEST_VERSION,
        name: "sim".into(),
        chunk_size: net.piece_bytes as u32,
        root_mode: Some(0o755),
        entries: vec![Entry {
            path: "file".into(),
            kind: EntryKind::File {
                size: u64::from(net.pieces) * net.piece_bytes,
                mode: 0o644,
                chunks: (0..net.pieces)
                    .map(|i| {
                        let mut h = [0u8; 32];
                        h[..4].copy_from_slice(&i.to_be_bytes());
                        ChunkHash(h)
                    })
                    .collect(),
            },
        }],
        audience: None,
        priority: swarmcast_proto::Priority::Normal,
    };
    let bytes = m.to_bytes();
    let id = manifest_id(&bytes);
    let layout = Arc::new(Layout::new(&m));
    assert_eq!(layout.piece_count(), net.pieces);
    (Arc::new(m), layout, bytes, id)
}

/// The simulated node `n`'s id.
pub fn node_id(n: usize) -> NodeId {
    let mut bytes = [0u8; 32];
    let mixed = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    bytes[..8].copy_from_slice(&mixed.to_be_bytes());
    NodeId(bytes)
}

/// A connected random graph on `n` nodes, each of degree at least `degree` (a full mesh if
/// there are not that many others).
pub(crate) fn random_graph(rng: &mut StdRng, n: usize, degree: usize) -> Vec<BTreeSet<usize>> {
    if n <= degree + 1 {
        return (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
    }
    loop {
        let mut adj = vec![BTreeSet::new(); n];
        let mut order: Vec<usize> = (0..n).collect();
        rand::seq::SliceRandom::shuffle(&mut order[..], rng);
        for &i in &order {
            let mut tries = 0;
            while adj[i].len() < degree && tries < 1000 {
                tries += 1;
                let j = rng.random_range(0..n);
                let cap = if tries > 500 {
                    n
                } else {
                    MAX_DEGREE.max(degree + degree / 2)
                };
                if j != i && !adj[i].contains(&j) && adj[j].len() < cap {
                    adj[i].insert(j);
                    adj[j].insert(i);
                }
            }
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(i) = stack.pop() {
            for &j in &adj[i] {
                if !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if seen.iter().all(|&s| s) {
            return adj;
        }
    }
}

/// A uniform fleet, as `swarmcast sim` describes it: every host (the origin too) with the
/// same link, one file.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Receivers (the origin is extra).
    pub receivers: usize,
    /// The file's bytes (rounded up to whole chunks).
    pub bytes: u64,
    /// Bytes per chunk, at least [`PIECE_BYTES`](crate::manifest::PIECE_BYTES): the model
    /// sends one chunk per piece.
    pub chunk_size: u32,
    /// Every host's upload and download, Mbit/s.
    pub up_mbit: f64,
    pub down_mbit: f64,
    /// A message's time on the wire, one way.
    pub latency: std::time::Duration,
    /// Packets lost on every link (a fraction): what is resent is taken off the payload rate.
    /// Its effect on congestion control is not modelled.
    pub loss: f64,
    /// Neighbours per node.
    pub degree: usize,
}

/// A fleet the simulator cannot model.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum FleetError {
    #[error("a fleet needs at least one receiver")]
    NoReceivers,
    #[error("nothing to send: the size is 0")]
    Empty,
    #[error("chunk size {chunk} B is below {min} B: the simulator sends one chunk per piece")]
    ChunkTooSmall { chunk: u32, min: u32 },
    #[error("{pieces} pieces are more than the simulator's {max}")]
    TooManyPieces { pieces: u64, max: u64 },
    #[error("{what} must be a positive number of Mbit/s, not {value}")]
    Rate { what: &'static str, value: f64 },
    #[error("loss must be a fraction below 1, not {0}")]
    Loss(f64),
    #[error("a node needs at least one neighbour")]
    Degree,
}

impl FleetConfig {
    /// A tenth of a piece's time on a host's uplink once the fleet exceeds 100 receivers
    /// (nanoseconds), else 0 (exact rates).
    fn rate_quantum(&self) -> u64 {
        if self.receivers <= 100 {
            return 0;
        }
        let piece_s = f64::from(self.chunk_size) / (self.up_mbit * 1e6 / 8.0);
        (piece_s * 1e9 / 10.0) as u64
    }

    /// The model of this fleet.
    pub fn net(&self) -> Result<Net, FleetError> {
        if self.receivers == 0 {
            return Err(FleetError::NoReceivers);
        }
        if self.bytes == 0 {
            return Err(FleetError::Empty);
        }
        let min = crate::manifest::PIECE_BYTES;
        if self.chunk_size < min {
            return Err(FleetError::ChunkTooSmall {
                chunk: self.chunk_size,
                min,
            });
        }
        let pieces = self.bytes.div_ceil(u64::from(self.chunk_size));
        let max = u64::from(u32::MAX);
        if pieces > max {
            return Err(FleetError::TooManyPieces { pieces, max });
        }
        for (what, value) in [("upload", self.up_mbit), ("download", self.down_mbit)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(FleetError::Rate { what, value });
            }
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(FleetError::Loss(self.loss));
        }
        if self.degree == 0 {
            return Err(FleetError::Degree);
        }
        let mbit = |r: f64| r * 1e6 / 8.0;
        let (up, down) = (mbit(self.up_mbit), mbit(self.down_mbit));
        let payload = 1.0 - self.loss;
        Ok(Net {
            receivers: self.receivers,
            pieces: pieces as u32,
            piece_bytes: u64::from(self.chunk_size),
            origin_up: up * payload,
            rates: Rates::Fixed(vec![(up * payload, down * payload); self.receivers]),
            degree: self.degree,
            half_rtt: u64::try_from(self.latency.as_nanos()).unwrap_or(u64::MAX),
            queue: 0,
            queue_down: false,
            bound: Some((up, vec![(up, down); self.receivers])),
            before: 0,
            after: 0,
            swarm: SwarmConfig::default(),
            rate_quantum: self.rate_quantum(),
        })
    }
}

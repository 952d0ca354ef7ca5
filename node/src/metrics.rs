//! A node's Prometheus metrics: a small cloneable handle the data plane counts into, and the
//! registry `--metrics ADDR` serves (see `swarmcast_metrics`).
//!
//! Names follow Prometheus conventions (base units, `_total` for counters):
//! * `swarmcast_uploaded_bytes_total{broadcast}`, `swarmcast_downloaded_bytes_total{broadcast}`:
//!   chunk payload bytes served to peers and fetched from them (verified or not), per broadcast
//!   (the short hex id);
//! * `swarmcast_pieces_verified_total`, `swarmcast_pieces_rejected_total`: pieces (runs of
//!   chunks) that matched their BLAKE3 hashes, and that did not (the peer gets a strike);
//! * `swarmcast_peers_banned_total`: peers banned for serving bad chunks;
//! * `swarmcast_neighbours`: neighbours with a data stream up;
//! * `swarmcast_broadcasts{state}`: broadcasts this node knows, by state (`seeding`,
//!   `receiving`, `complete`, `failed`);
//! * `swarmcast_heartbeat_rtt_seconds`: a histogram of heartbeat round trips (the heartbeat
//!   request to the bootstrap in use until its answer; failed ones are not observed), buckets
//!   from 0.5 ms doubling to about 4 s;
//! * `process_cpu_seconds_total`, `process_resident_memory_bytes`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use swarmcast_proto::BroadcastId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BroadcastLabel {
    broadcast: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The states `swarmcast_broadcasts` is reported for (each always present, 0 when none).
pub(crate) const STATES: [&str; 6] = [
    "seeding",
    "receiving",
    "complete",
    "failed",
    "superseded",
    "cancelled",
];

/// The node's counters, gauges and histograms; clones share them.
#[derive(Clone, Debug)]
pub struct Metrics {
    uploaded: Family<BroadcastLabel, Counter>,
    downloaded: Family<BroadcastLabel, Counter>,
    pieces_verified: Counter,
    pieces_rejected: Counter,
    peers_banned: Counter,
    neighbours: Gauge,
    broadcasts: Family<StateLabel, Gauge>,
    heartbeat_rtt: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            uploaded: Family::default(),
            downloaded: Family::default(),
            pieces_verified: Counter::default(),
            pieces_rejected: Counter::default(),
            peers_banned: Counter::default(),
            neighbours: Gauge::default(),
            broadcasts: Family::default(),
            // 0.5 ms to 4.1 s: loopback to a loaded bootstrap across a datacenter.
            heartbeat_rtt: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}

impl Metrics {
    /// Fresh metrics and the registry that exposes them (with the process metrics).
    pub fn new() -> (Self, Registry) {
        let m = Self::default();
        let mut registry = Registry::default();
        swarmcast_metrics::register_process(&mut registry);
        let r = registry.sub_registry_with_prefix("swarmcast");
        r.register_with_unit(
            "uploaded",
            "Chunk payload bytes served to peers",
            Unit::Bytes,
            m.uploaded.clone(),
        );
        r.register_with_unit(
            "downloaded",
            "Chunk payload bytes fetched from peers",
            Unit::Bytes,
            m.downloaded.clone(),
        );
        r.register(
            "pieces_verified",
            "Pieces fetched whose chunks matched their BLAKE3 hashes",
            m.pieces_verified.clone(),
        );
        r.register(
            "pieces_rejected",
            "Pieces fetched that failed verification (the peer got a strike)",
            m.pieces_rejected.clone(),
        );
        r.register(
            "peers_banned",
            "Peers banned for serving bad chunks",
            m.peers_banned.clone(),
        );
        r.register(
            "neighbours",
            "Neighbours with a data stream up",
            m.neighbours.clone(),
        );
        r.register(
            "broadcasts",
            "Broadcasts this node knows, by state",
            m.broadcasts.clone(),
        );
        r.register_with_unit(
            "heartbeat_rtt",
            "Round trip of a heartbeat to the bootstrap in use",
            Unit::Seconds,
            m.heartbeat_rtt.clone(),
        );
        for state in STATES {
            m.broadcasts.get_or_create(&StateLabel { state }).set(0);
        }
        (m, registry)
    }

    fn label(id: &BroadcastId) -> BroadcastLabel {
        BroadcastLabel {
            broadcast: id.short(),
        }
    }

    pub(crate) fn uploaded(&self, id: &BroadcastId, bytes: u64) {
        self.uploaded.get_or_create(&Self::label(id)).inc_by(bytes);
    }

    pub(crate) fn downloaded(&self, id: &BroadcastId, bytes: u64) {
        self.downloaded
            .get_or_create(&Self::label(id))
            .inc_by(bytes);
    }

    pub(crate) fn piece_verified(&self) {
        self.pieces_verified.inc();
    }

    pub(crate) fn piece_rejected(&self) {
        self.pieces_rejected.inc();
    }

    pub(crate) fn peer_banned(&self) {
        self.peers_banned.inc();
    }

    /// A heartbeat's round trip.
    pub(crate) fn heartbeat_rtt(&self, rtt: std::time::Duration) {
        self.heartbeat_rtt.observe(rtt.as_secs_f64());
    }

    /// Current neighbours and broadcasts per state (indexed like [`STATES`]).
    pub(crate) fn set_state(&self, neighbours: usize, broadcasts: [usize; 6]) {
        self.neighbours
            .set(i64::try_from(neighbours).unwrap_or(i64::MAX));
        for (state, n) in STATES.into_iter().zip(broadcasts) {
            self.broadcasts
                .get_or_create(&StateLabel { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        let (m, registry) = Metrics::new();
        let id: BroadcastId = "07".repeat(32).parse().unwrap();
        m.uploaded(&id, 10);
        m.uploaded(&id, 5);
        m.downloaded(&id, 3);
        m.piece_verified();
        m.piece_rejected();
        m.peer_banned();
        m.clone().set_state(2, [1, 0, 3, 0, 0, 0]);
        m.heartbeat_rtt(std::time::Duration::from_millis(3));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let b = id.short();
        for line in [
            format!("swarmcast_uploaded_bytes_total{{broadcast=\"{b}\"}} 15"),
            format!("swarmcast_downloaded_bytes_total{{broadcast=\"{b}\"}} 3"),
            "swarmcast_pieces_verified_total 1".to_owned(),
            "swarmcast_pieces_rejected_total 1".to_owned(),
            "swarmcast_peers_banned_total 1".to_owned(),
            "swarmcast_neighbours 2".to_owned(),
            "swarmcast_broadcasts{state=\"complete\"} 3".to_owned(),
            "swarmcast_broadcasts{state=\"failed\"} 0".to_owned(),
            "# TYPE swarmcast_heartbeat_rtt_seconds histogram".to_owned(),
            "swarmcast_heartbeat_rtt_seconds_count 1".to_owned(),
            "swarmcast_heartbeat_rtt_seconds_bucket{le=\"0.004\"} 1".to_owned(),
            "swarmcast_heartbeat_rtt_seconds_bucket{le=\"0.002\"} 0".to_owned(),
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}

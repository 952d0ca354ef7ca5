//! A bootstrap's Prometheus metrics (`bootstrap --metrics ADDR`): a small cloneable handle the
//! tick loop and the replication tasks count into.
//!
//! * `swarmcast_registry_entries{status}`: registry entries by status (`alive`, `suspect`,
//!   `dead`), after each tick;
//! * `swarmcast_anti_entropy_rounds_total`: push-pull rounds completed with fellows;
//! * `swarmcast_anti_entropy_bytes_total{direction}`: bytes of anti-entropy frames (`Digest`,
//!   `Delta` and their answers, length prefixes included) this bootstrap `sent` and
//!   `received`, in the rounds it starts and in those its fellows start;
//! * `process_cpu_seconds_total`, `process_resident_memory_bytes`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use swarmcast_proto::Status;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

const SENT: DirectionLabel = DirectionLabel { direction: "sent" };
const RECEIVED: DirectionLabel = DirectionLabel {
    direction: "received",
};

/// The bootstrap's counters and gauges; clones share them.
#[derive(Clone, Debug, Default)]
pub struct BootstrapMetrics {
    entries: Family<StatusLabel, Gauge>,
    rounds: Counter,
    anti_entropy_bytes: Family<DirectionLabel, Counter>,
}

fn label(s: Status) -> &'static str {
    match s {
        Status::Alive => "alive",
        Status::Suspect => "suspect",
        Status::Dead => "dead",
    }
}

impl BootstrapMetrics {
    /// Fresh metrics and the registry that exposes them (with the process metrics).
    pub fn new() -> (Self, Registry) {
        let m = Self::default();
        let mut registry = Registry::default();
        swarmcast_metrics::register_process(&mut registry);
        let r = registry.sub_registry_with_prefix("swarmcast");
        r.register(
            "registry_entries",
            "Registry entries by status",
            m.entries.clone(),
        );
        r.register(
            "anti_entropy_rounds",
            "Push-pull rounds completed with fellow bootstraps",
            m.rounds.clone(),
        );
        r.register_with_unit(
            "anti_entropy",
            "Bytes of anti-entropy frames exchanged with fellow bootstraps, by direction",
            prometheus_client::registry::Unit::Bytes,
            m.anti_entropy_bytes.clone(),
        );
        // Both series exist from the start, at 0, so that rate() sees the first bytes.
        m.anti_entropy_bytes(0, 0);
        m.set_entries([Status::Alive, Status::Suspect, Status::Dead].map(|s| (s, 0)));
        (m, registry)
    }

    /// Entries per status.
    pub(crate) fn set_entries(&self, counts: [(Status, usize); 3]) {
        for (s, n) in counts {
            self.entries
                .get_or_create(&StatusLabel { status: label(s) })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub(crate) fn round(&self) {
        self.rounds.inc();
    }

    /// Anti-entropy frames of `sent` and `received` bytes.
    pub(crate) fn anti_entropy_bytes(&self, sent: usize, received: usize) {
        for (label, n) in [(SENT, sent), (RECEIVED, received)] {
            self.anti_entropy_bytes
                .get_or_create(&label)
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        let (m, registry) = BootstrapMetrics::new();
        m.round();
        m.anti_entropy_bytes(100, 40);
        m.anti_entropy_bytes(1, 2);
        m.set_entries([(Status::Alive, 4), (Status::Suspect, 1), (Status::Dead, 0)]);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for line in [
            "swarmcast_registry_entries{status=\"alive\"} 4",
            "swarmcast_registry_entries{status=\"suspect\"} 1",
            "swarmcast_registry_entries{status=\"dead\"} 0",
            "swarmcast_anti_entropy_rounds_total 1",
            "swarmcast_anti_entropy_bytes_total{direction=\"sent\"} 101",
            "swarmcast_anti_entropy_bytes_total{direction=\"received\"} 42",
            "# TYPE swarmcast_anti_entropy_bytes counter",
            "# UNIT swarmcast_anti_entropy_bytes bytes",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }
}

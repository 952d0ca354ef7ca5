//! `swarmcast demo`: a local fleet on 127.0.0.1 in a temporary directory, a sample dataset
//! broadcast to it, faults mid-transfer (a bootstrap and two nodes killed, one restarted),
//! byte-for-byte verification, a summary, and cleanup. It is a [`Scenario`]
//! ([`DemoConfig::scenario`]) run by the scenario runner, which narrates it as it goes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::scenario::{self, Mode, Report, Scenario};

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Bytes in the sample dataset (default 200 MiB).
    pub size: u64,
    /// Nodes, the origin included (default 8).
    pub nodes: usize,
    /// Bootstraps (default 3).
    pub bootstraps: usize,
    /// Keep the temporary directory (for inspection).
    pub keep: bool,
    /// Fraction of the transfer at which the faults strike.
    pub fault_at: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            size: 200 << 20,
            nodes: 8,
            bootstraps: 3,
            keep: false,
            fault_at: 0.3,
        }
    }
}

/// The demo's measurements.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Wall time from `send` to every surviving node complete.
    pub wall: Duration,
    /// Bytes of the dataset.
    pub bytes: u64,
    /// Receivers that completed and verified.
    pub receivers: usize,
    /// Origin upload as a multiple of the dataset.
    pub origin_upload: f64,
    /// Completion time of each node since `send`.
    pub completion: BTreeMap<String, Duration>,
    /// Bytes the restarted node fetched twice.
    pub refetched: u64,
}

pub(crate) fn human(n: u64) -> String {
    let mib = n as f64 / (1 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

impl DemoConfig {
    /// The demo as a scenario: bootstraps and nodes on 127.0.0.1, a sample dataset sent from
    /// n1, and at `fault_at` of the transfer one bootstrap and two receivers SIGKILLed, the
    /// first receiver restarted with its data dir 1.5 s later. The runner's end checks then
    /// prove every copy byte for byte, the registries, re-fetching and a 300 s bound.
    pub fn scenario(&self) -> Result<Scenario> {
        if self.nodes < 4 || self.bootstraps < 2 {
            bail!("the demo needs at least 4 nodes and 2 bootstraps (it kills some)");
        }
        let (b, v1, v2) = self.victims();
        let text = format!(
            r#"
name = "demo"
description = "the built-in default run"
deadline_s = 300
[[steps]]
do = "start"
bootstraps = {bootstraps}
[[steps]]
do = "start"
nodes = {nodes}
[[steps]]
do = "make_dir"
size_mib = {size_mib}
seed = {DATASET_SEED}
[[steps]]
do = "send"
from = "n1"
[[steps]]
do = "wait"
progress = {fault_at}
[[steps]]
do = "kill"
name = "{b}"
[[steps]]
do = "kill"
name = "{v1}"
[[steps]]
do = "kill"
name = "{v2}"
[[steps]]
do = "sleep"
ms = 1500
[[steps]]
do = "restart"
name = "{v1}"
"#,
            bootstraps = self.bootstraps,
            nodes = self.nodes,
            size_mib = self.size as f64 / f64::from(1u32 << 20),
            fault_at = self.fault_at,
        );
        Scenario::from_toml(&text)
    }

    /// The bootstrap and the two receivers killed; the first receiver comes back.
    fn victims(&self) -> (String, String, String) {
        (
            format!("b{}", self.bootstraps.min(2)),
            format!("n{}", self.nodes / 2 + 1),
            format!("n{}", self.nodes),
        )
    }
}

/// Content seed of the demo's dataset.
const DATASET_SEED: u64 = 0x5eed;

/// Run the demo with the `swarmcast` binary at `exe`. Ok only if every copy verified.
pub async fn run(exe: PathBuf, config: DemoConfig) -> Result<DemoReport> {
    let scenario = config.scenario()?;
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-demo-")
        .tempdir()?;
    let root = tmp.path().to_owned();
    say!(
        "swarmcast demo in {}: {} bootstraps and {} nodes on 127.0.0.1 (each a child process), \
         {} of sample data from n1, faults at {:.0}%",
        root.display(),
        config.bootstraps,
        config.nodes,
        human(config.size),
        config.fault_at * 100.0
    );
    let result = scenario::run_at(Mode::Process, exe, scenario, 1, &root, None, true).await;
    if config.keep {
        let kept = tmp.keep();
        say!("kept {}", kept.display());
    } else {
        say!("cleaned up {}", root.display());
    }
    let report = DemoReport::from(&config, &result?);
    report.print(&config);
    Ok(report)
}

impl DemoReport {
    fn from(config: &DemoConfig, r: &Report) -> Self {
        let (_, v1, _) = config.victims();
        let wall = r.completion_ms.values().max().copied().unwrap_or(0);
        Self {
            wall: Duration::from_millis(wall),
            bytes: r.bytes,
            // Every live node but the origin holds a verified copy.
            receivers: r.completion_ms.keys().filter(|n| *n != "n1").count(),
            origin_upload: r.origin_upload,
            completion: r
                .completion_ms
                .iter()
                .map(|(n, ms)| (n.clone(), Duration::from_millis(*ms)))
                .collect(),
            refetched: r.refetched.get(&v1).copied().unwrap_or(0),
        }
    }

    fn print(&self, config: &DemoConfig) {
        let (_, v1, _) = config.victims();
        say!(
            "verified {} copies: byte-identical, modes included",
            self.receivers
        );
        say!();
        say!("summary");
        say!("  wall time            {:.2} s", self.wall.as_secs_f64());
        say!(
            "  aggregate throughput {}/s ({} receivers x {})",
            human(
                (self.bytes as f64 * self.receivers as f64 / self.wall.as_secs_f64().max(1e-3))
                    as u64
            ),
            self.receivers,
            human(self.bytes)
        );
        say!(
            "  origin upload        {:.2} x the dataset",
            self.origin_upload
        );
        say!(
            "  {v1} resumed after SIGKILL; bytes re-fetched: {}",
            human(self.refetched)
        );
        say!("  completion per node:");
        for (n, t) in &self.completion {
            say!("    {n:<4} {:6.2} s", t.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::scenario::Action;

    #[test]
    fn the_demo_is_a_scenario_with_its_faults_in_order() {
        let s = DemoConfig::default().scenario().unwrap();
        assert_eq!(s.deadline_s, Some(300));
        let faults: Vec<String> = s
            .schedule(1)
            .unwrap()
            .iter()
            .filter_map(|a| match a {
                Action::Kill(n) => Some(format!("kill {}", n.join(","))),
                Action::Restart { names, wipe } => {
                    Some(format!("restart {} {wipe}", names.join(",")))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            faults,
            ["kill b2", "kill n5", "kill n8", "restart n5 false"],
            "one bootstrap and two receivers killed, the first restarted with its data"
        );
        assert!(matches!(
            s.schedule(1).unwrap()[0],
            Action::StartBootstraps(3)
        ));
        let small = DemoConfig {
            nodes: 3,
            ..Default::default()
        };
        assert!(small.scenario().is_err());
    }
}

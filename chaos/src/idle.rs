//! `swarmcast bench idle`: what a fleet of idle daemons costs.
//!
//! Starts `--bootstraps` bootstraps and `--nodes` nodes (real processes, the binary's default
//! timings and log level), waits until every node is registered with its neighbours, lets the
//! fleet settle, and then measures over a window of `--seconds`:
//!
//! * **CPU** of every process, from `utime + stime` in `/proc/<pid>/stat` (all threads, exited
//!   ones included). The kernel scales these two so that their sum is the precise scheduler
//!   runtime; they are printed in clock ticks (10 ms here), so a window of 20 s resolves 0.05%
//!   of a core per process, better as a median over many. These are CPU-time figures: a busy
//!   machine makes them wait, not grow, so they compare across runs on a loaded machine better
//!   than wall-clock figures do.
//! * **Packets**: UDP datagrams sent and received (`Udp: OutDatagrams InDatagrams` of
//!   `/proc/<pid>/net/snmp`). Those counters belong to a network namespace, not to a process. In
//!   `--netns` mode (root) every process has a namespace of its own in the lab, so the counters
//!   are exactly that process's packets. On loopback every process shares the harness's
//!   namespace: only the namespace's total is known, and it includes any other UDP traffic in
//!   that namespace; it is reported as a total and as an average per process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use swarmcast_node::control;

use crate::netns::Lab;
use crate::procs::{LocalCluster, Timings};

/// The binary's default timings (`node join --heartbeat`, `bootstrap --suspect-after`,
/// `--dead-after`, `--anti-entropy`): the idle cost of the product as shipped.
pub const DEFAULT_TIMINGS: Timings = Timings {
    heartbeat: Duration::from_secs(1),
    suspect_after: Duration::from_secs(3),
    dead_after: Duration::from_secs(6),
    anti_entropy: Duration::from_millis(300),
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// Nodes.
    pub nodes: usize,
    /// Bootstraps.
    pub bootstraps: usize,
    /// The measuring window.
    pub window: Duration,
    /// Wait this long after every node joined before the window opens.
    pub settle: Duration,
    /// Give up if the fleet has not joined in this time.
    pub join_timeout: Duration,
    /// Run every process in its own namespace of the lab (root): exact packets per process.
    pub netns: bool,
}

impl IdleConfig {
    /// Usage errors, for exit 2.
    pub fn validate(&self) -> Result<()> {
        if self.nodes < 2 {
            bail!("--nodes must be at least 2");
        }
        if self.bootstraps == 0 {
            bail!("--bootstraps must be at least 1");
        }
        if self.nodes + self.bootstraps > crate::netns::MAX_HOSTS && self.netns {
            bail!(
                "--netns holds at most {} processes in all",
                crate::netns::MAX_HOSTS
            );
        }
        if self.window < Duration::from_secs(1) {
            bail!("--seconds must be at least 1");
        }
        Ok(())
    }
}

/// One sample of a process's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// `utime + stime`, in clock ticks.
    pub cpu_ticks: u64,
    /// UDP datagrams sent by its namespace.
    pub udp_out: u64,
    /// UDP datagrams received by its namespace.
    pub udp_in: u64,
}

/// One process over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcCost {
    /// Its name.
    pub name: String,
    /// CPU over the window, in percent of one core.
    pub cpu_percent: f64,
    /// CPU seconds over the window.
    pub cpu_s: f64,
    /// Datagrams sent per second (`--netns` only).
    pub tx_per_s: Option<f64>,
    /// Datagrams received per second (`--netns` only).
    pub rx_per_s: Option<f64>,
    /// Neighbours at the end of the window (nodes only).
    pub neighbours: Option<usize>,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Nodes.
    pub nodes: usize,
    /// Bootstraps.
    pub bootstraps: usize,
    /// The window, in seconds.
    pub window_s: f64,
    /// Whether each process had its own namespace.
    pub netns: bool,
    /// Every node.
    pub node_costs: Vec<ProcCost>,
    /// Every bootstrap.
    pub bootstrap_costs: Vec<ProcCost>,
    /// Loopback mode: datagrams sent per second in the shared namespace, all processes.
    pub namespace_tx_per_s: Option<f64>,
}

/// Median, min and max.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Spread {
    /// Of `values`; `None` if empty.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        values.sort_by(f64::total_cmp);
        Some(Self {
            median: *values.get(values.len() / 2)?,
            min: *values.first()?,
            max: *values.last()?,
        })
    }
}

impl IdleReport {
    /// CPU per node, in percent of one core.
    pub fn node_cpu(&self) -> Option<Spread> {
        Spread::of(self.node_costs.iter().map(|c| c.cpu_percent).collect())
    }

    /// CPU of every process together, in percent of one core.
    pub fn total_cpu_percent(&self) -> f64 {
        self.node_costs
            .iter()
            .chain(&self.bootstrap_costs)
            .map(|c| c.cpu_percent)
            .sum()
    }

    /// Datagrams sent per node per second (`--netns`), or the namespace's average per process.
    pub fn node_tx(&self) -> Option<Spread> {
        Spread::of(self.node_costs.iter().filter_map(|c| c.tx_per_s).collect())
    }

    /// Datagrams sent per second per neighbour, per node (`--netns`).
    pub fn node_tx_per_neighbour(&self) -> Option<Spread> {
        Spread::of(
            self.node_costs
                .iter()
                .filter_map(|c| Some(c.tx_per_s? / c.neighbours.filter(|n| *n > 0)? as f64))
                .collect(),
        )
    }

    /// As JSON, with the summary figures first.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "nodes": self.nodes,
            "bootstraps": self.bootstraps,
            "window_s": self.window_s,
            "netns": self.netns,
            "node_cpu_percent": self.node_cpu(),
            "total_cpu_percent_of_one_core": self.total_cpu_percent(),
            "node_tx_per_s": self.node_tx(),
            "node_tx_per_s_per_neighbour": self.node_tx_per_neighbour(),
            "namespace_tx_per_s": self.namespace_tx_per_s,
            "bootstrap_costs": self.bootstrap_costs,
            "node_costs": self.node_costs,
        })
    }

    /// For people.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "idle: {} nodes, {} bootstraps, window {:.1} s ({}); CPU time from /proc/<pid>/stat\n",
            self.nodes,
            self.bootstraps,
            self.window_s,
            if self.netns {
                "one namespace per process"
            } else {
                "loopback"
            }
        );
        if let Some(s) = self.node_cpu() {
            out += &format!(
                "  CPU per node:      median {:.3}% of a core (min {:.3}%, max {:.3}%)\n",
                s.median, s.min, s.max
            );
        }
        for b in &self.bootstrap_costs {
            out += &format!("  CPU of {:<10} {:.3}% of a core\n", b.name, b.cpu_percent);
        }
        out += &format!(
            "  CPU of all {} processes: {:.2}% of one core\n",
            self.nodes + self.bootstraps,
            self.total_cpu_percent()
        );
        if let Some(s) = self.node_tx() {
            out += &format!(
                "  packets sent per node: median {:.1}/s (min {:.1}, max {:.1})\n",
                s.median, s.min, s.max
            );
        }
        if let Some(s) = self.node_tx_per_neighbour() {
            out += &format!(
                "  packets sent per node per neighbour: median {:.2}/s (min {:.2}, max {:.2})\n",
                s.median, s.min, s.max
            );
        }
        if let Some(t) = self.namespace_tx_per_s {
            out += &format!(
                "  packets sent in the shared namespace: {t:.0}/s ({:.1}/s per process; run with --netns for exact per-node figures)\n",
                t / (self.nodes + self.bootstraps) as f64
            );
        }
        out
    }
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `(InDatagrams, OutDatagrams)` of the `Udp:` lines of a `/proc/.../net/snmp`.
pub fn parse_snmp_udp(snmp: &str) -> Option<(u64, u64)> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some((field("InDatagrams")?, field("OutDatagrams")?))
}

fn sample(pid: u32) -> Result<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did it exit?)"))?;
    let cpu_ticks = parse_stat_cpu(&stat).context("parsing /proc/<pid>/stat")?;
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp"))
        .with_context(|| format!("reading /proc/{pid}/net/snmp"))?;
    let (udp_in, udp_out) = parse_snmp_udp(&snmp).context("parsing /proc/<pid>/net/snmp")?;
    Ok(Sample {
        cpu_ticks,
        udp_out,
        udp_in,
    })
}

fn clock_ticks_per_s() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Start the fleet, wait, measure, stop. Everything it starts is killed by PID on return.
pub async fn run(exe: std::path::PathBuf, config: &IdleConfig) -> Result<IdleReport> {
    config.validate()?;
    let root = tempfile::tempdir().context("creating a scratch directory")?;
    let mut cluster = LocalCluster::new(exe, root.path(), DEFAULT_TIMINGS)?.with_default_logs();
    if config.netns {
        cluster = cluster.with_lab(Lab::new(1)?);
    }
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(config.bootstraps)?;
    let names: Vec<String> = (1..=config.nodes).map(|i| format!("n{i}")).collect();
    for n in &names {
        cluster.start_node(n, &seeds, &[])?;
    }
    let want = (config.nodes - 1).min(8);
    let dirs = cluster
        .wait_joined(&names, want, config.join_timeout)
        .await?;
    tokio::time::sleep(config.settle).await;

    let pids: Vec<(String, bool, u32)> = cluster
        .procs
        .iter()
        .map(|p| {
            let pid = p
                .pid()
                .with_context(|| format!("{} is not running", p.name))?;
            Ok((p.name.clone(), p.role == swarmcast_proto::Role::Node, pid))
        })
        .collect::<Result<_>>()?;
    let ns_before = std::fs::read_to_string("/proc/self/net/snmp")
        .ok()
        .and_then(|s| parse_snmp_udp(&s));
    let before: Vec<Sample> = pids
        .iter()
        .map(|(_, _, pid)| sample(*pid))
        .collect::<Result<_>>()?;
    let started = Instant::now();
    tokio::time::sleep(config.window).await;
    let after: Vec<Sample> = pids
        .iter()
        .map(|(_, _, pid)| sample(*pid))
        .collect::<Result<_>>()?;
    let window = started.elapsed().as_secs_f64();
    let ns_after = std::fs::read_to_string("/proc/self/net/snmp")
        .ok()
        .and_then(|s| parse_snmp_udp(&s));

    let mut neighbours = Vec::new();
    for d in &dirs {
        neighbours.push(control::status(d).await.ok().map(|s| s.neighbours.len()));
    }
    let tick = clock_ticks_per_s();
    let mut report = IdleReport {
        nodes: config.nodes,
        bootstraps: config.bootstraps,
        window_s: window,
        netns: config.netns,
        node_costs: Vec::new(),
        bootstrap_costs: Vec::new(),
        namespace_tx_per_s: None,
    };
    let mut node_i = 0;
    for (((name, is_node, _), b), a) in pids.iter().zip(&before).zip(&after) {
        let cpu_s = a.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / tick;
        let per_s = |x: u64, y: u64| config.netns.then(|| y.saturating_sub(x) as f64 / window);
        let cost = ProcCost {
            name: name.clone(),
            cpu_percent: cpu_s / window * 100.0,
            cpu_s,
            tx_per_s: per_s(b.udp_out, a.udp_out),
            rx_per_s: per_s(b.udp_in, a.udp_in),
            neighbours: None,
        };
        if *is_node {
            let n = neighbours.get(node_i).copied().flatten();
            node_i += 1;
            report.node_costs.push(ProcCost {
                neighbours: n,
                ..cost
            });
        } else {
            report.bootstrap_costs.push(cost);
        }
    }
    if !config.netns {
        if let (Some((_, o0)), Some((_, o1))) = (ns_before, ns_after) {
            report.namespace_tx_per_s = Some(o1.saturating_sub(o0) as f64 / window);
        }
    }
    drop(cluster);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_even_with_odd_names() {
        let line = "4242 (swarm cast) (x)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 123 45 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu(line), Some(168));
        assert_eq!(parse_stat_cpu("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn snmp_udp_takes_fields_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
                    Udp: 31 0 0 32 0\n\
                    UdpLite: InDatagrams NoPorts InErrors OutDatagrams\nUdpLite: 7 0 0 9\n";
        assert_eq!(parse_snmp_udp(snmp), Some((31, 32)));
        assert_eq!(parse_snmp_udp("Udp: InDatagrams\n"), None);
    }

    #[test]
    fn summary_figures() {
        let cost = |name: &str, cpu: f64, tx: Option<f64>, n: Option<usize>| ProcCost {
            name: name.into(),
            cpu_percent: cpu,
            cpu_s: cpu / 10.0,
            tx_per_s: tx,
            rx_per_s: tx,
            neighbours: n,
        };
        let r = IdleReport {
            nodes: 3,
            bootstraps: 1,
            window_s: 10.0,
            netns: true,
            node_costs: vec![
                cost("n1", 0.3, Some(16.0), Some(8)),
                cost("n2", 0.1, Some(8.0), Some(4)),
                cost("n3", 0.2, Some(12.0), Some(0)),
            ],
            bootstrap_costs: vec![cost("b1", 1.0, Some(100.0), None)],
            namespace_tx_per_s: None,
        };
        assert_eq!(
            r.node_cpu(),
            Some(Spread {
                median: 0.2,
                min: 0.1,
                max: 0.3
            })
        );
        assert!((r.total_cpu_percent() - 1.6).abs() < 1e-9);
        // A node without neighbours has no per-neighbour figure.
        assert_eq!(
            r.node_tx_per_neighbour(),
            Some(Spread {
                median: 2.0,
                min: 2.0,
                max: 2.0
            })
        );
        assert!(r.to_text().contains("median 0.200%"));
    }
}

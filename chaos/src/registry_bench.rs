//! `swarmcast bench registry`: the bootstraps under the heartbeats of a large fleet.
//!
//! Starts `--bootstraps` real bootstrap processes (the binary's default timings), then plays
//! `--nodes` nodes from this one process: each has a certificate of its own, signed by the
//! cluster CA, and a QUIC connection of its own to one bootstrap (node `i` to bootstrap
//! `i mod B`, as a fleet spreads over its seeds), over a few shared UDP sockets. Each registers
//! and then heartbeats at the default period, asking for the registry's changes since its
//! cursor, as `node join` does. Nothing else a node does (neighbours, broadcasts) is played:
//! this measures the control plane alone.
//!
//! After every node has registered and the fleet has settled, a window of `--seconds` measures:
//!
//! * each bootstrap's CPU (`utime + stime` of `/proc/<pid>/stat`) and RSS;
//! * heartbeat latency (request sent to answer read, on the load generator), p50 and p99;
//! * answer bytes per heartbeat (the framed answer, length prefix included);
//! * anti-entropy bytes per second, from each bootstrap's `swarmcast_anti_entropy_bytes_total`;
//! * propagation: `--probes` fresh nodes register, one per second, each through one
//!   bootstrap, while a watcher at every bootstrap polls for changes every 10 ms; the time
//!   from sending the registration to its being visible at every bootstrap.
//!
//! The load generator's own CPU is reported too: on a small machine it competes with the
//! bootstraps, and a saturated machine is said to be so.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use swarmcast_bootstrap::BootstrapClient;
use swarmcast_certs::{Ca, Validity};
use swarmcast_net::wire;
use swarmcast_proto::{
    Heartbeat, Limits, Message, NodeId, RegistryCursor, RegistryView, Role, Version,
};
use tokio::sync::Semaphore;

use crate::idle::{DEFAULT_TIMINGS, parse_stat_cpu};
use crate::procs::{LocalCluster, figures};

/// What to measure.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Simulated nodes.
    pub nodes: usize,
    /// Bootstrap processes.
    pub bootstraps: usize,
    /// The measuring window.
    pub window: Duration,
    /// Wait this long after every node registered before the window opens.
    pub settle: Duration,
    /// Each node's heartbeat period (the binary's default is 1 s).
    pub heartbeat: Duration,
    /// UDP sockets the nodes' connections share.
    pub sockets: usize,
    /// Registrations timed for propagation during the window.
    pub probes: usize,
    /// Registrations in flight at once while the fleet joins.
    pub join_concurrency: usize,
}

impl RegistryConfig {
    /// Usage errors, for exit 2.
    pub fn validate(&self) -> Result<()> {
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        if self.bootstraps == 0 {
            bail!("--bootstraps must be at least 1");
        }
        if self.window < Duration::from_secs(1) {
            bail!("--seconds must be at least 1");
        }
        if self.heartbeat.is_zero() {
            bail!("--heartbeat must be positive");
        }
        if self.sockets == 0 || self.join_concurrency == 0 {
            bail!("--sockets and the join concurrency must be at least 1");
        }
        Ok(())
    }
}

/// p50, p99 and the maximum of a sample.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Values in the sample.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Of `values` (nearest rank); `None` if empty.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            values[i - 1]
        };
        Some(Self {
            count: values.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: values[values.len() - 1],
            mean: values.iter().sum::<f64>() / values.len() as f64,
        })
    }
}

/// One bootstrap over the window.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapCost {
    /// Its name.
    pub name: String,
    /// CPU seconds per second over the window (1.0 is one core).
    pub cpu_per_s: f64,
    /// RSS at the end of the window, in MiB.
    pub rss_mib: f64,
    /// Anti-entropy bytes it sent and received per second, from its metrics.
    pub anti_entropy_bytes_per_s: Option<f64>,
    /// Nodes it had registered at the end of the window (its metrics' alive entries).
    pub alive_entries: Option<u64>,
}

/// What was measured.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryReport {
    /// Simulated nodes.
    pub nodes: usize,
    /// Bootstraps.
    pub bootstraps: usize,
    /// Heartbeat period, in seconds.
    pub heartbeat_s: f64,
    /// The window, in seconds.
    pub window_s: f64,
    /// Issuing every node's certificate, in seconds.
    pub issue_s: f64,
    /// From the first registration sent to the last one answered, in seconds.
    pub join_s: f64,
    /// Every bootstrap.
    pub bootstrap_costs: Vec<BootstrapCost>,
    /// The load generator's CPU seconds per second over the window.
    pub loadgen_cpu_per_s: f64,
    /// Heartbeats answered within the window.
    pub heartbeats: u64,
    /// Heartbeats that failed within the window.
    pub heartbeat_errors: u64,
    /// Heartbeats per second the nodes should have sent (nodes / period).
    pub heartbeats_expected_per_s: f64,
    /// Heartbeat latency, in milliseconds.
    pub latency_ms: Option<Percentiles>,
    /// Answer bytes per heartbeat.
    pub answer_bytes: Option<Percentiles>,
    /// Time until a registration was visible at every bootstrap, in milliseconds.
    pub propagation_ms: Option<Percentiles>,
    /// Probes not visible everywhere within 10 s.
    pub propagation_misses: usize,
}

impl RegistryReport {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// For people.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "registry: {} nodes from one process, {} bootstraps, heartbeat {:.1} s, window {:.1} s\n",
            self.nodes, self.bootstraps, self.heartbeat_s, self.window_s
        );
        out += &format!(
            "  certificates issued in {:.1} s; all registered in {:.1} s\n",
            self.issue_s, self.join_s
        );
        for b in &self.bootstrap_costs {
            out += &format!(
                "  {:<4} CPU {:.3} s/s  RSS {:.1} MiB  anti-entropy {}  alive entries {}\n",
                b.name,
                b.cpu_per_s,
                b.rss_mib,
                b.anti_entropy_bytes_per_s
                    .map_or("?".into(), |x| format!("{:.0} B/s", x)),
                b.alive_entries.map_or("?".into(), |x| x.to_string()),
            );
        }
        out += &format!("  load generator CPU {:.3} s/s\n", self.loadgen_cpu_per_s);
        out += &format!(
            "  heartbeats answered {:.0}/s (expected {:.0}/s), {} failed\n",
            self.heartbeats as f64 / self.window_s,
            self.heartbeats_expected_per_s,
            self.heartbeat_errors
        );
        if let Some(l) = self.latency_ms {
            out += &format!(
                "  heartbeat latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
                l.p50, l.p99, l.max
            );
        }
        if let Some(a) = self.answer_bytes {
            out += &format!(
                "  answer bytes per heartbeat: mean {:.0}, p50 {:.0}, p99 {:.0}, max {:.0}\n",
                a.mean, a.p50, a.p99, a.max
            );
        }
        match self.propagation_ms {
            Some(p) => {
                out += &format!(
                    "  registration visible at every bootstrap: p50 {:.0} ms, max {:.0} ms ({} probes, {} missed)\n",
                    p.p50, p.max, p.count, self.propagation_misses
                )
            }
            None => {
                out += &format!(
                    "  propagation: no probe seen ({} missed)\n",
                    self.propagation_misses
                )
            }
        }
        out
    }
}

/// A simulated node: its identity's NodeId and a client configuration presenting it.
struct Sim {
    id: NodeId,
    config: quinn::ClientConfig,
}

fn issue(ca: &Ca, name: &str) -> Result<Sim> {
    let issued = swarmcast_certs::issue_with(ca, name, Role::Node, Validity::leaf())?;
    let identity = issued.identity()?;
    let config = identity.client_config(swarmcast_net::transport_config())?;
    Ok(Sim {
        id: identity.node_id(),
        config,
    })
}

/// What the heartbeating nodes count.
#[derive(Default)]
struct Counters {
    recording: AtomicBool,
    answered: AtomicU64,
    failed: AtomicU64,
    samples: std::sync::Mutex<Vec<(u32, u32)>>,
}

async fn connect_register(
    endpoint: &quinn::Endpoint,
    sim: &Sim,
    bootstrap: SocketAddr,
) -> Result<BootstrapClient> {
    let client =
        BootstrapClient::connect(endpoint, &sim.config, bootstrap, Duration::from_secs(30))
            .await
            .with_context(|| format!("connecting to {bootstrap}"))?;
    // The address is never dialled: nothing here plays the data plane.
    client
        .register(sim.id, 1, vec![SocketAddr::from(([127, 0, 0, 1], 9))])
        .await
        .with_context(|| format!("registering at {bootstrap}"))?;
    Ok(client)
}

fn heartbeat(id: NodeId, n: u64, cursor: RegistryCursor) -> Message {
    Message::Heartbeat(Heartbeat {
        id,
        version: Version::new(1, n),
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
        progress: Vec::new(),
        progress_span: None,
        progress_removed: Vec::new(),
        changes_since: Some(cursor),
        pull: false,
    })
}

/// One heartbeat; the registry view answered and the answer's framed bytes.
async fn beat(
    client: &BootstrapClient,
    msg: &Message,
    limits: &Limits,
) -> Result<(RegistryView, usize)> {
    let (answer, bytes) =
        wire::request_sized(client.connection(), msg, limits, Duration::from_secs(10)).await?;
    match answer {
        Message::Registry(v) => Ok((v, bytes.received)),
        _ => bail!("expected a Registry answer"),
    }
}

async fn heartbeat_loop(
    client: BootstrapClient,
    id: NodeId,
    period: Duration,
    offset: Duration,
    counters: Arc<Counters>,
) {
    let limits = Limits::default();
    let mut cursor = RegistryCursor::default();
    let mut n = 0u64;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        n += 1;
        let sent = Instant::now();
        let result = beat(&client, &heartbeat(id, n, cursor), &limits).await;
        let took = sent.elapsed();
        let recording = counters.recording.load(Ordering::Relaxed);
        match result {
            Ok((view, bytes)) => {
                if let Some(c) = view.cursor {
                    cursor = c;
                }
                if recording {
                    counters.answered.fetch_add(1, Ordering::Relaxed);
                    let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
                    let b = u32::try_from(bytes).unwrap_or(u32::MAX);
                    if let Ok(mut s) = counters.samples.lock() {
                        s.push((us, b));
                    }
                }
            }
            Err(e) => {
                if recording {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %format!("{e:#}"), "heartbeat failed");
                if client.is_closed() {
                    return;
                }
            }
        }
    }
}

/// Polls one bootstrap for registry changes every 10 ms; sends each NodeId it sees appear,
/// with the time it was seen.
async fn watch(
    client: BootstrapClient,
    id: NodeId,
    watcher: usize,
    seen: tokio::sync::mpsc::UnboundedSender<(usize, NodeId, Instant)>,
) {
    let limits = Limits::default();
    let mut cursor = RegistryCursor::default();
    let mut n = 0u64;
    loop {
        n += 1;
        if let Ok((view, _)) = beat(&client, &heartbeat(id, n, cursor), &limits).await {
            let now = Instant::now();
            // The first answer is the whole registry: only later ones are news.
            if view.partial {
                for e in &view.nodes {
                    if seen.send((watcher, e.record.id, now)).is_err() {
                        return;
                    }
                }
            }
            if let Some(c) = view.cursor {
                cursor = c;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did it exit?)"))?;
    parse_stat_cpu(&stat).context("parsing /proc/<pid>/stat")
}

/// The value of the first sample of `name` whose labels contain `label` (empty: any), from
/// a Prometheus text exposition; the sum over every sample of `name` when `label` is `None`.
pub fn metric_sum(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(l) = label {
            if !rest.contains(l) {
                continue;
            }
        }
        let value: f64 = rest.rsplit(' ').next()?.trim().parse().ok()?;
        *total.get_or_insert(0.0) += value;
    }
    total
}

/// `GET /metrics` of a bootstrap, over loopback TCP.
fn scrape(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn free_tcp_addr() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("picking a free TCP port")?;
    Ok(l.local_addr()?)
}

/// Start the bootstraps, play the fleet, measure, stop. Everything it starts is killed by PID
/// on return.
pub async fn run(exe: std::path::PathBuf, config: &RegistryConfig) -> Result<RegistryReport> {
    config.validate()?;
    let root = tempfile::tempdir().context("creating a scratch directory")?;
    // The bootstraps' logs, for a run that goes wrong (the scratch directory goes with it).
    let logs = root.path().to_owned();
    let result = play(exe, config, root.path()).await;
    if let Err(e) = &result {
        if let Ok(dir) = std::env::var("SWARMCAST_BENCH_KEEP") {
            let _ = copy_logs(&logs, std::path::Path::new(&dir));
            tracing::warn!(error = %format!("{e:#}"), dir, "bench failed; bootstrap logs kept");
        }
    }
    result
}

/// Every `*.log` directly in `from`, copied into `to`.
fn copy_logs(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "log") {
            if let Some(name) = p.file_name() {
                std::fs::copy(&p, to.join(name))?;
            }
        }
    }
    Ok(())
}

async fn play(
    exe: std::path::PathBuf,
    config: &RegistryConfig,
    root: &std::path::Path,
) -> Result<RegistryReport> {
    let mut cluster = LocalCluster::new(exe, root, DEFAULT_TIMINGS)?
        .with_binary_timings()
        .with_default_logs();
    let metrics: Vec<SocketAddr> = (0..config.bootstraps)
        .map(|_| free_tcp_addr())
        .collect::<Result<_>>()?;
    let bootstraps = cluster.start_bootstraps_with(config.bootstraps, |i| {
        vec!["--metrics".into(), metrics[i].to_string()]
    })?;
    let ca = Ca::load(cluster.certs_dir()).context("loading the cluster CA")?;

    let issued = Instant::now();
    let total = config.nodes + config.probes + config.bootstraps;
    let ca = Arc::new(ca);
    let mut sims = Vec::with_capacity(total);
    // Key generation and signing dominate: spread them over the cores.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut handles = Vec::new();
    for w in 0..workers {
        let ca = Arc::clone(&ca);
        handles.push(tokio::task::spawn_blocking(move || {
            (w..total)
                .step_by(workers)
                .map(|i| Ok((i, issue(&ca, &format!("r{i}"))?)))
                .collect::<Result<Vec<_>>>()
        }));
    }
    for h in handles {
        sims.extend(h.await.context("issuing certificates")??);
    }
    sims.sort_by_key(|(i, _)| *i);
    let mut sims: Vec<Sim> = sims.into_iter().map(|(_, s)| s).collect();
    let issue_s = issued.elapsed().as_secs_f64();
    let watchers: Vec<Sim> = sims.split_off(config.nodes + config.probes);
    let probes: Vec<Sim> = sims.split_off(config.nodes);

    let endpoints: Vec<quinn::Endpoint> = (0..config.sockets)
        .map(|_| {
            // The product's socket buffers: joining nodes are answered the whole registry,
            // in bursts that overflow the kernel's default buffer.
            swarmcast_net::endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), None)
                .context("opening a UDP socket")
        })
        .collect::<Result<_>>()?;
    for b in &bootstraps {
        wait_listening(&endpoints[0], &watchers[0], *b).await?;
    }

    // The fleet joins, `join_concurrency` registrations at a time; each node heartbeats from
    // the moment it is registered.
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(config.join_concurrency));
    let joined = Instant::now();
    let mut joins = tokio::task::JoinSet::new();
    for (i, sim) in sims.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let bootstrap = bootstraps[i % bootstraps.len()];
        let gate = Arc::clone(&gate);
        let counters = Arc::clone(&counters);
        let period = config.heartbeat;
        // Heartbeats spread evenly over the period, as a fleet's drift spreads them.
        let offset = period.mul_f64((i as f64 * 0.618_034).fract());
        joins.spawn(async move {
            let client = {
                let _permit = gate.acquire().await?;
                connect_register(&endpoint, &sim, bootstrap).await?
            };
            tokio::spawn(heartbeat_loop(client, sim.id, period, offset, counters));
            anyhow::Ok(())
        });
    }
    while let Some(r) = joins.join_next().await {
        r.context("a joining node panicked")??;
    }
    let join_s = joined.elapsed().as_secs_f64();
    tokio::time::sleep(config.settle).await;

    // Watchers, one per bootstrap.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    for (k, (w, b)) in watchers.iter().zip(&bootstraps).enumerate() {
        let client = connect_register(&endpoints[0], w, *b).await?;
        tokio::spawn(watch(client, w.id, k, seen_tx.clone()));
    }
    drop(seen_tx);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pids: Vec<(String, u32)> = cluster
        .procs
        .iter()
        .map(|p| {
            let pid = p
                .pid()
                .with_context(|| format!("{} is not running", p.name))?;
            Ok((p.name.clone(), pid))
        })
        .collect::<Result<_>>()?;
    let me = std::process::id();
    let ae = |text: Option<String>| {
        text.and_then(|t| metric_sum(&t, "swarmcast_anti_entropy_bytes_total", None))
    };
    let ae_before: Vec<Option<f64>> = metrics.iter().map(|m| ae(scrape(*m))).collect();
    let cpu_before: Vec<u64> = pids
        .iter()
        .map(|(_, pid)| cpu_ticks(*pid))
        .collect::<Result<_>>()?;
    let me_before = cpu_ticks(me)?;
    counters.recording.store(true, Ordering::Relaxed);
    let started = Instant::now();

    // Probes: one registration per second, each at one bootstrap, timed until every
    // watcher has seen it.
    let mut propagation = Vec::new();
    let mut misses = 0;
    let spacing = config.window.div_f64((config.probes.max(1) + 1) as f64);
    let mut kept = Vec::new();
    for (k, p) in probes.iter().enumerate() {
        tokio::time::sleep(spacing).await;
        while seen_rx.try_recv().is_ok() {}
        let sent = Instant::now();
        let client = connect_register(&endpoints[0], p, bootstraps[k % bootstraps.len()]).await;
        let mut at = vec![false; bootstraps.len()];
        let deadline = sent + Duration::from_secs(10);
        let mut seen_everywhere = None;
        if client.is_ok() {
            while let Ok(Some((watcher, id, when))) =
                tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await
            {
                if id != p.id {
                    continue;
                }
                at[watcher] = true;
                if at.iter().all(|s| *s) {
                    seen_everywhere = Some(when.duration_since(sent));
                    break;
                }
            }
        }
        match seen_everywhere {
            Some(d) => propagation.push(d.as_secs_f64() * 1e3),
            None => misses += 1,
        }
        if let Ok(c) = client {
            kept.push(c);
        }
    }
    let remaining = config.window.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;

    counters.recording.store(false, Ordering::Relaxed);
    let window = started.elapsed().as_secs_f64();
    let cpu_after: Vec<u64> = pids
        .iter()
        .map(|(_, pid)| cpu_ticks(*pid))
        .collect::<Result<_>>()?;
    let me_after = cpu_ticks(me)?;
    let scraped: Vec<Option<String>> = metrics.iter().map(|m| scrape(*m)).collect();
    let tick = clock_ticks_per_s();
    let bootstrap_costs = pids
        .iter()
        .enumerate()
        .map(|(i, (name, pid))| BootstrapCost {
            name: name.clone(),
            cpu_per_s: cpu_after[i].saturating_sub(cpu_before[i]) as f64 / tick / window,
            rss_mib: figures(*pid).map_or(0.0, |f| f.rss_kib as f64 / 1024.0),
            anti_entropy_bytes_per_s: match (ae_before[i], ae(scraped[i].clone())) {
                (Some(a), Some(b)) => Some((b - a) / window),
                _ => None,
            },
            alive_entries: scraped[i].as_deref().and_then(|t| {
                metric_sum(t, "swarmcast_registry_entries", Some("alive")).map(|x| x as u64)
            }),
        })
        .collect();
    let samples = counters
        .samples
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let report = RegistryReport {
        nodes: config.nodes,
        bootstraps: config.bootstraps,
        heartbeat_s: config.heartbeat.as_secs_f64(),
        window_s: window,
        issue_s,
        join_s,
        bootstrap_costs,
        loadgen_cpu_per_s: me_after.saturating_sub(me_before) as f64 / tick / window,
        heartbeats: counters.answered.load(Ordering::Relaxed),
        heartbeat_errors: counters.failed.load(Ordering::Relaxed),
        heartbeats_expected_per_s: config.nodes as f64 / config.heartbeat.as_secs_f64(),
        latency_ms: Percentiles::of(samples.iter().map(|(us, _)| *us as f64 / 1e3).collect()),
        answer_bytes: Percentiles::of(samples.iter().map(|(_, b)| *b as f64).collect()),
        propagation_ms: Percentiles::of(propagation),
        propagation_misses: misses,
    };
    for e in &endpoints {
        e.close(0u32.into(), b"done");
    }
    drop(kept);
    drop(cluster);
    Ok(report)
}

/// Wait until a bootstrap answers a connection (it has just been started).
async fn wait_listening(endpoint: &quinn::Endpoint, sim: &Sim, addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match BootstrapClient::connect(endpoint, &sim.config, addr, Duration::from_secs(2)).await {
            Ok(c) => {
                c.close();
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("bootstrap {addr} never answered"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn clock_ticks_per_s() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50.0, 99.0, 100.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        let one = Percentiles::of(vec![7.0]).unwrap();
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert!(Percentiles::of(Vec::new()).is_none());
    }

    #[test]
    fn metric_sum_reads_labelled_counters() {
        let text = "# HELP swarmcast_anti_entropy_bytes Bytes.\n\
                    # TYPE swarmcast_anti_entropy_bytes counter\n\
                    swarmcast_anti_entropy_bytes_total{direction=\"sent\"} 1200\n\
                    swarmcast_anti_entropy_bytes_total{direction=\"received\"} 800\n\
                    swarmcast_registry_entries{status=\"alive\"} 42\n\
                    swarmcast_registry_entries{status=\"dead\"} 3\n\
                    swarmcast_anti_entropy_bytes_totalx 5\n";
        assert_eq!(
            metric_sum(text, "swarmcast_anti_entropy_bytes_total", None),
            Some(2000.0)
        );
        assert_eq!(
            metric_sum(text, "swarmcast_registry_entries", Some("alive")),
            Some(42.0)
        );
        assert_eq!(metric_sum(text, "swarmcast_missing", None), None);
    }

    #[test]
    fn zero_nodes_is_a_usage_error() {
        let config = RegistryConfig {
            nodes: 0,
            bootstraps: 3,
            window: Duration::from_secs(10),
            settle: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            sockets: 4,
            probes: 5,
            join_concurrency: 64,
        };
        assert!(config.validate().is_err());
        assert!(RegistryConfig { nodes: 1, ..config }.validate().is_ok());
    }
}

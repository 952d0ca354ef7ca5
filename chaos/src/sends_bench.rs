//! `swarmcast bench sends`: many small sends. One bootstrap (or more), one origin and N
//! receivers on 127.0.0.1 with the binary's own defaults; `count` tiny broadcasts of distinct
//! names are published one after another through the origin's control socket (what
//! `node send` does, without starting a process per send). Reports:
//!
//! * the time of one send (the control socket's answer: manifest built, saved, published), over
//!   the first and the last 100 sends: whether it grows with the broadcasts kept;
//! * when every receiver holds every broadcast;
//! * every process's RSS afterwards (`VmRSS` of `/proc/<pid>/status`);
//! * every process's CPU over an idle window before the sends (the fresh fleet) and after them
//!   (`utime + stime` of `/proc/<pid>/stat`), and the nodes' last heartbeat (progress items and
//!   bytes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use swarmcast_node::control;
use swarmcast_node::listing::BroadcastPhase;

use crate::bench::Spread;
use crate::idle::{DEFAULT_TIMINGS, parse_stat_cpu};
use crate::procs::LocalCluster;

/// What to run.
#[derive(Debug, Clone)]
pub struct SendsConfig {
    /// Broadcasts to send.
    pub count: usize,
    /// Receivers (the origin is extra).
    pub receivers: usize,
    /// Bootstraps.
    pub bootstraps: usize,
    /// The idle windows, before and after the sends.
    pub idle: Duration,
    /// Give up waiting for the receivers after this long.
    pub timeout: Duration,
    /// Send each broadcast as a user does, `node send DIR --wait` (a process per send), and
    /// time it from spawn to exit: the send completes only once every receiver holds it.
    pub wait: bool,
    /// Bytes of each broadcast's one file (at least the few bytes of its text).
    pub file_bytes: usize,
}

/// One process, measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProcFigures {
    /// Its name.
    pub name: String,
    /// CPU over the idle window before the sends, percent of one core.
    pub idle_cpu_fresh_percent: f64,
    /// CPU over the idle window after the sends, percent of one core.
    pub idle_cpu_after_percent: f64,
    /// Resident memory after the sends, MiB.
    pub rss_mib: f64,
    /// Nodes: progress items of the last heartbeat after the sends.
    pub heartbeat_progress_items: Option<usize>,
    /// Nodes: bytes of the last heartbeat after the sends.
    pub heartbeat_bytes: Option<usize>,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct SendsRun {
    /// Broadcasts sent.
    pub count: usize,
    /// One send, over the first 100, ms.
    pub first_send_ms: Spread,
    /// One send, over the last 100, ms.
    pub last_send_ms: Spread,
    /// From the first send to the last answer, s.
    pub sends_s: f64,
    /// From the first send until every receiver held every broadcast, s.
    pub complete_s: f64,
    /// With `wait`: every `node send --wait`, from spawn to exit, ms.
    pub send_wait_ms: Option<Spread>,
    /// Every process.
    pub procs: Vec<ProcFigures>,
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did it exit?)"))?;
    parse_stat_cpu(&stat).context("parsing /proc/<pid>/stat")
}

fn rss_mib(pid: u32) -> Result<f64> {
    let f = crate::procs::figures(pid).context("no VmRSS")?;
    Ok(f.rss_kib as f64 / 1024.0)
}

fn ticks_per_s() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// CPU of each pid over `window`, percent of one core.
async fn idle_cpu(pids: &[u32], window: Duration) -> Result<Vec<f64>> {
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let after: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect::<Result<_>>()?;
    let secs = t0.elapsed().as_secs_f64();
    let tick = ticks_per_s();
    Ok(before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.saturating_sub(*b)) as f64 / tick / secs * 100.0)
        .collect())
}

fn spread_ms(d: &[Duration]) -> Spread {
    Spread::of(d.iter().map(|d| d.as_secs_f64() * 1000.0))
}

/// One run on a fresh cluster; everything it starts is killed by PID on return.
pub async fn run(exe: PathBuf, config: &SendsConfig) -> Result<SendsRun> {
    if config.count == 0 || config.receivers == 0 || config.bootstraps == 0 {
        bail!("count, receivers and bootstraps must be at least 1");
    }
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-bench-sends-")
        .tempdir()?;
    let root = tmp.path();
    let mut cluster = LocalCluster::new(exe.clone(), root, DEFAULT_TIMINGS)?.with_binary_timings();
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(config.bootstraps)?;
    let mut names = vec!["origin".to_owned()];
    names.extend((1..=config.receivers).map(|i| format!("r{i}")));
    for n in &names {
        cluster.start_node(n, &seeds, &[])?;
    }
    let dirs = cluster
        .wait_joined(&names, config.receivers.min(8), Duration::from_secs(60))
        .await?;
    let procs: Vec<(String, u32)> = cluster
        .procs
        .iter()
        .map(|p| Ok((p.name.clone(), p.pid().context("a process is not running")?)))
        .collect::<Result<_>>()?;
    let pids: Vec<u32> = procs.iter().map(|(_, p)| *p).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = idle_cpu(&pids, config.idle).await?;

    // Every source directory first, so that the sends measure the daemon only.
    let src = root.join("src");
    let mut sources = Vec::with_capacity(config.count);
    for i in 0..config.count {
        let dir = src.join(format!("tiny-{i:05}"));
        std::fs::create_dir_all(&dir)?;
        let mut body = format!("payload {i}\n").into_bytes();
        body.resize(body.len().max(config.file_bytes), b'.');
        std::fs::write(dir.join("f"), body)?;
        sources.push(dir);
    }
    let started = Instant::now();
    let mut times = Vec::with_capacity(config.count);
    let mut ids = std::collections::BTreeSet::new();
    for dir in sources {
        let t = Instant::now();
        let id = if config.wait {
            send_wait(&exe, &dirs[0], &dir, config.timeout).await?
        } else {
            let info = control::send(&dirs[0], dir, 256 * 1024)
                .await
                .context("send")?;
            info.id
        };
        times.push(t.elapsed());
        ids.insert(id);
    }
    let sends_s = started.elapsed().as_secs_f64();
    let deadline = started + config.timeout;
    for (name, dd) in names.iter().zip(&dirs).skip(1) {
        loop {
            let ls = control::list(dd).await?;
            let done = ls
                .iter()
                .filter(|b| b.state == BroadcastPhase::Complete && ids.contains(&b.id))
                .count();
            if done == ids.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} holds {done} of {} after {:?}",
                    ids.len(),
                    config.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let complete_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = idle_cpu(&pids, config.idle).await?;
    let mut out = Vec::new();
    for (i, (name, pid)) in procs.iter().enumerate() {
        let node = names.iter().position(|n| n == name);
        let hb = match node {
            Some(k) => control::status(&dirs[k])
                .await
                .ok()
                .and_then(|s| s.last_heartbeat),
            None => None,
        };
        out.push(ProcFigures {
            name: name.clone(),
            idle_cpu_fresh_percent: fresh[i],
            idle_cpu_after_percent: after[i],
            rss_mib: rss_mib(*pid)?,
            heartbeat_progress_items: hb.map(|h| h.progress_items),
            heartbeat_bytes: hb.map(|h| h.bytes),
        });
    }
    let n = times.len().min(100);
    Ok(SendsRun {
        count: config.count,
        first_send_ms: spread_ms(&times[..n]),
        last_send_ms: spread_ms(&times[times.len() - n..]),
        sends_s,
        complete_s,
        send_wait_ms: config.wait.then(|| spread_ms(&times)),
        procs: out,
    })
}

/// `node send DIR --wait --json` at the node whose data dir is `dd`; the broadcast's id.
async fn send_wait(
    exe: &std::path::Path,
    dd: &std::path::Path,
    dir: &std::path::Path,
    timeout: Duration,
) -> Result<String> {
    let v = crate::harness::send_wait(exe, dd, dir, timeout).await?;
    v["broadcast"]["id"]
        .as_str()
        .map(str::to_owned)
        .context("no broadcast id in node send's answer")
}

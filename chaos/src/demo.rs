//! `swarmcast demo`: a local fleet on 127.0.0.1 in a temporary directory, a sample dataset
//! broadcast to it with live progress, faults mid-transfer (a bootstrap and two nodes killed, one
//! restarted), byte-for-byte verification, a summary, and cleanup.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use swarmcast_node::control;
use swarmcast_node::data::BroadcastInfo;
use swarmcast_node::listing::BroadcastPhase;

use crate::procs::{LocalCluster, Timings};
use crate::tree;

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

async fn list(data_dir: &Path) -> Option<Vec<BroadcastInfo>> {
    control::list(data_dir).await.ok()
}

/// Run the demo with the `swarmcast` binary at `exe`. Ok only if every copy verified.
pub async fn run(exe: PathBuf, config: DemoConfig) -> Result<DemoReport> {
    if config.nodes < 4 || config.bootstraps < 2 {
        bail!("the demo needs at least 4 nodes and 2 bootstraps (it kills some)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-demo-")
        .tempdir()?;
    let root = tmp.path().to_owned();
    println!("swarmcast demo in {}", root.display());
    let result = run_in(exe, &config, &root).await;
    if config.keep {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    } else {
        println!("cleaned up {}", root.display());
    }
    result
}

async fn run_in(exe: PathBuf, config: &DemoConfig, root: &Path) -> Result<DemoReport> {
    let dataset = root.join("dataset");
    let (files, bytes) = tree::generate(&dataset, config.size, 0x5eed)?;
    println!("generated a dataset of {files} files, {}", human(bytes));

    let mut cluster = LocalCluster::new(exe, root, Timings::default())?;
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(config.bootstraps)?;
    let names: Vec<String> = (1..=config.nodes).map(|i| format!("n{i}")).collect();
    for n in &names {
        cluster.start_node(n, &seeds, &[])?;
    }
    println!(
        "started {} bootstraps and {} nodes on 127.0.0.1 (each a child process)",
        config.bootstraps, config.nodes
    );
    let dir_of = |c: &LocalCluster, n: &str| -> Result<PathBuf> {
        let i = c.index(n).context("no such node")?;
        Ok(c.procs[i].data_dir.clone())
    };
    cluster
        .wait_joined(&names, 1, Duration::from_secs(30))
        .await
        .with_context(|| format!("logs in {}", root.display()))?;
    println!("all nodes joined and found neighbours");

    let origin = names[0].clone();
    let info = control::send(&dir_of(&cluster, &origin)?, dataset.clone(), 1 << 20)
        .await
        .context("send failed")?;
    let started = Instant::now();
    println!(
        "{origin} sends broadcast {} ({} chunks)",
        &info.id[..16],
        info.chunks
    );

    // The victims: one bootstrap, and two receivers of which the first comes back.
    let victim_b = format!("b{}", config.bootstraps.min(2));
    let (v1, v2) = (
        names[config.nodes / 2].clone(),
        names[config.nodes - 1].clone(),
    );
    let bar = std::io::stdout().is_terminal().then(|| {
        let b = ProgressBar::new(100);
        b.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] [{bar:30}] {pos}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let say = |msg: String| match &bar {
        Some(b) => b.println(msg),
        None => println!("{msg}"),
    };
    let mut phase = 0; // 0: before faults, 1: killed, 2: restarted
    let mut killed_at = Instant::now();
    let mut fetched_before = 0u64;
    let mut completion: BTreeMap<String, Duration> = BTreeMap::new();
    let mut last_print = Instant::now();
    let deadline = started + Duration::from_secs(300);
    loop {
        let mut held = 0u64;
        let mut total = 0u64;
        let mut running = 0usize;
        for n in &names {
            let i = cluster.index(n).context("node")?;
            if !cluster.procs[i].running() {
                continue;
            }
            running += 1;
            let b = list(&cluster.procs[i].data_dir)
                .await
                .and_then(|l| l.into_iter().find(|b| b.id == info.id));
            let (h, t) = b
                .as_ref()
                .map_or((0, info.chunks), |b| (b.chunks_held, b.chunks_total));
            held += h;
            total += t.max(1);
            if let Some(b) = &b {
                if b.is_done() && !completion.contains_key(n) {
                    completion.insert(n.clone(), started.elapsed());
                }
                if b.phase().ok() == Some(BroadcastPhase::Failed) {
                    bail!(
                        "{n}: broadcast failed: {}",
                        b.error.clone().unwrap_or_default()
                    );
                }
                if *n == v1 && phase == 0 {
                    fetched_before = b.fetched_bytes;
                }
            }
        }
        let fraction = held as f64 / total.max(1) as f64;
        if let Some(b) = &bar {
            b.set_position((fraction * 100.0) as u64);
            b.set_message(format!("{}/{} nodes complete", completion.len(), running));
        } else if last_print.elapsed() >= Duration::from_secs(1) {
            println!(
                "{:5.1}% held, {}/{} nodes complete",
                fraction * 100.0,
                completion.len(),
                running
            );
            last_print = Instant::now();
        }
        if phase == 0 && fraction >= config.fault_at {
            for name in [&victim_b, &v1, &v2] {
                let i = cluster.index(name).context("victim")?;
                cluster.kill(i);
                completion.remove(name);
            }
            killed_at = Instant::now();
            say(format!(
                "FAULT at {:.0}%: SIGKILL bootstrap {victim_b} and nodes {v1}, {v2}",
                fraction * 100.0
            ));
            phase = 1;
        } else if phase == 1 && killed_at.elapsed() >= Duration::from_millis(1500) {
            let i = cluster.index(&v1).context("victim")?;
            cluster.restart(i, false)?;
            say(format!(
                "restarted {v1} with its data dir: it resumes where it stopped"
            ));
            phase = 2;
            continue;
        }
        if phase == 2 && completion.len() == running {
            break;
        }
        if Instant::now() > deadline {
            bail!("not complete after 300 s (logs in {})", root.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let wall = started.elapsed();

    // Verify every surviving receiver, byte for byte and mode for mode.
    let mut receivers = 0;
    for n in names.iter().skip(1) {
        let i = cluster.index(n).context("node")?;
        if !cluster.procs[i].running() {
            continue;
        }
        let copy = cluster.procs[i].data_dir.join("received").join("dataset");
        tree::verify(&dataset, &copy).with_context(|| format!("{n}'s copy is wrong"))?;
        receivers += 1;
    }
    println!("verified {receivers} copies: byte-identical, modes included");

    let origin_list = list(&dir_of(&cluster, &origin)?).await.unwrap_or_default();
    let uploaded = origin_list
        .iter()
        .find(|b| b.id == info.id)
        .map_or(0, |b| b.uploaded_bytes);
    let v1_list = list(&dir_of(&cluster, &v1)?).await.unwrap_or_default();
    let v1b = v1_list.iter().find(|b| b.id == info.id);
    let refetched = v1b.map_or(0, |b| {
        (fetched_before + b.fetched_bytes).saturating_sub(b.bytes_total)
    });
    let report = DemoReport {
        wall,
        bytes,
        receivers,
        origin_upload: uploaded as f64 / bytes.max(1) as f64,
        completion,
        refetched,
    };
    println!();
    println!("summary");
    println!("  wall time            {:.2} s", report.wall.as_secs_f64());
    println!(
        "  aggregate throughput {}/s ({} receivers x {})",
        human((bytes as f64 * receivers as f64 / wall.as_secs_f64()) as u64),
        receivers,
        human(bytes)
    );
    println!(
        "  origin upload        {:.2} x the dataset",
        report.origin_upload
    );
    println!(
        "  {v1} resumed after SIGKILL; bytes re-fetched: {} (resumed {} chunks)",
        human(refetched),
        v1b.map_or(0, |b| b.resumed_chunks)
    );
    println!("  completion per node:");
    for (n, t) in &report.completion {
        println!("    {n:<4} {:6.2} s", t.as_secs_f64());
    }
    Ok(report)
}

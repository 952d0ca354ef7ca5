//! `swarmcast bench local`: one origin and N receivers on 127.0.0.1, a generated dataset (one
//! large file, or many small ones), time until every receiver holds a verified copy, origin
//! upload, each node's peak RSS, and the CPU each node spent per GiB delivered (from `/proc`). Loopback shares one machine's CPU and memory bandwidth, so
//! these are throughput and overhead figures, not a swarm-versus-server comparison (that needs
//! shaped links: the netns lab).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use swarmcast_node::control;

use crate::procs::{LocalCluster, Timings};
use crate::tree;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Receivers (the origin is extra).
    pub receivers: usize,
    /// Total bytes.
    pub size: u64,
    /// Files the bytes are split into (1: one large file).
    pub files: u64,
    /// Chunk size.
    pub chunk_size: u32,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// From `send` (manifest built) to every receiver complete.
    pub transfer: Duration,
    /// Building the manifest (hashing the source).
    pub publish: Duration,
    /// Bytes of the dataset.
    pub bytes: u64,
    /// Files of the dataset.
    pub files: u64,
    /// Origin upload as a multiple of the dataset.
    pub origin_upload: f64,
    /// Peak RSS of each node process, in KiB (origin first).
    pub peak_rss_kib: Vec<(String, u64)>,
    /// CPU-seconds (user + system) each node process spent during the transfer, from `send`
    /// returning to every receiver complete (origin first).
    pub cpu_s: Vec<(String, f64)>,
}

impl BenchResult {
    /// As JSON.
    pub fn to_json(&self, config: &BenchConfig) -> serde_json::Value {
        let secs = self.transfer.as_secs_f64();
        json!({
            "receivers": config.receivers,
            "bytes": self.bytes,
            "files": self.files,
            "chunk_size": config.chunk_size,
            "publish_s": self.publish.as_secs_f64(),
            "transfer_s": secs,
            "per_receiver_mib_s": self.bytes as f64 / (1 << 20) as f64 / secs,
            "aggregate_mib_s": self.bytes as f64 * config.receivers as f64 / (1 << 20) as f64 / secs,
            "files_per_s_per_receiver": self.files as f64 / secs,
            "origin_upload_copies": self.origin_upload,
            "peak_rss_kib": self.peak_rss_kib,
            "cpu_s": self.cpu_s,
            "origin_cpu_s_per_gib": self.origin_cpu_per_gib(),
            "receiver_cpu_s_per_gib": self.receiver_cpu_per_gib(),
        })
    }

    /// The origin's CPU-seconds per GiB of the dataset (it may upload less than a copy to each
    /// receiver: the swarm does the rest).
    pub fn origin_cpu_per_gib(&self) -> f64 {
        per_gib(self.cpu_s.first().map_or(0.0, |(_, s)| *s), self.bytes)
    }

    /// The median receiver's CPU-seconds per GiB it received (receivers also serve each other,
    /// which is included).
    pub fn receiver_cpu_per_gib(&self) -> f64 {
        let receivers = self
            .cpu_s
            .iter()
            .skip(1)
            .map(|(_, s)| per_gib(*s, self.bytes));
        Spread::of(receivers).median
    }
}

/// CPU-seconds per GiB.
pub fn per_gib(cpu_s: f64, bytes: u64) -> f64 {
    if bytes == 0 {
        return 0.0;
    }
    cpu_s / (bytes as f64 / f64::from(1u32 << 30))
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`: 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// User + system CPU-seconds of a process so far, all its threads (living and exited) included.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The same for the calling process.
pub fn self_cpu_seconds() -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The same for the calling thread.
pub fn thread_cpu_seconds() -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/thread-self/stat").ok()?)
}

/// `utime + stime` of a `/proc/.../stat` line, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime (14), stime (15).
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Write the dataset: one file of `size`, or `files` files sharing it, in 100 folders.
fn dataset(root: &Path, size: u64, files: u64) -> Result<()> {
    std::fs::create_dir_all(root)?;
    if files <= 1 {
        let mut f = std::fs::File::create(root.join("blob.bin"))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        let mut k = 0;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            tree::fill(k, &mut buf[..n]);
            std::io::Write::write_all(&mut f, &buf[..n])?;
            left -= n as u64;
            k += 1;
        }
        return Ok(());
    }
    let each = (size / files).max(1) as usize;
    let mut buf = vec![0u8; each];
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&dir)?;
        }
        tree::fill(i, &mut buf);
        std::fs::write(dir.join(format!("f{i:07}")), &buf)?;
    }
    Ok(())
}

async fn list(dir: &Path) -> Vec<swarmcast_node::data::BroadcastInfo> {
    control::list(dir).await.unwrap_or_default()
}

/// Run one measurement with the binary at `exe`, in a temporary directory under `tmp_root`.
pub async fn run(exe: std::path::PathBuf, config: &BenchConfig) -> Result<BenchResult> {
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-bench-")
        .tempdir()?;
    let root = tmp.path();
    let source = root.join("dataset");
    dataset(&source, config.size, config.files)?;
    let mut cluster = LocalCluster::new(exe, root, Timings::default())?;
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(1)?;
    let mut names = vec!["origin".to_owned()];
    names.extend((1..=config.receivers).map(|i| format!("r{i}")));
    for n in &names {
        cluster.start_node(n, &seeds, &[])?;
    }
    let dirs = cluster
        .wait_joined(&names, config.receivers.min(8), Duration::from_secs(30))
        .await?;
    let t0 = Instant::now();
    let info = control::send(&dirs[0], source.clone(), config.chunk_size)
        .await
        .context("send")?;
    let publish = t0.elapsed();
    let t1 = Instant::now();
    let pids: Vec<Option<u32>> = names
        .iter()
        .map(|n| cluster.index(n).and_then(|i| cluster.procs[i].pid()))
        .collect();
    let cpu_before: Vec<Option<f64>> = pids.iter().map(|p| p.and_then(cpu_seconds)).collect();
    crate::fleet::wait_complete(
        &dirs[1..],
        &info.id,
        t1 + config.timeout,
        Duration::from_millis(50),
    )
    .await
    .with_context(|| format!("receivers not complete after {:?}", config.timeout))?;
    let transfer = t1.elapsed();
    let cpu_s = names
        .iter()
        .zip(pids.iter().zip(&cpu_before))
        .filter_map(|(n, (pid, before))| {
            let spent = cpu_seconds((*pid)?)? - (*before)?;
            Some((n.clone(), spent))
        })
        .collect();
    let uploaded = list(&dirs[0])
        .await
        .into_iter()
        .find(|b| b.id == info.id)
        .map_or(0, |b| b.uploaded_bytes);
    let peak_rss_kib = names
        .iter()
        .filter_map(|n| {
            let i = cluster.index(n)?;
            Some((n.clone(), peak_rss_kib(cluster.procs[i].pid()?)?))
        })
        .collect();
    // Spot-check one copy byte for byte (all were verified chunk by chunk on arrival).
    tree::verify(&source, &dirs[1].join("received").join("dataset"))?;
    Ok(BenchResult {
        transfer,
        publish,
        bytes: info.bytes,
        files: info.files,
        origin_upload: uploaded as f64 / info.bytes.max(1) as f64,
        peak_rss_kib,
        cpu_s,
    })
}

/// Whether a dataset of `files` files and `size` bytes in chunks of `chunk_size` passes the
/// manifest limits `node send` applies, so a bad argument fails before any process starts.
pub fn check_limits(files: u64, size: u64, chunk_size: u32) -> Result<()> {
    let limits = swarmcast_node::manifest::ManifestLimits::default();
    if !(limits.min_chunk_size..=limits.max_chunk_size).contains(&chunk_size) {
        bail!(
            "chunk size {chunk_size} is outside {}..={} bytes",
            limits.min_chunk_size,
            limits.max_chunk_size
        );
    }
    if files > limits.max_entries {
        bail!(
            "{files} files is more than a broadcast holds ({})",
            limits.max_entries
        );
    }
    if size > limits.max_total_bytes {
        bail!(
            "{size} bytes is more than a broadcast holds ({})",
            limits.max_total_bytes
        );
    }
    Ok(())
}

/// Median, minimum and maximum of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    /// The middle value (the upper middle of an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// Of `values`; all zero if there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().collect();
        v.sort_by(f64::total_cmp);
        match (v.first(), v.last()) {
            (Some(&min), Some(&max)) => Self {
                median: v[v.len() / 2],
                min,
                max,
            },
            _ => Self {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            },
        }
    }

    /// `{ "median": .., "min": .., "max": .. }`, like `bench local`'s summary.
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "median": self.median, "min": self.min, "max": self.max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of([]).median, 0.0);
    }

    #[test]
    fn stat_cpu_counts_fields_after_the_name() {
        // A name with spaces and a `)` in it; utime 250, stime 50 ticks.
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_cpu(line), Some(3.0));
        assert_eq!(parse_stat_cpu("42 (x) S 1"), None);
        assert!(self_cpu_seconds().is_some_and(|s| s >= 0.0));
        assert!(thread_cpu_seconds().is_some());
    }

    #[test]
    fn cpu_per_gib() {
        let r = BenchResult {
            transfer: Duration::from_secs(1),
            publish: Duration::ZERO,
            bytes: 2 << 30,
            files: 1,
            origin_upload: 1.0,
            peak_rss_kib: Vec::new(),
            cpu_s: vec![
                ("origin".into(), 3.0),
                ("r1".into(), 4.0),
                ("r2".into(), 8.0),
                ("r3".into(), 6.0),
            ],
        };
        assert_eq!(r.origin_cpu_per_gib(), 1.5);
        assert_eq!(r.receiver_cpu_per_gib(), 3.0);
        assert_eq!(per_gib(1.0, 0), 0.0);
    }
}

//! `swarmcast bench local`: one origin and N receivers on 127.0.0.1, a generated dataset (one
//! large file, or many small ones), time until every receiver holds a verified copy, origin
//! upload, and each node's peak RSS. Loopback shares one machine's CPU and memory bandwidth, so
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
        })
    }
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
    crate::fleet::wait_complete(
        &dirs[1..],
        &info.id,
        t1 + config.timeout,
        Duration::from_millis(50),
    )
    .await
    .with_context(|| format!("receivers not complete after {:?}", config.timeout))?;
    let transfer = t1.elapsed();
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
#[derive(Debug, Clone, Copy, PartialEq)]
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
}

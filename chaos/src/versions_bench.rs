//! `swarmcast bench versions`: the second send. One origin and N receivers on 127.0.0.1 with the
//! binary's own defaults; a directory of `files` files is sent with `node send --wait`, then one
//! file is changed (rewritten, appended to, or 1 MiB inserted at its start) and the directory is
//! sent again. Reports both user figures (start of `node send` to the return of `--wait`), the
//! bytes the origin hashed the second time, and the chunk payload each receiver fetched over
//! QUIC for the second version (the rest it copied from the first, kept locally).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::procs::{LocalCluster, Timings};

/// How the second version differs from the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// One file rewritten with new bytes of the same size.
    Rewrite,
    /// One file grown by 1 MiB at its end.
    Append,
    /// 1 MiB inserted at the start of one file (a whole number of default chunks: the rest of
    /// the file keeps its chunk boundaries).
    Insert,
    /// 1 MiB and 1 KiB inserted at the start of one file: every later chunk boundary of the
    /// file moves.
    InsertShifted,
}

/// Bytes an append adds or an insertion inserts.
pub const CHANGE_BYTES: u64 = 1 << 20;

/// What to measure.
#[derive(Debug, Clone)]
pub struct VersionsConfig {
    /// Total bytes of the first version.
    pub size: u64,
    /// Files it is split into (the change touches one of them).
    pub files: u64,
    /// Receivers (the origin is extra).
    pub receivers: usize,
    /// The change.
    pub change: Change,
    /// Give up on a send after this long.
    pub timeout: Duration,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct VersionsRun {
    /// The change.
    pub change: Change,
    /// Bytes of the first version (F).
    pub bytes: u64,
    /// Bytes that differ in the second (the file rewritten, or the bytes added).
    pub changed_bytes: u64,
    /// First send: start of `node send` to the return of `--wait`, seconds.
    pub first_s: f64,
    /// Second send, the same.
    pub second_s: f64,
    /// File bytes the origin read and hashed for the second version.
    pub second_hashed_bytes: u64,
    /// Chunk payload each receiver fetched over QUIC for the second version.
    pub fetched: Vec<(String, u64)>,
}

impl VersionsRun {
    /// The largest receiver's fetch over F.
    pub fn fetched_over_f(&self) -> f64 {
        let most = self.fetched.iter().map(|(_, b)| *b).max().unwrap_or(0);
        most as f64 / self.bytes.max(1) as f64
    }

    /// Second send time over the first.
    pub fn time_ratio(&self) -> f64 {
        self.second_s / self.first_s.max(f64::EPSILON)
    }
}

/// xorshift64*: a fast, seeded byte stream for file contents.
fn fill(seed: u64, out: &mut [u8]) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Writes `len` seeded bytes to `path`, 1 MiB at a time.
fn write_seeded(path: &Path, seed: u64, len: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut block = 0u64;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill(
            seed.wrapping_mul(1_000_003).wrapping_add(block),
            &mut buf[..n],
        );
        f.write_all(&buf[..n])?;
        left -= n as u64;
        block += 1;
    }
    f.flush()?;
    Ok(())
}

/// Applies `change` to `path` (a file of the first version); the bytes that differ.
fn apply(change: Change, path: &Path, len: u64) -> Result<u64> {
    match change {
        Change::Rewrite => {
            write_seeded(path, 0xdead_beef, len)?;
            Ok(len)
        }
        Change::Append => {
            let mut extra = vec![0u8; CHANGE_BYTES as usize];
            fill(0x0a99_e11d, &mut extra);
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)?
                .write_all(&extra)?;
            Ok(CHANGE_BYTES)
        }
        Change::Insert | Change::InsertShifted => {
            let old = std::fs::read(path)?;
            let extra = if change == Change::Insert { 0 } else { 1024 };
            let mut new = vec![0u8; (CHANGE_BYTES + extra) as usize];
            fill(0x0001_5e27, &mut new);
            new.extend_from_slice(&old);
            std::fs::write(path, new)?;
            Ok(CHANGE_BYTES + extra)
        }
    }
}

/// `node send DIR --wait --json` at the node whose data dir is `dd`: (seconds, its JSON).
async fn send_wait(
    exe: &Path,
    dd: &Path,
    dir: &Path,
    timeout: Duration,
) -> Result<(f64, serde_json::Value)> {
    let t0 = Instant::now();
    let v = crate::harness::send_wait(exe, dd, dir, timeout).await?;
    Ok((t0.elapsed().as_secs_f64(), v))
}

/// One run: a fresh cluster, the first version, the change, the second version.
pub async fn run(exe: PathBuf, config: &VersionsConfig) -> Result<VersionsRun> {
    if config.files == 0 || config.receivers == 0 || config.size < config.files {
        bail!("size, files and receivers must be at least 1 (and size at least files)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-bench-versions-")
        .tempdir()?;
    let root = tmp.path();
    let src = root.join("ds");
    std::fs::create_dir_all(&src)?;
    let per_file = config.size / config.files;
    for i in 0..config.files {
        write_seeded(&src.join(format!("part{i:03}")), i + 1, per_file)?;
    }
    let bytes = per_file * config.files;
    let mut cluster =
        LocalCluster::new(exe.clone(), root, Timings::default())?.with_binary_timings();
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(1)?;
    let mut names = vec!["origin".to_owned()];
    names.extend((1..=config.receivers).map(|i| format!("r{i}")));
    for n in &names {
        cluster.start_node(n, &seeds, &[])?;
    }
    let dirs = cluster
        .wait_joined(&names, config.receivers.min(8), Duration::from_secs(30))
        .await?;
    let (first_s, _) = send_wait(&exe, &dirs[0], &src, config.timeout).await?;
    let changed_bytes = apply(
        config.change,
        &src.join(format!("part{:03}", config.files / 2)),
        per_file,
    )?;
    let (second_s, second) = send_wait(&exe, &dirs[0], &src, config.timeout).await?;
    let id = second["broadcast"]["id"]
        .as_str()
        .context("no broadcast id in node send's answer")?
        .to_owned();
    let second_hashed_bytes = second["broadcast"]["hashed_bytes"].as_u64().unwrap_or(0);
    let mut fetched = Vec::new();
    for (name, dd) in names.iter().zip(&dirs).skip(1) {
        let listing = swarmcast_node::control::list(dd).await?;
        let b = listing
            .into_iter()
            .find(|b| b.id == id)
            .with_context(|| format!("{name} does not list the second version"))?;
        fetched.push((name.clone(), b.fetched_bytes));
    }
    crate::tree::verify(&src, &dirs[1].join("received").join("ds"))?;
    Ok(VersionsRun {
        change: config.change,
        bytes,
        changed_bytes,
        first_s,
        second_s,
        second_hashed_bytes,
        fetched,
    })
}

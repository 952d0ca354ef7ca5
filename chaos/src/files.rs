//! `swarmcast bench files`: many small files (default 100,000 of 4 KiB) from one origin to N
//! receivers on 127.0.0.1, beside one file of the same total size in the same run. Both halves
//! are [`bench::run`]; the ratio of their throughputs says what per-file costs (manifest
//! entries, file creation, packing small chunks into pieces, fsyncs of many files) take away.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::{self, BenchConfig, BenchResult, Spread};

/// What `bench files` measures.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Files of the many-files dataset.
    pub files: u64,
    /// Bytes of each of them.
    pub file_size: u64,
    /// Receivers (the origin is extra).
    pub receivers: usize,
    /// Chunk size.
    pub chunk_size: u32,
    /// Give up on either transfer after this long.
    pub timeout: Duration,
}

impl FilesConfig {
    /// Refuses what a run would fail on later: zero counts, a total that overflows, a chunk size
    /// or a file count the manifest limits refuse.
    pub fn validate(&self) -> Result<()> {
        let many = self.many()?;
        bench::check_limits(many.files, many.size, many.chunk_size)
    }

    /// Total bytes, if they fit in 64 bits.
    pub fn total(&self) -> Option<u64> {
        self.files.checked_mul(self.file_size)
    }

    fn bench_config(&self, files: u64) -> Result<BenchConfig> {
        if self.files == 0 || self.file_size == 0 || self.receivers == 0 {
            bail!("files, file size and receivers must be at least 1");
        }
        let size = self
            .total()
            .context("files × file size does not fit in 64 bits")?;
        Ok(BenchConfig {
            receivers: self.receivers,
            size,
            files,
            chunk_size: self.chunk_size,
            timeout: self.timeout,
        })
    }

    /// The many-files half.
    pub fn many(&self) -> Result<BenchConfig> {
        self.bench_config(self.files)
    }

    /// The one-file half.
    pub fn one(&self) -> Result<BenchConfig> {
        self.bench_config(1)
    }
}

/// One run of `bench files`.
#[derive(Debug, Clone)]
pub struct FilesRun {
    /// The many small files.
    pub many: BenchResult,
    /// One file of the same total size.
    pub one: BenchResult,
}

impl FilesRun {
    /// Many files' bytes/s over one file's (same bytes, so a ratio of times).
    pub fn ratio(&self) -> f64 {
        self.one.transfer.as_secs_f64() / self.many.transfer.as_secs_f64()
    }

    /// Files per second per receiver of the many-files half.
    pub fn files_per_s(&self) -> f64 {
        self.many.files as f64 / self.many.transfer.as_secs_f64()
    }

    /// As JSON.
    pub fn to_json(&self, config: &FilesConfig) -> Result<Value> {
        Ok(json!({
            "many": self.many.to_json(&config.many()?),
            "one": self.one.to_json(&config.one()?),
            "ratio": self.ratio(),
        }))
    }
}

/// One run: the many files, then the one file (binary at `exe`).
pub async fn run(exe: std::path::PathBuf, config: &FilesConfig) -> Result<FilesRun> {
    let many = bench::run(exe.clone(), &config.many()?)
        .await
        .with_context(|| format!("{} files", config.files))?;
    if many.files != config.files {
        bail!(
            "the many-files broadcast has {} files, not {}",
            many.files,
            config.files
        );
    }
    let one = bench::run(exe, &config.one()?).await.context("one file")?;
    Ok(FilesRun { many, one })
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

/// Every run and the median, min and max of the figures.
pub fn summary_json(config: &FilesConfig, runs: &[FilesRun]) -> Result<Value> {
    let bytes = config.total().unwrap_or(0);
    Ok(json!({
        "files": config.files,
        "file_size": config.file_size,
        "bytes": bytes,
        "receivers": config.receivers,
        "chunk_size": config.chunk_size,
        "runs": runs.iter().map(|r| r.to_json(config)).collect::<Result<Vec<_>>>()?,
        "many_transfer_s": Spread::of(runs.iter().map(|r| r.many.transfer.as_secs_f64())).to_json(),
        "one_transfer_s": Spread::of(runs.iter().map(|r| r.one.transfer.as_secs_f64())).to_json(),
        "files_per_s_per_receiver": Spread::of(runs.iter().map(FilesRun::files_per_s)).to_json(),
        "ratio": Spread::of(runs.iter().map(FilesRun::ratio)).to_json(),
    }))
}

/// The same for people.
pub fn summary_text(config: &FilesConfig, runs: &[FilesRun]) -> String {
    let bytes = config.total().unwrap_or(0);
    let many = Spread::of(runs.iter().map(|r| r.many.transfer.as_secs_f64()));
    let one = Spread::of(runs.iter().map(|r| r.one.transfer.as_secs_f64()));
    let fps = Spread::of(runs.iter().map(FilesRun::files_per_s));
    let ratio = Spread::of(runs.iter().map(FilesRun::ratio));
    let mut out = format!(
        "bench files: {} files of {} B ({}) to {} receiver(s) on 127.0.0.1, beside one file of \
         the same size, {} run(s)\n",
        config.files,
        config.file_size,
        crate::demo::human(bytes),
        config.receivers,
        runs.len()
    );
    out += &format!(
        "{} files  median {:8.3} s {:8.1} MiB/s per receiver {:10.0} files/s per receiver   \
         min {:.3} s   max {:.3} s\n",
        config.files,
        many.median,
        mib_s(bytes, many.median),
        fps.median,
        many.min,
        many.max
    );
    out += &format!(
        "one file  median {:8.3} s {:8.1} MiB/s per receiver   min {:.3} s   max {:.3} s\n",
        one.median,
        mib_s(bytes, one.median),
        one.min,
        one.max
    );
    out += &format!(
        "ratio     median {:.2}   min {:.2}   max {:.2}   (many files' bytes/s / one file's; \
         target >= 0.5)\n",
        ratio.median, ratio.min, ratio.max
    );
    out
}

/// One run for people.
pub fn run_text(run: &FilesRun, index: usize, total: usize) -> String {
    let m = run.many.transfer.as_secs_f64();
    let o = run.one.transfer.as_secs_f64();
    format!(
        "run {index}/{total}: {} files {m:.3} s ({:.0} files/s, {:.1} MiB/s per receiver; \
         publish {:.2} s), one file {o:.3} s ({:.1} MiB/s), ratio {:.2}",
        run.many.files,
        run.files_per_s(),
        mib_s(run.many.bytes, m),
        run.many.publish.as_secs_f64(),
        mib_s(run.one.bytes, o),
        run.ratio()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_split_the_same_bytes() -> Result<()> {
        let c = FilesConfig {
            files: 1000,
            file_size: 4096,
            receivers: 2,
            chunk_size: 1 << 20,
            timeout: Duration::from_secs(1),
        };
        let (many, one) = (c.many()?, c.one()?);
        assert_eq!((many.size, many.files), (4096 * 1000, 1000));
        assert_eq!((one.size, one.files), (4096 * 1000, 1));
        let zero = FilesConfig {
            files: 0,
            ..c.clone()
        };
        assert!(zero.many().is_err());
        let huge = FilesConfig {
            files: u64::MAX,
            ..c
        };
        assert!(huge.many().is_err());
        Ok(())
    }
}

//! `swarmcast chaos soak`: continuous churn with repeated broadcasts, watching every long-lived
//! process for leaks.
//!
//! A fleet of real processes on 127.0.0.1 (3 bootstraps, `--nodes` nodes) runs for
//! `--minutes`. Cycle after cycle, one of the stable nodes sends a fresh dataset as the next
//! version of one of a few names (so retention removes old versions all along), while one of
//! the churning nodes is SIGKILLed mid-transfer and restarted with its data dir, and every
//! few cycles a bootstrap is killed and restarted too. Each cycle ends when every running
//! node holds the new version, checked byte for byte under `received/<name>`.
//!
//! Every `--sample` it reads, from `/proc`, each process's RSS, open file descriptors and
//! threads. The verdict concerns the processes that are never killed (two bootstraps and the
//! stable nodes): for each of them and each figure, the mean over the last quarter of the run
//! must not exceed the mean over the second quarter by more than 20% ([`GROWTH_LIMIT`]). The
//! first quarter is left out as warm-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use swarmcast_node::control;
use swarmcast_node::manifest::DEFAULT_CHUNK_SIZE;

use crate::fleet;
pub use crate::procs::{Figures, figures};
use crate::procs::{LocalCluster, Timings};
use crate::scenario::Prng;
use crate::tree;

/// The largest growth allowed from the second quarter's mean to the last quarter's.
pub const GROWTH_LIMIT: f64 = 1.2;

/// Threads that may come and go without being a leak: tokio's blocking pool starts a thread
/// per concurrent blocking task (file I/O, commits) and keeps an idle one for 10 s, so a busy
/// moment at the end of a short soak shows a few more. A leak grows without bound.
pub const THREAD_SLACK: f64 = 16.0;

/// File descriptors that may come and go likewise (a commit's files, a control connection).
pub const FD_SLACK: f64 = 8.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long.
    pub duration: Duration,
    /// Nodes (at least 4: two stable, two churning).
    pub nodes: usize,
    /// Of which this many are killed and restarted, in turn (the rest are stable).
    pub churners: usize,
    /// Bytes of each broadcast.
    pub size: u64,
    /// Names the versions rotate through.
    pub names: usize,
    /// Seed of the datasets and of who is killed when.
    pub seed: u64,
    /// How often to sample the processes.
    pub sample: Duration,
}

impl SoakConfig {
    /// Usage errors, for exit 2.
    pub fn validate(&self) -> Result<()> {
        if self.nodes < 4 {
            bail!("--nodes must be at least 4");
        }
        if self.churners == 0 || self.churners + 2 > self.nodes {
            bail!("--churners must be between 1 and --nodes - 2");
        }
        if self.names == 0 {
            bail!("--names must be at least 1");
        }
        if self.size == 0 {
            bail!("--size must be at least 1 byte");
        }
        if self.sample.is_zero() || self.duration < self.sample * 8 {
            bail!("--minutes must cover at least 8 samples");
        }
        Ok(())
    }
}

/// Every process's figures at one time.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the fleet started.
    pub t_s: f64,
    /// By process name; processes not running then are absent.
    pub procs: BTreeMap<String, Figures>,
}

/// Growth of one figure of one process.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    /// The process.
    pub proc: String,
    /// `rss_kib`, `fds` or `threads`.
    pub figure: &'static str,
    /// Mean over the second quarter.
    pub second: f64,
    /// Mean over the last quarter.
    pub last: f64,
}

impl Growth {
    /// Beyond [`GROWTH_LIMIT`], and for threads and descriptors also by more than their slack
    /// ([`THREAD_SLACK`], [`FD_SLACK`]).
    pub fn over_limit(&self) -> bool {
        let slack = match self.figure {
            "threads" => THREAD_SLACK,
            "fds" => FD_SLACK,
            _ => 0.0,
        };
        self.ratio() > GROWTH_LIMIT && self.last - self.second > slack
    }

    /// Last over second (1 when both are 0).
    pub fn ratio(&self) -> f64 {
        if self.second == 0.0 {
            if self.last == 0.0 { 1.0 } else { f64::INFINITY }
        } else {
            self.last / self.second
        }
    }
}

/// What a soak found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Broadcasts sent and received everywhere, byte-identical.
    pub cycles: u64,
    /// SIGKILLs of nodes and bootstraps.
    pub kills: u64,
    /// Seconds per cycle: (min, median, max).
    pub cycle_s: (f64, f64, f64),
    /// The samples.
    pub samples: Vec<Sample>,
    /// Every figure of every stable process.
    pub growth: Vec<Growth>,
    /// Whether every growth is within [`GROWTH_LIMIT`].
    pub passed: bool,
}

impl SoakReport {
    /// A human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "soak: {} cycles, {} kills, {} samples; cycle {:.1} s (min {:.1}, max {:.1}): {}\n",
            self.cycles,
            self.kills,
            self.samples.len(),
            self.cycle_s.1,
            self.cycle_s.0,
            self.cycle_s.2,
            if self.passed { "PASSED" } else { "FAILED" }
        );
        s.push_str("stable process     figure      2nd quarter   last quarter   ratio\n");
        for g in &self.growth {
            s.push_str(&format!(
                "{:<18} {:<10} {:>12.1} {:>14.1} {:>7.3}{}\n",
                g.proc,
                g.figure,
                g.second,
                g.last,
                g.ratio(),
                if g.over_limit() { "  > limit" } else { "" }
            ));
        }
        s
    }
}

/// The growth of every figure of each of `stable` from the second quarter of `samples` (by
/// time) to the last. A process absent from every sample of a quarter has a mean of 0 there
/// (the soak itself fails if a stable process is not running at the end).
pub fn growth(samples: &[Sample], stable: &[String]) -> Vec<Growth> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    let span = last.t_s - first.t_s;
    let quarter = |q: f64| {
        let lo = first.t_s + span * q / 4.0;
        let hi = first.t_s + span * (q + 1.0) / 4.0;
        samples
            .iter()
            .filter(move |s| s.t_s >= lo && (s.t_s < hi || (q == 3.0 && s.t_s <= hi)))
    };
    let mut out = Vec::new();
    for p in stable {
        type Pick = fn(&Figures) -> u64;
        let picks: [(&'static str, Pick); 3] = [
            ("rss_kib", |f| f.rss_kib),
            ("fds", |f| f.fds),
            ("threads", |f| f.threads),
        ];
        for (figure, pick) in picks {
            let mean = |q: f64| {
                let v: Vec<u64> = quarter(q)
                    .filter_map(|s| s.procs.get(p).map(pick))
                    .collect();
                if v.is_empty() {
                    0.0
                } else {
                    v.iter().sum::<u64>() as f64 / v.len() as f64
                }
            };
            out.push(Growth {
                proc: p.clone(),
                figure,
                second: mean(1.0),
                last: mean(3.0),
            });
        }
    }
    out
}

/// [`run`] in a temp dir of its own; with `report`, the logs of every process (kept even when
/// the soak fails), `soak.json` (every sample) and `summary.txt` go there.
pub async fn run_reported(
    exe: PathBuf,
    config: SoakConfig,
    report: Option<PathBuf>,
) -> Result<SoakReport> {
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-soak-")
        .tempdir()
        .context("creating the soak's temp dir")?;
    let outcome = run(exe, tmp.path(), config).await;
    if let Some(dir) = &report {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        for entry in std::fs::read_dir(tmp.path())? {
            let p = entry?.path();
            if p.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&p, logs.join(p.file_name().unwrap_or_default()));
            }
        }
        if let Ok(r) = &outcome {
            std::fs::write(dir.join("soak.json"), serde_json::to_vec_pretty(r)?)?;
            std::fs::write(dir.join("summary.txt"), r.summary())?;
        }
    }
    outcome
}

/// Runs a soak with the `swarmcast` binary `exe` under `root` (an empty directory).
pub async fn run(exe: PathBuf, root: &Path, config: SoakConfig) -> Result<SoakReport> {
    config.validate()?;
    let mut rng = Prng::new(config.seed);
    let mut cluster = LocalCluster::new(exe, root, Timings::FOR_TEST)?;
    let seeds = cluster.start_bootstraps(3)?;
    let names: Vec<String> = (1..=config.nodes).map(|i| format!("n{i}")).collect();
    for n in &names {
        cluster.start_node(n, &seeds, &[])?;
    }
    cluster
        .wait_joined(&names, 1, Duration::from_secs(60))
        .await
        .context("the fleet did not join")?;
    let stable_nodes = config.nodes - config.churners;
    let mut stable: Vec<String> = vec!["b1".into(), "b2".into()];
    stable.extend(names[..stable_nodes].iter().cloned());
    let churners: Vec<String> = names[stable_nodes..].to_vec();

    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = t0;
    let mut cycles = 0u64;
    let mut kills = 0u64;
    let mut cycle_times = Vec::new();
    let sources = root.join("sources");
    let sample_now = |cluster: &LocalCluster, samples: &mut Vec<Sample>| {
        let procs = cluster
            .procs
            .iter()
            .filter_map(|p| Some((p.name.clone(), figures(p.pid()?)?)))
            .collect();
        samples.push(Sample {
            t_s: t0.elapsed().as_secs_f64(),
            procs,
        });
    };

    while t0.elapsed() < config.duration {
        let started = Instant::now();
        let k = cycles;
        let name = format!("soak-{}", k % config.names as u64);
        let dir = sources.join(k.to_string()).join(&name);
        std::fs::create_dir_all(&dir)?;
        tree::generate(
            &dir,
            config.size,
            config.seed.wrapping_mul(1000).wrapping_add(k),
        )?;
        // Sources of versions long superseded go (the origin stops seeding them).
        if let Some(old) = k.checked_sub(3 * config.names as u64) {
            let _ = std::fs::remove_dir_all(sources.join(old.to_string()));
        }
        let origin = &names[(k % stable_nodes as u64) as usize];
        let origin_dir = cluster.procs[cluster.index(origin).context("origin")?]
            .data_dir
            .clone();
        let info = control::send(&origin_dir, dir.clone(), DEFAULT_CHUNK_SIZE)
            .await
            .with_context(|| format!("cycle {k}: {origin} refused the send"))?;

        // Churn mid-transfer: a node, and every fifth cycle the third bootstrap.
        tokio::time::sleep(Duration::from_millis(100 + rng.below(400) as u64)).await;
        let victim = &churners[rng.below(churners.len())];
        let vi = cluster.index(victim).context("victim")?;
        cluster.kill(vi);
        kills += 1;
        let b3 = cluster.index("b3").context("b3")?;
        let bootstrap_down = k % 5 == 4;
        if bootstrap_down {
            cluster.kill(b3);
            kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1000) as u64)).await;
        cluster.restart(vi, false)?;
        if bootstrap_down {
            cluster.restart(b3, false)?;
        }

        let dirs: Vec<PathBuf> = names
            .iter()
            .filter_map(|n| cluster.index(n))
            .map(|i| cluster.procs[i].data_dir.clone())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        fleet::wait_complete(&dirs, &info.id, deadline, fleet::POLL)
            .await
            .with_context(|| format!("cycle {k}: broadcast {} of {name}", &info.id[..16]))?;
        // Complete is not yet shown: received/<name> moves to it just after.
        let receivers: Vec<PathBuf> = names
            .iter()
            .filter(|n| *n != origin)
            .filter_map(|n| cluster.index(n))
            .map(|i| cluster.procs[i].data_dir.clone())
            .collect();
        fleet::wait_current(&receivers, &info.id, deadline, fleet::POLL)
            .await
            .with_context(|| format!("cycle {k}: broadcast {} of {name}", &info.id[..16]))?;
        for n in &names {
            if n == origin {
                continue;
            }
            let copy = cluster.procs[cluster.index(n).context("node")?]
                .data_dir
                .join("received")
                .join(&name);
            tree::verify(&dir, &copy)
                .with_context(|| format!("cycle {k}: {n}'s copy of {name} differs"))?;
        }
        cycles += 1;
        cycle_times.push(started.elapsed().as_secs_f64());
        while Instant::now() >= next_sample {
            sample_now(&cluster, &mut samples);
            next_sample += config.sample;
        }
    }
    sample_now(&cluster, &mut samples);
    // A stable process that died would otherwise leave the last quarter's means low.
    let last = samples.last().map(|s| &s.procs);
    let gone: Vec<&String> = stable
        .iter()
        .filter(|p| last.is_none_or(|l| !l.contains_key(*p)))
        .collect();
    if !gone.is_empty() {
        bail!("stable processes not running at the end: {gone:?}");
    }
    cycle_times.sort_by(f64::total_cmp);
    let cycle_s = match cycle_times.as_slice() {
        [] => (0.0, 0.0, 0.0),
        t => (t[0], t[t.len() / 2], t[t.len() - 1]),
    };
    let growth = growth(&samples, &stable);
    let passed = !growth.iter().any(Growth::over_limit);
    Ok(SoakReport {
        cycles,
        kills,
        cycle_s,
        samples,
        growth,
        passed,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn samples(rss: impl Fn(f64) -> u64) -> Vec<Sample> {
        (0..40)
            .map(|i| {
                let t_s = f64::from(i) * 5.0;
                let mut procs = BTreeMap::new();
                procs.insert(
                    "n1".to_owned(),
                    Figures {
                        rss_kib: rss(t_s),
                        fds: 30,
                        threads: 5,
                    },
                );
                Sample { t_s, procs }
            })
            .collect()
    }

    #[test]
    fn flat_figures_pass_and_a_leak_fails() {
        let stable = vec!["n1".to_owned()];
        // A warm-up in the first quarter, then flat: passes.
        let g = growth(
            &samples(|t| if t < 50.0 { 10_000 } else { 40_000 }),
            &stable,
        );
        assert_eq!(g.len(), 3);
        assert!(g.iter().all(|g| (g.ratio() - 1.0).abs() < 1e-9), "{g:?}");
        // 400 KiB more every 5 s from 40 MiB: 17.5% from the second quarter's mean (45.8 MB)
        // to the last's (53.8 MB), inside the limit ...
        let g = growth(&samples(|t| 40_000 + (t as u64 / 5) * 400), &stable);
        assert!(g[0].ratio() > 1.1 && g[0].ratio() <= GROWTH_LIMIT, "{g:?}");
        // ... and 600 KiB: 23%, beyond it.
        let g = growth(&samples(|t| 40_000 + (t as u64 / 5) * 600), &stable);
        assert!(g[0].ratio() > GROWTH_LIMIT, "{g:?}");
        assert_eq!(g[0].figure, "rss_kib");
    }

    #[test]
    fn threads_and_descriptors_coming_and_going_are_no_leak_but_many_more_are() {
        let g = |figure, second, last| Growth {
            proc: "n1".into(),
            figure,
            second,
            last,
        };
        // The blocking pool holding a few more threads at the end: 8.5 -> 13.
        assert!(!g("threads", 8.5, 13.0).over_limit());
        assert!(g("threads", 8.5, 30.0).over_limit());
        assert!(!g("fds", 25.0, 31.0).over_limit());
        assert!(g("fds", 25.0, 40.0).over_limit());
        // Memory has no slack: 20% is 20%.
        assert!(g("rss_kib", 17_000.0, 20_500.0).over_limit());
        assert!(!g("rss_kib", 17_000.0, 20_000.0).over_limit());
    }

    #[test]
    fn a_process_absent_throughout_is_no_growth() {
        let stable = vec!["n1".to_owned(), "n9".to_owned()];
        let g = growth(&samples(|_| 1), &stable);
        let n9: Vec<&Growth> = g.iter().filter(|g| g.proc == "n9").collect();
        assert!(
            n9.iter().all(|g| g.ratio() == 1.0),
            "absent throughout: {n9:?}"
        );
    }

    #[test]
    fn figures_of_this_process_are_read() {
        let f = figures(std::process::id()).unwrap();
        assert!(f.rss_kib > 0 && f.fds > 0 && f.threads > 0, "{f:?}");
    }

    #[test]
    fn bad_configs_are_refused() {
        let ok = SoakConfig {
            duration: Duration::from_secs(60),
            nodes: 6,
            churners: 2,
            size: 1 << 20,
            names: 3,
            seed: 1,
            sample: Duration::from_secs(5),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            SoakConfig {
                nodes: 3,
                ..ok.clone()
            },
            SoakConfig {
                churners: 5,
                ..ok.clone()
            },
            SoakConfig {
                names: 0,
                ..ok.clone()
            },
            SoakConfig {
                duration: Duration::from_secs(10),
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}

//! `swarmcast bench swarm` (netns, root): one origin and N receivers, each in its own network
//! namespace with its link shaped in both directions, a generated directory of size F. Measures
//! the time T until every receiver holds a verified copy and compares it with the lower bound
//!
//! ```text
//! T* = max( F/u_s , F/d_min , N·F/(u_s + Σ u_i) )
//! ```
//!
//! from the configured rates, and (in the same run, on the same links) with a client-server
//! baseline where only the origin serves, beside its own bound N·F/u_s. Link counters are
//! sampled on the switch side of every veth to give the utilisation over time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use swarmcast_node::control;

use crate::netns::{Counters, Lab, LinkSpec};
use crate::procs::{LocalCluster, Timings};
use crate::tree;

/// Who serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// swarmcast as shipped.
    Swarm,
    /// Only the origin serves (`node join --strategy origin-only`, full mesh).
    OriginOnly,
}

impl Strategy {
    fn as_arg(self) -> &'static str {
        match self {
            Strategy::Swarm => "swarm",
            Strategy::OriginOnly => "origin-only",
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct SwarmBenchConfig {
    /// Receivers (the origin is extra).
    pub receivers: usize,
    /// Bytes of the directory.
    pub size: u64,
    /// Every host's link rate in Mbit/s, both directions.
    pub rate_mbit: f64,
    /// Per-host rates overriding `rate_mbit` (`origin`, `r1`, `r2`, ...).
    pub host_rates: BTreeMap<String, f64>,
    /// Chunk size.
    pub chunk_size: u32,
    /// The runs, in order.
    pub strategies: Vec<Strategy>,
    /// Give up on a run after this long.
    pub timeout: Duration,
    /// Link counter sampling period.
    pub sample: Duration,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmRun {
    /// Who served.
    pub strategy: Strategy,
    /// Send to the last receiver complete, seconds.
    pub t_s: f64,
    /// The bound for this strategy: T* for the swarm, N·F/u_s for client-server.
    pub bound_s: f64,
    /// `t_s / bound_s`.
    pub ratio: f64,
    /// The origin's upload as a multiple of F.
    pub origin_upload: f64,
    /// Per receiver, seconds from the send to complete.
    pub completion_s: BTreeMap<String, f64>,
    /// Link utilisation samples: seconds since send, the sum of every host's upload in
    /// Mbit/s, the origin's upload in Mbit/s, and the receivers' mean download as a fraction
    /// of their link rates.
    pub utilisation: Vec<UtilSample>,
    /// Mean utilisation of all receivers' download capacity over the run.
    pub mean_download_utilisation: f64,
}

/// One utilisation sample.
#[derive(Debug, Clone, Serialize)]
pub struct UtilSample {
    /// Seconds since the send.
    pub t_s: f64,
    /// Every host's upload summed, Mbit/s.
    pub total_up_mbit: f64,
    /// The origin's upload, Mbit/s.
    pub origin_up_mbit: f64,
    /// Receivers' download over their capacity, 0..1.
    pub download_utilisation: f64,
}

/// Both runs and the bounds.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmBenchReport {
    /// Receivers.
    pub receivers: usize,
    /// Bytes.
    pub bytes: u64,
    /// Files.
    pub files: u64,
    /// Rates used, Mbit/s, per host.
    pub rates_mbit: BTreeMap<String, f64>,
    /// T* in seconds.
    pub t_star_s: f64,
    /// N·F/u_s in seconds.
    pub client_server_bound_s: f64,
    /// The runs.
    pub runs: Vec<SwarmRun>,
}

fn bytes_per_s(mbit: f64) -> f64 {
    mbit * 1e6 / 8.0
}

/// T* = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)) in seconds, rates in Mbit/s (both directions
/// of a link have the same rate here).
pub fn t_star(f: f64, origin_mbit: f64, receivers_mbit: &[f64]) -> f64 {
    let us = bytes_per_s(origin_mbit);
    let dmin = receivers_mbit
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-9);
    let sum_u: f64 = receivers_mbit.iter().map(|r| bytes_per_s(*r)).sum();
    let n = receivers_mbit.len() as f64;
    (f / us)
        .max(f / bytes_per_s(dmin))
        .max(n * f / (us + sum_u))
}

/// Run the benchmark with the binary at `exe`.
pub async fn run(exe: PathBuf, config: &SwarmBenchConfig) -> Result<SwarmBenchReport> {
    crate::netns::preflight()?;
    if config.receivers == 0 || config.size == 0 {
        bail!("--receivers and --size must be positive");
    }
    let names: Vec<String> = std::iter::once("origin".to_owned())
        .chain((1..=config.receivers).map(|i| format!("r{i}")))
        .collect();
    if let Some(unknown) = config.host_rates.keys().find(|h| !names.contains(h)) {
        bail!(
            "--host-rate names {unknown}, which is not a host (origin, r1..r{})",
            config.receivers
        );
    }
    let rate = |n: &str| {
        config
            .host_rates
            .get(n)
            .copied()
            .unwrap_or(config.rate_mbit)
    };
    let rates: BTreeMap<String, f64> = names.iter().map(|n| (n.clone(), rate(n))).collect();
    for (n, r) in &rates {
        LinkSpec {
            rate_mbit: Some(*r),
            ..LinkSpec::default()
        }
        .validate()
        .with_context(|| format!("rate of {n}"))?;
    }
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-bench-swarm-")
        .tempdir()?;
    let source = tmp.path().join("dataset");
    let (files, bytes) = tree::generate(&source, config.size, 0x5eed)?;
    let f = bytes as f64;
    let receiver_rates: Vec<f64> = names[1..].iter().map(|n| rates[n]).collect();
    let t_star = t_star(f, rates["origin"], &receiver_rates);
    let cs_bound = config.receivers as f64 * f / bytes_per_s(rates["origin"]);
    let mut runs = Vec::new();
    for (k, strategy) in config.strategies.iter().enumerate() {
        let root = tmp.path().join(format!("run{k}"));
        std::fs::create_dir_all(&root)?;
        let bound = match strategy {
            Strategy::Swarm => t_star,
            Strategy::OriginOnly => cs_bound,
        };
        let r = run_once(
            &exe, config, *strategy, &root, &source, &names, &rates, bytes, bound,
        )
        .await
        .with_context(|| format!("{} run", strategy.as_arg()))?;
        runs.push(r);
    }
    Ok(SwarmBenchReport {
        receivers: config.receivers,
        bytes,
        files,
        rates_mbit: rates,
        t_star_s: t_star,
        client_server_bound_s: cs_bound,
        runs,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_once(
    exe: &Path,
    config: &SwarmBenchConfig,
    strategy: Strategy,
    root: &Path,
    source: &Path,
    names: &[String],
    rates: &BTreeMap<String, f64>,
    bytes: u64,
    bound: f64,
) -> Result<SwarmRun> {
    let mut lab = Lab::new(1)?;
    lab.set_default_link(LinkSpec {
        rate_mbit: Some(config.rate_mbit),
        ..LinkSpec::default()
    })?;
    let mut cluster = LocalCluster::new(exe.to_owned(), root, Timings::default())?.with_lab(lab);
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(1)?;
    // Client-server needs every receiver connected to the origin: a full mesh.
    let mesh = names.len().to_string();
    let mut extra = vec!["--strategy", strategy.as_arg()];
    if strategy == Strategy::OriginOnly {
        extra.extend(["--neighbours", mesh.as_str()]);
    }
    for n in names {
        cluster.start_node_with(n, &seeds, &[], &extra)?;
        if let Some(r) = config.host_rates.get(n) {
            let lab = cluster.lab_mut().context("lab")?;
            lab.set_link(
                n,
                LinkSpec {
                    rate_mbit: Some(*r),
                    ..LinkSpec::default()
                },
            )?;
        }
    }
    // Joined, with enough neighbours (all of them for client-server).
    let want = match strategy {
        Strategy::Swarm => config.receivers.min(8),
        Strategy::OriginOnly => config.receivers,
    };
    let dirs = cluster
        .wait_joined(names, want, Duration::from_secs(60))
        .await?;
    let info = control::send(&dirs[0], source.to_owned(), config.chunk_size)
        .await
        .context("send")?;
    let t0 = Instant::now();
    let lab = cluster.lab().context("lab")?;
    let mut last: BTreeMap<String, Counters> = lab.counters()?;
    let mut last_t = t0;
    let mut next_sample = t0 + config.sample;
    let mut samples = Vec::new();
    let mut completion = BTreeMap::new();
    let receivers = &names[1..];
    let capacity: f64 = receivers.iter().map(|n| rates[n]).sum();
    while completion.len() < receivers.len() {
        if t0.elapsed() > config.timeout {
            bail!(
                "{}/{} receivers complete after {:?}",
                completion.len(),
                receivers.len(),
                config.timeout
            );
        }
        for (n, d) in receivers.iter().zip(&dirs[1..]) {
            if completion.contains_key(n) {
                continue;
            }
            let done = control::list(d)
                .await
                .unwrap_or_default()
                .iter()
                .any(|b| b.id == info.id && b.is_done());
            if done {
                completion.insert(n.clone(), t0.elapsed().as_secs_f64());
            }
        }
        if Instant::now() >= next_sample {
            let now = Instant::now();
            let c = lab.counters()?;
            let dt = (now - last_t).as_secs_f64().max(1e-3);
            let mbit = |b: u64| b as f64 * 8.0 / 1e6 / dt;
            let up = |n: &str| c.get(n).map_or(0, |x| x.up) - last.get(n).map_or(0, |x| x.up);
            let down = |n: &str| c.get(n).map_or(0, |x| x.down) - last.get(n).map_or(0, |x| x.down);
            samples.push(UtilSample {
                t_s: (now - t0).as_secs_f64(),
                total_up_mbit: names.iter().map(|n| mbit(up(n))).sum(),
                origin_up_mbit: mbit(up("origin")),
                download_utilisation: receivers.iter().map(|n| mbit(down(n))).sum::<f64>()
                    / capacity,
            });
            last = c;
            last_t = now;
            next_sample = now + config.sample;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = t0.elapsed().as_secs_f64();
    let uploaded = control::list(&dirs[0])
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|b| b.id == info.id)
        .map_or(0, |b| b.uploaded_bytes);
    // Every chunk was verified on arrival; check one whole copy byte for byte as well.
    tree::verify(source, &dirs[1].join("received").join("dataset"))?;
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|s| s.download_utilisation).sum::<f64>() / samples.len() as f64
    };
    Ok(SwarmRun {
        strategy,
        t_s: t,
        bound_s: bound,
        ratio: t / bound,
        origin_upload: uploaded as f64 / bytes.max(1) as f64,
        completion_s: completion,
        utilisation: samples,
        mean_download_utilisation: mean,
    })
}

impl SwarmBenchReport {
    /// A human summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let mib = self.bytes as f64 / (1u64 << 20) as f64;
        let _ = writeln!(
            s,
            "bench swarm: 1 origin -> {} receivers, {mib:.0} MiB in {} files",
            self.receivers, self.files
        );
        let distinct: std::collections::BTreeSet<String> =
            self.rates_mbit.values().map(|r| format!("{r}")).collect();
        let _ = writeln!(
            s,
            "  links: {} Mbit/s each way{}",
            distinct.into_iter().collect::<Vec<_>>().join("/"),
            if self
                .rates_mbit
                .values()
                .any(|r| Some(r) != self.rates_mbit.get("origin"))
            {
                " (per host, see JSON)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  T* = {:.2} s   client-server bound N*F/u_s = {:.2} s",
            self.t_star_s, self.client_server_bound_s
        );
        for r in &self.runs {
            let times: Vec<f64> = r.completion_s.values().copied().collect();
            let first = times.iter().copied().fold(f64::INFINITY, f64::min);
            let _ = writeln!(
                s,
                "  {:<12} T = {:7.2} s   T/bound = {:.3}   origin upload {:.2} x F   receivers done {:.2}..{:.2} s   mean download use {:.0}%",
                r.strategy.as_arg(),
                r.t_s,
                r.ratio,
                r.origin_upload,
                first,
                r.t_s,
                r.mean_download_utilisation * 100.0
            );
        }
        let swarm = self.runs.iter().find(|r| r.strategy == Strategy::Swarm);
        let cs = self
            .runs
            .iter()
            .find(|r| r.strategy == Strategy::OriginOnly);
        if let Some(sw) = swarm {
            let _ = writeln!(s, "  swarm T/T* = {:.3}", sw.t_s / self.t_star_s);
            if let Some(cs) = cs {
                let _ = writeln!(s, "  speedup over client-server: {:.2}x", cs.t_s / sw.t_s);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_star_takes_the_tightest_of_the_three_bounds() {
        let f = 256.0 * (1u64 << 20) as f64;
        // 16 receivers at 100 Mbit/s, origin at 100: F/u_s dominates (21.47 s).
        let t = t_star(f, 100.0, &[100.0; 16]);
        assert!((t - f / 12.5e6).abs() < 1e-6, "{t}");
        // A slow receiver: F/d_min.
        let mut r = vec![100.0; 16];
        r[3] = 10.0;
        assert!((t_star(f, 100.0, &r) - f / 1.25e6).abs() < 1e-6);
        // A fast origin with slow receivers: N·F/(u_s + Σu_i).
        let t = t_star(f, 1000.0, &[20.0; 16]);
        let expect = 16.0 * f / (125e6 + 16.0 * 2.5e6);
        assert!((t - expect.max(f / 2.5e6)).abs() < 1e-6);
        let t = t_star(f, 10.0, &[1000.0; 4]);
        assert!((t - f / 1.25e6).abs() < 1e-6);
        // Fast receivers, faster origin: the aggregate term binds.
        let t = t_star(f, 100.0, &[5000.0; 2]);
        assert!((t - (f / 12.5e6)).abs() < 1e-6);
    }
}

//! `swarmcast bench swarm` (netns, root): one origin and N receivers, each in its own network
//! namespace with its link shaped (both ways with HTB, or the uplink only with `tbf`), a
//! generated directory of size F, every daemon started as a user starts it (`node join` with
//! no tuning flag). The broadcast is started as a user starts it too: `swarmcast node send DIR
//! --wait` run at the origin, inside its namespace, with `node send`'s default chunk size unless
//! `--chunk-size` asks for another (an experiment: it changes the product default).
//!
//! It measures the user's figure T_user, from the start of `node send` to the return of
//! `--wait`, and the last receiver's completion beside it, and compares both with the lower
//! bound
//!
//! ```text
//! T* = max( F/u_s , F/d_min , N·F/(u_s + Σ u_i) )
//! ```
//!
//! from the configured rates (without the F/d_min term when downloads are unshaped), and (in
//! the same run, on the same links) with a client-server baseline where only the origin
//! serves, beside its own bound N·F/u_s. Link counters are sampled on the switch side of every
//! veth to give the utilisation over time. With a trace directory every daemon writes its wire
//! trace there and the run's [`lab_trace`] summary is written beside them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use swarmcast_node::control;
use swarmcast_node::neighbours::NeighbourConfig;
use swarmcast_node::wiretrace;

use crate::lab_cpu::{self, CpuReport};
use crate::lab_trace::{self, LinkSample, TraceInput, TraceSummary};
use crate::netns::{Lab, LinkSpec, Shaper};
use crate::procs::{LocalCluster, Timings};
use crate::tree;

/// How often the lab asks every receiver whether it is done.
const POLL: Duration = Duration::from_millis(25);

/// The generated directory's name (and so the broadcast's).
const DATASET: &str = "dataset";

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
    /// Every host's link rate in Mbit/s.
    pub rate_mbit: f64,
    /// Per-host rates overriding `rate_mbit` (`origin`, `r1`, `r2`, ...).
    pub host_rates: BTreeMap<String, f64>,
    /// `node send --chunk-size`; `None` passes no flag, so `node send`'s default applies.
    pub chunk_size: Option<u32>,
    /// How the rates are applied.
    pub shaper: Shaper,
    /// Delay added in each direction of every host's link, ms (the lab's nfqueue impairment).
    pub delay_ms: f64,
    /// Packets dropped in each direction of every host's link, percent.
    pub loss_pct: f64,
    /// The runs, in order.
    pub strategies: Vec<Strategy>,
    /// Give up on a run after this long.
    pub timeout: Duration,
    /// Link counter sampling period.
    pub sample: Duration,
    /// Write every daemon's wire trace and each run's summary here.
    pub trace: Option<PathBuf>,
    /// Extra `node join` flags for the origin (an experiment, e.g. `--max-upload 20Mbit`).
    pub origin_flags: Vec<String>,
    /// Extra `node join` flags for every node (experiments).
    pub node_flags: Vec<String>,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmRun {
    /// Who served.
    pub strategy: Strategy,
    /// The broadcast's chunk size, as `node send` reported it.
    pub chunk_size: u32,
    /// The user's figure: from the start of `node send` to the return of `--wait`, seconds.
    pub t_user_s: f64,
    /// The bound for this strategy: T* for the swarm, N·F/u_s for client-server.
    pub bound_s: f64,
    /// `t_user_s / bound_s`: the headline.
    pub ratio: f64,
    /// From the start of `node send` to the last receiver's completion, seconds.
    pub last_done_s: f64,
    /// `last_done_s / bound_s`.
    pub last_done_ratio: f64,
    /// From the start of `node send` to the first request of any receiver (trace only).
    pub first_request_s: Option<f64>,
    /// From the first request to the last completion (trace only).
    pub last_done_from_first_request_s: Option<f64>,
    /// From the start of `node send` until the lab first saw a receiver holding payload
    /// (polling; an upper bound on the first request's time).
    pub first_data_s: Option<f64>,
    /// `t_user_s − last_done_s`: how late `--wait` returned after the last completion.
    pub wait_lag_s: f64,
    /// Where the completion times come from: `trace` (each daemon's `done` event) or `polling`
    /// (the lab asking every receiver every 25 ms).
    pub completion_source: &'static str,
    /// The origin's upload as a multiple of F.
    pub origin_upload: f64,
    /// Per receiver, seconds from the start of `node send` to complete.
    pub completion_s: BTreeMap<String, f64>,
    /// Link utilisation samples: seconds since send, the sum of every host's upload in
    /// Mbit/s, the origin's upload in Mbit/s, and the receivers' mean download as a fraction
    /// of their link rates.
    pub utilisation: Vec<UtilSample>,
    /// Mean utilisation of all receivers' download capacity over the run.
    pub mean_download_utilisation: f64,
    /// The trace summary, with a trace directory.
    pub trace: Option<TraceSummary>,
    /// CPU of every daemon (and the bootstrap) and of the machine, from the start of
    /// `node send` to the end of the run.
    pub cpu: CpuReport,
    /// Per host, its busiest second: the highest upload over any span of consecutive link
    /// samples lasting at least 1 s, in Mbit/s (what a bandwidth cap is held to).
    pub busiest_second_up_mbit: BTreeMap<String, f64>,
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
    /// Receivers' download over their link rates, 0..1 (above 1 is possible when downloads
    /// are unshaped).
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
    /// How they were applied.
    pub shaper: Shaper,
    /// Delay added in each direction of every link, ms.
    pub delay_ms: f64,
    /// Loss in each direction of every link, percent.
    pub loss_pct: f64,
    /// The flags of this run that change a product default (empty: the product as shipped).
    pub experiments: Vec<String>,
    /// T* in seconds.
    pub t_star_s: f64,
    /// N·F/u_s in seconds.
    pub client_server_bound_s: f64,
    /// The trace directory.
    pub trace_dir: Option<PathBuf>,
    /// The runs.
    pub runs: Vec<SwarmRun>,
}

impl SwarmBenchConfig {
    /// A host's link at `rate_mbit`, with the run's delay and loss.
    fn link(&self, rate_mbit: f64) -> LinkSpec {
        LinkSpec {
            rate_mbit: Some(rate_mbit),
            delay_ms: self.delay_ms,
            loss_pct: self.loss_pct,
            ..LinkSpec::default()
        }
    }
}

fn bytes_per_s(mbit: f64) -> f64 {
    mbit * 1e6 / 8.0
}

/// T* = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)) in seconds, rates in Mbit/s (each host's rate is
/// its upload and, when `downloads_shaped`, its download too; otherwise the F/d_min term goes).
pub fn t_star(f: f64, origin_mbit: f64, receivers_mbit: &[f64], downloads_shaped: bool) -> f64 {
    let us = bytes_per_s(origin_mbit);
    let sum_u: f64 = receivers_mbit.iter().map(|r| bytes_per_s(*r)).sum();
    let n = receivers_mbit.len() as f64;
    let mut t = (f / us).max(n * f / (us + sum_u));
    if downloads_shaped {
        let dmin = receivers_mbit
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .max(1e-9);
        t = t.max(f / bytes_per_s(dmin));
    }
    t
}

/// "1MiB", "256KiB", "4100B".
fn human_chunk(b: u32) -> String {
    if b % (1 << 20) == 0 {
        format!("{}MiB", b >> 20)
    } else if b % (1 << 10) == 0 {
        format!("{}KiB", b >> 10)
    } else {
        format!("{b}B")
    }
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
        config
            .link(*r)
            .validate()
            .with_context(|| format!("link of {n}"))?;
    }
    // The daemons get the trace paths in their environment: absolute ones.
    let mut config = config.clone();
    if let Some(dir) = &config.trace {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the trace directory {}", dir.display()))?;
        config.trace = Some(dir.canonicalize()?);
    }
    let config = &config;
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-bench-swarm-")
        .tempdir()?;
    let source = tmp.path().join(DATASET);
    let (files, bytes) = tree::generate(&source, config.size, 0x5eed)?;
    let f = bytes as f64;
    let receiver_rates: Vec<f64> = names[1..].iter().map(|n| rates[n]).collect();
    let t_star = t_star(
        f,
        rates["origin"],
        &receiver_rates,
        config.shaper.shapes_download(),
    );
    let cs_bound = config.receivers as f64 * f / bytes_per_s(rates["origin"]);
    let mut runs = Vec::new();
    for (k, strategy) in config.strategies.iter().enumerate() {
        let root = tmp.path().join(format!("run{k}"));
        std::fs::create_dir_all(&root)?;
        let bound = match strategy {
            Strategy::Swarm => t_star,
            Strategy::OriginOnly => cs_bound,
        };
        let label = format!("run{k}-{}", strategy.as_arg());
        let r = run_once(
            &exe, config, *strategy, &root, &source, &names, &rates, bytes, bound, &label,
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
        shaper: config.shaper,
        delay_ms: config.delay_ms,
        loss_pct: config.loss_pct,
        experiments: config
            .chunk_size
            .map(|c| format!("--chunk-size {}", human_chunk(c)))
            .into_iter()
            .chain(
                (!config.origin_flags.is_empty())
                    .then(|| format!("origin: {}", config.origin_flags.join(" "))),
            )
            .chain(
                (!config.node_flags.is_empty())
                    .then(|| format!("every node: {}", config.node_flags.join(" "))),
            )
            .collect(),
        t_star_s: t_star,
        client_server_bound_s: cs_bound,
        trace_dir: config.trace.clone(),
        runs,
    })
}

/// The `node send --wait` of a run: started at the origin, inside its namespace.
struct Send {
    child: tokio::process::Child,
    out: PathBuf,
    err: PathBuf,
}

impl Send {
    fn start(
        cluster: &LocalCluster,
        exe: &Path,
        source: &Path,
        origin_dir: &Path,
        root: &Path,
        chunk_size: Option<u32>,
    ) -> Result<Self> {
        let mut cmd = cluster.command_at("origin", exe)?;
        cmd.arg("node")
            .arg("send")
            .arg(source)
            .arg("--data-dir")
            .arg(origin_dir)
            .args(["--wait", "--json"]);
        if let Some(c) = chunk_size {
            cmd.args(["--chunk-size", &c.to_string()]);
        }
        // A one-shot command logs at its own default level, as a user's does.
        cmd.env_remove("RUST_LOG");
        let out = root.join("send.out");
        let err = root.join("send.err");
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?);
        let mut cmd = tokio::process::Command::from(cmd);
        // Killed by its PID if the run ends early.
        cmd.kill_on_drop(true);
        let child = cmd.spawn().context("starting node send")?;
        Ok(Self { child, out, err })
    }

    /// Its output, once it has exited with `status`: the broadcast's id and chunk size.
    fn result(&self, status: std::process::ExitStatus) -> Result<(String, u32)> {
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let err = std::fs::read_to_string(&self.err).unwrap_or_default();
        if !status.success() {
            bail!(
                "node send --wait failed ({status}): {}{}",
                out.trim(),
                err.trim()
            );
        }
        let v: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("node send --json printed {out:?}"))?;
        let id = v["broadcast"]["id"]
            .as_str()
            .context("no broadcast id in node send's output")?
            .to_owned();
        let chunk = v["broadcast"]["chunk_size"]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .context("no chunk size in node send's output")?;
        Ok((id, chunk))
    }
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
    label: &str,
) -> Result<SwarmRun> {
    let mut lab = Lab::new(1)?;
    lab.set_shaper(config.shaper)?;
    lab.set_default_link(config.link(config.rate_mbit))?;
    // The binary's own timings and log level: the product as shipped.
    let mut cluster = LocalCluster::new(exe.to_owned(), root, Timings::default())?
        .with_binary_timings()
        .with_default_logs()
        .with_lab(lab);
    let seeds: Vec<SocketAddr> = cluster.start_bootstraps(1)?;
    // Client-server needs every receiver connected to the origin: a full mesh. The swarm run
    // passes nothing: `node join`'s defaults.
    let mesh = names.len().to_string();
    let extra: Vec<&str> = match strategy {
        Strategy::Swarm => Vec::new(),
        Strategy::OriginOnly => vec!["--strategy", "origin-only", "--neighbours", &mesh],
    };
    let mut traces: BTreeMap<String, PathBuf> = BTreeMap::new();
    for n in names {
        let mut env: Vec<(&str, String)> = Vec::new();
        if let Some(dir) = &config.trace {
            // Daemons append: start from an empty file.
            let path = dir.join(format!("{label}-{n}.jsonl"));
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            env.push((wiretrace::ENV, path.to_string_lossy().into_owned()));
            traces.insert(n.clone(), path);
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut flags = extra.clone();
        flags.extend(config.node_flags.iter().map(String::as_str));
        if n == &names[0] {
            flags.extend(config.origin_flags.iter().map(String::as_str));
        }
        cluster.start_node_with(n, &seeds, &env, &flags)?;
        if let Some(r) = config.host_rates.get(n) {
            let lab = cluster.lab_mut().context("lab")?;
            lab.set_link(n, config.link(*r))?;
        }
    }
    // Joined, with enough neighbours (all of them for client-server).
    let want = match strategy {
        Strategy::Swarm => config.receivers.min(NeighbourConfig::default().target),
        Strategy::OriginOnly => config.receivers,
    };
    let dirs = cluster
        .wait_joined(names, want, Duration::from_secs(60))
        .await?;
    let lab = cluster.lab().context("lab")?;
    let mut links = vec![LinkSample {
        t_us: wiretrace::now_us(),
        hosts: lab.counters()?,
    }];
    let pids: Vec<(String, u32)> = (cluster.procs.iter())
        .filter_map(|p| Some((p.name.clone(), p.pid()?)))
        .collect();
    let cpu_start = lab_cpu::sample(&pids);
    let t0 = Instant::now();
    let t0_us = wiretrace::now_us();
    let mut send = Send::start(&cluster, exe, source, &dirs[0], root, config.chunk_size)?;
    let mut next_sample = t0 + config.sample;
    let mut completion = BTreeMap::new();
    let mut first_data: Option<f64> = None;
    let mut exited: Option<(f64, u64, std::process::ExitStatus)> = None;
    let receivers = &names[1..];
    while exited.is_none() || completion.len() < receivers.len() {
        if t0.elapsed() > config.timeout {
            bail!(
                "{}/{} receivers complete, node send --wait {}, after {:?}",
                completion.len(),
                receivers.len(),
                if exited.is_some() {
                    "returned"
                } else {
                    "still waiting"
                },
                config.timeout
            );
        }
        if exited.is_none() {
            tokio::select! {
                status = send.child.wait() => {
                    let status = status.context("waiting for node send")?;
                    exited = Some((t0.elapsed().as_secs_f64(), wiretrace::now_us(), status));
                    if !status.success() {
                        send.result(status)?;
                    }
                }
                () = tokio::time::sleep(POLL) => {}
            }
        } else {
            tokio::time::sleep(POLL).await;
        }
        for (n, d) in receivers.iter().zip(&dirs[1..]) {
            if completion.contains_key(n) {
                continue;
            }
            let list = control::list(d).await.unwrap_or_default();
            let Some(b) = list.iter().find(|b| b.name == DATASET) else {
                continue;
            };
            if b.fetched_bytes > 0 && first_data.is_none() {
                first_data = Some(t0.elapsed().as_secs_f64());
            }
            if b.is_done() {
                completion.insert(n.clone(), t0.elapsed().as_secs_f64());
            } else if let Some(e) = &b.error {
                bail!("{n} failed the broadcast: {e}");
            }
        }
        if Instant::now() >= next_sample {
            links.push(LinkSample {
                t_us: wiretrace::now_us(),
                hosts: lab.counters()?,
            });
            next_sample = Instant::now() + config.sample;
        }
    }
    let cpu = lab_cpu::between(
        &cpu_start,
        &lab_cpu::sample(&pids),
        t0.elapsed().as_secs_f64(),
    );
    links.push(LinkSample {
        t_us: wiretrace::now_us(),
        hosts: lab.counters()?,
    });
    let (t_user, return_us, status) = exited.context("node send")?;
    let (id, chunk_size) = send.result(status)?;
    let uploaded = control::list(&dirs[0])
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|b| b.id == id)
        .map_or(0, |b| b.uploaded_bytes);
    // Every chunk was verified on arrival; check one whole copy byte for byte as well.
    tree::verify(source, &dirs[1].join("received").join(DATASET))?;
    let (utilisation, mean) = utilisation(&links, t0_us, names, rates);
    let busiest_second_up_mbit = names
        .iter()
        .map(|n| (n.clone(), busiest_second(&links, n)))
        .collect();

    let mut completion_source = "polling";
    let mut summary = None;
    if let Some(dir) = &config.trace {
        let mut input = TraceInput {
            bytes,
            origin: names[0].clone(),
            broadcast: id.get(..8).map(str::to_owned),
            send_start_us: t0_us,
            send_return_us: Some(return_us),
            upload_mbit: rates.clone(),
            links: links.clone(),
            ..TraceInput::default()
        };
        for (n, path) in &traces {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let (events, bad) = lab_trace::parse(&text);
            input.unparsed_lines += bad;
            input.hosts.insert(n.clone(), events);
        }
        let s = lab_trace::summarise(&input);
        let traced: BTreeMap<String, f64> = s
            .hosts
            .iter()
            .filter_map(|h| Some((h.name.clone(), h.done_s?)))
            .filter(|(n, _)| receivers.contains(n))
            .collect();
        if traced.len() == receivers.len() {
            completion = traced;
            completion_source = "trace";
        }
        std::fs::write(dir.join(format!("{label}-summary.txt")), s.to_text())?;
        std::fs::write(
            dir.join(format!("{label}-summary.json")),
            serde_json::to_string_pretty(&s)?,
        )?;
        let mut samples = String::new();
        for l in &links {
            samples.push_str(&serde_json::to_string(l)?);
            samples.push('\n');
        }
        std::fs::write(dir.join(format!("{label}-links.jsonl")), samples)?;
        summary = Some(s);
    }
    let last_done = completion.values().copied().fold(0.0, f64::max);
    let first_request = summary.as_ref().and_then(|s| s.first_request_s);
    Ok(SwarmRun {
        strategy,
        chunk_size,
        t_user_s: t_user,
        bound_s: bound,
        ratio: t_user / bound,
        last_done_s: last_done,
        last_done_ratio: last_done / bound,
        first_request_s: first_request,
        last_done_from_first_request_s: first_request.map(|f| last_done - f),
        first_data_s: first_data,
        wait_lag_s: t_user - last_done,
        completion_source,
        origin_upload: uploaded as f64 / bytes.max(1) as f64,
        completion_s: completion,
        utilisation,
        mean_download_utilisation: mean,
        trace: summary,
        cpu,
        busiest_second_up_mbit,
    })
}

/// Utilisation between consecutive counter samples, and the mean download use.
/// `host`'s highest upload over any span of consecutive samples lasting at least 1 s, Mbit/s.
fn busiest_second(links: &[LinkSample], host: &str) -> f64 {
    let up = |s: &LinkSample| s.hosts.get(host).map_or(0, |c| c.up);
    let mut best = 0.0f64;
    let mut j = 0;
    for i in 0..links.len() {
        j = j.max(i + 1);
        while j < links.len() && links[j].t_us < links[i].t_us + 1_000_000 {
            j += 1;
        }
        let Some(b) = links.get(j) else {
            break;
        };
        let dt = b.t_us.saturating_sub(links[i].t_us) as f64 / 1e6;
        let mbit = up(b).saturating_sub(up(&links[i])) as f64 * 8.0 / 1e6 / dt;
        best = best.max(mbit);
    }
    best
}

fn utilisation(
    links: &[LinkSample],
    t0_us: u64,
    names: &[String],
    rates: &BTreeMap<String, f64>,
) -> (Vec<UtilSample>, f64) {
    let receivers = &names[1..];
    let capacity: f64 = receivers.iter().map(|n| rates[n]).sum();
    let mut samples = Vec::new();
    for pair in links.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let dt = (b.t_us.saturating_sub(a.t_us) as f64 / 1e6).max(1e-3);
        let mbit = |x: u64| x as f64 * 8.0 / 1e6 / dt;
        let up = |n: &str| {
            let get = |s: &LinkSample| s.hosts.get(n).map_or(0, |c| c.up);
            get(b).saturating_sub(get(a))
        };
        let down = |n: &str| {
            let get = |s: &LinkSample| s.hosts.get(n).map_or(0, |c| c.down);
            get(b).saturating_sub(get(a))
        };
        samples.push(UtilSample {
            t_s: b.t_us.saturating_sub(t0_us) as f64 / 1e6,
            total_up_mbit: names.iter().map(|n| mbit(up(n))).sum(),
            origin_up_mbit: mbit(up(&names[0])),
            download_utilisation: receivers.iter().map(|n| mbit(down(n))).sum::<f64>() / capacity,
        });
    }
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|s| s.download_utilisation).sum::<f64>() / samples.len() as f64
    };
    (samples, mean)
}

impl SwarmBenchReport {
    /// A human summary (with each run's trace summary, if traced).
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
        let how = match self.shaper {
            Shaper::HtbBoth => "each way (HTB, 50 ms queue)",
            Shaper::TbfUplink => "uplink only (tbf, 50 ms queue, 64 KiB burst), downloads unshaped",
        };
        let _ = writeln!(
            s,
            "  links: {} Mbit/s {how}{}",
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
        if self.delay_ms > 0.0 || self.loss_pct > 0.0 {
            let _ = writeln!(
                s,
                "  impaired: {} ms delay and {}% loss in each direction of every link",
                self.delay_ms, self.loss_pct
            );
        }
        let chunk = self
            .runs
            .first()
            .map_or_else(|| "-".to_owned(), |r| human_chunk(r.chunk_size));
        if self.experiments.is_empty() {
            let _ = writeln!(
                s,
                "  product defaults (node join and node send as shipped): chunk size {chunk}"
            );
        } else {
            let _ = writeln!(
                s,
                "  experiment, not the product's defaults: {} (chunk size {chunk})",
                self.experiments.join(" ")
            );
        }
        let _ = writeln!(
            s,
            "  T* = {:.2} s   client-server bound N*F/u_s = {:.2} s",
            self.t_star_s, self.client_server_bound_s
        );
        let _ = writeln!(
            s,
            "  T_user: from the start of `node send --wait` at the origin to its return"
        );
        for r in &self.runs {
            let first = r
                .completion_s
                .values()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let from_first = match (r.last_done_from_first_request_s, r.first_data_s) {
                (Some(d), _) => format!("{d:.2} s from the first request"),
                (None, Some(fd)) => format!(
                    "{:.2} s from the first payload seen (polling)",
                    r.last_done_s - fd
                ),
                (None, None) => "-".to_owned(),
            };
            let _ = writeln!(
                s,
                "  {:<12} T_user = {:.2} s   T_user/bound = {:.3}   last done {:.2} s (/bound {:.3}; {from_first})   --wait {:+.2} s after it   origin upload {:.2} x F   receivers done {:.2}..{:.2} s ({})   mean download use {:.0}%",
                r.strategy.as_arg(),
                r.t_user_s,
                r.ratio,
                r.last_done_s,
                r.last_done_ratio,
                r.wait_lag_s,
                r.origin_upload,
                first,
                r.last_done_s,
                r.completion_source,
                r.mean_download_utilisation * 100.0
            );
            if let Some(b) = r.busiest_second_up_mbit.get("origin") {
                let _ = writeln!(s, "  {:<12} origin's busiest second: {b:.2} Mbit/s up", "");
            }
            let _ = writeln!(s, "               {}", r.cpu.to_text("origin"));
        }
        let swarm = self.runs.iter().find(|r| r.strategy == Strategy::Swarm);
        let cs = self
            .runs
            .iter()
            .find(|r| r.strategy == Strategy::OriginOnly);
        if let Some(sw) = swarm {
            let _ = writeln!(
                s,
                "  swarm T/T* = {:.3} (T = T_user; last completion {:.3})",
                sw.t_user_s / self.t_star_s,
                sw.last_done_s / self.t_star_s
            );
            if let Some(cs) = cs {
                let _ = writeln!(
                    s,
                    "  speedup over client-server: {:.2}x",
                    cs.t_user_s / sw.t_user_s
                );
            }
        }
        for (k, r) in self.runs.iter().enumerate() {
            if let Some(t) = &r.trace {
                let _ = writeln!(s, "\n{} run {k}:", r.strategy.as_arg());
                s.push_str(&t.to_text());
            }
        }
        if let Some(d) = &self.trace_dir {
            let _ = writeln!(
                s,
                "\ntraces and summaries in {} (runK-STRATEGY-HOST.jsonl, -summary.txt, -summary.json, -links.jsonl)",
                d.display()
            );
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
        let t = t_star(f, 100.0, &[100.0; 16], true);
        assert!((t - f / 12.5e6).abs() < 1e-6, "{t}");
        // A slow receiver: F/d_min.
        let mut r = vec![100.0; 16];
        r[3] = 10.0;
        assert!((t_star(f, 100.0, &r, true) - f / 1.25e6).abs() < 1e-6);
        // Downloads unshaped: the slow receiver's upload only counts in the aggregate term.
        let t = t_star(f, 100.0, &r, false);
        assert!((t - f / 12.5e6).abs() < 1e-6, "{t}");
        // A fast origin with slow receivers: N·F/(u_s + Σu_i).
        let t = t_star(f, 1000.0, &[20.0; 16], true);
        let expect = 16.0 * f / (125e6 + 16.0 * 2.5e6);
        assert!((t - expect.max(f / 2.5e6)).abs() < 1e-6);
        let t = t_star(f, 10.0, &[1000.0; 4], true);
        assert!((t - f / 1.25e6).abs() < 1e-6);
        // Fast receivers, faster origin: the aggregate term binds.
        let t = t_star(f, 100.0, &[5000.0; 2], true);
        assert!((t - (f / 12.5e6)).abs() < 1e-6);
        // Without the download term, a fast origin and slow receivers: the aggregate term.
        let t = t_star(f, 1000.0, &[20.0; 16], false);
        assert!((t - expect).abs() < 1e-6, "{t}");
    }

    #[test]
    fn chunk_sizes_read_as_flags() {
        assert_eq!(human_chunk(1 << 20), "1MiB");
        assert_eq!(human_chunk(256 << 10), "256KiB");
        assert_eq!(human_chunk(4100), "4100B");
    }

    #[test]
    fn the_busiest_second_spans_at_least_a_second_of_samples() {
        let at = |ms: u64, up: u64| LinkSample {
            t_us: ms * 1000,
            hosts: BTreeMap::from([(
                "origin".to_owned(),
                crate::netns::Counters {
                    up,
                    ..Default::default()
                },
            )]),
        };
        // 1 MB per 100 ms for a second (80 Mbit/s), then a 0.2 s burst of 1 MB per 100 ms more:
        // the busiest second still carries only 10 MB (80 Mbit/s), never the burst's rate alone.
        let mut links: Vec<LinkSample> = (0..=10).map(|k| at(k * 100, k * 1_000_000)).collect();
        links.push(at(1100, 11_000_000));
        links.push(at(3000, 11_000_000));
        let b = busiest_second(&links, "origin");
        assert!((b - 80.0).abs() < 1e-6, "{b}");
        assert_eq!(busiest_second(&links, "nobody"), 0.0);
        assert_eq!(
            busiest_second(&links[..3], "origin"),
            0.0,
            "less than a second sampled"
        );
    }

    #[test]
    fn utilisation_between_samples() {
        let names = vec!["origin".to_owned(), "r1".to_owned()];
        let rates = BTreeMap::from([("origin".to_owned(), 8.0), ("r1".to_owned(), 8.0)]);
        let at = |t_ms: u64, up: u64, down: u64| LinkSample {
            t_us: 1_000_000 + t_ms * 1000,
            hosts: BTreeMap::from([
                (
                    "origin".to_owned(),
                    crate::netns::Counters {
                        up,
                        ..Default::default()
                    },
                ),
                (
                    "r1".to_owned(),
                    crate::netns::Counters {
                        down,
                        ..Default::default()
                    },
                ),
            ]),
        };
        // 0.5 MB in 1 s: 4 Mbit/s of an 8 Mbit/s link; then nothing.
        let links = [
            at(0, 0, 0),
            at(1000, 500_000, 500_000),
            at(2000, 500_000, 500_000),
        ];
        let (u, mean) = utilisation(&links, 1_000_000, &names, &rates);
        assert_eq!(u.len(), 2);
        assert!((u[0].origin_up_mbit - 4.0).abs() < 1e-9);
        assert!((u[0].download_utilisation - 0.5).abs() < 1e-9);
        assert!((u[1].t_s - 2.0).abs() < 1e-9);
        assert!((mean - 0.25).abs() < 1e-9);
    }
}

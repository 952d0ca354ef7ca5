//! Running a resolved schedule against real processes, and the checks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use swarmcast_bootstrap::listing::RegistryListing;
use swarmcast_node::control;
use swarmcast_node::data::{BroadcastInfo, COMMIT_INTERVAL};
use swarmcast_node::listing::BroadcastPhase;
use swarmcast_proto::{Role, Status};

use super::registry::{self, Entry};
use super::{Action, CheckKind, Event, Mode, Report, Scenario, replay_command};
use crate::netns::Lab;
use crate::procs::{LocalCluster, Timings};
use crate::tree;

/// What a restarted receiver may fetch twice beyond its in-flight window: endgame duplicates
/// and pieces cut short by the kill, a few 256 KiB pieces.
const REFETCH_SLACK: u64 = 2 << 20;
/// How many seconds of a receiver's fetch rate may be lost by a SIGKILL: what arrived since its
/// last group commit (`COMMIT_INTERVAL`, doubled for the commit's own time), the requests
/// queued at peers (`SwarmConfig::target_queue`, 200 ms) and the runner's sampling lag
/// ([`POLL`]).
const IN_FLIGHT_WINDOW_S: f64 = 2.0 * COMMIT_INTERVAL.as_secs_f64() + 0.2 + POLL.as_secs_f64();
/// The transfer's in-flight budget: what can be lost never exceeds it.
const IN_FLIGHT: u64 = 32 << 20;
const POLL: Duration = Duration::from_millis(200);

/// Run `scenario` with `seed` in `mode` using the `swarmcast` binary at `exe`. Writes the
/// report into `report_dir` (with the processes' logs) when given. Err, naming the seed and the
/// replay command, if any step or check failed. Netns mode fails at once if the lab cannot be
/// built (not root, tools missing): it never falls back to process mode.
pub async fn run(
    mode: Mode,
    exe: PathBuf,
    scenario: Scenario,
    seed: u64,
    report_dir: Option<PathBuf>,
) -> Result<Report> {
    let tmp = tempfile::Builder::new()
        .prefix("swarmcast-chaos-")
        .tempdir()
        .context("creating the run's directory")?;
    let root = tmp.path().to_owned();
    run_at(mode, exe, scenario, seed, &root, report_dir, false).await
}

/// [`run`] in the existing directory `root` (certificates, data dirs, dataset and logs go
/// there, and stay). With `narrate`, every fault, milestone and check is printed as it happens.
pub async fn run_at(
    mode: Mode,
    exe: PathBuf,
    scenario: Scenario,
    seed: u64,
    root: &std::path::Path,
    report_dir: Option<PathBuf>,
    narrate: bool,
) -> Result<Report> {
    let replay = replay_command(&scenario, seed, mode);
    let fail = |e: anyhow::Error| {
        anyhow!(
            "scenario {} failed (seed {seed}): {e:#}\nreplay: {replay}",
            scenario.name
        )
    };
    let schedule = scenario.schedule(seed).map_err(fail)?;
    if mode == Mode::Process && scenario.needs_netns() {
        return Err(anyhow!(
            "scenario {} partitions or shapes links: run it with --mode netns (root)",
            scenario.name
        ));
    }
    let mut r = Runner {
        root: root.to_owned(),
        exe: exe.clone(),
        narrate,
        deadline: scenario.deadline_s.map(Duration::from_secs),
        cluster: {
            let c = LocalCluster::new(exe, root, Timings::default()).map_err(fail)?;
            match mode {
                Mode::Process => c,
                Mode::Netns => c.with_lab(
                    Lab::new(seed)
                        .context("netns mode: building the network lab")
                        .map_err(fail)?,
                ),
            }
        },
        seeds: Vec::new(),
        t0: Instant::now(),
        report: Report {
            scenario: scenario.name.clone(),
            seed,
            mode,
            replay: replay.clone(),
            schedule: schedule.iter().map(ToString::to_string).collect(),
            ..Report::default()
        },
        dataset: None,
        broadcast: None,
        origin: None,
        ids: BTreeMap::new(),
        last: BTreeMap::new(),
        stopped: BTreeSet::new(),
        killed_at: BTreeMap::new(),
        fetched_at_kill: BTreeMap::new(),
        in_flight_at_kill: BTreeMap::new(),
        fetch_sample: BTreeMap::new(),
        fetch_rate: BTreeMap::new(),
        held_at_kill: BTreeMap::new(),
        restarted: BTreeSet::new(),
        last_registry_poll: Instant::now(),
    };
    let outcome = r.execute(&schedule).await;
    r.finish_report().await;
    r.report.passed = outcome.is_ok();
    r.report.error = outcome.as_ref().err().map(|e| format!("{e:#}"));
    // Kill everything (stopped ones included: SIGKILL works on a stopped process) before the
    // logs are copied and the temp dir goes.
    let report = r.report.clone();
    drop(r);
    if let Some(dir) = &report_dir {
        let logs_dir = dir.join("logs");
        std::fs::create_dir_all(&logs_dir).map_err(|e| fail(e.into()))?;
        for entry in std::fs::read_dir(root).map_err(|e| fail(e.into()))? {
            let p = entry.map_err(|e| fail(e.into()))?.path();
            if p.extension().is_some_and(|e| e == "log") {
                let _ = std::fs::copy(&p, logs_dir.join(p.file_name().unwrap_or_default()));
            }
        }
        if let Err(e) = report.write(dir) {
            eprintln!("could not write the report into {}: {e:#}", dir.display());
        }
    }
    // The summary always: without `--report` a run would otherwise say nothing but its exit code.
    say!("{}", report.summary());
    match outcome {
        Ok(()) => Ok(report),
        Err(e) => {
            let e = fail(e);
            eprintln!("{e:#}");
            Err(e)
        }
    }
}

/// The lines of the `*.log` files directly under `root` that carry the stall invariant's
/// warning ([`swarmcast_node::data::STALL_WARNING`]), each prefixed by its file's name.
fn stall_reports(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(root)
        .context("reading the run's logs")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for path in logs {
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        found.extend(
            String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| l.contains(swarmcast_node::data::STALL_WARNING))
                .map(|l| format!("{name}: {l}")),
        );
    }
    Ok(found)
}

struct Runner {
    root: PathBuf,
    exe: PathBuf,
    /// Print every event as it happens.
    narrate: bool,
    /// The scenario's completion bound, if it sets one.
    deadline: Option<Duration>,
    cluster: LocalCluster,
    seeds: Vec<SocketAddr>,
    t0: Instant,
    report: Report,
    /// (path, bytes, seed).
    dataset: Option<(PathBuf, u64, u64)>,
    /// (id, bytes, sent at, chunks).
    broadcast: Option<(String, u64, Instant, u64)>,
    origin: Option<String>,
    /// Name -> hex node id.
    ids: BTreeMap<String, String>,
    last: BTreeMap<String, BroadcastInfo>,
    stopped: BTreeSet<String>,
    /// Killed or stopped, not yet seen dead by a bootstrap.
    killed_at: BTreeMap<String, Instant>,
    fetched_at_kill: BTreeMap<String, u64>,
    /// What each kill of a receiver may make it fetch again, summed over its kills: its fetch
    /// rate right before the kill times [`IN_FLIGHT_WINDOW_S`], at most [`IN_FLIGHT`].
    in_flight_at_kill: BTreeMap<String, u64>,
    /// Each node's `fetched_bytes` at the first poll of its incarnation, and when.
    fetch_sample: BTreeMap<String, (Instant, u64)>,
    /// Each node's average fetch rate since that poll, bytes/s.
    fetch_rate: BTreeMap<String, f64>,
    /// Chunks durably held, sampled right before the latest kill (a lower bound of what was
    /// durable at the kill, since held only grows): a restart must resume at least these.
    held_at_kill: BTreeMap<String, u64>,
    /// Receivers restarted with their data dir.
    restarted: BTreeSet<String>,
    last_registry_poll: Instant,
}

impl Runner {
    fn event(&mut self, kind: &str, what: String) {
        let t_ms = self.t0.elapsed().as_millis() as u64;
        tracing::info!(t_ms, kind, "{what}");
        if self.narrate {
            say!("{:6.1}s {kind:<9} {what}", t_ms as f64 / 1000.0);
        }
        self.report.timeline.push(Event {
            t_ms,
            kind: kind.into(),
            what,
        });
    }

    fn idx(&self, name: &str) -> Result<usize> {
        self.cluster
            .index(name)
            .with_context(|| format!("no process {name}"))
    }

    /// Running and not stopped: reachable over its control socket.
    fn live(&self, name: &str) -> bool {
        self.cluster
            .index(name)
            .is_some_and(|i| self.cluster.procs[i].running())
            && !self.stopped.contains(name)
    }

    fn live_nodes(&self) -> Vec<String> {
        self.cluster
            .procs
            .iter()
            .filter(|p| p.role == Role::Node)
            .map(|p| p.name.clone())
            .filter(|n| self.live(n))
            .collect()
    }

    fn deadline(&self) -> Duration {
        if let Some(d) = self.deadline {
            return d;
        }
        let bytes = self.dataset.as_ref().map_or(0, |d| d.1);
        Duration::from_secs(30) + Duration::from_secs_f64(bytes as f64 / (5u64 << 20) as f64)
    }

    async fn execute(&mut self, schedule: &[Action]) -> Result<()> {
        for (i, a) in schedule.iter().enumerate() {
            self.step(a)
                .await
                .with_context(|| format!("step {} `{a}`", i + 1))?;
        }
        for check in [
            CheckKind::Copies,
            CheckKind::Deadline,
            CheckKind::Refetch,
            CheckKind::Registry,
            CheckKind::Stalls,
        ] {
            self.check(check, None)
                .await
                .with_context(|| format!("final check {check:?}"))?;
        }
        Ok(())
    }

    async fn step(&mut self, a: &Action) -> Result<()> {
        match a {
            Action::StartBootstraps(n) => {
                self.seeds = self.cluster.start_bootstraps(*n)?;
                self.event("milestone", format!("started {n} bootstraps"));
            }
            Action::StartNodes { names, env } => {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                for n in names {
                    self.cluster.start_node(n, &self.seeds, &env)?;
                }
                for n in names {
                    self.wait_joined(n).await?;
                }
                self.event("milestone", format!("nodes {} joined", names.join(",")));
            }
            Action::MakeDir { size, seed } => {
                let path = self.root.join("dataset");
                tree::generate(&path, *size, tree_seed(*seed))?;
                self.dataset = Some((path, *size, *seed));
                self.event("milestone", format!("dataset of {size} bytes"));
            }
            Action::Send { from, chunk_size } => self.send(from, *chunk_size).await?,
            Action::WaitProgress(p) => {
                let limit = Instant::now() + self.deadline();
                loop {
                    let f = self.poll().await?;
                    if f >= *p {
                        self.event("milestone", format!("fleet progress {:.0}%", f * 100.0));
                        break;
                    }
                    if Instant::now() > limit {
                        bail!("progress {f:.3} < {p} after {:?}", self.deadline());
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Action::WaitFor(d) => {
                let end = Instant::now() + *d;
                while Instant::now() < end {
                    if self.broadcast.is_some() {
                        self.poll().await?;
                    }
                    tokio::time::sleep(POLL.min(end.saturating_duration_since(Instant::now())))
                        .await;
                }
            }
            Action::WaitState { node, state } => {
                let limit = Instant::now() + self.deadline();
                loop {
                    self.poll().await?;
                    if self.last.get(node).is_some_and(|b| b.state == *state) {
                        self.event("milestone", format!("{node} is {state}"));
                        break;
                    }
                    if Instant::now() > limit {
                        bail!("{node} not {state} after {:?}", self.deadline());
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            Action::Kill(names) => self.kill(names).await?,
            Action::Stop(names) => self.signal(names, true)?,
            Action::Cont(names) => self.signal(names, false)?,
            Action::Restart { names, wipe } => self.restart(names, *wipe).await?,
            Action::Assert { check, source_seed } => {
                self.check(*check, *source_seed).await?;
            }
            Action::Partition { a, b, one_way } => {
                self.lab()?.partition(a, b, *one_way)?;
                self.event(
                    "fault",
                    format!(
                        "{}",
                        Action::Partition {
                            a: a.clone(),
                            b: b.clone(),
                            one_way: *one_way
                        }
                    ),
                );
            }
            Action::Heal => {
                self.lab()?.heal()?;
                self.event("fault", "partitions healed".into());
            }
            Action::Link { hosts, spec } => {
                let lab = self
                    .cluster
                    .lab_mut()
                    .context("links can be shaped in netns mode only")?;
                match hosts {
                    None => lab.set_default_link(*spec)?,
                    Some(hosts) => {
                        for h in hosts {
                            lab.set_link(h, *spec)?;
                        }
                    }
                }
                self.event("fault", a.to_string());
            }
        }
        Ok(())
    }

    async fn send(&mut self, from: &str, chunk_size: u32) -> Result<()> {
        let (dir, ..) = self.dataset.clone().context("no dataset")?;
        let dd = self.cluster.procs[self.idx(from)?].data_dir.clone();
        let info = control::send(&dd, dir, chunk_size)
            .await
            .context("send refused")?;
        self.broadcast = Some((info.id.clone(), info.bytes, Instant::now(), info.chunks));
        self.origin = Some(from.to_owned());
        self.report.bytes = info.bytes;
        self.event(
            "milestone",
            format!("{from} sends {} ({} chunks)", &info.id[..16], info.chunks),
        );
        Ok(())
    }

    /// Before `n` is killed: what this incarnation fetched, what the kill may lose of its
    /// transfer (its rate times the in-flight window), and the chunks held (a restart must
    /// resume at least those).
    fn sample_before_kill(&mut self, n: &str, fetched: u64) {
        let held_chunks = self.last.get(n).map_or(0, |b| b.chunks_held);
        let rate = self.fetch_rate.get(n).copied().unwrap_or(0.0);
        let in_flight = in_flight_at(rate);
        *self.fetched_at_kill.entry(n.to_owned()).or_default() += fetched;
        *self.in_flight_at_kill.entry(n.to_owned()).or_default() += in_flight;
        tracing::info!(
            node = n,
            fetched,
            rate,
            in_flight,
            "sampled before the kill"
        );
        self.held_at_kill.insert(n.to_owned(), held_chunks);
        self.fetch_sample.remove(n);
        self.fetch_rate.remove(n);
    }

    async fn kill(&mut self, names: &[String]) -> Result<()> {
        if self.broadcast.is_some() {
            self.poll().await?;
        }
        for n in names {
            let i = self.idx(n)?;
            // Sample right before the kill: what this incarnation fetched.
            let fetched = self.last.get(n).map_or(0, |b| b.fetched_bytes);
            if self.live(n) {
                self.sample_before_kill(n, fetched);
            }
            let pid = self.cluster.procs[i].pid();
            self.cluster.kill(i);
            self.stopped.remove(n);
            self.last.remove(n);
            self.report.completion_ms.remove(n);
            self.killed_at.insert(n.clone(), Instant::now());
            let pid = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            self.event("fault", format!("SIGKILL {n} (pid {pid})"));
        }
        Ok(())
    }

    fn signal(&mut self, names: &[String], stop: bool) -> Result<()> {
        for n in names {
            let i = self.idx(n)?;
            let pid = self.cluster.procs[i]
                .pid()
                .with_context(|| format!("{n} is not running"))?;
            let sig = if stop {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            self.cluster.signal(i, sig)?;
            if stop {
                self.stopped.insert(n.clone());
                self.killed_at.insert(n.clone(), Instant::now());
            } else {
                self.stopped.remove(n);
            }
            let sig = if stop { "SIGSTOP" } else { "SIGCONT" };
            self.event("fault", format!("{sig} {n} (pid {pid})"));
        }
        Ok(())
    }

    async fn restart(&mut self, names: &[String], wipe: bool) -> Result<()> {
        for n in names {
            let i = self.idx(n)?;
            if self.live(n) {
                let fetched = self.last.get(n).map_or(0, |b| b.fetched_bytes);
                self.sample_before_kill(n, fetched);
            }
            self.cluster.restart(i, wipe)?;
            self.stopped.remove(n);
            self.killed_at.remove(n);
            self.last.remove(n);
            self.report.completion_ms.remove(n);
            let is_receiver =
                self.cluster.procs[i].role == Role::Node && self.origin.as_ref() != Some(n);
            if wipe {
                self.restarted.remove(n);
                self.fetched_at_kill.remove(n);
                self.in_flight_at_kill.remove(n);
                self.held_at_kill.remove(n);
            } else if is_receiver {
                self.restarted.insert(n.clone());
            }
            let how = if wipe { "wiped" } else { "same data dir" };
            self.event("fault", format!("restart {n} ({how})"));
        }
        for n in names {
            if self.cluster.procs[self.idx(n)?].role == Role::Node {
                self.wait_joined(n).await?;
            }
        }
        Ok(())
    }

    async fn wait_joined(&mut self, name: &str) -> Result<()> {
        let dd = self.cluster.procs[self.idx(name)?].data_dir.clone();
        let limit = Instant::now() + Duration::from_secs(30);
        let s = crate::fleet::wait_joined(&dd, 1, limit)
            .await
            .with_context(|| format!("{name} did not join within 30 s"))?;
        self.ids.insert(name.to_owned(), s.id);
        Ok(())
    }

    /// List every live node's broadcast; note completions; the fleet's held fraction.
    async fn poll(&mut self) -> Result<f64> {
        let Some((id, _, sent, chunks)) = self.broadcast.clone() else {
            bail!("nothing was sent");
        };
        let (mut held, mut total) = (0u64, 0u64);
        for n in self.live_nodes() {
            let dd = self.cluster.procs[self.idx(&n)?].data_dir.clone();
            let b = control::list(&dd)
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|b| b.id == id));
            match b {
                Some(b) => {
                    if b.state == BroadcastPhase::Failed {
                        bail!("{n}: broadcast failed: {}", b.error.unwrap_or_default());
                    }
                    held += b.chunks_held;
                    total += b.chunks_total.max(1);
                    let t_ms = self.t0.elapsed().as_millis() as u64;
                    let share = b.chunks_held as f64 / b.chunks_total.max(1) as f64;
                    let share = if b.is_done() { 1.0 } else { share };
                    let line = self.report.progress.entry(n.clone()).or_default();
                    let moved = line
                        .last()
                        .is_none_or(|&(t, f)| f != share || t_ms >= t + 1000);
                    if moved {
                        line.push((t_ms, share));
                    }
                    if b.is_done() && !self.report.completion_ms.contains_key(&n) {
                        let ms = sent.elapsed().as_millis() as u64;
                        self.report.completion_ms.insert(n.clone(), ms);
                        self.event("milestone", format!("{n} complete"));
                    }
                    // The fetch rate of this incarnation since its first poll that saw this
                    // broadcast (an average: a rate over one poll can be 0 by chance).
                    let fetched = b.fetched_bytes;
                    let (at, first) = *self
                        .fetch_sample
                        .entry(n.clone())
                        .or_insert((Instant::now(), fetched));
                    let dt = at.elapsed().as_secs_f64();
                    if dt > 0.0 {
                        let rate = fetched.saturating_sub(first) as f64 / dt;
                        self.fetch_rate.insert(n.clone(), rate);
                    }
                    self.last.insert(n, b);
                }
                None => total += chunks.max(1),
            }
        }
        if !self.killed_at.is_empty()
            && self.last_registry_poll.elapsed() >= Duration::from_millis(500)
        {
            self.last_registry_poll = Instant::now();
            self.observe_detection().await;
        }
        Ok(held as f64 / total.max(1) as f64)
    }

    /// Record when the first live bootstrap lists a killed or stopped process dead.
    async fn observe_detection(&mut self) {
        let Some(b) = self.live_bootstraps().into_iter().next() else {
            return;
        };
        let Ok(view) = self.registry(b).await else {
            return;
        };
        for (name, at) in self.killed_at.clone() {
            let dead = view
                .iter()
                .any(|e| e.name == name && e.status == Status::Dead);
            if dead {
                self.killed_at.remove(&name);
                let ms = at.elapsed().as_millis() as u64;
                self.report.detection_ms.insert(name.clone(), ms);
                self.event("milestone", format!("{name} listed dead after {ms} ms"));
            }
        }
    }

    fn lab(&self) -> Result<&Lab> {
        self.cluster
            .lab()
            .context("partitions need netns mode (--mode netns)")
    }

    /// (name, address) of every bootstrap running and not stopped.
    fn live_bootstraps(&self) -> Vec<(String, SocketAddr)> {
        self.cluster
            .procs
            .iter()
            .filter(|p| p.role == Role::Bootstrap && p.running() && !self.stopped.contains(&p.name))
            .filter_map(|p| Some((p.name.clone(), p.addr?)))
            .collect()
    }

    /// One bootstrap's registry through `swarmcast registry --json`, run where the bootstrap
    /// runs (its own namespace in netns mode, so that partitions do not hide it).
    async fn registry(&self, (name, addr): (String, SocketAddr)) -> Result<Vec<Entry>> {
        let ident = self
            .root
            .join("certs")
            .join(self.ids.keys().next().context("no node")?);
        let mut cmd = self.cluster.command_at(&name, &self.exe)?;
        let out = tokio::task::spawn_blocking(move || {
            cmd.args([
                "registry",
                "--seed",
                &addr.to_string(),
                "--json",
                "--identity",
            ])
            .arg(ident)
            .output()
        })
        .await??;
        if !out.status.success() {
            bail!(
                "registry of {addr}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let listing: RegistryListing =
            serde_json::from_slice(&out.stdout).context("reading `registry --json`")?;
        Ok(listing.nodes)
    }

    async fn check(&mut self, check: CheckKind, source_seed: Option<u64>) -> Result<()> {
        match check {
            CheckKind::Copies => self.check_copies(source_seed).await?,
            CheckKind::Deadline => {
                let bound = self.deadline().as_millis() as u64;
                for n in self.live_nodes() {
                    let t = self.report.completion_ms.get(&n).copied();
                    if t.is_none_or(|t| t > bound) {
                        bail!("{n} completed at {t:?} ms, beyond the bound {bound} ms");
                    }
                }
            }
            CheckKind::Refetch => {
                for n in self.restarted.clone() {
                    if !self.live(&n) {
                        continue;
                    }
                    let b = self
                        .last
                        .get(&n)
                        .with_context(|| format!("{n}: no progress"))?;
                    // Nothing durable is lost across SIGKILL: the restart resumed at least
                    // what was held before the kill.
                    let held = self.held_at_kill.get(&n).copied().unwrap_or(0);
                    if b.resumed_chunks < held {
                        bail!(
                            "{n} lost durable chunks across its restart: {held} held before the \
                             kill, {} resumed",
                            b.resumed_chunks
                        );
                    }
                    // What it fetched twice may not exceed what its transfer had in flight
                    // when killed (its rate times the window), plus a few pieces. The bound
                    // scales with the transfer: a 6 MiB run at 10 MiB/s allows about 6 MiB,
                    // where a fixed 42 MiB could never fire.
                    let before = self.fetched_at_kill.get(&n).copied().unwrap_or(0);
                    let in_flight = self.in_flight_at_kill.get(&n).copied().unwrap_or(0);
                    let Refetch { extra, bound } =
                        Refetch::of(before, b.fetched_bytes, b.bytes_total, in_flight);
                    self.report.refetched.insert(n.clone(), extra);
                    self.event(
                        "check",
                        format!(
                            "{n} re-fetched {extra} bytes (bound {bound}: in flight at the \
                             kill(s) + {REFETCH_SLACK})"
                        ),
                    );
                    if extra > bound {
                        bail!(
                            "{n} re-fetched {extra} bytes, more than its bound of {bound} (what \
                             its transfer had in flight at its kill(s), {in_flight}, plus \
                             {REFETCH_SLACK})"
                        );
                    }
                }
            }
            CheckKind::Registry => self.check_registry().await?,
            CheckKind::Stalls => self.check_stalls()?,
        }
        self.event("check", format!("{check:?} passed"));
        Ok(())
    }

    /// The stall invariant's reports in every process log of the run (all runs of every node).
    fn check_stalls(&self) -> Result<()> {
        let found = stall_reports(&self.root)?;
        if let Some(first) = found.first() {
            bail!("{} stall report(s); the first: {first}", found.len());
        }
        Ok(())
    }

    async fn check_copies(&mut self, source_seed: Option<u64>) -> Result<()> {
        let (src, size, seed) = self.dataset.clone().context("no dataset")?;
        let (_, _, sent, _) = self.broadcast.clone().context("nothing was sent")?;
        let limit = sent + self.deadline();
        loop {
            self.poll().await?;
            let live = self.live_nodes();
            if live
                .iter()
                .all(|n| self.report.completion_ms.contains_key(n))
            {
                break;
            }
            if Instant::now() > limit {
                let missing: Vec<&String> = live
                    .iter()
                    .filter(|n| !self.report.completion_ms.contains_key(*n))
                    .collect();
                bail!("not complete within {:?}: {missing:?}", self.deadline());
            }
            tokio::time::sleep(POLL).await;
        }
        let src = match source_seed {
            Some(s) if s != seed => {
                let other = self.root.join(format!("dataset-seed-{s}"));
                if !other.exists() {
                    tree::generate(&other, size, tree_seed(s))?;
                }
                other
            }
            _ => src,
        };
        for n in self.live_nodes() {
            if self.origin.as_ref() == Some(&n) {
                continue;
            }
            let copy = self.cluster.procs[self.idx(&n)?]
                .data_dir
                .join("received")
                .join("dataset");
            tree::verify(&src, &copy).with_context(|| format!("{n}'s copy differs"))?;
        }
        Ok(())
    }

    async fn check_registry(&mut self) -> Result<()> {
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            match self.registry_once().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > limit => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn registry_once(&mut self) -> Result<()> {
        let mut views = Vec::new();
        for b in self.live_bootstraps() {
            let addr = b.1;
            views.push((addr, self.registry(b).await?));
        }
        let killed: Vec<String> = self
            .ids
            .keys()
            .filter(|n| {
                self.cluster
                    .index(n)
                    .is_some_and(|i| !self.cluster.procs[i].running())
            })
            .cloned()
            .collect();
        registry::check_views(&views, &self.ids, &self.live_nodes(), &killed)
    }

    /// Traffic matrix, origin upload and a note, right before the end.
    async fn finish_report(&mut self) {
        let by_id: BTreeMap<String, String> = self
            .ids
            .iter()
            .map(|(n, id)| (id.clone(), n.clone()))
            .collect();
        let live = self.live_nodes();
        let mut traffic = BTreeMap::new();
        for n in &live {
            let Ok(i) = self.idx(n) else { continue };
            let dd = self.cluster.procs[i].data_dir.clone();
            if let Ok(s) = control::status(&dd).await {
                let row: BTreeMap<String, u64> = s
                    .uploaded_to
                    .iter()
                    .map(|(id, b)| {
                        (
                            by_id
                                .get(id)
                                .cloned()
                                .unwrap_or_else(|| id[..8.min(id.len())].to_owned()),
                            *b,
                        )
                    })
                    .collect();
                traffic.insert(n.clone(), row);
            }
        }
        self.report.traffic = traffic;
        let killed: Vec<&String> = self.ids.keys().filter(|n| !live.contains(n)).collect();
        self.report.traffic_note = if killed.is_empty() {
            "counters of every node since its latest start".into()
        } else {
            format!(
                "counters since each node's latest start; nodes killed lose their counters \
                 (rows missing or partial: {killed:?})"
            )
        };
        if let Some(o) = &self.origin
            && let Some(b) = self.last.get(o)
        {
            self.report.origin_upload = b.uploaded_bytes as f64 / b.bytes_total.max(1) as f64;
        }
    }
}

/// What a SIGKILL at fetch rate `rate` (bytes/s) may make a receiver fetch again: the rate
/// times [`IN_FLIGHT_WINDOW_S`], at most the transfer's in-flight budget [`IN_FLIGHT`].
fn in_flight_at(rate: f64) -> u64 {
    ((rate * IN_FLIGHT_WINDOW_S) as u64).min(IN_FLIGHT)
}

/// The re-fetch check's arithmetic for one restarted receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refetch {
    /// Bytes fetched twice: what its incarnations fetched beyond the broadcast's size.
    extra: u64,
    /// What it may fetch twice: what was in flight at its kills, plus [`REFETCH_SLACK`].
    bound: u64,
}

impl Refetch {
    /// `before`: bytes fetched by the incarnations before the restart(s); `after`: by the
    /// current one; `total`: the broadcast's bytes; `in_flight`: [`in_flight_at`] summed over
    /// its kills.
    fn of(before: u64, after: u64, total: u64, in_flight: u64) -> Self {
        Self {
            extra: (before + after).saturating_sub(total),
            bound: in_flight + REFETCH_SLACK,
        }
    }
}

/// The dataset's seed, derived from the scenario's (kept so that a scenario's bytes do not
/// depend on what else draws from its seed).
fn tree_seed(seed: u64) -> u64 {
    super::Prng::new(seed).next_u64()
}

#[cfg(test)]
mod refetch_tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_bound_is_what_was_in_flight_plus_a_few_pieces() {
        // 0.5 s of the fetch rate: the commit interval twice, the 200 ms queued at peers and
        // the 200 ms sampling lag.
        assert_eq!(in_flight_at(4.0 * MIB as f64), 2 * MIB);
        assert_eq!(in_flight_at(0.0), 0);
        // Never more than the transfer's in-flight budget, however fast.
        assert_eq!(in_flight_at(1e12), 32 * MIB);
        // Resumed exactly where it stopped: 2 MiB before the kill, the other 4 after it.
        let r = Refetch::of(2 * MIB, 4 * MIB, 6 * MIB, 2 * MIB);
        assert_eq!(
            r,
            Refetch {
                extra: 0,
                bound: 4 * MIB
            }
        );
        // What was in flight and a few pieces were fetched again: passes.
        let r = Refetch::of(3 * MIB, 7 * MIB, 6 * MIB, 2 * MIB);
        assert_eq!(r.extra, 4 * MIB);
        assert!(r.extra <= r.bound, "{r:?}");
    }

    #[test]
    fn a_receiver_that_fetched_its_durable_pieces_again_fails() {
        // A 6 MiB broadcast fetched at 4 MiB/s, killed at 5 MiB, restarted and re-fetching
        // everything: 5 MiB twice, against the 2 MiB in flight plus 2 MiB of slack. A fixed
        // bound of the in-flight budget (42 MiB) could never catch this.
        let in_flight = in_flight_at(4.0 * MIB as f64);
        let r = Refetch::of(5 * MIB, 6 * MIB, 6 * MIB, in_flight);
        assert_eq!(r.extra, 5 * MIB);
        assert!(r.extra > r.bound, "{r:?}");
        // Two kills sum their windows: the same run killed twice at that rate passes.
        let r = Refetch::of(5 * MIB, 6 * MIB, 6 * MIB, 2 * in_flight);
        assert!(r.extra <= r.bound, "{r:?}");
    }
}

#[cfg(test)]
mod stall_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stall_in_any_log_is_found_and_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("n1.1.log"), "INFO started\nINFO complete\n").unwrap();
        std::fs::write(dir.path().join("b1.1.log"), "WARN something else\n").unwrap();
        assert!(stall_reports(dir.path()).unwrap().is_empty());
        let line = format!(
            "2026-12-02T07:01:57Z  WARN data: swarmcast_node::data: {} broadcast=a97eb0fb",
            swarmcast_node::data::STALL_WARNING
        );
        std::fs::write(dir.path().join("n3.2.log"), format!("INFO x\n{line}\n")).unwrap();
        // Not a log: ignored.
        std::fs::write(dir.path().join("n3.2.txt"), &line).unwrap();
        assert_eq!(
            stall_reports(dir.path()).unwrap(),
            vec![format!("n3.2.log: {line}")]
        );
    }
}

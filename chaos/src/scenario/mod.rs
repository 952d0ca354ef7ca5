//! Declarative chaos scenarios, in process or netns mode: a TOML file of ordered steps (start processes,
//! make a dataset, send it, wait, kill / stop / continue / restart targets, assert), turned into
//! a fixed schedule by a seeded PRNG, run against real `swarmcast` processes (on 127.0.0.1, or
//! each in a network namespace with shaped and partitionable links: [`crate::netns`]), and
//! checked: byte-identical copies, consistent registries, bounded re-fetching, a time bound.
//!
//! The same scenario and seed always give the same schedule ([`Scenario::schedule`]); every
//! failure names the seed and the command that replays it.
//!
//! ```toml
//! name = "origin-crash"
//! [[steps]]
//! do = "start"
//! bootstraps = 3
//! [[steps]]
//! do = "start"
//! nodes = 5
//! env = { SWARMCAST_FAULT_SERVE_DELAY_MS = "20" }
//! [[steps]]
//! do = "make_dir"
//! size_mib = 24
//! seed = 7
//! [[steps]]
//! do = "send"
//! from = "n1"
//! chunk_kib = 256
//! [[steps]]
//! do = "wait"
//! progress = 0.5
//! [[steps]]
//! do = "kill"
//! pick = "origin"
//! [[steps]]
//! do = "restart"
//! pick = "killed"
//! ```

mod plan;
mod registry;
mod report;
mod run;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub use plan::{Action, Prng};
pub use report::{Event, Report};
pub use run::{run, run_at};

/// A scenario: a name and ordered steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (a preset's name for presets), used in the replay command.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Every node must complete within this many seconds of the send (default: 30 s plus
    /// 1 s per 5 MiB of the dataset).
    #[serde(default)]
    pub deadline_s: Option<u64>,
    /// The file it was read from, when not a preset: the replay command names it.
    #[serde(skip)]
    pub file: Option<std::path::PathBuf>,
}

/// One step of a scenario. In TOML, `do = "<kind>"` plus the fields of the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Start bootstraps (named b1, b2, ...) and/or nodes (named n1, n2, ... continuing).
    Start {
        /// Bootstraps to start (at most once per scenario).
        #[serde(default)]
        bootstraps: usize,
        /// Nodes to start; each waits until registered with a neighbour.
        #[serde(default)]
        nodes: usize,
        /// Environment of the nodes started here (fault switches).
        #[serde(default)]
        env: BTreeMap<String, String>,
    },
    /// Generate the sample dataset.
    MakeDir {
        /// Size in MiB (fractions allowed).
        size_mib: f64,
        /// Content seed.
        #[serde(default)]
        seed: u64,
    },
    /// Publish the dataset from a node.
    Send {
        /// The origin's name.
        from: String,
        /// Chunk size in KiB (default: the product's, as `node send`).
        #[serde(default = "default_chunk_kib")]
        chunk_kib: u32,
    },
    /// Wait for exactly one condition.
    Wait {
        /// Until the fleet holds this fraction of all chunks (alive nodes).
        progress: Option<f64>,
        /// Until a fraction drawn from the seed in `[lo, hi]`.
        progress_between: Option<[f64; 2]>,
        /// For this many milliseconds.
        ms: Option<u64>,
        /// Until this node ...
        node: Option<String>,
        /// ... reports this broadcast state (`receiving`, `complete`, `seeding`).
        state: Option<swarmcast_node::listing::BroadcastPhase>,
    },
    /// SIGKILL targets.
    Kill(Target),
    /// SIGSTOP targets.
    Stop(Target),
    /// SIGCONT targets.
    Cont(Target),
    /// Start targets again with their data dir (wiped first if `wipe`).
    Restart {
        /// A process by name.
        name: Option<String>,
        /// Or drawn from this group.
        pick: Option<Pick>,
        /// How many to draw.
        count: Option<usize>,
        /// Or this fraction of the group (rounded up).
        fraction: Option<f64>,
        /// Delete the data dir first.
        #[serde(default)]
        wipe: bool,
    },
    /// Check now.
    Assert {
        /// The check.
        check: CheckKind,
        /// For `copies`: verify against a dataset generated with this seed instead of the one
        /// sent (a check that must fail: it proves the verification bites).
        source_seed: Option<u64>,
    },
    /// Sleep this many milliseconds (same as `wait` with `ms`).
    Sleep {
        /// Milliseconds.
        ms: u64,
    },
    /// Netns mode: drop every packet between two groups of hosts (from `a` to `b` only, if
    /// `one_way`). `a` by name, or `a_fraction` of the started processes drawn from the seed;
    /// `b` by name, or every other started process.
    Partition {
        /// Hosts of one side.
        a: Option<Vec<String>>,
        /// Or this fraction of every started process (rounded up), drawn from the seed.
        a_fraction: Option<f64>,
        /// The other side (default: everyone not in `a`).
        b: Option<Vec<String>>,
        /// Only packets from `a` to `b` are dropped.
        #[serde(default)]
        one_way: bool,
    },
    /// Netns mode: remove every partition.
    Heal,
    /// Netns mode: shape links in both directions. Without `hosts`, every host's link, also of
    /// hosts started later.
    Link {
        /// Hosts by name (default: all, and the default for new ones).
        hosts: Option<Vec<String>>,
        /// Mbit/s (default: unlimited).
        rate_mbit: Option<f64>,
        /// Delay in each direction, ms (the RTT between two such hosts is four times this).
        #[serde(default)]
        delay_ms: f64,
        /// Delay varies uniformly by this much, ms.
        #[serde(default)]
        jitter_ms: f64,
        /// Loss in each direction, percent.
        #[serde(default)]
        loss_pct: f64,
    },
}

impl Step {
    /// The target of a fault or restart step.
    pub fn target(&self) -> Option<Target> {
        match self {
            Step::Kill(t) | Step::Stop(t) | Step::Cont(t) => Some(t.clone()),
            Step::Restart {
                name,
                pick,
                count,
                fraction,
                ..
            } => Some(Target {
                name: name.clone(),
                pick: *pick,
                count: *count,
                fraction: *fraction,
            }),
            _ => None,
        }
    }
}

/// The product's default chunk size (`node send` without `--chunk-size`), in KiB.
fn default_chunk_kib() -> u32 {
    swarmcast_node::manifest::DEFAULT_CHUNK_SIZE / 1024
}

/// Which processes a fault step hits: a name, or `count` / `fraction` of a pick drawn from the
/// seed (default one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A process by name (`b2`, `n3`).
    pub name: Option<String>,
    /// Draw from this group.
    pub pick: Option<Pick>,
    /// How many to draw.
    pub count: Option<usize>,
    /// Or this fraction of the group (rounded up).
    pub fraction: Option<f64>,
}

/// A group of processes to draw targets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// Running, unstopped nodes other than the origin.
    Receiver,
    /// Running bootstraps.
    Bootstrap,
    /// The node that sent (whatever its state).
    Origin,
    /// Processes killed and not restarted yet.
    Killed,
    /// Receivers killed and not restarted yet.
    KilledReceiver,
    /// Bootstraps killed and not restarted yet.
    KilledBootstrap,
    /// Processes stopped and not continued yet.
    Stopped,
}

/// A check, as a step or at the end of every run (all five).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Every node alive holds a byte-identical copy (waits for completion first).
    Copies,
    /// Every bootstrap alive holds the same registry, without duplicates or ghosts.
    Registry,
    /// Restarted receivers re-fetched no more than was in flight.
    Refetch,
    /// Every node alive completed within 30 s + size / (5 MiB/s) of the send.
    Deadline,
    /// No node, in any of its runs so far, logged the stall invariant: a transfer that made
    /// no progress for 5 s while peers connected all along held chunks it lacked.
    Stalls,
}

/// Where a scenario's hosts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Child processes on 127.0.0.1; faults are signals.
    #[default]
    Process,
    /// Every process in its own network namespace on a bridge (root): links can be shaped
    /// and partitioned too.
    Netns,
}

impl Scenario {
    /// Whether a step needs the network lab (partition, heal, link).
    pub fn needs_netns(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Partition { .. } | Step::Heal | Step::Link { .. }))
    }

    /// Read, parse and validate a scenario file; its replay command names the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut s = Self::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        s.file = Some(path.to_owned());
        Ok(s)
    }

    /// Parse and validate a scenario.
    pub fn from_toml(text: &str) -> Result<Self> {
        let s: Scenario = toml::from_str(text).context("invalid scenario TOML")?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<()> {
        let mut sent = false;
        for (i, step) in self.steps.iter().enumerate() {
            let at = || format!("step {} ({step:?})", i + 1);
            match step {
                Step::Wait {
                    progress,
                    progress_between,
                    ms,
                    node,
                    state,
                } => {
                    let kinds = [
                        progress.is_some(),
                        progress_between.is_some(),
                        ms.is_some(),
                        node.is_some() || state.is_some(),
                    ];
                    if kinds.iter().filter(|k| **k).count() != 1 {
                        bail!(
                            "{}: a wait needs exactly one of progress, progress_between, ms, or node + state",
                            at()
                        );
                    }
                    if node.is_some() != state.is_some() {
                        bail!("{}: node and state go together", at());
                    }
                    if (progress.is_some() || progress_between.is_some()) && !sent {
                        bail!("{}: waiting for progress before any send", at());
                    }
                    let in_range = |x: f64| (0.0..=1.0).contains(&x);
                    if progress.is_some_and(|p| !in_range(p))
                        || progress_between
                            .is_some_and(|[a, b]| !in_range(a) || !in_range(b) || a > b)
                    {
                        bail!("{}: progress must be within 0..=1", at());
                    }
                }
                Step::Kill(_) | Step::Stop(_) | Step::Cont(_) | Step::Restart { .. } => {
                    let t = step.target().unwrap_or_default();
                    if t.name.is_some() == t.pick.is_some() {
                        bail!("{}: a target needs exactly one of name or pick", at());
                    }
                    if t.count.is_some() && t.fraction.is_some() {
                        bail!("{}: count and fraction exclude each other", at());
                    }
                    if t.fraction.is_some_and(|f| !(0.0..=1.0).contains(&f)) {
                        bail!("{}: fraction must be within 0..=1", at());
                    }
                }
                Step::Send { .. } => sent = true,
                Step::Partition { a, a_fraction, .. } => {
                    if a.is_some() == a_fraction.is_some() {
                        bail!("{}: a partition needs exactly one of a or a_fraction", at());
                    }
                    if a_fraction.is_some_and(|f| !(f > 0.0 && f < 1.0)) {
                        bail!("{}: a_fraction must be within 0..1 (exclusive)", at());
                    }
                }
                Step::Link {
                    rate_mbit,
                    delay_ms,
                    jitter_ms,
                    loss_pct,
                    ..
                } => crate::netns::LinkSpec {
                    rate_mbit: *rate_mbit,
                    delay_ms: *delay_ms,
                    jitter_ms: *jitter_ms,
                    loss_pct: *loss_pct,
                }
                .validate()
                .with_context(at)?,
                Step::MakeDir { size_mib, .. } if *size_mib <= 0.0 => {
                    bail!("{}: size_mib must be positive", at())
                }
                _ => {}
            }
        }
        // Resolving the schedule once catches unknown names and missing prerequisites.
        self.schedule(0).map(|_| ())
    }

    /// The concrete schedule for `seed`: every random choice resolved.
    pub fn schedule(&self, seed: u64) -> Result<Vec<Action>> {
        plan::plan(self, seed)
    }
}

/// The presets shipped in `chaos/presets/`.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "bootstrap-loss",
        include_str!("../../presets/bootstrap-loss.toml"),
    ),
    ("churn", include_str!("../../presets/churn.toml")),
    (
        "origin-crash",
        include_str!("../../presets/origin-crash.toml"),
    ),
    ("pause", include_str!("../../presets/pause.toml")),
    ("corrupt", include_str!("../../presets/corrupt.toml")),
    ("everything", include_str!("../../presets/everything.toml")),
    ("partition", include_str!("../../presets/partition.toml")),
    ("lossy", include_str!("../../presets/lossy.toml")),
    (
        "all-at-once",
        include_str!("../../presets/all-at-once.toml"),
    ),
];

/// The TOML of a preset by name.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The command that replays a run: `--scenario FILE` for a scenario read from a file,
/// `--preset NAME` otherwise.
pub fn replay_command(scenario: &Scenario, seed: u64, mode: Mode) -> String {
    let mode = match mode {
        Mode::Process => "",
        Mode::Netns => " --mode netns",
    };
    let what = match &scenario.file {
        Some(f) => format!("--scenario {}", f.display()),
        None => format!("--preset {}", scenario.name),
    };
    format!("swarmcast chaos run {what} --seed {seed}{mode}")
}

#[cfg(test)]
mod replay_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_replay_command_names_the_file_a_scenario_came_from() {
        let churn = Scenario::from_toml(preset("churn").unwrap()).unwrap();
        assert_eq!(
            replay_command(&churn, 3, Mode::Process),
            "swarmcast chaos run --preset churn --seed 3"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, preset("churn").unwrap()).unwrap();
        let file = Scenario::from_file(&path).unwrap();
        assert_eq!(
            replay_command(&file, 3, Mode::Netns),
            format!(
                "swarmcast chaos run --scenario {} --seed 3 --mode netns",
                path.display()
            )
        );
    }
}

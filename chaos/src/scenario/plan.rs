//! Resolving a scenario into a concrete schedule: names for every start, targets drawn from the
//! seed, random progress points fixed. Pure: no processes, no clocks.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{CheckKind, Pick, Scenario, Step, Target};

/// A tiny xorshift64* PRNG: the only source of randomness of a run.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// Seeded; any seed (0 included) gives a usable state.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds diverge at once.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[lo, hi]`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * u
    }
}

/// One resolved step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start bootstraps b1..bN.
    StartBootstraps(usize),
    /// Start these nodes with this environment, then wait until each has joined.
    StartNodes {
        /// Node names.
        names: Vec<String>,
        /// Environment pairs.
        env: Vec<(String, String)>,
    },
    /// Generate the dataset.
    MakeDir {
        /// Bytes.
        size: u64,
        /// Content seed.
        seed: u64,
    },
    /// Publish from `from`.
    Send {
        /// Origin.
        from: String,
        /// Bytes per chunk.
        chunk_size: u32,
    },
    /// Wait until the fleet holds this fraction.
    WaitProgress(f64),
    /// Wait this long.
    WaitFor(Duration),
    /// Wait until `node` reports `state`.
    WaitState {
        /// Node.
        node: String,
        /// Broadcast state.
        state: swarmcast_node::listing::BroadcastPhase,
    },
    /// SIGKILL.
    Kill(Vec<String>),
    /// SIGSTOP.
    Stop(Vec<String>),
    /// SIGCONT.
    Cont(Vec<String>),
    /// Start again.
    Restart {
        /// Processes.
        names: Vec<String>,
        /// Data dir deleted first.
        wipe: bool,
    },
    /// Cut `a` from `b` (and `b` from `a` unless one way).
    Partition {
        /// One side.
        a: Vec<String>,
        /// The other.
        b: Vec<String>,
        /// Only `a` to `b`.
        one_way: bool,
    },
    /// Remove every partition.
    Heal,
    /// Shape links (None: every host, now and later).
    Link {
        /// Hosts.
        hosts: Option<Vec<String>>,
        /// The shape.
        spec: crate::netns::LinkSpec,
    },
    /// Check.
    Assert {
        /// Which check.
        check: CheckKind,
        /// Verify against another dataset seed.
        source_seed: Option<u64>,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::StartBootstraps(n) => write!(f, "start {n} bootstraps"),
            Action::StartNodes { names, env } => {
                write!(f, "start nodes {}", names.join(","))?;
                for (k, v) in env {
                    write!(f, " {k}={v}")?;
                }
                Ok(())
            }
            Action::MakeDir { size, seed } => write!(f, "make_dir {size} bytes seed {seed}"),
            Action::Send { from, chunk_size } => write!(f, "send from {from} chunk {chunk_size}"),
            Action::WaitProgress(p) => write!(f, "wait progress >= {p:.4}"),
            Action::WaitFor(d) => write!(f, "wait {} ms", d.as_millis()),
            Action::WaitState { node, state } => write!(f, "wait {node} {state}"),
            Action::Kill(n) => write!(f, "SIGKILL {}", n.join(",")),
            Action::Stop(n) => write!(f, "SIGSTOP {}", n.join(",")),
            Action::Cont(n) => write!(f, "SIGCONT {}", n.join(",")),
            Action::Restart { names, wipe } => {
                write!(
                    f,
                    "restart {}{}",
                    names.join(","),
                    if *wipe { " wiped" } else { "" }
                )
            }
            Action::Partition { a, b, one_way } => write!(
                f,
                "partition {} {} {}",
                a.join(","),
                if *one_way { "-/->" } else { "<-/->" },
                b.join(",")
            ),
            Action::Heal => write!(f, "heal partitions"),
            Action::Link { hosts, spec } => {
                let who = hosts
                    .as_ref()
                    .map_or("every link".to_owned(), |h| h.join(","));
                write!(f, "shape {who}:")?;
                if let Some(r) = spec.rate_mbit {
                    write!(f, " {r} Mbit/s")?;
                }
                write!(
                    f,
                    " delay {} ms ± {} ms, loss {}%",
                    spec.delay_ms, spec.jitter_ms, spec.loss_pct
                )
            }
            Action::Assert { check, source_seed } => {
                write!(f, "assert {check:?}")?;
                if let Some(s) = source_seed {
                    write!(f, " against seed {s}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Life {
    Running,
    Stopped,
    Killed,
}

/// Who exists and in what state, as the schedule unfolds.
#[derive(Default)]
struct Fleet {
    bootstraps: Vec<String>,
    nodes: Vec<String>,
    life: BTreeMap<String, Life>,
    /// Names in the order they were killed / stopped (draws are stable).
    killed: Vec<String>,
    stopped: Vec<String>,
    origin: Option<String>,
}

impl Fleet {
    fn running(&self, n: &str) -> bool {
        self.life.get(n) == Some(&Life::Running)
    }

    fn group(&self, pick: Pick) -> Vec<String> {
        match pick {
            Pick::Receiver => self
                .nodes
                .iter()
                .filter(|n| self.running(n) && Some(*n) != self.origin.as_ref())
                .cloned()
                .collect(),
            Pick::Bootstrap => self
                .bootstraps
                .iter()
                .filter(|n| self.running(n))
                .cloned()
                .collect(),
            Pick::Origin => self.origin.iter().cloned().collect(),
            Pick::Killed => self.killed.clone(),
            Pick::KilledReceiver => self
                .killed
                .iter()
                .filter(|n| self.nodes.contains(n) && Some(*n) != self.origin.as_ref())
                .cloned()
                .collect(),
            Pick::KilledBootstrap => self
                .killed
                .iter()
                .filter(|n| self.bootstraps.contains(n))
                .cloned()
                .collect(),
            Pick::Stopped => self.stopped.clone(),
        }
    }

    fn resolve(&self, t: &Target, rng: &mut Prng) -> Result<Vec<String>> {
        if let Some(n) = &t.name {
            if !self.life.contains_key(n) {
                bail!("no process named {n} has been started");
            }
            return Ok(vec![n.clone()]);
        }
        let Some(pick) = t.pick else {
            bail!("a target needs a name or a pick");
        };
        let mut group = self.group(pick);
        let want = match (t.count, t.fraction) {
            (Some(c), _) => c,
            (None, Some(f)) => (f * group.len() as f64).ceil() as usize,
            (None, None) => 1,
        };
        if want > group.len() || want == 0 {
            bail!(
                "cannot draw {want} from {pick:?} ({} available: {group:?})",
                group.len()
            );
        }
        // A partial Fisher-Yates shuffle: the first `want` are the draw.
        for i in 0..want {
            let j = i + rng.below(group.len() - i);
            group.swap(i, j);
        }
        group.truncate(want);
        Ok(group)
    }

    fn set(&mut self, names: &[String], life: Life) {
        for n in names {
            self.life.insert(n.clone(), life);
            self.killed.retain(|k| k != n);
            self.stopped.retain(|k| k != n);
            match life {
                Life::Killed => self.killed.push(n.clone()),
                Life::Stopped => self.stopped.push(n.clone()),
                Life::Running => {}
            }
        }
    }
}

/// Resolve `scenario` for `seed`.
pub(super) fn plan(scenario: &Scenario, seed: u64) -> Result<Vec<Action>> {
    let mut rng = Prng::new(seed);
    let mut fleet = Fleet::default();
    let mut out = Vec::new();
    let mut have_dir = false;
    for (i, step) in scenario.steps.iter().enumerate() {
        let action = resolve_step(step, &mut fleet, &mut rng, &mut have_dir)
            .map_err(|e| e.context(format!("step {} of {}", i + 1, scenario.name)))?;
        out.push(action);
    }
    Ok(out)
}

fn resolve_step(
    step: &Step,
    fleet: &mut Fleet,
    rng: &mut Prng,
    have_dir: &mut bool,
) -> Result<Action> {
    Ok(match step {
        Step::Start {
            bootstraps,
            nodes,
            env,
        } => {
            if *bootstraps > 0 && *nodes > 0 {
                bail!("start bootstraps and nodes in separate steps");
            }
            if *bootstraps > 0 {
                if !fleet.bootstraps.is_empty() {
                    bail!("bootstraps can be started once");
                }
                let names: Vec<String> = (1..=*bootstraps).map(|i| format!("b{i}")).collect();
                fleet.bootstraps = names.clone();
                fleet.set(&names, Life::Running);
                Action::StartBootstraps(*bootstraps)
            } else if *nodes > 0 {
                if fleet.bootstraps.is_empty() {
                    bail!("nodes need bootstraps started first");
                }
                let first = fleet.nodes.len() + 1;
                let names: Vec<String> = (first..first + nodes).map(|i| format!("n{i}")).collect();
                fleet.nodes.extend(names.iter().cloned());
                fleet.set(&names, Life::Running);
                Action::StartNodes {
                    names,
                    env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                }
            } else {
                bail!("start needs bootstraps or nodes");
            }
        }
        Step::MakeDir { size_mib, seed } => {
            *have_dir = true;
            Action::MakeDir {
                size: (size_mib * (1u64 << 20) as f64) as u64,
                seed: *seed,
            }
        }
        Step::Send { from, chunk_kib } => {
            if !*have_dir {
                bail!("send before make_dir");
            }
            if !fleet.nodes.contains(from) {
                bail!("send from {from}, which is not a started node");
            }
            fleet.origin = Some(from.clone());
            Action::Send {
                from: from.clone(),
                chunk_size: chunk_kib << 10,
            }
        }
        Step::Wait {
            progress,
            progress_between,
            ms,
            node,
            state,
        } => match (progress, progress_between, ms, node, state) {
            (Some(p), ..) => Action::WaitProgress(*p),
            (_, Some([lo, hi]), ..) => Action::WaitProgress(rng.between(*lo, *hi)),
            (_, _, Some(ms), ..) => Action::WaitFor(Duration::from_millis(*ms)),
            (_, _, _, Some(node), Some(state)) => {
                if !fleet.nodes.contains(node) {
                    bail!("wait for {node}, which is not a started node");
                }
                Action::WaitState {
                    node: node.clone(),
                    state: *state,
                }
            }
            _ => bail!("a wait needs one condition"),
        },
        Step::Sleep { ms } => Action::WaitFor(Duration::from_millis(*ms)),
        Step::Kill(t) => {
            let names = fleet.resolve(t, rng)?;
            fleet.set(&names, Life::Killed);
            Action::Kill(names)
        }
        Step::Stop(t) => {
            let names = fleet.resolve(t, rng)?;
            if let Some(n) = names.iter().find(|n| !fleet.running(n)) {
                bail!("cannot stop {n}: not running");
            }
            fleet.set(&names, Life::Stopped);
            Action::Stop(names)
        }
        Step::Cont(t) => {
            let names = fleet.resolve(t, rng)?;
            if let Some(n) = names.iter().find(|n| fleet.life[*n] != Life::Stopped) {
                bail!("cannot continue {n}: not stopped");
            }
            fleet.set(&names, Life::Running);
            Action::Cont(names)
        }
        Step::Restart { wipe, .. } => {
            let t = step.target().unwrap_or_default();
            let names = fleet.resolve(&t, rng)?;
            fleet.set(&names, Life::Running);
            Action::Restart { names, wipe: *wipe }
        }
        Step::Partition {
            a,
            a_fraction,
            b,
            one_way,
        } => {
            let all: Vec<String> = fleet
                .bootstraps
                .iter()
                .chain(&fleet.nodes)
                .cloned()
                .collect();
            let known = |names: &[String]| -> Result<()> {
                match names.iter().find(|n| !all.contains(n)) {
                    Some(n) => bail!("no process named {n} has been started"),
                    None => Ok(()),
                }
            };
            let a = match (a, a_fraction) {
                (Some(a), _) => {
                    known(a)?;
                    a.clone()
                }
                (None, Some(f)) => {
                    let want = ((f * all.len() as f64).ceil() as usize).clamp(1, all.len());
                    let mut group = all.clone();
                    for i in 0..want {
                        let j = i + rng.below(group.len() - i);
                        group.swap(i, j);
                    }
                    group.truncate(want);
                    group
                }
                (None, None) => bail!("a partition needs a or a_fraction"),
            };
            let b = match b {
                Some(b) => {
                    known(b)?;
                    b.clone()
                }
                None => all.iter().filter(|n| !a.contains(n)).cloned().collect(),
            };
            if a.is_empty() || b.is_empty() || a.iter().any(|n| b.contains(n)) {
                bail!("a partition needs two non-empty, disjoint sides ({a:?} / {b:?})");
            }
            Action::Partition {
                a,
                b,
                one_way: *one_way,
            }
        }
        Step::Heal => Action::Heal,
        Step::Link {
            hosts,
            rate_mbit,
            delay_ms,
            jitter_ms,
            loss_pct,
        } => {
            if let Some(n) = hosts
                .iter()
                .flatten()
                .find(|n| !fleet.life.contains_key(*n))
            {
                bail!("no process named {n} has been started");
            }
            Action::Link {
                hosts: hosts.clone(),
                spec: crate::netns::LinkSpec {
                    rate_mbit: *rate_mbit,
                    delay_ms: *delay_ms,
                    jitter_ms: *jitter_ms,
                    loss_pct: *loss_pct,
                },
            }
        }
        Step::Assert { check, source_seed } => Action::Assert {
            check: *check,
            source_seed: *source_seed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_deterministic_and_seed_dependent() {
        let a: Vec<u64> = (0..4)
            .scan(Prng::new(1), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Prng::new(1), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .scan(Prng::new(2), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Prng::new(0);
        assert!((0..1000).all(|_| r.below(7) < 7));
        assert!((0..1000).all(|_| (0.2..=0.6).contains(&r.between(0.2, 0.6))));
    }
}

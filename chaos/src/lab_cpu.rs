//! CPU used by the daemons of a `bench swarm` run, so that a figure is known not to be CPU-bound:
//! each daemon's user + system CPU-seconds over the run (`/proc/<pid>/stat`), the time its
//! threads spent runnable but waiting for a CPU (`/proc/<pid>/task/*/schedstat`, threads alive
//! at both samples), and how busy the whole machine was (`/proc/stat`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bench::cpu_seconds;

/// One daemon's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU-seconds so far.
    pub cpu_s: f64,
    /// Seconds its threads waited on a run queue so far.
    pub wait_s: f64,
}

/// A sample of every daemon (by host name) and of the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Per host.
    pub procs: BTreeMap<String, ProcSample>,
    /// `/proc/stat`'s first line: (busy, total) clock ticks of every CPU.
    pub machine: Option<(u64, u64)>,
}

/// One daemon's use over a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuUse {
    /// User + system CPU-seconds over the run.
    pub cpu_s: f64,
    /// `cpu_s` over the run's length: the share of one core.
    pub core_share: f64,
    /// Seconds its threads waited for a CPU while runnable.
    pub wait_s: f64,
}

/// The run's CPU figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuReport {
    /// Seconds between the samples.
    pub window_s: f64,
    /// Per host.
    pub hosts: BTreeMap<String, CpuUse>,
    /// Fraction of all the machine's CPU time that was busy (every process, not only ours).
    pub machine_busy: Option<f64>,
    /// CPUs of the machine.
    pub cpus: usize,
}

/// Sample every `(host, pid)` and the machine now.
pub fn sample(pids: &[(String, u32)]) -> Sample {
    let procs = pids
        .iter()
        .filter_map(|(h, pid)| {
            Some((
                h.clone(),
                ProcSample {
                    cpu_s: cpu_seconds(*pid)?,
                    wait_s: wait_seconds(*pid).unwrap_or(0.0),
                },
            ))
        })
        .collect();
    Sample {
        procs,
        machine: std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_proc_stat(&s)),
    }
}

/// What was used between `a` and `b`, `window_s` apart.
pub fn between(a: &Sample, b: &Sample, window_s: f64) -> CpuReport {
    let w = window_s.max(1e-9);
    let hosts = b
        .procs
        .iter()
        .filter_map(|(h, end)| {
            let start = a.procs.get(h)?;
            let cpu_s = (end.cpu_s - start.cpu_s).max(0.0);
            Some((
                h.clone(),
                CpuUse {
                    cpu_s,
                    core_share: cpu_s / w,
                    wait_s: (end.wait_s - start.wait_s).max(0.0),
                },
            ))
        })
        .collect();
    let machine_busy = match (a.machine, b.machine) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
        }
        _ => None,
    };
    CpuReport {
        window_s,
        hosts,
        machine_busy,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Seconds the threads of `pid` have waited on a run queue (the second field of each thread's
/// `schedstat`, in ns).
fn wait_seconds(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += s
                .split_whitespace()
                .nth(1)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(ns as f64 / 1e9)
}

/// (busy, total) ticks from the `cpu` line of `/proc/stat`: idle and iowait are not busy.
fn parse_proc_stat(s: &str) -> Option<(u64, u64)> {
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest times are inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

impl CpuReport {
    /// One line: the origin's use, the receivers' median (min–max), the run-queue waits and the
    /// machine's busy share.
    pub fn to_text(&self, origin: &str) -> String {
        let mut rx: Vec<&CpuUse> = (self.hosts.iter())
            .filter(|(h, _)| h.as_str() != origin && h.starts_with('r'))
            .map(|(_, c)| c)
            .collect();
        rx.sort_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s));
        let o = self.hosts.get(origin);
        let pct = |c: &CpuUse| c.core_share * 100.0;
        let mut s = String::from("CPU over the run:");
        if let Some(o) = o {
            s += &format!(
                " origin {:.1} s ({:.0}% of a core, waited {:.1} s for a CPU);",
                o.cpu_s,
                pct(o),
                o.wait_s
            );
        }
        if let (Some(first), Some(last)) = (rx.first(), rx.last()) {
            let mid = rx[rx.len() / 2];
            let waits: Vec<f64> = rx.iter().map(|c| c.wait_s).collect();
            let max_wait = waits.iter().copied().fold(0.0, f64::max);
            s += &format!(
                " receivers median {:.1} s ({:.0}% of a core; {:.0}–{:.0}%), waited up to {:.1} s for a CPU;",
                mid.cpu_s,
                pct(mid),
                pct(first),
                pct(last),
                max_wait
            );
        }
        if let Some(b) = self.machine_busy {
            s += &format!(
                " the machine's {} CPUs {:.0}% busy over {:.1} s",
                self.cpus,
                b * 100.0,
                self.window_s
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let s = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_proc_stat(s), Some((160, 1000)));
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
    }

    #[test]
    fn use_between_two_samples() {
        let at = |cpu_s: f64, wait_s: f64, busy: u64, total: u64| Sample {
            procs: BTreeMap::from([("origin".to_owned(), ProcSample { cpu_s, wait_s })]),
            machine: Some((busy, total)),
        };
        let r = between(&at(1.0, 0.5, 100, 1000), &at(3.0, 0.75, 600, 2000), 4.0);
        let o = r.hosts["origin"];
        assert!((o.cpu_s - 2.0).abs() < 1e-9);
        assert!((o.core_share - 0.5).abs() < 1e-9);
        assert!((o.wait_s - 0.25).abs() < 1e-9);
        assert!((r.machine_busy.unwrap_or(0.0) - 0.5).abs() < 1e-9);
        // A host missing from the first sample (started later) is left out.
        let mut late = at(3.0, 0.0, 600, 2000);
        late.procs.insert("r1".into(), ProcSample::default());
        assert!(
            !between(&at(1.0, 0.0, 0, 1), &late, 1.0)
                .hosts
                .contains_key("r1")
        );
        assert!(r.to_text("origin").contains("origin 2.0 s (50% of a core"));
    }
}

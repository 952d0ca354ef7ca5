//! A local cluster of `swarmcast` processes, on 127.0.0.1 or (with a [`Lab`]) each in its own
//! network namespace. Every process is killed by its own PID when the cluster is dropped,
//! whatever happened before, and then the lab is taken down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use swarmcast_proto::Role;

pub use crate::harness::Timings;
use crate::harness::{self, Child};
use crate::netns::{BOOTSTRAP_PORT, Lab, NODE_PORT};

/// One process of the cluster.
#[derive(Debug)]
pub struct Proc {
    /// Certificate name.
    pub name: String,
    /// Bootstrap or node.
    pub role: Role,
    /// The bootstrap's listen address.
    pub addr: Option<SocketAddr>,
    /// Its data dir.
    pub data_dir: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Proc {
    /// Whether it is running (started and not killed).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Its PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::pid)
    }

    /// Its log file (stdout and stderr) of the latest start.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// One process's figures at one time, from `/proc`.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
pub struct Figures {
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// RSS, open fds and threads of `pid`, from `/proc`; `None` if it is gone.
pub fn figures(pid: u32) -> Option<Figures> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Figures {
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
    })
}

/// The processes of one run.
#[derive(Debug)]
pub struct LocalCluster {
    exe: PathBuf,
    root: PathBuf,
    certs: PathBuf,
    /// Timing flags passed to every process; `None`: the binary's defaults.
    timings: Option<Timings>,
    /// Every process, bootstraps and nodes, in start order.
    pub procs: Vec<Proc>,
    /// The network lab the processes run in (netns mode), dropped after they are killed.
    lab: Option<Lab>,
    /// Leave `RUST_LOG` unset in the children: they log at the binary's default level.
    default_logs: bool,
}

impl LocalCluster {
    /// A cluster rooted at `root` (which must exist) running `exe`, with a fresh CA.
    pub fn new(exe: PathBuf, root: &Path, timings: Timings) -> Result<Self> {
        let certs = root.join("certs");
        swarmcast_certs::init_ca(&certs).context("creating the demo CA")?;
        Ok(Self {
            exe,
            root: root.to_owned(),
            certs,
            timings: Some(timings),
            procs: Vec::new(),
            lab: None,
            default_logs: false,
        })
    }

    /// Run every process started from now on in its own host of `lab`.
    pub fn with_lab(mut self, lab: Lab) -> Self {
        self.lab = Some(lab);
        self
    }

    /// Pass no timing flags (heartbeat, liveness, anti-entropy): every process runs with the
    /// binary's defaults, as a user runs it.
    pub fn with_binary_timings(mut self) -> Self {
        self.timings = None;
        self
    }

    /// Children log at the binary's default level (`RUST_LOG` removed), not at `info`: for
    /// measuring the product as shipped.
    pub fn with_default_logs(mut self) -> Self {
        self.default_logs = true;
        self
    }

    /// The directory of the cluster CA (and of every issued identity).
    pub fn certs_dir(&self) -> &Path {
        &self.certs
    }

    /// The lab, in netns mode.
    pub fn lab(&self) -> Option<&Lab> {
        self.lab.as_ref()
    }

    /// The lab, in netns mode.
    pub fn lab_mut(&mut self) -> Option<&mut Lab> {
        self.lab.as_mut()
    }

    /// A command running `program` where process `name` runs (its namespace in netns mode).
    pub fn command_at(&self, name: &str, program: &Path) -> Result<Command> {
        match &self.lab {
            Some(lab) => lab.command(name, program),
            None => Ok(Command::new(program)),
        }
    }

    /// Start `n` bootstraps replicating with each other; their addresses.
    pub fn start_bootstraps(&mut self, n: usize) -> Result<Vec<SocketAddr>> {
        self.start_bootstraps_with(n, |_| Vec::new())
    }

    /// [`LocalCluster::start_bootstraps`], bootstrap `i` (from 0) also given `extra(i)` as
    /// arguments (e.g. `--metrics ADDR`).
    pub fn start_bootstraps_with(
        &mut self,
        n: usize,
        extra: impl Fn(usize) -> Vec<String>,
    ) -> Result<Vec<SocketAddr>> {
        let names: Vec<String> = (1..=n).map(|i| format!("b{i}")).collect();
        let addrs: Vec<SocketAddr> = match &mut self.lab {
            Some(lab) => names
                .iter()
                .map(|b| Ok(SocketAddr::from((lab.add_host(b)?, BOOTSTRAP_PORT))))
                .collect::<Result<_>>()?,
            None => (0..n)
                .map(|_| harness::free_addr())
                .collect::<Result<_>>()?,
        };
        for (i, (a, name)) in addrs.iter().zip(names).enumerate() {
            swarmcast_certs::issue(&self.certs, &name, Role::Bootstrap)?;
            let data_dir = self.root.join("data").join(&name);
            let peers: Vec<SocketAddr> = addrs.iter().filter(|p| *p != a).copied().collect();
            let mut args = harness::bootstrap_argv(
                &self.certs.join(&name),
                *a,
                &data_dir,
                &peers,
                self.timings.as_ref(),
            );
            args.extend(extra(i));
            self.push(name, Role::Bootstrap, Some(*a), data_dir, args, Vec::new())?;
        }
        Ok(addrs)
    }

    /// Start a node registering through `seeds`; its index in `procs`.
    pub fn start_node(
        &mut self,
        name: &str,
        seeds: &[SocketAddr],
        env: &[(&str, &str)],
    ) -> Result<usize> {
        self.start_node_with(name, seeds, env, &[])
    }

    /// [`start_node`](Self::start_node) with extra `node join` arguments.
    pub fn start_node_with(
        &mut self,
        name: &str,
        seeds: &[SocketAddr],
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<usize> {
        swarmcast_certs::issue(&self.certs, name, Role::Node)?;
        let data_dir = self.root.join("data").join(name);
        let mut args = harness::node_argv(
            &self.certs.join(name),
            &data_dir,
            seeds,
            self.timings.as_ref(),
            extra,
        );
        if let Some(lab) = &mut self.lab {
            let ip = lab.add_host(name)?;
            args.push("--listen".into());
            args.push(SocketAddr::from((ip, NODE_PORT)).to_string());
        }
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.push(name.to_owned(), Role::Node, None, data_dir, args, env)
    }

    fn push(
        &mut self,
        name: String,
        role: Role,
        addr: Option<SocketAddr>,
        data_dir: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<usize> {
        self.procs.push(Proc {
            name,
            role,
            addr,
            data_dir,
            args,
            env,
            child: None,
            log: PathBuf::new(),
            starts: 0,
        });
        let i = self.procs.len() - 1;
        self.start(i)?;
        Ok(i)
    }

    fn start(&mut self, i: usize) -> Result<()> {
        let p = &mut self.procs[i];
        p.starts += 1;
        p.log = self.root.join(format!("{}.{}.log", p.name, p.starts));
        let mut cmd = match &self.lab {
            Some(lab) => lab.command(&p.name, &self.exe)?,
            None => Command::new(&self.exe),
        };
        cmd.args(&p.args);
        if self.default_logs {
            cmd.env_remove("RUST_LOG");
        } else {
            cmd.env("RUST_LOG", harness::child_log_filter());
        }
        for (k, v) in &p.env {
            cmd.env(k, v);
        }
        let child =
            Child::spawn(cmd, p.log.clone()).with_context(|| format!("starting {}", p.name))?;
        p.child = Some(child);
        Ok(())
    }

    /// SIGKILL process `i` by its PID and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs[i].child.take() {
            c.kill();
        }
    }

    /// Send `sig` to process `i` by its PID.
    pub fn signal(&self, i: usize, sig: Signal) -> Result<()> {
        let p = &self.procs[i];
        p.child
            .as_ref()
            .with_context(|| format!("{} is not running", p.name))?
            .signal(sig)
    }

    /// Start process `i` again with the same identity and data dir (wiped first if asked).
    pub fn restart(&mut self, i: usize, wipe: bool) -> Result<()> {
        self.kill(i);
        if wipe {
            let d = &self.procs[i].data_dir;
            if d.exists() {
                std::fs::remove_dir_all(d)?;
            }
        }
        self.start(i)
    }

    /// Data dirs of the nodes `names`, once each is registered with at least `neighbours`
    /// neighbours (and at least one); Err after `within`.
    pub async fn wait_joined(
        &self,
        names: &[String],
        neighbours: usize,
        within: std::time::Duration,
    ) -> Result<Vec<PathBuf>> {
        let dirs: Vec<PathBuf> = names
            .iter()
            .map(|n| self.index(n).map(|i| self.procs[i].data_dir.clone()))
            .collect::<Option<_>>()
            .context("no such node")?;
        let deadline = std::time::Instant::now() + within;
        for (d, n) in dirs.iter().zip(names) {
            crate::fleet::wait_joined(d, neighbours, deadline)
                .await
                .with_context(|| format!("{n}: not joined within {within:?}"))?;
        }
        Ok(dirs)
    }

    /// Index of the process named `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

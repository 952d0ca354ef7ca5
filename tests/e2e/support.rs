//! Harness for end-to-end tests: real `swarmcast` processes on 127.0.0.1, killed by PID.
//!
//! The process wrapper, the port picker, the argv, the timings and the JSON types are the
//! chaos crate's ([`swarmcast_chaos::harness`], [`swarmcast_bootstrap::listing`],
//! [`swarmcast_node::data::BroadcastInfo`]): one harness for both. Every process is a [`Proc`]
//! whose drop sends SIGKILL to its own PID and reaps it, so nothing outlives a failing test.
//! Logs go to files in the test's temp dir and are printed on failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail};
pub use swarmcast_bootstrap::listing::{ListedEntry, RegistryListing};
pub use swarmcast_chaos::harness::wait_for;
use swarmcast_chaos::harness::{self, Child, Timings};
pub use swarmcast_node::control::NodeStatus;
pub use swarmcast_node::data::BroadcastInfo;
pub use swarmcast_node::listing::BroadcastPhase;
pub use swarmcast_proto::{Role, Status};

/// End-to-end tests share two cores: run them one at a time so timing bounds hold.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_swarmcast")
}

/// A free UDP port on 127.0.0.1 (bound and released; collisions are unlikely on a quiet host).
pub fn free_addr() -> SocketAddr {
    harness::free_addr().expect("bind an ephemeral UDP port")
}

/// A child process, SIGKILLed by PID on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// SIGKILL by PID and reap.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Send a signal by PID (the child is ours, so the PID cannot have been reused before reaping).
    #[allow(dead_code)]
    pub fn signal(&self, sig: harness::Signal) -> Result<()> {
        self.child.signal(sig)
    }

    /// Whether the process has exited (and its exit code).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.exited()
    }

    /// Wait for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.child.wait_exit(timeout)
    }
}

/// Timing knobs used by every e2e cluster: the harness's test timings.
pub const HEARTBEAT: Duration = Timings::FOR_TEST.heartbeat;
pub const SUSPECT: Duration = Timings::FOR_TEST.suspect_after;
pub const DEAD: Duration = Timings::FOR_TEST.dead_after;
pub const ANTI_ENTROPY: Duration = Timings::FOR_TEST.anti_entropy;

/// A temp dir with a CA and the processes of one test.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub procs: Vec<Proc>,
    /// Use the binary's default timings instead of the fast test ones.
    pub defaults: bool,
}

impl Cluster {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("swarmcast-e2e").tempdir()?;
        let c = Self {
            dir,
            procs: Vec::new(),
            defaults: false,
        };
        c.cli(&["certs", "init", "--dir", &c.certs().to_string_lossy()])?;
        Ok(c)
    }

    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Run the CLI to completion; error unless it exits 0. Returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(bin())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .with_context(|| format!("running swarmcast {args:?}"))?;
        if !out.status.success() {
            bail!(
                "swarmcast {args:?} exited {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    pub fn issue(&self, name: &str, role: &str) -> Result<PathBuf> {
        let certs = self.certs();
        if !certs.join(name).join("cert.pem").exists() {
            self.cli(&[
                "certs",
                "issue",
                "--dir",
                &certs.to_string_lossy(),
                "--name",
                name,
                "--role",
                role,
            ])?;
        }
        Ok(certs.join(name))
    }

    /// Start `swarmcast ARGS` as `name`; returns its index in `procs`.
    pub fn spawn(&mut self, name: &str, args: Vec<String>) -> Result<usize> {
        self.spawn_env(name, args, &[])
    }

    /// Start `swarmcast ARGS` as `name` with extra environment variables.
    pub fn spawn_env(
        &mut self,
        name: &str,
        args: Vec<String>,
        env: &[(&str, &str)],
    ) -> Result<usize> {
        let mut cmd = Command::new(bin());
        cmd.args(&args);
        self.spawn_cmd(name, cmd, env)
    }

    /// Start a node under a shell that first sets `umask` (e.g. "000"); returns its index.
    pub fn node_umask(
        &mut self,
        name: &str,
        seeds: &[SocketAddr],
        extra: &[&str],
        umask: &str,
    ) -> Result<usize> {
        let identity = self.issue(name, "node")?;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\""), bin()])
            .args(["node", "join", "--identity"])
            .arg(&identity)
            .arg("--data-dir")
            .arg(self.data_dir(name))
            .args(["--heartbeat", &format!("{}ms", HEARTBEAT.as_millis())]);
        for s in seeds {
            cmd.arg("--seed").arg(s.to_string());
        }
        cmd.args(extra);
        self.spawn_cmd(name, cmd, &[])
    }

    /// Start a bootstrap under a shell that first sets `umask` (e.g. "000"); returns its index.
    pub fn bootstrap_umask(
        &mut self,
        name: &str,
        listen: SocketAddr,
        peers: &[SocketAddr],
        umask: &str,
    ) -> Result<usize> {
        let identity = self.issue(name, "bootstrap")?;
        let data_dir = self.data_dir(name);
        let args = harness::bootstrap_argv(&identity, listen, &data_dir, peers, self.timings());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\""), bin()])
            .args(args);
        self.spawn_cmd(name, cmd, &[])
    }

    fn spawn_cmd(&mut self, name: &str, mut cmd: Command, env: &[(&str, &str)]) -> Result<usize> {
        let log = self
            .dir
            .path()
            .join(format!("{name}.{}.log", self.procs.len()));
        cmd.env("RUST_LOG", "info,quinn=warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = Child::spawn(cmd, log.clone()).with_context(|| format!("spawning {name}"))?;
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(self.procs.len() - 1)
    }

    fn timings(&self) -> Option<&'static Timings> {
        (!self.defaults).then_some(&Timings::FOR_TEST)
    }

    /// Start a bootstrap; returns its index in `procs`.
    pub fn bootstrap(
        &mut self,
        name: &str,
        listen: SocketAddr,
        peers: &[SocketAddr],
    ) -> Result<usize> {
        self.bootstrap_extra(name, listen, peers, &[])
    }

    /// Start a bootstrap with extra flags; returns its index in `procs`.
    pub fn bootstrap_extra(
        &mut self,
        name: &str,
        listen: SocketAddr,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Result<usize> {
        let identity = self.issue(name, "bootstrap")?;
        let data_dir = self.path(&format!("data/{name}"));
        let mut args = harness::bootstrap_argv(&identity, listen, &data_dir, peers, self.timings());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.spawn(name, args)
    }

    /// Start a node; returns its index in `procs`.
    pub fn node(&mut self, name: &str, seeds: &[SocketAddr], extra: &[&str]) -> Result<usize> {
        self.node_env(name, seeds, extra, &[])
    }

    /// Start a node with extra environment variables (fault switches).
    pub fn node_env(
        &mut self,
        name: &str,
        seeds: &[SocketAddr],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<usize> {
        let identity = self.issue(name, "node")?;
        let data_dir = self.data_dir(name);
        let args = harness::node_argv(&identity, &data_dir, seeds, self.timings(), extra);
        self.spawn_env(name, args, env)
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.path(&format!("data/{name}"))
    }

    /// `registry --json` against one bootstrap.
    pub fn registry(&self, seed: SocketAddr) -> Result<RegistryListing> {
        let identity = self.issue("probe", "node")?;
        let out = self.cli(&[
            "registry",
            "--seed",
            &seed.to_string(),
            "--identity",
            &identity.to_string_lossy(),
            "--json",
        ])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// `node status --json` of one node.
    pub fn status(&self, name: &str) -> Result<NodeStatus> {
        let out = self.cli(&[
            "node",
            "status",
            "--json",
            "--data-dir",
            &self.data_dir(name).to_string_lossy(),
        ])?;
        Ok(serde_json::from_str(&out)?)
    }

    pub fn dump_logs(&self) {
        for p in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let keep = std::env::var("E2E_LOG_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(40);
            let tail: Vec<&str> = text.lines().rev().take(keep).collect();
            eprintln!("----- {} ({}) last lines -----", p.name, p.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if std::env::var_os("E2E_KEEP").is_some() {
            // Keep every process's log and data dir for a look after the run.
            self.dir.disable_cleanup(true);
            eprintln!("E2E_KEEP: kept {}", self.dir.path().display());
        }
        for p in &mut self.procs {
            p.kill();
        }
    }
}

/// Entries of a registry with the given role.
pub fn entries(reg: &RegistryListing, role: Role) -> Vec<&ListedEntry> {
    reg.with_role(role).collect()
}

/// Names of node entries with the given status (the probe left out).
pub fn names_with(reg: &RegistryListing, status: Status) -> Vec<String> {
    let mut v: Vec<String> = reg
        .with_role(Role::Node)
        .filter(|e| e.status == status)
        .map(|e| e.name.clone())
        .filter(|n| n != "probe")
        .collect();
    v.sort();
    v
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    swarmcast_chaos::tree::fill(seed, &mut out);
    out
}

/// Write a file with the given mode.
pub fn write_file(path: &std::path::Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Assert that `copy` holds exactly the files, empty dirs, contents and modes of `source`.
#[track_caller]
pub fn assert_same_tree(source: &std::path::Path, copy: &std::path::Path) {
    if let Err(e) = swarmcast_chaos::tree::verify(source, copy) {
        panic!(
            "{} is not a faithful copy of {}: {e:#}",
            copy.display(),
            source.display()
        );
    }
}

impl Cluster {
    /// `node ls --json` of one node.
    pub fn ls(&self, name: &str) -> Result<Vec<BroadcastInfo>> {
        let out = self.cli(&[
            "node",
            "ls",
            "--json",
            "--data-dir",
            &self.data_dir(name).to_string_lossy(),
        ])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// `node send DIR --json` at `name`: the broadcast's id (hex) and chunk count.
    pub fn send_json(&self, name: &str, dir: &std::path::Path) -> Result<Sent> {
        let out = self.cli(&[
            "node",
            "send",
            &dir.to_string_lossy(),
            "--json",
            "--data-dir",
            &self.data_dir(name).to_string_lossy(),
        ])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let id = v["broadcast"]["id"].as_str().context("no id")?.to_owned();
        let chunks = v["broadcast"]["chunks"].as_u64().context("no chunks")?;
        Ok(Sent { id, chunks })
    }

    /// Until `name` lists broadcast `id` done (complete, or seeding at its origin); Err after
    /// `timeout`, saying `what`.
    pub fn wait_done(&self, name: &str, id: &str, timeout: Duration, what: &str) -> Result<()> {
        wait_for(timeout, what, || {
            Ok(self
                .broadcast(name, id)?
                .filter(|b| b.is_done())
                .map(|_| ()))
        })
    }

    /// The `node ls` entry of broadcast `id` at `name`, if any.
    pub fn broadcast(&self, name: &str, id: &str) -> Result<Option<BroadcastInfo>> {
        Ok(self.ls(name)?.into_iter().find(|b| b.id == id))
    }
}

/// What `node send --json` said.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The broadcast id, hex.
    pub id: String,
    /// Its chunks.
    pub chunks: u64,
}

/// A QUIC client in the test process with the certificate in `dir`: a runtime of one worker,
/// an endpoint on loopback and the client config of that identity (for attackers and
/// outsiders speaking to real daemons).
pub struct QuicClient {
    pub rt: tokio::runtime::Runtime,
    pub endpoint: quinn::Endpoint,
    pub config: quinn::ClientConfig,
    pub identity: swarmcast_certs::Identity,
}

impl QuicClient {
    pub fn new(dir: &std::path::Path) -> Result<Self> {
        swarmcast_certs::install_crypto_provider();
        let identity = swarmcast_certs::Identity::load(dir)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let endpoint = {
            let _guard = rt.enter();
            quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?
        };
        let config = identity.client_config(swarmcast_net::transport_config())?;
        Ok(Self {
            rt,
            endpoint,
            config,
            identity,
        })
    }
}

//! The one process harness, shared by the chaos crate and the end-to-end tests: a child
//! process SIGKILLed by its own PID on drop, signals sent by PID, a port picker, the argv of
//! `bootstrap` and `node join`, and the one set of fast test timings.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Timing flags of test fleets: faster than the binary's defaults, so that faults are noticed
/// in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `node join --heartbeat`.
    pub heartbeat: Duration,
    /// `bootstrap --suspect-after`.
    pub suspect_after: Duration,
    /// `bootstrap --dead-after`.
    pub dead_after: Duration,
    /// `bootstrap --anti-entropy`.
    pub anti_entropy: Duration,
}

impl Timings {
    /// Heartbeat 500 ms, suspect after 1.5 s, dead after 3 s, anti-entropy every 300 ms.
    pub const FOR_TEST: Self = Self {
        heartbeat: Duration::from_millis(500),
        suspect_after: Duration::from_millis(1500),
        dead_after: Duration::from_secs(3),
        anti_entropy: Duration::from_millis(300),
    };

    /// [`Timings::FOR_TEST`].
    pub fn for_test() -> Self {
        Self::FOR_TEST
    }
}

impl Default for Timings {
    /// [`Timings::FOR_TEST`].
    fn default() -> Self {
        Self::FOR_TEST
    }
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// `bootstrap` arguments. `timings: None` keeps the binary's defaults.
pub fn bootstrap_argv(
    identity: &Path,
    listen: SocketAddr,
    data_dir: &Path,
    peers: &[SocketAddr],
    timings: Option<&Timings>,
) -> Vec<String> {
    let mut args = vec![
        "bootstrap".to_owned(),
        "--identity".into(),
        identity.to_string_lossy().into_owned(),
        "--listen".into(),
        listen.to_string(),
        "--data-dir".into(),
        data_dir.to_string_lossy().into_owned(),
    ];
    if let Some(t) = timings {
        args.extend([
            "--suspect-after".into(),
            ms(t.suspect_after),
            "--dead-after".into(),
            ms(t.dead_after),
            "--anti-entropy".into(),
            ms(t.anti_entropy),
        ]);
    }
    for p in peers {
        args.push("--peer".into());
        args.push(p.to_string());
    }
    args
}

/// `node join` arguments, then `extra`. `timings: None` keeps the binary's defaults.
pub fn node_argv(
    identity: &Path,
    data_dir: &Path,
    seeds: &[SocketAddr],
    timings: Option<&Timings>,
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec![
        "node".to_owned(),
        "join".into(),
        "--identity".into(),
        identity.to_string_lossy().into_owned(),
        "--data-dir".into(),
        data_dir.to_string_lossy().into_owned(),
    ];
    if let Some(t) = timings {
        args.extend(["--heartbeat".into(), ms(t.heartbeat)]);
    }
    for s in seeds {
        args.push("--seed".into());
        args.push(s.to_string());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// A free UDP port on 127.0.0.1 (bound and released; collisions are unlikely on a quiet host).
pub fn free_addr() -> Result<SocketAddr> {
    let s = UdpSocket::bind("127.0.0.1:0").context("picking a free UDP port")?;
    Ok(s.local_addr()?)
}

/// The `RUST_LOG` of child daemons: `SWARMCAST_CHILD_LOG`, else `info,quinn=warn`.
pub fn child_log_filter() -> String {
    std::env::var("SWARMCAST_CHILD_LOG").unwrap_or_else(|_| "info,quinn=warn".into())
}

/// A child process, its stdout and stderr in a log file, SIGKILLed by PID and reaped on drop.
#[derive(Debug)]
pub struct Child {
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl Child {
    /// Start `cmd` with stdin closed and stdout and stderr appended to a new file `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Result<Self> {
        let file = std::fs::File::create(&log)
            .with_context(|| format!("creating log {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        Ok(Self {
            child: Some(child),
            log,
        })
    }

    /// Its PID until it is killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Whether it was started and not killed (it may have exited on its own).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGKILL by PID and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send `sig` by PID. The child is ours and not reaped, so its PID cannot have been reused.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self.pid().context("the process is not running")?;
        let raw = i32::try_from(pid).context("PID out of range")?;
        signal::kill(Pid::from_raw(raw), sig).with_context(|| format!("{sig} to pid {pid}"))
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait for it to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `check` every 50 ms until it returns `Ok(Some(v))`, up to `timeout` (blocking).
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `node send DIR --wait --json` run by `exe` at the node whose data dir is `dd` (the user's
/// way of sending), killed if dropped; its JSON answer, or an error with what it printed.
pub async fn send_wait(
    exe: &Path,
    dd: &Path,
    dir: &Path,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let out = tokio::process::Command::new(exe)
        .arg("node")
        .arg("send")
        .arg(dir)
        .arg("--wait")
        .arg("--json")
        .arg("--timeout")
        .arg(format!("{}s", timeout.as_secs().max(1)))
        .arg("--data-dir")
        .arg(dd)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .context("running node send --wait")?;
    if !out.status.success() {
        bail!(
            "node send --wait exited {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn argv_carries_the_timings_or_none() {
        let t = Timings::for_test();
        let b = bootstrap_argv(
            Path::new("/c/b1"),
            SocketAddr::from(([127, 0, 0, 1], 7000)),
            Path::new("/d/b1"),
            &[SocketAddr::from(([127, 0, 0, 1], 7001))],
            Some(&t),
        );
        let b = b.join(" ");
        assert_eq!(
            b,
            "bootstrap --identity /c/b1 --listen 127.0.0.1:7000 --data-dir /d/b1 \
             --suspect-after 1500ms --dead-after 3000ms --anti-entropy 300ms --peer 127.0.0.1:7001"
        );
        let n = node_argv(
            Path::new("/c/n1"),
            Path::new("/d/n1"),
            &[SocketAddr::from(([127, 0, 0, 1], 7000))],
            None,
            &["--neighbours", "2"],
        );
        assert_eq!(
            n.join(" "),
            "node join --identity /c/n1 --data-dir /d/n1 --seed 127.0.0.1:7000 --neighbours 2"
        );
    }

    #[test]
    fn signals_go_to_the_child_by_pid_and_drop_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut c = Child::spawn(cmd, dir.path().join("sleep.log")).unwrap();
        c.signal(Signal::SIGSTOP).unwrap();
        c.signal(Signal::SIGCONT).unwrap();
        assert!(c.exited().is_none(), "still running after STOP/CONT");
        c.signal(Signal::SIGTERM).unwrap();
        let status = c
            .wait_exit(Duration::from_secs(5))
            .expect("exited on SIGTERM");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));

        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let c = Child::spawn(cmd, dir.path().join("sleep2.log")).unwrap();
        let pid = c.pid().unwrap();
        drop(c);
        // Killed and reaped: the PID is gone (or, rarely, reused by another program).
        assert!(pid_gone(pid), "pid {pid} still a sleep after drop");
    }

    fn pid_gone(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| !c.starts_with("sleep"))
            .unwrap_or(true)
    }
}

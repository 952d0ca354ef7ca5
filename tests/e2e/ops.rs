//! What an operator meets: private bootstrap data dirs, refused handshakes logged at the
//! bootstrap, certificate renewal and rotation.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::support::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A bootstrap (and a node) started under umask 000 keep their data dirs 0700 and their files
/// 0600, and a bootstrap tightens a data dir that was left open.
#[test]
fn bootstrap_data_dir_is_private_under_umask_000() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let (b1, b2) = (free_addr(), free_addr());
    // b2's data dir exists already, open to everyone.
    let open = c.data_dir("b2");
    std::fs::create_dir_all(&open)?;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
    c.bootstrap_umask("b1", b1, &[], "000")?;
    c.bootstrap_umask("b2", b2, &[b1], "000")?;
    c.node_umask("n1", &[b1], &[], "000")?;
    let files = |name: &str| {
        let d = c.data_dir(name);
        [d.join("registry.snapshot"), d.join("incarnation")]
    };
    let written = wait_for(
        Duration::from_secs(30),
        "snapshots written, n1 registered",
        || {
            let snapshots = ["b1", "b2"]
                .iter()
                .all(|b| files(b).iter().all(|f| f.exists()));
            Ok((snapshots && c.status("n1")?.registered).then_some(()))
        },
    );
    if written.is_err() {
        c.dump_logs();
    }
    written?;
    for b in ["b1", "b2"] {
        let d = c.data_dir(b);
        ensure!(mode(&d) == 0o700, "{b} data dir is {:o}", mode(&d));
        for f in files(b) {
            ensure!(mode(&f) == 0o600, "{} is {:o}", f.display(), mode(&f));
        }
    }
    let n1 = c.data_dir("n1");
    ensure!(mode(&n1) == 0o700, "n1 data dir is {:o}", mode(&n1));
    let inc = n1.join("incarnation");
    ensure!(mode(&inc) == 0o600, "n1 incarnation is {:o}", mode(&inc));
    Ok(())
}

/// Lines of `log` that contain every one of `wants`.
fn lines_with(log: &Path, wants: &[&str]) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| wants.iter().all(|w| l.contains(w)))
        .map(str::to_owned)
        .collect()
}

/// A node with another CA's certificate retries for ever: the bootstrap logs the refused
/// handshake with the peer's address and the reason, once per peer and reason per 30 s
/// however often it retries.
#[test]
fn refused_handshakes_are_logged_at_the_bootstrap_rate_limited() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    let bi = c.bootstrap("b1", b, &[])?;
    let other = c.path("other-ca");
    let other_s = other.to_string_lossy().into_owned();
    c.cli(&["certs", "init", "--dir", &other_s])?;
    c.cli(&[
        "certs", "issue", "--dir", &other_s, "--name", "n1", "--role", "node",
    ])?;
    let foreign = other.join("n1").to_string_lossy().into_owned();
    // Five one-off clients, each refused, then a daemon that retries on its own.
    for _ in 0..5 {
        let out = std::process::Command::new(bin())
            .args(["registry", "--seed", &b.to_string(), "--identity", &foreign])
            .env("RUST_LOG", "off")
            .output()?;
        ensure!(!out.status.success(), "a foreign client was answered");
    }
    let log = c.procs[bi].log.clone();
    let wants = [
        "handshake refused",
        "remote=127.0.0.1:",
        "UnknownCA",
        "different CAs",
    ];
    let first = wait_for(Duration::from_secs(10), "the refusal logged", || {
        Ok((!lines_with(&log, &wants).is_empty()).then_some(()))
    });
    if first.is_err() {
        c.dump_logs();
    }
    first?;
    let argv = swarmcast_chaos::harness::node_argv(
        &other.join("n1"),
        &c.data_dir("n1"),
        &[b],
        Some(&swarmcast_chaos::harness::Timings::FOR_TEST),
        &[],
    );
    c.spawn("n1", argv)?;
    std::thread::sleep(Duration::from_secs(4));
    let refused = lines_with(&log, &["handshake refused"]);
    ensure!(
        refused.len() == 1,
        "one line per peer and reason per 30 s, got {}:\n{}",
        refused.len(),
        refused.join("\n")
    );
    ensure!(refused[0].contains("held_back=0"), "{}", refused[0]);
    Ok(())
}

//! The control socket is private: a daemon started under umask 000 still makes its data dir
//! 0700 and its socket 0600; another local user is told they are refused (not that no daemon
//! runs); with `--control-group`, a member may use it, and `node send` reads as that user, so a
//! directory they cannot read is refused without naming what is inside it.
//!
//! Needs root (to act as `nobody`, uid 65534, through `Command::uid`); skipped otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::support::*;

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The binary where `nobody` can run it: in place if they can, else a copy in `dir`.
fn binary_for_nobody(dir: &Path) -> Result<PathBuf> {
    let runs = Command::new(bin())
        .arg("--version")
        .uid(NOBODY)
        .gid(NOGROUP)
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Ok(PathBuf::from(bin()));
    }
    let copy = dir.join("swarmcast");
    std::fs::copy(bin(), &copy).context("copying the binary for nobody")?;
    chmod(&copy, 0o755);
    Ok(copy)
}

/// Run the CLI as `nobody`.
fn as_nobody(exe: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("HOME")
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOGROUP)
        .output()
        .unwrap()
}

#[track_caller]
fn refused(out: &Output, wants: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    for w in wants {
        assert!(err.contains(w), "want {w:?} in: {err}");
    }
    assert!(!err.contains("no daemon is running"), "{err}");
    err
}

#[test]
fn control_socket_is_private_and_send_reads_as_the_caller() -> Result<()> {
    if !nix_is_root() {
        eprintln!("skipped: needs root to act as another user");
        return Ok(());
    }
    let _serial = serial();
    let mut c = Cluster::new()?;
    // Let `nobody` reach the data dirs and sources (the daemon decides the rest).
    chmod(c.dir.path(), 0o755);
    std::fs::create_dir_all(c.path("data"))?;
    chmod(&c.path("data"), 0o755);
    let exe = binary_for_nobody(c.dir.path())?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    c.node_umask("n1", &[b], &[], "000")?;
    c.node_umask("n2", &[b], &["--control-group", "nogroup"], "000")?;
    let (d1, d2) = (c.data_dir("n1"), c.data_dir("n2"));
    let (s1, s2) = (d1.join("control.sock"), d2.join("control.sock"));
    let joined = wait_for(Duration::from_secs(30), "nodes registered", || {
        Ok((c.status("n1")?.registered && c.status("n2")?.registered).then_some(()))
    });
    if joined.is_err() {
        c.dump_logs();
    }
    joined?;

    // umask 000, yet private.
    assert_eq!(mode(&d1), 0o700, "n1 data dir");
    assert_eq!(mode(&s1), 0o600, "n1 socket");
    assert_eq!(mode(&d2), 0o710, "n2 data dir");
    assert_eq!(mode(&s2), 0o660, "n2 socket");
    assert_eq!(std::fs::metadata(&s2)?.gid(), NOGROUP);
    let incarnation = d1.join("incarnation");
    if incarnation.exists() {
        assert_eq!(mode(&incarnation) & 0o077, 0, "incarnation is private");
    }

    // Another user: told they are refused, not that no daemon runs.
    let d1s = d1.to_string_lossy().into_owned();
    let out = as_nobody(&exe, &["node", "status", "--data-dir", &d1s]);
    refused(&out, &["permission denied", "control.sock"]);
    // Even with the socket opened up by hand, SO_PEERCRED refuses them.
    chmod(&d1, 0o755);
    chmod(&s1, 0o666);
    let out = as_nobody(&exe, &["node", "status", "--data-dir", &d1s]);
    refused(&out, &["refused", "uid 65534 may not use this daemon"]);
    let src = c.path("open-src");
    std::fs::create_dir(&src)?;
    std::fs::write(src.join("f"), b"data")?;
    chmod(&src, 0o755);
    chmod(&src.join("f"), 0o644);
    let out = as_nobody(
        &exe,
        &["node", "send", &src.to_string_lossy(), "--data-dir", &d1s],
    );
    refused(&out, &["uid 65534 may not use this daemon"]);

    // A member of the control group may use n2, and root still may.
    let d2s = d2.to_string_lossy().into_owned();
    let out = as_nobody(&exe, &["node", "status", "--json", "--data-dir", &d2s]);
    ensure!(
        out.status.success(),
        "nobody's status on n2: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What nobody cannot read is refused, naming only what they could see.
    // (a) a 0700 directory holding a 0600 file;
    let private = c.path("private");
    std::fs::create_dir(&private)?;
    std::fs::write(private.join("inner-secret.txt"), b"secret")?;
    chmod(&private.join("inner-secret.txt"), 0o600);
    chmod(&private, 0o700);
    let send = |dir: &Path| {
        as_nobody(
            &exe,
            &["node", "send", &dir.to_string_lossy(), "--data-dir", &d2s],
        )
    };
    let err = refused(&send(&private), &["permission denied", "uid 65534"]);
    assert!(!err.contains("inner-secret"), "{err}");
    // (b) a readable directory holding a 0600 file: named, since they can list it;
    let mixed = c.path("mixed");
    std::fs::create_dir(&mixed)?;
    std::fs::write(mixed.join("ok.txt"), b"fine")?;
    std::fs::write(mixed.join("theirs.txt"), b"not yours")?;
    chmod(&mixed, 0o755);
    chmod(&mixed.join("ok.txt"), 0o644);
    chmod(&mixed.join("theirs.txt"), 0o600);
    refused(&send(&mixed), &["theirs.txt"]);
    // (c) a readable directory holding a 0700 one: the names inside are never printed.
    let nested = c.path("nested");
    std::fs::create_dir_all(nested.join("locked"))?;
    std::fs::write(nested.join("locked/hidden-name.bin"), b"x")?;
    chmod(&nested, 0o755);
    chmod(&nested.join("locked"), 0o700);
    let err = refused(&send(&nested), &["locked"]);
    assert!(!err.contains("hidden-name"), "{err}");
    // (d) a path through a directory they cannot search (like /root/x): the CLI, running as
    // them, already fails to reach it (the daemon's own check of ancestors is in the
    // manifest_access tests, since an honest client never gets that far).
    std::fs::create_dir_all(private.join("sub"))?;
    chmod(&private.join("sub"), 0o755);
    let err = refused(&send(&private.join("sub")), &[]);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    assert!(!err.contains("inner-secret"), "{err}");
    // Nothing of those was published.
    ensure!(
        c.ls("n2")?.is_empty(),
        "n2 published something: {:?}",
        c.ls("n2")?
    );

    // What they can read goes through, to the other node too.
    let out = send(&src);
    ensure!(
        out.status.success(),
        "nobody's send of a readable dir: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(30), "n1 received open-src", || {
        Ok(c.ls("n1")?
            .into_iter()
            .find(|b| b.name == "open-src" && b.state == BroadcastPhase::Complete)
            .map(|_| ()))
    })?;
    // Root reads as the daemon: the private directory is root's to send.
    let root_send = c.cli(&[
        "node",
        "send",
        &private.to_string_lossy(),
        "--data-dir",
        &d2s,
    ]);
    ensure!(root_send.is_ok(), "root's send: {root_send:?}");
    Ok(())
}

fn nix_is_root() -> bool {
    // The test crate has no nix; `id -u` is enough here.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

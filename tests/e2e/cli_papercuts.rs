//! What a new user meets at the command line: usage errors exit 2, a closed pipe is not a
//! crash, an error says its cause once, and a refused handshake is named as such.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;

use crate::bench_args::refused;
use crate::support::*;

#[test]
fn bad_flag_values_and_combinations_are_usage_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_string_lossy().into_owned();
    refused(
        &["node", "send", &d, "--data-dir", &d, "--chunk-size", "1KiB"],
        "--chunk-size: chunk size 1024 is outside 4096..=16777216",
    )?;
    refused(
        &[
            "node",
            "send",
            &d,
            "--data-dir",
            &d,
            "--chunk-size",
            "32MiB",
        ],
        "is outside 4096..=16777216",
    )?;
    refused(
        &["node", "send", &d, "--data-dir", &d, "--timeout", "5s"],
        "--wait",
    )?;
    refused(
        &["certs", "renew", "--dir", &d, "--name", "Bad"],
        "--name: invalid name \"Bad\"",
    )?;
    refused(
        &["certs", "renew", "--dir", &d, "--name", "n1", "--days", "0"],
        "--days",
    )?;
    refused(&["certs", "renew", "--dir", &d], "--name")?;
    refused(
        &[
            "bootstrap",
            "--identity",
            &d,
            "--listen",
            "127.0.0.1:9",
            "--suspect-after",
            "5s",
            "--dead-after",
            "2s",
        ],
        "--dead-after must be longer than --suspect-after",
    )?;
    refused(
        &[
            "node",
            "join",
            "--identity",
            &d,
            "--seed",
            "127.0.0.1:9",
            "--neighbours",
            "0",
        ],
        "--neighbours: the neighbour target must be at least 1",
    )?;
    refused(&["bench", "local", "--runs", "0"], "must be at least 1")?;
    Ok(())
}

#[test]
fn an_error_says_its_cause_once() -> Result<()> {
    let out = Command::new(bin())
        .args([
            "node",
            "join",
            "--identity",
            "/nonexistent/n1",
            "--seed",
            "127.0.0.1:9",
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let cause = "No such file or directory (os error 2)";
    assert_eq!(
        stderr.matches(cause).count(),
        1,
        "cause said once: {stderr}"
    );
    Ok(())
}

/// Run `args` with stdout a pipe whose read end is already closed.
fn into_closed_pipe(args: &[&str]) -> Result<std::process::Output> {
    let (read, write) = nix::unistd::pipe()?;
    drop(read);
    let out = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()?;
    Ok(out)
}

#[test]
fn every_printing_command_into_a_closed_pipe_exits_quietly() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    c.node("n1", &[b], &[])?;
    wait_for(Duration::from_secs(20), "n1 registered", || {
        Ok(c.status("n1")?.registered.then_some(()))
    })?;
    let data_dir = c.data_dir("n1").to_string_lossy().into_owned();
    for cmd in [["node", "status"], ["node", "ls"]] {
        for json in [false, true] {
            let mut args = vec![cmd[0], cmd[1], "--data-dir", &data_dir];
            if json {
                args.push("--json");
            }
            let out = into_closed_pipe(&args)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
            assert!(stderr.is_empty(), "{args:?} says nothing: {stderr}");
        }
    }
    // `node send | head -1`: every form of send, then every other command that prints.
    let certs = c.path("more-certs").to_string_lossy().into_owned();
    let mut commands: Vec<Vec<String>> = Vec::new();
    for (i, extra) in [&[][..], &["--json"], &["--wait"], &["--wait", "--json"]]
        .iter()
        .enumerate()
    {
        let dir = c.path(&format!("payload{i}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("f"), format!("payload {i}"))?;
        let mut args = vec![
            "node",
            "send",
            &dir.to_string_lossy(),
            "--data-dir",
            &data_dir,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        commands.push(args);
    }
    commands.push(vec![
        "node".into(),
        "rm".into(),
        "payload0".into(),
        "--data-dir".into(),
        data_dir.clone(),
    ]);
    commands.push(vec![
        "certs".into(),
        "init".into(),
        "--dir".into(),
        certs.clone(),
    ]);
    commands.push(vec![
        "certs".into(),
        "issue".into(),
        "--dir".into(),
        certs,
        "--name".into(),
        "x".into(),
        "--role".into(),
        "node".into(),
    ]);
    commands.push(vec!["chaos".into(), "presets".into()]);
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = into_closed_pipe(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
    Ok(())
}

#[test]
fn joining_with_a_certificate_of_another_ca_names_the_refused_handshake() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    // n1's identity comes from a second CA: the handshakes fail both ways.
    let other = c.path("other-ca");
    let other_s = other.to_string_lossy().into_owned();
    c.cli(&["certs", "init", "--dir", &other_s])?;
    c.cli(&[
        "certs", "issue", "--dir", &other_s, "--name", "n1", "--role", "node",
    ])?;
    let out = Command::new(bin())
        .args(["node", "join", "--identity"])
        .arg(other.join("n1"))
        .args([
            "--seed",
            &b.to_string(),
            "--join-timeout",
            "3s",
            "--data-dir",
        ])
        .arg(c.data_dir("n1"))
        .env("RUST_LOG", "warn")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: the TLS handshake with seed {b} was refused ("
        )),
        "the refusal comes first: {last}"
    );
    assert!(
        last.contains("(this side refused the peer's certificate: TLS alert UnknownCA)"),
        "names who refused and the alert: {last}"
    );
    assert!(
        last.contains("no seed accepted the registration"),
        "and the timeout: {last}"
    );
    Ok(())
}

#[test]
fn a_send_whose_hashing_outlasts_the_answer_timeout_still_succeeds() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    // Every manifest build takes 11 s longer than it would: more than the control socket's
    // 10 s answer timeout (`swarmcast_node::control::ANSWER_TIMEOUT`).
    let slow = swarmcast_node::control::ANSWER_TIMEOUT + Duration::from_secs(1);
    let ms = slow.as_millis().to_string();
    c.node_env("n1", &[b], &[], &[("SWARMCAST_FAULT_HASH_DELAY_MS", &ms)])?;
    wait_for(Duration::from_secs(20), "n1 registered", || {
        Ok(c.status("n1")?.registered.then_some(()))
    })?;
    let dir = c.path("slow");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("f"), b"hashed slowly")?;
    let data_dir = c.data_dir("n1").to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let out = c.cli(&[
        "node",
        "send",
        &dir.to_string_lossy(),
        "--data-dir",
        &data_dir,
        "--json",
    ])?;
    assert!(started.elapsed() >= slow, "the fault was not applied");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v["broadcast"]["name"], "slow", "{out}");
    Ok(())
}

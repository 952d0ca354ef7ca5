//! Broadcasts with priorities (`node send --priority high|normal|low`), real daemons on
//! 127.0.0.1: two origins send at once to the same nodes, through upload caps so that the
//! links are what they compete for. The high broadcast completes everywhere well before the
//! low one of the same size, and not much later than alone on the same links; both arrive
//! byte-identical. `node ls` and `node status` show the priority; an unknown one is a usage
//! error.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::support::*;

/// Every node's upload cap: the links are the bottleneck, not loopback.
const CAP: &str = "4MiB/s";
/// Each broadcast's size: at the cap, about 3 s of its origin's upload.
const BYTES: usize = 12 << 20;
/// High beside low may take at most this many times its T alone. The lab's bound is 1.15;
/// loopback's processes share two cores, so this is loose: seen 1.11 and 1.29 with
/// priorities, 1.25 to 1.60 with them ignored.
const MAX_SLOWDOWN: f64 = 1.4;
/// The low one (same size) completes at least this share of high's T after the high one.
/// Seen with priorities: 0.165 to 0.47 (0.8 to 2.2 s); with them ignored, from low 0.25 s
/// first to 0.095 (equal shares finish together). The bound sits between the two.
const MIN_GAP: f64 = 0.125;

/// Send each `(origin, dir, priority)` at once; the time until each is done at every node but
/// its origin, from the start, with its id.
fn completion_times(
    c: &Cluster,
    nodes: &[&str],
    sends: &[(&'static str, &Path, &str)],
) -> Result<Vec<(String, Duration)>> {
    let started = Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (sends.iter())
            .map(|(origin, dir, p)| s.spawn(move || send(c, origin, dir, p)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("send thread panicked"))?
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let mut done: Vec<Option<Duration>> = vec![None; sends.len()];
    while done.iter().any(Option::is_none) {
        if started.elapsed() > Duration::from_secs(120) {
            c.dump_logs();
            bail!("not all complete within 120 s: {done:?}");
        }
        for (k, id) in ids.iter().enumerate() {
            if done[k].is_some() {
                continue;
            }
            let mut all = true;
            for n in nodes.iter().filter(|n| **n != sends[k].0) {
                all &= c.broadcast(n, id)?.is_some_and(|b| b.is_done());
            }
            if all {
                done[k] = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ids.into_iter().zip(done.into_iter().flatten()).collect())
}

/// `node send DIR --json --priority P` at `name`: the broadcast's id.
fn send(c: &Cluster, name: &str, dir: &Path, priority: &str) -> Result<String> {
    let out = c.cli(&[
        "node",
        "send",
        &dir.to_string_lossy(),
        "--json",
        "--priority",
        priority,
        "--data-dir",
        &c.data_dir(name).to_string_lossy(),
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    Ok(v["broadcast"]["id"].as_str().context("no id")?.to_owned())
}

#[test]
fn a_high_priority_broadcast_completes_before_a_low_one_sent_at_once() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    let nodes = ["hi", "lo", "r1", "r2"];
    for n in nodes {
        c.node(n, &[b], &["--max-upload", CAP])?;
    }
    wait_for(Duration::from_secs(30), "four nodes alive", || {
        let alive = names_with(&c.registry(b)?, Status::Alive);
        Ok(nodes
            .iter()
            .all(|n| alive.contains(&(*n).to_owned()))
            .then_some(()))
    })?;
    // Every node a neighbour of every other (the default target is 8).
    wait_for(Duration::from_secs(30), "a full mesh", || {
        let full = nodes
            .iter()
            .map(|n| c.status(n).map(|s| s.neighbours.len()))
            .collect::<Result<Vec<_>>>()?;
        Ok(full.iter().all(|&k| k == 3).then_some(()))
    })?;
    let solo_dir = c.path("solo");
    let high_dir = c.path("urgent");
    let low_dir = c.path("bulk");
    write_file(&solo_dir.join("s.bin"), &pseudo_random(3, BYTES), 0o644)?;
    write_file(&high_dir.join("h.bin"), &pseudo_random(1, BYTES), 0o644)?;
    write_file(&low_dir.join("l.bin"), &pseudo_random(2, BYTES), 0o644)?;
    let receivers_of = |origin: &'static str| -> Vec<&str> {
        nodes.iter().copied().filter(|n| *n != origin).collect()
    };
    // High alone first: its T on these links.
    let alone = completion_times(&c, &nodes, &[("hi", &solo_dir, "high")])?[0].1;
    // Then high and low from two origins at once.
    let both = completion_times(
        &c,
        &nodes,
        &[("hi", &high_dir, "high"), ("lo", &low_dir, "low")],
    )?;
    let [(high, t_high), (low, t_low)] = [both[0].clone(), both[1].clone()];
    eprintln!(
        "{BYTES} B each: high alone {alone:?}; at once high {t_high:?} ({:.2} x alone), low {t_low:?}",
        t_high.as_secs_f64() / alone.as_secs_f64()
    );
    for n in receivers_of("hi") {
        swarmcast_chaos::tree::verify(&high_dir, &c.data_dir(n).join("received").join("urgent"))?;
    }
    for n in receivers_of("lo") {
        swarmcast_chaos::tree::verify(&low_dir, &c.data_dir(n).join("received").join("bulk"))?;
    }
    let gap = t_low.as_secs_f64() - t_high.as_secs_f64();
    ensure!(
        gap >= MIN_GAP * t_high.as_secs_f64(),
        "the high broadcast completed after {t_high:?}, the low one of the same size after \
         {t_low:?}: not {MIN_GAP} x the former apart"
    );
    ensure!(
        t_high.as_secs_f64() <= MAX_SLOWDOWN * alone.as_secs_f64(),
        "the high broadcast took {t_high:?} beside the low one, more than {MAX_SLOWDOWN} x its {alone:?} alone"
    );

    // node ls shows each broadcast's priority, in JSON and text, at origin and receivers.
    for n in nodes {
        let ls = c.ls(n)?;
        let of = |id: &str| ls.iter().find(|b| b.id == id).map(|b| b.priority);
        ensure!(
            of(&high) == Some(swarmcast_proto::Priority::High),
            "{n}: {ls:?}"
        );
        ensure!(
            of(&low) == Some(swarmcast_proto::Priority::Low),
            "{n}: {ls:?}"
        );
        let text = c.cli(&["node", "ls", "--data-dir", &c.data_dir(n).to_string_lossy()])?;
        ensure!(
            text.contains("priority: high") && text.contains("priority: low"),
            "{n}: {text}"
        );
        let status = c.status(n)?;
        let listed: Vec<_> = (status.prioritized.iter())
            .map(|p| (p.name.as_str(), p.priority))
            .collect();
        ensure!(
            listed.contains(&("urgent", swarmcast_proto::Priority::High))
                && listed.contains(&("bulk", swarmcast_proto::Priority::Low)),
            "{n}: {listed:?}"
        );
        let text = c.cli(&[
            "node",
            "status",
            "--data-dir",
            &c.data_dir(n).to_string_lossy(),
        ])?;
        ensure!(text.contains("priority high"), "{n}: {text}");
    }
    Ok(())
}

#[test]
fn an_unknown_priority_is_a_usage_error() -> Result<()> {
    let out = std::process::Command::new(bin())
        .args(["node", "send", "/tmp", "--priority", "urgent"])
        .output()?;
    ensure!(out.status.code() == Some(2), "exit {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("urgent") && err.contains("high") && err.contains("low"),
        "{err}"
    );
    Ok(())
}

//! History stays bounded: many small sends of distinct names keep every node registered and
//! alive, the control socket answering, and heartbeats small (issue 19 item 5).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::support::*;

/// How many tiny broadcasts the test sends.
const SENDS: usize = 500;

/// Lines of `log` that say a node registered with a bootstrap (one per registration).
fn registrations(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" registered ") && l.contains("bootstrap="))
        .count()
}

/// 500 tiny broadcasts of distinct names from one origin to two receivers, through two
/// replicating bootstraps. Afterwards every node is alive at both bootstraps and registered
/// once, each bootstrap holds every node's whole progress (merged from heartbeat deltas and
/// replicated), and an idle heartbeat carries no progress at all (on the main before this
/// change it carried all 500 items, about 40 KB, every beat).
#[test]
fn many_small_sends_keep_heartbeats_small_and_every_node_alive() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let (a1, a2) = (free_addr(), free_addr());
    c.bootstrap("b1", a1, &[a2])?;
    c.bootstrap("b2", a2, &[a1])?;
    let names = ["origin", "r1", "r2"];
    for n in names {
        c.node(n, &[a1, a2], &[])?;
    }
    let seeds: [SocketAddr; 2] = [a1, a2];
    let all_alive = |c: &Cluster| -> Result<bool> {
        for s in seeds {
            let alive = names_with(&c.registry(s)?, Status::Alive);
            if !names.iter().all(|n| alive.contains(&(*n).to_owned())) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    wait_for(Duration::from_secs(30), "nodes alive", || {
        Ok(all_alive(&c)?.then_some(()))
    })?;

    let origin_dir = c.data_dir("origin");
    let started = Instant::now();
    let mut ids = BTreeSet::new();
    for i in 0..SENDS {
        let dir = c.path(&format!("src/tiny-{i:03}"));
        write_file(&dir.join("f"), format!("payload {i}\n").as_bytes(), 0o644)?;
        let out = c.cli(&[
            "node",
            "send",
            &dir.to_string_lossy(),
            "--json",
            "--data-dir",
            &origin_dir.to_string_lossy(),
        ])?;
        let info: serde_json::Value = serde_json::from_str(&out)?;
        ids.insert(
            info["broadcast"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        if i % 100 == 99 {
            // The control socket keeps answering on every node while sends go on (the CLI
            // gives up after 10 s without an answer).
            for n in names {
                c.status(n)?;
            }
        }
    }
    let sent_in = started.elapsed();
    assert_eq!(ids.len(), SENDS, "distinct broadcasts");

    // Every receiver completes every broadcast.
    for r in ["r1", "r2"] {
        wait_for(Duration::from_secs(60), "every broadcast complete", || {
            let ls = c.ls(r)?;
            let done = ls
                .iter()
                .filter(|b| ids.contains(&b.id) && b.state == BroadcastPhase::Complete)
                .count();
            Ok((done == SENDS).then_some(()))
        })?;
    }
    let completed_in = started.elapsed();

    // Each bootstrap holds each node's whole progress: 500 items, all complete.
    wait_for(
        Duration::from_secs(20),
        "whole progress at both bootstraps",
        || {
            for s in seeds {
                let reg = c.registry(s)?;
                for n in names {
                    let Some(e) = reg.nodes.iter().find(|e| e.name == n) else {
                        return Ok(None);
                    };
                    let complete: BTreeSet<&str> = (e.progress.iter())
                        .filter(|p| ids.contains(&p.broadcast) && p.total > 0 && p.held == p.total)
                        .map(|p| p.broadcast.as_str())
                        .collect();
                    if complete.len() != SENDS {
                        return Ok(None);
                    }
                }
            }
            Ok(Some(()))
        },
    )?;

    // Idle now: a heartbeat carries no progress, and stays small.
    std::thread::sleep(HEARTBEAT * 3);
    for n in names {
        let status = c.status(n)?;
        let hb = status.last_heartbeat.expect("a heartbeat was answered");
        assert_eq!(
            (hb.progress_items, hb.progress_removed, hb.announced),
            (0, 0, 0),
            "{n}: an idle heartbeat carries nothing: {hb:?}"
        );
        assert!(hb.bytes < 1024, "{n}: heartbeat of {} bytes", hb.bytes);
        assert!(hb.acked.is_some_and(|a| a > 0), "{n}: {hb:?}");
    }
    assert!(all_alive(&c)?, "every node alive at both bootstraps");
    for p in &c.procs {
        if names.contains(&p.name.as_str()) {
            assert_eq!(
                registrations(&p.log),
                1,
                "{} registered more than once",
                p.name
            );
        }
    }
    eprintln!(
        "{SENDS} sends in {:.1} s, all complete after {:.1} s",
        sent_in.as_secs_f64(),
        completed_in.as_secs_f64()
    );
    Ok(())
}

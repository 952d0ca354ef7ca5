//! Pull on demand: a `node join --pull` node receives nothing unasked, and `node fetch` gets a
//! broadcast (on a pull node, or back after `node rm` on any node).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::support::*;

/// `swarmcast ARGS --data-dir <node's>`, whatever its exit code.
fn run(c: &Cluster, node: &str, args: &[&str]) -> Result<Output> {
    Ok(Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(c.data_dir(node))
        .env("RUST_LOG", "warn")
        .output()?)
}

#[track_caller]
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A tree of a few files over several chunks, with a subdirectory and an empty file.
fn payload(c: &Cluster) -> Result<PathBuf> {
    let src = c.path("payload");
    write_file(&src.join("big.bin"), &pseudo_random(1, 3 << 20), 0o644)?;
    write_file(&src.join("sub/small.txt"), b"pull me", 0o600)?;
    write_file(&src.join("sub/empty"), b"", 0o640)?;
    Ok(src)
}

fn workspace(c: &Cluster, node: &str, id: &str) -> PathBuf {
    c.data_dir(node).join("broadcasts").join(id)
}

fn wait_complete(c: &Cluster, node: &str, id: &str) -> Result<BroadcastInfo> {
    wait_for(Duration::from_secs(60), "broadcast complete", || {
        Ok(c.broadcast(node, id)?
            .filter(|b| b.state == BroadcastPhase::Complete && b.current))
    })
}

/// One bootstrap, an origin, a push receiver `r1` and a `--pull` node `puller`, all alive.
fn origin_push_and_pull() -> Result<(Cluster, SocketAddr)> {
    let mut c = Cluster::new()?;
    let seed: SocketAddr = free_addr();
    c.bootstrap("b1", seed, &[])?;
    c.node("origin", &[seed], &[])?;
    c.node("r1", &[seed], &[])?;
    c.node("puller", &[seed], &["--pull"])?;
    wait_for(Duration::from_secs(30), "nodes alive", || {
        let alive = names_with(&c.registry(seed)?, Status::Alive);
        Ok(["origin", "puller", "r1"]
            .iter()
            .all(|n| alive.contains(&(*n).to_owned()))
            .then_some(()))
    })?;
    Ok((c, seed))
}

/// A `--pull` node receives nothing of a broadcast the others complete (no workspace, nothing
/// listed, no received/), then `node fetch NAME --wait` gets it byte-identical. A push node
/// gets a version back after `node rm` the same way. An unknown name exits 1 with the reason,
/// bad arguments exit 2.
#[test]
fn a_pull_node_receives_only_what_node_fetch_asks_for() -> Result<()> {
    let _serial = serial();
    let (c, _seed) = origin_push_and_pull()?;
    let src = payload(&c)?;
    let out = c.cli(&[
        "node",
        "send",
        &src.to_string_lossy(),
        "--json",
        "--chunk-size",
        "256KiB",
        "--data-dir",
        &c.data_dir("origin").to_string_lossy(),
    ])?;
    let v: Value = serde_json::from_str(&out)?;
    let id = v["broadcast"]["id"].as_str().unwrap().to_owned();
    wait_complete(&c, "r1", &id)?;
    // A few heartbeats more: a node that receives unasked has long started by now.
    std::thread::sleep(HEARTBEAT * 5);
    assert!(c.ls("puller")?.is_empty(), "{:?}", c.ls("puller")?);
    assert!(
        !workspace(&c, "puller", &id).exists(),
        "a workspace appeared"
    );
    assert!(!c.data_dir("puller").join("received/payload").exists());

    // Asked: fetched from the swarm, complete and verified when --wait returns.
    let out = run(
        &c,
        "puller",
        &["node", "fetch", "payload", "--wait", "--timeout", "60s"],
    )?;
    assert!(out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).starts_with("complete: payload "),
        "{out:?}"
    );
    assert_same_tree(&src, &c.data_dir("puller").join("received/payload"));
    let info = c.broadcast("puller", &id)?.unwrap();
    assert_eq!(info.state, BroadcastPhase::Complete);
    assert!(info.current && info.fetched_bytes > 0, "{info:?}");
    // Asked again: it is there, nothing to wait for.
    let out = run(
        &c,
        "puller",
        &["node", "fetch", &id[..12], "--wait", "--json"],
    )?;
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&text(&out.stdout))?;
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["broadcast"], id.as_str(), "{v}");

    // Without --pull: a version removed here is not fetched again unless asked.
    c.cli(&[
        "node",
        "rm",
        "payload",
        "--data-dir",
        &c.data_dir("r1").to_string_lossy(),
    ])?;
    wait_for(Duration::from_secs(10), "workspace removed", || {
        Ok((!workspace(&c, "r1", &id).exists()).then_some(()))
    })?;
    let out = run(
        &c,
        "r1",
        &["node", "fetch", &id, "--wait", "--timeout", "60s"],
    )?;
    assert!(out.status.success(), "{out:?}");
    assert_same_tree(&src, &c.data_dir("r1").join("received/payload"));

    // A second version: the pull node fetches nothing of it unasked; asked by name, it gets
    // the newest, and received/ points at it (the versions rules hold for pulled versions).
    write_file(&src.join("sub/small.txt"), b"pull me again", 0o600)?;
    let out = c.cli(&[
        "node",
        "send",
        &src.to_string_lossy(),
        "--json",
        "--chunk-size",
        "256KiB",
        "--data-dir",
        &c.data_dir("origin").to_string_lossy(),
    ])?;
    let v: Value = serde_json::from_str(&out)?;
    let v2 = v["broadcast"]["id"].as_str().unwrap().to_owned();
    assert_ne!(v2, id);
    wait_complete(&c, "r1", &v2)?;
    std::thread::sleep(HEARTBEAT * 5);
    assert!(c.broadcast("puller", &v2)?.is_none(), "fetched unasked");
    assert!(!workspace(&c, "puller", &v2).exists());
    let out = run(
        &c,
        "puller",
        &["node", "fetch", "payload", "--wait", "--timeout", "60s"],
    )?;
    assert!(out.status.success(), "{out:?}");
    assert_same_tree(&src, &c.data_dir("puller").join("received/payload"));
    let ls = c.ls("puller")?;
    let current: Vec<&str> = (ls.iter().filter(|b| b.current))
        .map(|b| b.id.as_str())
        .collect();
    assert_eq!(current, vec![v2.as_str()], "{ls:?}");
    // The old version is kept (--keep 2), so asking for it names it; once removed, asking
    // for it by id is refused: a newer one is out.
    let out = run(
        &c,
        "puller",
        &["node", "fetch", &id, "--wait", "--timeout", "1s"],
    )?;
    assert!(out.status.success(), "{out:?}");
    let out = run(&c, "puller", &["node", "rm", &id])?;
    assert!(out.status.success(), "{out:?}");
    let out = run(&c, "puller", &["node", "fetch", &id])?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("a newer one is out"), "{out:?}");

    // Unknown: exit 1, saying so.
    let out = run(&c, "puller", &["node", "fetch", "nope"])?;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no broadcast named \"nope\""),
        "{out:?}"
    );
    // Usage errors: exit 2.
    for args in [
        &["node", "fetch"][..],
        &["node", "fetch", "a/b"],
        &["node", "fetch", ""],
        &["node", "fetch", "payload", "--timeout", "1s"],
        &["node", "fetch", "payload", "--wait", "--timeout", "soon"],
    ] {
        let out = run(&c, "puller", args)?;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    Ok(())
}

/// Run `swarmcast ARGS` for at most `limit` (killed by its PID past it: `None`).
pub(crate) fn run_bounded(args: &[&str], limit: Duration) -> Result<Option<Output>> {
    let mut child = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(Some(child.wait_with_output()?));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    let _ = child.wait();
    Ok(None)
}

/// `node send --wait` does not wait for a `--pull` node that never asked for the broadcast:
/// it returns once the push nodes are complete, and the pull node holds nothing of it. (Before
/// the registry said which nodes pull, `--wait` waited for the pull node until its timeout.)
#[test]
fn send_wait_does_not_wait_for_a_pull_node_that_did_not_ask() -> Result<()> {
    let _serial = serial();
    let (c, seed) = origin_push_and_pull()?;
    // The registry says which node pulls (the bootstrap keeps the flag of its heartbeats).
    let reg = c.registry(seed)?;
    let pulls: Vec<(String, bool)> = entries(&reg, Role::Node)
        .iter()
        .map(|e| (e.name.clone(), e.pull))
        .collect();
    assert!(pulls.contains(&("puller".into(), true)), "{pulls:?}");
    assert!(pulls.contains(&("r1".into(), false)), "{pulls:?}");
    let src = payload(&c)?;
    let data_dir = c.data_dir("origin");
    let out = run_bounded(
        &[
            "node",
            "send",
            &src.to_string_lossy(),
            "--wait",
            "--json",
            "--timeout",
            "20s",
            "--data-dir",
            &data_dir.to_string_lossy(),
        ],
        Duration::from_secs(40),
    )?;
    let out = out.ok_or_else(|| anyhow::anyhow!("node send --wait did not return in 40 s"))?;
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&text(&out.stdout))?;
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["fleet"]["nodes_alive"], 2, "origin and r1 only: {v}");
    let id = v["broadcast"]["id"].as_str().unwrap().to_owned();
    assert_same_tree(&src, &c.data_dir("r1").join("received/payload"));
    assert!(c.ls("puller")?.is_empty(), "{:?}", c.ls("puller")?);
    assert!(
        !workspace(&c, "puller", &id).exists(),
        "a workspace appeared"
    );
    assert!(!c.data_dir("puller").join("received/payload").exists());
    Ok(())
}

//! Repeated broadcasts: empty broadcasts complete for `--wait`, `--wait` ends with the reason
//! when a node fails a broadcast, and versions of one name.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::support::*;

struct Fleet {
    c: Cluster,
    seed: SocketAddr,
}

impl Fleet {
    /// A bootstrap and nodes `names`, all alive.
    fn new(names: &[&str]) -> Result<Self> {
        let mut c = Cluster::new()?;
        let seed = free_addr();
        c.bootstrap("b1", seed, &[])?;
        let mut f = Self { c, seed };
        for n in names {
            f.node(n)?;
        }
        f.wait_alive(names)?;
        Ok(f)
    }

    fn node(&mut self, name: &str) -> Result<usize> {
        self.c.node(name, &[self.seed], &[])
    }

    fn wait_alive(&self, names: &[&str]) -> Result<()> {
        wait_for(Duration::from_secs(30), "nodes alive", || {
            let alive = names_with(&self.c.registry(self.seed)?, Status::Alive);
            Ok(names
                .iter()
                .all(|n| alive.contains(&(*n).to_owned()))
                .then_some(()))
        })
    }

    /// `node send DIR --wait` at `origin`, whatever its exit code.
    fn send_wait(&self, origin: &str, dir: &Path, timeout: &str) -> Result<Output> {
        let out = Command::new(bin())
            .args([
                "node",
                "send",
                &dir.to_string_lossy(),
                "--wait",
                "--timeout",
            ])
            .arg(timeout)
            .arg("--data-dir")
            .arg(self.c.data_dir(origin))
            .env("RUST_LOG", "warn")
            .output()?;
        Ok(out)
    }
}

#[track_caller]
fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An empty directory, then one holding only a 0-byte file: every node completes and
/// `--wait` says so at once (a broadcast without chunks used to count nobody complete).
#[test]
fn empty_broadcasts_complete_for_wait() -> Result<()> {
    let _serial = serial();
    let f = Fleet::new(&["origin", "r1", "r2"])?;
    let empty = f.c.path("empty");
    std::fs::create_dir_all(&empty)?;
    let zero = f.c.path("zero");
    write_file(&zero.join("nothing.txt"), b"", 0o640)?;
    for dir in [&empty, &zero] {
        let started = Instant::now();
        let out = f.send_wait("origin", dir, "30s")?;
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "send --wait of {}: {text}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("complete: 3/3 nodes complete"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(25), "{text}");
        for r in ["r1", "r2"] {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let published = f.c.data_dir(r).join("received").join(&name);
            assert_same_tree(dir, &published);
        }
    }
    Ok(())
}

/// A receiver that cannot create the workspace (its `broadcasts/` is a file) reports why in
/// the registry: `--wait` ends as soon as the others complete, exits 1 and names it with the
/// reason, and its `node ls` shows the real chunk total.
#[test]
fn wait_ends_when_a_node_fails_and_says_why() -> Result<()> {
    let _serial = serial();
    let mut f = Fleet::new(&["origin", "good"])?;
    let broken = f.c.data_dir("broken");
    std::fs::create_dir_all(&broken)?;
    std::fs::write(broken.join("broadcasts"), b"not a directory")?;
    f.node("broken")?;
    f.wait_alive(&["origin", "good", "broken"])?;
    let src = f.c.path("payload");
    for i in 0..4u64 {
        write_file(
            &src.join(format!("f{i}")),
            &pseudo_random(i, 300_000),
            0o644,
        )?;
    }
    let started = Instant::now();
    let out = f.send_wait("origin", &src, "120s")?;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "--wait ran on after every node settled: {text}"
    );
    assert!(text.contains("2/3 nodes complete"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("broken: failed:"))
        .unwrap_or_else(|| panic!("no failure line for broken: {text}"));
    assert!(
        line.contains("cannot create the workspace") && line.contains("Not a directory"),
        "no reason: {line}"
    );
    let ls = f.c.ls("broken")?;
    let b = ls.first().expect("broken lists the failed broadcast");
    assert_eq!(b.state, BroadcastPhase::Failed);
    assert!(b.chunks_total > 0, "{b:?}");
    assert_eq!(b.name, "payload");
    Ok(())
}

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

/// Bytes of every regular file under `dir` (symlinks not followed).
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The broadcast id `node send` printed first.
fn sent_id(out: &Output) -> String {
    stdout(out)
        .split_whitespace()
        .skip_while(|w| *w != "broadcast")
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// Writes version `v` of the `ds` tree: 4 files of 256 KiB, new content each version.
fn write_version(dir: &Path, v: u64) -> Result<()> {
    for i in 0..4u64 {
        write_file(
            &dir.join(format!("part{i}")),
            &pseudo_random(100 * v + i, 256 << 10),
            0o644,
        )?;
    }
    Ok(())
}

/// Three versions of one name, then two nodes join late: they fetch only the newest (their
/// disk holds one version, their `received/ds` is the newest); `node ls` orders the versions
/// newest first with their `seq`, marks the current one, and gives absolute paths.
#[test]
fn late_joiners_fetch_only_the_newest_version_and_ls_orders_versions() -> Result<()> {
    let _serial = serial();
    let mut f = Fleet::new(&["origin", "r1"])?;
    let src = f.c.path("ds");
    let mut ids = Vec::new();
    for v in 1..=3 {
        write_version(&src, v)?;
        let out = f.send_wait("origin", &src, "60s")?;
        assert!(out.status.success(), "version {v}: {}", stdout(&out));
        ids.push(sent_id(&out));
    }
    // r1 received each in turn and keeps two (--keep 2): the newest is current, listed first.
    let ls = f.c.ls("r1")?;
    let order: Vec<(String, u64, bool)> = ls
        .iter()
        .filter(|b| b.name == "ds")
        .map(|b| (b.id.clone(), b.seq, b.current))
        .collect();
    assert_eq!(
        order,
        vec![(ids[2].clone(), 3, true), (ids[1].clone(), 2, false)],
        "{ls:?}"
    );
    let current = &ls[0];
    let path = std::path::PathBuf::from(current.path.as_deref().unwrap_or(""));
    assert!(path.is_absolute(), "{path:?}");
    // The publication time comes with the registry's record (the seq came with the origin's
    // Have already).
    wait_for(Duration::from_secs(10), "publication time known", || {
        Ok(f.c
            .broadcast("r1", &ids[2])?
            .filter(|b| b.published_ms > 0)
            .map(|_| ()))
    })?;
    assert_same_tree(&src, &path);

    for late in ["l1", "l2"] {
        f.node(late)?;
    }
    f.wait_alive(&["origin", "r1", "l1", "l2"])?;
    let total: u64 = 4 * (256 << 10);
    for late in ["l1", "l2"] {
        let received = f.c.data_dir(late).join("received").join("ds");
        wait_for(Duration::from_secs(60), "late joiner has ds", || {
            Ok(f.c
                .broadcast(late, &ids[2])?
                .filter(|b| b.state == BroadcastPhase::Complete && b.current)
                .map(|_| ()))
        })?;
        assert_same_tree(&src, &received);
        let ls = f.c.ls(late)?;
        assert!(
            ls.iter().all(|b| b.id == ids[2]),
            "{late} knows of older versions: {ls:?}"
        );
        let held = disk_bytes(&f.c.data_dir(late).join("broadcasts"));
        assert!(
            held < total + total / 2,
            "{late} holds {held} bytes for one version of {total}"
        );
    }
    Ok(())
}

/// Two origins publish the same name: each version is numbered above the highest the origin
/// knows; every receiver's `received/ds` ends on the same version, the newest by
/// (seq, origin id).
#[test]
fn two_origins_of_one_name_agree_on_the_newest() -> Result<()> {
    let _serial = serial();
    let f = Fleet::new(&["a", "b", "r1", "r2"])?;
    let src_a = f.c.path("a/ds");
    let src_b = f.c.path("b/ds");
    write_version(&src_a, 1)?;
    write_version(&src_b, 2)?;
    let out = f.send_wait("a", &src_a, "60s")?;
    assert!(out.status.success(), "{}", stdout(&out));
    let first = sent_id(&out);
    // b knows a's version 1 from the registry: its own is version 2.
    let out = f.send_wait("b", &src_b, "60s")?;
    assert!(out.status.success(), "{}", stdout(&out));
    let second = sent_id(&out);
    for r in ["r1", "r2"] {
        let newest = f.c.broadcast(r, &second)?.expect("listed");
        assert_eq!((newest.seq, newest.current), (2, true), "{newest:?}");
        let older = f.c.broadcast(r, &first)?.expect("listed");
        assert_eq!((older.seq, older.current), (1, false), "{older:?}");
        assert_same_tree(&src_b, &f.c.data_dir(r).join("received").join("ds"));
    }
    Ok(())
}

/// `swarmcast ARGS` to completion, whatever its exit code.
fn run(args: &[&str]) -> Result<Output> {
    Ok(Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?)
}

/// Ten versions of one name with the default `--keep 2`: each receiver's data dir never holds
/// more than (keep + 1) copies, `node ls` lists the two newest, and `received/ds` is the last.
#[test]
fn ten_versions_keep_each_receivers_disk_within_keep_plus_one_copies() -> Result<()> {
    let _serial = serial();
    let f = Fleet::new(&["origin", "r1", "r2"])?;
    let src = f.c.path("ds");
    let copy: u64 = 4 * (256 << 10);
    let mut ids = Vec::new();
    for v in 1..=10 {
        write_version(&src, v)?;
        let out = f.send_wait("origin", &src, "60s")?;
        assert!(out.status.success(), "version {v}: {}", stdout(&out));
        ids.push(sent_id(&out));
        for r in ["r1", "r2"] {
            let held = disk_bytes(&f.c.data_dir(r).join("broadcasts"));
            assert!(
                held <= 3 * copy + copy / 4,
                "{r} holds {held} bytes after version {v}, more than (keep + 1) x {copy}"
            );
        }
    }
    for r in ["r1", "r2"] {
        wait_for(Duration::from_secs(10), "two versions kept", || {
            let listed: Vec<String> = f.c.ls(r)?.into_iter().map(|b| b.id).collect();
            Ok((listed == vec![ids[9].clone(), ids[8].clone()]).then_some(()))
        })?;
        assert_same_tree(&src, &f.c.data_dir(r).join("received").join("ds"));
    }
    // The origin seeds its two newest only.
    let origin: Vec<String> = f.c.ls("origin")?.into_iter().map(|b| b.id).collect();
    assert_eq!(origin, vec![ids[9].clone(), ids[8].clone()]);
    Ok(())
}

/// `node rm` of the current version points `received/ds` at the newest left; by name it removes
/// every version and the link; an unknown id or name exits 1 naming it. `--keep 0` is a usage
/// error.
#[test]
fn node_rm_removes_versions_and_names_what_it_does_not_know() -> Result<()> {
    let _serial = serial();
    let f = Fleet::new(&["origin", "r1"])?;
    let src = f.c.path("ds");
    let mut ids = Vec::new();
    for v in 1..=2 {
        write_version(&src, v)?;
        let out = f.send_wait("origin", &src, "60s")?;
        assert!(out.status.success(), "{}", stdout(&out));
        ids.push(sent_id(&out));
    }
    let r1 = f.c.data_dir("r1");
    let dd = r1.to_string_lossy().into_owned();
    let link = r1.join("received").join("ds");
    let v1_tree = f.c.path("v1");
    write_version(&v1_tree, 1)?;
    f.c.cli(&["node", "rm", &ids[1][..12], "--data-dir", &dd])?;
    wait_for(Duration::from_secs(10), "received/ds on version 1", || {
        Ok(std::fs::read_link(&link)
            .is_ok_and(|t| t.to_string_lossy().contains(&ids[0]))
            .then_some(()))
    })?;
    assert_same_tree(&v1_tree, &link);
    assert!(!r1.join("broadcasts").join(&ids[1]).exists());
    f.c.cli(&["node", "rm", "ds", "--data-dir", &dd])?;
    wait_for(Duration::from_secs(10), "link removed", || {
        Ok((!link.exists() && std::fs::symlink_metadata(&link).is_err()).then_some(()))
    })?;
    assert!(f.c.ls("r1")?.is_empty());
    for unknown in ["ds", "feedface"] {
        let out = run(&["node", "rm", unknown, "--data-dir", &dd])?;
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(unknown) && err.contains("no broadcast"),
            "{err}"
        );
    }
    let out = run(&[
        "node",
        "join",
        "--identity",
        "x",
        "--seed",
        "127.0.0.1:1",
        "--keep",
        "0",
    ])?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `node cancel` at the origin ends a broadcast fleet-wide mid-transfer: `--wait` on it ends
/// with exit 1 and the reason, receivers free the space; a node that is not the origin is
/// refused.
#[test]
fn node_cancel_at_the_origin_stops_every_receiver_and_others_may_not() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let seed = free_addr();
    c.bootstrap("b1", seed, &[])?;
    // A slow origin, so that the broadcast is still running when it is cancelled.
    c.node_env(
        "origin",
        &[seed],
        &[],
        &[("SWARMCAST_FAULT_SERVE_DELAY_MS", "300")],
    )?;
    let mut f = Fleet { c, seed };
    f.node("r1")?;
    f.node("r2")?;
    f.wait_alive(&["origin", "r1", "r2"])?;
    let src = f.c.path("ds");
    for i in 0..16u64 {
        write_file(
            &src.join(format!("f{i}")),
            &pseudo_random(i, 256 << 10),
            0o644,
        )?;
    }
    let origin_dd = f.c.data_dir("origin").to_string_lossy().into_owned();
    let mut wait = Command::new(bin())
        .args([
            "node",
            "send",
            &src.to_string_lossy(),
            "--wait",
            "--timeout",
            "60s",
        ])
        .args(["--data-dir", &origin_dd])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    wait_for(Duration::from_secs(20), "r1 receiving", || {
        Ok(f.c
            .ls("r1")?
            .into_iter()
            .find(|b| b.state == BroadcastPhase::Receiving)
            .map(|_| ()))
    })?;
    let id = f.c.ls("r1")?[0].id.clone();
    // r1 did not send it.
    let r1_dd = f.c.data_dir("r1").to_string_lossy().into_owned();
    let out = run(&["node", "cancel", "ds", "--data-dir", &r1_dd])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only its origin may cancel it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done =
        f.c.cli(&["node", "cancel", "ds", "--data-dir", &origin_dd])?;
    assert!(done.contains(&id), "{done}");
    let status = wait.wait()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut wait.stdout.take().expect("piped"), &mut text)?;
    std::io::Read::read_to_string(&mut wait.stderr.take().expect("piped"), &mut text)?;
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("cancelled"), "{text}");
    for r in ["r1", "r2"] {
        wait_for(
            Duration::from_secs(10),
            "receiver stopped and freed it",
            || {
                let b = f.c.broadcast(r, &id)?;
                let freed = !f.c.data_dir(r).join("broadcasts").join(&id).exists();
                Ok(
                    (b.is_some_and(|b| b.state == BroadcastPhase::Cancelled) && freed)
                        .then_some(()),
                )
            },
        )?;
    }
    Ok(())
}

/// `--max-disk` refuses a broadcast that does not fit even after removing what may be
/// removed, and `--wait` says so.
#[test]
fn a_broadcast_beyond_max_disk_fails_and_wait_says_why() -> Result<()> {
    let _serial = serial();
    let mut f = Fleet::new(&["origin"])?;
    f.c.node("small", &[f.seed], &["--max-disk", "1MiB"])?;
    f.wait_alive(&["origin", "small"])?;
    let src = f.c.path("big");
    write_version(&src, 1)?;
    write_file(&src.join("extra"), &pseudo_random(9, 4096), 0o644)?;
    let out = f.send_wait("origin", &src, "30s")?;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not enough space within --max-disk"),
        "{text}"
    );
    assert!(!f.c.data_dir("small").join("received").join("big").exists());
    Ok(())
}

/// The second send of a directory with one of its 8 files rewritten: the origin hashes only
/// that file, and each receiver fetches only its chunks over QUIC (the rest is copied from the
/// first version it keeps).
#[test]
fn a_second_send_hashes_and_fetches_only_what_changed() -> Result<()> {
    let _serial = serial();
    let f = Fleet::new(&["origin", "r1", "r2"])?;
    let src = f.c.path("ds");
    let file = 512u64 << 10;
    for i in 0..8u64 {
        write_file(
            &src.join(format!("f{i}")),
            &pseudo_random(i, file as usize),
            0o644,
        )?;
    }
    let send = |extra: &[&str]| -> Result<serde_json::Value> {
        let mut args = vec!["node", "send"];
        let s = src.to_string_lossy().into_owned();
        let dd = f.c.data_dir("origin").to_string_lossy().into_owned();
        args.extend([
            s.as_str(),
            "--wait",
            "--timeout",
            "60s",
            "--json",
            "--data-dir",
            &dd,
        ]);
        args.extend(extra);
        let out = run(&args)?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let first = send(&[])?;
    assert_eq!(first["broadcast"]["hashed_bytes"], 8 * file);
    write_file(&src.join("f3"), &pseudo_random(99, file as usize), 0o644)?;
    let second = send(&[])?;
    assert_eq!(
        second["broadcast"]["hashed_bytes"], file,
        "only the rewritten file is hashed"
    );
    let id = second["broadcast"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for r in ["r1", "r2"] {
        let b = f.c.broadcast(r, &id)?.expect("listed");
        let bound = file + 8 * file / 50;
        assert!(
            b.fetched_bytes <= bound,
            "{r} fetched {} bytes over QUIC for one changed file of {file}",
            b.fetched_bytes
        );
        assert_same_tree(&src, &f.c.data_dir(r).join("received").join("ds"));
    }
    // --rehash reads everything again (an unchanged directory: the same id, nothing new).
    let third = send(&["--rehash"])?;
    assert_eq!(third["broadcast"]["hashed_bytes"], 8 * file);
    assert_eq!(third["broadcast"]["id"], second["broadcast"]["id"]);
    Ok(())
}

/// At the origin a version is served from its source in place. v1 of `ds` is sent from one
/// directory and v2 from another of the same name; then v1's files are rewritten: a peer
/// asking the origin for one of v1's chunks makes the origin stop seeding v1, with one log
/// line however often it is asked, and `node ls` shows v1 superseded, not seeding, and not
/// failed; v2 is unaffected and still served. Then v2's own source is rewritten: the newest
/// version fails, loudly.
#[test]
fn an_older_versions_changed_source_stops_its_seeding_and_the_newests_fails_it() -> Result<()> {
    use crate::audience::Peer;
    use swarmcast_proto::{BroadcastId, Message};
    let _serial = serial();
    let f = Fleet::new(&["origin"])?;
    let origin = 1; // procs: b1, origin
    let (a, b) = (f.c.path("a/ds"), f.c.path("b/ds"));
    let write = |dir: &Path, seed: u64| -> Result<()> {
        for i in 0..2u64 {
            write_file(
                &dir.join(format!("part{i}")),
                &pseudo_random(seed + i, 1 << 20),
                0o644,
            )?;
        }
        Ok(())
    };
    write(&a, 1)?;
    write(&b, 10)?;
    let v1 = f.c.send_json("origin", &a)?;
    let v2 = f.c.send_json("origin", &b)?;
    for v in [&v1, &v2] {
        f.c.wait_done("origin", &v.id, Duration::from_secs(20), "seeding")?;
    }
    let probe = Peer::new(&f.c.issue("asker", "node")?)?;
    let listen = f.c.status("origin")?.listen;
    let (id1, id2): (BroadcastId, BroadcastId) = (v1.id.parse()?, v2.id.parse()?);
    let log = f.c.procs[origin].log.clone();
    let stopped = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("the source of this older version changed"))
            .count()
    };

    // v1's source changes (v2 is out): asked for a chunk of v1, the origin stops seeding it.
    write(&a, 100)?;
    let first = probe.ask_chunk(listen, id1, 0)?;
    assert!(first.is_err(), "the changed chunk was served: {first:?}");
    let v1_info = wait_for(Duration::from_secs(10), "v1 no longer seeding", || {
        Ok(f.c
            .broadcast("origin", &v1.id)?
            .filter(|b| b.state == BroadcastPhase::Superseded))
    });
    if v1_info.is_err() {
        f.c.dump_logs();
    }
    let v1_info = v1_info?;
    assert_eq!(v1_info.error, None, "not a failure: {v1_info:?}");
    for i in 0..3 {
        let again = probe.ask_chunk(listen, id1, i % 2)?;
        assert!(again.is_err(), "v1 served again: {again:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stopped(&log), 1, "one line, however often v1 is asked");
    let text = std::fs::read_to_string(&log)?;
    assert!(!text.contains("broadcast FAILED"), "{text}");
    // v2 is unaffected: still seeding, and served.
    let v2_info = f.c.broadcast("origin", &v2.id)?;
    assert_eq!(v2_info.map(|b| b.state), Some(BroadcastPhase::Seeding));
    let served = probe.ask_chunk(listen, id2, 0)?;
    assert!(matches!(served, Ok(Message::ChunkData(_))), "{served:?}");

    // The converse: the newest version's source changes; asked for it, the origin fails it.
    write(&b, 200)?;
    let asked = probe.ask_chunk(listen, id2, 1)?;
    assert!(asked.is_err(), "the changed chunk was served: {asked:?}");
    let v2_info = wait_for(Duration::from_secs(10), "v2 failed", || {
        Ok(f.c
            .broadcast("origin", &v2.id)?
            .filter(|b| b.state == BroadcastPhase::Failed))
    })?;
    assert!(
        v2_info
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("source changed"),
        "{v2_info:?}"
    );
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("broadcast FAILED"), "loudly: {text}");
    assert_eq!(stopped(&log), 1);
    Ok(())
}

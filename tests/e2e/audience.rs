//! Restricted broadcasts (`node send --to NAME --to group:G`): only the audience receives,
//! every node refuses everyone else by certificate, and `--wait` counts the audience only.
//! Real daemons on 127.0.0.1; the peer outside the audience that asks directly is this test
//! process, speaking QUIC with a real node certificate of the cluster's CA (as the hostile
//! tests do).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use swarmcast_net::wire;
use swarmcast_proto::{
    BroadcastId, ChunkIndex, ChunkRequest, ErrorCode, Limits, ManifestRequest, Message,
};

use crate::pull::run_bounded;
use crate::support::*;

/// `swarmcast ARGS`, whatever its exit code.
fn run(args: &[&str]) -> Result<Output> {
    Ok(Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Issue `name` (a node) with `groups`, through the CLI.
fn issue_with_groups(c: &Cluster, name: &str, groups: &[&str]) -> Result<()> {
    let certs = c.certs();
    let mut args = vec![
        "certs".to_owned(),
        "issue".into(),
        "--dir".into(),
        certs.to_string_lossy().into_owned(),
        "--name".into(),
        name.into(),
        "--role".into(),
        "node".into(),
    ];
    for g in groups {
        args.extend(["--group".into(), (*g).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.cli(&args)?;
    for g in groups {
        if !out.contains(g) {
            bail!("certs issue does not say the group {g}: {out}");
        }
    }
    Ok(())
}

/// A peer in this process with the certificate in `dir`.
pub(crate) struct Peer {
    rt: tokio::runtime::Runtime,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl Peer {
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        let QuicClient {
            rt,
            endpoint,
            config,
            ..
        } = QuicClient::new(dir)?;
        Ok(Self {
            rt,
            endpoint,
            config,
        })
    }

    /// Ask `addr` for chunk `index` of `id` on a new connection: the header of the answer, or
    /// the refusal's code.
    pub(crate) fn ask_chunk(
        &self,
        addr: SocketAddr,
        id: BroadcastId,
        index: u32,
    ) -> Result<Result<Message, ErrorCode>> {
        self.rt.block_on(async {
            let (conn, _) =
                swarmcast_net::connect(&self.endpoint, &self.config, addr, Duration::from_secs(5))
                    .await?;
            let m = Message::ChunkRequest(ChunkRequest {
                broadcast: id,
                index: ChunkIndex(index),
                count: 1,
            });
            let out = request(&conn, &m).await;
            conn.close(0u32.into(), b"done");
            out
        })
    }

    /// Ask `addr` for the manifest of `id`, then for its first chunk: the header of each
    /// answer, or the refusal's code.
    fn ask(&self, addr: SocketAddr, id: BroadcastId) -> Result<[Result<Message, ErrorCode>; 2]> {
        self.rt.block_on(async {
            let (conn, _) =
                swarmcast_net::connect(&self.endpoint, &self.config, addr, Duration::from_secs(5))
                    .await?;
            let manifest = Message::ManifestRequest(ManifestRequest { broadcast: id });
            let chunk = Message::ChunkRequest(ChunkRequest {
                broadcast: id,
                index: ChunkIndex(0),
                count: 1,
            });
            let mut out = Vec::new();
            for m in [manifest, chunk] {
                out.push(request(&conn, &m).await?);
            }
            conn.close(0u32.into(), b"done");
            let [a, b]: [_; 2] = out.try_into().expect("two answers");
            Ok([a, b])
        })
    }
}

/// Send `m` on a new stream of `conn` and read the header of the answer (a payload follows
/// an answered request): the answer, or the refusal's code; at most 5 s.
async fn request(conn: &quinn::Connection, m: &Message) -> Result<Result<Message, ErrorCode>> {
    let limits = Limits::default();
    let ask = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        wire::write_message(&mut send, m, &limits).await?;
        send.finish()?;
        Ok::<_, anyhow::Error>(match wire::read_header(&mut recv, &limits).await? {
            Some(Message::Error(e)) => Err(e.code),
            Some(answer) => Ok(answer),
            None => bail!("no answer"),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), ask).await?
}

/// Nothing of broadcast `id` on `node`'s disk: no workspace, nothing listed, no received/.
#[track_caller]
fn assert_nothing_of(c: &Cluster, node: &str, id: &str) {
    let data = c.data_dir(node);
    assert!(
        !data.join("broadcasts").join(id).exists(),
        "{node}: a workspace appeared"
    );
    assert!(!data.join("received/payload").exists(), "{node}: received/");
    let ls = c.ls(node).unwrap();
    assert!(ls.iter().all(|b| b.id != id), "{node}: {ls:?}");
}

/// `node ls` (human and `--json`) and `node status` (human and `--json`) at `node` show
/// broadcast `id`'s audience as `shown` (e.g. `n3, group:gpu`), or none for `None`.
#[track_caller]
fn assert_shows_audience(c: &Cluster, node: &str, id: &str, shown: Option<&str>) {
    let data = c.data_dir(node).to_string_lossy().into_owned();
    let cli = |args: &[&str]| c.cli(args).unwrap();
    let ls: Value =
        serde_json::from_str(&cli(&["node", "ls", "--json", "--data-dir", &data])).unwrap();
    let entry = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("{node}: {id} not listed: {ls}"));
    let status: Value =
        serde_json::from_str(&cli(&["node", "status", "--json", "--data-dir", &data])).unwrap();
    let restricted = status["restricted"].as_array().cloned().unwrap_or_default();
    let in_status = restricted.iter().find(|r| r["id"] == id);
    let human_ls = cli(&["node", "ls", "--data-dir", &data]);
    let human_status = cli(&["node", "status", "--data-dir", &data]);
    match shown {
        Some(shown) => {
            let (names, groups): (Vec<_>, Vec<_>) =
                shown.split(", ").partition(|s| !s.starts_with("group:"));
            let groups: Vec<_> = groups.iter().map(|g| &g["group:".len()..]).collect();
            assert_eq!(
                entry["audience"]["names"],
                serde_json::json!(names),
                "{node}: {entry}"
            );
            assert_eq!(
                entry["audience"]["groups"],
                serde_json::json!(groups),
                "{node}: {entry}"
            );
            let r = in_status.unwrap_or_else(|| panic!("{node}: status: {status}"));
            assert_eq!(r["audience"], entry["audience"], "{node}: {status}");
            assert!(
                human_ls.contains(&format!("to: {shown}")),
                "{node}: {human_ls}"
            );
            assert!(
                human_status.contains(&format!("to {shown}")) && human_status.contains(&id[..8]),
                "{node}: {human_status}"
            );
        }
        None => {
            assert!(entry.get("audience").is_none(), "{node}: {entry}");
            assert!(in_status.is_none(), "{node}: {status}");
            // Its row is not followed by an audience line.
            let mut lines = human_ls.lines().skip_while(|l| !l.starts_with(&id[..8]));
            assert!(lines.next().is_some(), "{node}: {human_ls}");
            assert!(
                !lines
                    .next()
                    .is_some_and(|l| l.trim_start().starts_with("to:")),
                "{node}: {human_ls}"
            );
            assert!(!human_status.contains(&id[..8]), "{node}: {human_status}");
        }
    }
}

/// A broadcast sent `--to n3 --to group:gpu`: n3 (named) and g1 (its certificate names gpu)
/// complete and `--wait` returns counting them and the origin only; `out`, a node with a valid
/// certificate outside the audience, gets nothing (no workspace, no manifest) and `node fetch`
/// there exits 1 saying why; a peer outside the audience asking the origin and both receivers
/// directly over QUIC for the manifest and a chunk is refused `Forbidden` by each, while a peer
/// of the audience asking the same is answered. A receiver restarted still refuses it.
#[test]
fn a_restricted_broadcast_reaches_its_audience_only() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let seed: SocketAddr = free_addr();
    c.bootstrap("b1", seed, &[])?;
    issue_with_groups(&c, "g1", &["gpu", "eu"])?;
    issue_with_groups(&c, "spy", &["cpu"])?;
    let mut n3 = 0;
    for n in ["origin", "n3", "g1", "out"] {
        let i = c.node(n, &[seed], &[])?;
        if n == "n3" {
            n3 = i;
        }
    }
    wait_for(Duration::from_secs(30), "nodes alive", || {
        let alive = names_with(&c.registry(seed)?, Status::Alive);
        Ok(["origin", "n3", "g1", "out"]
            .iter()
            .all(|n| alive.contains(&(*n).to_owned()))
            .then_some(()))
    })?;
    // The bootstrap recorded g1's groups from its certificate.
    let reg = c.registry(seed)?;
    let g1 = entries(&reg, Role::Node)
        .into_iter()
        .find(|e| e.name == "g1")
        .context("g1 listed")?;
    assert_eq!(g1.groups, vec!["eu".to_owned(), "gpu".to_owned()]);

    // The origin's copy of the registry knows them all (b1 and four nodes), so that --to n3
    // is not warned about.
    wait_for(Duration::from_secs(30), "the origin's view", || {
        Ok((c.status("origin")?.registry_alive >= 5).then_some(()))
    })?;
    let src = c.path("payload");
    write_file(&src.join("big.bin"), &pseudo_random(7, 3 << 20), 0o644)?;
    write_file(&src.join("secret-names/file.txt"), b"for n3 and gpu", 0o600)?;
    let origin_dir = c.data_dir("origin");
    let out = run_bounded(
        &[
            "node",
            "send",
            &src.to_string_lossy(),
            "--to",
            "n3",
            "--to",
            "group:gpu",
            "--wait",
            "--json",
            "--timeout",
            "40s",
            "--data-dir",
            &origin_dir.to_string_lossy(),
        ],
        Duration::from_secs(60),
    )?
    .context("node send --wait did not return in 60 s")?;
    assert!(out.status.success(), "{out:?}");
    assert!(!text(&out.stderr).contains("warning"), "{out:?}");
    let v: Value = serde_json::from_str(&text(&out.stdout))?;
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(v["fleet"]["nodes_alive"], 3, "origin, n3 and g1: {v}");
    let id = v["broadcast"]["id"].as_str().context("id")?.to_owned();
    let broadcast: BroadcastId = id.parse()?;
    for n in ["n3", "g1"] {
        assert_same_tree(&src, &c.data_dir(n).join("received/payload"));
    }
    // The record carries the audience.
    let reg = c.registry(seed)?;
    let record = reg
        .broadcasts
        .iter()
        .find(|b| b.id == id)
        .context("record")?;
    let audience = record.audience.clone().context("audience in the record")?;
    assert_eq!(
        (audience.names, audience.groups),
        (vec!["n3".to_owned()], vec!["gpu".to_owned()])
    );
    // `node ls` (human and --json) and `node status` show it at the origin and the receivers.
    for n in ["origin", "n3", "g1"] {
        assert_shows_audience(&c, n, &id, Some("n3, group:gpu"));
    }

    // Outside: a peer with a valid certificate (name spy, group cpu) asks every holder.
    let spy = Peer::new(&c.certs().join("spy"))?;
    for holder in ["origin", "n3", "g1"] {
        let addr = c.status(holder)?.listen;
        let [manifest, chunk] = spy.ask(addr, broadcast)?;
        assert_eq!(manifest, Err(ErrorCode::Forbidden), "{holder}: manifest");
        assert_eq!(chunk, Err(ErrorCode::Forbidden), "{holder}: chunk");
    }
    // Inside (g1's certificate), the same requests are answered (by a receiver: the origin
    // super-seeds, and declines a chunk it sent into the swarm already).
    let member = Peer::new(&c.certs().join("g1"))?;
    let [manifest, chunk] = member.ask(c.status("n3")?.listen, broadcast)?;
    assert!(
        matches!(manifest, Ok(Message::ManifestData(_))),
        "{manifest:?}"
    );
    assert!(matches!(chunk, Ok(Message::ChunkData(_))), "{chunk:?}");

    // A receiver restarted resumes the broadcast from its data dir, audience included (it is
    // in the manifest): it still refuses the peer outside.
    c.procs[n3].kill();
    c.node("n3", &[seed], &[])?;
    c.wait_done("n3", &id, Duration::from_secs(30), "n3 resumed")?;
    let [manifest, chunk] = spy.ask(c.status("n3")?.listen, broadcast)?;
    assert_eq!(
        manifest,
        Err(ErrorCode::Forbidden),
        "n3 restarted: manifest"
    );
    assert_eq!(chunk, Err(ErrorCode::Forbidden), "n3 restarted: chunk");

    // An unrestricted broadcast shows no audience anywhere.
    let open = c.path("open");
    write_file(&open.join("a.txt"), b"for everyone", 0o644)?;
    let sent = c.send_json("origin", &open)?;
    c.wait_done(
        "n3",
        &sent.id,
        Duration::from_secs(30),
        "n3 has the open one",
    )?;
    for n in ["origin", "n3"] {
        assert_shows_audience(&c, n, &sent.id, None);
    }

    // A few heartbeats more: nothing of it reaches the node outside.
    std::thread::sleep(HEARTBEAT * 5);
    assert_nothing_of(&c, "out", &id);
    let out_dir = c.data_dir("out");
    let fetch = run(&[
        "node",
        "fetch",
        "payload",
        "--data-dir",
        &out_dir.to_string_lossy(),
    ])?;
    assert_eq!(fetch.status.code(), Some(1), "{fetch:?}");
    assert!(
        text(&fetch.stderr).contains("not in the audience"),
        "{fetch:?}"
    );
    let fetch = run(&[
        "node",
        "fetch",
        &id[..12],
        "--data-dir",
        &out_dir.to_string_lossy(),
    ])?;
    assert_eq!(fetch.status.code(), Some(1), "{fetch:?}");
    assert_nothing_of(&c, "out", &id);
    // Its log never names a file of the broadcast (it never had the manifest).
    let log = c
        .procs
        .iter()
        .find(|p| p.name == "out")
        .map(|p| p.log.clone());
    let log = std::fs::read_to_string(log.context("out's log")?)?;
    assert!(!log.contains("secret-names"), "{log}");

    // --to: a malformed name or group is a usage error naming it; an unknown name is allowed,
    // with a warning.
    for (bad, named) in [
        ("Bad_Name", "Bad_Name"),
        ("group:", "\"\""),
        ("group:GPU", "GPU"),
    ] {
        let o = run(&[
            "node",
            "send",
            &src.to_string_lossy(),
            "--to",
            bad,
            "--data-dir",
            &origin_dir.to_string_lossy(),
        ])?;
        assert_eq!(o.status.code(), Some(2), "{bad}: {o:?}");
        assert!(text(&o.stderr).contains(named), "{bad}: {o:?}");
    }
    let o = run(&[
        "node",
        "send",
        &src.to_string_lossy(),
        "--to",
        "not-yet-joined",
        "--data-dir",
        &origin_dir.to_string_lossy(),
    ])?;
    assert!(o.status.success(), "{o:?}");
    assert!(
        text(&o.stderr).contains("warning: --to not-yet-joined"),
        "{o:?}"
    );
    // certs issue --group: a malformed group is a usage error naming it, and nothing is written.
    let certs = c.certs();
    let o = run(&[
        "certs",
        "issue",
        "--dir",
        &certs.to_string_lossy(),
        "--name",
        "n9",
        "--role",
        "node",
        "--group",
        "Bad Group",
    ])?;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(text(&o.stderr).contains("Bad Group"), "{o:?}");
    assert!(!certs.join("n9").exists());
    Ok(())
}

//! A crafted peer (a real node certificate, in-process) announces broadcasts whose manifests are
//! malicious and serves them when asked. The daemon must reject each before any filesystem call,
//! say why in `node ls`, and write nothing outside its workspace.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use swarmcast_certs::Identity;
use swarmcast_net::wire;
use swarmcast_node::manifest::{
    ChunkHash, Entry, EntryKind, MANIFEST_VERSION, Manifest, manifest_id,
};
use swarmcast_proto::{BroadcastId, Have, Limits, ManifestHeader, Message, Ping, encode};

use crate::support::*;

fn file(path: &str, size: u64, chunk: u32) -> Entry {
    let n = if chunk == 0 {
        1
    } else {
        size.div_ceil(u64::from(chunk))
    } as usize;
    Entry {
        path: path.into(),
        kind: EntryKind::File {
            size,
            mode: 0o644,
            chunks: vec![ChunkHash([1; 32]); n],
        },
    }
}

fn manifest(name: &str, chunk_size: u32, entries: Vec<Entry>) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        name: name.into(),
        chunk_size,
        root_mode: Some(0o755),
        entries,
        audience: None,
        priority: swarmcast_proto::Priority::Normal,
    }
}

/// (what is wrong, manifest bytes)
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let cs = 65536;
    let m = |entries| manifest("evil", cs, entries);
    let mut out = vec![
        (
            "absolute path",
            m(vec![file("/tmp/escaped-abs", 10, cs)]).to_bytes(),
        ),
        (
            "dot-dot",
            m(vec![file("../escaped-dotdot", 10, cs)]).to_bytes(),
        ),
        ("empty component", m(vec![file("a//b", 10, cs)]).to_bytes()),
        ("dot component", m(vec![file("./a", 10, cs)]).to_bytes()),
        ("NUL", m(vec![file("a\0b", 10, cs)]).to_bytes()),
        (
            "backslash",
            m(vec![file("..\\escaped-bs", 10, cs)]).to_bytes(),
        ),
        (
            "over-long name",
            m(vec![file(&"x".repeat(300), 10, cs)]).to_bytes(),
        ),
        (
            "duplicate paths",
            m(vec![file("same", 10, cs), file("same", 10, cs)]).to_bytes(),
        ),
        (
            "zero chunk size",
            manifest("evil", 0, vec![file("a", 10, 0)]).to_bytes(),
        ),
        (
            "absurd chunk size",
            manifest("evil", u32::MAX, vec![file("a", 10, u32::MAX)]).to_bytes(),
        ),
        (
            "bad name",
            manifest("..", cs, vec![file("a", 10, cs)]).to_bytes(),
        ),
        (
            "more than the free disk",
            manifest("evil", 16 << 20, vec![file("huge", 1 << 40, 16 << 20)]).to_bytes(),
        ),
    ];
    // A symlink entry: the format has no such kind, so it is smuggled in as a variant name.
    let dir = m(vec![Entry {
        path: "link".into(),
        kind: EntryKind::Dir { mode: 0o755 },
    }])
    .to_bytes();
    let pos = dir
        .windows(4)
        .position(|w| w == b"\xa3Dir")
        .expect("Dir variant in the encoding");
    let mut sym = dir[..pos].to_vec();
    sym.extend_from_slice(b"\xa7Symlink");
    sym.extend_from_slice(&dir[pos + 4..]);
    out.push(("symlink entry", sym));
    out
}

#[test]
fn crafted_manifests_are_rejected_before_touching_the_disk() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    c.node("victim", &[b], &[])?;
    let status = wait_for(Duration::from_secs(20), "victim registered", || {
        let s = c.status("victim")?;
        Ok(s.registered.then_some(s))
    })?;
    let victim: SocketAddr = status.listen;
    let evil = Identity::load(&c.issue("evil", "node")?)?;
    let cases = cases();
    let ids: Vec<BroadcastId> = cases.iter().map(|(_, bytes)| manifest_id(bytes)).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The crafted peer stays connected (its runtime drives the connection) until the end of the
    // test: data written before `finish` is only delivered while the connection lives.
    let (served, _conn, _endpoint) = rt.block_on(async {
        let config = evil.client_config(swarmcast_net::transport_config())?;
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let conn = endpoint.connect_with(config, victim, "swarmcast")?.await?;
        let limits = Limits::default();
        // Become a neighbour: a control stream that opens with a ping, then announce.
        let (mut control, mut control_recv) = conn.open_bi().await?;
        wire::write_message(&mut control, &Message::Ping(Ping { nonce: 0 }), &limits).await?;
        for id in &ids {
            let have = Message::Have(Have {
                broadcast: *id,
                chunks: 1,
                bits: vec![0x80],
                from_origin: false,
                seq: 0,
                audience: None,
            });
            wire::write_message(&mut control, &have, &limits).await?;
        }
        // Keep the control stream open and answer the victim's pings, or it drops us as a dead
        // neighbour (and a finished control stream ends the neighbourship at once).
        tokio::spawn(async move {
            let limits = Limits::default();
            while let Ok(Some(msg)) = wire::read_message(&mut control_recv, &limits).await {
                if let Message::Ping(p) = msg {
                    let pong = Message::Pong(p);
                    if wire::write_message(&mut control, &pong, &limits)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        // Serve every manifest request with the malicious bytes.
        let mut served = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while served.len() < ids.len() {
            let accepted = tokio::time::timeout_at(deadline, conn.accept_bi()).await;
            let Ok(Ok((mut send, mut recv))) = accepted else {
                break;
            };
            let Some(Message::ManifestRequest(r)) = wire::read_message(&mut recv, &limits).await?
            else {
                continue;
            };
            let Some(i) = ids.iter().position(|id| *id == r.broadcast) else {
                continue;
            };
            let bytes = &cases[i].1;
            let mut buf = Vec::new();
            encode(
                &Message::ManifestData(ManifestHeader {
                    broadcast: r.broadcast,
                    len: bytes.len() as u64,
                }),
                &limits,
                &mut buf,
            )?;
            send.write_all(&buf).await?;
            send.write_all(bytes).await?;
            send.finish()?;
            served.insert(i);
        }
        anyhow::Ok((served, conn, endpoint))
    })?;
    assert_eq!(
        served.len(),
        cases.len(),
        "the victim asked for every manifest"
    );

    // Each is listed as failed, with the reason, and no workspace was created for it.
    let not_failed = |list: &[BroadcastInfo]| -> Vec<&str> {
        cases
            .iter()
            .zip(&ids)
            .filter(|(_, id)| {
                !list
                    .iter()
                    .any(|b| b.id == id.to_hex() && b.state == BroadcastPhase::Failed)
            })
            .map(|((what, _), _)| *what)
            .collect()
    };
    let waited = wait_for(Duration::from_secs(20), "all rejected", || {
        let list = c.ls("victim")?;
        Ok(not_failed(&list).is_empty().then_some(list))
    });
    let list = match waited {
        Ok(l) => l,
        Err(e) => {
            let list = c.ls("victim")?;
            panic!(
                "{e}: not listed as failed: {:?}; node ls: {list:#?}",
                not_failed(&list)
            );
        }
    };
    for ((what, _), id) in cases.iter().zip(&ids) {
        let entry = list.iter().find(|b| b.id == id.to_hex()).unwrap();
        let error = entry.error.as_deref().unwrap_or_default();
        eprintln!("{what}: {error}");
        assert!(!error.is_empty(), "{what}: a reason is given");
        let ws = c.data_dir("victim").join("broadcasts").join(id.to_hex());
        assert!(
            !ws.join("data").exists(),
            "{what}: no workspace data was created at {}",
            ws.display()
        );
    }
    for escaped in ["escaped-dotdot", "escaped-bs"] {
        for dir in [
            c.dir.path().to_path_buf(),
            c.data_dir("victim"),
            c.data_dir("victim").join("broadcasts"),
        ] {
            assert!(
                !dir.join(escaped).exists(),
                "{} written outside the workspace",
                escaped
            );
        }
    }
    assert!(!std::path::Path::new("/tmp/escaped-abs").exists());
    Ok(())
}

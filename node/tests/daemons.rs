//! Three node daemons and a bootstrap server in one process, on 127.0.0.1, with real QUIC and
//! real control sockets: one node sends a directory, the other two receive it byte for byte.
//! This runs the whole shell (accept and dispatch, neighbours, membership, the data plane around
//! the broadcast core) without the binary.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use swarmcast_bootstrap::BootstrapConfig;
use swarmcast_certs::testing::TestCluster;
use swarmcast_node::data::BroadcastInfo;
use swarmcast_node::listing::BroadcastPhase;
use swarmcast_node::neighbours::NeighbourConfig;
use swarmcast_node::{NodeConfig, control};
use swarmcast_proto::Role;
use tokio::sync::watch;

/// A port free on 127.0.0.1 right now (the bootstrap needs a concrete address for its seeds).
fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Deterministic bytes that differ per file.
fn bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8 ^ salt)
        .collect()
}

fn source(root: &Path) -> PathBuf {
    let dir = root.join("payload");
    std::fs::create_dir_all(dir.join("sub/empty")).unwrap();
    std::fs::write(dir.join("big.bin"), bytes(3 << 20 | 12_345, 1)).unwrap();
    std::fs::write(dir.join("sub/small.txt"), b"hello, swarm\n").unwrap();
    std::fs::write(dir.join("zero"), b"").unwrap();
    dir
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                out.push((rel, None));
                stack.push(p);
            } else {
                out.push((rel, Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn entry(data_dir: &Path, id: &str) -> Option<BroadcastInfo> {
    control::list(data_dir)
        .await
        .ok()?
        .into_iter()
        .find(|b| b.id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_send_a_broadcast_end_to_end() {
    swarmcast_certs::install_crypto_provider();
    let cluster = TestCluster::new();
    let tmp = tempfile::tempdir().unwrap();
    let (stop, stop_rx) = watch::channel(false);

    let seed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let fixed = |identity| swarmcast_certs::LiveIdentity::fixed(identity).unwrap();
    let bootstrap = tokio::spawn(swarmcast_bootstrap::run(
        fixed(cluster.issue("b1", Role::Bootstrap)),
        BootstrapConfig::new(seed),
        stopped(stop_rx.clone()),
    ));
    let names = ["n0", "n1", "n2"];
    let mut nodes = Vec::new();
    for name in names {
        let mut config = NodeConfig::new(vec![seed], tmp.path().join(name));
        config.heartbeat = Duration::from_millis(200);
        config.neighbours = NeighbourConfig::for_test();
        let identity = cluster.issue(name, Role::Node);
        nodes.push(tokio::spawn(swarmcast_node::run(
            fixed(identity),
            config,
            stopped(stop_rx.clone()),
        )));
    }
    let dir = |i: usize| tmp.path().join(names[i]);
    for i in 0..3 {
        wait_for(
            "registration and two neighbours",
            Duration::from_secs(30),
            async || {
                let s = control::status(&dir(i)).await.ok()?;
                let connected = s
                    .neighbours
                    .iter()
                    .filter(|n| n.state == "connected")
                    .count();
                (s.registered && s.registry_alive >= 4 && connected == 2).then_some(())
            },
        )
        .await;
    }

    let src = source(tmp.path());
    let sent = control::send(&dir(0), src.clone(), 256 << 10)
        .await
        .unwrap();
    assert_eq!(sent.name, "payload");
    assert_eq!(sent.files, 3);
    let expected = tree(&src);
    for (i, name) in names.iter().enumerate().skip(1) {
        let info = wait_for(
            "the broadcast to complete",
            Duration::from_secs(60),
            async || {
                entry(&dir(i), &sent.id)
                    .await
                    .filter(|b| b.state == BroadcastPhase::Complete)
            },
        )
        .await;
        assert_eq!(info.chunks_held, sent.chunks);
        assert_eq!(info.bytes_held, sent.bytes);
        let path = PathBuf::from(info.path.unwrap());
        assert_eq!(path, dir(i).join("received").join("payload"));
        assert_eq!(tree(&path), expected, "{name} received another tree");
    }
    let origin = entry(&dir(0), &sent.id).await.unwrap();
    assert_eq!(origin.state, BroadcastPhase::Seeding);
    assert!(origin.uploaded_bytes > 0);
    // The fleet view shows both receivers complete once their heartbeats carried it.
    wait_for("the fleet view", Duration::from_secs(30), async || {
        let f = control::fleet(&dir(0), &sent.id).await.ok()?;
        (f.nodes_complete == 3).then_some(())
    })
    .await;

    stop.send(true).unwrap();
    for n in nodes {
        n.await.unwrap().unwrap();
    }
    bootstrap.await.unwrap().unwrap();
}

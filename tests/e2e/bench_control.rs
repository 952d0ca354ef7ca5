//! Control-plane measurements at the binary's default timings (heartbeat 1 s, suspect 3 s,
//! dead 6 s, anti-entropy 300 ms). Not a test: run it with
//!
//! ```sh
//! cargo test --release --test e2e -- --ignored --nocapture bench_control_plane
//! ```
//!
//! Polling is done in-process (every 10 ms) through the library clients, so the figures are not
//! inflated by spawning a CLI process per probe.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use swarmcast_bootstrap::BootstrapClient;
use swarmcast_certs::Identity;
use swarmcast_net::{CloseCode, transport_config};
use swarmcast_node::control;
use swarmcast_proto::{RegistryView, Status};

use crate::support::*;

const RUNS: usize = 5;

struct Probe {
    rt: tokio::runtime::Runtime,
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    clients: Vec<BootstrapClient>,
}

impl Probe {
    fn new(identity: &Identity, bootstraps: &[SocketAddr]) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let config = identity.client_config(transport_config())?;
        let endpoint =
            rt.block_on(async { quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))) })?;
        let mut clients = Vec::new();
        for b in bootstraps {
            let c = wait_for(Duration::from_secs(10), "bootstrap up", || {
                Ok(rt
                    .block_on(BootstrapClient::connect(
                        &endpoint,
                        &config,
                        *b,
                        Duration::from_secs(2),
                    ))
                    .ok())
            })?;
            clients.push(c);
        }
        Ok(Self {
            rt,
            endpoint,
            config,
            clients,
        })
    }

    fn view(&self, i: usize) -> Result<RegistryView> {
        Ok(self.rt.block_on(self.clients[i].lookup())?)
    }

    fn status_of(view: &RegistryView, name: &str) -> Option<Status> {
        view.nodes
            .iter()
            .find(|e| e.record.name == name)
            .map(|e| e.status)
    }

    /// Poll until `pred` holds, every 10 ms; the instant it first held.
    fn until(
        &self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Self) -> Result<bool>,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self)? {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn neighbours(&self, data_dir: &std::path::Path) -> Result<Vec<String>> {
        let s = self.rt.block_on(control::status(data_dir))?;
        Ok(s.neighbours
            .into_iter()
            .filter(|n| n.state == "connected")
            .map(|n| n.id)
            .collect())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = &self.config;
        self.endpoint.close(CloseCode::Shutdown.into(), b"done");
    }
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "BENCH {name}: median {:.0} ms, min {:.0} ms, max {:.0} ms over {} runs",
        ms(&v[v.len() / 2]),
        ms(&v[0]),
        ms(&v[v.len() - 1]),
        v.len()
    );
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_control_plane() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    c.defaults = true;
    let b: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    for (i, a) in b.iter().enumerate() {
        let peers: Vec<_> = b.iter().copied().filter(|p| p != a).collect();
        c.bootstrap(&format!("b{}", i + 1), *a, &peers)?;
    }
    let probe_id = Identity::load(&c.issue("probe", "node")?)?;
    let p = Probe::new(&probe_id, &b)?;

    // 1. A registration at b1 appearing at b2 and b3.
    let mut propagation = Vec::new();
    for run in 0..RUNS {
        let name = format!("r{run}");
        c.node(&name, &[b[0]], &[])?;
        let at_b1 = p.until(Duration::from_secs(10), "registration at b1", |p| {
            Ok(Probe::status_of(&p.view(0)?, &name).is_some())
        })?;
        let at_all = p.until(Duration::from_secs(10), "registration everywhere", |p| {
            Ok(Probe::status_of(&p.view(1)?, &name).is_some()
                && Probe::status_of(&p.view(2)?, &name).is_some())
        })?;
        propagation.push(at_all - at_b1);
    }

    // Six nodes with two neighbours each, for detection and replacement.
    let names: Vec<String> = (1..=6).map(|i| format!("n{i}")).collect();
    let mut procs = Vec::new();
    for n in &names {
        procs.push(c.node(n, &b, &["--neighbours", "2"])?);
    }
    let mut detection = Vec::new();
    let mut replacement = Vec::new();
    for run in 0..RUNS {
        let victim = run % names.len();
        let vname = names[victim].clone();
        p.until(Duration::from_secs(30), "victim alive everywhere", |p| {
            Ok((0..3).all(|i| {
                p.view(i).ok().and_then(|v| Probe::status_of(&v, &vname)) == Some(Status::Alive)
            }))
        })?;

        p.until(Duration::from_secs(30), "neighbourhoods settled", |p| {
            let mut ok = true;
            for n in &names {
                ok &= p
                    .neighbours(&c.data_dir(n))
                    .map(|v| v.len() >= 2)
                    .unwrap_or(false);
            }
            Ok(ok)
        })?;
        let vid = p.rt.block_on(control::status(&c.data_dir(&vname)))?.id;
        let former: Vec<&String> = names
            .iter()
            .filter(|n| **n != vname)
            .filter(|n| {
                p.neighbours(&c.data_dir(n))
                    .map(|v| v.contains(&vid))
                    .unwrap_or(false)
            })
            .collect();
        c.procs[procs[victim]].kill();
        let killed = Instant::now();
        let mut pending: Vec<&String> = former.clone();
        let mut dead_pending = vec![0usize, 1, 2];
        let deadline = Instant::now() + Duration::from_secs(30);
        while (!pending.is_empty() || !dead_pending.is_empty()) && Instant::now() < deadline {
            pending.retain(|n| {
                let v = p.neighbours(&c.data_dir(n)).unwrap_or_default();
                let done = !v.contains(&vid) && v.len() >= 2;
                if done {
                    replacement.push(killed.elapsed());
                }
                !done
            });
            dead_pending.retain(|i| {
                let dead = p.view(*i).ok().and_then(|v| Probe::status_of(&v, &vname))
                    == Some(Status::Dead);
                if dead {
                    detection.push(killed.elapsed());
                }
                !dead
            });
            std::thread::sleep(Duration::from_millis(10));
        }
        if !pending.is_empty() || !dead_pending.is_empty() {
            bail!("run {run}: replacement or detection did not happen");
        }
        // Restart the victim for the next run.
        procs[victim] = c.node(&vname, &b, &["--neighbours", "2"])?;
    }
    summary("registration at b1 -> visible at b2 and b3", propagation);
    summary(
        "SIGKILL of a node -> dead at a bootstrap (each of 3)",
        detection,
    );
    summary(
        "SIGKILL of a node -> former neighbour has a replacement",
        replacement,
    );
    Ok(())
}

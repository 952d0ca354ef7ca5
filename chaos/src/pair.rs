//! `swarmcast bench pair`: one origin to one receiver through real swarmcast processes, and in
//! the same run a bare quinn bulk transfer of the same number of bytes over one QUIC connection
//! on 127.0.0.1: the transport's ceiling on this machine.
//!
//! The bare transfer uses what swarmcast uses: a cluster CA with ECDSA P-256 leaves (issued in
//! memory), [`Identity::server_config`] and [`Identity::client_config`] (mutual TLS 1.3, ring)
//! and [`transport_config`] (the same stream and connection windows). It is meant to be
//! the best quinn does with those settings, so it does nothing swarmcast has to do:
//!
//! * the receiver only reads (`read_chunk`, no copy) and counts: no hashing, no disk;
//! * the sender writes `Bytes` handles of one pre-filled buffer (`write_chunk`, no copy, no
//!   disk read);
//! * the connection is established before the clock starts (swarmcast's neighbours are
//!   connected before `send` too);
//! * the bytes are split over [`DEFAULT_STREAMS`] long-lived bidirectional streams opened at
//!   once (the receiver opens each with an 8-byte request, as swarmcast's receivers pull; the
//!   transport config allows no unidirectional streams). On a 2-core loopback VM 1, 2, 4 and 8
//!   streams came within a few percent of each other (about 1 GiB/s: the limit is CPU, for
//!   packet crypto and UDP syscalls, not the windows); with several, no stream's 2 MiB window
//!   can be what bounds the connection's 4 MiB. `--streams` changes it.
//!
//! Both endpoints live in the bench process, each with its own UDP socket and its own tokio
//! runtime (the origin's on a thread of its own), as the two swarmcast processes have.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use swarmcast_certs::{Ca, Identity, Role, SERVER_NAME, Validity, issue_with};
use swarmcast_net::{CloseCode, transport_config};

use crate::bench::{self, BenchConfig, BenchResult, Spread};
use crate::tree;

/// Streams of the bare transfer unless told otherwise (see the module documentation).
pub const DEFAULT_STREAMS: usize = 4;

/// The sender writes handles of one buffer of this size.
const WRITE_BUF: usize = 1 << 20;

/// What `bench pair` measures.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// Bytes of the one file sent (and of the bare transfer).
    pub size: u64,
    /// swarmcast's chunk size.
    pub chunk_size: u32,
    /// Streams of the bare transfer.
    pub streams: usize,
    /// Give up on either transfer after this long.
    pub timeout: Duration,
}

impl PairConfig {
    /// Refuses what a run would fail on later: nothing to send, no stream, a chunk size or a
    /// size the manifest limits refuse.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 {
            bail!("the size must be more than 0 bytes");
        }
        if self.streams == 0 {
            bail!("the bare transfer needs at least 1 stream");
        }
        bench::check_limits(1, self.size, self.chunk_size)
    }

    /// The swarmcast half: one origin, one receiver, one file.
    pub fn bench_config(&self) -> BenchConfig {
        BenchConfig {
            receivers: 1,
            size: self.size,
            files: 1,
            chunk_size: self.chunk_size,
            timeout: self.timeout,
        }
    }
}

/// One bare quinn transfer.
#[derive(Debug, Clone)]
pub struct BareResult {
    /// From the first request to the last byte read (the connection was already up).
    pub elapsed: Duration,
    /// Bytes the sender wrote.
    pub bytes_sent: u64,
    /// Bytes the receiver read.
    pub bytes_received: u64,
    /// Streams used.
    pub streams: usize,
    /// CPU-seconds of the origin's threads, handshake included.
    pub origin_cpu_s: f64,
    /// CPU-seconds of the receiver's side (the rest of this process meanwhile).
    pub receiver_cpu_s: f64,
}

impl BareResult {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64();
        json!({
            "bytes": self.bytes_received,
            "streams": self.streams,
            "transfer_s": secs,
            "mib_s": mib_s(self.bytes_received, secs),
            "origin_cpu_s": self.origin_cpu_s,
            "receiver_cpu_s": self.receiver_cpu_s,
            "origin_cpu_s_per_gib": bench::per_gib(self.origin_cpu_s, self.bytes_received),
            "receiver_cpu_s_per_gib": bench::per_gib(self.receiver_cpu_s, self.bytes_received),
        })
    }
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

/// A fresh cluster CA and two node identities, in memory, as `certs issue` makes them.
fn identities() -> Result<(Identity, Identity)> {
    let ca = Ca::generate().context("generating a CA")?;
    let issue = |name: &str| -> Result<Identity> {
        issue_with(&ca, name, Role::Node, Validity::leaf())
            .and_then(|c| c.identity())
            .with_context(|| format!("issuing {name}"))
    };
    Ok((issue("bare-origin")?, issue("bare-receiver")?))
}

/// Serve one connection: each bidirectional stream carries an 8-byte little-endian length; answer
/// with that many bytes and finish. Returns the bytes written.
async fn serve(incoming: quinn::Incoming, data: Bytes) -> Result<u64> {
    let conn = incoming.await.context("bare origin: handshake")?;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            // The receiver closes the connection when it has read everything.
            Err(quinn::ConnectionError::ApplicationClosed(_)) => break,
            Err(e) => return Err(e).context("bare origin: accepting a stream"),
        };
        let data = data.clone();
        tasks.spawn(async move {
            let mut len = [0u8; 8];
            recv.read_exact(&mut len)
                .await
                .context("reading a request")?;
            let len = u64::from_le_bytes(len);
            let mut left = len;
            while left > 0 {
                let n = left.min(data.len() as u64) as usize;
                send.write_chunk(data.slice(..n)).await.context("writing")?;
                left -= n as u64;
            }
            send.finish().context("finishing a stream")?;
            anyhow::Ok(len)
        });
    }
    let mut sent = 0;
    while let Some(r) = tasks.join_next().await {
        sent += r.context("bare origin task")??;
    }
    Ok(sent)
}

/// Ask for `len` bytes on a new stream and read them, discarding them. Returns the bytes read.
async fn fetch(conn: quinn::Connection, len: u64) -> Result<u64> {
    let (mut send, mut recv) = conn.open_bi().await.context("opening a stream")?;
    send.write_all(&len.to_le_bytes())
        .await
        .context("sending a request")?;
    send.finish().context("finishing a request")?;
    let mut got = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await.context("reading")? {
        got += chunk.bytes.len() as u64;
    }
    Ok(got)
}

/// What the origin thread reports: the bytes it wrote and the CPU-seconds its threads spent.
type OriginDone = (Result<u64>, f64);

/// The origin side on a runtime of its own, in a thread of its own, as if it were another
/// process: accepts one connection and serves it. Returns its endpoint (to close it) and a
/// receiver of the bytes it wrote and the CPU its threads used.
fn spawn_origin(
    config: quinn::ServerConfig,
) -> Result<(quinn::Endpoint, tokio::sync::oneshot::Receiver<OriginDone>)> {
    // Each of the runtime's threads adds what it used when it stops (when the runtime drops).
    let cpu = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
    let add_cpu = {
        let cpu = cpu.clone();
        move || {
            let spent = bench::thread_cpu_seconds().unwrap_or(0.0);
            *cpu.lock().unwrap_or_else(|p| p.into_inner()) += spent;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bare-origin")
        .on_thread_stop(add_cpu)
        .build()
        .context("bare origin: starting a runtime")?;
    let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let endpoint = {
        let _guard = rt.enter();
        swarmcast_net::endpoint(localhost, Some(config))
            .context("bare origin: binding a UDP socket")?
    };
    let mut buf = vec![0u8; WRITE_BUF];
    tree::fill(7, &mut buf);
    let data = Bytes::from(buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let accept = endpoint.clone();
    std::thread::Builder::new()
        .name("bare-origin".into())
        .spawn(move || {
            let sent = rt.block_on(async move {
                let incoming = accept
                    .accept()
                    .await
                    .context("bare origin: endpoint closed before a connection")?;
                let sent = serve(incoming, data).await;
                accept.wait_idle().await;
                sent
            });
            // The runtime is dropped here, outside any async context; its threads stop first.
            drop(rt);
            let mut spent = *cpu.lock().unwrap_or_else(|p| p.into_inner());
            spent += bench::thread_cpu_seconds().unwrap_or(0.0);
            let _ = tx.send((sent, spent));
        })
        .context("bare origin: spawning a thread")?;
    Ok((endpoint, rx))
}

/// A bare quinn transfer of `bytes` over one connection on 127.0.0.1, split over `streams`
/// streams, with swarmcast's TLS and transport settings. The receiver runs on the caller's
/// runtime, the origin on a runtime of its own. Fails after `timeout`.
pub async fn bare_transfer(bytes: u64, streams: usize, timeout: Duration) -> Result<BareResult> {
    if bytes == 0 || streams == 0 {
        bail!("a bare transfer needs at least one byte and one stream");
    }
    let (origin, receiver) = identities()?;
    let transport = transport_config();
    let (server, sent) = spawn_origin(origin.server_config(transport.clone())?)?;
    let server_addr = server.local_addr()?;
    let client = swarmcast_net::endpoint(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)
        .context("bare receiver: binding a UDP socket")?;
    let client_config = receiver.client_config(transport)?;
    let cpu_before = bench::self_cpu_seconds().unwrap_or(0.0);

    let result = tokio::time::timeout(timeout, async {
        let conn = client
            .connect_with(client_config, server_addr, SERVER_NAME)?
            .await
            .context("bare receiver: handshake")?;
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let streams_u64 = streams as u64;
        for i in 0..streams_u64 {
            let len = bytes / streams_u64 + u64::from(i < bytes % streams_u64);
            tasks.spawn(fetch(conn.clone(), len));
        }
        let mut received = 0u64;
        while let Some(r) = tasks.join_next().await {
            received += r.context("bare receiver task")??;
        }
        let elapsed = t0.elapsed();
        conn.close(CloseCode::Shutdown.into(), b"done");
        anyhow::Ok((elapsed, received))
    })
    .await;
    let (elapsed, bytes_received) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            server.close(CloseCode::Shutdown.into(), b"receiver failed");
            return Err(e);
        }
        Err(_) => {
            server.close(CloseCode::Shutdown.into(), b"timed out");
            bail!("bare transfer not done after {timeout:?}");
        }
    };
    client.wait_idle().await;
    let (bytes_sent, origin_cpu_s) = sent.await.context("bare origin thread")?;
    let bytes_sent = bytes_sent?;
    let total_cpu = bench::self_cpu_seconds().unwrap_or(0.0) - cpu_before;
    Ok(BareResult {
        elapsed,
        bytes_sent,
        bytes_received,
        streams,
        origin_cpu_s,
        receiver_cpu_s: (total_cpu - origin_cpu_s).max(0.0),
    })
}

/// One run of `bench pair`: swarmcast, then the bare transfer.
#[derive(Debug, Clone)]
pub struct PairRun {
    /// Through swarmcast processes.
    pub swarmcast: BenchResult,
    /// Bare quinn.
    pub bare: BareResult,
}

impl PairRun {
    /// swarmcast's throughput over the bare transfer's (same bytes, so a ratio of times).
    pub fn ratio(&self) -> f64 {
        self.bare.elapsed.as_secs_f64() / self.swarmcast.transfer.as_secs_f64()
    }

    /// CPU-seconds per GiB: swarmcast's origin and receiver, then bare quinn's.
    pub fn cpu_per_gib(&self) -> [f64; 4] {
        let b = &self.bare;
        [
            self.swarmcast.origin_cpu_per_gib(),
            self.swarmcast.receiver_cpu_per_gib(),
            bench::per_gib(b.origin_cpu_s, b.bytes_received),
            bench::per_gib(b.receiver_cpu_s, b.bytes_received),
        ]
    }

    /// Bare quinn's CPU per byte (both ends) over swarmcast's: 1.0 means swarmcast costs no more
    /// CPU than the transport.
    pub fn cpu_ratio(&self) -> f64 {
        let [so, sr, bo, br] = self.cpu_per_gib();
        if so + sr == 0.0 {
            0.0
        } else {
            (bo + br) / (so + sr)
        }
    }

    /// As JSON.
    pub fn to_json(&self, config: &PairConfig) -> Value {
        json!({
            "swarmcast": self.swarmcast.to_json(&config.bench_config()),
            "bare": self.bare.to_json(),
            "ratio": self.ratio(),
            "cpu_ratio": self.cpu_ratio(),
        })
    }
}

/// One run: the swarmcast transfer (binary at `exe`), then the bare one.
pub async fn run(exe: std::path::PathBuf, config: &PairConfig) -> Result<PairRun> {
    let swarmcast = bench::run(exe, &config.bench_config())
        .await
        .context("swarmcast transfer")?;
    let bare = bare_transfer(config.size, config.streams, config.timeout)
        .await
        .context("bare quinn transfer")?;
    if bare.bytes_received != config.size {
        bail!(
            "bare quinn transfer: read {} bytes of {}",
            bare.bytes_received,
            config.size
        );
    }
    Ok(PairRun { swarmcast, bare })
}

/// Every run and the median, min and max of the times and the ratio.
pub fn summary_json(config: &PairConfig, runs: &[PairRun]) -> Value {
    let swarm = Spread::of(runs.iter().map(|r| r.swarmcast.transfer.as_secs_f64()));
    let bare = Spread::of(runs.iter().map(|r| r.bare.elapsed.as_secs_f64()));
    let ratio = Spread::of(runs.iter().map(PairRun::ratio));
    json!({
        "bytes": config.size,
        "chunk_size": config.chunk_size,
        "bare_streams": config.streams,
        "runs": runs.iter().map(|r| r.to_json(config)).collect::<Vec<_>>(),
        "swarmcast_transfer_s": swarm.to_json(),
        "bare_transfer_s": bare.to_json(),
        "ratio": ratio.to_json(),
        "cpu_s_per_gib": {
            "swarmcast_origin": cpu_spread(runs, 0).to_json(),
            "swarmcast_receiver": cpu_spread(runs, 1).to_json(),
            "bare_origin": cpu_spread(runs, 2).to_json(),
            "bare_receiver": cpu_spread(runs, 3).to_json(),
        },
        "cpu_ratio": Spread::of(runs.iter().map(PairRun::cpu_ratio)).to_json(),
    })
}

fn cpu_spread(runs: &[PairRun], which: usize) -> Spread {
    Spread::of(runs.iter().map(|r| r.cpu_per_gib()[which]))
}

/// The same for people.
pub fn summary_text(config: &PairConfig, runs: &[PairRun]) -> String {
    let size = config.size;
    let line = |name: &str, s: Spread| {
        format!(
            "{name:<11} median {:7.3} s {:8.1} MiB/s   min {:7.3} s   max {:7.3} s\n",
            s.median,
            mib_s(size, s.median),
            s.min,
            s.max
        )
    };
    let mut out = format!(
        "bench pair: {} from one origin to one receiver on 127.0.0.1, {} run(s)\n",
        crate::demo::human(size),
        runs.len()
    );
    out += &line(
        "swarmcast",
        Spread::of(runs.iter().map(|r| r.swarmcast.transfer.as_secs_f64())),
    );
    out += &line(
        "bare quinn",
        Spread::of(runs.iter().map(|r| r.bare.elapsed.as_secs_f64())),
    );
    let ratio = Spread::of(runs.iter().map(PairRun::ratio));
    out += &format!(
        "ratio       median {:.2}   min {:.2}   max {:.2}   (swarmcast throughput / bare quinn \
         throughput; target >= 0.80)\n",
        ratio.median, ratio.min, ratio.max
    );
    let cpu = |w: usize| cpu_spread(runs, w).median;
    out += &format!(
        "CPU-s/GiB   swarmcast origin {:.2} receiver {:.2}   bare quinn origin {:.2} receiver \
         {:.2}   (medians; bare/swarmcast {:.2})\n",
        cpu(0),
        cpu(1),
        cpu(2),
        cpu(3),
        Spread::of(runs.iter().map(PairRun::cpu_ratio)).median
    );
    out += &format!(
        "bare quinn: {} stream(s) on one connection, receiver reads and discards (no hashing, no \
         disk); swarmcast: hashed, verified and written to disk\n",
        config.streams
    );
    out
}

/// One run for people.
pub fn run_text(run: &PairRun, index: usize, total: usize) -> String {
    let size = run.bare.bytes_received;
    let s = run.swarmcast.transfer.as_secs_f64();
    let b = run.bare.elapsed.as_secs_f64();
    format!(
        "run {index}/{total}: swarmcast {s:.3} s ({:.1} MiB/s), bare quinn {b:.3} s ({:.1} MiB/s), \
         ratio {:.2}",
        mib_s(size, s),
        mib_s(size, b),
        run.ratio()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bare_transfer_delivers_every_byte() -> Result<()> {
        // Uneven splits too: 4 MiB + 3 bytes over 1 and 3 streams.
        let size = (4 << 20) + 3;
        for streams in [1, 3] {
            let r = bare_transfer(size, streams, Duration::from_secs(60)).await?;
            assert_eq!(r.bytes_sent, size, "{streams} stream(s): sent");
            assert_eq!(r.bytes_received, size, "{streams} stream(s): received");
            assert_eq!(r.streams, streams);
            assert!(r.elapsed > Duration::ZERO);
        }
        Ok(())
    }

    #[test]
    fn config_validation() {
        let ok = PairConfig {
            size: 1 << 30,
            chunk_size: 1 << 20,
            streams: 4,
            timeout: Duration::from_secs(1),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            PairConfig {
                size: 0,
                ..ok.clone()
            },
            PairConfig {
                streams: 0,
                ..ok.clone()
            },
            PairConfig {
                chunk_size: 0,
                ..ok.clone()
            },
            PairConfig {
                chunk_size: 32 << 20,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn bare_transfer_refuses_nothing_to_do() {
        assert!(bare_transfer(0, 1, Duration::from_secs(5)).await.is_err());
        assert!(bare_transfer(1, 0, Duration::from_secs(5)).await.is_err());
    }
}

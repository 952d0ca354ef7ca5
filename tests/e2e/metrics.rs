//! `--metrics ADDR`: a live node and bootstrap serve `/metrics` that `promtool check metrics`
//! accepts, a receiver's counters rise mid-transfer, and a port in use fails the start (exit 1,
//! naming it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::support::*;

/// A free TCP port on 127.0.0.1.
pub fn free_tcp() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET /metrics`: the body of a 200 answer.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").context("no header end")?;
    ensure!(head.starts_with("HTTP/1.0 200"), "answer: {head}");
    Ok(body.to_owned())
}

/// The value of the first sample whose line starts with `prefix` (name plus labels).
pub fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` on `body`: an error with its complaints unless clean.
pub fn promtool(body: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian package prometheus; .ci/run installs it)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(body.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !text.trim().is_empty() {
        bail!("promtool check metrics: {text}\n--- body ---\n{body}");
    }
    Ok(())
}

#[test]
fn live_metrics_rise_mid_transfer_and_pass_promtool() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    let (bm, n2m) = (free_tcp(), free_tcp());
    let bi = c.bootstrap("b1", b, &[])?;
    let _ = bi;
    // The bootstrap with metrics: a second one, so that anti-entropy rounds happen.
    let b2 = free_addr();
    let b2m = bm.to_string();
    c.bootstrap_extra("b2", b2, &[b], &["--metrics", &b2m])?;
    // A slow origin, so that the transfer is long enough to scrape twice mid-way.
    c.node_env("n1", &[b], &[], &[("SWARMCAST_FAULT_SERVE_DELAY_MS", "40")])?;
    c.node("n2", &[b], &["--metrics", &n2m.to_string()])?;
    let src = c.path("payload");
    write_file(&src.join("big.bin"), &pseudo_random(7, 8 << 20), 0o644)?;
    wait_for(Duration::from_secs(30), "two nodes alive", || {
        let alive = names_with(&c.registry(b)?, Status::Alive);
        Ok((alive.contains(&"n1".to_owned()) && alive.contains(&"n2".to_owned())).then_some(()))
    })?;
    let out = c.cli(&[
        "node",
        "send",
        &src.to_string_lossy(),
        "--json",
        "--chunk-size",
        "256KiB",
        "--data-dir",
        &c.data_dir("n1").to_string_lossy(),
    ])?;
    let id: serde_json::Value = serde_json::from_str(&out)?;
    let short = id["broadcast"]["id"].as_str().unwrap_or_default()[..8].to_owned();
    let down = format!("swarmcast_downloaded_bytes_total{{broadcast=\"{short}\"}}");
    // Scrape until the copy is complete: the counter must be seen strictly between nothing
    // and the whole several times, rising, while the node says it is receiving; and at the end
    // it must equal what the node itself counted (`node ls`: fetched_bytes). (Before, one
    // scrape 700 ms into a ~1.3 s transfer was compared with a first one: it measured the
    // timing, and a counter off by any factor still passed.)
    let total = (8u64 << 20) as f64;
    let bid = id["broadcast"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut mid: Vec<f64> = Vec::new();
    let mut receiving = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = c.broadcast("n2", &bid)?.is_some_and(|b| b.is_done());
        let scraped = scrape(n2m)?;
        let v = sample(&scraped, &down).unwrap_or(0.0);
        if done {
            break;
        }
        if v > 0.0 && v < total {
            if mid.last().is_none_or(|last| v > *last) {
                mid.push(v);
            }
            ensure!(
                mid.last().is_some_and(|last| v >= *last),
                "the counter went down: {mid:?} then {v}"
            );
            receiving = sample(&scraped, "swarmcast_broadcasts{state=\"receiving\"}");
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "n2 did not complete: {mid:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        mid.len() >= 3,
        "the counter was seen rising mid-transfer only {} times: {mid:?}",
        mid.len()
    );
    let info = c.broadcast("n2", &bid)?.expect("n2 knows the broadcast");
    let last = sample(&scrape(n2m)?, &down).unwrap_or(0.0);
    ensure!(
        last == info.fetched_bytes as f64 && last >= total,
        "the metric says {last} bytes downloaded, the node {} (of {total})",
        info.fetched_bytes
    );
    let body = scrape(n2m)?;
    ensure!(
        receiving == Some(1.0),
        "receiving mid-transfer: {receiving:?}"
    );
    ensure!(sample(&body, "swarmcast_pieces_verified_total").unwrap_or(0.0) > 0.0);
    ensure!(sample(&body, "swarmcast_neighbours").unwrap_or(0.0) >= 1.0);
    ensure!(sample(&body, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0);
    // The certificate's notAfter: about a year ahead (`certs issue`'s default).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let expiry = sample(&body, "swarmcast_cert_expiry_timestamp_seconds").unwrap_or(0.0);
    ensure!(
        expiry > now + 364.0 * 86_400.0 && expiry < now + 366.0 * 86_400.0,
        "cert expiry {expiry} at {now}"
    );
    // Heartbeats went on all along: their round trips are observed, each under the timeout.
    let beats = sample(&body, "swarmcast_heartbeat_rtt_seconds_count").unwrap_or(0.0);
    let rtt = sample(&body, "swarmcast_heartbeat_rtt_seconds_sum").unwrap_or(f64::MAX);
    ensure!(
        beats >= 1.0 && rtt / beats < 1.0,
        "heartbeat round trips: {beats} beats, {rtt} s in all"
    );
    promtool(&body)?;
    // The bootstrap's.
    let body = wait_for(Duration::from_secs(20), "anti-entropy rounds", || {
        let body = scrape(bm)?;
        Ok(sample(&body, "swarmcast_anti_entropy_rounds_total")
            .filter(|v| *v > 0.0)
            .map(|_| body))
    })?;
    ensure!(
        sample(&body, "swarmcast_registry_entries{status=\"alive\"}").unwrap_or(0.0) >= 4.0,
        "{body}"
    );
    // Anti-entropy bytes both ways: a round is at least a Digest out and a Delta back, each a
    // 4-byte prefix and a msgpack map; and they keep rising with the rounds.
    let bytes = |body: &str, dir: &str| {
        sample(
            body,
            &format!("swarmcast_anti_entropy_bytes_total{{direction=\"{dir}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let rounds = sample(&body, "swarmcast_anti_entropy_rounds_total").unwrap_or(0.0);
    for dir in ["sent", "received"] {
        ensure!(
            bytes(&body, dir) >= 10.0 * rounds,
            "{dir}: {} bytes for {rounds} rounds\n{body}",
            bytes(&body, dir)
        );
    }
    let before = bytes(&body, "sent");
    wait_for(Duration::from_secs(10), "anti-entropy bytes rising", || {
        Ok((bytes(&scrape(bm)?, "sent") > before).then_some(()))
    })?;
    promtool(&body)?;
    Ok(())
}

#[test]
fn metrics_port_in_use_fails_naming_it() -> Result<()> {
    let _serial = serial();
    let c = Cluster::new()?;
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let node = c.issue("n1", "node")?;
    let boot = c.issue("b1", "bootstrap")?;
    for args in [
        vec![
            "node".to_owned(),
            "join".into(),
            "--identity".into(),
            node.to_string_lossy().into_owned(),
            "--seed".into(),
            free_addr().to_string(),
            "--data-dir".into(),
            c.data_dir("n1").to_string_lossy().into_owned(),
            "--metrics".into(),
            addr.clone(),
        ],
        vec![
            "bootstrap".to_owned(),
            "--identity".into(),
            boot.to_string_lossy().into_owned(),
            "--listen".into(),
            free_addr().to_string(),
            "--metrics".into(),
            addr.clone(),
        ],
    ] {
        let out = Command::new(bin())
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1),
            "{args:?}: {} {err}",
            out.status
        );
        ensure!(
            err.contains(&addr) && err.contains("metrics"),
            "{args:?}: {err}"
        );
    }
    Ok(())
}

/// The alert rules shipped in docs/deploy pass `promtool check rules`, and every metric they
/// name is one a daemon exports (so a renamed metric cannot leave a rule that never fires).
#[test]
fn shipped_alert_rules_pass_promtool_and_name_exported_metrics() -> Result<()> {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/deploy/swarmcast-alerts.yml"
    );
    let out = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .context("running promtool (Debian package prometheus; .ci/run installs it)")?;
    ensure!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(rules)?;
    let sources = [
        include_str!("../../node/src/metrics.rs"),
        include_str!("../../bootstrap/src/metrics.rs"),
        include_str!("../../metrics/src/lib.rs"),
    ]
    .concat();
    for name in text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("swarmcast_") && w.len() > "swarmcast_".len())
    {
        // Registered as `swarmcast` + name, with the unit and `_total` added by the encoder.
        let stem = name
            .trim_start_matches("swarmcast_")
            .trim_end_matches("_total")
            .trim_end_matches("_bytes")
            .trim_end_matches("_seconds");
        ensure!(
            sources.contains(&format!("\"{stem}\""))
                || sources.contains(&format!("\"swarmcast_{stem}\"")),
            "{name} in {rules} is not registered by any daemon"
        );
    }
    Ok(())
}

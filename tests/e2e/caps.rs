//! Bandwidth caps with real processes: `node join --max-upload` at the origin and
//! `--max-download` at a receiver each hold a transfer to at least 0.9 × F / cap (a lower bound
//! a slow machine cannot break); the copy is byte-identical; a zero or malformed rate exits 2.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use crate::bench_args::refused;
use crate::support::*;

/// 6 MiB at a cap of 2 MiB/s: at least 2.7 s.
const SIZE: usize = 6 << 20;
const CAP: &str = "2MiB/s";
const CAP_BYTES: f64 = (2u64 << 20) as f64;

/// A cluster of one bootstrap, the origin and one receiver, with `origin_flags` and
/// `receiver_flags` on their `node join`; sends SIZE bytes and returns the time until the
/// receiver has it, checked byte for byte.
fn capped_transfer(origin_flags: &[&str], receiver_flags: &[&str]) -> Result<Duration> {
    let mut c = Cluster::new()?;
    let b = free_addr();
    c.bootstrap("b1", b, &[])?;
    c.node("origin", &[b], origin_flags)?;
    c.node("r1", &[b], receiver_flags)?;
    wait_for(Duration::from_secs(30), "both nodes alive", || {
        let alive = names_with(&c.registry(b)?, Status::Alive);
        Ok(
            (alive.contains(&"origin".to_owned()) && alive.contains(&"r1".to_owned()))
                .then_some(()),
        )
    })?;
    let source = c.path("capped");
    write_file(&source.join("data.bin"), &pseudo_random(77, SIZE), 0o644)?;
    let started = Instant::now();
    let sent = c.send_json("origin", &source)?;
    let id = sent.id.clone();
    c.wait_done("r1", &id, Duration::from_secs(60), "the receiver completes")?;
    let took = started.elapsed();
    swarmcast_chaos::tree::verify(&source, &c.data_dir("r1").join("received").join("capped"))?;
    Ok(took)
}

#[test]
fn an_upload_cap_at_the_origin_holds_the_transfer_to_the_cap() -> Result<()> {
    let _serial = serial();
    let took = capped_transfer(&["--max-upload", CAP], &[])?;
    let floor = 0.9 * SIZE as f64 / CAP_BYTES;
    eprintln!("upload-capped transfer: {took:?} (floor {floor:.2} s)");
    ensure!(
        took.as_secs_f64() >= floor,
        "{SIZE} bytes went in {took:?} through a {CAP} upload cap (at least {floor:.2} s)"
    );
    Ok(())
}

#[test]
fn a_download_cap_at_a_receiver_holds_the_transfer_to_the_cap() -> Result<()> {
    let _serial = serial();
    let took = capped_transfer(&[], &["--max-download", CAP])?;
    let floor = 0.9 * SIZE as f64 / CAP_BYTES;
    eprintln!("download-capped transfer: {took:?} (floor {floor:.2} s)");
    ensure!(
        took.as_secs_f64() >= floor,
        "{SIZE} bytes went in {took:?} through a {CAP} download cap (at least {floor:.2} s)"
    );
    Ok(())
}

#[test]
fn a_zero_or_malformed_rate_is_a_usage_error() -> Result<()> {
    let join = |flag: &'static str, rate: &'static str| {
        vec![
            "node",
            "join",
            "--identity",
            "x",
            "--seed",
            "127.0.0.1:1",
            flag,
            rate,
        ]
    };
    refused(&join("--max-upload", "0"), "must be more than 0")?;
    refused(&join("--max-download", "0Mbit"), "must be more than 0")?;
    refused(&join("--max-upload", "fast"), "invalid rate")?;
    refused(&join("--max-download", "10 parsecs"), "invalid rate")?;
    Ok(())
}

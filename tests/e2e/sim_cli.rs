//! `swarmcast sim`: bad input exits 2 naming what is wrong; a small run's JSON says what the
//! run did.

use std::process::Command;

use anyhow::Result;

use crate::bench_args::refused;
use crate::support::bin;

#[test]
fn sim_refuses_bad_input() -> Result<()> {
    refused(
        &["sim", "--nodes", "20", "--kill", "21@1s"],
        "node 21 does not exist: the nodes are 0 (the origin) to 20",
    )?;
    refused(
        &["sim", "--nodes", "20", "--pause", "30@1s..2s"],
        "node 30 does not exist",
    )?;
    refused(
        &["sim", "--kill", "0@50%"],
        "node 0 is the origin, which the simulator does not fault",
    )?;
    refused(
        &["sim", "--nodes", "0"],
        "invalid value '0' for '--nodes <NODES>': must be at least 1",
    )?;
    refused(&["sim", "--size", "0"], "nothing to send: the size is 0")?;
    refused(
        &["sim", "--kill", "3@150%"],
        "percentage \"150%\" is not between 0% and 100%",
    )?;
    refused(&["sim", "--kill", "3"], "expected NODE@WHEN")?;
    refused(&["sim", "--pause", "3@1s"], "expected FROM..TO")?;
    refused(
        &["sim", "--chunk-size", "64KiB"],
        "chunk size 65536 B is below 262144 B",
    )?;
    refused(
        &["sim", "--rate-mbit", "0"],
        "upload must be a positive number of Mbit/s, not 0",
    )?;
    refused(&["sim", "--loss", "100"], "loss must be a fraction below 1")?;
    Ok(())
}

/// 12 receivers, 16 MiB at 1 Gbit/s, one killed at 40% and restarted at 0.3 s: everyone
/// completes no sooner than the bound, the origin sends at least one copy, the connections'
/// payload adds up to at least a copy per receiver, and the faults happened.
#[test]
fn sim_small_run_json() -> Result<()> {
    let out = Command::new(bin())
        .args([
            "sim",
            "--nodes",
            "12",
            "--size",
            "16MiB",
            "--rate-mbit",
            "1000",
            "--seed",
            "3",
            "--kill",
            "4@40%",
            "--restart",
            "4@0.3s",
            "--json",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ratio = j["t_over_t_star"].as_f64().unwrap();
    assert!(ratio >= 1.0, "T/T* = {ratio}: {j}");
    assert_eq!(j["incomplete"], 0, "{j}");
    let done = j["completion_s"].as_array().unwrap();
    assert_eq!(done.len(), 12);
    assert!(done.iter().all(|t| t.as_f64().is_some()), "{j}");
    let t = j["t_s"].as_f64().unwrap();
    assert_eq!(j["p100_s"].as_f64(), Some(t));
    assert!(j["origin_copies"].as_f64().unwrap() >= 1.0, "{j}");
    let bytes = j["bytes"].as_f64().unwrap();
    let sent: u64 = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bytes"].as_u64().unwrap())
        .sum();
    assert!(
        sent as f64 >= 12.0 * bytes * 0.999,
        "{sent} B for 12 x {bytes}"
    );
    let faults = j["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2);
    assert!(faults.iter().all(|f| f["at_s"].as_f64().is_some()), "{j}");
    let restarted = faults[1]["at_s"].as_f64().unwrap();
    assert!((restarted - 0.3).abs() < 1e-6, "{j}");
    assert!(
        done[3].as_f64().unwrap() > restarted,
        "node 4 completes after its restart: {j}"
    );
    Ok(())
}

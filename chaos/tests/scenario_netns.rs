//! Chaos scenarios in netns mode: every process in its own network namespace on a private
//! bridge, with shaped links and partitions.
//!
//! Needs root, `ip`, `tc` and `iptables`, and the debug binary (`cargo build -p swarmcast`).
//! Runs when `SWARMCAST_NETNS=1` (as CI does), and then fails rather than skips if the lab
//! cannot be built; without the variable each test is skipped with a note.

mod common;

use common::{SERIAL, exe, netns_wanted, small};
use swarmcast_chaos::scenario::{self, Mode};

/// Namespaces of labs this test process created (their names carry our PID).
fn our_namespaces() -> Vec<String> {
    let prefix = format!("swc{}x", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_and_every_copy_completes() {
    if !netns_wanted() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let s = small("partition", &[("size_mib = 48", "size_mib = 12")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let report = scenario::run(Mode::Netns, exe(), s, 1, Some(dir.path().to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.passed);
    let faults: Vec<&str> = report
        .timeline
        .iter()
        .filter(|e| e.kind == "fault")
        .map(|e| e.what.as_str())
        .collect();
    assert!(faults.iter().any(|f| f.contains("<-/->")), "{faults:?}");
    assert!(faults.iter().any(|f| f.contains("-/->")), "{faults:?}");
    assert_eq!(
        faults.iter().filter(|f| f.contains("healed")).count(),
        2,
        "{faults:?}"
    );
    // Eight nodes, every receiver complete.
    assert_eq!(report.completion_ms.len(), 8, "{:?}", report.completion_ms);
    assert!(dir.path().join("traffic.svg").exists());
    assert!(our_namespaces().is_empty(), "left: {:?}", our_namespaces());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_presets_run_in_the_lab_too_and_a_failed_run_still_cleans_up() {
    if !netns_wanted() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let s = small("origin-crash", &[("size_mib = 24", "size_mib = 8")]);
    let report = scenario::run(Mode::Netns, exe(), s, 2, None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.passed);
    assert!(report.replay.ends_with("--mode netns"), "{}", report.replay);
    assert!(our_namespaces().is_empty(), "left: {:?}", our_namespaces());

    // A check that must fail: verifying against another dataset.
    let text = r#"
name = "broken-netns"
[[steps]]
do = "link"
rate_mbit = 200
[[steps]]
do = "start"
bootstraps = 1
[[steps]]
do = "start"
nodes = 2
[[steps]]
do = "make_dir"
size_mib = 1
seed = 4
[[steps]]
do = "send"
from = "n1"
[[steps]]
do = "assert"
check = "copies"
source_seed = 5
"#;
    let s = scenario::Scenario::from_toml(text).expect("parses");
    let e = scenario::run(Mode::Netns, exe(), s, 9, None)
        .await
        .expect_err("another dataset");
    let msg = format!("{e:#}");
    assert!(msg.contains("n2's copy differs"), "{msg}");
    assert!(msg.contains("--seed 9 --mode netns"), "{msg}");
    assert!(our_namespaces().is_empty(), "left: {:?}", our_namespaces());
}

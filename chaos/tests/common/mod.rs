//! Helpers shared by the scenario tests.

#![allow(dead_code)]

use std::path::PathBuf;

use swarmcast_chaos::scenario::{self, Scenario};

/// Real runs share a loaded machine: one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The debug `swarmcast` binary, which must be built.
pub fn exe() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/swarmcast");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p swarmcast` before these tests",
        p.display()
    );
    p
}

/// A preset made small for a test: `replace` pairs applied to its TOML.
#[track_caller]
pub fn small(name: &str, replace: &[(&str, &str)]) -> Scenario {
    let mut text = scenario::preset(name)
        .unwrap_or_else(|| panic!("no preset {name}"))
        .to_owned();
    for (a, b) in replace {
        assert!(text.contains(a), "{name} has no `{a}`");
        text = text.replace(a, b);
    }
    Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

/// Whether the netns tests run: `SWARMCAST_NETNS=1` (root; CI sets it). They then fail rather
/// than skip if the lab cannot be built; without the variable they are skipped with a note.
pub fn netns_wanted() -> bool {
    if std::env::var("SWARMCAST_NETNS").is_ok_and(|v| v == "1") {
        return true;
    }
    eprintln!("netns test skipped: set SWARMCAST_NETNS=1 (root) to run it");
    false
}

//! `swarmcast chaos run` refuses what it cannot do, with a clear message and exit 1.

use std::process::Command;

use crate::support::bin;

fn run(args: &[&str], path: Option<&str>) -> (i32, String) {
    let mut c = Command::new(bin());
    c.args(args);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn netns_mode_without_its_tools_fails_clearly_instead_of_skipping() {
    // No `ip`, `tc` or `iptables` on PATH (and, when not root, not root either).
    let (code, err) = run(
        &["chaos", "run", "--preset", "partition", "--mode", "netns"],
        Some("/nonexistent"),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("netns mode needs"),
        "names what is missing: {err}"
    );
}

#[test]
fn a_netns_preset_in_process_mode_is_refused() {
    let (code, err) = run(&["chaos", "run", "--preset", "lossy"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--mode netns"), "{err}");
}

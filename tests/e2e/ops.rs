//! What an operator meets: private bootstrap data dirs, refused handshakes logged at the
//! bootstrap, certificate renewal and rotation.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::support::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A bootstrap (and a node) started under umask 000 keep their data dirs 0700 and their files
/// 0600, and a bootstrap tightens a data dir that was left open.
#[test]
fn bootstrap_data_dir_is_private_under_umask_000() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let (b1, b2) = (free_addr(), free_addr());
    // b2's data dir exists already, open to everyone.
    let open = c.data_dir("b2");
    std::fs::create_dir_all(&open)?;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
    c.bootstrap_umask("b1", b1, &[], "000")?;
    c.bootstrap_umask("b2", b2, &[b1], "000")?;
    c.node_umask("n1", &[b1], &[], "000")?;
    let files = |name: &str| {
        let d = c.data_dir(name);
        [d.join("registry.snapshot"), d.join("incarnation")]
    };
    let written = wait_for(
        Duration::from_secs(30),
        "snapshots written, n1 registered",
        || {
            let snapshots = ["b1", "b2"]
                .iter()
                .all(|b| files(b).iter().all(|f| f.exists()));
            Ok((snapshots && c.status("n1")?.registered).then_some(()))
        },
    );
    if written.is_err() {
        c.dump_logs();
    }
    written?;
    for b in ["b1", "b2"] {
        let d = c.data_dir(b);
        ensure!(mode(&d) == 0o700, "{b} data dir is {:o}", mode(&d));
        for f in files(b) {
            ensure!(mode(&f) == 0o600, "{} is {:o}", f.display(), mode(&f));
        }
    }
    let n1 = c.data_dir("n1");
    ensure!(mode(&n1) == 0o700, "n1 data dir is {:o}", mode(&n1));
    let inc = n1.join("incarnation");
    ensure!(mode(&inc) == 0o600, "n1 incarnation is {:o}", mode(&inc));
    Ok(())
}

//! `bench pair`, `bench files` and `bench registry` refuse bad arguments before starting anything: exit code 2
//! and a message naming what is wrong.

use std::process::Command;

use anyhow::Result;

use crate::support::bin;

#[track_caller]
pub(crate) fn refused(args: &[&str], says: &str) -> Result<()> {
    let out = Command::new(bin()).args(args).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: exit code; stderr: {stderr}"
    );
    assert!(
        stderr.contains(says),
        "{args:?}: stderr should say {says:?}: {stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    Ok(())
}

#[test]
fn bench_pair_and_files_refuse_bad_arguments() -> Result<()> {
    refused(
        &["bench", "pair", "--size", "0"],
        "invalid value '0' for '--size <SIZE>': must be more than 0 bytes",
    )?;
    refused(&["bench", "pair", "--size", "1parsec"], "unknown unit")?;
    refused(
        &["bench", "pair", "--runs", "0"],
        "'--runs <RUNS>': must be at least 1",
    )?;
    refused(
        &["bench", "pair", "--streams", "0"],
        "'--streams <STREAMS>': must be at least 1",
    )?;
    refused(
        &["bench", "pair", "--chunk-size", "1KiB"],
        "chunk size 1024 is outside 4096..=16777216 bytes",
    )?;
    refused(
        &["bench", "registry", "--nodes", "0"],
        "'--nodes <NODES>': must be at least 1",
    )?;
    refused(
        &["bench", "registry", "--bootstraps", "0"],
        "'--bootstraps <BOOTSTRAPS>': must be at least 1",
    )?;
    refused(
        &["bench", "files", "--files", "0"],
        "'--files <FILES>': must be at least 1",
    )?;
    refused(
        &["bench", "files", "--file-size", "0"],
        "'--file-size <FILE_SIZE>': must be more than 0 bytes",
    )?;
    refused(
        &["bench", "files", "--receivers", "0"],
        "'--receivers <RECEIVERS>': must be at least 1",
    )?;
    refused(
        &["bench", "files", "--runs=-1"],
        "invalid value '-1' for '--runs <RUNS>': invalid count",
    )?;
    refused(
        &["bench", "files", "--files", "2000000"],
        "2000000 files is more than a broadcast holds (1000000)",
    )?;
    refused(
        &[
            "bench",
            "files",
            "--files",
            "18446744073709551615",
            "--file-size",
            "4KiB",
        ],
        "does not fit in 64 bits",
    )?;
    Ok(())
}

//! `swarmcast node send`: publish through the local daemon, then optionally follow the fleet.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use swarmcast_node::control::{self, FleetOutcome, FleetProgress};
use swarmcast_node::manifest::ManifestLimits;

use crate::cli::{AudienceMember, SendArgs};
use crate::output::human_bytes;

pub fn run(args: SendArgs) -> Result<()> {
    // Checked here, before the daemon is asked: a bad value is a usage error (exit 2).
    if let Err(e) = ManifestLimits::default().check_chunk_size(args.chunk_size) {
        super::usage_error(&["node", "send"], format!("--chunk-size: {e}"));
    }
    let meta = std::fs::metadata(&args.dir)
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let rt = super::runtime()?;
    let data_dir = args.data.data_dir.clone();
    let audience = (!args.to.is_empty()).then(|| {
        let mut a = swarmcast_proto::Audience::default();
        for m in &args.to {
            match m {
                AudienceMember::Node(n) => a.names.push(n.clone()),
                AudienceMember::Group(g) => a.groups.push(g.clone()),
            }
        }
        a.canonical()
    });
    let info = rt.block_on(control::send_as(
        &data_dir,
        dir,
        args.chunk_size,
        args.rehash,
        control::SendMeta {
            audience,
            priority: args.priority.into(),
        },
    ))?;
    for w in &info.warnings {
        eprintln!("warning: {w}");
    }
    if !args.json {
        outln!(
            "broadcast {} ({}: {}, {}, {} of {})",
            info.id,
            info.name,
            plural(info.files, "file"),
            human_bytes(info.bytes),
            plural(info.chunks, "chunk"),
            human_bytes(u64::from(info.chunk_size))
        )?;
    }
    if !args.wait {
        if args.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "broadcast": info }))?
            )?;
        }
        return Ok(());
    }
    let started = Instant::now();
    let bar = wait_bar(info.bytes.max(1), args.json);
    let mut last: Option<FleetProgress>;
    let mut last_bytes = (Instant::now(), 0u64);
    let mut rate = 0.0f64;
    let outcome = loop {
        let fleet = rt.block_on(control::fleet(&data_dir, &info.id))?;
        let held_bytes = if fleet.chunks > 0 {
            (fleet.chunks_held as f64 / fleet.chunks as f64 * info.bytes as f64) as u64
        } else {
            0
        };
        let dt = last_bytes.0.elapsed().as_secs_f64();
        if dt >= 1.0 {
            rate = held_bytes.saturating_sub(last_bytes.1) as f64 / dt;
            last_bytes = (Instant::now(), held_bytes);
        }
        if let Some(b) = &bar {
            let total = info.bytes.max(1) * fleet.nodes_alive.max(1);
            b.set_length(total);
            b.set_position(held_bytes.min(total));
            b.set_message(format!(
                "{}/{} nodes complete, {} of {}, {}/s",
                fleet.nodes_complete,
                fleet.nodes_alive,
                human_bytes(held_bytes),
                human_bytes(total),
                human_bytes(rate as u64)
            ));
        }
        let outcome = fleet.outcome();
        last = Some(fleet);
        match outcome {
            FleetOutcome::Pending => {}
            FleetOutcome::Complete => break Ok(()),
            FleetOutcome::BroadcastFailed(f) => break Err(format!("broadcast failed: {f}")),
            // Every node either holds it or will not: waiting longer changes nothing.
            FleetOutcome::NodesFailed(n) => break Err(format!("{n} node(s) failed the broadcast")),
        }
        if args.timeout.is_some_and(|t| started.elapsed() >= t) {
            break Err(format!(
                "timed out after {:?}",
                args.timeout.unwrap_or_default()
            ));
        }
        // Each poll of an unsettled broadcast also asks the daemon for a fresh registry view
        // (membership's core nudges a heartbeat, at most one per 50 ms), so --wait returns within about a poll of the
        // last completion: every 25 ms for the first 3 s (a small broadcast is done by then),
        // every 100 ms after.
        std::thread::sleep(wait_poll(started));
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let fleet = last.context("no progress was read")?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "broadcast": info,
                "complete": outcome.is_ok(),
                "error": outcome.as_ref().err(),
                "elapsed_s": elapsed.as_secs_f64(),
                "fleet": fleet,
            }))?
        )?;
    } else {
        outln!(
            "{}: {}/{} nodes complete in {:.1}s",
            if outcome.is_ok() {
                "complete"
            } else {
                "incomplete"
            },
            fleet.nodes_complete,
            fleet.nodes_alive,
            elapsed.as_secs_f64()
        )?;
        for (name, reason) in &fleet.nodes_failed {
            outln!("  {name}: failed: {reason}")?;
        }
        for (name, held) in &fleet.nodes {
            let failed = fleet.nodes_failed.iter().any(|(n, _)| n == name);
            if *held < fleet.chunks && !failed {
                outln!("  {name}: {held}/{} chunks", fleet.chunks)?;
            }
        }
    }
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => bail!("{e}"),
    }
}

/// "1 file", "2 files".
/// The progress bar of a `--wait` (`len` units), on a terminal and without `--json` only.
pub(crate) fn wait_bar(len: u64, json: bool) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || json {
        return None;
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Some(b)
}

/// How long a `--wait` sleeps between polls: 25 ms for the first 3 s (a small broadcast is done
/// by then), 100 ms after.
pub(crate) fn wait_poll(started: Instant) -> Duration {
    if started.elapsed() < Duration::from_secs(3) {
        Duration::from_millis(25)
    } else {
        Duration::from_millis(100)
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn one_file_many_files() {
        assert_eq!(plural(1, "file"), "1 file");
        assert_eq!(plural(0, "file"), "0 files");
        assert_eq!(plural(2, "chunk"), "2 chunks");
    }
}

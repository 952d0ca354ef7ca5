//! `swarmcast node fetch`: ask the local daemon for one broadcast, then optionally follow it
//! here until it is complete and verified.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use swarmcast_node::control;
use swarmcast_node::data::BroadcastInfo;
use swarmcast_node::listing::BroadcastPhase;

use crate::cli::FetchArgs;
use crate::output::human_bytes;

/// Where the fetched broadcast stands in this node's `node ls`.
enum Standing {
    /// Not listed yet (its manifest is on the way), or still receiving.
    Pending,
    /// Complete and shown by received/<name> (or held as its origin).
    Done,
    /// It will not complete here: why.
    Failed(String),
}

/// The fetch's standing from a `node ls` listing (sorted by name, each name newest first).
fn standing<'a>(list: &'a [BroadcastInfo], id: &str) -> (Standing, Option<&'a BroadcastInfo>) {
    let Some(info) = list.iter().find(|b| b.id == id) else {
        return (Standing::Pending, None);
    };
    // received/<name> shows it, or a newer version of the name completed since.
    let shown = info.current
        || list
            .iter()
            .any(|b| b.name == info.name && b.current && b.seq > info.seq);
    let s = match info.state {
        BroadcastPhase::Seeding => Standing::Done,
        BroadcastPhase::Complete if shown => Standing::Done,
        BroadcastPhase::Complete | BroadcastPhase::Receiving => Standing::Pending,
        BroadcastPhase::Failed | BroadcastPhase::Superseded | BroadcastPhase::Cancelled => {
            Standing::Failed(
                info.error
                    .clone()
                    .unwrap_or_else(|| info.state.as_str().to_owned()),
            )
        }
    };
    (s, Some(info))
}

pub fn run(args: FetchArgs) -> Result<()> {
    let rt = super::runtime()?;
    let data_dir = args.data.data_dir.clone();
    let ids = rt
        .block_on(control::fetch(&data_dir, &args.target))
        .with_context(|| format!("node fetch {}", args.target))?;
    let id = ids
        .first()
        .context("the daemon named no broadcast")?
        .clone();
    if !args.wait {
        if args.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "broadcast": id }))?
            )?;
        } else {
            if args.target == id {
                outln!("fetching {id}")?;
            } else {
                outln!("fetching {id} ({})", args.target)?;
            }
        }
        return Ok(());
    }
    let started = Instant::now();
    let bar = super::send::wait_bar(1, args.json);
    if let Some(b) = &bar {
        b.set_message("asking for the manifest");
    }
    let (outcome, last) = loop {
        let list = rt.block_on(control::list(&data_dir))?;
        let (s, info) = standing(&list, &id);
        if let (Some(b), Some(i)) = (&bar, info) {
            b.set_length(i.bytes_total.max(1));
            b.set_position(i.bytes_held.min(i.bytes_total));
            b.set_message(format!(
                "{}: {} of {}, {}/{} chunks",
                i.name,
                human_bytes(i.bytes_held),
                human_bytes(i.bytes_total),
                i.chunks_held,
                i.chunks_total
            ));
        }
        let info = info.cloned();
        match s {
            Standing::Done => break (Ok(()), info),
            Standing::Failed(why) => break (Err(why), info),
            Standing::Pending => {}
        }
        if let Some(t) = args.timeout.filter(|t| started.elapsed() >= *t) {
            break (Err(format!("timed out after {t:?}")), info);
        }
        std::thread::sleep(super::send::wait_poll(started));
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "broadcast": id,
                "complete": outcome.is_ok(),
                "error": outcome.as_ref().err(),
                "elapsed_s": elapsed.as_secs_f64(),
                "info": last,
            }))?
        )?;
    } else if let (Ok(()), Some(i)) = (&outcome, &last) {
        outln!(
            "complete: {} {} ({}) in {:.1}s at {}",
            i.name,
            id,
            human_bytes(i.bytes_total),
            elapsed.as_secs_f64(),
            i.path.as_deref().unwrap_or("?")
        )?;
    }
    match outcome {
        Ok(()) => Ok(()),
        Err(e) => bail!("node fetch {}: {e}", args.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, seq: u64, state: BroadcastPhase, current: bool) -> BroadcastInfo {
        BroadcastInfo {
            id: id.into(),
            name: "ds".into(),
            state,
            seq,
            published_ms: 0,
            current,
            chunks_held: 0,
            chunks_total: 1,
            bytes_held: 0,
            bytes_total: 1,
            path: None,
            error: None,
            fetched_bytes: 0,
            resumed_chunks: 0,
            uploaded_bytes: 0,
            audience: None,
            priority: swarmcast_proto::Priority::Normal,
        }
    }

    #[test]
    fn done_only_once_received_shows_it_or_a_newer_version() {
        use BroadcastPhase::*;
        let pending = |l: &[BroadcastInfo]| matches!(standing(l, "a").0, Standing::Pending);
        let done = |l: &[BroadcastInfo]| matches!(standing(l, "a").0, Standing::Done);
        assert!(pending(&[]), "not listed yet: its manifest is on the way");
        assert!(pending(&[info("a", 1, Receiving, false)]));
        assert!(pending(&[info("a", 1, Complete, false)]), "not shown yet");
        assert!(done(&[info("a", 1, Complete, true)]));
        assert!(done(&[
            info("b", 2, Complete, true),
            info("a", 1, Complete, false)
        ]));
        assert!(pending(&[
            info("b", 0, Complete, true),
            info("a", 1, Complete, false)
        ]));
        assert!(matches!(
            standing(&[info("a", 1, Superseded, false)], "a").0,
            Standing::Failed(w) if w == "superseded"
        ));
    }
}

//! `swarmcast node join | ls | status` (`node send` is in [`super::send`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use swarmcast_node::neighbours::NeighbourConfig;
use swarmcast_node::{JoinError, NodeConfig, NodeError, Strategy};

use super::{load_identity, runtime, shutdown_signal, usage_error};
use crate::cli::{JoinArgs, StrategyArg};
use crate::output;

/// `node join`: the daemon, in the foreground.
pub(crate) fn join(args: JoinArgs) -> Result<()> {
    let neighbours = match NeighbourConfig::try_with_target(args.neighbours) {
        Ok(n) => n,
        Err(e) => usage_error(&["node", "join"], format!("--neighbours: {e}")),
    };
    let identity = load_identity(&args.identity)?;
    let mut config = NodeConfig::new(args.seeds, args.data.data_dir);
    config.listen = args.listen;
    config.advertise = args.advertise;
    config.heartbeat = args.heartbeat;
    config.join_timeout = args.join_timeout;
    config.neighbours = neighbours;
    config.control_group = args.control_group;
    config.metrics = args.metrics;
    config.keep = args.keep;
    config.max_disk = args.max_disk;
    config.strategy = match args.strategy {
        StrategyArg::Swarm => Strategy::Swarm,
        StrategyArg::OriginOnly => Strategy::OriginOnly,
    };
    // Test-only fault switches, read from the environment so they never show in --help.
    config.fault_corrupt = std::env::var("SWARMCAST_FAULT_CORRUPT").is_ok_and(|v| v == "1");
    config.fault_serve_delay = std::env::var("SWARMCAST_FAULT_SERVE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let result = runtime()?.block_on(swarmcast_node::run(identity, config, shutdown_signal()));
    // A join that timed out because the handshakes were refused says so first.
    let hint = match &result {
        Err(NodeError::Join(JoinError::Timeout { last_errors, .. })) => {
            last_errors.iter().find_map(|(seed, e)| {
                refused_handshake(e).map(|why| {
                    format!(
                        "the TLS handshake with seed {seed} was refused ({why}): this node's \
                         certificate and the seed's were issued by different CAs; issue both \
                         from the same `certs init`"
                    )
                })
            })
        }
        _ => None,
    };
    match hint {
        Some(h) => result.context(h)?,
        None => result?,
    }
    Ok(())
}

/// The TLS alert or verifier error in `error` if it says the peer's certificate was not issued
/// by a trusted CA (on this side: `UnknownIssuer`; on the other side's: `UnknownCA`).
fn refused_handshake(error: &str) -> Option<&'static str> {
    ["UnknownIssuer", "UnknownCA", "BadCertificate"]
        .into_iter()
        .find(|w| error.contains(w))
}

/// `node rm`: what was removed, one id per line; exit 1 naming what is unknown.
pub(crate) fn rm(data_dir: &Path, target: &str) -> Result<()> {
    let ids = runtime()?
        .block_on(swarmcast_node::control::remove(data_dir, target))
        .with_context(|| format!("node rm {target}"))?;
    for id in ids {
        println!("removed {id}");
    }
    Ok(())
}

/// `node cancel`: what was cancelled; exit 1 if this node is not its origin or knows nothing
/// of it.
pub(crate) fn cancel(data_dir: &Path, target: &str) -> Result<()> {
    let ids = runtime()?
        .block_on(swarmcast_node::control::cancel(data_dir, target))
        .with_context(|| format!("node cancel {target}"))?;
    for id in ids {
        println!("cancelled {id}");
    }
    Ok(())
}

/// `node ls`.
pub(crate) fn ls(data_dir: &Path, json: bool) -> Result<()> {
    let list = runtime()?.block_on(swarmcast_node::control::list(data_dir))?;
    output::broadcasts(&list, json)
}

/// `node status`.
pub(crate) fn status(data_dir: &Path, json: bool) -> Result<()> {
    let status = runtime()?.block_on(swarmcast_node::control::status(data_dir))?;
    output::node_status(&status, json)
}

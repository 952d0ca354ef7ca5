//! `swarmcast node join | ls | status` (`node send` is in [`super::send`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use swarmcast_node::neighbours::NeighbourConfig;
use swarmcast_node::{NodeConfig, Strategy};

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
    runtime()?.block_on(swarmcast_node::run(identity, config, shutdown_signal()))?;
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

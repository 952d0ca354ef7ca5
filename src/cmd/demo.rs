//! `swarmcast demo`: the built-in default run.

use anyhow::Result;
use swarmcast_chaos::demo::{self, DemoConfig};

use super::{current_exe, runtime, until_signal};
use crate::cli::DemoArgs;

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let config = DemoConfig {
        size: args.size,
        nodes: args.nodes,
        bootstraps: args.bootstraps,
        keep: args.keep,
        ..Default::default()
    };
    until_signal(&runtime()?, demo::run(current_exe()?, config)).map(|_| ())
}

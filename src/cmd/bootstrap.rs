//! `swarmcast bootstrap`: a registry server in the foreground.

use anyhow::Result;
use swarmcast_bootstrap::{BootstrapConfig, RegistryConfig, RegistryConfigError};

use super::{identity_reload, load_live_identity, runtime, shutdown_signal, usage_error};
use crate::cli::BootstrapArgs;

pub(crate) fn run(args: BootstrapArgs) -> Result<()> {
    let registry = match RegistryConfig::new(args.suspect_after, args.dead_after, args.gc_after) {
        Ok(r) => r,
        Err(RegistryConfigError::DeadBeforeSuspect { .. }) => usage_error(
            &["bootstrap"],
            "--dead-after must be longer than --suspect-after",
        ),
        Err(e) => usage_error(&["bootstrap"], e),
    };
    let identity = load_live_identity(&args.identity)?;
    let mut config = BootstrapConfig::new(args.listen);
    config.peers = args.peers;
    config.data_dir = args.data_dir;
    config.metrics = args.metrics;
    config.anti_entropy_interval = args.anti_entropy;
    config.registry = registry;
    config.identity_reload = identity_reload();
    runtime()?.block_on(swarmcast_bootstrap::run(
        identity,
        config,
        shutdown_signal(),
    ))?;
    Ok(())
}

//! `swarmcast registry`: one bootstrap's view of the registry.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{load_identity, runtime};
use crate::cli::RegistryArgs;
use crate::output;

pub(crate) fn run(args: RegistryArgs) -> Result<()> {
    let identity = load_identity(&args.identity)?;
    let (peer, view) = runtime()?.block_on(async {
        let transport = swarmcast_net::transport_config();
        let client_config = identity.client_config(transport)?;
        // Loopback seeds are dialled from loopback; others from any local address.
        let local = match args.seed.ip() {
            ip if ip.is_loopback() => SocketAddr::new(ip, 0),
            IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let endpoint = quinn::Endpoint::client(local).context("opening a UDP socket")?;
        let client = swarmcast_bootstrap::BootstrapClient::connect(
            &endpoint,
            &client_config,
            args.seed,
            Duration::from_secs(5),
        )
        .await
        .with_context(|| format!("connecting to {}", args.seed))?;
        let view = client.lookup().await.context("registry lookup")?;
        let peer = client.peer().clone();
        client.close();
        endpoint.wait_idle().await;
        anyhow::Ok((peer, view))
    })?;
    output::registry(args.seed, &peer, &view, args.json)
}

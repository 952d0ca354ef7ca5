//! `swarmcast node join | ls | status` (`node send` is in [`super::send`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use swarmcast_node::neighbours::NeighbourConfig;
use swarmcast_node::{NodeConfig, NodeError, Strategy};

use super::{identity_reload, load_live_identity, runtime, shutdown_signal, usage_error};
use crate::cli::{CongestionArg, JoinArgs, StrategyArg};
use crate::output;

/// `node join`: the daemon, in the foreground.
pub(crate) fn join(args: JoinArgs) -> Result<()> {
    let neighbours = match NeighbourConfig::try_with_target(args.neighbours) {
        Ok(n) => n,
        Err(e) => usage_error(&["node", "join"], format!("--neighbours: {e}")),
    };
    let identity = load_live_identity(&args.identity)?;
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
    config.pull = args.pull;
    config.max_upload = args.max_upload;
    config.max_download = args.max_download;
    config.congestion = match args.congestion {
        CongestionArg::Cubic => swarmcast_net::Congestion::Cubic,
        CongestionArg::NewReno => swarmcast_net::Congestion::NewReno,
        CongestionArg::Bbr => swarmcast_net::Congestion::Bbr,
    };
    config.identity_reload = identity_reload();
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
    config.fault_hash_delay = std::env::var("SWARMCAST_FAULT_HASH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let result = runtime()?.block_on(swarmcast_node::run(identity, config, shutdown_signal()));
    // A join that timed out because the handshakes were refused says so first.
    match result.as_ref().err().and_then(refused_certificate_hint) {
        Some(h) => result.context(h)?,
        None => result?,
    }
    Ok(())
}

/// The hint for a join that timed out because a seed's handshake refused a certificate: as
/// not issued by a trusted CA (the two certificates come from different `certs init`), or as
/// expired (this node's, or the seed's). Read from the error's type
/// ([`JoinError::cert_refusal`](swarmcast_node::JoinError::cert_refusal)), not from its text.
fn refused_certificate_hint(error: &NodeError) -> Option<String> {
    let NodeError::Join(join) = error else {
        return None;
    };
    let (seed, refusal) = join.cert_refusal()?;
    let why = if refusal.is_untrusted_issuer() {
        "this node's certificate and the seed's were issued by different CAs; issue both from \
         the same `certs init`"
    } else if refusal.is_expired() && refusal.by == swarmcast_net::RefusedBy::Peer {
        "this node's certificate has expired (or is not valid yet); renew it with \
         `swarmcast certs renew`"
    } else if refusal.is_expired() {
        "the seed's certificate has expired (or is not valid yet); renew it with \
         `swarmcast certs renew`"
    } else {
        return None;
    };
    Some(format!(
        "the TLS handshake with seed {seed} was refused ({refusal}): {why}"
    ))
}

/// `node rm`: what was removed, one id per line; exit 1 naming what is unknown.
pub(crate) fn rm(data_dir: &Path, target: &str) -> Result<()> {
    let ids = runtime()?
        .block_on(swarmcast_node::control::remove(data_dir, target))
        .with_context(|| format!("node rm {target}"))?;
    for id in ids {
        outln!("removed {id}")?;
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
        outln!("cancelled {id}")?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::SocketAddr;
    use std::sync::Arc;

    use swarmcast_bootstrap::ClientError;
    use swarmcast_net::WireError;
    use swarmcast_node::{JoinError, SeedError};

    use super::*;

    /// A seed whose handshake this side refused with `alert`, the verifier's words left out.
    fn refused(alert: u8) -> SeedError {
        let e = quinn::ConnectionError::TransportError(quinn_proto::TransportError {
            code: quinn::TransportErrorCode::crypto(alert),
            frame: None,
            reason: String::new(),
        });
        SeedError::Connect(Arc::new(ClientError::Wire(WireError::Connection(e))))
    }

    fn timed_out(last_errors: Vec<(SocketAddr, SeedError)>) -> NodeError {
        NodeError::Join(JoinError::Timeout {
            after: Duration::from_secs(3),
            last_errors,
        })
    }

    #[test]
    fn the_refused_certificate_hint_comes_from_the_error_type() {
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let timeout = SeedError::Connect(Arc::new(ClientError::Wire(WireError::Timeout(
            Duration::from_secs(1),
        ))));
        // unknown_ca (48) at the second seed: the hint names it, though no text says
        // "UnknownIssuer".
        let hint =
            refused_certificate_hint(&timed_out(vec![(a, timeout.clone()), (b, refused(48))]))
                .expect("a hint");
        assert!(
            hint.starts_with(&format!("the TLS handshake with seed {b} was refused (")),
            "{hint}"
        );
        assert!(
            hint.contains("UnknownCA") && hint.contains("different CAs"),
            "{hint}"
        );
        // An expired certificate is no sign of another CA: the hint says which expired (here
        // this side refused the seed's).
        let hint = refused_certificate_hint(&timed_out(vec![(a, refused(45))])).expect("a hint");
        assert!(
            hint.contains("CertificateExpired")
                && hint.contains("the seed's certificate has expired"),
            "{hint}"
        );
        assert!(!hint.contains("different CAs"), "{hint}");
        // Text that merely mentions the alert is not read.
        let text = SeedError::Register(Arc::new(ClientError::Wire(WireError::Refused {
            code: swarmcast_proto::ErrorCode::Forbidden,
            message: "invalid peer certificate: UnknownIssuer".into(),
        })));
        assert_eq!(
            refused_certificate_hint(&timed_out(vec![(a, text), (b, timeout)])),
            None
        );
        assert_eq!(refused_certificate_hint(&NodeError::NoSeeds), None);
    }
}

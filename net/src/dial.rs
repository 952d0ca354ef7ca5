//! Dialling a peer by address.

use std::net::SocketAddr;
use std::time::Duration;

use swarmcast_certs::{CertError, PeerInfo, SERVER_NAME};

use crate::refusal::CertRefusal;
use crate::wire::WireError;

/// Errors of [`connect`]. Exhaustive, so that callers can map it onto their own error types.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Transport failure, or no handshake in time.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer's certificate could not be read.
    #[error("peer certificate: {0}")]
    Cert(#[from] CertError),
}

impl DialError {
    /// The certificate refusal that made the handshake fail, if that is what happened.
    pub fn cert_refusal(&self) -> Option<CertRefusal> {
        match self {
            Self::Wire(e) => e.cert_refusal(),
            Self::Cert(_) => None,
        }
    }
}

/// Dial `addr` and return the connection with the peer's certificate identity.
///
/// Peers are dialled by address: [`SERVER_NAME`] goes in SNI, and the certificate is checked
/// against the cluster CA by `config`. The caller checks the identity it expected.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(quinn::Connection, PeerInfo), DialError> {
    let attempt = async {
        let connecting = endpoint
            .connect_with(config.clone(), addr, SERVER_NAME)
            .map_err(WireError::from)?;
        let conn = connecting.await.map_err(WireError::from)?;
        let peer = swarmcast_certs::peer_info(&conn)?;
        Ok::<_, DialError>((conn, peer))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| WireError::Timeout(timeout))?
}

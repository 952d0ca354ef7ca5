//! Mutual-TLS configurations for quinn.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use swarmcast_proto::ALPN;

use crate::{CertError, Identity};

/// A server name to dial with when the peer's name is unknown.
///
/// quinn needs one for SNI, but [`Identity::client_config`] does not match it against the
/// server's certificate, so any syntactically valid name works.
pub const SERVER_NAME: &str = "swarmcast";

/// The one crypto provider of this crate: *ring*.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs *ring* as the process-wide default rustls provider, unless one is installed.
///
/// This crate's configurations do not need it (they name their provider); a binary calls it
/// once at start-up so that any other rustls user in the process finds the same provider.
pub fn install_crypto_provider() {
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        tracing::debug!("a rustls crypto provider was already installed");
    }
}

impl Identity {
    /// A quinn server configuration that presents this identity and requires every client to
    /// present a certificate chaining to the cluster CA (valid now, with extended key usage
    /// clientAuth). TLS 1.3 only, ALPN `swarmcast/1`, no session resumption.
    pub fn server_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, CertError> {
        let provider = provider();
        let verifier = self.client_verifier()?;
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert_der().clone()], self.key_der())?;
        quic_server(tls, transport)
    }

    /// A quinn client configuration that presents this identity and accepts only servers whose
    /// certificate chains to the cluster CA (valid now, with extended key usage serverAuth).
    /// TLS 1.3 only, ALPN `swarmcast/1`, no session resumption.
    ///
    /// Peers are dialled by address, so the server's name is *not* required to match the name
    /// passed to `connect` (use the peer's name or [`SERVER_NAME`]); read the verified name
    /// and role with [`crate::peer_info`] instead.
    pub fn client_config(
        &self,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig, CertError> {
        let provider = provider();
        let verifier = self.server_verifier()?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert_der().clone()], self.key_der())?;
        quic_client(tls, transport)
    }

    /// Verifies clients against [`Identity::roots`] (chain, validity, clientAuth).
    pub(crate) fn client_verifier(
        &self,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertError> {
        Ok(WebPkiClientVerifier::builder_with_provider(self.roots()?, provider()).build()?)
    }

    /// Verifies servers against [`Identity::roots`], not their names.
    pub(crate) fn server_verifier(&self) -> Result<Arc<ClusterServerVerifier>, CertError> {
        Ok(Arc::new(ClusterServerVerifier {
            inner: WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
                .build()?,
        }))
    }

    /// The cluster CA (every CA of a bundle) as the only trust anchors.
    pub(crate) fn roots(&self) -> Result<Arc<RootCertStore>, CertError> {
        let mut roots = RootCertStore::empty();
        for ca in self.cas() {
            roots.add(ca.clone())?;
        }
        Ok(Arc::new(roots))
    }
}

/// Verifies a server's chain against the cluster CA like [`WebPkiServerVerifier`], except
/// that the server's name need not match the name dialled.
///
/// This relies on `WebPkiServerVerifier::verify_server_cert` checking the chain, validity
/// period and extended key usage before the name, so that a name error implies everything
/// else passed. The tests `foreign_ca_leaf_is_rejected_as_server` and
/// `expired_leaf_is_rejected_as_server` dial with a name the server's certificate does not
/// hold, and would fail if that order changed.
#[derive(Debug)]
pub(crate) struct ClusterServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A quinn server configuration from `tls`: ALPN `swarmcast/1` and no resumption (every
/// connection verifies the peer's certificate afresh, against the clock too; connections are
/// long-lived, so full handshakes cost little). Shared by fixed and live identities.
pub(crate) fn quic_server(
    mut tls: rustls::ServerConfig,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, CertError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

/// A quinn client configuration from `tls`: ALPN `swarmcast/1`, no resumption.
pub(crate) fn quic_client(
    mut tls: rustls::ClientConfig,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ClientConfig, CertError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(transport);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCluster;
    use crate::{Role, Validity, issue_with};

    fn verifier(identity: &Identity) -> ClusterServerVerifier {
        ClusterServerVerifier {
            inner: WebPkiServerVerifier::builder_with_provider(
                identity.roots().expect("roots"),
                provider(),
            )
            .build()
            .expect("verifier"),
        }
    }

    #[track_caller]
    fn verify(verifier: &ClusterServerVerifier, leaf: &Identity) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("not-the-server").expect("name");
        verifier
            .verify_server_cert(leaf.cert_der(), &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn server_name_is_not_matched_but_everything_else_is() {
        let cluster = TestCluster::new();
        let client = cluster.issue("client", Role::Node);
        let verifier = verifier(&client);

        assert_eq!(
            verify(&verifier, &cluster.issue("server", Role::Bootstrap)),
            Ok(())
        );

        let foreign = TestCluster::new().issue("server", Role::Bootstrap);
        assert_eq!(
            verify(&verifier, &foreign),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        );

        let past = time::OffsetDateTime::now_utc() - time::Duration::days(10);
        let validity = Validity {
            not_before: past,
            not_after: past + time::Duration::days(1),
        };
        let expired = issue_with(cluster.ca(), "server", Role::Bootstrap, validity)
            .and_then(|issued| issued.identity())
            .expect("expired identity");
        assert!(matches!(
            verify(&verifier, &expired),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. } | CertificateError::Expired
            ))
        ));
    }

    #[test]
    fn installing_the_provider_twice_is_fine() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}

//! An identity that a running daemon can reload: renewed certificates and changed trust
//! bundles take effect for new connections without a restart.
//!
//! The quinn configurations built here ([`LiveIdentity::server_config`],
//! [`LiveIdentity::client_config`]) never hold a certificate or a trust store themselves:
//! rustls asks a resolver for the certificate to present and a verifier for the peer's at every
//! handshake, and both read the identity currently loaded. [`LiveIdentity::reload`] re-reads
//! the directory and swaps it in, if it is the same identity (same key, so the same NodeId,
//! same name and role). Established connections keep the certificates of their handshake;
//! TLS checks a certificate only then.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::tls::{ClusterServerVerifier, provider};

use crate::{CertError, Identity};

/// What [`LiveIdentity::reload`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The files are as loaded.
    Unchanged,
    /// A new certificate or trust bundle is in use from now on.
    Reloaded {
        /// The certificate's notAfter before, in Unix seconds.
        previous_not_after: i64,
        /// And now.
        not_after: i64,
        /// How many CAs are trusted now.
        cas: usize,
    },
}

/// One loaded state: the identity and what rustls needs of it.
struct Loaded {
    identity: Identity,
    /// The files as read (the key among them), to tell whether they changed.
    texts: [String; 3],
    certified: Arc<CertifiedKey>,
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<ClusterServerVerifier>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the texts: one of them is the private key.
        f.debug_struct("Loaded")
            .field("identity", &self.identity)
            .field("not_after", &self.identity.not_after_unix())
            .field("cas", &self.identity.cas().len())
            .finish_non_exhaustive()
    }
}

impl Loaded {
    fn new(identity: Identity, texts: [String; 3]) -> Result<Self, CertError> {
        let key = provider()
            .key_provider
            .load_private_key(identity.key_der())?;
        let certified = Arc::new(CertifiedKey::new(vec![identity.cert_der().clone()], key));
        Ok(Self {
            clients: identity.client_verifier()?,
            servers: identity.server_verifier()?,
            identity,
            texts,
            certified,
        })
    }
}

/// How long before its certificate expires a daemon starts warning: 30 days.
pub const EXPIRY_WARNING: i64 = 30 * 24 * 3600;

/// Whether a certificate whose notAfter is `not_after` (Unix seconds) is to be warned about at
/// `now`: `Some(seconds left)` (negative once expired) within [`EXPIRY_WARNING`] of it.
pub fn expiry_warning(not_after: i64, now: i64) -> Option<i64> {
    let left = not_after.saturating_sub(now);
    (left <= EXPIRY_WARNING).then_some(left)
}

/// An identity directory, loaded, and reloadable; see the module docs.
#[derive(Debug)]
pub struct LiveIdentity {
    /// `None`: held in memory only ([`LiveIdentity::fixed`]), never reloaded.
    dir: Option<PathBuf>,
    current: RwLock<Arc<Loaded>>,
}

impl LiveIdentity {
    /// An identity that is not backed by files (tests, in-process daemons): [`Self::reload`]
    /// always finds it unchanged.
    pub fn fixed(identity: Identity) -> Result<Arc<Self>, CertError> {
        Ok(Arc::new(Self {
            dir: None,
            current: RwLock::new(Arc::new(Loaded::new(identity, Default::default())?)),
        }))
    }

    /// Loads `dir` as [`Identity::load`] does.
    pub fn load(dir: &Path) -> Result<Arc<Self>, CertError> {
        let texts = Identity::read_texts(dir)?;
        let identity = Identity::from_texts(dir, &texts)?;
        Ok(Arc::new(Self {
            dir: Some(dir.to_owned()),
            current: RwLock::new(Arc::new(Loaded::new(identity, texts)?)),
        }))
    }

    /// The directory it was loaded from (`None` for [`Self::fixed`]).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn loaded(&self) -> Arc<Loaded> {
        // Only `reload` writes, with a value built before the lock is taken; a poisoned lock
        // still holds a whole value.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The identity in use now.
    pub fn identity(&self) -> Identity {
        self.loaded().identity.clone()
    }

    /// Re-read the directory. Unchanged files change nothing; a new certificate or bundle for
    /// the same identity is swapped in; one for another identity (another key, name, role or
    /// groups: the groups decide what the node may receive, and are read at start)
    /// is refused with [`CertError::IdentityChanged`] and the current one kept, as it is when
    /// the new files do not load.
    pub fn reload(&self) -> Result<Reload, CertError> {
        let Some(dir) = &self.dir else {
            return Ok(Reload::Unchanged);
        };
        let texts = Identity::read_texts(dir)?;
        let old = self.loaded();
        if texts == old.texts {
            return Ok(Reload::Unchanged);
        }
        let identity = Identity::from_texts(dir, &texts)?;
        let (was, now) = (&old.identity, &identity);
        if now.node_id() != was.node_id()
            || now.name() != was.name()
            || now.role() != was.role()
            || now.groups() != was.groups()
        {
            return Err(CertError::IdentityChanged {
                dir: dir.clone(),
                was: format!("{} ({}, {})", was.name(), was.role(), was.node_id().short()),
                now: format!("{} ({}, {})", now.name(), now.role(), now.node_id().short()),
            });
        }
        let reload = Reload::Reloaded {
            previous_not_after: was.not_after_unix(),
            not_after: now.not_after_unix(),
            cas: now.cas().len(),
        };
        let next = Arc::new(Loaded::new(identity, texts)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(reload)
    }

    /// As [`Identity::server_config`], presenting and trusting whatever is loaded at each
    /// handshake.
    pub fn server_config(
        self: &Arc<Self>,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ServerConfig, CertError> {
        let live = Arc::new(Live(self.clone()));
        let tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(live.clone())
            .with_cert_resolver(live);
        crate::tls::quic_server(tls, transport)
    }

    /// As [`Identity::client_config`], presenting and trusting whatever is loaded at each
    /// handshake.
    pub fn client_config(
        self: &Arc<Self>,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig, CertError> {
        let live = Arc::new(Live(self.clone()));
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(live.clone())
            .with_client_cert_resolver(live);
        crate::tls::quic_client(tls, transport)
    }
}

/// The resolver and verifier that rustls holds: a window on the [`LiveIdentity`].
#[derive(Debug)]
struct Live(Arc<LiveIdentity>);

impl ResolvesServerCert for Live {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.loaded().certified.clone())
    }
}

impl ResolvesClientCert for Live {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.loaded().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for Live {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: they are optional (RFC 8446 4.2.4), and swarmcast clients present their one
    /// certificate whatever the hints say.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .loaded()
            .clients
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .clients
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .clients
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.loaded().clients.supported_verify_schemes()
    }
}

impl ServerCertVerifier for Live {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.loaded().servers.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .servers
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .loaded()
            .servers
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.loaded().servers.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        crate::init_ca(tmp.path()).expect("ca");
        crate::issue(tmp.path(), "n1", swarmcast_proto::Role::Node).expect("issue");
        let live = LiveIdentity::load(&tmp.path().join("n1")).expect("live");
        let text = format!("{live:?}");
        assert!(text.contains("n1") && !text.contains("PRIVATE"), "{text}");
    }

    #[test]
    fn warns_from_30_days_before_expiry() {
        let day = 24 * 3600;
        assert_eq!(expiry_warning(100 * day, 69 * day), None);
        assert_eq!(expiry_warning(100 * day, 70 * day), Some(30 * day));
        assert_eq!(expiry_warning(100 * day, 101 * day), Some(-day));
    }
}

//! A process's own identity: its leaf certificate, private key and cluster CA.

use std::fmt;
use std::path::Path;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use swarmcast_proto::{NodeId, Role};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::CA_CERT_FILE;
use crate::peer::{PeerInfo, parse_leaf};
use crate::{CertError, files, pem, tls};

/// The leaf certificate's file name in an identity directory.
pub(crate) const CERT_FILE: &str = "cert.pem";
/// The private key's file name in an identity directory.
pub(crate) const KEY_FILE: &str = "key.pem";

/// A process's credentials: a leaf certificate, its private key, and the cluster CA.
///
/// `ca.pem` may hold more than one CA certificate (a trust bundle, while the CA is being
/// rotated): peers whose certificates chain to any of them are trusted.
///
/// Loading checks that the key belongs to the certificate, that the certificate is signed by
/// one of the CAs, and that it carries a valid name and a role. It does not check the time: an
/// expired identity loads (with a warning) and is then rejected by its peers.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cas: Vec<CertificateDer<'static>>,
    info: PeerInfo,
    not_after_unix: i64,
}

/// PEM text and where it came from.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Identity {
    /// Loads `dir/cert.pem`, `dir/key.pem` and `dir/ca.pem`, as written by [`crate::issue`].
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        Self::from_texts(dir, &Self::read_texts(dir)?)
    }

    /// The PEM texts of `dir/cert.pem`, `dir/key.pem` and `dir/ca.pem`.
    pub(crate) fn read_texts(dir: &Path) -> Result<[String; 3], CertError> {
        let [cert, key, ca] = [CERT_FILE, KEY_FILE, CA_CERT_FILE].map(|f| dir.join(f));
        Ok([
            files::read_text(&cert)?,
            files::read_text(&key)?,
            files::read_text(&ca)?,
        ])
    }

    /// An identity from the texts [`Identity::read_texts`] read from `dir`.
    pub(crate) fn from_texts(dir: &Path, texts: &[String; 3]) -> Result<Self, CertError> {
        let [cert_path, key_path, ca_path] =
            [CERT_FILE, KEY_FILE, CA_CERT_FILE].map(|f| dir.join(f).display().to_string());
        let [cert, key, ca] = texts;
        Self::parse(
            Source {
                text: cert,
                origin: &cert_path,
            },
            Source {
                text: key,
                origin: &key_path,
            },
            Source {
                text: ca,
                origin: &ca_path,
            },
        )
    }

    /// An identity from PEM text: the leaf certificate, its private key, and the CA
    /// certificate.
    pub fn from_pem(cert: &str, key: &str, ca: &str) -> Result<Self, CertError> {
        Self::parse(
            Source {
                text: cert,
                origin: "certificate PEM",
            },
            Source {
                text: key,
                origin: "private key PEM",
            },
            Source {
                text: ca,
                origin: "CA certificate PEM",
            },
        )
    }

    fn parse(cert: Source<'_>, key: Source<'_>, ca: Source<'_>) -> Result<Self, CertError> {
        let cert_der = pem::one_certificate(cert.text, cert.origin)?;
        let key_der = pem::private_key(key.text, key.origin)?;
        let ca_ders = pem::certificates(ca.text, ca.origin)?;
        let info = parse_leaf(&cert_der, cert.origin)?;

        let bad = |origin: &str, reason: String| CertError::BadCertificate {
            origin: origin.to_owned(),
            reason,
        };
        let (_, leaf) =
            X509Certificate::from_der(&cert_der).map_err(|e| bad(cert.origin, e.to_string()))?;
        let mut issued_by_one = false;
        for ca_der in &ca_ders {
            let (_, ca_cert) =
                X509Certificate::from_der(ca_der).map_err(|e| bad(ca.origin, e.to_string()))?;
            issued_by_one |= leaf.issuer() == ca_cert.subject()
                && leaf.verify_signature(Some(ca_cert.public_key())).is_ok();
        }
        if !issued_by_one {
            return Err(CertError::NotIssuedByCa {
                origin: cert.origin.to_owned(),
            });
        }

        let signing_key = tls::provider()
            .key_provider
            .load_private_key(key_der.clone_key())
            .map_err(|e| bad(key.origin, e.to_string()))?;
        // ring's keys always report their public key; one that did not could not be compared
        // here (rustls accepts such a key too).
        let key_matches = signing_key
            .public_key()
            .is_none_or(|spki| spki.as_ref() == leaf.tbs_certificate.subject_pki.raw);
        if !key_matches {
            return Err(CertError::KeyMismatch {
                origin: key.origin.to_owned(),
            });
        }

        if !leaf.validity().is_valid() {
            tracing::warn!(
                origin = cert.origin,
                not_before = %leaf.validity().not_before,
                not_after = %leaf.validity().not_after,
                "certificate is not valid now; peers will reject it",
            );
        }

        let not_after_unix = leaf.validity().not_after.timestamp();
        Ok(Self {
            cert: cert_der,
            key: key_der,
            cas: ca_ders,
            info,
            not_after_unix,
        })
    }

    /// This process's node id: SHA-256 of its certificate's SubjectPublicKeyInfo.
    pub fn node_id(&self) -> NodeId {
        self.info.id
    }

    /// The name in the certificate (its DNS subjectAltName).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The role in the certificate.
    pub fn role(&self) -> Role {
        self.info.role
    }

    /// The groups its certificate names (sorted; empty without a groups extension).
    pub fn groups(&self) -> &[String] {
        &self.info.groups
    }

    /// The leaf certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The (first) CA certificate in DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        // Parsing refuses a `ca.pem` without a certificate, so there is a first.
        &self.cas[0]
    }

    /// Every CA certificate this identity trusts (more than one while the CA is rotated).
    pub fn cas(&self) -> &[CertificateDer<'static>] {
        &self.cas
    }

    /// When the leaf certificate expires (its notAfter), in seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    pub(crate) fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            cas: self.cas.clone(),
            info: self.info.clone(),
            not_after_unix: self.not_after_unix,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.info.name)
            .field("role", &self.info.role)
            .field("node_id", &self.info.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, Validity, issue_with, node_id_of};

    #[test]
    fn identity_reports_its_certificate() {
        let ca = Ca::generate().expect("ca");
        let issued = issue_with(&ca, "alpha", Role::Bootstrap, Validity::leaf()).expect("issue");
        let identity = issued.identity().expect("identity");
        assert_eq!(identity.name(), "alpha");
        assert_eq!(identity.role(), Role::Bootstrap);
        assert_eq!(
            identity.node_id(),
            node_id_of(identity.cert_der()).expect("id")
        );
        assert_eq!(identity.ca_der(), ca.cert_der());
        assert!(!format!("{identity:?}").contains("PRIVATE"));
    }

    #[test]
    fn key_of_another_certificate_is_rejected() {
        let ca = Ca::generate().expect("ca");
        let a = issue_with(&ca, "alpha", Role::Node, Validity::leaf()).expect("issue");
        let b = issue_with(&ca, "beta", Role::Node, Validity::leaf()).expect("issue");
        let err = Identity::from_pem(&a.cert_pem, &b.key_pem, &a.ca_pem).expect_err("mismatch");
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn certificate_of_another_ca_is_rejected() {
        let ca = Ca::generate().expect("ca");
        let other = Ca::generate().expect("ca");
        let a = issue_with(&ca, "alpha", Role::Node, Validity::leaf()).expect("issue");
        let err =
            Identity::from_pem(&a.cert_pem, &a.key_pem, other.cert_pem()).expect_err("foreign");
        assert!(matches!(err, CertError::NotIssuedByCa { .. }), "{err}");
    }

    #[test]
    fn expired_identity_loads() {
        let ca = Ca::generate().expect("ca");
        let past = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        let validity = Validity {
            not_before: past,
            not_after: past + time::Duration::days(1),
        };
        let issued = issue_with(&ca, "old", Role::Node, validity).expect("issue");
        assert!(issued.identity().is_ok());
    }

    #[test]
    fn garbage_is_a_pem_error() {
        let ca = Ca::generate().expect("ca");
        let a = issue_with(&ca, "alpha", Role::Node, Validity::leaf()).expect("issue");
        let err = Identity::from_pem("nothing", &a.key_pem, &a.ca_pem).expect_err("no cert");
        assert!(matches!(err, CertError::BadPem { .. }), "{err}");
        let two = format!("{}{}", a.cert_pem, a.cert_pem);
        let err = Identity::from_pem(&two, &a.key_pem, &a.ca_pem).expect_err("two certs");
        assert!(err.to_string().contains("exactly one"), "{err}");
        let err = Identity::from_pem(&a.cert_pem, "nothing", &a.ca_pem).expect_err("no key");
        assert!(matches!(err, CertError::BadPem { .. }), "{err}");
    }
}

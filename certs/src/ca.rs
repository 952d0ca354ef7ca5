//! The cluster CA: generating, writing and loading it.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use swarmcast_proto::NodeId;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{CertError, files, pem};

/// The start of the CA certificate's common name; the first 8 hex digits of the SHA-256 of
/// its SubjectPublicKeyInfo follow.
pub(crate) const CA_COMMON_NAME: &str = "swarmcast cluster CA";
/// The CA certificate's file name, in the CA directory and in each identity directory.
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name.
pub(crate) const CA_KEY_FILE: &str = "ca.key";

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// The first instant at which the certificate is valid.
    pub not_before: OffsetDateTime,
    /// The last instant at which the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// How far `not_before` is set in the past, so that a peer whose clock is slightly
    /// behind still accepts a certificate issued a moment ago.
    pub const BACKDATE: Duration = Duration::hours(1);
    /// The default lifetime of a leaf certificate: one year.
    pub const LEAF_LIFETIME: Duration = Duration::days(365);
    /// The lifetime of the CA certificate: ten years.
    pub const CA_LIFETIME: Duration = Duration::days(3652);
    /// The longest a leaf may be issued or renewed for: 3650 days from now.
    pub const MAX_LEAF_LIFETIME: Duration = Duration::days(3650);

    /// From [`Validity::BACKDATE`] before now until `lifetime` after now.
    ///
    /// Certificates hold whole seconds; the fraction is dropped when one is written.
    pub fn starting_now(lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Self::BACKDATE,
            not_after: now + lifetime,
        }
    }

    /// `days` days from now (backdated by [`Validity::BACKDATE`]), e.g. for `certs renew --days`.
    pub fn days_from_now(days: u16) -> Self {
        Self::starting_now(Duration::days(i64::from(days)))
    }

    /// Until `not_after`, which may be in the past: an already-expired certificate, which is
    /// how tests show that peers refuse one. Valid from [`Validity::BACKDATE`] before the
    /// earlier of now and `not_after`, so `not_before` always precedes `not_after`.
    pub fn until(not_after: OffsetDateTime) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now.min(not_after) - Self::BACKDATE,
            not_after,
        }
    }

    /// [`Validity::until`] the RFC 3339 time `text` (e.g. `2020-01-01T00:00:00Z`), for
    /// `certs issue --not-after`. Refused: malformed text, a time before the Unix epoch, and
    /// one more than [`Validity::MAX_LEAF_LIFETIME`] from now.
    pub fn parse_not_after(text: &str) -> Result<Self, CertError> {
        let invalid = |reason: String| CertError::InvalidNotAfter {
            value: text.to_owned(),
            reason,
        };
        let not_after = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                invalid(format!(
                    "not an RFC 3339 time such as 2020-01-01T00:00:00Z ({e})"
                ))
            })?;
        if not_after < OffsetDateTime::UNIX_EPOCH {
            return Err(invalid("before 1970-01-01".to_owned()));
        }
        if not_after > OffsetDateTime::now_utc() + Self::MAX_LEAF_LIFETIME {
            return Err(invalid("more than 3650 days from now".to_owned()));
        }
        Ok(Self::until(not_after))
    }

    /// `not_after` for people, in UTC and whole seconds as the certificate holds it (e.g.
    /// `2027-12-02 14:40:49.0 +00:00:00`).
    pub fn not_after_utc(&self) -> String {
        let t = self.not_after.to_offset(time::UtcOffset::UTC);
        t.replace_nanosecond(0).unwrap_or(t).to_string()
    }

    /// The default validity of a leaf certificate: [`Validity::LEAF_LIFETIME`] from now.
    pub fn leaf() -> Self {
        Self::starting_now(Self::LEAF_LIFETIME)
    }

    /// The validity of a new CA certificate: [`Validity::CA_LIFETIME`] from now.
    pub fn ca() -> Self {
        Self::starting_now(Self::CA_LIFETIME)
    }
}

/// A cluster CA: its certificate and private key, able to issue leaf certificates.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA with a fresh key, valid for [`Validity::ca`], held in memory only.
    pub fn generate() -> Result<Self, CertError> {
        Self::generate_with(Validity::ca())
    }

    /// A new CA with a fresh key and the given validity, held in memory only.
    pub fn generate_with(validity: Validity) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        // The key's fingerprint tells clusters apart, in logs and in path building: a leaf of
        // another cluster's CA is then an unknown issuer, not a bad signature.
        let fingerprint = NodeId(Sha256::digest(key.subject_public_key_info()).into()).short();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("{CA_COMMON_NAME} {fingerprint}"),
        );
        params.distinguished_name = name;
        // Path length 0: the CA signs leaves only, never intermediates.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA from `dir/ca.pem` and `dir/ca.key`.
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = files::read_text(&cert_path)?;
        let key_pem = files::read_text(&key_path)?;
        Self::parse(
            cert_pem,
            &cert_path.display().to_string(),
            &key_pem,
            &key_path.display().to_string(),
        )
    }

    /// A CA from its certificate and private key in PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        Self::parse(
            cert_pem.to_owned(),
            "CA certificate PEM",
            key_pem,
            "CA key PEM",
        )
    }

    fn parse(
        cert_pem: String,
        cert_origin: &str,
        key_pem: &str,
        key_origin: &str,
    ) -> Result<Self, CertError> {
        let cert_der = pem::one_certificate(&cert_pem, cert_origin)?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| pem::bad_pem(key_origin, e.to_string()))?;

        let bad = |reason: String| CertError::BadCertificate {
            origin: cert_origin.to_owned(),
            reason,
        };
        let (_, cert) = X509Certificate::from_der(&cert_der).map_err(|e| bad(e.to_string()))?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|e| bad(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CertError::NotCa {
                origin: cert_origin.to_owned(),
            });
        }
        if key.subject_public_key_info() != cert.tbs_certificate.subject_pki.raw {
            return Err(CertError::KeyMismatch {
                origin: key_origin.to_owned(),
            });
        }

        // Takes the subject, key usages and key identifier from the certificate, so leaves
        // name exactly this issuer.
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_der,
            cert_pem,
            issuer,
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key in PEM (PKCS#8). Handle with care.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rcgen's Issuer elides the key.
        f.debug_struct("Ca")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Where [`init_ca`] wrote the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaPaths {
    /// `dir/ca.pem`, the CA certificate.
    pub cert: PathBuf,
    /// `dir/ca.key`, the CA private key (mode 0600).
    pub key: PathBuf,
}

/// Creates a new cluster CA in `dir` (created if missing): `dir/ca.pem` and `dir/ca.key`.
///
/// Refuses with [`CertError::AlreadyExists`] if either file exists. The key is created with
/// mode 0600 (never more open, not even for a moment).
pub fn init_ca(dir: &Path) -> Result<CaPaths, CertError> {
    let paths = CaPaths {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    };
    files::create_dir_all(dir)?;
    files::ensure_absent(&paths.cert)?;
    files::ensure_absent(&paths.key)?;

    let ca = Ca::generate()?;
    files::create_new(&paths.key, ca.key_pem().as_bytes(), files::PRIVATE)?;
    files::create_new(&paths.cert, ca.cert_pem().as_bytes(), files::PUBLIC)?;
    tracing::info!(dir = %dir.display(), "created cluster CA");
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use x509_parser::extensions::KeyUsage;

    use super::*;

    #[test]
    fn not_after_parses_rfc3339_within_bounds_and_may_be_past() {
        let past = Validity::parse_not_after("2020-01-01T00:00:00Z").expect("a past time");
        assert_eq!(past.not_after.unix_timestamp(), 1_577_836_800);
        assert!(past.not_before < past.not_after);
        assert_eq!(past.not_after_utc(), "2020-01-01 0:00:00.0 +00:00:00");
        let soon = Validity::parse_not_after("2030-01-01T00:00:00+02:00").expect("an offset");
        assert!(soon.not_before < OffsetDateTime::now_utc());
        for bad in [
            "",
            "yesterday",
            "2020-01-01",
            "2020-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "9999-01-01T00:00:00Z",
        ] {
            assert!(
                matches!(
                    Validity::parse_not_after(bad),
                    Err(CertError::InvalidNotAfter { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_ca_is_a_ten_year_ca() {
        let ca = Ca::generate().expect("generate");
        let (_, cert) = X509Certificate::from_der(ca.cert_der()).expect("parse");
        let cn = cert.subject().iter_common_name().next().expect("CN");
        let fingerprint = NodeId(Sha256::digest(cert.public_key().raw).into()).short();
        assert_eq!(
            cn.as_str().expect("utf8"),
            format!("{CA_COMMON_NAME} {fingerprint}")
        );
        let bc = cert.basic_constraints().expect("bc").expect("present");
        assert!(bc.critical);
        assert!(bc.value.ca);
        let ku: &KeyUsage = cert.key_usage().expect("ku").expect("present").value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert!(!ku.digital_signature());
        let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
        assert!(lifetime > Duration::days(3650) && lifetime < Duration::days(3653));
    }

    #[test]
    fn ca_round_trips_through_pem() {
        let ca = Ca::generate().expect("generate");
        let loaded = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).expect("load");
        assert_eq!(loaded.cert_der(), ca.cert_der());
    }

    #[test]
    fn ca_with_another_key_is_rejected() {
        let ca = Ca::generate().expect("generate");
        let other = Ca::generate().expect("generate");
        let err = Ca::from_pem(ca.cert_pem(), &other.key_pem()).expect_err("mismatch");
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn leaf_is_not_accepted_as_ca() {
        let ca = Ca::generate().expect("generate");
        let leaf =
            crate::issue_with(&ca, "alpha", crate::Role::Node, Validity::leaf()).expect("issue");
        let err = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).expect_err("not a CA");
        assert!(matches!(err, CertError::NotCa { .. }), "{err}");
    }
}

//! Issuing leaf certificates.

use std::fmt;
use std::fs::DirBuilder;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use swarmcast_proto::Role;

use crate::ca::{CA_CERT_FILE, Ca, Validity};
use crate::identity::{CERT_FILE, KEY_FILE};
use crate::{CertError, Identity, der, files, pem};

/// The longest name: a DNS label.
const MAX_NAME_LEN: usize = 63;

/// Checks that `name` can name a certificate: 1..=63 characters of `[a-z0-9-]`, not starting
/// or ending with `-`.
///
/// A valid name is a DNS label (it becomes the DNS subjectAltName) and a safe directory name
/// (no `/`, no `.`, so no `..`).
pub fn validate_name(name: &str) -> Result<(), CertError> {
    label_problem(name).map_or(Ok(()), |reason| {
        Err(CertError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    })
}

/// Checks a group (`certs issue --group`, `node send --to group:G`): the rules of a name.
pub fn validate_group(group: &str) -> Result<(), CertError> {
    label_problem(group).map_or(Ok(()), |reason| {
        Err(CertError::InvalidGroup {
            group: group.to_owned(),
            reason,
        })
    })
}

/// Most groups one certificate may carry.
pub const MAX_GROUPS: usize = 64;

/// What is wrong with `name` as a DNS label of `[a-z0-9-]`, if anything.
fn label_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("longer than 63 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only a-z, 0-9 and '-' are allowed")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("must not start or end with '-'")
    } else {
        None
    }
}

/// A freshly issued leaf certificate, in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The leaf certificate in PEM.
    pub cert_pem: String,
    /// The leaf's private key in PEM (PKCS#8).
    pub key_pem: String,
    /// The issuing CA's certificate in PEM.
    pub ca_pem: String,
}

impl IssuedCert {
    /// The [`Identity`] holding this certificate.
    pub fn identity(&self) -> Result<Identity, CertError> {
        Identity::from_pem(&self.cert_pem, &self.key_pem, &self.ca_pem)
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish_non_exhaustive()
    }
}

/// Issues a leaf certificate for `name` with `role`, signed by `ca`, in memory.
///
/// Any validity is accepted, including one entirely in the past: tests use that to make
/// expired certificates.
pub fn issue_with(
    ca: &Ca,
    name: &str,
    role: Role,
    validity: Validity,
) -> Result<IssuedCert, CertError> {
    issue_with_groups(ca, name, role, &[], validity)
}

/// [`issue_with`], the leaf also naming `groups` (`certs issue --group`) in its groups
/// extension: sorted, without duplicates, each checked with [`validate_group`], at most
/// [`MAX_GROUPS`].
pub fn issue_with_groups(
    ca: &Ca,
    name: &str,
    role: Role,
    groups: &[String],
    validity: Validity,
) -> Result<IssuedCert, CertError> {
    validate_name(name)?;
    let groups = canonical_groups(groups)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    sign_leaf(ca, name, role, &groups, &key, validity)
}

/// `groups` checked, sorted and without duplicates.
fn canonical_groups(groups: &[String]) -> Result<Vec<String>, CertError> {
    for g in groups {
        validate_group(g)?;
    }
    let mut out = groups.to_vec();
    out.sort();
    out.dedup();
    if out.len() > MAX_GROUPS {
        return Err(CertError::InvalidGroup {
            group: out.swap_remove(MAX_GROUPS),
            reason: "more than 64 groups",
        });
    }
    Ok(out)
}

/// Re-signs `identity`'s key with `ca`, in memory: the same key, so the same [`NodeId`]
/// (the hash of the public key), and the same name and role, with a new `validity`. The
/// result's `key_pem` is the identity's key; its `ca_pem` is `ca`'s certificate only (see
/// [`renew`] for what is written to disk).
///
/// [`NodeId`]: swarmcast_proto::NodeId
pub fn renew_with(
    ca: &Ca,
    identity: &Identity,
    validity: Validity,
) -> Result<IssuedCert, CertError> {
    let key = KeyPair::try_from(&identity.key_der())?;
    let groups = identity.groups().to_vec();
    sign_leaf(
        ca,
        identity.name(),
        identity.role(),
        &groups,
        &key,
        validity,
    )
}

/// Signs a leaf for `name` and `role` over `key`.
fn sign_leaf(
    ca: &Ca,
    name: &str,
    role: Role,
    groups: &[String],
    key: &KeyPair,
    validity: Validity,
) -> Result<IssuedCert, CertError> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    // Cannot fail: a valid name is ASCII.
    params.subject_alt_names = vec![SanType::DnsName(name.try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;

    let without_role = params.signed_by(key, ca.issuer())?;
    let appended = der::append_extension(
        without_role.der(),
        &der::role_extension(role),
        ca.issuer().key(),
    )
    .and_then(|cert| {
        if groups.is_empty() {
            Ok(cert)
        } else {
            der::append_extension(&cert, &der::groups_extension(groups), ca.issuer().key())
        }
    });
    let cert = appended.map_err(|e| CertError::BadCertificate {
        origin: format!("certificate issued for {name}"),
        reason: e.to_string(),
    })?;

    Ok(IssuedCert {
        cert_pem: pem::encode_certificate(&cert),
        key_pem: key.serialize_pem(),
        ca_pem: ca.cert_pem().to_owned(),
    })
}

/// Where [`issue`] wrote a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedPaths {
    /// `dir/name`, the identity directory ([`Identity::load`] takes it).
    pub dir: PathBuf,
    /// `dir/name/cert.pem`.
    pub cert: PathBuf,
    /// `dir/name/key.pem` (mode 0600).
    pub key: PathBuf,
    /// `dir/name/ca.pem`, a copy of the CA certificate.
    pub ca: PathBuf,
}

/// Issues a leaf for `name` with `role` from the CA in `dir`, and writes it to `dir/name/`.
///
/// The name is checked with [`validate_name`] before anything is read or written. Refuses
/// with [`CertError::AlreadyExists`] if `dir/name/` already holds any of the three files.
/// The leaf is valid for [`Validity::leaf`].
pub fn issue(dir: &Path, name: &str, role: Role) -> Result<IssuedPaths, CertError> {
    issue_groups(dir, name, role, &[], Validity::leaf())
}

/// [`issue`], the leaf naming `groups` (see [`issue_with_groups`]) and valid for `validity`
/// (`certs issue --days`, `--not-after`; any validity, as for [`issue_with`]).
pub fn issue_groups(
    dir: &Path,
    name: &str,
    role: Role,
    groups: &[String],
    validity: Validity,
) -> Result<IssuedPaths, CertError> {
    validate_name(name)?;
    canonical_groups(groups)?;
    let ca = Ca::load(dir)?;
    let leaf_dir = dir.join(name);
    let paths = IssuedPaths {
        cert: leaf_dir.join(CERT_FILE),
        key: leaf_dir.join(KEY_FILE),
        ca: leaf_dir.join(CA_CERT_FILE),
        dir: leaf_dir,
    };
    for path in [&paths.cert, &paths.key, &paths.ca] {
        files::ensure_absent(path)?;
    }

    let issued = issue_with_groups(&ca, name, role, groups, validity)?;
    create_private_dir(&paths.dir)?;
    files::create_new(&paths.key, issued.key_pem.as_bytes(), files::PRIVATE)?;
    files::create_new(&paths.cert, issued.cert_pem.as_bytes(), files::PUBLIC)?;
    files::create_new(&paths.ca, issued.ca_pem.as_bytes(), files::PUBLIC)?;
    tracing::info!(name, %role, dir = %paths.dir.display(), "issued certificate");
    Ok(paths)
}

/// What [`renew`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewed {
    /// The identity directory's files.
    pub paths: IssuedPaths,
    /// The name, unchanged.
    pub name: String,
    /// The role, unchanged.
    pub role: Role,
    /// The node id, unchanged (the key is the same).
    pub node_id: swarmcast_proto::NodeId,
    /// The new certificate's notAfter, in seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// `ca.pem` had to gain the signing CA (it trusted only other CAs before).
    pub ca_added: bool,
}

impl Renewed {
    /// The new notAfter for people, in UTC (e.g. `2027-12-02 14:40:49.0 +00:00:00`).
    pub fn not_after_utc(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.not_after_unix).map_or_else(
            |_| format!("unix time {}", self.not_after_unix),
            |t| t.to_string(),
        )
    }
}

/// Renews the identity in `leaf_dir` (as written by [`issue`]) with the CA in `ca_dir`: its
/// key is signed again ([`renew_with`], for `validity`, usually [`Validity::leaf`]), so its node id,
/// name and role stay. `cert.pem` is replaced atomically (temp file, fsync, rename); `key.pem`
/// is not touched. `ca.pem` is kept when it already trusts the signing CA; otherwise the signing
/// CA's certificate is appended to it (a trust bundle, as when the CA is rotated), so the
/// identity still loads. The running daemon picks the new certificate up by itself.
pub fn renew(ca_dir: &Path, leaf_dir: &Path, validity: Validity) -> Result<Renewed, CertError> {
    let ca = Ca::load(ca_dir)?;
    let identity = Identity::load(leaf_dir)?;
    let issued = renew_with(&ca, &identity, validity)?;
    let paths = IssuedPaths {
        cert: leaf_dir.join(CERT_FILE),
        key: leaf_dir.join(KEY_FILE),
        ca: leaf_dir.join(CA_CERT_FILE),
        dir: leaf_dir.to_owned(),
    };
    let ca_added = !identity.cas().iter().any(|c| c == ca.cert_der());
    if ca_added {
        let mut bundle = files::read_text(&paths.ca)?;
        if !bundle.ends_with('\n') {
            bundle.push('\n');
        }
        bundle.push_str(ca.cert_pem());
        files::replace(&paths.ca, bundle.as_bytes(), files::PUBLIC)?;
    }
    files::replace(&paths.cert, issued.cert_pem.as_bytes(), files::PUBLIC)?;
    let renewed = Identity::load(leaf_dir)?;
    tracing::info!(name = renewed.name(), role = %renewed.role(), dir = %leaf_dir.display(), "renewed certificate");
    Ok(Renewed {
        paths,
        name: renewed.name().to_owned(),
        role: renewed.role(),
        node_id: renewed.node_id(),
        not_after_unix: renewed.not_after_unix(),
        ca_added,
    })
}

/// Creates `dir` with mode 0700 unless it exists.
fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    let mut builder = DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(source) => Err(CertError::Write {
            path: dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use time::{Duration, OffsetDateTime};
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::x509::X509Version;

    use super::*;

    #[test]
    fn names() {
        for good in ["a", "node-1", "0", "a-b-c", &"x".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good:?} should be valid");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "UPPER",
            "a.b",
            "..",
            "-a",
            "a-",
            "-",
            "a b",
            "ä",
            &"x".repeat(64),
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(
                matches!(err, CertError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn leaf_has_the_documented_shape() {
        let ca = Ca::generate().expect("ca");
        let issued = issue_with(&ca, "alpha", Role::Bootstrap, Validity::leaf()).expect("issue");
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("pem");
        let (rest, cert) = X509Certificate::from_der(&der).expect("parse");
        assert!(rest.is_empty());
        assert_eq!(cert.version(), X509Version::V3);

        let cn = cert.subject().iter_common_name().next().expect("CN");
        assert_eq!(cn.as_str().expect("utf8"), "alpha");
        let san = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present");
        assert_eq!(san.value.general_names, vec![GeneralName::DNSName("alpha")]);

        let bc = cert.basic_constraints().expect("bc").expect("present");
        assert!(!bc.value.ca);
        let ku = cert.key_usage().expect("ku").expect("present").value;
        assert!(ku.digital_signature() && !ku.key_cert_sign());
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.server_auth && eku.client_auth);

        let role = cert
            .extensions()
            .iter()
            .find(|ext| ext.oid.as_bytes() == der::ROLE_OID_DER)
            .expect("role extension");
        assert!(!role.critical);
        assert!(matches!(
            role.parsed_extension(),
            ParsedExtension::UnsupportedExtension { .. }
        ));
        assert_eq!(role.value, [&[0x0c, 9][..], b"bootstrap"].concat());

        let lifetime = cert.validity().not_after.to_datetime() - OffsetDateTime::now_utc();
        assert!(lifetime > Duration::days(364) && lifetime <= Duration::days(365));

        // Still signed by the CA after the role was appended.
        let (_, ca_cert) = X509Certificate::from_der(ca.cert_der()).expect("parse CA");
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by CA");
        assert_eq!(cert.issuer(), ca_cert.subject());
    }
}

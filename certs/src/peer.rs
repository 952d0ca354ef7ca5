//! Who is on the other end: identity, name and role from a verified leaf certificate.

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use swarmcast_proto::{NodeId, Role};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{CertError, der, validate_name};

/// The authenticated identity of a peer (or of a certificate).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerInfo {
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo.
    pub id: NodeId,
    /// The certificate's (first) DNS subjectAltName.
    pub name: String,
    /// The role recorded in the certificate's role extension.
    pub role: Role,
    /// The groups its groups extension names (`certs issue --group`), sorted; empty without
    /// one. Written by the CA, so never self-declared.
    pub groups: Vec<String>,
}

/// The authenticated identity of the peer of an established connection.
///
/// The certificate was verified against the cluster CA during the handshake (both
/// configurations of this crate require it); this reads the id, name and role from it.
pub fn peer_info(conn: &quinn::Connection) -> Result<PeerInfo, CertError> {
    let addr = conn.remote_address();
    let chain = conn
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(CertError::NoPeerCertificate { addr })?;
    let leaf = chain.first().ok_or(CertError::NoPeerCertificate { addr })?;
    let info = parse_leaf(leaf, &format!("peer {addr}"))?;
    tracing::debug!(%addr, peer = %info.id.short(), name = info.name, role = %info.role, "peer authenticated");
    Ok(info)
}

/// The node id of a DER certificate: SHA-256 of its DER SubjectPublicKeyInfo.
pub fn node_id_of(cert: &[u8]) -> Result<NodeId, CertError> {
    let cert = parse(cert, "certificate")?;
    Ok(spki_id(&cert))
}

fn spki_id(cert: &X509Certificate<'_>) -> NodeId {
    NodeId(Sha256::digest(cert.tbs_certificate.subject_pki.raw).into())
}

fn parse<'a>(der: &'a [u8], origin: &str) -> Result<X509Certificate<'a>, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(origin, e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(origin, "trailing bytes after the certificate".into()));
    }
    Ok(cert)
}

fn bad(origin: &str, reason: String) -> CertError {
    CertError::BadCertificate {
        origin: origin.to_owned(),
        reason,
    }
}

/// Id, name and role of a swarmcast leaf certificate. Verifies nothing cryptographically.
pub(crate) fn parse_leaf(der: &[u8], origin: &str) -> Result<PeerInfo, CertError> {
    let cert = parse(der, origin)?;

    let san = cert
        .subject_alternative_name()
        .map_err(|e| bad(origin, e.to_string()))?;
    let name = san
        .into_iter()
        .flat_map(|san| san.value.general_names.iter())
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(*dns),
            _ => None,
        })
        .ok_or_else(|| bad(origin, "no DNS subjectAltName".into()))?;
    validate_name(name).map_err(|e| bad(origin, e.to_string()))?;

    let mut roles = cert
        .extensions()
        .iter()
        .filter(|ext| ext.oid.as_bytes() == der::ROLE_OID_DER);
    let role_ext = roles.next().ok_or_else(|| CertError::MissingRole {
        origin: origin.to_owned(),
    })?;
    if roles.next().is_some() {
        return Err(bad(origin, "more than one role extension".into()));
    }
    let unknown = || CertError::UnknownRole {
        origin: origin.to_owned(),
        value: String::from_utf8_lossy(role_ext.value).into_owned(),
    };
    let role = der::decode_role_value(role_ext.value)
        .map_err(|_| unknown())?
        .parse::<Role>()
        .map_err(|_| unknown())?;

    let mut group_exts = cert
        .extensions()
        .iter()
        .filter(|ext| ext.oid.as_bytes() == der::GROUPS_OID_DER);
    let groups = match group_exts.next() {
        None => Vec::new(),
        Some(ext) => {
            if group_exts.next().is_some() {
                return Err(bad(origin, "more than one groups extension".into()));
            }
            let texts = der::decode_groups_value(ext.value)
                .map_err(|e| bad(origin, format!("groups extension: {e}")))?;
            let mut groups = Vec::with_capacity(texts.len());
            for g in texts {
                crate::validate_group(g).map_err(|e| bad(origin, e.to_string()))?;
                groups.push(g.to_owned());
            }
            groups.sort();
            groups.dedup();
            groups
        }
    };

    Ok(PeerInfo {
        id: spki_id(&cert),
        name: name.to_owned(),
        role,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, PublicKeyData};

    use super::*;
    use crate::Ca;

    /// A leaf signed by `ca` with the given extra extension (DER `Extension`), if any.
    fn leaf_with(ca: &Ca, name: &str, extension: Option<Vec<u8>>) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.signed_by(&key, ca.issuer()).expect("sign");
        let der = match extension {
            Some(ext) => {
                der::append_extension(cert.der(), &ext, ca.issuer().key()).expect("append")
            }
            None => cert.der().to_vec(),
        };
        (der, key)
    }

    #[test]
    fn node_id_is_sha256_of_the_spki() {
        let ca = Ca::generate().expect("ca");
        let (der, key) = leaf_with(&ca, "alpha", Some(der::role_extension(Role::Node)));
        let expected = NodeId(Sha256::digest(key.subject_public_key_info()).into());
        assert_eq!(node_id_of(&der).expect("id"), expected);
        let info = parse_leaf(&der, "test").expect("parse");
        assert_eq!(info.id, expected);
        assert_eq!(info.name, "alpha");
        assert_eq!(info.role, Role::Node);
    }

    #[test]
    fn missing_role_is_an_error() {
        let ca = Ca::generate().expect("ca");
        let (der, _) = leaf_with(&ca, "alpha", None);
        let err = parse_leaf(&der, "test").expect_err("no role");
        assert!(matches!(err, CertError::MissingRole { .. }), "{err}");
    }

    #[test]
    fn unknown_role_is_an_error() {
        let ca = Ca::generate().expect("ca");
        let (der, _) = leaf_with(&ca, "alpha", Some(der::encode_role_extension("admin")));
        match parse_leaf(&der, "test") {
            Err(CertError::UnknownRole { value, .. }) => assert!(value.contains("admin")),
            other => panic!("expected UnknownRole, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_role_is_an_error() {
        let ca = Ca::generate().expect("ca");
        let (once, _) = leaf_with(&ca, "alpha", Some(der::role_extension(Role::Node)));
        let twice = der::append_extension(
            &once,
            &der::role_extension(Role::Bootstrap),
            ca.issuer().key(),
        )
        .expect("append");
        assert!(parse_leaf(&twice, "test").is_err());
    }

    #[test]
    fn name_must_be_a_valid_dns_san() {
        let ca = Ca::generate().expect("ca");
        let role = Some(der::role_extension(Role::Node));
        let (der, _) = leaf_with(&ca, "Not.Valid", role.clone());
        assert!(parse_leaf(&der, "test").is_err());
        let (der, _) = leaf_with(&ca, "127.0.0.1", role);
        let err = parse_leaf(&der, "test").expect_err("IP SAN only");
        assert!(err.to_string().contains("no DNS"), "{err}");
    }

    #[test]
    fn groups_come_from_the_certificate() {
        let ca = Ca::generate().expect("ca");
        let groups = vec!["gpu".to_owned(), "a-b".to_owned(), "gpu".to_owned()];
        let issued =
            crate::issue_with_groups(&ca, "alpha", Role::Node, &groups, crate::Validity::leaf())
                .expect("issue");
        let info = issued.identity().expect("identity");
        assert_eq!(info.groups(), ["a-b".to_owned(), "gpu".to_owned()]);
        let plain = crate::issue_with(&ca, "beta", Role::Node, crate::Validity::leaf())
            .expect("issue")
            .identity()
            .expect("identity");
        assert!(plain.groups().is_empty());
        let bad = vec!["GPU".to_owned()];
        let err = crate::issue_with_groups(&ca, "c", Role::Node, &bad, crate::Validity::leaf())
            .expect_err("upper case");
        assert!(matches!(err, CertError::InvalidGroup { .. }), "{err}");
        // A groups extension with an invalid group is refused when read.
        let (der, _) = leaf_with(
            &ca,
            "delta",
            Some(der::groups_extension(&["No".to_owned()])),
        );
        let der = der::append_extension(&der, &der::role_extension(Role::Node), ca.issuer().key())
            .expect("append");
        assert!(parse_leaf(&der, "test").is_err());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(node_id_of(b"not a certificate").is_err());
    }
}

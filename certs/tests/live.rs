//! `certs renew` and `LiveIdentity`: a renewed certificate and a rotated CA take effect for new
//! connections on the configurations already built, with the identity (NodeId) unchanged.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Side, exchange, transport};
use swarmcast_certs::{
    CertError, Identity, LiveIdentity, Reload, Role, Validity, init_ca, issue, renew,
};

fn cert_pem(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("cert.pem")).unwrap()
}

#[tokio::test]
async fn renewal_and_ca_rotation_without_new_configurations() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (tmp.path().join("ca1"), tmp.path().join("ca2"));
    init_ca(&ca1).unwrap();
    issue(&ca1, "b1", Role::Bootstrap).unwrap();
    issue(&ca1, "n1", Role::Node).unwrap();
    let (b1, n1) = (ca1.join("b1"), ca1.join("n1"));
    let server = LiveIdentity::load(&b1).unwrap();
    let client = LiveIdentity::load(&n1).unwrap();
    let id = server.identity().node_id();
    let sc = server.server_config(transport()).unwrap();
    let cc = client.client_config(transport()).unwrap();
    exchange(sc.clone(), cc.clone(), "swarmcast")
        .await
        .assert_connected();

    // Renewal: same key, new certificate, picked up by reload.
    let before = cert_pem(&b1);
    let renewed = renew(&ca1, &b1, Validity::leaf()).unwrap();
    assert_eq!(renewed.node_id, id);
    assert_eq!(
        (renewed.name.as_str(), renewed.role),
        ("b1", Role::Bootstrap)
    );
    assert!(!renewed.ca_added);
    assert_ne!(cert_pem(&b1), before, "a new certificate");
    assert!(matches!(
        server.reload().unwrap(),
        Reload::Reloaded { cas: 1, .. }
    ));
    assert_eq!(server.reload().unwrap(), Reload::Unchanged);
    let on_disk = Identity::load(&b1).unwrap();
    assert_eq!(server.identity().cert_der(), on_disk.cert_der());
    let seen = exchange(sc.clone(), cc.clone(), "swarmcast")
        .await
        .assert_connected();
    assert_eq!(seen.client_saw.unwrap().id, id, "same NodeId after renewal");

    // CA rotation: b1 re-signed by a second CA (its ca.pem becomes a bundle of both). n1
    // trusts only the first: refused, until n1's bundle holds the second too.
    init_ca(&ca2).unwrap();
    let rotated = renew(&ca2, &b1, Validity::leaf()).unwrap();
    assert!(rotated.ca_added);
    assert_eq!(rotated.node_id, id);
    assert!(matches!(
        server.reload().unwrap(),
        Reload::Reloaded { cas: 2, .. }
    ));
    exchange(sc.clone(), cc.clone(), "swarmcast")
        .await
        .assert_rejected(Side::Client, "UnknownIssuer");
    let mut bundle = std::fs::read_to_string(n1.join("ca.pem")).unwrap();
    bundle.push_str(&std::fs::read_to_string(ca2.join("ca.pem")).unwrap());
    std::fs::write(n1.join("ca.pem"), bundle).unwrap();
    assert!(matches!(
        client.reload().unwrap(),
        Reload::Reloaded { cas: 2, .. }
    ));
    exchange(sc.clone(), cc.clone(), "swarmcast")
        .await
        .assert_connected();
    // n1 re-signed by the second CA too, and the first CA dropped from both bundles.
    renew(&ca2, &n1, Validity::leaf()).unwrap();
    for dir in [&b1, &n1] {
        std::fs::copy(ca2.join("ca.pem"), dir.join("ca.pem")).unwrap();
    }
    assert!(matches!(
        server.reload().unwrap(),
        Reload::Reloaded { cas: 1, .. }
    ));
    assert!(matches!(
        client.reload().unwrap(),
        Reload::Reloaded { cas: 1, .. }
    ));
    exchange(sc.clone(), cc.clone(), "swarmcast")
        .await
        .assert_connected();

    // Another key in the directory is another identity: refused, the loaded one kept.
    issue(&ca2, "n2", Role::Node).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(ca2.join("n2").join(f), n1.join(f)).unwrap();
    }
    let err = client.reload().unwrap_err();
    assert!(matches!(err, CertError::IdentityChanged { .. }), "{err}");
    exchange(sc, cc, "swarmcast").await.assert_connected();
}

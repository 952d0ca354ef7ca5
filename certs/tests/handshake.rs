//! Mutual TLS over real quinn endpoints on 127.0.0.1: who gets in and who does not.
//!
//! Every rejection test also runs a control: the same harness with a good credential in
//! place of the bad one connects, so a rejection cannot come from an unrelated mistake in
//! the test (ALPN, names, roots).
#![allow(clippy::unwrap_used)]

mod common;

use common::{ClientAuth, Credentials, Side, exchange, raw_client, raw_server, transport};
use swarmcast_certs::testing::TestCluster;
use swarmcast_certs::{Identity, IssuedCert, Role, SERVER_NAME, Validity, issue_with};
use time::{Duration, OffsetDateTime};

/// The server's name in its certificate; raw clients dial it by this name.
const SERVER: &str = "server";

/// A cluster with a server (bootstrap) and a client (node) leaf.
struct Fixture {
    cluster: TestCluster,
    server: IssuedCert,
    client: IssuedCert,
}

impl Fixture {
    fn new() -> Self {
        let cluster = TestCluster::new();
        let server = issue_with(cluster.ca(), SERVER, Role::Bootstrap, Validity::leaf()).unwrap();
        let client = issue_with(cluster.ca(), "client", Role::Node, Validity::leaf()).unwrap();
        Self {
            cluster,
            server,
            client,
        }
    }

    fn ca_pem(&self) -> &str {
        self.cluster.ca().cert_pem()
    }

    fn server_config(&self) -> quinn::ServerConfig {
        identity(&self.server).server_config(transport()).unwrap()
    }

    fn client_config(&self) -> quinn::ClientConfig {
        identity(&self.client).client_config(transport()).unwrap()
    }

    /// Control for a bad client: a raw client with the cluster's client leaf gets in.
    async fn assert_raw_client_with_good_leaf_connects(&self) {
        let client = raw_client(self.ca_pem(), Some(Credentials::of(&self.client)));
        let connected = exchange(self.server_config(), client, SERVER)
            .await
            .assert_connected();
        assert_eq!(
            connected.server_saw.unwrap().id,
            identity(&self.client).node_id()
        );
    }

    /// Control for a bad server: the cluster client accepts a raw server with the cluster's
    /// server leaf, dialled by a name that is not in its certificate.
    async fn assert_raw_server_with_good_leaf_is_accepted(&self) {
        let server = raw_server(
            self.ca_pem(),
            ClientAuth::Required,
            Credentials::of(&self.server),
        );
        let connected = exchange(server, self.client_config(), SERVER_NAME)
            .await
            .assert_connected();
        assert_eq!(
            connected.client_saw.unwrap().id,
            identity(&self.server).node_id()
        );
    }
}

fn identity(issued: &IssuedCert) -> Identity {
    issued.identity().unwrap()
}

fn expired() -> Validity {
    let now = OffsetDateTime::now_utc();
    Validity {
        not_before: now - Duration::days(30),
        not_after: now - Duration::days(1),
    }
}

#[tokio::test]
async fn leaves_of_one_ca_authenticate_each_other() {
    let cluster = TestCluster::new();
    let server = cluster.issue("boot-1", Role::Bootstrap);
    let client = cluster.issue("node-7", Role::Node);
    let connected = exchange(
        server.server_config(transport()).unwrap(),
        client.client_config(transport()).unwrap(),
        SERVER_NAME, // not the server's name: names are not matched
    )
    .await
    .assert_connected();

    let client_saw = connected.client_saw.unwrap();
    assert_eq!(client_saw.id, server.node_id());
    assert_eq!(client_saw.name, "boot-1");
    assert_eq!(client_saw.role, Role::Bootstrap);

    let server_saw = connected.server_saw.unwrap();
    assert_eq!(server_saw.id, client.node_id());
    assert_eq!(server_saw.name, "node-7");
    assert_eq!(server_saw.role, Role::Node);
    assert_ne!(server.node_id(), client.node_id());
}

#[tokio::test]
async fn foreign_ca_leaf_is_rejected_as_client() {
    let fixture = Fixture::new();
    fixture.assert_raw_client_with_good_leaf_connects().await;

    let foreign = TestCluster::new();
    let intruder = issue_with(foreign.ca(), "client", Role::Node, Validity::leaf()).unwrap();
    // Trusts the cluster's CA, so only the server's check of the client can fail.
    let client = raw_client(fixture.ca_pem(), Some(Credentials::of(&intruder)));
    exchange(fixture.server_config(), client, SERVER)
        .await
        .assert_rejected(Side::Server, "UnknownIssuer");
}

#[tokio::test]
async fn foreign_ca_leaf_is_rejected_as_server() {
    let fixture = Fixture::new();
    fixture.assert_raw_server_with_good_leaf_is_accepted().await;

    let foreign = TestCluster::new();
    let impostor = issue_with(foreign.ca(), SERVER, Role::Bootstrap, Validity::leaf()).unwrap();
    // Trusts the cluster's CA for clients, so only the client's check of the server can fail.
    let server = raw_server(
        fixture.ca_pem(),
        ClientAuth::Required,
        Credentials::of(&impostor),
    );
    exchange(server, fixture.client_config(), SERVER_NAME)
        .await
        .assert_rejected(Side::Client, "UnknownIssuer");
}

#[tokio::test]
async fn self_signed_client_is_rejected() {
    let fixture = Fixture::new();
    fixture.assert_raw_client_with_good_leaf_connects().await;

    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
    let client = raw_client(
        fixture.ca_pem(),
        Some(Credentials::from_pem(
            &cert.pem(),
            &signing_key.serialize_pem(),
        )),
    );
    exchange(fixture.server_config(), client, SERVER)
        .await
        .assert_rejected(Side::Server, "UnknownIssuer");
}

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let fixture = Fixture::new();
    // Control: a server that allows anonymous clients lets this very client in.
    let lenient = raw_server(
        fixture.ca_pem(),
        ClientAuth::Optional,
        Credentials::of(&fixture.server),
    );
    let connected = exchange(lenient, raw_client(fixture.ca_pem(), None), SERVER)
        .await
        .assert_connected();
    let err = connected
        .server_saw
        .expect_err("an anonymous peer has no identity");
    assert!(err.contains("no certificate"), "{err}");

    exchange(
        fixture.server_config(),
        raw_client(fixture.ca_pem(), None),
        SERVER,
    )
    .await
    .assert_rejected(Side::Server, "peer sent no certificates");
}

#[tokio::test]
async fn ca_certificate_is_rejected_as_client_leaf() {
    let fixture = Fixture::new();
    fixture.assert_raw_client_with_good_leaf_connects().await;

    let ca = fixture.cluster.ca();
    let client = raw_client(
        fixture.ca_pem(),
        Some(Credentials::from_pem(ca.cert_pem(), &ca.key_pem())),
    );
    exchange(fixture.server_config(), client, SERVER)
        .await
        .assert_rejected(Side::Server, "CaUsedAsEndEntity");
}

#[tokio::test]
async fn ca_certificate_is_rejected_as_server_leaf() {
    let fixture = Fixture::new();
    fixture.assert_raw_server_with_good_leaf_is_accepted().await;

    let ca = fixture.cluster.ca();
    let server = raw_server(
        fixture.ca_pem(),
        ClientAuth::Required,
        Credentials::from_pem(ca.cert_pem(), &ca.key_pem()),
    );
    exchange(server, fixture.client_config(), SERVER_NAME)
        .await
        .assert_rejected(Side::Client, "CaUsedAsEndEntity");
}

#[tokio::test]
async fn expired_leaf_is_rejected_as_client() {
    let fixture = Fixture::new();
    exchange(
        fixture.server_config(),
        fixture.client_config(),
        SERVER_NAME,
    )
    .await
    .assert_connected();

    let old = issue_with(fixture.cluster.ca(), "client", Role::Node, expired()).unwrap();
    let client = identity(&old).client_config(transport()).unwrap();
    exchange(fixture.server_config(), client, SERVER_NAME)
        .await
        .assert_rejected(Side::Server, "certificate expired");
}

#[tokio::test]
async fn expired_leaf_is_rejected_as_server() {
    let fixture = Fixture::new();
    exchange(
        fixture.server_config(),
        fixture.client_config(),
        SERVER_NAME,
    )
    .await
    .assert_connected();

    let old = issue_with(fixture.cluster.ca(), SERVER, Role::Bootstrap, expired()).unwrap();
    let server = identity(&old).server_config(transport()).unwrap();
    exchange(server, fixture.client_config(), SERVER_NAME)
        .await
        .assert_rejected(Side::Client, "certificate expired");
}

/// A leaf signed by the cluster CA with only the given extended key usage.
fn leaf_for_purpose(
    fixture: &Fixture,
    name: &str,
    purpose: rcgen::ExtendedKeyUsagePurpose,
) -> Credentials {
    let ca = fixture.cluster.ca();
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, &issuer).unwrap();
    Credentials::from_pem(&cert.pem(), &key.serialize_pem())
}

#[tokio::test]
async fn leaf_without_client_auth_is_rejected_as_client() {
    let fixture = Fixture::new();
    fixture.assert_raw_client_with_good_leaf_connects().await;

    let server_only = leaf_for_purpose(
        &fixture,
        "client",
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = raw_client(fixture.ca_pem(), Some(server_only));
    exchange(fixture.server_config(), client, SERVER)
        .await
        .assert_rejected(Side::Server, "extended key usage for client authentication");
}

#[tokio::test]
async fn leaf_without_server_auth_is_rejected_as_server() {
    let fixture = Fixture::new();
    fixture.assert_raw_server_with_good_leaf_is_accepted().await;

    let client_only =
        leaf_for_purpose(&fixture, SERVER, rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let server = raw_server(fixture.ca_pem(), ClientAuth::Required, client_only);
    exchange(server, fixture.client_config(), SERVER_NAME)
        .await
        .assert_rejected(Side::Client, "extended key usage for server authentication");
}

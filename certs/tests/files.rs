//! The CA directory and identity directories on disk.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{exchange, transport};
use swarmcast_certs::{CertError, Identity, Role, SERVER_NAME, init_ca, issue, node_id_of};

#[track_caller]
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[track_caller]
fn assert_already_exists(err: CertError, expected: &Path) {
    match err {
        CertError::AlreadyExists { path } => assert_eq!(path, expected),
        other => panic!(
            "expected AlreadyExists({}), got {other}",
            expected.display()
        ),
    }
}

#[test]
fn init_ca_writes_a_private_key_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster"); // created by init_ca
    let paths = init_ca(&dir).unwrap();
    assert_eq!(paths.cert, dir.join("ca.pem"));
    assert_eq!(paths.key, dir.join("ca.key"));
    assert_eq!(mode(&paths.key), 0o600);
    let cert = fs::read(&paths.cert).unwrap();
    let key = fs::read(&paths.key).unwrap();

    assert_already_exists(init_ca(&dir).unwrap_err(), &paths.cert);
    assert_eq!(fs::read(&paths.cert).unwrap(), cert, "ca.pem was rewritten");
    assert_eq!(fs::read(&paths.key).unwrap(), key, "ca.key was rewritten");
}

#[test]
fn init_ca_refuses_when_either_file_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("ca.key");
    fs::write(&key, "precious").unwrap();
    assert_already_exists(init_ca(tmp.path()).unwrap_err(), &key);
    assert_eq!(fs::read_to_string(&key).unwrap(), "precious");
    assert!(!tmp.path().join("ca.pem").exists());

    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("ca.pem");
    fs::write(&cert, "precious").unwrap();
    assert_already_exists(init_ca(tmp.path()).unwrap_err(), &cert);
    assert!(!tmp.path().join("ca.key").exists());
}

#[test]
fn issue_writes_an_identity_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path()).unwrap();
    let paths = issue(tmp.path(), "node-1", Role::Node).unwrap();
    assert_eq!(paths.dir, tmp.path().join("node-1"));
    assert_eq!(paths.cert, paths.dir.join("cert.pem"));
    assert_eq!(paths.key, paths.dir.join("key.pem"));
    assert_eq!(paths.ca, paths.dir.join("ca.pem"));
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(mode(&paths.dir), 0o700);
    assert_eq!(
        fs::read(&paths.ca).unwrap(),
        fs::read(&ca.cert).unwrap(),
        "ca.pem is a copy of the CA certificate"
    );
}

#[test]
fn issue_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    init_ca(tmp.path()).unwrap();
    let paths = issue(tmp.path(), "node-1", Role::Node).unwrap();
    let cert = fs::read(&paths.cert).unwrap();
    let key = fs::read(&paths.key).unwrap();

    assert_already_exists(
        issue(tmp.path(), "node-1", Role::Bootstrap).unwrap_err(),
        &paths.cert,
    );
    assert_eq!(fs::read(&paths.cert).unwrap(), cert);
    assert_eq!(fs::read(&paths.key).unwrap(), key);
}

#[test]
fn issue_rejects_bad_names_before_touching_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    init_ca(&dir).unwrap();
    for bad in [
        "../x", "", "a/b", "UPPER", "..", ".", "-x", "x-", "a.b", "/abs",
    ] {
        match issue(&dir, bad, Role::Node) {
            Err(CertError::InvalidName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    assert_eq!(entries, ["ca.key", "ca.pem"]);
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn issue_without_a_ca_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    match issue(tmp.path(), "node-1", Role::Node) {
        Err(CertError::Read { path, .. }) => assert_eq!(path, tmp.path().join("ca.pem")),
        other => panic!("expected Read error, got {other:?}"),
    }
    assert!(!tmp.path().join("node-1").exists());
}

#[test]
fn role_round_trips_through_files() {
    let tmp = tempfile::tempdir().unwrap();
    init_ca(tmp.path()).unwrap();
    for (name, role) in [("boot-1", Role::Bootstrap), ("node-1", Role::Node)] {
        let paths = issue(tmp.path(), name, role).unwrap();
        let identity = Identity::load(&paths.dir).unwrap();
        assert_eq!(identity.role(), role);
        assert_eq!(identity.name(), name);
        assert_eq!(identity.node_id(), node_id_of(identity.cert_der()).unwrap());
    }
}

#[test]
fn load_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    init_ca(tmp.path()).unwrap();
    let paths = issue(tmp.path(), "node-1", Role::Node).unwrap();
    fs::remove_file(&paths.key).unwrap();
    match Identity::load(&paths.dir) {
        Err(CertError::Read { path, .. }) => assert_eq!(path, paths.key),
        other => panic!("expected Read error, got {other:?}"),
    }
}

#[tokio::test]
async fn identities_loaded_from_files_connect() {
    let tmp = tempfile::tempdir().unwrap();
    init_ca(tmp.path()).unwrap();
    let boot = Identity::load(&issue(tmp.path(), "boot-1", Role::Bootstrap).unwrap().dir).unwrap();
    let node = Identity::load(&issue(tmp.path(), "node-1", Role::Node).unwrap().dir).unwrap();

    let connected = exchange(
        boot.server_config(transport()).unwrap(),
        node.client_config(transport()).unwrap(),
        SERVER_NAME,
    )
    .await
    .assert_connected();
    let client_saw = connected.client_saw.unwrap();
    assert_eq!(
        (client_saw.id, client_saw.name.as_str(), client_saw.role),
        (boot.node_id(), "boot-1", Role::Bootstrap)
    );
    let server_saw = connected.server_saw.unwrap();
    assert_eq!(
        (server_saw.id, server_saw.name.as_str(), server_saw.role),
        (node.node_id(), "node-1", Role::Node)
    );
}

//! Authorization at the bootstrap: identity comes from the certificate, never from a message.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use swarmcast_bootstrap::{BootstrapClient, ClientError};
use swarmcast_certs::Identity;
use swarmcast_net::wire::{self, WireError};
use swarmcast_proto::{
    Delta, Digest, EntryUpdate, ErrorCode, Heartbeat, Limits, Message, NodeRecord, Role, Version,
};

use crate::support::*;

fn forbidden<T: std::fmt::Debug>(r: Result<T, ClientError>) -> bool {
    matches!(
        r,
        Err(ClientError::Wire(WireError::Refused {
            code: ErrorCode::Forbidden,
            ..
        }))
    )
}

fn forbidden_wire<T: std::fmt::Debug>(r: Result<T, WireError>) -> bool {
    matches!(
        r,
        Err(WireError::Refused {
            code: ErrorCode::Forbidden,
            ..
        })
    )
}

#[test]
fn node_cannot_replicate_or_write_another_entry() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let addr = free_addr();
    c.bootstrap("b1", addr, &[])?;
    let n1 = Identity::load(&c.issue("n1", "node")?)?;
    let n2 = Identity::load(&c.issue("n2", "node")?)?;
    wait_for(Duration::from_secs(10), "bootstrap up", || {
        Ok(c.registry(addr).ok())
    })?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let config = n1.client_config(swarmcast_net::transport_config())?;
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let client =
            BootstrapClient::connect(&endpoint, &config, addr, Duration::from_secs(5)).await?;
        let limits = Limits::default();
        let t = Duration::from_secs(5);

        // A node certificate may not replicate: neither pull (digest) nor push (delta).
        let pull = wire::request(
            client.connection(),
            &Message::Digest(Digest::default()),
            &limits,
            t,
        )
        .await;
        assert!(forbidden_wire(pull), "digest from a node must be refused");
        let forged = Delta {
            nodes: vec![EntryUpdate {
                record: NodeRecord {
                    progress_seq: 0,
                    id: n2.node_id(),
                    name: "n2".into(),
                    role: Role::Node,
                    addrs: vec![addr],
                    version: Version::new(99, 99),
                    progress: vec![],
                    pull: false,
                    groups: Vec::new(),
                },
                age_ms: 0,
            }],
            ..Delta::default()
        };
        let push = wire::request(client.connection(), &Message::Delta(forged), &limits, t).await;
        assert!(forbidden_wire(push), "delta from a node must be refused");

        // A registration or heartbeat claiming another NodeId is refused.
        assert!(forbidden(
            client.register(n2.node_id(), 1, vec![addr]).await
        ));
        let hb = Heartbeat {
            progress_span: None,
            progress_removed: Vec::new(),
            id: n2.node_id(),
            version: Version::new(1, 1),
            addrs: vec![addr],
            progress: vec![],
            changes_since: None,
            pull: false,
        };
        assert!(forbidden(client.heartbeat(hb).await));

        // Its own registration is accepted, on the same connection.
        let reg = client.register(n1.node_id(), 1, vec![addr]).await?;
        assert_eq!(reg.id, n1.node_id());
        client.close();
        anyhow::Ok(())
    })?;

    let reg = c.registry(addr)?;
    let names: Vec<&str> = entries(&reg, Role::Node)
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, vec!["n1"], "only n1's own entry exists: {reg:?}");
    Ok(())
}

#[test]
fn bootstrap_refuses_a_node_certificate_as_a_fellow() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let (a, fake) = (free_addr(), free_addr());
    // b1 is told that a "fellow" lives at `fake`, which is really a node daemon's address.
    c.bootstrap("b1", a, &[fake])?;
    c.node("n1", &[a], &["--listen", &fake.to_string()])?;
    wait_for(Duration::from_secs(10), "n1 alive", || {
        Ok(names_with(&c.registry(a)?, Status::Alive)
            .contains(&"n1".to_owned())
            .then_some(()))
    })?;
    std::thread::sleep(ANTI_ENTROPY * 4);
    let reg = c.registry(a)?;
    assert_eq!(
        entries(&reg, Role::Bootstrap).len(),
        1,
        "no fake fellow: {reg:?}"
    );
    let log = std::fs::read_to_string(&c.procs[0].log)?;
    assert!(
        log.contains("not a fellow bootstrap"),
        "b1 says why it refused: {log}"
    );
    Ok(())
}

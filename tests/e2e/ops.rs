//! What an operator meets: private bootstrap data dirs, refused handshakes logged at the
//! bootstrap, certificate renewal and rotation.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};

use crate::support::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A bootstrap (and a node) started under umask 000 keep their data dirs 0700 and their files
/// 0600, and a bootstrap tightens a data dir that was left open.
#[test]
fn bootstrap_data_dir_is_private_under_umask_000() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let (b1, b2) = (free_addr(), free_addr());
    // b2's data dir exists already, open to everyone.
    let open = c.data_dir("b2");
    std::fs::create_dir_all(&open)?;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))?;
    c.bootstrap_umask("b1", b1, &[], "000")?;
    c.bootstrap_umask("b2", b2, &[b1], "000")?;
    c.node_umask("n1", &[b1], &[], "000")?;
    let files = |name: &str| {
        let d = c.data_dir(name);
        [d.join("registry.snapshot"), d.join("incarnation")]
    };
    let written = wait_for(
        Duration::from_secs(30),
        "snapshots written, n1 registered",
        || {
            let snapshots = ["b1", "b2"]
                .iter()
                .all(|b| files(b).iter().all(|f| f.exists()));
            Ok((snapshots && c.status("n1")?.registered).then_some(()))
        },
    );
    if written.is_err() {
        c.dump_logs();
    }
    written?;
    for b in ["b1", "b2"] {
        let d = c.data_dir(b);
        ensure!(mode(&d) == 0o700, "{b} data dir is {:o}", mode(&d));
        for f in files(b) {
            ensure!(mode(&f) == 0o600, "{} is {:o}", f.display(), mode(&f));
        }
    }
    let n1 = c.data_dir("n1");
    ensure!(mode(&n1) == 0o700, "n1 data dir is {:o}", mode(&n1));
    let inc = n1.join("incarnation");
    ensure!(mode(&inc) == 0o600, "n1 incarnation is {:o}", mode(&inc));
    Ok(())
}

/// n2's `log` gets a line with all of `wants` within 10 s, and one "handshake refused" line in
/// all (the refusal is rate-limited, however often the peer tried).
fn refusal_logged_once(log: &Path, wants: &[&str]) -> Result<()> {
    wait_for(Duration::from_secs(10), "n2 logs the refusal", || {
        Ok((!lines_with(log, wants).is_empty()).then_some(()))
    })?;
    let at_node = lines_with(log, &["handshake refused"]);
    ensure!(at_node.len() == 1, "n2: {}", at_node.join("\n"));
    Ok(())
}

/// Lines of `log` that contain every one of `wants`.
fn lines_with(log: &Path, wants: &[&str]) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| wants.iter().all(|w| l.contains(w)))
        .map(str::to_owned)
        .collect()
}

/// A node with another CA's certificate retries for ever: the bootstrap logs the refused
/// handshake with the peer's address and the reason, once per peer and reason per 30 s
/// however often it retries; a node logs refusals on its own listener the same way.
#[test]
fn refused_handshakes_are_logged_at_the_bootstrap_rate_limited() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = free_addr();
    let bi = c.bootstrap("b1", b, &[])?;
    let other = c.path("other-ca");
    let other_s = other.to_string_lossy().into_owned();
    c.cli(&["certs", "init", "--dir", &other_s])?;
    c.cli(&[
        "certs", "issue", "--dir", &other_s, "--name", "n1", "--role", "node",
    ])?;
    let foreign = other.join("n1").to_string_lossy().into_owned();
    // Five one-off clients, each refused, then a daemon that retries on its own.
    for _ in 0..5 {
        let out = std::process::Command::new(bin())
            .args(["registry", "--seed", &b.to_string(), "--identity", &foreign])
            .env("RUST_LOG", "off")
            .output()?;
        ensure!(!out.status.success(), "a foreign client was answered");
    }
    let log = c.procs[bi].log.clone();
    let wants = [
        "handshake refused",
        "remote=127.0.0.1:",
        "UnknownCA",
        "different CAs",
    ];
    let first = wait_for(Duration::from_secs(10), "the refusal logged", || {
        Ok((!lines_with(&log, &wants).is_empty()).then_some(()))
    });
    if first.is_err() {
        c.dump_logs();
    }
    first?;
    let argv = swarmcast_chaos::harness::node_argv(
        &other.join("n1"),
        &c.data_dir("n1"),
        &[b],
        Some(&swarmcast_chaos::harness::Timings::FOR_TEST),
        &[],
    );
    c.spawn("n1", argv)?;
    std::thread::sleep(Duration::from_secs(4));
    let refused = lines_with(&log, &["handshake refused"]);
    ensure!(
        refused.len() == 1,
        "one line per peer and reason per 30 s, got {}:\n{}",
        refused.len(),
        refused.join("\n")
    );
    ensure!(refused[0].contains("held_back=0"), "{}", refused[0]);
    // A node's own listener logs the same way: a foreign client dialling it directly.
    let ni = c.node("n2", &[b], &[])?;
    let listen = wait_for(Duration::from_secs(20), "n2 registered", || {
        let s = c.status("n2")?;
        Ok(s.registered.then_some(s.listen))
    })?;
    for _ in 0..3 {
        let out = std::process::Command::new(bin())
            .args([
                "registry",
                "--seed",
                &listen.to_string(),
                "--identity",
                &foreign,
            ])
            .env("RUST_LOG", "off")
            .output()?;
        ensure!(!out.status.success(), "a foreign client was answered by n2");
    }
    let node_log = c.procs[ni].log.clone();
    refusal_logged_once(&node_log, &wants)
}

/// `certs renew` and a CA rotation on a running fleet: every daemon picks up its re-signed
/// certificate and its trust bundle without a restart (same PIDs, same NodeIds, broadcasts
/// kept), a node that knows only the new CA joins and receives, a client of the old CA alone
/// is refused, and the expiry gauge and the 30-day warning follow the certificate in use.
#[test]
fn certificates_renew_and_the_ca_rotates_without_a_restart() -> Result<()> {
    use crate::metrics::{free_tcp, sample, scrape};
    let _serial = serial();
    let mut c = Cluster::new()?;
    let env: &[(&str, &str)] = &[("SWARMCAST_IDENTITY_RELOAD_MS", "200")];
    let timings = Some(&swarmcast_chaos::harness::Timings::FOR_TEST);
    let b = free_addr();
    let (bm, n1m) = (free_tcp(), free_tcp());
    let certs = c.certs();
    let mut argv = swarmcast_chaos::harness::bootstrap_argv(
        &c.issue("b1", "bootstrap")?,
        b,
        &c.data_dir("b1"),
        &[],
        timings,
    );
    argv.extend(["--metrics".to_owned(), bm.to_string()]);
    let bi = c.spawn_env("b1", argv, env)?;
    for (name, extra) in [("n1", vec!["--metrics", &*n1m.to_string()]), ("n2", vec![])] {
        let argv = swarmcast_chaos::harness::node_argv(
            &c.issue(name, "node")?,
            &c.data_dir(name),
            &[b],
            timings,
            &extra,
        );
        c.spawn_env(name, argv, env)?;
    }
    c.issue("probe", "node")?;
    let joined = wait_for(Duration::from_secs(30), "n1 and n2 alive", || {
        Ok((names_with(&c.registry(b)?, Status::Alive) == ["n1", "n2"]).then_some(()))
    });
    if joined.is_err() {
        c.dump_logs();
    }
    joined?;
    let n1_id = c.status("n1")?.id;
    let expiry = |addr| -> Result<f64> {
        sample(&scrape(addr)?, "swarmcast_cert_expiry_timestamp_seconds")
            .ok_or_else(|| anyhow::anyhow!("no expiry gauge"))
    };
    let first_expiry = expiry(n1m)?;
    ensure!(expiry(bm)? > 0.0, "the bootstrap exports its expiry too");
    let before = c.path("before");
    write_file(&before.join("a.bin"), &pseudo_random(1, 300_000), 0o644)?;
    let send = |c: &Cluster, dir: &Path| -> Result<String> {
        let out = c.cli(&[
            "node",
            "send",
            &dir.to_string_lossy(),
            "--json",
            "--data-dir",
            &c.data_dir("n1").to_string_lossy(),
        ])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        Ok(v["broadcast"]["id"].as_str().unwrap_or_default().to_owned())
    };
    let done = |c: &Cluster, node: &str, id: &str| -> Result<Option<()>> {
        Ok(c.broadcast(node, id)?
            .filter(|b| b.state == BroadcastPhase::Complete)
            .map(|_| ()))
    };
    let old_id = send(&c, &before)?;
    wait_for(
        Duration::from_secs(30),
        "n2 has the first broadcast",
        || done(&c, "n2", &old_id),
    )?;

    // Rotate: a second CA; every identity trusts both; each key re-signed by the new CA
    // (n1 for 20 days only: inside the 30-day warning); then only the new CA is trusted.
    let ca2 = c.path("ca2");
    let ca2_s = ca2.to_string_lossy().into_owned();
    c.cli(&["certs", "init", "--dir", &ca2_s])?;
    let leaves = ["b1", "n1", "n2", "probe"];
    let ca2_pem = std::fs::read_to_string(ca2.join("ca.pem"))?;
    for leaf in leaves {
        let path = certs.join(leaf).join("ca.pem");
        let bundle = std::fs::read_to_string(&path)? + &ca2_pem;
        std::fs::write(&path, bundle)?;
    }
    std::thread::sleep(Duration::from_secs(1));
    for leaf in leaves {
        let dir = certs.join(leaf).to_string_lossy().into_owned();
        let days = if leaf == "n1" { "20" } else { "365" };
        let out = c.cli(&[
            "certs",
            "renew",
            "--dir",
            &ca2_s,
            "--identity",
            &dir,
            "--days",
            days,
        ])?;
        ensure!(out.contains("kept"), "{out}");
    }
    std::thread::sleep(Duration::from_secs(1));
    for leaf in leaves {
        std::fs::write(certs.join(leaf).join("ca.pem"), &ca2_pem)?;
    }
    let reloaded = wait_for(Duration::from_secs(10), "every daemon reloaded", || {
        let all = c.procs.iter().all(|p| {
            let reloads = lines_with(&p.log, &["identity reloaded"]);
            // Trusting both (the bundle, then the renewal, maybe in one reload), then one.
            reloads.iter().any(|l| l.contains("trusted_cas=2"))
                && reloads.last().is_some_and(|l| l.contains("trusted_cas=1"))
        });
        Ok(all.then_some(()))
    });
    if reloaded.is_err() {
        c.dump_logs();
    }
    reloaded?;
    let n1_log = c
        .procs
        .iter()
        .find(|p| p.name == "n1")
        .map(|p| p.log.clone());
    let n1_log = n1_log.unwrap();
    ensure!(
        !lines_with(&n1_log, &["certificate expires soon", "days_left=19"]).is_empty(),
        "n1 warns of its 20-day certificate"
    );
    let second_expiry = expiry(n1m)?;
    ensure!(
        second_expiry < first_expiry - 300.0 * 86_400.0
            && second_expiry > first_expiry - 346.0 * 86_400.0,
        "the gauge follows the renewed 20-day certificate: {first_expiry} then {second_expiry}"
    );

    // A node of the new CA only joins through the same processes and receives old and new.
    c.cli(&[
        "certs", "issue", "--dir", &ca2_s, "--name", "n3", "--role", "node",
    ])?;
    let argv =
        swarmcast_chaos::harness::node_argv(&ca2.join("n3"), &c.data_dir("n3"), &[b], timings, &[]);
    c.spawn_env("n3", argv, env)?;
    let after = c.path("after");
    write_file(&after.join("b.bin"), &pseudo_random(2, 300_000), 0o644)?;
    let joined = wait_for(Duration::from_secs(30), "n3 alive", || {
        Ok((names_with(&c.registry(b)?, Status::Alive) == ["n1", "n2", "n3"]).then_some(()))
    });
    if joined.is_err() {
        c.dump_logs();
    }
    joined?;
    let new_id = send(&c, &after)?;
    for (node, id) in [("n2", &new_id), ("n3", &new_id), ("n3", &old_id)] {
        wait_for(Duration::from_secs(30), &format!("{node} has {id}"), || {
            done(&c, node, id)
        })?;
    }
    assert_same_tree(&before, &c.data_dir("n3").join("received/before"));
    assert_same_tree(&after, &c.data_dir("n3").join("received/after"));
    ensure!(c.status("n1")?.id == n1_id, "n1 kept its NodeId");
    for p in &mut c.procs {
        ensure!(p.exited().is_none(), "{} restarted or died", p.name);
    }
    ensure!(
        lines_with(&c.procs[bi].log, &["bootstrap listening"]).len() == 1,
        "b1 started once"
    );
    // A client holding only the old CA's certificate is refused now.
    let old = c.issue("old-client", "node")?;
    let out = std::process::Command::new(bin())
        .args(["registry", "--seed", &b.to_string(), "--identity"])
        .arg(&old)
        .env("RUST_LOG", "off")
        .output()?;
    ensure!(
        !out.status.success(),
        "a client of the retired CA was answered"
    );
    Ok(())
}

/// `swarmcast ARGS`, whatever its exit code, with logging off.
fn run_quiet(args: &[&str]) -> Result<std::process::Output> {
    Ok(std::process::Command::new(bin())
        .args(args)
        .env("RUST_LOG", "off")
        .output()?)
}

/// Dial `addr` from this process with the identity in `dir` and ask something: the error that
/// ends the connection (`None` if it was answered).
fn dial_and_ask(dir: &Path, addr: std::net::SocketAddr) -> Result<Option<quinn::ConnectionError>> {
    use swarmcast_proto::{Limits, ManifestRequest, Message};
    swarmcast_certs::install_crypto_provider();
    let identity = swarmcast_certs::Identity::load(dir)?;
    let config = identity.client_config(swarmcast_net::transport_config())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        let t = Duration::from_secs(5);
        let conn = match swarmcast_net::connect(&endpoint, &config, addr, t).await {
            Ok((conn, _)) => conn,
            Err(swarmcast_net::DialError::Wire(swarmcast_net::WireError::Connection(e))) => {
                return Ok(Some(e));
            }
            Err(e) => anyhow::bail!("dial {addr}: {e}"),
        };
        // In QUIC the client's handshake may end before the server has judged its
        // certificate: the refusal then closes the connection.
        let ask = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            let m = Message::ManifestRequest(ManifestRequest {
                broadcast: swarmcast_proto::BroadcastId([0; 32]),
            });
            let limits = Limits::default();
            swarmcast_net::wire::write_message(&mut send, &m, &limits).await?;
            send.finish()?;
            swarmcast_net::wire::read_header(&mut recv, &limits).await?;
            Ok::<_, anyhow::Error>(())
        };
        let asked = tokio::time::timeout(t, ask).await;
        let closed = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
        endpoint.close(0u32.into(), b"done");
        match (asked, closed) {
            (_, Ok(e)) if !matches!(e, quinn::ConnectionError::LocallyClosed) => Ok(Some(e)),
            (Ok(Ok(())), _) => Ok(None),
            (asked, _) => anyhow::bail!("neither answered nor refused: {asked:?}"),
        }
    })
}

/// A node whose certificate has expired (`certs issue --not-after` in the past) is refused.
/// By a bootstrap: its `node join --join-timeout` exits 1 saying the certificate expired, it
/// never appears in the registry, and the bootstrap logs the refusal with the peer's address
/// and the reason, one line however often it is retried. By another node: a direct QUIC
/// connection from this process with the expired certificate is closed by the node's
/// `certificate_expired` alert, and the node logs that once too. Bad `--days` or `--not-after`
/// input exits 2 and writes nothing.
#[test]
fn an_expired_node_certificate_is_refused_by_bootstraps_and_nodes() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let certs = c.certs();
    let certs_s = certs.to_string_lossy().into_owned();
    let issue = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "certs", "issue", "--dir", &certs_s, "--name", name, "--role", "node",
        ];
        args.extend(extra);
        run_quiet(&args)
    };
    for bad in [
        &["--not-after", "yesterday"][..],
        &["--not-after", "2020-13-01T00:00:00Z"],
        &["--not-after", "1960-01-01T00:00:00Z"],
        &["--not-after", "9999-01-01T00:00:00Z"],
        &["--days", "0"],
        &["--days", "3651"],
        &["--days", "3", "--not-after", "2020-01-01T00:00:00Z"],
    ] {
        let out = issue("bad", bad)?;
        ensure!(out.status.code() == Some(2), "{bad:?}: {out:?}");
        ensure!(!certs.join("bad").exists(), "{bad:?} wrote something");
    }
    let out = issue("stale", &["--not-after", "2020-01-01T00:00:00Z"])?;
    ensure!(out.status.success(), "{out:?}");
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains("valid until 2020-01-01 0:00:00"),
        "{out:?}"
    );
    let stale = certs.join("stale");

    let b = free_addr();
    let bi = c.bootstrap("b1", b, &[])?;
    c.node("n2", &[b], &[])?;
    let listen = wait_for(Duration::from_secs(20), "n2 registered", || {
        let s = c.status("n2")?;
        Ok(s.registered.then_some(s.listen))
    })?;

    // The expired node retries until its join timeout, and gives up saying why.
    let argv = swarmcast_chaos::harness::node_argv(
        &stale,
        &c.data_dir("stale"),
        &[b],
        Some(&swarmcast_chaos::harness::Timings::FOR_TEST),
        &["--join-timeout", "3s"],
    );
    let si = c.spawn("stale", argv)?;
    let status = c.procs[si].wait_exit(Duration::from_secs(20));
    let stale_log = std::fs::read_to_string(&c.procs[si].log)?;
    ensure!(
        status.and_then(|s| s.code()) == Some(1),
        "the expired node: {status:?}\n{stale_log}"
    );
    ensure!(
        stale_log.contains("CertificateExpired")
            && stale_log.contains("this node's certificate has expired"),
        "the expired node does not say why:\n{stale_log}"
    );
    // A few one-off clients with the same certificate: refused the same way.
    for _ in 0..3 {
        let out = run_quiet(&[
            "registry",
            "--seed",
            &b.to_string(),
            "--identity",
            &stale.to_string_lossy(),
        ])?;
        ensure!(!out.status.success(), "an expired client was answered");
    }
    let reg = c.registry(b)?;
    ensure!(
        entries(&reg, Role::Node).iter().all(|e| e.name != "stale"),
        "the expired node registered"
    );
    let wants = [
        "handshake refused",
        "remote=127.0.0.1:",
        "CertificateExpired",
        "peer's certificate has expired",
    ];
    let log = c.procs[bi].log.clone();
    let logged = wait_for(Duration::from_secs(10), "the bootstrap logs it", || {
        Ok((!lines_with(&log, &wants).is_empty()).then_some(()))
    });
    if logged.is_err() {
        c.dump_logs();
    }
    logged?;
    let refused = lines_with(&log, &["handshake refused"]);
    ensure!(
        refused.len() == 1 && refused[0].contains("held_back=0"),
        "one line per peer and reason per 30 s:\n{}",
        refused.join("\n")
    );

    // Another node refuses it too: this process dials n2 with the expired certificate.
    for _ in 0..2 {
        let error = dial_and_ask(&stale, listen)?;
        let refusal = error.as_ref().and_then(swarmcast_net::CertRefusal::of);
        ensure!(
            refusal.is_some_and(|r| r.by == swarmcast_net::RefusedBy::Peer && r.alert == 45),
            "n2 did not refuse the expired certificate: {error:?}"
        );
    }
    // The same process with a valid certificate is answered (so the refusal was the
    // certificate's).
    let probe = c.issue("probe", "node")?;
    ensure!(
        dial_and_ask(&probe, listen)?.is_none(),
        "a valid certificate was refused"
    );
    let node_log = c
        .procs
        .iter()
        .find(|p| p.name == "n2")
        .map(|p| p.log.clone())
        .expect("n2 runs");
    refusal_logged_once(&node_log, &wants)
}

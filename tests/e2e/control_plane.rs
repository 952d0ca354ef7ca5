//! The control plane: bootstrap quorum, registration, failover, churn detection, replacement.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::support::*;

const NODES: [&str; 6] = ["n1", "n2", "n3", "n4", "n5", "n6"];

/// 3 bootstraps replicating with each other; returns their addresses.
fn start_bootstraps(c: &mut Cluster) -> Result<Vec<std::net::SocketAddr>> {
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    for (i, a) in addrs.iter().enumerate() {
        let peers: Vec<_> = addrs.iter().copied().filter(|p| p != a).collect();
        c.bootstrap(&format!("b{}", i + 1), *a, &peers)?;
    }
    Ok(addrs)
}

/// Start the six nodes, spread over the seeds: each starts with a different first seed.
fn start_nodes(c: &mut Cluster, b: &[std::net::SocketAddr], extra: &[&str]) -> Result<()> {
    for (i, n) in NODES.iter().enumerate() {
        let seeds = [b[i % 3], b[(i + 1) % 3], b[(i + 2) % 3]];
        c.node(n, &seeds, extra)?;
    }
    Ok(())
}

fn registered(c: &Cluster, name: &str) -> Result<Option<NodeStatus>> {
    let s = c.status(name)?;
    Ok((s.registered && s.bootstrap.is_some()).then_some(s))
}

fn alive_names(c: &Cluster, b: std::net::SocketAddr) -> Result<Vec<String>> {
    Ok(names_with(&c.registry(b)?, Status::Alive))
}

fn expected(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[test]
fn three_bootstraps_list_six_nodes_alive() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = start_bootstraps(&mut c)?;
    start_nodes(&mut c, &b, &[])?;
    for n in NODES {
        wait_for(Duration::from_secs(20), &format!("{n} registered"), || {
            registered(&c, n)
        })?;
    }
    let last_join = Instant::now();
    for addr in &b {
        wait_for(
            Duration::from_secs(3),
            &format!("6 nodes alive at {addr}"),
            || Ok((alive_names(&c, *addr)? == expected(&NODES)).then_some(())),
        )?;
    }
    let took = last_join.elapsed();
    eprintln!("all 3 bootstraps list 6 nodes alive {took:?} after the last registration");
    assert!(took <= Duration::from_secs(3), "took {took:?}");
    // Every bootstrap also lists its two fellows (and itself) as bootstraps.
    for addr in &b {
        let reg = c.registry(*addr)?;
        assert_eq!(entries(&reg, Role::Bootstrap).len(), 3, "{reg:?}");
    }
    Ok(())
}

#[test]
fn survives_losing_two_bootstraps_and_heals_a_wiped_one() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = start_bootstraps(&mut c)?;
    start_nodes(&mut c, &b, &[])?;
    for addr in &b {
        wait_for(Duration::from_secs(20), "6 nodes alive everywhere", || {
            Ok((alive_names(&c, *addr)? == expected(&NODES)).then_some(()))
        })?;
    }
    // SIGKILL b1 and b2 (procs 0 and 1); b3 survives.
    c.procs[0].kill();
    c.procs[1].kill();
    let killed_at = Instant::now();
    // A new node whose seed list names all three, dead ones first.
    c.node("n7", &[b[0], b[1], b[2]], &[])?;
    let s = wait_for(
        Duration::from_secs(20),
        "n7 registered through the survivor",
        || registered(&c, "n7"),
    )?;
    assert_eq!(s.bootstrap, Some(b[2]), "{s:?}");
    // Past the dead timeout, every node is alive at the survivor: all failed over.
    std::thread::sleep((DEAD + HEARTBEAT * 2).saturating_sub(killed_at.elapsed()));
    let all: Vec<&str> = NODES.iter().copied().chain(["n7"]).collect();
    wait_for(
        Duration::from_secs(5),
        "7 nodes alive at the survivor",
        || Ok((alive_names(&c, b[2])? == expected(&all)).then_some(())),
    )?;
    for n in NODES {
        let s = c.status(n)?;
        assert_eq!(s.bootstrap, Some(b[2]), "{n} failed over: {s:?}");
    }
    // Restart b1 with a wiped data dir on the same address.
    std::fs::remove_dir_all(c.data_dir("b1"))?;
    c.bootstrap("b1", b[0], &[b[1], b[2]])?;
    let first = wait_for(Duration::from_secs(10), "restarted b1 answers", || {
        Ok(c.registry(b[0]).ok().map(|_| Instant::now()))
    })?;
    let key = |reg: &RegistryListing| -> BTreeSet<(String, u64)> {
        entries(reg, Role::Node)
            .into_iter()
            .map(|e| (e.id.clone(), e.incarnation))
            .collect()
    };
    wait_for(
        Duration::from_secs(5),
        "wiped b1 equals the survivor",
        || {
            let (r1, r3) = (c.registry(b[0])?, c.registry(b[2])?);
            Ok(
                (key(&r1) == key(&r3) && names_with(&r1, Status::Alive) == expected(&all))
                    .then_some(()),
            )
        },
    )?;
    let healed = first.elapsed();
    eprintln!("wiped bootstrap whole again {healed:?} after its first answer");
    // Two anti-entropy rounds, plus the time one `registry` call takes on a loaded machine.
    assert!(
        healed <= ANTI_ENTROPY * 2 + Duration::from_millis(1500),
        "{healed:?}"
    );
    Ok(())
}

fn neighbour_ids(s: &NodeStatus) -> BTreeSet<String> {
    s.neighbours
        .iter()
        .filter(|n| n.state == "connected")
        .map(|n| n.id.clone())
        .collect()
}

#[test]
fn killed_node_is_detected_replaced_and_rejoins_once() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let b = start_bootstraps(&mut c)?;
    // Two neighbours each among six nodes, so that a replacement exists.
    start_nodes(&mut c, &b, &["--neighbours", "2"])?;
    for addr in &b {
        wait_for(Duration::from_secs(20), "6 nodes alive everywhere", || {
            Ok((alive_names(&c, *addr)? == expected(&NODES)).then_some(()))
        })?;
    }
    for n in NODES {
        wait_for(Duration::from_secs(10), "2 neighbours each", || {
            Ok((neighbour_ids(&c.status(n)?).len() >= 2).then_some(()))
        })?;
    }
    let victim = "n1";
    let victim_status = c.status(victim)?;
    let victim_id = victim_status.id.clone();
    let incarnation = victim_status.incarnation;
    let mut former = Vec::new();
    for n in &NODES[1..] {
        if neighbour_ids(&c.status(n)?).contains(&victim_id) {
            former.push(*n);
        }
    }
    assert!(!former.is_empty(), "n1 had no neighbours");
    let victim_proc = 3; // procs: b1 b2 b3 n1 ...
    c.procs[victim_proc].kill();
    let killed = Instant::now();

    // Each former neighbour drops n1 and connects a replacement.
    let mut replaced = Vec::new();
    for n in &former {
        let t = wait_for(Duration::from_secs(15), &format!("{n} replaces n1"), || {
            let ids = neighbour_ids(&c.status(n)?);
            Ok((!ids.contains(&victim_id) && ids.len() >= 2).then(|| killed.elapsed()))
        })?;
        replaced.push((*n, t));
    }
    // Every bootstrap marks it dead.
    let mut dead_at = Vec::new();
    for addr in &b {
        let t = wait_for(Duration::from_secs(15), "n1 dead", || {
            Ok(names_with(&c.registry(*addr)?, Status::Dead)
                .contains(&victim.to_owned())
                .then(|| killed.elapsed()))
        })?;
        dead_at.push(t);
    }
    eprintln!(
        "n1 dead at the bootstraps after {dead_at:?}; replaced by former neighbours after {replaced:?}"
    );
    let detection_bound = DEAD + ANTI_ENTROPY + Duration::from_millis(1500);
    for t in &dead_at {
        assert!(
            *t <= detection_bound,
            "dead after {t:?} > {detection_bound:?}"
        );
        assert!(*t >= SUSPECT, "dead after only {t:?}: too eager");
    }
    // The fleet is idle, so its links are pinged slowly (every 5 s) and the loss comes through
    // the registry: dead there (DEAD after the last heartbeat, plus an anti-entropy round at a
    // bootstrap that heard it second-hand), learnt at the next heartbeat, then a replacement
    // dial. (During a transfer, pings lose a neighbour in 1.75 s; see neighbours_sim.)
    let replace_bound = DEAD + ANTI_ENTROPY + HEARTBEAT * 2 + Duration::from_millis(1500);
    for (n, t) in &replaced {
        assert!(
            *t <= replace_bound,
            "{n} replaced after {t:?} > {replace_bound:?}"
        );
    }

    // Restart n1 with its data dir: one entry, higher incarnation, alive.
    c.node(victim, &[b[0], b[1], b[2]], &["--neighbours", "2"])?;
    for addr in &b {
        wait_for(Duration::from_secs(10), "n1 alive again", || {
            let reg = c.registry(*addr)?;
            let mine: Vec<&ListedEntry> = entries(&reg, Role::Node)
                .into_iter()
                .filter(|e| e.name == victim)
                .collect();
            if mine.len() > 1 {
                anyhow::bail!("duplicate entries for n1: {reg:?}");
            }
            Ok(mine
                .first()
                .filter(|e| e.status == Status::Alive && e.incarnation > incarnation)
                .map(|_| ()))
        })?;
        let reg = c.registry(*addr)?;
        assert_eq!(
            entries(&reg, Role::Node)
                .into_iter()
                .filter(|e| e.name == victim)
                .count(),
            1
        );
        assert_eq!(names_with(&reg, Status::Alive), expected(&NODES));
    }
    Ok(())
}

#[test]
fn join_timeout_exits_1_when_no_seed_answers() -> Result<()> {
    let _serial = serial();
    let mut c = Cluster::new()?;
    let nobody = free_addr();
    let i = c.node("n1", &[nobody], &["--join-timeout", "2s"])?;
    let status = c.procs[i].wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "join timeout exit code"
    );
    let log = std::fs::read_to_string(&c.procs[i].log)?;
    assert!(
        log.contains("no seed accepted the registration"),
        "log says why: {log}"
    );
    Ok(())
}

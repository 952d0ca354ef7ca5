//! `bench swarm` on a tiny configuration in the netns lab, and the client-server strategy it
//! compares with. Runs when `SWARMCAST_NETNS=1` (root; CI), skipped with a note otherwise.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{SERIAL, exe, netns_wanted};
use swarmcast_chaos::lab_bench::{self, Strategy, SwarmBenchConfig};
use swarmcast_chaos::netns::Shaper;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_strategies_deliver_and_only_the_swarm_offloads_the_origin() {
    if !netns_wanted() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let config = SwarmBenchConfig {
        receivers: 3,
        size: 6 << 20,
        rate_mbit: 100.0,
        host_rates: BTreeMap::from([("r3".to_owned(), 50.0)]),
        chunk_size: Some(128 << 10),
        shaper: Shaper::HtbBoth,
        delay_ms: 0.0,
        loss_pct: 0.0,
        strategies: vec![Strategy::Swarm, Strategy::OriginOnly],
        timeout: Duration::from_secs(120),
        sample: Duration::from_millis(200),
        trace: None,
        origin_flags: Vec::new(),
        node_flags: Vec::new(),
    };
    let r = lab_bench::run(exe(), &config)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.runs.len(), 2);
    // The slow receiver sets d_min: T* = F / (50 Mbit/s).
    let f = r.bytes as f64;
    assert!((r.t_star_s - f / 6.25e6).abs() < 1e-9, "{}", r.t_star_s);
    assert!((r.client_server_bound_s - 3.0 * f / 12.5e6).abs() < 1e-9);
    for run in &r.runs {
        assert_eq!(run.completion_s.len(), 3, "{run:?}");
        assert_eq!(run.chunk_size, 128 << 10, "node send got --chunk-size");
        // node send --wait returns after the last completion it waits for.
        assert!(run.t_user_s >= run.last_done_s - 0.2, "{run:?}");
        // Shaped links: nothing beats its bound (a little slack for counting).
        assert!(
            run.ratio > 0.95,
            "{:?} faster than its bound: {run:?}",
            run.strategy
        );
        assert!(!run.utilisation.is_empty());
    }
    let (swarm, cs) = (&r.runs[0], &r.runs[1]);
    // Client-server: the origin sends every receiver its own copy.
    assert!(
        cs.origin_upload >= 2.95,
        "origin-only uploads 3 copies: {}",
        cs.origin_upload
    );
    // The swarm's receivers serve each other: the origin sends well under three copies.
    assert!(
        swarm.origin_upload < 2.0,
        "swarm origin upload {}",
        swarm.origin_upload
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_swarm_names_an_unknown_host() {
    if !netns_wanted() {
        return;
    }
    let config = SwarmBenchConfig {
        receivers: 2,
        size: 1 << 20,
        rate_mbit: 100.0,
        host_rates: BTreeMap::from([("r9".to_owned(), 50.0)]),
        chunk_size: None,
        shaper: Shaper::HtbBoth,
        delay_ms: 0.0,
        loss_pct: 0.0,
        strategies: vec![Strategy::Swarm],
        timeout: Duration::from_secs(60),
        sample: Duration::from_millis(200),
        trace: None,
        origin_flags: Vec::new(),
        node_flags: Vec::new(),
    };
    let e = lab_bench::run(exe(), &config)
        .await
        .expect_err("r9 is not a host");
    assert!(format!("{e:#}").contains("r9"), "{e:#}");
}

/// The product's defaults on uplink-only tbf links, traced: node send's own chunk size, and a
/// summary that accounts for every receiver's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_run_on_tbf_uplinks_with_the_product_defaults() {
    if !netns_wanted() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SwarmBenchConfig {
        receivers: 3,
        size: 6 << 20,
        rate_mbit: 100.0,
        host_rates: BTreeMap::new(),
        chunk_size: None,
        shaper: Shaper::TbfUplink,
        delay_ms: 0.0,
        loss_pct: 0.0,
        strategies: vec![Strategy::Swarm],
        timeout: Duration::from_secs(120),
        sample: Duration::from_millis(200),
        trace: Some(dir.path().to_owned()),
        origin_flags: Vec::new(),
        node_flags: Vec::new(),
    };
    let r = lab_bench::run(exe(), &config)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(r.experiments.is_empty(), "{:?}", r.experiments);
    // Downloads unshaped: T* is F/u_s alone here (every host at 100 Mbit/s).
    let f = r.bytes as f64;
    assert!((r.t_star_s - f / 12.5e6).abs() < 1e-9, "{}", r.t_star_s);
    let run = &r.runs[0];
    assert_eq!(
        run.chunk_size,
        swarmcast_node::manifest::DEFAULT_CHUNK_SIZE,
        "node send's default"
    );
    assert_eq!(run.completion_source, "trace");
    assert_eq!(run.completion_s.len(), 3);
    let first = run.first_request_s.expect("first request from the trace");
    assert!(first > 0.0 && first < run.last_done_s, "{run:?}");
    assert!(run.t_user_s >= run.last_done_s, "{run:?}");
    let t = run.trace.as_ref().expect("trace summary");
    assert_eq!(t.hosts.len(), 4, "origin and 3 receivers");
    assert_eq!(t.hosts[0].name, "origin");
    for h in &t.hosts[1..] {
        // Every receiver got at least one copy's worth, from the origin or its peers.
        assert!(
            h.from_origin_bytes + h.from_peers_bytes >= r.bytes,
            "{}: {} + {} < {}",
            h.name,
            h.from_origin_bytes,
            h.from_peers_bytes,
            r.bytes
        );
        assert!(h.done_s.is_some() && h.node.is_some(), "{h:?}");
        assert!(
            h.depth.contains_key("origin") || h.from_origin_bytes == 0,
            "{h:?}"
        );
        assert!(h.wire_down_bytes >= r.bytes, "{h:?}");
    }
    assert!(t.hosts[0].served > 0);
    assert!(t.wait_lag_s.is_some());
    for suffix in [
        "summary.txt",
        "summary.json",
        "links.jsonl",
        "origin.jsonl",
        "r3.jsonl",
    ] {
        let p = dir.path().join(format!("run0-swarm-{suffix}"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} missing or empty", p.display());
    }
}

//! `bench swarm` on a tiny configuration in the netns lab, and the client-server strategy it
//! compares with. Runs when `SWARMCAST_NETNS=1` (root; CI), skipped with a note otherwise.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{SERIAL, exe, netns_wanted};
use swarmcast_chaos::lab_bench::{self, Strategy, SwarmBenchConfig};

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
        chunk_size: 256 << 10,
        strategies: vec![Strategy::Swarm, Strategy::OriginOnly],
        timeout: Duration::from_secs(120),
        sample: Duration::from_millis(200),
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
        chunk_size: 256 << 10,
        strategies: vec![Strategy::Swarm],
        timeout: Duration::from_secs(60),
        sample: Duration::from_millis(200),
    };
    let e = lab_bench::run(exe(), &config)
        .await
        .expect_err("r9 is not a host");
    assert!(format!("{e:#}").contains("r9"), "{e:#}");
}

//! `swarmcast bench local | swarm | pair | files | idle`: each run's line on stderr, the summary on
//! stdout.

use std::time::Duration;

use anyhow::Result;
use swarmcast_chaos::{bench, files, idle, lab_bench, pair, registry_bench};

use super::{current_exe, runtime, until_signal, usage_error};
use crate::cli::{
    BenchCommand, BenchFilesArgs, BenchIdleArgs, BenchLocalArgs, BenchPairArgs, BenchRegistryArgs,
    BenchStrategy, ShapeArg, SwarmBenchArgs,
};

pub(crate) fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Local(args) => local(args),
        BenchCommand::Swarm(args) => swarm(args),
        BenchCommand::Pair(args) => bench_pair(args),
        BenchCommand::Files(args) => bench_files(args),
        BenchCommand::Versions(args) => bench_versions(args),
        BenchCommand::Idle(args) => bench_idle(args),
        BenchCommand::Registry(args) => bench_registry(args),
        BenchCommand::Sends(args) => bench_sends(args),
    }
}

/// `bench sends`: each run's JSON on stderr, the summary on stdout.
fn bench_sends(args: crate::cli::BenchSendsArgs) -> Result<()> {
    use swarmcast_chaos::bench::Spread;
    use swarmcast_chaos::sends_bench::{self, SendsConfig};
    let config = SendsConfig {
        count: args.count,
        receivers: args.receivers,
        bootstraps: args.bootstraps,
        idle: Duration::from_secs(args.idle_seconds),
        timeout: args.timeout,
        wait: args.wait,
        file_bytes: usize::try_from(args.file_size).unwrap_or(usize::MAX),
    };
    let exe = match args.exe {
        Some(e) => e,
        None => current_exe()?,
    };
    let rt = runtime()?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = until_signal(&rt, sends_bench::run(exe.clone(), &config))?;
        eprintln!("run {i}/{}: {}", args.runs, serde_json::to_string(&r)?);
        runs.push(r);
    }
    let spread = |f: &dyn Fn(&sends_bench::SendsRun) -> f64| Spread::of(runs.iter().map(f));
    let mut procs = Vec::new();
    for (k, p) in runs[0].procs.iter().enumerate() {
        let of = |f: &dyn Fn(&sends_bench::ProcFigures) -> f64| {
            Spread::of(runs.iter().filter_map(|r| r.procs.get(k)).map(f))
        };
        procs.push(serde_json::json!({
            "name": p.name,
            "rss_mib": of(&|p| p.rss_mib),
            "idle_cpu_fresh_percent": of(&|p| p.idle_cpu_fresh_percent),
            "idle_cpu_after_percent": of(&|p| p.idle_cpu_after_percent),
            "heartbeat_progress_items": of(&|p| p.heartbeat_progress_items.unwrap_or(0) as f64),
            "heartbeat_bytes": of(&|p| p.heartbeat_bytes.unwrap_or(0) as f64),
        }));
    }
    let summary = serde_json::json!({
        "count": args.count,
        "receivers": args.receivers,
        "bootstraps": args.bootstraps,
        "runs": runs.len(),
        "first_100_send_ms_median": spread(&|r| r.first_send_ms.median),
        "last_100_send_ms_median": spread(&|r| r.last_send_ms.median),
        "sends_s": spread(&|r| r.sends_s),
        "complete_s": spread(&|r| r.complete_s),
        "send_wait_ms": runs.iter().filter_map(|r| r.send_wait_ms).collect::<Vec<_>>(),
        "procs": procs,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// `bench versions`: each run on stderr, the summary on stdout.
fn bench_versions(args: crate::cli::BenchVersionsArgs) -> Result<()> {
    use crate::cli::ChangeArg;
    use swarmcast_chaos::bench::Spread;
    use swarmcast_chaos::versions_bench::{self, Change, VersionsConfig};
    let changes = match args.change {
        ChangeArg::Rewrite => vec![Change::Rewrite],
        ChangeArg::Append => vec![Change::Append],
        ChangeArg::Insert => vec![Change::Insert],
        ChangeArg::InsertShifted => vec![Change::InsertShifted],
        ChangeArg::All => vec![
            Change::Rewrite,
            Change::Append,
            Change::Insert,
            Change::InsertShifted,
        ],
    };
    if args.size < args.files {
        usage_error(
            &["bench", "versions"],
            "--size must be at least --files bytes",
        );
    }
    let exe = current_exe()?;
    let rt = runtime()?;
    let mut summary = Vec::new();
    for change in changes {
        let config = VersionsConfig {
            size: args.size,
            files: args.files,
            receivers: args.receivers,
            change,
            timeout: args.timeout,
        };
        let mut runs = Vec::new();
        for i in 1..=args.runs {
            let r = until_signal(&rt, versions_bench::run(exe.clone(), &config))?;
            eprintln!(
                "{change:?} run {i}/{}: first {:.2} s, second {:.2} s ({:.3} of the first), hashed {} B, fetched {:.4} x F{}",
                args.runs,
                r.first_s,
                r.second_s,
                r.time_ratio(),
                r.second_hashed_bytes,
                r.fetched_over_f(),
                if args.json {
                    format!(" {}", serde_json::to_string(&r)?)
                } else {
                    String::new()
                }
            );
            runs.push(r);
        }
        let spread =
            |f: &dyn Fn(&versions_bench::VersionsRun) -> f64| Spread::of(runs.iter().map(f));
        let line = serde_json::json!({
            "change": change,
            "bytes": runs[0].bytes,
            "changed_bytes": runs[0].changed_bytes,
            "first_s": spread(&|r| r.first_s),
            "second_s": spread(&|r| r.second_s),
            "second_over_first": spread(&|r| r.time_ratio()),
            "fetched_over_f": spread(&|r| r.fetched_over_f()),
            "second_hashed_bytes": spread(&|r| r.second_hashed_bytes as f64),
        });
        summary.push(line);
    }
    outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    Ok(())
}

/// `bench idle`: the report on stdout.
fn bench_idle(args: BenchIdleArgs) -> Result<()> {
    let config = idle::IdleConfig {
        nodes: args.nodes,
        bootstraps: args.bootstraps,
        window: Duration::from_secs(args.seconds),
        settle: args.settle,
        join_timeout: Duration::from_secs(60) + Duration::from_millis(300) * args.nodes as u32,
        netns: args.netns,
    };
    if let Err(e) = config.validate() {
        usage_error(&["bench", "idle"], format!("{e:#}"));
    }
    if args.netns {
        swarmcast_chaos::netns::preflight()?;
    }
    let exe = match args.exe {
        Some(e) => e,
        None => current_exe()?,
    };
    let report = until_signal(&runtime()?, idle::run(exe, &config))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.to_json())?)?;
    } else {
        out!("{}", report.to_text())?;
    }
    Ok(())
}

/// `bench registry`: the report on stdout.
fn bench_registry(args: BenchRegistryArgs) -> Result<()> {
    let config = registry_bench::RegistryConfig {
        nodes: args.nodes,
        bootstraps: args.bootstraps,
        window: Duration::from_secs(args.seconds),
        settle: args.settle,
        heartbeat: swarmcast_chaos::idle::DEFAULT_TIMINGS.heartbeat,
        sockets: args.sockets,
        probes: args.probes,
        join_concurrency: 64,
    };
    if let Err(e) = config.validate() {
        usage_error(&["bench", "registry"], format!("{e:#}"));
    }
    let exe = match args.exe {
        Some(e) => e,
        None => current_exe()?,
    };
    let report = until_signal(&runtime()?, registry_bench::run(exe, &config))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.to_json())?)?;
    } else {
        out!("{}", report.to_text())?;
    }
    Ok(())
}

/// `bench local`: the runs' JSON lines, then the median, min and max transfer time.
fn local(args: BenchLocalArgs) -> Result<()> {
    let config = bench::BenchConfig {
        receivers: args.receivers,
        size: args.size,
        files: args.files,
        chunk_size: args.chunk_size,
        timeout: args.timeout,
    };
    let exe = current_exe()?;
    let rt = runtime()?;
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let r = until_signal(&rt, bench::run(exe.clone(), &config))?;
        let j = r.to_json(&config);
        eprintln!("run {run}/{}: {j}", args.runs);
        results.push(j);
    }
    let mut secs: Vec<f64> = results
        .iter()
        .filter_map(|r| r["transfer_s"].as_f64())
        .collect();
    secs.sort_by(f64::total_cmp);
    let (Some(min), Some(max)) = (secs.first(), secs.last()) else {
        anyhow::bail!("no run reported a transfer time");
    };
    let spread =
        |key: &str| bench::Spread::of(results.iter().filter_map(|r| r[key].as_f64())).to_json();
    let summary = serde_json::json!({
        "transfer_s": { "median": secs[secs.len() / 2], "min": min, "max": max },
        "origin_cpu_s_per_gib": spread("origin_cpu_s_per_gib"),
        "receiver_cpu_s_per_gib": spread("receiver_cpu_s_per_gib"),
        "runs": results,
    });
    outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    Ok(())
}

/// `bench swarm`: the netns lab against T*.
fn swarm(args: SwarmBenchArgs) -> Result<()> {
    use lab_bench::Strategy;
    use swarmcast_chaos::netns::Shaper;
    if let Some(c) = args.chunk_size
        && let Err(e) = swarmcast_node::manifest::ManifestLimits::default().check_chunk_size(c)
    {
        usage_error(&["bench", "swarm"], format!("--chunk-size: {e}"));
    }
    swarmcast_chaos::netns::preflight()?;
    let config = lab_bench::SwarmBenchConfig {
        receivers: args.receivers,
        size: args.size,
        rate_mbit: args.rate_mbit,
        host_rates: args.host_rates.into_iter().collect(),
        chunk_size: args.chunk_size,
        shaper: match args.shape {
            ShapeArg::HtbBoth => Shaper::HtbBoth,
            ShapeArg::TbfUplink => Shaper::TbfUplink,
        },
        delay_ms: args.delay_ms,
        loss_pct: args.loss_pct,
        trace: args.trace,
        strategies: match args.strategy {
            BenchStrategy::Both => vec![Strategy::Swarm, Strategy::OriginOnly],
            BenchStrategy::Swarm => vec![Strategy::Swarm],
            BenchStrategy::OriginOnly => vec![Strategy::OriginOnly],
        },
        timeout: args.timeout,
        sample: Duration::from_millis(100),
        origin_flags: args.origin_flags,
        node_flags: args.node_flags,
    };
    let report = until_signal(&runtime()?, lab_bench::run(current_exe()?, &config))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", report.summary())?;
    }
    Ok(())
}

/// `bench pair`: swarmcast against bare quinn.
fn bench_pair(args: BenchPairArgs) -> Result<()> {
    let config = pair::PairConfig {
        size: args.size,
        chunk_size: args.chunk_size,
        streams: args.streams,
        timeout: args.timeout,
    };
    if let Err(e) = config.validate() {
        usage_error(&["bench", "pair"], format!("{e:#}"));
    }
    let exe = current_exe()?;
    let rt = runtime()?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = until_signal(&rt, pair::run(exe.clone(), &config))?;
        if args.json {
            eprintln!("run {i}/{}: {}", args.runs, r.to_json(&config));
        } else {
            eprintln!("{}", pair::run_text(&r, i, args.runs));
        }
        runs.push(r);
    }
    if args.json {
        let summary = pair::summary_json(&config, &runs);
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        out!("{}", pair::summary_text(&config, &runs))?;
    }
    Ok(())
}

/// `bench files`: many small files against one large one.
fn bench_files(args: BenchFilesArgs) -> Result<()> {
    let config = files::FilesConfig {
        files: args.files,
        file_size: args.file_size,
        receivers: args.receivers,
        chunk_size: args.chunk_size,
        timeout: args.timeout,
    };
    if let Err(e) = config.validate() {
        usage_error(&["bench", "files"], format!("{e:#}"));
    }
    let exe = current_exe()?;
    let rt = runtime()?;
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let r = until_signal(&rt, files::run(exe.clone(), &config))?;
        if args.json {
            eprintln!("run {i}/{}: {}", args.runs, r.to_json(&config)?);
        } else {
            eprintln!("{}", files::run_text(&r, i, args.runs));
        }
        runs.push(r);
    }
    if args.json {
        let summary = files::summary_json(&config, &runs)?;
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        out!("{}", files::summary_text(&config, &runs))?;
    }
    Ok(())
}

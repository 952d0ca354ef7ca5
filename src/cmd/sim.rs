//! `swarmcast sim`: flags → a `FleetConfig` and a fault schedule → `swarmcast_node::sim` →
//! the report (`swarmcast_chaos::sim_report`) on stdout, the picture in `--svg`.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use swarmcast_chaos::sim_report::SimReport;
use swarmcast_node::sim::{
    Fault, FaultAction, FleetConfig, Progress, ScheduledFault, Setup, Sim, When,
};

use super::usage_error;
use crate::cli::{SimArgs, SimWhen};

pub(crate) fn run(args: SimArgs) -> Result<()> {
    let usage = |msg: String| -> ! { usage_error(&["sim"], msg) };
    if !(args.latency_ms.is_finite() && args.latency_ms >= 0.0) {
        usage(format!(
            "--latency-ms must be 0 or more, not {}",
            args.latency_ms
        ));
    }
    let fleet = FleetConfig {
        receivers: args.nodes,
        bytes: args.size,
        chunk_size: args.chunk_size,
        up_mbit: args.up_mbit.unwrap_or(args.rate_mbit),
        down_mbit: args.down_mbit.unwrap_or(args.rate_mbit),
        latency: Duration::from_secs_f64(args.latency_ms / 1000.0),
        loss: args.loss / 100.0,
        degree: args.degree,
    };
    let net = fleet.net().unwrap_or_else(|e| usage(e.to_string()));
    let when = |w: SimWhen| match w {
        SimWhen::At(t) => When::At(t),
        SimWhen::Percent(p) => When::Progress(p / 100.0),
    };
    let mut faults = Vec::new();
    let mut add = |node, action, w| {
        faults.push(ScheduledFault {
            node,
            action,
            when: when(w),
        })
    };
    for &(node, w) in &args.kills {
        add(node, FaultAction::Kill, w);
    }
    for &(node, w) in &args.restarts {
        add(node, FaultAction::Restart, w);
    }
    for &(node, from, to) in &args.pauses {
        add(node, FaultAction::Pause, from);
        add(node, FaultAction::Resume, to);
    }
    let setup = Setup {
        fault: Fault::None,
        net,
        superseed: true,
        late: false,
        trace: false,
    };
    let started = Instant::now();
    let mut sim = Sim::new(args.seed, &setup);
    sim.schedule(&faults)
        .unwrap_or_else(|e| usage(format!("{e}")));
    let bar = (args.progress || std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::new(1000);
        b.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    // Steps of 100 ms of virtual time between looks at the bar.
    let mut until = 0u64;
    loop {
        until += 100_000_000;
        if sim.run_until(until) == Progress::Done {
            break;
        }
        if let Some(b) = &bar {
            let p = sim.fleet_progress();
            b.set_position((p * 1000.0) as u64);
            b.set_message(format!(
                "{:.1}% at {:.1} s virtual",
                p * 100.0,
                sim.now() as f64 / 1e9
            ));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let outcome = sim.outcome();
    let report = SimReport::new(
        args.seed,
        &outcome,
        &sim.fault_times(),
        started.elapsed().as_secs_f64(),
    );
    if let Some(path) = &args.svg {
        std::fs::write(path, report.to_svg())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", report.to_text())?;
    }
    Ok(())
}

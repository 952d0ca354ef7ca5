//! `swarmcast chaos run | presets`.

use anyhow::{Context, Result};
use swarmcast_chaos::scenario::{self, Mode, Scenario};

use std::time::Duration;

use swarmcast_chaos::soak::{self, SoakConfig};

use super::{current_exe, runtime, until_signal, usage_error};
use crate::cli::{ChaosArgs, ChaosCommand, ChaosMode, SoakArgs};

pub(crate) fn run(command: ChaosCommand) -> Result<()> {
    match command {
        ChaosCommand::Presets => {
            for (name, text) in scenario::PRESETS {
                let description = Scenario::from_toml(text)
                    .map(|s| s.description)
                    .unwrap_or_default();
                outln!("{name:<16} {description}")?;
            }
            Ok(())
        }
        ChaosCommand::Run(args) => run_one(args),
        ChaosCommand::Soak(args) => soak(args),
    }
}

fn soak(args: SoakArgs) -> Result<()> {
    let secs = |s: f64, flag: &str| {
        if s.is_finite() && s > 0.0 {
            Duration::from_secs_f64(s)
        } else {
            usage_error(
                &["chaos", "soak"],
                format!("{flag} must be a positive number"),
            )
        }
    };
    let config = SoakConfig {
        duration: secs(args.minutes * 60.0, "--minutes"),
        nodes: args.nodes,
        churners: args.churners,
        size: args.size,
        names: args.names,
        seed: args.seed,
        sample: secs(args.sample_secs, "--sample-secs"),
    };
    if let Err(e) = config.validate() {
        usage_error(&["chaos", "soak"], format!("{e:#}"));
    }
    let report = until_signal(
        &runtime()?,
        soak::run_reported(current_exe()?, config, args.report),
    )?;
    print!("{}", report.summary());
    if !report.passed {
        anyhow::bail!("a long-lived process grew by more than 20%");
    }
    Ok(())
}

fn run_one(args: ChaosArgs) -> Result<()> {
    // clap makes the two exclusive and one of them required.
    let scenario = match (&args.preset, &args.scenario) {
        (Some(name), _) => Scenario::from_toml(
            scenario::preset(name)
                .with_context(|| format!("no preset {name:?} (see `swarmcast chaos presets`)"))?,
        )?,
        (None, Some(path)) => Scenario::from_file(path)?,
        (None, None) => anyhow::bail!("give --preset NAME or --scenario FILE"),
    };
    let mode = match args.mode {
        ChaosMode::Process => Mode::Process,
        ChaosMode::Netns => {
            // Checked before anything starts: a clear error, never a silent skip.
            swarmcast_chaos::netns::preflight()?;
            Mode::Netns
        }
    };
    until_signal(
        &runtime()?,
        scenario::run(mode, current_exe()?, scenario, args.seed, args.report),
    )
    .map(|_| ())
}

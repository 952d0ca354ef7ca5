//! `swarmcast chaos run | presets`.

use anyhow::{Context, Result};
use swarmcast_chaos::scenario::{self, Mode, Scenario};

use super::{current_exe, runtime, until_signal};
use crate::cli::{ChaosArgs, ChaosCommand, ChaosMode};

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
    }
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

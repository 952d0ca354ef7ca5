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
                println!("{name:<16} {description}");
            }
            Ok(())
        }
        ChaosCommand::Run(args) => run_one(args),
    }
}

fn run_one(args: ChaosArgs) -> Result<()> {
    // clap makes the two exclusive and one of them required.
    let text = match (&args.preset, &args.scenario) {
        (Some(name), _) => scenario::preset(name)
            .with_context(|| format!("no preset {name:?} (see `swarmcast chaos presets`)"))?
            .to_owned(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => anyhow::bail!("give --preset NAME or --scenario FILE"),
    };
    let scenario = Scenario::from_toml(&text)?;
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

//! The commands, one module per group: each turns parsed arguments into a library config and
//! calls the library. Shared here: the runtime, signal handling and usage errors.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::{Cli, Command, NodeCommand};

mod bench;
mod bootstrap;
mod certs;
mod chaos;
mod demo;
mod fetch;
mod node;
mod registry;
mod send;
mod sim;

/// Dispatch one parsed command line.
pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Certs(c) => certs::run(c),
        Command::Bootstrap(args) => bootstrap::run(args),
        Command::Node(NodeCommand::Join(args)) => node::join(*args),
        Command::Node(NodeCommand::Send(args)) => send::run(args),
        Command::Node(NodeCommand::Ls { data, json }) => node::ls(&data.data_dir, json),
        Command::Node(NodeCommand::Status { data, json }) => node::status(&data.data_dir, json),
        Command::Node(NodeCommand::Rm { target, data }) => node::rm(&data.data_dir, &target),
        Command::Node(NodeCommand::Cancel { target, data }) => {
            node::cancel(&data.data_dir, &target)
        }
        Command::Node(NodeCommand::Fetch(args)) => fetch::run(args),
        Command::Registry(args) => registry::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(c) => bench::run(c),
        Command::Chaos(c) => chaos::run(c),
        Command::Sim(args) => sim::run(args),
    }
}

/// A bad value or combination of arguments, found after parsing: clap's message and exit
/// code 2, like a bad single value. `path` names the subcommand, e.g. `["bench", "pair"]`.
pub(crate) fn usage_error(path: &[&str], msg: impl std::fmt::Display) -> ! {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    error_at(&mut cli, path, msg.to_string()).exit()
}

fn error_at(cmd: &mut clap::Command, path: &[&str], msg: String) -> clap::Error {
    if let Some((first, rest)) = path.split_first()
        && let Some(sub) = cmd.find_subcommand_mut(first)
    {
        return error_at(sub, rest, msg);
    }
    cmd.error(clap::error::ErrorKind::ValueValidation, msg)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Run `fut` to its end, or stop at SIGINT/SIGTERM: the future is then dropped, which kills
/// its processes (by PID) and takes its network lab down.
pub(crate) fn until_signal<T>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    rt.block_on(async {
        tokio::select! {
            r = fut => r,
            () = shutdown_signal() => bail!("interrupted"),
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

pub(crate) fn load_identity(dir: &Path) -> Result<swarmcast_certs::Identity> {
    swarmcast_certs::Identity::load(dir)
        .with_context(|| format!("loading identity from {}", dir.display()))
}

/// A daemon's identity: loaded from `dir` and re-read while it runs.
pub(crate) fn load_live_identity(
    dir: &Path,
) -> Result<std::sync::Arc<swarmcast_certs::LiveIdentity>> {
    swarmcast_certs::LiveIdentity::load(dir)
        .with_context(|| format!("loading identity from {}", dir.display()))
}

/// The identity re-read period: `SWARMCAST_IDENTITY_RELOAD_MS` (test-only, so it never shows
/// in --help), else [`swarmcast_net::RELOAD_EVERY`].
pub(crate) fn identity_reload() -> std::time::Duration {
    std::env::var("SWARMCAST_IDENTITY_RELOAD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(
            swarmcast_net::RELOAD_EVERY,
            std::time::Duration::from_millis,
        )
}

/// The running binary, which the harnesses start as child processes.
pub(crate) fn current_exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().context("locating the swarmcast binary")
}

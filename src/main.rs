//! `swarmcast`: the command-line interface. Thin: clap → typed config → library call.
//!
//! * [`cli`]: every clap type and value parser;
//! * [`cmd`]: one module per command group, each turning its arguments into a library config
//!   (whose constructor checks the rules between values) and calling the library;
//! * [`output`]: human and JSON renderings of query results.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod cmd;
mod output;

use cli::{Cli, Command, NodeCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Daemons log their lifecycle; one-shot commands only warnings, unless RUST_LOG says more.
    let default = match cli.command {
        Command::Bootstrap(_) | Command::Node(NodeCommand::Join(_)) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    swarmcast_certs::install_crypto_provider();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

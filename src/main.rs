//! `swarmcast`: the command-line interface. Thin: clap → typed config → library call.
//!
//! * [`cli`]: every clap type and value parser;
//! * [`cmd`]: one module per command group, each turning its arguments into a library config
//!   (whose constructor checks the rules between values) and calling the library;
//! * [`output`]: human and JSON renderings of query results.
// The doc comments of `cli` are clap's help text, printed as written: `<name>` there is a
// placeholder for the user, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::process::ExitCode;

use clap::Parser;

/// `println!` that returns the write's `io::Result` instead of panicking: a closed pipe
/// (`node send | head -1`) becomes an error that `main` turns into a quiet exit.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` likewise (see [`outln!`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        write!(out, $($arg)*).and_then(|()| out.flush())
    }};
}

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
        // The reader went away (`node ls | head -1`): nothing more to say to anyone.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}

/// Whether `e` comes from writing to a pipe whose reader has closed it.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `e` and its causes joined by ": ", each cause said once: an error whose message already
/// ends with its cause's text (`{what}: {source}`) does not get the cause again.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.ends_with(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message includes its source, as `#[error("{what}: {source}")]` does.
    #[derive(Debug)]
    struct Wrapping(std::io::Error);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reading x: {}", self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Wrapping(io)).context("loading identity from /x");
        assert_eq!(
            error_text(&e),
            "loading identity from /x: reading x: no such file"
        );
        // A cause not included in its parent's message is still given.
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
        assert!(!broken_pipe(&plain));
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing");
        assert!(broken_pipe(&pipe));
    }
}

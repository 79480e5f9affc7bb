//! The `mapispool` binary: parses the command line, runs one command, prints an error once and
//! exits with a code scripts can rely on (see `exit.rs` and the README).

mod cli;
mod cmd;
mod exit;
mod render;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use exit::{Exit, exit_for};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mapispool: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Unavailable as u8);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            eprintln!("mapispool: {e:#}");
            ExitCode::from(exit_for(&e) as u8)
        }
    }
}

/// Logs go to stderr so stdout stays clean for `--json`; `-v` shows the spooler's work,
/// `-vv` everything, and `RUST_LOG` overrides both.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,sqlx=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
}

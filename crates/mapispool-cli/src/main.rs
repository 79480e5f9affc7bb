//! The `mapispool` binary: parses the command line, runs one command, prints an error once and
//! exits with a code scripts can rely on (see `exit.rs` and the README).

#[macro_use]
mod out;
mod cli;
mod cmd;
mod exit;
mod ids;
mod render;
mod term;
mod when;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;
use exit::{Exit, exit_for};

fn main() -> ExitCode {
    // Invoked as `sendmail` (a symlink): sendmail's command line, not ours (see cmd/sendmail.rs).
    let mut args = std::env::args_os();
    if args
        .next()
        .is_some_and(|argv0| cmd::sendmail::invoked_as_sendmail(&argv0))
    {
        let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        init_logging(0, false, cli::LogFormat::Text);
        let Some(runtime) = runtime(true) else {
            return ExitCode::from(Exit::SendmailTempFail as u8);
        };
        let exit = runtime.block_on(cmd::sendmail::run_named("sendmail", None, &args));
        return ExitCode::from(exit as u8);
    }
    let cli = Cli::parse();
    init_logging(
        cli.verbose,
        matches!(cli.command, cli::Command::Spooler),
        cli.log_format,
    );
    let one_shot = matches!(
        cli.command,
        cli::Command::Submit(_) | cli::Command::Sendmail(_)
    );
    let Some(runtime) = runtime(one_shot) else {
        return ExitCode::from(Exit::Unavailable as u8);
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            eprintln!("{}mapispool: {e:#}", term::journal_prefix(3));
            ExitCode::from(exit_for(&e) as u8)
        }
    }
}

/// The async runtime; on failure says so and returns `None`. `one_shot` (submit, sendmail:
/// read a message, store it, exit) runs on this thread alone: worker threads would cost more to
/// start and to hand work between than that little work takes (the store's SQLite connection
/// has its own thread either way).
fn runtime(one_shot: bool) -> Option<tokio::runtime::Runtime> {
    let mut builder = if one_shot {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("mapispool: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Logs go to stderr so stdout stays clean for `--json`; `-v` shows the spooler's work,
/// `-vv` everything, and `RUST_LOG` overrides both. The daemon also logs its mail log
/// (`mapispool::mail`, one line per recipient outcome and per received message) by default,
/// as Postfix does. Under systemd (`JOURNAL_STREAM` set) lines carry no timestamp of their
/// own (the journal adds one) and start with sd-daemon's `<N>` priority prefix, which journald
/// reads as the line's priority (sd-daemon(3)): `journalctl -p warning` then works.
fn init_logging(verbose: u8, daemon: bool, format: cli::LogFormat) {
    let default = match (verbose, daemon) {
        (0, true) => "warn,mapispool::mail=info",
        (0, false) => "warn",
        (1, _) => "info,sqlx=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let journal = term::journal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match (format, journal) {
        (cli::LogFormat::Json, _) => builder.json().init(),
        (cli::LogFormat::Text, true) => builder
            .with_ansi(false)
            .event_format(Journald(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_ansi(false),
            ))
            .init(),
        (cli::LogFormat::Text, false) => builder.with_ansi(term::stderr_paint().enabled()).init(),
    }
}

/// An event format that puts sd-daemon's priority prefix (`<3>` error, `<4>` warning, `<6>`
/// info, `<7>` debug) before the line the inner format writes.
struct Journald<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Journald<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

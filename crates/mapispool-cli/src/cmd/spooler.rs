//! `mapispool spooler`: the spooler in the foreground, on the profile's schedules.

use anyhow::Result;
use mapispool::Session;

use crate::exit::Exit;

/// Runs until SIGTERM or SIGINT; a flush in progress then finishes before the process exits 0.
pub async fn run(session: Session, quiet: bool) -> Result<Exit> {
    let s = &session.profile().spooler;
    if !quiet {
        let every = |d: Option<std::time::Duration>| {
            d.map(|d| format!("every {}", humantime::format_duration(d)))
                .unwrap_or_else(|| "only when flushed".to_string())
        };
        eprintln!(
            "mapispool spooler: sending {}, receiving {}; stop with Ctrl-C or SIGTERM",
            every(s.upload_interval),
            every(s.download_interval)
        );
    }
    session.spooler().run_schedules(shutdown_signal()).await;
    session.logoff().await;
    Ok(Exit::Done)
}

/// Completes on the first SIGTERM or SIGINT. If the handlers cannot be installed the spooler
/// still runs and stops on Ctrl-C through the default handler.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

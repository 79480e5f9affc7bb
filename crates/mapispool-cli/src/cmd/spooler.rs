//! `mapispool spooler`: the spooler daemon in the foreground — the profile's schedules, and the
//! local API every other `mapispool` command (and any client) uses while it runs.

use anyhow::{Context, Result};
use mapispool::Profile;
use mapispool::daemon::{Control, run_daemon};
use sd_notify::NotifyState;
use tokio::sync::mpsc;

use crate::cli::Cli;
use crate::exit::Exit;

/// Runs until SIGTERM or SIGINT (a flush in progress finishes first, then exit 0); SIGHUP
/// reloads the profile, keeping the old one if the new one is invalid.
pub async fn run(cli: &Cli) -> Result<Exit> {
    let path = Profile::locate(cli.profile.as_deref())?;
    // Read it once here so a bad profile fails with the profile's own precise error.
    let profile = Profile::load(&path)?;
    let quiet = cli.quiet;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(forward_signals(tx));
    let s = &profile.spooler;
    let every = |d: Option<std::time::Duration>| {
        d.map(|d| format!("every {}", humantime::format_duration(d)))
            .unwrap_or_else(|| "only when flushed".to_string())
    };
    let (up, down) = (every(s.upload_interval), every(s.download_interval));
    run_daemon(&path, rx, |socket| {
        if !quiet {
            eprintln!(
                "{}mapispool spooler: listening on {}; sending {up}, receiving {down}; stop with Ctrl-C or SIGTERM, reload with SIGHUP",
                crate::term::journal_prefix(6),
                socket.display()
            );
        }
        // Ready only now, with the socket taken: under `Type=notify` systemd starts what comes
        // after this unit once clients can reach the daemon.
        let status = format!("listening on {}", socket.display());
        notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        if let Some(interval) = sd_notify::watchdog_enabled() {
            tokio::spawn(watchdog(interval));
        }
    })
    .await
    .with_context(|| format!("the spooler for {} stopped", path.display()))?;
    Ok(Exit::Done)
}

/// Turns signals into daemon controls. If the handlers cannot be installed the daemon still
/// runs and stops through the default handlers.
async fn forward_signals(tx: mpsc::Sender<Control>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        let control = tokio::select! {
            _ = term.recv() => Control::Shutdown,
            _ = int.recv() => Control::Shutdown,
            _ = hup.recv() => Control::Reload,
        };
        if control == Control::Shutdown {
            notify(&[NotifyState::Stopping]);
        }
        if tx.send(control).await.is_err() || control == Control::Shutdown {
            return;
        }
    }
}

/// Tells systemd (`$NOTIFY_SOCKET`, set under `Type=notify`) how the daemon is; nothing without
/// it. A failure is logged, not fatal: the daemon serves its clients either way.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// `WATCHDOG=1` at half of systemd's `WatchdogSec` (sd_watchdog_enabled(3) advises pinging
/// well within it), from a task on the daemon's own runtime: a runtime that stops making
/// progress stops the pings, and systemd restarts the daemon.
async fn watchdog(interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

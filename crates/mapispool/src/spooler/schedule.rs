//! The spooler's own clocks: each send/receive group flushes on its `upload_interval` and
//! `download_interval` (the default group "all" on `[spooler]`'s), the way MAPI's spooler polls
//! transports between the flushes clients ask for.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::Spooler;
use crate::flush::FlushFlags;
use crate::store::Store;

/// One group's clock for one direction.
struct Clock {
    group: String,
    direction: FlushFlags,
    every: Duration,
    next: Instant,
}

impl<S: Store + 'static> Spooler<S> {
    /// Flushes on every group's schedules until `shutdown` completes, starting with one flush
    /// of each scheduled group and direction at once (mail queued while no spooler ran goes
    /// out now). Each group keeps its own clock: a group's next flush is its interval after
    /// its last one ended, so a flush that overruns is not followed by a burst of catch-ups.
    ///
    /// Scheduled flushes carry `FLUSH_NO_UI`: nobody is watching, so a transport that needs a
    /// person reports that in its status row instead of prompting; and they skip transports
    /// backing off after connection failures. A flush in progress when `shutdown` completes is
    /// finished, not abandoned, so nothing is left half-sent. Returns at once (after
    /// `shutdown`) when no group has a schedule.
    ///
    /// Transports with `idle = true` keep an IMAP IDLE connection meanwhile (`idle.rs`): new
    /// mail pushed by the server is downloaded at once. They stop with the clocks.
    pub async fn run_schedules(&self, shutdown: impl Future<Output = ()>) {
        let start = Instant::now();
        let (stop_idle, idle_stopped) = tokio::sync::watch::channel(false);
        let watchers = self.start_idle_watchers(&idle_stopped);
        let mut clocks: Vec<Clock> = Vec::new();
        for group in self.inner.profile.groups() {
            for (interval, direction) in [
                (group.upload_interval, FlushFlags::UPLOAD),
                (group.download_interval, FlushFlags::DOWNLOAD),
            ] {
                let allowed = if direction == FlushFlags::UPLOAD {
                    group.direction.sends()
                } else {
                    group.direction.receives()
                };
                // An interval for a direction the group does not move has nothing to run.
                if let Some(every) = interval.filter(|_| allowed) {
                    tracing::info!(group = %group.name, %direction, every = %humantime::format_duration(every), "schedule");
                    clocks.push(Clock {
                        group: group.name.clone(),
                        direction,
                        every,
                        next: start,
                    });
                }
            }
        }
        tokio::pin!(shutdown);
        loop {
            let Some(due) = clocks.iter_mut().min_by_key(|c| c.next) else {
                (&mut shutdown).await;
                break;
            };
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = sleep_until(due.next) => {
                    self.scheduled(&due.group, due.direction).await;
                    due.next = Instant::now() + due.every;
                }
            }
        }
        let _ = stop_idle.send(true);
        for w in watchers {
            let _ = w.await;
        }
        self.wait_idle().await;
    }

    async fn scheduled(&self, group: &str, direction: FlushFlags) {
        let flush = match self.group_flush(group, direction | FlushFlags::NO_UI, true) {
            Ok((names, flags, scope)) => self.start_flush(names, flags, scope).await,
            Err(e) => Err(e),
        };
        match flush {
            Ok(report) => tracing::info!(
                group,
                flags = %report.flags,
                complete = report.is_complete(),
                "scheduled flush done"
            ),
            Err(e) => tracing::warn!(group, error = %e, "scheduled flush refused"),
        }
    }
}

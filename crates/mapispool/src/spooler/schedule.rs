//! The spooler's own clocks: each send/receive group flushes on its `upload_interval` and
//! `download_interval` (the default group "all" on `[spooler]`'s), the way MAPI's spooler polls
//! transports between the flushes clients ask for.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::Spooler;
use crate::flush::FlushFlags;
use crate::store::Store;

/// A time that never comes, for a `select!` branch that is disabled.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

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
    /// Wake-ups flush the upload side at once, between the clocks: a heartbeat that found a
    /// dead node's messages due, the store answering again after an outage, a submit on
    /// another node (the store's notifications). With no schedule at all, only they and
    /// shutdown end the wait.
    ///
    /// Transports with `idle = true` keep an IMAP IDLE connection meanwhile (`idle.rs`): new
    /// mail pushed by the server is downloaded at once. They stop with the clocks.
    pub async fn run_schedules(&self, shutdown: impl Future<Output = ()>) {
        let start = Instant::now();
        let (stop_idle, idle_stopped) = tokio::sync::watch::channel(false);
        let watchers = self.start_idle_watchers(&idle_stopped);
        // The store's notifications (PostgreSQL: a submit on any node) wake this loop.
        let listening = self
            .inner
            .store
            .watch_queue(Arc::clone(&self.inner.wake), &self.inner.owner);
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
            let due = clocks.iter_mut().min_by_key(|c| c.next);
            let next = due.as_ref().map(|c| c.next);
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                // Without a schedule only wake-ups move mail.
                _ = sleep_until(next.unwrap_or_else(far_future)), if next.is_some() => {
                    if let Some(due) = due {
                        self.scheduled(&due.group, due.direction).await;
                        due.next = Instant::now() + due.every;
                    }
                }
                _ = self.inner.wake.notified() => self.woken().await,
            }
        }
        if let Some(task) = listening {
            task.abort();
        }
        let _ = stop_idle.send(true);
        for w in watchers {
            let _ = w.await;
        }
        self.wait_idle().await;
    }

    /// A wake-up (`Spooler::inner.wake`): the upload side of every transport, as a scheduled
    /// flush (no prompts; transports backing off are left alone). Wake-ups that come while it
    /// runs are one more flush after it, not one each.
    async fn woken(&self) {
        let names = self
            .inner
            .slots
            .iter()
            .map(|s| s.config.name.clone())
            .collect();
        let scope = super::Scope {
            scheduled: true,
            skip_offline: true,
            ..super::Scope::default()
        };
        match self
            .start_flush(names, FlushFlags::UPLOAD | FlushFlags::NO_UI, scope)
            .await
        {
            Ok(report) => tracing::debug!(complete = report.is_complete(), "wake-up flush done"),
            Err(e) => tracing::warn!(error = %e, "wake-up flush refused"),
        }
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

//! The spooler's own clock: flushes on the profile's `upload_interval` and `download_interval`,
//! the way MAPI's spooler polls transports between the flushes clients ask for.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::Spooler;
use crate::flush::FlushFlags;

impl Spooler {
    /// Flushes on the profile's schedules until `shutdown` completes, starting with one flush
    /// of each scheduled direction at once (mail queued while no spooler ran goes out now).
    ///
    /// Scheduled flushes carry `FLUSH_NO_UI`: nobody is watching, so a transport that needs a
    /// person reports that in its status row instead of prompting. A flush in progress when
    /// `shutdown` completes is finished, not abandoned, so nothing is left half-sent. Returns
    /// at once (after `shutdown`) when the profile has no schedule.
    pub async fn run_schedules(&self, shutdown: impl Future<Output = ()>) {
        let spooler = &self.inner.profile.spooler;
        let up = spooler.upload_interval;
        let down = spooler.download_interval;
        tracing::info!(
            upload = ?up.map(humantime::format_duration),
            download = ?down.map(humantime::format_duration),
            "spooler schedules"
        );
        // An interval that never fires stands in for "no schedule" so one loop serves all cases.
        let never = Duration::from_secs(100 * 365 * 24 * 3600);
        let mut upload = interval_at(Instant::now(), up.unwrap_or(never));
        let mut download = interval_at(Instant::now(), down.unwrap_or(never));
        if up.is_none() {
            upload.reset();
        }
        if down.is_none() {
            download.reset();
        }
        // A flush that overruns its interval is not followed by a burst of catch-up flushes.
        upload.set_missed_tick_behavior(MissedTickBehavior::Delay);
        download.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                _ = upload.tick() => self.scheduled(FlushFlags::UPLOAD).await,
                _ = download.tick() => self.scheduled(FlushFlags::DOWNLOAD).await,
            }
        }
        self.wait_idle().await;
    }

    async fn scheduled(&self, direction: FlushFlags) {
        match self.flush_queues(None, direction | FlushFlags::NO_UI).await {
            Ok(report) => tracing::info!(
                flags = %report.flags,
                complete = report.is_complete(),
                "scheduled flush done"
            ),
            Err(e) => tracing::warn!(error = %e, "scheduled flush refused"),
        }
    }
}

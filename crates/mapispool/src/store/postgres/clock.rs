//! The cluster's one clock: the database server's.
//!
//! Every time the queue compares across nodes — a lease's end against another node's now, a
//! node's `alive_until` in the cluster view, a retry's `next_attempt_at` — is only as right as
//! the two clocks that wrote and read it agree. A node whose clock runs ten minutes fast would
//! see every other node's leases expired and send their messages a second time; one that runs
//! slow would write leases that others take over at once. So a node on PostgreSQL keeps its
//! times on the server's clock: it measures how far its own clock is from the server's when it
//! opens the store and again at every heartbeat, and [`ServerClock::now`] is its own clock
//! corrected by that. Nodes then disagree by the measurement's error (half a round trip), not
//! by their clocks' skew, and NTP is a recommendation, not a condition for never sending twice.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use mapi::FileTime;
use sqlx::PgConnection;

/// A skew above this is told in the log (once until it goes back under it): leases are safe
/// either way, but the times a person reads (logs, `Date:` headers this node writes) are off.
const TELL_SKEW_OVER: Duration = Duration::from_secs(2);

/// This node's clock corrected to the database server's (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct ServerClock {
    /// The server's clock minus this machine's, in 100 ns ticks.
    offset_ticks: AtomicI64,
    /// Whether the log has said the skew is over [`TELL_SKEW_OVER`].
    told: AtomicBool,
}

impl ServerClock {
    /// The server's time now, as well as this node knows it.
    pub(super) fn now(&self) -> FileTime {
        shift(FileTime::now(), self.offset_ticks.load(Ordering::Relaxed))
    }

    /// How far this machine's clock is ahead of the server's (negative: behind), in
    /// milliseconds, at the last measurement: what the cluster view shows for this node.
    pub(super) fn node_ahead_ms(&self) -> i64 {
        -self.offset_ticks.load(Ordering::Relaxed) / 10_000
    }

    /// Reads the server's clock on `conn` and keeps the offset to this machine's, taking the
    /// server's answer as of the middle of the round trip.
    pub(super) async fn measure(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let before = FileTime::now();
        // `clock_timestamp()`, not `now()`: `now()` is the transaction's start.
        let server_micros: i64 =
            sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::int8")
                .fetch_one(&mut *conn)
                .await?;
        let after = FileTime::now();
        let middle = before.0 / 2 + after.0 / 2;
        let server = filetime_of_unix_micros(server_micros);
        let offset = i64::try_from(i128::from(server.0) - i128::from(middle)).unwrap_or(0);
        self.offset_ticks.store(offset, Ordering::Relaxed);
        self.tell(offset);
        Ok(())
    }

    fn tell(&self, offset: i64) {
        let skew = Duration::from_nanos(offset.unsigned_abs().saturating_mul(100));
        if skew > TELL_SKEW_OVER {
            if !self.told.swap(true, Ordering::Relaxed) {
                let which = if offset > 0 { "behind" } else { "ahead of" };
                tracing::warn!(
                    skew_seconds = skew.as_secs_f64(),
                    "this machine's clock is {:.1} s {which} the database server's; the queue's \
                     leases, retries and heartbeats use the server's clock, so nothing is sent \
                     twice, but set up time synchronisation (NTP) for the times people read",
                    skew.as_secs_f64()
                );
            }
        } else if self.told.swap(false, Ordering::Relaxed) {
            tracing::info!("this machine's clock agrees with the database server's again");
        }
    }
}

/// `time` moved by `ticks` (100 ns), clamped to FILETIME's range.
fn shift(time: FileTime, ticks: i64) -> FileTime {
    FileTime(time.0.saturating_add_signed(ticks))
}

/// A Unix time in microseconds as a FILETIME (a time before 1970 as 1970: no server is there).
fn filetime_of_unix_micros(micros: i64) -> FileTime {
    let since_epoch = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
    FileTime::from(UNIX_EPOCH + since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_micros_become_filetime_ticks() {
        let t = filetime_of_unix_micros(1_000_000);
        assert_eq!(t, FileTime::from(UNIX_EPOCH + Duration::from_secs(1)));
        assert_eq!(filetime_of_unix_micros(-5), FileTime::from(UNIX_EPOCH));
    }

    #[test]
    fn now_moves_by_the_offset_both_ways() {
        let clock = ServerClock::default();
        clock.offset_ticks.store(-6_000_000_000, Ordering::Relaxed); // the server 10 min behind
        let local = FileTime::now().to_system_time();
        let corrected = clock.now().to_system_time();
        let behind = local.duration_since(corrected).expect("behind");
        assert!(
            (Duration::from_secs(599)..Duration::from_secs(601)).contains(&behind),
            "{behind:?}"
        );
        assert_eq!(shift(FileTime(5), -10), FileTime(0));
        assert_eq!(shift(FileTime(u64::MAX - 1), 10), FileTime(u64::MAX));
    }
}

//! The spooler's metrics in the Prometheus text format (`GET /metrics` on the local API and on
//! the web listener), and the last flushes for the status page.
//!
//! One recorder per spooler, never the `metrics` crate's global one: several spoolers (tests,
//! a reloaded profile) live in one process, and each must count only its own work.
//!
//! What is counted where: the spooler calls [`Metrics::transport_flushed`] once per transport
//! part of a flush and [`Metrics::delivered`] when a message leaves; queue lengths and the
//! store's size are read fresh at each scrape ([`Metrics::render`]), so they are never stale.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use serde::Serialize;

use crate::flush::{MessageOutcome, RecipientReport, TransportReport};
use crate::store::QueueCounts;

/// How many flushes the status page lists.
pub const RECENT_FLUSHES: usize = 20;

/// Seconds: a flush of one transport takes from milliseconds (the dir transport) to minutes (a
/// slow server); a delivery from under a second to days (retries up to `expire_after`).
const FLUSH_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const LATENCY_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 432000.0,
];

/// One transport's part of a flush, as the status page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FlushSummary {
    /// When it ended, RFC 3339.
    pub at: String,
    pub transport: String,
    pub upload: bool,
    pub download: bool,
    pub sent: usize,
    pub deferred: usize,
    pub bounced: usize,
    pub received: usize,
    pub seconds: f64,
    pub error: Option<String>,
    pub skipped: Option<String>,
}

/// The metrics of one spooler.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    recent: Mutex<VecDeque<FlushSummary>>,
    /// Every route the queue gauges were set for: one the store no longer counts (its queue
    /// emptied) goes back to zero rather than keeping its last value.
    routes: Mutex<std::collections::BTreeSet<String>>,
    /// Sent and received per transport per minute, the last [`HOUR_MINUTES`] minutes: the page's
    /// chart.
    minutes: Mutex<std::collections::BTreeMap<String, VecDeque<MinuteCount>>>,
}

/// How many minutes the page's chart spans.
pub const HOUR_MINUTES: u64 = 60;

/// What one transport did in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// The minute's start, Unix seconds.
    pub minute: u64,
    pub sent: usize,
    pub received: usize,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect::<Vec<_>>(),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("mapispool_flush_duration_seconds".into()),
                FLUSH_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("mapispool_delivery_latency_seconds".into()),
                    LATENCY_BUCKETS,
                )
            });
        // Only an empty bucket list is refused, and ours are constants.
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let m = Metrics {
            recorder,
            handle,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_FLUSHES)),
            routes: Mutex::new(std::collections::BTreeSet::new()),
            minutes: Mutex::new(std::collections::BTreeMap::new()),
        };
        m.describe();
        m.recorder
            .register_gauge(
                &key(
                    "mapispool_build_info",
                    &[
                        ("version", env!("CARGO_PKG_VERSION")),
                        ("rust_version", env!("CARGO_PKG_RUST_VERSION")),
                    ],
                ),
                &META,
            )
            .set(1.0);
        m
    }

    fn describe(&self) {
        let r = &self.recorder;
        let c = |name: &'static str, help: &'static str| {
            r.describe_counter(name.into(), None, help.into());
        };
        c(
            "mapispool_messages_sent_total",
            "Messages delivered to every recipient, or to some with a report for the others, per transport.",
        );
        c(
            "mapispool_messages_deferred_total",
            "Attempts that left a message queued for a retry, per transport.",
        );
        c(
            "mapispool_messages_bounced_total",
            "Messages for which a non-delivery report went to the Inbox (for some or all recipients), per transport.",
        );
        c(
            "mapispool_messages_received_total",
            "Messages downloaded into the Inbox, per transport.",
        );
        c(
            "mapispool_smtp_replies_total",
            "The SMTP server's final reply per recipient, by class (2xx, 4xx, 5xx), per transport.",
        );
        c(
            "mapispool_flushes_total",
            "Transport parts of flushes, by result (ok, failed, skipped).",
        );
        r.describe_histogram(
            "mapispool_flush_duration_seconds".into(),
            Some(Unit::Seconds),
            "How long one transport's part of a flush took.".into(),
        );
        r.describe_histogram(
            "mapispool_delivery_latency_seconds".into(),
            Some(Unit::Seconds),
            "From submit to delivery, per transport.".into(),
        );
        r.describe_gauge(
            "mapispool_last_successful_flush_timestamp_seconds".into(),
            Some(Unit::Seconds),
            "When a flush of the transport last ended without error (Unix time).".into(),
        );
        r.describe_gauge(
            "mapispool_queue_messages".into(),
            None,
            "Messages in the outgoing queue, by route and state.".into(),
        );
        r.describe_gauge(
            "mapispool_store_size_bytes".into(),
            Some(Unit::Bytes),
            "The SQLite store's files (database and write-ahead log) on disk.".into(),
        );
        r.describe_gauge(
            "mapispool_build_info".into(),
            None,
            "Always 1; the labels say which build runs.".into(),
        );
    }

    fn count(&self, name: &'static str, labels: &[(&'static str, &str)], n: usize) {
        // Registered even at zero, so a series exists from the first flush on.
        self.recorder
            .register_counter(&key(name, labels), &META)
            .increment(n as u64);
    }

    /// Counts one transport's part of a flush: its messages by outcome, what it received,
    /// its duration, the SMTP servers' final replies (`smtp`: its outbound part speaks SMTP),
    /// and its end time when it succeeded.
    pub fn transport_flushed(&self, report: &TransportReport, took: Duration, smtp: bool) {
        let t = report.transport.as_str();
        let labels = [("transport", t)];
        let (sent, deferred, bounced) = (
            report.count(MessageOutcome::Sent) + report.count(MessageOutcome::Partial),
            report.count(MessageOutcome::Deferred),
            // A message counts as bounced once a report went out for any of its recipients,
            // even while others still wait for a retry.
            report
                .messages
                .iter()
                .filter(|m| {
                    m.recipients
                        .iter()
                        .any(|r| matches!(r, RecipientReport::Failed { .. }))
                })
                .count(),
        );
        let result = if report.skipped.is_some() {
            "skipped"
        } else if report.error.is_some() {
            "failed"
        } else {
            "ok"
        };
        self.count(
            "mapispool_flushes_total",
            &[("transport", t), ("result", result)],
            1,
        );
        if report.skipped.is_none() {
            if report.upload {
                self.count("mapispool_messages_sent_total", &labels, sent);
                self.count("mapispool_messages_deferred_total", &labels, deferred);
                self.count("mapispool_messages_bounced_total", &labels, bounced);
            }
            if report.download {
                self.count(
                    "mapispool_messages_received_total",
                    &labels,
                    report.received,
                );
            }
            self.recorder
                .register_histogram(&key("mapispool_flush_duration_seconds", &labels), &META)
                .record(took.as_secs_f64());
            self.drain();
        }
        if smtp {
            for class in report
                .messages
                .iter()
                .flat_map(|m| &m.recipients)
                .filter_map(reply_class)
            {
                self.count(
                    "mapispool_smtp_replies_total",
                    &[("transport", t), ("class", class)],
                    1,
                );
            }
        }
        if result == "ok" {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.recorder
                .register_gauge(
                    &key("mapispool_last_successful_flush_timestamp_seconds", &labels),
                    &META,
                )
                .set(now);
        }
        let summary = FlushSummary {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            transport: t.to_string(),
            upload: report.upload,
            download: report.download,
            sent,
            deferred,
            bounced,
            received: report.received,
            seconds: took.as_secs_f64(),
            error: report.error.clone(),
            skipped: report.skipped.clone(),
        };
        self.count_minute(t, sent, report.received);
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_FLUSHES {
                recent.pop_front();
            }
            recent.push_back(summary);
        }
    }

    /// A message left on `transport`, `waited` after it was submitted.
    pub fn delivered(&self, transport: &str, waited: Duration) {
        self.recorder
            .register_histogram(
                &key(
                    "mapispool_delivery_latency_seconds",
                    &[("transport", transport)],
                ),
                &META,
            )
            .record(waited.as_secs_f64());
        // Drained with the flush's own sample in `transport_flushed`, once per flush rather
        // than once per message on the upload path.
    }

    /// Folds the samples just recorded into the histograms' buckets. The exporter keeps every
    /// histogram sample in a lock-free list (metrics-util's `AtomicBucket`) until upkeep drains
    /// it, and that list frees nothing when dropped: without this, a daemon nobody scrapes
    /// grows by every delivery, and each dropped spooler (a library session's logoff, the C
    /// ABI's `Logoff`) leaks what it recorded — Valgrind saw it. Drained once per transport part
    /// of a flush, after its deliveries: at most one flush's samples wait.
    fn drain(&self) {
        self.handle.run_upkeep();
    }

    fn count_minute(&self, transport: &str, sent: usize, received: usize) {
        let now = unix_now();
        let minute = now - now % 60;
        let Ok(mut all) = self.minutes.lock() else {
            return;
        };
        let series = all.entry(transport.to_string()).or_default();
        match series.back_mut() {
            Some(last) if last.minute == minute => {
                last.sent += sent;
                last.received += received;
            }
            _ => series.push_back(MinuteCount {
                minute,
                sent,
                received,
            }),
        }
        while series
            .front()
            .is_some_and(|m| m.minute + HOUR_MINUTES * 60 <= minute)
        {
            series.pop_front();
        }
    }

    /// Sent and received per transport per minute over the last hour, oldest minute first;
    /// minutes without a flush are left out.
    pub fn last_hour(&self) -> Vec<(String, Vec<MinuteCount>)> {
        let now = unix_now();
        let since = (now - now % 60).saturating_sub((HOUR_MINUTES - 1) * 60);
        self.minutes
            .lock()
            .map(|all| {
                all.iter()
                    .map(|(t, s)| {
                        (
                            t.clone(),
                            s.iter().filter(|m| m.minute >= since).copied().collect(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The last flushes, newest first.
    pub fn recent_flushes(&self) -> Vec<FlushSummary> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The text a scrape gets: the counters, and the queue and store read now.
    pub fn render(&self, queue: &[QueueCounts], store_file: Option<&Path>) -> String {
        let emptied: Vec<QueueCounts> = match self.routes.lock() {
            Ok(mut routes) => {
                let now: std::collections::BTreeSet<String> = queue
                    .iter()
                    .map(|c| c.transport.clone().unwrap_or_default())
                    .collect();
                let gone = routes
                    .difference(&now)
                    .map(|r| QueueCounts {
                        transport: Some(r.clone()),
                        queued: 0,
                        sending: 0,
                        deferred: 0,
                        scheduled: 0,
                    })
                    .collect();
                routes.extend(now);
                gone
            }
            Err(_) => Vec::new(),
        };
        for c in queue.iter().chain(&emptied) {
            let route = c.transport.as_deref().unwrap_or("");
            for (state, n) in [
                ("queued", c.queued),
                ("sending", c.sending),
                ("deferred", c.deferred),
                ("scheduled", c.scheduled),
            ] {
                self.recorder
                    .register_gauge(
                        &key(
                            "mapispool_queue_messages",
                            &[("transport", route), ("state", state)],
                        ),
                        &META,
                    )
                    .set(f64::from(n));
            }
        }
        if let Some(path) = store_file {
            self.recorder
                .register_gauge(&key("mapispool_store_size_bytes", &[]), &META)
                .set(store_size(path) as f64);
        }
        self.handle.render()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The SQLite database with its write-ahead log and shared-memory index: together, what the
/// store takes on disk.
fn store_size(path: &Path) -> u64 {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        total += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    }
    total
}

/// The class of the SMTP reply that settled a recipient: a delivered one got a 2xx; a deferred
/// or failed one carries the server's reply as "SMTP server HOST said: CODE ..." (see
/// `transport::smtp`). Failures with no reply (a lost connection) have no class.
fn reply_class(r: &RecipientReport) -> Option<&'static str> {
    let error = match r {
        RecipientReport::Delivered { .. } => return Some("2xx"),
        RecipientReport::Deferred { error, .. } | RecipientReport::Failed { error, .. } => error,
    };
    let (_, said) = error.split_once(" said: ")?;
    match said.as_bytes() {
        [b'4', b'0'..=b'9', b'0'..=b'9', ..] => Some("4xx"),
        [b'5', b'0'..=b'9', b'0'..=b'9', ..] => Some("5xx"),
        [b'2', b'0'..=b'9', b'0'..=b'9', ..] => Some("2xx"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_classes_come_from_the_servers_words() {
        let d = |e: &str| RecipientReport::Deferred {
            address: "a@b".into(),
            error: e.into(),
        };
        assert_eq!(
            reply_class(&d("SMTP server mx:25 said: 451 4.3.0 try later")),
            Some("4xx")
        );
        assert_eq!(
            reply_class(&RecipientReport::Failed {
                address: "a@b".into(),
                error: "SMTP server mx:25 said: 550 5.1.1 no such user".into()
            }),
            Some("5xx")
        );
        assert_eq!(reply_class(&d("connection reset by peer")), None);
    }
}

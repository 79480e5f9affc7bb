//! `mapispool flush`: send and receive now, through MAPI's `FlushQueues` as a client does it.

use anyhow::Result;
use mapi::constants::STATUS_FLUSH_QUEUES;
use mapispool::flush::{MessageOutcome, RecipientReport, TransportReport};
use mapispool::{FlushFlags, FlushReport, Session};

use crate::cli::FlushArgs;
use crate::cmd::progress::Bars;
use crate::exit::Exit;
use crate::term::{self, Paint};

/// Flushes every transport through the spooler, or one transport: on its own status object
/// when its `PR_RESOURCE_METHODS` has `STATUS_FLUSH_QUEUES`, else through the spooler with it as
/// the target (MAPI's two procedures).
pub async fn run(session: &Session, args: &FlushArgs, quiet: bool) -> Result<Exit> {
    let mut flags = FlushFlags(0);
    if args.upload {
        flags |= FlushFlags::UPLOAD;
    }
    if args.download {
        flags |= FlushFlags::DOWNLOAD;
    }
    if !args.upload && !args.download {
        flags |= FlushFlags::UPLOAD | FlushFlags::DOWNLOAD;
    }
    if args.no_ui {
        flags |= FlushFlags::NO_UI;
    }
    if args.async_ok {
        flags |= FlushFlags::ASYNC_OK;
    }
    if args.force {
        flags |= FlushFlags::FORCE;
    }
    let target = match &args.transport {
        None => None,
        Some(which) => Some(session.transport_status(&crate::ids::transport(
            session,
            which,
            "--transport",
        )?)?),
    };
    // Bars only for a person watching: stderr a terminal, not --quiet or --json, and not when
    // --async hands the work to the daemon and returns at once.
    let handed_off = args.async_ok && session.daemon_socket().is_some();
    let bars = if term::stderr_is_terminal() && !quiet && !args.json && !handed_off {
        let only = target.as_ref().map(|t| t.entry_id());
        Some(Bars::start(
            session,
            only.as_ref(),
            term::stderr_paint().enabled(),
        )?)
    } else {
        None
    };
    let message = match &args.message {
        Some(text) => Some(crate::ids::message(session, text, "--message").await?),
        None => None,
    };
    let report = match (&message, &target) {
        (Some(id), _) => session.flush_message(id, flags).await,
        (None, None) if args.group.is_some() => {
            let group = args.group.as_deref().unwrap_or_default();
            session.flush_group(group, flags).await
        }
        (None, None) => session.spooler_status().flush_queues(None, flags).await,
        (None, Some(transport)) => {
            if transport.methods() & STATUS_FLUSH_QUEUES != 0 {
                transport.flush_queues(None, flags).await
            } else {
                session
                    .spooler_status()
                    .flush_queues(Some(&transport.entry_id()), flags)
                    .await
            }
        }
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            if let Some(bars) = bars {
                bars.finish(session);
            }
            return Err(e.into());
        }
    };
    if report.asynchronous {
        if session.daemon_socket().is_some() {
            // The daemon does the work and outlives us: say how to follow it.
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else if !quiet {
                outln!(
                    "flush started in the spooler daemon; follow it with `mapispool watch` (or `mapispool watch --until-idle`), see the result with `mapispool status`"
                );
            }
            return Ok(Exit::Done);
        }
        // Without a spooler daemon the work runs in this process; leaving now would abandon it.
        if !quiet && !args.json {
            eprintln!(
                "flush started asynchronously; no spooler daemon runs, so this process stays until it is done (run `mapispool spooler` to have --async return at once)"
            );
        }
        session.wait_idle().await;
    }
    if let Some(bars) = bars {
        bars.finish(session);
    }
    // What the flush left waiting on its own retry clock: a plain flush does not try it, and
    // must not look as if nothing were queued (issue 19.4).
    let waiting = if flags.contains(FlushFlags::UPLOAD) && message.is_none() {
        still_waiting(session, &report).await?
    } else {
        Vec::new()
    };
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        json["still_waiting"] = serde_json::Value::Array(
            waiting
                .iter()
                .map(|w| {
                    serde_json::json!({
                        "transport": w.transport,
                        "count": w.count,
                        "until": w.until.map(|t| t.to_rfc3339()),
                        "last_error": w.last_error,
                    })
                })
                .collect(),
        );
        outln!("{}", serde_json::to_string_pretty(&json)?);
    } else if !quiet {
        let mut text = report_text(&report);
        for w in &waiting {
            text.push_str(&w.line());
        }
        out!("{}", paint_report(&text, term::stdout_paint()));
    }
    Ok(if report.is_complete() && waiting.is_empty() {
        Exit::Done
    } else {
        Exit::Partial
    })
}

/// Messages of one flushed transport that still wait for their own retry time.
struct Waiting {
    transport: String,
    count: usize,
    /// The earliest next attempt among them.
    until: Option<mapi::FileTime>,
    /// The error of the message that waits least.
    last_error: Option<String>,
}

impl Waiting {
    fn line(&self) -> String {
        format!(
            "{}: {} deferred{}{}; `mapispool flush --force` tries now\n",
            self.transport,
            self.count,
            self.until
                .map(|t| format!(" until {}", t.to_rfc3339()))
                .unwrap_or_default(),
            self.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )
    }
}

/// The messages of the transports this flush uploaded that are deferred on their own retry
/// clock and were not in this flush, per transport. Read from the queue table, which a daemon
/// serves too.
async fn still_waiting(session: &Session, report: &FlushReport) -> Result<Vec<Waiting>> {
    use mapi::PropValue;
    use mapi::tag::{
        PR_ENTRYID, PR_MSP_LAST_ERROR, PR_MSP_NEXT_ATTEMPT_TIME, PR_MSP_QUEUE_STATE,
        PR_MSP_TRANSPORT,
    };
    let flushed: Vec<&TransportReport> = report.transports.iter().filter(|t| t.upload).collect();
    if flushed.is_empty() {
        return Ok(Vec::new());
    }
    let columns = [
        PR_ENTRYID,
        PR_MSP_TRANSPORT,
        PR_MSP_QUEUE_STATE,
        PR_MSP_NEXT_ATTEMPT_TIME,
        PR_MSP_LAST_ERROR,
    ];
    let rows = mapi::table::hr_query_all_rows(
        &mut session.outgoing_queue_table().await?,
        Some(&columns),
        None,
        None,
        0,
    )?;
    let text = |row: &mapi::Row, tag| match row.get(tag) {
        Some(PropValue::Unicode(s)) => Some(s.clone()),
        _ => None,
    };
    let mut waiting: Vec<Waiting> = Vec::new();
    for t in flushed {
        let mut entries: Vec<(Option<mapi::FileTime>, Option<String>)> = rows
            .iter()
            .filter(|row| {
                let reported = match row.get(PR_ENTRYID) {
                    Some(PropValue::Binary(id)) => t
                        .messages
                        .iter()
                        .any(|m| m.entry_id.as_bytes() == id.as_slice()),
                    _ => false,
                };
                text(row, PR_MSP_QUEUE_STATE).as_deref() == Some("deferred")
                    && text(row, PR_MSP_TRANSPORT).as_deref() == Some(t.transport.as_str())
                    && !reported
            })
            .map(|row| {
                let until = match row.get(PR_MSP_NEXT_ATTEMPT_TIME) {
                    Some(PropValue::SysTime(at)) => Some(*at),
                    _ => None,
                };
                (until, text(row, PR_MSP_LAST_ERROR))
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        entries.sort_by_key(|(until, _)| *until);
        waiting.push(Waiting {
            transport: t.transport.clone(),
            count: entries.len(),
            until: entries[0].0,
            last_error: entries[0].1.clone(),
        });
    }
    Ok(waiting)
}

/// Colours the report's failures red and its waits yellow, on a terminal.
/// The recipients not delivered, grouped by what became of them (failed?, the error), in
/// order of first appearance: a message to thousands that a server refused once is one line.
fn recipient_groups(recipients: &[RecipientReport]) -> Vec<(bool, &str, Vec<&str>)> {
    let mut groups: Vec<(bool, &str, Vec<&str>)> = Vec::new();
    let mut at: std::collections::HashMap<(bool, &str), usize> = std::collections::HashMap::new();
    for r in recipients {
        let (failed, address, error) = match r {
            RecipientReport::Deferred { address, error } => (false, address, error),
            RecipientReport::Failed { address, error } => (true, address, error),
            RecipientReport::Delivered { .. } => continue,
        };
        let i = *at.entry((failed, error)).or_insert_with(|| {
            groups.push((failed, error, Vec::new()));
            groups.len() - 1
        });
        groups[i].2.push(address);
    }
    groups
}

/// How many addresses a summary line names before it counts the rest.
const FEW: usize = 3;

/// `a, b, c and 9997 more`.
fn first_few(addresses: &[&str]) -> String {
    let shown = addresses[..addresses.len().min(FEW)].join(", ");
    match addresses.len().saturating_sub(FEW) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn paint_report(text: &str, paint: Paint) -> String {
    if !paint.enabled() {
        return text.to_string();
    }
    text.lines()
        .map(|line| {
            let line = if line.contains("FAILED") || line.contains(": failed: ") {
                paint.red(line)
            } else if line.contains(": deferred") {
                paint.yellow(line)
            } else {
                line.to_string()
            };
            format!("{line}\n")
        })
        .collect()
}

/// The report as a person reads it: a line per transport, then a line per message that did not
/// simply go out.
pub fn report_text(report: &FlushReport) -> String {
    let mut out = String::new();
    if report.asynchronous && report.transports.is_empty() {
        out.push_str("flush running in the background\n");
        return out;
    }
    for t in &report.transports {
        let mut parts = Vec::new();
        if t.upload {
            parts.push(format!("sent {}", t.sent()));
            let deferred = t.count(MessageOutcome::Deferred);
            if deferred > 0 {
                parts.push(format!("{deferred} waiting for retry"));
            }
            let failed = t.count(MessageOutcome::Failed) + t.count(MessageOutcome::Partial);
            if failed > 0 {
                parts.push(format!("{failed} undeliverable (report in Inbox)"));
            }
        }
        if t.download {
            parts.push(format!("received {}", t.received));
        }
        if let Some(e) = &t.error {
            parts.push(format!(
                "FAILED: {e}{}",
                t.error_code
                    .as_deref()
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default()
            ));
        }
        if let Some(why) = &t.skipped {
            parts = vec![format!("skipped: {why}")];
        }
        if parts.is_empty() {
            parts.push("nothing to do".to_string());
        }
        out.push_str(&format!("{}: {}\n", t.transport, parts.join(", ")));
        for m in &t.messages {
            if m.outcome == MessageOutcome::Sent {
                continue;
            }
            let retry = m
                .retry_at
                .map(|t| format!(" until {}", t.to_rfc3339()))
                .unwrap_or_default();
            for (failed, error, addresses) in recipient_groups(&m.recipients) {
                let verdict = if failed {
                    "failed".to_string()
                } else {
                    format!("deferred{retry}")
                };
                out.push_str(&format!(
                    "  \"{}\" to {}: {verdict}: {error}\n",
                    m.subject,
                    first_few(&addresses)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapispool::flush::{MessageReport, TransportReport};

    #[test]
    fn a_message_to_thousands_is_summed_up_in_a_few_lines() {
        let mut recipients: Vec<RecipientReport> = (0..10_000)
            .map(|i| RecipientReport::Deferred {
                address: format!("r{i}@example.org"),
                error: "SMTP server mx:25 said: 451 4.3.0 try later".into(),
            })
            .collect();
        recipients.push(RecipientReport::Failed {
            address: "nobody@example.org".into(),
            error: "SMTP server mx:25 said: 550 5.1.1 unknown".into(),
        });
        recipients.push(RecipientReport::Delivered {
            address: "bob@example.org".into(),
        });
        let report = FlushReport {
            transports: vec![TransportReport {
                transport: "smtp".into(),
                entry_id: mapi::EntryId::from_bytes(vec![2]),
                upload: true,
                download: false,
                received: 0,
                error: None,
                error_code: None,
                skipped: None,
                messages: vec![MessageReport {
                    entry_id: mapi::EntryId::from_bytes(vec![1]),
                    subject: "news".into(),
                    outcome: MessageOutcome::Partial,
                    retry_at: None,
                    recipients,
                }],
            }],
            ..FlushReport::default()
        };
        let text = report_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1..],
            [
                "  \"news\" to r0@example.org, r1@example.org, r2@example.org and 9997 more: deferred: SMTP server mx:25 said: 451 4.3.0 try later",
                "  \"news\" to nobody@example.org: failed: SMTP server mx:25 said: 550 5.1.1 unknown",
            ],
            "{text}"
        );
    }
}

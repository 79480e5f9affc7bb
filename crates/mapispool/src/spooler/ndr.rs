//! Non-delivery reports (RFC 3464 `multipart/report`), written by the spooler into the sender's
//! Inbox when recipients fail for good, with MAPI's `PR_NDR_REASON_CODE` / `PR_NDR_DIAG_CODE`.

use mapi::FileTime;

use crate::message::rfc5322_date;
use crate::store::{InboundMessage, MessageRecord, NewRecipient, RecipientRecord};

/// The message class MAPI gives non-delivery reports.
pub const NDR_CLASS: &str = "REPORT.IPM.Note.NDR";

/// The message class of a delay notice (RFC 3464 `Action: delayed`). It starts with
/// `REPORT.` like every report, so nothing ever answers it.
pub const DELAY_CLASS: &str = "REPORT.IPM.Note.Delayed";

/// The sender name reports come from.
const MAILER_DAEMON: &str = "Mail Delivery System";

/// An RFC 3463 status code at the start of a server reply (`550 5.1.1 ...` → `5.1.1`).
fn enhanced_status(reply: &str) -> Option<&str> {
    reply.split_whitespace().take(2).find(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Builds the report for `failed` recipients of `original`: the props to file it with and its
/// RFC 5322 bytes. `original_headers` is the original's header block, quoted as
/// `text/rfc822-headers` so the sender can tell which message it was.
pub fn build(
    original: &MessageRecord,
    failed: &[RecipientRecord],
    original_headers: &[u8],
    reporting_host: &str,
    now: FileTime,
) -> (InboundMessage, Vec<u8>) {
    let lines: Vec<(String, String)> = failed
        .iter()
        .map(|r| {
            (
                r.address.clone(),
                r.last_error
                    .clone()
                    .unwrap_or_else(|| "delivery failed".to_string()),
            )
        })
        .collect();
    let (mut props, body) = report(
        Kind::Failed,
        original,
        &lines,
        original_headers,
        reporting_host,
        now,
    );
    let first = failed.first();
    props.ndr_reason_code = first.and_then(|r| r.ndr_reason_code);
    props.ndr_diag_code = first.and_then(|r| r.ndr_diag_code);
    (props, body)
}

/// Builds a delay notice for `delayed` recipients (address, the server's last words) of
/// `original`, which is still being retried until `expires`.
pub fn build_delay(
    original: &MessageRecord,
    delayed: &[(String, String)],
    expires: FileTime,
    original_headers: &[u8],
    reporting_host: &str,
    now: FileTime,
) -> (InboundMessage, Vec<u8>) {
    report(
        Kind::Delayed { expires },
        original,
        delayed,
        original_headers,
        reporting_host,
        now,
    )
}

#[derive(Clone, Copy)]
enum Kind {
    Failed,
    Delayed { expires: FileTime },
}

fn report(
    kind: Kind,
    original: &MessageRecord,
    lines: &[(String, String)],
    original_headers: &[u8],
    reporting_host: &str,
    now: FileTime,
) -> (InboundMessage, Vec<u8>) {
    let boundary = format!("=_mapispool_ndr_{}", now.0);
    let to = original
        .sender_address
        .clone()
        .or_else(|| original.envelope_from.clone())
        .unwrap_or_default();
    let (subject, mut text, action, default_status, class) = match kind {
        Kind::Failed => (
            format!("Undeliverable: {}", original.subject),
            String::from(
                "Your message could not be delivered to one or more recipients.\r\nIt will not be retried.\r\n\r\n",
            ),
            "failed",
            "5.0.0",
            NDR_CLASS,
        ),
        Kind::Delayed { expires } => (
            format!("Delayed: {}", original.subject),
            format!(
                "Your message has not yet been delivered to one or more recipients.\r\nIt will be retried until {}; you need not send it again.\r\n\r\n",
                rfc5322_date(expires)
            ),
            "delayed",
            "4.0.0",
            DELAY_CLASS,
        ),
    };
    let mut status = format!(
        "Reporting-MTA: dns; {reporting_host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(original.client_submit_time.unwrap_or(now))
    );
    for (address, error) in lines {
        // Reply text from a server can hold anything; one line per recipient keeps the report
        // well-formed whatever it said.
        let error = error.replace(['\r', '\n'], " ");
        text.push_str(&format!("  {address}: {error}\r\n"));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {address}\r\nAction: {action}\r\nStatus: {}\r\nDiagnostic-Code: smtp; {error}\r\n",
            enhanced_status(&error).unwrap_or(default_status),
        ));
        if let Kind::Delayed { expires } = kind {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(expires)));
        }
    }
    let mut headers = String::from_utf8_lossy(original_headers).into_owned();
    if !headers.ends_with('\n') {
        headers.push_str("\r\n");
    }
    let message_id = format!("<ndr.{}.{}@{reporting_host}>", now.0, original.id);
    let body = format!(
        "From: {MAILER_DAEMON} <MAILER-DAEMON@{reporting_host}>\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: {message_id}\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {text}\r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         {status}\r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {headers}\r\n\
         --{boundary}--\r\n",
        date = rfc5322_date(now),
    );
    let props = InboundMessage {
        message_class: class.to_string(),
        subject,
        sender_name: Some(MAILER_DAEMON.to_string()),
        sender_address: Some(format!("MAILER-DAEMON@{reporting_host}")),
        // The null sender: nothing ever answers a report (RFC 5321 §4.5.5).
        envelope_from: Some(String::new()),
        internet_message_id: Some(message_id.trim_matches(['<', '>']).to_string()),
        client_submit_time: Some(now),
        delivery_time: now,
        recipients: if to.is_empty() {
            Vec::new()
        } else {
            vec![NewRecipient::to(to)]
        },
        ..InboundMessage::default()
    };
    (props, body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_enhanced_status_codes() {
        assert_eq!(enhanced_status("550 5.1.1 <x@y>: unknown"), Some("5.1.1"));
        assert_eq!(enhanced_status("554 rejected"), None);
        assert_eq!(enhanced_status("5.7.1 denied"), Some("5.7.1"));
    }
}

//! Non-delivery reports (RFC 3464 `multipart/report`), written by the spooler into the sender's
//! Inbox when recipients fail for good, with MAPI's `PR_NDR_REASON_CODE` / `PR_NDR_DIAG_CODE`.

use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mapi::FileTime;

use crate::message::rfc5322_date;
use crate::store::{InboundMessage, LeasedRecord, NewRecipient, RecipientRecord};

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
    original: &LeasedRecord,
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
    original: &LeasedRecord,
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

/// The server's reply inside a recipient's error: transports write "SMTP server H:P said:
/// 550 5.1.1 ..." (smtp) or the reply itself (dir); `None` for a failure no server gave
/// (expiry, an address that cannot be sent).
fn server_reply(error: &str) -> Option<&str> {
    let reply = match error.find(" said: ") {
        Some(i) => &error[i + 7..],
        None => error,
    };
    let b = reply.as_bytes();
    let is_reply = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && matches!(b[0], b'2'..=b'5')
        && matches!(b.get(3), None | Some(b' ' | b'-'));
    is_reply.then_some(reply)
}

/// At most `n` bytes of `text`, cut at a character boundary: a DSN field stays well under
/// RFC 5322's line limit whatever a server said.
fn at_most(text: &str, n: usize) -> &str {
    if text.len() <= n {
        return text;
    }
    let mut end = n;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The report, built with `mail-builder` (RFC 3464 §2: a `multipart/report` of a text part, a
/// `message/delivery-status` part, and the original's header as `text/rfc822-headers`). The
/// subject and any non-ASCII text are RFC 2047/MIME-encoded by the builder.
fn report(
    kind: Kind,
    original: &LeasedRecord,
    lines: &[(String, String)],
    original_headers: &[u8],
    reporting_host: &str,
    now: FileTime,
) -> (InboundMessage, Vec<u8>) {
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
    // RFC 3464 §2.2: the per-message fields, then a group per recipient.
    let mut status = format!(
        "Reporting-MTA: dns; {reporting_host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(original.client_submit_time.unwrap_or(now))
    );
    for (address, error) in lines {
        // Reply text from a server can hold anything; one line per recipient keeps the report
        // well-formed whatever it said.
        let error = error.replace(['\r', '\n'], " ");
        text.push_str(&format!("  {address}: {error}\r\n"));
        let reply = server_reply(&error);
        status.push_str(&format!(
            "\r\nOriginal-Recipient: rfc822; {address}\r\nFinal-Recipient: rfc822; {address}\r\nAction: {action}\r\nStatus: {}\r\n",
            reply.and_then(enhanced_status).unwrap_or(default_status),
        ));
        // RFC 3464 §2.3.6: the server's own reply, as it gave it; none for a failure that no
        // server reported (the text part says what happened).
        if let Some(reply) = reply {
            status.push_str(&format!(
                "Diagnostic-Code: smtp; {}\r\n",
                at_most(reply, 900)
            ));
        }
        if let Kind::Delayed { expires } = kind {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(expires)));
        }
    }
    let message_id = format!("ndr.{}.{}@{reporting_host}", now.0, original.id);
    let seven_bit = || HeaderType::Raw(Raw::new("7bit"));
    let mut delivery_status = MimePart::new(
        ContentType::new("message/delivery-status"),
        BodyPart::Binary(status.into_bytes().into()),
    );
    delivery_status
        .headers
        .push(("Content-Transfer-Encoding".into(), seven_bit()));
    let mut headers_part = MimePart::new(
        ContentType::new("text/rfc822-headers"),
        BodyPart::Binary(original_headers.to_vec().into()),
    );
    if original_headers.is_ascii() {
        headers_part
            .headers
            .push(("Content-Transfer-Encoding".into(), seven_bit()));
    }
    let mut builder = MessageBuilder::new()
        .from(Address::new_address(
            Some(MAILER_DAEMON),
            format!("MAILER-DAEMON@{reporting_host}"),
        ))
        .subject(subject.as_str())
        .date(Date::new(now.unix_seconds()))
        .message_id(message_id.as_str())
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
            vec![
                MimePart::new("text/plain", text.as_str()),
                delivery_status,
                headers_part,
            ],
        ));
    if !to.is_empty() {
        builder = builder.to(to.as_str());
    }
    let body = builder.write_to_vec().unwrap_or_default();
    let props = InboundMessage {
        message_class: class.to_string(),
        subject,
        sender_name: Some(MAILER_DAEMON.to_string()),
        sender_address: Some(format!("MAILER-DAEMON@{reporting_host}")),
        // The null sender: nothing ever answers a report (RFC 5321 §4.5.5).
        envelope_from: Some(String::new()),
        internet_message_id: Some(message_id),
        client_submit_time: Some(now),
        delivery_time: now,
        recipients: if to.is_empty() {
            Vec::new()
        } else {
            vec![NewRecipient::to(to)]
        },
        ..InboundMessage::default()
    };
    (props, body)
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

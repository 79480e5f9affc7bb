//! What the spooler needs to know of an RFC 5322 message without holding its body: the header
//! summary (subject, sender, recipients, Message-ID, date), read with `mail-parser`.
//!
//! The raw bytes stay the stored truth; this is metadata only.

use mail_parser::{Address, HeaderName, MessageParser};

use mapi::constants::{MAPI_BCC, MAPI_CC, MAPI_TO};
use mapi::{FileTime, MapiError, MapiResult};

/// How much of a message is read to find its headers. Headers longer than this are unusual
/// enough (a mail loop's Received chain) that refusing them is safer than buffering more.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// One mailbox from a header: display name and addr-spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// The name people see: the display name, else the address.
    pub fn display(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }
}

/// A recipient as the header gave it, with MAPI's recipient type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRecipient {
    pub mailbox: Mailbox,
    pub recipient_type: i32,
}

/// The header fields mapispool reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderSummary {
    pub subject: Option<String>,
    pub from: Option<Mailbox>,
    pub recipients: Vec<HeaderRecipient>,
    pub message_id: Option<String>,
    pub date: Option<FileTime>,
    /// `Auto-Submitted` other than `no`, or an empty `Return-Path`: a report or other automatic
    /// message, never to be answered by a non-delivery report (RFC 3834, RFC 5321 §4.5.5).
    pub auto_submitted: bool,
    /// Whether the header has these fields at all, whatever their values: `submit` adds the
    /// missing ones and never touches one that is there, even one it cannot read.
    pub has_from: bool,
    pub has_date: bool,
    pub has_message_id: bool,
    /// Entries of To:, Cc: or Bcc: that hold no address (`To: a@x, junk`), as written: a
    /// message whose recipients come from its headers is refused over them.
    pub malformed_recipients: Vec<String>,
}

/// The header block of `bytes`: everything up to and including the first empty line.
/// `None` when no empty line ends the headers within `MAX_HEADER_BYTES`.
pub fn header_block(bytes: &[u8]) -> Option<&[u8]> {
    let limit = bytes.len().min(MAX_HEADER_BYTES);
    let window = &bytes[..limit];
    // One pass over the line ends (memchr), stopping at the first that ends the block: `\n\n`
    // or `\r\n\r\n`, whichever ends first. Searching for each pattern over the whole window
    // read up to 1 MiB of every CRLF message looking for a `\n\n` it never has (14 % of a
    // download's CPU).
    for nl in memchr::memchr_iter(b'\n', window) {
        match window.get(nl + 1) {
            Some(b'\n') => return Some(&bytes[..nl + 2]),
            Some(b'\r')
                if nl > 0 && window[nl - 1] == b'\r' && window.get(nl + 2) == Some(&b'\n') =>
            {
                return Some(&bytes[..nl + 3]);
            }
            _ => {}
        }
    }
    (bytes.len() < MAX_HEADER_BYTES).then_some(bytes)
}

impl HeaderSummary {
    /// Reads the summary from the start of a message (the header block is enough).
    ///
    /// Errors with `MAPI_E_CORRUPT_DATA` when there is no header at all: a message without
    /// headers cannot be sent or filed sensibly, and saying so beats storing garbage.
    pub fn parse(bytes: &[u8]) -> MapiResult<HeaderSummary> {
        let headers = header_block(bytes).ok_or_else(|| {
            MapiError::corrupt_data(format!(
                "the message has no end of headers (an empty line) within its first {} bytes",
                MAX_HEADER_BYTES
            ))
        })?;
        let parsed = MessageParser::default().parse_headers(headers).ok_or_else(|| {
            MapiError::corrupt_data(
                "the message has no RFC 5322 header fields; expected lines like \"From: a@example.com\" before an empty line",
            )
        })?;
        let mut recipients = Vec::new();
        let mut malformed_recipients = Vec::new();
        // Every occurrence of a field counts: mail-parser's `to()`/`cc()`/`bcc()` give only one
        // of them, and a message with two `Bcc:` fields (RFC 5322 allows one, clients write
        // two) must reach the recipients of both.
        let fields = [
            (HeaderName::To, MAPI_TO),
            (HeaderName::Cc, MAPI_CC),
            (HeaderName::Bcc, MAPI_BCC),
        ];
        let occurrences = fields.into_iter().flat_map(|(name, recipient_type)| {
            parsed
                .header_values(name)
                .filter_map(|v| v.as_address())
                .map(move |a| (Some(a), recipient_type))
                .collect::<Vec<_>>()
        });
        for (address, recipient_type) in occurrences {
            malformed_recipients.extend(address.into_iter().flat_map(|a| {
                a.iter()
                    .filter(|addr| addr.address().is_none())
                    .filter_map(|addr| addr.name().map(str::to_string))
            }));
            recipients.extend(
                mailboxes(address)
                    .into_iter()
                    .map(|mailbox| HeaderRecipient {
                        mailbox,
                        recipient_type,
                    }),
            );
        }
        let auto_submitted = parsed
            .header_raw("Auto-Submitted")
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("no"))
            || parsed
                .header_raw("Return-Path")
                .is_some_and(|v| v.trim() == "<>");
        Ok(HeaderSummary {
            subject: parsed.subject().map(str::to_string),
            from: mailboxes(parsed.from()).into_iter().next(),
            recipients,
            message_id: parsed.message_id().map(str::to_string),
            date: parsed
                .date()
                .map(|d| FileTime::from_unix_seconds(d.to_timestamp())),
            auto_submitted,
            has_from: parsed.header_raw("From").is_some(),
            has_date: parsed.header_raw("Date").is_some(),
            has_message_id: parsed.header_raw("Message-ID").is_some(),
            malformed_recipients,
        })
    }
}

fn mailboxes(address: Option<&Address<'_>>) -> Vec<Mailbox> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    Some(Mailbox {
                        name: addr.name().map(str::to_string).filter(|n| !n.is_empty()),
                        address: addr.address()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks an envelope address: a bare RFC 5322 addr-spec (`local@domain`, a quoted local part
/// or a domain literal allowed), as the `email_address` crate reads it. Control characters and
/// white space are named first (CR/LF would inject SMTP commands), then angle brackets, then
/// whatever else the grammar refuses (`bad@@x`, `me@`, `a b@c`).
pub fn check_address(address: &str) -> Result<(), String> {
    if address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "address {address:?} contains white space or a control character; give a bare address like me@example.com"
        ));
    }
    if address.contains(['<', '>']) {
        return Err(format!(
            "address {address:?} has angle brackets; give the bare address, like me@example.com"
        ));
    }
    let options = email_address::Options::default().without_display_text();
    email_address::EmailAddress::parse_with_options(address, options)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{address:?} is not an e-mail address ({}); expected one like me@example.com",
                e.to_string().trim_end_matches('.')
            )
        })
}

/// Refuses a header block with a bare CR (one not followed by LF): a header line may only be
/// continued by folding (CRLF or LF, then white space). A bare CR would end the line for some
/// readers and not for others — a way to smuggle a header (or, to a naive relay, a command) in
/// past our checks — so `submit` says so instead of storing it.
pub fn check_header_line_ends(block: &[u8]) -> Result<(), String> {
    let bare = block
        .iter()
        .enumerate()
        .find(|&(i, &b)| b == b'\r' && block.get(i + 1) != Some(&b'\n'));
    match bare {
        None => Ok(()),
        Some((i, _)) => {
            let line_start = block[..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let line_end = block[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(block.len(), |p| i + p);
            let line = String::from_utf8_lossy(&block[line_start..line_end.min(line_start + 120)]);
            Err(format!(
                "a header line holds a bare CR (a carriage return without a line feed): {:?}; end header lines with CRLF or LF, and continue a long one on a line that starts with a space",
                line.trim_end_matches(['\r', '\n'])
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Alice <alice@example.com>\r\nTo: bob@example.com, \"Carol C\" <carol@example.com>\r\nCc: dan@example.com\r\nBcc: eve@example.com\r\nSubject: Hello there\r\nMessage-ID: <1@example.com>\r\nDate: Wed, 25 Nov 2026 17:00:00 +0000\r\n\r\nBody\r\n";

    #[test]
    fn every_occurrence_of_to_cc_and_bcc_counts() {
        let msg = b"From: a@x.example\nTo: b@x.example\nBcc: c@x.example\nTo: d@x.example\nBcc: e@x.example, f@x.example\nCc: g@x.example\n\nhi\n";
        let s = HeaderSummary::parse(msg).expect("parses");
        let rcpts: Vec<_> = s
            .recipients
            .iter()
            .map(|r| (r.mailbox.address.as_str(), r.recipient_type))
            .collect();
        assert_eq!(
            rcpts,
            vec![
                ("b@x.example", MAPI_TO),
                ("d@x.example", MAPI_TO),
                ("g@x.example", MAPI_CC),
                ("c@x.example", MAPI_BCC),
                ("e@x.example", MAPI_BCC),
                ("f@x.example", MAPI_BCC),
            ]
        );
    }

    #[test]
    fn reads_the_header_summary() {
        let s = HeaderSummary::parse(MSG).expect("parses");
        assert_eq!(s.subject.as_deref(), Some("Hello there"));
        let from = s.from.expect("from");
        assert_eq!(from.address, "alice@example.com");
        assert_eq!(from.display(), "Alice");
        let rcpts: Vec<_> = s
            .recipients
            .iter()
            .map(|r| (r.mailbox.address.as_str(), r.recipient_type))
            .collect();
        assert_eq!(
            rcpts,
            vec![
                ("bob@example.com", MAPI_TO),
                ("carol@example.com", MAPI_TO),
                ("dan@example.com", MAPI_CC),
                ("eve@example.com", MAPI_BCC)
            ]
        );
        assert_eq!(s.message_id.as_deref(), Some("1@example.com"));
        assert_eq!(
            s.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-11-25T17:00:00Z")
        );
        assert!(!s.auto_submitted);
    }

    #[test]
    fn header_block_stops_at_the_empty_line() {
        assert_eq!(header_block(b"A: b\n\nbody"), Some(&b"A: b\n\n"[..]));
        assert_eq!(
            header_block(b"A: b\r\n\r\nbody"),
            Some(&b"A: b\r\n\r\n"[..])
        );
        assert_eq!(header_block(b"A: b\r\n"), Some(&b"A: b\r\n"[..]));
    }

    #[test]
    fn header_block_ends_where_the_first_empty_line_ends() {
        // The first of `\n\n` and `\r\n\r\n` to end wins; `\n\r\n` alone is no empty line.
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (b"A\n\r\n\r\nB", Some(b"A\n\r\n\r\n")),
            (b"A\r\n\nB", Some(b"A\r\n\n")),
            (b"A\n\r\nB", Some(b"A\n\r\nB")),
            (b"\n\nB", Some(b"\n\n")),
            (b"\r\n\r\n", Some(b"\r\n\r\n")),
            (b"A\r\nB\r\n\r\n\n\n", Some(b"A\r\nB\r\n\r\n")),
            (b"A\r\r\n\r\n", Some(b"A\r\r\n\r\n")),
            (b"", Some(b"")),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                header_block(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut long = vec![b'x'; MAX_HEADER_BYTES];
        long.extend_from_slice(b"\n\nbody");
        assert_eq!(header_block(&long), None);
        long[MAX_HEADER_BYTES - 2] = b'\n';
        long[MAX_HEADER_BYTES - 1] = b'\n';
        assert_eq!(header_block(&long).map(<[u8]>::len), Some(MAX_HEADER_BYTES));
    }

    #[test]
    fn reports_are_auto_submitted() {
        let s = HeaderSummary::parse(b"From: x@y\r\nAuto-Submitted: auto-replied\r\n\r\n")
            .expect("parses");
        assert!(s.auto_submitted);
    }

    #[test]
    fn a_bare_cr_in_the_header_is_refused_folding_is_not() {
        assert!(check_header_line_ends(b"Subject: a\r\n b\r\n\tc\r\n\r\n").is_ok());
        assert!(check_header_line_ends(b"Subject: a\n b\n\n").is_ok());
        let e = check_header_line_ends(b"To: <b@x>\r\nSubject: hi\r.\rRSET\r\n\r\n")
            .expect_err("bare CR");
        assert!(e.contains("bare CR") && e.contains("Subject: hi"), "{e}");
        assert!(check_header_line_ends(b"Subject: x\r").is_err());
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("me@example.com").is_ok());
        assert!(check_address("me@example.com\r\nRCPT TO:<x@y>").is_err());
        assert!(check_address("<me@example.com>").is_err());
        assert!(check_address("me").is_err());
        assert!(check_address("@example.com").is_err());
        assert!(check_address("me@localhost").is_ok());
        assert!(check_address("\"a..b\"@example.com").is_ok());
        assert!(check_address("a..b@example.com").is_err());
        assert_eq!(
            check_address("bad@@x").expect_err("two @"),
            "\"bad@@x\" is not an e-mail address (Invalid character); expected one like me@example.com"
        );
        assert!(check_address("me@").is_err());
        assert!(check_address("me@example..com").is_err());
    }
}

/// An RFC 5322 `Date:` value in UTC, e.g. `Wed, 25 Nov 2026 17:00:00 +0000` (chrono's
/// RFC 2822 form, which RFC 5322 keeps).
pub fn rfc5322_date(t: FileTime) -> String {
    chrono::DateTime::from_timestamp(t.unix_seconds(), 0)
        .unwrap_or_default()
        .to_rfc2822()
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn formats_rfc5322_dates() {
        let t = FileTime::parse_rfc3339("2026-11-25T17:00:05Z").expect("time");
        assert_eq!(rfc5322_date(t), "Wed, 25 Nov 2026 17:00:05 +0000");
        let t = FileTime::parse_rfc3339("2024-02-29T00:00:00Z").expect("time");
        assert_eq!(rfc5322_date(t), "Thu, 29 Feb 2024 00:00:00 +0000");
        let t = FileTime::parse_rfc3339("2026-12-07T09:05:03Z").expect("time");
        assert_eq!(rfc5322_date(t), "Mon, 7 Dec 2026 09:05:03 +0000");
        // And back through the parser we read headers with.
        let parsed = HeaderSummary::parse(format!("Date: {}\r\n\r\n", rfc5322_date(t)).as_bytes())
            .expect("parses");
        assert_eq!(parsed.date, Some(t));
    }
}

//! What `submit` makes of a message on its way into the Outbox: the envelope (sender and
//! recipients, from the submission and the headers), the checks on every value a caller hands
//! in, and the header fields a sent message must have that mapispool adds when they are
//! missing (`From:`, `Date:`, `Message-ID:`, RFC 5322 §3.6). They are added once, before the
//! message is stored, so the Outbox copy, every retry and the Sent Items copy carry the same
//! values; fields the message has are never touched.
//!
//! Header fields are written with mail-builder (RFC 2047 for non-ASCII display names, folding),
//! dates with chrono ([`rfc5322_date`]).

use mail_builder::headers::Header;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::generate_message_id_header;

use mapi::constants::MAPI_BCC;
use mapi::{FileTime, MapiError, MapiResult};

use crate::message::{HeaderSummary, check_address, rfc5322_date};
use crate::store::NewRecipient;

/// Refuses a value a caller hands in (a flag, an API field) that holds CR, LF or NUL: written
/// into a header it would end the line there and start a header of the caller's choosing (the
/// web-form relay hole: `-F $'Visitor\nBcc: evil@x'`); in an SMTP command, a command.
///
/// Errors: `MAPI_E_INVALID_PARAMETER`, naming `what` and the character.
pub fn check_field(what: &str, value: &str) -> MapiResult<()> {
    let bad = value.chars().find(|c| matches!(c, '\r' | '\n' | '\0'));
    match bad {
        None => Ok(()),
        Some(c) => Err(MapiError::invalid_parameter(format!(
            "{what} {value:?} holds a {} character, which would end a header line and let the rest become a header of its own; give it on one line",
            match c {
                '\r' => "CR",
                '\n' => "LF",
                _ => "NUL",
            }
        ))),
    }
}

/// The envelope sender a submission asks for: `None` (the transport's address), `Some("")`
/// (the null sender, also written `<>`), or an address, checked.
///
/// Errors: `MAPI_E_INVALID_PARAMETER` for a malformed address.
pub fn envelope_sender(from: Option<&str>) -> MapiResult<Option<String>> {
    match from {
        None => Ok(None),
        Some("" | "<>") => Ok(Some(String::new())),
        Some(address) => {
            check_address(address)
                .map_err(|e| MapiError::invalid_parameter(format!("sender: {e}")))?;
            Ok(Some(address.to_string()))
        }
    }
}

/// The recipient rows of a submission.
///
/// `arguments` are envelope recipients: each is delivered to, and takes its recipient type
/// and display name from the header that names it (`To:`, `Cc:`, `Bcc:`); one no header
/// names is a blind recipient (`MAPI_BCC`), so `PR_DISPLAY_TO` and `PR_DISPLAY_CC` show what
/// the message's readers see. With `from_headers` (sendmail's `-t`), or without arguments,
/// the header recipients are added too, each once.
///
/// Errors: `MAPI_E_INVALID_PARAMETER` for a malformed address, an argument's or (when the
/// headers give recipients) the headers'; `MAPI_E_NO_RECIPIENTS` when nobody is left.
pub fn envelope_recipients(
    arguments: &[String],
    from_headers: bool,
    summary: &HeaderSummary,
) -> MapiResult<Vec<NewRecipient>> {
    let use_headers = arguments.is_empty() || from_headers;
    if use_headers && let Some(junk) = summary.malformed_recipients.first() {
        return Err(MapiError::invalid_parameter(format!(
            "recipient: the header names {junk:?}, which is not an e-mail address; expected one like me@example.com"
        )));
    }
    let mut recipients: Vec<NewRecipient> = Vec::new();
    let mut add = |recipient: NewRecipient| {
        if !recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(&recipient.address))
        {
            recipients.push(recipient);
        }
    };
    for address in arguments {
        check_field("recipient", address)?;
        let named = summary
            .recipients
            .iter()
            .find(|r| r.mailbox.address.eq_ignore_ascii_case(address));
        add(NewRecipient {
            display_name: named
                .and_then(|r| r.mailbox.name.clone())
                .unwrap_or_default(),
            address: address.clone(),
            recipient_type: named.map_or(MAPI_BCC, |r| r.recipient_type),
        });
    }
    if use_headers {
        for r in &summary.recipients {
            add(NewRecipient {
                display_name: r.mailbox.display().to_string(),
                address: r.mailbox.address.clone(),
                recipient_type: r.recipient_type,
            });
        }
    }
    if recipients.is_empty() {
        return Err(MapiError::no_recipients(
            "the message has no recipients: give them as arguments, or in To:, Cc: or Bcc: headers",
        ));
    }
    for r in &recipients {
        check_address(&r.address)
            .map_err(|e| MapiError::invalid_parameter(format!("recipient: {e}")))?;
    }
    Ok(recipients)
}

/// The sender a `From:` header names when `submit` has to write one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author<'a> {
    /// The display name, RFC 2047-encoded when it is not ASCII.
    pub name: Option<&'a str>,
    pub address: &'a str,
}

/// The header fields `summary` lacks that every sent message needs, as lines ending in `eol`,
/// to go before the message's own: `From:` (naming `author`), `Date:` (`now`) and
/// `Message-ID:` (a unique id at `domain`, the sending account's). When `headerless` (the
/// message is a body alone), an empty line follows them, which ends the header it now has.
pub fn missing_fields(
    summary: &HeaderSummary,
    headerless: bool,
    author: &Author<'_>,
    domain: &str,
    now: FileTime,
    eol: &[u8],
) -> Vec<u8> {
    let mut fields: Vec<u8> = Vec::new();
    if !summary.has_from {
        fields.extend_from_slice(b"From: ");
        let name = author.name.map(str::trim).filter(|n| !n.is_empty());
        Address::new_address(name, author.address).write_header(&mut fields, "From: ".len());
    }
    if !summary.has_date {
        fields.extend_from_slice(format!("Date: {}\r\n", rfc5322_date(now)).as_bytes());
    }
    if !summary.has_message_id {
        fields.extend_from_slice(b"Message-ID: ");
        generate_message_id_header(&mut fields, domain);
        fields.extend_from_slice(b"\r\n");
    }
    if fields.is_empty() {
        return fields;
    }
    if headerless {
        fields.extend_from_slice(b"\r\n");
    }
    if eol == b"\r\n" {
        fields
    } else {
        // mail-builder writes CRLF (folded lines too); the stored message keeps one line end.
        let mut out = Vec::with_capacity(fields.len());
        for line in fields.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(line.strip_suffix(b"\r\n").unwrap_or(line));
            out.extend_from_slice(eol);
        }
        out
    }
}

/// The line end a message uses, from its first line: CRLF or LF (CRLF when it has none).
pub fn line_end(head: &[u8]) -> &'static [u8] {
    match head.iter().position(|b| *b == b'\n') {
        Some(i) if i > 0 && head[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

/// True when `head` does not start with a header field (or with the empty line of an empty
/// header): a message that is a body alone, to which sendmail gives a header.
pub fn is_headerless(head: &[u8]) -> bool {
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    if first.is_empty() {
        return head.is_empty();
    }
    let name = first
        .iter()
        .position(|b| *b == b':')
        .map(|colon| &first[..colon]);
    !name.is_some_and(|n| !n.is_empty() && n.iter().all(|b| b.is_ascii_graphic()))
}

/// The domain of an address, for `Message-ID:`; `localhost` for one without.
pub fn domain_of(address: &str) -> &str {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain)
        .filter(|d| !d.is_empty())
        .unwrap_or("localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapi::MapiCode;
    use mapi::constants::{MAPI_CC, MAPI_TO};

    fn at(text: &str) -> FileTime {
        FileTime::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn cr_lf_and_nul_are_refused_in_fields() {
        assert!(check_field("full name", "José Núñez").is_ok());
        for bad in ["Visitor\nBcc: evil@x", "a\rb", "a\0b", "a\r\n b"] {
            let e = check_field("full name", bad).expect_err(bad);
            assert_eq!(e.code, MapiCode::InvalidParameter);
        }
        let e = check_field("full name", "Visitor\nBcc: evil@x").expect_err("LF");
        assert_eq!(
            e.cause,
            "full name \"Visitor\\nBcc: evil@x\" holds a LF character, which would end a header line and let the rest become a header of its own; give it on one line"
        );
    }

    #[test]
    fn the_null_sender_and_checked_senders() {
        assert_eq!(envelope_sender(None).unwrap(), None);
        assert_eq!(envelope_sender(Some("<>")).unwrap(), Some(String::new()));
        assert_eq!(envelope_sender(Some("")).unwrap(), Some(String::new()));
        assert_eq!(
            envelope_sender(Some("me@x.test")).unwrap().as_deref(),
            Some("me@x.test")
        );
        for bad in ["bad@@x", "<me@x.test>", "me@x.test\r\nRCPT TO:<e@x>"] {
            assert_eq!(
                envelope_sender(Some(bad)).expect_err(bad).code,
                MapiCode::InvalidParameter
            );
        }
    }

    fn summary(header: &str) -> HeaderSummary {
        HeaderSummary::parse(header.as_bytes()).expect("parses")
    }

    fn rows(r: &[NewRecipient]) -> Vec<(&str, &str, i32)> {
        r.iter()
            .map(|r| {
                (
                    r.address.as_str(),
                    r.display_name.as_str(),
                    r.recipient_type,
                )
            })
            .collect()
    }

    #[test]
    fn arguments_take_their_type_from_the_headers() {
        let s = summary(
            "From: me@x.test\r\nTo: Ann <a@x.test>\r\nCc: c@x.test\r\nBcc: b@x.test\r\n\r\n",
        );
        let args: Vec<String> = ["a@x.test", "C@x.test", "b@x.test", "d@x.test"]
            .map(String::from)
            .to_vec();
        let r = envelope_recipients(&args, false, &s).expect("recipients");
        assert_eq!(
            rows(&r),
            [
                ("a@x.test", "Ann", MAPI_TO),
                ("C@x.test", "", MAPI_CC),
                ("b@x.test", "", MAPI_BCC),
                ("d@x.test", "", MAPI_BCC),
            ]
        );
        // -t adds the header recipients, each once.
        let r = envelope_recipients(&["d@x.test".into()], true, &s).expect("recipients");
        assert_eq!(
            rows(&r),
            [
                ("d@x.test", "", MAPI_BCC),
                ("a@x.test", "Ann", MAPI_TO),
                ("c@x.test", "c@x.test", MAPI_CC),
                ("b@x.test", "b@x.test", MAPI_BCC),
            ]
        );
    }

    #[test]
    fn bad_header_addresses_are_refused_when_they_are_the_envelope() {
        for header in [
            "To: bad@@x\r\n\r\n",
            "To: ok@x.test, junk\r\n\r\n",
            "To: me@\r\n\r\n",
        ] {
            let e = envelope_recipients(&[], true, &summary(header)).expect_err(header);
            assert_eq!(e.code, MapiCode::InvalidParameter, "{header}: {e}");
            assert!(e.cause.starts_with("recipient: "), "{e}");
        }
        let e = envelope_recipients(&[], true, &summary("To: bad@@x\r\n\r\n")).expect_err("@@");
        assert_eq!(
            e.cause,
            "recipient: \"bad@@x\" is not an e-mail address (Invalid character); expected one like me@example.com"
        );
        // Not the envelope: the arguments are, and they are fine.
        assert!(
            envelope_recipients(&["ok@x.test".into()], false, &summary("To: junk\r\n\r\n")).is_ok()
        );
        assert_eq!(
            envelope_recipients(&[], true, &summary("Subject: x\r\n\r\n"))
                .expect_err("nobody")
                .code,
            MapiCode::NoRecipients
        );
    }

    #[test]
    fn missing_fields_are_written_once_in_the_messages_line_end() {
        let now = at("2026-12-07T09:05:03Z");
        let author = Author {
            name: Some("José Núñez"),
            address: "jose@x.test",
        };
        let s = summary("Subject: x\n\n");
        let added = missing_fields(&s, false, &author, "x.test", now, b"\n");
        let text = String::from_utf8(added).expect("ASCII");
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[0],
            "From: =?utf-8?B?Sm9zw6kgTsO6w7Fleg==?= <jose@x.test>\n"
        );
        assert_eq!(lines[1], "Date: Mon, 7 Dec 2026 09:05:03 +0000\n");
        let id = lines[2]
            .strip_prefix("Message-ID: <")
            .and_then(|l| l.strip_suffix("@x.test>\n"))
            .expect(lines[2]);
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '.'),
            "{id}"
        );
        // What the parser reads back is what was meant.
        let back = summary(&format!("{text}\n"));
        assert_eq!(back.from.expect("from").display(), "José Núñez");
        assert_eq!(
            back.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-12-07T09:05:03Z")
        );

        // A message that has them keeps them, even unreadable ones.
        let s = summary("From: a@x.test\r\nDate: whenever\r\nMessage-ID: <1@x>\r\n\r\n");
        assert!(missing_fields(&s, false, &author, "x.test", now, b"\r\n").is_empty());

        // A body alone gets a header, ended by an empty line.
        let s = HeaderSummary::default();
        let plain = Author {
            name: None,
            address: "me@x.test",
        };
        let added = missing_fields(&s, true, &plain, "x.test", now, b"\r\n");
        let text = String::from_utf8(added).expect("ASCII");
        assert!(text.starts_with("From: <me@x.test>\r\nDate: "), "{text}");
        assert!(text.ends_with("@x.test>\r\n\r\n"), "{text}");
    }

    #[test]
    fn message_ids_differ() {
        let s = summary("From: a@x.test\r\nDate: whenever\r\n\r\n");
        let author = Author {
            name: None,
            address: "a@x.test",
        };
        let now = FileTime::now();
        let ids: std::collections::HashSet<Vec<u8>> = (0..1000)
            .map(|_| missing_fields(&s, false, &author, "x.test", now, b"\r\n"))
            .collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn headerless_and_line_ends() {
        assert!(is_headerless(b"just a body\n"));
        assert!(is_headerless(b"Hello there: friend\n"));
        assert!(is_headerless(b""));
        assert!(!is_headerless(b"Subject: x\n\nbody"));
        assert!(!is_headerless(b"\nbody"));
        assert_eq!(line_end(b"Subject: x\r\n"), b"\r\n");
        assert_eq!(line_end(b"Subject: x\n"), b"\n");
        assert_eq!(line_end(b"Subject: x"), b"\r\n");
        assert_eq!(domain_of("me@x.test"), "x.test");
        assert_eq!(domain_of("me"), "localhost");
    }
}

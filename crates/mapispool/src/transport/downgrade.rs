//! 8-bit content for a server that did not offer to take it, as Postfix does it: body parts
//! converted to base64 for a server without `8BITMIME` (RFC 6152 §3), UTF-8 headers
//! RFC 2047-encoded for a server without `SMTPUTF8` (RFC 6531). The stored message is never
//! changed; this is the wire form only.
//!
//! The same converter carries the line-length policy: a part with a NUL byte or a line over
//! 998 octets (RFC 5322 §2.1.1) goes out base64-encoded, with or without `8BITMIME` — the
//! content arrives intact instead of being refused or folded by a server.
//!
//! It works line by line on the stream, MIME-aware (multipart boundaries, `message/rfc822`),
//! holding at most one part's first [`LOOKAHEAD`] bytes to decide whether that part needs
//! converting: a part converts when it has a byte that the server cannot take within those
//! bytes, or when it is declared `8bit`/`binary` and longer. A part declared 7-bit (or not at
//! all) that shows nothing of the sort in its first MiB is trusted, as Postfix trusts every
//! declaration. Headers of nested parts are left as they are.
//!
//! Base64 rather than quoted-printable: `mail-builder` keeps its body encoders private, and
//! base64 of 57-byte groups streams with the RFC 4648 encoder the SMTP codec already has.

use std::borrow::Cow;

use mail_builder::headers::Header;
use mail_builder::headers::address::Address as BuiltAddress;
use mail_builder::headers::text::Text;
use mail_parser::MimeHeaders;

use super::smtp::codec::base64;
use super::wire::{field_name, fields};

/// How much of a part is held to decide whether it needs converting.
pub const LOOKAHEAD: usize = 1024 * 1024;
/// The longest line RFC 5322 allows, without its CRLF.
pub const MAX_LINE: usize = 998;
/// A line longer than this is handled in pieces (never held whole).
const LINE_PIECE: usize = 64 * 1024;
/// A part header longer than this is passed through unread.
const MAX_PART_HEADER: usize = 64 * 1024;

/// A MIME part's header, as far as conversion cares.
#[derive(Debug, Default, Clone)]
struct PartInfo {
    /// `multipart/*` with its boundary.
    boundary: Option<Vec<u8>>,
    /// `message/rfc822`: a message header follows.
    message: bool,
    /// Already base64 or quoted-printable: 7-bit safe as it is.
    encoded: bool,
    /// Declared `8bit` or `binary`.
    declared_8bit: bool,
    /// There is a `Content-Type` field.
    typed: bool,
    /// There is a `MIME-Version` field.
    mime_version: bool,
}

enum State {
    /// A header section (the message's, a part's, or a nested message's), collected.
    Header { lines: Vec<u8>, top: bool },
    /// Passed through unchanged until the next boundary.
    Pass,
    /// A leaf body held (up to [`LOOKAHEAD`]) until it shows whether it needs converting.
    Hold {
        header: Vec<u8>,
        info: PartInfo,
        top: bool,
        body: Vec<u8>,
    },
    /// A leaf body going out as base64.
    Encode { pending: Vec<u8>, eol_due: bool },
}

/// The streaming converter: [`Downgrade::push`] the message (header and body) in any pieces,
/// then [`Downgrade::finish`].
pub struct Downgrade {
    /// The server takes 8-bit (8BITMIME): only NUL and over-long lines convert a part.
    eight_bit_ok: bool,
    line: Vec<u8>,
    /// How long the current line is so far (pieces of a long line included).
    line_len: usize,
    state: State,
    /// Open multipart boundaries, outermost first.
    boundaries: Vec<Vec<u8>>,
}

impl Downgrade {
    pub fn new(eight_bit_ok: bool) -> Downgrade {
        Downgrade {
            eight_bit_ok,
            line: Vec::new(),
            line_len: 0,
            state: State::Header {
                lines: Vec::new(),
                top: true,
            },
            boundaries: Vec::new(),
        }
    }

    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if matches!(self.state, State::Pass) && self.boundaries.is_empty() {
                // Nothing can change any more (no boundary to wait for): the rest as it is.
                out.append(&mut self.line);
                out.extend_from_slice(input);
                return;
            }
            if let Some(taken) = self.hold_whole_lines(input) {
                input = &input[taken..];
                continue;
            }
            match memchr::memchr(b'\n', input) {
                Some(k) => {
                    let (line, rest) = input.split_at(k + 1);
                    input = rest;
                    if self.line.is_empty() {
                        self.on_line(line, true, out);
                    } else {
                        // A line that started in an earlier piece; its buffer is kept for the
                        // next one.
                        let mut held = std::mem::take(&mut self.line);
                        held.extend_from_slice(line);
                        self.on_line(&held, true, out);
                        held.clear();
                        self.line = held;
                    }
                    self.line_len = 0;
                }
                None => {
                    self.line.extend_from_slice(input);
                    input = &[];
                    if self.line.len() >= LINE_PIECE {
                        let mut piece = std::mem::take(&mut self.line);
                        self.on_line(&piece, false, out);
                        piece.clear();
                        self.line = piece;
                    }
                }
            }
        }
    }

    /// A leaf body being held, outside any multipart: the whole lines at the start of `input`
    /// at once when none of them decides anything (no NUL, none too long, no 8-bit unless
    /// allowed, the lookahead not exceeded): what [`Downgrade::on_line`] would do with each,
    /// without its per-line work. How many bytes it took, `None` when it took none.
    fn hold_whole_lines(&mut self, input: &[u8]) -> Option<usize> {
        if !self.line.is_empty() || self.line_len != 0 || !self.boundaries.is_empty() {
            return None;
        }
        let State::Hold { body, .. } = &mut self.state else {
            return None;
        };
        let lines = &input[..=memchr::memrchr(b'\n', input)?];
        if body.len() + lines.len() > LOOKAHEAD
            || memchr::memchr(0, lines).is_some()
            || (!self.eight_bit_ok && !lines.is_ascii())
        {
            return None;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', lines) {
            if strip_eol(&lines[start..=end]).len() > MAX_LINE {
                return None;
            }
            start = end + 1;
        }
        body.extend_from_slice(lines);
        Some(lines.len())
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.line.is_empty() {
            let rest = std::mem::take(&mut self.line);
            self.on_line(&rest, false, out);
        }
        self.end_part(false, out);
    }

    /// One line with its ending (`ended`), or a piece of a long line.
    fn on_line(&mut self, line: &[u8], ended: bool, out: &mut Vec<u8>) {
        let content = strip_eol(line);
        let start_of_line = self.line_len == 0;
        self.line_len += content.len();
        if start_of_line
            && ended
            && let Some(depth) = self.boundary_at(content)
        {
            self.end_part(true, out);
            out.extend_from_slice(line);
            let closing = trim_wsp(content).ends_with(b"--")
                && trim_wsp(content).len() == self.boundaries[depth].len() + 4;
            if closing {
                self.boundaries.truncate(depth);
                self.state = State::Pass;
            } else {
                self.boundaries.truncate(depth + 1);
                self.state = State::Header {
                    lines: Vec::new(),
                    top: false,
                };
            }
            return;
        }
        let line_len = self.line_len;
        match &mut self.state {
            State::Header { lines, top } => {
                lines.extend_from_slice(line);
                let top = *top;
                let empty = start_of_line && ended && content.is_empty();
                if empty {
                    let header = std::mem::take(lines);
                    self.end_header(header, top, out);
                } else if lines.len() > MAX_PART_HEADER || !ended {
                    out.extend_from_slice(&std::mem::take(lines));
                    self.state = State::Pass;
                }
            }
            State::Pass => out.extend_from_slice(line),
            State::Hold {
                header,
                info,
                top,
                body,
            } => {
                body.extend_from_slice(line);
                let unsafe_bytes = memchr::memchr(0, content).is_some()
                    || line_len > MAX_LINE
                    || (!self.eight_bit_ok && !content.is_ascii());
                let full = body.len() > LOOKAHEAD;
                if unsafe_bytes || (full && info.declared_8bit && !self.eight_bit_ok) {
                    let (header, info, top, body) = (
                        std::mem::take(header),
                        std::mem::take(info),
                        *top,
                        std::mem::take(body),
                    );
                    converted_header(&header, &info, top, &body, out);
                    self.state = State::Encode {
                        pending: Vec::new(),
                        eol_due: false,
                    };
                    self.encode_held(&body, out);
                } else if full {
                    out.extend_from_slice(header);
                    out.extend_from_slice(body);
                    self.state = State::Pass;
                }
            }
            State::Encode { .. } => self.encode_held(line, out),
        }
    }

    /// The index in `boundaries` of the boundary `line` is a delimiter of, innermost first.
    fn boundary_at(&self, line: &[u8]) -> Option<usize> {
        let line = trim_wsp(line);
        let rest = line.strip_prefix(b"--")?;
        self.boundaries.iter().rposition(|b| {
            rest.strip_prefix(b.as_slice())
                .is_some_and(|tail| tail.is_empty() || tail == b"--")
        })
    }

    /// A header section read whole: decide what its part is.
    fn end_header(&mut self, header: Vec<u8>, top: bool, out: &mut Vec<u8>) {
        let info = part_info(&header);
        if let Some(b) = &info.boundary {
            out.extend_from_slice(&header);
            self.boundaries.push(b.clone());
            self.state = State::Pass;
        } else if info.message {
            out.extend_from_slice(&header);
            self.state = State::Header {
                lines: Vec::new(),
                top: false,
            };
        } else if info.encoded {
            out.extend_from_slice(&header);
            self.state = State::Pass;
        } else {
            self.state = State::Hold {
                header,
                info,
                top,
                body: Vec::new(),
            };
        }
    }

    /// Lines of a body being converted: CRLF between lines (the canonical form; the line
    /// ending before a boundary belongs to the boundary, so it is held back until a line
    /// follows).
    fn encode_held(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let State::Encode { pending, eol_due } = &mut self.state else {
            return;
        };
        let mut rest = text;
        while !rest.is_empty() {
            if *eol_due {
                pending.extend_from_slice(b"\r\n");
                *eol_due = false;
            }
            let (content, next, ended) = match memchr::memchr(b'\n', rest) {
                Some(k) => (strip_eol(&rest[..=k]), &rest[k + 1..], true),
                None => (rest, &rest[rest.len()..], false),
            };
            // A bare CR ends a line too, as the DATA encoder has it on the 8-bit path: both
            // paths deliver the same content.
            for (i, piece) in content.split(|&b| b == b'\r').enumerate() {
                if i > 0 {
                    pending.extend_from_slice(b"\r\n");
                }
                pending.extend_from_slice(piece);
            }
            *eol_due = ended;
            rest = next;
        }
        let whole = pending.len() / 57 * 57;
        for group in pending[..whole].chunks(57) {
            out.extend_from_slice(base64(group).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        pending.drain(..whole);
    }

    /// The current part ends: at a boundary (`at_boundary`), or at the end of the message.
    fn end_part(&mut self, at_boundary: bool, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, State::Pass) {
            State::Header { lines, .. } => out.extend_from_slice(&lines),
            State::Pass => {}
            State::Hold { header, body, .. } => {
                out.extend_from_slice(&header);
                out.extend_from_slice(&body);
            }
            State::Encode {
                mut pending,
                eol_due,
            } => {
                // Before a boundary the held-back line ending is the boundary's (RFC 2046
                // §5.1.1); at the end of the message it is the content's last.
                if eol_due && !at_boundary {
                    pending.extend_from_slice(b"\r\n");
                }
                // The added line ending can take the rest past one line's 57 bytes.
                for group in pending.chunks(57) {
                    out.extend_from_slice(base64(group).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

/// The header of a part about to be converted: its `Content-Transfer-Encoding` replaced by
/// base64, and for a part without `Content-Type` (a plain-text message) the type it had by
/// default with the charset its bytes suggest (`unknown-8bit`, RFC 1428, if not UTF-8).
fn converted_header(header: &[u8], info: &PartInfo, top: bool, body: &[u8], out: &mut Vec<u8>) {
    let all = fields(header);
    for f in &all {
        let is_cte =
            field_name(f).is_some_and(|n| n.eq_ignore_ascii_case(b"content-transfer-encoding"));
        let is_end = field_name(f).is_none() && strip_eol(f).is_empty();
        if !is_cte && !is_end {
            out.extend_from_slice(f);
            if !f.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if top && !info.mime_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    if !info.typed {
        let valid = match std::str::from_utf8(body) {
            Ok(_) => true,
            // Cut in the middle of a character by the lookahead: valid so far.
            Err(e) => e.error_len().is_none(),
        };
        out.extend_from_slice(if valid {
            b"Content-Type: text/plain; charset=utf-8\r\n".as_slice()
        } else {
            b"Content-Type: text/plain; charset=unknown-8bit\r\n".as_slice()
        });
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
}

fn part_info(header: &[u8]) -> PartInfo {
    let mut info = PartInfo::default();
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(header) else {
        return info;
    };
    for f in fields(header) {
        if field_name(f).is_some_and(|n| n.eq_ignore_ascii_case(b"mime-version")) {
            info.mime_version = true;
        }
    }
    if let Some(ct) = parsed.content_type() {
        info.typed = true;
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or_default().to_ascii_lowercase();
        if ctype == "multipart" {
            info.boundary = ct.attribute("boundary").map(|b| b.as_bytes().to_vec());
        } else if ctype == "message" && sub == "rfc822" {
            info.message = true;
        }
    }
    if let Some(cte) = parsed.content_transfer_encoding() {
        let cte = cte.trim().to_ascii_lowercase();
        info.encoded = cte == "base64" || cte == "quoted-printable";
        info.declared_8bit = cte == "8bit" || cte == "binary";
    }
    info
}

/// Whether [`Downgrade`] would give `message` (its pieces, in order) back unchanged, known
/// without running it: no NUL, no line over [`MAX_LINE`] octets, no 8-bit unless
/// `eight_bit_ok`, and no more than [`LOOKAHEAD`] bytes in all. Such a message has nothing
/// to convert in any part (only those three convert one), so the caller can skip the
/// converter and its copies of the message.
pub fn passes_unchanged(message: &[&[u8]], eight_bit_ok: bool) -> bool {
    if message.iter().map(|p| p.len()).sum::<usize>() > LOOKAHEAD {
        return false;
    }
    // How long the line running from one piece into the next is so far.
    let mut carried = 0usize;
    for piece in message {
        if memchr::memchr(0, piece).is_some() || (!eight_bit_ok && !piece.is_ascii()) {
            return false;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', piece) {
            if carried + strip_eol(&piece[start..=end]).len() > MAX_LINE {
                return false;
            }
            carried = 0;
            start = end + 1;
        }
        // A CR at the end of a piece may be half of a CRLF: counting it errs on the safe side.
        carried += piece.len() - start;
        if carried > MAX_LINE {
            return false;
        }
    }
    true
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_wsp(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |e| e + 1);
    &line[..end]
}

/// Address fields: their display names can be RFC 2047-encoded, their addresses cannot.
const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "sender",
    "resent-from",
    "resent-to",
    "resent-cc",
    "resent-sender",
    "disposition-notification-to",
];

/// Structured fields whose syntax has no place for an encoded word: UTF-8 in them cannot go
/// to a server without SMTPUTF8.
const STRUCTURED_FIELDS: &[&str] = &[
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "resent-date",
    "resent-message-id",
    "received",
    "return-path",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-id",
];

/// The header section with every field that holds UTF-8 RFC 2047-encoded (`mail-builder`
/// does the encoding): display names in address fields, unstructured fields whole. Errors:
/// what cannot be encoded (an address with UTF-8, UTF-8 in a structured field, bytes that are
/// not UTF-8), in words for the report.
pub fn encode_header_utf8(header: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(header.len() + 64);
    for f in fields(header) {
        if f.is_ascii() {
            out.extend_from_slice(f);
            continue;
        }
        let Some(name) = field_name(f) else {
            return Err("a header line without a field name holds 8-bit bytes".into());
        };
        let name_text = String::from_utf8_lossy(name).into_owned();
        let lower = name_text.to_ascii_lowercase();
        let colon = memchr::memchr(b':', f).unwrap_or(name.len());
        let value = std::str::from_utf8(&f[colon + 1..])
            .map_err(|_| format!("the {name_text}: header holds 8-bit bytes that are not UTF-8"))?;
        // Unfolded: the line breaks of a folded field are not part of its value.
        let unfolded: String = value.replace("\r\n", "").replace('\n', "");
        let unfolded = unfolded.trim();
        let column = name.len() + 2;
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        if ADDRESS_FIELDS.contains(&lower.as_str()) {
            let built = address_field(&name_text, unfolded)?;
            built.write_header(&mut out, column);
        } else if STRUCTURED_FIELDS.contains(&lower.as_str()) {
            return Err(format!(
                "the {name_text}: header holds UTF-8, which a server without SMTPUTF8 cannot take and which cannot be encoded there"
            ));
        } else {
            Text::new(unfolded).write_header(&mut out, column);
        }
    }
    Ok(out)
}

/// An address field's value rebuilt by `mail-builder` (names encoded), from `mail-parser`'s
/// reading of it.
fn address_field(name: &str, value: &str) -> Result<BuiltAddress<'static>, String> {
    let raw = format!("To: {value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::new()
        .parse_headers(raw.as_bytes())
        .ok_or_else(|| format!("the {name}: header cannot be read as addresses"))?;
    let addresses = parsed
        .to()
        .ok_or_else(|| format!("the {name}: header cannot be read as addresses"))?;
    let one = |a: &mail_parser::Addr<'_>| -> Result<BuiltAddress<'static>, String> {
        let email = a.address.as_deref().unwrap_or_default();
        if !email.is_ascii() {
            return Err(format!(
                "the {name}: header has the address {email}, with UTF-8 (RFC 6531); the server does not offer SMTPUTF8, and an address cannot be encoded"
            ));
        }
        Ok(BuiltAddress::new_address(
            a.name.as_deref().map(|n| Cow::Owned(n.to_string())),
            email.to_string(),
        ))
    };
    Ok(match addresses {
        mail_parser::Address::List(list) => {
            BuiltAddress::new_list(list.iter().map(one).collect::<Result<_, _>>()?)
        }
        mail_parser::Address::Group(groups) => BuiltAddress::new_list(
            groups
                .iter()
                .map(|g| {
                    let members = g.addresses.iter().map(one).collect::<Result<Vec<_>, _>>()?;
                    Ok(match &g.name {
                        Some(n) => BuiltAddress::new_group(Some(n.to_string()), members),
                        None => BuiltAddress::new_list(members),
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(message: &[u8], eight_bit_ok: bool, piece: usize) -> Vec<u8> {
        let mut d = Downgrade::new(eight_bit_ok);
        let mut out = Vec::new();
        for p in message.chunks(piece.max(1)) {
            d.push(p, &mut out);
        }
        d.finish(&mut out);
        out
    }

    proptest::proptest! {
        /// What `passes_unchanged` says of a message (in any pieces), the converter does.
        #[test]
        fn passes_unchanged_is_what_the_converter_does(
            head in proptest::sample::select(vec![
                "Subject: s\r\n\r\n",
                "Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n",
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n",
                "",
            ]),
            body in proptest::collection::vec(
                proptest::sample::select(vec![b'.', b'\r', b'\n', b'a', 0xC3, 0, b'-']), 0..300),
            long in 0usize..3,
            eight_bit_ok in proptest::bool::ANY,
            cut in 0usize..400,
        ) {
            let mut message = head.as_bytes().to_vec();
            message.extend_from_slice(&body);
            // Sometimes a line near the limit, or over it.
            message.extend(std::iter::repeat_n(b'y', [10, MAX_LINE - 1, MAX_LINE + 1][long]));
            message.extend_from_slice(b"\r\n--b--\r\n");
            let cut = cut.min(message.len());
            let pieces = [&message[..cut], &message[cut..]];
            if passes_unchanged(&pieces, eight_bit_ok) {
                proptest::prop_assert_eq!(convert(&message, eight_bit_ok, 7), message.clone());
                proptest::prop_assert_eq!(convert(&message, eight_bit_ok, 100_000), message);
            }
        }
    }

    #[test]
    fn a_7bit_message_passes_unchanged() {
        let m = b"From: a@x\r\nSubject: s\r\n\r\nplain\r\n.dot\r\n";
        for piece in [1, 3, 100] {
            assert_eq!(convert(m, false, piece), m.to_vec());
        }
    }

    #[test]
    fn an_8bit_plain_message_becomes_base64_text() {
        let m =
            "From: a@x\r\nContent-Transfer-Encoding: 8bit\r\nSubject: s\r\n\r\nJosé\r\nNúñez\r\n";
        let want = format!(
            "From: a@x\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            base64("José\r\nNúñez\r\n".as_bytes())
        );
        for piece in [1, 7, 1000] {
            assert_eq!(
                String::from_utf8_lossy(&convert(m.as_bytes(), false, piece)),
                want
            );
        }
        // 8BITMIME: nothing to do.
        assert_eq!(convert(m.as_bytes(), true, 10), m.as_bytes());
    }

    #[test]
    fn only_the_8bit_part_of_a_multipart_converts() {
        let m = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nascii\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnaïve\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b1--\r\nepilogue\r\n";
        let want = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nascii\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b1--\r\nepilogue\r\n",
            base64("naïve".as_bytes())
        );
        for piece in [1, 5, 4096] {
            assert_eq!(
                String::from_utf8_lossy(&convert(m.as_bytes(), false, piece)),
                want,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn long_lines_and_nul_convert_even_with_8bitmime() {
        let long = "x".repeat(MAX_LINE + 1);
        let m = format!("Subject: s\r\n\r\n{long}\r\nend\r\n");
        let got = convert(m.as_bytes(), true, 300);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("Content-Transfer-Encoding: base64\r\n\r\n"),
            "{text}"
        );
        assert!(got.split(|&b| b == b'\n').all(|l| l.len() <= 78));
        // 1025 = 17 × 57 + 56: the last line's ending takes the rest to 58 bytes, two lines.
        let tail = format!("Subject: s\r\n\r\n{}\n", "z".repeat(1025));
        let got = convert(tail.as_bytes(), true, 100);
        assert!(got.split(|&b| b == b'\n').all(|l| l.len() <= 78));
        assert!(String::from_utf8_lossy(&got).ends_with("enoN\r\nCg==\r\n"));
        let exactly = "y".repeat(MAX_LINE);
        let ok = format!("Subject: s\r\n\r\n{exactly}\r\n");
        assert_eq!(convert(ok.as_bytes(), true, 300), ok.as_bytes());
        let nul = b"Subject: s\r\n\r\na\0b\r\n";
        assert!(
            String::from_utf8_lossy(&convert(nul, true, 4))
                .ends_with(&format!("base64\r\n\r\n{}\r\n", base64(b"a\0b\r\n")))
        );
    }

    #[test]
    fn utf8_headers_are_encoded_where_they_can_be() {
        let h = "From: José Núñez <jose@example.com>\r\nTo: \"Zoë\" <zoe@example.org>, bob@example.org\r\nSubject: Grüße aus Köln\r\nDate: Mon, 7 Dec 2026 04:00:00 +0000\r\n\r\n";
        let got = encode_header_utf8(h.as_bytes()).expect("encodable");
        let text = String::from_utf8(got.clone()).expect("ascii");
        assert!(got.is_ascii(), "{text}");
        let parsed = mail_parser::MessageParser::new()
            .parse_headers(&got)
            .expect("parse");
        assert_eq!(parsed.subject(), Some("Grüße aus Köln"));
        let from = parsed.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.name.as_deref(), Some("José Núñez"));
        assert_eq!(from.address.as_deref(), Some("jose@example.com"));
        let to: Vec<_> = parsed.to().expect("to").iter().collect();
        assert_eq!(to[0].name.as_deref(), Some("Zoë"));
        assert_eq!(to[1].address.as_deref(), Some("bob@example.org"));
        assert!(
            text.contains("Date: Mon, 7 Dec 2026 04:00:00 +0000\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "{text}");

        let e = encode_header_utf8("To: jörg@example.org\r\n\r\n".as_bytes()).expect_err("no");
        assert!(
            e.contains("jörg@example.org") && e.contains("SMTPUTF8"),
            "{e}"
        );
        let e = encode_header_utf8("Message-ID: <ü@x>\r\n\r\n".as_bytes()).expect_err("no");
        assert!(e.contains("Message-ID"), "{e}");
    }
}

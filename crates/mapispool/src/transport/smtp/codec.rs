//! SMTP framing, apart from meaning: reading replies (RFC 5321 §4.2, multi-line), the EHLO
//! capability list, writing commands, and the DATA body encoder (dot-stuffing, CRLF).
//!
//! Hand-written rather than smtp-proto's `ResponseReceiver`: the reply grammar is a dozen lines,
//! and we want exact control over what a malformed or over-long reply does (an error quoting the
//! server's words, never a panic or an unbounded buffer), plus a line reader that works on our
//! own buffered stream so STARTTLS can check that nothing was pipelined after its `220`.

use std::fmt;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest reply line we accept (RFC 5321 says 512 octets; servers exceed it).
pub const MAX_LINE: usize = 8192;
/// The most lines in one reply (EHLO lists are the longest, a few dozen lines).
pub const MAX_LINES: usize = 256;

/// One SMTP reply: the code and its text lines (without code, separator or CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    /// The whole reply in the server's words, on one line: `550 5.1.1 <x>: unknown`.
    pub fn text(&self) -> String {
        let mut out = self.code.to_string();
        for (i, line) in self.lines.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { " / " });
            out.push_str(line);
        }
        if self.lines.iter().all(|l| l.is_empty()) {
            return self.code.to_string();
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or closed.
    Io(std::io::Error),
    /// The server closed the connection before a whole reply.
    Closed,
    /// Bytes that are not an SMTP reply, quoted (cut to a sane length).
    Malformed(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Closed => f.write_str("the server closed the connection"),
            ReadError::Malformed(what) => write!(f, "the server sent a malformed reply: {what}"),
        }
    }
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]);
    let mut q = format!("{:?}", text.trim_end_matches(['\r', '\n']));
    if bytes.len() > 120 {
        q.push('…');
    }
    q
}

/// One parsed reply line: (code, last line?, text).
pub fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReadError> {
    let line = line
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(line);
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(ReadError::Malformed(quote(line)));
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    if !(200..600).contains(&code) {
        return Err(ReadError::Malformed(quote(line)));
    }
    let (last, text) = match line.get(3) {
        None => (true, &line[3..3]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(ReadError::Malformed(quote(line))),
    };
    Ok((code, last, String::from_utf8_lossy(text).into_owned()))
}

/// Reads one whole reply (all its lines) from `reader`.
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReadError> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut buf = Vec::with_capacity(128);
    loop {
        buf.clear();
        read_line(reader, &mut buf).await?;
        let (c, last, text) = parse_line(&buf)?;
        match code {
            None => code = Some(c),
            Some(first) if first != c => {
                return Err(ReadError::Malformed(format!(
                    "a multi-line reply changed its code from {first} to {c}: {}",
                    quote(&buf)
                )));
            }
            Some(_) => {}
        }
        lines.push(text);
        if last {
            return Ok(Reply { code: c, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err(ReadError::Malformed(format!(
                "a reply of more than {MAX_LINES} lines"
            )));
        }
    }
}

/// One line up to and including `\n`, at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<(), ReadError> {
    loop {
        let available = reader.fill_buf().await.map_err(ReadError::Io)?;
        if available.is_empty() {
            return Err(if buf.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Malformed(format!("{} and then the connection closed", quote(buf)))
            });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        buf.extend_from_slice(&available[..take]);
        reader.consume(take);
        if buf.len() > MAX_LINE {
            return Err(ReadError::Malformed(format!(
                "a reply line longer than {MAX_LINE} bytes: {}",
                quote(buf)
            )));
        }
        if done {
            return Ok(());
        }
    }
}

/// What the server said it can do in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    /// `SIZE n`: the largest message it takes; `Some(0)` means no stated limit.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// `DSN` (RFC 3461): delivery status notification parameters on MAIL and RCPT.
    pub dsn: bool,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// The capabilities in an EHLO reply (every line after the first, the greeting).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            // `AUTH=LOGIN PLAIN` is the pre-standard form some servers still send.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) => (k, Some(p)),
                None => (keyword, None),
            };
            let params: Vec<&str> = first_param.into_iter().chain(words).collect();
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "SIZE" => {
                    caps.size = Some(params.first().and_then(|p| p.parse().ok()).unwrap_or(0))
                }
                "AUTH" => {
                    for p in params {
                        let mech = p.to_ascii_uppercase();
                        if !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

/// Base64 (RFC 4648, with padding) for SASL: small enough not to need a crate.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
        out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
        out.push(if chunk.len() > 1 {
            char::from(ALPHABET[(n >> 6) as usize & 63])
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            char::from(ALPHABET[n as usize & 63])
        } else {
            '='
        });
    }
    out
}

/// Whether `address` can go between `<` and `>` in a command as it is: no CR, LF, other
/// control characters, angle brackets or spaces, so no address can smuggle in a command.
pub fn address_is_safe(address: &str) -> bool {
    !address
        .chars()
        .any(|c| c.is_control() || c == '<' || c == '>' || c == ' ')
}

/// The DATA body encoder: turns any line endings into CRLF and doubles a dot that starts a
/// line (RFC 5321 §4.5.2), across chunk boundaries.
#[derive(Debug)]
pub struct DataEncoder {
    at_line_start: bool,
    pending_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder {
            at_line_start: true,
            pending_cr: false,
        }
    }
}

impl DataEncoder {
    /// Appends the encoded form of `chunk` to `out`. Line by line with `memchr` rather than
    /// byte by byte: a body is mostly long runs without CR or LF, copied whole.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 32 + 8);
        let mut i = 0;
        while i < chunk.len() {
            if self.pending_cr {
                // CRLF, or a bare CR: either ends the line.
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if chunk[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            if self.at_line_start && chunk[i] == b'.' {
                out.push(b'.');
            }
            match memchr::memchr2(b'\r', b'\n', &chunk[i..]) {
                None => {
                    out.extend_from_slice(&chunk[i..]);
                    self.at_line_start = false;
                    i = chunk.len();
                }
                Some(k) => {
                    let end = i + k;
                    out.extend_from_slice(&chunk[i..end]);
                    if k > 0 {
                        self.at_line_start = false;
                    }
                    if chunk[end] == b'\n' {
                        out.extend_from_slice(b"\r\n");
                        self.at_line_start = true;
                    } else {
                        self.pending_cr = true;
                    }
                    i = end + 1;
                }
            }
        }
    }

    /// Ends the body: a last line ending if the body had none, then the `.` line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            out.extend_from_slice(b"\r\n");
            self.pending_cr = false;
            self.at_line_start = true;
        }
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reply(text: &str) -> Result<Reply, ReadError> {
        let mut r = tokio::io::BufReader::new(text.as_bytes());
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn reads_single_multi_and_bare_replies() {
        let r = reply("250 2.1.0 Ok\r\n").await.expect("reply");
        assert_eq!(r.code, 250);
        assert_eq!(r.text(), "250 2.1.0 Ok");
        let r = reply("250-mail.example\r\n250-PIPELINING\r\n250 \r\n")
            .await
            .expect("reply");
        assert_eq!(r.lines, vec!["mail.example", "PIPELINING", ""]);
        let r = reply("354\n").await.expect("bare code, LF only");
        assert_eq!((r.code, r.text().as_str()), (354, "354"));
        let r = reply("550-5.1.1 first\r\n550 5.1.1 second\r\n")
            .await
            .expect("reply");
        assert_eq!(r.text(), "550 5.1.1 first / 5.1.1 second");
    }

    #[tokio::test]
    async fn malformed_replies_quote_the_server() {
        for bad in [
            "hello there\r\n",
            "25\r\n",
            "250x\r\n",
            "999 nope\r\n",
            "250-a\r\n550 b\r\n",
        ] {
            match reply(bad).await {
                Err(ReadError::Malformed(what)) => assert!(!what.is_empty(), "{bad:?}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert!(matches!(reply("").await, Err(ReadError::Closed)));
        assert!(matches!(
            reply("250-partial\r\n").await,
            Err(ReadError::Closed)
        ));
        assert!(matches!(
            reply("250 no newline").await,
            Err(ReadError::Malformed(_))
        ));
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE + 10));
        assert!(matches!(reply(&long).await, Err(ReadError::Malformed(_))));
    }

    #[test]
    fn ehlo_capabilities() {
        let r = Reply {
            code: 250,
            lines: vec![
                "mx.example Hello".into(),
                "PIPELINING".into(),
                "SIZE 10240000".into(),
                "8BITMIME".into(),
                "AUTH PLAIN LOGIN".into(),
                "AUTH=LOGIN XOAUTH2".into(),
                "STARTTLS".into(),
                "smtputf8".into(),
                "".into(),
            ],
        };
        let c = Capabilities::from_ehlo(&r);
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && c.smtputf8);
        assert_eq!(c.size, Some(10_240_000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN", "XOAUTH2"]);
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("\0user\0pass", "AHVzZXIAcGFzcw=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    fn encode_in_pieces(input: &[u8], piece: usize) -> Vec<u8> {
        let mut e = DataEncoder::default();
        let mut out = Vec::new();
        for c in input.chunks(piece.max(1)) {
            e.encode(c, &mut out);
        }
        e.finish(&mut out);
        out
    }

    /// The obvious byte-at-a-time encoder, the reference the fast one is checked against.
    fn reference_encode(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line_start = true;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if b == b'\r' || b == b'\n' {
                out.extend_from_slice(b"\r\n");
                line_start = true;
                i += if b == b'\r' && input.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                continue;
            }
            if line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            line_start = false;
            i += 1;
        }
        if !line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    proptest::proptest! {
        #[test]
        fn encoding_in_any_pieces_matches_the_reference(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'.', b'\r', b'\n', b'a', 0xC3]), 0..200),
            piece in 1usize..40,
        ) {
            proptest::prop_assert_eq!(encode_in_pieces(&input, piece), reference_encode(&input));
        }
    }

    #[test]
    fn dot_stuffing_and_line_endings_across_chunks() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b"a\n.b\n..c\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
            (b"x\ry\r", b"x\r\ny\r\n.\r\n"),
            (b"a.b\r\n.", b"a.b\r\n..\r\n.\r\n"),
            (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            for piece in 1..=input.len().max(1) {
                assert_eq!(
                    encode_in_pieces(input, piece),
                    want.to_vec(),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn unsafe_addresses_are_caught() {
        assert!(address_is_safe("a@example.com"));
        assert!(address_is_safe("ü@例え.jp"));
        assert!(!address_is_safe("a@x>\r\nRCPT TO:<b@y"));
        assert!(!address_is_safe("a b@x"));
    }
}

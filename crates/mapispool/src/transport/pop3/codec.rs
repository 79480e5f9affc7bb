//! POP3 framing (RFC 1939 §3): single-line status replies (`+OK text` / `-ERR text`) and
//! multi-line responses ended by a line holding only `.`, with dot-stuffing (a line starting
//! with `.` has one more `.` in front of it). No session logic here.
//!
//! Everything read from the server is bounded: a line longer than the cap, a listing longer than
//! its cap or a message longer than its cap is an error, not an allocation.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, ReadBuf};

/// The longest status line or listing line accepted (RFC 1939 allows 512; servers add more).
pub const MAX_LINE: usize = 8 * 1024;

/// The most a multi-line listing (CAPA, UIDL, LIST) may hold in all.
pub const MAX_LISTING: usize = 64 * 1024 * 1024;

/// The most one retrieved message may hold.
pub const MAX_MESSAGE: u64 = 512 * 1024 * 1024;

/// A status reply: `+OK` or `-ERR`, with the rest of the line as the server's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    Err(String),
}

impl Reply {
    /// Parses one status line (without its line ending). Anything but `+OK`/`-ERR` is malformed.
    pub fn parse(line: &[u8]) -> io::Result<Reply> {
        let text = |rest: &[u8]| {
            String::from_utf8_lossy(rest)
                .trim_start_matches(' ')
                .to_string()
        };
        if let Some(rest) = strip_prefix_ci(line, b"+OK")
            && (rest.is_empty() || rest[0] == b' ')
        {
            return Ok(Reply::Ok(text(rest)));
        }
        if let Some(rest) = strip_prefix_ci(line, b"-ERR")
            && (rest.is_empty() || rest[0] == b' ')
        {
            return Ok(Reply::Err(text(rest)));
        }
        Err(malformed(format!(
            "the server's reply is not POP3 (+OK or -ERR expected): {:?}",
            shorten(line)
        )))
    }
}

fn strip_prefix_ci<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &line[prefix.len()..])
}

/// At most 80 characters of a line, for an error message.
pub fn shorten(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    if line.len() > 80 { text + "..." } else { text }
}

fn malformed(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    )
}

/// Reads one line of at most `max` bytes (without CRLF or LF). End of stream before a line
/// ending is `UnexpectedEof`; a longer line is `InvalidData`.
pub async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Err(dropped());
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max + 2 {
            return Err(malformed(format!(
                "the server sent a line longer than {max} bytes"
            )));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > max {
                return Err(malformed(format!(
                    "the server sent a line longer than {max} bytes"
                )));
            }
            return Ok(line);
        }
    }
}

/// Reads the lines of a multi-line response (after its `+OK` line) up to the terminating `.`,
/// unstuffed, with each line at most `MAX_LINE` and all of them at most `max_total` bytes.
pub async fn read_listing<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_total: usize,
) -> io::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = read_line(reader, MAX_LINE).await?;
        if line == b"." {
            return Ok(lines);
        }
        if line.first() == Some(&b'.') {
            line.remove(0);
        }
        total += line.len() + 2;
        if total > max_total {
            return Err(malformed(format!(
                "the server's listing is longer than {max_total} bytes"
            )));
        }
        lines.push(line);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DotState {
    /// At the start of a line: a `.` here is stuffing or the end.
    LineStart,
    /// After a `.` at the start of a line.
    AfterDot,
    /// After `.` and CR at the start of a line: LF ends the response.
    AfterDotCr,
    /// Inside a line.
    MidLine,
    /// The terminating `.` line has been read.
    Done,
}

/// The body of a multi-line response as an `AsyncRead`: unstuffs as it reads, ends (returns 0)
/// after the terminating `.` line, and never buffers more than its inner reader does. End of the
/// connection before the terminator is an `UnexpectedEof` error, so a half-read message can never
/// look complete; more than `limit` bytes is `FileTooLarge`.
#[derive(Debug)]
pub struct DotReader<R> {
    inner: R,
    state: DotState,
    /// Bytes handed out so far.
    read: u64,
    limit: u64,
}

impl<R: AsyncBufRead + Unpin> DotReader<R> {
    pub fn new(inner: R, limit: u64) -> DotReader<R> {
        DotReader {
            inner,
            state: DotState::LineStart,
            read: 0,
            limit,
        }
    }

    /// Whether more than the limit came (the reads then fail with `FileTooLarge`).
    pub fn over_limit(&self) -> bool {
        self.read > self.limit
    }

    /// Whether the terminating `.` line has been read (the response is over).
    pub fn is_done(&self) -> bool {
        self.state == DotState::Done
    }

    /// Reads and drops the rest of the response, so the connection can go on.
    pub async fn drain(&mut self) -> io::Result<()> {
        let mut sink = tokio::io::sink();
        tokio::io::copy(self, &mut sink).await.map(|_| ())
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// A message over its limit: `FileTooLarge`, so the caller can tell it from a broken link.
fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("the message is larger than {limit} bytes"),
    )
}

impl<R: AsyncBufRead + Unpin> AsyncRead for DotReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Errors are returned only with nothing put in `out` (AsyncRead's contract): a limit
        // crossed in one call is reported at the start of the next, before the end is.
        if this.read > this.limit {
            return Poll::Ready(Err(too_large(this.limit)));
        }
        let start = out.filled().len();
        while out.remaining() > 0 && this.state != DotState::Done {
            // Once something is in `out`, hand it over rather than wait for more.
            let buf = if out.filled().len() > start {
                match Pin::new(&mut this.inner).poll_fill_buf(cx) {
                    Poll::Ready(Ok(buf)) => buf,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            } else {
                ready!(Pin::new(&mut this.inner).poll_fill_buf(cx))?
            };
            if buf.is_empty() {
                if out.filled().len() > start {
                    break; // hand over what we have; the next call reports the drop
                }
                return Poll::Ready(Err(dropped()));
            }
            match this.state {
                DotState::LineStart => {
                    if buf[0] == b'.' {
                        Pin::new(&mut this.inner).consume(1);
                        this.state = DotState::AfterDot;
                    } else {
                        this.state = DotState::MidLine;
                    }
                }
                DotState::AfterDot => match buf[0] {
                    b'\r' => {
                        Pin::new(&mut this.inner).consume(1);
                        this.state = DotState::AfterDotCr;
                    }
                    b'\n' => {
                        // A bare-LF terminator, from a lenient server.
                        Pin::new(&mut this.inner).consume(1);
                        this.state = DotState::Done;
                    }
                    // A stuffed dot: dropped; the line goes on.
                    _ => this.state = DotState::MidLine,
                },
                DotState::AfterDotCr => {
                    if buf[0] == b'\n' {
                        Pin::new(&mut this.inner).consume(1);
                        this.state = DotState::Done;
                    } else {
                        // ".\r" then more: the dot was stuffing, the CR is data.
                        out.put_slice(b"\r");
                        this.state = DotState::MidLine;
                    }
                }
                DotState::MidLine => {
                    // Every line up to the next one that starts with a dot passes in one copy
                    // (a SIMD search for `\n.`), not a line at a time: only a dot at a line's
                    // start needs a look.
                    let n = buf.len().min(out.remaining());
                    let take = match memchr::memmem::find(&buf[..n], b"\n.") {
                        Some(i) => i + 1,
                        None => n,
                    };
                    out.put_slice(&buf[..take]);
                    if buf[take - 1] == b'\n' {
                        this.state = DotState::LineStart;
                    }
                    Pin::new(&mut this.inner).consume(take);
                }
                DotState::Done => {}
            }
        }
        this.read += (out.filled().len() - start) as u64;
        if this.read > this.limit && out.filled().len() == start {
            return Poll::Ready(Err(too_large(this.limit)));
        }
        Poll::Ready(Ok(()))
    }
}

/// Dot-stuffs `body` for sending as a multi-line response and appends the terminator: for test
/// servers (and the fuzz/round-trip tests of [`DotReader`]).
pub fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut at_start = true;
    for &b in body {
        if at_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_start = b == b'\n';
    }
    if !at_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, BufReader};

    use super::*;

    async fn unstuff(wire: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        // A reader that hands out `chunk` bytes at a time, to test every split point.
        let mut reader = DotReader::new(BufReader::with_capacity(chunk, wire), MAX_MESSAGE);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await?;
        assert!(reader.is_done());
        Ok(out)
    }

    #[tokio::test]
    async fn unstuffs_and_stops_at_the_terminator() {
        let wire = b"Subject: x\r\n\r\n..leading dot\r\n..\r\n...\r\nend\r\n.\r\n+OK next";
        for chunk in 1..wire.len() {
            let body = unstuff(wire, chunk).await.expect("reads");
            assert_eq!(
                body, b"Subject: x\r\n\r\n.leading dot\r\n.\r\n..\r\nend\r\n",
                "chunk {chunk}"
            );
        }
    }

    #[tokio::test]
    async fn stuff_and_unstuff_round_trip() {
        let bodies: [&[u8]; 5] = [
            b"",
            b".\r\n",
            b"a\r\n.\r\n..\r\n.x\r\n",
            b"no final newline",
            b".\r.\r\n.\rz\r\n",
        ];
        for body in bodies {
            let wire = stuff(body);
            for chunk in [1, 2, 3, 7, 4096] {
                let got = unstuff(&wire, chunk).await.expect("reads");
                let mut want = body.to_vec();
                if !want.is_empty() && !want.ends_with(b"\n") {
                    want.extend_from_slice(b"\r\n");
                }
                assert_eq!(got, want, "{body:?} chunk {chunk}");
            }
        }
    }

    #[tokio::test]
    async fn a_dropped_connection_is_an_error_not_an_end() {
        for wire in [
            &b"Subject: x\r\n\r\nhalf"[..],
            b"line\r\n",
            b"line\r\n.",
            b"line\r\n.\r",
        ] {
            let e = unstuff(wire, 3).await.expect_err("not complete");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{wire:?}");
        }
    }

    #[tokio::test]
    async fn caps_lines_listings_and_messages() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut reader = BufReader::new(&long[..]);
        assert!(read_line(&mut reader, MAX_LINE).await.is_err());

        let mut wire = Vec::new();
        for i in 0..100 {
            wire.extend_from_slice(format!("{i} uid{i}\r\n").as_bytes());
        }
        wire.extend_from_slice(b".\r\n");
        let got = read_listing(&mut BufReader::new(&wire[..]), 1 << 20)
            .await
            .expect("fits");
        assert_eq!(got.len(), 100);
        assert!(
            read_listing(&mut BufReader::new(&wire[..]), 100)
                .await
                .is_err()
        );

        let mut reader = DotReader::new(BufReader::new(&b"0123456789\r\n.\r\n"[..]), 5);
        let mut out = Vec::new();
        let e = reader.read_to_end(&mut out).await.expect_err("too big");
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(
            Reply::parse(b"+OK ready").expect("ok"),
            Reply::Ok("ready".into())
        );
        assert_eq!(Reply::parse(b"+ok").expect("ok"), Reply::Ok(String::new()));
        assert_eq!(
            Reply::parse(b"-ERR [AUTH] bad password").expect("err"),
            Reply::Err("[AUTH] bad password".into())
        );
        assert!(Reply::parse(b"* OK IMAP4rev1").is_err());
        assert!(Reply::parse(b"+OKAY").is_err());
        assert!(Reply::parse(b"").is_err());
    }
}

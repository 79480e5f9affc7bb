//! A cap on the literals an IMAP server announces, applied to the bytes before async-imap sees
//! them, and the diversion of one large message's body past async-imap into the store.
//!
//! The cap: async-imap sizes its read buffer by what a literal announces: `* 2 FETCH (BODY[]
//! {500000000}` made it zero-fill 500 MB before a byte of the message arrived (imap-proto asks
//! for the whole literal, async-imap's `Buffer::ensure_capacity` resizes to it). No setting of
//! async-imap bounds that below its own 512 MiB, so this stream does: it follows the literals
//! (`{N}` or `~{N}` at the end of a line) as they pass, and fails the read when one is
//! announced larger than the cap, before async-imap allocates for it.
//!
//! The diversion: a large message is fetched whole (`UID FETCH n (UID BODY.PEEK[])`), because
//! Dovecot sends a whole body in about half the time it takes for the same bytes in ranges
//! (`bench/notes/imap3.md`). async-imap would hold that literal whole in memory (and the cap
//! refuses it), so the transport [`arms`](LiteralCap::arm) this stream for the one UID first:
//! when the answer's `BODY[]` literal of that UID is announced, its contents go into the armed
//! pipe (which the store reads as it comes) and async-imap sees an empty literal (`{0}`) in
//! their place. Bytes cross once from the socket into the pipe: no response buffer, no copy
//! out of it. A literal announced over the armed limit (`max_message_size`) is read and
//! dropped, never handed on, and reported as such.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// Where the scan of the server's bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// In a line, outside any literal.
    Text,
    /// After `{` and the digits so far (`None`: none yet).
    Open(Option<u64>),
    /// After `{N}`: a line end must follow for it to be a literal.
    Closed(u64),
    /// After `{N}\r`.
    Cr(u64),
    /// In a literal's contents, this many bytes still to pass.
    Literal(u64),
    /// In the armed literal's contents, this many bytes still to go into the pipe.
    Diverted(u64),
}

/// The body of one message to be taken past async-imap (see the module's doc).
#[derive(Debug)]
pub(crate) struct Divert {
    uid: u32,
    /// The largest body taken; a larger announcement is read and dropped.
    limit: u64,
    /// The pipe the store reads. Kept open after the body (dropped at once for one over the
    /// limit): the transport closes it once the server's answer is complete and names the UID,
    /// so the store never takes a body before that.
    writer: Option<DuplexStream>,
    /// The size the server announced, once it did.
    pub announced: Option<u64>,
    /// Whether all the announced bytes went into the pipe.
    pub done: bool,
}

impl Divert {
    pub(crate) fn new(uid: u32, limit: u64, writer: DuplexStream) -> Divert {
        Divert {
            uid,
            limit,
            writer: Some(writer),
            announced: None,
            done: false,
        }
    }

    /// Whether the announced body was over the limit (and so dropped).
    pub(crate) fn too_large(&self) -> bool {
        self.announced.is_some_and(|n| n > self.limit)
    }

    /// The pipe, to close it (or to hand the body on another way, if it never came here).
    pub(crate) fn take_writer(&mut self) -> Option<DuplexStream> {
        self.writer.take()
    }
}

/// How much is read from the connection at a time.
const READ_CHUNK: usize = 64 * 1024;
/// How much of a response line is kept to match an announcement against the armed UID.
const LINE_KEPT: usize = 256;

/// A stream whose server may announce literals of at most `cap` bytes, one of which may be
/// diverted (see the module's doc).
#[derive(Debug)]
pub(crate) struct LiteralCap<S> {
    inner: S,
    cap: u64,
    scan: Scan,
    /// Bytes read from `inner`, not yet handed on: `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// An announcement being read (`{`, digits, `}`, `\r`), handed on once it is known what
    /// it is.
    held: Vec<u8>,
    /// Bytes for the reader that did not fit its buffer, before anything else.
    emit: Vec<u8>,
    emit_at: usize,
    /// The text of the current response line so far (its first [`LINE_KEPT`] bytes).
    line: Vec<u8>,
    divert: Option<Divert>,
}

impl<S> LiteralCap<S> {
    pub(crate) fn new(inner: S, cap: u64) -> LiteralCap<S> {
        LiteralCap {
            inner,
            cap,
            scan: Scan::Text,
            input: vec![0u8; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            held: Vec::new(),
            emit: Vec::new(),
            emit_at: 0,
            line: Vec::new(),
            divert: None,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream under this one. Bytes read and not yet handed on are lost with it, so only
    /// for a connection between responses (STARTTLS answers before anything else is sent).
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Diverts the `BODY[]` literal of `divert.uid` in the next answer that has one.
    pub(crate) fn arm(&mut self, divert: Divert) {
        self.divert = Some(divert);
    }

    /// Ends the diversion; what became of it. The pipe, if still held, is dropped with the
    /// [`Divert`] (its reader then sees the body end early, unless it was complete).
    pub(crate) fn disarm(&mut self) -> Option<Divert> {
        if matches!(self.scan, Scan::Diverted(_)) {
            // Taken away mid-body (the transport gave up on this answer): the rest is the
            // connection's problem now, not the pipe's.
            if let Some(d) = self.divert.as_mut() {
                d.writer = None;
            }
            return self.divert.as_ref().map(|d| Divert {
                uid: d.uid,
                limit: d.limit,
                writer: None,
                announced: d.announced,
                done: false,
            });
        }
        self.divert.take()
    }

    /// Hands `bytes` to the reader: into `buf` while it has room and nothing is waiting
    /// before them, else kept for the next read.
    fn out(&mut self, buf: &mut ReadBuf<'_>, bytes: &[u8]) {
        let n = if self.emit.is_empty() {
            bytes.len().min(buf.remaining())
        } else {
            0
        };
        buf.put_slice(&bytes[..n]);
        self.emit.extend_from_slice(&bytes[n..]);
    }

    /// Text outside literals: handed on, and kept as the current line.
    fn text(&mut self, buf: &mut ReadBuf<'_>, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.line.clear();
            } else if self.line.len() < LINE_KEPT {
                self.line.push(b);
            }
        }
        self.out(buf, bytes);
    }

    /// Whether the current line announces the armed UID's `BODY[]`: `* n FETCH (... BODY[] {`,
    /// with no other UID before it. While armed, only that one message's body is asked for
    /// (the transport checks the UID of the whole answer before it closes the pipe).
    fn armed_here(&self) -> bool {
        let Some(d) = self
            .divert
            .as_ref()
            .filter(|d| d.writer.is_some() && d.announced.is_none())
        else {
            return false;
        };
        let line = &self.line;
        if !line.starts_with(b"* ") || !(line.ends_with(b" BODY[] ") || line.ends_with(b"(BODY[] "))
        {
            return false;
        }
        // `UID n` before the body: n must be the armed one.
        let mut words = line.split(|b| matches!(b, b' ' | b'('));
        while let Some(w) = words.next() {
            if w.eq_ignore_ascii_case(b"UID") {
                let uid = words.next().unwrap_or_default();
                if uid != d.uid.to_string().as_bytes() {
                    return false;
                }
            }
        }
        true
    }

    /// One byte outside literal contents.
    fn step(&mut self, buf: &mut ReadBuf<'_>, b: u8) -> io::Result<()> {
        match self.scan {
            Scan::Text if b == b'{' => {
                self.held.push(b);
                self.scan = Scan::Open(None);
            }
            Scan::Open(digits) if b.is_ascii_digit() => {
                self.held.push(b);
                self.scan = Scan::Open(Some(
                    digits
                        .unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(u64::from(b - b'0')),
                ));
            }
            Scan::Open(Some(n)) if b == b'}' => {
                self.held.push(b);
                self.scan = Scan::Closed(n);
            }
            Scan::Closed(n) if b == b'\r' => {
                self.held.push(b);
                self.scan = Scan::Cr(n);
            }
            Scan::Cr(n) if b == b'\n' => {
                let held = std::mem::take(&mut self.held);
                if self.armed_here() {
                    self.out(buf, b"{0}\r\n");
                    let d = self
                        .divert
                        .as_mut()
                        .ok_or_else(|| io::Error::other("disarmed"))?;
                    d.announced = Some(n);
                    if n > d.limit {
                        // Read and dropped: the pipe ends early, so nothing of it is stored.
                        d.writer = None;
                    }
                    self.scan = Scan::Diverted(n);
                    self.finish_diverted();
                } else {
                    if n > self.cap {
                        return Err(io::Error::new(
                            io::ErrorKind::FileTooLarge,
                            format!(
                                "the IMAP server announced a literal of {n} bytes, more than the {} this client takes in one response",
                                self.cap
                            ),
                        ));
                    }
                    self.out(buf, &held);
                    self.out(buf, b"\n");
                    self.scan = if n == 0 { Scan::Text } else { Scan::Literal(n) };
                }
            }
            Scan::Text => self.text(buf, &[b]),
            _ => {
                // Not an announcement after all: what was held is text, and so may `b` be.
                let held = std::mem::take(&mut self.held);
                self.scan = Scan::Text;
                self.text(buf, &held);
                return self.step(buf, b);
            }
        }
        Ok(())
    }

    /// The diverted literal is all through (the pipe stays open for the transport to close).
    fn finish_diverted(&mut self) {
        if self.scan != Scan::Diverted(0) {
            return;
        }
        self.scan = Scan::Text;
        if let Some(d) = self.divert.as_mut() {
            d.done = d.writer.is_some();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LiteralCap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        loop {
            if this.emit_at < this.emit.len() {
                let n = (this.emit.len() - this.emit_at).min(buf.remaining());
                buf.put_slice(&this.emit[this.emit_at..this.emit_at + n]);
                this.emit_at += n;
                if this.emit_at == this.emit.len() {
                    this.emit.clear();
                    this.emit_at = 0;
                }
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if this.start < this.end {
                let avail = this.end - this.start;
                match this.scan {
                    Scan::Diverted(left) => {
                        let n = usize::try_from(left).unwrap_or(usize::MAX).min(avail);
                        let chunk = &this.input[this.start..this.start + n];
                        let taken = match this.divert.as_mut().and_then(|d| d.writer.as_mut()) {
                            Some(w) => match Pin::new(w).poll_write(cx, chunk) {
                                Poll::Pending if buf.filled().len() > before => {
                                    return Poll::Ready(Ok(()));
                                }
                                // The store has not taken the last part yet; it wakes us.
                                Poll::Pending => return Poll::Pending,
                                Poll::Ready(Ok(k)) => k,
                                Poll::Ready(Err(_)) => {
                                    // The store stopped reading (it failed): the rest is
                                    // read and dropped, and its reader never sees it whole.
                                    if let Some(d) = this.divert.as_mut() {
                                        d.writer = None;
                                    }
                                    n
                                }
                            },
                            None => n,
                        };
                        this.start += taken;
                        this.scan = Scan::Diverted(left - taken as u64);
                        this.finish_diverted();
                    }
                    Scan::Literal(left) => {
                        let n = usize::try_from(left)
                            .unwrap_or(usize::MAX)
                            .min(avail)
                            .min(buf.remaining());
                        buf.put_slice(&this.input[this.start..this.start + n]);
                        this.start += n;
                        let left = left - n as u64;
                        this.scan = if left == 0 {
                            Scan::Text
                        } else {
                            Scan::Literal(left)
                        };
                        if buf.remaining() == 0 {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    _ => {
                        let b = this.input[this.start];
                        this.start += 1;
                        this.step(buf, b)?;
                        if buf.remaining() == 0 {
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
                continue;
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            if let Scan::Literal(left) = this.scan {
                // Contents for the parser (a small message) go straight into its buffer.
                let want = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(buf.remaining());
                let mut read = ReadBuf::new(buf.initialize_unfilled_to(want));
                std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                let n = read.filled().len();
                buf.advance(n);
                if n > 0 {
                    let left = left - n as u64;
                    this.scan = if left == 0 {
                        Scan::Text
                    } else {
                        Scan::Literal(left)
                    };
                }
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.input);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                // The end: an announcement cut short is text, as it came.
                if !this.held.is_empty() {
                    let held = std::mem::take(&mut this.held);
                    this.scan = Scan::Text;
                    this.text(buf, &held);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            this.start = 0;
            this.end = n;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LiteralCap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use tokio::io::AsyncReadExt;

    /// The server's bytes, one read per chunk.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut c) = self.0.pop_front() {
                let n = c.len().min(buf.remaining());
                buf.put_slice(&c[..n]);
                if n < c.len() {
                    self.0.push_front(c.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// What async-imap would read through the cap, in reads of `size` bytes.
    async fn through(
        cap: u64,
        chunks: &[&[u8]],
        divert: Option<Divert>,
        size: usize,
    ) -> io::Result<Vec<u8>> {
        let mut guard = LiteralCap::new(Chunks(chunks.iter().map(|c| c.to_vec()).collect()), cap);
        if let Some(d) = divert {
            guard.arm(d);
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let n = guard.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Every byte its own read.
    fn bytewise(wire: &[u8]) -> Vec<&[u8]> {
        wire.chunks(1).collect()
    }

    #[tokio::test]
    async fn a_huge_announcement_is_caught_before_its_bytes() {
        let too_large =
            |r: io::Result<Vec<u8>>| r.expect_err("refused").kind() == io::ErrorKind::FileTooLarge;
        assert!(too_large(
            through(
                1 << 21,
                &[b"* 2 FETCH (UID 2 BODY[] {500000000}\r\n"],
                None,
                4096
            )
            .await
        ));
        // Split anywhere across reads.
        assert!(too_large(
            through(
                1 << 21,
                &[b"* 2 FETCH (BODY[] {5000", b"00000}\r", b"\n"],
                None,
                4096
            )
            .await
        ));
        assert!(too_large(
            through(10, &[b"* 1 FETCH (BODY[] ~{11}\r\n"], None, 4096).await
        ));
    }

    #[tokio::test]
    async fn literal_contents_and_small_literals_pass_unchanged() {
        // A literal whose contents look like a huge announcement is data, not an announcement.
        let mut wire = b"* 1 FETCH (UID 1 BODY[] {24}\r\n".to_vec();
        wire.extend_from_slice(b"x {999999999}\r\nabcdefghi");
        wire.extend_from_slice(b")\r\na1 OK done\r\n");
        for size in [1, 3, 4096] {
            assert_eq!(
                through(100, &[&wire], None, size).await.expect("passes"),
                wire
            );
            assert_eq!(
                through(100, &bytewise(&wire), None, size)
                    .await
                    .expect("passes"),
                wire
            );
        }
        for wire in [
            &b"* OK [ALERT] {7} not a literal\r\n"[..],
            b"* 1 FETCH (BODY[] {0}\r\n)\r\n",
            b"* OK {12x} {{3}\r\nabc {",
        ] {
            assert_eq!(
                through(100, &[wire], None, 4096).await.expect("passes"),
                wire
            );
            assert_eq!(
                through(100, &bytewise(wire), None, 2)
                    .await
                    .expect("passes"),
                wire
            );
        }
    }

    /// The wire of one whole-body answer for UID `uid`, then another response.
    fn answer(uid: u32, body: &[u8]) -> Vec<u8> {
        let mut wire = format!("* 3 FETCH (UID {uid} BODY[] {{{}}}\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b")\r\n* 4 FETCH (FLAGS (\\Seen))\r\nA7 OK Fetch completed.\r\n");
        wire
    }

    /// What the parser reads, what went into the pipe, whether all of it did, the size
    /// announced.
    async fn diverted(
        uid: u32,
        limit: u64,
        chunks: &[&[u8]],
        size: usize,
    ) -> (io::Result<Vec<u8>>, Vec<u8>, bool, Option<u64>) {
        // A small pipe: the reading waits for the store to take each part.
        let (writer, mut reader) = tokio::io::duplex(7);
        let d = Divert::new(uid, limit, writer);
        let mut guard = LiteralCap::new(Chunks(chunks.iter().map(|c| c.to_vec()).collect()), 64);
        guard.arm(d);
        let read = async {
            let mut out = Vec::new();
            let mut buf = vec![0u8; size];
            let r = loop {
                match guard.read(&mut buf).await {
                    Ok(0) => break Ok(out),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => break Err(e),
                }
            };
            // The pipe goes with the diversion: its reader then sees the end.
            let d = guard.disarm();
            (
                r,
                d.as_ref().is_some_and(|d| d.done),
                d.and_then(|d| d.announced),
            )
        };
        let piped = async {
            let mut got = Vec::new();
            let _ = reader.read_to_end(&mut got).await;
            got
        };
        let ((read, done, announced), piped) = tokio::join!(read, piped);
        (read, piped, done, announced)
    }

    #[tokio::test]
    async fn the_armed_body_goes_into_the_pipe_and_the_parser_sees_it_empty() {
        let body = b"Subject: x\r\n\r\n{5}\r\nnot an announcement, 100 bytes over the cap of 64.......................\r\n";
        assert!(body.len() > 64);
        let wire = answer(9, body);
        let seen = String::from_utf8(answer(9, b"")).expect("text");
        for (chunks, size) in [
            (vec![&wire[..]], 4096),
            (bytewise(&wire), 3),
            (vec![&wire[..]], 1),
        ] {
            let (read, piped, complete, announced) = diverted(9, 1000, &chunks, size).await;
            assert_eq!(String::from_utf8(read.expect("read")).expect("text"), seen);
            assert_eq!(piped, body);
            assert!(complete);
            assert_eq!(announced, Some(body.len() as u64));
        }
    }

    #[tokio::test]
    async fn another_uid_or_a_body_over_the_limit_is_never_piped() {
        // Another UID: passed to the parser (here over the cap, so refused as ever).
        let body = vec![b'a'; 100];
        let (read, piped, complete, announced) =
            diverted(8, 1000, &[&answer(9, &body)], 4096).await;
        assert_eq!(
            read.expect_err("capped").kind(),
            io::ErrorKind::FileTooLarge
        );
        assert!(piped.is_empty() && !complete && announced.is_none());
        // Over the limit: read and dropped, the pipe ends early and is never complete.
        let (read, piped, complete, announced) = diverted(9, 99, &[&answer(9, &body)], 4096).await;
        assert_eq!(read.expect("read"), answer(9, b""));
        assert!(piped.is_empty() && !complete);
        assert_eq!(announced, Some(100));
        // No UID before the body: the armed one's (the transport checks the answer's UID).
        let mut wire = format!("* 3 FETCH (BODY[] {{{}}}\r\n", body.len()).into_bytes();
        wire.extend_from_slice(&body);
        wire.extend_from_slice(b" UID 9)\r\n");
        let (read, piped, complete, _) = diverted(9, 1000, &[&wire], 4096).await;
        assert_eq!(read.expect("read"), b"* 3 FETCH (BODY[] {0}\r\n UID 9)\r\n");
        assert!(piped == body && complete);
        // Cut off mid-body: the pipe ends early.
        let wire = answer(9, &body);
        let (read, piped, complete, _) = diverted(9, 1000, &[&wire[..60]], 4096).await;
        assert!(read.is_ok());
        assert!(piped.len() < 100 && !complete);
    }
}

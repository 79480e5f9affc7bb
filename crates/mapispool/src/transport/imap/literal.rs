//! A cap on the literals an IMAP server announces, applied to the bytes before async-imap sees
//! them. async-imap sizes its read buffer by what a literal announces: `* 2 FETCH (BODY[]
//! {500000000}` made it zero-fill 500 MB before a byte of the message arrived (imap-proto asks
//! for the whole literal, async-imap's `Buffer::ensure_capacity` resizes to it). No setting of
//! async-imap bounds that below its own 512 MiB, so this stream does: it follows the literals
//! (`{N}` or `~{N}` at the end of a line) as they pass, skips their contents, and fails the
//! read when one is announced larger than the cap, before async-imap allocates for it.
//! Our FETCHes never ask for more than one range (1 MiB) or one small message per literal,
//! so the cap costs nothing for a server that tells the truth.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
}

/// A stream whose server may announce literals of at most `cap` bytes.
#[derive(Debug)]
pub(crate) struct LiteralCap<S> {
    inner: S,
    cap: u64,
    scan: Scan,
}

impl<S> LiteralCap<S> {
    pub(crate) fn new(inner: S, cap: u64) -> LiteralCap<S> {
        LiteralCap {
            inner,
            cap,
            scan: Scan::Text,
        }
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Follows `bytes`; the size of a literal announced over the cap, if one was.
    fn follow(&mut self, mut bytes: &[u8]) -> Option<u64> {
        while let Some((&b, rest)) = bytes.split_first() {
            self.scan = match self.scan {
                Scan::Literal(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.scan = if left == 0 {
                        Scan::Text
                    } else {
                        Scan::Literal(left)
                    };
                    continue;
                }
                Scan::Open(digits) if b.is_ascii_digit() => Scan::Open(Some(
                    digits
                        .unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(u64::from(b - b'0')),
                )),
                Scan::Open(Some(n)) if b == b'}' => Scan::Closed(n),
                Scan::Closed(n) if b == b'\r' => Scan::Cr(n),
                Scan::Cr(n) if b == b'\n' => {
                    if n > self.cap {
                        return Some(n);
                    }
                    if n == 0 { Scan::Text } else { Scan::Literal(n) }
                }
                _ if b == b'{' => Scan::Open(None),
                _ => Scan::Text,
            };
            bytes = rest;
        }
        None
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
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(n) = this.follow(&buf.filled()[before..]) {
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the IMAP server announced a literal of {n} bytes, more than the {} this client takes in one response",
                    this.cap
                ),
            )));
        }
        Poll::Ready(Ok(()))
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

    fn over(cap: u64, chunks: &[&[u8]]) -> Option<u64> {
        let mut guard = LiteralCap::new((), cap);
        chunks.iter().find_map(|c| guard.follow(c))
    }

    #[test]
    fn a_huge_announcement_is_caught_before_its_bytes() {
        assert_eq!(
            over(1 << 21, &[b"* 2 FETCH (UID 2 BODY[] {500000000}\r\n"]),
            Some(500_000_000)
        );
        // Split anywhere across reads.
        assert_eq!(
            over(1 << 21, &[b"* 2 FETCH (BODY[] {5000", b"00000}\r", b"\n"]),
            Some(500_000_000)
        );
        assert_eq!(over(10, &[b"* 1 FETCH (BODY[] ~{11}\r\n"]), Some(11));
    }

    #[test]
    fn literal_contents_and_small_literals_pass() {
        // A literal whose contents look like a huge announcement is data, not an announcement.
        let mut wire = b"* 1 FETCH (UID 1 BODY[] {24}\r\n".to_vec();
        wire.extend_from_slice(b"x {999999999}\r\nabcdefghi");
        wire.extend_from_slice(b")\r\na1 OK done\r\n");
        assert_eq!(wire[30..54].len(), 24);
        assert_eq!(over(100, &[&wire]), None);
        assert_eq!(over(100, &[b"* OK [ALERT] {7} not a literal\r\n"]), None);
        assert_eq!(over(100, &[b"* 1 FETCH (BODY[] {0}\r\n)\r\n"]), None);
    }
}

//! What leaves the machine: the few rewrites between the stored message and what a transport
//! sends or writes. The stored copy (Outbox, then Sent Items) stays exactly as submitted.
//!
//! - `Bcc:` (and `Resent-Bcc:`) never leave: every occurrence, with its folded continuation
//!   lines, is taken out of the header section (RFC 5322 §3.6.3 leaves the choice to the
//!   sender; a Bcc recipient must not be shown to the others, and MTAs such as Postfix's
//!   sendmail strip it the same way).
//! - The rest is the transport's: SMTP adds 8-bit conversion (`downgrade.rs`) and
//!   dot-stuffing (`smtp/codec.rs`).
//!
//! Only the header section is held in memory (at most [`MAX_HEADER`] bytes); the body streams.

use mapi::MapiResult;

use super::ChunkSource;

/// The most header bytes held to find the end of the header section. A header section longer
/// than this (no real one is) is treated as ending there: what follows streams unchanged.
pub const MAX_HEADER: usize = 1024 * 1024;

/// A message on its way out: its header section, rewritten, held; the body streaming behind.
/// As a [`ChunkSource`] it yields the header, then the body.
pub struct Outgoing<S> {
    /// The header section as it goes out, up to and including the empty line that ends it.
    pub header: Vec<u8>,
    /// The body bytes read along with the header section: `held[body_at..]` (the buffer
    /// they were read into, not a copy of its tail).
    held: Vec<u8>,
    body_at: usize,
    rest: S,
    /// How many bytes of `rest` the two fields above came from (to skip them on a rewind).
    held_raw: usize,
    /// `body_start` is the whole body (`rest` is at its end).
    whole: bool,
    /// 0: header next, 1: body_start next, 2: `rest`.
    at: u8,
}

impl<S: ChunkSource> Outgoing<S> {
    /// [`Outgoing::read`] with a store failure as a transport's (temporary) error.
    pub async fn prepare(body: S) -> Result<Outgoing<S>, super::TransportError> {
        Outgoing::read(body).await.map_err(|e| {
            super::TransportError::new(
                super::TransportErrorKind::Temporary,
                format!("cannot read the message from the store: {e}"),
            )
        })
    }

    /// Reads the header section of `body` and takes out what must not leave the machine.
    pub async fn read(mut body: S) -> MapiResult<Outgoing<S>> {
        let (mut held, body_at) = read_header_section(&mut body).await?;
        let mut held_raw = held.len();
        // One chunk more: a small message is then known whole (`whole`), and whether its
        // body has 8-bit is known before MAIL FROM.
        let whole = match body.next_chunk().await? {
            Some(more) => {
                held_raw += more.len();
                held.extend_from_slice(&more);
                false
            }
            None => true,
        };
        Ok(Outgoing {
            header: strip_bcc(&held[..body_at]),
            held,
            body_at,
            rest: body,
            held_raw,
            whole,
            at: 0,
        })
    }

    /// Whether [`Outgoing::body_start`] is the whole body.
    pub fn is_whole(&self) -> bool {
        self.whole
    }

    /// The body bytes read along with the header section.
    pub fn body_start(&self) -> &[u8] {
        &self.held[self.body_at..]
    }

    /// [`Outgoing::body_start`] for a caller that sends a header of its own making and takes
    /// the body start from here rather than as a copy: the next chunk is then the one after
    /// it.
    pub fn take_body_start(&mut self) -> &[u8] {
        self.at = 2;
        &self.held[self.body_at..]
    }

    /// Whether the part read so far has bytes over 0x7F, in the header (`.0`) and in the body
    /// start (`.1`).
    pub fn eight_bit(&self) -> (bool, bool) {
        (!self.header.is_ascii(), !self.body_start().is_ascii())
    }
}

impl<S: ChunkSource> ChunkSource for Outgoing<S> {
    async fn next_chunk(&mut self) -> MapiResult<Option<Vec<u8>>> {
        loop {
            match self.at {
                0 => {
                    self.at = 1;
                    if !self.header.is_empty() {
                        return Ok(Some(self.header.clone()));
                    }
                }
                1 => {
                    self.at = 2;
                    if self.held.len() > self.body_at {
                        return Ok(Some(self.body_start().to_vec()));
                    }
                }
                _ => return self.rest.next_chunk().await,
            }
        }
    }

    async fn rewind(&mut self) -> MapiResult<bool> {
        if !self.rest.rewind().await? {
            return Ok(false);
        }
        // Skip what the header read consumed; of a chunk that straddles the mark, what comes
        // after it joins `body_start`.
        let mut skip = self.held_raw;
        let mut tail = Vec::new();
        while skip > 0 {
            match self.rest.next_chunk().await? {
                Some(chunk) if chunk.len() <= skip => skip -= chunk.len(),
                Some(chunk) => {
                    tail = chunk[skip..].to_vec();
                    skip = 0;
                }
                None => break,
            }
        }
        self.held_raw += tail.len();
        self.held.extend_from_slice(&tail);
        self.at = 0;
        Ok(true)
    }
}

/// Reads chunks until the empty line that ends the header section: (the bytes read, where
/// the body starts in them: after the header section's ending empty line).
async fn read_header_section(body: &mut impl ChunkSource) -> MapiResult<(Vec<u8>, usize)> {
    let mut held = Vec::new();
    let mut searched: usize = 0;
    while let Some(chunk) = body.next_chunk().await? {
        if held.is_empty() {
            // The first chunk (most often the whole message) is kept as it is, not copied.
            held = chunk;
        } else {
            held.extend_from_slice(&chunk);
        }
        // Resume the search a little before the old end: the ending may straddle chunks.
        let from = searched.saturating_sub(3);
        if let Some(end) = header_end(&held, from) {
            return Ok((held, end));
        }
        searched = held.len();
        if held.len() >= MAX_HEADER {
            break;
        }
    }
    let end = held.len();
    Ok((held, end))
}

/// Where the header section ends in `buf` (the index after its empty line), searching from
/// `from`: a line ending followed by an empty line (CRLF or LF), or an empty first line.
pub fn header_end(buf: &[u8], from: usize) -> Option<usize> {
    if from == 0 {
        if buf.starts_with(b"\r\n") {
            return Some(2);
        }
        if buf.starts_with(b"\n") {
            return Some(1);
        }
    }
    let mut i = from;
    while let Some(k) = memchr::memchr(b'\n', &buf[i.min(buf.len())..]) {
        let nl = i + k;
        let next = &buf[nl + 1..];
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if next.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if next.is_empty() || next == b"\r" {
            // Not known yet: the next chunk says.
            return None;
        }
        i = nl + 1;
    }
    None
}

/// The header fields of a header section, each with its continuation lines (raw bytes).
pub fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = memchr::memchr(b'\n', &header[i..]).map_or(header.len(), |k| i + k + 1);
        let line = &header[i..end];
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        if !continues && i > start {
            out.push(&header[start..i]);
            start = i;
        }
        i = end;
    }
    if start < header.len() {
        out.push(&header[start..]);
    }
    out
}

/// A field's name, as written (before the colon, trailing blanks removed); `None` for a line
/// without a colon (the empty line that ends the section, or junk).
pub fn field_name(field: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', field)?;
    let name = &field[..colon];
    let name = name
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(&name[..0], |e| &name[..=e]);
    if name.is_empty() || name.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        return None;
    }
    Some(name)
}

/// The header section without its `Bcc:` and `Resent-Bcc:` fields (any case, with their
/// continuation lines).
pub fn strip_bcc(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    for field in fields(header) {
        let hidden = field_name(field).is_some_and(|n| {
            n.eq_ignore_ascii_case(b"bcc") || n.eq_ignore_ascii_case(b"resent-bcc")
        });
        if !hidden {
            out.extend_from_slice(field);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn through(message: &[u8], piece: usize) -> Vec<u8> {
        struct Pieces<'a>(&'a [u8], usize);
        impl ChunkSource for Pieces<'_> {
            async fn next_chunk(&mut self) -> MapiResult<Option<Vec<u8>>> {
                if self.0.is_empty() {
                    return Ok(None);
                }
                let n = self.0.len().min(self.1);
                let (a, b) = self.0.split_at(n);
                self.0 = b;
                Ok(Some(a.to_vec()))
            }
        }
        let mut o = Outgoing::read(Pieces(message, piece)).await.expect("read");
        let mut out = Vec::new();
        while let Some(c) = o.next_chunk().await.expect("chunk") {
            out.extend_from_slice(&c);
        }
        out
    }

    #[tokio::test]
    async fn bcc_goes_in_every_form_and_nothing_else_changes() {
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"From: a@x\r\nTo: b@x\r\nBcc: c@x\r\nSubject: s\r\n\r\nhi\r\nBcc: body@x\r\n",
                b"From: a@x\r\nTo: b@x\r\nSubject: s\r\n\r\nhi\r\nBcc: body@x\r\n",
            ),
            (
                b"BCC: c@x,\n d@x\n\te@x\nTo: b@x\nbcc : f@x\nResent-Bcc: g@x\n\nhi\n",
                b"To: b@x\n\nhi\n",
            ),
            (b"Bcc:\r\n\r\n", b"\r\n"),
            (b"To: b@x\r\nBcc: c@x", b"To: b@x\r\n"),
            (b"\r\nBcc: in-body@x\r\n", b"\r\nBcc: in-body@x\r\n"),
            (b"X-Bcc-Note: kept\r\n\r\n", b"X-Bcc-Note: kept\r\n\r\n"),
        ];
        for (input, want) in cases {
            for piece in [1, 2, 3, 5, 1000] {
                assert_eq!(
                    String::from_utf8_lossy(&through(input, piece).await),
                    String::from_utf8_lossy(want),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[tokio::test]
    async fn a_rewind_gives_the_same_bytes_again() {
        let message = b"To: b@x\r\nBcc: c@x\r\nSubject: s\r\n\r\nline one\r\nline two\r\n";
        let mut o = Outgoing::read(std::io::Cursor::new(&message[..]))
            .await
            .expect("read");
        let mut first = Vec::new();
        while let Some(c) = o.next_chunk().await.expect("chunk") {
            first.extend_from_slice(&c);
        }
        assert!(o.rewind().await.expect("rewind"));
        let mut second = Vec::new();
        while let Some(c) = o.next_chunk().await.expect("chunk") {
            second.extend_from_slice(&c);
        }
        assert_eq!(first, second);
        assert_eq!(
            first,
            b"To: b@x\r\nSubject: s\r\n\r\nline one\r\nline two\r\n".to_vec()
        );
    }
}

//! Transports: an account's outbound side (hand messages to the world) and inbound side (bring
//! new mail into the store). Every transport has the same shape, one file each:
//! `connect`, `send` (outbound), `download` (inbound), `close`.
//!
//! - `dir.rs`: the embedded default, a post-office directory on this machine.
//! - `smtp.rs` (+ `smtp/codec.rs`): SMTP submission, our own pipelining client on tokio.
//! - `pop3.rs` (+ `pop3/codec.rs`): POP3 inbound, our own client (CAPA, STLS, APOP, UIDL).
//! - `imap.rs`: IMAP inbound on `async-imap` (UIDVALIDITY/UID sync state, after_download).
//!
//! A transport decides what happened to each recipient ([`RecipientResult`]); what that means
//! for the message (retry when, report to whom) is the spooler's business.

pub mod dir;
pub mod downgrade;
pub mod imap;
mod net;
pub mod pop3;
pub mod probe;
pub mod smtp;
pub mod wire;

use std::collections::HashSet;
use std::future::Future;

use mapi::MapiResult;
use tokio::io::AsyncRead;

use crate::message::HeaderSummary;
use crate::profile::{InboundConfig, OutboundConfig};
pub use crate::transport_error::{TransportError, TransportErrorKind};

/// The most bytes one download batch holds, and the most messages: what a batch's one fsync
/// covers (and what IMAP asks for in one FETCH).
pub const BATCH_BYTES: u64 = 8 * 1024 * 1024;
pub const BATCH_COUNT: usize = 200;

/// Where a listed message falls in [`download_batches`].
pub(crate) enum Cut {
    /// With its neighbours, counted at this many bytes.
    Weighs(u64),
    /// Counted at this many bytes, and the last of its batch.
    Ends(u64),
    /// In a batch of its own.
    Alone,
}

/// A download's listing in batches of consecutive messages, each closed once it holds
/// [`BATCH_BYTES`] or [`BATCH_COUNT`], or where `cut` says; shared by IMAP and POP3, which cut
/// around a large message differently.
pub(crate) fn download_batches<T>(listed: &[T], cut: impl Fn(&T) -> Cut) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, m) in listed.iter().enumerate() {
        let (weight, ends) = match cut(m) {
            Cut::Alone => {
                if start < i {
                    out.push(&listed[start..i]);
                }
                out.push(&listed[i..=i]);
                start = i + 1;
                bytes = 0;
                continue;
            }
            Cut::Weighs(w) => (w, false),
            Cut::Ends(w) => (w, true),
        };
        bytes += weight;
        if ends || bytes >= BATCH_BYTES || i + 1 - start >= BATCH_COUNT {
            out.push(&listed[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < listed.len() {
        out.push(&listed[start..]);
    }
    out
}

/// One envelope recipient of an outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeRecipient {
    /// The recipient's row in the store (`PR_ROWID`), so results can be matched back.
    pub rowid: i64,
    pub address: String,
}

/// The envelope of one outbound message; the body comes separately as a stream.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The envelope sender; empty is the null sender `<>` that reports use.
    pub from: String,
    pub recipients: Vec<EnvelopeRecipient>,
    /// `PR_MESSAGE_SIZE`, for `SIZE=` and progress.
    pub size: u64,
    /// The delivery status notifications the submitter asked for, if any (RFC 3461).
    pub dsn: Option<Dsn>,
}

/// A request for delivery status notifications (RFC 3461), sent on MAIL FROM and RCPT TO only
/// to servers that advertise DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `NOTIFY=` on each RCPT TO: `NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY`.
    pub notify: Option<String>,
    /// `RET=` on MAIL FROM: `FULL` or `HDRS`.
    pub ret: Option<String>,
    /// `ENVID=` on MAIL FROM: the submitter's identifier for this message, which comes back in
    /// the notifications (the Message-ID here).
    pub envid: Option<String>,
}

impl Dsn {
    /// The request a stored outgoing message carries; `None` when it asked for nothing.
    pub fn of(message: &crate::store::LeasedRecord) -> Option<Dsn> {
        if message.dsn_notify.is_none() && message.dsn_ret.is_none() {
            return None;
        }
        Some(Dsn {
            notify: message.dsn_notify.clone(),
            ret: message.dsn_ret.clone(),
            envid: message
                .internet_message_id
                .as_deref()
                .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
                .filter(|id| !id.is_empty())
                .map(str::to_string),
        })
    }
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    Delivered,
    /// Try again later; the reason in the server's (or the system's) words.
    Deferred {
        error: String,
    },
    /// Will never be delivered; the reason, and MAPI's NDR reason and diagnostic codes.
    Failed {
        error: String,
        reason: i32,
        diag: i32,
    },
}

/// The refusal to log in over a connection without TLS when the transport does not say
/// `allow_plaintext_auth = true`: the password (or token) would cross the network in clear.
pub(crate) fn plaintext_auth_refused(transport: &str, server: &str) -> TransportError {
    TransportError::new(
        TransportErrorKind::Auth,
        format!(
            "transport \"{transport}\": refusing to send its password to {server} over a connection without TLS; set security = \"starttls\" or \"tls\", or allow_plaintext_auth = true for a trusted loopback relay"
        ),
    )
}

/// One message downloaded whole (small enough to hold in memory), for
/// [`InboundSink::deliver_batch`].
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The source's identity of the message (IMAP `UIDVALIDITY:UID`, a POP3 UIDL).
    pub server_id: String,
    pub summary: HeaderSummary,
    pub body: Vec<u8>,
}

/// Where an inbound side puts what it downloads: the store, through the spooler.
///
/// A transport calls `deliver` (or `deliver_batch`) for its messages and `sync` before it
/// deletes, flags or moves messages at their source; only then are they durable here. A crash
/// before that brings the messages again, and `already_have` / `known` tell the transport to
/// skip what it has and finish the clean-up.
pub trait InboundSink: Send + Sync {
    /// Whether the message the source knows as `server_id` is already stored.
    fn already_have(&self, server_id: &str) -> impl Future<Output = MapiResult<bool>> + Send;
    /// Which of `server_ids` are already stored: one question for a whole listing.
    fn known(
        &self,
        server_ids: &[String],
    ) -> impl Future<Output = MapiResult<HashSet<String>>> + Send {
        async move {
            let mut have = HashSet::new();
            for id in server_ids {
                if self.already_have(id).await? {
                    have.insert(id.clone());
                }
            }
            Ok(have)
        }
    }
    /// Stores messages held whole (durable after `sync`), all at once where the sink can:
    /// for each, in order, whether it was stored (`false`: it was already there). On an error
    /// none of the batch may be stored; the transport then acts on none of it at its source.
    fn deliver_batch(
        &self,
        batch: Vec<Downloaded>,
    ) -> impl Future<Output = MapiResult<Vec<bool>>> + Send {
        async move {
            let mut stored = Vec::with_capacity(batch.len());
            for d in &batch {
                let size = d.body.len() as u64;
                stored.push(
                    self.deliver(&d.server_id, &d.summary, size, &d.body[..])
                        .await?,
                );
            }
            Ok(stored)
        }
    }
    /// Stores one message (durable after `sync`); `false` if it was already there (nothing
    /// stored twice).
    fn deliver(
        &self,
        server_id: &str,
        summary: &HeaderSummary,
        size: u64,
        body: impl AsyncRead + Unpin + Send,
    ) -> impl Future<Output = MapiResult<bool>> + Send;
    /// Makes everything delivered so far durable. A transport calls it before it deletes,
    /// flags or moves messages at their source, so one fsync covers a whole batch.
    fn sync(&self) -> impl Future<Output = MapiResult<()>> + Send {
        async { Ok(()) }
    }

    /// `done` of `total` messages handled so far, for `PR_REMOTE_PROGRESS`.
    fn progress(&self, done: usize, total: usize);
    /// The transport's sync state under `key` (IMAP's UIDVALIDITY and last UID, POP3's
    /// first-seen times), kept durably next to the messages. A sink without state (a test's)
    /// remembers nothing.
    fn get_state(&self, key: &str) -> impl Future<Output = MapiResult<Option<String>>> + Send {
        let _ = key;
        async { Ok(None) }
    }
    /// Sets the sync state under `key`; durable with the next `sync` (a power cut before it
    /// may bring back the value before, so keep only state whose loss costs a second look).
    fn set_state(&self, key: &str, value: &str) -> impl Future<Output = MapiResult<()>> + Send {
        let _ = (key, value);
        async { Ok(()) }
    }
}

/// A message body handed out in chunks, so a large message is never held whole: the store's
/// body reader is one, and a byte slice is one (for tests and small reports).
pub trait ChunkSource: Send {
    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = MapiResult<Option<Vec<u8>>>> + Send;

    /// Starts again from the first chunk, for a second transaction of the same message (an
    /// SMTP server that takes only so many recipients at once); `false` when this source
    /// cannot, and the caller then leaves the rest for a later attempt.
    fn rewind(&mut self) -> impl Future<Output = MapiResult<bool>> + Send {
        async { Ok(false) }
    }
}

/// A message held in memory (tests, small reports), readable more than once.
impl<T: AsRef<[u8]> + Send> ChunkSource for std::io::Cursor<T> {
    async fn next_chunk(&mut self) -> MapiResult<Option<Vec<u8>>> {
        let all = self.get_ref().as_ref();
        let at = usize::try_from(self.position())
            .unwrap_or(usize::MAX)
            .min(all.len());
        if at == all.len() {
            return Ok(None);
        }
        let n = (all.len() - at).min(256 * 1024);
        let chunk = all[at..at + n].to_vec();
        self.set_position((at + n) as u64);
        Ok(Some(chunk))
    }

    async fn rewind(&mut self) -> MapiResult<bool> {
        self.set_position(0);
        Ok(true)
    }
}

impl ChunkSource for &[u8] {
    async fn next_chunk(&mut self) -> MapiResult<Option<Vec<u8>>> {
        if self.is_empty() {
            return Ok(None);
        }
        let n = self.len().min(256 * 1024);
        let (head, rest) = self.split_at(n);
        *self = rest;
        Ok(Some(head.to_vec()))
    }
}

/// What one download brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadSummary {
    /// New messages stored.
    pub received: usize,
    /// Messages the store already had (a resumed download after a crash).
    pub skipped: usize,
    /// Messages the server would not hand over (a POP3 `-ERR` to RETR), each in words; they
    /// stay at the source for the next download. Not fatal for the others.
    pub refused: Vec<String>,
}

/// A transport's outbound side, whichever kind the profile names.
#[derive(Debug)]
pub enum Outbound {
    Dir(dir::DirOutbound),
    /// Boxed: a session with its buffers is much larger than the other kinds.
    Smtp(Box<smtp::SmtpOutbound>),
}

impl Outbound {
    /// The outbound side for a profile's `[transport.outbound]` of transport `transport`.
    /// `allow_prompt` is false under `FLUSH_NO_UI`: a `password_prompt` then fails with
    /// `NeedsPerson` when the transport connects.
    pub fn from_config(
        config: &OutboundConfig,
        transport: &str,
        allow_prompt: bool,
    ) -> Result<Outbound, TransportError> {
        match config {
            OutboundConfig::Dir(d) => Ok(Outbound::Dir(dir::DirOutbound::new(&d.path))),
            OutboundConfig::Smtp(s) => Ok(Outbound::Smtp(Box::new(smtp::SmtpOutbound::new(
                s,
                transport,
                allow_prompt,
            )))),
        }
    }

    /// Caps the transport's own time limits by `limit` (the spooler's `[spooler] timeout`), so
    /// a stall is reported by the transport, naming the step, within that time.
    pub fn set_timeout(&mut self, limit: std::time::Duration) {
        match self {
            Outbound::Dir(_) => {}
            Outbound::Smtp(t) => t.cap_timeouts(limit),
        }
    }

    /// Logs in with `secret` (resolved once for a whole flush) instead of resolving the
    /// credential on connecting; a transport without a login ignores it.
    pub fn set_secret(&mut self, secret: crate::credential::Secret) {
        match self {
            Outbound::Dir(_) => {}
            Outbound::Smtp(t) => t.set_secret(secret),
        }
    }

    pub async fn connect(&mut self) -> Result<(), TransportError> {
        match self {
            Outbound::Dir(t) => t.connect().await,
            Outbound::Smtp(t) => t.connect().await,
        }
    }

    pub async fn send(
        &mut self,
        envelope: &Envelope,
        body: impl ChunkSource,
    ) -> Result<Vec<RecipientResult>, TransportError> {
        match self {
            Outbound::Dir(t) => t.send(envelope, body).await,
            Outbound::Smtp(t) => t.send(envelope, body).await,
        }
    }

    /// [`smtp::SmtpOutbound::send_pipelined`]: over SMTP the message may be left unconfirmed,
    /// its final reply read with the next message's envelope; the post office always answers
    /// at once.
    pub async fn send_pipelined(
        &mut self,
        envelope: &Envelope,
        body: impl ChunkSource,
    ) -> Result<smtp::Sent, TransportError> {
        match self {
            Outbound::Dir(t) => t.send(envelope, body).await.map(smtp::Sent::Done),
            Outbound::Smtp(t) => t.send_pipelined(envelope, body).await,
        }
    }

    /// Reads the reply of a message left unconfirmed ([`smtp::SmtpOutbound::confirm`]).
    pub async fn confirm(&mut self) {
        if let Outbound::Smtp(t) = self {
            t.confirm().await;
        }
    }

    /// The results of a message left unconfirmed, once its reply was read.
    pub fn take_confirmed(&mut self) -> Option<smtp::Confirmed> {
        match self {
            Outbound::Dir(_) => None,
            Outbound::Smtp(t) => t.take_confirmed(),
        }
    }

    /// Before dropping the transport: the results of a message left unconfirmed
    /// ([`smtp::SmtpOutbound::give_up`]).
    pub fn give_up(&mut self) -> Option<smtp::Confirmed> {
        match self {
            Outbound::Dir(_) => None,
            Outbound::Smtp(t) => t.give_up(),
        }
    }

    pub async fn close(&mut self) {
        match self {
            Outbound::Dir(t) => t.close().await,
            Outbound::Smtp(t) => t.close().await,
        }
    }

    /// What the receiving side said of the last message it took, in its own words, for the
    /// mail log: an SMTP server's reply to the final `.`; the post office's delivery.
    pub fn last_reply(&self) -> Option<String> {
        match self {
            Outbound::Dir(_) => Some("delivered to the post office".to_string()),
            Outbound::Smtp(t) => t.last_reply().map(str::to_string),
        }
    }
}

/// A transport's inbound side, whichever kind the profile names.
#[derive(Debug)]
pub enum Inbound {
    Dir(dir::DirInbound),
    Pop3(pop3::Pop3Inbound),
    Imap(imap::ImapInbound),
}

impl Inbound {
    /// The inbound side for a profile's `[transport.inbound]` of transport `transport`,
    /// receiving for `address` (also the login when the profile gives no `username`).
    /// `allow_prompt` is false under `FLUSH_NO_UI`: a `password_prompt` then fails with
    /// `NeedsPerson` when the transport connects.
    pub fn from_config(
        config: &InboundConfig,
        address: &str,
        transport: &str,
        allow_prompt: bool,
    ) -> Result<Inbound, TransportError> {
        match config {
            InboundConfig::Dir(d) => Ok(Inbound::Dir(dir::DirInbound::new(
                &d.path,
                vec![address.to_string()],
            ))),
            InboundConfig::Pop3(p) => Ok(Inbound::Pop3(pop3::Pop3Inbound::new(
                p,
                transport,
                address,
                allow_prompt,
            ))),
            InboundConfig::Imap(i) => Ok(Inbound::Imap(imap::ImapInbound::new(
                i,
                transport,
                address,
                allow_prompt,
            ))),
        }
    }

    /// Bounds connecting and logging in (and POP3's every reply) by `limit` too (the spooler's
    /// `[spooler] timeout`), not only by the transport's fixed connect limit.
    pub fn set_timeout(&mut self, limit: std::time::Duration) {
        match self {
            Inbound::Dir(_) => {}
            Inbound::Pop3(t) => t.set_timeout(limit),
            Inbound::Imap(t) => t.set_timeout(limit),
        }
    }

    /// The largest message a download takes (`[spooler] max_message_size`); a larger one
    /// stays at its source and is named in the summary.
    pub fn set_max_message_size(&mut self, max: u64) {
        match self {
            Inbound::Dir(_) => {}
            Inbound::Pop3(t) => t.set_max_message_size(max),
            Inbound::Imap(t) => t.set_max_message_size(max),
        }
    }

    pub async fn connect(&mut self) -> Result<(), TransportError> {
        match self {
            Inbound::Dir(t) => t.connect().await,
            Inbound::Pop3(t) => t.connect().await,
            Inbound::Imap(t) => t.connect().await,
        }
    }

    pub async fn download(
        &mut self,
        sink: &impl InboundSink,
    ) -> Result<DownloadSummary, TransportError> {
        match self {
            Inbound::Dir(t) => t.download(sink).await,
            Inbound::Pop3(t) => t.download(sink).await,
            Inbound::Imap(t) => t.download(sink).await,
        }
    }

    pub async fn close(&mut self) {
        match self {
            Inbound::Dir(t) => t.close().await,
            Inbound::Pop3(t) => t.close().await,
            Inbound::Imap(t) => t.close().await,
        }
    }
}

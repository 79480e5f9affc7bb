//! The SMTP transport (`kind = "smtp"`): submission to a server, one connection per flush reused
//! across its messages, with a result per recipient.
//!
//! Framing (replies, EHLO keywords, the DATA encoder) is in `smtp/codec.rs`; this file is the
//! transaction driver. It is our own small client on tokio rather than mail-send's `SmtpClient`:
//! we need every reply of a pipelined group (RFC 2920) matched to its recipient, a body streamed
//! from a [`ChunkSource`] through one large buffer, a STARTTLS that refuses data pipelined after
//! its `220`, and per-phase timeouts — which is most of what `SmtpClient` does, so wrapping it
//! would add a dependency (and its aws-lc default) without removing code.
//!
//! A transaction:
//! ```text
//! [RSET]                      after a transaction that did not end cleanly
//! MAIL FROM:<s> [SIZE= BODY=8BITMIME SMTPUTF8 RET= ENVID=]
//! RCPT TO:<r> [NOTIFY= ORCPT=] ...  (with PIPELINING: up to 100 commands, DATA last, per write)
//! DATA -> 354, body, "." -> final reply
//! [MAIL ... again]            for the recipients a `452 4.5.3` left over, at once
//! ```
//! `send` runs transactions until every recipient is settled; `transaction` is one of them:
//! `plan` (what MAIL says and the message's wire form for this server: `wire.rs`,
//! `downgrade.rs`), `envelope_phase` (one path, pipelined or not, where 421 and wire errors are
//! met), then DATA and `send_body`.
//! Outcomes: a 2xx RCPT and a 2xx final reply is `Delivered`; 4xx anywhere is `Deferred` with the
//! server's words; 5xx is `Failed`. A reused connection that turns out dead or answers 421
//! before the body is sent is replaced transparently and the message tried again on the new one.

/// The reply codec, public only for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod codec;

pub use codec::{Capabilities, DataEncoder, Reply};

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mapi::constants::{
    MAPI_DIAG_CONTENT_TOO_LONG, MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN, MAPI_DIAG_MAIL_REFUSED,
    MAPI_DIAG_OR_NAME_UNRECOGNIZED, MAPI_REASON_TRANSFER_IMPOSSIBLE,
};
use rustls::ClientConfig;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};

use super::net::{MailStream, tcp_connect};
use super::wire::Outgoing;
use super::{ChunkSource, Envelope, RecipientResult, TransportError, TransportErrorKind};
use crate::credential::{self, Secret};
use crate::profile::{Security, SmtpAuth, SmtpConfig};
use codec::{ReadError, address_is_safe, base64, read_reply};

/// The write buffer for commands and the body: big enough that a body goes out in few
/// `write` calls (never one per line), small enough to be cheap per connection.
const WRITE_BUFFER: usize = 64 * 1024;

/// Time limits per phase. The defaults are RFC 5321 §4.5.3.2's; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpTimeouts {
    /// Opening the TCP connection (and the TLS handshake).
    pub connect: Duration,
    /// The server's `220` greeting.
    pub greeting: Duration,
    /// EHLO, STARTTLS, AUTH, RSET, QUIT.
    pub command: Duration,
    pub mail: Duration,
    pub rcpt: Duration,
    /// The reply to DATA (`354`).
    pub data_init: Duration,
    /// Each buffered block of the body written.
    pub data_block: Duration,
    /// The reply to the final `.`.
    pub data_end: Duration,
}

impl Default for SmtpTimeouts {
    fn default() -> Self {
        SmtpTimeouts {
            connect: Duration::from_secs(60),
            greeting: Duration::from_secs(5 * 60),
            command: Duration::from_secs(5 * 60),
            mail: Duration::from_secs(5 * 60),
            rcpt: Duration::from_secs(5 * 60),
            data_init: Duration::from_secs(2 * 60),
            data_block: Duration::from_secs(3 * 60),
            data_end: Duration::from_secs(10 * 60),
        }
    }
}

impl SmtpTimeouts {
    /// Every limit set to `d`: for tests.
    pub fn all(d: Duration) -> SmtpTimeouts {
        SmtpTimeouts {
            connect: d,
            greeting: d,
            command: d,
            mail: d,
            rcpt: d,
            data_init: d,
            data_block: d,
            data_end: d,
        }
    }
}

type Io = BufReader<BufWriter<MailStream>>;

/// What went wrong on the wire, before it is given a meaning.
#[derive(Clone)]
enum WireError {
    /// No reply (or no write) within the phase's limit.
    Timeout(&'static str, Duration),
    /// The connection broke, closed, or carried something that is not SMTP.
    Broken(String),
}

impl WireError {
    fn describe(&self, server: &str) -> String {
        match self {
            WireError::Timeout(what, d) => format!(
                "SMTP server {server} did not answer {what} within {}",
                humantime::format_duration(*d)
            ),
            WireError::Broken(why) => format!("SMTP server {server}: {why}"),
        }
    }
    fn into_transport(self, server: &str) -> TransportError {
        let kind = match self {
            WireError::Timeout(..) => TransportErrorKind::Timeout,
            WireError::Broken(_) => TransportErrorKind::Temporary,
        };
        TransportError::new(kind, self.describe(server))
    }
}

/// One open SMTP session: the stream, what EHLO said, how many messages it carried.
struct Session {
    io: Io,
    caps: Capabilities,
    messages: u32,
    /// A MAIL transaction may be open: RSET before the next MAIL.
    dirty: bool,
    /// The most recipients the server took in one transaction before it said "too many".
    rcpt_limit: Option<usize>,
    /// Set before an envelope phase that goes behind an unconfirmed message: that message's
    /// final reply comes before the envelope's replies, and is left in `dot_reply`.
    dot_pending: bool,
    dot_reply: Option<Result<Reply, WireError>>,
}

impl Session {
    async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), WireError> {
        match tokio::time::timeout(limit, self.io.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WireError::Broken(format!("connection lost: {e}"))),
            Err(_) => Err(WireError::Timeout("a write", limit)),
        }
    }
    async fn flush(&mut self, limit: Duration) -> Result<(), WireError> {
        match tokio::time::timeout(limit, self.io.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WireError::Broken(format!("connection lost: {e}"))),
            Err(_) => Err(WireError::Timeout("a write", limit)),
        }
    }
    async fn reply(&mut self, what: &'static str, limit: Duration) -> Result<Reply, WireError> {
        match tokio::time::timeout(limit, read_reply(&mut self.io)).await {
            Ok(Ok(r)) => {
                tracing::trace!(reply = %r, "smtp S");
                Ok(r)
            }
            Ok(Err(ReadError::Closed)) => Err(WireError::Broken(format!(
                "the connection closed while waiting for the reply to {what}"
            ))),
            Ok(Err(e)) => Err(WireError::Broken(format!("in reply to {what}: {e}"))),
            Err(_) => Err(WireError::Timeout(what, limit)),
        }
    }
    /// Writes `line` (without CRLF), flushes, and reads the reply. `shown` is what logs see.
    async fn command(
        &mut self,
        line: &str,
        shown: &'static str,
        limit: Duration,
    ) -> Result<Reply, WireError> {
        tracing::trace!(command = shown, "smtp C");
        self.write(format!("{line}\r\n").as_bytes(), limit).await?;
        self.flush(limit).await?;
        self.reply(shown, limit).await
    }
}

/// The SMTP outbound side of one transport.
pub struct SmtpOutbound {
    transport: String,
    config: SmtpConfig,
    allow_prompt: bool,
    timeouts: SmtpTimeouts,
    tls: Option<Arc<ClientConfig>>,
    secret: Option<Secret>,
    session: Option<Session>,
    /// The server's reply to the final `.` of the last message it accepted, for the mail log.
    last_reply: Option<String>,
    /// A message sent up to its end of data whose final reply is not read yet.
    unconfirmed: Option<Unconfirmed>,
    /// The results of the last unconfirmed message once its reply was read (or lost), until
    /// the caller takes them.
    confirmed: Option<Confirmed>,
}

/// A message whose end of data (`.`) is written but whose reply is not read yet: the next
/// message's MAIL, RCPT and DATA go out in the same write (RFC 2920 §3.1: message content may
/// be the first "command" of a group), which saves a write, a read and a round trip a message.
/// The accepted recipients' results wait for that reply.
struct Unconfirmed {
    results: Vec<Option<RecipientResult>>,
    accepted: Vec<usize>,
}

/// The results of a message sent with [`SmtpOutbound::send_pipelined`] once its final reply is
/// read, or known lost.
#[derive(Debug)]
pub struct Confirmed {
    /// A result per envelope recipient, in order.
    pub results: Vec<RecipientResult>,
    /// The server's reply to `.` when it accepted the message, for the mail log.
    pub reply: Option<String>,
}

/// How [`SmtpOutbound::send_pipelined`] left a message.
#[derive(Debug)]
pub enum Sent {
    /// Every recipient has its result.
    Done(Vec<RecipientResult>),
    /// Sent up to its end of data, the reply not read yet: the results come from
    /// [`SmtpOutbound::take_confirmed`] after the next `send_pipelined` or
    /// [`SmtpOutbound::confirm`].
    Unconfirmed,
}

impl std::fmt::Debug for SmtpOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpOutbound")
            .field("transport", &self.transport)
            .field("server", &self.server())
            .field("connected", &self.session.is_some())
            .finish()
    }
}

/// How a transaction attempt ended.
enum Attempt {
    /// Every recipient of the batch has its result, but `overflow`: those the server had no
    /// room for (`452 4.5.3` too many recipients), for a new transaction at once. `body_read`:
    /// the body was read (a next transaction must rewind it).
    Done {
        overflow: Vec<usize>,
        body_read: bool,
    },
    /// The reused connection was dead or closing (421) before any body byte was sent: try
    /// again on a new one. The text is why, for the log.
    Retry(String),
    /// The whole message is written up to its end of data, its reply left unread (the caller
    /// asked to hold it): `accepted` wait for that reply.
    Held { accepted: Vec<usize> },
}

/// How many commands go out in one write when pipelining (RFC 2920): enough to save the round
/// trips, few enough that the replies never fill the socket buffers while we are still writing.
const PIPELINE_WINDOW: usize = 100;

/// One command of the envelope phase.
#[derive(Clone, Copy)]
enum Cmd {
    Mail,
    Rcpt(usize),
    Data,
}

/// The replies of the envelope phase (MAIL, RCPT..., pipelined DATA).
struct EnvelopeReplies {
    mail: Option<Reply>,
    /// Per recipient sent: its index and reply; too-many replies are in `overflow` instead.
    rcpts: Vec<(usize, Reply)>,
    /// Recipients not given a place in this transaction: 452 too many, or not sent after it.
    overflow: Vec<usize>,
    /// Recipients never sent because the phase stopped (MAIL refused, 421).
    unsent: Vec<usize>,
    /// The first "too many recipients" reply.
    too_many: Option<Reply>,
    data: Option<Reply>,
    /// The server said 421: it is closing the connection.
    closing: bool,
}

/// What MAIL FROM says and how the message goes on the wire, for one server's capabilities.
struct WirePlan {
    mail: String,
    /// The header section as it goes out (RFC 2047-encoded for a server without SMTPUTF8).
    header: Vec<u8>,
    /// The server takes 8-bit bodies (8BITMIME); without it, 8-bit parts are converted.
    eight_bit_ok: bool,
}

impl SmtpOutbound {
    /// `transport` names the account in messages; `allow_prompt` is false under `FLUSH_NO_UI`.
    pub fn new(config: &SmtpConfig, transport: &str, allow_prompt: bool) -> SmtpOutbound {
        SmtpOutbound {
            transport: transport.to_string(),
            config: config.clone(),
            allow_prompt,
            timeouts: SmtpTimeouts::default(),
            tls: None,
            secret: None,
            session: None,
            last_reply: None,
            unconfirmed: None,
            confirmed: None,
        }
    }

    /// The server's reply to the final `.` of the last message it accepted (`250 2.0.0 Ok:
    /// queued as …`), for the mail log.
    pub fn last_reply(&self) -> Option<&str> {
        self.last_reply.as_deref()
    }

    /// Logs in with `secret` instead of resolving the credential itself: the spooler resolves
    /// it once per flush for all of the flush's connections (one `password_command` run, one
    /// prompt).
    pub fn set_secret(&mut self, secret: Secret) {
        self.secret = Some(secret);
    }

    /// Replaces the RFC 5321 time limits (tests shorten them).
    pub fn with_timeouts(mut self, timeouts: SmtpTimeouts) -> SmtpOutbound {
        self.timeouts = timeouts;
        self
    }

    /// Caps every time limit at `limit` (the spooler's `[spooler] timeout`): a stall is then
    /// reported here, naming the step ("did not answer MAIL FROM within 1s"), before the
    /// spooler's own limit on the whole operation.
    pub fn cap_timeouts(&mut self, limit: Duration) {
        let t = &mut self.timeouts;
        for d in [
            &mut t.connect,
            &mut t.greeting,
            &mut t.command,
            &mut t.mail,
            &mut t.rcpt,
            &mut t.data_init,
            &mut t.data_block,
            &mut t.data_end,
        ] {
            *d = (*d).min(limit);
        }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// Resolves the password (once) and opens the first connection.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        if self.session.is_none() {
            let session = self.open().await?;
            self.session = Some(session);
        }
        Ok(())
    }

    /// Sends one message; a result per envelope recipient, in order.
    ///
    /// Recipients a server has no room for (`452 4.5.3`, RFC 5321 §4.5.3.1.10) go in a new
    /// transaction on the same connection at once, as many per transaction as the server took
    /// the first time; the body is read again from its source for each.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        body: impl ChunkSource,
    ) -> Result<Vec<RecipientResult>, TransportError> {
        self.confirm().await;
        match self.send_inner(envelope, body, false).await? {
            Sent::Done(results) => Ok(results),
            // Not asked to hold it, so it is not held; were it ever, its reply is read here.
            Sent::Unconfirmed => {
                self.confirm().await;
                Ok(self.take_confirmed().map(|c| c.results).unwrap_or_default())
            }
        }
    }

    /// Sends one message like [`SmtpOutbound::send`], but when the server offers PIPELINING
    /// (and the profile does not turn it off) leaves the reply to its final `.` unread, so that
    /// the next message's MAIL, RCPT and DATA go out in the same write as that `.` (RFC 2920).
    ///
    /// A message left [`Sent::Unconfirmed`] gets its results when its reply is read: by the
    /// next `send_pipelined` (before that message's own envelope replies) or by
    /// [`SmtpOutbound::confirm`]; take them with [`SmtpOutbound::take_confirmed`] after each
    /// call, whatever it returned. If the connection breaks before that reply, the message's
    /// accepted recipients are `Deferred` ("will try again"): the server may have it, so it
    /// may go twice, never be lost. A caller that drops the transport with a message
    /// unconfirmed takes its results from [`SmtpOutbound::give_up`] first.
    pub async fn send_pipelined(
        &mut self,
        envelope: &Envelope,
        body: impl ChunkSource,
    ) -> Result<Sent, TransportError> {
        // The next message goes behind an unconfirmed one only on the same clean session;
        // anything else (a reconnect, RSET, no pipelining) reads its reply first.
        let behind = self.session.as_ref().is_some_and(|s| {
            !s.dirty
                && self.config.pipelining
                && s.caps.pipelining
                && self
                    .config
                    .max_messages_per_connection
                    .is_none_or(|max| s.messages < max)
        });
        if !behind {
            self.confirm().await;
        }
        self.send_inner(envelope, body, true).await
    }

    /// Reads the final reply of the unconfirmed message, if there is one, and keeps its results
    /// for [`SmtpOutbound::take_confirmed`]. A broken connection defers its accepted
    /// recipients (the outcome is unknown: it goes again).
    pub async fn confirm(&mut self) {
        let Some(u) = self.unconfirmed.take() else {
            return;
        };
        let t = self.timeouts;
        let reply = match self.session.as_mut() {
            Some(s) => {
                async {
                    s.flush(t.data_block).await?;
                    s.reply("the end of the message (.)", t.data_end).await
                }
                .await
            }
            None => Err(WireError::Broken("the connection was closed".into())),
        };
        if !reply.as_ref().is_ok_and(|r| r.code != 421) {
            self.session = None;
        }
        self.settle_unconfirmed(u, reply);
    }

    /// The results of the last message left unconfirmed, once its reply was read.
    pub fn take_confirmed(&mut self) -> Option<Confirmed> {
        self.confirmed.take()
    }

    /// Before the transport is dropped without [`SmtpOutbound::confirm`] (a timeout, an
    /// error): the results of the last unconfirmed message, its accepted recipients deferred
    /// when its reply was never read.
    pub fn give_up(&mut self) -> Option<Confirmed> {
        if let Some(u) = self.unconfirmed.take() {
            self.session = None;
            let why = WireError::Broken(
                "the connection was given up before the server confirmed the message".into(),
            );
            self.settle_unconfirmed(u, Err(why));
        }
        self.confirmed.take()
    }

    /// The unconfirmed message's results from its final reply (or the lack of one).
    fn settle_unconfirmed(&mut self, u: Unconfirmed, reply: Result<Reply, WireError>) {
        let server = self.server();
        let mut results = u.results;
        let accepted_reply = match reply {
            Ok(r) if r.is_positive() => Some(r.to_string()),
            Ok(r) => {
                set_all(&mut results, &u.accepted, &mail_result(&server, &r));
                None
            }
            Err(e) => {
                let why = format!("{}; will try again", e.describe(&server));
                defer(&mut results, &u.accepted, &why);
                None
            }
        };
        if accepted_reply.is_some() {
            self.last_reply.clone_from(&accepted_reply);
        }
        self.confirmed = Some(Confirmed {
            results: settle(results),
            reply: accepted_reply,
        });
    }

    /// [`SmtpOutbound::send`]; `hold`: the last transaction may leave its final reply unread.
    async fn send_inner(
        &mut self,
        envelope: &Envelope,
        body: impl ChunkSource,
        hold: bool,
    ) -> Result<Sent, TransportError> {
        let server = self.server();
        // The header section and the first body bytes are held from here on: they tell whether
        // the message is 8-bit, and they let a transaction be retried on a new connection.
        let mut message = super::wire::Outgoing::prepare(body).await?;
        let n = envelope.recipients.len();
        if !address_is_safe(&envelope.from) {
            return Ok(Sent::Done(all_failed(
                n,
                &format!(
                    "the envelope sender {:?} cannot be sent over SMTP",
                    envelope.from
                ),
                MAPI_DIAG_OR_NAME_UNRECOGNIZED,
            )));
        }
        // Per recipient: None = not settled yet.
        let mut results: Vec<Option<RecipientResult>> = vec![None; n];
        for (i, r) in envelope.recipients.iter().enumerate() {
            if !address_is_safe(&r.address) || r.address.is_empty() {
                results[i] = Some(RecipientResult::Failed {
                    error: format!("the address {:?} cannot be sent over SMTP", r.address),
                    reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
                    diag: MAPI_DIAG_OR_NAME_UNRECOGNIZED,
                });
            }
        }
        let mut pending: Vec<usize> = (0..n).filter(|&i| results[i].is_none()).collect();
        let mut done_transactions = 0u32;
        let mut retried = false;
        let mut body_read = false;
        while !pending.is_empty() {
            // After one transaction went through, a failure only defers those still waiting:
            // the results already in hand stand.
            let fail = |e: TransportError,
                        results: &mut Vec<Option<RecipientResult>>,
                        pending: &[usize]|
             -> Result<(), TransportError> {
                if done_transactions == 0 {
                    return Err(e);
                }
                defer(results, pending, &e.message);
                Ok(())
            };
            let reused = match self.ensure_session().await {
                Ok(reused) => reused,
                Err(e) => {
                    fail(e, &mut results, &pending)?;
                    break;
                }
            };
            if body_read {
                let rewound = message.rewind().await.unwrap_or(false);
                if !rewound {
                    let e = TransportError::new(
                        TransportErrorKind::Temporary,
                        "the message cannot be read a second time for the recipients left over",
                    );
                    fail(e, &mut results, &pending)?;
                    break;
                }
            }
            match self
                .transaction(envelope, &pending, &mut message, reused, hold, &mut results)
                .await
            {
                Ok(Attempt::Held { accepted }) => {
                    self.unconfirmed = Some(Unconfirmed { results, accepted });
                    return Ok(Sent::Unconfirmed);
                }
                Ok(Attempt::Done {
                    overflow,
                    body_read: read,
                }) => {
                    body_read = read;
                    done_transactions += 1;
                    retried = false;
                    if overflow.len() == pending.len() {
                        // The server took none of them: they keep their 452 and wait.
                        break;
                    }
                    if !overflow.is_empty() {
                        tracing::debug!(server = %server, left = overflow.len(), "too many recipients for one transaction; a new one follows");
                    }
                    pending = overflow;
                }
                Ok(Attempt::Retry(why)) => {
                    self.session = None;
                    if retried {
                        fail(
                            TransportError::new(TransportErrorKind::Temporary, why),
                            &mut results,
                            &pending,
                        )?;
                        break;
                    }
                    tracing::info!(server = %server, why = %why, "reused SMTP connection is gone; reconnecting");
                    retried = true;
                }
                Err(e) => {
                    fail(e, &mut results, &pending)?;
                    break;
                }
            }
        }
        Ok(Sent::Done(settle(results)))
    }

    /// An open session for the next transaction; whether it is a reused one.
    async fn ensure_session(&mut self) -> Result<bool, TransportError> {
        let reused = match self.session.as_ref() {
            Some(s)
                if self
                    .config
                    .max_messages_per_connection
                    .is_some_and(|max| s.messages >= max) =>
            {
                tracing::debug!(server = %self.server(), "max_messages_per_connection reached; reconnecting");
                self.quit().await;
                false
            }
            Some(_) => true,
            None => false,
        };
        if self.session.is_none() {
            let session = self.open().await?;
            self.session = Some(session);
        }
        Ok(reused)
    }

    /// QUIT and close.
    pub async fn close(&mut self) {
        self.quit().await;
    }

    async fn quit(&mut self) {
        // Never hang up on a message whose reply is due: its outcome would be lost.
        self.confirm().await;
        if let Some(mut s) = self.session.take() {
            let limit = self.timeouts.command.min(Duration::from_secs(10));
            let _ = s.command("QUIT", "QUIT", limit).await;
            let _ = tokio::time::timeout(limit, s.io.shutdown()).await;
        }
    }

    async fn tls_config(&mut self) -> Result<Arc<ClientConfig>, TransportError> {
        if let Some(c) = &self.tls {
            return Ok(c.clone());
        }
        let c = crate::tls::client_config(
            self.config.ca_file.as_deref(),
            self.config.insecure_skip_verify,
        )
        .await?;
        self.tls = Some(c.clone());
        Ok(c)
    }

    /// A new session: TCP (and TLS), greeting, EHLO, STARTTLS, EHLO again, AUTH.
    async fn open(&mut self) -> Result<Session, TransportError> {
        let server = self.server();
        let host = self.config.host.clone();
        let t = self.timeouts;
        if self.config.username.is_some() && self.secret.is_none() {
            let Some(cred) = self.config.credential.as_ref() else {
                return Err(TransportError::new(
                    TransportErrorKind::Auth,
                    format!(
                        "transport \"{}\": username is set but no password_command, password_file, password_env or password_prompt",
                        self.transport
                    ),
                ));
            };
            self.secret =
                Some(credential::resolve(cred, &self.transport, self.allow_prompt).await?);
        }
        let tls_config = match self.config.security {
            Security::None => None,
            _ => Some(self.tls_config().await?),
        };

        let tcp = tcp_connect(&host, self.config.port, t.connect).await?;
        let local = tcp.local_addr().ok();
        let conn = if self.config.security == Security::Tls {
            let config = tls_config.clone().ok_or_else(|| {
                TransportError::new(TransportErrorKind::Tls, "no TLS configuration")
            })?;
            let tls = with_limit(
                t.connect,
                &format!("TLS handshake with {server}"),
                crate::tls::connect_tls(tcp, &host, config),
            )
            .await?;
            MailStream::Tls(Box::new(tls))
        } else {
            MailStream::Plain(tcp)
        };
        let mut session = Session {
            io: BufReader::new(BufWriter::with_capacity(WRITE_BUFFER, conn)),
            caps: Capabilities::default(),
            messages: 0,
            dirty: false,
            rcpt_limit: None,
            dot_pending: false,
            dot_reply: None,
        };
        let greeting = session
            .reply("the connection (greeting)", t.greeting)
            .await
            .map_err(|e| e.into_transport(&server))?;
        if greeting.code != 220 {
            return Err(TransportError::new(
                if greeting.is_permanent() {
                    TransportErrorKind::Permanent
                } else {
                    TransportErrorKind::Connect
                },
                format!("SMTP server {server} refused the connection: {greeting}"),
            ));
        }
        let helo_name = helo_name(local);
        session.caps = ehlo(&mut session, &helo_name, t.command, &server).await?;

        if self.config.security == Security::Starttls {
            if !session.caps.starttls {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    format!(
                        "SMTP server {server} does not offer STARTTLS; set security = \"tls\" if it speaks TLS from the start (port 465), or security = \"none\" for a test server"
                    ),
                ));
            }
            let reply = session
                .command("STARTTLS", "STARTTLS", t.command)
                .await
                .map_err(|e| e.into_transport(&server))?;
            if reply.code != 220 {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    format!("SMTP server {server} refused STARTTLS: {reply}"),
                ));
            }
            // Anything the server sent after its 220 came before TLS and cannot be trusted
            // (CVE-2011-0411-style injection): refuse rather than read it as if protected.
            if !session.io.buffer().is_empty() {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    format!(
                        "SMTP server {server} sent data right after agreeing to STARTTLS; refusing (a man in the middle?)"
                    ),
                ));
            }
            let MailStream::Plain(tcp) = session.io.into_inner().into_inner() else {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    "STARTTLS on a connection already under TLS",
                ));
            };
            let config = tls_config.ok_or_else(|| {
                TransportError::new(TransportErrorKind::Tls, "no TLS configuration")
            })?;
            let tls = with_limit(
                t.connect,
                &format!("TLS handshake with {server}"),
                crate::tls::connect_tls(tcp, &host, config),
            )
            .await?;
            session = Session {
                io: BufReader::new(BufWriter::with_capacity(
                    WRITE_BUFFER,
                    MailStream::Tls(Box::new(tls)),
                )),
                caps: Capabilities::default(),
                messages: 0,
                dirty: false,
                rcpt_limit: None,
                dot_pending: false,
                dot_reply: None,
            };
            session.caps = ehlo(&mut session, &helo_name, t.command, &server).await?;
        }

        if let Some(user) = self.config.username.clone() {
            // The profile refuses this combination when it loads; a configuration built in
            // code (or a future path past that check) is refused here too, before a password
            // or token crosses an unencrypted connection.
            let encrypted = matches!(session.io.get_ref().get_ref(), MailStream::Tls(_));
            if !encrypted && !self.config.allow_plaintext_auth {
                return Err(super::plaintext_auth_refused(&self.transport, &server));
            }
            let secret = self.secret.clone().ok_or_else(|| {
                TransportError::new(TransportErrorKind::Auth, "no password resolved")
            })?;
            self.authenticate(&mut session, &user, &secret).await?;
        }
        tracing::debug!(server = %server, caps = ?session.caps, "SMTP session open");
        Ok(session)
    }

    async fn authenticate(
        &self,
        session: &mut Session,
        user: &str,
        secret: &Secret,
    ) -> Result<(), TransportError> {
        let server = self.server();
        let limit = self.timeouts.command;
        let offered = &session.caps.auth;
        let mech = match self.config.auth {
            Some(SmtpAuth::Plain) => "PLAIN",
            Some(SmtpAuth::Login) => "LOGIN",
            Some(SmtpAuth::Xoauth2) => "XOAUTH2",
            None if offered.iter().any(|m| m == "PLAIN") => "PLAIN",
            None if offered.iter().any(|m| m == "LOGIN") => "LOGIN",
            None if offered.is_empty() => {
                return Err(TransportError::new(
                    TransportErrorKind::Auth,
                    format!(
                        "SMTP server {server} offers no AUTH, but username is set for transport \"{}\"; remove username, or check the port (submission is 587 or 465)",
                        self.transport
                    ),
                ));
            }
            None => {
                return Err(TransportError::new(
                    TransportErrorKind::Auth,
                    format!(
                        "SMTP server {server} offers AUTH {} only; mapispool speaks PLAIN, LOGIN and XOAUTH2 (set auth)",
                        offered.join(" ")
                    ),
                ));
            }
        };
        if !offered.is_empty() && !offered.iter().any(|m| m == mech) {
            return Err(TransportError::new(
                TransportErrorKind::Auth,
                format!(
                    "SMTP server {server} does not offer AUTH {mech} (it offers {}); change auth in the profile",
                    offered.join(" ")
                ),
            ));
        }
        let wire = |e: WireError| {
            let mut e = e.into_transport(&server);
            if e.kind == TransportErrorKind::Temporary {
                e.message = format!("during AUTH {mech}: {}", e.message);
            }
            e
        };
        let reply = match mech {
            "PLAIN" => {
                let token = base64(format!("\0{user}\0{}", secret.expose()).as_bytes());
                let r = session
                    .command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN ***", limit)
                    .await
                    .map_err(wire)?;
                if r.code == 334 {
                    session
                        .command(&token, "*** (AUTH PLAIN response)", limit)
                        .await
                        .map_err(wire)?
                } else {
                    r
                }
            }
            "LOGIN" => {
                let r = session
                    .command("AUTH LOGIN", "AUTH LOGIN", limit)
                    .await
                    .map_err(wire)?;
                if r.code != 334 {
                    r
                } else {
                    let r = session
                        .command(&base64(user.as_bytes()), "*** (AUTH LOGIN user)", limit)
                        .await
                        .map_err(wire)?;
                    if r.code != 334 {
                        r
                    } else {
                        session
                            .command(
                                &base64(secret.expose().as_bytes()),
                                "*** (AUTH LOGIN password)",
                                limit,
                            )
                            .await
                            .map_err(wire)?
                    }
                }
            }
            _ => {
                let token = base64(
                    format!("user={user}\x01auth=Bearer {}\x01\x01", secret.expose()).as_bytes(),
                );
                let r = session
                    .command(&format!("AUTH XOAUTH2 {token}"), "AUTH XOAUTH2 ***", limit)
                    .await
                    .map_err(wire)?;
                if r.code == 334 {
                    // The server's error details (base64 JSON); an empty line gets the verdict.
                    session
                        .command("", "(empty XOAUTH2 response)", limit)
                        .await
                        .map_err(wire)?
                } else {
                    r
                }
            }
        };
        if reply.is_positive() {
            return Ok(());
        }
        let kind = if reply.is_transient() {
            TransportErrorKind::Temporary
        } else {
            TransportErrorKind::Auth
        };
        Err(TransportError::new(
            kind,
            format!("SMTP server {server} refused the login of \"{user}\" (AUTH {mech}): {reply}"),
        ))
    }

    /// The MAIL FROM line and the message's wire form for this server, or `None` when the
    /// message cannot go to it at all (every recipient of `batch` then has its result). Each
    /// recipient that cannot go to it is settled in `results` and left out of the returned
    /// batch.
    fn plan(
        &self,
        envelope: &Envelope,
        batch: &[usize],
        message: &Outgoing<impl ChunkSource>,
        caps: &Capabilities,
        results: &mut [Option<RecipientResult>],
    ) -> Option<(WirePlan, Vec<usize>)> {
        let server = self.server();
        let fail_all = |results: &mut [Option<RecipientResult>], error: String, diag: i32| {
            for &i in batch {
                results[i] = Some(RecipientResult::Failed {
                    error: error.clone(),
                    reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
                    diag,
                });
            }
        };
        if let Some(max) = caps.size
            && max > 0
            && envelope.size > max
        {
            fail_all(
                results,
                format!(
                    "the message is {} bytes and SMTP server {server} takes at most {max} (SIZE)",
                    envelope.size
                ),
                MAPI_DIAG_CONTENT_TOO_LONG,
            );
            return None;
        }
        // UTF-8 in the envelope or the header needs SMTPUTF8 (RFC 6531). Without it: a
        // recipient with a UTF-8 address fails alone, a UTF-8 sender fails them all, and
        // the header is RFC 2047-encoded where it can be.
        let mut batch = batch.to_vec();
        let mut header = Cow::Borrowed(message.header.as_slice());
        let header_utf8 = !message.header.is_ascii();
        let needs_utf8 = !envelope.from.is_ascii()
            || header_utf8
            || batch
                .iter()
                .any(|&i| !envelope.recipients[i].address.is_ascii());
        if needs_utf8 && !caps.smtputf8 {
            let why = |what: &str| {
                format!(
                    "{what}, and SMTP server {server} does not offer SMTPUTF8 (RFC 6531) to take it"
                )
            };
            if !envelope.from.is_ascii() {
                fail_all(
                    results,
                    why(&format!(
                        "the envelope sender {} has UTF-8 in it",
                        envelope.from
                    )),
                    MAPI_DIAG_OR_NAME_UNRECOGNIZED,
                );
                return None;
            }
            batch.retain(|&i| {
                let address = &envelope.recipients[i].address;
                if address.is_ascii() {
                    return true;
                }
                results[i] = Some(RecipientResult::Failed {
                    error: why(&format!("the address {address} has UTF-8 in it")),
                    reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
                    diag: MAPI_DIAG_OR_NAME_UNRECOGNIZED,
                });
                false
            });
            if header_utf8 {
                match super::downgrade::encode_header_utf8(&message.header) {
                    Ok(encoded) => header = Cow::Owned(encoded),
                    Err(what) => {
                        fail_all(results, why(&what), MAPI_DIAG_MAIL_REFUSED);
                        return None;
                    }
                }
            }
        }
        let smtputf8 = needs_utf8 && caps.smtputf8;
        let mut mail = format!("MAIL FROM:<{}>", envelope.from);
        if caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", envelope.size));
        }
        // BODY=8BITMIME (RFC 6152) when advertised and the message may need it: 8-bit bytes in
        // what was read, or more body than that (it is not read twice to find out). Without
        // 8BITMIME the body's 8-bit parts are converted on the way (downgrade.rs).
        let (_, body_8bit) = message.eight_bit();
        if caps.eight_bit_mime && (body_8bit || smtputf8 || !message.is_whole()) {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        // DSN parameters only when asked for and the server takes them (RFC 3461 §4); without
        // DSN the server's default applies (a report on failure).
        if let Some(dsn) = envelope.dsn.as_ref().filter(|_| caps.dsn) {
            if let Some(ret) = &dsn.ret {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(envid) = &dsn.envid {
                mail.push_str(&format!(" ENVID={}", xtext(envid)));
            }
        }
        Some((
            WirePlan {
                mail,
                header: header.into_owned(),
                eight_bit_ok: caps.eight_bit_mime,
            },
            batch,
        ))
    }

    /// One MAIL/RCPT/DATA transaction on the open session for the recipients `batch` (or as
    /// many of them as the server takes at once), their results written into `results`.
    async fn transaction(
        &mut self,
        envelope: &Envelope,
        batch: &[usize],
        message: &mut Outgoing<impl ChunkSource>,
        reused: bool,
        hold: bool,
        results: &mut [Option<RecipientResult>],
    ) -> Result<Attempt, TransportError> {
        let server = self.server();
        let t = self.timeouts;
        let Some(caps) = self.session.as_ref().map(|s| s.caps.clone()) else {
            return Ok(Attempt::Retry("not connected".into()));
        };
        let done = |overflow: Vec<usize>, body_read: bool| {
            Ok(Attempt::Done {
                overflow,
                body_read,
            })
        };
        // A wire error before the body: on a reused connection, try again on a new one.
        let early = |e: WireError| {
            if reused {
                Ok(Attempt::Retry(e.describe(&server)))
            } else {
                Err(e.into_transport(&server))
            }
        };
        let Some((plan, batch)) = self.plan(envelope, batch, message, &caps, results) else {
            return done(Vec::new(), false);
        };
        if batch.is_empty() {
            return done(Vec::new(), false);
        }
        let pipelined = self.config.pipelining && caps.pipelining;
        let dsn = envelope.dsn.as_ref().filter(|_| caps.dsn);
        let Some(session) = self.session.as_mut() else {
            return Ok(Attempt::Retry("not connected".into()));
        };
        // As many as the server took last time, when it said how many by refusing more.
        let take = batch.len().min(session.rcpt_limit.unwrap_or(usize::MAX));
        let (now, later) = batch.split_at(take);

        // RSET only after a transaction that did not end cleanly. A clean one leaves the
        // session reset (RFC 5321 §4.1.1.4), and a dead or closing reused connection shows
        // itself on MAIL (a write or read error, or 421), which is retried on a new
        // connection like a failed RSET was: one round trip per message saved.
        if session.dirty {
            match session.command("RSET", "RSET", t.command).await {
                Ok(r) if r.is_positive() => session.dirty = false,
                Ok(r) if r.code == 421 && reused => {
                    return Ok(Attempt::Retry(format!("SMTP server {server}: {r}")));
                }
                Ok(r) => {
                    self.session = None;
                    let why = format!("SMTP server {server} refused RSET: {r}");
                    defer(results, &batch, &why);
                    return done(Vec::new(), false);
                }
                Err(e) => {
                    self.session = None;
                    return early(e);
                }
            }
        }
        session.dirty = true;

        // The envelope: one path for pipelined (a window of commands per write) and not
        // (a window of one); a wire error before the body is retried on a reused connection.
        // Behind an unconfirmed message its final reply comes first: it settles that message
        // before anything of this one can end the session.
        session.dot_pending = self.unconfirmed.is_some();
        let phase = envelope_phase(session, &plan.mail, envelope, now, dsn, pipelined, t).await;
        session.dot_pending = false;
        let dot = session.dot_reply.take();
        if let Some(u) = self.unconfirmed.take() {
            let dot = dot.unwrap_or_else(|| {
                Err(WireError::Broken(
                    "the connection broke before the reply to the end of the message".into(),
                ))
            });
            self.settle_unconfirmed(u, dot);
        }
        let Some(session) = self.session.as_mut() else {
            return Ok(Attempt::Retry("not connected".into()));
        };
        let replies = match phase {
            Ok(r) => r,
            Err(e) => {
                self.session = None;
                return early(e);
            }
        };
        if !replies.overflow.is_empty() && !replies.rcpts.is_empty() {
            // It took this many before it said "too many": the size of the next ones.
            let took = replies.rcpts.len();
            session.rcpt_limit = Some(session.rcpt_limit.map_or(took, |l| l.min(took)));
        }
        let mut overflow = replies.overflow.clone();
        overflow.extend_from_slice(later);
        // Until a next transaction settles them, they wait with the server's words.
        let wait = match &replies.too_many {
            Some(r) => server_said(&server, r),
            None => format!("SMTP server {server} took only {take} recipients at once"),
        };
        defer(results, &overflow, &wait);
        let closing = replies.closing;
        let Some(mail_reply) = replies.mail else {
            // 421 and no more: nothing of this transaction stands.
            self.session = None;
            let why = format!("SMTP server {server} closed the connection (421) before MAIL");
            defer(results, &batch, &why);
            return done(Vec::new(), false);
        };
        if mail_reply.code == 421 && reused {
            self.session = None;
            return Ok(Attempt::Retry(format!(
                "SMTP server {server}: {mail_reply}"
            )));
        }

        // MAIL refused: every recipient of the batch shares its fate (a new transaction would
        // be refused the same way).
        if !mail_reply.is_positive() {
            if replies.data.as_ref().is_some_and(|r| r.code == 354) {
                // Should not happen; end the data phase with an empty body (never half a body).
                let _ = session.write(b".\r\n", t.data_block).await;
                let _ = session.flush(t.data_block).await;
                let _ = session.reply("the empty body", t.data_end).await;
            }
            if mail_reply.code == 421 {
                self.session = None;
            }
            // Pipelined RCPT replies after a refused MAIL are 503s; MAIL's reply is the reason.
            set_all(results, &batch, &mail_result(&server, &mail_reply));
            return done(Vec::new(), false);
        }

        let mut accepted = Vec::new();
        for (i, r) in &replies.rcpts {
            results[*i] = rcpt_result(&server, r);
            if r.is_positive() {
                accepted.push(*i);
            }
        }
        // What a closing server leaves: every recipient not yet settled waits for a retry.
        let closed = |results: &mut [Option<RecipientResult>], also: &[usize], why: &str| {
            for list in [&replies.unsent[..], &overflow, also] {
                defer(results, list, why);
            }
        };
        let closing_why = format!("SMTP server {server} closed the connection (421)");

        if accepted.is_empty() {
            if replies.data.as_ref().is_some_and(|r| r.code == 354) {
                // Pipelined DATA was accepted although no recipient was: an empty body ends it
                // (the server has no one to deliver it to).
                let ended = async {
                    session.write(b".\r\n", t.data_block).await?;
                    session.flush(t.data_block).await?;
                    session.reply("the empty body", t.data_end).await
                }
                .await;
                if ended.is_err() {
                    self.session = None;
                }
            } else if !closing {
                match session.command("RSET", "RSET", t.command).await {
                    Ok(r) if r.is_positive() => session.dirty = false,
                    _ => self.session = None,
                }
            }
            if closing {
                self.session = None;
                closed(results, &[], &closing_why);
                return done(Vec::new(), false);
            }
            return done(overflow, false);
        }

        let data_reply = match replies.data {
            Some(r) => r,
            None if closing => {
                self.session = None;
                closed(results, &accepted, &format!("{closing_why} before DATA"));
                return done(Vec::new(), false);
            }
            None => match session.command("DATA", "DATA", t.data_init).await {
                Ok(r) => r,
                Err(e) => {
                    self.session = None;
                    return early(e);
                }
            },
        };
        if data_reply.code != 354 {
            if data_reply.code == 421 {
                self.session = None;
            }
            set_all(results, &accepted, &mail_result(&server, &data_reply));
            if data_reply.code == 421 {
                closed(results, &[], &closing_why);
                return done(Vec::new(), false);
            }
            return done(overflow, false);
        }

        // Held only when this transaction ends the message (nothing left over for another)
        // and the server stays: the reply to `.` then goes with the next message's envelope.
        let hold = hold && pipelined && overflow.is_empty() && !closing;
        let sent = send_body(session, &plan, message, t, hold).await;
        let final_reply = match sent {
            Ok(Some(r)) => r,
            Ok(None) => {
                session.messages += 1;
                session.dirty = false;
                return Ok(Attempt::Held { accepted });
            }
            Err(BodyError::Store(e)) => {
                // Never end a half-written body with ".": drop the connection instead, so the
                // server discards it.
                self.session = None;
                return Err(TransportError::new(
                    TransportErrorKind::Temporary,
                    format!("cannot read the message from the store: {e}"),
                ));
            }
            Err(BodyError::Wire(e)) => {
                // The server may or may not have the message; the accepted recipients wait for a
                // retry (a possible duplicate, never a loss). Refused ones keep their result.
                self.session = None;
                let why = format!("{}; will try again", e.describe(&server));
                closed(results, &accepted, &why);
                return done(Vec::new(), true);
            }
        };
        session.messages += 1;
        session.dirty = false;
        if final_reply.is_positive() {
            self.last_reply = Some(final_reply.to_string());
        } else {
            set_all(results, &accepted, &mail_result(&server, &final_reply));
        }
        if final_reply.code == 421 || closing {
            self.session = None;
            closed(results, &[], &closing_why);
            return done(Vec::new(), true);
        }
        done(overflow, true)
    }
}

/// MAIL, the RCPTs of `batch`, and (pipelined) DATA, with every reply read in order. Without
/// pipelining each command waits for its reply; with it, up to [`PIPELINE_WINDOW`] go in one
/// write. The phase stops sending at a refused MAIL, at a 421, and at the first "too many
/// recipients" (the rest become overflow, for the next transaction).
async fn envelope_phase(
    session: &mut Session,
    mail: &str,
    envelope: &Envelope,
    batch: &[usize],
    dsn: Option<&super::Dsn>,
    pipelined: bool,
    t: SmtpTimeouts,
) -> Result<EnvelopeReplies, WireError> {
    let mut queue = Vec::with_capacity(batch.len() + 2);
    queue.push(Cmd::Mail);
    queue.extend(batch.iter().map(|&i| Cmd::Rcpt(i)));
    if pipelined {
        queue.push(Cmd::Data);
    }
    let window = if pipelined { PIPELINE_WINDOW } else { 1 };
    let mut out = EnvelopeReplies {
        mail: None,
        rcpts: Vec::with_capacity(batch.len()),
        overflow: Vec::new(),
        unsent: Vec::new(),
        too_many: None,
        data: None,
        closing: false,
    };
    let mut next = 0;
    let mut stop = false;
    let mut too_many = false;
    while next < queue.len() && !stop {
        let group = &queue[next..(next + window).min(queue.len())];
        let mut text = String::with_capacity(64 * group.len());
        for cmd in group {
            match cmd {
                Cmd::Mail => text.push_str(mail),
                Cmd::Rcpt(i) => text.push_str(&rcpt_line(&envelope.recipients[*i].address, dsn)),
                Cmd::Data => text.push_str("DATA"),
            }
            text.push_str("\r\n");
        }
        tracing::trace!(commands = group.len(), "smtp C: envelope");
        let limit = if next == 0 { t.mail } else { t.rcpt };
        let written = async {
            session.write(text.as_bytes(), limit).await?;
            session.flush(limit).await
        }
        .await;
        // Behind an unconfirmed message: its final reply precedes this group's replies.
        if std::mem::take(&mut session.dot_pending) {
            let reply = match &written {
                Ok(()) => {
                    session
                        .reply("the end of the message (.)", t.data_end)
                        .await
                }
                Err(e) => Err(e.clone()),
            };
            let broken = reply.as_ref().err().cloned();
            session.dot_reply = Some(reply);
            if let Some(e) = broken {
                return Err(e);
            }
        }
        written?;
        next += group.len();
        // RFC 2920: read every reply of the group, in order, whatever each says.
        for cmd in group {
            let (what, limit) = match cmd {
                Cmd::Mail => ("MAIL FROM", t.mail),
                Cmd::Rcpt(_) => ("RCPT TO", t.rcpt),
                Cmd::Data => ("DATA", t.data_init),
            };
            let r = match session.reply(what, limit).await {
                Ok(r) => r,
                Err(e) if out.closing => {
                    // The server said 421 and hung up: the replies it gave stand.
                    tracing::debug!(error = ?what, "no more replies after 421: {}", e.describe(""));
                    break;
                }
                Err(e) => return Err(e),
            };
            out.closing |= r.code == 421;
            match cmd {
                Cmd::Mail => {
                    stop |= !r.is_positive();
                    out.mail = Some(r);
                }
                Cmd::Rcpt(i) if too_many || (!out.closing && is_too_many(&r)) => {
                    too_many = true;
                    out.overflow.push(*i);
                    out.too_many.get_or_insert(r);
                }
                Cmd::Rcpt(i) => out.rcpts.push((*i, r)),
                Cmd::Data => out.data = Some(r),
            }
        }
        stop |= out.closing || too_many;
    }
    for cmd in &queue[next..] {
        if let Cmd::Rcpt(i) = cmd {
            if too_many {
                out.overflow.push(*i);
            } else {
                out.unsent.push(*i);
            }
        }
    }
    Ok(out)
}

/// RFC 5321 §4.5.3.1.10: "452 too many recipients" (`4.5.3`, RFC 3463) asks for the rest in a
/// new transaction. 452 `4.3.1` (no room for the message) is not that.
fn is_too_many(reply: &Reply) -> bool {
    reply.code == 452
        && reply.lines.first().is_some_and(|l| {
            l.starts_with("4.5.3") || l.to_ascii_lowercase().contains("too many recipients")
        })
}

/// The body: the planned header section, then the body chunks, converted where the plan says,
/// encoded into one buffer per chunk and written through the 64 KiB BufWriter; then `.` and its
/// reply.
async fn send_body(
    session: &mut Session,
    plan: &WirePlan,
    message: &mut Outgoing<impl ChunkSource>,
    t: SmtpTimeouts,
    hold: bool,
) -> Result<Option<Reply>, BodyError> {
    // A whole message the converter would give back unchanged skips it (and its copies).
    let convert = !(message.is_whole()
        && super::downgrade::passes_unchanged(
            &[&plan.header, message.body_start()],
            plan.eight_bit_ok,
        ));
    let mut wire = BodyEncoder::new(plan.eight_bit_ok, convert);
    let start = message.body_start().len();
    // Room for the dot-stuffing and CRLFs the encoder adds (it reserves as much per piece).
    let room = |n: usize| n + n / 32 + 8;
    let mut out = Vec::with_capacity(room(plan.header.len()) + room(start) + 8);
    wire.feed(&plan.header, &mut out);
    // The body start from where it was read, not as a copy; the chunks after it below.
    wire.feed(message.take_body_start(), &mut out);
    // A whole message has nothing more to read; a longer one is read chunk by chunk.
    if !message.is_whole() {
        loop {
            // The next chunk comes from the store while this one goes out: a large body waits
            // for neither the disk nor the network alone.
            let (written, chunk) =
                tokio::join!(session.write(&out, t.data_block), message.next_chunk());
            written.map_err(BodyError::Wire)?;
            let chunk = chunk.map_err(BodyError::Store)?;
            out.clear();
            match chunk {
                Some(chunk) => wire.feed(&chunk, &mut out),
                None => break,
            }
        }
    }
    // The end of the data goes out in the same write as the last of the body (a whole body
    // over the BufWriter's 64 KiB bypasses it, and `.` would be a write of its own).
    wire.finish(&mut out);
    // Held only when the end of the message stays in the write buffer, where the next
    // envelope joins it in one write: that write and a read are what holding saves. A larger
    // end goes past the buffer in a write of its own anyway, and holding its reply only saved a
    // read while it measured slower in wall time (100 KB: bench/notes/uploadperf2.md).
    let hold = hold && session.io.get_ref().buffer().len() + out.len() <= WRITE_BUFFER;
    session
        .write(&out, t.data_block)
        .await
        .map_err(BodyError::Wire)?;
    if hold {
        // Left in the buffer: the next message's envelope joins it (or `confirm` flushes it).
        return Ok(None);
    }
    session.flush(t.data_block).await.map_err(BodyError::Wire)?;
    session
        .reply("the end of the message (.)", t.data_end)
        .await
        .map(Some)
        .map_err(BodyError::Wire)
}

/// The message as DATA carries it: 8-bit parts converted (when planned), then dot-stuffed
/// with CRLF line endings.
struct BodyEncoder {
    downgrade: Option<super::downgrade::Downgrade>,
    encoder: DataEncoder,
    scratch: Vec<u8>,
}

impl BodyEncoder {
    /// `eight_bit_ok`: the server takes 8-bit (only NUL and over-long lines are converted).
    /// `convert`: false for a message known to have nothing to convert
    /// ([`super::downgrade::passes_unchanged`]).
    fn new(eight_bit_ok: bool, convert: bool) -> BodyEncoder {
        BodyEncoder {
            downgrade: convert.then(|| super::downgrade::Downgrade::new(eight_bit_ok)),
            encoder: DataEncoder::default(),
            scratch: Vec::new(),
        }
    }
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match &mut self.downgrade {
            Some(d) => {
                self.scratch.clear();
                d.push(bytes, &mut self.scratch);
                self.encoder.encode(&self.scratch, out);
            }
            None => self.encoder.encode(bytes, out),
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(d) = &mut self.downgrade {
            self.scratch.clear();
            d.finish(&mut self.scratch);
            self.encoder.encode(&self.scratch, out);
        }
        self.encoder.finish(out);
    }
}

enum BodyError {
    Wire(WireError),
    Store(mapi::MapiError),
}

/// `RCPT TO:<addr>`, with `NOTIFY=` and `ORCPT=rfc822;addr` when a DSN is asked for (and the
/// server offers DSN). ORCPT is left out for a non-ASCII address, which needs RFC 6533's
/// `utf-8` type.
fn rcpt_line(address: &str, dsn: Option<&super::Dsn>) -> String {
    let mut line = format!("RCPT TO:<{address}>");
    if let Some(dsn) = dsn {
        if let Some(notify) = &dsn.notify {
            line.push_str(&format!(" NOTIFY={notify}"));
        }
        if address.is_ascii() {
            line.push_str(&format!(" ORCPT=rfc822;{}", xtext(address)));
        }
    }
    line
}

/// RFC 3461 §4 xtext: `+` and `=`, controls, space and non-ASCII as `+XX`.
fn xtext(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

fn server_said(server: &str, reply: &Reply) -> String {
    format!("SMTP server {server} said: {reply}")
}

/// A RCPT reply as the recipient's result (a 2xx is provisionally `Delivered`).
fn rcpt_result(server: &str, reply: &Reply) -> Option<RecipientResult> {
    Some(if reply.is_positive() {
        RecipientResult::Delivered
    } else if reply.is_permanent() {
        RecipientResult::Failed {
            error: server_said(server, reply),
            reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
            diag: if matches!(reply.code, 550 | 551 | 553) {
                MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN
            } else {
                MAPI_DIAG_MAIL_REFUSED
            },
        }
    } else {
        RecipientResult::Deferred {
            error: server_said(server, reply),
        }
    })
}

/// A MAIL, DATA or final-dot reply that is not a success, for every recipient it covers.
fn mail_result(server: &str, reply: &Reply) -> RecipientResult {
    if reply.is_permanent() {
        RecipientResult::Failed {
            error: server_said(server, reply),
            reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
            diag: if reply.code == 552 {
                MAPI_DIAG_CONTENT_TOO_LONG
            } else {
                MAPI_DIAG_MAIL_REFUSED
            },
        }
    } else {
        RecipientResult::Deferred {
            error: server_said(server, reply),
        }
    }
}

/// Recipients `which` wait for a retry, for `why`.
fn defer(results: &mut [Option<RecipientResult>], which: &[usize], why: &str) {
    set_all(
        results,
        which,
        &RecipientResult::Deferred {
            error: why.to_string(),
        },
    );
}

fn set_all(results: &mut [Option<RecipientResult>], which: &[usize], result: &RecipientResult) {
    for &i in which {
        results[i] = Some(result.clone());
    }
}

/// Every recipient's result; one never settled (cannot happen) waits for a retry.
fn settle(results: Vec<Option<RecipientResult>>) -> Vec<RecipientResult> {
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| RecipientResult::Deferred {
                error: "no reply for this recipient".to_string(),
            })
        })
        .collect()
}

fn all_failed(n: usize, error: &str, diag: i32) -> Vec<RecipientResult> {
    vec![
        RecipientResult::Failed {
            error: error.to_string(),
            reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
            diag,
        };
        n
    ]
}

/// EHLO, falling back to HELO (no extensions) for a server that does not know EHLO.
async fn ehlo(
    session: &mut Session,
    name: &str,
    limit: Duration,
    server: &str,
) -> Result<Capabilities, TransportError> {
    let reply = session
        .command(&format!("EHLO {name}"), "EHLO", limit)
        .await
        .map_err(|e| e.into_transport(server))?;
    if reply.is_positive() {
        return Ok(Capabilities::from_ehlo(&reply));
    }
    if reply.is_permanent() {
        let helo = session
            .command(&format!("HELO {name}"), "HELO", limit)
            .await
            .map_err(|e| e.into_transport(server))?;
        if helo.is_positive() {
            return Ok(Capabilities::default());
        }
        return Err(TransportError::new(
            TransportErrorKind::Permanent,
            format!("SMTP server {server} refused EHLO and HELO: {reply}; {helo}"),
        ));
    }
    Err(TransportError::new(
        TransportErrorKind::Temporary,
        format!("SMTP server {server} refused EHLO: {reply}"),
    ))
}

/// The name we greet with: our address as a literal (`[192.0.2.1]`), always valid syntax.
fn helo_name(local: Option<SocketAddr>) -> String {
    match local {
        Some(SocketAddr::V4(a)) => format!("[{}]", a.ip()),
        Some(SocketAddr::V6(a)) => format!("[IPv6:{}]", a.ip()),
        None => "[127.0.0.1]".to_string(),
    }
}

async fn with_limit<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    tokio::time::timeout(limit, fut).await.map_err(|_| {
        TransportError::new(
            TransportErrorKind::Timeout,
            format!(
                "{what} took longer than {}",
                humantime::format_duration(limit)
            ),
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::EnvelopeRecipient;
    use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;

    /// A minimal server for the part after TLS: EHLO with AUTH PLAIN, AUTH, a transaction.
    async fn serve_after_tls<S: AsyncRead + AsyncWrite + Unpin>(s: S) -> Vec<String> {
        let mut io = BufReader::new(s);
        let mut seen = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                return seen;
            }
            let cmd = line.trim_end().to_string();
            let reply: &[u8] = if cmd.starts_with("EHLO") {
                b"250-tls.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"
            } else if cmd.starts_with("AUTH PLAIN") {
                b"235 2.7.0 ok\r\n"
            } else if cmd == "DATA" {
                let _ = io.write_all(b"354 go\r\n").await;
                let _ = io.flush().await;
                let mut body = Vec::new();
                while io.read_until(b'\n', &mut body).await.unwrap_or(0) > 0 {
                    if body.ends_with(b"\r\n.\r\n") {
                        break;
                    }
                }
                b"250 2.0.0 queued\r\n"
            } else if cmd == "QUIT" {
                let _ = io.write_all(b"221 bye\r\n").await;
                let _ = io.flush().await;
                seen.push(cmd);
                return seen;
            } else {
                b"250 ok\r\n"
            };
            seen.push(cmd);
            let _ = io.write_all(reply).await;
            let _ = io.flush().await;
        }
    }

    async fn tls_server(implicit: bool) -> (u16, String, tokio::task::JoinHandle<Vec<String>>) {
        let (ca, server) = crate::tls::tests::test_server();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return Vec::new();
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(server);
            if implicit {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return Vec::new();
                };
                let _ = tls.write_all(b"220 tls.test ESMTP\r\n").await;
                let _ = tls.flush().await;
                return serve_after_tls(tls).await;
            }
            let _ = tcp.write_all(b"220 plain.test ESMTP\r\n").await;
            let mut io = BufReader::new(tcp);
            let mut line = String::new();
            let mut before = Vec::new();
            loop {
                line.clear();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return before;
                }
                let cmd = line.trim_end().to_string();
                before.push(cmd.clone());
                if cmd == "STARTTLS" {
                    let _ = io.write_all(b"220 2.0.0 ready\r\n").await;
                    break;
                }
                let _ = io
                    .write_all(b"250-plain.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n")
                    .await;
            }
            let Ok(tls) = acceptor.accept(io.into_inner()).await else {
                return before;
            };
            before.extend(serve_after_tls(tls).await);
            before
        });
        (port, ca, task)
    }

    fn config(port: u16, security: Security, ca: &std::path::Path) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security,
            username: Some("alice".into()),
            credential: Some(crate::profile::Credential::Command("printf s3cret".into())),
            auth: None,
            ca_file: Some(ca.to_path_buf()),
            insecure_skip_verify: false,
            allow_plaintext_auth: false,
            max_messages_per_connection: None,
            pipelining: true,
            connections: 1,
        }
    }

    #[tokio::test]
    async fn starttls_and_implicit_tls_authenticate_only_under_tls() {
        for (security, implicit) in [(Security::Starttls, false), (Security::Tls, true)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (port, ca, task) = tls_server(implicit).await;
            let ca_path = dir.path().join("ca.pem");
            std::fs::write(&ca_path, ca).expect("ca");
            let mut t = SmtpOutbound::new(&config(port, security, &ca_path), "t", false)
                .with_timeouts(SmtpTimeouts::all(Duration::from_secs(5)));
            t.connect().await.expect("connect");
            let envelope = Envelope {
                from: "alice@example.com".into(),
                recipients: vec![EnvelopeRecipient {
                    rowid: 1,
                    address: "bob@example.org".into(),
                }],
                size: 10,
                dsn: None,
            };
            let r = t
                .send(&envelope, &b"Subject: x\r\n\r\nhi\r\n"[..])
                .await
                .expect("send");
            assert_eq!(r, vec![RecipientResult::Delivered]);
            t.close().await;
            let seen = task.await.expect("server");
            let auth_at = seen.iter().position(|c| c.starts_with("AUTH"));
            if !implicit {
                let tls_at = seen.iter().position(|c| c == "STARTTLS");
                assert!(tls_at.is_some() && auth_at > tls_at, "{seen:?}");
            }
            assert!(auth_at.is_some(), "{seen:?}");
            assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
        }
    }
}

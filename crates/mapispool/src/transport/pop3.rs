//! The POP3 inbound transport (`kind = "pop3"`, RFC 1939, RFC 2449 CAPA, RFC 2595 STLS): our own
//! small client on tokio, with TLS from `crate::tls`. Framing is in `codec.rs`; this file is
//! the session.
//!
//! A download: CAPA, (STLS), USER/PASS or APOP, UIDL and LIST (pipelined when the server offers
//! PIPELINING, RFC 2449), one question to the store for which UIDLs (the `server_id`s) it has,
//! then the rest in batches: the batch's RETRs (sent at once with PIPELINING), each message
//! unstuffed as it is read and handed to the store in parts while the next ones arrive (one
//! larger than 1 MiB (`WHOLE`) streams straight into the store on its own); one fsync for the
//! batch, and only then its DELEs; QUIT at the end commits the deletions. A connection that
//! drops before QUIT deletes nothing; the next download finds the stored messages by UIDL,
//! skips them and deletes them then. With `leave_on_server`
//! messages stay, and with `leave_days` they are deleted once that many days passed since this
//! transport first downloaded them (the time is kept in the store's sync state).
//!
//! A server that gives several messages one UIDL (RFC 1939 forbids it): those are read whole
//! and stored under `identity` (UIDL, size, MD5, occurrence), so only the message the store
//! holds is ever deleted. A message over `max_message_size` (by LIST, or by what arrives) is
//! left on the server and named; each read and write waits at most `[spooler] timeout`.

pub mod codec;

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use self::codec::{DotReader, MAX_LINE, MAX_LISTING, Reply};
use super::net::{CONNECT_TIMEOUT, Inactivity, MailStream, password, start_tls, tcp_connect};
use super::{
    Cut, DownloadSummary, Downloaded, InboundSink, TransportError, TransportErrorKind,
    download_batches,
};
use crate::credential::Secret;
use crate::message::{HeaderSummary, MAX_HEADER_BYTES, header_block};
use crate::profile::{Pop3Config, Security};

/// The sync-state key of the first-seen times (`leave_days`): a JSON object UIDL → Unix seconds.
const FIRST_SEEN_KEY: &str = "pop3.first_seen";

/// The sync-state key of the UIDLs whose message turned out larger than `max_message_size`
/// while it was read (the LIST size was lower): a JSON list; later downloads leave them on
/// the server without reading them again.
const OVERSIZE_KEY: &str = "pop3.oversize";

/// The sync-state key of what each stored message under a plain UIDL looks like: a JSON object
/// UIDL → `SIZE SHA256` (or `SIZE MD5`, as recorded before), for the messages still on the
/// server. When the server later gives that UIDL to a second message too, the one already
/// stored is recognised by its content.
const DIGESTS_KEY: &str = "pop3.digests";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The POP3 inbound side of one transport.
#[derive(Debug)]
pub struct Pop3Inbound {
    config: Pop3Config,
    transport: String,
    username: String,
    allow_prompt: bool,
    /// The limit for each reply (and for connecting): the spooler's `timeout` when it is below
    /// [`CONNECT_TIMEOUT`].
    step_limit: Duration,
    /// How long one read or write may wait for the server: the spooler's `timeout`.
    idle_limit: Duration,
    /// The largest message taken (`[spooler] max_message_size`).
    max_size: u64,
    conn: Option<Connection>,
}

#[derive(Debug)]
struct Connection {
    reader: BufReader<Inactivity<MailStream>>,
    /// `host:port`, for messages.
    peer: String,
    /// How long a reply (or a listing) may take.
    limit: Duration,
    /// How long one read or write may wait (the stream's inactivity limit).
    idle: Duration,
    /// The last command sent (its verb: `PASS`, never the secret), which a stall is named by.
    last: String,
    /// The server advertised PIPELINING (RFC 2449): commands may be sent without waiting.
    pipelining: bool,
    /// The largest message taken (`max_message_size`).
    max_size: u64,
    /// The UIDL of the message being read, to name the one that turned out too large.
    reading: Option<String>,
    /// How often each identity of a message with a repeated UIDL was seen in this session
    /// (see [`identity`]).
    occurrences: std::collections::HashMap<String, usize>,
    /// UIDL → `SIZE MD5` of the messages stored under their plain UIDL (see [`DIGESTS_KEY`]).
    digests: BTreeMap<String, String>,
    /// The repeated UIDLs whose message stored under the plain UIDL was found in this session.
    claimed: std::collections::HashSet<String>,
}

/// What became of one message of a batch [`Connection::retrieve_whole`] asked for.
#[derive(Debug)]
enum Retrieved {
    /// Read whole into memory and handed to the store in a part of the batch.
    Whole,
    /// Larger than the listing said, so streamed into the store on its own: whether it was
    /// stored (`false`: the store had it).
    Streamed(bool),
    /// The server answered `-ERR`, in its words.
    Refused(String),
}

/// Messages read whole, handed to the store together: each with its place in the batch.
type Part = Vec<(usize, Downloaded)>;

/// How much the store takes at a time while the rest of a batch is read.
const PART_BYTES: usize = 1024 * 1024;
const PART_COUNT: usize = 64;

/// Messages up to this size (by LIST) are read whole into memory and stored a batch at a time;
/// a larger one streams into the store on its own, so memory stays bounded.
const WHOLE: u64 = 1024 * 1024;

/// The messages in batches (see [`download_batches`]); one larger than [`WHOLE`] is a batch of
/// its own.
fn batches(listed: &[Listed]) -> Vec<&[Listed]> {
    download_batches(listed, |m| {
        if m.repeated && m.size > WHOLE {
            // Read whole (it has to be, to tell it apart), on its own.
            Cut::Ends(WHOLE)
        } else if m.size > WHOLE {
            Cut::Alone
        } else {
            Cut::Weighs(m.size)
        }
    })
}

/// Message numbers for an error message: `1, 2, 3`.
fn numbers(msgs: &[&Listed]) -> String {
    msgs.iter()
        .map(|m| m.number.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One message on the server: its number in this session, UIDL and size.
#[derive(Debug, Clone)]
struct Listed {
    number: u32,
    uidl: String,
    size: u64,
    /// Another message in the listing has the same UIDL (RFC 1939 forbids it; servers that
    /// derive UIDLs from content do it): the UIDL alone does not name this message.
    repeated: bool,
}

/// The store's id of a message: its UIDL when that is unique in the listing. A message whose
/// UIDL is repeated is known by its UIDL, size, the MD5 of its content and, for byte-identical
/// ones, which of them it is in message-number order: `UIDL SIZE MD5 K` (a UIDL has no
/// spaces, so this never equals a plain UIDL). Only a message stored under that identity is
/// ever deleted.
fn identity(
    uidl: &str,
    content: &str,
    occurrences: &mut std::collections::HashMap<String, usize>,
) -> String {
    let key = format!("{uidl} {content}");
    let k = occurrences.entry(key.clone()).or_insert(0);
    let id = format!("{key} {k}");
    *k += 1;
    id
}

/// What a message's content looks like in an identity (see [`identity`]): `SIZE MD5`.
fn content_key(len: u64, md5: Md5) -> String {
    hex_key(len, &md5.finalize())
}

/// What the content of a message stored under its plain UIDL is recorded as (see
/// [`DIGESTS_KEY`]): `SIZE SHA256`. SHA-256 rather than MD5 because every message downloaded
/// is hashed: SHA-256 runs on the CPU's SHA instructions, about twice MD5's speed here (MD5
/// was a quarter of a POP3 download's CPU). Records written before, `SIZE MD5`, still count:
/// [`same_content`] compares in the record's own form.
fn recorded_key(len: u64, sha: Sha256) -> String {
    hex_key(len, &sha.finalize())
}

fn hex_key(len: u64, digest: &[u8]) -> String {
    use std::fmt::Write;
    let mut key = format!("{len} ");
    for b in digest {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// Whether `body` is the message `recorded` describes: a [`recorded_key`], or an older
/// record's [`content_key`] (`md5_key`, already computed for the identity).
fn same_content(recorded: &str, body: &[u8], md5_key: &str) -> bool {
    let sha_record = recorded
        .split_once(' ')
        .is_some_and(|(_, digest)| digest.len() == 64);
    if sha_record {
        recorded == recorded_key(body.len() as u64, Sha256::new_with_prefix(body))
    } else {
        recorded == md5_key
    }
}

/// A reader that keeps the SHA-256 and length of what passes, for [`recorded_key`].
struct Hashing<R> {
    inner: R,
    sha: Sha256,
    len: u64,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Hashing<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        this.sha.update(new);
        this.len += new.len() as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

impl Pop3Inbound {
    /// `transport` is the profile's transport name (for credentials and messages); `address`
    /// is the login when the profile gives no `username`.
    pub fn new(
        config: &Pop3Config,
        transport: &str,
        address: &str,
        allow_prompt: bool,
    ) -> Pop3Inbound {
        Pop3Inbound {
            username: config
                .username
                .clone()
                .unwrap_or_else(|| address.to_string()),
            config: config.clone(),
            transport: transport.to_string(),
            allow_prompt,
            step_limit: CONNECT_TIMEOUT,
            idle_limit: CONNECT_TIMEOUT,
            max_size: crate::profile::SpoolerConfig::DEFAULT_MAX_MESSAGE_SIZE,
            conn: None,
        }
    }

    /// Bounds connecting and each reply by `limit` too (the spooler's `[spooler] timeout`): a
    /// server that stalls is reported as a timeout naming the command it did not answer.
    pub fn set_timeout(&mut self, limit: Duration) {
        self.step_limit = limit.min(CONNECT_TIMEOUT);
        self.idle_limit = limit;
    }

    /// The largest message this transport takes; a larger one stays on the server and is
    /// named in the summary.
    pub fn set_max_message_size(&mut self, max: u64) {
        self.max_size = max;
    }

    /// Connects, secures the connection as the profile says, and logs in.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        let host = self.config.host.clone();
        let port = self.config.port;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .map_err(|_| {
                TransportError::new(
                    TransportErrorKind::Timeout,
                    format!(
                        "connecting to the POP3 server {host}:{port} and logging in took longer than {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )
            })??;
        self.conn = Some(conn);
        Ok(())
    }

    async fn open(&self) -> Result<Connection, TransportError> {
        let c = &self.config;
        let peer = format!("{}:{}", c.host, c.port);
        let limit = self.step_limit;
        let tcp = tcp_connect(&c.host, c.port, limit).await?;
        let stream = match c.security {
            Security::Tls => tokio::time::timeout(
                limit,
                start_tls(tcp, &c.host, c.ca_file.as_deref(), c.insecure_skip_verify),
            )
            .await
            .map_err(|_| stalled(&peer, "the TLS handshake", limit))??,
            Security::Starttls | Security::None => MailStream::Plain(tcp),
        };
        let mut encrypted = matches!(stream, MailStream::Tls(_));
        let mut conn = Connection {
            reader: BufReader::with_capacity(64 * 1024, Inactivity::new(stream, self.idle_limit)),
            peer,
            limit,
            idle: self.idle_limit,
            last: String::new(),
            pipelining: false,
            max_size: self.max_size,
            reading: None,
            occurrences: Default::default(),
            digests: BTreeMap::new(),
            claimed: Default::default(),
        };
        let greeting = match conn.reply().await? {
            Reply::Ok(text) => text,
            Reply::Err(text) => {
                return Err(TransportError::new(
                    TransportErrorKind::Connect,
                    format!("the POP3 server {} turned us away: {text}", conn.peer),
                ));
            }
        };
        let mut caps = conn.capa().await?;
        if c.security == Security::Starttls {
            if !caps.iter().any(|cap| cap.eq_ignore_ascii_case("STLS")) && !caps.is_empty() {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    format!(
                        "the POP3 server {} does not offer STLS; use security = \"tls\" (port 995) or, on a trusted network only, \"none\"",
                        conn.peer
                    ),
                ));
            }
            conn.send("STLS").await?;
            if let Reply::Err(text) = conn.reply().await? {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    format!("the POP3 server {} refused STLS: {text}", conn.peer),
                ));
            }
            // Anything the server sent after its STLS answer would be unprotected: refuse it.
            if !conn.reader.buffer().is_empty() {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    format!(
                        "the POP3 server {} sent data before the TLS handshake; refusing it",
                        conn.peer
                    ),
                ));
            }
            let MailStream::Plain(tcp) = conn.reader.into_inner().into_inner() else {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    "STLS on a connection that already has TLS",
                ));
            };
            let tls = tokio::time::timeout(
                limit,
                start_tls(tcp, &c.host, c.ca_file.as_deref(), c.insecure_skip_verify),
            )
            .await
            .map_err(|_| stalled(&conn.peer, "the TLS handshake", limit))??;
            encrypted = matches!(tls, MailStream::Tls(_));
            conn = Connection {
                reader: BufReader::with_capacity(64 * 1024, Inactivity::new(tls, self.idle_limit)),
                peer: conn.peer,
                limit,
                idle: self.idle_limit,
                last: String::new(),
                pipelining: false,
                max_size: self.max_size,
                reading: None,
                occurrences: Default::default(),
                digests: BTreeMap::new(),
                claimed: Default::default(),
            };
            caps = conn.capa().await?;
        }
        conn.pipelining = caps
            .iter()
            .any(|cap| cap.eq_ignore_ascii_case("PIPELINING"));
        // The profile refuses this when it loads; a configuration built in code is refused
        // here too, before USER/PASS (or APOP) goes out.
        if !encrypted && !c.allow_plaintext_auth {
            return Err(super::plaintext_auth_refused(&self.transport, &conn.peer));
        }
        self.login(&mut conn, &greeting).await?;
        Ok(conn)
    }

    async fn login(&self, conn: &mut Connection, greeting: &str) -> Result<(), TransportError> {
        let secret = password(
            self.config.credential.as_ref(),
            &self.transport,
            self.allow_prompt,
            self.idle_limit,
        )
        .await?;
        let user = &self.username;
        if user.is_empty() || user.contains(['\r', '\n', ' ']) {
            return Err(TransportError::new(
                TransportErrorKind::Permanent,
                format!(
                    "transport \"{}\": the POP3 username {user:?} is empty or has spaces or line breaks",
                    self.transport
                ),
            ));
        }
        if secret.expose().contains(['\r', '\n']) {
            return Err(TransportError::new(
                TransportErrorKind::Auth,
                format!(
                    "transport \"{}\": the password has a line break, which POP3 cannot send",
                    self.transport
                ),
            ));
        }
        let peer = conn.peer.clone();
        let refused = |text: String| {
            TransportError::new(
                TransportErrorKind::Auth,
                format!("the POP3 server {peer} refused the login of \"{user}\": {text}"),
            )
        };
        if self.config.apop {
            let Some(stamp) = apop_timestamp(greeting) else {
                return Err(TransportError::new(
                    TransportErrorKind::Auth,
                    format!(
                        "the POP3 server {} does not offer APOP (no <timestamp> in its greeting); set apop = false to use USER/PASS",
                        conn.peer
                    ),
                ));
            };
            let digest = apop_digest(stamp, &secret);
            conn.send(&format!("APOP {user} {digest}")).await?;
            if let Reply::Err(text) = conn.reply().await? {
                return Err(refused(text));
            }
            return Ok(());
        }
        conn.send(&format!("USER {user}")).await?;
        if let Reply::Err(text) = conn.reply().await? {
            return Err(refused(text));
        }
        conn.send_secret("PASS ", &secret).await?;
        if let Reply::Err(text) = conn.reply().await? {
            return Err(refused(text));
        }
        Ok(())
    }

    /// Downloads every message the store does not have, deletes what the profile says, and
    /// ends the session with QUIT (which commits the deletions).
    ///
    /// In batches: the batch's messages are retrieved (all RETRs sent at once when the server
    /// advertises PIPELINING, RFC 2449) and handed to the store in parts as they are read, made
    /// durable with one fsync, and only then marked with DELE. A message larger than
    /// 1 MiB (`WHOLE`) is a batch of its own and streams into the store as it is read.
    pub async fn download(
        &mut self,
        sink: &impl InboundSink,
    ) -> Result<DownloadSummary, TransportError> {
        let mut conn = self.conn.take().ok_or_else(|| {
            TransportError::new(TransportErrorKind::Temporary, "POP3: not connected")
        })?;
        let result = self.download_on(&mut conn, sink).await;
        if result.is_err() && !conn.digests.is_empty() {
            // What was stored before the failure keeps its content on record too (see
            // DIGESTS_KEY); on success each batch recorded it already.
            let json = serde_json::to_string(&conn.digests).unwrap_or_default();
            sink.set_state(DIGESTS_KEY, &json)
                .await
                .map_err(store_failure)?;
            sink.sync().await.map_err(store_failure)?;
        }
        match result {
            Err(e) if e.kind == TransportErrorKind::TooLarge => {
                // Larger than its LIST size said and than max_message_size: remembered, so
                // later downloads leave it on the server and go on with the rest.
                if let Some(uidl) = conn.reading.take() {
                    let mut oversize = load_oversize(sink).await?;
                    if !oversize.contains(&uidl) {
                        oversize.push(uidl);
                    }
                    let json = serde_json::to_string(&oversize).unwrap_or_default();
                    sink.set_state(OVERSIZE_KEY, &json)
                        .await
                        .map_err(store_failure)?;
                    sink.sync().await.map_err(store_failure)?;
                }
                Err(e)
            }
            other => other,
        }
    }

    async fn download_on(
        &mut self,
        conn: &mut Connection,
        sink: &impl InboundSink,
    ) -> Result<DownloadSummary, TransportError> {
        let mut summary = DownloadSummary::default();
        let mut listed = conn.list_messages().await?;
        let repeated: Vec<&str> = {
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &listed {
                *count.entry(&m.uidl).or_insert(0) += 1;
            }
            count
                .into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|(u, _)| u)
                .collect()
        };
        if !repeated.is_empty() {
            // The server breaks RFC 1939 (a UIDL names one message): said, and handled.
            summary.refused.push(format!(
                "the POP3 server {} gives several messages the same UIDL ({}); they are told apart by size and content",
                conn.peer,
                repeated.join(", ")
            ));
            let repeated: std::collections::HashSet<String> =
                repeated.into_iter().map(str::to_string).collect();
            for m in &mut listed {
                m.repeated = repeated.contains(&m.uidl);
            }
        }
        // Larger than max_message_size by LIST, or found so before: left on the server.
        let oversize = load_oversize(sink).await?;
        listed.retain(|m| {
            let by_list = m.size > self.max_size;
            if by_list || oversize.contains(&m.uidl) {
                summary.refused.push(format!(
                    "message {} (UIDL {}) on {} is larger than max_message_size ({} bytes{}); left on the server",
                    m.number,
                    m.uidl,
                    conn.peer,
                    self.max_size,
                    if by_list {
                        format!(", listed at {}", m.size)
                    } else {
                        String::new()
                    }
                ));
                false
            } else {
                true
            }
        });
        // What the store already has (a download resumed after a crash), asked once for all.
        let uidls: Vec<String> = listed
            .iter()
            .filter(|m| !m.repeated)
            .map(|m| m.uidl.clone())
            .collect();
        let known = sink.known(&uidls).await.map_err(store_failure)?;
        conn.digests = sink
            .get_state(DIGESTS_KEY)
            .await
            .map_err(store_failure)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut first_seen = if self.config.leave_on_server {
            load_first_seen(sink).await?
        } else {
            BTreeMap::new()
        };
        let now = unix_now();
        let total = listed.len();
        let mut done = 0usize;
        // A repeated UIDL is never taken as stored before its content is read.
        let stored_before = |m: &Listed| !m.repeated && known.contains(&m.uidl);
        for batch in batches(&listed) {
            let wanted: Vec<&Listed> = batch.iter().filter(|m| !stored_before(m)).collect();
            // The batch's messages that are now in the store (stored here or before).
            let mut have: Vec<&Listed> = batch.iter().filter(|m| stored_before(m)).collect();
            summary.skipped += have.len();
            let mut refused = |msg: &Listed, text: String, peer: &str| {
                // Gone meanwhile, or locked by another client: said in the summary; it stays
                // on the server and the next download tries it again.
                summary.refused.push(format!(
                    "the POP3 server {peer} refused RETR {} (UIDL {}): {text}",
                    msg.number, msg.uidl
                ));
            };
            let mut received = 0usize;
            let mut skipped = 0usize;
            match wanted.as_slice() {
                [] => {}
                [large] if large.size > WHOLE && !large.repeated => {
                    match conn.retrieve(large, sink).await? {
                        Ok(stored) => {
                            if stored {
                                received += 1;
                            } else {
                                skipped += 1;
                            }
                            have.push(large);
                        }
                        Err(text) => refused(large, text, &conn.peer),
                    }
                }
                _ => {
                    // Read and store side by side: the store writes one part (on its own
                    // thread) while the next is read from the connection.
                    let (parts, mut incoming) = tokio::sync::mpsc::channel::<Part>(2);
                    let peer = conn.peer.clone();
                    let reading = {
                        let (conn, wanted) = (&mut *conn, &wanted);
                        async move { conn.retrieve_whole(wanted, sink, parts).await }
                    };
                    let storing = async {
                        let mut stored = BTreeMap::new();
                        while let Some(part) = incoming.recv().await {
                            let (at, batch): (Vec<usize>, Vec<Downloaded>) =
                                part.into_iter().unzip();
                            let which: Vec<&Listed> = at.iter().map(|&i| wanted[i]).collect();
                            let result = sink.deliver_batch(batch).await.map_err(|e| {
                                TransportError::store(
                                    &format!(
                                        "{peer}: messages {} were not stored",
                                        numbers(&which)
                                    ),
                                    &e,
                                )
                            })?;
                            stored.extend(at.into_iter().zip(result));
                        }
                        Ok::<_, TransportError>(stored)
                    };
                    let ((fetched, broke), stored) = tokio::join!(reading, storing);
                    // A store failure first: the reading stopped because of it.
                    let stored = stored?;
                    if let Some(e) = broke {
                        // No DELE, no QUIT: the server keeps everything; the next download
                        // skips what was stored here.
                        return Err(e);
                    }
                    for (i, (msg, result)) in wanted.iter().zip(fetched).enumerate() {
                        let was_stored = match result {
                            Retrieved::Streamed(stored) => stored,
                            Retrieved::Whole => match stored.get(&i) {
                                Some(stored) => *stored,
                                None => continue,
                            },
                            Retrieved::Refused(text) => {
                                refused(msg, text, &conn.peer);
                                continue;
                            }
                        };
                        if was_stored {
                            received += 1;
                        } else {
                            skipped += 1;
                        }
                        have.push(msg);
                    }
                }
            }
            summary.received += received;
            summary.skipped += skipped;
            let delete: Vec<&Listed> = have
                .iter()
                .copied()
                .filter(|msg| {
                    let seen = *first_seen.entry(msg.uidl.clone()).or_insert(now);
                    match (self.config.leave_on_server, self.config.leave_days) {
                        (false, _) => true,
                        (true, None) => false,
                        (true, Some(days)) => now.saturating_sub(seen) >= u64::from(days) * 86_400,
                    }
                })
                .collect();
            // Only what is still on the server needs its content remembered.
            conn.digests
                .retain(|uidl, _| listed.iter().any(|m| &m.uidl == uidl));
            let json = serde_json::to_string(&conn.digests).unwrap_or_default();
            sink.set_state(DIGESTS_KEY, &json)
                .await
                .map_err(store_failure)?;
            // Durable (one fsync for the batch) before the server is told to delete any of it;
            // DELE itself only takes effect at QUIT.
            if received > 0 || !delete.is_empty() {
                sink.sync().await.map_err(store_failure)?;
            }
            conn.delete(&delete).await?;
            done += batch.len();
            sink.progress(done, total);
        }
        if self.config.leave_on_server {
            // Only what is still on the server needs remembering.
            first_seen.retain(|uidl, _| listed.iter().any(|m| &m.uidl == uidl));
            let json = serde_json::to_string(&first_seen).map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Temporary,
                    format!("cannot record first-seen times: {e}"),
                )
            })?;
            sink.set_state(FIRST_SEEN_KEY, &json)
                .await
                .map_err(store_failure)?;
            sink.sync().await.map_err(store_failure)?;
        }
        conn.send("QUIT").await?;
        match conn.reply().await {
            Ok(Reply::Ok(_)) => {}
            // The messages are stored; the next download skips them and deletes them again.
            Ok(Reply::Err(text)) => {
                tracing::warn!(server = %conn.peer, reply = %text, "QUIT refused; deletions not committed")
            }
            Err(e) => {
                tracing::warn!(server = %conn.peer, error = %e, "no answer to QUIT; deletions may not be committed")
            }
        }
        Ok(summary)
    }

    /// STAT on the connected session, then QUIT (no message is marked, so nothing is deleted):
    /// the maildrop's message count and size in octets. For `validate`.
    pub async fn stat(&mut self) -> Result<(u64, u64), TransportError> {
        let mut conn = self.conn.take().ok_or_else(|| {
            TransportError::new(TransportErrorKind::Temporary, "POP3: not connected")
        })?;
        conn.send("STAT").await?;
        let reply = conn.reply().await?;
        let counts = match reply {
            Reply::Ok(text) => {
                let mut words = text.split_ascii_whitespace().map(str::parse::<u64>);
                match (words.next(), words.next()) {
                    (Some(Ok(n)), Some(Ok(size))) => (n, size),
                    _ => {
                        return Err(TransportError::new(
                            TransportErrorKind::Permanent,
                            format!(
                                "{}: STAT answered \"+OK {text}\", not a count and a size (RFC 1939)",
                                conn.peer
                            ),
                        ));
                    }
                }
            }
            Reply::Err(text) => {
                return Err(TransportError::new(
                    TransportErrorKind::Permanent,
                    format!("{}: STAT refused: -ERR {text}", conn.peer),
                ));
            }
        };
        conn.send("QUIT").await?;
        let _ = conn.reply().await;
        Ok(counts)
    }

    /// Drops the connection (a download ends with QUIT itself; dropping without QUIT deletes
    /// nothing on the server).
    pub async fn close(&mut self) {
        self.conn = None;
    }
}

async fn load_oversize(sink: &impl InboundSink) -> Result<Vec<String>, TransportError> {
    let text = sink.get_state(OVERSIZE_KEY).await.map_err(store_failure)?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

async fn load_first_seen(sink: &impl InboundSink) -> Result<BTreeMap<String, u64>, TransportError> {
    let text = sink
        .get_state(FIRST_SEEN_KEY)
        .await
        .map_err(store_failure)?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// A step that got no answer in time, named.
fn stalled(peer: &str, what: &str, limit: Duration) -> TransportError {
    TransportError::new(
        TransportErrorKind::Timeout,
        format!(
            "POP3 server {peer}: no answer to {what} within {}",
            humantime::format_duration(limit)
        ),
    )
}

fn store_failure(e: mapi::MapiError) -> TransportError {
    TransportError::store("the store failed", &e)
}

/// The `<...>` timestamp of an APOP-capable greeting.
fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = start + greeting[start..].find('>')?;
    let stamp = &greeting[start..=end];
    stamp.contains('@').then_some(stamp)
}

/// APOP's digest: MD5 of the timestamp and the password, in lower-case hex (RFC 1939 §7).
fn apop_digest(stamp: &str, secret: &Secret) -> String {
    let mut md5 = Md5::new();
    md5.update(stamp.as_bytes());
    md5.update(secret.expose().as_bytes());
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Connection {
    fn io_error(&self, e: io::Error) -> TransportError {
        if e.kind() == io::ErrorKind::TimedOut {
            return stalled(&self.peer, &self.awaited(), self.idle);
        }
        let kind = if e.kind() == io::ErrorKind::InvalidData {
            "the POP3 server sent something unexpected"
        } else {
            "the connection failed"
        };
        TransportError::new(
            TransportErrorKind::Temporary,
            format!("{} ({kind}): {e}", self.peer),
        )
    }

    /// What the next reply answers, for a stall's message.
    fn awaited(&self) -> String {
        if self.last.is_empty() {
            "the connection (no greeting)".to_string()
        } else {
            self.last.clone()
        }
    }

    async fn send(&mut self, command: &str) -> Result<(), TransportError> {
        self.send_all(&[command.to_string()]).await
    }

    /// Sends `commands` in one write (pipelined, when there are several).
    async fn send_all(&mut self, commands: &[String]) -> Result<(), TransportError> {
        let Some(last) = commands.last() else {
            return Ok(());
        };
        self.last = last.split(' ').next().unwrap_or(last).to_string();
        let mut bytes = Vec::with_capacity(commands.iter().map(|c| c.len() + 2).sum());
        for command in commands {
            bytes.extend_from_slice(command.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let stream = self.reader.get_mut();
        let result = async {
            stream.write_all(&bytes).await?;
            stream.flush().await
        }
        .await;
        result.map_err(|e| self.io_error(e))
    }

    /// Sends `command` for each message: all at once with PIPELINING, else one at a time as
    /// the caller comes to read each answer (`at`: the one it is about to read).
    async fn send_for(
        &mut self,
        verb: &str,
        msgs: &[&Listed],
        at: usize,
    ) -> Result<(), TransportError> {
        if self.pipelining {
            if at == 0 {
                let commands: Vec<String> = msgs
                    .iter()
                    .map(|m| format!("{verb} {}", m.number))
                    .collect();
                self.send_all(&commands).await?;
            }
            // Stalls are named by the command whose answer is awaited.
            self.last = verb.to_string();
            Ok(())
        } else {
            self.send(&format!("{verb} {}", msgs[at].number)).await
        }
    }

    /// DELE for each of `msgs` (pipelined when the server allows). A refusal is logged, not
    /// fatal: the message is stored, and the next download deletes it.
    async fn delete(&mut self, msgs: &[&Listed]) -> Result<(), TransportError> {
        for (i, msg) in msgs.iter().enumerate() {
            self.send_for("DELE", msgs, i).await?;
            if let Reply::Err(text) = self.reply().await? {
                tracing::warn!(server = %self.peer, uidl = %msg.uidl, reply = %text, "DELE refused");
            }
        }
        Ok(())
    }

    /// RETR each of `msgs` (pipelined when the server allows) into memory, in order, handing
    /// them to `parts` a part at a time (the store takes them meanwhile). A message that turns
    /// out larger than its listed size plus [`WHOLE`] streams into `sink` on its own from
    /// there. Stops at the first failure of the connection (or when the store stopped taking
    /// parts), giving what became of the messages before it and the failure.
    async fn retrieve_whole(
        &mut self,
        msgs: &[&Listed],
        sink: &impl InboundSink,
        parts: tokio::sync::mpsc::Sender<Part>,
    ) -> (Vec<Retrieved>, Option<TransportError>) {
        let mut out = Vec::with_capacity(msgs.len());
        let (mut part, mut bytes): (Part, usize) = (Vec::new(), 0);
        for i in 0..msgs.len() {
            match self.retrieve_one(msgs, i, sink).await {
                Ok(Ok(body)) => {
                    let summary = header_block(&body)
                        .and_then(|h| HeaderSummary::parse(h).ok())
                        .unwrap_or_default();
                    bytes += body.len();
                    let uidl = &msgs[i].uidl;
                    let len = body.len() as u64;
                    let server_id = if !msgs[i].repeated {
                        let recorded = recorded_key(len, Sha256::new_with_prefix(&body));
                        self.digests.insert(uidl.clone(), recorded);
                        uidl.clone()
                    } else {
                        let content = content_key(len, Md5::new_with_prefix(&body));
                        if self
                            .digests
                            .get(uidl)
                            .is_some_and(|r| same_content(r, &body, &content))
                            && self.claimed.insert(uidl.clone())
                        {
                            // The one stored while its UIDL was unique: known by its content.
                            uidl.clone()
                        } else {
                            identity(uidl, &content, &mut self.occurrences)
                        }
                    };
                    part.push((
                        i,
                        Downloaded {
                            server_id,
                            summary,
                            body,
                        },
                    ));
                    out.push(Retrieved::Whole);
                }
                Ok(Err(r)) => out.push(r),
                Err(e) => {
                    // What came whole is stored even when the connection broke after it.
                    if !part.is_empty() {
                        let _ = parts.send(part).await;
                    }
                    return (out, Some(e));
                }
            }
            if (bytes >= PART_BYTES || part.len() >= PART_COUNT)
                && parts.send(std::mem::take(&mut part)).await.is_err()
            {
                // The store failed; its error is the one reported.
                let stopped = TransportError::new(
                    TransportErrorKind::Temporary,
                    format!("{}: the store stopped taking messages", self.peer),
                );
                return (out, Some(stopped));
            }
            if part.is_empty() {
                bytes = 0;
            }
        }
        if !part.is_empty() {
            let _ = parts.send(part).await;
        }
        (out, None)
    }

    async fn retrieve_one(
        &mut self,
        msgs: &[&Listed],
        at: usize,
        sink: &impl InboundSink,
    ) -> Result<Result<Vec<u8>, Retrieved>, TransportError> {
        let msg = msgs[at];
        self.send_for("RETR", msgs, at).await?;
        if let Reply::Err(text) = self.reply().await? {
            tracing::warn!(server = %self.peer, uidl = %msg.uidl, reply = %text, "RETR refused; skipping");
            return Ok(Err(Retrieved::Refused(text)));
        }
        let peer = self.peer.clone();
        let broke = |e: io::Error| broke_off(&peer, msg, &e);
        self.reading = Some(msg.uidl.clone());
        // A repeated UIDL is read whole, to be told apart by its content (within
        // max_message_size); any other message streams once it outgrows its LIST size.
        let cap = if msg.repeated {
            u64::MAX
        } else {
            msg.size.saturating_add(WHOLE)
        };
        let mut body = DotReader::new(&mut self.reader, self.max_size);
        // The listed size is the size on the wire (CRLF line ends), a little more than the body.
        let mut whole = Vec::with_capacity(usize::try_from(msg.size.min(WHOLE)).unwrap_or(0) + 64);
        loop {
            if whole.capacity() - whole.len() < 4096 {
                whole.reserve(64 * 1024);
            }
            // Into the spare capacity, nothing zeroed first.
            let n = body.read_buf(&mut whole).await.map_err(broke)?;
            if n == 0 {
                return Ok(Ok(whole));
            }
            if whole.len() as u64 > cap {
                break;
            }
        }
        // More than the listing said: the rest streams, with what came so far in front of it.
        let (stored, content) = stream_into(sink, &peer, msg, whole, &mut body).await?;
        self.digests.insert(msg.uidl.clone(), content);
        Ok(Err(Retrieved::Streamed(stored)))
    }

    /// Sends `prefix` and the secret in one write, never through a formatted string that could
    /// end up in a log.
    async fn send_secret(&mut self, prefix: &str, secret: &Secret) -> Result<(), TransportError> {
        self.last = prefix.trim().to_string();
        let mut line = Vec::with_capacity(prefix.len() + secret.expose().len() + 2);
        line.extend_from_slice(prefix.as_bytes());
        line.extend_from_slice(secret.expose().as_bytes());
        line.extend_from_slice(b"\r\n");
        let stream = self.reader.get_mut();
        let result = async {
            stream.write_all(&line).await?;
            stream.flush().await
        }
        .await;
        result.map_err(|e| self.io_error(e))
    }

    async fn reply(&mut self) -> Result<Reply, TransportError> {
        let line = tokio::time::timeout(self.limit, codec::read_line(&mut self.reader, MAX_LINE))
            .await
            .map_err(|_| stalled(&self.peer, &self.awaited(), self.limit))?
            .map_err(|e| self.io_error(e))?;
        Reply::parse(&line).map_err(|e| self.io_error(e))
    }

    async fn listing(&mut self) -> Result<Vec<Vec<u8>>, TransportError> {
        tokio::time::timeout(
            self.limit,
            codec::read_listing(&mut self.reader, MAX_LISTING),
        )
        .await
        .map_err(|_| {
            stalled(
                &self.peer,
                &format!("{} (the end of its listing)", self.awaited()),
                self.limit,
            )
        })?
        .map_err(|e| self.io_error(e))
    }

    /// The server's capabilities (RFC 2449); empty when it has no CAPA.
    async fn capa(&mut self) -> Result<Vec<String>, TransportError> {
        self.send("CAPA").await?;
        match self.reply().await? {
            Reply::Ok(_) => Ok(self
                .listing()
                .await?
                .into_iter()
                .map(|l| String::from_utf8_lossy(&l).trim().to_string())
                .collect()),
            Reply::Err(_) => Ok(Vec::new()),
        }
    }

    /// UIDL and LIST, joined by message number, in message-number order.
    async fn list_messages(&mut self) -> Result<Vec<Listed>, TransportError> {
        if self.pipelining {
            self.send_all(&["UIDL".to_string(), "LIST".to_string()])
                .await?;
            self.last = "UIDL".to_string();
        } else {
            self.send("UIDL").await?;
        }
        if let Reply::Err(text) = self.reply().await? {
            return Err(TransportError::new(
                TransportErrorKind::Permanent,
                format!(
                    "the POP3 server {} has no UIDL ({text}); mapispool needs it to download each message once",
                    self.peer
                ),
            ));
        }
        let mut uidls: BTreeMap<u32, String> = BTreeMap::new();
        for line in self.listing().await? {
            let (number, uidl) = self.number_and_word(&line, "UIDL")?;
            if uidl.is_empty()
                || uidl.len() > 70
                || !uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                return Err(self.malformed("UIDL", &line));
            }
            uidls.insert(number, uidl.to_string());
        }
        if self.pipelining {
            self.last = "LIST".to_string();
        } else {
            self.send("LIST").await?;
        }
        if let Reply::Err(text) = self.reply().await? {
            return Err(TransportError::new(
                TransportErrorKind::Temporary,
                format!("the POP3 server {} refused LIST: {text}", self.peer),
            ));
        }
        let mut sizes: BTreeMap<u32, u64> = BTreeMap::new();
        for line in self.listing().await? {
            let (number, size) = self.number_and_word(&line, "LIST")?;
            let size = size
                .parse::<u64>()
                .map_err(|_| self.malformed("LIST", &line))?;
            sizes.insert(number, size);
        }
        Ok(uidls
            .into_iter()
            .map(|(number, uidl)| Listed {
                number,
                uidl,
                size: sizes.get(&number).copied().unwrap_or(0),
                repeated: false,
            })
            .collect())
    }

    fn malformed(&self, what: &str, line: &[u8]) -> TransportError {
        TransportError::new(
            TransportErrorKind::Temporary,
            format!(
                "{}: the POP3 server's {what} line is malformed: {:?}",
                self.peer,
                codec::shorten(line)
            ),
        )
    }

    /// `<number> <word>` from a UIDL or LIST line.
    fn number_and_word<'l>(
        &self,
        line: &'l [u8],
        what: &str,
    ) -> Result<(u32, &'l str), TransportError> {
        let text = std::str::from_utf8(line).map_err(|_| self.malformed(what, line))?;
        let mut words = text.split_ascii_whitespace();
        let number = words
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| self.malformed(what, line))?;
        let word = words.next().ok_or_else(|| self.malformed(what, line))?;
        Ok((number, word))
    }

    /// RETR one message into the store. `Ok(stored)` when the server sent it (stored is false
    /// if the store already had it); `Err(the server's words)` when it refused (`-ERR`).
    async fn retrieve(
        &mut self,
        msg: &Listed,
        sink: &impl InboundSink,
    ) -> Result<Result<bool, String>, TransportError> {
        self.send(&format!("RETR {}", msg.number)).await?;
        if let Reply::Err(text) = self.reply().await? {
            tracing::warn!(server = %self.peer, uidl = %msg.uidl, reply = %text, "RETR refused; skipping");
            return Ok(Err(text));
        }
        let peer = self.peer.clone();
        self.reading = Some(msg.uidl.clone());
        let mut body = DotReader::new(&mut self.reader, self.max_size);
        // The header first, for the summary; then header and the rest stream into the store.
        let mut head = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = body
                .read(&mut chunk)
                .await
                .map_err(|e| broke_off(&peer, msg, &e))?;
            let from = head.len().saturating_sub(3);
            head.extend_from_slice(&chunk[..n]);
            let ended = head[from..].windows(2).any(|w| w == b"\n\n")
                || head[from..].windows(4).any(|w| w == b"\r\n\r\n");
            if n == 0 || ended || head.len() >= MAX_HEADER_BYTES {
                break;
            }
        }
        let (stored, content) = stream_into(sink, &peer, msg, head, &mut body).await?;
        self.digests.insert(msg.uidl.clone(), content);
        Ok(Ok(stored))
    }
}

/// A message's body ended before its terminating dot line.
fn broke_off(peer: &str, msg: &Listed, e: &io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::FileTooLarge => too_large(peer, msg),
        io::ErrorKind::TimedOut => TransportError::new(
            TransportErrorKind::Timeout,
            format!("{peer}: message {} broke off: {e}", msg.uidl),
        ),
        _ => TransportError::new(
            TransportErrorKind::Temporary,
            format!("{peer}: message {} broke off: {e}", msg.uidl),
        ),
    }
}

/// A message that came larger than `max_message_size` although LIST said less.
fn too_large(peer: &str, msg: &Listed) -> TransportError {
    TransportError::new(
        TransportErrorKind::TooLarge,
        format!(
            "message {} (UIDL {}) on {peer} is larger than max_message_size although LIST said {} bytes; left on the server, and later downloads pass it over",
            msg.number, msg.uidl, msg.size
        ),
    )
}

/// Streams a RETR answer into the store: `read` (what came so far, the header at least, for
/// the summary) and then the rest of `body`. What a sink leaves unread (it already had the
/// message) is drained, so the connection stays in step. Whether it was stored, and its
/// [`recorded_key`].
async fn stream_into<R: tokio::io::AsyncBufRead + Unpin + Send>(
    sink: &impl InboundSink,
    peer: &str,
    msg: &Listed,
    read: Vec<u8>,
    body: &mut DotReader<R>,
) -> Result<(bool, String), TransportError> {
    let summary = header_block(&read)
        .and_then(|h| HeaderSummary::parse(h).ok())
        .unwrap_or_default();
    let mut reader = Hashing {
        inner: std::io::Cursor::new(read).chain(&mut *body),
        sha: Sha256::new(),
        len: 0,
    };
    let stored = sink
        .deliver(&msg.uidl, &summary, msg.size, &mut reader)
        .await;
    // What the store left unread (it had the message) still counts for the content.
    let drained = match stored {
        Ok(_) => Some(tokio::io::copy(&mut reader, &mut tokio::io::sink()).await),
        Err(_) => None,
    };
    let content = recorded_key(reader.len, reader.sha);
    if body.over_limit() {
        return Err(too_large(peer, msg));
    }
    let stored = stored.map_err(|e| {
        TransportError::store(
            &format!(
                "{peer}: message {} (UIDL {}) was not stored",
                msg.number, msg.uidl
            ),
            &e,
        )
    })?;
    if let Some(Err(e)) = drained {
        return Err(broke_off(peer, msg, &e));
    }
    Ok((stored, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_records_of_either_form_are_recognised() {
        let body = b"Subject: x\r\n\r\nhello\r\n";
        let md5 = content_key(body.len() as u64, Md5::new_with_prefix(body));
        let sha = recorded_key(body.len() as u64, Sha256::new_with_prefix(body));
        assert_eq!(
            md5.split_once(' ').map(|(n, d)| (n, d.len())),
            Some(("21", 32))
        );
        assert_eq!(
            sha.split_once(' ').map(|(n, d)| (n, d.len())),
            Some(("21", 64))
        );
        // A record written by an earlier version (MD5) and one written now (SHA-256).
        assert!(same_content(&md5, body, &md5));
        assert!(same_content(&sha, body, &md5));
        let other = b"Subject: y\r\n\r\nhello\r\n";
        let other_md5 = content_key(other.len() as u64, Md5::new_with_prefix(other));
        assert!(!same_content(&md5, other, &other_md5));
        assert!(!same_content(&sha, other, &other_md5));
    }

    #[test]
    fn apop_digest_matches_rfc_1939() {
        // RFC 1939 §7's example.
        let stamp = apop_timestamp("POP3 server ready <1896.697170952@dbc.mtview.ca.us>")
            .expect("a timestamp");
        assert_eq!(stamp, "<1896.697170952@dbc.mtview.ca.us>");
        assert_eq!(
            apop_digest(stamp, &Secret::new("tanstaaf")),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
    }
}

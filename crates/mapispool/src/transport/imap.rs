//! The IMAP inbound transport (`kind = "imap"`, RFC 3501) on `async-imap`, over tokio with TLS
//! from `crate::tls` (implicit TLS or STARTTLS).
//!
//! A download: log in (AUTHENTICATE PLAIN when the server offers it, else LOGIN; or what the
//! profile's `auth` insists on, XOAUTH2 included), SELECT the configured folder, then fetch
//! only the UIDs above the last one this transport finished (kept with the folder's UIDVALIDITY
//! in the store's sync state; a new UIDVALIDITY starts the folder over). Each message is stored
//! under the server id `UIDVALIDITY:UID`, so the store never takes it twice; only once it is
//! stored (durable) does `after_download` act on the server (`\Seen`, delete and expunge, or
//! move), and only after that does the last UID move on. A connection lost in between brings
//! the same messages again next time: the store skips them and the action is done then.
//!
//! The store is asked once which of the listed messages it has. Small messages are fetched in
//! batches (`UID FETCH a,b,c (UID BODY.PEEK[])`), handed to the store in parts while the rest of
//! the answer arrives, then made durable with one fsync per batch before `after_download` acts
//! on them (the next batch's FETCH, a read-only `BODY.PEEK`, goes out before that fsync, so the
//! server sends it meanwhile; the batch's `\Seen` STORE only after it); a message larger than [`RANGE`] is fetched whole on its own (`UID FETCH n (UID
//! BODY.PEEK[])`) and its body streamed into the store past async-imap, which would hold it
//! whole in memory (`literal.rs` diverts that one literal into a pipe the store reads; Dovecot
//! sends a whole body in about half the time of the same bytes in ranges). Large messages
//! share batches too: the next one is asked for as soon as the answer before is in, so it
//! crosses the network while the store finishes that one (its fsyncs), and the batch's one
//! sync comes before `after_download` acts on any of them. A message that failed before is
//! fetched alone and in ranges (`BODY.PEEK[]<offset.length>`), the most conservative way.
//!
//! The last UID moves on only over UIDs that are stored (or over `max_message_size`, which are
//! left on the server and reported): a UID the server leaves out of its answer, or answers
//! unreadably, is counted in the sync state, fetched alone and in ranges after the others next
//! time, and named in the flush report after `TRIES` downloads. `[spooler] timeout` bounds
//! each read and write (`net::Inactivity`); literals are capped before async-imap sizes its
//! buffer by them (`literal.rs`).

mod literal;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_imap::error::Error as ImapError;
use async_imap::imap_proto::{RequestId, Response, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::net::{CONNECT_TIMEOUT, Inactivity, MailStream, password, start_tls, tcp_connect};
use super::{DownloadSummary, Downloaded, InboundSink, TransportError, TransportErrorKind};
use crate::message::{HeaderSummary, header_block};
use crate::profile::{AfterDownload, ImapAuth, ImapConfig, Security};

/// Messages up to this size are fetched whole in batches; larger ones each on its own, streamed
/// (and in ranges of this size when they failed before).
pub const RANGE: u32 = 1024 * 1024;

/// The connection async-imap reads: each read or write bounded by the spooler's `timeout`.
/// Each literal the server announces is capped at [`LITERAL_CAP`] (see `literal.rs`).
type ImapLink = literal::LiteralCap<Inactivity<MailStream>>;

/// The largest literal taken in one response: a range, or a small message whose size the
/// listing understated, with room to spare. A larger announcement fails the connection before
/// async-imap allocates for it; the message is then fetched in ranges.
const LITERAL_CAP: u64 = 2 * RANGE as u64 + 64 * 1024;

/// How many downloads may fail to bring a listed message before the flush report names it.
const TRIES: u32 = 3;
type ImapSession = async_imap::Session<ImapLink>;

/// The IMAP inbound side of one transport.
#[derive(Debug)]
pub struct ImapInbound {
    config: ImapConfig,
    transport: String,
    username: String,
    allow_prompt: bool,
    /// The limit for connecting and logging in: the spooler's `timeout` when it is below
    /// [`CONNECT_TIMEOUT`].
    connect_limit: std::time::Duration,
    /// How long one read or write may wait for the server: the spooler's `timeout`.
    idle_limit: std::time::Duration,
    /// The largest message taken (`[spooler] max_message_size`).
    max_size: u64,
    session: Option<ImapSession>,
    /// IDLE: how many messages the folder had when last looked at, so mail that came between
    /// two IDLEs (when no push can arrive) is noticed.
    idle_exists: Option<u32>,
}

/// One new message on the server.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Listed {
    pub uid: u32,
    pub size: u64,
}

impl ImapInbound {
    /// `transport` is the profile's transport name (for credentials and messages); `address` is
    /// the login when the profile gives no `username`.
    pub fn new(
        config: &ImapConfig,
        transport: &str,
        address: &str,
        allow_prompt: bool,
    ) -> ImapInbound {
        ImapInbound {
            username: config
                .username
                .clone()
                .unwrap_or_else(|| address.to_string()),
            config: config.clone(),
            transport: transport.to_string(),
            allow_prompt,
            connect_limit: CONNECT_TIMEOUT,
            idle_limit: CONNECT_TIMEOUT,
            max_size: crate::profile::SpoolerConfig::DEFAULT_MAX_MESSAGE_SIZE,
            session: None,
            idle_exists: None,
        }
    }

    /// Bounds connecting and logging in by `limit` too (the spooler's `[spooler] timeout`).
    pub fn set_timeout(&mut self, limit: std::time::Duration) {
        self.connect_limit = limit.min(CONNECT_TIMEOUT);
        self.idle_limit = limit;
    }

    /// The largest message this transport takes; a larger one stays on the server, is named
    /// in the summary, and the download goes on past it.
    pub fn set_max_message_size(&mut self, max: u64) {
        self.max_size = max;
    }

    /// The stream async-imap reads: inactivity-limited, literals capped.
    fn link(&self, stream: MailStream) -> ImapLink {
        literal::LiteralCap::new(Inactivity::new(stream, self.idle_limit), LITERAL_CAP)
    }

    fn peer(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }

    /// Connects, secures the connection as the profile says, and logs in.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        let peer = self.peer();
        let limit = self.connect_limit;
        // The step `open` is at, to name the one a stall was in (the limit is for them all).
        let step = std::sync::Mutex::new("the TCP connection");
        let session =
            tokio::time::timeout(limit, parser_panic_is_an_error(&peer, self.open(&step)))
                .await
                .map_err(|_| {
                    TransportError::new(
                        TransportErrorKind::Timeout,
                        format!(
                            "IMAP server {peer}: connecting and logging in took longer than {} (stalled at {})",
                            humantime::format_duration(limit),
                            step.lock().map(|s| *s).unwrap_or("an unknown step")
                        ),
                    )
                })??;
        self.session = Some(session);
        Ok(())
    }

    async fn open(
        &self,
        step: &std::sync::Mutex<&'static str>,
    ) -> Result<ImapSession, TransportError> {
        let at = |s: &'static str| {
            if let Ok(mut step) = step.lock() {
                *step = s;
            }
        };
        let c = &self.config;
        let peer = self.peer();
        let tcp = tcp_connect(&c.host, c.port, self.connect_limit).await?;
        let stream = match c.security {
            Security::Tls => {
                at("the TLS handshake");
                start_tls(tcp, &c.host, c.ca_file.as_deref(), c.insecure_skip_verify).await?
            }
            Security::Starttls | Security::None => MailStream::Plain(tcp),
        };
        let mut encrypted = matches!(stream, MailStream::Tls(_));
        let mut client = async_imap::Client::new(self.link(stream));
        at("the greeting");
        let greeting = client
            .read_response()
            .await
            .map_err(|e| connection_failed(&peer, &ImapError::Io(e)))?
            .ok_or_else(|| {
                TransportError::new(
                    TransportErrorKind::Connect,
                    format!("the IMAP server {peer} closed the connection before greeting us"),
                )
            })?;
        check_greeting(&peer, greeting.parsed())?;
        if c.security == Security::Starttls {
            at("the answer to STARTTLS");
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| {
                    TransportError::new(
                        TransportErrorKind::Tls,
                        format!(
                            "the IMAP server {peer} refused STARTTLS ({}); use security = \"tls\" (port 993) or, on a trusted network only, \"none\"",
                            server_words(&e)
                        ),
                    )
                })?;
            let MailStream::Plain(tcp) = client.into_inner().into_inner().into_inner() else {
                return Err(TransportError::new(
                    TransportErrorKind::Tls,
                    "STARTTLS on a connection that already has TLS",
                ));
            };
            at("the TLS handshake after STARTTLS");
            let tls = start_tls(tcp, &c.host, c.ca_file.as_deref(), c.insecure_skip_verify).await?;
            encrypted = matches!(tls, MailStream::Tls(_));
            client = async_imap::Client::new(self.link(tls));
        }
        at("the answer to CAPABILITY");
        let caps = pre_auth_capabilities(&mut client)
            .await
            .map_err(|e| connection_failed(&peer, &e))?;
        let mech = self.mechanism(&caps)?;
        // The profile refuses this when it loads; a configuration built in code is refused
        // here too, before the password is resolved or sent.
        if !encrypted && !c.allow_plaintext_auth {
            return Err(super::plaintext_auth_refused(&self.transport, &peer));
        }
        at("the password");
        let secret = password(
            c.credential.as_ref(),
            &self.transport,
            self.allow_prompt,
            self.idle_limit,
        )
        .await?;
        let user = &self.username;
        at(match mech {
            ImapAuth::Login => "the answer to LOGIN",
            ImapAuth::Plain => "the answer to AUTHENTICATE PLAIN",
            ImapAuth::Xoauth2 => "the answer to AUTHENTICATE XOAUTH2",
        });
        let result = match mech {
            ImapAuth::Login => client.login(user, secret.expose()).await,
            ImapAuth::Plain => {
                client
                    .authenticate("PLAIN", Sasl::plain(user, secret.expose()))
                    .await
            }
            ImapAuth::Xoauth2 => {
                client
                    .authenticate("XOAUTH2", Sasl::xoauth2(user, secret.expose()))
                    .await
            }
        };
        let how = mechanism_name(mech);
        result.map_err(|(e, _)| match e {
            ImapError::No(_) | ImapError::Bad(_) => TransportError::new(
                TransportErrorKind::Auth,
                format!(
                    "the IMAP server {peer} refused the login of \"{user}\" ({how}): {}",
                    server_words(&e)
                ),
            ),
            ImapError::Validate(_) => TransportError::new(
                TransportErrorKind::Auth,
                format!(
                    "transport \"{}\": the username or password has a character IMAP LOGIN cannot send (a line break)",
                    self.transport
                ),
            ),
            other => connection_failed(&peer, &other),
        })
    }

    /// The mechanism to log in with: the profile's `auth` if set (XOAUTH2 and PLAIN only if the
    /// server advertises them), else AUTHENTICATE PLAIN when advertised, else LOGIN.
    fn mechanism(&self, caps: &[String]) -> Result<ImapAuth, TransportError> {
        let offers = |m: &str| caps.iter().any(|c| c == &format!("AUTH={m}"));
        let wanted = match self.config.auth {
            None if offers("PLAIN") => return Ok(ImapAuth::Plain),
            None | Some(ImapAuth::Login) => return Ok(ImapAuth::Login),
            Some(m) => m,
        };
        let name = if wanted == ImapAuth::Plain {
            "PLAIN"
        } else {
            "XOAUTH2"
        };
        if offers(name) {
            return Ok(wanted);
        }
        let offered: Vec<&str> = caps
            .iter()
            .filter_map(|c| c.strip_prefix("AUTH="))
            .collect();
        Err(TransportError::new(
            TransportErrorKind::Auth,
            format!(
                "the IMAP server {} does not offer AUTHENTICATE {name} (it offers {}); change auth for transport \"{}\"",
                self.peer(),
                if offered.is_empty() {
                    "only the LOGIN command".to_string()
                } else {
                    format!("AUTHENTICATE {} and the LOGIN command", offered.join(" "))
                },
                self.transport
            ),
        ))
    }

    /// Downloads every new message of the folder and applies `after_download` to each once it
    /// is stored.
    pub async fn download(
        &mut self,
        sink: &impl InboundSink,
    ) -> Result<DownloadSummary, TransportError> {
        let peer = self.peer();
        let result = parser_panic_is_an_error(&peer, self.download_all(sink)).await;
        if result
            .as_ref()
            .is_err_and(|e| e.message.contains(PARSER_PANIC))
        {
            // The connection is somewhere in a response: of no further use.
            self.session = None;
        }
        result
    }

    async fn download_all(
        &mut self,
        sink: &impl InboundSink,
    ) -> Result<DownloadSummary, TransportError> {
        let peer = self.peer();
        let folder = self.config.folder.clone();
        let after = self.config.after_download.clone();
        let session = self.session.as_mut().ok_or_else(|| {
            TransportError::new(TransportErrorKind::Temporary, "IMAP: not connected")
        })?;
        let fail = |e: ImapError| connection_failed(&peer, &e);

        let mailbox = session
            .select(&folder)
            .await
            .map_err(|e| folder_failed(&peer, &folder, e))?;
        // async-imap ends SELECT quietly on a closed connection, with an empty mailbox; a real
        // answer always has UIDVALIDITY (RFC 3501), so its absence is no answer at all.
        let Some(validity) = selected_validity(&mailbox) else {
            return Err(TransportError::new(
                TransportErrorKind::Temporary,
                format!(
                    "{peer} (the connection failed): no complete answer to SELECT \"{folder}\" (no UIDVALIDITY)"
                ),
            ));
        };
        let validity_key = format!("imap.{folder}.uidvalidity");
        let last_key = format!("imap.{folder}.last_uid");
        let stored_validity = sink
            .get_state(&validity_key)
            .await
            .map_err(store_failure)?
            .and_then(|v| v.parse::<u32>().ok());
        let mut last_uid = if stored_validity == Some(validity) {
            sink.get_state(&last_key)
                .await
                .map_err(store_failure)?
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        } else {
            // A new folder, or the server renumbered it: list it all again. Messages already
            // stored under the old UIDVALIDITY have other server ids, so this is a full re-read.
            sink.set_state(&validity_key, &validity.to_string())
                .await
                .map_err(store_failure)?;
            sink.set_state(&last_key, "0")
                .await
                .map_err(store_failure)?;
            0
        };

        let mut summary = DownloadSummary::default();
        if mailbox.exists == 0 {
            return Ok(summary);
        }
        // Only deleting and moving depend on extensions; `\Seen` and keep spare the round trip.
        let (uidplus, can_move) = match after {
            AfterDownload::Delete | AfterDownload::Move(_) => {
                let caps = session.capabilities().await.map_err(fail)?;
                (caps.has_str("UIDPLUS"), caps.has_str("MOVE"))
            }
            AfterDownload::Keep | AfterDownload::Seen => (false, false),
        };

        // What is new: UIDs above the last one finished ("n:*" also returns the highest UID
        // when it is below n, so filter).
        let listed = new_messages(
            uid_fetch(
                session,
                &format!("{}:*", last_uid.saturating_add(1)),
                "(UID RFC822.SIZE)",
            )
            .await
            .map_err(fail)?,
            last_uid,
        );
        // Messages that failed to come in earlier downloads (missing from the server's answer,
        // unreadable, or larger than announced), counted durably per UID.
        let tries_key = format!("imap.{folder}.tries");
        let mut tries: BTreeMap<u32, u32> = if stored_validity == Some(validity) {
            sink.get_state(&tries_key)
                .await
                .map_err(store_failure)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        tries.retain(|uid, _| listed.iter().any(|m| m.uid == *uid));
        // The last UID moves on only over UIDs in `finished_all`, in listing order.
        let order: Vec<u32> = listed.iter().map(|m| m.uid).collect();
        let mut finished_all: BTreeSet<u32> = BTreeSet::new();
        // Larger than max_message_size by the listing: left on the server, named, passed over.
        let (listed, oversize): (Vec<Listed>, Vec<Listed>) =
            listed.into_iter().partition(|m| m.size <= self.max_size);
        for m in &oversize {
            summary.refused.push(too_large_note(
                &peer,
                &folder,
                m.uid,
                Some(m.size),
                self.max_size,
            ));
            finished_all.insert(m.uid);
        }
        let total = listed.len();
        let mut done = 0usize;
        // What the store already has (a download resumed after a crash), asked once for all.
        let ids: Vec<String> = listed.iter().map(|m| server_id(validity, m.uid)).collect();
        let known = sink.known(&ids).await.map_err(store_failure)?;
        // Those that failed before come last, each on its own and in ranges (whatever size the
        // listing gave), so one bad message never holds up the others.
        let (fresh, troubled): (Vec<Listed>, Vec<Listed>) = listed.into_iter().partition(|m| {
            !tries.contains_key(&m.uid) || known.contains(&server_id(validity, m.uid))
        });
        let mut groups: Vec<Vec<Listed>> = batches(&fresh)
            .into_iter()
            .map(<[Listed]>::to_vec)
            .collect();
        groups.extend(troubled.into_iter().map(|m| vec![m]));

        let to = Storing {
            peer: &peer,
            sink,
            validity,
            max_size: self.max_size,
        };
        // Lives across the batches: it also holds the `\Seen` STOREs of the batches before,
        // whose answers are read while the next batch comes.
        let mut ranges = Ranges::default();
        // A batch of small messages only is asked for before the batch before is synced (see
        // below), unless `after_download` must read answers of its own (delete, move).
        let pipelined = matches!(after, AfterDownload::Seen | AfterDownload::Keep);
        // The batch (its index) whose FETCH went out ahead, and that command's tag.
        let mut ahead: Option<(usize, RequestId)> = None;
        for (gi, group) in groups.iter().enumerate() {
            let alone = group.len() == 1 && tries.contains_key(&group[0].uid);
            let mut finished: Vec<u32> = Vec::with_capacity(group.len());
            let mut small: Vec<Listed> = Vec::new();
            let mut failed: Option<TransportError> = None;
            // Those a fetch was asked for: only they count a try if the batch fails (a large
            // message never reached is not held against).
            let mut attempted: BTreeSet<u32> = BTreeSet::new();
            let ranged = |m: &Listed| {
                !known.contains(&server_id(validity, m.uid)) && (m.size > u64::from(RANGE) || alone)
            };
            for (i, m) in group.iter().enumerate() {
                if known.contains(&server_id(validity, m.uid)) {
                    summary.skipped += 1;
                    finished.push(m.uid);
                } else if ranged(m) {
                    // Large: whole, streamed (failed before: alone, in ranges); the batch's
                    // next large one is asked for while this one's store finishes.
                    attempted.insert(m.uid);
                    let next = group[i + 1..].iter().find(|n| ranged(n)).copied();
                    let mode = if alone { Large::Ranged } else { Large::Whole };
                    let got = fetch_large(mode, session, &mut ranges, &to, *m, next).await;
                    match got {
                        Ok(Ranged::Stored(true)) => {
                            summary.received += 1;
                            finished.push(m.uid);
                        }
                        Ok(Ranged::Stored(false)) => {
                            summary.skipped += 1;
                            finished.push(m.uid);
                        }
                        Ok(Ranged::TooLarge) => {
                            summary.refused.push(too_large_note(
                                &peer,
                                &folder,
                                m.uid,
                                None,
                                self.max_size,
                            ));
                            finished_all.insert(m.uid);
                        }
                        Ok(Ranged::Missing) => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                } else {
                    small.push(*m);
                }
            }
            if failed.is_none()
                && let Err(e) = ranges.finish_all(session).await
            {
                failed = Some(fail(e));
            }
            if failed.is_none() && !small.is_empty() {
                attempted.extend(small.iter().map(|m| m.uid));
                let sent = ahead.take().and_then(|(at, tag)| (at == gi).then_some(tag));
                match fetch_and_store(session, &mut ranges.seen, &to, &small, &finished, sent).await
                {
                    Ok((stored, too_large)) => {
                        for uid in too_large {
                            summary.refused.push(too_large_note(
                                &peer,
                                &folder,
                                uid,
                                None,
                                self.max_size,
                            ));
                            finished_all.insert(uid);
                        }
                        for (uid, stored) in stored {
                            if stored {
                                summary.received += 1;
                            } else {
                                summary.skipped += 1;
                            }
                            finished.push(uid);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            // Whatever of the group did not come is counted against it, durably, so that
            // next time it is fetched on its own and after a few tries named.
            for m in group {
                if finished.contains(&m.uid) || finished_all.contains(&m.uid) {
                    tries.remove(&m.uid);
                } else if attempted.contains(&m.uid) {
                    *tries.entry(m.uid).or_insert(0) += 1;
                }
            }
            // The next batch's FETCH goes out now, before this batch's sync: the server reads
            // and sends it while the store makes this batch durable (Dovecot starts answering
            // at once). It is a read-only BODY.PEEK; this batch's STORE still goes out only
            // after the sync, and the last UID moves past it only once that STORE is OK. At
            // most two STOREs stay unanswered: past that the one before is waited for first.
            // A STORE already refused ends the download after this sync: nothing more is
            // asked for.
            if failed.is_none()
                && pipelined
                && ranges.seen.open() <= 1
                && !ranges.seen.refused()
                && let Some(next) = groups.get(gi + 1)
                && let Some(next_small) = small_only(next, &known, validity, &tries)
            {
                match session.run_command(small_fetch(&next_small)).await {
                    Ok(tag) => ahead = Some((gi + 1, tag)),
                    Err(e) => failed = Some(fail(e)),
                }
            }
            let json = serde_json::to_string(&tries).unwrap_or_default();
            sink.set_state(&tries_key, &json)
                .await
                .map_err(store_failure)?;
            if let Some(mut e) = failed {
                // Sealed, with what the group stored before the failure; nothing is done at
                // the server for any of it, and the last UID stays.
                sink.sync().await.map_err(store_failure)?;
                if alone && let Some(n) = tries.get(&group[0].uid).filter(|n| **n >= TRIES) {
                    e.message = format!(
                        "message UID {} in \"{folder}\" on {peer} did not come in {n} downloads; this time: {}",
                        group[0].uid, e.message
                    );
                }
                return Err(e);
            }
            // Make everything in `finished` durable in the store (one fsync for the batch), then
            // act on the server, then move the last UID on, never past a UID not stored.
            sink.sync().await.map_err(store_failure)?;
            // With the next FETCH out, nothing is read here: STOREs answered among its answers
            // are settled after the next batch.
            settle_seen(
                session,
                &mut ranges.seen,
                &peer,
                sink,
                (&last_key, &mut last_uid),
                ahead.is_none(),
            )
            .await?;
            if !finished.is_empty() {
                finished.sort_unstable();
                if matches!(after, AfterDownload::Seen) {
                    // Not waited for: its answer is read while the next batch comes (the next
                    // FETCH goes out at once), and only then does the last UID move past it.
                    let tag = session
                        .run_command(format!(
                            "UID STORE {} +FLAGS.SILENT (\\Seen)",
                            uid_set(finished.iter().copied())
                        ))
                        .await
                        .map_err(fail)?;
                    ranges.seen.0.push_back(SeenStore {
                        tag,
                        verdict: None,
                        mark: 0,
                    });
                } else if let Some(note) =
                    apply_after_download(session, &peer, &after, &finished, uidplus, can_move)
                        .await?
                {
                    summary.refused.push(note);
                }
            }
            finished_all.extend(finished.iter().copied());
            let mark = order
                .iter()
                .take_while(|uid| finished_all.contains(uid))
                .last()
                .copied()
                .unwrap_or(last_uid);
            if let Some(seen) = ranges.seen.0.back_mut() {
                // Behind the STOREs still open (this batch's, or one before when this batch
                // has nothing to flag).
                seen.mark = seen.mark.max(mark);
            } else if mark > last_uid {
                last_uid = mark;
                sink.set_state(&last_key, &last_uid.to_string())
                    .await
                    .map_err(store_failure)?;
            }
            done += group.len();
            sink.progress(done, total);
        }
        settle_seen(
            session,
            &mut ranges.seen,
            &peer,
            sink,
            (&last_key, &mut last_uid),
            true,
        )
        .await?;
        // Made durable with the last batch's state (the tries, the last UID).
        sink.sync().await.map_err(store_failure)?;
        for (uid, n) in &tries {
            if *n >= TRIES {
                summary.refused.push(format!(
                    "message UID {uid} in \"{folder}\" on {peer} did not come in {n} downloads (missing from the server's FETCH answer, or unreadable); it stays on the server and is tried again"
                ));
            }
        }
        Ok(summary)
    }

    /// EXAMINE (read-only, so no `\Recent` is taken) on the configured folder of the connected
    /// session: how many messages it holds. For `validate`, which must change nothing on the
    /// server.
    pub async fn examine(&mut self) -> Result<u32, TransportError> {
        let peer = self.peer();
        let folder = self.config.folder.clone();
        let session = self.session.as_mut().ok_or_else(|| {
            TransportError::new(TransportErrorKind::Temporary, "IMAP: not connected")
        })?;
        let mailbox = session
            .examine(&folder)
            .await
            .map_err(|e| folder_failed(&peer, &folder, e))?;
        Ok(mailbox.exists)
    }

    /// Logs out and drops the connection.
    pub async fn close(&mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), session.logout()).await;
        }
    }

    /// IDLE (RFC 2177) on the configured folder until the server pushes something or `renew`
    /// passes (keep it under 29 minutes: servers may drop an IDLE older than 30), then DONE.
    /// [`Idled::NewMail`] for an `EXISTS` or `RECENT` push, [`Idled::Quiet`] otherwise (a flag
    /// change, an expunge, or the time to renew); the connection stays open for the next call.
    /// A dropped connection or a server without IDLE is an error (the session is gone then), and
    /// so is a response that panics async-imap's parser (as in `connect` and `download`): a
    /// hostile server does not end the daemon's IDLE watcher.
    pub async fn idle_wait(&mut self, renew: std::time::Duration) -> Result<Idled, TransportError> {
        let peer = self.peer();
        let result = parser_panic_is_an_error(&peer, self.idle_once(renew)).await;
        if result
            .as_ref()
            .is_err_and(|e| e.message.contains(PARSER_PANIC))
        {
            // The session was taken out for the IDLE and went with the panic; say so plainly.
            self.session = None;
        }
        result
    }

    async fn idle_once(&mut self, renew: std::time::Duration) -> Result<Idled, TransportError> {
        use async_imap::extensions::idle::IdleResponse;
        use async_imap::imap_proto::MailboxDatum;
        let peer = self.peer();
        let folder = self.config.folder.clone();
        let mut session = self.session.take().ok_or_else(|| {
            TransportError::new(TransportErrorKind::Temporary, "IMAP: not connected")
        })?;
        let fail = |e: ImapError| connection_failed(&peer, &e);
        // EXAMINE: read-only, so idling takes no \Recent away from the download's SELECT.
        let mailbox = session
            .examine(&folder)
            .await
            .map_err(|e| folder_failed(&peer, &folder, e))?;
        let before = self.idle_exists.replace(mailbox.exists);
        if before.is_some_and(|n| mailbox.exists > n) {
            self.session = Some(session);
            return Ok(Idled::NewMail);
        }
        // IDLE waits on the server by design; `renew` bounds it instead of the inactivity limit.
        session.get_mut().get_mut().set_limit(None);
        let mut handle = session.idle();
        handle.init().await.map_err(|e| {
            TransportError::new(
                TransportErrorKind::Permanent,
                format!(
                    "the IMAP server {peer} refused IDLE ({}); set idle = false for transport \"{}\"",
                    server_words(&e),
                    self.transport
                ),
            )
        })?;
        let outcome = {
            let (wait, _interrupt) = handle.wait_with_timeout(renew);
            // async-imap's own limit restarts on every keepalive ("* OK Still here"): bound
            // the whole wait too, so the IDLE is renewed in time.
            tokio::time::timeout(renew, wait).await
        };
        let idled = match outcome {
            Err(_) | Ok(Ok(IdleResponse::Timeout)) => Idled::Quiet,
            Ok(Ok(IdleResponse::NewData(data))) => match data.parsed() {
                Response::MailboxData(MailboxDatum::Exists(n)) => {
                    self.idle_exists = Some(*n);
                    Idled::NewMail
                }
                Response::MailboxData(MailboxDatum::Recent(_)) => Idled::NewMail,
                _ => Idled::Quiet,
            },
            // The stream ended: the server closed the connection.
            Ok(Ok(IdleResponse::ManualInterrupt)) => return Err(fail(ImapError::ConnectionLost)),
            Ok(Err(e)) => return Err(fail(e)),
        };
        let mut session = handle.done().await.map_err(fail)?;
        session.get_mut().get_mut().set_limit(Some(self.idle_limit));
        self.session = Some(session);
        Ok(idled)
    }
}

/// What one [`ImapInbound::idle_wait`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idled {
    /// The server announced new messages (`EXISTS` / `RECENT`).
    NewMail,
    /// Nothing new: time to renew the IDLE, or a change that brings no mail.
    Quiet,
}

/// What a panic of async-imap's parser is reported as.
const PARSER_PANIC: &str = "a response the IMAP parser cannot take";

/// Runs `f`, turning a panic into an error: imap-proto 0.17 panics on some server bytes (one
/// that is not UTF-8 right after a response code's `]`, as in `* OK [UNSEEN 1]\xff`: it slices
/// the lossily decoded text at byte 1), found by the fuzz target `imap_responses`. A server
/// that sends that is at fault; the spooler and its other transports go on.
async fn parser_panic_is_an_error<T>(
    peer: &str,
    f: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            Err(TransportError::new(
                TransportErrorKind::Temporary,
                format!("{peer} (the IMAP server sent something unexpected): {PARSER_PANIC}"),
            ))
        })
}

/// How a login is named in messages.
fn mechanism_name(mech: ImapAuth) -> &'static str {
    match mech {
        ImapAuth::Login => "LOGIN",
        ImapAuth::Plain => "AUTHENTICATE PLAIN",
        ImapAuth::Xoauth2 => "AUTHENTICATE XOAUTH2",
    }
}

/// The tag of our own pre-login CAPABILITY (async-imap's client has no such call before login).
const CAPABILITY_TAG: &str = "mcap";

/// The server's capabilities before login, upper case (`IMAP4REV1`, `AUTH=PLAIN`, ...): asked
/// for after any STARTTLS, since what the greeting advertised does not hold under TLS.
async fn pre_auth_capabilities(
    client: &mut async_imap::Client<ImapLink>,
) -> Result<Vec<String>, ImapError> {
    use async_imap::imap_proto::Capability;
    let stream = client.get_mut();
    stream
        .write_all(format!("{CAPABILITY_TAG} CAPABILITY\r\n").as_bytes())
        .await?;
    stream.flush().await?;
    let mut caps = Vec::new();
    loop {
        let Some(response) = client.read_response().await? else {
            return Err(ImapError::ConnectionLost);
        };
        match response.parsed() {
            Response::Capabilities(list) => {
                caps.extend(list.iter().map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                    Capability::Auth(m) => format!("AUTH={}", m.to_ascii_uppercase()),
                    Capability::Atom(a) => a.to_ascii_uppercase(),
                }));
            }
            Response::Done {
                tag,
                status,
                outcome,
            } if tag.0 == CAPABILITY_TAG => {
                return match status {
                    Status::Ok => Ok(caps),
                    _ => Err(ImapError::Bad(
                        outcome
                            .information
                            .as_deref()
                            .unwrap_or("CAPABILITY failed")
                            .to_string(),
                    )),
                };
            }
            _ => {}
        }
    }
}

/// The SASL responses of AUTHENTICATE PLAIN and XOAUTH2: the initial response to the first
/// (empty) challenge; to any later challenge (XOAUTH2's error details) an empty response, after
/// which the server gives its verdict.
struct Sasl {
    first: Option<Vec<u8>>,
}

impl Sasl {
    fn plain(user: &str, password: &str) -> Sasl {
        Sasl {
            first: Some(format!("\0{user}\0{password}").into_bytes()),
        }
    }

    fn xoauth2(user: &str, token: &str) -> Sasl {
        Sasl {
            first: Some(format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()),
        }
    }
}

impl async_imap::Authenticator for Sasl {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.first.take().unwrap_or_default()
    }
}

/// The store's id of a message: `UIDVALIDITY:UID`.
pub fn server_id(validity: u32, uid: u32) -> String {
    format!("{validity}:{uid}")
}

/// The new messages in batches (see [`super::download_batches`]). A large one counts at one
/// range (it is streamed to the store, never held whole): several share a batch, and with it
/// one sync and one `\Seen` STORE, and each one's ranges are asked for while the one before is
/// made durable.
#[doc(hidden)]
pub fn batches(listed: &[Listed]) -> Vec<&[Listed]> {
    super::download_batches(listed, |m| super::Cut::Weighs(m.size.min(u64::from(RANGE))))
}

/// A compact UID set: `1:5,7,9:10` (UIDs sorted ascending).
pub fn uid_set(uids: impl IntoIterator<Item = u32>) -> String {
    let mut out = String::new();
    let mut run: Option<(u32, u32)> = None;
    let push = |out: &mut String, (a, b): (u32, u32)| {
        if !out.is_empty() {
            out.push(',');
        }
        if a == b {
            out.push_str(&a.to_string());
        } else {
            out.push_str(&format!("{a}:{b}"));
        }
    };
    for uid in uids {
        run = match run {
            Some((a, b)) if uid == b.wrapping_add(1) => Some((a, uid)),
            Some(r) => {
                push(&mut out, r);
                Some((uid, uid))
            }
            None => Some((uid, uid)),
        };
    }
    if let Some(r) = run {
        push(&mut out, r);
    }
    out
}

/// What one FETCH response said: the UID, the size and the body, as far as asked for.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Fetched {
    pub uid: Option<u32>,
    pub size: Option<u32>,
    pub body: Option<Vec<u8>>,
    /// The origin of a partial body (`BODY[]<origin>`), which names the range it answers.
    pub origin: Option<u32>,
}

// What this transport makes of server data, as pure functions of async-imap's parsed responses
// (`imap_proto`), so the fuzz target `imap_responses` can drive them with anything a server sends.

/// The greeting: `OK` or `PREAUTH` goes on; any other status is the server turning us away
/// (with its words); anything but a status response is not an IMAP server.
#[doc(hidden)]
pub fn check_greeting(peer: &str, greeting: &Response<'_>) -> Result<(), TransportError> {
    match greeting {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data { outcome, .. } => Err(TransportError::new(
            TransportErrorKind::Connect,
            format!(
                "the IMAP server {peer} turned us away: {}",
                outcome
                    .information
                    .as_deref()
                    .unwrap_or("(no reason given)")
            ),
        )),
        _ => Err(TransportError::new(
            TransportErrorKind::Temporary,
            format!("{peer} did not greet us as an IMAP server does"),
        )),
    }
}

/// The UIDVALIDITY of a SELECT answer, `None` if it has none: async-imap ends SELECT quietly on
/// a closed connection, with an empty mailbox, and a real answer always has one (RFC 3501).
#[doc(hidden)]
pub fn selected_validity(mailbox: &async_imap::types::Mailbox) -> Option<u32> {
    mailbox.uid_validity
}

/// What one response to our `UID FETCH` (tag `tag`) means for the download.
#[doc(hidden)]
#[derive(Debug)]
pub enum FetchStep {
    /// A FETCH response: what it said of UID, size and body.
    Fetched(Fetched),
    /// Our command's tagged completion: `OK`, or the server's `NO` / `BAD` (any other status).
    Done(Result<(), ImapError>),
    /// Untagged news (EXISTS, EXPUNGE, a flag change) or another tag: nothing this download
    /// acts on.
    Other,
}

/// See [`FetchStep`].
#[doc(hidden)]
pub fn fetch_step(response: &Response<'_>, tag: &RequestId) -> FetchStep {
    use async_imap::imap_proto::AttributeValue;
    match response {
        Response::Fetch(_, attributes) => {
            let mut f = Fetched::default();
            for a in attributes {
                match a {
                    AttributeValue::Uid(uid) => f.uid = Some(*uid),
                    AttributeValue::Rfc822Size(size) => f.size = Some(*size),
                    AttributeValue::BodySection {
                        data: Some(data),
                        index,
                        ..
                    } => {
                        f.body = Some(data.to_vec());
                        f.origin = *index;
                    }
                    _ => {}
                }
            }
            FetchStep::Fetched(f)
        }
        Response::Done {
            tag: done,
            status,
            outcome,
            ..
        } if done == tag => {
            let words = outcome.information.as_deref().unwrap_or("").to_string();
            FetchStep::Done(match status {
                Status::Ok => Ok(()),
                Status::No => Err(ImapError::No(words)),
                _ => Err(ImapError::Bad(words)),
            })
        }
        _ => FetchStep::Other,
    }
}

/// The new messages from the size listing's FETCH responses: those with a UID above `last_uid`
/// ("n:*" also returns the highest UID when it is below n), ascending, each once (the first
/// response for it), with its size (0 if the server gave none).
#[doc(hidden)]
pub fn new_messages(fetched: impl IntoIterator<Item = Fetched>, last_uid: u32) -> Vec<Listed> {
    let mut listed: Vec<Listed> = fetched
        .into_iter()
        .filter_map(|f| {
            f.uid.map(|uid| Listed {
                uid,
                size: u64::from(f.size.unwrap_or(0)),
            })
        })
        .collect();
    listed.retain(|m| m.uid > last_uid);
    listed.sort_by_key(|m| m.uid);
    listed.dedup_by_key(|m| m.uid);
    listed
}

/// `UID FETCH set items`, read to the command's own completion. async-imap's `uid_fetch` stream
/// ends quietly on a `NO`, a `BAD` or a closed connection, which looked like "no messages" (the
/// fault matrix: a `NO` to the size listing reported "No new mail", and a drop during the
/// bodies would move the last UID past messages never stored); here each is an error.
async fn uid_fetch(
    session: &mut ImapSession,
    set: &str,
    items: &str,
) -> Result<Vec<Fetched>, ImapError> {
    let id = session
        .run_command(format!("UID FETCH {set} {items}"))
        .await?;
    read_fetch(session, &id).await
}

/// The responses to the `UID FETCH` tagged `id`, read to its completion (see [`uid_fetch`]).
async fn read_fetch(session: &mut ImapSession, id: &RequestId) -> Result<Vec<Fetched>, ImapError> {
    let mut out = Vec::new();
    loop {
        let Some(response) = session.read_response().await? else {
            return Err(ImapError::ConnectionLost);
        };
        match fetch_step(response.parsed(), id) {
            FetchStep::Fetched(f) => out.push(f),
            FetchStep::Done(verdict) => return verdict.map(|()| out),
            FetchStep::Other => {}
        }
    }
}

/// How much of a batch's FETCH answer the store takes at a time: the store writes one part
/// (on its own thread) while the next crosses the network.
const STORE_PART_BYTES: usize = 1024 * 1024;
const STORE_PART_COUNT: usize = 64;

/// `UID FETCH` of the small messages `small` (whole bodies, one command), stored as their
/// answers come in, in parts: which UIDs were stored (`true`) or the store already had
/// (`false`). Messages in `skip`, and answers nobody asked for (a flag change), are passed over;
/// a message that vanished is simply not in the result. Parts stored before a failure stay
/// stored (not yet durable, and nothing is done at the server for them), to be skipped by the
/// next download. `ahead`: the tag of this very command when it was sent ahead ([`small_fetch`],
/// during the batch before's sync); its answers are all still to be read.
async fn fetch_and_store<S: InboundSink>(
    session: &mut ImapSession,
    seen: &mut SeenStores,
    to: &Storing<'_, S>,
    small: &[Listed],
    skip: &[u32],
    ahead: Option<RequestId>,
) -> Result<(Vec<(u32, bool)>, Vec<u32>), TransportError> {
    let (peer, sink, validity, max_size) = (to.peer, to.sink, to.validity, to.max_size);
    let fail = |e: ImapError| connection_failed(peer, &e);
    let id = match ahead {
        Some(tag) => tag,
        None => session
            .run_command(small_fetch(small))
            .await
            .map_err(fail)?,
    };
    let wanted: std::collections::HashSet<u32> = small
        .iter()
        .map(|m| m.uid)
        .filter(|uid| !skip.contains(uid))
        .collect();
    let capacity = wanted.len();
    let (parts, mut incoming) = tokio::sync::mpsc::channel::<(Vec<u32>, Vec<Downloaded>)>(2);
    // Owns the sending half: when it ends, the store sees the end of the parts.
    // Bodies that came larger than max_message_size (the listing said less): not stored.
    let mut too_large: Vec<u32> = Vec::new();
    let too_large_out = &mut too_large;
    let reading = async move {
        let mut taken: std::collections::HashSet<u32> = std::collections::HashSet::new();
        let (mut uids, mut part, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        loop {
            let Some(response) = session
                .read_response()
                .await
                .map_err(|e| fail(ImapError::Io(e)))?
            else {
                return Err(fail(ImapError::ConnectionLost));
            };
            match fetch_step(response.parsed(), &id) {
                FetchStep::Fetched(f) => {
                    let (Some(uid), Some(body)) = (f.uid, f.body) else {
                        continue; // an unasked-for FETCH (a flag change)
                    };
                    if !wanted.contains(&uid) || !taken.insert(uid) {
                        continue;
                    }
                    if body.len() as u64 > max_size {
                        too_large_out.push(uid);
                        continue;
                    }
                    let summary = header_block(&body)
                        .and_then(|h| HeaderSummary::parse(h).ok())
                        .unwrap_or_default();
                    bytes += body.len();
                    uids.push(uid);
                    part.push(Downloaded {
                        server_id: server_id(validity, uid),
                        summary,
                        body,
                    });
                    if bytes >= STORE_PART_BYTES || part.len() >= STORE_PART_COUNT {
                        bytes = 0;
                        let next = (std::mem::take(&mut uids), std::mem::take(&mut part));
                        if parts.send(next).await.is_err() {
                            // The store failed; its error is the one to report.
                            return Ok(());
                        }
                    }
                }
                FetchStep::Done(verdict) => {
                    verdict.map_err(fail)?;
                    if !part.is_empty() {
                        let _ = parts.send((uids, part)).await;
                    }
                    return Ok(());
                }
                FetchStep::Other => seen.note(response.parsed()),
            }
        }
    };
    let storing = async {
        let mut done = Vec::with_capacity(capacity);
        while let Some((uids, part)) = incoming.recv().await {
            let stored = sink.deliver_batch(part).await.map_err(|e| {
                TransportError::store(
                    &format!(
                        "{peer}: messages UID {} were not stored",
                        uid_set(uids.iter().copied())
                    ),
                    &e,
                )
            })?;
            done.extend(uids.into_iter().zip(stored));
        }
        Ok::<_, TransportError>(done)
    };
    let (read, stored) = tokio::join!(reading, storing);
    // A store failure first: the reading then stopped because of it.
    let stored = stored?;
    read?;
    Ok((stored, too_large))
}

/// The messages of `group` to fetch in one small-message FETCH, when that is all its fetching
/// (nothing large, nothing fetched alone in ranges) and there is any: what the download's
/// loop would ask for it, so its FETCH can be sent ahead, during the batch before's sync.
fn small_only(
    group: &[Listed],
    known: &std::collections::HashSet<String>,
    validity: u32,
    tries: &BTreeMap<u32, u32>,
) -> Option<Vec<Listed>> {
    let alone = group.len() == 1 && tries.contains_key(&group[0].uid);
    if alone || group.iter().any(|m| m.size > u64::from(RANGE)) {
        return None;
    }
    let small: Vec<Listed> = group
        .iter()
        .filter(|m| !known.contains(&server_id(validity, m.uid)))
        .copied()
        .collect();
    (!small.is_empty()).then_some(small)
}

/// The command that fetches the small messages `small` whole, in one answer.
fn small_fetch(small: &[Listed]) -> String {
    format!(
        "UID FETCH {} (UID BODY.PEEK[])",
        uid_set(small.iter().map(|m| m.uid))
    )
}

/// `\Seen`, delete, or move, for messages that are durable in the store. A move the server
/// refuses is not fatal (the messages are stored; the download goes on with the rest): its
/// words come back, for the flush report. A folder that does not exist (`[TRYCREATE]`,
/// RFC 9051 §7.1) is created and the move tried again.
async fn apply_after_download(
    session: &mut ImapSession,
    peer: &str,
    after: &AfterDownload,
    uids: &[u32],
    uidplus: bool,
    can_move: bool,
) -> Result<Option<String>, TransportError> {
    let set = uid_set(uids.iter().copied());
    let fail = |e: ImapError| connection_failed(peer, &e);
    match after {
        AfterDownload::Keep => {}
        AfterDownload::Seen => store_flag(session, &set, "\\Seen").await.map_err(fail)?,
        AfterDownload::Delete => {
            store_flag(session, &set, "\\Deleted").await.map_err(fail)?;
            expunge(session, &set, uidplus).await.map_err(fail)?;
        }
        AfterDownload::Move(folder) => {
            let mut result = move_to(session, &set, folder, can_move).await;
            let mut created = String::new();
            if let Err(e @ ImapError::No(_)) = &result
                && server_words(e).contains("[TRYCREATE]")
            {
                match session.create(folder).await {
                    Ok(()) => {
                        tracing::info!(server = %peer, folder = %folder, "created the after_download folder");
                        result = move_to(session, &set, folder, can_move).await;
                    }
                    Err(ImapError::No(w) | ImapError::Bad(w)) => {
                        created = format!(
                            "; creating it was refused: {}",
                            server_words(&ImapError::No(w))
                        );
                    }
                    Err(other) => return Err(connection_failed(peer, &other)),
                }
            }
            match result {
                Ok(()) => {
                    if !can_move {
                        store_flag(session, &set, "\\Deleted").await.map_err(fail)?;
                        expunge(session, &set, uidplus).await.map_err(fail)?;
                    }
                }
                Err(e @ (ImapError::No(_) | ImapError::Bad(_))) => {
                    return Ok(Some(format!(
                        "stored UID {set}, but the IMAP server {peer} cannot move them to \"{folder}\" (after_download): {}{created}; they stay where they are",
                        server_words(&e)
                    )));
                }
                Err(other) => return Err(connection_failed(peer, &other)),
            }
        }
    }
    Ok(None)
}

/// `UID MOVE` (RFC 6851) when offered, else `UID COPY` (the caller then deletes the originals).
async fn move_to(
    session: &mut ImapSession,
    set: &str,
    folder: &str,
    can_move: bool,
) -> Result<(), ImapError> {
    if can_move {
        session.uid_mv(set, folder).await
    } else {
        session.uid_copy(set, folder).await
    }
}

/// `UID STORE`, checked to its completion (async-imap's `uid_store` stream, like its fetch,
/// takes a `NO` or a closed connection for success).
async fn store_flag(session: &mut ImapSession, set: &str, flag: &str) -> Result<(), ImapError> {
    session
        .run_command_and_check_ok(format!("UID STORE {set} +FLAGS.SILENT ({flag})"))
        .await
}

/// Expunges `set`: exactly those UIDs with UIDPLUS; otherwise every `\Deleted` message in the
/// folder (RFC 3501 has nothing finer).
async fn expunge(session: &mut ImapSession, set: &str, uidplus: bool) -> Result<(), ImapError> {
    if uidplus {
        session
            .run_command_and_check_ok(format!("UID EXPUNGE {set}"))
            .await
    } else {
        session.run_command_and_check_ok("EXPUNGE").await
    }
}

/// How many range fetches of one message are in flight at once: the next range crosses the
/// network while the store writes the one before.
const RANGES_AHEAD: usize = 2;

/// One range asked for.
struct Asked {
    uid: u32,
    offset: u64,
    tag: RequestId,
    /// The command's completion, once it came.
    verdict: Option<Result<(), ImapError>>,
}

/// The ranges asked for ahead (`BODY.PEEK[]<offset.RANGE>`): of the large message being
/// fetched, and of the next large one of its batch, asked for while the store finishes the one
/// before (its last writes, its fsyncs), so the connection does not stand idle meanwhile. A
/// server may run pipelined FETCHes side by side (Dovecot does), so answers are matched to
/// ranges by UID and origin and commands by their tags, in whatever order they come.
#[derive(Default)]
struct Ranges {
    /// Asked for, in order.
    asked: std::collections::VecDeque<Asked>,
    /// Answers come in, by UID and origin.
    got: std::collections::HashMap<(u32, u64), Vec<u8>>,
    /// The next offset to ask for, per UID.
    next: std::collections::HashMap<u32, u64>,
    /// The `\Seen` STOREs of the batches before, their answers read along with these.
    seen: SeenStores,
    /// The whole-body FETCH of the next large message, asked for ahead ([`fetch_whole`]):
    /// its UID and tag. Nothing reads its answer until that message's turn.
    whole: Option<(u32, RequestId)>,
}

/// A `\Seen` STORE sent for a batch made durable, not waited for: its answer comes while the
/// next batch is fetched; only once it is OK does the last UID move on to `mark`.
struct SeenStore {
    tag: RequestId,
    verdict: Option<Result<(), ImapError>>,
    mark: u32,
}

/// The `\Seen` STOREs not yet settled, oldest first. With the next batch's FETCH sent before a
/// batch's sync, the STORE of the batch before may still be unanswered when the next one goes
/// out: each is settled in turn, and the last UID moves past a batch only once its STORE and
/// every one before it are OK.
#[derive(Default)]
struct SeenStores(std::collections::VecDeque<SeenStore>);

impl SeenStores {
    /// Takes a STORE's completion if `response` is one.
    fn note(&mut self, response: &Response<'_>) {
        if let Response::Done { tag, .. } = response
            && let Some(store) = self.0.iter_mut().find(|s| &s.tag == tag)
            && let FetchStep::Done(verdict) = fetch_step(response, &store.tag)
        {
            store.verdict = Some(verdict);
        }
    }

    /// How many are still unanswered.
    fn open(&self) -> usize {
        self.0.iter().filter(|s| s.verdict.is_none()).count()
    }

    /// Whether one was answered with anything but OK.
    fn refused(&self) -> bool {
        self.0.iter().any(|s| matches!(s.verdict, Some(Err(_))))
    }
}

/// Settles the `\Seen` STOREs answered so far, in order: a `NO` (or a broken connection) fails
/// the download as a STORE waited for would; past each OK one the last UID moves on. With
/// `wait`, the answers still due are read first (nothing else may be outstanding then: what is
/// not a STORE's answer is passed over); without, nothing is read, so a FETCH sent ahead keeps
/// its answers for the next batch and the STOREs answered among them are settled later.
async fn settle_seen(
    session: &mut ImapSession,
    seen: &mut SeenStores,
    peer: &str,
    sink: &impl InboundSink,
    (last_key, last_uid): (&str, &mut u32),
    wait: bool,
) -> Result<(), TransportError> {
    let fail = |e: ImapError| connection_failed(peer, &e);
    while let Some(front) = seen.0.front() {
        if front.verdict.is_none() {
            if !wait {
                break;
            }
            let Some(response) = session
                .read_response()
                .await
                .map_err(|e| fail(ImapError::Io(e)))?
            else {
                return Err(fail(ImapError::ConnectionLost));
            };
            seen.note(response.parsed());
            continue;
        }
        let Some(SeenStore {
            verdict: Some(verdict),
            mark,
            ..
        }) = seen.0.pop_front()
        else {
            break;
        };
        verdict.map_err(fail)?;
        if mark > *last_uid {
            *last_uid = mark;
            sink.set_state(last_key, &last_uid.to_string())
                .await
                .map_err(store_failure)?;
        }
    }
    Ok(())
}

impl Ranges {
    /// The next offset to ask for of `uid` (0: nothing asked yet).
    fn next(&self, uid: u32) -> u64 {
        self.next.get(&uid).copied().unwrap_or(0)
    }

    /// How many ranges of `uid` are asked for and not yet taken.
    fn in_flight(&self, uid: u32) -> usize {
        self.asked.iter().filter(|a| a.uid == uid).count()
    }

    /// Asks for the next range of `uid`.
    async fn ask(&mut self, session: &mut ImapSession, uid: u32) -> Result<(), ImapError> {
        let offset = self.next(uid);
        let tag = session
            .run_command(format!(
                "UID FETCH {uid} (UID BODY.PEEK[]<{offset}.{RANGE}>)"
            ))
            .await?;
        self.asked.push_back(Asked {
            uid,
            offset,
            tag,
            verdict: None,
        });
        self.next.insert(uid, offset + u64::from(RANGE));
        Ok(())
    }

    /// Asks for ranges of `m` until [`RANGES_AHEAD`] are in flight or its listed size is
    /// covered (the first range at least).
    async fn ask_ahead(&mut self, session: &mut ImapSession, m: Listed) -> Result<(), ImapError> {
        while self.in_flight(m.uid) < RANGES_AHEAD
            && (self.next(m.uid) == 0 || self.next(m.uid) < m.size)
        {
            self.ask(session, m.uid).await?;
        }
        Ok(())
    }

    /// The first range of `uid` asked for and not yet taken, once its command completed: its
    /// offset and bytes, the bytes `None` when the server sent no such range (the message is
    /// gone); `None` when nothing of `uid` is asked for. A `NO` or `BAD` to the command is an
    /// error. Answers for other ranges read meanwhile are kept for their turn.
    async fn take(
        &mut self,
        session: &mut ImapSession,
        uid: u32,
    ) -> Result<Option<(u64, Option<Vec<u8>>)>, ImapError> {
        loop {
            match self.asked.iter().position(|a| a.uid == uid) {
                None => return Ok(None),
                Some(i) if self.asked[i].verdict.is_some() => {
                    let Some(Asked {
                        offset,
                        verdict: Some(verdict),
                        ..
                    }) = self.asked.remove(i)
                    else {
                        return Ok(None);
                    };
                    verdict?;
                    return Ok(Some((offset, self.got.remove(&(uid, offset)))));
                }
                Some(_) => {}
            }
            let Some(response) = session.read_response().await? else {
                return Err(ImapError::ConnectionLost);
            };
            match response.parsed() {
                Response::Done { tag, .. } => {
                    let parsed = response.parsed();
                    if let Some(entry) = self.asked.iter_mut().find(|a| &a.tag == tag) {
                        if let FetchStep::Done(verdict) = fetch_step(parsed, &entry.tag) {
                            entry.verdict = Some(verdict);
                        }
                    } else {
                        self.seen.note(parsed);
                    }
                }
                other => {
                    if let FetchStep::Fetched(f) = fetch_step(other, &RequestId(String::new()))
                        && let (Some(from), Some(origin), Some(body)) = (f.uid, f.origin, f.body)
                        && self
                            .asked
                            .iter()
                            .any(|a| a.uid == from && a.offset == u64::from(origin))
                    {
                        self.got.insert((from, u64::from(origin)), body);
                    }
                }
            }
        }
    }

    /// Reads the answers to whatever of `uid` is still asked for (ranges past its end), so
    /// nothing of it is left behind on the connection.
    async fn finish(&mut self, session: &mut ImapSession, uid: u32) -> Result<(), ImapError> {
        while self.take(session, uid).await?.is_some() {}
        self.next.remove(&uid);
        Ok(())
    }

    /// Reads the answers to everything still asked for, so the connection is ready for the
    /// next command.
    async fn finish_all(&mut self, session: &mut ImapSession) -> Result<(), ImapError> {
        while let Some(uid) = self.asked.front().map(|a| a.uid) {
            self.finish(session, uid).await?;
        }
        Ok(())
    }
}

/// Where fetched messages go, and what one may weigh: the same for every fetch of a download.
struct Storing<'a, S> {
    peer: &'a str,
    sink: &'a S,
    validity: u32,
    /// `[spooler] max_message_size`: a larger body is read and dropped, never stored.
    max_size: u64,
}

/// How a large message is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Large {
    /// Whole, its body streamed past async-imap ([`fetch_whole`]): the usual way.
    Whole,
    /// In ranges ([`fetch_ranged`]): a message that failed before, the most conservative way.
    Ranged,
}

/// Fetches the large message `m` as `mode` says and streams it into the store; `next`, the
/// batch's next large message, is asked for while this one's store finishes.
async fn fetch_large<S: InboundSink>(
    mode: Large,
    session: &mut ImapSession,
    ranges: &mut Ranges,
    to: &Storing<'_, S>,
    m: Listed,
    next: Option<Listed>,
) -> Result<Ranged, TransportError> {
    match mode {
        Large::Whole => fetch_whole(session, ranges, to, m, next).await,
        Large::Ranged => fetch_ranged(session, ranges, to, m, next).await,
    }
}

/// Fetches one large message in ranges and streams it into the store through a pipe: the
/// fetching and the storing run side by side, and at most a range or two is in memory.
/// A fetch that breaks off makes the store's read fail, so nothing half is stored. `next`, the
/// batch's next large message, has its first ranges asked for once all of this one's (by its
/// listed size) are: they come while this one's store finishes.
async fn fetch_ranged<S: InboundSink>(
    session: &mut ImapSession,
    ranges: &mut Ranges,
    to: &Storing<'_, S>,
    m: Listed,
    next: Option<Listed>,
) -> Result<Ranged, TransportError> {
    let (peer, sink, validity, max_size) = (to.peer, to.sink, to.validity, to.max_size);
    let fail = |e: ImapError| connection_failed(peer, &e);
    // The listed size tells how many ranges to ask for ahead; a message that turns out longer
    // is read on until a short range. Some may be asked already (as the one before's `next`).
    ranges.ask_ahead(session, m).await.map_err(fail)?;
    let first = match ranges.take(session, m.uid).await.map_err(fail)? {
        Some((_, Some(first))) => first,
        _ => {
            // Not handed over (gone meanwhile, or the answer lacked its UID); the other answers
            // are read, so the connection is ready again.
            ranges.finish(session, m.uid).await.map_err(fail)?;
            return Ok(Ranged::Missing);
        }
    };
    let summary = header_block(&first)
        .and_then(|h| HeaderSummary::parse(h).ok())
        .unwrap_or_default();
    let complete = Arc::new(AtomicBool::new(false));
    // Room for the ranges in flight, so the fetching never waits for the store's every write.
    let (mut writer, reader) = tokio::io::duplex(RANGES_AHEAD * RANGE as usize);
    let reader = CompleteReader {
        inner: reader,
        complete: Arc::clone(&complete),
    };
    let producer = async move {
        let broke = |e: ImapError| Stop::Broke(connection_failed(peer, &e).message);
        let mut chunk = first;
        let mut offset = 0u64;
        loop {
            let len = chunk.len();
            offset += len as u64;
            if offset > max_size {
                // Nothing of it is stored (the store sees the pipe end early); the answers
                // still due are read, so the connection goes on with the next message.
                ranges.finish(session, m.uid).await.map_err(broke)?;
                return Err(Stop::TooLarge);
            }
            // A full range may have more behind it: keep the next ones asked for before the
            // store takes this one.
            if len >= RANGE as usize {
                while ranges.in_flight(m.uid) < RANGES_AHEAD
                    && (ranges.next(m.uid) < m.size || ranges.in_flight(m.uid) == 0)
                {
                    ranges.ask(session, m.uid).await.map_err(broke)?;
                }
            }
            // All of this one is asked for: the next one's first ranges go out now.
            if let Some(n) = next
                && ranges.next(m.uid) >= m.size
            {
                ranges.ask_ahead(session, n).await.map_err(broke)?;
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| Stop::Broke(format!("the store stopped reading: {e}")))?;
            if len < RANGE as usize {
                break;
            }
            chunk = match ranges.take(session, m.uid).await.map_err(broke)? {
                Some((at, Some(c))) if at == offset => c,
                // Each range follows the one before: one longer than asked for is out of step.
                Some((_, Some(_))) | None => {
                    return Err(Stop::Broke(format!(
                        "message UID {}: the server sent a range longer than asked for",
                        m.uid
                    )));
                }
                Some((_, None)) => {
                    return Err(Stop::Broke(format!(
                        "message UID {} vanished while being fetched",
                        m.uid
                    )));
                }
            };
        }
        // Ranges asked for past the end (the listed size was larger): read and dropped, so the
        // connection is ready for the next command.
        ranges.finish(session, m.uid).await.map_err(broke)?;
        complete.store(true, Ordering::SeqCst);
        let _ = writer.shutdown().await;
        drop(writer);
        Ok::<(), Stop>(())
    };
    let id = server_id(validity, m.uid);
    let consumer = sink.deliver(&id, &summary, m.size, reader);
    let (produced, stored) = tokio::join!(producer, consumer);
    match produced {
        Err(Stop::TooLarge) => return Ok(Ranged::TooLarge),
        Err(Stop::Broke(why)) => {
            return Err(TransportError::new(
                TransportErrorKind::Temporary,
                format!("{peer}: message UID {} was not stored: {why}", m.uid),
            ));
        }
        Ok(()) => {}
    }
    stored
        .map(Ranged::Stored)
        .map_err(|e| not_stored(peer, m.uid, e))
}

/// The pipe between a large message's answer and the store: room for what crosses while the
/// store writes the part before.
const WHOLE_PIPE: usize = 1024 * 1024;

/// Fetches one large message whole (`UID FETCH n (UID BODY.PEEK[])`) and streams its body into
/// the store as it comes, past async-imap (`literal.rs`'s diversion): Dovecot sends a whole
/// body in about half the time the same bytes take in ranges. `next`, the batch's next large
/// message, is asked for as soon as this one's answer is complete: the server reads and sends
/// it while the store finishes this one (its fsyncs). A fetch that breaks off makes the
/// store's read fail, so nothing half is stored; a body announced over `max_size` is read and
/// dropped. A server whose answer does not name the UID before `BODY[]` has its literal capped
/// as any other: the download fails and the message is fetched in ranges next time, alone.
async fn fetch_whole<S: InboundSink>(
    session: &mut ImapSession,
    ranges: &mut Ranges,
    to: &Storing<'_, S>,
    m: Listed,
    next: Option<Listed>,
) -> Result<Ranged, TransportError> {
    let (peer, sink, validity, max_size) = (to.peer, to.sink, to.validity, to.max_size);
    let fail = |e: ImapError| connection_failed(peer, &e);
    let complete = Arc::new(AtomicBool::new(false));
    let (writer, reader) = tokio::io::duplex(WHOLE_PIPE);
    session
        .get_mut()
        .arm(literal::Divert::new(m.uid, max_size, writer));
    let asked = match ranges.whole.take() {
        Some((uid, tag)) if uid == m.uid => Ok(tag),
        _ => session.run_command(whole_fetch(m.uid)).await,
    };
    let producer = async {
        let answered = async {
            let tag = asked?;
            // The body itself goes into the pipe; what comes here is the rest of the answer
            // (or all of it, from a server the diversion did not recognise: then capped).
            let mut body: Option<Vec<u8>> = None;
            // The UID of the answer whose body was diverted (it reaches the parser empty).
            let mut carrier: Option<Option<u32>> = None;
            loop {
                let Some(response) = session.read_response().await? else {
                    return Err(ImapError::ConnectionLost);
                };
                match fetch_step(response.parsed(), &tag) {
                    FetchStep::Fetched(f) => match f.body {
                        Some(b) if b.is_empty() => {
                            carrier.get_or_insert(f.uid);
                        }
                        Some(b) if f.uid == Some(m.uid) => body = Some(b),
                        _ => {}
                    },
                    FetchStep::Done(verdict) => {
                        verdict?;
                        break;
                    }
                    FetchStep::Other => ranges.seen.note(response.parsed()),
                }
            }
            // This answer is in: the next one is asked for now and crosses the network while
            // the store finishes this one (nobody reads the connection until its turn).
            if let Some(n) = next {
                let tag = session.run_command(whole_fetch(n.uid)).await?;
                ranges.whole = Some((n.uid, tag));
            }
            Ok((body, carrier))
        }
        .await;
        // Whatever happened, the pipe leaves the connection: the store's read then ends.
        let divert = session.get_mut().disarm();
        let (body, carrier) = answered.map_err(fail)?;
        let Some(mut divert) = divert else {
            return Ok(Ranged::Missing);
        };
        if divert.too_large() {
            return Ok(Ranged::TooLarge);
        }
        if divert.announced.is_some() {
            // The server said OK to the whole answer: the body is whole, and it is this
            // message's only if the answer named this UID. Only then does the pipe close
            // complete and the store take it.
            if !divert.done || carrier != Some(Some(m.uid)) {
                return Err(TransportError::new(
                    TransportErrorKind::Temporary,
                    format!(
                        "{peer}: message UID {} was not stored: the answer to its FETCH named another message ({carrier:?})",
                        m.uid
                    ),
                ));
            }
            complete.store(true, Ordering::SeqCst);
            drop(divert.take_writer());
            return Ok(Ranged::Stored(true));
        }
        // Not diverted: a body small enough for the parser, or none (the message is gone).
        let (Some(body), Some(mut writer)) = (body, divert.take_writer()) else {
            return Ok(Ranged::Missing);
        };
        if body.len() as u64 > max_size {
            return Ok(Ranged::TooLarge);
        }
        writer
            .write_all(&body)
            .await
            .map_err(|e| not_stored(peer, m.uid, mapi::MapiError::call_failed(e.to_string())))?;
        complete.store(true, Ordering::SeqCst);
        Ok(Ranged::Stored(true))
    };
    let id = server_id(validity, m.uid);
    let consumer = async {
        let mut reader = CompleteReader {
            inner: reader,
            complete: Arc::clone(&complete),
        };
        // The header is in the first range's worth (as for a ranged message).
        let mut first = Vec::new();
        (&mut reader)
            .take(u64::from(RANGE))
            .read_to_end(&mut first)
            .await?;
        if first.is_empty() {
            return Ok(None);
        }
        let summary = header_block(&first)
            .and_then(|h| HeaderSummary::parse(h).ok())
            .unwrap_or_default();
        let body = std::io::Cursor::new(first).chain(reader);
        Ok::<_, std::io::Error>(Some(sink.deliver(&id, &summary, m.size, body).await))
    };
    let (produced, stored) = tokio::join!(producer, consumer);
    match produced? {
        Ranged::Stored(_) => {}
        other => return Ok(other),
    }
    match stored {
        Ok(Some(stored)) => stored
            .map(Ranged::Stored)
            .map_err(|e| not_stored(peer, m.uid, e)),
        Ok(None) => Ok(Ranged::Missing),
        Err(e) => Err(TransportError::new(
            TransportErrorKind::Temporary,
            format!("{peer}: message UID {} was not stored: {e}", m.uid),
        )),
    }
}

/// The command that fetches message `uid` whole.
fn whole_fetch(uid: u32) -> String {
    format!("UID FETCH {uid} (UID BODY.PEEK[])")
}

/// What became of a message [`fetch_ranged`] asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ranged {
    /// Stored (`true`), or the store had it (`false`).
    Stored(bool),
    /// The server's answers did not have it.
    Missing,
    /// It turned out larger than `max_message_size`: nothing of it stored.
    TooLarge,
}

/// Why the fetching of a large message stopped early.
enum Stop {
    Broke(String),
    TooLarge,
}

/// The flush report's words for a message over `max_message_size` (`listed`: the size the
/// listing gave, when that was the reason).
fn too_large_note(peer: &str, folder: &str, uid: u32, listed: Option<u64>, max: u64) -> String {
    match listed {
        Some(size) => format!(
            "message UID {uid} in \"{folder}\" on {peer} is {size} bytes, more than max_message_size ({max} bytes); left on the server"
        ),
        None => format!(
            "message UID {uid} in \"{folder}\" on {peer} is larger than max_message_size ({max} bytes), more than its listed size; left on the server"
        ),
    }
}

/// A pipe's reading end that turns an early end (the writer dropped without finishing) into an
/// error, so the store never takes a truncated message as whole.
struct CompleteReader {
    inner: tokio::io::DuplexStream,
    complete: Arc<AtomicBool>,
}

impl AsyncRead for CompleteReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                if this.complete.load(Ordering::SeqCst) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the IMAP fetch broke off",
                    )))
                }
            }
            other => other,
        }
    }
}

/// The server's own words from a NO/BAD, or the error.
/// What the server said, for a person. async-imap keeps a tagged NO or BAD as Rust debug text
/// (`code: Some(AuthenticationFailed), info: Some("Authentication failed.")`); this gives it
/// back as the server sent it: `[AUTHENTICATIONFAILED] Authentication failed.`
fn server_words(e: &ImapError) -> String {
    match e {
        ImapError::No(text) | ImapError::Bad(text) => {
            from_debug(text).unwrap_or_else(|| text.trim().to_string())
        }
        other => other.to_string(),
    }
}

/// `code: …, info: …` (or `outcome: Outcome { code: …, information: … }`) as async-imap writes
/// it, back into the response's own text; `None` for any other shape (then the text is shown
/// as it is).
fn from_debug(text: &str) -> Option<String> {
    let text = text.trim();
    let (code, info) = match text.strip_prefix("outcome: Outcome { ") {
        Some(outcome) => outcome
            .strip_suffix(" }")?
            .strip_prefix("code: ")?
            .split_once(", information: ")?,
        None => text.strip_prefix("code: ")?.split_once(", info: ")?,
    };
    let info = match info {
        "None" => String::new(),
        quoted => unescape_debug(quoted.strip_prefix("Some(\"")?.strip_suffix("\")")?),
    };
    // A response code in RFC 5530's spelling (`AuthenticationFailed` → `AUTHENTICATIONFAILED`);
    // one with arguments is left out rather than shown in Rust's syntax.
    let code = code
        .strip_prefix("Some(")
        .and_then(|c| c.strip_suffix(')'))
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric()))
        .map(str::to_ascii_uppercase);
    Some(match (code, info.is_empty()) {
        (Some(code), true) => format!("[{code}]"),
        (Some(code), false) => format!("[{code}] {info}"),
        (None, _) => info,
    })
}

/// Undoes `{:?}`'s escapes in a string (quotes, backslashes, control characters as spaces).
fn unescape_debug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'r' | 't') => out.push(' '),
            Some('u') => {
                // \u{XXXX}
                let hex: String = chars.by_ref().skip(1).take_while(|&h| h != '}').collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// SELECT or EXAMINE failed: refused (the folder is the profile's mistake) or the link broke.
fn folder_failed(peer: &str, folder: &str, e: ImapError) -> TransportError {
    match e {
        ImapError::No(_) | ImapError::Bad(_) => TransportError::new(
            TransportErrorKind::Permanent,
            format!(
                "the IMAP server {peer} cannot open folder \"{folder}\": {}",
                server_words(&e)
            ),
        ),
        other => connection_failed(peer, &other),
    }
}

fn connection_failed(peer: &str, e: &ImapError) -> TransportError {
    if let ImapError::Io(io) = e
        && io.kind() == std::io::ErrorKind::TimedOut
    {
        return TransportError::new(
            TransportErrorKind::Timeout,
            format!("IMAP server {peer}: {io}"),
        );
    }
    // async-imap reports a response its parser cannot take as an I/O error carrying nom's
    // debug output; what helps is that the server sent something that is not IMAP, and what.
    if let ImapError::Io(io) = e
        && let Some((_, sent)) = io.to_string().split_once(" during parsing of ")
    {
        return TransportError::new(
            TransportErrorKind::Temporary,
            format!(
                "{peer} (the IMAP server sent something unexpected): a response that is not IMAP: {}",
                sent.trim()
            ),
        );
    }
    let what = match e {
        ImapError::Io(_) | ImapError::ConnectionLost => "the connection failed",
        ImapError::Parse(_) => "the IMAP server sent something unexpected",
        ImapError::No(_) | ImapError::Bad(_) => "the IMAP server refused",
        _ => "IMAP failed",
    };
    TransportError::new(
        TransportErrorKind::Temporary,
        format!("{peer} ({what}): {}", server_words(e)),
    )
}

fn store_failure(e: mapi::MapiError) -> TransportError {
    TransportError::store("the store failed", &e)
}

fn not_stored(peer: &str, uid: u32, e: mapi::MapiError) -> TransportError {
    TransportError::store(&format!("{peer}: message UID {uid} was not stored"), &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_the_server_wrote_it() {
        let no = |t: &str| server_words(&ImapError::No(t.into()));
        assert_eq!(
            no(r#"code: Some(AuthenticationFailed), info: Some("Authentication failed.")"#),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            no(r#"code: None, info: Some("Mailbox \"x\" doesn't exist: C:\\tmp\u{e9}")"#),
            "Mailbox \"x\" doesn't exist: C:\\tmp\u{e9}"
        );
        assert_eq!(no("code: Some(Unavailable), info: None"), "[UNAVAILABLE]");
        assert_eq!(
            no(r#"outcome: Outcome { code: None, information: Some("scripted failure") }"#),
            "scripted failure"
        );
        assert_eq!(
            no(r#"code: Some(Other("X-CUSTOM")), info: Some("later")"#),
            "later"
        );
        assert_eq!(no("  plain words  "), "plain words");
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set([1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set([4]), "4");
        assert_eq!(uid_set([]), "");
    }

    #[test]
    fn plain_when_advertised_login_otherwise_and_only_what_is_offered_when_insisted_on() {
        let caps = |list: &[&str]| list.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let with = |auth| {
            let mut config = ImapConfig {
                host: "imap.test".into(),
                port: 143,
                security: Security::None,
                username: None,
                credential: None,
                auth: None,
                folder: "INBOX".into(),
                after_download: AfterDownload::Seen,
                idle: false,
                ca_file: None,
                insecure_skip_verify: false,
                allow_plaintext_auth: false,
            };
            config.auth = auth;
            ImapInbound::new(&config, "mail", "me@test", false)
        };
        let plain = caps(&["IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN"]);
        let bare = caps(&["IMAP4REV1"]);
        assert_eq!(with(None).mechanism(&plain), Ok(ImapAuth::Plain));
        assert_eq!(with(None).mechanism(&bare), Ok(ImapAuth::Login));
        let login = Some(ImapAuth::Login);
        assert_eq!(with(login).mechanism(&plain), Ok(ImapAuth::Login));
        let xoauth2 = Some(ImapAuth::Xoauth2);
        let error = with(xoauth2).mechanism(&plain).expect_err("not offered");
        assert_eq!(error.kind, TransportErrorKind::Auth);
        assert!(
            error
                .message
                .contains("it offers AUTHENTICATE PLAIN LOGIN and the LOGIN command"),
            "{error}"
        );
        let oauth = caps(&["IMAP4REV1", "AUTH=XOAUTH2"]);
        assert_eq!(with(xoauth2).mechanism(&oauth), Ok(ImapAuth::Xoauth2));
        assert!(with(Some(ImapAuth::Plain)).mechanism(&bare).is_err());
    }

    #[test]
    fn large_messages_share_batches_counted_at_one_range() {
        let m = |uid, size| Listed { uid, size };
        let listed = [m(1, 10), m(2, 10), m(3, 5_000_000), m(4, 10)];
        assert_eq!(batches(&listed).len(), 1);
        // Ten of 10 MB: eight ranges' worth (BATCH_BYTES) per batch.
        let big: Vec<Listed> = (1..=10).map(|uid| m(uid, 10 << 20)).collect();
        let b = batches(&big);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![8, 2]);
    }
}

//! The spooler: moves messages from the outgoing queue to transports and from transports into
//! the store — when a client calls `FlushQueues`, or on the profile's schedule — and shows what
//! it does in the status table.
//!
//! - this file: flushing (MAPI's flush protocol, mapi-reference.md §5), routing, status bits;
//! - `ndr.rs`: non-delivery reports;
//! - `sink.rs`: where inbound transports put what they download;
//! - `schedule.rs`: flushes on the profile's intervals.
//!
//! One flush per transport at a time: a flush that meets one already running on a transport
//! waits for it, then moves what is still due ("joins" it), so it never fails with
//! `MAPI_E_BUSY` and never misses a message submitted in between.

mod idle;
pub mod ndr;
mod node;
mod recover;
mod schedule;
mod sink;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mapi::constants::*;
use mapi::tag::*;
use mapi::{EntryId, FileTime, MapiCode, MapiError, MapiResult, Prop, PropValue};
use tokio::sync::Mutex as AsyncMutex;

use crate::flush::{
    FlushFlags, FlushReport, MessageOutcome, MessageReport, RecipientReport, TransportReport,
};
use crate::message::header_block;
use crate::profile::{OutboundConfig, Profile, TransportConfig};
use crate::status::{StatusBoard, StatusKind, initial_rows, transport_idle_code};
use crate::store::{
    AnyStore, DeliveryResult, Folder, LeaseFilter, LeasedMessage, LeasedOutcome,
    MessageDisposition, MessageId, RecipientOutcome, Store,
};
use crate::transport::probe::{self, TransportCheck};
use crate::transport::smtp::Sent;
use crate::transport::{
    ChunkSource, Envelope, EnvelopeRecipient, Inbound, Outbound, RecipientResult, TransportError,
    TransportErrorKind,
};

use sink::StoreSink;

/// How many messages one lease takes: small, so a slow server does not hold many messages
/// leased while it works through them.
const LEASE_BATCH: u32 = 32;
/// The most messages one lease takes when the queue is long.
const LEASE_BATCH_MAX: u32 = 128;

/// How many messages to lease next: [`LEASE_BATCH`] at first, then as many as the flush has
/// taken so far (fewer lease transactions for a long queue), at most [`LEASE_BATCH_MAX`].
fn lease_batch(taken: usize) -> u32 {
    LEASE_BATCH
        .max(u32::try_from(taken).unwrap_or(u32::MAX))
        .min(LEASE_BATCH_MAX)
}

/// At most this many attempts are recorded in one store transaction.
const RECORD_BATCH_MAX: usize = 64;

/// How many attempts the workers may hand over ahead of the recorder (the capacity of its
/// channel). Each is a message the server may have accepted that is not yet recorded as sent,
/// so a crash sends it again: with an unbounded channel the pipelined workers outran the
/// recorder and a kill re-sent about 25 messages instead of about 6. A worker that finds the
/// channel full waits for the recorder's next transaction; the recorder still records more
/// than this per transaction, since the workers refill the channel while it gathers.
const RECORD_AHEAD: usize = 8;

/// How long the recorder waits for more attempts to record with the first one: short beside
/// a lease (minutes) and beside what an outcome waits for anyway, long enough for the workers
/// of a busy flush to finish a few dozen messages (a flush of 4,000 2 KB messages: 66
/// transactions instead of 177, and less CPU a message).
const RECORD_GATHER: Duration = Duration::from_millis(2);

/// One message an upload worker tried, on its way to the recorder.
struct Attempted {
    /// Its 1-based position in the flush.
    index: usize,
    message: LeasedMessage,
    results: Result<Vec<(u32, RecipientResult)>, TransportError>,
    /// The server's reply to the message's data (`250 2.0.0 Ok: queued as …`), for the mail
    /// log's `sent` lines; empty when there is none.
    reply: String,
}

/// A message a worker sent up to its end of data, the server's reply to it not read yet
/// (pipelined with the next message's envelope): recorded once that reply is in.
struct Held {
    index: usize,
    message: LeasedMessage,
    /// Its open recipients' row ids, in the envelope's order.
    rows: Vec<u32>,
}

/// How [`Spooler::send_one`] left a message.
enum Step {
    /// Every open recipient's result, by row id.
    Done(Vec<(u32, RecipientResult)>),
    /// Sent up to its end of data; the results come with the reply (the row ids, in order).
    Held(Vec<u32>),
}

/// The messages of one flush's upload, shared by its workers.
#[derive(Default)]
struct UploadQueue {
    /// Leased and not yet handed to a worker, in lease (queue) order, with their 1-based
    /// position in the flush.
    pending: std::collections::VecDeque<(usize, LeasedMessage)>,
    /// Every message handed out this flush (a set: a long forced flush asks of every message
    /// it leases whether it was tried already).
    attempted: std::collections::HashSet<MessageId>,
    /// Leased again after being tried (FLUSH_FORCE): released when the flush ends.
    held: Vec<MessageId>,
    /// Nothing more is due.
    exhausted: bool,
    /// The server cannot be reached: the rest wait for the next attempt.
    connect_error: Option<TransportError>,
    lease_error: Option<MapiError>,
    reports: Vec<(usize, MessageReport)>,
}

/// What the upload workers of one flush of one transport share.
struct UploadRun<'a, S: Store + 'static> {
    spooler: &'a Spooler<S>,
    slot: &'a Slot,
    flags: FlushFlags,
    scope: Scope,
    /// How many messages the flush expects to send, for its progress.
    total_hint: usize,
    queue: AsyncMutex<UploadQueue>,
    gate: tokio::sync::watch::Sender<Gate>,
    /// The transport's password, resolved by the first connection and given to the others;
    /// dropped with the flush.
    secret: tokio::sync::OnceCell<crate::credential::Secret>,
    /// The flush's `connect_command`, run at most once for both directions.
    tunnel: &'a Tunnel,
}

/// The outcome of a flush's `connect_command`: run by whichever direction connects first, and
/// only once per flush of a transport (an interactive one asks its person once, not once for
/// sending and again for receiving).
type Tunnel = tokio::sync::OnceCell<Result<(), TransportError>>;

/// An upload that ends before its normal end (its task panicked, or the runtime is shutting
/// down) gives back the leases it still holds: those not yet handed to a worker and those held
/// to reach past them (`FLUSH_FORCE`), so that they are due again at once instead of when
/// their leases expire. The normal end takes them out first and releases them itself.
impl<S: Store + 'static> Drop for UploadRun<'_, S> {
    fn drop(&mut self) {
        let q = self.queue.get_mut();
        let ids: Vec<MessageId> = q
            .pending
            .drain(..)
            .map(|(_, m)| m.message.id)
            .chain(q.held.drain(..))
            .collect();
        if ids.is_empty() {
            return;
        }
        self.spooler.let_go(&ids);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let spooler = self.spooler.clone();
        runtime.spawn(async move {
            for id in ids {
                let _ = spooler
                    .inner
                    .store
                    .release_lease(id, &spooler.inner.owner)
                    .await;
            }
        });
    }
}

/// A flush counted in on the spooler row; dropped, it is counted out and the row's flush bits
/// of directions no other flush is running are cleared: on every path, a panic included, so
/// `watch --until-idle` never waits on a flush that is gone.
struct FlushCounted<'a, S: Store + 'static> {
    spooler: &'a Spooler<S>,
    up: bool,
    down: bool,
    /// What the flush did, set when it ends normally.
    summary: Option<String>,
}

impl<S: Store + 'static> Drop for FlushCounted<'_, S> {
    fn drop(&mut self) {
        // Another flush of the same direction still running keeps its bit set.
        let clear = self.spooler.count_flushes(self.up, self.down, false);
        let summary = self
            .summary
            .take()
            .unwrap_or_else(|| "The flush stopped before its end".to_string());
        self.spooler.inner.board.change_bits(
            &StatusKind::Spooler,
            0,
            clear,
            vec![
                text(PR_STATUS_STRING, &summary),
                Prop::new(PR_MSP_LAST_FLUSH_TIME, PropValue::SysTime(FileTime::now())),
            ],
        );
    }
}

/// A transport row's flush bits, set for one direction of a flush: cleared when dropped unless
/// the flush's normal end cleared them already (with its outcome in the row).
struct RowBits<'a> {
    board: &'a StatusBoard,
    kind: &'a StatusKind,
    bits: i32,
}

impl Drop for RowBits<'_> {
    fn drop(&mut self) {
        if self.board.status_code(self.kind) & self.bits != 0 {
            self.board.change_bits(
                self.kind,
                0,
                self.bits,
                vec![
                    text(PR_STATUS_STRING, "The flush stopped before its end"),
                    Prop::new(PR_REMOTE_PROGRESS, PropValue::Long(-1)),
                    phase("idle"),
                ],
            );
        }
    }
}

/// Whether a flush's first connection is up, which lets the other workers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Waiting,
    Connected,
    Done,
}

/// The spooler of one profile, over any [`Store`] (statically dispatched: the store's calls
/// are on every message's path). Cheap to clone; clones share everything.
pub struct Spooler<S: Store = AnyStore> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Spooler<S> {
    fn clone(&self) -> Self {
        Spooler {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<S> {
    profile: Profile,
    store: S,
    board: StatusBoard,
    /// Who holds our leases: host, process and start time, so a restarted spooler is someone
    /// else and a dead one's leases simply expire.
    owner: String,
    host: String,
    slots: Vec<Slot>,
    background: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How many flushes run now, per direction (upload, download): the spooler row's
    /// `STATUS_OUTBOUND_FLUSH` / `STATUS_INBOUND_FLUSH` is cleared only when the last one of
    /// that direction ends, not when the first of two overlapping flushes does.
    flushing: std::sync::Mutex<(u32, u32)>,
    /// Upload workers write to the store one at a time: SQLite takes one writer, and a
    /// writer that finds the lock taken sleeps in the busy handler (milliseconds).
    store_writes: AsyncMutex<()>,
    metrics: crate::metrics::Metrics,
    /// This spooler as a node of the queue (its `instance` is `owner`).
    node: crate::store::NodeInfo,
    /// The messages this spooler holds leases on and is working on: the heartbeat extends
    /// these, and only these. A lease this process still owns in the store but has given up
    /// on (its outcome could not be recorded) is left to expire, so the message is tried again.
    held: std::sync::Mutex<std::collections::HashSet<MessageId>>,
    /// The heartbeat task (`node.rs`), aborted when the spooler goes.
    heartbeat: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    health: std::sync::Mutex<node::NodeHealth>,
    /// Something other than the clock says the queue has due messages (a dead node's
    /// messages, the store back after an outage, another node's submit): the schedule loop
    /// flushes the upload side at once.
    wake: Arc<tokio::sync::Notify>,
}

impl<S> Drop for Inner<S> {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.get_mut().ok().and_then(|t| t.take()) {
            task.abort();
        }
    }
}

/// What a flush covers beyond its flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scope {
    /// Only this message (`postqueue -i`); it is tried even if its backoff holds it back.
    pub only: Option<MessageId>,
    /// A flush the spooler's own clock started, not a client: it skips transports that are
    /// backing off after connection failures.
    pub scheduled: bool,
    /// A group with `offline = "include"`: its transports connect even while offline.
    pub include_offline: bool,
    /// A flush of every transport, or of a group with `offline = "skip"`: an offline
    /// transport is left out (reported as skipped), not failed.
    pub skip_offline: bool,
}

struct Slot {
    config: TransportConfig,
    kind: StatusKind,
    busy: AsyncMutex<()>,
    offline: AtomicBool,
    /// Connection failures in a row, and until when scheduled flushes leave it alone.
    backoff: std::sync::Mutex<TransportBackoff>,
}

/// A transport that keeps failing to connect backs off as a whole, so the spooler's clock does
/// not hammer a server that is down; a client's explicit flush still tries.
#[derive(Debug, Default)]
struct TransportBackoff {
    failures: u32,
    until: Option<FileTime>,
    reason: String,
}

impl<S: Store + 'static> Spooler<S> {
    /// Starts the spooler on an open store: builds the status table and logs every transport on
    /// (an inbound post office gets its mailboxes). A transport that fails to log on is marked
    /// `STATUS_FAILURE` with the reason; the others go on.
    pub async fn start(profile: Profile, store: S) -> MapiResult<Spooler<S>> {
        Self::start_with(profile, store, true).await
    }

    /// [`Spooler::start`] for a process that only looks at the store and exits (`mapispool
    /// status`, `queue`, ...): the same status table, but the spooler does not join the queue:
    /// no node row is written (nor its heartbeat, nor its stop), and a dead spooler's leases
    /// are left for a working spooler to take back. Such a spooler must not flush: its leases
    /// would name a node the store does not list.
    pub async fn start_to_read(profile: Profile, store: S) -> MapiResult<Spooler<S>> {
        Self::start_with(profile, store, false).await
    }

    async fn start_with(profile: Profile, store: S, join: bool) -> MapiResult<Spooler<S>> {
        let offline = profile.spooler.offline;
        let store_display = store.display_name();
        let board = StatusBoard::new(initial_rows(&profile.transports, &store_display, offline));
        let host = hostname();
        let started = FileTime::now();
        let nanos = started.0;
        let owner = format!("{host}:{}:{nanos}", std::process::id());
        let node = crate::store::NodeInfo {
            instance: owner.clone(),
            name: profile.spooler.node.clone().unwrap_or_else(|| host.clone()),
            host: host.clone(),
            pid: std::process::id(),
            started,
        };
        let slots = profile
            .transports
            .iter()
            .map(|t| Slot {
                config: t.clone(),
                kind: StatusKind::Transport(t.name.clone()),
                busy: AsyncMutex::new(()),
                offline: AtomicBool::new(offline),
                backoff: std::sync::Mutex::new(TransportBackoff::default()),
            })
            .collect();
        let spooler = Spooler {
            inner: Arc::new(Inner {
                owner,
                host,
                profile,
                store,
                board,
                slots,
                background: std::sync::Mutex::new(Vec::new()),
                flushing: std::sync::Mutex::new((0, 0)),
                store_writes: AsyncMutex::new(()),
                metrics: crate::metrics::Metrics::new(),
                node,
                held: std::sync::Mutex::new(std::collections::HashSet::new()),
                heartbeat: std::sync::Mutex::new(None),
                health: std::sync::Mutex::new(node::NodeHealth::default()),
                wake: Arc::new(tokio::sync::Notify::new()),
            }),
        };
        spooler.restore_offline().await;
        for slot in &spooler.inner.slots {
            spooler.log_on(slot).await;
        }
        // One count serves the status rows and tells whether anything is leased at all (taking
        // leases back moves no message between routes, so the rows stay right).
        let counts = spooler.refresh_queue_counts().await;
        if !join {
            return Ok(spooler);
        }
        if counts.iter().any(|c| c.sending > 0)
            && let Err(e) = spooler.reclaim_dead_leases().await
        {
            tracing::warn!(error = %e, "cannot take back a dead spooler's messages; their leases will expire");
        }
        spooler.join_queue().await;
        Ok(spooler)
    }

    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }

    pub fn store(&self) -> &S {
        &self.inner.store
    }

    pub fn board(&self) -> &StatusBoard {
        &self.inner.board
    }

    /// What this spooler counted, for `/metrics` and the status page.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The status object kinds that exist in this profile (for `OpenEntry`).
    pub fn has_transport(&self, name: &str) -> bool {
        self.slot(name).is_some()
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.inner.slots.iter().find(|s| s.config.name == name)
    }

    /// The transport a new message leaves by, MAPI's rule adapted to accounts: the one named,
    /// else the one whose address is the sender's (the account it was written from), else the
    /// first in profile order that can send.
    ///
    /// Errors: `MAPI_E_NOT_FOUND` for a named transport that does not exist or cannot send;
    /// `MAPI_E_NO_SUPPORT` when no transport can send at all.
    pub fn route(&self, sender: Option<&str>, named: Option<&str>) -> MapiResult<String> {
        self.inner.profile.route(sender, named)
    }

    fn names(&self) -> String {
        self.inner
            .slots
            .iter()
            .map(|s| s.config.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `IMAPIStatus::FlushQueues` on the spooler: every transport in profile order, or the one
    /// `target` names. Synchronous unless `FLUSH_ASYNC_OK`, which starts the work and returns at
    /// once with `asynchronous` set (progress then shows in the status table).
    ///
    /// On a queue several nodes share (PostgreSQL), the flush runs here, over the whole shared
    /// queue (every due message no other node holds a lease on), and an upload of every
    /// transport also signals the other nodes ([`Store::signal_flush`]), which join in with an
    /// ordinary upload of their own. The report is this node's part.
    ///
    /// Errors: `MAPI_E_UNKNOWN_FLAGS`, `MAPI_E_INVALID_PARAMETER` (no direction, or a target
    /// that is not a transport), `MAPI_E_INVALID_ENTRYID` / `MAPI_E_UNKNOWN_ENTRYID` for a bad
    /// target. A transport that fails does not fail the call: its part of the report says why.
    pub async fn flush_queues(
        &self,
        target: Option<&EntryId>,
        flags: FlushFlags,
    ) -> MapiResult<FlushReport> {
        flags.validate()?;
        let names = self.target_names(target)?;
        let scope = Scope {
            skip_offline: target.is_none(),
            ..Scope::default()
        };
        // A shared queue (PostgreSQL): this node flushes it all, and the other nodes are asked
        // to join in (their own flags: a forced flush forces only here). Best effort: without
        // them this flush still moves every due message no other node is sending.
        if target.is_none()
            && flags.contains(FlushFlags::UPLOAD)
            && let Err(e) = self.inner.store.signal_flush(&self.inner.owner).await
        {
            tracing::warn!(error = %e, "cannot ask the other nodes to flush; flushing here alone");
        }
        self.start_flush(names, flags, scope).await
    }

    fn target_names(&self, target: Option<&EntryId>) -> MapiResult<Vec<String>> {
        Ok(match target {
            None => self
                .inner
                .slots
                .iter()
                .map(|s| s.config.name.clone())
                .collect(),
            Some(id) => vec![self.transport_named_by(id)?],
        })
    }

    /// `postqueue -i`: flushes one queued message on the transport it leaves by, trying it even
    /// if its retry backoff holds it back (once; the backoff is not reset). Nothing else is sent
    /// and nothing is received; `flags` needs `FLUSH_UPLOAD` (`FLUSH_DOWNLOAD` is ignored).
    ///
    /// Errors: `MAPI_E_INVALID_ENTRYID` for an ID that is not a message of this store;
    /// `MAPI_E_NOT_IN_QUEUE` when the message is not (or no longer) queued; those of
    /// [`Spooler::flush_queues`] for bad flags.
    pub async fn flush_message(
        &self,
        entry_id: &EntryId,
        flags: FlushFlags,
    ) -> MapiResult<FlushReport> {
        flags.validate()?;
        let id = MessageId::from_entry_id(entry_id)?;
        let entry = self.inner.store.queue_entry(id).await?.ok_or_else(|| {
                MapiError::new(
                    MapiCode::NotInQueue,
                    format!(
                        "message {entry_id} is not in the outgoing queue (sent, aborted, or never submitted); `mapispool queue` lists what is"
                    ),
                )
            })?;
        let transport = match entry.message.transport.clone() {
            Some(name) if self.has_transport(&name) => name,
            Some(name) => {
                return Err(MapiError::not_found(format!(
                    "message {entry_id} leaves by transport \"{name}\", which this profile does not have (it has: {})",
                    self.names()
                )));
            }
            None => {
                let name = self.route(entry.message.sender_address.as_deref(), None)?;
                self.inner.store.set_transport(id, Some(&name)).await?;
                name
            }
        };
        // One message goes out; nothing is fetched.
        let flags = FlushFlags((flags.0 & !FlushFlags::DOWNLOAD.0) | FlushFlags::UPLOAD.0);
        let scope = Scope {
            only: Some(id),
            ..Scope::default()
        };
        self.start_flush(vec![transport], flags, scope).await
    }

    /// Flushes a send/receive group (`flush --group`): its transports in profile order, as one
    /// report, moving only what the group's direction allows (`flags` is masked by it).
    ///
    /// Errors: `MAPI_E_NOT_FOUND` for a group the profile does not have;
    /// `MAPI_E_INVALID_PARAMETER` when the mask leaves nothing to do (an upload of a group
    /// that only receives); those of [`Spooler::flush_queues`] for bad flags.
    pub async fn flush_group(&self, name: &str, flags: FlushFlags) -> MapiResult<FlushReport> {
        flags.validate()?;
        let (names, flags, scope) = self.group_flush(name, flags, false)?;
        self.start_flush(names, flags, scope).await
    }

    /// What flushing group `name` means: its transports, the flags masked by its direction,
    /// and its scope.
    pub(crate) fn group_flush(
        &self,
        name: &str,
        flags: FlushFlags,
        scheduled: bool,
    ) -> MapiResult<(Vec<String>, FlushFlags, Scope)> {
        let groups = self.inner.profile.groups();
        let Some(group) = groups.iter().find(|g| g.name == name) else {
            let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            return Err(MapiError::not_found(format!(
                "there is no send/receive group \"{name}\"; the profile has: {}",
                known.join(", ")
            )));
        };
        let mut bits = flags.0;
        if !group.direction.sends() {
            bits &= !FlushFlags::UPLOAD.0;
        }
        if !group.direction.receives() {
            bits &= !FlushFlags::DOWNLOAD.0;
        }
        let masked = FlushFlags(bits);
        if !masked.contains(FlushFlags::UPLOAD) && !masked.contains(FlushFlags::DOWNLOAD) {
            return Err(MapiError::invalid_parameter(format!(
                "group \"{name}\" only {}s (direction = \"{}\"), and this flush asked for {flags}",
                if group.direction.sends() {
                    "send"
                } else {
                    "receive"
                },
                if group.direction.sends() {
                    "send"
                } else {
                    "receive"
                },
            )));
        }
        let scope = Scope {
            scheduled,
            include_offline: group.offline == crate::profile::OfflinePolicy::Include,
            skip_offline: group.offline == crate::profile::OfflinePolicy::Skip,
            ..Scope::default()
        };
        Ok((group.transports.clone(), masked, scope))
    }

    /// Runs a flush of `names`, or starts it in the background under `FLUSH_ASYNC_OK`.
    ///
    /// Either way the flush is its own task, which the caller only awaits: a caller that goes
    /// away (a daemon client's connection closes, its future is dropped) leaves the flush
    /// running to its end, so outcomes already on the wire are recorded and no lease is
    /// left to expire and send a message twice. [`Spooler::wait_idle`] waits for it.
    ///
    /// Errors: `MAPI_E_CALL_FAILED` when the flush's task panicked (its guards have cleared its
    /// status bits and given its leases back).
    pub(crate) async fn start_flush(
        &self,
        names: Vec<String>,
        flags: FlushFlags,
        scope: Scope,
    ) -> MapiResult<FlushReport> {
        let spooler = self.clone();
        let asynchronous = flags.contains(FlushFlags::ASYNC_OK);
        let handle = tokio::spawn(async move {
            let report = spooler.run_flush(&names, flags, scope).await;
            if asynchronous {
                tracing::info!(
                    transports = report.transports.len(),
                    complete = report.is_complete(),
                    "asynchronous flush finished"
                );
            }
            report
        });
        if asynchronous {
            let handle = tokio::spawn(async move {
                let _ = handle.await;
            });
            if let Ok(mut bg) = self.inner.background.lock() {
                bg.retain(|h| !h.is_finished());
                bg.push(handle);
            }
            return Ok(FlushReport {
                flags,
                asynchronous: true,
                transports: Vec::new(),
            });
        }
        // Tracked like an asynchronous flush, so that logging off waits for it even when its
        // caller is gone.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let tracked = tokio::spawn(async move {
            let _ = done_tx.send(handle.await);
        });
        if let Ok(mut bg) = self.inner.background.lock() {
            bg.retain(|h| !h.is_finished());
            bg.push(tracked);
        }
        match done_rx.await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(MapiError::call_failed(format!(
                "the flush stopped unexpectedly ({e}); its messages stay queued and are tried again"
            ))),
            Err(_) => Err(MapiError::call_failed(
                "the flush was stopped (the spooler is shutting down); its messages stay queued",
            )),
        }
    }

    /// The transport an entry ID names, for `lpTargetTransport`.
    pub fn transport_named_by(&self, id: &EntryId) -> MapiResult<String> {
        match StatusKind::from_entry_id(id)? {
            StatusKind::Transport(name) if self.has_transport(&name) => Ok(name),
            StatusKind::Transport(name) => Err(MapiError::unknown_entry_id(format!(
                "{id} names transport \"{name}\", which this profile does not have (it has: {})",
                self.names()
            ))),
            other => Err(MapiError::invalid_parameter(format!(
                "{id} is the {other:?} status object, not a transport; the target of FlushQueues must be a transport's PR_ENTRYID"
            ))),
        }
    }

    /// Waits until every asynchronous flush started so far has finished.
    pub async fn wait_idle(&self) {
        let handles: Vec<_> = match self.inner.background.lock() {
            Ok(mut bg) => bg.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for h in handles {
            let _ = h.await;
        }
    }

    async fn run_flush(&self, names: &[String], flags: FlushFlags, scope: Scope) -> FlushReport {
        let board = &self.inner.board;
        let up = flags.contains(FlushFlags::UPLOAD);
        let down = flags.contains(FlushFlags::DOWNLOAD);
        let mut bits = 0;
        if up {
            bits |= STATUS_OUTBOUND_FLUSH;
        }
        if down {
            bits |= STATUS_INBOUND_FLUSH;
        }
        self.count_flushes(up, down, true);
        board.change_bits(
            &StatusKind::Spooler,
            bits,
            0,
            vec![text(PR_STATUS_STRING, "Flushing")],
        );
        let mut counted = FlushCounted {
            spooler: self,
            up,
            down,
            summary: None,
        };
        let mut report = FlushReport {
            flags,
            asynchronous: false,
            transports: Vec::new(),
        };
        // MAPI's order: one transport at a time, in profile order, outbound then inbound.
        for name in names {
            if let Some(slot) = self.slot(name) {
                let began = std::time::Instant::now();
                let part = self.flush_transport(slot, flags, scope).await;
                let smtp = matches!(slot.config.outbound, Some(OutboundConfig::Smtp(_)));
                self.inner
                    .metrics
                    .transport_flushed(&part, began.elapsed(), smtp);
                report.transports.push(part);
            }
        }
        counted.summary = Some(summarize(&report));
        drop(counted);
        self.refresh_queue_counts().await;
        report
    }

    /// Counts a flush in (`start`) or out, per direction; on the way out, returns the spooler
    /// row's flush bits to clear: those of directions no other flush is running.
    fn count_flushes(&self, up: bool, down: bool, start: bool) -> i32 {
        let Ok(mut guard) = self.inner.flushing.lock() else {
            // A panic while counting: clear nothing rather than a bit another flush owns.
            return 0;
        };
        let running = &mut *guard;
        let mut clear = 0;
        for (wanted, count, bit) in [
            (up, &mut running.0, STATUS_OUTBOUND_FLUSH),
            (down, &mut running.1, STATUS_INBOUND_FLUSH),
        ] {
            if !wanted {
                continue;
            }
            if start {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    clear |= bit;
                }
            }
        }
        clear
    }

    async fn flush_transport(
        &self,
        slot: &Slot,
        flags: FlushFlags,
        scope: Scope,
    ) -> TransportReport {
        let _running = slot.busy.lock().await;
        let mut report = TransportReport {
            transport: slot.config.name.clone(),
            entry_id: slot.kind.entry_id(),
            upload: false,
            download: false,
            messages: Vec::new(),
            received: 0,
            error: None,
            error_code: None,
            skipped: None,
        };
        let board = &self.inner.board;
        if slot.offline.load(Ordering::SeqCst) && !scope.include_offline {
            let why = format!(
                "transport \"{}\" is offline; bring it online (ValidateState FORCE_XP_CONNECT) to flush it",
                slot.config.name
            );
            if scope.skip_offline {
                report.skipped = Some(why);
            } else {
                fail(&mut report, &MapiError::new(MapiCode::NetworkError, why));
            }
            return report;
        }
        if flags.contains(FlushFlags::NO_UI) && slot.config.needs_person() {
            let why = format!(
                "cannot honour FLUSH_NO_UI: transport \"{}\" needs a person ({}); flush it without --no-ui, or give it a password_command",
                slot.config.name,
                needs_person_reason(&slot.config)
            );
            board.change_bits(
                &slot.kind,
                STATUS_FAILURE,
                0,
                vec![text(PR_STATUS_STRING, &why), phase("failed")],
            );
            fail(&mut report, &MapiError::new(MapiCode::LogonFailed, why));
            return report;
        }
        if scope.scheduled
            && !flags.contains(FlushFlags::FORCE)
            && let Some((until, reason)) = self.waiting(slot)
        {
            // The spooler's own clock leaves a failing transport alone until its wait is over;
            // the row already says until when.
            let why = format!("waiting until {}: {reason}", until.to_rfc3339());
            fail(&mut report, &MapiError::new(MapiCode::NetworkError, why));
            return report;
        }
        board.change_bits(&slot.kind, 0, STATUS_FAILURE, Vec::new());
        let mut link = Link::Untried;
        let tunnel = Tunnel::new();
        if flags.contains(FlushFlags::UPLOAD) && slot.config.outbound.is_some() {
            report.upload = true;
            link = link.and(self.upload(slot, flags, scope, &tunnel, &mut report).await);
        }
        if flags.contains(FlushFlags::DOWNLOAD) && slot.config.inbound.is_some() {
            report.download = true;
            link = link.and(self.download(slot, flags, &tunnel, &mut report).await);
        }
        match link {
            Link::Failed(reason) => {
                // Messages the failure kept from the server wait as long as the transport.
                if let Some(until) = self.back_off(slot, &reason) {
                    for m in &mut report.messages {
                        if m.outcome == MessageOutcome::Deferred && m.retry_at.is_none() {
                            m.retry_at = Some(until);
                        }
                    }
                }
            }
            Link::Connected => self.connected(slot),
            Link::Untried => {}
        }
        report
    }

    /// The wait a transport is in after connection failures, if it is not over yet.
    fn waiting(&self, slot: &Slot) -> Option<(FileTime, String)> {
        let state = slot.backoff.lock().ok()?;
        let until = state.until?;
        (FileTime::now() < until).then(|| (until, state.reason.clone()))
    }

    /// Counts a connection failure: the transport waits, growing like a message's backoff
    /// (`retry_initial` doubling to `retry_max`), and its row says until when and why.
    fn back_off(&self, slot: &Slot, reason: &str) -> Option<FileTime> {
        let Ok(mut state) = slot.backoff.lock() else {
            return None;
        };
        let wait = self.backoff(state.failures);
        state.failures = state.failures.saturating_add(1);
        let until = FileTime::from(FileTime::now().to_system_time() + wait);
        state.until = Some(until);
        state.reason = reason.to_string();
        let failures = state.failures;
        drop(state);
        tracing::info!(transport = %slot.config.name, failures, until = %until.to_rfc3339(), "transport backs off");
        self.inner.board.change_bits(
            &slot.kind,
            STATUS_FAILURE,
            0,
            vec![
                text(
                    PR_STATUS_STRING,
                    &format!("waiting until {}: {reason}", until.to_rfc3339()),
                ),
                phase("waiting"),
                Prop::new(PR_MSP_NEXT_ATTEMPT_TIME, PropValue::SysTime(until)),
            ],
        );
        Some(until)
    }

    /// A connection worked: the transport's backoff starts again from nothing.
    fn connected(&self, slot: &Slot) {
        if let Ok(mut state) = slot.backoff.lock() {
            *state = TransportBackoff::default();
        }
        self.inner
            .board
            .remove(&slot.kind, PR_MSP_NEXT_ATTEMPT_TIME);
    }

    async fn upload(
        &self,
        slot: &Slot,
        flags: FlushFlags,
        scope: Scope,
        tunnel: &Tunnel,
        report: &mut TransportReport,
    ) -> Link {
        let board = &self.inner.board;
        let store = &self.inner.store;
        let name = &slot.config.name;
        board.change_bits(
            &slot.kind,
            STATUS_OUTBOUND_FLUSH | STATUS_OUTBOUND_ACTIVE,
            0,
            vec![
                text(PR_STATUS_STRING, "Checking the outgoing queue"),
                phase("sending"),
            ],
        );
        let _bits = RowBits {
            board,
            kind: &slot.kind,
            bits: STATUS_OUTBOUND_FLUSH | STATUS_OUTBOUND_ACTIVE,
        };
        let total_hint = if scope.only.is_some() {
            1
        } else {
            self.queued_for(slot)
        };
        // Up to `connections` workers, each with its own connection, take messages from one
        // queue in lease order. The first connects alone; the others join once it has, so a
        // server that cannot be reached costs one failed connection, not one per worker.
        let connections = match &slot.config.outbound {
            Some(OutboundConfig::Smtp(c)) if scope.only.is_none() => c.connections.max(1),
            _ => 1,
        };
        let mut run = UploadRun {
            spooler: self,
            slot,
            flags,
            scope,
            total_hint,
            queue: AsyncMutex::new(UploadQueue::default()),
            gate: tokio::sync::watch::channel(Gate::Waiting).0,
            secret: tokio::sync::OnceCell::new(),
            tunnel,
        };
        // Workers hand each attempt to one recorder, which writes whatever has piled up since
        // its last commit in one transaction (group commit) while the workers go on sending,
        // at most RECORD_AHEAD attempts ahead of it.
        //
        // No deadlock on the full channel: a worker hands an attempt over only while it holds
        // no lock (neither `run.queue` nor `store_writes`), and the recorder takes those locks
        // one at a time, never while waiting on the channel. So a worker waiting for room
        // never stands between the recorder and the locks it needs to make that room.
        let (sent_tx, sent_rx) = tokio::sync::mpsc::channel(RECORD_AHEAD);
        let workers: Vec<_> = (0..connections as usize)
            .map(|worker| self.upload_worker(&run, worker, sent_tx.clone()))
            .collect();
        drop(sent_tx);
        tokio::join!(
            futures_util::future::join_all(workers),
            self.record_attempts(sent_rx, &run.queue)
        );
        let q = std::mem::take(run.queue.get_mut());
        drop(run);
        self.let_go(&q.held);
        for id in q.held {
            let _ = store.release_lease(id, &self.inner.owner).await;
        }
        if let Some(e) = &q.lease_error {
            fail(report, e);
        }
        let mut done = q.reports;
        done.sort_by_key(|(index, _)| *index);
        report.messages.extend(done.into_iter().map(|(_, r)| r));
        let attempted = q.attempted;
        let connect_error = q.connect_error;
        let sent = report.count(MessageOutcome::Sent);
        let waiting = report.count(MessageOutcome::Deferred);
        let failed = report.count(MessageOutcome::Failed) + report.count(MessageOutcome::Partial);
        let mut status = if attempted.is_empty() {
            "Nothing to send".to_string()
        } else {
            format!("Sent {sent} of {}", attempted.len())
        };
        if waiting > 0 {
            status.push_str(&format!(", {waiting} waiting for retry"));
        }
        if failed > 0 {
            status.push_str(&format!(", {failed} undeliverable (report in Inbox)"));
        }
        let mut set = 0;
        // Messages were tried and none failed to reach the server: the link works.
        let link = match &connect_error {
            Some(e) => Link::Failed(e.message.clone()),
            None if attempted.is_empty() => Link::Untried,
            None => Link::Connected,
        };
        if let Some(e) = connect_error {
            status = format!("{}: {}", name, e.message);
            set = STATUS_FAILURE;
            report.error = Some(e.message.clone());
            report.error_code = e.to_mapi().code.name().map(str::to_string);
        }
        board.change_bits(
            &slot.kind,
            set,
            STATUS_OUTBOUND_FLUSH | STATUS_OUTBOUND_ACTIVE,
            vec![
                text(PR_STATUS_STRING, &status),
                Prop::new(PR_REMOTE_PROGRESS, PropValue::Long(-1)),
                phase(if set != 0 { "failed" } else { "idle" }),
            ],
        );
        link
    }

    /// One of a flush's upload workers: takes the next message from `queue` (leasing the
    /// next batch when it runs dry), sends it over this worker's own connection and records
    /// the outcome, until nothing is due.
    async fn upload_worker(
        &self,
        run: &UploadRun<'_, S>,
        worker: usize,
        sent: tokio::sync::mpsc::Sender<Attempted>,
    ) {
        let UploadRun {
            spooler: _,
            slot,
            flags,
            scope,
            total_hint,
            ref queue,
            ref gate,
            secret: _,
            tunnel: _,
        } = *run;
        let board = &self.inner.board;
        let store = &self.inner.store;
        let name = &slot.config.name;
        if worker > 0 {
            let mut rx = gate.subscribe();
            match rx.wait_for(|g| *g != Gate::Waiting).await {
                Ok(g) if *g == Gate::Connected => {}
                _ => return,
            }
        }
        let mut outbound: Option<Outbound> = None;
        // The message sent last on this connection, when its final reply is still unread: the
        // next message's envelope goes out with its end of data (RFC 2920).
        let mut held: Option<Held> = None;
        loop {
            let (index, mut message, connect_error) = {
                let mut q = queue.lock().await;
                if q.pending.is_empty() && held.is_some() {
                    // Nothing in hand to send behind it: its reply is read now, not after a
                    // lease (or never, at the end).
                    drop(q);
                    self.confirm_held(&mut outbound, &mut held, &sent).await;
                    continue;
                }
                if q.pending.is_empty() && !q.exhausted {
                    let leased = {
                        let _writing = self.inner.store_writes.lock().await;
                        store
                            .lease_due(
                                &self.inner.owner,
                                store.now(),
                                self.lease_time(),
                                lease_batch(q.attempted.len()),
                                LeaseFilter {
                                    transport: Some(name.clone()),
                                    // One message named by the caller is tried now whatever its
                                    // backoff says.
                                    include_backoff: flags.contains(FlushFlags::FORCE)
                                        || scope.only.is_some(),
                                    only: scope.only,
                                },
                            )
                            .await
                    };
                    match leased {
                        Ok(leased) if leased.is_empty() => q.exhausted = true,
                        Ok(leased) => {
                            if let Ok(mut held) = self.inner.held.lock() {
                                held.extend(leased.iter().map(|m| m.message.id));
                            }
                            // FLUSH_FORCE makes deferred messages due again at once; each is
                            // tried once a flush. One already tried stays leased until the
                            // flush ends, so that the next lease reaches past it instead of
                            // taking the same batch again.
                            for m in leased {
                                if !q.attempted.insert(m.message.id) {
                                    q.held.push(m.message.id);
                                } else {
                                    let index = q.attempted.len();
                                    q.pending.push_back((index, m));
                                }
                            }
                        }
                        Err(e) => {
                            q.lease_error = Some(e);
                            q.exhausted = true;
                        }
                    }
                }
                match q.pending.pop_front() {
                    Some((index, m)) => (index, m, q.connect_error.clone()),
                    None if q.exhausted => break,
                    None => continue,
                }
            };
            let total = total_hint.max(index);
            board.update(
                &slot.kind,
                vec![
                    text(PR_STATUS_STRING, &format!("Sending {index} of {total}")),
                    Prop::new(
                        PR_REMOTE_PROGRESS,
                        PropValue::Long(((index - 1) * 100 / total) as i32),
                    ),
                    text(PR_REMOTE_PROGRESS_TEXT, &format!("{index} of {total}")),
                ],
            );
            let mut given_up = None;
            let results = if let Some(err) = connect_error {
                Err(err)
            } else {
                self.send_one(run, &mut outbound, &mut message, worker == 0, &mut given_up)
                    .await
            };
            // The held message's reply came before this one's envelope replies (or its
            // connection was given up): it is recorded first.
            if let Some(h) = held.take() {
                let confirmed = given_up
                    .take()
                    .or_else(|| outbound.as_mut().and_then(Outbound::take_confirmed));
                match confirmed {
                    Some(c) => Self::hand_over(&sent, h, Some(c)).await,
                    // Not given up and not confirmed: this message never reached the wire.
                    None if outbound.is_some() => held = Some(h),
                    None => Self::hand_over(&sent, h, None).await,
                }
            }
            if outbound.is_some() {
                gate.send_if_modified(|g| {
                    let changed = *g == Gate::Waiting;
                    if changed {
                        *g = Gate::Connected;
                    }
                    changed
                });
            }
            if let Err(e) = &results
                && is_link_failure(e)
            {
                // The server cannot be reached: the rest of the queue waits for the next
                // attempt rather than each message timing out in turn.
                let mut q = queue.lock().await;
                if q.connect_error.is_none() {
                    q.connect_error = Some(e.clone());
                }
            }
            let results = match results {
                Ok(Step::Held(rows)) => {
                    if let Some(h) = held.take() {
                        // Cannot happen (a message goes behind another only once that one's
                        // reply is read); if it did, its outcome is unknown: it goes again.
                        Self::hand_over(&sent, h, None).await;
                    }
                    held = Some(Held {
                        index,
                        message,
                        rows,
                    });
                    continue;
                }
                Ok(Step::Done(results)) => Ok(results),
                Err(e) => Err(e),
            };
            // The recorder outlives every worker, so the send cannot fail; if it ever did, the
            // message would stay leased until its lease expires and be tried again.
            let reply = match (&results, &outbound) {
                (Ok(_), Some(o)) => o.last_reply().unwrap_or_default(),
                _ => String::new(),
            };
            let _ = sent
                .send(Attempted {
                    index,
                    message,
                    results,
                    reply,
                })
                .await;
        }
        self.confirm_held(&mut outbound, &mut held, &sent).await;
        if worker == 0 {
            // Workers still waiting to connect have nothing left to do.
            gate.send_if_modified(|g| {
                let changed = *g == Gate::Waiting;
                if changed {
                    *g = Gate::Done;
                }
                changed
            });
        }
        if let Some(mut o) = outbound {
            o.close().await;
        }
    }

    /// Reads the final reply of the worker's held message and hands its outcome to the
    /// recorder; its recipients wait for a retry when the reply never comes.
    async fn confirm_held(
        &self,
        outbound: &mut Option<Outbound>,
        held: &mut Option<Held>,
        sent: &tokio::sync::mpsc::Sender<Attempted>,
    ) {
        let Some(h) = held.take() else {
            return;
        };
        let confirmed = match outbound.as_mut() {
            Some(o) => {
                // The transport names a stalled reply within `timeout`; this is the backstop.
                let backstop = self.inner.profile.spooler.timeout.saturating_mul(2);
                if tokio::time::timeout(backstop, o.confirm()).await.is_ok() {
                    o.take_confirmed()
                } else {
                    let c = o.give_up();
                    *outbound = None;
                    c
                }
            }
            None => None,
        };
        Self::hand_over(sent, h, confirmed).await;
    }

    /// Hands a held message to the recorder with its results; without any (its reply was
    /// lost), its recipients wait for a retry: it may reach the server twice, never be lost.
    async fn hand_over(
        sent: &tokio::sync::mpsc::Sender<Attempted>,
        h: Held,
        confirmed: Option<crate::transport::smtp::Confirmed>,
    ) {
        let (results, reply) = match confirmed {
            Some(c) => (c.results, c.reply.unwrap_or_default()),
            None => (
                vec![
                    RecipientResult::Deferred {
                        error: "the connection was lost before the server confirmed the message; will try again".into(),
                    };
                    h.rows.len()
                ],
                String::new(),
            ),
        };
        let _ = sent
            .send(Attempted {
                index: h.index,
                message: h.message,
                results: Ok(h.rows.into_iter().zip(results).collect()),
                reply,
            })
            .await;
    }

    /// Sends one leased message, connecting first if this flush has not yet. When the
    /// connection pipelines, the message may be left [`Step::Held`]. `given_up`: the results
    /// of the connection's held message when this drops the connection.
    async fn send_one(
        &self,
        run: &UploadRun<'_, S>,
        outbound: &mut Option<Outbound>,
        message: &mut LeasedMessage,
        run_connect_command: bool,
        given_up: &mut Option<crate::transport::smtp::Confirmed>,
    ) -> Result<Step, TransportError> {
        let (slot, flags) = (run.slot, run.flags);
        // Taken first: it moves the prefetched body out of the lease (not a copy), and borrows
        // only the store.
        let body = crate::store::BodyReader::of_leased(&self.inner.store, message);
        let message = &*message;
        let expire = self.inner.profile.spooler.expire_after;
        let submitted = message
            .message
            .client_submit_time
            .unwrap_or_else(FileTime::now);
        let open: Vec<_> = message.open_recipients().collect();
        if age(submitted) > expire {
            let error = format!(
                "gave up after {} without delivery (expire_after in the profile)",
                humantime::format_duration(expire)
            );
            return Ok(Step::Done(
                open.iter()
                    .map(|r| {
                        (
                            r.row_id,
                            RecipientResult::Failed {
                                error: error.clone(),
                                reason: MAPI_REASON_TRANSFER_FAILED,
                                diag: MAPI_DIAG_MAXIMUM_TIME_EXPIRED,
                            },
                        )
                    })
                    .collect(),
            ));
        }
        if outbound.is_none() {
            let config = slot.config.outbound.as_ref().ok_or_else(|| {
                TransportError::new(TransportErrorKind::Permanent, "no outbound side")
            })?;
            let mut o = Outbound::from_config(
                config,
                &slot.config.name,
                !flags.contains(FlushFlags::NO_UI),
            )?;
            // Each step within `timeout`, named by the transport when it stalls; the limits
            // below are only a backstop.
            o.set_timeout(self.inner.profile.spooler.timeout);
            if run_connect_command {
                self.connect_command_once(&slot.config, run.tunnel).await?;
            }
            if let OutboundConfig::Smtp(smtp) = config
                && smtp.username.is_some()
                && let Some(credential) = &smtp.credential
            {
                // Once per flush, shared by its workers (the first resolves it while the
                // others wait for its connection).
                let secret = run
                    .secret
                    .get_or_try_init(|| {
                        crate::credential::resolve_within(
                            credential,
                            &slot.config.name,
                            !flags.contains(FlushFlags::NO_UI),
                            self.inner.profile.spooler.timeout,
                        )
                    })
                    .await?;
                o.set_secret(secret.clone());
            }
            self.inner.board.update(
                &slot.kind,
                vec![text(PR_STATUS_STRING, "Connecting"), phase("connecting")],
            );
            let backstop = self.inner.profile.spooler.timeout.saturating_mul(2);
            tokio::time::timeout(backstop, o.connect())
                .await
                .map_err(|_| {
                    TransportError::new(
                        TransportErrorKind::Timeout,
                        format!(
                            "connecting took longer than {}",
                            humantime::format_duration(backstop)
                        ),
                    )
                })??;
            self.inner.board.update(&slot.kind, vec![phase("sending")]);
            *outbound = Some(o);
        }
        let Some(o) = outbound.as_mut() else {
            return Err(TransportError::new(
                TransportErrorKind::Permanent,
                "not connected",
            ));
        };
        let envelope = Envelope {
            // Without one recorded at submit, the account that authenticates, never the From:
            // header's address (which may be anyone's).
            from: message
                .message
                .envelope_from
                .clone()
                .unwrap_or_else(|| slot.config.address.clone()),
            recipients: open
                .iter()
                .map(|r| EnvelopeRecipient {
                    rowid: i64::from(r.row_id),
                    address: r.address.clone(),
                })
                .collect(),
            size: message.message.message_size,
            dsn: crate::transport::Dsn::of(&message.message),
        };
        // The transport names a stalled step within `timeout`; this is the backstop.
        let backstop = self.inner.profile.spooler.timeout.saturating_mul(2);
        let results = match tokio::time::timeout(
            backstop,
            o.send_pipelined(&envelope, StoreBody(body)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                // A half-sent message on a connection we abandon: drop the connection (and
                // with it the reply of a message held on it).
                *given_up = o.give_up();
                *outbound = None;
                return Err(TransportError::new(
                    TransportErrorKind::Timeout,
                    format!(
                        "sending took longer than {}",
                        humantime::format_duration(backstop)
                    ),
                ));
            }
        };
        match results {
            Ok(Sent::Done(r)) => Ok(Step::Done(open.iter().map(|rc| rc.row_id).zip(r).collect())),
            Ok(Sent::Unconfirmed) => Ok(Step::Held(open.iter().map(|rc| rc.row_id).collect())),
            Err(e) => {
                *given_up = o.give_up();
                *outbound = None;
                Err(e)
            }
        }
    }

    /// The recorder of an upload: records the attempts the workers hand over, as many per
    /// transaction as have piled up while the previous one committed (at most
    /// [`RECORD_BATCH_MAX`]), until every worker is done.
    async fn record_attempts(
        &self,
        mut sent: tokio::sync::mpsc::Receiver<Attempted>,
        queue: &AsyncMutex<UploadQueue>,
    ) {
        while let Some(first) = sent.recv().await {
            let mut batch = vec![first];
            // Attempts arriving within RECORD_GATHER of the first join its transaction: a
            // transaction's cost is mostly per transaction (its round trips to SQLite's thread,
            // the WAL pages it writes), so fewer, larger ones cost less CPU for the same
            // messages. The last worker's end closes the channel and ends the wait at once.
            let gather_until = tokio::time::Instant::now() + RECORD_GATHER;
            while batch.len() < RECORD_BATCH_MAX {
                match sent.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        match tokio::time::timeout_at(gather_until, sent.recv()).await {
                            Ok(Some(next)) => batch.push(next),
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
            }
            let indexes: Vec<usize> = batch.iter().map(|a| a.index).collect();
            let done = self.finish_messages(batch).await;
            queue
                .lock()
                .await
                .reports
                .extend(indexes.into_iter().zip(done));
        }
    }

    /// Records what happened to each message in one store transaction and writes a
    /// non-delivery report where recipients failed for good — unless the message is itself a
    /// report (never answer a report). Reports come back in the order of `batch`.
    async fn finish_messages(&self, batch: Vec<Attempted>) -> Vec<MessageReport> {
        // A transport-level failure (no connection, TLS, the login refused, no credential) is
        // the transport's, not the message's: it counts no attempt and pushes no backoff (the
        // transport backs off instead, in `flush_transport`), so the next flush a person asks
        // for, or the transport's next turn, tries the message again.
        let (untried, batch): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .enumerate()
            .partition(|(_, a)| matches!(&a.results, Err(e) if is_link_failure(e)));
        let mut reports: Vec<(usize, MessageReport)> = Vec::with_capacity(untried.len());
        for (position, a) in untried {
            self.let_go(&[a.message.message.id]);
            let _ = self
                .inner
                .store
                .release_lease(a.message.message.id, &self.inner.owner)
                .await;
            if let Err(e) = &a.results {
                let report = untried_report(&a.message, e);
                self.log_outcomes(&a.message, &report, "");
                reports.push((position, report));
            }
        }
        let (positions, batch): (Vec<usize>, Vec<Attempted>) = batch.into_iter().unzip();
        let recorded = self.record_messages(batch).await;
        reports.extend(positions.into_iter().zip(recorded));
        reports.sort_by_key(|(position, _)| *position);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// Records the attempts of [`Spooler::finish_messages`] that reached the server.
    async fn record_messages(&self, batch: Vec<Attempted>) -> Vec<MessageReport> {
        if batch.is_empty() {
            return Vec::new();
        }
        let now = self.inner.store.now();
        let outcomes: Vec<Vec<RecipientOutcome>> = batch
            .iter()
            .map(|a| self.outcomes_of(&a.message, &a.results, now))
            .collect();
        let recorded = {
            let _writing = self.inner.store_writes.lock().await;
            self.inner
                .store
                .record_leased_outcomes(
                    &self.inner.owner,
                    batch
                        .iter()
                        .zip(&outcomes)
                        .map(|(a, o)| LeasedOutcome {
                            id: a.message.message.id,
                            outcomes: o.clone(),
                            lease: a.message.lease.clone(),
                            // A copy in memory costs less than the store reading them again.
                            recipients: a.message.recipients.clone(),
                        })
                        .collect(),
                    now,
                )
                .await
        };
        // Recorded, refused or unknown: either way this spooler is done with them.
        let ids: Vec<MessageId> = batch.iter().map(|a| a.message.message.id).collect();
        self.let_go(&ids);
        let recorded: Vec<MapiResult<crate::store::OutcomeReport>> = match recorded {
            Ok(list) => list,
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut reports = Vec::with_capacity(batch.len());
        for ((a, outcomes), recorded) in batch.iter().zip(&outcomes).zip(recorded) {
            let report = self.report_of(&a.message, outcomes, recorded).await;
            self.log_outcomes(&a.message, &report, &a.reply);
            reports.push(report);
        }
        reports
    }

    /// The mail log, as Postfix's: one INFO line per recipient outcome (target
    /// `mapispool::mail`), with the queue id (the entry ID), the envelope sender, the
    /// recipient, the transport, the relay, the delay since submission in seconds, the DSN
    /// code, `status=sent|deferred|bounced`, and the server's reply (for `sent`, `accepted`:
    /// its answer to the message's data). No credential is in any.
    fn log_outcomes(&self, message: &LeasedMessage, report: &MessageReport, accepted: &str) {
        // The relay and the delay below are formatted for each message: not when nothing
        // would write the line (the CLI logs only warnings by default).
        if !tracing::enabled!(target: "mapispool::mail", tracing::Level::INFO) {
            return;
        }
        let m = &message.message;
        let transport = m.transport.as_deref().unwrap_or_default();
        let relay = self
            .slot(transport)
            .and_then(|slot| match &slot.config.outbound {
                Some(OutboundConfig::Smtp(c)) => Some(format!("{}:{}", c.host, c.port)),
                Some(OutboundConfig::Dir(d)) => Some(d.path.display().to_string()),
                None => None,
            })
            .unwrap_or_default();
        let delay = m
            .client_submit_time
            .map(|t| age(t).as_secs_f64())
            .unwrap_or_default();
        for r in &report.recipients {
            let (to, status, reply) = match r {
                RecipientReport::Delivered { address } => (address, "sent", accepted),
                RecipientReport::Deferred { address, error } => {
                    (address, "deferred", error.as_str())
                }
                RecipientReport::Failed { address, error } => (address, "bounced", error.as_str()),
            };
            let dsn = dsn_of(reply).unwrap_or(match status {
                "sent" => "2.0.0",
                "deferred" => "4.0.0",
                _ => "5.0.0",
            });
            tracing::info!(
                target: "mapispool::mail",
                queue_id = %report.entry_id,
                from = %m.envelope_from.as_deref().unwrap_or_default(),
                to = %to,
                transport = %transport,
                relay = %relay,
                delay = %format!("{delay:.2}"),
                dsn = %dsn,
                status = %status,
                reply = %reply,
                "{status}"
            );
        }
    }

    /// The store's view of one attempt: a new state for every recipient that was tried.
    fn outcomes_of(
        &self,
        message: &LeasedMessage,
        results: &Result<Vec<(u32, RecipientResult)>, TransportError>,
        now: FileTime,
    ) -> Vec<RecipientOutcome> {
        let retry_at = FileTime::from(now.to_system_time() + self.backoff(message.attempts));
        match results {
            Ok(list) => list
                .iter()
                .map(|(row_id, r)| RecipientOutcome {
                    row_id: *row_id,
                    result: match r {
                        RecipientResult::Delivered => DeliveryResult::Delivered,
                        RecipientResult::Deferred { error } => DeliveryResult::Deferred {
                            error: error.clone(),
                            retry_at,
                        },
                        RecipientResult::Failed {
                            error,
                            reason,
                            diag,
                        } => DeliveryResult::Failed {
                            error: error.clone(),
                            reason_code: *reason,
                            diag_code: *diag,
                        },
                    },
                })
                .collect(),
            Err(e) => message
                .open_recipients()
                .map(|r| RecipientOutcome {
                    row_id: r.row_id,
                    result: if e.is_temporary() {
                        DeliveryResult::Deferred {
                            error: e.message.clone(),
                            retry_at,
                        }
                    } else {
                        DeliveryResult::Failed {
                            error: e.message.clone(),
                            reason_code: MAPI_REASON_TRANSFER_FAILED,
                            diag_code: MAPI_DIAG_NO_DIAGNOSTIC,
                        }
                    },
                })
                .collect(),
        }
    }

    /// What the flush reports for one recorded attempt; files the delay notice or the
    /// non-delivery report it calls for.
    async fn report_of(
        &self,
        message: &LeasedMessage,
        outcomes: &[RecipientOutcome],
        recorded: MapiResult<crate::store::OutcomeReport>,
    ) -> MessageReport {
        let address_of = |row_id: u32| {
            message
                .recipients
                .iter()
                .find(|r| r.row_id == row_id)
                .map(|r| r.address.clone())
                .unwrap_or_default()
        };
        let recipients: Vec<RecipientReport> = outcomes
            .iter()
            .map(|o| match &o.result {
                DeliveryResult::Delivered => RecipientReport::Delivered {
                    address: address_of(o.row_id),
                },
                DeliveryResult::Deferred { error, .. } => RecipientReport::Deferred {
                    address: address_of(o.row_id),
                    error: error.clone(),
                },
                DeliveryResult::Failed { error, .. } => RecipientReport::Failed {
                    address: address_of(o.row_id),
                    error: error.clone(),
                },
            })
            .collect();
        let mut report = MessageReport {
            entry_id: message.message.entry_id(),
            subject: message.message.subject.clone(),
            outcome: MessageOutcome::Deferred,
            retry_at: None,
            recipients,
        };
        match recorded {
            Ok(outcome) => {
                let any_failed = !outcome.failed.is_empty();
                report.outcome = match outcome.disposition {
                    MessageDisposition::StillQueued { next_attempt_at } => {
                        report.retry_at = next_attempt_at;
                        let delayed: Vec<(String, String)> = report
                            .recipients
                            .iter()
                            .filter_map(|r| match r {
                                RecipientReport::Deferred { address, error } => {
                                    Some((address.clone(), error.clone()))
                                }
                                _ => None,
                            })
                            .collect();
                        self.warn_delay(message, &delayed).await;
                        MessageOutcome::Deferred
                    }
                    _ if any_failed
                        && report
                            .recipients
                            .iter()
                            .all(|r| matches!(r, RecipientReport::Failed { .. })) =>
                    {
                        MessageOutcome::Failed
                    }
                    _ if any_failed => MessageOutcome::Partial,
                    _ => MessageOutcome::Sent,
                };
                if matches!(
                    report.outcome,
                    MessageOutcome::Sent | MessageOutcome::Partial
                ) && let Some(submitted) = message.message.client_submit_time
                {
                    let route = message.message.transport.as_deref().unwrap_or("");
                    self.inner.metrics.delivered(route, age(submitted));
                }
                if any_failed {
                    self.write_ndr(message, &outcome.failed).await;
                }
            }
            Err(e) => {
                // The message stays leased until the lease runs out, then is tried again: a
                // possible duplicate, never a loss.
                tracing::error!(error = %e, id = %message.message.id, "cannot record the outcome");
                report.outcome = MessageOutcome::Deferred;
            }
        }
        report
    }

    /// Files one delay notice (RFC 3464, `Action: delayed`) in the Inbox once a message has
    /// waited `delay_warning_after` undelivered: once per message, claimed in the store so a
    /// restart, another process or another node does not send a second.
    async fn warn_delay(&self, message: &LeasedMessage, delayed: &[(String, String)]) {
        let original = &message.message;
        let config = &self.inner.profile.spooler;
        let submitted = original.client_submit_time.unwrap_or_else(FileTime::now);
        if delayed.is_empty() || age(submitted) < config.delay_warning_after || is_report(original)
        {
            return;
        }
        let store = &self.inner.store;
        let key = format!("delay-notice:{}", original.id);
        // Claimed before it is filed, in one step that only one caller wins: two nodes that
        // both see the delay send one notice between them, and a crash after the claim loses
        // the notice rather than repeating it. Not knowing whether one went out (the store
        // failed), send none: a missing notice is better than a second one on every retry.
        match store.claim_sync_state(SPOOLER_STATE, &key, "sent").await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, id = %original.id, "cannot claim the delay notice; not sending it");
                return;
            }
        }
        let head = match store.body_chunk(original.id, 0).await {
            Ok(Some(chunk)) => header_block(&chunk).unwrap_or(&chunk).to_vec(),
            _ => Vec::new(),
        };
        let expires = FileTime::from(submitted.to_system_time() + config.expire_after);
        let (props, body) = ndr::build_delay(
            original,
            delayed,
            expires,
            &head,
            &self.inner.host,
            FileTime::now(),
        );
        if let Err(e) = store.add_message(Folder::Inbox, props, &body[..]).await {
            tracing::error!(error = %e, id = %original.id, "cannot file the delay notice");
        }
    }

    async fn write_ndr(&self, message: &LeasedMessage, failed: &[crate::store::RecipientRecord]) {
        let original = &message.message;
        if is_report(original) {
            tracing::info!(id = %original.id, "no report on a report");
            return;
        }
        let store = &self.inner.store;
        let head = match store.body_chunk(original.id, 0).await {
            Ok(Some(chunk)) => header_block(&chunk).unwrap_or(&chunk).to_vec(),
            _ => Vec::new(),
        };
        let (props, body) = ndr::build(original, failed, &head, &self.inner.host, FileTime::now());
        if let Err(e) = store.add_message(Folder::Inbox, props, &body[..]).await {
            tracing::error!(error = %e, id = %original.id, "cannot file the non-delivery report");
        }
    }

    async fn download(
        &self,
        slot: &Slot,
        flags: FlushFlags,
        tunnel: &Tunnel,
        report: &mut TransportReport,
    ) -> Link {
        let board = &self.inner.board;
        board.change_bits(
            &slot.kind,
            STATUS_INBOUND_FLUSH | STATUS_INBOUND_ACTIVE,
            0,
            vec![
                text(PR_STATUS_STRING, "Checking for new mail"),
                phase("receiving"),
            ],
        );
        let _bits = RowBits {
            board,
            kind: &slot.kind,
            bits: STATUS_INBOUND_FLUSH | STATUS_INBOUND_ACTIVE,
        };
        let sink = StoreSink {
            store: &self.inner.store,
            transport: &slot.config.name,
            board,
            kind: &slot.kind,
            stored: Default::default(),
        };
        let result = async {
            let config = slot.config.inbound.as_ref().ok_or_else(|| {
                TransportError::new(TransportErrorKind::Permanent, "no inbound side")
            })?;
            let mut inbound = Inbound::from_config(
                config,
                &slot.config.address,
                &slot.config.name,
                !flags.contains(FlushFlags::NO_UI),
            )?;
            inbound.set_timeout(self.inner.profile.spooler.timeout);
            inbound.set_max_message_size(self.inner.profile.spooler.max_message_size);
            self.connect_command_once(&slot.config, tunnel).await?;
            inbound.connect().await?;
            // No limit around the whole download: `timeout` bounds each read and write (the
            // transport's inactivity limit), so a large message that streams steadily for
            // longer than it arrives, and a stalled server still fails after it.
            let summary = inbound.download(&sink).await;
            inbound.close().await;
            summary
        }
        .await;
        let link = match &result {
            Ok(_) => Link::Connected,
            Err(e) if is_link_failure(e) => Link::Failed(e.message.clone()),
            // The server answered: whatever went wrong, the link itself works.
            Err(_) => Link::Connected,
        };
        let (set, mut status) = match result {
            Ok(summary) => {
                report.received = summary.received;
                let mut status = match summary.received {
                    0 => "No new mail".to_string(),
                    1 => "Received 1 new message".to_string(),
                    n => format!("Received {n} new messages"),
                };
                // Messages the server would not hand over: said, not fatal for the others.
                if !summary.refused.is_empty() {
                    let refused = summary.refused.join("; ");
                    status = format!("{status}; {refused}");
                    report.error = Some(refused);
                }
                (0, status)
            }
            Err(e) => {
                // What was stored before the failure is said, and counted: it is in the store.
                let stored = sink.stored.load(std::sync::atomic::Ordering::Relaxed);
                report.received = stored;
                let message = match stored {
                    0 => e.message.clone(),
                    n => format!("received {n}, then failed: {}", e.message),
                };
                report.error = Some(message.clone());
                report.error_code = e.to_mapi().code.name().map(str::to_string);
                (STATUS_FAILURE, format!("{}: {message}", slot.config.name))
            }
        };
        // One line for the whole flush: what the outbound side said, then the inbound side.
        if report.upload
            && let Some(PropValue::Unicode(sent)) = board
                .row(&slot.kind)
                .and_then(|r| r.get(PR_STATUS_STRING).cloned())
        {
            status = format!("{sent}; {}", lowercase_first(&status));
        }
        board.change_bits(
            &slot.kind,
            set,
            STATUS_INBOUND_FLUSH | STATUS_INBOUND_ACTIVE,
            vec![
                text(PR_STATUS_STRING, &status),
                Prop::new(PR_REMOTE_PROGRESS, PropValue::Long(-1)),
                phase(if set != 0 { "failed" } else { "idle" }),
            ],
        );
        link
    }

    /// [`Spooler::run_connect_command`] once per flush of a transport: the first direction to
    /// connect runs it, the other has its outcome.
    async fn connect_command_once(
        &self,
        config: &TransportConfig,
        tunnel: &Tunnel,
    ) -> Result<(), TransportError> {
        tunnel
            .get_or_init(|| self.run_connect_command(config))
            .await
            .clone()
    }

    /// Runs the transport's `connect_command` (a VPN or tunnel) before it connects. An
    /// interactive one keeps the terminal, so a person can answer it.
    /// Runs the transport's `connect_command`, if it has one, bounded by `[spooler] timeout`;
    /// past it, or when the flush is dropped, the command's process group is killed, so a hung
    /// one never holds the transport (every later flush of it waits on its slot).
    async fn run_connect_command(&self, config: &TransportConfig) -> Result<(), TransportError> {
        let Some(cc) = &config.connect_command else {
            return Ok(());
        };
        let command = crate::command::ProfileCommand {
            setting: "connect_command",
            transport: &config.name,
            command: &cc.command,
        };
        let stdin = if cc.interactive {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        };
        command
            .run(
                self.inner.profile.spooler.timeout,
                stdin,
                false,
                TransportErrorKind::Connect,
            )
            .await
            .map(|_| ())
            .map_err(|mut e| {
                if e.kind == TransportErrorKind::Connect {
                    e.message.push_str("; the transport was not connected");
                }
                e
            })
    }

    /// ValidateState's check of one transport: its `connect_command` first (the tunnel a
    /// flush would open), then [`probe::check_transport`]. Under `SUPPRESS_UI` an interactive
    /// one is not run, and each side says so before its own steps (which then show whether the
    /// servers are reachable without it).
    async fn check_transport(&self, slot: &Slot, offline: bool, flags: u32) -> TransportCheck {
        let allow_prompt = flags & SUPPRESS_UI == 0;
        let mut skipped = false;
        if !offline && let Some(cc) = &slot.config.connect_command {
            if cc.interactive && !allow_prompt {
                skipped = true;
            } else if let Err(e) = self.run_connect_command(&slot.config).await {
                return TransportCheck::connect_command_failed(&slot.config, e.message);
            }
        }
        let mut check = probe::check_transport(
            &slot.config,
            offline,
            allow_prompt,
            self.inner.profile.spooler.timeout,
        )
        .await;
        if skipped {
            for side in &mut check.sides {
                side.steps.insert(
                    0,
                    probe::Step {
                        step: "connect_command".into(),
                        outcome: probe::Outcome::Skipped,
                        detail: "interactive: not run without a terminal (SUPPRESS_UI)".into(),
                    },
                );
            }
        }
        check
    }

    async fn log_on(&self, slot: &Slot) {
        let Some(config) = &slot.config.inbound else {
            return;
        };
        // Only the post office is logged on here: creating the mailboxes lets others deliver.
        // Network transports connect when they flush, not at logon (MAPI's FORCE_XP_CONNECT
        // rule: never grab the link outside a flush).
        if let Ok(mut inbound @ Inbound::Dir(_)) =
            Inbound::from_config(config, &slot.config.address, &slot.config.name, false)
            && let Err(e) = inbound.connect().await
        {
            self.inner.board.change_bits(
                &slot.kind,
                STATUS_FAILURE,
                0,
                vec![text(
                    PR_STATUS_STRING,
                    &format!("{}: {}", slot.config.name, e.message),
                )],
            );
        }
    }

    /// `ValidateState` on a status object of this spooler. On the spooler (and the subsystem)
    /// every transport is logged on again; on a transport, that transport. `FORCE_XP_DISCONNECT`
    /// takes transports offline, `FORCE_XP_CONNECT` brings them back. Without either, each
    /// online transport is checked for real (see [`crate::transport::probe`]: resolve, connect,
    /// TLS, login, a read-only look at the mailbox; nothing changes on the server), a failed
    /// step sets `STATUS_FAILURE` and says which in `PR_STATUS_STRING`, and the checks are
    /// returned. `SUPPRESS_UI`: a `password_prompt` does not ask.
    ///
    /// Errors: `MAPI_E_UNKNOWN_FLAGS` for flags ValidateState does not define.
    pub async fn validate_state(
        &self,
        kind: &StatusKind,
        flags: u32,
    ) -> MapiResult<Vec<TransportCheck>> {
        const KNOWN: u32 = SUPPRESS_UI
            | REFRESH_XP_HEADER_CACHE
            | PROCESS_XP_HEADER_CACHE
            | FORCE_XP_CONNECT
            | FORCE_XP_DISCONNECT
            | CONFIG_CHANGED
            | ABORT_XP_HEADER_OPERATION
            | SHOW_XP_SESSION_UI;
        if flags & !KNOWN != 0 {
            return Err(MapiError::unknown_flags(format!(
                "ValidateState does not know the flag bits 0x{:X}",
                flags & !KNOWN
            )));
        }
        let slots: Vec<&Slot> = match kind {
            StatusKind::Transport(name) => self.slot(name).into_iter().collect(),
            StatusKind::Store => {
                self.inner.store.queue_counts().await?;
                return Ok(Vec::new());
            }
            _ => self.inner.slots.iter().collect(),
        };
        let switch = if flags & FORCE_XP_DISCONNECT != 0 {
            Some(true)
        } else if flags & FORCE_XP_CONNECT != 0 {
            Some(false)
        } else {
            None
        };
        // Transports that came back online with mail to send.
        let mut reconnected: Vec<String> = Vec::new();
        let mut checks = Vec::new();
        for slot in slots {
            let _running = slot.busy.lock().await;
            if let Some(offline) = switch {
                // Saved first: the switch holds for later processes and restarts, or it is
                // not thrown at all.
                self.inner
                    .store
                    .set_sync_state(
                        SPOOLER_STATE,
                        &offline_key(&slot.config.name),
                        if offline { "true" } else { "false" },
                    )
                    .await?;
                let was = slot.offline.swap(offline, Ordering::SeqCst);
                tracing::info!(transport = %slot.config.name, offline, "offline switch");
                if was && !offline && slot.config.outbound.is_some() {
                    reconnected.push(slot.config.name.clone());
                }
            }
            let offline = slot.offline.load(Ordering::SeqCst);
            let idle = transport_idle_code(&slot.config, offline);
            self.inner.board.update(
                &slot.kind,
                vec![
                    Prop::new(PR_STATUS_CODE, PropValue::Long(idle)),
                    text(PR_STATUS_STRING, if offline { "Offline" } else { "Idle" }),
                    phase(if offline { "offline" } else { "idle" }),
                ],
            );
            if !offline {
                self.log_on(slot).await;
            }
            if switch.is_none() {
                let check = self.check_transport(slot, offline, flags).await;
                if let Some(failure) = check.failure() {
                    self.inner.board.change_bits(
                        &slot.kind,
                        STATUS_FAILURE,
                        STATUS_AVAILABLE,
                        vec![text(PR_STATUS_STRING, &failure)],
                    );
                }
                checks.push(check);
            }
        }
        if switch.is_some() {
            self.show_spooler_offline();
        }
        // `send_on_reconnect`: what queued while offline goes out now (the transport's
        // outbound only; receiving waits for its schedule or a flush). Otherwise it waits.
        if self.inner.profile.spooler.send_on_reconnect && !reconnected.is_empty() {
            let report = self
                .run_flush(
                    &reconnected,
                    FlushFlags::UPLOAD | FlushFlags::NO_UI,
                    Scope::default(),
                )
                .await;
            tracing::info!(
                transports = ?reconnected,
                complete = report.is_complete(),
                "sent what queued while offline"
            );
        }
        Ok(checks)
    }

    /// Whether transport `name` is offline now (`None`: no such transport).
    pub fn is_offline(&self, name: &str) -> Option<bool> {
        self.slot(name).map(|s| s.offline.load(Ordering::SeqCst))
    }

    /// Reads each transport's offline switch from the store (what `FORCE_XP_DISCONNECT` /
    /// `FORCE_XP_CONNECT` last saved, by this process or another); a transport with none saved
    /// keeps the profile's `[spooler] offline`. Then the rows say so.
    async fn restore_offline(&self) {
        for slot in &self.inner.slots {
            match self
                .inner
                .store
                .get_sync_state(SPOOLER_STATE, &offline_key(&slot.config.name))
                .await
            {
                Ok(Some(saved)) => slot.offline.store(saved == "true", Ordering::SeqCst),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(transport = %slot.config.name, error = %e, "cannot read the saved offline switch; using the profile's")
                }
            }
            let offline = slot.offline.load(Ordering::SeqCst);
            self.inner.board.update(
                &slot.kind,
                vec![
                    Prop::new(
                        PR_STATUS_CODE,
                        PropValue::Long(transport_idle_code(&slot.config, offline)),
                    ),
                    text(PR_STATUS_STRING, if offline { "Offline" } else { "Idle" }),
                ],
            );
        }
        self.show_spooler_offline();
    }

    /// The spooler row is `STATUS_OFFLINE` while every transport is offline, and
    /// `STATUS_AVAILABLE` as soon as one is online.
    fn show_spooler_offline(&self) {
        let all = !self.inner.slots.is_empty()
            && self
                .inner
                .slots
                .iter()
                .all(|s| s.offline.load(Ordering::SeqCst));
        let (set, clear) = if all {
            (STATUS_OFFLINE, STATUS_AVAILABLE)
        } else {
            (STATUS_AVAILABLE, STATUS_OFFLINE)
        };
        self.inner
            .board
            .change_bits(&StatusKind::Spooler, set, clear, Vec::new());
    }

    /// Updates each transport row's `PR_MSP_QUEUED_COUNT` from the store; returns the counts
    /// (none when the store could not count).
    pub async fn refresh_queue_counts(&self) -> Vec<crate::store::QueueCounts> {
        let Ok(counts) = self.inner.store.queue_counts().await else {
            return Vec::new();
        };
        for slot in &self.inner.slots {
            let n: u32 = counts
                .iter()
                .filter(|c| c.transport.as_deref() == Some(slot.config.name.as_str()))
                .map(|c| c.total())
                .sum();
            self.inner.board.update(
                &slot.kind,
                vec![Prop::new(
                    PR_MSP_QUEUED_COUNT,
                    PropValue::Long(i32::try_from(n).unwrap_or(i32::MAX)),
                )],
            );
        }
        counts
    }

    /// The transport's queue as its status row counted it last (at start, after each submit
    /// and flush): a progress total, not worth a store query on every flush.
    fn queued_for(&self, slot: &Slot) -> usize {
        match self
            .inner
            .board
            .row(&slot.kind)
            .and_then(|r| r.get(PR_MSP_QUEUED_COUNT).cloned())
        {
            Some(PropValue::Long(n)) => usize::try_from(n).unwrap_or(0),
            _ => 0,
        }
    }

    /// Retry backoff after `attempts` earlier attempts: `retry_initial`, doubling, capped at
    /// `retry_max` (Postfix grows from 300 s to 4000 s the same way).
    fn backoff(&self, attempts: u32) -> Duration {
        let s = &self.inner.profile.spooler;
        let factor = 2u32.saturating_pow(attempts.min(20));
        s.retry_initial.saturating_mul(factor).min(s.retry_max)
    }

    /// How long a lease lasts ([`crate::profile::SpoolerConfig::lease_time`]); the heartbeat
    /// extends the leases of messages still being sent.
    fn lease_time(&self) -> Duration {
        self.inner.profile.spooler.lease_time()
    }
}

/// Whether a flush reached the transport's server, for its transport-level backoff.
enum Link {
    /// Nothing needed the server.
    Untried,
    Connected,
    /// It could not connect (or log in): why.
    Failed(String),
}

impl Link {
    /// Both sides' verdict: a failure on either counts; a connection on either otherwise.
    fn and(self, other: Link) -> Link {
        match (self, other) {
            (Link::Failed(r), _) | (_, Link::Failed(r)) => Link::Failed(r),
            (Link::Connected, _) | (_, Link::Connected) => Link::Connected,
            _ => Link::Untried,
        }
    }
}

/// The RFC 3463 enhanced status code in a server's reply (`451 4.3.0 try later` → `4.3.0`).
fn dsn_of(reply: &str) -> Option<&str> {
    reply.split_whitespace().find(|word| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// What the flush reports for a message a transport-level failure kept from the server: every
/// open recipient deferred with that error, no attempt counted; `retry_at` is the transport's
/// wait, filled in once it is known.
fn untried_report(message: &LeasedMessage, e: &TransportError) -> MessageReport {
    MessageReport {
        entry_id: message.message.entry_id(),
        subject: message.message.subject.clone(),
        outcome: MessageOutcome::Deferred,
        retry_at: None,
        recipients: message
            .open_recipients()
            .map(|r| RecipientReport::Deferred {
                address: r.address.clone(),
                error: e.message.clone(),
            })
            .collect(),
    }
}

/// Errors that mean the server cannot be reached or will not let us in: the rest of the queue
/// waits rather than each message timing out in turn, and the transport backs off.
fn is_link_failure(e: &TransportError) -> bool {
    matches!(
        e.kind,
        TransportErrorKind::Connect
            | TransportErrorKind::Auth
            | TransportErrorKind::Tls
            | TransportErrorKind::NeedsPerson
    )
}

/// The sync-state "transport" under which the spooler keeps its own state (delay notices sent,
/// offline switches); `@` cannot start a transport name, so it never collides with one.
const SPOOLER_STATE: &str = "@spooler";

/// The sync-state key of a transport's offline switch (under [`SPOOLER_STATE`]).
fn offline_key(transport: &str) -> String {
    format!("offline:{transport}")
}

/// A report (null sender, or a `REPORT.*` class): never answered by another report.
fn is_report(message: &crate::store::LeasedRecord) -> bool {
    message.envelope_from.as_deref() == Some("") || message.message_class.starts_with("REPORT.")
}

/// Adapts the store's body reader to what transports read.
struct StoreBody<'s, S: Store>(crate::store::BodyReader<'s, S>);

impl<S: Store> ChunkSource for StoreBody<'_, S> {
    async fn next_chunk(&mut self) -> MapiResult<Option<Vec<u8>>> {
        self.0.next_chunk().await
    }

    async fn rewind(&mut self) -> MapiResult<bool> {
        self.0.rewind();
        Ok(true)
    }
}

fn age(since: FileTime) -> Duration {
    FileTime::now()
        .to_system_time()
        .duration_since(since.to_system_time())
        .unwrap_or_default()
}

fn text(tag: mapi::PropTag, s: &str) -> Prop {
    Prop::new(tag, PropValue::Unicode(s.to_string()))
}

fn phase(s: &str) -> Prop {
    text(PR_MSP_PHASE, s)
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

fn fail(report: &mut TransportReport, e: &MapiError) {
    report.error = Some(e.cause.clone());
    report.error_code = e.code.name().map(str::to_string);
}

fn needs_person_reason(config: &TransportConfig) -> &'static str {
    match &config.connect_command {
        Some(cc) if cc.interactive => "an interactive connect_command",
        _ => "a password prompt",
    }
}

fn summarize(report: &FlushReport) -> String {
    let sent: usize = report.transports.iter().map(|t| t.sent()).sum();
    let received: usize = report.transports.iter().map(|t| t.received).sum();
    let failed = report
        .transports
        .iter()
        .filter(|t| t.error.is_some())
        .count();
    let skipped = report
        .transports
        .iter()
        .filter(|t| t.skipped.is_some())
        .count();
    let mut s = format!("Last flush: {sent} sent, {received} received");
    if failed > 0 {
        s.push_str(&format!(", {failed} transport(s) failed"));
    }
    if skipped > 0 {
        s.push_str(&format!(", {skipped} offline transport(s) left out"));
    }
    s
}

/// This machine's name for reports and lease owners; `localhost` when it has none.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".to_string())
}

//! What the SQLite and PostgreSQL backends share: the column lists (both schemas name and type
//! their columns alike: integers as 64-bit, times as FILETIME ticks), decoding a row into a
//! record, checks on what a client hands in, reading a body into chunks, and the decision of what
//! a delivery attempt does to a message ([`plan_outcome`]). Each backend only writes its SQL.

use std::collections::HashMap;

use mapi::constants::{MAPI_BCC, MAPI_CC, MAPI_TO};
use mapi::restriction::RelOp;
use mapi::{FileTime, MapiError, MapiResult};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::node::{NodeInfo, NodeRecord};
use super::{
    DeliveryResult, Folder, Lease, LeasedRecord, MessageDisposition, MessageId, MessageRecord,
    NewRecipient, OutcomeReport, QueueColumn, QueueFilter, QueueState, RecipientOutcome,
    RecipientRecord, RecipientState,
};

/// The `messages` columns a [`MessageRecord`] and its [`QueueFields`] are read from.
macro_rules! message_columns {
    () => {
        "id, folder, message_class, subject, sender_name, sender_address, envelope_from, \
         internet_message_id, message_flags, submit_flags, client_submit_time, \
         provider_submit_time, delivery_time, deferred_delivery_time, delete_after_submit, \
         priority, message_size, transport, server_id, ndr_reason_code, ndr_diag_code, \
         in_queue, attempts, last_error, next_attempt_at, lease_owner, lease_until, dsn_notify, \
         dsn_ret"
    };
}
pub(crate) use message_columns;

/// The `messages` columns a [`LeasedRecord`] and a lease's attempt count are read from.
macro_rules! leased_columns {
    () => {
        "id, message_class, subject, sender_address, envelope_from, internet_message_id, \
         client_submit_time, message_size, transport, dsn_notify, dsn_ret, attempts"
    };
}
pub(crate) use leased_columns;

/// The `recipients` columns a [`RecipientRecord`] is read from.
macro_rules! recipient_columns {
    () => {
        "message_id, row_id, display_name, address, addrtype, recipient_type, responsibility, \
         state, attempts, last_error, retry_at, ndr_reason_code, ndr_diag_code"
    };
}
pub(crate) use recipient_columns;

/// The hidden folder of a message whose body is still being written.
pub(crate) const STAGING_FOLDER: i64 = 0;

/// A staged message older than this is left over from a crash (no body takes a day to arrive).
pub(crate) const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Typed column access that reads the same on both backends' rows.
pub(crate) trait StoreRow {
    fn i64(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! store_row {
    ($($row:ty),*) => {$(
        impl StoreRow for $row {
            fn i64(&self, col: &str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_i64(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
            fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, col)
            }
        }
    )*};
}
store_row!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

/// The properties every message write starts with.
pub(crate) struct StagedProps<'a> {
    pub message_class: &'a str,
    pub subject: &'a str,
    pub sender_name: Option<&'a str>,
    pub sender_address: Option<&'a str>,
    pub envelope_from: Option<&'a str>,
    pub internet_message_id: Option<&'a str>,
    pub message_flags: i32,
    pub client_submit_time: Option<FileTime>,
    pub delivery_time: Option<FileTime>,
    pub deferred_delivery_time: Option<FileTime>,
    pub delete_after_submit: bool,
    pub priority: i32,
    pub transport: Option<&'a str>,
    pub ndr_reason_code: Option<i32>,
    pub ndr_diag_code: Option<i32>,
    pub dsn_notify: Option<&'a str>,
    pub dsn_ret: Option<&'a str>,
}

pub(crate) fn validate_recipients(recipients: &[NewRecipient]) -> MapiResult<()> {
    for (i, r) in recipients.iter().enumerate() {
        if r.address.trim().is_empty() {
            return Err(MapiError::invalid_parameter(format!(
                "recipient {i} ({:?}) has no address",
                r.display_name
            )));
        }
        if ![MAPI_TO, MAPI_CC, MAPI_BCC].contains(&r.recipient_type) {
            return Err(MapiError::invalid_parameter(format!(
                "recipient {i} <{}> has PR_RECIPIENT_TYPE {}; expected MAPI_TO (1), MAPI_CC (2) or MAPI_BCC (3)",
                r.address, r.recipient_type
            )));
        }
    }
    Ok(())
}

/// `MAPI_E_NO_RECIPIENTS` for a submit without any.
pub(crate) fn require_recipients(recipients: &[NewRecipient]) -> MapiResult<()> {
    if recipients.is_empty() {
        return Err(MapiError::no_recipients(
            "the message has no recipients: add at least one To, Cc or Bcc address",
        ));
    }
    validate_recipients(recipients)
}

/// Reads from `body` until `buf` is full or the body ends; `so_far` is how much was read
/// before, for the error. Returns how many bytes are in `buf`: less than its length only at
/// the end of the body.
pub(crate) async fn fill_chunk(
    body: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
    so_far: u64,
) -> MapiResult<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = body.read(&mut buf[filled..]).await.map_err(|e| {
            MapiError::call_failed(format!(
                "reading the message to store (after {} bytes): {e}",
                so_far + filled as u64
            ))
        })?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// FILETIME ticks as a signed 64-bit integer; they fit until the year 30828.
pub(crate) fn ft(t: FileTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

pub(crate) fn size_i64(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// `now + lease_for`, saturating.
pub(crate) fn lease_end(now: FileTime, lease_for: std::time::Duration) -> FileTime {
    FileTime(
        now.0
            .saturating_add(u64::try_from(lease_for.as_nanos() / 100).unwrap_or(u64::MAX)),
    )
}

pub(crate) fn decode_error(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

pub(crate) fn get_time(r: &impl StoreRow, col: &str) -> Result<Option<FileTime>, sqlx::Error> {
    r.opt_i64(col)?
        .map(|v| {
            u64::try_from(v)
                .map(FileTime)
                .map_err(|_| decode_error(format!("{col} holds a negative time {v}")))
        })
        .transpose()
}

pub(crate) fn get_i32(r: &impl StoreRow, col: &str) -> Result<i32, sqlx::Error> {
    let v = r.i64(col)?;
    i32::try_from(v).map_err(|_| decode_error(format!("{col} = {v} does not fit 32 bits")))
}

pub(crate) fn get_opt_i32(r: &impl StoreRow, col: &str) -> Result<Option<i32>, sqlx::Error> {
    r.opt_i64(col)?
        .map(|v| {
            i32::try_from(v).map_err(|_| decode_error(format!("{col} = {v} does not fit 32 bits")))
        })
        .transpose()
}

pub(crate) fn get_u32(r: &impl StoreRow, col: &str) -> Result<u32, sqlx::Error> {
    let v = r.i64(col)?;
    u32::try_from(v).map_err(|_| decode_error(format!("{col} = {v} is out of range")))
}

pub(crate) fn message_from_row(r: &impl StoreRow) -> Result<MessageRecord, sqlx::Error> {
    let folder = r.i64("folder")?;
    let size = r.i64("message_size")?;
    Ok(MessageRecord {
        id: MessageId(r.i64("id")?),
        folder: Folder::from_code(folder)
            .ok_or_else(|| decode_error(format!("unknown folder {folder}")))?,
        message_class: r.text("message_class")?,
        subject: r.text("subject")?,
        sender_name: r.opt_text("sender_name")?,
        sender_address: r.opt_text("sender_address")?,
        envelope_from: r.opt_text("envelope_from")?,
        internet_message_id: r.opt_text("internet_message_id")?,
        message_flags: get_i32(r, "message_flags")?,
        submit_flags: get_i32(r, "submit_flags")?,
        client_submit_time: get_time(r, "client_submit_time")?,
        provider_submit_time: get_time(r, "provider_submit_time")?,
        delivery_time: get_time(r, "delivery_time")?,
        deferred_delivery_time: get_time(r, "deferred_delivery_time")?,
        delete_after_submit: r.flag("delete_after_submit")?,
        priority: get_i32(r, "priority")?,
        message_size: u64::try_from(size).unwrap_or(0),
        transport: r.opt_text("transport")?,
        server_id: r.opt_text("server_id")?,
        ndr_reason_code: get_opt_i32(r, "ndr_reason_code")?,
        ndr_diag_code: get_opt_i32(r, "ndr_diag_code")?,
        dsn_notify: r.opt_text("dsn_notify")?,
        dsn_ret: r.opt_text("dsn_ret")?,
    })
}

/// A row of [`leased_columns`]: the message as leased and its earlier attempts.
pub(crate) fn leased_from_row(r: &impl StoreRow) -> Result<(LeasedRecord, u32), sqlx::Error> {
    let size = r.i64("message_size")?;
    Ok((
        LeasedRecord {
            id: MessageId(r.i64("id")?),
            message_class: r.text("message_class")?,
            subject: r.text("subject")?,
            sender_address: r.opt_text("sender_address")?,
            envelope_from: r.opt_text("envelope_from")?,
            internet_message_id: r.opt_text("internet_message_id")?,
            client_submit_time: get_time(r, "client_submit_time")?,
            message_size: u64::try_from(size).unwrap_or(0),
            transport: r.opt_text("transport")?,
            dsn_notify: r.opt_text("dsn_notify")?,
            dsn_ret: r.opt_text("dsn_ret")?,
        },
        get_u32(r, "attempts")?,
    ))
}

pub(crate) fn recipient_from_row(r: &impl StoreRow) -> Result<RecipientRecord, sqlx::Error> {
    let state = r.text("state")?;
    Ok(RecipientRecord {
        row_id: get_u32(r, "row_id")?,
        display_name: r.text("display_name")?,
        address: r.text("address")?,
        addrtype: r.text("addrtype")?,
        recipient_type: get_i32(r, "recipient_type")?,
        responsibility: r.flag("responsibility")?,
        state: RecipientState::parse(&state)
            .ok_or_else(|| decode_error(format!("unknown recipient state {state:?}")))?,
        attempts: get_u32(r, "attempts")?,
        last_error: r.opt_text("last_error")?,
        retry_at: get_time(r, "retry_at")?,
        ndr_reason_code: get_opt_i32(r, "ndr_reason_code")?,
        ndr_diag_code: get_opt_i32(r, "ndr_diag_code")?,
    })
}

/// The `nodes` columns a [`NodeRecord`] is read from.
macro_rules! node_columns {
    () => {
        "instance, name, host, pid, started, heartbeat, alive_until, stopped, status, \
         clock_offset_ms"
    };
}
pub(crate) use node_columns;

pub(crate) fn node_from_row(r: &impl StoreRow) -> Result<NodeRecord, sqlx::Error> {
    let time =
        |col: &str| get_time(r, col)?.ok_or_else(|| decode_error(format!("nodes.{col} is empty")));
    Ok(NodeRecord {
        info: NodeInfo {
            instance: r.text("instance")?,
            name: r.text("name")?,
            host: r.text("host")?,
            pid: get_u32(r, "pid")?,
            started: time("started")?,
        },
        heartbeat: time("heartbeat")?,
        alive_until: time("alive_until")?,
        stopped: get_time(r, "stopped")?,
        status: r.text("status")?,
        clock_offset_ms: r.opt_i64("clock_offset_ms")?,
    })
}

/// How long the row of a node that stopped or died stays listed when no node of its name
/// comes back: a week, long enough to notice a node that is gone.
pub(crate) const FORGET_NODES_AFTER: std::time::Duration =
    std::time::Duration::from_secs(7 * 86400);

/// The queue columns of a message row, decoded.
pub(crate) struct QueueFields {
    pub in_queue: bool,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<FileTime>,
    pub lease: Option<Lease>,
}

pub(crate) fn queue_fields(r: &impl StoreRow) -> Result<QueueFields, sqlx::Error> {
    let owner = r.opt_text("lease_owner")?;
    let until = get_time(r, "lease_until")?;
    Ok(QueueFields {
        in_queue: r.flag("in_queue")?,
        attempts: get_u32(r, "attempts")?,
        last_error: r.opt_text("last_error")?,
        next_attempt_at: get_time(r, "next_attempt_at")?,
        lease: owner
            .zip(until)
            .map(|(owner, until)| Lease { owner, until }),
    })
}

pub(crate) fn queue_state(
    deferred_delivery_time: Option<FileTime>,
    q: &QueueFields,
    now: FileTime,
) -> QueueState {
    if q.lease.as_ref().is_some_and(|l| l.until > now) {
        QueueState::Sending
    } else if deferred_delivery_time.is_some_and(|t| t > now) {
        QueueState::Scheduled
    } else if q.next_attempt_at.is_some_and(|t| t > now) {
        QueueState::Deferred
    } else {
        QueueState::Queued
    }
}

/// A queue row as [`super::Store::outgoing_queue`] lists it.
pub(crate) fn queue_entry(
    message: MessageRecord,
    q: QueueFields,
    recipients: Vec<RecipientRecord>,
    now: FileTime,
) -> super::QueueEntry {
    super::QueueEntry {
        state: queue_state(message.deferred_delivery_time, &q, now),
        attempts: q.attempts,
        last_error: q.last_error,
        next_attempt_at: q.next_attempt_at,
        lease: q.lease,
        recipients,
        message,
    }
}

/// What one recorded attempt does to a message, decided by [`plan_outcome`]; each backend
/// writes it in its own SQL.
pub(crate) struct OutcomePlan {
    /// The recipients the attempt changed, as they are to be stored.
    pub recipients: Vec<RecipientRecord>,
    pub fate: Fate,
    pub report: OutcomeReport,
}

/// The message's part of an [`OutcomePlan`].
pub(crate) enum Fate {
    /// Every recipient handled, `PR_DELETE_AFTER_SUBMIT`: the message is deleted.
    Delete,
    /// Every recipient handled: to Sent Items, `MSGFLAG_SUBMIT`/`MSGFLAG_UNSENT` cleared,
    /// `PR_PROVIDER_SUBMIT_TIME` now, attempts + 1, out of the queue, lease cleared.
    MoveToSentItems,
    /// Still queued: attempts + 1, due at `next_attempt_at` (`None`: now), `last_error`
    /// replaced when `Some`, lease cleared.
    StillQueued {
        next_attempt_at: Option<FileTime>,
        last_error: Option<String>,
    },
}

/// Checks one message's outcome against what the store holds (queued, leased by `owner`,
/// every row id its own) and works out the recipients' new states and the message's fate.
/// `found`: the message's `delete_after_submit` and queue fields, all of it the decision
/// reads (a backend need not read and decode the whole message).
pub(crate) fn plan_outcome(
    id: MessageId,
    owner: &str,
    found: Option<(bool, QueueFields)>,
    mut recipients: Vec<RecipientRecord>,
    outcomes: Vec<RecipientOutcome>,
) -> MapiResult<OutcomePlan> {
    let Some((delete_after_submit, q)) = found else {
        return Err(not_in_queue(id));
    };
    if !q.in_queue {
        return Err(not_in_queue(id));
    }
    match &q.lease {
        Some(lease) if lease.owner == owner => {}
        Some(lease) => {
            return Err(MapiError::no_access(format!(
                "message {id} is leased by {:?}, not {owner:?}: this spooler's lease expired and was taken over",
                lease.owner
            )));
        }
        None => {
            return Err(MapiError::no_access(format!(
                "message {id} is not leased by {owner:?}: its lease was released or expired"
            )));
        }
    }
    if let Some(o) = outcomes
        .iter()
        .find(|o| !recipients.iter().any(|r| r.row_id == o.row_id))
    {
        return Err(MapiError::invalid_parameter(format!(
            "message {id} has no recipient with PR_ROWID {}",
            o.row_id
        )));
    }
    let mut failed = Vec::new();
    let mut changed = Vec::new();
    for o in outcomes {
        let Some(r) = recipients.iter_mut().find(|r| r.row_id == o.row_id) else {
            continue;
        };
        r.attempts += 1;
        r.ndr_reason_code = None;
        r.ndr_diag_code = None;
        r.retry_at = None;
        match o.result {
            DeliveryResult::Delivered => {
                r.state = RecipientState::Delivered;
                r.responsibility = true;
            }
            DeliveryResult::Deferred { error, retry_at } => {
                r.state = RecipientState::Deferred;
                r.responsibility = false;
                r.last_error = Some(error);
                r.retry_at = Some(retry_at);
            }
            DeliveryResult::Failed {
                error,
                reason_code,
                diag_code,
            } => {
                r.state = RecipientState::Failed;
                r.responsibility = true;
                r.last_error = Some(error);
                r.ndr_reason_code = Some(reason_code);
                r.ndr_diag_code = Some(diag_code);
                failed.push(r.clone());
            }
        }
        changed.push(r.clone());
    }
    let open: Vec<&RecipientRecord> = recipients.iter().filter(|r| r.state.is_open()).collect();
    let (fate, disposition) = if open.is_empty() {
        if delete_after_submit {
            (Fate::Delete, MessageDisposition::Deleted)
        } else {
            (Fate::MoveToSentItems, MessageDisposition::MovedToSentItems)
        }
    } else {
        // A recipient never tried (pending) is due now; otherwise the earliest retry wins.
        let earliest = open
            .iter()
            .filter(|r| r.state == RecipientState::Deferred)
            .min_by_key(|r| r.retry_at);
        let any_pending = open.iter().any(|r| r.state == RecipientState::Pending);
        let next_attempt_at = if any_pending {
            None
        } else {
            earliest.and_then(|r| r.retry_at)
        };
        let last_error = earliest.and_then(|r| r.last_error.clone());
        (
            Fate::StillQueued {
                next_attempt_at,
                last_error,
            },
            MessageDisposition::StillQueued { next_attempt_at },
        )
    };
    Ok(OutcomePlan {
        recipients: changed,
        fate,
        report: OutcomeReport {
            disposition,
            failed,
        },
    })
}

pub(crate) fn not_found(id: MessageId) -> MapiError {
    MapiError::not_found(format!("there is no message {id} in the store"))
}

pub(crate) fn not_in_queue(id: MessageId) -> MapiError {
    MapiError::not_in_queue(format!(
        "message {id} is not in the outgoing queue (unknown, aborted or already sent)"
    ))
}

/// How many `BODY_CHUNK_SIZE` chunks a body of `size` bytes is stored (or read) in; capped (a
/// body of 2^32 chunks, 1 PiB, cannot be read back chunk by chunk anyway).
pub(crate) fn chunk_count(size: u64) -> u32 {
    u32::try_from(size.div_ceil(super::BODY_CHUNK_SIZE as u64)).unwrap_or(u32::MAX)
}

/// The newest schema version `migrator` knows.
pub(crate) fn known_version(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Why a message cannot be resubmitted ([`super::Store::resubmit`]), if it cannot.
pub(crate) fn resubmit_refusal(
    id: MessageId,
    message: &super::MessageRecord,
    in_queue: bool,
    open_recipients: i64,
) -> Option<MapiError> {
    if in_queue {
        return Some(MapiError::invalid_parameter(format!(
            "message {id} is still in the outgoing queue; there is nothing to resubmit"
        )));
    }
    if message.folder != super::Folder::Outbox {
        return Some(MapiError::invalid_parameter(format!(
            "message {id} is in {}, not the Outbox: only a message taken out of the queue (`mapispool abort`) can be resubmitted",
            message.folder.display_name()
        )));
    }
    if open_recipients == 0 {
        return Some(MapiError::invalid_parameter(format!(
            "message {id} has no recipient left to send to (each was delivered or failed for good)"
        )));
    }
    None
}

/// Why a message cannot be moved to Deleted Items ([`super::Store::delete_message`]), if it
/// cannot.
pub(crate) fn delete_refusal(
    id: MessageId,
    message: &super::MessageRecord,
    in_queue: bool,
) -> Option<MapiError> {
    if in_queue {
        return Some(MapiError::invalid_parameter(format!(
            "message {id} is in the outgoing queue; take it out first (`mapispool abort`)"
        )));
    }
    if message.folder == super::Folder::DeletedItems {
        return Some(MapiError::invalid_parameter(format!(
            "message {id} is already in Deleted Items"
        )));
    }
    None
}

/// The SQL dialect of a statement built at run time: the two backends differ in placeholders
/// (`?` against `$n`), booleans (`in_queue = 1` against `in_queue`) and a few function names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// The statement that reads the queued messages passing `filter` (see [`QueueFilter`]) in
/// submit-time order; it binds the filter's numbers in order ([`read_queued`]). The filter's
/// columns come from a closed list and its numbers are bound: no text of the user's reaches
/// the SQL. Their recipients are read after, by the ids found (each backend's
/// `recipients_of`, the primary key of `recipients`).
///
/// Unfiltered, the queue index gives the order without a sort. Filtered, SQLite takes the ids
/// from the filter's index (an `attempts` search, not a scan) and sorts the few; PostgreSQL
/// gets the condition itself: it estimates `attempts > 0` from the whole column (Sent Items
/// has been tried too), and given an `id IN (...)` of that many it hashes the whole table
/// (EXPLAIN at 10,000 messages, bench/notes/pgscan.md), where the plain condition stays on the
/// queue's partial indexes.
pub(crate) fn queue_messages_sql(filter: &QueueFilter, dialect: Dialect) -> String {
    let queued = match dialect {
        Dialect::Sqlite => "in_queue = 1",
        Dialect::Postgres => "in_queue",
    };
    let mut condition = queued.to_owned();
    for (n, (column, op, _)) in filter.terms.iter().enumerate() {
        condition.push_str(match (column, dialect) {
            (QueueColumn::Attempts, _) => " AND attempts ",
            // The table shows sizes past 2 GiB as the largest LONG (`size_long`).
            (QueueColumn::MessageSize, Dialect::Sqlite) => " AND MIN(message_size, 2147483647) ",
            (QueueColumn::MessageSize, Dialect::Postgres) => {
                " AND LEAST(message_size, 2147483647) "
            }
            (QueueColumn::Priority, _) => " AND priority ",
        });
        condition.push_str(match op {
            RelOp::Lt => "< ",
            RelOp::Le => "<= ",
            RelOp::Gt => "> ",
            RelOp::Ge => ">= ",
            RelOp::Eq => "= ",
            RelOp::Ne | RelOp::Re => "<> ",
        });
        match dialect {
            Dialect::Sqlite => condition.push('?'),
            Dialect::Postgres => condition.push_str(&format!("${}", n + 1)),
        }
    }
    let condition = match dialect {
        Dialect::Sqlite if !filter.is_empty() => {
            format!("id IN (SELECT id FROM messages WHERE {condition})")
        }
        _ => condition,
    };
    format!(
        "SELECT {} FROM messages WHERE {condition} ORDER BY client_submit_time, id",
        message_columns!()
    )
}

/// The queued messages passing `filter` ([`queue_messages_sql`]), read on `conn`.
pub(crate) async fn read_queued<DB>(
    conn: &mut DB::Connection,
    filter: &QueueFilter,
    dialect: Dialect,
) -> Result<Vec<DB::Row>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let mut q = sqlx::query::<DB>(sqlx::AssertSqlSafe(queue_messages_sql(filter, dialect)));
    for (_, _, v) in &filter.terms {
        // 64-bit: the columns are.
        q = q.bind(i64::from(*v));
    }
    q.fetch_all(&mut *conn).await
}

/// The ids of message rows ([`message_columns`]), in their order.
pub(crate) fn row_ids<R: StoreRow>(rows: &[R]) -> Result<Vec<i64>, sqlx::Error> {
    rows.iter().map(|r| r.i64("id")).collect()
}

/// The queue entries of `rows` (messages, [`message_columns`]) with their `recipients`, in the
/// order of `rows`.
pub(crate) fn queue_entries<R: StoreRow>(
    rows: &[R],
    mut recipients: HashMap<MessageId, Vec<RecipientRecord>>,
    now: FileTime,
) -> Result<Vec<super::QueueEntry>, sqlx::Error> {
    rows.iter()
        .map(|r| {
            let message = message_from_row(r)?;
            let q = queue_fields(r)?;
            let rcpts = recipients.remove(&message.id).unwrap_or_default();
            Ok(queue_entry(message, q, rcpts, now))
        })
        .collect()
}

/// Recipient rows ([`recipient_columns`]) by message id, each message's in the rows' order.
pub(crate) fn group_recipients<R: StoreRow>(
    rows: &[R],
) -> Result<HashMap<MessageId, Vec<RecipientRecord>>, sqlx::Error> {
    let mut by_message: HashMap<MessageId, Vec<RecipientRecord>> = HashMap::new();
    for r in rows {
        by_message
            .entry(MessageId(r.i64("message_id")?))
            .or_default()
            .push(recipient_from_row(r)?);
    }
    Ok(by_message)
}

/// The statement of [`message_ids_between`]: binds the first id, the last and the limit.
pub(crate) fn message_ids_between_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "SELECT id, COUNT(*) OVER () FROM messages \
             WHERE id BETWEEN ?1 AND ?2 AND folder <> 0 ORDER BY id LIMIT ?3"
        }
        Dialect::Postgres => {
            "SELECT id, COUNT(*) OVER () FROM messages \
             WHERE id BETWEEN $1 AND $2 AND folder <> 0 ORDER BY id LIMIT $3"
        }
    }
}

/// [`super::Store::message_ids_between`] in `dialect` on `executor`: the primary key's range,
/// counted as it is read (the count is over the range only, so it grows with the matches, not
/// with the store).
pub(crate) async fn message_ids_between<'e, DB, E>(
    executor: E,
    dialect: Dialect,
    first: MessageId,
    last: MessageId,
    limit: u32,
) -> Result<(Vec<MessageId>, u64), sqlx::Error>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, i64): sqlx::FromRow<'r, DB::Row>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    let rows: Vec<(i64, i64)> = sqlx::query_as::<DB, (i64, i64)>(message_ids_between_sql(dialect))
        .bind(first.0)
        .bind(last.0)
        .bind(i64::from(limit))
        .fetch_all(executor)
        .await?;
    let total = rows
        .first()
        .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
    Ok((rows.iter().map(|(id, _)| MessageId(*id)).collect(), total))
}

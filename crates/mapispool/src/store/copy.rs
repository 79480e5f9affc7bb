//! `mapispool store copy --to URL|PATH`: a store's messages into a store of the other
//! backend. SQLite into PostgreSQL moves a single machine's queue into a database that several
//! nodes share; PostgreSQL into SQLite is the way back, for a node that leaves the cluster or
//! for a single-machine copy.
//!
//! What moves: every visible message (Inbox, Outbox, Sent Items, Deleted Items) with all its
//! columns — its id (so its entry ID stays valid), the queue state, attempts, retry times and
//! last error — its recipients with their delivery states, and its body (chunk by chunk,
//! however the source keeps it); then the inbound dedupe table and the inbound sync state.
//! Leases are dropped: no spooler serves the source while it is copied. The target's id
//! counter moves past every id the source has given out, so its new messages never take an
//! id (an entry ID) the source used.
//!
//! Each message becomes visible in the target in one transaction that also records its source
//! id in `store_copied`, so a copy cut off at any point (a crash, the database going away) is
//! resumed by running it again: it copies only what `store_copied` does not list, and never a
//! message twice, even one the target has since sent and deleted. The body gets there the
//! target's own way: into PostgreSQL under a hidden staging row (folder 0) first, which a rerun
//! removes before writing again; into SQLite as its own submit writes one (in `body_chunks`,
//! or from `FILE_BODY_AT` bytes on in a file beside the store, fsynced before the
//! transaction that names it; see `sqlite::bodies`).
//!
//! Refused: into a target that holds messages unless they are this same copy's (its
//! `store_copied` names this source and no other), since copying into a store in use would mix
//! two stores' ids; and from a source a spooler serves. For SQLite the caller holds the
//! daemon's lock; for PostgreSQL no node of the cluster may be alive on the server's clock,
//! which is checked again before each message, so a node started meanwhile stops the copy.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, BoxStream, StreamExt as _};
use mapi::constants::SUBMITFLAG_LOCKED;
use mapi::{FileTime, MapiCode, MapiError, MapiResult};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::node::NodeState;
use super::postgres::PgStore;
use super::shared::{STAGING_FOLDER, ft};
use super::sqlite::SqliteStore;
use super::{MessageId, Store};

/// What one run of a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Messages copied by this run.
    pub copied: u64,
    /// Messages an earlier run had copied already (skipped).
    pub already_copied: u64,
    /// Of the copied, how many were queued (in the Outbox, to be sent by the target's spooler).
    pub queued: u64,
    /// Inbound dedupe and sync-state rows the target did not have yet.
    pub inbound_rows: u64,
}

/// Copies every message of the SQLite store `source` that `target` does not have from an
/// earlier run of this same copy (`source_name` says which source, in `store_copied`), then
/// the inbound state. The caller makes sure no spooler serves `source` meanwhile (the daemon
/// lock).
///
/// Errors: `MAPI_E_COLLISION` when `target` holds messages not from this copy; store errors of
/// either side (a copy cut off is resumed by running it again).
pub async fn copy_sqlite_to_postgres(
    source: &SqliteStore,
    target: &PgStore,
    source_name: &str,
) -> MapiResult<CopyReport> {
    copy(source, target, source_name).await
}

/// The other direction: every message of the PostgreSQL store `source` that the SQLite store
/// `target` does not have from an earlier run of this same copy, then the inbound state. The
/// caller holds `target`'s daemon lock (nothing else writes it meanwhile).
///
/// Errors: `MAPI_E_BUSY` while a node of `source`'s cluster is alive (checked before each
/// message); `MAPI_E_COLLISION` when `target` holds messages not from this copy; store errors
/// of either side (a copy cut off is resumed by running it again).
pub async fn copy_postgres_to_sqlite(
    source: &PgStore,
    target: &SqliteStore,
    source_name: &str,
) -> MapiResult<CopyReport> {
    copy(source, target, source_name).await
}

/// The copy itself, the same for both directions: see the module's documentation.
async fn copy<S: Source, T: Target>(
    source: &S,
    target: &T,
    source_name: &str,
) -> MapiResult<CopyReport> {
    source.ensure_unserved().await?;
    let (sources, visible) = target.copied_sources().await?;
    if sources.iter().any(|s| s != source_name) || (visible > 0 && sources.is_empty()) {
        let from = if sources.is_empty() {
            "messages of its own".to_owned()
        } else {
            format!("messages copied from {}", sources.join(", "))
        };
        return Err(MapiError::new(
            MapiCode::Collision,
            format!(
                "the target store {} is not empty: it holds {from}; copy into an empty store \
                 (or rerun the same copy, from {source_name}, to resume it)",
                target.location()
            ),
        ));
    }

    let ids = source.message_ids().await?;
    let done = target.copied_ids(source_name).await?;
    // New messages of the target take ids past every one the source gave out, so a resumed
    // copy never meets one of them under a source id and no entry ID names two messages.
    target.keep_ids_past(source.last_id().await?).await?;

    let mut report = CopyReport::default();
    for id in ids {
        if done.contains(&id) {
            report.already_copied += 1;
            continue;
        }
        // Cheap next to a message's copy, and a node started meanwhile would send what is
        // copied here a second time.
        source.ensure_unserved().await?;
        let Some(message) = source.read_message(id).await? else {
            // Deleted since it was listed: nothing to copy.
            continue;
        };
        let queued = message.queued;
        target
            .put_message(message, body_of(source, id), source_name)
            .await?;
        report.copied += 1;
        if queued {
            report.queued += 1;
        }
    }

    // Inbound state: what was downloaded already (so it is not downloaded again) and where
    // each inbound transport stands. Rows the target has (its own) win.
    report.inbound_rows = target.put_inbound(source.inbound().await?).await?;
    Ok(report)
}

/// One message of the source as it goes into the target: its rows, leases dropped.
struct Copied {
    id: i64,
    /// Its folder (the target may keep it hidden until its body is in).
    folder: i64,
    queued: bool,
    /// [`MESSAGE_COLUMNS`], in that order.
    values: Vec<Value>,
    /// [`RECIPIENT_COLUMNS`] of each recipient, by row id.
    recipients: Vec<Vec<Value>>,
}

impl Copied {
    fn new(id: i64, mut values: Vec<Value>, recipients: Vec<Vec<Value>>) -> Copied {
        let queued = get(&values, MESSAGE_COLUMNS, "in_queue") == Some(&Value::Bool(true));
        let folder = get_int(&values, MESSAGE_COLUMNS, "folder").unwrap_or(0);
        let flags = get_int(&values, MESSAGE_COLUMNS, "submit_flags").unwrap_or(0);
        // Nobody serves the source now: a lease it holds is a dead spooler's.
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "submit_flags",
            Value::Int(Some(flags & !i64::from(SUBMITFLAG_LOCKED))),
        );
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "lease_owner",
            Value::Text(None),
        );
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "lease_until",
            Value::Int(None),
        );
        Copied {
            id,
            folder,
            queued,
            values,
            recipients,
        }
    }
}

/// A message's body, chunk by chunk as its store keeps it.
type Body<'a> = BoxStream<'a, MapiResult<Vec<u8>>>;

fn body_of<S: Store>(source: &S, id: i64) -> Body<'_> {
    stream::once(source.body_chunk_count(MessageId(id)))
        .flat_map(move |count| match count {
            Ok(count) => stream::iter(0..count)
                .then(move |seq| async move {
                    source.body_chunk(MessageId(id), seq).await?.ok_or_else(|| {
                        MapiError::new(
                            MapiCode::CorruptStore,
                            format!("message {id} of the source store lacks body chunk {seq}"),
                        )
                    })
                })
                .boxed(),
            // The error travels as the body's only item.
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// Inbound state: `inbound_seen` and `sync_state` rows.
struct Inbound {
    seen: Vec<Vec<Value>>,
    state: Vec<Vec<Value>>,
}

/// The store a copy reads. Its [`Store`] side gives the bodies.
trait Source: Store {
    /// Refuses while a spooler serves the store (`MAPI_E_BUSY`).
    async fn ensure_unserved(&self) -> MapiResult<()>;
    /// The visible messages' ids, in order.
    async fn message_ids(&self) -> MapiResult<Vec<i64>>;
    /// The highest id the store has given out (deleted messages' included).
    async fn last_id(&self) -> MapiResult<i64>;
    /// Message `id`'s rows, `None` if it is gone.
    async fn read_message(&self, id: i64) -> MapiResult<Option<Copied>>;
    async fn inbound(&self) -> MapiResult<Inbound>;
}

/// The store a copy writes.
trait Target {
    /// What names it in messages.
    fn location(&self) -> String;
    /// The sources `store_copied` names, and how many visible messages the store holds.
    async fn copied_sources(&self) -> MapiResult<(Vec<String>, i64)>;
    /// The source ids `store_copied` lists for `source`.
    async fn copied_ids(&self, source: &str) -> MapiResult<HashSet<i64>>;
    /// Makes the store's next new id larger than `id`.
    async fn keep_ids_past(&self, id: i64) -> MapiResult<()>;
    /// Message `message` with its body, visible together with its `store_copied` record.
    async fn put_message(&self, message: Copied, body: Body<'_>, source: &str) -> MapiResult<()>;
    /// The inbound state rows the store lacks; returns how many it took.
    async fn put_inbound(&self, inbound: Inbound) -> MapiResult<u64>;
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
}

/// The columns of `messages` both schemas have, in one order.
const MESSAGE_COLUMNS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("folder", Kind::Int),
    ("staged_at", Kind::Int),
    ("message_class", Kind::Text),
    ("subject", Kind::Text),
    ("sender_name", Kind::Text),
    ("sender_address", Kind::Text),
    ("envelope_from", Kind::Text),
    ("internet_message_id", Kind::Text),
    ("message_flags", Kind::Int),
    ("submit_flags", Kind::Int),
    ("client_submit_time", Kind::Int),
    ("provider_submit_time", Kind::Int),
    ("delivery_time", Kind::Int),
    ("deferred_delivery_time", Kind::Int),
    ("delete_after_submit", Kind::Bool),
    ("priority", Kind::Int),
    ("message_size", Kind::Int),
    ("body_chunks", Kind::Int),
    ("transport", Kind::Text),
    ("server_id", Kind::Text),
    ("ndr_reason_code", Kind::Int),
    ("ndr_diag_code", Kind::Int),
    ("in_queue", Kind::Bool),
    ("attempts", Kind::Int),
    ("last_error", Kind::Text),
    ("next_attempt_at", Kind::Int),
    ("lease_owner", Kind::Text),
    ("lease_until", Kind::Int),
    ("dsn_notify", Kind::Text),
    ("dsn_ret", Kind::Text),
];

const RECIPIENT_COLUMNS: &[(&str, Kind)] = &[
    ("message_id", Kind::Int),
    ("row_id", Kind::Int),
    ("display_name", Kind::Text),
    ("address", Kind::Text),
    ("addrtype", Kind::Text),
    ("recipient_type", Kind::Int),
    ("responsibility", Kind::Bool),
    ("state", Kind::Text),
    ("attempts", Kind::Int),
    ("last_error", Kind::Text),
    ("retry_at", Kind::Int),
    ("ndr_reason_code", Kind::Int),
    ("ndr_diag_code", Kind::Int),
];

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
}

const INBOUND_SEEN_COLUMNS: &[(&str, Kind)] = &[
    ("transport", Kind::Text),
    ("server_id", Kind::Text),
    ("message_id", Kind::Int),
    ("received_at", Kind::Int),
];

const SYNC_STATE_COLUMNS: &[(&str, Kind)] = &[
    ("transport", Kind::Text),
    ("key", Kind::Text),
    ("value", Kind::Text),
];

fn column_list(columns: &[(&str, Kind)]) -> String {
    columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's `columns`, read from either backend.
fn read_row<R>(row: &R, columns: &[(&str, Kind)]) -> MapiResult<Vec<Value>>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    columns
        .iter()
        .map(|(name, kind)| {
            let value = match kind {
                Kind::Int => row.try_get::<Option<i64>, _>(*name).map(Value::Int),
                Kind::Text => row.try_get::<Option<String>, _>(*name).map(Value::Text),
                Kind::Bool => row.try_get::<bool, _>(*name).map(Value::Bool),
            };
            value.map_err(|e| {
                MapiError::new(
                    MapiCode::CorruptStore,
                    format!("reading column {name} of the source store: {e}"),
                )
            })
        })
        .collect()
}

fn read_rows<R>(rows: &[R], columns: &[(&str, Kind)]) -> MapiResult<Vec<Vec<Value>>>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    rows.iter().map(|row| read_row(row, columns)).collect()
}

/// `INSERT INTO table (columns) VALUES (...), ...` for either backend (its placeholders).
fn insert<DB>(table: &str, columns: &[(&str, Kind)], rows: Vec<Vec<Value>>) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::new(format!(
        "INSERT INTO {table} ({}) VALUES ",
        column_list(columns)
    ));
    for (i, values) in rows.into_iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(");
        let mut sep = q.separated(", ");
        for value in values {
            match value {
                Value::Int(v) => sep.push_bind(v),
                Value::Text(v) => sep.push_bind(v),
                Value::Bool(v) => sep.push_bind(v),
            };
        }
        q.push(")");
    }
    q
}

/// The `store_copied` record of source message `id`.
fn record_copied<DB>(id: i64, source: &str) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
{
    insert(
        "store_copied",
        &[
            ("message_id", Kind::Int),
            ("source", Kind::Text),
            ("copied_at", Kind::Int),
        ],
        vec![vec![
            Value::Int(Some(id)),
            Value::Text(Some(source.to_owned())),
            Value::Int(Some(ft(FileTime::now()))),
        ]],
    )
}

/// One insert per inbound state row, each a no-op where the target has the row already.
fn inbound_inserts<DB>(inbound: Inbound) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
    DB::Arguments: Default,
    for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
{
    let seen = inbound
        .seen
        .into_iter()
        .map(|row| ("inbound_seen", INBOUND_SEEN_COLUMNS, row));
    let state = inbound
        .state
        .into_iter()
        .map(|row| ("sync_state", SYNC_STATE_COLUMNS, row));
    seen.chain(state)
        .map(|(table, columns, row)| {
            let mut q = insert(table, columns, vec![row]);
            q.push(" ON CONFLICT DO NOTHING");
            q
        })
        .collect()
}

fn position(columns: &[(&str, Kind)], name: &str) -> Option<usize> {
    columns.iter().position(|(n, _)| *n == name)
}

fn set(values: &mut [Value], columns: &[(&str, Kind)], name: &str, value: Value) {
    if let Some(i) = position(columns, name) {
        values[i] = value;
    }
}

fn get<'v>(values: &'v [Value], columns: &[(&str, Kind)], name: &str) -> Option<&'v Value> {
    position(columns, name).and_then(|i| values.get(i))
}

fn get_int(values: &[Value], columns: &[(&str, Kind)], name: &str) -> Option<i64> {
    match get(values, columns, name) {
        Some(Value::Int(v)) => *v,
        _ => None,
    }
}

const SELECT_INBOUND_SEEN: &str =
    "SELECT transport, server_id, message_id, received_at FROM inbound_seen";
const SELECT_SYNC_STATE: &str = "SELECT transport, key, value FROM sync_state";

// The reads both dialects share but for the bind placeholder (`?` in SQLite, `$1` in
// PostgreSQL), written once for both backends' impls. A macro rather than a function generic
// over `sqlx::Database`: each backend reads its own pool and maps errors with its own `db`.
macro_rules! source_reads {
    ($p:literal) => {
        async fn message_ids(&self) -> MapiResult<Vec<i64>> {
            sqlx::query_scalar(concat!(
                "SELECT id FROM messages WHERE folder <> ",
                $p,
                " ORDER BY id"
            ))
            .bind(STAGING_FOLDER)
            .fetch_all(self.pool())
            .await
            .map_err(self.db("listing messages"))
        }

        async fn read_message(&self, id: i64) -> MapiResult<Option<Copied>> {
            let select = format!(
                "SELECT {} FROM messages WHERE id = {}",
                column_list(MESSAGE_COLUMNS),
                $p
            );
            let Some(row) = sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(self.db("reading a message"))?
            else {
                return Ok(None);
            };
            let select = format!(
                "SELECT {} FROM recipients WHERE message_id = {} ORDER BY row_id",
                column_list(RECIPIENT_COLUMNS),
                $p
            );
            let recipients = sqlx::query(sqlx::AssertSqlSafe(select))
                .bind(id)
                .fetch_all(self.pool())
                .await
                .map_err(self.db("reading recipients"))?;
            Ok(Some(Copied::new(
                id,
                read_row(&row, MESSAGE_COLUMNS)?,
                read_rows(&recipients, RECIPIENT_COLUMNS)?,
            )))
        }

        async fn inbound(&self) -> MapiResult<Inbound> {
            let seen = sqlx::query(SELECT_INBOUND_SEEN)
                .fetch_all(self.pool())
                .await
                .map_err(self.db("reading inbound state"))?;
            let state = sqlx::query(SELECT_SYNC_STATE)
                .fetch_all(self.pool())
                .await
                .map_err(self.db("reading inbound sync state"))?;
            Ok(Inbound {
                seen: read_rows(&seen, INBOUND_SEEN_COLUMNS)?,
                state: read_rows(&state, SYNC_STATE_COLUMNS)?,
            })
        }
    };
}

// `source_reads`' counterpart for a `Target`.
macro_rules! target_reads {
    ($p:literal) => {
        async fn copied_sources(&self) -> MapiResult<(Vec<String>, i64)> {
            let sources = sqlx::query_scalar("SELECT DISTINCT source FROM store_copied")
                .fetch_all(self.pool())
                .await
                .map_err(self.db("reading what was copied before"))?;
            let visible = sqlx::query_scalar(concat!(
                "SELECT count(*) FROM messages WHERE folder <> ",
                $p
            ))
            .bind(STAGING_FOLDER)
            .fetch_one(self.pool())
            .await
            .map_err(self.db("counting messages"))?;
            Ok((sources, visible))
        }

        async fn copied_ids(&self, source: &str) -> MapiResult<HashSet<i64>> {
            let ids: Vec<i64> = sqlx::query_scalar(concat!(
                "SELECT message_id FROM store_copied WHERE source = ",
                $p
            ))
            .bind(source)
            .fetch_all(self.pool())
            .await
            .map_err(self.db("reading what was copied before"))?;
            Ok(ids.into_iter().collect())
        }
    };
}

// --- SQLite ---------------------------------------------------------------------------------

impl Source for SqliteStore {
    source_reads!("?");

    async fn ensure_unserved(&self) -> MapiResult<()> {
        // The caller holds the daemon's lock on this store.
        Ok(())
    }

    async fn last_id(&self) -> MapiResult<i64> {
        sqlx::query_scalar(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0), \
             COALESCE((SELECT max(id) FROM messages), 0))",
        )
        .fetch_one(self.pool())
        .await
        .map_err(self.db("reading the last message id"))
    }
}

impl Target for SqliteStore {
    target_reads!("?");

    fn location(&self) -> String {
        self.path().display().to_string()
    }

    async fn keep_ids_past(&self, id: i64) -> MapiResult<()> {
        // AUTOINCREMENT's counter: SQLite gives out ids past the larger of it and the largest
        // id present, and the schema documents this table as one to write.
        let what = "moving the id counter past the copied ids";
        let mut tx = self
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.db(what))?;
        sqlx::query("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'messages'")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
        sqlx::query(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'messages', ? \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))
    }

    async fn put_message(&self, message: Copied, body: Body<'_>, source: &str) -> MapiResult<()> {
        // The body reaches the store's writer as a reader; an error of the source's is kept
        // aside so that it is reported as itself (its code, its server), not as a failed read.
        let failed: Arc<Mutex<Option<MapiError>>> = Arc::default();
        let slot = Arc::clone(&failed);
        let reader = tokio_util::io::StreamReader::new(body.map(move |chunk| {
            chunk.map(bytes::Bytes::from).map_err(|e| {
                if let Ok(mut slot) = slot.lock() {
                    slot.get_or_insert_with(|| e.clone());
                }
                std::io::Error::other(e)
            })
        }));
        let id = message.id;
        let mut inserts = vec![insert::<sqlx::Sqlite>(
            "messages",
            MESSAGE_COLUMNS,
            vec![message.values],
        )];
        if !message.recipients.is_empty() {
            inserts.push(insert("recipients", RECIPIENT_COLUMNS, message.recipients));
        }
        inserts.push(record_copied(id, source));
        let written = self.add_copied(id, inserts, reader).await;
        match (written, failed.lock().ok().and_then(|mut e| e.take())) {
            (Err(_), Some(source_error)) => Err(source_error),
            (written, _) => written,
        }
    }

    async fn put_inbound(&self, inbound: Inbound) -> MapiResult<u64> {
        let what = "copying inbound state";
        let mut tx = self
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(self.db(what))?;
        let mut added = 0;
        for mut q in inbound_inserts::<sqlx::Sqlite>(inbound) {
            let done = q.build().execute(&mut *tx).await.map_err(self.db(what))?;
            added += done.rows_affected();
        }
        tx.commit().await.map_err(self.db(what))?;
        Ok(added)
    }
}

// --- PostgreSQL -----------------------------------------------------------------------------

impl Source for PgStore {
    source_reads!("$1");

    async fn ensure_unserved(&self) -> MapiResult<()> {
        // On the server's clock, as the cluster view judges it.
        let now = self.now();
        let live: Vec<String> = self
            .nodes()
            .await?
            .iter()
            .filter(|n| n.state(now) == NodeState::Alive)
            .map(|n| format!("{} on {} (pid {})", n.info.name, n.info.host, n.info.pid))
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        Err(MapiError::new(
            MapiCode::Busy,
            format!(
                "cannot copy the store while a spooler serves it: {} of {} alive \
                 (`mapispool status --cluster` lists the nodes); stop them first, or wait \
                 until a node that died shows as dead",
                live.join(", "),
                self.server()
            ),
        ))
    }

    async fn last_id(&self) -> MapiResult<i64> {
        sqlx::query_scalar(
            "SELECT GREATEST(COALESCE(pg_sequence_last_value(\
             pg_get_serial_sequence('messages', 'id')::regclass), 0), \
             COALESCE((SELECT max(id) FROM messages), 0))",
        )
        .fetch_one(self.pool())
        .await
        .map_err(self.db("reading the last message id"))
    }
}

impl Target for PgStore {
    target_reads!("$1");

    fn location(&self) -> String {
        self.server().to_owned()
    }

    async fn keep_ids_past(&self, id: i64) -> MapiResult<()> {
        if id < 1 {
            return Ok(());
        }
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('messages', 'id'), \
             GREATEST($1, (SELECT COALESCE(max(id), 1) FROM messages)))",
        )
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(self.db("moving the id sequence past the copied ids"))?;
        Ok(())
    }

    async fn put_message(&self, message: Copied, body: Body<'_>, source: &str) -> MapiResult<()> {
        let id = message.id;
        // What a run cut off here left: its staging row and chunks.
        sqlx::query("DELETE FROM messages WHERE id = $1 AND folder = $2")
            .bind(id)
            .bind(STAGING_FOLDER)
            .execute(self.pool())
            .await
            .map_err(self.db("removing a half-copied message"))?;
        // Hidden until its body and recipients are in.
        let mut values = message.values;
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "folder",
            Value::Int(Some(STAGING_FOLDER)),
        );
        insert::<sqlx::Postgres>("messages", MESSAGE_COLUMNS, vec![values])
            .build()
            .execute(self.pool())
            .await
            .map_err(self.db("copying a message"))?;
        let mut body = body;
        let mut count: i64 = 0;
        while let Some(chunk) = body.next().await {
            sqlx::query("INSERT INTO body_chunks (message_id, seq, data) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(count)
                .bind(chunk?)
                .execute(self.pool())
                .await
                .map_err(self.db("copying a message body"))?;
            count += 1;
        }

        // Visible, with its recipients and its record, at once.
        let what = "copying a message";
        let mut tx = self.pool().begin().await.map_err(self.db(what))?;
        if !message.recipients.is_empty() {
            insert::<sqlx::Postgres>("recipients", RECIPIENT_COLUMNS, message.recipients)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(self.db("copying recipients"))?;
        }
        sqlx::query("UPDATE messages SET folder = $2, body_chunks = $3 WHERE id = $1")
            .bind(id)
            .bind(message.folder)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
        record_copied::<sqlx::Postgres>(id, source)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(self.db("recording a copied message"))?;
        tx.commit().await.map_err(self.db(what))
    }

    async fn put_inbound(&self, inbound: Inbound) -> MapiResult<u64> {
        let what = "copying inbound state";
        let mut tx = self.pool().begin().await.map_err(self.db(what))?;
        let mut added = 0;
        for mut q in inbound_inserts::<sqlx::Postgres>(inbound) {
            let done = q.build().execute(&mut *tx).await.map_err(self.db(what))?;
            added += done.rows_affected();
        }
        tx.commit().await.map_err(self.db(what))?;
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{BODY_CHUNK_SIZE, Folder, NewMessage, NewRecipient, NodeInfo};

    async fn submit<S: Store>(store: &S, subject: &str, body: &[u8]) -> i64 {
        let message = NewMessage {
            subject: subject.into(),
            recipients: vec![NewRecipient::to("bob@example.com")],
            ..NewMessage::default()
        };
        store.submit(message, body).await.expect("submit").id.0
    }

    async fn body<S: Store>(store: &S, id: i64) -> Vec<u8> {
        let mut all = Vec::new();
        let count = store.body_chunk_count(MessageId(id)).await.expect("count");
        for seq in 0..count {
            all.extend(
                store
                    .body_chunk(MessageId(id), seq)
                    .await
                    .expect("chunk")
                    .expect("present"),
            );
        }
        all
    }

    #[tokio::test]
    async fn postgres_to_sqlite_keeps_ids_and_bodies_and_resumes_a_cut_copy() {
        let url = crate::store::postgres::testing::fresh_database().await;
        let pg = PgStore::open(&url, None).await.expect("open");
        let small = submit(&pg, "small", b"Subject: small\r\n\r\nhi\r\n").await;
        let large_body: Vec<u8> = (0..3 * BODY_CHUNK_SIZE + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let large = submit(&pg, "large", &large_body).await;
        // An id given out and gone: the copy's new messages must not take it again.
        let gone = submit(&pg, "gone", b"x").await;
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(gone)
            .execute(pg.pool())
            .await
            .expect("delete");

        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(dir.path().join("store.db"))
            .await
            .expect("open");
        let report = copy_postgres_to_sqlite(&pg, &sqlite, pg.server())
            .await
            .expect("copy");
        assert_eq!(report.copied, 2);
        assert_eq!(report.queued, 2);
        for id in [small, large] {
            let (a, b) = (
                pg.message(MessageId(id)).await.expect("source"),
                sqlite.message(MessageId(id)).await.expect("copy"),
            );
            assert_eq!(a.subject, b.subject);
            assert_eq!(a.folder, Folder::Outbox);
            assert_eq!(b.folder, Folder::Outbox);
            assert_eq!(body(&pg, id).await, body(&sqlite, id).await);
        }
        let file: Option<String> =
            sqlx::query_scalar("SELECT body_file FROM messages WHERE id = ?")
                .bind(large)
                .fetch_one(sqlite.pool())
                .await
                .expect("row");
        assert!(
            file.is_some(),
            "a large body is a file, as SQLite keeps one"
        );

        // Cut off before the large message's commit: the rerun copies it alone.
        sqlx::query("DELETE FROM messages WHERE id = ?")
            .bind(large)
            .execute(sqlite.pool())
            .await
            .expect("delete");
        sqlx::query("DELETE FROM store_copied WHERE message_id = ?")
            .bind(large)
            .execute(sqlite.pool())
            .await
            .expect("delete");
        let report = copy_postgres_to_sqlite(&pg, &sqlite, pg.server())
            .await
            .expect("copy");
        assert_eq!((report.copied, report.already_copied), (1, 1));
        assert_eq!(body(&sqlite, large).await, large_body);

        let new = submit(&sqlite, "new", b"new").await;
        assert!(new > gone, "{new} after {gone}");

        // Another source into it: refused.
        let other_url = crate::store::postgres::testing::fresh_database().await;
        let other = PgStore::open(&other_url, None).await.expect("open");
        let err = copy_postgres_to_sqlite(&other, &sqlite, other.server())
            .await
            .expect_err("not empty");
        assert_eq!(err.code, MapiCode::Collision, "{err}");
    }

    #[tokio::test]
    async fn a_live_node_of_the_cluster_refuses_the_copy() {
        let url = crate::store::postgres::testing::fresh_database().await;
        let pg = PgStore::open(&url, None).await.expect("open");
        submit(&pg, "queued", b"x").await;
        let node = NodeInfo {
            instance: "i-1".into(),
            name: "node-1".into(),
            host: "host-a".into(),
            pid: 4242,
            started: FileTime::now(),
        };
        pg.register_node(&node, pg.now(), Duration::from_secs(60))
            .await
            .expect("register");
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(dir.path().join("store.db"))
            .await
            .expect("open");
        let err = copy_postgres_to_sqlite(&pg, &sqlite, pg.server())
            .await
            .expect_err("refused");
        assert_eq!(err.code, MapiCode::Busy, "{err}");
        assert!(err.cause.contains("node-1"), "{err}");
        pg.node_stopped("i-1", pg.now()).await.expect("stop");
        let report = copy_postgres_to_sqlite(&pg, &sqlite, pg.server())
            .await
            .expect("copy");
        assert_eq!(report.copied, 1);
    }
}

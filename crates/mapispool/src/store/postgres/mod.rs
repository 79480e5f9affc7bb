//! The PostgreSQL backend: one database that several spooler nodes share.
//!
//! The schema is the SQLite one (migrations/postgres), so rows decode through the shared
//! mappings ([`super::shared`]); what differs is the SQL:
//! - leasing takes due rows with `FOR UPDATE SKIP LOCKED`, so concurrent nodes never wait on
//!   each other's rows and never take the same message (see the schema for `lease_owner` and
//!   `lease_until`);
//! - lists of ids travel as arrays (`= ANY($1)`, `UNNEST`), one statement for any count;
//! - a whole small message is one statement (data-modifying CTEs), so one commit.
//!
//! Durability: the `pool`'s commits are synchronous (`synchronous_commit = on`, the server's
//! fsync); the `relaxed` pool's connections start with `synchronous_commit = off`, for what
//! the SQLite backend writes with `synchronous = NORMAL` (leases, outcomes, staging rows and
//! chunks, received messages before [`Store::sync`]): a server crash can lose the last of those
//! commits, never corrupt anything, and a later synchronous commit makes every earlier one
//! durable with it.
//!
//! Bodies are written as on SQLite: a hidden staging row (folder 0), its chunks one
//! autocommitted row at a time, then a short transaction that makes it visible. No transaction
//! stays open while a slow sender trickles: a long transaction would hold back vacuum (the
//! known hazard of job queues on PostgreSQL) as well as a lock.

mod clock;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use mapi::constants::{MSGFLAG_FROMME, MSGFLAG_SUBMIT, MSGFLAG_UNSENT, SUBMITFLAG_LOCKED};
use mapi::{FileTime, MapiError, MapiResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, QueryBuilder, Row as _};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::shared::{
    Dialect, Fate, QueueFields, STAGING_FOLDER, STALE_STAGING, StagedProps, StoreRow, chunk_count,
    ft, get_u32, group_recipients, leased_columns, leased_from_row, message_columns,
    message_from_row, node_columns, node_from_row, not_found, not_in_queue, plan_outcome,
    queue_entries, queue_entry, queue_fields, read_queued, recipient_columns, require_recipients,
    row_ids, size_i64, validate_recipients,
};
use super::{
    BODY_CHUNK_SIZE, Folder, Heartbeat, InboundDelivery, InboundMessage, Lease, LeaseFilter,
    LeasedMessage, MessageId, MessageRecord, NewMessage, NewRecipient, NodeInfo, NodeRecord,
    OutcomeReport, PREFETCH_BATCH, PREFETCH_BODY, QueueCounts, QueueEntry, QueueFilter,
    RecipientOutcome, RecipientRecord, Store, StoreError,
};

/// [`Store::queue_counts`]: the states and their precedence are those of `queue_state`. It
/// reads the queued rows through one of the queue's partial indexes (`WHERE in_queue`), so it
/// grows with the queue, not the store (bench/notes/pgscan.md).
pub(crate) const QUEUE_COUNTS: &str = "SELECT transport, COUNT(*) FILTER (WHERE s = 0) AS queued, \
       COUNT(*) FILTER (WHERE s = 1) AS sending, \
       COUNT(*) FILTER (WHERE s = 2) AS scheduled, \
       COUNT(*) FILTER (WHERE s = 3) AS deferred \
     FROM (SELECT transport, CASE \
         WHEN lease_owner IS NOT NULL AND lease_until > $1 THEN 1 \
         WHEN deferred_delivery_time > $1 THEN 2 \
         WHEN next_attempt_at > $1 THEN 3 \
         ELSE 0 END AS s \
       FROM messages WHERE in_queue) AS q \
     GROUP BY transport ORDER BY transport NULLS FIRST";

/// [`Store::lease_due`]: binds owner, lease end, SUBMITFLAG_LOCKED, now, include backoff,
/// transport, only id, limit. SKIP LOCKED: rows another node is leasing right now are passed
/// over, not waited for; the outer UPDATE re-checks nothing it need not, as the inner SELECT
/// locked its rows.
pub(crate) const LEASE_DUE: &str = concat!(
    "UPDATE messages SET lease_owner = $1, lease_until = $2, \
       submit_flags = submit_flags | $3 \
     WHERE id IN (SELECT id FROM messages WHERE in_queue \
       AND (deferred_delivery_time IS NULL OR deferred_delivery_time <= $4) \
       AND ($5::boolean OR next_attempt_at IS NULL OR next_attempt_at <= $4) \
       AND (lease_until IS NULL OR lease_until <= $4) \
       AND ($6::text IS NULL OR transport = $6) \
       AND ($7::bigint IS NULL OR id = $7) \
       ORDER BY client_submit_time, id LIMIT $8 FOR UPDATE SKIP LOCKED) \
     RETURNING body_chunks, ",
    leased_columns!()
);

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a call waits for a connection before the server counts as unreachable
/// (`MAPI_E_NETWORK_ERROR`).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening the store waits for the server to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL message store. Cheap to clone: clones share the connection pools.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Synchronous commits: what must survive a server crash when the call returns.
    pool: PgPool,
    /// `synchronous_commit = off` (see the module documentation).
    relaxed: PgPool,
    /// The URL without its password, for messages.
    server: String,
    /// The database server's clock, which every node's times follow (see [`clock`]).
    clock: std::sync::Arc<clock::ServerClock>,
}

/// Connection options for `url` with `password` (from the profile's credential; a password in
/// the URL or `PGPASSWORD` is used when none is given). Errors: `MAPI_E_INVALID_PARAMETER` for
/// a URL PostgreSQL's client cannot read.
pub fn connect_options(url: &str, password: Option<&str>) -> MapiResult<PgConnectOptions> {
    let mut options = PgConnectOptions::from_str(url).map_err(|e| {
        MapiError::invalid_parameter(format!(
            "store url {}: not a PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE",
            redact(url)
        ))
    })?;
    if let Some(password) = password {
        options = options.password(password);
    }
    Ok(options.application_name("mapispool"))
}

/// `url` without a password, for messages and the status table.
pub fn redact(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => describe(&o),
        Err(_) => match url.split_once('@') {
            Some((scheme_user, rest)) => match scheme_user.rsplit_once(':') {
                Some((before, _)) if before.contains("//") && !before.ends_with('/') => {
                    format!("{before}:***@{rest}")
                }
                _ => url.to_owned(),
            },
            None => url.to_owned(),
        },
    }
}

fn describe(o: &PgConnectOptions) -> String {
    let host = o.get_host();
    let db = o.get_database().unwrap_or(o.get_username());
    if host.starts_with('/') {
        format!(
            "postgres://{}@:{}/{db}?host={host}",
            o.get_username(),
            o.get_port()
        )
    } else {
        format!(
            "postgres://{}@{host}:{}/{db}",
            o.get_username(),
            o.get_port()
        )
    }
}

impl PgStore {
    /// Opens the store at `url` (with `password`, see [`connect_options`]), brings its schema
    /// up to date and removes what a crash left half-written a day ago or more.
    ///
    /// Errors: `MAPI_E_NETWORK_ERROR` when the server cannot be reached (naming it),
    /// `MAPI_E_LOGON_FAILED` when it refuses the login, `MAPI_E_VERSION` when a newer mapispool
    /// wrote the schema, `MAPI_E_INVALID_PARAMETER` for a bad URL.
    pub async fn open(url: &str, password: Option<&str>) -> MapiResult<PgStore> {
        let store = Self::open_with(url, password, 8).await?;
        let cutoff = FileTime::from(store.now().to_system_time() - STALE_STAGING);
        sqlx::query("DELETE FROM messages WHERE folder = $1 AND staged_at < $2")
            .bind(STAGING_FOLDER)
            .bind(ft(cutoff))
            .execute(&store.pool)
            .await
            .map_err(store.db("removing messages left half-written by a crash"))?;
        Ok(store)
    }

    /// Opens the store for a process that makes one submission and exits (`sendmail`): as
    /// [`PgStore::open`], with fewer connections and no cleanup.
    pub async fn open_for_submit(url: &str, password: Option<&str>) -> MapiResult<PgStore> {
        Self::open_with(url, password, 2).await
    }

    async fn open_with(url: &str, password: Option<&str>, connections: u32) -> MapiResult<PgStore> {
        let options = connect_options(url, password)?;
        let server = describe(&options);
        // One connection of our own first: its error says what is wrong (refused, no such
        // host, bad password), where a pool would only report that it timed out.
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            .map_err(|source| StoreError::Server {
                what: "connecting".into(),
                server: server.clone(),
                source,
            })?;
        if !schema_is_current(&mut conn).await {
            MIGRATOR.run(&mut conn).await.map_err(|source| {
                StoreError::migrate(
                    server.clone(),
                    source,
                    super::shared::known_version(&MIGRATOR),
                    true,
                )
            })?;
        }
        let clock = std::sync::Arc::new(clock::ServerClock::default());
        clock
            .measure(&mut conn)
            .await
            .map_err(|source| StoreError::Server {
                what: "reading the server's clock".into(),
                server: server.clone(),
                source,
            })?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        let relaxed = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.options([("synchronous_commit", "off")]));
        Ok(PgStore {
            pool,
            relaxed,
            server,
            clock,
        })
    }

    /// The store's URL without a password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Closes every connection. Later calls fail.
    pub async fn close(&self) {
        self.relaxed.close().await;
        self.pool.close().await;
    }

    /// The pool whose commits are synchronous, for `store copy` and the cluster's own tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn db(&self, what: &str) -> impl FnOnce(sqlx::Error) -> MapiError + use<> {
        let what = what.to_owned();
        let server = self.server.clone();
        move |source| {
            StoreError::Server {
                what,
                server,
                source,
            }
            .into()
        }
    }

    async fn tx(
        &self,
        pool: &PgPool,
        what: &str,
    ) -> MapiResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        pool.begin().await.map_err(self.db(what))
    }

    /// Step 1 of a streamed write: the hidden row with its properties and recipients, in one
    /// statement.
    async fn stage(&self, props: StagedProps<'_>, recipients: &[NewRecipient]) -> MapiResult<i64> {
        let (rows, names, addresses, types) = recipient_arrays(recipients);
        sqlx::query_scalar(
            "WITH m AS (INSERT INTO messages (folder, staged_at, message_class, subject, \
               sender_name, sender_address, envelope_from, internet_message_id, message_flags, \
               client_submit_time, delivery_time, deferred_delivery_time, delete_after_submit, \
               priority, transport, ndr_reason_code, ndr_diag_code, dsn_notify, dsn_ret) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
               $17, $18, $19) RETURNING id), \
             r AS (INSERT INTO recipients (message_id, row_id, display_name, address, addrtype, \
               recipient_type) SELECT m.id, u.row_id, u.name, u.address, 'SMTP', u.kind \
               FROM m, UNNEST($20::bigint[], $21::text[], $22::text[], $23::bigint[]) \
                 AS u(row_id, name, address, kind)) \
             SELECT id FROM m",
        )
        .bind(STAGING_FOLDER)
        .bind(ft(self.now()))
        .bind(props.message_class)
        .bind(props.subject)
        .bind(props.sender_name)
        .bind(props.sender_address)
        .bind(props.envelope_from)
        .bind(props.internet_message_id)
        .bind(i64::from(props.message_flags))
        .bind(props.client_submit_time.map(ft))
        .bind(props.delivery_time.map(ft))
        .bind(props.deferred_delivery_time.map(ft))
        .bind(props.delete_after_submit)
        .bind(i64::from(props.priority))
        .bind(props.transport)
        .bind(props.ndr_reason_code.map(i64::from))
        .bind(props.ndr_diag_code.map(i64::from))
        .bind(props.dsn_notify)
        .bind(props.dsn_ret)
        .bind(rows)
        .bind(names)
        .bind(addresses)
        .bind(types)
        .fetch_one(&self.relaxed)
        .await
        .map_err(self.db("storing a new message"))
    }

    /// Step 2: the body, one autocommitted chunk at a time. Returns (size, chunk count).
    async fn write_body(
        &self,
        id: i64,
        mut body: impl AsyncRead + Unpin,
    ) -> MapiResult<(u64, u32)> {
        let mut buf = vec![0u8; BODY_CHUNK_SIZE];
        let mut size = 0u64;
        let mut seq = 0u32;
        loop {
            let filled = super::shared::fill_chunk(&mut body, &mut buf, size).await?;
            if filled == 0 {
                break;
            }
            sqlx::query("INSERT INTO body_chunks (message_id, seq, data) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(i64::from(seq))
                .bind(&buf[..filled])
                .execute(&self.relaxed)
                .await
                .map_err(self.db("writing a message body"))?;
            size += filled as u64;
            seq += 1;
            if filled < buf.len() {
                break;
            }
        }
        Ok((size, seq))
    }

    /// Forgets a staged message after a failure. Best effort: a leftover is invisible and is
    /// removed by a later open.
    async fn discard_staged(&self, id: i64) {
        let result = sqlx::query("DELETE FROM messages WHERE id = $1 AND folder = $2")
            .bind(id)
            .bind(STAGING_FOLDER)
            .execute(&self.relaxed)
            .await;
        if let Err(e) = result {
            tracing::warn!(id, error = %e, store = %self.server, "could not discard a half-written message");
        }
    }

    async fn stage_with_body(
        &self,
        props: StagedProps<'_>,
        recipients: &[NewRecipient],
        body: impl AsyncRead + Unpin,
    ) -> MapiResult<(i64, u64, u32)> {
        let id = self.stage(props, recipients).await?;
        match self.write_body(id, body).await {
            Ok((size, chunks)) => Ok((id, size, chunks)),
            Err(e) => {
                self.discard_staged(id).await;
                Err(e)
            }
        }
    }

    async fn add_inbound(
        &self,
        folder: Folder,
        inbound: Option<(&str, &str)>,
        message: InboundMessage,
        body: impl AsyncRead + Unpin,
    ) -> MapiResult<Option<MessageRecord>> {
        validate_recipients(&message.recipients)?;
        let props = StagedProps {
            message_class: &message.message_class,
            subject: &message.subject,
            sender_name: message.sender_name.as_deref(),
            sender_address: message.sender_address.as_deref(),
            envelope_from: message.envelope_from.as_deref(),
            internet_message_id: message.internet_message_id.as_deref(),
            message_flags: message.message_flags,
            client_submit_time: message.client_submit_time,
            delivery_time: Some(message.delivery_time),
            deferred_delivery_time: None,
            delete_after_submit: false,
            priority: message.priority,
            transport: inbound.map(|(t, _)| t),
            ndr_reason_code: message.ndr_reason_code,
            ndr_diag_code: message.ndr_diag_code,
            dsn_notify: None,
            dsn_ret: None,
        };
        let (id, size, chunks) = self
            .stage_with_body(props, &message.recipients, body)
            .await?;
        // A report the spooler writes itself must be durable now; a received message is made
        // durable by the transport's `sync` before it acts on the server.
        let pool = if inbound.is_some() {
            &self.relaxed
        } else {
            &self.pool
        };
        match self
            .finish_inbound(pool, id, folder, inbound, size, chunks)
            .await
        {
            Ok(true) => self.message(MessageId(id)).await.map(Some),
            Ok(false) => {
                self.discard_staged(id).await;
                Ok(None)
            }
            Err(e) => {
                self.discard_staged(id).await;
                Err(e)
            }
        }
    }

    /// Step 3 for a received message; false if its server identity was already stored.
    async fn finish_inbound(
        &self,
        pool: &PgPool,
        id: i64,
        folder: Folder,
        inbound: Option<(&str, &str)>,
        size: u64,
        chunks: u32,
    ) -> MapiResult<bool> {
        let what = "storing a received message";
        let mut tx = self.tx(pool, what).await?;
        if let Some((transport, server_id)) = inbound {
            let inserted = sqlx::query(
                "INSERT INTO inbound_seen (transport, server_id, message_id, received_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(transport)
            .bind(server_id)
            .bind(id)
            .bind(ft(self.now()))
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
        }
        sqlx::query(
            "UPDATE messages SET folder = $1, server_id = $2, message_size = $3, \
             body_chunks = $4 WHERE id = $5",
        )
        .bind(folder as i64)
        .bind(inbound.map(|(_, s)| s))
        .bind(size_i64(size))
        .bind(i64::from(chunks))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(true)
    }

    /// A whole message (its body under one chunk) into the Outbox and the queue in one
    /// statement, so one synchronous commit.
    async fn submit_whole(&self, message: &NewMessage, body: &[u8]) -> MapiResult<MessageRecord> {
        let (rows, names, addresses, types) = recipient_arrays(&message.recipients);
        let now = ft(self.now());
        let row = sqlx::query(concat!(
            "WITH m AS (INSERT INTO messages (folder, staged_at, message_class, subject, \
               sender_name, sender_address, envelope_from, internet_message_id, message_flags, \
               client_submit_time, deferred_delivery_time, delete_after_submit, priority, \
               transport, dsn_notify, dsn_ret, message_size, body_chunks, in_queue) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $2, $10, $11, $12, $13, $14, $15, \
               $16, $17, TRUE) RETURNING *), \
             r AS (INSERT INTO recipients (message_id, row_id, display_name, address, addrtype, \
               recipient_type) SELECT m.id, u.row_id, u.name, u.address, 'SMTP', u.kind \
               FROM m, UNNEST($18::bigint[], $19::text[], $20::text[], $21::bigint[]) \
                 AS u(row_id, name, address, kind)), \
             b AS (INSERT INTO body_chunks (message_id, seq, data) \
               SELECT m.id, 0, $22 FROM m WHERE $17 > 0), \
             n AS (SELECT pg_notify('mapispool_queue', 'submit') AS notified) \
             SELECT ",
            message_columns!(),
            " FROM m CROSS JOIN n"
        ))
        .bind(Folder::Outbox as i64)
        .bind(now)
        .bind(&message.message_class)
        .bind(&message.subject)
        .bind(message.sender_name.as_deref())
        .bind(message.sender_address.as_deref())
        .bind(message.envelope_from.as_deref())
        .bind(message.internet_message_id.as_deref())
        .bind(i64::from(MSGFLAG_SUBMIT | MSGFLAG_UNSENT | MSGFLAG_FROMME))
        .bind(message.deferred_delivery_time.map(ft))
        .bind(message.delete_after_submit)
        .bind(i64::from(message.priority))
        .bind(message.transport.as_deref())
        .bind(message.dsn_notify.as_deref())
        .bind(message.dsn_ret.as_deref())
        .bind(size_i64(body.len() as u64))
        .bind(i64::from(!body.is_empty()))
        .bind(rows)
        .bind(names)
        .bind(addresses)
        .bind(types)
        .bind(body)
        .fetch_one(&self.pool)
        .await
        .map_err(self.db("queueing a submitted message"))?;
        message_from_row(&row).map_err(self.db("queueing a submitted message"))
    }
}

/// Whether the applied migrations are exactly this build's (see the SQLite backend's
/// `schema_is_current`): then the migrator, with its lock and its half-dozen statements, is
/// skipped. Any doubt answers false and the migrator decides.
async fn schema_is_current(conn: &mut PgConnection) -> bool {
    let applied: Vec<(i64, Vec<u8>, bool)> = match sqlx::query_as(
        "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(rows) => rows,
        Err(_) => return false,
    };
    let mut ours = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration());
    applied.iter().all(|(version, checksum, success)| {
        *success
            && ours
                .next()
                .is_some_and(|m| m.version == *version && *m.checksum == **checksum)
    }) && ours.next().is_none()
}

/// Recipients as the four arrays `UNNEST` reads: row ids, names, addresses, types.
fn recipient_arrays(recipients: &[NewRecipient]) -> (Vec<i64>, Vec<String>, Vec<String>, Vec<i64>) {
    let mut out = (
        Vec::with_capacity(recipients.len()),
        Vec::with_capacity(recipients.len()),
        Vec::with_capacity(recipients.len()),
        Vec::with_capacity(recipients.len()),
    );
    for (i, r) in recipients.iter().enumerate() {
        out.0.push(i as i64);
        out.1.push(r.display_name.clone());
        out.2.push(r.address.clone());
        out.3.push(i64::from(r.recipient_type));
    }
    out
}

async fn load_message(
    conn: &mut PgConnection,
    id: i64,
    lock: bool,
) -> Result<Option<(MessageRecord, QueueFields)>, sqlx::Error> {
    let sql = if lock {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND folder <> 0 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE id = $1 AND folder <> 0"
        )
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(conn).await?;
    row.map(|r| Ok((message_from_row(&r)?, queue_fields(&r)?)))
        .transpose()
}

/// The recipients of the messages `ids`, by message.
async fn recipients_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<HashMap<MessageId, Vec<RecipientRecord>>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        recipient_columns!(),
        " FROM recipients WHERE message_id = ANY($1) ORDER BY message_id, row_id"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    group_recipients(&rows)
}

impl PgStore {
    /// A read-only transaction on one snapshot, for reads of several statements that must agree.
    async fn snapshot(&self, what: &str) -> MapiResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(self.db(what))
    }

    /// [`Store::outgoing_queue`], only the messages that pass `filter` (a superset of those a
    /// `--where` restriction matches: see [`QueueFilter`]), found through the queue's indexes
    /// instead of by reading the whole queue.
    pub async fn outgoing_queue_matching(
        &self,
        filter: &QueueFilter,
    ) -> MapiResult<Vec<QueueEntry>> {
        let what = "reading the outgoing queue";
        // One snapshot for messages and recipients.
        let mut tx = self.snapshot(what).await?;
        let rows = read_queued::<sqlx::Postgres>(&mut tx, filter, Dialect::Postgres)
            .await
            .map_err(self.db(what))?;
        let ids = row_ids(&rows).map_err(self.db(what))?;
        let recipients = recipients_of(&mut tx, &ids).await.map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        queue_entries(&rows, recipients, self.now()).map_err(self.db(what))
    }
}

impl Store for PgStore {
    fn display_name(&self) -> String {
        format!("PostgreSQL store {}", self.server)
    }

    fn now(&self) -> FileTime {
        self.clock.now()
    }

    async fn submit(
        &self,
        message: NewMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<MessageRecord> {
        require_recipients(&message.recipients)?;
        let mut body = body;
        let mut first = Vec::new();
        (&mut body)
            .take(BODY_CHUNK_SIZE as u64)
            .read_to_end(&mut first)
            .await
            .map_err(|e| {
                MapiError::call_failed(format!(
                    "reading the message to store (after {} bytes): {e}",
                    first.len()
                ))
            })?;
        if first.len() < BODY_CHUNK_SIZE {
            return self.submit_whole(&message, &first).await;
        }
        let props = StagedProps {
            message_class: &message.message_class,
            subject: &message.subject,
            sender_name: message.sender_name.as_deref(),
            sender_address: message.sender_address.as_deref(),
            envelope_from: message.envelope_from.as_deref(),
            internet_message_id: message.internet_message_id.as_deref(),
            message_flags: MSGFLAG_SUBMIT | MSGFLAG_UNSENT | MSGFLAG_FROMME,
            client_submit_time: None,
            delivery_time: None,
            deferred_delivery_time: message.deferred_delivery_time,
            delete_after_submit: message.delete_after_submit,
            priority: message.priority,
            transport: message.transport.as_deref(),
            ndr_reason_code: None,
            ndr_diag_code: None,
            dsn_notify: message.dsn_notify.as_deref(),
            dsn_ret: message.dsn_ret.as_deref(),
        };
        let (id, size, chunks) = self
            .stage_with_body(props, &message.recipients, (&first[..]).chain(body))
            .await?;
        drop(first);
        // The synchronous commit that publishes the message also makes the staging row and
        // chunks durable: WAL is flushed in order, up to this commit's record.
        // The notification goes out with the commit (NOTIFY is transactional).
        let queued = sqlx::query(concat!(
            "WITH m AS (UPDATE messages SET folder = $1, message_size = $2, body_chunks = $3, \
             client_submit_time = $4, in_queue = TRUE WHERE id = $5 AND folder = 0 RETURNING *), \
             n AS (SELECT pg_notify('mapispool_queue', 'submit') AS notified) SELECT ",
            message_columns!(),
            " FROM m CROSS JOIN n"
        ))
        .bind(Folder::Outbox as i64)
        .bind(size_i64(size))
        .bind(i64::from(chunks))
        .bind(ft(self.now()))
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(self.db("queueing a submitted message"));
        match queued {
            Ok(row) => message_from_row(&row).map_err(self.db("queueing a submitted message")),
            Err(e) => {
                self.discard_staged(id).await;
                Err(e)
            }
        }
    }

    async fn outgoing_queue(&self) -> MapiResult<Vec<QueueEntry>> {
        self.outgoing_queue_matching(&QueueFilter::default()).await
    }

    async fn queue_entry(&self, id: MessageId) -> MapiResult<Option<QueueEntry>> {
        let what = "reading a queued message";
        let now = self.now();
        let mut tx = self.snapshot(what).await?;
        let Some((message, q)) = load_message(&mut tx, id.0, false)
            .await
            .map_err(self.db(what))?
        else {
            return Ok(None);
        };
        if !q.in_queue {
            return Ok(None);
        }
        let recipients = recipients_of(&mut tx, &[id.0])
            .await
            .map_err(self.db(what))?
            .remove(&id)
            .unwrap_or_default();
        tx.commit().await.map_err(self.db(what))?;
        Ok(Some(queue_entry(message, q, recipients, now)))
    }

    async fn queue_counts(&self) -> MapiResult<Vec<QueueCounts>> {
        let what = "counting the outgoing queue";
        let rows = sqlx::query(QUEUE_COUNTS)
            .bind(ft(self.now()))
            .fetch_all(&self.pool)
            .await
            .map_err(self.db(what))?;
        rows.iter()
            .map(|r| {
                Ok(QueueCounts {
                    transport: r.opt_text("transport")?,
                    queued: get_u32(r, "queued")?,
                    sending: get_u32(r, "sending")?,
                    scheduled: get_u32(r, "scheduled")?,
                    deferred: get_u32(r, "deferred")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(self.db(what))
    }

    async fn lease_due(
        &self,
        owner: &str,
        now: FileTime,
        lease_for: Duration,
        limit: u32,
        filter: LeaseFilter,
    ) -> MapiResult<Vec<LeasedMessage>> {
        let what = "leasing due messages";
        let until = super::shared::lease_end(now, lease_for);
        let rows = sqlx::query(LEASE_DUE)
            .bind(owner)
            .bind(ft(until))
            .bind(i64::from(SUBMITFLAG_LOCKED))
            .bind(ft(now))
            .bind(filter.include_backoff)
            .bind(filter.transport.as_deref())
            .bind(filter.only.map(|m| m.0))
            .bind(i64::from(limit))
            .fetch_all(&self.relaxed)
            .await
            .map_err(self.db(what))?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut leased = Vec::with_capacity(rows.len());
        for r in &rows {
            let (message, attempts) = leased_from_row(r).map_err(self.db(what))?;
            leased.push(LeasedMessage {
                recipients: Vec::new(),
                lease: Lease {
                    owner: owner.to_owned(),
                    until,
                },
                attempts,
                body_chunks: get_u32(r, "body_chunks").map_err(self.db(what))?,
                prefetched_body: None,
                message,
            });
        }
        // RETURNING gives no order; the spooler sends in queue order.
        leased.sort_by_key(|m| (m.message.client_submit_time, m.message.id));
        // Small bodies come along, in queue order while the batch's total stays bounded.
        let mut running = 0u64;
        let mut prefetch = Vec::new();
        for m in &leased {
            running = running.saturating_add(m.message.message_size);
            if m.body_chunks == 1
                && m.message.message_size <= PREFETCH_BODY
                && running <= PREFETCH_BATCH
            {
                prefetch.push(m.message.id.0);
            }
        }
        let ids: Vec<i64> = leased.iter().map(|m| m.message.id.0).collect();
        let mut conn = self.pool.acquire().await.map_err(self.db(what))?;
        let mut recipients = recipients_of(&mut conn, &ids)
            .await
            .map_err(self.db(what))?;
        let mut bodies: HashMap<i64, Vec<u8>> = if prefetch.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as(
                "SELECT message_id, data FROM body_chunks WHERE message_id = ANY($1) AND seq = 0",
            )
            .bind(&prefetch)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.db(what))?
            .into_iter()
            .collect()
        };
        for m in &mut leased {
            m.recipients = recipients.remove(&m.message.id).unwrap_or_default();
            m.prefetched_body = bodies.remove(&m.message.id.0);
        }
        Ok(leased)
    }

    async fn release_lease(&self, id: MessageId, owner: &str) -> MapiResult<()> {
        sqlx::query(
            "UPDATE messages SET lease_owner = NULL, lease_until = NULL, \
             submit_flags = submit_flags & ~$1::bigint WHERE id = $2 AND lease_owner = $3",
        )
        .bind(i64::from(SUBMITFLAG_LOCKED))
        .bind(id.0)
        .bind(owner)
        .execute(&self.relaxed)
        .await
        .map_err(self.db("releasing a lease"))?;
        Ok(())
    }

    async fn set_transport(&self, id: MessageId, transport: Option<&str>) -> MapiResult<()> {
        let done = sqlx::query("UPDATE messages SET transport = $1 WHERE id = $2 AND in_queue")
            .bind(transport)
            .bind(id.0)
            .execute(&self.pool)
            .await
            .map_err(self.db("routing a queued message"))?;
        if done.rows_affected() == 0 {
            return Err(not_in_queue(id));
        }
        Ok(())
    }

    async fn record_outcomes(
        &self,
        owner: &str,
        batch: Vec<(MessageId, Vec<RecipientOutcome>)>,
        now: FileTime,
    ) -> MapiResult<Vec<MapiResult<OutcomeReport>>> {
        let what = "recording delivery attempts";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.tx(&self.relaxed, what).await?;
        let ids: Vec<i64> = batch.iter().map(|(id, _)| id.0).collect();
        // FOR UPDATE: no node can take over a lease between this check and the writes.
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE folder <> 0 AND id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db(what))?;
        let mut messages = HashMap::with_capacity(rows.len());
        for r in &rows {
            let message = message_from_row(r).map_err(self.db(what))?;
            let q = queue_fields(r).map_err(self.db(what))?;
            messages.insert(message.id.0, (message, q));
        }
        let mut recipients = recipients_of(&mut tx, &ids).await.map_err(self.db(what))?;
        let mut writes = OutcomeWrites::default();
        let mut answers = Vec::with_capacity(batch.len());
        for (id, outcomes) in batch {
            let found = messages
                .remove(&id.0)
                .map(|(m, q): (MessageRecord, QueueFields)| (m.delete_after_submit, q));
            let before = recipients.remove(&id).unwrap_or_default();
            answers.push(
                plan_outcome(id, owner, found, before, outcomes).map(|plan| {
                    writes.add(id, &plan);
                    plan.report
                }),
            );
        }
        writes.run(&mut tx, now).await.map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(answers)
    }

    async fn abort_submit(&self, id: MessageId) -> MapiResult<()> {
        let what = "aborting a submission";
        let now = self.now();
        let mut tx = self.tx(&self.pool, what).await?;
        let (_, q) = load_message(&mut tx, id.0, true)
            .await
            .map_err(self.db(what))?
            .ok_or_else(|| not_in_queue(id))?;
        if !q.in_queue {
            return Err(not_in_queue(id));
        }
        if let Some(lease) = q.lease.as_ref().filter(|l| l.until > now) {
            return Err(MapiError::unable_to_abort(format!(
                "message {id} is being sent by spooler {:?} (leased until {}); try again when it finishes",
                lease.owner, lease.until
            )));
        }
        sqlx::query(
            "UPDATE messages SET in_queue = FALSE, message_flags = message_flags & ~$1::bigint, \
             submit_flags = 0, lease_owner = NULL, lease_until = NULL, next_attempt_at = NULL \
             WHERE id = $2",
        )
        .bind(i64::from(MSGFLAG_SUBMIT))
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))
    }

    async fn resubmit(&self, id: MessageId) -> MapiResult<()> {
        let what = "resubmitting a message";
        let mut tx = self.tx(&self.pool, what).await?;
        let (m, q) = load_message(&mut tx, id.0, true)
            .await
            .map_err(self.db(what))?
            .ok_or_else(|| not_found(id))?;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recipients WHERE message_id = $1 AND state IN ('pending', 'deferred')",
        )
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db(what))?;
        if let Some(e) = super::shared::resubmit_refusal(id, &m, q.in_queue, open) {
            return Err(e);
        }
        sqlx::query(
            "UPDATE messages SET in_queue = TRUE, message_flags = message_flags | $1::bigint, \
             client_submit_time = $2, next_attempt_at = NULL, last_error = NULL WHERE id = $3",
        )
        .bind(i64::from(MSGFLAG_SUBMIT))
        .bind(ft(self.now()))
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))
    }

    async fn delete_message(&self, id: MessageId) -> MapiResult<()> {
        let what = "moving a message to Deleted Items";
        let mut tx = self.tx(&self.pool, what).await?;
        let (m, q) = load_message(&mut tx, id.0, true)
            .await
            .map_err(self.db(what))?
            .ok_or_else(|| not_found(id))?;
        if let Some(e) = super::shared::delete_refusal(id, &m, q.in_queue) {
            return Err(e);
        }
        sqlx::query("UPDATE messages SET folder = $1 WHERE id = $2")
            .bind(Folder::DeletedItems as i64)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))
    }

    async fn deliver_inbound(
        &self,
        transport: &str,
        server_id: &str,
        message: InboundMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<Option<MessageRecord>> {
        // Checked first to spare the staging write; the unique key in finish_inbound is what
        // guarantees one copy, also between nodes.
        if self.has_inbound(transport, server_id).await? {
            return Ok(None);
        }
        self.add_inbound(Folder::Inbox, Some((transport, server_id)), message, body)
            .await
    }

    async fn sync(&self) -> MapiResult<()> {
        // A synchronous commit flushes the WAL up to its own record, and with it every
        // asynchronous commit before it; it needs a change to write, so it records when it ran.
        sqlx::query(
            "INSERT INTO sync_state (transport, key, value) VALUES ('', 'last_sync', $1) \
             ON CONFLICT (transport, key) DO UPDATE SET value = excluded.value",
        )
        .bind(self.now().0.to_string())
        .execute(&self.pool)
        .await
        .map_err(self.db("making received messages durable"))?;
        Ok(())
    }

    async fn has_inbound(&self, transport: &str, server_id: &str) -> MapiResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM inbound_seen WHERE transport = $1 AND server_id = $2",
        )
        .bind(transport)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db("looking up a received message"))?;
        Ok(found.is_some())
    }

    async fn deliver_inbound_batch(
        &self,
        transport: &str,
        batch: Vec<InboundDelivery>,
    ) -> MapiResult<Vec<bool>> {
        let what = "storing received messages";
        let mut stored = vec![false; batch.len()];
        if batch.is_empty() {
            return Ok(stored);
        }
        for d in &batch {
            validate_recipients(&d.message.recipients)?;
        }
        let mut tx = self.tx(&self.relaxed, what).await?;
        // Two nodes downloading the same mailbox: one waits here for the other's batch, then
        // sees its ids as known.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('mapispool inbound ' || $1, 0))",
        )
        .bind(transport)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        let ids: Vec<String> = batch.iter().map(|d| d.server_id.clone()).collect();
        let known = known_inbound(&mut tx, transport, &ids)
            .await
            .map_err(self.db(what))?;
        let mut taken: HashSet<&str> = HashSet::new();
        let new: Vec<usize> = (0..batch.len())
            .filter(|&i| {
                let id = batch[i].server_id.as_str();
                !known.contains(id) && taken.insert(id)
            })
            .collect();
        if new.is_empty() {
            return Ok(stored);
        }
        let now = ft(self.now());
        // Multi-row inserts, each well under PostgreSQL's 65535 bound parameters.
        const ROWS: usize = 1000;
        let mut id_of: HashMap<String, i64> = HashMap::with_capacity(new.len());
        for rows in new.chunks(ROWS) {
            let mut q = QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO messages (folder, staged_at, message_class, subject, sender_name, \
                 sender_address, envelope_from, internet_message_id, message_flags, \
                 client_submit_time, delivery_time, priority, transport, server_id, \
                 ndr_reason_code, ndr_diag_code, message_size, body_chunks) ",
            );
            q.push_values(rows, |mut b, &i| {
                let d = &batch[i];
                let m = &d.message;
                b.push_bind(Folder::Inbox as i64)
                    .push_bind(now)
                    .push_bind(m.message_class.clone())
                    .push_bind(m.subject.clone())
                    .push_bind(m.sender_name.clone())
                    .push_bind(m.sender_address.clone())
                    .push_bind(m.envelope_from.clone())
                    .push_bind(m.internet_message_id.clone())
                    .push_bind(i64::from(m.message_flags))
                    .push_bind(m.client_submit_time.map(ft))
                    .push_bind(ft(m.delivery_time))
                    .push_bind(i64::from(m.priority))
                    .push_bind(transport.to_string())
                    .push_bind(d.server_id.clone())
                    .push_bind(m.ndr_reason_code.map(i64::from))
                    .push_bind(m.ndr_diag_code.map(i64::from))
                    .push_bind(size_i64(d.body.len() as u64))
                    .push_bind(i64::from(chunk_count(d.body.len() as u64)));
            });
            q.push(" RETURNING id, server_id");
            for row in q.build().fetch_all(&mut *tx).await.map_err(self.db(what))? {
                let id: i64 = row.try_get("id").map_err(self.db(what))?;
                let server_id: String = row.try_get("server_id").map_err(self.db(what))?;
                id_of.insert(server_id, id);
            }
        }
        let mut r_ids = Vec::new();
        let mut r_rows = Vec::new();
        let mut r_names = Vec::new();
        let mut r_addresses = Vec::new();
        let mut r_types = Vec::new();
        let mut seen_ids = Vec::with_capacity(new.len());
        let mut seen_server = Vec::with_capacity(new.len());
        for &i in &new {
            let id = id_of.get(&batch[i].server_id).copied().ok_or_else(|| {
                MapiError::call_failed(format!(
                    "the store did not return the row of received message {}",
                    batch[i].server_id
                ))
            })?;
            seen_ids.push(id);
            seen_server.push(batch[i].server_id.clone());
            for (row, r) in batch[i].message.recipients.iter().enumerate() {
                r_ids.push(id);
                r_rows.push(row as i64);
                r_names.push(r.display_name.clone());
                r_addresses.push(r.address.clone());
                r_types.push(i64::from(r.recipient_type));
            }
        }
        sqlx::query(
            "INSERT INTO recipients (message_id, row_id, display_name, address, addrtype, \
             recipient_type) SELECT u.id, u.row_id, u.name, u.address, 'SMTP', u.kind \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) \
               AS u(id, row_id, name, address, kind)",
        )
        .bind(&r_ids)
        .bind(&r_rows)
        .bind(&r_names)
        .bind(&r_addresses)
        .bind(&r_types)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        sqlx::query(
            "INSERT INTO inbound_seen (transport, server_id, message_id, received_at) \
             SELECT $1, u.server_id, u.id, $2 FROM UNNEST($3::text[], $4::bigint[]) \
               AS u(server_id, id)",
        )
        .bind(transport)
        .bind(now)
        .bind(&seen_server)
        .bind(&seen_ids)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        // The bodies, in BODY_CHUNK_SIZE pieces, a few MiB per statement.
        let mut bodies: Vec<Option<Vec<u8>>> = batch.into_iter().map(|d| Some(d.body)).collect();
        let mut pending: Vec<(i64, i64, Vec<u8>)> = Vec::new();
        let mut pending_bytes = 0usize;
        for (k, &i) in new.iter().enumerate() {
            let body = bodies[i].take().unwrap_or_default();
            let pieces: Vec<Vec<u8>> = if body.len() <= BODY_CHUNK_SIZE {
                if body.is_empty() {
                    Vec::new()
                } else {
                    vec![body]
                }
            } else {
                body.chunks(BODY_CHUNK_SIZE).map(<[u8]>::to_vec).collect()
            };
            for (seq, piece) in pieces.into_iter().enumerate() {
                pending_bytes += piece.len();
                pending.push((seen_ids[k], seq as i64, piece));
                if pending_bytes >= 4 * 1024 * 1024 || pending.len() >= ROWS {
                    insert_chunks(&mut tx, std::mem::take(&mut pending))
                        .await
                        .map_err(self.db(what))?;
                    pending_bytes = 0;
                }
            }
        }
        if !pending.is_empty() {
            insert_chunks(&mut tx, pending)
                .await
                .map_err(self.db(what))?;
        }
        tx.commit().await.map_err(self.db(what))?;
        for i in new {
            stored[i] = true;
        }
        Ok(stored)
    }

    async fn inbound_known(
        &self,
        transport: &str,
        server_ids: &[String],
    ) -> MapiResult<HashSet<String>> {
        if server_ids.is_empty() {
            return Ok(HashSet::new());
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(self.db("looking up received messages"))?;
        known_inbound(&mut conn, transport, server_ids)
            .await
            .map_err(self.db("looking up received messages"))
    }

    async fn add_message(
        &self,
        folder: Folder,
        message: InboundMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<MessageRecord> {
        self.add_inbound(folder, None, message, body)
            .await?
            .ok_or_else(|| MapiError::call_failed("the store did not keep the message"))
    }

    async fn messages(&self, folder: Folder) -> MapiResult<Vec<MessageRecord>> {
        let what = "listing a folder";
        sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE folder = $1 ORDER BY id"
        ))
        .bind(folder as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(self.db(what))?
        .iter()
        .map(|r| message_from_row(r).map_err(self.db(what)))
        .collect()
    }

    async fn message(&self, id: MessageId) -> MapiResult<MessageRecord> {
        let what = "reading a message";
        let mut conn = self.pool.acquire().await.map_err(self.db(what))?;
        load_message(&mut conn, id.0, false)
            .await
            .map_err(self.db(what))?
            .map(|(m, _)| m)
            .ok_or_else(|| not_found(id))
    }

    async fn recipients(&self, id: MessageId) -> MapiResult<Vec<RecipientRecord>> {
        let what = "reading recipients";
        let mut tx = self.snapshot(what).await?;
        if load_message(&mut tx, id.0, false)
            .await
            .map_err(self.db(what))?
            .is_none()
        {
            return Err(not_found(id));
        }
        let recipients = recipients_of(&mut tx, &[id.0])
            .await
            .map_err(self.db(what))?
            .remove(&id)
            .unwrap_or_default();
        tx.commit().await.map_err(self.db(what))?;
        Ok(recipients)
    }

    async fn message_ids_between(
        &self,
        first: MessageId,
        last: MessageId,
        limit: u32,
    ) -> MapiResult<(Vec<MessageId>, u64)> {
        super::shared::message_ids_between(&self.pool, Dialect::Postgres, first, last, limit)
            .await
            .map_err(self.db("finding messages by entry ID"))
    }

    async fn recipients_by_message(
        &self,
        ids: &[MessageId],
    ) -> MapiResult<HashMap<MessageId, Vec<RecipientRecord>>> {
        let what = "reading recipients";
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let mut conn = self.pool.acquire().await.map_err(self.db(what))?;
        recipients_of(&mut conn, &ids).await.map_err(self.db(what))
    }

    async fn body_chunk(&self, id: MessageId, seq: u32) -> MapiResult<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT data FROM body_chunks WHERE message_id = $1 AND seq = $2")
            .bind(id.0)
            .bind(i64::from(seq))
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db("reading a message body"))
    }

    async fn body_chunk_count(&self, id: MessageId) -> MapiResult<u32> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT body_chunks FROM messages WHERE id = $1 AND folder <> 0")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db("reading a message body"))?;
        let count = count.ok_or_else(|| not_found(id))?;
        u32::try_from(count).map_err(|_| {
            MapiError::corrupt_store(format!("message {id} claims {count} body chunks"))
        })
    }

    fn watch_queue(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        me: &str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let pool = self.pool.clone();
        let server = self.server.clone();
        let own_flush = format!("flush:{me}");
        Some(tokio::spawn(async move {
            listen_for_queue(pool, server, wake, own_flush).await
        }))
    }

    async fn signal_flush(&self, me: &str) -> MapiResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(super::QUEUE_CHANNEL)
            .bind(format!("flush:{me}"))
            .execute(&self.relaxed)
            .await
            .map_err(self.db("asking the other nodes to flush"))?;
        Ok(())
    }

    async fn register_node(
        &self,
        node: &NodeInfo,
        now: FileTime,
        lease_for: Duration,
    ) -> MapiResult<Heartbeat> {
        self.register(node, now, lease_for).await
    }

    async fn heartbeat(
        &self,
        node: &NodeInfo,
        status: &str,
        now: FileTime,
        lease_for: Duration,
        held: &[MessageId],
    ) -> MapiResult<Heartbeat> {
        let what = "renewing this node's heartbeat and leases";
        let mut conn = self.relaxed.acquire().await.map_err(self.db(what))?;
        let beat = self
            .beat(&mut conn, node, status, now, lease_for, held)
            .await
            .map_err(self.db(what))?;
        // Clocks drift: the next heartbeat's times follow the server's as it is now.
        if let Err(e) = self.clock.measure(&mut conn).await {
            tracing::warn!(error = %e, "cannot read the database server's clock; keeping the last offset");
        }
        Ok(beat)
    }

    async fn node_stopped(&self, instance: &str, now: FileTime) -> MapiResult<()> {
        sqlx::query("UPDATE nodes SET stopped = $2 WHERE instance = $1")
            .bind(instance)
            .bind(ft(now))
            .execute(&self.pool)
            .await
            .map_err(self.db("recording that this node stopped"))?;
        Ok(())
    }

    async fn nodes(&self) -> MapiResult<Vec<NodeRecord>> {
        let what = "listing the spooler nodes";
        sqlx::query(concat!(
            "SELECT ",
            node_columns!(),
            " FROM nodes ORDER BY name, started, instance"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db(what))?
        .iter()
        .map(|r| node_from_row(r).map_err(self.db(what)))
        .collect()
    }

    async fn claim_sync_state(&self, transport: &str, key: &str, value: &str) -> MapiResult<bool> {
        let done = sqlx::query(
            "INSERT INTO sync_state (transport, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (transport, key) DO NOTHING",
        )
        .bind(transport)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(self.db("claiming a once-only action"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_sync_state(&self, transport: &str, key: &str) -> MapiResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM sync_state WHERE transport = $1 AND key = $2")
            .bind(transport)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db("reading inbound sync state"))
    }

    async fn set_sync_state(&self, transport: &str, key: &str, value: &str) -> MapiResult<()> {
        self.write_sync_state(&self.pool, transport, key, value)
            .await
    }

    async fn set_sync_state_relaxed(
        &self,
        transport: &str,
        key: &str,
        value: &str,
    ) -> MapiResult<()> {
        self.write_sync_state(&self.relaxed, transport, key, value)
            .await
    }
}

/// The node-table half of a heartbeat, shared by both calls that beat.
impl PgStore {
    async fn beat(
        &self,
        conn: &mut PgConnection,
        node: &NodeInfo,
        status: &str,
        now: FileTime,
        lease_for: Duration,
        held: &[MessageId],
    ) -> Result<Heartbeat, sqlx::Error> {
        let until = super::shared::lease_end(now, lease_for);
        // One statement: the row, the extended leases (SKIP LOCKED: a lease being recorded
        // now is ending anyway, and waiting on it could deadlock with that recording), and the
        // expired leases but those just extended (the count reads the snapshot before them).
        let (extended, orphaned): (i64, i64) = sqlx::query_as(
            "WITH n AS (INSERT INTO nodes (instance, name, host, pid, started, heartbeat, \
                 alive_until, status, clock_offset_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10) \
               ON CONFLICT (instance) DO UPDATE SET heartbeat = excluded.heartbeat, \
                 alive_until = excluded.alive_until, status = excluded.status, stopped = NULL, \
                 clock_offset_ms = excluded.clock_offset_ms), \
             e AS (UPDATE messages SET lease_until = $7 WHERE id IN (SELECT id FROM messages \
                 WHERE lease_owner = $1 AND in_queue AND lease_until < $7 \
                   AND id = ANY($9::bigint[]) \
                 FOR UPDATE SKIP LOCKED) RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM e), (SELECT COUNT(*) FROM messages WHERE in_queue \
               AND lease_owner IS NOT NULL AND lease_until <= $6 \
               AND NOT (lease_owner = $1 AND id = ANY($9::bigint[])) \
               AND (next_attempt_at IS NULL OR next_attempt_at <= $6) \
               AND (deferred_delivery_time IS NULL OR deferred_delivery_time <= $6))",
        )
        .bind(&node.instance)
        .bind(&node.name)
        .bind(&node.host)
        .bind(i64::from(node.pid))
        .bind(ft(node.started))
        .bind(ft(now))
        .bind(ft(until))
        .bind(status)
        .bind(held.iter().map(|id| id.0).collect::<Vec<i64>>())
        .bind(self.clock.node_ahead_ms())
        .fetch_one(&mut *conn)
        .await?;
        Ok(Heartbeat {
            extended: u32::try_from(extended).unwrap_or(u32::MAX),
            orphaned: u32::try_from(orphaned).unwrap_or(u32::MAX),
        })
    }

    async fn register(
        &self,
        node: &NodeInfo,
        now: FileTime,
        lease_for: Duration,
    ) -> MapiResult<Heartbeat> {
        let what = "registering this spooler node";
        // Not synchronous: a node row lost to a server crash is written again by the next
        // heartbeat.
        let mut tx = self.tx(&self.relaxed, what).await?;
        let forget = FileTime::from(now.to_system_time() - super::shared::FORGET_NODES_AFTER);
        sqlx::query(
            "DELETE FROM nodes WHERE instance <> $1 AND ((name = $2 AND host = $3 \
               AND stopped IS NOT NULL AND stopped <= $4) \
               OR COALESCE(stopped, alive_until) < $5)",
        )
        .bind(&node.instance)
        .bind(&node.name)
        .bind(&node.host)
        .bind(ft(now))
        .bind(ft(forget))
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        let beat = self
            .beat(&mut tx, node, "starting", now, lease_for, &[])
            .await
            .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(beat)
    }
}

impl PgStore {
    async fn write_sync_state(
        &self,
        pool: &PgPool,
        transport: &str,
        key: &str,
        value: &str,
    ) -> MapiResult<()> {
        sqlx::query(
            "INSERT INTO sync_state (transport, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (transport, key) DO UPDATE SET value = excluded.value",
        )
        .bind(transport)
        .bind(key)
        .bind(value)
        .execute(pool)
        .await
        .map_err(self.db("writing inbound sync state"))?;
        Ok(())
    }
}

/// The writes of a batch of outcomes as at most four statements, whatever the batch's size.
#[derive(Default)]
struct OutcomeWrites {
    r_ids: Vec<i64>,
    r_rows: Vec<i64>,
    r_states: Vec<String>,
    r_resp: Vec<bool>,
    r_attempts: Vec<i64>,
    r_errors: Vec<Option<String>>,
    r_retry: Vec<Option<i64>>,
    r_reason: Vec<Option<i64>>,
    r_diag: Vec<Option<i64>>,
    delete: Vec<i64>,
    sent: Vec<i64>,
    queued_ids: Vec<i64>,
    queued_next: Vec<Option<i64>>,
    queued_error: Vec<Option<String>>,
}

impl OutcomeWrites {
    fn add(&mut self, id: MessageId, plan: &super::shared::OutcomePlan) {
        for r in &plan.recipients {
            self.r_ids.push(id.0);
            self.r_rows.push(i64::from(r.row_id));
            self.r_states.push(r.state.as_str().to_owned());
            self.r_resp.push(r.responsibility);
            self.r_attempts.push(i64::from(r.attempts));
            self.r_errors.push(r.last_error.clone());
            self.r_retry.push(r.retry_at.map(ft));
            self.r_reason.push(r.ndr_reason_code.map(i64::from));
            self.r_diag.push(r.ndr_diag_code.map(i64::from));
        }
        match &plan.fate {
            Fate::Delete => self.delete.push(id.0),
            Fate::MoveToSentItems => self.sent.push(id.0),
            Fate::StillQueued {
                next_attempt_at,
                last_error,
            } => {
                self.queued_ids.push(id.0);
                self.queued_next.push(next_attempt_at.map(ft));
                self.queued_error.push(last_error.clone());
            }
        }
    }

    async fn run(self, conn: &mut PgConnection, now: FileTime) -> Result<(), sqlx::Error> {
        if !self.r_ids.is_empty() {
            sqlx::query(
                "UPDATE recipients AS r SET state = u.state, responsibility = u.resp, \
                   attempts = u.attempts, last_error = u.error, retry_at = u.retry, \
                   ndr_reason_code = u.reason, ndr_diag_code = u.diag \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::boolean[], \
                   $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[]) \
                   AS u(id, row_id, state, resp, attempts, error, retry, reason, diag) \
                 WHERE r.message_id = u.id AND r.row_id = u.row_id",
            )
            .bind(&self.r_ids)
            .bind(&self.r_rows)
            .bind(&self.r_states)
            .bind(&self.r_resp)
            .bind(&self.r_attempts)
            .bind(&self.r_errors)
            .bind(&self.r_retry)
            .bind(&self.r_reason)
            .bind(&self.r_diag)
            .execute(&mut *conn)
            .await?;
        }
        if !self.delete.is_empty() {
            sqlx::query("DELETE FROM messages WHERE id = ANY($1)")
                .bind(&self.delete)
                .execute(&mut *conn)
                .await?;
        }
        if !self.sent.is_empty() {
            sqlx::query(
                "UPDATE messages SET folder = $1, in_queue = FALSE, \
                 message_flags = message_flags & ~$2::bigint, submit_flags = 0, \
                 provider_submit_time = $3, attempts = attempts + 1, next_attempt_at = NULL, \
                 lease_owner = NULL, lease_until = NULL WHERE id = ANY($4)",
            )
            .bind(Folder::SentItems as i64)
            .bind(i64::from(MSGFLAG_SUBMIT | MSGFLAG_UNSENT))
            .bind(ft(now))
            .bind(&self.sent)
            .execute(&mut *conn)
            .await?;
        }
        if !self.queued_ids.is_empty() {
            sqlx::query(
                "UPDATE messages AS m SET attempts = m.attempts + 1, next_attempt_at = u.next, \
                   last_error = COALESCE(u.error, m.last_error), lease_owner = NULL, \
                   lease_until = NULL, submit_flags = m.submit_flags & ~$1::bigint \
                 FROM UNNEST($2::bigint[], $3::bigint[], $4::text[]) AS u(id, next, error) \
                 WHERE m.id = u.id",
            )
            .bind(i64::from(SUBMITFLAG_LOCKED))
            .bind(&self.queued_ids)
            .bind(&self.queued_next)
            .bind(&self.queued_error)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The task behind [`PgStore::watch_queue`]: a dedicated connection that `LISTEN`s on the
/// queue's channel and wakes the spooler on each notification but its own flush signals
/// (`own_flush`). While the server is away it tries again every second, quietly after the
/// first warning (the heartbeat shows the outage in the status table); back, it wakes once for
/// the notifications it may have missed.
async fn listen_for_queue(
    pool: PgPool,
    server: String,
    wake: std::sync::Arc<tokio::sync::Notify>,
    own_flush: String,
) {
    let mut first = true;
    let mut warned = false;
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(super::QUEUE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, store = %server, "cannot listen for queue notifications; retrying every second");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !first {
            tracing::info!(store = %server, "listening for queue notifications again");
            wake.notify_one();
        }
        first = false;
        warned = false;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.payload() == own_flush => {}
                Ok(Some(_)) => wake.notify_one(),
                // The connection was lost; the next call reconnects (and LISTENs again), and
                // what was notified meanwhile is gone: look at the queue.
                Ok(None) => wake.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, store = %server, "lost the queue notifications; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Which of `server_ids` `inbound_seen` has for `transport`, in one statement.
async fn known_inbound(
    conn: &mut PgConnection,
    transport: &str,
    server_ids: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT server_id FROM inbound_seen WHERE transport = $1 AND server_id = ANY($2)",
    )
    .bind(transport)
    .bind(server_ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Inserts body chunks `(message id, seq, bytes)` in one statement.
async fn insert_chunks(
    conn: &mut PgConnection,
    chunks: Vec<(i64, i64, Vec<u8>)>,
) -> Result<(), sqlx::Error> {
    let mut q =
        QueryBuilder::<sqlx::Postgres>::new("INSERT INTO body_chunks (message_id, seq, data) ");
    q.push_values(chunks, |mut b, (id, seq, data)| {
        b.push_bind(id).push_bind(seq).push_bind(data);
    });
    q.build().execute(&mut *conn).await.map(|_| ())
}

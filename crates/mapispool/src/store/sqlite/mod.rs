//! The SQLite backend: one file, WAL, writers start with `BEGIN IMMEDIATE`; `synchronous = FULL`
//! for what must be durable when a call returns, `NORMAL` for what a later FULL commit seals.
//!
//! Bodies are written in two steps so that a slow sender (a pipe, an IMAP download) never holds
//! the write lock: the message row is first inserted in a hidden staging folder (0) and its
//! chunks are appended one autocommitted row at a time; a final short transaction makes it
//! visible (and queues it, or records its inbound identity). A crash in between leaves a staged
//! row that nobody sees and that a later open deletes.
//!
//! Bodies of one chunk or more live in files beside the database ([`bodies`]): written once
//! instead of twice, and published (renamed into place) inside the transaction that makes the
//! message visible.

mod bodies;
#[cfg(test)]
mod tests;
mod vfs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mapi::constants::{MSGFLAG_FROMME, MSGFLAG_SUBMIT, MSGFLAG_UNSENT, SUBMITFLAG_LOCKED};
use mapi::{FileTime, MapiError, MapiResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row as _};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::shared::{
    Dialect, Fate, OutcomePlan, QueueFields, STAGING_FOLDER, STALE_STAGING, StagedProps,
    chunk_count, decode_error, ft, get_u32, group_recipients, leased_columns, leased_from_row,
    message_columns, message_from_row, node_columns, node_from_row, not_found, not_in_queue,
    plan_outcome, queue_entries, queue_fields, queue_state, read_queued, recipient_columns,
    recipient_from_row, row_ids, size_i64, validate_recipients,
};
use super::{
    BODY_CHUNK_SIZE, Folder, Heartbeat, InboundDelivery, InboundMessage, Lease, LeaseFilter,
    LeasedMessage, LeasedOutcome, MessageDisposition, MessageId, MessageRecord, NewMessage,
    NewRecipient, NodeInfo, NodeRecord, OutcomeReport, QueueCounts, QueueEntry, QueueFilter,
    RecipientOutcome, RecipientRecord, Store, StoreError,
};
use bodies::{BodyFiles, FILE_BODY_AT, PendingBody};

/// How long a writer waits for another writer's lock before `MAPI_E_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A WAL this large is folded into the database file by a one-shot submit process as it closes
/// ([`SqliteStore::close_after_submit`]): about every 8 small submits (a 2 KB message writes
/// ~12 pages: the message's and its recipients' rows and their indexes). Smaller means more
/// checkpoints (one more fsync each), larger a longer WAL index rebuild in every process that
/// opens the store. Measured per 2 KB submit (bench notes `submitperf.md`), at 64 KiB, 256 KiB
/// and 1 MiB: 3.5, 2.5 and 2.1 fsyncs with 35, 54 and 145 preads; an fsync here costs 0.5 to
/// 4 ms of wall time, the rebuild's extra ~110 preads of cached pages about 0.3 ms of CPU.
const WAL_TRUNCATE_AT: u64 = 1024 * 1024;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

fn pool_options(connections: u32, checkpoint_on_close: bool) -> SqlitePoolOptions {
    // No liveness ping before each use: it is a round trip to the connection's worker
    // thread, and a connection to a local file does not go stale the way a socket does.
    let options = SqlitePoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false);
    if checkpoint_on_close {
        return options;
    }
    options.after_connect(|conn, _| {
        Box::pin(async move {
            let mut handle = conn.lock_handle().await?;
            let db = handle.as_raw_handle().as_ptr();
            // SAFETY: `db` is this connection's open handle, held exclusively through the lock
            // for the call; the arguments are SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE's (an int, then
            // where to write the new setting, which may be null).
            let rc = unsafe {
                libsqlite3_sys::sqlite3_db_config(
                    db,
                    libsqlite3_sys::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    1 as std::ffi::c_int,
                    std::ptr::null_mut::<std::ffi::c_int>(),
                )
            };
            if rc != libsqlite3_sys::SQLITE_OK {
                return Err(sqlx::Error::Configuration(
                    format!("SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE failed with code {rc}").into(),
                ));
            }
            Ok(())
        })
    })
}

/// Whether the store's applied migrations are exactly this build's (same versions, same
/// checksums, all successful): then the migrator would change nothing, and one query spares its
/// half-dozen. Any doubt (no migrations table yet, an old or a newer schema, a failed or
/// edited migration, a read error) answers false, and the migrator decides: it applies what is
/// missing or reports the error `open` always reported.
async fn schema_is_current(pool: &SqlitePool) -> bool {
    let applied: Vec<(i64, Vec<u8>, bool)> = match sqlx::query_as(
        "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(pool)
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

/// Applies the migrations this store lacks, all in one write transaction: sqlx's migrator
/// commits each migration (and then its `execution_time`) on its own, and with `synchronous =
/// FULL` each commit is an fsync: a new store's schema cost a dozen of them (17 of the 19
/// fsyncs of a first one-message download). Inside this transaction the migrator's own
/// transactions become savepoints, so its bookkeeping (`_sqlx_migrations`: versions,
/// checksums, success) is written exactly as before, in the same commit as the schema it
/// describes: a crash leaves the store wholly before or wholly after, and the next open
/// migrates again. IMMEDIATE takes the write lock first, so two processes opening a new store
/// at once do not both apply the migrations: the second waits (busy timeout), then finds them
/// applied and does nothing.
///
/// The commit is `synchronous = NORMAL`, not fsynced itself (a new WAL's header and directory
/// syncs included): WAL mode keeps such a commit consistent, and the WAL's next fsync (the
/// first FULL commit of anything that matters, a submitted message, or a checkpoint) makes it
/// durable with everything before it. A power cut before that takes the store back to its old
/// schema (or to none), which the next open migrates again; no message can depend on a schema
/// that was not durable, since its own commit is what syncs it.
async fn migrate(pool: &SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    // A migration that must run outside a transaction (`-- no-transaction`: VACUUM, ...) cannot
    // share one: then the migrator runs them as it always did, one commit each.
    if MIGRATOR.iter().any(|m| m.no_tx) {
        return MIGRATOR.run(pool).await;
    }
    let mut conn = pool.acquire().await?;
    sqlx::query("PRAGMA synchronous = NORMAL")
        .execute(&mut *conn)
        .await?;
    let migrated = async {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        MIGRATOR.run(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, sqlx::migrate::MigrateError>(())
    }
    .await;
    // The connection goes back to the pool, whose commits must be FULL: closed, not reused,
    // if that cannot be restored.
    let restored = sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await;
    if restored.is_err() {
        conn.close_on_drop();
    }
    migrated?;
    restored?;
    Ok(())
}

/// The SQLite message store. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// `synchronous = FULL`: every commit is fsynced. For what must survive a power cut the
    /// moment the call returns: a submitted or received message, sync state.
    pool: SqlitePool,
    /// `synchronous = NORMAL` on the same file: commits reach the OS (so a process crash loses
    /// nothing) but are fsynced only with the next FULL commit or checkpoint. For work that a
    /// FULL commit seals later (a message's staging row and body chunks, before the commit that
    /// makes it visible) and for the spooler's state changes (leases, outcomes), where a power
    /// cut can only make a message go out again — the group commit design.md allows — never
    /// lose one.
    relaxed: SqlitePool,
    path: PathBuf,
    /// Where large bodies are kept ([`bodies`]).
    bodies: BodyFiles,
    /// Bodies of at least this many bytes go to a file: [`FILE_BODY_AT`], other values only in
    /// the measurement that chose it (`tests::body_threshold`).
    file_body_at: usize,
    /// Whole-message submits waiting for a shared commit (shared by clones).
    group: Arc<GroupCommit>,
}

/// A body written for a staged message: inline in `body_chunks` already, or in a file still to
/// be published by the transaction that makes the message visible.
struct StagedBody {
    size: u64,
    chunks: u32,
    file: Option<PendingBody>,
}

impl StagedBody {
    fn file_name(&self) -> Option<&str> {
        self.file.as_ref().map(|f| f.name.as_str())
    }
}

impl SqliteStore {
    /// Opens (creating it, and its parent directory, if missing) the store at `path` and brings
    /// its schema up to date. Errors: `MAPI_E_DISK_ERROR` / `MAPI_E_NO_ACCESS` if the file or
    /// directory cannot be created or opened, `MAPI_E_CORRUPT_STORE` if it is not a store,
    /// `MAPI_E_VERSION` if a newer mapispool wrote it.
    pub async fn open(path: impl AsRef<Path>) -> MapiResult<SqliteStore> {
        let store = Self::open_with(path.as_ref(), 4, true).await?;
        let cutoff = FileTime::from(std::time::SystemTime::now() - STALE_STAGING);
        sqlx::query("DELETE FROM messages WHERE folder = ? AND staged_at < ?")
            .bind(STAGING_FOLDER)
            .bind(ft(cutoff))
            .execute(&store.pool)
            .await
            .map_err(store.db("removing messages left half-written by a crash"))?;
        // Best effort: an orphan costs disk space only, never a wrong answer.
        if let Err(e) = store.collect_bodies(None).await {
            tracing::warn!(error = %e, "cannot collect unused body files; trying again at the next open");
        }
        Ok(store)
    }

    /// Opens the store for a process that only reads it and exits (`mapispool status`,
    /// `queue`, `messages`, `show` without a daemon): [`SqliteStore::open`] without its
    /// cleanup. What a crash left half-written (staging rows, unused body files) is invisible
    /// to readers, and removing it is a write, with a directory scan and a commit, that belongs
    /// to the processes that write the store: the daemon's and a flush's full open collect it.
    /// Same errors as [`SqliteStore::open`]; a new or old store is still migrated.
    /// Its connections do not checkpoint the WAL as they close (as [`open_for_submit`]'s):
    /// that would cost a reader two fsyncs (the WAL, then the database file) and a write; the
    /// writers fold the WAL in.
    ///
    /// [`open_for_submit`]: SqliteStore::open_for_submit
    pub async fn open_to_read(path: impl AsRef<Path>) -> MapiResult<SqliteStore> {
        Self::open_with(path.as_ref(), 4, false).await
    }

    /// Opens the store for a process that makes one submission and exits (`mapispool submit`,
    /// `sendmail`): what [`SqliteStore::open`] does, minus what such a process does not need.
    /// One connection is opened (the relaxed pool connects only if a large body needs it); the
    /// migrator runs only when the schema is not exactly this build's (see
    /// [`schema_is_current`]), so an old store is still brought up to date and a newer one
    /// still refused; leftovers of a crash are left for the next full open to remove (they are
    /// invisible until then). Its connections do not checkpoint the WAL when they close: that
    /// would cost a second and a third fsync (the WAL, then the database file) for a commit that
    /// is already durable in the WAL; the WAL stays for the next opener, and the automatic
    /// checkpoint of a later commit (every ~1000 pages) folds it in. Same errors as
    /// [`SqliteStore::open`].
    pub async fn open_for_submit(path: impl AsRef<Path>) -> MapiResult<SqliteStore> {
        Self::open_with(path.as_ref(), 1, false).await
    }

    async fn open_with(
        path: &Path,
        connections: u32,
        checkpoint_on_close: bool,
    ) -> MapiResult<SqliteStore> {
        let path = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // In place, not through the blocking pool: the directory is there but for the first
            // open, so this is one stat, and the pool's thread would be the only one a one-shot
            // submit starts for it (as `create_file` below, already in place).
            crate::private::create_dir_all(parent).map_err(|source| StoreError::Io {
                what: format!("creating the directory {}", parent.display()),
                path: path.clone(),
                source,
            })?;
        }
        // Made 0600 before SQLite creates it (0644 less the umask): its -wal and -shm files
        // take the database file's mode, so all three stay private.
        crate::private::create_file(&path).map_err(|source| StoreError::Io {
            what: "creating the store file".into(),
            path: path.clone(),
            source,
        })?;
        vfs::register().map_err(|why| StoreError::Db {
            what: "opening".into(),
            path: path.clone(),
            source: sqlx::Error::Configuration(why.into()),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            // One fsync per submit process instead of two (see `vfs`).
            .vfs(vfs::NAME)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and a
            // submit that returned must survive that.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = pool_options(connections, checkpoint_on_close)
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Db {
                what: "opening".into(),
                path: path.clone(),
                source,
            })?;
        if !schema_is_current(&pool).await {
            migrate(&pool).await.map_err(|source| {
                StoreError::migrate(
                    path.display().to_string(),
                    source,
                    super::shared::known_version(&MIGRATOR),
                    false,
                )
            })?;
        }
        // Lazy: it connects on first use. Many processes (a submit of a small message, a
        // status query) never write through it.
        //
        // No `PRAGMA mmap_size` (measured for issue 16, bench/notes/uploadperf2.md): it turns the
        // ~29 preads that read an inline 100 KB body into memory reads of the mapping (10.7 a
        // message were left: pages still in the WAL, which SQLite never maps), but the flush's
        // CPU a message did not move beyond the noise. What it would cost: SQLite documents that
        // an I/O error on a mapped page cannot be returned as SQLITE_IOERR, it is a signal
        // (SIGBUS) that kills the process (the daemon and every flush in it) instead of failing
        // one read; a store file truncated by another process under the mapping does the same;
        // and the mapped pages a flush reads count in the daemon's RSS. Not worth it for nothing.
        //
        // One connection, not `connections`: its work is writes, which SQLite runs one at a time
        // anyway, and the pool hands out its idle connections in turn, so with several each
        // transaction (a lease, an outcome batch) began on a connection that another had written
        // since: in WAL mode SQLite then drops that connection's whole page cache and reads
        // every page again (a flush of 2 KB messages: 2 preads a message, and the page-cache
        // allocations, bench/notes/upload3.md). One connection keeps its cache from one
        // transaction to the next. A writer waits for it in the pool as long as it would wait
        // for another writer's lock (BUSY_TIMEOUT).
        let relaxed = pool_options(1, checkpoint_on_close)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
        Ok(SqliteStore {
            pool,
            relaxed,
            bodies: BodyFiles::beside(&path),
            file_body_at: FILE_BODY_AT,
            path,
            group: Arc::default(),
        })
    }

    /// The store with bodies of at least `n` bytes in files (`usize::MAX`: none), for the
    /// measurement that chose [`FILE_BODY_AT`].
    #[cfg(test)]
    fn with_file_body_at(mut self, n: usize) -> SqliteStore {
        self.file_body_at = n;
        self
    }

    /// The pool whose commits are durable, for `store copy`.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, checkpointing the WAL. Later calls fail.
    pub async fn close(&self) {
        self.relaxed.close().await;
        self.pool.close().await;
    }

    /// Closes a store opened with [`SqliteStore::open_for_submit`], leaving the WAL for the
    /// next opener unless it has grown past [`WAL_TRUNCATE_AT`]; then it is checkpointed into
    /// the database file and truncated first. Why: each new process rebuilds the WAL index by
    /// reading the whole WAL, and a process that leaves SQLite's automatic checkpoint to do the
    /// folding never gets to restart the WAL (the next process's rebuild forgets what was
    /// copied), so without this the WAL would grow and every submit would read and copy it all.
    /// Best effort: a failed checkpoint loses nothing (every commit is already durable in the
    /// WAL) and is tried again by the next process.
    pub async fn close_after_submit(&self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        // A stat, not worth a hop to the blocking pool (a thread of its own in a one-shot
        // process that needs none otherwise).
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size > WAL_TRUNCATE_AT
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
        {
            tracing::debug!(error = %e, path = %self.path.display(), "cannot checkpoint the WAL; leaving it for the next process");
        }
        self.close().await;
    }

    pub(crate) fn db(&self, what: &str) -> impl FnOnce(sqlx::Error) -> MapiError + use<> {
        let what = what.to_owned();
        let path = self.path.clone();
        move |source| StoreError::Db { what, path, source }.into()
    }

    async fn conn(&self) -> MapiResult<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
        self.pool
            .acquire()
            .await
            .map_err(self.db("getting a connection"))
    }

    async fn write_tx(&self, what: &str) -> MapiResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Self::immediate(&self.pool, what, self).await
    }

    /// A write transaction whose commit is not fsynced by itself (see [`SqliteStore::relaxed`]).
    async fn relaxed_tx(&self, what: &str) -> MapiResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Self::immediate(&self.relaxed, what, self).await
    }

    async fn immediate(
        pool: &SqlitePool,
        what: &str,
        store: &SqliteStore,
    ) -> MapiResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        // writes fails at once with SQLITE_BUSY instead of waiting out busy_timeout.
        pool.begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store.db(what))
    }

    /// Step 1 of every message write: the hidden row with its properties and recipients.
    async fn stage(&self, props: StagedProps<'_>, recipients: &[NewRecipient]) -> MapiResult<i64> {
        let what = "storing a new message";
        // Hidden until the FULL commit that publishes it, which fsyncs this row with it.
        let mut tx = self.relaxed_tx(what).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (folder, staged_at, message_class, subject, sender_name, \
             sender_address, envelope_from, internet_message_id, message_flags, \
             client_submit_time, delivery_time, deferred_delivery_time, delete_after_submit, \
             priority, transport, ndr_reason_code, ndr_diag_code, dsn_notify, dsn_ret) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(STAGING_FOLDER)
        .bind(ft(FileTime::now()))
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
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db(what))?;
        for (row_id, r) in recipients.iter().enumerate() {
            sqlx::query(
                "INSERT INTO recipients (message_id, row_id, display_name, address, addrtype, \
                 recipient_type) VALUES (?, ?, ?, ?, 'SMTP', ?)",
            )
            .bind(id)
            .bind(row_id as i64)
            .bind(&r.display_name)
            .bind(&r.address)
            .bind(i64::from(r.recipient_type))
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
        }
        tx.commit().await.map_err(self.db(what))?;
        Ok(id)
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
            let mut filled = 0;
            while filled < buf.len() {
                let n = body.read(&mut buf[filled..]).await.map_err(|e| {
                    MapiError::call_failed(format!(
                        "reading the message to store (after {} bytes): {e}",
                        size + filled as u64
                    ))
                })?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            sqlx::query("INSERT INTO body_chunks (message_id, seq, data) VALUES (?, ?, ?)")
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

    /// Forgets a staged message after a failure. Best effort: a leftover is removed at a later open.
    async fn discard_staged(&self, id: i64) {
        let result = sqlx::query("DELETE FROM messages WHERE id = ? AND folder = ?")
            .bind(id)
            .bind(STAGING_FOLDER)
            .execute(&self.relaxed)
            .await;
        if let Err(e) = result {
            tracing::warn!(id, error = %e, path = %self.path.display(), "could not discard a half-written message");
        }
    }

    /// Steps 1 and 2: the staged row, then the body: in the database if it is shorter than
    /// [`FILE_BODY_AT`], else in a file (fsynced, not yet published).
    async fn stage_with_body(
        &self,
        props: StagedProps<'_>,
        recipients: &[NewRecipient],
        mut body: impl AsyncRead + Unpin,
    ) -> MapiResult<(i64, StagedBody)> {
        let first = self.body_head(&mut body, "store").await?;
        if first.len() >= self.file_body_at {
            // The file first: its slow part (the sender, the disk) holds no row and no lock.
            let file = self.bodies.write(&first, body).await?;
            drop(first);
            let id = self.stage(props, recipients).await?;
            let (size, chunks) = (file.size, chunk_count(file.size));
            return Ok((
                id,
                StagedBody {
                    size,
                    chunks,
                    file: Some(file),
                },
            ));
        }
        let id = self.stage(props, recipients).await?;
        // The rest too: empty unless files are off (`file_body_at` past one chunk).
        match self.write_body(id, (&first[..]).chain(body)).await {
            Ok((size, chunks)) => Ok((
                id,
                StagedBody {
                    size,
                    chunks,
                    file: None,
                },
            )),
            Err(e) => {
                self.discard_staged(id).await;
                Err(e)
            }
        }
    }

    /// Publishes the files of a transaction's messages (see [`bodies`]): call it inside the
    /// write transaction that names them, before its commit.
    async fn publish_files<'p>(
        &self,
        files: impl IntoIterator<Item = &'p mut PendingBody>,
    ) -> MapiResult<()> {
        let mut any = false;
        for file in files {
            self.bodies.publish(file).await?;
            any = true;
        }
        if any {
            self.bodies.sync_dir().await?;
        }
        Ok(())
    }

    /// After a transaction that published `files` failed: removes those no row names.
    async fn forget_files<'p>(&self, files: impl IntoIterator<Item = &'p PendingBody>) {
        let names: Vec<String> = files
            .into_iter()
            .filter(|f| f.is_published())
            .map(|f| f.name.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        if let Err(e) = self.collect_bodies(Some(names)).await {
            tracing::warn!(error = %e, "cannot remove body files of a failed write; the next open will");
        }
    }

    /// Removes the body files no message names: `names`, or every file present when `None`
    /// (and stale temporary ones). Under the write lock, so that no write is between
    /// publishing a file and committing its row (see [`bodies`]). Returns how many went.
    pub(crate) async fn collect_bodies(&self, names: Option<Vec<String>>) -> MapiResult<usize> {
        let names = match names {
            Some(names) => names,
            None => self.bodies.scan(STALE_STAGING).await?,
        };
        if names.is_empty() {
            return Ok(0);
        }
        let what = "collecting unused body files";
        let list = serde_json::to_string(&names)
            .map_err(|e| MapiError::call_failed(format!("{what}: {e}")))?;
        let mut tx = self.relaxed_tx(what).await?;
        let orphans: Vec<String> = sqlx::query_scalar(
            "SELECT j.value FROM json_each(?) AS j \
             WHERE NOT EXISTS (SELECT 1 FROM messages WHERE body_file = j.value)",
        )
        .bind(list)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db(what))?;
        for name in &orphans {
            if let Err(e) = self.bodies.remove(name).await {
                tracing::warn!(error = %e, dir = %self.bodies.dir().display(), name, "cannot remove an unused body file");
            }
        }
        tx.commit().await.map_err(self.db(what))?;
        Ok(orphans.len())
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
        let (id, mut staged) = self
            .stage_with_body(props, &message.recipients, body)
            .await?;
        let result = self.finish_inbound(id, folder, inbound, &mut staged).await;
        match result {
            Ok(true) => self.message(MessageId(id)).await.map(Some),
            Ok(false) => {
                self.discard_staged(id).await;
                Ok(None)
            }
            Err(e) => {
                self.discard_staged(id).await;
                self.forget_files(staged.file.as_ref()).await;
                Err(e)
            }
        }
    }

    /// Step 3 for a received message; false if its server identity was already stored.
    async fn finish_inbound(
        &self,
        id: i64,
        folder: Folder,
        inbound: Option<(&str, &str)>,
        staged: &mut StagedBody,
    ) -> MapiResult<bool> {
        let what = "storing a received message";
        // Not fsynced here: the transport calls `sync` before it deletes or flags anything on
        // the server, so a batch of messages costs one fsync, and until then the server still
        // has every message a power cut could take from us.
        let mut tx = self.relaxed_tx(what).await?;
        if let Some((transport, server_id)) = inbound {
            let inserted = sqlx::query(
                "INSERT INTO inbound_seen (transport, server_id, message_id, received_at) \
                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(transport)
            .bind(server_id)
            .bind(id)
            .bind(ft(FileTime::now()))
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
        }
        sqlx::query(
            "UPDATE messages SET folder = ?, server_id = ?, message_size = ?, body_chunks = ?, \
             body_file = ? WHERE id = ?",
        )
        .bind(folder as i64)
        .bind(inbound.map(|(_, s)| s))
        .bind(size_i64(staged.size))
        .bind(i64::from(staged.chunks))
        .bind(staged.file_name())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        self.publish_files(staged.file.as_mut()).await?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(true)
    }

    /// The start of a body to `what` (store, copy): as much as decides where it goes — a whole
    /// body shorter than `file_body_at` stays inline, a longer one goes to a file — and no more
    /// than one chunk.
    async fn body_head(
        &self,
        body: &mut (impl AsyncRead + Unpin),
        what: &str,
    ) -> MapiResult<Vec<u8>> {
        let mut head = Vec::new();
        body.take(self.file_body_at.min(BODY_CHUNK_SIZE) as u64)
            .read_to_end(&mut head)
            .await
            .map_err(|e| {
                MapiError::call_failed(format!(
                    "reading the message to {what} (after {} bytes): {e}",
                    head.len()
                ))
            })?;
        Ok(head)
    }

    /// `store copy` into this store: message `id`, whose rows `inserts` write (the message row
    /// first, in its folder, then its recipients and its `store_copied` record), with its body
    /// read from `body` and kept as this store keeps a submitted one: in `body_chunks` below
    /// [`FILE_BODY_AT`], else in a file of [`bodies`]. The body is read (and a file written and
    /// fsynced) before the write lock is taken; then one FULL transaction makes the message
    /// visible with its record, so a copy cut off at any point leaves the message either whole
    /// or absent (at most an unused file, collected at the next open).
    pub(crate) async fn add_copied(
        &self,
        id: i64,
        inserts: Vec<QueryBuilder<sqlx::Sqlite>>,
        mut body: impl AsyncRead + Unpin,
    ) -> MapiResult<()> {
        let mut inline = self.body_head(&mut body, "copy").await?;
        let mut file = None;
        if inline.len() >= self.file_body_at {
            file = Some(self.bodies.write(&inline, body).await?);
            inline = Vec::new();
        } else {
            // Nothing left unless files are off (`file_body_at` past one chunk).
            body.read_to_end(&mut inline).await.map_err(|e| {
                MapiError::call_failed(format!(
                    "reading the message to copy (after {} bytes): {e}",
                    inline.len()
                ))
            })?;
        }
        let chunks = match &file {
            Some(file) => chunk_count(file.size),
            None => u32::try_from(inline.len().div_ceil(BODY_CHUNK_SIZE)).unwrap_or(u32::MAX),
        };
        let what = "copying a message into the store";
        let written = async {
            let mut tx = self.write_tx(what).await?;
            for mut insert in inserts {
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(self.db(what))?;
            }
            let rows: Vec<(i64, i64, Vec<u8>)> = inline
                .chunks(BODY_CHUNK_SIZE)
                .zip(0..)
                .map(|(data, seq)| (id, seq, data.to_vec()))
                .collect();
            if !rows.is_empty() {
                insert_chunks(&mut tx, rows).await.map_err(self.db(what))?;
            }
            sqlx::query("UPDATE messages SET body_chunks = ?, body_file = ? WHERE id = ?")
                .bind(i64::from(chunks))
                .bind(file.as_ref().map(|f| f.name.as_str()))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.db(what))?;
            // The file under its name (and the directory fsynced) before the commit names it.
            self.publish_files(file.as_mut()).await?;
            tx.commit().await.map_err(self.db(what))
        }
        .await;
        if let Err(e) = written {
            self.forget_files(file.as_ref()).await;
            return Err(e);
        }
        Ok(())
    }
}

/// Submits waiting to be committed together (see [`SqliteStore::submit_whole`]).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    /// Whole messages not yet written, each with where its result goes.
    waiting: std::sync::Mutex<Vec<WholeSubmit>>,
    /// Held by the one caller writing and committing a group.
    committer: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct WholeSubmit {
    message: NewMessage,
    body: Vec<u8>,
    done: tokio::sync::oneshot::Sender<MapiResult<MessageRecord>>,
}

impl SqliteStore {
    /// `submit` of a message whose whole body is in hand (less than one chunk): straight into
    /// the Outbox and the queue, no staging step, since nothing slow happens while the write
    /// lock is held.
    ///
    /// Group commit: the message joins the waiting list, then its caller waits for the
    /// committer lock. Whoever gets the lock takes every message waiting at that moment
    /// (its own, if no earlier committer took it, and those that arrived while the last
    /// group's fsync ran) and writes them in one `BEGIN IMMEDIATE` transaction, each under its
    /// own savepoint so that one bad message fails alone. The commit (synchronous = FULL) is
    /// the fsync of the whole group; every caller of the group is answered only after it has
    /// returned, so no submit is reported queued before the fsync that covers it. A caller
    /// alone costs one commit, as before; N callers at once cost about two.
    async fn submit_whole(&self, message: NewMessage, body: Vec<u8>) -> MapiResult<MessageRecord> {
        let (done, mut result) = tokio::sync::oneshot::channel();
        self.waiting()?.push(WholeSubmit {
            message,
            body,
            done,
        });
        // One turn of the scheduler before competing for the committer: submits started
        // together (a batch's, polled in turn by one task) join this group instead of the
        // first of them committing alone.
        tokio::task::yield_now().await;
        let _committer = self.group.committer.lock().await;
        // An earlier committer may have taken and committed this one already.
        if let Ok(answer) = result.try_recv() {
            return answer;
        }
        let group = std::mem::take(&mut *self.waiting()?);
        // In a task of its own: if this caller goes away (its client hung up), the others of
        // the group are still written and answered.
        let store = self.clone();
        let _ = tokio::spawn(async move { store.commit_group(group).await }).await;
        result.await.unwrap_or_else(|_| {
            Err(MapiError::call_failed(
                "the submission was dropped before it was committed",
            ))
        })
    }

    fn waiting(&self) -> MapiResult<std::sync::MutexGuard<'_, Vec<WholeSubmit>>> {
        self.group
            .waiting
            .lock()
            .map_err(|_| MapiError::call_failed("a submit panicked while queueing"))
    }

    /// Writes `group` in one transaction and answers each of its callers.
    async fn commit_group(&self, group: Vec<WholeSubmit>) {
        let (dones, group): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|w| (w.done, (w.message, w.body)))
            .unzip();
        match self.write_group(group).await {
            Ok(results) => {
                for (done, result) in dones.into_iter().zip(results) {
                    let _ = done.send(result);
                }
            }
            Err(e) => {
                for done in dones {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }

    /// One transaction for `group`, each message under its own savepoint; the outer error is
    /// one that failed them all (nothing of the group is stored then).
    async fn write_group(
        &self,
        group: Vec<(NewMessage, Vec<u8>)>,
    ) -> MapiResult<Vec<MapiResult<MessageRecord>>> {
        let what = "queueing a submitted message";
        let mut tx = self.write_tx(what).await?;
        if let [(message, body)] = &group[..] {
            // Alone in its group (a one-shot `mapispool submit`, a lone daemon client): the
            // transaction is the message, so no savepoint is needed, and its two round trips
            // to the connection's thread are saved. An error drops (rolls back) it all.
            let record = insert_whole(&mut tx, message, body)
                .await
                .map_err(self.db(what))?;
            // This commit is the message's fsync (synchronous = FULL).
            tx.commit().await.map_err(self.db(what))?;
            return Ok(vec![Ok(record)]);
        }
        let mut written = Vec::with_capacity(group.len());
        for (message, body) in &group {
            sqlx::query("SAVEPOINT submit")
                .execute(&mut *tx)
                .await
                .map_err(self.db(what))?;
            let result = match insert_whole(&mut tx, message, body).await {
                Ok(record) => {
                    sqlx::query("RELEASE submit")
                        .execute(&mut *tx)
                        .await
                        .map_err(self.db(what))?;
                    Ok(record)
                }
                Err(e) => {
                    // Undo this message's rows only; if even that fails, the whole group is
                    // rolled back (the transaction is dropped) and every caller told.
                    sqlx::query("ROLLBACK TO submit; RELEASE submit")
                        .execute(&mut *tx)
                        .await
                        .map_err(self.db(what))?;
                    Err((self.db(what))(e))
                }
            };
            written.push(result);
        }
        // The fsync of every message in the group: the commit (synchronous = FULL) syncs the
        // WAL before it returns. Only then is anyone told "queued"; if it fails, nobody is,
        // and the transaction is rolled back.
        tx.commit().await.map_err(self.db(what))?;
        Ok(written)
    }
}

/// The bodies in `body_chunks` at these rowids (`None` where there is none), read with SQLite's
/// incremental blob API on the connection's own handle, inside the caller's transaction.
///
/// Why not the result column: a 100 KB body read as a column is copied three times in user
/// space (SQLite's result value, sqlx's `sqlite3_value_dup` of the row, sqlx's `Vec<u8>`
/// decode), each into a fresh allocation; `sqlite3_blob_read` reads the pages straight into
/// the one `Vec` the lease hands on (SQLite's direct overflow read, for pages not in the WAL).
/// Measured in bench/notes/bodies3.md: CPU a 100 KB message of a flush 8 % lower, page faults
/// 35 → 20 a message, the lease 29 % shorter.
///
/// The reads (at most `PREFETCH_BATCH` bytes, mostly from the OS's page cache) are made on this
/// thread while the connection's worker thread waits for its handle back; on a multi-thread
/// runtime inside `block_in_place`, so that a cold read does not hold up the other tasks of
/// this worker (a current-thread runtime has no other worker to give them to).
///
/// A body that cannot be read this way (its row gone, a read error) is left `None`: the prefetch
/// only saves a round trip, and the sender then reads it with `body_chunk`, which reports the
/// error where it belongs.
async fn read_blobs(
    conn: &mut SqliteConnection,
    rowids: &[Option<i64>],
) -> Result<Vec<Option<Vec<u8>>>, sqlx::Error> {
    if rowids.iter().all(Option::is_none) {
        return Ok(vec![None; rowids.len()]);
    }
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let read = || {
        rowids
            .iter()
            .map(|rowid| {
                rowid.and_then(|rowid| {
                    // SAFETY: `db` is this connection's open handle, held exclusively through the
                    // lock for the whole call (the worker thread waits); `read_blob` opens, reads
                    // and closes its blob handle before returning.
                    let body = unsafe { read_blob(db, rowid) };
                    body.inspect_err(|rc| {
                        tracing::debug!(rowid, rc, "cannot prefetch a body; it is read when sent");
                    })
                    .ok()
                })
            })
            .collect()
    };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    Ok(if multi_thread {
        tokio::task::block_in_place(read)
    } else {
        read()
    })
}

/// `body_chunks.data` of the row `rowid`, or SQLite's error code.
///
/// # Safety
/// `db` must be an open connection handle that no other thread uses during the call.
unsafe fn read_blob(db: *mut libsqlite3_sys::sqlite3, rowid: i64) -> Result<Vec<u8>, i32> {
    use libsqlite3_sys::{
        SQLITE_OK, sqlite3_blob, sqlite3_blob_bytes, sqlite3_blob_close, sqlite3_blob_open,
        sqlite3_blob_read,
    };
    let mut blob: *mut sqlite3_blob = std::ptr::null_mut();
    // SAFETY: `db` is valid (the caller's contract); the names are NUL-terminated literals;
    // flags 0 opens read-only; `blob` receives the handle (or null on error).
    let rc = unsafe {
        sqlite3_blob_open(
            db,
            c"main".as_ptr(),
            c"body_chunks".as_ptr(),
            c"data".as_ptr(),
            rowid,
            0,
            &mut blob,
        )
    };
    if rc != SQLITE_OK {
        if !blob.is_null() {
            // SAFETY: a non-null handle from sqlite3_blob_open, closed once.
            unsafe { sqlite3_blob_close(blob) };
        }
        return Err(rc);
    }
    // SAFETY: `blob` is the open handle from above.
    let len = unsafe { sqlite3_blob_bytes(blob) };
    let mut body = Vec::<u8>::with_capacity(usize::try_from(len).unwrap_or(0));
    // SAFETY: `body` has room for `len` bytes (its capacity); SQLite writes exactly `len`
    // bytes from offset 0 or fails.
    let rc = unsafe { sqlite3_blob_read(blob, body.as_mut_ptr().cast(), len, 0) };
    // SAFETY: the open handle, closed once; nothing uses it after.
    unsafe { sqlite3_blob_close(blob) };
    if rc != SQLITE_OK {
        return Err(rc);
    }
    // SAFETY: sqlite3_blob_read returned OK, so the first `len` bytes are initialised.
    unsafe { body.set_len(body.capacity().min(usize::try_from(len).unwrap_or(0))) };
    Ok(body)
}

/// The rows of one whole message, queued: the message (read back with `RETURNING`), its
/// recipients, its body as one chunk (none if empty).
async fn insert_whole(
    conn: &mut SqliteConnection,
    message: &NewMessage,
    body: &[u8],
) -> Result<MessageRecord, sqlx::Error> {
    let now = ft(FileTime::now());
    let row = sqlx::query(concat!(
        "INSERT INTO messages (folder, staged_at, message_class, subject, sender_name, \
         sender_address, envelope_from, internet_message_id, message_flags, \
         client_submit_time, deferred_delivery_time, delete_after_submit, priority, \
         transport, dsn_notify, dsn_ret, message_size, body_chunks, in_queue) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING ",
        message_columns!()
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
    .bind(now)
    .bind(message.deferred_delivery_time.map(ft))
    .bind(message.delete_after_submit)
    .bind(i64::from(message.priority))
    .bind(message.transport.as_deref())
    .bind(message.dsn_notify.as_deref())
    .bind(message.dsn_ret.as_deref())
    .bind(size_i64(body.len() as u64))
    .bind(i64::from(!body.is_empty()))
    .fetch_one(&mut *conn)
    .await?;
    let record = message_from_row(&row)?;
    for (row_id, r) in message.recipients.iter().enumerate() {
        sqlx::query(
            "INSERT INTO recipients (message_id, row_id, display_name, address, addrtype, \
             recipient_type) VALUES (?, ?, ?, ?, 'SMTP', ?)",
        )
        .bind(record.id.0)
        .bind(row_id as i64)
        .bind(&r.display_name)
        .bind(&r.address)
        .bind(i64::from(r.recipient_type))
        .execute(&mut *conn)
        .await?;
    }
    if !body.is_empty() {
        sqlx::query("INSERT INTO body_chunks (message_id, seq, data) VALUES (?, 0, ?)")
            .bind(record.id.0)
            .bind(body)
            .execute(&mut *conn)
            .await?;
    }
    Ok(record)
}

async fn load_message(
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Option<(MessageRecord, QueueFields)>, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE id = ? AND folder <> 0"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((message_from_row(&r)?, queue_fields(&r)?)))
        .transpose()
}

async fn load_recipients(
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Vec<RecipientRecord>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        recipient_columns!(),
        " FROM recipients WHERE message_id = ? ORDER BY row_id"
    ))
    .bind(id)
    .fetch_all(conn)
    .await?
    .iter()
    .map(recipient_from_row)
    .collect()
}

/// The recipients of the messages in `list` (a JSON array of ids, see [`json_ids`]), by message.
async fn recipients_of(
    conn: &mut SqliteConnection,
    list: &str,
) -> Result<HashMap<MessageId, Vec<RecipientRecord>>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        recipient_columns!(),
        " FROM recipients WHERE message_id IN (SELECT value FROM json_each(?)) \
         ORDER BY message_id, row_id"
    ))
    .bind(list)
    .fetch_all(conn)
    .await?;
    group_recipients(&rows)
}

/// Ids as a JSON array, for `IN (SELECT value FROM json_each(?))`: one statement (prepared
/// once) for any number of ids, where `IN (?, ?, …)` would be a new statement per count.
fn json_ids(ids: &[i64]) -> String {
    let mut list = String::with_capacity(ids.len() * 8 + 2);
    list.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&id.to_string());
    }
    list.push(']');
    list
}

/// The writes of a batch of recorded outcomes: one JSON array per kind of write, run by one
/// constant multi-statement query. The text never changes, so SQLite prepares it once per
/// connection (sqlx's statement cache) and the batch is one round trip to its worker thread;
/// a statement per message was parsed and planned anew for every message.
#[derive(Default)]
struct OutcomeWrites {
    /// `[message id, row id, state, responsibility, attempts, last_error, retry_at,
    /// ndr_reason_code, ndr_diag_code]` per changed recipient.
    recipients: Vec<RecipientWrite>,
    /// Messages moved to Sent Items.
    sent: Vec<i64>,
    /// `[message id, next_attempt_at, last_error]` per message still queued.
    queued: Vec<(i64, Option<i64>, Option<String>)>,
    /// Messages deleted (`PR_DELETE_AFTER_SUBMIT`).
    deleted: Vec<i64>,
}

type RecipientWrite = (
    i64,
    i64,
    &'static str,
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// The statements of [`OutcomeWrites::run`], in the order the per-message writes had: the
/// recipients first, then each message's fate. `->>` reads one element of a row's JSON array
/// as an SQL value (a JSON `null` as NULL).
const OUTCOME_WRITES: &str = "\
    UPDATE recipients SET state = u.value ->> 2, responsibility = u.value ->> 3, \
      attempts = u.value ->> 4, last_error = u.value ->> 5, retry_at = u.value ->> 6, \
      ndr_reason_code = u.value ->> 7, ndr_diag_code = u.value ->> 8 \
      FROM json_each(?) AS u \
      WHERE recipients.message_id = u.value ->> 0 AND recipients.row_id = u.value ->> 1;
    UPDATE messages SET folder = ?, in_queue = 0, message_flags = message_flags & ~?, \
      submit_flags = 0, provider_submit_time = ?, attempts = attempts + 1, \
      next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL \
      WHERE id IN (SELECT value FROM json_each(?));
    UPDATE messages SET attempts = attempts + 1, next_attempt_at = u.value ->> 1, \
      last_error = COALESCE(u.value ->> 2, last_error), lease_owner = NULL, lease_until = NULL, \
      submit_flags = submit_flags & ~? \
      FROM json_each(?) AS u WHERE messages.id = u.value ->> 0;
    DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?));";

impl OutcomeWrites {
    async fn run(self, conn: &mut SqliteConnection, now: FileTime) -> Result<(), sqlx::Error> {
        let json =
            |v: Result<String, serde_json::Error>| v.map_err(|e| sqlx::Error::Encode(Box::new(e)));
        let recipients = json(serde_json::to_string(&self.recipients))?;
        let sent = json_ids(&self.sent);
        let queued = json(serde_json::to_string(&self.queued))?;
        let deleted = json_ids(&self.deleted);
        sqlx::query(OUTCOME_WRITES)
            .bind(recipients)
            .bind(Folder::SentItems as i64)
            .bind(i64::from(MSGFLAG_SUBMIT | MSGFLAG_UNSENT))
            .bind(ft(now))
            .bind(sent)
            .bind(i64::from(SUBMITFLAG_LOCKED))
            .bind(queued)
            .bind(deleted)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// Adds the writes of `plan` for message `id` to `writes`.
fn push_outcome_writes(writes: &mut OutcomeWrites, id: MessageId, plan: &OutcomePlan) {
    for r in &plan.recipients {
        writes.recipients.push((
            id.0,
            i64::from(r.row_id),
            r.state.as_str(),
            i64::from(r.responsibility),
            i64::from(r.attempts),
            r.last_error.clone(),
            r.retry_at.map(ft),
            r.ndr_reason_code.map(i64::from),
            r.ndr_diag_code.map(i64::from),
        ));
    }
    match &plan.fate {
        Fate::Delete => writes.deleted.push(id.0),
        Fate::MoveToSentItems => writes.sent.push(id.0),
        Fate::StillQueued {
            next_attempt_at,
            last_error,
        } => writes
            .queued
            .push((id.0, next_attempt_at.map(ft), last_error.clone())),
    }
}

impl SqliteStore {
    /// [`Store::record_outcomes`] and [`Store::record_leased_outcomes`]: each attempt with the
    /// lease and recipients it was leased with, when the caller has them.
    async fn record_attempts(
        &self,
        owner: &str,
        batch: Vec<AttemptRecord>,
        now: FileTime,
    ) -> MapiResult<Vec<MapiResult<OutcomeReport>>> {
        let what = "recording delivery attempts";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.relaxed_tx(what).await?;
        // Read the batch (two queries), decide in memory, write it all in one multi-statement
        // query, commit: four round trips to SQLite's thread for the batch, whatever its size.
        let ids: Vec<i64> = batch.iter().map(|(id, _, _)| id.0).collect();
        let list = json_ids(&ids);
        // Only what `plan_outcome` reads: every column of a row is copied out of SQLite, and
        // the whole message was most of this transaction's reading.
        let rows = sqlx::query(
            "SELECT id, delete_after_submit, in_queue, attempts, last_error, next_attempt_at, \
             lease_owner, lease_until, body_file \
             FROM messages WHERE folder <> 0 AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(&list)
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db(what))?;
        let mut messages = HashMap::with_capacity(rows.len());
        let mut files: HashMap<i64, String> = HashMap::new();
        for r in &rows {
            let id: i64 = r.try_get("id").map_err(self.db(what))?;
            let delete_after_submit: bool =
                r.try_get("delete_after_submit").map_err(self.db(what))?;
            let q = queue_fields(r).map_err(self.db(what))?;
            if let Some(file) = r.try_get("body_file").map_err(self.db(what))? {
                files.insert(id, file);
            }
            messages.insert(id, (delete_after_submit, q));
        }
        // The recipients as leased, for a message still under that very lease (see
        // `Store::record_leased_outcomes`); the others' are read, as before.
        let unread: Vec<i64> = batch
            .iter()
            .filter(|(id, _, leased)| !still_leased(messages.get(&id.0), leased))
            .map(|(id, _, _)| id.0)
            .collect();
        let mut recipients = if unread.is_empty() {
            HashMap::new()
        } else {
            recipients_of(&mut tx, &json_ids(&unread))
                .await
                .map_err(self.db(what))?
        };
        let mut writes = OutcomeWrites::default();
        let mut answers = Vec::with_capacity(batch.len());
        let mut deleted_files = Vec::new();
        for (id, outcomes, leased) in batch {
            let found = messages.remove(&id.0);
            let before = if still_leased(found.as_ref(), &leased) {
                leased.map(|(_, leased)| leased).unwrap_or_default()
            } else {
                recipients.remove(&id).unwrap_or_default()
            };
            let answer = plan_outcome(id, owner, found, before, outcomes).map(|plan| {
                push_outcome_writes(&mut writes, id, &plan);
                plan.report
            });
            if let Ok(OutcomeReport {
                disposition: MessageDisposition::Deleted,
                ..
            }) = &answer
                && let Some(file) = files.remove(&id.0)
            {
                deleted_files.push(file);
            }
            answers.push(answer);
        }
        writes.run(&mut tx, now).await.map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        // The files of deleted messages, unless another message has the same body. Best
        // effort: the next open collects what is left.
        if !deleted_files.is_empty()
            && let Err(e) = self.collect_bodies(Some(deleted_files)).await
        {
            tracing::warn!(error = %e, "cannot remove the body files of deleted messages; the next open will");
        }
        Ok(answers)
    }
}

/// Whether a message read for recording (`found`) is still under the lease it was leased
/// with, so that the recipients that lease read are still its recipients.
fn still_leased(
    found: Option<&(bool, QueueFields)>,
    leased: &Option<(Lease, Vec<RecipientRecord>)>,
) -> bool {
    match (found, leased) {
        (Some((_, q)), Some((lease, _))) => q.lease.as_ref() == Some(lease),
        _ => false,
    }
}

/// One attempt for [`SqliteStore::record_attempts`]: the message, its outcomes, and the lease
/// and recipients it was leased with (if known).
type AttemptRecord = (
    MessageId,
    Vec<RecipientOutcome>,
    Option<(Lease, Vec<RecipientRecord>)>,
);

impl Store for SqliteStore {
    fn display_name(&self) -> String {
        format!("SQLite store {}", self.path.display())
    }

    async fn submit(
        &self,
        message: NewMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<MessageRecord> {
        if message.recipients.is_empty() {
            return Err(MapiError::no_recipients(
                "the message has no recipients: add at least one To, Cc or Bcc address",
            ));
        }
        validate_recipients(&message.recipients)?;
        // Read up to one chunk before touching the database: most messages end within it, and
        // then they go in whole, group-committed ([`SqliteStore::submit_whole`]). `take` +
        // `read_to_end` grows the buffer with the body instead of zeroing a whole chunk for a
        // message of a few KB.
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
        if first.len() < BODY_CHUNK_SIZE.min(self.file_body_at) {
            return self.submit_whole(message, first).await;
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
        // A larger body streams in as it comes, staged (not holding the write lock while a slow
        // sender trickles), then one FULL commit publishes it.
        let (id, mut staged) = self
            .stage_with_body(props, &message.recipients, (&first[..]).chain(body))
            .await?;
        drop(first);
        let what = "queueing a submitted message";
        let queued = async {
            let mut tx = self.write_tx(what).await?;
            sqlx::query(
                "UPDATE messages SET folder = ?, message_size = ?, body_chunks = ?, \
                 body_file = ?, client_submit_time = ?, in_queue = 1 WHERE id = ?",
            )
            .bind(Folder::Outbox as i64)
            .bind(size_i64(staged.size))
            .bind(i64::from(staged.chunks))
            .bind(staged.file_name())
            .bind(ft(FileTime::now()))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(self.db(what))?;
            // The file under its name (and the directory fsynced) before the commit names it.
            self.publish_files(staged.file.as_mut()).await?;
            // The fsync of this submission: the commit (synchronous = FULL) syncs the WAL, and
            // with it the staging row and body chunks committed before it (relaxed commits
            // reach the WAL in order, the sync covers every frame before its own). After it
            // the message survives a power cut.
            tx.commit().await.map_err(self.db(what))
        }
        .await;
        if let Err(e) = queued {
            self.discard_staged(id).await;
            self.forget_files(staged.file.as_ref()).await;
            return Err(e);
        }
        self.message(MessageId(id)).await
    }

    async fn outgoing_queue(&self) -> MapiResult<Vec<QueueEntry>> {
        self.outgoing_queue_matching(&QueueFilter::default()).await
    }

    async fn queue_entry(&self, id: MessageId) -> MapiResult<Option<QueueEntry>> {
        let what = "reading a queued message";
        let now = FileTime::now();
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(self.db(what))?;
        let Some((message, q)) = load_message(&mut tx, id.0).await.map_err(self.db(what))? else {
            return Ok(None);
        };
        if !q.in_queue {
            return Ok(None);
        }
        let recipients = load_recipients(&mut tx, id.0)
            .await
            .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(Some(QueueEntry {
            state: queue_state(message.deferred_delivery_time, &q, now),
            attempts: q.attempts,
            last_error: q.last_error,
            next_attempt_at: q.next_attempt_at,
            lease: q.lease,
            recipients,
            message,
        }))
    }

    async fn queue_counts(&self) -> MapiResult<Vec<QueueCounts>> {
        let what = "counting the outgoing queue";
        // Counted by SQLite, one row per route: every status refresh and every flush asks, and
        // a long queue must not be read whole for four numbers. Two parts, so that neither
        // reads the messages themselves: the total per route from a covering index, and the
        // messages that are not simply due (leased, deferred, backing off: few) found through
        // their own partial indexes (0005_queue_indexes.sql); due = total - the rest. The states
        // are those of `queue_state`, in the same order of precedence.
        let rows = sqlx::query(
            "SELECT transport, COUNT(*) AS n, -1 AS s FROM messages WHERE in_queue = 1 \
               GROUP BY transport \
             UNION ALL \
             SELECT transport, COUNT(*), CASE \
                 WHEN lease_owner IS NOT NULL AND lease_until > ?1 THEN 1 \
                 WHEN deferred_delivery_time > ?1 THEN 2 \
                 WHEN next_attempt_at > ?1 THEN 3 \
                 ELSE 0 END AS s \
               FROM messages WHERE id IN ( \
                 SELECT id FROM messages WHERE in_queue = 1 AND lease_until > ?1 \
                 UNION SELECT id FROM messages WHERE in_queue = 1 AND deferred_delivery_time > ?1 \
                 UNION SELECT id FROM messages WHERE in_queue = 1 AND next_attempt_at > ?1) \
               GROUP BY transport, s",
        )
        .bind(ft(FileTime::now()))
        .fetch_all(&self.pool)
        .await
        .map_err(self.db(what))?;
        let mut by_route: std::collections::BTreeMap<Option<String>, QueueCounts> =
            std::collections::BTreeMap::new();
        for r in &rows {
            let transport: Option<String> = r.try_get("transport").map_err(self.db(what))?;
            let n = get_u32(r, "n").map_err(self.db(what))?;
            let s: i64 = r.try_get("s").map_err(self.db(what))?;
            let c = by_route
                .entry(transport.clone())
                .or_insert_with(|| QueueCounts {
                    transport,
                    ..QueueCounts::default()
                });
            match s {
                // The total; the due ones are what is left of it.
                -1 => c.queued = c.queued.saturating_add(n),
                1 => c.sending = n,
                2 => c.scheduled = n,
                3 => c.deferred = n,
                _ => {}
            }
        }
        // Rows come in no promised order: the totals are all known before this subtraction.
        Ok(by_route
            .into_values()
            .map(|mut c| {
                c.queued = c
                    .queued
                    .saturating_sub(c.sending + c.scheduled + c.deferred);
                c
            })
            .collect())
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
        let started = std::time::Instant::now();
        let until = FileTime(
            now.0
                .saturating_add(u64::try_from(lease_for.as_nanos() / 100).unwrap_or(u64::MAX)),
        );
        let mut tx = self.relaxed_tx(what).await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE messages SET lease_owner = ?, lease_until = ?, submit_flags = submit_flags | ? \
             WHERE id IN (SELECT id FROM messages WHERE in_queue = 1 \
               AND (deferred_delivery_time IS NULL OR deferred_delivery_time <= ?) \
               AND (? OR next_attempt_at IS NULL OR next_attempt_at <= ?) \
               AND (lease_until IS NULL OR lease_until <= ?) \
               AND (? IS NULL OR transport = ?) \
               AND (? IS NULL OR id = ?) \
               ORDER BY client_submit_time, id LIMIT ?) \
             RETURNING id",
        )
        .bind(owner)
        .bind(ft(until))
        .bind(i64::from(SUBMITFLAG_LOCKED))
        .bind(ft(now))
        .bind(filter.include_backoff)
        .bind(ft(now))
        .bind(ft(now))
        .bind(filter.transport.as_deref())
        .bind(filter.transport.as_deref())
        .bind(filter.only.map(|m| m.0))
        .bind(filter.only.map(|m| m.0))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db(what))?;
        // The whole batch in three reads (messages with the bodies small enough to come along,
        // recipients), not two per message: each query is a hop to SQLite's worker thread.
        let list = json_ids(&ids);
        let rows = sqlx::query(concat!(
            "SELECT ",
            leased_columns!(),
            ", messages.body_chunks AS chunk_count, body_chunks.rowid AS prefetched \
             FROM messages \
             JOIN (SELECT id AS batch_id, \
                     SUM(message_size) OVER (ORDER BY client_submit_time, id) AS running \
                   FROM messages WHERE id IN (SELECT value FROM json_each(?1))) AS batch \
               ON batch.batch_id = messages.id \
             LEFT JOIN body_chunks ON body_chunks.message_id = messages.id \
               AND body_chunks.seq = 0 AND messages.body_chunks = 1 \
               AND messages.message_size <= ?2 AND batch.running <= ?3"
        ))
        .bind(&list)
        .bind(size_i64(super::PREFETCH_BODY))
        .bind(size_i64(super::PREFETCH_BATCH))
        .fetch_all(&mut *tx)
        .await
        .map_err(self.db(what))?;
        let mut recipients = recipients_of(&mut tx, &list).await.map_err(self.db(what))?;
        let prefetch: Vec<Option<i64>> = rows
            .iter()
            .map(|r| r.try_get("prefetched"))
            .collect::<Result<_, _>>()
            .map_err(self.db(what))?;
        let mut bodies = read_blobs(&mut tx, &prefetch)
            .await
            .map_err(self.db(what))?
            .into_iter();
        let mut leased = Vec::with_capacity(rows.len());
        for r in &rows {
            let (message, attempts) = leased_from_row(r).map_err(self.db(what))?;
            leased.push(LeasedMessage {
                recipients: recipients.remove(&message.id).unwrap_or_default(),
                lease: Lease {
                    owner: owner.to_owned(),
                    until,
                },
                attempts,
                body_chunks: get_u32(r, "chunk_count").map_err(self.db(what))?,
                prefetched_body: bodies.next().flatten(),
                message,
            });
        }
        tx.commit().await.map_err(self.db(what))?;
        // RETURNING gives no order; the spooler sends in queue order.
        leased.sort_by_key(|m| (m.message.client_submit_time, m.message.id));
        // bench/run's scale scenario reads this (how a lease's cost grows with the queue).
        tracing::debug!(
            leased = leased.len(),
            took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "lease_due"
        );
        Ok(leased)
    }

    async fn release_lease(&self, id: MessageId, owner: &str) -> MapiResult<()> {
        sqlx::query(
            "UPDATE messages SET lease_owner = NULL, lease_until = NULL, \
             submit_flags = submit_flags & ~? WHERE id = ? AND lease_owner = ?",
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
        let done = sqlx::query("UPDATE messages SET transport = ? WHERE id = ? AND in_queue = 1")
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
        self.record_attempts(
            owner,
            batch
                .into_iter()
                .map(|(id, outcomes)| (id, outcomes, None))
                .collect(),
            now,
        )
        .await
    }

    async fn record_leased_outcomes(
        &self,
        owner: &str,
        batch: Vec<LeasedOutcome>,
        now: FileTime,
    ) -> MapiResult<Vec<MapiResult<OutcomeReport>>> {
        self.record_attempts(
            owner,
            batch
                .into_iter()
                .map(|a| (a.id, a.outcomes, Some((a.lease, a.recipients))))
                .collect(),
            now,
        )
        .await
    }

    async fn abort_submit(&self, id: MessageId) -> MapiResult<()> {
        let what = "aborting a submission";
        let now = FileTime::now();
        let mut tx = self.write_tx(what).await?;
        let (_, q) = load_message(&mut tx, id.0)
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
            "UPDATE messages SET in_queue = 0, message_flags = message_flags & ~?, \
             submit_flags = 0, lease_owner = NULL, lease_until = NULL, next_attempt_at = NULL \
             WHERE id = ?",
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
        let mut tx = self.write_tx(what).await?;
        let (m, q) = load_message(&mut tx, id.0)
            .await
            .map_err(self.db(what))?
            .ok_or_else(|| not_found(id))?;
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recipients WHERE message_id = ? AND state IN ('pending', 'deferred')",
        )
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.db(what))?;
        if let Some(e) = super::shared::resubmit_refusal(id, &m, q.in_queue, open) {
            return Err(e);
        }
        sqlx::query(
            "UPDATE messages SET in_queue = 1, message_flags = message_flags | ?, \
             client_submit_time = ?, next_attempt_at = NULL, last_error = NULL WHERE id = ?",
        )
        .bind(i64::from(MSGFLAG_SUBMIT))
        .bind(ft(FileTime::now()))
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))
    }

    async fn delete_message(&self, id: MessageId) -> MapiResult<()> {
        let what = "moving a message to Deleted Items";
        let mut tx = self.write_tx(what).await?;
        let (m, q) = load_message(&mut tx, id.0)
            .await
            .map_err(self.db(what))?
            .ok_or_else(|| not_found(id))?;
        if let Some(e) = super::shared::delete_refusal(id, &m, q.in_queue) {
            return Err(e);
        }
        sqlx::query("UPDATE messages SET folder = ? WHERE id = ?")
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
        // actually guarantees one copy.
        if self.has_inbound(transport, server_id).await? {
            return Ok(None);
        }
        self.add_inbound(Folder::Inbox, Some((transport, server_id)), message, body)
            .await
    }

    async fn has_inbound(&self, transport: &str, server_id: &str) -> MapiResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM inbound_seen WHERE transport = ? AND server_id = ?")
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
        // Large bodies to their files first, written and fsynced before the write lock is taken;
        // published under it, below.
        let mut batch = batch;
        let sizes: Vec<u64> = batch.iter().map(|d| d.body.len() as u64).collect();
        let mut files: Vec<Option<PendingBody>> = Vec::with_capacity(batch.len());
        for d in &mut batch {
            if d.body.len() >= FILE_BODY_AT {
                files.push(Some(self.bodies.write(&d.body, tokio::io::empty()).await?));
                d.body = Vec::new();
            } else {
                files.push(None);
            }
        }
        // No staging here (unlike `add_inbound`): the bodies are already in memory, so the write
        // lock is held only for these few statements, never while a sender is slow. Not fsynced
        // either: the transport calls `sync` before it acts on the server.
        let mut tx = self.relaxed_tx(what).await?;
        // Checked under the write lock: nobody can record these ids between here and the insert.
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
        let now = ft(FileTime::now());
        // Multi-row inserts, each under SQLite's bound-parameter limit (32766).
        const ROWS: usize = 500;
        let mut id_of: HashMap<String, i64> = HashMap::with_capacity(new.len());
        for rows in new.chunks(ROWS) {
            let mut q = QueryBuilder::new(
                "INSERT INTO messages (folder, staged_at, message_class, subject, sender_name, \
                 sender_address, envelope_from, internet_message_id, message_flags, \
                 client_submit_time, delivery_time, priority, transport, server_id, \
                 ndr_reason_code, ndr_diag_code, message_size, body_chunks, body_file) ",
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
                    .push_bind(size_i64(sizes[i]))
                    .push_bind(i64::from(chunk_count(sizes[i])))
                    .push_bind(files[i].as_ref().map(|f| f.name.clone()));
            });
            // RETURNING gives no order: match the ids back by server id (unique in `new`).
            q.push(" RETURNING id, server_id");
            for row in q.build().fetch_all(&mut *tx).await.map_err(self.db(what))? {
                let id: i64 = row.try_get("id").map_err(self.db(what))?;
                let server_id: String = row.try_get("server_id").map_err(self.db(what))?;
                id_of.insert(server_id, id);
            }
        }
        let id = |i: usize| {
            id_of.get(&batch[i].server_id).copied().ok_or_else(|| {
                MapiError::call_failed(format!(
                    "the store did not return the row of received message {}",
                    batch[i].server_id
                ))
            })
        };
        let mut recipients: Vec<(i64, usize, &NewRecipient)> = Vec::new();
        let mut seen: Vec<(i64, &str)> = Vec::with_capacity(new.len());
        for &i in &new {
            let id = id(i)?;
            seen.push((id, &batch[i].server_id));
            recipients.extend(
                batch[i]
                    .message
                    .recipients
                    .iter()
                    .enumerate()
                    .map(|(row, r)| (id, row, r)),
            );
        }
        for rows in recipients.chunks(ROWS) {
            let mut q = QueryBuilder::new(
                "INSERT INTO recipients (message_id, row_id, display_name, address, addrtype, \
                 recipient_type) ",
            );
            q.push_values(rows, |mut b, (id, row, r)| {
                b.push_bind(*id)
                    .push_bind(*row as i64)
                    .push_bind(r.display_name.clone())
                    .push_bind(r.address.clone())
                    .push_bind("SMTP")
                    .push_bind(i64::from(r.recipient_type));
            });
            q.build().execute(&mut *tx).await.map_err(self.db(what))?;
        }
        for rows in seen.chunks(ROWS) {
            let mut q = QueryBuilder::new(
                "INSERT INTO inbound_seen (transport, server_id, message_id, received_at) ",
            );
            q.push_values(rows, |mut b, (id, server_id)| {
                b.push_bind(transport.to_string())
                    .push_bind(server_id.to_string())
                    .push_bind(*id)
                    .push_bind(now);
            });
            q.build().execute(&mut *tx).await.map_err(self.db(what))?;
        }
        // The bodies last, moved rather than copied when one chunk holds them (the usual case),
        // in BODY_CHUNK_SIZE pieces, a few MiB of them per statement.
        let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
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
                pending.push((ids[k], seq as i64, piece));
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
        let mut is_new = vec![false; files.len()];
        for &i in &new {
            is_new[i] = true;
        }
        let mut to_publish: Vec<&mut PendingBody> = Vec::new();
        for (file, new) in files.iter_mut().zip(is_new) {
            if let Some(file) = file.as_mut().filter(|_| new) {
                to_publish.push(file);
            }
        }
        let published = self.publish_files(to_publish).await;
        let committed = match published {
            Ok(()) => tx.commit().await.map_err(self.db(what)),
            Err(e) => {
                drop(tx);
                Err(e)
            }
        };
        if let Err(e) = committed {
            self.forget_files(files.iter().flatten()).await;
            return Err(e);
        }
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
        let mut conn = self.conn().await?;
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
            " FROM messages WHERE folder = ? ORDER BY id"
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
        let mut conn = self.conn().await?;
        load_message(&mut conn, id.0)
            .await
            .map_err(self.db("reading a message"))?
            .map(|(m, _)| m)
            .ok_or_else(|| not_found(id))
    }

    async fn recipients(&self, id: MessageId) -> MapiResult<Vec<RecipientRecord>> {
        let what = "reading recipients";
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await.map_err(self.db(what))?;
        if load_message(&mut tx, id.0)
            .await
            .map_err(self.db(what))?
            .is_none()
        {
            return Err(not_found(id));
        }
        let recipients = load_recipients(&mut tx, id.0)
            .await
            .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(recipients)
    }

    async fn message_ids_between(
        &self,
        first: MessageId,
        last: MessageId,
        limit: u32,
    ) -> MapiResult<(Vec<MessageId>, u64)> {
        super::shared::message_ids_between(&self.pool, Dialect::Sqlite, first, last, limit)
            .await
            .map_err(self.db("finding messages by entry ID"))
    }

    async fn recipients_by_message(
        &self,
        ids: &[MessageId],
    ) -> MapiResult<HashMap<MessageId, Vec<RecipientRecord>>> {
        let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        let mut conn = self.conn().await?;
        recipients_of(&mut conn, &json_ids(&ids))
            .await
            .map_err(self.db("reading recipients"))
    }

    async fn body_chunk(&self, id: MessageId, seq: u32) -> MapiResult<Option<Vec<u8>>> {
        let what = "reading a message body";
        // One query for both homes of a body: the file's name, or the chunk's bytes.
        let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT messages.body_file, body_chunks.data FROM messages \
             LEFT JOIN body_chunks ON body_chunks.message_id = messages.id \
               AND body_chunks.seq = ?2 \
             WHERE messages.id = ?1",
        )
        .bind(id.0)
        .bind(i64::from(seq))
        .fetch_optional(&self.pool)
        .await
        .map_err(self.db(what))?;
        match row {
            None | Some((None, None)) => Ok(None),
            Some((None, Some(data))) => Ok(Some(data)),
            Some((Some(name), _)) => match self.bodies.read_chunk(&name, seq).await {
                Ok(chunk) => Ok(chunk),
                // Deleted (and collected) since the query: the message is gone, as a deleted
                // message's chunk is.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let still: Option<i64> =
                        sqlx::query_scalar("SELECT 1 FROM messages WHERE id = ? AND body_file = ?")
                            .bind(id.0)
                            .bind(&name)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(self.db(what))?;
                    if still.is_some() {
                        Err(MapiError::corrupt_store(format!(
                            "message {id}'s body file {} is missing",
                            self.bodies.dir().join(&name).display()
                        )))
                    } else {
                        Ok(None)
                    }
                }
                Err(source) => Err(StoreError::Io {
                    what: format!("reading the body file {name} of message {id}"),
                    path: self.bodies.dir().to_path_buf(),
                    source,
                }
                .into()),
            },
        }
    }

    async fn body_chunk_count(&self, id: MessageId) -> MapiResult<u32> {
        let what = "reading a message body";
        let count: Option<i64> =
            sqlx::query_scalar("SELECT body_chunks FROM messages WHERE id = ? AND folder <> 0")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.db(what))?;
        let count = count.ok_or_else(|| not_found(id))?;
        u32::try_from(count).map_err(|_| {
            MapiError::corrupt_store(format!("message {id} claims {count} body chunks"))
        })
    }

    async fn register_node(
        &self,
        node: &NodeInfo,
        now: FileTime,
        lease_for: Duration,
    ) -> MapiResult<Heartbeat> {
        let what = "registering this spooler node";
        // Not fsynced by itself: a node row lost to a power cut is written again by the next
        // heartbeat, and every local logon registers (no fsync on a `mapispool status`).
        let mut tx = self.relaxed_tx(what).await?;
        let forget = FileTime::from(now.to_system_time() - super::shared::FORGET_NODES_AFTER);
        sqlx::query(
            "DELETE FROM nodes WHERE instance <> ?1 AND ((name = ?2 AND host = ?3 \
               AND stopped IS NOT NULL AND stopped <= ?4) \
               OR COALESCE(stopped, alive_until) < ?5)",
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

    async fn heartbeat(
        &self,
        node: &NodeInfo,
        status: &str,
        now: FileTime,
        lease_for: Duration,
        held: &[MessageId],
    ) -> MapiResult<Heartbeat> {
        let what = "renewing this node's heartbeat and leases";
        let mut tx = self.relaxed_tx(what).await?;
        let beat = self
            .beat(&mut tx, node, status, now, lease_for, held)
            .await
            .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        Ok(beat)
    }

    async fn node_stopped(&self, instance: &str, now: FileTime) -> MapiResult<()> {
        sqlx::query("UPDATE nodes SET stopped = ?2 WHERE instance = ?1")
            .bind(instance)
            .bind(ft(now))
            .execute(&self.relaxed)
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
            "INSERT INTO sync_state (transport, key, value) VALUES (?, ?, ?) \
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
        sqlx::query_scalar("SELECT value FROM sync_state WHERE transport = ? AND key = ?")
            .bind(transport)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.db("reading inbound sync state"))
    }

    async fn sync(&self) -> MapiResult<()> {
        // A FULL commit fsyncs the write-ahead log, and with it every commit made before it on
        // any connection; it needs a change to write, so it records when it ran.
        sqlx::query(
            "INSERT INTO sync_state (transport, key, value) VALUES ('', 'last_sync', ?) \
             ON CONFLICT (transport, key) DO UPDATE SET value = excluded.value",
        )
        .bind(FileTime::now().0.to_string())
        .execute(&self.pool)
        .await
        .map_err(self.db("making received messages durable"))?;
        Ok(())
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

    async fn set_sync_state(&self, transport: &str, key: &str, value: &str) -> MapiResult<()> {
        self.write_sync_state(&self.pool, transport, key, value)
            .await
    }
}

/// Spooler nodes on SQLite: the processes of this machine (see `store/node.rs`).
impl SqliteStore {
    async fn beat(
        &self,
        conn: &mut SqliteConnection,
        node: &NodeInfo,
        status: &str,
        now: FileTime,
        lease_for: Duration,
        held: &[MessageId],
    ) -> Result<Heartbeat, sqlx::Error> {
        let until = ft(super::shared::lease_end(now, lease_for));
        sqlx::query(
            "INSERT INTO nodes (instance, name, host, pid, started, heartbeat, alive_until, \
               status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (instance) DO UPDATE SET heartbeat = excluded.heartbeat, \
               alive_until = excluded.alive_until, status = excluded.status, stopped = NULL",
        )
        .bind(&node.instance)
        .bind(&node.name)
        .bind(&node.host)
        .bind(i64::from(node.pid))
        .bind(ft(node.started))
        .bind(ft(now))
        .bind(until)
        .bind(status)
        .execute(&mut *conn)
        .await?;
        let held = serde_json::to_string(&held.iter().map(|id| id.0).collect::<Vec<i64>>())
            .map_err(|e| decode_error(format!("the held leases as JSON: {e}")))?;
        // Counted before the extension, as on PostgreSQL: expired, and not one being extended.
        let orphaned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE in_queue = 1 AND lease_owner IS NOT NULL \
             AND lease_until <= ?2 \
             AND NOT (lease_owner = ?1 AND id IN (SELECT value FROM json_each(?3))) \
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?2) \
             AND (deferred_delivery_time IS NULL OR deferred_delivery_time <= ?2)",
        )
        .bind(&node.instance)
        .bind(ft(now))
        .bind(&held)
        .fetch_one(&mut *conn)
        .await?;
        let extended = sqlx::query(
            "UPDATE messages SET lease_until = ?2 WHERE lease_owner = ?1 AND in_queue = 1 \
             AND lease_until < ?2 AND id IN (SELECT value FROM json_each(?3))",
        )
        .bind(&node.instance)
        .bind(until)
        .bind(&held)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(Heartbeat {
            extended: u32::try_from(extended).unwrap_or(u32::MAX),
            orphaned: u32::try_from(orphaned).unwrap_or(u32::MAX),
        })
    }
}

impl SqliteStore {
    /// [`Store::outgoing_queue`], only the messages that pass `filter` (a superset of those a
    /// `--where` restriction matches: see [`QueueFilter`]), found through the queue's indexes
    /// instead of by reading the whole queue.
    pub async fn outgoing_queue_matching(
        &self,
        filter: &QueueFilter,
    ) -> MapiResult<Vec<QueueEntry>> {
        let what = "reading the outgoing queue";
        let mut conn = self.conn().await?;
        // One read transaction, so messages and recipients come from the same snapshot.
        let mut tx = conn.begin().await.map_err(self.db(what))?;
        let rows = read_queued::<sqlx::Sqlite>(&mut tx, filter, Dialect::Sqlite)
            .await
            .map_err(self.db(what))?;
        let ids = row_ids(&rows).map_err(self.db(what))?;
        let recipients = recipients_of(&mut tx, &json_ids(&ids))
            .await
            .map_err(self.db(what))?;
        tx.commit().await.map_err(self.db(what))?;
        queue_entries(&rows, recipients, FileTime::now()).map_err(self.db(what))
    }

    /// The upsert behind both `set_sync_state`s; `pool` decides whether its commit is fsynced.
    async fn write_sync_state(
        &self,
        pool: &SqlitePool,
        transport: &str,
        key: &str,
        value: &str,
    ) -> MapiResult<()> {
        sqlx::query(
            "INSERT INTO sync_state (transport, key, value) VALUES (?, ?, ?) \
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

/// Which of `server_ids` `inbound_seen` has for `transport`: one statement, the list passed as a
/// JSON array (SQLite's `json_each`), each looked up by the primary key.
async fn known_inbound(
    conn: &mut SqliteConnection,
    transport: &str,
    server_ids: &[String],
) -> Result<HashSet<String>, sqlx::Error> {
    let list = serde_json::to_string(server_ids).map_err(|e| decode_error(e.to_string()))?;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT server_id FROM inbound_seen WHERE transport = ? \
         AND server_id IN (SELECT value FROM json_each(?))",
    )
    .bind(transport)
    .bind(list)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Inserts body chunks `(message id, seq, bytes)` in one statement.
async fn insert_chunks(
    conn: &mut SqliteConnection,
    chunks: Vec<(i64, i64, Vec<u8>)>,
) -> Result<(), sqlx::Error> {
    let mut q = QueryBuilder::new("INSERT INTO body_chunks (message_id, seq, data) ");
    q.push_values(chunks, |mut b, (id, seq, data)| {
        b.push_bind(id).push_bind(seq).push_bind(data);
    });
    q.build().execute(&mut *conn).await.map(|_| ())
}

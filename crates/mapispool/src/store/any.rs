//! [`AnyStore`]: the store a profile names, SQLite or PostgreSQL, behind one type, so the
//! session, the spooler, the daemon and the CLI have one code path whatever the backend.
//!
//! An enum rather than `dyn Store` (the trait's methods return `impl Future` and take generic
//! readers, so it is not object safe) and rather than generics through every layer above the
//! store (the session, the daemon's shared state and the web server would all take a type
//! parameter for a choice made once, at logon). The dispatch is one `match` per call, next to
//! a database round trip.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mapi::{FileTime, MapiError, MapiResult};
use tokio::io::AsyncRead;

use super::postgres::{self, PgStore};
use super::sqlite::SqliteStore;
use super::{
    Folder, Heartbeat, InboundDelivery, InboundMessage, LeaseFilter, LeasedMessage, LeasedOutcome,
    MessageId, MessageRecord, NewMessage, NodeInfo, NodeRecord, OutcomeReport, QueueCounts,
    QueueEntry, QueueFilter, RecipientOutcome, RecipientRecord, Store,
};
use crate::credential::Secret;
use crate::profile::{Credential, StoreConfig};

/// The store of a profile: a SQLite file or a PostgreSQL database. Cheap to clone when the
/// backend is PostgreSQL (shared pools); see each backend for what it guarantees.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

/// How a store is opened: for a long-lived spooler, or for one submission by a short-lived
/// process (fewer connections, no cleanup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Spooler,
    Submit,
    Read,
}

impl AnyStore {
    /// [`Store::outgoing_queue`], only the messages that pass `filter` (a superset of those a
    /// `--where` restriction matches), found through the queue's indexes on either backend.
    pub async fn outgoing_queue_matching(
        &self,
        filter: &QueueFilter,
    ) -> MapiResult<Vec<QueueEntry>> {
        dispatch!(self, s => s.outgoing_queue_matching(filter).await)
    }

    /// Opens the store `config` names: see [`SqliteStore::open`] and [`PgStore::open`]. A
    /// database's password is read from the profile's credential first (`password_command`,
    /// `password_file`, `password_env`, `password_keyring`), never logged.
    ///
    /// Errors: the backend's (`MAPI_E_NETWORK_ERROR` naming the server without its password
    /// when PostgreSQL cannot be reached, ...); `MAPI_E_LOGON_FAILED` when the credential
    /// cannot be read.
    pub async fn open(config: &StoreConfig) -> MapiResult<AnyStore> {
        Self::open_for(config, Purpose::Spooler).await
    }

    /// Opens the store for a process that makes one submission and exits: see
    /// [`SqliteStore::open_for_submit`] and [`PgStore::open_for_submit`].
    pub async fn open_for_submit(config: &StoreConfig) -> MapiResult<AnyStore> {
        Self::open_for(config, Purpose::Submit).await
    }

    /// Opens the store for a process that only reads it: see [`SqliteStore::open_to_read`]
    /// (PostgreSQL: [`PgStore::open_for_submit`], which skips the cleanup too).
    pub async fn open_to_read(config: &StoreConfig) -> MapiResult<AnyStore> {
        Self::open_for(config, Purpose::Read).await
    }

    async fn open_for(config: &StoreConfig, purpose: Purpose) -> MapiResult<AnyStore> {
        match config {
            StoreConfig::Path(path) => Ok(AnyStore::Sqlite(match purpose {
                Purpose::Spooler => SqliteStore::open(path).await?,
                Purpose::Submit => SqliteStore::open_for_submit(path).await?,
                Purpose::Read => SqliteStore::open_to_read(path).await?,
            })),
            StoreConfig::Url { url, credential } => {
                let password = store_password(url, credential.as_ref()).await?;
                let password = password.as_ref().map(Secret::expose);
                Ok(AnyStore::Postgres(match purpose {
                    Purpose::Spooler => PgStore::open(url, password).await?,
                    Purpose::Submit | Purpose::Read => {
                        PgStore::open_for_submit(url, password).await?
                    }
                }))
            }
        }
    }

    /// What names the store in messages: its path, or its URL without a password.
    pub fn location(&self) -> String {
        match self {
            AnyStore::Sqlite(s) => s.path().display().to_string(),
            AnyStore::Postgres(s) => s.server().to_owned(),
        }
    }

    /// The PostgreSQL store, when it is one (for what only a shared database has).
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            AnyStore::Postgres(s) => Some(s),
            AnyStore::Sqlite(_) => None,
        }
    }

    /// Closes every connection. Later calls fail.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Closes a store opened with [`AnyStore::open_for_submit`] (see
    /// [`SqliteStore::close_after_submit`]).
    pub async fn close_after_submit(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close_after_submit().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

/// `config`'s URL without its password, for messages; `None` for a SQLite store.
pub fn redacted_url(config: &StoreConfig) -> Option<String> {
    config.url().map(postgres::redact)
}

/// The database password from the profile's `[store]` credential, if it has one. The
/// keyring's entry is the service's, for the user `store`.
async fn store_password(url: &str, credential: Option<&Credential>) -> MapiResult<Option<Secret>> {
    let Some(credential) = credential else {
        return Ok(None);
    };
    crate::credential::resolve(credential, "store", false)
        .await
        .map(Some)
        .map_err(|e| {
            MapiError::new(
                mapi::MapiCode::LogonFailed,
                format!(
                    "cannot read the password of the store {}: {}",
                    postgres::redact(url),
                    e.message
                ),
            )
        })
}

impl Store for AnyStore {
    async fn submit(
        &self,
        message: NewMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<MessageRecord> {
        dispatch!(self, s => s.submit(message, body).await)
    }

    async fn outgoing_queue(&self) -> MapiResult<Vec<QueueEntry>> {
        dispatch!(self, s => s.outgoing_queue().await)
    }

    async fn queue_entry(&self, id: MessageId) -> MapiResult<Option<QueueEntry>> {
        dispatch!(self, s => s.queue_entry(id).await)
    }

    fn display_name(&self) -> String {
        dispatch!(self, s => s.display_name())
    }

    fn now(&self) -> FileTime {
        dispatch!(self, s => s.now())
    }

    async fn queue_counts(&self) -> MapiResult<Vec<QueueCounts>> {
        dispatch!(self, s => s.queue_counts().await)
    }

    async fn lease_due(
        &self,
        owner: &str,
        now: FileTime,
        lease_for: Duration,
        limit: u32,
        filter: LeaseFilter,
    ) -> MapiResult<Vec<LeasedMessage>> {
        dispatch!(self, s => s.lease_due(owner, now, lease_for, limit, filter).await)
    }

    async fn release_lease(&self, id: MessageId, owner: &str) -> MapiResult<()> {
        dispatch!(self, s => s.release_lease(id, owner).await)
    }

    async fn set_transport(&self, id: MessageId, transport: Option<&str>) -> MapiResult<()> {
        dispatch!(self, s => s.set_transport(id, transport).await)
    }

    async fn record_outcome(
        &self,
        id: MessageId,
        owner: &str,
        outcomes: Vec<RecipientOutcome>,
        now: FileTime,
    ) -> MapiResult<OutcomeReport> {
        dispatch!(self, s => s.record_outcome(id, owner, outcomes, now).await)
    }

    async fn record_outcomes(
        &self,
        owner: &str,
        batch: Vec<(MessageId, Vec<RecipientOutcome>)>,
        now: FileTime,
    ) -> MapiResult<Vec<MapiResult<OutcomeReport>>> {
        dispatch!(self, s => s.record_outcomes(owner, batch, now).await)
    }

    async fn record_leased_outcomes(
        &self,
        owner: &str,
        batch: Vec<LeasedOutcome>,
        now: FileTime,
    ) -> MapiResult<Vec<MapiResult<OutcomeReport>>> {
        dispatch!(self, s => s.record_leased_outcomes(owner, batch, now).await)
    }

    async fn abort_submit(&self, id: MessageId) -> MapiResult<()> {
        dispatch!(self, s => s.abort_submit(id).await)
    }

    async fn resubmit(&self, id: MessageId) -> MapiResult<()> {
        dispatch!(self, s => s.resubmit(id).await)
    }

    async fn delete_message(&self, id: MessageId) -> MapiResult<()> {
        dispatch!(self, s => s.delete_message(id).await)
    }

    async fn deliver_inbound(
        &self,
        transport: &str,
        server_id: &str,
        message: InboundMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<Option<MessageRecord>> {
        dispatch!(self, s => s.deliver_inbound(transport, server_id, message, body).await)
    }

    async fn sync(&self) -> MapiResult<()> {
        dispatch!(self, s => s.sync().await)
    }

    async fn has_inbound(&self, transport: &str, server_id: &str) -> MapiResult<bool> {
        dispatch!(self, s => s.has_inbound(transport, server_id).await)
    }

    async fn deliver_inbound_batch(
        &self,
        transport: &str,
        batch: Vec<InboundDelivery>,
    ) -> MapiResult<Vec<bool>> {
        dispatch!(self, s => s.deliver_inbound_batch(transport, batch).await)
    }

    async fn inbound_known(
        &self,
        transport: &str,
        server_ids: &[String],
    ) -> MapiResult<HashSet<String>> {
        dispatch!(self, s => s.inbound_known(transport, server_ids).await)
    }

    async fn add_message(
        &self,
        folder: Folder,
        message: InboundMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> MapiResult<MessageRecord> {
        dispatch!(self, s => s.add_message(folder, message, body).await)
    }

    async fn messages(&self, folder: Folder) -> MapiResult<Vec<MessageRecord>> {
        dispatch!(self, s => s.messages(folder).await)
    }

    async fn message(&self, id: MessageId) -> MapiResult<MessageRecord> {
        dispatch!(self, s => s.message(id).await)
    }

    async fn message_ids_between(
        &self,
        first: MessageId,
        last: MessageId,
        limit: u32,
    ) -> MapiResult<(Vec<MessageId>, u64)> {
        dispatch!(self, s => s.message_ids_between(first, last, limit).await)
    }

    async fn recipients_by_message(
        &self,
        ids: &[MessageId],
    ) -> MapiResult<HashMap<MessageId, Vec<RecipientRecord>>> {
        dispatch!(self, s => s.recipients_by_message(ids).await)
    }

    async fn recipients(&self, id: MessageId) -> MapiResult<Vec<RecipientRecord>> {
        dispatch!(self, s => s.recipients(id).await)
    }

    async fn body_chunk(&self, id: MessageId, seq: u32) -> MapiResult<Option<Vec<u8>>> {
        dispatch!(self, s => s.body_chunk(id, seq).await)
    }

    async fn body_chunk_count(&self, id: MessageId) -> MapiResult<u32> {
        dispatch!(self, s => s.body_chunk_count(id).await)
    }

    async fn get_sync_state(&self, transport: &str, key: &str) -> MapiResult<Option<String>> {
        dispatch!(self, s => s.get_sync_state(transport, key).await)
    }

    async fn set_sync_state(&self, transport: &str, key: &str, value: &str) -> MapiResult<()> {
        dispatch!(self, s => s.set_sync_state(transport, key, value).await)
    }

    async fn set_sync_state_relaxed(
        &self,
        transport: &str,
        key: &str,
        value: &str,
    ) -> MapiResult<()> {
        dispatch!(self, s => s.set_sync_state_relaxed(transport, key, value).await)
    }

    async fn register_node(
        &self,
        node: &NodeInfo,
        now: FileTime,
        lease_for: Duration,
    ) -> MapiResult<Heartbeat> {
        dispatch!(self, s => s.register_node(node, now, lease_for).await)
    }

    async fn heartbeat(
        &self,
        node: &NodeInfo,
        status: &str,
        now: FileTime,
        lease_for: Duration,
        held: &[MessageId],
    ) -> MapiResult<Heartbeat> {
        dispatch!(self, s => s.heartbeat(node, status, now, lease_for, held).await)
    }

    async fn node_stopped(&self, instance: &str, now: FileTime) -> MapiResult<()> {
        dispatch!(self, s => s.node_stopped(instance, now).await)
    }

    async fn nodes(&self) -> MapiResult<Vec<NodeRecord>> {
        dispatch!(self, s => s.nodes().await)
    }

    async fn claim_sync_state(&self, transport: &str, key: &str, value: &str) -> MapiResult<bool> {
        dispatch!(self, s => s.claim_sync_state(transport, key, value).await)
    }

    fn watch_queue(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        me: &str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        dispatch!(self, s => s.watch_queue(wake, me))
    }

    async fn signal_flush(&self, me: &str) -> MapiResult<()> {
        dispatch!(self, s => s.signal_flush(me).await)
    }
}

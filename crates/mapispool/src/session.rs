//! Sessions (`MAPILogonEx` → `IMAPISession`): what a client holds to read the status table,
//! open status objects, submit messages and read folders.
//!
//! One API, two places: when a spooler daemon runs for the profile (`mapispool spooler`), the
//! session talks to it over its socket; otherwise it runs a spooler in-process for its lifetime,
//! as MAPI starts the spooler on the first logon. The same calls give the same results and the
//! same MAPI errors either way.

mod status;

pub use status::Status;

use std::sync::Arc;

use mapi::table::{Table, TableData};
use mapi::{EntryId, MapiError, MapiResult, Row};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ipc::client::Client;
use crate::ipc::wire::WireError;
use crate::message::{
    HeaderSummary, MAX_HEADER_BYTES, check_address, check_header_line_ends, header_block,
};
use crate::outgoing::{self, Author, check_field};
use crate::profile::Profile;
use crate::spooler::Spooler;
use crate::status::{StatusBoard, StatusKind};
use crate::store::{
    AnyStore, Folder, MessageId, MessageRecord, NewMessage, QueueEntry, QueueFilter, Store,
};
pub use crate::submission::{Submission, Submitted, dsn_request};

/// Where a session's work happens.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A spooler in this process.
    Local(Spooler),
    /// The profile's spooler daemon; `board` mirrors its status table.
    Remote {
        client: Client,
        board: StatusBoard,
        // Held only so the mirror stops when the last clone of the session goes.
        _mirror: Arc<MirrorTask>,
    },
}

/// Stops the status mirror when the last session clone goes.
pub(crate) struct MirrorTask(tokio::task::JoinHandle<()>);

impl Drop for MirrorTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The daemon serving `profile`'s store, if one runs (found through its lock, see
/// [`crate::ipc::daemon_anchor`]).
async fn daemon_for(profile: &Profile) -> MapiResult<Option<Client>> {
    Client::for_store(&crate::ipc::daemon_anchor(profile)).await
}

/// A logged-on session.
#[derive(Clone)]
pub struct Session {
    backend: Backend,
    profile: Arc<Profile>,
}

impl Session {
    /// Logs on to `profile`: through its spooler daemon if one runs (found by the lock beside
    /// its store), else with a spooler in this process on the profile's store.
    ///
    /// Errors: store errors (`MAPI_E_DISK_ERROR`, `MAPI_E_CORRUPT_STORE`, ...) with the path,
    /// or `MAPI_E_NETWORK_ERROR` / `MAPI_E_LOGON_FAILED` with the URL (never its password) of
    /// a database that cannot be reached or refuses us; `MAPI_E_VERSION` or `MAPI_E_NO_ACCESS`
    /// from a daemon that will not serve us.
    pub async fn logon(profile: Profile) -> MapiResult<Session> {
        if let Some(client) = daemon_for(&profile).await? {
            return Session::logon_remote(profile, client).await;
        }
        Session::logon_local(profile).await
    }

    /// [`Session::logon`] for a process that only reads the store and exits (`mapispool
    /// status`, `queue`, `messages`, `show`): through the daemon if one runs, else with a
    /// spooler in this process that does not work the queue ([`Spooler::start_to_read`]) on a
    /// store opened without its cleanup ([`AnyStore::open_to_read`]): no node row, no
    /// collection of unused body files, no commit at all when the schema is current. Such a
    /// session must not flush, submit or change messages (use [`Session::logon`]).
    pub async fn logon_to_read(profile: Profile) -> MapiResult<Session> {
        if let Some(client) = daemon_for(&profile).await? {
            return Session::logon_remote(profile, client).await;
        }
        let store = AnyStore::open_to_read(&profile.store).await?;
        let spooler = Spooler::start_to_read(profile.clone(), store).await?;
        Ok(Session {
            backend: Backend::Local(spooler),
            profile: Arc::new(profile),
        })
    }

    async fn logon_remote(profile: Profile, client: Client) -> MapiResult<Session> {
        // Subscribe first, then read the table: a change in between arrives as an event.
        let events = client.subscribe().await?;
        let board = StatusBoard::new(client.status_rows().await?);
        let mirror = MirrorTask(tokio::spawn(client.clone().mirror(board.clone(), events)));
        Ok(Session {
            backend: Backend::Remote {
                client,
                board,
                _mirror: Arc::new(mirror),
            },
            profile: Arc::new(profile),
        })
    }

    /// Logs on with a spooler in this process, whether or not a daemon runs (the daemon itself
    /// does this).
    pub async fn logon_local(profile: Profile) -> MapiResult<Session> {
        let store = AnyStore::open(&profile.store).await?;
        let spooler = Spooler::start(profile.clone(), store).await?;
        Ok(Session {
            backend: Backend::Local(spooler),
            profile: Arc::new(profile),
        })
    }

    /// The in-process spooler, when the session runs one (not when it talks to a daemon).
    pub fn spooler(&self) -> Option<&Spooler> {
        match &self.backend {
            Backend::Local(s) => Some(s),
            Backend::Remote { .. } => None,
        }
    }

    /// The daemon's socket, when the session talks to one.
    pub fn daemon_socket(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Remote { client, .. } => Some(client.socket()),
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The live status table's rows (a mirror of the daemon's when remote).
    pub fn board(&self) -> &StatusBoard {
        match &self.backend {
            Backend::Local(s) => s.board(),
            Backend::Remote { board, .. } => board,
        }
    }

    /// `IMAPISession::GetStatusTable`: a new view of the live status table.
    pub fn status_table(&self) -> Table {
        self.board().view()
    }

    /// `OpenEntry` on a status row's `PR_ENTRYID`.
    ///
    /// Errors, as `IMAPISession::OpenEntry` has them: `MAPI_E_UNKNOWN_ENTRYID` for an ID that
    /// is not a status object's (no provider here recognises it); `MAPI_E_NOT_FOUND` for a
    /// well-formed one whose object does not exist (a transport this profile does not have).
    pub fn open_status(&self, id: &EntryId) -> MapiResult<Status> {
        let kind = StatusKind::from_entry_id(id)?;
        if let StatusKind::Transport(name) = &kind
            && self.profile.transport(name).is_none()
        {
            return Err(MapiError::not_found(format!(
                "{} names transport \"{name}\", which this profile does not have",
                id.named()
            )));
        }
        Ok(Status::new(self.clone(), kind))
    }

    /// The status object of the spooler (a shortcut for the restriction on `MAPI_SPOOLER`).
    pub fn spooler_status(&self) -> Status {
        Status::new(self.clone(), StatusKind::Spooler)
    }

    /// Finds a transport's status object by name or by hex entry ID (what the CLI's
    /// `--transport` takes).
    pub fn transport_status(&self, name_or_id: &str) -> MapiResult<Status> {
        if self.profile.transport(name_or_id).is_some() {
            return Ok(Status::new(
                self.clone(),
                StatusKind::Transport(name_or_id.to_string()),
            ));
        }
        match name_or_id.parse::<EntryId>() {
            Ok(id) => match self.open_status(&id)? {
                s if matches!(s.kind(), StatusKind::Transport(_)) => Ok(s),
                _ => Err(MapiError::invalid_parameter(format!(
                    "{id} is not a transport's entry ID"
                ))),
            },
            Err(_) => Err(MapiError::not_found(format!(
                "there is no transport \"{name_or_id}\"; `mapispool status` lists them (PR_DISPLAY_NAME or PR_ENTRYID)"
            ))),
        }
    }

    fn local(&self, what: &str) -> MapiResult<&Spooler> {
        self.spooler().ok_or_else(|| {
            MapiError::no_support(format!(
                "{what} is only available with an in-process spooler; through the daemon use the table form"
            ))
        })
    }

    /// `IMessage::SubmitMessage`: queues an RFC 5322 message, durably, before it returns.
    ///
    /// Errors: `MAPI_E_NO_RECIPIENTS` when neither the envelope nor the headers name anyone;
    /// `MAPI_E_INVALID_PARAMETER` for a malformed address (named, with the reason);
    /// `MAPI_E_CORRUPT_DATA` for a message without headers; `MAPI_E_NOT_FOUND` for an
    /// unknown `--transport`.
    pub async fn submit(
        &self,
        submission: Submission,
        body: impl AsyncRead + Unpin + Send,
    ) -> MapiResult<Submitted> {
        let spooler = match &self.backend {
            Backend::Local(s) => s,
            Backend::Remote { client, .. } => {
                return submit_remote(client, &submission, body).await;
            }
        };
        let submitted = submit_to_store(spooler.store(), &self.profile, submission, body).await?;
        spooler.refresh_queue_counts().await;
        Ok(submitted)
    }

    /// Submits several whole messages at once: [`Session::submit`] for each, answered in
    /// order, each message accepted or refused on its own. Faster than one by one: the
    /// messages share commits (see the store's group commit), so a batch costs about one
    /// fsync, and through the daemon one request. Every accepted message is durable when this
    /// returns. The outer error is one that kept the batch from being tried (the daemon is
    /// unreachable or refused the request).
    pub async fn submit_batch(
        &self,
        items: Vec<(Submission, &[u8])>,
    ) -> MapiResult<Vec<MapiResult<Submitted>>> {
        match &self.backend {
            Backend::Local(spooler) => {
                let results = futures_util::future::join_all(items.into_iter().map(
                    |(submission, message)| {
                        submit_to_store(spooler.store(), &self.profile, submission, message)
                    },
                ))
                .await;
                spooler.refresh_queue_counts().await;
                Ok(results)
            }
            Backend::Remote { client, .. } => Ok(client
                .submit_batch(&items)
                .await?
                .iter()
                .map(|answer| match answer.get("error") {
                    Some(e) => Err(serde_json::from_value::<WireError>(e.clone())
                        .map(MapiError::from)
                        .unwrap_or_else(|_| {
                            MapiError::call_failed(format!("the spooler refused it: {e}"))
                        })),
                    None => submitted_from_json(answer),
                })
                .collect()),
        }
    }

    /// `IMsgStore::GetOutgoingQueue`, as records (in-process spooler only; the table form works
    /// everywhere).
    pub async fn outgoing_queue(&self) -> MapiResult<Vec<QueueEntry>> {
        self.local("the queue as records")?
            .store()
            .outgoing_queue()
            .await
    }

    /// [`Session::outgoing_queue`], only the messages that pass `filter` (in-process spooler
    /// only).
    pub async fn outgoing_queue_matching(
        &self,
        filter: &QueueFilter,
    ) -> MapiResult<Vec<QueueEntry>> {
        self.local("the queue as records")?
            .store()
            .outgoing_queue_matching(filter)
            .await
    }

    /// `IMsgStore::GetOutgoingQueue` as a table (submit-time order), for `--where` and columns.
    pub async fn outgoing_queue_table(&self) -> MapiResult<Table> {
        match &self.backend {
            Backend::Local(s) => table_of(
                s.store()
                    .outgoing_queue()
                    .await?
                    .iter()
                    .map(QueueEntry::to_row),
            ),
            Backend::Remote { client, .. } => table_of(client.queue_rows().await?.into_iter()),
        }
    }

    /// The cluster view: every spooler node that works this store's queue, alive or not
    /// (its last heartbeat and status), and the shared queue's counts by state
    /// ([`crate::store::cluster_rows`]). On SQLite the nodes are this machine's spooler
    /// processes. Works through the daemon too (`GET /v1/cluster`).
    pub async fn cluster_table(&self) -> MapiResult<Table> {
        table_of(self.cluster_rows().await?.into_iter())
    }

    /// The rows of [`Session::cluster_table`].
    pub async fn cluster_rows(&self) -> MapiResult<Vec<Row>> {
        match &self.backend {
            Backend::Local(s) => {
                let nodes = s.store().nodes().await?;
                let counts = s.store().queue_counts().await?;
                Ok(crate::store::cluster_rows(&nodes, &counts, s.store().now()))
            }
            Backend::Remote { client, .. } => client.cluster_rows().await,
        }
    }

    /// [`Session::outgoing_queue_table`], only the rows that `restriction` (a `--where`) may
    /// match: the store picks them through its indexes where it can ([`QueueFilter`]), and the
    /// daemon sends only the matching rows, so a question about a few messages does not read a
    /// long queue whole. The caller still restricts the table (the rows are a superset).
    pub async fn outgoing_queue_table_where(
        &self,
        restriction: &mapi::restriction::Restriction,
    ) -> MapiResult<Table> {
        match &self.backend {
            Backend::Local(s) => table_of(
                s.store()
                    .outgoing_queue_matching(&QueueFilter::from_restriction(restriction))
                    .await?
                    .iter()
                    .map(QueueEntry::to_row),
            ),
            Backend::Remote { client, .. } => table_of(
                client
                    .queue_rows_where(&restriction.to_string())
                    .await?
                    .into_iter(),
            ),
        }
    }

    /// The outgoing queue with one row per recipient (see
    /// [`QueueEntry::recipient_rows`]): each recipient's state, attempts, the server's last
    /// words and next attempt, with its message's entry ID and subject; in submit order.
    /// Works through the daemon too.
    pub async fn outgoing_recipients_table(&self) -> MapiResult<Table> {
        match &self.backend {
            Backend::Local(s) => table_of(
                s.store()
                    .outgoing_queue()
                    .await?
                    .iter()
                    .flat_map(QueueEntry::recipient_rows),
            ),
            Backend::Remote { client, .. } => {
                table_of(client.queue_recipient_rows().await?.into_iter())
            }
        }
    }

    /// Flushes one queued message (`postqueue -i`): see
    /// [`Spooler::flush_message`](crate::spooler::Spooler::flush_message). Works through the
    /// daemon too.
    pub async fn flush_message(
        &self,
        id: &EntryId,
        flags: crate::flush::FlushFlags,
    ) -> MapiResult<crate::flush::FlushReport> {
        match &self.backend {
            Backend::Local(s) => s.flush_message(id, flags).await,
            Backend::Remote { client, .. } => client.flush_message(id, flags).await,
        }
    }

    /// Flushes a send/receive group: see
    /// [`Spooler::flush_group`](crate::spooler::Spooler::flush_group). Works through the
    /// daemon too.
    pub async fn flush_group(
        &self,
        name: &str,
        flags: crate::flush::FlushFlags,
    ) -> MapiResult<crate::flush::FlushReport> {
        match &self.backend {
            Backend::Local(s) => s.flush_group(name, flags).await,
            Backend::Remote { client, .. } => client.flush_group(name, flags).await,
        }
    }

    /// `IMsgStore::AbortSubmit`. Errors: `MAPI_E_NOT_IN_QUEUE`, `MAPI_E_UNABLE_TO_ABORT`
    /// (the spooler is sending it right now), `MAPI_E_INVALID_ENTRYID`.
    pub async fn abort_submit(&self, id: &EntryId) -> MapiResult<()> {
        match &self.backend {
            Backend::Local(s) => {
                s.store()
                    .abort_submit(MessageId::from_entry_id(id)?)
                    .await?;
                s.refresh_queue_counts().await;
                Ok(())
            }
            Backend::Remote { client, .. } => client.abort(id).await,
        }
    }

    /// Queues again a message taken out of the queue by [`Session::abort_submit`]
    /// ([`crate::store::Store::resubmit`]): it goes at the next flush or schedule; recipients
    /// already delivered are not sent it again.
    pub async fn resubmit(&self, id: &EntryId) -> MapiResult<()> {
        match &self.backend {
            Backend::Local(s) => {
                s.store().resubmit(MessageId::from_entry_id(id)?).await?;
                s.refresh_queue_counts().await;
                Ok(())
            }
            Backend::Remote { client, .. } => client.resubmit(id).await,
        }
    }

    /// Moves a message that is not queued (received, sent, or taken out of the queue) to
    /// Deleted Items ([`crate::store::Store::delete_message`]).
    pub async fn delete_message(&self, id: &EntryId) -> MapiResult<()> {
        match &self.backend {
            Backend::Local(s) => {
                s.store()
                    .delete_message(MessageId::from_entry_id(id)?)
                    .await
            }
            Backend::Remote { client, .. } => client.delete_message(id).await,
        }
    }

    /// A folder's messages as a table.
    pub async fn folder_table(&self, folder: Folder) -> MapiResult<Table> {
        match &self.backend {
            Backend::Local(s) => table_of(
                crate::store::folder_rows(s.store(), folder)
                    .await?
                    .into_iter(),
            ),
            Backend::Remote { client, .. } => {
                table_of(client.folder_rows(folder_name(folder)).await?.into_iter())
            }
        }
    }

    /// The messages (of any folder) whose entry IDs start with the hex digits `prefix` (any
    /// case): the first `limit` of them by id, and how many there are in all. One read of the
    /// store's primary key ([`MessageId::prefix_range`]), not a listing of every folder; no
    /// message when the prefix cannot start a message entry ID of this store.
    pub async fn message_entry_ids(
        &self,
        prefix: &str,
        limit: u32,
    ) -> MapiResult<(Vec<EntryId>, u64)> {
        match &self.backend {
            Backend::Local(s) => {
                let Some((first, last)) = MessageId::prefix_range(prefix) else {
                    return Ok((Vec::new(), 0));
                };
                let (ids, total) = s.store().message_ids_between(first, last, limit).await?;
                Ok((ids.into_iter().map(MessageId::entry_id).collect(), total))
            }
            Backend::Remote { client, .. } => client.message_entry_ids(prefix, limit).await,
        }
    }

    /// A folder's contents table rows, with the recipients' names
    /// ([`crate::store::folder_rows`]; in-process spooler only).
    pub async fn folder_rows(&self, folder: Folder) -> MapiResult<Vec<Row>> {
        crate::store::folder_rows(self.local("a folder's rows")?.store(), folder).await
    }

    /// A folder's messages as records (in-process spooler only).
    pub async fn messages(&self, folder: Folder) -> MapiResult<Vec<MessageRecord>> {
        self.local("a folder as records")?
            .store()
            .messages(folder)
            .await
    }

    /// A message's raw RFC 5322 bytes.
    pub async fn message_body(&self, id: &EntryId) -> MapiResult<Vec<u8>> {
        match &self.backend {
            Backend::Local(s) => {
                s.store()
                    .read_body_to_vec(MessageId::from_entry_id(id)?)
                    .await
            }
            Backend::Remote { client, .. } => client.message(id).await,
        }
    }

    /// Waits until the asynchronous flushes this session started have finished (with a daemon,
    /// they run there and outlive the session).
    pub async fn wait_idle(&self) {
        if let Backend::Local(s) = &self.backend {
            s.wait_idle().await;
        }
    }

    /// Waits for asynchronous flushes this session started, then closes the store.
    pub async fn logoff(self) {
        if let Backend::Local(s) = &self.backend {
            s.wait_idle().await;
            s.stop_node().await;
            s.store().close().await;
        }
    }
}

fn folder_name(folder: Folder) -> &'static str {
    match folder {
        Folder::Inbox => "inbox",
        Folder::Outbox => "outbox",
        Folder::SentItems => "sent",
        Folder::DeletedItems => "deleted",
    }
}

/// A logon that can only submit (`MAPILogonEx` for a process that queues one message and exits:
/// `mapispool submit`, `sendmail`). Through the profile's daemon when one runs, else straight
/// into the store, which it opens for just this ([`AnyStore::open_for_submit`]): no spooler
/// starts, no transport logs on. The message then waits for the next flush, as it would behind
/// a [`Session`]'s in-process spooler, which sends only when asked.
pub struct SubmitSession {
    profile: Profile,
    backend: SubmitBackend,
}

enum SubmitBackend {
    Daemon(Client),
    Store(AnyStore),
}

impl SubmitSession {
    /// Logs on to `profile` for submitting.
    ///
    /// Errors: as [`Session::logon`].
    pub async fn logon(profile: Profile) -> MapiResult<SubmitSession> {
        if let Some(client) = daemon_for(&profile).await? {
            return Ok(SubmitSession {
                profile,
                backend: SubmitBackend::Daemon(client),
            });
        }
        let store = AnyStore::open_for_submit(&profile.store).await?;
        Ok(SubmitSession {
            profile,
            backend: SubmitBackend::Store(store),
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// `IMessage::SubmitMessage`, as [`Session::submit`]: durable (fsynced) when it returns.
    pub async fn submit(
        &self,
        submission: Submission,
        body: impl AsyncRead + Unpin + Send,
    ) -> MapiResult<Submitted> {
        match &self.backend {
            SubmitBackend::Daemon(client) => submit_remote(client, &submission, body).await,
            SubmitBackend::Store(store) => {
                submit_to_store(store, &self.profile, submission, body).await
            }
        }
    }

    /// Closes the store (when it was opened here), see [`AnyStore::close_after_submit`].
    pub async fn logoff(self) {
        if let SubmitBackend::Store(store) = &self.backend {
            store.close_after_submit().await;
        }
    }
}

/// `SubmitMessage` into a store this process has open: reads the headers for the envelope and
/// the message's properties, routes it by `profile`, and streams it into the store, which
/// returns once it is durable.
async fn submit_to_store(
    store: &AnyStore,
    profile: &Profile,
    submission: Submission,
    body: impl AsyncRead + Unpin + Send,
) -> MapiResult<Submitted> {
    // Every value the caller hands in is checked before anything is read or stored.
    check_field("sender", submission.from.as_deref().unwrap_or_default())?;
    check_field(
        "sender name",
        submission.sender_name.as_deref().unwrap_or_default(),
    )?;
    for r in &submission.recipients {
        check_field("recipient", r)?;
    }
    let envelope_from = outgoing::envelope_sender(submission.from.as_deref())?;
    let mut body = body;
    // Read just enough for the headers; the rest streams into the store. Straight into `head`,
    // grown as needed: most messages are a few KB.
    let mut head = Vec::new();
    loop {
        if header_block(&head).is_some_and(|h| h.len() < head.len())
            || head.len() >= MAX_HEADER_BYTES
        {
            break;
        }
        head.reserve(16 * 1024);
        let n = body
            .read_buf(&mut head)
            .await
            .map_err(|e| MapiError::call_failed(format!("cannot read the message: {e}")))?;
        if n == 0 {
            break;
        }
    }
    if head.is_empty() {
        return Err(MapiError::corrupt_data(
            "the message is empty (0 bytes); give an RFC 5322 message: header lines, an empty line, the body",
        ));
    }
    let headerless = outgoing::is_headerless(&head);
    let summary = if headerless {
        HeaderSummary::default()
    } else {
        let summary = HeaderSummary::parse(&head)?;
        check_header_line_ends(header_block(&head).unwrap_or(&head))
            .map_err(MapiError::corrupt_data)?;
        summary
    };
    if let Some(author) = &summary.from
        && !author.address.is_empty()
    {
        check_address(&author.address)
            .map_err(|e| MapiError::invalid_parameter(format!("sender (From:): {e}")))?;
    }
    let recipients = outgoing::envelope_recipients(
        &submission.recipients,
        submission.recipients_from_headers,
        &summary,
    )?;
    let route_by = envelope_from
        .clone()
        .filter(|f| !f.is_empty())
        .or_else(|| summary.from.as_ref().map(|m| m.address.clone()));
    let transport = profile.route(route_by.as_deref(), submission.transport.as_deref())?;
    let account = profile
        .transport(&transport)
        .ok_or_else(|| MapiError::not_found(format!("there is no transport \"{transport}\"")))?;
    let (dsn_notify, dsn_ret) = dsn_request(
        submission.dsn_notify.as_deref(),
        submission.dsn_ret.as_deref(),
    )?;
    // The From: written for a message without one names -f's address, else the account's
    // (with its display name when -F does not give one).
    let author = match envelope_from.as_deref().filter(|f| !f.is_empty()) {
        Some(address) => Author {
            name: submission.sender_name.as_deref(),
            address,
        },
        None => Author {
            name: submission
                .sender_name
                .as_deref()
                .or(account.display_name.as_deref()),
            address: &account.address,
        },
    };
    let added = outgoing::missing_fields(
        &summary,
        headerless,
        &author,
        outgoing::domain_of(&account.address),
        mapi::FileTime::now(),
        outgoing::line_end(&head),
    );
    let summary = if added.is_empty() {
        summary
    } else {
        let mut whole_head = added.clone();
        whole_head.extend_from_slice(&head);
        HeaderSummary::parse(&whole_head)?
    };
    let message = NewMessage {
        subject: summary.subject.clone().unwrap_or_default(),
        sender_name: summary.from.as_ref().map(|m| m.display().to_string()),
        sender_address: summary.from.as_ref().map(|m| m.address.clone()),
        envelope_from: Some(envelope_from.unwrap_or_else(|| account.address.clone())),
        internet_message_id: summary.message_id.clone(),
        deferred_delivery_time: submission.deferred_until,
        delete_after_submit: submission.delete_after_submit,
        transport: Some(transport),
        dsn_notify,
        dsn_ret,
        recipients,
        ..NewMessage::default()
    };
    let record = store
        .submit(message, (&added[..]).chain(&head[..]).chain(body))
        .await?;
    Ok(Submitted {
        entry_id: record.entry_id(),
        subject: record.subject,
        transport: record.transport,
        size: record.message_size,
    })
}

/// Submits through the daemon. The body is piped through an in-memory duplex so the caller's
/// reader need not outlive this call, and the message is never held whole here either.
async fn submit_remote(
    client: &Client,
    submission: &Submission,
    mut body: impl AsyncRead + Unpin + Send,
) -> MapiResult<Submitted> {
    let (mut writer, reader) = tokio::io::duplex(256 * 1024);
    let copy = async move {
        let copied = tokio::io::copy(&mut body, &mut writer).await;
        drop(writer);
        copied
    };
    let (copied, answer) = tokio::join!(copy, client.submit(submission, reader));
    copied.map_err(|e| MapiError::call_failed(format!("cannot read the message: {e}")))?;
    submitted_from_json(&answer?)
}

/// A `/v1/submit` answer read back.
fn submitted_from_json(answer: &serde_json::Value) -> MapiResult<Submitted> {
    let entry_id = answer
        .get("entry_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| MapiError::call_failed("the spooler did not say what it queued"))?
        .parse::<EntryId>()?;
    Ok(Submitted {
        entry_id,
        subject: answer
            .get("subject")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        transport: answer
            .get("transport")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        size: answer.get("size").and_then(|v| v.as_u64()).unwrap_or(0),
    })
}

fn table_of(rows: impl Iterator<Item = Row>) -> MapiResult<Table> {
    let data = TableData::new();
    for row in rows {
        data.add_row(row)?;
    }
    Ok(data.view())
}

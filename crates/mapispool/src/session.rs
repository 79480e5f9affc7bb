//! Sessions (`MAPILogonEx` → `IMAPISession`): what a client holds to read the status table,
//! open status objects, submit messages and read folders.
//!
//! Today a session runs its own spooler in-process for its lifetime, as MAPI starts the spooler
//! on the first logon; the messages it accepts are in the store before `submit` returns, so a
//! later session (or the daemon) sends what this one could not.

use mapi::table::{Table, TableData};
use mapi::{EntryId, MapiError, MapiResult, Row};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::message::{HeaderSummary, MAX_HEADER_BYTES, check_address, header_block};
use crate::profile::{Profile, StoreConfig};
use crate::spooler::Spooler;
use crate::status::{Status, StatusKind};
use crate::store::{
    Folder, MessageId, MessageRecord, NewMessage, NewRecipient, QueueEntry, SqliteStore, Store,
};

/// How a message is submitted: what the envelope is, beyond what its headers say.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// The envelope sender; `None` takes the `From:` header's address.
    pub from: Option<String>,
    /// Envelope recipients; empty takes `To:`, `Cc:` and `Bcc:` from the headers.
    pub recipients: Vec<String>,
    /// Also take the header recipients when `recipients` is given (sendmail's `-t`).
    pub recipients_from_headers: bool,
    /// The transport to leave by; `None` routes by sender, then profile order.
    pub transport: Option<String>,
    /// `PR_DEFERRED_DELIVERY_TIME`: not before this time.
    pub deferred_until: Option<mapi::FileTime>,
    /// `PR_DELETE_AFTER_SUBMIT`: delete instead of keeping a copy in Sent Items.
    pub delete_after_submit: bool,
}

/// A logged-on session.
#[derive(Clone)]
pub struct Session {
    spooler: Spooler,
}

impl Session {
    /// Logs on to `profile`: opens its store and starts its spooler.
    ///
    /// Errors: `MAPI_E_NO_SUPPORT` for a store URL this build cannot open; store errors
    /// (`MAPI_E_DISK_ERROR`, `MAPI_E_CORRUPT_STORE`, ...) with the path.
    pub async fn logon(profile: Profile) -> MapiResult<Session> {
        let path = match &profile.store {
            StoreConfig::Path(p) => p.clone(),
            StoreConfig::Url(url) => {
                return Err(MapiError::no_support(format!(
                    "store url {url:?}: this build stores in SQLite only; set [store] path instead"
                )));
            }
        };
        let store = SqliteStore::open(&path).await?;
        let spooler = Spooler::start(profile, store).await?;
        Ok(Session { spooler })
    }

    pub fn spooler(&self) -> &Spooler {
        &self.spooler
    }

    pub fn profile(&self) -> &Profile {
        self.spooler.profile()
    }

    /// `IMAPISession::GetStatusTable`: a new view of the live status table.
    pub fn status_table(&self) -> Table {
        self.spooler.board().view()
    }

    /// `OpenEntry` on a status row's `PR_ENTRYID`.
    ///
    /// Errors: `MAPI_E_INVALID_ENTRYID` for an ID that is not a status object's;
    /// `MAPI_E_UNKNOWN_ENTRYID` for a transport this profile does not have.
    pub fn open_status(&self, id: &EntryId) -> MapiResult<Status> {
        let kind = StatusKind::from_entry_id(id)?;
        if let StatusKind::Transport(name) = &kind
            && !self.spooler.has_transport(name)
        {
            return Err(MapiError::unknown_entry_id(format!(
                "{id} names transport \"{name}\", which this profile does not have"
            )));
        }
        Ok(Status::new(self.spooler.clone(), kind))
    }

    /// The status object of the spooler (a shortcut for the restriction on `MAPI_SPOOLER`).
    pub fn spooler_status(&self) -> Status {
        Status::new(self.spooler.clone(), StatusKind::Spooler)
    }

    /// Finds a transport's status object by name or by hex entry ID (what the CLI's
    /// `--transport` takes).
    pub fn transport_status(&self, name_or_id: &str) -> MapiResult<Status> {
        if self.spooler.has_transport(name_or_id) {
            return Ok(Status::new(
                self.spooler.clone(),
                StatusKind::Transport(name_or_id.to_string()),
            ));
        }
        match name_or_id.parse::<EntryId>() {
            Ok(id) => {
                let name = self.spooler.transport_named_by(&id)?;
                Ok(Status::new(
                    self.spooler.clone(),
                    StatusKind::Transport(name),
                ))
            }
            Err(_) => Err(MapiError::not_found(format!(
                "there is no transport \"{name_or_id}\"; `mapispool status` lists them (PR_DISPLAY_NAME or PR_ENTRYID)"
            ))),
        }
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
        mut body: impl AsyncRead + Unpin + Send,
    ) -> MapiResult<MessageRecord> {
        // Read just enough for the headers; the rest streams into the store.
        let mut head = Vec::with_capacity(64 * 1024);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if header_block(&head).is_some_and(|h| h.len() < head.len())
                || head.len() >= MAX_HEADER_BYTES
            {
                break;
            }
            let n = body
                .read(&mut buf)
                .await
                .map_err(|e| MapiError::call_failed(format!("cannot read the message: {e}")))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let summary = HeaderSummary::parse(&head)?;
        let from = submission
            .from
            .clone()
            .or_else(|| summary.from.as_ref().map(|m| m.address.clone()));
        if let Some(f) = &from
            && !f.is_empty()
        {
            check_address(f).map_err(|e| MapiError::invalid_parameter(format!("sender: {e}")))?;
        }
        let mut recipients: Vec<NewRecipient> = submission
            .recipients
            .iter()
            .map(|a| NewRecipient::to(a.clone()))
            .collect();
        if submission.recipients.is_empty() || submission.recipients_from_headers {
            for r in &summary.recipients {
                if !recipients
                    .iter()
                    .any(|x| x.address.eq_ignore_ascii_case(&r.mailbox.address))
                {
                    recipients.push(NewRecipient {
                        display_name: r.mailbox.display().to_string(),
                        address: r.mailbox.address.clone(),
                        recipient_type: r.recipient_type,
                    });
                }
            }
        }
        if recipients.is_empty() {
            return Err(MapiError::no_recipients(
                "the message has no recipients: give them as arguments, or in To:, Cc: or Bcc: headers",
            ));
        }
        for r in &recipients {
            check_address(&r.address)
                .map_err(|e| MapiError::invalid_parameter(format!("recipient: {e}")))?;
        }
        let transport = self
            .spooler
            .route(from.as_deref(), submission.transport.as_deref())?;
        let message = NewMessage {
            subject: summary.subject.clone().unwrap_or_default(),
            sender_name: summary.from.as_ref().map(|m| m.display().to_string()),
            sender_address: summary.from.as_ref().map(|m| m.address.clone()),
            envelope_from: from,
            internet_message_id: summary.message_id.clone(),
            deferred_delivery_time: submission.deferred_until,
            delete_after_submit: submission.delete_after_submit,
            transport: Some(transport),
            recipients,
            ..NewMessage::default()
        };
        let record = self
            .spooler
            .store()
            .submit(message, (&head[..]).chain(body))
            .await?;
        self.spooler.refresh_queue_counts().await;
        Ok(record)
    }

    /// `IMsgStore::GetOutgoingQueue`, as records.
    pub async fn outgoing_queue(&self) -> MapiResult<Vec<QueueEntry>> {
        self.spooler.store().outgoing_queue().await
    }

    /// `IMsgStore::GetOutgoingQueue` as a table (submit-time order), for `--where` and columns.
    pub async fn outgoing_queue_table(&self) -> MapiResult<Table> {
        table_of(self.outgoing_queue().await?.iter().map(QueueEntry::to_row))
    }

    /// `IMsgStore::AbortSubmit`. Errors: `MAPI_E_NOT_IN_QUEUE`, `MAPI_E_UNABLE_TO_ABORT`
    /// (the spooler is sending it right now), `MAPI_E_INVALID_ENTRYID`.
    pub async fn abort_submit(&self, id: &EntryId) -> MapiResult<()> {
        let id = MessageId::from_entry_id(id)?;
        self.spooler.store().abort_submit(id).await?;
        self.spooler.refresh_queue_counts().await;
        Ok(())
    }

    /// A folder's messages as a table.
    pub async fn folder_table(&self, folder: Folder) -> MapiResult<Table> {
        table_of(
            self.spooler
                .store()
                .messages(folder)
                .await?
                .iter()
                .map(MessageRecord::to_row),
        )
    }

    /// A folder's messages as records.
    pub async fn messages(&self, folder: Folder) -> MapiResult<Vec<MessageRecord>> {
        self.spooler.store().messages(folder).await
    }

    /// A message's raw RFC 5322 bytes.
    pub async fn message_body(&self, id: &EntryId) -> MapiResult<Vec<u8>> {
        let id = MessageId::from_entry_id(id)?;
        self.spooler.store().read_body_to_vec(id).await
    }

    /// Waits for asynchronous flushes this session started, then closes the store.
    pub async fn logoff(self) {
        self.spooler.wait_idle().await;
        self.spooler.store().close().await;
    }
}

fn table_of(rows: impl Iterator<Item = Row>) -> MapiResult<Table> {
    let data = TableData::new();
    for row in rows {
        data.add_row(row)?;
    }
    Ok(data.view())
}

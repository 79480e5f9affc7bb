//! The message store: folders (Inbox, Outbox, Sent Items, Deleted Items), messages with their
//! MAPI properties and raw RFC 5322 bytes, recipients with per-recipient delivery state, the
//! outgoing queue, inbound dedupe and inbound sync state.
//!
//! # Layout
//! - this file: the [`Store`] trait and the record types the spooler and the CLI work with.
//! - [`sqlite`]: [`SqliteStore`], the SQLite backend (WAL, `synchronous = FULL`).
//! - [`postgres`]: [`PgStore`], the PostgreSQL backend, shared by several spooler nodes.
//! - `any.rs`: [`AnyStore`], whichever of the two the profile names, for everything above.
//! - `error.rs`: [`StoreError`], a failed database or I/O operation, and its MAPI code.
//! - `node.rs`: spooler nodes ([`NodeInfo`], [`NodeRecord`], [`Heartbeat`]) and the cluster
//!   view's rows ([`cluster_rows`]).
//!
//! # The queue, and why leases
//! A submitted message sits in the Outbox with `in_queue` set. A spooler takes due messages with
//! [`Store::lease_due`], which stamps an owner and an expiry on them in one transaction; it reports
//! back with [`Store::record_outcome`]. The lease in the database is the only lock: nothing is
//! held in process memory, so a crashed spooler's messages are taken again once its lease
//! expires, and the PostgreSQL backend lets several spooler nodes share one queue
//! (`FOR UPDATE SKIP LOCKED`) behind the same trait; `node.rs` has the heartbeat that keeps a
//! live node's leases and the bound within which a dead node's are taken over.
//!
//! # Errors
//! Every operation returns [`MapiResult`]: MAPI's codes for what MAPI names (`MAPI_E_NOT_IN_QUEUE`,
//! `MAPI_E_UNABLE_TO_ABORT`, `MAPI_E_NO_RECIPIENTS`, `MAPI_E_NOT_FOUND`, ...), and for database
//! failures the code [`StoreError::code`] gives (`MAPI_E_NOT_ENOUGH_DISK`, `MAPI_E_CORRUPT_STORE`,
//! `MAPI_E_BUSY`, `MAPI_E_DISK_ERROR`) with the operation, the path and the cause in words.

mod any;
pub mod copy;
mod error;
mod node;
pub mod postgres;
mod shared;
pub mod sqlite;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use mapi::constants::{MAPI_BCC, MAPI_CC, MAPI_TO, SUBMITFLAG_LOCKED};
use mapi::tag::*;
use mapi::{EntryId, FileTime, MapiCode, MapiError, MapiResult, MapiUid, PropValue, Row};
use tokio::io::AsyncRead;

pub use any::{AnyStore, redacted_url};
pub use error::StoreError;
pub use node::{Heartbeat, NodeInfo, NodeRecord, NodeState, cluster_rows};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The PostgreSQL notification channel of the outgoing queue ([`Store::watch_queue`]):
/// payload `submit` for a newly queued message, `flush:INSTANCE` for a flush that node asks of
/// the others.
pub const QUEUE_CHANNEL: &str = "mapispool_queue";

/// The store provider's `MAPIUID`: the 16 bytes after the flags in every entry ID we hand out.
pub const STORE_UID: MapiUid = *b"mapispool-store1";

/// How many body bytes one stored chunk holds: large messages are written and read this much at
/// a time, never whole.
pub const BODY_CHUNK_SIZE: usize = 256 * 1024;

/// Bodies up to this size come with their lease ([`LeasedMessage::prefetched_body`]): a batch
/// of small messages is then read in one query, while large ones still stream.
pub const PREFETCH_BODY: u64 = 128 * 1024;

/// At most this many body bytes come with one lease batch (in queue order): a batch of many
/// mid-sized messages holds a bounded amount of memory; the rest are read when sent.
pub const PREFETCH_BATCH: u64 = 8 * 1024 * 1024;

/// The store's folders. The numbers are stable: they are in the database and in entry IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Folder {
    Inbox = 1,
    Outbox = 2,
    SentItems = 3,
    DeletedItems = 4,
}

impl Folder {
    pub const ALL: [Folder; 4] = [
        Folder::Inbox,
        Folder::Outbox,
        Folder::SentItems,
        Folder::DeletedItems,
    ];

    /// The display name MAPI clients show.
    pub fn display_name(self) -> &'static str {
        match self {
            Folder::Inbox => "Inbox",
            Folder::Outbox => "Outbox",
            Folder::SentItems => "Sent Items",
            Folder::DeletedItems => "Deleted Items",
        }
    }

    /// The folder's stable entry ID: `STORE_UID` then `b"F"` and the folder number.
    pub fn entry_id(self) -> EntryId {
        EntryId::new(&STORE_UID, &[b'F', self as u8])
    }

    /// Parses an entry ID made by [`Folder::entry_id`]; any other ID is `MAPI_E_INVALID_ENTRYID`.
    pub fn from_entry_id(id: &EntryId) -> MapiResult<Folder> {
        if id.uid() == Some(STORE_UID)
            && let [b'F', n] = id.data()
            && let Some(folder) = Folder::from_code(i64::from(*n))
        {
            return Ok(folder);
        }
        Err(MapiError::invalid_entry_id(format!(
            "{id} is not a folder entry ID of this store"
        )))
    }

    /// Looks a folder up by a user's word for it: `inbox`, `outbox`, `sent`, `sent items`,
    /// `deleted`, `deleted items` (any case).
    pub fn parse(name: &str) -> Option<Folder> {
        match name.trim().to_ascii_lowercase().as_str() {
            "inbox" => Some(Folder::Inbox),
            "outbox" => Some(Folder::Outbox),
            "sent" | "sent items" | "sentitems" | "sent-items" => Some(Folder::SentItems),
            "deleted" | "deleted items" | "deleteditems" | "deleted-items" | "trash" => {
                Some(Folder::DeletedItems)
            }
            _ => None,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Folder> {
        Folder::ALL.into_iter().find(|f| *f as i64 == code)
    }
}

/// A message's key in the store. Its MAPI form is [`MessageId::entry_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

impl MessageId {
    /// `STORE_UID`, then `b"M"` and the id as 8 big-endian bytes.
    pub fn entry_id(self) -> EntryId {
        let mut data = [0u8; 9];
        data[0] = b'M';
        data[1..].copy_from_slice(&self.0.to_be_bytes());
        EntryId::new(&STORE_UID, &data)
    }

    /// Parses an ID made by [`MessageId::entry_id`]. Another provider's ID, or one of ours that
    /// does not name a message, is `MAPI_E_INVALID_ENTRYID`. Whether the message still exists
    /// is for [`Store::message`] to say (`MAPI_E_NOT_FOUND`).
    pub fn from_entry_id(id: &EntryId) -> MapiResult<MessageId> {
        if id.uid() == Some(STORE_UID)
            && let [b'M', rest @ ..] = id.data()
            && let Ok(bytes) = <[u8; 8]>::try_from(rest)
        {
            return Ok(MessageId(i64::from_be_bytes(bytes)));
        }
        Err(MapiError::invalid_entry_id(format!(
            "{id} is not a message entry ID of this store"
        )))
    }
}

impl MessageId {
    /// The ids whose entry IDs ([`MessageId::entry_id`]) start with the hex digits `prefix`
    /// (any case), as the smallest and largest of them; `None` when no message entry ID of this
    /// store can start with it (not hex, another provider's, longer than an entry ID). The entry
    /// ID is a fixed header and then the id in big-endian: a prefix that covers the header names
    /// the ids that start with its remaining digits, one range, so the store answers it from its
    /// primary key instead of from a listing.
    pub fn prefix_range(prefix: &str) -> Option<(MessageId, MessageId)> {
        let prefix = prefix.trim().to_ascii_uppercase();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let header = EntryId::new(&STORE_UID, b"M")
            .to_string()
            .to_ascii_uppercase();
        let shared = prefix.len().min(header.len());
        if prefix[..shared] != header[..shared] {
            return None;
        }
        let digits = &prefix[shared..];
        if digits.len() > 16 {
            return None;
        }
        let bound = |fill: char| {
            let hex: String = digits
                .chars()
                .chain(std::iter::repeat_n(fill, 16 - digits.len()))
                .collect();
            u64::from_str_radix(&hex, 16).ok()
        };
        // Ids are positive i64s: the range's part past i64::MAX holds none.
        let first = i64::try_from(bound('0')?).ok()?;
        let last = i64::try_from(bound('F')?).unwrap_or(i64::MAX);
        Some((MessageId(first), MessageId(last)))
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A recipient as the client gives it. The address type is always `SMTP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    pub display_name: String,
    pub address: String,
    /// `PR_RECIPIENT_TYPE`: `MAPI_TO`, `MAPI_CC` or `MAPI_BCC`.
    pub recipient_type: i32,
}

impl NewRecipient {
    pub fn to(address: impl Into<String>) -> NewRecipient {
        NewRecipient {
            display_name: String::new(),
            address: address.into(),
            recipient_type: MAPI_TO,
        }
    }
}

/// What a client submits: the properties and recipients of an outgoing message. The body (raw
/// RFC 5322 bytes) is passed to [`Store::submit`] as a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// `PR_MESSAGE_CLASS`, `IPM.Note` by default.
    pub message_class: String,
    pub subject: String,
    pub sender_name: Option<String>,
    pub sender_address: Option<String>,
    /// The SMTP `MAIL FROM` to use; the transport's address when `None`.
    pub envelope_from: Option<String>,
    pub internet_message_id: Option<String>,
    /// `PR_DEFERRED_DELIVERY_TIME`: not sent before this time.
    pub deferred_delivery_time: Option<FileTime>,
    /// `PR_DELETE_AFTER_SUBMIT`: delete instead of moving to Sent Items once sent.
    pub delete_after_submit: bool,
    /// `PR_PRIORITY`: -1 non-urgent, 0 normal, 1 urgent.
    pub priority: i32,
    /// The transport it must leave by, when the client chose one; otherwise the spooler routes
    /// it ([`Store::set_transport`]).
    pub transport: Option<String>,
    /// Delivery status notifications asked for (RFC 3461 `NOTIFY=`): `NEVER`, or some of
    /// `SUCCESS`, `FAILURE`, `DELAY` comma-separated, upper case; `None`: the server's default.
    pub dsn_notify: Option<String>,
    /// RFC 3461 `RET=`: `FULL` or `HDRS`; `None`: the server's default.
    pub dsn_ret: Option<String>,
    pub recipients: Vec<NewRecipient>,
}

impl Default for NewMessage {
    fn default() -> NewMessage {
        NewMessage {
            message_class: "IPM.Note".into(),
            subject: String::new(),
            sender_name: None,
            sender_address: None,
            envelope_from: None,
            internet_message_id: None,
            deferred_delivery_time: None,
            delete_after_submit: false,
            priority: 0,
            transport: None,
            dsn_notify: None,
            dsn_ret: None,
            recipients: Vec::new(),
        }
    }
}

/// The properties of a message that arrives (from a transport) or that the spooler writes (a
/// non-delivery report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub message_class: String,
    pub subject: String,
    pub sender_name: Option<String>,
    pub sender_address: Option<String>,
    pub envelope_from: Option<String>,
    pub internet_message_id: Option<String>,
    /// `PR_CLIENT_SUBMIT_TIME`: when the sender sent it (its `Date:`), if known.
    pub client_submit_time: Option<FileTime>,
    /// `PR_MESSAGE_DELIVERY_TIME`.
    pub delivery_time: FileTime,
    pub priority: i32,
    /// `PR_MESSAGE_FLAGS`, usually 0 (unread).
    pub message_flags: i32,
    /// For reports: `PR_NDR_REASON_CODE` / `PR_NDR_DIAG_CODE`.
    pub ndr_reason_code: Option<i32>,
    pub ndr_diag_code: Option<i32>,
    /// The recipients as the message names them (for display; nothing is sent to them).
    pub recipients: Vec<NewRecipient>,
}

impl Default for InboundMessage {
    fn default() -> InboundMessage {
        InboundMessage {
            message_class: "IPM.Note".into(),
            subject: String::new(),
            sender_name: None,
            sender_address: None,
            envelope_from: None,
            internet_message_id: None,
            client_submit_time: None,
            delivery_time: FileTime::now(),
            priority: 0,
            message_flags: 0,
            ndr_reason_code: None,
            ndr_diag_code: None,
            recipients: Vec::new(),
        }
    }
}

/// One received message held whole in memory, for [`Store::deliver_inbound_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDelivery {
    /// The source's identity of the message (IMAP `UIDVALIDITY:UID`, a POP3 UIDL).
    pub server_id: String,
    pub message: InboundMessage,
    /// The raw RFC 5322 bytes.
    pub body: Vec<u8>,
}

/// A stored message's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub folder: Folder,
    pub message_class: String,
    pub subject: String,
    pub sender_name: Option<String>,
    pub sender_address: Option<String>,
    pub envelope_from: Option<String>,
    pub internet_message_id: Option<String>,
    pub message_flags: i32,
    /// As stored; [`QueueEntry::submit_flags`] says whether a lease is live.
    pub submit_flags: i32,
    pub client_submit_time: Option<FileTime>,
    pub provider_submit_time: Option<FileTime>,
    pub delivery_time: Option<FileTime>,
    pub deferred_delivery_time: Option<FileTime>,
    pub delete_after_submit: bool,
    pub priority: i32,
    /// The body's size in bytes.
    pub message_size: u64,
    /// Outbound: the transport it must leave by (`None` until routed). Inbound: the one it came by.
    pub transport: Option<String>,
    /// Inbound: the server's identity for it (IMAP UIDVALIDITY/UID, POP3 UIDL).
    pub server_id: Option<String>,
    pub ndr_reason_code: Option<i32>,
    pub ndr_diag_code: Option<i32>,
    /// Outbound: the delivery status notifications asked for ([`NewMessage::dsn_notify`]).
    pub dsn_notify: Option<String>,
    /// Outbound: RFC 3461 `RET=` ([`NewMessage::dsn_ret`]).
    pub dsn_ret: Option<String>,
}

impl MessageRecord {
    /// `PR_SENDER_NAME` as tables show it: the sender's name, else the address, else empty.
    pub fn sender_display(&self) -> &str {
        self.sender_name
            .as_deref()
            .or(self.sender_address.as_deref())
            .unwrap_or("")
    }

    pub fn entry_id(&self) -> EntryId {
        self.id.entry_id()
    }

    /// The message as a folder contents table row: `PR_ENTRYID`, `PR_INSTANCE_KEY`,
    /// `PR_PARENT_ENTRYID`, `PR_MESSAGE_CLASS`, `PR_SUBJECT`, `PR_SENDER_*`, the times that are
    /// set, `PR_MESSAGE_SIZE`, `PR_MESSAGE_FLAGS`, `PR_PRIORITY`, `PR_INTERNET_MESSAGE_ID`,
    /// `PR_MSP_TRANSPORT`, `PR_MSP_SERVER_ID`, `PR_MSP_ENVELOPE_FROM` and NDR codes when set.
    pub fn to_row(&self) -> Row {
        let eid = self.entry_id().as_bytes().to_vec();
        let mut row = Row::new(vec![]);
        row.set(PR_ENTRYID, PropValue::Binary(eid.clone()));
        row.set(PR_INSTANCE_KEY, PropValue::Binary(eid));
        row.set(
            PR_PARENT_ENTRYID,
            PropValue::Binary(self.folder.entry_id().as_bytes().to_vec()),
        );
        row.set(PR_MESSAGE_CLASS, text(&self.message_class));
        row.set(PR_SUBJECT, text(&self.subject));
        set_opt_text(&mut row, PR_SENDER_NAME, &self.sender_name);
        set_opt_text(&mut row, PR_SENDER_EMAIL_ADDRESS, &self.sender_address);
        set_opt_time(&mut row, PR_CLIENT_SUBMIT_TIME, self.client_submit_time);
        set_opt_time(&mut row, PR_PROVIDER_SUBMIT_TIME, self.provider_submit_time);
        set_opt_time(&mut row, PR_MESSAGE_DELIVERY_TIME, self.delivery_time);
        set_opt_time(
            &mut row,
            PR_DEFERRED_DELIVERY_TIME,
            self.deferred_delivery_time,
        );
        row.set(
            PR_MESSAGE_SIZE,
            PropValue::Long(size_long(self.message_size)),
        );
        row.set(PR_MESSAGE_FLAGS, PropValue::Long(self.message_flags));
        row.set(PR_PRIORITY, PropValue::Long(self.priority));
        row.set(
            PR_DELETE_AFTER_SUBMIT,
            PropValue::Boolean(self.delete_after_submit),
        );
        set_opt_text(&mut row, PR_INTERNET_MESSAGE_ID, &self.internet_message_id);
        set_opt_text(&mut row, PR_MSP_TRANSPORT, &self.transport);
        set_opt_text(&mut row, PR_MSP_SERVER_ID, &self.server_id);
        set_opt_text(&mut row, PR_MSP_ENVELOPE_FROM, &self.envelope_from);
        if let Some(code) = self.ndr_reason_code {
            row.set(PR_NDR_REASON_CODE, PropValue::Long(code));
        }
        if let Some(code) = self.ndr_diag_code {
            row.set(PR_NDR_DIAG_CODE, PropValue::Long(code));
        }
        if let Some(notify) = &self.dsn_notify {
            row.set(
                PR_ORIGINATOR_DELIVERY_REPORT_REQUESTED,
                PropValue::Boolean(notify.split(',').any(|n| n == "SUCCESS")),
            );
            row.set(PR_MSP_DSN_NOTIFY, text(notify));
        }
        set_opt_text(&mut row, PR_MSP_DSN_RET, &self.dsn_ret);
        row
    }
}

/// Where delivery to one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecipientState {
    /// Not tried yet.
    Pending,
    Delivered,
    /// Failed for now (a 4xx, no connection); tried again at `retry_at`.
    Deferred,
    /// Failed for good (a 5xx, given up); a non-delivery report is due.
    Failed,
}

impl RecipientState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Delivered => "delivered",
            RecipientState::Deferred => "deferred",
            RecipientState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<RecipientState> {
        [
            RecipientState::Pending,
            RecipientState::Delivered,
            RecipientState::Deferred,
            RecipientState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Still to be sent: pending or deferred.
    pub fn is_open(self) -> bool {
        matches!(self, RecipientState::Pending | RecipientState::Deferred)
    }
}

/// A stored recipient with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRecord {
    /// `PR_ROWID`: the recipient's index within its message, from 0.
    pub row_id: u32,
    pub display_name: String,
    pub address: String,
    /// `PR_ADDRTYPE`: always `SMTP` today.
    pub addrtype: String,
    /// `PR_RECIPIENT_TYPE`.
    pub recipient_type: i32,
    /// `PR_RESPONSIBILITY`: a transport has handled this recipient (delivered or definitely failed).
    pub responsibility: bool,
    pub state: RecipientState,
    pub attempts: u32,
    /// The server's own words for the last failure.
    pub last_error: Option<String>,
    pub retry_at: Option<FileTime>,
    pub ndr_reason_code: Option<i32>,
    pub ndr_diag_code: Option<i32>,
}

impl RecipientRecord {
    /// The name to show: the display name, or the address when there is none.
    pub fn display(&self) -> &str {
        if self.display_name.is_empty() {
            &self.address
        } else {
            &self.display_name
        }
    }

    /// The recipient as a recipient table row: `PR_ROWID`, `PR_DISPLAY_NAME`, `PR_EMAIL_ADDRESS`,
    /// `PR_ADDRTYPE`, `PR_RECIPIENT_TYPE`, `PR_RESPONSIBILITY`, `PR_MSP_QUEUE_STATE` (the delivery
    /// state), `PR_MSP_ATTEMPTS`, and when set `PR_MSP_LAST_ERROR`, `PR_MSP_NEXT_ATTEMPT_TIME`,
    /// `PR_NDR_REASON_CODE`, `PR_NDR_DIAG_CODE`.
    pub fn to_row(&self) -> Row {
        let mut row = Row::new(vec![]);
        row.set(PR_ROWID, PropValue::Long(self.row_id as i32));
        row.set(PR_DISPLAY_NAME, text(self.display()));
        row.set(PR_EMAIL_ADDRESS, text(&self.address));
        row.set(PR_ADDRTYPE, text(&self.addrtype));
        row.set(PR_RECIPIENT_TYPE, PropValue::Long(self.recipient_type));
        row.set(PR_RESPONSIBILITY, PropValue::Boolean(self.responsibility));
        row.set(PR_MSP_QUEUE_STATE, text(self.state.as_str()));
        row.set(PR_MSP_ATTEMPTS, PropValue::Long(count_long(self.attempts)));
        set_opt_text(&mut row, PR_MSP_LAST_ERROR, &self.last_error);
        set_opt_time(&mut row, PR_MSP_NEXT_ATTEMPT_TIME, self.retry_at);
        if let Some(code) = self.ndr_reason_code {
            row.set(PR_NDR_REASON_CODE, PropValue::Long(code));
        }
        if let Some(code) = self.ndr_diag_code {
            row.set(PR_NDR_DIAG_CODE, PropValue::Long(code));
        }
        row
    }
}

/// Where a queued message stands, as the queue table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueState {
    /// Due: the next flush sends it.
    Queued,
    /// Leased by a live spooler (`SUBMITFLAG_LOCKED`).
    Sending,
    /// Waiting for its retry time after a temporary failure.
    Deferred,
    /// `PR_DEFERRED_DELIVERY_TIME` is still in the future.
    Scheduled,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Queued => "queued",
            QueueState::Sending => "sending",
            QueueState::Deferred => "deferred",
            QueueState::Scheduled => "scheduled",
        }
    }
}

/// A lease on a queued message: who holds it and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub until: FileTime,
}

/// One row of the outgoing queue (`IMsgStore::GetOutgoingQueue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub message: MessageRecord,
    /// Worked out against the clock when the queue was read.
    pub state: QueueState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<FileTime>,
    /// The lease, if one is recorded; it may have expired (see `state`).
    pub lease: Option<Lease>,
    pub recipients: Vec<RecipientRecord>,
}

impl QueueEntry {
    /// `PR_SUBMIT_FLAGS` as MAPI means it: `SUBMITFLAG_LOCKED` only while the lease is live.
    pub fn submit_flags(&self) -> i32 {
        let flags = self.message.submit_flags & !SUBMITFLAG_LOCKED;
        if self.state == QueueState::Sending {
            flags | SUBMITFLAG_LOCKED
        } else {
            flags
        }
    }

    /// The queue table row: MAPI's queue columns (`PR_ENTRYID`, `PR_INSTANCE_KEY`,
    /// `PR_CLIENT_SUBMIT_TIME`, `PR_DISPLAY_TO/CC/BCC`, `PR_MESSAGE_FLAGS`, `PR_MESSAGE_SIZE`,
    /// `PR_PRIORITY`, `PR_SENDER_NAME`, `PR_SUBJECT`, `PR_SUBMIT_FLAGS`,
    /// `PR_DEFERRED_DELIVERY_TIME` if set) and ours (`PR_MSP_QUEUE_STATE`, `PR_MSP_ATTEMPTS`,
    /// `PR_MSP_LAST_ERROR`, `PR_MSP_NEXT_ATTEMPT_TIME` ([`QueueEntry::next_attempt`]),
    /// `PR_MSP_TRANSPORT`,
    /// `PR_MSP_ENVELOPE_FROM`, the last four when set).
    pub fn to_row(&self) -> Row {
        let m = &self.message;
        let eid = m.entry_id().as_bytes().to_vec();
        let mut row = Row::new(vec![]);
        row.set(PR_ENTRYID, PropValue::Binary(eid.clone()));
        row.set(PR_INSTANCE_KEY, PropValue::Binary(eid));
        set_opt_time(&mut row, PR_CLIENT_SUBMIT_TIME, m.client_submit_time);
        row.set(PR_DISPLAY_TO, text(&self.display(MAPI_TO)));
        row.set(PR_DISPLAY_CC, text(&self.display(MAPI_CC)));
        row.set(PR_DISPLAY_BCC, text(&self.display(MAPI_BCC)));
        row.set(PR_MESSAGE_FLAGS, PropValue::Long(m.message_flags));
        row.set(PR_MESSAGE_SIZE, PropValue::Long(size_long(m.message_size)));
        row.set(PR_PRIORITY, PropValue::Long(m.priority));
        row.set(PR_SENDER_NAME, text(m.sender_display()));
        row.set(PR_SUBJECT, text(&m.subject));
        row.set(PR_SUBMIT_FLAGS, PropValue::Long(self.submit_flags()));
        set_opt_time(
            &mut row,
            PR_DEFERRED_DELIVERY_TIME,
            m.deferred_delivery_time,
        );
        row.set(PR_MSP_QUEUE_STATE, text(self.state.as_str()));
        row.set(PR_MSP_ATTEMPTS, PropValue::Long(count_long(self.attempts)));
        set_opt_text(&mut row, PR_MSP_LAST_ERROR, &self.last_error);
        set_opt_time(&mut row, PR_MSP_NEXT_ATTEMPT_TIME, self.next_attempt());
        set_opt_text(&mut row, PR_MSP_TRANSPORT, &m.transport);
        set_opt_text(&mut row, PR_MSP_ENVELOPE_FROM, &m.envelope_from);
        row
    }

    /// One row per recipient, for the per-recipient queue (`mapispool queue --recipients`):
    /// the recipient's own columns ([`RecipientRecord::to_row`]: `PR_ROWID`,
    /// `PR_DISPLAY_NAME`, `PR_EMAIL_ADDRESS`, `PR_RECIPIENT_TYPE`, `PR_MSP_ATTEMPTS`,
    /// `PR_MSP_LAST_ERROR` with the server's words, `PR_MSP_NEXT_ATTEMPT_TIME`, ...) and the
    /// message's (`PR_ENTRYID`, `PR_SUBJECT`, `PR_CLIENT_SUBMIT_TIME`, `PR_SENDER_NAME`,
    /// `PR_MSP_TRANSPORT`); `PR_INSTANCE_KEY` is the entry ID and the row ID together.
    ///
    /// `PR_MSP_QUEUE_STATE` is the recipient's state in the queue's words: `sent` (delivered),
    /// `failed`, `deferred` (waiting for its retry), and for one not tried yet the message's
    /// own state (`queued`, `sending`, `scheduled`, or `deferred` when the message waits for a
    /// retry); any open recipient of a message being sent now is `sending`.
    pub fn recipient_rows(&self) -> Vec<Row> {
        let m = &self.message;
        let eid = m.entry_id().as_bytes().to_vec();
        self.recipients
            .iter()
            .map(|r| {
                let mut row = r.to_row();
                let mut key = eid.clone();
                key.extend_from_slice(&r.row_id.to_be_bytes());
                row.set(PR_ENTRYID, PropValue::Binary(eid.clone()));
                row.set(PR_INSTANCE_KEY, PropValue::Binary(key));
                row.set(PR_SUBJECT, text(&m.subject));
                set_opt_time(&mut row, PR_CLIENT_SUBMIT_TIME, m.client_submit_time);
                row.set(PR_SENDER_NAME, text(m.sender_display()));
                set_opt_text(&mut row, PR_MSP_TRANSPORT, &m.transport);
                let state = match r.state {
                    RecipientState::Delivered => "sent",
                    RecipientState::Failed => "failed",
                    _ if self.state == QueueState::Sending => "sending",
                    RecipientState::Deferred => "deferred",
                    RecipientState::Pending => self.state.as_str(),
                };
                row.set(PR_MSP_QUEUE_STATE, text(state));
                // A recipient still to be sent to goes no earlier than its message.
                if r.state.is_open()
                    && let Some(next) = self.next_attempt()
                    && r.retry_at.is_none_or(|at| at < next)
                {
                    row.set(PR_MSP_NEXT_ATTEMPT_TIME, PropValue::SysTime(next));
                }
                row
            })
            .collect()
    }

    /// The `;`-joined names of the recipients of one type, as `PR_DISPLAY_TO` and friends show.
    pub fn display(&self, recipient_type: i32) -> String {
        display_names(&self.recipients, recipient_type)
    }

    /// When the spooler will next try it: its retry time, and for a scheduled message
    /// (`PR_DEFERRED_DELIVERY_TIME` ahead) not before that time.
    pub fn next_attempt(&self) -> Option<FileTime> {
        let scheduled = match self.state {
            QueueState::Scheduled => self.message.deferred_delivery_time,
            _ => None,
        };
        match (self.next_attempt_at, scheduled) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Which due messages [`Store::lease_due`] takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseFilter {
    /// Only messages whose transport (route) is this one. Unrouted messages (`transport` NULL)
    /// match only `None`; the spooler routes them first with [`Store::set_transport`].
    pub transport: Option<String>,
    /// `FLUSH_FORCE`: also take messages still waiting for their retry time. The deferred
    /// delivery time (`PR_DEFERRED_DELIVERY_TIME`) is honoured regardless.
    pub include_backoff: bool,
    /// Only this message.
    pub only: Option<MessageId>,
}

/// What sending a leased message reads of its properties: the envelope, the DSN request, and
/// what the mail log, the flush's report, a delay notice and a non-delivery report say of it.
/// [`Store::lease_due`] reads only these columns, not a whole [`MessageRecord`]: every value a
/// lease reads is copied out of the store, for every message sent (bench/notes/upload4.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedRecord {
    pub id: MessageId,
    pub message_class: String,
    pub subject: String,
    pub sender_address: Option<String>,
    pub envelope_from: Option<String>,
    pub internet_message_id: Option<String>,
    pub client_submit_time: Option<FileTime>,
    /// The body's size in bytes.
    pub message_size: u64,
    /// The transport it leaves by.
    pub transport: Option<String>,
    /// The delivery status notifications asked for ([`NewMessage::dsn_notify`]).
    pub dsn_notify: Option<String>,
    /// RFC 3461 `RET=` ([`NewMessage::dsn_ret`]).
    pub dsn_ret: Option<String>,
}

impl LeasedRecord {
    pub fn entry_id(&self) -> EntryId {
        self.id.entry_id()
    }
}

/// A message a spooler has leased, with everything it needs to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedMessage {
    pub message: LeasedRecord,
    /// All recipients with their states; [`LeasedMessage::open_recipients`] are the ones to send to.
    pub recipients: Vec<RecipientRecord>,
    pub lease: Lease,
    /// Earlier attempts.
    pub attempts: u32,
    /// How many chunks the body has.
    pub body_chunks: u32,
    /// The whole body when it is small (one chunk of at most [`PREFETCH_BODY`] bytes): read
    /// with the lease, so that sending it costs no store round trip of its own.
    pub prefetched_body: Option<Vec<u8>>,
}

impl LeasedMessage {
    /// The recipients still to send to (pending or deferred).
    pub fn open_recipients(&self) -> impl Iterator<Item = &RecipientRecord> {
        self.recipients.iter().filter(|r| r.state.is_open())
    }
}

/// What happened to one recipient in a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// A temporary failure: try again at `retry_at`. `error` is the server's words.
    Deferred {
        error: String,
        retry_at: FileTime,
    },
    /// A permanent failure: a non-delivery report is due. Codes are `MAPI_REASON_*`/`MAPI_DIAG_*`.
    Failed {
        error: String,
        reason_code: i32,
        diag_code: i32,
    },
}

/// One recipient's result, by its `PR_ROWID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    pub row_id: u32,
    pub result: DeliveryResult,
}

/// One attempt at a message leased with [`Store::lease_due`], for
/// [`Store::record_leased_outcomes`]: its outcomes, with the lease and the recipients as the
/// lease read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedOutcome {
    pub id: MessageId,
    pub outcomes: Vec<RecipientOutcome>,
    /// The lease the attempt was made under ([`LeasedMessage::lease`]).
    pub lease: Lease,
    /// The message's recipients as leased ([`LeasedMessage::recipients`]).
    pub recipients: Vec<RecipientRecord>,
}

/// What [`Store::record_outcome`] did with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageDisposition {
    /// Every recipient handled: moved to Sent Items.
    MovedToSentItems,
    /// Every recipient handled and `PR_DELETE_AFTER_SUBMIT` set: deleted.
    Deleted,
    /// Some recipients still open: back in the queue, due at `next_attempt_at` (`None` = now).
    StillQueued { next_attempt_at: Option<FileTime> },
}

impl MessageDisposition {
    /// The message has left the queue.
    pub fn is_finished(self) -> bool {
        !matches!(self, MessageDisposition::StillQueued { .. })
    }
}

/// The result of [`Store::record_outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeReport {
    pub disposition: MessageDisposition,
    /// Recipients that failed in this attempt: the spooler writes a non-delivery report for them.
    pub failed: Vec<RecipientRecord>,
}

/// The part of a `--where` restriction on the queue table that the store can answer from its
/// own columns (and indexes) instead of reading the whole queue: comparisons of
/// `PR_MSP_ATTEMPTS`, `PR_MESSAGE_SIZE` and `PR_PRIORITY` with a number, at the top or under
/// an AND. The rest is left out, so the messages that match the filter are a superset of those
/// that match the restriction: the caller still restricts the table with the whole of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    pub(crate) terms: Vec<(QueueColumn, mapi::restriction::RelOp, i32)>,
}

/// A queue table column that is a message column too (see [`QueueFilter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueColumn {
    Attempts,
    MessageSize,
    Priority,
}

impl QueueFilter {
    /// What of `restriction` the store can answer (see [`QueueFilter`]); empty when nothing.
    pub fn from_restriction(restriction: &mapi::restriction::Restriction) -> QueueFilter {
        let mut filter = QueueFilter::default();
        filter.add(restriction);
        filter
    }

    fn add(&mut self, restriction: &mapi::restriction::Restriction) {
        use mapi::restriction::{RelOp, Restriction};
        match restriction {
            Restriction::And(all) => all.iter().for_each(|r| self.add(r)),
            Restriction::Comment {
                restriction: Some(r),
                ..
            } => self.add(r),
            Restriction::Property {
                relop,
                tag,
                value: PropValue::Long(v),
            } if *relop != RelOp::Re => {
                let column = match *tag {
                    PR_MSP_ATTEMPTS => QueueColumn::Attempts,
                    PR_MESSAGE_SIZE => QueueColumn::MessageSize,
                    PR_PRIORITY => QueueColumn::Priority,
                    _ => return,
                };
                self.terms.push((column, *relop, *v));
            }
            // OR, NOT and the other kinds would need the whole expression: left to the table.
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Queue counts for one route, cheap enough for every status row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// The route; `None` for messages not yet routed.
    pub transport: Option<String>,
    pub queued: u32,
    pub sending: u32,
    pub deferred: u32,
    pub scheduled: u32,
}

impl QueueCounts {
    pub fn total(&self) -> u32 {
        self.queued + self.sending + self.deferred + self.scheduled
    }
}

/// A folder's contents table rows ([`MessageRecord::to_row`]) with `PR_DISPLAY_TO`,
/// `PR_DISPLAY_CC` and `PR_DISPLAY_BCC` from each message's recipients (MAPI's `;`-joined
/// display names), so Sent Items shows whom each message went to. Two reads whatever the
/// folder holds: its messages, then the recipients of all of them.
pub async fn folder_rows<S: Store>(store: &S, folder: Folder) -> MapiResult<Vec<Row>> {
    let messages = store.messages(folder).await?;
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    // A message gone between the listing and this read (deleted, moved) is listed without names.
    let mut recipients = store.recipients_by_message(&ids).await?;
    let mut rows = Vec::with_capacity(messages.len());
    for m in &messages {
        let mut row = m.to_row();
        let recipients = recipients.remove(&m.id).unwrap_or_default();
        for (tag, kind) in [
            (PR_DISPLAY_TO, MAPI_TO),
            (PR_DISPLAY_CC, MAPI_CC),
            (PR_DISPLAY_BCC, MAPI_BCC),
        ] {
            row.set(tag, text(&display_names(&recipients, kind)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The `;`-joined names of the recipients of one type, as `PR_DISPLAY_TO` and friends show.
fn display_names(recipients: &[RecipientRecord], recipient_type: i32) -> String {
    recipients
        .iter()
        .filter(|r| r.recipient_type == recipient_type)
        .map(RecipientRecord::display)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The message store. Every method is one transaction (or, for bodies, a staged write whose
/// final step is one transaction); nothing is cached in memory, so several handles and processes
/// may share one store.
pub trait Store: Send + Sync {
    /// `IMessage::SubmitMessage`: stores the message in the Outbox with `MSGFLAG_SUBMIT |
    /// MSGFLAG_UNSENT | MSGFLAG_FROMME`, `PR_RESPONSIBILITY` false on every recipient and
    /// `PR_CLIENT_SUBMIT_TIME` now, and queues it. Returns only once it is on disk (fsynced).
    ///
    /// The body is streamed into chunks, never held whole. Errors: `MAPI_E_NO_RECIPIENTS` without
    /// recipients; `MAPI_E_INVALID_PARAMETER` for a recipient with an empty address or a type
    /// other than TO/CC/BCC; `MAPI_E_CALL_FAILED` when reading `body` fails; store errors
    /// ([`StoreError::code`]). On error nothing is queued.
    fn submit(
        &self,
        message: NewMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> impl Future<Output = MapiResult<MessageRecord>> + Send;

    /// `GetOutgoingQueue`: the queued messages in submit-time order (then id), each with its
    /// queue state against the current clock and its recipients.
    fn outgoing_queue(&self) -> impl Future<Output = MapiResult<Vec<QueueEntry>>> + Send;

    /// One queued message with its recipients, as [`Store::outgoing_queue`] lists it, or `None`
    /// when it is not (or no longer) queued: one message's question without reading the queue.
    fn queue_entry(
        &self,
        id: MessageId,
    ) -> impl Future<Output = MapiResult<Option<QueueEntry>>> + Send;

    /// How the status table names this store (its `PR_DISPLAY_NAME`), e.g. its path.
    fn display_name(&self) -> String;

    /// Now, on the clock the store's times follow: the time to pass as `now` to leases,
    /// outcomes and heartbeats, and to judge the times the store holds by. This machine's clock
    /// where one machine is all that reads the store; a shared store's own clock where several
    /// nodes do, so that their clocks' skew cannot make one take another's live lease.
    fn now(&self) -> FileTime {
        FileTime::now()
    }

    /// Counts of queued messages per route, for status rows.
    fn queue_counts(&self) -> impl Future<Output = MapiResult<Vec<QueueCounts>>> + Send;

    /// Atomically takes up to `limit` due messages for `owner` until `now + lease_for`, in queue
    /// order, and marks them `SUBMITFLAG_LOCKED`. Due: deferred delivery time reached, retry time
    /// reached (unless `filter.include_backoff`), and not leased — or leased with an expired
    /// lease, which is how a crashed spooler's messages come back.
    fn lease_due(
        &self,
        owner: &str,
        now: FileTime,
        lease_for: Duration,
        limit: u32,
        filter: LeaseFilter,
    ) -> impl Future<Output = MapiResult<Vec<LeasedMessage>>> + Send;

    /// Gives a lease back without recording an attempt (the spooler is shutting down, or chose
    /// not to send now). A no-op if `owner` does not hold the lease.
    fn release_lease(
        &self,
        id: MessageId,
        owner: &str,
    ) -> impl Future<Output = MapiResult<()>> + Send;

    /// Sets the transport a queued message leaves by (the spooler's routing). Errors:
    /// `MAPI_E_NOT_IN_QUEUE` if it is not queued.
    fn set_transport(
        &self,
        id: MessageId,
        transport: Option<&str>,
    ) -> impl Future<Output = MapiResult<()>> + Send;

    /// Records one delivery attempt, in one transaction: each listed recipient's new state
    /// (`PR_RESPONSIBILITY` true for delivered and failed ones); then, if no recipient is left
    /// pending or deferred, the message is finished (`FinishedMsg`): moved to Sent Items with
    /// `MSGFLAG_SUBMIT`/`MSGFLAG_UNSENT` cleared and `PR_PROVIDER_SUBMIT_TIME = now`, or deleted
    /// if `PR_DELETE_AFTER_SUBMIT`. Otherwise it stays queued with attempts + 1, the next attempt
    /// at the earliest deferred recipient's retry time and that recipient's error as last error.
    /// The lease is released either way.
    ///
    /// Errors: `MAPI_E_NOT_IN_QUEUE` (not queued), `MAPI_E_NO_ACCESS` (the lease is held by
    /// someone else or by nobody: this spooler lost it), `MAPI_E_INVALID_PARAMETER` (a row id the
    /// message does not have). On error nothing changes.
    ///
    /// Provided: one message through [`Store::record_outcomes`].
    fn record_outcome(
        &self,
        id: MessageId,
        owner: &str,
        outcomes: Vec<RecipientOutcome>,
        now: FileTime,
    ) -> impl Future<Output = MapiResult<OutcomeReport>> + Send {
        async move {
            self.record_outcomes(owner, vec![(id, outcomes)], now)
                .await?
                .pop()
                .unwrap_or_else(|| {
                    Err(MapiError::not_in_queue(format!(
                        "message {id} is not in the outgoing queue (unknown, aborted or already sent)"
                    )))
                })
        }
    }

    /// [`Store::record_outcome`] for several messages in one transaction (one commit for a
    /// whole batch: the spooler's group commit). Each message is checked and recorded on its
    /// own terms: one whose lease was lost gets its error in its place in the answer and
    /// leaves the others unaffected. The outer error is the store's (nothing was recorded).
    fn record_outcomes(
        &self,
        owner: &str,
        batch: Vec<(MessageId, Vec<RecipientOutcome>)>,
        now: FileTime,
    ) -> impl Future<Output = MapiResult<Vec<MapiResult<OutcomeReport>>>> + Send;

    /// [`Store::record_outcomes`] for attempts at messages leased with [`Store::lease_due`],
    /// each with the lease and recipients it was leased with. A backend may record a message
    /// still under that very lease (the same owner and end) from those recipients instead of
    /// reading them again: nothing but the recording of an attempt writes the recipients of a
    /// queued message, and a message still under the lease it was sent under has had none
    /// recorded since (recording ends the lease; any other lease taken since would have
    /// replaced it). A message whose lease is not that one is read and checked as
    /// [`Store::record_outcomes`] does, with the same errors.
    ///
    /// Provided: [`Store::record_outcomes`] (reads every message's recipients).
    fn record_leased_outcomes(
        &self,
        owner: &str,
        batch: Vec<LeasedOutcome>,
        now: FileTime,
    ) -> impl Future<Output = MapiResult<Vec<MapiResult<OutcomeReport>>>> + Send {
        async move {
            self.record_outcomes(
                owner,
                batch.into_iter().map(|a| (a.id, a.outcomes)).collect(),
                now,
            )
            .await
        }
    }

    /// `IMsgStore::AbortSubmit`: takes the message out of the queue; it stays in the Outbox,
    /// unsent, with `MSGFLAG_SUBMIT` cleared. Errors: `MAPI_E_NOT_IN_QUEUE` (unknown, or no longer
    /// queued, e.g. already sent), `MAPI_E_UNABLE_TO_ABORT` (a spooler holds a live lease on it).
    fn abort_submit(&self, id: MessageId) -> impl Future<Output = MapiResult<()>> + Send;

    /// Queues again a message taken out of the queue ([`Store::abort_submit`]): it is back in
    /// the queue, due now, with `MSGFLAG_SUBMIT` and `PR_CLIENT_SUBMIT_TIME` now; recipients
    /// already delivered or failed stay so (nobody gets it twice). Errors:
    /// `MAPI_E_NOT_FOUND` (no such message), `MAPI_E_INVALID_PARAMETER` (still queued, not in
    /// the Outbox, or no recipient left to send to).
    fn resubmit(&self, id: MessageId) -> impl Future<Output = MapiResult<()>> + Send;

    /// Moves a message that is not queued to Deleted Items. Errors: `MAPI_E_NOT_FOUND`;
    /// `MAPI_E_INVALID_PARAMETER` for a queued message (abort it first) or one already in
    /// Deleted Items.
    fn delete_message(&self, id: MessageId) -> impl Future<Output = MapiResult<()>> + Send;

    /// Stores a message a transport received, in the Inbox (durable after [`Store::sync`]). If `(transport,
    /// server_id)` was stored before (even if since deleted) nothing is stored and `None` is
    /// returned, so the transport can go on to delete or flag it on the server.
    fn deliver_inbound(
        &self,
        transport: &str,
        server_id: &str,
        message: InboundMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> impl Future<Output = MapiResult<Option<MessageRecord>>> + Send;

    /// Makes every message stored so far durable (fsynced). `deliver_inbound` and
    /// `add_message` commit without an fsync of their own so that a download costs one fsync per
    /// batch: a transport calls this before it deletes, flags or moves anything at its source.
    fn sync(&self) -> impl Future<Output = MapiResult<()>> + Send;

    /// Whether `(transport, server_id)` was already stored: lets a transport skip downloading it.
    fn has_inbound(
        &self,
        transport: &str,
        server_id: &str,
    ) -> impl Future<Output = MapiResult<bool>> + Send;

    /// Stores a batch of received messages in the Inbox in one transaction, durable after
    /// [`Store::sync`]: a download's small messages cost a few statements per batch instead of
    /// a dozen per message. Returns, in the batch's order, whether each was stored: `false` if
    /// `(transport, server_id)` was stored before (even if since deleted) or came earlier in the
    /// same batch. All or nothing: on an error none of the batch is stored.
    fn deliver_inbound_batch(
        &self,
        transport: &str,
        batch: Vec<InboundDelivery>,
    ) -> impl Future<Output = MapiResult<Vec<bool>>> + Send;

    /// Which of `server_ids` were already stored for `transport`: one question for a whole
    /// listing instead of one per message.
    fn inbound_known(
        &self,
        transport: &str,
        server_ids: &[String],
    ) -> impl Future<Output = MapiResult<HashSet<String>>> + Send;

    /// Stores a message the spooler writes itself (a non-delivery report into the Inbox), durably.
    fn add_message(
        &self,
        folder: Folder,
        message: InboundMessage,
        body: impl AsyncRead + Send + Unpin,
    ) -> impl Future<Output = MapiResult<MessageRecord>> + Send;

    /// A folder's messages, oldest first (by id).
    fn messages(
        &self,
        folder: Folder,
    ) -> impl Future<Output = MapiResult<Vec<MessageRecord>>> + Send;

    /// One message. Errors: `MAPI_E_NOT_FOUND` if there is no such message (any more).
    fn message(&self, id: MessageId) -> impl Future<Output = MapiResult<MessageRecord>> + Send;

    /// A message's recipients by row id. Errors: `MAPI_E_NOT_FOUND` if there is no such message.
    fn recipients(
        &self,
        id: MessageId,
    ) -> impl Future<Output = MapiResult<Vec<RecipientRecord>>> + Send;

    /// The recipients of each of `ids`, by row id, in one read (a listing's page, not one
    /// query a message). A message that does not exist (any more) is absent from the map.
    fn recipients_by_message(
        &self,
        ids: &[MessageId],
    ) -> impl Future<Output = MapiResult<HashMap<MessageId, Vec<RecipientRecord>>>> + Send;

    /// The messages (of any folder) with ids from `first` to `last`: at most `limit` of them,
    /// smallest first, and how many there are in all. One read of the primary key's range, for
    /// an entry-ID prefix ([`MessageId::prefix_range`]).
    fn message_ids_between(
        &self,
        first: MessageId,
        last: MessageId,
        limit: u32,
    ) -> impl Future<Output = MapiResult<(Vec<MessageId>, u64)>> + Send;

    /// The body's chunk `seq` (from 0), or `None` past the end. Use [`Store::open_body`].
    fn body_chunk(
        &self,
        id: MessageId,
        seq: u32,
    ) -> impl Future<Output = MapiResult<Option<Vec<u8>>>> + Send;

    /// How many chunks the body has. Errors: `MAPI_E_NOT_FOUND` if there is no such message.
    fn body_chunk_count(&self, id: MessageId) -> impl Future<Output = MapiResult<u32>> + Send;

    /// Opens the raw RFC 5322 body for reading chunk by chunk.
    fn open_body(
        &self,
        id: MessageId,
    ) -> impl Future<Output = MapiResult<BodyReader<'_, Self>>> + Send
    where
        Self: Sized,
    {
        async move {
            let count = self.body_chunk_count(id).await?;
            Ok(BodyReader {
                store: self,
                id,
                next: 0,
                count,
                first: None,
            })
        }
    }

    /// The whole body in memory: for small messages and tests; stream large ones with
    /// [`Store::open_body`].
    fn read_body_to_vec(&self, id: MessageId) -> impl Future<Output = MapiResult<Vec<u8>>> + Send
    where
        Self: Sized,
    {
        async move {
            let mut reader = self.open_body(id).await?;
            let mut out = Vec::new();
            while let Some(chunk) = reader.next_chunk().await? {
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        }
    }

    /// Registers a spooler node (see `node.rs` for the cluster's leases): its row, as a first
    /// [`Store::heartbeat`], after forgetting the rows of earlier instances of the same name on
    /// the same host that stopped cleanly, and of any node gone for a week. A node that died
    /// stays listed (dead) until then: a crash should be seen.
    fn register_node(
        &self,
        node: &NodeInfo,
        now: FileTime,
        lease_for: Duration,
    ) -> impl Future<Output = MapiResult<Heartbeat>> + Send;

    /// One heartbeat of `node`, in one transaction: its row says it is alive until
    /// `now + lease_for` with `status`, and its leases on the messages `held` (those it is
    /// still working on) are extended to that time (a lease being recorded right now is passed
    /// over, not waited for: recording ends it). A lease it owns on a message not in `held`
    /// is left to expire. Also
    /// counts the due queued messages whose lease expired without being given back
    /// ([`Heartbeat::orphaned`]), which the caller flushes to take over.
    fn heartbeat(
        &self,
        node: &NodeInfo,
        status: &str,
        now: FileTime,
        lease_for: Duration,
        held: &[MessageId],
    ) -> impl Future<Output = MapiResult<Heartbeat>> + Send;

    /// Marks the node stopped (a clean shutdown; it has given its leases back).
    fn node_stopped(
        &self,
        instance: &str,
        now: FileTime,
    ) -> impl Future<Output = MapiResult<()>> + Send;

    /// Every registered node, alive or not, by name then start time.
    fn nodes(&self) -> impl Future<Output = MapiResult<Vec<NodeRecord>>> + Send;

    /// Sets one sync state value unless it is set already, durably; true if this call set it.
    /// Two nodes that both decide to do something once (a delay notice) both ask, and exactly
    /// one is told yes.
    fn claim_sync_state(
        &self,
        transport: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = MapiResult<bool>> + Send;

    /// Starts forwarding the store's queue notifications to `wake`: on PostgreSQL a task that
    /// `LISTEN`s on [`QUEUE_CHANNEL`], where every submit on any node and every flush asked of
    /// another node (`signal_flush`) notifies; it reconnects after losing the server and then
    /// wakes once for what it may have missed. `me` is the caller's node instance: its own
    /// flush signals are not echoed back. `None` where the backend has no notifications
    /// (SQLite: one machine, whose daemon hears submits through its socket or its schedule).
    fn watch_queue(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        me: &str,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let _ = (wake, me);
        None
    }

    /// Tells the other nodes watching the queue ([`Store::watch_queue`]) to flush its upload
    /// side now: `FlushQueues` on one node moves the whole shared queue with every node's help.
    /// A no-op where the backend has no notifications.
    fn signal_flush(&self, me: &str) -> impl Future<Output = MapiResult<()>> + Send {
        let _ = me;
        async { Ok(()) }
    }

    /// Inbound sync state (IMAP UIDVALIDITY and last UID, ...) for a transport, by key.
    fn get_sync_state(
        &self,
        transport: &str,
        key: &str,
    ) -> impl Future<Output = MapiResult<Option<String>>> + Send;

    /// Sets (replaces) one inbound sync state value, durably.
    fn set_sync_state(
        &self,
        transport: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = MapiResult<()>> + Send;

    /// Sets (replaces) one inbound sync state value without an fsync of its own: it is durable
    /// with the next [`Store::sync`] (or any durable commit). For state whose loss after a power
    /// cut costs only a second look (IMAP's last UID: the messages above an older one are listed
    /// again, and the store skips them by server id).
    fn set_sync_state_relaxed(
        &self,
        transport: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = MapiResult<()>> + Send;
}

/// Reads a stored body one chunk at a time, so a large message is never held whole.
pub struct BodyReader<'s, S: Store + ?Sized> {
    store: &'s S,
    id: MessageId,
    next: u32,
    count: u32,
    /// Chunk 0 when the caller already has it (a prefetched body).
    first: Option<Vec<u8>>,
}

impl<'s, S: Store + ?Sized> BodyReader<'s, S> {
    /// The body of a leased message: from the body the lease brought (taken out of it, not
    /// copied) when there is one, else from the store chunk by chunk.
    pub fn of_leased(store: &'s S, message: &mut LeasedMessage) -> BodyReader<'s, S> {
        BodyReader {
            store,
            id: message.message.id,
            next: 0,
            count: message.body_chunks,
            first: message.prefetched_body.take(),
        }
    }

    /// Back to the first chunk (read from the store again if the prefetched one was handed out).
    pub fn rewind(&mut self) {
        self.next = 0;
    }

    /// The next chunk (at most [`BODY_CHUNK_SIZE`] bytes), or `None` at the end. Errors:
    /// `MAPI_E_OBJECT_DELETED` if the message was deleted while being read.
    pub async fn next_chunk(&mut self) -> MapiResult<Option<Vec<u8>>> {
        if self.next >= self.count {
            return Ok(None);
        }
        if self.next == 0
            && let Some(first) = self.first.take()
        {
            self.next = 1;
            return Ok(Some(first));
        }
        match self.store.body_chunk(self.id, self.next).await? {
            Some(chunk) => {
                self.next += 1;
                Ok(Some(chunk))
            }
            None => Err(MapiError::new(
                MapiCode::ObjectDeleted,
                format!(
                    "message {} was deleted while its body was being read",
                    self.id
                ),
            )),
        }
    }
}

fn text(s: &str) -> PropValue {
    PropValue::Unicode(s.to_owned())
}

fn set_opt_text(row: &mut Row, tag: PropTag, value: &Option<String>) {
    if let Some(v) = value {
        row.set(tag, text(v));
    }
}

fn set_opt_time(row: &mut Row, tag: PropTag, value: Option<FileTime>) {
    if let Some(t) = value {
        row.set(tag, PropValue::SysTime(t));
    }
}

/// `PR_MESSAGE_SIZE` is a `PT_LONG`; MAPI caps it rather than wrapping.
fn size_long(size: u64) -> i32 {
    i32::try_from(size).unwrap_or(i32::MAX)
}

fn count_long(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

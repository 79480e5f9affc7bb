//! The store as an inbound transport's destination, with progress in the status row.

use std::collections::HashSet;

use mapi::tag::{PR_REMOTE_PROGRESS, PR_REMOTE_PROGRESS_TEXT, PR_STATUS_STRING};
use mapi::{FileTime, MapiResult, Prop, PropValue};
use tokio::io::AsyncRead;

use crate::message::HeaderSummary;
use crate::status::{StatusBoard, StatusKind};
use crate::store::{InboundDelivery, InboundMessage, NewRecipient, Store};
use crate::transport::{Downloaded, InboundSink};

pub(super) struct StoreSink<'a, S: Store> {
    pub store: &'a S,
    pub transport: &'a str,
    pub board: &'a StatusBoard,
    pub kind: &'a StatusKind,
    /// New messages stored so far in this download, counted here so a download that fails
    /// part-way still reports what it stored.
    pub stored: std::sync::atomic::AtomicUsize,
}

impl<S: Store> StoreSink<'_, S> {
    fn count(&self, n: usize) {
        self.stored
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<S: Store> InboundSink for StoreSink<'_, S> {
    async fn already_have(&self, server_id: &str) -> MapiResult<bool> {
        self.store.has_inbound(self.transport, server_id).await
    }

    async fn known(&self, server_ids: &[String]) -> MapiResult<HashSet<String>> {
        self.store.inbound_known(self.transport, server_ids).await
    }

    async fn deliver_batch(&self, batch: Vec<Downloaded>) -> MapiResult<Vec<bool>> {
        let logged: Vec<(String, HeaderSummary)> = batch
            .iter()
            .map(|d| (d.server_id.clone(), d.summary.clone()))
            .collect();
        let batch = batch
            .into_iter()
            .map(|d| InboundDelivery {
                message: inbound_message(&d.summary),
                server_id: d.server_id,
                body: d.body,
            })
            .collect();
        let stored = self
            .store
            .deliver_inbound_batch(self.transport, batch)
            .await?;
        self.count(stored.iter().filter(|s| **s).count());
        for ((server_id, summary), _) in logged.iter().zip(&stored).filter(|(_, s)| **s) {
            log_received(self.transport, server_id, summary);
        }
        Ok(stored)
    }

    async fn deliver(
        &self,
        server_id: &str,
        summary: &HeaderSummary,
        _size: u64,
        body: impl AsyncRead + Unpin + Send,
    ) -> MapiResult<bool> {
        let message = inbound_message(summary);
        let stored = self
            .store
            .deliver_inbound(self.transport, server_id, message, body)
            .await?
            .is_some();
        self.count(usize::from(stored));
        if stored {
            log_received(self.transport, server_id, summary);
        }
        Ok(stored)
    }

    async fn get_state(&self, key: &str) -> MapiResult<Option<String>> {
        self.store.get_sync_state(self.transport, key).await
    }

    async fn set_state(&self, key: &str, value: &str) -> MapiResult<()> {
        // Sealed by the transport's next `sync` (the trait's contract): one fsync per batch.
        self.store
            .set_sync_state_relaxed(self.transport, key, value)
            .await
    }

    async fn sync(&self) -> MapiResult<()> {
        self.store.sync().await
    }

    fn progress(&self, done: usize, total: usize) {
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        self.board.update(
            self.kind,
            vec![
                Prop::new(
                    PR_STATUS_STRING,
                    PropValue::Unicode(format!("Receiving {done} of {total}")),
                ),
                Prop::new(PR_REMOTE_PROGRESS, PropValue::Long(percent as i32)),
                Prop::new(
                    PR_REMOTE_PROGRESS_TEXT,
                    PropValue::Unicode(format!("{done} of {total}")),
                ),
            ],
        );
    }
}

/// The mail log's line for a message stored in the Inbox (see `Spooler::log_outcomes`).
fn log_received(transport: &str, server_id: &str, summary: &HeaderSummary) {
    let from = summary
        .from
        .as_ref()
        .map(|m| m.address.as_str())
        .unwrap_or_default();
    let to: Vec<&str> = summary
        .recipients
        .iter()
        .map(|r| r.mailbox.address.as_str())
        .collect();
    tracing::info!(
        target: "mapispool::mail",
        transport = %transport,
        server_id = %server_id,
        message_id = %summary.message_id.as_deref().unwrap_or_default(),
        from = %from,
        to = %to.join(","),
        status = %"received",
        "received"
    );
}

/// The properties of a received message, from its header summary.
fn inbound_message(summary: &HeaderSummary) -> InboundMessage {
    InboundMessage {
        subject: summary.subject.clone().unwrap_or_default(),
        sender_name: summary.from.as_ref().map(|m| m.display().to_string()),
        sender_address: summary.from.as_ref().map(|m| m.address.clone()),
        internet_message_id: summary.message_id.clone(),
        client_submit_time: summary.date,
        delivery_time: FileTime::now(),
        recipients: summary
            .recipients
            .iter()
            .map(|r| NewRecipient {
                display_name: r.mailbox.display().to_string(),
                address: r.mailbox.address.clone(),
                recipient_type: r.recipient_type,
            })
            .collect(),
        ..InboundMessage::default()
    }
}

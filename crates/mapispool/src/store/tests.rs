use std::time::Duration;

use mapi::constants::*;
use mapi::tag::*;
use mapi::{FileTime, MapiCode, PropValue};

use super::*;

const LEASE: Duration = Duration::from_secs(300);

/// Something a test keeps until it ends (a temporary directory).
type Keep = Box<dyn std::any::Any + Send>;

async fn open_sqlite() -> (Keep, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A parent that does not exist yet: open creates it.
    let store = SqliteStore::open(dir.path().join("nested/dir/store.db"))
        .await
        .expect("open");
    (Box::new(dir), store)
}

/// What the generic tests need beyond [`Store`].
trait TestStore: Store + Clone + 'static {
    /// Deletes a message behind the store's back, as a user's SQL would (no store method
    /// deletes one).
    fn delete_behind(&self, id: MessageId) -> impl Future<Output = ()> + Send;
}

impl TestStore for SqliteStore {
    async fn delete_behind(&self, id: MessageId) {
        let other = sqlx::SqlitePool::connect(&format!("sqlite://{}", self.path().display()))
            .await
            .expect("second connection");
        sqlx::query("DELETE FROM messages WHERE id = ?")
            .bind(id.0)
            .execute(&other)
            .await
            .expect("delete");
        other.close().await;
    }
}

impl TestStore for PgStore {
    async fn delete_behind(&self, id: MessageId) {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(id.0)
            .execute(self.pool())
            .await
            .expect("delete");
    }
}

/// A fresh database on the test process's private PostgreSQL (see `postgres::testing`).
async fn open_postgres() -> (Keep, PgStore) {
    let url = crate::store::postgres::testing::fresh_database().await;
    let store = PgStore::open(&url, None).await.expect("open");
    (Box::new(()), store)
}

fn message(subject: &str, to: &[&str]) -> NewMessage {
    NewMessage {
        subject: subject.into(),
        sender_name: Some("Me".into()),
        sender_address: Some("me@example.com".into()),
        recipients: to.iter().map(|a| NewRecipient::to(*a)).collect(),
        ..NewMessage::default()
    }
}

async fn submit<S: Store>(store: &S, subject: &str, to: &[&str]) -> MessageRecord {
    let body = format!("Subject: {subject}\r\n\r\nhello\r\n");
    store
        .submit(message(subject, to), body.as_bytes())
        .await
        .expect("submit")
}

fn later(secs: i64) -> FileTime {
    FileTime::from_unix_seconds(FileTime::now().unix_seconds() + secs)
}

/// The suite, once per backend: `sqlite::NAME` and `postgres::NAME` run the generic `NAME`
/// against a fresh store of each. Multi-threaded, so a test that spawns tasks runs them in
/// parallel as the daemon would.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_keep, store) = super::open_sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_keep, store) = super::open_postgres().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    submit_queues_in_order_and_all_delivered_moves_to_sent_items,
    delete_after_submit_deletes_when_done,
    deferred_recipient_stays_queued_until_retry_time_unless_forced,
    failed_recipient_is_reported_and_message_finishes,
    outcome_needs_the_lease_and_known_rows,
    no_recipients_is_mapi_e_no_recipients,
    abort_submit,
    an_aborted_message_can_be_resubmitted_or_deleted,
    expired_lease_is_taken_again,
    deferred_delivery_time_is_honoured_even_when_forced,
    lease_filter_by_transport_and_id,
    inbound_dedupe_and_sync_state,
    a_batch_of_received_messages_is_stored_at_once_and_each_only_once,
    a_batch_with_a_bad_recipient_stores_nothing,
    large_body_round_trips_chunk_by_chunk,
    unknown_message_is_not_found,
    queue_entry_is_the_queue_row_of_one_message,
    queue_counts_agree_with_the_queue_in_every_state,
    record_outcomes_records_a_batch_and_isolates_bad_entries,
    an_attempt_is_recorded_from_its_lease_only_while_that_lease_holds,
    small_bodies_come_with_the_lease,
    concurrent_submits_are_group_committed_each_whole_and_queued,
    two_nodes_that_see_the_same_failure_report_it_once,
    a_live_nodes_heartbeat_keeps_its_leases_and_a_dead_nodes_are_taken_over,
    nodes_register_list_stop_and_forget_their_old_instances,
    a_heartbeat_extends_only_the_leases_the_node_still_works_on,
    a_once_only_claim_is_granted_once,
    a_folder_listing_names_every_messages_recipients,
    an_entry_id_prefix_is_a_range_of_ids,
);

async fn submit_queues_in_order_and_all_delivered_moves_to_sent_items<S: TestStore>(store: S) {
    let a = submit(&store, "first", &["a@example.org", "b@example.org"]).await;
    let b = submit(&store, "second", &["c@example.org"]).await;
    assert_eq!(a.folder, Folder::Outbox);
    assert_eq!(
        a.message_flags,
        MSGFLAG_SUBMIT | MSGFLAG_UNSENT | MSGFLAG_FROMME
    );
    assert!(a.client_submit_time.is_some());
    let recips = store.recipients(a.id).await.expect("recipients");
    assert!(
        recips
            .iter()
            .all(|r| !r.responsibility && r.addrtype == "SMTP")
    );

    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(
        queue.iter().map(|q| q.message.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(queue[0].state, QueueState::Queued);
    let row = queue[0].to_row();
    assert_eq!(
        row.get(PR_DISPLAY_TO),
        Some(&PropValue::Unicode("a@example.org; b@example.org".into()))
    );
    assert_eq!(
        row.get(PR_ENTRYID),
        Some(&PropValue::Binary(a.entry_id().as_bytes().to_vec()))
    );
    assert_eq!(
        row.get(PR_MSP_QUEUE_STATE),
        Some(&PropValue::Unicode("queued".into()))
    );

    let leased = store
        .lease_due("sp1", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].message.id, a.id);
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue[0].state, QueueState::Sending);
    assert_eq!(
        queue[0].submit_flags() & SUBMITFLAG_LOCKED,
        SUBMITFLAG_LOCKED
    );
    // Leased messages are not handed out twice.
    let again = store
        .lease_due("sp2", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert!(again.is_empty());

    let outcomes = leased[0]
        .open_recipients()
        .map(|r| RecipientOutcome {
            row_id: r.row_id,
            result: DeliveryResult::Delivered,
        })
        .collect();
    let report = store
        .record_outcome(a.id, "sp1", outcomes, FileTime::now())
        .await
        .expect("outcome");
    assert_eq!(report.disposition, MessageDisposition::MovedToSentItems);
    assert!(report.failed.is_empty());
    let sent = store.messages(Folder::SentItems).await.expect("sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, a.id);
    assert_eq!(sent[0].message_flags & (MSGFLAG_UNSENT | MSGFLAG_SUBMIT), 0);
    assert!(sent[0].provider_submit_time.is_some());
    let recips = store.recipients(a.id).await.expect("recipients");
    assert!(
        recips
            .iter()
            .all(|r| r.responsibility && r.state == RecipientState::Delivered)
    );
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message.id, b.id);
}

async fn delete_after_submit_deletes_when_done<S: TestStore>(store: S) {
    let mut m = message("gone", &["a@example.org"]);
    m.delete_after_submit = true;
    let rec = store.submit(m, &b"x"[..]).await.expect("submit");
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    let report = store
        .record_outcome(
            rec.id,
            "sp",
            vec![RecipientOutcome {
                row_id: 0,
                result: DeliveryResult::Delivered,
            }],
            FileTime::now(),
        )
        .await
        .expect("outcome");
    assert_eq!(report.disposition, MessageDisposition::Deleted);
    let e = store.message(rec.id).await.expect_err("deleted");
    assert_eq!(e.code, MapiCode::NotFound);
    assert!(
        store
            .messages(Folder::SentItems)
            .await
            .expect("sent")
            .is_empty()
    );
}

async fn deferred_recipient_stays_queued_until_retry_time_unless_forced<S: TestStore>(store: S) {
    let rec = submit(&store, "retry", &["ok@example.org", "slow@example.org"]).await;
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    let retry_at = later(600);
    let report = store
        .record_outcome(
            rec.id,
            "sp",
            vec![
                RecipientOutcome {
                    row_id: 0,
                    result: DeliveryResult::Delivered,
                },
                RecipientOutcome {
                    row_id: 1,
                    result: DeliveryResult::Deferred {
                        error: "451 4.7.1 greylisted".into(),
                        retry_at,
                    },
                },
            ],
            FileTime::now(),
        )
        .await
        .expect("outcome");
    assert_eq!(
        report.disposition,
        MessageDisposition::StillQueued {
            next_attempt_at: Some(retry_at)
        }
    );
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue[0].state, QueueState::Deferred);
    assert_eq!(queue[0].attempts, 1);
    assert_eq!(queue[0].last_error.as_deref(), Some("451 4.7.1 greylisted"));
    assert_eq!(queue[0].next_attempt_at, Some(retry_at));
    assert_eq!(queue[0].submit_flags() & SUBMITFLAG_LOCKED, 0);

    let none = store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert!(none.is_empty(), "not due before its retry time");
    let after = store
        .lease_due("sp", later(601), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(after.len(), 1);
    // Only the deferred recipient is left to send to.
    let open: Vec<u32> = after[0].open_recipients().map(|r| r.row_id).collect();
    assert_eq!(open, vec![1]);
    store.release_lease(rec.id, "sp").await.expect("release");

    let forced = store
        .lease_due(
            "sp",
            FileTime::now(),
            LEASE,
            10,
            LeaseFilter {
                include_backoff: true,
                ..LeaseFilter::default()
            },
        )
        .await
        .expect("lease");
    assert_eq!(forced.len(), 1);
}

async fn failed_recipient_is_reported_and_message_finishes<S: TestStore>(store: S) {
    let rec = submit(&store, "bounce", &["ok@example.org", "nobody@example.org"]).await;
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    let report = store
        .record_outcome(
            rec.id,
            "sp",
            vec![
                RecipientOutcome {
                    row_id: 0,
                    result: DeliveryResult::Delivered,
                },
                RecipientOutcome {
                    row_id: 1,
                    result: DeliveryResult::Failed {
                        error: "550 5.1.1 no such user".into(),
                        reason_code: MAPI_REASON_TRANSFER_FAILED,
                        diag_code: MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN,
                    },
                },
            ],
            FileTime::now(),
        )
        .await
        .expect("outcome");
    assert_eq!(report.disposition, MessageDisposition::MovedToSentItems);
    assert_eq!(report.failed.len(), 1);
    let f = &report.failed[0];
    assert_eq!(f.address, "nobody@example.org");
    assert_eq!(f.state, RecipientState::Failed);
    assert!(f.responsibility);
    assert_eq!(f.last_error.as_deref(), Some("550 5.1.1 no such user"));
    assert_eq!(f.ndr_diag_code, Some(MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN));
    assert_eq!(
        f.to_row().get(PR_NDR_DIAG_CODE),
        Some(&PropValue::Long(MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN))
    );

    // The spooler's report goes into the Inbox.
    let ndr = store
        .add_message(
            Folder::Inbox,
            InboundMessage {
                message_class: "REPORT.IPM.Note.NDR".into(),
                subject: "Undeliverable: bounce".into(),
                ndr_reason_code: Some(MAPI_REASON_TRANSFER_FAILED),
                ndr_diag_code: Some(MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN),
                ..InboundMessage::default()
            },
            &b"report"[..],
        )
        .await
        .expect("ndr");
    assert_eq!(ndr.folder, Folder::Inbox);
    assert_eq!(
        ndr.to_row().get(PR_NDR_REASON_CODE),
        Some(&PropValue::Long(MAPI_REASON_TRANSFER_FAILED))
    );
}

async fn outcome_needs_the_lease_and_known_rows<S: TestStore>(store: S) {
    let rec = submit(&store, "x", &["a@example.org"]).await;
    let delivered = || {
        vec![RecipientOutcome {
            row_id: 0,
            result: DeliveryResult::Delivered,
        }]
    };
    let e = store
        .record_outcome(rec.id, "sp", delivered(), FileTime::now())
        .await
        .expect_err("not leased");
    assert_eq!(e.code, MapiCode::NoAccess);
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    let e = store
        .record_outcome(rec.id, "other", delivered(), FileTime::now())
        .await
        .expect_err("someone else's lease");
    assert_eq!(e.code, MapiCode::NoAccess);
    let e = store
        .record_outcome(
            rec.id,
            "sp",
            vec![RecipientOutcome {
                row_id: 7,
                result: DeliveryResult::Delivered,
            }],
            FileTime::now(),
        )
        .await
        .expect_err("no such row");
    assert_eq!(e.code, MapiCode::InvalidParameter);
    let e = store
        .record_outcome(MessageId(9999), "sp", delivered(), FileTime::now())
        .await
        .expect_err("unknown");
    assert_eq!(e.code, MapiCode::NotInQueue);
}

async fn no_recipients_is_mapi_e_no_recipients<S: TestStore>(store: S) {
    let e = store
        .submit(message("nobody", &[]), &b"x"[..])
        .await
        .expect_err("no recipients");
    assert_eq!(e.code, MapiCode::NoRecipients);
    assert!(store.outgoing_queue().await.expect("queue").is_empty());
    assert!(
        store
            .messages(Folder::Outbox)
            .await
            .expect("outbox")
            .is_empty()
    );
}

async fn abort_submit<S: TestStore>(store: S) {
    let e = store
        .abort_submit(MessageId(42))
        .await
        .expect_err("unknown");
    assert_eq!(e.code, MapiCode::NotInQueue);

    let rec = submit(&store, "abort me", &["a@example.org"]).await;
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    let e = store.abort_submit(rec.id).await.expect_err("leased");
    assert_eq!(e.code, MapiCode::UnableToAbort);
    store.release_lease(rec.id, "sp").await.expect("release");
    store.abort_submit(rec.id).await.expect("abort");
    let m = store.message(rec.id).await.expect("still there");
    assert_eq!(m.folder, Folder::Outbox);
    assert_eq!(m.message_flags & MSGFLAG_SUBMIT, 0);
    assert_eq!(m.message_flags & MSGFLAG_UNSENT, MSGFLAG_UNSENT);
    assert!(store.outgoing_queue().await.expect("queue").is_empty());
    let e = store.abort_submit(rec.id).await.expect_err("already out");
    assert_eq!(e.code, MapiCode::NotInQueue);

    // A sent message is not in the queue either.
    let sent = submit(&store, "sent", &["a@example.org"]).await;
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    store
        .record_outcome(
            sent.id,
            "sp",
            vec![RecipientOutcome {
                row_id: 0,
                result: DeliveryResult::Delivered,
            }],
            FileTime::now(),
        )
        .await
        .expect("outcome");
    let e = store.abort_submit(sent.id).await.expect_err("sent");
    assert_eq!(e.code, MapiCode::NotInQueue);
}

async fn an_aborted_message_can_be_resubmitted_or_deleted<S: TestStore>(store: S) {
    let e = store.resubmit(MessageId(42)).await.expect_err("unknown");
    assert_eq!(e.code, MapiCode::NotFound);
    let rec = submit(&store, "again", &["a@example.org", "b@example.org"]).await;
    let e = store.resubmit(rec.id).await.expect_err("still queued");
    assert_eq!(e.code, MapiCode::InvalidParameter);
    let e = store.delete_message(rec.id).await.expect_err("queued");
    assert_eq!(e.code, MapiCode::InvalidParameter);
    assert!(e.cause.contains("abort"), "{}", e.cause);

    // One recipient delivered, one deferred; then taken out of the queue and put back.
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    store
        .record_outcome(
            rec.id,
            "sp",
            vec![
                RecipientOutcome {
                    row_id: 0,
                    result: DeliveryResult::Delivered,
                },
                RecipientOutcome {
                    row_id: 1,
                    result: DeliveryResult::Deferred {
                        error: "451 later".into(),
                        retry_at: later(3600),
                    },
                },
            ],
            FileTime::now(),
        )
        .await
        .expect("outcome");
    store.abort_submit(rec.id).await.expect("abort");
    store.resubmit(rec.id).await.expect("resubmit");
    let m = store.message(rec.id).await.expect("there");
    assert_eq!(m.message_flags & MSGFLAG_SUBMIT, MSGFLAG_SUBMIT);
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].state, QueueState::Queued, "due now");
    // Only the recipient still open is leased to be sent to.
    let leased = store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    let open: Vec<&str> = leased[0]
        .open_recipients()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(open, ["b@example.org"]);
    store.release_lease(rec.id, "sp").await.expect("release");

    // Aborted again, it can go to Deleted Items, once; there it cannot be resubmitted.
    store.abort_submit(rec.id).await.expect("abort");
    store.delete_message(rec.id).await.expect("delete");
    assert_eq!(
        store.message(rec.id).await.expect("there").folder,
        Folder::DeletedItems
    );
    assert!(store.outgoing_queue().await.expect("queue").is_empty());
    let e = store.delete_message(rec.id).await.expect_err("already");
    assert_eq!(e.code, MapiCode::InvalidParameter);
    let e = store.resubmit(rec.id).await.expect_err("not in the Outbox");
    assert!(e.cause.contains("Deleted Items"), "{}", e.cause);
}

async fn expired_lease_is_taken_again<S: TestStore>(store: S) {
    let rec = submit(&store, "crash", &["a@example.org"]).await;
    // A spooler leased it an hour ago for a minute, then crashed.
    let long_ago = later(-3600);
    let first = store
        .lease_due(
            "dead",
            long_ago,
            Duration::from_secs(60),
            10,
            LeaseFilter::default(),
        )
        .await
        .expect("lease");
    assert_eq!(first.len(), 1);
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(
        queue[0].state,
        QueueState::Queued,
        "an expired lease is not live"
    );
    // An expired lease does not stop AbortSubmit... but here another spooler takes it first.
    let second = store
        .lease_due("alive", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message.id, rec.id);
    assert_eq!(second[0].lease.owner, "alive");
    let e = store
        .record_outcome(rec.id, "dead", vec![], FileTime::now())
        .await
        .expect_err("lost lease");
    assert_eq!(e.code, MapiCode::NoAccess);
}

async fn deferred_delivery_time_is_honoured_even_when_forced<S: TestStore>(store: S) {
    let mut m = message("tomorrow", &["a@example.org"]);
    m.deferred_delivery_time = Some(later(86_400));
    let rec = store.submit(m, &b"x"[..]).await.expect("submit");
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue[0].state, QueueState::Scheduled);
    assert!(queue[0].to_row().get(PR_DEFERRED_DELIVERY_TIME).is_some());
    let forced = LeaseFilter {
        include_backoff: true,
        ..LeaseFilter::default()
    };
    let none = store
        .lease_due("sp", FileTime::now(), LEASE, 10, forced.clone())
        .await
        .expect("lease");
    assert!(none.is_empty());
    let due = store
        .lease_due("sp", later(86_401), LEASE, 10, forced)
        .await
        .expect("lease");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].message.id, rec.id);
}

async fn lease_filter_by_transport_and_id<S: TestStore>(store: S) {
    let mut m = message("work", &["a@example.org"]);
    m.transport = Some("work".into());
    let work = store.submit(m, &b"x"[..]).await.expect("submit");
    let unrouted = submit(&store, "unrouted", &["b@example.org"]).await;
    let counts = store.queue_counts().await.expect("counts");
    assert_eq!(counts.iter().map(QueueCounts::total).sum::<u32>(), 2);
    assert!(
        counts
            .iter()
            .any(|c| c.transport.as_deref() == Some("work") && c.queued == 1)
    );

    let only_work = LeaseFilter {
        transport: Some("home".into()),
        ..LeaseFilter::default()
    };
    let got = store
        .lease_due("sp", FileTime::now(), LEASE, 10, only_work)
        .await
        .expect("lease");
    assert!(got.is_empty());
    store
        .set_transport(unrouted.id, Some("home"))
        .await
        .expect("route");
    let got = store
        .lease_due(
            "sp",
            FileTime::now(),
            LEASE,
            10,
            LeaseFilter {
                only: Some(work.id),
                ..LeaseFilter::default()
            },
        )
        .await
        .expect("lease");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.id, work.id);
    let got = store
        .lease_due(
            "sp",
            FileTime::now(),
            LEASE,
            10,
            LeaseFilter {
                transport: Some("home".into()),
                ..LeaseFilter::default()
            },
        )
        .await
        .expect("lease");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.id, unrouted.id);
}

async fn inbound_dedupe_and_sync_state<S: TestStore>(store: S) {
    assert!(!store.has_inbound("work", "42:1").await.expect("has"));
    let props = InboundMessage {
        subject: "hello".into(),
        sender_address: Some("them@example.org".into()),
        internet_message_id: Some("<1@example.org>".into()),
        ..InboundMessage::default()
    };
    let first = store
        .deliver_inbound(
            "work",
            "42:1",
            props.clone(),
            &b"Subject: hello\r\n\r\nhi"[..],
        )
        .await
        .expect("deliver")
        .expect("stored");
    assert_eq!(first.folder, Folder::Inbox);
    assert_eq!(first.transport.as_deref(), Some("work"));
    assert_eq!(first.server_id.as_deref(), Some("42:1"));
    assert!(store.has_inbound("work", "42:1").await.expect("has"));
    let again = store
        .deliver_inbound("work", "42:1", props.clone(), &b"again"[..])
        .await
        .expect("deliver");
    assert!(again.is_none());
    // Another transport's "42:1" is another message.
    assert!(
        store
            .deliver_inbound("home", "42:1", props.clone(), &b"x"[..])
            .await
            .expect("deliver")
            .is_some()
    );
    // Deleting the copy does not make it come back.
    // (No store method deletes a message; a user's SQL does it here.)
    store.delete_behind(first.id).await;
    assert!(
        store
            .deliver_inbound("work", "42:1", props, &b"x"[..])
            .await
            .expect("deliver")
            .is_none()
    );
    assert_eq!(store.messages(Folder::Inbox).await.expect("inbox").len(), 1);

    assert_eq!(
        store
            .get_sync_state("work", "uidvalidity")
            .await
            .expect("get"),
        None
    );
    store
        .set_sync_state("work", "uidvalidity", "17")
        .await
        .expect("set");
    store
        .set_sync_state("work", "uidvalidity", "18")
        .await
        .expect("set");
    assert_eq!(
        store
            .get_sync_state("work", "uidvalidity")
            .await
            .expect("get")
            .as_deref(),
        Some("18")
    );
}

async fn a_batch_of_received_messages_is_stored_at_once_and_each_only_once<S: TestStore>(store: S) {
    let props = |i: usize| InboundMessage {
        subject: format!("batch {i}"),
        sender_address: Some("them@example.org".into()),
        recipients: vec![
            NewRecipient::to("me@example.com"),
            NewRecipient {
                recipient_type: MAPI_CC,
                ..NewRecipient::to("cc@example.com")
            },
        ],
        ..InboundMessage::default()
    };
    // Stored before, one at a time: the batch must not take it again.
    store
        .deliver_inbound("work", "7:2", props(2), &b"old"[..])
        .await
        .expect("deliver")
        .expect("stored");
    // Bodies around the chunk size, empty, and one spread over several chunks.
    let big: Vec<u8> = (0..2 * BODY_CHUNK_SIZE + 5)
        .map(|i| (i % 251) as u8)
        .collect();
    let bodies: Vec<Vec<u8>> = vec![
        b"Subject: one\r\n\r\nhi\r\n".to_vec(),
        b"Subject: two\r\n\r\nagain".to_vec(),
        Vec::new(),
        vec![b'x'; BODY_CHUNK_SIZE],
        big.clone(),
        b"the same server id twice in one batch".to_vec(),
    ];
    let ids = ["7:1", "7:2", "7:3", "7:4", "7:5", "7:1"];
    let batch: Vec<InboundDelivery> = ids
        .iter()
        .zip(&bodies)
        .enumerate()
        .map(|(i, (id, body))| InboundDelivery {
            server_id: id.to_string(),
            message: props(i),
            body: body.clone(),
        })
        .collect();
    let known = store
        .inbound_known(
            "work",
            &ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .await
        .expect("known");
    assert_eq!(known, HashSet::from(["7:2".to_string()]));
    let stored = store
        .deliver_inbound_batch("work", batch.clone())
        .await
        .expect("batch");
    assert_eq!(stored, vec![true, false, true, true, true, false]);

    let inbox = store.messages(Folder::Inbox).await.expect("inbox");
    assert_eq!(inbox.len(), 5, "the old one and four new");
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| stored[*i]) {
        let m = inbox
            .iter()
            .find(|m| m.server_id.as_deref() == Some(*id))
            .expect("stored under its server id");
        assert_eq!(m.subject, format!("batch {i}"));
        assert_eq!(m.transport.as_deref(), Some("work"));
        assert_eq!(m.message_size, bodies[i].len() as u64);
        assert!(store.read_body_to_vec(m.id).await.expect("body") == bodies[i]);
        let recipients = store.recipients(m.id).await.expect("recipients");
        assert_eq!(recipients.len(), 2);
        assert_eq!(recipients[1].recipient_type, MAPI_CC);
    }
    assert!(store.has_inbound("work", "7:5").await.expect("has"));
    // Again: nothing new, and other transports' ids are their own.
    let again = store
        .deliver_inbound_batch("work", batch.clone())
        .await
        .expect("batch");
    assert!(again.iter().all(|s| !s));
    let home = store
        .deliver_inbound_batch("home", batch[..1].to_vec())
        .await
        .expect("batch");
    assert_eq!(home, vec![true]);
    assert!(
        store
            .deliver_inbound_batch("work", Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );

    // Relaxed state reads back like the durable kind.
    store
        .set_sync_state_relaxed("work", "imap.INBOX.last_uid", "5")
        .await
        .expect("set");
    assert_eq!(
        store
            .get_sync_state("work", "imap.INBOX.last_uid")
            .await
            .expect("get")
            .as_deref(),
        Some("5")
    );
}

async fn a_batch_with_a_bad_recipient_stores_nothing<S: TestStore>(store: S) {
    let good = InboundDelivery {
        server_id: "1".into(),
        message: InboundMessage::default(),
        body: b"x".to_vec(),
    };
    let bad = InboundDelivery {
        server_id: "2".into(),
        message: InboundMessage {
            recipients: vec![NewRecipient::to("  ")],
            ..InboundMessage::default()
        },
        body: b"y".to_vec(),
    };
    let e = store
        .deliver_inbound_batch("work", vec![good, bad])
        .await
        .expect_err("refused");
    assert_eq!(e.code, MapiCode::InvalidParameter);
    assert!(
        store
            .messages(Folder::Inbox)
            .await
            .expect("inbox")
            .is_empty()
    );
    assert!(!store.has_inbound("work", "1").await.expect("has"));
}

async fn large_body_round_trips_chunk_by_chunk<S: TestStore>(store: S) {
    let body: Vec<u8> = (0..5 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let rec = store
        .submit(message("big", &["a@example.org"]), &body[..])
        .await
        .expect("submit");
    assert_eq!(rec.message_size, body.len() as u64);
    let mut reader = store.open_body(rec.id).await.expect("open body");
    let mut chunks = 0;
    let mut back = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.expect("chunk") {
        assert!(chunk.len() <= BODY_CHUNK_SIZE);
        back.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert_eq!(chunks, body.len().div_ceil(BODY_CHUNK_SIZE));
    assert!(back == body);
    assert!(store.read_body_to_vec(rec.id).await.expect("read") == body);
    // An empty body is zero chunks, not an error.
    let empty = store
        .submit(message("empty", &["a@example.org"]), &b""[..])
        .await
        .expect("submit");
    assert!(
        store
            .read_body_to_vec(empty.id)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let id = {
        let store = SqliteStore::open(&path).await.expect("open");
        let rec = submit(&store, "durable", &["a@example.org"]).await;
        store.set_sync_state("work", "uid", "5").await.expect("set");
        store.close().await;
        rec.id
    };
    let store = SqliteStore::open(&path).await.expect("reopen");
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message.id, id);
    assert_eq!(queue[0].message.subject, "durable");
    assert_eq!(
        store.read_body_to_vec(id).await.expect("body"),
        b"Subject: durable\r\n\r\nhello\r\n"
    );
    assert_eq!(
        store
            .get_sync_state("work", "uid")
            .await
            .expect("get")
            .as_deref(),
        Some("5")
    );
}

#[test]
fn entry_ids_round_trip_and_reject_others() {
    let id = MessageId(0x0102_0304_0506);
    assert_eq!(MessageId::from_entry_id(&id.entry_id()).expect("ours"), id);
    let folder = Folder::SentItems.entry_id();
    assert_eq!(
        Folder::from_entry_id(&folder).expect("ours"),
        Folder::SentItems
    );
    let e = MessageId::from_entry_id(&folder).expect_err("a folder is not a message");
    assert_eq!(e.code, MapiCode::InvalidEntryId);
    let foreign = mapi::EntryId::new(&[9; 16], b"M\0\0\0\0\0\0\0\x01");
    assert_eq!(
        MessageId::from_entry_id(&foreign)
            .expect_err("foreign")
            .code,
        MapiCode::InvalidEntryId
    );
    let short = mapi::EntryId::from_bytes(vec![0; 3]);
    assert_eq!(
        MessageId::from_entry_id(&short).expect_err("short").code,
        MapiCode::InvalidEntryId
    );
}

async fn unknown_message_is_not_found<S: TestStore>(store: S) {
    assert_eq!(
        store.message(MessageId(5)).await.expect_err("unknown").code,
        MapiCode::NotFound
    );
    assert_eq!(
        store.open_body(MessageId(5)).await.err().map(|e| e.code),
        Some(MapiCode::NotFound)
    );
    assert_eq!(store.queue_entry(MessageId(5)).await.expect("query"), None);
}

/// `queue_entry` answers for one message what `outgoing_queue` says of it, and `None` once it
/// has left the queue.
async fn queue_entry_is_the_queue_row_of_one_message<S: TestStore>(store: S) {
    let a = submit(&store, "a", &["a@example.org"]).await;
    let b = submit(&store, "b", &["b@example.org", "c@example.org"]).await;
    let queue = store.outgoing_queue().await.expect("queue");
    for id in [a.id, b.id] {
        let listed = queue.iter().find(|e| e.message.id == id).expect("listed");
        let one = store.queue_entry(id).await.expect("query").expect("queued");
        assert_eq!(&one, listed);
    }
    store.abort_submit(a.id).await.expect("abort");
    assert_eq!(store.queue_entry(a.id).await.expect("query"), None);
    assert!(store.queue_entry(b.id).await.expect("query").is_some());
}

/// `queue_counts` (counted by SQLite) agrees with the state `outgoing_queue` gives each message,
/// for every state at once.
async fn queue_counts_agree_with_the_queue_in_every_state<S: TestStore>(store: S) {
    let mut scheduled = message("scheduled", &["a@example.org"]);
    scheduled.deferred_delivery_time = Some(later(3600));
    store
        .submit(scheduled, &b"x"[..])
        .await
        .expect("submit scheduled");
    let deferred = submit(&store, "deferred", &["b@example.org"]).await;
    let sending = submit(&store, "sending", &["c@example.org"]).await;
    submit(&store, "queued", &["d@example.org"]).await;
    let only = |id: MessageId| LeaseFilter {
        only: Some(id),
        ..LeaseFilter::default()
    };
    defer_once(&store, deferred.id).await;
    store
        .lease_due("sp", FileTime::now(), LEASE, 10, only(sending.id))
        .await
        .expect("lease");

    let queue = store.outgoing_queue().await.expect("queue");
    let in_state = |s: QueueState| queue.iter().filter(|q| q.state == s).count() as u32;
    let counts = store.queue_counts().await.expect("counts");
    assert_eq!(counts.len(), 1, "{counts:?}");
    let c = &counts[0];
    assert_eq!(c.transport, None);
    assert_eq!(
        (c.queued, c.sending, c.deferred, c.scheduled),
        (
            in_state(QueueState::Queued),
            in_state(QueueState::Sending),
            in_state(QueueState::Deferred),
            in_state(QueueState::Scheduled)
        )
    );
    assert_eq!((c.queued, c.sending, c.deferred, c.scheduled), (1, 1, 1, 1));
}

/// One transaction records a batch, and each message is judged on its own: one whose lease
/// is someone else's and one not in the queue fail alone, the others are recorded.
async fn record_outcomes_records_a_batch_and_isolates_bad_entries<S: TestStore>(store: S) {
    let a = submit(&store, "a", &["a@example.org", "a2@example.org"]).await;
    let b = submit(&store, "b", &["b@example.org"]).await;
    let c = submit(&store, "c", &["c@example.org"]).await;
    let leased = store
        .lease_due("sp", FileTime::now(), LEASE, 2, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(leased.len(), 2);
    let delivered = |row_id| RecipientOutcome {
        row_id,
        result: DeliveryResult::Delivered,
    };
    let answers = store
        .record_outcomes(
            "sp",
            vec![
                (
                    a.id,
                    vec![
                        delivered(0),
                        RecipientOutcome {
                            row_id: 1,
                            result: DeliveryResult::Failed {
                                error: "550 no such user".into(),
                                reason_code: 1,
                                diag_code: 2,
                            },
                        },
                    ],
                ),
                // Not leased by anyone.
                (c.id, vec![delivered(0)]),
                (b.id, vec![delivered(0)]),
                (MessageId(9999), vec![delivered(0)]),
            ],
            FileTime::now(),
        )
        .await
        .expect("batch");
    assert_eq!(answers.len(), 4);
    let a_report = answers[0].as_ref().expect("a recorded");
    assert_eq!(a_report.disposition, MessageDisposition::MovedToSentItems);
    assert_eq!(a_report.failed.len(), 1);
    assert_eq!(a_report.failed[0].address, "a2@example.org");
    assert_eq!(a_report.failed[0].ndr_diag_code, Some(2));
    assert_eq!(
        answers[1].as_ref().expect_err("c is not leased").code,
        MapiCode::NoAccess
    );
    assert!(answers[2].is_ok());
    assert_eq!(
        answers[3].as_ref().expect_err("unknown").code,
        MapiCode::NotInQueue
    );
    let recips = store.recipients(a.id).await.expect("recipients");
    assert_eq!(recips[0].state, RecipientState::Delivered);
    assert_eq!(recips[1].state, RecipientState::Failed);
    assert_eq!(recips[1].last_error.as_deref(), Some("550 no such user"));
    assert!(recips.iter().all(|r| r.attempts == 1 && r.responsibility));
    let sent = store.messages(Folder::SentItems).await.expect("sent");
    assert_eq!(sent.len(), 2);
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message.id, c.id);
    assert_eq!(queue[0].attempts, 0, "c untouched");
}

/// `record_leased_outcomes` records as `record_outcomes` does; the recipients the lease read
/// stand in for the store's only while the message is under that very lease. Under a lease
/// taken since (the first ran out and the same spooler leased it again), the store's own are
/// read: what the stale lease carried is not written back.
async fn an_attempt_is_recorded_from_its_lease_only_while_that_lease_holds<S: TestStore>(store: S) {
    let m = submit(&store, "m", &["a@example.org", "b@example.org"]).await;
    let first = store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease")
        .pop()
        .expect("leased");
    let retry_at = later(600);
    let answers = store
        .record_leased_outcomes(
            "sp",
            vec![LeasedOutcome {
                id: m.id,
                outcomes: vec![
                    RecipientOutcome {
                        row_id: 0,
                        result: DeliveryResult::Delivered,
                    },
                    RecipientOutcome {
                        row_id: 1,
                        result: DeliveryResult::Deferred {
                            error: "451 4.7.1 later".into(),
                            retry_at,
                        },
                    },
                ],
                lease: first.lease.clone(),
                recipients: first.recipients.clone(),
            }],
            FileTime::now(),
        )
        .await
        .expect("record");
    assert_eq!(
        answers[0].as_ref().expect("recorded").disposition,
        MessageDisposition::StillQueued {
            next_attempt_at: Some(retry_at)
        }
    );
    let recips = store.recipients(m.id).await.expect("recipients");
    assert_eq!(recips[0].state, RecipientState::Delivered);
    assert_eq!(recips[1].state, RecipientState::Deferred);
    assert!(recips.iter().all(|r| r.attempts == 1));

    // Leased again (forced), then that lease runs out and the same spooler takes it again.
    let forced = LeaseFilter {
        include_backoff: true,
        ..LeaseFilter::default()
    };
    let mut stale = store
        .lease_due("sp", FileTime::now(), LEASE, 10, forced.clone())
        .await
        .expect("lease")
        .pop()
        .expect("leased");
    let current = store
        .lease_due("sp", later(601), LEASE, 10, forced)
        .await
        .expect("lease again")
        .pop()
        .expect("leased again");
    assert_ne!(stale.lease, current.lease);
    // What the stale lease carries is not what the store has now.
    for r in &mut stale.recipients {
        r.attempts = 40;
        r.state = RecipientState::Pending;
    }
    let answers = store
        .record_leased_outcomes(
            "sp",
            vec![LeasedOutcome {
                id: m.id,
                outcomes: vec![RecipientOutcome {
                    row_id: 1,
                    result: DeliveryResult::Delivered,
                }],
                lease: stale.lease,
                recipients: stale.recipients,
            }],
            FileTime::now(),
        )
        .await
        .expect("record");
    assert_eq!(
        answers[0].as_ref().expect("recorded").disposition,
        MessageDisposition::MovedToSentItems,
        "row 0 was delivered before: nothing is left open"
    );
    let recips = store.recipients(m.id).await.expect("recipients");
    assert_eq!(recips[0].state, RecipientState::Delivered);
    assert_eq!(recips[0].attempts, 1);
    assert_eq!(recips[1].state, RecipientState::Delivered);
    assert_eq!(recips[1].attempts, 2);
}

/// A small body comes with its lease, a large one does not, and both read back whole.
async fn small_bodies_come_with_the_lease<S: TestStore>(store: S) {
    let small = b"Subject: small\r\n\r\nhello\r\n".to_vec();
    let large = vec![b'x'; PREFETCH_BODY as usize + 1];
    store
        .submit(message("small", &["a@example.org"]), &small[..])
        .await
        .expect("submit");
    store
        .submit(message("large", &["b@example.org"]), &large[..])
        .await
        .expect("submit");
    let leased = store
        .lease_due("sp", FileTime::now(), LEASE, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(leased.len(), 2);
    assert_eq!(leased[0].prefetched_body.as_deref(), Some(&small[..]));
    assert_eq!(leased[1].prefetched_body, None);
    // Past the batch's budget, small bodies are read when sent.
    let many = PREFETCH_BATCH / PREFETCH_BODY + 2;
    let mid = vec![b'y'; PREFETCH_BODY as usize];
    for _ in 0..many {
        store
            .submit(message("mid", &["c@example.org"]), &mid[..])
            .await
            .expect("submit");
    }
    let batch = store
        .lease_due("sp", FileTime::now(), LEASE, 200, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(batch.len() as u64, many);
    let prefetched = batch.iter().filter(|m| m.prefetched_body.is_some()).count() as u64;
    assert_eq!(prefetched, PREFETCH_BATCH / PREFETCH_BODY);
    assert!(
        batch[..prefetched as usize]
            .iter()
            .all(|m| m.prefetched_body.is_some())
    );
    let mut leased = leased;
    let mut batch = batch;
    for (m, want) in leased
        .iter_mut()
        .zip([&small, &large])
        .chain(batch.iter_mut().map(|m| (m, &mid)))
    {
        let mut reader = BodyReader::of_leased(&store, m);
        let mut got = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.expect("chunk") {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(&got, want);
    }
}

async fn concurrent_submits_are_group_committed_each_whole_and_queued<S: TestStore>(store: S) {
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let body = format!("Subject: m{i}\r\n\r\nbody {i}\r\n");
                store
                    .submit(
                        message(&format!("m{i}"), &["a@example.org"]),
                        body.as_bytes(),
                    )
                    .await
                    .map(|r| (i, r))
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        let (i, record) = t.await.expect("join").expect("submit");
        assert_eq!(record.subject, format!("m{i}"));
        assert_eq!(record.folder, Folder::Outbox);
        let body = store.read_body_to_vec(record.id).await.expect("body");
        assert_eq!(
            body,
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes()
        );
        assert_eq!(store.recipients(record.id).await.expect("rcpt").len(), 1);
        ids.push(record.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(store.outgoing_queue().await.expect("queue").len(), 40);
}

#[tokio::test]
async fn open_for_submit_migrates_an_old_schema_and_skips_a_current_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    // A store as the first migration left it: the quick open must still bring it up to date.
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .expect("pool");
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.migrations = std::borrow::Cow::Owned(migrator.migrations[..1].to_vec());
        migrator.run(&pool).await.expect("first migration");
        pool.close().await;
    }
    let store = SqliteStore::open_for_submit(&path).await.expect("open");
    let mut m = message("dsn", &["a@example.org"]);
    m.dsn_notify = Some("SUCCESS".into());
    let record = store
        .submit(m, &b"Subject: dsn\r\n\r\nx\r\n"[..])
        .await
        .expect("submit needs the dsn columns of the second migration");
    assert_eq!(record.dsn_notify.as_deref(), Some("SUCCESS"));
    store.close_after_submit().await;
    // Current now: opened again without the migrator, the message is there.
    let store = SqliteStore::open_for_submit(&path).await.expect("reopen");
    assert_eq!(store.outgoing_queue().await.expect("queue").len(), 1);
    store.close_after_submit().await;
}

/// A schema a newer mapispool wrote (a migration this build does not know) is refused, on
/// both backends, with `MAPI_E_VERSION` and words that say what to do.
#[tokio::test]
async fn a_newer_schema_is_refused_on_both_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let other = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("second connection");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&other)
    .await
    .expect("a future migration");
    other.close().await;
    store.close().await;
    let e = SqliteStore::open(&path).await.expect_err("newer schema");
    assert_eq!(e.code, MapiCode::Version, "{e}");
    assert!(
        e.to_string().contains("schema version 9999")
            && e.to_string().contains("a newer mapispool wrote it"),
        "{e}"
    );

    let url = crate::store::postgres::testing::fresh_database().await;
    let store = PgStore::open(&url, None).await.expect("open");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
    )
    .execute(store.pool())
    .await
    .expect("a future migration");
    store.close().await;
    let e = PgStore::open(&url, None).await.expect_err("newer schema");
    assert_eq!(e.code, MapiCode::Version, "{e}");
    assert!(
        e.to_string().contains("schema version 9999") && e.to_string().contains("127.0.0.1"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("mapispool:mapispool@"),
        "no password: {e}"
    );
}

/// What PostgreSQL stored is there for the next process: messages, bodies, sync state.
#[tokio::test]
async fn postgres_data_survives_reopening() {
    let url = crate::store::postgres::testing::fresh_database().await;
    let id = {
        let store = PgStore::open(&url, None).await.expect("open");
        let rec = submit(&store, "durable", &["a@example.org"]).await;
        store.set_sync_state("work", "uid", "5").await.expect("set");
        store.close().await;
        rec.id
    };
    let store = PgStore::open_for_submit(&url, None).await.expect("reopen");
    let queue = store.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message.id, id);
    assert_eq!(
        store.read_body_to_vec(id).await.expect("body"),
        b"Subject: durable\r\n\r\nhello\r\n"
    );
    assert_eq!(
        store
            .get_sync_state("work", "uid")
            .await
            .expect("get")
            .as_deref(),
        Some("5")
    );
}

/// An unreachable server is `MAPI_E_NETWORK_ERROR` naming it, without the password.
#[tokio::test]
async fn an_unreachable_postgres_is_a_network_error_naming_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let url = format!("postgres://someone:secret@127.0.0.1:{port}/mail");
    let e = PgStore::open(&url, None).await.expect_err("nobody listens");
    assert_eq!(e.code, MapiCode::NetworkError, "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("postgres://someone@127.0.0.1:{port}/mail")),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}

/// Nodes sharing one PostgreSQL queue (each its own store handle and pool) lease at the same
/// time: every message goes to exactly one of them (`FOR UPDATE SKIP LOCKED`), none waits out
/// another's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_leasing_at_once_never_take_the_same_message() {
    let url = crate::store::postgres::testing::fresh_database().await;
    let first = PgStore::open(&url, None).await.expect("open");
    let mut all = Vec::new();
    for i in 0..200 {
        all.push(
            submit(&first, &format!("m{i}"), &["a@example.org"])
                .await
                .id,
        );
    }
    let mut nodes = Vec::new();
    for n in 0..4 {
        let store = PgStore::open(&url, None).await.expect("open");
        nodes.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .lease_due(
                        &format!("node{n}"),
                        FileTime::now(),
                        LEASE,
                        7,
                        LeaseFilter::default(),
                    )
                    .await
                    .expect("lease");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.iter().map(|m| m.message.id));
            }
        }));
    }
    let mut leased = Vec::new();
    for node in nodes {
        leased.extend(node.await.expect("join"));
    }
    leased.sort();
    let before = leased.len();
    leased.dedup();
    assert_eq!(before, leased.len(), "a message was leased twice");
    all.sort();
    assert_eq!(leased, all);
}

fn node(instance: &str, name: &str) -> NodeInfo {
    NodeInfo {
        instance: instance.into(),
        name: name.into(),
        host: "host-a".into(),
        pid: 4242,
        started: FileTime::now(),
    }
}

fn at(base: FileTime, secs: u64) -> FileTime {
    FileTime::from(base.to_system_time() + Duration::from_secs(secs))
}

fn failure() -> Vec<RecipientOutcome> {
    vec![RecipientOutcome {
        row_id: 0,
        result: DeliveryResult::Failed {
            error: "550 5.1.1 no such user".into(),
            reason_code: MAPI_REASON_TRANSFER_FAILED,
            diag_code: MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN,
        },
    }]
}

/// Issue 14: node A leases a batch, stalls past its lease, node B takes the batch over; both
/// then see the same permanent failure and record it at the same moment. For every message
/// exactly one of them is told the recipient failed (and so writes the one non-delivery
/// report); the other is refused (`MAPI_E_NO_ACCESS`, or `MAPI_E_NOT_IN_QUEUE` when B's commit
/// came first); the attempt is counted once.
async fn two_nodes_that_see_the_same_failure_report_it_once<S: TestStore>(store: S) {
    const N: usize = 20;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            submit(&store, &format!("bounce {i}"), &["nobody@example.org"])
                .await
                .id,
        );
    }
    let t0 = FileTime::now();
    let lease = Duration::from_secs(30);
    let a = store
        .lease_due("node-a", t0, lease, 100, LeaseFilter::default())
        .await
        .expect("lease a");
    assert_eq!(a.len(), N);
    // B comes while A's leases hold: nothing for it.
    let b = store
        .lease_due("node-b", at(t0, 10), lease, 100, LeaseFilter::default())
        .await
        .expect("lease b");
    assert!(b.is_empty(), "a live lease was taken");
    // A missed its heartbeats: past its leases, B takes them all over.
    let b = store
        .lease_due("node-b", at(t0, 31), lease, 100, LeaseFilter::default())
        .await
        .expect("lease b");
    assert_eq!(b.len(), N);
    let batch = || ids.iter().map(|id| (*id, failure())).collect::<Vec<_>>();
    let (from_a, from_b) = tokio::join!(
        {
            let store = store.clone();
            let batch = batch();
            async move { store.record_outcomes("node-a", batch, at(t0, 32)).await }
        },
        {
            let store = store.clone();
            let batch = batch();
            async move { store.record_outcomes("node-b", batch, at(t0, 32)).await }
        },
    );
    let (from_a, from_b) = (from_a.expect("store a"), from_b.expect("store b"));
    let mut reports = 0;
    for (i, id) in ids.iter().enumerate() {
        match (&from_a[i], &from_b[i]) {
            (Err(e), Ok(report)) => {
                // Refused for the lease (B has it), or, when B's commit came first, because
                // the message has left the queue.
                assert!(
                    matches!(e.code, MapiCode::NoAccess | MapiCode::NotInQueue),
                    "{id}: {e}"
                );
                assert_eq!(report.failed.len(), 1, "{id}");
                reports += 1;
            }
            other => panic!("message {id}: expected A refused and B recorded, got {other:?}"),
        }
        let m = store.message(*id).await.expect("message");
        assert_eq!(m.folder, Folder::SentItems, "{id}");
        let r = store.recipients(*id).await.expect("recipients");
        assert_eq!(r[0].attempts, 1, "{id}: the attempt counted once");
    }
    assert_eq!(reports, N, "one report per message, cluster-wide");
}

/// A node that heartbeats keeps its leases however long it sends; one that stops heartbeating
/// loses them once they expire, the others' heartbeats say so (`orphaned`), and their next
/// lease takes the messages; the dead node can then record nothing.
async fn a_live_nodes_heartbeat_keeps_its_leases_and_a_dead_nodes_are_taken_over<S: TestStore>(
    store: S,
) {
    let lease = Duration::from_secs(30);
    let t0 = FileTime::now();
    let (a, b) = (node("a:1:1", "a"), node("b:1:1", "b"));
    store
        .register_node(&a, t0, lease)
        .await
        .expect("register a");
    store
        .register_node(&b, t0, lease)
        .await
        .expect("register b");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            submit(&store, &format!("m{i}"), &["x@example.org"])
                .await
                .id,
        );
    }
    let leased = store
        .lease_due(&a.instance, t0, lease, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(leased.len(), 3);
    // A sends slowly but beats every 20 s: at 40 s and 70 s its leases still hold.
    let beat = store
        .heartbeat(&a, "sending", at(t0, 20), lease, &ids)
        .await
        .expect("beat a");
    assert_eq!(
        beat,
        Heartbeat {
            extended: 3,
            orphaned: 0
        }
    );
    let beat = store
        .heartbeat(&b, "idle", at(t0, 40), lease, &[])
        .await
        .expect("beat b");
    assert_eq!(beat.orphaned, 0, "a live node's leases are not orphans");
    let none = store
        .lease_due(&b.instance, at(t0, 40), lease, 10, LeaseFilter::default())
        .await
        .expect("lease b");
    assert!(none.is_empty(), "a heartbeating node's lease was taken");
    // A finishes one message, then dies after its beat at 45 s.
    store
        .record_outcome(
            ids[0],
            &a.instance,
            vec![RecipientOutcome {
                row_id: 0,
                result: DeliveryResult::Delivered,
            }],
            at(t0, 44),
        )
        .await
        .expect("record a");
    let beat = store
        .heartbeat(&a, "sending", at(t0, 45), lease, &ids)
        .await
        .expect("beat a");
    assert_eq!(beat.extended, 2, "only leases still held are extended");
    let nodes = store.nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .all(|n| n.state(at(t0, 60)) == NodeState::Alive)
    );
    // Within the bound (lease + heartbeat interval) B's heartbeat sees them.
    let beat = store
        .heartbeat(&b, "idle", at(t0, 74), lease, &[])
        .await
        .expect("beat b");
    assert_eq!(beat.orphaned, 0, "at 74 s A's leases (to 75 s) still hold");
    let beat = store
        .heartbeat(&b, "idle", at(t0, 76), lease, &[])
        .await
        .expect("beat b");
    assert_eq!(beat.orphaned, 2);
    let dead = store
        .nodes()
        .await
        .expect("nodes")
        .into_iter()
        .find(|n| n.info.instance == a.instance)
        .expect("a listed");
    assert_eq!(dead.state(at(t0, 76)), NodeState::Dead);
    assert_eq!(dead.status, "sending");
    let taken = store
        .lease_due(&b.instance, at(t0, 76), lease, 10, LeaseFilter::default())
        .await
        .expect("take over");
    let mut taken: Vec<MessageId> = taken.iter().map(|m| m.message.id).collect();
    taken.sort();
    assert_eq!(taken, ids[1..].to_vec());
    // A comes back to life (a long pause, not a death): it can record nothing, and its
    // heartbeat extends nothing of B's.
    let e = store
        .record_outcome(ids[1], &a.instance, vec![], at(t0, 77))
        .await
        .expect_err("taken over");
    assert_eq!(e.code, MapiCode::NoAccess);
    let beat = store
        .heartbeat(&a, "sending", at(t0, 78), lease, &ids)
        .await
        .expect("beat a");
    assert_eq!(
        beat,
        Heartbeat {
            extended: 0,
            orphaned: 0
        }
    );
}

async fn nodes_register_list_stop_and_forget_their_old_instances<S: TestStore>(store: S) {
    let lease = Duration::from_secs(30);
    let now = FileTime::now();
    let first = node("host-a:10:1", "relay-1");
    let other = node("host-b:10:1", "relay-2");
    store
        .register_node(&first, now, lease)
        .await
        .expect("register");
    store
        .register_node(&other, now, lease)
        .await
        .expect("register");
    store
        .node_stopped(&first.instance, at(now, 5))
        .await
        .expect("stop");
    let listed = store.nodes().await.expect("nodes");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].info, first);
    assert_eq!(listed[0].state(at(now, 6)), NodeState::Stopped);
    assert_eq!(listed[1].state(at(now, 6)), NodeState::Alive);
    assert_eq!(listed[1].status, "starting");
    // relay-1 restarts: its stopped instance is forgotten; relay-2, gone silent, is listed dead.
    let second = node("host-a:11:2", "relay-1");
    store
        .register_node(&second, at(now, 60), lease)
        .await
        .expect("register again");
    let listed = store.nodes().await.expect("nodes");
    let names: Vec<(&str, NodeState)> = listed
        .iter()
        .map(|n| (n.info.instance.as_str(), n.state(at(now, 61))))
        .collect();
    assert_eq!(
        names,
        vec![
            ("host-a:11:2", NodeState::Alive),
            ("host-b:10:1", NodeState::Dead)
        ]
    );
    // A week later relay-2 is forgotten too.
    store
        .register_node(&second, at(now, 8 * 86400), lease)
        .await
        .expect("register after a week");
    let listed = store.nodes().await.expect("nodes");
    assert_eq!(listed.len(), 1);
}

async fn a_once_only_claim_is_granted_once<S: TestStore>(store: S) {
    let claims = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_sync_state("", "delay-notice:1", "sent").await })
    });
    let mut granted = 0;
    for c in claims {
        if c.await.expect("join").expect("claim") {
            granted += 1;
        }
    }
    assert_eq!(granted, 1);
    assert_eq!(
        store
            .get_sync_state("", "delay-notice:1")
            .await
            .expect("read"),
        Some("sent".into())
    );
}

/// A lease the node still owns but no longer works on (its outcome could not be recorded: the
/// store was away) is not extended by its heartbeat: it expires, counts as orphaned, and the
/// message is tried again instead of staying leased for the life of the node.
async fn a_heartbeat_extends_only_the_leases_the_node_still_works_on<S: TestStore>(store: S) {
    let lease = Duration::from_secs(30);
    let t0 = FileTime::now();
    let a = node("a:1:1", "a");
    store.register_node(&a, t0, lease).await.expect("register");
    let first = submit(&store, "kept", &["x@example.org"]).await.id;
    let second = submit(&store, "given up", &["x@example.org"]).await.id;
    let leased = store
        .lease_due(&a.instance, t0, lease, 10, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(leased.len(), 2);
    let beat = store
        .heartbeat(&a, "sending", at(t0, 20), lease, &[first])
        .await
        .expect("beat");
    assert_eq!(
        beat,
        Heartbeat {
            extended: 1,
            orphaned: 0
        }
    );
    let beat = store
        .heartbeat(&a, "sending", at(t0, 40), lease, &[first])
        .await
        .expect("beat");
    assert_eq!(
        beat,
        Heartbeat {
            extended: 1,
            orphaned: 1
        },
        "the given-up lease expired"
    );
    let again = store
        .lease_due(&a.instance, at(t0, 40), lease, 10, LeaseFilter::default())
        .await
        .expect("lease again");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.id, second);
}

/// The same queue on both backends: messages of several sizes, priorities and attempts, each
/// with its own recipients.
async fn varied_queue(store: &AnyStore) {
    for i in 0..8u32 {
        let to: Vec<String> = (0..=i % 3)
            .map(|r| format!("r{r}.{i}@example.org"))
            .collect();
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        let mut m = message(&format!("m{i}"), &to);
        m.priority = i as i32 % 3 - 1;
        let body = format!("Subject: m{i}\r\n\r\n{}\r\n", "x".repeat(60 * i as usize));
        let rec = store.submit(m, body.as_bytes()).await.expect("submit");
        // Every third message deferred once or twice: attempts 1 and 2.
        for _ in 0..i % 3 {
            defer_once(store, rec.id).await;
        }
    }
}

/// One attempt at message `id` that defers its first recipient for ten minutes.
async fn defer_once<S: Store>(store: &S, id: MessageId) {
    let only = LeaseFilter {
        only: Some(id),
        include_backoff: true,
        ..LeaseFilter::default()
    };
    let leased = store
        .lease_due("sp", FileTime::now(), LEASE, 10, only)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1);
    let report = store
        .record_outcome(
            id,
            "sp",
            vec![RecipientOutcome {
                row_id: 0,
                result: DeliveryResult::Deferred {
                    error: "452 try later".into(),
                    retry_at: later(600),
                },
            }],
            FileTime::now(),
        )
        .await
        .expect("outcome");
    assert!(!report.disposition.is_finished());
}

/// `queue --where`: what each backend's store picks through its own SQL (and indexes) is a
/// superset of what the restriction matches, holds exactly the matching messages with all their
/// recipients, and is the same on SQLite and on PostgreSQL, for restrictions the store answers
/// whole, in part (OR, NOT, other properties are left to the table) or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_where_picks_the_same_messages_on_both_backends() {
    use mapi::restriction::Restriction;

    let (_dir, sqlite) = open_sqlite().await;
    let (_pg, pg) = open_postgres().await;
    let stores = [AnyStore::Sqlite(sqlite), AnyStore::Postgres(pg)];
    for store in &stores {
        varied_queue(store).await;
    }
    for text in [
        "PR_MSP_ATTEMPTS > 0",
        "PR_MSP_ATTEMPTS == 0",
        "PR_MSP_ATTEMPTS >= 2",
        "PR_MSP_ATTEMPTS != 1 && PR_MESSAGE_SIZE >= 200",
        "PR_MESSAGE_SIZE < 200 || PR_MSP_ATTEMPTS > 0",
        "PR_MESSAGE_SIZE > 150 && PR_MESSAGE_SIZE <= 400",
        "PR_PRIORITY == 1",
        "PR_PRIORITY < 0 && PR_MSP_ATTEMPTS <= 1",
        "PR_PRIORITY != 0",
        r#"PR_PRIORITY <= 0 && PR_SUBJECT == "m3""#,
        "!(PR_MSP_ATTEMPTS > 0)",
        r#"PR_SUBJECT == "m5""#,
    ] {
        let restriction = Restriction::parse(text).expect("parse");
        let filter = QueueFilter::from_restriction(&restriction);
        let mut answers = Vec::new();
        for store in &stores {
            let whole = store.outgoing_queue().await.expect("queue");
            let picked = store
                .outgoing_queue_matching(&filter)
                .await
                .expect("matching");
            let matching = |entries: &[QueueEntry]| {
                entries
                    .iter()
                    .filter(|e| restriction.evaluate(&e.to_row()).expect("evaluate"))
                    .map(|e| {
                        let to: Vec<&str> =
                            e.recipients.iter().map(|r| r.address.as_str()).collect();
                        (
                            e.message.id,
                            e.message.subject.clone(),
                            e.attempts,
                            to.join(","),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(matching(&picked), matching(&whole), "{text}");
            if filter.is_empty() {
                assert_eq!(picked.len(), whole.len(), "{text}");
            } else {
                assert!(picked.len() < whole.len(), "{text}: the store chose all");
            }
            answers.push(matching(&picked));
        }
        assert_eq!(answers[0], answers[1], "{text}: SQLite, then PostgreSQL");
        if text == "PR_MSP_ATTEMPTS >= 2" {
            assert_eq!(answers[0].len(), 2, "{text}: {:?}", answers[0]);
        }
    }
}

/// A folder of many messages, each with its own To, Cc and Bcc recipients (some named, some
/// not): the listing (which reads the recipients of the whole folder at once) shows each
/// message's own, in row order, and nobody else's.
async fn a_folder_listing_names_every_messages_recipients<S: TestStore>(store: S) {
    let mut expected = Vec::new();
    for i in 0..40usize {
        let recipients: Vec<NewRecipient> = (0..1 + i % 5)
            .map(|r| NewRecipient {
                display_name: if r % 2 == 0 {
                    format!("Person {i}.{r}")
                } else {
                    String::new()
                },
                address: format!("p{i}.{r}@example.org"),
                recipient_type: [MAPI_TO, MAPI_CC, MAPI_BCC, MAPI_TO, MAPI_CC][r],
            })
            .collect();
        let names = |kind: i32| {
            recipients
                .iter()
                .filter(|r| r.recipient_type == kind)
                .map(|r| {
                    if r.display_name.is_empty() {
                        r.address.clone()
                    } else {
                        r.display_name.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let shown = [names(MAPI_TO), names(MAPI_CC), names(MAPI_BCC)];
        let m = NewMessage {
            subject: format!("m{i}"),
            recipients,
            ..NewMessage::default()
        };
        let rec = store
            .submit(m, &b"Subject: x\r\n\r\nhello\r\n"[..])
            .await
            .expect("submit");
        expected.push((rec.id, shown));
    }
    let rows = folder_rows(&store, Folder::Outbox).await.expect("rows");
    assert_eq!(rows.len(), expected.len());
    for (row, (id, shown)) in rows.iter().zip(&expected) {
        assert_eq!(
            row.get(PR_ENTRYID),
            Some(&PropValue::Binary(id.entry_id().as_bytes().to_vec()))
        );
        for (tag, names) in [PR_DISPLAY_TO, PR_DISPLAY_CC, PR_DISPLAY_BCC]
            .into_iter()
            .zip(shown)
        {
            assert_eq!(
                row.get(tag),
                Some(&PropValue::Unicode(names.clone())),
                "message {id}, {tag:?}"
            );
        }
    }
    // An empty folder, and ids of which some are gone: no error, the gone ones absent.
    assert!(
        folder_rows(&store, Folder::SentItems)
            .await
            .expect("empty")
            .is_empty()
    );
    store.delete_behind(expected[0].0).await;
    let by_message = store
        .recipients_by_message(&[expected[0].0, expected[4].0, MessageId(999_999)])
        .await
        .expect("by message");
    assert_eq!(by_message.len(), 1);
    assert_eq!(by_message[&expected[4].0].len(), 5);
    assert_eq!(
        by_message[&expected[4].0],
        store.recipients(expected[4].0).await.expect("recipients")
    );
}

/// Every prefix of every message's entry ID names, through [`MessageId::prefix_range`] and
/// [`Store::message_ids_between`], exactly the messages whose entry IDs start with it (as a
/// listing would find them), the first `limit` of them and how many in all; a prefix no message
/// entry ID can have names none.
async fn an_entry_id_prefix_is_a_range_of_ids<S: TestStore>(store: S) {
    let mut all = Vec::new();
    for i in 0..18 {
        all.push(
            submit(&store, &format!("m{i}"), &["a@example.org"])
                .await
                .id,
        );
    }
    let hex: Vec<String> = all.iter().map(|id| id.entry_id().to_string()).collect();
    for (i, whole) in hex.iter().enumerate() {
        for len in 1..=whole.len() {
            let prefix = &whole[..len];
            let expected: Vec<MessageId> = all
                .iter()
                .zip(&hex)
                .filter(|(_, h)| h.starts_with(prefix))
                .map(|(id, _)| *id)
                .collect();
            let (first, last) = MessageId::prefix_range(&prefix.to_ascii_lowercase())
                .expect("a message entry ID's prefix");
            let (ids, total) = store
                .message_ids_between(first, last, 3)
                .await
                .expect("ids");
            assert_eq!(total, expected.len() as u64, "{prefix}");
            assert_eq!(ids, expected[..expected.len().min(3)], "{prefix}");
            assert!(ids.contains(&all[i]) || ids.len() == 3, "{prefix}");
        }
    }
    for other in [
        "ABCDEF".to_string(),
        Folder::Inbox.entry_id().to_string(),
        format!("{}0", hex[0]),
        "xyz".to_string(),
    ] {
        assert_eq!(MessageId::prefix_range(&other), None, "{other}");
    }
}

/// The plan PostgreSQL picks for `sql` (EXPLAIN; `binds` replace `$1`, `$2`, ... in order,
/// as literals, since a generic plan needs PostgreSQL 16), one step a line.
async fn pg_plan(store: &PgStore, sql: &str, binds: &[&str]) -> String {
    let mut sql = sql.to_owned();
    // From the highest number down, so `$1` does not eat the start of `$10`.
    for (n, value) in binds.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", n + 1), value);
    }
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
        .fetch_all(store.pool())
        .await
        .expect("explain");
    rows.into_iter()
        .map(|(l,)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The PostgreSQL store's questions that must not grow with the store read indexes at 10,000
/// messages (Sent Items) beside a queue of 200: the queue counts, `queue --where` on attempts
/// (messages and their recipients), leasing, an entry-ID prefix, a folder listing and its
/// recipients. `MAPISPOOL_PLANS=1` prints the plans (bench/notes/pgscan.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_questions_use_indexes_at_ten_thousand_messages() {
    let (_keep, store) = open_postgres().await;
    sqlx::raw_sql(
        "INSERT INTO messages (folder, staged_at, in_queue, attempts, client_submit_time, \
           message_size, transport) \
         SELECT 3, 0, FALSE, 1, g, 2000, 'home' FROM generate_series(1, 10000) AS g; \
         INSERT INTO messages (folder, staged_at, in_queue, attempts, client_submit_time, \
           message_size, transport) \
         SELECT 2, 0, TRUE, (g % 40 = 0)::int, 20000 + g, 2000, 'home' \
         FROM generate_series(1, 200) AS g; \
         INSERT INTO recipients (message_id, row_id, address, recipient_type) \
         SELECT id, r, 'r' || r || '@example.org', 1 FROM messages, generate_series(0, 1) AS r; \
         ANALYZE messages; ANALYZE recipients;",
    )
    .execute(store.pool())
    .await
    .expect("10,000 messages");
    let show = std::env::var_os("MAPISPOOL_PLANS").is_some();
    let failed = std::sync::Mutex::new(Vec::new());
    let no_seq_scan = |name: &str, plan: &str, index: &str| {
        if show {
            eprintln!("== {name}\n{plan}\n");
        }
        if plan.contains("Seq Scan on messages")
            || plan.contains("Seq Scan on recipients")
            || !plan.contains(index)
        {
            failed
                .lock()
                .expect("failures")
                .push(format!("{name} (should use {index}):\n{plan}"));
        }
    };
    let now = i64::MAX / 2;
    no_seq_scan(
        "queue counts",
        &pg_plan(&store, super::postgres::QUEUE_COUNTS, &[&now.to_string()]).await,
        "messages_queue",
    );
    let restriction =
        mapi::restriction::Restriction::parse("PR_MSP_ATTEMPTS > 0").expect("restriction");
    let messages = super::shared::queue_messages_sql(
        &QueueFilter::from_restriction(&restriction),
        super::shared::Dialect::Postgres,
    );
    no_seq_scan(
        "queue --where",
        &pg_plan(&store, &messages, &["0"]).await,
        "messages_queue_attempts",
    );
    no_seq_scan(
        "the whole queue",
        &pg_plan(
            &store,
            &super::shared::queue_messages_sql(
                &QueueFilter::default(),
                super::shared::Dialect::Postgres,
            ),
            &[],
        )
        .await,
        "messages_queue",
    );
    no_seq_scan(
        "lease",
        &pg_plan(
            &store,
            super::postgres::LEASE_DUE,
            &[
                "'n'",
                "0",
                "0",
                &now.to_string(),
                "FALSE",
                "NULL",
                "NULL",
                "50",
            ],
        )
        .await,
        "messages_queue",
    );
    no_seq_scan(
        "entry-ID prefix",
        &pg_plan(
            &store,
            super::shared::message_ids_between_sql(super::shared::Dialect::Postgres),
            &["4096", "4111", "11"],
        )
        .await,
        "messages_pkey",
    );
    no_seq_scan(
        "folder listing",
        &pg_plan(
            &store,
            "SELECT id FROM messages WHERE folder = $1 ORDER BY id",
            &["2"],
        )
        .await,
        "messages_by_folder",
    );
    no_seq_scan(
        "the recipients of a page, or of the queue's messages",
        &pg_plan(
            &store,
            "SELECT message_id FROM recipients WHERE message_id = ANY($1) \
             ORDER BY message_id, row_id",
            &["ARRAY[10001, 10002, 10003]::bigint[]"],
        )
        .await,
        "recipients_pkey",
    );
    let failed = failed.into_inner().expect("failures");
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

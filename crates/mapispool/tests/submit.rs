//! Submission and what a flush makes of it: the outgoing queue, AbortSubmit, deferred delivery,
//! Sent Items, delete-after-submit, non-delivery reports and expiry.

mod common;

use std::time::Duration;

use common::*;
use mapi::constants::*;
use mapi::tag::*;
use mapi::{FileTime, MapiCode, PropValue};
use mapispool::flush::MessageOutcome;
use mapispool::spooler::ndr::NDR_CLASS;
use mapispool::store::{Folder, LeaseFilter, MessageId, QueueState, Store};
use mapispool::{FlushFlags, Session, Submission};

async fn upload(session: &Session) -> mapispool::FlushReport {
    session
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush")
}

#[tokio::test]
async fn a_message_without_recipients_is_refused() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    let text = "From: <alice@localhost>\r\nSubject: to no one\r\n\r\nHello.\r\n";
    assert_eq!(
        code(alice.submit(Submission::default(), text.as_bytes()).await),
        MapiCode::NoRecipients
    );
    assert!(alice.outgoing_queue().await.expect("queue").is_empty());
    assert!(
        alice
            .messages(Folder::Outbox)
            .await
            .expect("outbox")
            .is_empty()
    );
}

#[tokio::test]
async fn the_queue_is_in_submit_order_and_sent_mail_lands_in_sent_items() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    for subject in ["charlie", "alpha", "bravo"] {
        submit(&alice, "bob@localhost", subject).await;
    }
    let queue = alice.outgoing_queue().await.expect("queue");
    let order: Vec<&str> = queue.iter().map(|e| e.message.subject.as_str()).collect();
    assert_eq!(order, vec!["charlie", "alpha", "bravo"]);
    for entry in &queue {
        assert_eq!(entry.state, QueueState::Queued);
        let flags = entry.message.message_flags;
        assert_eq!(
            flags & (MSGFLAG_SUBMIT | MSGFLAG_UNSENT),
            MSGFLAG_SUBMIT | MSGFLAG_UNSENT
        );
        assert!(entry.message.client_submit_time.is_some());
    }

    let report = upload(&alice).await;
    let sent_order: Vec<&str> = report.transports[0]
        .messages
        .iter()
        .map(|m| m.subject.as_str())
        .collect();
    assert_eq!(sent_order, vec!["charlie", "alpha", "bravo"], "queue order");
    assert_eq!(world.delivered("bob@localhost"), 3);
    let sent = alice.messages(Folder::SentItems).await.expect("sent");
    assert_eq!(sent.len(), 3);
    for m in &sent {
        assert_eq!(m.message_flags & (MSGFLAG_SUBMIT | MSGFLAG_UNSENT), 0);
        assert!(m.provider_submit_time.is_some());
    }
    assert!(
        alice
            .messages(Folder::Outbox)
            .await
            .expect("outbox")
            .is_empty()
    );
}

#[tokio::test]
async fn abort_submit_takes_a_message_out_of_the_queue_once() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    let id = submit(&alice, "bob@localhost", "never mind")
        .await
        .entry_id();
    alice.abort_submit(&id).await.expect("abort");
    assert!(queued(&alice, &id).await.is_none());
    let outbox = alice.messages(Folder::Outbox).await.expect("outbox");
    assert_eq!(outbox.len(), 1, "it stays in the Outbox");
    assert_eq!(outbox[0].message_flags & MSGFLAG_SUBMIT, 0);
    assert_eq!(
        code(alice.abort_submit(&id).await),
        MapiCode::NotInQueue,
        "a second abort"
    );
    let report = upload(&alice).await;
    assert!(report.transports[0].messages.is_empty());
    assert_eq!(world.delivered("bob@localhost"), 0);
}

#[tokio::test]
async fn abort_submit_of_a_leased_message_is_unable_to_abort() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    let record = submit(&alice, "bob@localhost", "in flight").await;
    let id = record.entry_id();
    let store = alice.spooler().expect("an in-process spooler").store();
    let leased = store
        .lease_due(
            "another-spooler",
            FileTime::now(),
            Duration::from_secs(60),
            10,
            LeaseFilter {
                transport: None,
                include_backoff: false,
                only: Some(MessageId::from_entry_id(&id).expect("a message id")),
            },
        )
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1);
    assert_eq!(
        queued(&alice, &id).await.expect("queued").state,
        QueueState::Sending
    );
    assert_eq!(code(alice.abort_submit(&id).await), MapiCode::UnableToAbort);
    assert!(queued(&alice, &id).await.is_some(), "still queued");
    // Another spooler's lease: this one's flush leaves the message alone.
    let report = upload(&alice).await;
    assert!(report.transports[0].messages.is_empty());
    assert_eq!(world.delivered("bob@localhost"), 0);

    store
        .release_lease(
            MessageId::from_entry_id(&record.entry_id).expect("a message id"),
            "another-spooler",
        )
        .await
        .expect("release");
    alice.abort_submit(&id).await.expect("abort once released");
}

#[tokio::test]
async fn a_deferred_delivery_time_holds_the_message_until_it_is_due() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    let due = std::time::SystemTime::now() + Duration::from_millis(1200);
    let id = submit_with(
        &alice,
        "bob@localhost",
        "later",
        Submission {
            deferred_until: Some(FileTime::from(due)),
            ..Submission::default()
        },
    )
    .await
    .expect("submit")
    .entry_id();
    let entry = queued(&alice, &id).await.expect("queued");
    assert_eq!(entry.state, QueueState::Scheduled);
    assert_eq!(
        entry.message.deferred_delivery_time,
        Some(FileTime::from(due))
    );
    let row = entry.to_row();
    assert_eq!(
        row.get(PR_DEFERRED_DELIVERY_TIME),
        Some(&PropValue::SysTime(FileTime::from(due)))
    );

    let report = upload(&alice).await;
    assert!(report.transports[0].messages.is_empty(), "not yet");
    // Not even FORCE sends before PR_DEFERRED_DELIVERY_TIME: it is the sender's wish, not backoff.
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("forced flush");
    assert!(report.transports[0].messages.is_empty(), "not yet, forced");
    assert_eq!(world.delivered("bob@localhost"), 0);

    let wait = due
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let report = upload(&alice).await;
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(world.delivered("bob@localhost"), 1);
}

#[tokio::test]
async fn delete_after_submit_keeps_no_copy() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    submit_with(
        &alice,
        "bob@localhost",
        "forget me",
        Submission {
            delete_after_submit: true,
            ..Submission::default()
        },
    )
    .await
    .expect("submit");
    submit(&alice, "bob@localhost", "keep me").await;
    let report = upload(&alice).await;
    assert_eq!(report.transports[0].sent(), 2);
    assert_eq!(world.delivered("bob@localhost"), 2);
    assert_eq!(subjects(&alice, Folder::SentItems).await, vec!["keep me"]);
    assert!(subjects(&alice, Folder::Outbox).await.is_empty());
}

#[tokio::test]
async fn a_failed_recipient_gets_a_non_delivery_report() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    submit_with(
        &alice,
        "bob@localhost",
        "half way",
        Submission {
            recipients: vec!["bob@localhost".into(), "nobody@localhost".into()],
            ..Submission::default()
        },
    )
    .await
    .expect("submit");
    let report = upload(&alice).await;
    let message = &report.transports[0].messages[0];
    assert_eq!(message.outcome, MessageOutcome::Partial);
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert_eq!(world.delivered("nobody@localhost"), 0);

    let inbox = alice.messages(Folder::Inbox).await.expect("inbox");
    assert_eq!(inbox.len(), 1, "one report");
    let ndr = &inbox[0];
    assert_eq!(ndr.message_class, NDR_CLASS);
    assert_eq!(ndr.subject, "Undeliverable: half way");
    assert_eq!(ndr.ndr_reason_code, Some(MAPI_REASON_TRANSFER_IMPOSSIBLE));
    assert_eq!(ndr.ndr_diag_code, Some(MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN));
    let row = ndr.to_row();
    assert_eq!(
        row.get(PR_NDR_REASON_CODE),
        Some(&PropValue::Long(MAPI_REASON_TRANSFER_IMPOSSIBLE))
    );
    assert_eq!(
        row.get(PR_NDR_DIAG_CODE),
        Some(&PropValue::Long(MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN))
    );
    let body = String::from_utf8(
        alice
            .message_body(&ndr.entry_id())
            .await
            .expect("the report's text"),
    )
    .expect("utf-8");
    assert!(
        body.contains("Final-Recipient: rfc822; nobody@localhost"),
        "{body}"
    );
    assert!(!body.contains("Final-Recipient: rfc822; bob@localhost"));
    // Every recipient handled: the original is in Sent Items.
    assert_eq!(subjects(&alice, Folder::SentItems).await, vec!["half way"]);
}

#[tokio::test]
async fn a_failed_message_with_the_null_sender_gets_no_report() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    let record = submit_with(
        &alice,
        "nobody@localhost",
        "a report myself",
        Submission {
            from: Some(String::new()),
            ..Submission::default()
        },
    )
    .await
    .expect("submit");
    let queued_entry = queued(&alice, &record.entry_id).await.expect("queued");
    assert_eq!(queued_entry.message.envelope_from.as_deref(), Some(""));
    // The same failure from a real sender does produce a report: the null sender is the reason.
    submit(&alice, "nobody@localhost", "from alice").await;
    let report = upload(&alice).await;
    let outcomes: Vec<MessageOutcome> = report.transports[0]
        .messages
        .iter()
        .map(|m| m.outcome)
        .collect();
    assert_eq!(
        outcomes,
        vec![MessageOutcome::Failed, MessageOutcome::Failed]
    );
    assert_eq!(
        subjects(&alice, Folder::Inbox).await,
        vec!["Undeliverable: from alice"]
    );
}

#[tokio::test]
async fn an_expired_message_fails_with_maximum_time_expired() {
    let world = World::new();
    let mut profile = world.simple_profile("alice");
    profile.spooler.expire_after = Duration::from_millis(300);
    let alice = logon(profile).await;
    world.break_mailbox("bob@localhost");
    submit(&alice, "bob@localhost", "too late").await;
    let report = upload(&alice).await;
    assert_eq!(
        report.transports[0].messages[0].outcome,
        MessageOutcome::Deferred,
        "young enough to wait for a retry"
    );
    world.repair_mailbox("bob@localhost");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("forced flush");
    assert_eq!(
        report.transports[0].messages[0].outcome,
        MessageOutcome::Failed
    );
    assert_eq!(world.delivered("bob@localhost"), 0, "not sent once expired");
    assert!(alice.outgoing_queue().await.expect("queue").is_empty());
    let inbox = alice.messages(Folder::Inbox).await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].message_class, NDR_CLASS);
    assert_eq!(inbox[0].ndr_reason_code, Some(MAPI_REASON_TRANSFER_FAILED));
    assert_eq!(inbox[0].ndr_diag_code, Some(MAPI_DIAG_MAXIMUM_TIME_EXPIRED));
}

#[tokio::test]
async fn a_batch_is_answered_message_by_message_and_queues_the_good_ones() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    let texts: Vec<String> = (0..20)
        .map(|i| format!("From: <alice@localhost>\r\nTo: <bob@localhost>\r\nSubject: b{i}\r\n\r\nHello {i}.\r\n"))
        .collect();
    let nobody = "From: <alice@localhost>\r\nSubject: to no one\r\n\r\nHello.\r\n";
    let mut items: Vec<(Submission, &[u8])> = texts
        .iter()
        .map(|t| (Submission::default(), t.as_bytes()))
        .collect();
    items.insert(7, (Submission::default(), nobody.as_bytes()));
    let results = alice.submit_batch(items).await.expect("batch");
    assert_eq!(results.len(), 21);
    assert_eq!(code(results[7].clone()), MapiCode::NoRecipients);
    let subjects: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, r)| r.as_ref().expect("accepted").subject.clone())
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
    assert_eq!(subjects, expected);
    let queue = alice.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 20);
    let mut ids = std::collections::HashSet::new();
    for (entry, text) in queue.iter().zip(&texts) {
        let body = alice
            .message_body(&entry.message.entry_id())
            .await
            .expect("body");
        let body = String::from_utf8(body).expect("ASCII");
        // As submitted, after the Date: and Message-ID: that submit adds, each its own.
        let (added, rest) = body.split_at(body.len() - text.len());
        assert_eq!(rest, text);
        let lines: Vec<&str> = added.split_inclusive("\r\n").collect();
        assert_eq!(lines.len(), 2, "{added}");
        assert!(lines[0].starts_with("Date: "), "{added}");
        assert!(
            lines[1].starts_with("Message-ID: <") && lines[1].ends_with("@localhost>\r\n"),
            "{added}"
        );
        assert!(ids.insert(lines[1].to_string()), "{added}");
    }
}

//! `IMAPIStatus::FlushQueues` end to end: real stores on disk, a real post-office directory.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mapi::constants::*;
use mapi::restriction::{RelOp, Restriction};
use mapi::table::hr_query_all_rows;
use mapi::tag::*;
use mapi::{EntryId, MapiCode, PropValue};
use mapispool::flush::MessageOutcome;
use mapispool::status::StatusKind;
use mapispool::store::Folder;
use mapispool::{FlushFlags, Session, Submission};

/// A transport's `PR_ENTRYID`, found as a client finds it: in the status table by name.
fn transport_entry_id(session: &Session, name: &str) -> EntryId {
    let mut table = session.status_table();
    let rows = hr_query_all_rows(
        &mut table,
        Some(&[PR_ENTRYID, PR_DISPLAY_NAME]),
        Some(&Restriction::Property {
            relop: RelOp::Eq,
            tag: PR_DISPLAY_NAME,
            value: PropValue::Unicode(name.to_string()),
        }),
        None,
        0,
    )
    .expect("query the status table");
    assert_eq!(rows.len(), 1, "one row for transport {name}");
    match rows[0].get(PR_ENTRYID) {
        Some(PropValue::Binary(b)) => EntryId::from_bytes(b.clone()),
        other => panic!("PR_ENTRYID of {name} is {other:?}"),
    }
}

/// alice with two transports, "one" and "two", each with a message queued for bob.
async fn two_transports(world: &World, second_flushes: bool) -> Session {
    let mut two = world.transport("two", "alice.two@localhost");
    two.flush_queues = second_flushes;
    let profile = world.profile(
        "alice",
        vec![world.transport("one", "alice@localhost"), two],
    );
    world.create_mailbox("bob@localhost");
    let alice = logon(profile).await;
    for name in ["one", "two"] {
        submit_with(
            &alice,
            "bob@localhost",
            &format!("via {name}"),
            Submission {
                transport: Some(name.to_string()),
                ..Submission::default()
            },
        )
        .await
        .expect("submit");
    }
    alice
}

async fn queued_subjects(session: &Session) -> Vec<String> {
    session
        .outgoing_queue()
        .await
        .expect("queue")
        .into_iter()
        .map(|e| e.message.subject)
        .collect()
}

#[tokio::test]
async fn spooler_flush_moves_mail_on_every_transport() {
    let world = World::new();
    let alice = two_transports(&world, true).await;
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert!(!report.asynchronous);
    let parts: Vec<(&str, usize)> = report
        .transports
        .iter()
        .map(|t| (t.transport.as_str(), t.sent()))
        .collect();
    assert_eq!(
        parts,
        vec![("one", 1), ("two", 1)],
        "profile order, both sent"
    );
    assert!(report.is_complete());
    assert_eq!(world.delivered("bob@localhost"), 2);
    assert!(queued_subjects(&alice).await.is_empty());
    let mut sent = subjects(&alice, Folder::SentItems).await;
    sent.sort();
    assert_eq!(sent, vec!["via one", "via two"]);
}

#[tokio::test]
async fn spooler_flush_with_a_target_moves_only_that_transport() {
    let world = World::new();
    let alice = two_transports(&world, true).await;
    let two = transport_entry_id(&alice, "two");
    let report = alice
        .spooler_status()
        .flush_queues(Some(&two), FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert_eq!(report.transports.len(), 1);
    assert_eq!(report.transports[0].transport, "two");
    assert_eq!(report.transports[0].entry_id, two);
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert_eq!(queued_subjects(&alice).await, vec!["via one"]);
}

#[tokio::test]
async fn a_transports_own_status_object_flushes_only_it() {
    let world = World::new();
    let alice = two_transports(&world, true).await;
    let one = alice
        .open_status(&transport_entry_id(&alice, "one"))
        .expect("open the transport's status object");
    assert_ne!(one.methods() & STATUS_FLUSH_QUEUES, 0);
    let report = one
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush on the transport");
    assert_eq!(report.transports.len(), 1);
    assert_eq!(report.transports[0].transport, "one");
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(queued_subjects(&alice).await, vec!["via two"]);
    assert_eq!(world.delivered("bob@localhost"), 1);

    // A target is only for the spooler's FlushQueues.
    let two = transport_entry_id(&alice, "two");
    assert_eq!(
        code(one.flush_queues(Some(&two), FlushFlags::UPLOAD).await),
        MapiCode::InvalidParameter
    );
    assert_eq!(queued_subjects(&alice).await, vec!["via two"]);
}

#[tokio::test]
async fn without_flush_queues_the_transport_says_no_support_and_the_spooler_flushes_it() {
    let world = World::new();
    let alice = two_transports(&world, false).await;
    let id = transport_entry_id(&alice, "two");
    let two = alice.open_status(&id).expect("open");
    assert_eq!(two.methods() & STATUS_FLUSH_QUEUES, 0);
    assert_ne!(two.methods() & STATUS_VALIDATE_STATE, 0);
    let err = two
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect_err("no FlushQueues on this transport");
    assert_eq!(err.code, MapiCode::NoSupport);
    assert!(
        err.cause
            .contains("flush it through the spooler's status object, naming its entry ID"),
        "says what to do: {err}"
    );
    assert_eq!(queued_subjects(&alice).await.len(), 2, "nothing moved");

    // MAPI's second procedure: the spooler's FlushQueues with the transport's entry ID.
    let report = alice
        .spooler_status()
        .flush_queues(Some(&id), FlushFlags::UPLOAD)
        .await
        .expect("flush through the spooler");
    assert_eq!(report.transports.len(), 1);
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(queued_subjects(&alice).await, vec!["via one"]);
}

#[tokio::test]
async fn the_subsystem_and_the_store_have_no_flush_queues() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    for kind in [StatusKind::Subsystem, StatusKind::Store] {
        let status = alice.open_status(&kind.entry_id()).expect("open");
        assert_eq!(status.methods() & STATUS_FLUSH_QUEUES, 0, "{kind:?}");
        let err = status
            .flush_queues(None, FlushFlags::UPLOAD)
            .await
            .expect_err("no FlushQueues");
        assert_eq!(err.code, MapiCode::NoSupport, "{kind:?}");
        // Naming it to the spooler is a transport's way out only: no such hint here.
        assert!(!err.cause.contains("naming its entry ID"), "{err}");
    }
}

#[tokio::test]
async fn upload_moves_only_outbound_and_download_only_inbound() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    let bob = logon(world.simple_profile("bob")).await;
    // Mail waiting for alice in the post office, and mail in alice's queue for bob.
    submit(&bob, "alice@localhost", "for alice").await;
    bob.spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("bob sends");
    assert_eq!(world.delivered("alice@localhost"), 1);
    submit(&alice, "bob@localhost", "first for bob").await;

    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("upload");
    assert!(report.transports[0].upload && !report.transports[0].download);
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(report.transports[0].received, 0);
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert_eq!(world.delivered("alice@localhost"), 1, "not downloaded");
    assert!(subjects(&alice, Folder::Inbox).await.is_empty());

    submit(&alice, "bob@localhost", "second for bob").await;
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::DOWNLOAD)
        .await
        .expect("download");
    assert!(!report.transports[0].upload && report.transports[0].download);
    assert_eq!(report.transports[0].received, 1);
    assert!(report.transports[0].messages.is_empty());
    assert_eq!(world.delivered("alice@localhost"), 0);
    assert_eq!(subjects(&alice, Folder::Inbox).await, vec!["for alice"]);
    assert_eq!(queued_subjects(&alice).await, vec!["second for bob"]);
    assert_eq!(world.delivered("bob@localhost"), 1, "not sent");
}

#[tokio::test]
async fn bad_flags_and_bad_targets_are_refused_and_nothing_moves() {
    let world = World::new();
    let alice = two_transports(&world, true).await;
    let spooler = alice.spooler_status();
    let one = alice
        .open_status(&transport_entry_id(&alice, "one"))
        .expect("open");
    for status in [&spooler, &one] {
        assert_eq!(
            code(status.flush_queues(None, FlushFlags(0)).await),
            MapiCode::InvalidParameter
        );
        assert_eq!(
            code(
                status
                    .flush_queues(None, FlushFlags::FORCE | FlushFlags::NO_UI)
                    .await
            ),
            MapiCode::InvalidParameter
        );
        assert_eq!(
            code(
                status
                    .flush_queues(None, FlushFlags(FLUSH_UPLOAD | 0x100))
                    .await
            ),
            MapiCode::UnknownFlags
        );
        assert_eq!(
            code(status.flush_queues(None, FlushFlags(0x8000_0000)).await),
            MapiCode::UnknownFlags
        );
    }

    let garbage = EntryId::from_bytes(vec![1, 2, 3]);
    let message = alice.outgoing_queue().await.expect("queue")[0]
        .message
        .entry_id();
    for target in [garbage, message] {
        assert_eq!(
            code(
                spooler
                    .flush_queues(Some(&target), FlushFlags::UPLOAD)
                    .await
            ),
            MapiCode::UnknownEntryId,
            "{target}"
        );
    }
    let stranger = StatusKind::Transport("nowhere".into()).entry_id();
    assert_eq!(
        code(
            spooler
                .flush_queues(Some(&stranger), FlushFlags::UPLOAD)
                .await
        ),
        MapiCode::UnknownEntryId
    );
    for kind in [
        StatusKind::Spooler,
        StatusKind::Store,
        StatusKind::Subsystem,
    ] {
        assert_eq!(
            code(
                spooler
                    .flush_queues(Some(&kind.entry_id()), FlushFlags::UPLOAD)
                    .await
            ),
            MapiCode::InvalidParameter,
            "{kind:?}"
        );
    }
    assert_eq!(queued_subjects(&alice).await.len(), 2, "nothing moved");
    assert_eq!(world.delivered("bob@localhost"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_ok_returns_at_once_and_the_work_completes() {
    let world = World::new();
    // The connect command makes the flush take a while, so "at once" is observable.
    let transport = with_connect_command(
        world.transport("local", "alice@localhost"),
        "sleep 0.6",
        false,
    );
    let alice = logon(world.profile("alice", vec![transport])).await;
    world.create_mailbox("bob@localhost");
    submit(&alice, "bob@localhost", "in the background").await;

    let started = Instant::now();
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::ASYNC_OK)
        .await
        .expect("flush");
    let took = started.elapsed();
    assert!(report.asynchronous);
    assert!(report.transports.is_empty());
    assert!(took < Duration::from_millis(500), "returned after {took:?}");
    assert_eq!(world.delivered("bob@localhost"), 0, "not done yet");

    alice
        .spooler()
        .expect("an in-process spooler")
        .wait_idle()
        .await;
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert_eq!(
        subjects(&alice, Folder::SentItems).await,
        vec!["in the background"]
    );
    let spooler_code = alice
        .spooler()
        .expect("an in-process spooler")
        .board()
        .status_code(&StatusKind::Spooler);
    assert_eq!(spooler_code & STATUS_OUTBOUND_FLUSH, 0);
}

#[tokio::test]
async fn async_ok_on_a_transport_object_is_synchronous() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    submit(&alice, "bob@localhost", "now").await;
    let local = alice
        .open_status(&transport_entry_id(&alice, "local"))
        .expect("open");
    let report = local
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::ASYNC_OK)
        .await
        .expect("flush");
    assert!(!report.asynchronous, "only the spooler runs asynchronously");
    assert_eq!(world.delivered("bob@localhost"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_flush_joins_the_running_one_and_nothing_is_sent_twice() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    const N: usize = 60;
    for i in 0..N {
        submit(&alice, "bob@localhost", &format!("message {i}")).await;
    }
    let spooler = alice.spooler_status();
    let local = alice
        .open_status(&transport_entry_id(&alice, "local"))
        .expect("open");
    let (a, b, c) = tokio::join!(
        spooler.flush_queues(None, FlushFlags::UPLOAD),
        spooler.flush_queues(None, FlushFlags::UPLOAD),
        local.flush_queues(None, FlushFlags::UPLOAD),
    );
    let reports = [
        a.expect("first flush"),
        b.expect("second flush, never MAPI_E_BUSY"),
        c.expect("the transport's flush, never MAPI_E_BUSY"),
    ];
    let sent: usize = reports.iter().map(|r| r.transports[0].sent()).sum();
    assert_eq!(sent, N, "each message sent by exactly one of the flushes");
    for r in &reports {
        assert!(r.transports[0].error.is_none(), "{:?}", r.transports[0]);
    }
    assert_eq!(world.delivered("bob@localhost"), N);
    assert!(alice.outgoing_queue().await.expect("queue").is_empty());
    assert_eq!(
        alice.messages(Folder::SentItems).await.expect("sent").len(),
        N
    );
}

#[tokio::test]
async fn force_sends_what_backoff_holds_back_without_resetting_the_backoff() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.break_mailbox("bob@localhost");
    let id = submit(&alice, "bob@localhost", "patience").await.entry_id();
    let spooler = alice.spooler_status();

    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert_eq!(
        report.transports[0].messages[0].outcome,
        MessageOutcome::Deferred
    );
    let first = queued(&alice, &id).await.expect("still queued");
    assert_eq!(first.attempts, 1);
    let first_retry = first.next_attempt_at.expect("a retry time");
    assert!(first_retry > mapi::FileTime::now(), "retry in the future");
    assert_eq!(report.transports[0].messages[0].retry_at, Some(first_retry));

    // A plain flush leaves it alone: its retry time has not come.
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert!(report.transports[0].messages.is_empty());
    assert_eq!(queued(&alice, &id).await.expect("queued").attempts, 1);

    // FORCE tries it now; still broken, so it waits again, longer: the backoff grew.
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("forced flush");
    assert_eq!(report.transports[0].messages.len(), 1, "tried once");
    let second = queued(&alice, &id).await.expect("still queued");
    assert_eq!(second.attempts, 2, "FORCE counts an attempt");
    let second_retry = second.next_attempt_at.expect("a retry time");
    assert!(second_retry > first_retry, "backoff not reset");
    let wait = second_retry
        .to_system_time()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        wait > Duration::from_secs(9 * 60),
        "second delay doubles retry_initial (5m): {wait:?}"
    );

    world.repair_mailbox("bob@localhost");
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert!(
        report.transports[0].messages.is_empty(),
        "still backing off"
    );
    assert_eq!(world.delivered("bob@localhost"), 0);
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("forced flush");
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert!(queued(&alice, &id).await.is_none());
}

#[tokio::test]
async fn no_ui_fails_only_the_transport_that_needs_a_person() {
    let world = World::new();
    let marker = world.path("connect-command-ran");
    let vpn = with_connect_command(
        world.transport("vpn", "alice@localhost"),
        &format!("touch '{}'", marker.display()),
        true,
    );
    assert!(vpn.needs_person());
    let plain = world.transport("plain", "alice.plain@localhost");
    let alice = logon(world.profile("alice", vec![vpn, plain])).await;
    world.create_mailbox("bob@localhost");
    for name in ["vpn", "plain"] {
        submit_with(
            &alice,
            "bob@localhost",
            &format!("via {name}"),
            Submission {
                transport: Some(name.to_string()),
                ..Submission::default()
            },
        )
        .await
        .expect("submit");
    }

    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::NO_UI)
        .await
        .expect("the flush itself succeeds");
    assert!(!report.is_complete());
    let vpn_part = &report.transports[0];
    assert_eq!(vpn_part.transport, "vpn");
    let error = vpn_part.error.clone().expect("the vpn part failed");
    assert!(
        error.starts_with("cannot honour FLUSH_NO_UI"),
        "error: {error}"
    );
    assert!(vpn_part.messages.is_empty());
    let row = alice
        .open_status(&transport_entry_id(&alice, "vpn"))
        .expect("open")
        .props();
    let code = match row.get(PR_STATUS_CODE) {
        Some(PropValue::Long(c)) => *c,
        other => panic!("PR_STATUS_CODE {other:?}"),
    };
    assert_ne!(code & STATUS_FAILURE, 0);
    assert_eq!(
        row.get(PR_STATUS_STRING),
        Some(&PropValue::Unicode(error.clone()))
    );
    let plain_part = &report.transports[1];
    assert_eq!(plain_part.transport, "plain");
    assert!(plain_part.error.is_none());
    assert_eq!(plain_part.sent(), 1);
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert!(!marker.exists(), "the interactive command never ran");
    assert_eq!(queued_subjects(&alice).await, vec!["via vpn"]);

    // Without NO_UI the interactive command runs and the failure clears.
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert!(report.is_complete(), "{report:?}");
    assert!(marker.exists());
    assert_eq!(world.delivered("bob@localhost"), 2);
    let code = alice
        .spooler()
        .expect("an in-process spooler")
        .board()
        .status_code(&StatusKind::Transport("vpn".into()));
    assert_eq!(code & STATUS_FAILURE, 0);
}

#[tokio::test]
async fn force_tries_every_deferred_message_however_long_the_queue() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.break_mailbox("bob@localhost");
    // More than the spooler leases at once, so FORCE must get past the first batch.
    const N: usize = 45;
    for i in 0..N {
        submit(&alice, "bob@localhost", &format!("deferred {i}")).await;
    }
    let spooler = alice.spooler_status();
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert_eq!(report.transports[0].count(MessageOutcome::Deferred), N);

    // Still broken: every message is tried once more and waits again.
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("forced flush");
    assert_eq!(report.transports[0].count(MessageOutcome::Deferred), N);
    let queue = alice.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), N);
    assert!(
        queue.iter().all(|e| e.attempts == 2),
        "attempts: {:?}",
        queue.iter().map(|e| e.attempts).collect::<Vec<_>>()
    );

    world.repair_mailbox("bob@localhost");
    let report = spooler
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("forced flush");
    assert_eq!(report.transports[0].sent(), N, "every message tried once");
    assert_eq!(world.delivered("bob@localhost"), N);
    assert!(alice.outgoing_queue().await.expect("queue").is_empty());
}

/// An interactive `connect_command` (a VPN that asks for a one-time code) runs once per flush,
/// not once for sending and again for receiving (issue 19.8): the person is asked once. A
/// second flush runs it again.
#[tokio::test]
async fn an_interactive_connect_command_runs_once_per_flush_not_per_direction() {
    let world = World::new();
    let runs = world.path("connect-command-runs");
    let vpn = with_connect_command(
        world.transport("vpn", "alice@localhost"),
        &format!("echo run >> '{}'", runs.display()),
        true,
    );
    let alice = logon(world.profile("alice", vec![vpn])).await;
    world.create_mailbox("alice@localhost");
    // Mail both ways: one to send, and (once sent to herself) one to receive.
    submit(&alice, "alice@localhost", "both ways").await;
    let count = || {
        std::fs::read_to_string(&runs)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD)
        .await
        .expect("flush");
    assert_eq!(report.transports[0].sent(), 1, "{report:?}");
    assert_eq!(report.transports[0].received, 1, "{report:?}");
    assert_eq!(count(), 1, "one flush, both directions, one run");
    alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD)
        .await
        .expect("flush");
    assert_eq!(count(), 2, "the next flush runs it again");
}

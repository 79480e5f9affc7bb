//! Issue 8, send/receive control: flushing one message, overlapping flushes, delay notices and
//! expiry, transport backoff, send/receive groups on their own clocks, offline mode, and the
//! per-recipient queue.

mod common;

#[path = "peers/fake_smtp.rs"]
mod fake_smtp;

use std::time::Duration;

use common::*;
use mapi::constants::*;
use mapi::tag::*;
use mapi::{MapiCode, PropValue};
use mapispool::flush::MessageOutcome;
use mapispool::status::StatusKind;
use mapispool::store::Folder;
use mapispool::{FlushFlags, Session, Submission};

async fn upload(session: &Session) -> mapispool::FlushReport {
    session
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush")
}

/// A scripted SMTP server that answers RCPT with `reply` for an address containing `word`,
/// and accepts every other.
async fn smtp_refusing(word: &'static str, reply: &'static str) -> fake_smtp::FakeSmtp {
    fake_smtp::FakeSmtp::start(fake_smtp::Knobs {
        rcpt: std::sync::Arc::new(move |addr: &str| {
            if addr.contains(word) {
                reply.into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..fake_smtp::Knobs::default()
    })
    .await
}

/// Alice, logged on with one SMTP transport to `port`.
async fn alice_on_smtp(world: &World, port: u16) -> Session {
    logon(world.profile(
        "alice",
        vec![smtp_transport("smtp", "alice@example.com", port)],
    ))
    .await
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
async fn flushing_one_message_sends_only_it_and_bypasses_its_backoff_once() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    submit(&alice, "bob@localhost", "first").await;
    let second = submit(&alice, "bob@localhost", "second").await;
    let report = alice
        .flush_message(&second.entry_id, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD)
        .await
        .expect("flush one message");
    assert_eq!(report.transports.len(), 1);
    assert_eq!(report.transports[0].messages.len(), 1);
    assert_eq!(report.transports[0].messages[0].entry_id, second.entry_id);
    assert_eq!(report.transports[0].sent(), 1);
    assert!(!report.transports[0].download, "nothing is received");
    assert_eq!(world.delivered("bob@localhost"), 1);
    assert_eq!(queued_subjects(&alice).await, vec!["first"]);

    // A deferred message waits for its retry; naming it sends it now.
    world.break_mailbox("carol@localhost");
    let third = submit(&alice, "carol@localhost", "third").await;
    let report = alice
        .flush_message(&third.entry_id, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert_eq!(
        report.transports[0].messages[0].outcome,
        MessageOutcome::Deferred
    );
    world.repair_mailbox("carol@localhost");
    let report = alice
        .flush_message(&third.entry_id, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert_eq!(report.transports[0].sent(), 1, "backoff bypassed");
    assert_eq!(world.delivered("carol@localhost"), 1);
    assert_eq!(
        queued_subjects(&alice).await,
        vec!["first"],
        "still only it"
    );

    // Sent now: no longer queued.
    assert_eq!(
        code(
            alice
                .flush_message(&third.entry_id, FlushFlags::UPLOAD)
                .await
        ),
        MapiCode::NotInQueue
    );
    let status_id = StatusKind::Spooler.entry_id();
    assert_eq!(
        code(alice.flush_message(&status_id, FlushFlags::UPLOAD).await),
        MapiCode::InvalidEntryId
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_flushes_keep_the_spoolers_flush_bit_until_the_last_ends() {
    let world = World::new();
    let slow = with_connect_command(world.transport("slow", "alice@localhost"), "sleep 1", false);
    let fast = world.transport("fast", "alice.fast@localhost");
    let alice = logon(world.profile("alice", vec![slow, fast])).await;
    world.create_mailbox("bob@localhost");
    for name in ["slow", "fast"] {
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
    let spooler_bits = |s: &Session| s.board().status_code(&StatusKind::Spooler);
    let background = alice.clone();
    let slow_flush = tokio::spawn(async move {
        let slow = background.transport_status("slow").expect("slow");
        background
            .spooler_status()
            .flush_queues(Some(&slow.entry_id()), FlushFlags::UPLOAD)
            .await
            .expect("slow flush")
    });
    assert!(
        eventually(Duration::from_secs(5), async || {
            spooler_bits(&alice) & STATUS_OUTBOUND_FLUSH != 0
        })
        .await,
        "the slow flush started"
    );
    let fast_id = alice.transport_status("fast").expect("fast").entry_id();
    let report = alice
        .spooler_status()
        .flush_queues(Some(&fast_id), FlushFlags::UPLOAD)
        .await
        .expect("fast flush");
    assert_eq!(report.transports[0].sent(), 1);
    assert!(
        spooler_bits(&alice) & STATUS_OUTBOUND_FLUSH != 0,
        "the slow flush still runs, so the spooler still says it flushes"
    );
    let report = slow_flush.await.expect("joined");
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(
        spooler_bits(&alice) & (STATUS_OUTBOUND_FLUSH | STATUS_INBOUND_FLUSH),
        0,
        "cleared once the last flush ended"
    );
}

#[tokio::test]
async fn a_delay_notice_goes_out_once_and_expiry_gives_one_report() {
    let world = World::new();
    let mut profile = world.simple_profile("alice");
    profile.spooler.delay_warning_after = Duration::from_millis(200);
    profile.spooler.expire_after = Duration::from_millis(900);
    let alice = logon(profile).await;
    world.break_mailbox("bob@localhost");
    submit(&alice, "bob@localhost", "slow one").await;
    let force = FlushFlags::UPLOAD | FlushFlags::FORCE;
    let report = upload(&alice).await;
    assert_eq!(
        report.transports[0].messages[0].outcome,
        MessageOutcome::Deferred
    );
    assert!(
        subjects(&alice, Folder::Inbox).await.is_empty(),
        "too young for a notice"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..2 {
        let report = alice
            .spooler_status()
            .flush_queues(None, force)
            .await
            .expect("forced flush");
        assert_eq!(
            report.transports[0].messages[0].outcome,
            MessageOutcome::Deferred
        );
    }
    let inbox = alice.messages(Folder::Inbox).await.expect("inbox");
    assert_eq!(inbox.len(), 1, "one delay notice, not one per retry");
    assert_eq!(inbox[0].subject, "Delayed: slow one");
    assert_eq!(inbox[0].message_class, "REPORT.IPM.Note.Delayed");
    assert_eq!(inbox[0].envelope_from.as_deref(), Some(""), "null sender");
    let body = String::from_utf8(
        alice
            .message_body(&inbox[0].entry_id())
            .await
            .expect("body"),
    )
    .expect("text");
    assert!(body.contains("Action: delayed"), "{body}");
    assert!(
        body.contains("Final-Recipient: rfc822; bob@localhost"),
        "{body}"
    );

    // A later process over the same store does not send a second one.
    let profile = alice.profile().clone();
    alice.logoff().await;
    let alice = logon(profile).await;
    alice
        .spooler_status()
        .flush_queues(None, force)
        .await
        .expect("forced flush");
    assert_eq!(
        subjects(&alice, Folder::Inbox).await,
        vec!["Delayed: slow one"]
    );

    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..2 {
        alice
            .spooler_status()
            .flush_queues(None, force)
            .await
            .expect("forced flush");
    }
    assert!(alice.outgoing_queue().await.expect("queue").is_empty());
    assert_eq!(
        subjects(&alice, Folder::Inbox).await,
        vec!["Delayed: slow one", "Undeliverable: slow one"],
        "expiry gives exactly one final report"
    );
}

#[tokio::test]
async fn no_report_answers_a_report() {
    let world = World::new();
    let mut profile = world.simple_profile("alice");
    profile.spooler.delay_warning_after = Duration::from_millis(100);
    let alice = logon(profile).await;
    world.break_mailbox("bob@localhost");
    // A report of our own (the null sender) that cannot be delivered for a while, then for good.
    submit_with(
        &alice,
        "bob@localhost",
        "a report",
        Submission {
            from: Some(String::new()),
            ..Submission::default()
        },
    )
    .await
    .expect("submit");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = upload(&alice).await;
    assert_eq!(
        report.transports[0].messages[0].outcome,
        MessageOutcome::Deferred
    );
    submit_with(
        &alice,
        "nobody@localhost",
        "another report",
        Submission {
            from: Some(String::new()),
            ..Submission::default()
        },
    )
    .await
    .expect("submit");
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("flush");
    assert!(
        report.transports[0]
            .messages
            .iter()
            .any(|m| m.outcome == MessageOutcome::Failed)
    );
    assert!(
        subjects(&alice, Folder::Inbox).await.is_empty(),
        "neither a delay notice nor an NDR for a report"
    );
}

fn smtp_transport(name: &str, address: &str, port: u16) -> mapispool::profile::TransportConfig {
    use mapispool::profile::{OutboundConfig, TransportConfig};
    TransportConfig {
        name: name.into(),
        address: address.into(),
        display_name: None,
        outbound: Some(OutboundConfig::Smtp(loopback_smtp(port))),
        inbound: None,
        connect_command: None,
        flush_queues: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_connections_send_every_message_exactly_once_in_queue_order_of_handout() {
    let server = fake_smtp::FakeSmtp::start(fake_smtp::Knobs {
        // Slow greetings: the workers' connections are open at the same time.
        greeting_delay: Duration::from_millis(50),
        ..fake_smtp::Knobs::default()
    })
    .await;
    let world = World::new();
    let mut transport = smtp_transport("smtp", "alice@example.com", server.port);
    if let Some(mapispool::profile::OutboundConfig::Smtp(c)) = &mut transport.outbound {
        c.connections = 4;
    }
    let alice = logon(world.profile("alice", vec![transport])).await;
    let n = 60;
    for i in 0..n {
        submit(&alice, "bob@example.com", &format!("parallel {i:03}")).await;
    }
    let report = upload(&alice).await;
    let subjects_sent: Vec<String> = report.transports[0]
        .messages
        .iter()
        .map(|m| {
            assert_eq!(m.outcome, MessageOutcome::Sent, "{}", m.subject);
            m.subject.clone()
        })
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("parallel {i:03}")).collect();
    assert_eq!(
        subjects_sent, expected,
        "the report lists messages in queue order"
    );
    let mut got: Vec<String> = server
        .received()
        .iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.data);
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                .expect("subject")
        })
        .collect();
    got.sort();
    assert_eq!(got, expected, "every message exactly once");
    assert!(
        server.connections() <= 4,
        "at most `connections` connections: {}",
        server.connections()
    );
    assert!(
        server.peak_open() >= 2,
        "connections in parallel: peak {}",
        server.peak_open()
    );
    assert!(queued_subjects(&alice).await.is_empty());
}

#[tokio::test]
async fn a_poisoned_message_does_not_delay_the_others() {
    let server = smtp_refusing(
        "poison",
        "550 5.1.1 <poison@example.com>: Recipient address rejected",
    )
    .await;
    let world = World::new();
    let alice = alice_on_smtp(&world, server.port).await;
    submit(&alice, "poison@example.com", "poisoned").await;
    submit(&alice, "bob@example.com", "fine one").await;
    submit(&alice, "carol@example.com", "fine two").await;
    let report = upload(&alice).await;
    let outcomes: Vec<(String, MessageOutcome)> = report.transports[0]
        .messages
        .iter()
        .map(|m| (m.subject.clone(), m.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("poisoned".to_string(), MessageOutcome::Failed),
            ("fine one".to_string(), MessageOutcome::Sent),
            ("fine two".to_string(), MessageOutcome::Sent),
        ]
    );
    assert_eq!(server.received().len(), 2);
    assert!(alice.outgoing_queue().await.expect("queue").is_empty());
    let inbox = alice.messages(Folder::Inbox).await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    let body = String::from_utf8(
        alice
            .message_body(&inbox[0].entry_id())
            .await
            .expect("body"),
    )
    .expect("text");
    assert!(
        body.contains("Recipient address rejected"),
        "the server's words: {body}"
    );
}

/// A port nothing listens on: connections to it are refused.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test]
async fn a_transport_that_cannot_connect_backs_off_as_a_whole() {
    let world = World::new();
    let port = closed_port().await;
    let mut profile = world.profile(
        "alice",
        vec![smtp_transport("down", "alice@example.com", port)],
    );
    profile.spooler.upload_interval = Some(Duration::from_millis(20));
    let alice = logon(profile).await;
    submit(&alice, "bob@example.com", "waits").await;
    let report = upload(&alice).await;
    assert!(report.transports[0].error.is_some(), "cannot connect");
    let kind = StatusKind::Transport("down".into());
    let row = alice.board().row(&kind).expect("row");
    let status = match row.get(PR_STATUS_STRING) {
        Some(PropValue::Unicode(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(status.starts_with("waiting until "), "{status}");
    assert_eq!(
        row.get(PR_MSP_PHASE),
        Some(&PropValue::Unicode("waiting".into()))
    );
    assert!(matches!(
        row.get(PR_MSP_NEXT_ATTEMPT_TIME),
        Some(PropValue::SysTime(_))
    ));
    // A fresh message is due at once, but the spooler's clock leaves the whole transport alone
    // for retry_initial (5 minutes by default).
    let fresh = submit(&alice, "carol@example.com", "fresh").await;
    let last_flush = || {
        alice
            .board()
            .row(&StatusKind::Spooler)
            .and_then(|r| r.get(PR_MSP_LAST_FLUSH_TIME).cloned())
    };
    let mut last = last_flush();
    let spooler = alice.spooler().expect("in-process").clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let schedules = tokio::spawn(async move {
        spooler
            .run_schedules(async {
                let _ = stopped.await;
            })
            .await
    });
    // Two scheduled flushes have ended (each stamps the spooler row's last flush time).
    let mut scheduled = 0;
    assert!(
        eventually(Duration::from_secs(20), async || {
            let now = last_flush();
            if now != last {
                scheduled += 1;
                last = now;
            }
            scheduled >= 2
        })
        .await,
        "the schedule never flushed"
    );
    let _ = stop.send(());
    schedules.await.expect("schedules end");
    let entry = queued(&alice, &fresh.entry_id).await.expect("queued");
    assert_eq!(
        entry.attempts, 0,
        "scheduled flushes did not try the transport"
    );
    // An explicit flush still tries the transport; its failure is the transport's, so it
    // counts no attempt of the message (issue 19.4), which waits as long as the transport.
    let report = upload(&alice).await;
    assert!(report.transports[0].error.is_some());
    let fresh_report = report.transports[0]
        .messages
        .iter()
        .find(|m| m.entry_id == fresh.entry_id)
        .expect("the fresh message was tried");
    assert_eq!(fresh_report.outcome, MessageOutcome::Deferred);
    assert!(
        fresh_report.retry_at.is_some(),
        "until the transport's wait ends"
    );
    let entry = queued(&alice, &fresh.entry_id).await.expect("queued");
    assert_eq!(entry.attempts, 0);
}

/// Moves the test clock on by `by` at once, as if that long had passed. The clock runs in real
/// time otherwise, so the store's worker threads (and sqlx's pool timeouts) see no jumps while
/// they work; the schedules' minutes pass only here.
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
    tokio::task::yield_now().await;
}

/// Waits until `check` holds and no flush runs: whether that happened within 10 s.
async fn settle(session: &Session, mut check: impl AsyncFnMut() -> bool) -> bool {
    eventually(Duration::from_secs(10), async || {
        check().await
            && session.board().status_code(&StatusKind::Spooler)
                & (STATUS_OUTBOUND_FLUSH | STATUS_INBOUND_FLUSH)
                == 0
    })
    .await
}

#[tokio::test]
async fn two_groups_move_mail_on_their_own_clocks() {
    use mapispool::profile::{Direction, GroupConfig, OfflinePolicy};
    let world = World::new();
    let mut profile = world.profile(
        "alice",
        vec![
            world.transport("fast", "alice@localhost"),
            world.transport("slow", "alice.slow@localhost"),
        ],
    );
    let group = |name: &str, transport: &str, every: u64| GroupConfig {
        name: name.into(),
        transports: vec![transport.into()],
        direction: Direction::Send,
        upload_interval: Some(Duration::from_secs(every * 60)),
        download_interval: None,
        offline: OfflinePolicy::Skip,
    };
    profile.groups = vec![group("often", "fast", 10), group("seldom", "slow", 25)];
    world.create_mailbox("bob@localhost");
    let alice = logon(profile).await;
    let via = async |name: &str, subject: &str| {
        submit_with(
            &alice,
            "bob@localhost",
            subject,
            Submission {
                transport: Some(name.to_string()),
                ..Submission::default()
            },
        )
        .await
        .expect("submit")
    };
    via("fast", "fast 1").await;
    via("slow", "slow 1").await;

    let spooler = alice.spooler().expect("in-process").clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let schedules = tokio::spawn(async move {
        spooler
            .run_schedules(async {
                let _ = stopped.await;
            })
            .await
    });
    let post_office = world.post_office.clone();
    let bob = |n: usize| {
        let post_office = post_office.clone();
        async move || delivered(&post_office, "bob@localhost") == n
    };
    // Both groups flush once at start.
    assert!(settle(&alice, bob(2)).await);
    via("fast", "fast 2").await;
    via("slow", "slow 2").await;

    jump(Duration::from_secs(9 * 60)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(world.delivered("bob@localhost"), 2, "no group is due yet");
    jump(Duration::from_secs(60)).await;
    assert!(
        settle(&alice, bob(3)).await,
        "\"often\" flushed at 10 minutes"
    );
    assert_eq!(queued_subjects(&alice).await, vec!["slow 2"]);
    via("fast", "fast 3").await;

    jump(Duration::from_secs(10 * 60)).await;
    assert!(
        settle(&alice, bob(4)).await,
        "\"often\" again at 20 minutes"
    );
    assert_eq!(
        queued_subjects(&alice).await,
        vec!["slow 2"],
        "\"seldom\" waits for its own clock"
    );
    jump(Duration::from_secs(5 * 60)).await;
    assert!(
        settle(&alice, bob(5)).await,
        "\"seldom\" flushed at 25 minutes"
    );
    assert!(queued_subjects(&alice).await.is_empty());
    let _ = stop.send(());
    schedules.await.expect("schedules end");
}

#[test]
fn groups_are_read_from_the_profile_and_their_transports_checked() {
    let base = "[store]\npath = \"/tmp/x.db\"\n\n[[transport]]\nname = \"a\"\naddress = \"a@localhost\"\n[transport.outbound]\nkind = \"dir\"\npath = \"/tmp/po\"\n\n[[transport]]\nname = \"b\"\naddress = \"b@localhost\"\n[transport.outbound]\nkind = \"dir\"\npath = \"/tmp/po\"\n\n";
    let good = format!(
        "{base}[[group]]\nname = \"quick\"\ntransports = [\"b\", \"a\"]\ndirection = \"send\"\nupload_interval = \"10m\"\noffline = \"include\"\n"
    );
    let profile =
        mapispool::Profile::from_str_at(&good, std::path::Path::new("/tmp/p.toml")).expect("valid");
    let groups = profile.groups();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["all", "quick"], "the default group is added");
    assert_eq!(groups[0].transports, vec!["a", "b"]);
    assert_eq!(groups[1].transports, vec!["a", "b"], "profile order");
    assert_eq!(groups[1].upload_interval, Some(Duration::from_secs(600)));
    // What is written reads back the same.
    let again = mapispool::Profile::from_str_at(
        &profile.to_toml_string().expect("toml"),
        std::path::Path::new("/tmp/p.toml"),
    )
    .expect("reads back");
    assert_eq!(again.groups, profile.groups);

    let bad = format!("{base}[[group]]\nname = \"quick\"\ntransports = [\"a\", \"c\"]\n");
    let err = mapispool::Profile::from_str_at(&bad, std::path::Path::new("/tmp/p.toml"))
        .expect_err("unknown transport")
        .to_string();
    assert!(err.contains("there is no transport \"c\""), "{err}");
    assert!(err.contains("p.toml:20:1:"), "points at the key: {err}");
}

fn transport_code(session: &Session, name: &str) -> i32 {
    session
        .board()
        .status_code(&StatusKind::Transport(name.into()))
}

fn status_string(session: &Session, kind: &StatusKind) -> String {
    match session
        .board()
        .row(kind)
        .and_then(|r| r.get(PR_STATUS_STRING).cloned())
    {
        Some(PropValue::Unicode(s)) => s,
        other => panic!("no status string: {other:?}"),
    }
}

/// An SMTP server that accepts everything and counts the connections it accepts.
async fn counting_server() -> fake_smtp::FakeSmtp {
    fake_smtp::FakeSmtp::start(fake_smtp::Knobs::default()).await
}

#[tokio::test]
async fn offline_queues_durably_connects_nothing_and_survives_a_restart_then_online_sends_at_once()
{
    let server = counting_server().await;
    let world = World::new();
    let mut profile = world.profile(
        "alice",
        vec![smtp_transport("smtp", "alice@example.com", server.port)],
    );
    profile.spooler.send_on_reconnect = true;
    let alice = logon(profile.clone()).await;
    alice
        .transport_status("smtp")
        .expect("transport")
        .validate_state(FORCE_XP_DISCONNECT)
        .await
        .expect("offline");
    assert_ne!(transport_code(&alice, "smtp") & STATUS_OFFLINE, 0);
    assert_eq!(transport_code(&alice, "smtp") & STATUS_AVAILABLE, 0);
    assert_eq!(
        status_string(&alice, &StatusKind::Transport("smtp".into())),
        "Offline"
    );
    // Its only transport is offline: so is the spooler.
    assert_ne!(
        alice.board().status_code(&StatusKind::Spooler) & STATUS_OFFLINE,
        0
    );
    let letter = submit(&alice, "bob@example.com", "written offline").await;
    let report = upload(&alice).await;
    assert!(
        report.transports[0]
            .skipped
            .as_deref()
            .is_some_and(|e| e.contains("offline")),
        "{report:?}"
    );
    assert!(!report.is_complete(), "nothing could go: {report:?}");
    let one = alice
        .flush_message(&letter.entry_id, FlushFlags::UPLOAD)
        .await;
    assert!(one.expect("flush one").transports[0].error.is_some());
    assert_eq!(queued_subjects(&alice).await, vec!["written offline"]);

    // A restart (or the next one-shot command) finds the switch where it was left.
    alice.logoff().await;
    let alice = logon(profile.clone()).await;
    assert_ne!(transport_code(&alice, "smtp") & STATUS_OFFLINE, 0);
    assert_eq!(
        status_string(&alice, &StatusKind::Transport("smtp".into())),
        "Offline"
    );
    let report = upload(&alice).await;
    assert!(report.transports[0].skipped.is_some(), "{report:?}");
    assert!(!report.is_complete());
    let entry = queued(&alice, &letter.entry_id)
        .await
        .expect("still queued");
    assert_eq!(entry.attempts, 0, "never tried while offline");
    assert_eq!(server.connections(), 0, "nothing connected while offline");

    // Back online on the spooler (every transport): send_on_reconnect sends the queue now.
    alice
        .spooler_status()
        .validate_state(FORCE_XP_CONNECT)
        .await
        .expect("online");
    assert!(queued_subjects(&alice).await.is_empty(), "sent at once");
    assert_eq!(server.received().len(), 1);
    assert_eq!(server.connections(), 1);
    assert_eq!(transport_code(&alice, "smtp") & STATUS_OFFLINE, 0);
    assert_ne!(transport_code(&alice, "smtp") & STATUS_AVAILABLE, 0);
    assert_eq!(
        alice.board().status_code(&StatusKind::Spooler) & STATUS_OFFLINE,
        0
    );
    alice.logoff().await;
    // Online is saved too.
    let alice = logon(profile).await;
    assert_eq!(transport_code(&alice, "smtp") & STATUS_OFFLINE, 0);
}

#[tokio::test]
async fn back_online_without_send_on_reconnect_the_queue_waits_for_a_flush() {
    let server = counting_server().await;
    let world = World::new();
    let profile = world.profile(
        "alice",
        vec![smtp_transport("smtp", "alice@example.com", server.port)],
    );
    assert!(!profile.spooler.send_on_reconnect, "the default");
    let alice = logon(profile).await;
    let spooler = alice.spooler_status();
    spooler
        .validate_state(FORCE_XP_DISCONNECT)
        .await
        .expect("offline");
    submit(&alice, "bob@example.com", "waits for a flush").await;
    spooler
        .validate_state(FORCE_XP_CONNECT)
        .await
        .expect("online");
    assert_eq!(queued_subjects(&alice).await, vec!["waits for a flush"]);
    assert_eq!(server.connections(), 0, "going online alone sends nothing");
    assert_eq!(
        status_string(&alice, &StatusKind::Transport("smtp".into())),
        "Idle"
    );
    let report = upload(&alice).await;
    assert_eq!(report.transports[0].sent(), 1);
    assert!(queued_subjects(&alice).await.is_empty());
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn one_transport_offline_leaves_the_others_and_the_spooler_online() {
    let world = World::new();
    world.create_mailbox("bob@localhost");
    let profile = world.profile(
        "alice",
        vec![
            world.transport("home", "alice@localhost"),
            world.transport("work", "alice.work@localhost"),
        ],
    );
    let alice = logon(profile.clone()).await;
    alice
        .transport_status("work")
        .expect("work")
        .validate_state(FORCE_XP_DISCONNECT)
        .await
        .expect("offline");
    assert_eq!(
        alice.board().status_code(&StatusKind::Spooler) & STATUS_OFFLINE,
        0,
        "one transport is still online"
    );
    submit_with(
        &alice,
        "bob@localhost",
        "via work",
        Submission {
            transport: Some("work".into()),
            ..Submission::default()
        },
    )
    .await
    .expect("submit");
    submit(&alice, "bob@localhost", "via home").await;
    // A flush of every transport leaves the offline one out, as Outlook's Send/Receive All
    // leaves out an account that works offline: not a failure.
    let report = upload(&alice).await;
    assert!(report.is_complete(), "{report:?}");
    let work = &report.transports[1];
    assert_eq!(work.transport, "work");
    assert!(work.error.is_none(), "{work:?}");
    assert!(
        work.skipped
            .as_deref()
            .is_some_and(|s| s.contains("offline")),
        "{work:?}"
    );
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(queued_subjects(&alice).await, vec!["via work"]);
    assert_eq!(world.delivered("bob@localhost"), 1);
    // Named, it is asked for: then offline is a failure that says how to go online.
    let named = alice
        .transport_status("work")
        .expect("work")
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert!(!named.is_complete());
    assert!(
        named.transports[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("FORCE_XP_CONNECT")),
        "{named:?}"
    );
    // Every transport offline: a flush of all did nothing, which is not complete.
    alice
        .transport_status("home")
        .expect("home")
        .validate_state(FORCE_XP_DISCONNECT)
        .await
        .expect("offline");
    let none = upload(&alice).await;
    assert!(none.transports.iter().all(|t| t.skipped.is_some()));
    assert!(!none.is_complete(), "{none:?}");
    alice
        .transport_status("home")
        .expect("home")
        .validate_state(FORCE_XP_CONNECT)
        .await
        .expect("online");
    alice.logoff().await;
    let alice = logon(profile).await;
    assert_ne!(transport_code(&alice, "work") & STATUS_OFFLINE, 0);
    assert_eq!(transport_code(&alice, "home") & STATUS_OFFLINE, 0);
}

#[tokio::test]
async fn the_queue_per_recipient_shows_a_deferred_recipient_with_the_servers_words() {
    use mapi::restriction::Restriction;
    use mapi::table::hr_query_all_rows;
    let server = smtp_refusing(
        "busy",
        "450 4.2.1 <busy@example.com>: Mailbox busy, try again later",
    )
    .await;
    let world = World::new();
    let alice = alice_on_smtp(&world, server.port).await;
    let text = "From: <alice@example.com>\r\nTo: <busy@example.com>, <fine@example.com>\r\nSubject: two of them\r\n\r\nHello.\r\n";
    let letter = alice
        .submit(Submission::default(), text.as_bytes())
        .await
        .expect("submit");
    let before = hr_query_all_rows(
        &mut alice.outgoing_recipients_table().await.expect("table"),
        None,
        None,
        None,
        0,
    )
    .expect("rows");
    assert_eq!(before.len(), 2);
    assert!(
        before
            .iter()
            .all(|r| r.get(PR_MSP_QUEUE_STATE) == Some(&PropValue::Unicode("queued".into())))
    );
    upload(&alice).await;
    let columns = [
        PR_ENTRYID,
        PR_SUBJECT,
        PR_EMAIL_ADDRESS,
        PR_RECIPIENT_TYPE,
        PR_MSP_QUEUE_STATE,
        PR_MSP_ATTEMPTS,
        PR_MSP_LAST_ERROR,
        PR_MSP_NEXT_ATTEMPT_TIME,
    ];
    let rows = hr_query_all_rows(
        &mut alice.outgoing_recipients_table().await.expect("table"),
        Some(&columns),
        None,
        None,
        0,
    )
    .expect("rows");
    let row = |address: &str| {
        rows.iter()
            .find(|r| r.get(PR_EMAIL_ADDRESS) == Some(&PropValue::Unicode(address.into())))
            .unwrap_or_else(|| panic!("a row for {address}: {rows:?}"))
            .clone()
    };
    let busy = row("busy@example.com");
    let eid = letter.entry_id.as_bytes().to_vec();
    assert_eq!(busy.get(PR_ENTRYID), Some(&PropValue::Binary(eid.clone())));
    assert_eq!(
        busy.get(PR_SUBJECT),
        Some(&PropValue::Unicode("two of them".into()))
    );
    assert_eq!(busy.get(PR_RECIPIENT_TYPE), Some(&PropValue::Long(MAPI_TO)));
    assert_eq!(
        busy.get(PR_MSP_QUEUE_STATE),
        Some(&PropValue::Unicode("deferred".into()))
    );
    assert_eq!(busy.get(PR_MSP_ATTEMPTS), Some(&PropValue::Long(1)));
    match busy.get(PR_MSP_LAST_ERROR) {
        Some(PropValue::Unicode(e)) => assert!(e.contains("Mailbox busy, try again later"), "{e}"),
        other => panic!("the server's words: {other:?}"),
    }
    assert!(matches!(
        busy.get(PR_MSP_NEXT_ATTEMPT_TIME),
        Some(PropValue::SysTime(_))
    ));
    let fine = row("fine@example.com");
    assert_eq!(
        fine.get(PR_MSP_QUEUE_STATE),
        Some(&PropValue::Unicode("sent".into()))
    );
    // --where works on it: only what waits.
    let waiting = hr_query_all_rows(
        &mut alice.outgoing_recipients_table().await.expect("table"),
        Some(&[PR_EMAIL_ADDRESS]),
        Some(&Restriction::parse(r#"PR_MSP_QUEUE_STATE == "deferred""#).expect("restriction")),
        None,
        0,
    )
    .expect("rows");
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        waiting[0].get(PR_EMAIL_ADDRESS),
        Some(&PropValue::Unicode("busy@example.com".into()))
    );
}

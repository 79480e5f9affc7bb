//! What mapispool puts on the wire, byte for byte (issue 12): Bcc never leaves the machine,
//! 8-bit only where the server takes it, recipients past a server's per-transaction limit in a
//! new transaction at once. A scripted server records the exact bytes; the stored copy is
//! checked to stay as submitted.

mod common;
#[path = "peers/fake_smtp.rs"]
mod fake_smtp;

use common::*;
use fake_smtp::{FakeSmtp, Knobs};
use mapispool::profile::{OutboundConfig, Security, SmtpConfig, TransportConfig};
use mapispool::store::Folder;
use mapispool::{FlushFlags, FlushReport, Session, Submission};

fn smtp_config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: None,
        credential: None,
        auth: None,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: false,
        max_messages_per_connection: None,
        pipelining: true,
        connections: 1,
    }
}

async fn alice_on(world: &World, port: u16, pipelining: bool) -> Session {
    let mut config = smtp_config(port);
    config.pipelining = pipelining;
    logon(world.profile(
        "alice",
        vec![TransportConfig {
            name: "smtp".into(),
            address: "alice@example.com".into(),
            display_name: None,
            outbound: Some(OutboundConfig::Smtp(config)),
            inbound: None,
            connect_command: None,
            flush_queues: true,
        }],
    ))
    .await
}

async fn flush(session: &Session) -> FlushReport {
    session
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush")
}

/// Submits `message` to envelope recipients `to` (or the header recipients when empty).
async fn submit_to(session: &Session, to: &[&str], message: &[u8]) {
    let submission = Submission {
        recipients: to.iter().map(|s| s.to_string()).collect(),
        ..Submission::default()
    };
    session.submit(submission, message).await.expect("submit");
}

async fn sent_items_body(session: &Session) -> Vec<u8> {
    let sent = session.messages(Folder::SentItems).await.expect("sent");
    assert_eq!(sent.len(), 1, "one message in Sent Items");
    session
        .message_body(&sent[0].entry_id())
        .await
        .expect("body")
}

// With Date: and Message-ID: of their own, so submit adds none and the bytes are fixed.
const WITH_BCC: &[u8] = b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nBcc: <carol@example.org>,\r\n <dave@example.org>\r\nSubject: s\r\nbcc: <erin@example.org>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <bcc@test>\r\n\r\nhi\r\nBcc: stays in the body\r\n";
const WITHOUT_BCC: &[u8] = b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: s\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <bcc@test>\r\n\r\nhi\r\nBcc: stays in the body\r\n";

#[tokio::test]
async fn bcc_never_reaches_the_smtp_server_and_sent_items_keeps_it() {
    for pipelining in [true, false] {
        let server = FakeSmtp::start(Knobs::default()).await;
        let world = World::new();
        let alice = alice_on(&world, server.port, pipelining).await;
        // Envelope recipients given: with two Bcc fields, header parsing is submit's business.
        let everyone = [
            "bob@example.org",
            "carol@example.org",
            "dave@example.org",
            "erin@example.org",
        ];
        submit_to(&alice, &everyone, WITH_BCC).await;
        let report = flush(&alice).await;
        let got = server.received();
        assert_eq!(got.len(), 1, "{report:?}");
        let mut rcpts = got[0].rcpts.clone();
        rcpts.sort();
        assert_eq!(
            rcpts, everyone,
            "every Bcc recipient is an envelope recipient"
        );
        assert_eq!(
            String::from_utf8_lossy(&got[0].data),
            String::from_utf8_lossy(WITHOUT_BCC),
            "exactly the message minus its Bcc fields (pipelining {pipelining})"
        );
        assert_eq!(sent_items_body(&alice).await, WITH_BCC.to_vec());
    }
}

#[tokio::test]
async fn bcc_never_reaches_the_post_office() {
    let world = World::new();
    for who in ["bob@example.org", "carol@example.org"] {
        world.create_mailbox(who);
    }
    let alice =
        logon(world.profile("alice", vec![world.transport("local", "alice@example.com")])).await;
    let message = b"From: <alice@example.com>\nTo: <bob@example.org>\nBCC: <carol@example.org>\nSubject: s\nDate: Mon, 7 Dec 2026 09:00:00 +0000\nMessage-ID: <po@test>\n\nhi\n";
    // Recipients from the headers, Bcc included (`sendmail -t`).
    submit_to(&alice, &[], message).await;
    flush(&alice).await;
    for who in ["bob@example.org", "carol@example.org"] {
        let files: Vec<_> = std::fs::read_dir(world.mailbox_new(who))
            .expect("mailbox")
            .filter_map(Result::ok)
            .collect();
        assert_eq!(files.len(), 1, "{who}");
        let copy = std::fs::read(files[0].path()).expect("copy");
        assert_eq!(
            String::from_utf8_lossy(&copy),
            "From: <alice@example.com>\nTo: <bob@example.org>\nSubject: s\nDate: Mon, 7 Dec 2026 09:00:00 +0000\nMessage-ID: <po@test>\n\nhi\n",
            "{who}'s copy"
        );
    }
    assert_eq!(sent_items_body(&alice).await, message.to_vec());
}

/// RFC 5321 §4.5.3.1.10: what a server has no room for goes in a new transaction on the same
/// connection at once, never on the retry schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recipients_to_a_server_taking_a_thousand_go_in_one_flush() {
    for pipelining in [true, false] {
        let server = FakeSmtp::start(Knobs {
            max_rcpts: Some(1000),
            ..Knobs::default()
        })
        .await;
        let world = World::new();
        let alice = alice_on(&world, server.port, pipelining).await;
        let everyone: Vec<String> = (0..10_000).map(|i| format!("r{i}@example.org")).collect();
        let refs: Vec<&str> = everyone.iter().map(String::as_str).collect();
        submit_to(
            &alice,
            &refs,
            b"From: <alice@example.com>\r\nSubject: news\r\n\r\nto many\r\n",
        )
        .await;
        let report = flush(&alice).await;
        let m = &report.transports[0].messages[0];
        assert_eq!(
            m.outcome,
            mapispool::flush::MessageOutcome::Sent,
            "pipelining {pipelining}"
        );
        let got = server.received();
        assert_eq!(got.len(), 10, "ten transactions of a thousand");
        assert!(got.iter().all(|r| r.rcpts.len() == 1000));
        let mut all: Vec<String> = got.iter().flat_map(|r| r.rcpts.clone()).collect();
        all.sort();
        let mut want = everyone.clone();
        want.sort();
        assert_eq!(all, want, "each recipient exactly once");
        assert_eq!(server.connections(), 1, "on the same connection");
        // The first transaction learns the limit; after it, no RCPT is sent only to be refused
        // (pipelined, the rest of the window that met the first 452 is).
        let rcpts = server
            .commands()
            .iter()
            .filter(|c| c.starts_with("RCPT"))
            .count();
        let refused = server.log.lock().expect("log").too_many;
        assert_eq!(rcpts, 10_000 + refused);
        assert!(
            (1..=100).contains(&refused),
            "{refused} RCPTs refused as too many (pipelining {pipelining})"
        );
        if !pipelining {
            assert_eq!(refused, 1);
        }
        assert!(alice.outgoing_queue().await.expect("queue").is_empty());
    }
}

/// Every recipient refused as "too many" by a server that takes none: they wait for a retry
/// with the server's words (no loop on the same connection).
#[tokio::test]
async fn too_many_for_a_server_that_takes_none_waits() {
    let server = FakeSmtp::start(Knobs {
        max_rcpts: Some(0),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    submit_to(
        &alice,
        &["a@example.org", "b@example.org"],
        b"Subject: x\r\n\r\nx\r\n",
    )
    .await;
    let report = flush(&alice).await;
    let m = &report.transports[0].messages[0];
    assert_eq!(m.outcome, mapispool::flush::MessageOutcome::Deferred);
    for r in &m.recipients {
        assert!(
            matches!(r, mapispool::flush::RecipientReport::Deferred { error, .. } if error.contains("452 4.5.3")),
            "{r:?}"
        );
    }
    assert_eq!(server.log.lock().expect("log").too_many, 2);
}

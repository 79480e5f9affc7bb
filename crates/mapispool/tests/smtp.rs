//! The SMTP transport against real peers (Postfix's smtp-sink, a private Postfix instance) and a
//! scripted in-process server for faults. Most tests go through the spooler (logon, submit,
//! FlushQueues) so the store's outcome is checked, not only what the transport returned.

mod common;
#[path = "peers/fake_smtp.rs"]
mod fake_smtp;
#[path = "peers/postfix.rs"]
mod postfix;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fake_smtp::{FakeSmtp, Knobs};
use mapispool::flush::{MessageOutcome, RecipientReport};
use mapispool::profile::{Credential, OutboundConfig, Security, SmtpConfig, TransportConfig};
use mapispool::store::Folder;
use mapispool::transport::smtp::{SmtpOutbound, SmtpTimeouts};
use mapispool::transport::{Envelope, EnvelopeRecipient, RecipientResult, TransportErrorKind};
use mapispool::{FlushFlags, FlushReport, Session, Submission};

fn smtp_config(port: u16) -> SmtpConfig {
    loopback_smtp(port)
}

fn smtp_transport(config: SmtpConfig) -> TransportConfig {
    TransportConfig {
        name: "smtp".into(),
        address: "alice@example.com".into(),
        display_name: None,
        outbound: Some(OutboundConfig::Smtp(config)),
        inbound: None,
        connect_command: None,
        flush_queues: true,
    }
}

async fn alice(world: &World, config: SmtpConfig) -> Session {
    logon(world.profile("alice", vec![smtp_transport(config)])).await
}

/// Alice logged on in a new world with one SMTP transport to the scripted server; the world
/// (her store's directory) lives as long as the caller keeps it.
async fn alice_at(server: &FakeSmtp) -> (World, Session) {
    let world = World::new();
    let alice = alice(&world, smtp_config(server.port)).await;
    (world, alice)
}

/// Submits one message to several recipients.
async fn submit_to(session: &Session, to: &[&str], subject: &str) {
    let text = format!(
        "From: <alice@example.com>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{}@test>\r\n\r\nHello.\r\n.leading dot\r\n",
        to.iter()
            .map(|a| format!("<{a}>"))
            .collect::<Vec<_>>()
            .join(", "),
        subject.replace(' ', "-")
    );
    session
        .submit(Submission::default(), text.as_bytes())
        .await
        .expect("submit");
}

async fn flush(session: &Session) -> FlushReport {
    session
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush")
}

fn outcomes(report: &FlushReport) -> Vec<MessageOutcome> {
    report.transports[0]
        .messages
        .iter()
        .map(|m| m.outcome)
        .collect()
}

/// The queue holds only `subject`, deferred ("will try again": the server may have it, so it
/// is neither sent nor failed), and a forced flush delivers it: the server then has `total`.
async fn deferred_then_sent_by_force(
    alice: &Session,
    server: &FakeSmtp,
    subject: &str,
    total: usize,
) {
    let queue = alice.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message.subject, subject);
    let error = queue[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("will try again"), "{error}");
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::FORCE)
        .await
        .expect("flush");
    assert_eq!(outcomes(&report), vec![MessageOutcome::Sent]);
    assert_eq!(server.received().len(), total);
}

async fn queue_len(session: &Session) -> usize {
    session.outgoing_queue().await.expect("queue").len()
}

// ---------------------------------------------------------------- real smtp-sink and Postfix

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_of_many_messages_reaches_smtp_sink_on_one_connection() {
    let sink = postfix::SmtpSink::start("");
    let world = World::new();
    let alice = alice(&world, smtp_config(sink.port)).await;
    let n = 30;
    for i in 0..n {
        submit(&alice, &format!("bob{i}@example.org"), &format!("m{i}")).await;
    }
    let started = std::time::Instant::now();
    let report = flush(&alice).await;
    let took = started.elapsed();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.transports[0].sent(), n);
    assert_eq!(queue_len(&alice).await, 0);
    assert_eq!(subjects(&alice, Folder::SentItems).await.len(), n);
    assert!(
        eventually(Duration::from_secs(5), async || sink.messages() == n).await,
        "the sink counted {} of {n}",
        sink.messages()
    );
    // peers.md's Nagle pitfall: a client that stalls on the final dot manages ~20 msg/s.
    assert!(
        took < Duration::from_millis(40 * n as u64),
        "{n} messages took {took:?}: a write per line or a Nagle stall?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_soft_and_hard_rcpt_faults() {
    // -r RCPT: every RCPT gets a 4xx: the message waits for a retry.
    let sink = postfix::SmtpSink::start("-r RCPT");
    let world = World::new();
    let alice = alice(&world, smtp_config(sink.port)).await;
    submit(&alice, "bob@example.org", "soft").await;
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Deferred]);
    let queue = alice.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1, "still queued");
    let error = queue[0].last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("SMTP server 127.0.0.1:") && error.contains(" 4"),
        "{error}"
    );
    drop(sink);

    // -f RCPT: every RCPT gets a 5xx: failed, with a non-delivery report in the Inbox.
    let sink = postfix::SmtpSink::start("-f RCPT");
    let world = World::new();
    let alice = self::alice(&world, smtp_config(sink.port)).await;
    submit(&alice, "bob@example.org", "hard").await;
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Failed]);
    assert_eq!(queue_len(&alice).await, 0);
    assert_eq!(subjects(&alice, Folder::Inbox).await.len(), 1, "an NDR");
    assert_eq!(sink.messages(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_dropping_the_connection_in_data_defers_and_a_retry_delivers() {
    // -q DATA: smtp-sink hangs up on DATA: nothing was delivered, the message waits.
    let sink = postfix::SmtpSink::start("-q DATA");
    let world = World::new();
    let mut config = smtp_config(sink.port);
    config.pipelining = false;
    let alice = alice(&world, config.clone()).await;
    submit(&alice, "bob@example.org", "dropped").await;
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Deferred]);
    assert_eq!(queue_len(&alice).await, 1, "deferred, not lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_through_a_private_postfix_reaches_the_sink() {
    let sink = postfix::SmtpSink::start("");
    let relay = format!("127.0.0.1:{}", sink.port);
    let pf = postfix::Postfix::start(&relay, "");
    let world = World::new();
    let alice = alice(&world, smtp_config(pf.port)).await;
    for i in 0..5 {
        submit_to(
            &alice,
            &["bob@example.org", "carol@example.net"],
            &format!("p{i}"),
        )
        .await;
    }
    let report = flush(&alice).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.transports[0].sent(), 5);
    assert_eq!(queue_len(&alice).await, 0);
    assert!(
        eventually(Duration::from_secs(20), async || sink.messages() >= 5).await,
        "Postfix relayed {} of 5 to the sink; its log:\n{}",
        sink.messages(),
        pf.log()
    );
}

// ---------------------------------------------------------------- the scripted fault server

#[tokio::test]
async fn per_recipient_4xx_and_5xx_in_a_pipelined_group() {
    let server = FakeSmtp::start(Knobs {
        rcpt: Arc::new(|a: &str| {
            if a.starts_with("busy") {
                "450 4.2.1 <busy@example.org>: mailbox busy, try later".into()
            } else if a.starts_with("nobody") {
                "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown".into()
            } else if a.starts_with("refused") {
                "554 5.7.1 <refused@example.org>: Relay access denied".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    submit_to(
        &alice,
        &[
            "bob@example.org",
            "busy@example.org",
            "nobody@example.org",
            "refused@example.org",
        ],
        "mixed",
    )
    .await;
    let report = flush(&alice).await;
    let m = &report.transports[0].messages[0];
    assert_eq!(m.outcome, MessageOutcome::Deferred, "{m:?}");
    assert!(matches!(
        &m.recipients[0],
        RecipientReport::Delivered { .. }
    ));
    assert!(
        matches!(&m.recipients[1], RecipientReport::Deferred { error, .. } if error.contains("450 4.2.1") && error.contains("mailbox busy")),
        "{:?}",
        m.recipients[1]
    );
    assert!(
        matches!(&m.recipients[2], RecipientReport::Failed { error, .. } if error.contains("550 5.1.1") && error.contains("User unknown")),
        "{:?}",
        m.recipients[2]
    );
    assert!(
        matches!(&m.recipients[3], RecipientReport::Failed { error, .. } if error.contains("Relay access denied")),
        "{:?}",
        m.recipients[3]
    );
    // Pipelined: MAIL, every RCPT and DATA were sent before any reply was read.
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["bob@example.org"]);
    assert!(
        got[0].data.windows(14).any(|w| w == b"\r\n..leading do"),
        "dot-stuffed"
    );
    // The failed ones got a report; the busy one stays queued.
    assert_eq!(subjects(&alice, Folder::Inbox).await.len(), 1);
    assert_eq!(queue_len(&alice).await, 1);
}

#[tokio::test]
async fn no_recipient_accepted_sends_no_body_and_the_connection_goes_on() {
    let server = FakeSmtp::start(Knobs {
        rcpt: Arc::new(|a: &str| {
            if a.starts_with("nobody") {
                "550 5.1.1 User unknown".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Knobs::default()
    })
    .await;
    for pipelining in [true, false] {
        let world = World::new();
        let mut config = smtp_config(server.port);
        config.pipelining = pipelining;
        let alice = alice(&world, config).await;
        submit(&alice, "nobody@example.org", "lost").await;
        submit(&alice, "bob@example.org", "fine").await;
        let report = flush(&alice).await;
        assert_eq!(
            outcomes(&report),
            vec![MessageOutcome::Failed, MessageOutcome::Sent],
            "pipelining {pipelining}"
        );
    }
    assert_eq!(server.received().len(), 2);
    assert_eq!(server.connections(), 2, "one connection per flush");
    let commands = server.commands();
    // Without pipelining, no DATA follows a group with no accepted recipient: RSET does.
    assert!(commands.iter().any(|c| c == "RSET"), "{commands:?}");
}

#[tokio::test]
async fn a_421_on_a_reused_connection_reconnects_and_delivers() {
    let server = FakeSmtp::start(Knobs {
        reused_421_once: true,
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    for i in 0..3 {
        submit(&alice, "bob@example.org", &format!("r{i}")).await;
    }
    let report = flush(&alice).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(server.received().len(), 3);
    assert_eq!(server.connections(), 2, "reconnected once");
}

#[tokio::test]
async fn max_messages_per_connection_opens_new_connections() {
    let server = FakeSmtp::start(Knobs::default()).await;
    let world = World::new();
    let mut config = smtp_config(server.port);
    config.max_messages_per_connection = Some(2);
    let alice = alice(&world, config).await;
    for i in 0..5 {
        submit(&alice, "bob@example.org", &format!("c{i}")).await;
    }
    let report = flush(&alice).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(server.received().len(), 5);
    assert_eq!(server.connections(), 3);
    assert!(server.commands().iter().any(|c| c == "QUIT"));
}

#[tokio::test]
async fn a_connection_dropped_in_data_defers_the_message_and_the_next_one_goes() {
    let server = FakeSmtp::start(Knobs {
        drop_in_data: Some(0),
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    submit(&alice, "bob@example.org", "first").await;
    submit(&alice, "bob@example.org", "second").await;
    let report = flush(&alice).await;
    assert_eq!(
        outcomes(&report),
        vec![MessageOutcome::Deferred, MessageOutcome::Sent]
    );
    deferred_then_sent_by_force(&alice, &server, "first", 2).await;
}

#[tokio::test]
async fn final_dot_4xx_defers_and_5xx_fails() {
    let server = FakeSmtp::start(Knobs {
        final_reply: Arc::new(|n| match n {
            0 => "451 4.3.0 Error: queue file write error".into(),
            1 => "554 5.7.1 Message rejected as spam".into(),
            _ => "250 2.0.0 Ok".into(),
        }),
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    submit(&alice, "bob@example.org", "temp").await;
    submit(&alice, "bob@example.org", "spam").await;
    submit(&alice, "bob@example.org", "ok").await;
    let report = flush(&alice).await;
    assert_eq!(
        outcomes(&report),
        vec![
            MessageOutcome::Deferred,
            MessageOutcome::Failed,
            MessageOutcome::Sent
        ]
    );
    let failed = &report.transports[0].messages[1].recipients[0];
    assert!(
        matches!(failed, RecipientReport::Failed { error, .. } if error.contains("554 5.7.1 Message rejected as spam")),
        "{failed:?}"
    );
}

// ------------------------------------------- RFC 2920 across messages: the next envelope
// goes out with the previous end of data

/// The `ahead` entries of the ends of data (`.`), in order.
fn after_dots(server: &FakeSmtp) -> Vec<Vec<u8>> {
    server
        .ahead()
        .into_iter()
        .filter(|(c, _)| c == ".")
        .map(|(_, a)| a)
        .collect()
}

/// What a complete envelope group of one recipient looks like when it was sent behind a `.`.
fn is_envelope_group(bytes: &[u8], rcpt: &str) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.starts_with("MAIL FROM:<alice@example.com>")
        && text.contains(&format!("\r\nRCPT TO:<{rcpt}>"))
        && text.ends_with("\r\nDATA\r\n")
}

#[tokio::test]
async fn the_next_messages_envelope_goes_in_the_write_of_the_previous_end_of_data() {
    let server = FakeSmtp::start(Knobs::default()).await;
    let (_world, alice) = alice_at(&server).await;
    for i in 0..3 {
        submit(&alice, &format!("bob{i}@example.org"), &format!("p{i}")).await;
    }
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Sent; 3]);
    assert_eq!(server.received().len(), 3);
    assert_eq!(server.connections(), 1);
    // Before any reply to `.` of messages 0 and 1, the next message's MAIL, RCPT and DATA
    // were already there: one group (RFC 2920 §3.1, DATA last); after the last `.`, nothing.
    let dots = after_dots(&server);
    assert_eq!(dots.len(), 3, "{dots:?}");
    assert!(
        is_envelope_group(&dots[0], "bob1@example.org"),
        "{:?}",
        String::from_utf8_lossy(&dots[0])
    );
    assert!(
        is_envelope_group(&dots[1], "bob2@example.org"),
        "{:?}",
        String::from_utf8_lossy(&dots[1])
    );
    assert!(
        dots[2].is_empty(),
        "{:?}",
        String::from_utf8_lossy(&dots[2])
    );
    // Each message was recorded with its own outcome, in Sent Items.
    assert_eq!(queue_len(&alice).await, 0);
    assert_eq!(subjects(&alice, Folder::SentItems).await.len(), 3);
}

#[tokio::test]
async fn a_message_whose_end_leaves_in_its_own_write_is_not_held() {
    let server = FakeSmtp::start(Knobs::default()).await;
    let (_world, alice) = alice_at(&server).await;
    // Over the 64 KiB write buffer: its end goes out in a write of its own, so its reply is
    // read at once (holding it would save only a read).
    let line = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+/abcdefghijkl\r\n";
    let big = format!(
        "From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: big\r\nMessage-ID: <big@test>\r\n\r\n{}",
        line.repeat(100 * 1024 / line.len())
    );
    alice
        .submit(Submission::default(), big.as_bytes())
        .await
        .expect("submit");
    submit(&alice, "bob@example.org", "small").await;
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Sent; 2]);
    let dots = after_dots(&server);
    assert_eq!(dots.len(), 2);
    assert!(
        dots[0].is_empty(),
        "{:?}",
        String::from_utf8_lossy(&dots[0])
    );
}

#[tokio::test]
async fn a_server_without_pipelining_gets_lock_step() {
    let server = FakeSmtp::start(Knobs {
        ehlo: vec!["SIZE 10000000".into(), "8BITMIME".into()],
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    for i in 0..3 {
        submit(&alice, "bob@example.org", &format!("l{i}")).await;
    }
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Sent; 3]);
    // Every command and every `.` waited for its reply: nothing was ever sent ahead.
    let ahead = server.ahead();
    assert!(ahead.iter().filter(|(c, _)| c == ".").count() == 3);
    for (cmd, bytes) in &ahead {
        assert!(
            bytes.is_empty(),
            "{cmd} had {:?} behind it",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[tokio::test]
async fn pipelining_off_in_the_profile_is_lock_step_across_messages() {
    let server = FakeSmtp::start(Knobs::default()).await;
    let world = World::new();
    let mut config = smtp_config(server.port);
    config.pipelining = false;
    let alice = alice(&world, config).await;
    for i in 0..2 {
        submit(&alice, "bob@example.org", &format!("o{i}")).await;
    }
    let report = flush(&alice).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Sent; 2]);
    for (cmd, bytes) in &server.ahead() {
        assert!(
            bytes.is_empty(),
            "{cmd} had {:?} behind it",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[tokio::test]
async fn a_5xx_and_a_4xx_on_a_pipelined_end_of_data_settle_that_message_alone() {
    let server = FakeSmtp::start(Knobs {
        final_reply: Arc::new(|n| match n {
            0 => "554 5.7.1 Message rejected as spam".into(),
            2 => "452 4.3.1 Insufficient system storage".into(),
            _ => "250 2.0.0 Ok".into(),
        }),
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    for (i, s) in ["spam", "ok1", "full", "ok2"].iter().enumerate() {
        submit(&alice, &format!("bob{i}@example.org"), s).await;
    }
    let report = flush(&alice).await;
    assert_eq!(
        outcomes(&report),
        vec![
            MessageOutcome::Failed,
            MessageOutcome::Sent,
            MessageOutcome::Deferred,
            MessageOutcome::Sent
        ]
    );
    // The message behind each refused one was already on its way, and went on the same
    // connection with its own outcome.
    assert_eq!(server.connections(), 1);
    let dots = after_dots(&server);
    assert!(is_envelope_group(&dots[0], "bob1@example.org"));
    assert!(is_envelope_group(&dots[2], "bob3@example.org"));
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].rcpts, vec!["bob1@example.org"]);
    assert_eq!(got[1].rcpts, vec!["bob3@example.org"]);
    let failed = &report.transports[0].messages[0].recipients[0];
    assert!(
        matches!(failed, RecipientReport::Failed { error, .. } if error.contains("554 5.7.1")),
        "{failed:?}"
    );
    let deferred = &report.transports[0].messages[2].recipients[0];
    assert!(
        matches!(deferred, RecipientReport::Deferred { error, .. } if error.contains("452 4.3.1")),
        "{deferred:?}"
    );
    let queue = alice.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].message.subject, "full");
}

#[tokio::test]
async fn a_drop_after_the_end_of_data_defers_that_message_and_the_next_goes_on_a_new_connection() {
    let server = FakeSmtp::start(Knobs {
        drop_after_dot: Some(0),
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    for s in ["lost", "next", "last"] {
        submit(&alice, "bob@example.org", s).await;
    }
    let report = flush(&alice).await;
    // The server read all of "lost" and hung up without a reply: it may have it or not, so it
    // goes again (a possible duplicate, never a loss). "next" was pipelined behind it, but
    // never got past its envelope: it went whole on a new connection.
    assert_eq!(
        outcomes(&report),
        vec![
            MessageOutcome::Deferred,
            MessageOutcome::Sent,
            MessageOutcome::Sent
        ]
    );
    assert_eq!(server.connections(), 2);
    let dots = after_dots(&server);
    assert!(is_envelope_group(&dots[0], "bob@example.org"), "{dots:?}");
    let got = server.received();
    assert_eq!(got.len(), 2);
    let subjects_got: Vec<bool> = ["Subject: next", "Subject: last"]
        .iter()
        .zip(&got)
        .map(|(s, r)| String::from_utf8_lossy(&r.data).contains(s))
        .collect();
    assert_eq!(subjects_got, vec![true, true]);
    deferred_then_sent_by_force(&alice, &server, "lost", 3).await;
}

#[tokio::test]
async fn a_4xx_on_the_pipelined_rcpt_of_the_next_message_defers_it_alone() {
    let server = FakeSmtp::start(Knobs {
        rcpt: Arc::new(|a: &str| {
            if a.starts_with("busy") {
                "450 4.2.1 <busy@example.org>: mailbox busy, try later".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Knobs::default()
    })
    .await;
    let (_world, alice) = alice_at(&server).await;
    submit(&alice, "bob@example.org", "first").await;
    submit(&alice, "busy@example.org", "busy").await;
    submit(&alice, "bob@example.org", "third").await;
    let report = flush(&alice).await;
    assert_eq!(
        outcomes(&report),
        vec![
            MessageOutcome::Sent,
            MessageOutcome::Deferred,
            MessageOutcome::Sent
        ]
    );
    assert_eq!(server.connections(), 1);
    let dots = after_dots(&server);
    assert!(is_envelope_group(&dots[0], "busy@example.org"), "{dots:?}");
    let busy = &report.transports[0].messages[1].recipients[0];
    assert!(
        matches!(busy, RecipientReport::Deferred { error, .. } if error.contains("450 4.2.1")),
        "{busy:?}"
    );
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(queue_len(&alice).await, 1);
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_in_the_servers_words() {
    let server = FakeSmtp::start(Knobs {
        auth: Some(("alice".into(), "right-password".into())),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let mut config = smtp_config(server.port);
    config.username = Some("alice".into());
    config.credential = Some(Credential::Command("printf wrong-password".into()));
    // A scripted server on loopback: the login may go in clear.
    config.allow_plaintext_auth = true;
    let alice = alice(&world, config.clone()).await;
    submit(&alice, "bob@example.org", "auth").await;
    let report = flush(&alice).await;
    let t = &report.transports[0];
    let error = t.error.clone().unwrap_or_default();
    assert!(
        error.contains("535 5.7.8") && error.contains("\"alice\""),
        "{error}"
    );
    assert!(!error.contains("wrong-password"), "{error}");
    assert_eq!(outcomes(&report), vec![MessageOutcome::Deferred]);
    assert_eq!(queue_len(&alice).await, 1);
    assert!(
        server.commands().iter().all(|c| !c.contains("cGFzc3dvcmQ")),
        "the log of commands never holds the token"
    );

    // The right password: AUTH PLAIN goes through and the message is sent.
    let world = World::new();
    config.credential = Some(Credential::Command("printf right-password".into()));
    let alice = self::alice(&world, config).await;
    submit(&alice, "bob@example.org", "auth ok").await;
    let report = flush(&alice).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(server.received().len(), 1);
}

// ---------------------------------------------------------------- the transport on its own

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        from: "alice@example.com".into(),
        recipients: rcpts
            .iter()
            .enumerate()
            .map(|(i, a)| EnvelopeRecipient {
                rowid: i as i64,
                address: a.to_string(),
            })
            .collect(),
        size: 30,
        dsn: None,
    }
}

const BODY: &[u8] = b"Subject: t\r\n\r\nbody\r\n";

#[tokio::test]
async fn a_slow_greeting_times_out_with_a_clear_message() {
    let server = FakeSmtp::start(Knobs {
        greeting_delay: Duration::from_secs(5),
        ..Knobs::default()
    })
    .await;
    let mut t = SmtpOutbound::new(&smtp_config(server.port), "smtp", false)
        .with_timeouts(SmtpTimeouts::all(Duration::from_millis(300)));
    let e = t.connect().await.expect_err("too slow");
    assert_eq!(e.kind, TransportErrorKind::Timeout);
    assert!(
        e.message.contains("127.0.0.1:") && e.message.contains("greeting"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn malformed_and_multi_line_replies() {
    let server = FakeSmtp::start(Knobs {
        mail_reply: Some("hello? I am not an SMTP server\r\n".into()),
        ..Knobs::default()
    })
    .await;
    let mut t = SmtpOutbound::new(&smtp_config(server.port), "smtp", false)
        .with_timeouts(SmtpTimeouts::all(Duration::from_secs(5)));
    t.connect().await.expect("connect");
    let e = t
        .send(&envelope(&["bob@example.org"]), BODY)
        .await
        .expect_err("malformed");
    assert_eq!(e.kind, TransportErrorKind::Temporary);
    assert!(
        e.message.contains("malformed") && e.message.contains("I am not an SMTP server"),
        "{}",
        e.message
    );

    let server = FakeSmtp::start(Knobs {
        rcpt: Arc::new(|_| {
            "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please try double-checking the recipient's address".into()
        }),
        ..Knobs::default()
    })
    .await;
    let mut t = SmtpOutbound::new(&smtp_config(server.port), "smtp", false);
    t.connect().await.expect("connect");
    let r = t
        .send(&envelope(&["bob@example.org"]), BODY)
        .await
        .expect("results");
    match &r[0] {
        RecipientResult::Failed { error, diag, .. } => {
            assert!(error.contains("does not exist") && error.contains("double-checking"));
            assert_eq!(*diag, mapi::constants::MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN);
        }
        other => panic!("{other:?}"),
    }
    t.close().await;
}

#[tokio::test]
async fn garbage_after_starttls_is_a_tls_error_and_no_auth_goes_in_clear() {
    let server = FakeSmtp::start(Knobs {
        ehlo: vec!["PIPELINING".into(), "STARTTLS".into()],
        starttls_garbage: true,
        auth: Some(("alice".into(), "pw".into())),
        ..Knobs::default()
    })
    .await;
    let mut config = smtp_config(server.port);
    config.security = Security::Starttls;
    config.username = Some("alice".into());
    config.credential = Some(Credential::Command("printf pw".into()));
    let mut t = SmtpOutbound::new(&config, "smtp", false)
        .with_timeouts(SmtpTimeouts::all(Duration::from_secs(5)));
    let e = t.connect().await.expect_err("garbage is not TLS");
    assert_eq!(e.kind, TransportErrorKind::Tls);
    assert!(e.message.contains("127.0.0.1"), "{}", e.message);
    assert!(
        server.commands().iter().all(|c| !c.starts_with("AUTH")),
        "{:?}",
        server.commands()
    );

    // A server without STARTTLS under security = "starttls": refused before any AUTH.
    let server = FakeSmtp::start(Knobs {
        auth: Some(("alice".into(), "pw".into())),
        ..Knobs::default()
    })
    .await;
    config.port = server.port;
    let mut t = SmtpOutbound::new(&config, "smtp", false);
    let e = t.connect().await.expect_err("no STARTTLS");
    assert_eq!(e.kind, TransportErrorKind::Tls);
    assert!(
        e.message.contains("does not offer STARTTLS"),
        "{}",
        e.message
    );
    assert!(server.commands().iter().all(|c| !c.starts_with("AUTH")));
}

#[tokio::test]
async fn connection_refused_says_so() {
    let port = postfix::free_port();
    let world = World::new();
    let alice = alice(&world, smtp_config(port)).await;
    submit(&alice, "bob@example.org", "nobody home").await;
    let report = flush(&alice).await;
    let error = report.transports[0].error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "cannot connect to 127.0.0.1:{port}: connection refused — is the server running?"
        )),
        "{error}"
    );
    assert_eq!(queue_len(&alice).await, 1);
}

// ---------------------------------------------------------------- DSN (RFC 3461)

/// Submits one message to bob and carol asking for delivery reports as `notify`/`ret` say.
async fn submit_with_dsn(session: &Session, notify: Option<&str>, ret: Option<&str>) {
    let text = "From: <alice@example.com>\r\nTo: <bob@example.org>, <carol+x@example.org>\r\nSubject: dsn\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <dsn-1@test>\r\n\r\nHello.\r\n";
    session
        .submit(
            Submission {
                dsn_notify: notify.map(str::to_string),
                dsn_ret: ret.map(str::to_string),
                ..Submission::default()
            },
            text.as_bytes(),
        )
        .await
        .expect("submit");
}

fn mail_and_rcpts(server: &FakeSmtp) -> Vec<String> {
    server
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL FROM:") || c.starts_with("RCPT TO:"))
        .collect()
}

#[tokio::test]
async fn dsn_parameters_go_on_mail_and_rcpt_when_asked_for_and_offered() {
    let mut knobs = Knobs::default();
    knobs.ehlo.push("DSN".into());
    let server = FakeSmtp::start(knobs).await;
    let world = World::new();
    let a = alice(&world, smtp_config(server.port)).await;
    submit_with_dsn(&a, Some("success, Failure"), Some("hdrs")).await;
    let queued = a.outgoing_queue().await.expect("queue");
    assert_eq!(
        queued[0].message.dsn_notify.as_deref(),
        Some("SUCCESS,FAILURE")
    );
    assert_eq!(queued[0].message.dsn_ret.as_deref(), Some("HDRS"));
    let row = queued[0].message.to_row();
    assert_eq!(
        row.get(mapi::tag::PR_ORIGINATOR_DELIVERY_REPORT_REQUESTED),
        Some(&mapi::PropValue::Boolean(true))
    );
    let report = flush(&a).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        mail_and_rcpts(&server),
        vec![
            "MAIL FROM:<alice@example.com> SIZE=161 RET=HDRS ENVID=dsn-1@test".to_string(),
            "RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org".into(),
            // xtext: `+` is `+2B`.
            "RCPT TO:<carol+x@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;carol+2Bx@example.org"
                .into(),
        ]
    );

    // Nothing asked for: nothing sent, even though the server offers DSN.
    let server2 = {
        let mut knobs = Knobs::default();
        knobs.ehlo.push("DSN".into());
        FakeSmtp::start(knobs).await
    };
    let world = World::new();
    let alice2 = alice(&world, smtp_config(server2.port)).await;
    submit_with_dsn(&alice2, None, None).await;
    assert!(flush(&alice2).await.is_complete());
    let lines = mail_and_rcpts(&server2);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("NOTIFY=") && !l.contains("RET=") && !l.contains("ORCPT=")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn no_dsn_parameters_to_a_server_without_dsn_and_bad_requests_are_refused() {
    let server = FakeSmtp::start(Knobs::default()).await;
    let (_world, alice) = alice_at(&server).await;
    submit_with_dsn(&alice, Some("SUCCESS"), Some("FULL")).await;
    let report = flush(&alice).await;
    assert!(report.is_complete(), "{report:?}");
    let lines = mail_and_rcpts(&server);
    assert_eq!(
        lines,
        vec![
            "MAIL FROM:<alice@example.com> SIZE=161".to_string(),
            "RCPT TO:<bob@example.org>".into(),
            "RCPT TO:<carol+x@example.org>".into(),
        ]
    );

    for (notify, ret) in [
        (Some("SUCCESS,NEVER"), None),
        (Some("SOMETIMES"), None),
        (None, Some("BODY")),
    ] {
        let e = alice
            .submit(
                Submission {
                    dsn_notify: notify.map(str::to_string),
                    dsn_ret: ret.map(str::to_string),
                    ..Submission::default()
                },
                &b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\n\r\nx\r\n"[..],
            )
            .await
            .expect_err("refused");
        assert_eq!(e.code, mapi::MapiCode::InvalidParameter, "{e}");
    }
}

/// Forwards every connection to 127.0.0.1:`port` on a listener bound to `on`: the server
/// "comes back" on the port the profile names.
async fn forward(on: u16, to: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", on))
        .await
        .expect("bind the old port again");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

/// Issue 19.4: a refused connection is the transport's failure, not the message's. It counts
/// no attempt and pushes no message's retry; the report says when the transport tries again;
/// once the server is back, a plain flush (no --force) sends the message at once.
#[tokio::test]
async fn a_refused_connection_backs_off_the_transport_not_the_message() {
    let world = World::new();
    // A port nobody listens on: bound, then closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let session = alice(&world, smtp_config(port)).await;
    submit_to(&session, &["bob@example.com"], "outage").await;

    let before = mapi::FileTime::now();
    let report = flush(&session).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Deferred]);
    let t = &report.transports[0];
    assert!(t.error.is_some(), "the transport's failure is reported");
    let retry_at = t.messages[0].retry_at.expect("the report says until when");
    assert!(retry_at > before, "the transport's wait");
    let queue = session.outgoing_queue().await.expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].attempts, 0, "no message attempt was counted");
    assert!(
        queue[0]
            .next_attempt_at
            .is_none_or(|at| at <= mapi::FileTime::now()),
        "the message's own retry was not pushed: {:?}",
        queue[0].next_attempt_at
    );

    // The server is back on the same port: a plain flush tries the message and sends it.
    let server = FakeSmtp::start(Knobs::default()).await;
    let _forwarder = forward(port, server.port).await;
    let report = flush(&session).await;
    assert_eq!(outcomes(&report), vec![MessageOutcome::Sent], "{report:?}");
    assert_eq!(server.received().len(), 1);
    assert!(session.outgoing_queue().await.expect("queue").is_empty());
}

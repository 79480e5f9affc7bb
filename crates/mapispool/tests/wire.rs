//! What mapispool puts on the wire, byte for byte (issue 12): Bcc never leaves the machine,
//! 8-bit only where the server takes it, recipients past a server's per-transaction limit in a
//! new transaction at once. A scripted server records the exact bytes; the stored copy is
//! checked to stay as submitted.

mod common;
#[path = "peers/fake_smtp.rs"]
mod fake_smtp;
#[path = "peers/postfix.rs"]
mod postfix;

use common::*;
use fake_smtp::{FakeSmtp, Knobs};
use mapispool::profile::{OutboundConfig, SmtpConfig, TransportConfig};
use mapispool::store::Folder;
use mapispool::{FlushFlags, FlushReport, Session, Submission};

fn smtp_config(port: u16) -> SmtpConfig {
    loopback_smtp(port)
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

/// The whole conversation, byte for byte: a 452 to the third RCPT, then a second transaction
/// for it on the same connection, Bcc gone from both copies.
#[tokio::test]
async fn the_exact_bytes_of_a_452_and_the_transaction_after_it() {
    use mapispool::transport::smtp::{SmtpOutbound, SmtpTimeouts};
    use mapispool::transport::{Envelope, EnvelopeRecipient, RecipientResult};
    let body = b"To: <a@example.org>\r\nBcc: <c@example.org>\r\nSubject: s\r\n\r\n.hi\r\n";
    let sent = b"To: <a@example.org>\r\nSubject: s\r\n\r\n..hi\r\n.\r\n";
    for (pipelining, ehlo_keywords) in [
        (true, vec!["PIPELINING", "8BITMIME"]),
        (false, vec!["8BITMIME"]),
    ] {
        let server = FakeSmtp::start(Knobs {
            ehlo: ehlo(&ehlo_keywords),
            max_rcpts: Some(2),
            ..Knobs::default()
        })
        .await;
        let mut t = SmtpOutbound::new(&smtp_config(server.port), "t", false)
            .with_timeouts(SmtpTimeouts::all(std::time::Duration::from_secs(10)));
        let envelope = Envelope {
            from: "alice@example.com".into(),
            recipients: ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, r)| EnvelopeRecipient {
                    rowid: i as i64,
                    address: format!("{r}@example.org"),
                })
                .collect(),
            size: body.len() as u64,
            dsn: None,
        };
        let results = t
            .send(&envelope, std::io::Cursor::new(&body[..]))
            .await
            .expect("send");
        assert_eq!(results, vec![RecipientResult::Delivered; 3]);
        t.close().await;
        let mut want = b"EHLO [127.0.0.1]\r\n".to_vec();
        let rcpt = |r: &str| format!("RCPT TO:<{r}@example.org>\r\n").into_bytes();
        let mail = b"MAIL FROM:<alice@example.com>\r\n";
        want.extend_from_slice(mail);
        want.extend(rcpt("a"));
        want.extend(rcpt("b"));
        // Pipelined, the third RCPT went in the same write and met the 452; one at a time,
        // it too was sent and refused before DATA.
        want.extend(rcpt("c"));
        want.extend_from_slice(b"DATA\r\n");
        want.extend_from_slice(sent);
        want.extend_from_slice(mail);
        want.extend(rcpt("c"));
        want.extend_from_slice(b"DATA\r\n");
        want.extend_from_slice(sent);
        want.extend_from_slice(b"QUIT\r\n");
        assert_eq!(
            String::from_utf8_lossy(&server.wire()),
            String::from_utf8_lossy(&want),
            "pipelining {pipelining}"
        );
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

fn ehlo(keywords: &[&str]) -> Vec<String> {
    keywords.iter().map(|k| k.to_string()).collect()
}

/// The MAIL FROM commands the server saw.
fn mail_commands(server: &FakeSmtp) -> Vec<String> {
    server
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL FROM"))
        .collect()
}

const EIGHT_BIT: &str = "From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: s\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <8bit@test>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n.Punkt\r\n";

#[tokio::test]
async fn an_8bit_body_goes_with_body_8bitmime_where_offered_and_as_base64_where_not() {
    let size = EIGHT_BIT.len();
    for pipelining in ["PIPELINING", "NO-PIPELINING"] {
        // Offered: BODY=8BITMIME and the bytes as submitted (dot-stuffed).
        let server = FakeSmtp::start(Knobs {
            ehlo: ehlo(&[pipelining, "SIZE 10000000", "8BITMIME"]),
            ..Knobs::default()
        })
        .await;
        let world = World::new();
        let alice = alice_on(&world, server.port, true).await;
        submit_to(&alice, &["bob@example.org"], EIGHT_BIT.as_bytes()).await;
        flush(&alice).await;
        assert_eq!(
            mail_commands(&server),
            vec![format!(
                "MAIL FROM:<alice@example.com> SIZE={size} BODY=8BITMIME"
            )]
        );
        assert_eq!(
            String::from_utf8_lossy(&server.received()[0].data),
            EIGHT_BIT.replace("\r\n.Punkt", "\r\n..Punkt")
        );

        // Not offered: no BODY=, the 8-bit part as base64, the stored copy untouched.
        let server = FakeSmtp::start(Knobs {
            ehlo: ehlo(&[pipelining, "SIZE 10000000"]),
            ..Knobs::default()
        })
        .await;
        let world = World::new();
        let alice = alice_on(&world, server.port, true).await;
        submit_to(&alice, &["bob@example.org"], EIGHT_BIT.as_bytes()).await;
        flush(&alice).await;
        assert_eq!(
            mail_commands(&server),
            vec![format!("MAIL FROM:<alice@example.com> SIZE={size}")]
        );
        let got = server.received()[0].data.clone();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: s\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <8bit@test>\r\nContent-Type: text/plain; charset=utf-8\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ0KLlB1bmt0DQo=\r\n",
            "({pipelining})"
        );
        assert!(got.is_ascii());
        let parsed = mail_parser::MessageParser::new()
            .parse(&got)
            .expect("parse");
        assert_eq!(parsed.body_text(0).as_deref(), Some("Grüße\r\n.Punkt\r\n"));
        assert_eq!(sent_items_body(&alice).await, EIGHT_BIT.as_bytes());
    }
}

const UTF8_HEADERS: &str = "From: José Núñez <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: Grüße\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <utf8@test>\r\n\r\nhi\r\n";

#[tokio::test]
async fn utf8_headers_go_with_smtputf8_where_offered_and_rfc2047_encoded_where_not() {
    let size = UTF8_HEADERS.len();
    let server = FakeSmtp::start(Knobs {
        ehlo: ehlo(&["PIPELINING", "SIZE 10000000", "8BITMIME", "SMTPUTF8"]),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    submit_to(&alice, &["bob@example.org"], UTF8_HEADERS.as_bytes()).await;
    flush(&alice).await;
    assert_eq!(
        mail_commands(&server),
        vec![format!(
            "MAIL FROM:<alice@example.com> SIZE={size} BODY=8BITMIME SMTPUTF8"
        )]
    );
    assert_eq!(server.received()[0].data, UTF8_HEADERS.as_bytes());

    let server = FakeSmtp::start(Knobs {
        ehlo: ehlo(&["PIPELINING", "SIZE 10000000", "8BITMIME"]),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    submit_to(&alice, &["bob@example.org"], UTF8_HEADERS.as_bytes()).await;
    flush(&alice).await;
    assert_eq!(
        mail_commands(&server),
        vec![format!("MAIL FROM:<alice@example.com> SIZE={size}")]
    );
    let got = server.received()[0].data.clone();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "From: =?utf-8?B?Sm9zw6kgTsO6w7Fleg==?= <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: =?utf-8?B?R3LDvMOfZQ==?=\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <utf8@test>\r\n\r\nhi\r\n"
    );
    let parsed = mail_parser::MessageParser::new()
        .parse(&got)
        .expect("parse");
    assert_eq!(parsed.subject(), Some("Grüße"));
    assert_eq!(
        parsed
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.name.as_deref()),
        Some("José Núñez")
    );
}

#[tokio::test]
async fn a_utf8_address_without_smtputf8_fails_that_recipient_and_says_why() {
    let server = FakeSmtp::start(Knobs {
        ehlo: ehlo(&["PIPELINING", "8BITMIME"]),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    submit_to(
        &alice,
        &["jörg@example.org", "bob@example.org"],
        b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: s\r\n\r\nhi\r\n",
    )
    .await;
    let report = flush(&alice).await;
    let m = &report.transports[0].messages[0];
    assert_eq!(
        m.outcome,
        mapispool::flush::MessageOutcome::Partial,
        "{m:?}"
    );
    assert!(
        matches!(&m.recipients[0], mapispool::flush::RecipientReport::Failed { error, .. }
            if error.contains("jörg@example.org has UTF-8") && error.contains("does not offer SMTPUTF8")),
        "{:?}",
        m.recipients[0]
    );
    assert_eq!(server.received()[0].rcpts, vec!["bob@example.org"]);
    assert!(
        server.commands().iter().all(|c| !c.contains("jörg")),
        "never on the wire"
    );

    // A UTF-8 address in the header cannot be encoded: the message cannot go to this server.
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    submit_to(
        &alice,
        &["bob@example.org"],
        "From: <alice@example.com>\r\nTo: <jörg@example.org>\r\nSubject: s\r\n\r\nhi\r\n"
            .as_bytes(),
    )
    .await;
    let report = flush(&alice).await;
    let m = &report.transports[0].messages[0];
    assert_eq!(m.outcome, mapispool::flush::MessageOutcome::Failed, "{m:?}");
    assert!(
        matches!(&m.recipients[0], mapispool::flush::RecipientReport::Failed { error, .. }
            if error.contains("To: header has the address jörg@example.org")),
        "{:?}",
        m.recipients[0]
    );
}

/// The line-length policy: a part with a line over 998 octets (or a NUL) goes out base64, to
/// any server; the stored copy keeps it as submitted.
#[tokio::test]
async fn a_line_over_998_octets_goes_out_base64_encoded() {
    let long = "x".repeat(1200);
    let message = format!(
        "From: <alice@example.com>\r\nSubject: long\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <long@test>\r\n\r\n{long}\r\nend\r\n"
    );
    let server = FakeSmtp::start(Knobs::default()).await;
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    submit_to(&alice, &["bob@example.org"], message.as_bytes()).await;
    flush(&alice).await;
    let got = server.received()[0].data.clone();
    assert!(
        got.split(|&b| b == b'\n').all(|l| l.len() <= 78),
        "no long line on the wire"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("From: <alice@example.com>\r\nSubject: long\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <long@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"),
        "{text}"
    );
    let parsed = mail_parser::MessageParser::new()
        .parse(&got)
        .expect("parse");
    assert_eq!(
        parsed.body_text(0).as_deref(),
        Some(format!("{long}\r\nend\r\n").as_str())
    );
    assert_eq!(sent_items_body(&alice).await, message.as_bytes());
}

/// RFC 3464: the report is a `multipart/report; report-type=delivery-status` whose
/// `Diagnostic-Code` is the server's reply, not prose; its subject is RFC 2047-encoded.
#[tokio::test]
async fn a_non_delivery_report_is_rfc_3464_with_the_servers_reply() {
    let server = FakeSmtp::start(Knobs {
        rcpt: std::sync::Arc::new(|a: &str| {
            if a.starts_with("nobody") {
                "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let alice = alice_on(&world, server.port, true).await;
    let original = "From: <alice@example.com>\r\nTo: <nobody@example.org>, <bob@example.org>\r\nSubject: Grüße\r\nMessage-ID: <orig@test>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\n\r\nhi\r\n";
    submit_to(
        &alice,
        &["nobody@example.org", "bob@example.org"],
        original.as_bytes(),
    )
    .await;
    flush(&alice).await;
    let inbox = alice.messages(Folder::Inbox).await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].subject, "Undeliverable: Grüße");
    let raw = alice
        .message_body(&inbox[0].entry_id())
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(raw.is_ascii(), "{text}");
    assert!(
        text.contains("Subject: =?utf-8?"),
        "non-ASCII subject encoded: {text}"
    );
    let parsed = mail_parser::MessageParser::new()
        .parse(&raw)
        .expect("parse");
    assert_eq!(parsed.subject(), Some("Undeliverable: Grüße"));
    let ct = mail_parser::MimeHeaders::content_type(&parsed).expect("content type");
    assert_eq!(
        (ct.ctype(), ct.subtype(), ct.attribute("report-type")),
        ("multipart", Some("report"), Some("delivery-status"))
    );
    let types: Vec<String> = parsed
        .parts
        .iter()
        .skip(1)
        .map(|p| {
            let ct = mail_parser::MimeHeaders::content_type(p).expect("part type");
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        types,
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let status = text
        .split("Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
        .nth(1)
        .and_then(|rest| rest.split("\r\n--").next())
        .expect("the delivery-status part");
    let (per_message, per_recipient) = status.split_once("\r\n\r\n").expect("two groups");
    assert!(per_message.starts_with("Reporting-MTA: dns; "), "{status}");
    assert!(per_message.contains("\r\nArrival-Date: "), "{status}");
    assert_eq!(
        per_recipient,
        "Original-Recipient: rfc822; nobody@example.org\r\nFinal-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown\r\n"
    );
    let headers = text
        .split("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
        .nth(1);
    assert!(
        headers.is_none(),
        "8-bit original headers are encoded: {text}"
    );
    let quoted = parsed.parts.last().expect("headers part");
    assert_eq!(
        String::from_utf8_lossy(quoted.contents()),
        original
            .split("\r\n\r\n")
            .next()
            .expect("header")
            .to_string()
            + "\r\n\r\n"
    );
}

/// Real Postfix as the first hop, with 8BITMIME and SMTPUTF8 withheld
/// (`smtpd_discard_ehlo_keywords`) and 3 recipients per transaction (`smtpd_recipient_limit`);
/// the scripted server behind it records what Postfix relays on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_postfix_without_8bitmime_smtputf8_and_with_a_recipient_limit() {
    let next_hop = FakeSmtp::start(Knobs::default()).await;
    let pf = postfix::Postfix::start(
        &format!("127.0.0.1:{}", next_hop.port),
        "smtpd_discard_ehlo_keywords=8bitmime,smtputf8 smtpd_recipient_limit=3",
    );
    let world = World::new();
    let alice = alice_on(&world, pf.port, true).await;
    let original = "From: José <alice@example.com>\r\nTo: <r0@example.org>\r\nBcc: <r1@example.org>\r\nSubject: Grüße\r\nMessage-ID: <pf@test>\r\n\r\nGrüße aus Köln\r\n.Punkt\r\n";
    let everyone: Vec<String> = (0..10).map(|i| format!("r{i}@example.org")).collect();
    let refs: Vec<&str> = everyone.iter().map(String::as_str).collect();
    submit_to(&alice, &refs, original.as_bytes()).await;
    let report = flush(&alice).await;
    assert_eq!(
        report.transports[0].messages[0].outcome,
        mapispool::flush::MessageOutcome::Sent,
        "{report:?}\n{}",
        pf.log()
    );
    assert!(
        eventually(std::time::Duration::from_secs(30), async || {
            next_hop
                .received()
                .iter()
                .map(|r| r.rcpts.len())
                .sum::<usize>()
                >= 10
        })
        .await,
        "Postfix relayed {:?}; its log:\n{}",
        next_hop.received(),
        pf.log()
    );
    // Postfix took 3 per transaction: four transactions (3+3+3+1) of one message in one
    // flush, each queued and relayed on its own.
    let sizes: Vec<usize> = next_hop.received().iter().map(|r| r.rcpts.len()).collect();
    assert_eq!(
        sizes.iter().filter(|&&n| n == 3).count(),
        3,
        "{sizes:?}\n{}",
        pf.log()
    );
    assert_eq!(sizes.len(), 4, "{sizes:?}");
    let mut relayed: Vec<String> = next_hop
        .received()
        .iter()
        .flat_map(|r| r.rcpts.clone())
        .collect();
    relayed.sort();
    let mut want = everyone.clone();
    want.sort();
    assert_eq!(relayed, want);
    for copy in next_hop.received() {
        let data = copy.data.clone();
        let text = String::from_utf8_lossy(&data).into_owned();
        assert!(data.is_ascii(), "7-bit all the way: {text}");
        assert!(!text.to_ascii_lowercase().contains("\nbcc:"), "{text}");
        let parsed = mail_parser::MessageParser::new()
            .parse(&data)
            .expect("parse");
        assert_eq!(parsed.subject(), Some("Grüße"));
        assert_eq!(
            parsed
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.name.as_deref()),
            Some("José")
        );
        assert_eq!(
            parsed.body_text(0).as_deref(),
            Some("Grüße aus Köln\r\n.Punkt\r\n")
        );
    }
    assert!(
        next_hop
            .commands()
            .iter()
            .filter(|c| c.starts_with("MAIL FROM"))
            .all(|c| !c.contains("BODY=8BITMIME") && !c.contains("SMTPUTF8")),
        "{:?}",
        next_hop.commands()
    );
}

/// Property: for random messages (headers with Bcc in any form, bodies with dots at line
/// start, bare CR, bare LF, 8-bit, NUL, long lines), what the server receives is the message
/// minus its Bcc fields — byte for byte with line endings made CRLF, or, where a part had to be
/// converted, base64 that decodes to that body — and DATA never ends early.
mod property {
    use super::*;
    use mapispool::transport::smtp::{SmtpOutbound, SmtpTimeouts};
    use mapispool::transport::{Envelope, EnvelopeRecipient, RecipientResult};
    use proptest::prelude::*;

    /// CR, LF and CRLF each become CRLF: what the DATA encoder does.
    fn canon(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    if bytes.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => out.extend_from_slice(b"\r\n"),
                b => out.push(b),
            }
            i += 1;
        }
        out
    }

    /// Undoes dot-stuffing, line by line (RFC 5321 §4.5.2).
    fn unstuff(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len());
        for line in data.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    fn b64decode(text: &[u8]) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        };
        let digits: Vec<u8> = text.iter().filter_map(|&c| value(c)).collect();
        let mut out = Vec::new();
        for group in digits.chunks(4) {
            let n = group
                .iter()
                .enumerate()
                .fold(0u32, |n, (k, &d)| n | (u32::from(d) << (18 - 6 * k)));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..group.len().saturating_sub(1)]);
        }
        out
    }

    fn header_field() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "Subject: s\r\n",
            "To: <b@x>\r\n",
            "Bcc: <c@x>\r\n",
            "bcc: <d@x>,\r\n <e@x>\r\n",
            "BCC:\n\t<f@x>\n",
            "Resent-Bcc: <g@x>\r\n",
            "X-Bcc-Like: kept\r\n",
            "Comments: folded\r\n\tover two lines\r\n",
            "From: <alice@example.com>\n",
        ])
    }

    fn body_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => prop::sample::select(vec![
                b".".to_vec(),
                b"\r".to_vec(),
                b"\n".to_vec(),
                b"\r\n".to_vec(),
                b"\r\n.\r\n".to_vec(),
                b"a".to_vec(),
                b" ".to_vec(),
                "é".as_bytes().to_vec(),
                vec![0xFF],
            ]),
            1 => Just(vec![0u8]),
            1 => Just(vec![b'x'; 1000]),
        ]
    }

    /// Whether the converter must take the body to base64: the rule it documents.
    fn must_convert(body: &[u8], eight_bit_ok: bool) -> bool {
        body.split(|&b| b == b'\n').any(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line.contains(&0) || line.len() > 998 || (!eight_bit_ok && !line.is_ascii())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn the_server_gets_the_message_minus_bcc(
            fields in prop::collection::vec(header_field(), 0..6),
            pieces in prop::collection::vec(body_piece(), 0..40),
            eight_bit_ok in any::<bool>(),
            pipelining in any::<bool>(),
        ) {
            let header: String = fields.concat();
            let body: Vec<u8> = pieces.concat();
            let mut message = header.clone().into_bytes();
            message.extend_from_slice(b"\r\n");
            message.extend_from_slice(&body);

            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (data, commands) = runtime.block_on(async {
                let mut ehlo = vec!["SIZE 10000000".to_string()];
                if eight_bit_ok {
                    ehlo.push("8BITMIME".into());
                }
                if pipelining {
                    ehlo.push("PIPELINING".into());
                }
                let server = FakeSmtp::start(Knobs { ehlo, ..Knobs::default() }).await;
                let mut t = SmtpOutbound::new(&smtp_config(server.port), "t", false)
                    .with_timeouts(SmtpTimeouts::all(std::time::Duration::from_secs(10)));
                let envelope = Envelope {
                    from: "alice@example.com".into(),
                    recipients: vec![EnvelopeRecipient { rowid: 0, address: "bob@example.org".into() }],
                    size: message.len() as u64,
                    dsn: None,
                };
                let r = t.send(&envelope, std::io::Cursor::new(message.clone())).await.expect("send");
                assert_eq!(r, vec![RecipientResult::Delivered]);
                t.close().await;
                let got = server.received();
                assert_eq!(got.len(), 1, "one message, DATA not ended early");
                (got[0].data.clone(), server.commands())
            });
            // After DATA, nothing but QUIT: no body line was read as a command.
            let after: Vec<&String> = commands
                .iter()
                .skip_while(|c| c.as_str() != "DATA")
                .skip(1)
                .collect();
            prop_assert_eq!(after, vec!["QUIT"]);

            let received = unstuff(&data);
            let stripped = mapispool::transport::wire::strip_bcc(header.as_bytes());
            let want_header = canon(&stripped);
            prop_assert!(received.starts_with(&want_header),
                "header: {:?}", String::from_utf8_lossy(&received));
            let rest = &received[want_header.len()..];
            let canon_body = canon(&body);
            if must_convert(&body, eight_bit_ok) {
                let text = String::from_utf8_lossy(rest).into_owned();
                prop_assert!(text.starts_with("MIME-Version: 1.0\r\nContent-Type: text/plain; charset="), "{}", text);
                let (added, encoded) = text.split_once("\r\n\r\n").expect("blank line");
                prop_assert!(added.ends_with("\r\nContent-Transfer-Encoding: base64"), "{}", added);
                let bad: Vec<&str> = encoded.lines().filter(|l| l.len() > 76 || !l.is_ascii()).collect();
                prop_assert!(bad.is_empty(), "base64 lines over 76 or not ASCII: {:?}", bad);
                prop_assert_eq!(b64decode(encoded.as_bytes()), canon_body);
            } else {
                let mut want = b"\r\n".to_vec();
                want.extend_from_slice(&canon_body);
                if !canon_body.is_empty() && !canon_body.ends_with(b"\r\n") {
                    want.extend_from_slice(b"\r\n");
                }
                prop_assert_eq!(String::from_utf8_lossy(rest), String::from_utf8_lossy(&want));
            }
        }
    }
}

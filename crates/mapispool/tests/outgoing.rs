//! What `submit` makes of a message (issue 12, the submit side), seen through the API and on
//! the wire of a scripted SMTP server: the `Date:` and `Message-ID:` added once and sent the
//! same on every retry, values with CR/LF/NUL refused, the envelope sender, the null sender.

mod common;
#[path = "peers/fake_smtp.rs"]
mod fake_smtp;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use fake_smtp::{FakeSmtp, Knobs};
use mapi::MapiCode;
use mapi::constants::{MAPI_BCC, MAPI_TO};
use mapispool::profile::{OutboundConfig, TransportConfig};
use mapispool::store::Folder;
use mapispool::{FlushFlags, FlushReport, Session, Submission};

fn smtp_transport(port: u16) -> TransportConfig {
    TransportConfig {
        name: "smtp".into(),
        address: "alice@example.com".into(),
        display_name: Some("Alice A.".into()),
        outbound: Some(OutboundConfig::Smtp(loopback_smtp(port))),
        inbound: None,
        connect_command: None,
        flush_queues: true,
    }
}

async fn alice(world: &World, server: &FakeSmtp) -> Session {
    logon(world.profile("alice", vec![smtp_transport(server.port)])).await
}

async fn flush(session: &Session, flags: FlushFlags) -> FlushReport {
    session
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | flags)
        .await
        .expect("flush")
}

/// DATA as the server got it, dot-stuffing undone.
fn unstuffed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for line in data.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

fn mail_from(server: &FakeSmtp) -> Vec<String> {
    server
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL FROM:"))
        .map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

/// The `name:` fields of a header, values trimmed.
fn fields(message: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next().unwrap_or_default();
    let prefix = format!("{}:", name.to_ascii_lowercase());
    header
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .collect()
}

/// Issue 12.2: a message without `Date:` and `Message-ID:` gets them at submit, once: the
/// first transmission (to bob), the retry after carol's 451 and the Sent Items copy carry the
/// same bytes, and the Message-ID is at the account's domain.
#[tokio::test]
async fn date_and_message_id_are_added_once_and_every_retry_sends_the_same() {
    let carol_tries = Arc::new(AtomicUsize::new(0));
    let tries = carol_tries.clone();
    let server = FakeSmtp::start(Knobs {
        rcpt: Arc::new(move |a: &str| {
            if a == "carol@example.org" && tries.fetch_add(1, Ordering::SeqCst) == 0 {
                "451 4.3.0 try again later".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let a = alice(&world, &server).await;
    let text = "From: <alice@example.com>\r\nTo: <bob@example.org>, <carol@example.org>\r\nSubject: nightly\r\n\r\nok\r\n";
    let submitted = a
        .submit(Submission::default(), text.as_bytes())
        .await
        .expect("submit");
    let stored = a
        .message_body(&submitted.entry_id())
        .await
        .expect("the Outbox copy");
    let dates = fields(&stored, "Date");
    let ids = fields(&stored, "Message-ID");
    assert_eq!((dates.len(), ids.len()), (1, 1), "{stored:?}");
    assert!(ids[0].starts_with('<') && ids[0].ends_with("@example.com>"));
    assert_eq!(
        stored,
        format!("Date: {}\r\nMessage-ID: {}\r\n{text}", dates[0], ids[0]).into_bytes()
    );
    let queued = a.outgoing_queue().await.expect("queue");
    assert_eq!(
        queued[0].message.internet_message_id.as_deref(),
        ids[0].strip_prefix('<').and_then(|i| i.strip_suffix('>'))
    );

    flush(&a, FlushFlags::default()).await;
    assert_eq!(server.received().len(), 1, "bob's copy");
    assert_eq!(
        a.message_body(&submitted.entry_id()).await.expect("body"),
        stored,
        "the copy waiting for its retry is unchanged"
    );
    let report = flush(&a, FlushFlags::FORCE).await;
    assert!(report.is_complete(), "{report:?}");
    let received = server.received();
    assert_eq!(received.len(), 2, "carol's copy, on the retry");
    assert_eq!(received[0].rcpts, ["bob@example.org"]);
    assert_eq!(received[1].rcpts, ["carol@example.org"]);
    for r in &received {
        assert_eq!(fields(&r.data, "Date"), dates);
        assert_eq!(fields(&r.data, "Message-ID"), ids);
    }
    assert_eq!(unstuffed(&received[0].data), unstuffed(&received[1].data));
    let sent = a.messages(Folder::SentItems).await.expect("sent");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        a.message_body(&sent[0].entry_id())
            .await
            .expect("sent copy"),
        stored
    );
}

/// Issue 12.3: every API field that reaches a header or an SMTP command is refused with
/// `MAPI_E_INVALID_PARAMETER` when it holds CR, LF or NUL, and nothing is queued.
#[tokio::test]
async fn api_fields_with_cr_lf_or_nul_are_invalid_parameters() {
    let world = World::new();
    let server = FakeSmtp::start(Knobs::default()).await;
    let a = alice(&world, &server).await;
    let text = "Subject: x\r\n\r\nbody\r\n";
    for (what, submission) in [
        (
            "sender name",
            Submission {
                sender_name: Some("Visitor\nBcc: evil@example.net".into()),
                recipients: vec!["bob@example.org".into()],
                ..Submission::default()
            },
        ),
        (
            "sender name",
            Submission {
                sender_name: Some("Visitor\0".into()),
                recipients: vec!["bob@example.org".into()],
                ..Submission::default()
            },
        ),
        (
            "sender",
            Submission {
                from: Some("alice@example.com\0".into()),
                recipients: vec!["bob@example.org".into()],
                ..Submission::default()
            },
        ),
        (
            "recipient",
            Submission {
                recipients: vec!["bob@example.org\0evil@example.net".into()],
                ..Submission::default()
            },
        ),
    ] {
        let e = a
            .submit(submission.clone(), text.as_bytes())
            .await
            .expect_err("refused");
        assert_eq!(e.code, MapiCode::InvalidParameter, "{submission:?}: {e}");
        assert!(e.cause.starts_with(&format!("{what} ")), "{e}");
        assert!(e.cause.contains("holds a"), "{e}");
    }
    assert!(a.outgoing_queue().await.expect("queue").is_empty());
    assert!(a.messages(Folder::Outbox).await.expect("outbox").is_empty());
}

/// Issue 12.3: the API's `sender_name` is RFC 2047-encoded in the `From:` submit writes.
#[tokio::test]
async fn a_non_ascii_sender_name_is_encoded() {
    let world = World::new();
    let server = FakeSmtp::start(Knobs::default()).await;
    let a = alice(&world, &server).await;
    let submitted = a
        .submit(
            Submission {
                sender_name: Some("José Núñez".into()),
                recipients: vec!["bob@example.org".into()],
                ..Submission::default()
            },
            &b"Subject: hola\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <h@x>\r\n\r\nhola\r\n"[..],
        )
        .await
        .expect("submit");
    let body = a.message_body(&submitted.entry_id()).await.expect("body");
    assert_eq!(
        String::from_utf8(body).expect("ASCII"),
        "From: =?utf-8?B?Sm9zw6kgTsO6w7Fleg==?= <alice@example.com>\r\nSubject: hola\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <h@x>\r\n\r\nhola\r\n"
    );
}

/// Issue 12.7 and 12.5 on the wire: without `from` the envelope sender is the account's
/// address, not the From: header's; `<>` (or `""`) is the null sender, `MAIL FROM:<>`.
#[tokio::test]
async fn the_envelope_sender_is_the_account_unless_given_and_can_be_null() {
    let world = World::new();
    let server = FakeSmtp::start(Knobs::default()).await;
    let a = alice(&world, &server).await;
    let text = "From: Someone Else <someone@elsewhere.example>\r\nTo: <bob@example.org>\r\nSubject: x\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <x@x>\r\n\r\nbody\r\n";
    for from in [None, Some("<>"), Some(""), Some("bounces@example.com")] {
        a.submit(
            Submission {
                from: from.map(str::to_string),
                ..Submission::default()
            },
            text.as_bytes(),
        )
        .await
        .expect("submit");
    }
    let report = flush(&a, FlushFlags::default()).await;
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        mail_from(&server),
        [
            "MAIL FROM:<alice@example.com>",
            "MAIL FROM:<>",
            "MAIL FROM:<>",
            "MAIL FROM:<bounces@example.com>",
        ]
    );
}

/// Issue 12.8 through the API: the envelope recipients take their type from the headers.
#[tokio::test]
async fn recipients_take_their_type_from_the_headers() {
    let world = World::new();
    let server = FakeSmtp::start(Knobs::default()).await;
    let a = alice(&world, &server).await;
    a.submit(
        Submission {
            recipients: vec!["bob@example.org".into(), "hidden@example.org".into()],
            ..Submission::default()
        },
        &b"To: Bob <bob@example.org>\r\nSubject: x\r\n\r\nbody\r\n"[..],
    )
    .await
    .expect("submit");
    let queued = a.outgoing_queue().await.expect("queue");
    let types: Vec<(&str, &str, i32)> = queued[0]
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.display(), r.recipient_type))
        .collect();
    assert_eq!(
        types,
        [
            ("bob@example.org", "Bob", MAPI_TO),
            ("hidden@example.org", "hidden@example.org", MAPI_BCC)
        ]
    );
    assert_eq!(queued[0].display(MAPI_TO), "Bob");
    flush(&a, FlushFlags::default()).await;
    assert_eq!(
        server.received()[0].rcpts,
        ["bob@example.org", "hidden@example.org"]
    );
}

//! Security (issue 6): TLS certificates verified by default (self-signed, wrong name, then the
//! right `ca_file`), no AUTH on an unencrypted connection unless `security = "none"`, CR/LF
//! injection in the envelope and headers refused before anything is queued, and a hostile
//! server's endless reply line or endless multi-line reply ending in a bounded error.
//!
//! The socket refusing other users is tested in `crates/mapispool-cli/tests/daemon.rs`; secrets
//! in every CLI output in `crates/mapispool-cli/tests/security.rs`.

mod common;
#[path = "peers/fake_smtp.rs"]
mod fake_smtp;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use fake_smtp::{FakeSmtp, Knobs};
use mapi::MapiCode;
use mapispool::Submission;
use mapispool::profile::{Credential, OutboundConfig, Security, SmtpConfig, TransportConfig};
use mapispool::transport::smtp::{SmtpOutbound, SmtpTimeouts};
use mapispool::transport::{Envelope, EnvelopeRecipient, RecipientResult, TransportErrorKind};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn smtp_config(port: u16, security: Security) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security,
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

fn with_login(mut config: SmtpConfig) -> SmtpConfig {
    config.username = Some("alice".into());
    config.credential = Some(Credential::Command("printf pw".into()));
    config
}

fn outbound(config: &SmtpConfig) -> SmtpOutbound {
    SmtpOutbound::new(config, "smtp", false)
        .with_timeouts(SmtpTimeouts::all(Duration::from_secs(5)))
}

fn envelope() -> Envelope {
    Envelope {
        from: "alice@example.com".into(),
        recipients: vec![EnvelopeRecipient {
            rowid: 1,
            address: "bob@example.org".into(),
        }],
        size: 20,
        dsn: None,
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            chain,
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    Arc::new(config)
}

/// A self-signed certificate for 127.0.0.1: (its PEM, the server config).
fn self_signed() -> (String, Arc<rustls::ServerConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("self-signed");
    let config = server_config(vec![ck.cert.der().clone()], &ck.signing_key);
    (ck.cert.pem(), config)
}

/// A CA and a leaf it signed for `names`: (the CA's PEM, the server config).
fn ca_signed(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("leaf key");
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("leaf params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = params.signed_by(&key, &issuer).expect("leaf cert");
    (
        ca.pem(),
        server_config(vec![leaf.der().clone(), ca.der().clone()], &key),
    )
}

/// An implicit-TLS SMTP server (port 465 style) that takes any number of connections and
/// records the commands it got under TLS.
async fn tls_smtp(config: Arc<rustls::ServerConfig>) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut io = BufReader::new(tls);
                let _ = io.write_all(b"220 tls.test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    log.lock().expect("log").push(cmd.clone());
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-tls.test\r\n250 PIPELINING\r\n"
                    } else if cmd == "DATA" {
                        let _ = io.write_all(b"354 go\r\n").await;
                        let mut body = Vec::new();
                        while io.read_until(b'\n', &mut body).await.unwrap_or(0) > 0 {
                            if body.ends_with(b"\r\n.\r\n") {
                                break;
                            }
                        }
                        b"250 2.0.0 queued\r\n"
                    } else if cmd == "QUIT" {
                        let _ = io.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = io.write_all(reply).await;
                }
            });
        }
    });
    (port, seen)
}

fn write_pem(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path
}

#[tokio::test]
async fn tls_refuses_a_self_signed_certificate_by_default_and_trusts_it_in_ca_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pem, config) = self_signed();
    let (port, seen) = tls_smtp(config).await;

    let e = outbound(&smtp_config(port, Security::Tls))
        .connect()
        .await
        .expect_err("a self-signed certificate is not trusted by default");
    assert_eq!(e.kind, TransportErrorKind::Tls, "{}", e.message);
    assert!(
        e.message.contains("127.0.0.1") && e.message.contains("ca_file"),
        "names the host and what to do: {}",
        e.message
    );
    assert!(seen.lock().expect("log").is_empty(), "nothing said over it");

    // The certificate itself in ca_file: now it is trusted, and mail goes.
    let mut config = smtp_config(port, Security::Tls);
    config.ca_file = Some(write_pem(dir.path(), "self.pem", &pem));
    let mut t = outbound(&config);
    t.connect().await.expect("trusted through ca_file");
    let r = t
        .send(&envelope(), &b"Subject: x\r\n\r\nhi\r\n"[..])
        .await
        .expect("send");
    assert_eq!(r, vec![RecipientResult::Delivered]);
    t.close().await;
}

#[tokio::test]
async fn tls_refuses_a_certificate_for_another_name_even_from_a_trusted_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, config) = ca_signed(&["mail.example.com"]);
    let (port, seen) = tls_smtp(config).await;
    let mut config = smtp_config(port, Security::Tls);
    config.ca_file = Some(write_pem(dir.path(), "ca.pem", &ca));
    let e = outbound(&config)
        .connect()
        .await
        .expect_err("the certificate is for mail.example.com, not 127.0.0.1");
    assert_eq!(e.kind, TransportErrorKind::Tls, "{}", e.message);
    assert!(
        e.message.contains("127.0.0.1") && e.message.contains("not for that name"),
        "names the host and the problem: {}",
        e.message
    );
    assert!(seen.lock().expect("log").is_empty());

    // The same CA with a certificate for the right name: it works.
    let (ca, config) = ca_signed(&["127.0.0.1"]);
    let (port, seen) = tls_smtp(config).await;
    let mut config = smtp_config(port, Security::Tls);
    config.ca_file = Some(write_pem(dir.path(), "ca2.pem", &ca));
    let mut t = outbound(&config);
    t.connect()
        .await
        .expect("the right name under a trusted CA");
    t.close().await;
    assert!(
        seen.lock()
            .expect("log")
            .iter()
            .any(|c| c.starts_with("EHLO")),
        "spoke SMTP under TLS"
    );
}

#[tokio::test]
async fn a_tls_failure_through_flush_is_reported_with_the_host() {
    let world = World::new();
    let (_pem, config) = self_signed();
    let (port, _seen) = tls_smtp(config).await;
    let transport = TransportConfig {
        name: "smtp".into(),
        address: "alice@example.com".into(),
        display_name: None,
        outbound: Some(OutboundConfig::Smtp(smtp_config(port, Security::Tls))),
        inbound: None,
        connect_command: None,
        flush_queues: true,
    };
    let session = logon(world.profile("alice", vec![transport])).await;
    submit(&session, "bob@example.org", "tls").await;
    let report = session
        .spooler_status()
        .flush_queues(None, mapispool::FlushFlags::UPLOAD)
        .await
        .expect("flush");
    let text = format!("{report:?}");
    assert!(
        text.contains("127.0.0.1") && text.contains("ca_file"),
        "the report says which host and what to do: {text}"
    );
    // Still queued for a retry, not sent in clear, not lost.
    assert_eq!(session.outgoing_queue().await.expect("queue").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// No AUTH in clear

#[test]
fn the_default_security_is_starttls() {
    let text = r#"
[store]
path = "s.db"
[[transport]]
name = "smtp"
address = "alice@example.com"
[transport.outbound]
kind = "smtp"
host = "mail.example.com"
username = "alice"
password_command = "printf pw"
"#;
    let profile = mapispool::Profile::from_str_at(text, Path::new("/tmp/p.toml")).expect("parses");
    match &profile.transports[0].outbound {
        Some(OutboundConfig::Smtp(smtp)) => assert_eq!(smtp.security, Security::Starttls),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_auth_over_an_unencrypted_connection_unless_plaintext_auth_is_allowed() {
    let knobs = Knobs {
        auth: Some(("alice".into(), "pw".into())),
        ..Knobs::default()
    };
    // The default (STARTTLS) against a server that does not offer it: refused before AUTH.
    let server = FakeSmtp::start(knobs.clone()).await;
    let e = outbound(&with_login(smtp_config(server.port, Security::Starttls)))
        .connect()
        .await
        .expect_err("no STARTTLS offered");
    assert_eq!(e.kind, TransportErrorKind::Tls, "{}", e.message);
    assert!(e.message.contains("STARTTLS"), "{}", e.message);
    let commands = server.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );

    // Implicit TLS against a plain server: the handshake fails, nothing is said in clear.
    let server = FakeSmtp::start(knobs.clone()).await;
    let e = outbound(&with_login(smtp_config(server.port, Security::Tls)))
        .connect()
        .await
        .expect_err("not a TLS server");
    assert!(
        matches!(
            e.kind,
            TransportErrorKind::Tls | TransportErrorKind::Timeout | TransportErrorKind::Connect
        ),
        "{:?}: {}",
        e.kind,
        e.message
    );
    let commands = server.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );

    // security = "none" alone is not enough (issue 19.9, defence in depth: the profile refuses
    // it at load, and the transport refuses it too for a configuration built in code): the
    // server offers AUTH without TLS, and no AUTH goes out.
    let server = FakeSmtp::start(knobs.clone()).await;
    let e = outbound(&with_login(smtp_config(server.port, Security::None)))
        .connect()
        .await
        .expect_err("no password in clear");
    assert_eq!(e.kind, TransportErrorKind::Auth, "{}", e.message);
    assert!(
        e.message.contains("without TLS") && e.message.contains("allow_plaintext_auth"),
        "{}",
        e.message
    );
    let commands = server.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );

    // With allow_plaintext_auth = true as well, the explicit opt-in: then, and only then, AUTH
    // goes in clear.
    let server = FakeSmtp::start(knobs).await;
    let mut config = with_login(smtp_config(server.port, Security::None));
    config.allow_plaintext_auth = true;
    let mut t = outbound(&config);
    t.connect().await.expect("AUTH in clear, as asked");
    t.close().await;
    assert!(server.commands().iter().any(|c| c.starts_with("AUTH")));
}

/// A line server for one connection: `greeting` first, then for each line it reads (recorded)
/// the answer `reply` gives (`{tag}` replaced by the line's first word, for IMAP).
async fn line_server(
    greeting: &'static str,
    reply: fn(&str) -> String,
) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        if write.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().expect("log").push(line.clone());
            let tag = line.split(' ').next().unwrap_or_default().to_string();
            let answer = reply(&line).replace("{tag}", &tag);
            if write.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    (port, seen)
}

/// IMAP and POP3 servers that offer a login without TLS get none from a transport with
/// `security = "none"` that does not also say `allow_plaintext_auth = true` (issue 19.9).
#[tokio::test]
async fn imap_and_pop3_send_no_password_without_tls_unless_allowed() {
    use mapispool::profile::{AfterDownload, ImapConfig, Pop3Config};
    use mapispool::transport::imap::ImapInbound;
    use mapispool::transport::pop3::Pop3Inbound;

    let (port, seen) = line_server("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", |line| {
        if line.to_ascii_uppercase().contains("CAPABILITY") {
            "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".into()
        } else {
            "{tag} OK done\r\n".into()
        }
    })
    .await;
    let imap = ImapConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some("alice".into()),
        credential: Some(Credential::Command("printf pw".into())),
        auth: None,
        folder: "INBOX".into(),
        after_download: AfterDownload::Seen,
        idle: false,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: false,
    };
    let e = ImapInbound::new(&imap, "mail", "alice@test", false)
        .connect()
        .await
        .expect_err("no password in clear");
    assert_eq!(e.kind, TransportErrorKind::Auth, "{}", e.message);
    assert!(e.message.contains("without TLS"), "{}", e.message);
    let lines = seen.lock().expect("log").clone();
    assert!(
        !lines.iter().any(|l| {
            let l = l.to_ascii_uppercase();
            l.contains("LOGIN") || l.contains("AUTHENTICATE") || l.contains("CFC=")
        }),
        "{lines:?}"
    );

    let (port, seen) = line_server("+OK ready\r\n", |line| {
        if line.eq_ignore_ascii_case("CAPA") {
            "+OK\r\nUSER\r\nUIDL\r\n.\r\n".into()
        } else {
            "+OK\r\n".into()
        }
    })
    .await;
    let pop3 = Pop3Config {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some("alice".into()),
        credential: Some(Credential::Command("printf pw".into())),
        apop: false,
        leave_on_server: false,
        leave_days: None,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: false,
    };
    let e = Pop3Inbound::new(&pop3, "mail", "alice@test", false)
        .connect()
        .await
        .expect_err("no password in clear");
    assert_eq!(e.kind, TransportErrorKind::Auth, "{}", e.message);
    assert!(e.message.contains("without TLS"), "{}", e.message);
    let lines = seen.lock().expect("log").clone();
    assert!(
        !lines
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with("USER") || l.starts_with("PASS")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "CAPA"), "it did talk: {lines:?}");
}

// ---------------------------------------------------------------------------------------------
// Injection

/// Submits `text` with `submission`; the error's code and words, and that nothing was queued.
async fn refused(submission: Submission, text: &str) -> (MapiCode, String) {
    let world = World::new();
    let session = logon(world.simple_profile("alice")).await;
    let e = session
        .submit(submission, text.as_bytes())
        .await
        .expect_err("must be refused");
    assert!(
        session.outgoing_queue().await.expect("queue").is_empty(),
        "nothing queued after {e}"
    );
    assert!(
        session
            .messages(mapispool::store::Folder::Outbox)
            .await
            .expect("outbox")
            .is_empty(),
        "nothing half-submitted in the Outbox after {e}"
    );
    (e.code, e.to_string())
}

#[tokio::test]
async fn cr_lf_in_envelope_addresses_is_refused_and_nothing_queued() {
    let ok = letter("alice@localhost", "bob@localhost", "hi");
    for bad in [
        "bob@localhost\r\nRCPT TO:<evil@example.com>",
        "bob@localhost\nDATA",
        "bob@localhost\rRSET",
        "bob@localhost>\r\nMAIL FROM:<x@y",
    ] {
        let (code, words) = refused(
            Submission {
                recipients: vec![bad.into()],
                ..Submission::default()
            },
            &ok,
        )
        .await;
        assert_eq!(code, MapiCode::InvalidParameter, "{bad:?}: {words}");
        assert!(words.contains("recipient"), "{bad:?}: {words}");

        let (code, words) = refused(
            Submission {
                from: Some(bad.replace("bob", "alice")),
                recipients: vec!["bob@localhost".into()],
                ..Submission::default()
            },
            &ok,
        )
        .await;
        assert_eq!(code, MapiCode::InvalidParameter, "{bad:?}: {words}");
        assert!(words.contains("sender"), "{bad:?}: {words}");
    }
}

#[tokio::test]
async fn a_bare_cr_in_a_header_is_refused_and_nothing_queued() {
    for text in [
        "From: <alice@localhost>\r\nTo: <bob@localhost>\r\nSubject: hi\r.\rRSET\r\n\r\nbody\r\n",
        "From: <alice@localhost>\r\nTo: <bob@localhost>\rRCPT TO:<evil@example.com>\r\nSubject: x\r\n\r\nbody\r\n",
        "From: <alice@localhost>\nTo: <bob@localhost>\nSubject: a\rMAIL FROM:<x@y>\n\nbody\n",
    ] {
        let (code, words) = refused(Submission::default(), text).await;
        assert_eq!(code, MapiCode::CorruptData, "{text:?}: {words}");
        assert!(words.contains("CR"), "{text:?}: {words}");
    }
}

#[tokio::test]
async fn a_folded_subject_is_accepted_and_reaches_smtp_only_inside_data() {
    let world = World::new();
    let server = FakeSmtp::start(Knobs::default()).await;
    let transport = TransportConfig {
        name: "smtp".into(),
        address: "alice@example.com".into(),
        display_name: None,
        outbound: Some(OutboundConfig::Smtp(smtp_config(
            server.port,
            Security::None,
        ))),
        inbound: None,
        connect_command: None,
        flush_queues: true,
    };
    let session = logon(world.profile("alice", vec![transport])).await;
    let text = "From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: a long\r\n subject\r\n\tfolded\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@example.com>\r\n";
    let submitted = session
        .submit(Submission::default(), text.as_bytes())
        .await
        .expect("folded headers are fine");
    assert_eq!(submitted.subject, "a long subject folded");
    session
        .spooler_status()
        .flush_queues(None, mapispool::FlushFlags::UPLOAD)
        .await
        .expect("flush");
    let commands = server.commands();
    assert!(
        commands.iter().all(|c| !c.contains("evil")),
        "the body's MAIL line stayed in DATA: {commands:?}"
    );
    let received = server.received();
    assert_eq!(received.len(), 1, "{commands:?}");
    let data = String::from_utf8_lossy(&received[0].data);
    assert!(
        data.contains("\r\n..\r\nMAIL FROM:<evil@example.com>\r\n"),
        "dot-stuffed: {data:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile servers: endless replies

/// A server that sends `first`, then `chunk` forever (until the client goes), counting bytes.
async fn endless(first: &'static [u8], chunk: Vec<u8>) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        if let Ok((mut tcp, _)) = listener.accept().await {
            if tcp.write_all(first).await.is_err() {
                return;
            }
            while tcp.write_all(&chunk).await.is_ok() {
                let total = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if total > 1 << 30 {
                    return; // 1 GiB: the client is clearly reading without a bound.
                }
            }
        }
    });
    (port, sent)
}

async fn endless_case(first: &'static [u8], chunk: Vec<u8>, expect: &str) {
    let (port, sent) = endless(first, chunk).await;
    let started = Instant::now();
    let e = outbound(&smtp_config(port, Security::None))
        .connect()
        .await
        .expect_err("an endless reply is an error");
    let elapsed = started.elapsed();
    let bytes = sent.load(Ordering::Relaxed);
    assert!(e.message.contains(expect), "{:?}: {}", e.kind, e.message);
    assert!(
        e.message.len() < 1024,
        "the error quotes the server, cut short: {} bytes",
        e.message.len()
    );
    assert!(
        bytes < 64 << 20,
        "the client stopped reading early, not after {bytes} bytes"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn an_endless_reply_line_is_a_bounded_error() {
    endless_case(b"220 ", vec![b'x'; 64 * 1024], "longer than 8192 bytes").await;
}

#[tokio::test]
async fn an_endless_multi_line_reply_is_a_bounded_error() {
    // Short lines: the line count cap.
    endless_case(b"", b"220-more\r\n".repeat(1000), "more than 256 lines").await;
    // Lines just under the length cap: still at most 256 of them (2 MiB), then an error.
    let mut line = b"220-".to_vec();
    line.extend(std::iter::repeat_n(b'y', 8000));
    line.extend_from_slice(b"\r\n");
    endless_case(b"", line, "more than 256 lines").await;
}

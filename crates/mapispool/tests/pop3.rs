//! The POP3 inbound transport: against the real servers, Dovecot (scripts/peers/dovecot.sh) and
//! Cyrus (scripts/peers/cyrus.sh) — the download tests run against both (`name::dovecot`,
//! `name::cyrus`) — and against a scripted in-process server for the faults a real one will not
//! produce on demand.

#[path = "peers/cyrus.rs"]
mod cyrus;
#[path = "peers/dovecot.rs"]
mod dovecot;
#[path = "peers/mailserver.rs"]
mod mailserver;
#[path = "peers/server.rs"]
#[macro_use]
mod server;

use std::sync::{Arc, Mutex};

use dovecot::*;
use mapispool::Session;
use mapispool::profile::{InboundConfig, Pop3Config, Security};
use mapispool::transport::pop3::codec::stuff;
use server::{Family, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

async fn session(dir: &std::path::Path, config: Pop3Config) -> Session {
    logon(dir, InboundConfig::Pop3(config)).await
}

for_each_server!(downloads_every_message_once_and_deletes_after_storing);
async fn downloads_every_message_once_and_deletes_after_storing(family: Family) {
    let server = Server::start(family, &[("test", "s3cret")], false);
    let sent = server.preload("test", 25, 3000);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), server.pop3("test", "s3cret")).await;

    let report = download(&s).await;
    let part = &report.transports[0];
    assert_eq!(part.error, None, "{}", server.log());
    assert_eq!(part.received, 25);
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(sent.clone()),
        "bytes as written"
    );
    assert_eq!(
        server.count("test").0,
        0,
        "deleted on the server after storing"
    );
    assert!(!failed(&s));

    // Nothing twice.
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 0);
    assert_eq!(inbox(&s).await.len(), 25);
}

for_each_server!(leave_on_server_keeps_them_and_leave_days_deletes_old_ones);
async fn leave_on_server_keeps_them_and_leave_days_deletes_old_ones(family: Family) {
    let server = Server::start(family, &[("test", "pw")], false);
    let sent = server.preload("test", 5, 500);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server.pop3("test", "pw");
    config.leave_on_server = true;
    config.leave_days = Some(3);
    let s = session(dir.path(), config.clone()).await;
    assert_eq!(download(&s).await.transports[0].received, 5);
    assert_eq!(server.count("test").0, 5, "left on the server");
    assert_eq!(download(&s).await.transports[0].received, 0, "not twice");
    assert_eq!(
        server.count("test").0,
        5,
        "younger than 3 days: still there"
    );
    s.logoff().await;

    // With leave_days = 0 every message is old enough: deleted, and still not stored twice.
    config.leave_days = Some(0);
    let s = session(dir.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 0);
    assert_eq!(server.count("test").0, 0);
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
}

#[tokio::test]
async fn apop_logs_in() {
    let dovecot = Dovecot::start(&[("test", "pw")], false);
    let sent = dovecot.preload("test", 2, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.pop3("test", "pw");
    config.apop = true;
    let s = session(dir.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
}

for_each_server!(a_wrong_password_fails_with_the_servers_words);
async fn a_wrong_password_fails_with_the_servers_words(family: Family) {
    let words = match family {
        Family::Dovecot => "Authentication failed",
        Family::Cyrus => "[AUTH] Invalid login",
    };
    let (server, _) = server::check_a_wrong_password_fails_with_the_servers_words(
        family,
        words,
        |server, user, password| InboundConfig::Pop3(server.pop3(user, password)),
    )
    .await;
    assert_eq!(server.count("test").0, 1, "still on the server");
}

#[tokio::test]
async fn connection_refused_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Pop3Config {
        port,
        ..fake_config(port)
    };
    let s = session(dir.path(), config).await;
    let report = download(&s).await;
    let error = report.transports[0].error.clone().expect("fails");
    assert!(
        error.contains(&format!("cannot connect to 127.0.0.1:{port}"))
            && error.contains("is the server running?"),
        "{error}"
    );
    assert_eq!(
        report.transports[0].error_code.as_deref(),
        Some("MAPI_E_NETWORK_ERROR")
    );
}

for_each_server!(tls_and_stls_with_ca_file_or_insecure_and_a_failure_without);
async fn tls_and_stls_with_ca_file_or_insecure_and_a_failure_without(family: Family) {
    let server = Server::start(family, &[("test", "pw")], true);
    let sent = server.preload("test", 3, 300);
    let dir = tempfile::tempdir().expect("tempdir");

    // Implicit TLS, nothing trusted: refused, nothing downloaded.
    let mut config = server.pop3("test", "pw");
    config.security = Security::Tls;
    config.port = server.pop3s_port();
    config.host = "localhost".into();
    config.leave_on_server = true;
    let s = session(dir.path(), config.clone()).await;
    let report = download(&s).await;
    let error = report.transports[0].error.clone().expect("untrusted");
    assert!(error.contains("not trusted"), "{error}");
    assert!(inbox(&s).await.is_empty());
    s.logoff().await;

    // Implicit TLS with insecure_skip_verify.
    config.insecure_skip_verify = true;
    let s = session(dir.path(), config.clone()).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 3);
    s.logoff().await;

    // STLS on the plain port with ca_file = the server's certificate.
    let dir2 = tempfile::tempdir().expect("tempdir");
    config.insecure_skip_verify = false;
    config.security = Security::Starttls;
    config.port = server.pop3_port();
    config.ca_file = Some(server.cert());
    config.leave_on_server = false;
    let s = session(dir2.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", server.log());
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
    assert_eq!(server.count("test").0, 0);
}

// ---- A scripted POP3 server ----

#[derive(Default)]
struct Script {
    /// (UIDL, message) on the server; deletions commit at QUIT.
    messages: Vec<(String, Vec<u8>)>,
    /// RETR of this message number sends half of it and drops the connection, once.
    drop_in_retr: Option<usize>,
    /// -ERR text for PASS.
    pass_err: Option<String>,
    /// A malformed UIDL listing.
    bad_uidl: bool,
    /// RETR answers go out this many bytes at a time with this pause between: a slow but
    /// steady server.
    pace: Option<(usize, std::time::Duration)>,
    /// RETR of this message number sends half of it and then nothing more (a stalled server).
    stall_in_retr: Option<usize>,
    /// LIST gives these sizes instead of the real ones (a server that lies about sizes).
    list_sizes: Option<Vec<u64>>,
    /// Each session hangs up without an answer to its command number N (1 is the first).
    drop_at: Option<usize>,
    /// Messages removed at QUIT, in order.
    removed: Vec<Vec<u8>>,
    /// Commands the server saw (PASS redacted), for checks.
    seen: Vec<String>,
}

async fn fake_server(script: Arc<Mutex<Script>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let _ = serve(stream, script).await;
            });
        }
    });
    port
}

async fn serve(stream: tokio::net::TcpStream, script: Arc<Mutex<Script>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"+OK scripted POP3 ready\r\n").await?;
    let mut deleted: Vec<usize> = Vec::new();
    let mut commands = 0usize;
    while let Some(line) = lines.next_line().await? {
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        commands += 1;
        if script.lock().expect("lock").drop_at == Some(commands) {
            return Ok(());
        }
        // Whether to close the connection after the reply, or to say nothing more.
        let mut close = false;
        let mut stall = false;
        let reply: Vec<u8> = {
            let mut s = script.lock().expect("lock");
            s.seen.push(if verb == "PASS" {
                "PASS ***".into()
            } else {
                line.clone()
            });
            match verb.as_str() {
                "CAPA" => b"+OK\r\nUIDL\r\nUSER\r\n.\r\n".to_vec(),
                "USER" => b"+OK\r\n".to_vec(),
                "PASS" => match &s.pass_err {
                    Some(text) => format!("-ERR {text}\r\n").into_bytes(),
                    None => b"+OK logged in\r\n".to_vec(),
                },
                "UIDL" if s.bad_uidl => b"+OK\r\nthis is not a uidl line\r\n.\r\n".to_vec(),
                "UIDL" | "LIST" => {
                    let mut r = b"+OK\r\n".to_vec();
                    for (i, (uidl, body)) in s.messages.iter().enumerate() {
                        let word = if verb == "UIDL" {
                            uidl.clone()
                        } else if let Some(size) = s.list_sizes.as_ref().and_then(|l| l.get(i)) {
                            size.to_string()
                        } else {
                            body.len().to_string()
                        };
                        r.extend_from_slice(format!("{} {word}\r\n", i + 1).as_bytes());
                    }
                    r.extend_from_slice(b".\r\n");
                    r
                }
                "RETR" => {
                    let n: usize = arg.trim().parse().unwrap_or(0);
                    match s.messages.get(n.wrapping_sub(1)) {
                        None => b"-ERR no such message\r\n".to_vec(),
                        Some((_, body)) => {
                            let mut r = b"+OK\r\n".to_vec();
                            let wire = stuff(body);
                            if s.stall_in_retr == Some(n) {
                                r.extend_from_slice(&wire[..wire.len() / 2]);
                                stall = true;
                            } else if s.drop_in_retr == Some(n) {
                                // The connection drops mid-message.
                                s.drop_in_retr = None;
                                r.extend_from_slice(&wire[..wire.len() / 2]);
                                close = true;
                            } else {
                                r.extend_from_slice(&wire);
                            }
                            r
                        }
                    }
                }
                "DELE" => {
                    let n: usize = arg.trim().parse().unwrap_or(0);
                    deleted.push(n);
                    b"+OK\r\n".to_vec()
                }
                "QUIT" => {
                    deleted.sort_unstable();
                    deleted.dedup();
                    for n in deleted.iter().rev() {
                        if *n >= 1 && *n <= s.messages.len() {
                            let (_, body) = s.messages.remove(n - 1);
                            s.removed.push(body);
                        }
                    }
                    close = true;
                    b"+OK bye\r\n".to_vec()
                }
                _ => b"-ERR unknown command\r\n".to_vec(),
            }
        };
        let pace = script.lock().expect("lock").pace;
        match pace {
            Some((bytes, pause)) if verb == "RETR" => {
                for chunk in reply.chunks(bytes) {
                    write.write_all(chunk).await?;
                    tokio::time::sleep(pause).await;
                }
            }
            _ => write.write_all(&reply).await?,
        }
        if stall {
            // Holds the connection open and silent until the client gives up.
            let mut rest = lines.into_inner();
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut rest, &mut sink).await;
            return Ok(());
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// A session on the scripted server whose spooler `timeout` is `timeout`.
async fn session_with_timeout(
    dir: &std::path::Path,
    config: Pop3Config,
    timeout: std::time::Duration,
) -> Session {
    let mut profile = dovecot::profile(dir, InboundConfig::Pop3(config));
    profile.spooler.timeout = timeout;
    Session::logon_local(profile).await.expect("logon")
}

#[tokio::test]
async fn a_slow_but_steady_message_outlasts_the_timeout() {
    // 20 KB at 1 KB every 100 ms: about 2 s of steady streaming against a 500 ms timeout,
    // which bounds each read, not the whole download.
    let body = format!(
        "From: a@example.com\r\nSubject: slow\r\n\r\n{}\r\n",
        "s".repeat(20_000)
    )
    .into_bytes();
    let script = Arc::new(Mutex::new(Script {
        messages: vec![("slow-1".into(), body.clone())],
        pace: Some((1024, std::time::Duration::from_millis(100))),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session_with_timeout(
        dir.path(),
        fake_config(port),
        std::time::Duration::from_millis(500),
    )
    .await;
    let started = std::time::Instant::now();
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert!(started.elapsed() > std::time::Duration::from_millis(1500));
    assert_eq!(report.transports[0].received, 1);
    assert_eq!(inbox(&s).await, vec![body]);
}

#[tokio::test]
async fn a_server_that_stalls_mid_message_fails_after_the_timeout() {
    let messages: Vec<_> = (1..=2)
        .map(|i| (format!("uid-{i}"), fake_message(i)))
        .collect();
    let script = Arc::new(Mutex::new(Script {
        messages: messages.clone(),
        stall_in_retr: Some(2),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session_with_timeout(
        dir.path(),
        fake_config(port),
        std::time::Duration::from_millis(500),
    )
    .await;
    let started = std::time::Instant::now();
    let report = download(&s).await;
    let part = &report.transports[0];
    let error = part.error.clone().expect("the stall is reported");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        error.contains("received 1, then failed") && error.contains("500ms"),
        "{error}"
    );
    assert_eq!(part.error_code.as_deref(), Some("MAPI_E_TIMEOUT"));
    assert_eq!(
        part.received, 1,
        "the message stored before the stall is counted"
    );
    assert_eq!(inbox(&s).await, vec![messages[0].1.clone()]);
}

fn fake_config(port: u16) -> Pop3Config {
    Pop3Config {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some("u".into()),
        credential: Some(mapispool::profile::Credential::Command("echo pw".into())),
        apop: false,
        leave_on_server: false,
        leave_days: None,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: true,
    }
}

fn fake_message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: fake {i}\r\nMessage-ID: <fake{i}@test>\r\n\r\n.\r\n..\r\n.x\r\n{}\r\nend\r\n",
        "y".repeat(4000)
    )
    .into_bytes()
}

#[tokio::test]
async fn a_connection_dropped_mid_retr_stores_nothing_half_and_loses_nothing() {
    let messages: Vec<_> = (1..=3)
        .map(|i| (format!("uid-{i}"), fake_message(i)))
        .collect();
    let script = Arc::new(Mutex::new(Script {
        messages: messages.clone(),
        drop_in_retr: Some(2),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), fake_config(port)).await;

    let report = download(&s).await;
    let error = report.transports[0]
        .error
        .clone()
        .expect("the drop is reported");
    assert!(error.contains("closed the connection"), "{error}");
    // What was stored before the drop is said and counted (issue 13.7).
    assert!(error.starts_with("received 1, then failed: "), "{error}");
    assert_eq!(report.transports[0].received, 1);
    assert_eq!(
        inbox(&s).await,
        vec![messages[0].1.clone()],
        "only the whole one"
    );
    assert_eq!(
        script.lock().expect("lock").messages.len(),
        3,
        "no QUIT: nothing deleted"
    );
    assert!(failed(&s));

    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 2);
    let want: Vec<_> = messages.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(inbox(&s).await, want, "each exactly once, byte for byte");
    let s2 = script.lock().expect("lock");
    assert!(s2.messages.is_empty(), "deleted after storing, at QUIT");
    // The one stored before the drop is not fetched again: it is skipped by UIDL and deleted.
    assert_eq!(s2.seen.iter().filter(|c| *c == "RETR 1").count(), 1);
}

#[tokio::test]
async fn dot_stuffed_lines_come_back_as_they_were() {
    let body = b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.end\r\nlast line\r\n".to_vec();
    let script = Arc::new(Mutex::new(Script {
        messages: vec![("d1".into(), body.clone())],
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), fake_config(port)).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(inbox(&s).await, vec![body]);
}

#[tokio::test]
async fn a_malformed_listing_fails_and_stores_nothing() {
    let script = Arc::new(Mutex::new(Script {
        messages: vec![("m1".into(), fake_message(1))],
        bad_uidl: true,
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), fake_config(port)).await;
    let report = download(&s).await;
    let error = report.transports[0].error.clone().expect("fails");
    assert!(error.contains("malformed"), "{error}");
    assert!(inbox(&s).await.is_empty());
    assert_eq!(script.lock().expect("lock").messages.len(), 1);
}

#[tokio::test]
async fn err_on_pass_is_an_auth_failure_in_the_servers_words() {
    let script = Arc::new(Mutex::new(Script {
        messages: vec![("m1".into(), fake_message(1))],
        pass_err: Some("[AUTH] mailbox locked by another session".into()),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), fake_config(port)).await;
    let report = download(&s).await;
    let part = &report.transports[0];
    let error = part.error.clone().expect("fails");
    assert!(
        error.contains("[AUTH] mailbox locked by another session"),
        "{error}"
    );
    assert_eq!(part.error_code.as_deref(), Some("MAPI_E_LOGON_FAILED"));
    assert!(failed(&s));
}

/// The three messages of the repeated-UIDL tests: different content, one UIDL.
fn same_uidl(n: usize) -> Vec<(String, Vec<u8>)> {
    (1..=n)
        .map(|i| ("same-uidl".to_string(), fake_message(i)))
        .collect()
}

#[tokio::test]
async fn repeated_uidls_are_told_apart_and_none_is_deleted_unstored() {
    // A server that gives three messages one UIDL: each is stored, and only then deleted
    // (before: the first was stored, all three deleted).
    let messages = same_uidl(3);
    let script = Arc::new(Mutex::new(Script {
        messages: messages.clone(),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), fake_config(port)).await;
    let report = download(&s).await;
    let part = &report.transports[0];
    assert_eq!(part.received, 3);
    let said = part.error.clone().expect("the server's fault is said");
    assert!(
        said.contains("gives several messages the same UIDL (same-uidl)"),
        "{said}"
    );
    let want: Vec<_> = messages.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(inbox(&s).await, want);
    assert!(script.lock().expect("lock").messages.is_empty());
}

#[tokio::test]
async fn repeated_uidls_after_a_drop_are_stored_once_each() {
    // The connection drops while the third is read: the first two are stored, nothing is
    // deleted; the next download reads all three again, stores the third only, deletes all.
    let messages = same_uidl(3);
    let script = Arc::new(Mutex::new(Script {
        messages: messages.clone(),
        drop_in_retr: Some(3),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), fake_config(port)).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 2);
    assert_eq!(script.lock().expect("lock").messages.len(), 3);
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 1);
    let want: Vec<_> = messages.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(inbox(&s).await, want, "each exactly once");
    assert!(script.lock().expect("lock").messages.is_empty());
}

/// A session whose `[spooler] max_message_size` is `max`.
async fn session_with_max(dir: &std::path::Path, config: Pop3Config, max: u64) -> Session {
    let mut profile = dovecot::profile(dir, InboundConfig::Pop3(config));
    profile.spooler.max_message_size = max;
    Session::logon_local(profile).await.expect("logon")
}

#[tokio::test]
async fn a_message_over_max_message_size_by_list_stays_and_the_rest_come() {
    let messages: Vec<_> = (1..=3)
        .map(|i| (format!("uid-{i}"), fake_message(i)))
        .collect();
    let script = Arc::new(Mutex::new(Script {
        messages: messages.clone(),
        list_sizes: Some(vec![4100, 500_000_000, 4100]),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session_with_max(dir.path(), fake_config(port), 10_000).await;
    let report = download(&s).await;
    let part = &report.transports[0];
    assert_eq!(part.received, 2);
    let said = part.error.clone().expect("named");
    assert!(
        said.contains("message 2 (UIDL uid-2)")
            && said.contains("larger than max_message_size (10000 bytes, listed at 500000000)"),
        "{said}"
    );
    assert_eq!(
        inbox(&s).await,
        vec![messages[0].1.clone(), messages[2].1.clone()]
    );
    let left = script.lock().expect("lock").messages.clone();
    assert_eq!(left, vec![messages[1].clone()], "left on the server");
    assert!(
        !script
            .lock()
            .expect("lock")
            .seen
            .iter()
            .any(|c| c == "RETR 2"),
        "never read"
    );
}

#[tokio::test]
async fn a_message_larger_than_listed_and_than_max_is_passed_over_not_truncated() {
    let big = format!(
        "From: a@example.com\r\nSubject: big\r\n\r\n{}\r\n",
        "b".repeat(50_000)
    )
    .into_bytes();
    let messages = vec![
        ("uid-1".to_string(), fake_message(1)),
        ("uid-big".to_string(), big),
        ("uid-3".to_string(), fake_message(3)),
    ];
    let script = Arc::new(Mutex::new(Script {
        messages: messages.clone(),
        // The big one is listed small: LIST lies.
        list_sizes: Some(vec![4100, 100, 4100]),
        ..Script::default()
    }));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session_with_max(dir.path(), fake_config(port), 20_000).await;
    let report = download(&s).await;
    let part = &report.transports[0];
    let error = part.error.clone().expect("said");
    assert!(
        error.contains("(UIDL uid-big)") && error.contains("larger than max_message_size"),
        "{error}"
    );
    assert_eq!(part.error_code.as_deref(), Some("MAPI_E_TOO_BIG"));
    assert!(
        inbox(&s)
            .await
            .iter()
            .all(|b| !b.starts_with(b"From: a@example.com\r\nSubject: big")),
        "nothing of it stored, not even a truncated part"
    );
    // The next download passes it over and brings the rest.
    let report = download(&s).await;
    assert!(
        report.transports[0]
            .error
            .clone()
            .unwrap_or_default()
            .contains("(UIDL uid-big)"),
        "still named"
    );
    let mut got = inbox(&s).await;
    got.sort();
    let mut want = vec![messages[0].1.clone(), messages[2].1.clone()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        script.lock().expect("lock").messages,
        vec![messages[1].clone()],
        "the big one stays on the server"
    );
}

// ---- The model: random server behaviour, several downloads ----

/// One step of the model: mail arriving (some with a UIDL already in use), and how the server
/// misbehaves during the download that follows.
#[derive(Debug, Clone)]
struct Step {
    /// New messages: for each, whether it reuses the UIDL of an earlier one.
    arrive: Vec<bool>,
    /// The session hangs up at this command (none: it does not).
    drop_at: Option<usize>,
    /// LIST understates every size (the messages stream past their listed size).
    lie: bool,
    leave_on_server: bool,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    (
        proptest::collection::vec(any::<bool>(), 0..5),
        proptest::option::of(1usize..14),
        any::<bool>(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(arrive, drop_at, lie, leave_on_server)| Step {
            arrive,
            drop_at,
            lie,
            leave_on_server,
        })
}

/// Runs the model: after each download, every message the server removed is in the store;
/// at the end (one more download from a well-behaved server) the store holds every message
/// the server ever held, each exactly once, and the server holds none.
async fn pop3_model(steps: Vec<Step>) -> Result<(), String> {
    let script = Arc::new(Mutex::new(Script::default()));
    let port = fake_server(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut ever: Vec<Vec<u8>> = Vec::new();
    let mut serial = 0usize;
    let check_removed = |s: &Script, stored: &[Vec<u8>]| -> Result<(), String> {
        for body in &s.removed {
            if !stored.contains(body) {
                return Err(format!(
                    "removed from the server, not in the store: {}",
                    String::from_utf8_lossy(&body[..60.min(body.len())])
                ));
            }
        }
        Ok(())
    };
    for step in steps.iter().cloned().chain(std::iter::once(Step {
        arrive: Vec::new(),
        drop_at: None,
        lie: false,
        leave_on_server: false,
    })) {
        {
            let mut s = script.lock().expect("lock");
            for reuse in &step.arrive {
                serial += 1;
                let uidl = match s.messages.first() {
                    Some((u, _)) if *reuse => u.clone(),
                    _ => format!("u{serial}"),
                };
                let body = fake_message(serial);
                ever.push(body.clone());
                s.messages.push((uidl, body));
            }
            s.drop_at = step.drop_at;
            s.list_sizes = step.lie.then(|| vec![10; s.messages.len()]);
        }
        let mut config = fake_config(port);
        config.leave_on_server = step.leave_on_server;
        let session = session(dir.path(), config).await;
        let _ = download(&session).await;
        let stored = inbox(&session).await;
        session.logoff().await;
        check_removed(&script.lock().expect("lock"), &stored)?;
    }
    // The last download had a well-behaved server.
    let config = fake_config(port);
    let session = session(dir.path(), config).await;
    let mut stored = inbox(&session).await;
    session.logoff().await;
    let s = script.lock().expect("lock");
    if !s.messages.is_empty() {
        return Err(format!("{} left on the server", s.messages.len()));
    }
    stored.sort();
    ever.sort();
    if stored != ever {
        return Err(format!(
            "the store holds {} messages, the server ever held {} (each must be there once)",
            stored.len(),
            ever.len()
        ));
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    #[test]
    fn pop3_model_every_message_once_and_none_removed_unstored(
        steps in proptest::collection::vec(step(), 1..5)
    ) {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        let verdict = rt.block_on(pop3_model(steps));
        proptest::prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }
}

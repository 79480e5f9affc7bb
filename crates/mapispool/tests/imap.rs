//! The IMAP inbound transport against the real servers: Dovecot (scripts/peers/dovecot.sh) and
//! Cyrus (scripts/peers/cyrus.sh); the download tests run against both (`name::dovecot`,
//! `name::cyrus`), what only one server can show against that one.

#[path = "peers/cyrus.rs"]
mod cyrus;
#[path = "peers/dovecot.rs"]
mod dovecot;
#[path = "peers/mailserver.rs"]
mod mailserver;
#[path = "peers/server.rs"]
#[macro_use]
mod server;
mod scripted_imap;

use dovecot::*;
use mapispool::Session;
use server::{Family, Server};
use std::sync::{Arc, Mutex};

use mapispool::profile::{
    AfterDownload, Credential, ImapAuth, ImapConfig, InboundConfig, Security,
};
use mapispool::status::StatusKind;
use mapispool::transport::TransportErrorKind;
use mapispool::transport::imap::ImapInbound;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

async fn session(dir: &std::path::Path, config: ImapConfig) -> Session {
    logon(dir, InboundConfig::Imap(config)).await
}

for_each_server!(downloads_new_messages_once_marks_them_seen_and_streams_large_ones);
async fn downloads_new_messages_once_marks_them_seen_and_streams_large_ones(family: Family) {
    let server = Server::start(family, &[("test", "s3cret")], false);
    let mut sent = server.preload("test", 30, 2500);
    // Larger than one fetch range (1 MiB): fetched whole, its body streamed past the parser.
    let large = message("test", 99, 2_600_000);
    server.deliver("test", "1.large.test", &large);
    sent.push(large);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), server.imap("test", "s3cret")).await;

    let report = download(&s).await;
    let part = &report.transports[0];
    assert_eq!(part.error, None, "{}", server.log());
    assert_eq!(part.received, 31);
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(sent.clone()),
        "bytes as written"
    );
    assert_eq!(
        server.count("test"),
        (31, 31),
        "all still there, all \\Seen"
    );
    assert!(!failed(&s));

    // Nothing twice; then only the new one.
    assert_eq!(download(&s).await.transports[0].received, 0);
    let newer = message("test", 100, 300);
    server.deliver("test", "2.newer.test", &newer);
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 1);
    sent.push(newer);
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
}

for_each_server!(after_download_delete_keep_and_move);
async fn after_download_delete_keep_and_move(family: Family) {
    let server = Server::start(
        family,
        &[("del", "pw"), ("keep", "pw"), ("mv", "pw")],
        false,
    );

    let sent = server.preload("del", 4, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server.imap("del", "pw");
    config.after_download = AfterDownload::Delete;
    let s = session(dir.path(), config).await;
    assert_eq!(download(&s).await.transports[0].received, 4);
    assert_eq!(server.count("del").0, 0, "deleted and expunged");
    assert_eq!(sorted(inbox(&s).await), sorted(sent));

    server.preload("keep", 3, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server.imap("keep", "pw");
    config.after_download = AfterDownload::Keep;
    let s = session(dir.path(), config).await;
    assert_eq!(download(&s).await.transports[0].received, 3);
    assert_eq!(server.count("keep"), (3, 0), "kept, not even \\Seen");
    assert_eq!(download(&s).await.transports[0].received, 0);

    server.preload("mv", 3, 300);
    server.create_folder("mv", "pw", "Archive");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server.imap("mv", "pw");
    config.after_download = AfterDownload::Move("Archive".into());
    let s = session(dir.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", server.log());
    assert_eq!(report.transports[0].received, 3);
    assert_eq!(server.count("mv").0, 0, "moved out of INBOX");
    assert_eq!(server.count_in("mv", "Archive"), 3);
}

for_each_server!(a_wrong_password_fails_with_the_servers_words);
async fn a_wrong_password_fails_with_the_servers_words(family: Family) {
    // The server's reply as it sent it, not a library's debug text.
    let words = match family {
        Family::Dovecot => "[AUTHENTICATIONFAILED] Authentication failed.",
        // Cyrus's NO carries no response code, and Cyrus answers AUTHENTICATE (it offers
        // AUTH=PLAIN), not LOGIN.
        Family::Cyrus => "(AUTHENTICATE PLAIN): authentication failure",
    };
    let (_server, error) = server::check_a_wrong_password_fails_with_the_servers_words(
        family,
        words,
        |server, user, password| InboundConfig::Imap(server.imap(user, password)),
    )
    .await;
    assert!(!error.contains("info:"), "server's words: {error}");
}

for_each_server!(a_missing_folder_is_named);
async fn a_missing_folder_is_named(family: Family) {
    let server = Server::start(family, &[("test", "pw")], false);
    server.preload("test", 1, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server.imap("test", "pw");
    config.folder = "NoSuchFolder".into();
    let s = session(dir.path(), config).await;
    let error = download(&s).await.transports[0]
        .error
        .clone()
        .expect("fails");
    assert!(error.contains("\"NoSuchFolder\""), "{error}");
}

for_each_server!(tls_and_starttls_with_ca_file_or_insecure_and_a_failure_without);
async fn tls_and_starttls_with_ca_file_or_insecure_and_a_failure_without(family: Family) {
    let server = Server::start(family, &[("test", "pw")], true);
    let sent = server.preload("test", 3, 300);

    let mut config = server.imap("test", "pw");
    config.security = Security::Tls;
    config.port = server.imaps_port();
    config.host = "localhost".into();
    config.after_download = AfterDownload::Keep;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), config.clone()).await;
    let report = download(&s).await;
    let error = report.transports[0].error.clone().expect("untrusted");
    assert!(error.contains("not trusted"), "{error}");
    assert!(inbox(&s).await.is_empty());
    s.logoff().await;

    config.insecure_skip_verify = true;
    let s = session(dir.path(), config.clone()).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 3);
    s.logoff().await;

    let dir2 = tempfile::tempdir().expect("tempdir");
    config.insecure_skip_verify = false;
    config.security = Security::Starttls;
    config.port = server.imap_port();
    config.ca_file = Some(server.cert());
    let s = session(dir2.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", server.log());
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
}

#[tokio::test]
async fn logs_in_with_authenticate_plain_when_advertised_and_login_when_asked() {
    let dovecot = Dovecot::start(&[("test", "pw")], false);
    let sent = dovecot.preload("test", 2, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), dovecot.imap("test", "pw")).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", dovecot.log());
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
    // (Dovecot logs LOGIN as method=PLAIN too; which command went out is checked in
    // imap.rs's unit tests and by the scripted server below.)
    assert!(dovecot.log().contains("method=PLAIN"), "{}", dovecot.log());
    s.logoff().await;

    // `auth = "login"` insists on the LOGIN command.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("test", "pw");
    config.auth = Some(ImapAuth::Login);
    let s = session(dir.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", dovecot.log());
    assert_eq!(report.transports[0].received, 2);

    // A wrong password under AUTHENTICATE PLAIN: the server's words, no password.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("test", "nope-pw");
    config.auth = Some(ImapAuth::Plain);
    let s = session(dir.path(), config).await;
    let part = download(&s).await.transports[0].clone();
    let error = part.error.expect("refused");
    assert!(error.contains("AUTHENTICATE PLAIN"), "{error}");
    assert!(error.contains("Authentication failed"), "{error}");
    assert!(!error.contains("nope-pw"), "{error}");
    assert_eq!(part.error_code.as_deref(), Some("MAPI_E_LOGON_FAILED"));

    // XOAUTH2 where the server does not offer it: refused before anything is sent.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("test", "pw");
    config.auth = Some(ImapAuth::Xoauth2);
    let s = session(dir.path(), config).await;
    let error = download(&s).await.transports[0]
        .error
        .clone()
        .expect("not offered");
    assert!(
        error.contains("does not offer AUTHENTICATE XOAUTH2"),
        "{error}"
    );
}

/// A scripted IMAP server for AUTHENTICATE XOAUTH2: greets, answers CAPABILITY with
/// AUTH=XOAUTH2, takes the token `good-token` for `test` and refuses any other after sending
/// its error details as a challenge (which the client must answer with an empty line). Then
/// serves an empty INBOX. Returns the port and the lines it read.
async fn xoauth2_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = lines.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut io = BufReader::new(tcp);

                out(&mut io, "* OK fake IMAP ready\r\n".into()).await?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if io.read_line(&mut line).await? == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                    let l = line.trim_end().to_string();
                    log.lock().expect("log").push(l.clone());
                    let (tag, cmd) = l.split_once(' ').unwrap_or((&l, ""));
                    let upper = cmd.to_ascii_uppercase();
                    let reply = if upper == "CAPABILITY" {
                        format!("* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\n{tag} OK done\r\n")
                    } else if upper == "AUTHENTICATE XOAUTH2" {
                        out(&mut io, "+ \r\n".into()).await?;
                        line.clear();
                        io.read_line(&mut line).await?;
                        let token = line.trim_end().to_string();
                        log.lock().expect("log").push(token.clone());
                        let want = b64(b"user=test\x01auth=Bearer good-token\x01\x01");
                        if token == want {
                            format!("{tag} OK [CAPABILITY IMAP4rev1] logged in\r\n")
                        } else {
                            // RFC 7628: error details as a challenge, an empty answer, then NO.
                            out(&mut io, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n".into()).await?;
                            line.clear();
                            io.read_line(&mut line).await?;
                            log.lock()
                                .expect("log")
                                .push(format!("after-challenge:{}", line.trim_end()));
                            format!("{tag} NO [AUTHENTICATIONFAILED] Invalid token\r\n")
                        }
                    } else if upper.starts_with("SELECT") {
                        format!(
                            "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n{tag} OK [READ-WRITE] done\r\n"
                        )
                    } else if upper == "LOGOUT" {
                        out(&mut io, format!("* BYE\r\n{tag} OK bye\r\n")).await?;
                        return Ok(());
                    } else {
                        format!("{tag} BAD unexpected\r\n")
                    };
                    out(&mut io, reply).await?;
                }
            });
        }
    });
    (port, lines)
}

async fn out(io: &mut BufReader<TcpStream>, s: String) -> std::io::Result<()> {
    io.get_mut().write_all(s.as_bytes()).await
}

fn b64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

fn xoauth2_config(port: u16, token: &str) -> ImapConfig {
    ImapConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some("test".into()),
        credential: Some(Credential::Command(format!("printf '%s\\n' '{token}'"))),
        auth: Some(ImapAuth::Xoauth2),
        folder: "INBOX".into(),
        after_download: AfterDownload::Seen,
        idle: false,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: true,
    }
}

#[tokio::test]
async fn authenticate_xoauth2_sends_the_token_and_answers_the_error_challenge() {
    let (port, lines) = xoauth2_server().await;
    let mut imap = ImapInbound::new(&xoauth2_config(port, "good-token"), "mail", "t@x", false);
    imap.connect().await.expect("XOAUTH2 accepted");
    imap.close().await;
    {
        let lines = lines.lock().expect("log");
        assert!(
            lines.iter().any(|l| l.ends_with("AUTHENTICATE XOAUTH2")),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("LOGIN ")),
            "no LOGIN: {lines:?}"
        );
    }

    lines.lock().expect("log").clear();
    let mut imap = ImapInbound::new(&xoauth2_config(port, "stale-token"), "mail", "t@x", false);
    let error = imap.connect().await.expect_err("refused");
    assert_eq!(error.kind, TransportErrorKind::Auth);
    assert!(error.message.contains("AUTHENTICATE XOAUTH2"), "{error}");
    assert!(error.message.contains("Invalid token"), "{error}");
    assert!(!error.message.contains("stale-token"), "{error}");
    let lines = lines.lock().expect("log");
    assert!(
        lines.iter().any(|l| l == "after-challenge:"),
        "an empty answer to the error challenge: {lines:?}"
    );
}

for_each_server!(
    idle_pushes_new_mail_into_the_store_without_a_scheduled_flush,
    multi_thread
);
/// `idle = true`: with the spooler's clocks running (a download only every hour), a message
/// that arrives is stored within seconds, pushed by IMAP IDLE; the row says "New mail"; the
/// IDLE connection ends with the clocks.
async fn idle_pushes_new_mail_into_the_store_without_a_scheduled_flush(family: Family) {
    use mapi::PropValue;
    use mapi::tag::{PR_MSP_IDLE, PR_STATUS_STRING};
    use std::time::{Duration, Instant};

    let server = Server::start(family, &[("test", "pw")], false);
    let first = server.preload("test", 1, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server.imap("test", "pw");
    config.idle = true;
    let mut p = profile(dir.path(), InboundConfig::Imap(config));
    p.spooler.download_interval = Some(Duration::from_secs(3600));
    // Every connection brings its tunnel up first: the schedule's download and the IDLE one.
    let tunnel_log = dir.path().join("tunnel.log");
    p.transports[0].connect_command = Some(mapispool::profile::ConnectCommand {
        command: format!("echo up >> {}", tunnel_log.display()),
        interactive: false,
    });
    let tunnels = || {
        std::fs::read_to_string(&tunnel_log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let s = Session::logon_local(p).await.expect("logon");
    let spooler = s.spooler().expect("local").clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let clocks = tokio::spawn({
        let spooler = spooler.clone();
        async move {
            spooler
                .run_schedules(async move {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let kind = StatusKind::Transport("mail".into());
    let row_has = |tag, value: PropValue| {
        spooler
            .board()
            .row(&kind)
            .and_then(|r| r.get(tag).cloned())
            .is_some_and(|v| v == value)
    };
    // The schedule's first download, and the IDLE connection up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(inbox(&s).await.len() == 1 && row_has(PR_MSP_IDLE, PropValue::Boolean(true))) {
        assert!(
            Instant::now() < deadline,
            "no first download or no IDLE: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tunnels() >= 2,
        "connect_command before the download and before IDLE: ran {} time(s)",
        tunnels()
    );
    // Let Dovecot enter IDLE (its answer to IDLE comes after our flag is set).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pushed = message("test", 2, 400);
    let arrived = Instant::now();
    server.deliver("test", "2.pushed.test", &pushed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox(&s).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the pushed message was not stored within 10 s: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = arrived.elapsed();
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(vec![first[0].clone(), pushed])
    );
    // The message is visible once its batch commits; the status row says so a moment later,
    // when the download that stored it ends.
    let said = PropValue::Unicode("New mail: 1 message(s)".into());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !row_has(PR_STATUS_STRING, said.clone()) {
        let status = spooler
            .board()
            .row(&kind)
            .and_then(|r| r.get(PR_STATUS_STRING).cloned());
        assert!(
            Instant::now() < deadline,
            "status {status:?}, message stored after {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The clocks stop: the IDLE connection goes with them, promptly.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), clocks)
        .await
        .expect("run_schedules returns")
        .expect("no panic");
    assert!(row_has(PR_MSP_IDLE, PropValue::Boolean(false)));
}

// ---- A scripted server that misbehaves (issue 13) ----

fn scripted_config(port: u16, after: AfterDownload) -> ImapConfig {
    ImapConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some("u".into()),
        credential: Some(Credential::Command("echo pw".into())),
        auth: Some(ImapAuth::Login),
        folder: "INBOX".into(),
        after_download: after,
        idle: false,
        ca_file: None,
        insecure_skip_verify: false,
        // Loopback, scripted: nothing to protect.
        allow_plaintext_auth: true,
    }
}

fn scripted_message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nSubject: scripted {i}\r\nMessage-ID: <s{i}@imap.test>\r\n\r\n{}\r\n",
        "m".repeat(500 + i)
    )
    .into_bytes()
}

/// A scripted server holding `n` messages, and a session on it with `max_message_size`.
async fn scripted(
    n: usize,
    after: AfterDownload,
    max: Option<u64>,
) -> (
    Arc<Mutex<scripted_imap::Imap>>,
    Vec<Vec<u8>>,
    tempfile::TempDir,
    Session,
) {
    let state = Arc::new(Mutex::new(scripted_imap::Imap::default()));
    let bodies: Vec<Vec<u8>> = (1..=n).map(scripted_message).collect();
    for b in &bodies {
        state.lock().expect("lock").add(b.clone());
    }
    let port = scripted_imap::start(Arc::clone(&state)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut profile = profile(
        dir.path(),
        InboundConfig::Imap(scripted_config(port, after)),
    );
    if let Some(max) = max {
        profile.spooler.max_message_size = max;
    }
    let s = Session::logon_local(profile).await.expect("logon");
    (state, bodies, dir, s)
}

#[tokio::test]
async fn a_slow_but_steady_download_outlasts_the_timeout() {
    // About 2 s of steady streaming (1 KB every 100 ms) against a 500 ms timeout, which bounds
    // each read, not the download: before, "receiving took longer than 500ms", every time.
    let state = Arc::new(Mutex::new(scripted_imap::Imap::default()));
    let body = format!("Subject: slow\r\n\r\n{}\r\n", "s".repeat(20_000)).into_bytes();
    state.lock().expect("lock").add(body.clone());
    state.lock().expect("lock").pace = Some((1024, std::time::Duration::from_millis(100)));
    let port = scripted_imap::start(Arc::clone(&state)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut profile = profile(
        dir.path(),
        InboundConfig::Imap(scripted_config(port, AfterDownload::Seen)),
    );
    profile.spooler.timeout = std::time::Duration::from_millis(500);
    let s = Session::logon_local(profile).await.expect("logon");
    let started = std::time::Instant::now();
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert!(started.elapsed() > std::time::Duration::from_millis(1500));
    assert_eq!(inbox(&s).await, vec![body]);
}

#[tokio::test]
async fn a_uid_missing_from_the_fetch_answer_is_fetched_next_time() {
    // The server leaves UID 2 out of its answer and still says OK: before, the last UID moved
    // past it and it was never fetched.
    let (state, bodies, _dir, s) = scripted(4, AfterDownload::Keep, None).await;
    state.lock().expect("lock").omit.insert(2, 1);
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 3);
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 1, "UID 2, the next time");
    assert_eq!(sorted(inbox(&s).await), sorted(bodies));
    // Fetched on its own, in a range, after it failed once.
    let seen = state.lock().expect("lock").seen.clone();
    assert!(
        seen.iter()
            .any(|c| c.ends_with("UID FETCH 2 (UID BODY.PEEK[]<0.1048576>)")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_uid_that_keeps_failing_is_named_and_holds_up_nothing() {
    let (state, bodies, _dir, s) = scripted(3, AfterDownload::Delete, None).await;
    state.lock().expect("lock").omit.insert(1, 100);
    for _ in 0..2 {
        let report = download(&s).await;
        assert_eq!(report.transports[0].error, None);
    }
    // Newer mail still comes while UID 1 keeps failing.
    let four = scripted_message(4);
    state.lock().expect("lock").add(four.clone());
    let report = download(&s).await;
    let said = report.transports[0].error.clone().expect("named");
    assert!(
        said.contains("message UID 1 in \"INBOX\"") && said.contains("did not come in 3 downloads"),
        "{said}"
    );
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(vec![bodies[1].clone(), bodies[2].clone(), four])
    );
    // Still on the server, never deleted, and fetched once it comes.
    let left: Vec<u32> = state
        .lock()
        .expect("lock")
        .messages
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(left, vec![1]);
    state.lock().expect("lock").omit.clear();
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 1);
    assert!(state.lock().expect("lock").messages.is_empty());
}

#[tokio::test]
async fn a_fetch_answer_without_a_uid_or_with_a_bad_one_skips_nothing() {
    let (state, bodies, _dir, s) = scripted(4, AfterDownload::Delete, None).await;
    state.lock().expect("lock").no_uid.insert(2, 1);
    state.lock().expect("lock").bad_uid.insert(3, 1);
    let first = download(&s).await;
    // The bad UID does not parse: the connection is of no further use, and that is said.
    assert!(first.transports[0].error.is_some());
    for _ in 0..3 {
        let _ = download(&s).await;
    }
    assert_eq!(sorted(inbox(&s).await), sorted(bodies));
    assert!(state.lock().expect("lock").messages.is_empty());
    assert!(state.lock().expect("lock").removed.len() == 4);
}

#[tokio::test]
async fn move_to_a_missing_folder_creates_it_on_trycreate() {
    let (state, bodies, _dir, s) = scripted(5, AfterDownload::Move("Archive".into()), None).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 5);
    let st = state.lock().expect("lock");
    assert!(st.folders.contains("Archive"));
    assert!(
        st.seen.iter().any(|c| c.ends_with("CREATE \"Archive\"")),
        "{:?}",
        st.seen
    );
    assert!(st.messages.is_empty());
    let moved: Vec<Vec<u8>> = st.moved.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(sorted(moved), sorted(bodies));
}

#[tokio::test]
async fn a_refused_move_says_what_was_stored_and_later_flushes_fetch_the_rest() {
    let (state, bodies, _dir, s) = scripted(5, AfterDownload::Move("Archive".into()), None).await;
    state.lock().expect("lock").refuse_create = true;
    let report = download(&s).await;
    let part = &report.transports[0];
    assert_eq!(part.received, 5, "before: received 0, FAILED");
    let said = part.error.clone().expect("the move is reported");
    assert!(
        said.contains("stored UID 1:5, but the IMAP server")
            && said.contains("cannot move them to \"Archive\"")
            && said.contains("[TRYCREATE]")
            && said.contains("creating it was refused: [NOPERM]"),
        "{said}"
    );
    assert_eq!(sorted(inbox(&s).await), sorted(bodies.clone()));
    // New mail still comes; nothing twice.
    let six = scripted_message(6);
    state.lock().expect("lock").add(six.clone());
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 1);
    let mut want = bodies;
    want.push(six);
    assert_eq!(sorted(inbox(&s).await), sorted(want));
}

#[tokio::test]
async fn a_huge_literal_announcement_is_refused_before_any_allocation() {
    let (state, bodies, _dir, s) = scripted(3, AfterDownload::Delete, None).await;
    state.lock().expect("lock").huge_literal.insert(2, 1);
    let report = download(&s).await;
    let error = report.transports[0].error.clone().expect("refused");
    assert!(
        error.contains("announced a literal of 500000000 bytes"),
        "{error}"
    );
    // The next download fetches it in ranges, whose literals are small.
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(sorted(inbox(&s).await), sorted(bodies));
    assert!(state.lock().expect("lock").messages.is_empty());
}

#[tokio::test]
async fn a_message_over_max_message_size_is_skipped_with_a_report_and_the_rest_come() {
    // UID 2 by its listed size, UID 3 by what arrives although the listing said less.
    let (state, bodies, _dir, s) = scripted(4, AfterDownload::Delete, Some(2000)).await;
    {
        let mut st = state.lock().expect("lock");
        st.lie_size.insert(2, 3_000_000_000);
        st.messages[2].1 = format!("Subject: big\r\n\r\n{}\r\n", "b".repeat(5000)).into_bytes();
        st.lie_size.insert(3, 100);
    }
    let mut said = String::new();
    for _ in 0..3 {
        let report = download(&s).await;
        said.push_str(&report.transports[0].error.clone().unwrap_or_default());
    }
    assert!(
        said.contains("message UID 2 in \"INBOX\"")
            && said.contains("3000000000 bytes, more than max_message_size (2000 bytes)"),
        "{said}"
    );
    assert!(
        said.contains("message UID 3 in \"INBOX\"")
            && said
                .contains("larger than max_message_size (2000 bytes), more than its listed size"),
        "{said}"
    );
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(vec![bodies[0].clone(), bodies[3].clone()]),
        "never truncated"
    );
    let left: Vec<u32> = state
        .lock()
        .expect("lock")
        .messages
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(left, vec![2, 3], "left on the server");
    // Passed over: the next download asks only for what is above them.
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "no longer listed");
}

/// A message of `len` bytes (more than one 1 MiB fetch range when `len` is larger).
fn sized_message(i: usize, len: usize) -> Vec<u8> {
    let head = format!(
        "From: a@example.com\r\nSubject: large {i}\r\nMessage-ID: <l{i}@imap.test>\r\n\r\n"
    );
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n";
    let mut body = head.into_bytes();
    while body.len() < len {
        body.extend_from_slice(line);
    }
    body
}

#[tokio::test]
async fn large_messages_share_a_batch_and_one_over_the_limit_by_its_answer_is_left() {
    // Four large messages (over one 1 MiB range each) in one batch: UID 2 is listed at 1.1 MB
    // but is 3 MB, over max_message_size (1.5 MiB), found out by the size its answer announces
    // (read and dropped, never stored). UID 2 is left on the server, never truncated into the
    // store; the others come whole, with one STORE for the batch, after the store's sync.
    let state = Arc::new(Mutex::new(scripted_imap::Imap::default()));
    let sizes = [1_200_000, 3_000_000, 1_300_000, 1_400_000];
    let bodies: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, len)| sized_message(i, *len))
        .collect();
    for b in &bodies {
        state.lock().expect("lock").add(b.clone());
    }
    state.lock().expect("lock").lie_size.insert(2, 1_100_000);
    let port = scripted_imap::start(Arc::clone(&state)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut profile = profile(
        dir.path(),
        InboundConfig::Imap(scripted_config(port, AfterDownload::Seen)),
    );
    profile.spooler.max_message_size = 1_572_864;
    let s = Session::logon_local(profile).await.expect("logon");
    let report = download(&s).await;
    let said = report.transports[0].error.clone().unwrap_or_default();
    assert!(
        said.contains("message UID 2 in \"INBOX\"")
            && said.contains("more than its listed size; left on the server"),
        "{said}"
    );
    assert_eq!(report.transports[0].received, 3);
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(vec![
            bodies[0].clone(),
            bodies[2].clone(),
            bodies[3].clone()
        ]),
        "whole, and nothing of UID 2"
    );
    // Each is fetched whole, the next one asked for as soon as the answer before is in (UID
    // 2's announced 3 MB showed it over the limit: read and dropped); one STORE for the
    // batch, at its end.
    let seen = state.lock().expect("lock").seen.clone();
    let fetches: Vec<String> = seen
        .iter()
        .filter_map(|c| c.split_once(' ').map(|(_, c)| c.to_string()))
        .filter(|c| c.starts_with("UID FETCH") || c.starts_with("UID STORE"))
        .collect();
    let mut want = vec!["UID FETCH 1:* (UID RFC822.SIZE)".to_string()];
    for uid in 1..=4 {
        want.push(format!("UID FETCH {uid} (UID BODY.PEEK[])"));
    }
    want.push("UID STORE 1,3:4 +FLAGS.SILENT (\\Seen)".to_string());
    assert_eq!(fetches, want);
    // Passed over: the next download has nothing to do.
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 0);
}

#[tokio::test]
async fn a_drop_while_the_next_large_message_is_asked_for_flags_nothing_unsynced() {
    // Three large messages; the server hangs up at each command in turn, the pipelined range
    // requests included. Whatever was stored is whole, nothing is flagged or removed that the
    // store does not hold, and a last, clean download brings the rest, each once.
    for drop_at in 4..=14 {
        let state = Arc::new(Mutex::new(scripted_imap::Imap::default()));
        let bodies: Vec<Vec<u8>> = (0..3)
            .map(|i| sized_message(i, 1_100_000 + i * 300_000))
            .collect();
        for b in &bodies {
            state.lock().expect("lock").add(b.clone());
        }
        state.lock().expect("lock").drop_at = Some(drop_at);
        let port = scripted_imap::start(Arc::clone(&state)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Session::logon_local(profile(
            dir.path(),
            InboundConfig::Imap(scripted_config(port, AfterDownload::Delete)),
        ))
        .await
        .expect("logon");
        let _ = download(&s).await;
        let stored = inbox(&s).await;
        for body in &stored {
            assert!(
                bodies.contains(body),
                "drop at {drop_at}: a truncated message stored"
            );
        }
        for body in &state.lock().expect("lock").removed {
            assert!(
                stored.contains(body),
                "drop at {drop_at}: removed, not stored"
            );
        }
        state.lock().expect("lock").drop_at = None;
        let report = download(&s).await;
        assert_eq!(report.transports[0].error, None, "drop at {drop_at}");
        assert_eq!(
            sorted(inbox(&s).await),
            sorted(bodies.clone()),
            "drop at {drop_at}"
        );
        assert!(
            state.lock().expect("lock").messages.is_empty(),
            "drop at {drop_at}"
        );
    }
}

#[tokio::test]
async fn a_refused_seen_store_answered_during_the_next_batch_holds_the_last_uid() {
    // Two batches (200 + 50): the second batch's FETCH goes out as soon as the first's answer
    // is in (before the first's sync), the first's `\\Seen` STORE after that sync, not waited
    // for. The server refuses that STORE: the download fails, the last UID stays before the
    // first batch, and the next download (everything already stored) flags both batches
    // without fetching anything again.
    let (state, bodies, _dir, s) = scripted(250, AfterDownload::Seen, None).await;
    state.lock().expect("lock").refuse_store = 1;
    let report = download(&s).await;
    let said = report.transports[0].error.clone().unwrap_or_default();
    assert!(said.contains("flags refused"), "{said}");
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(bodies.clone()),
        "all stored"
    );
    let commands = |state: &Arc<Mutex<scripted_imap::Imap>>| -> Vec<String> {
        let seen = std::mem::take(&mut state.lock().expect("lock").seen);
        seen.iter()
            .filter_map(|c| c.split_once(' ').map(|(_, c)| c.to_string()))
            .filter(|c| c.starts_with("UID "))
            .collect()
    };
    assert_eq!(
        commands(&state),
        vec![
            "UID FETCH 1:* (UID RFC822.SIZE)",
            "UID FETCH 1:200 (UID BODY.PEEK[])",
            "UID FETCH 201:250 (UID BODY.PEEK[])",
            "UID STORE 1:200 +FLAGS.SILENT (\\Seen)",
        ]
    );
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 0);
    assert_eq!(
        commands(&state),
        vec![
            "UID FETCH 1:* (UID RFC822.SIZE)",
            "UID STORE 1:200 +FLAGS.SILENT (\\Seen)",
            "UID STORE 201:250 +FLAGS.SILENT (\\Seen)",
        ]
    );
    // Now the last UID is past them all.
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(
        commands(&state),
        vec!["UID FETCH 251:* (UID RFC822.SIZE)".to_string()]
    );
    assert_eq!(sorted(inbox(&s).await), sorted(bodies));
}

/// The UID commands `state`'s server saw since the last call (the tag cut off).
fn uid_commands(state: &Arc<Mutex<scripted_imap::Imap>>) -> Vec<String> {
    let seen = std::mem::take(&mut state.lock().expect("lock").seen);
    seen.iter()
        .filter_map(|c| c.split_once(' ').map(|(_, c)| c.to_string()))
        .filter(|c| c.starts_with("UID "))
        .collect()
}

#[tokio::test]
async fn a_store_answered_between_the_next_batchs_fetch_answers_loses_none_of_them() {
    // Three batches (200 + 200 + 50); the server answers each `\\Seen` STORE in the middle of
    // the FETCH sent ahead of it (after that FETCH's first message), as a server running the
    // two side by side does. The STORE's answer is taken from among the FETCH answers and
    // none of those is lost: every message comes once, nothing is counted a try, and the
    // last UID ends past all of them.
    let (state, bodies, _dir, s) = scripted(450, AfterDownload::Seen, None).await;
    state.lock().expect("lock").store_midway = true;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 450);
    assert_eq!(sorted(inbox(&s).await), sorted(bodies.clone()));
    assert_eq!(
        uid_commands(&state),
        vec![
            "UID FETCH 1:* (UID RFC822.SIZE)",
            "UID FETCH 1:200 (UID BODY.PEEK[])",
            "UID FETCH 201:400 (UID BODY.PEEK[])",
            "UID STORE 1:200 +FLAGS.SILENT (\\Seen)",
            "UID FETCH 401:450 (UID BODY.PEEK[])",
            "UID STORE 201:400 +FLAGS.SILENT (\\Seen)",
            "UID STORE 401:450 +FLAGS.SILENT (\\Seen)",
        ]
    );
    assert_eq!(
        sorted(state.lock().expect("lock").flagged.clone()),
        sorted(bodies.clone()),
        "each flagged once"
    );
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(
        uid_commands(&state),
        vec!["UID FETCH 451:* (UID RFC822.SIZE)"]
    );

    // The same, the first STORE refused (its NO amid the second batch's answers): the second
    // batch is still stored whole, the download fails, and the last UID stays before both.
    let (state, bodies, _dir, s) = scripted(450, AfterDownload::Seen, None).await;
    {
        let mut st = state.lock().expect("lock");
        st.store_midway = true;
        st.refuse_store = 1;
    }
    let report = download(&s).await;
    let said = report.transports[0].error.clone().unwrap_or_default();
    assert!(said.contains("flags refused"), "{said}");
    assert_eq!(
        uid_commands(&state),
        vec![
            "UID FETCH 1:* (UID RFC822.SIZE)",
            "UID FETCH 1:200 (UID BODY.PEEK[])",
            "UID FETCH 201:400 (UID BODY.PEEK[])",
            "UID STORE 1:200 +FLAGS.SILENT (\\Seen)",
        ]
    );
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(bodies[..400].to_vec()),
        "both batches whole"
    );
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None);
    assert_eq!(report.transports[0].received, 50);
    assert_eq!(sorted(inbox(&s).await), sorted(bodies));
    assert!(
        uid_commands(&state).starts_with(&["UID FETCH 1:* (UID RFC822.SIZE)".to_string()]),
        "listed from the start again"
    );
}

#[tokio::test]
async fn a_drop_at_any_pipelined_command_flags_nothing_unsynced_and_loses_nothing() {
    // Three batches with `\\Seen`: the server hangs up at each command in turn (the listing,
    // each FETCH, the ones sent ahead of a batch's sync included, each STORE). Nothing is
    // flagged that the store lacks; a clean download then brings the rest, each once, and the
    // last UID ends past them all.
    for drop_at in 4..=11 {
        let (state, bodies, _dir, s) = scripted(450, AfterDownload::Seen, None).await;
        state.lock().expect("lock").drop_at = Some(drop_at);
        let _ = download(&s).await;
        let stored = inbox(&s).await;
        for body in &stored {
            assert!(bodies.contains(body), "drop at {drop_at}: not a message");
        }
        for body in &state.lock().expect("lock").flagged {
            assert!(
                stored.contains(body),
                "drop at {drop_at}: flagged, not stored"
            );
        }
        state.lock().expect("lock").drop_at = None;
        let report = download(&s).await;
        assert_eq!(report.transports[0].error, None, "drop at {drop_at}");
        assert_eq!(
            sorted(inbox(&s).await),
            sorted(bodies.clone()),
            "drop at {drop_at}"
        );
        uid_commands(&state);
        let report = download(&s).await;
        assert_eq!(report.transports[0].error, None, "drop at {drop_at}");
        assert_eq!(
            uid_commands(&state),
            vec!["UID FETCH 451:* (UID RFC822.SIZE)"],
            "drop at {drop_at}"
        );
    }
}

// ---- The model: random server behaviour, several downloads ----

/// One step: mail arriving, and how the server misbehaves in the download that follows.
#[derive(Debug, Clone)]
struct ImapStep {
    arrive: usize,
    /// Per message on the server at that time (by position, modulo): what it does to it.
    faults: Vec<(usize, u8)>,
    /// The session hangs up at this command.
    drop_at: Option<usize>,
}

fn imap_step() -> impl proptest::strategy::Strategy<Value = ImapStep> {
    use proptest::prelude::*;
    (
        0usize..5,
        proptest::collection::vec((0usize..16, 0u8..5), 0..4),
        proptest::option::of(1usize..14),
    )
        .prop_map(|(arrive, faults, drop_at)| ImapStep {
            arrive,
            faults,
            drop_at,
        })
}

/// After each download every message the server removed is in the store; after a last one
/// from a well-behaved server the store holds every message the server ever held, each once,
/// and the server holds none (after_download = "delete").
async fn imap_model(steps: Vec<ImapStep>) -> Result<(), String> {
    let state = Arc::new(Mutex::new(scripted_imap::Imap::default()));
    let port = scripted_imap::start(Arc::clone(&state)).await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut ever: Vec<Vec<u8>> = Vec::new();
    let mut serial = 0usize;
    let last = ImapStep {
        arrive: 0,
        faults: Vec::new(),
        drop_at: None,
    };
    for step in steps.into_iter().chain(std::iter::once(last)) {
        {
            let mut st = state.lock().expect("lock");
            for _ in 0..step.arrive {
                serial += 1;
                // Every third one larger than a fetch range: fetched in ranges, pipelined.
                let body = if serial.is_multiple_of(3) {
                    sized_message(serial, 1_048_576 + serial * 7_000)
                } else {
                    scripted_message(serial)
                };
                ever.push(body.clone());
                st.add(body);
            }
            st.omit.clear();
            st.no_uid.clear();
            st.bad_uid.clear();
            st.huge_literal.clear();
            st.lie_size.clear();
            st.drop_at = step.drop_at;
            let uids: Vec<u32> = st.messages.iter().map(|m| m.0).collect();
            for (at, fault) in &step.faults {
                let Some(uid) = uids.get(at % uids.len().max(1)).copied() else {
                    continue;
                };
                match fault {
                    0 => st.omit.insert(uid, 1),
                    1 => st.no_uid.insert(uid, 1),
                    2 => st.bad_uid.insert(uid, 1),
                    3 => st.huge_literal.insert(uid, 1),
                    _ => st.lie_size.insert(uid, 10).map(|_| 0),
                };
            }
        }
        let session = Session::logon_local(profile(
            dir.path(),
            InboundConfig::Imap(scripted_config(port, AfterDownload::Delete)),
        ))
        .await
        .map_err(|e| e.to_string())?;
        let _ = download(&session).await;
        let stored = inbox(&session).await;
        session.logoff().await;
        for body in &state.lock().expect("lock").removed {
            if !stored.contains(body) {
                return Err("removed from the server, not in the store".into());
            }
        }
    }
    let session = Session::logon_local(profile(
        dir.path(),
        InboundConfig::Imap(scripted_config(port, AfterDownload::Delete)),
    ))
    .await
    .map_err(|e| e.to_string())?;
    let stored = sorted(inbox(&session).await);
    session.logoff().await;
    let left = state.lock().expect("lock").messages.len();
    if left > 0 {
        return Err(format!("{left} left on the server"));
    }
    if stored != sorted(ever.clone()) {
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
    fn imap_model_every_message_once_and_none_removed_unstored(
        steps in proptest::collection::vec(imap_step(), 1..5)
    ) {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        let verdict = rt.block_on(imap_model(steps));
        proptest::prop_assert!(verdict.is_ok(), "{}", verdict.unwrap_err());
    }
}

//! The IMAP inbound transport against the real servers: Dovecot (scripts/peers/dovecot.sh) and
//! Cyrus (scripts/peers/cyrus.sh); the download tests run against both (`name::dovecot`,
//! `name::cyrus`), what only one server can show against that one.

#[path = "peers/cyrus.rs"]
mod cyrus;
#[path = "peers/dovecot.rs"]
mod dovecot;
#[path = "peers/server.rs"]
#[macro_use]
mod server;

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

for_each_server!(downloads_new_messages_once_marks_them_seen_and_takes_large_ones_in_ranges);
async fn downloads_new_messages_once_marks_them_seen_and_takes_large_ones_in_ranges(
    family: Family,
) {
    let server = Server::start(family, &[("test", "s3cret")], false);
    let mut sent = server.preload("test", 30, 2500);
    // Larger than one fetch range (1 MiB): fetched in ranges and streamed.
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

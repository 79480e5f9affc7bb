//! The IMAP inbound transport against a real Dovecot (scripts/peers/dovecot.sh).

#[path = "peers/dovecot.rs"]
mod dovecot;

use std::os::unix::fs::MetadataExt;

use dovecot::*;
use mapi::constants::STATUS_FAILURE;
use mapispool::Session;
use mapispool::profile::{AfterDownload, ImapConfig, InboundConfig, Security};
use mapispool::status::StatusKind;

async fn session(dir: &std::path::Path, config: ImapConfig) -> Session {
    Session::logon_local(profile(dir, InboundConfig::Imap(config)))
        .await
        .expect("logon")
}

fn failed(session: &Session) -> bool {
    let code = session
        .spooler()
        .expect("a local spooler")
        .board()
        .status_code(&StatusKind::Transport("mail".into()));
    code & STATUS_FAILURE != 0
}

#[tokio::test]
async fn downloads_new_messages_once_marks_them_seen_and_takes_large_ones_in_ranges() {
    let dovecot = Dovecot::start(&[("test", "s3cret")], false);
    let mut sent = dovecot.preload("test", 30, 2500);
    // Larger than one fetch range (1 MiB): fetched in ranges and streamed.
    let large = message("test", 99, 2_600_000);
    dovecot.deliver("test", "1.large.test", &large);
    sent.push(large);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), dovecot.imap("test", "s3cret")).await;

    let report = download(&s).await;
    let part = &report.transports[0];
    assert_eq!(part.error, None, "{}", dovecot.log());
    assert_eq!(part.received, 31);
    assert_eq!(
        sorted(inbox(&s).await),
        sorted(sent.clone()),
        "bytes as written"
    );
    assert_eq!(
        dovecot.count("test"),
        (31, 31),
        "all still there, all \\Seen"
    );
    assert!(!failed(&s));

    // Nothing twice; then only the new one.
    assert_eq!(download(&s).await.transports[0].received, 0);
    let newer = message("test", 100, 300);
    dovecot.deliver("test", "2.newer.test", &newer);
    let report = download(&s).await;
    assert_eq!(report.transports[0].received, 1);
    sent.push(newer);
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
}

#[tokio::test]
async fn after_download_delete_keep_and_move() {
    let dovecot = Dovecot::start(&[("del", "pw"), ("keep", "pw"), ("mv", "pw")], false);

    let sent = dovecot.preload("del", 4, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("del", "pw");
    config.after_download = AfterDownload::Delete;
    let s = session(dir.path(), config).await;
    assert_eq!(download(&s).await.transports[0].received, 4);
    assert_eq!(dovecot.count("del").0, 0, "deleted and expunged");
    assert_eq!(sorted(inbox(&s).await), sorted(sent));

    dovecot.preload("keep", 3, 300);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("keep", "pw");
    config.after_download = AfterDownload::Keep;
    let s = session(dir.path(), config).await;
    assert_eq!(download(&s).await.transports[0].received, 3);
    assert_eq!(dovecot.count("keep"), (3, 0), "kept, not even \\Seen");
    assert_eq!(download(&s).await.transports[0].received, 0);

    dovecot.preload("mv", 3, 300);
    // A Maildir++ folder "Archive", owned like the mailbox so Dovecot can write it.
    let md = dovecot.maildir("mv");
    let owner = std::fs::metadata(&md).expect("maildir");
    for sub in ["", "cur", "new", "tmp"] {
        let p = md.join(".Archive").join(sub);
        std::fs::create_dir_all(&p).expect("folder");
        std::os::unix::fs::chown(&p, Some(owner.uid()), Some(owner.gid())).expect("chown");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("mv", "pw");
    config.after_download = AfterDownload::Move("Archive".into());
    let s = session(dir.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", dovecot.log());
    assert_eq!(report.transports[0].received, 3);
    assert_eq!(dovecot.count("mv").0, 0, "moved out of INBOX");
    assert_eq!(dovecot.count_in("mv", "Archive"), 3);
}

#[tokio::test]
async fn a_wrong_password_fails_with_the_servers_words() {
    let dovecot = Dovecot::start(&[("test", "right")], false);
    dovecot.preload("test", 1, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = session(dir.path(), dovecot.imap("test", "wrong-pw")).await;
    let report = download(&s).await;
    let part = &report.transports[0];
    let error = part.error.clone().expect("the login failed");
    assert!(error.contains("refused the login of \"test\""), "{error}");
    assert!(
        error.contains("Authentication failed"),
        "server's words: {error}"
    );
    assert!(
        !error.contains("wrong-pw"),
        "no password in messages: {error}"
    );
    assert_eq!(part.error_code.as_deref(), Some("MAPI_E_LOGON_FAILED"));
    assert!(failed(&s));
    assert!(inbox(&s).await.is_empty());
}

#[tokio::test]
async fn a_missing_folder_is_named() {
    let dovecot = Dovecot::start(&[("test", "pw")], false);
    dovecot.preload("test", 1, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = dovecot.imap("test", "pw");
    config.folder = "NoSuchFolder".into();
    let s = session(dir.path(), config).await;
    let error = download(&s).await.transports[0]
        .error
        .clone()
        .expect("fails");
    assert!(error.contains("\"NoSuchFolder\""), "{error}");
}

#[tokio::test]
async fn tls_and_starttls_with_ca_file_or_insecure_and_a_failure_without() {
    let dovecot = Dovecot::start(&[("test", "pw")], true);
    let sent = dovecot.preload("test", 3, 300);

    let mut config = dovecot.imap("test", "pw");
    config.security = Security::Tls;
    config.port = dovecot.imaps;
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
    config.port = dovecot.imap;
    config.ca_file = Some(dovecot.cert());
    let s = session(dir2.path(), config).await;
    let report = download(&s).await;
    assert_eq!(report.transports[0].error, None, "{}", dovecot.log());
    assert_eq!(sorted(inbox(&s).await), sorted(sent));
}

//! The whole way: profile A submits over SMTP to a private Postfix, which delivers into
//! Dovecot's Maildir (virtual(8)); profile B downloads it over IMAP, profile C over POP3. The
//! stored bytes are what A sent, apart from the trace headers servers prepend.

#[path = "peers/dovecot.rs"]
mod dovecot;
#[path = "peers/mailserver.rs"]
mod mailserver;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dovecot::*;
use mapispool::profile::{
    AfterDownload, InboundConfig, OutboundConfig, Security, SmtpConfig, SpoolerConfig, StoreConfig,
    TransportConfig,
};
use mapispool::{FlushFlags, Profile, Session, Submission};

struct Postfix {
    dir: tempfile::TempDir,
    port: u16,
}

fn postfix_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/postfix.sh")
}

impl Postfix {
    /// Postfix on a free port delivering every mail for @localhost into `dovecot`'s Maildir of
    /// `user`, as the mail user (nobody), the way Dovecot's own delivery would.
    fn start(dovecot: &Dovecot, user: &str) -> Postfix {
        let dir = tempfile::Builder::new()
            .prefix("pf")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let md = std::fs::metadata(dovecot.maildir(user)).expect("maildir");
        use std::os::unix::fs::MetadataExt;
        let extra = format!(
            "virtual_mailbox_domains=localhost virtual_mailbox_base={} virtual_mailbox_maps=static:{user}/ virtual_uid_maps=static:{} virtual_gid_maps=static:{} virtual_minimum_uid=1",
            dovecot.path().join("mail").display(),
            md.uid(),
            md.gid()
        );
        let out = Command::new("bash")
            .arg(postfix_script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .arg("127.0.0.1:9")
            .env("POSTFIX_EXTRA", extra)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run scripts/peers/postfix.sh");
        assert!(
            out.status.success(),
            "postfix did not start (run scripts/peers/install.sh?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Postfix { dir, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(postfix_script())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(std::process::Stdio::null())
            .status();
    }
}

/// `bytes` without the trace header fields a relay or delivery agent prepends.
fn without_trace(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut skipping = false;
    let mut in_header = true;
    for line in text.split_inclusive('\n') {
        if in_header {
            if line == "\r\n" || line == "\n" {
                in_header = false;
            } else if line.starts_with([' ', '\t']) {
                if skipping {
                    continue;
                }
            } else {
                let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
                skipping = matches!(
                    name.as_str(),
                    "received" | "return-path" | "delivered-to" | "x-original-to"
                );
                if skipping {
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    out.into_bytes()
}

#[tokio::test]
async fn smtp_to_postfix_to_dovecot_then_imap_and_pop3() {
    let dovecot = Dovecot::start(&[("bob", "pw")], false);
    let postfix = Postfix::start(&dovecot, "bob");
    let dir = tempfile::tempdir().expect("tempdir");

    // A: sends over SMTP to Postfix.
    let a = Profile {
        source: Some(dir.path().join("a.toml")),
        groups: Vec::new(),
        web: None,
        store: StoreConfig::Path(dir.path().join("a.db")),
        spooler: SpoolerConfig::default(),
        transports: vec![TransportConfig {
            name: "smtp".into(),
            address: "alice@example.com".into(),
            display_name: None,
            outbound: Some(OutboundConfig::Smtp(SmtpConfig {
                host: "127.0.0.1".into(),
                port: postfix.port,
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
            })),
            inbound: None,
            connect_command: None,
            flush_queues: true,
        }],
    };
    let sent = format!(
        "From: Alice <alice@example.com>\r\nTo: bob@localhost\r\nSubject: round trip\r\nMessage-ID: <roundtrip.{}@example.com>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nHello Bob.\r\n.\r\n..a dotted line\r\n{}\r\n",
        std::process::id(),
        // The longest line RFC 5322 allows goes as it is; a longer one would go out base64
        // (RELIABILITY.md, "What mapispool changes in a message"; tests/wire.rs).
        "z".repeat(998)
    )
    .into_bytes();
    let alice = Session::logon_local(a).await.expect("logon A");
    alice
        .submit(Submission::default(), &sent[..])
        .await
        .expect("submit");
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    assert!(report.is_complete(), "{report:?}\n{}", postfix.log());

    let start = Instant::now();
    while dovecot.count("bob").0 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Postfix did not deliver: {}",
            postfix.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // B: IMAP, keeping the message for C.
    let bdir = tempfile::tempdir().expect("tempdir");
    let mut imap = dovecot.imap("bob", "pw");
    imap.after_download = AfterDownload::Keep;
    let b = Session::logon_local(profile(bdir.path(), InboundConfig::Imap(imap)))
        .await
        .expect("logon B");
    let report = download(&b).await;
    assert_eq!(report.transports[0].error, None);
    let got = inbox(&b).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&without_trace(&got[0])),
        String::from_utf8_lossy(&sent)
    );

    // C: POP3.
    let cdir = tempfile::tempdir().expect("tempdir");
    let c = Session::logon_local(profile(
        cdir.path(),
        InboundConfig::Pop3(dovecot.pop3("bob", "pw")),
    ))
    .await
    .expect("logon C");
    let report = download(&c).await;
    assert_eq!(report.transports[0].error, None);
    let got_pop = inbox(&c).await;
    assert_eq!(got_pop, got, "POP3 and IMAP store the same bytes");
    assert_eq!(dovecot.count("bob").0, 0, "POP3 deleted it");
}

//! A private Dovecot (IMAP + POP3) for integration tests, started by `scripts/peers/dovecot.sh`
//! in a short temporary directory on free loopback ports, stopped when dropped.

#![allow(dead_code)] // each test file uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub imap: u16,
    pub pop3: u16,
    /// Implicit-TLS ports, 0 without TLS.
    pub imaps: u16,
    pub pop3s: u16,
}

fn script() -> PathBuf {
    crate::mailserver::script("dovecot.sh")
}

fn installed() -> bool {
    Path::new("/usr/sbin/dovecot").exists()
        || Command::new("sh")
            .args(["-c", "command -v dovecot"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

impl Dovecot {
    /// Starts Dovecot with `users` (name, password); with `tls`, also implicit-TLS ports and
    /// a self-signed certificate (see [`Dovecot::cert`]).
    pub fn start(users: &[(&str, &str)], tls: bool) -> Dovecot {
        assert!(
            installed(),
            "dovecot is not installed: run scripts/peers/install.sh (or apt-get install dovecot-imapd dovecot-pop3d)"
        );
        let started = crate::mailserver::start(&script(), "dv", "DOVECOT_USERS", users, tls);
        Dovecot {
            dir: started.dir,
            imap: started.imap,
            pop3: started.pop3,
            imaps: started.imaps,
            pop3s: started.pop3s,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The self-signed certificate (PEM), for `ca_file`.
    pub fn cert(&self) -> PathBuf {
        self.path().join("tls/cert.pem")
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.path().join("mail").join(user)
    }

    /// Writes one message into `user`'s INBOX (tmp/ then new/), as a delivery agent does.
    pub fn deliver(&self, user: &str, name: &str, bytes: &[u8]) {
        let md = self.maildir(user);
        let tmp = md.join("tmp").join(name);
        std::fs::write(&tmp, bytes).expect("write into tmp/");
        std::fs::rename(&tmp, md.join("new").join(name)).expect("rename into new/");
    }

    /// Writes `n` messages of about `size` bytes into `user`'s INBOX; returns their bytes, in
    /// order (`Subject: message <i>`). Lines end in CRLF, as they leave the server.
    pub fn preload(&self, user: &str, n: usize, size: usize) -> Vec<Vec<u8>> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (1..=n)
            .map(|i| {
                let bytes = message(user, i, size);
                self.deliver(user, &format!("{stamp}.M{i:06}.test"), &bytes);
                bytes
            })
            .collect()
    }

    /// How many messages `user` has on the server (new/ and cur/), and how many carry `\Seen`.
    pub fn count(&self, user: &str) -> (usize, usize) {
        let md = self.maildir(user);
        let mut total = 0;
        let mut seen = 0;
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(md.join(sub)) {
                for e in entries.filter_map(Result::ok) {
                    total += 1;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some((_, flags)) = name.rsplit_once(":2,")
                        && flags.contains('S')
                    {
                        seen += 1;
                    }
                }
            }
        }
        (total, seen)
    }

    /// How many messages a Maildir++ subfolder (`.Name`) of `user` holds.
    pub fn count_in(&self, user: &str, folder: &str) -> usize {
        let md = self.maildir(user).join(format!(".{folder}"));
        ["new", "cur"]
            .iter()
            .map(|sub| {
                std::fs::read_dir(md.join(sub))
                    .map(|e| e.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Dovecot's log so far, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("dovecot.log")).unwrap_or_default()
    }
}

/// Test message `i` for `user`, about `size` bytes, with a dot-led line to exercise stuffing.
pub fn message(user: &str, i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sender <sender@example.com>\r\nTo: {user}@localhost\r\nSubject: message {i}\r\nMessage-ID: <m{i}.{user}@test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n.a line that starts with a dot\r\n"
    )
    .into_bytes();
    let line = format!("{:076}\r\n", i);
    while m.len() < size {
        m.extend_from_slice(line.as_bytes());
    }
    m.extend_from_slice(b"..\r\n.\r\nend\r\n");
    m
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        crate::mailserver::stop(&script(), self.dir.path());
    }
}

use mapi::constants::STATUS_FAILURE;
use mapispool::profile::{
    AfterDownload, Credential, ImapConfig, InboundConfig, Pop3Config, Security, SpoolerConfig,
    StoreConfig, TransportConfig,
};
use mapispool::status::StatusKind;
use mapispool::store::Folder;
use mapispool::{FlushFlags, FlushReport, Profile, Session};

impl Dovecot {
    /// A POP3 inbound for `user` with password `password`, plain on the POP3 port.
    pub fn pop3(&self, user: &str, password: &str) -> Pop3Config {
        pop3_config(self.pop3, user, password)
    }

    /// An IMAP inbound for `user` with password `password`, plain on the IMAP port, INBOX.
    pub fn imap(&self, user: &str, password: &str) -> ImapConfig {
        imap_config(self.imap, user, password)
    }
}

/// A POP3 inbound on 127.0.0.1:`port` for `user`, plain, deleting after download.
pub fn pop3_config(port: u16, user: &str, password: &str) -> Pop3Config {
    Pop3Config {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some(user.into()),
        credential: Some(Credential::Command(format!("printf '%s\\n' '{password}'"))),
        apop: false,
        leave_on_server: false,
        leave_days: None,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: true,
    }
}

/// An IMAP inbound on 127.0.0.1:`port` for `user`, plain, INBOX, `\Seen` after download.
pub fn imap_config(port: u16, user: &str, password: &str) -> ImapConfig {
    ImapConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        username: Some(user.into()),
        credential: Some(Credential::Command(format!("printf '%s\\n' '{password}'"))),
        auth: None,
        folder: "INBOX".into(),
        after_download: AfterDownload::Seen,
        idle: false,
        ca_file: None,
        insecure_skip_verify: false,
        allow_plaintext_auth: true,
    }
}

/// A profile whose one transport "mail" receives with `inbound`, its store in `dir`.
pub fn profile(dir: &Path, inbound: InboundConfig) -> Profile {
    Profile {
        source: Some(dir.join("profile.toml")),
        groups: Vec::new(),
        web: None,
        store: StoreConfig::Path(dir.join("store.db")),
        spooler: SpoolerConfig::default(),
        transports: vec![TransportConfig {
            name: "mail".into(),
            address: "test@localhost".into(),
            display_name: None,
            outbound: None,
            inbound: Some(inbound),
            connect_command: None,
            flush_queues: true,
        }],
    }
}

/// A local spooler (no daemon) logged on to [`profile`]`(dir, inbound)`.
pub async fn logon(dir: &Path, inbound: InboundConfig) -> Session {
    Session::logon_local(profile(dir, inbound))
        .await
        .expect("logon")
}

/// Whether the status row of the transport "mail" says it failed.
pub fn failed(session: &Session) -> bool {
    let code = session
        .spooler()
        .expect("a local spooler")
        .board()
        .status_code(&StatusKind::Transport("mail".into()));
    code & STATUS_FAILURE != 0
}

/// FLUSH_DOWNLOAD on the spooler.
pub async fn download(session: &Session) -> FlushReport {
    session
        .spooler_status()
        .flush_queues(None, FlushFlags::DOWNLOAD)
        .await
        .expect("the flush itself runs")
}

/// The Inbox's bodies, oldest first.
pub async fn inbox(session: &Session) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in session.messages(Folder::Inbox).await.expect("the Inbox") {
        out.push(
            session
                .message_body(&m.entry_id())
                .await
                .expect("a stored body"),
        );
    }
    out
}

/// Sorted copies, to compare sets of messages whatever order they arrived in.
pub fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

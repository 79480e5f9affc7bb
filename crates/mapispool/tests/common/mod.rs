//! Shared set-up for the integration tests: profiles built in code, in a temporary directory,
//! whose transports share one post-office directory (the `dir` transport), as `mapispool demo`
//! builds them.

#![allow(dead_code)] // each test file uses a different part of this module

use std::path::{Path, PathBuf};
use std::time::Duration;

use mapi::{EntryId, MapiCode, MapiResult};
use mapispool::profile::{
    ConnectCommand, DirConfig, InboundConfig, OutboundConfig, Security, SmtpConfig, SpoolerConfig,
    StoreConfig, TransportConfig,
};
use mapispool::store::QueueEntry;
use mapispool::transport::dir::mailbox_name;
use mapispool::{Profile, Session, Submission, Submitted};

/// A temporary directory holding the stores and a shared post office.
pub struct World {
    pub dir: tempfile::TempDir,
    pub post_office: PathBuf,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let post_office = dir.path().join("postoffice");
        World { dir, post_office }
    }

    /// A send-and-receive `dir` transport on the shared post office.
    pub fn transport(&self, name: &str, address: &str) -> TransportConfig {
        transport_on(&self.post_office, name, address)
    }

    /// A profile named `user` (its store is `<dir>/<user>.db`) with `transports`, default
    /// spooler settings.
    pub fn profile(&self, user: &str, transports: Vec<TransportConfig>) -> Profile {
        Profile {
            source: Some(self.dir.path().join(format!("{user}.toml"))),
            groups: Vec::new(),
            web: None,
            store: StoreConfig::Path(self.dir.path().join(format!("{user}.db"))),
            spooler: SpoolerConfig::default(),
            transports,
        }
    }

    /// The usual profile: one transport "local" as `<user>@localhost`.
    pub fn simple_profile(&self, user: &str) -> Profile {
        self.profile(
            user,
            vec![self.transport("local", &format!("{user}@localhost"))],
        )
    }

    /// The `new` directory of `address`'s mailbox in the shared post office.
    pub fn mailbox_new(&self, address: &str) -> PathBuf {
        mailbox_new(&self.post_office, address)
    }

    /// Creates `address`'s mailbox, so mail to it is delivered without a profile reading it.
    pub fn create_mailbox(&self, address: &str) {
        std::fs::create_dir_all(self.mailbox_new(address)).expect("create the mailbox");
    }

    /// How many messages wait in `address`'s mailbox (delivered, not yet downloaded).
    pub fn delivered(&self, address: &str) -> usize {
        delivered(&self.post_office, address)
    }

    /// Breaks `address`'s mailbox: a file where its `new` directory should be, so delivery to it
    /// fails temporarily (the recipient is deferred).
    pub fn break_mailbox(&self, address: &str) {
        let new_dir = self.mailbox_new(address);
        if new_dir.is_dir() {
            std::fs::remove_dir_all(&new_dir).expect("remove the mailbox's new/");
        }
        std::fs::create_dir_all(new_dir.parent().expect("a parent")).expect("mailbox dir");
        std::fs::write(&new_dir, b"not a directory").expect("a file in its place");
    }

    /// Undoes [`World::break_mailbox`].
    pub fn repair_mailbox(&self, address: &str) {
        let new_dir = self.mailbox_new(address);
        std::fs::remove_file(&new_dir).expect("remove the file");
        std::fs::create_dir_all(&new_dir).expect("recreate new/");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn transport_on(post_office: &Path, name: &str, address: &str) -> TransportConfig {
    TransportConfig {
        name: name.to_string(),
        address: address.to_string(),
        display_name: None,
        outbound: Some(OutboundConfig::Dir(DirConfig {
            path: post_office.to_path_buf(),
        })),
        inbound: Some(InboundConfig::Dir(DirConfig {
            path: post_office.to_path_buf(),
        })),
        connect_command: None,
        flush_queues: true,
    }
}

/// `transport` with a `connect_command`.
pub fn with_connect_command(
    mut transport: TransportConfig,
    command: &str,
    interactive: bool,
) -> TransportConfig {
    transport.connect_command = Some(ConnectCommand {
        command: command.to_string(),
        interactive,
    });
    transport
}

pub fn mailbox_new(post_office: &Path, address: &str) -> PathBuf {
    post_office.join(mailbox_name(address)).join("new")
}

pub fn delivered(post_office: &Path, address: &str) -> usize {
    match std::fs::read_dir(mailbox_new(post_office, address)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count(),
        Err(_) => 0,
    }
}

pub async fn logon(profile: Profile) -> Session {
    Session::logon(profile).await.expect("logon")
}

/// An RFC 5322 message from `from` to `to`.
pub fn letter(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{}@test>\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
}

/// Submits a letter from the session's first transport's address to `to`.
pub async fn submit(session: &Session, to: &str, subject: &str) -> Submitted {
    submit_with(session, to, subject, Submission::default())
        .await
        .expect("submit")
}

pub async fn submit_with(
    session: &Session,
    to: &str,
    subject: &str,
    submission: Submission,
) -> MapiResult<Submitted> {
    let from = session.profile().transports[0].address.clone();
    let text = letter(&from, to, subject);
    session.submit(submission, text.as_bytes()).await
}

/// The queue entry of `id`, if it is still queued.
pub async fn queued(session: &Session, id: &EntryId) -> Option<QueueEntry> {
    session
        .outgoing_queue()
        .await
        .expect("the outgoing queue")
        .into_iter()
        .find(|e| e.message.entry_id() == *id)
}

/// Subjects of a folder's messages, oldest first.
pub async fn subjects(session: &Session, folder: mapispool::store::Folder) -> Vec<String> {
    session
        .messages(folder)
        .await
        .expect("the folder")
        .into_iter()
        .map(|m| m.subject)
        .collect()
}

/// The MAPI code of a result that must be an error.
pub fn code<T: std::fmt::Debug>(result: MapiResult<T>) -> MapiCode {
    match result {
        Ok(v) => panic!("expected a MAPI error, got Ok({v:?})"),
        Err(e) => e.code,
    }
}

/// Polls `check` every 10 ms until it is true or `limit` passes; whether it became true.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SMTP to a test server on loopback: no TLS, no login, PIPELINING used, one connection.
pub fn loopback_smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
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
    }
}

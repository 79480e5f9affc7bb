//! One download test, two real IMAP/POP3 server families: [`Server`] is Dovecot or Cyrus behind
//! the few operations the download tests need (start, put mail in, count it, make a folder), and
//! [`for_each_server!`] turns one test body into a test per family.
//!
//! A test file includes `peers/dovecot.rs` as `mod dovecot`, `peers/cyrus.rs` as `mod cyrus` and
//! this file as `mod server`.

#![allow(dead_code)] // each test file uses a different part of this module

use std::path::PathBuf;

use crate::cyrus::Cyrus;
use crate::dovecot::{Dovecot, download, failed, inbox, logon, message};
use mapispool::profile::{ImapConfig, InboundConfig, Pop3Config};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Dovecot,
    Cyrus,
}

pub enum Server {
    Dovecot(Dovecot),
    Cyrus(Cyrus),
}

/// `for_each_server!(name)` (or `for_each_server!(name, multi_thread)`): a module `name` with
/// the tests `name::dovecot` and `name::cyrus`, each running `async fn name(Family)`.
#[macro_export]
macro_rules! for_each_server {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn dovecot() {
                super::$name($crate::server::Family::Dovecot).await
            }
            #[tokio::test]
            async fn cyrus() {
                super::$name($crate::server::Family::Cyrus).await
            }
        }
    };
    ($name:ident, multi_thread) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dovecot() {
                super::$name($crate::server::Family::Dovecot).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cyrus() {
                super::$name($crate::server::Family::Cyrus).await
            }
        }
    };
}

impl Server {
    /// Starts a server of `family` with `users` (name, password); with `tls`, also
    /// implicit-TLS ports and a self-signed certificate, and STARTTLS/STLS on the plain ports.
    pub fn start(family: Family, users: &[(&str, &str)], tls: bool) -> Server {
        match family {
            Family::Dovecot => Server::Dovecot(Dovecot::start(users, tls)),
            Family::Cyrus => Server::Cyrus(Cyrus::start(users, tls)),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Server::Dovecot(_) => Family::Dovecot,
            Server::Cyrus(_) => Family::Cyrus,
        }
    }

    /// (IMAP, POP3, IMAPS, POP3S) ports; the last two are 0 without TLS.
    fn ports(&self) -> (u16, u16, u16, u16) {
        match self {
            Server::Dovecot(d) => (d.imap, d.pop3, d.imaps, d.pop3s),
            Server::Cyrus(c) => (c.imap, c.pop3, c.imaps, c.pop3s),
        }
    }

    pub fn imap_port(&self) -> u16 {
        self.ports().0
    }
    pub fn pop3_port(&self) -> u16 {
        self.ports().1
    }
    pub fn imaps_port(&self) -> u16 {
        self.ports().2
    }
    pub fn pop3s_port(&self) -> u16 {
        self.ports().3
    }

    /// The self-signed certificate (PEM), for `ca_file`.
    pub fn cert(&self) -> PathBuf {
        match self {
            Server::Dovecot(d) => d.cert(),
            Server::Cyrus(c) => c.cert(),
        }
    }

    /// An IMAP inbound for `user`, plain on the IMAP port, INBOX, `\Seen` after download.
    pub fn imap(&self, user: &str, password: &str) -> ImapConfig {
        match self {
            Server::Dovecot(d) => d.imap(user, password),
            Server::Cyrus(_) => crate::dovecot::imap_config(self.imap_port(), user, password),
        }
    }

    /// A POP3 inbound for `user`, plain on the POP3 port, deleting after download.
    pub fn pop3(&self, user: &str, password: &str) -> Pop3Config {
        match self {
            Server::Dovecot(d) => d.pop3(user, password),
            Server::Cyrus(_) => crate::dovecot::pop3_config(self.pop3_port(), user, password),
        }
    }

    /// Puts one message into `user`'s INBOX as a delivery would (`name`: a Maildir file name
    /// where the server takes files).
    pub fn deliver(&self, user: &str, name: &str, bytes: &[u8]) {
        match self {
            Server::Dovecot(d) => d.deliver(user, name, bytes),
            Server::Cyrus(c) => c.deliver(user, bytes),
        }
    }

    /// Puts `n` messages of about `size` bytes into `user`'s INBOX; returns their bytes, in
    /// order (`Subject: message <i>`, see [`message`]).
    pub fn preload(&self, user: &str, n: usize, size: usize) -> Vec<Vec<u8>> {
        match self {
            Server::Dovecot(d) => d.preload(user, n, size),
            Server::Cyrus(c) => {
                let messages: Vec<Vec<u8>> = (1..=n).map(|i| message(user, i, size)).collect();
                c.deliver_all(user, &messages);
                messages
            }
        }
    }

    /// How many messages `user`'s INBOX holds, and how many carry `\Seen`.
    pub fn count(&self, user: &str) -> (usize, usize) {
        match self {
            Server::Dovecot(d) => d.count(user),
            Server::Cyrus(c) => c.status(user, "INBOX"),
        }
    }

    /// How many messages `folder` (a sibling of INBOX) of `user` holds.
    pub fn count_in(&self, user: &str, folder: &str) -> usize {
        match self {
            Server::Dovecot(d) => d.count_in(user, folder),
            Server::Cyrus(c) => c.status(user, folder).0,
        }
    }

    /// Creates `folder` (a sibling of INBOX) for `user`, as a mail client would: over IMAP.
    pub fn create_folder(&self, user: &str, password: &str, folder: &str) {
        let mut s = crate::cyrus::Imap::login(self.imap_port(), user, password);
        s.command(&format!("CREATE \"{folder}\""));
        s.logout();
    }

    /// The server's log (Dovecot's log file, Cyrus's protocol traces), for assertion messages.
    pub fn log(&self) -> String {
        match self {
            Server::Dovecot(d) => d.log(),
            Server::Cyrus(c) => c.log(),
        }
    }
}

/// The wrong-password test, the same for every download protocol and server: the server's
/// "test" (password "right") has one message, and `inbound(server, user, password)` is the
/// protocol's config. A download as "test" with "wrong-pw" fails as a refused login that quotes
/// the server's reply (`servers_words`, as the server and protocol have it) and never shows the
/// password, as `MAPI_E_LOGON_FAILED` with the status row failed, and stores nothing. Returns
/// the server and the error, for what a protocol checks on top.
pub async fn check_a_wrong_password_fails_with_the_servers_words(
    family: Family,
    servers_words: &str,
    inbound: impl FnOnce(&Server, &str, &str) -> InboundConfig,
) -> (Server, String) {
    let server = Server::start(family, &[("test", "right")], false);
    server.preload("test", 1, 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let s = logon(dir.path(), inbound(&server, "test", "wrong-pw")).await;
    let report = download(&s).await;
    let part = &report.transports[0];
    let error = part.error.clone().expect("the login failed");
    assert!(error.contains("refused the login of \"test\""), "{error}");
    assert!(error.contains(servers_words), "server's words: {error}");
    assert!(
        !error.contains("wrong-pw"),
        "no password in messages: {error}"
    );
    assert_eq!(part.error_code.as_deref(), Some("MAPI_E_LOGON_FAILED"));
    assert!(failed(&s));
    assert!(inbox(&s).await.is_empty());
    (server, error)
}

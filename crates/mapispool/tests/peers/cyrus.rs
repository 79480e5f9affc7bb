//! A private Cyrus IMAP (IMAP + POP3) for integration tests, started by
//! `scripts/peers/cyrus.sh` in a short temporary directory on free loopback ports, stopped when
//! dropped: the second real server family next to Dovecot (see [`crate::server`]).
//!
//! Cyrus keeps an index beside its message files, so unlike Dovecot's Maildir nothing is
//! written into its spool directly: messages go in with IMAP APPEND and are counted with
//! IMAP STATUS, over [`Imap`], a small blocking client for the test's own side.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Cyrus {
    pub dir: tempfile::TempDir,
    pub imap: u16,
    pub pop3: u16,
    /// Implicit-TLS ports, 0 without TLS.
    pub imaps: u16,
    pub pop3s: u16,
    /// (user, password), for the test side's own IMAP sessions.
    users: Vec<(String, String)>,
}

fn script() -> PathBuf {
    crate::mailserver::script("cyrus.sh")
}

/// cyrus-common's master, and imapd/pop3d from their packages or where scripts/peers/install.sh
/// unpacks them (they conflict with Dovecot's as packages).
fn installed() -> bool {
    Path::new("/usr/lib/cyrus/bin/master").exists()
        && [
            "/usr/lib/cyrus/bin",
            "/usr/local/lib/mapispool-peers/cyrus/usr/lib/cyrus/bin",
        ]
        .iter()
        .any(|dir| Path::new(dir).join("pop3d").exists())
}

impl Cyrus {
    /// Starts Cyrus with `users` (name, password); with `tls`, also implicit-TLS ports and a
    /// self-signed certificate (see [`Cyrus::cert`]).
    pub fn start(users: &[(&str, &str)], tls: bool) -> Cyrus {
        assert!(
            installed(),
            "Cyrus IMAP is not installed: run scripts/peers/install.sh (or apt-get install cyrus-imapd cyrus-pop3d sasl2-bin)"
        );
        let started = crate::mailserver::start(&script(), "cy", "CYRUS_USERS", users, tls);
        Cyrus {
            dir: started.dir,
            imap: started.imap,
            pop3: started.pop3,
            imaps: started.imaps,
            pop3s: started.pop3s,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The self-signed certificate (PEM), for `ca_file`.
    pub fn cert(&self) -> PathBuf {
        self.path().join("tls/cert.pem")
    }

    /// A logged-in IMAP session as `user`, for the test's own side.
    pub fn session(&self, user: &str) -> Imap {
        let password = self
            .users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| panic!("{user} is not a user of this Cyrus"));
        Imap::login(self.imap, user, password)
    }

    /// Appends one message to `user`'s INBOX, as a delivery would.
    pub fn deliver(&self, user: &str, bytes: &[u8]) {
        let mut s = self.session(user);
        s.append("INBOX", bytes);
        s.logout();
    }

    /// Appends `messages` to `user`'s INBOX over one session.
    pub fn deliver_all(&self, user: &str, messages: &[Vec<u8>]) {
        let mut s = self.session(user);
        for m in messages {
            s.append("INBOX", m);
        }
        s.logout();
    }

    /// How many messages `folder` of `user` holds, and how many carry `\Seen`.
    pub fn status(&self, user: &str, folder: &str) -> (usize, usize) {
        let mut s = self.session(user);
        let lines = s.command(&format!("STATUS \"{folder}\" (MESSAGES UNSEEN)"));
        s.logout();
        let line = lines
            .iter()
            .find(|l| l.starts_with("* STATUS"))
            .unwrap_or_else(|| panic!("no STATUS answer: {lines:?}"));
        let number = |name: &str| -> usize {
            let after = line
                .split_once(&format!("{name} "))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .1;
            after
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no number after {name} in {line}"))
        };
        let (messages, unseen) = (number("MESSAGES"), number("UNSEEN"));
        (messages, messages - unseen)
    }

    /// Creates `folder` for `user`.
    pub fn create_folder(&self, user: &str, folder: &str) {
        let mut s = self.session(user);
        s.command(&format!("CREATE \"{folder}\""));
        s.logout();
    }

    /// The protocol trace Cyrus wrote for each user (its telemetry; there is no syslog here),
    /// for assertion messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        let Ok(users) = std::fs::read_dir(self.path().join("conf/log")) else {
            return out;
        };
        for user in users.filter_map(Result::ok) {
            let Ok(files) = std::fs::read_dir(user.path()) else {
                continue;
            };
            for f in files.filter_map(Result::ok) {
                let text = std::fs::read(f.path()).unwrap_or_default();
                // The tail: a session with a large message would drown the rest.
                let from = text.len().saturating_sub(4000);
                out.push_str(&format!("== {}\n", f.path().display()));
                out.push_str(&String::from_utf8_lossy(&text[from..]));
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        crate::mailserver::stop(&script(), self.dir.path());
    }
}

/// A blocking IMAP client for the test side (appending, counting, creating folders): tagged
/// commands and their untagged lines, `LITERAL+` for APPEND. Not the code under test.
pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    pub fn login(port: u16, user: &str, password: &str) -> Imap {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the IMAP server");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("a read timeout");
        let writer = tcp.try_clone().expect("clone the socket");
        let mut imap = Imap {
            reader: BufReader::new(tcp),
            writer,
            tag: 0,
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        imap.command(&format!("LOGIN \"{user}\" \"{password}\""));
        imap
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read from the IMAP server");
        assert!(n > 0, "the IMAP server closed the connection");
        line.truncate(line.trim_end_matches(['\r', '\n']).len());
        line
    }

    /// Sends `text` tagged, reads to its completion, which must be OK; returns the lines
    /// before it.
    pub fn command(&mut self, text: &str) -> Vec<String> {
        self.send(text.as_bytes(), None)
    }

    fn send(&mut self, text: &[u8], literal: Option<&[u8]>) -> Vec<String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let mut out = Vec::new();
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        if let Some(literal) = literal {
            out.extend_from_slice(literal);
            out.extend_from_slice(b"\r\n");
        }
        self.writer
            .write_all(&out)
            .expect("write to the IMAP server");
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                assert!(
                    rest.starts_with("OK"),
                    "{} answered {rest}",
                    String::from_utf8_lossy(text)
                );
                return lines;
            }
            lines.push(line);
        }
    }

    pub fn append(&mut self, folder: &str, bytes: &[u8]) {
        let head = format!("APPEND \"{folder}\" {{{}+}}", bytes.len());
        self.send(head.as_bytes(), Some(bytes));
    }

    pub fn logout(mut self) {
        let _ = self.writer.write_all(b"z LOGOUT\r\n");
        let _ = self.line();
    }
}

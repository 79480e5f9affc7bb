//! A private Postfix (scripts/peers/postfix.sh) whose smtpd on a free loopback port takes mail
//! for `@localhost` and delivers it with virtual(8) into one Maildir (a Dovecot user's, so IMAP
//! and POP3 see it), as that Maildir's owner. Stopped when dropped.

#![allow(dead_code)] // each test file uses a different part of this module

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/postfix.sh")
}

// Each peer file stays self-contained (test crates include them by path, several in one
// crate), so each includes the one port picker itself.
#[allow(clippy::duplicate_mod)]
#[path = "local.rs"]
mod local;
use local::free_port;

pub struct PostfixToMaildir {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl PostfixToMaildir {
    /// Postfix delivering every mail for @localhost into `mail_base/user/` (a Maildir that
    /// exists), as the owner of that Maildir.
    pub fn start(mail_base: &Path, user: &str) -> PostfixToMaildir {
        let md = std::fs::metadata(mail_base.join(user)).expect("the Maildir exists");
        let extra = format!(
            "virtual_mailbox_domains=localhost virtual_mailbox_base={} virtual_mailbox_maps=static:{user}/ virtual_uid_maps=static:{} virtual_gid_maps=static:{} virtual_minimum_uid=1",
            mail_base.display(),
            md.uid(),
            md.gid()
        );
        let mut last = String::new();
        // A port picked free can be taken before Postfix binds it: retry.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("pf")
                .tempdir_in("/tmp")
                .expect("a temporary directory");
            let port = free_port();
            let out = Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .arg("127.0.0.1:9")
                .env("POSTFIX_EXTRA", &extra)
                .stdin(Stdio::null())
                .output()
                .expect("run scripts/peers/postfix.sh");
            if out.status.success() {
                return PostfixToMaildir { dir, port };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("postfix did not start (run scripts/peers/install.sh?): {last}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// How many messages Postfix still holds (maildrop, incoming, active, deferred): 0 once
    /// it has delivered everything it accepted.
    pub fn queued(&self) -> usize {
        let spool = self.dir.path().join("spool");
        ["maildrop", "incoming", "active", "deferred", "hold"]
            .iter()
            .map(|q| count_files(&spool.join(q)))
            .sum()
    }
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

impl Drop for PostfixToMaildir {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .status();
    }
}

//! Real Postfix peers for integration tests: `smtp-sink` and a private Postfix instance, started
//! by `scripts/peers/{smtp-sink,postfix}.sh` in a temporary directory on free loopback ports and
//! stopped when dropped.

#![allow(dead_code)] // each test file uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/peers")
        .join(name)
}

// Each peer file stays self-contained (test crates include them by path, several in one
// crate), so each includes the one port picker itself.
#[allow(clippy::duplicate_mod)]
#[path = "local.rs"]
mod local;
pub use local::free_port;
use local::short_dir;

fn installed(path: &str) -> bool {
    Path::new(path).exists()
}

/// Postfix's smtp-sink on 127.0.0.1:`port`.
pub struct SmtpSink {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl SmtpSink {
    /// Starts smtp-sink with extra options (`-r RCPT` etc.; see scripts/peers/smtp-sink.sh).
    pub fn start(opts: &str) -> SmtpSink {
        assert!(
            installed("/usr/sbin/smtp-sink"),
            "smtp-sink is not installed: run scripts/peers/install.sh (or apt-get install postfix)"
        );
        let mut last = String::new();
        for _ in 0..4 {
            let dir = short_dir("sk");
            let port = free_port();
            let out = Command::new("bash")
                .arg(script("smtp-sink.sh"))
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .env("SMTP_SINK_OPTS", opts)
                .output()
                .expect("run scripts/peers/smtp-sink.sh");
            if out.status.success() {
                return SmtpSink { dir, port };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("smtp-sink did not start: {last}");
    }

    /// The messages it has taken (the last `mesg=N` counter in its output).
    pub fn messages(&self) -> usize {
        let out = std::fs::read(self.dir.path().join("smtp-sink.out")).unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        text.rsplit(['\r', '\n'])
            .find_map(|c| {
                c.split_whitespace()
                    .find_map(|w| w.strip_prefix("mesg="))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("smtp-sink.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// A private Postfix instance: smtpd on 127.0.0.1:`port`, relaying everything to `relay`.
pub struct Postfix {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Postfix {
    pub fn start(relay: &str, extra: &str) -> Postfix {
        assert!(
            installed("/usr/sbin/postfix"),
            "postfix is not installed: run scripts/peers/install.sh (or apt-get install postfix)"
        );
        let mut last = String::new();
        for _ in 0..3 {
            let dir = short_dir("pf");
            let port = free_port();
            let out = Command::new("bash")
                .arg(script("postfix.sh"))
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .arg(relay)
                .env("POSTFIX_EXTRA", extra)
                .output()
                .expect("run scripts/peers/postfix.sh");
            if out.status.success() {
                return Postfix { dir, port };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("postfix did not start: {last}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("postfix.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

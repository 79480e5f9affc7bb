//! Starting a private mail server (IMAP + POP3) through its script in `scripts/peers/`: the
//! part Dovecot and Cyrus share. The script takes `start DIR IMAP POP3 [IMAPS POP3S]` with the
//! users in an environment variable, and `stop DIR`; this picks the directory and the ports.
//!
//! A test file that includes `peers/dovecot.rs` or `peers/cyrus.rs` includes this file as
//! `mod mailserver`.

#![allow(dead_code)] // each test file uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

/// A server the script started: its directory (removed when dropped) and loopback ports.
pub struct Started {
    pub dir: tempfile::TempDir,
    pub imap: u16,
    pub pop3: u16,
    /// Implicit-TLS ports, 0 without TLS.
    pub imaps: u16,
    pub pop3s: u16,
}

/// `scripts/peers/<name>`.
pub fn script(name: &str) -> PathBuf {
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

/// Runs `script start` for `users` (name, password) passed in `users_var`, in a new short
/// directory under /tmp named `prefix…`; with `tls`, also implicit-TLS ports.
pub fn start(
    script: &Path,
    prefix: &str,
    users_var: &str,
    users: &[(&str, &str)],
    tls: bool,
) -> Started {
    let list: Vec<String> = users.iter().map(|(u, p)| format!("{u}:{p}")).collect();
    let mut last_error = String::new();
    // A port picked free can be taken by a parallel test before the server binds it: retry.
    for _ in 0..4 {
        let dir = short_dir(prefix);
        let (imap, pop3) = (free_port(), free_port());
        let (imaps, pop3s) = if tls {
            (free_port(), free_port())
        } else {
            (0, 0)
        };
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .arg("start")
            .arg(dir.path())
            .arg(imap.to_string())
            .arg(pop3.to_string());
        if tls {
            cmd.arg(imaps.to_string()).arg(pop3s.to_string());
        }
        cmd.env(users_var, list.join(" "));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        if out.status.success() {
            return Started {
                dir,
                imap,
                pop3,
                imaps,
                pop3s,
            };
        }
        last_error = String::from_utf8_lossy(&out.stderr).into_owned();
        // A failed start may have left a process behind (Cyrus's master binds ports one by one).
        stop(script, dir.path());
    }
    panic!("{} did not start: {last_error}", script.display());
}

/// Runs `script stop` for the server in `dir`.
pub fn stop(script: &Path, dir: &Path) {
    let _ = Command::new("bash")
        .arg(script)
        .arg("stop")
        .arg(dir)
        .status();
}

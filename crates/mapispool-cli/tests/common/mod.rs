//! Shared by the `mapispool` binary's tests.
//!
//! - [`sandbox`]: a tempdir a test's processes live in, cut off from the real user's files:
//!   `mapispool` commands run there, profiles written there, what its post office delivered;
//! - [`daemon`]: a `mapispool spooler` started, signalled and stopped; waiting for a child's
//!   exit or a condition, with a deadline;
//! - [`profile`]: the TOML of throwaway profiles (`dir` transports on a post office) and
//!   plain messages to submit;
//! - here: [`Env`], a sandbox with two ready profiles, and `assert_cmd` helpers for its
//!   one-shot commands:
//!   - `me.toml`: transports `home` (`me@home.test`, FlushQueues on its own status object) and
//!     `work` (`me@work.test`, `flush_queues = false`, and an interactive `connect_command` that
//!     touches `work-connected` and says so on stdout);
//!   - `peer.toml`: transport `peer` (`peer@home.test`).

#![allow(dead_code)]

pub mod ci;
pub mod daemon;
pub mod profile;
pub mod sandbox;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

use profile::{dir_transport, profile_toml};
use sandbox::Sandbox;

/// A sandbox holding the post office, the two profiles and their stores.
pub struct Env {
    pub sandbox: Sandbox,
}

impl Env {
    /// Writes both profiles. Nothing has logged on yet, so the post office has no mailboxes.
    pub fn new() -> Env {
        let env = Env {
            sandbox: Sandbox::new(),
        };
        let po = env.post_office();
        let work = format!(
            r#"[[transport]]
name = "work"
address = "me@work.test"
flush_queues = false
[transport.connect_command]
command = "echo connecting work; touch '{connected}'"
interactive = true
[transport.outbound]
kind = "dir"
path = "{po}"
[transport.inbound]
kind = "dir"
path = "{po}"
"#,
            po = po.display(),
            connected = env.path("work-connected").display(),
        );
        let me = profile_toml(
            &env.path("me.db"),
            &format!("{}\n{work}", dir_transport("home", "me@home.test", &po)),
        );
        let peer = profile_toml(
            &env.path("peer.db"),
            &dir_transport("peer", "peer@home.test", &po),
        );
        std::fs::write(env.me(), me).expect("write me.toml");
        std::fs::write(env.peer(), peer).expect("write peer.toml");
        env
    }

    /// A path inside the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.sandbox.path(name)
    }

    pub fn post_office(&self) -> PathBuf {
        self.sandbox.post_office()
    }

    /// The profile with `home` and `work`.
    pub fn me(&self) -> PathBuf {
        self.path("me.toml")
    }

    /// The profile with `peer`.
    pub fn peer(&self) -> PathBuf {
        self.path("peer.toml")
    }

    /// `mapispool` with no profile given (no `$MAPISPOOL_PROFILE` either), in the sandbox (see
    /// [`Sandbox::command`]), and given a minute at most.
    pub fn bare(&self) -> Command {
        let mut cmd = Command::from_std(self.sandbox.mapispool());
        cmd.timeout(std::time::Duration::from_secs(60));
        cmd
    }

    /// `mapispool ARGS` without `--profile` (see [`Env::bare`]).
    pub fn bare_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.args(args);
        cmd
    }

    /// `mapispool --profile me.toml ARGS`.
    pub fn me_cmd(&self, args: &[&str]) -> Command {
        self.cmd_for(&self.me(), args)
    }

    /// `mapispool --profile peer.toml ARGS`.
    pub fn peer_cmd(&self, args: &[&str]) -> Command {
        self.cmd_for(&self.peer(), args)
    }

    pub fn cmd_for(&self, profile: &Path, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--profile").arg(profile).args(args);
        cmd
    }

    /// Logs `peer` on once, which creates its mailbox in the post office.
    pub fn open_peer_mailbox(&self) {
        self.peer_cmd(&["validate"]).assert().success();
        assert!(
            self.sandbox.mailbox("peer@home.test").is_dir(),
            "logging on should have created peer's mailbox"
        );
    }

    /// Submits `message` through `me.toml` with `args`, and returns the entry ID printed.
    pub fn submit(&self, message: &str, args: &[&str]) -> String {
        let mut all = vec!["submit"];
        all.extend_from_slice(args);
        let out = self
            .me_cmd(&all)
            .write_stdin(message)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let id = String::from_utf8(out).expect("utf-8").trim().to_string();
        assert!(is_entry_id(&id), "submit printed {id:?}, not an entry ID");
        id
    }
}

/// Runs `cmd`, expects `code`, and parses its stdout as JSON.
pub fn json(mut cmd: Command, code: i32) -> Value {
    let out = cmd.assert().code(code).get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// A message from `me@home.test` to `peer@home.test` (in To:) with this subject.
pub fn letter(subject: &str) -> String {
    format!(
        "From: Me <me@home.test>\r\nTo: Peer <peer@home.test>\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{}@home.test>\r\n\r\nBody of {subject}.\r\n",
        subject.replace(' ', "-")
    )
}

/// True for an entry ID as the CLI prints it: upper-case hex, at least 20 bytes.
pub fn is_entry_id(text: &str) -> bool {
    text.len() >= 40
        && text.len().is_multiple_of(2)
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
}

/// Runs `cmd`, checks it exits with `code`, and returns its stdout and stderr as text.
pub fn run(mut cmd: Command, code: i32) -> (String, String) {
    let assert = cmd.assert().code(code);
    let out = assert.get_output();
    (
        String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8"),
        String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8"),
    )
}

/// [`run`], for its stdout.
pub fn stdout(cmd: Command, code: i32) -> String {
    run(cmd, code).0
}

/// [`run`], for its stderr.
pub fn stderr(cmd: Command, code: i32) -> String {
    run(cmd, code).1
}

/// The values of `column` in a `--json` table, as strings.
pub fn column(table: &Value, column: &str) -> Vec<String> {
    table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| match &r[column] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

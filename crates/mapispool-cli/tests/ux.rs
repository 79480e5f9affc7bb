//! The CLI experience: `watch` seeing another process's flush through the daemon, `flush
//! --async`, `--quiet`, plain output off a terminal, completions and the man page.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::daemon::Daemon;
use common::sandbox::{BIN, Sandbox};
use serde_json::Value;

/// A sandbox with one profile `me.toml`: transport `home` (`me@home.test`) on the post office.
/// Commands find it through `MAPISPOOL_PROFILE`.
struct Env {
    sandbox: Sandbox,
    profile: PathBuf,
}

impl Env {
    fn new() -> Env {
        let sandbox = Sandbox::new();
        let profile = sandbox.write_dir_profile("me", "home", "me@home.test");
        Env { sandbox, profile }
    }

    /// `program` in the sandbox with the profile in `MAPISPOOL_PROFILE`; without `NO_COLOR`,
    /// since these tests check that output off a terminal has no colour by itself.
    fn with_profile(&self, program: impl AsRef<std::ffi::OsStr>) -> StdCommand {
        let mut c = self.sandbox.command(program);
        c.env("MAPISPOOL_PROFILE", &self.profile)
            .env_remove("NO_COLOR");
        c
    }

    fn std(&self, args: &[&str]) -> StdCommand {
        let mut c = self.with_profile(BIN);
        c.args(args);
        c
    }

    fn cmd(&self, args: &[&str]) -> Command {
        Command::from_std(self.std(args))
    }

    fn submit(&self, to: &str, subject: &str) {
        self.cmd(&["submit", "--quiet", to])
            .write_stdin(format!("From: me@home.test\nSubject: {subject}\n\nbody\n"))
            .assert()
            .success();
    }

    fn start_daemon(&self) -> Daemon {
        self.sandbox.start_daemon(&self.profile)
    }
}

/// Reads a child's pipe line by line on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A watcher started after its "watching" line: returns the child and its stdout lines.
fn start_watch(env: &Env, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = env
        .std(&[&["watch"], args].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let err = lines(child.stderr.take().expect("stderr"));
    let first = err
        .recv_timeout(Duration::from_secs(20))
        .expect("watch says what it watches");
    assert!(first.starts_with("watching the spooler daemon"), "{first}");
    let out = lines(child.stdout.take().expect("stdout"));
    (child, out)
}

#[test]
fn watch_sees_another_process_flush_through_the_daemon() {
    let env = Env::new();
    let daemon = env.start_daemon();
    let (mut json_watch, json_lines) = start_watch(&env, &["--json", "--count", "6"]);
    let (mut plain_watch, plain_lines) = start_watch(&env, &["--count", "6"]);

    env.submit("me@home.test", "watched");
    // The watchers' event streams may connect a moment after they say so: flush until both
    // have seen their six changes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        env.cmd(&["flush", "--quiet"])
            .assert()
            .code(predicates::ord::lt(2));
        let done = json_watch.try_wait().expect("wait").is_some()
            && plain_watch.try_wait().expect("wait").is_some();
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watchers never saw six changes"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(json_watch.wait().expect("json watch").success());
    assert!(plain_watch.wait().expect("plain watch").success());

    let json: Vec<Value> = json_lines
        .try_iter()
        .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(json.len(), 6, "{json:#?}");
    for n in &json {
        assert!(
            n["time"].is_string() && n["event"].as_str().is_some_and(|e| e.starts_with("TABLE_"))
        );
        assert!(n["row"]["PR_DISPLAY_NAME"].is_string(), "{n}");
        assert!(n["row"]["PR_STATUS_CODE"].is_i64(), "{n}");
    }
    assert!(
        json.iter().any(|n| n["row"]["PR_STATUS_CODE_text"]
            .as_str()
            .is_some_and(|t| t.contains("OUTBOUND_FLUSH"))),
        "a flush's bits: {json:#?}"
    );

    let plain: Vec<String> = plain_lines.try_iter().collect();
    assert_eq!(plain.len(), 6, "{plain:#?}");
    for line in &plain {
        // <time> <name>: <status string> [bits], no colour off a terminal.
        assert!(!line.contains('\x1b'), "{line:?}");
        let (time, rest) = line.split_once(' ').expect("time first");
        assert!(time.len() == 20 && time.ends_with('Z'), "{line}");
        assert!(
            rest.contains(": ") && rest.ends_with(']') && rest.contains(" ["),
            "{line}"
        );
    }
    assert!(plain.iter().any(|l| l.contains("FLUSH")), "{plain:#?}");

    // --async with a daemon: back at once, saying how to follow.
    let out = env.cmd(&["flush", "--async"]).output().expect("flush runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mapispool watch") && text.contains("mapispool status"),
        "{text}"
    );
    env.cmd(&["watch", "--until-idle", "--quiet"])
        .timeout(Duration::from_secs(30))
        .assert()
        .success();

    // sendmail goes through the daemon too.
    let link = env.sandbox.path("sendmail");
    std::os::unix::fs::symlink(BIN, &link).expect("symlink");
    Command::from_std(env.with_profile(&link))
        .args(["-oi", "someone@x.test"])
        .write_stdin("From: me@home.test\nSubject: via daemon\n\nbody\n")
        .assert()
        .success()
        .stdout("");
    let out = env
        .cmd(&["queue", "--json", "--columns", "PR_SUBJECT"])
        .output()
        .expect("queue");
    assert!(String::from_utf8_lossy(&out.stdout).contains("via daemon"));

    daemon.stop();
}

#[test]
fn quiet_prints_nothing_on_success() {
    let env = Env::new();
    for args in [
        &["submit", "--quiet", "me@home.test"][..],
        &["-q", "flush"],
        &["validate", "--quiet"],
        &["--quiet", "flush", "--async"],
        &["-q", "validate", "--transport", "home"],
    ] {
        env.cmd(args)
            .write_stdin("From: me@home.test\nSubject: quiet\n\nbody\n")
            .assert()
            .success()
            .stdout("")
            .stderr("");
    }
    // The same without --quiet say something, and off a terminal without colour.
    for args in [&["flush"][..], &["validate"], &["status"]] {
        let out = env.cmd(args).env_remove("NO_COLOR").output().expect("runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
        assert!(!out.stdout.contains(&0x1b), "{args:?}: no colour in a pipe");
    }
}

#[test]
fn watch_until_idle_without_a_daemon_returns_at_once() {
    let env = Env::new();
    let out = env
        .cmd(&["watch", "--until-idle"])
        .timeout(Duration::from_secs(30))
        .output()
        .expect("watch runs");
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "no changes, no lines");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no spooler daemon runs"));
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.cmd(&["completions", shell]).output().expect("runs");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        // fish writes long options without their dashes (`-l no-ui`).
        for word in ["flush", "no-ui", "sendmail", "watch", "until-idle"] {
            assert!(text.contains(word), "{shell}: {word}");
        }
    }
    env.cmd(&["completions", "tcsh"]).assert().code(2);

    let out = env.cmd(&["man"]).output().expect("runs");
    assert!(out.status.success());
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(roff.contains(".TH mapispool 1"), "{roff}");
    for needle in [
        ".SH SYNOPSIS",
        ".SS \"mapispool flush\"",
        "\\-\\-no\\-ui",
        ".SS \"mapispool sendmail\"",
        "\\-\\-until\\-idle",
    ] {
        assert!(roff.contains(needle), "{needle}");
    }
}

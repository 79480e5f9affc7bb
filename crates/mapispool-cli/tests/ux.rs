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

/// Whether util-linux `script` (a terminal for a command) is here; under CI its absence fails.
fn have_script() -> bool {
    if StdCommand::new("script").arg("--version").output().is_ok() {
        return true;
    }
    common::ci::cannot_run("util-linux `script` (a terminal for the command) is not installed");
    false
}

/// Removes ANSI escape sequences (CSI `ESC [ ... final`), leaving the text.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `watch` on a terminal 60 columns wide (a pty from `script`, sized with `stty`), until it
/// has seen `count` changes of flushes run beside it; its whole output, escapes included.
fn watch_on_a_terminal(env: &Env, no_color: Option<&str>) -> String {
    let command = format!("stty cols 60 rows 30; exec '{BIN}' watch --count 3");
    let mut cmd = env.with_profile("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(value) = no_color {
        cmd.env("NO_COLOR", value);
    }
    let mut child = cmd.spawn().expect("script starts");
    let out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(out), &mut text);
        text
    });
    env.submit("me@home.test", "watched on a terminal");
    // The watcher's event stream may connect a moment after it starts: flush until it has
    // seen its changes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        env.cmd(&["flush", "--quiet"])
            .assert()
            .code(predicates::ord::lt(2));
        assert!(Instant::now() < deadline, "watch never saw three changes");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.wait().expect("watch").success());
    reader.join().expect("reader")
}

/// On a terminal `watch` draws on the alternate screen and gives the screen back on exit (no
/// screenful per change in the scrollback), fits its lines to the window's width, and colours
/// unless `NO_COLOR` is set to something (an empty `NO_COLOR` is no request, as no-color.org
/// says) — as the README says (issue 19.8).
#[test]
fn watch_on_a_terminal_uses_the_alternate_screen_fits_the_width_and_honours_no_color() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    let daemon = env.start_daemon();
    for no_color in [None, Some(""), Some("1")] {
        let raw = watch_on_a_terminal(&env, no_color);
        let enter = raw.find("\x1b[?1049h").unwrap_or_else(|| panic!("{raw:?}"));
        let leave = raw
            .rfind("\x1b[?1049l")
            .unwrap_or_else(|| panic!("{raw:?}"));
        assert!(enter < leave, "{raw:?}");
        assert!(
            raw[leave..]
                .trim_start_matches("\x1b[?1049l")
                .trim()
                .is_empty(),
            "nothing after leaving the alternate screen: {raw:?}"
        );
        let screen = &raw[enter..leave];
        let text = strip_ansi(screen);
        assert!(text.contains("DISPLAY_NAME"), "{text}");
        assert!(text.contains("home"), "{text}");
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            assert!(
                line.chars().count() <= 60,
                "{} columns on a 60-column terminal: {line:?}",
                line.chars().count()
            );
        }
        // SGR sequences (`ESC [ ... m`): colour and dim; the cursor and screen ones are others.
        let coloured = screen.contains("\x1b[2m") || screen.contains("\x1b[1m");
        match no_color {
            Some("1") => assert!(!coloured, "colour with NO_COLOR=1: {screen:?}"),
            _ => assert!(coloured, "no colour with NO_COLOR={no_color:?}: {screen:?}"),
        }
    }
    daemon.stop();
}

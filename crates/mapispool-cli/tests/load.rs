//! Load (issue 6): ten clients at once against one daemon for a bounded time, each `submit`ting
//! messages with its own Message-IDs and `flush`ing every few submits; then a last flush. Every
//! submitted Message-ID must be in the recipient's post-office mailbox exactly once, the queue
//! empty, and no client may see an error — the spooler joins overlapping flushes, so not even
//! `MAPI_E_BUSY`.
//!
//! `cargo test -p mapispool-cli --test load -- --nocapture` prints the figures.
//! `MAPISPOOL_LOAD_SECS` and `MAPISPOOL_LOAD_CLIENTS` change the run (8 s, 10 clients);
//! `MAPISPOOL_LOAD_LOG` is the daemon's `RUST_LOG` (warn), its log shown on a failure.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sandbox::Sandbox;

const RECIPIENT: &str = "peer@load.test";

/// How long one client command may take before the test calls it hung: far more than it needs
/// on a loaded 2-core machine.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

struct Env {
    sandbox: Sandbox,
    profile: PathBuf,
}

impl Env {
    fn new() -> Env {
        let sandbox = Sandbox::new();
        std::fs::create_dir_all(sandbox.mailbox(RECIPIENT)).expect("the recipient's mailbox");
        let profile = sandbox.write_dir_profile("load", "local", "load@load.test");
        Env { sandbox, profile }
    }

    /// `mapispool --profile load.toml`, finding the daemon through the sandbox's runtime dir,
    /// its output piped for [`run`].
    fn cli(&self) -> Command {
        let mut c = self.sandbox.cli(&self.profile);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn mailbox(&self) -> PathBuf {
        self.sandbox.mailbox(RECIPIENT)
    }
}

/// What one command did.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `cmd` (writing `input` to its stdin if any) and waits at most [`COMMAND_DEADLINE`].
fn run(mut cmd: Command, input: Option<&[u8]>) -> Ran {
    let start = Instant::now();
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("mapispool starts");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
    }
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a client command hung for {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ran {
        ok: status.success(),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
        took: start.elapsed(),
    }
}

fn message_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take_while(|l| !l.trim_end().is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("message-id"))
                .map(|(_, v)| v.trim().to_string())
        })
}

/// The delivered messages' Message-IDs with how often each is there.
fn delivered(mailbox: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(mailbox).expect("the mailbox") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("a delivered file");
        let id = message_id(&bytes).unwrap_or_else(|| "(no Message-ID)".into());
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

/// What one client did.
#[derive(Default)]
struct Client {
    submitted: Vec<String>,
    submit_times: Vec<Duration>,
    flush_times: Vec<Duration>,
    errors: Vec<String>,
}

fn client(env: &Env, n: usize, until: Instant) -> Client {
    let mut c = Client::default();
    let mut i = 0usize;
    while Instant::now() < until {
        i += 1;
        let id = format!("<load-{n}-{i}@load.test>");
        let letter = format!(
            "From: load@load.test\r\nTo: {RECIPIENT}\r\nSubject: load {n}/{i}\r\nMessage-ID: {id}\r\n\r\nclient {n}, message {i}\r\n"
        );
        let mut cmd = env.cli();
        cmd.arg("submit");
        let r = run(cmd, Some(letter.as_bytes()));
        if r.ok {
            c.submitted.push(id);
            c.submit_times.push(r.took);
        } else {
            c.errors.push(format!("submit {id}: {}", r.stderr.trim()));
        }
        if i.is_multiple_of(3) {
            let mut cmd = env.cli();
            cmd.arg("flush");
            let r = run(cmd, None);
            if r.ok {
                c.flush_times.push(r.took);
            } else {
                c.errors
                    .push(format!("flush: {} {}", r.stderr.trim(), r.stdout.trim()));
            }
        }
    }
    c
}

#[test]
fn ten_clients_submit_and_flush_at_once_and_nothing_is_lost_or_doubled() {
    let env = Env::new();
    let secs = env_number("MAPISPOOL_LOAD_SECS", 8);
    let clients = env_number("MAPISPOOL_LOAD_CLIENTS", 10) as usize;

    let mut daemon = env.sandbox.start_daemon_with(&env.profile, |cmd| {
        cmd.env(
            "RUST_LOG",
            std::env::var("MAPISPOOL_LOAD_LOG").unwrap_or_else(|_| "warn".into()),
        );
    });

    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let results: Vec<Client> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|n| {
                let env = &env;
                s.spawn(move || client(env, n, until))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect()
    });
    let busy = started.elapsed();
    // The daemon must have served them all: a client that finds no daemon runs the spooler
    // in its own process, which would hide a daemon that died under the load.
    let died = daemon.exited();

    // The last flush sends whatever the clients' flushes left.
    let mut cmd = env.cli();
    cmd.args(["flush", "--json"]);
    let last = run(cmd, None);
    let mut cmd = env.cli();
    cmd.args(["queue", "--json"]);
    let queue = run(cmd, None);

    // Stop the daemon (SIGTERM: it finishes what is in flight and exits 0).
    let stopped = daemon.terminate();
    let daemon_log = daemon.log();

    let errors: Vec<&String> = results.iter().flat_map(|c| &c.errors).collect();
    let submitted: Vec<&String> = results.iter().flat_map(|c| &c.submitted).collect();
    let flushes: usize = results.iter().map(|c| c.flush_times.len()).sum();
    let got = delivered(&env.mailbox());
    let missing: Vec<&&String> = submitted
        .iter()
        .filter(|id| !got.contains_key(**id))
        .collect();
    let doubled: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    let strangers: Vec<&String> = got
        .keys()
        .filter(|id| !submitted.iter().any(|s| s == id))
        .collect();
    let submit_median = median(
        results
            .iter()
            .flat_map(|c| c.submit_times.clone())
            .collect(),
    );
    let flush_median = median(results.iter().flat_map(|c| c.flush_times.clone()).collect());
    let flush_max = results
        .iter()
        .flat_map(|c| c.flush_times.iter().copied())
        .max()
        .unwrap_or_default();
    eprintln!(
        "load: {clients} clients for {:.1} s: {} submits (median {} ms), {flushes} flushes (median {} ms, max {} ms), {} errors; last flush {} ms; delivered {} distinct, missing {}, doubled {}",
        busy.as_secs_f64(),
        submitted.len(),
        submit_median.as_millis(),
        flush_median.as_millis(),
        flush_max.as_millis(),
        errors.len(),
        last.took.as_millis(),
        got.len(),
        missing.len(),
        doubled.len()
    );

    assert_eq!(died, None, "the daemon died under the load:\n{daemon_log}");
    assert!(
        errors.is_empty(),
        "clients got errors ({}): {:#?}\ndaemon log:\n{daemon_log}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(last.ok, "the last flush: {} {}", last.stderr, last.stdout);
    assert!(queue.ok, "queue: {}", queue.stderr);
    let queue: serde_json::Value = serde_json::from_str(&queue.stdout).expect("queue --json");
    let queued = queue
        .as_array()
        .map(Vec::len)
        .or_else(|| queue["rows"].as_array().map(Vec::len))
        .unwrap_or(usize::MAX);
    assert_eq!(queued, 0, "the queue after the last flush: {queue}");
    assert!(
        submitted.len() >= clients,
        "every client submitted at least once ({} in all)",
        submitted.len()
    );
    assert!(flushes >= 1, "the clients flushed");
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(doubled.is_empty(), "delivered twice: {doubled:?}");
    assert!(
        strangers.is_empty(),
        "delivered but never submitted: {strangers:?}"
    );
    assert_eq!(got.len(), submitted.len());
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the daemon stops cleanly on SIGTERM ({stopped:?}):\n{daemon_log}"
    );
}

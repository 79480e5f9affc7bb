//! Issue 8 from the command line, through a running spooler daemon: `flush --message`,
//! `flush --group`, `queue --recipients`, and `offline` / `online` that hold across one-shot
//! commands and daemon restarts.
//!
//! Each test gives its processes their own `XDG_RUNTIME_DIR` (where the daemon's socket lives)
//! through the child's environment, never this process's, so the tests can run side by side.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::profile::{dir_transport, plain_message};
use common::sandbox::{Sandbox, stderr_of as stderr, stdout_of as stdout};
use serde_json::Value;

/// A `dir` transport on the shared post office; its connect_command records the pid of the
/// process that flushes it (the shell's parent) in `flushed-by`.
fn pid_recording_transport(env: &Sandbox, name: &str, address: &str) -> String {
    format!(
        "{}[transport.connect_command]\ncommand = \"echo $PPID >> {pids}\"\n\n",
        dir_transport(name, address, &env.post_office()),
        pids = env.path("flushed-by").display(),
    )
}

/// The pids of the processes that flushed (ran a connect_command), in order.
fn flushed_by(env: &Sandbox) -> Vec<u32> {
    std::fs::read_to_string(env.path("flushed-by"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().expect("a pid"))
        .collect()
}

fn submit(env: &Sandbox, profile: &Path, from: &str, to: &str, subject: &str) -> String {
    env.submit(profile, &[], &plain_message(from, to, subject))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The subjects `queue --json` lists.
fn queued_subjects(env: &Sandbox, profile: &Path) -> Vec<String> {
    let rows = json(&env.run_ok(profile, &["queue", "--json", "--columns", "PR_SUBJECT"]));
    rows["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["PR_SUBJECT"].as_str().expect("subject").to_string())
        .collect()
}

#[test]
fn flush_message_and_flush_group_go_through_the_daemon() {
    let env = Sandbox::new();
    let alice = env.write_profile(
        "alice",
        &format!(
            "{}{}[[group]]\nname = \"outgoing\"\ntransports = [\"local\"]\ndirection = \"send\"\n",
            pid_recording_transport(&env, "local", "alice@localhost"),
            pid_recording_transport(&env, "other", "alice.other@localhost"),
        ),
    );
    let bob = env.write_profile(
        "bob",
        &pid_recording_transport(&env, "local", "bob@localhost"),
    );
    env.run_ok(&bob, &["validate"]); // bob's mailbox exists
    std::fs::remove_file(env.path("flushed-by")).ok();

    let daemon = env.start_daemon(&alice);
    let first = submit(&env, &alice, "alice@localhost", "bob@localhost", "first");
    submit(&env, &alice, "alice@localhost", "bob@localhost", "second");

    // flush --message: only that message moves, and the daemon moved it.
    let report = json(&env.run_ok(&alice, &["flush", "--message", &first, "--json"]));
    assert_eq!(
        report["transports"].as_array().expect("transports").len(),
        1
    );
    assert_eq!(env.delivered("bob@localhost"), 1);
    assert_eq!(queued_subjects(&env, &alice), vec!["second"]);
    assert_eq!(
        flushed_by(&env),
        vec![daemon.pid()],
        "flushed in the daemon"
    );

    // The per-recipient queue, through the daemon, with --where and --columns.
    let rows = json(&env.run_ok(
        &alice,
        &[
            "queue",
            "--recipients",
            "--json",
            "--where",
            "PR_MSP_QUEUE_STATE == \"queued\"",
            "--columns",
            "PR_SUBJECT,PR_EMAIL_ADDRESS,PR_MSP_QUEUE_STATE,PR_MSP_ATTEMPTS",
        ],
    ));
    let rows = rows["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["PR_SUBJECT"], "second");
    assert_eq!(rows[0]["PR_EMAIL_ADDRESS"], "bob@localhost");
    assert_eq!(rows[0]["PR_MSP_ATTEMPTS"], 0);

    // The message queue through the daemon with a --where it answers from the store's indexes
    // (`?where=`: only matching rows cross the socket), with the rest of the expression
    // (here the subject, and an OR) still applied.
    for (expr, want) in [
        (
            "PR_MSP_ATTEMPTS == 0 && PR_SUBJECT == \"second\"",
            vec!["second"],
        ),
        ("PR_MSP_ATTEMPTS > 0", vec![]),
        (
            "PR_MSP_ATTEMPTS > 0 || PR_MESSAGE_SIZE > 10",
            vec!["second"],
        ),
        ("PR_MSP_ATTEMPTS == 0 && PR_SUBJECT == \"first\"", vec![]),
    ] {
        let rows = json(&env.run_ok(
            &alice,
            &[
                "queue",
                "--json",
                "--where",
                expr,
                "--columns",
                "PR_SUBJECT",
            ],
        ));
        let got: Vec<&str> = rows["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["PR_SUBJECT"].as_str().expect("subject"))
            .collect();
        assert_eq!(got, want, "{expr}");
    }

    // flush --group: the group's transport only, upload only (direction = "send").
    let report = json(&env.run_ok(&alice, &["flush", "--group", "outgoing", "--json"]));
    let transports = report["transports"].as_array().expect("transports");
    assert_eq!(transports.len(), 1, "{report}");
    assert_eq!(transports[0]["transport"], "local");
    assert_eq!(transports[0]["download"], false, "{report}");
    assert_eq!(env.delivered("bob@localhost"), 2);
    assert!(queued_subjects(&env, &alice).is_empty());
    assert_eq!(flushed_by(&env), vec![daemon.pid(), daemon.pid()]);

    // Errors cross the socket: an unknown group, a message no longer queued.
    let out = env.run(&alice, &["flush", "--group", "nosuch"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));
    let out = env.run(&alice, &["flush", "--message", &first]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MAPI_E_NOT_IN_QUEUE"),
        "{}",
        stderr(&out)
    );
    daemon.stop();
}

/// An SMTP transport's host and port: a listener that only counts the connections it accepts.
struct CountingServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl CountingServer {
    fn start() -> CountingServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        CountingServer { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn transport_row(env: &Sandbox, profile: &Path, name: &str) -> Value {
    let rows = json(&env.run_ok(profile, &["status", "--json"]));
    rows["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["PR_DISPLAY_NAME"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {rows}"))
        .clone()
}

#[test]
fn offline_holds_through_the_daemon_one_shot_commands_and_restarts() {
    let env = Sandbox::new();
    let server = CountingServer::start();
    let alice = env.write_profile(
        "alice",
        &format!(
            "[spooler]\ntimeout = \"5s\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            server.port
        ),
    );
    let daemon = env.start_daemon(&alice);
    let said = env.run_ok(&alice, &["offline", "--transport", "smtp"]);
    assert!(said.starts_with("smtp: offline"), "{said}");
    let row = transport_row(&env, &alice, "smtp");
    assert!(
        row["PR_STATUS_CODE_text"]
            .as_str()
            .is_some_and(|t| t.contains("OFFLINE")),
        "{row}"
    );
    assert_eq!(row["PR_STATUS_STRING"], "Offline");

    submit(
        &env,
        &alice,
        "alice@example.com",
        "bob@example.com",
        "offline one",
    );
    let out = env.run(&alice, &["flush"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("offline"), "{}", stdout(&out));
    assert_eq!(queued_subjects(&env, &alice), vec!["offline one"]);

    // Without the daemon, one-shot commands see the same switch.
    daemon.stop();
    let row = transport_row(&env, &alice, "smtp");
    assert_eq!(row["PR_STATUS_STRING"], "Offline", "{row}");
    let out = env.run(&alice, &["flush", "--upload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // And a restarted daemon too.
    let daemon = env.start_daemon(&alice);
    let out = env.run(&alice, &["flush", "--upload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(server.accepted(), 0, "nothing connected while offline");

    // Online (send_on_reconnect is off): nothing is sent until a flush.
    let said = env.run_ok(&alice, &["online"]);
    assert!(said.contains("smtp: online (1 queued"), "{said}");
    assert_eq!(server.accepted(), 0);
    let row = transport_row(&env, &alice, "smtp");
    assert!(
        row["PR_STATUS_CODE_text"]
            .as_str()
            .is_some_and(|t| !t.contains("OFFLINE")),
        "{row}"
    );
    env.run(&alice, &["flush", "--upload"]);
    assert!(server.accepted() >= 1, "a flush connects once online");
    daemon.stop();
}

#[test]
fn online_with_send_on_reconnect_sends_the_queue_at_once() {
    let env = Sandbox::new();
    let alice = env.write_profile(
        "alice",
        &format!(
            "[spooler]\nsend_on_reconnect = true\n\n{}",
            pid_recording_transport(&env, "local", "alice@localhost")
        ),
    );
    let bob = env.write_profile(
        "bob",
        &pid_recording_transport(&env, "local", "bob@localhost"),
    );
    env.run_ok(&bob, &["validate"]);
    // No daemon: each command is its own process, and the switch is in the store.
    let said = env.run_ok(&alice, &["offline", "--json"]);
    assert_eq!(json(&said)[0]["offline"], true);
    submit(&env, &alice, "alice@localhost", "bob@localhost", "held");
    assert_eq!(env.delivered("bob@localhost"), 0);
    let said = env.run_ok(&alice, &["online"]);
    assert_eq!(said.trim(), "local: online (nothing queued)");
    assert_eq!(env.delivered("bob@localhost"), 1);
}

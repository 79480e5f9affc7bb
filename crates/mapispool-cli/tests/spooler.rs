//! `mapispool spooler`: schedules move mail without anyone flushing, and SIGTERM stops it
//! cleanly (exit 0).

#[path = "../../mapispool/tests/peers/fake_smtp.rs"]
mod fake_smtp;

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::daemon::{DAEMON_DEADLINE, wait_exit, wait_until};
use common::profile::dir_transport;
use common::sandbox::{Sandbox, all_output, stderr_of};

/// The profile `NAME.toml`: one transport `local` (`NAME@localhost`) on the post office,
/// uploading and downloading every `interval`.
fn write_profile(env: &Sandbox, name: &str, interval: &str) -> PathBuf {
    env.write_profile(
        name,
        &format!(
            "[spooler]\nupload_interval = \"{interval}\"\ndownload_interval = \"{interval}\"\n\n{}",
            dir_transport("local", &format!("{name}@localhost"), &env.post_office())
        ),
    )
}

#[test]
fn schedules_send_and_sigterm_stops_cleanly() {
    let env = Sandbox::new();
    let alice = write_profile(&env, "alice", "1s");
    let bob = write_profile(&env, "bob", "1h");
    // Bob's mailbox exists once his profile has logged on.
    let st = env.run(&bob, &["validate"]);
    assert!(st.status.success(), "{}", stderr_of(&st));

    let daemon = env.start_daemon_with(&alice, |cmd| {
        cmd.arg("-v");
    });

    // Submitted while the spooler runs, by another process: the next scheduled flush takes it.
    env.submit(
        &alice,
        &[],
        "From: alice@localhost\r\nTo: bob@localhost\r\nSubject: scheduled\r\n\r\nhi\r\n",
    );

    wait_until("the schedule to deliver it", || {
        env.delivered("bob@localhost") != 0
    });
    assert_eq!(
        env.delivered("bob@localhost"),
        1,
        "the schedule delivered it"
    );

    daemon.stop();

    // The queue is empty and the message is in Sent Items.
    let out = env.run(&alice, &["messages", "--folder", "sent", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["rows"][0]["PR_SUBJECT"], "scheduled");
}

/// `CMD flush --async` run by `cmd`: whether it handed the flush to a daemon (and so found one).
fn found_the_daemon(mut cmd: std::process::Command) -> bool {
    let out = cmd
        .args(["flush", "--async"])
        .output()
        .expect("mapispool runs");
    assert!(out.status.success(), "{}", stderr_of(&out));
    all_output(&out).contains("flush started in the spooler daemon")
}

/// One daemon per store (issue 19): the lock is beside the store, so neither another path to
/// the profile nor another environment starts a second daemon on it, and every client finds
/// the running one.
#[test]
fn one_daemon_per_store_whatever_the_path_or_environment() {
    let env = Sandbox::new();
    let alice = write_profile(&env, "alice", "1h");
    let alias = env.path("alias.toml");
    std::os::unix::fs::symlink(&alice, &alias).expect("symlink the profile");
    let mut daemon = env.start_daemon(&alice);

    assert!(
        found_the_daemon(env.cli(&alice)),
        "the profile's own path finds it"
    );
    assert!(
        found_the_daemon(env.cli(&alias)),
        "a symlink to the profile finds it"
    );
    let mut no_runtime_dir = env.cli(&alice);
    no_runtime_dir.env_remove("XDG_RUNTIME_DIR");
    assert!(
        found_the_daemon(no_runtime_dir),
        "a shell without XDG_RUNTIME_DIR finds it"
    );

    // A second daemon, through the symlink and without XDG_RUNTIME_DIR, is refused and names
    // the running one.
    let mut second = env
        .cli(&alias)
        .env_remove("XDG_RUNTIME_DIR")
        .arg("spooler")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("a second spooler starts");
    let status = wait_exit(&mut second, DAEMON_DEADLINE);
    if status.is_none() {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second daemon started on the same store");
    }
    let out = second.wait_with_output().expect("its output");
    assert!(!out.status.success(), "the second daemon failed");
    let said = stderr_of(&out);
    assert!(
        said.contains("already serves the store")
            && said.contains(&format!("pid {}", daemon.pid()))
            && said.contains(&env.socket(&alice).display().to_string()),
        "names the running daemon: {said}"
    );
    assert_eq!(daemon.exited(), None, "the first daemon still runs");
    daemon.stop();
}

/// The mail log (issue 19.5): at its default level the daemon logs one line per recipient
/// outcome, as Postfix does, and one per received message; `--log-format json` makes each a
/// JSON object.
#[test]
fn the_daemon_logs_each_recipient_outcome_and_each_received_message() {
    let env = Sandbox::new();
    let alice = write_profile(&env, "alice", "1h");
    for format in ["text", "json"] {
        let daemon = env.start_daemon_with(&alice, |cmd| {
            cmd.args(["--log-format", format]);
        });
        env.submit(
            &alice,
            &[],
            &format!(
                "From: alice@localhost\r\nTo: alice@localhost, nobody@localhost\r\nSubject: {format}\r\n\r\nhi\r\n"
            ),
        );
        let _ = env.run(&alice, &["flush"]);
        let received = if format == "text" {
            "status=received"
        } else {
            "\"status\":\"received\""
        };
        wait_until("the received line", || daemon.log().contains(received));
        let log = daemon.log();
        daemon.stop();
        let lines: Vec<&str> = log.lines().collect();
        let po = env.post_office().display().to_string();
        if format == "text" {
            let sent = lines
                .iter()
                .find(|l| l.contains("status=sent"))
                .unwrap_or_else(|| panic!("no sent line:\n{log}"));
            for field in [
                "mapispool::mail".to_string(),
                "queue_id=".into(),
                "from=alice@localhost".into(),
                "to=alice@localhost".into(),
                "transport=local".into(),
                format!("relay={po}"),
                "delay=".into(),
                "dsn=2.0.0".into(),
            ] {
                assert!(sent.contains(&field), "{field} in {sent}");
            }
            let bounced = lines
                .iter()
                .find(|l| l.contains("status=bounced"))
                .unwrap_or_else(|| panic!("no bounced line:\n{log}"));
            assert!(
                bounced.contains("to=nobody@localhost")
                    && bounced.contains("dsn=5.1.1")
                    && bounced.contains("no such mailbox in the post office"),
                "{bounced}"
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("status=received") && l.contains("from=alice@localhost")),
                "{log}"
            );
        } else {
            let objects: Vec<serde_json::Value> = lines
                .iter()
                .filter(|l| l.starts_with('{') && l.contains("mapispool::mail"))
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            let with = |status: &str, to: &str| {
                objects.iter().find(|o| {
                    o["fields"]["status"] == status
                        && o["fields"]["to"].as_str().is_some_and(|t| t.contains(to))
                        && o["fields"]["subject"].is_null()
                })
            };
            let sent = with("sent", "alice@localhost").unwrap_or_else(|| panic!("{log}"));
            assert_eq!(sent["level"], "INFO");
            assert_eq!(sent["fields"]["dsn"], "2.0.0");
            assert_eq!(sent["fields"]["transport"], "local");
            let bounced = with("bounced", "nobody@localhost").unwrap_or_else(|| panic!("{log}"));
            assert_eq!(bounced["fields"]["dsn"], "5.1.1");
            assert!(with("received", "alice@localhost").is_some(), "{log}");
        }
    }
}

/// Under systemd (`JOURNAL_STREAM` set, issue 19.5) every log line starts with sd-daemon's
/// `<N>` priority prefix and has no timestamp of its own (the journal adds both), and the mail
/// log's `sent` line carries the server's own reply to the message's data. A scripted SMTP
/// server, so the reply is known word for word.
#[test]
fn under_systemd_lines_carry_a_priority_prefix_no_timestamp_and_the_server_reply() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(fake_smtp::FakeSmtp::start(fake_smtp::Knobs {
        final_reply: Arc::new(|n| format!("250 2.0.0 Ok: queued as FAKE{n}")),
        ..fake_smtp::Knobs::default()
    }));
    let env = Sandbox::new();
    let profile = env.write_profile(
        "journal",
        &format!(
            "[spooler]\nupload_interval = \"1h\"\ndownload_interval = \"1h\"\n\n[[transport]]\nname = \"out\"\naddress = \"me@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            server.port
        ),
    );
    let daemon = env.start_daemon_with(&profile, |cmd| {
        cmd.env("JOURNAL_STREAM", "8:12345");
    });
    env.submit(
        &profile,
        &[],
        "From: me@example.com\r\nTo: you@example.org\r\nSubject: journal\r\n\r\nhi\r\n",
    );
    let _ = env.run(&profile, &["flush"]);
    wait_until("the sent line", || daemon.log().contains("status=sent"));
    let log = daemon.log();
    daemon.stop();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let rest = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .unwrap_or_else(|| panic!("no priority prefix: {line:?}\n{log}"));
        // The formatter's own timestamp would come first: `2026-12-07T12:00:00.000000Z`.
        assert!(
            !rest.trim_start().starts_with(|c: char| c.is_ascii_digit()),
            "a timestamp of its own: {line:?}"
        );
        assert!(
            !line.contains('\x1b'),
            "no colour codes for the journal: {line:?}"
        );
    }
    let sent = lines
        .iter()
        .find(|l| l.contains("status=sent"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(sent.starts_with("<6>"), "INFO is priority 6: {sent}");
    assert!(
        sent.contains("reply=250 2.0.0 Ok: queued as FAKE0") && sent.contains("dsn=2.0.0"),
        "{sent}"
    );
    assert!(sent.contains("relay=127.0.0.1:"), "{sent}");
}

//! `mapispool flush`, `messages`, `show`, `validate` and `demo`: mail moving between two
//! profiles that share a post office, and the reports about it.

mod common;

use common::{Env, column, json, letter, run, stderr, stdout};
use serde_json::{Value, json};

/// A message from `me` at `from` to `peer` with this subject.
fn letter_from(from: &str, subject: &str) -> String {
    letter(subject).replace("me@home.test", from)
}

/// The report of `transport` in a flush report.
fn transport<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["transports"]
        .as_array()
        .expect("transports")
        .iter()
        .find(|t| t["transport"] == json!(name))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

fn transport_names(report: &Value) -> Vec<&str> {
    report["transports"]
        .as_array()
        .expect("transports")
        .iter()
        .map(|t| t["transport"].as_str().unwrap())
        .collect()
}

fn subjects(env: &Env, profile: &std::path::Path, folder: &str) -> Vec<String> {
    column(
        &json(
            env.cmd_for(profile, &["messages", "--folder", folder, "--json"]),
            0,
        ),
        "PR_SUBJECT",
    )
}

fn queued(env: &Env) -> Vec<String> {
    column(&json(env.me_cmd(&["queue", "--json"]), 0), "PR_SUBJECT")
}

#[test]
fn flush_sends_and_receives_between_two_profiles() {
    let env = Env::new();
    env.open_peer_mailbox();
    let id = env.submit(&letter("hello peer"), &[]);

    let report = json(env.me_cmd(&["flush", "--json"]), 0);
    assert_eq!(report["flags"], json!("FLUSH_UPLOAD|FLUSH_DOWNLOAD"));
    assert_eq!(report["asynchronous"], json!(false));
    assert_eq!(transport_names(&report), ["home", "work"]);
    let home = transport(&report, "home");
    assert_eq!(home["upload"], json!(true));
    assert_eq!(home["download"], json!(true));
    assert_eq!(home["error"], Value::Null);
    let sent = &home["messages"][0];
    assert_eq!(sent["subject"], json!("hello peer"), "{report:#}");
    assert_eq!(sent["entry_id"], json!(id), "{report:#}");
    assert!(queued(&env).is_empty());
    assert_eq!(subjects(&env, &env.me(), "sent"), ["hello peer"]);
    assert!(subjects(&env, &env.me(), "outbox").is_empty());

    // The peer has nothing until it flushes.
    assert!(subjects(&env, &env.peer(), "inbox").is_empty());
    let out = stdout(env.peer_cmd(&["flush"]), 0);
    assert!(out.contains("peer: sent 0, received 1"), "{out}");
    let inbox = json(env.peer_cmd(&["messages", "--json"]), 0);
    assert_eq!(column(&inbox, "PR_SUBJECT"), ["hello peer"]);
    assert_eq!(column(&inbox, "PR_SENDER_NAME"), ["Me"]);

    // show prints what arrived, as it was written.
    let received = inbox["rows"][0]["PR_ENTRYID"].as_str().unwrap();
    let raw = stdout(env.peer_cmd(&["show", received]), 0);
    assert!(raw.contains("Subject: hello peer\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nBody of hello peer.\r\n"), "{raw}");

    // A second flush finds nothing more.
    let report = json(env.peer_cmd(&["flush", "--json"]), 0);
    assert_eq!(transport(&report, "peer")["received"], json!(0));
}

#[test]
fn upload_only_and_download_only() {
    let env = Env::new();
    env.open_peer_mailbox();
    env.submit(&letter("up"), &[]);
    // The peer writes back; its own flush --download must not send it.
    let mut cmd = env.peer_cmd(&["submit"]);
    cmd.write_stdin(
        "From: peer@home.test\r\nTo: me@home.test\r\nSubject: back\r\n\r\nhi\r\n".to_string(),
    );
    cmd.assert().success();

    let report = json(env.me_cmd(&["flush", "--upload", "--json"]), 0);
    assert_eq!(report["flags"], json!("FLUSH_UPLOAD"));
    let home = transport(&report, "home");
    assert_eq!(home["upload"], json!(true));
    assert_eq!(home["download"], json!(false));
    assert!(queued(&env).is_empty());

    let report = json(env.peer_cmd(&["flush", "--download", "--json"]), 0);
    assert_eq!(report["flags"], json!("FLUSH_DOWNLOAD"));
    let peer = transport(&report, "peer");
    assert_eq!(
        (&peer["upload"], &peer["download"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(peer["received"], json!(1));
    assert_eq!(subjects(&env, &env.peer(), "inbox"), ["up"]);
    // "back" is still queued at the peer, and me has not received anything.
    let peer_queue = json(env.peer_cmd(&["queue", "--json"]), 0);
    assert_eq!(column(&peer_queue, "PR_SUBJECT"), ["back"]);

    // me --upload did not download "back" either (it was not sent yet), and now --download
    // alone sends nothing from me's queue.
    env.submit(&letter("still queued"), &[]);
    env.peer_cmd(&["flush", "--upload"]).assert().success();
    let report = json(env.me_cmd(&["flush", "--download", "--json"]), 0);
    assert_eq!(transport(&report, "home")["received"], json!(1));
    assert_eq!(subjects(&env, &env.me(), "inbox"), ["back"]);
    assert_eq!(queued(&env), ["still queued"]);
}

#[test]
fn flush_one_transport_by_name_or_entry_id() {
    let env = Env::new();
    env.open_peer_mailbox();
    env.submit(&letter("via home"), &[]);
    env.submit(&letter_from("me@work.test", "via work"), &[]);

    // home has FlushQueues on its own status object.
    let report = json(env.me_cmd(&["flush", "--transport", "home", "--json"]), 0);
    assert_eq!(transport_names(&report), ["home"]);
    assert_eq!(queued(&env), ["via work"]);
    assert!(!env.path("work-connected").exists());

    // work does not (flush_queues = false): the spooler flushes it as the target.
    let status = json(
        env.me_cmd(&[
            "status",
            "--json",
            "--columns",
            "PR_ENTRYID",
            "--where",
            r#"PR_DISPLAY_NAME == "work""#,
        ]),
        0,
    );
    let work_id = status["rows"][0]["PR_ENTRYID"]
        .as_str()
        .unwrap()
        .to_string();
    let report = json(env.me_cmd(&["flush", "--transport", &work_id, "--json"]), 0);
    assert_eq!(transport_names(&report), ["work"]);
    assert_eq!(transport(&report, "work")["entry_id"], json!(work_id));
    assert!(queued(&env).is_empty());
    assert!(env.path("work-connected").exists(), "connect_command ran");

    env.peer_cmd(&["flush"]).assert().success();
    let mut got = subjects(&env, &env.peer(), "inbox");
    got.sort();
    assert_eq!(got, ["via home", "via work"]);
}

#[test]
fn an_unknown_transport_is_bad_input() {
    let env = Env::new();
    env.submit(&letter("stays"), &[]);
    for which in ["play", "000000006D61706973706F6F6C2E7374617475735870696179"] {
        let (out, err) = run(env.me_cmd(&["flush", "--transport", which]), 2);
        assert_eq!(out, "");
        assert!(err.contains("play") || err.contains(which), "{err}");
    }
    let err = stderr(env.me_cmd(&["flush", "--transport", "play"]), 2);
    assert!(
        err.contains("mapispool status"),
        "says where to look: {err}"
    );
    let err = stderr(env.me_cmd(&["validate", "--transport", "play"]), 2);
    assert!(err.contains("\"play\""), "{err}");
    assert_eq!(queued(&env), ["stays"]);
}

#[test]
fn no_ui_fails_the_transport_that_needs_a_person_and_moves_the_rest() {
    let env = Env::new();
    env.open_peer_mailbox();
    env.submit(&letter("via home"), &[]);
    env.submit(&letter_from("me@work.test", "via work"), &[]);

    let report = json(env.me_cmd(&["flush", "--no-ui", "--json"]), 1);
    assert_eq!(
        report["flags"],
        json!("FLUSH_UPLOAD|FLUSH_DOWNLOAD|FLUSH_NO_UI")
    );
    let work = transport(&report, "work");
    assert_eq!(
        work["error_code"],
        json!("MAPI_E_LOGON_FAILED"),
        "{report:#}"
    );
    let error = work["error"].as_str().unwrap();
    assert!(
        error.contains("FLUSH_NO_UI") && error.contains("interactive connect_command"),
        "{error}"
    );
    let home = transport(&report, "home");
    assert_eq!(home["error"], Value::Null);
    assert_eq!(home["messages"][0]["subject"], json!("via home"));
    assert_eq!(queued(&env), ["via work"]);
    assert!(
        !env.path("work-connected").exists(),
        "no connect_command under --no-ui"
    );

    // The text report names the transport and the MAPI code.
    let out = stdout(env.me_cmd(&["flush", "--no-ui"]), 1);
    let line = out
        .lines()
        .find(|l| l.starts_with("work: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("FAILED") && line.contains("[MAPI_E_LOGON_FAILED]"),
        "{out}"
    );

    // Without --no-ui the interactive command runs and the message goes; what the command
    // prints goes to stderr, so the JSON on stdout stays whole.
    let (out, err) = run(env.me_cmd(&["flush", "--json"]), 0);
    assert!(err.contains("connecting work"), "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON alone on stdout");
    assert_eq!(transport(&report, "work")["error"], Value::Null);
    assert!(queued(&env).is_empty());
    assert!(env.path("work-connected").exists());
}

#[test]
fn a_failed_recipient_exits_1_with_a_non_delivery_report() {
    let env = Env::new();
    env.open_peer_mailbox();
    env.submit(&letter("half"), &["peer@home.test", "nobody@home.test"]);

    let out = stdout(env.me_cmd(&["flush", "--upload"]), 1);
    assert!(out.contains("1 undeliverable (report in Inbox)"), "{out}");
    assert!(
        out.contains("\"half\" to nobody@home.test: failed: 550 5.1.1"),
        "{out}"
    );
    assert!(!out.contains("peer@home.test: failed"), "{out}");

    let inbox = json(env.me_cmd(&["messages", "--json"]), 0);
    assert_eq!(column(&inbox, "PR_SUBJECT"), ["Undeliverable: half"]);
    assert_eq!(column(&inbox, "PR_SENDER_NAME"), ["Mail Delivery System"]);
    let ndr = inbox["rows"][0]["PR_ENTRYID"].as_str().unwrap();
    let raw = stdout(env.me_cmd(&["show", ndr]), 0);
    assert!(raw.contains("nobody@home.test"), "{raw}");
    assert!(!queued(&env).contains(&"half".to_string()));

    // The recipient that exists got it.
    env.peer_cmd(&["flush", "--download"]).assert().success();
    assert_eq!(subjects(&env, &env.peer(), "inbox"), ["half"]);
}

#[test]
fn messages_refuses_an_unknown_folder() {
    let env = Env::new();
    let (out, err) = run(env.me_cmd(&["messages", "--folder", "spam"]), 2);
    assert_eq!(out, "");
    assert!(
        err.contains("\"spam\"") && err.contains("inbox, outbox, sent or deleted"),
        "{err}"
    );
}

#[test]
fn validate_reports_every_status_row() {
    let env = Env::new();
    let out = stdout(env.me_cmd(&["validate"]), 0);
    for want in ["MAPI Spooler", "home", "work", "AVAILABLE"] {
        assert!(out.contains(want), "no {want:?} in {out}");
    }
    let report = json(env.me_cmd(&["validate", "--json"]), 0);
    let table = &report["status"];
    assert_eq!(
        column(table, "PR_DISPLAY_NAME"),
        [
            "MAPI Subsystem",
            "MAPI Spooler",
            "Personal Folders",
            "home",
            "work"
        ]
    );
    json(
        env.me_cmd(&["validate", "--transport", "home", "--json"]),
        0,
    );
    // Logging on made the mailboxes other profiles deliver to.
    assert!(env.post_office().join("me@work.test").join("new").is_dir());
}

#[test]
fn demo_delivers_a_message_with_nothing_configured() {
    let env = Env::new();
    let out = stdout(env.bare_cmd(&["demo"]), 0);
    assert!(out.contains("bob: FlushQueues(FLUSH_DOWNLOAD)"), "{out}");
    assert!(out.contains("local: received 1"), "{out}");
    let inbox = out
        .split("bob's Inbox:")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"));
    assert!(inbox.contains("Hello from mapispool"), "{out}");
    assert!(out.contains("Undeliverable: To nobody"), "{out}");

    // With --dir the profiles stay, and work with the other commands.
    let dir = env.path("demo");
    let out = stdout(env.bare_cmd(&["demo", "--dir", dir.to_str().unwrap()]), 0);
    assert!(out.contains("alice.toml"), "{out}");
    let bob = dir.join("bob.toml");
    let inbox = json(env.cmd_for(&bob, &["messages", "--json"]), 0);
    assert_eq!(column(&inbox, "PR_SUBJECT"), ["Hello from mapispool"]);
}

#[test]
fn messages_dated_1969_list_without_a_panic() {
    // Issue 13.6: a message dated before 1970 made `mapispool messages` exit 101 (humantime
    // panicked turning the FILETIME into RFC 3339).
    let env = Env::new();
    env.open_peer_mailbox();
    let old = letter("from 1969").replace(
        "Date: Mon, 7 Dec 2026 09:00:00 +0000\r\n",
        "Date: Wed, 31 Dec 1969 23:59:59 +0000\r\n",
    );
    assert!(old.contains("Date: Wed, 31 Dec 1969"), "{old}");
    env.submit(&old, &[]);
    stdout(env.me_cmd(&["flush"]), 0);
    stdout(env.peer_cmd(&["flush"]), 0);
    // The received message's PR_CLIENT_SUBMIT_TIME is its Date: header.
    let table = stdout(
        env.peer_cmd(&["messages", "--columns", "PR_SUBJECT,PR_CLIENT_SUBMIT_TIME"]),
        0,
    );
    assert!(table.contains("1969-12-31T23:59:59Z"), "{table}");
    let inbox = json(
        env.peer_cmd(&[
            "messages",
            "--columns",
            "PR_SUBJECT,PR_CLIENT_SUBMIT_TIME",
            "--json",
        ]),
        0,
    );
    assert!(
        inbox.to_string().contains("1969-12-31T23:59:59Z"),
        "{inbox:#}"
    );
}

//! `mapispool submit`, `queue`, `abort` and `show`: messages into the outgoing queue, out of it,
//! and read back.

mod common;

use common::{Env, column, is_entry_id, json, letter, run, stderr, stdout};
use serde_json::json;

/// The queue as JSON, with the given extra arguments.
fn queue(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["queue", "--json"];
    all.extend_from_slice(args);
    json(env.me_cmd(&all), 0)
}

#[test]
fn submit_from_stdin_prints_the_entry_id_and_queue_lists_it() {
    let env = Env::new();
    let id = env.submit(&letter("first x"), &[]);
    let second = env.submit(&letter("second"), &[]);
    assert_ne!(id, second);

    let table = queue(&env, &[]);
    assert_eq!(column(&table, "PR_ENTRYID"), [id.clone(), second.clone()]);
    assert_eq!(column(&table, "PR_SUBJECT"), ["first x", "second"]);
    assert_eq!(column(&table, "PR_DISPLAY_TO"), ["Peer", "Peer"]);
    assert_eq!(column(&table, "PR_MSP_QUEUE_STATE"), ["queued", "queued"]);
    assert_eq!(column(&table, "PR_MSP_ATTEMPTS"), ["0", "0"]);

    let text = stdout(env.me_cmd(&["queue"]), 0);
    assert!(text.contains(&id) && text.contains(&second), "{text}");
    assert!(
        text.contains("first x") && text.contains("queued"),
        "{text}"
    );

    let only = queue(&env, &["--where", r#"PR_SUBJECT ~= "x""#]);
    assert_eq!(column(&only, "PR_ENTRYID"), [id.as_str()]);
    let none = queue(&env, &["--where", r#"PR_SUBJECT == "nothing like it""#]);
    assert_eq!(none["rows"], json!([]));

    // The status row of the transport counts them.
    let status = json(
        env.me_cmd(&[
            "status",
            "--json",
            "--columns",
            "PR_DISPLAY_NAME,PR_MSP_QUEUED_COUNT",
            "--where",
            r#"PR_DISPLAY_NAME == "home""#,
        ]),
        0,
    );
    assert_eq!(status["rows"][0]["PR_MSP_QUEUED_COUNT"], json!(2));
}

#[test]
fn submit_from_a_file_with_json_output() {
    let env = Env::new();
    let path = env.path("letter.eml");
    std::fs::write(&path, letter("from a file")).unwrap();
    let out = json(
        env.me_cmd(&["submit", "--json", "--file", path.to_str().unwrap()]),
        0,
    );
    let id = out["entry_id"].as_str().expect("entry_id");
    assert!(is_entry_id(id), "{out}");
    assert_eq!(out["subject"], json!("from a file"));
    assert_eq!(out["transport"], json!("home"));
    assert_eq!(out["size"], json!(letter("from a file").len()));
    assert_eq!(column(&queue(&env, &[]), "PR_ENTRYID"), [id.to_string()]);

    // A file that is not there: bad input, named.
    let missing = env.path("missing.eml");
    let err = stderr(
        env.me_cmd(&["submit", "--file", missing.to_str().unwrap()]),
        2,
    );
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn recipients_come_from_arguments_or_headers_or_both() {
    let env = Env::new();
    // Arguments replace the headers as the envelope; the headers still say who is To: and
    // who Cc:, and one they do not name is blind (Bcc).
    env.submit(&letter("args"), &["peer@home.test", "b@home.test"]);
    // ... unless -t adds the headers' too.
    env.submit(&letter("args and headers"), &["-t", "a@home.test"]);
    // Without arguments the headers are used, To: and Cc: alike.
    let message = "From: me@home.test\r\nTo: x@home.test\r\nCc: Why <y@home.test>\r\nSubject: headers\r\n\r\nhi\r\n";
    env.submit(message, &[]);
    let table = queue(
        &env,
        &[
            "--columns",
            "PR_SUBJECT,PR_DISPLAY_TO,PR_DISPLAY_CC,PR_DISPLAY_BCC",
        ],
    );
    assert_eq!(
        column(&table, "PR_DISPLAY_TO"),
        ["Peer", "Peer", "x@home.test"]
    );
    assert_eq!(column(&table, "PR_DISPLAY_CC"), ["", "", "Why"]);
    assert_eq!(
        column(&table, "PR_DISPLAY_BCC"),
        ["b@home.test", "a@home.test", ""]
    );
}

#[test]
fn the_envelope_sender_chooses_the_transport() {
    let env = Env::new();
    let out = json(
        {
            let mut cmd = env.me_cmd(&["submit", "--json", "-f", "me@work.test"]);
            cmd.write_stdin(letter("from work"));
            cmd
        },
        0,
    );
    assert_eq!(out["transport"], json!("work"));
    // The From: header alone does it too.
    let out = json(
        {
            let mut cmd = env.me_cmd(&["submit", "--json"]);
            cmd.write_stdin(letter("from work").replace("me@home.test", "me@work.test"));
            cmd
        },
        0,
    );
    assert_eq!(out["transport"], json!("work"));
    // And --transport names it outright; an unknown one is bad input listing the others.
    let out = json(
        {
            let mut cmd = env.me_cmd(&["submit", "--json", "--transport", "work"]);
            cmd.write_stdin(letter("named"));
            cmd
        },
        0,
    );
    assert_eq!(out["transport"], json!("work"));
    let mut cmd = env.me_cmd(&["submit", "--transport", "play"]);
    cmd.write_stdin(letter("nowhere"));
    let err = stderr(cmd, 2);
    assert!(
        err.contains("\"play\"") && err.contains("home, work"),
        "{err}"
    );
}

#[test]
fn no_recipients_is_bad_input() {
    let env = Env::new();
    let mut cmd = env.me_cmd(&["submit"]);
    cmd.write_stdin("From: me@home.test\r\nSubject: to nobody\r\n\r\nhi\r\n");
    let (out, err) = run(cmd, 2);
    assert_eq!(out, "");
    assert!(err.contains("MAPI_E_NO_RECIPIENTS"), "{err}");
    assert_eq!(err.lines().count(), 1, "printed once: {err}");
    assert_eq!(queue(&env, &[])["rows"], json!([]));
}

#[test]
fn header_injection_in_an_address_is_refused() {
    let env = Env::new();
    for args in [
        vec!["submit", "peer@home.test\r\nBcc: evil@example.com"],
        vec!["submit", "peer@home.test\nBcc: evil@example.com"],
        vec![
            "submit",
            "-f",
            "me@home.test\r\nBcc: evil@example.com",
            "peer@home.test",
        ],
    ] {
        let mut cmd = env.me_cmd(&args);
        cmd.write_stdin(letter("injected"));
        let (out, err) = run(cmd, 2);
        assert_eq!(out, "");
        assert!(err.contains("MAPI_E_INVALID_PARAMETER"), "{err}");
    }
    assert_eq!(queue(&env, &[])["rows"], json!([]));
}

#[test]
fn a_message_without_headers_or_a_bad_time_is_bad_input() {
    let env = Env::new();
    let mut cmd = env.me_cmd(&["submit", "peer@home.test"]);
    cmd.write_stdin("");
    stderr(cmd, 2);
    let mut cmd = env.me_cmd(&["submit", "--defer-until", "tomorrow", "peer@home.test"]);
    cmd.write_stdin(letter("later"));
    let err = stderr(cmd, 2);
    assert!(
        err.contains("\"tomorrow\"") && err.contains("RFC 3339"),
        "{err}"
    );
    assert_eq!(queue(&env, &[])["rows"], json!([]));
}

/// PR_DEFERRED_DELIVERY_TIME of the only queued message.
fn deferred_until(env: &Env) -> String {
    let table = queue(env, &["--columns", "PR_DEFERRED_DELIVERY_TIME"]);
    table["rows"][0]["PR_DEFERRED_DELIVERY_TIME"]
        .as_str()
        .unwrap_or_else(|| panic!("{table}"))
        .to_string()
}

#[test]
fn defer_until_takes_a_delay_and_a_local_wall_clock_time() {
    use chrono::{Duration, Utc};
    // "+2h": two hours from the submit, to the second.
    let env = Env::new();
    let before = Utc::now();
    let mut cmd = env.me_cmd(&["submit", "--defer-until", "+2h", "peer@home.test"]);
    cmd.write_stdin(letter("in two hours"));
    stdout(cmd, 0);
    let after = Utc::now();
    let at = chrono::DateTime::parse_from_rfc3339(&deferred_until(&env)).expect("RFC 3339");
    assert!(
        at >= before + Duration::hours(2) - Duration::seconds(1)
            && at <= after + Duration::hours(2),
        "{at}"
    );

    // "tomorrow 08:00" in the caller's zone: TZ as a POSIX rule (UTC+2, no tzdata needed).
    let env = Env::new();
    let expect = || {
        let local = Utc::now() + Duration::hours(2);
        let tomorrow = local.date_naive() + Duration::days(1);
        format!("{}T06:00:00Z", tomorrow.format("%Y-%m-%d"))
    };
    let first = expect();
    let mut cmd = env.me_cmd(&[
        "submit",
        "--defer-until",
        "tomorrow 08:00",
        "peer@home.test",
    ]);
    cmd.env("TZ", "XYZ-2")
        .write_stdin(letter("tomorrow morning"));
    stdout(cmd, 0);
    let got = deferred_until(&env);
    // Either side of a local midnight that fell during the run.
    assert!(got == first || got == expect(), "{got} (expected {first})");
}

#[test]
fn abort_takes_a_message_out_of_the_queue_once() {
    let env = Env::new();
    let keep = env.submit(&letter("keep"), &[]);
    let id = env.submit(&letter("abort me"), &[]);
    let out = stdout(env.me_cmd(&["abort", &id]), 0);
    assert!(out.contains(&id), "{out}");
    assert_eq!(column(&queue(&env, &[]), "PR_ENTRYID"), [keep.as_str()]);
    // It stays in the Outbox, unsent.
    let outbox = json(env.me_cmd(&["messages", "--folder", "outbox", "--json"]), 0);
    assert!(column(&outbox, "PR_ENTRYID").contains(&id), "{outbox}");

    let (out, err) = run(env.me_cmd(&["abort", &id]), 4);
    assert_eq!(out, "");
    assert!(err.contains("MAPI_E_NOT_IN_QUEUE"), "{err}");

    let out = json(env.me_cmd(&["abort", "--json", &keep]), 0);
    assert_eq!(out, json!({ "entry_id": keep, "aborted": true }));
    assert_eq!(queue(&env, &[])["rows"], json!([]));
}

#[test]
fn a_bad_entry_id_is_bad_input() {
    let env = Env::new();
    for bad in ["zz", "00", "not hex at all", "0000000012"] {
        for command in ["abort", "show"] {
            let (out, err) = run(env.me_cmd(&[command, bad]), 2);
            assert_eq!(out, "");
            assert!(
                err.contains("MAPI_E_INVALID_ENTRYID"),
                "{command} {bad}: {err}"
            );
        }
    }
    // A status object's entry ID is an entry ID, but not a message's.
    let status = json(
        env.me_cmd(&[
            "status",
            "--json",
            "--columns",
            "PR_ENTRYID",
            "--where",
            r#"PR_DISPLAY_NAME == "home""#,
        ]),
        0,
    );
    let home = status["rows"][0]["PR_ENTRYID"].as_str().unwrap();
    let err = stderr(env.me_cmd(&["abort", home]), 2);
    assert!(err.contains("MAPI_E_INVALID_ENTRYID"), "{err}");
}

#[test]
fn show_prints_the_raw_message() {
    let env = Env::new();
    let text = letter("shown");
    let id = env.submit(&text, &[]);
    let out = env
        .me_cmd(&["show", &id])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(String::from_utf8(out).unwrap(), text);
}

#[test]
fn quiet_submit_prints_nothing_but_still_queues() {
    let env = Env::new();
    let mut cmd = env.me_cmd(&["--quiet", "submit"]);
    cmd.write_stdin(letter("quiet"));
    let (out, err) = run(cmd, 0);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    assert_eq!(column(&queue(&env, &[]), "PR_SUBJECT"), ["quiet"]);
}

#[test]
fn show_of_a_message_the_store_does_not_have_is_bad_input() {
    let env = Env::new();
    let id = env.submit(&letter("only one"), &[]);
    // The same store, another message number.
    let other = format!("{}FF", &id[..id.len() - 2]);
    assert_ne!(other, id);
    let (out, err) = run(env.me_cmd(&["show", &other]), 2);
    assert_eq!(out, "");
    assert!(err.contains("MAPI_E_NOT_FOUND"), "{err}");
}

/// Runs `mapispool --profile <me> args` under strace (fsyncs and thread starts, with file
/// names), `stdin` on its standard input; its output and the trace.
fn traced(env: &Env, args: &[&str], stdin: &str) -> (String, String) {
    let trace = env.path("cmd.strace");
    let mut cmd = env.sandbox.command("strace");
    cmd.args([
        "-f",
        "-qq",
        "-y",
        "-e",
        "trace=fsync,fdatasync,clone,clone3",
        "-o",
    ])
    .arg(&trace)
    .arg(common::sandbox::BIN)
    .arg("--profile")
    .arg(env.me())
    .args(args);
    let out = assert_cmd::Command::from_std(cmd)
        .write_stdin(stdin.to_owned())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = std::fs::read_to_string(&trace).expect("the trace");
    (String::from_utf8_lossy(&out).into_owned(), text)
}

fn fsyncs(trace: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .count()
}

fn strace_missing() -> bool {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        common::ci::cannot_run("strace is not installed (apt-get install strace)");
        return true;
    }
    false
}

/// The first submit into a new store: its schema is one commit that the message's own commit
/// makes durable (it was one fsync per migration and bookkeeping row, 18 in all). What is left
/// (counted with strace): SQLite's switch of the new file to WAL, a rollback-journal
/// transaction (journal, directory, journal, database: 4), the new WAL's header and its
/// directory (2), the message's commit (1). The commands that only read then cost no fsync and
/// register no spooler node.
#[test]
fn a_first_submit_is_seven_fsyncs_and_reading_commands_write_nothing() {
    if strace_missing() {
        return;
    }
    let env = Env::new();
    let (out, text) = traced(&env, &["submit"], &letter("first"));
    assert!(is_entry_id(out.trim()));
    assert_eq!(fsyncs(&text), 7, "fsyncs of a first submit:\n{text}");
    let id = out.trim().to_owned();
    for args in [
        &["status"][..],
        &["queue"],
        &["messages", "--folder", "outbox"],
        &["show", &id],
        &["status", "--cluster"],
    ] {
        let (_, text) = traced(&env, args, "");
        assert_eq!(fsyncs(&text), 0, "fsyncs of {args:?}:\n{text}");
    }
    let view = json(env.me_cmd(&["status", "--cluster", "--json"]), 0);
    let nodes: Vec<&serde_json::Value> = view["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["PR_MSP_NODE_STATE"] != json!("queue"))
        .collect();
    assert!(
        nodes.is_empty(),
        "reading commands registered nodes: {nodes:?}"
    );
    assert_eq!(column(&queue(&env, &[]), "PR_SUBJECT"), ["first"]);
}

/// A submit into a store in use costs one fsync, its commit's (counted with strace, not
/// timed): SQLite's directory sync for a WAL it might have created is not repeated in every
/// process (the store's VFS opens an existing WAL as it is), and no blocking-pool thread or
/// second connection is started for it.
#[test]
fn a_submit_into_a_store_in_use_is_one_fsync() {
    if strace_missing() {
        return;
    }
    let env = Env::new();
    // The store, its WAL and its schema exist (the first open creates and syncs them).
    env.submit(&letter("first"), &[]);
    env.submit(&letter("second"), &[]);
    let (out, text) = traced(&env, &["submit"], &letter("traced"));
    assert!(is_entry_id(out.trim()));
    assert_eq!(fsyncs(&text), 1, "fsyncs of one submit:\n{text}");
    // The one other thread is the SQLite connection's (sqlx runs each on its own).
    let threads = text
        .lines()
        .filter(|l| l.contains("clone(") || l.contains("clone3("))
        .count();
    assert_eq!(threads, 1, "threads started by one submit:\n{text}");
    let table = queue(&env, &[]);
    assert_eq!(column(&table, "PR_SUBJECT"), ["first", "second", "traced"]);
}

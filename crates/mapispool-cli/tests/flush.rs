//! `mapispool flush` says what it did not do (issue 19.4): messages left waiting on their own
//! retry clock are counted with their next attempt and last error, and the exit code is 1, as
//! the README's exit codes say.

#[path = "../../mapispool/tests/peers/fake_smtp.rs"]
mod fake_smtp;

mod common;

use std::sync::Arc;

use common::sandbox::{Sandbox, all_output, run_with_stdin};
use fake_smtp::{FakeSmtp, Knobs};

#[test]
fn a_flush_that_leaves_messages_waiting_says_so_and_exits_1() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(FakeSmtp::start(Knobs {
        rcpt: Arc::new(|_| "451 4.3.0 mailbox busy, try later".into()),
        ..Knobs::default()
    }));
    let env = Sandbox::new();
    let alice = env.write_profile(
        "alice",
        &format!(
            "[spooler]\ntimeout = \"10s\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            server.port
        ),
    );
    let out = run_with_stdin(
        env.cli(&alice).arg("submit"),
        b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: busy\r\n\r\nHello.\r\n",
    );
    assert!(out.status.success(), "{}", all_output(&out));

    // The server defers the recipient: the message waits for its retry.
    let first = env.run(&alice, &["flush", "--upload"]);
    assert_eq!(first.status.code(), Some(1), "{}", all_output(&first));
    assert_eq!(server.received().len(), 0);

    // A plain flush does not try it before its time, and says so instead of "sent 0".
    let second = env.run(&alice, &["flush", "--upload"]);
    let said = all_output(&second);
    assert_eq!(second.status.code(), Some(1), "{said}");
    let line = said
        .lines()
        .find(|l| l.starts_with("smtp: 1 deferred until "))
        .unwrap_or_else(|| panic!("no waiting line: {said}"));
    let expected_tail = format!(
        " (last error: SMTP server 127.0.0.1:{} said: 451 4.3.0 mailbox busy, try later); \
         `mapispool flush --force` tries now",
        server.port
    );
    let until = line
        .strip_prefix("smtp: 1 deferred until ")
        .and_then(|rest| rest.strip_suffix(expected_tail.as_str()))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        until.len() >= 20 && until.as_bytes()[10] == b'T' && until.ends_with('Z'),
        "an RFC 3339 time: {until}"
    );

    let json = env.run(&alice, &["flush", "--upload", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["still_waiting"][0]["transport"], "smtp", "{json}");
    assert_eq!(json["still_waiting"][0]["count"], 1, "{json}");

    // --force tries it now.
    let forced = env.run(&alice, &["flush", "--upload", "--force"]);
    assert_eq!(forced.status.code(), Some(1), "{}", all_output(&forced));
    assert!(
        server
            .commands()
            .iter()
            .filter(|c| c.starts_with("RCPT"))
            .count()
            >= 2,
        "the forced flush reached the server: {:?}",
        server.commands()
    );
}

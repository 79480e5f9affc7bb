//! Security with the real binary (issue 6): a password never shows in any output of a full run,
//! even at `-vv` and when the server refuses it; CR/LF in the envelope or a bare CR in a header
//! is refused with a clear error and exit 2, and nothing is queued.
//!
//! The socket refusing other users: `crates/mapispool-cli/tests/daemon.rs`. TLS, AUTH in clear
//! and hostile replies: `crates/mapispool/tests/security.rs`.

#[path = "../../mapispool/tests/peers/fake_smtp.rs"]
mod fake_smtp;

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::sandbox::{Sandbox, all_output as both, run_with_stdin};
use fake_smtp::{FakeSmtp, Knobs};

const PASSWORD: &str = "S3cretPassw0rd";

fn profile(env: &Sandbox, port: u16) -> PathBuf {
    let path = env.path("alice.toml");
    let text = format!(
        r#"[store]
path = "alice.db"

[spooler]
retry_initial = "1s"
timeout = "10s"

[[transport]]
name = "smtp"
address = "alice@example.com"
[transport.outbound]
kind = "smtp"
host = "127.0.0.1"
port = {port}
security = "none"
username = "alice"
password_command = "echo {PASSWORD}"
"#
    );
    std::fs::write(&path, text).expect("write the profile");
    path
}

fn run(env: &Sandbox, profile: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(env.cli(profile).args(args), stdin)
}

/// Every log line there is, from every crate (`RUST_LOG=trace`), on top of `-vv`.
fn run_traced(env: &Sandbox, profile: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(env.cli(profile).env("RUST_LOG", "trace").args(args), stdin)
}

/// The AUTH PLAIN string a leak on the wire log would show, base64 of `\0alice\0password`.
fn plain_b64() -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("\0alice\0{PASSWORD}");
    let mut out = String::new();
    for c in input.as_bytes().chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

#[test]
fn the_password_appears_in_no_output_of_a_full_run() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(FakeSmtp::start(Knobs {
        // Another password: every AUTH is answered 535.
        auth: Some(("alice".into(), "not-the-one".into())),
        ..Knobs::default()
    }));
    let env = Sandbox::new();
    let profile = profile(&env, server.port);
    let message = b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: secret test\r\n\r\nHello.\r\n";
    let b64 = plain_b64();

    let runs: Vec<(&str, Output)> = vec![
        (
            "submit",
            run_traced(&env, &profile, &["submit", "-vv"], message),
        ),
        (
            "validate",
            run_traced(&env, &profile, &["validate", "-vv"], b""),
        ),
        (
            "flush -vv",
            run_traced(&env, &profile, &["flush", "-vv"], b""),
        ),
        (
            "flush --json",
            run_traced(&env, &profile, &["flush", "--json", "-vv"], b""),
        ),
        (
            "status --json",
            run_traced(&env, &profile, &["status", "--json"], b""),
        ),
        (
            "status",
            run_traced(&env, &profile, &["status", "-vv"], b""),
        ),
        (
            "queue --json",
            run_traced(&env, &profile, &["queue", "--json"], b""),
        ),
        (
            "messages --json",
            run(
                &env,
                &profile,
                &["messages", "--folder", "outbox", "--json"],
                b"",
            ),
        ),
    ];
    let mut saw_refusal = false;
    for (what, out) in &runs {
        let text = both(out);
        assert!(
            !text.contains(PASSWORD) && !text.contains(&b64),
            "`{what}` shows the password:\n{text}"
        );
        saw_refusal |= text.contains("535");
    }
    // The runs did reach the point where the password was used and refused.
    assert!(
        server.commands().iter().any(|c| c.starts_with("AUTH")),
        "{:?}",
        server.commands()
    );
    assert!(saw_refusal, "the server's 535 is reported somewhere");
    assert!(runs[0].1.status.success(), "submit: {}", both(&runs[0].1));
    // Nor does the store file hold it.
    for entry in std::fs::read_dir(env.dir.path()).expect("dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("alice.db") {
            let bytes = std::fs::read(entry.path()).expect("read the store");
            assert!(
                !bytes
                    .windows(PASSWORD.len())
                    .any(|w| w == PASSWORD.as_bytes()),
                "{} holds the password",
                entry.path().display()
            );
        }
    }
}

#[test]
fn injection_in_the_envelope_and_headers_is_refused_with_exit_2() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(FakeSmtp::start(Knobs::default()));
    let env = Sandbox::new();
    let profile = profile(&env, server.port);
    let ok = b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: hi\r\n\r\nHello.\r\n";

    let cases: Vec<(Vec<&str>, &[u8], &str)> = vec![
        (
            vec!["submit", "bob@example.org\r\nRCPT TO:<evil@example.com>"],
            ok,
            "recipient",
        ),
        (vec!["submit", "bob@example.org\nDATA"], ok, "recipient"),
        (
            vec!["submit", "-f", "alice@example.com\r\nRSET", "bob@example.org"],
            ok,
            "sender",
        ),
        (
            vec!["submit"],
            b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: hi\r.\rMAIL FROM:<evil@example.com>\r\n\r\nHello.\r\n",
            "bare CR",
        ),
        (
            vec!["submit"],
            b"From: <alice@example.com>\r\nTo: <bob@example.org>\rRCPT TO:<evil@example.com>\r\n\r\nHello.\r\n",
            "bare CR",
        ),
    ];
    for (args, stdin, expect) in cases {
        let out = run(&env, &profile, &args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains("MAPI_E_"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(env.queue_len(&profile), 0, "nothing queued");
    let out = run(&env, &profile, &["flush"], b"");
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        server.commands().iter().all(|c| !c.contains("evil")),
        "{:?}",
        server.commands()
    );

    // A folded Subject is fine.
    let out = run(
        &env,
        &profile,
        &["submit"],
        b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: a long\r\n folded subject\r\n\r\nHello.\r\n",
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(env.queue_len(&profile), 1);
}

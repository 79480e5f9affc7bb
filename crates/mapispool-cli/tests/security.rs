//! Security with the real binary (issue 6): a password never shows in any output of a full run,
//! even at `-vv` and when the server refuses it; CR/LF in the envelope or a bare CR in a header
//! is refused with a clear error and exit 2, and nothing is queued.
//!
//! The socket refusing other users: `crates/mapispool-cli/tests/daemon.rs`. TLS, AUTH in clear
//! and hostile replies: `crates/mapispool/tests/security.rs`.

#[path = "../../mapispool/tests/peers/fake_smtp.rs"]
mod fake_smtp;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fake_smtp::{FakeSmtp, Knobs};

const BIN: &str = env!("CARGO_BIN_EXE_mapispool");
const PASSWORD: &str = "S3cretPassw0rd";

fn profile(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("alice.toml");
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

fn run(dir: &Path, profile: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_with(dir, profile, args, stdin, None)
}

/// Every log line there is, from every crate (`RUST_LOG=trace`), on top of `-vv`.
fn run_traced(dir: &Path, profile: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_with(dir, profile, args, stdin, Some("trace"))
}

fn run_with(dir: &Path, profile: &Path, args: &[&str], stdin: &[u8], log: Option<&str>) -> Output {
    let mut command = Command::new(BIN);
    command.env_remove("RUST_LOG");
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    let mut child = command
        .arg("--profile")
        .arg(profile)
        .args(args)
        .env_remove("MAPISPOOL_PROFILE")
        .env("XDG_RUNTIME_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mapispool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("mapispool output")
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = profile(dir.path(), server.port);
    let message = b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: secret test\r\n\r\nHello.\r\n";
    let b64 = plain_b64();

    let runs: Vec<(&str, Output)> = vec![
        (
            "submit",
            run_traced(dir.path(), &profile, &["submit", "-vv"], message),
        ),
        (
            "validate",
            run_traced(dir.path(), &profile, &["validate", "-vv"], b""),
        ),
        (
            "flush -vv",
            run_traced(dir.path(), &profile, &["flush", "-vv"], b""),
        ),
        (
            "flush --json",
            run_traced(dir.path(), &profile, &["flush", "--json", "-vv"], b""),
        ),
        (
            "status --json",
            run_traced(dir.path(), &profile, &["status", "--json"], b""),
        ),
        (
            "status",
            run_traced(dir.path(), &profile, &["status", "-vv"], b""),
        ),
        (
            "queue --json",
            run_traced(dir.path(), &profile, &["queue", "--json"], b""),
        ),
        (
            "messages --json",
            run(
                dir.path(),
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
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
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

fn queue_len(dir: &Path, profile: &Path) -> usize {
    let out = run(dir, profile, &["queue", "--json"], b"");
    assert!(out.status.success(), "{}", both(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("queue JSON");
    v["rows"].as_array().map(Vec::len).expect("queue rows")
}

#[test]
fn injection_in_the_envelope_and_headers_is_refused_with_exit_2() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(FakeSmtp::start(Knobs::default()));
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = profile(dir.path(), server.port);
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
        let out = run(dir.path(), &profile, &args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains("MAPI_E_"),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(queue_len(dir.path(), &profile), 0, "nothing queued");
    let out = run(dir.path(), &profile, &["flush"], b"");
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        server.commands().iter().all(|c| !c.contains("evil")),
        "{:?}",
        server.commands()
    );

    // A folded Subject is fine.
    let out = run(
        dir.path(),
        &profile,
        &["submit"],
        b"From: <alice@example.com>\r\nTo: <bob@example.org>\r\nSubject: a long\r\n folded subject\r\n\r\nHello.\r\n",
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(queue_len(dir.path(), &profile), 1);
}

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
allow_plaintext_auth = true
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

/// `cmd` with umask 022 in the child, the common default that made the store 0644 and the
/// post office 0755 before issue 19.
fn with_umask_022(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: umask(2) is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        })
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Private files (issue 19): under umask 022 the store, its WAL and SHM, the daemon's lock and
/// a delivered message are 0600 and every post-office directory 0700; `validate` names looser
/// existing ones with the fix.
#[test]
fn mail_files_are_private_whatever_the_umask() {
    let env = Sandbox::new();
    let alice = env.write_dir_profile("alice", "local", "alice@localhost");
    let bob = env.write_dir_profile("bob", "local", "bob@localhost");
    let out = with_umask_022(env.cli(&bob).arg("validate"))
        .output()
        .expect("validate runs");
    assert!(out.status.success(), "{}", both(&out));

    let daemon = env.start_daemon_with(&alice, |cmd| {
        with_umask_022(cmd);
    });
    let submitted = with_umask_022(env.cli(&alice).arg("submit"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(
                b"From: alice@localhost\r\nTo: bob@localhost\r\nSubject: s\r\n\r\nhi\r\n",
            )?;
            child.wait_with_output()
        })
        .expect("submit runs");
    assert!(submitted.status.success(), "{}", both(&submitted));
    let flushed = with_umask_022(env.cli(&alice).args(["flush", "--upload"]))
        .output()
        .expect("flush runs");
    assert!(flushed.status.success(), "{}", both(&flushed));
    assert_eq!(env.delivered("bob@localhost"), 1);

    // While the daemon has the store open, its WAL and SHM exist.
    let db = env.path("alice.db");
    for file in ["alice.db", "alice.db-wal", "alice.db-shm", "alice.db.lock"] {
        assert_eq!(mode(&env.path(file)), 0o600, "{file}");
    }
    let po = env.post_office();
    let mailbox = env.mailbox("bob@localhost");
    for dir in [
        po.clone(),
        po.join("tmp"),
        mailbox.parent().expect("mailbox").to_path_buf(),
        mailbox.clone(),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let delivered = std::fs::read_dir(&mailbox)
        .expect("mailbox")
        .next()
        .expect("one message")
        .expect("entry")
        .path();
    assert_eq!(mode(&delivered), 0o600, "the delivered message");
    daemon.stop();

    // Looser existing files are named, with the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&po, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = env.run(&alice, &["validate"]);
    let said = both(&out);
    assert!(
        said.contains(&format!(
            "warning: {} is 644: other users can read it; run `chmod 600 {}`",
            db.display(),
            db.display()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "warning: {} is 755: other users can read the mail in it; run `chmod 700 {}`",
            po.display(),
            po.display()
        )),
        "{said}"
    );
    // The first validate reopened the store, and SQLite gave the new WAL and SHM the
    // database file's 0644: they are named too.
    let json = env.run(&alice, &["validate", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let named: Vec<String> = json["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str()?.split(' ').next().map(String::from))
        .collect();
    let expected: Vec<String> = ["alice.db", "alice.db-wal", "alice.db-shm", "po"]
        .iter()
        .map(|f| env.path(f).display().to_string())
        .collect();
    assert_eq!(named, expected, "{json}");
}

/// No password in clear (issue 19): `security = "none"` with a login is refused at load unless
/// the part says `allow_plaintext_auth = true`, and `validate` warns while it does.
#[test]
fn a_password_in_clear_is_refused_unless_allowed_and_then_warned_about() {
    let env = Sandbox::new();
    // A port nobody listens on: neither command needs the server.
    let allowed = profile(&env, 9);
    let out = env.run(&allowed, &["validate"]);
    assert!(
        both(&out).contains(
            "warning: transport \"smtp\" (outbound) logs in to 127.0.0.1:9 without TLS \
             (allow_plaintext_auth = true)"
        ),
        "{}",
        both(&out)
    );
    let text = std::fs::read_to_string(&allowed).expect("profile");
    std::fs::write(&allowed, text.replace("allow_plaintext_auth = true\n", "")).expect("write");
    let out = env.run(&allowed, &["validate"]);
    assert!(!out.status.success(), "refused at load");
    assert!(
        both(&out).contains(
            "security = \"none\" in [transport.outbound] with a username or password would send \
             the password in clear"
        ),
        "{}",
        both(&out)
    );
    assert!(!both(&out).contains(PASSWORD), "{}", both(&out));
}

//! `mapispool flush` of every transport leaves an offline one out, as Outlook's "Send/Receive
//! All" leaves out an account that works offline: the others move, the offline one's mail
//! stays queued, the report says it was skipped and why, and the exit status is success.
//! Flushing it by name still fails (exit 1) and says how to bring it online.

use std::path::Path;
use std::process::{Command, Output};

fn mapispool(runtime: &Path, profile: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mapispool"))
        .env("XDG_RUNTIME_DIR", runtime)
        .env("NO_COLOR", "1")
        .arg("--profile")
        .arg(profile)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mapispool runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("mapispool ends")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn flush_of_every_transport_skips_the_offline_one_and_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = dir.path().join("rt");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    let po = dir.path().join("po");
    let transport = |name: &str, address: &str| {
        format!(
            "[[transport]]\nname = \"{name}\"\naddress = \"{address}\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n\n",
            po = po.display()
        )
    };
    // Bob's mailbox in the post office (a Maildir's `new`).
    std::fs::create_dir_all(po.join("bob@localhost").join("new")).expect("mailbox");
    let profile = dir.path().join("alice.toml");
    std::fs::write(
        &profile,
        format!(
            "[store]\npath = \"{}\"\n\n{}{}",
            dir.path().join("alice.db").display(),
            transport("home", "alice@localhost"),
            transport("work", "alice.work@localhost")
        ),
    )
    .expect("profile");
    let run = |args: &[&str], stdin: Option<&str>| mapispool(&runtime, &profile, args, stdin);

    let out = run(&["offline", "--transport", "work"], None);
    assert!(out.status.success(), "{}", text(&out));
    for (via, subject) in [("home", "from home"), ("work", "from work")] {
        let message = format!("Subject: {subject}\r\n\r\nhello\r\n");
        let out = run(
            &["submit", "--transport", via, "bob@localhost"],
            Some(&message),
        );
        assert!(out.status.success(), "{}", text(&out));
    }

    let out = run(&["flush"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("home: sent 1")),
        "{}",
        text(&out)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("work: skipped: ") && l.contains("is offline")),
        "{}",
        text(&out)
    );
    let out = run(&["queue", "--json"], None);
    assert!(out.status.success(), "{}", text(&out));
    let queue = String::from_utf8_lossy(&out.stdout);
    assert!(queue.contains("from work"), "{queue}");
    assert!(!queue.contains("from home"), "{queue}");

    // Named, the offline transport is asked for: a failure that says how to go online.
    let out = run(&["flush", "--transport", "work"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FORCE_XP_CONNECT"),
        "{}",
        text(&out)
    );
}

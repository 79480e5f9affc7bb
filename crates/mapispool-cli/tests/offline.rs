//! `mapispool flush` of every transport leaves an offline one out, as Outlook's "Send/Receive
//! All" leaves out an account that works offline: the others move, the offline one's mail
//! stays queued, the report says it was skipped and why, and the exit status is success.
//! Flushing it by name still fails (exit 1) and says how to bring it online.

mod common;

use std::process::Output;

use common::profile::send_only_dir_transport;
use common::sandbox::{Sandbox, run_with_stdin};

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
    let env = Sandbox::new();
    let po = env.post_office();
    // Bob's mailbox in the post office (a Maildir's `new`).
    std::fs::create_dir_all(env.mailbox("bob@localhost")).expect("mailbox");
    let profile = env.write_profile(
        "alice",
        &format!(
            "{}\n{}",
            send_only_dir_transport("home", "alice@localhost", &po),
            send_only_dir_transport("work", "alice.work@localhost", &po)
        ),
    );
    let run = |args: &[&str], stdin: Option<&str>| {
        run_with_stdin(env.cli(&profile).args(args), stdin.unwrap_or("").as_bytes())
    };

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

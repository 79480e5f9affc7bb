//! `mapispool spooler`: schedules move mail without anyone flushing, and SIGTERM stops it
//! cleanly (exit 0).

mod common;

use std::path::PathBuf;

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

//! `mapispool spooler`: schedules move mail without anyone flushing, and SIGTERM stops it
//! cleanly (exit 0).

mod common;

use std::path::PathBuf;

use common::daemon::wait_until;
use common::profile::dir_transport;
use common::sandbox::{Sandbox, stderr_of};

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

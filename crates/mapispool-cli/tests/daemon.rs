//! The spooler daemon with real processes: clients of every kind at once, MAPI errors across
//! the socket, one daemon per profile, other users refused, and nothing lost to SIGTERM or
//! SIGKILL.
//!
//! One test function on purpose: it points `XDG_RUNTIME_DIR` at its own directory (where the
//! socket lives) for this whole process, which only one test may do.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{WAIT_DEADLINE, wait_exit, wait_until};
use common::profile::{dir_transport, plain_message};
use common::sandbox::{BIN, Sandbox, stderr_of as stderr};
use mapi::constants::{STATUS_OUTBOUND_ACTIVE, STATUS_OUTBOUND_FLUSH};
use mapi::tag::PR_STATUS_CODE;
use mapi::{MapiCode, PropValue};
use mapispool::{FlushFlags, Profile, Session};

/// The profile `NAME.toml`: one transport `local` (`NAME@localhost`) on the post office, and
/// `connect_command` if given.
fn write_profile(env: &Sandbox, name: &str, connect_command: Option<&str>) -> PathBuf {
    let mut transport = dir_transport("local", &format!("{name}@localhost"), &env.post_office());
    if let Some(cmd) = connect_command {
        transport.push_str(&format!(
            "[transport.connect_command]\ncommand = \"{cmd}\"\n"
        ));
    }
    env.write_profile(name, &transport)
}

/// Submits a message from alice to `to` through `profile`; the entry ID.
fn submit(env: &Sandbox, profile: &Path, to: &str, subject: &str) -> String {
    env.submit(profile, &[], &plain_message("alice@localhost", to, subject))
}

#[test]
fn the_daemon_serves_many_clients_and_loses_nothing() {
    let env = Sandbox::new();
    // SAFETY: set before this test (the only one in this binary) starts any thread that reads
    // the environment; the library finds the daemon's socket through it.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", env.runtime()) };
    let alice = write_profile(&env, "alice", None);
    let bob = write_profile(&env, "bob", None);
    assert!(
        env.run(&bob, &["validate"]).status.success(),
        "bob's mailbox"
    );

    let daemon = env.start_daemon(&alice);

    // A second daemon on the same profile refuses, naming the first.
    let second = env.run(&alice, &["spooler"]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already serves the store")
            && stderr(&second).contains(&daemon.pid().to_string()),
        "{}",
        stderr(&second)
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // A watcher: a library session through the daemon, advised on the status table.
        let profile = Profile::load(&alice).expect("profile");
        let watcher = Session::logon(profile).await.expect("logon");
        assert!(
            watcher.daemon_socket().is_some(),
            "the session talks to the daemon"
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut view = watcher.status_table();
        let sink_seen = seen.clone();
        view.advise(Arc::new(move |n: &mapi::table::TableNotification| {
            if let Some(PropValue::Long(code)) = n.row.get(PR_STATUS_CODE)
                && let Ok(mut s) = sink_seen.lock()
            {
                s.push(*code);
            }
        }));

        // A third client submits while the first flushes; everything goes out, once.
        let ids: Vec<String> = (0..3)
            .map(|i| submit(&env, &alice, "bob@localhost", &format!("m{i}")))
            .collect();
        let flush = env.run(&alice, &["flush", "--upload", "--json"]);
        assert!(flush.status.success(), "{}", stderr(&flush));
        let report: serde_json::Value = serde_json::from_slice(&flush.stdout).expect("json");
        assert_eq!(
            report["transports"][0]["messages"].as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(env.delivered("bob@localhost"), 3);

        // The watcher saw the transport's flush bits go on and off.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let codes = seen.lock().expect("lock").clone();
            let flushing = codes
                .iter()
                .any(|c| c & (STATUS_OUTBOUND_FLUSH | STATUS_OUTBOUND_ACTIVE) != 0);
            let settled = codes.last().is_some_and(|c| c & STATUS_OUTBOUND_FLUSH == 0);
            if flushing && settled {
                break;
            }
            assert!(Instant::now() < deadline, "status changes seen: {codes:x?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // MAPI errors cross the socket intact, in the library and in the CLI.
        let store_row = watcher
            .board()
            .rows()
            .into_iter()
            .find(|r| r.get(mapi::tag::PR_RESOURCE_TYPE) == Some(&PropValue::Long(33)))
            .expect("store row");
        let store_id = match store_row.get(mapi::tag::PR_ENTRYID) {
            Some(PropValue::Binary(b)) => mapi::EntryId::from_bytes(b.clone()),
            other => panic!("store entry id: {other:?}"),
        };
        let err = watcher
            .open_status(&store_id)
            .expect("open")
            .flush_queues(None, FlushFlags::UPLOAD)
            .await
            .expect_err("the store has no FlushQueues");
        assert_eq!(err.code, MapiCode::NoSupport);
        let abort = env.run(&alice, &["abort", &ids[0]]);
        assert_eq!(abort.status.code(), Some(4), "{}", stderr(&abort));
        assert!(
            stderr(&abort).contains("MAPI_E_NOT_IN_QUEUE"),
            "{}",
            stderr(&abort)
        );

        // A batch through the socket: each message answered on its own, in order; the good
        // ones queued, the bad one refused with its MAPI code.
        let good = |s: &str| {
            format!("From: <alice@localhost>\r\nTo: <bob@localhost>\r\nSubject: {s}\r\n\r\nHi.\r\n")
        };
        let (b1, b2) = (good("batch 1"), good("batch 2"));
        let nobody = "From: <alice@localhost>\r\nSubject: to no one\r\n\r\nHi.\r\n";
        let results = watcher
            .submit_batch(vec![
                (mapispool::Submission::default(), b1.as_bytes()),
                (mapispool::Submission::default(), nobody.as_bytes()),
                (mapispool::Submission::default(), b2.as_bytes()),
            ])
            .await
            .expect("batch");
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().expect("first").subject, "batch 1");
        assert_eq!(
            results[1].as_ref().expect_err("no recipients").code,
            MapiCode::NoRecipients
        );
        assert_eq!(results[2].as_ref().expect("third").subject, "batch 2");
        let queue = env.run(&alice, &["queue", "--json"]);
        let queue: serde_json::Value = serde_json::from_slice(&queue.stdout).expect("json");
        assert_eq!(queue["rows"].as_array().map(Vec::len), Some(2), "{queue}");
        let flush = env.run(&alice, &["flush", "--upload"]);
        assert!(flush.status.success(), "{}", stderr(&flush));
    });

    // Another user is refused even where the socket's mode would let them in.
    if mapispool::ipc::current_uid() == 0 {
        use std::os::unix::fs::PermissionsExt;
        let socket = env.socket(&alice);
        for p in [env.runtime(), env.runtime().join("mapispool")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(BIN)
            .env("XDG_RUNTIME_DIR", env.runtime())
            .arg("--profile")
            .arg(&alice)
            .arg("status")
            .output()
            .expect("setpriv runs");
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("MAPI_E_NO_ACCESS"),
            "{}",
            stderr(&out)
        );
    } else {
        common::ci::cannot_run("the other-user check needs setpriv as root");
    }

    // SIGTERM: a clean stop, the socket gone.
    daemon.stop();

    // SIGKILL in the middle of a flush (the transport's connect command hangs): nothing lost,
    // and after a restart the message goes out exactly once.
    // The connect command runs once the message is leased: its mark says the flush is there.
    let started = env.path("connect-started");
    let slow = write_profile(
        &env,
        "alice",
        Some(&format!("touch {}; sleep 30", started.display())),
    );
    let mut daemon = env.start_daemon(&slow);
    submit(&env, &slow, "bob@localhost", "through a crash");
    let mut flusher = env
        .cli(&slow)
        .args(["flush", "--upload"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flush starts");
    wait_until(
        "the flush to lease the message and run the connect command",
        || started.exists(),
    );
    daemon.kill();
    let client = wait_exit(&mut flusher, WAIT_DEADLINE).expect("the flush ends with the daemon");
    assert!(!client.success(), "the flush could not finish");
    // A leftover `sleep 30` of the killed daemon may still run; it holds nothing of ours.
    let fixed = write_profile(&env, "alice", None);
    let daemon = env.start_daemon(&fixed);
    let before = env.delivered("bob@localhost");
    let out = env.run(&fixed, &["flush", "--upload", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.delivered("bob@localhost"),
        before + 1,
        "delivered once after the crash"
    );
    assert_eq!(env.queue_len(&fixed), 0, "the queue is empty");
    daemon.stop();
}

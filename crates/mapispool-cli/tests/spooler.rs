//! `mapispool spooler`: schedules move mail without anyone flushing, and SIGTERM stops it
//! cleanly (exit 0).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write_profile(dir: &Path, name: &str, upload: &str) -> std::path::PathBuf {
    let po = dir.join("po");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{store}\"\n\n[spooler]\nupload_interval = \"{upload}\"\ndownload_interval = \"{upload}\"\n\n[[transport]]\nname = \"local\"\naddress = \"{name}@localhost\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n[transport.inbound]\nkind = \"dir\"\npath = \"{po}\"\n",
            store = dir.join(format!("{name}.db")).display(),
            po = po.display()
        ),
    )
    .expect("write profile");
    path
}

fn mapispool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapispool"))
}

fn mailbox_count(dir: &Path, address: &str) -> usize {
    std::fs::read_dir(dir.join("po").join(address).join("new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn schedules_send_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = write_profile(dir.path(), "alice", "1s");
    let bob = write_profile(dir.path(), "bob", "1h");
    // Bob's mailbox exists once his profile has logged on.
    let st = mapispool()
        .arg("--profile")
        .arg(&bob)
        .arg("validate")
        .output()
        .expect("validate");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    // The daemon's stderr goes to a file: a pipe nobody reads could fill up and stall it, and
    // the file is what a failure shows.
    let log_path = dir.path().join("spooler.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut daemon = mapispool()
        .arg("--profile")
        .arg(&alice)
        .arg("-v")
        .arg("spooler")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spooler starts");

    // Submitted while the spooler runs, by another process: the next scheduled flush takes it.
    std::thread::sleep(Duration::from_millis(300));
    let mut submit = mapispool()
        .arg("--profile")
        .arg(&alice)
        .arg("submit")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("submit starts");
    {
        use std::io::Write;
        let mut stdin = submit.stdin.take().expect("stdin");
        stdin
            .write_all(
                b"From: alice@localhost\r\nTo: bob@localhost\r\nSubject: scheduled\r\n\r\nhi\r\n",
            )
            .expect("write message");
    }
    assert!(submit.wait().expect("submit ends").success());

    let deadline = Instant::now() + Duration::from_secs(15);
    while mailbox_count(dir.path(), "bob@localhost") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        mailbox_count(dir.path(), "bob@localhost"),
        1,
        "the schedule delivered it"
    );

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the spooler did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");

    // The queue is empty and the message is in Sent Items.
    let out = mapispool()
        .arg("--profile")
        .arg(&alice)
        .args(["messages", "--folder", "sent", "--json"])
        .output()
        .expect("messages");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["rows"][0]["PR_SUBJECT"], "scheduled");
}

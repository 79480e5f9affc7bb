//! A transport whose password is asked on the terminal (`password_prompt = true`) cannot
//! honour FLUSH_NO_UI: `flush --no-ui` neither blocks nor prompts, says why, and the other
//! transport's mail still moves.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn no_ui_with_a_prompting_transport_neither_blocks_nor_prompts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let po = dir.path().join("po");
    let profile = dir.path().join("p.toml");
    // The SMTP server is never reached: the flush must refuse before connecting. Port 9 on
    // loopback (discard) is a stand-in nobody answers.
    std::fs::write(
        &profile,
        format!(
            "[store]\npath = \"{store}\"\n\n\
             [[transport]]\nname = \"asks\"\naddress = \"me@example.com\"\n\
             [transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = 9\nsecurity = \"none\"\nusername = \"me\"\npassword_prompt = true\n\n\
             [[transport]]\nname = \"local\"\naddress = \"me@localhost\"\n\
             [transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n\
             [transport.inbound]\nkind = \"dir\"\npath = \"{po}\"\n",
            store = dir.path().join("s.db").display(),
            po = po.display()
        ),
    )
    .expect("profile");
    let mapispool = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mapispool"));
        c.env("XDG_RUNTIME_DIR", dir.path().join("rt"))
            .arg("--profile")
            .arg(&profile);
        c
    };
    for (to, transport) in [("someone@example.com", "asks"), ("me@localhost", "local")] {
        let mut submit = mapispool()
            .args(["submit", "--transport", transport, to])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("submit");
        use std::io::Write;
        submit
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"From: me@example.com\r\nSubject: s\r\n\r\nbody\r\n")
            .expect("write");
        assert!(submit.wait().expect("wait").success());
    }

    // stdin stays open and is never written: a prompt would wait on it forever.
    let start = Instant::now();
    let mut flush = mapispool()
        .args(["flush", "--upload", "--no-ui", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flush");
    let _keep_stdin_open = flush.stdin.take();
    let status = loop {
        if let Some(status) = flush.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = flush.kill();
            panic!("flush --no-ui blocked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    flush
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let mut err = String::new();
    flush
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(status.code(), Some(1), "partly done: {err}");
    assert!(!err.contains("Password for"), "it prompted: {err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let transports = report["transports"].as_array().expect("transports");
    let asks = transports
        .iter()
        .find(|t| t["transport"] == "asks")
        .expect("asks");
    let why = asks["error"].as_str().unwrap_or_default();
    assert!(why.contains("cannot honour FLUSH_NO_UI"), "{why}");
    assert!(why.contains("password prompt"), "{why}");
    let local = transports
        .iter()
        .find(|t| t["transport"] == "local")
        .expect("local");
    assert_eq!(local["messages"][0]["outcome"], "sent", "{local}");
    assert!(local["error"].is_null());

    // The status row says it can't do without a person, and the message waits in the queue.
    let status = mapispool()
        .args([
            "status",
            "--json",
            "--columns",
            "PR_DISPLAY_NAME,PR_MSP_NEEDS_UI",
        ])
        .output()
        .expect("status");
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let asks_row = rows["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["PR_DISPLAY_NAME"] == "asks"))
        .cloned()
        .expect("row");
    assert_eq!(asks_row["PR_MSP_NEEDS_UI"], true);
    let queue = mapispool()
        .args(["queue", "--json"])
        .output()
        .expect("queue");
    let queue: serde_json::Value = serde_json::from_slice(&queue.stdout).expect("json");
    assert_eq!(
        queue["rows"].as_array().map(Vec::len),
        Some(1),
        "the prompted one waits"
    );
}

//! A transport whose password is asked on the terminal (`password_prompt = true`) cannot
//! honour FLUSH_NO_UI: `flush --no-ui` neither blocks nor prompts, says why, and the other
//! transport's mail still moves.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::daemon::wait_exit;
use common::profile::dir_transport;
use common::sandbox::Sandbox;

#[test]
fn no_ui_with_a_prompting_transport_neither_blocks_nor_prompts() {
    let env = Sandbox::new();
    // The SMTP server is never reached: the flush must refuse before connecting. Port 9 on
    // loopback (discard) is a stand-in nobody answers.
    let profile = env.write_profile(
        "p",
        &format!(
            "[[transport]]\nname = \"asks\"\naddress = \"me@example.com\"\n\
             [transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = 9\nsecurity = \"none\"\nallow_plaintext_auth = true\nusername = \"me\"\npassword_prompt = true\n\n{}",
            dir_transport("local", "me@localhost", &env.post_office())
        ),
    );
    for (to, transport) in [("someone@example.com", "asks"), ("me@localhost", "local")] {
        env.submit(
            &profile,
            &["--transport", transport, to],
            "From: me@example.com\r\nSubject: s\r\n\r\nbody\r\n",
        );
    }

    // stdin stays open and is never written: a prompt would wait on it forever.
    let mut flush = env
        .cli(&profile)
        .args(["flush", "--upload", "--no-ui", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flush");
    let _keep_stdin_open = flush.stdin.take();
    let Some(status) = wait_exit(&mut flush, Duration::from_secs(30)) else {
        let _ = flush.kill();
        panic!("flush --no-ui blocked");
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
    let status = env.run(
        &profile,
        &[
            "status",
            "--json",
            "--columns",
            "PR_DISPLAY_NAME,PR_MSP_NEEDS_UI",
        ],
    );
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let asks_row = rows["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["PR_DISPLAY_NAME"] == "asks"))
        .cloned()
        .expect("row");
    assert_eq!(asks_row["PR_MSP_NEEDS_UI"], true);
    assert_eq!(env.queue_len(&profile), 1, "the prompted one waits");
}

//! What the daemon shows: `/metrics` in the Prometheus text format (checked by Prometheus's own
//! `promtool`) on the Unix-socket API and on the web listener, counters that move with a flush,
//! and the web listener's access rules.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::ci::cannot_run;
use common::profile::{dir_transport, plain_message};
use common::sandbox::Sandbox;

/// One HTTP/1.0 exchange over `stream`: the status code, the headers (lowercase names) and the
/// body. HTTP/1.0, so the answer ends with the connection and is never chunked.
fn exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn unix_get(socket: &Path, path: &str) -> (u16, String) {
    let stream = std::os::unix::net::UnixStream::connect(socket).expect("connect to the daemon");
    let (status, _, body) = exchange(stream, "GET", path, &[], "");
    (status, body)
}

/// `promtool check metrics` on `text`: its complaints, or `None` when it is not installed
/// (which fails the test under CI).
fn promtool(text: &str) -> Option<String> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            cannot_run(&format!(
                "promtool (Debian's prometheus package) is not installed: {e}"
            ));
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        String::new()
    } else {
        format!("promtool: {:?}\n{said}", out.status)
    })
}

/// The value of the sample written exactly as `series` (name and labels), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_pass_promtool_and_count_a_flush() {
    let env = Sandbox::new();
    let alice = env.write_profile(
        "alice",
        &dir_transport("local", "alice@localhost", &env.post_office()),
    );
    let daemon = env.start_daemon(&alice);
    let socket = env.socket(&alice);

    let (status, before) = unix_get(&socket, "/metrics");
    assert_eq!(status, 200, "{before}");
    if let Some(problems) = promtool(&before) {
        assert_eq!(problems, "", "{before}");
    }
    let build = format!(
        "mapispool_build_info{{version=\"{}\",rust_version=\"1.95\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&before, &build), Some(1.0), "{before}");
    assert!(
        sample(&before, "mapispool_store_size_bytes").is_some_and(|n| n > 0.0),
        "{before}"
    );
    let sent = "mapispool_messages_sent_total{transport=\"local\"}";
    let received = "mapispool_messages_received_total{transport=\"local\"}";
    assert_eq!(sample(&before, sent), None, "nothing flushed yet: {before}");

    env.submit(
        &alice,
        &[],
        &plain_message("alice@localhost", "alice@localhost", "counted"),
    );
    let (_, queued) = unix_get(&socket, "/metrics");
    assert_eq!(
        sample(
            &queued,
            "mapispool_queue_messages{transport=\"local\",state=\"queued\"}"
        ),
        Some(1.0),
        "{queued}"
    );

    env.run_ok(&alice, &["flush"]);
    let (_, after) = unix_get(&socket, "/metrics");
    if let Some(problems) = promtool(&after) {
        assert_eq!(problems, "", "{after}");
    }
    assert_eq!(sample(&after, sent), Some(1.0), "{after}");
    assert_eq!(sample(&after, received), Some(1.0), "{after}");
    assert_eq!(
        sample(
            &after,
            "mapispool_queue_messages{transport=\"local\",state=\"queued\"}"
        ),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "mapispool_flushes_total{transport=\"local\",result=\"ok\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "mapispool_delivery_latency_seconds_count{transport=\"local\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "mapispool_flush_duration_seconds_count{transport=\"local\"}"
        ),
        Some(1.0),
        "{after}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let last = sample(
        &after,
        "mapispool_last_successful_flush_timestamp_seconds{transport=\"local\"}",
    )
    .expect("a last successful flush");
    assert!((now - last).abs() < 120.0, "{last} vs now {now}");
    daemon.stop();
}

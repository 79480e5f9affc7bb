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
    let mut request = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str("Host: localhost\r\n");
    }
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

#[path = "../../mapispool/tests/peers/local.rs"]
mod local;
use local::free_port;

fn tcp(port: u16) -> std::net::TcpStream {
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the web listener")
}

/// [`exchange`] with the web listener on `port`, as a browser addresses it (`Host` with the
/// port) unless `headers` name another host.
fn web(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let host = format!("127.0.0.1:{port}");
    let mut all = headers.to_vec();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        all.push(("Host", &host));
    }
    exchange(tcp(port), method, path, &all, body)
}

fn web_profile(env: &Sandbox, name: &str, web: &str) -> std::path::PathBuf {
    env.write_profile(
        name,
        &format!(
            "{}\n[web]\n{web}",
            dir_transport("local", &format!("{name}@localhost"), &env.post_office())
        ),
    )
}

/// The CSRF token the page carries.
fn csrf_of(page: &str) -> String {
    let (_, rest) = page
        .split_once("name=\"csrf-token\" content=\"")
        .expect("the page has a CSRF token");
    rest.split('"').next().expect("token").to_string()
}

#[test]
fn web_listener_serves_the_page_and_guards_actions() {
    let env = Sandbox::new();
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let alice = web_profile(&env, "alice", &format!("listen = \"{host}\"\n"));
    let daemon = env.start_daemon(&alice);
    let origin = format!("http://{host}");

    let (status, headers, page) = web(port, "GET", "/", &[], "");
    assert_eq!(status, 200, "{page}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/html")),
        "{headers:?}"
    );
    assert!(
        page.contains("<script src=\"/app.js\">") && !page.contains("http"),
        "assets are our own, no CDN: {page}"
    );
    let csrf = csrf_of(&page);
    assert_eq!(csrf.len(), 64, "{csrf}");
    for asset in ["/app.js", "/app.css"] {
        let (status, _, body) = web(port, "GET", asset, &[], "");
        assert_eq!(status, 200, "{asset}");
        assert!(
            !body.contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }

    // /metrics on the web listener too, as promtool reads it.
    let (status, _, metrics) = web(port, "GET", "/metrics", &[], "");
    assert_eq!(status, 200, "{metrics}");
    if let Some(problems) = promtool(&metrics) {
        assert_eq!(problems, "", "{metrics}");
    }

    // A page on another site, through a DNS name rebound to 127.0.0.1: refused.
    let (status, _, body) = web(
        port,
        "GET",
        "/v1/status",
        &[("Host", &format!("rebound.example:{port}"))],
        "",
    );
    assert_eq!(status, 403, "{body}");

    // A GET never acts: an action route answers 405, and nothing was flushed.
    env.submit(
        &alice,
        &[],
        &plain_message("alice@localhost", "alice@localhost", "held"),
    );
    let (status, _, body) = web(port, "GET", "/v1/flush", &[], "");
    assert_eq!(status, 405, "{body}");
    assert_eq!(env.queue_len(&alice), 1, "a GET flushed nothing");

    let (_, _, state) = web(port, "GET", "/web/state", &[], "");
    let state: serde_json::Value = serde_json::from_str(&state).expect("state is JSON");
    let spooler = state["status"]
        .as_array()
        .expect("status rows")
        .iter()
        .find(|r| r["PR_RESOURCE_TYPE_text"] == "MAPI_SPOOLER")
        .expect("a spooler row")["PR_ENTRYID"]
        .as_str()
        .expect("its entry ID")
        .to_string();
    assert_eq!(state["queue"][0]["PR_SUBJECT"], "held", "{state}");
    assert_eq!(state["queue"][0]["PR_MSP_QUEUE_STATE"], "queued", "{state}");
    let flush = format!("{{\"on\":\"{spooler}\",\"target\":null,\"flags\":6}}");
    let json = ("Content-Type", "application/json");

    // Another origin: 403, with or without the CSRF token.
    for extra in [vec![], vec![("x-csrf-token", csrf.as_str())]] {
        let mut headers = vec![json, ("Origin", "http://evil.example")];
        headers.extend(extra);
        let (status, _, body) = web(port, "POST", "/v1/flush", &headers, &flush);
        assert_eq!(status, 403, "{body}");
    }
    // Our origin without the CSRF token, or a wrong one: 403.
    for token in [None, Some("0".repeat(64))] {
        let mut headers = vec![json, ("Origin", origin.as_str())];
        if let Some(t) = &token {
            headers.push(("x-csrf-token", t));
        }
        let (status, _, body) = web(port, "POST", "/v1/flush", &headers, &flush);
        assert_eq!(status, 403, "{body}");
    }
    assert_eq!(env.queue_len(&alice), 1, "no refused action flushed");

    // The page's own action goes through.
    let (status, _, body) = web(
        port,
        "POST",
        "/v1/flush",
        &[json, ("Origin", &origin), ("x-csrf-token", &csrf)],
        &flush,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(env.queue_len(&alice), 0, "the flush sent it");
    let (_, _, state) = web(port, "GET", "/web/state", &[], "");
    let state: serde_json::Value = serde_json::from_str(&state).expect("state is JSON");
    assert_eq!(state["inbox"][0]["PR_SUBJECT"], "held", "{state}");
    assert_eq!(state["flushes"][0]["transport"], "local", "{state}");
    assert_eq!(state["flushes"][0]["sent"], 1, "{state}");
    assert_eq!(state["flushes"][0]["received"], 1, "{state}");
    // The chart's hour: this minute has the one sent and the one received.
    assert_eq!(state["hour"][0]["transport"], "local", "{state}");
    let minutes = state["hour"][0]["minutes"].as_array().expect("minutes");
    let total = |key: &str| {
        minutes
            .iter()
            .map(|m| m[key].as_u64().expect("a count"))
            .sum::<u64>()
    };
    assert_eq!((total("sent"), total("received")), (1, 1), "{state}");
    daemon.stop();
}

#[test]
fn web_events_follow_the_status_table() {
    let env = Sandbox::new();
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let alice = web_profile(&env, "alice", &format!("listen = \"{host}\"\n"));
    let daemon = env.start_daemon(&alice);

    let mut events = tcp(port);
    // A backstop against a hang, not a verdict: the event comes as soon as the flush starts.
    events
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    events
        .write_all(format!("GET /web/events HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .expect("subscribe");
    let mut reader = std::io::BufReader::new(events);
    let mut line = String::new();
    // The head: the stream is server-sent events.
    let mut head = String::new();
    loop {
        line.clear();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("head");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    env.run_ok(&alice, &["flush"]);
    let mut seen = String::new();
    let row = loop {
        line.clear();
        let n = std::io::BufRead::read_line(&mut reader, &mut line).expect("an event");
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&line);
        if let Some(data) = line.trim().strip_prefix("data: ") {
            let event: serde_json::Value = serde_json::from_str(data).expect("JSON data");
            if event["row"]["PR_RESOURCE_TYPE_text"] == "MAPI_SPOOLER"
                && event["row"]["PR_STATUS_CODE_text"]
                    .as_str()
                    .is_some_and(|bits| bits.contains("OUTBOUND_FLUSH"))
            {
                break event;
            }
        }
    };
    assert!(seen.contains("event: row\n"), "{seen}");
    assert_eq!(row["row"]["PR_STATUS_STRING"], "Flushing", "{row}");
    daemon.stop();
}

#[test]
fn web_token_is_required_and_kept_private() {
    use std::os::unix::fs::PermissionsExt;
    let env = Sandbox::new();
    let port = free_port();
    let token_file = env.path("web.token");
    let token = "s3cret-token-for-the-test-0123456789";
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("mode");
    let alice = web_profile(
        &env,
        "alice",
        &format!(
            "listen = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    );
    // Readable by others: the daemon refuses to start, and says what to do.
    let out = env.run(&alice, &["spooler"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("chmod 600"), "{said}");

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("mode");
    let daemon = env.start_daemon(&alice);
    let (status, headers, body) = web(port, "GET", "/", &[], "");
    assert_eq!(status, 401, "{body}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v == "Bearer")
    );
    let (status, _, _) = web(port, "GET", "/metrics", &[], "");
    assert_eq!(status, 401);
    let (status, _, _) = web(
        port,
        "GET",
        "/v1/status",
        &[("Authorization", "Bearer wrong")],
        "",
    );
    assert_eq!(status, 401);
    let bearer = format!("Bearer {token}");
    let (status, _, body) = web(port, "GET", "/v1/status", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200, "{body}");
    // A browser comes in once with the token in the address; it moves into a cookie.
    let (status, headers, _) = web(port, "GET", &format!("/?token={token}"), &[], "");
    assert_eq!(status, 303);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .expect("a cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let (status, _, page) = web(port, "GET", "/", &[("Cookie", &pair)], "");
    assert_eq!(status, 200, "{page}");
    daemon.stop();

    // Reachable from elsewhere without a token: the profile is refused.
    let open = web_profile(&env, "open", &format!("listen = \"0.0.0.0:{port}\"\n"));
    let out = env.run(&open, &["spooler"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("token_file"), "{said}");
}

/// A scripted SMTP server on loopback: RCPT to `temp@...` gets 451, to `bad@...` 550, others
/// 250; every message is accepted. Serves connections until the test ends.
fn scripted_smtp() -> u16 {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut out = conn.try_clone().expect("clone");
                let mut lines = std::io::BufReader::new(conn);
                let mut say = |text: &str| out.write_all(text.as_bytes()).is_ok();
                if !say("220 fake ESMTP\r\n") {
                    return;
                }
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply = if upper.starts_with("EHLO") {
                        "250-fake\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT") && upper.contains("<TEMP@") {
                        "451 4.3.0 try again later\r\n"
                    } else if upper.starts_with("RCPT") && upper.contains("<BAD@") {
                        "550 5.1.1 no such user\r\n"
                    } else if upper.starts_with("DATA") {
                        if !say("354 go ahead\r\n") {
                            return;
                        }
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        "250 2.0.0 queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = say("221 bye\r\n");
                        return;
                    } else {
                        "250 ok\r\n"
                    };
                    if !say(reply) {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn metrics_count_smtp_replies_and_cover_the_grafana_dashboard() {
    let env = Sandbox::new();
    let smtp = scripted_smtp();
    let alice = env.write_profile(
        "alice",
        &format!(
            "[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp}\nsecurity = \"none\"\n[transport.inbound]\nkind = \"dir\"\npath = \"{}\"\n",
            env.post_office().display()
        ),
    );
    let daemon = env.start_daemon(&alice);
    let socket = env.socket(&alice);
    env.submit(
        &alice,
        &[],
        "From: alice@example.com\r\nTo: good@example.com, temp@example.com, bad@example.com\r\nSubject: three fates\r\n\r\nHello.\r\n",
    );
    // One recipient waits for a retry, so the flush reports the message as not complete.
    let out = env.run(&alice, &["flush"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (_, text) = unix_get(&socket, "/metrics");
    if let Some(problems) = promtool(&text) {
        assert_eq!(problems, "", "{text}");
    }
    for (series, want) in [
        (
            "mapispool_smtp_replies_total{transport=\"smtp\",class=\"2xx\"}",
            1.0,
        ),
        (
            "mapispool_smtp_replies_total{transport=\"smtp\",class=\"4xx\"}",
            1.0,
        ),
        (
            "mapispool_smtp_replies_total{transport=\"smtp\",class=\"5xx\"}",
            1.0,
        ),
        ("mapispool_messages_deferred_total{transport=\"smtp\"}", 1.0),
        ("mapispool_messages_bounced_total{transport=\"smtp\"}", 1.0),
        ("mapispool_messages_sent_total{transport=\"smtp\"}", 0.0),
        (
            "mapispool_queue_messages{transport=\"smtp\",state=\"deferred\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series}:\n{text}");
    }

    // Every metric the Grafana dashboard queries is one the daemon serves.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contrib/grafana-dashboard.json"
        ))
        .expect("contrib/grafana-dashboard.json"),
    )
    .expect("the dashboard is JSON");
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("mapispool_") {
                    queried += 1;
                    // The latency histogram is served once something was delivered: the
                    // first test above sees it.
                    if word.starts_with("mapispool_delivery_latency") {
                        continue;
                    }
                    assert!(
                        served.contains(word),
                        "the dashboard queries {word}:\n{text}"
                    );
                }
            }
        }
    }
    assert!(queried >= 10, "{queried}");
    daemon.stop();
}

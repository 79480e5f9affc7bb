//! The status page in a real browser: headless Chromium (Debian's package) loads it from a
//! running daemon, a message is submitted and the page's own "Send/Receive" button flushes it,
//! and the rows change without a reload. Driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in NUL on fds 3 and 4), which needs no
//! WebSocket client. The test saves a screenshot in the sandbox, and also at
//! `$MAPISPOOL_SCREENSHOT` when set (how docs/status-page.png is made).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::ci::cannot_run;
use common::profile::{dir_transport, plain_message};
use common::sandbox::Sandbox;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A browser on the other end of a DevTools pipe.
struct Browser {
    child: Child,
    to: std::io::PipeWriter,
    from: BufReader<std::io::PipeReader>,
    next: u64,
}

impl Browser {
    fn start(profile_dir: &std::path::Path) -> Browser {
        let (from, theirs_out) = std::io::pipe().expect("pipe");
        let (theirs_in, to) = std::io::pipe().expect("pipe");
        let (r, w) = (theirs_in.as_raw_fd(), theirs_out.as_raw_fd());
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-pipe",
            "--window-size=1100,1000",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2). The pipe
        // ends are first moved above 10, so that placing them at 3 and 4 cannot clobber one
        // with the other.
        unsafe {
            cmd.pre_exec(move || {
                let r2 = libc::fcntl(r, libc::F_DUPFD, 10);
                let w2 = libc::fcntl(w, libc::F_DUPFD, 10);
                if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        drop((theirs_in, theirs_out));
        Browser {
            child,
            to,
            from: BufReader::new(from),
            next: 0,
        }
    }

    /// One DevTools call (on `session` if given); its result. Events in between are skipped.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let mut buf = Vec::new();
            let n = self
                .from
                .read_until(0, &mut buf)
                .expect("read from chromium");
            assert!(n > 0, "chromium closed its DevTools pipe during {method}");
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).expect("DevTools JSON");
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page; the page's text if it never is.
    fn wait_for(&mut self, session: &str, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.eval(session, expression) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = self.eval(session, "document.body.innerText");
        panic!(
            "the page never showed {what}:\n{}",
            text.as_str().unwrap_or("")
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[path = "../../mapispool/tests/peers/local.rs"]
mod local;
use local::free_port;

#[test]
fn the_page_follows_a_submit_and_its_flush_without_reloading() {
    if !std::path::Path::new(CHROMIUM).exists() {
        cannot_run("no headless Chromium at /usr/bin/chromium (Debian's chromium package)");
        return;
    }
    let env = Sandbox::new();
    let port = free_port();
    let alice = env.write_profile(
        "alice",
        &format!(
            "{}\n[web]\nlisten = \"127.0.0.1:{port}\"\n",
            dir_transport("local", "alice@localhost", &env.post_office())
        ),
    );
    let daemon = env.start_daemon(&alice);

    let mut browser = Browser::start(&env.path("chromium"));
    let target = browser.call(
        None,
        "Target.createTarget",
        json!({ "url": format!("http://127.0.0.1:{port}/") }),
    );
    let attached = browser.call(
        None,
        "Target.attachToTarget",
        json!({ "targetId": target["targetId"], "flatten": true }),
    );
    let session = attached["sessionId"]
        .as_str()
        .expect("a session")
        .to_string();
    let s = session.as_str();

    browser.wait_for(
        s,
        "the live event stream",
        "document.getElementById('live').textContent === 'live' && [...document.querySelectorAll('#status tbody tr[data-id]')].some(r => r.cells[0].textContent === 'local')",
    );
    browser.wait_for(
        s,
        "an empty queue",
        "document.querySelector('#queue tbody').innerText.includes('the queue is empty')",
    );
    // Marks this load of the page: a reload would forget it.
    browser.eval(s, "window.sameLoad = 'yes'; true");

    env.submit(
        &alice,
        &[],
        &plain_message("alice@localhost", "alice@localhost", "seen in the browser"),
    );
    browser.wait_for(
        s,
        "the submitted message in the queue",
        "document.querySelector('#queue tbody').innerText.includes('seen in the browser')",
    );

    // The page's own button: a POST with its origin and CSRF token.
    browser.eval(
        s,
        "document.querySelector('[data-flush=\"6\"]').click(); true",
    );
    browser.wait_for(
        s,
        "the flush: queue empty, message in the Inbox, a flush row",
        "document.querySelector('#queue tbody').innerText.includes('the queue is empty') \
         && document.querySelector('#inbox tbody').innerText.includes('seen in the browser') \
         && document.querySelector('#flushes tbody').innerText.includes('local') \
         && document.querySelector('#chart figcaption').innerText === 'local: 1 sent, 1 received' \
         && document.querySelectorAll('#chart svg rect').length === 2",
    );
    assert_eq!(
        browser.eval(s, "window.sameLoad"),
        json!("yes"),
        "the page changed without a reload"
    );
    assert_eq!(
        browser.eval(s, "document.getElementById('said').textContent"),
        json!("flushed")
    );
    let dom = browser.eval(s, "document.documentElement.outerHTML");
    let dom = dom.as_str().expect("the DOM");
    std::fs::write(env.path("status-page.html"), dom).expect("save the DOM");

    let shot = browser.call(
        Some(s),
        "Page.captureScreenshot",
        json!({ "format": "png" }),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("png data"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    std::fs::write(env.path("status-page.png"), &png).expect("save the screenshot");
    if let Some(path) = std::env::var_os("MAPISPOOL_SCREENSHOT") {
        std::fs::write(path, &png).expect("save the screenshot where asked");
    }

    // On a phone's screen (390 CSS pixels wide) the page needs no sideways scrolling: the wide
    // tables scroll inside their own boxes.
    browser.call(
        Some(s),
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
    );
    browser.wait_for(
        s,
        "a phone-width layout",
        "window.innerWidth === 390 && document.documentElement.scrollWidth <= 390",
    );
    let shot = browser.call(
        Some(s),
        "Page.captureScreenshot",
        json!({ "format": "png" }),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("png data"))
        .expect("base64");
    std::fs::write(env.path("status-page-phone.png"), &png).expect("save the screenshot");
    let _ = browser.call(None, "Browser.close", json!({}));
    daemon.stop();
}

//! A flush through the daemon outlives its client: `mapispool flush` killed while the daemon
//! waits on a slow SMTP server must not stop the flush half-way (bits left set, leases left to
//! expire, a message sent twice).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::daemon::{WAIT_DEADLINE, wait_exit, wait_until};
use common::profile::plain_message;
use common::sandbox::{Sandbox, stderr_of};

/// A scripted SMTP server (no PIPELINING, one connection at a time) that records each message
/// it accepted by subject and holds its final reply to the first message until `release`.
struct SlowSmtp {
    port: u16,
    /// The subjects of the messages it accepted (a 250 sent after DATA), in order.
    accepted: Arc<Mutex<Vec<String>>>,
    /// Set once the first message's data has fully arrived (its reply is being held).
    holding: Arc<Mutex<bool>>,
    release: mpsc::Sender<()>,
}

impl SlowSmtp {
    fn start() -> SlowSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::new(Mutex::new(false));
        let (release, released) = mpsc::channel::<()>();
        let (acc, hold) = (accepted.clone(), holding.clone());
        std::thread::spawn(move || {
            let mut released = Some(released);
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                serve(stream, &acc, &hold, &mut released);
            }
        });
        SlowSmtp {
            port,
            accepted,
            holding,
            release,
        }
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().expect("lock").clone()
    }
}

fn serve(
    stream: TcpStream,
    accepted: &Mutex<Vec<String>>,
    holding: &Mutex<bool>,
    released: &mut Option<mpsc::Receiver<()>>,
) {
    let mut out = stream.try_clone().expect("clone");
    let mut lines = BufReader::new(stream);
    let mut say = |text: &str| out.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    if !say("220 slow.test ESMTP") {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" => say("250-slow.test") && say("250 8BITMIME"),
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => say("250 OK"),
            "QUIT" => {
                say("221 bye");
                return;
            }
            "DATA" => {
                if !say("354 go on") {
                    return;
                }
                let mut subject = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    if let Some(s) = line.strip_prefix("Subject: ") {
                        subject = s.trim_end().to_string();
                    }
                }
                if let Some(wait) = released.take() {
                    *holding.lock().expect("lock") = true;
                    let _ = wait.recv();
                }
                accepted.lock().expect("lock").push(subject);
                say("250 2.0.0 queued")
            }
            _ => say("502 unknown"),
        };
        if !ok {
            return;
        }
    }
}

/// How many open sockets carry `socket`'s path in /proc/net/unix: the daemon's listener plus
/// one per connection the daemon has accepted and not yet closed.
fn daemon_sockets(socket: &Path) -> usize {
    let table = std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
    let path = socket.to_string_lossy();
    table
        .lines()
        .filter(|l| l.split_whitespace().nth(7) == Some(path.as_ref()))
        .count()
}

#[test]
fn a_flush_through_the_daemon_outlives_its_killed_client() {
    let env = Sandbox::new();
    let smtp = SlowSmtp::start();
    let alice = env.write_profile(
        "alice",
        &format!(
            "[spooler]\ntimeout = \"60s\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            smtp.port
        ),
    );
    let daemon = env.start_daemon(&alice);
    let socket = env.socket(&alice);
    for subject in ["first", "second"] {
        env.submit(
            &alice,
            &[],
            &plain_message("alice@example.com", "bob@example.org", subject),
        );
    }
    wait_until("the daemon's clients to close", || {
        daemon_sockets(&socket) == 1
    });

    let mut flusher = env
        .cli(&alice)
        .args(["flush", "--upload"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flush starts");
    wait_until("the server to hold the first message", || {
        *smtp.holding.lock().expect("lock")
    });
    flusher.kill().expect("kill the client");
    wait_exit(&mut flusher, WAIT_DEADLINE).expect("the killed client exits");
    // The daemon noticed: it closed the dead client's connection (and with it dropped the
    // request's future) while the server still holds the first message's reply.
    wait_until("the daemon to close the dead client's connection", || {
        daemon_sockets(&socket) == 1
    });
    smtp.release.send(()).expect("release");

    // The flush goes on without its client: both messages go out, the flush bits clear.
    let mut watch = env
        .cli(&alice)
        .args(["watch", "--until-idle"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let status = wait_exit(&mut watch, WAIT_DEADLINE)
        .unwrap_or_else(|| panic!("watch --until-idle never ended:\n{}", daemon.log()));
    assert!(status.success(), "watch: {status}");
    assert_eq!(smtp.accepted(), ["first", "second"], "{}", daemon.log());
    assert_eq!(env.queue_len(&alice), 0, "the queue is empty");

    // Nothing goes out twice: a later flush finds nothing due, and no lease was left behind.
    let out = env.run(&alice, &["flush", "--upload", "--force"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(smtp.accepted(), ["first", "second"]);
    daemon.stop();
}

//! Bodies stream both ways through a PostgreSQL store: a 100 MB message submitted and flushed
//! into Postfix's smtp-sink keeps every process under [`RSS_BOUND_KIB`] of peak resident memory
//! — `submit` and `flush` on their own (their `ru_maxrss` from `wait4`, the peak the kernel
//! keeps, VmHWM), and the daemon when the message goes through it (VmHWM from
//! `/proc/<pid>/status`). A memory bound, not a timing test.

mod common;
#[path = "../../mapispool/tests/peers/postfix.rs"]
mod postfix;
#[path = "../../mapispool/tests/peers/postgres.rs"]
mod postgres;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::sandbox::Sandbox;
use postfix::SmtpSink;
use postgres::{PASSWORD, Postgres};

/// Peak resident memory allowed to any one process.
const RSS_BOUND_KIB: i64 = 64 * 1024;

/// The message: 100 MB.
const BODY_BYTES: usize = 100 * 1000 * 1000;

fn write_profile(sandbox: &Sandbox, name: &str, url: &str, smtp_port: u16) -> PathBuf {
    let path = sandbox.path(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{url}\"\npassword_env = \"PGPW\"\n\n[spooler]\ntimeout = \"60s\"\nmax_message_size = {}\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n",
            2 * BODY_BYTES
        ),
    )
    .expect("write the profile");
    path
}

/// Runs `cmd` to its end with the 100 MB message written to its stdin (made as it goes, never
/// whole); its exit code and peak resident memory in KiB (`ru_maxrss`).
// Reaped by `wait4`, which also gives the peak memory that `Child::wait` would not.
#[allow(clippy::zombie_processes)]
fn run_measured(mut cmd: Command, feed: bool) -> (Option<i32>, i64) {
    let child = cmd
        .stdin(if feed { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mapispool starts");
    let pid = child.id() as libc::pid_t;
    let writer = feed.then(|| {
        let mut stdin = child.stdin.expect("stdin");
        std::thread::spawn(move || {
            stdin
                .write_all(
                    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: big\r\n\r\n",
                )
                .expect("write");
            let line = [b'x'; 998];
            let mut written = 0;
            while written < BODY_BYTES {
                stdin.write_all(&line).expect("write");
                stdin.write_all(b"\r\n").expect("write");
                written += 1000;
            }
        })
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; the pointers are valid for the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    if let Some(writer) = writer {
        writer.join().expect("the writer");
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss)
}

fn cli(sandbox: &Sandbox, profile: &Path, args: &[&str]) -> Command {
    let mut cmd = sandbox.cli(profile);
    cmd.env("PGPW", PASSWORD).args(args);
    cmd
}

fn proc_kib(pid: u32, field: &str) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a size in KiB")
}

#[test]
fn a_100_mb_message_streams_through_postgres_in_bounded_memory() {
    let pg = Postgres::start();
    let sink = SmtpSink::start("");
    let sandbox = Sandbox::new();
    let profile = write_profile(&sandbox, "me", &pg.url(), sink.port);

    // Without a daemon: submit and flush as processes of their own.
    let (code, submit_kib) = run_measured(cli(&sandbox, &profile, &["submit"]), true);
    assert_eq!(code, Some(0), "submit");
    assert_eq!(pg.count("mail", "messages WHERE in_queue"), 1);
    let size: i64 = pg
        .psql("mail", "SELECT message_size FROM messages")
        .parse()
        .expect("a size");
    assert!(size > BODY_BYTES as i64, "{size}");
    let (code, flush_kib) = run_measured(cli(&sandbox, &profile, &["flush", "--upload"]), false);
    assert_eq!(code, Some(0), "flush");
    assert_eq!(sink.messages(), 1);
    eprintln!("submit: peak {submit_kib} KiB; flush: peak {flush_kib} KiB (bound {RSS_BOUND_KIB})");
    assert!(submit_kib < RSS_BOUND_KIB, "submit peak {submit_kib} KiB");
    assert!(flush_kib < RSS_BOUND_KIB, "flush peak {flush_kib} KiB");

    // Through the daemon: the body crosses its socket, its store and its SMTP connection.
    let mut cmd = sandbox.cli(&profile);
    cmd.env("PGPW", PASSWORD).arg("spooler");
    let loaded = mapispool::profile::Profile::load(&profile).expect("the profile loads");
    let runtime = sandbox.runtime().join("mapispool");
    let socket = runtime.join(mapispool::ipc::socket_name(
        &mapispool::ipc::daemon_anchor_in(&loaded, &runtime),
    ));
    let daemon = common::daemon::Daemon::start(cmd, socket, sandbox.path("spooler.log"));
    let (code, client_kib) = run_measured(cli(&sandbox, &profile, &["submit"]), true);
    assert_eq!(code, Some(0), "submit through the daemon");
    let (code, _) = run_measured(cli(&sandbox, &profile, &["flush", "--upload"]), false);
    assert_eq!(code, Some(0), "flush through the daemon");
    assert_eq!(sink.messages(), 2);
    let daemon_kib = proc_kib(daemon.pid(), "VmHWM");
    eprintln!("through the daemon: client peak {client_kib} KiB, daemon VmHWM {daemon_kib} KiB");
    assert!(client_kib < RSS_BOUND_KIB, "client peak {client_kib} KiB");
    assert!(daemon_kib < RSS_BOUND_KIB, "daemon VmHWM {daemon_kib} KiB");
    daemon.stop();
}

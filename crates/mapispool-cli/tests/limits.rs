//! What clients can cost the daemon: 1,000 connections that never say a word and a watcher
//! that never reads, while 10,000 status changes happen. The daemon's memory stays bounded
//! (its peak resident set, VmHWM, under [`RSS_BOUND_KIB`]), the stalled watcher is dropped with a
//! `{"lagged":true}` line instead of being buffered for, and `status` still answers.
//!
//! One test function on purpose: it points `XDG_RUNTIME_DIR` at its own directory (where the
//! socket lives) for this whole process, which only one test may do.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::daemon::WAIT_DEADLINE;
use common::profile::dir_transport;
use common::sandbox::{Sandbox, stderr_of};
use mapispool::{FlushFlags, Profile, Session};

/// The daemon's peak resident memory may not pass this (measured: about 22 MiB on 2 cores): the
/// store, the runtime and 1,002 connections' buffers fit well within it; an event buffer per stalled watcher that grew
/// with every change would not stay there for long.
const RSS_BOUND_KIB: u64 = 48 * 1024;

/// How often `needle` occurs in `hay`.
fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// A `/proc/PID/status` field in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[test]
fn silent_connections_and_a_stalled_watcher_cost_bounded_memory() {
    let env = Sandbox::new();
    // SAFETY: set before this test (the only one in this binary) starts any thread that reads
    // the environment; the library finds the daemon's socket through it.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", env.runtime()) };
    let alice = env.write_profile(
        "alice",
        &dir_transport("local", "alice@localhost", &env.post_office()),
    );
    let daemon = env.start_daemon(&alice);
    let socket = env.socket(&alice);
    let pid = daemon.pid();

    let silent: Vec<UnixStream> = (0..1000)
        .map(|i| UnixStream::connect(&socket).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let mut stalled = UnixStream::connect(&socket).expect("the stalled watcher connects");
    stalled
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: mapispool\r\n\r\n")
        .expect("subscribe");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let changes = rt.block_on(async {
        let profile = Profile::load(&alice).expect("profile");
        // A watcher that reads: counts the changes it hears.
        let watcher = Session::logon(profile.clone()).await.expect("watcher");
        assert!(watcher.daemon_socket().is_some(), "through the daemon");
        let heard = Arc::new(AtomicUsize::new(0));
        let mut view = watcher.status_table();
        let count = heard.clone();
        view.advise(Arc::new(move |_: &mapi::table::TableNotification| {
            count.fetch_add(1, Ordering::SeqCst);
        }));
        let client = Session::logon(profile).await.expect("client");
        let started = Instant::now();
        let mut flushes = 0;
        while heard.load(Ordering::SeqCst) < 10_000 {
            client
                .spooler_status()
                .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD)
                .await
                .expect("flush");
            flushes += 1;
            assert!(
                flushes < 20_000 && started.elapsed() < Duration::from_secs(600),
                "only {} changes after {flushes} flushes",
                heard.load(Ordering::SeqCst)
            );
        }
        drop(view);
        heard.load(Ordering::SeqCst)
    });
    assert!(changes >= 10_000);

    // `status` answers: a 1,003rd connection is served.
    let out = env.run(&alice, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr_of(&out));

    let peak = proc_kib(pid, "VmHWM");
    let now = proc_kib(pid, "VmRSS");
    eprintln!(
        "daemon after {changes} changes, 1,000 silent connections, a stalled watcher: VmRSS {now} KiB, VmHWM {peak} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    assert!(peak < RSS_BOUND_KIB, "VmHWM {peak} KiB");

    // The stalled watcher was dropped, not buffered for: reading now, it finds what fit in
    // the buffers and then the end of its stream with `{"lagged":true}`.
    stalled
        .set_read_timeout(Some(WAIT_DEADLINE))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let lagged = loop {
        let n = stalled
            .read(&mut buf)
            .expect("the stalled watcher's stream");
        got.extend_from_slice(&buf[..n]);
        if count(&got, b"{\"lagged\":true}") > 0 {
            break true;
        }
        if n == 0 {
            break false;
        }
    };
    assert!(
        lagged,
        "no lagged line in {} bytes of the stalled stream",
        got.len()
    );
    let lines = count(&got, b"{\"event\":");
    assert!(
        lines < changes,
        "the stalled watcher got {lines} of {changes} changes"
    );
    drop(silent);
    daemon.stop();
}

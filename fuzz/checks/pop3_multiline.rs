//! POP3 replies and multi-line responses (RFC 1939 §3): the status line, a listing (UIDL, LIST,
//! CAPA) and a message body through the unstuffing `DotReader`; never a panic, never more out
//! than came in, and a body counts as complete only after its terminating `.` line.
//!
//! Shared by the fuzz target (`fuzz_targets/pop3_multiline.rs`) and the replay of seeds and crashes in
//! the normal suite (`crates/mapispool/tests/fuzz_replay.rs`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mapispool::transport::pop3::codec::{self, DotReader, Reply};
use tokio::io::AsyncReadExt;

fn now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("waited on an in-memory reader"),
    }
}

/// One input, as the fuzz target `pop3_multiline` runs it: panics on a finding.
pub fn check(data: &[u8]) {
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let _ = Reply::parse(first.strip_suffix(b"\r").unwrap_or(first));

    let mut reader = tokio::io::BufReader::with_capacity(64, data);
    if let Ok(lines) = now(codec::read_listing(&mut reader, 1 << 20)) {
        assert!(lines.iter().all(|l| l.len() <= codec::MAX_LINE));
    }

    let mut body = DotReader::new(tokio::io::BufReader::with_capacity(64, data), 1 << 20);
    let mut out = Vec::new();
    let result = now(body.read_to_end(&mut out));
    assert!(
        out.len() <= data.len(),
        "{} bytes out of {}",
        out.len(),
        data.len()
    );
    if result.is_ok() {
        assert!(
            body.is_done(),
            "a body ended without its terminating dot line"
        );
    }
    let _ = codec::stuff(data);
}

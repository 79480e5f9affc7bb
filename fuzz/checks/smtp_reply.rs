//! SMTP reply reading (RFC 5321 §4.2): reply after reply from whatever a server sends, until
//! the bytes run out or an error; never a panic, never a line or reply past the codec's caps.
//! Then the EHLO capability list of each reply.
//!
//! Shared by the fuzz target (`fuzz_targets/smtp_reply.rs`) and the replay of seeds and crashes in
//! the normal suite (`crates/mapispool/tests/fuzz_replay.rs`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mapispool::transport::smtp::codec::{self, Capabilities, MAX_LINE, MAX_LINES};

/// One input, as the fuzz target `smtp_reply` runs it: panics on a finding.
pub fn check(data: &[u8]) {
    // A reader over a byte slice never waits, so one poll finishes each read.
    let mut reader = tokio::io::BufReader::with_capacity(64, data);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1000 {
        let result = match pin!(codec::read_reply(&mut reader)).poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("read_reply waited on an in-memory reader"),
        };
        let Ok(reply) = result else {
            // An error's message must be printable and bounded.
            let message = result.unwrap_err().to_string();
            assert!(
                message.len() < 1024,
                "error message of {} bytes",
                message.len()
            );
            return;
        };
        assert!((200..600).contains(&reply.code));
        assert!(reply.lines.len() <= MAX_LINES);
        assert!(reply.lines.iter().all(|l| l.len() <= MAX_LINE * 3));
        let _ = reply.text();
        let _ = Capabilities::from_ehlo(&reply);
    }
    // Each line on its own as well.
    for line in data.split_inclusive(|&b| b == b'\n').take(1000) {
        let _ = codec::parse_line(line);
    }
}

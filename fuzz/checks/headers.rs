//! Message header extraction (`HeaderSummary::parse`, what `submit` reads of a message): never
//! panics, on any bytes.
//!
//! Shared by the fuzz target (`fuzz_targets/headers.rs`) and the replay of seeds and crashes in
//! the normal suite (`crates/mapispool/tests/fuzz_replay.rs`).

use mapispool::message::{HeaderSummary, header_block};

/// One input, as the fuzz target `headers` runs it: panics on a finding.
pub fn check(data: &[u8]) {
    if let Some(block) = header_block(data) {
        assert!(block.len() <= data.len());
    }
    if let Ok(summary) = HeaderSummary::parse(data) {
        let _ = format!("{summary:?}");
    }
}

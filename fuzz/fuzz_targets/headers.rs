//! Message header extraction (`HeaderSummary::parse`, what `submit` reads of a message): never
//! panics, on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapispool::message::{HeaderSummary, header_block};

fuzz_target!(|data: &[u8]| {
    if let Some(block) = header_block(data) {
        assert!(block.len() <= data.len());
    }
    if let Ok(summary) = HeaderSummary::parse(data) {
        let _ = format!("{summary:?}");
    }
});

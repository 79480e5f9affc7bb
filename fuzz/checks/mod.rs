//! What each fuzz target checks of one input, as plain functions: the targets
//! (`fuzz/fuzz_targets/`) call them under libFuzzer, and `crates/mapispool/tests/fuzz_replay.rs`
//! calls them on every seed, corpus file and crash in the normal suite.

pub mod headers;
pub mod imap_responses;
pub mod pop3_multiline;
pub mod profile;
pub mod restriction;
pub mod smtp_reply;

//! The fuzz target for [`check`]: see `fuzz/checks/imap_responses.rs`.
#![no_main]

#[path = "../checks/imap_responses.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::check(data);
});

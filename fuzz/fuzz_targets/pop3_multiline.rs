//! The fuzz target for [`check`]: see `fuzz/checks/pop3_multiline.rs`.
#![no_main]

#[path = "../checks/pop3_multiline.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::check(data);
});

//! The fuzz target for [`check`]: see `fuzz/checks/smtp_reply.rs`.
#![no_main]

#[path = "../checks/smtp_reply.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::check(data);
});

//! The fuzz target for [`check`]: see `fuzz/checks/headers.rs`.
#![no_main]

#[path = "../checks/headers.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::check(data);
});

//! The fuzz target for [`check`]: see `fuzz/checks/profile.rs`.
#![no_main]

#[path = "../checks/profile.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::check(data);
});

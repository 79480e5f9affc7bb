//! The fuzz target for [`check`]: see `fuzz/checks/restriction.rs`.
#![no_main]

#[path = "../checks/restriction.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check::check(data);
});

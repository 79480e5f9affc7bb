//! The profile parser (TOML, then validation): never panics; a profile that parses writes out
//! as TOML that parses back to an equal profile.
//!
//! Shared by the fuzz target (`fuzz_targets/profile.rs`) and the replay of seeds and crashes in
//! the normal suite (`crates/mapispool/tests/fuzz_replay.rs`).

use std::path::Path;

use mapispool::Profile;

/// One input, as the fuzz target `profile` runs it: panics on a finding.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/fuzz/profile.toml");
    let Ok(profile) = Profile::from_str_at(text, path) else {
        return;
    };
    let Ok(written) = profile.to_toml_string() else {
        return;
    };
    let again = Profile::from_str_at(&written, path).unwrap_or_else(|e| {
        panic!("{text:?} parsed, was written as {written:?}, which fails: {e}")
    });
    assert_eq!(again, profile, "{text:?} → {written:?}");
}

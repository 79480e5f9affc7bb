//! The `--where` restriction text parser: never panics, and whatever parses prints as text that
//! parses back to the same tree (the round trip `mapi::restriction` documents).
//!
//! Shared by the fuzz target (`fuzz_targets/restriction.rs`) and the replay of seeds and crashes in
//! the normal suite (`crates/mapispool/tests/fuzz_replay.rs`).

/// One input, as the fuzz target `restriction` runs it: panics on a finding.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tree) = mapi::restriction::parse(text) else {
        return;
    };
    let printed = tree.to_string();
    let again = mapi::restriction::parse(&printed).unwrap_or_else(|e| {
        panic!("{text:?} parsed, printed as {printed:?}, which does not parse: {e}")
    });
    assert_eq!(
        format!("{again:?}"),
        format!("{tree:?}"),
        "{text:?} printed as {printed:?} parses to a different tree"
    );
    // Printing is a fixed point after one round.
    assert_eq!(again.to_string(), printed);
}

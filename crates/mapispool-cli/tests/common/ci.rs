//! What a test does when this machine cannot run it (no root, no peer): under CI (env `CI`
//! set and not empty) it fails, so that a suite that could not run never counts as passed;
//! elsewhere it says why, and the test skips.

/// Whether the suite runs under CI.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A test cannot run here because of `why`: panics under CI, else prints why (the caller then
/// skips).
pub fn cannot_run(why: &str) {
    assert!(
        !under_ci(),
        "CI is set, and this test cannot run: {why} (CI runs the suite as root with the peers of scripts/peers/install.sh)"
    );
    eprintln!("skipped: {why}");
}

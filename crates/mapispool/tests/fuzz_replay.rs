//! Every fuzz input we have, replayed in the normal suite through the same checks the fuzz
//! targets run (`fuzz/checks/`), on stable and without libFuzzer: the committed seeds
//! (`fuzz/seeds/TARGET/`), every crash ever found (`fuzz/regressions/TARGET/`, committed), and,
//! when present on this machine, the local corpus and fresh crashes `scripts/fuzz` left
//! (`fuzz/corpus/TARGET/`, `fuzz/artifacts/TARGET/`). A crash found by fuzzing fails this test
//! until it is fixed; copy its input to `fuzz/regressions/TARGET/` to keep it replayed for good.

#[path = "../../../fuzz/checks/mod.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

/// The fuzz crate's directory.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/KIND/TARGET/` (none if it does not exist), sorted.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input of `target`; fails naming each input that panics. Returns how
/// many came from the committed seeds and regressions.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut committed = 0;
    let mut failed = Vec::new();
    for kind in ["seeds", "regressions", "corpus", "artifacts"] {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if kind == "seeds" || kind == "regressions" {
                committed += 1;
            }
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failed.push(format!("{}: {why}", path.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target {target}: {} input(s) fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
    committed
}

/// Every target in `fuzz/fuzz_targets/` is replayed here (a new target must be added below).
#[test]
fn every_fuzz_target_is_replayed() {
    let mut targets: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".rs")?.to_string())
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "headers",
            "imap_responses",
            "pop3_multiline",
            "profile",
            "restriction",
            "smtp_reply"
        ]
    );
}

#[test]
fn headers() {
    assert!(replay("headers", checks::headers::check) > 0);
}

#[test]
fn imap_responses() {
    assert!(replay("imap_responses", checks::imap_responses::check) > 0);
}

#[test]
fn pop3_multiline() {
    assert!(replay("pop3_multiline", checks::pop3_multiline::check) > 0);
}

#[test]
fn profile() {
    // The seeds and the three inputs of the stray-CR panic.
    assert!(replay("profile", checks::profile::check) >= 6);
}

#[test]
fn restriction() {
    assert!(replay("restriction", checks::restriction::check) > 0);
}

#[test]
fn smtp_reply() {
    assert!(replay("smtp_reply", checks::smtp_reply::check) > 0);
}

//! The CLI on a profile whose `[store] url` names the test's PostgreSQL: the password in the
//! environment, the daemon's socket found by the library's own rule. Included (`#[path]`) by
//! the test binaries that also declare `mod postgres` (tests/peers/postgres.rs), not by
//! `common`, which every test binary builds.

// Each binary uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::daemon::Daemon;
use crate::common::sandbox::{Sandbox, all_output, stdout_of};
use crate::postgres::PASSWORD;

/// The environment variable the test profiles read the database password from.
pub const PASSWORD_ENV: &str = "MAPISPOOL_TEST_DB_PASSWORD";

/// `mapispool --profile PROFILE` with the database password in its environment.
pub fn cli(sandbox: &Sandbox, profile: &Path) -> Command {
    let mut cmd = sandbox.cli(profile);
    cmd.env(PASSWORD_ENV, PASSWORD);
    cmd
}

pub fn run(sandbox: &Sandbox, profile: &Path, args: &[&str]) -> Output {
    cli(sandbox, profile)
        .args(args)
        .output()
        .expect("mapispool runs")
}

/// [`run`], which must succeed; its standard output.
pub fn run_ok(sandbox: &Sandbox, profile: &Path, args: &[&str]) -> String {
    let out = run(sandbox, profile, args);
    assert!(
        out.status.success(),
        "mapispool {args:?}: {:?}\n{}",
        out.status,
        all_output(&out)
    );
    stdout_of(&out)
}

/// Where the daemon of the URL profile at `profile` listens in `sandbox` (the library's rule,
/// with the sandbox's runtime directory).
pub fn socket(sandbox: &Sandbox, profile: &Path) -> PathBuf {
    let loaded = mapispool::profile::Profile::load(profile).expect("the profile loads");
    let runtime = sandbox.runtime().join("mapispool");
    let anchor = mapispool::ipc::daemon_anchor_in(&loaded, &runtime);
    runtime.join(mapispool::ipc::socket_name(&anchor))
}

/// `mapispool spooler` on `profile`, its log beside the profile.
pub fn start_daemon(sandbox: &Sandbox, profile: &Path) -> Daemon {
    start_daemon_with(sandbox, profile, &[])
}

/// [`start_daemon`] with `env` added to its environment.
pub fn start_daemon_with(sandbox: &Sandbox, profile: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = cli(sandbox, profile);
    cmd.envs(env.iter().copied());
    cmd.arg("spooler");
    let stem = profile.file_stem().expect("a name").to_string_lossy();
    Daemon::start(
        cmd,
        socket(sandbox, profile),
        sandbox.path(&format!("{stem}.spooler.log")),
    )
}

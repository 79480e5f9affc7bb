//! The systemd user unit and the daemon's side of `Type=notify` (issue 19, point 6):
//! `contrib/mapispool.service` passes `systemd-analyze verify` as written (system and user
//! scope) and `systemd-analyze security --offline` rates its exposure 2.5 or less; the daemon
//! sends `READY=1` to `$NOTIFY_SOCKET` once its socket takes clients, `WATCHDOG=1` when
//! `$WATCHDOG_USEC` asks, and `STOPPING=1` on SIGTERM.
//!
//! The unit checks need `systemd-analyze` (scripts/peers/install.sh installs it); without it
//! they say why, and fail under CI.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::ci;
use common::sandbox::{BIN, Sandbox};

fn unit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/mapispool.service")
}

fn analyzer() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        ci::cannot_run("systemd-analyze is not installed (scripts/peers/install.sh installs it)");
    }
    found
}

/// `systemd-analyze ARGS`, with a HOME whose `~/.cargo/bin/mapispool` is the binary under test
/// (where the unit's `ExecStart=%h/.cargo/bin/mapispool` looks, and verify checks it is there)
/// and a runtime directory of its own for `--user`.
fn analyze(env: &Sandbox, args: &[&str]) -> Output {
    let home = env.path("home");
    let bin = home.join(".cargo/bin");
    std::fs::create_dir_all(&bin).expect("~/.cargo/bin");
    let link = bin.join("mapispool");
    if !link.exists() {
        std::os::unix::fs::symlink(BIN, &link).expect("link the binary");
    }
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit())
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", env.runtime())
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_unit_passes_systemd_analyze_verify_as_written() {
    if !analyzer() {
        return;
    }
    let env = Sandbox::new();
    for scope in [&["verify"][..], &["--user", "verify"]] {
        let out = analyze(&env, scope);
        assert!(out.status.success(), "{scope:?}: {}", text(&out));
        assert_eq!(text(&out).trim(), "", "{scope:?}: no warnings");
    }
    let unit = std::fs::read_to_string(unit()).expect("the unit");
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_2_5_or_less() {
    if !analyzer() {
        return;
    }
    let env = Sandbox::new();
    for scope in [
        &["security", "--offline=yes"][..],
        &["--user", "security", "--offline=yes"],
    ] {
        let out = analyze(&env, scope);
        let report = text(&out);
        let exposure: f64 = report
            .lines()
            .find_map(|l| {
                l.split("Overall exposure level for mapispool.service: ")
                    .nth(1)
            })
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{scope:?}: no exposure level in:\n{report}"));
        assert!(exposure <= 2.5, "{scope:?}: exposure {exposure}:\n{report}");
    }
}

/// The next notification, waiting at most a minute (a bound on a hang, not a verdict: the
/// verdict is what the datagram says).
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification from the daemon within a minute");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_daemon_notifies_ready_watchdog_and_stopping() {
    let env = Sandbox::new();
    let profile = env.write_dir_profile("me", "local", "me@localhost");
    let path = env.path("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut daemon = env.start_daemon_with(&profile, |cmd| {
        cmd.env("NOTIFY_SOCKET", &path)
            // 0.2 s: pings every 0.1 s.
            .env("WATCHDOG_USEC", "200000")
            .env_remove("WATCHDOG_PID");
    });
    let ready = next(&socket);
    let lines: Vec<&str> = ready.lines().collect();
    assert_eq!(lines.first(), Some(&"READY=1"), "{ready:?}");
    let socket_path = env.socket(&profile);
    assert_eq!(
        lines.get(1).copied(),
        Some(format!("STATUS=listening on {}", socket_path.display()).as_str()),
        "{ready:?}"
    );
    // The watchdog pings come on their own.
    assert_eq!(next(&socket), "WATCHDOG=1\n");
    assert_eq!(next(&socket), "WATCHDOG=1\n");
    daemon.signal("TERM");
    let stopping = loop {
        let m = next(&socket);
        if m != "WATCHDOG=1\n" {
            break m;
        }
    };
    assert_eq!(stopping, "STOPPING=1\n");
    let status = daemon.terminate();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        daemon.log()
    );
}

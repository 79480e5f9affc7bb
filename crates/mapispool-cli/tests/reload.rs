//! SIGHUP makes the spooler daemon read its profile again; an invalid profile is refused and
//! the old one stays in force.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn profile_text(dir: &Path, transports: &[&str]) -> String {
    let po = dir.join("po");
    let mut text = format!("[store]\npath = \"{}\"\n", dir.join("s.db").display());
    for name in transports {
        text.push_str(&format!(
            "\n[[transport]]\nname = \"{name}\"\naddress = \"{name}@localhost\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n",
            po = po.display()
        ));
    }
    text
}

fn names(dir: &Path, profile: &Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_mapispool"))
        .env("XDG_RUNTIME_DIR", dir.join("rt"))
        .arg("--profile")
        .arg(profile)
        .args([
            "status",
            "--json",
            "--columns",
            "PR_DISPLAY_NAME",
            "--where",
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER",
        ])
        .output()
        .expect("status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["PR_DISPLAY_NAME"].as_str().map(str::to_string))
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn sighup_reloads_the_profile_and_keeps_the_old_one_if_the_new_is_bad() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("p.toml");
    std::fs::write(&profile, profile_text(dir.path(), &["first"])).expect("profile");
    let log = std::fs::File::create(dir.path().join("spooler.log")).expect("log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_mapispool"))
        .env("XDG_RUNTIME_DIR", dir.path().join("rt"))
        .arg("--profile")
        .arg(&profile)
        .arg("spooler")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spooler starts");
    let rt = dir.path().join("rt").join("mapispool");
    wait_for("the socket", || {
        std::fs::read_dir(&rt)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".sock"))
            })
            .unwrap_or(false)
    });
    assert_eq!(names(dir.path(), &profile), ["first"]);

    // A second transport appears after SIGHUP, through the same daemon.
    std::fs::write(&profile, profile_text(dir.path(), &["first", "second"])).expect("profile");
    signal(&daemon, "HUP");
    wait_for("the reloaded profile", || {
        names(dir.path(), &profile) == ["first", "second"]
    });

    // An invalid profile: the daemon keeps the old one and says why in its log.
    std::fs::write(&profile, "[[transport]]\nname = \"broken\"\n").expect("profile");
    signal(&daemon, "HUP");
    let log_path = dir.path().join("spooler.log");
    wait_for("the refusal in the log", || {
        std::fs::read_to_string(&log_path)
            .map(|l| l.contains("keeping the old one"))
            .unwrap_or(false)
    });
    // Clients still load the profile file themselves, so give them the good one back to ask;
    // the daemon answered all along with the profile it kept.
    std::fs::write(&profile, profile_text(dir.path(), &["first", "second"])).expect("profile");
    assert_eq!(names(dir.path(), &profile), ["first", "second"]);

    signal(&daemon, "TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = daemon.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

//! SIGHUP makes the spooler daemon read its profile again; an invalid profile is refused and
//! the old one stays in force.

mod common;

use std::path::Path;

use common::daemon::wait_until;
use common::profile::send_only_dir_transport;
use common::sandbox::Sandbox;

/// The profile `p.toml` with a send-only transport `NAME` (`NAME@localhost`) for each name.
fn write_profile(env: &Sandbox, transports: &[&str]) -> std::path::PathBuf {
    let text: Vec<String> = transports
        .iter()
        .map(|name| send_only_dir_transport(name, &format!("{name}@localhost"), &env.post_office()))
        .collect();
    env.write_profile("p", &text.join("\n"))
}

fn names(env: &Sandbox, profile: &Path) -> Vec<String> {
    let out = env.run_ok(
        profile,
        &[
            "status",
            "--json",
            "--columns",
            "PR_DISPLAY_NAME",
            "--where",
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["PR_DISPLAY_NAME"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn sighup_reloads_the_profile_and_keeps_the_old_one_if_the_new_is_bad() {
    let env = Sandbox::new();
    let profile = write_profile(&env, &["first"]);
    let daemon = env.start_daemon(&profile);
    assert_eq!(names(&env, &profile), ["first"]);

    // A second transport appears after SIGHUP, through the same daemon.
    write_profile(&env, &["first", "second"]);
    daemon.signal("HUP");
    wait_until("the reloaded profile", || {
        names(&env, &profile) == ["first", "second"]
    });

    // An invalid profile: the daemon keeps the old one and says why in its log.
    std::fs::write(&profile, "[[transport]]\nname = \"broken\"\n").expect("profile");
    daemon.signal("HUP");
    wait_until("the refusal in the log", || {
        daemon.log().contains("keeping the old one")
    });
    // Clients still load the profile file themselves, so give them the good one back to ask;
    // the daemon answered all along with the profile it kept.
    write_profile(&env, &["first", "second"]);
    assert_eq!(names(&env, &profile), ["first", "second"]);

    daemon.stop();
}

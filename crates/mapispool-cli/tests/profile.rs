//! Which profile the CLI uses (`--profile`, `$MAPISPOOL_PROFILE`, the XDG default) and how a
//! missing or bad one is reported: exit 2, the file, line and column, what is allowed.

mod common;

use common::{Env, column, json, run};

/// The transports `status` lists, as JSON.
fn transports(cmd: assert_cmd::Command) -> Vec<String> {
    column(&json(cmd, 0), "PR_DISPLAY_NAME")
}

const TRANSPORTS: &[&str] = &[
    "status",
    "--json",
    "--where",
    "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER",
];

#[test]
fn an_unknown_key_is_refused_with_file_line_column_and_the_allowed_keys() {
    let env = Env::new();
    let text = std::fs::read_to_string(env.me()).unwrap();
    let bad = text.replace("flush_queues = false", "flush_queue = false");
    assert_ne!(bad, text);
    let line = bad
        .lines()
        .position(|l| l.starts_with("flush_queue "))
        .unwrap()
        + 1;
    let path = env.path("bad.toml");
    std::fs::write(&path, &bad).unwrap();

    let (out, err) = run(env.cmd_for(&path, &["status"]), 2);
    assert_eq!(out, "");
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("mapispool: {}:{line}:1: ", path.display())),
        "{err}"
    );
    assert!(first.contains("unknown key \"flush_queue\""), "{err}");
    for allowed in ["name", "address", "connect_command", "flush_queues"] {
        assert!(first.contains(allowed), "{allowed} not offered: {err}");
    }
    // The excerpt shows the line.
    assert!(
        err.contains(&format!("{line} | flush_queue = false")),
        "{err}"
    );
    // Nothing was created: the store is opened only after the profile is valid.
    assert!(!env.path("me.db").exists());
}

#[test]
fn a_bad_value_is_refused_with_its_position() {
    let env = Env::new();
    let text = std::fs::read_to_string(env.me()).unwrap();
    // The first `kind = "dir"` is home's outbound side.
    let bad = text.replacen("kind = \"dir\"", "kind = \"ftp\"", 1);
    let line = bad.lines().position(|l| l.contains("\"ftp\"")).unwrap() + 1;
    let path = env.path("bad.toml");
    std::fs::write(&path, &bad).unwrap();
    let (_, err) = run(env.cmd_for(&path, &["status"]), 2);
    assert!(
        err.starts_with(&format!("mapispool: {}:{line}:", path.display())),
        "{err}"
    );
    assert!(
        err.contains("ftp") && err.contains("smtp") && err.contains("dir"),
        "{err}"
    );
}

#[test]
fn a_missing_profile_is_bad_input_naming_the_path_and_the_demo() {
    let env = Env::new();
    let missing = env.path("nowhere/profile.toml");
    let (out, err) = run(env.cmd_for(&missing, &["status"]), 2);
    assert_eq!(out, "");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("mapispool demo"), "{err}");
    assert_eq!(err.lines().count(), 1, "printed once: {err}");

    // With nothing given, the XDG default is the one named.
    let (_, err) = run(
        {
            let mut cmd = env.bare();
            cmd.arg("status");
            cmd
        },
        2,
    );
    let default = env.path("config").join("mapispool").join("profile.toml");
    assert!(err.contains(&default.display().to_string()), "{err}");
    assert!(err.contains("mapispool demo"), "{err}");
}

#[test]
fn the_environment_variable_is_honoured_and_profile_overrides_it() {
    let env = Env::new();
    let mut cmd = env.bare();
    cmd.env("MAPISPOOL_PROFILE", env.peer()).args(TRANSPORTS);
    assert_eq!(transports(cmd), ["peer"]);

    let mut cmd = env.bare();
    cmd.env("MAPISPOOL_PROFILE", env.peer())
        .arg("--profile")
        .arg(env.me())
        .args(TRANSPORTS);
    assert_eq!(transports(cmd), ["home", "work"]);

    // --profile wins even when the variable names a file that does not exist, and an empty
    // variable is as good as none.
    let mut cmd = env.bare();
    cmd.env("MAPISPOOL_PROFILE", env.path("missing.toml"))
        .args(TRANSPORTS)
        .arg("--profile")
        .arg(env.peer());
    assert_eq!(transports(cmd), ["peer"]);

    let mut cmd = env.bare();
    cmd.env("MAPISPOOL_PROFILE", "").arg("status");
    let (_, err) = run(cmd, 2);
    assert!(err.contains("profile.toml"), "{err}");

    // The XDG default is read when nothing else is given.
    let config = env.path("config").join("mapispool");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy(env.peer(), config.join("profile.toml")).unwrap();
    let mut cmd = env.bare();
    cmd.args(TRANSPORTS);
    assert_eq!(transports(cmd), ["peer"]);
}

#[test]
fn a_store_that_cannot_be_opened_exits_3() {
    let env = Env::new();
    let text = std::fs::read_to_string(env.me()).unwrap();
    // A directory where the database file should be.
    std::fs::create_dir(env.path("me.db")).unwrap();
    assert!(text.contains("me.db"));
    let (out, err) = run(env.me_cmd(&["status"]), 3);
    assert_eq!(out, "");
    assert!(err.contains("me.db"), "{err}");
}

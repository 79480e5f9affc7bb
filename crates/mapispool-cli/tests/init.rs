//! `mapispool init`: the profile it writes loads with the library's own loader, is 0600, names
//! a password command but never a password, and an existing profile is kept without `--force`.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Env, run};
use mapispool::Profile;
use mapispool::profile::{InboundConfig, OutboundConfig, Security};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("the profile exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn flags_write_a_commented_server_profile_that_loads_mode_0600() {
    let env = Env::new();
    let path = env.path("new/profile.toml");
    let (_, err) = run(
        env.cmd_for(
            &path,
            &[
                "init",
                "--name",
                "work",
                "--address",
                "me@example.com",
                "--smtp-host",
                "smtp.example.com",
                "--smtp-security",
                "tls",
                "--pop3-host",
                "pop.example.com",
                "--password-command",
                "pass show mail/work",
            ],
        ),
        0,
    );
    assert_eq!(err, "");
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    // Every key line written is explained by a comment line before it.
    assert!(
        text.contains("# The command that prints the password"),
        "{text}"
    );
    let profile = Profile::load(&path).expect("the written profile loads");
    let [transport] = &profile.transports[..] else {
        panic!("one transport: {profile:?}");
    };
    assert_eq!(transport.name, "work");
    assert_eq!(transport.address, "me@example.com");
    let Some(OutboundConfig::Smtp(smtp)) = &transport.outbound else {
        panic!("smtp out: {transport:?}");
    };
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.security),
        ("smtp.example.com", 465, Security::Tls)
    );
    assert_eq!(smtp.username.as_deref(), Some("me@example.com"));
    let Some(InboundConfig::Pop3(pop3)) = &transport.inbound else {
        panic!("pop3 in: {transport:?}");
    };
    assert_eq!((pop3.host.as_str(), pop3.port), ("pop.example.com", 995));
    assert!(
        text.contains("password_command = \"pass show mail/work\""),
        "{text}"
    );
}

#[test]
fn dir_writes_the_local_post_office_default_at_the_xdg_path() {
    let env = Env::new();
    run(
        env.bare_cmd(&["init", "--dir", "--address", "me@localhost"]),
        0,
    );
    let path = env.path("config/mapispool/profile.toml");
    assert_eq!(mode(&path), 0o600);
    let profile = Profile::load(&path).expect("the written profile loads");
    let post_office = env.path("data/mapispool/postoffice");
    let transport = &profile.transports[0];
    assert!(
        matches!(&transport.outbound, Some(OutboundConfig::Dir(d)) if d.path == post_office),
        "{transport:?}"
    );
    assert!(
        matches!(&transport.inbound, Some(InboundConfig::Dir(d)) if d.path == post_office),
        "{transport:?}"
    );
    // The profile works: the default store is created and the status table lists it.
    run(env.bare_cmd(&["status"]), 0);
}

#[test]
fn an_existing_profile_is_kept_unless_force() {
    let env = Env::new();
    let path = env.me();
    let before = std::fs::read(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, err) = run(env.cmd_for(&path, &["init", "--dir"]), 2);
    assert_eq!(out, "");
    assert!(
        err.contains("exists already") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);

    run(env.cmd_for(&path, &["init", "--dir", "--force"]), 0);
    assert_ne!(std::fs::read(&path).unwrap(), before);
    // A replaced file is made private too, not left at its old mode.
    assert_eq!(mode(&path), 0o600);
    Profile::load(&path).expect("the written profile loads");
}

#[test]
fn without_a_terminal_a_missing_answer_names_its_flag_and_writes_nothing() {
    let env = Env::new();
    let path = env.path("p.toml");
    let (_, err) = run(
        env.cmd_for(&path, &["init", "--address", "me@example.com"]),
        2,
    );
    // No server is guessed from the address for a script: only a person is offered a guess.
    assert!(err.contains("--smtp-host is needed"), "{err}");
    assert!(!path.exists());
    let path = env.path("q.toml");
    let (_, err) = run(
        env.cmd_for(&path, &["init", "--smtp-host", "smtp.example.com"]),
        2,
    );
    assert!(err.contains("--address is needed"), "{err}");
    assert!(!path.exists());
}

#[test]
fn on_a_terminal_it_asks_and_offers_defaults() {
    // util-linux `script` gives the command a terminal and passes our stdin to it.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        common::ci::cannot_run("util-linux `script` (a terminal for the command) is not installed");
        return;
    }
    let env = Env::new();
    let path = env.path("asked.toml");
    let command = format!(
        "{} --profile '{}' init",
        common::sandbox::BIN,
        path.display()
    );
    let mut cmd = assert_cmd::Command::from_std(env.sandbox.command("script"));
    cmd.args(["-qec", &command, "/dev/null"])
        .timeout(std::time::Duration::from_secs(60))
        // name, address, then the defaults for SMTP host, security and port, then POP3 and its
        // default host, the default login, and the password command.
        .write_stdin("work\nme@example.org\n\n\n\npop3\n\n\npass show x\n");
    let (out, _) = run(cmd, 0);
    assert!(out.contains("SMTP server [smtp.example.org]: "), "{out}");
    assert!(out.contains("Login [me@example.org]: "), "{out}");
    assert_eq!(mode(&path), 0o600);
    let profile = Profile::load(&path).expect("the written profile loads");
    let transport = &profile.transports[0];
    let Some(OutboundConfig::Smtp(smtp)) = &transport.outbound else {
        panic!("smtp out: {transport:?}");
    };
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.security),
        ("smtp.example.org", 587, Security::Starttls)
    );
    let Some(InboundConfig::Pop3(pop3)) = &transport.inbound else {
        panic!("pop3 in: {transport:?}");
    };
    assert_eq!(pop3.host, "pop3.example.org");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("password_command = \"pass show x\""),
        "{text}"
    );
}

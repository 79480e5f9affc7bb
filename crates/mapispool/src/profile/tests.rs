use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const FILE: &str = "/p/profile.toml";

/// The design's example, one key per line.
const DESIGN_EXAMPLE: &str = r#"
[store]
path = "~/.local/share/mapispool/store.db"

[spooler]
upload_interval = "5m"
download_interval = "10m"

[[transport]]
name = "work"
address = "me@example.com"
[transport.outbound]
kind = "smtp"
host = "smtp.example.com"
port = 587
security = "starttls"
username = "me@example.com"
password_command = "pass show mail/work"
[transport.inbound]
kind = "imap"
host = "imap.example.com"
port = 993
security = "tls"
folder = "INBOX"

[[transport]]
name = "local"
address = "me@localhost"
[transport.outbound]
kind = "dir"
path = "~/.local/share/mapispool/postoffice"
[transport.inbound]
kind = "dir"
path = "~/.local/share/mapispool/postoffice"
"#;

fn parse(text: &str) -> Result<Profile, ProfileError> {
    Profile::from_str_at(text, Path::new(FILE))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(profile) => panic!("expected an error, got {profile:#?}"),
        Err(err) => err.to_string(),
    }
}

fn home() -> PathBuf {
    home_dir().expect("tests need a home directory")
}

/// A profile with a dir transport and `extra` added to the top, for testing other parts.
fn with_dir_transport(extra: &str) -> String {
    format!(
        "{extra}\n[[transport]]\nname = \"local\"\naddress = \"me@localhost\"\n\
         [transport.inbound]\nkind = \"dir\"\npath = \"/po\"\n"
    )
}

#[test]
fn design_example_parses() {
    let profile = parse(DESIGN_EXAMPLE).expect("the design's example is valid");
    assert_eq!(profile.source.as_deref(), Some(Path::new(FILE)));
    assert_eq!(
        profile.store,
        StoreConfig::Path(home().join(".local/share/mapispool/store.db"))
    );
    assert_eq!(
        profile.spooler.upload_interval,
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        profile.spooler.download_interval,
        Some(Duration::from_secs(600))
    );
    assert_eq!(profile.transports.len(), 2);

    let work = profile.transport("work").expect("work is there");
    assert_eq!(work.address, "me@example.com");
    assert_eq!(work.outbound_kind(), Some(OutboundKind::Smtp));
    assert_eq!(work.inbound_kind(), Some(InboundKind::Imap));
    let Some(OutboundConfig::Smtp(smtp)) = &work.outbound else {
        panic!("work sends over SMTP");
    };
    assert_eq!(smtp.host, "smtp.example.com");
    assert_eq!(smtp.port, 587);
    assert_eq!(smtp.security, Security::Starttls);
    assert_eq!(smtp.username.as_deref(), Some("me@example.com"));
    assert_eq!(
        smtp.credential,
        Some(Credential::Command("pass show mail/work".to_owned()))
    );
    let Some(InboundConfig::Imap(imap)) = &work.inbound else {
        panic!("work receives over IMAP");
    };
    assert_eq!((imap.host.as_str(), imap.port), ("imap.example.com", 993));
    assert_eq!(imap.folder, "INBOX");
    assert!(!work.needs_person());

    let local = profile.transport("local").expect("local is there");
    let postoffice = home().join(".local/share/mapispool/postoffice");
    assert_eq!(
        local.outbound,
        Some(OutboundConfig::Dir(DirConfig {
            path: postoffice.clone()
        }))
    );
    assert_eq!(
        local.inbound,
        Some(InboundConfig::Dir(DirConfig { path: postoffice }))
    );
    assert!(profile.transport("nope").is_none());
}

#[test]
fn defaults() {
    let text = r#"
[[transport]]
name = "t"
address = "a@b"
[transport.outbound]
kind = "smtp"
host = "smtp.example.com"
[transport.inbound]
kind = "imap"
host = "imap.example.com"
"#;
    let profile = parse(text).expect("valid");
    assert_eq!(
        profile.store,
        StoreConfig::Path(StoreConfig::default_path().expect("a home directory"))
    );
    assert_eq!(profile.spooler, SpoolerConfig::default());
    assert_eq!(profile.spooler.upload_interval, None);
    assert_eq!(profile.spooler.retry_initial, Duration::from_secs(300));
    assert_eq!(profile.spooler.retry_max, Duration::from_secs(3600));
    assert_eq!(profile.spooler.expire_after, Duration::from_secs(5 * 86400));
    assert_eq!(
        profile.spooler.delay_warning_after,
        Duration::from_secs(4 * 3600)
    );
    assert_eq!(profile.spooler.timeout, Duration::from_secs(300));
    assert!(!profile.spooler.offline);

    let transport = &profile.transports[0];
    assert_eq!(transport.display_name, None);
    assert_eq!(transport.connect_command, None);
    assert_eq!(
        transport.outbound,
        Some(OutboundConfig::Smtp(SmtpConfig {
            host: "smtp.example.com".to_owned(),
            port: 587,
            security: Security::Starttls,
            username: None,
            credential: None,
            auth: None,
            ca_file: None,
            insecure_skip_verify: false,
            allow_plaintext_auth: false,
            max_messages_per_connection: None,
            pipelining: true,
            connections: crate::profile::DEFAULT_SMTP_CONNECTIONS,
        }))
    );
    assert_eq!(
        transport.inbound,
        Some(InboundConfig::Imap(ImapConfig {
            host: "imap.example.com".to_owned(),
            port: 993,
            security: Security::Tls,
            username: None,
            credential: None,
            auth: None,
            folder: "INBOX".to_owned(),
            after_download: AfterDownload::Seen,
            idle: false,
            ca_file: None,
            insecure_skip_verify: false,
            allow_plaintext_auth: false,
        }))
    );
}

#[test]
fn default_ports_follow_security() {
    let port = |kind: &str, table: &str, security: &str| {
        let text = format!(
            "[[transport]]\nname = \"t\"\naddress = \"a@b\"\n[transport.{table}]\n\
             kind = \"{kind}\"\nhost = \"h\"\nsecurity = \"{security}\"\n"
        );
        let profile = parse(&text).expect("valid");
        let transport = &profile.transports[0];
        match (&transport.outbound, &transport.inbound) {
            (Some(OutboundConfig::Smtp(smtp)), _) => smtp.port,
            (_, Some(InboundConfig::Imap(imap))) => imap.port,
            (_, Some(InboundConfig::Pop3(pop3))) => pop3.port,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(port("smtp", "outbound", "starttls"), 587);
    assert_eq!(port("smtp", "outbound", "tls"), 465);
    assert_eq!(port("smtp", "outbound", "none"), 25);
    assert_eq!(port("imap", "inbound", "tls"), 993);
    assert_eq!(port("imap", "inbound", "starttls"), 143);
    assert_eq!(port("imap", "inbound", "none"), 143);
    assert_eq!(port("pop3", "inbound", "tls"), 995);
    assert_eq!(port("pop3", "inbound", "starttls"), 110);
}

#[test]
fn pop3_and_after_download_and_connect_command() {
    let text = r#"
[[transport]]
name = "pop"
address = "a@b"
display_name = "A B"
[transport.inbound]
kind = "pop3"
host = "pop.example.com"
username = "a"
password_env = "POP_PASSWORD"
apop = true
leave_on_server = true
leave_days = 7
[transport.connect_command]
command = "vpn up"
interactive = true

[[transport]]
name = "imap"
address = "a@b"
[transport.inbound]
kind = "imap"
host = "h"
after_download = "move:Archive/2024"
password_prompt = true
"#;
    let profile = parse(text).expect("valid");
    let pop = profile.transport("pop").expect("pop");
    assert_eq!(pop.display_name.as_deref(), Some("A B"));
    assert_eq!(
        pop.inbound,
        Some(InboundConfig::Pop3(Pop3Config {
            host: "pop.example.com".to_owned(),
            port: 995,
            security: Security::Tls,
            username: Some("a".to_owned()),
            credential: Some(Credential::Env("POP_PASSWORD".to_owned())),
            apop: true,
            leave_on_server: true,
            leave_days: Some(7),
            ca_file: None,
            insecure_skip_verify: false,
            allow_plaintext_auth: false,
        }))
    );
    assert_eq!(
        pop.connect_command,
        Some(ConnectCommand {
            command: "vpn up".to_owned(),
            interactive: true
        })
    );
    assert!(pop.needs_person(), "an interactive connect_command");
    assert_eq!(pop.outbound_kind(), None);

    let imap = profile.transport("imap").expect("imap");
    let Some(InboundConfig::Imap(config)) = &imap.inbound else {
        panic!("imap");
    };
    assert_eq!(
        config.after_download,
        AfterDownload::Move("Archive/2024".to_owned())
    );
    assert_eq!(config.credential, Some(Credential::Prompt));
    assert!(imap.needs_person(), "a password prompt");
}

#[test]
fn password_prompt_false_is_no_credential() {
    let text = "[[transport]]\nname = \"t\"\naddress = \"a@b\"\n[transport.outbound]\n\
                kind = \"smtp\"\nhost = \"h\"\npassword_prompt = false\npassword_env = \"X\"\n";
    let profile = parse(text).expect("valid");
    let transport = &profile.transports[0];
    assert_eq!(
        transport
            .outbound
            .as_ref()
            .and_then(OutboundConfig::credential),
        Some(&Credential::Env("X".to_owned()))
    );
    assert!(!transport.needs_person());
}

#[test]
fn store_url_is_kept() {
    let profile = parse(&with_dir_transport(
        "[store]\nurl = \"postgres://db/mail\"\n",
    ))
    .expect("valid");
    assert_eq!(
        profile.store,
        StoreConfig::Url {
            url: "postgres://db/mail".to_owned(),
            credential: None
        }
    );
    assert_eq!(profile.store.path(), None);
}

#[test]
fn store_password_sources_need_a_url_and_at_most_one() {
    let profile = parse(&with_dir_transport(
        "[store]\nurl = \"postgres://db/mail\"\npassword_env = \"DBPW\"\n",
    ))
    .expect("valid");
    assert_eq!(
        profile.store,
        StoreConfig::Url {
            url: "postgres://db/mail".to_owned(),
            credential: Some(Credential::Env("DBPW".to_owned()))
        }
    );
    let both = parse(&with_dir_transport(
        "[store]\nurl = \"postgres://db/mail\"\npassword_env = \"A\"\npassword_command = \"b\"\n",
    ))
    .expect_err("two sources");
    assert!(both.to_string().contains("keep one of"), "{both}");
    let no_url = parse(&with_dir_transport(
        "[store]\npath = \"/s.db\"\npassword_env = \"A\"\n",
    ))
    .expect_err("a password without a url");
    assert!(no_url.to_string().contains("needs url"), "{no_url}");
    let sqlite_url = parse(&with_dir_transport("[store]\nurl = \"sqlite:///s.db\"\n"))
        .expect_err("not PostgreSQL");
    assert!(
        sqlite_url.to_string().contains("set path instead"),
        "{sqlite_url}"
    );
}

#[test]
fn paths_expand_tilde_and_resolve_against_the_profile() {
    let text = r#"
[store]
path = "data/store.db"

[[transport]]
name = "t"
address = "a@b"
[transport.outbound]
kind = "smtp"
host = "h"
password_file = "./secret"
ca_file = "~/certs/ca.pem"
[transport.inbound]
kind = "dir"
path = "~"
"#;
    let profile = parse(text).expect("valid");
    assert_eq!(profile.store.path(), Some(Path::new("/p/data/store.db")));
    let transport = &profile.transports[0];
    let Some(OutboundConfig::Smtp(smtp)) = &transport.outbound else {
        panic!("smtp");
    };
    assert_eq!(
        smtp.credential,
        Some(Credential::File(PathBuf::from("/p/secret")))
    );
    assert_eq!(smtp.ca_file, Some(home().join("certs/ca.pem")));
    assert_eq!(
        transport.inbound,
        Some(InboundConfig::Dir(DirConfig { path: home() }))
    );
}

#[test]
fn unknown_key_names_file_line_column_and_allowed_keys() {
    let text = "[[transport]]\nname = \"work\"\naddress = \"a@b\"\n[transport.outbound]\n\
                kind = \"smtp\"\n  hostname = \"smtp.example.com\"\n";
    let message = error(text);
    let expected = "/p/profile.toml:6:3: unknown key \"hostname\" in [transport.outbound], \
         expected one of: kind, host, port, security, username, password_command, \
         password_file, password_env, password_prompt, password_keyring, auth, ca_file, \
         insecure_skip_verify, allow_plaintext_auth, max_messages_per_connection, pipelining, connections, path\n  |\n6 |   hostname = \
         \"smtp.example.com\"\n  |   ^^^^^^^^";
    assert_eq!(message, expected);
    match parse(text) {
        Err(ProfileError::Invalid { line, column, .. }) => {
            assert_eq!((line, column), (Some(6), Some(3)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        error(&with_dir_transport("[spooler]\nretry = \"5m\"\n")),
        "/p/profile.toml:2:1: unknown key \"retry\" in [spooler], expected one of: \
         upload_interval, download_interval, retry_initial, retry_max, expire_after, \
         delay_warning_after, timeout, offline, send_on_reconnect, max_message_size, node, \
         heartbeat, lease\n  |\n2 | retry = \"5m\"\n  | ^^^^^"
    );
}

#[test]
fn max_message_size_defaults_to_64_mib_and_has_bounds() {
    let ok = |extra: &str| {
        Profile::from_str_at(&with_dir_transport(extra), Path::new("/p/profile.toml"))
            .expect("a profile")
            .spooler
            .max_message_size
    };
    assert_eq!(ok(""), 64 * 1024 * 1024);
    assert_eq!(ok("[spooler]\nmax_message_size = 1000\n"), 1000);
    let message = error(&with_dir_transport(
        "[spooler]\nmax_message_size = 5000000000\n",
    ));
    assert!(
        message.contains("it must be from 1 to 4294967296 (4 GiB)"),
        "{message}"
    );
}

#[test]
fn durations_have_an_upper_bound() {
    // "1000000000y" parses as a duration; added to a time it overflowed (a panic).
    let message = error(&with_dir_transport(
        "[spooler]\nexpire_after = \"1000000000y\"\n",
    ));
    assert!(
        message.contains(
            "expire_after in [spooler]: duration \"1000000000y\" is longer than the largest a \
             profile takes, \"3650d\""
        ),
        "{message}"
    );
    assert!(
        Profile::from_str_at(
            &with_dir_transport("[spooler]\nexpire_after = \"3650d\"\n"),
            std::path::Path::new("/p/profile.toml")
        )
        .is_ok()
    );
}

#[test]
fn bad_duration_says_what_a_duration_looks_like() {
    assert_eq!(
        error(&with_dir_transport("[spooler]\nretry_max = \"an hour\"\n")),
        "/p/profile.toml:2:13: retry_max in [spooler]: invalid duration \"an hour\": expected \
         a number and a unit, like \"30s\", \"5m\", \"1h\", \"2d\"\n  |\n\
         2 | retry_max = \"an hour\"\n  |             ^^^^^^^^^"
    );
    let message = error(&with_dir_transport("[spooler]\ntimeout = 30\n"));
    assert!(
        message.starts_with("/p/profile.toml:2:11: timeout in [spooler]: invalid type: integer"),
        "{message}"
    );
    assert!(
        message.contains("expected a duration string like \"30s\""),
        "{message}"
    );
}

#[test]
fn bad_enum_value_lists_the_allowed_ones() {
    let text = "[[transport]]\nname = \"t\"\naddress = \"a@b\"\n[transport.outbound]\n\
                kind = \"smtp\"\nhost = \"h\"\nsecurity = \"ssl\"\n";
    let message = error(text);
    assert!(
        message.starts_with(
            "/p/profile.toml:7:12: security in [transport.outbound]: invalid value \"ssl\", \
             expected one of: starttls, tls, none\n"
        ),
        "{message}"
    );
}

#[test]
fn missing_key_names_the_table() {
    let text =
        "[[transport]]\nname = \"t\"\naddress = \"a@b\"\n[transport.inbound]\nhost = \"h\"\n";
    let message = error(text);
    assert!(
        message.starts_with("/p/profile.toml:4:1: missing key \"kind\" in [transport.inbound]\n"),
        "{message}"
    );
}

#[test]
fn syntax_error_has_a_position() {
    let message = error("[[transport]]\nname = \n");
    assert!(message.starts_with("/p/profile.toml:2:"), "{message}");
}

/// The validation messages, each with where it points.
#[test]
fn validation_errors() {
    let transport = |body: &str| format!("[[transport]]\n{body}");
    let cases: Vec<(String, &str)> = vec![
        (
            "[store]\n".to_owned(),
            "/p/profile.toml: the profile has no [[transport]]: add at least one (the README has \
             an example)",
        ),
        (
            with_dir_transport(
                "[[transport]]\nname = \"local\"\naddress = \"x@y\"\n\
                 [transport.outbound]\nkind = \"dir\"\npath = \"/po\"\n",
            ),
            "/p/profile.toml:9:1: duplicate transport name \"local\": each [[transport]] needs \
             its own name",
        ),
        (
            transport("name = \"my work\"\naddress = \"a@b\"\n"),
            "/p/profile.toml:2:1: transport name \"my work\" is invalid: use letters, digits, \
             \"_\", \".\" and \"-\"",
        ),
        (
            transport("name = \"w\"\naddress = \"me at example.com\"\n"),
            "/p/profile.toml:3:1: transport \"w\": address \"me at example.com\" is invalid, \
             expected an addr-spec like \"me@example.com\" (one \"@\", no spaces, line breaks or angle brackets)",
        ),
        (
            transport("name = \"w\"\naddress = \"a@b@c\"\n"),
            "/p/profile.toml:3:1: transport \"w\": address \"a@b@c\" is invalid, expected an \
             addr-spec like \"me@example.com\" (one \"@\", no spaces, line breaks or angle brackets)",
        ),
        (
            transport("name = \"w\"\naddress = \"<a@b>\"\n"),
            "/p/profile.toml:3:1: transport \"w\": address \"<a@b>\" is invalid, expected an \
             addr-spec like \"me@example.com\" (one \"@\", no spaces, line breaks or angle brackets)",
        ),
        (
            transport("name = \"w\"\naddress = \"a@b\\r\\nBcc: x@y\"\n"),
            "/p/profile.toml:3:1: transport \"w\": address \"a@b\\r\\nBcc: x@y\" is invalid, \
             expected an addr-spec like \"me@example.com\" (one \"@\", no spaces, line breaks or angle brackets)",
        ),
        (
            transport("name = \"w\"\naddress = \"a@b\"\n"),
            "/p/profile.toml:2:1: transport \"w\" has neither [transport.outbound] nor \
             [transport.inbound]: give it at least one",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"smtp\"\n\
                 host = \"h\"\nport = 0\n",
            ),
            "/p/profile.toml:7:1: transport \"w\": port = 0 in [transport.outbound] is invalid, \
             expected 1 to 65535",
        ),
        (
            transport("name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"dir\"\n"),
            "/p/profile.toml:2:1: transport \"w\": [transport.inbound] with kind = \"dir\" needs \
             a path",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"imap\"\n\
                 username = \"u\"\n",
            ),
            "/p/profile.toml:2:1: transport \"w\": [transport.inbound] with kind = \"imap\" \
             needs a host",
        ),
        (
            transport("name = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"smtp\"\n"),
            "/p/profile.toml:2:1: transport \"w\": [transport.outbound] with kind = \"smtp\" \
             needs a host",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"pop3\"\n\
                 host = \"\"\n",
            ),
            "/p/profile.toml:6:1: transport \"w\": [transport.inbound] with kind = \"pop3\" \
             needs a host",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"dir\"\n\
                 path = \"/po\"\nhost = \"h\"\n",
            ),
            "/p/profile.toml:7:1: transport \"w\": key \"host\" does not apply to kind = \"dir\" \
             in [transport.outbound], expected one of: kind, path",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"pop3\"\n\
                 host = \"h\"\nfolder = \"INBOX\"\n",
            ),
            "/p/profile.toml:7:1: transport \"w\": key \"folder\" does not apply to kind = \
             \"pop3\" in [transport.inbound], expected one of: kind, host, port, security, \
             username, password_command, password_file, password_env, password_prompt, \
             password_keyring, apop, \
             leave_on_server, leave_days, ca_file, insecure_skip_verify, allow_plaintext_auth",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"smtp\"\n\
                 host = \"h\"\npassword_command = \"pass x\"\npassword_env = \"X\"\n",
            ),
            "/p/profile.toml:8:1: transport \"w\": [transport.outbound] has both \
             password_command and password_env: keep one of password_command, password_file, \
             password_env, password_prompt, password_keyring",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"imap\"\n\
                 host = \"h\"\nafter_download = \"archive\"\n",
            ),
            "/p/profile.toml:7:1: transport \"w\": after_download = \"archive\" in \
             [transport.inbound] is invalid, expected one of: keep, seen, delete, move:<folder>",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"dir\"\n\
                 path = \"/po\"\n[transport.connect_command]\ncommand = \" \"\n",
            ),
            "/p/profile.toml:8:1: transport \"w\": command in [transport.connect_command] is \
             empty",
        ),
        (
            with_dir_transport("[store]\npath = \"/s.db\"\nurl = \"postgres://x\"\n"),
            "/p/profile.toml:3:1: [store] has both path and url: keep one (path for SQLite, url \
             for a database server)",
        ),
        (
            with_dir_transport("[spooler]\nupload_interval = \"0s\"\n"),
            "/p/profile.toml:2:1: upload_interval in [spooler] is \"0s\", shorter than the \
             shortest schedule a profile takes, \"1s\" (every interval starts a flush)",
        ),
        (
            with_dir_transport("[spooler]\nupload_interval = \"1ms\"\n"),
            "/p/profile.toml:2:1: upload_interval in [spooler] is \"1ms\", shorter than the \
             shortest schedule a profile takes, \"1s\" (every interval starts a flush)",
        ),
        (
            with_dir_transport("[spooler]\ndownload_interval = \"999ms\"\n"),
            "/p/profile.toml:2:1: download_interval in [spooler] is \"999ms\", shorter than the \
             shortest schedule a profile takes, \"1s\" (every interval starts a flush)",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"smtp\"\n\
                 host = \"h\"\nsecurity = \"none\"\nusername = \"u\"\n",
            ),
            "/p/profile.toml:7:1: transport \"w\": security = \"none\" in [transport.outbound] \
             with a username or password would send the password in clear; use security = \
             \"starttls\" or \"tls\", or, if nobody can listen on the way (a relay on \
             127.0.0.1), set allow_plaintext_auth = true",
        ),
        (
            transport(
                "name = \"w\"\naddress = \"a@b\"\n[transport.inbound]\nkind = \"pop3\"\n\
                 host = \"h\"\nsecurity = \"none\"\npassword_command = \"echo pw\"\n\
                 allow_plaintext_auth = false\n",
            ),
            "/p/profile.toml:7:1: transport \"w\": security = \"none\" in [transport.inbound] \
             with a username or password would send the password in clear; use security = \
             \"starttls\" or \"tls\", or, if nobody can listen on the way (a relay on \
             127.0.0.1), set allow_plaintext_auth = true",
        ),
        (
            with_dir_transport("[spooler]\nretry_initial = \"2h\"\n"),
            "/p/profile.toml:2:1: retry_initial (2h) in [spooler] is longer than retry_max (1h)",
        ),
    ];
    for (text, expected) in cases {
        let message = error(&text);
        let first_line = message.lines().next().unwrap_or_default();
        assert_eq!(first_line, expected, "for profile:\n{text}");
    }
}

#[test]
fn validation_error_in_second_transport_points_into_it() {
    let text = "[[transport]]\nname = \"a\"\naddress = \"a@b\"\n[transport.outbound]\n\
                kind = \"smtp\"\nport = 0\nhost = \"h\"\n\n\
                [[transport]]\nname = \"b\"\naddress = \"a@b\"\n[transport.outbound]\n\
                kind = \"smtp\"\nhost = \"h\"\nport = 0\n";
    assert_eq!(
        error(text).lines().next().unwrap_or_default(),
        "/p/profile.toml:6:1: transport \"a\": port = 0 in [transport.outbound] is invalid, \
         expected 1 to 65535"
    );
    let fixed = text.replacen("port = 0", "port = 25", 1);
    assert_eq!(
        error(&fixed),
        "/p/profile.toml:15:1: transport \"b\": port = 0 in [transport.outbound] is invalid, \
         expected 1 to 65535\n   |\n15 | port = 0\n   | ^^^^"
    );
}

#[test]
fn missing_file_says_how_to_make_one() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("profile.toml");
    let err = Profile::load(&path).expect_err("no file");
    assert!(matches!(err, ProfileError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "no profile at {}: create one there (copy the example from the README), or run \
             `mapispool demo` for a throwaway one; --profile or $MAPISPOOL_PROFILE choose \
             another file",
            path.display()
        )
    );
}

#[test]
fn load_reads_the_file_and_resolves_against_its_directory() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("profile.toml");
    std::fs::write(&path, with_dir_transport("[store]\npath = \"store.db\"\n")).expect("write");
    let profile = Profile::load(&path).expect("valid");
    assert_eq!(profile.source.as_deref(), Some(path.as_path()));
    assert_eq!(
        profile.store.path(),
        Some(dir.path().join("store.db").as_path())
    );
}

#[test]
fn locate_precedence() {
    let config = Some(PathBuf::from("/config/mapispool"));
    let env = Some(OsString::from("/env/profile.toml"));
    let explicit = Path::new("/cli/profile.toml");
    assert_eq!(
        locate_from(Some(explicit), env.clone(), config.clone()).expect("explicit"),
        explicit
    );
    assert_eq!(
        locate_from(None, env, config.clone()).expect("env"),
        Path::new("/env/profile.toml")
    );
    assert_eq!(
        locate_from(None, Some(OsString::new()), config.clone()).expect("empty env is unset"),
        Path::new("/config/mapispool/profile.toml")
    );
    assert_eq!(
        locate_from(None, None, config).expect("config dir"),
        Path::new("/config/mapispool/profile.toml")
    );
    assert!(matches!(
        locate_from(None, None, None),
        Err(ProfileError::NoConfigDir)
    ));
}

/// `locate` reads the real environment; this only reads it, never sets it, so it cannot race
/// with other tests.
#[test]
fn locate_uses_the_environment() {
    assert_eq!(
        Profile::locate(Some(Path::new("x.toml"))).expect("explicit"),
        Path::new("x.toml")
    );
    let expected = match std::env::var_os(PROFILE_ENV).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => project_dirs()
            .expect("a home directory")
            .config_dir()
            .join(PROFILE_FILE_NAME),
    };
    assert_eq!(Profile::locate(None).expect("located"), expected);
}

#[test]
fn round_trip_through_toml() {
    let text = r#"
[store]
url = "postgres://db/mail"
password_command = "pass show db"

[spooler]
upload_interval = "90s"
expire_after = "5days"
offline = true

[[transport]]
name = "work"
address = "me@example.com"
display_name = "Me \"the\" user"
[transport.outbound]
kind = "smtp"
host = "smtp.example.com"
security = "tls"
password_file = "secret"
auth = "xoauth2"
max_messages_per_connection = 50
pipelining = false
[transport.inbound]
kind = "imap"
host = "imap.example.com"
password_prompt = true
auth = "plain"
after_download = "move:Done"
idle = true
insecure_skip_verify = true
[transport.connect_command]
command = "vpn up"

[[transport]]
name = "pop"
address = "me@example.com"
[transport.inbound]
kind = "pop3"
host = "pop.example.com"
security = "starttls"
password_env = "P"
leave_on_server = true
leave_days = 3

[[transport]]
name = "local"
address = "me@localhost"
[transport.outbound]
kind = "dir"
path = "~/po"
"#;
    let profile = parse(text).expect("valid");
    let written = profile.to_toml_string().expect("serializes");
    let mut again = parse(&written).unwrap_or_else(|err| panic!("{err}\n{written}"));
    assert_eq!(again, profile, "{written}");

    // A profile made in code, with defaults, writes and reads back too.
    again.source = None;
    again.store = StoreConfig::Path(PathBuf::from("/data/store.db"));
    let written = again.to_toml_string().expect("serializes");
    assert!(
        written.contains("[[transport]]\nname = \"work\"\n"),
        "{written}"
    );
    assert!(
        written.contains("[transport.outbound]\nkind = \"smtp\"\n"),
        "{written}"
    );
    let mut reread = parse(&written).unwrap_or_else(|err| panic!("{err}\n{written}"));
    reread.source = None;
    assert_eq!(reread, again, "{written}");
}

#[test]
fn inline_tables_and_duplicate_keys_are_named() {
    let text = "[[transport]]\nname = \"t\"\naddress = \"a@b\"\n\
                inbound = { kind = \"imap\", port = 70000 }\n";
    assert_eq!(
        error(text).lines().next().unwrap_or_default(),
        "/p/profile.toml:4:35: port in [transport.inbound]: invalid value: integer \"70000\", \
         expected 1 to 65535"
    );
    assert_eq!(
        error("[[transport]]\nname = \"t\"\nname = \"u\"\n"),
        "/p/profile.toml:3:1: duplicate key \"name\" in [[transport]]\n  |\n3 | name = \"u\"\n  | ^^^^"
    );
}

#[test]
fn a_stray_carriage_return_is_an_error_not_a_panic() {
    // Found by `scripts/fuzz` (the profile target): a span starting in a line's trailing CRs
    // made the caret excerpt panic ("min > max" in clamp).
    for text in ["\r", "[\r", "[{\r", "[store]\r\r\n", "a = 1\r\r"] {
        let message = error(text);
        assert!(message.contains(":1:"), "{text:?}: {message}");
    }
}

#[test]
fn plaintext_auth_and_short_schedules_need_saying_so() {
    // The opt-in: a login in clear to a relay on loopback, on each kind of server part.
    for part in [
        "[transport.outbound]\nkind = \"smtp\"",
        "[transport.inbound]\nkind = \"imap\"",
        "[transport.inbound]\nkind = \"pop3\"",
    ] {
        let text = format!(
            "[[transport]]\nname = \"w\"\naddress = \"a@b\"\n{part}\nhost = \"127.0.0.1\"\n\
             security = \"none\"\nusername = \"u\"\npassword_command = \"echo pw\"\n"
        );
        let refused = error(&text);
        assert!(
            refused.contains("would send the password in clear"),
            "{refused}"
        );
        let allowed = parse(&format!("{text}allow_plaintext_auth = true\n")).expect("opted in");
        let t = &allowed.transports[0];
        let flag = match (&t.outbound, &t.inbound) {
            (Some(OutboundConfig::Smtp(c)), _) => c.allow_plaintext_auth,
            (_, Some(InboundConfig::Imap(c))) => c.allow_plaintext_auth,
            (_, Some(InboundConfig::Pop3(c))) => c.allow_plaintext_auth,
            other => panic!("unexpected {other:?}"),
        };
        assert!(flag, "{part}");
        // It survives writing the profile out and reading it back.
        let again = parse(&allowed.to_toml_string().expect("toml")).expect("reparse");
        assert_eq!(again.transports, allowed.transports);
    }
    // No login, no password on the wire: security = "none" alone is fine.
    parse(
        "[[transport]]\nname = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"smtp\"\n\
         host = \"127.0.0.1\"\nsecurity = \"none\"\n",
    )
    .expect("no login");
    // A group's schedule has the same floor; one second is allowed.
    let group = |interval: &str| {
        format!(
            "[[transport]]\nname = \"w\"\naddress = \"a@b\"\n[transport.outbound]\nkind = \"dir\"\n\
             path = \"/po\"\n\n[[group]]\nname = \"g\"\ntransports = [\"w\"]\n\
             upload_interval = \"{interval}\"\n"
        )
    };
    let refused = error(&group("10ms"));
    assert!(
        refused.contains("upload_interval of group \"g\" is \"10ms\", shorter than"),
        "{refused}"
    );
    parse(&group("1s")).expect("one second");
}

#[test]
fn web_is_off_by_default_and_off_loopback_needs_a_token() {
    let none = parse(&with_dir_transport("")).expect("parses");
    assert_eq!(none.web, None);

    let local = parse(&with_dir_transport("[web]\nlisten = \"127.0.0.1:8025\"\n")).expect("parses");
    assert_eq!(
        local.web,
        Some(WebConfig {
            listen: "127.0.0.1:8025".parse().expect("addr"),
            token_file: None
        })
    );
    let again = parse(&local.to_toml_string().expect("toml")).expect("reparse");
    assert_eq!(again.web, local.web);

    let open = error(&with_dir_transport("[web]\nlisten = \"0.0.0.0:8025\"\n"));
    assert!(open.contains("token_file"), "{open}");
    let with_token = parse(&with_dir_transport(
        "[web]\nlisten = \"[::]:8025\"\ntoken_file = \"/etc/mapispool/web.token\"\n",
    ))
    .expect("parses");
    assert_eq!(
        with_token.web.and_then(|w| w.token_file),
        Some(PathBuf::from("/etc/mapispool/web.token"))
    );

    let bad = error(&with_dir_transport("[web]\nlisten = \"localhost\"\n"));
    assert!(bad.contains("not an address and port"), "{bad}");
}

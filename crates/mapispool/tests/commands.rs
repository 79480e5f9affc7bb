//! The profile's shell commands through the spooler: a hung `connect_command` or
//! `password_command` ends within `[spooler] timeout`, named in the error, with its whole
//! process group gone; a `password_command` runs once per flush however many connections the
//! flush opens.

mod common;
#[path = "peers/fake_smtp.rs"]
mod fake_smtp;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use fake_smtp::{FakeSmtp, Knobs};
use mapispool::FlushFlags;
use mapispool::profile::{Credential, OutboundConfig, Security, SmtpConfig, TransportConfig};

fn smtp_transport(port: u16, connections: u32, password_command: Option<&str>) -> TransportConfig {
    TransportConfig {
        name: "smtp".into(),
        address: "alice@example.com".into(),
        display_name: None,
        outbound: Some(OutboundConfig::Smtp(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            username: password_command.map(|_| "alice".to_string()),
            credential: password_command.map(|c| Credential::Command(c.into())),
            auth: None,
            ca_file: None,
            insecure_skip_verify: false,
            // A scripted server on loopback: the login may go in clear.
            allow_plaintext_auth: true,
            max_messages_per_connection: None,
            pipelining: true,
            connections,
        })),
        inbound: None,
        connect_command: None,
        flush_queues: true,
    }
}

/// Whether a live (not zombie) process of group `pgid` is left.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .any(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first().is_some_and(|s| *s != "Z")
                && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
        })
}

/// The pid a command wrote into `file` (its shell's, the leader of its group).
fn leader(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .expect("the command started and wrote its pid")
        .trim()
        .parse()
        .expect("a pid")
}

/// A hung command of `kind` in the profile (`connect_command` or `password_command`): the flush
/// ends soon after the profile's 1 s timeout, its error names the command, and the command's
/// process group (the shell and its `sleep`) is gone.
async fn a_hung_command_is_bounded(kind: &str) {
    let server = FakeSmtp::start(Knobs {
        auth: Some(("alice".into(), "pw".into())),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let pidfile = world.path("pid");
    let hang = format!("echo $$ > {}; sleep 1000; echo never", pidfile.display());
    let transport = match kind {
        "connect_command" => {
            with_connect_command(smtp_transport(server.port, 1, None), &hang, false)
        }
        _ => smtp_transport(server.port, 1, Some(&hang)),
    };
    let mut profile = world.profile("alice", vec![transport]);
    profile.spooler.timeout = Duration::from_secs(1);
    let alice = logon(profile).await;
    submit(&alice, "bob@example.org", "stuck").await;
    let started = Instant::now();
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    // Generous: only a hang (1000 s) or a wait on the slot would exceed it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let error = report.transports[0].error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "{kind} of transport \"smtp\" (`echo …`) did not finish within 1s"
        )),
        "{error}"
    );
    assert!(
        !error.contains("sleep"),
        "only the program is named: {error}"
    );
    let pgid = leader(&pidfile);
    assert!(
        eventually(Duration::from_secs(10), async || !group_alive(pgid)).await,
        "process group {pgid} of the {kind} still runs"
    );
    assert_eq!(
        server.connections(),
        0,
        "nothing connects before the command ends"
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_hung_connect_command_is_stopped_within_the_timeout() {
    a_hung_command_is_bounded("connect_command").await;
}

#[tokio::test]
async fn a_hung_password_command_is_stopped_within_the_timeout() {
    a_hung_command_is_bounded("password_command").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_command_runs_once_per_flush_for_all_connections() {
    let server = FakeSmtp::start(Knobs {
        // Slow greetings: the workers' connections are open at the same time.
        greeting_delay: Duration::from_millis(50),
        auth: Some(("alice".into(), "pw".into())),
        ..Knobs::default()
    })
    .await;
    let world = World::new();
    let counter = world.path("runs");
    let command = format!("echo run >> {}; printf pw", counter.display());
    let alice = logon(world.profile(
        "alice",
        vec![smtp_transport(server.port, 4, Some(&command))],
    ))
    .await;
    let runs = || {
        std::fs::read_to_string(&counter)
            .unwrap_or_default()
            .lines()
            .count()
    };
    for flush in 1..=2 {
        for i in 0..24 {
            submit(
                &alice,
                "bob@example.org",
                &format!("flush {flush} message {i}"),
            )
            .await;
        }
        let report = alice
            .spooler_status()
            .flush_queues(None, FlushFlags::UPLOAD)
            .await
            .expect("flush");
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(runs(), flush, "password_command runs after flush {flush}");
    }
    assert_eq!(server.received().len(), 48);
    assert!(
        server.peak_open() >= 2,
        "the flushes used connections in parallel: peak {}",
        server.peak_open()
    );
}

/// A POP3 server that greets and says yes to everything, so that a login gets as far as asking
/// for the password.
async fn agreeable_pop3() -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(b"+OK ready\r\n").await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if line.eq_ignore_ascii_case("CAPA") {
                        b"+OK\r\nUSER\r\n.\r\n"
                    } else {
                        b"+OK\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The inbound side's logins are bounded the same way: a hung `password_command` of a POP3
/// transport ends within `[spooler] timeout` (not a fixed minute), named, its group gone.
#[tokio::test]
async fn a_hung_password_command_of_an_inbound_transport_is_stopped_within_the_timeout() {
    use mapispool::profile::{InboundConfig, Pop3Config};
    let port = agreeable_pop3().await;
    let world = World::new();
    let pidfile = world.path("pid");
    let hang = format!("echo $$ > {}; sleep 1000; echo never", pidfile.display());
    let transport = TransportConfig {
        name: "pop".into(),
        address: "alice@example.com".into(),
        display_name: None,
        outbound: None,
        inbound: Some(InboundConfig::Pop3(Pop3Config {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            username: Some("alice".into()),
            credential: Some(Credential::Command(hang)),
            apop: false,
            leave_on_server: true,
            leave_days: None,
            ca_file: None,
            insecure_skip_verify: false,
            allow_plaintext_auth: true,
        })),
        connect_command: None,
        flush_queues: true,
    };
    let mut profile = world.profile("alice", vec![transport]);
    profile.spooler.timeout = Duration::from_secs(1);
    let alice = logon(profile).await;
    let started = Instant::now();
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::DOWNLOAD)
        .await
        .expect("flush");
    // Generous: the old limit was 60 s; only that or a hang would exceed it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let error = report.transports[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("password_command of transport \"pop\" (`echo …`) did not finish within 1s"),
        "{error}"
    );
    let pgid = leader(&pidfile);
    assert!(
        eventually(Duration::from_secs(10), async || !group_alive(pgid)).await,
        "process group {pgid} of the password_command still runs"
    );
}

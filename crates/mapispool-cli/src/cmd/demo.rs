//! `mapispool demo`: the whole send/receive cycle on this machine with nothing configured —
//! two profiles (alice and bob) sharing a post-office directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mapi::tag::*;
use mapispool::profile::{
    DirConfig, InboundConfig, OutboundConfig, SpoolerConfig, StoreConfig, TransportConfig,
};
use mapispool::store::Folder;
use mapispool::{FlushFlags, Profile, Session, Submission};

use crate::cli::DemoArgs;
use crate::cmd::flush::report_text;
use crate::exit::Exit;
use crate::render::rows_text;

pub async fn run(args: &DemoArgs, quiet: bool) -> Result<Exit> {
    let temp;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let say = |s: &str| {
        if !quiet {
            outln!("{s}");
        }
    };
    let post_office = dir.join("postoffice");
    let alice = profile(&dir, &post_office, "alice")?;
    let bob = profile(&dir, &post_office, "bob")?;
    let alice_path = dir.join("alice.toml");
    std::fs::write(&alice_path, alice.to_toml_string()?)
        .with_context(|| format!("cannot write {}", alice_path.display()))?;
    std::fs::write(dir.join("bob.toml"), bob.to_toml_string()?)
        .with_context(|| format!("cannot write {}", dir.join("bob.toml").display()))?;

    say(&format!(
        "Two profiles share the post office {}.\n",
        post_office.display()
    ));
    let alice = Session::logon_local(alice).await?;
    let bob = Session::logon_local(bob).await?;

    let letter = "From: Alice <alice@localhost>\r\nTo: Bob <bob@localhost>\r\nSubject: Hello from mapispool\r\nMessage-ID: <demo-1@localhost>\r\n\r\nThis message went through alice's outgoing queue and the post office.\r\n";
    let stray = "From: Alice <alice@localhost>\r\nTo: Nobody <nobody@localhost>\r\nSubject: To nobody\r\nMessage-ID: <demo-2@localhost>\r\n\r\nThere is no mailbox for this address.\r\n";
    for text in [letter, stray] {
        let record = alice.submit(Submission::default(), text.as_bytes()).await?;
        say(&format!(
            "alice submits \"{}\" ({})",
            record.subject,
            record.entry_id()
        ));
    }

    say("\nalice's status table before the flush:");
    let columns = [
        PR_DISPLAY_NAME,
        PR_RESOURCE_TYPE,
        PR_STATUS_CODE,
        PR_MSP_QUEUED_COUNT,
        PR_STATUS_STRING,
    ];
    let rows: Vec<_> = alice
        .board()
        .rows()
        .iter()
        .map(|r| r.project(&columns))
        .collect();
    say(&rows_text(&columns, &rows));

    say("\nalice: FlushQueues(FLUSH_UPLOAD) on the spooler");
    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await?;
    say(&report_text(&report));

    say("bob: FlushQueues(FLUSH_DOWNLOAD) on the spooler");
    let report = bob
        .spooler_status()
        .flush_queues(None, FlushFlags::DOWNLOAD)
        .await?;
    say(&report_text(&report));

    let columns = [PR_SENDER_NAME, PR_SUBJECT, PR_MESSAGE_SIZE];
    for (who, session, folder) in [
        ("bob", &bob, Folder::Inbox),
        ("alice", &alice, Folder::SentItems),
        ("alice", &alice, Folder::Inbox),
    ] {
        let rows: Vec<_> = session
            .messages(folder)
            .await?
            .iter()
            .map(|m| m.to_row().project(&columns))
            .collect();
        say(&format!("{who}'s {}:", folder.display_name()));
        say(&rows_text(&columns, &rows));
    }
    let bob_inbox = bob.messages(Folder::Inbox).await?;
    let delivered = bob_inbox
        .iter()
        .any(|m| m.subject == "Hello from mapispool");
    if args.dir.is_some() {
        say(&format!(
            "\nThe profiles stay in {}: try `mapispool --profile {} status`.",
            dir.display(),
            alice_path.display()
        ));
    }
    alice.logoff().await;
    bob.logoff().await;
    Ok(if delivered { Exit::Done } else { Exit::Partial })
}

fn profile(dir: &Path, post_office: &Path, user: &str) -> Result<Profile> {
    Ok(Profile {
        source: Some(dir.join(format!("{user}.toml"))),
        groups: Vec::new(),
        web: None,
        store: StoreConfig::Path(dir.join(format!("{user}.db"))),
        spooler: SpoolerConfig::default(),
        transports: vec![TransportConfig {
            name: "local".to_string(),
            address: format!("{user}@localhost"),
            display_name: Some(capitalized(user)),
            outbound: Some(OutboundConfig::Dir(DirConfig {
                path: post_office.to_path_buf(),
            })),
            inbound: Some(InboundConfig::Dir(DirConfig {
                path: post_office.to_path_buf(),
            })),
            connect_command: None,
            flush_queues: true,
        }],
    })
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

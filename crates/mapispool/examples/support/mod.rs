//! What both examples share: a throwaway pair of profiles in a temporary directory (alice and
//! bob, sharing a post-office directory, as `mapispool demo` builds them), a message to send,
//! and printing a flush report.

use std::error::Error;

use mapispool::flush::RecipientReport;
use mapispool::profile::{
    DirConfig, InboundConfig, OutboundConfig, SpoolerConfig, StoreConfig, TransportConfig,
};
use mapispool::store::Folder;
use mapispool::{FlushReport, Profile, Session, Submission};

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Two profiles in a temporary directory that lives as long as this.
pub struct Throwaway {
    _dir: tempfile::TempDir,
    pub alice: Profile,
    pub bob: Profile,
}

/// alice has two transports: "local", whose status object offers FlushQueues, and "relay",
/// whose does not (`flush_queues = false`), so both of MAPI's procedures have work to do.
pub fn throwaway() -> Result<Throwaway> {
    let dir = tempfile::tempdir()?;
    let post_office = dir.path().join("postoffice");
    let transport = |name: &str, address: &str, flush_queues: bool| TransportConfig {
        name: name.to_string(),
        address: address.to_string(),
        display_name: None,
        outbound: Some(OutboundConfig::Dir(DirConfig {
            path: post_office.clone(),
        })),
        inbound: Some(InboundConfig::Dir(DirConfig {
            path: post_office.clone(),
        })),
        connect_command: None,
        flush_queues,
    };
    let profile = |user: &str, transports: Vec<TransportConfig>| Profile {
        source: Some(dir.path().join(format!("{user}.toml"))),
        groups: Vec::new(),
        web: None,
        store: StoreConfig::Path(dir.path().join(format!("{user}.db"))),
        spooler: SpoolerConfig::default(),
        transports,
    };
    let alice = profile(
        "alice",
        vec![
            transport("local", "alice@localhost", true),
            transport("relay", "alice.relay@localhost", false),
        ],
    );
    let bob = profile("bob", vec![transport("local", "bob@localhost", true)]);
    Ok(Throwaway {
        _dir: dir,
        alice,
        bob,
    })
}

/// Submits one message to bob through each of alice's transports; returns their subjects.
pub async fn submit_to_bob(alice: &Session) -> Result<Vec<String>> {
    let mut subjects = Vec::new();
    for transport in &alice.profile().transports {
        let subject = format!("Hello from alice, via {}", transport.name);
        let text = format!(
            "From: Alice <{}>\r\nTo: Bob <bob@localhost>\r\nSubject: {subject}\r\n\r\nHello, Bob.\r\n",
            transport.address
        );
        let record = alice
            .submit(
                Submission {
                    transport: Some(transport.name.clone()),
                    ..Submission::default()
                },
                text.as_bytes(),
            )
            .await?;
        println!(
            "alice submits \"{}\" by {} ({})",
            record.subject,
            transport.name,
            record.entry_id()
        );
        subjects.push(subject);
    }
    Ok(subjects)
}

/// Whether every subject is in bob's Inbox; prints what is.
pub async fn arrived(bob: &Session, subjects: &[String]) -> Result<bool> {
    let inbox: Vec<String> = bob
        .messages(Folder::Inbox)
        .await?
        .into_iter()
        .map(|m| m.subject)
        .collect();
    println!("bob's Inbox: {inbox:?}");
    Ok(subjects.iter().all(|s| inbox.contains(s)))
}

/// Prints what a flush moved, transport by transport.
pub fn print_report(who: &str, report: &FlushReport) {
    if report.asynchronous {
        println!("  {who}: the flush goes on in the background");
    }
    for t in &report.transports {
        print!(
            "  {who}/{}: {} sent, {} received",
            t.transport,
            t.sent(),
            t.received
        );
        match &t.error {
            Some(e) => println!(" — failed: {e}"),
            None => println!(),
        }
        for m in &t.messages {
            println!("    {:?}: \"{}\"", m.outcome, m.subject);
            for r in &m.recipients {
                match r {
                    RecipientReport::Delivered { address } => {
                        println!("      delivered to {address}")
                    }
                    RecipientReport::Deferred { address, error } => {
                        println!("      waits for {address}: {error}")
                    }
                    RecipientReport::Failed { address, error } => {
                        println!("      failed for {address}: {error}")
                    }
                }
            }
        }
    }
}

//! Entry IDs as people use them, and what the listings show (issue 19.8): a unique prefix
//! works wherever an entry ID does; Sent Items shows whom each message went to
//! (`PR_DISPLAY_TO`); a scheduled message shows its next attempt in `queue`.

mod common;

use common::{Env, column, json, letter, run, stdout};
use serde_json::Value;

/// The shortest prefix (at least 4 digits) of `id` that no other of `all` starts with.
fn shortest_unique_prefix(id: &str, all: &[String]) -> String {
    (4..=id.len())
        .map(|n| &id[..n])
        .find(|p| all.iter().filter(|o| o.starts_with(p)).count() == 1)
        .expect("a unique prefix")
        .to_string()
}

#[test]
fn a_unique_prefix_works_wherever_an_entry_id_does() {
    let env = Env::new();
    env.open_peer_mailbox();
    let first = env.submit(&letter("first"), &[]);
    // With one message in the store a few digits past the store's own prefix pick it out.
    let prefix = shortest_unique_prefix(&first, std::slice::from_ref(&first));
    let shown = stdout(env.me_cmd(&["show", &prefix]), 0);
    assert!(shown.contains("Subject: first"), "{shown}");
    // Lower case too, as git takes it.
    let shown = stdout(env.me_cmd(&["show", &prefix.to_ascii_lowercase()]), 0);
    assert!(shown.contains("Subject: first"), "{shown}");

    let second = env.submit(&letter("second"), &[]);
    let (_, err) = run(env.me_cmd(&["show", &prefix]), 2);
    assert!(err.contains("is ambiguous"), "{err}");
    assert!(err.contains(&first) && err.contains(&second), "{err}");
    let (_, err) = run(env.me_cmd(&["show", "000"]), 2);
    assert!(err.contains("too short"), "{err}");
    let (_, err) = run(env.me_cmd(&["show", "ABCDEF"]), 2);
    assert!(err.contains("no entry ID starts with ABCDEF"), "{err}");

    // The second's own unique prefix: abort takes it, and flush --message the first's.
    let both = [first.clone(), second.clone()];
    let second_prefix = shortest_unique_prefix(&second, &both);
    env.me_cmd(&["abort", "--quiet", &second_prefix])
        .assert()
        .success();
    let queue = json(env.me_cmd(&["queue", "--json"]), 0);
    assert_eq!(column(&queue, "PR_ENTRYID"), std::slice::from_ref(&first));
    let first_prefix = shortest_unique_prefix(&first, &both);
    env.me_cmd(&["flush", "--quiet", "--message", &first_prefix])
        .assert()
        .code(predicates::ord::lt(2));
    assert_eq!(env.sandbox.delivered("peer@home.test"), 1);

    // A transport by a prefix of its status row's entry ID.
    let status = json(
        env.me_cmd(&[
            "status",
            "--json",
            "--columns",
            "PR_ENTRYID,PR_DISPLAY_NAME",
        ]),
        0,
    );
    let ids = column(&status, "PR_ENTRYID");
    let names = column(&status, "PR_DISPLAY_NAME");
    let home = names.iter().position(|n| n == "home").expect("home row");
    let home_prefix = shortest_unique_prefix(&ids[home], &ids);
    let report = json(
        env.me_cmd(&["flush", "--json", "--transport", &home_prefix]),
        0,
    );
    let transports: Vec<&str> = report["transports"]
        .as_array()
        .expect("transports")
        .iter()
        .filter_map(|t| t["transport"].as_str())
        .collect();
    assert_eq!(transports, ["home"], "{report}");
}

#[test]
fn sent_items_show_display_to_and_scheduled_messages_their_next_attempt() {
    let env = Env::new();
    env.open_peer_mailbox();
    env.submit(&letter("delivered"), &[]);
    env.me_cmd(&["flush", "--quiet", "--upload"])
        .assert()
        .code(predicates::ord::lt(2));
    let sent = json(env.me_cmd(&["messages", "--folder", "sent", "--json"]), 0);
    assert_eq!(column(&sent, "PR_SUBJECT"), ["delivered"]);
    assert_eq!(column(&sent, "PR_DISPLAY_TO"), ["Peer"], "{sent}");
    let table = stdout(env.me_cmd(&["messages", "--folder", "sent"]), 0);
    assert!(
        table.contains("DISPLAY_TO") && table.contains("Peer"),
        "{table}"
    );

    let later = "2099-01-01T08:00:00Z";
    env.submit(&letter("later"), &["--defer-until", later]);
    let queue = json(env.me_cmd(&["queue", "--json"]), 0);
    let rows: Vec<&Value> = queue["rows"].as_array().expect("rows").iter().collect();
    let row = rows
        .iter()
        .find(|r| r["PR_SUBJECT"] == "later")
        .unwrap_or_else(|| panic!("{queue}"));
    assert_eq!(row["PR_MSP_QUEUE_STATE"], "scheduled", "{row}");
    let next = row["PR_MSP_NEXT_ATTEMPT_TIME"]
        .as_str()
        .unwrap_or_else(|| panic!("no next attempt: {row}"));
    assert!(next.starts_with("2099-01-01T08:00:00"), "{row}");
    // Per recipient too.
    let recipients = json(env.me_cmd(&["queue", "--recipients", "--json"]), 0);
    let row = recipients["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["PR_SUBJECT"] == "later")
        .unwrap_or_else(|| panic!("{recipients}"));
    assert_eq!(row["PR_MSP_QUEUE_STATE"], "scheduled", "{row}");
    assert!(
        row["PR_MSP_NEXT_ATTEMPT_TIME"]
            .as_str()
            .is_some_and(|t| t.starts_with("2099-01-01T08:00:00")),
        "{row}"
    );
}

/// An aborted message can be resubmitted (and then goes) or deleted (to Deleted Items), by the
/// CLI in-process and through the daemon (issue 19.8).
#[test]
fn an_aborted_message_can_be_resubmitted_or_deleted() {
    let env = Env::new();
    env.open_peer_mailbox();
    for through_daemon in [false, true] {
        let daemon = through_daemon.then(|| env.sandbox.start_daemon(&env.me()));
        let kept = env.submit(&letter("kept"), &[]);
        let dropped = env.submit(&letter("dropped"), &[]);
        for id in [&kept, &dropped] {
            env.me_cmd(&["abort", "--quiet", id]).assert().success();
        }
        // Queued messages cannot be deleted, nor aborted ones resubmitted twice.
        let (out, _) = run(env.me_cmd(&["resubmit", &kept]), 0);
        assert!(out.contains("queued again"), "{out}");
        let (_, err) = run(env.me_cmd(&["resubmit", &kept]), 2);
        assert!(err.contains("still in the outgoing queue"), "{err}");
        let (_, err) = run(env.me_cmd(&["delete", &kept]), 2);
        assert!(err.contains("abort"), "{err}");

        let deleted = json(env.me_cmd(&["delete", "--json", &dropped]), 0);
        assert_eq!(deleted["deleted"], true);
        let trash = json(
            env.me_cmd(&["messages", "--folder", "deleted", "--json"]),
            0,
        );
        assert!(column(&trash, "PR_ENTRYID").contains(&dropped), "{trash}");
        let queue = json(env.me_cmd(&["queue", "--json"]), 0);
        assert_eq!(column(&queue, "PR_ENTRYID"), std::slice::from_ref(&kept));

        let before = env.sandbox.delivered("peer@home.test");
        env.me_cmd(&["flush", "--quiet", "--upload"])
            .assert()
            .code(predicates::ord::lt(2));
        assert_eq!(env.sandbox.delivered("peer@home.test"), before + 1);
        if let Some(daemon) = daemon {
            daemon.stop();
        }
    }
}

/// A prefix is answered by the store (one read of its ids, not a listing of every folder): a
/// message in Deleted Items is found by its unique prefix, a prefix of many lists the first
/// ten and counts the rest, alike in-process and through the daemon.
#[test]
fn a_prefix_finds_a_message_in_any_folder_and_counts_the_ambiguous() {
    let env = Env::new();
    env.open_peer_mailbox();
    let ids: Vec<String> = (0..12)
        .map(|i| env.submit(&letter(&format!("m{i}")), &[]))
        .collect();
    let gone = &ids[3];
    env.me_cmd(&["abort", "--quiet", gone]).assert().success();
    env.me_cmd(&["delete", "--quiet", gone]).assert().success();
    let gone_prefix = shortest_unique_prefix(gone, &ids);
    // All twelve share every digit but the id's last two.
    let shared = &ids[0][..ids[0].len() - 2];
    assert!(ids.iter().all(|id| id.starts_with(shared)));
    let mut answers = Vec::new();
    for through_daemon in [false, true] {
        let daemon = through_daemon.then(|| env.sandbox.start_daemon(&env.me()));
        let shown = stdout(env.me_cmd(&["show", &gone_prefix]), 0);
        assert!(shown.contains("Subject: m3"), "{shown}");
        let (_, err) = run(env.me_cmd(&["show", shared]), 2);
        assert!(
            err.contains(&format!(
                "{shared} is ambiguous: 12 entry IDs start with it"
            )),
            "{err}"
        );
        assert!(err.contains("… and 2 more"), "{err}");
        assert_eq!(
            ids[..10]
                .iter()
                .filter(|id| err.contains(id.as_str()))
                .count(),
            10,
            "{err}"
        );
        answers.push(err);
        if let Some(daemon) = daemon {
            daemon.stop();
        }
    }
    assert_eq!(answers[0], answers[1]);
}

//! The status table (`IMAPISession::GetStatusTable`) and status objects: the rows, their
//! columns and entry IDs, and the bits a flush moves, seen through table notifications.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use common::*;
use mapi::constants::*;
use mapi::restriction::{BitmaskOp, RelOp, Restriction};
use mapi::table::{TableEvent, TableNotification, hr_query_all_rows};
use mapi::tag::*;
use mapi::{EntryId, PropValue, Row};
use mapispool::FlushFlags;
use mapispool::status::StatusKind;

fn long(row: &Row, tag: mapi::PropTag) -> i32 {
    match row.get(tag) {
        Some(PropValue::Long(v)) => *v,
        other => panic!("{tag} is {other:?} in {row:?}"),
    }
}

fn entry_id(row: &Row) -> EntryId {
    match row.get(PR_ENTRYID) {
        Some(PropValue::Binary(b)) => EntryId::from_bytes(b.clone()),
        other => panic!("PR_ENTRYID is {other:?}"),
    }
}

fn unicode(row: &Row, tag: mapi::PropTag) -> String {
    match row.get(tag) {
        Some(PropValue::Unicode(s)) => s.clone(),
        other => panic!("{tag} is {other:?}"),
    }
}

fn eq(tag: mapi::PropTag, value: PropValue) -> Restriction {
    Restriction::Property {
        relop: RelOp::Eq,
        tag,
        value,
    }
}

/// One notification as the tests see it: event, instance key, `PR_STATUS_CODE`.
type Seen = (TableEvent, Vec<u8>, Option<i32>);

/// Collects `PR_STATUS_CODE` of every notification a view gets.
fn record_codes(table: &mut mapi::Table) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    table.advise(Arc::new(move |n: &TableNotification| {
        let code = match n.row.get(PR_STATUS_CODE) {
            Some(PropValue::Long(c)) => Some(*c),
            _ => None,
        };
        sink_seen
            .lock()
            .expect("lock")
            .push((n.event, n.instance_key.clone(), code));
    }));
    seen
}

#[tokio::test]
async fn a_flush_shows_its_bits_in_the_transports_row_and_clears_them() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    let bob = logon(world.simple_profile("bob")).await;
    submit(&bob, "alice@localhost", "for alice").await;
    bob.spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("bob sends");
    submit(&alice, "bob@localhost", "for bob").await;

    let local = StatusKind::Transport("local".into()).entry_id();
    let mut view = alice.status_table();
    view.set_columns(&[PR_INSTANCE_KEY, PR_DISPLAY_NAME, PR_STATUS_CODE])
        .expect("columns");
    view.restrict(Some(eq(
        PR_RESOURCE_TYPE,
        PropValue::Long(MAPI_TRANSPORT_PROVIDER),
    )))
    .expect("restrict");
    let seen = record_codes(&mut view);
    // A view whose restriction hides the row (it matches only a failed transport).
    let mut hidden = alice.status_table();
    hidden
        .restrict(Some(Restriction::And(vec![
            eq(PR_DISPLAY_NAME, PropValue::Unicode("local".into())),
            Restriction::Bitmask {
                op: BitmaskOp::Nez,
                tag: PR_STATUS_CODE,
                mask: STATUS_FAILURE as u32,
            },
        ])))
        .expect("restrict");
    let hidden_seen = record_codes(&mut hidden);

    let report = alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD)
        .await
        .expect("flush");
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.transports[0].sent(), 1);
    assert_eq!(report.transports[0].received, 1);

    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "the transport's row changed");
    for (event, key, _) in &seen {
        assert_eq!(*event, TableEvent::RowModified);
        assert_eq!(key.as_slice(), local.as_bytes(), "keyed by PR_INSTANCE_KEY");
    }
    let codes: Vec<i32> = seen.iter().filter_map(|(_, _, c)| *c).collect();
    let position = |from: usize, what: &dyn Fn(i32) -> bool| {
        codes[from..]
            .iter()
            .position(|c| what(*c))
            .map(|p| p + from)
    };
    let out = STATUS_OUTBOUND_FLUSH | STATUS_OUTBOUND_ACTIVE;
    let inb = STATUS_INBOUND_FLUSH | STATUS_INBOUND_ACTIVE;
    let out_set = position(0, &|c| c & out == out).expect("outbound bits set");
    let out_clear = position(out_set, &|c| c & out == 0).expect("outbound bits cleared afterwards");
    let in_set = position(out_clear, &|c| c & inb == inb).expect("then inbound bits set");
    position(in_set, &|c| c & inb == 0).expect("and cleared");
    assert!(
        codes[..out_set].iter().all(|c| c & inb == 0),
        "outbound before inbound: {codes:x?}"
    );

    let final_code = alice
        .spooler()
        .expect("an in-process spooler")
        .board()
        .status_code(&StatusKind::Transport("local".into()));
    assert_eq!(
        final_code,
        STATUS_AVAILABLE | STATUS_INBOUND_ENABLED | STATUS_OUTBOUND_ENABLED
    );
    assert_eq!(codes.last(), Some(&final_code));
    assert!(
        hidden_seen.lock().expect("lock").is_empty(),
        "no notification for a row the restriction hides"
    );
}

#[tokio::test]
async fn the_spooler_row_shows_a_flush_too() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    let mut view = alice.status_table();
    view.restrict(Some(eq(PR_RESOURCE_TYPE, PropValue::Long(MAPI_SPOOLER))))
        .expect("restrict");
    let seen = record_codes(&mut view);
    alice
        .spooler_status()
        .flush_queues(None, FlushFlags::UPLOAD)
        .await
        .expect("flush");
    let codes: Vec<i32> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, _, c)| *c)
        .collect();
    assert!(
        codes.iter().any(|c| c & STATUS_OUTBOUND_FLUSH != 0),
        "{codes:x?}"
    );
    assert_eq!(codes.last().map(|c| c & STATUS_OUTBOUND_FLUSH), Some(0));
    let row = alice.spooler_status().props();
    assert!(unicode(&row, PR_STATUS_STRING).starts_with("Last flush: 0 sent"));
    assert!(row.get(PR_MSP_LAST_FLUSH_TIME).is_some());
}

#[tokio::test]
async fn the_status_table_has_a_row_per_object_in_profile_order() {
    let world = World::new();
    let names = ["work", "home", "list"];
    let profile = world.profile(
        "alice",
        names
            .iter()
            .map(|n| world.transport(n, &format!("alice.{n}@localhost")))
            .collect(),
    );
    let alice = logon(profile.clone()).await;
    let mut table = alice.status_table();
    let rows = hr_query_all_rows(&mut table, None, None, None, 0).expect("all rows");
    assert_eq!(rows.len(), 3 + names.len());

    let types: Vec<i32> = rows.iter().map(|r| long(r, PR_RESOURCE_TYPE)).collect();
    for kind in [MAPI_SUBSYSTEM, MAPI_SPOOLER, MAPI_STORE_PROVIDER] {
        assert_eq!(types.iter().filter(|t| **t == kind).count(), 1, "{kind}");
    }
    let transports: Vec<&Row> = rows
        .iter()
        .filter(|r| long(r, PR_RESOURCE_TYPE) == MAPI_TRANSPORT_PROVIDER)
        .collect();
    let listed: Vec<(String, i32)> = transports
        .iter()
        .map(|r| (unicode(r, PR_DISPLAY_NAME), long(r, PR_PROVIDER_ORDINAL)))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("work".to_string(), 0),
            ("home".to_string(), 1),
            ("list".to_string(), 2)
        ]
    );
    let primary = rows
        .iter()
        .filter(|r| long(r, PR_RESOURCE_FLAGS) & STATUS_PRIMARY_IDENTITY != 0)
        .count();
    assert_eq!(primary, 1, "exactly one primary identity");

    // What every row must have (mapi-reference.md §6).
    for row in &rows {
        for tag in [
            PR_DISPLAY_NAME,
            PR_PROVIDER_DISPLAY,
            PR_PROVIDER_DLL_NAME,
            PR_STATUS_CODE,
            PR_RESOURCE_METHODS,
            PR_RESOURCE_FLAGS,
            PR_RESOURCE_TYPE,
            PR_ENTRYID,
            PR_INSTANCE_KEY,
            PR_OBJECT_TYPE,
            PR_ROWID,
        ] {
            assert!(row.get(tag).is_some(), "{tag} missing in {row:?}");
        }
        assert_eq!(long(row, PR_OBJECT_TYPE), MAPI_STATUS);
    }

    // OpenEntry on each PR_ENTRYID gives the object of that row.
    for row in &rows {
        let id = entry_id(row);
        let status = alice.open_status(&id).expect("open_status");
        assert_eq!(status.entry_id(), id);
        assert_eq!(status.kind().resource_type(), long(row, PR_RESOURCE_TYPE));
        assert_eq!(
            unicode(&status.props(), PR_DISPLAY_NAME),
            unicode(row, PR_DISPLAY_NAME)
        );
        assert_eq!(status.methods(), long(row, PR_RESOURCE_METHODS));
    }

    // The seed's restriction finds the spooler, which flushes.
    let mut table = alice.status_table();
    let spooler = hr_query_all_rows(
        &mut table,
        Some(&[PR_ENTRYID, PR_RESOURCE_TYPE]),
        Some(&eq(PR_RESOURCE_TYPE, PropValue::Long(MAPI_SPOOLER))),
        None,
        0,
    )
    .expect("query");
    assert_eq!(spooler.len(), 1);
    assert_eq!(spooler[0].props.len(), 2, "only the columns asked for");
    let status = alice.open_status(&entry_id(&spooler[0])).expect("open");
    assert_eq!(status.kind(), &StatusKind::Spooler);
    assert_ne!(status.methods() & STATUS_FLUSH_QUEUES, 0);

    // Entry IDs are the same in the next session.
    let ids: HashSet<EntryId> = rows.iter().map(entry_id).collect();
    alice.logoff().await;
    let again = logon(profile).await;
    let mut table = again.status_table();
    let rows = hr_query_all_rows(&mut table, Some(&[PR_ENTRYID]), None, None, 0).expect("rows");
    let ids_again: HashSet<EntryId> = rows.iter().map(entry_id).collect();
    assert_eq!(ids, ids_again);
}

#[tokio::test]
async fn open_status_refuses_ids_that_are_not_status_objects() {
    let world = World::new();
    let alice = logon(world.simple_profile("alice")).await;
    world.create_mailbox("bob@localhost");
    let message = submit(&alice, "bob@localhost", "x").await.entry_id();
    for bad in [EntryId::from_bytes(vec![0; 3]), message] {
        assert_eq!(
            code(alice.open_status(&bad).map(|s| s.entry_id())),
            mapi::MapiCode::UnknownEntryId
        );
    }
    let stranger = StatusKind::Transport("nowhere".into()).entry_id();
    assert_eq!(
        code(alice.open_status(&stranger).map(|s| s.entry_id())),
        mapi::MapiCode::NotFound
    );
}

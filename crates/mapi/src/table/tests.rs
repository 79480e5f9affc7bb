use std::sync::{Arc, Mutex};

use super::*;
use crate::restriction::RelOp;
use crate::tag::{PR_DISPLAY_NAME, PR_INSTANCE_KEY, PR_RESOURCE_TYPE, PR_STATUS_CODE};
use crate::value::{Prop, PropValue};

fn row(key: u8, name: &str, code: i32) -> Row {
    Row::new(vec![
        Prop::new(PR_INSTANCE_KEY, PropValue::Binary(vec![key])),
        Prop::new(PR_DISPLAY_NAME, PropValue::Unicode(name.into())),
        Prop::new(PR_STATUS_CODE, PropValue::Long(code)),
    ])
}

fn update(key: u8, tag: PropTag, value: PropValue) -> Row {
    Row::new(vec![
        Prop::new(PR_INSTANCE_KEY, PropValue::Binary(vec![key])),
        Prop::new(tag, value),
    ])
}

/// The table's rows 1..=n, named "r1".., with status code = key.
fn table_of(n: u8) -> TableData {
    let data = TableData::new();
    for k in 1..=n {
        data.add_row(row(k, &format!("r{k}"), i32::from(k)))
            .expect("add");
    }
    data
}

fn keys(rows: &[Row]) -> Vec<u8> {
    rows.iter()
        .map(|r| instance_key(r).expect("key")[0])
        .collect()
}

fn code_is(code: i32) -> Restriction {
    Restriction::Property {
        relop: RelOp::Eq,
        tag: PR_STATUS_CODE,
        value: PropValue::Long(code),
    }
}

fn code_is_not(code: i32) -> Restriction {
    Restriction::Property {
        relop: RelOp::Ne,
        tag: PR_STATUS_CODE,
        value: PropValue::Long(code),
    }
}

fn key_is(key: u8) -> Restriction {
    Restriction::Property {
        relop: RelOp::Eq,
        tag: PR_INSTANCE_KEY,
        value: PropValue::Binary(vec![key]),
    }
}

/// A sink that records what it is told.
fn recorder(table: &mut Table) -> (ConnectionId, Arc<Mutex<Vec<TableNotification>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = Arc::clone(&seen);
    let id = table.advise(Arc::new(move |n: &TableNotification| {
        sink_seen.lock().expect("lock").push(n.clone())
    }));
    (id, seen)
}

fn take(seen: &Mutex<Vec<TableNotification>>) -> Vec<TableNotification> {
    std::mem::take(&mut *seen.lock().expect("lock"))
}

#[test]
fn tables_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Table>();
    check::<TableData>();
    check::<TableNotification>();
}

#[test]
fn provider_operations() {
    let data = table_of(2);
    assert_eq!(data.len(), 2);

    let no_key = Row::new(vec![Prop::new(PR_STATUS_CODE, PropValue::Long(1))]);
    for result in [
        data.add_row(no_key.clone()),
        data.modify_row(no_key.clone()),
        data.replace_row(no_key),
        data.add_row(update(0, PR_STATUS_CODE, PropValue::Long(0)).project(&[PR_STATUS_CODE])),
    ] {
        assert_eq!(result.map_err(|e| e.code), Err(MapiCode::InvalidParameter));
    }
    let empty_key = Row::new(vec![Prop::new(PR_INSTANCE_KEY, PropValue::Binary(vec![]))]);
    assert_eq!(
        data.add_row(empty_key).map_err(|e| e.code),
        Err(MapiCode::InvalidParameter)
    );
    assert_eq!(
        data.add_row(row(1, "again", 9)).map_err(|e| e.code),
        Err(MapiCode::Collision)
    );

    // Merge: only the given column changes.
    data.modify_row(update(1, PR_STATUS_CODE, PropValue::Long(42)))
        .expect("merge");
    let r1 = data.row(&[1]).expect("row 1");
    assert_eq!(r1.get(PR_STATUS_CODE), Some(&PropValue::Long(42)));
    assert_eq!(
        r1.get(PR_DISPLAY_NAME).and_then(PropValue::as_str),
        Some("r1")
    );
    // Merge adds a missing row, at the end.
    data.modify_row(update(3, PR_STATUS_CODE, PropValue::Long(3)))
        .expect("merge adds");
    assert_eq!(keys(&data.rows()), vec![1, 2, 3]);

    // Replace drops the columns not given, and keeps the row's place.
    data.replace_row(update(1, PR_RESOURCE_TYPE, PropValue::Long(36)))
        .expect("replace");
    let r1 = data.row(&[1]).expect("row 1");
    assert_eq!(r1.get(PR_STATUS_CODE), None);
    assert_eq!(keys(&data.rows()), vec![1, 2, 3]);
    data.replace_row(row(4, "r4", 4)).expect("replace adds");

    data.delete_row(&[2]).expect("delete");
    assert_eq!(keys(&data.rows()), vec![1, 3, 4]);
    assert_eq!(
        data.delete_row(&[2]).map_err(|e| e.code),
        Err(MapiCode::NotFound)
    );
    assert!(data.row(&[2]).is_none());
    assert!(!data.is_empty());
}

#[test]
fn columns() {
    let data = table_of(2);
    data.add_row(update(3, PR_RESOURCE_TYPE, PropValue::Long(36)))
        .expect("add");
    let mut view = data.view();
    // Default: each row with all its own columns.
    let all = view.query_rows(10).expect("rows");
    assert_eq!(all[0], row(1, "r1", 1));
    assert_eq!(all[2].props.len(), 2);
    assert_eq!(
        view.query_columns(),
        vec![
            PR_INSTANCE_KEY,
            PR_DISPLAY_NAME,
            PR_STATUS_CODE,
            PR_RESOURCE_TYPE
        ]
    );

    assert_eq!(
        view.set_columns(&[]).map_err(|e| e.code),
        Err(MapiCode::InvalidParameter)
    );
    let mv_instance = PropTag(PR_DISPLAY_NAME.0 | u32::from(MV_INSTANCE | crate::tag::MV_FLAG));
    assert_eq!(
        view.set_columns(&[mv_instance]).map_err(|e| e.code),
        Err(MapiCode::TooComplex)
    );
    view.set_columns(&[PR_STATUS_CODE, PR_DISPLAY_NAME])
        .expect("set columns");
    assert_eq!(view.query_columns(), vec![PR_STATUS_CODE, PR_DISPLAY_NAME]);
    // Setting columns does not move the cursor.
    assert_eq!(view.query_position().row, 3);
    view.seek_row(BOOKMARK_BEGINNING, 0).expect("seek");
    let rows = view.query_rows(10).expect("rows");
    assert_eq!(
        rows[0].props,
        vec![
            Prop::new(PR_STATUS_CODE, PropValue::Long(1)),
            Prop::new(PR_DISPLAY_NAME, PropValue::Unicode("r1".into())),
        ]
    );
    // A column the row lacks: PT_ERROR with MAPI_E_NOT_FOUND.
    assert_eq!(rows[2].props[0], Prop::not_found(PR_STATUS_CODE));
    assert_eq!(rows[2].props[1], Prop::not_found(PR_DISPLAY_NAME));
}

#[test]
fn query_rows_forward_backward_and_no_advance() {
    let data = table_of(5);
    let mut view = data.view();
    assert_eq!(
        view.query_rows(0).map_err(|e| e.code),
        Err(MapiCode::InvalidParameter)
    );
    assert_eq!(
        view.query_rows_flags(1, 0x2).map_err(|e| e.code),
        Err(MapiCode::UnknownFlags)
    );
    // At the beginning, reading backward gives nothing.
    assert!(view.query_rows(-3).expect("rows").is_empty());

    assert_eq!(keys(&view.query_rows(2).expect("rows")), vec![1, 2]);
    assert_eq!(
        keys(&view.query_rows_flags(2, TBL_NOADVANCE).expect("rows")),
        vec![3, 4]
    );
    assert_eq!(keys(&view.query_rows(2).expect("rows")), vec![3, 4]);
    // Fewer rows than asked is fine; then none at the end.
    assert_eq!(keys(&view.query_rows(10).expect("rows")), vec![5]);
    assert!(view.query_rows(10).expect("rows").is_empty());

    // Backward: the rows before the cursor, in table order; the cursor moves back over them.
    assert_eq!(keys(&view.query_rows(-2).expect("rows")), vec![4, 5]);
    assert_eq!(view.query_position().row, 3);
    assert_eq!(
        keys(&view.query_rows_flags(-2, TBL_NOADVANCE).expect("rows")),
        vec![2, 3]
    );
    assert_eq!(view.query_position().row, 3);
    assert_eq!(keys(&view.query_rows(-10).expect("rows")), vec![1, 2, 3]);
    assert_eq!(view.query_position().row, 0);
    assert_eq!(keys(&view.query_rows(i32::MAX).expect("rows")).len(), 5);
    assert_eq!(keys(&view.query_rows(i32::MIN).expect("rows")).len(), 5);
}

#[test]
fn seek_row_reports_rows_moved() {
    let data = table_of(5);
    let mut view = data.view();
    assert_eq!(view.seek_row(BOOKMARK_BEGINNING, 2), Ok(2));
    assert_eq!(view.seek_row(BOOKMARK_CURRENT, 1), Ok(1));
    assert_eq!(view.query_position().row, 3);
    assert_eq!(view.seek_row(BOOKMARK_CURRENT, 10), Ok(2));
    assert_eq!(view.seek_row(BOOKMARK_END, -2), Ok(-2));
    assert_eq!(keys(&view.query_rows(1).expect("rows")), vec![4]);
    assert_eq!(view.seek_row(BOOKMARK_CURRENT, -100), Ok(-4));
    assert_eq!(view.seek_row(BOOKMARK_BEGINNING, -1), Ok(0));
    assert_eq!(view.seek_row(BOOKMARK_END, 1), Ok(0));
    assert_eq!(
        view.seek_row(Bookmark(77), 0).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
    assert_eq!(
        view.query_position(),
        TablePosition {
            row: 5,
            numerator: 5,
            denominator: 5
        }
    );
    let empty = TableData::new().view();
    assert_eq!(
        empty.query_position(),
        TablePosition {
            row: 0,
            numerator: 0,
            denominator: 1
        }
    );
}

#[test]
fn bookmarks_follow_their_row_and_expire() {
    let data = table_of(4);
    let mut view = data.view();
    view.seek_row(BOOKMARK_BEGINNING, 2).expect("seek");
    let on_3 = view.create_bookmark();
    view.seek_row(BOOKMARK_BEGINNING, 1).expect("seek");
    let on_2 = view.create_bookmark();
    assert_ne!(on_3, on_2);
    assert!(on_3.0 >= 3 && on_2.0 >= 3, "never a predefined bookmark");

    // A row added before it (under the sort) leaves the bookmark on its row.
    view.sort_table(&[SortKey::ascend(PR_STATUS_CODE)])
        .expect("sort");
    // ...but a sort drops bookmarks.
    assert_eq!(
        view.seek_row(on_3, 0).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
    view.seek_row(BOOKMARK_BEGINNING, 2).expect("seek");
    let on_3 = view.create_bookmark();
    data.add_row(row(9, "first", 0)).expect("add");
    view.seek_row(on_3, 0).expect("seek to bookmark");
    assert_eq!(keys(&view.query_rows(1).expect("rows")), vec![3]);

    // Its row deleted: the bookmark moves to the next row.
    data.delete_row(&[3]).expect("delete");
    view.seek_row(on_3, 0).expect("seek to bookmark");
    assert_eq!(keys(&view.query_rows(1).expect("rows")), vec![4]);

    // Find from a bookmark; freed, it is invalid everywhere.
    view.find_row(&code_is(4), on_3, false).expect("find");
    view.free_bookmark(on_3).expect("free");
    assert_eq!(
        view.free_bookmark(on_3).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
    assert_eq!(
        view.seek_row(on_3, 0).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
    assert_eq!(
        view.find_row(&code_is(4), on_3, false).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
    view.free_bookmark(BOOKMARK_CURRENT)
        .expect("predefined: nothing to free");

    // Restrict drops bookmarks too, even Restrict(None).
    let kept = view.create_bookmark();
    view.restrict(None).expect("restrict");
    assert_eq!(
        view.seek_row(kept, 0).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
    // Bookmarks belong to their view.
    let mut other = data.view();
    assert_eq!(
        other.seek_row(on_2, 0).map_err(|e| e.code),
        Err(MapiCode::InvalidBookmark)
    );
}

#[test]
fn sort_on_several_keys() {
    let data = TableData::new();
    // (key, name, code)
    for (k, name, code) in [
        (1, "b", 1),
        (2, "a", 2),
        (3, "B", 1),
        (4, "a", 1),
        (5, "c", 2),
    ] {
        data.add_row(row(k, name, code)).expect("add");
    }
    data.add_row(update(6, PR_RESOURCE_TYPE, PropValue::Long(1)))
        .expect("add row without the sort columns");
    let mut view = data.view();

    view.sort_table(&[
        SortKey::descend(PR_STATUS_CODE),
        SortKey::ascend(PR_DISPLAY_NAME),
    ])
    .expect("sort");
    assert_eq!(
        view.query_sort_order(),
        vec![
            SortKey::descend(PR_STATUS_CODE),
            SortKey::ascend(PR_DISPLAY_NAME)
        ]
    );
    // code 2 first (a, c), then code 1 (a, then "B" and "b", which tie ignoring case and then
    // go by exact text),
    // then the row with neither column.
    assert_eq!(
        keys(&view.query_rows(10).expect("rows")),
        vec![2, 5, 4, 3, 1, 6]
    );

    // Sorting rewinds; ties stay in insertion order.
    view.sort_table(&[SortKey::ascend(PR_STATUS_CODE)])
        .expect("sort");
    assert_eq!(view.query_position().row, 0);
    assert_eq!(
        keys(&view.query_rows(10).expect("rows")),
        vec![1, 3, 4, 2, 5, 6]
    );

    // Descending by name: missing still last.
    view.sort_table(&[SortKey::descend(PR_DISPLAY_NAME)])
        .expect("sort");
    assert_eq!(
        keys(&view.query_rows(10).expect("rows")),
        vec![5, 1, 3, 2, 4, 6]
    );

    // No keys: insertion order.
    view.sort_table(&[]).expect("unsort");
    assert_eq!(
        keys(&view.query_rows(10).expect("rows")),
        vec![1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        view.sort_table(&[SortKey::ascend(crate::tag::PR_MESSAGE_RECIPIENTS)])
            .map_err(|e| e.code),
        Err(MapiCode::TooComplex)
    );
}

#[test]
fn restrict_filters_rewinds_and_validates() {
    let data = table_of(5);
    let mut view = data.view();
    view.query_rows(3).expect("rows");
    view.restrict(Some(code_is_not(2))).expect("restrict");
    assert_eq!(view.query_position().row, 0, "Restrict rewinds");
    assert_eq!(view.get_row_count(), 4);
    assert_eq!(keys(&view.query_rows(10).expect("rows")), vec![1, 3, 4, 5]);

    // A restriction the table cannot evaluate is refused and the view stays as it was.
    let bad = Restriction::Property {
        relop: RelOp::Eq,
        tag: PR_STATUS_CODE,
        value: PropValue::Unicode("x".into()),
    };
    assert_eq!(
        view.restrict(Some(bad.clone())).map_err(|e| e.code),
        Err(MapiCode::TooComplex)
    );
    assert_eq!(view.get_row_count(), 4);
    assert_eq!(
        view.find_row(&bad, BOOKMARK_BEGINNING, false)
            .map_err(|e| e.code),
        Err(MapiCode::TooComplex)
    );

    // Live: a change to the rows shows at once.
    data.modify_row(update(1, PR_STATUS_CODE, PropValue::Long(2)))
        .expect("modify");
    assert_eq!(view.get_row_count(), 3);

    view.restrict(None).expect("clear");
    assert_eq!(view.get_row_count(), 5);
}

#[test]
fn find_row() {
    let data = table_of(5);
    let mut view = data.view();
    // By instance key, as every table must.
    view.find_row(&key_is(3), BOOKMARK_BEGINNING, false)
        .expect("find by instance key");
    assert_eq!(keys(&view.query_rows(1).expect("rows")), vec![3]);
    // Forward from the current row includes it; not found leaves the cursor alone.
    view.seek_row(BOOKMARK_BEGINNING, 3).expect("seek");
    assert_eq!(
        view.find_row(&key_is(3), BOOKMARK_CURRENT, false)
            .map_err(|e| e.code),
        Err(MapiCode::NotFound)
    );
    assert_eq!(view.query_position().row, 3);
    view.find_row(&key_is(4), BOOKMARK_CURRENT, false)
        .expect("the current row itself");
    assert_eq!(view.query_position().row, 3);

    // Backward starts at the row before the bookmark.
    assert_eq!(
        view.find_row(&key_is(4), BOOKMARK_CURRENT, true)
            .map_err(|e| e.code),
        Err(MapiCode::NotFound)
    );
    view.find_row(&key_is(2), BOOKMARK_CURRENT, true)
        .expect("backward");
    assert_eq!(view.query_position().row, 1);
    view.find_row(&key_is(5), BOOKMARK_END, true)
        .expect("backward from the end starts at the last row");
    assert_eq!(view.query_position().row, 4);
    assert_eq!(
        view.find_row(&key_is(5), BOOKMARK_END, false)
            .map_err(|e| e.code),
        Err(MapiCode::NotFound)
    );
    // Only rows in the view are found.
    view.restrict(Some(code_is_not(2))).expect("restrict");
    assert_eq!(
        view.find_row(&key_is(2), BOOKMARK_BEGINNING, false)
            .map_err(|e| e.code),
        Err(MapiCode::NotFound)
    );
    // Position is within the restricted, sorted view.
    view.sort_table(&[SortKey::descend(PR_STATUS_CODE)])
        .expect("sort");
    view.find_row(&key_is(1), BOOKMARK_BEGINNING, false)
        .expect("find");
    assert_eq!(view.query_position().row, 3);
}

#[test]
fn cursor_stays_with_its_row() {
    let data = table_of(4);
    let mut view = data.view();
    view.seek_row(BOOKMARK_BEGINNING, 2).expect("seek"); // on row 3
    // Deleting a row before the cursor keeps it on row 3.
    data.delete_row(&[1]).expect("delete");
    assert_eq!(view.query_position().row, 1);
    assert_eq!(
        keys(&view.query_rows_flags(1, TBL_NOADVANCE).expect("rows")),
        vec![3]
    );
    // A row added before the cursor, under the sort, keeps it on row 3.
    view.sort_table(&[SortKey::ascend(PR_STATUS_CODE)])
        .expect("sort");
    view.find_row(&key_is(3), BOOKMARK_BEGINNING, false)
        .expect("find");
    data.add_row(row(7, "early", 0)).expect("add");
    assert_eq!(
        keys(&view.query_rows_flags(1, TBL_NOADVANCE).expect("rows")),
        vec![3]
    );
    // The cursor's row moves under the sort: the cursor goes with it.
    data.modify_row(update(3, PR_STATUS_CODE, PropValue::Long(100)))
        .expect("modify");
    assert_eq!(view.query_position().row, 3);
    assert_eq!(
        keys(&view.query_rows_flags(1, TBL_NOADVANCE).expect("rows")),
        vec![3]
    );
    // The cursor's row leaves the view: the cursor is on the row after it (here: the end).
    data.delete_row(&[3]).expect("delete");
    assert_eq!(view.query_position().row, 3);
    assert!(view.query_rows(1).expect("rows").is_empty());
    // At the end, rows added at the end are read next.
    data.add_row(row(8, "late", 50)).expect("add");
    assert_eq!(keys(&view.query_rows(5).expect("rows")), vec![8]);
    // A fresh view, before reading, sees rows added at the beginning.
    let mut fresh = data.view();
    fresh
        .sort_table(&[SortKey::ascend(PR_STATUS_CODE)])
        .expect("sort");
    data.add_row(row(9, "earliest", -1)).expect("add");
    assert_eq!(keys(&fresh.query_rows(1).expect("rows")), vec![9]);
}

#[test]
fn hr_query_all_rows_applies_and_caps() {
    let data = table_of(5);
    let mut view = data.view();
    view.query_rows(2).expect("rows");
    let all = hr_query_all_rows(&mut view, None, None, None, 0).expect("all");
    assert_eq!(keys(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!(view.query_position().row, 5);

    let some = hr_query_all_rows(
        &mut view,
        Some(&[PR_DISPLAY_NAME]),
        Some(&code_is_not(3)),
        Some(&[SortKey::descend(PR_STATUS_CODE)]),
        4,
    )
    .expect("exactly the cap is fine");
    let names: Vec<&str> = some
        .iter()
        .map(|r| {
            assert_eq!(r.props.len(), 1);
            r.props[0].value.as_str().expect("name")
        })
        .collect();
    assert_eq!(names, vec!["r5", "r4", "r2", "r1"]);
    // The view keeps what was applied.
    assert_eq!(view.get_row_count(), 4);
    assert_eq!(view.query_columns(), vec![PR_DISPLAY_NAME]);

    let err = hr_query_all_rows(&mut view, None, None, None, 3).expect_err("too big");
    assert_eq!(err.code, MapiCode::TableTooBig);
    assert_eq!(view.query_position().row, 0);
    assert_eq!(
        hr_query_all_rows(&mut view, Some(&[]), None, None, 0).map_err(|e| e.code),
        Err(MapiCode::InvalidParameter)
    );
}

#[test]
fn notifications_respect_the_restriction() {
    let data = table_of(3);
    let mut view = data.view();
    view.restrict(Some(code_is_not(0))).expect("restrict");
    view.set_columns(&[PR_INSTANCE_KEY, PR_STATUS_CODE])
        .expect("columns");
    let (_, seen) = recorder(&mut view);

    // Stays visible and changes: modified, with the view's columns.
    data.modify_row(update(2, PR_STATUS_CODE, PropValue::Long(20)))
        .expect("modify");
    let n = take(&seen);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].event, TableEvent::RowModified);
    assert_eq!(n[0].hresult, MapiCode::Ok);
    assert_eq!(n[0].instance_key, vec![2]);
    assert_eq!(n[0].prior_instance_key, Some(vec![1]));
    assert_eq!(
        n[0].row.props,
        vec![
            Prop::new(PR_INSTANCE_KEY, PropValue::Binary(vec![2])),
            Prop::new(PR_STATUS_CODE, PropValue::Long(20)),
        ]
    );

    // A merge that changes nothing: nothing.
    data.modify_row(update(2, PR_STATUS_CODE, PropValue::Long(20)))
        .expect("modify");
    data.replace_row(data.row(&[2]).expect("row"))
        .expect("replace");
    assert!(take(&seen).is_empty());

    // Leaves the restriction: deleted.
    data.modify_row(update(1, PR_STATUS_CODE, PropValue::Long(0)))
        .expect("modify");
    let n = take(&seen);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].event, TableEvent::RowDeleted);
    assert_eq!(n[0].instance_key, vec![1]);
    assert_eq!(n[0].prior_instance_key, None);
    assert!(n[0].row.props.is_empty());

    // Hidden before and after, changed or deleted: nothing.
    data.modify_row(update(1, PR_DISPLAY_NAME, PropValue::Unicode("x".into())))
        .expect("modify");
    data.add_row(row(4, "hidden", 0)).expect("add");
    data.delete_row(&[4]).expect("delete");
    assert!(take(&seen).is_empty());

    // Enters the restriction: added, placed after nothing (it is first again).
    data.modify_row(update(1, PR_STATUS_CODE, PropValue::Long(1)))
        .expect("modify");
    let n = take(&seen);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].event, TableEvent::RowAdded);
    assert_eq!(n[0].prior_instance_key, None);

    // Added outright, and deleted outright.
    data.add_row(row(5, "new", 5)).expect("add");
    data.delete_row(&[3]).expect("delete");
    let n = take(&seen);
    assert_eq!(
        n.iter().map(|n| n.event).collect::<Vec<_>>(),
        vec![TableEvent::RowAdded, TableEvent::RowDeleted]
    );
    assert_eq!(n[0].prior_instance_key, Some(vec![3]));
    assert_eq!(n[1].instance_key, vec![3]);
}

#[test]
fn prior_instance_key_follows_the_sort_and_columns_at_the_time() {
    let data = table_of(3);
    let mut view = data.view();
    view.sort_table(&[SortKey::descend(PR_STATUS_CODE)])
        .expect("sort");
    view.set_columns(&[PR_DISPLAY_NAME]).expect("columns");
    let (_, seen) = recorder(&mut view);

    // Order 3, 2, 1; a row with code 2 sorts after the existing 2 (ties keep insertion order).
    data.add_row(row(4, "four", 2)).expect("add");
    // Code 9 sorts first: prior is PR_NULL.
    data.add_row(row(5, "five", 9)).expect("add");
    view.set_columns(&[PR_STATUS_CODE]).expect("columns");
    // Row 1 moves from last to between 5 and 3.
    data.modify_row(update(1, PR_STATUS_CODE, PropValue::Long(4)))
        .expect("modify");

    let n = take(&seen);
    assert_eq!(n.len(), 3);
    assert_eq!(n[0].event, TableEvent::RowAdded);
    assert_eq!(n[0].prior_instance_key, Some(vec![2]));
    assert_eq!(
        n[0].row.props,
        vec![Prop::new(
            PR_DISPLAY_NAME,
            PropValue::Unicode("four".into())
        )]
    );
    assert_eq!(n[1].prior_instance_key, None);
    assert_eq!(n[2].event, TableEvent::RowModified);
    assert_eq!(n[2].prior_instance_key, Some(vec![5]));
    assert_eq!(
        n[2].row.props,
        vec![Prop::new(PR_STATUS_CODE, PropValue::Long(4))]
    );
}

#[test]
fn each_view_sees_its_own_notifications() {
    let data = table_of(2);
    let mut all = data.view();
    let mut only_1 = data.view();
    only_1.restrict(Some(code_is(1))).expect("restrict");
    let (_, seen_all) = recorder(&mut all);
    let (_, seen_1) = recorder(&mut only_1);
    data.modify_row(update(2, PR_DISPLAY_NAME, PropValue::Unicode("two".into())))
        .expect("modify");
    assert_eq!(take(&seen_all).len(), 1);
    assert!(take(&seen_1).is_empty());
}

#[test]
fn unadvise_and_dropped_views() {
    let data = table_of(1);
    let mut view = data.view();
    let (first, seen_first) = recorder(&mut view);
    let (second, seen_second) = recorder(&mut view);
    assert_ne!(first, second);
    assert_ne!(first.0, 0);

    view.unadvise(first).expect("unadvise");
    assert_eq!(
        view.unadvise(first).map_err(|e| e.code),
        Err(MapiCode::NotFound)
    );
    data.add_row(row(2, "r2", 2)).expect("add");
    assert!(take(&seen_first).is_empty());
    assert_eq!(take(&seen_second).len(), 1);

    drop(view);
    data.add_row(row(3, "r3", 3)).expect("add");
    assert!(take(&seen_second).is_empty());
    // The dropped view's slot is gone too.
    assert_eq!(lock(&data.inner).views.len(), 0);
}

#[test]
fn sinks_run_unlocked_and_may_use_the_table() {
    let data = table_of(1);
    let shared = Arc::new(Mutex::new(data.view()));
    let observed = Arc::new(Mutex::new(Vec::new()));
    let (sink_data, sink_view, sink_observed) =
        (data.clone(), Arc::clone(&shared), Arc::clone(&observed));
    shared
        .lock()
        .expect("lock")
        .advise(Arc::new(move |n: &TableNotification| {
            // Reads through the data and through a view; would deadlock if called locked.
            let rows = sink_data.rows().len();
            let count = sink_view.lock().expect("lock").get_row_count();
            sink_observed
                .lock()
                .expect("lock")
                .push((n.event, rows, count));
            // And may change the table: the nested change is delivered after this one.
            if n.instance_key == vec![2] {
                sink_data
                    .modify_row(update(
                        2,
                        PR_DISPLAY_NAME,
                        PropValue::Unicode("seen".into()),
                    ))
                    .expect("modify from a sink");
            }
        }));
    data.add_row(row(2, "r2", 2)).expect("add");
    let observed = observed.lock().expect("lock").clone();
    assert_eq!(
        observed,
        vec![
            (TableEvent::RowAdded, 2, 2),
            (TableEvent::RowModified, 2, 2)
        ]
    );
}

#[test]
fn changes_from_several_threads() {
    let data = TableData::new();
    let mut view = data.view();
    let (_, seen) = recorder(&mut view);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let data = data.clone();
            std::thread::spawn(move || {
                for i in 0..25u8 {
                    data.add_row(row(t * 25 + i, "x", i32::from(i)))
                        .expect("add");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(view.get_row_count(), 100);
    assert_eq!(take(&seen).len(), 100);
}

#[test]
fn follow_moves_positions_like_the_module_says() {
    // Removed before / at / after the position.
    assert_eq!(follow(3, Some(1), None), 2);
    assert_eq!(follow(3, Some(3), None), 3);
    assert_eq!(follow(3, Some(4), None), 3);
    // Added before / at / after.
    assert_eq!(follow(3, None, Some(1)), 4);
    assert_eq!(follow(3, None, Some(3)), 3);
    assert_eq!(follow(3, None, Some(5)), 3);
    // Moved: the row at the position takes it along; others shift around it.
    assert_eq!(follow(3, Some(3), Some(0)), 0);
    assert_eq!(follow(2, Some(1), Some(3)), 1);
    assert_eq!(follow(2, Some(3), Some(0)), 3);
    assert_eq!(follow(2, Some(2), Some(2)), 2);
}

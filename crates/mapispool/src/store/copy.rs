//! `mapispool store copy --to URL`: a SQLite store's messages into a PostgreSQL store, so a
//! single machine's queue moves into a database that several nodes share.
//!
//! What moves: every visible message (Inbox, Outbox, Sent Items, Deleted Items) with all its
//! columns — its id (so its entry ID stays valid), the queue state, attempts, retry times and
//! last error — its recipients with their delivery states, and its body (chunk by chunk,
//! whether SQLite kept it in rows or in a file); then the inbound dedupe table and the
//! inbound sync state. Leases are dropped: no spooler serves the source while it is copied.
//!
//! Each message becomes visible in the target in one transaction that also records its source
//! id in `store_copied`, so a copy cut off at any point (a crash, the database going away) is
//! resumed by running it again: it copies only what `store_copied` does not list, and never a
//! message twice, even one the target's nodes have since sent and deleted. A body is first
//! written under a hidden staging row (folder 0), which a rerun removes before writing again.
//!
//! A target that holds messages is refused unless they are this same copy's (its
//! `store_copied` names this source and no other): copying into a queue in use by another
//! store would mix two stores' ids.

use std::collections::HashSet;

use mapi::constants::SUBMITFLAG_LOCKED;
use mapi::{FileTime, MapiCode, MapiError, MapiResult};
use sqlx::{QueryBuilder, Row as _};

use super::postgres::PgStore;
use super::shared::{STAGING_FOLDER, ft};
use super::sqlite::SqliteStore;
use super::{MessageId, Store};

/// What one run of [`copy_sqlite_to_postgres`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Messages copied by this run.
    pub copied: u64,
    /// Messages an earlier run had copied already (skipped).
    pub already_copied: u64,
    /// Of the copied, how many were queued (in the Outbox, to be sent by the target's nodes).
    pub queued: u64,
    /// Inbound dedupe and sync-state rows the target did not have yet.
    pub inbound_rows: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bool,
}

/// The columns of `messages` both schemas have, in one order.
const MESSAGE_COLUMNS: &[(&str, Kind)] = &[
    ("id", Kind::Int),
    ("folder", Kind::Int),
    ("staged_at", Kind::Int),
    ("message_class", Kind::Text),
    ("subject", Kind::Text),
    ("sender_name", Kind::Text),
    ("sender_address", Kind::Text),
    ("envelope_from", Kind::Text),
    ("internet_message_id", Kind::Text),
    ("message_flags", Kind::Int),
    ("submit_flags", Kind::Int),
    ("client_submit_time", Kind::Int),
    ("provider_submit_time", Kind::Int),
    ("delivery_time", Kind::Int),
    ("deferred_delivery_time", Kind::Int),
    ("delete_after_submit", Kind::Bool),
    ("priority", Kind::Int),
    ("message_size", Kind::Int),
    ("body_chunks", Kind::Int),
    ("transport", Kind::Text),
    ("server_id", Kind::Text),
    ("ndr_reason_code", Kind::Int),
    ("ndr_diag_code", Kind::Int),
    ("in_queue", Kind::Bool),
    ("attempts", Kind::Int),
    ("last_error", Kind::Text),
    ("next_attempt_at", Kind::Int),
    ("lease_owner", Kind::Text),
    ("lease_until", Kind::Int),
    ("dsn_notify", Kind::Text),
    ("dsn_ret", Kind::Text),
];

const RECIPIENT_COLUMNS: &[(&str, Kind)] = &[
    ("message_id", Kind::Int),
    ("row_id", Kind::Int),
    ("display_name", Kind::Text),
    ("address", Kind::Text),
    ("addrtype", Kind::Text),
    ("recipient_type", Kind::Int),
    ("responsibility", Kind::Bool),
    ("state", Kind::Text),
    ("attempts", Kind::Int),
    ("last_error", Kind::Text),
    ("retry_at", Kind::Int),
    ("ndr_reason_code", Kind::Int),
    ("ndr_diag_code", Kind::Int),
];

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
}

fn column_list(columns: &[(&str, Kind)]) -> String {
    columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_row(row: &sqlx::sqlite::SqliteRow, columns: &[(&str, Kind)]) -> MapiResult<Vec<Value>> {
    columns
        .iter()
        .map(|(name, kind)| {
            let value = match kind {
                Kind::Int => row.try_get::<Option<i64>, _>(*name).map(Value::Int),
                Kind::Text => row.try_get::<Option<String>, _>(*name).map(Value::Text),
                Kind::Bool => row.try_get::<bool, _>(*name).map(Value::Bool),
            };
            value.map_err(|e| {
                MapiError::new(
                    MapiCode::CorruptStore,
                    format!("reading column {name} of the source store: {e}"),
                )
            })
        })
        .collect()
}

fn push_values(q: &mut QueryBuilder<sqlx::Postgres>, values: Vec<Value>) {
    q.push("(");
    let mut sep = q.separated(", ");
    for value in values {
        match value {
            Value::Int(v) => sep.push_bind(v),
            Value::Text(v) => sep.push_bind(v),
            Value::Bool(v) => sep.push_bind(v),
        };
    }
    q.push(")");
}

fn set(values: &mut [Value], columns: &[(&str, Kind)], name: &str, value: Value) {
    if let Some(i) = columns.iter().position(|(n, _)| *n == name) {
        values[i] = value;
    }
}

fn get_int(values: &[Value], columns: &[(&str, Kind)], name: &str) -> Option<i64> {
    columns
        .iter()
        .position(|(n, _)| *n == name)
        .and_then(|i| match &values[i] {
            Value::Int(v) => *v,
            _ => None,
        })
}

/// Copies every message of `source` that `target` does not have from an earlier run of this
/// same copy (`source_name` says which source, in `store_copied`), then the inbound state.
/// The caller makes sure no spooler serves `source` meanwhile (the daemon lock).
///
/// Errors: `MAPI_E_COLLISION` when `target` holds messages not from this copy; store errors of
/// either side (a copy cut off is resumed by running it again).
pub async fn copy_sqlite_to_postgres(
    source: &SqliteStore,
    target: &PgStore,
    source_name: &str,
) -> MapiResult<CopyReport> {
    let src = source.pool();
    let dst = target.pool();
    let sdb = |what: &'static str| {
        let path = source.path().display().to_string();
        move |e: sqlx::Error| {
            MapiError::new(
                MapiCode::DiskError,
                format!("{what} in the source store {path}: {e}"),
            )
        }
    };
    let tdb = |what: &'static str| target.db(what);

    let sources: Vec<String> = sqlx::query_scalar("SELECT DISTINCT source FROM store_copied")
        .fetch_all(dst)
        .await
        .map_err(tdb("reading what was copied before"))?;
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE folder <> $1")
        .bind(STAGING_FOLDER)
        .fetch_one(dst)
        .await
        .map_err(tdb("counting messages"))?;
    if sources.iter().any(|s| s != source_name) || (visible > 0 && sources.is_empty()) {
        let from = if sources.is_empty() {
            "messages of its own".to_owned()
        } else {
            format!("messages copied from {}", sources.join(", "))
        };
        return Err(MapiError::new(
            MapiCode::Collision,
            format!(
                "the target store {} is not empty: it holds {from}; copy into an empty database \
                 (or rerun the same copy, from {source_name}, to resume it)",
                target.server()
            ),
        ));
    }

    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM messages WHERE folder <> ? ORDER BY id")
        .bind(STAGING_FOLDER)
        .fetch_all(src)
        .await
        .map_err(sdb("listing messages"))?;
    let done: HashSet<i64> =
        sqlx::query_scalar::<_, i64>("SELECT message_id FROM store_copied WHERE source = $1")
            .bind(source_name)
            .fetch_all(dst)
            .await
            .map_err(tdb("reading what was copied before"))?
            .into_iter()
            .collect();
    // New messages of the target's own nodes take ids past the source's, so a resumed copy
    // never meets one of them under a source id.
    if let Some(max) = ids.last() {
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('messages', 'id'), \
             GREATEST($1, (SELECT COALESCE(max(id), 1) FROM messages)))",
        )
        .bind(*max)
        .execute(dst)
        .await
        .map_err(tdb("moving the id sequence past the copied ids"))?;
    }

    let mut report = CopyReport::default();
    let select_message = format!(
        "SELECT {} FROM messages WHERE id = ?",
        column_list(MESSAGE_COLUMNS)
    );
    let select_recipients = format!(
        "SELECT {} FROM recipients WHERE message_id = ? ORDER BY row_id",
        column_list(RECIPIENT_COLUMNS)
    );
    for id in ids {
        if done.contains(&id) {
            report.already_copied += 1;
            continue;
        }
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(select_message.as_str()))
            .bind(id)
            .fetch_optional(src)
            .await
            .map_err(sdb("reading a message"))?
        else {
            continue;
        };
        let mut values = read_row(&row, MESSAGE_COLUMNS)?;
        let queued = values
            .iter()
            .zip(MESSAGE_COLUMNS)
            .any(|(v, (name, _))| *name == "in_queue" && *v == Value::Bool(true));
        let folder = get_int(&values, MESSAGE_COLUMNS, "folder").unwrap_or(0);
        let flags = get_int(&values, MESSAGE_COLUMNS, "submit_flags").unwrap_or(0);
        // Nobody serves the source now: a lease it holds is a dead spooler's.
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "submit_flags",
            Value::Int(Some(flags & !i64::from(SUBMITFLAG_LOCKED))),
        );
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "lease_owner",
            Value::Text(None),
        );
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "lease_until",
            Value::Int(None),
        );
        // Hidden until its body and recipients are in.
        set(
            &mut values,
            MESSAGE_COLUMNS,
            "folder",
            Value::Int(Some(STAGING_FOLDER)),
        );
        let recipients = sqlx::query(sqlx::AssertSqlSafe(select_recipients.as_str()))
            .bind(id)
            .fetch_all(src)
            .await
            .map_err(sdb("reading recipients"))?
            .iter()
            .map(|r| read_row(r, RECIPIENT_COLUMNS))
            .collect::<MapiResult<Vec<_>>>()?;

        // What a run cut off here left: its staging row and chunks.
        sqlx::query("DELETE FROM messages WHERE id = $1 AND folder = $2")
            .bind(id)
            .bind(STAGING_FOLDER)
            .execute(dst)
            .await
            .map_err(tdb("removing a half-copied message"))?;
        let mut insert = QueryBuilder::<sqlx::Postgres>::new(format!(
            "INSERT INTO messages ({}) VALUES ",
            column_list(MESSAGE_COLUMNS)
        ));
        push_values(&mut insert, values);
        insert
            .build()
            .execute(dst)
            .await
            .map_err(tdb("copying a message"))?;
        // The body one chunk at a time, whichever way the source keeps it.
        let count = source.body_chunk_count(MessageId(id)).await?;
        for seq in 0..count {
            let chunk = source
                .body_chunk(MessageId(id), seq)
                .await?
                .ok_or_else(|| {
                    MapiError::new(
                        MapiCode::CorruptStore,
                        format!("message {id} of the source store lacks body chunk {seq}"),
                    )
                })?;
            sqlx::query("INSERT INTO body_chunks (message_id, seq, data) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(i64::from(seq))
                .bind(chunk)
                .execute(dst)
                .await
                .map_err(tdb("copying a message body"))?;
        }

        // Visible, with its recipients and its record, at once.
        let mut tx = dst.begin().await.map_err(tdb("copying a message"))?;
        if !recipients.is_empty() {
            let mut insert = QueryBuilder::<sqlx::Postgres>::new(format!(
                "INSERT INTO recipients ({}) VALUES ",
                column_list(RECIPIENT_COLUMNS)
            ));
            for (i, values) in recipients.into_iter().enumerate() {
                if i > 0 {
                    insert.push(", ");
                }
                push_values(&mut insert, values);
            }
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(tdb("copying recipients"))?;
        }
        sqlx::query("UPDATE messages SET folder = $2, body_chunks = $3 WHERE id = $1")
            .bind(id)
            .bind(folder)
            .bind(i64::from(count))
            .execute(&mut *tx)
            .await
            .map_err(tdb("copying a message"))?;
        sqlx::query("INSERT INTO store_copied (message_id, source, copied_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(source_name)
            .bind(ft(FileTime::now()))
            .execute(&mut *tx)
            .await
            .map_err(tdb("recording a copied message"))?;
        tx.commit().await.map_err(tdb("copying a message"))?;
        report.copied += 1;
        if queued {
            report.queued += 1;
        }
    }

    // Inbound state: what was downloaded already (so it is not downloaded again) and where
    // each inbound transport stands. Rows the target has (its nodes' own) win.
    let mut tx = dst.begin().await.map_err(tdb("copying inbound state"))?;
    let seen: Vec<(String, String, Option<i64>, i64)> =
        sqlx::query_as("SELECT transport, server_id, message_id, received_at FROM inbound_seen")
            .fetch_all(src)
            .await
            .map_err(sdb("reading inbound state"))?;
    for (transport, server_id, message_id, received_at) in seen {
        let done = sqlx::query(
            "INSERT INTO inbound_seen (transport, server_id, message_id, received_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(transport)
        .bind(server_id)
        .bind(message_id)
        .bind(received_at)
        .execute(&mut *tx)
        .await
        .map_err(tdb("copying inbound state"))?;
        report.inbound_rows += done.rows_affected();
    }
    let state: Vec<(String, String, String)> =
        sqlx::query_as("SELECT transport, key, value FROM sync_state")
            .fetch_all(src)
            .await
            .map_err(sdb("reading inbound sync state"))?;
    for (transport, key, value) in state {
        let done = sqlx::query(
            "INSERT INTO sync_state (transport, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(transport)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(tdb("copying inbound sync state"))?;
        report.inbound_rows += done.rows_affected();
    }
    tx.commit().await.map_err(tdb("copying inbound state"))?;
    Ok(report)
}

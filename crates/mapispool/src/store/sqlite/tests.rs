//! Tests of what only the SQLite backend does: large bodies in files beside the database, the
//! queue's questions answered through indexes.

use std::time::Duration;

use mapi::FileTime;
use sha2::{Digest, Sha256};

use super::bodies::FILE_BODY_AT;
use super::*;
use crate::store::{DeliveryResult, InboundDelivery, InboundMessage, LeaseFilter};

const LEASE: Duration = Duration::from_secs(300);

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("store.db"))
        .await
        .expect("open");
    (dir, store)
}

fn message(to: &str) -> NewMessage {
    NewMessage {
        subject: "big".into(),
        recipients: vec![NewRecipient::to(to)],
        ..NewMessage::default()
    }
}

/// A body of `len` bytes that differs with `seed`.
fn body(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn name_of(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn body_file(store: &SqliteStore, id: MessageId) -> Option<String> {
    sqlx::query_scalar("SELECT body_file FROM messages WHERE id = ?")
        .bind(id.0)
        .fetch_one(&store.pool)
        .await
        .expect("body_file")
}

async fn chunk_rows(store: &SqliteStore, id: MessageId) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM body_chunks WHERE message_id = ?")
        .bind(id.0)
        .fetch_one(&store.pool)
        .await
        .expect("count")
}

async fn deliver(store: &SqliteStore, id: MessageId) -> MessageDisposition {
    store
        .lease_due(
            "sp",
            FileTime::now(),
            LEASE,
            100,
            LeaseFilter {
                only: Some(id),
                ..LeaseFilter::default()
            },
        )
        .await
        .expect("lease");
    store
        .record_outcome(
            id,
            "sp",
            vec![RecipientOutcome {
                row_id: 0,
                result: DeliveryResult::Delivered,
            }],
            FileTime::now(),
        )
        .await
        .expect("outcome")
        .disposition
}

#[tokio::test]
async fn a_large_submitted_body_is_one_private_file_and_a_small_one_stays_inline() {
    let (_dir, store) = open().await;
    let big = body(FILE_BODY_AT + 17, 1);
    let rec = store
        .submit(message("a@example.org"), &big[..])
        .await
        .expect("submit");
    let name = body_file(&store, rec.id).await.expect("a body file");
    assert_eq!(name, name_of(&big));
    assert_eq!(
        chunk_rows(&store, rec.id).await,
        0,
        "not in the database too"
    );
    assert_eq!(store.bodies.modes(&name).expect("modes"), (0o700, 0o600));
    assert_eq!(store.bodies.tmp_count(), 0);
    assert_eq!(rec.message_size, big.len() as u64);
    assert_eq!(store.body_chunk_count(rec.id).await.expect("count"), 2);
    assert!(store.read_body_to_vec(rec.id).await.expect("read") == big);
    // Past the end: None, as for an inline body.
    assert_eq!(store.body_chunk(rec.id, 2).await.expect("chunk"), None);

    let small = body(FILE_BODY_AT - 1, 2);
    let rec = store
        .submit(message("a@example.org"), &small[..])
        .await
        .expect("submit");
    assert_eq!(body_file(&store, rec.id).await, None);
    assert_eq!(chunk_rows(&store, rec.id).await, 1);
    assert!(store.read_body_to_vec(rec.id).await.expect("read") == small);
}

#[tokio::test]
async fn identical_bodies_share_a_file_removed_with_its_last_message() {
    let (_dir, store) = open().await;
    let big = body(3 * FILE_BODY_AT, 3);
    let name = name_of(&big);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut m = message("a@example.org");
        m.delete_after_submit = true;
        ids.push(store.submit(m, &big[..]).await.expect("submit").id);
    }
    assert_eq!(body_file(&store, ids[0]).await, Some(name.clone()));
    assert_eq!(body_file(&store, ids[1]).await, Some(name.clone()));
    assert_eq!(deliver(&store, ids[0]).await, MessageDisposition::Deleted);
    assert!(store.bodies.exists(&name), "the other message still has it");
    assert!(store.read_body_to_vec(ids[1]).await.expect("read") == big);
    assert_eq!(deliver(&store, ids[1]).await, MessageDisposition::Deleted);
    assert!(
        !store.bodies.exists(&name),
        "collected after the last delete"
    );
}

#[tokio::test]
async fn orphans_and_stale_temporary_files_are_collected_at_open() {
    let (dir, store) = open().await;
    let big = body(FILE_BODY_AT, 4);
    let kept = store
        .submit(message("a@example.org"), &big[..])
        .await
        .expect("submit");
    let files = store.bodies.dir().to_path_buf();
    store.close().await;
    // What a crash leaves: a file renamed into place whose commit never happened, a write
    // that never finished (old; or by a process that is gone), one still being written by a
    // live process (this one), and a file that is not ours.
    let orphan = name_of(b"never committed");
    std::fs::write(files.join(&orphan), b"never committed").expect("orphan");
    let old = files.join("tmp/1.0.old");
    std::fs::write(&old, b"half").expect("old tmp");
    let a_day_ago = std::time::SystemTime::now() - Duration::from_secs(25 * 60 * 60);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .and_then(|f| f.set_modified(a_day_ago))
        .expect("age it");
    let fresh = files.join(format!("tmp/{}.0.fresh", std::process::id()));
    std::fs::write(&fresh, b"in progress").expect("fresh tmp");
    // A pid above the kernel's limit (4194304) exists for no process.
    let dead = files.join("tmp/4194305.0.dead");
    std::fs::write(&dead, b"killed").expect("dead tmp");
    std::fs::write(files.join("README"), b"not ours").expect("foreign");

    let store = SqliteStore::open(dir.path().join("store.db"))
        .await
        .expect("reopen");
    assert!(!files.join(&orphan).exists(), "the orphan is collected");
    assert!(!old.exists(), "the stale temporary file is removed");
    assert!(fresh.exists(), "a write in progress is left alone");
    assert!(!dead.exists(), "a dead writer's file is removed");
    assert!(
        files.join("README").exists(),
        "what is not ours is left alone"
    );
    assert!(store.bodies.exists(&name_of(&big)));
    assert!(store.read_body_to_vec(kept.id).await.expect("read") == big);
}

#[tokio::test]
async fn received_large_bodies_go_to_files_batched_and_streamed_and_duplicates_leave_none() {
    let (_dir, store) = open().await;
    let big = body(FILE_BODY_AT + 1000, 5);
    let other = body(2 * FILE_BODY_AT, 6);
    let small = body(100, 7);
    let batch = |id: &str, b: &[u8]| InboundDelivery {
        server_id: id.into(),
        message: InboundMessage::default(),
        body: b.to_vec(),
    };
    let stored = store
        .deliver_inbound_batch(
            "work",
            vec![
                batch("1", &big),
                batch("2", &small),
                batch("1", &other),
                batch("3", &other),
            ],
        )
        .await
        .expect("batch");
    assert_eq!(stored, [true, true, false, true]);
    store.sync().await.expect("sync");
    let inbox = store.messages(Folder::Inbox).await.expect("inbox");
    let by_server = |s: &str| {
        inbox
            .iter()
            .find(|m| m.server_id.as_deref() == Some(s))
            .expect("stored")
            .id
    };
    assert_eq!(body_file(&store, by_server("1")).await, Some(name_of(&big)));
    assert_eq!(body_file(&store, by_server("2")).await, None);
    assert!(store.read_body_to_vec(by_server("1")).await.expect("read") == big);
    assert!(store.read_body_to_vec(by_server("2")).await.expect("read") == small);
    assert!(store.read_body_to_vec(by_server("3")).await.expect("read") == other);
    assert_eq!(store.bodies.tmp_count(), 0, "the duplicate's file is gone");

    // The same batch again: nothing stored, nothing left behind.
    let again = store
        .deliver_inbound_batch("work", vec![batch("1", &big), batch("3", &other)])
        .await
        .expect("batch");
    assert_eq!(again, [false, false]);
    assert_eq!(store.bodies.tmp_count(), 0);

    // Streamed (a message too large for a batch).
    let streamed = body(5 * FILE_BODY_AT + 3, 8);
    let rec = store
        .deliver_inbound("work", "4", InboundMessage::default(), &streamed[..])
        .await
        .expect("deliver")
        .expect("new");
    assert_eq!(body_file(&store, rec.id).await, Some(name_of(&streamed)));
    assert_eq!(rec.message_size, streamed.len() as u64);
    assert!(store.read_body_to_vec(rec.id).await.expect("read") == streamed);
    let dup = store
        .deliver_inbound("work", "4", InboundMessage::default(), &streamed[..])
        .await
        .expect("deliver");
    assert!(dup.is_none());
    assert_eq!(store.bodies.tmp_count(), 0);
}

#[tokio::test]
async fn a_body_file_gone_under_a_live_message_is_a_corrupt_store_not_a_short_body() {
    let (_dir, store) = open().await;
    let big = body(FILE_BODY_AT, 9);
    let rec = store
        .submit(message("a@example.org"), &big[..])
        .await
        .expect("submit");
    std::fs::remove_file(store.bodies.dir().join(name_of(&big))).expect("remove");
    let e = store.read_body_to_vec(rec.id).await.expect_err("missing");
    assert_eq!(e.code, mapi::MapiCode::CorruptStore, "{e}");
}

/// The measurement behind [`FILE_BODY_AT`]: per size, the time per message of a submit (each
/// its own fsynced commit, as `mapispool submit` does) with the body in the database (chunks,
/// WAL, then the checkpoint writes them again: included, as a checkpoint at the end) and in a
/// file. By hand, in release mode, on the machine to measure:
/// `cargo test --release -p mapispool --lib -- --ignored body_threshold --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, by hand"]
async fn body_threshold() {
    for (size, n) in [
        (32 * 1024, 200),
        (64 * 1024, 200),
        (128 * 1024, 100),
        (256 * 1024, 100),
        (1024 * 1024, 40),
        (10 * 1024 * 1024, 6),
    ] {
        let mut line = format!("body_threshold: {:>6} KiB:", size / 1024);
        for (mode, at) in [("database", usize::MAX), ("file", 1)] {
            let mut times = Vec::new();
            // Three rounds, the median: the disk is shared.
            for round in 0..3 {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = SqliteStore::open(dir.path().join("store.db"))
                    .await
                    .expect("open")
                    .with_file_body_at(at);
                let started = std::time::Instant::now();
                for i in 0..n {
                    let b = body(size, i + round * 1000);
                    store
                        .submit(message("a@example.org"), &b[..])
                        .await
                        .expect("submit");
                }
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&store.pool)
                    .await
                    .expect("checkpoint");
                times.push(started.elapsed().as_secs_f64() * 1000.0 / f64::from(n));
                store.close().await;
            }
            times.sort_by(f64::total_cmp);
            line.push_str(&format!(" {mode} {:.2} ms/msg", times[1]));
        }
        eprintln!("{line}");
    }
}

/// The plan SQLite picks for `sql` (EXPLAIN QUERY PLAN), one step a line.
async fn plan(store: &SqliteStore, sql: &str, bind: i64) -> String {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
        .bind(bind)
        .fetch_all(&store.pool)
        .await
        .expect("plan");
    rows.iter()
        .map(|r| r.try_get::<String, _>("detail").expect("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Neither a `--where` on attempts (which the store answers itself: that it picks exactly the
/// right messages is `store::tests::queue_where_picks_the_same_messages_on_both_backends`) nor
/// the queue's counts read the messages table whole: the plans name indexes.
#[tokio::test]
async fn queue_filters_and_counts_use_indexes() {
    let (_dir, store) = open().await;
    let no_scan = |plan: &str| {
        assert!(
            plan.lines()
                .all(|l| !l.contains("SCAN messages") || l.contains("INDEX")),
            "{plan}"
        );
    };
    no_scan(
        &plan(
            &store,
            "SELECT id FROM messages WHERE id IN \
             (SELECT id FROM messages WHERE in_queue = 1 AND attempts > ?)",
            0,
        )
        .await,
    );
    let p = plan(
        &store,
        "SELECT id FROM messages WHERE in_queue = 1 AND lease_until > ?1 \
         UNION SELECT id FROM messages WHERE in_queue = 1 AND deferred_delivery_time > ?1 \
         UNION SELECT id FROM messages WHERE in_queue = 1 AND next_attempt_at > ?1",
        0,
    )
    .await;
    no_scan(&p);
    for index in [
        "messages_queue_leased",
        "messages_queue_deferred",
        "messages_queue_backoff",
    ] {
        assert!(p.contains(index), "{p}");
    }
    let p = plan(
        &store,
        "SELECT transport, COUNT(*) FROM messages WHERE in_queue = 1 AND ?1 = ?1 \
         GROUP BY transport",
        0,
    )
    .await;
    assert!(p.contains("messages_queue_transport"), "{p}");
}

/// Processes that each open the store, submit one message and exit (`mapispool submit`) write
/// that message and nothing else (no node row: no spooler starts), and leave the next one a
/// WAL of at most [`WAL_TRUNCATE_AT`] and one message's pages to rebuild its index from, not
/// one that grows with every message.
#[tokio::test]
async fn submit_processes_write_only_their_message_and_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    SqliteStore::open(&path)
        .await
        .expect("create")
        .close()
        .await;
    let wal = dir.path().join("store.db-wal");
    let mut largest = 0;
    let mut truncated = false;
    for i in 0..60 {
        let store = SqliteStore::open_for_submit(&path).await.expect("open");
        store
            .submit(message("a@example.org"), &body(2048, i)[..])
            .await
            .expect("submit");
        store.close_after_submit().await;
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        truncated |= size < largest;
        largest = largest.max(size);
    }
    assert!(truncated, "60 submits never checkpointed the WAL");
    assert!(
        largest <= WAL_TRUNCATE_AT + 128 * 1024,
        "the WAL grew to {largest} bytes"
    );
    let store = SqliteStore::open_for_submit(&path).await.expect("open");
    let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes")
        .fetch_one(store.pool())
        .await
        .expect("count nodes");
    assert_eq!(nodes, 0, "a submit registered a node");
    assert_eq!(store.outgoing_queue().await.expect("queue").len(), 60);
    store.close_after_submit().await;
}

/// The store's VFS (`vfs.rs`) opens a WAL that exists without creating it, and still creates
/// one that is missing: a submit after a clean close (which deletes the WAL) and one after a
/// submit (which leaves it) are both read back.
#[tokio::test]
async fn the_wal_is_reopened_when_it_exists_and_created_when_it_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let wal = dir.path().join("store.db-wal");
    SqliteStore::open(&path)
        .await
        .expect("create")
        .close()
        .await;
    assert!(!wal.exists(), "a clean close leaves no WAL");
    for round in 0..2 {
        let store = SqliteStore::open_for_submit(&path).await.expect("open");
        store
            .submit(message("a@example.org"), &body(100, round)[..])
            .await
            .expect("submit");
        store.close_after_submit().await;
        assert!(
            wal.exists(),
            "round {round}: the submit's commit is in the WAL"
        );
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.outgoing_queue().await.expect("queue").len(), 2);
    store.close().await;
}

#[tokio::test]
async fn a_store_opened_to_read_leaves_orphans_for_the_next_full_open() {
    let (dir, store) = open().await;
    let files = store.bodies.dir().to_path_buf();
    store.close().await;
    std::fs::create_dir_all(&files).expect("the bodies' directory");
    let orphan = name_of(b"never committed");
    std::fs::write(files.join(&orphan), b"never committed").expect("orphan");

    // A reader (`status`, `queue`, ...) neither scans nor writes.
    let reader = SqliteStore::open_to_read(dir.path().join("store.db"))
        .await
        .expect("open to read");
    assert!(reader.outgoing_queue().await.expect("queue").is_empty());
    reader.close().await;
    assert!(files.join(&orphan).exists(), "a reader leaves the orphan");

    // The daemon's or a flush's open collects it.
    let writer = SqliteStore::open(dir.path().join("store.db"))
        .await
        .expect("reopen");
    assert!(!files.join(&orphan).exists(), "the full open collects it");
    writer.close().await;
}

/// The migrations of a new store are applied in one transaction, with sqlx's bookkeeping as
/// its own migrator writes it (every version, its checksum, success), and a store left at an
/// older version by an older build is brought up to date, its data kept.
#[tokio::test]
async fn migrations_are_one_transaction_with_the_migrators_bookkeeping() {
    let applied = |pool: SqlitePool| async move {
        sqlx::query_as::<_, (i64, Vec<u8>, bool)>(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&pool)
        .await
        .expect("bookkeeping")
    };
    let ours: Vec<(i64, Vec<u8>, bool)> = MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.to_vec(), true))
        .collect();
    assert!(ours.len() > 2);

    let (dir, store) = open().await;
    assert_eq!(applied(store.pool.clone()).await, ours);
    assert!(schema_is_current(&store.pool).await);
    store.close().await;

    let old = dir.path().join("old.db");
    old_build_store(&old, None).await;
    let store = SqliteStore::open(&old).await.expect("upgrade");
    assert_eq!(applied(store.pool.clone()).await, ours);
    let subject: String = sqlx::query_scalar("SELECT subject FROM messages")
        .fetch_one(&store.pool)
        .await
        .expect("the old message");
    assert_eq!(subject, "kept");
    store.close().await;
}

/// An older build's store at `path`: its first two migrations, by sqlx's own migrator, and one
/// message with the subject `kept`. With `page_size`, the file's page size is fixed to it by
/// the first table, as the `sqlite3` shell would do it.
async fn old_build_store(path: &std::path::Path, page_size: Option<i64>) {
    let mut options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    if let Some(size) = page_size {
        options = options.pragma("page_size", size.to_string());
    }
    let pool = SqlitePool::connect_with(options).await.expect("old store");
    MIGRATOR.run_to(2, &pool).await.expect("old migrations");
    sqlx::query("INSERT INTO messages (folder, staged_at, subject) VALUES (1, 0, 'kept')")
        .execute(&pool)
        .await
        .expect("an old message");
    pool.close().await;
}

/// A store whose file has another page size than SQLite's default 4,096 (made by hand with the
/// `sqlite3` shell, or by a future build that picks a larger one for new stores; bench notes
/// `bodies3.md` measured 8 to 64 KiB and kept the default) is opened, migrated from an older
/// schema, written by submit processes past the WAL's truncation point, read back, and keeps
/// its page size: nothing in the store may assume 4 KiB pages.
#[tokio::test]
async fn a_store_with_another_page_size_opens_migrates_and_keeps_it() {
    for page_size in [1024_i64, 16 * 1024, 64 * 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        old_build_store(&path, Some(page_size)).await;

        // Submits of 100 KB bodies, inline, enough to pass WAL_TRUNCATE_AT at least once.
        let size = 100 * 1024;
        let n = u32::try_from(WAL_TRUNCATE_AT / size as u64 + 3).expect("a few");
        for i in 0..n {
            let store = SqliteStore::open_for_submit(&path).await.expect("open");
            store
                .submit(message("a@example.org"), &body(size, i)[..])
                .await
                .expect("submit");
            store.close_after_submit().await;
        }

        let store = SqliteStore::open(&path).await.expect("reopen");
        let kept: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .expect("page size");
        assert_eq!(kept, page_size, "the page size changed");
        let subject: String =
            sqlx::query_scalar("SELECT subject FROM messages WHERE staged_at = 0")
                .fetch_one(&store.pool)
                .await
                .expect("the old message");
        assert_eq!(subject, "kept");
        let queue = store.outgoing_queue().await.expect("queue");
        assert_eq!(queue.len(), n as usize, "page size {page_size}");
        for (i, entry) in queue.iter().enumerate() {
            let seed = u32::try_from(i).expect("small");
            let chunk = store
                .body_chunk(entry.message.id, 0)
                .await
                .expect("read")
                .expect("a body");
            assert_eq!(
                chunk,
                body(size, seed),
                "page size {page_size}, message {i}"
            );
        }
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&store.pool)
            .await
            .expect("integrity check");
        assert_eq!(check, "ok");
        store.close().await;
    }
}

/// Prefetched bodies are read with SQLite's blob API (`read_blobs`), on a multi-thread runtime
/// inside `block_in_place` (the flush's and the daemon's runtime; the other tests run on a
/// current-thread one): every body comes whole, whether its pages are still in the WAL or were
/// checkpointed into the database file, an empty body is none, and a message whose body row is
/// gone is leased without a body (read when sent) rather than failing the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_bodies_are_read_whole_from_the_wal_and_from_the_database_file() {
    let (_dir, store) = open().await;
    let sizes = [100 * 1024, 1, 4093, 60 * 1024];
    let mut ids = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let seed = u32::try_from(i).expect("small");
        ids.push(
            store
                .submit(message("a@example.org"), &body(size, seed)[..])
                .await
                .expect("submit")
                .id,
        );
        if i == 1 {
            // The first two into the database file, the others stay in the WAL.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&store.pool)
                .await
                .expect("checkpoint");
        }
    }
    let empty = store
        .submit(message("a@example.org"), &b""[..])
        .await
        .expect("submit")
        .id;
    let gone = store
        .submit(message("a@example.org"), &body(2048, 9)[..])
        .await
        .expect("submit")
        .id;
    sqlx::query("DELETE FROM body_chunks WHERE message_id = ?")
        .bind(gone.0)
        .execute(&store.pool)
        .await
        .expect("delete a body row");

    let leased = store
        .lease_due("sp", FileTime::now(), LEASE, 100, LeaseFilter::default())
        .await
        .expect("lease");
    assert_eq!(leased.len(), sizes.len() + 2);
    for (i, (&size, id)) in sizes.iter().zip(&ids).enumerate() {
        let m = leased.iter().find(|m| m.message.id == *id).expect("leased");
        let seed = u32::try_from(i).expect("small");
        assert_eq!(
            m.prefetched_body.as_deref(),
            Some(&body(size, seed)[..]),
            "message {i} ({size} bytes)"
        );
    }
    for id in [empty, gone] {
        let m = leased.iter().find(|m| m.message.id == id).expect("leased");
        assert_eq!(m.prefetched_body, None);
    }
    store.close().await;
}

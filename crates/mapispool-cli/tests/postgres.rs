//! A profile whose `[store] url` names a real PostgreSQL 15 (started per test by
//! scripts/peers/postgres.sh): every command works on it as on SQLite — `submit`, `queue`,
//! `status`, `flush` into Postfix's smtp-sink, the daemon — the password comes from the
//! profile's credential and never shows, one daemon runs per profile while several profiles
//! each run theirs on the one database, and a submit while the database is away fails
//! cleanly (`sendmail` exits EX_TEMPFAIL) and leaves nothing behind.

mod common;
#[path = "common/pg_cli.rs"]
mod pg_cli;
#[path = "../../mapispool/tests/peers/postfix.rs"]
mod postfix;
#[path = "../../mapispool/tests/peers/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};

use common::sandbox::{Sandbox, all_output, run_with_stdin, stderr_of, stdout_of};
use pg_cli::{PASSWORD_ENV, cli, run, run_ok, start_daemon};
use postfix::SmtpSink;
use postgres::{PASSWORD, Postgres};

/// A profile `name.toml` on `url` (password from [`PASSWORD_ENV`]) with one SMTP transport
/// `smtp` (`alice@example.com`) to 127.0.0.1:`smtp_port`.
fn write_pg_profile(sandbox: &Sandbox, name: &str, url: &str, smtp_port: u16) -> PathBuf {
    let path = sandbox.path(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{url}\"\npassword_env = \"{PASSWORD_ENV}\"\n\n[spooler]\ntimeout = \"10s\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n"
        ),
    )
    .expect("write the profile");
    path
}

fn submit(sandbox: &Sandbox, profile: &Path, message: &str) -> std::process::Output {
    let mut cmd = cli(sandbox, profile);
    cmd.arg("submit");
    run_with_stdin(&mut cmd, message.as_bytes())
}

fn message(subject: &str) -> String {
    format!("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: {subject}\r\n\r\nbody\r\n")
}

/// `status` showing what names the store (`PR_PROVIDER_DISPLAY`).
const STORE_ROW: [&str; 3] = ["status", "--columns", "PR_DISPLAY_NAME,PR_PROVIDER_DISPLAY"];

fn queue_len(sandbox: &Sandbox, profile: &Path) -> usize {
    let out = run_ok(sandbox, profile, &["queue", "--json"]);
    let queue: serde_json::Value = serde_json::from_str(&out).expect("queue --json");
    queue["rows"].as_array().map(Vec::len).expect("queue rows")
}

#[test]
fn submit_queue_status_and_flush_through_a_postgres_store() {
    let pg = Postgres::start();
    let sink = SmtpSink::start("");
    let sandbox = Sandbox::new();
    let profile = write_pg_profile(&sandbox, "me", &pg.url(), sink.port);

    let out = submit(&sandbox, &profile, &message("first"));
    assert!(out.status.success(), "submit: {}", all_output(&out));
    assert_eq!(queue_len(&sandbox, &profile), 1);
    assert_eq!(pg.count("mail", "messages WHERE in_queue"), 1);

    let status = run_ok(&sandbox, &profile, &STORE_ROW);
    assert!(
        status.contains(&format!(
            "PostgreSQL store postgres://mapispool@127.0.0.1:{}/mail",
            pg.port
        )),
        "the store row names the database:\n{status}"
    );
    assert!(!status.contains(PASSWORD), "no password in:\n{status}");

    run_ok(&sandbox, &profile, &["flush", "--upload"]);
    common::daemon::wait_until("the sink to take the message", || sink.messages() == 1);
    assert_eq!(queue_len(&sandbox, &profile), 0);
    let sent = run_ok(
        &sandbox,
        &profile,
        &["messages", "--folder", "sent", "--json"],
    );
    assert!(sent.contains("first"), "Sent Items holds it:\n{sent}");
}

#[test]
fn a_daemon_serves_a_postgres_store_and_one_runs_per_profile() {
    let pg = Postgres::start();
    let sink = SmtpSink::start("");
    let sandbox = Sandbox::new();
    let me = write_pg_profile(&sandbox, "me", &pg.url(), sink.port);
    let daemon = start_daemon(&sandbox, &me);

    // Clients find the daemon: submit, queue and flush go through it.
    let out = submit(&sandbox, &me, &message("via the daemon"));
    assert!(out.status.success(), "submit: {}", all_output(&out));
    let status = run_ok(&sandbox, &me, &STORE_ROW);
    assert!(status.contains("PostgreSQL store"), "{status}");
    assert!(!status.contains(PASSWORD), "no password in:\n{status}");
    run_ok(&sandbox, &me, &["flush", "--upload"]);
    common::daemon::wait_until("the sink to take the message", || sink.messages() == 1);

    // A second daemon on the same profile is refused, naming the database without a password.
    let second = run(&sandbox, &me, &["spooler"]);
    assert!(!second.status.success(), "a second daemon must not start");
    let said = stderr_of(&second);
    assert!(said.contains("already serves"), "{said}");
    assert!(
        said.contains(&format!("127.0.0.1:{}/mail", pg.port)),
        "{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");

    // Another profile (another node) runs its own daemon on the same database and sees the
    // same queue.
    let node2 = write_pg_profile(&sandbox, "node2", &pg.url(), sink.port);
    let other = start_daemon(&sandbox, &node2);
    let out = submit(&sandbox, &node2, &message("from node 2"));
    assert!(out.status.success(), "submit: {}", all_output(&out));
    // The submit notifies every daemon on the database (issue 14): one of them sends it at
    // once, without a flush, and the one queue is empty for both.
    common::daemon::wait_until("the sink to take the second", || sink.messages() == 2);
    common::daemon::wait_until("one queue, empty for both", || {
        queue_len(&sandbox, &me) == 0 && queue_len(&sandbox, &node2) == 0
    });
    run_ok(&sandbox, &me, &["flush", "--upload"]);
    assert_eq!(sink.messages(), 2, "nothing sent twice");
    other.stop();
    daemon.stop();
}

#[test]
fn the_password_may_sit_in_the_url_and_never_shows() {
    let pg = Postgres::start();
    let sandbox = Sandbox::new();
    let path = sandbox.path("me.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{}\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = 9\nsecurity = \"none\"\n",
            pg.url_with_password("mail")
        ),
    )
    .expect("write");
    let status = sandbox.run_ok(&path, &STORE_ROW);
    assert!(status.contains("PostgreSQL store"), "{status}");
    assert!(
        !status.contains(&format!(":{PASSWORD}@")),
        "no password in:\n{status}"
    );
    // A wrong password from the credential: refused, naming the database, not the password.
    let wrong = write_pg_profile(&sandbox, "wrong", &pg.url(), 9);
    let out = sandbox
        .cli(&wrong)
        .env(PASSWORD_ENV, "not-the-password")
        .arg("status")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let said = all_output(&out);
    assert!(
        said.contains(&format!("127.0.0.1:{}/mail", pg.port)),
        "{said}"
    );
    assert!(!said.contains("not-the-password"), "{said}");
}

#[test]
fn submit_while_the_database_is_down_fails_cleanly_and_sendmail_says_try_later() {
    let pg = Postgres::start();
    let sandbox = Sandbox::new();
    let profile = write_pg_profile(&sandbox, "me", &pg.url(), 9);
    // The schema is made while the server is up; then the server goes away.
    run_ok(&sandbox, &profile, &["queue"]);
    pg.stop();

    let out = submit(&sandbox, &profile, &message("while down"));
    let said = all_output(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "submit: the store is unavailable:\n{said}"
    );
    assert!(
        said.contains(&format!("postgres://mapispool@127.0.0.1:{}/mail", pg.port)),
        "names the database:\n{said}"
    );
    assert!(
        said.contains("PostgreSQL running"),
        "says what to check:\n{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");

    std::os::unix::fs::symlink(common::sandbox::BIN, sandbox.path("sendmail")).expect("symlink");
    let mut sendmail = sandbox.command(sandbox.path("sendmail"));
    sendmail
        .env("MAPISPOOL_PROFILE", &profile)
        .env(PASSWORD_ENV, PASSWORD)
        .arg("bob@example.net");
    let out = run_with_stdin(&mut sendmail, message("sendmail while down").as_bytes());
    let said = all_output(&out);
    assert_eq!(out.status.code(), Some(75), "EX_TEMPFAIL:\n{said}");
    assert!(
        said.contains(&format!("postgres://mapispool@127.0.0.1:{}/mail", pg.port)),
        "names the database:\n{said}"
    );
    assert!(!said.contains(PASSWORD), "{said}");

    pg.restart();
    assert_eq!(pg.count("mail", "messages"), 0, "nothing half-written");
    assert_eq!(pg.count("mail", "recipients"), 0, "nothing half-written");
    assert_eq!(queue_len(&sandbox, &profile), 0);
    // And the store works again as soon as the server is back.
    let out = submit(&sandbox, &profile, &message("after"));
    assert!(out.status.success(), "submit: {}", all_output(&out));
    assert_eq!(queue_len(&sandbox, &profile), 1);
}

#[test]
fn a_submit_cut_off_by_the_database_going_away_leaves_no_message() {
    use std::io::Write;
    let pg = Postgres::start();
    let sandbox = Sandbox::new();
    let profile = write_pg_profile(&sandbox, "me", &pg.url(), 9);
    let mut child = cli(&sandbox, &profile)
        .arg("submit")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("submit starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let line = [b'x'; 998];
    let head = message("cut off");
    stdin.write_all(head.as_bytes()).expect("write");
    // Enough for some chunks to be written as the staging row's.
    let mut lines = 0;
    common::daemon::wait_until("the body to start arriving in the database", || {
        for _ in 0..1024 {
            stdin.write_all(&line).expect("write");
            stdin.write_all(b"\r\n").expect("write");
        }
        lines += 1024;
        pg.count("mail", "body_chunks") > 0
    });
    pg.stop();
    // The rest: the submit finds the server gone, whenever it next writes.
    for _ in 0..4096 {
        if stdin
            .write_all(&line)
            .and_then(|()| stdin.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().expect("submit ends");
    let said = all_output(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
    pg.restart();
    assert_eq!(
        pg.count("mail", "messages WHERE folder <> 0"),
        0,
        "no message became visible"
    );
    assert_eq!(queue_len(&sandbox, &profile), 0);
    assert!(lines > 0);
}

/// A SQLite profile `name.toml` (store `name.db`) with one SMTP transport to `smtp_port`.
fn write_sqlite_profile(sandbox: &Sandbox, name: &str, smtp_port: u16) -> PathBuf {
    let path = sandbox.path(&format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{}\"\n\n[spooler]\ntimeout = \"10s\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n",
            sandbox.path(&format!("{name}.db")).display()
        ),
    )
    .expect("write the profile");
    path
}

/// `store copy --to URL --json` for `profile`, with the password in PGPASSWORD.
fn store_copy(sandbox: &Sandbox, profile: &Path, url: &str) -> std::process::Output {
    sandbox
        .cli(profile)
        .args(["store", "copy", "--to", url, "--json"])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("mapispool runs")
}

fn copied(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "store copy: {}", all_output(out));
    serde_json::from_str(&stdout_of(out)).expect("store copy --json")
}

#[test]
fn store_copy_moves_a_sqlite_queue_into_postgres_once_and_resumes() {
    let pg = Postgres::start();
    let sink = SmtpSink::start("");
    let deferring = SmtpSink::start("-r RCPT");
    let sandbox = Sandbox::new();

    // One message sent (Sent Items), two deferred by a 4xx (attempts, retry time, last error).
    let old = write_sqlite_profile(&sandbox, "old", sink.port);
    let out = submit(&sandbox, &old, &message("sent before"));
    assert!(out.status.success(), "{}", all_output(&out));
    sandbox.run_ok(&old, &["flush", "--upload"]);
    assert_eq!(sink.messages(), 1);
    write_sqlite_profile(&sandbox, "old", deferring.port);
    for subject in ["deferred one", "deferred two"] {
        let out = submit(&sandbox, &old, &message(subject));
        assert!(out.status.success(), "{}", all_output(&out));
    }
    let _ = sandbox.run(&old, &["flush", "--upload"]);
    let queue_before = sandbox.run_ok(&old, &["queue", "--recipients", "--json"]);
    assert!(queue_before.contains("deferred one"), "{queue_before}");
    let sent_before = sandbox.run_ok(&old, &["messages", "--folder", "sent", "--json"]);

    // A daemon on the source: refused.
    let daemon = sandbox.start_daemon(&old);
    let out = store_copy(&sandbox, &old, &pg.url());
    assert_eq!(out.status.code(), Some(4), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("while a spooler serves it"),
        "{}",
        all_output(&out)
    );
    daemon.stop();

    let report = copied(&store_copy(&sandbox, &old, &pg.url()));
    assert_eq!(report["copied"], 3, "{report}");
    assert_eq!(report["queued"], 2, "{report}");
    assert_eq!(report["already_copied"], 0, "{report}");

    // The same queue, with the same entry IDs, recipients' states and retry times.
    let new = write_pg_profile(&sandbox, "new", &pg.url(), sink.port);
    assert_eq!(
        run_ok(&sandbox, &new, &["queue", "--recipients", "--json"]),
        queue_before
    );
    assert_eq!(
        run_ok(&sandbox, &new, &["messages", "--folder", "sent", "--json"]),
        sent_before
    );
    assert_eq!(pg.count("mail", "recipients WHERE state = 'deferred'"), 2);

    // A rerun copies nothing again.
    let report = copied(&store_copy(&sandbox, &old, &pg.url()));
    assert_eq!(report["copied"], 0, "{report}");
    assert_eq!(report["already_copied"], 3, "{report}");

    // A run cut off mid-message: one message not recorded as copied, its staging row and a
    // chunk left. The rerun copies that one only, and once.
    let last: i64 = pg
        .psql("mail", "SELECT max(id) FROM messages")
        .parse()
        .expect("an id");
    pg.psql(
        "mail",
        &format!(
            "DELETE FROM store_copied WHERE message_id = {last}; \
             UPDATE messages SET folder = 0 WHERE id = {last}; \
             DELETE FROM recipients WHERE message_id = {last}"
        ),
    );
    let report = copied(&store_copy(&sandbox, &old, &pg.url()));
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(report["already_copied"], 2, "{report}");
    assert_eq!(pg.count("mail", "messages"), 3);
    assert_eq!(
        run_ok(&sandbox, &new, &["queue", "--recipients", "--json"]),
        queue_before
    );

    // Another store into the same database: refused, the target is not empty.
    let other = write_sqlite_profile(&sandbox, "other", sink.port);
    let out = submit(&sandbox, &other, &message("elsewhere"));
    assert!(out.status.success(), "{}", all_output(&out));
    let out = store_copy(&sandbox, &other, &pg.url());
    assert_eq!(out.status.code(), Some(4), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("not empty"),
        "{}",
        all_output(&out)
    );

    // The copied queue is sent from the database, each message once.
    run_ok(&sandbox, &new, &["flush", "--upload", "--force"]);
    common::daemon::wait_until("the copied queue to be sent", || sink.messages() == 3);
    assert_eq!(queue_len(&sandbox, &new), 0);
    // New messages take ids past the copied ones.
    let out = submit(&sandbox, &new, &message("after the copy"));
    assert!(out.status.success(), "{}", all_output(&out));
    assert_eq!(pg.count("mail", "messages"), 4);
}

/// Runs `sql` on the SQLite file `path` (what a crash would have left, for the copy tests).
fn sqlite_exec(path: &Path, sql: &str) {
    use sqlx::Connection;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("open the SQLite file");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut conn)
                .await
                .expect("the statements run");
            conn.close().await.expect("close");
        });
}

/// The `rows` of `mapispool ARGS --json` on `profile`.
fn rows(sandbox: &Sandbox, profile: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = run_ok(sandbox, profile, args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json");
    v["rows"].as_array().expect("rows").clone()
}

/// `show` of every message of `folder`, in the folder's order.
fn shown(sandbox: &Sandbox, profile: &Path, folder: &str) -> Vec<String> {
    rows(
        sandbox,
        profile,
        &["messages", "--folder", folder, "--json"],
    )
    .iter()
    .map(|r| {
        let id = r["PR_ENTRYID"].as_str().expect("an entry id");
        run_ok(sandbox, profile, &["show", id])
    })
    .collect()
}

/// The body files beside the SQLite store `db` (`<db>-bodies/<sha256>`).
fn body_files(db: &Path) -> usize {
    let mut dir = db.as_os_str().to_owned();
    dir.push("-bodies");
    std::fs::read_dir(PathBuf::from(dir)).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().len() == 64)
            .count()
    })
}

#[test]
fn store_copy_moves_a_postgres_queue_into_sqlite_once_and_resumes() {
    let pg = Postgres::start();
    let sink = SmtpSink::start("");
    let deferring = SmtpSink::start("-r RCPT");
    let sandbox = Sandbox::new();
    let po = sandbox.post_office();
    let profile_text = |port: u16| {
        format!(
            "[store]\nurl = \"{}\"\npassword_env = \"{PASSWORD_ENV}\"\n\n[spooler]\ntimeout = \"10s\"\n\n[[transport]]\nname = \"smtp\"\naddress = \"alice@example.com\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n[transport.inbound]\nkind = \"dir\"\npath = \"{}\"\n",
            pg.url(),
            po.display()
        )
    };
    let node = sandbox.path("node.toml");
    std::fs::write(&node, profile_text(sink.port)).expect("write the profile");

    // One message received (Inbox, inbound state), one sent (Sent Items); then three deferred
    // by a 4xx (attempts, retry time, last error), one of them larger than a body file's
    // threshold.
    let new_dir = po.join("alice@example.com").join("new");
    std::fs::create_dir_all(&new_dir).expect("the mailbox");
    std::fs::write(
        new_dir.join("1.eml"),
        "From: bob@example.net\r\nTo: alice@example.com\r\nSubject: received\r\n\r\nhi\r\n",
    )
    .expect("deliver");
    run_ok(&sandbox, &node, &["flush", "--download"]);
    let out = submit(&sandbox, &node, &message("sent before"));
    assert!(out.status.success(), "{}", all_output(&out));
    run_ok(&sandbox, &node, &["flush", "--upload"]);
    assert_eq!(sink.messages(), 1);
    std::fs::write(&node, profile_text(deferring.port)).expect("write the profile");
    for subject in ["deferred one", "deferred two"] {
        let out = submit(&sandbox, &node, &message(subject));
        assert!(out.status.success(), "{}", all_output(&out));
    }
    let mut large =
        "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: large deferred\r\n\r\n"
            .to_owned();
    while large.len() < 600 * 1024 {
        large.push_str(&format!("line {} of a large body\r\n", large.len()));
    }
    let out = submit(&sandbox, &node, &large);
    assert!(out.status.success(), "{}", all_output(&out));
    let _ = run(&sandbox, &node, &["flush", "--upload"]);
    assert_eq!(pg.count("mail", "recipients WHERE state = 'deferred'"), 3);
    assert_eq!(pg.count("mail", "inbound_seen"), 1);

    let target = sandbox.path("copy.db");
    let to = target.display().to_string();
    let store_copy_to = |to: &str| {
        cli(&sandbox, &node)
            .args(["store", "copy", "--to", to, "--json"])
            .output()
            .expect("mapispool runs")
    };

    // A live node in the cluster (another profile's daemon on the database): refused.
    let node2 = write_pg_profile(&sandbox, "node2", &pg.url(), deferring.port);
    let daemon = start_daemon(&sandbox, &node2);
    let out = store_copy_to(&to);
    let said = all_output(&out);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(said.contains("while a spooler serves it"), "{said}");
    assert!(said.contains("status --cluster"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
    daemon.stop();
    assert_eq!(body_files(&target), 0, "nothing copied");

    // The wrong kind of target for either profile: refused, saying what to give.
    let out = store_copy_to(&pg.url());
    assert!(!out.status.success());
    assert!(
        all_output(&out).contains("give the path of a SQLite file"),
        "{}",
        all_output(&out)
    );
    let lone = write_sqlite_profile(&sandbox, "lone", sink.port);
    let out = store_copy(
        &sandbox,
        &lone,
        sandbox.path("x.db").to_str().expect("utf-8"),
    );
    assert!(!out.status.success());
    assert!(
        all_output(&out).contains("give a PostgreSQL URL"),
        "{}",
        all_output(&out)
    );

    let queue_before = run_ok(&sandbox, &node, &["queue", "--recipients", "--json"]);
    assert!(queue_before.contains("large deferred"), "{queue_before}");
    let before: Vec<(String, Vec<String>)> = ["inbox", "outbox", "sent"]
        .iter()
        .map(|f| {
            (
                run_ok(&sandbox, &node, &["messages", "--folder", f, "--json"]),
                shown(&sandbox, &node, f),
            )
        })
        .collect();

    let report = copied(&store_copy_to(&to));
    assert_eq!(report["copied"], 5, "{report}");
    assert_eq!(report["queued"], 3, "{report}");
    assert_eq!(report["already_copied"], 0, "{report}");
    let inbound_rows = pg.count("mail", "inbound_seen") + pg.count("mail", "sync_state");
    assert_eq!(report["inbound_rows"], inbound_rows, "{report}");
    assert_eq!(
        body_files(&target),
        1,
        "the large body is a file beside the store"
    );

    // The same queue, folders and messages, with the same entry IDs.
    let copy = write_sqlite_profile(&sandbox, "copy", sink.port);
    let check = || {
        assert_eq!(
            sandbox.run_ok(&copy, &["queue", "--recipients", "--json"]),
            queue_before
        );
        for (folder, (listed, raw)) in ["inbox", "outbox", "sent"].iter().zip(&before) {
            assert_eq!(
                &sandbox.run_ok(&copy, &["messages", "--folder", folder, "--json"]),
                listed,
                "{folder}"
            );
            assert_eq!(&shown(&sandbox, &copy, folder), raw, "{folder}");
        }
    };
    check();

    // A rerun copies nothing again.
    let report = copied(&store_copy_to(&to));
    assert_eq!(report["copied"], 0, "{report}");
    assert_eq!(report["already_copied"], 5, "{report}");
    assert_eq!(report["inbound_rows"], 0, "{report}");

    // A run cut off before the large message's commit: its row and record absent, its body
    // file left behind. The rerun copies that one only, and once.
    let last: i64 = pg
        .psql("mail", "SELECT max(id) FROM messages")
        .parse()
        .expect("an id");
    sqlite_exec(
        &target,
        &format!(
            "DELETE FROM store_copied WHERE message_id = {last}; \
             DELETE FROM messages WHERE id = {last};"
        ),
    );
    let report = copied(&store_copy_to(&to));
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(report["already_copied"], 4, "{report}");
    assert_eq!(body_files(&target), 1);
    check();

    // Another PostgreSQL queue into the same file: refused, the target is not empty.
    let other = sandbox.path("other.toml");
    std::fs::write(
        &other,
        profile_text(sink.port).replace(&pg.url(), &format!("{}2", pg.url())),
    )
    .expect("write");
    pg.psql("postgres", "CREATE DATABASE mail2");
    let out = cli(&sandbox, &other)
        .args(["store", "copy", "--to", &to])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(4), "{}", all_output(&out));
    assert!(
        all_output(&out).contains("not empty"),
        "{}",
        all_output(&out)
    );

    // The copied queue is sent from the SQLite copy, each message once.
    sandbox.run_ok(&copy, &["flush", "--upload", "--force"]);
    common::daemon::wait_until("the copied queue to be sent", || sink.messages() == 4);
    assert_eq!(sandbox.queue_len(&copy), 0);
    // New messages take ids past the copied ones: the entry IDs in Sent Items stay distinct.
    let out = submit(&sandbox, &copy, &message("after the copy"));
    assert!(out.status.success(), "{}", all_output(&out));
    let ids: std::collections::HashSet<String> = ["sent", "outbox", "inbox"]
        .iter()
        .flat_map(|f| rows(&sandbox, &copy, &["messages", "--folder", f, "--json"]))
        .map(|r| r["PR_ENTRYID"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
}

#[test]
fn the_web_listener_of_a_daemon_on_postgres_counts_the_shared_queue() {
    use std::io::{Read, Write};
    let pg = Postgres::start();
    let sandbox = Sandbox::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let profile = write_pg_profile(&sandbox, "me", &pg.url(), 9);
    let mut text = std::fs::read_to_string(&profile).expect("read");
    text.push_str(&format!("\n[web]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&profile, text).expect("write");
    let daemon = start_daemon(&sandbox, &profile);
    let out = submit(&sandbox, &profile, &message("counted"));
    assert!(out.status.success(), "submit: {}", all_output(&out));

    let get = |path: &str| {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).expect("answer");
        answer
    };
    // The submit wakes the daemon (NOTIFY), whose attempt finds no server on port 9 and
    // gives the message back: then it counts as queued.
    let queued = "mapispool_queue_messages{transport=\"smtp\",state=\"queued\"} 1";
    common::daemon::wait_until("/metrics to count the queued message", || {
        get("/metrics").contains(queued)
    });
    let metrics = get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(!page.contains(PASSWORD) && !metrics.contains(PASSWORD));
    daemon.stop();
}

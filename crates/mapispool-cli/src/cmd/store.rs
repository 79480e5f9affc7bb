//! `mapispool store copy --to URL|PATH`: the profile's store into a store of the other backend
//! (SQLite into a PostgreSQL database, or PostgreSQL into a SQLite file).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mapi::{MapiError, MapiResult};
use mapispool::Profile;
use mapispool::ipc;
use mapispool::profile::StoreConfig;
use mapispool::store::copy::{CopyReport, copy_postgres_to_sqlite, copy_sqlite_to_postgres};
use mapispool::store::postgres::redact;
use mapispool::store::{AnyStore, PgStore, SqliteStore};

use crate::cli::{Cli, StoreCommand};
use crate::exit::Exit;

/// Runs a `store` subcommand.
pub async fn run(cli: &Cli, command: &StoreCommand, quiet: bool) -> Result<Exit> {
    match command {
        StoreCommand::Copy(args) => {
            let path = Profile::locate(cli.profile.as_deref())?;
            let profile = Profile::load(&path)?;
            let copy = copy_profile_store(&profile, &args.to)
                .await
                .with_context(|| format!("cannot copy the store of {}", path.display()))?;
            let report = &copy.report;
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "from": copy.from,
                        "to": copy.to,
                        "copied": report.copied,
                        "already_copied": report.already_copied,
                        "queued": report.queued,
                        "inbound_rows": report.inbound_rows,
                    })
                );
            } else if !quiet {
                outln!(
                    "copied {} messages ({} queued) into {}; {} were copied by an earlier run; {} inbound state rows",
                    report.copied,
                    report.queued,
                    copy.to,
                    report.already_copied,
                    report.inbound_rows
                );
                if copy.into_postgres {
                    outln!(
                        "next: set [store] url = \"{}\" in {} (instead of path), with the password in password_command, password_file, password_env or password_keyring; do not run a spooler on the old store again, or it would send its queue a second time",
                        copy.to,
                        path.display()
                    );
                } else {
                    outln!(
                        "next: set [store] path = \"{}\" in {} (instead of url); do not run spoolers on the database's queue again (this profile's or other nodes'), or they would send what was copied a second time",
                        copy.to,
                        path.display()
                    );
                }
            }
            Ok(Exit::Done)
        }
    }
}

/// What [`copy_profile_store`] did, and between which stores (named without passwords).
struct Copy {
    report: CopyReport,
    from: String,
    to: String,
    into_postgres: bool,
}

fn is_postgres_url(to: &str) -> bool {
    to.starts_with("postgres://") || to.starts_with("postgresql://")
}

/// `mapispool store copy --to URL|PATH`: copies `profile`'s store into a store of the other
/// backend: a SQLite store ([store] path) into the PostgreSQL database at the URL `to` (its
/// password in the URL or `PGPASSWORD`), a PostgreSQL store ([store] url, its password from
/// the profile) into the SQLite file at the path `to`. Holds the daemon lock of each SQLite
/// side throughout, so that no spooler serves it meanwhile; a PostgreSQL source must have no
/// live node. It lives here, at the edge, because it joins the store's copy with the local
/// API's daemon lock (the store does not know about daemons).
///
/// Errors: `MAPI_E_BUSY` while a spooler serves either side; `MAPI_E_INVALID_PARAMETER` for
/// a `to` of the same backend as the profile's store; `MAPI_E_COLLISION` for a target
/// holding other messages; store errors of either side.
async fn copy_profile_store(profile: &Profile, to: &str) -> MapiResult<Copy> {
    match &profile.store {
        StoreConfig::Path(path) => sqlite_to_postgres(profile, path, to).await,
        StoreConfig::Url { url, .. } => {
            if is_postgres_url(to) {
                return Err(MapiError::invalid_parameter(format!(
                    "--to {}: this profile's store is a PostgreSQL database already ({}); give \
                     the path of a SQLite file to copy it into (--to ~/.local/share/mapispool/store.db), \
                     or run store copy on a profile whose [store] path is the SQLite store to \
                     move into that database",
                    redact(to),
                    redact(url)
                )));
            }
            postgres_to_sqlite(profile, Path::new(to)).await
        }
    }
}

/// Takes the daemon lock of the store `anchor` stands for (see [`ipc::daemon_anchor`]), held
/// for the whole copy: a daemon that runs now refuses it, one started meanwhile cannot start,
/// and a client finds the store busy rather than writing behind the copy.
async fn hold_daemon_lock(anchor: &Path, label: &str) -> MapiResult<ipc::DaemonLock> {
    ipc::DaemonLock::acquire_named(anchor, &ipc::socket_path(anchor), label)
        .await
        .map_err(|e| {
            MapiError::new(
                e.code,
                format!(
                    "cannot copy the store while a spooler serves it: {}",
                    e.cause
                ),
            )
        })
}

async fn sqlite_to_postgres(profile: &Profile, path: &Path, to: &str) -> MapiResult<Copy> {
    if !is_postgres_url(to) {
        return Err(MapiError::invalid_parameter(format!(
            "--to {}: this profile's store is a SQLite file ({}); give a PostgreSQL URL, \
             postgres://USER@HOST:PORT/DATABASE, to copy it into that database (copying into \
             a SQLite file works from a profile whose [store] url is the database)",
            redact(to),
            path.display()
        )));
    }
    let label = ipc::canonical_store(path).display().to_string();
    let anchor = ipc::daemon_anchor(profile);
    let _lock = hold_daemon_lock(&anchor, &label).await?;
    let source = SqliteStore::open(path).await?;
    let target = PgStore::open(to, None).await?;
    let report = copy_sqlite_to_postgres(&source, &target, &label).await;
    target.close().await;
    source.close().await;
    Ok(Copy {
        report: report?,
        from: label,
        to: target.server().to_owned(),
        into_postgres: true,
    })
}

async fn postgres_to_sqlite(profile: &Profile, to: &Path) -> MapiResult<Copy> {
    let to: PathBuf = std::path::absolute(to)
        .map_err(|e| MapiError::invalid_parameter(format!("--to {}: {e}", to.display())))?;
    let label = ipc::canonical_store(&to).display().to_string();
    let _target_lock = hold_daemon_lock(&to, &label).await?;
    // This profile's own daemon cannot start meanwhile either (one elsewhere shows as a live
    // node, which the copy refuses).
    let anchor = ipc::daemon_anchor(profile);
    let _source_lock = hold_daemon_lock(&anchor, &ipc::store_label(profile)).await?;
    let AnyStore::Postgres(source) = AnyStore::open_to_read(&profile.store).await? else {
        return Err(MapiError::call_failed(
            "the profile's store opened as SQLite where its [store] url names a database",
        ));
    };
    let target = SqliteStore::open(&to).await?;
    let report = copy_postgres_to_sqlite(&source, &target, source.server()).await;
    target.close().await;
    source.close().await;
    Ok(Copy {
        report: report?,
        from: source.server().to_owned(),
        to: label,
        into_postgres: false,
    })
}

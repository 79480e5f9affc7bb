//! `mapispool store copy --to URL`: the profile's SQLite store into a PostgreSQL database.

use anyhow::{Context, Result};
use mapi::{MapiError, MapiResult};
use mapispool::Profile;
use mapispool::ipc;
use mapispool::profile::StoreConfig;
use mapispool::store::copy::{CopyReport, copy_sqlite_to_postgres};
use mapispool::store::postgres::redact;
use mapispool::store::{PgStore, SqliteStore};

use crate::cli::{Cli, StoreCommand};
use crate::exit::Exit;

/// Runs a `store` subcommand.
pub async fn run(cli: &Cli, command: &StoreCommand, quiet: bool) -> Result<Exit> {
    match command {
        StoreCommand::Copy(args) => {
            let path = Profile::locate(cli.profile.as_deref())?;
            let profile = Profile::load(&path)?;
            let (report, server) = copy_profile_store(&profile, &args.to)
                .await
                .with_context(|| format!("cannot copy the store of {}", path.display()))?;
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "to": server,
                        "copied": report.copied,
                        "already_copied": report.already_copied,
                        "queued": report.queued,
                        "inbound_rows": report.inbound_rows,
                    })
                );
            } else if !quiet {
                outln!(
                    "copied {} messages ({} queued) into {server}; {} were copied by an earlier run; {} inbound state rows",
                    report.copied,
                    report.queued,
                    report.already_copied,
                    report.inbound_rows
                );
                outln!(
                    "next: set [store] url = \"{server}\" in {} (instead of path), with the password in password_command, password_file, password_env or password_keyring; do not run a spooler on the old store again, or it would send its queue a second time",
                    path.display()
                );
            }
            Ok(Exit::Done)
        }
    }
}

/// `mapispool store copy --to URL`: copies `profile`'s SQLite store into the PostgreSQL store
/// at `to` (its password in the URL or `PGPASSWORD`), holding the profile's daemon lock
/// throughout so that no spooler serves the source meanwhile. Returns what was done and the
/// URL without its password. It lives here, at the edge, because it joins the store's copy with the
/// local API's daemon lock (the store does not know about daemons).
///
/// Errors: `MAPI_E_BUSY` while a spooler daemon serves the profile's store;
/// `MAPI_E_NO_SUPPORT` for a profile whose store is not SQLite; `MAPI_E_INVALID_PARAMETER`
/// for a `to` that is not a PostgreSQL URL; `MAPI_E_COLLISION` for a target holding other
/// messages; store errors of either side.
async fn copy_profile_store(profile: &Profile, to: &str) -> MapiResult<(CopyReport, String)> {
    let StoreConfig::Path(path) = &profile.store else {
        return Err(MapiError::no_support(
            "store copy reads a SQLite store ([store] path); this profile's store is a database server already",
        ));
    };
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return Err(MapiError::invalid_parameter(format!(
            "--to {}: give a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE",
            redact(to)
        )));
    }
    let label = ipc::canonical_store(path).display().to_string();
    let anchor = ipc::daemon_anchor(profile);
    // Held until the copy ends: a daemon that runs now refuses it, one started meanwhile
    // cannot start, and a client finds the store busy rather than writing behind the copy.
    let _lock = ipc::DaemonLock::acquire_named(&anchor, &ipc::socket_path(&anchor), &label)
        .await
        .map_err(|e| {
            MapiError::new(
                e.code,
                format!(
                    "cannot copy the store while a spooler serves it: {}",
                    e.cause
                ),
            )
        })?;
    let source = SqliteStore::open(path).await?;
    let target = PgStore::open(to, None).await?;
    let report = copy_sqlite_to_postgres(&source, &target, &label).await;
    target.close().await;
    source.close().await;
    Ok((report?, target.server().to_owned()))
}

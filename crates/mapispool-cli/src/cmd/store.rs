//! `mapispool store copy --to URL`: the profile's SQLite store into a PostgreSQL database.

use anyhow::{Context, Result};
use mapispool::Profile;
use mapispool::store::copy::copy_profile_store;

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

//! One function per command, each the entry point for what its `cli.rs` variant says.

mod demo;
mod flush;
mod spooler;
mod submit;
mod tables;
mod validate;

use anyhow::{Context, Result};
use mapispool::{Profile, Session};

use crate::cli::{Cli, Command};
use crate::exit::Exit;

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<Exit> {
    match &cli.command {
        Command::Demo(args) => demo::run(args, cli.quiet).await,
        Command::Status(args) => tables::status(&logon(&cli).await?, args),
        Command::Queue(args) => tables::queue(&logon(&cli).await?, args).await,
        Command::Messages(args) => tables::messages(&logon(&cli).await?, args).await,
        Command::Show(args) => submit::show(&logon(&cli).await?, args).await,
        Command::Flush(args) => flush::run(&logon(&cli).await?, args, cli.quiet).await,
        Command::Submit(args) => submit::run(&logon(&cli).await?, args, cli.quiet).await,
        Command::Abort(args) => submit::abort(&logon(&cli).await?, args, cli.quiet).await,
        Command::Validate(args) => validate::run(&logon(&cli).await?, args, cli.quiet).await,
        Command::Spooler => spooler::run(&cli).await,
    }
}

/// Finds and loads the profile, and logs on to it.
async fn logon(cli: &Cli) -> Result<Session> {
    let path = Profile::locate(cli.profile.as_deref())?;
    let profile = Profile::load(&path)?;
    Session::logon(profile)
        .await
        .with_context(|| format!("cannot log on to the profile {}", path.display()))
}

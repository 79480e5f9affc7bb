//! One function per command, each the entry point for what its `cli.rs` variant says.

mod demo;
mod docs;
mod flush;
mod init;
mod progress;
pub mod sendmail;
mod spooler;
mod store;
mod submit;
mod tables;
mod validate;
mod watch;

use anyhow::{Context, Result};
use mapispool::{Profile, Session, SubmitSession};

use crate::cli::{Cli, Command};
use crate::exit::Exit;

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<Exit> {
    match &cli.command {
        Command::Demo(args) => demo::run(args, cli.quiet).await,
        Command::Init(args) => init::run(cli.profile.as_deref(), args, cli.quiet),
        Command::Status(args) => tables::status(&logon_to_read(&cli).await?, args).await,
        Command::Queue(args) => tables::queue(&logon_to_read(&cli).await?, args).await,
        Command::Messages(args) => tables::messages(&logon_to_read(&cli).await?, args).await,
        Command::Show(args) => submit::show(&logon_to_read(&cli).await?, args).await,
        Command::Flush(args) => {
            logged_on(&cli, async |s| flush::run(s, args, cli.quiet).await).await
        }
        Command::Submit(args) => submit::run(logon_to_submit(&cli).await?, args, cli.quiet).await,
        Command::Abort(args) => {
            logged_on(&cli, async |s| submit::abort(s, args, cli.quiet).await).await
        }
        Command::Resubmit(args) => {
            logged_on(&cli, async |s| submit::resubmit(s, args, cli.quiet).await).await
        }
        Command::Delete(args) => {
            logged_on(&cli, async |s| submit::delete(s, args, cli.quiet).await).await
        }
        Command::Validate(args) => {
            logged_on(&cli, async |s| validate::run(s, args, cli.quiet).await).await
        }
        Command::Offline(args) => {
            validate::switch(&logon(&cli).await?, args, true, cli.quiet).await
        }
        Command::Online(args) => {
            validate::switch(&logon(&cli).await?, args, false, cli.quiet).await
        }
        Command::Spooler => spooler::run(&cli).await,
        Command::Watch(args) => watch::run(&logon(&cli).await?, args, cli.quiet).await,
        Command::Sendmail(args) => {
            // `-v` and `-q` before the first recipient are taken by clap as our global flags;
            // `-v` means the same to sendmail, so pass it on.
            let args = args.args.iter().cloned();
            let verbose = (cli.verbose > 0).then(|| "-v".to_string());
            let args: Vec<String> = verbose.into_iter().chain(args).collect();
            Ok(sendmail::run(cli.profile.clone(), &args).await)
        }
        Command::Store(command) => store::run(&cli, command, cli.quiet).await,
        Command::Completions(args) => docs::completions(args.shell),
        Command::Man(args) => docs::man(args.page),
    }
}

/// Finds and loads the profile, and logs on to it with `open` — one of the ways `mapispool`
/// opens a session ([`Session::logon`], [`Session::logon_to_read`], [`SubmitSession::logon`]),
/// so every command names its profile the same way when logon fails.
async fn logon_with<S, F>(cli: &Cli, open: impl FnOnce(Profile) -> F) -> Result<S>
where
    F: std::future::Future<Output = mapi::MapiResult<S>>,
{
    let path = Profile::locate(cli.profile.as_deref())?;
    let profile = Profile::load(&path)?;
    open(profile)
        .await
        .with_context(|| format!("cannot log on to the profile {}", path.display()))
}

/// A full session: for the commands that change the store or flush.
async fn logon(cli: &Cli) -> Result<Session> {
    logon_with(cli, Session::logon).await
}

/// Runs `command` on a session logged on for it, then logs that session off: without a daemon,
/// the process was a node of the store's queue, and it marks itself stopped instead of showing
/// as alive in the cluster view until its lease runs out (which would refuse `store copy` from
/// the database meanwhile).
async fn logged_on(cli: &Cli, command: impl AsyncFnOnce(&Session) -> Result<Exit>) -> Result<Exit> {
    let session = logon(cli).await?;
    let done = command(&session).await;
    session.logoff().await;
    done
}

/// [`logon`] for the commands that only read (`status`, `queue`, `messages`, `show`): without
/// a daemon, this process neither registers as a spooler node nor cleans the store up (see
/// [`Session::logon_to_read`]); that is for the processes that write it.
async fn logon_to_read(cli: &Cli) -> Result<Session> {
    logon_with(cli, Session::logon_to_read).await
}

/// [`logon`] for `submit`: a session that can only submit, which opens no more than that needs
/// (see [`SubmitSession`]).
async fn logon_to_submit(cli: &Cli) -> Result<SubmitSession> {
    logon_with(cli, SubmitSession::logon).await
}

//! The command line, defined once: help text, parsing, and (later) completions and man page
//! all come from these clap definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mapispool — the MAPI send/receive subsystem: a durable outgoing queue, transports, and a
/// spooler you can ask to send and receive now.
#[derive(Debug, Parser)]
#[command(name = "mapispool", version, about, long_about = None)]
pub struct Cli {
    /// The profile to use (default: $MAPISPOOL_PROFILE, else
    /// $XDG_CONFIG_HOME/mapispool/profile.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub profile: Option<PathBuf>,

    /// Print less: only errors and what a script needs.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Log what the spooler does (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How log lines look on stderr: `text`, or `json` (one object per line, for log
    /// collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a throwaway demo with no configuration and no mail server: two profiles share a
    /// post-office directory; one sends, the other receives.
    Demo(DemoArgs),
    /// Write a commented profile to the profile path: asks on a terminal, else takes every
    /// answer from flags; `--dir` writes the local post-office default (no server).
    Init(InitArgs),
    /// Show the status table: the subsystem, the spooler, the store and every transport.
    /// With --cluster, every spooler node of the store's queue and the queue's counts.
    Status(StatusArgs),
    /// Send and/or receive now (IMAPIStatus::FlushQueues). With neither --upload nor
    /// --download, does both.
    Flush(FlushArgs),
    /// Queue a message (RFC 5322, from stdin or --file) for sending; it is on disk when this
    /// returns.
    Submit(SubmitArgs),
    /// Show the outgoing queue: one row per message, or per recipient with --recipients.
    Queue(QueueArgs),
    /// Take a message out of the outgoing queue (IMsgStore::AbortSubmit).
    Abort(AbortArgs),
    /// Queue again a message taken out of the queue by `abort`; recipients already delivered
    /// are not sent it again.
    Resubmit(AbortArgs),
    /// Move a message that is not queued (aborted, sent, received) to Deleted Items.
    Delete(AbortArgs),
    /// List the messages in a folder.
    Messages(MessagesArgs),
    /// Print one message's raw RFC 5322 text.
    Show(ShowArgs),
    /// Check the spooler's or a transport's state (IMAPIStatus::ValidateState).
    Validate(ValidateArgs),
    /// Work offline (ValidateState FORCE_XP_DISCONNECT): submit still queues, nothing
    /// connects. Every transport, or one; it holds until `mapispool online`, across restarts.
    Offline(SwitchArgs),
    /// Work online again (ValidateState FORCE_XP_CONNECT). With `send_on_reconnect = true` in
    /// [spooler], what queued while offline is sent at once; else at the next flush.
    Online(SwitchArgs),
    /// Run the spooler in the foreground: flush on the profile's schedules until SIGTERM or
    /// Ctrl-C, then finish what is in flight and exit 0.
    Spooler,
    /// Watch the status table live: redrawn in place on a terminal, one line per change
    /// otherwise, one JSON object per change with --json. Runs until Ctrl-C.
    Watch(WatchArgs),
    /// Queue a message as sendmail does (also what runs when invoked as `sendmail`): -t, -i,
    /// -oi, -f ADDR, -F NAME, -bm, recipients as arguments, the message on stdin. Exits 0, 64
    /// (usage), 65 (data) or 75 (try again later), like sendmail.
    Sendmail(SendmailArgs),
    /// Work on the message store itself: `store copy --to URL|PATH` copies this profile's
    /// store into one of the other backend (SQLite into PostgreSQL, or back).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print a shell completion script, e.g. `mapispool completions bash >
    /// ~/.local/share/bash-completion/completions/mapispool`.
    Completions(CompletionsArgs),
    /// Print a man page (roff) to stdout: mapispool(1), or with `profile` mapispool-profile(5),
    /// e.g. `mapispool man profile | man -l -`.
    Man(ManArgs),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every message of the profile's store (queue state, retries, recipients' states,
    /// Inbox, Sent Items, ...) and its inbound state into the store at --to, keeping ids: a
    /// SQLite store into the PostgreSQL database at a URL, a PostgreSQL store into the SQLite
    /// file at a path. Refused while a spooler serves the store (for PostgreSQL: while any
    /// node of the cluster is alive), and into a store that holds other messages; run it
    /// again after a failure to copy only what is missing. The source is left as it was:
    /// point the profile at the copy afterwards.
    Copy(StoreCopyArgs),
}

#[derive(Debug, Args)]
pub struct StoreCopyArgs {
    /// The target: postgres://USER@HOST:PORT/DATABASE (the password in the URL or in
    /// PGPASSWORD) when the profile's store is SQLite; the path of a SQLite file (created if
    /// missing) when it is PostgreSQL.
    #[arg(long, value_name = "URL|PATH")]
    pub to: String,
    /// Print what was copied as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Print one JSON object per notification (the row as `status --json` shows rows).
    #[arg(long)]
    pub json: bool,
    /// Stop when nothing is flushing (at once if nothing is).
    #[arg(long)]
    pub until_idle: bool,
    /// Stop after this many notifications.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SendmailArgs {
    /// sendmail's own flags and the recipients, parsed as sendmail parses them (`-oi`, `-fADDR`
    /// or `-f ADDR`, ...).
    #[arg(
        value_name = "ARGS",
        allow_hyphen_values = true,
        trailing_var_arg = true,
        num_args = 0..
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// Options shared by commands that print a MAPI table.
#[derive(Debug, Args, Clone, Default)]
pub struct TableArgs {
    /// Columns to show, by tag name or hex, comma-separated (e.g.
    /// PR_DISPLAY_NAME,PR_STATUS_CODE).
    #[arg(long, value_delimiter = ',', value_name = "TAGS")]
    pub columns: Vec<String>,
    /// Only rows matching this restriction, e.g.
    /// 'PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER && PR_RESOURCE_METHODS & STATUS_FLUSH_QUEUES'.
    #[arg(long = "where", value_name = "EXPR")]
    pub where_: Option<String>,
    /// Sort by this column; add :desc for descending. Repeat for more keys.
    #[arg(long, value_name = "TAG[:desc]")]
    pub sort: Vec<String>,
    /// Print JSON (tag names and numbers) for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct StatusArgs {
    /// The cluster view: every spooler node working this store's queue, alive, dead (no
    /// heartbeat for longer than its lease) or stopped, with its last heartbeat and status,
    /// then the shared queue's counts by state.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct QueueArgs {
    /// One row per recipient: its state (queued, sending, deferred, failed, sent), attempts,
    /// the server's last words and the next attempt.
    #[arg(long)]
    pub recipients: bool,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Only this transport, by name or entry ID (default: the spooler, i.e. every transport).
    #[arg(long, value_name = "NAME|ENTRYID")]
    pub transport: Option<String>,
    /// Print what changed as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FlushArgs {
    /// Send the outgoing queue (FLUSH_UPLOAD).
    #[arg(long)]
    pub upload: bool,
    /// Receive new mail (FLUSH_DOWNLOAD).
    #[arg(long)]
    pub download: bool,
    /// Only this transport, by name or entry ID. Goes to the transport's own status object when
    /// it offers FlushQueues, else through the spooler with it as the target.
    #[arg(long, value_name = "NAME|ENTRYID", conflicts_with_all = ["message", "group"])]
    pub transport: Option<String>,
    /// Only this send/receive group ([[group]] in the profile; "all" is every transport): its
    /// transports in profile order, in the directions it moves.
    #[arg(long, value_name = "NAME", conflicts_with = "message")]
    pub group: Option<String>,
    /// Only this queued message (like `postqueue -i`), by its entry ID (PR_ENTRYID in
    /// `mapispool queue`): sent now even if it waits for a retry; nothing else moves.
    #[arg(long, value_name = "ENTRYID")]
    pub message: Option<String>,
    /// Never prompt (FLUSH_NO_UI): a transport that needs a person fails its part instead.
    #[arg(long)]
    pub no_ui: bool,
    /// Return at once and go on in the background (FLUSH_ASYNC_OK).
    #[arg(long = "async")]
    pub async_ok: bool,
    /// Also send what is waiting for a retry, now (FLUSH_FORCE).
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Envelope recipients (each shows as To, Cc or Bcc as the header naming it says; one no
    /// header names is Bcc); without any, the To:, Cc: and Bcc: headers are used.
    #[arg(value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
    /// Also take recipients from the headers (as sendmail -t).
    #[arg(short = 't')]
    pub from_headers: bool,
    /// The envelope sender, or <> for the null sender (default: the address of the transport
    /// it leaves by, not the From: header's).
    #[arg(short = 'f', long = "from", value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Read the message from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Send through this transport (default: the one whose address is the sender's, else the
    /// first that can send).
    #[arg(long, value_name = "NAME")]
    pub transport: Option<String>,
    /// Do not send before this time: RFC 3339 (2026-11-26T08:00:00Z), a delay (+2h, +1h 30m)
    /// or a local time (08:00 for the next one, today 17:30, tomorrow 08:00).
    #[arg(long, value_name = "TIME")]
    pub defer_until: Option<String>,
    /// Delete the message after sending instead of keeping it in Sent Items.
    #[arg(long)]
    pub delete_after_submit: bool,
    /// Ask for delivery status notifications (RFC 3461 DSN): NEVER, or some of SUCCESS,
    /// FAILURE and DELAY separated by commas. Sent only to servers that offer DSN.
    #[arg(long, value_name = "WHEN")]
    pub notify: Option<String>,
    /// What a delivery status notification returns: FULL (the message) or HDRS (its headers).
    #[arg(long, value_name = "FULL|HDRS")]
    pub ret: Option<String>,
    /// Print the queued message as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The message's entry ID (PR_ENTRYID in `mapispool queue` or `messages`), or a unique
    /// prefix of it.
    pub entry_id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MessagesArgs {
    /// inbox, outbox, sent or deleted.
    #[arg(long, default_value = "inbox")]
    pub folder: String,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The message's entry ID (PR_ENTRYID in `mapispool messages`).
    pub entry_id: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Only this transport, by name or entry ID (default: the spooler, i.e. every transport).
    #[arg(long, value_name = "NAME|ENTRYID")]
    pub transport: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Which page: `mapispool` (section 1, the commands) or `profile` (section 5, every
    /// profile key).
    #[arg(value_enum, default_value_t = ManPage::Mapispool)]
    pub page: ManPage,
}

/// The man pages mapispool ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManPage {
    Mapispool,
    Profile,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write the local default: a `dir` transport (a post-office directory on this machine),
    /// no server.
    #[arg(long, conflicts_with_all = ["smtp_host", "imap_host", "pop3_host"])]
    pub dir: bool,
    /// Replace a profile that exists already.
    #[arg(long)]
    pub force: bool,
    /// The transport's name (`[[transport]] name`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The transport's e-mail address (`[[transport]] address`).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// The SMTP submission server.
    #[arg(long, value_name = "HOST")]
    pub smtp_host: Option<String>,
    /// The SMTP port (default: 587 for starttls, 465 for tls, 25 for none).
    #[arg(long, value_name = "PORT")]
    pub smtp_port: Option<u16>,
    /// How the SMTP connection is protected.
    #[arg(long, value_name = "SECURITY", value_parser = ["starttls", "tls", "none"])]
    pub smtp_security: Option<String>,
    /// The IMAP server to receive from (TLS on port 993).
    #[arg(long, value_name = "HOST", conflicts_with = "pop3_host")]
    pub imap_host: Option<String>,
    /// The POP3 server to receive from (TLS on port 995).
    #[arg(long, value_name = "HOST")]
    pub pop3_host: Option<String>,
    /// The login on both servers (default: the address).
    #[arg(long, value_name = "LOGIN")]
    pub username: Option<String>,
    /// The command that prints the password (`password_command`), e.g. "pass show mail/work";
    /// the password itself is never written.
    #[arg(long, value_name = "COMMAND")]
    pub password_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

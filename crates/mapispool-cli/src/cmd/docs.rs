//! `mapispool completions` and `mapispool man`: generated from the clap definitions in
//! `cli.rs`, so help, completions and the man page never disagree.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, ManPage};
use crate::exit::Exit;

/// Prints the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "mapispool", &mut out);
    write_stdout(&out)
}

/// Prints one man page for the whole tool: the top-level page (options, the list of commands),
/// then each command's synopsis and options as a subsection, as ripgrep's single page does —
/// one `man mapispool` answers every flag.
pub fn man(page: ManPage) -> Result<Exit> {
    if page == ManPage::Profile {
        return write_stdout(profile_page().as_bytes());
    }
    let command = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    out.extend_from_slice(b".SH \"COMMANDS IN DETAIL\"\n");
    // Unbuilt subcommands: only their own options, not the global ones repeated each time.
    for sub in command.get_subcommands() {
        let name = format!("mapispool {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut part)?;
        }
        let part = String::from_utf8_lossy(&part);
        // Each command is a subsection of this one: its own section headings become paragraph
        // breaks under the command's name.
        let body: String = part
            .lines()
            .map(|l| {
                if l.starts_with(".SH") {
                    ".PP\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        out.extend_from_slice(format!(".SS \"{name}\"\n{body}").as_bytes());
    }
    out.extend_from_slice(TOOL_SECTIONS.as_bytes());
    write_stdout(&out)
}

/// What clap cannot know: the files, the environment and the exit codes (`exit.rs`).
const TOOL_SECTIONS: &str = r#".SH FILES
.TP
.I $XDG_CONFIG_HOME/mapispool/profile.toml
The profile (default \fI~/.config/mapispool/profile.toml\fR), unless \fB\-\-profile\fR or
\fBMAPISPOOL_PROFILE\fR names another; see \fBmapispool\-profile\fR(5).
\fBmapispool init\fR writes one.
.TP
.I $XDG_DATA_HOME/mapispool/store.db
The message store (default \fI~/.local/share/mapispool/store.db\fR; \fB[store] path\fR
in the profile), with its \fI\-wal\fR and \fI\-shm\fR files; all mode 0600.
.TP
.I <store>.lock
Held by the one spooler daemon serving the store; it also tells clients the daemon's socket.
.TP
.I $XDG_RUNTIME_DIR/mapispool/db\-<hash>.lock
The same for a PostgreSQL store (\fB[store] url\fR): one daemon per profile and database, the
hash over the profile's path and the URL without its password, so several profiles or
machines each run one daemon on the same database.
.TP
.I $XDG_RUNTIME_DIR/mapispool/spooler\-<hash>.sock
The daemon's socket. Without \fBXDG_RUNTIME_DIR\fR: \fI/run/user/<uid>/mapispool\fR when that
directory is ours and 0700, else \fI$TMPDIR/mapispool\-<uid>\fR; the directory is 0700.
.SH ENVIRONMENT
.TP
.B MAPISPOOL_PROFILE
The profile to use when \fB\-\-profile\fR is not given (ignored when empty).
.TP
.B XDG_CONFIG_HOME
Where the default profile lives (default \fI~/.config\fR).
.TP
.B XDG_DATA_HOME
Where the default store lives (default \fI~/.local/share\fR).
.TP
.B XDG_RUNTIME_DIR
Where the daemon's socket directory is made.
.TP
.B TMPDIR
The socket directory's parent when neither \fBXDG_RUNTIME_DIR\fR nor \fI/run/user/<uid>\fR serves.
.TP
.B HOME
Expands \fI~\fR in profile paths, and locates the XDG defaults.
.TP
.B COLUMNS
The width \fBwatch\fR fits its table to when the terminal does not say.
.TP
.B NO_COLOR
When set and not empty, no colour in any output (progress bars and \fBwatch\fR's table stay).
.TP
.B RUST_LOG
A tracing filter (e.g. \fBmapispool=debug\fR) that overrides \fB\-v\fR.
.TP
.B JOURNAL_STREAM
Set by systemd: log lines then carry no timestamp of their own, and a priority prefix.
.TP
.BR NOTIFY_SOCKET ", " WATCHDOG_USEC
Set by systemd under \fBType=notify\fR: the daemon reports READY, STOPPING and the watchdog.
.TP
.B HOSTNAME
This machine's name in reports when \fI/proc/sys/kernel/hostname\fR cannot be read.
.SH "EXIT STATUS"
.TP
.B 0
Done: everything asked for happened.
.TP
.B 1
Partly done: a message waits for a retry or failed, or a transport could not be reached.
.TP
.B 2
Bad input: the command line, the profile, a \fB\-\-where\fR text, a message, an entry ID.
.TP
.B 3
The store (or the spooler daemon) could not be opened or written.
.TP
.B 4
MAPI refused: e.g. MAPI_E_NOT_IN_QUEUE, MAPI_E_UNABLE_TO_ABORT, MAPI_E_NO_SUPPORT.
.TP
.BR 64 ", " 65 ", " 75 ", " 78
\fBsendmail\fR only (sysexits.h): EX_USAGE (a bad command line), EX_DATAERR (a bad message),
EX_TEMPFAIL (the queue could not be written; try again), EX_CONFIG (no usable profile).
.SH "SEE ALSO"
\fBmapispool\-profile\fR(5)
"#;

/// One profile key: its table, its name, what it does.
pub(crate) struct Key {
    pub table: &'static str,
    pub name: &'static str,
    pub text: &'static str,
}

const fn key(table: &'static str, name: &'static str, text: &'static str) -> Key {
    Key { table, name, text }
}

/// Every key a profile takes, by table. `tests/man.rs` checks this list against the keys
/// `crates/mapispool/src/profile/raw.rs` accepts, both ways.
pub(crate) const KEYS: &[Key] = &[
    key(
        "store",
        "path",
        "The message store (SQLite) file. Default: $XDG_DATA_HOME/mapispool/store.db.",
    ),
    key(
        "store",
        "url",
        "A PostgreSQL store (postgres://USER@HOST:PORT/DATABASE) instead of a SQLite path; at most one of path and url.",
    ),
    key(
        "store",
        "password_command",
        "With url: a command whose first output line is the database password.",
    ),
    key(
        "store",
        "password_file",
        "With url: a file (mode 0600) whose first line is the database password.",
    ),
    key(
        "store",
        "password_env",
        "With url: an environment variable holding the database password.",
    ),
    key(
        "store",
        "password_keyring",
        "With url: the system keyring service holding the password (user \"store\").",
    ),
    key(
        "spooler",
        "upload_interval",
        "Send on this schedule (a duration, at least \"1s\"); none by default.",
    ),
    key(
        "spooler",
        "download_interval",
        "Receive on this schedule (at least \"1s\"); none by default.",
    ),
    key(
        "spooler",
        "retry_initial",
        "The wait after a message's first failed attempt, doubled per attempt (default \"5m\").",
    ),
    key(
        "spooler",
        "retry_max",
        "The longest wait between attempts (default \"1h\").",
    ),
    key(
        "spooler",
        "expire_after",
        "Give up on a message after this long and send a non-delivery report (default \"5d\").",
    ),
    key(
        "spooler",
        "delay_warning_after",
        "Send a delay notice once a message has waited this long (default \"4h\").",
    ),
    key(
        "spooler",
        "timeout",
        "How long a server, a password_command or a connect_command may be silent (default \"5m\").",
    ),
    key(
        "spooler",
        "offline",
        "Start offline: nothing is sent or received until `mapispool online` (default false).",
    ),
    key(
        "spooler",
        "send_on_reconnect",
        "Flush the outgoing queue when going back online (default false).",
    ),
    key(
        "spooler",
        "max_message_size",
        "Bytes (default 64 MiB, at most 4 GiB): a larger incoming message stays on the server, reported.",
    ),
    key(
        "spooler",
        "node",
        "This spooler's name in `mapispool status --cluster` (default: the host name).",
    ),
    key(
        "spooler",
        "heartbeat",
        "How often the node renews its liveness and the leases of what it is sending (default \"10s\").",
    ),
    key(
        "spooler",
        "lease",
        "How long a lease holds without a heartbeat (default twice timeout, at least \"60s\"; at least twice heartbeat): a dead node's messages move within lease + heartbeat.",
    ),
    key(
        "transport",
        "name",
        "The transport's name, unique in the profile: what --transport and [[group]] use.",
    ),
    key(
        "transport",
        "address",
        "The transport's e-mail address: the sender of what it sends.",
    ),
    key(
        "transport",
        "display_name",
        "The name shown with the address.",
    ),
    key(
        "transport",
        "flush_queues",
        "false: the transport's status object has no FlushQueues; flush it through the spooler.",
    ),
    key(
        "transport.connect_command",
        "command",
        "A shell command run once per flush, before it first connects (e.g. \"vpn up\").",
    ),
    key(
        "transport.connect_command",
        "interactive",
        "The command needs a person: skipped under FLUSH_NO_UI, no IDLE.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "kind",
        "outbound: \"smtp\" or \"dir\"; inbound: \"imap\", \"pop3\" or \"dir\".",
    ),
    key(
        "transport.outbound, transport.inbound",
        "path",
        "dir: the post-office directory.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "host",
        "smtp, imap, pop3: the server.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "port",
        "The server's port (default by kind and security: 587/465/25, 993/143, 995/110).",
    ),
    key(
        "transport.outbound, transport.inbound",
        "security",
        "\"tls\" (from the first byte), \"starttls\" or \"none\".",
    ),
    key(
        "transport.outbound, transport.inbound",
        "username",
        "The login; none: no authentication.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "password_command",
        "A command whose first output line is the password; run once per flush.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "password_file",
        "A file (mode 0600) holding the password.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "password_env",
        "An environment variable holding the password.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "password_prompt",
        "true: ask on the terminal (such a transport fails a FLUSH_NO_UI flush instead).",
    ),
    key(
        "transport.outbound, transport.inbound",
        "password_keyring",
        "The system keyring's service (builds with --features keyring).",
    ),
    key(
        "transport.outbound, transport.inbound",
        "auth",
        "smtp: \"plain\", \"login\" or \"xoauth2\"; imap: \"plain\" (AUTHENTICATE) or \"login\" (default: the best offered).",
    ),
    key(
        "transport.outbound, transport.inbound",
        "ca_file",
        "Extra CA certificates (PEM) to trust.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "insecure_skip_verify",
        "Accept any certificate: for test servers only.",
    ),
    key(
        "transport.outbound, transport.inbound",
        "allow_plaintext_auth",
        "With security = \"none\", allow a login in clear (a relay on 127.0.0.1).",
    ),
    key(
        "transport.outbound",
        "max_messages_per_connection",
        "smtp: open a new connection after this many messages.",
    ),
    key(
        "transport.outbound",
        "pipelining",
        "smtp: use PIPELINING when offered (default true).",
    ),
    key(
        "transport.outbound",
        "connections",
        "smtp: parallel connections a flush may open (1 to 32, default 4).",
    ),
    key(
        "transport.inbound",
        "folder",
        "imap: the mailbox to fetch (default \"INBOX\").",
    ),
    key(
        "transport.inbound",
        "after_download",
        "imap: \"seen\" (default), \"keep\", \"delete\" or \"move:<folder>\".",
    ),
    key(
        "transport.inbound",
        "idle",
        "imap: the daemon keeps IDLE open and fetches on a push.",
    ),
    key("transport.inbound", "apop", "pop3: log in with APOP."),
    key(
        "transport.inbound",
        "leave_on_server",
        "pop3: keep downloaded messages on the server.",
    ),
    key(
        "transport.inbound",
        "leave_days",
        "pop3: with leave_on_server, delete them after this many days.",
    ),
    key(
        "group",
        "name",
        "The send/receive group's name (\"all\", every transport, exists unless redefined).",
    ),
    key(
        "group",
        "transports",
        "The transports in the group, by name.",
    ),
    key(
        "group",
        "direction",
        "\"send\", \"receive\" or \"both\" (default).",
    ),
    key("group", "upload_interval", "The group's send schedule."),
    key(
        "group",
        "download_interval",
        "The group's receive schedule.",
    ),
    key(
        "group",
        "offline",
        "\"skip\" (default): offline transports are left out; \"include\": connect them anyway.",
    ),
    key(
        "web",
        "listen",
        "The daemon's status page and /metrics on this address (off without [web]).",
    ),
    key(
        "web",
        "token_file",
        "A file (0600) with the bearer token; required when listen is not loopback.",
    ),
];

/// mapispool-profile(5): every key, from [`KEYS`].
pub(crate) fn profile_page() -> String {
    let mut page = String::from(
        ".TH mapispool-profile 5\n\
         .SH NAME\nmapispool\\-profile \\- the mapispool profile (TOML)\n\
         .SH DESCRIPTION\n\
         A profile is a TOML file: the store, the spooler's schedules and retries, one or more\n\
         [[transport]] tables, each with an outbound and/or inbound part, optional [[group]]\n\
         tables and an optional [web] table. Durations are a number and a unit\n\
         (\"30s\", \"5m\", \"1h\", \"2d\"), at most \"3650d\". Unknown keys and keys of another\n\
         kind are refused with the file, line and column. \\fBmapispool init\\fR writes a\n\
         commented profile.\n\
         .SH KEYS\n",
    );
    let mut table = "";
    for k in KEYS {
        if k.table != table {
            table = k.table;
            page += &format!(".SS \"[{table}]\"\n");
        }
        page += &format!(".TP\n.B {}\n{}\n", k.name, roff_text(k.text));
    }
    page += ".SH FILES\n.I $XDG_CONFIG_HOME/mapispool/profile.toml\n\
             (default \\fI~/.config/mapispool/profile.toml\\fR), or \\fB$MAPISPOOL_PROFILE\\fR.\n\
             .SH \"SEE ALSO\"\n\\fBmapispool\\fR(1)\n";
    page
}

/// Escapes what roff would take as markup: a backslash, a leading `.` or `'`, and `-`.
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

fn write_stdout(bytes: &[u8]) -> Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Exit::Done),
        // `mapispool man | head`: a closed pipe is the reader being done, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Exit::Done),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

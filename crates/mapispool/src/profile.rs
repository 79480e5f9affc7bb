//! The profile: which store to use, how the spooler schedules its work, and the transports
//! (accounts) it sends and receives through — MAPI's profile and message services, as one TOML
//! file.
//!
//! ```toml
//! [store]
//! path = "~/.local/share/mapispool/store.db"   # or url = "postgres://..."
//!
//! [spooler]
//! upload_interval = "5m"
//! download_interval = "10m"
//!
//! [[transport]]
//! name = "work"
//! address = "me@example.com"
//! [transport.outbound]
//! kind = "smtp"
//! host = "smtp.example.com"
//! password_command = "pass show mail/work"
//! [transport.inbound]
//! kind = "imap"
//! host = "imap.example.com"
//! ```
//!
//! Layout:
//! - this file: the validated model ([`Profile`] and the types under it), finding and loading
//!   the file;
//! - `raw`: the serde mirror of the file as written, and the conversion that fills defaults,
//!   expands paths and validates;
//! - `error`: [`ProfileError`] and the rendering of `file:line:column` messages with an excerpt;
//! - `emit`: writing a profile back out as TOML (for `mapispool demo`).
//!
//! Credentials are only described here; running a `password_command` or reading a
//! `password_file` happens later, when a transport needs them.

mod emit;
mod error;
mod raw;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mapi::{MapiError, MapiResult};
use serde::{Deserialize, Serialize};

pub use error::ProfileError;

/// The environment variable that names the profile when `--profile` is not given.
pub const PROFILE_ENV: &str = "MAPISPOOL_PROFILE";

/// The file name of the profile inside the configuration directory.
pub const PROFILE_FILE_NAME: &str = "profile.toml";

/// A loaded, validated profile: every default is filled in, every path is absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The file it was read from; `None` for a profile built in code.
    pub source: Option<PathBuf>,
    /// The message store.
    pub store: StoreConfig,
    /// Schedules, retries and time limits.
    pub spooler: SpoolerConfig,
    /// The transports, in file order; never empty, names unique.
    pub transports: Vec<TransportConfig>,
    /// Send/receive groups as written (`[[group]]`), in file order; [`Profile::groups`] adds
    /// the default group "all" when none is called that.
    pub groups: Vec<GroupConfig>,
    /// The daemon's web listener (`[web]`); `None` (the default): none.
    pub web: Option<WebConfig>,
}

/// `[web]`: the daemon also serves its API, a status page and `/metrics` on TCP at `listen`.
/// A `listen` address that is not loopback needs `token_file` (checked when the profile is
/// read); the daemon refuses to start if that file is readable by others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub listen: std::net::SocketAddr,
    pub token_file: Option<PathBuf>,
}

/// The name of the default send/receive group: every transport, in profile order.
pub const DEFAULT_GROUP: &str = "all";

/// A send/receive group (`[[group]]`, Outlook's idea): some transports with their own
/// direction, schedule and offline behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Unique among groups; letters, digits, `_`, `.` and `-`.
    pub name: String,
    /// Transport names, each in the profile; flushed in profile order whatever order is given.
    pub transports: Vec<String>,
    /// What the group moves.
    pub direction: Direction,
    /// How often the group sends on its own; `None`: only when asked.
    pub upload_interval: Option<Duration>,
    /// How often the group receives on its own; `None`: only when asked.
    pub download_interval: Option<Duration>,
    /// What the group does with transports that are offline.
    pub offline: OfflinePolicy,
}

/// `direction` of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Send,
    Receive,
    Both,
}

impl Direction {
    /// Whether the group sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::Send | Direction::Both)
    }
    /// Whether the group receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::Receive | Direction::Both)
    }
}

/// `offline` of a group: Outlook's "include this group in send/receive when offline".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfflinePolicy {
    /// Offline transports are left out (the default).
    Skip,
    /// The group's flushes connect its transports even while they are offline.
    Include,
}

/// Where the message store lives (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A SQLite database file (`path`, absolute). The default is
    /// `$XDG_DATA_HOME/mapispool/store.db`.
    Path(PathBuf),
    /// A PostgreSQL database (`url = "postgres://USER@HOST:PORT/DATABASE"`), kept as written,
    /// and where its password comes from (`password_command`, `password_file`, `password_env`
    /// or `password_keyring` in `[store]`, as for transports); without one, a password in the
    /// URL or `PGPASSWORD` is used.
    Url {
        url: String,
        credential: Option<Credential>,
    },
}

impl StoreConfig {
    /// The SQLite file, if the store is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StoreConfig::Path(path) => Some(path),
            StoreConfig::Url { .. } => None,
        }
    }

    /// The store URL, if the store is a database server.
    pub fn url(&self) -> Option<&str> {
        match self {
            StoreConfig::Path(_) => None,
            StoreConfig::Url { url, .. } => Some(url),
        }
    }

    /// The default store: `store.db` in mapispool's data directory. `None` when the platform
    /// gives no home directory to put it in.
    pub fn default_path() -> Option<PathBuf> {
        project_dirs().map(|dirs| dirs.data_dir().join("store.db"))
    }
}

/// How the spooler schedules its work (`[spooler]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolerConfig {
    /// How often to flush the outbound queues; `None`: only when asked (`FlushQueues`).
    pub upload_interval: Option<Duration>,
    /// How often to poll the inbound side; `None`: only when asked.
    pub download_interval: Option<Duration>,
    /// The first retry delay after a temporary failure; each retry doubles it.
    pub retry_initial: Duration,
    /// The longest retry delay the doubling reaches.
    pub retry_max: Duration,
    /// How long a message may stay undeliverable before a final non-delivery report.
    pub expire_after: Duration,
    /// How long a message may be delayed before the sender gets a delay warning.
    pub delay_warning_after: Duration,
    /// The time limit for each network operation.
    pub timeout: Duration,
    /// Start offline: no schedule runs until the spooler is told to go online.
    pub offline: bool,
    /// Back online (`FORCE_XP_CONNECT`), send the queue at once (true) or wait for the next
    /// flush (false, the default).
    pub send_on_reconnect: bool,
    /// The largest message an IMAP or POP3 download takes, in bytes; a larger one is left on
    /// the server, named in the flush report, and the download goes on past it.
    pub max_message_size: u64,
    /// The name this spooler node shows in the cluster view (`mapispool status --cluster`);
    /// `None`: the host name.
    pub node: Option<String>,
    /// How often the spooler renews its node's heartbeat and extends the leases of the
    /// messages it is sending.
    pub heartbeat: Duration,
    /// How long a lease on a queued message lasts without a heartbeat: the time after which
    /// other nodes take over a dead node's messages is at most `lease + heartbeat`. `None`:
    /// [`SpoolerConfig::lease_time`]'s default.
    pub lease: Option<Duration>,
}

impl SpoolerConfig {
    /// The default heartbeat: every 10 seconds.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

    /// How long a lease lasts: `lease` when set, else twice `timeout` and at least a minute
    /// (long enough for a batch at the configured timeout per message even if heartbeats
    /// stall).
    pub fn lease_time(&self) -> Duration {
        self.lease
            .unwrap_or_else(|| self.timeout.saturating_mul(2).max(Duration::from_secs(60)))
    }

    /// The longest a dead node's messages wait before another node takes them over: its
    /// leases run out at most `lease` after its last heartbeat, and the others notice within
    /// one `heartbeat`.
    pub fn takeover_bound(&self) -> Duration {
        self.lease_time().saturating_add(self.heartbeat)
    }

    /// The default first retry delay: 5 minutes.
    pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_mins(5);
    /// The default longest retry delay: 1 hour.
    pub const DEFAULT_RETRY_MAX: Duration = Duration::from_hours(1);
    /// The default expiry: 5 days, as most MTAs do.
    pub const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_hours(5 * 24);
    /// The default delay warning: after 4 hours.
    pub const DEFAULT_DELAY_WARNING_AFTER: Duration = Duration::from_hours(4);
    /// The default time limit per network operation: 5 minutes.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_mins(5);
    /// The default largest message downloaded: 64 MiB, above what most providers accept
    /// (Gmail 25 MB, Microsoft 365 up to 150 MB by choice) while a hostile size stays harmless.
    pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;
    /// The largest `max_message_size` a profile may set: 4 GiB, as IMAP's RFC822.SIZE is a
    /// 32-bit number.
    pub const MAX_MAX_MESSAGE_SIZE: u64 = 4 * 1024 * 1024 * 1024;
}

impl Default for SpoolerConfig {
    fn default() -> Self {
        SpoolerConfig {
            upload_interval: None,
            download_interval: None,
            retry_initial: Self::DEFAULT_RETRY_INITIAL,
            retry_max: Self::DEFAULT_RETRY_MAX,
            expire_after: Self::DEFAULT_EXPIRE_AFTER,
            delay_warning_after: Self::DEFAULT_DELAY_WARNING_AFTER,
            timeout: Self::DEFAULT_TIMEOUT,
            offline: false,
            send_on_reconnect: false,
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            node: None,
            heartbeat: Self::DEFAULT_HEARTBEAT,
            lease: None,
        }
    }
}

/// One transport (`[[transport]]`): an account with an outbound part, an inbound part, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Unique within the profile; letters, digits, `_`, `.` and `-`.
    pub name: String,
    /// The addr-spec it sends and receives as (`PR_IDENTITY_*` in its status row).
    pub address: String,
    /// The display name that goes with `address`.
    pub display_name: Option<String>,
    /// How it sends; `None`: receive only.
    pub outbound: Option<OutboundConfig>,
    /// How it receives; `None`: send only.
    pub inbound: Option<InboundConfig>,
    /// A command to run before connecting (a VPN, a tunnel).
    pub connect_command: Option<ConnectCommand>,
    /// `flush_queues = false`: the transport's own status object has no `FlushQueues`
    /// (`PR_RESOURCE_METHODS` lacks `STATUS_FLUSH_QUEUES`), so clients flush it through the
    /// spooler, naming its entry ID — MAPI's second procedure. Default true.
    pub flush_queues: bool,
}

impl TransportConfig {
    /// True when using this transport may need a person: a password prompt on either side, or
    /// an interactive `connect_command`. Such a transport cannot honour `FLUSH_NO_UI`: under it
    /// the flush fails with a clear status instead of prompting.
    pub fn needs_person(&self) -> bool {
        let prompts = |credential: Option<&Credential>| {
            credential.is_some_and(|credential| matches!(credential, Credential::Prompt))
        };
        prompts(self.outbound.as_ref().and_then(OutboundConfig::credential))
            || prompts(self.inbound.as_ref().and_then(InboundConfig::credential))
            || self
                .connect_command
                .as_ref()
                .is_some_and(|connect| connect.interactive)
    }

    /// The kind of the outbound part, if there is one.
    pub fn outbound_kind(&self) -> Option<OutboundKind> {
        self.outbound.as_ref().map(OutboundConfig::kind)
    }

    /// The kind of the inbound part, if there is one.
    pub fn inbound_kind(&self) -> Option<InboundKind> {
        self.inbound.as_ref().map(InboundConfig::kind)
    }
}

/// The kinds of outbound part (`kind` in `[transport.outbound]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundKind {
    /// SMTP submission.
    Smtp,
    /// A local post-office directory.
    Dir,
}

impl OutboundKind {
    /// The name used in the profile.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundKind::Smtp => "smtp",
            OutboundKind::Dir => "dir",
        }
    }
}

/// The kinds of inbound part (`kind` in `[transport.inbound]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundKind {
    /// IMAP4rev1/rev2.
    Imap,
    /// POP3.
    Pop3,
    /// A local post-office directory.
    Dir,
}

impl InboundKind {
    /// The name used in the profile.
    pub fn as_str(self) -> &'static str {
        match self {
            InboundKind::Imap => "imap",
            InboundKind::Pop3 => "pop3",
            InboundKind::Dir => "dir",
        }
    }
}

/// The outbound part of a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundConfig {
    /// Submit over SMTP.
    Smtp(SmtpConfig),
    /// Drop messages into a directory.
    Dir(DirConfig),
}

impl OutboundConfig {
    /// Its kind.
    pub fn kind(&self) -> OutboundKind {
        match self {
            OutboundConfig::Smtp(_) => OutboundKind::Smtp,
            OutboundConfig::Dir(_) => OutboundKind::Dir,
        }
    }

    /// Its credential, if it has a server and one is configured.
    pub fn credential(&self) -> Option<&Credential> {
        match self {
            OutboundConfig::Smtp(smtp) => smtp.credential.as_ref(),
            OutboundConfig::Dir(_) => None,
        }
    }
}

/// The inbound part of a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundConfig {
    /// Fetch over IMAP.
    Imap(ImapConfig),
    /// Fetch over POP3.
    Pop3(Pop3Config),
    /// Pick messages up from a directory.
    Dir(DirConfig),
}

impl InboundConfig {
    /// Its kind.
    pub fn kind(&self) -> InboundKind {
        match self {
            InboundConfig::Imap(_) => InboundKind::Imap,
            InboundConfig::Pop3(_) => InboundKind::Pop3,
            InboundConfig::Dir(_) => InboundKind::Dir,
        }
    }

    /// Its credential, if it has a server and one is configured.
    pub fn credential(&self) -> Option<&Credential> {
        match self {
            InboundConfig::Imap(imap) => imap.credential.as_ref(),
            InboundConfig::Pop3(pop3) => pop3.credential.as_ref(),
            InboundConfig::Dir(_) => None,
        }
    }
}

/// How a connection is protected.
///
/// `None` together with a login is refused at profile load, since it sends the password in
/// clear, unless the part also says `allow_plaintext_auth = true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain TCP, upgraded with STARTTLS (or STLS for POP3) before anything else is said.
    Starttls,
    /// TLS from the first byte.
    Tls,
    /// No TLS at all.
    None,
}

/// The SMTP AUTH mechanism to insist on; when absent, the best one the server offers is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpAuth {
    /// AUTH PLAIN.
    Plain,
    /// AUTH LOGIN.
    Login,
    /// AUTH XOAUTH2, with the credential giving the bearer token.
    Xoauth2,
}

/// The IMAP login to insist on; when absent, AUTHENTICATE PLAIN if the server advertises
/// `AUTH=PLAIN`, else LOGIN. Its own type, not [`SmtpAuth`]: `login` here is IMAP's LOGIN
/// command, not a SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    /// AUTHENTICATE PLAIN.
    Plain,
    /// The LOGIN command.
    Login,
    /// AUTHENTICATE XOAUTH2, with the credential giving the bearer token.
    Xoauth2,
}

/// Where a password (or token) comes from. Nothing is resolved when the profile is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `password_command`: run through the shell; the first line of its output.
    Command(String),
    /// `password_file`: absolute; the file must be mode 0600, checked when it is read.
    File(PathBuf),
    /// `password_env`: the name of an environment variable.
    Env(String),
    /// `password_prompt = true`: ask on the terminal, which needs a person.
    Prompt,
    /// `password_keyring = "SERVICE"`: the system keyring's entry for that service and the
    /// transport's name (kernel keyutils on Linux, Keychain on macOS, Credential Manager on
    /// Windows); needs a build with the `keyring` feature.
    Keyring(String),
}

/// `[transport.outbound]` with `kind = "smtp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The server's host name.
    pub host: String,
    /// The port; by default 587 (starttls), 465 (tls) or 25 (none).
    pub port: u16,
    /// By default `starttls`.
    pub security: Security,
    /// The login; `None` means no AUTH.
    pub username: Option<String>,
    /// Where the password comes from.
    pub credential: Option<Credential>,
    /// The mechanism to insist on.
    pub auth: Option<SmtpAuth>,
    /// Extra CA certificates (PEM), absolute.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate; for test servers only.
    pub insecure_skip_verify: bool,
    /// `allow_plaintext_auth = true`: logging in with `security = "none"` is intended (a
    /// relay on 127.0.0.1); without it such a profile is refused at load.
    pub allow_plaintext_auth: bool,
    /// Open a new connection after this many messages; `None`: no limit.
    pub max_messages_per_connection: Option<u32>,
    /// Use PIPELINING when the server offers it; default true.
    pub pipelining: bool,
    /// How many connections a flush may open to the server at once (`connections`, 1 to
    /// [`MAX_SMTP_CONNECTIONS`], default [`DEFAULT_SMTP_CONNECTIONS`]). Messages are handed out
    /// in queue order; with more than one connection they may finish out of order.
    pub connections: u32,
}

/// `connections` of an SMTP transport when the profile does not say.
pub const DEFAULT_SMTP_CONNECTIONS: u32 = 4;
/// The most `connections` a profile may ask for.
pub const MAX_SMTP_CONNECTIONS: u32 = 32;

/// `[transport.inbound]` with `kind = "imap"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    /// The server's host name.
    pub host: String,
    /// The port; by default 993 (tls) or 143 (starttls, none).
    pub port: u16,
    /// By default `tls`.
    pub security: Security,
    /// The login.
    pub username: Option<String>,
    /// Where the password comes from.
    pub credential: Option<Credential>,
    /// The mechanism to insist on (`auth`, as for SMTP): `plain` (AUTHENTICATE PLAIN), `login`
    /// (the LOGIN command) or `xoauth2` (AUTHENTICATE XOAUTH2, the credential giving the bearer
    /// token). When absent: AUTHENTICATE PLAIN if the server advertises `AUTH=PLAIN`, else LOGIN.
    pub auth: Option<ImapAuth>,
    /// The folder to fetch from; default `INBOX`.
    pub folder: String,
    /// What to do on the server once a message is safely in the store; default `seen`.
    pub after_download: AfterDownload,
    /// Keep an IDLE connection for new mail.
    pub idle: bool,
    /// Extra CA certificates (PEM), absolute.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate; for test servers only.
    pub insecure_skip_verify: bool,
    /// `allow_plaintext_auth = true`: logging in with `security = "none"` is intended (a
    /// relay on 127.0.0.1); without it such a profile is refused at load.
    pub allow_plaintext_auth: bool,
}

/// `[transport.inbound]` with `kind = "pop3"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Config {
    /// The server's host name.
    pub host: String,
    /// The port; by default 995 (tls) or 110 (starttls, none).
    pub port: u16,
    /// By default `tls`.
    pub security: Security,
    /// The login.
    pub username: Option<String>,
    /// Where the password comes from.
    pub credential: Option<Credential>,
    /// Log in with APOP instead of USER/PASS.
    pub apop: bool,
    /// Leave messages on the server after download; default false (delete).
    pub leave_on_server: bool,
    /// With `leave_on_server`, delete them after this many days; `None`: never.
    pub leave_days: Option<u32>,
    /// Extra CA certificates (PEM), absolute.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate; for test servers only.
    pub insecure_skip_verify: bool,
    /// `allow_plaintext_auth = true`: logging in with `security = "none"` is intended (a
    /// relay on 127.0.0.1); without it such a profile is refused at load.
    pub allow_plaintext_auth: bool,
}

/// `kind = "dir"`: a post-office directory shared by local transports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirConfig {
    /// The directory, absolute.
    pub path: PathBuf,
}

/// What IMAP does with a message on the server once it is safely in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterDownload {
    /// Leave it as it is (`keep`).
    Keep,
    /// Set `\Seen` (`seen`).
    Seen,
    /// Delete and expunge it (`delete`).
    Delete,
    /// Move it to this folder (`move:<folder>`).
    Move(String),
}

impl AfterDownload {
    /// Parses the profile's spelling; `None` if it is none of `keep`, `seen`, `delete`,
    /// `move:<folder>` (with a non-empty folder).
    pub fn parse(text: &str) -> Option<AfterDownload> {
        match text {
            "keep" => Some(AfterDownload::Keep),
            "seen" => Some(AfterDownload::Seen),
            "delete" => Some(AfterDownload::Delete),
            _ => match text.strip_prefix("move:") {
                Some(folder) if !folder.is_empty() => Some(AfterDownload::Move(folder.to_owned())),
                _ => None,
            },
        }
    }
}

impl fmt::Display for AfterDownload {
    /// The profile's spelling, which [`AfterDownload::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AfterDownload::Keep => f.write_str("keep"),
            AfterDownload::Seen => f.write_str("seen"),
            AfterDownload::Delete => f.write_str("delete"),
            AfterDownload::Move(folder) => write!(f, "move:{folder}"),
        }
    }
}

/// `[transport.connect_command]`: run before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectCommand {
    /// Run through the shell.
    pub command: String,
    /// True when it needs a person (an interactive VPN login, an OAuth step in a browser).
    pub interactive: bool,
}

impl Profile {
    /// What this valid profile does that its owner should know, one line each for `validate`:
    /// each server part that logs in without TLS because it says `allow_plaintext_auth = true`.
    pub fn warnings(&self) -> Vec<String> {
        let mut found = Vec::new();
        for t in &self.transports {
            let outbound = match &t.outbound {
                Some(OutboundConfig::Smtp(c)) => {
                    Some((&c.host, c.port, c.security, c.allow_plaintext_auth))
                }
                _ => None,
            };
            let inbound = match &t.inbound {
                Some(InboundConfig::Imap(c)) => {
                    Some((&c.host, c.port, c.security, c.allow_plaintext_auth))
                }
                Some(InboundConfig::Pop3(c)) => {
                    Some((&c.host, c.port, c.security, c.allow_plaintext_auth))
                }
                _ => None,
            };
            for (side, part) in [("outbound", outbound), ("inbound", inbound)] {
                if let Some((host, port, Security::None, true)) = part {
                    found.push(format!(
                        "transport \"{}\" ({side}) logs in to {host}:{port} without TLS \
                         (allow_plaintext_auth = true): its password crosses the network in \
                         clear, which is safe only where nobody can listen (127.0.0.1)",
                        t.name
                    ));
                }
            }
        }
        found
    }

    /// Picks the profile file: `explicit` (the CLI's `--profile`) if given, else
    /// `$MAPISPOOL_PROFILE` if set and not empty, else `profile.toml` in mapispool's config
    /// directory (`$XDG_CONFIG_HOME/mapispool`, by default `~/.config/mapispool`).
    ///
    /// Does not check that the file exists; [`Profile::load`] says so when it does not.
    /// Fails only when no explicit path or variable is given and there is no home directory.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ProfileError> {
        locate_from(
            explicit,
            std::env::var_os(PROFILE_ENV),
            project_dirs().map(|dirs| dirs.config_dir().to_path_buf()),
        )
    }

    /// Reads, parses and validates the profile at `path`.
    ///
    /// A missing file gives [`ProfileError::NotFound`] (whose message says how to make one);
    /// any other read failure [`ProfileError::Read`]; bad contents [`ProfileError::Invalid`].
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ProfileError::NotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(ProfileError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Profile::from_str_at(&text, path)
    }

    /// Parses and validates `text` as if read from `path`: messages name `path`, and relative
    /// paths in it are taken relative to `path`'s directory. The file itself is not touched.
    pub fn from_str_at(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        // An absolute source makes relative paths inside it mean the same thing whatever the
        // current directory is later; `absolute` does not touch the file system.
        let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let raw: raw::RawProfile =
            toml::from_str(text).map_err(|err| error::from_toml(&err, text, path))?;
        let mut profile = raw
            .into_profile(&raw::Context::new(&source))
            .map_err(|issue| error::from_issue(issue, text, path))?;
        profile.source = Some(source);
        Ok(profile)
    }

    /// The send/receive groups in effect: those written, plus the default group "all" (every
    /// transport in profile order, both directions, `[spooler]`'s intervals) unless one is
    /// called that.
    pub fn groups(&self) -> Vec<GroupConfig> {
        let mut groups = self.groups.clone();
        if !groups.iter().any(|g| g.name == DEFAULT_GROUP) {
            groups.insert(
                0,
                GroupConfig {
                    name: DEFAULT_GROUP.to_string(),
                    transports: self.transports.iter().map(|t| t.name.clone()).collect(),
                    direction: Direction::Both,
                    upload_interval: self.spooler.upload_interval,
                    download_interval: self.spooler.download_interval,
                    offline: OfflinePolicy::Skip,
                },
            );
        }
        groups
    }

    /// The group called `name` (the default group "all" included).
    pub fn group(&self, name: &str) -> Option<GroupConfig> {
        self.groups().into_iter().find(|g| g.name == name)
    }

    /// The transport called `name`.
    pub fn transport(&self, name: &str) -> Option<&TransportConfig> {
        self.transports
            .iter()
            .find(|transport| transport.name == name)
    }

    /// The transport a new message leaves by, MAPI's rule adapted to accounts: the one named,
    /// else the one whose address is the sender's (the account it was written from), else the
    /// first in profile order that can send.
    ///
    /// Errors: `MAPI_E_NOT_FOUND` for a named transport that does not exist or cannot send;
    /// `MAPI_E_NO_SUPPORT` when no transport can send at all.
    pub fn route(&self, sender: Option<&str>, named: Option<&str>) -> MapiResult<String> {
        let senders = || self.transports.iter().filter(|t| t.outbound.is_some());
        if let Some(name) = named {
            return match self.transport(name) {
                Some(t) if t.outbound.is_some() => Ok(name.to_string()),
                Some(_) => Err(MapiError::not_found(format!(
                    "transport \"{name}\" has no outbound side; it cannot send"
                ))),
                None => Err(MapiError::not_found(format!(
                    "there is no transport \"{name}\" in the profile; the profile has: {}",
                    self.transports
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            };
        }
        if let Some(sender) = sender
            && let Some(t) = senders().find(|t| t.address.eq_ignore_ascii_case(sender))
        {
            return Ok(t.name.clone());
        }
        senders().next().map(|t| t.name.clone()).ok_or_else(|| {
            MapiError::no_support(
                "no transport in the profile can send: add an [transport.outbound] section",
            )
        })
    }

    /// Writes the profile as TOML that [`Profile::from_str_at`] reads back to an equal profile
    /// (every default spelled out, every path absolute). Fails only for a path that is not
    /// UTF-8, which TOML cannot hold.
    pub fn to_toml_string(&self) -> Result<String, ProfileError> {
        let raw = raw::RawProfile::from_profile(self)?;
        let value = toml::Value::try_from(&raw).map_err(|err| ProfileError::Serialize {
            message: err.to_string(),
        })?;
        match value {
            toml::Value::Table(table) => Ok(emit::document(&table)),
            _ => Err(ProfileError::Serialize {
                message: "the profile did not serialize to a table".to_owned(),
            }),
        }
    }
}

/// The precedence of [`Profile::locate`], with the environment passed in so that tests need not
/// change the process's environment.
fn locate_from(
    explicit: Option<&Path>,
    env: Option<OsString>,
    config_dir: Option<PathBuf>,
) -> Result<PathBuf, ProfileError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env.filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    config_dir
        .map(|dir| dir.join(PROFILE_FILE_NAME))
        .ok_or(ProfileError::NoConfigDir)
}

/// mapispool's directories (config, data); they honour the XDG variables on Linux.
fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "mapispool")
}

/// The user's home directory, for `~`.
fn home_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf())
}

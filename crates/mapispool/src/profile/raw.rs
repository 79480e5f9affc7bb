//! The profile as written: a serde mirror of the TOML, and its conversion into the validated
//! model (defaults filled, paths expanded, rules checked) and back.
//!
//! The endpoint tables are flat structs holding every key any kind may use, rather than enums
//! tagged by `kind`: serde buffers a tagged enum's table before looking at it, which loses the
//! position of a bad key or value, while a flat struct keeps it. The kind-specific key lists
//! are checked here instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_SMTP_CONNECTIONS, MAX_SMTP_CONNECTIONS};

use super::{
    AfterDownload, ConnectCommand, Credential, DirConfig, Direction, GroupConfig, ImapAuth,
    ImapConfig, InboundConfig, InboundKind, OfflinePolicy, OutboundConfig, OutboundKind,
    Pop3Config, Profile, ProfileError, Security, SmtpAuth, SmtpConfig, SpoolerConfig, StoreConfig,
    TransportConfig, WebConfig,
};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store: Option<RawStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spooler: Option<RawSpooler>,
    #[serde(default, rename = "transport", skip_serializing_if = "Vec::is_empty")]
    transports: Vec<RawTransport>,
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    groups: Vec<RawGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    web: Option<RawWeb>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    listen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    transports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    direction: Option<Direction>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    upload_interval: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    download_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offline: Option<OfflinePolicy>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_keyring: Option<String>,
}

/// Durations are optional here even where the model has a default, so that the default lives
/// in one place ([`SpoolerConfig::default`]).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawSpooler {
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    upload_interval: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    download_interval: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    retry_initial: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    retry_max: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    expire_after: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    delay_warning_after: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offline: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send_on_reconnect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_message_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    heartbeat: Option<Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    lease: Option<Duration>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTransport {
    name: String,
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outbound: Option<RawOutbound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inbound: Option<RawInbound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect_command: Option<RawConnect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flush_queues: Option<bool>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interactive: Option<bool>,
}

/// The four ways to give a credential; at most one may be used.
#[derive(Debug, Default)]
struct RawCredential<'a> {
    password_command: Option<&'a String>,
    password_file: Option<&'a String>,
    password_env: Option<&'a String>,
    password_prompt: Option<bool>,
    password_keyring: Option<&'a String>,
}

/// Declares a flat endpoint struct, and `present_keys`, which lists the keys that were given
/// so that they can be checked against the keys of the chosen kind.
macro_rules! raw_endpoint {
    ($name:ident, kind: $kind:ty, { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Debug, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            kind: $kind,
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $field: Option<$ty>,
            )*
        }

        impl $name {
            fn present_keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(
                    if self.$field.is_some() {
                        keys.push(stringify!($field));
                    }
                )*
                keys
            }

            fn raw_credential(&self) -> RawCredential<'_> {
                RawCredential {
                    password_command: self.password_command.as_ref(),
                    password_file: self.password_file.as_ref(),
                    password_env: self.password_env.as_ref(),
                    password_prompt: self.password_prompt,
                    password_keyring: self.password_keyring.as_ref(),
                }
            }
        }
    };
}

raw_endpoint!(RawOutbound, kind: OutboundKind, {
    host: String,
    port: u16,
    security: Security,
    username: String,
    password_command: String,
    password_file: String,
    password_env: String,
    password_prompt: bool,
    password_keyring: String,
    auth: SmtpAuth,
    ca_file: String,
    insecure_skip_verify: bool,
    allow_plaintext_auth: bool,
    max_messages_per_connection: u32,
    pipelining: bool,
    connections: u32,
    path: String,
});

raw_endpoint!(RawInbound, kind: InboundKind, {
    host: String,
    port: u16,
    security: Security,
    username: String,
    password_command: String,
    password_file: String,
    password_env: String,
    password_prompt: bool,
    password_keyring: String,
    auth: ImapAuth,
    folder: String,
    after_download: String,
    idle: bool,
    apop: bool,
    leave_on_server: bool,
    leave_days: u32,
    ca_file: String,
    insecure_skip_verify: bool,
    allow_plaintext_auth: bool,
    path: String,
});

const CREDENTIAL_KEYS: [&str; 5] = [
    "password_command",
    "password_file",
    "password_env",
    "password_prompt",
    "password_keyring",
];
const SERVER_KEYS: [&str; 9] = [
    "host",
    "port",
    "security",
    "username",
    "password_command",
    "password_file",
    "password_env",
    "password_prompt",
    "password_keyring",
];
/// How the connection is protected, beyond `security`.
const TLS_KEYS: [&str; 3] = ["ca_file", "insecure_skip_verify", "allow_plaintext_auth"];
const SMTP_KEYS: [&str; 4] = [
    "auth",
    "max_messages_per_connection",
    "pipelining",
    "connections",
];
const IMAP_KEYS: [&str; 4] = ["auth", "folder", "after_download", "idle"];
const POP3_KEYS: [&str; 3] = ["apop", "leave_on_server", "leave_days"];
const DIR_KEYS: [&str; 1] = ["path"];

/// The keys (besides `kind`) that an outbound part of this kind accepts.
fn outbound_keys(kind: OutboundKind) -> Vec<&'static str> {
    match kind {
        OutboundKind::Smtp => [&SERVER_KEYS[..], &SMTP_KEYS[..], &TLS_KEYS[..]].concat(),
        OutboundKind::Dir => DIR_KEYS.to_vec(),
    }
}

/// The keys (besides `kind`) that an inbound part of this kind accepts.
fn inbound_keys(kind: InboundKind) -> Vec<&'static str> {
    match kind {
        InboundKind::Imap => [&SERVER_KEYS[..], &IMAP_KEYS[..], &TLS_KEYS[..]].concat(),
        InboundKind::Pop3 => [&SERVER_KEYS[..], &POP3_KEYS[..], &TLS_KEYS[..]].concat(),
        InboundKind::Dir => DIR_KEYS.to_vec(),
    }
}

/// Something wrong with a profile that parsed: the message, and where to point.
#[derive(Debug)]
pub(super) struct Issue {
    pub message: String,
    pub at: At,
}

/// Where an [`Issue`] is, in the terms of the profile; `error` turns it into a line.
#[derive(Debug, Clone, Copy)]
pub(super) enum At {
    /// The whole file.
    File,
    /// A key: in a top-level table (`transport: None`, `table` = "store" or "spooler"), or in
    /// the `transport`-th `[[transport]]` (`table` = "" for itself, else the sub-table).
    Key {
        transport: Option<usize>,
        table: &'static str,
        key: &'static str,
    },
    /// A key of the `group`-th `[[group]]`.
    Group { group: usize, key: &'static str },
}

impl Issue {
    fn new(at: At, message: impl Into<String>) -> Issue {
        Issue {
            message: message.into(),
            at,
        }
    }
}

/// What the conversion needs from outside the text: where relative paths start, and `~`.
pub(super) struct Context {
    base_dir: PathBuf,
    home: Option<PathBuf>,
    default_store: Option<PathBuf>,
}

impl Context {
    /// For a profile read from `source` (absolute).
    pub fn new(source: &Path) -> Context {
        Context {
            base_dir: source.parent().map(Path::to_path_buf).unwrap_or_default(),
            home: super::home_dir(),
            default_store: StoreConfig::default_path(),
        }
    }

    /// Expands a leading `~` and makes a relative path absolute against the profile's
    /// directory. `~user` is not expanded: it is taken as a relative name, as a shell would
    /// for an unknown user.
    fn path(&self, text: &str, at: At) -> Result<PathBuf, Issue> {
        if text.is_empty() {
            return Err(Issue::new(at, "the path is empty"));
        }
        let home = || {
            self.home.clone().ok_or_else(|| {
                Issue::new(
                    at,
                    format!("cannot expand \"~\" in \"{text}\": there is no home directory"),
                )
            })
        };
        let path = if text == "~" {
            home()?
        } else if let Some(rest) = text.strip_prefix("~/") {
            home()?.join(rest)
        } else {
            PathBuf::from(text)
        };
        let path = if path.is_absolute() {
            path
        } else {
            self.base_dir.join(path)
        };
        // `components` drops interior `.` segments, so "./x" does not show up as "/dir/./x".
        Ok(path.components().collect())
    }
}

impl RawProfile {
    /// Validates and fills defaults. `source` is left for the caller to set.
    pub fn into_profile(self, cx: &Context) -> Result<Profile, Issue> {
        let store = convert_store(self.store.unwrap_or_default(), cx)?;
        let spooler = convert_spooler(self.spooler.unwrap_or_default())?;
        let web = self.web.map(|w| convert_web(w, cx)).transpose()?;
        if self.transports.is_empty() {
            return Err(Issue::new(
                At::File,
                "the profile has no [[transport]]: add at least one (the README has an example)",
            ));
        }
        let mut transports: Vec<TransportConfig> = Vec::with_capacity(self.transports.len());
        for (index, raw) in self.transports.into_iter().enumerate() {
            let transport = convert_transport(raw, index, cx)?;
            if transports.iter().any(|seen| seen.name == transport.name) {
                return Err(Issue::new(
                    key_at(index, "", "name"),
                    format!(
                        "duplicate transport name \"{}\": each [[transport]] needs its own name",
                        transport.name
                    ),
                ));
            }
            transports.push(transport);
        }
        let mut groups: Vec<GroupConfig> = Vec::with_capacity(self.groups.len());
        for (index, raw) in self.groups.into_iter().enumerate() {
            let group = convert_group(raw, index, &transports)?;
            if groups.iter().any(|seen| seen.name == group.name) {
                return Err(Issue::new(
                    At::Group {
                        group: index,
                        key: "name",
                    },
                    format!(
                        "duplicate group name \"{}\": each [[group]] needs its own name",
                        group.name
                    ),
                ));
            }
            groups.push(group);
        }
        Ok(Profile {
            source: None,
            store,
            spooler,
            transports,
            groups,
            web,
        })
    }

    /// The file form of `profile`, with every default written out.
    pub fn from_profile(profile: &Profile) -> Result<RawProfile, ProfileError> {
        let store = match &profile.store {
            StoreConfig::Path(path) => RawStore {
                path: Some(path_text(path)?),
                ..RawStore::default()
            },
            StoreConfig::Url { url, credential } => {
                let [
                    password_command,
                    password_file,
                    password_env,
                    password_keyring,
                ] = unconvert_credential(credential.as_ref())?;
                RawStore {
                    path: None,
                    url: Some(url.clone()),
                    password_command,
                    password_file,
                    password_env,
                    password_keyring,
                }
            }
        };
        let spooler = &profile.spooler;
        let spooler = RawSpooler {
            upload_interval: spooler.upload_interval,
            download_interval: spooler.download_interval,
            retry_initial: Some(spooler.retry_initial),
            retry_max: Some(spooler.retry_max),
            expire_after: Some(spooler.expire_after),
            delay_warning_after: Some(spooler.delay_warning_after),
            timeout: Some(spooler.timeout),
            offline: Some(spooler.offline),
            send_on_reconnect: Some(spooler.send_on_reconnect),
            max_message_size: Some(spooler.max_message_size),
            node: spooler.node.clone(),
            heartbeat: Some(spooler.heartbeat),
            lease: spooler.lease,
        };
        let transports = profile
            .transports
            .iter()
            .map(unconvert_transport)
            .collect::<Result<_, _>>()?;
        let groups = profile
            .groups
            .iter()
            .map(|g| RawGroup {
                name: g.name.clone(),
                transports: g.transports.clone(),
                direction: Some(g.direction),
                upload_interval: g.upload_interval,
                download_interval: g.download_interval,
                offline: Some(g.offline),
            })
            .collect();
        let web = match &profile.web {
            Some(w) => Some(RawWeb {
                listen: w.listen.to_string(),
                token_file: w.token_file.as_deref().map(path_text).transpose()?,
            }),
            None => None,
        };
        Ok(RawProfile {
            store: Some(store),
            spooler: Some(spooler),
            transports,
            groups,
            web,
        })
    }
}

fn key_at(transport: usize, table: &'static str, key: &'static str) -> At {
    At::Key {
        transport: Some(transport),
        table,
        key,
    }
}

fn top_key(table: &'static str, key: &'static str) -> At {
    At::Key {
        transport: None,
        table,
        key,
    }
}

fn convert_store(raw: RawStore, cx: &Context) -> Result<StoreConfig, Issue> {
    let given: Vec<&'static str> = [
        raw.password_command.is_some(),
        raw.password_file.is_some(),
        raw.password_env.is_some(),
        raw.password_keyring.is_some(),
    ]
    .into_iter()
    .zip(STORE_CREDENTIAL_KEYS)
    .filter_map(|(given, key)| given.then_some(key))
    .collect();
    if let [first, second, ..] = given[..] {
        return Err(Issue::new(
            top_key("store", second),
            format!(
                "[store] has both {first} and {second}: keep one of {}",
                STORE_CREDENTIAL_KEYS.join(", ")
            ),
        ));
    }
    if raw.url.is_none()
        && let Some(key) = given.first()
    {
        return Err(Issue::new(
            top_key("store", key),
            format!("[store] {key} is for a database server's password: it needs url"),
        ));
    }
    let credential = if let Some(command) = raw.password_command {
        Some(Credential::Command(command))
    } else if let Some(file) = raw.password_file {
        Some(Credential::File(
            cx.path(&file, top_key("store", "password_file"))?,
        ))
    } else if let Some(var) = raw.password_env {
        Some(Credential::Env(var))
    } else {
        raw.password_keyring.map(Credential::Keyring)
    };
    match (raw.path, raw.url) {
        (Some(_), Some(_)) => Err(Issue::new(
            top_key("store", "url"),
            "[store] has both path and url: keep one (path for SQLite, url for a database server)",
        )),
        (Some(path), None) => Ok(StoreConfig::Path(cx.path(&path, top_key("store", "path"))?)),
        (None, Some(url)) if url.is_empty() => {
            Err(Issue::new(top_key("store", "url"), "[store] url is empty"))
        }
        (None, Some(url))
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) =>
        {
            Err(Issue::new(
                top_key("store", "url"),
                "[store] url must be a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE); for SQLite set path instead",
            ))
        }
        (None, Some(url)) => Ok(StoreConfig::Url { url, credential }),
        (None, None) => cx
            .default_store
            .clone()
            .map(StoreConfig::Path)
            .ok_or_else(|| {
                Issue::new(
                    At::File,
                    "there is no home directory to keep the store in: set path in [store]",
                )
            }),
    }
}

/// The credential keys `[store]` takes: no `password_prompt`, since the daemon that opens the
/// store has no terminal.
const STORE_CREDENTIAL_KEYS: [&str; 4] = [
    "password_command",
    "password_file",
    "password_env",
    "password_keyring",
];

/// `[web]`: an address to listen on; one that others can reach needs a token to let them in.
fn convert_web(raw: RawWeb, cx: &Context) -> Result<WebConfig, Issue> {
    let listen: std::net::SocketAddr = raw.listen.parse().map_err(|e| {
        Issue::new(
            top_key("web", "listen"),
            format!(
                "[web] listen {:?} is not an address and port ({e}), e.g. \"127.0.0.1:8025\"",
                raw.listen
            ),
        )
    })?;
    let token_file = raw
        .token_file
        .map(|p| cx.path(&p, top_key("web", "token_file")))
        .transpose()?;
    if !listen.ip().is_loopback() && token_file.is_none() {
        return Err(Issue::new(
            top_key("web", "listen"),
            format!(
                "[web] listen {listen} is reachable from other machines: set token_file (a file of mode 0600 holding the access token), or listen on 127.0.0.1"
            ),
        ));
    }
    Ok(WebConfig { listen, token_file })
}

fn convert_spooler(raw: RawSpooler) -> Result<SpoolerConfig, Issue> {
    let defaults = SpoolerConfig::default();
    let spooler = SpoolerConfig {
        upload_interval: raw.upload_interval,
        download_interval: raw.download_interval,
        retry_initial: raw.retry_initial.unwrap_or(defaults.retry_initial),
        retry_max: raw.retry_max.unwrap_or(defaults.retry_max),
        expire_after: raw.expire_after.unwrap_or(defaults.expire_after),
        delay_warning_after: raw
            .delay_warning_after
            .unwrap_or(defaults.delay_warning_after),
        timeout: raw.timeout.unwrap_or(defaults.timeout),
        offline: raw.offline.unwrap_or(defaults.offline),
        send_on_reconnect: raw.send_on_reconnect.unwrap_or(defaults.send_on_reconnect),
        max_message_size: raw.max_message_size.unwrap_or(defaults.max_message_size),
        node: raw.node,
        heartbeat: raw.heartbeat.unwrap_or(defaults.heartbeat),
        lease: raw.lease,
    };
    if !(1..=SpoolerConfig::MAX_MAX_MESSAGE_SIZE).contains(&spooler.max_message_size) {
        return Err(Issue::new(
            top_key("spooler", "max_message_size"),
            format!(
                "max_message_size in [spooler] is {} bytes; it must be from 1 to {} (4 GiB)",
                spooler.max_message_size,
                SpoolerConfig::MAX_MAX_MESSAGE_SIZE
            ),
        ));
    }
    for (key, value) in [
        ("upload_interval", spooler.upload_interval),
        ("download_interval", spooler.download_interval),
    ] {
        if let Some(interval) = value.filter(|d| *d < MIN_INTERVAL) {
            return Err(Issue::new(
                top_key("spooler", key),
                too_short(&format!("{key} in [spooler]"), interval),
            ));
        }
    }
    // A zero delay would make the spooler spin; a zero timeout fails everything.
    let positive = [
        ("retry_initial", Some(spooler.retry_initial)),
        ("retry_max", Some(spooler.retry_max)),
        ("timeout", Some(spooler.timeout)),
        ("heartbeat", Some(spooler.heartbeat)),
    ];
    for (key, value) in positive {
        if value == Some(Duration::ZERO) {
            return Err(Issue::new(
                top_key("spooler", key),
                format!("{key} in [spooler] must be longer than 0s"),
            ));
        }
    }
    if let Some(node) = &spooler.node
        && (node.trim().is_empty() || node.chars().any(char::is_control))
    {
        return Err(Issue::new(
            top_key("spooler", "node"),
            format!(
                "node in [spooler] is {node:?}: give the node a name to show, or leave it out for the host name"
            ),
        ));
    }
    if spooler.lease_time() < spooler.heartbeat.saturating_mul(2) {
        return Err(Issue::new(
            top_key("spooler", "lease"),
            format!(
                "lease ({}) in [spooler] is shorter than twice heartbeat ({}): one late heartbeat would let other nodes take over messages this node is still sending",
                humantime::format_duration(spooler.lease_time()),
                humantime::format_duration(spooler.heartbeat)
            ),
        ));
    }
    if spooler.retry_initial > spooler.retry_max {
        return Err(Issue::new(
            top_key("spooler", "retry_initial"),
            format!(
                "retry_initial ({}) in [spooler] is longer than retry_max ({})",
                humantime::format_duration(spooler.retry_initial),
                humantime::format_duration(spooler.retry_max)
            ),
        ));
    }
    Ok(spooler)
}

/// Validates one `[[group]]` against the transports already read; its transports are kept in
/// profile order, which is the order a group flush runs them in.
fn convert_group(
    raw: RawGroup,
    index: usize,
    transports: &[TransportConfig],
) -> Result<GroupConfig, Issue> {
    let at = |key| At::Group { group: index, key };
    let name = raw.name;
    if !valid_name(&name) {
        return Err(Issue::new(
            at("name"),
            format!(
                "group name \"{name}\" is invalid: use letters, digits, \"_\", \".\" and \"-\""
            ),
        ));
    }
    if raw.transports.is_empty() {
        return Err(Issue::new(
            at("transports"),
            format!("group \"{name}\" has no transports: name at least one [[transport]]"),
        ));
    }
    for (position, wanted) in raw.transports.iter().enumerate() {
        if !transports.iter().any(|t| &t.name == wanted) {
            let known: Vec<&str> = transports.iter().map(|t| t.name.as_str()).collect();
            return Err(Issue::new(
                at("transports"),
                format!(
                    "group \"{name}\": there is no transport \"{}\", expected one of: {}",
                    wanted.escape_debug(),
                    known.join(", ")
                ),
            ));
        }
        if raw.transports[..position].contains(wanted) {
            return Err(Issue::new(
                at("transports"),
                format!("group \"{name}\" names transport \"{wanted}\" twice"),
            ));
        }
    }
    for (key, value) in [
        ("upload_interval", raw.upload_interval),
        ("download_interval", raw.download_interval),
    ] {
        if let Some(interval) = value.filter(|d| *d < MIN_INTERVAL) {
            return Err(Issue::new(
                at(key),
                too_short(&format!("{key} of group \"{name}\""), interval),
            ));
        }
    }
    Ok(GroupConfig {
        transports: transports
            .iter()
            .filter(|t| raw.transports.contains(&t.name))
            .map(|t| t.name.clone())
            .collect(),
        name,
        direction: raw.direction.unwrap_or(Direction::Both),
        upload_interval: raw.upload_interval,
        download_interval: raw.download_interval,
        offline: raw.offline.unwrap_or(OfflinePolicy::Skip),
    })
}

/// The shortest schedule a profile takes: a shorter one would have the spooler do nothing but
/// flush (a millisecond interval spins a core and hammers the servers).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);

fn too_short(what: &str, interval: Duration) -> String {
    format!(
        "{what} is \"{}\", shorter than the shortest schedule a profile takes, \"1s\" \
         (every interval starts a flush)",
        humantime::format_duration(interval)
    )
}

/// True for a transport name: letters, digits, `_`, `.`, `-`; it ends up in status rows,
/// command lines and file names, so nothing that needs quoting.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A light check of an addr-spec: the envelope rules the transports use
/// ([`check_address`](crate::message::check_address): something on both sides of the `@`, no
/// white space, control characters or angle brackets), and exactly one `@`, which an identity
/// needs even though a quoted local part may hold more. Full RFC 5322 parsing is the server's
/// business.
fn valid_address(address: &str) -> bool {
    address.matches('@').count() == 1 && crate::message::check_address(address).is_ok()
}

fn convert_transport(
    raw: RawTransport,
    index: usize,
    cx: &Context,
) -> Result<TransportConfig, Issue> {
    let name = raw.name;
    if !valid_name(&name) {
        return Err(Issue::new(
            key_at(index, "", "name"),
            format!(
                "transport name \"{name}\" is invalid: use letters, digits, \"_\", \".\" and \"-\""
            ),
        ));
    }
    if !valid_address(&raw.address) {
        return Err(Issue::new(
            key_at(index, "", "address"),
            format!(
                "transport \"{name}\": address \"{}\" is invalid, expected an addr-spec like \
                 \"me@example.com\" (one \"@\", no spaces, line breaks or angle brackets)",
                raw.address.escape_debug()
            ),
        ));
    }
    if raw.outbound.is_none() && raw.inbound.is_none() {
        return Err(Issue::new(
            key_at(index, "", "name"),
            format!(
                "transport \"{name}\" has neither [transport.outbound] nor [transport.inbound]: \
                 give it at least one"
            ),
        ));
    }
    let site = Site {
        name: &name,
        index,
        cx,
    };
    let outbound = raw
        .outbound
        .map(|outbound| site.outbound(outbound))
        .transpose()?;
    let inbound = raw
        .inbound
        .map(|inbound| site.inbound(inbound))
        .transpose()?;
    let connect_command = match raw.connect_command {
        Some(connect) if connect.command.trim().is_empty() => {
            return Err(Issue::new(
                key_at(index, "connect_command", "command"),
                format!("transport \"{name}\": command in [transport.connect_command] is empty"),
            ));
        }
        Some(connect) => Some(ConnectCommand {
            command: connect.command,
            interactive: connect.interactive.unwrap_or(false),
        }),
        None => None,
    };
    Ok(TransportConfig {
        name,
        address: raw.address,
        display_name: raw.display_name,
        outbound,
        inbound,
        connect_command,
        flush_queues: raw.flush_queues.unwrap_or(true),
    })
}

/// The transport and table being converted, for messages and positions.
struct Site<'a> {
    name: &'a str,
    index: usize,
    cx: &'a Context,
}

impl Site<'_> {
    fn issue(&self, table: &'static str, key: &'static str, message: String) -> Issue {
        Issue::new(
            key_at(self.index, table, key),
            format!("transport \"{}\": {message}", self.name),
        )
    }

    /// Rejects keys that the chosen kind does not use, so that a `host` under `kind = "dir"`
    /// is not silently ignored.
    fn check_keys(
        &self,
        table: &'static str,
        kind: &str,
        present: Vec<&'static str>,
        allowed: &[&'static str],
    ) -> Result<(), Issue> {
        if let Some(key) = present.into_iter().find(|key| !allowed.contains(key)) {
            return Err(self.issue(
                table,
                key,
                format!(
                    "key \"{key}\" does not apply to kind = \"{kind}\" in [transport.{table}], \
                     expected one of: kind, {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn host(&self, table: &'static str, kind: &str, host: Option<String>) -> Result<String, Issue> {
        match host {
            Some(host) if !host.trim().is_empty() => Ok(host),
            _ => Err(self.issue(
                table,
                "host",
                format!("[transport.{table}] with kind = \"{kind}\" needs a host"),
            )),
        }
    }

    fn port(&self, table: &'static str, port: Option<u16>, default: u16) -> Result<u16, Issue> {
        match port {
            Some(0) => Err(self.issue(
                table,
                "port",
                format!("port = 0 in [transport.{table}] is invalid, expected 1 to 65535"),
            )),
            Some(port) => Ok(port),
            None => Ok(default),
        }
    }

    fn connections(&self, table: &'static str, n: Option<u32>) -> Result<u32, Issue> {
        match n {
            None => Ok(DEFAULT_SMTP_CONNECTIONS),
            Some(n @ 1..=MAX_SMTP_CONNECTIONS) => Ok(n),
            Some(n) => Err(self.issue(
                table,
                "connections",
                format!(
                    "connections = {n} in [transport.{table}] is invalid, expected 1 to {MAX_SMTP_CONNECTIONS}"
                ),
            )),
        }
    }

    fn dir(&self, table: &'static str, path: Option<String>) -> Result<DirConfig, Issue> {
        let Some(path) = path else {
            return Err(self.issue(
                table,
                "path",
                format!("[transport.{table}] with kind = \"dir\" needs a path"),
            ));
        };
        let path = self.path(table, "path", &path)?;
        Ok(DirConfig { path })
    }

    fn path(&self, table: &'static str, key: &'static str, text: &str) -> Result<PathBuf, Issue> {
        self.cx
            .path(text, key_at(self.index, table, key))
            .map_err(|issue| {
                self.issue(
                    table,
                    key,
                    format!("{key} in [transport.{table}]: {}", issue.message),
                )
            })
    }

    fn optional_path(
        &self,
        table: &'static str,
        key: &'static str,
        text: Option<String>,
    ) -> Result<Option<PathBuf>, Issue> {
        text.map(|text| self.path(table, key, &text)).transpose()
    }

    /// At most one credential; `password_prompt = false` counts as none.
    fn credential(
        &self,
        table: &'static str,
        raw: RawCredential<'_>,
    ) -> Result<Option<Credential>, Issue> {
        let given: Vec<&'static str> = [
            raw.password_command.is_some(),
            raw.password_file.is_some(),
            raw.password_env.is_some(),
            raw.password_prompt == Some(true),
            raw.password_keyring.is_some(),
        ]
        .into_iter()
        .zip(CREDENTIAL_KEYS)
        .filter_map(|(given, key)| given.then_some(key))
        .collect();
        if let [first, second, ..] = given[..] {
            return Err(self.issue(
                table,
                second,
                format!(
                    "[transport.{table}] has both {first} and {second}: keep one of {}",
                    CREDENTIAL_KEYS.join(", ")
                ),
            ));
        }
        let credential = if let Some(command) = raw.password_command {
            Some(Credential::Command(command.clone()))
        } else if let Some(file) = raw.password_file {
            Some(Credential::File(self.path(table, "password_file", file)?))
        } else if let Some(var) = raw.password_env {
            Some(Credential::Env(var.clone()))
        } else if raw.password_prompt == Some(true) {
            Some(Credential::Prompt)
        } else {
            raw.password_keyring
                .map(|service| Credential::Keyring(service.clone()))
        };
        Ok(credential)
    }

    fn outbound(&self, raw: RawOutbound) -> Result<OutboundConfig, Issue> {
        const TABLE: &str = "outbound";
        let kind = raw.kind;
        self.check_keys(
            TABLE,
            kind.as_str(),
            raw.present_keys(),
            &outbound_keys(kind),
        )?;
        match kind {
            OutboundKind::Dir => Ok(OutboundConfig::Dir(self.dir(TABLE, raw.path)?)),
            OutboundKind::Smtp => {
                let credential = self.credential(TABLE, raw.raw_credential())?;
                let security = raw.security.unwrap_or(Security::Starttls);
                let default_port = match security {
                    Security::Starttls => 587,
                    Security::Tls => 465,
                    Security::None => 25,
                };
                let allow_plaintext_auth = self.plaintext_auth(
                    TABLE,
                    security,
                    raw.username.is_some() || credential.is_some(),
                    raw.allow_plaintext_auth,
                )?;
                Ok(OutboundConfig::Smtp(SmtpConfig {
                    host: self.host(TABLE, kind.as_str(), raw.host)?,
                    port: self.port(TABLE, raw.port, default_port)?,
                    security,
                    username: raw.username,
                    credential,
                    auth: raw.auth,
                    ca_file: self.optional_path(TABLE, "ca_file", raw.ca_file)?,
                    insecure_skip_verify: raw.insecure_skip_verify.unwrap_or(false),
                    allow_plaintext_auth,
                    max_messages_per_connection: raw.max_messages_per_connection,
                    pipelining: raw.pipelining.unwrap_or(true),
                    connections: self.connections(TABLE, raw.connections)?,
                }))
            }
        }
    }

    fn inbound(&self, raw: RawInbound) -> Result<InboundConfig, Issue> {
        const TABLE: &str = "inbound";
        let kind = raw.kind;
        self.check_keys(
            TABLE,
            kind.as_str(),
            raw.present_keys(),
            &inbound_keys(kind),
        )?;
        if kind == InboundKind::Dir {
            return Ok(InboundConfig::Dir(self.dir(TABLE, raw.path)?));
        }
        let credential = self.credential(TABLE, raw.raw_credential())?;
        let security = raw.security.unwrap_or(Security::Tls);
        let host = self.host(TABLE, kind.as_str(), raw.host)?;
        let ca_file = self.optional_path(TABLE, "ca_file", raw.ca_file)?;
        let insecure_skip_verify = raw.insecure_skip_verify.unwrap_or(false);
        let allow_plaintext_auth = self.plaintext_auth(
            TABLE,
            security,
            raw.username.is_some() || credential.is_some(),
            raw.allow_plaintext_auth,
        )?;
        if kind == InboundKind::Pop3 {
            let default_port = if security == Security::Tls { 995 } else { 110 };
            return Ok(InboundConfig::Pop3(Pop3Config {
                host,
                port: self.port(TABLE, raw.port, default_port)?,
                security,
                username: raw.username,
                credential,
                apop: raw.apop.unwrap_or(false),
                leave_on_server: raw.leave_on_server.unwrap_or(false),
                leave_days: raw.leave_days,
                ca_file,
                insecure_skip_verify,
                allow_plaintext_auth,
            }));
        }
        let default_port = if security == Security::Tls { 993 } else { 143 };
        let after_download = match raw.after_download {
            None => AfterDownload::Seen,
            Some(text) => AfterDownload::parse(&text).ok_or_else(|| {
                self.issue(
                    TABLE,
                    "after_download",
                    format!(
                        "after_download = \"{}\" in [transport.inbound] is invalid, expected one \
                         of: keep, seen, delete, move:<folder>",
                        text.escape_debug()
                    ),
                )
            })?,
        };
        let folder = raw.folder.unwrap_or_else(|| "INBOX".to_owned());
        if folder.is_empty() {
            return Err(self.issue(
                TABLE,
                "folder",
                "folder in [transport.inbound] is empty".to_owned(),
            ));
        }
        Ok(InboundConfig::Imap(ImapConfig {
            host,
            port: self.port(TABLE, raw.port, default_port)?,
            security,
            username: raw.username,
            credential,
            auth: raw.auth,
            folder,
            after_download,
            idle: raw.idle.unwrap_or(false),
            ca_file,
            insecure_skip_verify,
            allow_plaintext_auth,
        }))
    }

    /// `security = "none"` with a login sends the password in clear (SMTP `AUTH PLAIN`, IMAP
    /// `AUTHENTICATE PLAIN`/`LOGIN`, POP3 `USER`/`PASS`), as Postfix refuses to by default:
    /// refused unless the part says `allow_plaintext_auth = true` (a relay on 127.0.0.1).
    fn plaintext_auth(
        &self,
        table: &'static str,
        security: Security,
        logs_in: bool,
        allowed: Option<bool>,
    ) -> Result<bool, Issue> {
        let allowed = allowed.unwrap_or(false);
        if security == Security::None && logs_in && !allowed {
            return Err(self.issue(
                table,
                "security",
                format!(
                    "security = \"none\" in [transport.{table}] with a username or password \
                     would send the password in clear; use security = \"starttls\" or \"tls\", \
                     or, if nobody can listen on the way (a relay on 127.0.0.1), set \
                     allow_plaintext_auth = true"
                ),
            ));
        }
        Ok(allowed)
    }
}

/// TOML strings are UTF-8; a path that is not cannot be written.
fn path_text(path: &Path) -> Result<String, ProfileError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ProfileError::Serialize {
            message: format!("the path {} is not UTF-8", path.display()),
        })
}

fn optional_path_text(path: Option<&PathBuf>) -> Result<Option<String>, ProfileError> {
    path.map(|path| path_text(path)).transpose()
}

/// Spreads a credential back over the four keys.
fn unconvert_credential(
    credential: Option<&Credential>,
) -> Result<[Option<String>; 4], ProfileError> {
    Ok(match credential {
        Some(Credential::Command(command)) => [Some(command.clone()), None, None, None],
        Some(Credential::File(path)) => [None, Some(path_text(path)?), None, None],
        Some(Credential::Env(var)) => [None, None, Some(var.clone()), None],
        Some(Credential::Keyring(service)) => [None, None, None, Some(service.clone())],
        Some(Credential::Prompt) | None => [None, None, None, None],
    })
}

fn prompt(credential: Option<&Credential>) -> Option<bool> {
    matches!(credential, Some(Credential::Prompt)).then_some(true)
}

fn unconvert_transport(transport: &TransportConfig) -> Result<RawTransport, ProfileError> {
    let outbound = match &transport.outbound {
        None => None,
        Some(OutboundConfig::Dir(dir)) => Some(RawOutbound {
            path: Some(path_text(&dir.path)?),
            ..RawOutbound::empty(OutboundKind::Dir)
        }),
        Some(OutboundConfig::Smtp(smtp)) => {
            let [
                password_command,
                password_file,
                password_env,
                password_keyring,
            ] = unconvert_credential(smtp.credential.as_ref())?;
            Some(RawOutbound {
                host: Some(smtp.host.clone()),
                port: Some(smtp.port),
                security: Some(smtp.security),
                username: smtp.username.clone(),
                password_command,
                password_file,
                password_env,
                password_keyring,
                password_prompt: prompt(smtp.credential.as_ref()),
                auth: smtp.auth,
                ca_file: optional_path_text(smtp.ca_file.as_ref())?,
                insecure_skip_verify: Some(smtp.insecure_skip_verify),
                allow_plaintext_auth: smtp.allow_plaintext_auth.then_some(true),
                max_messages_per_connection: smtp.max_messages_per_connection,
                pipelining: Some(smtp.pipelining),
                connections: Some(smtp.connections),
                ..RawOutbound::empty(OutboundKind::Smtp)
            })
        }
    };
    let inbound = match &transport.inbound {
        None => None,
        Some(InboundConfig::Dir(dir)) => Some(RawInbound {
            path: Some(path_text(&dir.path)?),
            ..RawInbound::empty(InboundKind::Dir)
        }),
        Some(InboundConfig::Imap(imap)) => {
            let [
                password_command,
                password_file,
                password_env,
                password_keyring,
            ] = unconvert_credential(imap.credential.as_ref())?;
            Some(RawInbound {
                host: Some(imap.host.clone()),
                port: Some(imap.port),
                security: Some(imap.security),
                username: imap.username.clone(),
                password_command,
                password_file,
                password_env,
                password_keyring,
                password_prompt: prompt(imap.credential.as_ref()),
                auth: imap.auth,
                folder: Some(imap.folder.clone()),
                after_download: Some(imap.after_download.to_string()),
                idle: Some(imap.idle),
                ca_file: optional_path_text(imap.ca_file.as_ref())?,
                insecure_skip_verify: Some(imap.insecure_skip_verify),
                allow_plaintext_auth: imap.allow_plaintext_auth.then_some(true),
                ..RawInbound::empty(InboundKind::Imap)
            })
        }
        Some(InboundConfig::Pop3(pop3)) => {
            let [
                password_command,
                password_file,
                password_env,
                password_keyring,
            ] = unconvert_credential(pop3.credential.as_ref())?;
            Some(RawInbound {
                host: Some(pop3.host.clone()),
                port: Some(pop3.port),
                security: Some(pop3.security),
                username: pop3.username.clone(),
                password_command,
                password_file,
                password_env,
                password_keyring,
                password_prompt: prompt(pop3.credential.as_ref()),
                apop: Some(pop3.apop),
                leave_on_server: Some(pop3.leave_on_server),
                leave_days: pop3.leave_days,
                ca_file: optional_path_text(pop3.ca_file.as_ref())?,
                insecure_skip_verify: Some(pop3.insecure_skip_verify),
                allow_plaintext_auth: pop3.allow_plaintext_auth.then_some(true),
                ..RawInbound::empty(InboundKind::Pop3)
            })
        }
    };
    Ok(RawTransport {
        name: transport.name.clone(),
        address: transport.address.clone(),
        display_name: transport.display_name.clone(),
        outbound,
        inbound,
        connect_command: transport
            .connect_command
            .as_ref()
            .map(|connect| RawConnect {
                command: connect.command.clone(),
                interactive: Some(connect.interactive),
            }),
        flush_queues: (!transport.flush_queues).then_some(false),
    })
}

impl RawOutbound {
    fn empty(kind: OutboundKind) -> RawOutbound {
        RawOutbound {
            kind,
            host: None,
            port: None,
            security: None,
            username: None,
            password_command: None,
            password_file: None,
            password_env: None,
            password_prompt: None,
            password_keyring: None,
            auth: None,
            ca_file: None,
            insecure_skip_verify: None,
            allow_plaintext_auth: None,
            max_messages_per_connection: None,
            pipelining: None,
            connections: None,
            path: None,
        }
    }
}

impl RawInbound {
    fn empty(kind: InboundKind) -> RawInbound {
        RawInbound {
            kind,
            host: None,
            port: None,
            security: None,
            username: None,
            password_command: None,
            password_file: None,
            password_env: None,
            password_prompt: None,
            password_keyring: None,
            auth: None,
            folder: None,
            after_download: None,
            idle: None,
            apop: None,
            leave_on_server: None,
            leave_days: None,
            ca_file: None,
            insecure_skip_verify: None,
            allow_plaintext_auth: None,
            path: None,
        }
    }
}

/// humantime durations (`"30s"`, `"5m"`, `"1h"`, `"2d"`) as optional fields.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// The longest duration a profile may give (3650 days, about ten years): every duration
    /// is added to a point in time somewhere (a retry, an expiry, a deadline), and a limit far
    /// beyond any use keeps that arithmetic from overflowing.
    pub(crate) const MAX: Duration = Duration::from_secs(3650 * 86_400);

    /// The message for a string that is not a duration.
    pub(super) fn invalid(text: &str) -> String {
        format!(
            "invalid duration \"{}\": expected a number and a unit, like \"30s\", \"5m\", \
             \"1h\", \"2d\"",
            text.escape_debug()
        )
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"30s\", \"5m\", \"1h\", \"2d\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                let d = humantime::parse_duration(text).map_err(|_| E::custom(invalid(text)))?;
                if d > MAX {
                    return Err(E::custom(format!(
                        "duration \"{}\" is longer than the largest a profile takes, \"3650d\" \
                         (about ten years)",
                        text.escape_debug()
                    )));
                }
                Ok(d)
            }
        }

        deserializer.deserialize_str(DurationVisitor).map(Some)
    }

    // serde's `with` passes `&Option<Duration>`; the signature is not ours to choose.
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.collect_str(&humantime::format_duration(*duration)),
            None => serializer.serialize_none(),
        }
    }
}

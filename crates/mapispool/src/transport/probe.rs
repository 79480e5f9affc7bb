//! Checking a transport for real, step by step, changing nothing on the server: what
//! `mapispool validate` shows (as msmtp's `--serverinfo` does).
//!
//! Each side of a transport goes through resolve, connect, TLS (with the account's certificate
//! verification), login with the configured credential, and for the inbound side a read-only
//! look at the mailbox (IMAP `EXAMINE`, POP3 `STAT`). SMTP ends after AUTH with `QUIT`: no
//! `MAIL` is ever sent. The steps after the first failure are not tried.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::{Inbound, Outbound, TransportError, TransportErrorKind};
use crate::profile::{InboundConfig, OutboundConfig, Security, TransportConfig};

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// It worked, with something the user should know (certificate checks turned off).
    Warning,
    /// Not needed for this profile (no TLS configured, no login configured).
    Skipped,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Warning => "warning",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "FAILED",
        }
    }
}

/// One step of a check: its name (`resolve`, `connect`, `tls`, `login`, `examine`, `stat`,
/// `session`, `directory`), how it went, and the details in words.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// The check of one side of a transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideCheck {
    /// `outbound` or `inbound`.
    pub side: String,
    /// `smtp`, `imap`, `pop3` or `dir`.
    pub protocol: String,
    /// `host:port`, or the post office's path.
    pub server: String,
    pub steps: Vec<Step>,
}

impl SideCheck {
    /// No step failed.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.outcome != Outcome::Failed)
    }

    /// The first failed step in words (`outbound connect failed: ...`), `None` when none did.
    pub fn failure(&self) -> Option<String> {
        self.steps
            .iter()
            .find(|s| s.outcome == Outcome::Failed)
            .map(|s| format!("{} {} failed: {}", self.side, s.step, s.detail))
    }

    fn push(&mut self, step: &'static str, outcome: Outcome, detail: impl Into<String>) {
        self.steps.push(Step {
            step: step.to_string(),
            outcome,
            detail: detail.into(),
        });
    }
}

/// The check of one transport: each side it has, or none when it is offline (an offline
/// transport connects to nothing until it is brought online).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransportCheck {
    pub transport: String,
    pub offline: bool,
    pub sides: Vec<SideCheck>,
}

impl TransportCheck {
    /// No step of any side failed.
    pub fn ok(&self) -> bool {
        self.sides.iter().all(SideCheck::ok)
    }

    /// The first failed step in words, `None` when none did.
    pub fn failure(&self) -> Option<String> {
        self.sides.iter().find_map(SideCheck::failure)
    }
}

/// Checks both sides of `config` (see the module doc); `offline` checks nothing.
pub async fn check_transport(
    config: &TransportConfig,
    offline: bool,
    allow_prompt: bool,
    limit: Duration,
) -> TransportCheck {
    let mut sides = Vec::new();
    if !offline {
        if let Some(out) = &config.outbound {
            sides.push(check_outbound(out, &config.name, allow_prompt, limit).await);
        }
        if let Some(inb) = &config.inbound {
            sides
                .push(check_inbound(inb, &config.address, &config.name, allow_prompt, limit).await);
        }
    }
    TransportCheck {
        transport: config.name.clone(),
        offline,
        sides,
    }
}

/// Checks a transport's outbound side. `allow_prompt`: a `password_prompt` may ask (a
/// terminal); `limit` bounds each network step (the spooler's `timeout`).
pub async fn check_outbound(
    config: &OutboundConfig,
    transport: &str,
    allow_prompt: bool,
    limit: Duration,
) -> SideCheck {
    match config {
        OutboundConfig::Dir(d) => check_dir("outbound", &d.path).await,
        OutboundConfig::Smtp(s) => {
            let mut check = SideCheck {
                side: "outbound".into(),
                protocol: "smtp".into(),
                server: format!("{}:{}", s.host, s.port),
                steps: Vec::new(),
            };
            if !reach(&mut check, &s.host, s.port, limit).await {
                return check;
            }
            let mut outbound = match Outbound::from_config(config, transport, allow_prompt) {
                Ok(o) => o,
                Err(e) => {
                    check.push("session", Outcome::Failed, e.message);
                    return check;
                }
            };
            outbound.set_timeout(limit);
            // Greeting, EHLO, STARTTLS, EHLO, AUTH: the transport's own connect, so the check
            // is the path a flush takes. `close` sends QUIT.
            let result = outbound.connect().await;
            outbound.close().await;
            let login = s.username.as_deref();
            let tls = tls_detail(
                s.security,
                &s.host,
                s.ca_file.as_deref(),
                s.insecure_skip_verify,
            );
            if let Err(e) = result {
                attribute(&mut check, tls, login.is_some(), e);
                return check;
            }
            check.push(tls.0, tls.1, tls.2);
            match login {
                Some(user) => check.push("login", Outcome::Ok, format!("AUTH accepted for {user}")),
                None => check.push(
                    "login",
                    Outcome::Skipped,
                    "no username in the profile: the server takes mail without a login",
                ),
            }
            check
        }
    }
}

/// Checks a transport's inbound side, receiving for `address`; see [`check_outbound`].
pub async fn check_inbound(
    config: &InboundConfig,
    address: &str,
    transport: &str,
    allow_prompt: bool,
    limit: Duration,
) -> SideCheck {
    let (protocol, host, port, security, user, ca_file, skip) = match config {
        InboundConfig::Dir(d) => return check_dir("inbound", &d.path).await,
        InboundConfig::Imap(i) => (
            "imap",
            &i.host,
            i.port,
            i.security,
            i.username.as_deref().unwrap_or(address),
            i.ca_file.as_deref(),
            i.insecure_skip_verify,
        ),
        InboundConfig::Pop3(p) => (
            "pop3",
            &p.host,
            p.port,
            p.security,
            p.username.as_deref().unwrap_or(address),
            p.ca_file.as_deref(),
            p.insecure_skip_verify,
        ),
    };
    let mut check = SideCheck {
        side: "inbound".into(),
        protocol: protocol.into(),
        server: format!("{host}:{port}"),
        steps: Vec::new(),
    };
    if !reach(&mut check, host, port, limit).await {
        return check;
    }
    let mut inbound = match Inbound::from_config(config, address, transport, allow_prompt) {
        Ok(i) => i,
        Err(e) => {
            check.push("session", Outcome::Failed, e.message);
            return check;
        }
    };
    inbound.set_timeout(limit);
    let tls = tls_detail(security, host, ca_file, skip);
    if let Err(e) = inbound.connect().await {
        attribute(&mut check, tls, true, e);
        return check;
    }
    check.push(tls.0, tls.1, tls.2);
    check.push("login", Outcome::Ok, format!("logged in as {user}"));
    match &mut inbound {
        Inbound::Imap(imap) => {
            let folder = match config {
                InboundConfig::Imap(i) => i.folder.as_str(),
                _ => "",
            };
            match imap.examine().await {
                Ok(n) => check.push(
                    "examine",
                    Outcome::Ok,
                    format!("{folder}: {n} message{}", plural(n as u64)),
                ),
                Err(e) => check.push("examine", Outcome::Failed, e.message),
            }
        }
        Inbound::Pop3(pop3) => match pop3.stat().await {
            Ok((n, size)) => check.push(
                "stat",
                Outcome::Ok,
                format!("{n} message{} ({size} octets)", plural(n)),
            ),
            Err(e) => check.push("stat", Outcome::Failed, e.message),
        },
        Inbound::Dir(_) => {}
    }
    inbound.close().await;
    check
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Resolve and connect, each its own step; the connection is closed again at once (the
/// transport opens its own). False when a step failed.
async fn reach(check: &mut SideCheck, host: &str, port: u16, limit: Duration) -> bool {
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                check.push(
                    "resolve",
                    Outcome::Failed,
                    format!("cannot resolve {host}: {e}; check the host name in the profile"),
                );
                return false;
            }
            Err(_) => {
                check.push(
                    "resolve",
                    Outcome::Failed,
                    format!(
                        "resolving {host} took longer than {}",
                        humantime::format_duration(limit)
                    ),
                );
                return false;
            }
        };
    if addrs.is_empty() {
        check.push("resolve", Outcome::Failed, format!("{host} has no address"));
        return false;
    }
    let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    check.push(
        "resolve",
        Outcome::Ok,
        format!("{host} is {}", list.join(", ")),
    );
    let mut failures = Vec::new();
    for addr in &addrs {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                check.push("connect", Outcome::Ok, format!("connected to {addr}"));
                return true;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => failures.push(
                format!("{addr}: connection refused — is the server running, on this port?"),
            ),
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Err(_) => failures.push(format!(
                "{addr}: no answer within {}",
                humantime::format_duration(limit)
            )),
        }
    }
    check.push("connect", Outcome::Failed, failures.join("; "));
    false
}

/// The `tls` step as it reads when the session came up: name, outcome, detail.
fn tls_detail(
    security: Security,
    host: &str,
    ca_file: Option<&Path>,
    insecure_skip_verify: bool,
) -> (&'static str, Outcome, String) {
    let how = match security {
        Security::None => {
            return (
                "tls",
                Outcome::Skipped,
                "security = \"none\": the connection is not encrypted".to_string(),
            );
        }
        Security::Starttls => "STARTTLS",
        Security::Tls => "TLS from the start",
    };
    if insecure_skip_verify {
        return (
            "tls",
            Outcome::Warning,
            format!("{how}; the certificate was NOT verified (insecure_skip_verify = true)"),
        );
    }
    let against = match ca_file {
        Some(f) => format!("the CA in {}", f.display()),
        None => "the system's trusted CAs".to_string(),
    };
    (
        "tls",
        Outcome::Ok,
        format!("{how}; certificate verified for {host} against {against}"),
    )
}

/// Puts the transport's connect failure on the step it belongs to: TLS errors on `tls`, a
/// refused or missing credential on `login` (after a TLS step that then worked), anything else
/// (a refusing greeting, a protocol error, a stall) on `session`.
fn attribute(
    check: &mut SideCheck,
    tls: (&'static str, Outcome, String),
    logs_in: bool,
    e: TransportError,
) {
    match e.kind {
        TransportErrorKind::Tls => check.push("tls", Outcome::Failed, e.message),
        TransportErrorKind::Auth | TransportErrorKind::NeedsPerson if logs_in => {
            check.push(tls.0, tls.1, tls.2);
            check.push("login", Outcome::Failed, e.message);
        }
        _ => check.push("session", Outcome::Failed, e.message),
    }
}

/// A post office directory: it exists and is a directory (the transport creates it at its
/// first flush, so a missing one is a warning).
async fn check_dir(side: &'static str, path: &Path) -> SideCheck {
    let mut check = SideCheck {
        side: side.into(),
        protocol: "dir".into(),
        server: path.display().to_string(),
        steps: Vec::new(),
    };
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_dir() => check.push("directory", Outcome::Ok, "exists"),
        Ok(_) => check.push(
            "directory",
            Outcome::Failed,
            format!("{} is not a directory", path.display()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => check.push(
            "directory",
            Outcome::Warning,
            "does not exist yet; the first flush creates it",
        ),
        Err(e) => check.push(
            "directory",
            Outcome::Failed,
            format!("cannot read {}: {e}", path.display()),
        ),
    }
    check
}

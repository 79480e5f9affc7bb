//! `mapispool init`: writes a commented profile, from answers asked on a terminal or given as
//! flags, so a first profile needs neither the README nor a copy-and-edit.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use mapispool::Profile;
use mapispool::profile::StoreConfig;

use crate::cli::InitArgs;
use crate::exit::{BadInput, Exit};

/// The answers a server profile is made of.
struct Answers {
    name: String,
    address: String,
    smtp_host: String,
    smtp_port: u16,
    smtp_security: String,
    /// `imap` or `pop3`, and its host; `None`: the transport only sends.
    inbound: Option<(&'static str, String)>,
    username: Option<String>,
    password_command: Option<String>,
}

pub fn run(profile: Option<&Path>, args: &InitArgs, quiet: bool) -> Result<Exit> {
    let path = Profile::locate(profile)?;
    if !args.force && std::fs::symlink_metadata(&path).is_ok() {
        return Err(BadInput(format!(
            "{} exists already: `mapispool init --force` replaces it, or choose another path \
             with --profile",
            path.display()
        ))
        .into());
    }
    let text = if args.dir {
        dir_profile(args)
    } else {
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        server_profile(&answers(args, interactive)?)
    };
    // Never write a profile that would not load: the same loader as every other command.
    Profile::from_str_at(&text, &path)
        .context("the answers do not make a valid profile; nothing was written")?;
    write_private(&path, &text, args.force)?;
    if !quiet {
        outln!(
            "Wrote {}. Check it with `mapispool validate`.",
            path.display()
        );
    }
    Ok(Exit::Done)
}

/// TOML basic strings accept every escape serde_json writes (`\"`, `\\`, `\n`, `\uXXXX`, ...),
/// so a JSON string is a TOML string; the CLI has no TOML writer of its own.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

fn dir_profile(args: &InitArgs) -> String {
    let post_office = StoreConfig::default_path()
        .and_then(|store| store.parent().map(|dir| dir.join("postoffice")))
        .map_or_else(
            || "~/.local/share/mapispool/postoffice".to_string(),
            |p| p.display().to_string(),
        );
    let name = args.name.clone().unwrap_or_else(|| "local".to_string());
    let address = args.address.clone().unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "me".to_string());
        format!("{user}@localhost")
    });
    format!(
        "{HEADER}\
[[transport]]
# The transport's name: what --transport and [[group]] transports use.
name = {name}
# The sender address of the mail this transport sends, and the mailbox it receives for.
address = {address}

# Outgoing mail: a message is delivered as a file into the post office, to every local
# recipient's mailbox in it.
[transport.outbound]
kind = \"dir\"
path = {post_office}

# Incoming mail: this address's mailbox in the same post office.
[transport.inbound]
kind = \"dir\"
path = {post_office}
{FOOTER}",
        name = quoted(&name),
        address = quoted(&address),
        post_office = quoted(&post_office),
    )
}

fn server_profile(a: &Answers) -> String {
    let login = |prefix: &str| {
        let mut s = String::new();
        if let Some(user) = &a.username {
            s += &format!("{prefix}# The login.\nusername = {}\n", quoted(user));
        }
        if let Some(command) = &a.password_command {
            s += &format!(
                "# The command that prints the password (its first line): the password itself \
                 is never\n# stored here. Instead: password_file, password_env, \
                 password_prompt = true, password_keyring.\npassword_command = {}\n",
                quoted(command)
            );
        }
        s
    };
    let mut text = format!(
        "{HEADER}\
[[transport]]
# The transport's name: what --transport and [[group]] transports use.
name = {name}
# The sender address of the mail this transport sends.
address = {address}

# Outgoing mail: SMTP submission.
[transport.outbound]
kind = \"smtp\"
host = {smtp_host}
port = {smtp_port}
# \"starttls\" (port 587), \"tls\" (implicit TLS, port 465) or \"none\" (no encryption: a login
# is then refused unless allow_plaintext_auth = true, for a relay on 127.0.0.1).
security = {smtp_security}
{login}",
        name = quoted(&a.name),
        address = quoted(&a.address),
        smtp_host = quoted(&a.smtp_host),
        smtp_port = a.smtp_port,
        smtp_security = quoted(&a.smtp_security),
        login = login(""),
    );
    if let Some((kind, host)) = &a.inbound {
        let (port, extra) = if *kind == "imap" {
            (
                993,
                "# The mailbox to fetch from.\nfolder = \"INBOX\"\n# What happens on the \
                 server after a download: \"seen\", \"keep\", \"delete\" or \"move:<folder>\".\n\
                 after_download = \"seen\"\n",
            )
        } else {
            (
                995,
                "# Leave the messages on the server after a download (leave_days: for how \
                 long).\nleave_on_server = false\n",
            )
        };
        text += &format!(
            "
# Incoming mail: {upper}.
[transport.inbound]
kind = \"{kind}\"
host = {host}
port = {port}
# \"tls\" (implicit TLS), \"starttls\" or \"none\".
security = \"tls\"
{login}{extra}",
            upper = kind.to_uppercase(),
            host = quoted(host),
            login = login(""),
        );
    }
    text + FOOTER
}

const HEADER: &str = "\
# mapispool profile, written by `mapispool init`. Every key: `mapispool man profile`.
# Check it with `mapispool validate`.

# Where the message store lives (default: $XDG_DATA_HOME/mapispool/store.db).
# [store]
# path = \"~/.local/share/mapispool/store.db\"

# When the daemon (`mapispool spooler`) sends and receives on its own, and how it retries.
# [spooler]
# upload_interval = \"5m\"
# download_interval = \"10m\"
# retry_initial = \"5m\"     # the first wait after a failed attempt, doubled each time
# retry_max = \"1h\"         # up to this
# expire_after = \"5d\"      # then the sender gets a non-delivery report

";

const FOOTER: &str = "
# The daemon's status page and /metrics (off unless this table is given).
# [web]
# listen = \"127.0.0.1:8025\"
";

/// Takes each answer from its flag, else asks on the terminal, else fails naming the flag.
fn answers(args: &InitArgs, interactive: bool) -> Result<Answers> {
    let mut ask = Asker { interactive };
    let name = ask.or(&args.name, "--name", "Transport name", Some("mail"))?;
    let address = ask.or(&args.address, "--address", "E-mail address", None)?;
    let domain = address.rsplit_once('@').map(|(_, d)| d.to_string());
    let smtp_host = ask.or(
        &args.smtp_host,
        "--smtp-host",
        "SMTP server",
        // A guess is offered to a person, never taken silently for a script.
        domain
            .as_ref()
            .filter(|_| interactive)
            .map(|d| format!("smtp.{d}"))
            .as_deref(),
    )?;
    let smtp_security = ask.or(
        &args.smtp_security,
        "--smtp-security",
        "SMTP security (starttls, tls, none)",
        Some("starttls"),
    )?;
    let default_port = match smtp_security.as_str() {
        "starttls" => 587,
        "tls" => 465,
        "none" => 25,
        other => {
            return Err(BadInput(format!(
                "SMTP security \"{other}\" is not one of: starttls, tls, none"
            ))
            .into());
        }
    };
    let smtp_port = match args.smtp_port {
        Some(port) => port,
        None if interactive => {
            let text = ask.ask("SMTP port", Some(&default_port.to_string()))?;
            text.parse()
                .map_err(|_| BadInput(format!("SMTP port \"{text}\" is not a port number")))?
        }
        None => default_port,
    };
    let inbound = match (&args.imap_host, &args.pop3_host) {
        (Some(host), _) => Some(("imap", host.clone())),
        (None, Some(host)) => Some(("pop3", host.clone())),
        (None, None) if interactive => {
            let kind = ask.ask("Receive with (imap, pop3, none)", Some("imap"))?;
            match kind.as_str() {
                "none" => None,
                "imap" | "pop3" => {
                    let kind = if kind == "imap" { "imap" } else { "pop3" };
                    let default = domain.as_ref().map(|d| format!("{kind}.{d}"));
                    Some((
                        kind,
                        ask.ask(
                            &format!("{} server", kind.to_uppercase()),
                            default.as_deref(),
                        )?,
                    ))
                }
                other => {
                    return Err(
                        BadInput(format!("\"{other}\" is not one of: imap, pop3, none")).into(),
                    );
                }
            }
        }
        (None, None) => None,
    };
    let username = match &args.username {
        Some(user) => Some(user.clone()),
        None if interactive => Some(ask.ask("Login", Some(&address))?),
        None => args.password_command.as_ref().map(|_| address.clone()),
    };
    let password_command = match &args.password_command {
        Some(command) => Some(command.clone()),
        None if interactive => {
            let command = ask.ask(
                "Command that prints the password, e.g. \"pass show mail\" (empty: none)",
                Some(""),
            )?;
            (!command.is_empty()).then_some(command)
        }
        None => None,
    };
    Ok(Answers {
        name,
        address,
        smtp_host,
        smtp_port,
        smtp_security,
        inbound,
        username: username.filter(|u| !u.is_empty()),
        password_command,
    })
}

struct Asker {
    interactive: bool,
}

impl Asker {
    fn or(
        &mut self,
        flag_value: &Option<String>,
        flag: &str,
        question: &str,
        default: Option<&str>,
    ) -> Result<String> {
        match flag_value {
            Some(value) => Ok(value.clone()),
            None if self.interactive => self.ask(question, default),
            None => match default {
                Some(default) => Ok(default.to_string()),
                None => Err(BadInput(format!(
                    "{flag} is needed: not on a terminal, `mapispool init` asks nothing (or use \
                     --dir for the local post office, no server)"
                ))
                .into()),
            },
        }
    }

    /// Asks on stderr, reads a line from stdin; an empty answer takes `default`.
    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String> {
        loop {
            let mut err = std::io::stderr().lock();
            match default {
                Some(d) if !d.is_empty() => write!(err, "{question} [{d}]: ")?,
                _ => write!(err, "{question}: ")?,
            }
            err.flush()?;
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line)? == 0 {
                return Err(
                    BadInput("no answer (end of input): nothing was written".into()).into(),
                );
            }
            let line = line.trim();
            if !line.is_empty() {
                return Ok(line.to_string());
            }
            if let Some(d) = default {
                return Ok(d.to_string());
            }
        }
    }
}

/// Writes `text` to `path` mode 0600 (it may name a password command and a login), making the
/// directory 0700 if it is new.
fn write_private(path: &Path, text: &str, force: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        // Between the check in `run` and here, someone may have made the file: still refuse.
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::new(BadInput(format!(
                "{} exists already: `mapispool init --force` replaces it",
                path.display()
            )))
        } else {
            anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
        }
    })?;
    // `mode` applies only to a new file; a replaced one keeps its old mode otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} mode 0600", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

//! The sendmail-compatible entry: what runs when the binary is invoked as `sendmail` (a
//! symlink: `ln -s $(which mapispool) /usr/local/sbin/sendmail`) or as `mapispool sendmail`, so
//! cron, `git send-email`, `mail` and scripts can queue mail through the spooler.
//!
//! The message comes on stdin and is queued durably with `Session::submit` (through the daemon
//! when one runs). Like sendmail, it prints nothing on success and exits with sysexits.h codes:
//! 0, `EX_USAGE` (64), `EX_DATAERR` (65), `EX_TEMPFAIL` (75), `EX_CONFIG` (78).

use std::path::PathBuf;

use mapi::{MapiCode, MapiError};
use mapispool::message::check_address;
use mapispool::{Profile, Submission, SubmitSession};
use tokio::io::AsyncReadExt;

use crate::exit::Exit;

/// What the command line asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Envelope recipients given as arguments.
    pub recipients: Vec<String>,
    /// `-t`: also take recipients from To:, Cc: and Bcc:.
    pub from_headers: bool,
    /// `-i` / `-oi`: a line with a single dot does not end the message.
    pub ignore_dots: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender.
    pub from: Option<String>,
    /// `-F NAME`: the sender's full name, for a From: header this adds.
    pub full_name: Option<String>,
    /// `-C FILE`: sendmail's "alternate configuration file": here, the profile.
    pub profile: Option<PathBuf>,
    /// `-v`: say what was queued (on stderr).
    pub verbose: bool,
    /// `-N never|success,failure,delay`: the delivery status notifications asked for (RFC 3461
    /// `NOTIFY=`), checked and upper-cased.
    pub dsn_notify: Option<String>,
    /// `-R full|hdrs`: how much of the message a notification returns (`RET=`).
    pub dsn_ret: Option<String>,
}

/// A command line sendmail would refuse (`EX_USAGE`).
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Parses sendmail's flags by hand. Its grammar is getopt's, not clap's: single-letter flags
/// that cluster (`-ti`), values attached or apart (`-fme@x` and `-f me@x`), `-o` and `-b`
/// whose "value" is really a sub-option (`-oi`, `-oem`, `-bm`), and a long tail of flags
/// callers pass by habit that we must accept and ignore. Options may come after recipients too
/// (as with glibc's getopt, which Postfix's sendmail uses); `--` ends them.
pub fn parse(args: &[String]) -> Result<Options, UsageError> {
    let mut opts = Options::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            opts.recipients
                .extend(rest.by_ref().flat_map(|a| split_recipients(a)));
            break;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            opts.recipients.extend(split_recipients(arg));
            continue;
        };
        for (at, flag) in flags.char_indices() {
            match flag {
                't' => opts.from_headers = true,
                'i' => opts.ignore_dots = true,
                'v' => opts.verbose = true,
                // -m (me too), -n (no aliasing), -U (initial submission), -G (gateway):
                // meaningless here, accepted.
                'm' | 'n' | 'U' | 'G' => {}
                _ => {
                    // Every other flag takes a value: the rest of this argument, else the next.
                    let attached = &flags[at + flag.len_utf8()..];
                    let value = if !attached.is_empty() {
                        attached.to_string()
                    } else if takes_separate_value(flag) {
                        rest.next().cloned().ok_or_else(|| {
                            UsageError(format!("option requires an argument -- '{flag}'"))
                        })?
                    } else {
                        String::new()
                    };
                    apply(&mut opts, flag, value)?;
                    break;
                }
            }
        }
    }
    Ok(opts)
}

/// Flags whose value may be the next argument. `-o`, `-b`, `-e`, `-d` and `-q` only take an
/// attached value (`-oi`, `-bm`, `-em`, `-d0.1`, `-q30m`), as in sendmail.
fn takes_separate_value(flag: char) -> bool {
    matches!(
        flag,
        'f' | 'r' | 'F' | 'C' | 'O' | 'B' | 'N' | 'R' | 'V' | 'X' | 'L' | 'h' | 'A' | 'p'
    )
}

fn apply(opts: &mut Options, flag: char, value: String) -> Result<(), UsageError> {
    match flag {
        'f' | 'r' => opts.from = Some(value),
        'F' => opts.full_name = Some(value),
        'C' => opts.profile = Some(PathBuf::from(value)),
        // -oi is -i; every other -oX (-oem, -odi, -odb, -oQ..., -oA...) is a queue or delivery
        // option of sendmail's own, which our spooler decides for itself.
        'o' if value == "i" => opts.ignore_dots = true,
        'O' if value.eq_ignore_ascii_case("IgnoreDots") || value == "IgnoreDots=true" => {
            opts.ignore_dots = true
        }
        'o' | 'O' => {}
        // The mode: only "deliver mail" (-bm, the default).
        'b' => match value.as_str() {
            "m" | "" => {}
            "p" => {
                return Err(UsageError(
                    "-bp (list the queue) is not supported here; use `mapispool queue`".to_string(),
                ));
            }
            other => {
                return Err(UsageError(format!(
                    "-b{other} is not supported; only -bm (read a message and queue it)"
                )));
            }
        },
        'q' => {
            return Err(UsageError(
                "-q (run the queue) is not supported here; use `mapispool flush`".to_string(),
            ));
        }
        // DSN (RFC 3461), as Postfix's sendmail takes them: -N's list and -R's word are
        // checked as `submit --notify/--ret` checks them.
        'N' => {
            let (notify, _) = mapispool::session::dsn_request(Some(&value), None)
                .map_err(|e| UsageError(format!("-N: {}", e.cause)))?;
            opts.dsn_notify = notify;
        }
        'R' => {
            let (_, ret) = mapispool::session::dsn_request(None, Some(&value))
                .map_err(|e| UsageError(format!("-R: {}", e.cause)))?;
            opts.dsn_ret = ret;
        }
        // Body type, DSN envelope ID, log file, log tag, hop count, -A, protocol, error mode,
        // debug: accepted and ignored.
        'B' | 'V' | 'X' | 'L' | 'h' | 'A' | 'p' | 'e' | 'd' => {}
        other => return Err(UsageError(format!("illegal option -- '{other}'"))),
    }
    Ok(())
}

/// Recipients as sendmail takes them: comma-separated lists, `Name <addr>` forms.
fn split_recipients(arg: &str) -> Vec<String> {
    arg.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| match (a.rfind('<'), a.rfind('>')) {
            (Some(open), Some(close)) if open < close => a[open + 1..close].trim().to_string(),
            _ => a.to_string(),
        })
        .collect()
}

/// Runs sendmail with `args` (without the program name). `name` is how errors are prefixed
/// ("sendmail" or "mapispool sendmail"). Errors are printed here; the exit code says which
/// kind it was.
pub async fn run(profile: Option<PathBuf>, args: &[String]) -> Exit {
    run_named("mapispool sendmail", profile, args).await
}

/// [`run`], printing errors as `name: ...`.
pub async fn run_named(name: &str, profile: Option<PathBuf>, args: &[String]) -> Exit {
    match queue(profile, args).await {
        Ok(()) => Exit::Done,
        Err((exit, message)) => {
            eprintln!("{name}: {message}");
            exit
        }
    }
}

async fn queue(profile: Option<PathBuf>, args: &[String]) -> Result<(), (Exit, String)> {
    let usage = |m: String| (Exit::SendmailUsage, m);
    let opts = parse(args).map_err(|e| usage(e.0))?;
    if opts.recipients.is_empty() && !opts.from_headers {
        return Err(usage(
            "no recipients: give them as arguments, or use -t to take them from the headers"
                .to_string(),
        ));
    }
    // Addresses typed on the command line are a usage error when bad; the message's own are a
    // data error (below).
    for address in opts.recipients.iter().chain(opts.from.iter()) {
        if !address.is_empty() {
            check_address(address).map_err(|e| usage(format!("{address:?}: {e}")))?;
        }
    }

    let path = Profile::locate(opts.profile.as_deref().or(profile.as_deref()))
        .map_err(|e| (Exit::SendmailConfig, format!("{e:#}")))?;
    let loaded = Profile::load(&path).map_err(|e| (Exit::SendmailConfig, format!("{e:#}")))?;
    let session = SubmitSession::logon(loaded).await.map_err(|e| {
        (
            Exit::SendmailTempFail,
            format!("cannot reach the queue of {}: {e}", path.display()),
        )
    })?;

    // The whole message is read first: the From: header may need adding before the rest, and
    // without -i the end may be a "." line. Mail passed to sendmail is small enough for this.
    let mut message = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut message)
        .await
        .map_err(|e| (Exit::SendmailTempFail, format!("cannot read stdin: {e}")))?;
    if !opts.ignore_dots {
        cut_at_dot_line(&mut message);
    }
    if !has_header(&message, "from") {
        let sender = session
            .profile()
            .transports
            .iter()
            .find(|t| t.outbound.is_some())
            .or(session.profile().transports.first());
        let (address, profile_name) = match (&opts.from, sender) {
            (Some(f), _) if !f.is_empty() => (f.clone(), None),
            (_, Some(t)) => (t.address.clone(), t.display_name.clone()),
            _ => {
                return Err((
                    Exit::SendmailDataErr,
                    "the message has no From: header and there is no sender to put in one (use -f)"
                        .to_string(),
                ));
            }
        };
        let header = from_header(
            opts.full_name.as_deref().or(profile_name.as_deref()),
            &address,
        );
        let eol: &[u8] = if message.windows(2).any(|w| w == b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        let mut with_from = header.into_bytes();
        with_from.extend_from_slice(eol);
        // A message with no header block at all (just a body) gets the blank line that ends
        // the headers, as sendmail would.
        if !starts_with_header(&message) {
            with_from.extend_from_slice(eol);
        }
        with_from.extend_from_slice(&message);
        message = with_from;
    }

    let submission = Submission {
        from: opts.from.clone().filter(|f| !f.is_empty()),
        recipients: opts.recipients.clone(),
        recipients_from_headers: opts.from_headers,
        dsn_notify: opts.dsn_notify.clone(),
        dsn_ret: opts.dsn_ret.clone(),
        ..Submission::default()
    };
    let record = session
        .submit(submission, &message[..])
        .await
        .map_err(|e| (exit_for(&e), e.to_string()))?;
    session.logoff().await;
    if opts.verbose {
        eprintln!(
            "queued {} (\"{}\") for {}",
            record.entry_id(),
            record.subject,
            record.transport.as_deref().unwrap_or("the first transport")
        );
    }
    Ok(())
}

/// sysexits for a MAPI error from `submit`: the caller's mistake (64), the message's (65), or
/// "try again later" (75) for everything about the store or the daemon.
fn exit_for(e: &MapiError) -> Exit {
    match e.code {
        MapiCode::NoRecipients | MapiCode::NotFound => Exit::SendmailUsage,
        MapiCode::InvalidParameter | MapiCode::CorruptData | MapiCode::BadValue => {
            Exit::SendmailDataErr
        }
        _ => Exit::SendmailTempFail,
    }
}

/// Without -i, a line holding a single "." ends the message (and is not part of it).
fn cut_at_dot_line(message: &mut Vec<u8>) {
    let mut start = 0;
    while start < message.len() {
        let end = message[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(message.len(), |p| start + p + 1);
        let line = &message[start..end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"." {
            message.truncate(start);
            return;
        }
        start = end;
    }
}

/// The header block: up to the first empty line.
fn header_lines(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    message
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

fn header_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|b| b.is_ascii_graphic() && *b != b':')).then_some(name)
}

fn has_header(message: &[u8], name: &str) -> bool {
    header_lines(message)
        .filter_map(header_name)
        .any(|n| n.eq_ignore_ascii_case(name.as_bytes()))
}

fn starts_with_header(message: &[u8]) -> bool {
    header_lines(message).next().and_then(header_name).is_some()
}

/// `From: "Name" <addr>`, or `From: addr` without a name.
fn from_header(name: Option<&str>, address: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("From: \"{quoted}\" <{address}>")
        }
        None => format!("From: {address}"),
    }
}

/// Whether the program was started under the name `sendmail` (a symlink or a copy).
pub fn invoked_as_sendmail(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == "sendmail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, UsageError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_as_sendmail_reads_them() {
        let o = p(&["-t", "-oi", "-fme@x.test", "-F", "Me Myself", "a@x.test"]).unwrap();
        assert!(o.from_headers && o.ignore_dots);
        assert_eq!(o.from.as_deref(), Some("me@x.test"));
        assert_eq!(o.full_name.as_deref(), Some("Me Myself"));
        assert_eq!(o.recipients, ["a@x.test"]);

        let o = p(&[
            "-ti",
            "-f",
            "me@x.test",
            "-oem",
            "-odb",
            "-bm",
            "--",
            "-odd@x.test",
        ])
        .unwrap();
        assert!(o.from_headers && o.ignore_dots);
        assert_eq!(o.from.as_deref(), Some("me@x.test"));
        assert_eq!(o.recipients, ["-odd@x.test"]);

        let o = p(&["Bob <b@x.test>, c@x.test", "-i"]).unwrap();
        assert_eq!(o.recipients, ["b@x.test", "c@x.test"]);
        assert!(o.ignore_dots);
    }

    #[test]
    fn dsn_flags_are_read_and_checked() {
        let o = p(&["-N", "success,delay", "-Rhdrs", "a@x.test"]).unwrap();
        assert_eq!(o.dsn_notify.as_deref(), Some("SUCCESS,DELAY"));
        assert_eq!(o.dsn_ret.as_deref(), Some("HDRS"));
        let o = p(&["-Nnever", "a@x.test"]).unwrap();
        assert_eq!(o.dsn_notify.as_deref(), Some("NEVER"));
        assert!(p(&["-N", "sometimes", "a@x.test"]).is_err());
        assert!(p(&["-N", "never,success", "a@x.test"]).is_err());
        assert!(p(&["-R", "everything", "a@x.test"]).is_err());
    }

    #[test]
    fn refusals() {
        assert!(p(&["-f"]).is_err());
        assert!(p(&["-bp"]).is_err());
        assert!(p(&["-q"]).is_err());
        assert!(p(&["-Z"]).is_err());
    }

    #[test]
    fn dot_line_ends_the_message() {
        let mut m = b"Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n".to_vec();
        cut_at_dot_line(&mut m);
        assert_eq!(m, b"Subject: x\r\n\r\nbody\r\n");
        let mut m = b"Subject: x\n\n..not the end\n".to_vec();
        cut_at_dot_line(&mut m);
        assert_eq!(m, b"Subject: x\n\n..not the end\n");
    }

    #[test]
    fn headers() {
        assert!(has_header(b"Subject: a\nfrom: b\n\nFrom: c\n", "from"));
        assert!(!has_header(b"Subject: a\n\nFrom: c\n", "from"));
        assert!(!starts_with_header(b"just a body\n"));
        assert_eq!(
            from_header(Some("A \"B\""), "a@x.test"),
            "From: \"A \\\"B\\\"\" <a@x.test>"
        );
        assert!(invoked_as_sendmail("/usr/sbin/sendmail".as_ref()));
        assert!(!invoked_as_sendmail("mapispool".as_ref()));
    }
}

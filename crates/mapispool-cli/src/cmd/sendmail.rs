//! The sendmail-compatible entry: what runs when the binary is invoked as `sendmail` (a
//! symlink: `ln -s $(which mapispool) /usr/local/sbin/sendmail`) or as `mapispool sendmail`, so
//! cron, `git send-email`, `mail` and scripts can queue mail through the spooler.
//!
//! The message comes on stdin and is queued durably with `Session::submit` (through the daemon
//! when one runs). Like sendmail, it prints nothing on success and exits with sysexits.h codes:
//! 0, `EX_USAGE` (64), `EX_DATAERR` (65), `EX_TEMPFAIL` (75), `EX_CONFIG` (78).

use std::path::PathBuf;

use std::pin::Pin;
use std::task::{Context, Poll};

use mapi::{MapiCode, MapiError};
use mapispool::message::check_address;
use mapispool::outgoing::{check_field, envelope_sender};
use mapispool::{Profile, Submission, SubmitSession};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

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
    // What the command line says that reaches a header or an SMTP command is checked here, so
    // a bad value is a usage error before anything is read; the message's own addresses are a
    // data error (from `submit`).
    if let Some(name) = &opts.full_name {
        check_field("-F", name).map_err(|e| usage(e.cause))?;
    }
    for address in &opts.recipients {
        check_field("recipient", address).map_err(|e| usage(e.cause))?;
        check_address(address).map_err(usage)?;
    }
    let sender = match &opts.from {
        Some(value) => {
            check_field("-f", value).map_err(|e| usage(e.cause))?;
            let sender = sender_argument(value);
            envelope_sender(Some(sender)).map_err(|e| usage(format!("-f: {}", e.cause)))?
        }
        None => None,
    };

    let path = Profile::locate(opts.profile.as_deref().or(profile.as_deref()))
        .map_err(|e| (Exit::SendmailConfig, format!("{e:#}")))?;
    let loaded = Profile::load(&path).map_err(|e| (Exit::SendmailConfig, format!("{e:#}")))?;
    let session = SubmitSession::logon(loaded).await.map_err(|e| {
        (
            Exit::SendmailTempFail,
            format!("cannot reach the queue of {}: {e}", path.display()),
        )
    })?;

    let submission = Submission {
        from: sender,
        recipients: opts.recipients.clone(),
        recipients_from_headers: opts.from_headers,
        dsn_notify: opts.dsn_notify.clone(),
        dsn_ret: opts.dsn_ret.clone(),
        sender_name: opts.full_name.clone(),
        ..Submission::default()
    };
    // The message streams from stdin into the queue as `submit`'s does: `submit` reads the
    // header (for -t's recipients and the fields it adds) and streams the rest, so memory
    // stays flat whatever the size. Without -i, a "." line ends it on the way.
    // Read in place: this runtime has one thread and nothing else to do (see `ReadInPlace`).
    let stdin = tokio::io::BufReader::with_capacity(
        64 * 1024,
        super::submit::ReadInPlace(std::io::stdin()),
    );
    let submitted = if opts.ignore_dots {
        session.submit(submission, stdin).await
    } else {
        session.submit(submission, DotEnded::new(stdin)).await
    };
    let record = submitted.map_err(|e| (exit_for(&e), e.to_string()))?;
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

/// `-f`'s value as sendmail reads it: `<addr>` is `addr`, and `<>` (or nothing) the null
/// sender.
fn sender_argument(value: &str) -> &str {
    let value = value.trim();
    value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value)
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

/// Without -i, a line holding a single "." ends the message (and is not part of it), as in
/// sendmail; what follows it is not read. A reader that passes its input through up to such a
/// line, holding back at most the ".\r" that may start one, so a message of any size streams.
/// Hand-written: this is sendmail's own rule, which no mail crate implements (SMTP's
/// dot-stuffing is a different one).
pub struct DotEnded<R> {
    inner: R,
    state: LineState,
    /// Held-back bytes (".", ".\r") that turned out not to be a dot line, still to be given.
    pending: &'static [u8],
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the start of a line.
    Start,
    /// After "." at the start of a line.
    Dot,
    /// After ".\r" at the start of a line.
    DotCr,
    /// Inside a line.
    Middle,
}

impl<R> DotEnded<R> {
    pub fn new(inner: R) -> DotEnded<R> {
        DotEnded {
            inner,
            state: LineState::Start,
            pending: b"",
            ended: false,
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncRead for DotEnded<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending = &this.pending[n..];
            }
            if this.ended || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let chunk = match Pin::new(&mut this.inner).poll_fill_buf(cx) {
                Poll::Ready(Ok(chunk)) => chunk,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Whatever is already in `buf` is given now; the rest when it comes.
                Poll::Pending if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            };
            if chunk.is_empty() {
                // A "." (or ".\r") as the last line ends the message too.
                this.ended = true;
                return Poll::Ready(Ok(()));
            }
            let mut used = 0;
            while used < chunk.len() && buf.remaining() > 0 && this.pending.is_empty() {
                let byte = chunk[used];
                match this.state {
                    LineState::Start if byte == b'.' => {
                        this.state = LineState::Dot;
                        used += 1;
                    }
                    LineState::Start => this.state = LineState::Middle,
                    LineState::Dot | LineState::DotCr if byte == b'\n' => {
                        this.ended = true;
                        used += 1;
                        break;
                    }
                    LineState::Dot if byte == b'\r' => {
                        this.state = LineState::DotCr;
                        used += 1;
                    }
                    LineState::Dot => {
                        this.pending = b".";
                        this.state = LineState::Middle;
                    }
                    LineState::DotCr => {
                        this.pending = b".\r";
                        this.state = LineState::Middle;
                    }
                    LineState::Middle => {
                        let rest = &chunk[used..];
                        let line = rest
                            .iter()
                            .position(|b| *b == b'\n')
                            .map_or(rest.len(), |p| p + 1);
                        let n = line.min(buf.remaining());
                        buf.put_slice(&rest[..n]);
                        used += n;
                        if n == line && rest[n - 1] == b'\n' {
                            this.state = LineState::Start;
                        }
                    }
                }
            }
            Pin::new(&mut this.inner).consume(used);
            if this.ended && this.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if buf.filled().len() > start && this.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
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

    /// The rule, stated on a whole message: the reference `DotEnded` is checked against.
    fn cut_at_dot_line(message: &[u8]) -> Vec<u8> {
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
                return message[..start].to_vec();
            }
            start = end;
        }
        message.to_vec()
    }

    /// Reads `input` through `DotEnded`, the input arriving `chunk` bytes at a time and read
    /// into a buffer of `read` bytes.
    async fn dot_ended(input: &[u8], chunk: usize, read: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut reader = DotEnded::new(tokio::io::BufReader::with_capacity(chunk, input));
        let mut out = Vec::new();
        let mut buf = vec![0u8; read];
        loop {
            let n = reader.read(&mut buf).await.expect("reads");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn dot_line_ends_the_message() {
        let text = b"Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n";
        assert_eq!(
            dot_ended(text, 4096, 4096).await,
            b"Subject: x\r\n\r\nbody\r\n"
        );
        let text = b"Subject: x\n\n..not the end\n.x\n.\r\r\n";
        assert_eq!(dot_ended(text, 3, 2).await, text);
        assert_eq!(dot_ended(b"a\n.", 1, 1).await, b"a\n");
    }

    /// Every message up to 7 bytes long over the bytes that matter (".", CR, LF and one
    /// other), with every chunking of the input and size of the reader's buffer up to 3:
    /// `DotEnded` gives exactly what the whole-message rule does.
    #[tokio::test]
    async fn dot_ended_streams_what_the_rule_says() {
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        for len in 0..=7u32 {
            for n in 0..4usize.pow(len) {
                let input: Vec<u8> = (0..len).map(|i| alphabet[n / 4usize.pow(i) % 4]).collect();
                let want = cut_at_dot_line(&input);
                for chunk in 1..=3 {
                    for read in 1..=3 {
                        assert_eq!(
                            dot_ended(&input, chunk, read).await,
                            want,
                            "{input:?} chunk {chunk} read {read}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sender_arguments() {
        assert_eq!(sender_argument("<>"), "");
        assert_eq!(sender_argument(""), "");
        assert_eq!(sender_argument("<me@x.test>"), "me@x.test");
        assert_eq!(sender_argument("me@x.test"), "me@x.test");
        assert!(invoked_as_sendmail("/usr/sbin/sendmail".as_ref()));
        assert!(!invoked_as_sendmail("mapispool".as_ref()));
    }
}

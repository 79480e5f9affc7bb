//! The sendmail entry as cron, `git send-email` and `mail` use it: a symlink named `sendmail`
//! to the binary, sendmail's flags, the message on stdin, sysexits codes. What was queued is
//! read back with `mapispool queue --json` and `mapispool show`.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

/// A profile with one transport (`me@home.test`, "Me Home") and a `sendmail` symlink, in a
/// tempdir; its own XDG_RUNTIME_DIR so no daemon of the real user's is found.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let po = dir.path().join("po");
        std::fs::write(
            dir.path().join("me.toml"),
            format!(
                "[store]\npath = \"{store}\"\n\n[[transport]]\nname = \"home\"\naddress = \"me@home.test\"\ndisplay_name = \"Me Home\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n[transport.inbound]\nkind = \"dir\"\npath = \"{po}\"\n",
                store = dir.path().join("me.db").display(),
                po = po.display()
            ),
        )
        .expect("write profile");
        std::fs::create_dir(dir.path().join("run")).expect("runtime dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mapispool"), dir.path().join("sendmail"))
            .expect("symlink");
        Env { dir }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("me.toml")
    }

    fn with_env(&self, mut c: Command) -> Command {
        c.env("MAPISPOOL_PROFILE", self.profile())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env_remove("RUST_LOG");
        c
    }

    /// `sendmail ARGS` through the symlink.
    fn sendmail(&self, args: &[&str]) -> Command {
        let mut c = self.with_env(Command::new(self.dir.path().join("sendmail")));
        c.args(args);
        c
    }

    fn mapispool(&self, args: &[&str]) -> Command {
        let mut c = self.with_env(Command::new(env!("CARGO_BIN_EXE_mapispool")));
        c.args(args);
        c
    }

    /// The queue's rows with the envelope columns.
    fn queue(&self) -> Vec<Value> {
        let out = self
            .mapispool(&[
                "queue",
                "--json",
                "--columns",
                "PR_ENTRYID,PR_SUBJECT,PR_DISPLAY_TO,PR_DISPLAY_CC,PR_DISPLAY_BCC,PR_MSP_ENVELOPE_FROM,PR_SENDER_NAME",
            ])
            .output()
            .expect("queue runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("queue JSON");
        v["rows"].as_array().expect("rows").clone()
    }

    /// The one queued message with `subject`.
    fn queued(&self, subject: &str) -> Value {
        let rows = self.queue();
        let found: Vec<_> = rows
            .iter()
            .filter(|r| r["PR_SUBJECT"] == subject)
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "{subject:?} in {rows:#?}");
        found[0].clone()
    }

    /// Opens `address`'s mailbox in the post office, so the dir transport delivers to it.
    fn mailbox(&self, address: &str) {
        std::fs::create_dir_all(self.mailbox_dir(address)).expect("mailbox");
    }

    fn mailbox_dir(&self, address: &str) -> PathBuf {
        self.dir
            .path()
            .join("po")
            .join(mapispool::transport::dir::mailbox_name(address))
            .join("new")
    }

    /// What the post office delivered to `address`, each message's bytes.
    fn delivered(&self, address: &str) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.mailbox_dir(address))
            .map(|d| d.map(|e| e.expect("entry").path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| String::from_utf8(std::fs::read(f).expect("read")).expect("UTF-8"))
            .collect()
    }

    /// `mapispool flush --upload`, which must send everything.
    fn flush(&self) {
        let out = self
            .mapispool(&["flush", "--upload"])
            .output()
            .expect("flush runs");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }

    /// The raw text of the one Sent Items message with `subject`.
    fn sent(&self, subject: &str) -> String {
        let out = self
            .mapispool(&[
                "messages",
                "--folder",
                "sent",
                "--json",
                "--columns",
                "PR_ENTRYID,PR_SUBJECT",
            ])
            .output()
            .expect("messages runs");
        assert!(out.status.success(), "{out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let rows: Vec<Value> = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["PR_SUBJECT"] == subject)
            .cloned()
            .collect();
        assert_eq!(rows.len(), 1, "{subject:?} in Sent Items: {v}");
        self.raw(&rows[0])
    }

    fn raw(&self, row: &Value) -> String {
        let id = row["PR_ENTRYID"].as_str().expect("entry id");
        let out = self.mapispool(&["show", id]).output().expect("show runs");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs and expects sendmail's silent success.
fn ok(mut c: Command, stdin: &str) {
    c.write_stdin(stdin.to_string())
        .assert()
        .success()
        .stdout("")
        .stderr("");
}

fn fails(mut c: Command, stdin: &str, code: i32) -> String {
    let out = c.write_stdin(stdin.to_string()).output().expect("runs");
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    assert!(out.stdout.is_empty());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one `name:` field of `raw`'s header (asserting there is exactly one), its value.
fn field(raw: &str, name: &str) -> String {
    let header = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .map_or(raw, |(h, _)| h);
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let values: Vec<&str> = header
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim())
        .collect();
    assert_eq!(values.len(), 1, "one {name}: in {raw:?}");
    values[0].to_string()
}

/// The `Date:` and `Message-ID:` that submit added to `raw`, checked: an RFC 5322 date of
/// now (the parser reads it back to within ten minutes), an id `<hex.hex.hex@domain>`.
fn added(raw: &str, domain: &str) -> (String, String) {
    let date = field(raw, "Date");
    let parsed =
        mapispool::message::HeaderSummary::parse(format!("Date: {date}\r\n\r\n").as_bytes())
            .expect("parses")
            .date
            .unwrap_or_else(|| panic!("Date: {date} does not parse"));
    let age = mapi::FileTime::now().unix_seconds() - parsed.unix_seconds();
    assert!((0..600).contains(&age), "Date: {date} is {age} s old");
    assert!(date.ends_with(" +0000"), "{date}");
    let id = field(raw, "Message-ID");
    let local = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix(&format!("@{domain}>")))
        .unwrap_or_else(|| panic!("Message-ID: {id} is not <...@{domain}>"));
    assert!(
        local.split('.').count() == 3
            && local
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit())),
        "{id}"
    );
    (date, id)
}

#[test]
fn recipients_as_arguments_with_f_and_big_f() {
    let env = Env::new();
    // -f with a space, -F attached; no From: header, so one is added from -F and -f, with a
    // Date: and a Message-ID: at the account's domain.
    ok(
        env.sendmail(&[
            "-f",
            "bounce@home.test",
            "-FRobot Writer",
            "a@x.test",
            "b@x.test",
        ]),
        "Subject: one\n\nhello\n",
    );
    let row = env.queued("one");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "bounce@home.test");
    // No header names them: blind recipients.
    assert_eq!(row["PR_DISPLAY_TO"], "");
    assert_eq!(row["PR_DISPLAY_BCC"], "a@x.test; b@x.test");
    let raw = env.raw(&row);
    let (date, id) = added(&raw, "home.test");
    assert_eq!(
        raw,
        format!(
            "From: \"Robot Writer\" <bounce@home.test>\nDate: {date}\nMessage-ID: {id}\nSubject: one\n\nhello\n"
        )
    );

    // -f attached; a From: header present stays as it is, -F notwithstanding.
    ok(
        env.sendmail(&["-fother@home.test", "-F", "Ignored", "c@x.test"]),
        "From: Real <real@home.test>\nSubject: two\n\nhello\n",
    );
    let row = env.queued("two");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "other@home.test");
    let raw = env.raw(&row);
    let (date, id) = added(&raw, "home.test");
    assert_eq!(
        raw,
        format!(
            "Date: {date}\nMessage-ID: {id}\nFrom: Real <real@home.test>\nSubject: two\n\nhello\n"
        )
    );

    // Neither -f nor From: — the transport's address and display name, in the message's
    // line ends.
    ok(env.sendmail(&["d@x.test"]), "Subject: three\r\n\r\nhi\r\n");
    let row = env.queued("three");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "me@home.test");
    let raw = env.raw(&row);
    let (date, id) = added(&raw, "home.test");
    assert_eq!(
        raw,
        format!(
            "From: \"Me Home\" <me@home.test>\r\nDate: {date}\r\nMessage-ID: {id}\r\nSubject: three\r\n\r\nhi\r\n"
        )
    );

    // A body alone gets a whole header, ended by an empty line, as sendmail gives it.
    ok(env.sendmail(&["e@x.test"]), "just a body\n");
    let row = env.queued("");
    let raw = env.raw(&row);
    let (date, id) = added(&raw, "home.test");
    assert_eq!(
        raw,
        format!(
            "From: \"Me Home\" <me@home.test>\nDate: {date}\nMessage-ID: {id}\n\njust a body\n"
        )
    );
}

#[test]
fn t_takes_to_cc_and_bcc_from_the_headers() {
    let env = Env::new();
    ok(
        env.sendmail(&["-t", "-oi"]),
        "From: me@home.test\nTo: To One <to@x.test>\nCc: cc@x.test\nBcc: hidden@x.test\nSubject: bcc\n\nbody\n",
    );
    let row = env.queued("bcc");
    assert_eq!(row["PR_DISPLAY_TO"], "To One");
    assert_eq!(row["PR_DISPLAY_CC"], "cc@x.test");
    assert_eq!(row["PR_DISPLAY_BCC"], "hidden@x.test");

    // -t with arguments: both (as Postfix does); an argument no header names is blind.
    ok(
        env.sendmail(&["-t", "extra@x.test"]),
        "From: me@home.test\nTo: to@x.test\nSubject: both\n\nbody\n",
    );
    let row = env.queued("both");
    assert_eq!(row["PR_DISPLAY_TO"], "to@x.test");
    assert_eq!(row["PR_DISPLAY_BCC"], "extra@x.test");

    // Without -t, only the arguments: To: in the headers is not a recipient.
    ok(
        env.sendmail(&["only@x.test"]),
        "From: me@home.test\nTo: header@x.test\nSubject: args only\n\nbody\n",
    );
    let row = env.queued("args only");
    assert_eq!(row["PR_DISPLAY_TO"], "");
    assert_eq!(row["PR_DISPLAY_BCC"], "only@x.test");
}

#[test]
fn a_dot_line_ends_the_message_unless_i_or_oi() {
    let env = Env::new();
    let text = "Subject: dots\n\nbefore\n.\nafter\n";
    ok(env.sendmail(&["a@x.test"]), text);
    ok(
        env.sendmail(&["-i", "b@x.test"]),
        &text.replace("dots", "dots i"),
    );
    ok(
        env.sendmail(&["-oi", "c@x.test"]),
        &text.replace("dots", "dots oi"),
    );
    let cut = env.raw(&env.queued("dots"));
    assert!(cut.ends_with("before\n") && !cut.contains("after"), "{cut}");
    for subject in ["dots i", "dots oi"] {
        let whole = env.raw(&env.queued(subject));
        assert!(whole.ends_with("before\n.\nafter\n"), "{whole}");
    }
}

#[test]
fn habitual_flags_are_accepted_and_ignored() {
    let env = Env::new();
    ok(
        env.sendmail(&[
            "-bm", "-oem", "-odi", "-odb", "-oQ/tmp", "-U", "-i", "--", "z@x.test",
        ]),
        "Subject: habits\n\nbody\n",
    );
    assert_eq!(env.queued("habits")["PR_DISPLAY_BCC"], "z@x.test");
}

/// `-N` and `-R` ask for delivery status notifications (RFC 3461) as with Postfix's sendmail;
/// the queued message carries them for the SMTP transport's `NOTIFY=`/`RET=`.
#[test]
fn dsn_flags_reach_the_queued_message() {
    let env = Env::new();
    ok(
        env.sendmail(&["-N", "success,failure", "-R", "hdrs", "dsn@x.test"]),
        "Subject: dsn\n\nbody\n",
    );
    let out = env
        .mapispool(&[
            "messages",
            "--folder",
            "outbox",
            "--json",
            "--columns",
            "PR_SUBJECT,PR_MSP_DSN_NOTIFY,PR_MSP_DSN_RET",
        ])
        .output()
        .expect("queue runs");
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("queue JSON");
    let row = &v["rows"][0];
    assert_eq!(row["PR_SUBJECT"], "dsn");
    assert_eq!(row["PR_MSP_DSN_NOTIFY"], "SUCCESS,FAILURE", "{row}");
    assert_eq!(row["PR_MSP_DSN_RET"], "HDRS", "{row}");
    // A word DSN does not have is the caller's mistake (EX_USAGE), and nothing is queued.
    let said = fails(
        env.sendmail(&["-N", "sometimes", "x@x.test"]),
        "Subject: bad dsn\n\nbody\n",
        64,
    );
    assert!(said.contains("-N") && said.contains("NEVER"), "{said}");
    assert_eq!(env.queue().len(), 1);
}

#[test]
fn the_subcommand_form_is_the_same() {
    let env = Env::new();
    ok(
        env.mapispool(&["sendmail", "-t", "-f", "me@home.test"]),
        "To: sub@x.test\nSubject: subcommand\n\nbody\n",
    );
    let row = env.queued("subcommand");
    assert_eq!(row["PR_DISPLAY_TO"], "sub@x.test");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "me@home.test");
}

#[test]
fn errors_exit_as_sendmail_does() {
    let env = Env::new();
    let msg = "Subject: x\n\nbody\n";
    // EX_USAGE: no recipients at all, -t without any in the headers, a bad option, a mode we
    // do not have, a flag missing its value, a bad address on the command line.
    let err = fails(env.sendmail(&[]), msg, 64);
    assert!(err.starts_with("sendmail: no recipients"), "{err}");
    fails(env.sendmail(&["-t"]), msg, 64);
    fails(env.mapispool(&["sendmail"]), msg, 64);
    assert!(fails(env.sendmail(&["-Z", "a@x.test"]), msg, 64).contains("illegal option"));
    assert!(fails(env.sendmail(&["-bp"]), msg, 64).contains("mapispool queue"));
    fails(env.sendmail(&["a@x.test", "-f"]), msg, 64);
    fails(env.sendmail(&["not an address"]), msg, 64);
    // EX_DATAERR: a bad address inside the message.
    fails(
        env.sendmail(&["-t"]),
        "From: me@home.test\nTo: @@@\nSubject: x\n\nbody\n",
        65,
    );
    // EX_CONFIG: no profile.
    let mut c = env.sendmail(&["a@x.test"]);
    c.env("MAPISPOOL_PROFILE", env.dir.path().join("missing.toml"));
    fails(c, msg, 78);
    assert!(env.queue().is_empty(), "nothing was queued by a failure");
}

/// Issue 12.2: `printf 'Subject: nightly\n\nok\n' | sendmail b@x` gets a `Date:` and a
/// `Message-ID:` once, at submit: the Outbox copy, what the post office delivers and the Sent
/// Items copy are the same bytes. A message that has them keeps them, even a `Date:` nobody
/// can read.
#[test]
fn date_and_message_id_are_added_once_and_kept_when_there() {
    let env = Env::new();
    env.mailbox("b@x.test");
    ok(env.sendmail(&["b@x.test"]), "Subject: nightly\n\nok\n");
    let queued = env.raw(&env.queued("nightly"));
    let (date, id) = added(&queued, "home.test");
    assert_eq!(
        queued,
        format!(
            "From: \"Me Home\" <me@home.test>\nDate: {date}\nMessage-ID: {id}\nSubject: nightly\n\nok\n"
        )
    );
    let own = "From: me@home.test\nDate: Tue, 1 Dec 2026 10:00:00 +0100\nMessage-ID: <mine@elsewhere.test>\nSubject: has them\n\nok\n";
    ok(env.sendmail(&["b@x.test"]), own);
    assert_eq!(env.raw(&env.queued("has them")), own);
    let odd = "From: me@home.test\nDate: someday\nMessage-ID: not an id\nSubject: odd ones\n\nok\n";
    ok(env.sendmail(&["b@x.test"]), odd);
    assert_eq!(env.raw(&env.queued("odd ones")), odd);

    env.flush();
    assert!(env.queue().is_empty());
    let delivered = env.delivered("b@x.test");
    assert_eq!(delivered.len(), 3);
    assert!(delivered.contains(&queued), "{delivered:?}");
    assert!(delivered.iter().any(|d| d == own), "{delivered:?}");
    assert_eq!(env.sent("nightly"), queued);
    assert_eq!(env.sent("has them"), own);
}

/// Issue 12.3: a value from a flag that would reach a header or an SMTP command with CR, LF
/// (or, through the API, NUL) in it is refused with EX_USAGE before anything is read, and
/// nothing is queued: the web-form relay hole `-F $'Visitor\nBcc: evil@x'`.
#[test]
fn cr_or_lf_in_a_flag_is_refused_and_nothing_is_queued() {
    let env = Env::new();
    let msg = "To: b@x.test\nSubject: injected\n\nbody\n";
    let said = fails(
        env.sendmail(&["-t", "-F", "Visitor\nBcc: evil@x.test"]),
        msg,
        64,
    );
    assert_eq!(
        said,
        "sendmail: -F \"Visitor\\nBcc: evil@x.test\" holds a LF character, which would end a header line and let the rest become a header of its own; give it on one line\n"
    );
    let said = fails(
        env.sendmail(&["-t", "-FVisitor\rBcc: evil@x.test"]),
        msg,
        64,
    );
    assert!(said.contains("holds a CR character"), "{said}");
    let said = fails(
        env.sendmail(&["-f", "me@home.test\r\nRCPT TO:<evil@x.test>", "b@x.test"]),
        msg,
        64,
    );
    assert_eq!(
        said,
        "sendmail: -f \"me@home.test\\r\\nRCPT TO:<evil@x.test>\" holds a CR character, which would end a header line and let the rest become a header of its own; give it on one line\n"
    );
    let said = fails(env.sendmail(&["b@x.test\nBcc: evil@x.test"]), msg, 64);
    assert!(
        said.starts_with(
            "sendmail: recipient \"b@x.test\\nBcc: evil@x.test\" holds a LF character"
        ),
        "{said}"
    );
    assert!(env.queue().is_empty(), "nothing was queued");
}

/// Issue 12.3: a display name mapispool writes that is not ASCII is RFC 2047-encoded (by
/// mail-builder), and reads back as given.
#[test]
fn a_non_ascii_full_name_is_encoded() {
    let env = Env::new();
    ok(
        env.sendmail(&["-F", "José Núñez", "b@x.test"]),
        "Subject: accents\n\nhola\n",
    );
    let row = env.queued("accents");
    let raw = env.raw(&row);
    assert!(
        raw.starts_with("From: =?utf-8?B?Sm9zw6kgTsO6w7Fleg==?= <me@home.test>\nDate: "),
        "{raw}"
    );
    assert_eq!(row["PR_SENDER_NAME"], "José Núñez");
}

/// Issue 12.5: the message's addresses are RFC 5322 addr-specs: `To: bad@@x` with -t is
/// EX_DATAERR (65), as the README promises, and nothing is queued; so is a To: entry that is
/// no address at all. `-f '<>'` is the null sender.
#[test]
fn addresses_are_addr_specs_and_the_null_sender_is_allowed() {
    let env = Env::new();
    let said = fails(
        env.sendmail(&["-t"]),
        "To: bad@@x\nSubject: x\n\nbody\n",
        65,
    );
    assert_eq!(
        said,
        "sendmail: MAPI_E_INVALID_PARAMETER (0x80070057): recipient: \"bad@@x\" is not an e-mail address (Invalid character); expected one like me@example.com\n"
    );
    let said = fails(
        env.sendmail(&["-t"]),
        "To: ok@x.test, junk\nSubject: x\n\nbody\n",
        65,
    );
    assert!(
        said.contains("recipient: the header names \"junk\""),
        "{said}"
    );
    // On the command line it is the caller's mistake: EX_USAGE.
    let said = fails(env.sendmail(&["bad@@x"]), "Subject: x\n\nbody\n", 64);
    assert_eq!(
        said,
        "sendmail: \"bad@@x\" is not an e-mail address (Invalid character); expected one like me@example.com\n"
    );
    fails(
        env.sendmail(&["-f", "me@@home.test", "b@x.test"]),
        "Subject: x\n\nbody\n",
        64,
    );
    assert!(env.queue().is_empty());

    ok(
        env.sendmail(&["-f", "<>", "b@x.test"]),
        "Subject: null sender\n\nbody\n",
    );
    let row = env.queued("null sender");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "");
    // The From: it gets is the account's: a header cannot be empty.
    assert!(
        env.raw(&row)
            .starts_with("From: \"Me Home\" <me@home.test>\n")
    );
    ok(
        env.sendmail(&["-f<b@home.test>", "b@x.test"]),
        "Subject: bracketed\n\nbody\n",
    );
    assert_eq!(
        env.queued("bracketed")["PR_MSP_ENVELOPE_FROM"],
        "b@home.test"
    );
}

/// Issue 12.7: without -f the envelope sender is the account's address (the transport that
/// authenticates), not the From: header's, which may name anyone.
#[test]
fn without_f_the_envelope_sender_is_the_account() {
    let env = Env::new();
    ok(
        env.sendmail(&["b@x.test"]),
        "From: Someone Else <someone@elsewhere.test>\nSubject: on behalf\n\nbody\n",
    );
    let row = env.queued("on behalf");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "me@home.test");
    assert_eq!(row["PR_SENDER_NAME"], "Someone Else");
    ok(
        env.sendmail(&["-t"]),
        "From: someone@elsewhere.test\nTo: b@x.test\nSubject: on behalf t\n\nbody\n",
    );
    assert_eq!(
        env.queued("on behalf t")["PR_MSP_ENVELOPE_FROM"],
        "me@home.test"
    );
}

/// Issue 12.8: without -t the arguments are the envelope; To:, Cc: and Bcc: say how each shows
/// (`PR_DISPLAY_TO`, `_CC`, `_BCC`), so a blind recipient never shows in `PR_DISPLAY_TO`.
#[test]
fn arguments_are_the_envelope_and_headers_say_how_they_show() {
    let env = Env::new();
    ok(
        env.sendmail(&["a@x.test", "c@x.test", "h@x.test", "z@x.test"]),
        "From: me@home.test\nTo: Ann <a@x.test>, Not Sent <n@x.test>\nCc: c@x.test\nBcc: h@x.test\nSubject: display\n\nbody\n",
    );
    let row = env.queued("display");
    assert_eq!(row["PR_DISPLAY_TO"], "Ann");
    assert_eq!(row["PR_DISPLAY_CC"], "c@x.test");
    assert_eq!(row["PR_DISPLAY_BCC"], "h@x.test; z@x.test");
}

/// Issue 12.1 (the submit side): `sendmail -t` delivers to a `Bcc:` recipient with the right
/// envelope, and the sender's copy in Sent Items keeps the `Bcc:` header, as Outlook's does.
#[test]
fn bcc_recipients_are_delivered_and_sent_items_keeps_bcc() {
    let env = Env::new();
    for address in ["b@x.test", "c@x.test"] {
        env.mailbox(address);
    }
    let text = "From: a@home.test\nTo: b@x.test\nBcc: c@x.test\nSubject: s\nDate: Mon, 7 Dec 2026 09:00:00 +0000\nMessage-ID: <bcc-1@home.test>\n\nhi\n";
    ok(env.sendmail(&["-t"]), text);
    let row = env.queued("s");
    assert_eq!(row["PR_DISPLAY_TO"], "b@x.test");
    assert_eq!(row["PR_DISPLAY_BCC"], "c@x.test");
    assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "me@home.test");
    assert_eq!(env.raw(&row), text, "the Outbox copy is as submitted");
    env.flush();
    let without_bcc = text.replace("Bcc: c@x.test\n", "");
    assert_eq!(
        env.delivered("b@x.test"),
        std::slice::from_ref(&without_bcc)
    );
    assert_eq!(
        env.delivered("c@x.test"),
        [without_bcc],
        "the Bcc recipient got it, without the Bcc: header"
    );
    assert_eq!(env.sent("s"), text, "Sent Items keeps Bcc:");
}

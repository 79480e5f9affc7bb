//! Everyday programs that hand mail to `sendmail`, driving ours (a `sendmail` link to the
//! binary) as they would on a user's machine: GNU Mailutils' `mail` with Cc, Bcc and an
//! attachment, and `git send-email` of a patch series that `git am` applies back to the same
//! tree. The copies the post office (the `dir` transport) delivers are checked. Also: a 200 MB
//! message through `sendmail` stays within 64 MiB, and `sendmail` through a running daemon.
//!
//! The programs come from Debian's `mailutils`, `git-email` and `time` packages, which
//! `scripts/test` installs; without one a test fails under CI (`CI` set) and is skipped with a
//! note elsewhere.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::profile::dir_transport;
use common::sandbox::{BIN, Sandbox, run_with_stdin, stderr_of, stdout_of};
use serde_json::Value;

/// Whether `program` is installed; under CI its absence fails the test.
fn installed(program: &str, package: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is missing: install Debian's {package} (scripts/test does)"
    );
    eprintln!("skipped: {program} is not installed (Debian package {package})");
    false
}

/// Whether Perl has `module` (git send-email needs Mail::Address, which Debian's git-email
/// only recommends); under CI its absence fails the test.
fn perl_module(module: &str, package: &str) -> bool {
    let found = Command::new("perl")
        .arg(format!("-M{module}"))
        .arg("-e1")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "Perl's {module} is missing: install Debian's {package} (scripts/test does)"
        );
        eprintln!("skipped: Perl's {module} is not installed (Debian package {package})");
    }
    found
}

/// A sandbox with the profile `me.toml` (transport `home`, `me@home.test`, on the post office)
/// and `sendmail`, a link to the binary.
struct Mta {
    sandbox: Sandbox,
    profile: PathBuf,
}

impl Mta {
    fn new() -> Mta {
        let sandbox = Sandbox::new();
        let profile = sandbox.write_profile(
            "me",
            &dir_transport("home", "me@home.test", &sandbox.post_office()),
        );
        std::os::unix::fs::symlink(BIN, sandbox.path("sendmail")).expect("sendmail link");
        std::fs::create_dir_all(sandbox.path("home")).expect("HOME");
        Mta { sandbox, profile }
    }

    fn sendmail(&self) -> PathBuf {
        self.sandbox.path("sendmail")
    }

    /// `program` in the sandbox, finding the profile as a system `sendmail` would be set up to
    /// (`MAPISPOOL_PROFILE`).
    fn client(&self, program: &str) -> Command {
        let mut cmd = self.sandbox.command(program);
        cmd.env("MAPISPOOL_PROFILE", &self.profile);
        cmd
    }

    /// Opens `address`'s mailbox in the post office.
    fn mailbox(&self, address: &str) {
        std::fs::create_dir_all(self.sandbox.mailbox(address)).expect("mailbox");
    }

    /// The messages delivered to `address`, in delivery order.
    fn delivered(&self, address: &str) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.sandbox.mailbox(address))
            .map(|d| d.map(|e| e.expect("entry").path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read(f).expect("read"))
            .collect()
    }

    fn rows(&self, args: &[&str]) -> Vec<Value> {
        let out = self.sandbox.run_ok(&self.profile, args);
        let v: Value = serde_json::from_str(&out).expect("JSON");
        v["rows"].as_array().expect("rows").clone()
    }

    fn flush(&self) {
        self.sandbox.run_ok(&self.profile, &["flush", "--upload"]);
        assert!(self.rows(&["queue", "--json"]).is_empty(), "all sent");
    }

    /// The raw Sent Items messages, oldest first.
    fn sent(&self) -> Vec<Vec<u8>> {
        self.rows(&["messages", "--folder", "sent", "--json"])
            .iter()
            .map(|r| {
                let id = r["PR_ENTRYID"].as_str().expect("entry id");
                let out = self.sandbox.run(&self.profile, &["show", id]);
                assert!(out.status.success(), "{}", stderr_of(&out));
                out.stdout
            })
            .collect()
    }
}

/// `message` without its `Bcc:` header lines: what a recipient gets of it.
fn without_bcc(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let (header, body) = text.split_once("\n\n").expect("a header");
    let mut out = String::new();
    let mut skipping = false;
    for line in header.split_inclusive('\n') {
        if line.starts_with([' ', '\t']) {
            if !skipping {
                out.push_str(line);
            }
            continue;
        }
        skipping = line.to_ascii_lowercase().starts_with("bcc:");
        if !skipping {
            out.push_str(line);
        }
    }
    format!("{}\n\n{body}", out.trim_end_matches('\n')).into_bytes()
}

/// The header lines `submit` put before what the client piped in: `message` must be
/// `added` followed by `piped`; returns `added`.
fn added_before<'a>(message: &'a [u8], piped: &[u8]) -> &'a str {
    assert!(
        message.ends_with(piped),
        "the stored message is not what the client piped, after added fields:\n{}",
        String::from_utf8_lossy(message)
    );
    std::str::from_utf8(&message[..message.len() - piped.len()]).expect("ASCII")
}

/// Mailutils' `mail -s SUBJECT -a 'Cc: ...' -a 'Bcc: ...' -A FILE -r FROM TO` (it runs
/// `sendmail -oi -f FROM -t`): To, Cc and Bcc recipients each get the message with its
/// attachment intact; the envelope sender is `-r`'s; Sent Items keeps the Bcc header.
#[test]
fn mailutils_mail_with_cc_bcc_and_an_attachment() {
    if !installed("/usr/bin/mail.mailutils", "mailutils") {
        return;
    }
    let mta = Mta::new();
    for a in ["to@x.test", "cc@x.test", "bcc@x.test"] {
        mta.mailbox(a);
    }
    // What `mail` pipes to sendmail is kept, to compare with what was stored.
    let tee = mta.sandbox.path("sendmail-tee");
    std::fs::write(
        &tee,
        format!(
            "#!/bin/sh\necho \"$@\" > '{args}'\ntee '{piped}' | '{sendmail}' \"$@\"\n",
            args = mta.sandbox.path("args").display(),
            piped = mta.sandbox.path("piped").display(),
            sendmail = mta.sendmail().display()
        ),
    )
    .expect("tee script");
    std::fs::set_permissions(&tee, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let attachment: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(mta.sandbox.path("data.bin"), &attachment).expect("attachment");

    let mut mail = mta.client("/usr/bin/mail.mailutils");
    mail.args([
        "--no-config",
        "-n",
        "-E",
        &format!("set sendmail=sendmail://{}", tee.display()),
        "-s",
        "Report for Monday",
        "-a",
        "Cc: Carol <cc@x.test>",
        "-a",
        "Bcc: bcc@x.test",
        "-A",
        "data.bin",
        "-r",
        "me@home.test",
        "to@x.test",
    ]);
    let out = run_with_stdin(&mut mail, b"Hello from mail.\n.\nNot the end.\n");
    assert!(
        out.status.success(),
        "mail: {} {}",
        stdout_of(&out),
        stderr_of(&out)
    );
    assert_eq!(
        std::fs::read_to_string(mta.sandbox.path("args")).expect("args"),
        "-oi -f me@home.test -t\n"
    );
    let piped = std::fs::read(mta.sandbox.path("piped")).expect("piped");

    let queued = mta.rows(&[
        "queue",
        "--json",
        "--columns",
        "PR_SUBJECT,PR_DISPLAY_TO,PR_DISPLAY_CC,PR_DISPLAY_BCC,PR_MSP_ENVELOPE_FROM",
    ]);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["PR_SUBJECT"], "Report for Monday");
    assert_eq!(queued[0]["PR_DISPLAY_TO"], "to@x.test");
    assert_eq!(queued[0]["PR_DISPLAY_CC"], "Carol");
    assert_eq!(queued[0]["PR_DISPLAY_BCC"], "bcc@x.test");
    assert_eq!(queued[0]["PR_MSP_ENVELOPE_FROM"], "me@home.test");

    mta.flush();
    let sent = mta.sent();
    assert_eq!(sent.len(), 1);
    // mail writes its own Date: and no From: or Message-ID: (sendmail's job): submit added
    // those two, and nothing else changed.
    let added = added_before(&sent[0], &piped);
    let lines: Vec<&str> = added.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2, "{added}");
    assert_eq!(lines[0], "From: <me@home.test>\n");
    assert!(
        lines[1].starts_with("Message-ID: <") && lines[1].ends_with("@home.test>\n"),
        "{added}"
    );
    assert!(
        String::from_utf8_lossy(&sent[0]).contains("\nBcc: <bcc@x.test>\n"),
        "Sent Items keeps Bcc:"
    );
    for a in ["to@x.test", "cc@x.test", "bcc@x.test"] {
        let got = mta.delivered(a);
        assert_eq!(got.len(), 1, "{a}");
        assert_eq!(
            String::from_utf8_lossy(&got[0]),
            String::from_utf8_lossy(&without_bcc(&sent[0])),
            "{a}'s copy: the sent message without its Bcc:"
        );
        assert_eq!(attachment_of(&got[0]), attachment, "{a}'s attachment");
        let text = String::from_utf8_lossy(&got[0]);
        assert!(
            text.contains("\n\nHello from mail.\n.\nNot the end.\n"),
            "-oi: a dot line does not end it: {text}"
        );
    }
}

/// The base64 attachment of `message` (the part after `filename="data.bin"`), decoded with
/// coreutils' `base64 -d`.
fn attachment_of(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let part = text
        .split_once("filename=\"data.bin\"")
        .expect("the attachment part")
        .1;
    let encoded: String = part
        .split_once("\n\n")
        .expect("the part's body")
        .1
        .lines()
        .take_while(|l| !l.starts_with("--"))
        .collect();
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(encoded.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("base64 ends");
    assert!(out.status.success(), "base64 -d: {encoded}");
    out.stdout
}

/// Debian's git (`/usr/bin/git`: its exec path holds `send-email`), in `dir`, with a fixed
/// identity and clock so the commits are the same on every run.
fn git(mta: &Mta, dir: &Path, args: &[&str]) -> String {
    let out = mta
        .sandbox
        .command("/usr/bin/git")
        .env("MAPISPOOL_PROFILE", &mta.profile)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Dev One")
        .env("GIT_AUTHOR_EMAIL", "me@home.test")
        .env("GIT_COMMITTER_NAME", "Dev One")
        .env("GIT_COMMITTER_EMAIL", "me@home.test")
        .env("GIT_AUTHOR_DATE", "2026-12-07T09:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-12-07T09:00:00Z")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}\n{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    stdout_of(&out)
}

/// `git send-email` of a three-patch series to a list with a Cc, through our sendmail (it runs
/// `sendmail -i RCPT...`); the list's copies, applied with `git am` to the base, give the same
/// tree and the same commits.
#[test]
fn git_send_email_of_a_patch_series_applies_back_with_git_am() {
    if !installed("/usr/lib/git-core/git-send-email", "git-email")
        || !perl_module("Mail::Address", "libmailtools-perl")
    {
        return;
    }
    let mta = Mta::new();
    for a in ["list@x.test", "reviewer@x.test"] {
        mta.mailbox(a);
    }
    let repo = mta.sandbox.path("repo");
    std::fs::create_dir(&repo).expect("repo");
    git(&mta, &repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "A project.\n").expect("write");
    git(&mta, &repo, &["add", "README"]);
    git(&mta, &repo, &["commit", "-q", "-m", "Start"]);
    let patches: [(&str, &str, &str); 3] = [
        (
            "notes.txt",
            "first line\n.\n..two dots\nFrom the top\n",
            "Add notes",
        ),
        (
            "README",
            "A project.\nNow with a second line.\n",
            "README: say more",
        ),
        (
            "src/main.c",
            "int main(void) { return 0; }\n",
            "Add a main that does nothing",
        ),
    ];
    for (file, text, subject) in patches {
        let path = repo.join(file);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        git(&mta, &repo, &["add", file]);
        git(
            &mta,
            &repo,
            &[
                "commit",
                "-q",
                "-m",
                subject,
                "-m",
                "Why: because the series needs it.",
            ],
        );
    }
    git(
        &mta,
        &repo,
        &[
            "send-email",
            "-q",
            "--confirm=never",
            "--suppress-cc=all",
            "--no-thread",
            "--from=Dev One <me@home.test>",
            "--to=list@x.test",
            "--cc=reviewer@x.test",
            &format!("--sendmail-cmd={}", mta.sendmail().display()),
            "HEAD~3",
        ],
    );
    let queued = mta.rows(&[
        "queue",
        "--json",
        "--columns",
        "PR_SUBJECT,PR_DISPLAY_TO,PR_DISPLAY_CC,PR_DISPLAY_BCC,PR_MSP_ENVELOPE_FROM",
    ]);
    let subjects: Vec<&str> = queued
        .iter()
        .map(|r| r["PR_SUBJECT"].as_str().expect("subject"))
        .collect();
    assert_eq!(
        subjects,
        [
            "[PATCH 1/3] Add notes",
            "[PATCH 2/3] README: say more",
            "[PATCH 3/3] Add a main that does nothing"
        ]
    );
    for row in &queued {
        assert_eq!(row["PR_DISPLAY_TO"], "list@x.test", "{row}");
        assert_eq!(row["PR_DISPLAY_CC"], "reviewer@x.test", "{row}");
        assert_eq!(row["PR_DISPLAY_BCC"], "", "{row}");
        assert_eq!(row["PR_MSP_ENVELOPE_FROM"], "me@home.test", "{row}");
    }
    mta.flush();
    assert_eq!(mta.delivered("reviewer@x.test").len(), 3);
    assert_eq!(mta.delivered("list@x.test").len(), 3);

    // The list's copies, as a maildir, applied to the base in a clone.
    let maildir = mta.sandbox.path("list-maildir");
    std::fs::create_dir_all(maildir.join("cur")).expect("maildir");
    std::fs::create_dir_all(maildir.join("new")).expect("maildir");
    for (i, message) in mta.delivered("list@x.test").iter().enumerate() {
        std::fs::write(maildir.join("new").join(format!("{i:03}")), message).expect("copy");
    }
    let clone = mta.sandbox.path("clone");
    git(
        &mta,
        &mta.sandbox.path(""),
        &[
            "clone",
            "-q",
            repo.to_str().expect("path"),
            clone.to_str().expect("path"),
        ],
    );
    git(&mta, &clone, &["reset", "-q", "--hard", "HEAD~3"]);
    git(&mta, &clone, &["am", "-q", maildir.to_str().expect("path")]);
    let tree = |dir: &Path| git(&mta, dir, &["rev-parse", "HEAD^{tree}"]);
    assert_eq!(tree(&clone), tree(&repo), "the same tree");
    let log = |dir: &Path| git(&mta, dir, &["log", "--format=%an <%ae>%n%s%n%b%n--", "-3"]);
    assert_eq!(log(&clone), log(&repo), "the same commits");
}

/// Peak RSS in KiB of `cmd` run under GNU time (its own `wait4`, so the figure is the
/// command's alone), with `feed` writing its stdin; and the command's output.
fn peak_rss(
    mta: &Mta,
    args: &[&str],
    feed: impl FnOnce(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
) -> (u64, std::process::Output) {
    let rss_file = mta.sandbox.path("maxrss");
    let mut cmd = mta.client("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(mta.sendmail())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("time runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut stdin);
        let fed = feed(&mut w).and_then(|()| w.flush());
        // sendmail stops reading at a "." line: the rest is not its to read.
        match fed {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("feeding: {e}"),
            _ => {}
        }
    });
    let out = child.wait_with_output().expect("time ends");
    writer.join().expect("the writer");
    let rss = std::fs::read_to_string(&rss_file).expect("time's output");
    let kib = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("time wrote {rss:?}"));
    (kib, out)
}

const BIG: usize = 200 * 1000 * 1000;

/// Issue 12.10: a 200 MB message through `sendmail` (with `-t`'s header reading and the
/// "." line rule, and with `-i`) stays under 64 MiB of memory, and is queued whole: the store
/// holds exactly the bytes up to the "." line.
#[test]
fn a_200_mb_message_through_sendmail_stays_under_64_mib() {
    if !installed("/usr/bin/time", "time") {
        return;
    }
    let mta = Mta::new();
    let header = "From: me@home.test\nTo: big@x.test\nSubject: big\nDate: Mon, 7 Dec 2026 09:00:00 +0000\nMessage-ID: <big@home.test>\n\n";
    let line = format!("..{}\n", "x".repeat(75));
    let lines = BIG / line.len();
    let (kib, out) = peak_rss(&mta, &["-t"], {
        let line = line.clone();
        move |w| {
            w.write_all(header.as_bytes())?;
            for _ in 0..lines {
                w.write_all(line.as_bytes())?;
            }
            w.write_all(b".\nafter the end\n")
        }
    });
    assert!(out.status.success(), "sendmail -t: {}", stderr_of(&out));
    eprintln!("sendmail -t, 200 MB: peak RSS {kib} KiB");
    assert!(kib < 64 * 1024, "peak RSS {kib} KiB");

    let (kib_i, out) = peak_rss(&mta, &["-i", "big@x.test"], {
        let line = line.clone();
        move |w| {
            w.write_all(header.replace("Subject: big", "Subject: big i").as_bytes())?;
            for _ in 0..lines {
                w.write_all(line.as_bytes())?;
            }
            w.write_all(b".\nafter the dot, kept with -i\n")
        }
    });
    assert!(out.status.success(), "sendmail -i: {}", stderr_of(&out));
    eprintln!("sendmail -i, 200 MB: peak RSS {kib_i} KiB");
    assert!(kib_i < 64 * 1024, "peak RSS {kib_i} KiB");

    let rows = mta.rows(&["queue", "--json", "--columns", "PR_SUBJECT,PR_MESSAGE_SIZE"]);
    let sizes: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["PR_SUBJECT"].as_str().expect("subject").to_string(),
                r["PR_MESSAGE_SIZE"].as_u64().expect("size"),
            )
        })
        .collect();
    let body = (lines * line.len()) as u64;
    assert_eq!(
        sizes,
        [
            ("big".to_string(), header.len() as u64 + body),
            (
                "big i".to_string(),
                header.len() as u64 + 2 + body + ".\nafter the dot, kept with -i\n".len() as u64
            ),
        ]
    );
}

/// `sendmail` through a running daemon: the same From: with an RFC 2047 name, the same
/// refusal of a bad header address (EX_DATAERR, the MAPI error carried over the socket).
#[test]
fn sendmail_through_the_daemon() {
    let mta = Mta::new();
    let daemon = mta.sandbox.start_daemon(&mta.profile);
    let mut cmd = mta.client(mta.sendmail().to_str().expect("path"));
    cmd.args(["-F", "José Núñez", "b@x.test"]);
    let out = run_with_stdin(&mut cmd, b"Subject: via daemon\n\nhi\n");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        stderr_of(&out)
    );
    let rows = mta.rows(&["queue", "--json", "--columns", "PR_ENTRYID,PR_SENDER_NAME"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["PR_SENDER_NAME"], "José Núñez");
    let id = rows[0]["PR_ENTRYID"].as_str().expect("id");
    let raw = mta.sandbox.run_ok(&mta.profile, &["show", id]);
    assert!(
        raw.starts_with("From: =?utf-8?B?Sm9zw6kgTsO6w7Fleg==?= <me@home.test>\nDate: "),
        "{raw}"
    );

    let mut cmd = mta.client(mta.sendmail().to_str().expect("path"));
    cmd.arg("-t");
    let out = run_with_stdin(&mut cmd, b"To: bad@@x\nSubject: bad\n\nhi\n");
    assert_eq!(out.status.code(), Some(65), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        "sendmail: MAPI_E_INVALID_PARAMETER (0x80070057): recipient: \"bad@@x\" is not an e-mail address (Invalid character); expected one like me@example.com\n"
    );
    assert_eq!(mta.sandbox.queue_len(&mta.profile), 1);
    daemon.stop();
}

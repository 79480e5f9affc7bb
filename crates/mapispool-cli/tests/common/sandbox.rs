//! A tempdir that one test's `mapispool` processes live in, cut off from the real user's files
//! and from every other test's: its profiles, stores, post office and daemon socket are all
//! inside it, so tests can run side by side and a developer's own spooler is never touched.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mapispool::transport::dir::mailbox_name;
use tempfile::TempDir;

use super::daemon::Daemon;
use super::profile::{dir_transport, profile_toml};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mapispool");

/// The tempdir; dropped (and removed) with the sandbox.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    /// An empty sandbox with its runtime directory made.
    pub fn new() -> Sandbox {
        let sandbox = Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir(sandbox.runtime()).expect("runtime dir");
        sandbox
    }

    /// A path inside the sandbox.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `XDG_RUNTIME_DIR` of the sandbox's processes: where a daemon puts its socket and
    /// lock, so a client finds this test's daemon and no other.
    pub fn runtime(&self) -> PathBuf {
        self.path("run")
    }

    /// The post-office directory the sandbox's `dir` transports share (see
    /// [`dir_transport`]).
    pub fn post_office(&self) -> PathBuf {
        self.path("po")
    }

    /// The post-office mailbox `address` is delivered into (its `new` directory).
    pub fn mailbox(&self, address: &str) -> PathBuf {
        self.post_office().join(mailbox_name(address)).join("new")
    }

    /// How many messages the post office has delivered to `address` (0 with no mailbox yet).
    pub fn delivered(&self, address: &str) -> usize {
        std::fs::read_dir(self.mailbox(address))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Writes the profile `NAME.toml`, its store `NAME.db` in the sandbox and `rest` (transports,
    /// `[spooler]`, ...) after the `[store]` table; returns its path.
    pub fn write_profile(&self, name: &str, rest: &str) -> PathBuf {
        let path = self.path(&format!("{name}.toml"));
        let text = profile_toml(&self.path(&format!("{name}.db")), rest);
        std::fs::write(&path, text).expect("write the profile");
        path
    }

    /// [`Sandbox::write_profile`] with one transport, `transport` for `address`, on the
    /// sandbox's post office (see [`dir_transport`]).
    pub fn write_dir_profile(&self, name: &str, transport: &str, address: &str) -> PathBuf {
        self.write_profile(
            name,
            &dir_transport(transport, address, &self.post_office()),
        )
    }

    /// `program` (the binary, or a link to it such as `sendmail`) run inside the sandbox: its
    /// working directory, HOME and XDG directories there; no `MAPISPOOL_PROFILE` or `RUST_LOG`
    /// from the test's own environment (a developer's settings must not change a test);
    /// `NO_COLOR`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path())
            .env_remove("MAPISPOOL_PROFILE")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_RUNTIME_DIR", self.runtime());
        cmd
    }

    /// `mapispool` in the sandbox, with no profile given.
    pub fn mapispool(&self) -> Command {
        self.command(BIN)
    }

    /// `mapispool --profile PROFILE` in the sandbox.
    pub fn cli(&self, profile: &Path) -> Command {
        let mut cmd = self.mapispool();
        cmd.arg("--profile").arg(profile);
        cmd
    }

    /// `mapispool --profile PROFILE ARGS`, run to its end.
    pub fn run(&self, profile: &Path, args: &[&str]) -> Output {
        self.cli(profile)
            .args(args)
            .output()
            .expect("mapispool runs")
    }

    /// [`Sandbox::run`] that must succeed; its stdout.
    pub fn run_ok(&self, profile: &Path, args: &[&str]) -> String {
        let out = self.run(profile, args);
        assert!(
            out.status.success(),
            "mapispool {args:?}: {:?}\n{}\n{}",
            out.status,
            stdout_of(&out),
            stderr_of(&out)
        );
        stdout_of(&out)
    }

    /// `mapispool --profile PROFILE submit ARGS` with `message` on stdin, which must succeed;
    /// the entry ID it printed.
    pub fn submit(&self, profile: &Path, args: &[&str], message: &str) -> String {
        let mut cmd = self.cli(profile);
        cmd.arg("submit").args(args);
        let out = run_with_stdin(&mut cmd, message.as_bytes());
        assert!(out.status.success(), "submit: {}", stderr_of(&out));
        stdout_of(&out).trim().to_string()
    }

    /// How many messages `queue --json` lists for `profile` (which must succeed).
    pub fn queue_len(&self, profile: &Path) -> usize {
        let out = self.run_ok(profile, &["queue", "--json"]);
        let queue: serde_json::Value = serde_json::from_str(&out).expect("queue --json");
        queue["rows"].as_array().map(Vec::len).expect("queue rows")
    }

    /// Where the daemon for `profile` (whose store is `NAME.db` beside it, as
    /// [`Sandbox::write_profile`] makes it) listens: the library's rule, in this sandbox's
    /// runtime directory rather than the test process's.
    pub fn socket(&self, profile: &Path) -> PathBuf {
        let store = profile.with_extension("db");
        self.runtime()
            .join("mapispool")
            .join(mapispool::ipc::socket_name(&store))
    }

    /// `mapispool --profile PROFILE spooler`, started and listening (see [`Daemon::start`]).
    pub fn start_daemon(&self, profile: &Path) -> Daemon {
        self.start_daemon_with(profile, |_| {})
    }

    /// [`Sandbox::start_daemon`] with the command changed by `configure` (global flags such as
    /// `-v`, `RUST_LOG`) before `spooler` is added. Its log is `NAME.spooler.log`, appended to
    /// by every daemon of that profile.
    pub fn start_daemon_with(
        &self,
        profile: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> Daemon {
        let mut cmd = self.cli(profile);
        configure(&mut cmd);
        cmd.arg("spooler");
        let stem = profile
            .file_stem()
            .expect("a profile file name")
            .to_string_lossy();
        Daemon::start(
            cmd,
            self.socket(profile),
            self.path(&format!("{stem}.spooler.log")),
        )
    }
}

/// Runs `cmd` with `stdin` written to it and its stdout and stderr captured.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mapispool starts");
    let written = child.stdin.take().expect("stdin").write_all(stdin);
    // A command that refuses its input may stop reading early: the broken pipe is not the
    // test's failure, what the command says and exits with is.
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        panic!("writing mapispool's stdin: {e}");
    }
    child.wait_with_output().expect("mapispool ends")
}

/// A command's stdout as text (lossy: a test wants to see it even if it is not UTF-8).
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr as text (lossy).
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything a command wrote, stdout then stderr: for checks on what it shows at all.
pub fn all_output(out: &Output) -> String {
    format!("{}{}", stdout_of(out), stderr_of(out))
}

//! What a test waits for, each with a deadline so that a hang fails the test instead of
//! stalling the run: a `mapispool spooler` daemon it starts and stops, a child's exit, a
//! condition.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to start listening or to stop on SIGTERM: far more than it
/// needs, because the test binaries run side by side on a small (2-core) machine.
pub const DAEMON_DEADLINE: Duration = Duration::from_secs(60);

/// How long [`wait_until`] waits for something a test caused.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `ready` is true, checking every 50 ms; fails the test, naming `what`, after
/// [`WAIT_DEADLINE`].
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `limit` for `child` to exit; its status, or `None` if it still runs.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running daemon. Dropped while still running (a test that failed half-way), it is killed
/// so that no daemon outlives its test.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `spooler` (a `mapispool ... spooler` command) with its stderr appended to `log`
    /// (a pipe nobody reads could fill up and stall it, and the file is what a failure shows),
    /// and waits until `socket` accepts connections: a socket file alone may be the leftover of
    /// a killed daemon. Fails the test if the daemon exits first or does not listen within
    /// [`DAEMON_DEADLINE`].
    pub fn start(mut spooler: Command, socket: PathBuf, log: PathBuf) -> Daemon {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("the daemon's log file");
        let child = spooler
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the spooler daemon starts");
        let mut daemon = Daemon { child, socket, log };
        let deadline = Instant::now() + DAEMON_DEADLINE;
        while UnixStream::connect(&daemon.socket).is_err() {
            if let Some(status) = daemon.exited() {
                panic!(
                    "the daemon exited ({status}) before listening:\n{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon's socket never came:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends signal `sig` ("HUP", "TERM", ...) to the daemon.
    pub fn signal(&self, sig: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{sig} {}", self.pid());
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for the daemon")
    }

    /// SIGTERM, and the exit status if it exits within [`DAEMON_DEADLINE`]; `None` if it did
    /// not, and then it has been killed.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        self.signal("TERM");
        let status = wait_exit(&mut self.child, DAEMON_DEADLINE);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// A clean stop: on SIGTERM it exits 0 within [`DAEMON_DEADLINE`], its socket removed.
    pub fn stop(mut self) {
        let status = self.terminate();
        assert!(
            status.is_some_and(|s| s.code() == Some(0)),
            "SIGTERM is a clean stop (exit 0), not {status:?}:\n{}",
            self.log()
        );
        assert!(!self.socket.exists(), "the stopped daemon left its socket");
    }

    /// SIGKILL, and waits for it to be gone: a crash, which cleans nothing up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

//! The spooler daemon with real processes: clients of every kind at once, MAPI errors across
//! the socket, one daemon per profile, other users refused, and nothing lost to SIGTERM or
//! SIGKILL.
//!
//! One test function on purpose: it points `XDG_RUNTIME_DIR` at its own directory (where the
//! socket lives) for this whole process, which only one test may do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mapi::constants::{STATUS_OUTBOUND_ACTIVE, STATUS_OUTBOUND_FLUSH};
use mapi::tag::PR_STATUS_CODE;
use mapi::{MapiCode, PropValue};
use mapispool::{FlushFlags, Profile, Session};

struct Env {
    dir: tempfile::TempDir,
    runtime: PathBuf,
}

impl Env {
    fn profile(&self, name: &str, connect_command: Option<&str>) -> PathBuf {
        let po = self.dir.path().join("po");
        let path = self.dir.path().join(format!("{name}.toml"));
        let mut text = format!(
            "[store]\npath = \"{store}\"\n\n[[transport]]\nname = \"local\"\naddress = \"{name}@localhost\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{po}\"\n[transport.inbound]\nkind = \"dir\"\npath = \"{po}\"\n",
            store = self.dir.path().join(format!("{name}.db")).display(),
            po = po.display()
        );
        if let Some(cmd) = connect_command {
            text.push_str(&format!(
                "[transport.connect_command]\ncommand = \"{cmd}\"\n"
            ));
        }
        std::fs::write(&path, text).expect("write profile");
        path
    }

    fn cli(&self, profile: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mapispool"));
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .arg("--profile")
            .arg(profile);
        c
    }

    fn run(&self, profile: &Path, args: &[&str]) -> Output {
        self.cli(profile)
            .args(args)
            .output()
            .expect("mapispool runs")
    }

    fn submit(&self, profile: &Path, to: &str, subject: &str) -> String {
        let mut child = self
            .cli(profile)
            .arg("submit")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("submit starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(
                format!("From: alice@localhost\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n")
                    .as_bytes(),
            )
            .expect("write");
        let out = child.wait_with_output().expect("submit ends");
        assert!(
            out.status.success(),
            "submit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn start_daemon(&self, profile: &Path) -> Child {
        let child = self
            .cli(profile)
            .arg("spooler")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spooler starts");
        let socket = socket_for(&self.runtime, profile);
        wait_until("the daemon's socket", || socket.exists());
        child
    }

    fn delivered(&self, address: &str) -> usize {
        std::fs::read_dir(self.dir.path().join("po").join(address).join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn socket_for(runtime: &Path, profile: &Path) -> PathBuf {
    // The same rule the library uses, with this test's runtime directory.
    let name = mapispool::ipc::socket_path(profile);
    runtime
        .join("mapispool")
        .join(name.file_name().expect("socket name"))
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_daemon_serves_many_clients_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = dir.path().join("rt");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    // SAFETY: set before this test (the only one in this binary) starts any thread that reads
    // the environment; the library finds the daemon's socket through it.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &runtime) };
    let env = Env { dir, runtime };
    let alice = env.profile("alice", None);
    let bob = env.profile("bob", None);
    assert!(
        env.run(&bob, &["validate"]).status.success(),
        "bob's mailbox"
    );

    let mut daemon = env.start_daemon(&alice);

    // A second daemon on the same profile refuses, naming the first.
    let second = env.run(&alice, &["spooler"]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already runs")
            && stderr(&second).contains(&daemon.id().to_string()),
        "{}",
        stderr(&second)
    );

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // A watcher: a library session through the daemon, advised on the status table.
        let profile = Profile::load(&alice).expect("profile");
        let watcher = Session::logon(profile).await.expect("logon");
        assert!(
            watcher.daemon_socket().is_some(),
            "the session talks to the daemon"
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut view = watcher.status_table();
        let sink_seen = seen.clone();
        view.advise(Arc::new(move |n: &mapi::table::TableNotification| {
            if let Some(PropValue::Long(code)) = n.row.get(PR_STATUS_CODE)
                && let Ok(mut s) = sink_seen.lock()
            {
                s.push(*code);
            }
        }));

        // A third client submits while the first flushes; everything goes out, once.
        let ids: Vec<String> = (0..3)
            .map(|i| env.submit(&alice, "bob@localhost", &format!("m{i}")))
            .collect();
        let flush = env.run(&alice, &["flush", "--upload", "--json"]);
        assert!(flush.status.success(), "{}", stderr(&flush));
        let report: serde_json::Value = serde_json::from_slice(&flush.stdout).expect("json");
        assert_eq!(
            report["transports"][0]["messages"].as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(env.delivered("bob@localhost"), 3);

        // The watcher saw the transport's flush bits go on and off.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let codes = seen.lock().expect("lock").clone();
            let flushing = codes
                .iter()
                .any(|c| c & (STATUS_OUTBOUND_FLUSH | STATUS_OUTBOUND_ACTIVE) != 0);
            let settled = codes.last().is_some_and(|c| c & STATUS_OUTBOUND_FLUSH == 0);
            if flushing && settled {
                break;
            }
            assert!(Instant::now() < deadline, "status changes seen: {codes:x?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // MAPI errors cross the socket intact, in the library and in the CLI.
        let store_row = watcher
            .board()
            .rows()
            .into_iter()
            .find(|r| r.get(mapi::tag::PR_RESOURCE_TYPE) == Some(&PropValue::Long(33)))
            .expect("store row");
        let store_id = match store_row.get(mapi::tag::PR_ENTRYID) {
            Some(PropValue::Binary(b)) => mapi::EntryId::from_bytes(b.clone()),
            other => panic!("store entry id: {other:?}"),
        };
        let err = watcher
            .open_status(&store_id)
            .expect("open")
            .flush_queues(None, FlushFlags::UPLOAD)
            .await
            .expect_err("the store has no FlushQueues");
        assert_eq!(err.code, MapiCode::NoSupport);
        let abort = env.run(&alice, &["abort", &ids[0]]);
        assert_eq!(abort.status.code(), Some(4), "{}", stderr(&abort));
        assert!(
            stderr(&abort).contains("MAPI_E_NOT_IN_QUEUE"),
            "{}",
            stderr(&abort)
        );
    });

    // Another user is refused even where the socket's mode would let them in.
    if mapispool::ipc::current_uid() == 0 {
        use std::os::unix::fs::PermissionsExt;
        let socket = socket_for(&env.runtime, &alice);
        for p in [env.runtime.clone(), env.runtime.join("mapispool")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_mapispool"))
            .env("XDG_RUNTIME_DIR", &env.runtime)
            .arg("--profile")
            .arg(&alice)
            .arg("status")
            .output()
            .expect("setpriv runs");
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("MAPI_E_NO_ACCESS"),
            "{}",
            stderr(&out)
        );
    } else {
        eprintln!("not root: the other-user check needs setpriv as root, and was not run");
    }

    // SIGTERM: a clean stop, the socket gone.
    signal(&daemon, "TERM");
    assert_eq!(wait_exit(&mut daemon).code(), Some(0));
    assert!(!socket_for(&env.runtime, &alice).exists());

    // SIGKILL in the middle of a flush (the transport's connect command hangs): nothing lost,
    // and after a restart the message goes out exactly once.
    let slow = env.profile("alice", Some("sleep 30"));
    let mut daemon = env.start_daemon(&slow);
    env.submit(&slow, "bob@localhost", "through a crash");
    let mut flusher = env
        .cli(&slow)
        .args(["flush", "--upload"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flush starts");
    std::thread::sleep(Duration::from_millis(500));
    signal(&daemon, "KILL");
    let _ = wait_exit(&mut daemon);
    let client = wait_exit(&mut flusher);
    assert!(!client.success(), "the flush could not finish");
    // A leftover `sleep 30` of the killed daemon may still run; it holds nothing of ours.
    let fixed = env.profile("alice", None);
    let mut daemon = env.start_daemon(&fixed);
    let before = env.delivered("bob@localhost");
    let out = env.run(&fixed, &["flush", "--upload", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.delivered("bob@localhost"),
        before + 1,
        "delivered once after the crash"
    );
    let queue = env.run(&fixed, &["queue", "--json"]);
    let queue: serde_json::Value = serde_json::from_slice(&queue.stdout).expect("json");
    assert_eq!(
        queue["rows"].as_array().map(Vec::len),
        Some(0),
        "the queue is empty"
    );
    signal(&daemon, "TERM");
    assert_eq!(wait_exit(&mut daemon).code(), Some(0));
}

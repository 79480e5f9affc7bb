//! Durability across `kill -9`, with the real binary: a submitted message survives a spooler
//! killed mid-flush and is delivered exactly once afterwards; a submit killed before its input
//! ends leaves nothing half-queued.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mapispool::Profile;
use mapispool::profile::{
    ConnectCommand, DirConfig, InboundConfig, OutboundConfig, SpoolerConfig, StoreConfig,
    TransportConfig,
};
use mapispool::transport::dir::mailbox_name;

const BIN: &str = env!("CARGO_BIN_EXE_mapispool");

struct Setup {
    dir: tempfile::TempDir,
    profile_path: PathBuf,
    post_office: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let post_office = dir.path().join("postoffice");
        // bob's mailbox, so mail to him is delivered (no profile of bob reads it).
        std::fs::create_dir_all(mailbox_dir(&post_office, "bob@localhost")).expect("bob's mailbox");
        let profile_path = dir.path().join("alice.toml");
        let setup = Setup {
            dir,
            profile_path,
            post_office,
        };
        setup.write_profile(None);
        setup
    }

    /// (Re)writes alice's profile, with `connect_command` on her transport or none.
    fn write_profile(&self, connect_command: Option<&str>) {
        let profile = Profile {
            source: Some(self.profile_path.clone()),
            groups: Vec::new(),
            web: None,
            store: StoreConfig::Path(self.dir.path().join("alice.db")),
            spooler: SpoolerConfig::default(),
            transports: vec![TransportConfig {
                name: "local".to_string(),
                address: "alice@localhost".to_string(),
                display_name: None,
                outbound: Some(OutboundConfig::Dir(DirConfig {
                    path: self.post_office.clone(),
                })),
                inbound: Some(InboundConfig::Dir(DirConfig {
                    path: self.post_office.clone(),
                })),
                connect_command: connect_command.map(|c| ConnectCommand {
                    command: c.to_string(),
                    interactive: false,
                }),
                flush_queues: true,
            }],
        };
        let text = profile.to_toml_string().expect("the profile as TOML");
        std::fs::write(&self.profile_path, text).expect("write the profile");
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--profile")
            .arg(&self.profile_path)
            .args(args)
            .env_remove("MAPISPOOL_PROFILE")
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run mapispool")
    }

    fn submit(&self, text: &str) -> Output {
        let mut child = self
            .command(&["submit", "bob@localhost"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start submit");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the message");
        child.wait_with_output().expect("submit ends")
    }

    /// The rows of the table `mapispool <args> --json` prints.
    fn json_rows(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        match value.get("rows") {
            Some(serde_json::Value::Array(rows)) => rows.clone(),
            _ => panic!("{args:?} printed {value}"),
        }
    }

    fn delivered_to_bob(&self) -> usize {
        std::fs::read_dir(mailbox_dir(&self.post_office, "bob@localhost"))
            .expect("bob's mailbox")
            .filter_map(Result::ok)
            .count()
    }
}

fn mailbox_dir(post_office: &Path, address: &str) -> PathBuf {
    post_office.join(mailbox_name(address)).join("new")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_9(child: &mut Child) {
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("reap");
    assert!(!status.success(), "it was killed, not finished: {status}");
}

const LETTER: &str = "From: <alice@localhost>\r\nTo: <bob@localhost>\r\nSubject: survives\r\nMessage-ID: <survives@test>\r\n\r\nStill here.\r\n";

#[test]
fn a_submitted_message_survives_a_spooler_killed_mid_flush_and_is_sent_once() {
    let setup = Setup::new();
    let out = setup.submit(LETTER);
    assert!(out.status.success(), "submit: {}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty(), "prints the entry ID");

    // The flush hangs in the connect command, with the message leased, until it is killed.
    let pid_file = setup.dir.path().join("connect.pid");
    setup.write_profile(Some(&format!(
        "echo $$ > '{}'; exec sleep 30",
        pid_file.display()
    )));
    let mut flush = setup
        .command(&["flush", "--upload"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flush");
    wait_for(Duration::from_secs(10), "the connect command", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim().parse::<u32>().is_ok())
    });
    kill_9(&mut flush);
    // The connect command outlives its parent; end it too (it is ours).
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
    }
    assert_eq!(
        setup.delivered_to_bob(),
        0,
        "killed before it sent anything"
    );

    setup.write_profile(None);
    let queue = setup.json_rows(&["queue"]);
    assert_eq!(queue.len(), 1, "still queued after the kill: {queue:?}");
    let out = setup.run(&["flush", "--upload"]);
    assert!(
        out.status.success(),
        "flush after the kill: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(setup.delivered_to_bob(), 1, "delivered");
    let out = setup.run(&["flush", "--upload"]);
    assert!(out.status.success());
    assert_eq!(setup.delivered_to_bob(), 1, "exactly once");
    assert!(setup.json_rows(&["queue"]).is_empty());
    assert_eq!(setup.json_rows(&["messages", "--folder", "sent"]).len(), 1);
}

#[test]
fn a_submit_killed_before_its_input_ends_queues_nothing() {
    let setup = Setup::new();
    let mut submit = setup
        .command(&["submit", "bob@localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start submit");
    let mut stdin = submit.stdin.take().expect("stdin");
    // Headers and more than one 256 KiB body chunk, so part of the body is in the store...
    stdin
        .write_all(b"From: <alice@localhost>\r\nTo: <bob@localhost>\r\nSubject: half\r\n\r\n")
        .expect("headers");
    let line = [b'x'; 1000];
    for _ in 0..600 {
        stdin.write_all(&line).expect("body");
        stdin.write_all(b"\r\n").expect("body");
    }
    stdin.flush().expect("flush");
    // ...and the rest never comes: stdin stays open until the process is killed. Killed only
    // once more than a chunk of the body is written: a body this large goes to a file of its
    // own in `<store>-bodies/tmp/` as it streams in, so the kill lands half-way through it.
    let tmp = setup.dir.path().join("alice.db-bodies").join("tmp");
    let written = || -> u64 {
        std::fs::read_dir(&tmp).map_or(0, |entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while written() < mapispool::store::BODY_CHUNK_SIZE as u64 {
        assert!(
            Instant::now() < deadline,
            "the body never reached a file in {}",
            tmp.display()
        );
        assert!(
            submit.try_wait().expect("wait").is_none(),
            "submit ended early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_9(&mut submit);
    drop(stdin);

    assert!(
        setup.json_rows(&["queue"]).is_empty(),
        "nothing half-queued"
    );
    assert!(
        setup
            .json_rows(&["messages", "--folder", "outbox"])
            .is_empty(),
        "nothing half-stored in the Outbox"
    );
    let out = setup.run(&["flush", "--upload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(setup.delivered_to_bob(), 0);
    // The killed writer's half-written file went with the next opener (its pid is gone).
    assert_eq!(
        written(),
        0,
        "a half-written body file is left in {}",
        tmp.display()
    );

    // The same message, with its end, is queued and sent: the kill was what stopped it.
    let out = setup.submit(LETTER);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(setup.json_rows(&["queue"]).len(), 1);
    let out = setup.run(&["flush", "--upload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(setup.delivered_to_bob(), 1);
}

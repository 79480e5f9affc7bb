//! The store on a full disk and on a read-only one (issue 6), with the real binary: a store on
//! a small tmpfs is filled by `submit` until it fails with `MAPI_E_NOT_ENOUGH_DISK` (or
//! `MAPI_E_DISK_ERROR`) and exit 3; nothing is half-submitted, every earlier message is intact,
//! and once there is room again submitting works. Remounted read-only, `submit` fails clearly.
//!
//! Needs `mount -t tmpfs` (root, as CI runs); elsewhere each test prints why it is skipped,
//! and under CI (env `CI` set) fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::profile::{profile_toml, send_only_dir_transport};
use common::sandbox::{Sandbox, all_output as text, run_with_stdin};

/// A tmpfs mounted on `mnt` in a sandbox, unmounted on drop.
struct Tmpfs {
    env: Sandbox,
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let env = Sandbox::new();
        let mnt = env.path("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { env, mnt }),
            Ok(o) => {
                common::ci::cannot_run(&format!(
                    "cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
                None
            }
            Err(e) => {
                common::ci::cannot_run(&format!("cannot run mount: {e}"));
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.mnt)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn profile(fs: &Tmpfs) -> PathBuf {
    // The profile and the post office stay off the small disk: only the store is on it.
    let path = fs.env.path("alice.toml");
    let text = profile_toml(
        &fs.mnt.join("store.db"),
        &send_only_dir_transport("local", "alice@localhost", &fs.env.post_office()),
    );
    std::fs::write(&path, text).expect("profile");
    path
}

fn run(fs: &Tmpfs, profile: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(fs.env.cli(profile).args(args), stdin)
}

/// Message `n`: about 100 KiB, its number in the subject and every body line.
fn message(n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <alice@localhost>\r\nTo: <bob@localhost>\r\nSubject: disk {n}\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <disk-{n}@test>\r\n\r\n"
    )
    .into_bytes();
    for line in 0..1300 {
        m.extend_from_slice(format!("{n:06} {line:06} {}\r\n", "x".repeat(64)).as_bytes());
    }
    m
}

fn rows(fs: &Tmpfs, profile: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = run(fs, profile, args, b"");
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["rows"].as_array().cloned().unwrap_or_default()
}

/// The entry IDs in a `--json` table's rows (the `PR_ENTRYID` column).
fn entry_ids(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            let id = r.get("PR_ENTRYID").or_else(|| r.get(0)).expect("entry id");
            id.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| id.to_string())
        })
        .collect()
}

#[test]
fn a_full_disk_fails_submit_clearly_and_keeps_every_earlier_message() {
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let profile = profile(&fs);
    let mut accepted: Vec<(String, usize)> = Vec::new();
    let mut failure = None;
    for n in 0..200 {
        let out = run(&fs, &profile, &["submit"], &message(n));
        if out.status.success() {
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            accepted.push((id, n));
        } else {
            failure = Some(out);
            break;
        }
    }
    let out = failure.expect("a 3 MB disk fills up within 200 messages of 100 KB");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "full after {} messages: exit {:?}: {stderr}",
        accepted.len(),
        out.status.code()
    );
    assert!(accepted.len() >= 3, "a few fit first: {}", accepted.len());
    assert_eq!(out.status.code(), Some(3), "exit 3, store: {stderr}");
    assert!(
        stderr.contains("MAPI_E_NOT_ENOUGH_DISK") || stderr.contains("MAPI_E_DISK_ERROR"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no entry ID printed for a failed submit"
    );

    // Room again (the same files, a bigger disk): exactly the accepted messages are queued
    // and in the Outbox, each whole.
    fs.remount("size=64m");
    let queue = rows(&fs, &profile, &["queue", "--json"]);
    assert_eq!(queue.len(), accepted.len(), "{queue:?}");
    let outbox = rows(&fs, &profile, &["messages", "--folder", "outbox", "--json"]);
    assert_eq!(
        outbox.len(),
        accepted.len(),
        "nothing half-submitted: {outbox:?}"
    );
    let _ = entry_ids(&queue);
    for (id, n) in &accepted {
        let out = run(&fs, &profile, &["show", id], b"");
        assert!(out.status.success(), "show {id}: {}", text(&out));
        assert!(
            out.stdout == message(*n),
            "message {n} ({id}) is not intact: {} bytes",
            out.stdout.len()
        );
    }
    let out = run(&fs, &profile, &["submit"], &message(999));
    assert!(out.status.success(), "submit with room: {}", text(&out));
    assert_eq!(
        rows(&fs, &profile, &["queue", "--json"]).len(),
        accepted.len() + 1
    );
}

#[test]
fn a_read_only_store_fails_submit_clearly_and_loses_nothing() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let profile = profile(&fs);
    let first = run(&fs, &profile, &["submit"], &message(1));
    assert!(first.status.success(), "{}", text(&first));
    let id = String::from_utf8_lossy(&first.stdout).trim().to_string();

    fs.remount("ro");
    let out = run(&fs, &profile, &["submit"], &message(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("read-only: exit {:?}: {stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(3), "exit 3, store: {stderr}");
    assert!(stderr.contains("MAPI_E_"), "a MAPI code: {stderr}");
    assert!(
        stderr.contains("store.db") || stderr.contains(&fs.mnt.display().to_string()),
        "names the store: {stderr}"
    );
    assert!(out.stdout.is_empty());

    fs.remount("rw");
    let queue = rows(&fs, &profile, &["queue", "--json"]);
    assert_eq!(queue.len(), 1, "{queue:?}");
    let out = run(&fs, &profile, &["show", &id], b"");
    assert_eq!(out.stdout, message(1));
}

#[test]
fn a_full_disk_during_a_download_says_what_was_stored_and_not_enough_disk() {
    // Issue 13.7: a download that fails part-way reports what it stored, and a full disk is
    // MAPI_E_NOT_ENOUGH_DISK (it was MAPI_E_NETWORK_ERROR, "received 0").
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let po = fs.env.post_office();
    let path = fs.env.path("bob.toml");
    std::fs::write(
        &path,
        profile_toml(
            &fs.mnt.join("store.db"),
            &common::profile::dir_transport("local", "bob@localhost", &po),
        ),
    )
    .expect("profile");
    let new = po
        .join(mapispool::transport::dir::mailbox_name("bob@localhost"))
        .join("new");
    std::fs::create_dir_all(&new).expect("mailbox");
    for n in 0..60 {
        std::fs::write(new.join(format!("{n:06}.eml")), message(n)).expect("a letter");
    }
    let out = run(&fs, &path, &["flush", "--download", "--json"], b"");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON ({e}): {}", text(&out)));
    let local = &report["transports"][0];
    let received = local["received"].as_u64().expect("received");
    let error = local["error"].as_str().unwrap_or_default().to_string();
    eprintln!("full during a download: {local}");
    assert_eq!(local["error_code"], "MAPI_E_NOT_ENOUGH_DISK", "{local}");
    assert!(received >= 3, "some fit first: {local}");
    assert!(
        error.starts_with(&format!("received {received}, then failed: ")),
        "{error}"
    );

    // Room again: the rest comes, nothing twice.
    fs.remount("size=64m");
    let out = run(&fs, &path, &["flush", "--download", "--json"], b"");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(rows(&fs, &path, &["messages", "--json"]).len(), 60);
}

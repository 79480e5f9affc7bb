//! Private files: every file and directory that holds mail (the store, its WAL and SHM, the
//! daemon's lock, the post office) is made 0600/0700 whatever the umask, because any local user
//! could otherwise read every message; and [`warnings`] names existing ones that are looser,
//! for `validate`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::profile::{InboundConfig, OutboundConfig, Profile, StoreConfig};

/// The mode of a new directory that holds mail.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a new file that holds mail.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700 (the umask can only narrow it).
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// [`create_dir_all`] for async callers.
pub async fn create_dir_all_async(dir: &Path) -> std::io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .await
}

/// Creates the empty file `path` with mode 0600 unless it exists. SQLite gives a new database
/// 0644 less the umask, and its `-wal` and `-shm` files the database file's mode; a store file
/// made 0600 first keeps all three private.
pub fn create_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The existing mail files and directories of `profile` that other users may read or enter,
/// one line each with the fix: the store, its `-wal`, `-shm` and `.lock`, and each post-office
/// directory (the root, `tmp`, each mailbox and its `new`). Missing ones are skipped.
pub fn warnings(profile: &Profile) -> Vec<String> {
    let mut files = Vec::new();
    if let StoreConfig::Path(store) = &profile.store {
        files.push(store.clone());
        for suffix in ["-wal", "-shm", ".lock"] {
            let mut p = store.clone().into_os_string();
            p.push(suffix);
            files.push(PathBuf::from(p));
        }
    }
    let mut dirs = Vec::new();
    for t in &profile.transports {
        let outbound = match &t.outbound {
            Some(OutboundConfig::Dir(d)) => Some(&d.path),
            _ => None,
        };
        let inbound = match &t.inbound {
            Some(InboundConfig::Dir(d)) => Some(&d.path),
            _ => None,
        };
        for root in outbound.into_iter().chain(inbound) {
            if !dirs.contains(root) {
                dirs.push(root.clone());
            }
        }
    }
    let mut found = Vec::new();
    for file in &files {
        if let Some(mode) = loose_mode(file) {
            found.push(format!(
                "{} is {mode:o}: other users can read it; run `chmod 600 {}`",
                file.display(),
                file.display()
            ));
        }
    }
    for root in &dirs {
        let mut post_office = vec![root.clone(), root.join("tmp")];
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.file_name().is_some_and(|n| n != "tmp") && path.is_dir() {
                    post_office.push(path.join("new"));
                    post_office.push(path);
                }
            }
        }
        post_office.sort();
        for dir in post_office {
            if let Some(mode) = loose_mode(&dir) {
                found.push(format!(
                    "{} is {mode:o}: other users can read the mail in it; run `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                ));
            }
        }
    }
    found
}

/// The permission bits of `path` if it exists and grants anything to group or others.
fn loose_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::symlink_metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o077 != 0).then_some(mode)
}

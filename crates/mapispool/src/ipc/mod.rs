//! The spooler daemon's local API: one spooler process per profile, any number of clients
//! (the CLI, scripts, a mail client) talking to it over a Unix socket.
//!
//! - this file: where the socket lives, and the lock that keeps a second daemon away;
//! - `wire.rs`: MAPI rows and errors as JSON that loses nothing;
//! - `server.rs`: the versioned HTTP API (axum) the daemon serves;
//! - `limits.rs`: what one client may cost it (a connection cap, an idle limit);
//! - `client.rs`: what a `Session` uses when a daemon runs.
//!
//! Security: the socket's directory is 0700 and the socket 0600, and the server also checks
//! each caller's uid (`SO_PEERCRED`) against its own, so no other user reaches the queue even
//! where file modes are relaxed.

pub mod client;
mod limits;
pub mod server;
pub mod wire;

use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use mapi::{MapiError, MapiResult};

/// The API version in every path (`/v1/...`): a client refuses a daemon that does not speak it.
pub const API_VERSION: u32 = 1;

/// The directory for sockets and locks: `$XDG_RUNTIME_DIR/mapispool`, else
/// `/tmp/mapispool-<uid>` (private to this user either way).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("mapispool"),
        _ => std::env::temp_dir().join(format!("mapispool-{}", current_uid())),
    }
}

/// The socket of the daemon for the profile at `profile_path`: one per profile, named by a
/// hash of the profile's absolute path so it stays short (Unix socket paths are limited).
pub fn socket_path(profile_path: &Path) -> PathBuf {
    let absolute = std::path::absolute(profile_path).unwrap_or_else(|_| profile_path.to_path_buf());
    let mut h = DefaultHasher::new();
    absolute.hash(&mut h);
    runtime_dir().join(format!("spooler-{:016x}.sock", h.finish()))
}

/// This process's effective uid.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Holds the daemon's lock for as long as it lives: a second daemon on the same profile fails
/// to take it and says which process holds it.
pub struct DaemonLock {
    _file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// Takes the lock beside `socket`, creating the runtime directory (0700) if needed. Waits
    /// (asynchronously, a few times 20 ms) while a client's brief probe holds it.
    ///
    /// Errors: `MAPI_E_BUSY` when another spooler holds it; `MAPI_E_NO_ACCESS` when the
    /// directory cannot be made private.
    pub async fn acquire(socket: &Path) -> MapiResult<DaemonLock> {
        let dir = socket
            .parent()
            .ok_or_else(|| MapiError::invalid_parameter("the socket path has no directory"))?;
        create_private_dir(dir)?;
        let path = socket.with_extension("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| MapiError::no_access(format!("cannot open {}: {e}", path.display())))?;
        // Clients probe the lock with a brief shared lock (ipc::client); a few tries keep such
        // a probe from being taken for a running daemon.
        let mut outcome = file.try_lock();
        for _ in 0..10 {
            if !matches!(outcome, Err(std::fs::TryLockError::WouldBlock)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            outcome = file.try_lock();
        }
        match outcome {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(MapiError::busy(format!(
                    "a spooler already runs for this profile (pid {}); stop it first, or use it: clients connect to it by themselves",
                    holder.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(MapiError::no_access(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
        use std::io::{Seek, Write};
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DaemonLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` with mode 0700, or checks that an existing one belongs to us and is private.
fn create_private_dir(dir: &Path) -> MapiResult<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| MapiError::no_access(format!("cannot create {}: {e}", dir.display())))?;
    }
    let meta = std::fs::metadata(dir)
        .map_err(|e| MapiError::no_access(format!("cannot read {}: {e}", dir.display())))?;
    if meta.uid() != current_uid() {
        return Err(MapiError::no_access(format!(
            "{} belongs to another user; set XDG_RUNTIME_DIR to a directory of your own",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            MapiError::no_access(format!("cannot make {} private: {e}", dir.display()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("rt").join("spooler-1.sock");
        let first = DaemonLock::acquire(&socket).await.expect("first");
        let second = DaemonLock::acquire(&socket).await.err().expect("refused");
        assert_eq!(second.code, mapi::MapiCode::Busy);
        assert!(second.cause.contains(&std::process::id().to_string()));
        drop(first);
        DaemonLock::acquire(&socket).await.expect("free again");
    }

    /// The retries while a probe holds the lock wait on the runtime's clock, not by putting
    /// the thread to sleep: on a current-thread runtime, another task still runs meanwhile.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_probe_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("rt").join("spooler-1.sock");
        let held = DaemonLock::acquire(&socket).await.expect("first");
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let refused = DaemonLock::acquire(&socket).await.err().expect("refused");
        assert_eq!(refused.code, mapi::MapiCode::Busy);
        // Ten retries 20 ms apart: the ticker ran through them.
        assert!(
            ticks.load(std::sync::atomic::Ordering::SeqCst) >= 30,
            "{}",
            ticks.load(std::sync::atomic::Ordering::SeqCst)
        );
        ticker.abort();
        drop(held);
    }

    #[test]
    fn sockets_are_per_profile_and_short() {
        let a = socket_path(Path::new("/home/x/a.toml"));
        let b = socket_path(Path::new("/home/x/b.toml"));
        assert_ne!(a, b);
        assert!(a.file_name().map(|n| n.len()).unwrap_or(99) < 40);
    }
}

//! The spooler daemon's local API: one spooler process per profile, any number of clients
//! (the CLI, scripts, a mail client) talking to it over a Unix socket.
//!
//! - this file: where the socket lives, and the lock beside the store that keeps a second
//!   daemon away and tells clients where the running one listens;
//! - `wire.rs`: MAPI rows and errors as JSON that loses nothing;
//! - `server.rs`: the versioned HTTP API (axum) the daemon serves;
//! - `limits.rs`: what one client may cost it (a connection cap, an idle limit);
//! - `client.rs`: what a `Session` uses when a daemon runs.
//!
//! One daemon per store: the daemon holds an exclusive `flock` on `<store>.lock` and writes its
//! pid and socket path into it. Any process with the profile finds the store, so it finds the
//! daemon the same way whatever its environment (`XDG_RUNTIME_DIR` set or not, the profile
//! reached through a symlink or not).
//!
//! A PostgreSQL store has no file to lock beside, and is meant to be shared by several
//! daemons (nodes, on one machine or many): there the lock is one per profile and database,
//! `<runtime dir>/db-<hash>.lock`, the hash over the profile's canonical path and the URL
//! without its password ([`daemon_anchor`]). Clients then find the daemon only with the same
//! runtime directory (`XDG_RUNTIME_DIR`) as the daemon's.
//!
//! Security: the socket's directory is 0700 and the socket 0600, and the server also checks
//! each caller's uid (`SO_PEERCRED`) against its own, so no other user reaches the queue even
//! where file modes are relaxed.

pub mod client;
mod limits;
pub mod server;
pub mod wire;

use std::fs::{File, OpenOptions};
use std::hash::Hasher;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mapi::{MapiError, MapiResult};

use crate::profile::{Profile, StoreConfig};

/// The API version in every path (`/v1/...`): a client refuses a daemon that does not speak it.
pub const API_VERSION: u32 = 1;

/// The directory for daemon sockets: `$XDG_RUNTIME_DIR/mapispool`; without that variable
/// `/run/user/<uid>/mapispool` when `/run/user/<uid>` exists, is ours and is 0700 (what
/// systemd-logind makes, and what `XDG_RUNTIME_DIR` usually names), else
/// `$TMPDIR/mapispool-<uid>` (`/tmp/mapispool-<uid>`). The daemon makes it 0700 and refuses one
/// that belongs to another user. Clients never need this: they read the socket's path from the
/// store's lock ([`lock_path`]).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("mapispool"),
        _ => {
            let run_user = PathBuf::from(format!("/run/user/{}", current_uid()));
            if is_private_dir_of_ours(&run_user) {
                run_user.join("mapispool")
            } else {
                std::env::temp_dir().join(format!("mapispool-{}", current_uid()))
            }
        }
    }
}

/// The store path every process agrees on: symlinks resolved, so two profiles (or two paths to
/// one profile) naming the same store name the same daemon. A store not yet created resolves
/// through its directory.
pub fn canonical_store(store: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(store) {
        return path;
    }
    let absolute = std::path::absolute(store).unwrap_or_else(|_| store.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// The file name of the socket of the daemon serving `store`: a hash of the canonical store
/// path keeps it short (Unix socket paths are limited to ~108 bytes). FNV-1a over the path's
/// bytes, not std's `DefaultHasher` (whose algorithm may change between Rust releases, so a
/// client and a daemon built by different compilers would look in different places) and not
/// `Path`'s `Hash` impl (which is not specified either).
pub fn socket_name(store: &Path) -> String {
    let mut h = fnv::FnvHasher::default();
    h.write(canonical_store(store).as_os_str().as_bytes());
    format!("spooler-{:016x}.sock", h.finish())
}

/// Where a daemon started now would listen for `store` (see [`runtime_dir`]).
pub fn socket_path(store: &Path) -> PathBuf {
    runtime_dir().join(socket_name(store))
}

/// The daemon's lock beside the store: `<store>.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = canonical_store(store).into_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// The path that stands for `profile`'s store in the daemon's lock and socket names: the
/// SQLite file itself; for a PostgreSQL store `<runtime dir>/db-<hash>`, FNV-1a over the
/// profile's canonical path and the URL without its password, so that each profile runs one
/// daemon on a database and several profiles (or machines) can each run theirs on the same one.
pub fn daemon_anchor(profile: &Profile) -> PathBuf {
    daemon_anchor_in(profile, &runtime_dir())
}

/// [`daemon_anchor`] with `runtime` as the runtime directory (what [`runtime_dir`] gives).
pub fn daemon_anchor_in(profile: &Profile, runtime: &Path) -> PathBuf {
    match &profile.store {
        StoreConfig::Path(path) => path.clone(),
        StoreConfig::Url { url, .. } => {
            let mut h = fnv::FnvHasher::default();
            if let Some(source) = &profile.source {
                h.write(canonical_store(source).as_os_str().as_bytes());
            }
            h.write(b"\n");
            h.write(crate::store::postgres::redact(url).as_bytes());
            runtime.join(format!("db-{:016x}", h.finish()))
        }
    }
}

/// How messages name `profile`'s store: its canonical path, or its URL without a password.
pub fn store_label(profile: &Profile) -> String {
    match &profile.store {
        StoreConfig::Path(path) => canonical_store(path).display().to_string(),
        StoreConfig::Url { url, .. } => crate::store::postgres::redact(url),
    }
}

/// This process's effective uid.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn is_private_dir_of_ours(dir: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == current_uid() && m.permissions().mode() & 0o077 == 0
    })
}

/// What the lock beside a store says about its daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    /// Nobody holds the lock: no daemon serves the store.
    None,
    /// A daemon holds it; its pid and socket, once it has written them (a daemon that is just
    /// starting may not have yet).
    Running {
        pid: Option<u32>,
        socket: Option<PathBuf>,
    },
    /// The lock exists but cannot be probed (not ours to open): we cannot tell; why.
    Unknown(String),
}

/// Probes the lock beside `store` with a brief shared lock (a daemon holds it exclusively).
pub fn daemon_state(store: &Path) -> DaemonState {
    let lock = lock_path(store);
    let file = match File::open(&lock) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DaemonState::None,
        Err(e) => return DaemonState::Unknown(format!("cannot open {}: {e}", lock.display())),
    };
    match file.try_lock_shared() {
        // We got it, so nobody holds it; dropping the file releases it at once.
        Ok(()) => DaemonState::None,
        Err(std::fs::TryLockError::WouldBlock) => {
            let (pid, socket) = read_holder(&std::fs::read_to_string(&lock).unwrap_or_default());
            DaemonState::Running { pid, socket }
        }
        Err(std::fs::TryLockError::Error(e)) => {
            DaemonState::Unknown(format!("cannot lock {}: {e}", lock.display()))
        }
    }
}

/// The lock file's text: the pid on the first line, the socket path on the second.
fn read_holder(text: &str) -> (Option<u32>, Option<PathBuf>) {
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let socket = lines
        .next()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(PathBuf::from);
    (pid, socket)
}

/// Holds the daemon's lock beside the store for as long as it lives: a second daemon on the
/// same store, whatever profile path or environment it was started with, fails to take it and
/// says which process holds it and where it listens.
pub struct DaemonLock {
    _file: File,
    path: PathBuf,
}

impl DaemonLock {
    /// Takes the lock beside `store` (created 0600) and records `socket` in it for clients.
    /// Waits (asynchronously, a few times 20 ms) while a client's brief probe holds it.
    ///
    /// Errors: `MAPI_E_BUSY` when another spooler holds it; `MAPI_E_NO_ACCESS` when it cannot
    /// be created or locked.
    pub async fn acquire(store: &Path, socket: &Path) -> MapiResult<DaemonLock> {
        let label = canonical_store(store).display().to_string();
        Self::acquire_named(store, socket, &label).await
    }

    /// [`DaemonLock::acquire`] for the anchor of a store (see [`daemon_anchor`]) that messages
    /// call `label`.
    pub async fn acquire_named(store: &Path, socket: &Path, label: &str) -> MapiResult<DaemonLock> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let path = lock_path(store);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    MapiError::no_access(format!("cannot create {}: {e}", dir.display()))
                })?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| MapiError::no_access(format!("cannot open {}: {e}", path.display())))?;
        // Clients probe the lock with a brief shared lock (`daemon_state`); a few tries keep
        // such a probe from being taken for a running daemon.
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
                let (pid, socket) =
                    read_holder(&std::fs::read_to_string(&path).unwrap_or_default());
                let pid = pid.map_or_else(|| "unknown pid".to_string(), |p| format!("pid {p}"));
                let socket = socket.map_or_else(
                    || "starting".to_string(),
                    |s| format!("listening on {}", s.display()),
                );
                return Err(MapiError::busy(format!(
                    "a spooler daemon already serves the store {label} for this profile ({pid}, {socket}; lock {}); stop it first, or use it: clients connect to it by themselves",
                    path.display()
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
        let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| {
            writeln!(file, "{}", std::process::id())?;
            file.write_all(socket.as_os_str().as_bytes())?;
            writeln!(file)
        });
        written.map_err(|e| {
            MapiError::no_access(format!(
                "cannot record the daemon in {}: {e}",
                path.display()
            ))
        })?;
        Ok(DaemonLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` with mode 0700, or checks that an existing one is a directory (not a
/// symlink) that belongs to us, and makes it private.
pub(crate) fn create_private_dir(dir: &Path) -> MapiResult<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| MapiError::no_access(format!("cannot create {}: {e}", dir.display())))?;
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| MapiError::no_access(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != current_uid() {
        return Err(MapiError::no_access(format!(
            "{} is not a directory of this user's; remove it, or set XDG_RUNTIME_DIR to a directory of your own",
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
        let store = dir.path().join("store.db");
        let socket = dir.path().join("rt").join("spooler-1.sock");
        let first = DaemonLock::acquire(&store, &socket).await.expect("first");
        assert_eq!(
            daemon_state(&store),
            DaemonState::Running {
                pid: Some(std::process::id()),
                socket: Some(socket.clone())
            }
        );
        let second = DaemonLock::acquire(&store, &socket)
            .await
            .err()
            .expect("refused");
        assert_eq!(second.code, mapi::MapiCode::Busy);
        assert!(
            second
                .cause
                .contains(&format!("pid {}", std::process::id()))
        );
        assert!(second.cause.contains(&socket.display().to_string()));
        drop(first);
        assert_eq!(daemon_state(&store), DaemonState::None);
        DaemonLock::acquire(&store, &socket)
            .await
            .expect("free again");
    }

    /// The retries while a probe holds the lock wait on the runtime's clock, not by putting
    /// the thread to sleep: on a current-thread runtime, another task still runs meanwhile.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_probe_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store.db");
        let socket = dir.path().join("rt").join("spooler-1.sock");
        let held = DaemonLock::acquire(&store, &socket).await.expect("first");
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let refused = DaemonLock::acquire(&store, &socket)
            .await
            .err()
            .expect("refused");
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
    fn a_url_store_locks_per_profile_and_database_whatever_the_password() {
        let profile = |source: &str, url: &str| {
            Profile {
            source: Some(PathBuf::from(source)),
            store: StoreConfig::Url {
                url: url.to_owned(),
                credential: None,
            },
            ..Profile::from_str_at(
                "[[transport]]\nname = \"t\"\naddress = \"t@x\"\n[transport.outbound]\nkind = \"dir\"\npath = \"/po\"\n",
                Path::new("/p/x.toml"),
            )
            .expect("a profile")
        }
        };
        let rt = Path::new("/nonexistent-rt");
        let a = daemon_anchor_in(&profile("/p/a.toml", "postgres://u@h:5432/mail"), rt);
        assert_eq!(
            a,
            daemon_anchor_in(&profile("/p/a.toml", "postgres://u:secret@h:5432/mail"), rt),
            "the password does not name another daemon"
        );
        assert!(!a.display().to_string().contains("secret"));
        assert_ne!(
            a,
            daemon_anchor_in(&profile("/p/b.toml", "postgres://u@h:5432/mail"), rt),
            "another profile runs its own daemon"
        );
        assert_ne!(
            a,
            daemon_anchor_in(&profile("/p/a.toml", "postgres://u@h:5432/other"), rt),
            "another database is another store"
        );
        assert!(a.starts_with(rt));
    }

    #[test]
    fn sockets_are_per_store_and_short() {
        let a = socket_name(Path::new("/nonexistent-x/a.db"));
        let b = socket_name(Path::new("/nonexistent-x/b.db"));
        assert_ne!(a, b);
        assert!(a.len() < 40);
    }

    #[test]
    fn the_socket_name_is_fnv1a_of_the_canonical_path_and_stable() {
        // FNV-1a 64 of "/nonexistent-x/a.db", computed by hand from the published algorithm
        // (offset basis 0xcbf29ce484222325, prime 0x100000001b3): a daemon and a client built
        // by different compilers must agree on it.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in b"/nonexistent-x/a.db" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        assert_eq!(
            socket_name(Path::new("/nonexistent-x/a.db")),
            format!("spooler-{h:016x}.sock")
        );
    }

    #[test]
    fn a_symlinked_store_names_the_same_socket_and_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("dir");
        std::os::unix::fs::symlink(&real, dir.path().join("alias")).expect("symlink");
        let a = real.join("store.db");
        let b = dir.path().join("alias").join("store.db");
        assert_eq!(socket_name(&a), socket_name(&b));
        assert_eq!(lock_path(&a), lock_path(&b));
    }

    #[test]
    fn an_existing_runtime_dir_must_be_ours_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = dir.path().join("rt");
        std::fs::create_dir(&rt).expect("dir");
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir(&rt).expect("ours");
        let mode = std::fs::metadata(&rt).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&rt, &link).expect("symlink");
        let refused = create_private_dir(&link).expect_err("a symlink is refused");
        assert!(refused.cause.contains("not a directory of this user"));
    }
}

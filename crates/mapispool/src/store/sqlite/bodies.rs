//! Large bodies in files beside the store, named by their SHA-256.
//!
//! Why: SQLite writes every page twice, into the WAL and again into the database file at the
//! checkpoint, so a 10 MB body cost 20 MB of writes (and the WAL's fsync). A body in a file of
//! its own is written once, fsynced once, and read with `pread`. Small bodies stay in the
//! database (`body_chunks`), where one commit covers a whole group of them; a file costs two
//! fsyncs of its own (the file, then its directory) whatever its size, which only pays for
//! bodies of at least [`FILE_BODY_AT`] bytes.
//!
//! Layout: `<store>-bodies/` (0700) holds one file per distinct body (0600), named by the
//! lower-case hex SHA-256 of its bytes, and `tmp/` for bodies still being written. Identical
//! bodies share one file; a message row names its file in `messages.body_file`.
//!
//! Crash safety, the order of a write: the bytes go to `tmp/`, hashed as they pass, and are
//! fsynced; then, inside the write transaction that records the message (under SQLite's write
//! lock), the file is renamed to its name and the directory fsynced; then the transaction
//! commits. A crash before the rename leaves a file in `tmp/` (removed once stale); between the
//! rename and the commit, a file no row names (an orphan). Orphans are collected under the same
//! write lock (at open, and after a message with a file is deleted): a file is removed only if
//! no row names it, and since renames happen only under that lock, no write in progress can be
//! between its rename and its commit at that moment. A rename onto an existing name (the same
//! body again) replaces one complete, fsynced file by another with the same bytes.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mapi::{MapiError, MapiResult};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::private::FILE_MODE;
use crate::store::{BODY_CHUNK_SIZE, StoreError};

/// Bodies of at least this many bytes go to a file; smaller ones stay in the database. One
/// chunk: a body that fits one `body_chunks` row is one insert in a group-committed
/// transaction, while anything larger was already streamed chunk by chunk, each chunk written
/// twice (WAL, checkpoint). See BENCHMARKS.md for the measurement.
pub(crate) const FILE_BODY_AT: usize = BODY_CHUNK_SIZE;

/// How much of a large body is written before the kernel is asked to start writing it back
/// (see [`start_writeback`]).
const WRITEBACK_EVERY: usize = 2 * 1024 * 1024;

/// Asks the kernel to start writing back what is written of `file` so far, without waiting
/// for it: the disk works while the rest of the body arrives, and the fsync at the end (which
/// alone makes it durable) has only the last part left to wait for. A 10 MiB body's fsync was
/// 7.5-8.5 ms of idle time per message before (bench/notes/imap3.md). Only a hint: a failure
/// changes nothing, the fsync still reports any write error.
async fn start_writeback(file: &tokio::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(file) = file.try_clone().await else {
            return;
        };
        let file = file.into_std().await;
        // On the blocking pool: the call only queues the writes, but may wait for room in a
        // busy device's queue.
        let _ = tokio::task::spawn_blocking(move || {
            // SAFETY: the descriptor belongs to `file`, open for the whole call; the call
            // reads no memory of ours.
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) }
        })
        .await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// The directory of a store's body files, and what can be done in it.
#[derive(Debug, Clone)]
pub(crate) struct BodyFiles {
    dir: PathBuf,
}

/// A body written and fsynced in `tmp/`, not yet under its name. Dropped unpublished, its
/// temporary file is removed.
#[derive(Debug)]
pub(crate) struct PendingBody {
    tmp: Option<PathBuf>,
    /// The hex SHA-256 of the bytes: the file's name once published.
    pub name: String,
    pub size: u64,
}

impl Drop for PendingBody {
    fn drop(&mut self) {
        // A plain unlink, also on the runtime: it does not wait on the disk (no fsync), and a
        // failed write or a duplicate must not leave its bytes behind until the next open.
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl PendingBody {
    /// Whether [`BodyFiles::publish`] has moved it under its name.
    pub fn is_published(&self) -> bool {
        self.tmp.is_none()
    }
}

/// Whether `name` is one of ours: 64 lower-case hex digits.
pub(crate) fn is_body_name(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BodyFiles {
    /// The body directory of the store file `store`: `<store>-bodies`, like SQLite's `-wal`.
    pub fn beside(store: &Path) -> BodyFiles {
        let mut dir = store.as_os_str().to_owned();
        dir.push("-bodies");
        BodyFiles {
            dir: PathBuf::from(dir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn io(&self, what: &str) -> impl FnOnce(io::Error) -> MapiError + use<> {
        let what = what.to_owned();
        let path = self.dir.clone();
        move |source| StoreError::Io { what, path, source }.into()
    }

    /// Writes `first`, then the rest of `body`, to a new file in `tmp/` (0600), hashing as it
    /// goes, and fsyncs it. Errors: reading `body` fails (`MAPI_E_CALL_FAILED`, the file is
    /// removed), or the disk ([`StoreError::Io`]: `MAPI_E_NOT_ENOUGH_DISK` when full).
    pub async fn write(
        &self,
        first: &[u8],
        mut body: impl AsyncRead + Unpin,
    ) -> MapiResult<PendingBody> {
        let tmp_dir = self.tmp_dir();
        crate::private::create_dir_all_async(&tmp_dir)
            .await
            .map_err(self.io("creating the body directory"))?;
        let tmp = tmp_dir.join(format!(
            "{}.{}.{:x}",
            std::process::id(),
            next_serial(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .await
            .map_err(self.io("creating a body file"))?;
        // From here on, a failure removes the file (the guard's Drop).
        let mut pending = PendingBody {
            tmp: Some(tmp),
            name: String::new(),
            size: 0,
        };
        let mut file = tokio::io::BufWriter::with_capacity(BODY_CHUNK_SIZE, file);
        let mut hash = Sha256::new();
        hash.update(first);
        file.write_all(first)
            .await
            .map_err(self.io("writing a body file"))?;
        let mut size = first.len() as u64;
        let mut unsynced = first.len();
        let mut buf = vec![0u8; BODY_CHUNK_SIZE];
        // The hash of each part is taken on the blocking pool while the next part is read:
        // SHA-256 was a third of a large download's CPU, on the thread that also reads the
        // connection. Two buffers take turns; the hasher travels with the one being hashed.
        let mut hashing: Option<tokio::task::JoinHandle<(Sha256, Vec<u8>)>> = None;
        let mut idle = Some((hash, vec![0u8; BODY_CHUNK_SIZE]));
        loop {
            let n = body.read(&mut buf).await.map_err(|e| {
                MapiError::call_failed(format!(
                    "reading the message to store (after {size} bytes): {e}"
                ))
            })?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .await
                .map_err(self.io("writing a body file"))?;
            let (mut hash, spare) = hasher_back(&mut hashing, &mut idle).await?;
            let part = std::mem::replace(&mut buf, spare);
            hashing = Some(tokio::task::spawn_blocking(move || {
                hash.update(&part[..n]);
                (hash, part)
            }));
            size += n as u64;
            unsynced += n;
            if unsynced >= WRITEBACK_EVERY {
                unsynced = 0;
                file.flush().await.map_err(self.io("writing a body file"))?;
                start_writeback(file.get_ref()).await;
            }
        }
        file.flush().await.map_err(self.io("writing a body file"))?;
        file.into_inner()
            .sync_all()
            .await
            .map_err(self.io("syncing a body file"))?;
        let (hash, _) = hasher_back(&mut hashing, &mut idle).await?;
        pending.name = hex(&hash.finalize());
        pending.size = size;
        Ok(pending)
    }

    /// Moves a written body under its name. Call it inside the write transaction that records
    /// the message (see the module's doc), then [`BodyFiles::sync_dir`] before the commit.
    pub async fn publish(&self, pending: &mut PendingBody) -> MapiResult<()> {
        let Some(tmp) = pending.tmp.as_ref() else {
            return Ok(());
        };
        tokio::fs::rename(tmp, self.path_of(&pending.name))
            .await
            .map_err(self.io("moving a body file into place"))?;
        pending.tmp = None;
        Ok(())
    }

    /// Fsyncs the directory, so that the names given by [`BodyFiles::publish`] survive a power
    /// cut. One call covers every rename before it.
    pub async fn sync_dir(&self) -> MapiResult<()> {
        let dir = tokio::fs::File::open(&self.dir)
            .await
            .map_err(self.io("opening the body directory"))?;
        dir.sync_all()
            .await
            .map_err(self.io("syncing the body directory"))
    }

    /// Chunk `seq` ([`BODY_CHUNK_SIZE`] bytes from `seq * BODY_CHUNK_SIZE`) of body `name`, or
    /// `None` past its end. A missing file is `NotFound` (the message was deleted meanwhile).
    pub async fn read_chunk(&self, name: &str, seq: u32) -> io::Result<Option<Vec<u8>>> {
        let path = self.path_of(name);
        let task = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path)?;
            let mut offset = u64::from(seq) * BODY_CHUNK_SIZE as u64;
            let mut out = vec![0u8; BODY_CHUNK_SIZE];
            let mut filled = 0;
            while filled < out.len() {
                let n = file.read_at(&mut out[filled..], offset)?;
                if n == 0 {
                    break;
                }
                filled += n;
                offset += n as u64;
            }
            out.truncate(filled);
            Ok((filled > 0).then_some(out))
        });
        task.await.map_err(io::Error::other)?
    }

    /// The names of the body files present (not those in `tmp/`), and removes the files in
    /// `tmp/` that a crash left: those whose writer (the pid their name starts with) is gone,
    /// and any older than `stale`. Empty when there is no directory.
    pub async fn scan(&self, stale: Duration) -> MapiResult<Vec<String>> {
        let dir = self.dir.clone();
        let tmp = self.tmp_dir();
        let task = tokio::task::spawn_blocking(move || -> io::Result<Vec<String>> {
            let mut names = Vec::new();
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str().filter(|n| is_body_name(n)) {
                    names.push(name.to_owned());
                }
            }
            if let Ok(entries) = std::fs::read_dir(&tmp) {
                let cutoff = SystemTime::now() - stale;
                for entry in entries.flatten() {
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t < cutoff);
                    if old || writer_is_gone(&entry.file_name()) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Ok(names)
        });
        task.await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(self.io("listing the body directory"))
    }

    /// Removes body `name`; one already gone is fine.
    pub async fn remove(&self, name: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path_of(name)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The mode bits of the directory and of body `name` (for tests and `validate`).
    #[cfg(test)]
    pub fn modes(&self, name: &str) -> io::Result<(u32, u32)> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::fs::metadata(&self.dir)?.permissions().mode() & 0o7777;
        let file = std::fs::metadata(self.path_of(name))?.permissions().mode() & 0o7777;
        Ok((dir, file))
    }

    /// Whether body `name` is on disk.
    #[cfg(test)]
    pub fn exists(&self, name: &str) -> bool {
        self.path_of(name).exists()
    }

    /// How many files sit in `tmp/`.
    #[cfg(test)]
    pub fn tmp_count(&self) -> usize {
        std::fs::read_dir(self.tmp_dir()).map_or(0, |d| d.count())
    }
}

/// Whether the process that named a temporary file (`PID.…`, see [`BodyFiles::write`]) no
/// longer exists. A reused pid only keeps the file longer (until it is stale).
fn writer_is_gone(name: &std::ffi::OsStr) -> bool {
    let Some(pid) = name
        .to_str()
        .and_then(|n| n.split('.').next())
        .and_then(|p| p.parse::<libc::pid_t>().ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks whether the process exists; no signal is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// A per-process counter for temporary names: with the pid and the time, unique among
/// concurrent writers of one store.
fn next_serial() -> u64 {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The hasher and a free buffer of a body file being written: from the part being hashed on
/// the blocking pool (once that is done), or the idle pair before the first part.
async fn hasher_back(
    hashing: &mut Option<tokio::task::JoinHandle<(Sha256, Vec<u8>)>>,
    idle: &mut Option<(Sha256, Vec<u8>)>,
) -> MapiResult<(Sha256, Vec<u8>)> {
    match hashing.take() {
        Some(job) => job.await.map_err(|e| MapiError::call_failed(e.to_string())),
        None => idle
            .take()
            .ok_or_else(|| MapiError::call_failed("the body's hash went missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_hex_sha256() {
        let name = hex(&Sha256::digest(b"abc"));
        assert_eq!(
            name,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_body_name(&name));
        assert!(!is_body_name(&name.to_uppercase()));
        assert!(!is_body_name("tmp"));
        assert!(!is_body_name(&name[1..]));
    }

    #[tokio::test]
    async fn a_failed_read_leaves_no_file() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::Error::other("pipe broke")))
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let files = BodyFiles::beside(&dir.path().join("store.db"));
        let err = files
            .write(b"first bytes", Broken)
            .await
            .expect_err("the read fails");
        assert!(err.to_string().contains("after 11 bytes"), "{err}");
        assert_eq!(files.tmp_count(), 0);
        let ok = files.write(b"x", &b"y"[..]).await.expect("write");
        assert_eq!(files.tmp_count(), 1);
        assert_eq!(ok.name, hex(&Sha256::digest(b"xy")));
        drop(ok);
        assert_eq!(files.tmp_count(), 0);
    }
}

//! SQLite's own unix VFS with one change: a WAL file that exists already is opened without
//! `SQLITE_OPEN_CREATE`.
//!
//! Why: the unix VFS marks a WAL opened with `SQLITE_OPEN_CREATE` (as SQLite always opens it)
//! for a directory sync, so the first WAL sync of every connection also fsyncs the store's
//! directory, in case the WAL was just created. For a process that opens the store, commits
//! one message and exits (`mapispool submit`, `sendmail`), that is a second fsync per message,
//! as slow as the commit's own (measured: 0.1 to 4 ms each). The WAL normally outlives such a
//! process (submit's connections neither checkpoint nor delete it on close), so the directory
//! entry it would sync was made durable long before, by the process that created the WAL.
//!
//! A WAL that is missing is still created with `SQLITE_OPEN_CREATE`, so its directory is synced
//! with its first commit, exactly as before. What is left is a WAL whose creator died before its
//! first commit reached the disk, then reused by another process: that process's fsync of the
//! WAL is what makes the entry durable, which Linux's journaling filesystems (ext4, XFS, btrfs)
//! do for a file's own fsync; on them this gives up no durability.

use std::ffi::{CStr, c_char, c_int};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use libsqlite3_sys as ffi;

/// The name the store's connections ask for (`SqliteConnectOptions::vfs`).
pub(super) const NAME: &str = "mapispool-unix";
const NAME_C: &CStr = c"mapispool-unix";

/// The VFS this one wraps: SQLite's default, found at registration.
static BASE: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

/// Registers the VFS once per process (not as the default); later calls return the first
/// call's answer. An error says why the store cannot be opened with it.
pub(super) fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find initializes SQLite if needed and returns the default
            // VFS, which lives as long as the process (the unix VFSes are static).
            let base = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
            if base.is_null() {
                return Err("SQLite has no default VFS".into());
            }
            // SAFETY: `base` is non-null and points at a registered, never-freed VFS.
            let mut vfs: ffi::sqlite3_vfs = unsafe { *base };
            if vfs.xOpen.is_none() {
                return Err("SQLite's default VFS has no xOpen".into());
            }
            BASE.store(base, Ordering::Release);
            // Everything else is the base's, `pAppData` included: the unix VFS's methods read
            // their locking style from it.
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.xOpen = Some(open);
            // Leaked on purpose: SQLite keeps the pointer for the life of the process.
            let vfs: &'static mut ffi::sqlite3_vfs = Box::leak(Box::new(vfs));
            // SAFETY: `vfs` is a complete, valid VFS that is never freed or moved.
            let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
            if rc == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(format!(
                    "registering the SQLite VFS {NAME} failed with code {rc}"
                ))
            }
        })
        .clone()
}

/// `xOpen`: an existing WAL without `SQLITE_OPEN_CREATE` (see the module's text), everything
/// else as the base VFS opens it.
unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = BASE.load(Ordering::Acquire);
    // SAFETY: `register` stored the default VFS before registering this one, and checked that
    // it has an xOpen; SQLite calls this only through the registered VFS.
    let Some(base_open) = (unsafe { base.as_ref() }).and_then(|b| b.xOpen) else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL != 0 && flags & ffi::SQLITE_OPEN_CREATE != 0 && !name.is_null()
    {
        // SAFETY: the arguments are SQLite's own, passed on unchanged but for the flag. The
        // unix VFS clears `file` before it tries, so a failed attempt leaves nothing to close.
        let rc = unsafe {
            base_open(
                base,
                name,
                file,
                flags & !ffi::SQLITE_OPEN_CREATE,
                out_flags,
            )
        };
        if rc == ffi::SQLITE_OK {
            return rc;
        }
        // Missing: created below, as SQLite would, and its directory synced with its first
        // commit.
    }
    // SAFETY: as above, with SQLite's flags unchanged.
    unsafe { base_open(base, name, file, flags, out_flags) }
}

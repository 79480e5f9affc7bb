//! Database and I/O failures of the store, and the MAPI code each one gives a client.

use std::path::PathBuf;

use mapi::{MapiCode, MapiError};

/// A store operation that failed below MAPI: what was being done, on which store file, and why.
///
/// MAPI-facing methods return it converted to a [`MapiError`] with [`StoreError::code`] and this
/// error's text as the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} in store {path}: {source}")]
    Db {
        what: String,
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} in store {path}: {source}")]
    Migrate {
        what: String,
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("{what} for store {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

// SQLite primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_IOERR: i64 = 10;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;
const SQLITE_NOTADB: i64 = 26;

impl StoreError {
    /// The MAPI code a client sees: a full disk is `MAPI_E_NOT_ENOUGH_DISK`, a damaged or foreign
    /// file `MAPI_E_CORRUPT_STORE`, a store written by a newer mapispool `MAPI_E_VERSION`, a write
    /// lock held past the busy timeout `MAPI_E_BUSY`, anything else `MAPI_E_DISK_ERROR`.
    pub fn code(&self) -> MapiCode {
        match self {
            StoreError::Db { source, .. } => sqlx_code(source),
            StoreError::Migrate { source, .. } => {
                use sqlx::migrate::MigrateError as M;
                match source {
                    M::Execute(e) | M::ExecuteMigration(e, _) => sqlx_code(e),
                    M::VersionMissing(_) | M::VersionTooNew(..) => MapiCode::Version,
                    M::VersionMismatch(_) | M::Dirty(_) => MapiCode::CorruptStore,
                    _ => MapiCode::DiskError,
                }
            }
            StoreError::Io { source, .. } => io_code(source),
        }
    }
}

fn io_code(e: &std::io::Error) -> MapiCode {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            MapiCode::NotEnoughDisk
        }
        std::io::ErrorKind::PermissionDenied => MapiCode::NoAccess,
        _ => MapiCode::DiskError,
    }
}

fn sqlx_code(e: &sqlx::Error) -> MapiCode {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
            match code & 0xff {
                SQLITE_FULL => MapiCode::NotEnoughDisk,
                SQLITE_CORRUPT | SQLITE_NOTADB => MapiCode::CorruptStore,
                SQLITE_BUSY | SQLITE_LOCKED => MapiCode::Busy,
                SQLITE_IOERR | SQLITE_CANTOPEN => MapiCode::DiskError,
                _ => MapiCode::DiskError,
            }
        }
        sqlx::Error::Io(io) => io_code(io),
        // Data in the file that does not decode as what we wrote is damage, not a bug of ours.
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => MapiCode::CorruptStore,
        sqlx::Error::PoolTimedOut => MapiCode::Busy,
        _ => MapiCode::DiskError,
    }
}

impl From<StoreError> for MapiError {
    fn from(e: StoreError) -> MapiError {
        MapiError::new(e.code(), e.to_string())
    }
}

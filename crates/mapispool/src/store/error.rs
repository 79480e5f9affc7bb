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
    /// A database server's failure (PostgreSQL); `server` is the store's URL without a
    /// password.
    #[error("{what} in store {server}: {}", server_reason(source))]
    Server {
        what: String,
        server: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{what} in store {server}: {source}")]
    ServerMigrate {
        what: String,
        server: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The store's schema has a migration this build does not know: a newer mapispool wrote it.
    #[error(
        "store {store} has schema version {version}, which this mapispool does not know \
         (it knows up to {known}): a newer mapispool wrote it; use that version (or newer), \
         or open another store"
    )]
    SchemaTooNew {
        store: String,
        version: i64,
        known: i64,
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
            StoreError::Server { source, .. } => server_code(source),
            StoreError::ServerMigrate { source, .. } => {
                use sqlx::migrate::MigrateError as M;
                match source {
                    M::Execute(e) | M::ExecuteMigration(e, _) => server_code(e),
                    M::VersionMissing(_) | M::VersionTooNew(..) => MapiCode::Version,
                    M::VersionMismatch(_) | M::Dirty(_) => MapiCode::CorruptStore,
                    _ => MapiCode::CallFailed,
                }
            }
            StoreError::SchemaTooNew { .. } => MapiCode::Version,
        }
    }

    /// A migration error, with a schema newer than this build's said in words (sqlx's own
    /// text speaks of a "missing" migration).
    pub(crate) fn migrate(
        store: String,
        source: sqlx::migrate::MigrateError,
        known: i64,
        server: bool,
    ) -> StoreError {
        match source {
            sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::SchemaTooNew {
                store,
                version,
                known,
            },
            source if server => StoreError::ServerMigrate {
                what: "updating the schema".into(),
                server: store,
                source,
            },
            source => StoreError::Migrate {
                what: "updating the schema".into(),
                path: PathBuf::from(store),
                source,
            },
        }
    }
}

/// The MAPI code of a database server's failure. A server that cannot be reached, refuses
/// connections now or went away is `MAPI_E_NETWORK_ERROR` (try again later: sendmail's 75); a
/// refused login `MAPI_E_LOGON_FAILED`; a full disk `MAPI_E_NOT_ENOUGH_DISK`; lock and
/// serialization conflicts and a full connection table `MAPI_E_BUSY`; damaged data
/// `MAPI_E_CORRUPT_STORE`; anything else `MAPI_E_CALL_FAILED`.
fn server_code(e: &sqlx::Error) -> MapiCode {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => MapiCode::NetworkError,
        sqlx::Error::Database(db) => {
            let state = db.code().unwrap_or_default();
            match &*state {
                "53100" => MapiCode::NotEnoughDisk,
                "53300" | "40001" | "40P01" | "55P03" => MapiCode::Busy,
                "XX001" | "XX002" => MapiCode::CorruptStore,
                "28000" | "28P01" => MapiCode::LogonFailed,
                s if s.starts_with("08") || s.starts_with("57P") => MapiCode::NetworkError,
                _ => MapiCode::CallFailed,
            }
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => MapiCode::CorruptStore,
        _ => MapiCode::CallFailed,
    }
}

/// sqlx's words for a server failure, made specific where they are not: a pool that timed out
/// was waiting for a server that does not answer.
fn server_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "no connection to the database server within the time \
             limit: is PostgreSQL running and reachable from here? (mapispool tries again later)"
            .into(),
        sqlx::Error::Io(io) => format!(
            "cannot talk to the database server: {io}: is PostgreSQL running and reachable from \
             here? (what failed changed nothing in the store: try again once it is)"
        ),
        e => e.to_string(),
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

//! Why a transport could not do its work at all: [`TransportError`] and its
//! [`TransportErrorKind`]. A module of its own, below `transport/`, `tls` and `credential`,
//! so those two can name a failure without importing the transports that use them.

use mapi::{MapiCode, MapiError};

/// Why a transport could not do its work at all (as opposed to one recipient failing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// Could not reach the server or the post office; worth retrying later.
    Connect,
    /// The server refused our credentials.
    Auth,
    /// TLS could not be set up or the certificate was refused.
    Tls,
    /// The operation took longer than the configured timeout.
    Timeout,
    /// Something temporary went wrong mid-way (a dropped connection, a full disk).
    Temporary,
    /// Something that will not get better by retrying (a bad configuration).
    Permanent,
    /// Going on needs a person (a password prompt, an interactive connect command) and the
    /// caller asked for no user interface (`FLUSH_NO_UI`).
    NeedsPerson,
    /// The store could not take what was downloaded; the store's own MAPI code (a full disk is
    /// `MAPI_E_NOT_ENOUGH_DISK`, not a network error). Worth retrying once that is mended.
    Store(MapiCode),
    /// A message is larger than `max_message_size` (by what the server sent, not what it
    /// announced): it is left on the server.
    TooLarge,
}

/// A whole-transport failure: what kind, and what happened in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub kind: TransportErrorKind,
    pub message: String,
}

impl TransportError {
    /// The store failed at `what` (`e` its error): the store's own failures keep their MAPI
    /// code; anything else (the store's read of a download that broke off) is the link's.
    pub fn store(what: &str, e: &MapiError) -> TransportError {
        let kind = match e.code {
            MapiCode::NotEnoughDisk
            | MapiCode::DiskError
            | MapiCode::CorruptStore
            | MapiCode::Busy
            | MapiCode::NoAccess
            | MapiCode::Version => TransportErrorKind::Store(e.code),
            _ => TransportErrorKind::Temporary,
        };
        TransportError::new(kind, format!("{what}: {e}"))
    }

    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> TransportError {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    /// Whether messages caught by this failure should be retried (not failed outright).
    pub fn is_temporary(&self) -> bool {
        !matches!(self.kind, TransportErrorKind::Permanent)
    }

    /// The MAPI error a client sees for this failure.
    pub fn to_mapi(&self) -> MapiError {
        let code = match self.kind {
            TransportErrorKind::Connect
            | TransportErrorKind::Tls
            | TransportErrorKind::Temporary => MapiCode::NetworkError,
            TransportErrorKind::Timeout => MapiCode::Timeout,
            TransportErrorKind::Auth | TransportErrorKind::NeedsPerson => MapiCode::LogonFailed,
            TransportErrorKind::Permanent => MapiCode::CallFailed,
            TransportErrorKind::Store(code) => code,
            TransportErrorKind::TooLarge => MapiCode::TooBig,
        };
        MapiError::new(code, self.message.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_not_a_network_error() {
        let full = MapiError::new(MapiCode::NotEnoughDisk, "database or disk is full");
        let e = TransportError::store("message 3 was not stored", &full);
        assert_eq!(e.to_mapi().code, MapiCode::NotEnoughDisk);
        assert_eq!(e.message, format!("message 3 was not stored: {full}"));
        // The store's read of a download that broke off is the link's failure.
        let broke = MapiError::new(MapiCode::CallFailed, "reading the message to store: reset");
        let e = TransportError::store("message 3 was not stored", &broke);
        assert_eq!(e.to_mapi().code, MapiCode::NetworkError);
    }
}

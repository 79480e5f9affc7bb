//! Exit codes scripts can rely on, and the error kinds they come from.

use mapi::{MapiCode, MapiError};
use mapispool::profile::ProfileError;

/// What the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done.
    Done = 0,
    /// The command ran, but not everything was done: a message waits for a retry or failed, a
    /// transport could not be reached.
    Partial = 1,
    /// Bad input: the command line, the profile, a `--where` text, a message, an entry ID.
    BadInput = 2,
    /// The store (or later the spooler daemon) could not be reached or written.
    Unavailable = 3,
    /// MAPI refused the operation (not in the queue, cannot abort now, not supported).
    Refused = 4,
    /// sendmail's `EX_USAGE` (sysexits.h): a bad command line, e.g. no recipients.
    SendmailUsage = 64,
    /// sendmail's `EX_DATAERR`: the message itself is bad (no header block, a bad address in
    /// it).
    SendmailDataErr = 65,
    /// sendmail's `EX_TEMPFAIL`: the queue could not be written now; the caller should retry.
    SendmailTempFail = 75,
    /// sendmail's `EX_CONFIG`: the profile is missing or invalid.
    SendmailConfig = 78,
}

/// An error the user caused by what they typed; shown as is, exits with `BadInput`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The exit code for an error, from the most specific cause in its chain.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.downcast_ref::<BadInput>().is_some()
            || cause.downcast_ref::<ProfileError>().is_some()
            || cause
                .downcast_ref::<mapi::restriction::ParseError>()
                .is_some()
        {
            return Exit::BadInput;
        }
        if let Some(e) = cause.downcast_ref::<MapiError>() {
            return exit_for_mapi(e);
        }
    }
    Exit::Unavailable
}

fn exit_for_mapi(e: &MapiError) -> Exit {
    match e.code {
        MapiCode::InvalidParameter
        | MapiCode::InvalidEntryId
        | MapiCode::UnknownEntryId
        | MapiCode::NoRecipients
        | MapiCode::CorruptData
        | MapiCode::UnknownFlags
        | MapiCode::TooComplex
        | MapiCode::NotFound
        | MapiCode::BadValue => Exit::BadInput,
        MapiCode::DiskError
        | MapiCode::CorruptStore
        | MapiCode::NotEnoughDisk
        | MapiCode::NetworkError
        | MapiCode::CallFailed => Exit::Unavailable,
        _ => Exit::Refused,
    }
}

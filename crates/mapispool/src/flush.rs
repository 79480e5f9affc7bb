//! `FlushQueues`' flags and its report: what a flush was asked to do and what it did.

use std::fmt;

use mapi::constants::{FLUSH_ASYNC_OK, FLUSH_DOWNLOAD, FLUSH_FORCE, FLUSH_NO_UI, FLUSH_UPLOAD};
use mapi::{EntryId, FileTime, MapiCode, MapiError, MapiResult};
use serde::{Deserialize, Serialize};

/// `ulFlags` of `IMAPIStatus::FlushQueues`, MAPI's bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlushFlags(pub u32);

impl FlushFlags {
    /// `FLUSH_UPLOAD`: the outbound queue.
    pub const UPLOAD: FlushFlags = FlushFlags(FLUSH_UPLOAD);
    /// `FLUSH_DOWNLOAD`: the inbound side.
    pub const DOWNLOAD: FlushFlags = FlushFlags(FLUSH_DOWNLOAD);
    /// `FLUSH_FORCE`: also send what retry backoff holds back, once, without resetting it.
    pub const FORCE: FlushFlags = FlushFlags(FLUSH_FORCE);
    /// `FLUSH_NO_UI`: never prompt; a transport that needs a person fails its part instead.
    pub const NO_UI: FlushFlags = FlushFlags(FLUSH_NO_UI);
    /// `FLUSH_ASYNC_OK`: the spooler may return at once and go on in the background.
    pub const ASYNC_OK: FlushFlags = FlushFlags(FLUSH_ASYNC_OK);
    const KNOWN: u32 = FLUSH_UPLOAD | FLUSH_DOWNLOAD | FLUSH_FORCE | FLUSH_NO_UI | FLUSH_ASYNC_OK;

    pub const fn contains(self, other: FlushFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// No bit set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// MAPI's checks: unknown bits are `MAPI_E_UNKNOWN_FLAGS`; neither direction is
    /// `MAPI_E_INVALID_PARAMETER` (a flush must say what to move).
    pub fn validate(self) -> MapiResult<()> {
        let unknown = self.0 & !Self::KNOWN;
        if unknown != 0 {
            return Err(MapiError::unknown_flags(format!(
                "FlushQueues does not know the flag bits 0x{unknown:X}; it takes FLUSH_UPLOAD, FLUSH_DOWNLOAD, FLUSH_FORCE, FLUSH_NO_UI and FLUSH_ASYNC_OK"
            )));
        }
        if self.0 & (FLUSH_UPLOAD | FLUSH_DOWNLOAD) == 0 {
            return Err(MapiError::invalid_parameter(
                "FlushQueues needs FLUSH_UPLOAD (the outbound queue), FLUSH_DOWNLOAD (inbound), or both",
            ));
        }
        Ok(())
    }
}

impl std::ops::BitOr for FlushFlags {
    type Output = FlushFlags;
    fn bitor(self, rhs: FlushFlags) -> FlushFlags {
        FlushFlags(self.0 | rhs.0)
    }
}

/// `flags |= FlushFlags::NO_UI`, as C's `ulFlags |= FLUSH_NO_UI`.
impl std::ops::BitOrAssign for FlushFlags {
    fn bitor_assign(&mut self, rhs: FlushFlags) {
        self.0 |= rhs.0;
    }
}

/// `flags & FlushFlags::UPLOAD`: the bits both have (test with [`FlushFlags::is_empty`] or
/// [`FlushFlags::contains`]).
impl std::ops::BitAnd for FlushFlags {
    type Output = FlushFlags;
    fn bitand(self, rhs: FlushFlags) -> FlushFlags {
        FlushFlags(self.0 & rhs.0)
    }
}

impl std::ops::BitAndAssign for FlushFlags {
    fn bitand_assign(&mut self, rhs: FlushFlags) {
        self.0 &= rhs.0;
    }
}

impl fmt::Display for FlushFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (FLUSH_UPLOAD, "FLUSH_UPLOAD"),
            (FLUSH_DOWNLOAD, "FLUSH_DOWNLOAD"),
            (FLUSH_FORCE, "FLUSH_FORCE"),
            (FLUSH_NO_UI, "FLUSH_NO_UI"),
            (FLUSH_ASYNC_OK, "FLUSH_ASYNC_OK"),
        ];
        let parts: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if parts.is_empty() {
            f.write_str("0")
        } else {
            f.write_str(&parts.join("|"))
        }
    }
}

/// What became of one recipient in a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RecipientReport {
    Delivered { address: String },
    Deferred { address: String, error: String },
    Failed { address: String, error: String },
}

/// What became of one outbound message in a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReport {
    #[serde(
        serialize_with = "entry_id_hex",
        deserialize_with = "entry_id_from_hex"
    )]
    pub entry_id: EntryId,
    pub subject: String,
    /// `sent`, `deferred` (some recipients wait for a retry), `failed` (a non-delivery report
    /// went to the Inbox), `partial` (sent to some, reported for others).
    pub outcome: MessageOutcome,
    /// When the next attempt is due, for a deferred message.
    #[serde(serialize_with = "opt_time", deserialize_with = "opt_time_from")]
    pub retry_at: Option<FileTime>,
    pub recipients: Vec<RecipientReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOutcome {
    Sent,
    Deferred,
    Failed,
    Partial,
}

/// What one transport did in a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportReport {
    pub transport: String,
    #[serde(
        serialize_with = "entry_id_hex",
        deserialize_with = "entry_id_from_hex"
    )]
    pub entry_id: EntryId,
    /// Whether the outbound queue was flushed on this transport.
    pub upload: bool,
    /// Whether inbound mail was fetched on this transport.
    pub download: bool,
    pub messages: Vec<MessageReport>,
    pub received: usize,
    /// Set when the transport could not do its part at all: why, in words (the status string).
    pub error: Option<String>,
    /// The MAPI error name for `error`, e.g. `MAPI_E_NETWORK_ERROR`.
    pub error_code: Option<String>,
    /// Set when a flush of every transport (or of a group with `offline = "skip"`) left this
    /// one out because it is offline, as Outlook's "Send/Receive All" leaves out an account
    /// that works offline: why, in words. Not a failure; flushing it by name is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl TransportReport {
    /// Why the transport could not do its part, as a [`MapiError`] with its [`MapiCode`]
    /// (`MAPI_E_NETWORK_ERROR`, `MAPI_E_LOGON_FAILED`, ...); `None` when it could. A code the
    /// report names but this build does not know is `MAPI_E_CALL_FAILED`.
    pub fn mapi_error(&self) -> Option<MapiError> {
        let cause = self.error.as_ref()?;
        let code = self
            .error_code
            .as_deref()
            .and_then(MapiCode::from_name)
            .unwrap_or(MapiCode::CallFailed);
        Some(MapiError::new(code, cause.clone()))
    }
    pub fn sent(&self) -> usize {
        self.count(MessageOutcome::Sent)
    }
    pub fn count(&self, outcome: MessageOutcome) -> usize {
        self.messages
            .iter()
            .filter(|m| m.outcome == outcome)
            .count()
    }
}

/// The report `flush_queues` returns: one part per transport, in profile order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FlushReport {
    #[serde(serialize_with = "flags_text", deserialize_with = "flags_from_text")]
    pub flags: FlushFlags,
    /// True when `FLUSH_ASYNC_OK` let the call return before the work was done; the transports
    /// then report through the status table.
    pub asynchronous: bool,
    pub transports: Vec<TransportReport>,
}

impl FlushReport {
    /// Whether everything asked for was done: no transport failed and no message failed or
    /// waits. Offline transports left out count as done, unless every transport was left out
    /// (then nothing was).
    pub fn is_complete(&self) -> bool {
        let all_skipped =
            !self.transports.is_empty() && self.transports.iter().all(|t| t.skipped.is_some());
        !all_skipped
            && self.transports.iter().all(|t| {
                t.error.is_none() && t.messages.iter().all(|m| m.outcome == MessageOutcome::Sent)
            })
    }
}

fn entry_id_hex<S: serde::Serializer>(id: &EntryId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

fn opt_time<S: serde::Serializer>(t: &Option<FileTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

fn entry_id_from_hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EntryId, D::Error> {
    String::deserialize(d)?
        .parse()
        .map_err(|e: MapiError| serde::de::Error::custom(e.cause))
}

fn opt_time_from<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<FileTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(text) => FileTime::parse_rfc3339(&text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("not a time: {text}"))),
        None => Ok(None),
    }
}

/// Reads `FLUSH_UPLOAD|FLUSH_NO_UI` (what `Display` writes) back into bits.
fn flags_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FlushFlags, D::Error> {
    let text = String::deserialize(d)?;
    let mut bits = 0;
    for part in text.split('|').filter(|p| *p != "0") {
        bits |= match part {
            "FLUSH_UPLOAD" => FLUSH_UPLOAD,
            "FLUSH_DOWNLOAD" => FLUSH_DOWNLOAD,
            "FLUSH_FORCE" => FLUSH_FORCE,
            "FLUSH_NO_UI" => FLUSH_NO_UI,
            "FLUSH_ASYNC_OK" => FLUSH_ASYNC_OK,
            other => return Err(serde::de::Error::custom(format!("unknown flag {other}"))),
        };
    }
    Ok(FlushFlags(bits))
}

fn flags_text<S: serde::Serializer>(f: &FlushFlags, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_combine_as_c_bit_masks_do() {
        let mut flags = FlushFlags::UPLOAD;
        flags |= FlushFlags::NO_UI;
        assert_eq!(flags, FlushFlags(FLUSH_UPLOAD | FLUSH_NO_UI));
        assert_eq!(flags & FlushFlags::NO_UI, FlushFlags::NO_UI);
        assert!((flags & FlushFlags::DOWNLOAD).is_empty());
        flags &= FlushFlags::NO_UI;
        assert_eq!(flags, FlushFlags::NO_UI);
    }

    #[test]
    fn a_transport_report_gives_its_error_as_a_mapi_code() {
        let mut report = TransportReport {
            transport: "work".into(),
            entry_id: EntryId::from_bytes(vec![0; 20]),
            upload: true,
            download: false,
            messages: Vec::new(),
            received: 0,
            error: None,
            error_code: None,
            skipped: None,
        };
        assert_eq!(report.mapi_error(), None);
        report.error = Some("cannot connect to mx:25: connection refused".into());
        report.error_code = Some("MAPI_E_NETWORK_ERROR".into());
        let e = report.mapi_error().expect("an error");
        assert_eq!(e.code, MapiCode::NetworkError);
        assert_eq!(e.cause, "cannot connect to mx:25: connection refused");
    }

    #[test]
    fn flags_are_checked_as_mapi_does() {
        assert!((FlushFlags::UPLOAD | FlushFlags::NO_UI).validate().is_ok());
        assert_eq!(
            FlushFlags(0).validate().map_err(|e| e.code),
            Err(MapiCode::InvalidParameter)
        );
        assert_eq!(
            FlushFlags::FORCE.validate().map_err(|e| e.code),
            Err(MapiCode::InvalidParameter)
        );
        assert_eq!(
            FlushFlags(FLUSH_UPLOAD | 0x100)
                .validate()
                .map_err(|e| e.code),
            Err(MapiCode::UnknownFlags)
        );
        assert_eq!(
            (FlushFlags::UPLOAD | FlushFlags::ASYNC_OK).to_string(),
            "FLUSH_UPLOAD|FLUSH_ASYNC_OK"
        );
    }
}

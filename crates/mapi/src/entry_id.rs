//! Entry IDs (`ENTRYID`): opaque bytes that name an object, stable across restarts.
//!
//! MAPI's layout is four flag bytes, the provider's 16-byte `MAPIUID`, then provider data. We
//! keep that layout so the provider can be told from the ID alone, and print IDs as hex for
//! people and scripts.

use std::fmt;
use std::str::FromStr;

use crate::error::MapiError;
use crate::value::{hex, parse_hex};

/// A provider's 16-byte unique identifier (`MAPIUID`).
pub type MapiUid = [u8; 16];

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(Vec<u8>);

impl EntryId {
    /// Builds `abFlags[4] | uid[16] | data` with zero flags (a long-term ID).
    pub fn new(uid: &MapiUid, data: &[u8]) -> EntryId {
        let mut bytes = Vec::with_capacity(20 + data.len());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(uid);
        bytes.extend_from_slice(data);
        EntryId(bytes)
    }
    pub fn from_bytes(bytes: Vec<u8>) -> EntryId {
        EntryId(bytes)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The provider UID, if the ID is long enough to hold one.
    pub fn uid(&self) -> Option<MapiUid> {
        self.0.get(4..20).and_then(|s| s.try_into().ok())
    }
    /// The ID as an error message names it: `entry ID 0000…`, or `the empty entry ID` (whose
    /// hex form is nothing, and would leave a message starting with a blank).
    pub fn named(&self) -> String {
        if self.0.is_empty() {
            "the empty entry ID".to_string()
        } else {
            format!("entry ID {self}")
        }
    }
    /// The provider's own part after the UID.
    pub fn data(&self) -> &[u8] {
        self.0.get(20..).unwrap_or(&[])
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryId({self})")
    }
}

impl FromStr for EntryId {
    type Err = MapiError;
    /// Parses the hex form; anything else is `MAPI_E_INVALID_ENTRYID`.
    fn from_str(s: &str) -> Result<EntryId, MapiError> {
        match parse_hex(s.trim()) {
            Some(bytes) if bytes.len() >= 20 => Ok(EntryId(bytes)),
            Some(bytes) => Err(MapiError::invalid_entry_id(format!(
                "entry ID \"{s}\" has {} bytes; an entry ID has at least 20 (4 flag bytes and a 16-byte provider UID)",
                bytes.len()
            ))),
            None => Err(MapiError::invalid_entry_id(format!(
                "\"{s}\" is not an entry ID: expected an even number of hex digits, as the PR_ENTRYID column shows"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MapiCode;

    #[test]
    fn layout_and_text_round_trip() {
        let uid = [7u8; 16];
        let id = EntryId::new(&uid, b"xp");
        assert_eq!(id.uid(), Some(uid));
        assert_eq!(id.data(), b"xp");
        let back: EntryId = id.to_string().parse().expect("parses");
        assert_eq!(back, id);
        assert_eq!(
            id.to_string().to_lowercase().parse::<EntryId>().ok(),
            Some(id)
        );
    }

    #[test]
    fn bad_text_is_invalid_entryid() {
        let e = "xyz".parse::<EntryId>().unwrap_err();
        assert_eq!(e.code, MapiCode::InvalidEntryId);
        let e = "0011".parse::<EntryId>().unwrap_err();
        assert_eq!(e.code, MapiCode::InvalidEntryId);
        assert!(e.cause.contains("2 bytes"));
    }
}

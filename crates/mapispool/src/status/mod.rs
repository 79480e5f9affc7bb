//! The status table: one row for the subsystem, the spooler, the store, and each transport
//! (mapi-reference.md §6). The status objects a client opens from those rows belong to the
//! session (`session/status.rs`).
//!
//! - this file: which object a row stands for, its entry ID, and its initial columns;
//! - `board.rs`: the live table the spooler writes (`ModifyStatusRow`) and clients read.

pub mod board;

pub use board::StatusBoard;

use mapi::constants::*;
use mapi::tag::*;
use mapi::{EntryId, MapiError, MapiResult, MapiUid, Prop, PropValue, Row};

use crate::profile::TransportConfig;

/// The provider UID of every status entry ID mapispool hands out.
pub const STATUS_UID: MapiUid = *b"mapispool.status";

/// Which object a status row stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusKind {
    /// `MAPI_SUBSYSTEM`: mapispool as a whole.
    Subsystem,
    /// `MAPI_SPOOLER`: the spooler that moves mail.
    Spooler,
    /// `MAPI_STORE_PROVIDER`: the message store.
    Store,
    /// `MAPI_TRANSPORT_PROVIDER`: the transport of this name.
    Transport(String),
}

impl StatusKind {
    /// The entry ID of the row: stable across restarts because it is made of the kind and the
    /// transport's name, not of anything a run allocates.
    pub fn entry_id(&self) -> EntryId {
        let data: Vec<u8> = match self {
            StatusKind::Subsystem => b"U".to_vec(),
            StatusKind::Spooler => b"S".to_vec(),
            StatusKind::Store => b"M".to_vec(),
            StatusKind::Transport(name) => [b"X".as_slice(), name.as_bytes()].concat(),
        };
        EntryId::new(&STATUS_UID, &data)
    }

    /// The kind an entry ID names. `MAPI_E_INVALID_ENTRYID` when it is not a status entry ID of
    /// ours at all; whether a named transport exists is for the caller to check
    /// (`MAPI_E_UNKNOWN_ENTRYID`).
    pub fn from_entry_id(id: &EntryId) -> MapiResult<StatusKind> {
        if id.uid() != Some(STATUS_UID) || id.as_bytes()[..4] != [0; 4] {
            return Err(MapiError::unknown_entry_id(format!(
                "{} is not a status object's entry ID; take one from the PR_ENTRYID column of `mapispool status`",
                id.named()
            )));
        }
        match id.data() {
            b"U" => Ok(StatusKind::Subsystem),
            b"S" => Ok(StatusKind::Spooler),
            b"M" => Ok(StatusKind::Store),
            [b'X', name @ ..] if !name.is_empty() => std::str::from_utf8(name)
                .map(|n| StatusKind::Transport(n.to_string()))
                .map_err(|_| {
                    MapiError::unknown_entry_id(format!(
                        "{}: the transport name in it is not UTF-8",
                        id.named()
                    ))
                }),
            _ => Err(MapiError::unknown_entry_id(format!(
                "{} is not a status object's entry ID; take one from the PR_ENTRYID column of `mapispool status`",
                id.named()
            ))),
        }
    }

    /// `PR_RESOURCE_TYPE` of the row.
    pub fn resource_type(&self) -> i32 {
        match self {
            StatusKind::Subsystem => MAPI_SUBSYSTEM,
            StatusKind::Spooler => MAPI_SPOOLER,
            StatusKind::Store => MAPI_STORE_PROVIDER,
            StatusKind::Transport(_) => MAPI_TRANSPORT_PROVIDER,
        }
    }
}

/// `PR_RESOURCE_METHODS` of a transport: `ValidateState` always; `FlushQueues` unless the
/// profile says the transport leaves flushing to the spooler.
pub fn transport_methods(config: &TransportConfig) -> i32 {
    if config.flush_queues {
        STATUS_VALIDATE_STATE | STATUS_FLUSH_QUEUES
    } else {
        STATUS_VALIDATE_STATE
    }
}

/// `PR_STATUS_CODE` of an idle transport: available, with the sides it has enabled.
pub fn transport_idle_code(config: &TransportConfig, offline: bool) -> i32 {
    let mut code = if offline {
        STATUS_OFFLINE
    } else {
        STATUS_AVAILABLE
    };
    if config.outbound.is_some() {
        code |= STATUS_OUTBOUND_ENABLED;
    }
    if config.inbound.is_some() {
        code |= STATUS_INBOUND_ENABLED;
    }
    code
}

fn common(kind: &StatusKind, ordinal: i32, display: &str, provider: &str, dll: &str) -> Vec<Prop> {
    let entry_id = kind.entry_id();
    vec![
        Prop::new(PR_ENTRYID, PropValue::Binary(entry_id.as_bytes().to_vec())),
        Prop::new(
            PR_INSTANCE_KEY,
            PropValue::Binary(entry_id.as_bytes().to_vec()),
        ),
        Prop::new(PR_OBJECT_TYPE, PropValue::Long(MAPI_STATUS)),
        Prop::new(PR_ROWID, PropValue::Long(ordinal)),
        Prop::new(PR_DISPLAY_NAME, PropValue::Unicode(display.to_string())),
        Prop::new(
            PR_PROVIDER_DISPLAY,
            PropValue::Unicode(provider.to_string()),
        ),
        Prop::new(PR_PROVIDER_DLL_NAME, PropValue::Unicode(dll.to_string())),
        Prop::new(PR_PROVIDER_UID, PropValue::Binary(STATUS_UID.to_vec())),
        Prop::new(PR_RESOURCE_TYPE, PropValue::Long(kind.resource_type())),
    ]
}

/// The rows a session starts with: subsystem, spooler, store, then each transport in profile
/// order (`PR_PROVIDER_ORDINAL` is that order, from 0).
pub fn initial_rows(
    transports: &[TransportConfig],
    store_display: &str,
    offline: bool,
) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut subsystem = common(
        &StatusKind::Subsystem,
        0,
        "MAPI Subsystem",
        "mapispool",
        "mapispool",
    );
    subsystem.extend([
        Prop::new(PR_RESOURCE_METHODS, PropValue::Long(STATUS_VALIDATE_STATE)),
        Prop::new(PR_RESOURCE_FLAGS, PropValue::Long(0)),
        Prop::new(PR_STATUS_CODE, PropValue::Long(STATUS_AVAILABLE)),
        Prop::new(PR_STATUS_STRING, PropValue::Unicode("Available".into())),
    ]);
    rows.push(Row::new(subsystem));

    let mut spooler = common(
        &StatusKind::Spooler,
        1,
        "MAPI Spooler",
        "mapispool spooler",
        "mapispool",
    );
    spooler.extend([
        Prop::new(
            PR_RESOURCE_METHODS,
            PropValue::Long(STATUS_VALIDATE_STATE | STATUS_FLUSH_QUEUES),
        ),
        Prop::new(PR_RESOURCE_FLAGS, PropValue::Long(0)),
        Prop::new(
            PR_STATUS_CODE,
            PropValue::Long(if offline {
                STATUS_OFFLINE
            } else {
                STATUS_AVAILABLE
            }),
        ),
        Prop::new(PR_STATUS_STRING, PropValue::Unicode("Idle".into())),
        Prop::new(PR_REMOTE_VALIDATE_OK, PropValue::Boolean(true)),
    ]);
    rows.push(Row::new(spooler));

    let mut store = common(
        &StatusKind::Store,
        2,
        "Personal Folders",
        store_display,
        "mapispool-store",
    );
    store.extend([
        Prop::new(PR_RESOURCE_METHODS, PropValue::Long(STATUS_VALIDATE_STATE)),
        Prop::new(
            PR_RESOURCE_FLAGS,
            PropValue::Long(STATUS_DEFAULT_STORE | STATUS_PRIMARY_STORE),
        ),
        Prop::new(PR_STATUS_CODE, PropValue::Long(STATUS_AVAILABLE)),
        Prop::new(PR_STATUS_STRING, PropValue::Unicode("Available".into())),
    ]);
    rows.push(Row::new(store));

    for (ordinal, t) in transports.iter().enumerate() {
        let kind = StatusKind::Transport(t.name.clone());
        let provider = match (t.outbound_kind(), t.inbound_kind()) {
            (Some(o), Some(i)) if o.as_str() == i.as_str() => format!("{} transport", o.as_str()),
            (Some(o), Some(i)) => format!("{}+{} transport", o.as_str(), i.as_str()),
            (Some(o), None) => format!("{} transport (send only)", o.as_str()),
            (None, Some(i)) => format!("{} transport (receive only)", i.as_str()),
            (None, None) => "transport (no sides configured)".to_string(),
        };
        let dll = format!(
            "mapispool-{}",
            [
                t.outbound_kind().map(|k| k.as_str()),
                t.inbound_kind().map(|k| k.as_str())
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("+")
        );
        let mut props = common(&kind, 3 + ordinal as i32, &t.name, &provider, &dll);
        // Exactly one transport carries the primary identity: the first, as MAPI's default.
        let identity_flag = if ordinal == 0 {
            STATUS_PRIMARY_IDENTITY
        } else {
            STATUS_NO_PRIMARY_IDENTITY
        };
        let default_outbound = if ordinal == 0 && t.outbound.is_some() {
            STATUS_DEFAULT_OUTBOUND
        } else {
            0
        };
        let identity = t.display_name.clone().unwrap_or_else(|| t.address.clone());
        props.extend([
            Prop::new(PR_PROVIDER_ORDINAL, PropValue::Long(ordinal as i32)),
            Prop::new(PR_RESOURCE_METHODS, PropValue::Long(transport_methods(t))),
            Prop::new(
                PR_RESOURCE_FLAGS,
                PropValue::Long(identity_flag | default_outbound),
            ),
            Prop::new(
                PR_STATUS_CODE,
                PropValue::Long(transport_idle_code(t, offline)),
            ),
            Prop::new(
                PR_STATUS_STRING,
                PropValue::Unicode(if offline { "Offline" } else { "Idle" }.into()),
            ),
            Prop::new(PR_REMOTE_PROGRESS, PropValue::Long(-1)),
            Prop::new(PR_REMOTE_VALIDATE_OK, PropValue::Boolean(true)),
            Prop::new(PR_IDENTITY_DISPLAY, PropValue::Unicode(identity)),
            Prop::new(
                PR_IDENTITY_ENTRYID,
                PropValue::Binary(
                    EntryId::new(&STATUS_UID, format!("I{}", t.address).as_bytes())
                        .as_bytes()
                        .to_vec(),
                ),
            ),
            // MAPI's search keys are "ADDRTYPE:ADDRESS" in upper case.
            Prop::new(
                PR_IDENTITY_SEARCH_KEY,
                PropValue::Binary(format!("SMTP:{}", t.address.to_uppercase()).into_bytes()),
            ),
            Prop::new(PR_EMAIL_ADDRESS, PropValue::Unicode(t.address.clone())),
            Prop::new(PR_MSP_NEEDS_UI, PropValue::Boolean(t.needs_person())),
            Prop::new(PR_MSP_QUEUED_COUNT, PropValue::Long(0)),
            Prop::new(PR_MSP_PHASE, PropValue::Unicode("idle".into())),
        ]);
        rows.push(Row::new(props));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapi::MapiCode;

    #[test]
    fn entry_ids_name_their_object_and_nothing_else() {
        for kind in [
            StatusKind::Subsystem,
            StatusKind::Spooler,
            StatusKind::Store,
            StatusKind::Transport("work".into()),
        ] {
            assert_eq!(StatusKind::from_entry_id(&kind.entry_id()), Ok(kind));
        }
        let foreign = EntryId::new(&[1; 16], b"S");
        assert_eq!(
            StatusKind::from_entry_id(&foreign).map_err(|e| e.code),
            Err(MapiCode::UnknownEntryId)
        );
        let odd = EntryId::new(&STATUS_UID, b"Q");
        assert_eq!(
            StatusKind::from_entry_id(&odd).map_err(|e| e.code),
            Err(MapiCode::UnknownEntryId)
        );
        let empty = StatusKind::from_entry_id(&EntryId::from_bytes(Vec::new()))
            .expect_err("the empty ID names nothing");
        assert_eq!(empty.code, MapiCode::UnknownEntryId);
        assert_eq!(
            empty.to_string(),
            "MAPI_E_UNKNOWN_ENTRYID (0x80040201): the empty entry ID is not a status object's entry ID; take one from the PR_ENTRYID column of `mapispool status`"
        );
    }
}

//! Table notifications (`fnevTableModified`, `TABLE_NOTIFICATION`) and the sinks that receive
//! them, MAPI's numbers (mapi-reference.md §6).

use std::sync::Arc;

use crate::error::MapiCode;
use crate::value::Row;

// Event types of `NOTIFICATION.ulEventType` (`fnev*`), under MAPI's own names so that a reader of
// MAPI's headers finds them. A table only ever raises `fnevTableModified`.
#[allow(non_upper_case_globals)]
pub const fnevCriticalError: u32 = 0x0000_0001;
#[allow(non_upper_case_globals)]
pub const fnevNewMail: u32 = 0x0000_0002;
#[allow(non_upper_case_globals)]
pub const fnevObjectCreated: u32 = 0x0000_0004;
#[allow(non_upper_case_globals)]
pub const fnevObjectDeleted: u32 = 0x0000_0008;
#[allow(non_upper_case_globals)]
pub const fnevObjectModified: u32 = 0x0000_0010;
#[allow(non_upper_case_globals)]
pub const fnevObjectMoved: u32 = 0x0000_0020;
#[allow(non_upper_case_globals)]
pub const fnevObjectCopied: u32 = 0x0000_0040;
#[allow(non_upper_case_globals)]
pub const fnevSearchComplete: u32 = 0x0000_0080;
#[allow(non_upper_case_globals)]
pub const fnevTableModified: u32 = 0x0000_0100;
/// MAPI-internal: no client can register for it.
#[allow(non_upper_case_globals)]
pub const fnevStatusObjectModified: u32 = 0x0000_0200;
#[allow(non_upper_case_globals)]
pub const fnevExtended: u32 = 0x8000_0000;

pub const TABLE_CHANGED: u32 = 1;
pub const TABLE_ERROR: u32 = 2;
pub const TABLE_ROW_ADDED: u32 = 3;
pub const TABLE_ROW_DELETED: u32 = 4;
pub const TABLE_ROW_MODIFIED: u32 = 5;
pub const TABLE_SORT_DONE: u32 = 6;
pub const TABLE_RESTRICT_DONE: u32 = 7;
pub const TABLE_SETCOL_DONE: u32 = 8;
pub const TABLE_RELOAD: u32 = 9;

/// `ulTableEvent` of a `TABLE_NOTIFICATION`, MAPI's numbers.
///
/// These tables raise `RowAdded`, `RowDeleted` and `RowModified`; the others are here because a
/// client's sink must be able to name every event MAPI defines (`*_DONE` follow asynchronous
/// calls, which these synchronous tables never make).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum TableEvent {
    Changed = TABLE_CHANGED,
    Error = TABLE_ERROR,
    RowAdded = TABLE_ROW_ADDED,
    RowDeleted = TABLE_ROW_DELETED,
    RowModified = TABLE_ROW_MODIFIED,
    SortDone = TABLE_SORT_DONE,
    RestrictDone = TABLE_RESTRICT_DONE,
    SetColDone = TABLE_SETCOL_DONE,
    Reload = TABLE_RELOAD,
}

impl TableEvent {
    pub const fn value(self) -> u32 {
        self as u32
    }
    pub const fn from_value(value: u32) -> Option<TableEvent> {
        Some(match value {
            TABLE_CHANGED => TableEvent::Changed,
            TABLE_ERROR => TableEvent::Error,
            TABLE_ROW_ADDED => TableEvent::RowAdded,
            TABLE_ROW_DELETED => TableEvent::RowDeleted,
            TABLE_ROW_MODIFIED => TableEvent::RowModified,
            TABLE_SORT_DONE => TableEvent::SortDone,
            TABLE_RESTRICT_DONE => TableEvent::RestrictDone,
            TABLE_SETCOL_DONE => TableEvent::SetColDone,
            TABLE_RELOAD => TableEvent::Reload,
            _ => return None,
        })
    }
    /// MAPI's name, e.g. `TABLE_ROW_ADDED`.
    pub const fn name(self) -> &'static str {
        match self {
            TableEvent::Changed => "TABLE_CHANGED",
            TableEvent::Error => "TABLE_ERROR",
            TableEvent::RowAdded => "TABLE_ROW_ADDED",
            TableEvent::RowDeleted => "TABLE_ROW_DELETED",
            TableEvent::RowModified => "TABLE_ROW_MODIFIED",
            TableEvent::SortDone => "TABLE_SORT_DONE",
            TableEvent::RestrictDone => "TABLE_RESTRICT_DONE",
            TableEvent::SetColDone => "TABLE_SETCOL_DONE",
            TableEvent::Reload => "TABLE_RELOAD",
        }
    }
}

/// A `TABLE_NOTIFICATION`, as one view sees the change.
#[derive(Debug, Clone, PartialEq)]
pub struct TableNotification {
    pub event: TableEvent,
    /// `hResult`: `S_OK` except for `TABLE_ERROR`.
    pub hresult: MapiCode,
    /// `propIndex`: the `PR_INSTANCE_KEY` of the row concerned.
    pub instance_key: Vec<u8>,
    /// `propPrior`: the `PR_INSTANCE_KEY` of the row before it in the view's order, `None`
    /// (MAPI's `PR_NULL`) when it is now the first row. Always `None` for `TABLE_ROW_DELETED`.
    pub prior_instance_key: Option<Vec<u8>>,
    /// The row, cut to the view's columns as they were when the notification was generated;
    /// empty for `TABLE_ROW_DELETED`, as in MAPI.
    pub row: Row,
}

/// An advise sink's `OnNotify`, for one view. It is called on the thread that changed the table,
/// after every table lock is released, so it may read the table (or change it) itself.
pub type TableSink = Arc<dyn Fn(&TableNotification) + Send + Sync>;

/// The connection number `Advise` returns and `Unadvise` takes; never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_mapi_numbers() {
        assert_eq!(fnevTableModified, 0x100);
        assert_eq!(TableEvent::RowAdded.value(), 3);
        assert_eq!(TableEvent::Reload.value(), 9);
        for v in 1..=9 {
            let event = TableEvent::from_value(v).expect("defined");
            assert_eq!(event.value(), v);
            assert!(event.name().starts_with("TABLE_"));
        }
        assert_eq!(TableEvent::from_value(0), None);
        assert_eq!(TableEvent::from_value(10), None);
    }
}

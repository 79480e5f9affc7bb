//! The live status table: the spooler writes rows (MAPI's `ModifyStatusRow` with
//! `STATUSROW_UPDATE`, a merge) and every client view sees the change as a
//! `TABLE_ROW_MODIFIED` notification keyed by `PR_INSTANCE_KEY`.

use std::sync::{Arc, Mutex};

use mapi::table::{Table, TableData};
use mapi::tag::{PR_INSTANCE_KEY, PR_STATUS_CODE};
use mapi::{Prop, PropTag, PropValue, Row};

use super::StatusKind;

/// The status table's rows, shared by the spooler (writer) and sessions (readers).
#[derive(Clone)]
pub struct StatusBoard {
    data: TableData,
    /// Serialises read-modify-write of status bits, so two transports flipping their bits at
    /// once cannot lose each other's change.
    write: Arc<Mutex<()>>,
}

impl StatusBoard {
    pub fn new(rows: Vec<Row>) -> StatusBoard {
        let data = TableData::new();
        for row in rows {
            // Rows come from `initial_rows`, which always sets PR_INSTANCE_KEY; a row refused
            // here would be a bug in that function, and the table simply lacks it.
            if let Err(e) = data.add_row(row) {
                tracing::error!(error = %e, "status row refused");
            }
        }
        StatusBoard {
            data,
            write: Arc::new(Mutex::new(())),
        }
    }

    /// A new client view of the table (`GetStatusTable`).
    pub fn view(&self) -> Table {
        self.data.view()
    }

    /// The current row of `kind`, all columns.
    pub fn row(&self, kind: &StatusKind) -> Option<Row> {
        self.data.row(kind.entry_id().as_bytes())
    }

    /// Replaces a whole row, as a client's mirror of a remote status table does when the
    /// spooler daemon reports a change.
    pub fn replace(&self, row: Row) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.data.replace_row(row) {
            tracing::warn!(error = %e, "status row from the spooler refused");
        }
    }

    /// Takes column `tag` out of `kind`'s row (a wait that is over no longer shows a time).
    pub fn remove(&self, kind: &StatusKind, tag: PropTag) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut row) = self.row(kind)
            && row.get_by_id(tag).is_some()
        {
            row.props.retain(|p| p.tag.id() != tag.id());
            if let Err(e) = self.data.replace_row(row) {
                tracing::warn!(error = %e, ?kind, "status row update refused");
            }
        }
    }

    /// All rows in table order.
    pub fn rows(&self) -> Vec<Row> {
        self.data.rows()
    }

    /// Merges `props` into `kind`'s row (`ModifyStatusRow(STATUSROW_UPDATE)`).
    pub fn update(&self, kind: &StatusKind, props: Vec<Prop>) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        self.merge(kind, props);
    }

    fn merge(&self, kind: &StatusKind, props: Vec<Prop>) {
        let mut row = Row::new(props);
        row.set(
            PR_INSTANCE_KEY,
            PropValue::Binary(kind.entry_id().as_bytes().to_vec()),
        );
        if let Err(e) = self.data.modify_row(row) {
            tracing::error!(error = %e, ?kind, "status row update refused");
        }
    }

    /// `PR_STATUS_CODE` of `kind` now (0 when the row is missing).
    pub fn status_code(&self, kind: &StatusKind) -> i32 {
        self.long(kind, PR_STATUS_CODE).unwrap_or(0)
    }

    /// A `PT_LONG` column of `kind`'s row.
    pub fn long(&self, kind: &StatusKind, tag: PropTag) -> Option<i32> {
        match self.row(kind)?.get(tag) {
            Some(PropValue::Long(v)) => Some(*v),
            _ => None,
        }
    }

    /// Sets and clears `PR_STATUS_CODE` bits of `kind` and merges `extra` columns, as one change
    /// (one notification).
    pub fn change_bits(&self, kind: &StatusKind, set: i32, clear: i32, extra: Vec<Prop>) {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let code = (self.status_code(kind) & !clear) | set;
        let mut props = vec![Prop::new(PR_STATUS_CODE, PropValue::Long(code))];
        props.extend(extra);
        self.merge(kind, props);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::Mutex as StdMutex;

    use mapi::constants::{STATUS_AVAILABLE, STATUS_OUTBOUND_FLUSH};
    use mapi::table::TableEvent;
    use mapi::tag::PR_STATUS_STRING;

    use super::*;
    use crate::status::initial_rows;

    #[test]
    fn bit_changes_reach_advised_views() {
        let board = StatusBoard::new(initial_rows(&[], "store", false));
        let mut view = board.view();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let sink_seen = seen.clone();
        view.advise(Arc::new(move |n: &mapi::table::TableNotification| {
            if let Ok(mut s) = sink_seen.lock() {
                s.push((n.event, n.row.get(PR_STATUS_CODE).cloned()));
            }
        }));
        board.change_bits(
            &StatusKind::Spooler,
            STATUS_OUTBOUND_FLUSH,
            0,
            vec![Prop::new(
                PR_STATUS_STRING,
                PropValue::Unicode("Flushing".into()),
            )],
        );
        assert_eq!(
            board.status_code(&StatusKind::Spooler),
            STATUS_AVAILABLE | STATUS_OUTBOUND_FLUSH
        );
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![(
                TableEvent::RowModified,
                Some(PropValue::Long(STATUS_AVAILABLE | STATUS_OUTBOUND_FLUSH))
            )]
        );
    }
}

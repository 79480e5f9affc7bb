//! `flush`'s live progress: a bar per transport, fed by the status table's
//! `TABLE_ROW_MODIFIED` notifications (`PR_STATUS_STRING`, `PR_REMOTE_PROGRESS`) — the same
//! ones any MAPI client sees, whether the spooler runs in this process or in the daemon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mapi::constants::{MAPI_TRANSPORT_PROVIDER, STATUS_FAILURE};
use mapi::table::{Table, TableEvent};
use mapi::tag::{
    PR_DISPLAY_NAME, PR_ENTRYID, PR_INSTANCE_KEY, PR_REMOTE_PROGRESS, PR_RESOURCE_TYPE,
    PR_STATUS_CODE, PR_STATUS_STRING,
};
use mapi::{PropValue, Row, TableNotification};
use mapispool::Session;

const COLUMNS: [mapi::PropTag; 6] = [
    PR_INSTANCE_KEY,
    PR_ENTRYID,
    PR_DISPLAY_NAME,
    PR_RESOURCE_TYPE,
    PR_STATUS_CODE,
    PR_STATUS_STRING,
];

/// The bars, live while this exists. Dropping the view ends the notifications.
pub struct Bars {
    multi: MultiProgress,
    bars: Arc<Mutex<HashMap<Vec<u8>, ProgressBar>>>,
    _view: Table,
}

impl Bars {
    /// Advises on a new view of the status table and draws a bar for each transport (only
    /// `only`'s, by entry ID, when the flush targets one). Call before `FlushQueues`, so no
    /// move is missed.
    pub fn start(session: &Session, only: Option<&mapi::EntryId>, colour: bool) -> Result<Bars> {
        let mut view = session.status_table();
        let mut columns = COLUMNS.to_vec();
        columns.push(PR_REMOTE_PROGRESS);
        view.set_columns(&columns)?;
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(if colour {
            "{prefix:>12.bold} [{bar:30.cyan/blue}] {pos:>3}% {wide_msg}"
        } else {
            "{prefix:>12} [{bar:30}] {pos:>3}% {wide_msg}"
        })?
        .progress_chars("=> ");
        let mut bars = HashMap::new();
        for row in session.board().rows() {
            if long(&row, PR_RESOURCE_TYPE) != Some(MAPI_TRANSPORT_PROVIDER) {
                continue;
            }
            if let Some(id) = only
                && binary(&row, PR_ENTRYID) != Some(id.as_bytes())
            {
                continue;
            }
            let Some(key) = binary(&row, PR_INSTANCE_KEY) else {
                continue;
            };
            let bar = multi.add(ProgressBar::new(100).with_style(style.clone()));
            bar.set_prefix(text(&row, PR_DISPLAY_NAME).unwrap_or_default());
            bar.set_message(text(&row, PR_STATUS_STRING).unwrap_or_default());
            bars.insert(key.to_vec(), bar);
        }
        let bars = Arc::new(Mutex::new(bars));
        let seen = Arc::clone(&bars);
        view.advise(Arc::new(move |n: &TableNotification| {
            if n.event != TableEvent::RowModified {
                return;
            }
            let bars = seen.lock().unwrap_or_else(|e| e.into_inner());
            let Some(bar) = bars.get(&n.instance_key) else {
                return;
            };
            if let Some(status) = text(&n.row, PR_STATUS_STRING) {
                bar.set_message(status);
            }
            // -1 is "no progress to show" (between steps and at the end): keep the bar where it
            // is rather than jump back.
            if let Some(p) = long(&n.row, PR_REMOTE_PROGRESS)
                && (0..=100).contains(&p)
            {
                bar.set_position(p as u64);
            }
        }));
        Ok(Bars {
            multi,
            bars,
            _view: view,
        })
    }

    /// Fills the bars of the transports that did not fail, shows their last status, then
    /// clears them: the summary that follows is what stays on the screen.
    pub fn finish(self, session: &Session) {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        for row in session.board().rows() {
            let Some(bar) = binary(&row, PR_INSTANCE_KEY).and_then(|k| bars.get(k)) else {
                continue;
            };
            if long(&row, PR_STATUS_CODE).is_some_and(|c| c & STATUS_FAILURE == 0) {
                bar.set_position(100);
            }
            if let Some(status) = text(&row, PR_STATUS_STRING) {
                bar.set_message(status);
            }
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

fn text(row: &Row, tag: mapi::PropTag) -> Option<String> {
    match row.get_by_id(tag).map(|p| &p.value) {
        Some(PropValue::Unicode(s) | PropValue::String8(s)) => Some(s.clone()),
        _ => None,
    }
}

fn long(row: &Row, tag: mapi::PropTag) -> Option<i32> {
    match row.get_by_id(tag).map(|p| &p.value) {
        Some(PropValue::Long(v)) => Some(*v),
        _ => None,
    }
}

fn binary(row: &Row, tag: mapi::PropTag) -> Option<&[u8]> {
    match row.get_by_id(tag).map(|p| &p.value) {
        Some(PropValue::Binary(b)) => Some(b),
        _ => None,
    }
}

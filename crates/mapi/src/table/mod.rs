//! `IMAPITable` as an in-memory model: the provider's rows ([`TableData`]) and each client's view
//! of them ([`Table`]), with MAPI's semantics and error codes (mapi-reference.md §6, §7).
//!
//! - this file: [`TableData`], [`Table`], bookmarks, flags and [`hr_query_all_rows`];
//! - `sort.rs`: sort keys and the order they put rows in;
//! - `notification.rs`: `fnevTableModified` notifications and advise sinks.
//!
//! Rows are named by `PR_INSTANCE_KEY`, which every row must carry. The tables are meant for the
//! small tables MAPI reads whole (status, stores, providers, a queue): every read re-evaluates the
//! view, which costs a sort of the rows.
//!
//! # Live views
//! A view keeps no copy of the rows: every read applies its restriction and sort to the rows as
//! they are now. Its cursor and bookmarks are positions in that ordered list, moved along on
//! every change so that they stay with their row:
//! - a row that appears or disappears before a position shifts it by one;
//! - a row that appears exactly at a position is read next from there, so a cursor at the
//!   beginning, or at the end after reading everything, sees the rows added there;
//! - when the row at a position leaves the view (deleted, or no longer matching the restriction),
//!   the position moves to the row that followed it, as MAPI asks ("move the cursor to the next
//!   visible row");
//! - when the row at a position moves under the sort because its values changed, the position
//!   moves with it.
//!
//! # Locking
//! [`TableData`] and each view have their own mutex, always taken data first, then view. Sinks
//! are called after both are released, on the thread that made the change; two threads changing
//! the same table may therefore see their notifications delivered in either order.

mod notification;
mod sort;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

pub use notification::{
    ConnectionId, TABLE_CHANGED, TABLE_ERROR, TABLE_RELOAD, TABLE_RESTRICT_DONE, TABLE_ROW_ADDED,
    TABLE_ROW_DELETED, TABLE_ROW_MODIFIED, TABLE_SETCOL_DONE, TABLE_SORT_DONE, TableEvent,
    TableNotification, TableSink, fnevCriticalError, fnevExtended, fnevNewMail, fnevObjectCopied,
    fnevObjectCreated, fnevObjectDeleted, fnevObjectModified, fnevObjectMoved, fnevSearchComplete,
    fnevStatusObjectModified, fnevTableModified,
};
pub use sort::{SortKey, SortOrder, TABLE_SORT_ASCEND, TABLE_SORT_COMBINE, TABLE_SORT_DESCEND};

use crate::error::{MapiCode, MapiError, MapiResult};
use crate::restriction::Restriction;
use crate::tag::{MV_INSTANCE, PR_INSTANCE_KEY, PropTag, PropType};
use crate::value::{Row, RowSet};

/// `TBL_NOADVANCE`: `QueryRows` leaves the cursor where it was.
pub const TBL_NOADVANCE: u32 = 0x1;
/// `DIR_BACKWARD`: `FindRow` searches toward the beginning.
pub const DIR_BACKWARD: u32 = 0x1;

/// A position in one view (`BOOKMARK`): one of the three predefined ones, or one made by
/// [`Table::create_bookmark`], valid until freed or until the view is restricted or re-sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bookmark(pub u32);

impl Bookmark {
    pub const BEGINNING: Bookmark = Bookmark(0);
    pub const CURRENT: Bookmark = Bookmark(1);
    pub const END: Bookmark = Bookmark(2);
    /// Created bookmarks are numbered from here, after the predefined ones.
    const FIRST_CREATED: u32 = 3;
}

pub const BOOKMARK_BEGINNING: Bookmark = Bookmark::BEGINNING;
pub const BOOKMARK_CURRENT: Bookmark = Bookmark::CURRENT;
pub const BOOKMARK_END: Bookmark = Bookmark::END;

/// What `QueryPosition` reports: the cursor's row (0-based; the row count at the end) and the
/// fraction of the view before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TablePosition {
    pub row: u32,
    pub numerator: u32,
    /// The row count, or 1 for an empty view so that the fraction is always defined.
    pub denominator: u32,
}

/// A poisoned lock only means some thread panicked while holding it; every change here is made
/// in one step under the lock, so the state is still whole and later callers should not panic too.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn instance_key(row: &Row) -> Option<&[u8]> {
    row.get(PR_INSTANCE_KEY).and_then(|v| v.as_binary())
}

fn require_instance_key(row: &Row) -> MapiResult<Vec<u8>> {
    match instance_key(row) {
        Some(key) if !key.is_empty() => Ok(key.to_vec()),
        _ => Err(MapiError::invalid_parameter(
            "a table row must carry a non-empty PR_INSTANCE_KEY (PT_BINARY): \
             views, bookmarks and notifications name rows by it",
        )),
    }
}

#[derive(Default)]
struct DataInner {
    /// In insertion order, which is also the order of an unsorted view.
    rows: Vec<Row>,
    /// Weak, so that dropping a view is all it takes for it to stop being notified.
    views: Vec<Weak<Mutex<ViewState>>>,
}

impl DataInner {
    fn index_of(&self, key: &[u8]) -> Option<usize> {
        self.rows.iter().position(|r| instance_key(r) == Some(key))
    }
}

/// The provider's side of a table (`ITableData`): the rows themselves, shared by every view.
/// Cloning gives another handle to the same rows.
#[derive(Clone, Default)]
pub struct TableData {
    inner: Arc<Mutex<DataInner>>,
}

impl fmt::Debug for TableData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // try_lock: Debug must not block, nor deadlock when called with the lock held.
        match self.inner.try_lock() {
            Ok(data) => f
                .debug_struct("TableData")
                .field("rows", &data.rows.len())
                .field("views", &data.views.len())
                .finish(),
            Err(_) => f.write_str("TableData { <locked> }"),
        }
    }
}

impl TableData {
    pub fn new() -> TableData {
        TableData::default()
    }

    /// Adds a new row at the end of the insertion order.
    ///
    /// Errors: `MAPI_E_INVALID_PARAMETER` without a `PR_INSTANCE_KEY`; `MAPI_E_COLLISION` when a
    /// row with that key exists (use [`modify_row`](Self::modify_row) or
    /// [`replace_row`](Self::replace_row) to change it).
    pub fn add_row(&self, row: Row) -> MapiResult<()> {
        let key = require_instance_key(&row)?;
        self.change(&key, |data| {
            if data.index_of(&key).is_some() {
                return Err(MapiError::new(
                    MapiCode::Collision,
                    "a row with this PR_INSTANCE_KEY is already in the table",
                ));
            }
            data.rows.push(row);
            Ok(true)
        })
    }

    /// Merges `row` into the row with its `PR_INSTANCE_KEY`, as `ModifyStatusRow` with
    /// `STATUSROW_UPDATE` does: the columns given replace theirs (matched by property ID), the
    /// others stay. Adds the row when there is none. A merge that changes nothing notifies no one.
    ///
    /// Errors: `MAPI_E_INVALID_PARAMETER` without a `PR_INSTANCE_KEY`.
    pub fn modify_row(&self, row: Row) -> MapiResult<()> {
        let key = require_instance_key(&row)?;
        self.change(&key, |data| match data.index_of(&key) {
            Some(i) => {
                let mut merged = data.rows[i].clone();
                for prop in row.props {
                    merged.set(prop.tag, prop.value);
                }
                let changed = merged != data.rows[i];
                data.rows[i] = merged;
                Ok(changed)
            }
            None => {
                data.rows.push(row);
                Ok(true)
            }
        })
    }

    /// Replaces the whole row with `row`'s `PR_INSTANCE_KEY` (columns it lacks are gone), keeping
    /// its place in the insertion order, or adds it, as `ITableData::HrModifyRow` does.
    ///
    /// Errors: `MAPI_E_INVALID_PARAMETER` without a `PR_INSTANCE_KEY`.
    pub fn replace_row(&self, row: Row) -> MapiResult<()> {
        let key = require_instance_key(&row)?;
        self.change(&key, |data| match data.index_of(&key) {
            Some(i) if data.rows[i] == row => Ok(false),
            Some(i) => {
                data.rows[i] = row;
                Ok(true)
            }
            None => {
                data.rows.push(row);
                Ok(true)
            }
        })
    }

    /// Removes the row with this `PR_INSTANCE_KEY`.
    ///
    /// Errors: `MAPI_E_NOT_FOUND` when there is none.
    pub fn delete_row(&self, instance_key: &[u8]) -> MapiResult<()> {
        self.change(instance_key, |data| match data.index_of(instance_key) {
            Some(i) => {
                data.rows.remove(i);
                Ok(true)
            }
            None => Err(MapiError::not_found(
                "no row with this PR_INSTANCE_KEY in the table",
            )),
        })
    }

    /// Every row, whole, in insertion order.
    pub fn rows(&self) -> RowSet {
        lock(&self.inner).rows.clone()
    }

    /// The row with this `PR_INSTANCE_KEY`, whole.
    pub fn row(&self, instance_key: &[u8]) -> Option<Row> {
        let data = lock(&self.inner);
        data.index_of(instance_key).map(|i| data.rows[i].clone())
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new client view (`IMAPITable`): every column of each row, no restriction, insertion
    /// order, cursor at the beginning.
    pub fn view(&self) -> Table {
        let state = Arc::new(Mutex::new(ViewState::default()));
        let mut data = lock(&self.inner);
        // Pruned here as well as on changes, so that a table that never changes does not collect
        // the slots of every view ever opened on it.
        data.views.retain(|v| v.strong_count() > 0);
        data.views.push(Arc::downgrade(&state));
        drop(data);
        Table {
            data: self.clone(),
            state,
        }
    }

    /// Applies `mutate` (which says whether it changed anything) to the row named `key`, moves
    /// every view's positions along, then tells each view's sinks what that view saw.
    fn change(
        &self,
        key: &[u8],
        mutate: impl FnOnce(&mut DataInner) -> MapiResult<bool>,
    ) -> MapiResult<()> {
        let deliveries = {
            let mut data = lock(&self.inner);
            data.views.retain(|v| v.strong_count() > 0);
            let views: Vec<_> = data.views.iter().filter_map(Weak::upgrade).collect();
            let before: Vec<Option<usize>> = views
                .iter()
                .map(|v| lock(v).position_of(&data.rows, key))
                .collect();
            if !mutate(&mut data)? {
                return Ok(());
            }
            let mut deliveries = Vec::new();
            for (view, old) in views.iter().zip(before) {
                deliveries.extend(lock(view).apply_change(&data.rows, key, old));
            }
            deliveries
        };
        for (sink, notification) in deliveries {
            sink(&notification);
        }
        Ok(())
    }
}

/// One view's settings and positions.
struct ViewState {
    /// `None`: each row with all its own columns (status rows differ in their columns).
    columns: Option<Vec<PropTag>>,
    restriction: Option<Restriction>,
    sort: Vec<SortKey>,
    /// Index into the view's current ordered rows; the row count means "at the end".
    cursor: usize,
    bookmarks: BTreeMap<u32, usize>,
    next_bookmark: u32,
    sinks: Vec<(ConnectionId, TableSink)>,
    next_connection: u32,
}

impl Default for ViewState {
    fn default() -> ViewState {
        ViewState {
            columns: None,
            restriction: None,
            sort: Vec::new(),
            cursor: 0,
            bookmarks: BTreeMap::new(),
            next_bookmark: Bookmark::FIRST_CREATED,
            sinks: Vec::new(),
            next_connection: 1,
        }
    }
}

impl ViewState {
    /// A row whose restriction cannot be evaluated (a property of an unexpected type, say) is not
    /// in the view: MAPI calls the result of restricting on such a row undefined, and leaving it
    /// out keeps every read working rather than failing the whole table for one row.
    fn admits(&self, row: &Row) -> bool {
        self.restriction
            .as_ref()
            .is_none_or(|r| r.evaluate(row).unwrap_or(false))
    }

    /// The rows this view shows, in its order.
    fn visible<'a>(&self, rows: &'a [Row]) -> Vec<&'a Row> {
        let mut list: Vec<&Row> = rows.iter().filter(|r| self.admits(r)).collect();
        if !self.sort.is_empty() {
            // Stable, so rows equal on every key stay in insertion order.
            list.sort_by(|a, b| sort::compare_rows(a, b, &self.sort));
        }
        list
    }

    fn position_of(&self, rows: &[Row], key: &[u8]) -> Option<usize> {
        self.visible(rows)
            .iter()
            .position(|r| instance_key(r) == Some(key))
    }

    fn project(&self, row: &Row) -> Row {
        match &self.columns {
            Some(columns) => row.project(columns),
            None => row.clone(),
        }
    }

    /// Where a bookmark stands in a view of `len` rows.
    fn resolve(&self, bookmark: Bookmark, len: usize) -> MapiResult<usize> {
        match bookmark {
            Bookmark::BEGINNING => Ok(0),
            Bookmark::CURRENT => Ok(self.cursor.min(len)),
            Bookmark::END => Ok(len),
            Bookmark(id) => self
                .bookmarks
                .get(&id)
                .map(|p| (*p).min(len))
                .ok_or_else(|| {
                    MapiError::invalid_bookmark(format!(
                        "bookmark {id} was never created on this view, was freed, or was dropped \
                         by Restrict or SortTable"
                    ))
                }),
        }
    }

    /// After the row `key` changed (at `old` in this view before, wherever it is now): moves the
    /// cursor and bookmarks along (see the module's *Live views*), and says what the sinks see.
    fn apply_change(
        &mut self,
        rows: &[Row],
        key: &[u8],
        old: Option<usize>,
    ) -> Vec<(TableSink, TableNotification)> {
        let list = self.visible(rows);
        let new = list.iter().position(|r| instance_key(r) == Some(key));
        self.cursor = follow(self.cursor, old, new);
        for position in self.bookmarks.values_mut() {
            *position = follow(*position, old, new);
        }
        if self.sinks.is_empty() {
            return Vec::new();
        }
        let notification = match (old, new) {
            // Hidden by the restriction before and after: MAPI sends nothing.
            (None, None) => return Vec::new(),
            (Some(_), None) => TableNotification {
                event: TableEvent::RowDeleted,
                hresult: MapiCode::Ok,
                instance_key: key.to_vec(),
                prior_instance_key: None,
                row: Row::default(),
            },
            (old, Some(at)) => TableNotification {
                event: if old.is_some() {
                    TableEvent::RowModified
                } else {
                    TableEvent::RowAdded
                },
                hresult: MapiCode::Ok,
                instance_key: key.to_vec(),
                prior_instance_key: at
                    .checked_sub(1)
                    .and_then(|p| instance_key(list[p]))
                    .map(<[u8]>::to_vec),
                row: self.project(list[at]),
            },
        };
        self.sinks
            .iter()
            .map(|(_, sink)| (Arc::clone(sink), notification.clone()))
            .collect()
    }
}

/// Where a position goes when one row moves from `old` to `new` in the view (either `None` when
/// the row is not in it then); see the module's *Live views*.
fn follow(position: usize, old: Option<usize>, new: Option<usize>) -> usize {
    let mut position = position;
    if let Some(old) = old {
        if position == old {
            if let Some(new) = new {
                return new;
            }
            // The row left: `position` now names the row that followed it.
        } else if position > old {
            position -= 1;
        }
    }
    if let Some(new) = new
        && new < position
    {
        position += 1;
    }
    position
}

/// One client's view of a [`TableData`] (`IMAPITable`): its own columns, restriction, sort
/// order, cursor, bookmarks and advise sinks. Dropping it ends its notifications.
pub struct Table {
    data: TableData,
    state: Arc<Mutex<ViewState>>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state.try_lock() {
            Ok(st) => f
                .debug_struct("Table")
                .field("columns", &st.columns)
                .field("restriction", &st.restriction)
                .field("sort", &st.sort)
                .field("cursor", &st.cursor)
                .finish_non_exhaustive(),
            Err(_) => f.write_str("Table { <locked> }"),
        }
    }
}

impl Table {
    /// Runs `f` on the rows and this view's state, both locked, data first as everywhere.
    fn with<R>(&self, f: impl FnOnce(&[Row], &mut ViewState) -> R) -> R {
        let data = lock(&self.data.inner);
        let mut state = lock(&self.state);
        f(&data.rows, &mut state)
    }

    /// `SetColumns`: the columns, in order, of every row this view returns from now on; a row
    /// without one gets `PT_ERROR` / `MAPI_E_NOT_FOUND` in its place. The cursor stays.
    ///
    /// Errors: `MAPI_E_INVALID_PARAMETER` for no columns; `MAPI_E_TOO_COMPLEX` for a column with
    /// `MV_INSTANCE` (these tables do not expand a multi-valued column into one row per value).
    pub fn set_columns(&mut self, columns: &[PropTag]) -> MapiResult<()> {
        if columns.is_empty() {
            return Err(MapiError::invalid_parameter(
                "SetColumns needs at least one column",
            ));
        }
        if let Some(tag) = columns.iter().find(|t| t.type_code() & MV_INSTANCE != 0) {
            return Err(MapiError::too_complex(format!(
                "column {tag} asks for one row per value (MV_INSTANCE), which this table does \
                 not do; ask for the multi-valued column without MV_INSTANCE"
            )));
        }
        self.with(|_, st| st.columns = Some(columns.to_vec()));
        Ok(())
    }

    /// `QueryColumns`: the columns set, or before any `SetColumns` every column some row has,
    /// in the order first met.
    pub fn query_columns(&self) -> Vec<PropTag> {
        self.with(|rows, st| match &st.columns {
            Some(columns) => columns.clone(),
            None => {
                let mut all: Vec<PropTag> = Vec::new();
                for tag in rows.iter().flat_map(Row::tags) {
                    if !all.contains(&tag) {
                        all.push(tag);
                    }
                }
                all
            }
        })
    }

    /// `Restrict`: shows only the rows `restriction` matches (`None` shows all). Either way the
    /// cursor goes back to the beginning and every created bookmark is dropped.
    ///
    /// Errors: whatever [`Restriction::validate`] reports for a restriction this table cannot
    /// evaluate (`MAPI_E_TOO_COMPLEX`); the view is then left as it was.
    pub fn restrict(&mut self, restriction: Option<Restriction>) -> MapiResult<()> {
        if let Some(r) = &restriction {
            r.validate()?;
        }
        self.with(|_, st| {
            st.restriction = restriction;
            st.cursor = 0;
            st.bookmarks.clear();
        });
        Ok(())
    }

    /// `SortTable`: orders the view by `keys`, the first deciding first; rows without a key's
    /// column come after those with it, and rows equal on every key stay in insertion order. No
    /// keys means insertion order. The cursor goes back to the beginning and every created
    /// bookmark is dropped, as MAPI invalidates them on a sort.
    ///
    /// Errors: `MAPI_E_TOO_COMPLEX` for a key on an `MV_INSTANCE` or `PT_OBJECT` column, which
    /// have no order here.
    pub fn sort_table(&mut self, keys: &[SortKey]) -> MapiResult<()> {
        if let Some(key) = keys.iter().find(|k| {
            k.tag.type_code() & MV_INSTANCE != 0 || k.tag.prop_type() == Some(PropType::Object)
        }) {
            return Err(MapiError::too_complex(format!(
                "cannot sort on {}: objects and MV_INSTANCE columns have no order in this table",
                key.tag
            )));
        }
        self.with(|_, st| {
            st.sort = keys.to_vec();
            st.cursor = 0;
            st.bookmarks.clear();
        });
        Ok(())
    }

    /// `QuerySortOrder`.
    pub fn query_sort_order(&self) -> Vec<SortKey> {
        self.with(|_, st| st.sort.clone())
    }

    /// `QueryRows(count, 0)`: see [`query_rows_flags`](Self::query_rows_flags).
    pub fn query_rows(&mut self, count: i32) -> MapiResult<RowSet> {
        self.query_rows_flags(count, 0)
    }

    /// `QueryRows`: up to `count` rows from the cursor, cut to the view's columns. A positive
    /// count reads forward and leaves the cursor after the last row returned; a negative one
    /// reads the rows before the cursor, returned in table order, and leaves the cursor on the
    /// first of them, so that repeated backward reads page toward the beginning. With
    /// `TBL_NOADVANCE` the cursor does not move. Fewer rows than asked (none at either end) is
    /// not an error.
    ///
    /// Errors: `MAPI_E_INVALID_PARAMETER` for a count of 0; `MAPI_E_UNKNOWN_FLAGS`.
    pub fn query_rows_flags(&mut self, count: i32, flags: u32) -> MapiResult<RowSet> {
        if count == 0 {
            return Err(MapiError::invalid_parameter(
                "QueryRows needs a non-zero row count: positive reads forward, negative backward",
            ));
        }
        if flags & !TBL_NOADVANCE != 0 {
            return Err(MapiError::unknown_flags(format!(
                "QueryRows takes only TBL_NOADVANCE, got flags 0x{flags:08X}"
            )));
        }
        Ok(self.with(|rows, st| {
            let list = st.visible(rows);
            let cursor = st.cursor.min(list.len());
            let wanted = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            let (start, end) = if count > 0 {
                (cursor, cursor.saturating_add(wanted).min(list.len()))
            } else {
                (cursor.saturating_sub(wanted), cursor)
            };
            let out: RowSet = list[start..end].iter().map(|r| st.project(r)).collect();
            if flags & TBL_NOADVANCE == 0 {
                st.cursor = if count > 0 { end } else { start };
            }
            out
        }))
    }

    /// `SeekRow`: moves the cursor `rows` rows from `origin`, stopping at either end, and returns
    /// how many rows it actually moved (negative when backward).
    ///
    /// Errors: `MAPI_E_INVALID_BOOKMARK`.
    pub fn seek_row(&mut self, origin: Bookmark, rows: i32) -> MapiResult<i32> {
        self.with(|data, st| {
            let len = st.visible(data).len();
            let start = st.resolve(origin, len)?;
            let target = (start as i64 + i64::from(rows)).clamp(0, len as i64) as usize;
            st.cursor = target;
            // Within i32 because it is at most |rows| away from start.
            Ok((target as i64 - start as i64) as i32)
        })
    }

    /// `CreateBookmark`: marks the cursor's position; the mark stays with its row as rows are
    /// added and removed (and moves to the next row if its row goes).
    pub fn create_bookmark(&mut self) -> Bookmark {
        self.with(|data, st| {
            let len = st.visible(data).len();
            let id = st.next_bookmark;
            // Four billion bookmarks on one view would wrap; reusing a long-freed number then is
            // harmless, reusing a predefined one is not.
            st.next_bookmark = st
                .next_bookmark
                .wrapping_add(1)
                .max(Bookmark::FIRST_CREATED);
            st.bookmarks.insert(id, st.cursor.min(len));
            Bookmark(id)
        })
    }

    /// `FreeBookmark`. Freeing a predefined bookmark does nothing.
    ///
    /// Errors: `MAPI_E_INVALID_BOOKMARK` for one not (or no longer) on this view.
    pub fn free_bookmark(&mut self, bookmark: Bookmark) -> MapiResult<()> {
        if bookmark.0 < Bookmark::FIRST_CREATED {
            return Ok(());
        }
        self.with(|_, st| match st.bookmarks.remove(&bookmark.0) {
            Some(_) => Ok(()),
            None => Err(MapiError::invalid_bookmark(format!(
                "bookmark {} is not on this view (already freed, or dropped by Restrict or \
                 SortTable)",
                bookmark.0
            ))),
        })
    }

    /// `FindRow`: moves the cursor to the first row `restriction` matches, searching forward from
    /// the row at `origin`, or with `backward` toward the beginning from the row before it (so
    /// from `BOOKMARK_END` backward starts at the last row). The whole row is matched, not just
    /// the view's columns; a Property restriction on `PR_INSTANCE_KEY` finds a row by key.
    ///
    /// Errors: `MAPI_E_NOT_FOUND` (the cursor stays); `MAPI_E_INVALID_BOOKMARK`; what
    /// [`Restriction::validate`] reports.
    pub fn find_row(
        &mut self,
        restriction: &Restriction,
        origin: Bookmark,
        backward: bool,
    ) -> MapiResult<()> {
        restriction.validate()?;
        self.with(|data, st| {
            let list = st.visible(data);
            let start = st.resolve(origin, list.len())?;
            let matches = |i: &usize| restriction.evaluate(list[*i]).unwrap_or(false);
            let found = if backward {
                (0..start).rev().find(matches)
            } else {
                (start..list.len()).find(matches)
            };
            match found {
                Some(i) => {
                    st.cursor = i;
                    Ok(())
                }
                None => Err(MapiError::not_found(if backward {
                    "no row before the bookmark matches the restriction"
                } else {
                    "no row from the bookmark on matches the restriction"
                })),
            }
        })
    }

    /// `GetRowCount`: the rows in the view now, that is those passing its restriction.
    pub fn get_row_count(&self) -> u32 {
        self.with(|rows, st| u32::try_from(st.visible(rows).len()).unwrap_or(u32::MAX))
    }

    /// `QueryPosition`.
    pub fn query_position(&self) -> TablePosition {
        self.with(|rows, st| {
            let len = st.visible(rows).len();
            let row = u32::try_from(st.cursor.min(len)).unwrap_or(u32::MAX);
            let count = u32::try_from(len).unwrap_or(u32::MAX);
            TablePosition {
                row,
                numerator: row,
                denominator: count.max(1),
            }
        })
    }

    /// `Advise(fnevTableModified)`: from now on `sink` hears of every change to the rows as this
    /// view sees it — `TABLE_ROW_ADDED` for a row that comes into the view, `TABLE_ROW_DELETED`
    /// for one that leaves it, `TABLE_ROW_MODIFIED` for one that changes and stays — and nothing
    /// for rows its restriction hides before and after. The row is cut to the columns set when
    /// the change happens. A change racing with dropping the view may still reach the sink once.
    pub fn advise(&mut self, sink: TableSink) -> ConnectionId {
        self.with(|_, st| {
            let id = ConnectionId(st.next_connection);
            st.next_connection = st.next_connection.wrapping_add(1).max(1);
            st.sinks.push((id, sink));
            id
        })
    }

    /// `Unadvise`.
    ///
    /// Errors: `MAPI_E_NOT_FOUND` for a connection not (or no longer) on this view.
    pub fn unadvise(&mut self, connection: ConnectionId) -> MapiResult<()> {
        self.with(|_, st| {
            let before = st.sinks.len();
            st.sinks.retain(|(id, _)| *id != connection);
            if st.sinks.len() == before {
                Err(MapiError::not_found(format!(
                    "no advise connection {} on this view",
                    connection.0
                )))
            } else {
                Ok(())
            }
        })
    }
}

/// `HrQueryAllRows`: sets `columns`, `restriction` and `sort` on `table` (each `None` leaves the
/// view's own), goes to the beginning and returns every row of the view, leaving the cursor at
/// the end. `max_rows` is a safety cap, 0 meaning none: more matching rows than that is an error,
/// never a truncated answer.
///
/// Errors: `MAPI_E_TABLE_TOO_BIG` (the cursor is then at the beginning); those of
/// [`Table::set_columns`], [`Table::restrict`] and [`Table::sort_table`].
pub fn hr_query_all_rows(
    table: &mut Table,
    columns: Option<&[PropTag]>,
    restriction: Option<&Restriction>,
    sort: Option<&[SortKey]>,
    max_rows: usize,
) -> MapiResult<RowSet> {
    if let Some(columns) = columns {
        table.set_columns(columns)?;
    }
    if let Some(restriction) = restriction {
        table.restrict(Some(restriction.clone()))?;
    }
    if let Some(sort) = sort {
        table.sort_table(sort)?;
    }
    // One locked step, so that the count checked is the count returned.
    table.with(|rows, st| {
        st.cursor = 0;
        let list = st.visible(rows);
        if max_rows != 0 && list.len() > max_rows {
            return Err(MapiError::table_too_big(format!(
                "{} rows match, more than the {max_rows} allowed; page through the table with \
                 QueryRows, or narrow the restriction",
                list.len()
            )));
        }
        let out: RowSet = list.iter().map(|r| st.project(r)).collect();
        st.cursor = out.len();
        Ok(out)
    })
}

//! `IMAPITable` over a view of the status table.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mapi::tag::MV_FLAG;
use mapi::{Bookmark, MapiError, MapiResult, PropTag, Table};
use mapispool::Session;

use crate::com::*;
use crate::convert;
use crate::session::SessionState;
use crate::types::*;

pub struct TableState {
    state: Arc<SessionState>,
    session: Option<Session>,
    view: Mutex<Table>,
    /// The columns as the client named them (string widths included); None = the defaults.
    wants: Arc<Mutex<Option<Vec<u32>>>>,
    /// `MAPI_UNICODE` at `GetStatusTable`: the width of strings in the default columns.
    unicode: bool,
}

impl Drop for TableState {
    fn drop(&mut self) {
        // A session clone may be the last one: drop it where its tasks' runtime is current.
        let _guard = self.state.rt.enter();
        drop(self.session.take());
    }
}

impl TableState {
    fn view(&self) -> MutexGuard<'_, Table> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client's idea of the columns: those it set, else the defaults in the width
    /// `MAPI_UNICODE` chose.
    fn wants(&self) -> Vec<u32> {
        if let Some(w) = &*self.wants.lock().unwrap_or_else(PoisonError::into_inner) {
            return w.clone();
        }
        let cols = self.view().query_columns();
        cols.into_iter().map(|t| self.width(t)).collect()
    }

    fn width(&self, t: PropTag) -> u32 {
        const PT_UNICODE: u16 = 0x1F;
        const PT_STRING8: u16 = 0x1E;
        let ty = t.type_code() & !MV_FLAG;
        if !self.unicode && ty == PT_UNICODE {
            t.with_type((t.type_code() & MV_FLAG) | PT_STRING8).0
        } else {
            t.0
        }
    }
}

type Inner = TableState;

pub fn new(state: Arc<SessionState>, session: Session, unicode: bool) -> *mut Header {
    let view = session.status_table();
    new_object(
        vtbl(),
        &IIDS,
        TableState {
            state,
            session: Some(session),
            view: Mutex::new(view),
            wants: Arc::new(Mutex::new(None)),
            unicode,
        },
    )
}

static IIDS: [GUID; 1] = [IID_IMAPITABLE];

pub fn vtbl() -> *const c_void {
    (&VTBL as *const IMAPITableVtbl).cast()
}

/// The table object behind `this`, if `this` is one.
pub fn me<'a>(this: *mut Header) -> MapiResult<&'a Inner> {
    // SAFETY: `object` checks the vtable before treating `this` as a table.
    Ok(&unsafe { object::<Inner>(this, vtbl()) }?.inner)
}

const TBL_ALL_COLUMNS: u32 = 0x1;
const TBL_ASYNC: u32 = 0x1;
const TBL_BATCH: u32 = 0x2;
const TBL_NOADVANCE: u32 = 0x1;
const DIR_BACKWARD: u32 = 0x1;
const TBLSTAT_COMPLETE: u32 = 0;
const TBLTYPE_DYNAMIC: u32 = 2;

fn flags_ok(flags: u32, allowed: u32, method: &str) -> MapiResult<()> {
    if flags & !allowed != 0 {
        return Err(MapiError::unknown_flags(format!(
            "{method}: unknown flags 0x{:08X}",
            flags & !allowed
        )));
    }
    Ok(())
}

unsafe extern "C" fn set_columns(
    this: *mut Header,
    tags: *const SPropTagArray,
    flags: ULONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        flags_ok(flags, TBL_ASYNC | TBL_BATCH, "SetColumns")?;
        // SAFETY: the caller's tag array.
        let wants = unsafe { convert::tags_from_c(tags) }?;
        let cols: Vec<PropTag> = wants.iter().map(|t| convert::rust_tag(*t)).collect();
        me.view().set_columns(&cols)?;
        *me.wants.lock().unwrap_or_else(PoisonError::into_inner) = Some(wants);
        Ok(S_OK)
    })
}

unsafe extern "C" fn query_columns(
    this: *mut Header,
    flags: ULONG,
    out: *mut *mut SPropTagArray,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        // SAFETY: the caller's out-pointer.
        unsafe { clear(out) };
        flags_ok(flags, TBL_ALL_COLUMNS, "QueryColumns")?;
        let tags = if flags & TBL_ALL_COLUMNS != 0 {
            // Every column any row has, in first-seen order.
            let mut all: Vec<u32> = Vec::new();
            for row in me
                .session
                .as_ref()
                .map(|s| s.board().rows())
                .unwrap_or_default()
            {
                for t in row.tags() {
                    let t = me.width(t);
                    if !all.contains(&t) {
                        all.push(t);
                    }
                }
            }
            all
        } else {
            me.wants()
        };
        let p = convert::tags_to_c(&tags)?;
        // SAFETY: as above.
        if let Err(e) = unsafe { put(out, p, "lppPropTagArray") } {
            // SAFETY: not handed out.
            unsafe { crate::alloc::free(p.cast()) };
            return Err(e);
        }
        Ok(S_OK)
    })
}

unsafe extern "C" fn get_row_count(this: *mut Header, flags: ULONG, out: *mut ULONG) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        flags_ok(flags, 0, "GetRowCount")?;
        let n = me.view().get_row_count();
        // SAFETY: the caller's out-pointer.
        unsafe { put(out, n, "lpulCount") }?;
        Ok(S_OK)
    })
}

fn bookmark(bk: ULONG_PTR) -> MapiResult<Bookmark> {
    u32::try_from(bk)
        .map(Bookmark)
        .map_err(|_| MapiError::invalid_bookmark(format!("{bk} is not a bookmark of this table")))
}

unsafe extern "C" fn seek_row(
    this: *mut Header,
    bk: ULONG_PTR,
    rows: LONG,
    sought: *mut LONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        let n = me.view().seek_row(bookmark(bk)?, rows)?;
        if !sought.is_null() {
            // SAFETY: the caller's optional out-pointer, non-null.
            unsafe { *sought = n };
        }
        Ok(S_OK)
    })
}

unsafe extern "C" fn seek_row_approx(this: *mut Header, num: ULONG, den: ULONG) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if den == 0 {
            return Err(MapiError::invalid_parameter(
                "SeekRowApprox: the denominator is 0",
            ));
        }
        let mut view = me.view();
        let count = u64::from(view.get_row_count());
        let row = (count * u64::from(num) / u64::from(den)).min(count);
        view.seek_row(Bookmark::BEGINNING, i32::try_from(row).unwrap_or(i32::MAX))?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn query_position(
    this: *mut Header,
    row: *mut ULONG,
    num: *mut ULONG,
    den: *mut ULONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if row.is_null() || num.is_null() || den.is_null() {
            return Err(MapiError::invalid_parameter(
                "QueryPosition: lpulRow, lpulNumerator and lpulDenominator must not be NULL",
            ));
        }
        let p = me.view().query_position();
        // SAFETY: all three checked non-null.
        unsafe {
            *row = p.row;
            *num = p.numerator;
            *den = p.denominator;
        }
        Ok(S_OK)
    })
}

unsafe extern "C" fn find_row(
    this: *mut Header,
    res: *const SRestriction,
    bk: ULONG_PTR,
    flags: ULONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        flags_ok(flags, DIR_BACKWARD, "FindRow")?;
        // SAFETY: the caller's restriction tree.
        let r = unsafe { convert::restriction_from_c(res) }?;
        me.view()
            .find_row(&r, bookmark(bk)?, flags & DIR_BACKWARD != 0)?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn restrict(
    this: *mut Header,
    res: *const SRestriction,
    flags: ULONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        flags_ok(flags, TBL_ASYNC | TBL_BATCH, "Restrict")?;
        let r = if res.is_null() {
            None
        } else {
            // SAFETY: the caller's restriction tree.
            Some(unsafe { convert::restriction_from_c(res) }?)
        };
        me.view().restrict(r)?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn create_bookmark(this: *mut Header, out: *mut ULONG_PTR) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if out.is_null() {
            return Err(MapiError::invalid_parameter("lpbkPosition is NULL"));
        }
        let bk = me.view().create_bookmark();
        // SAFETY: checked non-null.
        unsafe { *out = bk.0 as ULONG_PTR };
        Ok(S_OK)
    })
}

unsafe extern "C" fn free_bookmark(this: *mut Header, bk: ULONG_PTR) -> HRESULT {
    call(this, || {
        me(this)?.view().free_bookmark(bookmark(bk)?)?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn sort_table(
    this: *mut Header,
    sorts: *const SSortOrderSet,
    flags: ULONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        flags_ok(flags, TBL_ASYNC | TBL_BATCH, "SortTable")?;
        // SAFETY: the caller's sort order set.
        let keys = unsafe { convert::sorts_from_c(sorts) }?;
        me.view().sort_table(&keys)?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn query_sort_order(this: *mut Header, out: *mut *mut SSortOrderSet) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if out.is_null() {
            return Err(MapiError::invalid_parameter("lppSortCriteria is NULL"));
        }
        let keys = me.view().query_sort_order();
        let p = convert::sorts_to_c(&keys)?;
        // SAFETY: checked non-null.
        unsafe { *out = p };
        Ok(S_OK)
    })
}

/// The view's next `count` rows as a C row set, in the client's column widths.
pub fn query_rows_c(me: &Inner, count: LONG, flags: ULONG) -> MapiResult<*mut SRowSet> {
    flags_ok(flags, TBL_NOADVANCE, "QueryRows")?;
    let wants = me.wants();
    let rows = me.view().query_rows_flags(count, flags)?;
    convert::rows_to_c(&rows, Some(&wants))
}

unsafe extern "C" fn query_rows(
    this: *mut Header,
    count: LONG,
    flags: ULONG,
    out: *mut *mut SRowSet,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if out.is_null() {
            return Err(MapiError::invalid_parameter("lppRows is NULL"));
        }
        // SAFETY: checked non-null.
        unsafe { *out = std::ptr::null_mut() };
        let set = query_rows_c(me, count, flags)?;
        // SAFETY: checked non-null.
        unsafe { *out = set };
        Ok(S_OK)
    })
}

/// `HrQueryAllRows` on one of our tables.
pub fn query_all_rows(
    me: &Inner,
    tags: *const SPropTagArray,
    res: *const SRestriction,
    sorts: *const SSortOrderSet,
    max: LONG,
) -> MapiResult<*mut SRowSet> {
    if !tags.is_null() {
        // SAFETY: the caller's tag array.
        let wants = unsafe { convert::tags_from_c(tags) }?;
        let cols: Vec<PropTag> = wants.iter().map(|t| convert::rust_tag(*t)).collect();
        me.view().set_columns(&cols)?;
        *me.wants.lock().unwrap_or_else(PoisonError::into_inner) = Some(wants);
    }
    let r = if res.is_null() {
        None
    } else {
        // SAFETY: the caller's restriction tree.
        Some(unsafe { convert::restriction_from_c(res) }?)
    };
    let keys = if sorts.is_null() {
        None
    } else {
        // SAFETY: the caller's sort order set.
        Some(unsafe { convert::sorts_from_c(sorts) }?)
    };
    let max = usize::try_from(max.max(0)).unwrap_or(0);
    let rows =
        mapi::table::hr_query_all_rows(&mut me.view(), None, r.as_ref(), keys.as_deref(), max)?;
    convert::rows_to_c(&rows, Some(&me.wants()))
}

unsafe extern "C" fn get_status(
    this: *mut Header,
    status: *mut ULONG,
    kind: *mut ULONG,
) -> HRESULT {
    call(this, || {
        me(this)?;
        if status.is_null() || kind.is_null() {
            return Err(MapiError::invalid_parameter(
                "lpulTableStatus or lpulTableType is NULL",
            ));
        }
        // Every operation here completes before it returns, and the rows follow the spooler.
        // SAFETY: both checked non-null.
        unsafe {
            *status = TBLSTAT_COMPLETE;
            *kind = TBLTYPE_DYNAMIC;
        }
        Ok(S_OK)
    })
}

unsafe extern "C" fn abort(this: *mut Header) -> HRESULT {
    // Nothing is ever pending (every call is synchronous), so there is nothing to stop.
    call(this, || me(this).map(|_| S_OK))
}

unsafe extern "C" fn wait_for_completion(
    this: *mut Header,
    _flags: ULONG,
    _timeout: ULONG,
    status: *mut ULONG,
) -> HRESULT {
    call(this, || {
        me(this)?;
        if !status.is_null() {
            // SAFETY: the caller's optional out-pointer, non-null.
            unsafe { *status = TBLSTAT_COMPLETE };
        }
        Ok(S_OK)
    })
}

/// The application's `IMAPIAdviseSink`, as seen through its vtable.
#[repr(C)]
pub struct AdviseSink {
    vtbl: *const AdviseSinkVtbl,
}

#[repr(C)]
struct AdviseSinkVtbl {
    query_interface:
        unsafe extern "C" fn(*mut AdviseSink, *const GUID, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "C" fn(*mut AdviseSink) -> ULONG,
    release: unsafe extern "C" fn(*mut AdviseSink) -> ULONG,
    on_notify: unsafe extern "C" fn(*mut AdviseSink, ULONG, *mut NOTIFICATION) -> ULONG,
}

/// One reference to a sink, given back when the registration that holds it goes.
struct SinkRef(*mut AdviseSink);

// SAFETY: MAPI's advise sinks are called on whatever thread the change happens on (mapidefs.h
// says so for this library); the application's sink is written for that, and AddRef/Release
// are thread-safe by COM's rules.
unsafe impl Send for SinkRef {}
// SAFETY: as above.
unsafe impl Sync for SinkRef {}

impl Drop for SinkRef {
    fn drop(&mut self) {
        // SAFETY: we hold one reference, taken in Advise.
        unsafe { ((*(*self.0).vtbl).release)(self.0) };
    }
}

const FNEV_TABLE_MODIFIED: u32 = 0x100;

impl SinkRef {
    /// Calls `OnNotify` with one table notification in the client's column widths; the memory
    /// lives until it returns.
    fn notify(&self, n: &mapi::TableNotification, wants: &Mutex<Option<Vec<u32>>>, unicode: bool) {
        let row_wants: Vec<u32> = match &*wants.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(w) if w.len() == n.row.props.len() => w.clone(),
            _ => n.row.tags().map(|t| default_width(t, unicode)).collect(),
        };
        let key = |k: Option<&Vec<u8>>| match k {
            Some(k) => mapi::Prop::new(
                mapi::tag::PR_INSTANCE_KEY,
                mapi::PropValue::Binary(k.clone()),
            ),
            None => mapi::Prop::new(PropTag(0x0000_0001), mapi::PropValue::Null),
        };
        let index = key(Some(&n.instance_key));
        let prior = key(n.prior_instance_key.as_ref());
        let Ok((keys, _)) = convert::props_to_c(&[index, prior], None) else {
            return;
        };
        let Ok((props, count)) = convert::props_to_c(&n.row.props, Some(&row_wants)) else {
            // SAFETY: ours, not handed out.
            unsafe { crate::alloc::free(keys.cast()) };
            return;
        };
        // SAFETY: keys holds two values, props `count`; both stay alive until after OnNotify.
        unsafe {
            let mut notification = NOTIFICATION {
                ulEventType: FNEV_TABLE_MODIFIED,
                ulAlignPad: 0,
                info: NotificationInfo {
                    tab: TABLE_NOTIFICATION {
                        ulTableEvent: n.event.value(),
                        hResult: n.hresult.value() as HRESULT,
                        propIndex: *keys,
                        propPrior: *keys.add(1),
                        row: SRowPlain {
                            ulAdrEntryPad: 0,
                            cValues: count,
                            lpProps: props,
                        },
                        ulPad: 0,
                    },
                },
            };
            ((*(*self.0).vtbl).on_notify)(self.0, 1, &mut notification);
            crate::alloc::free(props.cast());
            crate::alloc::free(keys.cast());
        }
    }
}

fn default_width(t: PropTag, unicode: bool) -> u32 {
    let ty = t.type_code() & !MV_FLAG;
    if !unicode && ty == 0x1F {
        t.with_type((t.type_code() & MV_FLAG) | 0x1E).0
    } else {
        t.0
    }
}

unsafe extern "C" fn advise(
    this: *mut Header,
    mask: ULONG,
    sink: *mut AdviseSink,
    connection: *mut ULONG_PTR,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if sink.is_null() || connection.is_null() {
            return Err(MapiError::invalid_parameter(
                "lpAdviseSink or lpulConnection is NULL",
            ));
        }
        if mask != FNEV_TABLE_MODIFIED {
            return Err(MapiError::invalid_parameter(
                "a table's Advise takes fnevTableModified, and only it",
            ));
        }
        // SAFETY: a non-null sink is an IMAPIAdviseSink; the reference is ours until the
        // registration goes (Unadvise or the table's last Release).
        let held = unsafe {
            ((*(*sink).vtbl).add_ref)(sink);
            SinkRef(sink)
        };
        let wants = me.wants.clone();
        let unicode = me.unicode;
        let id = me
            .view()
            .advise(Arc::new(move |n: &mapi::TableNotification| {
                // A panic must not unwind into the code that changed the table.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    held.notify(n, &wants, unicode)
                }));
            }));
        // SAFETY: checked non-null.
        unsafe { *connection = id.0 as ULONG_PTR };
        Ok(S_OK)
    })
}

unsafe extern "C" fn unadvise(this: *mut Header, connection: ULONG_PTR) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        let id = u32::try_from(connection).map_err(|_| {
            MapiError::not_found(format!("no advise connection {connection} on this table"))
        })?;
        me.view().unadvise(mapi::table::ConnectionId(id))?;
        Ok(S_OK)
    })
}

crate::no_support_fns! {
    expand_row, "IMAPITable::ExpandRow (status tables are not categorized)", (a: ULONG, b: *mut c_void, c: ULONG, d: ULONG, e: *mut c_void, f: *mut c_void);
    collapse_row, "IMAPITable::CollapseRow (status tables are not categorized)", (a: ULONG, b: *mut c_void, c: ULONG, d: *mut c_void);
    get_collapse_state, "IMAPITable::GetCollapseState (status tables are not categorized)", (a: ULONG, b: ULONG, c: *mut c_void, d: *mut c_void, e: *mut c_void);
    set_collapse_state, "IMAPITable::SetCollapseState (status tables are not categorized)", (a: ULONG, b: ULONG, c: *mut c_void, d: *mut c_void);
}

/// `IMAPITable`'s vtable, in mapidefs.h's order.
#[repr(C)]
#[allow(non_snake_case)]
pub struct IMAPITableVtbl {
    pub QueryInterface: QueryInterfaceFn,
    pub AddRef: RefFn,
    pub Release: RefFn,
    pub GetLastError: GetLastErrorFn,
    pub Advise:
        unsafe extern "C" fn(*mut Header, ULONG, *mut AdviseSink, *mut ULONG_PTR) -> HRESULT,
    pub Unadvise: unsafe extern "C" fn(*mut Header, ULONG_PTR) -> HRESULT,
    pub GetStatus: unsafe extern "C" fn(*mut Header, *mut ULONG, *mut ULONG) -> HRESULT,
    pub SetColumns: unsafe extern "C" fn(*mut Header, *const SPropTagArray, ULONG) -> HRESULT,
    pub QueryColumns: unsafe extern "C" fn(*mut Header, ULONG, *mut *mut SPropTagArray) -> HRESULT,
    pub GetRowCount: unsafe extern "C" fn(*mut Header, ULONG, *mut ULONG) -> HRESULT,
    pub SeekRow: unsafe extern "C" fn(*mut Header, ULONG_PTR, LONG, *mut LONG) -> HRESULT,
    pub SeekRowApprox: unsafe extern "C" fn(*mut Header, ULONG, ULONG) -> HRESULT,
    pub QueryPosition:
        unsafe extern "C" fn(*mut Header, *mut ULONG, *mut ULONG, *mut ULONG) -> HRESULT,
    pub FindRow:
        unsafe extern "C" fn(*mut Header, *const SRestriction, ULONG_PTR, ULONG) -> HRESULT,
    pub Restrict: unsafe extern "C" fn(*mut Header, *const SRestriction, ULONG) -> HRESULT,
    pub CreateBookmark: unsafe extern "C" fn(*mut Header, *mut ULONG_PTR) -> HRESULT,
    pub FreeBookmark: unsafe extern "C" fn(*mut Header, ULONG_PTR) -> HRESULT,
    pub SortTable: unsafe extern "C" fn(*mut Header, *const SSortOrderSet, ULONG) -> HRESULT,
    pub QuerySortOrder: unsafe extern "C" fn(*mut Header, *mut *mut SSortOrderSet) -> HRESULT,
    pub QueryRows: unsafe extern "C" fn(*mut Header, LONG, ULONG, *mut *mut SRowSet) -> HRESULT,
    pub Abort: unsafe extern "C" fn(*mut Header) -> HRESULT,
    pub ExpandRow: unsafe extern "C" fn(
        *mut Header,
        ULONG,
        *mut c_void,
        ULONG,
        ULONG,
        *mut c_void,
        *mut c_void,
    ) -> HRESULT,
    pub CollapseRow:
        unsafe extern "C" fn(*mut Header, ULONG, *mut c_void, ULONG, *mut c_void) -> HRESULT,
    pub WaitForCompletion: unsafe extern "C" fn(*mut Header, ULONG, ULONG, *mut ULONG) -> HRESULT,
    pub GetCollapseState: unsafe extern "C" fn(
        *mut Header,
        ULONG,
        ULONG,
        *mut c_void,
        *mut c_void,
        *mut c_void,
    ) -> HRESULT,
    pub SetCollapseState:
        unsafe extern "C" fn(*mut Header, ULONG, ULONG, *mut c_void, *mut c_void) -> HRESULT,
}

static VTBL: IMAPITableVtbl = IMAPITableVtbl {
    QueryInterface: query_interface,
    AddRef: add_ref,
    Release: release,
    GetLastError: get_last_error,
    Advise: advise,
    Unadvise: unadvise,
    GetStatus: get_status,
    SetColumns: set_columns,
    QueryColumns: query_columns,
    GetRowCount: get_row_count,
    SeekRow: seek_row,
    SeekRowApprox: seek_row_approx,
    QueryPosition: query_position,
    FindRow: find_row,
    Restrict: restrict,
    CreateBookmark: create_bookmark,
    FreeBookmark: free_bookmark,
    SortTable: sort_table,
    QuerySortOrder: query_sort_order,
    QueryRows: query_rows,
    Abort: abort,
    ExpandRow: expand_row,
    CollapseRow: collapse_row,
    WaitForCompletion: wait_for_completion,
    GetCollapseState: get_collapse_state,
    SetCollapseState: set_collapse_state,
};

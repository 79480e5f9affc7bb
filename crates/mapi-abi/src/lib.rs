//! MAPI's C and C++ interface to mapispool: `libmapispool.so`, for programs written from
//! Microsoft's MAPI documentation against the headers in `include/`.
//!
//! # Layout
//! - this file: the exported `MAPI*` functions, `FreeProws`, `HrQueryAllRows`.
//! - [`types`]: MAPI's structures with C's layout (checked against gcc by `tests/c_api.rs`).
//! - [`alloc`]: `MAPIAllocateBuffer`'s chained allocations.
//! - [`convert`]: Rust values ↔ `SPropValue`, `SRowSet`, `SRestriction`, `SSortOrderSet`.
//! - [`com`]: what every object shares: vtable first, reference count, `GetLastError`, the
//!   runtime every blocking call runs on, and the panic barrier.
//! - [`session`], [`table`], [`status`]: `IMAPISession`, `IMAPITable`, `IMAPIStatus`.
//!
//! Every call blocks until done and may be made from any thread except from inside a
//! notification callback; no panic crosses into C (it becomes `MAPI_E_CALL_FAILED`).

// The exported names are MAPI's.
#![allow(non_snake_case)]

mod alloc;
mod com;
mod convert;
mod session;
mod status;
mod table;
pub mod types;

use std::ffi::{c_char, c_void};
use std::mem::{offset_of, size_of};

use mapi::{MapiCode, MapiError};

use com::*;
use session::IMAPISessionVtbl;
use status::IMAPIStatusVtbl;
use table::IMAPITableVtbl;
use types::*;

/// `MAPIInitialize`: `lpMapiInit` is NULL or a `MAPIINIT_0` of version `MAPI_INIT_VERSION` (0).
/// Calls nest; each needs its `MAPIUninitialize`.
///
/// # Safety
/// `lpMapiInit` is NULL or points to a `MAPIINIT_0`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MAPIInitialize(lp_mapi_init: *const MAPIINIT_0) -> HRESULT {
    call_free(|| {
        if !lp_mapi_init.is_null() {
            // SAFETY: a non-null argument is a MAPIINIT_0.
            let init = unsafe { &*lp_mapi_init };
            if init.ulVersion != 0 {
                return Err(MapiError::new(
                    MapiCode::Version,
                    "MAPIINIT_0.ulVersion must be MAPI_INIT_VERSION (0)",
                ));
            }
        }
        com::initialize()?;
        Ok(S_OK)
    })
}

/// `MAPIUninitialize`: the last one stops the runtime (once no session holds it).
#[unsafe(no_mangle)]
pub extern "C" fn MAPIUninitialize() {
    let _ = std::panic::catch_unwind(com::uninitialize);
}

/// `MAPILogonEx`: see [`session::logon`] and the README for how a profile name is found.
///
/// # Safety
/// `lpszProfileName` is NULL or a NUL-terminated string (`wchar_t` with `MAPI_UNICODE`); `lppSession` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MAPILogonEx(
    _ul_ui_param: ULONG_PTR,
    lpsz_profile_name: *const c_void,
    _lpsz_password: *const c_void,
    fl_flags: ULONG,
    lpp_session: *mut *mut com::Header,
) -> HRESULT {
    call_free(|| session::logon(lpsz_profile_name, fl_flags, lpp_session))
}

/// `MAPIAllocateBuffer`.
///
/// # Safety
/// `lppBuffer` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MAPIAllocateBuffer(
    cb_size: ULONG,
    lpp_buffer: *mut *mut c_void,
) -> HRESULT {
    call_free(|| {
        if lpp_buffer.is_null() {
            return Err(MapiError::invalid_parameter("lppBuffer is NULL"));
        }
        let p = alloc::allocate(cb_size);
        // SAFETY: checked non-null.
        unsafe { *lpp_buffer = p };
        if p.is_null() {
            return Err(MapiError::new(MapiCode::NotEnoughMemory, "out of memory"));
        }
        Ok(S_OK)
    })
}

/// `MAPIAllocateMore`: `lpObject` is a buffer from `MAPIAllocateBuffer`; the new block is
/// freed with it.
///
/// # Safety
/// `lpObject` comes from `MAPIAllocateBuffer` and is not freed; `lppBuffer` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MAPIAllocateMore(
    cb_size: ULONG,
    lp_object: *mut c_void,
    lpp_buffer: *mut *mut c_void,
) -> HRESULT {
    call_free(|| {
        if lpp_buffer.is_null() || lp_object.is_null() {
            return Err(MapiError::invalid_parameter(
                "lpObject or lppBuffer is NULL",
            ));
        }
        // SAFETY: lpObject is documented to come from MAPIAllocateBuffer.
        let p = unsafe { alloc::allocate_more(cb_size, lp_object) };
        // SAFETY: checked non-null.
        unsafe { *lpp_buffer = p };
        if p.is_null() {
            return Err(MapiError::new(
                MapiCode::NotEnoughMemory,
                "out of memory, or lpObject is not a live MAPIAllocateBuffer buffer",
            ));
        }
        Ok(S_OK)
    })
}

/// `MAPIFreeBuffer`: frees a buffer and everything `MAPIAllocateMore` linked to it. NULL is
/// fine; a pointer that is not a live `MAPIAllocateBuffer` buffer is refused.
///
/// # Safety
/// `lpBuffer` is NULL or comes from `MAPIAllocateBuffer`, and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn MAPIFreeBuffer(lp_buffer: *mut c_void) -> ULONG {
    // SAFETY: lpBuffer is documented to come from MAPIAllocateBuffer.
    if unsafe { alloc::free(lp_buffer) } {
        0
    } else {
        MapiCode::InvalidParameter.value()
    }
}

/// `FreeProws`: each row's properties, then the set.
///
/// # Safety
/// `lpRows` is NULL or a row set from this library, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FreeProws(lp_rows: *mut SRowSet) {
    // SAFETY: a row set from this library (each row's lpProps a MAPIAllocateBuffer buffer).
    let _ = std::panic::catch_unwind(|| unsafe { convert::free_rows(lp_rows) });
}

/// `FreePadrlist`: an `ADRLIST` is laid out as an `SRowSet` (`ADRENTRY` = `SRow`).
///
/// # Safety
/// as `FreeProws`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FreePadrlist(lp_adrlist: *mut SRowSet) {
    // SAFETY: as FreeProws.
    unsafe { FreeProws(lp_adrlist) }
}

/// `HrQueryAllRows`: sets the columns, restriction and sort order given (each NULL leaves the
/// table's own), and returns every row; more than `crowsMax` (0 = no cap) is
/// `MAPI_E_TABLE_TOO_BIG`. Works on mapispool's tables; any other table is
/// `MAPI_E_NO_SUPPORT`.
///
/// # Safety
/// each pointer is NULL or points to what MAPI documents for it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn HrQueryAllRows(
    lp_table: *mut com::Header,
    lp_prop_tags: *const SPropTagArray,
    lp_restriction: *const SRestriction,
    lp_sort_order_set: *const SSortOrderSet,
    crows_max: LONG,
    lpp_rows: *mut *mut SRowSet,
) -> HRESULT {
    let this = if com::is_ours(lp_table) {
        lp_table
    } else {
        std::ptr::null_mut()
    };
    call(this, || {
        if lpp_rows.is_null() || lp_table.is_null() {
            return Err(MapiError::invalid_parameter("lpTable or lppRows is NULL"));
        }
        // SAFETY: checked non-null.
        unsafe { *lpp_rows = std::ptr::null_mut() };
        if this.is_null()
            || !std::ptr::eq(
                // SAFETY: one of our objects.
                unsafe { (*this).vtbl },
                table::vtbl(),
            )
        {
            return Err(MapiError::no_support(
                "HrQueryAllRows works on tables from mapispool (IMAPISession::GetStatusTable)",
            ));
        }
        let me = table::me(this)?;
        let set = table::query_all_rows(
            me,
            lp_prop_tags,
            lp_restriction,
            lp_sort_order_set,
            crows_max,
        )?;
        // SAFETY: checked non-null.
        unsafe { *lpp_rows = set };
        Ok(S_OK)
    })
}

macro_rules! layout {
    ($($ty:ident { $($field:ident $(. $sub:ident)*),* })*) => {
        &[
            $(
                LayoutEntry { name: concat!(stringify!($ty), "\0").as_ptr().cast::<c_char>(), size: size_of::<$ty>(), offset: 0 },
                $(
                    LayoutEntry {
                        name: concat!(stringify!($ty), ".", stringify!($field) $(, ".", stringify!($sub))*, "\0").as_ptr().cast::<c_char>(),
                        size: 0,
                        offset: offset_of!($ty, $field $(. $sub)*),
                    },
                )*
            )*
        ]
    };
}

struct Table(&'static [LayoutEntry]);
// SAFETY: the entries point only at 'static string literals.
unsafe impl Sync for Table {}

static LAYOUT: Table = Table(layout! {
    GUID { Data1, Data2, Data3, Data4 }
    FILETIME { dwLowDateTime, dwHighDateTime }
    SBinary { cb, lpb }
    PV { }
    SPropValue { ulPropTag, dwAlignPad, Value }
    SPropTagArray { cValues, aulPropTag }
    SRow { ulAdrEntryPad, cValues, lpProps }
    SRowSet { cRows, aRow }
    SSortOrder { ulPropTag, ulOrder }
    SSortOrderSet { cSorts, cCategories, cExpanded, aSort }
    ENTRYID { abFlags, ab }
    MAPIUID { ab }
    MAPIERROR { ulVersion, lpszError, lpszComponent, ulLowLevelError, ulContext }
    MAPIINIT_0 { ulVersion, ulFlags }
    SAndRestriction { cRes, lpRes }
    SNotRestriction { ulReserved, lpRes }
    SContentRestriction { ulFuzzyLevel, ulPropTag, lpProp }
    SPropertyRestriction { relop, ulPropTag, lpProp }
    SComparePropsRestriction { relop, ulPropTag1, ulPropTag2 }
    SBitMaskRestriction { relBMR, ulPropTag, ulMask }
    SSizeRestriction { relop, ulPropTag, cb }
    SExistRestriction { ulReserved1, ulPropTag, ulReserved2 }
    SSubRestriction { ulSubObject, lpRes }
    SCommentRestriction { cValues, lpRes, lpProp }
    SRestriction { rt, res }
    TABLE_NOTIFICATION { ulTableEvent, hResult, propIndex, propPrior, row, ulPad }
    NOTIFICATION { ulEventType, ulAlignPad, info }
    IMAPISessionVtbl { QueryInterface, AddRef, Release, GetLastError, GetMsgStoresTable, OpenMsgStore, OpenAddressBook, OpenProfileSection, GetStatusTable, OpenEntry, CompareEntryIDs, Advise, Unadvise, MessageOptions, QueryDefaultMessageOpt, EnumAdrTypes, QueryIdentity, Logoff, SetDefaultStore, AdminServices, ShowForm, PrepareForm }
    IMAPITableVtbl { QueryInterface, AddRef, Release, GetLastError, Advise, Unadvise, GetStatus, SetColumns, QueryColumns, GetRowCount, SeekRow, SeekRowApprox, QueryPosition, FindRow, Restrict, CreateBookmark, FreeBookmark, SortTable, QuerySortOrder, QueryRows, Abort, ExpandRow, CollapseRow, WaitForCompletion, GetCollapseState, SetCollapseState }
    IMAPIStatusVtbl { QueryInterface, AddRef, Release, GetLastError, SaveChanges, GetProps, GetPropList, OpenProperty, SetProps, DeleteProps, CopyTo, CopyProps, GetNamesFromIDs, GetIDsFromNames, ValidateState, SettingsDialog, ChangePassword, FlushQueues }
});

/// The sizes and offsets of MAPI's structures as this library lays them out, for the layout
/// test to compare with what a C compiler makes of the headers. `*count` gets the length.
///
/// # Safety
/// `count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapispool_abi_layout(count: *mut usize) -> *const LayoutEntry {
    if !count.is_null() {
        // SAFETY: checked non-null.
        unsafe { *count = LAYOUT.0.len() };
    }
    LAYOUT.0.as_ptr()
}

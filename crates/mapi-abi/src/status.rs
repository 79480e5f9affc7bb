//! `IMAPIStatus` (and the read-only `IMAPIProp` under it) for status-table rows.

use std::ffi::c_void;
use std::sync::Arc;

use mapi::tag::MV_FLAG;
use mapi::{EntryId, MapiCode, MapiError, PropTag};
use mapispool::{FlushFlags, Status};

use crate::com::*;
use crate::convert;
use crate::session::{self, SessionState};
use crate::types::*;

pub struct StatusState {
    state: Arc<SessionState>,
    status: Option<Status>,
}

impl Drop for StatusState {
    fn drop(&mut self) {
        // The Status holds a session clone, possibly the last: drop it inside the runtime.
        let _guard = self.state.rt.enter();
        drop(self.status.take());
    }
}

impl StatusState {
    fn status(&self) -> Result<&Status, MapiError> {
        self.status
            .as_ref()
            .ok_or_else(|| MapiError::call_failed("the status object is being released"))
    }
}

pub fn new(state: Arc<SessionState>, status: Status) -> *mut Header {
    new_object(
        vtbl(),
        &IIDS,
        StatusState {
            state,
            status: Some(status),
        },
    )
}

static IIDS: [GUID; 2] = [IID_IMAPIPROP, IID_IMAPISTATUS];

pub fn vtbl() -> *const c_void {
    (&VTBL as *const IMAPIStatusVtbl).cast()
}

fn me<'a>(this: *mut Header) -> Result<&'a StatusState, MapiError> {
    // SAFETY: `object` checks the vtable before treating `this` as a status object.
    Ok(&unsafe { object::<StatusState>(this, vtbl()) }?.inner)
}

unsafe extern "C" fn get_props(
    this: *mut Header,
    tags: *const SPropTagArray,
    flags: ULONG,
    count: *mut ULONG,
    out: *mut *mut SPropValue,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if count.is_null() || out.is_null() {
            return Err(MapiError::invalid_parameter(
                "lpcValues or lppPropArray is NULL",
            ));
        }
        // SAFETY: both checked non-null.
        unsafe {
            *count = 0;
            *out = std::ptr::null_mut();
        }
        if flags & !MAPI_UNICODE != 0 {
            return Err(MapiError::unknown_flags("GetProps takes only MAPI_UNICODE"));
        }
        let row = me.status()?.props();
        let (row, wants) = if tags.is_null() {
            // Every property; strings in the width MAPI_UNICODE asks for.
            let wants: Vec<u32> = row.tags().map(|t| width(t, flags)).collect();
            (row, wants)
        } else {
            // SAFETY: the caller's tag array.
            let wants = unsafe { convert::tags_from_c(tags) }?;
            (convert::project(&row, &wants), wants)
        };
        let missing = row
            .props
            .iter()
            .any(|p| matches!(p.value, mapi::PropValue::Error(_)));
        let (props, n) = convert::props_to_c(&row.props, Some(&wants))?;
        // SAFETY: both checked non-null.
        unsafe {
            *count = n;
            *out = props;
        }
        Ok(if missing {
            MapiCode::WarnErrorsReturned.value() as HRESULT
        } else {
            S_OK
        })
    })
}

fn width(t: PropTag, flags: u32) -> u32 {
    let ty = t.type_code() & !MV_FLAG;
    if flags & MAPI_UNICODE == 0 && ty == 0x1F {
        t.with_type((t.type_code() & MV_FLAG) | 0x1E).0
    } else {
        t.0
    }
}

unsafe extern "C" fn get_prop_list(
    this: *mut Header,
    flags: ULONG,
    out: *mut *mut SPropTagArray,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if out.is_null() {
            return Err(MapiError::invalid_parameter("lppPropTagArray is NULL"));
        }
        // SAFETY: checked non-null.
        unsafe { *out = std::ptr::null_mut() };
        if flags & !MAPI_UNICODE != 0 {
            return Err(MapiError::unknown_flags(
                "GetPropList takes only MAPI_UNICODE",
            ));
        }
        let tags: Vec<u32> = me
            .status()?
            .props()
            .tags()
            .map(|t| width(t, flags))
            .collect();
        let p = convert::tags_to_c(&tags)?;
        // SAFETY: checked non-null.
        unsafe { *out = p };
        Ok(S_OK)
    })
}

unsafe extern "C" fn validate_state(this: *mut Header, _ui: ULONG_PTR, flags: ULONG) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        block_on(&me.state.rt, me.status()?.validate_state(flags))??;
        Ok(S_OK)
    })
}

unsafe extern "C" fn settings_dialog(this: *mut Header, _ui: ULONG_PTR, flags: ULONG) -> HRESULT {
    call(this, || {
        me(this)?.status()?.settings_dialog(flags)?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn change_password(
    this: *mut Header,
    _old: *mut c_void,
    _new: *mut c_void,
    flags: ULONG,
) -> HRESULT {
    call(this, || {
        // Refused before the strings are read: no object here has a password to change.
        me(this)?.status()?.change_password("", "", flags)?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn flush_queues(
    this: *mut Header,
    _ui: ULONG_PTR,
    cb: ULONG,
    target: *const ENTRYID,
    flags: ULONG,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if me.state.no_mail {
            return Err(MapiError::no_support(
                "this session was logged on with MAPI_NO_MAIL: it sends and receives nothing",
            ));
        }
        let target: Option<EntryId> = if target.is_null() && cb == 0 {
            None
        } else {
            // SAFETY: the caller's entry ID of cb bytes.
            Some(unsafe { session::entry_id(cb, target) }?)
        };
        let report = block_on(
            &me.state.rt,
            me.status()?
                .flush_queues(target.as_ref(), FlushFlags(flags)),
        )??;
        if report.is_complete() {
            Ok(S_OK)
        } else {
            // Done, but not all of it: some message waits or a transport failed. The status
            // table's PR_STATUS_STRING says which.
            Ok(MapiCode::WarnPartialCompletion.value() as HRESULT)
        }
    })
}

crate::no_support_fns! {
    save_changes, "IMAPIProp::SaveChanges (status objects are read-only)", (a: ULONG);
    open_property, "IMAPIProp::OpenProperty", (a: ULONG, b: *mut c_void, c: ULONG, d: ULONG, e: *mut c_void);
    set_props, "IMAPIProp::SetProps (status objects are read-only)", (a: ULONG, b: *mut c_void, c: *mut c_void);
    delete_props, "IMAPIProp::DeleteProps (status objects are read-only)", (a: *mut c_void, b: *mut c_void);
    copy_to, "IMAPIProp::CopyTo", (a: ULONG, b: *mut c_void, c: *mut c_void, d: ULONG_PTR, e: *mut c_void, f: *mut c_void, g: *mut c_void, h: ULONG, i: *mut c_void);
    copy_props, "IMAPIProp::CopyProps", (a: *mut c_void, b: ULONG_PTR, c: *mut c_void, d: *mut c_void, e: *mut c_void, f: ULONG, g: *mut c_void);
    get_names_from_ids, "IMAPIProp::GetNamesFromIDs (no named properties)", (a: *mut c_void, b: *mut c_void, c: ULONG, d: *mut c_void, e: *mut c_void);
    get_ids_from_names, "IMAPIProp::GetIDsFromNames (no named properties)", (a: ULONG, b: *mut c_void, c: ULONG, d: *mut c_void);
}

/// `IMAPIStatus`'s vtable: IUnknown, IMAPIProp, then IMAPIStatus's own, in mapidefs.h's order.
#[repr(C)]
#[allow(non_snake_case)]
pub struct IMAPIStatusVtbl {
    pub QueryInterface: QueryInterfaceFn,
    pub AddRef: RefFn,
    pub Release: RefFn,
    pub GetLastError: GetLastErrorFn,
    pub SaveChanges: unsafe extern "C" fn(*mut Header, ULONG) -> HRESULT,
    pub GetProps: unsafe extern "C" fn(
        *mut Header,
        *const SPropTagArray,
        ULONG,
        *mut ULONG,
        *mut *mut SPropValue,
    ) -> HRESULT,
    pub GetPropList: unsafe extern "C" fn(*mut Header, ULONG, *mut *mut SPropTagArray) -> HRESULT,
    pub OpenProperty:
        unsafe extern "C" fn(*mut Header, ULONG, *mut c_void, ULONG, ULONG, *mut c_void) -> HRESULT,
    pub SetProps: unsafe extern "C" fn(*mut Header, ULONG, *mut c_void, *mut c_void) -> HRESULT,
    pub DeleteProps: unsafe extern "C" fn(*mut Header, *mut c_void, *mut c_void) -> HRESULT,
    pub CopyTo: unsafe extern "C" fn(
        *mut Header,
        ULONG,
        *mut c_void,
        *mut c_void,
        ULONG_PTR,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        ULONG,
        *mut c_void,
    ) -> HRESULT,
    pub CopyProps: unsafe extern "C" fn(
        *mut Header,
        *mut c_void,
        ULONG_PTR,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        ULONG,
        *mut c_void,
    ) -> HRESULT,
    pub GetNamesFromIDs: unsafe extern "C" fn(
        *mut Header,
        *mut c_void,
        *mut c_void,
        ULONG,
        *mut c_void,
        *mut c_void,
    ) -> HRESULT,
    pub GetIDsFromNames:
        unsafe extern "C" fn(*mut Header, ULONG, *mut c_void, ULONG, *mut c_void) -> HRESULT,
    pub ValidateState: unsafe extern "C" fn(*mut Header, ULONG_PTR, ULONG) -> HRESULT,
    pub SettingsDialog: unsafe extern "C" fn(*mut Header, ULONG_PTR, ULONG) -> HRESULT,
    pub ChangePassword:
        unsafe extern "C" fn(*mut Header, *mut c_void, *mut c_void, ULONG) -> HRESULT,
    pub FlushQueues:
        unsafe extern "C" fn(*mut Header, ULONG_PTR, ULONG, *const ENTRYID, ULONG) -> HRESULT,
}

static VTBL: IMAPIStatusVtbl = IMAPIStatusVtbl {
    QueryInterface: query_interface,
    AddRef: add_ref,
    Release: release,
    GetLastError: get_last_error,
    SaveChanges: save_changes,
    GetProps: get_props,
    GetPropList: get_prop_list,
    OpenProperty: open_property,
    SetProps: set_props,
    DeleteProps: delete_props,
    CopyTo: copy_to,
    CopyProps: copy_props,
    GetNamesFromIDs: get_names_from_ids,
    GetIDsFromNames: get_ids_from_names,
    ValidateState: validate_state,
    SettingsDialog: settings_dialog,
    ChangePassword: change_password,
    FlushQueues: flush_queues,
};

//! `IMAPISession` and `MAPILogonEx`.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use mapi::{EntryId, MapiCode, MapiError, MapiResult};
use mapispool::{FlushFlags, Profile, Session};
use tokio::runtime::Runtime;

use crate::com::*;
use crate::convert;
use crate::status;
use crate::table;
use crate::types::*;

/// What a session object, and the tables and status objects opened from it, share.
pub struct SessionState {
    pub rt: Arc<Runtime>,
    session: Mutex<Option<Session>>,
    /// Logged on with `MAPI_NO_MAIL`: no flushes through this session.
    pub no_mail: bool,
}

impl SessionState {
    /// The Rust session; `MAPI_E_END_OF_SESSION` after `Logoff`.
    pub fn session(&self) -> MapiResult<Session> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                MapiError::new(MapiCode::EndOfSession, "the session has been logged off")
            })
    }

    fn logoff(&self) -> MapiResult<()> {
        let taken = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(s) = taken {
            block_on(&self.rt, s.logoff())?;
        }
        Ok(())
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        // Released without Logoff: log off now, so that the store is closed cleanly.
        if self.logoff().is_err() {
            let _guard = self.rt.enter();
            drop(
                self.session
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
        }
    }
}

type Inner = Arc<SessionState>;

fn me<'a>(this: *mut Header) -> MapiResult<&'a Inner> {
    // SAFETY: `object` checks the vtable before treating `this` as a session.
    Ok(&unsafe { object::<Inner>(this, vtbl()) }?.inner)
}

pub fn vtbl() -> *const c_void {
    (&VTBL as *const IMAPISessionVtbl).cast()
}

// Logon flags (mapix.h).
pub const MAPI_LOGON_UI: u32 = 0x1;
pub const MAPI_NEW_SESSION: u32 = 0x2;
pub const MAPI_ALLOW_OTHERS: u32 = 0x8;
pub const MAPI_EXPLICIT_PROFILE: u32 = 0x10;
pub const MAPI_EXTENDED: u32 = 0x20;
pub const MAPI_USE_DEFAULT: u32 = 0x40;
pub const MAPI_FORCE_DOWNLOAD: u32 = 0x1000;
pub const MAPI_SERVICE_UI_ALWAYS: u32 = 0x2000;
pub const MAPI_NO_MAIL: u32 = 0x8000;
pub const MAPI_PASSWORD_UI: u32 = 0x2_0000;
const KNOWN_LOGON_FLAGS: u32 = MAPI_LOGON_UI
    | MAPI_NEW_SESSION
    | MAPI_ALLOW_OTHERS
    | MAPI_EXPLICIT_PROFILE
    | MAPI_EXTENDED
    | MAPI_USE_DEFAULT
    | MAPI_FORCE_DOWNLOAD
    | MAPI_SERVICE_UI_ALWAYS
    | MAPI_NO_MAIL
    | MAPI_PASSWORD_UI
    | MAPI_UNICODE;

/// The session logged on with `MAPI_ALLOW_OTHERS`, which later logons without
/// `MAPI_NEW_SESSION` share. A raw pointer: the slot holds no reference; the session's
/// destruction clears it (under this lock, see [`try_add_ref`]).
struct Shared(*mut Header);
// SAFETY: the pointer is only dereferenced through the atomic refcount, under the lock.
unsafe impl Send for Shared {}
static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// The profile file a `MAPILogonEx` profile name stands for: a path when it has a `/` or ends
/// in `.toml`, else `<name>.toml` in mapispool's config directory (`$XDG_CONFIG_HOME/mapispool`).
pub fn profile_path(name: Option<&str>, flags: u32) -> MapiResult<PathBuf> {
    match name.filter(|n| !n.is_empty()) {
        Some(n) if n.contains('/') || n.ends_with(".toml") => Ok(PathBuf::from(n)),
        Some(n) => {
            let dir = directories::ProjectDirs::from("", "", "mapispool")
                .map(|d| d.config_dir().to_path_buf())
                .ok_or_else(|| {
                    MapiError::logon_failed(
                        "no home directory, so no config directory to find profiles in",
                    )
                })?;
            Ok(dir.join(format!("{n}.toml")))
        }
        None if flags & MAPI_EXPLICIT_PROFILE != 0 && flags & MAPI_USE_DEFAULT == 0 => {
            Err(MapiError::logon_failed(
                "MAPI_EXPLICIT_PROFILE without a profile name: name one, or add MAPI_USE_DEFAULT",
            ))
        }
        None => Profile::locate(None).map_err(|e| MapiError::logon_failed(e.to_string())),
    }
}

/// `MAPILogonEx`.
pub fn logon(
    profile_name: *const c_void,
    flags: u32,
    out: *mut *mut Header,
) -> MapiResult<HRESULT> {
    if out.is_null() {
        return Err(MapiError::invalid_parameter("lppSession is NULL"));
    }
    // SAFETY: checked non-null.
    unsafe { clear(out) };
    if flags & !KNOWN_LOGON_FLAGS != 0 {
        return Err(MapiError::unknown_flags(format!(
            "MAPILogonEx flags 0x{:08X} are not MAPI logon flags",
            flags & !KNOWN_LOGON_FLAGS
        )));
    }
    let rt = runtime()?;
    if flags & MAPI_NEW_SESSION == 0 {
        let shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Shared(p)) = &*shared
            && try_add_ref(*p)
        {
            // SAFETY: out checked non-null; we took a reference for the caller.
            unsafe { *out = *p };
            return Ok(S_OK);
        }
    }
    let name = if profile_name.is_null() {
        None
    } else {
        // SAFETY: a non-null profile name is a NUL-terminated string of the width
        // MAPI_UNICODE says.
        Some(unsafe { convert::tstring(profile_name, flags & MAPI_UNICODE != 0) }?)
    };
    // No dialog can be shown here: MAPI_LOGON_UI and friends only matter when something must
    // be asked, and then the logon fails with the reason instead.
    let path = profile_path(name.as_deref(), flags)?;
    let profile = Profile::load(&path).map_err(|e| {
        MapiError::logon_failed(format!(
            "{e}{}",
            if flags & (MAPI_LOGON_UI | MAPI_PASSWORD_UI | MAPI_SERVICE_UI_ALWAYS) != 0 {
                " (MAPI_LOGON_UI: mapispool has no logon dialog; write the profile file)"
            } else {
                ""
            }
        ))
    })?;
    let session = block_on(&rt, Session::logon(profile))??;
    if flags & MAPI_FORCE_DOWNLOAD != 0 && flags & MAPI_NO_MAIL == 0 {
        let spooler = session.spooler_status();
        block_on(
            &rt,
            spooler.flush_queues(None, FlushFlags::DOWNLOAD | FlushFlags::NO_UI),
        )??;
    }
    let state = Arc::new(SessionState {
        rt,
        session: Mutex::new(Some(session)),
        no_mail: flags & MAPI_NO_MAIL != 0,
    });
    let obj = new_object(vtbl(), &IIDS, state);
    if flags & MAPI_ALLOW_OTHERS != 0 {
        *SHARED.lock().unwrap_or_else(PoisonError::into_inner) = Some(Shared(obj));
    }
    // SAFETY: out checked non-null.
    unsafe { *out = obj };
    Ok(S_OK)
}

static IIDS: [GUID; 1] = [IID_IMAPISESSION];

unsafe extern "C" fn session_release(this: *mut Header) -> ULONG {
    // The shared slot must not hand out a session whose count reached 0: clear it first,
    // under the lock that logon takes.
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: the caller gives up a reference it holds.
    let left = unsafe { release(this) };
    if left == 0 && shared.as_ref().is_some_and(|s| s.0 == this) {
        *shared = None;
    }
    left
}

unsafe extern "C" fn get_status_table(
    this: *mut Header,
    flags: ULONG,
    out: *mut *mut Header,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        if out.is_null() {
            return Err(MapiError::invalid_parameter("lppTable is NULL"));
        }
        // SAFETY: checked non-null.
        unsafe { *out = std::ptr::null_mut() };
        if flags & !MAPI_UNICODE != 0 {
            return Err(MapiError::unknown_flags(
                "GetStatusTable takes only MAPI_UNICODE",
            ));
        }
        // Made only once the out-pointer is known to be good, so that it cannot leak.
        let t = table::new(me.clone(), me.session()?, flags & MAPI_UNICODE != 0);
        // SAFETY: checked non-null.
        unsafe { *out = t };
        Ok(S_OK)
    })
}

const MAPI_MODIFY: u32 = 0x1;
const MAPI_DEFERRED_ERRORS: u32 = 0x8;
const MAPI_BEST_ACCESS: u32 = 0x10;
const MAPI_STATUS: u32 = 10;

/// The bytes of an `ENTRYID` of `cb` bytes.
///
/// # Safety
/// `p` is null or valid for `cb` bytes.
pub unsafe fn entry_id(cb: ULONG, p: *const ENTRYID) -> MapiResult<EntryId> {
    if p.is_null() || cb < 4 {
        return Err(MapiError::invalid_parameter(
            "the entry ID is NULL or shorter than its 4 flag bytes",
        ));
    }
    // SAFETY: per the contract.
    Ok(EntryId::from_bytes(unsafe {
        std::slice::from_raw_parts(p.cast::<u8>(), cb as usize).to_vec()
    }))
}

unsafe extern "C" fn open_entry(
    this: *mut Header,
    cb: ULONG,
    lp_entry_id: *const ENTRYID,
    iid: *const GUID,
    flags: ULONG,
    obj_type: *mut ULONG,
    out: *mut *mut Header,
) -> HRESULT {
    call(this, || {
        let me = me(this)?;
        // SAFETY: out is the caller's out-pointer.
        unsafe { clear(out) };
        if obj_type.is_null() || out.is_null() {
            return Err(MapiError::invalid_parameter(
                "lpulObjType or lppUnk is NULL",
            ));
        }
        if flags & !(MAPI_MODIFY | MAPI_DEFERRED_ERRORS | MAPI_BEST_ACCESS) != 0 {
            return Err(MapiError::unknown_flags(
                "OpenEntry takes MAPI_MODIFY, MAPI_DEFERRED_ERRORS and MAPI_BEST_ACCESS",
            ));
        }
        // SAFETY: the caller's entry ID of cb bytes.
        let id = unsafe { entry_id(cb, lp_entry_id) }?;
        if !iid.is_null() {
            // SAFETY: a non-null interface ID is a GUID.
            let iid = unsafe { *iid };
            if ![IID_IUNKNOWN, IID_IMAPIPROP, IID_IMAPISTATUS].contains(&iid) {
                return Err(MapiError::new(
                    MapiCode::InterfaceNotSupported,
                    "status objects offer IMAPIStatus, IMAPIProp and IUnknown",
                ));
            }
        }
        // Status objects are read-only; MAPI_MODIFY gets the read-only object, as providers
        // may answer.
        let status = me.session()?.open_status(&id)?;
        let obj = status::new(me.clone(), status);
        // SAFETY: both out-pointers checked non-null.
        unsafe {
            *obj_type = MAPI_STATUS;
            *out = obj;
        }
        Ok(S_OK)
    })
}

unsafe extern "C" fn compare_entry_ids(
    this: *mut Header,
    cb1: ULONG,
    id1: *const ENTRYID,
    cb2: ULONG,
    id2: *const ENTRYID,
    flags: ULONG,
    result: *mut ULONG,
) -> HRESULT {
    call(this, || {
        me(this)?;
        if flags != 0 {
            return Err(MapiError::unknown_flags("CompareEntryIDs takes no flags"));
        }
        // SAFETY: the caller's entry IDs and their sizes.
        let (a, b) = unsafe { (entry_id(cb1, id1)?, entry_id(cb2, id2)?) };
        // SAFETY: the caller's out-pointer.
        unsafe { put(result, u32::from(a == b), "lpulResult") }?;
        Ok(S_OK)
    })
}

unsafe extern "C" fn logoff(
    this: *mut Header,
    _ui: ULONG_PTR,
    _flags: ULONG,
    _reserved: ULONG,
) -> HRESULT {
    call(this, || {
        // MAPI_LOGOFF_SHARED / MAPI_LOGOFF_UI concern other clients and dialogs; a logoff here
        // ends this session's use of the store and is the same either way.
        me(this)?.logoff()?;
        Ok(S_OK)
    })
}

crate::no_support_fns! {
    get_msg_stores_table, "IMAPISession::GetMsgStoresTable", (a: ULONG, b: *mut c_void);
    open_msg_store, "IMAPISession::OpenMsgStore", (a: ULONG_PTR, b: ULONG, c: *mut c_void, d: *mut c_void, e: ULONG, f: *mut c_void);
    open_address_book, "IMAPISession::OpenAddressBook", (a: ULONG_PTR, b: *mut c_void, c: ULONG, d: *mut c_void);
    open_profile_section, "IMAPISession::OpenProfileSection", (a: *mut c_void, b: *mut c_void, c: ULONG, d: *mut c_void);
    advise, "IMAPISession::Advise", (a: ULONG, b: *mut c_void, c: ULONG, d: *mut c_void, e: *mut c_void);
    unadvise, "IMAPISession::Unadvise", (a: ULONG_PTR);
    message_options, "IMAPISession::MessageOptions", (a: ULONG_PTR, b: ULONG, c: *mut c_void, d: *mut c_void);
    query_default_message_opt, "IMAPISession::QueryDefaultMessageOpt", (a: *mut c_void, b: ULONG, c: *mut c_void, d: *mut c_void);
    enum_adr_types, "IMAPISession::EnumAdrTypes", (a: ULONG, b: *mut c_void, c: *mut c_void);
    query_identity, "IMAPISession::QueryIdentity", (a: *mut c_void, b: *mut c_void);
    set_default_store, "IMAPISession::SetDefaultStore", (a: ULONG, b: ULONG, c: *mut c_void);
    admin_services, "IMAPISession::AdminServices", (a: ULONG, b: *mut c_void);
    show_form, "IMAPISession::ShowForm", (a: ULONG_PTR, b: *mut c_void, c: *mut c_void, d: *mut c_void, e: ULONG, f: *mut c_void, g: ULONG, h: ULONG, i: ULONG, j: ULONG, k: *mut c_void);
    prepare_form, "IMAPISession::PrepareForm", (a: *mut c_void, b: *mut c_void, c: *mut c_void);
}

/// `IMAPISession`'s vtable, in mapix.h's order.
#[repr(C)]
#[allow(non_snake_case)]
pub struct IMAPISessionVtbl {
    pub QueryInterface: QueryInterfaceFn,
    pub AddRef: RefFn,
    pub Release: RefFn,
    pub GetLastError: GetLastErrorFn,
    pub GetMsgStoresTable: unsafe extern "C" fn(*mut Header, ULONG, *mut c_void) -> HRESULT,
    pub OpenMsgStore: unsafe extern "C" fn(
        *mut Header,
        ULONG_PTR,
        ULONG,
        *mut c_void,
        *mut c_void,
        ULONG,
        *mut c_void,
    ) -> HRESULT,
    pub OpenAddressBook:
        unsafe extern "C" fn(*mut Header, ULONG_PTR, *mut c_void, ULONG, *mut c_void) -> HRESULT,
    pub OpenProfileSection:
        unsafe extern "C" fn(*mut Header, *mut c_void, *mut c_void, ULONG, *mut c_void) -> HRESULT,
    pub GetStatusTable: unsafe extern "C" fn(*mut Header, ULONG, *mut *mut Header) -> HRESULT,
    pub OpenEntry: unsafe extern "C" fn(
        *mut Header,
        ULONG,
        *const ENTRYID,
        *const GUID,
        ULONG,
        *mut ULONG,
        *mut *mut Header,
    ) -> HRESULT,
    pub CompareEntryIDs: unsafe extern "C" fn(
        *mut Header,
        ULONG,
        *const ENTRYID,
        ULONG,
        *const ENTRYID,
        ULONG,
        *mut ULONG,
    ) -> HRESULT,
    pub Advise: unsafe extern "C" fn(
        *mut Header,
        ULONG,
        *mut c_void,
        ULONG,
        *mut c_void,
        *mut c_void,
    ) -> HRESULT,
    pub Unadvise: unsafe extern "C" fn(*mut Header, ULONG_PTR) -> HRESULT,
    pub MessageOptions:
        unsafe extern "C" fn(*mut Header, ULONG_PTR, ULONG, *mut c_void, *mut c_void) -> HRESULT,
    pub QueryDefaultMessageOpt:
        unsafe extern "C" fn(*mut Header, *mut c_void, ULONG, *mut c_void, *mut c_void) -> HRESULT,
    pub EnumAdrTypes: unsafe extern "C" fn(*mut Header, ULONG, *mut c_void, *mut c_void) -> HRESULT,
    pub QueryIdentity: unsafe extern "C" fn(*mut Header, *mut c_void, *mut c_void) -> HRESULT,
    pub Logoff: unsafe extern "C" fn(*mut Header, ULONG_PTR, ULONG, ULONG) -> HRESULT,
    pub SetDefaultStore: unsafe extern "C" fn(*mut Header, ULONG, ULONG, *mut c_void) -> HRESULT,
    pub AdminServices: unsafe extern "C" fn(*mut Header, ULONG, *mut c_void) -> HRESULT,
    pub ShowForm: unsafe extern "C" fn(
        *mut Header,
        ULONG_PTR,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        ULONG,
        *mut c_void,
        ULONG,
        ULONG,
        ULONG,
        ULONG,
        *mut c_void,
    ) -> HRESULT,
    pub PrepareForm:
        unsafe extern "C" fn(*mut Header, *mut c_void, *mut c_void, *mut c_void) -> HRESULT,
}

static VTBL: IMAPISessionVtbl = IMAPISessionVtbl {
    QueryInterface: query_interface,
    AddRef: add_ref,
    Release: session_release,
    GetLastError: get_last_error,
    GetMsgStoresTable: get_msg_stores_table,
    OpenMsgStore: open_msg_store,
    OpenAddressBook: open_address_book,
    OpenProfileSection: open_profile_section,
    GetStatusTable: get_status_table,
    OpenEntry: open_entry,
    CompareEntryIDs: compare_entry_ids,
    Advise: advise,
    Unadvise: unadvise,
    MessageOptions: message_options,
    QueryDefaultMessageOpt: query_default_message_opt,
    EnumAdrTypes: enum_adr_types,
    QueryIdentity: query_identity,
    Logoff: logoff,
    SetDefaultStore: set_default_store,
    AdminServices: admin_services,
    ShowForm: show_form,
    PrepareForm: prepare_form,
};

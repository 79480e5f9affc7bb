//! What every object handed to C shares: the vtable pointer first (so that C's `lpVtbl` and
//! C++'s virtual calls find it), an exact reference count, the last error for `GetLastError`,
//! and the runtime the blocking calls run on.

use std::any::Any;
use std::ffi::c_void;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mapi::{MapiCode, MapiError, MapiResult};
use tokio::runtime::Runtime;

use crate::alloc;
use crate::convert;
use crate::types::*;

pub const S_OK: HRESULT = 0;
pub const MAPI_UNICODE: u32 = 0x8000_0000;

pub fn hr(code: MapiCode) -> HRESULT {
    code.value() as HRESULT
}

/// The common head of every object; `Object<T>` puts its own state after it.
#[repr(C)]
pub struct Header {
    pub vtbl: *const c_void,
    refs: AtomicU32,
    iids: &'static [GUID],
    last_error: Mutex<Option<MapiError>>,
    destroy: unsafe fn(*mut Header),
}

#[repr(C)]
pub struct Object<T> {
    header: Header,
    pub inner: T,
}

/// Makes an object with one reference, owned by the caller.
pub fn new_object<T>(vtbl: *const c_void, iids: &'static [GUID], inner: T) -> *mut Header {
    unsafe fn destroy<T>(h: *mut Header) {
        // SAFETY: h came from Box::into_raw of an Object<T> in new_object.
        drop(unsafe { Box::from_raw(h.cast::<Object<T>>()) });
    }
    let obj = Box::new(Object {
        header: Header {
            vtbl,
            refs: AtomicU32::new(1),
            iids,
            last_error: Mutex::new(None),
            destroy: destroy::<T>,
        },
        inner,
    });
    Box::into_raw(obj).cast()
}

/// The object behind `this` if it has vtable `vtbl` (MAPI's check that `this` is one of ours).
///
/// # Safety
/// `this` is null or points to a live object made by [`new_object`] (or to any memory at least
/// as large as a pointer, for the vtable comparison).
pub unsafe fn object<'a, T>(this: *mut Header, vtbl: *const c_void) -> MapiResult<&'a Object<T>> {
    if this.is_null() {
        return Err(MapiError::invalid_parameter(
            "the object pointer (this) is NULL",
        ));
    }
    // SAFETY: per the contract; the vtable is read before anything else.
    if unsafe { (*this).vtbl } != vtbl {
        return Err(MapiError::invalid_parameter(
            "the object pointer (this) is not an object of this interface",
        ));
    }
    // SAFETY: the vtable says it is an Object<T>.
    Ok(unsafe { &*this.cast::<Object<T>>() })
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs a method body: catches panics (`MAPI_E_CALL_FAILED`), records a failure for
/// `GetLastError`, and turns the result into an `HRESULT` (`Ok` carries the success code,
/// `S_OK` or a `MAPI_W_*` warning).
pub fn call(this: *mut Header, body: impl FnOnce() -> MapiResult<HRESULT>) -> HRESULT {
    let result = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(p) => Err(MapiError::call_failed(format!(
            "internal error in mapispool (please report it): {}",
            panic_text(&*p)
        ))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = hr(e.code);
            if is_ours(this) {
                // SAFETY: one of our objects (its vtable is ours), alive for the call.
                let h = unsafe { &*this };
                *h.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            }
            code
        }
    }
}

/// Runs a body outside any object (the `MAPI*` functions).
pub fn call_free(body: impl FnOnce() -> MapiResult<HRESULT>) -> HRESULT {
    call(std::ptr::null_mut(), body)
}

/// Writes `value` through an out-pointer, refusing NULL.
///
/// # Safety
/// `out` is null or valid for a write of `T`.
pub unsafe fn put<T>(out: *mut T, value: T, what: &str) -> MapiResult<()> {
    if out.is_null() {
        return Err(MapiError::invalid_parameter(format!("{what} is NULL")));
    }
    // SAFETY: per the contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Clears an out-pointer when it is not NULL (MAPI sets outputs to NULL on failure).
///
/// # Safety
/// `out` is null or valid for a write of a pointer.
pub unsafe fn clear<T>(out: *mut *mut T) {
    if !out.is_null() {
        // SAFETY: per the contract.
        unsafe { out.write(std::ptr::null_mut()) };
    }
}

/// `IUnknown::QueryInterface`, shared by every object.
pub unsafe extern "C" fn query_interface(
    this: *mut Header,
    riid: *const GUID,
    ppv: *mut *mut c_void,
) -> HRESULT {
    call(std::ptr::null_mut(), || {
        if this.is_null() || riid.is_null() || ppv.is_null() {
            return Err(MapiError::invalid_parameter("this, riid or ppvObj is NULL"));
        }
        // SAFETY: checked non-null; the caller passes one of our objects and a GUID.
        unsafe {
            *ppv = std::ptr::null_mut();
            let h = &*this;
            if *riid == IID_IUNKNOWN || h.iids.contains(&*riid) {
                h.refs.fetch_add(1, Ordering::Relaxed);
                *ppv = this.cast();
                Ok(S_OK)
            } else {
                Err(MapiError::new(
                    MapiCode::InterfaceNotSupported,
                    "this object does not implement the interface asked for",
                ))
            }
        }
    })
}

/// `IUnknown::AddRef`: the new count (0 for a NULL `this`).
pub unsafe extern "C" fn add_ref(this: *mut Header) -> ULONG {
    if this.is_null() {
        return 0;
    }
    // SAFETY: the caller holds a reference, so the object is alive.
    unsafe { &*this }.refs.fetch_add(1, Ordering::Relaxed) + 1
}

/// `IUnknown::Release`: the last reference frees the object.
pub unsafe extern "C" fn release(this: *mut Header) -> ULONG {
    if this.is_null() {
        return 0;
    }
    // SAFETY: the caller gives up a reference it holds.
    let h = unsafe { &*this };
    let left = h.refs.fetch_sub(1, Ordering::AcqRel) - 1;
    if left == 0 {
        let destroy = h.destroy;
        // A panic in a Drop must not unwind into C; the object is then leaked, not half-freed.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the count reached 0: nobody else holds the object.
            unsafe { destroy(this) }
        }));
    }
    left
}

/// Takes a reference unless the count is already 0 (an object being destroyed).
pub fn try_add_ref(this: *mut Header) -> bool {
    // SAFETY: callers pass objects they know to be allocated (see session sharing).
    unsafe { &*this }
        .refs
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n != 0).then_some(n + 1)
        })
        .is_ok()
}

/// `GetLastError` for every interface: a `MAPIERROR` describing the last failure of this
/// object, or NULL when `hResult` is not that failure.
pub unsafe extern "C" fn get_last_error(
    this: *mut Header,
    h_result: HRESULT,
    flags: ULONG,
    out: *mut *mut MAPIERROR,
) -> HRESULT {
    call(std::ptr::null_mut(), || {
        if this.is_null() || out.is_null() {
            return Err(MapiError::invalid_parameter("this or lppMAPIError is NULL"));
        }
        if flags & !MAPI_UNICODE != 0 {
            return Err(MapiError::unknown_flags(
                "GetLastError takes only MAPI_UNICODE",
            ));
        }
        // SAFETY: checked non-null; the caller passes one of our objects.
        let h = unsafe { &*this };
        let last = h
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // SAFETY: out checked non-null.
        unsafe { *out = std::ptr::null_mut() };
        let Some(e) = last.filter(|e| hr(e.code) == h_result) else {
            return Ok(S_OK);
        };
        let root = alloc::allocate(std::mem::size_of::<MAPIERROR>() as u32);
        if root.is_null() {
            return Err(MapiError::new(
                MapiCode::NotEnoughMemory,
                "MAPIAllocateBuffer failed",
            ));
        }
        let text = |s: &str| -> MapiResult<*mut c_void> {
            let p = mapi::Prop::new(
                mapi::PropTag(if flags & MAPI_UNICODE != 0 {
                    0x001F
                } else {
                    0x001E
                }),
                mapi::PropValue::Unicode(s.to_string()),
            );
            let want = p.tag.0;
            // SAFETY: an SPropValue is plain data; zeroed is a valid starting value.
            let mut v: SPropValue = unsafe { std::mem::zeroed() };
            convert::prop_to_c(root, &p, Some(want), &mut v)?;
            // SAFETY: the member written for this tag's type.
            Ok(unsafe {
                if flags & MAPI_UNICODE != 0 {
                    v.Value.lpszW.cast()
                } else {
                    v.Value.lpszA.cast()
                }
            })
        };
        let filled = (|| -> MapiResult<MAPIERROR> {
            Ok(MAPIERROR {
                ulVersion: 0,
                lpszError: text(&e.to_string())?,
                lpszComponent: text("mapispool")?,
                ulLowLevelError: 0,
                ulContext: 0,
            })
        })();
        match filled {
            Ok(m) => {
                // SAFETY: root has room for a MAPIERROR; out checked non-null.
                unsafe {
                    root.cast::<MAPIERROR>().write(m);
                    *out = root.cast();
                }
                Ok(S_OK)
            }
            Err(err) => {
                // SAFETY: root is ours and not handed out.
                unsafe { alloc::free(root) };
                Err(err)
            }
        }
    })
}

// The runtime: one per process, made by the first MAPIInitialize, shut down by the last
// MAPIUninitialize once no session holds it.

struct Init {
    count: u32,
    runtime: Option<Arc<Runtime>>,
}

static INIT: Mutex<Init> = Mutex::new(Init {
    count: 0,
    runtime: None,
});

pub fn initialize() -> MapiResult<()> {
    let mut init = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if init.runtime.is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mapispool")
            .enable_all()
            .build()
            .map_err(|e| {
                MapiError::call_failed(format!("cannot start mapispool's runtime: {e}"))
            })?;
        init.runtime = Some(Arc::new(rt));
    }
    init.count += 1;
    Ok(())
}

pub fn uninitialize() {
    let runtime = {
        let mut init = INIT.lock().unwrap_or_else(PoisonError::into_inner);
        if init.count == 0 {
            return;
        }
        init.count -= 1;
        if init.count > 0 {
            return;
        }
        init.runtime.take()
    };
    // Sessions still open keep the runtime alive through their own handle; the last one to
    // go shuts it down when it drops.
    if let Some(rt) = runtime.and_then(|rt| Arc::try_unwrap(rt).ok()) {
        rt.shutdown_timeout(std::time::Duration::from_secs(10));
    }
}

/// The runtime, for a new session. `MAPI_E_NOT_INITIALIZED` before `MAPIInitialize`.
pub fn runtime() -> MapiResult<Arc<Runtime>> {
    INIT.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .runtime
        .clone()
        .ok_or_else(|| {
            MapiError::new(
                MapiCode::NotInitialized,
                "call MAPIInitialize before any other MAPI function",
            )
        })
}

/// Runs `f` to its end on `rt`, blocking this thread.
pub fn block_on<F: Future>(rt: &Runtime, f: F) -> MapiResult<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(MapiError::call_failed(
            "a blocking MAPI call was made from inside mapispool's runtime (an advise sink's \
             OnNotify): make the call from the application's own thread",
        ));
    }
    Ok(rt.block_on(f))
}

pub type QueryInterfaceFn =
    unsafe extern "C" fn(*mut Header, *const GUID, *mut *mut c_void) -> HRESULT;
pub type RefFn = unsafe extern "C" fn(*mut Header) -> ULONG;
pub type GetLastErrorFn =
    unsafe extern "C" fn(*mut Header, HRESULT, ULONG, *mut *mut MAPIERROR) -> HRESULT;

/// Whether `this` is one of our objects (its vtable is one of ours).
pub fn is_ours(this: *mut Header) -> bool {
    if this.is_null() {
        return false;
    }
    // SAFETY: a non-null `this` the caller passes is at least a pointer's worth of memory.
    let v = unsafe { (*this).vtbl };
    v == crate::session::vtbl() || v == crate::table::vtbl() || v == crate::status::vtbl()
}

/// Methods this library does not implement: each returns `MAPI_E_NO_SUPPORT` and says which
/// method for `GetLastError`.
#[macro_export]
macro_rules! no_support_fns {
    ($($name:ident, $what:literal, ($($a:ident : $t:ty),*);)*) => {
        $(
            unsafe extern "C" fn $name(this: *mut Header, $($a: $t),*) -> HRESULT {
                $(let _ = $a;)*
                let this = if is_ours(this) { this } else { std::ptr::null_mut() };
                call(this, || Err(mapi::MapiError::no_support(concat!(
                    $what, " is not supported by mapispool"
                ))))
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_call_failed_and_does_not_unwind() {
        let hr = call_free(|| panic!("boom"));
        assert_eq!(hr, hr_of(MapiCode::CallFailed));
        let hr = call_free(|| Err(MapiError::not_found("x")));
        assert_eq!(hr, hr_of(MapiCode::NotFound));
        assert_eq!(call_free(|| Ok(S_OK)), S_OK);
    }

    fn hr_of(c: MapiCode) -> HRESULT {
        hr(c)
    }

    #[test]
    fn null_objects_are_invalid_parameters() {
        // SAFETY: a null `this` is what is being tested; nothing is dereferenced.
        unsafe {
            assert!(object::<u8>(std::ptr::null_mut(), std::ptr::null()).is_err());
            assert_eq!(add_ref(std::ptr::null_mut()), 0);
            assert_eq!(release(std::ptr::null_mut()), 0);
            let mut p = std::ptr::null_mut();
            assert_eq!(
                query_interface(std::ptr::null_mut(), &IID_IUNKNOWN, &mut p),
                hr(MapiCode::InvalidParameter)
            );
        }
    }

    #[test]
    fn the_last_release_frees_and_counts_are_exact() {
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        static VTBL: u8 = 0;
        static IIDS: [GUID; 1] = [IID_IMAPITABLE];
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let obj = new_object((&VTBL as *const u8).cast(), &IIDS, Flag(dropped.clone()));
        // SAFETY: obj is live until its count reaches 0 below.
        unsafe {
            assert_eq!(add_ref(obj), 2);
            let mut p = std::ptr::null_mut();
            assert_eq!(query_interface(obj, &IID_IMAPITABLE, &mut p), S_OK);
            assert_eq!(p, obj.cast());
            assert_eq!(
                query_interface(obj, &IID_IMAPISTATUS, &mut p),
                hr(MapiCode::InterfaceNotSupported)
            );
            assert!(p.is_null());
            assert_eq!(release(obj), 2);
            assert_eq!(release(obj), 1);
            assert!(!dropped.load(Ordering::SeqCst));
            assert_eq!(release(obj), 0);
        }
        assert!(dropped.load(Ordering::SeqCst));
    }
}

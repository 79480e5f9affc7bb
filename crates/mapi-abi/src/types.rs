//! MAPI's structures as C lays them out (`mapidefs.h`), with MAPI's Windows-sized integers:
//! `ULONG`/`LONG` are 32 bits on LP64 too, pointers and `ULONG_PTR` are 64.
//!
//! `tests/c_api.rs` compares every size and offset here with what gcc sees in the headers.

#![allow(non_snake_case, non_camel_case_types)]

use std::ffi::{c_char, c_void};

pub type ULONG = u32;
pub type LONG = i32;
pub type HRESULT = i32;
pub type ULONG_PTR = usize;
/// `wchar_t`: 32 bits on Linux, which is what PT_UNICODE strings are made of here.
pub type WCHAR = libc::wchar_t;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}

/// `DEFINE_OLEGUID(name, l, 0, 0)`: MAPI's interface IDs.
pub const fn ole_guid(l: u32) -> GUID {
    GUID {
        Data1: l,
        Data2: 0,
        Data3: 0,
        Data4: [0xC0, 0, 0, 0, 0, 0, 0, 0x46],
    }
}

pub const IID_IUNKNOWN: GUID = ole_guid(0x0000_0000);
pub const IID_IMAPISESSION: GUID = ole_guid(0x0002_0300);
pub const IID_IMAPITABLE: GUID = ole_guid(0x0002_0301);
pub const IID_IMAPIADVISESINK: GUID = ole_guid(0x0002_0302);
pub const IID_IMAPIPROP: GUID = ole_guid(0x0002_0303);
pub const IID_IMAPISTATUS: GUID = ole_guid(0x0002_0305);

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FILETIME {
    pub dwLowDateTime: u32,
    pub dwHighDateTime: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SBinary {
    pub cb: ULONG,
    pub lpb: *mut u8,
}

/// Every multi-valued member of `_PV` (`SLongArray`, `SBinaryArray`, `SWStringArray`, ...):
/// a count and a pointer to the elements.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SArray {
    pub cValues: ULONG,
    pub lp: *mut c_void,
}

/// `union _PV`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union PV {
    pub i: i16,
    pub l: LONG,
    pub ul: ULONG,
    pub flt: f32,
    pub dbl: f64,
    pub b: u16,
    pub cur: i64,
    pub at: f64,
    pub ft: FILETIME,
    pub lpszA: *mut c_char,
    pub bin: SBinary,
    pub lpszW: *mut WCHAR,
    pub lpguid: *mut GUID,
    pub li: i64,
    pub mv: SArray,
    pub err: i32,
    pub x: LONG,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SPropValue {
    pub ulPropTag: ULONG,
    pub dwAlignPad: ULONG,
    pub Value: PV,
}

#[repr(C)]
pub struct SPropTagArray {
    pub cValues: ULONG,
    pub aulPropTag: [ULONG; 1],
}

#[repr(C)]
pub struct SRow {
    pub ulAdrEntryPad: ULONG,
    pub cValues: ULONG,
    pub lpProps: *mut SPropValue,
}

#[repr(C)]
pub struct SRowSet {
    pub cRows: ULONG,
    pub aRow: [SRow; 1],
}

#[repr(C)]
pub struct SSortOrder {
    pub ulPropTag: ULONG,
    pub ulOrder: ULONG,
}

#[repr(C)]
pub struct SSortOrderSet {
    pub cSorts: ULONG,
    pub cCategories: ULONG,
    pub cExpanded: ULONG,
    pub aSort: [SSortOrder; 1],
}

#[repr(C)]
pub struct ENTRYID {
    pub abFlags: [u8; 4],
    pub ab: [u8; 1],
}

#[repr(C)]
pub struct MAPIUID {
    pub ab: [u8; 16],
}

#[repr(C)]
pub struct MAPIERROR {
    pub ulVersion: ULONG,
    pub lpszError: *mut c_void,
    pub lpszComponent: *mut c_void,
    pub ulLowLevelError: ULONG,
    pub ulContext: ULONG,
}

#[repr(C)]
pub struct MAPIINIT_0 {
    pub ulVersion: ULONG,
    pub ulFlags: ULONG,
}

// The restriction structures, one per `RES_*` kind, and their union.

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SAndRestriction {
    pub cRes: ULONG,
    pub lpRes: *mut SRestriction,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SNotRestriction {
    pub ulReserved: ULONG,
    pub lpRes: *mut SRestriction,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SContentRestriction {
    pub ulFuzzyLevel: ULONG,
    pub ulPropTag: ULONG,
    pub lpProp: *mut SPropValue,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SPropertyRestriction {
    pub relop: ULONG,
    pub ulPropTag: ULONG,
    pub lpProp: *mut SPropValue,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SComparePropsRestriction {
    pub relop: ULONG,
    pub ulPropTag1: ULONG,
    pub ulPropTag2: ULONG,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SBitMaskRestriction {
    pub relBMR: ULONG,
    pub ulPropTag: ULONG,
    pub ulMask: ULONG,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SSizeRestriction {
    pub relop: ULONG,
    pub ulPropTag: ULONG,
    pub cb: ULONG,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SExistRestriction {
    pub ulReserved1: ULONG,
    pub ulPropTag: ULONG,
    pub ulReserved2: ULONG,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SSubRestriction {
    pub ulSubObject: ULONG,
    pub lpRes: *mut SRestriction,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SCommentRestriction {
    pub cValues: ULONG,
    pub lpRes: *mut SRestriction,
    pub lpProp: *mut SPropValue,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union RestrictionUnion {
    pub resCompareProps: SComparePropsRestriction,
    pub resAnd: SAndRestriction,
    pub resOr: SAndRestriction,
    pub resNot: SNotRestriction,
    pub resContent: SContentRestriction,
    pub resProperty: SPropertyRestriction,
    pub resBitMask: SBitMaskRestriction,
    pub resSize: SSizeRestriction,
    pub resExist: SExistRestriction,
    pub resSub: SSubRestriction,
    pub resComment: SCommentRestriction,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SRestriction {
    pub rt: ULONG,
    pub res: RestrictionUnion,
}

/// One line of [`crate::mapispool_abi_layout`]: a structure or member name, its size and
/// its offset (0 for whole structures), as Rust lays it out.
#[repr(C)]
pub struct LayoutEntry {
    pub name: *const c_char,
    pub size: usize,
    pub offset: usize,
}

/// `TABLE_NOTIFICATION`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TABLE_NOTIFICATION {
    pub ulTableEvent: ULONG,
    pub hResult: HRESULT,
    pub propIndex: SPropValue,
    pub propPrior: SPropValue,
    pub row: SRowPlain,
    pub ulPad: ULONG,
}

/// `SRow` as a plain-data copy (for use inside unions).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SRowPlain {
    pub ulAdrEntryPad: ULONG,
    pub cValues: ULONG,
    pub lpProps: *mut SPropValue,
}

/// The `info` union of `NOTIFICATION`: the table member is the only one this library sends,
/// and the largest (80 bytes), so the union has C's size.
#[repr(C)]
#[derive(Clone, Copy)]
pub union NotificationInfo {
    pub tab: TABLE_NOTIFICATION,
}

/// `NOTIFICATION`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NOTIFICATION {
    pub ulEventType: ULONG,
    pub ulAlignPad: ULONG,
    pub info: NotificationInfo,
}

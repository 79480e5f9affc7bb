//! Between mapi's Rust values and MAPI's C structures.
//!
//! Strings: `PT_UNICODE` is `wchar_t *` (UTF-32 on Linux, as in Kopano's and grommunio's
//! mapi4linux), `PT_STRING8` is `char *` in UTF-8. The Rust side keeps one kind of string, so a
//! `PT_STRING8` tag asked for by a client is served from the `PT_UNICODE` property of the same
//! ID, and a `PT_STRING8` restriction is evaluated as its `PT_UNICODE` twin.

use std::ffi::{CStr, c_char, c_void};
use std::ptr;

use mapi::restriction::{BitmaskOp, FuzzyLevel, RelOp, Restriction};
use mapi::tag::{MV_FLAG, PropType};
use mapi::{FileTime, MapiCode, MapiError, MapiResult, Prop, PropTag, PropValue, Row, RowSet};
use mapi::{SortKey, SortOrder};

use crate::alloc;
use crate::types::*;

const PT_STRING8: u16 = PropType::String8 as u16;
const PT_UNICODE: u16 = PropType::Unicode as u16;
const PT_ERROR: u16 = PropType::Error as u16;

/// The tag the Rust side keeps a property under: `PT_STRING8` (single or multi) becomes
/// `PT_UNICODE`.
pub fn rust_tag(tag: u32) -> PropTag {
    let t = PropTag(tag);
    match t.type_code() {
        PT_STRING8 => t.with_type(PT_UNICODE),
        x if x == PT_STRING8 | MV_FLAG => t.with_type(PT_UNICODE | MV_FLAG),
        _ => t,
    }
}

fn no_memory() -> MapiError {
    MapiError::new(MapiCode::NotEnoughMemory, "MAPIAllocateMore failed")
}

/// `MAPIAllocateMore` for `len` elements of `T`, linked to `root`.
fn more<T>(root: *mut c_void, len: usize) -> MapiResult<*mut T> {
    let size = std::mem::size_of::<T>()
        .checked_mul(len.max(1))
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(no_memory)?;
    // SAFETY: root comes from alloc::allocate (every caller here passes one).
    let p = unsafe { alloc::allocate_more(size, root) };
    if p.is_null() {
        Err(no_memory())
    } else {
        Ok(p.cast())
    }
}

fn copy_slice<T: Copy>(root: *mut c_void, items: &[T]) -> MapiResult<*mut T> {
    let p = more::<T>(root, items.len())?;
    // SAFETY: p has room for items.len() elements and does not overlap items.
    unsafe { ptr::copy_nonoverlapping(items.as_ptr(), p, items.len()) };
    Ok(p)
}

fn string8(root: *mut c_void, s: &str) -> MapiResult<*mut c_char> {
    let mut bytes: Vec<u8> = s.bytes().filter(|b| *b != 0).collect();
    bytes.push(0);
    Ok(copy_slice(root, &bytes)?.cast())
}

fn unicode(root: *mut c_void, s: &str) -> MapiResult<*mut WCHAR> {
    let mut wide: Vec<WCHAR> = s
        .chars()
        .filter(|c| *c != '\0')
        .map(|c| c as u32 as WCHAR)
        .collect();
    wide.push(0);
    copy_slice(root, &wide)
}

fn filetime(t: FileTime) -> FILETIME {
    FILETIME {
        dwLowDateTime: t.0 as u32,
        dwHighDateTime: (t.0 >> 32) as u32,
    }
}

fn guid_bytes(root: *mut c_void, b: &[u8; 16]) -> MapiResult<*mut GUID> {
    Ok(copy_slice(root, b)?.cast())
}

fn array<T: Copy>(root: *mut c_void, items: &[T]) -> MapiResult<SArray> {
    Ok(SArray {
        cValues: u32::try_from(items.len()).map_err(|_| no_memory())?,
        lp: copy_slice(root, items)?.cast(),
    })
}

/// Fills `out` from `prop`; strings, binaries and arrays are allocated with `MAPIAllocateMore`
/// on `root`. `want` is the tag the client asked for (its string width decides the form).
pub fn prop_to_c(
    root: *mut c_void,
    prop: &Prop,
    want: Option<u32>,
    out: &mut SPropValue,
) -> MapiResult<()> {
    let want8 = want.is_some_and(|w| {
        let ty = PropTag(w).type_code() & !MV_FLAG;
        ty == PT_STRING8
    });
    let mut tag = prop.tag.0;
    let value = match &prop.value {
        PropValue::Null | PropValue::Object => PV { x: 0 },
        PropValue::I2(v) => PV { i: *v },
        PropValue::Long(v) => PV { l: *v },
        PropValue::R4(v) => PV { flt: *v },
        PropValue::Double(v) => PV { dbl: *v },
        PropValue::Currency(v) => PV { cur: *v },
        PropValue::AppTime(v) => PV { at: *v },
        PropValue::Error(c) => PV {
            err: c.value() as i32,
        },
        PropValue::Boolean(v) => PV { b: u16::from(*v) },
        PropValue::I8(v) => PV { li: *v },
        PropValue::String8(s) => PV {
            lpszA: string8(root, s)?,
        },
        PropValue::Unicode(s) if want8 => {
            tag = PropTag(tag).with_type(PT_STRING8).0;
            PV {
                lpszA: string8(root, s)?,
            }
        }
        PropValue::Unicode(s) => PV {
            lpszW: unicode(root, s)?,
        },
        PropValue::SysTime(t) => PV { ft: filetime(*t) },
        PropValue::Clsid(b) => PV {
            lpguid: guid_bytes(root, b)?,
        },
        PropValue::Binary(b) => PV {
            bin: SBinary {
                cb: u32::try_from(b.len()).map_err(|_| no_memory())?,
                lpb: copy_slice(root, b)?,
            },
        },
        PropValue::MvI2(v) => PV {
            mv: array(root, v)?,
        },
        PropValue::MvLong(v) => PV {
            mv: array(root, v)?,
        },
        PropValue::MvDouble(v) => PV {
            mv: array(root, v)?,
        },
        PropValue::MvI8(v) => PV {
            mv: array(root, v)?,
        },
        PropValue::MvSysTime(v) => {
            let fts: Vec<FILETIME> = v.iter().map(|t| filetime(*t)).collect();
            PV {
                mv: array(root, &fts)?,
            }
        }
        PropValue::MvClsid(v) => PV {
            mv: array(root, v)?,
        },
        PropValue::MvBinary(v) => {
            let mut bins = Vec::with_capacity(v.len());
            for b in v {
                bins.push(SBinary {
                    cb: u32::try_from(b.len()).map_err(|_| no_memory())?,
                    lpb: copy_slice(root, b)?,
                });
            }
            PV {
                mv: array(root, &bins)?,
            }
        }
        PropValue::MvString8(v) => {
            let mut ps = Vec::with_capacity(v.len());
            for s in v {
                ps.push(string8(root, s)?);
            }
            PV {
                mv: array(root, &ps)?,
            }
        }
        PropValue::MvUnicode(v) if want8 => {
            tag = PropTag(tag).with_type(PT_STRING8 | MV_FLAG).0;
            let mut ps = Vec::with_capacity(v.len());
            for s in v {
                ps.push(string8(root, s)?);
            }
            PV {
                mv: array(root, &ps)?,
            }
        }
        PropValue::MvUnicode(v) => {
            let mut ps = Vec::with_capacity(v.len());
            for s in v {
                ps.push(unicode(root, s)?);
            }
            PV {
                mv: array(root, &ps)?,
            }
        }
    };
    if let (Some(w), PropValue::Error(_)) = (want, &prop.value) {
        tag = PropTag(w).with_type(PT_ERROR).0;
    }
    *out = SPropValue {
        ulPropTag: tag,
        dwAlignPad: 0,
        Value: value,
    };
    Ok(())
}

/// A property array in one `MAPIAllocateBuffer` block (what `GetProps` returns and what each
/// row of a row set holds). `wants` are the client's tags, in the same order as `props`.
pub fn props_to_c(props: &[Prop], wants: Option<&[u32]>) -> MapiResult<(*mut SPropValue, u32)> {
    let count = u32::try_from(props.len()).map_err(|_| no_memory())?;
    let size = u32::try_from(std::mem::size_of::<SPropValue>() * props.len().max(1))
        .map_err(|_| no_memory())?;
    let root = alloc::allocate(size);
    if root.is_null() {
        return Err(no_memory());
    }
    let array = root.cast::<SPropValue>();
    for (i, prop) in props.iter().enumerate() {
        let want = wants.and_then(|w| w.get(i).copied());
        // SAFETY: i < props.len(), within the block; zeroed first so a half-filled array is
        // still plain data if we free it on error.
        let slot = unsafe {
            let p = array.add(i);
            p.write_bytes(0, 1);
            &mut *p
        };
        if let Err(e) = prop_to_c(root, prop, want, slot) {
            // SAFETY: root is ours and not handed out.
            unsafe { alloc::free(root) };
            return Err(e);
        }
    }
    Ok((array, count))
}

/// An `SRowSet`: the set in one block, each row's properties in a block of their own (which is
/// what `FreeProws` frees).
pub fn rows_to_c(rows: &RowSet, wants: Option<&[u32]>) -> MapiResult<*mut SRowSet> {
    let n = rows.len();
    let size = std::mem::size_of::<SRowSet>() - std::mem::size_of::<SRow>()
        + std::mem::size_of::<SRow>() * n.max(1);
    let set = alloc::allocate(u32::try_from(size).map_err(|_| no_memory())?).cast::<SRowSet>();
    if set.is_null() {
        return Err(no_memory());
    }
    // SAFETY: set is a fresh block of `size` bytes; rows are written before being counted, so
    // that on failure FreeProws frees exactly the rows made.
    unsafe {
        (*set).cRows = 0;
        let first = ptr::addr_of_mut!((*set).aRow).cast::<SRow>();
        for (i, row) in rows.iter().enumerate() {
            match props_to_c(&row.props, wants) {
                Ok((props, count)) => {
                    first.add(i).write(SRow {
                        ulAdrEntryPad: 0,
                        cValues: count,
                        lpProps: props,
                    });
                    (*set).cRows += 1;
                }
                Err(e) => {
                    free_rows(set);
                    return Err(e);
                }
            }
        }
    }
    Ok(set)
}

/// `FreeProws`.
///
/// # Safety
/// `set` is null or a row set built as [`rows_to_c`] builds one.
pub unsafe fn free_rows(set: *mut SRowSet) {
    if set.is_null() {
        return;
    }
    // SAFETY: per the contract, cRows rows follow.
    unsafe {
        let first = ptr::addr_of_mut!((*set).aRow).cast::<SRow>();
        for i in 0..(*set).cRows as usize {
            alloc::free((*first.add(i)).lpProps.cast());
        }
        alloc::free(set.cast());
    }
}

/// An `SPropTagArray` in one block.
pub fn tags_to_c(tags: &[u32]) -> MapiResult<*mut SPropTagArray> {
    let size = 4 + 4 * tags.len().max(1);
    let p = alloc::allocate(u32::try_from(size).map_err(|_| no_memory())?).cast::<SPropTagArray>();
    if p.is_null() {
        return Err(no_memory());
    }
    // SAFETY: room for the count and tags.len() tags.
    unsafe {
        (*p).cValues = tags.len() as u32;
        let first = ptr::addr_of_mut!((*p).aulPropTag).cast::<u32>();
        ptr::copy_nonoverlapping(tags.as_ptr(), first, tags.len());
    }
    Ok(p)
}

/// The tags of a client's `SPropTagArray`.
///
/// # Safety
/// `p` is null or points to a count and that many tags.
pub unsafe fn tags_from_c(p: *const SPropTagArray) -> MapiResult<Vec<u32>> {
    if p.is_null() {
        return Err(MapiError::invalid_parameter(
            "the property tag array is NULL",
        ));
    }
    // SAFETY: per the contract.
    unsafe {
        let n = (*p).cValues as usize;
        let first = ptr::addr_of!((*p).aulPropTag).cast::<u32>();
        Ok(std::slice::from_raw_parts(first, n).to_vec())
    }
}

/// A client's `SSortOrderSet`.
///
/// # Safety
/// `p` is null or a valid set.
pub unsafe fn sorts_from_c(p: *const SSortOrderSet) -> MapiResult<Vec<SortKey>> {
    if p.is_null() {
        return Err(MapiError::invalid_parameter("the sort order set is NULL"));
    }
    // SAFETY: per the contract.
    unsafe {
        if (*p).cCategories != 0 {
            return Err(MapiError::too_complex(
                "status tables are not categorized: cCategories must be 0",
            ));
        }
        let first = ptr::addr_of!((*p).aSort).cast::<SSortOrder>();
        let mut keys = Vec::new();
        for s in std::slice::from_raw_parts(first, (*p).cSorts as usize) {
            let order = match s.ulOrder {
                0 => SortOrder::Ascend,
                1 => SortOrder::Descend,
                other => {
                    return Err(MapiError::too_complex(format!(
                        "sort order {other} is not TABLE_SORT_ASCEND or TABLE_SORT_DESCEND"
                    )));
                }
            };
            keys.push(SortKey {
                tag: rust_tag(s.ulPropTag),
                order,
            });
        }
        Ok(keys)
    }
}

/// An `SSortOrderSet` in one block.
pub fn sorts_to_c(keys: &[SortKey]) -> MapiResult<*mut SSortOrderSet> {
    let size = 12 + std::mem::size_of::<SSortOrder>() * keys.len().max(1);
    let p = alloc::allocate(u32::try_from(size).map_err(|_| no_memory())?).cast::<SSortOrderSet>();
    if p.is_null() {
        return Err(no_memory());
    }
    // SAFETY: room for the header and keys.len() sort orders.
    unsafe {
        (*p).cSorts = keys.len() as u32;
        (*p).cCategories = 0;
        (*p).cExpanded = 0;
        let first = ptr::addr_of_mut!((*p).aSort).cast::<SSortOrder>();
        for (i, k) in keys.iter().enumerate() {
            first.add(i).write(SSortOrder {
                ulPropTag: k.tag.0,
                ulOrder: k.order as u32,
            });
        }
    }
    Ok(p)
}

/// Reads a NUL-terminated `wchar_t` string.
///
/// # Safety
/// `p` is non-null and NUL-terminated.
pub unsafe fn wide_to_string(p: *const WCHAR) -> MapiResult<String> {
    let mut s = String::new();
    let mut i = 0;
    loop {
        // SAFETY: per the contract, up to and including the NUL.
        let c = unsafe { *p.add(i) };
        if c == 0 {
            return Ok(s);
        }
        s.push(char::from_u32(c as u32).ok_or_else(|| {
            MapiError::invalid_parameter(format!(
                "a PT_UNICODE string holds 0x{:X}, which is not a Unicode scalar value",
                c as u32
            ))
        })?);
        i += 1;
    }
}

/// Reads a `char *` or `wchar_t *` string, as `unicode` says.
///
/// # Safety
/// `p` is non-null and NUL-terminated in the width given.
pub unsafe fn tstring(p: *const c_void, unicode: bool) -> MapiResult<String> {
    if unicode {
        // SAFETY: per the contract.
        unsafe { wide_to_string(p.cast()) }
    } else {
        // SAFETY: per the contract.
        let bytes = unsafe { CStr::from_ptr(p.cast()) };
        bytes.to_str().map(str::to_owned).map_err(|_| {
            MapiError::invalid_parameter("a PT_STRING8 string is not UTF-8, which mapispool uses")
        })
    }
}

/// A client's single value, for a restriction (multi-valued constants are not needed there).
///
/// # Safety
/// `p` is null or a valid `SPropValue` whose pointers match its tag's type.
unsafe fn prop_from_c(p: *const SPropValue) -> MapiResult<(PropTag, PropValue)> {
    if p.is_null() {
        return Err(MapiError::invalid_parameter(
            "a restriction's lpProp is NULL",
        ));
    }
    // SAFETY: per the contract; each union member is read only for its own type.
    unsafe {
        let v = &(*p).Value;
        let tag = PropTag((*p).ulPropTag);
        let ty = tag.type_code();
        let value = match PropType::from_u16(ty) {
            Some(PropType::Null) => PropValue::Null,
            Some(PropType::I2) => PropValue::I2(v.i),
            Some(PropType::Long) => PropValue::Long(v.l),
            Some(PropType::R4) => PropValue::R4(v.flt),
            Some(PropType::Double) => PropValue::Double(v.dbl),
            Some(PropType::Currency) => PropValue::Currency(v.cur),
            Some(PropType::AppTime) => PropValue::AppTime(v.at),
            Some(PropType::Error) => PropValue::Error(MapiCode::from_value(v.err as u32)),
            Some(PropType::Boolean) => PropValue::Boolean(v.b != 0),
            Some(PropType::I8) => PropValue::I8(v.li),
            Some(PropType::SysTime) => PropValue::SysTime(FileTime(
                u64::from(v.ft.dwHighDateTime) << 32 | u64::from(v.ft.dwLowDateTime),
            )),
            Some(PropType::String8) | Some(PropType::Unicode) => {
                let s = if ty == PT_STRING8 {
                    v.lpszA.cast::<c_void>()
                } else {
                    v.lpszW.cast()
                };
                if s.is_null() {
                    return Err(MapiError::invalid_parameter("a string value is NULL"));
                }
                PropValue::Unicode(tstring(s, ty == PT_UNICODE)?)
            }
            Some(PropType::Binary) => {
                let b = v.bin;
                if b.lpb.is_null() && b.cb != 0 {
                    return Err(MapiError::invalid_parameter("a PT_BINARY value is NULL"));
                }
                PropValue::Binary(if b.cb == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(b.lpb, b.cb as usize).to_vec()
                })
            }
            Some(PropType::Clsid) => {
                if v.lpguid.is_null() {
                    return Err(MapiError::invalid_parameter("a PT_CLSID value is NULL"));
                }
                PropValue::Clsid(*v.lpguid.cast::<[u8; 16]>())
            }
            _ => {
                return Err(MapiError::too_complex(format!(
                    "a restriction constant of type 0x{ty:04X} (multi-valued or object) is not supported"
                )));
            }
        };
        Ok((rust_tag(tag.0), value))
    }
}

fn relop(v: u32) -> MapiResult<RelOp> {
    Ok(match v {
        0 => RelOp::Lt,
        1 => RelOp::Le,
        2 => RelOp::Gt,
        3 => RelOp::Ge,
        4 => RelOp::Eq,
        5 => RelOp::Ne,
        6 => RelOp::Re,
        _ => {
            return Err(MapiError::too_complex(format!(
                "relop {v} is not a RELOP_* value"
            )));
        }
    })
}

/// Deeper than this is taken for a cycle in the client's pointers.
const MAX_DEPTH: u32 = 64;

/// A client's `SRestriction` tree.
///
/// # Safety
/// `p` is null or a valid restriction tree whose union members match their `rt`.
pub unsafe fn restriction_from_c(p: *const SRestriction) -> MapiResult<Restriction> {
    // SAFETY: per the contract.
    unsafe { restriction_at(p, 0) }
}

unsafe fn restriction_at(p: *const SRestriction, depth: u32) -> MapiResult<Restriction> {
    if p.is_null() {
        return Err(MapiError::invalid_parameter(
            "a restriction pointer is NULL",
        ));
    }
    if depth > MAX_DEPTH {
        return Err(MapiError::too_complex(format!(
            "the restriction is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    // SAFETY: per the contract: the union member read is the one `rt` names.
    unsafe {
        let r = &*p;
        let list = |c: u32, lp: *mut SRestriction| -> MapiResult<Vec<Restriction>> {
            if c != 0 && lp.is_null() {
                return Err(MapiError::invalid_parameter(
                    "an AND/OR restriction has a NULL lpRes",
                ));
            }
            (0..c as usize)
                .map(|i| restriction_at(lp.add(i), depth + 1))
                .collect()
        };
        Ok(match r.rt {
            0 => Restriction::And(list(r.res.resAnd.cRes, r.res.resAnd.lpRes)?),
            1 => Restriction::Or(list(r.res.resOr.cRes, r.res.resOr.lpRes)?),
            2 => Restriction::Not(Box::new(restriction_at(r.res.resNot.lpRes, depth + 1)?)),
            3 => {
                let c = r.res.resContent;
                let (_, value) = prop_from_c(c.lpProp)?;
                Restriction::Content {
                    fuzzy: FuzzyLevel(c.ulFuzzyLevel),
                    tag: rust_tag(c.ulPropTag),
                    value,
                }
            }
            4 => {
                let c = r.res.resProperty;
                let (_, value) = prop_from_c(c.lpProp)?;
                Restriction::Property {
                    relop: relop(c.relop)?,
                    tag: rust_tag(c.ulPropTag),
                    value,
                }
            }
            5 => {
                let c = r.res.resCompareProps;
                Restriction::CompareProps {
                    relop: relop(c.relop)?,
                    tag1: rust_tag(c.ulPropTag1),
                    tag2: rust_tag(c.ulPropTag2),
                }
            }
            6 => {
                let c = r.res.resBitMask;
                Restriction::Bitmask {
                    op: match c.relBMR {
                        0 => BitmaskOp::Eqz,
                        1 => BitmaskOp::Nez,
                        v => {
                            return Err(MapiError::too_complex(format!(
                                "relBMR {v} is not BMR_EQZ or BMR_NEZ"
                            )));
                        }
                    },
                    tag: rust_tag(c.ulPropTag),
                    mask: c.ulMask,
                }
            }
            7 => {
                let c = r.res.resSize;
                Restriction::Size {
                    relop: relop(c.relop)?,
                    tag: rust_tag(c.ulPropTag),
                    size: c.cb,
                }
            }
            8 => Restriction::Exist {
                tag: rust_tag(r.res.resExist.ulPropTag),
            },
            9 => {
                let c = r.res.resSub;
                Restriction::SubRestriction {
                    object: PropTag(c.ulSubObject),
                    restriction: Box::new(restriction_at(c.lpRes, depth + 1)?),
                }
            }
            10 => {
                let c = r.res.resComment;
                let mut props = Vec::new();
                for i in 0..c.cValues as usize {
                    let (tag, value) = prop_from_c(c.lpProp.add(i))?;
                    props.push(Prop::new(tag, value));
                }
                Restriction::Comment {
                    props,
                    restriction: if c.lpRes.is_null() {
                        None
                    } else {
                        Some(Box::new(restriction_at(c.lpRes, depth + 1)?))
                    },
                }
            }
            rt => {
                return Err(MapiError::too_complex(format!(
                    "restriction type {rt} is not one of RES_AND..RES_COMMENT"
                )));
            }
        })
    }
}

/// Whether a row carries `tag` in the width asked for: the rows the Rust side gives are
/// projected on `rust_tag`s, in the client's column order.
pub fn project(row: &Row, wants: &[u32]) -> Row {
    let tags: Vec<PropTag> = wants.iter().map(|w| rust_tag(*w)).collect();
    row.project(&tags)
}

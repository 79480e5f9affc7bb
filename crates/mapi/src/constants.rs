//! MAPI's named constants (flag bits and enumerations), grouped by the property they belong to,
//! so that the text syntax can take them by name and tables can show bits by name.
//!
//! `PR_RESOURCE_FLAGS` and `PR_STATUS_CODE` reuse the same low bits with different meanings
//! (mapi-reference.md §4), so a value is only ever named through the property it sits in.

use crate::tag::{self, PropTag};

/// How a property's value reads in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstantKind {
    /// One value of a list (`PR_RESOURCE_TYPE`).
    Enum,
    /// A set of bits (`PR_STATUS_CODE`).
    Bits,
}

/// The named values one property takes.
#[derive(Debug)]
pub struct ConstantSet {
    pub tag: PropTag,
    pub kind: ConstantKind,
    /// Cut from each name when showing bits to people (`STATUS_` of `STATUS_AVAILABLE`).
    pub short_prefix: &'static str,
    pub entries: &'static [(&'static str, i64)],
}

// §2
pub const MAPI_STORE_PROVIDER: i32 = 33;
pub const MAPI_AB: i32 = 34;
pub const MAPI_AB_PROVIDER: i32 = 35;
pub const MAPI_TRANSPORT_PROVIDER: i32 = 36;
pub const MAPI_SPOOLER: i32 = 37;
pub const MAPI_PROFILE_PROVIDER: i32 = 38;
pub const MAPI_SUBSYSTEM: i32 = 39;
pub const MAPI_HOOK_PROVIDER: i32 = 40;
// §3
pub const STATUS_VALIDATE_STATE: i32 = 0x1;
pub const STATUS_SETTINGS_DIALOG: i32 = 0x2;
pub const STATUS_CHANGE_PASSWORD: i32 = 0x4;
pub const STATUS_FLUSH_QUEUES: i32 = 0x8;
// §4, PR_RESOURCE_FLAGS
pub const STATUS_DEFAULT_OUTBOUND: i32 = 0x1;
pub const STATUS_DEFAULT_STORE: i32 = 0x2;
pub const STATUS_PRIMARY_IDENTITY: i32 = 0x4;
pub const STATUS_SIMPLE_STORE: i32 = 0x8;
pub const STATUS_XP_PREFER_LAST: i32 = 0x10;
pub const STATUS_NO_PRIMARY_IDENTITY: i32 = 0x20;
pub const STATUS_NO_DEFAULT_STORE: i32 = 0x40;
pub const STATUS_TEMP_SECTION: i32 = 0x80;
pub const STATUS_OWN_STORE: i32 = 0x100;
pub const HOOK_INBOUND: i32 = 0x200;
pub const HOOK_OUTBOUND: i32 = 0x400;
pub const STATUS_NEED_IPM_TREE: i32 = 0x800;
pub const STATUS_PRIMARY_STORE: i32 = 0x1000;
pub const STATUS_SECONDARY_STORE: i32 = 0x2000;
// §4, PR_STATUS_CODE
pub const STATUS_AVAILABLE: i32 = 0x1;
pub const STATUS_OFFLINE: i32 = 0x2;
pub const STATUS_FAILURE: i32 = 0x4;
pub const STATUS_INBOUND_ENABLED: i32 = 0x1_0000;
pub const STATUS_INBOUND_ACTIVE: i32 = 0x2_0000;
pub const STATUS_INBOUND_FLUSH: i32 = 0x4_0000;
pub const STATUS_OUTBOUND_ENABLED: i32 = 0x10_0000;
pub const STATUS_OUTBOUND_ACTIVE: i32 = 0x20_0000;
pub const STATUS_OUTBOUND_FLUSH: i32 = 0x40_0000;
pub const STATUS_REMOTE_ACCESS: i32 = 0x80_0000;
// PR_OBJECT_TYPE
pub const MAPI_STORE: i32 = 1;
pub const MAPI_ADDRBOOK: i32 = 2;
pub const MAPI_FOLDER: i32 = 3;
pub const MAPI_ABCONT: i32 = 4;
pub const MAPI_MESSAGE: i32 = 5;
pub const MAPI_MAILUSER: i32 = 6;
pub const MAPI_ATTACH: i32 = 7;
pub const MAPI_DISTLIST: i32 = 8;
pub const MAPI_PROFSECT: i32 = 9;
pub const MAPI_STATUS: i32 = 10;
pub const MAPI_SESSION: i32 = 11;
pub const MAPI_FORMINFO: i32 = 12;
// §9 PR_MESSAGE_FLAGS
pub const MSGFLAG_READ: i32 = 0x1;
pub const MSGFLAG_UNMODIFIED: i32 = 0x2;
pub const MSGFLAG_SUBMIT: i32 = 0x4;
pub const MSGFLAG_UNSENT: i32 = 0x8;
pub const MSGFLAG_HASATTACH: i32 = 0x10;
pub const MSGFLAG_FROMME: i32 = 0x20;
pub const MSGFLAG_ASSOCIATED: i32 = 0x40;
pub const MSGFLAG_RESEND: i32 = 0x80;
pub const MSGFLAG_RN_PENDING: i32 = 0x100;
pub const MSGFLAG_NRN_PENDING: i32 = 0x200;
// PR_SUBMIT_FLAGS
pub const SUBMITFLAG_LOCKED: i32 = 0x1;
pub const SUBMITFLAG_PREPROCESS: i32 = 0x2;
// PR_RECIPIENT_TYPE
pub const MAPI_ORIG: i32 = 0;
pub const MAPI_TO: i32 = 1;
pub const MAPI_CC: i32 = 2;
pub const MAPI_BCC: i32 = 3;
// PR_NDR_REASON_CODE
pub const MAPI_REASON_TRANSFER_FAILED: i32 = 0;
pub const MAPI_REASON_TRANSFER_IMPOSSIBLE: i32 = 1;
pub const MAPI_REASON_CONVERSION_NOT_PERFORMED: i32 = 2;
pub const MAPI_REASON_PHYSICAL_RENDITN_NOT_DONE: i32 = 3;
pub const MAPI_REASON_PHYSICAL_DELIV_NOT_DONE: i32 = 4;
pub const MAPI_REASON_RESTRICTED_DELIVERY: i32 = 5;
pub const MAPI_REASON_DIRECTORY_OPERATN_FAILED: i32 = 6;
// PR_NDR_DIAG_CODE
pub const MAPI_DIAG_NO_DIAGNOSTIC: i32 = -1;
pub const MAPI_DIAG_OR_NAME_UNRECOGNIZED: i32 = 0;
pub const MAPI_DIAG_MTS_CONGESTED: i32 = 2;
pub const MAPI_DIAG_LOOP_DETECTED: i32 = 3;
pub const MAPI_DIAG_RECIPIENT_UNAVAILABLE: i32 = 4;
pub const MAPI_DIAG_MAXIMUM_TIME_EXPIRED: i32 = 5;
pub const MAPI_DIAG_CONTENT_TOO_LONG: i32 = 7;
pub const MAPI_DIAG_TOO_MANY_RECIPIENTS: i32 = 16;
pub const MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN: i32 = 35;
pub const MAPI_DIAG_MAIL_REFUSED: i32 = 38;
// §5 FlushQueues flags
pub const FLUSH_UPLOAD: u32 = 0x2;
pub const FLUSH_DOWNLOAD: u32 = 0x4;
pub const FLUSH_FORCE: u32 = 0x8;
pub const FLUSH_NO_UI: u32 = 0x10;
pub const FLUSH_ASYNC_OK: u32 = 0x20;
// §5 ValidateState flags
pub const SUPPRESS_UI: u32 = 0x1;
pub const REFRESH_XP_HEADER_CACHE: u32 = 0x1_0000;
pub const PROCESS_XP_HEADER_CACHE: u32 = 0x2_0000;
pub const FORCE_XP_CONNECT: u32 = 0x4_0000;
pub const FORCE_XP_DISCONNECT: u32 = 0x8_0000;
pub const CONFIG_CHANGED: u32 = 0x10_0000;
pub const ABORT_XP_HEADER_OPERATION: u32 = 0x20_0000;
pub const SHOW_XP_SESSION_UI: u32 = 0x40_0000;

macro_rules! set {
    ($tag:expr, $kind:ident, $prefix:literal, [$($name:ident),* $(,)?]) => {
        ConstantSet {
            tag: $tag,
            kind: ConstantKind::$kind,
            short_prefix: $prefix,
            entries: &[$((stringify!($name), $name as i64)),*],
        }
    };
}

/// Every property whose values have names.
pub static CONSTANT_SETS: &[ConstantSet] = &[
    set!(
        tag::PR_RESOURCE_TYPE,
        Enum,
        "",
        [
            MAPI_STORE_PROVIDER,
            MAPI_AB,
            MAPI_AB_PROVIDER,
            MAPI_TRANSPORT_PROVIDER,
            MAPI_SPOOLER,
            MAPI_PROFILE_PROVIDER,
            MAPI_SUBSYSTEM,
            MAPI_HOOK_PROVIDER,
        ]
    ),
    set!(
        tag::PR_RESOURCE_METHODS,
        Bits,
        "STATUS_",
        [
            STATUS_VALIDATE_STATE,
            STATUS_SETTINGS_DIALOG,
            STATUS_CHANGE_PASSWORD,
            STATUS_FLUSH_QUEUES,
        ]
    ),
    set!(
        tag::PR_RESOURCE_FLAGS,
        Bits,
        "STATUS_",
        [
            STATUS_DEFAULT_OUTBOUND,
            STATUS_DEFAULT_STORE,
            STATUS_PRIMARY_IDENTITY,
            STATUS_SIMPLE_STORE,
            STATUS_XP_PREFER_LAST,
            STATUS_NO_PRIMARY_IDENTITY,
            STATUS_NO_DEFAULT_STORE,
            STATUS_TEMP_SECTION,
            STATUS_OWN_STORE,
            HOOK_INBOUND,
            HOOK_OUTBOUND,
            STATUS_NEED_IPM_TREE,
            STATUS_PRIMARY_STORE,
            STATUS_SECONDARY_STORE,
        ]
    ),
    set!(
        tag::PR_STATUS_CODE,
        Bits,
        "STATUS_",
        [
            STATUS_AVAILABLE,
            STATUS_OFFLINE,
            STATUS_FAILURE,
            STATUS_INBOUND_ENABLED,
            STATUS_INBOUND_ACTIVE,
            STATUS_INBOUND_FLUSH,
            STATUS_OUTBOUND_ENABLED,
            STATUS_OUTBOUND_ACTIVE,
            STATUS_OUTBOUND_FLUSH,
            STATUS_REMOTE_ACCESS,
        ]
    ),
    set!(
        tag::PR_OBJECT_TYPE,
        Enum,
        "",
        [
            MAPI_STORE,
            MAPI_ADDRBOOK,
            MAPI_FOLDER,
            MAPI_ABCONT,
            MAPI_MESSAGE,
            MAPI_MAILUSER,
            MAPI_ATTACH,
            MAPI_DISTLIST,
            MAPI_PROFSECT,
            MAPI_STATUS,
            MAPI_SESSION,
            MAPI_FORMINFO,
        ]
    ),
    set!(
        tag::PR_MESSAGE_FLAGS,
        Bits,
        "MSGFLAG_",
        [
            MSGFLAG_READ,
            MSGFLAG_UNMODIFIED,
            MSGFLAG_SUBMIT,
            MSGFLAG_UNSENT,
            MSGFLAG_HASATTACH,
            MSGFLAG_FROMME,
            MSGFLAG_ASSOCIATED,
            MSGFLAG_RESEND,
            MSGFLAG_RN_PENDING,
            MSGFLAG_NRN_PENDING,
        ]
    ),
    set!(
        tag::PR_SUBMIT_FLAGS,
        Bits,
        "SUBMITFLAG_",
        [SUBMITFLAG_LOCKED, SUBMITFLAG_PREPROCESS]
    ),
    set!(
        tag::PR_RECIPIENT_TYPE,
        Enum,
        "",
        [MAPI_ORIG, MAPI_TO, MAPI_CC, MAPI_BCC]
    ),
    set!(
        tag::PR_NDR_REASON_CODE,
        Enum,
        "",
        [
            MAPI_REASON_TRANSFER_FAILED,
            MAPI_REASON_TRANSFER_IMPOSSIBLE,
            MAPI_REASON_CONVERSION_NOT_PERFORMED,
            MAPI_REASON_PHYSICAL_RENDITN_NOT_DONE,
            MAPI_REASON_PHYSICAL_DELIV_NOT_DONE,
            MAPI_REASON_RESTRICTED_DELIVERY,
            MAPI_REASON_DIRECTORY_OPERATN_FAILED,
        ]
    ),
    set!(
        tag::PR_NDR_DIAG_CODE,
        Enum,
        "",
        [
            MAPI_DIAG_NO_DIAGNOSTIC,
            MAPI_DIAG_OR_NAME_UNRECOGNIZED,
            MAPI_DIAG_MTS_CONGESTED,
            MAPI_DIAG_LOOP_DETECTED,
            MAPI_DIAG_RECIPIENT_UNAVAILABLE,
            MAPI_DIAG_MAXIMUM_TIME_EXPIRED,
            MAPI_DIAG_CONTENT_TOO_LONG,
            MAPI_DIAG_TOO_MANY_RECIPIENTS,
            MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN,
            MAPI_DIAG_MAIL_REFUSED,
        ]
    ),
];

/// The value of a named constant. A name that several sets share has one value in all of them.
pub fn lookup(name: &str) -> Option<i64> {
    CONSTANT_SETS
        .iter()
        .flat_map(|s| s.entries.iter())
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// The set of named values that `tag` takes, if it has one.
pub fn set_for(tag: PropTag) -> Option<&'static ConstantSet> {
    CONSTANT_SETS.iter().find(|s| s.tag.id() == tag.id())
}

/// The name of `value` in `tag`'s set (`MAPI_SPOOLER` for `PR_RESOURCE_TYPE` = 37).
pub fn name_of(tag: PropTag, value: i64) -> Option<&'static str> {
    let set = set_for(tag)?;
    (set.kind == ConstantKind::Enum)
        .then(|| {
            set.entries
                .iter()
                .find(|(_, v)| *v == value)
                .map(|(n, _)| *n)
        })
        .flatten()
}

/// Bits of `value` by name, short form, `|`-joined (`AVAILABLE|OUTBOUND_ENABLED`); bits without a
/// name are shown in hex; zero is `0`. `None` if `tag` is not a bit set.
pub fn bits_text(tag: PropTag, value: i64) -> Option<String> {
    let set = set_for(tag).filter(|s| s.kind == ConstantKind::Bits)?;
    let mut rest = value as u32 as i64;
    let mut parts = Vec::new();
    for (name, bit) in set.entries {
        if rest & bit != 0 {
            parts.push(
                name.strip_prefix(set.short_prefix)
                    .unwrap_or(name)
                    .to_string(),
            );
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("0x{rest:X}"));
    }
    Some(if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_their_own_property() {
        assert_eq!(lookup("MAPI_SPOOLER"), Some(37));
        assert_eq!(lookup("status_flush_queues"), Some(8));
        assert_eq!(
            name_of(tag::PR_RESOURCE_TYPE, 36),
            Some("MAPI_TRANSPORT_PROVIDER")
        );
        assert_eq!(name_of(tag::PR_STATUS_CODE, 1), None);
        assert_eq!(
            bits_text(tag::PR_STATUS_CODE, 0x10_0001).as_deref(),
            Some("AVAILABLE|OUTBOUND_ENABLED")
        );
        // Same bit, other property, other meaning.
        assert_eq!(
            bits_text(tag::PR_RESOURCE_FLAGS, 1).as_deref(),
            Some("DEFAULT_OUTBOUND")
        );
        assert_eq!(
            bits_text(tag::PR_RESOURCE_METHODS, 0x19).as_deref(),
            Some("VALIDATE_STATE|FLUSH_QUEUES|0x10")
        );
        assert_eq!(bits_text(tag::PR_STATUS_CODE, 0).as_deref(), Some("0"));
        assert_eq!(bits_text(tag::PR_RESOURCE_TYPE, 0), None);
    }

    #[test]
    fn no_name_has_two_values() {
        for a in CONSTANT_SETS.iter().flat_map(|s| s.entries) {
            for b in CONSTANT_SETS.iter().flat_map(|s| s.entries) {
                if a.0 == b.0 {
                    assert_eq!(a.1, b.1, "{}", a.0);
                }
            }
        }
    }
}

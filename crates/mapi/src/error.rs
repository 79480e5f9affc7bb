//! MAPI's result codes (`HRESULT`s from `MAPICode.h`) and the error type every API returns.

use std::fmt;

macro_rules! codes {
    ($($variant:ident = $value:expr => $name:literal),* $(,)?) => {
        /// A MAPI result code. The numbers are MAPI's; `Other` keeps any code we do not name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MapiCode {
            $($variant,)*
            Other(u32),
        }

        impl MapiCode {
            /// The `HRESULT` value.
            pub const fn value(self) -> u32 {
                match self {
                    $(MapiCode::$variant => $value,)*
                    MapiCode::Other(v) => v,
                }
            }
            /// MAPI's name (`MAPI_E_NO_SUPPORT`), or `None` for an unnamed code.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $(MapiCode::$variant => Some($name),)*
                    MapiCode::Other(_) => None,
                }
            }
            pub const fn from_value(value: u32) -> MapiCode {
                $(if value == $value { return MapiCode::$variant; })*
                MapiCode::Other(value)
            }
            /// Looks a code up by MAPI name.
            pub fn from_name(name: &str) -> Option<MapiCode> {
                match name {
                    $($name => Some(MapiCode::$variant),)*
                    _ => None,
                }
            }
            /// Every named code.
            pub const ALL: &'static [MapiCode] = &[$(MapiCode::$variant),*];
        }
    };
}

codes! {
    Ok = 0 => "S_OK",
    CallFailed = 0x8000_4005 => "MAPI_E_CALL_FAILED",
    NotEnoughMemory = 0x8007_000E => "MAPI_E_NOT_ENOUGH_MEMORY",
    InvalidParameter = 0x8007_0057 => "MAPI_E_INVALID_PARAMETER",
    InterfaceNotSupported = 0x8000_4002 => "MAPI_E_INTERFACE_NOT_SUPPORTED",
    NoAccess = 0x8007_0005 => "MAPI_E_NO_ACCESS",
    NoSupport = 0x8004_0102 => "MAPI_E_NO_SUPPORT",
    BadCharwidth = 0x8004_0103 => "MAPI_E_BAD_CHARWIDTH",
    StringTooLong = 0x8004_0105 => "MAPI_E_STRING_TOO_LONG",
    UnknownFlags = 0x8004_0106 => "MAPI_E_UNKNOWN_FLAGS",
    InvalidEntryId = 0x8004_0107 => "MAPI_E_INVALID_ENTRYID",
    InvalidObject = 0x8004_0108 => "MAPI_E_INVALID_OBJECT",
    ObjectChanged = 0x8004_0109 => "MAPI_E_OBJECT_CHANGED",
    ObjectDeleted = 0x8004_010A => "MAPI_E_OBJECT_DELETED",
    Busy = 0x8004_010B => "MAPI_E_BUSY",
    NotEnoughDisk = 0x8004_010D => "MAPI_E_NOT_ENOUGH_DISK",
    NotEnoughResources = 0x8004_010E => "MAPI_E_NOT_ENOUGH_RESOURCES",
    NotFound = 0x8004_010F => "MAPI_E_NOT_FOUND",
    Version = 0x8004_0110 => "MAPI_E_VERSION",
    LogonFailed = 0x8004_0111 => "MAPI_E_LOGON_FAILED",
    SessionLimit = 0x8004_0112 => "MAPI_E_SESSION_LIMIT",
    UserCancel = 0x8004_0113 => "MAPI_E_USER_CANCEL",
    UnableToAbort = 0x8004_0114 => "MAPI_E_UNABLE_TO_ABORT",
    NetworkError = 0x8004_0115 => "MAPI_E_NETWORK_ERROR",
    DiskError = 0x8004_0116 => "MAPI_E_DISK_ERROR",
    TooComplex = 0x8004_0117 => "MAPI_E_TOO_COMPLEX",
    BadColumn = 0x8004_0118 => "MAPI_E_BAD_COLUMN",
    CorruptData = 0x8004_011B => "MAPI_E_CORRUPT_DATA",
    Unconfigured = 0x8004_011C => "MAPI_E_UNCONFIGURED",
    FailOneProvider = 0x8004_011D => "MAPI_E_FAILONEPROVIDER",
    UnknownCpid = 0x8004_011E => "MAPI_E_UNKNOWN_CPID",
    UnknownLcid = 0x8004_011F => "MAPI_E_UNKNOWN_LCID",
    EndOfSession = 0x8004_0200 => "MAPI_E_END_OF_SESSION",
    UnknownEntryId = 0x8004_0201 => "MAPI_E_UNKNOWN_ENTRYID",
    MissingRequiredColumn = 0x8004_0202 => "MAPI_E_MISSING_REQUIRED_COLUMN",
    BadValue = 0x8004_0301 => "MAPI_E_BAD_VALUE",
    InvalidType = 0x8004_0302 => "MAPI_E_INVALID_TYPE",
    TypeNoSupport = 0x8004_0303 => "MAPI_E_TYPE_NO_SUPPORT",
    UnexpectedType = 0x8004_0304 => "MAPI_E_UNEXPECTED_TYPE",
    TooBig = 0x8004_0305 => "MAPI_E_TOO_BIG",
    UnableToComplete = 0x8004_0400 => "MAPI_E_UNABLE_TO_COMPLETE",
    Timeout = 0x8004_0401 => "MAPI_E_TIMEOUT",
    TableEmpty = 0x8004_0402 => "MAPI_E_TABLE_EMPTY",
    TableTooBig = 0x8004_0403 => "MAPI_E_TABLE_TOO_BIG",
    InvalidBookmark = 0x8004_0405 => "MAPI_E_INVALID_BOOKMARK",
    Wait = 0x8004_0500 => "MAPI_E_WAIT",
    Cancel = 0x8004_0501 => "MAPI_E_CANCEL",
    NotMe = 0x8004_0502 => "MAPI_E_NOT_ME",
    CorruptStore = 0x8004_0600 => "MAPI_E_CORRUPT_STORE",
    NotInQueue = 0x8004_0601 => "MAPI_E_NOT_IN_QUEUE",
    Collision = 0x8004_0604 => "MAPI_E_COLLISION",
    NotInitialized = 0x8004_0605 => "MAPI_E_NOT_INITIALIZED",
    NonStandard = 0x8004_0606 => "MAPI_E_NON_STANDARD",
    NoRecipients = 0x8004_0607 => "MAPI_E_NO_RECIPIENTS",
    Submitted = 0x8004_0608 => "MAPI_E_SUBMITTED",
    AmbiguousRecip = 0x8004_0700 => "MAPI_E_AMBIGUOUS_RECIP",
    WarnNoService = 0x0004_0203 => "MAPI_W_NO_SERVICE",
    WarnErrorsReturned = 0x0004_0380 => "MAPI_W_ERRORS_RETURNED",
    WarnPositionChanged = 0x0004_0481 => "MAPI_W_POSITION_CHANGED",
    WarnApproxCount = 0x0004_0482 => "MAPI_W_APPROX_COUNT",
    WarnCancelMessage = 0x0004_0580 => "MAPI_W_CANCEL_MESSAGE",
    WarnPartialCompletion = 0x0004_0680 => "MAPI_W_PARTIAL_COMPLETION",
}

impl MapiCode {
    /// `HR_FAILED`: the severity bit is set. Warnings (`MAPI_W_*`) and `S_OK` succeed.
    pub const fn is_failure(self) -> bool {
        self.value() & 0x8000_0000 != 0
    }
}

impl fmt::Display for MapiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:08X})", self.value()),
            None => write!(f, "0x{:08X}", self.value()),
        }
    }
}

/// A failed MAPI call: MAPI's code, and in words what went wrong and, where it helps, what to do.
///
/// `Display` shows both: `MAPI_E_NO_SUPPORT (0x80040102): transport "work" has no FlushQueues`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {cause}")]
pub struct MapiError {
    pub code: MapiCode,
    pub cause: String,
}

impl MapiError {
    pub fn new(code: MapiCode, cause: impl Into<String>) -> MapiError {
        MapiError {
            code,
            cause: cause.into(),
        }
    }
}

macro_rules! shorthands {
    ($($fn:ident => $variant:ident),* $(,)?) => {
        impl MapiError {
            $(
                #[doc = concat!("A `MapiCode::", stringify!($variant), "` error with this cause.")]
                pub fn $fn(cause: impl Into<String>) -> MapiError {
                    MapiError::new(MapiCode::$variant, cause)
                }
            )*
        }
    };
}

shorthands! {
    call_failed => CallFailed,
    invalid_parameter => InvalidParameter,
    no_access => NoAccess,
    no_support => NoSupport,
    unknown_flags => UnknownFlags,
    invalid_entry_id => InvalidEntryId,
    busy => Busy,
    not_found => NotFound,
    logon_failed => LogonFailed,
    user_cancel => UserCancel,
    unable_to_abort => UnableToAbort,
    network_error => NetworkError,
    disk_error => DiskError,
    too_complex => TooComplex,
    bad_column => BadColumn,
    corrupt_data => CorruptData,
    unconfigured => Unconfigured,
    unknown_entry_id => UnknownEntryId,
    bad_value => BadValue,
    timeout => Timeout,
    table_too_big => TableTooBig,
    invalid_bookmark => InvalidBookmark,
    corrupt_store => CorruptStore,
    not_in_queue => NotInQueue,
    no_recipients => NoRecipients,
}

/// What every MAPI call here returns.
pub type MapiResult<T> = Result<T, MapiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_name_number_and_cause() {
        let e = MapiError::no_support("transport \"work\" has no FlushQueues");
        assert_eq!(
            e.to_string(),
            "MAPI_E_NO_SUPPORT (0x80040102): transport \"work\" has no FlushQueues"
        );
    }

    #[test]
    fn values_are_mapis() {
        assert_eq!(MapiCode::Busy.value(), 0x8004_010B);
        assert_eq!(MapiCode::TableTooBig.value(), 0x8004_0403);
        assert_eq!(MapiCode::InvalidParameter.value(), 0x8007_0057);
        assert_eq!(MapiCode::NoRecipients.value(), 0x8004_0607);
        assert!(MapiCode::NotInQueue.is_failure());
        assert!(!MapiCode::WarnPositionChanged.is_failure());
        assert!(!MapiCode::Ok.is_failure());
    }

    #[test]
    fn codes_round_trip_by_value_and_name() {
        for code in MapiCode::ALL {
            assert_eq!(MapiCode::from_value(code.value()), *code);
            let name = code.name().expect("named");
            assert_eq!(MapiCode::from_name(name), Some(*code));
        }
        assert_eq!(
            MapiCode::from_value(0x8004_0999),
            MapiCode::Other(0x8004_0999)
        );
        assert_eq!(MapiCode::Other(0x8004_0999).to_string(), "0x80040999");
    }
}

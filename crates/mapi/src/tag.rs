//! Property tags: a 16-bit property ID and a 16-bit property type in one `u32`, with MAPI's
//! numeric values, and the names MAPI's headers give them.

use std::fmt;

/// The type half of a property tag (`PT_*`), MAPI's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum PropType {
    Unspecified = 0x0000,
    Null = 0x0001,
    I2 = 0x0002,
    Long = 0x0003,
    R4 = 0x0004,
    Double = 0x0005,
    Currency = 0x0006,
    AppTime = 0x0007,
    Error = 0x000A,
    Boolean = 0x000B,
    Object = 0x000D,
    I8 = 0x0014,
    String8 = 0x001E,
    Unicode = 0x001F,
    SysTime = 0x0040,
    Clsid = 0x0048,
    Binary = 0x0102,
}

/// `MV_FLAG`: set on the type of a multi-valued property.
pub const MV_FLAG: u16 = 0x1000;
/// `MV_INSTANCE`: asks a table for one row per value of a multi-valued column.
pub const MV_INSTANCE: u16 = 0x2000;

impl PropType {
    const ALL: [PropType; 17] = [
        PropType::Unspecified,
        PropType::Null,
        PropType::I2,
        PropType::Long,
        PropType::R4,
        PropType::Double,
        PropType::Currency,
        PropType::AppTime,
        PropType::Error,
        PropType::Boolean,
        PropType::Object,
        PropType::I8,
        PropType::String8,
        PropType::Unicode,
        PropType::SysTime,
        PropType::Clsid,
        PropType::Binary,
    ];

    /// The single-valued type for a `u16` type code (the MV bits must be stripped first).
    pub fn from_u16(code: u16) -> Option<PropType> {
        Self::ALL.iter().copied().find(|t| *t as u16 == code)
    }

    /// MAPI's name, e.g. `PT_UNICODE`.
    pub fn name(self) -> &'static str {
        match self {
            PropType::Unspecified => "PT_UNSPECIFIED",
            PropType::Null => "PT_NULL",
            PropType::I2 => "PT_I2",
            PropType::Long => "PT_LONG",
            PropType::R4 => "PT_R4",
            PropType::Double => "PT_DOUBLE",
            PropType::Currency => "PT_CURRENCY",
            PropType::AppTime => "PT_APPTIME",
            PropType::Error => "PT_ERROR",
            PropType::Boolean => "PT_BOOLEAN",
            PropType::Object => "PT_OBJECT",
            PropType::I8 => "PT_I8",
            PropType::String8 => "PT_STRING8",
            PropType::Unicode => "PT_UNICODE",
            PropType::SysTime => "PT_SYSTIME",
            PropType::Clsid => "PT_CLSID",
            PropType::Binary => "PT_BINARY",
        }
    }
}

/// A property tag, `(id << 16) | type`, exactly as MAPI encodes it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PropTag(pub u32);

impl PropTag {
    /// Builds `PROP_TAG(type, id)`.
    pub const fn new(id: u16, ty: u16) -> PropTag {
        PropTag(((id as u32) << 16) | ty as u32)
    }
    pub const fn id(self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// The whole type half, MV bits included.
    pub const fn type_code(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }
    pub const fn is_multi_valued(self) -> bool {
        self.type_code() & MV_FLAG != 0
    }
    /// The single-valued type (MV bits stripped); `None` for a type MAPI does not define.
    pub fn prop_type(self) -> Option<PropType> {
        PropType::from_u16(self.type_code() & !(MV_FLAG | MV_INSTANCE))
    }
    /// The same ID with another type, as `CHANGE_PROP_TYPE` does.
    pub const fn with_type(self, ty: u16) -> PropTag {
        PropTag::new(self.id(), ty)
    }
    /// The single-valued form of a multi-valued tag (what a restriction on it must use).
    pub const fn single_valued(self) -> PropTag {
        self.with_type(self.type_code() & !(MV_FLAG | MV_INSTANCE))
    }
    /// MAPI's name for this tag, if it is one we know.
    pub fn name(self) -> Option<&'static str> {
        TAGS.iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .or_else(|| {
                // The `_A` (PT_STRING8) twin of a known `_W` tag has the same name with `_A`.
                if self.type_code() == PropType::String8 as u16 {
                    STRING8_NAMES
                        .iter()
                        .find(|(_, t)| *t == self)
                        .map(|(n, _)| *n)
                } else {
                    None
                }
            })
    }
    /// Looks a tag up by MAPI name (`PR_DISPLAY_NAME`, `PR_DISPLAY_NAME_W`, `PR_DISPLAY_NAME_A`)
    /// or by number (`0x3001001F`).
    pub fn parse(text: &str) -> Option<PropTag> {
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            return u32::from_str_radix(hex, 16).ok().map(PropTag);
        }
        let upper = text.to_ascii_uppercase();
        if let Some(tag) = TAGS.iter().find(|(n, _)| *n == upper).map(|(_, t)| *t) {
            return Some(tag);
        }
        if let Some(base) = upper.strip_suffix("_W")
            && let Some(tag) = TAGS.iter().find(|(n, _)| *n == base).map(|(_, t)| *t)
            && tag.type_code() == PropType::Unicode as u16
        {
            return Some(tag);
        }
        STRING8_NAMES
            .iter()
            .find(|(n, _)| *n == upper)
            .map(|(_, t)| *t)
    }
    /// Every tag with a name, in the order of mapi-reference.md.
    pub fn known() -> impl Iterator<Item = (&'static str, PropTag)> {
        TAGS.iter().copied()
    }
}

impl fmt::Debug for PropTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "0x{:08X}", self.0),
        }
    }
}

impl fmt::Display for PropTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

macro_rules! tags {
    ($($name:ident = $value:expr),* $(,)?) => {
        $(pub const $name: PropTag = PropTag($value);)*
        const TAGS: &[(&str, PropTag)] = &[$((stringify!($name), $name)),*];
    };
}

macro_rules! string8_tags {
    ($($name:ident = $w:ident),* $(,)?) => {
        $(pub const $name: PropTag = $w.with_type(PropType::String8 as u16);)*
        const STRING8_NAMES: &[(&str, PropTag)] = &[$((stringify!($name), $name)),*];
    };
}

pub const PR_NULL: PropTag = PropTag(0x0000_0001);

tags! {
    // mapi-reference.md §1: status objects and the status table.
    PR_ENTRYID = 0x0FFF_0102,
    PR_OBJECT_TYPE = 0x0FFE_0003,
    PR_INSTANCE_KEY = 0x0FF6_0102,
    PR_STORE_RECORD_KEY = 0x0FFA_0102,
    PR_RECORD_KEY = 0x0FF9_0102,
    PR_ROWID = 0x3000_0003,
    PR_DISPLAY_NAME = 0x3001_001F,
    PR_ADDRTYPE = 0x3002_001F,
    PR_EMAIL_ADDRESS = 0x3003_001F,
    PR_PROVIDER_DISPLAY = 0x3006_001F,
    PR_RESOURCE_FLAGS = 0x3009_0003,
    PR_PROVIDER_DLL_NAME = 0x300A_001F,
    PR_SEARCH_KEY = 0x300B_0102,
    PR_PROVIDER_UID = 0x300C_0102,
    PR_PROVIDER_ORDINAL = 0x300D_0003,
    PR_IDENTITY_DISPLAY = 0x3E00_001F,
    PR_IDENTITY_ENTRYID = 0x3E01_0102,
    PR_RESOURCE_METHODS = 0x3E02_0003,
    PR_RESOURCE_TYPE = 0x3E03_0003,
    PR_STATUS_CODE = 0x3E04_0003,
    PR_IDENTITY_SEARCH_KEY = 0x3E05_0102,
    PR_OWN_STORE_ENTRYID = 0x3E06_0102,
    PR_STATUS_STRING = 0x3E08_001F,
    PR_REMOTE_PROGRESS = 0x3E0B_0003,
    PR_REMOTE_PROGRESS_TEXT = 0x3E0C_001F,
    PR_REMOTE_VALIDATE_OK = 0x3E0D_000B,
    // §9: messages, recipients, the outgoing queue, non-delivery reports.
    PR_DEFERRED_DELIVERY_TIME = 0x000F_0040,
    PR_MESSAGE_CLASS = 0x001A_001F,
    PR_ORIGINATOR_DELIVERY_REPORT_REQUESTED = 0x0023_000B,
    PR_PRIORITY = 0x0026_0003,
    PR_SUBJECT = 0x0037_001F,
    PR_CLIENT_SUBMIT_TIME = 0x0039_0040,
    PR_PROVIDER_SUBMIT_TIME = 0x0048_0040,
    PR_NDR_REASON_CODE = 0x0C04_0003,
    PR_NDR_DIAG_CODE = 0x0C05_0003,
    PR_RECIPIENT_TYPE = 0x0C15_0003,
    PR_SENDER_NAME = 0x0C1A_001F,
    PR_SENDER_EMAIL_ADDRESS = 0x0C1F_001F,
    PR_DELETE_AFTER_SUBMIT = 0x0E01_000B,
    PR_DISPLAY_BCC = 0x0E02_001F,
    PR_DISPLAY_CC = 0x0E03_001F,
    PR_DISPLAY_TO = 0x0E04_001F,
    PR_MESSAGE_DELIVERY_TIME = 0x0E06_0040,
    PR_MESSAGE_FLAGS = 0x0E07_0003,
    PR_MESSAGE_SIZE = 0x0E08_0003,
    PR_PARENT_ENTRYID = 0x0E09_0102,
    PR_SENTMAIL_ENTRYID = 0x0E0A_0102,
    PR_RESPONSIBILITY = 0x0E0F_000B,
    PR_MESSAGE_RECIPIENTS = 0x0E12_000D,
    PR_MESSAGE_ATTACHMENTS = 0x0E13_000D,
    PR_SUBMIT_FLAGS = 0x0E14_0003,
    PR_MSG_STATUS = 0x0E17_0003,
    PR_PREPROCESS = 0x0E22_000B,
    PR_INTERNET_MESSAGE_ID = 0x1035_001F,
    PR_SMTP_ADDRESS = 0x39FE_001F,
    // mapispool's own properties, in the range MAPI leaves to providers (0x6600–0x67FF), for what
    // MAPI has no tag for: the queue's per-message and per-recipient state, and the status rows'
    // extra columns. Named PR_MSP_* so no reader takes them for Microsoft's.
    PR_MSP_QUEUE_STATE = 0x6600_001F,
    PR_MSP_ATTEMPTS = 0x6601_0003,
    PR_MSP_LAST_ERROR = 0x6602_001F,
    PR_MSP_NEXT_ATTEMPT_TIME = 0x6603_0040,
    PR_MSP_TRANSPORT = 0x6604_001F,
    PR_MSP_SERVER_ID = 0x6605_001F,
    PR_MSP_ENVELOPE_FROM = 0x6606_001F,
    PR_MSP_DSN_NOTIFY = 0x6607_001F,
    PR_MSP_DSN_RET = 0x6608_001F,
    PR_MSP_NEEDS_UI = 0x6610_000B,
    PR_MSP_QUEUED_COUNT = 0x6611_0003,
    PR_MSP_LAST_FLUSH_TIME = 0x6612_0040,
    PR_MSP_PHASE = 0x6613_001F,
    PR_MSP_IDLE = 0x6614_000B,
    // The cluster view (`mapispool status --cluster`): one row per spooler node of a shared
    // queue, and one for the queue's counts by state.
    PR_MSP_NODE_STATE = 0x6620_001F,
    PR_MSP_NODE_HOST = 0x6621_001F,
    PR_MSP_NODE_PID = 0x6622_0003,
    PR_MSP_NODE_STARTED = 0x6623_0040,
    PR_MSP_NODE_HEARTBEAT = 0x6624_0040,
    PR_MSP_NODE_INSTANCE = 0x6625_001F,
    PR_MSP_SENDING_COUNT = 0x6626_0003,
    PR_MSP_DEFERRED_COUNT = 0x6627_0003,
    PR_MSP_SCHEDULED_COUNT = 0x6628_0003,
    // Milliseconds a node's clock is ahead of its shared store's (negative: behind).
    PR_MSP_NODE_CLOCK_OFFSET = 0x6629_0003,
}

string8_tags! {
    PR_DISPLAY_NAME_A = PR_DISPLAY_NAME,
    PR_ADDRTYPE_A = PR_ADDRTYPE,
    PR_EMAIL_ADDRESS_A = PR_EMAIL_ADDRESS,
    PR_PROVIDER_DISPLAY_A = PR_PROVIDER_DISPLAY,
    PR_PROVIDER_DLL_NAME_A = PR_PROVIDER_DLL_NAME,
    PR_IDENTITY_DISPLAY_A = PR_IDENTITY_DISPLAY,
    PR_STATUS_STRING_A = PR_STATUS_STRING,
    PR_REMOTE_PROGRESS_TEXT_A = PR_REMOTE_PROGRESS_TEXT,
    PR_MESSAGE_CLASS_A = PR_MESSAGE_CLASS,
    PR_SUBJECT_A = PR_SUBJECT,
    PR_SENDER_NAME_A = PR_SENDER_NAME,
    PR_SENDER_EMAIL_ADDRESS_A = PR_SENDER_EMAIL_ADDRESS,
    PR_DISPLAY_BCC_A = PR_DISPLAY_BCC,
    PR_DISPLAY_CC_A = PR_DISPLAY_CC,
    PR_DISPLAY_TO_A = PR_DISPLAY_TO,
    PR_INTERNET_MESSAGE_ID_A = PR_INTERNET_MESSAGE_ID,
    PR_SMTP_ADDRESS_A = PR_SMTP_ADDRESS,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_mapi_numbers() {
        assert_eq!(PR_STATUS_CODE.0, 0x3E04_0003);
        assert_eq!(PR_STATUS_CODE.id(), 0x3E04);
        assert_eq!(PR_STATUS_CODE.prop_type(), Some(PropType::Long));
        assert_eq!(PR_DISPLAY_NAME_A.0, 0x3001_001E);
        assert_eq!(PR_MESSAGE_RECIPIENTS.prop_type(), Some(PropType::Object));
    }

    #[test]
    fn names_both_ways() {
        for (name, tag) in PropTag::known() {
            assert_eq!(PropTag::parse(name), Some(tag), "{name}");
            assert_eq!(tag.name(), Some(name));
            assert_eq!(PropTag::parse(&format!("0x{:08X}", tag.0)), Some(tag));
        }
        assert_eq!(PropTag::parse("pr_display_name_w"), Some(PR_DISPLAY_NAME));
        assert_eq!(PropTag::parse("PR_SUBJECT_A"), Some(PR_SUBJECT_A));
        assert_eq!(PR_SUBJECT_A.name(), Some("PR_SUBJECT_A"));
        assert_eq!(PropTag::parse("PR_STATUS_CODE_W"), None);
        assert_eq!(PropTag::parse("PR_NO_SUCH_TAG"), None);
        assert_eq!(format!("{}", PropTag(0x6701_0003)), "0x67010003");
    }

    #[test]
    fn multi_valued_tags() {
        let mv = PropTag::new(0x6600, MV_FLAG | PropType::Unicode as u16);
        assert!(mv.is_multi_valued());
        assert_eq!(mv.prop_type(), Some(PropType::Unicode));
        assert_eq!(mv.single_valued(), PropTag(0x6600_001F));
    }
}

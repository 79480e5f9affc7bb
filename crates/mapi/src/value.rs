//! Typed property values (`SPropValue`), rows (`SRow`) and row sets (`SRowSet`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::MapiCode;
use crate::tag::{MV_FLAG, PropTag, PropType};

/// A `FILETIME`: 100-nanosecond intervals since 1601-01-01 UTC, which is what `PT_SYSTIME` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileTime(pub u64);

/// 100 ns ticks between 1601-01-01 and 1970-01-01.
const UNIX_EPOCH_TICKS: u64 = 116_444_736_000_000_000;

impl FileTime {
    pub fn now() -> FileTime {
        FileTime::from(SystemTime::now())
    }
    pub fn to_system_time(self) -> SystemTime {
        // Seconds and sub-second ticks separately: nanoseconds since 1970 overflow a u64 in 2554.
        let ticks = |t: u64| Duration::new(t / 10_000_000, (t % 10_000_000) as u32 * 100);
        // Every FILETIME (1601 to about 60056) fits a SystemTime on the platforms we build
        // for; the epoch stands in should one not, rather than a panic.
        if self.0 >= UNIX_EPOCH_TICKS {
            UNIX_EPOCH.checked_add(ticks(self.0 - UNIX_EPOCH_TICKS))
        } else {
            UNIX_EPOCH.checked_sub(ticks(UNIX_EPOCH_TICKS - self.0))
        }
        .unwrap_or(UNIX_EPOCH)
    }
    /// Seconds since the Unix epoch (negative before 1970).
    pub fn unix_seconds(self) -> i64 {
        (self.0 as i128 - UNIX_EPOCH_TICKS as i128).div_euclid(10_000_000) as i64
    }
    pub fn from_unix_seconds(secs: i64) -> FileTime {
        let ticks = i128::from(secs) * 10_000_000 + i128::from(UNIX_EPOCH_TICKS);
        FileTime(u64::try_from(ticks.max(0)).unwrap_or(u64::MAX))
    }
    /// RFC 3339 text in UTC, e.g. `2026-11-25T17:14:15Z` (sub-second digits only when present).
    /// Total: any FILETIME has a text. Years before 1970 are written as they are
    /// (`1969-12-31T23:59:59Z`); years past 9999 with a sign and more digits
    /// (`+10000-01-01T00:00:00Z`, ISO 8601's expanded form), which RFC 3339 itself cannot
    /// express. (humantime panics outside 1970–9999, which is why chrono writes it.)
    pub fn to_rfc3339(self) -> String {
        let secs = self.unix_seconds();
        let nanos = (self.0 % 10_000_000) as u32 * 100;
        let format = if nanos == 0 {
            chrono::SecondsFormat::Secs
        } else {
            chrono::SecondsFormat::Nanos
        };
        match chrono::DateTime::<chrono::Utc>::from_timestamp(secs, nanos) {
            Some(t) => t.to_rfc3339_opts(format, true),
            // Out of chrono's ±262,000 years: not reachable from a u64 of ticks, but total.
            None => format!("@{secs}"),
        }
    }
    /// Parses RFC 3339 text (`2026-11-25T17:14:15Z`, or a date alone, taken as midnight UTC).
    pub fn parse_rfc3339(text: &str) -> Option<FileTime> {
        let full;
        let text = if text.len() == 10 {
            full = format!("{text}T00:00:00Z");
            &full
        } else {
            text
        };
        humantime::parse_rfc3339_weak(text).ok().map(FileTime::from)
    }
}

impl From<SystemTime> for FileTime {
    fn from(t: SystemTime) -> FileTime {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => FileTime(
                UNIX_EPOCH_TICKS
                    .saturating_add(u64::try_from(d.as_nanos() / 100).unwrap_or(u64::MAX)),
            ),
            Err(e) => {
                FileTime(UNIX_EPOCH_TICKS.saturating_sub(
                    u64::try_from(e.duration().as_nanos() / 100).unwrap_or(u64::MAX),
                ))
            }
        }
    }
}

impl fmt::Display for FileTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// A typed property value: the `Value` union of `SPropValue`, one variant per `PT_*` type.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    Null,
    I2(i16),
    Long(i32),
    R4(f32),
    Double(f64),
    /// `PT_CURRENCY`: a 64-bit integer scaled by 10,000.
    Currency(i64),
    AppTime(f64),
    /// `PT_ERROR`: the property could not be given; why, as a MAPI code.
    Error(MapiCode),
    Boolean(bool),
    /// `PT_OBJECT`: the object itself is opened, not read; the value is a placeholder.
    Object,
    I8(i64),
    String8(String),
    Unicode(String),
    SysTime(FileTime),
    Clsid([u8; 16]),
    Binary(Vec<u8>),
    MvI2(Vec<i16>),
    MvLong(Vec<i32>),
    MvDouble(Vec<f64>),
    MvI8(Vec<i64>),
    MvString8(Vec<String>),
    MvUnicode(Vec<String>),
    MvSysTime(Vec<FileTime>),
    MvClsid(Vec<[u8; 16]>),
    MvBinary(Vec<Vec<u8>>),
}

impl PropValue {
    /// The `PT_*` type code this value has, MV_FLAG included for the multi-valued forms.
    pub fn type_code(&self) -> u16 {
        let single = |t: PropType| t as u16;
        let multi = |t: PropType| t as u16 | MV_FLAG;
        match self {
            PropValue::Null => single(PropType::Null),
            PropValue::I2(_) => single(PropType::I2),
            PropValue::Long(_) => single(PropType::Long),
            PropValue::R4(_) => single(PropType::R4),
            PropValue::Double(_) => single(PropType::Double),
            PropValue::Currency(_) => single(PropType::Currency),
            PropValue::AppTime(_) => single(PropType::AppTime),
            PropValue::Error(_) => single(PropType::Error),
            PropValue::Boolean(_) => single(PropType::Boolean),
            PropValue::Object => single(PropType::Object),
            PropValue::I8(_) => single(PropType::I8),
            PropValue::String8(_) => single(PropType::String8),
            PropValue::Unicode(_) => single(PropType::Unicode),
            PropValue::SysTime(_) => single(PropType::SysTime),
            PropValue::Clsid(_) => single(PropType::Clsid),
            PropValue::Binary(_) => single(PropType::Binary),
            PropValue::MvI2(_) => multi(PropType::I2),
            PropValue::MvLong(_) => multi(PropType::Long),
            PropValue::MvDouble(_) => multi(PropType::Double),
            PropValue::MvI8(_) => multi(PropType::I8),
            PropValue::MvString8(_) => multi(PropType::String8),
            PropValue::MvUnicode(_) => multi(PropType::Unicode),
            PropValue::MvSysTime(_) => multi(PropType::SysTime),
            PropValue::MvClsid(_) => multi(PropType::Clsid),
            PropValue::MvBinary(_) => multi(PropType::Binary),
        }
    }

    pub fn is_multi_valued(&self) -> bool {
        self.type_code() & MV_FLAG != 0
    }

    /// The elements of a multi-valued value as single values; `None` for a single value.
    pub fn elements(&self) -> Option<Vec<PropValue>> {
        Some(match self {
            PropValue::MvI2(v) => v.iter().map(|x| PropValue::I2(*x)).collect(),
            PropValue::MvLong(v) => v.iter().map(|x| PropValue::Long(*x)).collect(),
            PropValue::MvDouble(v) => v.iter().map(|x| PropValue::Double(*x)).collect(),
            PropValue::MvI8(v) => v.iter().map(|x| PropValue::I8(*x)).collect(),
            PropValue::MvString8(v) => v.iter().map(|x| PropValue::String8(x.clone())).collect(),
            PropValue::MvUnicode(v) => v.iter().map(|x| PropValue::Unicode(x.clone())).collect(),
            PropValue::MvSysTime(v) => v.iter().map(|x| PropValue::SysTime(*x)).collect(),
            PropValue::MvClsid(v) => v.iter().map(|x| PropValue::Clsid(*x)).collect(),
            PropValue::MvBinary(v) => v.iter().map(|x| PropValue::Binary(x.clone())).collect(),
            _ => return None,
        })
    }

    /// The text of a string value, either width.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PropValue::Unicode(s) | PropValue::String8(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value widened to `i64` (`PT_I2`, `PT_LONG`, `PT_I8`, `PT_CURRENCY`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PropValue::I2(v) => Some(i64::from(*v)),
            PropValue::Long(v) => Some(i64::from(*v)),
            PropValue::I8(v) | PropValue::Currency(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            PropValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            PropValue::Binary(b) => Some(b),
            _ => None,
        }
    }
}

/// Upper-case hex, the way MAPI tools print binary values and entry IDs.
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

/// Parses hex text (either case, even length) into bytes.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// One property: its tag and its value (`SPropValue`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prop {
    pub tag: PropTag,
    pub value: PropValue,
}

impl Prop {
    pub fn new(tag: PropTag, value: PropValue) -> Prop {
        Prop { tag, value }
    }
    /// The `PT_ERROR` stand-in a table gives for a column the row does not have.
    pub fn not_found(tag: PropTag) -> Prop {
        Prop {
            tag: tag.with_type(PropType::Error as u16),
            value: PropValue::Error(MapiCode::NotFound),
        }
    }
}

/// A table row (`SRow`): properties in column order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub props: Vec<Prop>,
}

impl Row {
    pub fn new(props: Vec<Prop>) -> Row {
        Row { props }
    }
    /// The value of `tag` if the row has it with exactly that type.
    pub fn get(&self, tag: PropTag) -> Option<&PropValue> {
        self.props.iter().find(|p| p.tag == tag).map(|p| &p.value)
    }
    /// The row's `PR_ENTRYID` as an [`EntryId`] (what `OpenEntry` takes), `None` when the row
    /// has none (a column set without it, or a `PT_ERROR` stand-in).
    pub fn entry_id(&self) -> Option<crate::EntryId> {
        match self.get(crate::tag::PR_ENTRYID) {
            Some(PropValue::Binary(bytes)) => Some(crate::EntryId::from_bytes(bytes.clone())),
            _ => None,
        }
    }
    /// The property with `tag`'s ID, whatever its type (a `PT_ERROR` stand-in included).
    pub fn get_by_id(&self, tag: PropTag) -> Option<&Prop> {
        self.props.iter().find(|p| p.tag.id() == tag.id())
    }
    /// Sets `tag` to `value`, replacing a property with the same ID (as ModifyStatusRow merges).
    pub fn set(&mut self, tag: PropTag, value: PropValue) {
        match self.props.iter_mut().find(|p| p.tag.id() == tag.id()) {
            Some(p) => *p = Prop::new(tag, value),
            None => self.props.push(Prop::new(tag, value)),
        }
    }
    /// The row cut down to `columns`, in that order; a column the row lacks becomes
    /// `PT_ERROR` with `MAPI_E_NOT_FOUND`.
    pub fn project(&self, columns: &[PropTag]) -> Row {
        Row::new(
            columns
                .iter()
                .map(|c| match self.get(*c) {
                    Some(v) => Prop::new(*c, v.clone()),
                    None => Prop::not_found(*c),
                })
                .collect(),
        )
    }
    pub fn tags(&self) -> impl Iterator<Item = PropTag> + '_ {
        self.props.iter().map(|p| p.tag)
    }
}

/// A set of rows (`SRowSet`).
pub type RowSet = Vec<Row>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::*;

    #[test]
    fn a_row_gives_its_entry_id() {
        let id = crate::EntryId::new(&[7; 16], b"S");
        let row = Row::new(vec![Prop::new(
            PR_ENTRYID,
            PropValue::Binary(id.as_bytes().to_vec()),
        )]);
        assert_eq!(row.entry_id(), Some(id));
        assert_eq!(Row::new(Vec::new()).entry_id(), None);
    }

    #[test]
    fn filetime_text_is_total_before_1970_and_after_9999() {
        // A message dated 1969 or in the year 10000 made `mapispool messages` exit 101.
        assert_eq!(
            FileTime::from_unix_seconds(-1).to_rfc3339(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            FileTime::from_unix_seconds(253_402_300_800).to_rfc3339(),
            "+10000-01-01T00:00:00Z"
        );
        assert_eq!(FileTime(0).to_rfc3339(), "1601-01-01T00:00:00Z");
        assert!(FileTime(u64::MAX).to_rfc3339().starts_with("+60056-"));
        assert_eq!(
            FileTime(UNIX_EPOCH_TICKS + 5).to_rfc3339(),
            "1970-01-01T00:00:00.000000500Z"
        );
        // Whatever a server or a profile brings: no panic anywhere on the way.
        assert_eq!(FileTime::from_unix_seconds(i64::MAX).0, u64::MAX);
        assert_eq!(FileTime::from_unix_seconds(i64::MIN).0, 0);
        let _ = FileTime(u64::MAX).to_system_time();
        let _ = FileTime(0).to_system_time();
    }

    proptest::proptest! {
        #[test]
        fn any_filetime_has_a_text_and_a_system_time(ticks in proptest::prelude::any::<u64>()) {
            let t = FileTime(ticks);
            let text = t.to_rfc3339();
            proptest::prop_assert!(text.ends_with('Z'), "{}", text);
            let _ = FileTime::from(t.to_system_time());
            let _ = t.unix_seconds();
        }
    }

    #[test]
    fn filetime_converts_both_ways() {
        let t = FileTime::from_unix_seconds(1_795_000_000);
        assert_eq!(t.unix_seconds(), 1_795_000_000);
        let text = t.to_rfc3339();
        assert_eq!(FileTime::parse_rfc3339(&text), Some(t));
        assert_eq!(FileTime::from_unix_seconds(0).0, UNIX_EPOCH_TICKS);
        assert_eq!(
            FileTime::parse_rfc3339("2026-11-25"),
            FileTime::parse_rfc3339("2026-11-25T00:00:00Z")
        );
    }

    #[test]
    fn projection_fills_missing_columns_with_not_found() {
        let row = Row::new(vec![Prop::new(PR_STATUS_CODE, PropValue::Long(1))]);
        let p = row.project(&[PR_DISPLAY_NAME, PR_STATUS_CODE]);
        assert_eq!(p.props[0].tag, PropTag(0x3001_000A));
        assert_eq!(p.props[0].value, PropValue::Error(MapiCode::NotFound));
        assert_eq!(p.props[1].value, PropValue::Long(1));
    }

    #[test]
    fn set_merges_by_id() {
        let mut row = Row::default();
        row.set(PR_STATUS_STRING, PropValue::Unicode("a".into()));
        row.set(PR_STATUS_STRING, PropValue::Unicode("b".into()));
        assert_eq!(row.props.len(), 1);
        assert_eq!(
            row.get(PR_STATUS_STRING).and_then(|v| v.as_str()),
            Some("b")
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xAB, 0x10]), "00AB10");
        assert_eq!(parse_hex("00ab10"), Some(vec![0, 0xAB, 0x10]));
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("zz"), None);
    }
}

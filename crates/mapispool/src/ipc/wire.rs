//! How MAPI values cross the local socket: JSON that loses nothing. A property is
//! `[tag, value]` where the tag's type says how to read the value (binary and CLSIDs as hex,
//! times as FILETIME ticks, errors as their HRESULT), and a MAPI error keeps its code.

use mapi::value::{hex, parse_hex};
use mapi::{FileTime, MapiCode, MapiError, Prop, PropTag, PropType, PropValue, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A row on the wire.
pub type WireRow = Vec<(u32, Value)>;

pub fn row_to_wire(row: &Row) -> WireRow {
    row.props
        .iter()
        .map(|p| (p.tag.0, value_to_wire(&p.value)))
        .collect()
}

/// Reads a row back; a property whose value does not fit its tag's type is dropped (a newer
/// daemon may send types this client does not know), never guessed.
pub fn row_from_wire(wire: &WireRow) -> Row {
    Row::new(
        wire.iter()
            .filter_map(|(tag, v)| {
                let tag = PropTag(*tag);
                value_from_wire(tag, v).map(|value| Prop::new(tag, value))
            })
            .collect(),
    )
}

fn value_to_wire(v: &PropValue) -> Value {
    match v {
        PropValue::Null | PropValue::Object => Value::Null,
        PropValue::I2(x) => json!(x),
        PropValue::Long(x) => json!(x),
        PropValue::R4(x) => json!(x),
        PropValue::Double(x) | PropValue::AppTime(x) => json!(x),
        PropValue::Currency(x) | PropValue::I8(x) => json!(x),
        PropValue::Error(c) => json!(c.value()),
        PropValue::Boolean(b) => json!(b),
        PropValue::String8(s) | PropValue::Unicode(s) => json!(s),
        PropValue::SysTime(t) => json!(t.0),
        PropValue::Clsid(c) => json!(hex(c)),
        PropValue::Binary(b) => json!(hex(b)),
        other => match other.elements() {
            Some(items) => Value::Array(items.iter().map(value_to_wire).collect()),
            None => Value::Null,
        },
    }
}

fn value_from_wire(tag: PropTag, v: &Value) -> Option<PropValue> {
    let single = |ty: PropType, v: &Value| -> Option<PropValue> {
        Some(match ty {
            PropType::Null => PropValue::Null,
            PropType::Object => PropValue::Object,
            PropType::I2 => PropValue::I2(i16::try_from(v.as_i64()?).ok()?),
            PropType::Long => PropValue::Long(i32::try_from(v.as_i64()?).ok()?),
            PropType::R4 => PropValue::R4(v.as_f64()? as f32),
            PropType::Double => PropValue::Double(v.as_f64()?),
            PropType::AppTime => PropValue::AppTime(v.as_f64()?),
            PropType::Currency => PropValue::Currency(v.as_i64()?),
            PropType::I8 => PropValue::I8(v.as_i64()?),
            PropType::Error => {
                PropValue::Error(MapiCode::from_value(u32::try_from(v.as_u64()?).ok()?))
            }
            PropType::Boolean => PropValue::Boolean(v.as_bool()?),
            PropType::String8 => PropValue::String8(v.as_str()?.to_string()),
            PropType::Unicode => PropValue::Unicode(v.as_str()?.to_string()),
            PropType::SysTime => PropValue::SysTime(FileTime(v.as_u64()?)),
            PropType::Clsid => PropValue::Clsid(parse_hex(v.as_str()?)?.try_into().ok()?),
            PropType::Binary => PropValue::Binary(parse_hex(v.as_str()?)?),
            PropType::Unspecified => return None,
        })
    };
    let ty = tag.prop_type()?;
    if !tag.is_multi_valued() {
        return single(ty, v);
    }
    let items = v
        .as_array()?
        .iter()
        .map(|x| single(ty, x))
        .collect::<Option<Vec<_>>>()?;
    macro_rules! mv {
        ($variant:ident, $single:ident) => {
            PropValue::$variant(
                items
                    .into_iter()
                    .filter_map(|x| match x {
                        PropValue::$single(y) => Some(y),
                        _ => None,
                    })
                    .collect(),
            )
        };
    }
    Some(match ty {
        PropType::I2 => mv!(MvI2, I2),
        PropType::Long => mv!(MvLong, Long),
        PropType::Double => mv!(MvDouble, Double),
        PropType::I8 => mv!(MvI8, I8),
        PropType::String8 => mv!(MvString8, String8),
        PropType::Unicode => mv!(MvUnicode, Unicode),
        PropType::SysTime => mv!(MvSysTime, SysTime),
        PropType::Clsid => mv!(MvClsid, Clsid),
        PropType::Binary => mv!(MvBinary, Binary),
        _ => return None,
    })
}

/// A MAPI error on the wire: its code and cause cross intact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub code: u32,
    pub name: Option<String>,
    pub cause: String,
}

impl From<&MapiError> for WireError {
    fn from(e: &MapiError) -> WireError {
        WireError {
            code: e.code.value(),
            name: e.code.name().map(str::to_string),
            cause: e.cause.clone(),
        }
    }
}

impl From<WireError> for MapiError {
    fn from(e: WireError) -> MapiError {
        MapiError::new(MapiCode::from_value(e.code), e.cause)
    }
}

/// Appends one message to a `/v1/submit-batch` body. A frame is a line holding the lengths of
/// the envelope (JSON of a `Submission`, empty for the defaults) and of the message, both in
/// decimal, then the envelope's bytes, then the message's: raw, so a message needs no escaping
/// and may be any bytes.
pub fn encode_batch_frame(out: &mut Vec<u8>, envelope: &[u8], message: &[u8]) {
    out.extend_from_slice(format!("{} {}\n", envelope.len(), message.len()).as_bytes());
    out.extend_from_slice(envelope);
    out.extend_from_slice(message);
}

/// One frame of a `/v1/submit-batch` body: the envelope's bytes (JSON, or empty) and the
/// message's.
pub type BatchFrame<'a> = (&'a [u8], &'a [u8]);

/// Splits a `/v1/submit-batch` body into its frames; the error says what is wrong where.
pub fn decode_batch(mut body: &[u8]) -> Result<Vec<BatchFrame<'_>>, String> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        let at = frames.len();
        let line_end = body
            .iter()
            .take(42)
            .position(|b| *b == b'\n')
            .ok_or_else(|| {
                format!("message {at}: no \"<envelope length> <message length>\" line")
            })?;
        let line = std::str::from_utf8(&body[..line_end]).unwrap_or("");
        let lengths: Vec<usize> = line
            .split(' ')
            .map(|n| n.parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("message {at}: {line:?} is not two lengths"))?;
        let [envelope_len, message_len] = lengths[..] else {
            return Err(format!("message {at}: {line:?} is not two lengths"));
        };
        let rest = &body[line_end + 1..];
        let end = envelope_len
            .checked_add(message_len)
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| format!("message {at}: the body ends before its {message_len} bytes"))?;
        frames.push((&rest[..envelope_len], &rest[envelope_len..end]));
        body = &rest[end..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapi::tag::*;

    #[test]
    fn rows_cross_intact() {
        let row = Row::new(vec![
            Prop::new(PR_DISPLAY_NAME, PropValue::Unicode("work".into())),
            Prop::new(PR_STATUS_CODE, PropValue::Long(0x10_0001)),
            Prop::new(PR_ENTRYID, PropValue::Binary(vec![0, 1, 0xFF])),
            Prop::new(
                PR_CLIENT_SUBMIT_TIME,
                PropValue::SysTime(FileTime(133_000_000_000_000_123)),
            ),
            Prop::new(PR_MSP_NEEDS_UI, PropValue::Boolean(true)),
            Prop::not_found(PR_SUBJECT),
            Prop::new(
                PropTag::new(0x6700, 0x1000 | PropType::Unicode as u16),
                PropValue::MvUnicode(vec!["a".into(), "b".into()]),
            ),
        ]);
        let json = serde_json::to_string(&row_to_wire(&row)).expect("encodes");
        let back: WireRow = serde_json::from_str(&json).expect("decodes");
        assert_eq!(row_from_wire(&back), row);
    }

    #[test]
    fn errors_cross_intact() {
        let e = MapiError::no_support("transport \"work\" has no FlushQueues");
        let back: MapiError = WireError::from(&e).into();
        assert_eq!(back, e);
    }

    #[test]
    fn batch_frames_cross_intact_and_bad_ones_are_named() {
        let mut body = Vec::new();
        encode_batch_frame(&mut body, b"", b"Subject: a\r\n\r\n1 2\n\x00\xff");
        encode_batch_frame(&mut body, br#"{"recipients":["x@y"]}"#, b"");
        let frames = decode_batch(&body).expect("decode");
        assert_eq!(
            frames,
            vec![
                (&b""[..], &b"Subject: a\r\n\r\n1 2\n\x00\xff"[..]),
                (&br#"{"recipients":["x@y"]}"#[..], &b""[..]),
            ]
        );
        assert_eq!(decode_batch(b"").expect("empty"), vec![]);
        assert!(
            decode_batch(b"0 10\nshort")
                .unwrap_err()
                .contains("message 0")
        );
        assert!(decode_batch(b"x\n").is_err());
        assert!(decode_batch(b"1 2 3\nabcdef").is_err());
        assert!(decode_batch(b"18446744073709551615 1\nx").is_err());
    }
}

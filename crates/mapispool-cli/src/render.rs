//! How MAPI rows look to people (a table, flag bits by name) and to scripts (JSON keyed by tag
//! name, with the tag numbers alongside).

use comfy_table::{ContentArrangement, Table as TextTable, presets};
use mapi::constants::{bits_text, name_of};
use mapi::{PropTag, PropValue, Row, value::hex};
use serde_json::{Value, json};

/// A value as a person reads it: named flag bits and enumerations, hex for binary, RFC 3339
/// for times, the MAPI error name for a missing column.
pub fn value_text(tag: PropTag, value: &PropValue) -> String {
    match value {
        PropValue::Long(v) => bits_text(tag, i64::from(*v))
            .or_else(|| name_of(tag, i64::from(*v)).map(str::to_string))
            .unwrap_or_else(|| v.to_string()),
        PropValue::I2(v) => v.to_string(),
        PropValue::I8(v) | PropValue::Currency(v) => v.to_string(),
        PropValue::R4(v) => v.to_string(),
        PropValue::Double(v) | PropValue::AppTime(v) => v.to_string(),
        PropValue::Boolean(b) => b.to_string(),
        PropValue::Unicode(s) | PropValue::String8(s) => s.clone(),
        PropValue::Binary(b) => hex(b),
        PropValue::Clsid(b) => hex(b),
        PropValue::SysTime(t) => t.to_rfc3339(),
        // A column the row does not have: a dash reads better than MAPI_E_NOT_FOUND in a grid
        // (JSON keeps the error).
        PropValue::Error(mapi::MapiCode::NotFound) => "-".to_string(),
        PropValue::Error(code) => code
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| code.to_string()),
        PropValue::Null => String::new(),
        PropValue::Object => "(object)".to_string(),
        other => match other.elements() {
            Some(items) => items
                .iter()
                .map(|v| value_text(tag, v))
                .collect::<Vec<_>>()
                .join("; "),
            None => format!("{other:?}"),
        },
    }
}

/// A value as JSON: numbers stay numbers, binary is hex, times RFC 3339, errors an object.
pub fn value_json(value: &PropValue) -> Value {
    match value {
        PropValue::Long(v) => json!(v),
        PropValue::I2(v) => json!(v),
        PropValue::I8(v) | PropValue::Currency(v) => json!(v),
        PropValue::R4(v) => json!(v),
        PropValue::Double(v) | PropValue::AppTime(v) => json!(v),
        PropValue::Boolean(b) => json!(b),
        PropValue::Unicode(s) | PropValue::String8(s) => json!(s),
        PropValue::Binary(b) => json!(hex(b)),
        PropValue::Clsid(b) => json!(hex(b)),
        PropValue::SysTime(t) => json!(t.to_rfc3339()),
        PropValue::Error(code) => {
            json!({ "error": code.name(), "hresult": format!("0x{:08X}", code.value()) })
        }
        PropValue::Null | PropValue::Object => Value::Null,
        other => match other.elements() {
            Some(items) => Value::Array(items.iter().map(value_json).collect()),
            None => Value::Null,
        },
    }
}

fn tag_label(tag: PropTag) -> String {
    tag.name()
        .map(str::to_string)
        .unwrap_or_else(|| format!("0x{:08X}", tag.0))
}

/// Rows as JSON: `{"columns": [{"name", "tag"}], "rows": [{NAME: value, ...}]}`; a bit-set or
/// enumerated value also gets `NAME_text` with its names, so scripts need no table of bits.
pub fn rows_json(columns: &[PropTag], rows: &[Row]) -> Value {
    let cols: Vec<Value> = columns
        .iter()
        .map(|t| json!({ "name": tag_label(*t), "tag": format!("0x{:08X}", t.0) }))
        .collect();
    let rows: Vec<Value> = rows.iter().map(|row| row_json(columns, row)).collect();
    json!({ "columns": cols, "rows": rows })
}

/// One row as JSON, as in [`rows_json`]'s `rows`: `{NAME: value, NAME_text: "BITS|..."}`.
pub fn row_json(columns: &[PropTag], row: &Row) -> Value {
    let mut obj = serde_json::Map::new();
    for p in &row.props {
        // A missing column comes back as PT_ERROR under the same ID; name it by the
        // column asked for.
        let tag = columns
            .iter()
            .copied()
            .find(|c| c.id() == p.tag.id())
            .unwrap_or(p.tag);
        let label = tag_label(tag);
        if let PropValue::Long(v) = p.value
            && let Some(text) = bits_text(tag, i64::from(v))
                .or_else(|| name_of(tag, i64::from(v)).map(str::to_string))
        {
            obj.insert(format!("{label}_text"), json!(text));
        }
        obj.insert(label, value_json(&p.value));
    }
    Value::Object(obj)
}

/// Rows as a text table with tag names as headings (`PR_` cut for width).
pub fn rows_text(columns: &[PropTag], rows: &[Row]) -> String {
    let mut table = TextTable::new();
    table
        .load_style(presets::UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(columns.iter().map(|t| {
        let label = tag_label(*t);
        label
            .strip_prefix("PR_")
            .map(str::to_string)
            .unwrap_or(label)
    }));
    for row in rows {
        table.add_row(columns.iter().map(|c| match row.get_by_id(*c) {
            Some(p) => value_text(*c, &p.value),
            None => String::new(),
        }));
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mapi::MapiCode;
    use mapi::tag::*;

    #[test]
    fn values_read_well() {
        assert_eq!(
            value_text(PR_STATUS_CODE, &PropValue::Long(0x10_0001)),
            "AVAILABLE|OUTBOUND_ENABLED"
        );
        assert_eq!(
            value_text(PR_RESOURCE_TYPE, &PropValue::Long(37)),
            "MAPI_SPOOLER"
        );
        assert_eq!(
            value_text(PR_DISPLAY_NAME, &PropValue::Error(MapiCode::NotFound)),
            "-"
        );
        assert_eq!(
            value_text(PR_DISPLAY_NAME, &PropValue::Error(MapiCode::NoAccess)),
            "MAPI_E_NO_ACCESS"
        );
        let j = rows_json(
            &[PR_RESOURCE_TYPE],
            &[Row::new(vec![mapi::Prop::new(
                PR_RESOURCE_TYPE,
                PropValue::Long(37),
            )])],
        );
        assert_eq!(j["rows"][0]["PR_RESOURCE_TYPE"], json!(37));
        assert_eq!(j["rows"][0]["PR_RESOURCE_TYPE_text"], json!("MAPI_SPOOLER"));
        assert_eq!(j["columns"][0]["tag"], json!("0x3E030003"));
    }
}

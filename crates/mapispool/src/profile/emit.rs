//! Writing a TOML document from a [`toml::Table`].
//!
//! The workspace builds `toml` without its `display` feature (no writer), so this small writer
//! covers what a profile holds: tables, arrays of tables, strings, integers, booleans. Keys are
//! in the table's order (sorted), except `name` and `kind`, which lead so that a reader sees
//! which transport and which kind first.

use std::fmt::Write as _;

use toml::{Table, Value};

/// The document for a top-level table.
pub(super) fn document(table: &Table) -> String {
    let mut out = String::new();
    write_table(&mut out, &[], table);
    out
}

fn ordered(table: &Table) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| match key.as_str() {
        "name" => 0,
        "kind" => 1,
        _ => 2,
    });
    entries
}

fn is_table_array(value: &Value) -> bool {
    matches!(value, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_table))
}

fn write_table(out: &mut String, path: &[&str], table: &Table) {
    let entries = ordered(table);
    for (key, value) in &entries {
        if !value.is_table() && !is_table_array(value) {
            let _ = writeln!(out, "{} = {}", quote_key(key), inline(value));
        }
    }
    for (key, value) in &entries {
        let mut child: Vec<&str> = path.to_vec();
        child.push(key);
        let header = child
            .iter()
            .map(|key| quote_key(key))
            .collect::<Vec<_>>()
            .join(".");
        match value {
            Value::Table(sub) => {
                separate(out);
                let _ = writeln!(out, "[{header}]");
                write_table(out, &child, sub);
            }
            Value::Array(items) if is_table_array(value) => {
                for item in items {
                    if let Value::Table(sub) = item {
                        separate(out);
                        let _ = writeln!(out, "[[{header}]]");
                        write_table(out, &child, sub);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A blank line before each header, except at the start.
fn separate(out: &mut String) {
    if !out.is_empty() {
        out.push('\n');
    }
}

fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_owned() } else { quote(key) }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn inline(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        Value::Integer(n) => n.to_string(),
        Value::Float(x) if x.is_nan() => "nan".to_owned(),
        Value::Float(x) if x.is_infinite() => (if *x > 0.0 { "inf" } else { "-inf" }).to_owned(),
        Value::Float(x) => format!("{x:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(datetime) => datetime.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Table(table) => format!(
            "{{ {} }}",
            ordered(table)
                .into_iter()
                .map(|(key, value)| format!("{} = {}", quote_key(key), inline(value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

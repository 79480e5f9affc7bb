//! Evaluating a restriction against a row, with MAPI's semantics (mapi-reference.md §7).
//!
//! One function per restriction kind, each with the same two halves: `validate` checks the
//! kind's types without a row (what a table does in `Restrict`), and evaluation applies it to one
//! row. [`Restriction::evaluate_with`] validates the whole tree first, so a bad tree fails the
//! same way whichever branches the row would have short-circuited.
//!
//! Choices where MAPI leaves the behaviour open, so that callers can rely on them:
//! - **Absent properties.** MAPI says a restriction on a property the row lacks is undefined
//!   (and tells clients to AND it with `RES_EXIST`). Here every property, content, bitmask, size
//!   and compare-props restriction on an absent property is *false* — `RELOP_NE` included, so
//!   `PR_X != 5` does not match a row without `PR_X`; `NOT (PR_X == 5)` does. A `PT_ERROR`
//!   stand-in (a column the row does not have) counts as absent.
//! - **Multi-valued columns.** The restriction names the single-valued tag; a row holding the
//!   multi-valued form matches when *any* element matches (for property, content, bitmask, size
//!   and compare-props alike).
//! - **`RELOP_RE`** is an unanchored search with the `regex` crate's syntax (`^…$` to anchor); a
//!   pattern that does not compile is `MAPI_E_INVALID_PARAMETER`.
//! - **Type mismatches** (the constant's type is not the tag's, or the kind does not apply to the
//!   type) are `MAPI_E_TOO_COMPLEX`, which is what MAPI's `Restrict` returns for a restriction a
//!   table cannot evaluate.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use regex::Regex;

use super::{BitmaskOp, FuzzyLevel, RelOp, Restriction};
use crate::error::{MapiError, MapiResult};
use crate::tag::{self, MV_FLAG, PropTag, PropType};
use crate::value::{PropValue, Row};

/// Gives a sub-restriction the rows of a message's sub-object tables (its recipient table for
/// `PR_MESSAGE_RECIPIENTS`, its attachment table for `PR_MESSAGE_ATTACHMENTS`).
pub trait SubObjects {
    /// The rows of `object`'s table, or `None` when the row has no such sub-objects (then the
    /// sub-restriction is false).
    fn sub_rows(&self, object: PropTag) -> Option<Vec<Row>>;
}

/// No sub-objects at all: every sub-restriction is false. What [`Restriction::evaluate`] uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSubObjects;

impl SubObjects for NoSubObjects {
    fn sub_rows(&self, _object: PropTag) -> Option<Vec<Row>> {
        None
    }
}

impl Restriction {
    /// Whether `row` matches, for a row without sub-objects (sub-restrictions are false).
    ///
    /// Errors: `MAPI_E_TOO_COMPLEX` for a tree [`validate`](Self::validate) rejects.
    pub fn evaluate(&self, row: &Row) -> MapiResult<bool> {
        self.evaluate_with(row, &NoSubObjects)
    }

    /// Whether `row` matches; `sub` gives the rows that sub-restrictions look at.
    ///
    /// Errors: as [`validate`](Self::validate); the whole tree is checked before the row is.
    pub fn evaluate_with(&self, row: &Row, sub: &dyn SubObjects) -> MapiResult<bool> {
        self.validate()?;
        eval(self, row, sub)
    }

    /// Checks the tree without a row, as `IMAPITable::Restrict` must: every constant has its
    /// tag's type, every kind applies to its tag's type, fuzzy levels and sub-objects are ones
    /// MAPI defines, and regular expressions compile.
    ///
    /// Errors: `MAPI_E_TOO_COMPLEX` naming the offending tag, or `MAPI_E_INVALID_PARAMETER` for
    /// a `RELOP_RE` pattern that does not compile.
    pub fn validate(&self) -> MapiResult<()> {
        match self {
            Restriction::And(items) | Restriction::Or(items) => {
                items.iter().try_for_each(Restriction::validate)
            }
            Restriction::Not(inner) => inner.validate(),
            Restriction::Content { fuzzy, tag, value } => validate_content(*fuzzy, *tag, value),
            Restriction::Property { relop, tag, value } => validate_property(*relop, *tag, value),
            Restriction::CompareProps { relop, tag1, tag2 } => {
                validate_compare(*relop, *tag1, *tag2)
            }
            Restriction::Bitmask { tag, .. } => match known_type(*tag, "bitmask")? {
                PropType::Long => Ok(()),
                other => Err(MapiError::too_complex(format!(
                    "bitmask restriction on {tag}: its type is {}, a bitmask needs PT_LONG",
                    other.name()
                ))),
            },
            Restriction::Size { relop, tag, .. } => {
                known_type(*tag, "size")?;
                if *relop == RelOp::Re {
                    return Err(MapiError::too_complex(format!(
                        "size restriction on {tag}: RELOP_RE compares text, not sizes"
                    )));
                }
                Ok(())
            }
            Restriction::Exist { .. } => Ok(()),
            Restriction::SubRestriction {
                object,
                restriction,
            } => {
                if *object != tag::PR_MESSAGE_RECIPIENTS && *object != tag::PR_MESSAGE_ATTACHMENTS {
                    return Err(MapiError::too_complex(format!(
                        "sub-restriction on {object}: only PR_MESSAGE_RECIPIENTS and \
                         PR_MESSAGE_ATTACHMENTS have sub-object tables"
                    )));
                }
                restriction.validate()
            }
            Restriction::Comment { restriction, .. } => match restriction {
                Some(inner) => inner.validate(),
                None => Ok(()),
            },
        }
    }
}

/// Evaluation proper; the tree has been validated, but mismatches still come back as errors
/// rather than panics, since nothing stops a caller from building any tree.
fn eval(r: &Restriction, row: &Row, sub: &dyn SubObjects) -> MapiResult<bool> {
    match r {
        Restriction::And(items) => {
            for item in items {
                if !eval(item, row, sub)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Restriction::Or(items) => {
            for item in items {
                if eval(item, row, sub)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Restriction::Not(inner) => Ok(!eval(inner, row, sub)?),
        Restriction::Content { fuzzy, tag, value } => {
            any_value(row, *tag, |v| content_matches(*fuzzy, *tag, v, value))
        }
        Restriction::Property { relop, tag, value } => {
            any_value(row, *tag, |v| property_matches(*relop, *tag, v, value))
        }
        Restriction::CompareProps { relop, tag1, tag2 } => {
            if *relop == RelOp::Re {
                return Err(MapiError::too_complex(format!(
                    "compare-props restriction on {tag1}, {tag2}: RELOP_RE needs a constant pattern"
                )));
            }
            any_value(row, *tag1, |a| {
                any_value(row, *tag2, |b| {
                    Ok(relop_holds(*relop, compare_checked(*tag1, a, b)?))
                })
            })
        }
        Restriction::Bitmask { op, tag, mask } => any_value(row, *tag, |v| match v {
            PropValue::Long(x) => {
                let zero = (*x as u32) & mask == 0;
                Ok(match op {
                    BitmaskOp::Eqz => zero,
                    BitmaskOp::Nez => !zero,
                })
            }
            other => Err(mismatch("bitmask", *tag, other)),
        }),
        Restriction::Size { relop, tag, size } => any_value(row, *tag, |v| {
            Ok(match byte_size(v) {
                Some(n) => relop_holds(*relop, Some(n.cmp(&u64::from(*size)))),
                None => false,
            })
        }),
        Restriction::Exist { tag } => Ok(row
            .get_by_id(*tag)
            .is_some_and(|p| p.tag.prop_type() != Some(PropType::Error))),
        Restriction::SubRestriction {
            object,
            restriction,
        } => {
            let Some(rows) = sub.sub_rows(*object) else {
                return Ok(false);
            };
            // A recipient or attachment row has no sub-object tables of its own here (the
            // trait names one message's), so nested sub-restrictions inside are false.
            for sub_row in &rows {
                if eval(restriction, sub_row, &NoSubObjects)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Restriction::Comment { restriction, .. } => match restriction {
            Some(inner) => eval(inner, row, sub),
            None => Ok(true),
        },
    }
}

/// Applies `test` to the row's value of `tag`: the single value, or each element of the
/// multi-valued form until one matches. `false` when the row has neither.
fn any_value(
    row: &Row,
    tag: PropTag,
    mut test: impl FnMut(&PropValue) -> MapiResult<bool>,
) -> MapiResult<bool> {
    let single = tag.single_valued();
    if let Some(v) = row.get(single) {
        return test(v);
    }
    let multi = single.with_type(single.type_code() | MV_FLAG);
    if let Some(elements) = row.get(multi).and_then(PropValue::elements) {
        for e in &elements {
            if test(e)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The tag's single-valued type, or `MAPI_E_TOO_COMPLEX` for a type MAPI does not define.
fn known_type(tag: PropTag, kind: &str) -> MapiResult<PropType> {
    tag.prop_type().ok_or_else(|| {
        MapiError::too_complex(format!(
            "{kind} restriction on {tag}: type 0x{:04X} is not a MAPI property type",
            tag.type_code()
        ))
    })
}

/// Types whose values have an order (and so take every relop).
fn comparable(ty: PropType) -> bool {
    !matches!(
        ty,
        PropType::Unspecified | PropType::Null | PropType::Error | PropType::Object
    )
}

fn value_type_name(v: &PropValue) -> String {
    let code = v.type_code();
    let base = PropType::from_u16(code & !MV_FLAG).map_or("an unknown type", |t| t.name());
    if code & MV_FLAG != 0 {
        format!("PT_MV_{}", base.trim_start_matches("PT_"))
    } else {
        base.to_string()
    }
}

fn mismatch(kind: &str, tag: PropTag, value: &PropValue) -> MapiError {
    MapiError::too_complex(format!(
        "{kind} restriction on {tag}: the constant is {}, the property is {}",
        value_type_name(value),
        tag.prop_type().map_or("of an unknown type", |t| t.name())
    ))
}

fn validate_property(relop: RelOp, tag: PropTag, value: &PropValue) -> MapiResult<()> {
    let ty = known_type(tag, "property")?;
    if !comparable(ty) {
        return Err(MapiError::too_complex(format!(
            "property restriction on {tag}: {} values cannot be compared",
            ty.name()
        )));
    }
    if value.type_code() != ty as u16 {
        return Err(mismatch("property", tag, value));
    }
    if relop == RelOp::Re {
        let Some(pattern) = value.as_str() else {
            return Err(MapiError::too_complex(format!(
                "property restriction on {tag}: RELOP_RE needs a string property, {tag} is {}",
                ty.name()
            )));
        };
        compiled(pattern).map_err(|e| {
            MapiError::invalid_parameter(format!(
                "RELOP_RE pattern for {tag} does not compile: {e}"
            ))
        })?;
    }
    Ok(())
}

fn validate_content(fuzzy: FuzzyLevel, tag: PropTag, value: &PropValue) -> MapiResult<()> {
    let ty = known_type(tag, "content")?;
    if !matches!(ty, PropType::Unicode | PropType::String8 | PropType::Binary) {
        return Err(MapiError::too_complex(format!(
            "content restriction on {tag}: its type is {}, content needs PT_UNICODE, \
             PT_STRING8 or PT_BINARY",
            ty.name()
        )));
    }
    if value.type_code() != ty as u16 {
        return Err(mismatch("content", tag, value));
    }
    let flags = FuzzyLevel::IGNORECASE | FuzzyLevel::IGNORENONSPACE | FuzzyLevel::LOOSE;
    if fuzzy.0 & 0xFFFF > FuzzyLevel::PREFIX || fuzzy.0 & !0xFFFF & !flags != 0 {
        return Err(MapiError::too_complex(format!(
            "content restriction on {tag}: fuzzy level 0x{:X} is not FL_FULLSTRING, \
             FL_SUBSTRING or FL_PREFIX with FL_IGNORECASE/FL_IGNORENONSPACE/FL_LOOSE",
            fuzzy.0
        )));
    }
    Ok(())
}

fn validate_compare(relop: RelOp, tag1: PropTag, tag2: PropTag) -> MapiResult<()> {
    let t1 = known_type(tag1, "compare-props")?;
    let t2 = known_type(tag2, "compare-props")?;
    if t1 != t2 {
        return Err(MapiError::too_complex(format!(
            "compare-props restriction: {tag1} is {}, {tag2} is {}; both must have one type",
            t1.name(),
            t2.name()
        )));
    }
    if !comparable(t1) {
        return Err(MapiError::too_complex(format!(
            "compare-props restriction on {tag1}, {tag2}: {} values cannot be compared",
            t1.name()
        )));
    }
    if relop == RelOp::Re {
        return Err(MapiError::too_complex(format!(
            "compare-props restriction on {tag1}, {tag2}: RELOP_RE needs a constant pattern"
        )));
    }
    Ok(())
}

fn property_matches(
    relop: RelOp,
    tag: PropTag,
    row_value: &PropValue,
    constant: &PropValue,
) -> MapiResult<bool> {
    if relop == RelOp::Re {
        let (Some(text), Some(pattern)) = (row_value.as_str(), constant.as_str()) else {
            return Err(mismatch("property", tag, constant));
        };
        let re = compiled(pattern).map_err(|e| {
            MapiError::invalid_parameter(format!(
                "RELOP_RE pattern for {tag} does not compile: {e}"
            ))
        })?;
        return Ok(re.is_match(text));
    }
    Ok(relop_holds(
        relop,
        compare_checked(tag, row_value, constant)?,
    ))
}

/// [`compare`], with a mismatch of kinds (which validation rules out) as an error.
fn compare_checked(tag: PropTag, a: &PropValue, b: &PropValue) -> MapiResult<Option<Ordering>> {
    if a.type_code() != b.type_code() {
        return Err(mismatch("property", tag, b));
    }
    Ok(compare(a, b))
}

/// MAPI's order of two values of one type: numbers numerically, strings by code point
/// (case-sensitive), `false < true`, times chronologically, binary bytewise. `None` for
/// values of different types and for NaN, which is unordered.
pub fn compare(a: &PropValue, b: &PropValue) -> Option<Ordering> {
    use PropValue as V;
    match (a, b) {
        (V::I2(x), V::I2(y)) => Some(x.cmp(y)),
        (V::Long(x), V::Long(y)) => Some(x.cmp(y)),
        (V::I8(x), V::I8(y)) | (V::Currency(x), V::Currency(y)) => Some(x.cmp(y)),
        (V::R4(x), V::R4(y)) => x.partial_cmp(y),
        (V::Double(x), V::Double(y)) | (V::AppTime(x), V::AppTime(y)) => x.partial_cmp(y),
        (V::Boolean(x), V::Boolean(y)) => Some(x.cmp(y)),
        // `str`'s order is UTF-8 byte order, which is Unicode code point order.
        (V::String8(x), V::String8(y)) | (V::Unicode(x), V::Unicode(y)) => Some(x.cmp(y)),
        (V::SysTime(x), V::SysTime(y)) => Some(x.cmp(y)),
        (V::Clsid(x), V::Clsid(y)) => Some(x.cmp(y)),
        (V::Binary(x), V::Binary(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Whether `relop` holds for an ordering; an unordered pair (NaN) is only "not equal".
fn relop_holds(relop: RelOp, ord: Option<Ordering>) -> bool {
    use Ordering::*;
    match relop {
        RelOp::Lt => ord == Some(Less),
        RelOp::Le => matches!(ord, Some(Less | Equal)),
        RelOp::Gt => ord == Some(Greater),
        RelOp::Ge => matches!(ord, Some(Greater | Equal)),
        RelOp::Eq => ord == Some(Equal),
        RelOp::Ne => ord != Some(Equal),
        RelOp::Re => false,
    }
}

fn content_matches(
    fuzzy: FuzzyLevel,
    tag: PropTag,
    row_value: &PropValue,
    pattern: &PropValue,
) -> MapiResult<bool> {
    let level = fuzzy.0 & 0xFFFF;
    match (row_value, pattern) {
        // The case and diacritic flags are about text; on bytes they have nothing to ignore.
        (PropValue::Binary(hay), PropValue::Binary(needle)) => Ok(match level {
            FuzzyLevel::FULLSTRING => hay == needle,
            FuzzyLevel::PREFIX => hay.starts_with(needle),
            _ => needle.is_empty() || hay.windows(needle.len()).any(|w| w == &needle[..]),
        }),
        (PropValue::Unicode(hay), PropValue::Unicode(needle))
        | (PropValue::String8(hay), PropValue::String8(needle)) => {
            let hay = fold(hay, fuzzy);
            let needle = fold(needle, fuzzy);
            Ok(match level {
                FuzzyLevel::FULLSTRING => hay == needle,
                FuzzyLevel::PREFIX => hay.starts_with(&needle),
                _ => hay.contains(&needle),
            })
        }
        _ => Err(mismatch("content", tag, pattern)),
    }
}

/// The text as the fuzzy level sees it: without diacritics for `FL_IGNORENONSPACE`, lower-cased
/// (Unicode's full lowercase mapping) for `FL_IGNORECASE`; `FL_LOOSE` asks for both.
pub(crate) fn fold(text: &str, fuzzy: FuzzyLevel) -> String {
    let loose = fuzzy.0 & FuzzyLevel::LOOSE != 0;
    let ignore_case = loose || fuzzy.0 & FuzzyLevel::IGNORECASE != 0;
    let ignore_nonspace = loose || fuzzy.0 & FuzzyLevel::IGNORENONSPACE != 0;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if ignore_nonspace {
            if is_combining_mark(c) {
                continue;
            }
            strip_accent(c)
        } else {
            c
        };
        if ignore_case {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Combining diacritical marks: what remains of an accent once text is decomposed (NFD).
/// Dropping them handles text that arrives decomposed, in any script.
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}')
}

/// The base letter of a precomposed Latin-1 accented letter (its canonical decomposition minus
/// the mark). A table rather than full Unicode normalization: the crate takes no normalization
/// dependency, and Latin-1 covers the Western European names and subjects a spooler meets;
/// decomposed text in any script is already handled by [`is_combining_mark`]. Letters without a
/// canonical decomposition (`Ø`, `ß`, `Æ`) are left alone, as NFD leaves them.
fn strip_accent(c: char) -> char {
    match c {
        'À'..='Å' => 'A',
        'Ç' => 'C',
        'È'..='Ë' => 'E',
        'Ì'..='Ï' => 'I',
        'Ñ' => 'N',
        'Ò'..='Ö' => 'O',
        'Ù'..='Ü' => 'U',
        'Ý' => 'Y',
        'à'..='å' => 'a',
        'ç' => 'c',
        'è'..='ë' => 'e',
        'ì'..='ï' => 'i',
        'ñ' => 'n',
        'ò'..='ö' => 'o',
        'ù'..='ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

/// The size of a value as MAPI stores it, which is what `RES_SIZE` compares:
/// `PT_UNICODE` 2 bytes per UTF-16 unit plus a 2-byte terminator, `PT_STRING8` its bytes plus a
/// 1-byte terminator, `PT_BINARY` its length, fixed-size types their size (`PT_BOOLEAN` is a
/// 16-bit `unsigned short` in `SPropValue`). `None` for values without a size (`PT_OBJECT`,
/// `PT_ERROR`), which makes the restriction false.
pub fn byte_size(value: &PropValue) -> Option<u64> {
    use PropValue as V;
    Some(match value {
        V::Null => 0,
        V::I2(_) | V::Boolean(_) => 2,
        V::Long(_) | V::R4(_) => 4,
        V::Double(_) | V::Currency(_) | V::AppTime(_) | V::I8(_) | V::SysTime(_) => 8,
        V::Clsid(_) => 16,
        V::Unicode(s) => 2 * s.encode_utf16().count() as u64 + 2,
        V::String8(s) => s.len() as u64 + 1,
        V::Binary(b) => b.len() as u64,
        V::Error(_) | V::Object => return None,
        // Only reached for a value handed in directly; rows' multi-valued columns are split
        // into elements before sizing.
        multi => multi
            .elements()?
            .iter()
            .map(byte_size)
            .sum::<Option<u64>>()?,
    })
}

thread_local! {
    /// Compiled `RELOP_RE` patterns: a table evaluates one restriction over many rows, and
    /// compiling a regex costs far more than matching it.
    static REGEX_CACHE: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// Patterns kept per thread before the cache starts over (restrictions hold only a few).
const REGEX_CACHE_LIMIT: usize = 64;

fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    REGEX_CACHE.with(|cache| {
        if let Some(re) = cache.borrow().get(pattern) {
            // `Regex` clones share the compiled program.
            return Ok(re.clone());
        }
        let re = Regex::new(pattern)?;
        let mut cache = cache.borrow_mut();
        if cache.len() >= REGEX_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re.clone());
        Ok(re)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MapiCode;
    use crate::tag::*;
    use crate::value::{FileTime, Prop};
    use proptest::prelude::*;

    fn row(props: Vec<(PropTag, PropValue)>) -> Row {
        Row::new(props.into_iter().map(|(t, v)| Prop::new(t, v)).collect())
    }

    fn prop(relop: RelOp, tag: PropTag, value: PropValue) -> Restriction {
        Restriction::Property { relop, tag, value }
    }

    fn content(fuzzy: u32, tag: PropTag, value: &str) -> Restriction {
        Restriction::Content {
            fuzzy: FuzzyLevel(fuzzy),
            tag,
            value: PropValue::Unicode(value.into()),
        }
    }

    fn unicode(s: &str) -> PropValue {
        PropValue::Unicode(s.into())
    }

    fn status_row() -> Row {
        row(vec![
            (PR_RESOURCE_TYPE, PropValue::Long(36)),
            (PR_RESOURCE_METHODS, PropValue::Long(0x9)),
            (PR_DISPLAY_NAME, unicode("Work Mail")),
            (PR_SUBJECT_A, PropValue::String8("Crème brûlée".into())),
            (PR_REMOTE_VALIDATE_OK, PropValue::Boolean(true)),
            (
                PR_CLIENT_SUBMIT_TIME,
                PropValue::SysTime(FileTime::from_unix_seconds(1_000)),
            ),
            (PR_ENTRYID, PropValue::Binary(vec![1, 2, 3, 4])),
            (PR_PRIORITY, PropValue::Long(-1)),
            (PR_STATUS_CODE, PropValue::Long(1)),
        ])
    }

    fn eval_ok(r: &Restriction, row: &Row) -> bool {
        match r.evaluate(row) {
            Ok(b) => b,
            Err(e) => panic!("{r:?}: {e}"),
        }
    }

    #[test]
    fn every_relop_on_numbers() {
        let row = status_row();
        let cases = [
            (RelOp::Lt, 37, true),
            (RelOp::Lt, 36, false),
            (RelOp::Le, 36, true),
            (RelOp::Le, 35, false),
            (RelOp::Gt, 35, true),
            (RelOp::Gt, 36, false),
            (RelOp::Ge, 36, true),
            (RelOp::Ge, 37, false),
            (RelOp::Eq, 36, true),
            (RelOp::Eq, 37, false),
            (RelOp::Ne, 37, true),
            (RelOp::Ne, 36, false),
        ];
        for (relop, v, want) in cases {
            let r = prop(relop, PR_RESOURCE_TYPE, PropValue::Long(v));
            assert_eq!(eval_ok(&r, &row), want, "{relop:?} {v}");
        }
    }

    #[test]
    fn ordering_of_each_type() {
        let row = status_row();
        // Strings by code point, case-sensitive: 'W' (0x57) < 'w' (0x77).
        assert!(eval_ok(
            &prop(RelOp::Lt, PR_DISPLAY_NAME, unicode("work")),
            &row
        ));
        assert!(eval_ok(
            &prop(RelOp::Gt, PR_DISPLAY_NAME, unicode("Work")),
            &row
        ));
        assert!(eval_ok(
            &prop(RelOp::Gt, PR_REMOTE_VALIDATE_OK, PropValue::Boolean(false)),
            &row
        ));
        let later = PropValue::SysTime(FileTime::from_unix_seconds(2_000));
        assert!(eval_ok(
            &prop(RelOp::Lt, PR_CLIENT_SUBMIT_TIME, later),
            &row
        ));
        // Binary bytewise; a prefix sorts first.
        assert!(eval_ok(
            &prop(RelOp::Gt, PR_ENTRYID, PropValue::Binary(vec![1, 2, 3])),
            &row
        ));
        assert!(eval_ok(
            &prop(RelOp::Lt, PR_ENTRYID, PropValue::Binary(vec![1, 3])),
            &row
        ));
        let d = PropTag(0x6620_0005);
        let row = row_with(d, PropValue::Double(f64::NAN));
        assert!(!eval_ok(&prop(RelOp::Eq, d, PropValue::Double(1.0)), &row));
        assert!(eval_ok(&prop(RelOp::Ne, d, PropValue::Double(1.0)), &row));
    }

    fn row_with(tag: PropTag, value: PropValue) -> Row {
        row(vec![(tag, value)])
    }

    #[test]
    fn absent_properties_are_false_even_for_ne() {
        let empty = Row::default();
        for r in [
            prop(RelOp::Ne, PR_PRIORITY, PropValue::Long(5)),
            content(FuzzyLevel::SUBSTRING, PR_DISPLAY_NAME, ""),
            Restriction::Bitmask {
                op: BitmaskOp::Eqz,
                tag: PR_STATUS_CODE,
                mask: 1,
            },
            Restriction::Size {
                relop: RelOp::Ge,
                tag: PR_DISPLAY_NAME,
                size: 0,
            },
            Restriction::Exist { tag: PR_PRIORITY },
        ] {
            assert!(!eval_ok(&r, &empty), "{r:?}");
            assert!(eval_ok(&Restriction::Not(Box::new(r)), &empty));
        }
        // A PT_ERROR stand-in is absent too.
        let projected = empty.project(&[PR_PRIORITY]);
        assert!(!eval_ok(
            &Restriction::Exist { tag: PR_PRIORITY },
            &projected
        ));
        assert!(!eval_ok(
            &prop(RelOp::Ne, PR_PRIORITY, PropValue::Long(5)),
            &projected
        ));
    }

    #[test]
    fn regex_is_an_unanchored_search() {
        let row = status_row();
        let re = |p: &str| prop(RelOp::Re, PR_DISPLAY_NAME, unicode(p));
        assert!(eval_ok(&re("k M"), &row));
        assert!(eval_ok(&re("^Work"), &row));
        assert!(!eval_ok(&re("^Mail"), &row));
        assert!(eval_ok(&re("(?i)^work mail$"), &row));
        let s8 = prop(RelOp::Re, PR_SUBJECT_A, PropValue::String8("br.l".into()));
        assert!(eval_ok(&s8, &row));
        let bad = re("(unclosed");
        assert_eq!(
            bad.validate().map_err(|e| e.code),
            Err(MapiCode::InvalidParameter)
        );
    }

    #[test]
    fn content_fuzzy_levels() {
        let row = status_row();
        let c = |f, v| eval_ok(&content(f, PR_DISPLAY_NAME, v), &row);
        assert!(c(FuzzyLevel::FULLSTRING, "Work Mail"));
        assert!(!c(FuzzyLevel::FULLSTRING, "Work"));
        assert!(!c(FuzzyLevel::FULLSTRING, "work mail"));
        assert!(c(
            FuzzyLevel::FULLSTRING | FuzzyLevel::IGNORECASE,
            "work MAIL"
        ));
        assert!(c(FuzzyLevel::SUBSTRING, "k M"));
        assert!(!c(FuzzyLevel::SUBSTRING, "k m"));
        assert!(c(FuzzyLevel::SUBSTRING | FuzzyLevel::IGNORECASE, "K m"));
        assert!(c(FuzzyLevel::SUBSTRING, ""));
        assert!(c(FuzzyLevel::PREFIX, "Wor"));
        assert!(!c(FuzzyLevel::PREFIX, "Mail"));
        assert!(c(FuzzyLevel::PREFIX | FuzzyLevel::LOOSE, "wÖrk"));

        let s8 = |f, v: &str| {
            let r = Restriction::Content {
                fuzzy: FuzzyLevel(f),
                tag: PR_SUBJECT_A,
                value: PropValue::String8(v.into()),
            };
            eval_ok(&r, &row)
        };
        // Diacritics: precomposed in the row, plain or decomposed in the pattern.
        assert!(!s8(FuzzyLevel::SUBSTRING, "creme"));
        assert!(s8(
            FuzzyLevel::SUBSTRING | FuzzyLevel::IGNORENONSPACE,
            "Creme"
        ));
        assert!(!s8(
            FuzzyLevel::SUBSTRING | FuzzyLevel::IGNORENONSPACE,
            "creme"
        ));
        assert!(s8(
            FuzzyLevel::SUBSTRING | FuzzyLevel::IGNORENONSPACE,
            "bru\u{0302}lee"
        ));
        assert!(s8(
            FuzzyLevel::FULLSTRING | FuzzyLevel::LOOSE,
            "CREME BRULEE"
        ));
        assert!(s8(
            FuzzyLevel::FULLSTRING | FuzzyLevel::IGNORECASE | FuzzyLevel::IGNORENONSPACE,
            "crème BRULÉE"
        ));
        // Unicode-aware lower-casing, beyond ASCII.
        let greek = row_with(PR_DISPLAY_NAME, unicode("ΟΔΥΣΣΕΥΣ"));
        let r = content(
            FuzzyLevel::FULLSTRING | FuzzyLevel::IGNORECASE,
            PR_DISPLAY_NAME,
            "οδυσσευσ",
        );
        assert!(eval_ok(&r, &greek));

        let bin = |f, v: Vec<u8>| {
            let r = Restriction::Content {
                fuzzy: FuzzyLevel(f),
                tag: PR_ENTRYID,
                value: PropValue::Binary(v),
            };
            eval_ok(&r, &row)
        };
        assert!(bin(FuzzyLevel::SUBSTRING, vec![2, 3]));
        assert!(!bin(FuzzyLevel::SUBSTRING, vec![3, 2]));
        assert!(bin(FuzzyLevel::PREFIX, vec![1, 2]));
        assert!(!bin(FuzzyLevel::PREFIX, vec![2]));
        assert!(bin(
            FuzzyLevel::FULLSTRING | FuzzyLevel::IGNORECASE,
            vec![1, 2, 3, 4]
        ));
    }

    #[test]
    fn bitmask() {
        let row = status_row();
        let bm = |op, mask| Restriction::Bitmask {
            op,
            tag: PR_RESOURCE_METHODS,
            mask,
        };
        assert!(eval_ok(&bm(BitmaskOp::Nez, 0x8), &row));
        assert!(!eval_ok(&bm(BitmaskOp::Eqz, 0x8), &row));
        assert!(eval_ok(&bm(BitmaskOp::Eqz, 0x6), &row));
        assert!(!eval_ok(&bm(BitmaskOp::Nez, 0x6), &row));
        // Negative values are their bit pattern.
        let high = Restriction::Bitmask {
            op: BitmaskOp::Nez,
            tag: PR_PRIORITY,
            mask: 0x8000_0000,
        };
        assert!(eval_ok(&high, &row));
    }

    #[test]
    fn size_in_bytes_as_mapi_stores_them() {
        let row = status_row();
        let size = |tag, relop, size| eval_ok(&Restriction::Size { relop, tag, size }, &row);
        // "Work Mail": 9 UTF-16 units + terminator.
        assert!(size(PR_DISPLAY_NAME, RelOp::Eq, 20));
        // "Crème brûlée": 15 UTF-8 bytes + terminator.
        assert!(size(PR_SUBJECT_A, RelOp::Eq, 16));
        assert!(size(PR_ENTRYID, RelOp::Eq, 4));
        assert!(size(PR_RESOURCE_TYPE, RelOp::Eq, 4));
        assert!(size(PR_REMOTE_VALIDATE_OK, RelOp::Eq, 2));
        assert!(size(PR_CLIENT_SUBMIT_TIME, RelOp::Eq, 8));
        assert!(size(PR_DISPLAY_NAME, RelOp::Gt, 19));
        assert!(size(PR_DISPLAY_NAME, RelOp::Lt, 21));
        assert!(size(PR_DISPLAY_NAME, RelOp::Ne, 21));
        assert!(!size(PR_DISPLAY_NAME, RelOp::Ge, 21));
        assert!(size(PR_DISPLAY_NAME, RelOp::Le, 20));
        // A surrogate pair is two UTF-16 units.
        assert_eq!(byte_size(&unicode("😀")), Some(6));
    }

    #[test]
    fn exist_compare_props_comment_logic() {
        let row = status_row();
        assert!(eval_ok(&Restriction::Exist { tag: PR_ENTRYID }, &row));
        // Exist looks at the ID, whatever the type.
        assert!(eval_ok(
            &Restriction::Exist {
                tag: PR_ENTRYID.with_type(PropType::Unspecified as u16)
            },
            &row
        ));
        assert!(!eval_ok(
            &Restriction::Exist {
                tag: PR_SENDER_NAME
            },
            &row
        ));

        let cmp = |relop| Restriction::CompareProps {
            relop,
            tag1: PR_PRIORITY,
            tag2: PR_STATUS_CODE,
        };
        assert!(eval_ok(&cmp(RelOp::Lt), &row));
        assert!(eval_ok(&cmp(RelOp::Ne), &row));
        assert!(!eval_ok(&cmp(RelOp::Ge), &row));
        assert!(!eval_ok(
            &Restriction::CompareProps {
                relop: RelOp::Eq,
                tag1: PR_PRIORITY,
                tag2: PR_MESSAGE_FLAGS,
            },
            &row
        ));

        let yes = Restriction::Exist { tag: PR_ENTRYID };
        let no = Restriction::Exist {
            tag: PR_SENDER_NAME,
        };
        let comment = |r: Option<Restriction>| Restriction::Comment {
            props: vec![Prop::new(PR_DISPLAY_NAME, unicode("why"))],
            restriction: r.map(Box::new),
        };
        assert!(eval_ok(&comment(None), &row));
        assert!(eval_ok(&comment(Some(yes.clone())), &row));
        assert!(!eval_ok(&comment(Some(no.clone())), &row));

        assert!(eval_ok(&Restriction::And(vec![]), &row));
        assert!(!eval_ok(&Restriction::Or(vec![]), &row));
        assert!(!eval_ok(
            &Restriction::And(vec![yes.clone(), no.clone()]),
            &row
        ));
        assert!(eval_ok(
            &Restriction::Or(vec![no.clone(), yes.clone()]),
            &row
        ));
        assert!(eval_ok(&Restriction::Not(Box::new(no)), &row));
    }

    #[test]
    fn multi_valued_columns_match_on_any_element() {
        let mv = PropTag(0x6630_101F);
        let sv = mv.single_valued();
        let row = row_with(
            mv,
            PropValue::MvUnicode(vec!["alpha".into(), "beta".into()]),
        );
        assert!(eval_ok(&prop(RelOp::Eq, sv, unicode("beta")), &row));
        assert!(!eval_ok(&prop(RelOp::Eq, sv, unicode("gamma")), &row));
        assert!(eval_ok(&content(FuzzyLevel::PREFIX, sv, "al"), &row));
        assert!(eval_ok(&Restriction::Exist { tag: sv }, &row));
    }

    struct Message {
        recipients: Vec<Row>,
    }

    impl SubObjects for Message {
        fn sub_rows(&self, object: PropTag) -> Option<Vec<Row>> {
            (object == PR_MESSAGE_RECIPIENTS).then(|| self.recipients.clone())
        }
    }

    #[test]
    fn sub_restrictions_look_at_sub_rows() {
        let msg = Message {
            recipients: vec![
                row_with(PR_RECIPIENT_TYPE, PropValue::Long(1)),
                row_with(PR_RECIPIENT_TYPE, PropValue::Long(3)),
            ],
        };
        let sub = |object, v| Restriction::SubRestriction {
            object,
            restriction: Box::new(prop(RelOp::Eq, PR_RECIPIENT_TYPE, PropValue::Long(v))),
        };
        let top = Row::default();
        let ok = |r: &Restriction| r.evaluate_with(&top, &msg).map_err(|e| e.to_string());
        assert_eq!(ok(&sub(PR_MESSAGE_RECIPIENTS, 3)), Ok(true));
        assert_eq!(ok(&sub(PR_MESSAGE_RECIPIENTS, 2)), Ok(false));
        assert_eq!(ok(&sub(PR_MESSAGE_ATTACHMENTS, 3)), Ok(false));
        // Without sub-objects, false.
        assert!(!eval_ok(&sub(PR_MESSAGE_RECIPIENTS, 3), &top));
        assert_eq!(
            sub(PR_ENTRYID, 3).validate().map_err(|e| e.code),
            Err(MapiCode::TooComplex)
        );
    }

    #[test]
    fn type_mismatches_are_too_complex_and_name_the_tag() {
        let bad = [
            prop(RelOp::Eq, PR_PRIORITY, unicode("x")),
            prop(RelOp::Re, PR_PRIORITY, PropValue::Long(1)),
            prop(RelOp::Eq, PR_MESSAGE_RECIPIENTS, PropValue::Object),
            prop(RelOp::Eq, PR_DISPLAY_NAME, PropValue::MvUnicode(vec![])),
            prop(RelOp::Eq, PropTag(0x6600_0099), PropValue::Long(1)),
            Restriction::Content {
                fuzzy: FuzzyLevel(FuzzyLevel::SUBSTRING),
                tag: PR_PRIORITY,
                value: PropValue::Long(1),
            },
            Restriction::Content {
                fuzzy: FuzzyLevel(FuzzyLevel::SUBSTRING),
                tag: PR_SUBJECT_A,
                value: unicode("x"),
            },
            content(3, PR_DISPLAY_NAME, "x"),
            content(0x8_0000, PR_DISPLAY_NAME, "x"),
            Restriction::Bitmask {
                op: BitmaskOp::Nez,
                tag: PR_DISPLAY_NAME,
                mask: 1,
            },
            Restriction::Size {
                relop: RelOp::Re,
                tag: PR_DISPLAY_NAME,
                size: 1,
            },
            Restriction::CompareProps {
                relop: RelOp::Eq,
                tag1: PR_PRIORITY,
                tag2: PR_DISPLAY_NAME,
            },
            Restriction::CompareProps {
                relop: RelOp::Re,
                tag1: PR_DISPLAY_NAME,
                tag2: PR_DISPLAY_NAME,
            },
        ];
        let row = status_row();
        for r in bad {
            let e = r.validate().expect_err("invalid");
            assert_eq!(e.code, MapiCode::TooComplex, "{r:?}");
            let tag_name = format!("{:?}", r)
                .split_whitespace()
                .find(|w| w.starts_with("PR_") || w.starts_with("0x"))
                .map(|w| w.trim_end_matches(',').to_string());
            if let Some(name) = tag_name {
                assert!(e.cause.contains(&name), "{} lacks {name}", e.cause);
            }
            // Evaluation fails the same way, even where the row would short-circuit.
            let wrapped = Restriction::Or(vec![Restriction::And(vec![]), r]);
            assert_eq!(
                wrapped.evaluate(&row).map_err(|e| e.code),
                Err(MapiCode::TooComplex)
            );
        }
        let e = prop(RelOp::Eq, PR_PRIORITY, unicode("x"))
            .validate()
            .expect_err("mismatch");
        assert_eq!(
            e.cause,
            "property restriction on PR_PRIORITY: the constant is PT_UNICODE, the property is PT_LONG"
        );
    }

    // --- A reference evaluator, written naively and apart from the one above, to compare with.

    const R_LONG: PropTag = PR_PRIORITY;
    const R_TEXT: PropTag = PR_DISPLAY_NAME;
    const R_BIN: PropTag = PR_ENTRYID;
    const R_BOOL: PropTag = PR_REMOTE_VALIDATE_OK;
    const R_MV: PropTag = PropTag(0x6630_101F);
    const R_MV_SV: PropTag = PropTag(0x6630_001F);

    fn reference(r: &Restriction, row: &Row, subs: &[Row]) -> bool {
        match r {
            Restriction::And(v) => v.iter().all(|r| reference(r, row, subs)),
            Restriction::Or(v) => v.iter().any(|r| reference(r, row, subs)),
            Restriction::Not(r) => !reference(r, row, subs),
            Restriction::Property { relop, tag, value } => ref_values(row, *tag)
                .iter()
                .any(|v| ref_relop(*relop, ref_cmp(v, value))),
            Restriction::CompareProps { relop, tag1, tag2 } => {
                let b = ref_values(row, *tag2);
                ref_values(row, *tag1)
                    .iter()
                    .any(|a| b.iter().any(|b| ref_relop(*relop, ref_cmp(a, b))))
            }
            Restriction::Content { fuzzy, tag, value } => {
                let level = fuzzy.0 & 0xFFFF;
                ref_values(row, *tag).iter().any(|v| match (v, value) {
                    (PropValue::Unicode(h), PropValue::Unicode(n)) => {
                        let h = ref_fold(h, fuzzy.0);
                        let n = ref_fold(n, fuzzy.0);
                        match level {
                            0 => h == n,
                            1 => (0..=h.len()).any(|i| h[i..].starts_with(&n)),
                            _ => h.starts_with(&n),
                        }
                    }
                    (PropValue::Binary(h), PropValue::Binary(n)) => match level {
                        0 => h == n,
                        1 => (0..=h.len()).any(|i| h[i..].starts_with(n)),
                        _ => h.starts_with(n),
                    },
                    _ => false,
                })
            }
            Restriction::Bitmask { op, tag, mask } => {
                ref_values(row, *tag).iter().any(|v| match v {
                    PropValue::Long(x) => {
                        let set = (*x as u32) & mask != 0;
                        if *op == BitmaskOp::Nez { set } else { !set }
                    }
                    _ => false,
                })
            }
            Restriction::Size { relop, tag, size } => ref_values(row, *tag).iter().any(|v| {
                let n: u64 = match v {
                    PropValue::Long(_) => 4,
                    PropValue::Boolean(_) => 2,
                    PropValue::Unicode(s) => {
                        s.chars().map(|c| c.len_utf16() as u64 * 2).sum::<u64>() + 2
                    }
                    PropValue::Binary(b) => b.len() as u64,
                    _ => return false,
                };
                ref_relop(*relop, Some(n.cmp(&u64::from(*size))))
            }),
            Restriction::Exist { tag } => row
                .props
                .iter()
                .any(|p| p.tag.id() == tag.id() && p.tag.type_code() != 0x000A),
            Restriction::SubRestriction { restriction, .. } => {
                subs.iter().any(|s| reference(restriction, s, &[]))
            }
            Restriction::Comment { restriction, .. } => {
                restriction.as_ref().is_none_or(|r| reference(r, row, subs))
            }
        }
    }

    fn ref_values(row: &Row, tag: PropTag) -> Vec<PropValue> {
        let mut out = Vec::new();
        for p in &row.props {
            if p.tag == tag {
                out.push(p.value.clone());
            } else if p.tag.0 == tag.0 | 0x1000
                && let PropValue::MvUnicode(v) = &p.value
            {
                out.extend(v.iter().map(|s| PropValue::Unicode(s.clone())));
            }
        }
        out
    }

    fn ref_cmp(a: &PropValue, b: &PropValue) -> Option<Ordering> {
        match (a, b) {
            (PropValue::Long(x), PropValue::Long(y)) => Some(i64::from(*x).cmp(&i64::from(*y))),
            (PropValue::Boolean(x), PropValue::Boolean(y)) => Some(u8::from(*x).cmp(&u8::from(*y))),
            (PropValue::Unicode(x), PropValue::Unicode(y)) => {
                let x: Vec<u32> = x.chars().map(|c| c as u32).collect();
                let y: Vec<u32> = y.chars().map(|c| c as u32).collect();
                Some(x.cmp(&y))
            }
            (PropValue::Binary(x), PropValue::Binary(y)) => Some(x.cmp(y)),
            _ => None,
        }
    }

    fn ref_relop(relop: RelOp, ord: Option<Ordering>) -> bool {
        let Some(ord) = ord else { return false };
        match relop {
            RelOp::Lt => ord.is_lt(),
            RelOp::Le => ord.is_le(),
            RelOp::Gt => ord.is_gt(),
            RelOp::Ge => ord.is_ge(),
            RelOp::Eq => ord.is_eq(),
            RelOp::Ne => ord.is_ne(),
            RelOp::Re => false,
        }
    }

    /// The test alphabet's folding, spelled out: é/É lose the accent, U+0301 disappears.
    fn ref_fold(s: &str, fuzzy: u32) -> Vec<char> {
        let case = fuzzy & (0x1_0000 | 0x4_0000) != 0;
        let accents = fuzzy & (0x2_0000 | 0x4_0000) != 0;
        let mut out = Vec::new();
        for c in s.chars() {
            let c = match c {
                '\u{301}' if accents => continue,
                'é' if accents => 'e',
                'É' if accents => 'E',
                c => c,
            };
            out.push(if case {
                match c {
                    'A'..='Z' => c.to_ascii_lowercase(),
                    'É' => 'é',
                    c => c,
                }
            } else {
                c
            });
        }
        out
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec!["a", "A", "b", "B", "é", "É", "e\u{301}", "e"]),
            0..4,
        )
        .prop_map(|parts| parts.concat())
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..3, 0..4)
    }

    fn leaf() -> impl Strategy<Value = Restriction> {
        let relop = prop::sample::select(vec![
            RelOp::Lt,
            RelOp::Le,
            RelOp::Gt,
            RelOp::Ge,
            RelOp::Eq,
            RelOp::Ne,
        ]);
        let fuzzy = (
            0u32..3,
            prop::sample::subsequence(vec![0x1_0000u32, 0x2_0000, 0x4_0000], 0..=3),
        )
            .prop_map(|(l, f)| FuzzyLevel(l | f.iter().sum::<u32>()));
        let any_tag = prop::sample::select(vec![R_LONG, R_TEXT, R_BIN, R_BOOL, R_MV_SV]);
        prop_oneof![
            (relop.clone(), -3i32..3).prop_map(|(r, v)| prop(r, R_LONG, PropValue::Long(v))),
            (relop.clone(), text()).prop_map(|(r, v)| prop(r, R_TEXT, PropValue::Unicode(v))),
            (relop.clone(), text()).prop_map(|(r, v)| prop(r, R_MV_SV, PropValue::Unicode(v))),
            (relop.clone(), bytes()).prop_map(|(r, v)| prop(r, R_BIN, PropValue::Binary(v))),
            (relop.clone(), any::<bool>()).prop_map(|(r, v)| prop(
                r,
                R_BOOL,
                PropValue::Boolean(v)
            )),
            (fuzzy.clone(), text(), any::<bool>()).prop_map(|(f, v, mv)| Restriction::Content {
                fuzzy: f,
                tag: if mv { R_MV_SV } else { R_TEXT },
                value: PropValue::Unicode(v)
            }),
            (fuzzy, bytes()).prop_map(|(f, v)| Restriction::Content {
                fuzzy: f,
                tag: R_BIN,
                value: PropValue::Binary(v)
            }),
            (any::<bool>(), 0u32..8).prop_map(|(z, mask)| Restriction::Bitmask {
                op: if z { BitmaskOp::Eqz } else { BitmaskOp::Nez },
                tag: R_LONG,
                mask: mask | if mask == 7 { 0x8000_0000 } else { 0 },
            }),
            (relop.clone(), any_tag.clone(), 0u32..12)
                .prop_map(|(relop, tag, size)| Restriction::Size { relop, tag, size }),
            any_tag.prop_map(|tag| Restriction::Exist { tag }),
            (relop, any::<bool>()).prop_map(|(relop, texts)| Restriction::CompareProps {
                relop,
                tag1: if texts { R_TEXT } else { R_LONG },
                tag2: if texts { R_MV_SV } else { R_LONG },
            }),
        ]
    }

    fn tree() -> impl Strategy<Value = Restriction> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Restriction::And),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Restriction::Or),
                inner.clone().prop_map(|r| Restriction::Not(Box::new(r))),
                inner.clone().prop_map(|r| Restriction::SubRestriction {
                    object: PR_MESSAGE_RECIPIENTS,
                    restriction: Box::new(r),
                }),
                proptest::option::of(inner).prop_map(|r| Restriction::Comment {
                    props: vec![],
                    restriction: r.map(Box::new),
                }),
            ]
        })
    }

    fn test_row() -> impl Strategy<Value = Row> {
        (
            proptest::option::of(prop_oneof![
                (-3i32..3).prop_map(PropValue::Long),
                Just(PropValue::Error(MapiCode::NotFound)),
            ]),
            proptest::option::of(text()),
            proptest::option::of(bytes()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::collection::vec(text(), 0..3)),
        )
            .prop_map(|(long, text, bin, b, mv)| {
                let mut props = Vec::new();
                match long {
                    Some(PropValue::Error(_)) => props.push(Prop::not_found(R_LONG)),
                    Some(v) => props.push(Prop::new(R_LONG, v)),
                    None => {}
                }
                if let Some(t) = text {
                    props.push(Prop::new(R_TEXT, PropValue::Unicode(t)));
                }
                if let Some(v) = bin {
                    props.push(Prop::new(R_BIN, PropValue::Binary(v)));
                }
                if let Some(v) = b {
                    props.push(Prop::new(R_BOOL, PropValue::Boolean(v)));
                }
                if let Some(v) = mv {
                    props.push(Prop::new(R_MV, PropValue::MvUnicode(v)));
                }
                Row::new(props)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn agrees_with_the_reference(
            r in tree(),
            row in test_row(),
            subs in proptest::collection::vec(test_row(), 0..3),
        ) {
            let msg = Message { recipients: subs.clone() };
            let got = r.evaluate_with(&row, &msg);
            prop_assert_eq!(got, Ok(reference(&r, &row, &subs)), "{:?} on {:?}", r, row);
        }
    }
}

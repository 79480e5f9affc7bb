//! Sort keys (`SSortOrder`) and the order a sorted view puts rows in.

use std::cmp::Ordering;

use crate::tag::PropTag;
use crate::value::{PropValue, Row};

/// `TABLE_SORT_ASCEND`.
pub const TABLE_SORT_ASCEND: u32 = 0;
/// `TABLE_SORT_DESCEND`.
pub const TABLE_SORT_DESCEND: u32 = 1;
/// `TABLE_SORT_COMBINE`: only meaningful for categorized views, which these tables do not have.
pub const TABLE_SORT_COMBINE: u32 = 2;

/// The direction of one sort key (`ulOrder`), MAPI's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SortOrder {
    Ascend = TABLE_SORT_ASCEND,
    Descend = TABLE_SORT_DESCEND,
}

/// One sort key (`SSortOrder`): a column and a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub tag: PropTag,
    pub order: SortOrder,
}

impl SortKey {
    pub const fn ascend(tag: PropTag) -> SortKey {
        SortKey {
            tag,
            order: SortOrder::Ascend,
        }
    }
    pub const fn descend(tag: PropTag) -> SortKey {
        SortKey {
            tag,
            order: SortOrder::Descend,
        }
    }
}

/// How `a` sorts against `b` under `keys`, the first key deciding first.
///
/// A row without a key's column (or with it under another type) sorts after every row that has
/// it, in either direction: a client sorting a status table by `PR_STATUS_CODE` descending wants
/// the rows that report one first, not the ones that say nothing. Rows equal on every key compare
/// equal, so a stable sort leaves them in insertion order.
pub(crate) fn compare_rows(a: &Row, b: &Row, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let ordering = match (a.get(key.tag), b.get(key.tag)) {
            (Some(x), Some(y)) => match key.order {
                SortOrder::Ascend => compare_values(x, y),
                SortOrder::Descend => compare_values(x, y).reverse(),
            },
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// A total order on values: by value within a type, by type code across types (which a sort
/// column with one tag never mixes, but the order must still be total for `sort_by`).
fn compare_values(a: &PropValue, b: &PropValue) -> Ordering {
    use PropValue as V;
    match (a, b) {
        (V::I2(x), V::I2(y)) => x.cmp(y),
        (V::Long(x), V::Long(y)) => x.cmp(y),
        (V::I8(x), V::I8(y)) | (V::Currency(x), V::Currency(y)) => x.cmp(y),
        (V::R4(x), V::R4(y)) => x.total_cmp(y),
        (V::Double(x), V::Double(y)) | (V::AppTime(x), V::AppTime(y)) => x.total_cmp(y),
        (V::Boolean(x), V::Boolean(y)) => x.cmp(y),
        (V::SysTime(x), V::SysTime(y)) => x.cmp(y),
        (V::Clsid(x), V::Clsid(y)) => x.cmp(y),
        (V::Binary(x), V::Binary(y)) => x.cmp(y),
        (V::String8(x), V::String8(y)) | (V::Unicode(x), V::Unicode(y)) => compare_text(x, y),
        _ if a.type_code() == b.type_code() => match (a.elements(), b.elements()) {
            (Some(xs), Some(ys)) => xs
                .iter()
                .zip(&ys)
                .map(|(x, y)| compare_values(x, y))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or_else(|| xs.len().cmp(&ys.len())),
            // Null, Error and Object carry nothing to order by.
            _ => Ordering::Equal,
        },
        _ => a.type_code().cmp(&b.type_code()),
    }
}

/// Text sorts the way people read a list, ignoring case; the exact comparison only breaks ties,
/// so that "a" and "A" still have a fixed order between them.
fn compare_text(x: &str, y: &str) -> Ordering {
    x.chars()
        .flat_map(char::to_lowercase)
        .cmp(y.chars().flat_map(char::to_lowercase))
        .then_with(|| x.cmp(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{PR_DISPLAY_NAME, PR_STATUS_CODE};
    use crate::value::FileTime;

    #[test]
    fn values_order_within_their_type() {
        assert_eq!(
            compare_values(&PropValue::Long(-1), &PropValue::Long(2)),
            Ordering::Less
        );
        assert_eq!(
            compare_values(
                &PropValue::Unicode("b".into()),
                &PropValue::Unicode("A".into())
            ),
            Ordering::Greater
        );
        assert_eq!(
            compare_values(
                &PropValue::Unicode("a".into()),
                &PropValue::Unicode("A".into())
            ),
            Ordering::Greater,
            "case only breaks ties"
        );
        assert_eq!(
            compare_values(
                &PropValue::SysTime(FileTime(1)),
                &PropValue::SysTime(FileTime(2))
            ),
            Ordering::Less
        );
        assert_eq!(
            compare_values(&PropValue::MvLong(vec![1, 2]), &PropValue::MvLong(vec![1])),
            Ordering::Greater
        );
        assert_eq!(
            compare_values(&PropValue::Double(f64::NAN), &PropValue::Double(f64::NAN)),
            Ordering::Equal
        );
    }

    #[test]
    fn missing_columns_sort_last_in_both_directions() {
        let with = Row::new(vec![crate::value::Prop::new(
            PR_STATUS_CODE,
            PropValue::Long(5),
        )]);
        let without = Row::new(vec![crate::value::Prop::new(
            PR_DISPLAY_NAME,
            PropValue::Unicode("x".into()),
        )]);
        for key in [
            SortKey::ascend(PR_STATUS_CODE),
            SortKey::descend(PR_STATUS_CODE),
        ] {
            assert_eq!(compare_rows(&with, &without, &[key]), Ordering::Less);
            assert_eq!(compare_rows(&without, &with, &[key]), Ordering::Greater);
        }
        assert_eq!(compare_rows(&with, &without, &[]), Ordering::Equal);
    }
}

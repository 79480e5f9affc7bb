//! Restrictions (`SRestriction`): the eleven kinds of mapi-reference.md §7, with MAPI's numbers.
//!
//! - this file: the tree;
//! - `eval.rs`: evaluation against a row, with MAPI's semantics;
//! - `text.rs`: a text syntax for people (the CLI's `--where`), parsed and printed back.

mod eval;
mod text;

pub use eval::{NoSubObjects, SubObjects, byte_size, compare};
pub use text::{PR_COMMENT, ParseError, parse};

use crate::tag::PropTag;
use crate::value::{Prop, PropValue};

/// Relational operators (`RELOP_*`); a restriction reads "(property) op (constant)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RelOp {
    Lt = 0,
    Le = 1,
    Gt = 2,
    Ge = 3,
    Eq = 4,
    Ne = 5,
    /// `RELOP_RE`: the constant is a regular expression the property must match.
    Re = 6,
}

/// `BMR_EQZ` / `BMR_NEZ`: the masked bits are all zero, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BitmaskOp {
    Eqz = 0,
    Nez = 1,
}

/// `ulFuzzyLevel` of a content restriction: exactly one of `FL_FULLSTRING`, `FL_SUBSTRING`,
/// `FL_PREFIX` in the low word, plus any of `FL_IGNORECASE`, `FL_IGNORENONSPACE`, `FL_LOOSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FuzzyLevel(pub u32);

impl FuzzyLevel {
    pub const FULLSTRING: u32 = 0x0;
    pub const SUBSTRING: u32 = 0x1;
    pub const PREFIX: u32 = 0x2;
    pub const IGNORECASE: u32 = 0x1_0000;
    pub const IGNORENONSPACE: u32 = 0x2_0000;
    pub const LOOSE: u32 = 0x4_0000;
}

/// `RES_*` numbers, for code that speaks MAPI's wire values.
pub const RES_AND: u32 = 0;
pub const RES_OR: u32 = 1;
pub const RES_NOT: u32 = 2;
pub const RES_CONTENT: u32 = 3;
pub const RES_PROPERTY: u32 = 4;
pub const RES_COMPAREPROPS: u32 = 5;
pub const RES_BITMASK: u32 = 6;
pub const RES_SIZE: u32 = 7;
pub const RES_EXIST: u32 = 8;
pub const RES_SUBRESTRICTION: u32 = 9;
pub const RES_COMMENT: u32 = 10;

/// A restriction tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Restriction {
    And(Vec<Restriction>),
    Or(Vec<Restriction>),
    Not(Box<Restriction>),
    Content {
        fuzzy: FuzzyLevel,
        tag: PropTag,
        value: PropValue,
    },
    Property {
        relop: RelOp,
        tag: PropTag,
        value: PropValue,
    },
    CompareProps {
        relop: RelOp,
        tag1: PropTag,
        tag2: PropTag,
    },
    Bitmask {
        op: BitmaskOp,
        tag: PropTag,
        mask: u32,
    },
    Size {
        relop: RelOp,
        tag: PropTag,
        size: u32,
    },
    Exist {
        tag: PropTag,
    },
    /// Applies `restriction` to the rows of a sub-object table (`PR_MESSAGE_RECIPIENTS`,
    /// `PR_MESSAGE_ATTACHMENTS`); true when any row matches.
    SubRestriction {
        object: PropTag,
        restriction: Box<Restriction>,
    },
    /// Annotates `restriction` (or nothing, which is true) with properties.
    Comment {
        props: Vec<Prop>,
        restriction: Option<Box<Restriction>>,
    },
}

impl Restriction {
    /// MAPI's `rt` number for this kind.
    pub fn kind(&self) -> u32 {
        match self {
            Restriction::And(_) => RES_AND,
            Restriction::Or(_) => RES_OR,
            Restriction::Not(_) => RES_NOT,
            Restriction::Content { .. } => RES_CONTENT,
            Restriction::Property { .. } => RES_PROPERTY,
            Restriction::CompareProps { .. } => RES_COMPAREPROPS,
            Restriction::Bitmask { .. } => RES_BITMASK,
            Restriction::Size { .. } => RES_SIZE,
            Restriction::Exist { .. } => RES_EXIST,
            Restriction::SubRestriction { .. } => RES_SUBRESTRICTION,
            Restriction::Comment { .. } => RES_COMMENT,
        }
    }
}

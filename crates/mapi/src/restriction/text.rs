//! A text syntax for restrictions, for people (the CLI's `--where`): parsed by [`parse`] /
//! [`str::parse`], printed by `Display`, and printing then parsing gives back the same tree.
//!
//! # Syntax
//!
//! | Form | Restriction |
//! |------|-------------|
//! | `PR_X == v`, `!=`, `<`, `<=`, `>`, `>=` | property (`RELOP_EQ` …), `v` of `PR_X`'s type |
//! | `PR_X =~ /re/`, `PR_X matches "re"` | property, `RELOP_RE` (unanchored regex search) |
//! | `PR_X ~= "s"` | content, `FL_SUBSTRING` |
//! | `PR_X ^= "s"` | content, `FL_PREFIX` |
//! | `PR_X === "s"`, or `PR_X == "s"i` (with flags) | content, `FL_FULLSTRING` |
//! | `"s"i`, `"s"n`, `"s"l` (any mix) | content flags `FL_IGNORECASE`, `FL_IGNORENONSPACE`, `FL_LOOSE` |
//! | `content(PR_X, 0x10001, "s")` | content with a raw `ulFuzzyLevel` |
//! | `PR_X & MASK` (or `PR_X & MASK != 0`) | bitmask, `BMR_NEZ` |
//! | `PR_X & MASK == 0` | bitmask, `BMR_EQZ` |
//! | `PR_A == PR_B` (any relop but `=~`) | compare-props, when the right side is a tag too |
//! | `size(PR_X) > 10` | size, in bytes as MAPI stores the value |
//! | `exists(PR_X)` | exist |
//! | `recipients(r)`, `attachments(r)` | sub-restriction on `PR_MESSAGE_RECIPIENTS` / `_ATTACHMENTS` |
//! | `sub(PR_X, r)` | sub-restriction on any other object tag |
//! | `/* text */ r` | comment holding `PR_COMMENT` = `text`, around `r` |
//! | `comment(PR_X = v, PR_Y = w; r)`, `comment(; r)`, `comment(PR_X = v)` | comment, general form |
//! | `a && b && c`, `all(a, b, c)` | and; `true` is the empty and, `all(a)` an and of one |
//! | `a \|\| b`, `any(a, b)` | or; `false` is the empty or, `any(a)` an or of one |
//! | `!r`, `(r)` | not; grouping. Precedence: `!` (and `/* */`) > `&&` > `\|\|` |
//!
//! **Tags**: MAPI names (`PR_SUBJECT`, `pr_subject_w`, `PR_SUBJECT_A`) or numbers
//! (`0x0037001F`). On the right of an operator, where a bare number is a value, a tag by number
//! is written `tag(0x0037001F)`.
//!
//! **Values** follow the tag's type (mapi-reference.md §7: the constant's type is the tag's):
//!
//! | Type | Written as |
//! |------|-----------|
//! | `PT_I2`, `PT_LONG`, `PT_I8` | `42`, `-1`, `0x1F`, a constant (`MAPI_SPOOLER`), bits `A\|B\|0x10` |
//! | `PT_R4`, `PT_DOUBLE`, `PT_APPTIME` | `1.5`, `-2`, `inf`, `NaN` |
//! | `PT_CURRENCY` | `12.3400` (up to four decimals) |
//! | `PT_BOOLEAN` | `true`, `false` |
//! | `PT_UNICODE`, `PT_STRING8` | `"text"`, escapes `\"` `\\` `\n` `\r` `\t` `\0` `\u{1F600}` |
//! | `PT_SYSTIME` | `2026-11-25T17:00:00Z`, `2026-11-25`, or raw `FILETIME` ticks |
//! | `PT_BINARY`, `PT_CLSID` | `x'00AB'` (a `PT_CLSID` takes 16 bytes) |
//!
//! Integers may be given in the signed or unsigned range of their width (`0xFFFFFFFF` is `-1` as
//! a `PT_LONG`). A mask is a `PT_LONG`-width integer. Printing uses constant names where the
//! tag has a named set (`constants::set_for`), decimals otherwise, and RFC 3339 times between
//! 1970 and 9999 (ticks outside).
//!
//! Round-tripping holds for every tree [`Restriction::validate`] accepts, and for invalid shapes
//! that still have a text form (a sub-restriction on another object, odd fuzzy levels). A tree
//! whose constant does not have its tag's type prints, but the text does not parse back: the
//! parser enforces the types. Comment properties can hold the single-valued types of the value
//! table above.

use std::fmt;
use std::str::FromStr;

use super::{BitmaskOp, FuzzyLevel, RelOp, Restriction};
use crate::constants::{self, ConstantKind};
use crate::tag::{self, PropTag, PropType};
use crate::value::{self, FileTime, Prop, PropValue};

/// `PR_COMMENT` (`PT_UNICODE`): what the `/* text */` form stores in a comment restriction.
pub const PR_COMMENT: PropTag = PropTag(0x3004_001F);

/// Text that is not a restriction: where (1-based character column), what was there, and what
/// the parser expected. [`caret`](ParseError::caret) shows it under the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The text that was parsed.
    pub input: String,
    /// 1-based character position of the problem (one past the end for "end of input").
    pub column: usize,
    /// What was found there, in words (`'PR_X'`, `a string`, `end of input`).
    pub found: String,
    /// What would have been accepted there, in words.
    pub expected: String,
}

impl ParseError {
    /// The text and, under it, a caret at the column with the explanation:
    ///
    /// ```text
    /// PR_PRIORITY ==
    ///                ^ expected a value after '==' …, found end of input
    /// ```
    pub fn caret(&self) -> String {
        // Tabs and newlines would break the alignment of the caret; show them as spaces.
        let line: String = self
            .input
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!(
            "{line}\n{}^ expected {}, found {}",
            " ".repeat(self.column.saturating_sub(1)),
            self.expected,
            self.found
        )
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: expected {}, found {}",
            self.column, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

/// Parses the text syntax (see the module documentation) into a restriction.
///
/// Errors: a [`ParseError`] at the first place the text stops making sense, including unknown
/// tag or constant names (with a close match when there is one) and values that do not fit
/// their tag's type.
pub fn parse(text: &str) -> Result<Restriction, ParseError> {
    let mut p = Parser::new(text);
    let r = p.or()?;
    p.ws();
    if p.pos < p.chars.len() {
        return Err(p.error_here("'&&', '||' or the end of the restriction"));
    }
    Ok(r)
}

impl Restriction {
    /// [`parse`]: the text syntax into a tree.
    pub fn parse(text: &str) -> Result<Restriction, ParseError> {
        parse(text)
    }
}

impl FromStr for Restriction {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Restriction, ParseError> {
        parse(text)
    }
}

type PResult<T> = Result<T, ParseError>;

/// Content flags written after a string or binary literal, and where.
struct Flags {
    column: usize,
    bits: u32,
}

/// A recursive-descent parser over characters: context decides how the next characters lex
/// (`/` opens a regex after `=~` and a comment at the start of a restriction), so there is no
/// separate token stream.
struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Nesting depth, bounded so that hostile input cannot overflow the stack.
    depth: usize,
}

/// Deeper nesting than any person writes; beyond it the text is refused, not recursed into.
const MAX_DEPTH: usize = 200;

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Characters of a bare value: numbers, constant names, times (`2026-11-25T17:00:00.5Z`).
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '+' | '-')
}

const FUNCTIONS: &str =
    "exists, size, recipients, attachments, sub, comment, content, all, any or tag";

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser {
            input,
            chars: input.chars().collect(),
            pos: 0,
            depth: 0,
        }
    }

    fn ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn looking_at(&self, s: &str) -> bool {
        let len = s.chars().count();
        self.chars
            .get(self.pos..self.pos + len)
            .is_some_and(|here| here.iter().copied().eq(s.chars()))
    }

    /// Skips blanks, then consumes `s` if it is next.
    fn eat(&mut self, s: &str) -> bool {
        self.ws();
        if self.looking_at(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str, expected: impl Into<String>) -> PResult<()> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.error_here(expected))
        }
    }

    fn error_at(&self, pos: usize, found: String, expected: impl Into<String>) -> ParseError {
        ParseError {
            input: self.input.to_string(),
            column: pos + 1,
            found,
            expected: expected.into(),
        }
    }

    fn error_here(&mut self, expected: impl Into<String>) -> ParseError {
        self.ws();
        self.error_at(self.pos, self.describe(self.pos), expected)
    }

    /// The token at `pos`, in words, for "found …".
    fn describe(&self, pos: usize) -> String {
        let run = |keep: &dyn Fn(char) -> bool| -> String {
            self.chars[pos..].iter().take_while(|c| keep(**c)).collect()
        };
        match self.chars.get(pos) {
            None => "end of input".into(),
            Some('"') => "a string".into(),
            Some(c) if is_word_char(*c) => format!("'{}'", run(&|c| is_word_char(c))),
            Some(c) if "=!<>~^&|".contains(*c) => {
                format!("'{}'", run(&|c| "=!<>~^&|".contains(c)))
            }
            Some(c) => format!("'{c}'"),
        }
    }

    /// Skips blanks and reads a run of `keep` characters, with its start.
    fn run(&mut self, keep: fn(char) -> bool) -> (usize, String) {
        self.ws();
        let start = self.pos;
        while self.peek().is_some_and(keep) {
            self.pos += 1;
        }
        (start, self.chars[start..self.pos].iter().collect())
    }

    /// An identifier followed by `(`, without consuming anything: the function name.
    fn peek_function(&mut self) -> Option<String> {
        self.ws();
        let save = self.pos;
        let (_, name) = self.run(is_ident_char);
        let is_call = !name.is_empty() && name.starts_with(is_ident_start) && {
            self.ws();
            self.peek() == Some('(')
        };
        self.pos = save;
        is_call.then_some(name)
    }

    // or := and ("||" and)*
    fn or(&mut self) -> PResult<Restriction> {
        let first = self.and()?;
        let mut items = vec![first];
        while self.eat("||") {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Restriction::Or(items)
        })
    }

    // and := unary ("&&" unary)*
    fn and(&mut self) -> PResult<Restriction> {
        let first = self.unary()?;
        let mut items = vec![first];
        while self.eat("&&") {
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Restriction::And(items)
        })
    }

    // unary := "!" unary | "/*" text "*/" unary | primary
    fn unary(&mut self) -> PResult<Restriction> {
        // Every nesting (`!`, comments, parentheses, functions) comes through here.
        if self.depth >= MAX_DEPTH {
            return Err(self.error_here(format!("at most {MAX_DEPTH} levels of nesting")));
        }
        self.depth += 1;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> PResult<Restriction> {
        if self.eat("!") {
            return Ok(Restriction::Not(Box::new(self.unary()?)));
        }
        self.ws();
        if self.looking_at("/*") {
            let open = self.pos;
            self.pos += 2;
            let start = self.pos;
            while self.pos < self.chars.len() && !self.looking_at("*/") {
                self.pos += 1;
            }
            if self.pos >= self.chars.len() {
                return Err(self.error_at(
                    self.pos,
                    "end of input".into(),
                    format!("'*/' to close the comment opened at column {}", open + 1),
                ));
            }
            let mut text: &[char] = &self.chars[start..self.pos];
            self.pos += 2;
            // `/* text */` reads as "text": one blank each side belongs to the markers.
            if let [' ', rest @ ..] = text {
                text = rest;
            }
            if let [rest @ .., ' '] = text {
                text = rest;
            }
            let text: String = text.iter().collect();
            let inner = self.unary()?;
            return Ok(Restriction::Comment {
                props: vec![Prop::new(PR_COMMENT, PropValue::Unicode(text))],
                restriction: Some(Box::new(inner)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Restriction> {
        self.ws();
        let start = self.pos;
        if self.eat("(") {
            let r = self.or()?;
            self.expect(")", format!("')' to close the '(' at column {}", start + 1))?;
            return Ok(r);
        }
        if let Some(name) = self.peek_function() {
            if name == "tag" {
                let tag = self.tag()?;
                return self.condition(tag, start);
            }
            self.run(is_ident_char);
            self.expect("(", "'('")?;
            return self.function(&name, start);
        }
        match self.peek() {
            Some(c) if is_ident_start(c) || c.is_ascii_digit() => {
                let save = self.pos;
                let (_, word) = self.run(is_ident_char);
                match word.as_str() {
                    "true" => return Ok(Restriction::And(Vec::new())),
                    "false" => return Ok(Restriction::Or(Vec::new())),
                    _ => self.pos = save,
                }
                let tag = self.tag()?;
                self.condition(tag, start)
            }
            _ => Err(self.error_here(
                "a restriction: a property tag, '(', '!', true, false or a function \
                 (exists, size, recipients, …)",
            )),
        }
    }

    /// The rest of `name(…)` after its `(`, closing parenthesis included.
    fn function(&mut self, name: &str, start: usize) -> PResult<Restriction> {
        let close = format!("')' to close {name}( at column {}", start + 1);
        let r = match name {
            "exists" => Restriction::Exist { tag: self.tag()? },
            // The only form that goes on after its parenthesis: `size(PR_X) > 10`.
            "size" => {
                let tag = self.tag()?;
                self.expect(")", close)?;
                let Some((relop, op)) = self.relop() else {
                    return Err(self.error_here("a comparison after size(…): == != < <= > >="));
                };
                let expected = format!("a size in bytes after '{op}'");
                self.ws();
                if self.peek() == Some('-') {
                    return Err(self.error_here(expected));
                }
                let size = self.integer(32, false, &expected)?;
                return Ok(Restriction::Size {
                    relop,
                    tag,
                    size: size as u32,
                });
            }
            "recipients" | "attachments" => Restriction::SubRestriction {
                object: if name == "recipients" {
                    tag::PR_MESSAGE_RECIPIENTS
                } else {
                    tag::PR_MESSAGE_ATTACHMENTS
                },
                restriction: Box::new(self.or()?),
            },
            "sub" => {
                let object = self.tag()?;
                self.expect(",", "',' after the sub-object tag")?;
                Restriction::SubRestriction {
                    object,
                    restriction: Box::new(self.or()?),
                }
            }
            "all" | "any" => {
                let mut items = Vec::new();
                self.ws();
                if self.peek() != Some(')') {
                    items.push(self.or()?);
                    while self.eat(",") {
                        items.push(self.or()?);
                    }
                }
                if name == "all" {
                    Restriction::And(items)
                } else {
                    Restriction::Or(items)
                }
            }
            "comment" => self.comment_body()?,
            "content" => {
                let tag = self.tag()?;
                self.expect(",", "',' after the tag")?;
                let fuzzy = self.integer(32, true, "a fuzzy level such as 0x10001")? as u32;
                self.expect(",", "',' after the fuzzy level")?;
                let (value, flags) = self.value(tag, "the fuzzy level")?;
                if let Some(flags) = flags {
                    return Err(
                        self.flags_not_here(&flags, "content(…) takes the level as a number")
                    );
                }
                Restriction::Content {
                    fuzzy: FuzzyLevel(fuzzy),
                    tag,
                    value,
                }
            }
            _ => {
                return Err(self.error_at(
                    start,
                    format!("'{name}('"),
                    format!("a property tag or a function: {FUNCTIONS}"),
                ));
            }
        };
        self.expect(")", close)?;
        Ok(r)
    }

    // comment(prop ("," prop)* [";" or]) | comment(";" or) | comment()
    fn comment_body(&mut self) -> PResult<Restriction> {
        let mut props = Vec::new();
        self.ws();
        if self.peek() != Some(')') && self.peek() != Some(';') {
            loop {
                let tag = self.tag()?;
                self.ws();
                if self.looking_at("==") || !self.eat("=") {
                    return Err(self.error_here(format!("'=' after {}", tag_text(tag))));
                }
                let (value, flags) = self.value(tag, "'='")?;
                if let Some(flags) = flags {
                    return Err(self.flags_not_here(&flags, "comment properties take plain values"));
                }
                props.push(Prop::new(tag, value));
                if !self.eat(",") {
                    break;
                }
            }
        }
        let restriction = if self.eat(";") {
            Some(Box::new(self.or()?))
        } else {
            None
        };
        Ok(Restriction::Comment { props, restriction })
    }

    /// A tag: a name, a number (`0x…`), or `tag(0x…)`.
    fn tag(&mut self) -> PResult<PropTag> {
        self.ws();
        if self.peek_function().as_deref() == Some("tag") {
            let start = self.pos;
            self.run(is_ident_char);
            self.expect("(", "'('")?;
            let tag = self.tag()?;
            self.expect(")", format!("')' to close tag( at column {}", start + 1))?;
            return Ok(tag);
        }
        let (start, word) = self.run(is_ident_char);
        if word.is_empty() {
            self.pos = start;
            return Err(self.error_here(
                "a property tag: a name such as PR_SUBJECT or a number such as 0x0037001F",
            ));
        }
        if let Some(tag) = PropTag::parse(&word) {
            return Ok(tag);
        }
        let expected = if word.starts_with(|c: char| c.is_ascii_digit()) {
            "a property tag number: 0x and eight hex digits, such as 0x0037001F".to_string()
        } else {
            match closest(&word, PropTag::known().map(|(n, _)| n)) {
                Some(close) => format!("a property tag (did you mean {close}?)"),
                None => "a property tag: a name such as PR_SUBJECT or a number such as \
                         0x0037001F"
                    .to_string(),
            }
        };
        Err(self.error_at(start, format!("unknown tag '{word}'"), expected))
    }

    /// `== != <= >= < >`, with its text.
    fn relop(&mut self) -> Option<(RelOp, &'static str)> {
        self.ws();
        const OPS: [(&str, RelOp); 6] = [
            ("==", RelOp::Eq),
            ("!=", RelOp::Ne),
            ("<=", RelOp::Le),
            (">=", RelOp::Ge),
            ("<", RelOp::Lt),
            (">", RelOp::Gt),
        ];
        for (text, relop) in OPS {
            if self.looking_at(text) && !(text == "==" && self.looking_at("===")) {
                self.pos += text.chars().count();
                return Some((relop, text));
            }
        }
        None
    }

    /// What follows a tag at the start of a restriction.
    fn condition(&mut self, tag: PropTag, tag_pos: usize) -> PResult<Restriction> {
        self.ws();
        let op_pos = self.pos;
        let content_level = if self.looking_at("===") {
            Some(("===", FuzzyLevel::FULLSTRING))
        } else if self.looking_at("~=") {
            Some(("~=", FuzzyLevel::SUBSTRING))
        } else if self.looking_at("^=") {
            Some(("^=", FuzzyLevel::PREFIX))
        } else {
            None
        };
        if let Some((op, level)) = content_level {
            self.pos += op.chars().count();
            return self.content(tag, op, op_pos, level);
        }
        if self.looking_at("=~") {
            self.pos += 2;
            return self.regex(tag, "=~", op_pos);
        }
        if self.looking_at("&") && !self.looking_at("&&") {
            self.pos += 1;
            return self.bitmask(tag, tag_pos);
        }
        if let Some((relop, op)) = self.relop() {
            return self.comparison(tag, relop, op, op_pos);
        }
        let save = self.pos;
        if self.run(is_ident_char).1 == "matches" {
            return self.regex(tag, "matches", op_pos);
        }
        self.pos = save;
        Err(self.error_here(format!(
            "an operator after {}: == != < <= > >= =~ ~= ^= === or &",
            tag_text(tag)
        )))
    }

    fn content(
        &mut self,
        tag: PropTag,
        op: &str,
        op_pos: usize,
        level: u32,
    ) -> PResult<Restriction> {
        if !matches!(
            tag.prop_type(),
            Some(PropType::Unicode | PropType::String8 | PropType::Binary)
        ) {
            return Err(self.error_at(
                op_pos,
                format!("'{op}'"),
                format!(
                    "an operator for {} ({}): '{op}' needs a string or binary property",
                    tag_text(tag),
                    type_name(tag)
                ),
            ));
        }
        let (value, flags) = self.value(tag, &format!("'{op}'"))?;
        Ok(Restriction::Content {
            fuzzy: FuzzyLevel(level | flags.map_or(0, |f| f.bits)),
            tag,
            value,
        })
    }

    fn regex(&mut self, tag: PropTag, op: &str, op_pos: usize) -> PResult<Restriction> {
        let string8 = match tag.prop_type() {
            Some(PropType::Unicode) => false,
            Some(PropType::String8) => true,
            _ => {
                return Err(self.error_at(
                    op_pos,
                    format!("'{op}'"),
                    format!(
                        "an operator for {} ({}): '{op}' needs a string property",
                        tag_text(tag),
                        type_name(tag)
                    ),
                ));
            }
        };
        self.ws();
        let pattern = match self.peek() {
            Some('/') => self.regex_literal()?,
            Some('"') => {
                let (s, flags) = self.string_literal()?;
                if let Some(flags) = flags {
                    return Err(self.flags_not_here(&flags, "use (?i) in the pattern"));
                }
                s
            }
            _ => {
                return Err(self.error_here(format!(
                    "a regular expression after '{op}': /pattern/ or \"pattern\""
                )));
            }
        };
        Ok(Restriction::Property {
            relop: RelOp::Re,
            tag,
            value: if string8 {
                PropValue::String8(pattern)
            } else {
                PropValue::Unicode(pattern)
            },
        })
    }

    fn bitmask(&mut self, tag: PropTag, tag_pos: usize) -> PResult<Restriction> {
        if tag.prop_type() != Some(PropType::Long) {
            return Err(self.error_at(
                tag_pos,
                format!("'{}'", tag_text(tag)),
                format!(
                    "a PT_LONG property before '&': {} is {}",
                    tag_text(tag),
                    type_name(tag)
                ),
            ));
        }
        let mask = self.integer(32, true, "a mask after '&': an integer or constant names")?;
        let mut op = BitmaskOp::Nez;
        if let Some((relop, text)) = self.relop() {
            op = match relop {
                RelOp::Eq => BitmaskOp::Eqz,
                RelOp::Ne => BitmaskOp::Nez,
                _ => {
                    return Err(self.error_at(
                        self.pos - text.chars().count(),
                        format!("'{text}'"),
                        "'== 0' or '!= 0' after a mask",
                    ));
                }
            };
            self.ws();
            let (zero_pos, zero) = self.run(is_word_char);
            if parse_int_literal(&zero) != Some(0) {
                return Err(self.error_at(
                    zero_pos,
                    self.describe(zero_pos),
                    format!("0 after '{text}' (a mask compares with zero)"),
                ));
            }
        }
        Ok(Restriction::Bitmask {
            op,
            tag,
            mask: mask as u32,
        })
    }

    fn comparison(
        &mut self,
        tag: PropTag,
        relop: RelOp,
        op: &str,
        op_pos: usize,
    ) -> PResult<Restriction> {
        self.ws();
        let value_pos = self.pos;
        if self.tag_ahead() {
            let tag2 = self.tag()?;
            if tag2.prop_type() != tag.prop_type() {
                return Err(self.error_at(
                    value_pos,
                    format!("'{}' ({})", tag_text(tag2), type_name(tag2)),
                    format!(
                        "a tag of {}'s type {} to compare with",
                        tag_text(tag),
                        type_name(tag)
                    ),
                ));
            }
            return Ok(Restriction::CompareProps {
                relop,
                tag1: tag,
                tag2,
            });
        }
        let (value, flags) = self.value(tag, &format!("'{op}'"))?;
        match flags {
            None => Ok(Restriction::Property { relop, tag, value }),
            Some(flags) if relop == RelOp::Eq => Ok(Restriction::Content {
                fuzzy: FuzzyLevel(FuzzyLevel::FULLSTRING | flags.bits),
                tag,
                value,
            }),
            Some(flags) => {
                let _ = op_pos;
                Err(self.flags_not_here(&flags, "flags go with ==, ===, ~= or ^="))
            }
        }
    }

    /// Whether a tag (a known name or `tag(…)`) comes next on the right of an operator.
    fn tag_ahead(&mut self) -> bool {
        if self.peek_function().as_deref() == Some("tag") {
            return true;
        }
        let save = self.pos;
        let (_, word) = self.run(is_ident_char);
        self.pos = save;
        word.starts_with(is_ident_start) && PropTag::parse(&word).is_some()
    }

    fn flags_not_here(&self, flags: &Flags, why: &str) -> ParseError {
        self.error_at(
            flags.column - 1,
            "content flags".into(),
            format!("no flags here: {why}"),
        )
    }

    /// A value of `tag`'s type; `after` names what it follows, for messages. Flags come back
    /// when a string or binary literal carries them.
    fn value(&mut self, tag: PropTag, after: &str) -> PResult<(PropValue, Option<Flags>)> {
        self.ws();
        let start = self.pos;
        let Some(ty) = tag.prop_type() else {
            return Err(self.error_at(
                start,
                self.describe(start),
                format!(
                    "no value: {} has type 0x{:04X}, which MAPI does not define",
                    tag_text(tag),
                    tag.type_code()
                ),
            ));
        };
        let hint = type_hint(ty);
        let expected = format!(
            "a value after {after}: {hint} for {} ({})",
            tag_text(tag),
            ty.name()
        );
        let plain = |v: PropValue| Ok((v, None));
        match ty {
            PropType::I2 => plain(PropValue::I2(
                self.integer(16, true, &expected)? as u16 as i16
            )),
            PropType::Long => plain(PropValue::Long(
                self.integer(32, true, &expected)? as u32 as i32
            )),
            PropType::I8 => plain(PropValue::I8(self.integer(64, true, &expected)? as i64)),
            PropType::R4 | PropType::Double | PropType::AppTime => {
                let (pos, word) = self.run(is_word_char);
                let parsed = word.parse::<f64>().ok().filter(|_| !word.is_empty());
                match (ty, parsed) {
                    (PropType::R4, Some(_)) => match word.parse::<f32>() {
                        Ok(x) => plain(PropValue::R4(x)),
                        Err(_) => Err(self.error_at(pos, self.describe(pos), expected)),
                    },
                    (PropType::Double, Some(x)) => plain(PropValue::Double(x)),
                    (PropType::AppTime, Some(x)) => plain(PropValue::AppTime(x)),
                    _ => Err(self.error_at(pos, self.describe(pos), expected)),
                }
            }
            PropType::Currency => {
                let (pos, word) = self.run(is_word_char);
                match parse_currency(&word) {
                    Some(v) => plain(PropValue::Currency(v)),
                    None => Err(self.error_at(pos, self.describe(pos), expected)),
                }
            }
            PropType::Boolean => {
                let (pos, word) = self.run(is_ident_char);
                match word.as_str() {
                    "true" => plain(PropValue::Boolean(true)),
                    "false" => plain(PropValue::Boolean(false)),
                    _ => Err(self.error_at(pos, self.describe(pos), expected)),
                }
            }
            PropType::Unicode | PropType::String8 => {
                if self.peek() != Some('"') {
                    return Err(self.error_here(expected));
                }
                let (s, flags) = self.string_literal()?;
                let v = if ty == PropType::Unicode {
                    PropValue::Unicode(s)
                } else {
                    PropValue::String8(s)
                };
                Ok((v, flags))
            }
            PropType::SysTime => {
                let (pos, word) = self.run(is_word_char);
                let time = if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
                    word.parse::<u64>().ok().map(FileTime)
                } else {
                    FileTime::parse_rfc3339(&word)
                };
                match time {
                    Some(t) => plain(PropValue::SysTime(t)),
                    None => Err(self.error_at(pos, self.describe(pos), expected)),
                }
            }
            PropType::Binary | PropType::Clsid => {
                if !(self.looking_at("x'") || self.looking_at("X'")) {
                    return Err(self.error_here(expected));
                }
                let (bytes, flags) = self.hex_literal()?;
                if ty == PropType::Binary {
                    return Ok((PropValue::Binary(bytes), flags));
                }
                match <[u8; 16]>::try_from(bytes.as_slice()) {
                    Ok(id) if flags.is_none() => plain(PropValue::Clsid(id)),
                    _ => Err(self.error_at(start, self.describe(start), expected)),
                }
            }
            PropType::Unspecified | PropType::Null | PropType::Error | PropType::Object => {
                Err(self.error_at(start, self.describe(start), expected))
            }
        }
    }

    /// An integer of `width` bits: literals, constant names (when `names`), joined by `|`.
    /// Each part may be in the signed or the unsigned range of the width; the result is the
    /// bit pattern.
    fn integer(&mut self, width: u32, names: bool, expected: &str) -> PResult<u64> {
        let mask: u128 = (1u128 << width) - 1;
        let min = -(1i128 << (width - 1));
        let max = mask as i128;
        let mut bits: u64 = 0;
        loop {
            let (pos, word) = self.run(is_word_char);
            let value = if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
                parse_int_literal(&word)
                    .ok_or_else(|| self.error_at(pos, self.describe(pos), expected))?
            } else if names && !word.is_empty() && word.chars().all(is_ident_char) {
                match constants::lookup(&word) {
                    Some(v) => i128::from(v),
                    None => {
                        let names = constants::CONSTANT_SETS
                            .iter()
                            .flat_map(|s| s.entries.iter().map(|(n, _)| *n))
                            .chain(PropTag::known().map(|(n, _)| n));
                        let expected = match closest(&word, names) {
                            Some(close) => format!("{expected} (did you mean {close}?)"),
                            None => expected.to_string(),
                        };
                        return Err(self.error_at(pos, format!("unknown name '{word}'"), expected));
                    }
                }
            } else {
                return Err(self.error_at(pos, self.describe(pos), expected));
            };
            if value < min || value > max {
                return Err(self.error_at(
                    pos,
                    format!("'{word}'"),
                    format!("an integer that fits {width} bits ({min} to {max})"),
                ));
            }
            bits |= (value as u128 & mask) as u64;
            self.ws();
            if self.looking_at("|") && !self.looking_at("||") {
                self.pos += 1;
            } else {
                return Ok(bits);
            }
        }
    }

    /// `"…"` with escapes, then optional content flags right after the closing quote.
    fn string_literal(&mut self) -> PResult<(String, Option<Flags>)> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.error_at(
                        self.pos,
                        "end of input".into(),
                        format!("'\"' to close the string opened at column {}", open + 1),
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    break;
                }
                Some('\\') => {
                    let esc = self.pos;
                    self.pos += 1;
                    let c = match self.peek() {
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('0') => '\0',
                        Some('u') if self.chars.get(self.pos + 1) == Some(&'{') => {
                            self.pos += 2;
                            let digits_start = self.pos;
                            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                self.pos += 1;
                            }
                            let digits: String =
                                self.chars[digits_start..self.pos].iter().collect();
                            let c = u32::from_str_radix(&digits, 16)
                                .ok()
                                .filter(|_| digits.len() <= 6)
                                .and_then(char::from_u32);
                            match (c, self.peek()) {
                                (Some(c), Some('}')) => c,
                                _ => {
                                    return Err(self.error_at(
                                        esc,
                                        "a bad \\u{…} escape".into(),
                                        "a Unicode scalar value in hex, such as \\u{E9}",
                                    ));
                                }
                            }
                        }
                        _ => {
                            return Err(self.error_at(
                                esc,
                                format!(
                                    "'\\{}'",
                                    self.peek().map(String::from).unwrap_or_default()
                                ),
                                "an escape: \\\\ \\\" \\n \\r \\t \\0 or \\u{…}",
                            ));
                        }
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(c) => {
                    self.pos += 1;
                    out.push(c);
                }
            }
        }
        Ok((out, self.flags()?))
    }

    /// `/…/`: backslashes stay (they are the regex's), except that `\/` is a slash.
    fn regex_literal(&mut self) -> PResult<String> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.error_at(
                        self.pos,
                        "end of input".into(),
                        format!("'/' to close the pattern opened at column {}", open + 1),
                    ));
                }
                Some('/') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => match self.chars.get(self.pos + 1) {
                    Some('/') => {
                        out.push('/');
                        self.pos += 2;
                    }
                    Some(c) => {
                        out.push('\\');
                        out.push(*c);
                        self.pos += 2;
                    }
                    None => self.pos += 1,
                },
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `x'00AB'`, then optional content flags.
    fn hex_literal(&mut self) -> PResult<(Vec<u8>, Option<Flags>)> {
        let open = self.pos;
        self.pos += 2;
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        if self.peek() != Some('\'') {
            return Err(self.error_at(
                self.pos,
                self.describe(self.pos),
                format!(
                    "hex digits and a closing ' for the bytes opened at column {}",
                    open + 1
                ),
            ));
        }
        let digits: String = self.chars[start..self.pos].iter().collect();
        let Some(bytes) = value::parse_hex(&digits) else {
            return Err(self.error_at(
                open,
                format!("{} hex digits", digits.len()),
                "an even number of hex digits (two per byte)",
            ));
        };
        self.pos += 1;
        Ok((bytes, self.flags()?))
    }

    /// Content flags right after a literal: `i` (IGNORECASE), `n` (IGNORENONSPACE), `l` (LOOSE).
    fn flags(&mut self) -> PResult<Option<Flags>> {
        let column = self.pos + 1;
        let mut bits = 0;
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric()) {
            bits |= match c {
                'i' => FuzzyLevel::IGNORECASE,
                'n' => FuzzyLevel::IGNORENONSPACE,
                'l' => FuzzyLevel::LOOSE,
                _ => {
                    return Err(self.error_at(
                        self.pos,
                        format!("'{c}'"),
                        "content flags: i (ignore case), n (ignore diacritics), l (loose)",
                    ));
                }
            };
            self.pos += 1;
        }
        Ok((column <= self.pos).then_some(Flags { column, bits }))
    }
}

/// `-12`, `0x1F`, `-0x10` as an integer wide enough for any range check.
fn parse_int_literal(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        // `from_str_radix` would take a sign; only digits are a literal.
        if hex.is_empty() || hex.len() > 30 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        i128::from_str_radix(hex, 16).ok()?
    } else {
        if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i128>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// `12.34` → 123400: `PT_CURRENCY` is an integer count of ten-thousandths.
fn parse_currency(text: &str) -> Option<i64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(whole, 20) || !digits(frac, 4) {
        return None;
    }
    let frac_value = format!("{frac:0<4}").parse::<i128>().ok()?;
    let magnitude = whole.parse::<i128>().ok()? * 10_000 + frac_value;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// What a value of each type looks like, for messages.
fn type_hint(ty: PropType) -> &'static str {
    match ty {
        PropType::I2 | PropType::Long | PropType::I8 => "an integer or a constant name",
        PropType::R4 | PropType::Double | PropType::AppTime => "a number",
        PropType::Currency => "a decimal number with up to four decimals",
        PropType::Boolean => "true or false",
        PropType::Unicode | PropType::String8 => "a string in double quotes",
        PropType::SysTime => "a time such as 2026-11-25T17:00:00Z",
        PropType::Binary => "bytes in hex such as x'00AB'",
        PropType::Clsid => "16 bytes in hex such as x'00112233445566778899AABBCCDDEEFF'",
        PropType::Unspecified | PropType::Null | PropType::Error | PropType::Object => {
            "nothing: this type has no written values"
        }
    }
}

fn type_name(tag: PropTag) -> String {
    match tag.prop_type() {
        Some(t) => t.name().to_string(),
        None => format!("type 0x{:04X}", tag.type_code()),
    }
}

/// The candidate closest to `name` by edit distance (case-insensitive), if close enough to be
/// a likely typo.
fn closest<'n>(name: &str, candidates: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    let upper: Vec<char> = name.to_ascii_uppercase().chars().collect();
    candidates
        .map(|c| (edit_distance(&upper, &c.chars().collect::<Vec<_>>()), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Printing

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_restriction(&mut out, self);
        f.write_str(&out)
    }
}

/// An and/or written with its infix operator, which needs parentheses as an operand.
fn is_infix(r: &Restriction) -> bool {
    matches!(r, Restriction::And(v) | Restriction::Or(v) if v.len() >= 2)
}

fn write_operand(out: &mut String, r: &Restriction) {
    if is_infix(r) {
        out.push('(');
        write_restriction(out, r);
        out.push(')');
    } else {
        write_restriction(out, r);
    }
}

fn write_list(out: &mut String, items: &[Restriction]) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_restriction(out, item);
    }
}

fn write_restriction(out: &mut String, r: &Restriction) {
    match r {
        Restriction::And(items) | Restriction::Or(items) => {
            let and = matches!(r, Restriction::And(_));
            match items.len() {
                0 => out.push_str(if and { "true" } else { "false" }),
                1 => {
                    out.push_str(if and { "all(" } else { "any(" });
                    write_list(out, items);
                    out.push(')');
                }
                _ => {
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(if and { " && " } else { " || " });
                        }
                        // An `a && b` inside an or needs no parentheses (precedence), but an
                        // or inside an or does, to keep the tree's shape.
                        if and || matches!(item, Restriction::Or(_)) {
                            write_operand(out, item);
                        } else {
                            write_restriction(out, item);
                        }
                    }
                }
            }
        }
        Restriction::Not(inner) => {
            out.push('!');
            write_operand(out, inner);
        }
        Restriction::Content { fuzzy, tag, value } => {
            let op = match fuzzy.0 & 0xFFFF {
                FuzzyLevel::FULLSTRING => Some("==="),
                FuzzyLevel::SUBSTRING => Some("~="),
                FuzzyLevel::PREFIX => Some("^="),
                _ => None,
            };
            let flags = fuzzy_flags(fuzzy.0 & !0xFFFF);
            let literal = matches!(
                value,
                PropValue::Unicode(_) | PropValue::String8(_) | PropValue::Binary(_)
            );
            match (op, flags) {
                (Some(op), Some(flags)) if literal => {
                    out.push_str(&format!(
                        "{} {op} {}{flags}",
                        tag_text(*tag),
                        value_text(*tag, value)
                    ));
                }
                _ => out.push_str(&format!(
                    "content({}, 0x{:X}, {})",
                    tag_text(*tag),
                    fuzzy.0,
                    value_text(*tag, value)
                )),
            }
        }
        Restriction::Property { relop, tag, value } => {
            if *relop == RelOp::Re {
                let pattern = value.as_str().unwrap_or_default();
                let slash_safe = !pattern.contains('/')
                    && !pattern.ends_with('\\')
                    && !pattern.chars().any(char::is_control);
                if value.as_str().is_some() && slash_safe {
                    out.push_str(&format!("{} =~ /{pattern}/", tag_text(*tag)));
                } else {
                    out.push_str(&format!(
                        "{} matches {}",
                        tag_text(*tag),
                        value_text(*tag, value)
                    ));
                }
            } else {
                out.push_str(&format!(
                    "{} {} {}",
                    tag_text(*tag),
                    relop_text(*relop),
                    value_text(*tag, value)
                ));
            }
        }
        Restriction::CompareProps { relop, tag1, tag2 } => out.push_str(&format!(
            "{} {} {}",
            tag_text(*tag1),
            relop_text(*relop),
            value_tag_text(*tag2)
        )),
        Restriction::Bitmask { op, tag, mask } => {
            out.push_str(&format!("{} & {}", tag_text(*tag), mask_text(*tag, *mask)));
            if *op == BitmaskOp::Eqz {
                out.push_str(" == 0");
            }
        }
        Restriction::Size { relop, tag, size } => out.push_str(&format!(
            "size({}) {} {size}",
            tag_text(*tag),
            relop_text(*relop)
        )),
        Restriction::Exist { tag } => out.push_str(&format!("exists({})", tag_text(*tag))),
        Restriction::SubRestriction {
            object,
            restriction,
        } => {
            if *object == tag::PR_MESSAGE_RECIPIENTS {
                out.push_str("recipients(");
            } else if *object == tag::PR_MESSAGE_ATTACHMENTS {
                out.push_str("attachments(");
            } else {
                out.push_str(&format!("sub({}, ", tag_text(*object)));
            }
            write_restriction(out, restriction);
            out.push(')');
        }
        Restriction::Comment { props, restriction } => {
            if let ([prop], Some(inner)) = (props.as_slice(), restriction)
                && prop.tag == PR_COMMENT
                && let PropValue::Unicode(text) = &prop.value
                && !text.contains("*/")
            {
                out.push_str(&format!("/* {text} */ "));
                write_operand(out, inner);
                return;
            }
            out.push_str("comment(");
            for (i, prop) in props.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&format!(
                    "{} = {}",
                    tag_text(prop.tag),
                    value_text(prop.tag, &prop.value)
                ));
            }
            if let Some(inner) = restriction {
                out.push_str("; ");
                write_restriction(out, inner);
            }
            out.push(')');
        }
    }
}

/// `i`, `n`, `l` for the flag bits, or `None` for bits with no letter.
fn fuzzy_flags(bits: u32) -> Option<String> {
    let mut letters = String::new();
    let mut rest = bits;
    for (bit, letter) in [
        (FuzzyLevel::IGNORECASE, 'i'),
        (FuzzyLevel::IGNORENONSPACE, 'n'),
        (FuzzyLevel::LOOSE, 'l'),
    ] {
        if rest & bit != 0 {
            letters.push(letter);
            rest &= !bit;
        }
    }
    (rest == 0).then_some(letters)
}

fn relop_text(relop: RelOp) -> &'static str {
    match relop {
        RelOp::Lt => "<",
        RelOp::Le => "<=",
        RelOp::Gt => ">",
        RelOp::Ge => ">=",
        RelOp::Eq => "==",
        RelOp::Ne => "!=",
        RelOp::Re => "=~",
    }
}

/// A tag where only a tag can stand: its name, or its number.
fn tag_text(tag: PropTag) -> String {
    tag.to_string()
}

/// A tag on the right of an operator, where a bare number would read as a value.
fn value_tag_text(tag: PropTag) -> String {
    match tag.name() {
        Some(name) => name.to_string(),
        None => format!("tag(0x{:08X})", tag.0),
    }
}

/// Bits by constant name (full names, so they parse back) plus a hex remainder; `None` when
/// `tag` has no bit set or `bits` is zero.
fn bits_names(tag: PropTag, bits: u64) -> Option<String> {
    let set = constants::set_for(tag).filter(|s| s.kind == ConstantKind::Bits)?;
    if bits == 0 {
        return None;
    }
    let mut rest = bits;
    let mut parts = Vec::new();
    for (name, bit) in set.entries {
        let bit = *bit as u64;
        if bit != 0 && rest & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("0x{rest:X}"));
    }
    Some(parts.join("|"))
}

fn int_text(tag: PropTag, value: i64, width: u32) -> String {
    if let Some(name) = constants::name_of(tag, value) {
        return name.to_string();
    }
    let bits = (value as u64) & (u64::MAX >> (64 - width));
    bits_names(tag, bits).unwrap_or_else(|| value.to_string())
}

fn mask_text(tag: PropTag, mask: u32) -> String {
    match bits_names(tag, u64::from(mask)) {
        Some(names) => names,
        None if mask == 0 => "0".into(),
        None => format!("0x{mask:X}"),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:X}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn time_text(t: FileTime) -> String {
    // Times print as RFC 3339 from 1970 (humantime's start) to July 2554, where
    // `FileTime::to_system_time` stops being exact (its nanoseconds leave `u64`); outside,
    // the ticks themselves.
    let first = FileTime::from_unix_seconds(0).0;
    let end = first + u64::MAX / 100;
    if (first..end).contains(&t.0) {
        t.to_rfc3339()
    } else {
        t.0.to_string()
    }
}

fn value_text(tag: PropTag, value: &PropValue) -> String {
    use PropValue as V;
    match value {
        V::I2(v) => int_text(tag, i64::from(*v), 16),
        V::Long(v) => int_text(tag, i64::from(*v), 32),
        V::I8(v) => int_text(tag, *v, 64),
        // Rust prints floats with the fewest digits that read back to the same value.
        V::R4(v) => v.to_string(),
        V::Double(v) | V::AppTime(v) => v.to_string(),
        V::Currency(v) => {
            let sign = if *v < 0 { "-" } else { "" };
            let a = v.unsigned_abs();
            format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
        }
        V::Boolean(b) => b.to_string(),
        V::String8(s) | V::Unicode(s) => escape(s),
        V::SysTime(t) => time_text(*t),
        V::Clsid(b) => format!("x'{}'", value::hex(b)),
        V::Binary(b) => format!("x'{}'", value::hex(b)),
        // No text form parses to these; they print so that a tree can always be shown.
        V::Null => "null".into(),
        V::Error(code) => format!("error({code})"),
        V::Object => "object".into(),
        multi => {
            let items: Vec<String> = multi
                .elements()
                .unwrap_or_default()
                .iter()
                .map(|v| value_text(tag.single_valued(), v))
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::*;
    use proptest::prelude::*;

    fn p(text: &str) -> Restriction {
        match parse(text) {
            Ok(r) => r,
            Err(e) => panic!("{}", e.caret()),
        }
    }

    fn err(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    fn property(relop: RelOp, tag: PropTag, value: PropValue) -> Restriction {
        Restriction::Property { relop, tag, value }
    }

    fn unicode(s: &str) -> PropValue {
        PropValue::Unicode(s.into())
    }

    /// Parses, checks the tree, and checks that printing gives `printed` and parses back.
    fn check(text: &str, tree: Restriction, printed: &str) {
        assert_eq!(p(text), tree, "{text}");
        assert_eq!(tree.to_string(), printed);
        assert_eq!(p(printed), tree, "{printed}");
    }

    #[test]
    fn the_briefs_examples() {
        check(
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER && PR_RESOURCE_METHODS & STATUS_FLUSH_QUEUES",
            Restriction::And(vec![
                property(RelOp::Eq, PR_RESOURCE_TYPE, PropValue::Long(36)),
                Restriction::Bitmask {
                    op: BitmaskOp::Nez,
                    tag: PR_RESOURCE_METHODS,
                    mask: 8,
                },
            ]),
            "PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER && PR_RESOURCE_METHODS & STATUS_FLUSH_QUEUES",
        );
        check(
            r#"PR_DISPLAY_NAME ~= "work"i"#,
            Restriction::Content {
                fuzzy: FuzzyLevel(FuzzyLevel::SUBSTRING | FuzzyLevel::IGNORECASE),
                tag: PR_DISPLAY_NAME,
                value: unicode("work"),
            },
            r#"PR_DISPLAY_NAME ~= "work"i"#,
        );
    }

    #[test]
    fn relops_and_values_of_each_type() {
        for (op, relop) in [
            ("<", RelOp::Lt),
            ("<=", RelOp::Le),
            (">", RelOp::Gt),
            (">=", RelOp::Ge),
            ("==", RelOp::Eq),
            ("!=", RelOp::Ne),
        ] {
            let text = format!("PR_PRIORITY {op} -2");
            check(
                &text,
                property(relop, PR_PRIORITY, PropValue::Long(-2)),
                &text,
            );
        }
        check(
            "pr_priority==0xFFFFFFFF",
            property(RelOp::Eq, PR_PRIORITY, PropValue::Long(-1)),
            "PR_PRIORITY == -1",
        );
        check(
            "PR_REMOTE_VALIDATE_OK == true",
            property(RelOp::Eq, PR_REMOTE_VALIDATE_OK, PropValue::Boolean(true)),
            "PR_REMOTE_VALIDATE_OK == true",
        );
        check(
            r#"PR_SUBJECT_A != "a \"q\" \\ \n \u{E9}""#,
            property(
                RelOp::Ne,
                PR_SUBJECT_A,
                PropValue::String8("a \"q\" \\ \n é".into()),
            ),
            r#"PR_SUBJECT_A != "a \"q\" \\ \n é""#,
        );
        let t = FileTime::parse_rfc3339("2026-11-25T17:00:00Z").expect("time");
        check(
            "PR_CLIENT_SUBMIT_TIME >= 2026-11-25T17:00:00Z",
            property(RelOp::Ge, PR_CLIENT_SUBMIT_TIME, PropValue::SysTime(t)),
            "PR_CLIENT_SUBMIT_TIME >= 2026-11-25T17:00:00Z",
        );
        check(
            "PR_CLIENT_SUBMIT_TIME < 0",
            property(
                RelOp::Lt,
                PR_CLIENT_SUBMIT_TIME,
                PropValue::SysTime(FileTime(0)),
            ),
            "PR_CLIENT_SUBMIT_TIME < 0",
        );
        check(
            "PR_ENTRYID == x'00ab'",
            property(RelOp::Eq, PR_ENTRYID, PropValue::Binary(vec![0, 0xAB])),
            "PR_ENTRYID == x'00AB'",
        );
        check(
            "0x66000014 > -0x10",
            property(RelOp::Gt, PropTag(0x6600_0014), PropValue::I8(-16)),
            "0x66000014 > -16",
        );
        check(
            "0x66000006 == -1.5",
            property(
                RelOp::Eq,
                PropTag(0x6600_0006),
                PropValue::Currency(-15_000),
            ),
            "0x66000006 == -1.5000",
        );
        check(
            "0x66000005 <= 2.5",
            property(RelOp::Le, PropTag(0x6600_0005), PropValue::Double(2.5)),
            "0x66000005 <= 2.5",
        );
        check(
            "PR_STATUS_CODE == STATUS_AVAILABLE|STATUS_OUTBOUND_ENABLED",
            property(RelOp::Eq, PR_STATUS_CODE, PropValue::Long(0x10_0001)),
            "PR_STATUS_CODE == STATUS_AVAILABLE|STATUS_OUTBOUND_ENABLED",
        );
    }

    #[test]
    fn content_regex_bitmask_size_exist_compare() {
        let content = |level, tag, v: &str| Restriction::Content {
            fuzzy: FuzzyLevel(level),
            tag,
            value: unicode(v),
        };
        check(
            r#"PR_SUBJECT ^= "Re:""#,
            content(FuzzyLevel::PREFIX, PR_SUBJECT, "Re:"),
            r#"PR_SUBJECT ^= "Re:""#,
        );
        check(
            r#"PR_SUBJECT === "x""#,
            content(FuzzyLevel::FULLSTRING, PR_SUBJECT, "x"),
            r#"PR_SUBJECT === "x""#,
        );
        check(
            r#"PR_SUBJECT == "x"in"#,
            content(
                FuzzyLevel::IGNORECASE | FuzzyLevel::IGNORENONSPACE,
                PR_SUBJECT,
                "x",
            ),
            r#"PR_SUBJECT === "x"in"#,
        );
        check(
            r#"PR_SUBJECT ~= "x"l"#,
            content(FuzzyLevel::SUBSTRING | FuzzyLevel::LOOSE, PR_SUBJECT, "x"),
            r#"PR_SUBJECT ~= "x"l"#,
        );
        check(
            r#"content(PR_SUBJECT, 0x5, "x")"#,
            content(5, PR_SUBJECT, "x"),
            r#"content(PR_SUBJECT, 0x5, "x")"#,
        );
        check(
            r#"PR_SUBJECT =~ /^\d+ \/ x$/"#,
            property(RelOp::Re, PR_SUBJECT, unicode(r"^\d+ / x$")),
            r#"PR_SUBJECT matches "^\\d+ / x$""#,
        );
        check(
            r#"PR_SUBJECT matches "^a.c""#,
            property(RelOp::Re, PR_SUBJECT, unicode("^a.c")),
            "PR_SUBJECT =~ /^a.c/",
        );
        check(
            "PR_STATUS_CODE & STATUS_OFFLINE|0x100 == 0",
            Restriction::Bitmask {
                op: BitmaskOp::Eqz,
                tag: PR_STATUS_CODE,
                mask: 0x102,
            },
            "PR_STATUS_CODE & STATUS_OFFLINE|0x100 == 0",
        );
        check(
            "PR_PRIORITY & 3 != 0",
            Restriction::Bitmask {
                op: BitmaskOp::Nez,
                tag: PR_PRIORITY,
                mask: 3,
            },
            "PR_PRIORITY & 0x3",
        );
        check(
            "size(PR_SUBJECT) > 10",
            Restriction::Size {
                relop: RelOp::Gt,
                tag: PR_SUBJECT,
                size: 10,
            },
            "size(PR_SUBJECT) > 10",
        );
        check(
            "exists(PR_SUBJECT)",
            Restriction::Exist { tag: PR_SUBJECT },
            "exists(PR_SUBJECT)",
        );
        check(
            "PR_PRIORITY < PR_STATUS_CODE",
            Restriction::CompareProps {
                relop: RelOp::Lt,
                tag1: PR_PRIORITY,
                tag2: PR_STATUS_CODE,
            },
            "PR_PRIORITY < PR_STATUS_CODE",
        );
        check(
            "PR_SUBJECT == tag(0x6700001F)",
            Restriction::CompareProps {
                relop: RelOp::Eq,
                tag1: PR_SUBJECT,
                tag2: PropTag(0x6700_001F),
            },
            "PR_SUBJECT == tag(0x6700001F)",
        );
    }

    #[test]
    fn logic_sub_restrictions_and_comments() {
        let a = Restriction::Exist { tag: PR_SUBJECT };
        let b = Restriction::Exist { tag: PR_ENTRYID };
        let c = Restriction::Exist { tag: PR_PRIORITY };
        check(
            "exists(PR_SUBJECT) || exists(PR_ENTRYID) && !exists(PR_PRIORITY)",
            Restriction::Or(vec![
                a.clone(),
                Restriction::And(vec![b.clone(), Restriction::Not(Box::new(c.clone()))]),
            ]),
            "exists(PR_SUBJECT) || exists(PR_ENTRYID) && !exists(PR_PRIORITY)",
        );
        check(
            "(exists(PR_SUBJECT) || exists(PR_ENTRYID)) && exists(PR_PRIORITY)",
            Restriction::And(vec![Restriction::Or(vec![a.clone(), b.clone()]), c.clone()]),
            "(exists(PR_SUBJECT) || exists(PR_ENTRYID)) && exists(PR_PRIORITY)",
        );
        // Nesting is kept: parentheses are not flattened away.
        check(
            "exists(PR_SUBJECT) && (exists(PR_ENTRYID) && exists(PR_PRIORITY))",
            Restriction::And(vec![
                a.clone(),
                Restriction::And(vec![b.clone(), c.clone()]),
            ]),
            "exists(PR_SUBJECT) && (exists(PR_ENTRYID) && exists(PR_PRIORITY))",
        );
        check("true", Restriction::And(vec![]), "true");
        check("any()", Restriction::Or(vec![]), "false");
        check(
            "all(exists(PR_SUBJECT))",
            Restriction::And(vec![a.clone()]),
            "all(exists(PR_SUBJECT))",
        );
        check(
            "any(exists(PR_SUBJECT), exists(PR_ENTRYID))",
            Restriction::Or(vec![a.clone(), b.clone()]),
            "exists(PR_SUBJECT) || exists(PR_ENTRYID)",
        );
        check(
            "recipients(PR_RECIPIENT_TYPE == MAPI_BCC)",
            Restriction::SubRestriction {
                object: PR_MESSAGE_RECIPIENTS,
                restriction: Box::new(property(RelOp::Eq, PR_RECIPIENT_TYPE, PropValue::Long(3))),
            },
            "recipients(PR_RECIPIENT_TYPE == MAPI_BCC)",
        );
        check(
            "attachments(true)",
            Restriction::SubRestriction {
                object: PR_MESSAGE_ATTACHMENTS,
                restriction: Box::new(Restriction::And(vec![])),
            },
            "attachments(true)",
        );
        check(
            "/* outbound only */ exists(PR_SUBJECT) && exists(PR_ENTRYID)",
            Restriction::And(vec![
                Restriction::Comment {
                    props: vec![Prop::new(PR_COMMENT, unicode("outbound only"))],
                    restriction: Some(Box::new(a.clone())),
                },
                b.clone(),
            ]),
            "/* outbound only */ exists(PR_SUBJECT) && exists(PR_ENTRYID)",
        );
        check(
            r#"comment(PR_PRIORITY = 1, PR_SUBJECT = "x"; exists(PR_SUBJECT))"#,
            Restriction::Comment {
                props: vec![
                    Prop::new(PR_PRIORITY, PropValue::Long(1)),
                    Prop::new(PR_SUBJECT, unicode("x")),
                ],
                restriction: Some(Box::new(a.clone())),
            },
            r#"comment(PR_PRIORITY = 1, PR_SUBJECT = "x"; exists(PR_SUBJECT))"#,
        );
        check(
            "comment()",
            Restriction::Comment {
                props: vec![],
                restriction: None,
            },
            "comment()",
        );
        check(
            "comment(; true)",
            Restriction::Comment {
                props: vec![],
                restriction: Some(Box::new(Restriction::And(vec![]))),
            },
            "comment(; true)",
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = err("PR_PRIORITY ==");
        assert_eq!(e.column, 15);
        assert_eq!(e.found, "end of input");
        assert_eq!(
            e.caret(),
            "PR_PRIORITY ==\n              ^ expected a value after '==': an integer or a \
             constant name for PR_PRIORITY (PT_LONG), found end of input"
        );

        let e = err("PR_DISPLAY_NAM == \"x\"");
        assert_eq!(
            (e.column, e.found.as_str()),
            (1, "unknown tag 'PR_DISPLAY_NAM'")
        );
        assert_eq!(e.expected, "a property tag (did you mean PR_DISPLAY_NAME?)");

        let e = err("PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDR");
        assert_eq!(e.column, 21);
        assert!(
            e.expected
                .ends_with("(did you mean MAPI_TRANSPORT_PROVIDER?)"),
            "{}",
            e.expected
        );

        let e = err("PR_PRIORITY == \"high\"");
        assert_eq!((e.column, e.found.as_str()), (16, "a string"));
        assert!(e.expected.contains("(PT_LONG)"));

        let e = err("PR_SUBJECT == 5");
        assert_eq!(e.column, 15);
        assert_eq!(
            e.to_string(),
            "column 15: expected a value after '==': a string in double quotes for PR_SUBJECT \
             (PT_UNICODE), found '5'"
        );

        let e = err("PR_PRIORITY == 4294967296");
        assert_eq!((e.column, e.found.as_str()), (16, "'4294967296'"));

        let e = err("PR_SUBJECT & 1");
        assert_eq!(e.column, 1);
        assert!(e.expected.contains("PT_LONG"), "{}", e.expected);

        let e = err("PR_PRIORITY ~= \"x\"");
        assert_eq!((e.column, e.found.as_str()), (13, "'~='"));

        let e = err("PR_SUBJECT \"x\"");
        assert_eq!(e.column, 12);
        assert!(e.expected.starts_with("an operator after PR_SUBJECT"));

        let e = err("(exists(PR_SUBJECT)");
        assert_eq!((e.column, e.found.as_str()), (20, "end of input"));
        assert_eq!(e.expected, "')' to close the '(' at column 1");

        let e = err("exists(PR_SUBJECT) exists(PR_ENTRYID)");
        assert_eq!((e.column, e.found.as_str()), (20, "'exists'"));

        let e = err("PR_SUBJECT == \"abc");
        assert_eq!((e.column, e.found.as_str()), (19, "end of input"));
        assert_eq!(e.expected, "'\"' to close the string opened at column 15");

        let e = err("PR_SUBJECT == \"a\\qb\"");
        assert_eq!(e.column, 17);

        let e = err("PR_SUBJECT == \"x\"z");
        assert_eq!((e.column, e.found.as_str()), (18, "'z'"));

        let e = err("PR_SUBJECT < \"x\"i");
        assert_eq!(e.column, 17);

        let e = err("PR_PRIORITY == PR_SUBJECT");
        assert_eq!(e.column, 16);

        let e = err("PR_ENTRYID == x'0AB'");
        assert_eq!(e.column, 15);

        let e = err("PR_PRIORITY & 1 == 2");
        assert_eq!(e.column, 20);

        let e = err("frobnicate(PR_SUBJECT)");
        assert_eq!((e.column, e.found.as_str()), (1, "'frobnicate('"));

        let e = err("size(PR_SUBJECT) > -1");
        assert_eq!(e.column, 20);

        let e = err("PR_CLIENT_SUBMIT_TIME > 2026-13-01");
        assert_eq!(e.column, 25);

        let e = err("");
        assert_eq!((e.column, e.found.as_str()), (1, "end of input"));

        let e = err("/* open");
        assert_eq!(e.column, 8);
        // Columns count characters, not bytes.
        let e = err("PR_SUBJECT == \"é\" &&");
        assert_eq!(e.column, 21);
    }

    // --- Round trip over arbitrary trees.

    const I2: PropTag = PropTag(0x6620_0002);
    const I8: PropTag = PropTag(0x6621_0014);
    const R4: PropTag = PropTag(0x6622_0004);
    const DOUBLE: PropTag = PropTag(0x6623_0005);
    const CURRENCY: PropTag = PropTag(0x6624_0006);
    const APPTIME: PropTag = PropTag(0x6625_0007);
    const CLSID: PropTag = PropTag(0x6626_0048);
    const TEXT: PropTag = PropTag(0x6627_001F);

    const TAGS: [PropTag; 16] = [
        PR_RESOURCE_TYPE,
        PR_STATUS_CODE,
        PR_PRIORITY,
        PR_REMOTE_VALIDATE_OK,
        PR_DISPLAY_NAME,
        PR_SUBJECT_A,
        PR_CLIENT_SUBMIT_TIME,
        PR_ENTRYID,
        I2,
        I8,
        R4,
        DOUBLE,
        CURRENCY,
        APPTIME,
        CLSID,
        TEXT,
    ];

    fn value_of(tag: PropTag) -> BoxedStrategy<PropValue> {
        match tag.prop_type() {
            Some(PropType::I2) => any::<i16>().prop_map(PropValue::I2).boxed(),
            Some(PropType::Long) => {
                prop_oneof![any::<i32>(), -2i32..50, Just(0x10_0001), Just(i32::MIN)]
                    .prop_map(PropValue::Long)
                    .boxed()
            }
            Some(PropType::I8) => any::<i64>().prop_map(PropValue::I8).boxed(),
            Some(PropType::R4) => any::<f32>()
                .prop_filter("NaN", |x| !x.is_nan())
                .prop_map(PropValue::R4)
                .boxed(),
            Some(PropType::Double) => any::<f64>()
                .prop_filter("NaN", |x| !x.is_nan())
                .prop_map(PropValue::Double)
                .boxed(),
            Some(PropType::AppTime) => any::<f64>()
                .prop_filter("NaN", |x| !x.is_nan())
                .prop_map(PropValue::AppTime)
                .boxed(),
            Some(PropType::Currency) => any::<i64>().prop_map(PropValue::Currency).boxed(),
            Some(PropType::Boolean) => any::<bool>().prop_map(PropValue::Boolean).boxed(),
            Some(PropType::Unicode) => any::<String>().prop_map(PropValue::Unicode).boxed(),
            Some(PropType::String8) => any::<String>().prop_map(PropValue::String8).boxed(),
            Some(PropType::SysTime) => prop_oneof![
                any::<u64>(),
                116_444_736_000_000_000u64..(116_444_736_000_000_000 + 2_534_023_008_000_000_000)
            ]
            .prop_map(|t| PropValue::SysTime(FileTime(t)))
            .boxed(),
            Some(PropType::Clsid) => any::<[u8; 16]>().prop_map(PropValue::Clsid).boxed(),
            _ => proptest::collection::vec(any::<u8>(), 0..6)
                .prop_map(PropValue::Binary)
                .boxed(),
        }
    }

    fn tag() -> impl Strategy<Value = PropTag> {
        prop::sample::select(TAGS.to_vec())
    }

    fn relop() -> impl Strategy<Value = RelOp> {
        prop::sample::select(vec![
            RelOp::Lt,
            RelOp::Le,
            RelOp::Gt,
            RelOp::Ge,
            RelOp::Eq,
            RelOp::Ne,
        ])
    }

    fn leaf() -> impl Strategy<Value = Restriction> {
        let text_tag = prop::sample::select(vec![PR_DISPLAY_NAME, PR_SUBJECT_A, TEXT, PR_ENTRYID]);
        let long_tag = prop::sample::select(vec![PR_RESOURCE_TYPE, PR_STATUS_CODE, PR_PRIORITY]);
        prop_oneof![
            (relop(), tag()).prop_flat_map(|(relop, tag)| value_of(tag)
                .prop_map(move |value| Restriction::Property { relop, tag, value })),
            (
                prop::sample::select(vec![PR_DISPLAY_NAME, PR_SUBJECT_A]),
                any::<String>()
            )
                .prop_map(|(tag, p)| Restriction::Property {
                    relop: RelOp::Re,
                    tag,
                    value: if tag == PR_SUBJECT_A {
                        PropValue::String8(p)
                    } else {
                        PropValue::Unicode(p)
                    },
                }),
            (text_tag, 0u32..3, 0u32..8).prop_flat_map(|(tag, level, flags)| {
                value_of(tag).prop_map(move |value| Restriction::Content {
                    fuzzy: FuzzyLevel(level | flags << 16),
                    tag,
                    value,
                })
            }),
            (relop(), tag()).prop_map(|(relop, tag)| Restriction::CompareProps {
                relop,
                tag1: tag,
                tag2: tag,
            }),
            (relop(), any::<bool>()).prop_map(|(relop, named)| Restriction::CompareProps {
                relop,
                tag1: if named { PR_DISPLAY_NAME } else { TEXT },
                tag2: if named { TEXT } else { PR_DISPLAY_NAME },
            }),
            (long_tag, any::<bool>(), any::<u32>()).prop_map(|(tag, z, mask)| {
                Restriction::Bitmask {
                    op: if z { BitmaskOp::Eqz } else { BitmaskOp::Nez },
                    tag,
                    mask,
                }
            }),
            (relop(), tag(), any::<u32>()).prop_map(|(relop, tag, size)| Restriction::Size {
                relop,
                tag,
                size
            }),
            tag().prop_map(|tag| Restriction::Exist { tag }),
        ]
    }

    fn comment_props() -> impl Strategy<Value = Vec<Prop>> {
        prop_oneof![
            any::<String>().prop_map(|s| vec![Prop::new(PR_COMMENT, PropValue::Unicode(s))]),
            proptest::collection::vec(
                tag().prop_flat_map(|t| value_of(t).prop_map(move |v| Prop::new(t, v))),
                0..3
            ),
        ]
    }

    fn tree() -> impl Strategy<Value = Restriction> {
        leaf().prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Restriction::And),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Restriction::Or),
                inner.clone().prop_map(|r| Restriction::Not(Box::new(r))),
                (
                    prop::sample::select(vec![
                        PR_MESSAGE_RECIPIENTS,
                        PR_MESSAGE_ATTACHMENTS,
                        PropTag(0x6630_000D)
                    ]),
                    inner.clone()
                )
                    .prop_map(|(object, r)| Restriction::SubRestriction {
                        object,
                        restriction: Box::new(r),
                    }),
                (comment_props(), proptest::option::of(inner)).prop_map(|(props, r)| {
                    Restriction::Comment {
                        props,
                        restriction: r.map(Box::new),
                    }
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn print_then_parse_gives_the_same_tree(r in tree()) {
            let text = r.to_string();
            match parse(&text) {
                Ok(back) => prop_assert_eq!(back, r, "{}", text),
                Err(e) => prop_assert!(false, "{}\n{:?}", e.caret(), r),
            }
        }

        #[test]
        fn deep_nesting_is_refused_not_overflowed(n in 190usize..100_000) {
            let text = format!("{}true{}", "(".repeat(n), ")".repeat(n));
            prop_assert_eq!(parse(&text).is_ok(), n < MAX_DEPTH);
        }

        #[test]
        fn parsing_never_panics(text in "[ -~é]{0,40}") {
            let _ = parse(&text);
        }
    }
}

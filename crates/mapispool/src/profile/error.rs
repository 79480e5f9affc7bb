//! [`ProfileError`], and turning toml's errors and validation issues into
//! `file:line:column: message` with the offending line and a caret under it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::raw::{At, Issue};

/// Why a profile could not be found, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// There is no file at `path`. The message says how to make one.
    #[error(
        "no profile at {}: create one there (copy the example from the README), or run \
         `mapispool demo` for a throwaway one; --profile or $MAPISPOOL_PROFILE choose another file",
        tilde(path)
    )]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },

    /// The file exists but could not be read.
    #[error("cannot read the profile {}: {source}", tilde(path))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The file is not a valid profile: bad TOML, an unknown key, a bad value, or a rule broken.
    #[error("{}", render(file, *line, *column, message, excerpt.as_deref()))]
    Invalid {
        /// The file, as given.
        file: PathBuf,
        /// 1-based line, when the problem has a place.
        line: Option<usize>,
        /// 1-based column in characters, when the problem has a place.
        column: Option<usize>,
        /// What is wrong and what is allowed, without the place.
        message: String,
        /// The offending line with a caret under the problem, when it has a place.
        excerpt: Option<String>,
    },

    /// No profile was named and there is no home directory to look in.
    #[error(
        "cannot tell where the profile is: there is no home directory; pass --profile or set \
         $MAPISPOOL_PROFILE"
    )]
    NoConfigDir,

    /// The profile could not be written as TOML.
    #[error("cannot write the profile as TOML: {message}")]
    Serialize {
        /// Why.
        message: String,
    },
}

/// Shows a path under the home directory as `~/...`: shorter, and what the user typed.
fn tilde(path: &Path) -> String {
    if let Some(rest) = super::home_dir().and_then(|home| path.strip_prefix(home).ok()) {
        if rest.as_os_str().is_empty() {
            return "~".to_owned();
        }
        return format!("~/{}", rest.display());
    }
    path.display().to_string()
}

fn render(
    file: &Path,
    line: Option<usize>,
    column: Option<usize>,
    message: &str,
    excerpt: Option<&str>,
) -> String {
    let file = tilde(file);
    match (line, column) {
        (Some(line), Some(column)) => {
            let mut out = format!("{file}:{line}:{column}: {message}");
            if let Some(excerpt) = excerpt {
                out.push('\n');
                out.push_str(excerpt);
            }
            out
        }
        _ => format!("{file}: {message}"),
    }
}

/// An error at byte range `span` of `text` (or the whole file for `None`).
fn invalid(text: &str, path: &Path, span: Option<Range<usize>>, message: String) -> ProfileError {
    let Some(span) = span else {
        return ProfileError::Invalid {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message,
            excerpt: None,
        };
    };
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let line = text[..start].matches('\n').count() + 1;
    let before = &text[line_start..start];
    let column = before.chars().count() + 1;
    // Keep tabs under tabs so the caret lines up whatever the tab width.
    let indent: String = before
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    // `max(start)`: a span that starts in the CRs trimmed off the line's end (a lone "\r").
    let end = span
        .end
        .clamp(start, (line_start + line_text.len()).max(start));
    let width = text.get(start..end).map_or(0, |s| s.chars().count()).max(1);
    let gutter = " ".repeat(line.to_string().len());
    let excerpt = format!(
        "{gutter} |\n{line} | {line_text}\n{gutter} | {indent}{}",
        "^".repeat(width)
    );
    ProfileError::Invalid {
        file: path.to_path_buf(),
        line: Some(line),
        column: Some(column),
        message,
        excerpt: Some(excerpt),
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Converts a parse or deserialization error, rewording serde's messages into the profile's
/// terms: "key" rather than "field", the table it is in, and the allowed keys or values.
pub(super) fn from_toml(err: &toml::de::Error, text: &str, path: &Path) -> ProfileError {
    let span = err.span();
    let raw = err.message().trim_end();
    let Some(span) = span else {
        return invalid(text, path, None, requote(raw));
    };
    let lines = Lines::new(text);
    let table = lines.table_name_at(text, &span);
    let message = if let Some(rest) = raw.strip_prefix("unknown field ") {
        let words = backticked(rest);
        match words.split_first() {
            Some((key, [])) => format!("unknown key \"{key}\" in {table}, which takes no keys"),
            Some((key, allowed)) => format!(
                "unknown key \"{key}\" in {table}, expected one of: {}",
                allowed.join(", ")
            ),
            None => requote(raw),
        }
    } else if raw == "duplicate key" {
        let key = text.get(span.clone()).unwrap_or_default();
        format!("duplicate key \"{key}\" in {table}")
    } else if let Some(rest) = raw.strip_prefix("missing field ") {
        let key = backticked(rest).into_iter().next().unwrap_or_default();
        format!("missing key \"{key}\" in {table}")
    } else {
        let message = if let Some(rest) = raw.strip_prefix("unknown variant ") {
            let words = backticked(rest);
            match words.split_first() {
                Some((value, allowed)) => format!(
                    "invalid value \"{value}\", expected one of: {}",
                    allowed.join(", ")
                ),
                None => requote(raw),
            }
        } else {
            requote(raw)
        };
        // A bad value: name its key, which the value's span alone does not show.
        match lines.key_before(text, span.start) {
            Some(key) => format!("{key} in {table}: {message}"),
            None => message,
        }
    };
    invalid(text, path, Some(span), message)
}

/// serde quotes names with backticks; the rest of our messages use double quotes. Its name for
/// the only `u16` (a port) means nothing to a user.
fn requote(message: &str) -> String {
    message
        .replace('`', "\"")
        .replace("expected u16", "expected 1 to 65535")
}

/// The backtick-quoted words of a serde message, in order.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Converts a validation issue, pointing at the key it is about when it can be found.
pub(super) fn from_issue(issue: Issue, text: &str, path: &Path) -> ProfileError {
    let lines = Lines::new(text);
    let span = match issue.at {
        At::File => None,
        At::Key {
            transport: None,
            table,
            key,
        } => lines
            .region_of(|header| !header.array && header.name == table)
            .and_then(|region| lines.find_key(text, region, key)),
        At::Key {
            transport: Some(index),
            table,
            key,
        } => lines.find_in_transport(text, index, table, key),
        At::Group { group, key } => lines.find_in_group(text, group, key),
    };
    invalid(text, path, span, issue.message)
}

/// A table header: `[name]` or `[[name]]`.
struct Header {
    name: String,
    array: bool,
}

/// The lines of the profile with their offsets, and the table headers among them. This is a
/// line scan, not a parser: it only has to find where to point, and the text already parsed.
struct Lines {
    /// (offset of the line, the line without its end) for every line.
    lines: Vec<(usize, Range<usize>)>,
    /// (line index, header) for every header line.
    headers: Vec<(usize, Header)>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut lines = Vec::new();
        let mut headers = Vec::new();
        let mut offset = 0;
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let content = line.trim_end_matches(['\n', '\r']);
            lines.push((offset, offset..offset + content.len()));
            if let Some(header) = parse_header(content) {
                headers.push((index, header));
            }
            offset += line.len();
        }
        Lines { lines, headers }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.lines
            .partition_point(|(start, _)| *start <= offset)
            .saturating_sub(1)
    }

    /// The table that `span` is in, as it would be written: `[transport.outbound]`.
    fn table_name_at(&self, text: &str, span: &Range<usize>) -> String {
        let line = self.line_of(span.start);
        let header = self
            .headers
            .iter()
            .rev()
            .find(|(index, _)| *index <= line)
            .map(|(_, header)| header);
        // Inside an inline table (`outbound = { ... }`), or an error about the whole `{ ... }`,
        // the table is the one under the line's first key.
        let (line_start, _) = self.lines[line];
        let before = text.get(line_start..span.start).unwrap_or_default();
        let at = text.get(span.clone()).unwrap_or_default();
        let inline = (before.contains('{') || at.starts_with('{'))
            .then(|| before.split_once('=').map(|(key, _)| key.trim()))
            .flatten()
            .filter(|key| !key.is_empty());
        match (header, inline) {
            (Some(header), Some(key)) => format!("[{}.{key}]", header.name),
            (None, Some(key)) => format!("[{key}]"),
            (Some(header), None) if header.array => format!("[[{}]]", header.name),
            (Some(header), None) => format!("[{}]", header.name),
            (None, None) => "the file's top level".to_owned(),
        }
    }

    /// The key of a `key = value` (also inside an inline table) when `offset` is in the value.
    fn key_before<'t>(&self, text: &'t str, offset: usize) -> Option<&'t str> {
        let (start, _) = self.lines[self.line_of(offset)];
        let before = text.get(start..offset)?;
        let (key, _) = before.rsplit_once('=')?;
        let key = key.rsplit([',', '{']).next().unwrap_or(key).trim();
        (!key.is_empty()).then_some(key)
    }

    /// The lines of the first table whose header matches, up to the next header.
    fn region_of(&self, matches: impl Fn(&Header) -> bool) -> Option<Range<usize>> {
        let position = self
            .headers
            .iter()
            .position(|(_, header)| matches(header))?;
        Some(self.region_from(position))
    }

    /// From the line after header `position` to the next header.
    fn region_from(&self, position: usize) -> Range<usize> {
        let start = self.headers[position].0 + 1;
        let end = self
            .headers
            .get(position + 1)
            .map_or(self.lines.len(), |(index, _)| *index);
        start..end
    }

    /// The span of `key` on a `key = ...` line within the line range.
    fn find_key(&self, text: &str, region: Range<usize>, key: &str) -> Option<Range<usize>> {
        self.lines.get(region)?.iter().find_map(|(_, line)| {
            let content = &text[line.clone()];
            let indent = content.len() - content.trim_start().len();
            let rest = content[indent..].strip_prefix(key)?;
            rest.trim_start().starts_with('=').then(|| {
                let start = line.start + indent;
                start..start + key.len()
            })
        })
    }

    /// `key` in the `index`-th `[[group]]`, else its header.
    fn find_in_group(&self, text: &str, index: usize, key: &str) -> Option<Range<usize>> {
        let position = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, (_, header))| header.array && header.name == "group")
            .nth(index)
            .map(|(position, _)| position)?;
        self.find_key(text, self.region_from(position), key)
            .or_else(|| Some(self.lines[self.headers[position].0].1.clone()))
    }

    /// `key` in the `index`-th `[[transport]]` (in its sub-table `table` unless that is ""),
    /// else that transport's `name`, else its header.
    fn find_in_transport(
        &self,
        text: &str,
        index: usize,
        table: &str,
        key: &str,
    ) -> Option<Range<usize>> {
        let first = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, (_, header))| header.array && header.name == "transport")
            .nth(index)
            .map(|(position, _)| position)?;
        // The transport's own sub-tables follow its header until any other table.
        let sub_tables = self.headers[first + 1..]
            .iter()
            .take_while(|(_, header)| !header.array && header.name.starts_with("transport."))
            .count();
        let own = self.region_from(first);
        let wanted = format!("transport.{table}");
        let found = if table.is_empty() {
            self.find_key(text, own.clone(), key)
        } else {
            (first + 1..=first + sub_tables)
                .find(|&position| self.headers[position].1.name == wanted)
                .and_then(|position| self.find_key(text, self.region_from(position), key))
        };
        found
            .or_else(|| self.find_key(text, own, "name"))
            .or_else(|| {
                let line = &self.lines[self.headers[first].0].1;
                Some(line.clone())
            })
    }
}

/// `[name]` or `[[name]]` (spaces and a trailing comment allowed); `None` for other lines.
fn parse_header(line: &str) -> Option<Header> {
    let line = line.trim();
    let (inner, array) = if let Some(rest) = line.strip_prefix("[[") {
        (&rest[..rest.find("]]")?], true)
    } else if let Some(rest) = line.strip_prefix('[') {
        (&rest[..rest.find(']')?], false)
    } else {
        return None;
    };
    let name = inner
        .split('.')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(".");
    Some(Header { name, array })
}

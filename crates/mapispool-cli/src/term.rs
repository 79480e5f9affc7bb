//! What the output streams are: a terminal gets live redraws and colours, anything else (a pipe,
//! a file, a test) gets plain, stable text. Colours also honour `NO_COLOR`
//! (<https://no-color.org>: set and not empty means no colour).

use std::io::IsTerminal;

/// Whether stdout is a terminal (live tables redraw in place only then).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stderr is a terminal (progress bars draw only then).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether the user asked for no colour.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether stderr goes to systemd's journal (`JOURNAL_STREAM`, set by systemd for a service's
/// stdout and stderr): lines then start with sd-daemon(3)'s `<N>` priority prefix.
pub fn journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// sd-daemon(3)'s prefix for a line of priority `level` (3 error, 4 warning, 6 info) when stderr
/// goes to the journal, else nothing.
pub fn journal_prefix(level: u8) -> String {
    if journal() {
        format!("<{level}>")
    } else {
        String::new()
    }
}

/// Colour for text written to stdout.
pub fn stdout_paint() -> Paint {
    Paint(stdout_is_terminal() && !no_color())
}

/// Colour for text written to stderr.
pub fn stderr_paint() -> Paint {
    Paint(stderr_is_terminal() && !no_color())
}

/// Plain ANSI colours, or none: a few SGR codes do not justify a dependency.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
    pub fn enabled(self) -> bool {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Paint;

    #[test]
    fn paint_only_when_enabled() {
        assert_eq!(Paint(false).red("x"), "x");
        assert_eq!(Paint(true).red("x"), "\x1b[31mx\x1b[0m");
    }
}

//! Writing to stdout. A reader that stops early (`mapispool queue | head`) ends the process
//! quietly with exit 0, as it ends `cat` or `grep`; any other write error is reported.
//!
//! Done here rather than by restoring SIGPIPE's default: that signal would also kill the
//! process when the spooler daemon hangs up its socket mid-request (tokio writes sockets with
//! write(2)), silently; ignored (Rust's default), the socket write fails with an error we report.

use std::io::Write;

pub fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let result = if newline {
        writeln!(stdout, "{args}")
    } else {
        write!(stdout, "{args}")
    }
    .and_then(|()| stdout.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("mapispool: cannot write to stdout: {e}");
        std::process::exit(3);
    }
}

/// `println!` for stdout that ends quietly when the reader has gone.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), true) };
}

/// `print!` for stdout that ends quietly when the reader has gone.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*), false) };
}

//! `mapispool watch`: the status table as it moves — what an advise sink on
//! `IMAPISession::GetStatusTable` hears, for people and for scripts.
//!
//! - stdout a terminal: the table on the terminal's alternate screen (as `top` and `less` use
//!   it: no screenful per change left in the scrollback, and the screen as it was comes back on
//!   exit, Ctrl-C included), redrawn in place on each change and on a resize, fitted to the
//!   window's width (plain ANSI, no terminal library);
//! - otherwise: one line per change, `<time> <name>: <status string> [bits]`;
//! - `--json`: one JSON object per change, the row in `status --json`'s row form.
//!
//! It runs until Ctrl-C, or `--until-idle` / `--count N` for scripts.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};
use mapi::constants::{
    STATUS_FAILURE, STATUS_INBOUND_ACTIVE, STATUS_INBOUND_FLUSH, STATUS_OUTBOUND_ACTIVE,
    STATUS_OUTBOUND_FLUSH,
};
use mapi::table::TableEvent;
use mapi::tag::{
    PR_DISPLAY_NAME, PR_INSTANCE_KEY, PR_MSP_PHASE, PR_REMOTE_PROGRESS, PR_STATUS_CODE,
    PR_STATUS_STRING,
};
use mapi::{PropTag, PropValue, Row, TableNotification};
use mapispool::Session;
use serde_json::json;
use tokio::sync::mpsc;

use crate::cli::WatchArgs;
use crate::exit::Exit;
use crate::render::{row_json, value_text};
use crate::term::{self, Paint};

/// The columns shown and sent; `PR_INSTANCE_KEY` only tells rows apart.
const COLUMNS: [PropTag; 5] = [
    PR_DISPLAY_NAME,
    PR_STATUS_CODE,
    PR_MSP_PHASE,
    PR_REMOTE_PROGRESS,
    PR_STATUS_STRING,
];

/// Bits that mean "working": a flush asked for, or a transport moving mail.
const BUSY: i32 =
    STATUS_INBOUND_FLUSH | STATUS_OUTBOUND_FLUSH | STATUS_INBOUND_ACTIVE | STATUS_OUTBOUND_ACTIVE;

enum Mode {
    Redraw,
    Lines,
    Json,
}

/// Prints the status table's changes until Ctrl-C, `--count` changes or `--until-idle`.
pub async fn run(session: &Session, args: &WatchArgs, quiet: bool) -> Result<Exit> {
    let mode = if args.json {
        Mode::Json
    } else if term::stdout_is_terminal() {
        Mode::Redraw
    } else {
        Mode::Lines
    };
    let paint = term::stdout_paint();
    let mut view = session.status_table();
    let mut columns = vec![PR_INSTANCE_KEY];
    columns.extend(COLUMNS);
    view.set_columns(&columns)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<TableNotification>();
    // The sink runs on whichever thread changed the table; it only hands the change over.
    view.advise(Arc::new(move |n: &TableNotification| {
        let _ = tx.send(n.clone());
    }));

    if !quiet {
        match session.daemon_socket() {
            Some(socket) => eprintln!(
                "watching the spooler daemon ({}); stop with Ctrl-C",
                socket.display()
            ),
            None => eprintln!(
                "no spooler daemon runs: watching this process's own spooler only, which flushes on the profile's schedules (start one with `mapispool spooler`); stop with Ctrl-C"
            ),
        }
    }
    // Locked for one write at a time, never across an await: another task of this process
    // (a log line, a progress message) must not wait on stdout while we wait for a change.
    let stdout = std::io::stdout();
    // Dropped on every way out of this function (the end, Ctrl-C, an error, a panic): the
    // terminal gets its own screen and cursor back.
    let _screen = match mode {
        Mode::Redraw => Some(AlternateScreen::enter()?),
        _ => None,
    };
    if let Mode::Redraw = mode {
        redraw(&mut stdout.lock(), session, paint, None)?;
    }
    let mut resized = match mode {
        Mode::Redraw => {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
        }
        _ => None,
    };
    let mut last_change: Option<Row> = None;
    if args.until_idle && is_idle(session) {
        return Ok(Exit::Done);
    }
    // The last row seen per instance key: a daemon's mirror may repeat a row unchanged (when it
    // reconnects), which is not a change worth a line.
    let mut last: HashMap<Vec<u8>, Row> = HashMap::new();
    let mut seen = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let notification = tokio::select! {
            n = rx.recv() => match n {
                Some(n) => n,
                None => break,
            },
            _ = &mut ctrl_c => break,
            Some(()) = async {
                match resized.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                // The window changed size: the same table, fitted again.
                redraw(&mut stdout.lock(), session, paint, last_change.as_ref())?;
                continue;
            }
        };
        if notification.event == TableEvent::RowModified
            && last.get(&notification.instance_key) == Some(&notification.row)
        {
            continue;
        }
        last.insert(notification.instance_key.clone(), notification.row.clone());
        let row = notification.row.project(&COLUMNS);
        let mut out = stdout.lock();
        let written = match mode {
            Mode::Json => writeln!(
                out,
                "{}",
                json!({
                    "time": now(),
                    "event": notification.event.name(),
                    "row": row_json(&COLUMNS, &row),
                })
            ),
            Mode::Lines => writeln!(out, "{}", line(&row, paint)),
            Mode::Redraw => {
                last_change = Some(row.clone());
                redraw(&mut out, session, paint, Some(&row))
            }
        };
        // A closed pipe (`mapispool watch | head`) is the reader being done.
        match written.and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("cannot write to stdout"),
        }
        drop(out);
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) || (args.until_idle && is_idle(session)) {
            break;
        }
    }
    Ok(Exit::Done)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// `<time> <name>: <status string> [bits]`.
fn line(row: &Row, paint: Paint) -> String {
    let name = text(row, PR_DISPLAY_NAME);
    let status = text(row, PR_STATUS_STRING);
    let bits = row
        .get_by_id(PR_STATUS_CODE)
        .map(|p| value_text(PR_STATUS_CODE, &p.value))
        .unwrap_or_default();
    let status = if code(row) & STATUS_FAILURE != 0 {
        paint.red(&status)
    } else {
        status
    };
    format!(
        "{} {}: {status} {}",
        paint.dim(&now()),
        paint.bold(&name),
        paint.dim(&format!("[{bits}]"))
    )
}

/// The terminal's alternate screen, entered with the cursor hidden, for as long as this lives
/// (xterm's private modes 1049 and 25, which every terminal emulator in use knows).
struct AlternateScreen;

impl AlternateScreen {
    fn enter() -> std::io::Result<AlternateScreen> {
        let mut out = std::io::stdout().lock();
        out.write_all(b"\x1b[?1049h\x1b[?25l")?;
        out.flush()?;
        Ok(AlternateScreen)
    }
}

impl Drop for AlternateScreen {
    fn drop(&mut self) {
        // Nothing to do about a failure here: the terminal has gone.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// The window's width in columns (`TIOCGWINSZ` on stdout), else `$COLUMNS`; `None` when
/// neither says.
fn window_width() -> Option<usize> {
    // SAFETY: an all-zero winsize is a valid value; TIOCGWINSZ only writes into it.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ on stdout's descriptor writes one winsize into `size`, which lives
    // across the call; on a descriptor that is not a terminal it fails and writes nothing.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        return Some(usize::from(size.ws_col));
    }
    std::env::var("COLUMNS")
        .ok()?
        .parse()
        .ok()
        .filter(|w| *w > 0)
}

/// `line` cut to `width` characters, the last one `…` when something was cut.
fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Home, clear, and the whole table again: simple and always right, and a status table has a
/// handful of rows. Fitted to the window's width: columns wrap to fit, and any line still too
/// long (a window narrower than the table's borders) is cut.
fn redraw(
    out: &mut impl Write,
    session: &Session,
    paint: Paint,
    changed: Option<&Row>,
) -> std::io::Result<()> {
    let rows: Vec<Row> = session
        .board()
        .rows()
        .iter()
        .map(|r| r.project(&COLUMNS))
        .collect();
    let width = window_width();
    let mut screen = String::from("\x1b[H\x1b[2J");
    for line in table_text(&rows, width).lines() {
        match width {
            Some(w) => screen.push_str(&fit(line, w)),
            None => screen.push_str(line),
        }
        screen.push('\n');
    }
    let footer = match changed {
        Some(row) => format!(
            "{} last change: {}  (Ctrl-C to stop)",
            now(),
            text(row, PR_DISPLAY_NAME)
        ),
        None => format!("{} watching  (Ctrl-C to stop)", now()),
    };
    let footer = match width {
        Some(w) => fit(&footer, w),
        None => footer,
    };
    screen.push_str(&paint.dim(&footer));
    screen.push('\n');
    out.write_all(screen.as_bytes())
}

/// The table: one line per row when it fits in `width` (or no width is known). When it does
/// not, the PHASE and PROGRESS columns go (the status string says as much), the names keep
/// their width, and the status bits and string wrap (the bits at their `|`).
fn table_text(rows: &[Row], width: Option<usize>) -> String {
    let whole = table(rows, &COLUMNS, false).to_string();
    match width {
        Some(w) if whole.lines().any(|l| l.chars().count() > w) => {
            let mut narrow = table(rows, &NARROW, true);
            narrow
                .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
                .set_width(u16::try_from(w).unwrap_or(u16::MAX));
            if let Some(name) = narrow.column_mut(0) {
                name.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
            }
            narrow.to_string()
        }
        _ => whole,
    }
}

/// The columns of a window too narrow for all of [`COLUMNS`].
const NARROW: [PropTag; 3] = [PR_DISPLAY_NAME, PR_STATUS_CODE, PR_STATUS_STRING];

/// The status table's `columns` as a comfy table; `breakable`: the status bits with a space
/// after each `|`, so that they can wrap there.
fn table(rows: &[Row], columns: &[PropTag], breakable: bool) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(columns.iter().map(|c| match *c {
            PR_DISPLAY_NAME => "DISPLAY_NAME",
            PR_STATUS_CODE => "STATUS_CODE",
            PR_MSP_PHASE => "PHASE",
            PR_REMOTE_PROGRESS => "PROGRESS",
            _ => "STATUS_STRING",
        }));
    for row in rows {
        table.add_row(columns.iter().map(|c| match row.get_by_id(*c) {
            Some(p) if *c == PR_REMOTE_PROGRESS => match p.value {
                PropValue::Long(v) if v >= 0 => format!("{v}%"),
                _ => String::new(),
            },
            Some(p) if *c == PR_STATUS_CODE && breakable => {
                value_text(*c, &p.value).replace('|', "| ")
            }
            Some(p) => match p.value {
                PropValue::Error(_) => String::new(),
                _ => value_text(*c, &p.value),
            },
            None => String::new(),
        }));
    }
    table
}

fn is_idle(session: &Session) -> bool {
    session.board().rows().iter().all(|r| code(r) & BUSY == 0)
}

fn code(row: &Row) -> i32 {
    match row.get_by_id(PR_STATUS_CODE).map(|p| &p.value) {
        Some(PropValue::Long(v)) => *v,
        _ => 0,
    }
}

fn text(row: &Row, tag: PropTag) -> String {
    match row.get_by_id(tag).map(|p| &p.value) {
        Some(PropValue::Unicode(s) | PropValue::String8(s)) => s.clone(),
        _ => String::new(),
    }
}

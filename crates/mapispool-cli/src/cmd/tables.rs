//! Commands that print a MAPI table: `status`, `queue`, `messages`.

use anyhow::{Context, Result};
use mapi::restriction::Restriction;
use mapi::table::{SortKey, Table, hr_query_all_rows};
use mapi::tag::*;
use mapi::{PropTag, RowSet};
use mapispool::Session;
use mapispool::store::Folder;

use crate::cli::{MessagesArgs, QueueArgs, StatusArgs, TableArgs};
use crate::exit::{BadInput, Exit};
use crate::render::{rows_json, rows_text};

/// `mapispool status`: the status table; `--cluster`: the cluster view.
pub async fn status(session: &Session, args: &StatusArgs) -> Result<Exit> {
    if args.cluster {
        let mut table = session.cluster_table().await?;
        return print_table(
            &mut table,
            &args.table,
            &[
                PR_DISPLAY_NAME,
                PR_MSP_NODE_STATE,
                PR_MSP_NODE_HOST,
                PR_MSP_NODE_HEARTBEAT,
                PR_MSP_NODE_CLOCK_OFFSET,
                PR_STATUS_STRING,
                PR_MSP_QUEUED_COUNT,
                PR_MSP_SENDING_COUNT,
                PR_MSP_DEFERRED_COUNT,
                PR_MSP_SCHEDULED_COUNT,
            ],
        );
    }
    let mut table = session.status_table();
    print_table(
        &mut table,
        &args.table,
        &[
            PR_DISPLAY_NAME,
            PR_RESOURCE_TYPE,
            PR_STATUS_CODE,
            PR_RESOURCE_METHODS,
            PR_STATUS_STRING,
        ],
    )
}

/// `mapispool queue`: the outgoing queue in submit order; with `--recipients`, one row per
/// recipient.
pub async fn queue(session: &Session, args: &QueueArgs) -> Result<Exit> {
    if args.recipients {
        let mut table = session.outgoing_recipients_table().await?;
        return print_table(
            &mut table,
            &args.table,
            &[
                PR_ENTRYID,
                PR_SUBJECT,
                PR_EMAIL_ADDRESS,
                PR_RECIPIENT_TYPE,
                PR_MSP_QUEUE_STATE,
                PR_MSP_ATTEMPTS,
                PR_MSP_LAST_ERROR,
                PR_MSP_NEXT_ATTEMPT_TIME,
            ],
        );
    }
    // A `--where` the store can partly answer (attempts, size, priority) picks its rows
    // through an index instead of reading a long queue whole; print_table still applies all of it.
    let restriction = match &args.table.where_ {
        Some(text) => Restriction::parse(text).ok(),
        None => None,
    };
    let mut table = match &restriction {
        Some(r) => session.outgoing_queue_table_where(r).await?,
        None => session.outgoing_queue_table().await?,
    };
    print_table(
        &mut table,
        &args.table,
        &[
            PR_ENTRYID,
            PR_CLIENT_SUBMIT_TIME,
            PR_SUBJECT,
            PR_DISPLAY_TO,
            PR_MSP_QUEUE_STATE,
            PR_MSP_ATTEMPTS,
            PR_MSP_NEXT_ATTEMPT_TIME,
            PR_MSP_LAST_ERROR,
        ],
    )
}

/// `mapispool messages`: a folder's messages.
pub async fn messages(session: &Session, args: &MessagesArgs) -> Result<Exit> {
    let folder = Folder::parse(&args.folder).ok_or_else(|| {
        BadInput(format!(
            "there is no folder \"{}\"; use inbox, outbox, sent or deleted",
            args.folder
        ))
    })?;
    let mut table = session.folder_table(folder).await?;
    // What was sent is known by when it was submitted and to whom; what came in, by when and
    // from whom.
    let columns: &[PropTag] = match folder {
        Folder::Outbox | Folder::SentItems => &[
            PR_ENTRYID,
            PR_CLIENT_SUBMIT_TIME,
            PR_DISPLAY_TO,
            PR_SUBJECT,
            PR_MESSAGE_SIZE,
        ],
        Folder::Inbox | Folder::DeletedItems => &[
            PR_ENTRYID,
            PR_MESSAGE_DELIVERY_TIME,
            PR_SENDER_NAME,
            PR_SUBJECT,
            PR_MESSAGE_SIZE,
        ],
    };
    print_table(&mut table, &args.table, columns)
}

/// Applies `--columns`, `--where` and `--sort` with MAPI's own calls (SetColumns, Restrict,
/// SortTable through HrQueryAllRows) and prints the rows.
fn print_table(table: &mut Table, args: &TableArgs, default_columns: &[PropTag]) -> Result<Exit> {
    let columns = if args.columns.is_empty() {
        default_columns.to_vec()
    } else {
        args.columns
            .iter()
            .map(|c| parse_tag(c.trim(), "--columns"))
            .collect::<Result<Vec<_>>>()?
    };
    let restriction = match &args.where_ {
        Some(text) => Some(
            Restriction::parse(text)
                .map_err(|e| BadInput(format!("--where is not a restriction:\n{}", e.caret())))?,
        ),
        None => None,
    };
    let sort = args
        .sort
        .iter()
        .map(|s| parse_sort(s))
        .collect::<Result<Vec<_>>>()?;
    let rows: RowSet = hr_query_all_rows(
        table,
        Some(&columns),
        restriction.as_ref(),
        (!sort.is_empty()).then_some(&sort[..]),
        0,
    )
    .context("cannot read the table")?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows_json(&columns, &rows))?
        );
    } else {
        outln!("{}", rows_text(&columns, &rows));
    }
    Ok(Exit::Done)
}

fn parse_tag(text: &str, option: &str) -> Result<PropTag> {
    PropTag::parse(text).ok_or_else(|| {
        let hint = closest_tag(text)
            .map(|name| format!("did you mean {name}? "))
            .unwrap_or_default();
        BadInput(format!(
            "{option}: unknown property tag \"{text}\": {hint}give a name like PR_DISPLAY_NAME or a number like 0x3001001F"
        ))
        .into()
    })
}

/// The known tag name closest to `text` (at most three edits away), for "did you mean".
fn closest_tag(text: &str) -> Option<&'static str> {
    let text: Vec<char> = text.to_ascii_uppercase().chars().collect();
    let distance = |name: &str| {
        let name: Vec<char> = name.chars().collect();
        let mut prev: Vec<usize> = (0..=name.len()).collect();
        for (i, a) in text.iter().enumerate() {
            let mut cur = vec![i + 1];
            for (j, b) in name.iter().enumerate() {
                cur.push(
                    (prev[j] + usize::from(a != b))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1),
                );
            }
            prev = cur;
        }
        prev[name.len()]
    };
    PropTag::known()
        .map(|(name, _)| (distance(name), name))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn parse_sort(text: &str) -> Result<SortKey> {
    let (tag, order) = match text.rsplit_once(':') {
        Some((tag, "desc")) => (tag, true),
        Some((tag, "asc")) => (tag, false),
        Some((_, other)) => {
            return Err(BadInput(format!(
                "--sort {text}: \"{other}\" is not an order; use TAG, TAG:asc or TAG:desc"
            ))
            .into());
        }
        None => (text, false),
    };
    let tag = parse_tag(tag, "--sort")?;
    Ok(if order {
        SortKey::descend(tag)
    } else {
        SortKey::ascend(tag)
    })
}

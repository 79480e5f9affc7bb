//! `mapispool validate`: `IMAPIStatus::ValidateState` on the spooler or one transport.

use anyhow::Result;
use mapi::tag::{PR_DISPLAY_NAME, PR_STATUS_CODE, PR_STATUS_STRING};
use mapispool::Session;

use crate::cli::ValidateArgs;
use crate::exit::Exit;
use crate::render::{rows_json, rows_text};

pub async fn run(session: &Session, args: &ValidateArgs, quiet: bool) -> Result<Exit> {
    let status = match &args.transport {
        Some(which) => session.transport_status(which)?,
        None => session.spooler_status(),
    };
    status.validate_state(0).await?;
    let columns = [PR_DISPLAY_NAME, PR_STATUS_CODE, PR_STATUS_STRING];
    let rows: Vec<_> = session
        .board()
        .rows()
        .iter()
        .map(|r| r.project(&columns))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows_json(&columns, &rows))?
        );
    } else if !quiet {
        println!("{}", rows_text(&columns, &rows));
    }
    let failing = rows.iter().any(|r| {
        matches!(r.get(PR_STATUS_CODE), Some(mapi::PropValue::Long(c)) if c & mapi::constants::STATUS_FAILURE != 0)
    });
    Ok(if failing { Exit::Partial } else { Exit::Done })
}

//! MAPI's second procedure for sending and receiving on demand: flush each transport on its
//! own, through its own status object when it offers `FlushQueues`, else through the spooler's
//! with the transport's entry ID as the target.
//!
//! 1. `IMAPISession::GetStatusTable`
//! 2. `IMAPITable::SetColumns(PR_ENTRYID, PR_RESOURCE_TYPE, PR_DISPLAY_NAME, PR_RESOURCE_METHODS)`
//! 3. an `SPropertyRestriction`: `RELOP_EQ`, `PR_RESOURCE_TYPE == MAPI_TRANSPORT_PROVIDER`
//! 4. `HrQueryAllRows`
//! 5. for each row: `STATUS_FLUSH_QUEUES` in `PR_RESOURCE_METHODS`?
//!    - yes: `OpenEntry(PR_ENTRYID)` → `FlushQueues(0, 0, NULL, flags)` on the transport;
//!    - no: the spooler's row (the same steps with `MAPI_SPOOLER`) → `OpenEntry` →
//!      `FlushQueues(0, cb, PR_ENTRYID of the transport, flags)`.
//!
//! `flags` is `FLUSH_UPLOAD | FLUSH_DOWNLOAD | FLUSH_NO_UI`, as the procedure has it.
//!
//! ```sh
//! cargo run -p mapispool --example flush_each              # two throwaway profiles
//! cargo run -p mapispool --example flush_each -- PROFILE   # your profile
//! ```
//! Exits non-zero when the mail did not arrive (or, with a profile, a flush was incomplete).

mod support;

use std::path::Path;
use std::process::ExitCode;

use mapi::constants::{MAPI_SPOOLER, MAPI_TRANSPORT_PROVIDER, STATUS_FLUSH_QUEUES};
use mapi::restriction::{RelOp, Restriction};
use mapi::table::hr_query_all_rows;
use mapi::tag::{PR_DISPLAY_NAME, PR_ENTRYID, PR_RESOURCE_METHODS, PR_RESOURCE_TYPE};
use mapi::{MapiError, MapiResult, PropValue, RowSet};
use mapispool::{FlushFlags, FlushReport, Profile, Session};

use support::{Result, arrived, print_report, submit_to_bob, throwaway};

/// Steps 1–4 for one `PR_RESOURCE_TYPE`.
fn status_rows(session: &Session, resource_type: i32) -> MapiResult<RowSet> {
    let mut table = session.status_table();
    table.set_columns(&[
        PR_ENTRYID,
        PR_RESOURCE_TYPE,
        PR_DISPLAY_NAME,
        PR_RESOURCE_METHODS,
    ])?;
    let restriction = Restriction::Property {
        relop: RelOp::Eq,
        tag: PR_RESOURCE_TYPE,
        value: PropValue::Long(resource_type),
    };
    hr_query_all_rows(&mut table, None, Some(&restriction), None, 0)
}

/// The procedure, step by step: one report per transport, in profile order, each printed as
/// `who`'s as it comes.
async fn flush_each(
    session: &Session,
    who: &str,
    flags: FlushFlags,
) -> MapiResult<Vec<FlushReport>> {
    let mut reports = Vec::new();
    for row in status_rows(session, MAPI_TRANSPORT_PROVIDER)? {
        let id = row_entry_id(&row)?;
        let name = match row.get(PR_DISPLAY_NAME) {
            Some(PropValue::Unicode(n)) => n.clone(),
            _ => id.to_string(),
        };
        let methods = match row.get(PR_RESOURCE_METHODS) {
            Some(PropValue::Long(m)) => *m,
            _ => 0,
        };
        let report = if methods & STATUS_FLUSH_QUEUES != 0 {
            println!("{name}: has STATUS_FLUSH_QUEUES — FlushQueues on its own status object");
            session.open_status(&id)?.flush_queues(None, flags).await?
        } else {
            println!(
                "{name}: no STATUS_FLUSH_QUEUES — FlushQueues on the spooler with its entry ID"
            );
            let spooler_rows = status_rows(session, MAPI_SPOOLER)?;
            let spooler_row = spooler_rows
                .first()
                .ok_or_else(|| MapiError::not_found("the status table has no MAPI_SPOOLER row"))?;
            let spooler = session.open_status(&row_entry_id(spooler_row)?)?;
            spooler.flush_queues(Some(&id), flags).await?
        };
        print_report(who, &report);
        reports.push(report);
    }
    Ok(reports)
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match std::env::args_os().nth(1) {
        Some(path) => with_profile(Path::new(&path)).await,
        None => with_throwaway_profiles().await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flush_each: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn with_profile(path: &Path) -> Result<bool> {
    let session = Session::logon(Profile::load(path)?).await?;
    let reports = flush_each(
        &session,
        "flush",
        FlushFlags::UPLOAD | FlushFlags::DOWNLOAD | FlushFlags::NO_UI,
    )
    .await?;
    session.logoff().await;
    Ok(reports.iter().all(FlushReport::is_complete))
}

async fn with_throwaway_profiles() -> Result<bool> {
    let profiles = throwaway()?;
    let alice = Session::logon(profiles.alice.clone()).await?;
    let bob = Session::logon(profiles.bob.clone()).await?;
    let subjects = submit_to_bob(&alice).await?;

    println!("alice: each transport on its own");
    flush_each(
        &alice,
        "alice",
        FlushFlags::UPLOAD | FlushFlags::DOWNLOAD | FlushFlags::NO_UI,
    )
    .await?;
    println!("bob: each transport on its own");
    flush_each(
        &bob,
        "bob",
        FlushFlags::UPLOAD | FlushFlags::DOWNLOAD | FlushFlags::NO_UI,
    )
    .await?;

    let ok = arrived(&bob, &subjects).await?;
    println!(
        "{}",
        if ok {
            "all mail arrived"
        } else {
            "MAIL MISSING"
        }
    );
    alice.logoff().await;
    bob.logoff().await;
    Ok(ok)
}

/// The row's `PR_ENTRYID` (`Row::entry_id`), or why there is none.
fn row_entry_id(row: &mapi::Row) -> MapiResult<mapi::EntryId> {
    row.entry_id()
        .ok_or_else(|| MapiError::not_found("the status row has no PR_ENTRYID column"))
}

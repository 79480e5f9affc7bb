//! MAPI's first procedure for sending and receiving on demand: flush every transport through
//! the spooler's status object.
//!
//! 1. `IMAPISession::GetStatusTable`
//! 2. `IMAPITable::SetColumns(PR_ENTRYID, PR_RESOURCE_TYPE, PR_DISPLAY_NAME, PR_RESOURCE_METHODS)`
//! 3. an `SPropertyRestriction`: `RELOP_EQ`, `PR_RESOURCE_TYPE == MAPI_SPOOLER`
//! 4. `HrQueryAllRows`
//! 5. `OpenEntry` on the row's `PR_ENTRYID` → the spooler's `IMAPIStatus`
//! 6. `IMAPIStatus::FlushQueues(0, 0, NULL, FLUSH_UPLOAD | FLUSH_DOWNLOAD | FLUSH_NO_UI)`
//!
//! ```sh
//! cargo run -p mapispool --example flush_all              # two throwaway profiles
//! cargo run -p mapispool --example flush_all -- PROFILE   # your profile
//! ```
//! Exits non-zero when the mail did not arrive (or, with a profile, the flush was incomplete).

mod support;

use std::path::Path;
use std::process::ExitCode;

use mapi::constants::MAPI_SPOOLER;
use mapi::restriction::{RelOp, Restriction};
use mapi::table::hr_query_all_rows;
use mapi::tag::{PR_DISPLAY_NAME, PR_ENTRYID, PR_RESOURCE_METHODS, PR_RESOURCE_TYPE};
use mapi::{MapiError, MapiResult, PropValue};
use mapispool::{FlushFlags, FlushReport, Profile, Session};

use support::{Result, arrived, print_report, submit_to_bob, throwaway};

/// The procedure, step by step.
async fn flush_all(session: &Session, flags: FlushFlags) -> MapiResult<FlushReport> {
    // 1. The status table.
    let mut table = session.status_table();
    // 2. The columns the procedure needs.
    table.set_columns(&[
        PR_ENTRYID,
        PR_RESOURCE_TYPE,
        PR_DISPLAY_NAME,
        PR_RESOURCE_METHODS,
    ])?;
    // 3. Only the spooler's row.
    let spooler_only = Restriction::Property {
        relop: RelOp::Eq,
        tag: PR_RESOURCE_TYPE,
        value: PropValue::Long(MAPI_SPOOLER),
    };
    // 4. All matching rows at once.
    let rows = hr_query_all_rows(&mut table, None, Some(&spooler_only), None, 0)?;
    let row = rows
        .first()
        .ok_or_else(|| MapiError::not_found("the status table has no MAPI_SPOOLER row"))?;
    // 5. Open the spooler's status object.
    let spooler = session.open_status(&row_entry_id(row)?)?;
    // 6. Flush every transport, synchronously.
    spooler.flush_queues(None, flags).await
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
            eprintln!("flush_all: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn with_profile(path: &Path) -> Result<bool> {
    let session = Session::logon(Profile::load(path)?).await?;
    let report = flush_all(
        &session,
        FlushFlags::UPLOAD | FlushFlags::DOWNLOAD | FlushFlags::NO_UI,
    )
    .await?;
    print_report("flush", &report);
    session.logoff().await;
    Ok(report.is_complete())
}

async fn with_throwaway_profiles() -> Result<bool> {
    let profiles = throwaway()?;
    let alice = Session::logon(profiles.alice.clone()).await?;
    let bob = Session::logon(profiles.bob.clone()).await?;
    let subjects = submit_to_bob(&alice).await?;

    println!("alice: FlushQueues on the spooler, all transports");
    let report = flush_all(
        &alice,
        FlushFlags::UPLOAD | FlushFlags::DOWNLOAD | FlushFlags::NO_UI,
    )
    .await?;
    print_report("alice", &report);
    println!("bob: FlushQueues on the spooler, all transports");
    let report = flush_all(
        &bob,
        FlushFlags::UPLOAD | FlushFlags::DOWNLOAD | FlushFlags::NO_UI,
    )
    .await?;
    print_report("bob", &report);

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

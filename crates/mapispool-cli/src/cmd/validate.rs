//! `mapispool validate`, `offline` and `online`: `IMAPIStatus::ValidateState` on the spooler or
//! one transport.

use std::io::IsTerminal;

use anyhow::Result;
use mapi::PropValue;
use mapi::constants::{FORCE_XP_CONNECT, FORCE_XP_DISCONNECT, SUPPRESS_UI};
use mapi::table::hr_query_all_rows;
use mapi::tag::{PR_DISPLAY_NAME, PR_MSP_TRANSPORT, PR_STATUS_CODE, PR_STATUS_STRING};
use mapispool::Session;
use mapispool::status::StatusKind;
use serde_json::json;

use crate::cli::{SwitchArgs, ValidateArgs};
use crate::exit::Exit;
use crate::render::{rows_json, rows_text};

/// `mapispool validate`: `ValidateState` on the spooler or one transport, where the spooler runs
/// (the daemon, or this process): it logs the transports on again and checks each for real,
/// step by step (resolve, connect, TLS, login, a read-only look at the mailbox), changing
/// nothing on the server. Prints the steps, then the status rows. Exits 1 when a step failed or
/// a status row reports a failure.
pub async fn run(session: &Session, args: &ValidateArgs, quiet: bool) -> Result<Exit> {
    let status = match &args.transport {
        Some(which) => {
            session.transport_status(&crate::ids::transport(session, which, "--transport")?)?
        }
        None => session.spooler_status(),
    };
    // A password prompt may ask only a person at a terminal.
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let checks = status
        .validate_state_checks(if interactive { 0 } else { SUPPRESS_UI })
        .await?;
    let columns = [PR_DISPLAY_NAME, PR_STATUS_CODE, PR_STATUS_STRING];
    let rows: Vec<_> = session
        .board()
        .rows()
        .iter()
        .map(|r| r.project(&columns))
        .collect();
    let warnings = warnings(session.profile());
    if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| {
                json!({
                    "transport": c.transport,
                    "offline": c.offline,
                    "ok": c.ok(),
                    "sides": c.sides.iter().map(|s| json!({
                        "side": s.side,
                        "protocol": s.protocol,
                        "server": s.server,
                        "ok": s.ok(),
                        "steps": s.steps,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "checks": list,
                "status": rows_json(&columns, &rows),
                "warnings": warnings,
            }))?
        );
    } else {
        if !quiet {
            for c in &checks {
                let name = &c.transport;
                if c.offline {
                    outln!("{name}: offline, not checked (`mapispool online` first)");
                }
                for side in &c.sides {
                    outln!("{name} {} {} ({})", side.side, side.protocol, side.server);
                    for s in &side.steps {
                        outln!("  {:<10} {:<8} {}", s.step, s.outcome.as_str(), s.detail);
                    }
                }
            }
            if !checks.is_empty() {
                outln!("");
            }
            outln!("{}", rows_text(&columns, &rows));
        }
        // Even under --quiet: each is something to fix.
        for w in &warnings {
            eprintln!("mapispool: warning: {w}");
        }
    }
    let failing = rows.iter().any(|r| {
        matches!(r.get(PR_STATUS_CODE), Some(mapi::PropValue::Long(c)) if c & mapi::constants::STATUS_FAILURE != 0)
    }) || checks.iter().any(|c| !c.ok());
    Ok(if failing { Exit::Partial } else { Exit::Done })
}

/// What `validate` warns about besides the status rows: passwords sent in clear on purpose,
/// mail files other users can read.
fn warnings(profile: &mapispool::profile::Profile) -> Vec<String> {
    let mut found = profile.warnings();
    found.extend(mapispool::private::warnings(profile));
    found
}

/// `mapispool offline` / `mapispool online`: `ValidateState` with `FORCE_XP_DISCONNECT` or
/// `FORCE_XP_CONNECT`, on one transport's status object or the spooler's (every transport).
/// The spooler saves the switch in the store, so it holds for later commands and restarts.
pub async fn switch(
    session: &Session,
    args: &SwitchArgs,
    offline: bool,
    quiet: bool,
) -> Result<Exit> {
    let status = match &args.transport {
        Some(which) => {
            session.transport_status(&crate::ids::transport(session, which, "--transport")?)?
        }
        None => session.spooler_status(),
    };
    let names: Vec<String> = match status.kind() {
        StatusKind::Transport(name) => vec![name.clone()],
        _ => session
            .profile()
            .transports
            .iter()
            .map(|t| t.name.clone())
            .collect(),
    };
    let flag = if offline {
        FORCE_XP_DISCONNECT
    } else {
        FORCE_XP_CONNECT
    };
    status.validate_state(flag).await?;
    // What is still queued per transport, read after the switch (and after the sending that
    // `send_on_reconnect` does).
    let queue = hr_query_all_rows(
        &mut session.outgoing_queue_table().await?,
        Some(&[PR_MSP_TRANSPORT]),
        None,
        None,
        0,
    )?;
    let queued = |name: &str| {
        queue
            .iter()
            .filter(|r| matches!(r.get(PR_MSP_TRANSPORT), Some(PropValue::Unicode(t)) if t == name))
            .count()
    };
    if args.json {
        let list: Vec<_> = names
            .iter()
            .map(|n| json!({"transport": n, "offline": offline, "queued": queued(n)}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else if !quiet {
        for name in &names {
            let n = queued(name);
            let line = if offline {
                format!(
                    "{name}: offline ({n} queued); submit still queues, nothing connects until `mapispool online`"
                )
            } else if n == 0 {
                format!("{name}: online (nothing queued)")
            } else if session.profile().spooler.send_on_reconnect {
                format!("{name}: online ({n} still queued: see `mapispool queue`)")
            } else {
                format!(
                    "{name}: online ({n} queued; they go at the next flush or schedule: `mapispool flush`, or set send_on_reconnect = true)"
                )
            };
            outln!("{line}");
        }
    }
    Ok(Exit::Done)
}

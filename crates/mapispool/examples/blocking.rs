//! Calling mapispool from a program without an async runtime: the API is async (its work is
//! network and disk I/O), so a synchronous caller owns a small runtime and blocks on each call.
//! A current-thread runtime is enough: the spooler spawns its own tasks on it while a call
//! runs, and nothing is left running between calls.
//!
//! MAPI's first procedure (see `flush_all.rs`) from plain `fn main`:
//! `FlushQueues(FLUSH_UPLOAD | FLUSH_DOWNLOAD | FLUSH_NO_UI)` on the spooler's status object.
//!
//! ```sh
//! cargo run -p mapispool --example blocking              # two throwaway profiles
//! cargo run -p mapispool --example blocking -- PROFILE   # your profile
//! ```
//! Exits non-zero when the mail did not arrive (or, with a profile, the flush was incomplete).

mod support;

use std::path::Path;
use std::process::ExitCode;

use mapi::MapiResult;
use mapispool::{FlushFlags, FlushReport, Profile, Session};
use tokio::runtime::Runtime;

use support::{Result, arrived, print_report, submit_to_bob, throwaway};

/// A session for synchronous callers: each method blocks until the async call it wraps is done.
struct BlockingSession {
    runtime: Runtime,
    session: Session,
}

impl BlockingSession {
    /// `MAPILogonEx`, blocking. Errors: as [`Session::logon`].
    fn logon(profile: Profile) -> Result<BlockingSession> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let session = runtime.block_on(Session::logon(profile))?;
        Ok(BlockingSession { runtime, session })
    }

    /// `FlushQueues` on the spooler's status object (every transport), blocking.
    fn flush_all(&self, flags: FlushFlags) -> MapiResult<FlushReport> {
        self.runtime
            .block_on(self.session.spooler_status().flush_queues(None, flags))
    }

    /// Logs off, blocking: the store is closed cleanly before this returns.
    fn logoff(self) {
        self.runtime.block_on(self.session.logoff());
    }
}

const FLAGS: FlushFlags =
    FlushFlags(FlushFlags::UPLOAD.0 | FlushFlags::DOWNLOAD.0 | FlushFlags::NO_UI.0);

fn main() -> ExitCode {
    let result = match std::env::args_os().nth(1) {
        Some(path) => with_profile(Path::new(&path)),
        None => with_throwaway_profiles(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("blocking: {e}");
            ExitCode::FAILURE
        }
    }
}

fn with_profile(path: &Path) -> Result<bool> {
    let session = BlockingSession::logon(Profile::load(path)?)?;
    let report = session.flush_all(FLAGS)?;
    print_report("flush", &report);
    session.logoff();
    Ok(report.is_complete())
}

fn with_throwaway_profiles() -> Result<bool> {
    let profiles = throwaway()?;
    let alice = BlockingSession::logon(profiles.alice.clone())?;
    let bob = BlockingSession::logon(profiles.bob.clone())?;
    // Submitting is async too; the same runtime runs it.
    let subjects = alice.runtime.block_on(submit_to_bob(&alice.session))?;
    println!("alice: FlushQueues on the spooler, blocking");
    print_report("alice", &alice.flush_all(FLAGS)?);
    println!("bob: FlushQueues on the spooler, blocking");
    print_report("bob", &bob.flush_all(FLAGS)?);
    let ok = bob.runtime.block_on(arrived(&bob.session, &subjects))?;
    println!(
        "{}",
        if ok {
            "all mail arrived"
        } else {
            "MAIL MISSING"
        }
    );
    alice.logoff();
    bob.logoff();
    Ok(ok)
}

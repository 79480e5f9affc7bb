//! Taking back what a dead spooler on this machine left leased, at start, instead of waiting
//! for its leases to run out: after a crash the queue moves again at once.

use mapi::MapiResult;

use super::Spooler;
use crate::store::{MessageId, Store};

/// Whether process `pid` still runs on this machine. A zombie counts as dead: it holds nothing
/// any more, though `kill -0` would still find it.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) if std::path::Path::new("/proc/self").exists() => false,
        // No /proc (not Linux): ask the kernel; existing is enough.
        // SAFETY: kill with signal 0 only checks that the process exists.
        Err(_) => unsafe { libc::kill(pid as libc::pid_t, 0) == 0 },
    }
}

impl<S: Store + 'static> Spooler<S> {
    /// Releases leases held by spoolers of this host whose process is gone (the caller asks
    /// only when the queue counts show something leased: this reads the whole queue). Leases
    /// of other hosts (several nodes sharing one queue) and of live processes are left alone:
    /// only their expiry may free them.
    pub(crate) async fn reclaim_dead_leases(&self) -> MapiResult<usize> {
        let mut released = 0;
        for entry in self.inner.store.outgoing_queue().await? {
            let Some(lease) = &entry.lease else { continue };
            // Owners are "host:pid:start" (see Spooler::start).
            let mut parts = lease.owner.splitn(3, ':');
            let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if host != self.inner.host || lease.owner == self.inner.owner || process_alive(pid) {
                continue;
            }
            let id: MessageId = entry.message.id;
            self.inner.store.release_lease(id, &lease.owner).await?;
            tracing::info!(%id, owner = %lease.owner, "took back a dead spooler's message");
            released += 1;
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_live_and_dead_processes() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid), "a reaped child is gone");
    }
}

//! The shell commands a profile names (`connect_command`, `password_command`), run so that none
//! can hang the spooler: each is bounded in time, runs in a process group of its own, and that
//! whole group is killed when the time is up or when whoever waits for it goes away (a flush
//! dropped, the daemon stopping). Killing only `sh` would leave its children (`sleep`, an
//! `ssh` that never answers) running and holding the command's pipes.
//!
//! A command that ends by itself is left alone, with whatever it started in the background
//! (a VPN client a `connect_command` launches must outlive it).

use std::process::{Output, Stdio};
use std::time::Duration;

use crate::transport_error::{TransportError, TransportErrorKind};

/// A command of the profile, named for errors and logs.
pub(crate) struct ProfileCommand<'a> {
    /// The setting, e.g. `password_command`.
    pub setting: &'static str,
    /// The transport it belongs to.
    pub transport: &'a str,
    /// The shell command line.
    pub command: &'a str,
}

impl ProfileCommand<'_> {
    /// How errors name it: the setting, the transport and the program — only the command's
    /// first word, since the rest may hold a secret (`echo hunter2`, a token in a URL).
    pub fn describe(&self) -> String {
        let program = self.command.split_whitespace().next().unwrap_or("");
        format!(
            "{} of transport \"{}\" (`{program} …`)",
            self.setting, self.transport
        )
    }

    /// Runs it through `sh -c` in its own process group, with stdin from `stdin` and stderr
    /// inherited; stdout is captured when `capture` is true, else sent to our stderr (what a
    /// `connect_command` prints is for the person, not for `flush --json`'s stdout).
    ///
    /// Errors (all of kind `kind`, naming the command by [`ProfileCommand::describe`]): it
    /// cannot be started; it did not end within `limit` (its process group is then killed); it
    /// failed.
    /// Dropping the future kills the process group too.
    pub async fn run(
        &self,
        limit: Duration,
        stdin: Stdio,
        capture: bool,
        kind: TransportErrorKind,
    ) -> Result<Output, TransportError> {
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(self.command)
            .stdin(stdin)
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        if capture {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(std::io::stderr());
        }
        let child = command.spawn().map_err(|e| {
            TransportError::new(kind.clone(), format!("cannot run {}: {e}", self.describe()))
        })?;
        let mut group = GroupKill(child.id());
        let output = tokio::time::timeout(limit, child.wait_with_output()).await;
        let output = match output {
            Ok(Ok(output)) => {
                // It ended by itself: what it left running is its business.
                group.0 = None;
                output
            }
            Ok(Err(e)) => {
                return Err(TransportError::new(
                    kind.clone(),
                    format!("cannot wait for {}: {e}", self.describe()),
                ));
            }
            Err(_) => {
                drop(group);
                // The caller's kind, not `Timeout`: for the spooler this is the link failing
                // (the rest of the queue waits), not one message taking too long.
                return Err(TransportError::new(
                    kind,
                    format!(
                        "{} did not finish within {} ([spooler] timeout); it was stopped",
                        self.describe(),
                        humantime::format_duration(limit)
                    ),
                ));
            }
        };
        if !output.status.success() {
            return Err(TransportError::new(
                kind,
                format!(
                    "{} failed ({}); run it by hand to see why",
                    self.describe(),
                    output.status
                ),
            ));
        }
        Ok(output)
    }
}

/// Kills a process group (the command's, whose id is its leader's pid) when dropped, unless
/// the command ended by itself first (then `None`).
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take()
            && let Ok(pgid) = libc::pid_t::try_from(pgid)
        {
            // SAFETY: killpg only sends a signal. The leader has not been reaped (we still
            // hold its child handle, or kill_on_drop reaps it after this), so the group id
            // cannot have been reused by an unrelated process.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Whether any process of group `pgid` is left (zombies are gone for good, so they do not
    /// count).
    fn group_alive(pgid: u32) -> bool {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .any(|stat| {
                let Some((_, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                // state is field 3, pgrp field 5 of stat; after the ')' they are 0 and 2.
                fields.first().is_some_and(|s| *s != "Z")
                    && fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
            })
    }

    /// Waits (on the condition, with a generous deadline) until group `pgid` is gone.
    pub(crate) async fn group_gone(pgid: u32) -> bool {
        for _ in 0..200 {
            if !group_alive(pgid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// The pid the command wrote to `file` (its shell's, which leads its group).
    pub(crate) async fn leader(file: &std::path::Path) -> u32 {
        for _ in 0..400 {
            if let Ok(text) = std::fs::read_to_string(file)
                && let Ok(pid) = text.trim().parse()
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the command never started");
    }

    #[tokio::test]
    async fn a_hung_command_is_stopped_with_its_children_and_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let line = format!(
            "echo $$ > {}; sleep 1000 & sleep 1000; wait",
            pidfile.display()
        );
        let cmd = ProfileCommand {
            setting: "connect_command",
            transport: "work",
            command: &line,
        };
        let err = cmd
            .run(
                Duration::from_millis(300),
                Stdio::null(),
                false,
                TransportErrorKind::Connect,
            )
            .await
            .expect_err("it hangs");
        assert_eq!(err.kind, TransportErrorKind::Connect);
        assert!(
            err.message.starts_with(
                "connect_command of transport \"work\" (`echo …`) did not finish within 300ms"
            ),
            "{}",
            err.message
        );
        let pgid = leader(&pidfile).await;
        assert!(
            group_gone(pgid).await,
            "the sleeps of group {pgid} still run"
        );
    }

    #[tokio::test]
    async fn dropping_the_wait_kills_the_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let line = format!("echo $$ > {}; sleep 1000", pidfile.display());
        let cmd = ProfileCommand {
            setting: "password_command",
            transport: "work",
            command: &line,
        };
        let mut run = Box::pin(cmd.run(
            Duration::from_secs(3600),
            Stdio::null(),
            true,
            TransportErrorKind::Auth,
        ));
        // Poll it until the command runs, then drop it, as a dropped flush would.
        let pgid = tokio::select! {
            _ = &mut run => panic!("`sleep 1000` ended"),
            pid = leader(&pidfile) => pid,
        };
        assert!(group_alive(pgid));
        drop(run);
        assert!(group_gone(pgid).await, "group {pgid} still runs");
    }

    #[tokio::test]
    async fn a_command_that_ends_keeps_what_it_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("pid");
        let line = format!(
            "sh -c 'echo $$ > {}; exec sleep 1000' >/dev/null 2>&1 & echo started",
            pidfile.display()
        );
        let cmd = ProfileCommand {
            setting: "connect_command",
            transport: "vpn",
            command: &line,
        };
        let out = cmd
            .run(
                Duration::from_secs(30),
                Stdio::null(),
                true,
                TransportErrorKind::Connect,
            )
            .await
            .expect("it ends");
        assert_eq!(out.stdout, b"started\n");
        let background = leader(&pidfile).await;
        assert!(
            std::path::Path::new(&format!("/proc/{background}")).exists(),
            "the background process was killed"
        );
        // SAFETY: a plain kill of the process this test started.
        unsafe {
            libc::kill(background as libc::pid_t, libc::SIGKILL);
        }
    }
}

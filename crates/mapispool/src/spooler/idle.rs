//! IMAP IDLE (`idle = true`): while the spooler's clocks run ([`Spooler::run_schedules`]), each
//! such transport keeps one connection in IDLE on its folder. A push of new mail (`EXISTS`)
//! starts a download of that transport at once — the same flush a client's `FLUSH_DOWNLOAD`
//! runs — and, when it brought something, the transport's status row says "New mail" (the row
//! change is the notification: clients watching the status table see it). The IDLE is renewed
//! before 29 minutes; a dropped connection is reopened with a growing pause, and a reconnect
//! downloads once, since pushes while disconnected are lost. Each connection runs the
//! transport's `connect_command` first, as a flush does; a transport that needs a person to
//! connect (a password prompt, an interactive `connect_command`) gets no IDLE. IDLE follows the
//! transport's own offline switch, whatever its send/receive groups say: a push is not a
//! group's scheduled flush.

use std::time::Duration;

use mapi::tag::{PR_MSP_IDLE, PR_STATUS_STRING};
use mapi::{Prop, PropValue};
use tokio::sync::watch;

use super::{Scope, Spooler, phase, text};
use crate::flush::FlushFlags;
use crate::profile::InboundConfig;
use crate::store::Store;
use crate::transport::imap::{Idled, ImapInbound};

/// How long one IDLE lasts before it is renewed (RFC 2177: under 29 minutes).
const RENEW: Duration = Duration::from_secs(25 * 60);
/// The first pause after a failed connection; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(5 * 60);
/// How often an offline transport is looked at again.
const OFFLINE_POLL: Duration = Duration::from_secs(2);

impl<S: Store + 'static> Spooler<S> {
    /// Starts a watcher for every transport with `idle = true` on an IMAP inbound side; each
    /// stops when `stop` turns true. Returns their handles.
    pub(super) fn start_idle_watchers(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.inner
            .profile
            .transports
            .iter()
            .filter(|t| matches!(&t.inbound, Some(InboundConfig::Imap(c)) if c.idle))
            .map(|t| {
                let spooler = self.clone();
                let name = t.name.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let _ = spooler.idle_watch(&name, stop).await;
                    spooler.set_idling(&name, false);
                })
            })
            .collect()
    }

    /// One transport's watcher, until `stop` (then `None`). Waiting (connecting, idling, pausing) is cut
    /// short by `stop`; a download already started is finished, as the schedule's are.
    async fn idle_watch(&self, name: &str, mut stop: watch::Receiver<bool>) -> Option<()> {
        // `None` once `stop` is true (or its sender is gone).
        async fn until<T>(
            stop: &mut watch::Receiver<bool>,
            f: impl Future<Output = T>,
        ) -> Option<T> {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => None,
                v = f => Some(v),
            }
        }
        let slot = self.slot(name)?;
        let Some(InboundConfig::Imap(config)) = &slot.config.inbound else {
            return None;
        };
        if slot.config.needs_person() {
            // Nobody answers a prompt for a connection that lives in the background; the
            // schedule's and the clients' flushes still fetch this transport's mail.
            tracing::warn!(
                transport = name,
                reason = super::needs_person_reason(&slot.config),
                "IMAP IDLE: not started, connecting needs a person"
            );
            return None;
        }
        let mut pause = RETRY_FIRST;
        let mut first = true;
        loop {
            if self.is_offline(name) == Some(true) {
                until(&mut stop, tokio::time::sleep(OFFLINE_POLL)).await?;
                continue;
            }
            // Scheduled-flush rules: nobody is watching, so no prompts.
            let mut imap = ImapInbound::new(config, name, &slot.config.address, false);
            imap.set_timeout(self.inner.profile.spooler.timeout);
            // The tunnel or VPN a flush brings up before it connects, this connection needs too.
            let connected = async {
                self.run_connect_command(&slot.config).await?;
                imap.connect().await
            };
            if let Err(e) = until(&mut stop, connected).await? {
                tracing::warn!(transport = name, error = %e, retry_in = ?pause, "IMAP IDLE: cannot connect");
                until(&mut stop, tokio::time::sleep(pause)).await?;
                pause = (pause * 2).min(RETRY_MAX);
                continue;
            }
            // Whatever arrived while no IDLE listened (not on the very first connection: the
            // schedule's first flush covers that).
            if !first {
                self.idle_download(name).await;
            }
            first = false;
            loop {
                self.set_idling(name, true);
                match until(&mut stop, imap.idle_wait(RENEW)).await? {
                    Ok(Idled::NewMail) => {
                        pause = RETRY_FIRST;
                        tracing::info!(transport = name, "IMAP IDLE: new mail");
                        self.idle_download(name).await;
                    }
                    Ok(Idled::Quiet) => pause = RETRY_FIRST,
                    Err(e) => {
                        self.set_idling(name, false);
                        tracing::warn!(transport = name, error = %e, retry_in = ?pause, "IMAP IDLE: connection lost");
                        until(&mut stop, tokio::time::sleep(pause)).await?;
                        pause = (pause * 2).min(RETRY_MAX);
                        break;
                    }
                }
                if self.is_offline(name) == Some(true) {
                    self.set_idling(name, false);
                    imap.close().await;
                    break;
                }
            }
        }
    }

    /// `FLUSH_DOWNLOAD` of one transport, as the spooler's own clock runs it; a row saying
    /// "New mail" when it brought something.
    async fn idle_download(&self, name: &str) {
        let flags = FlushFlags::DOWNLOAD | FlushFlags::NO_UI;
        let scope = Scope {
            scheduled: true,
            ..Scope::default()
        };
        match self.start_flush(vec![name.to_string()], flags, scope).await {
            Ok(report) => {
                let received: usize = report.transports.iter().map(|t| t.received).sum();
                if received > 0
                    && let Some(slot) = self.slot(name)
                {
                    self.inner.board.update(
                        &slot.kind,
                        vec![
                            text(
                                PR_STATUS_STRING,
                                &format!("New mail: {received} message(s)"),
                            ),
                            phase("new mail"),
                        ],
                    );
                }
            }
            Err(e) => tracing::warn!(transport = name, error = %e, "IMAP IDLE: download refused"),
        }
    }

    /// `PR_MSP_IDLE` on the transport's row: whether an IDLE connection listens for new mail.
    fn set_idling(&self, name: &str, on: bool) {
        if let Some(slot) = self.slot(name) {
            self.inner.board.update(
                &slot.kind,
                vec![Prop::new(PR_MSP_IDLE, PropValue::Boolean(on))],
            );
        }
    }
}

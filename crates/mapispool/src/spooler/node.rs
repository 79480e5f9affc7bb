//! This spooler as a node of the queue it works (see `store/node.rs` for the leases): it
//! registers at start, beats every `[spooler] heartbeat` — which keeps the leases of what it
//! is sending and tells it when a dead node left messages behind — and says in the status
//! table when the store cannot be reached. Wake-ups (a heartbeat that found a dead node's
//! messages, the store's notifications) are flushed by the daemon's schedule loop.

use std::sync::{Arc, Weak};

use mapi::constants::STATUS_FAILURE;
use mapi::tag::PR_STATUS_STRING;
use mapi::{FileTime, MapiError};

use super::{Inner, Spooler, text};
use crate::status::StatusKind;
use crate::store::{NodeInfo, Store};

/// What a node knows about its own liveness, between heartbeats.
#[derive(Debug, Default)]
pub(super) struct NodeHealth {
    /// The store did not answer the last heartbeat: why, and since when.
    pub unreachable: Option<(FileTime, String)>,
}

impl<S: Store + 'static> Spooler<S> {
    /// This node as the store lists it.
    pub fn node(&self) -> &NodeInfo {
        &self.inner.node
    }

    /// Registers the node and starts its heartbeat (a task that holds the spooler weakly: it
    /// ends when the spooler is dropped or [`Spooler::stop_node`] is called).
    pub(super) async fn join_queue(&self) {
        let config = &self.inner.profile.spooler;
        match self
            .inner
            .store
            .register_node(&self.inner.node, FileTime::now(), config.lease_time())
            .await
        {
            Ok(beat) if beat.orphaned > 0 => self.inner.wake.notify_one(),
            Ok(_) => {}
            Err(e) => self.store_unreachable(&e),
        }
        let weak: Weak<Inner<S>> = Arc::downgrade(&self.inner);
        let every = config.heartbeat;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A heartbeat that comes late (the store was slow) is not followed by a burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                Spooler { inner }.beat().await;
            }
        });
        if let Ok(mut slot) = self.inner.heartbeat.lock() {
            *slot = Some(task);
        }
    }

    /// One heartbeat: renews the node and its leases; wakes the schedule loop when a dead
    /// node's messages are due; shows an unreachable store in the status table.
    pub(super) async fn beat(&self) {
        let status = self
            .inner
            .board
            .row(&StatusKind::Spooler)
            .and_then(|r| match r.get(PR_STATUS_STRING) {
                Some(mapi::PropValue::Unicode(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let config = &self.inner.profile.spooler;
        let now = FileTime::now();
        match self
            .inner
            .store
            .heartbeat(&self.inner.node, &status, now, config.lease_time())
            .await
        {
            Ok(beat) => {
                self.store_reachable();
                if beat.orphaned > 0 {
                    tracing::info!(
                        messages = beat.orphaned,
                        "messages of a node that stopped beating are due: taking them over"
                    );
                    self.inner.wake.notify_one();
                }
            }
            Err(e) => self.store_unreachable(&e),
        }
    }

    /// Stops the heartbeat and marks the node stopped (a clean shutdown, after the last flush
    /// has given its leases back).
    pub async fn stop_node(&self) {
        if let Some(task) = self.inner.heartbeat.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
        if let Err(e) = self
            .inner
            .store
            .node_stopped(&self.inner.node.instance, FileTime::now())
            .await
        {
            tracing::warn!(error = %e, "cannot record that this node stopped; it will show as dead once its heartbeat is old");
        }
    }

    /// Whether the last heartbeat reached the store.
    pub fn store_is_reachable(&self) -> bool {
        self.inner
            .health
            .lock()
            .map(|h| h.unreachable.is_none())
            .unwrap_or(true)
    }

    fn store_unreachable(&self, e: &MapiError) {
        let every = humantime::format_duration(self.inner.profile.spooler.heartbeat);
        let words = format!("store unreachable: {}; retrying every {every}", e.cause);
        let first = match self.inner.health.lock() {
            Ok(mut h) => {
                let first = h.unreachable.is_none();
                h.unreachable = Some((FileTime::now(), words.clone()));
                first
            }
            Err(_) => true,
        };
        if first {
            tracing::error!(error = %e, "the store cannot be reached; the spooler pauses until it can");
        }
        let board = &self.inner.board;
        board.change_bits(
            &StatusKind::Store,
            STATUS_FAILURE,
            0,
            vec![text(PR_STATUS_STRING, &words)],
        );
        board.update(&StatusKind::Spooler, vec![text(PR_STATUS_STRING, &words)]);
    }

    fn store_reachable(&self) {
        let was = match self.inner.health.lock() {
            Ok(mut h) => h.unreachable.take(),
            Err(_) => None,
        };
        let Some((since, _)) = was else { return };
        tracing::info!(
            down_for = %humantime::format_duration(std::time::Duration::from_secs(super::age(since).as_secs())),
            "the store answers again; resuming"
        );
        let board = &self.inner.board;
        board.change_bits(
            &StatusKind::Store,
            0,
            STATUS_FAILURE,
            vec![text(PR_STATUS_STRING, "Available")],
        );
        board.update(
            &StatusKind::Spooler,
            vec![text(PR_STATUS_STRING, "Store reachable again; resuming")],
        );
        // What waited while the store was away goes now.
        self.inner.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mapi::FileTime;

    use super::*;
    use crate::profile::Profile;
    use crate::store::{Folder, LeaseFilter, NewMessage, NewRecipient, NodeState, PgStore};

    /// A profile whose only transport writes into a post-office directory, with `spooler`
    /// lines in `[spooler]`; no schedule, so only wake-ups flush.
    fn profile(dir: &std::path::Path, spooler: &str) -> Profile {
        let po = dir.join("postoffice");
        let text = format!(
            "[store]\npath = \"{store}\"\n\n[spooler]\n{spooler}\n\n[[transport]]\n\
             name = \"local\"\naddress = \"me@localhost\"\n[transport.outbound]\n\
             kind = \"dir\"\npath = \"{po}\"\n",
            store = dir.join("unused.db").display(),
            po = po.display(),
        );
        Profile::from_str_at(&text, &dir.join("profile.toml")).expect("profile")
    }

    async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if check().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Issue 14: a node leased three messages and died (its leases stand in the shared
    /// PostgreSQL queue, nobody extends them). A live node with no schedule at all — only its
    /// heartbeat can make it flush — sends all three once the dead node's leases run out, and
    /// lists the dead node as dead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_node_takes_over_a_dead_nodes_messages_on_its_heartbeat() {
        let url = crate::store::postgres::testing::fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = PgStore::open(&url, None).await.expect("open");
        let mut ids = Vec::new();
        for i in 0..3 {
            let message = NewMessage {
                subject: format!("orphan {i}"),
                sender_address: Some("me@localhost".into()),
                transport: Some("local".into()),
                recipients: vec![NewRecipient::to("you@localhost")],
                ..NewMessage::default()
            };
            let body = format!("Subject: orphan {i}\r\n\r\nhello\r\n");
            ids.push(
                shared
                    .submit(message, body.as_bytes())
                    .await
                    .expect("submit")
                    .id,
            );
        }
        let dead = NodeInfo {
            instance: "elsewhere:99:1".into(),
            name: "node-a".into(),
            host: "elsewhere".into(),
            pid: 99,
            started: FileTime::now(),
        };
        let lease = Duration::from_millis(1500);
        shared
            .register_node(&dead, FileTime::now(), lease)
            .await
            .expect("register the doomed node");
        let leased = shared
            .lease_due(
                &dead.instance,
                FileTime::now(),
                lease,
                10,
                LeaseFilter::default(),
            )
            .await
            .expect("lease");
        assert_eq!(leased.len(), 3);

        let profile = profile(
            dir.path(),
            "node = \"node-b\"\nheartbeat = \"300ms\"\nlease = \"1500ms\"",
        );
        let store = PgStore::open(&url, None).await.expect("open");
        let spooler = Spooler::start(profile, store).await.expect("start");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = {
            let spooler = spooler.clone();
            tokio::spawn(async move {
                spooler
                    .run_schedules(async {
                        let _ = stopped.await;
                    })
                    .await
            })
        };
        let sent = wait_for(Duration::from_secs(30), async || {
            shared
                .messages(Folder::SentItems)
                .await
                .is_ok_and(|m| m.len() == 3)
        })
        .await;
        assert!(sent, "the dead node's messages were not taken over");
        let nodes = shared.nodes().await.expect("nodes");
        let now = FileTime::now();
        let state = |name: &str| {
            nodes
                .iter()
                .find(|n| n.info.name == name)
                .map(|n| n.state(now))
        };
        assert_eq!(state("node-a"), Some(NodeState::Dead));
        assert_eq!(state("node-b"), Some(NodeState::Alive));
        let _ = stop.send(());
        running.await.expect("schedules");
        spooler.stop_node().await;
        let nodes = shared.nodes().await.expect("nodes");
        assert!(
            nodes
                .iter()
                .any(|n| n.info.name == "node-b" && n.state(FileTime::now()) == NodeState::Stopped)
        );
    }
}

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
            .register_node(
                &self.inner.node,
                self.inner.store.now(),
                config.lease_time(),
            )
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

    /// Forgets leases this spooler is done with (recorded, released or given up on): the
    /// heartbeat no longer extends them.
    pub(super) fn let_go(&self, ids: &[crate::store::MessageId]) {
        if let Ok(mut held) = self.inner.held.lock() {
            for id in ids {
                held.remove(id);
            }
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
        let now = self.inner.store.now();
        let held: Vec<crate::store::MessageId> = self
            .inner
            .held
            .lock()
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        match self
            .inner
            .store
            .heartbeat(&self.inner.node, &status, now, config.lease_time(), &held)
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
        // No heartbeat: the node never joined the queue ([`Spooler::start_to_read`]) or has
        // stopped already, and there is no row of its own to mark.
        let Some(task) = self.inner.heartbeat.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        task.abort();
        if let Err(e) = self
            .inner
            .store
            .node_stopped(&self.inner.node.instance, self.inner.store.now())
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

    /// Submits a one-line message `subject` from `from` to `to`, leaving by `transport`.
    async fn submit_one(
        store: &PgStore,
        subject: &str,
        transport: &str,
        from: &str,
        to: &str,
    ) -> crate::store::MessageId {
        let message = NewMessage {
            subject: subject.to_owned(),
            sender_address: Some(from.into()),
            transport: Some(transport.into()),
            recipients: vec![NewRecipient::to(to)],
            ..NewMessage::default()
        };
        let body = format!("Subject: {subject}\r\n\r\nhello\r\n");
        store
            .submit(message, body.as_bytes())
            .await
            .expect("submit")
            .id
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
            let subject = format!("orphan {i}");
            ids.push(submit_one(&shared, &subject, "local", "me@localhost", "you@localhost").await);
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

    /// A loopback SMTP server that takes every message, for the wake-up tests: it notes when
    /// each `MAIL FROM` (the first command of a transaction) arrives.
    async fn smtp_sink() -> (
        u16,
        tokio::sync::mpsc::UnboundedReceiver<std::time::Instant>,
    ) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 sink ready\r\n").await;
                    let mut in_data = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply: &[u8] = if in_data {
                            if line != "." {
                                continue;
                            }
                            in_data = false;
                            b"250 2.0.0 queued\r\n"
                        } else {
                            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                            match verb.as_str() {
                                "EHLO" => b"250-sink\r\n250 PIPELINING\r\n",
                                "MAIL" => {
                                    let _ = tx.send(std::time::Instant::now());
                                    b"250 2.1.0 ok\r\n"
                                }
                                "DATA" => {
                                    in_data = true;
                                    b"354 go on\r\n"
                                }
                                "QUIT" => {
                                    let _ = write.write_all(b"221 bye\r\n").await;
                                    return;
                                }
                                _ => b"250 ok\r\n",
                            }
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, rx)
    }

    fn smtp_profile(dir: &std::path::Path, node: &str, port: u16) -> Profile {
        let text = format!(
            "[store]\npath = \"{store}\"\n\n[spooler]\nnode = \"{node}\"\n\
             upload_interval = \"24h\"\nheartbeat = \"1h\"\nlease = \"3h\"\n\n\
             [[transport]]\nname = \"relay\"\naddress = \"me@example.com\"\n\
             [transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             security = \"none\"\n",
            store = dir.join("unused.db").display(),
        );
        Profile::from_str_at(&text, &dir.join(format!("{node}.toml"))).expect("profile")
    }

    /// Issue 14: two idle nodes whose schedule is a day and whose heartbeat is an hour, so
    /// that only PostgreSQL's `NOTIFY` can make them send: each message submitted into the
    /// shared store (as `sendmail` on node A does) reaches the SMTP sink at once, from one of
    /// them. Prints the latency from the submit to the `MAIL FROM` (run with --nocapture; the
    /// figure is in RELIABILITY.md): asserting on it would make this a timed test.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_submit_wakes_idle_nodes_through_notify() {
        let url = crate::store::postgres::testing::fresh_database().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, mut mail_from) = smtp_sink().await;
        let mut nodes = Vec::new();
        for name in ["node-a", "node-b"] {
            let store = PgStore::open(&url, None).await.expect("open");
            let spooler = Spooler::start(smtp_profile(dir.path(), name, port), store)
                .await
                .expect("start");
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
            nodes.push((spooler, stop, running));
        }
        let submitter = PgStore::open(&url, None).await.expect("open");
        // Idle: both listen, and both have run the flush a schedule starts with.
        let ready = wait_for(Duration::from_secs(30), async || {
            let listening: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'",
            )
            .fetch_one(submitter.pool())
            .await
            .unwrap_or(0);
            listening == 2
                && nodes.iter().all(|(s, _, _)| {
                    s.board()
                        .row(&StatusKind::Spooler)
                        .is_some_and(|r| r.get(mapi::tag::PR_MSP_LAST_FLUSH_TIME).is_some())
                })
        })
        .await;
        assert!(ready, "the nodes did not settle");
        let mut latencies = Vec::new();
        for i in 0..20 {
            let start = std::time::Instant::now();
            let subject = format!("wake {i}");
            submit_one(
                &submitter,
                &subject,
                "relay",
                "me@example.com",
                "you@example.org",
            )
            .await;
            let arrived = tokio::time::timeout(Duration::from_secs(20), mail_from.recv())
                .await
                .ok()
                .flatten()
                .expect("no node sent the message: the notification did not wake them");
            latencies.push(arrived.saturating_duration_since(start));
            let sent = wait_for(Duration::from_secs(20), async || {
                submitter
                    .messages(Folder::SentItems)
                    .await
                    .is_ok_and(|m| m.len() == i + 1)
            })
            .await;
            assert!(sent, "message {i} was not recorded as sent");
        }
        latencies.sort();
        println!(
            "submit -> MAIL FROM at the sink, 2 idle PostgreSQL nodes, 20 messages: median {:?}, max {:?}",
            latencies[latencies.len() / 2],
            latencies[latencies.len() - 1]
        );
        for (spooler, stop, running) in nodes {
            let _ = stop.send(());
            running.await.expect("schedules");
            spooler.stop_node().await;
        }
    }
}

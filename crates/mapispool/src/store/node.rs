//! Spooler nodes: the processes that work one queue, as the store records them (the `nodes`
//! table on both backends). On PostgreSQL several machines share the queue; on SQLite the
//! processes of one machine do.
//!
//! # Leases, heartbeats and the takeover bound
//! A node leases messages for its lease time `L` ([`super::Store::lease_due`]). Every heartbeat
//! interval `H` it calls [`super::Store::heartbeat`], which renews its row and extends every
//! lease it still holds to `now + L`, so a live node keeps what it is sending however long
//! that takes. A node that dies stops extending: its leases expire at most `L` after its last
//! heartbeat, and another node's next heartbeat (within `H`) sees them expired
//! ([`Heartbeat::orphaned`]) and flushes, taking them over. So a dead node's messages move again
//! within **`L + H`** of its death (plus the clock difference between the nodes: leases are
//! stamped with each node's own clock, so nodes must keep time with NTP).
//!
//! A node whose lease was taken over cannot record an outcome for that message: the lease owner
//! is checked inside the recording transaction ([`super::Store::record_outcomes`],
//! `MAPI_E_NO_ACCESS`), so attempts, backoff and non-delivery reports happen once cluster-wide.

use mapi::tag::*;
use mapi::{FileTime, PropValue, Row};

use super::QueueCounts;

/// What a node says about itself when it registers and on every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The lease owner it writes on the messages it leases (`host:pid:start`): unique per
    /// process, so a restarted node is a new instance.
    pub instance: String,
    /// The node's name: the profile's `[spooler] node`, else the host name.
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub started: FileTime,
}

/// A node as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub info: NodeInfo,
    /// Its last heartbeat, on the store's clock ([`super::Store::now`]).
    pub heartbeat: FileTime,
    /// Its last heartbeat plus its lease time: after this its leases have expired.
    pub alive_until: FileTime,
    /// When it stopped cleanly; `None` while it runs or when it died.
    pub stopped: Option<FileTime>,
    /// Its spooler's status string at the last heartbeat.
    pub status: String,
    /// How far its clock was ahead of the store's at its last heartbeat, in milliseconds
    /// (negative: behind); `None` where no node measures it (SQLite: one machine, one clock).
    pub clock_offset_ms: Option<i64>,
}

/// Whether a node runs, as the cluster view says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Heartbeating: its leases hold.
    Alive,
    /// Stopped cleanly: it gave its leases back.
    Stopped,
    /// No heartbeat for longer than its lease time: it died or lost the database, and its
    /// messages are free for the other nodes.
    Dead,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Stopped => "stopped",
            NodeState::Dead => "dead",
        }
    }
}

impl NodeRecord {
    /// Its state against the clock `now`.
    pub fn state(&self, now: FileTime) -> NodeState {
        if self.stopped.is_some() {
            NodeState::Stopped
        } else if self.alive_until > now {
            NodeState::Alive
        } else {
            NodeState::Dead
        }
    }
}

/// What one [`super::Store::heartbeat`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Leases of this node extended.
    pub extended: u32,
    /// Queued messages whose lease has expired without being given back: a dead node's (or a
    /// node that lost the database). Due now: the caller should flush to take them over.
    pub orphaned: u32,
}

impl NodeRecord {
    /// The node's row in the cluster view: `PR_DISPLAY_NAME` (its name), `PR_INSTANCE_KEY`
    /// and `PR_MSP_NODE_INSTANCE` (its instance), `PR_MSP_NODE_STATE` (`alive`, `dead`,
    /// `stopped` against `now`), `PR_MSP_NODE_HOST`, `PR_MSP_NODE_PID`,
    /// `PR_MSP_NODE_STARTED`, `PR_MSP_NODE_HEARTBEAT` (its last) and `PR_STATUS_STRING` (its
    /// spooler's status then), and `PR_MSP_NODE_CLOCK_OFFSET` where the node measured its
    /// clock against the store's.
    pub fn to_row(&self, now: FileTime) -> Row {
        let mut row = Row::new(vec![]);
        row.set(
            PR_INSTANCE_KEY,
            PropValue::Binary(self.info.instance.as_bytes().to_vec()),
        );
        row.set(PR_DISPLAY_NAME, PropValue::Unicode(self.info.name.clone()));
        row.set(
            PR_MSP_NODE_STATE,
            PropValue::Unicode(self.state(now).as_str().into()),
        );
        row.set(PR_MSP_NODE_HOST, PropValue::Unicode(self.info.host.clone()));
        row.set(
            PR_MSP_NODE_PID,
            PropValue::Long(i32::try_from(self.info.pid).unwrap_or(i32::MAX)),
        );
        row.set(PR_MSP_NODE_STARTED, PropValue::SysTime(self.info.started));
        row.set(PR_MSP_NODE_HEARTBEAT, PropValue::SysTime(self.heartbeat));
        row.set(
            PR_MSP_NODE_INSTANCE,
            PropValue::Unicode(self.info.instance.clone()),
        );
        row.set(PR_STATUS_STRING, PropValue::Unicode(self.status.clone()));
        if let Some(ms) = self.clock_offset_ms {
            let ms = i32::try_from(ms).unwrap_or(if ms < 0 { i32::MIN } else { i32::MAX });
            row.set(PR_MSP_NODE_CLOCK_OFFSET, PropValue::Long(ms));
        }
        row
    }
}

/// The cluster view's rows: every node ([`NodeRecord::to_row`]), then one row for the shared
/// queue (`PR_DISPLAY_NAME` "shared queue", `PR_MSP_NODE_STATE` "queue") with its counts by
/// state summed over every route: `PR_MSP_QUEUED_COUNT` (due), `PR_MSP_SENDING_COUNT`
/// (leased by a live lease), `PR_MSP_DEFERRED_COUNT` (waiting for a retry),
/// `PR_MSP_SCHEDULED_COUNT` (deferred delivery).
pub fn cluster_rows(nodes: &[NodeRecord], counts: &[QueueCounts], now: FileTime) -> Vec<Row> {
    let mut rows: Vec<Row> = nodes.iter().map(|n| n.to_row(now)).collect();
    let sum = |f: fn(&QueueCounts) -> u32| {
        let total: u64 = counts.iter().map(|c| u64::from(f(c))).sum();
        PropValue::Long(i32::try_from(total).unwrap_or(i32::MAX))
    };
    let mut queue = Row::new(vec![]);
    queue.set(PR_INSTANCE_KEY, PropValue::Binary(b"queue".to_vec()));
    queue.set(PR_DISPLAY_NAME, PropValue::Unicode("shared queue".into()));
    queue.set(PR_MSP_NODE_STATE, PropValue::Unicode("queue".into()));
    queue.set(PR_MSP_QUEUED_COUNT, sum(|c| c.queued));
    queue.set(PR_MSP_SENDING_COUNT, sum(|c| c.sending));
    queue.set(PR_MSP_DEFERRED_COUNT, sum(|c| c.deferred));
    queue.set(PR_MSP_SCHEDULED_COUNT, sum(|c| c.scheduled));
    rows.push(queue);
    rows
}

//! mapispool: the MAPI send/receive subsystem — a durable message store, transports, and the
//! spooler that moves mail between them when asked (`FlushQueues`) or on a schedule.
//!
//! # Layout
//! - [`credential`]: passwords from commands, files, variables or a prompt; never logged.
//! - `command`: the profile's shell commands, bounded in time and killed with their process
//!   group on timeout or drop.
//! - [`profile`]: the TOML profile: store, spooler settings, transports.
//! - [`session`]: logon, the status table, status objects, submit, the outgoing queue.
//! - [`submission`]: what a submission is (the envelope given, what `submit` answers), shared
//!   by the session and both ends of the local API.
//! - [`status`]: status rows and entry IDs, the live status table (its `IMAPIStatus`
//!   objects belong to the session).
//! - [`ipc`]: the local API (Unix socket): where the daemon listens, its lock beside the store,
//!   the messages both ends speak, and the client a session uses when a daemon runs.
//! - [`daemon`]: the spooler daemon: serves the local API (and `[web]`) from an in-process
//!   session.
//! - [`flush`]: `FlushQueues` flags and the report a flush returns.
//! - [`spooler`]: flushing transports in profile order, retries, non-delivery reports.
//! - [`store`]: the durable message store (SQLite): folders, messages, queue, leases.
//! - [`transport`]: one file per transport kind, each with the same shape
//!   (connect, send, download, close); per-recipient results.
//! - `transport_error`: `TransportError`, a whole transport's failure (re-exported by
//!   [`transport`]); below `transport`, `tls` and `credential`, which all name it.
//! - [`web`] (`daemon::web`): the daemon's web listener (`[web]`): the API, a live status
//!   page, `/metrics`.
//! - [`tls`]: rustls (ring) client configs — webpki roots, `ca_file`, insecure_skip_verify.
//! - [`private`]: mail files 0600 and directories 0700 whatever the umask; looser ones named.
//! - [`metrics`]: the spooler's Prometheus metrics and its last flushes.
//! - [`message`]: the header summary of an RFC 5322 message; address checks; dates.
//! - [`outgoing`]: what `submit` makes of a message: the envelope, checked fields, and the
//!   `From:`, `Date:`, `Message-ID:` it adds when missing.

mod command;
pub mod credential;
pub mod daemon;
pub mod flush;
pub mod ipc;
pub mod message;
pub mod metrics;
pub mod outgoing;
pub mod private;
pub mod profile;
pub mod session;
pub mod spooler;
pub mod status;
pub mod store;
pub mod submission;
pub mod tls;
pub mod transport;
mod transport_error;

pub use daemon::web;
pub use flush::{FlushFlags, FlushReport};
pub use profile::Profile;
pub use session::Status;
pub use session::{Session, Submission, SubmitSession, Submitted};

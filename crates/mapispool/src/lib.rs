//! mapispool: the MAPI send/receive subsystem — a durable message store, transports, and the
//! spooler that moves mail between them when asked (`FlushQueues`) or on a schedule.
//!
//! # Layout
//! - [`message`]: the header summary of an RFC 5322 message; address checks.
//! - [`transport`]: one file per transport kind, each with the same shape
//!   (connect, send, download, close); per-recipient results.
pub mod message;
pub mod profile;
pub mod store;
pub mod transport;

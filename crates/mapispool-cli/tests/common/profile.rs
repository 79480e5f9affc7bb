//! The TOML of throwaway profiles and the messages the tests submit.
//!
//! Paths are written into TOML basic strings as they are: tempdir paths hold no `"` or `\`.

use std::path::Path;

/// A whole profile: the `[store]` table at `store`, then `rest` (transports, `[spooler]`, ...).
pub fn profile_toml(store: &Path, rest: &str) -> String {
    format!("[store]\npath = \"{}\"\n\n{rest}", store.display())
}

/// A `[[transport]]` that sends into and downloads from the post-office directory `po`. More
/// of the transport's tables (`[transport.connect_command]`) may follow it.
pub fn dir_transport(name: &str, address: &str, po: &Path) -> String {
    format!(
        "{}[transport.inbound]\nkind = \"dir\"\npath = \"{}\"\n",
        send_only_dir_transport(name, address, po),
        po.display()
    )
}

/// A `[[transport]]` that only sends, into the post-office directory `po`.
pub fn send_only_dir_transport(name: &str, address: &str, po: &Path) -> String {
    format!(
        "[[transport]]\nname = \"{name}\"\naddress = \"{address}\"\n[transport.outbound]\nkind = \"dir\"\npath = \"{}\"\n",
        po.display()
    )
}

/// A message with only From, To and Subject, and the body `body`.
pub fn plain_message(from: &str, to: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n")
}

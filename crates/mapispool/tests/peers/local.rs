//! Where a peer server the tests start lives on this machine: a loopback port and a short
//! directory. One definition for every peer module (each includes this file with `#[path]`,
//! since the test crates share these files by path).

use std::os::unix::fs::PermissionsExt;

/// A port free on loopback now. The server binds it a moment later, so a starter that can lose
/// the race retries with another (see the starters' loops).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A new directory under /tmp named `prefix…`: short (unix socket paths have a length limit)
/// and searchable by the servers' unprivileged users (peers.md).
// Not every test crate that includes this file starts a server in a directory.
#[allow(dead_code)]
pub fn short_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 755");
    dir
}

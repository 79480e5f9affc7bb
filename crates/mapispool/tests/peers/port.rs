//! A loopback port for a peer server the tests start: one definition for every peer module
//! (each includes this file with `#[path]`, since the test crates share these files by path).

/// A port free on loopback now. The server binds it a moment later, so a starter that can lose
/// the race retries with another (see the starters' loops).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

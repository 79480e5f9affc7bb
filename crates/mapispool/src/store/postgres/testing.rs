//! A real PostgreSQL for the unit tests: one private server per test process, started by
//! `scripts/peers/postgres.sh` (which stops it and removes its directory once the process has
//! exited), and a fresh database per test (`CREATE DATABASE` takes a few milliseconds).
//! Without PostgreSQL 15 installed the tests fail, saying how to install it: they never pass
//! by doing nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The superuser and password the script gives the cluster.
const USER: &str = "mapispool";
const PASSWORD: &str = "mapispool";

struct Server {
    port: u16,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/postgres.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start() -> Result<Server, String> {
    let mut last = String::new();
    // A port picked free can be taken before the server binds it: try another.
    for attempt in 0..4 {
        let dir =
            std::env::temp_dir().join(format!("mapispool-pg-{}-{attempt}", std::process::id()));
        let port = free_port();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .env("POSTGRES_WATCH_PID", std::process::id().to_string())
            // Throwaway databases: no fsync makes CREATE DATABASE and every commit fast.
            .env("POSTGRES_FSYNC", "off")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
        if out.status.success() {
            return Ok(Server { port });
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Err(last)
}

/// A URL (with the password) of a new, empty database on this process's server.
pub(crate) async fn fresh_database() -> String {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(e) => panic!(
            "PostgreSQL 15 did not start for the store tests: {e}\n\
             install it with scripts/peers/install.sh (Debian: apt-get install postgresql-15)"
        ),
    };
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
        server.port
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to the test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{name}",
        server.port
    )
}

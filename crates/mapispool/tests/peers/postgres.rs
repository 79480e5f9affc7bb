//! A real PostgreSQL 15 for integration tests: a private cluster per test, started by
//! `scripts/peers/postgres.sh` in a temporary directory on a free loopback port, stopped and
//! removed when dropped. A test can stop it and start it again (the data stays) to see what
//! the spooler does while the database is away.
//!
//! Without PostgreSQL 15 installed the tests fail, saying how to install it: they never pass by
//! doing nothing.

#![allow(dead_code)] // each test file uses a different part of this module

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser the script makes, and the password the tests give it: one that appears
/// nowhere else, so a test can tell it never shows.
pub const USER: &str = "mapispool";
pub const PASSWORD: &str = "pw-Zq8v3-secret";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peers/postgres.sh")
}

// Each peer file stays self-contained (test crates include them by path, several in one
// crate), so each includes the one port picker itself.
#[allow(clippy::duplicate_mod)]
#[path = "local.rs"]
mod local;
use local::free_port;

/// A running private PostgreSQL.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postgres {
    /// Initialises and starts a cluster, with one database `mail` in it.
    pub fn start() -> Postgres {
        let mut last = String::new();
        // A port picked free can be taken before the server binds it: try another.
        for _ in 0..4 {
            // Under /tmp and 0755: as root the cluster runs as nobody, who must reach it.
            let dir = tempfile::Builder::new()
                .prefix("pg")
                .tempdir_in("/tmp")
                .expect("a temporary directory");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod 755");
            let port = free_port();
            let out = Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(dir.path())
                .arg(port.to_string())
                .env("POSTGRES_PASSWORD", PASSWORD)
                .output()
                .expect("run scripts/peers/postgres.sh");
            if out.status.success() {
                let pg = Postgres { dir, port };
                pg.psql("postgres", "CREATE DATABASE mail");
                return pg;
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!(
            "PostgreSQL 15 did not start: {last}\n\
             install it with scripts/peers/install.sh (Debian: apt-get install postgresql-15)"
        );
    }

    /// The `mail` database's URL without a password (the profile gives it another way).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/mail", self.port)
    }

    /// The URL of database `db`, password included.
    pub fn url_with_password(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server (fast shutdown); the data stays for [`Postgres::restart`].
    pub fn stop(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output()
            .expect("run scripts/peers/postgres.sh stop");
        assert!(
            out.status.success(),
            "postgres.sh stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .output()
            .expect("run scripts/peers/postgres.sh start");
        assert!(
            out.status.success(),
            "postgres.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `sql` in database `db` with psql; its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(USER)
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("run psql (Debian: postgresql-client-15)");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `count(*)` of `what` (a table, maybe with a `WHERE`) in database `db`.
    pub fn count(&self, db: &str, what: &str) -> i64 {
        self.psql(db, &format!("SELECT count(*) FROM {what}"))
            .parse()
            .expect("a count")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

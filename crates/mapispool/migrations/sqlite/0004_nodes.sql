-- The spooler processes that work this queue, as on PostgreSQL (migrations/postgres/0002): on
-- SQLite they share one machine (the daemon, a session's in-process spooler), and the same
-- `mapispool status --cluster` lists them.
CREATE TABLE nodes (
    instance    TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    started     INTEGER NOT NULL,
    heartbeat   INTEGER NOT NULL,
    alive_until INTEGER NOT NULL,
    stopped     INTEGER,
    status      TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX messages_lease_owner ON messages (lease_owner) WHERE lease_owner IS NOT NULL;

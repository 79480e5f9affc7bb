-- The spooler nodes that work this queue (issue 14). Each running spooler is one row, keyed by
-- its instance: the string it writes into messages.lease_owner ("host:pid:start"), so a
-- restarted process is a new instance and a dead one's leases can be told from a live one's.
--   name         the node's name (profile [spooler] node, else the host name);
--   heartbeat    FILETIME of its last heartbeat; each heartbeat also extends its leases;
--   alive_until  heartbeat + its lease time: past it, the node's leases have expired and any
--                other node may take its messages, so it counts as dead;
--   stopped      set when it stopped cleanly (NULL while it runs, or if it died);
--   status       its spooler's status string at the last heartbeat, for the cluster view.
CREATE TABLE nodes (
    instance    TEXT   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    host        TEXT   NOT NULL,
    pid         BIGINT NOT NULL,
    started     BIGINT NOT NULL,
    heartbeat   BIGINT NOT NULL,
    alive_until BIGINT NOT NULL,
    stopped     BIGINT,
    status      TEXT   NOT NULL DEFAULT ''
);

-- A heartbeat extends the leases of one owner: find them without scanning the queue.
CREATE INDEX messages_lease_owner ON messages (lease_owner) WHERE lease_owner IS NOT NULL;

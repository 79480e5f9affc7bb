-- The message store: folders' messages with their MAPI properties as columns, recipients with
-- per-recipient delivery state, raw RFC 5322 bodies in chunks, the outgoing queue (columns on the
-- message, leased by owner + expiry so several spoolers could share it), inbound dedupe and sync
-- state. Times are FILETIME ticks (100 ns since 1601) as INTEGER.

CREATE TABLE messages (
    -- AUTOINCREMENT: ids are never reused, so an entry ID never names a different message later.
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 0 = staging (body still being written; invisible), 1 Inbox, 2 Outbox, 3 Sent Items, 4 Deleted Items.
    folder                 INTEGER NOT NULL CHECK (folder IN (0, 1, 2, 3, 4)),
    staged_at              INTEGER NOT NULL,
    message_class          TEXT    NOT NULL DEFAULT 'IPM.Note',
    subject                TEXT    NOT NULL DEFAULT '',
    sender_name            TEXT,
    sender_address         TEXT,
    envelope_from          TEXT,
    internet_message_id    TEXT,
    message_flags          INTEGER NOT NULL DEFAULT 0,
    submit_flags           INTEGER NOT NULL DEFAULT 0,
    client_submit_time     INTEGER,
    provider_submit_time   INTEGER,
    delivery_time          INTEGER,
    deferred_delivery_time INTEGER,
    delete_after_submit    INTEGER NOT NULL DEFAULT 0,
    priority               INTEGER NOT NULL DEFAULT 0,
    message_size           INTEGER NOT NULL DEFAULT 0,
    body_chunks            INTEGER NOT NULL DEFAULT 0,
    -- Outbound: the transport it must leave by (NULL until routed). Inbound: the one it came in by.
    transport              TEXT,
    server_id              TEXT,
    ndr_reason_code        INTEGER,
    ndr_diag_code          INTEGER,
    -- The outgoing queue.
    in_queue               INTEGER NOT NULL DEFAULT 0,
    attempts               INTEGER NOT NULL DEFAULT 0,
    last_error             TEXT,
    next_attempt_at        INTEGER,
    lease_owner            TEXT,
    lease_until            INTEGER
);

CREATE INDEX messages_by_folder ON messages (folder, id);
CREATE INDEX messages_queue ON messages (client_submit_time, id) WHERE in_queue = 1;

CREATE TABLE recipients (
    message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    row_id          INTEGER NOT NULL,
    display_name    TEXT    NOT NULL DEFAULT '',
    address         TEXT    NOT NULL,
    addrtype        TEXT    NOT NULL DEFAULT 'SMTP',
    recipient_type  INTEGER NOT NULL,
    responsibility  INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'deferred', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    retry_at        INTEGER,
    ndr_reason_code INTEGER,
    ndr_diag_code   INTEGER,
    PRIMARY KEY (message_id, row_id)
);

-- A normal rowid table, not WITHOUT ROWID: SQLite advises against WITHOUT ROWID for large rows.
CREATE TABLE body_chunks (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (message_id, seq)
);

-- Kept apart from messages so that deleting a delivered message does not make a
-- leave-on-server mailbox download it again.
CREATE TABLE inbound_seen (
    transport   TEXT    NOT NULL,
    server_id   TEXT    NOT NULL,
    message_id  INTEGER,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (transport, server_id)
);

CREATE TABLE sync_state (
    transport TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (transport, key)
);

-- `mapispool store copy --to PATH`: each message copied from a PostgreSQL store, by its id there
-- (kept here), recorded in the transaction that copies it. A rerun skips these, even once the
-- message has since been sent and deleted here, so a copy never sends a message twice. The
-- same table as PostgreSQL's, for the other direction.
CREATE TABLE store_copied (
    message_id INTEGER NOT NULL PRIMARY KEY,
    source     TEXT    NOT NULL,
    copied_at  INTEGER NOT NULL
);

-- How far each node's clock is from the database server's (milliseconds, ahead positive), as
-- it measured at its last heartbeat: shown in the cluster view (`status --cluster`), since the
-- queue's times follow the server's clock and only what people read follows the node's.
ALTER TABLE nodes ADD COLUMN clock_offset_ms BIGINT;

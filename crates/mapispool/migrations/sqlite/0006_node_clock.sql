-- How far each node's clock is from the store's (milliseconds, ahead positive), shown in the
-- cluster view. NULL where nobody measures it: on SQLite every node shares one machine's clock.
ALTER TABLE nodes ADD COLUMN clock_offset_ms INTEGER;

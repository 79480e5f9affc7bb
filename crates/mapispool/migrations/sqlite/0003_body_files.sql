-- Large bodies live in files beside the store (`<store>-bodies/<sha256>`), written once instead
-- of twice (WAL, then checkpoint): the file's name, NULL for a body in body_chunks. The index
-- answers "does any message still use this file" when orphans are collected.
ALTER TABLE messages ADD COLUMN body_file TEXT;
CREATE INDEX messages_body_file ON messages (body_file) WHERE body_file IS NOT NULL;

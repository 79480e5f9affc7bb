-- `queue --where "PR_MSP_ATTEMPTS > 0"` (what has failed at least once) without reading the
-- queue: the store answers such comparisons itself (QueueFilter), as SQLite does through its
-- migration 0005. Partial, like messages_queue: it holds only queued messages, so it stays as
-- small as the queue however large Sent Items grows.
CREATE INDEX messages_queue_attempts ON messages (attempts) WHERE in_queue;

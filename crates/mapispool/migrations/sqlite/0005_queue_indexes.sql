-- The queue's counts (every `status`, every flush) without reading the queue: the total per
-- route from a small index, and the few messages that are not simply due (leased, deferred by
-- the submitter, backing off) each from an index of their own that holds only those. With
-- 100,000 queued, a full scan of messages took most of `status`'s time (BENCHMARKS.md).
CREATE INDEX messages_queue_transport ON messages (transport) WHERE in_queue = 1;
CREATE INDEX messages_queue_leased ON messages (lease_until)
    WHERE in_queue = 1 AND lease_until IS NOT NULL;
CREATE INDEX messages_queue_deferred ON messages (deferred_delivery_time)
    WHERE in_queue = 1 AND deferred_delivery_time IS NOT NULL;
CREATE INDEX messages_queue_backoff ON messages (next_attempt_at)
    WHERE in_queue = 1 AND next_attempt_at IS NOT NULL;
-- `queue --where "PR_MSP_ATTEMPTS > 0"` (what has failed at least once) without a scan: the
-- store answers such comparisons itself (QueueFilter).
CREATE INDEX messages_queue_attempts ON messages (attempts) WHERE in_queue = 1;

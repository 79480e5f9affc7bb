-- Delivery status notifications (RFC 3461) a submitter asked for: NOTIFY (NEVER, or some of
-- SUCCESS, FAILURE, DELAY, comma-separated) and RET (FULL or HDRS); NULL: not asked, the
-- server's default. Sent on MAIL FROM / RCPT TO only to servers that advertise DSN.
ALTER TABLE messages ADD COLUMN dsn_notify TEXT;
ALTER TABLE messages ADD COLUMN dsn_ret TEXT;

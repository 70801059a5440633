-- When a rate-limit window ends (Unix ms), so expired counters can be
-- deleted; rows from before this column count as expired.
ALTER TABLE rate_limits ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX rate_limits_expiry ON rate_limits (expires_at);

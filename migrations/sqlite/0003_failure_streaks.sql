-- Consecutive failed guesses at one account and purpose, whatever the
-- client: kept until a right password or a new one ends the streak. The key
-- is the SHA-256 of realm/login ID/purpose, as in rate_limits.
CREATE TABLE failure_streaks (
    key              TEXT   PRIMARY KEY,
    failures         BIGINT NOT NULL,
    last_failure_at  BIGINT NOT NULL
);

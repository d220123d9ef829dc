-- Consecutive failures of one credential (a user's password, an IAM access key) and the
-- lock they led to; a row exists only once something failed. One table for the whole
-- cluster, so every node counts the same failures and honours the same lock.
CREATE TABLE lockouts (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    failures BIGINT NOT NULL,
    last_failure_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);

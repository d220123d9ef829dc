-- Tokens revoked before they expire (DELETE /v3/auth/tokens), by the token's id, until
-- their expiry: a token carries its own expiry, so a row past it is never needed again.
CREATE TABLE revoked_tokens (
    token_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_user ON revoked_tokens (user_id);

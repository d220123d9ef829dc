-- Every call to an API per minute, app and API beside the model calls' tokens: all of
-- them, those answered 4xx (429 among them) and 5xx, and those refused by a limit (429).
ALTER TABLE usage_minutes ADD COLUMN requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_minutes ADD COLUMN client_errors BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_minutes ADD COLUMN server_errors BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_minutes ADD COLUMN throttled BIGINT NOT NULL DEFAULT 0;

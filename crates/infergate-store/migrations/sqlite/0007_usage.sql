-- Model calls' token usage per minute, app (empty for other callers) and API, added to in
-- batches by the gateway nodes.
CREATE TABLE usage_minutes (
    project_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    api_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    estimated_calls BIGINT NOT NULL,
    PRIMARY KEY (project_id, app_id, api_id, minute)
);
CREATE INDEX usage_minutes_project_minute ON usage_minutes (project_id, minute);

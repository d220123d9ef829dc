-- Throttling policies count calls (REQUEST) or model tokens (TOKEN); an API has at most one
-- policy of each unit, so its binding carries the policy's unit.
ALTER TABLE throttles ADD COLUMN unit TEXT NOT NULL DEFAULT 'REQUEST';
ALTER TABLE throttles ADD COLUMN default_max_tokens BIGINT;

CREATE TABLE throttle_bindings_by_unit (
    id TEXT PRIMARY KEY,
    throttle_id TEXT NOT NULL REFERENCES throttles (id),
    api_id TEXT NOT NULL REFERENCES apis (id),
    unit TEXT NOT NULL DEFAULT 'REQUEST',
    created_at BIGINT NOT NULL,
    UNIQUE (api_id, unit)
);
INSERT INTO throttle_bindings_by_unit (id, throttle_id, api_id, unit, created_at)
    SELECT id, throttle_id, api_id, 'REQUEST', created_at FROM throttle_bindings;
DROP TABLE throttle_bindings;
ALTER TABLE throttle_bindings_by_unit RENAME TO throttle_bindings;
CREATE INDEX throttle_bindings_throttle ON throttle_bindings (throttle_id);

-- Throttling policies count calls (REQUEST) or model tokens (TOKEN); an API has at most one
-- policy of each unit, so its binding carries the policy's unit.
ALTER TABLE throttles ADD COLUMN unit TEXT NOT NULL DEFAULT 'REQUEST';
ALTER TABLE throttles ADD COLUMN default_max_tokens BIGINT;

ALTER TABLE throttle_bindings ADD COLUMN unit TEXT NOT NULL DEFAULT 'REQUEST';
ALTER TABLE throttle_bindings DROP CONSTRAINT throttle_bindings_api_id_key;
ALTER TABLE throttle_bindings ADD CONSTRAINT throttle_bindings_api_unit UNIQUE (api_id, unit);

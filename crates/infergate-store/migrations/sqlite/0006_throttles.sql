-- Request throttling policies (Huawei APIG's shape), their bindings to APIs (an API has at
-- most one policy) and special limits for single apps or users.
CREATE TABLE throttles (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    remark TEXT NOT NULL,
    api_call_limits BIGINT NOT NULL,
    user_call_limits BIGINT,
    app_call_limits BIGINT,
    ip_call_limits BIGINT,
    time_interval BIGINT NOT NULL,
    time_unit TEXT NOT NULL,
    kind BIGINT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE throttle_bindings (
    id TEXT PRIMARY KEY,
    throttle_id TEXT NOT NULL REFERENCES throttles (id),
    api_id TEXT NOT NULL UNIQUE REFERENCES apis (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX throttle_bindings_throttle ON throttle_bindings (throttle_id);

CREATE TABLE throttle_specials (
    id TEXT PRIMARY KEY,
    throttle_id TEXT NOT NULL REFERENCES throttles (id),
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    call_limits BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (throttle_id, object_type, object_id)
);

-- Apps (AppKey/AppSecret), their AppCodes, and API x app authorizations.
-- Secrets are stored sealed under the master key; an AppCode is found by a keyed hash.

CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    remark TEXT NOT NULL,
    app_key TEXT NOT NULL UNIQUE,
    secret_sealed TEXT NOT NULL,
    app_type TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX apps_owner ON apps (owner);

CREATE TABLE app_codes (
    app_id TEXT NOT NULL REFERENCES apps (id),
    position BIGINT NOT NULL,
    code_sealed TEXT NOT NULL,
    code_index TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, position)
);

CREATE TABLE authorizations (
    auth_id TEXT PRIMARY KEY,
    api_id TEXT NOT NULL REFERENCES apis (id),
    app_id TEXT NOT NULL REFERENCES apps (id),
    created_at BIGINT NOT NULL,
    UNIQUE (api_id, app_id)
);
CREATE INDEX authorizations_app ON authorizations (app_id);

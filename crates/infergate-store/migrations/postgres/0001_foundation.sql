-- Foundation: IAM subset, services, app-auth APIs and the configuration revision.
-- Append-only: later changes go in new files.

CREATE TABLE config_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO config_revision (id, revision) VALUES (1, 0);

CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    domain_admin BOOLEAN NOT NULL,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE role_grants (
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id, role)
);
CREATE INDEX role_grants_user ON role_grants (user_id);

CREATE TABLE credentials (
    access TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    secret_sealed TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX credentials_user ON credentials (user_id);

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    upstreams TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE apis (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    auth_type TEXT NOT NULL,
    support_app_code BOOLEAN NOT NULL,
    api_path TEXT NOT NULL,
    api_method TEXT NOT NULL,
    remark TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (api_path, auth_type)
);
CREATE INDEX apis_service ON apis (service_id);

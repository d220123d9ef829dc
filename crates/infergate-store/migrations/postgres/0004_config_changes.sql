-- What changed at each configuration revision: (entity, id) pairs, so a node can apply a
-- change by reading only those objects.
CREATE TABLE config_changes (
    revision BIGINT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL
);
CREATE INDEX config_changes_revision ON config_changes (revision);

-- The data key shared by every node, sealed by the key each node is given
-- (INFERGATE_MASTER_KEY). The first node to start stores it; the others read it.
CREATE TABLE cluster_keys (
    id TEXT PRIMARY KEY,
    sealed TEXT NOT NULL
);

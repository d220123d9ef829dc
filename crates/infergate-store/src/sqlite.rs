//! The embedded SQLite backend: WAL, `synchronous=FULL` (a write is acknowledged only once
//! durable), one writer connection so write transactions never fight over the lock, and a
//! small pool of readers.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::backend::Backend;
use crate::{StoreError, StoreResult};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "apps",
        include_str!("../migrations/sqlite/0002_apps.sql"),
    ),
    (
        3,
        "config changes",
        include_str!("../migrations/sqlite/0003_config_changes.sql"),
    ),
    (
        4,
        "revoked tokens",
        include_str!("../migrations/sqlite/0004_revoked_tokens.sql"),
    ),
    (
        5,
        "lockouts",
        include_str!("../migrations/sqlite/0005_lockouts.sql"),
    ),
    (
        6,
        "throttles",
        include_str!("../migrations/sqlite/0006_throttles.sql"),
    ),
    (
        7,
        "usage",
        include_str!("../migrations/sqlite/0007_usage.sql"),
    ),
    (
        8,
        "usage accounting",
        include_str!("../migrations/sqlite/0008_usage_accounting.sql"),
    ),
    (
        9,
        "token limits",
        include_str!("../migrations/sqlite/0009_token_limits.sql"),
    ),
    (
        10,
        "load balancing",
        include_str!("../migrations/sqlite/0010_load_balancing.sql"),
    ),
    (
        11,
        "upstream TLS",
        include_str!("../migrations/sqlite/0011_upstream_tls.sql"),
    ),
    (
        12,
        "health checks",
        include_str!("../migrations/sqlite/0012_health_checks.sql"),
    ),
    (
        13,
        "retries",
        include_str!("../migrations/sqlite/0013_retries.sql"),
    ),
    (
        14,
        "upstream weights",
        include_str!("../migrations/sqlite/0014_upstream_weights.sql"),
    ),
    (
        15,
        "usage statuses",
        include_str!("../migrations/sqlite/0015_usage_statuses.sql"),
    ),
];

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        crate::migrator(MIGRATIONS)
            .run(&writer)
            .await
            .map_err(|e| StoreError::Internal(format!("migrating {}: {e}", path.display())))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        Ok(Self { writer, reader })
    }
}

/// The store the shared SQL is compiled against here.
type This = SqliteStore;

// The shared statements, compiled once per backend (see `sql/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

impl Backend for SqliteStore {
    type Db = Sqlite;

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The single writer connection serialises writes.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin().await?)
    }

    /// SQLite in WAL mode reads one consistent snapshot in a transaction.
    async fn begin_snapshot(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.reader.begin().await?)
    }

    /// Nothing to announce: one process owns an SQLite file.
    async fn announce(_tx: &mut Transaction<'static, Sqlite>, _revision: i64) -> StoreResult<()> {
        Ok(())
    }
}

//! The PostgreSQL backend, for several nodes on one database. Write transactions take one
//! transaction-level advisory lock, so writes serialise as they do on SQLite and every
//! read-then-write rule (quotas, "still bound") holds across nodes. Each write's commit
//! announces the new revision on the `infergate_config` channel.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};

use crate::backend::Backend;
use crate::ConfigPublisher;
use crate::{StoreError, StoreResult};

/// The channel on which committed revisions are announced.
pub const CHANGES_CHANNEL: &str = "infergate_config";
/// The advisory lock that serialises write transactions.
const WRITE_LOCK: i64 = 0x1f6a_7e00_0001;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "apps",
        include_str!("../migrations/postgres/0002_apps.sql"),
    ),
    (
        3,
        "cluster key",
        include_str!("../migrations/postgres/0003_cluster_key.sql"),
    ),
    (
        4,
        "config changes",
        include_str!("../migrations/postgres/0004_config_changes.sql"),
    ),
    (
        5,
        "revoked tokens",
        include_str!("../migrations/postgres/0005_revoked_tokens.sql"),
    ),
    (
        6,
        "lockouts",
        include_str!("../migrations/postgres/0006_lockouts.sql"),
    ),
    (
        7,
        "throttles",
        include_str!("../migrations/postgres/0007_throttles.sql"),
    ),
    (
        8,
        "usage",
        include_str!("../migrations/postgres/0008_usage.sql"),
    ),
    (
        9,
        "usage accounting",
        include_str!("../migrations/postgres/0009_usage_accounting.sql"),
    ),
    (
        10,
        "token limits",
        include_str!("../migrations/postgres/0010_token_limits.sql"),
    ),
    (
        11,
        "load balancing",
        include_str!("../migrations/postgres/0011_load_balancing.sql"),
    ),
    (
        12,
        "upstream TLS",
        include_str!("../migrations/postgres/0012_upstream_tls.sql"),
    ),
    (
        13,
        "health checks",
        include_str!("../migrations/postgres/0013_health_checks.sql"),
    ),
    (
        14,
        "retries",
        include_str!("../migrations/postgres/0014_retries.sql"),
    ),
    (
        15,
        "upstream weights",
        include_str!("../migrations/postgres/0015_upstream_weights.sql"),
    ),
    (
        16,
        "usage statuses",
        include_str!("../migrations/postgres/0016_usage_statuses.sql"),
    ),
];

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects and runs pending migrations (under sqlx's advisory lock, so nodes starting
    /// together are safe). A call waits at most 3 s for a connection, so an outage turns
    /// into a quick 503 rather than a hung request.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to PostgreSQL: {e}")))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        crate::migrator(MIGRATIONS)
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Internal(format!("migrating: {e}")))
    }

    /// The pool, for tools that read the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies changes announced by other nodes as soon as they commit; reconnects after an
    /// outage (the publisher's periodic check covers the gap). Runs until dropped.
    pub async fn follow_changes(self, publisher: Arc<ConfigPublisher>) {
        loop {
            match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    if let Err(err) = listener.listen(CHANGES_CHANNEL).await {
                        tracing::warn!(error = %err, "LISTEN failed");
                    } else {
                        let _ = publisher.refresh().await;
                        loop {
                            match listener.recv().await {
                                Ok(_) => {
                                    if let Err(err) = publisher.refresh().await {
                                        tracing::warn!(error = %err, "applying a change failed");
                                    }
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "change notifications interrupted");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(err) => tracing::debug!(error = %err, "cannot listen for changes yet"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The cluster's sealed data key: `candidate` if none was stored yet, else the stored
    /// one. Safe when several nodes race.
    pub async fn shared_key(&self, candidate: &str) -> StoreResult<String> {
        sqlx::query(
            "INSERT INTO cluster_keys (id, sealed) VALUES ('data', $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT sealed FROM cluster_keys WHERE id = 'data'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("sealed")?)
    }
}

/// The store the shared SQL is compiled against here.
type This = PgStore;

// The shared statements, compiled once per backend (see `sql/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

impl Backend for PgStore {
    type Db = Postgres;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Takes the cluster's write lock for the transaction.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn begin_snapshot(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// PostgreSQL delivers the notice when the transaction commits.
    async fn announce(tx: &mut Transaction<'static, Postgres>, revision: i64) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(revision.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

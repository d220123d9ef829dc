//! The PostgreSQL backend, for several nodes on one database. Write transactions take one
//! transaction-level advisory lock, so writes serialise as they do on SQLite and every
//! read-then-write rule (quotas, "still bound") holds across nodes. Each write's commit
//! announces the new revision on the `infergate_config` channel.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use infergate_core::lockout::{Failures, LockSubject, LockoutPolicy};
use infergate_core::model::{
    Api, ApiMethod, App, AppCode, AuthType, Authorization, Credential, Domain, Project,
    RevokedToken, Role, Service, User,
};
use infergate_core::snapshot::{ConfigDelta, ConfigDump};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use crate::{Bootstrap, ServiceUpdate, Store, StoreError, StoreResult};

type Db = Postgres;
type DbRow = PgRow;
type DbConn = PgConnection;
type ThisStore = PgStore;

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
];

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    reader: PgPool,
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
        let store = Self { reader: pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        crate::migrator(MIGRATIONS)
            .run(&self.reader)
            .await
            .map_err(|e| StoreError::Internal(format!("migrating: {e}")))
    }

    /// The pool, for LISTEN.
    pub fn pool(&self) -> &PgPool {
        &self.reader
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.reader.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// A read-only transaction that sees one snapshot of the database.
    async fn begin_snapshot(&self) -> StoreResult<Transaction<'static, Postgres>> {
        let mut tx = self.reader.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The cluster's sealed data key: `candidate` if none was stored yet, else the stored
    /// one. Safe when several nodes race.
    pub async fn shared_key(&self, candidate: &str) -> StoreResult<String> {
        sqlx::query(
            "INSERT INTO cluster_keys (id, sealed) VALUES ('data', $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(candidate)
        .execute(&self.reader)
        .await?;
        let row = sqlx::query("SELECT sealed FROM cluster_keys WHERE id = 'data'")
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get("sealed")?)
    }
}

/// Announces the revision; PostgreSQL delivers it when the transaction commits.
async fn after_bump(tx: &mut Transaction<'static, Db>, revision: i64) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(revision.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

include!("sql_shared.rs");

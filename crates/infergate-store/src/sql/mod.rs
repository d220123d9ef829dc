//! The SQL both backends run, per resource. The statements use `$n` placeholders, which
//! both databases accept, and only types both map the same way.
//!
//! This module is compiled once inside each backend's module (`#[path]`), against the
//! store type that module names `This`; everything it needs of the backend is the
//! [`Backend`] trait. (sqlx's generic executors would need a dozen bounds repeated on
//! every function; two monomorphic copies keep the statements plain.)

mod apps;
mod authorizations;
mod config;
mod credentials;
mod identity;
mod services;
mod throttles;
mod usage;

// Each resource's row readers and statements, for the others (the whole-configuration
// reads use them all).
use apps::*;
use authorizations::*;
use credentials::*;
use identity::*;
use services::*;
use throttles::*;

use std::str::FromStr;

use async_trait::async_trait;
use infergate_core::lockout::{Failures, LockSubject, LockoutPolicy};
use infergate_core::model::{
    Api, ApiMethod, App, AppCode, AuthType, Authorization, Credential, Domain, LoadBalancing,
    Project, RevokedToken, Role, Service, UsageCounts, UsageQuery, UsageRow, User,
};
use infergate_core::snapshot::{ConfigDelta, ConfigDump};
use infergate_core::throttle::{
    SpecialKind, Throttle, ThrottleBinding, ThrottleSpecial, ThrottleType, ThrottleUnit, TimeUnit,
};
use sqlx::{Row, Transaction};

use super::This;
use crate::backend::{Backend, Changed};
use crate::{
    AppStore, AuthorizationStore, Bootstrap, CredentialStore, IdentityStore, Recorded,
    ServiceStore, ServiceUpdate, Store, StoreError, StoreResult, ThrottleStore, UsageStore,
};

type Db = <This as Backend>::Db;
type DbRow = <Db as sqlx::Database>::Row;
type DbConn = <Db as sqlx::Database>::Connection;

/// Moves the configuration revision on and records what changed at it, so other nodes can
/// apply the change without reloading everything.
async fn bump_revision(
    tx: &mut Transaction<'static, Db>,
    changed: &[Changed<'_>],
) -> StoreResult<()> {
    let revision: i64 = sqlx::query(
        "UPDATE config_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get("revision")?;
    for change in changed {
        sqlx::query("INSERT INTO config_changes (revision, entity, entity_id) VALUES ($1, $2, $3)")
            .bind(revision)
            .bind(change.entity())
            .bind(change.id())
            .execute(&mut **tx)
            .await?;
    }
    This::announce(tx, revision).await
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored {what} is unreadable: {detail}"))
}

/// The row of `sql` (one `$1` parameter) for `id`, mapped.
async fn one_by<'e, T>(
    exec: impl sqlx::Executor<'e, Database = Db>,
    sql: &str,
    id: &str,
    map: fn(&DbRow) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    sqlx::query(sql)
        .bind(id)
        .fetch_optional(exec)
        .await?
        .as_ref()
        .map(map)
        .transpose()
}

/// The rows of `sql` (one `$1` parameter) for `id`, mapped.
async fn all_by<'e, T>(
    exec: impl sqlx::Executor<'e, Database = Db>,
    sql: &str,
    id: &str,
    map: fn(&DbRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    sqlx::query(sql)
        .bind(id)
        .fetch_all(exec)
        .await?
        .iter()
        .map(map)
        .collect()
}

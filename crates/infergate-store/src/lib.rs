//! Persistence of infergate: the [`Store`] trait and its backends.
//!
//! This crate owns SQL, migrations and the translation of database errors into
//! [`StoreError`]. It knows nothing of HTTP. Every write that changes what the gateway
//! serves bumps the configuration revision in the same transaction.

mod backend;
mod error;
mod key_lockouts;
mod postgres;
mod publisher;
mod sqlite;

use async_trait::async_trait;
use infergate_core::lockout::{Failures, LockSubject, LockoutPolicy};
use infergate_core::model::{
    Api, App, AppCode, Authorization, Credential, Domain, Project, RevokedToken, Role, Service,
    UsageQuery, UsageRow, User,
};
use infergate_core::snapshot::{ConfigDelta, ConfigDump};
use infergate_core::throttle::{Throttle, ThrottleBinding, ThrottleSpecial};

pub use error::StoreError;
pub use key_lockouts::KeyLockouts;
pub use postgres::{PgStore, CHANGES_CHANNEL};
pub use publisher::{ConfigPublisher, Refresh};
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// A migrator over migrations compiled into the binary (append-only, one list per backend).
pub(crate) fn migrator(list: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use std::borrow::Cow;
    sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            list.iter()
                .map(|(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        sqlx::migrate::MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect(),
        ),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// What the first start on an empty store creates, in one transaction.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub domain: Domain,
    pub project: Project,
    pub admin: User,
}

/// A subject's failures before and after one more was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub before: Failures,
    pub after: Failures,
}

impl Recorded {
    /// Whether this failure set a new lock.
    pub fn locked_now(&self, now: i64) -> bool {
        self.after.locked(now) && !self.before.locked(now)
    }
}

/// Fields of a service that an update may change (the default changes nothing).
#[derive(Debug, Clone, Default)]
pub struct ServiceUpdate {
    pub description: Option<String>,
    /// New upstreams; their weights are reset to equal unless `upstream_weights` is given.
    pub upstreams: Option<Vec<String>>,
    pub upstream_weights: Option<Vec<u32>>,
    pub timeout_ms: Option<u64>,
    pub usage_accounting: Option<bool>,
    pub load_balancing: Option<infergate_core::model::LoadBalancing>,
    /// `Some(None)` removes the service's CA bundle.
    pub tls_ca_pem: Option<Option<String>>,
    /// `Some(None)` removes the service's health check.
    pub health_check: Option<Option<infergate_core::model::HealthCheck>>,
    /// `Some(None)` removes the service's retry setting.
    pub retry: Option<Option<infergate_core::model::Retry>>,
    pub updated_at: i64,
}

/// The persistence interface every backend implements; one conformance suite runs on each.
/// Its parts per resource are the supertraits; bring the one a call needs into scope.
#[async_trait]
pub trait Store:
    IdentityStore
    + CredentialStore
    + ServiceStore
    + AppStore
    + AuthorizationStore
    + ThrottleStore
    + UsageStore
    + Send
    + Sync
    + 'static
{
    /// Cheap round trip to the database, for readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// The configuration revision: bumped by every write that changes routing or credentials.
    async fn revision(&self) -> StoreResult<i64>;

    /// Creates the bootstrap domain, project and admin unless a domain of that name exists.
    /// Returns whether it created them.
    async fn bootstrap(&self, plan: &Bootstrap) -> StoreResult<bool>;

    /// Everything the gateway snapshot is built from, read in one transaction.
    async fn load_config(&self) -> StoreResult<ConfigDump>;

    /// The objects changed after revision `since`, read in one transaction; `None` when
    /// the change log cannot cover the gap (then load everything).
    async fn changes_since(&self, since: i64) -> StoreResult<Option<ConfigDelta>>;
}

/// Domains, projects, users and their role grants.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn domain_by_name(&self, name: &str) -> StoreResult<Option<Domain>>;
    async fn domain(&self, id: &str) -> StoreResult<Option<Domain>>;

    async fn create_project(&self, project: &Project) -> StoreResult<()>;
    async fn project(&self, id: &str) -> StoreResult<Option<Project>>;
    async fn project_by_name(&self, domain_id: &str, name: &str) -> StoreResult<Option<Project>>;
    async fn list_projects(&self, domain_id: &str) -> StoreResult<Vec<Project>>;

    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_name(&self, domain_id: &str, name: &str) -> StoreResult<Option<User>>;
    async fn list_users(&self, domain_id: &str) -> StoreResult<Vec<User>>;
    /// Deletes a user with its role grants and credentials.
    async fn delete_user(&self, id: &str) -> StoreResult<()>;
    /// Sets a user's `enabled` flag and description (each when given) and returns the user;
    /// enabling also ends a password lockout. [`StoreError::NotFound`] when there is none.
    async fn update_user(
        &self,
        id: &str,
        enabled: Option<bool>,
        description: Option<&str>,
    ) -> StoreResult<User>;
    async fn set_password(&self, user_id: &str, hash: &str, changed_at: i64) -> StoreResult<()>;

    async fn grant_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<()>;
    /// Returns whether a grant existed.
    async fn revoke_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<bool>;
    async fn roles(&self, project_id: &str, user_id: &str) -> StoreResult<Vec<Role>>;
}

/// IAM access keys, revoked tokens, and the failures that lock passwords and keys.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Adds a credential unless the user already holds `max_per_user`
    /// (then [`StoreError::Quota`]).
    async fn create_credential(
        &self,
        credential: &Credential,
        max_per_user: u32,
    ) -> StoreResult<()>;
    async fn credential(&self, access: &str) -> StoreResult<Option<Credential>>;
    /// A user's credentials, oldest first.
    async fn list_credentials(&self, user_id: &str) -> StoreResult<Vec<Credential>>;
    /// Sets a credential's status and description (each when given) and returns it;
    /// [`StoreError::NotFound`] when there is none.
    async fn update_credential(
        &self,
        access: &str,
        status: Option<&str>,
        description: Option<&str>,
    ) -> StoreResult<Credential>;
    /// [`StoreError::NotFound`] when there is none.
    async fn delete_credential(&self, access: &str) -> StoreResult<()>;
    /// Revokes a token until its expiry (forgetting revocations expired by `now`).
    async fn revoke_token(&self, token: &RevokedToken, now: i64) -> StoreResult<()>;
    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool>;
    /// The failures recorded against a password or an access key (none: the default).
    async fn failures(&self, subject: LockSubject<'_>) -> StoreResult<Failures>;
    /// Records one failure under `policy` (a locked subject's record stays as it is) and
    /// returns the record before and after it; a lock set on an access key reaches every
    /// gateway (it bumps the revision).
    async fn record_failure(
        &self,
        subject: LockSubject<'_>,
        now: i64,
        policy: LockoutPolicy,
    ) -> StoreResult<Recorded>;
    /// Forgets a subject's failures after a success; with `keep_lock_at`, not while it is
    /// locked then (a success seen before a lock reached its plane must not end the lock).
    /// Returns whether anything was forgotten.
    async fn clear_failures(
        &self,
        subject: LockSubject<'_>,
        keep_lock_at: Option<i64>,
    ) -> StoreResult<bool>;
}

/// Inference services and their APIs.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Creates a service; a name already used in the project is a [`StoreError::Conflict`].
    async fn create_service(&self, service: &Service) -> StoreResult<()>;
    async fn service(&self, id: &str) -> StoreResult<Option<Service>>;
    async fn list_services(&self, project_id: &str) -> StoreResult<Vec<Service>>;
    /// Applies an update and returns the service as stored.
    async fn update_service(&self, id: &str, update: &ServiceUpdate) -> StoreResult<Service>;
    /// Deletes a service with its APIs (spec R16).
    async fn delete_service(&self, id: &str) -> StoreResult<()>;

    /// Creates an API; an existing (api_path, auth_type) is a [`StoreError::Conflict`].
    async fn create_api(&self, api: &Api) -> StoreResult<()>;
    async fn api(&self, id: &str) -> StoreResult<Option<Api>>;
    async fn list_apis(&self, service_id: &str) -> StoreResult<Vec<Api>>;
    /// Deletes an API with its authorizations (spec R15).
    async fn delete_api(&self, id: &str) -> StoreResult<()>;
}

/// Apps (AppKey/AppSecret) and their AppCodes.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// Creates an app unless its owner already holds `max_per_user` apps
    /// ([`StoreError::Quota`]); a name used in the project is a [`StoreError::Conflict`].
    async fn create_app(&self, app: &App, max_per_user: u32) -> StoreResult<()>;
    async fn app(&self, id: &str) -> StoreResult<Option<App>>;
    async fn app_by_name(&self, project_id: &str, name: &str) -> StoreResult<Option<App>>;
    async fn list_apps(&self, project_id: &str) -> StoreResult<Vec<App>>;
    /// Deletes an app with its AppCodes; an app still bound to APIs is refused with
    /// [`StoreError::Conflict`] (spec R6).
    async fn delete_app(&self, id: &str) -> StoreResult<()>;
    async fn set_app_secret(
        &self,
        id: &str,
        secret_sealed: &str,
        updated_at: i64,
    ) -> StoreResult<App>;
    /// Appends an AppCode unless the app holds `max_per_app` ([`StoreError::Quota`]).
    async fn add_app_code(
        &self,
        app_id: &str,
        code: &AppCode,
        max_per_app: u32,
    ) -> StoreResult<App>;
    /// Replaces the code whose index is `old_index`, keeping its position.
    async fn replace_app_code(
        &self,
        app_id: &str,
        old_index: &str,
        code: &AppCode,
    ) -> StoreResult<App>;
    async fn delete_app_code(&self, app_id: &str, index: &str, updated_at: i64)
        -> StoreResult<App>;
}

/// Which apps may call which APIs.
#[async_trait]
pub trait AuthorizationStore: Send + Sync {
    /// Binds apps to an API in one transaction. Already-bound apps keep their auth id. Per
    /// grant: the auth id in force, or `None` when the app no longer exists.
    async fn authorize(
        &self,
        api_id: &str,
        grants: &[Authorization],
    ) -> StoreResult<Vec<Option<String>>>;
    /// Unbinds apps from an API in one transaction; per app, whether it was bound.
    async fn unauthorize(&self, api_id: &str, app_ids: &[String]) -> StoreResult<Vec<bool>>;
    /// Makes `grants` the complete set of apps bound to the API, in one transaction.
    async fn replace_authorizations(
        &self,
        api_id: &str,
        grants: &[Authorization],
    ) -> StoreResult<Vec<Option<String>>>;
    async fn authorizations_of_api(&self, api_id: &str) -> StoreResult<Vec<Authorization>>;
    async fn authorizations_of_app(&self, app_id: &str) -> StoreResult<Vec<Authorization>>;
}

/// Model calls' token usage per minute.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds each row's counts to the stored row of its minute, app and API (creating it),
    /// all in one transaction: a batch is stored whole or not at all.
    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()>;
    /// The stored rows the query selects, by minute, app and API.
    async fn usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>>;
}

/// Throttling policies, their bindings to APIs and their special limits.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// A name already used in the project is a [`StoreError::Conflict`].
    async fn create_throttle(&self, throttle: &Throttle) -> StoreResult<()>;
    async fn throttle(&self, id: &str) -> StoreResult<Option<Throttle>>;
    async fn list_throttles(&self, project_id: &str) -> StoreResult<Vec<Throttle>>;
    /// Replaces the policy's fields (all but id, project, owner and creation time).
    async fn update_throttle(&self, throttle: &Throttle) -> StoreResult<()>;
    /// Deletes a policy with its bindings and special limits.
    async fn delete_throttle(&self, id: &str) -> StoreResult<()>;
    /// Binds one policy to APIs in one transaction; an API already bound to a policy is a
    /// [`StoreError::Conflict`], a missing API or policy [`StoreError::NotFound`].
    async fn bind_throttle(&self, bindings: &[ThrottleBinding]) -> StoreResult<()>;
    async fn throttle_bindings(&self, throttle_id: &str) -> StoreResult<Vec<ThrottleBinding>>;
    async fn throttle_binding(&self, id: &str) -> StoreResult<Option<ThrottleBinding>>;
    /// Removes a binding and returns it.
    async fn unbind_throttle(&self, binding_id: &str) -> StoreResult<ThrottleBinding>;
    /// One special limit per (policy, object type, object) ([`StoreError::Conflict`]).
    async fn create_throttle_special(&self, special: &ThrottleSpecial) -> StoreResult<()>;
    async fn throttle_specials(&self, throttle_id: &str) -> StoreResult<Vec<ThrottleSpecial>>;
    async fn update_throttle_special(
        &self,
        id: &str,
        call_limits: u64,
        updated_at: i64,
    ) -> StoreResult<ThrottleSpecial>;
    async fn delete_throttle_special(&self, id: &str) -> StoreResult<()>;
}

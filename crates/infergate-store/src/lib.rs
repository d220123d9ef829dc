//! Persistence of infergate: the [`Store`] trait and its backends.
//!
//! This crate owns SQL, migrations and the translation of database errors into
//! [`StoreError`]. It knows nothing of HTTP. Every write that changes what the gateway
//! serves bumps the configuration revision in the same transaction.

mod error;
mod sqlite;

use async_trait::async_trait;
use infergate_core::model::{Api, Credential, Domain, Project, Role, Service, User};

pub use error::StoreError;
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

/// What the first start on an empty store creates, in one transaction.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub domain: Domain,
    pub project: Project,
    pub admin: User,
}

/// Fields of a service that an update may change.
#[derive(Debug, Clone)]
pub struct ServiceUpdate {
    pub description: Option<String>,
    pub upstreams: Option<Vec<String>>,
    pub timeout_ms: Option<u64>,
    pub updated_at: i64,
}

/// The persistence interface every backend implements; one conformance suite runs on each.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip to the database, for readiness.
    async fn ping(&self) -> StoreResult<()>;
    /// The configuration revision: bumped by every write that changes routing or credentials.
    async fn revision(&self) -> StoreResult<i64>;

    /// Creates the bootstrap domain, project and admin unless a domain of that name exists.
    /// Returns whether it created them.
    async fn bootstrap(&self, plan: &Bootstrap) -> StoreResult<bool>;

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
    async fn set_password(&self, user_id: &str, hash: &str, changed_at: i64) -> StoreResult<()>;

    async fn grant_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<()>;
    /// Returns whether a grant existed.
    async fn revoke_role(&self, project_id: &str, user_id: &str, role: Role) -> StoreResult<bool>;
    async fn roles(&self, project_id: &str, user_id: &str) -> StoreResult<Vec<Role>>;

    /// Adds a credential unless the user already holds `max_per_user`
    /// (then [`StoreError::Quota`]).
    async fn create_credential(
        &self,
        credential: &Credential,
        max_per_user: u32,
    ) -> StoreResult<()>;
    async fn credential(&self, access: &str) -> StoreResult<Option<Credential>>;

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
    async fn delete_api(&self, id: &str) -> StoreResult<()>;
}

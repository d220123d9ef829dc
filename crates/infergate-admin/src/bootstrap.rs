//! First start on an empty store: domain `default`, project `default`, and user `admin`
//! (domain administrator, role admin in the project).

use infergate_core::crypto::hash_password;
use infergate_core::model::{Domain, Project, User};
use infergate_core::{ids, Secret};
use infergate_store::{Bootstrap, Store, StoreError};

use crate::now_ms;

pub const DEFAULT_DOMAIN: &str = "default";
pub const DEFAULT_PROJECT: &str = "default";
pub const ADMIN_USER: &str = "admin";

/// Creates the bootstrap objects unless the default domain exists; returns whether it did.
/// Safe to call on every start.
pub async fn ensure_bootstrap(
    store: &dyn Store,
    admin_password: &Secret,
) -> Result<bool, StoreError> {
    if store.domain_by_name(DEFAULT_DOMAIN).await?.is_some() {
        return Ok(false);
    }
    let password_hash =
        hash_password(admin_password).map_err(|e| StoreError::Internal(e.to_string()))?;
    let now = now_ms();
    let domain = Domain {
        id: ids::new_hex_id(),
        name: DEFAULT_DOMAIN.into(),
    };
    let plan = Bootstrap {
        project: Project {
            id: ids::new_hex_id(),
            domain_id: domain.id.clone(),
            name: DEFAULT_PROJECT.into(),
            description: "created on first start".into(),
            created_at: now,
        },
        admin: User {
            id: ids::new_hex_id(),
            domain_id: domain.id.clone(),
            name: ADMIN_USER.into(),
            description: "domain administrator created on first start".into(),
            password_hash,
            password_changed_at: now,
            domain_admin: true,
            enabled: true,
            created_at: now,
        },
        domain,
    };
    store.bootstrap(&plan).await
}

/// The id of project `default` in domain `default`, if both exist.
pub async fn default_project_id(store: &dyn Store) -> Result<Option<String>, StoreError> {
    let Some(domain) = store.domain_by_name(DEFAULT_DOMAIN).await? else {
        return Ok(None);
    };
    Ok(store
        .project_by_name(&domain.id, DEFAULT_PROJECT)
        .await?
        .map(|p| p.id))
}

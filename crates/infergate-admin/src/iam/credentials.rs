//! Huawei IAM's permanent access keys (`/v3.0/OS-CREDENTIAL/credentials`): create, list,
//! show, enable or disable, delete. A user manages their own keys; a domain admin those of
//! any user of the domain. The SK is shown once, when the key is created; every change
//! takes effect on every node (the gateway's and this plane's checks) before it answers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use infergate_core::model::Credential;
use infergate_core::{ids, validate, Secret};

use super::{domain_user, keystone_time, require_domain_admin};
use crate::auth::Authenticated;
use crate::error::IamError;
use crate::extract::IamJson;
use crate::{now_ms, AdminState};

/// Access keys a user may hold (Huawei IAM's limit).
const MAX_CREDENTIALS_PER_USER: u32 = 2;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCredential {
    pub user_id: String,
    pub description: Option<String>,
}

/// Body of `POST /v3.0/OS-CREDENTIAL/credentials`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCredentialRequest {
    pub credential: NewCredential,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CredentialChange {
    /// `active` or `inactive`.
    pub status: Option<String>,
    pub description: Option<String>,
}

/// Body of `PUT /v3.0/OS-CREDENTIAL/credentials/{access_key}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateCredentialRequest {
    pub credential: CredentialChange,
}

#[derive(Debug, Default, Deserialize)]
pub struct CredentialsQuery {
    pub user_id: Option<String>,
}

/// A key as shown after its creation: never its secret.
fn credential_view(credential: &Credential) -> Value {
    json!({
        "access": credential.access,
        "status": credential.status,
        "user_id": credential.user_id,
        "description": credential.description,
        "create_time": keystone_time(credential.created_at),
    })
}

/// The key `access` when the caller may manage it: its own, or (for a domain admin) one of
/// a user of the domain. Anyone else is told it does not exist.
async fn managed_credential(
    state: &AdminState,
    caller: &Authenticated,
    access: &str,
) -> Result<Credential, IamError> {
    let not_found = || IamError::NotFound(format!("Could not find credential: {access}"));
    if access.is_empty() || access.len() > 128 {
        return Err(not_found());
    }
    let credential = state
        .store
        .credential(access)
        .await?
        .ok_or_else(not_found)?;
    if credential.user_id == caller.user.id {
        return Ok(credential);
    }
    if !caller.user.domain_admin {
        return Err(not_found());
    }
    domain_user(state, caller, &credential.user_id)
        .await
        .map_err(|_| not_found())?;
    Ok(credential)
}

/// Creates a permanent AK/SK for the caller (or, for a domain admin, any user of the
/// domain). The SK is in this response only.
#[utoipa::path(post, path = "/v3.0/OS-CREDENTIAL/credentials", tag = "iam",
    request_body = CreateCredentialRequest,
    responses((status = 201, description = "the credential with its secret"), (status = 400), (status = 403), (status = 404)))]
async fn credentials_create(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    IamJson(body): IamJson<CreateCredentialRequest>,
) -> Result<Response, IamError> {
    let new = body.credential;
    if new.user_id != caller.user.id {
        require_domain_admin(&caller)?;
    }
    let user = domain_user(&state, &caller, &new.user_id).await?;
    let description = new.description.unwrap_or_default();
    validate::max_chars("credential.description", &description, 255)?;
    let secret = Secret::new(ids::new_secret_key());
    let credential = Credential {
        access: ids::new_access_key(),
        user_id: user.id.clone(),
        secret_sealed: state.master.encrypt(&secret),
        description,
        status: "active".into(),
        created_at: now_ms(),
        locked_until: 0,
    };
    state
        .store
        .create_credential(&credential, MAX_CREDENTIALS_PER_USER)
        .await
        .map_err(IamError::of_credential)?;
    let mut view = credential_view(&credential);
    view["secret"] = json!(secret.expose());
    Ok((StatusCode::CREATED, Json(json!({"credential": view}))).into_response())
}

/// The keys of `user_id` (the caller's own when omitted): never their secrets.
#[utoipa::path(get, path = "/v3.0/OS-CREDENTIAL/credentials", tag = "iam",
    params(("user_id" = Option<String>, Query)),
    responses((status = 200, description = "the credentials"), (status = 403), (status = 404)))]
async fn credentials_list(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Query(query): Query<CredentialsQuery>,
) -> Result<Json<Value>, IamError> {
    let user_id = query.user_id.unwrap_or_else(|| caller.user.id.clone());
    if user_id != caller.user.id {
        require_domain_admin(&caller)?;
        domain_user(&state, &caller, &user_id).await?;
    }
    let credentials = state.store.list_credentials(&user_id).await?;
    Ok(Json(json!({
        "credentials": credentials.iter().map(credential_view).collect::<Vec<_>>(),
    })))
}

#[utoipa::path(get, path = "/v3.0/OS-CREDENTIAL/credentials/{access_key}", tag = "iam",
    params(("access_key" = String, Path)),
    responses((status = 200, description = "the credential, without its secret"), (status = 404)))]
async fn credentials_show(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(access): Path<String>,
) -> Result<Json<Value>, IamError> {
    let credential = managed_credential(&state, &caller, &access).await?;
    Ok(Json(json!({"credential": credential_view(&credential)})))
}

/// Enables or disables a key (`status`) and sets its description. An inactive key is
/// refused on both planes from the moment this answers.
#[utoipa::path(put, path = "/v3.0/OS-CREDENTIAL/credentials/{access_key}", tag = "iam",
    params(("access_key" = String, Path)), request_body = UpdateCredentialRequest,
    responses((status = 200, description = "the credential"), (status = 400), (status = 404)))]
async fn credentials_update(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(access): Path<String>,
    IamJson(body): IamJson<UpdateCredentialRequest>,
) -> Result<Json<Value>, IamError> {
    let change = body.credential;
    if let Some(status) = change.status.as_deref() {
        if status != "active" && status != "inactive" {
            return Err(IamError::BadRequest(format!(
                "invalid credential.status: {status:?} is not one of active, inactive"
            )));
        }
    }
    if let Some(description) = change.description.as_deref() {
        validate::max_chars("credential.description", description, 255)?;
    }
    if change.status.is_none() && change.description.is_none() {
        return Err(IamError::BadRequest(
            "credential needs status or description".into(),
        ));
    }
    let credential = managed_credential(&state, &caller, &access).await?;
    let updated = state
        .store
        .update_credential(
            &credential.access,
            change.status.as_deref(),
            change.description.as_deref(),
        )
        .await
        .map_err(IamError::of_credential)?;
    Ok(Json(json!({"credential": credential_view(&updated)})))
}

/// Deletes a key; it is refused on both planes from the moment this answers.
#[utoipa::path(delete, path = "/v3.0/OS-CREDENTIAL/credentials/{access_key}", tag = "iam",
    params(("access_key" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404)))]
async fn credentials_delete(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(access): Path<String>,
) -> Result<StatusCode, IamError> {
    let credential = managed_credential(&state, &caller, &access).await?;
    state
        .store
        .delete_credential(&credential.access)
        .await
        .map_err(IamError::of_credential)?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(credentials_create, credentials_list))
        .routes(routes!(
            credentials_show,
            credentials_update,
            credentials_delete
        ))
}

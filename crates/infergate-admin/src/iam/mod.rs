//! The embedded IAM subset (spec §6) in Keystone v3 shapes: password tokens, users,
//! projects, roles and their grants, and permanent AK/SK credentials.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use infergate_core::model::{Domain, Project, RevokedToken, Role, User};
use infergate_core::token::{Scope, TokenClaims};
use infergate_core::{ids, validate};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{check_token, Authenticated};
use crate::error::IamError;
use crate::extract::IamJson;
use crate::guesses::PasswordCheck;
use crate::{now_ms, AdminState};

mod credentials;

fn keystone_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn require_domain_admin(caller: &Authenticated) -> Result<(), IamError> {
    if caller.user.domain_admin {
        Ok(())
    } else {
        Err(IamError::not_authorized())
    }
}

// === DTOs ===

#[derive(Debug, Deserialize, ToSchema)]
pub struct DomainRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordUser {
    pub id: Option<String>,
    pub name: Option<String>,
    pub password: String,
    pub domain: Option<DomainRef>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordMethod {
    pub user: PasswordUser,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Identity {
    pub methods: Vec<String>,
    pub password: Option<PasswordMethod>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ProjectRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub domain: Option<DomainRef>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ScopeRequest {
    pub project: Option<ProjectRef>,
    pub domain: Option<DomainRef>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthBody {
    pub identity: Identity,
    pub scope: Option<ScopeRequest>,
}

/// Body of `POST /v3/auth/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AuthRequest {
    pub auth: AuthBody,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    pub domain_id: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Body of `POST /v3/users`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub user: NewUser,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

/// Body of `PATCH /v3/users/{user_id}`: `enabled: true` also ends a password lockout.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    pub user: UserChange,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    pub password: String,
    pub original_password: String,
}

/// Body of `POST /v3/users/{user_id}/password`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    pub user: PasswordChange,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProject {
    pub name: String,
    pub description: Option<String>,
    pub domain_id: Option<String>,
}

/// Body of `POST /v3/projects`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateProjectRequest {
    pub project: NewProject,
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    pub nocatalog: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct NameQuery {
    pub name: Option<String>,
}

// === views ===

fn user_view(user: &User) -> Value {
    json!({
        "id": user.id,
        "name": user.name,
        "domain_id": user.domain_id,
        "description": user.description,
        "enabled": user.enabled,
        "password_expires_at": null,
        "links": {"self": format!("/v3/users/{}", user.id)},
    })
}

fn project_view(project: &Project) -> Value {
    json!({
        "id": project.id,
        "name": project.name,
        "domain_id": project.domain_id,
        "description": project.description,
        "enabled": true,
        "is_domain": false,
        "parent_id": project.domain_id,
        "links": {"self": format!("/v3/projects/{}", project.id)},
    })
}

fn role_view(role: Role) -> Value {
    json!({"id": role.name(), "name": role.name(), "links": {"self": format!("/v3/roles/{}", role.name())}})
}

fn list_links(path: &str) -> Value {
    json!({"self": path, "next": null, "previous": null})
}

/// The `token` object of spec §6.1.
async fn token_view(
    state: &AdminState,
    user: &User,
    claims: &TokenClaims,
    nocatalog: bool,
) -> Result<Value, IamError> {
    let domain = state
        .store
        .domain(&user.domain_id)
        .await?
        .unwrap_or(Domain {
            id: user.domain_id.clone(),
            name: String::new(),
        });
    let domain_view = json!({"id": domain.id, "name": domain.name});
    let mut token = json!({
        "methods": ["password"],
        "issued_at": keystone_time(claims.issued_at),
        "expires_at": keystone_time(claims.expires_at),
        "user": {
            "id": user.id,
            "name": user.name,
            "password_expires_at": "",
            "domain": domain_view,
        },
        "roles": [],
    });
    match &claims.scope {
        Scope::Project(project_id) => {
            let project = state
                .store
                .project(project_id)
                .await?
                .ok_or_else(|| IamError::NotFound(format!("project {project_id} not found")))?;
            let roles = state.store.roles(project_id, &user.id).await?;
            token["project"] = json!({
                "id": project.id,
                "name": project.name,
                "domain": domain_view,
            });
            token["roles"] = roles
                .into_iter()
                .map(|r| json!({"id": r.name(), "name": r.name()}))
                .collect();
        }
        Scope::Domain(_) => {
            token["domain"] = domain_view;
            if user.domain_admin {
                token["roles"] = json!([{"id": "admin", "name": "admin"}]);
            }
        }
        Scope::Unscoped => {}
    }
    token["catalog"] = if nocatalog {
        json!([])
    } else {
        json!([{
            "id": "modelarts",
            "name": "modelarts",
            "type": "modelarts",
            "endpoints": [{
                "id": "modelarts-public",
                "interface": "public",
                "region": "default",
                "region_id": "default",
                "url": state.settings.admin_url,
            }],
        }, {
            "id": "inference",
            "name": "infergate",
            "type": "inference",
            "endpoints": [{
                "id": "inference-public",
                "interface": "public",
                "region": "default",
                "region_id": "default",
                "url": state.settings.public_url,
            }],
        }, {
            "id": "identity",
            "name": "keystone",
            "type": "identity",
            "endpoints": [{
                "id": "identity-public",
                "interface": "public",
                "region": "default",
                "region_id": "default",
                "url": format!("{}/v3", state.settings.admin_url),
            }],
        }])
    };
    Ok(json!({ "token": token }))
}

fn with_subject_token(status: StatusCode, token: &str, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    match HeaderValue::from_str(token) {
        Ok(value) => {
            response.headers_mut().insert("X-Subject-Token", value);
            response
        }
        Err(_) => IamError::Internal.into_response(),
    }
}

async fn find_domain(state: &AdminState, domain: &DomainRef) -> Result<Option<Domain>, IamError> {
    Ok(match (&domain.id, &domain.name) {
        (Some(id), _) => state.store.domain(id).await?,
        (None, Some(name)) => state.store.domain_by_name(name).await?,
        (None, None) => {
            return Err(IamError::BadRequest(
                "invalid auth.identity.password.user.domain: give id or name".into(),
            ))
        }
    })
}

fn unauthorized() -> IamError {
    IamError::Unauthorized("The request you have made requires authentication.".into())
}

// === handlers ===

/// Issues a token for a user name (or id) and password; scope by project or domain.
#[utoipa::path(post, path = "/v3/auth/tokens", tag = "iam", request_body = AuthRequest,
    params(("nocatalog" = Option<String>, Query)),
    responses((status = 201, description = "token in X-Subject-Token"), (status = 400), (status = 401)))]
async fn tokens_create(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<TokenQuery>,
    IamJson(body): IamJson<AuthRequest>,
) -> Result<Response, IamError> {
    let identity = body.auth.identity;
    if identity.methods != ["password"] {
        return Err(IamError::BadRequest(
            "invalid auth.identity.methods: must be [\"password\"]".into(),
        ));
    }
    let presented = identity
        .password
        .ok_or_else(|| IamError::BadRequest("auth.identity.password is required".into()))?
        .user;
    let user = match (&presented.id, &presented.name, &presented.domain) {
        (Some(id), _, _) => state.store.user(id).await?,
        (None, Some(name), Some(domain)) => match find_domain(&state, domain).await? {
            Some(domain) => state.store.user_by_name(&domain.id, name).await?,
            None => None,
        },
        (None, Some(_), None) => {
            return Err(IamError::BadRequest(
                "auth.identity.password.user.domain is required with a user name".into(),
            ))
        }
        (None, None, _) => {
            return Err(IamError::BadRequest(
                "auth.identity.password.user needs id or name".into(),
            ))
        }
    };
    // Unknown, disabled, locked or wrong: one answer, at one cost.
    let user = user.filter(|u| u.enabled);
    let check = state
        .guesses
        .check_password(
            state.store.as_ref(),
            user.as_ref(),
            presented.password,
            now_ms(),
        )
        .await?;
    let (Some(user), PasswordCheck::Right) = (user, check) else {
        return Err(unauthorized());
    };
    let scope = match body.auth.scope {
        None => Scope::Unscoped,
        Some(ScopeRequest {
            project: Some(project),
            ..
        }) => {
            let found = match (&project.id, &project.name) {
                (Some(id), _) => state.store.project(id).await?,
                (None, Some(name)) => {
                    let domain_id = match &project.domain {
                        Some(d) => find_domain(&state, d).await?.map(|d| d.id),
                        None => Some(user.domain_id.clone()),
                    };
                    match domain_id {
                        Some(domain_id) => state.store.project_by_name(&domain_id, name).await?,
                        None => None,
                    }
                }
                (None, None) => {
                    return Err(IamError::BadRequest(
                        "auth.scope.project needs id or name".into(),
                    ))
                }
            };
            let project = found.ok_or_else(unauthorized)?;
            if state.store.roles(&project.id, &user.id).await?.is_empty() {
                return Err(IamError::Unauthorized(format!(
                    "User {} has no access to project {}",
                    user.id, project.id
                )));
            }
            Scope::Project(project.id)
        }
        Some(ScopeRequest {
            domain: Some(domain),
            ..
        }) => {
            let domain = find_domain(&state, &domain)
                .await?
                .ok_or_else(unauthorized)?;
            if domain.id != user.domain_id {
                return Err(unauthorized());
            }
            Scope::Domain(domain.id)
        }
        Some(_) => Scope::Unscoped,
    };
    let (token, claims) = state.tokens.issue(&user.id, scope, now_ms());
    let nocatalog = query.nocatalog.is_some_and(|v| !v.is_empty());
    let body = token_view(&state, &user, &claims, nocatalog).await?;
    Ok(with_subject_token(StatusCode::CREATED, &token, body))
}

/// Validates the token in `X-Subject-Token`; 404 when it is not valid.
#[utoipa::path(get, path = "/v3/auth/tokens", tag = "iam",
    responses((status = 200, description = "the token"), (status = 401), (status = 404)))]
async fn tokens_validate(
    State(state): State<Arc<AdminState>>,
    _caller: Authenticated,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, IamError> {
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| IamError::BadRequest("X-Subject-Token header is required".into()))?
        .to_owned();
    let (user, claims) = check_token(&state, &subject)
        .await
        .map_err(|_| IamError::NotFound("Could not find token".into()))?;
    let nocatalog = query.nocatalog.is_some_and(|v| !v.is_empty());
    let body = token_view(&state, &user, &claims, nocatalog).await?;
    Ok(with_subject_token(StatusCode::OK, &subject, body))
}

/// Revokes the token in `X-Subject-Token` (the caller's own, or for a domain admin any of
/// the domain's): refused on both planes from the moment this answers.
#[utoipa::path(delete, path = "/v3/auth/tokens", tag = "iam",
    responses((status = 204, description = "revoked"), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn tokens_revoke(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    headers: HeaderMap,
) -> Result<StatusCode, IamError> {
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| IamError::BadRequest("X-Subject-Token header is required".into()))?;
    let not_found = || IamError::NotFound("Could not find token".into());
    let (user, claims) = check_token(&state, subject)
        .await
        .map_err(|_| not_found())?;
    if user.id != caller.user.id {
        require_domain_admin(&caller)?;
        if user.domain_id != caller.user.domain_id {
            return Err(not_found());
        }
    }
    let revoked = RevokedToken {
        token_id: claims.nonce,
        user_id: user.id,
        expires_at: claims.expires_at,
    };
    state.store.revoke_token(&revoked, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn caller_domain(caller: &Authenticated, requested: Option<&str>) -> Result<String, IamError> {
    match requested {
        Some(domain) if domain != caller.user.domain_id => Err(IamError::not_authorized()),
        _ => Ok(caller.user.domain_id.clone()),
    }
}

#[utoipa::path(post, path = "/v3/projects", tag = "iam", request_body = CreateProjectRequest,
    responses((status = 201, description = "the project"), (status = 400), (status = 403), (status = 409)))]
async fn projects_create(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    IamJson(body): IamJson<CreateProjectRequest>,
) -> Result<Response, IamError> {
    require_domain_admin(&caller)?;
    let new = body.project;
    validate::project_name(&new.name)?;
    let description = new.description.unwrap_or_default();
    validate::max_chars("project.description", &description, 255)?;
    let project = Project {
        id: ids::new_hex_id(),
        domain_id: caller_domain(&caller, new.domain_id.as_deref())?,
        name: new.name,
        description,
        created_at: now_ms(),
    };
    state.store.create_project(&project).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"project": project_view(&project)})),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v3/projects", tag = "iam",
    params(("name" = Option<String>, Query)),
    responses((status = 200, description = "projects of the caller's domain")))]
async fn projects_list(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Query(query): Query<NameQuery>,
) -> Result<Json<Value>, IamError> {
    let mut projects = state.store.list_projects(&caller.user.domain_id).await?;
    if !caller.user.domain_admin {
        // Other users see the projects they hold a role in.
        let mut visible = Vec::with_capacity(projects.len());
        for project in projects {
            if !state
                .store
                .roles(&project.id, &caller.user.id)
                .await?
                .is_empty()
            {
                visible.push(project);
            }
        }
        projects = visible;
    }
    if let Some(name) = &query.name {
        projects.retain(|p| &p.name == name);
    }
    Ok(Json(json!({
        "projects": projects.iter().map(project_view).collect::<Vec<_>>(),
        "links": list_links("/v3/projects"),
    })))
}

#[utoipa::path(get, path = "/v3/projects/{project_id}", tag = "iam",
    params(("project_id" = String, Path)),
    responses((status = 200, description = "the project"), (status = 403), (status = 404)))]
async fn projects_show(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, IamError> {
    let project = state
        .store
        .project(&project_id)
        .await?
        .filter(|p| p.domain_id == caller.user.domain_id)
        .ok_or_else(|| IamError::NotFound(format!("Could not find project: {project_id}")))?;
    if !caller.user.domain_admin
        && state
            .store
            .roles(&project.id, &caller.user.id)
            .await?
            .is_empty()
    {
        return Err(IamError::not_authorized());
    }
    Ok(Json(json!({"project": project_view(&project)})))
}

#[utoipa::path(post, path = "/v3/users", tag = "iam", request_body = CreateUserRequest,
    responses((status = 201, description = "the user"), (status = 400), (status = 403), (status = 409)))]
async fn users_create(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    IamJson(body): IamJson<CreateUserRequest>,
) -> Result<Response, IamError> {
    require_domain_admin(&caller)?;
    let new = body.user;
    validate::user_name(&new.name)?;
    validate::password("user.password", &new.password)?;
    let description = new.description.unwrap_or_default();
    validate::max_chars("user.description", &description, 255)?;
    let domain_id = caller_domain(&caller, new.domain_id.as_deref())?;
    let now = now_ms();
    let user = User {
        id: ids::new_hex_id(),
        domain_id,
        name: new.name,
        description,
        password_hash: state.guesses.hash(new.password).await?,
        password_changed_at: now,
        domain_admin: false,
        enabled: new.enabled.unwrap_or(true),
        created_at: now,
    };
    state.store.create_user(&user).await?;
    Ok((StatusCode::CREATED, Json(json!({"user": user_view(&user)}))).into_response())
}

#[utoipa::path(get, path = "/v3/users", tag = "iam",
    params(("name" = Option<String>, Query)),
    responses((status = 200, description = "users of the domain"), (status = 403)))]
async fn users_list(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Query(query): Query<NameQuery>,
) -> Result<Json<Value>, IamError> {
    require_domain_admin(&caller)?;
    let mut users = state.store.list_users(&caller.user.domain_id).await?;
    if let Some(name) = &query.name {
        users.retain(|u| &u.name == name);
    }
    Ok(Json(json!({
        "users": users.iter().map(user_view).collect::<Vec<_>>(),
        "links": list_links("/v3/users"),
    })))
}

async fn domain_user(
    state: &AdminState,
    caller: &Authenticated,
    user_id: &str,
) -> Result<User, IamError> {
    state
        .store
        .user(user_id)
        .await?
        .filter(|u| u.domain_id == caller.user.domain_id)
        .ok_or_else(|| IamError::NotFound(format!("Could not find user: {user_id}")))
}

#[utoipa::path(get, path = "/v3/users/{user_id}", tag = "iam",
    params(("user_id" = String, Path)),
    responses((status = 200, description = "the user"), (status = 403), (status = 404)))]
async fn users_show(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, IamError> {
    if caller.user.id != user_id {
        require_domain_admin(&caller)?;
    }
    let user = domain_user(&state, &caller, &user_id).await?;
    Ok(Json(json!({"user": user_view(&user)})))
}

/// Enables or disables a user, or changes its description; enabling (even an enabled
/// user) ends a password lockout on every node.
#[utoipa::path(patch, path = "/v3/users/{user_id}", tag = "iam",
    params(("user_id" = String, Path)), request_body = UpdateUserRequest,
    responses((status = 200, description = "the user"), (status = 400), (status = 403), (status = 404)))]
async fn users_update(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(user_id): Path<String>,
    IamJson(body): IamJson<UpdateUserRequest>,
) -> Result<Json<Value>, IamError> {
    require_domain_admin(&caller)?;
    let user = domain_user(&state, &caller, &user_id).await?;
    let change = body.user;
    if let Some(description) = &change.description {
        validate::max_chars("user.description", description, 255)?;
    }
    if user.id == caller.user.id && change.enabled == Some(false) {
        return Err(IamError::Forbidden(
            "a domain administrator cannot disable their own user".into(),
        ));
    }
    let user = state
        .store
        .update_user(&user.id, change.enabled, change.description.as_deref())
        .await?;
    Ok(Json(json!({"user": user_view(&user)})))
}

#[utoipa::path(delete, path = "/v3/users/{user_id}", tag = "iam",
    params(("user_id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn users_delete(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(user_id): Path<String>,
) -> Result<StatusCode, IamError> {
    require_domain_admin(&caller)?;
    let user = domain_user(&state, &caller, &user_id).await?;
    if user.id == caller.user.id {
        return Err(IamError::Forbidden(
            "a domain administrator cannot delete their own user".into(),
        ));
    }
    state.store.delete_user(&user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v3/users/{user_id}/password", tag = "iam",
    params(("user_id" = String, Path)), request_body = ChangePasswordRequest,
    responses((status = 204), (status = 400), (status = 401), (status = 403)))]
async fn users_password(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(user_id): Path<String>,
    IamJson(body): IamJson<ChangePasswordRequest>,
) -> Result<StatusCode, IamError> {
    if caller.user.id != user_id {
        return Err(IamError::not_authorized());
    }
    validate::password("user.password", &body.user.password)?;
    let check = state
        .guesses
        .check_password(
            state.store.as_ref(),
            Some(&caller.user),
            body.user.original_password,
            now_ms(),
        )
        .await?;
    if check != PasswordCheck::Right {
        return Err(IamError::Unauthorized(
            "user.original_password does not match".into(),
        ));
    }
    let new_hash = state.guesses.hash(body.user.password).await?;
    state
        .store
        .set_password(&user_id, &new_hash, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v3/roles", tag = "iam",
    responses((status = 200, description = "admin, member, viewer")))]
async fn roles_list(_caller: Authenticated) -> Json<Value> {
    Json(json!({
        "roles": Role::ALL.into_iter().map(role_view).collect::<Vec<_>>(),
        "links": list_links("/v3/roles"),
    }))
}

async fn grant_target(
    state: &AdminState,
    caller: &Authenticated,
    project_id: &str,
    user_id: &str,
    role_id: &str,
) -> Result<(Project, User, Role), IamError> {
    require_domain_admin(caller)?;
    let project = state
        .store
        .project(project_id)
        .await?
        .filter(|p| p.domain_id == caller.user.domain_id)
        .ok_or_else(|| IamError::NotFound(format!("Could not find project: {project_id}")))?;
    let user = domain_user(state, caller, user_id).await?;
    let role = Role::from_str(role_id)
        .map_err(|_| IamError::NotFound(format!("Could not find role: {role_id}")))?;
    Ok((project, user, role))
}

#[utoipa::path(put, path = "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", tag = "iam",
    params(("project_id" = String, Path), ("user_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn grants_put(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path((project_id, user_id, role_id)): Path<(String, String, String)>,
) -> Result<StatusCode, IamError> {
    let (project, user, role) =
        grant_target(&state, &caller, &project_id, &user_id, &role_id).await?;
    state.store.grant_role(&project.id, &user.id, role).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", tag = "iam",
    params(("project_id" = String, Path), ("user_id" = String, Path), ("role_id" = String, Path)),
    responses((status = 204), (status = 403), (status = 404)))]
async fn grants_delete(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path((project_id, user_id, role_id)): Path<(String, String, String)>,
) -> Result<StatusCode, IamError> {
    let (project, user, role) =
        grant_target(&state, &caller, &project_id, &user_id, &role_id).await?;
    if !state.store.revoke_role(&project.id, &user.id, role).await? {
        return Err(IamError::NotFound(format!(
            "Could not find role assignment of {role_id} to user {user_id} on project {project_id}"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v3/projects/{project_id}/users/{user_id}/roles", tag = "iam",
    params(("project_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, description = "roles of the user in the project"), (status = 403), (status = 404)))]
async fn grants_list(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path((project_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, IamError> {
    if caller.user.id != user_id {
        require_domain_admin(&caller)?;
    }
    let roles = state.store.roles(&project_id, &user_id).await?;
    Ok(Json(json!({
        "roles": roles.into_iter().map(role_view).collect::<Vec<_>>(),
        "links": list_links(&format!("/v3/projects/{project_id}/users/{user_id}/roles")),
    })))
}

/// Routes that need no caller.
pub fn public_router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new().routes(routes!(tokens_create))
}

/// Routes behind the IAM authentication middleware.
pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(tokens_validate, tokens_revoke))
        .routes(routes!(projects_create, projects_list))
        .routes(routes!(projects_show))
        .routes(routes!(users_create, users_list))
        .routes(routes!(users_show, users_update, users_delete))
        .routes(routes!(users_password))
        .routes(routes!(roles_list))
        .routes(routes!(grants_put, grants_delete))
        .routes(routes!(grants_list))
        .merge(credentials::router())
}

//! Password tokens: issue (`POST /v3/auth/tokens`), validate and revoke.

use super::*;

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

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    pub nocatalog: Option<String>,
}

/// The `token` object of spec §6.1.
pub(super) async fn token_view(
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

pub(super) fn with_subject_token(status: StatusCode, token: &str, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    match HeaderValue::from_str(token) {
        Ok(value) => {
            response.headers_mut().insert("X-Subject-Token", value);
            response
        }
        Err(_) => IamError::Internal.into_response(),
    }
}

pub(super) async fn find_domain(
    state: &AdminState,
    domain: &DomainRef,
) -> Result<Option<Domain>, IamError> {
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

pub(super) fn unauthorized() -> IamError {
    IamError::Unauthorized("The request you have made requires authentication.".into())
}

/// Issues a token for a user name (or id) and password; scope by project or domain.
#[utoipa::path(post, path = "/v3/auth/tokens", tag = "iam", request_body = AuthRequest,
    params(("nocatalog" = Option<String>, Query)),
    responses((status = 201, description = "token in X-Subject-Token"), (status = 400), (status = 401)))]
pub(super) async fn tokens_create(
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
            // The same answer as for a project that does not exist: whether another
            // tenant's project does is not the caller's to learn.
            if state.store.roles(&project.id, &user.id).await?.is_empty() {
                return Err(unauthorized());
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

/// Validates the token in `X-Subject-Token`: the caller's own, or for a domain admin any of
/// the domain's (as Keystone's `identity:validate_token`); 404 when it is not valid or not
/// the caller's to read, alike.
#[utoipa::path(get, path = "/v3/auth/tokens", tag = "iam",
    responses((status = 200, description = "the token"), (status = 401), (status = 404)))]
pub(super) async fn tokens_validate(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, IamError> {
    let subject = headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| IamError::BadRequest("X-Subject-Token header is required".into()))?
        .to_owned();
    let not_found = || IamError::NotFound("Could not find token".into());
    let (user, claims) = check_token(&state, &subject)
        .await
        .map_err(|_| not_found())?;
    let readable = user.id == caller.user.id
        || (caller.user.domain_admin && user.domain_id == caller.user.domain_id);
    if !readable {
        return Err(not_found());
    }
    let nocatalog = query.nocatalog.is_some_and(|v| !v.is_empty());
    let body = token_view(&state, &user, &claims, nocatalog).await?;
    Ok(with_subject_token(StatusCode::OK, &subject, body))
}

/// Revokes the token in `X-Subject-Token` (the caller's own, or for a domain admin any of
/// the domain's): refused on both planes from the moment this answers.
#[utoipa::path(delete, path = "/v3/auth/tokens", tag = "iam",
    responses((status = 204, description = "revoked"), (status = 400), (status = 401), (status = 403), (status = 404)))]
pub(super) async fn tokens_revoke(
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

//! Users of the caller's domain: create, list, show, enable or disable (which ends a password lockout), delete, change one's own password.

use super::*;

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

pub(super) fn user_view(user: &User) -> Value {
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

#[utoipa::path(post, path = "/v3/users", tag = "iam", request_body = CreateUserRequest,
    responses((status = 201, description = "the user"), (status = 400), (status = 403), (status = 409)))]
pub(super) async fn users_create(
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
pub(super) async fn users_list(
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

pub(super) async fn domain_user(
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
pub(super) async fn users_show(
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
pub(super) async fn users_update(
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
pub(super) async fn users_delete(
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
pub(super) async fn users_password(
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

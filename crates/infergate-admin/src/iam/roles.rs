//! Roles and their grants to users in projects.

use super::*;

pub(super) fn role_view(role: Role) -> Value {
    json!({"id": role.name(), "name": role.name(), "links": {"self": format!("/v3/roles/{}", role.name())}})
}

#[utoipa::path(get, path = "/v3/roles", tag = "iam",
    responses((status = 200, description = "admin, member, viewer")))]
pub(super) async fn roles_list(_caller: Authenticated) -> Json<Value> {
    Json(json!({
        "roles": Role::ALL.into_iter().map(role_view).collect::<Vec<_>>(),
        "links": list_links("/v3/roles"),
    }))
}

pub(super) async fn grant_target(
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
pub(super) async fn grants_put(
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
pub(super) async fn grants_delete(
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
pub(super) async fn grants_list(
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

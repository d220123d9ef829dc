//! Projects of the caller's domain.

use super::*;

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

pub(super) fn project_view(project: &Project) -> Value {
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

#[utoipa::path(post, path = "/v3/projects", tag = "iam", request_body = CreateProjectRequest,
    responses((status = 201, description = "the project"), (status = 400), (status = 403), (status = 409)))]
pub(super) async fn projects_create(
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
pub(super) async fn projects_list(
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
pub(super) async fn projects_show(
    State(state): State<Arc<AdminState>>,
    caller: Authenticated,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, IamError> {
    let not_found = || IamError::NotFound(format!("Could not find project: {project_id}"));
    let project = state
        .store
        .project(&project_id)
        .await?
        .filter(|p| p.domain_id == caller.user.domain_id)
        .ok_or_else(not_found)?;
    // A project the caller has no role in answers as one that does not exist: its id
    // tells another tenant nothing.
    if !caller.user.domain_admin
        && state
            .store
            .roles(&project.id, &caller.user.id)
            .await?
            .is_empty()
    {
        return Err(not_found());
    }
    Ok(Json(json!({"project": project_view(&project)})))
}

//! App-auth APIs of a service (spec §2.11, §2.12, §2.14, §2.15): how a service is exposed
//! through the gateway and which authentication its callers use.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use infergate_core::access::Action;
use infergate_core::model::{Api, ApiMethod, AuthType, Service};
use infergate_core::{ids, validate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ProjectCaller;
use crate::error::{ApiError, StoreTarget};
use crate::extract::{MaJson, MaQuery};
use crate::services::{load_service, ApiPath, ServicePath};
use crate::{stamp_ms, AdminState};

// === DTOs ===

/// `CreateApiRequest` of the definition: every field optional (spec §2.11, §7 #4).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateApiRequest {
    pub workspace_id: Option<String>,
    /// Enables AppCode and `apikey` simple authentication (default true).
    pub support_app_code: Option<bool>,
    /// `NONE`, `APP` or `IAM` (case-insensitive; `APIG` means `APP`); default `APP`.
    pub auth_type: Option<String>,
    /// `^[A-Za-z][A-Za-z0-9_]{2,254}$`; default `infer_` + service id without dashes.
    pub api_name: Option<String>,
    /// A path, or an absolute URL whose path is used (spec §7 #3).
    pub api_url: Option<String>,
    /// `^([/][A-Za-z0-9_%*.-]+){1,255}$`; default `/v1/infers/{service_id}`.
    pub api_path: Option<String>,
    /// GET POST PUT DELETE HEAD PATCH OPTIONS ANY; always returned as `ANY`.
    pub api_method: Option<String>,
    /// At most 255 characters.
    pub api_remark: Option<String>,
}

/// `AuthTypeApiBasicInfo` (spec §3).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthTypeApiBasicInfo {
    pub api_id: String,
    pub api_name: String,
    /// Always `ANY` (spec §7 #22).
    pub api_method: &'static str,
    pub api_remark: String,
    pub auth_type: &'static str,
    pub predict_url: String,
    pub service_id: String,
    pub service_name: String,
    pub support_app_code: bool,
}

impl AuthTypeApiBasicInfo {
    pub fn new(api: &Api, service_name: &str, public_url: &str) -> Self {
        Self {
            api_id: api.id.clone(),
            api_name: api.name.clone(),
            api_method: ApiMethod::Any.as_str(),
            api_remark: api.remark.clone(),
            auth_type: api.auth_type.as_str(),
            predict_url: format!("{}{}", public_url.trim_end_matches('/'), api.api_path),
            service_id: api.service_id.clone(),
            service_name: service_name.to_owned(),
            support_app_code: api.support_app_code,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppAuthApiBasicInfoResponse {
    pub api: AuthTypeApiBasicInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppAuthApiBasicInfosResponse {
    pub apis: Vec<AuthTypeApiBasicInfo>,
    pub count: usize,
    pub total_count: usize,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkspaceQuery {
    pub workspace_id: Option<String>,
}

pub(crate) const MAX_REMARK: usize = 255;

/// Applies the rules and defaults of spec §2.11 to a create request.
fn api_from_request(
    body: CreateApiRequest,
    service: &Service,
    caller: &ProjectCaller,
    now: i64,
) -> Result<Api, ApiError> {
    let auth_type = match body.auth_type.as_deref() {
        None => AuthType::App,
        Some(text) => AuthType::from_str(text).map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid auth_type: {text:?} is not one of NONE, APP, IAM"
            ))
        })?,
    };
    let api_method = match body.api_method.as_deref() {
        None => ApiMethod::Any,
        Some(text) => ApiMethod::from_str(text).map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid api_method: {text:?} is not one of GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS, ANY"
            ))
        })?,
    };
    let api_name = match body.api_name {
        Some(name) => {
            validate::api_name(&name)?;
            name
        }
        None => format!("infer_{}", service.id.replace('-', "")),
    };
    let from_url = body.api_url.as_deref().map(validate::api_url).transpose()?;
    let api_path = match body.api_path {
        Some(path) => {
            validate::api_path("api_path", &path)?;
            path
        }
        None => from_url.unwrap_or_else(|| format!("/v1/infers/{}", service.id)),
    };
    let remark = body.api_remark.unwrap_or_default();
    validate::max_chars("api_remark", &remark, MAX_REMARK)?;
    if let Some(workspace) = &body.workspace_id {
        validate::max_chars("workspace_id", workspace, 64)?;
    }
    Ok(Api {
        id: ids::new_hex_id(),
        service_id: service.id.clone(),
        project_id: caller.project_id.clone(),
        name: api_name,
        auth_type,
        support_app_code: body.support_app_code.unwrap_or(true),
        api_path,
        api_method,
        remark,
        owner: caller.user_id.clone(),
        created_at: now,
        updated_at: now,
    })
}

/// Loads an API and checks it belongs to `service` (404 `3935`, 403 `3936`).
pub async fn load_api(
    state: &AdminState,
    service: &Service,
    api_id: &str,
) -> Result<Api, ApiError> {
    if api_id.is_empty() || api_id.len() > 255 {
        return Err(ApiError::BadRequest(
            "invalid api_id: must be 1-255 characters".into(),
        ));
    }
    let api = state
        .store
        .api(api_id)
        .await?
        .filter(|a| a.project_id == service.project_id)
        .ok_or_else(|| ApiError::ApiNotFound(api_id.to_owned()))?;
    if api.service_id != service.id {
        return Err(ApiError::ApiNotInService {
            api_id: api_id.to_owned(),
            service_id: service.id.clone(),
        });
    }
    Ok(api)
}

// === handlers ===

/// CreateAppAuthApi: registers an API for the service without authorizing any app.
#[utoipa::path(post, path = "/v1/{project_id}/app-auth/{service_id}/apis", tag = "app-auth APIs",
    operation_id = "CreateAppAuthApi",
    params(("project_id" = String, Path), ("service_id" = String, Path)),
    request_body = CreateApiRequest,
    responses((status = 200, body = AppAuthApiBasicInfoResponse), (status = 400), (status = 401),
        (status = 403), (status = 404), (status = 409)))]
async fn apis_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
    MaJson(body): MaJson<Option<CreateApiRequest>>,
) -> Result<Json<AppAuthApiBasicInfoResponse>, ApiError> {
    let service = load_service(&state, &caller, &service_id).await?;
    caller.require(
        Action::Write {
            owner: &service.owner,
        },
        "create APIs of this service",
    )?;
    let api = api_from_request(body.unwrap_or_default(), &service, &caller, stamp_ms())?;
    state
        .store
        .create_api(&api)
        .await
        .map_err(ApiError::about(StoreTarget::NewApi {
            service: &service_id,
        }))?;
    Ok(Json(AppAuthApiBasicInfoResponse {
        api: AuthTypeApiBasicInfo::new(&api, &service.name, &state.settings.public_url),
    }))
}

/// GetAppAuthApiInfo.
#[utoipa::path(get, path = "/v1/{project_id}/app-auth/{service_id}/apis/{api_id}", tag = "app-auth APIs",
    operation_id = "GetAppAuthApiInfo",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path), WorkspaceQuery),
    responses((status = 200, body = AppAuthApiBasicInfoResponse), (status = 401), (status = 403), (status = 404)))]
async fn apis_show(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    MaQuery(_query): MaQuery<WorkspaceQuery>,
) -> Result<Json<AppAuthApiBasicInfoResponse>, ApiError> {
    caller.require(Action::Read, "read APIs")?;
    let service = load_service(&state, &caller, &service_id).await?;
    let api = load_api(&state, &service, &api_id).await?;
    Ok(Json(AppAuthApiBasicInfoResponse {
        api: AuthTypeApiBasicInfo::new(&api, &service.name, &state.settings.public_url),
    }))
}

/// GetAppAuthApisInfo: every API of the service.
#[utoipa::path(get, path = "/v1/{project_id}/services/{service_id}/app-auth-apis", tag = "app-auth APIs",
    operation_id = "GetAppAuthApisInfo",
    params(("project_id" = String, Path), ("service_id" = String, Path), WorkspaceQuery),
    responses((status = 200, body = AppAuthApiBasicInfosResponse), (status = 401), (status = 403), (status = 404)))]
async fn apis_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
    MaQuery(_query): MaQuery<WorkspaceQuery>,
) -> Result<Json<AppAuthApiBasicInfosResponse>, ApiError> {
    caller.require(Action::Read, "read APIs")?;
    let service = load_service(&state, &caller, &service_id).await?;
    let apis: Vec<AuthTypeApiBasicInfo> = state
        .store
        .list_apis(&service.id)
        .await?
        .iter()
        .map(|api| AuthTypeApiBasicInfo::new(api, &service.name, &state.settings.public_url))
        .collect();
    Ok(Json(AppAuthApiBasicInfosResponse {
        count: apis.len(),
        total_count: apis.len(),
        apis,
    }))
}

/// DeleteAppAuthApi: 204 with no body (spec §7 #13).
#[utoipa::path(delete, path = "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}", tag = "app-auth APIs",
    operation_id = "DeleteAppAuthApi",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path), WorkspaceQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn apis_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    MaQuery(_query): MaQuery<WorkspaceQuery>,
) -> Result<StatusCode, ApiError> {
    let service = load_service(&state, &caller, &service_id).await?;
    caller.require(
        Action::Write {
            owner: &service.owner,
        },
        "delete APIs of this service",
    )?;
    let api = load_api(&state, &service, &api_id).await?;
    state
        .store
        .delete_api(&api.id)
        .await
        .map_err(ApiError::about(StoreTarget::Api(&api_id)))?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(apis_create))
        .routes(routes!(apis_show))
        .routes(routes!(apis_list))
        .routes(routes!(apis_delete))
}

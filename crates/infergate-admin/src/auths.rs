//! Authorizations between APIs and apps (spec §2.13, §2.16–2.20): which app's credentials
//! may call which API.
//!
//! A batch reports each app's outcome in `success`/`reason`; malformed input fails the
//! whole request with a 400. Each batch is applied in one store transaction, so an app's
//! change is never half-applied and `bounded_api_count` (derived from the authorizations)
//! is always exact.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use infergate_core::access::Action;
use infergate_core::model::{Api, App, AuthType, Authorization, Service};
use infergate_core::{ids, validate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::apis::{load_api, AuthTypeApiBasicInfo};
use crate::apps::{app_view, filter_by_name, sort_apps, visible_apps, ApigAppDetailInfo};
use crate::auth::ProjectCaller;
use crate::error::{ApiError, StoreTarget};
use crate::extract::MaJson;
use crate::paging::Params;
use crate::services::{load_service, ApiPath, ServicePath};
use crate::{stamp_ms, AdminState};

/// Apps one batch may name.
pub const MAX_APPS_PER_REQUEST: usize = 100;

// === DTOs ===

/// `Apps`: one app of a batch (spec §3, §7 #16: `app_id` is required).
#[derive(Debug, Deserialize, ToSchema)]
pub struct AppRef {
    pub app_id: String,
}

/// Body of the authorization operations.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AppsBody {
    pub apps: Vec<AppRef>,
    pub workspace_id: Option<String>,
}

/// `AppAuthResultInfo`: one app's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppAuthResultInfo {
    pub api_id: String,
    pub app_id: String,
    /// Empty on failure and on unbind.
    pub auth_id: String,
    pub success: bool,
    /// Empty on success.
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiAndAuthResultResponse {
    pub api: AuthTypeApiBasicInfo,
    pub auth_result: Vec<AppAuthResultInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiAuthAppResultResponse {
    pub auth_result: Vec<AppAuthResultInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiUnauthAppResultResponse {
    pub unauth_result: Vec<AppAuthResultInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiAuthInfo {
    pub app: ApigAppDetailInfo,
    pub authed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiAuthInfosResponse {
    pub auths: Vec<ApiAuthInfo>,
    pub count: usize,
    pub total_count: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppAuthApiAuthInfo {
    pub api_id: String,
    pub authed_apps: Vec<ApigAppDetailInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppAuthApiAuthInfoResponse {
    pub enable_app_auth: bool,
    /// With an empty `api_id` and no apps when the service has no APP API, so every
    /// schema field is present (spec §7 #17).
    pub app_auth_api: AppAuthApiAuthInfo,
}

/// Query of ShowApiAuthInfos.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiAuthsQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
    /// Substring of the app name.
    pub app_name: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// `AUTH`, `UNAUTH`, or absent for every visible app.
    pub show_only: Option<String>,
    /// `app_name` (default), `created_at` or `updated_at`.
    pub sort_by: Option<String>,
    pub workspace_id: Option<String>,
    pub iphertext_enabled: Option<bool>,
    pub app_ids: Option<Vec<String>>,
}

// === the batch logic ===

/// One requested app after the per-app checks.
enum Checked {
    Allowed(String),
    Refused { app_id: String, reason: String },
}

fn require_app_auth(api: &Api) -> Result<(), ApiError> {
    if api.auth_type == AuthType::App {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "invalid api_id: API {} has auth_type {}; only APP APIs are authorized to apps",
        api.id, api.auth_type
    )))
}

fn check_batch(apps: &[AppRef]) -> Result<(), ApiError> {
    if apps.len() > MAX_APPS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "invalid apps: at most {MAX_APPS_PER_REQUEST} apps per request"
        )));
    }
    for (i, app) in apps.iter().enumerate() {
        if app.app_id.is_empty() || app.app_id.len() > 64 {
            return Err(ApiError::BadRequest(format!(
                "invalid apps[{i}].app_id: must be 1-64 characters"
            )));
        }
    }
    Ok(())
}

/// Per-app rules of R8: the app exists in the project and was created by the service's
/// creator.
async fn check_apps(
    state: &AdminState,
    caller: &ProjectCaller,
    service: &Service,
    apps: &[AppRef],
) -> Result<Vec<Checked>, ApiError> {
    check_batch(apps)?;
    let mut checked = Vec::with_capacity(apps.len());
    for requested in apps {
        let app_id = requested.app_id.clone();
        let found: Option<App> = state
            .store
            .app(&app_id)
            .await?
            .filter(|a| a.project_id == caller.project_id);
        checked.push(match found {
            None => Checked::Refused {
                reason: format!("app {app_id} does not exist"),
                app_id,
            },
            Some(app) if app.owner != service.owner => Checked::Refused {
                reason: format!(
                    "app {app_id} was not created by the creator of service {}",
                    service.id
                ),
                app_id,
            },
            Some(_) => Checked::Allowed(app_id),
        });
    }
    Ok(checked)
}

fn result(
    api_id: &str,
    app_id: &str,
    auth_id: Option<String>,
    reason: String,
) -> AppAuthResultInfo {
    AppAuthResultInfo {
        api_id: api_id.to_owned(),
        app_id: app_id.to_owned(),
        success: reason.is_empty(),
        auth_id: if reason.is_empty() {
            auth_id.unwrap_or_default()
        } else {
            String::new()
        },
        reason,
    }
}

/// Binds the allowed apps (adding to, or with `replace` becoming, the API's set) and
/// reports every requested app in request order.
async fn bind(
    state: &AdminState,
    api: &Api,
    checked: Vec<Checked>,
    replace: bool,
) -> Result<Vec<AppAuthResultInfo>, ApiError> {
    let now = stamp_ms();
    let grants: Vec<Authorization> = checked
        .iter()
        .filter_map(|c| match c {
            Checked::Allowed(app_id) => Some(Authorization {
                auth_id: ids::new_hex_id(),
                api_id: api.id.clone(),
                app_id: app_id.clone(),
                created_at: now,
            }),
            Checked::Refused { .. } => None,
        })
        .collect();
    let applied = if replace {
        state.store.replace_authorizations(&api.id, &grants).await
    } else {
        state.store.authorize(&api.id, &grants).await
    }
    .map_err(ApiError::about(StoreTarget::Api(&api.id)))?;
    let mut applied = grants.iter().zip(applied);
    Ok(checked
        .into_iter()
        .map(|c| match c {
            Checked::Refused { app_id, reason } => result(&api.id, &app_id, None, reason),
            Checked::Allowed(app_id) => match applied.next() {
                Some((_, Some(auth_id))) => result(&api.id, &app_id, Some(auth_id), String::new()),
                _ => result(
                    &api.id,
                    &app_id,
                    None,
                    format!("app {app_id} does not exist"),
                ),
            },
        })
        .collect())
}

/// Loads the service and API of a path and checks the caller may change the service.
async fn writable_api(
    state: &AdminState,
    caller: &ProjectCaller,
    service_id: &str,
    api_id: &str,
    what: &str,
) -> Result<(Service, Api), ApiError> {
    let service = load_service(state, caller, service_id).await?;
    caller.require(
        Action::Write {
            owner: &service.owner,
        },
        what,
    )?;
    let api = load_api(state, &service, api_id).await?;
    Ok((service, api))
}

// === handlers ===

/// CreateAndAuthAppAuthApi: the service's APP API (created with the defaults of §2.11
/// when it has none, R13), then authorizes the apps.
#[utoipa::path(post, path = "/v1/{project_id}/services/{service_id}/app-auth-api", tag = "authorizations",
    operation_id = "CreateAndAuthAppAuthApi",
    params(("project_id" = String, Path), ("service_id" = String, Path)), request_body = AppsBody,
    responses((status = 200, body = ApiAndAuthResultResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn auths_create_and_authorize(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
    MaJson(body): MaJson<AppsBody>,
) -> Result<Json<ApiAndAuthResultResponse>, ApiError> {
    let service = load_service(&state, &caller, &service_id).await?;
    caller.require(
        Action::Write {
            owner: &service.owner,
        },
        "authorize APIs of this service",
    )?;
    let checked = check_apps(&state, &caller, &service, &body.apps).await?;
    let existing = state
        .store
        .list_apis(&service.id)
        .await?
        .into_iter()
        .find(|a| a.auth_type == AuthType::App);
    let api =
        match existing {
            Some(api) => api,
            None => {
                let now = stamp_ms();
                let api = Api {
                    id: ids::new_hex_id(),
                    service_id: service.id.clone(),
                    project_id: caller.project_id.clone(),
                    name: format!("infer_{}", service.id.replace('-', "")),
                    auth_type: AuthType::App,
                    support_app_code: true,
                    api_path: format!("/v1/infers/{}", service.id),
                    api_method: infergate_core::model::ApiMethod::Any,
                    remark: String::new(),
                    owner: caller.user_id.clone(),
                    created_at: now,
                    updated_at: now,
                };
                validate::api_path("api_path", &api.api_path)?;
                state.store.create_api(&api).await.map_err(ApiError::about(
                    StoreTarget::NewApi {
                        service: &service_id,
                    },
                ))?;
                api
            }
        };
    let auth_result = bind(&state, &api, checked, false).await?;
    Ok(Json(ApiAndAuthResultResponse {
        api: AuthTypeApiBasicInfo::new(&api, &service.name, &state.settings.public_url),
        auth_result,
    }))
}

/// AuthorizeApiToApigApps: idempotent; already-bound apps succeed with their auth id.
#[utoipa::path(post, path = "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api", tag = "authorizations",
    operation_id = "AuthorizeApiToApigApps",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path)), request_body = AppsBody,
    responses((status = 200, body = ApiAuthAppResultResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn auths_authorize(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    MaJson(body): MaJson<AppsBody>,
) -> Result<Json<ApiAuthAppResultResponse>, ApiError> {
    authorize_batch(&state, &caller, &service_id, &api_id, body, false).await
}

/// UpdateAuthApiToApigApps: the listed apps become the complete authorized set (§2.17).
#[utoipa::path(put, path = "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api", tag = "authorizations",
    operation_id = "UpdateAuthApiToApigApps",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path)), request_body = AppsBody,
    responses((status = 200, body = ApiAuthAppResultResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn auths_replace(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    MaJson(body): MaJson<AppsBody>,
) -> Result<Json<ApiAuthAppResultResponse>, ApiError> {
    authorize_batch(&state, &caller, &service_id, &api_id, body, true).await
}

/// Authorizes (or, with `replace`, sets exactly) the apps of a batch on an APP API.
async fn authorize_batch(
    state: &AdminState,
    caller: &ProjectCaller,
    service_id: &str,
    api_id: &str,
    body: AppsBody,
    replace: bool,
) -> Result<Json<ApiAuthAppResultResponse>, ApiError> {
    let (service, api) = writable_api(
        state,
        caller,
        service_id,
        api_id,
        "authorize APIs of this service",
    )
    .await?;
    require_app_auth(&api)?;
    let checked = check_apps(state, caller, &service, &body.apps).await?;
    let auth_result = bind(state, &api, checked, replace).await?;
    Ok(Json(ApiAuthAppResultResponse { auth_result }))
}

async fn unbind(
    state: &AdminState,
    caller: &ProjectCaller,
    service_id: &str,
    api_id: &str,
    body: AppsBody,
) -> Result<Json<ApiUnauthAppResultResponse>, ApiError> {
    let (_, api) = writable_api(
        state,
        caller,
        service_id,
        api_id,
        "unauthorize APIs of this service",
    )
    .await?;
    check_batch(&body.apps)?;
    let app_ids: Vec<String> = body.apps.into_iter().map(|a| a.app_id).collect();
    let unbound = state
        .store
        .unauthorize(&api.id, &app_ids)
        .await
        .map_err(ApiError::about(StoreTarget::Api(&api.id)))?;
    let unauth_result = app_ids
        .iter()
        .zip(unbound)
        .map(|(app_id, was_bound)| {
            let reason = if was_bound {
                String::new()
            } else {
                format!("app {app_id} is not authorized to API {}", api.id)
            };
            result(&api.id, app_id, None, reason)
        })
        .collect();
    Ok(Json(ApiUnauthAppResultResponse { unauth_result }))
}

/// DeleteApiAppAuth: a DELETE with a JSON body (spec §7 #12).
#[utoipa::path(delete, path = "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/app-auth-api", tag = "authorizations",
    operation_id = "DeleteApiAppAuth",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path), ("workspace_id" = Option<String>, Query)),
    request_body = AppsBody,
    responses((status = 200, body = ApiUnauthAppResultResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn auths_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    MaJson(body): MaJson<AppsBody>,
) -> Result<Json<ApiUnauthAppResultResponse>, ApiError> {
    unbind(&state, &caller, &service_id, &api_id, body).await
}

/// DeleteApiAppAuth on its documented alias path.
#[utoipa::path(delete, path = "/v1/{project_id}/app-auth/{service_id}/apis/{api_id}/auths", tag = "authorizations",
    operation_id = "DeleteApiAppAuthAlias",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path), ("workspace_id" = Option<String>, Query)),
    request_body = AppsBody,
    responses((status = 200, body = ApiUnauthAppResultResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn auths_delete_alias(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    MaJson(body): MaJson<AppsBody>,
) -> Result<Json<ApiUnauthAppResultResponse>, ApiError> {
    unbind(&state, &caller, &service_id, &api_id, body).await
}

/// ShowApiAuthInfos: every app the caller may see, with whether it is bound (R12).
#[utoipa::path(get, path = "/v1/{project_id}/services/{service_id}/app-auth-apis/{api_id}/api-auths", tag = "authorizations",
    operation_id = "ShowApiAuthInfos",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("api_id" = String, Path), ApiAuthsQuery),
    responses((status = 200, body = ApiAuthInfosResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn auths_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ApiPath {
        service_id, api_id, ..
    }): Path<ApiPath>,
    params: Params,
) -> Result<Json<ApiAuthInfosResponse>, ApiError> {
    caller.require(Action::Read, "read authorizations")?;
    let page = params.page()?;
    let show_only = params.one_of("show_only", &["AUTH", "UNAUTH"])?;
    let reveal_all = params.bool("iphertext_enabled")?.unwrap_or(false);
    let reveal_ids = params.all("app_ids");
    let service = load_service(&state, &caller, &service_id).await?;
    let api = load_api(&state, &service, &api_id).await?;
    require_app_auth(&api)?;
    let bound: Vec<String> = state
        .store
        .authorizations_of_api(&api.id)
        .await?
        .into_iter()
        .map(|a| a.app_id)
        .collect();
    let mut apps = visible_apps(&state, &caller).await?;
    filter_by_name(&mut apps, &params)?;
    match show_only {
        Some("AUTH") => apps.retain(|a| bound.contains(&a.id)),
        Some(_) => apps.retain(|a| !bound.contains(&a.id)),
        None => {}
    }
    sort_apps(&mut apps, &params)?;
    let total_count = apps.len();
    let auths = page
        .apply(apps)
        .iter()
        .map(|app| {
            Ok(ApiAuthInfo {
                authed: bound.contains(&app.id),
                app: app_view(
                    &state,
                    &caller,
                    app,
                    reveal_all && reveal_ids.contains(&app.id.as_str()),
                )?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(ApiAuthInfosResponse {
        count: auths.len(),
        total_count,
        auths,
    }))
}

/// GetServiceAppAuthApiAuthInfo: the service's APP API and the apps bound to it.
#[utoipa::path(get, path = "/v1/{project_id}/services/{service_id}/api-auths", tag = "authorizations",
    operation_id = "GetServiceAppAuthApiAuthInfo",
    params(("project_id" = String, Path), ("service_id" = String, Path), ("workspace_id" = Option<String>, Query)),
    responses((status = 200, body = AppAuthApiAuthInfoResponse), (status = 401), (status = 403), (status = 404)))]
async fn auths_of_service(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
) -> Result<Json<AppAuthApiAuthInfoResponse>, ApiError> {
    caller.require(Action::Read, "read authorizations")?;
    let service = load_service(&state, &caller, &service_id).await?;
    let api = state
        .store
        .list_apis(&service.id)
        .await?
        .into_iter()
        .find(|a| a.auth_type == AuthType::App);
    let Some(api) = api else {
        return Ok(Json(AppAuthApiAuthInfoResponse {
            enable_app_auth: false,
            app_auth_api: AppAuthApiAuthInfo {
                api_id: String::new(),
                authed_apps: Vec::new(),
            },
        }));
    };
    let mut authed_apps = Vec::new();
    for grant in state.store.authorizations_of_api(&api.id).await? {
        if let Some(app) = state.store.app(&grant.app_id).await? {
            authed_apps.push(app_view(&state, &caller, &app, false)?);
        }
    }
    Ok(Json(AppAuthApiAuthInfoResponse {
        enable_app_auth: true,
        app_auth_api: AppAuthApiAuthInfo {
            api_id: api.id,
            authed_apps,
        },
    }))
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(auths_create_and_authorize))
        .routes(routes!(auths_authorize, auths_replace, auths_delete))
        .routes(routes!(auths_delete_alias))
        .routes(routes!(auths_list))
        .routes(routes!(auths_of_service))
}

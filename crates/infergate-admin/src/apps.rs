//! Apps, AppSecrets and AppCodes (spec §2.1–2.10): the credentials client teams use.
//!
//! An app belongs to its creator (R1, R3): only the creator changes it; a project admin may
//! read it; anyone else is told it does not exist.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use infergate_core::access::Action;
use infergate_core::model::{App, AppCode, Role};
use infergate_core::{ids, validate, Secret};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::apis::AuthTypeApiBasicInfo;
use crate::auth::ProjectCaller;
use crate::error::{ApiError, StoreTarget};
use crate::extract::MaJson;
use crate::paging::Params;
use crate::{now_ms, stamp_ms, AdminState};

/// Purpose string of the keyed hash that finds an AppCode by value.
pub const APP_CODE_INDEX: &str = "infergate/app-code-index/v1";
const MASK: &str = "******";
pub(crate) const MAX_REMARK: usize = 200;

// === DTOs ===

/// Body of CreateApigApp.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAppRequest {
    /// `^[A-Za-z][A-Za-z0-9_]{2,63}$`, unique in the project.
    pub app_name: String,
    /// At most 200 characters.
    pub app_remark: Option<String>,
    pub workspace_id: Option<String>,
}

/// The optional body of ResetApigAppSecret and the AppCode operations: only
/// `workspace_id` matters (spec §7 #5).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WorkspaceBody {
    pub app_name: Option<String>,
    pub app_remark: Option<String>,
    pub workspace_id: Option<String>,
}

/// `ApigAppDetailInfo` (spec §3).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApigAppDetailInfo {
    pub app_id: String,
    pub app_name: String,
    pub app_remark: String,
    pub app_key: String,
    pub app_secret: String,
    pub app_type: String,
    pub app_codes: Vec<String>,
    pub bounded_api_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub project_id: String,
    pub user_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApigAppInfoResponse {
    pub app: ApigAppDetailInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApigAppInfosResponse {
    pub apps: Vec<ApigAppDetailInfo>,
    pub count: usize,
    pub total_count: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApigAppExistsResponse {
    pub exists: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppAuthApiBasicInfosResponse {
    pub apis: Vec<AuthTypeApiBasicInfo>,
    pub count: usize,
    pub total_count: usize,
}

/// Query of ListApigApps (and, with `show_only`, of ShowApiAuthInfos).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListAppsQuery {
    /// Substring of the app name (case-insensitive).
    pub app_name: Option<String>,
    /// Items per page (default 1000).
    pub limit: Option<String>,
    /// Page index (default 0).
    pub offset: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// `app_name` (default; `name` too), `created_at` or `updated_at`.
    pub sort_by: Option<String>,
    pub workspace_id: Option<String>,
    /// With `app_ids`: show these apps' secrets in plain text when masking is on.
    pub iphertext_enabled: Option<bool>,
    /// Apps whose secret to show; repeat the key.
    pub app_ids: Option<Vec<String>>,
}

/// Query of ShowApigApp.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShowAppQuery {
    pub workspace_id: Option<String>,
    /// Show the secret in plain text when masking is on.
    pub iphertext_enabled: Option<bool>,
}

/// Query of ShowApisBindToApp.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoundApisQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub order: Option<String>,
    /// `api_name` (`app_name`/`name` map to it), `created_at` or `updated_at`.
    pub sort_by: Option<String>,
    /// Substring of the service name.
    pub service_name: Option<String>,
    pub workspace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AppPath {
    #[allow(dead_code)]
    pub project_id: String,
    pub app_id: String,
}

#[derive(Debug, Deserialize)]
pub struct AppCodePath {
    #[allow(dead_code)]
    pub project_id: String,
    pub app_id: String,
    pub app_code: String,
}

// === views and access ===

/// Whether `caller` may see an app's secrets at all: its creator or a project admin.
pub fn may_read_secrets(caller: &ProjectCaller, app: &App) -> bool {
    app.owner == caller.user_id || caller.role == Role::Admin
}

/// The API view of an app. Its credentials (AppKey, AppSecret, AppCodes) are shown to the
/// creator and project admins only (everyone else sees `******`), the secret subject to
/// `--mask-app-secrets` unless `reveal` (the request asked for it, or just made it).
pub fn app_view(
    state: &AdminState,
    caller: &ProjectCaller,
    app: &App,
    reveal: bool,
) -> Result<ApigAppDetailInfo, ApiError> {
    let trusted = may_read_secrets(caller, app);
    let unseal = |sealed: &str| {
        state.master.decrypt(sealed).map(|s| s.expose().to_owned()).map_err(|e| {
            tracing::error!(app_id = %app.id, error = %e, "a stored app secret cannot be decrypted");
            ApiError::Internal
        })
    };
    let app_secret = if trusted && (reveal || !state.settings.mask_app_secrets) {
        unseal(&app.secret_sealed)?
    } else {
        MASK.to_owned()
    };
    let app_codes = if trusted {
        app.codes
            .iter()
            .map(|c| unseal(&c.sealed))
            .collect::<Result<_, _>>()?
    } else {
        app.codes.iter().map(|_| MASK.to_owned()).collect()
    };
    Ok(ApigAppDetailInfo {
        app_id: app.id.clone(),
        app_name: app.name.clone(),
        app_remark: app.remark.clone(),
        // An AppKey is a credential too (`apikey: <AppKey>`): only those who may use the app
        // see it.
        app_key: if trusted {
            app.app_key.clone()
        } else {
            MASK.to_owned()
        },
        app_secret,
        app_type: app.app_type.clone(),
        app_codes,
        bounded_api_count: app.bounded_api_count,
        created_at: app.created_at,
        updated_at: app.updated_at,
        project_id: app.project_id.clone(),
        user_id: app.owner.clone(),
    })
}

/// Apps of the project the caller may see: their own, or all for a project admin (R1).
pub async fn visible_apps(
    state: &AdminState,
    caller: &ProjectCaller,
) -> Result<Vec<App>, ApiError> {
    let mut apps = state.store.list_apps(&caller.project_id).await?;
    if caller.role != Role::Admin {
        apps.retain(|a| a.owner == caller.user_id);
    }
    Ok(apps)
}

/// Loads an app the caller may read; others' apps are "not found" (404 `3923`).
async fn readable_app(
    state: &AdminState,
    caller: &ProjectCaller,
    app_id: &str,
) -> Result<App, ApiError> {
    if app_id.is_empty() || app_id.len() > 64 {
        return Err(ApiError::BadRequest(
            "invalid app_id: must be 1-64 characters".into(),
        ));
    }
    state
        .store
        .app(app_id)
        .await?
        .filter(|a| {
            a.project_id == caller.project_id
                && (a.owner == caller.user_id || caller.role == Role::Admin)
        })
        .ok_or_else(|| ApiError::AppNotFound(app_id.to_owned()))
}

/// Loads an app the caller may change: its creator only (R3).
async fn owned_app(
    state: &AdminState,
    caller: &ProjectCaller,
    app_id: &str,
    what: &str,
) -> Result<App, ApiError> {
    let app = readable_app(state, caller, app_id).await?;
    caller.require(Action::Write { owner: &app.owner }, what)?;
    if app.owner != caller.user_id {
        return Err(ApiError::Forbidden(format!("{what}: only its creator may")));
    }
    Ok(app)
}

/// Sorts apps by a `sort_by` value of the list operations.
pub fn sort_apps(apps: &mut [App], params: &Params) -> Result<(), ApiError> {
    let key = params
        .one_of("sort_by", &["app_name", "name", "created_at", "updated_at"])?
        .unwrap_or("app_name");
    match key {
        "created_at" => apps.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id))),
        "updated_at" => apps.sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id))),
        _ => apps.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    if params.descending()? {
        apps.reverse();
    }
    Ok(())
}

/// Case-insensitive substring filter on the app name.
pub fn filter_by_name(apps: &mut Vec<App>, params: &Params) -> Result<(), ApiError> {
    if let Some(needle) = params.text("app_name", 255)? {
        let needle = needle.to_lowercase();
        apps.retain(|a| a.name.to_lowercase().contains(&needle));
    }
    Ok(())
}

fn new_code(state: &AdminState, now: i64) -> (String, AppCode) {
    let value = ids::random_hex(32);
    let code = AppCode {
        sealed: state.master.encrypt(&Secret::new(value.clone())),
        index: state.master.blind_index(APP_CODE_INDEX, &value),
        created_at: now,
    };
    (value, code)
}

/// Custom AppCodes may be 64–180 characters of letters, digits and `+_!@#$%-/=` (spec
/// §2.7); anything else cannot name an existing code.
fn check_code_param(code: &str) -> Result<(), ApiError> {
    let ok = (64..=180).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_!@#$%-/=".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "invalid app_code: must be 64-180 letters, digits or +_!@#$%-/=".into(),
        ))
    }
}

// === handlers ===

/// CreateApigApp.
#[utoipa::path(post, path = "/v1/{project_id}/app-auth/apps", tag = "apps", operation_id = "CreateApigApp",
    params(("project_id" = String, Path)), request_body = CreateAppRequest,
    responses((status = 200, body = ApigAppInfoResponse), (status = 400), (status = 401), (status = 403), (status = 409)))]
async fn apps_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    MaJson(body): MaJson<CreateAppRequest>,
) -> Result<Json<ApigAppInfoResponse>, ApiError> {
    caller.require(Action::Create, "create apps in this project")?;
    validate::app_name(&body.app_name)?;
    let remark = body.app_remark.unwrap_or_default();
    validate::max_chars("app_remark", &remark, MAX_REMARK)?;
    let now = stamp_ms();
    let secret = Secret::new(ids::new_hex_id());
    let app = App {
        id: ids::new_hex_id(),
        project_id: caller.project_id.clone(),
        name: body.app_name,
        remark,
        app_key: ids::new_hex_id(),
        secret_sealed: state.master.encrypt(&secret),
        app_type: "APIG".into(),
        owner: caller.user_id.clone(),
        created_at: now,
        updated_at: now,
        codes: Vec::new(),
        bounded_api_count: 0,
    };
    state
        .store
        .create_app(&app, state.settings.max_apps_per_user)
        .await
        .map_err(ApiError::about(StoreTarget::NewApp))?;
    Ok(Json(ApigAppInfoResponse {
        app: app_view(&state, &caller, &app, true)?,
    }))
}

/// ListApigApps: the caller's apps (a project admin sees all).
#[utoipa::path(get, path = "/v1/{project_id}/app-auth/apps", tag = "apps", operation_id = "ListApigApps",
    params(("project_id" = String, Path), ListAppsQuery),
    responses((status = 200, body = ApigAppInfosResponse), (status = 400), (status = 401), (status = 403)))]
async fn apps_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    params: Params,
) -> Result<Json<ApigAppInfosResponse>, ApiError> {
    caller.require(Action::Read, "list apps")?;
    let page = params.page()?;
    let reveal_all = params.bool("iphertext_enabled")?.unwrap_or(false);
    let reveal_ids = params.all("app_ids");
    let mut apps = visible_apps(&state, &caller).await?;
    filter_by_name(&mut apps, &params)?;
    sort_apps(&mut apps, &params)?;
    let total_count = apps.len();
    let apps = page
        .apply(apps)
        .iter()
        .map(|app| {
            app_view(
                &state,
                &caller,
                app,
                reveal_all && reveal_ids.contains(&app.id.as_str()),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(ApigAppInfosResponse {
        count: apps.len(),
        total_count,
        apps,
    }))
}

/// ShowApigApp.
#[utoipa::path(get, path = "/v1/{project_id}/app-auth/apps/{app_id}", tag = "apps", operation_id = "ShowApigApp",
    params(("project_id" = String, Path), ("app_id" = String, Path), ShowAppQuery),
    responses((status = 200, body = ApigAppInfoResponse), (status = 401), (status = 403), (status = 404)))]
async fn apps_show(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppPath { app_id, .. }): Path<AppPath>,
    params: Params,
) -> Result<Json<ApigAppInfoResponse>, ApiError> {
    caller.require(Action::Read, "read apps")?;
    let reveal = params.bool("iphertext_enabled")?.unwrap_or(false);
    let app = readable_app(&state, &caller, &app_id).await?;
    Ok(Json(ApigAppInfoResponse {
        app: app_view(&state, &caller, &app, reveal)?,
    }))
}

/// ApigAppExists: whether an app of that name exists in the project (never a 404).
/// The path segment is the app *name* (it shares its position with `{app_id}` routes).
#[utoipa::path(get, path = "/v1/{project_id}/app-auth/apps/{app_id}/exists", tag = "apps", operation_id = "ApigAppExists",
    params(("project_id" = String, Path), ("app_id" = String, Path, description = "the app name to look for"),
        ("workspace_id" = Option<String>, Query)),
    responses((status = 200, body = ApigAppExistsResponse), (status = 401), (status = 403)))]
async fn apps_exists(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppPath {
        app_id: app_name, ..
    }): Path<AppPath>,
) -> Result<Json<ApigAppExistsResponse>, ApiError> {
    caller.require(Action::Read, "look up apps")?;
    let exists = state
        .store
        .app_by_name(&caller.project_id, &app_name)
        .await?
        .is_some();
    Ok(Json(ApigAppExistsResponse { exists }))
}

/// DeleteApigApp: 200 with an empty body; refused while the app is bound (R6).
#[utoipa::path(delete, path = "/v1/{project_id}/app-auth/apps/{app_id}", tag = "apps", operation_id = "DeleteApigApp",
    params(("project_id" = String, Path), ("app_id" = String, Path), ("workspace_id" = Option<String>, Query)),
    responses((status = 200), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn apps_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppPath { app_id, .. }): Path<AppPath>,
) -> Result<(), ApiError> {
    let app = owned_app(&state, &caller, &app_id, "delete this app").await?;
    state
        .store
        .delete_app(&app.id)
        .await
        .map_err(ApiError::about(StoreTarget::App(&app_id)))
}

/// ResetApigAppSecret: a new secret; the old one stops working at once (R17).
#[utoipa::path(put, path = "/v1/{project_id}/app-auth/apps/{app_id}/app-secret", tag = "apps", operation_id = "ResetApigAppSecret",
    params(("project_id" = String, Path), ("app_id" = String, Path)), request_body = WorkspaceBody,
    responses((status = 200, body = ApigAppInfoResponse), (status = 401), (status = 403), (status = 404)))]
async fn apps_reset_secret(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppPath { app_id, .. }): Path<AppPath>,
    MaJson(_body): MaJson<Option<WorkspaceBody>>,
) -> Result<Json<ApigAppInfoResponse>, ApiError> {
    let app = owned_app(&state, &caller, &app_id, "reset the secret of this app").await?;
    let sealed = state.master.encrypt(&Secret::new(ids::new_hex_id()));
    let app = state
        .store
        .set_app_secret(&app.id, &sealed, now_ms())
        .await
        .map_err(ApiError::about(StoreTarget::App(&app_id)))?;
    Ok(Json(ApigAppInfoResponse {
        app: app_view(&state, &caller, &app, true)?,
    }))
}

/// CreateApigAppCode: appends a generated 64-hex AppCode (at most the quota, R5).
#[utoipa::path(post, path = "/v1/{project_id}/app-auth/apps/{app_id}/app-code", tag = "apps", operation_id = "CreateApigAppCode",
    params(("project_id" = String, Path), ("app_id" = String, Path)), request_body = WorkspaceBody,
    responses((status = 200, body = ApigAppInfoResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn app_codes_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppPath { app_id, .. }): Path<AppPath>,
    MaJson(_body): MaJson<Option<WorkspaceBody>>,
) -> Result<Json<ApigAppInfoResponse>, ApiError> {
    let app = owned_app(&state, &caller, &app_id, "add AppCodes to this app").await?;
    let (_, code) = new_code(&state, now_ms());
    let app = state
        .store
        .add_app_code(&app.id, &code, state.settings.max_app_codes_per_app)
        .await
        .map_err(ApiError::about(StoreTarget::AppCode {
            app: &app_id,
            code: "",
        }))?;
    Ok(Json(ApigAppInfoResponse {
        app: app_view(&state, &caller, &app, false)?,
    }))
}

/// ResetApigAppCode: replaces one AppCode by a new one in the same position.
#[utoipa::path(put, path = "/v1/{project_id}/app-auth/apps/{app_id}/app-code/{app_code}", tag = "apps", operation_id = "ResetApigAppCode",
    params(("project_id" = String, Path), ("app_id" = String, Path), ("app_code" = String, Path)), request_body = WorkspaceBody,
    responses((status = 200, body = ApigAppInfoResponse), (status = 401), (status = 403), (status = 404)))]
async fn app_codes_reset(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppCodePath {
        app_id, app_code, ..
    }): Path<AppCodePath>,
    MaJson(_body): MaJson<Option<WorkspaceBody>>,
) -> Result<Json<ApigAppInfoResponse>, ApiError> {
    check_code_param(&app_code)?;
    let app = owned_app(&state, &caller, &app_id, "reset AppCodes of this app").await?;
    let old_index = state.master.blind_index(APP_CODE_INDEX, &app_code);
    let (_, code) = new_code(&state, now_ms());
    let app = state
        .store
        .replace_app_code(&app.id, &old_index, &code)
        .await
        .map_err(ApiError::about(StoreTarget::AppCode {
            app: &app_id,
            code: &app_code,
        }))?;
    Ok(Json(ApigAppInfoResponse {
        app: app_view(&state, &caller, &app, false)?,
    }))
}

/// DeleteApigAppCode: 200 with the app without that code; it stops working at once (R17).
#[utoipa::path(delete, path = "/v1/{project_id}/app-auth/apps/{app_id}/app-code/{app_code}", tag = "apps", operation_id = "DeleteApigAppCode",
    params(("project_id" = String, Path), ("app_id" = String, Path), ("app_code" = String, Path), ("workspace_id" = Option<String>, Query)),
    responses((status = 200, body = ApigAppInfoResponse), (status = 401), (status = 403), (status = 404)))]
async fn app_codes_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppCodePath {
        app_id, app_code, ..
    }): Path<AppCodePath>,
) -> Result<Json<ApigAppInfoResponse>, ApiError> {
    check_code_param(&app_code)?;
    let app = owned_app(&state, &caller, &app_id, "delete AppCodes of this app").await?;
    let index = state.master.blind_index(APP_CODE_INDEX, &app_code);
    let app = state
        .store
        .delete_app_code(&app.id, &index, now_ms())
        .await
        .map_err(ApiError::about(StoreTarget::AppCode {
            app: &app_id,
            code: &app_code,
        }))?;
    Ok(Json(ApigAppInfoResponse {
        app: app_view(&state, &caller, &app, false)?,
    }))
}

/// ShowApisBindToApp: the APIs the app is authorized for.
#[utoipa::path(get, path = "/v1/{project_id}/app-auth/apps/{app_id}/auth-apis", tag = "apps", operation_id = "ShowApisBindToApp",
    params(("project_id" = String, Path), ("app_id" = String, Path), BoundApisQuery),
    responses((status = 200, body = AppAuthApiBasicInfosResponse), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn apps_bound_apis(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(AppPath { app_id, .. }): Path<AppPath>,
    params: Params,
) -> Result<Json<AppAuthApiBasicInfosResponse>, ApiError> {
    caller.require(Action::Read, "read apps")?;
    let page = params.page()?;
    let sort_key = params
        .one_of(
            "sort_by",
            &["api_name", "app_name", "name", "created_at", "updated_at"],
        )?
        .unwrap_or("api_name");
    let descending = params.descending()?;
    let service_filter = params.text("service_name", 255)?.map(str::to_lowercase);
    let app = readable_app(&state, &caller, &app_id).await?;
    let mut rows = Vec::new();
    for grant in state.store.authorizations_of_app(&app.id).await? {
        let Some(api) = state.store.api(&grant.api_id).await? else {
            continue;
        };
        let Some(service) = state.store.service(&api.service_id).await? else {
            continue;
        };
        if service_filter
            .as_deref()
            .is_some_and(|f| !service.name.to_lowercase().contains(f))
        {
            continue;
        }
        rows.push((api, service.name));
    }
    match sort_key {
        "created_at" => {
            rows.sort_by(|a, b| (a.0.created_at, &a.0.id).cmp(&(b.0.created_at, &b.0.id)))
        }
        "updated_at" => {
            rows.sort_by(|a, b| (a.0.updated_at, &a.0.id).cmp(&(b.0.updated_at, &b.0.id)))
        }
        _ => rows.sort_by(|a, b| (&a.0.name, &a.0.id).cmp(&(&b.0.name, &b.0.id))),
    }
    if descending {
        rows.reverse();
    }
    let total_count = rows.len();
    let apis: Vec<AuthTypeApiBasicInfo> = page
        .apply(rows)
        .iter()
        .map(|(api, service_name)| {
            AuthTypeApiBasicInfo::new(api, service_name, &state.settings.public_url)
        })
        .collect();
    Ok(Json(AppAuthApiBasicInfosResponse {
        count: apis.len(),
        total_count,
        apis,
    }))
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(apps_create, apps_list))
        .routes(routes!(apps_show, apps_delete))
        .routes(routes!(apps_exists))
        .routes(routes!(apps_reset_secret))
        .routes(routes!(app_codes_create))
        .routes(routes!(app_codes_reset, app_codes_delete))
        .routes(routes!(apps_bound_apis))
}

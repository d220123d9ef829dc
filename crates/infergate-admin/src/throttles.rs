//! Request throttling policies in Huawei APIG's shape (the instance is always `default`):
//! policies, their bindings to APIs, and special limits for single apps or users. Project
//! roles apply as for services: members create, owners and admins change, everyone reads.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use infergate_core::access::Action;
use infergate_core::ids;
use infergate_core::throttle::{
    self, Limits, SpecialKind, Throttle, ThrottleBinding, ThrottleSpecial, ThrottleType,
    ThrottleUnit, TimeUnit, MAX_LIMIT,
};
use infergate_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ProjectCaller;
use crate::error::{ApiError, StoreTarget};
use crate::extract::{MaJson, MaQuery};
use crate::{now_ms, AdminState};

// === DTOs ===

/// Body of `POST …/throttles` and `PUT …/throttles/{throttle_id}` (a PUT replaces all).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThrottleBody {
    /// 3–64 letters, digits or `_`, starting with a letter; unique in the project.
    pub name: String,
    /// Calls per window of the API (type 1) or of all bound APIs (type 2), 1–2147483647.
    pub api_call_limits: Option<i64>,
    /// Calls per window by one IAM user, at most `api_call_limits`.
    pub user_call_limits: Option<i64>,
    /// Calls per window by one app, at most `user_call_limits` (when set) and `api_call_limits`.
    pub app_call_limits: Option<i64>,
    /// Calls per window from one source IP, at most `api_call_limits`.
    pub ip_call_limits: Option<i64>,
    /// The window's length in `time_unit`s, 1–2147483647.
    pub time_interval: Option<i64>,
    /// SECOND, MINUTE, HOUR or DAY.
    pub time_unit: Option<String>,
    /// 1: each bound API counted on its own (default); 2: one count for all bound APIs.
    #[serde(rename = "type")]
    pub kind: Option<i64>,
    /// At most 255 characters.
    pub remark: Option<String>,
    /// What the limits count: REQUEST (calls, the default) or TOKEN (the total tokens of
    /// model calls). Set at creation; a policy's unit never changes.
    pub unit: Option<String>,
    /// TOKEN only: the completion tokens reserved for a call that gives no `max_tokens`,
    /// `max_completion_tokens` or `max_output_tokens`, 1–2147483647 (default 1024).
    pub default_max_tokens: Option<i64>,
}

/// Body of `POST …/throttle-bindings`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BindingBody {
    pub policy_id: String,
    /// The APIs to bind (API ids), 1–100.
    pub publish_ids: Vec<String>,
}

/// Query of `GET …/throttle-bindings/binded-apis`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BoundQuery {
    pub throttle_id: Option<String>,
}

/// Body of `POST …/throttle-specials`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SpecialBody {
    /// 1–2147483647; replaces the policy's app or user limit for this object.
    pub call_limits: i64,
    /// An app id (APP) or an IAM user id (USER).
    pub object_id: String,
    /// APP or USER.
    pub object_type: String,
}

/// Body of `PUT …/throttle-specials/{strategy_id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SpecialUpdate {
    pub call_limits: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThrottleView {
    pub id: String,
    pub name: String,
    pub api_call_limits: u64,
    pub user_call_limits: Option<u64>,
    pub app_call_limits: Option<u64>,
    pub ip_call_limits: Option<u64>,
    pub time_interval: u64,
    pub time_unit: String,
    #[serde(rename = "type")]
    pub kind: i64,
    /// REQUEST or TOKEN.
    pub unit: String,
    /// TOKEN only: the completion tokens reserved for a call that does not cap its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u64>,
    pub remark: String,
    pub create_time: String,
    /// APIs bound to the policy.
    pub bind_num: usize,
    /// 1 when the policy has special limits, else 2.
    pub is_inclu_special_throttle: i64,
}

/// Path of `…/throttles/{throttle_id}`.
#[derive(Debug, Deserialize)]
pub struct ThrottlePath {
    #[allow(dead_code)]
    pub project_id: String,
    pub throttle_id: String,
}

/// Path of `…/throttles/{throttle_id}/throttle-specials/{strategy_id}`.
#[derive(Debug, Deserialize)]
pub struct SpecialPath {
    #[allow(dead_code)]
    pub project_id: String,
    pub throttle_id: String,
    pub strategy_id: String,
}

/// Path of `…/throttle-bindings/{throttle_binding_id}`.
#[derive(Debug, Deserialize)]
pub struct BindingPath {
    #[allow(dead_code)]
    pub project_id: String,
    pub throttle_binding_id: String,
}

fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::ThrottleNotFound(format!("{what} {id} does not exist"))
}

/// A policy from a request body; `existing` keeps id, project, owner and creation time.
fn throttle_from(
    body: ThrottleBody,
    caller: &ProjectCaller,
    existing: Option<&Throttle>,
) -> Result<Throttle, ApiError> {
    throttle::name(&body.name)?;
    let (api, user, app, ip, interval) = throttle::check(Limits {
        api_call_limits: body.api_call_limits,
        user_call_limits: body.user_call_limits,
        app_call_limits: body.app_call_limits,
        ip_call_limits: body.ip_call_limits,
        time_interval: body.time_interval,
    })?;
    let unit = body
        .time_unit
        .ok_or_else(|| ApiError::BadRequest("invalid time_unit: is required".into()))?;
    let time_unit = TimeUnit::from_str(&unit).map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid time_unit: {unit:?} is not one of SECOND, MINUTE, HOUR, DAY"
        ))
    })?;
    let kind = match body.kind {
        None => ThrottleType::PerApi,
        Some(code) => ThrottleType::from_code(code)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid type: {code} is not 1 or 2")))?,
    };
    // A PUT that leaves them out keeps the policy's unit and default reservation.
    let kept = existing.filter(|t| t.unit == ThrottleUnit::Token);
    let (unit, default_max_tokens) = throttle::unit(
        body.unit.as_deref().or(existing.map(|t| t.unit.as_str())),
        body.default_max_tokens
            .or(kept.map(|t| t.default_max_tokens as i64)),
    )?;
    if let Some(existing) = existing.filter(|t| t.unit != unit) {
        return Err(ApiError::BadRequest(format!(
            "invalid unit: the policy counts {}; a policy's unit cannot change (create another policy)",
            existing.unit
        )));
    }
    let remark = body.remark.unwrap_or_default();
    infergate_core::validate::max_chars("remark", &remark, 255)?;
    let now = now_ms();
    Ok(Throttle {
        id: existing.map_or_else(ids::new_hex_id, |t| t.id.clone()),
        project_id: caller.project_id.clone(),
        name: body.name,
        remark,
        api_call_limits: api,
        user_call_limits: user,
        app_call_limits: app,
        ip_call_limits: ip,
        time_interval: interval,
        time_unit,
        kind,
        unit,
        default_max_tokens,
        owner: existing.map_or_else(|| caller.user_id.clone(), |t| t.owner.clone()),
        created_at: existing.map_or(now, |t| t.created_at),
        updated_at: now,
    })
}

async fn view(state: &AdminState, t: &Throttle) -> Result<ThrottleView, ApiError> {
    let bind_num = state.store.throttle_bindings(&t.id).await?.len();
    let specials = state.store.throttle_specials(&t.id).await?.len();
    Ok(ThrottleView {
        id: t.id.clone(),
        name: t.name.clone(),
        api_call_limits: t.api_call_limits,
        user_call_limits: t.user_call_limits,
        app_call_limits: t.app_call_limits,
        ip_call_limits: t.ip_call_limits,
        time_interval: t.time_interval,
        time_unit: t.time_unit.as_str().to_owned(),
        kind: t.kind.code(),
        unit: t.unit.as_str().to_owned(),
        default_max_tokens: (t.unit == ThrottleUnit::Token).then_some(t.default_max_tokens),
        remark: t.remark.clone(),
        create_time: time(t.created_at),
        bind_num,
        is_inclu_special_throttle: if specials > 0 { 1 } else { 2 },
    })
}

/// A policy of the caller's project; another project's is "not found".
async fn load(state: &AdminState, caller: &ProjectCaller, id: &str) -> Result<Throttle, ApiError> {
    state
        .store
        .throttle(id)
        .await?
        .filter(|t| t.project_id == caller.project_id)
        .ok_or_else(|| not_found("throttling policy", id))
}

/// A policy the caller may change.
async fn writable(
    state: &AdminState,
    caller: &ProjectCaller,
    id: &str,
    what: &str,
) -> Result<Throttle, ApiError> {
    let throttle = load(state, caller, id).await?;
    caller.require(
        Action::Write {
            owner: &throttle.owner,
        },
        what,
    )?;
    Ok(throttle)
}

fn call_limits(value: i64) -> Result<u64, ApiError> {
    if (1..=MAX_LIMIT as i64).contains(&value) {
        Ok(value as u64)
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid call_limits: must be an integer from 1 to {MAX_LIMIT}"
        )))
    }
}

fn special_view(s: &ThrottleSpecial, object_name: &str) -> Value {
    json!({
        "id": s.id,
        "strategy_id": s.throttle_id,
        "instance_id": "default",
        "call_limits": s.call_limits,
        "object_id": s.object_id,
        "object_type": s.object_type.as_str(),
        "object_name": object_name,
        "apply_time": time(s.updated_at),
    })
}

// === handlers: policies ===

#[utoipa::path(post, path = "/v2/{project_id}/apigw/instances/default/throttles", tag = "throttles",
    params(("project_id" = String, Path)), request_body = ThrottleBody,
    responses((status = 201, body = ThrottleView), (status = 400), (status = 401), (status = 403), (status = 409)))]
async fn throttles_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    MaJson(body): MaJson<ThrottleBody>,
) -> Result<(StatusCode, Json<ThrottleView>), ApiError> {
    caller.require(Action::Create, "create throttling policies in this project")?;
    let throttle = throttle_from(body, &caller, None)?;
    state.store.create_throttle(&throttle).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &throttle).await?)))
}

#[utoipa::path(get, path = "/v2/{project_id}/apigw/instances/default/throttles", tag = "throttles",
    params(("project_id" = String, Path)),
    responses((status = 200, description = "size, total, throttles"), (status = 401), (status = 403)))]
async fn throttles_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::Read, "read this project")?;
    let mut throttles = Vec::new();
    for t in state.store.list_throttles(&caller.project_id).await? {
        throttles.push(view(&state, &t).await?);
    }
    Ok(Json(json!({
        "size": throttles.len(),
        "total": throttles.len(),
        "throttles": throttles,
    })))
}

#[utoipa::path(get, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path)),
    responses((status = 200, body = ThrottleView), (status = 401), (status = 403), (status = 404)))]
async fn throttles_show(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<ThrottlePath>,
) -> Result<Json<ThrottleView>, ApiError> {
    caller.require(Action::Read, "read this project")?;
    let throttle = load(&state, &caller, &path.throttle_id).await?;
    Ok(Json(view(&state, &throttle).await?))
}

#[utoipa::path(put, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path)), request_body = ThrottleBody,
    responses((status = 200, body = ThrottleView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn throttles_update(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<ThrottlePath>,
    MaJson(body): MaJson<ThrottleBody>,
) -> Result<Json<ThrottleView>, ApiError> {
    let existing = writable(&state, &caller, &path.throttle_id, "change this policy").await?;
    let throttle = throttle_from(body, &caller, Some(&existing))?;
    state
        .store
        .update_throttle(&throttle)
        .await
        .map_err(ApiError::about(StoreTarget::Throttle(&throttle.id)))?;
    Ok(Json(view(&state, &throttle).await?))
}

#[utoipa::path(delete, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn throttles_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<ThrottlePath>,
) -> Result<StatusCode, ApiError> {
    let throttle = writable(&state, &caller, &path.throttle_id, "delete this policy").await?;
    state
        .store
        .delete_throttle(&throttle.id)
        .await
        .map_err(ApiError::about(StoreTarget::Throttle(&throttle.id)))?;
    Ok(StatusCode::NO_CONTENT)
}

// === handlers: bindings ===

#[utoipa::path(post, path = "/v2/{project_id}/apigw/instances/default/throttle-bindings", tag = "throttles",
    params(("project_id" = String, Path)), request_body = BindingBody,
    responses((status = 201, description = "throttle_applys"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn bindings_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    MaJson(body): MaJson<BindingBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.publish_ids.is_empty() || body.publish_ids.len() > 100 {
        return Err(ApiError::BadRequest(
            "invalid publish_ids: must list 1 to 100 API ids".into(),
        ));
    }
    let throttle = writable(&state, &caller, &body.policy_id, "bind this policy").await?;
    let now = now_ms();
    let mut bindings = Vec::with_capacity(body.publish_ids.len());
    for (i, api_id) in body.publish_ids.iter().enumerate() {
        if bindings
            .iter()
            .any(|b: &ThrottleBinding| &b.api_id == api_id)
        {
            return Err(ApiError::BadRequest(format!(
                "invalid publish_ids[{i}]: {api_id} is listed twice"
            )));
        }
        let api = state
            .store
            .api(api_id)
            .await?
            .filter(|a| a.project_id == caller.project_id)
            .ok_or_else(|| ApiError::ApiNotFound(api_id.clone()))?;
        // Binding changes how the API answers: its service's writers decide.
        let service = crate::services::load_service(&state, &caller, &api.service_id).await?;
        caller.require(
            Action::Write {
                owner: &service.owner,
            },
            "bind policies to APIs of this service",
        )?;
        bindings.push(ThrottleBinding {
            id: ids::new_hex_id(),
            throttle_id: throttle.id.clone(),
            api_id: api.id,
            created_at: now,
        });
    }
    state
        .store
        .bind_throttle(&bindings)
        .await
        .map_err(|e| match e {
            StoreError::NotFound("api") => ApiError::ApiNotFound(body.publish_ids.join(",")),
            other => ApiError::about(StoreTarget::Throttle(&throttle.id))(other),
        })?;
    let applied: Vec<Value> = bindings
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "policy_id": b.throttle_id,
                "publish_id": b.api_id,
                "scope": 1,
                "status": 1,
                "apply_time": time(b.created_at),
            })
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({"throttle_applys": applied})),
    ))
}

#[utoipa::path(get, path = "/v2/{project_id}/apigw/instances/default/throttle-bindings/binded-apis", tag = "throttles",
    params(("project_id" = String, Path), BoundQuery),
    responses((status = 200, description = "size, total, apis"), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn bindings_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    MaQuery(query): MaQuery<BoundQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::Read, "read this project")?;
    let throttle_id = query
        .throttle_id
        .ok_or_else(|| ApiError::BadRequest("invalid throttle_id: is required".into()))?;
    let throttle = load(&state, &caller, &throttle_id).await?;
    let mut apis = Vec::new();
    for b in state.store.throttle_bindings(&throttle.id).await? {
        let Some(api) = state.store.api(&b.api_id).await? else {
            continue;
        };
        apis.push(json!({
            "id": api.id,
            "name": api.name,
            "req_method": api.api_method.as_str(),
            "req_uri": api.api_path,
            "auth_type": api.auth_type.as_str(),
            "publish_id": api.id,
            "throttle_apply_id": b.id,
            "throttle_name": throttle.name,
            "apply_time": time(b.created_at),
        }));
    }
    Ok(Json(
        json!({"size": apis.len(), "total": apis.len(), "apis": apis}),
    ))
}

#[utoipa::path(delete, path = "/v2/{project_id}/apigw/instances/default/throttle-bindings/{throttle_binding_id}", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_binding_id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn bindings_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<BindingPath>,
) -> Result<StatusCode, ApiError> {
    let id = &path.throttle_binding_id;
    let binding = state
        .store
        .throttle_binding(id)
        .await?
        .ok_or_else(|| not_found("throttle binding", id))?;
    // Only a binding of a policy of this project, by whom may change the policy.
    writable(&state, &caller, &binding.throttle_id, "unbind this policy")
        .await
        .map_err(|e| match e {
            ApiError::ThrottleNotFound(_) => not_found("throttle binding", id),
            other => other,
        })?;
    state
        .store
        .unbind_throttle(id)
        .await
        .map_err(|_| not_found("throttle binding", id))?;
    Ok(StatusCode::NO_CONTENT)
}

// === handlers: special limits ===

#[utoipa::path(post, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path)), request_body = SpecialBody,
    responses((status = 201, description = "the special limit"), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn specials_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<ThrottlePath>,
    MaJson(body): MaJson<SpecialBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let throttle = writable(&state, &caller, &path.throttle_id, "change this policy").await?;
    let call_limits = call_limits(body.call_limits)?;
    let object_type = SpecialKind::from_str(&body.object_type).map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid object_type: {:?} is not APP or USER",
            body.object_type
        ))
    })?;
    // The object must be one this project knows: an app of the project, or a user with a
    // role in it.
    let object_name = match object_type {
        SpecialKind::App => state
            .store
            .app(&body.object_id)
            .await?
            .filter(|a| a.project_id == caller.project_id)
            .map(|a| a.name),
        SpecialKind::User => {
            let member = !state
                .store
                .roles(&caller.project_id, &body.object_id)
                .await?
                .is_empty();
            match state.store.user(&body.object_id).await? {
                Some(user) if member => Some(user.name),
                _ => None,
            }
        }
    }
    .ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid object_id: no {} {} in this project",
            object_type.as_str(),
            body.object_id
        ))
    })?;
    let now = now_ms();
    let special = ThrottleSpecial {
        id: ids::new_hex_id(),
        throttle_id: throttle.id.clone(),
        object_type,
        object_id: body.object_id,
        call_limits,
        created_at: now,
        updated_at: now,
    };
    state.store.create_throttle_special(&special).await?;
    Ok((
        StatusCode::CREATED,
        Json(special_view(&special, &object_name)),
    ))
}

#[utoipa::path(get, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path)),
    responses((status = 200, description = "size, total, throttle_specials"), (status = 401), (status = 403), (status = 404)))]
async fn specials_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<ThrottlePath>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Action::Read, "read this project")?;
    let throttle = load(&state, &caller, &path.throttle_id).await?;
    let specials: Vec<Value> = state
        .store
        .throttle_specials(&throttle.id)
        .await?
        .iter()
        .map(|s| special_view(s, ""))
        .collect();
    Ok(Json(json!({
        "size": specials.len(),
        "total": specials.len(),
        "throttle_specials": specials,
    })))
}

/// The special limit `strategy_id` of the policy in the path, which the caller may change.
async fn writable_special(
    state: &AdminState,
    caller: &ProjectCaller,
    path: &SpecialPath,
) -> Result<ThrottleSpecial, ApiError> {
    let throttle = writable(state, caller, &path.throttle_id, "change this policy").await?;
    state
        .store
        .throttle_specials(&throttle.id)
        .await?
        .into_iter()
        .find(|s| s.id == path.strategy_id)
        .ok_or_else(|| not_found("special limit", &path.strategy_id))
}

#[utoipa::path(put, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials/{strategy_id}", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path), ("strategy_id" = String, Path)), request_body = SpecialUpdate,
    responses((status = 200, description = "the special limit"), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn specials_update(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<SpecialPath>,
    MaJson(body): MaJson<SpecialUpdate>,
) -> Result<Json<Value>, ApiError> {
    let special = writable_special(&state, &caller, &path).await?;
    let call_limits = call_limits(body.call_limits)?;
    let special = state
        .store
        .update_throttle_special(&special.id, call_limits, now_ms())
        .await
        .map_err(|_| not_found("special limit", &path.strategy_id))?;
    Ok(Json(special_view(&special, "")))
}

#[utoipa::path(delete, path = "/v2/{project_id}/apigw/instances/default/throttles/{throttle_id}/throttle-specials/{strategy_id}", tag = "throttles",
    params(("project_id" = String, Path), ("throttle_id" = String, Path), ("strategy_id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn specials_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(path): Path<SpecialPath>,
) -> Result<StatusCode, ApiError> {
    let special = writable_special(&state, &caller, &path).await?;
    state
        .store
        .delete_throttle_special(&special.id)
        .await
        .map_err(|_| not_found("special limit", &path.strategy_id))?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(throttles_create, throttles_list))
        .routes(routes!(throttles_show, throttles_update, throttles_delete))
        .routes(routes!(bindings_create))
        .routes(routes!(bindings_list))
        .routes(routes!(bindings_delete))
        .routes(routes!(specials_create, specials_list))
        .routes(routes!(specials_update, specials_delete))
}

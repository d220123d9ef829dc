//! Services: the inference backends that APIs expose (our extension; spec R7).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use infergate_core::access::Action;
use infergate_core::model::{LoadBalancing, Service};
use infergate_core::net::UrlCheck;
use infergate_core::{ids, validate};
use infergate_store::ServiceUpdate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ProjectCaller;
use crate::error::{ApiError, StoreTarget};
use crate::extract::{MaJson, MaQuery};
use crate::paging::{Page, PageQuery};
use crate::{now_ms, stamp_ms, AdminState};

// === DTOs ===

/// Path parameters of `/v1/{project_id}/…/{service_id}`.
#[derive(Debug, Deserialize)]
pub struct ServicePath {
    #[allow(dead_code)]
    pub project_id: String,
    pub service_id: String,
}

/// Path parameters of `/v1/{project_id}/…/{service_id}/…/{api_id}`.
#[derive(Debug, Deserialize)]
pub struct ApiPath {
    #[allow(dead_code)]
    pub project_id: String,
    pub service_id: String,
    pub api_id: String,
}

/// Body of `POST /v1/{project_id}/services`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ServiceCreate {
    /// `^[A-Za-z][A-Za-z0-9_-]{0,63}$`, unique in the project.
    pub service_name: String,
    /// At most 1024 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// 1–16 absolute http(s) base URLs.
    pub upstreams: Vec<String>,
    /// The weight of each upstream in balancing (1–100, one per upstream, in their order);
    /// default: all equal.
    #[serde(default)]
    pub upstream_weights: Option<Vec<i64>>,
    /// 1–600000; default 40000.
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    /// Read model calls' token usage (`…/chat/completions`, `…/completions`,
    /// `…/embeddings`, `…/responses`), asking streamed requests for it; default true.
    /// `false` leaves request and answer bodies untouched.
    #[serde(default)]
    pub usage_accounting: Option<bool>,
    /// How calls are spread over the upstreams: `least_outstanding` (default: the upstream
    /// with the fewest calls in flight from the node, ties at random) or `round_robin`.
    #[serde(default)]
    pub load_balancing: Option<String>,
    /// PEM certificates (at most 256 KiB) that `https://` upstreams are verified against
    /// instead of the system's roots: a private CA.
    #[serde(default)]
    pub tls_ca_pem: Option<String>,
    /// Probes that take an upstream out of rotation while it fails them: `{"path":
    /// "/health"}` and optionally `interval_ms` (5000), `timeout_ms` (1000),
    /// `healthy_threshold` (2), `unhealthy_threshold` (3), `expected_statuses` ([200]).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub health_check: Option<serde_json::Value>,
    /// When a call goes on to another upstream: `{"attempts": 2, "on": ["connect", "5xx",
    /// "429"]}` (defaults: 2, ["connect"]); absent: on a refused connection, through every
    /// upstream.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub retry: Option<serde_json::Value>,
    #[serde(default)]
    pub workspace_id: Option<String>,
}

/// A member that was given, `null` or not: `Some(None)` for `null`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<serde_json::Value>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

/// Body of `PUT /v1/{project_id}/services/{service_id}`; omitted fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ServiceModify {
    #[serde(default)]
    pub description: Option<String>,
    /// New upstreams: their weights are reset to equal unless `upstream_weights` comes
    /// with them.
    #[serde(default)]
    pub upstreams: Option<Vec<String>>,
    /// New weights, one per upstream (of this body's `upstreams`, else the service's).
    #[serde(default)]
    pub upstream_weights: Option<Vec<i64>>,
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub usage_accounting: Option<bool>,
    #[serde(default)]
    pub load_balancing: Option<String>,
    /// A new CA bundle; `""` removes it (the system's roots again).
    #[serde(default)]
    pub tls_ca_pem: Option<String>,
    /// A new health check; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub health_check: Option<Option<serde_json::Value>>,
    /// A new retry setting; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub retry: Option<Option<serde_json::Value>>,
    #[serde(default)]
    pub workspace_id: Option<String>,
}

/// A service as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceInfo {
    pub service_id: String,
    pub service_name: String,
    pub description: String,
    pub upstreams: Vec<String>,
    /// The weight of each upstream in balancing, in their order.
    pub upstream_weights: Vec<u32>,
    pub timeout_ms: u64,
    /// Whether model calls' token usage is read.
    pub usage_accounting: bool,
    /// `least_outstanding` or `round_robin`.
    pub load_balancing: &'static str,
    /// The CA bundle `https://` upstreams are verified against; absent: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_pem: Option<String>,
    /// The active health check of the upstreams, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub health_check: Option<infergate_core::model::HealthCheck>,
    /// When a call goes on to another upstream, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub retry: Option<infergate_core::model::Retry>,
    /// Always `running`: the gateway routes to a service as soon as it exists.
    pub status: &'static str,
    pub owner: String,
    pub project_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<Service> for ServiceInfo {
    fn from(s: Service) -> Self {
        Self {
            service_id: s.id,
            service_name: s.name,
            description: s.description,
            upstream_weights: if s.upstream_weights.len() == s.upstreams.len() {
                s.upstream_weights
            } else {
                vec![1; s.upstreams.len()]
            },
            upstreams: s.upstreams,
            timeout_ms: s.timeout_ms,
            usage_accounting: s.usage_accounting,
            load_balancing: s.load_balancing.as_str(),
            tls_ca_pem: s.tls_ca_pem,
            health_check: s.health_check,
            retry: s.retry,
            status: "running",
            owner: s.owner,
            project_id: s.project_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceInfo>,
    pub count: usize,
    pub total_count: usize,
}

pub(crate) const MAX_DESCRIPTION: usize = 1024;

/// Loads a service of the caller's project; another project's service is "not found".
pub async fn load_service(
    state: &AdminState,
    caller: &ProjectCaller,
    service_id: &str,
) -> Result<Service, ApiError> {
    if service_id.is_empty() || service_id.len() > 128 {
        return Err(ApiError::BadRequest(
            "invalid service_id: must be 1-128 characters".into(),
        ));
    }
    state
        .store
        .service(service_id)
        .await?
        .filter(|s| s.project_id == caller.project_id)
        .ok_or_else(|| ApiError::ServiceNotFound(service_id.to_owned()))
}

// === handlers ===

/// Whether `ip` is one of this host's addresses: only those can be bound to.
fn is_local(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Refuses upstreams this node may not call: one of its own listeners (a loop), or, with
/// `upstream_allow`, a host outside it. A name is judged by the addresses it resolves to
/// now; the gateway judges each new connection again by the address it reached.
async fn check_targets(state: &AdminState, upstreams: &[String]) -> Result<(), ApiError> {
    let policy = &state.settings.upstream_policy;
    for (i, url) in upstreams.iter().enumerate() {
        let refuse = |why: String| ApiError::BadRequest(format!("upstreams[{i}]: {why}"));
        let addrs = match policy.check_url(url) {
            UrlCheck::Allowed => continue,
            UrlCheck::Refused(why) => return Err(refuse(why)),
            UrlCheck::Resolve { host, port, listed } => {
                let lookup = tokio::net::lookup_host((host.as_str(), port));
                match tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await {
                    Ok(Ok(addrs)) => addrs.map(|a| (a, listed)).collect::<Vec<_>>(),
                    // Unresolvable now: the gateway decides when it connects, unless only
                    // listed hosts may be called.
                    _ if policy.allow.is_empty() || listed => continue,
                    _ => {
                        return Err(refuse(format!(
                            "{host} does not resolve, and upstream_allow lists neither it nor its addresses"
                        )))
                    }
                }
            }
        };
        for (addr, listed) in addrs {
            if let UrlCheck::Refused(why) = policy.check_addr(addr, listed, is_local) {
                return Err(refuse(why));
            }
        }
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/{project_id}/services", tag = "services",
    params(("project_id" = String, Path)), request_body = ServiceCreate,
    responses((status = 200, body = ServiceInfo), (status = 400), (status = 401), (status = 403), (status = 409)))]
async fn services_create(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    MaJson(body): MaJson<ServiceCreate>,
) -> Result<Json<ServiceInfo>, ApiError> {
    caller.require(Action::Create, "create services in this project")?;
    validate::service_name(&body.service_name)?;
    let description = body.description.unwrap_or_default();
    validate::max_chars("description", &description, MAX_DESCRIPTION)?;
    let upstreams = validate::upstreams(&body.upstreams)?;
    let upstream_weights = body
        .upstream_weights
        .map(|w| validate::upstream_weights(&w, upstreams.len()))
        .transpose()?
        .unwrap_or_default();
    check_targets(&state, &upstreams).await?;
    let timeout_ms = match body.timeout_ms {
        Some(t) => validate::timeout_ms(t)?,
        None => validate::DEFAULT_TIMEOUT_MS,
    };
    let now = stamp_ms();
    let service = Service {
        id: ids::new_uuid(),
        project_id: caller.project_id.clone(),
        name: body.service_name,
        description,
        upstreams,
        upstream_weights,
        timeout_ms,
        usage_accounting: body.usage_accounting.unwrap_or(true),
        load_balancing: match body.load_balancing.as_deref() {
            Some(text) => validate::load_balancing(text)?,
            None => LoadBalancing::default(),
        },
        tls_ca_pem: match body.tls_ca_pem {
            Some(pem) => {
                validate::tls_ca_pem(&pem)?;
                Some(pem)
            }
            None => None,
        },
        health_check: body
            .health_check
            .filter(|v| !v.is_null())
            .map(|v| validate::health_check(&v))
            .transpose()?,
        retry: body
            .retry
            .filter(|v| !v.is_null())
            .map(|v| validate::retry(&v))
            .transpose()?,
        owner: caller.user_id.clone(),
        created_at: now,
        updated_at: now,
    };
    state.store.create_service(&service).await?;
    Ok(Json(service.into()))
}

#[utoipa::path(get, path = "/v1/{project_id}/services", tag = "services",
    params(("project_id" = String, Path), PageQuery),
    responses((status = 200, body = ServiceList), (status = 401), (status = 403)))]
async fn services_list(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    MaQuery(query): MaQuery<PageQuery>,
) -> Result<Json<ServiceList>, ApiError> {
    caller.require(Action::Read, "list services")?;
    let page = Page::from_query(&query)?;
    let all = state.store.list_services(&caller.project_id).await?;
    let total_count = all.len();
    let services: Vec<ServiceInfo> = page.apply(all).into_iter().map(Into::into).collect();
    Ok(Json(ServiceList {
        count: services.len(),
        total_count,
        services,
    }))
}

#[utoipa::path(get, path = "/v1/{project_id}/services/{service_id}", tag = "services",
    params(("project_id" = String, Path), ("service_id" = String, Path)),
    responses((status = 200, body = ServiceInfo), (status = 401), (status = 403), (status = 404)))]
async fn services_show(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
) -> Result<Json<ServiceInfo>, ApiError> {
    caller.require(Action::Read, "read services")?;
    Ok(Json(
        load_service(&state, &caller, &service_id).await?.into(),
    ))
}

#[utoipa::path(put, path = "/v1/{project_id}/services/{service_id}", tag = "services",
    params(("project_id" = String, Path), ("service_id" = String, Path)), request_body = ServiceModify,
    responses((status = 200, body = ServiceInfo), (status = 400), (status = 401), (status = 403), (status = 404)))]
async fn services_update(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
    MaJson(body): MaJson<ServiceModify>,
) -> Result<Json<ServiceInfo>, ApiError> {
    let service = load_service(&state, &caller, &service_id).await?;
    caller.require(
        Action::Write {
            owner: &service.owner,
        },
        "update this service",
    )?;
    if let Some(description) = &body.description {
        validate::max_chars("description", description, MAX_DESCRIPTION)?;
    }
    let upstreams = body
        .upstreams
        .as_deref()
        .map(validate::upstreams)
        .transpose()?;
    let upstream_weights = body
        .upstream_weights
        .map(|w| {
            let count = upstreams.as_ref().map_or(service.upstreams.len(), Vec::len);
            validate::upstream_weights(&w, count)
        })
        .transpose()?;
    if let Some(upstreams) = &upstreams {
        check_targets(&state, upstreams).await?;
    }
    let timeout_ms = body.timeout_ms.map(validate::timeout_ms).transpose()?;
    let load_balancing = body
        .load_balancing
        .as_deref()
        .map(validate::load_balancing)
        .transpose()?;
    let tls_ca_pem = match body.tls_ca_pem {
        Some(pem) if pem.is_empty() => Some(None),
        Some(pem) => {
            validate::tls_ca_pem(&pem)?;
            Some(Some(pem))
        }
        None => None,
    };
    let health_check = match body.health_check {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(validate::health_check(&v)?)),
    };
    let retry = match body.retry {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(validate::retry(&v)?)),
    };
    let update = ServiceUpdate {
        description: body.description,
        upstreams,
        upstream_weights,
        timeout_ms,
        usage_accounting: body.usage_accounting,
        load_balancing,
        tls_ca_pem,
        health_check,
        retry,
        updated_at: now_ms(),
    };
    let service = state
        .store
        .update_service(&service.id, &update)
        .await
        .map_err(ApiError::about(StoreTarget::Service(&service_id)))?;
    Ok(Json(service.into()))
}

#[utoipa::path(delete, path = "/v1/{project_id}/services/{service_id}", tag = "services",
    params(("project_id" = String, Path), ("service_id" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn services_delete(
    State(state): State<Arc<AdminState>>,
    caller: ProjectCaller,
    Path(ServicePath { service_id, .. }): Path<ServicePath>,
) -> Result<axum::http::StatusCode, ApiError> {
    let service = load_service(&state, &caller, &service_id).await?;
    caller.require(
        Action::Write {
            owner: &service.owner,
        },
        "delete this service",
    )?;
    state
        .store
        .delete_service(&service.id)
        .await
        .map_err(ApiError::about(StoreTarget::Service(&service_id)))?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

pub fn router() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::new()
        .routes(routes!(services_create, services_list))
        .routes(routes!(services_show, services_update, services_delete))
}

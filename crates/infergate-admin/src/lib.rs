//! The management plane of infergate: the ModelArts app-auth API (`/v1/{project_id}/…`),
//! the embedded IAM subset (`/v3…`), health, readiness and the OpenAPI document.
//!
//! It owns HTTP routing, request validation, permissions and the two error surfaces. It
//! reaches data only through the `Store` trait and never speaks SQL.

mod api_doc;
pub mod apis;
pub mod apps;
pub mod auth;
pub mod auths;
pub mod bootstrap;
mod console;
mod docs;
pub mod error;
pub mod extract;
pub mod guesses;
pub mod iam;
mod origin;
pub mod paging;
pub mod services;
pub mod throttles;
pub mod usage;

use guesses::Guesses;
use infergate_core::lockout::LockoutPolicy;
use infergate_core::net::UpstreamPolicy;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use infergate_core::logsink::LogSink;
use infergate_core::token::TokenCodec;
use infergate_core::MasterKey;
use infergate_store::{ConfigPublisher, Store};
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, IamError};
pub use crate::origin::Peer;

/// Settings the management plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Base of every `predict_url` (the gateway's public address).
    pub public_url: String,
    /// Base URL of this management plane, as shown in token catalogs.
    pub admin_url: String,
    /// Mask `app_secret` in reads unless the request asks for it (spec §7 #7).
    pub mask_app_secrets: bool,
    /// Apps one user may own (spec R2).
    pub max_apps_per_user: u32,
    /// AppCodes one app may hold (spec R5).
    pub max_app_codes_per_app: u32,
    /// Consecutive wrong passwords that lock a user, and for how long.
    pub password_lockout: LockoutPolicy,
    /// Consecutive failed signatures that lock an IAM access key, and for how long.
    pub access_key_lockout: LockoutPolicy,
    /// Password hashes computed at once; more requests are answered 429.
    pub max_password_hashes: usize,
    /// Where services may point: `upstream_allow` and this node's own listeners.
    pub upstream_policy: UpstreamPolicy,
    /// The bearer token `/metrics` asks for; none: it answers loopback clients only.
    pub metrics_token: Option<infergate_core::Secret>,
    /// Host names (lowercase) besides IP addresses and `localhost` under which web pages
    /// may write to the admin listener (the node adds its machine's name and the public
    /// URL's host to `admin_hosts`).
    pub admin_hosts: Vec<String>,
}

impl AdminSettings {
    pub const DEFAULT_MAX_APPS_PER_USER: u32 = 5;
    pub const DEFAULT_MAX_APP_CODES_PER_APP: u32 = 5;

    /// One password hash at a time per core.
    pub fn default_password_hashes() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    /// Settings with the default quotas and plain-text secrets.
    pub fn new(public_url: impl Into<String>, admin_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            admin_url: admin_url.into(),
            mask_app_secrets: false,
            max_apps_per_user: Self::DEFAULT_MAX_APPS_PER_USER,
            max_app_codes_per_app: Self::DEFAULT_MAX_APP_CODES_PER_APP,
            password_lockout: LockoutPolicy::PASSWORD,
            access_key_lockout: LockoutPolicy::ACCESS_KEY,
            max_password_hashes: Self::default_password_hashes(),
            upstream_policy: UpstreamPolicy::default(),
            metrics_token: None,
            admin_hosts: Vec::new(),
        }
    }
}

/// Everything a management handler may use.
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub master: MasterKey,
    pub tokens: TokenCodec,
    pub settings: AdminSettings,
    /// Lockouts and the password-hashing budget.
    pub guesses: Guesses,
    /// Republishes the gateway snapshot after each successful write, before the response.
    pub publisher: Option<Arc<ConfigPublisher>>,
    /// Metrics and the access log; absent in tests that do not look at them.
    pub observability: Option<Observability>,
    /// Where throttling counts are kept, for `/readyz` (with shared limits only).
    pub limits_status: Option<Arc<dyn Fn() -> &'static str + Send + Sync>>,
    /// Upstreams under active health checks on this node, and how many of them are out of
    /// rotation, for `/readyz`.
    pub upstream_health: Option<Arc<dyn Fn() -> UpstreamHealth + Send + Sync>>,
}

/// What this node's health checks found, as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct UpstreamHealth {
    /// Upstreams of health-checked services.
    pub checked: usize,
    /// Of those, the ones out of rotation.
    pub unhealthy: usize,
}

/// The process's metrics registry and access log, as the management plane uses them.
#[derive(Clone)]
pub struct Observability {
    pub registry: prometheus::Registry,
    pub access_log: Option<Arc<LogSink>>,
    requests: prometheus::IntCounterVec,
    snapshot_revision: prometheus::IntGauge,
    snapshot_age: prometheus::Gauge,
    log_dropped: prometheus::IntGauge,
}

impl Observability {
    pub fn new(
        registry: prometheus::Registry,
        access_log: Option<Arc<LogSink>>,
    ) -> Result<Self, prometheus::Error> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "infergate_admin_requests_total",
                "Management requests, by operation and status.",
            ),
            &["operation", "status"],
        )?;
        let snapshot_revision = prometheus::IntGauge::new(
            "infergate_snapshot_revision",
            "Configuration revision the gateway serves.",
        )?;
        let snapshot_age = prometheus::Gauge::new(
            "infergate_snapshot_age_seconds",
            "Seconds since the served snapshot was published.",
        )?;
        let log_dropped = prometheus::IntGauge::new(
            "infergate_access_log_dropped_lines",
            "Access-log lines dropped because the writer could not keep up.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(snapshot_revision.clone()))?;
        registry.register(Box::new(snapshot_age.clone()))?;
        registry.register(Box::new(log_dropped.clone()))?;
        Ok(Self {
            registry,
            access_log,
            requests,
            snapshot_revision,
            snapshot_age,
            log_dropped,
        })
    }
}

/// The user a management request acted as, set on the response by the auth middleware.
#[derive(Debug, Clone)]
pub struct ActingUser(pub String);

/// The request id, set on the request by the outermost middleware.
#[derive(Debug, Clone)]
struct RequestId(String);

impl AdminState {
    pub fn new(store: Arc<dyn Store>, master: MasterKey, settings: AdminSettings) -> Self {
        Self {
            store,
            tokens: TokenCodec::new(&master),
            master,
            guesses: Guesses::new(
                settings.password_lockout,
                settings.access_key_lockout,
                settings.max_password_hashes,
            ),
            settings,
            publisher: None,
            observability: None,
            limits_status: None,
            upstream_health: None,
        }
    }

    pub fn with_upstream_health(
        mut self,
        health: Arc<dyn Fn() -> UpstreamHealth + Send + Sync>,
    ) -> Self {
        self.upstream_health = Some(health);
        self
    }

    pub fn with_limits_status(
        mut self,
        status: Option<Arc<dyn Fn() -> &'static str + Send + Sync>>,
    ) -> Self {
        self.limits_status = status;
        self
    }

    pub fn with_observability(mut self, observability: Observability) -> Self {
        self.observability = Some(observability);
        self
    }

    pub fn with_publisher(mut self, publisher: Arc<ConfigPublisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The `created_at` of a new service, API, app or authorization: milliseconds since the Unix
/// epoch, strictly increasing within this process, so that objects created one after another
/// list in that order even when they fall within one millisecond.
pub fn stamp_ms() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_ms();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "infergate management API",
        description = "ModelArts-compatible app authentication management, services, and the embedded IAM subset."
    ),
    tags(
        (name = "services", description = "Inference backends"),
        (name = "app-auth APIs", description = "How services are exposed (spec §2.11–2.15)"),
        (name = "apps", description = "Apps, AppSecrets and AppCodes (spec §2.1–2.10)"),
        (name = "authorizations", description = "Which apps may call which API (spec §2.13, §2.16–2.20)"),
        (name = "usage", description = "Token usage of model calls, per app and API"),
        (name = "iam", description = "Tokens, users, projects, roles, AK/SK (Keystone v3 shapes)"),
        (name = "operations", description = "Health and readiness")
    )
)]
struct ApiDoc;

/// `/healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `/readyz`: the store answers; also reports the configuration revision (also in the
/// `X-Config-Revision` header), where throttling counts are kept, and how many upstreams
/// under health checks are out of rotation (the node stays ready: its other services
/// still answer, and each such call is answered 502 on its own).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503)))]
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.store.revision().await {
        Ok(revision) => {
            let mut body = json!({"status": "ready", "store": "ok", "revision": revision});
            if let Some(status) = &state.limits_status {
                body["limits"] = json!(status());
            }
            if let Some(health) = &state.upstream_health {
                body["upstreams"] = json!(health());
            }
            let mut response = Json(body).into_response();
            response
                .headers_mut()
                .insert("X-Config-Revision", HeaderValue::from(revision));
            response
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unready", "store": "unreachable"})),
            )
                .into_response()
        }
    }
}

/// The routers of the three surfaces and the OpenAPI document of all of them.
struct Surfaces {
    modelarts: Router<Arc<AdminState>>,
    iam: Router<Arc<AdminState>>,
    public: Router<Arc<AdminState>>,
    doc: utoipa::openapi::OpenApi,
}

fn surfaces() -> Surfaces {
    let (modelarts, modelarts_doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(services::router())
        .merge(apis::router())
        .merge(apps::router())
        .merge(auths::router())
        .merge(throttles::router())
        .merge(usage::router())
        .split_for_parts();
    let (iam, iam_doc) = iam::router().split_for_parts();
    let (public, public_doc) = iam::public_router()
        .routes(utoipa_axum::routes!(healthz))
        .routes(utoipa_axum::routes!(readyz))
        .split_for_parts();
    let mut doc = modelarts_doc;
    doc.merge(iam_doc);
    doc.merge(public_doc);
    Surfaces {
        modelarts,
        iam,
        public,
        doc,
    }
}

/// The OpenAPI document of the whole management plane, generated from the handlers and
/// completed with what every operation can answer and the validation's rules.
pub fn openapi() -> serde_json::Value {
    api_doc::complete(surfaces().doc)
}

/// The management plane as one router; used by `serve` and by the tests.
pub fn app(state: Arc<AdminState>) -> Router {
    let Surfaces {
        modelarts,
        iam,
        public,
        doc,
    } = surfaces();
    let doc = Arc::new(api_doc::complete(doc));
    let inner = Router::new()
        .merge(
            modelarts
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    auth::require_modelarts_caller,
                ))
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    publish_changes,
                )),
        )
        .merge(
            iam.route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_iam_caller,
            ))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                publish_changes,
            )),
        )
        .merge(public)
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/metrics", get(metrics))
        .merge(docs::routes())
        .merge(console::routes(&state.settings.public_url))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            origin::refuse_other_sites,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    let normalized = tower::ServiceBuilder::new()
        .map_request(collapse_slashes)
        .service(inner);
    Router::new()
        .fallback_service(normalized)
        .layer(middleware::from_fn(request_id))
}

/// After a successful write, the gateway snapshot is rebuilt before the response leaves,
/// so the very next call through the gateway sees the change.
async fn publish_changes(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(req).await;
    if writes && response.status().is_success() {
        if let Some(publisher) = &state.publisher {
            if let Err(err) = publisher.refresh().await {
                tracing::error!(error = %err, "publishing the new configuration failed; the periodic refresh will retry");
            }
        }
    }
    response
}

async fn no_route(method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/v3") {
        return IamError::NotFound(format!("no resource at {method} {}", uri.path()))
            .into_response();
    }
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
    .into_response()
}

/// `//v1/…` and `/v1//…` route like `/v1/…` (spec §7 #10).
fn collapse_slashes(mut req: Request) -> Request {
    let path = req.uri().path();
    if !path.contains("//") {
        return req;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    let rebuilt = match req.uri().query() {
        Some(q) => format!("{collapsed}?{q}"),
        None => collapsed,
    };
    if let Ok(path_and_query) = rebuilt.parse::<axum::http::uri::PathAndQuery>() {
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// `/metrics`: the Prometheus text format of every metric of the process.
async fn metrics(State(state): State<Arc<AdminState>>, req: Request) -> Response {
    let Some(obs) = &state.observability else {
        return (StatusCode::NOT_FOUND, "metrics are off").into_response();
    };
    if let Err(refused) = origin::metrics_access(
        state.settings.metrics_token.as_ref(),
        req.extensions().get::<Peer>().copied(),
        origin::authority(&req),
        req.headers().get(axum::http::header::AUTHORIZATION),
    ) {
        let mut response = refused.into_response();
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
        }
        return response;
    }
    if let Some(publisher) = &state.publisher {
        let snapshot = publisher.snapshots().load_full();
        obs.snapshot_revision.set(snapshot.revision);
        let age_ms = (now_ms() - snapshot.published_at_ms).max(0);
        obs.snapshot_age.set(age_ms as f64 / 1000.0);
    }
    if let Some(sink) = &obs.access_log {
        obs.log_dropped.set(sink.dropped() as i64);
    }
    let mut text = String::new();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&obs.registry.gather(), &mut text)
    {
        tracing::error!(error = %err, "encoding metrics failed");
        return ApiError::Internal.into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// Counts every management request by operation (its route, never its concrete path) and
/// status, and writes its access-log line with the acting user.
async fn observe(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let Some(obs) = state.observability.clone() else {
        return next.run(req).await;
    };
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let operation = match req.extensions().get::<axum::extract::MatchedPath>() {
        // `/v1/{project_id}/services` becomes `/v1/:project_id/services`: braces inside label
        // values trip some text-format parsers.
        Some(path) => format!(
            "{method} {}",
            path.as_str().replace('{', ":").replace('}', "")
        ),
        None => "unmatched".to_owned(),
    };
    let path = req.uri().path().to_owned();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    obs.requests
        .with_label_values(&[operation.as_str(), &status.to_string()])
        .inc();
    if let Some(sink) = &obs.access_log {
        let user = response
            .extensions()
            .get::<ActingUser>()
            .map(|u| u.0.clone());
        sink.emit(
            json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "kind": "management",
                "request_id": request_id,
                "operation": operation,
                "method": method.as_str(),
                "path": path,
                "status": status,
                "user_id": user,
                "total_ms": (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
            })
            .to_string(),
        );
    }
    response
}

/// Tags every response with `X-Request-Id`. The access log has the request's line; the
/// process log repeats it only at debug level.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = infergate_core::ids::new_hex_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    tracing::debug!(
        request_id = %id,
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "management request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("X-Request-Id", value);
    }
    response
}

#[cfg(test)]
mod stamp_tests {
    use super::{now_ms, stamp_ms};

    #[test]
    fn creation_stamps_strictly_increase_and_follow_the_clock() {
        let before = now_ms();
        let stamps: Vec<i64> = (0..1000).map(|_| stamp_ms()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
        assert!(stamps[0] >= before);
    }
}

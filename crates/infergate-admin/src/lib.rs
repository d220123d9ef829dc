//! The management plane of infergate: the ModelArts app-auth API (`/v1/{project_id}/…`),
//! the embedded IAM subset (`/v3…`), health, readiness and the OpenAPI document.
//!
//! It owns HTTP routing, request validation, permissions and the two error surfaces. It
//! reaches data only through the `Store` trait and never speaks SQL.

pub mod apis;
pub mod apps;
pub mod auth;
pub mod auths;
pub mod bootstrap;
pub mod error;
pub mod extract;
pub mod iam;
pub mod paging;
pub mod services;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use infergate_core::token::TokenCodec;
use infergate_core::MasterKey;
use infergate_store::{ConfigPublisher, Store};
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, IamError};

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
}

impl AdminSettings {
    pub const DEFAULT_MAX_APPS_PER_USER: u32 = 5;
    pub const DEFAULT_MAX_APP_CODES_PER_APP: u32 = 5;

    /// Settings with the default quotas and plain-text secrets.
    pub fn new(public_url: impl Into<String>, admin_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into(),
            admin_url: admin_url.into(),
            mask_app_secrets: false,
            max_apps_per_user: Self::DEFAULT_MAX_APPS_PER_USER,
            max_app_codes_per_app: Self::DEFAULT_MAX_APP_CODES_PER_APP,
        }
    }
}

/// Everything a management handler may use.
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub master: MasterKey,
    pub tokens: TokenCodec,
    pub settings: AdminSettings,
    /// Republishes the gateway snapshot after each successful write, before the response.
    pub publisher: Option<Arc<ConfigPublisher>>,
}

impl AdminState {
    pub fn new(store: Arc<dyn Store>, master: MasterKey, settings: AdminSettings) -> Self {
        Self {
            store,
            tokens: TokenCodec::new(&master),
            master,
            settings,
            publisher: None,
        }
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
/// `X-Config-Revision` header).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503)))]
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.store.revision().await {
        Ok(revision) => {
            let mut response =
                Json(json!({"status": "ready", "store": "ok", "revision": revision}))
                    .into_response();
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

/// The OpenAPI document of the whole management plane, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    surfaces().doc
}

/// The management plane as one router; used by `serve` and by the tests.
pub fn app(state: Arc<AdminState>) -> Router {
    let Surfaces {
        modelarts,
        iam,
        public,
        doc,
    } = surfaces();
    let doc = Arc::new(doc);
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
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
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

/// Tags every response with `X-Request-Id` and logs one line per request.
async fn request_id(req: Request, next: Next) -> Response {
    let id = infergate_core::ids::new_hex_id();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    tracing::info!(
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

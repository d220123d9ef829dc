//! The error tables of the management plane: `ModelArts.*` for `/v1/{project_id}/…`
//! (spec §4.2) and the Keystone shape for the IAM subset (spec §6). Status codes and codes
//! are chosen here and nowhere else; internal causes are logged, never echoed.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use infergate_core::validate::FieldError;
use infergate_store::StoreError;
use serde_json::json;

/// Every failure of a management (`/v1/…`) operation.
#[derive(Debug)]
pub enum ApiError {
    MissingToken,
    TokenExpired {
        expires_at: i64,
    },
    TokenInvalid(String),
    AkSkInvalid(String),
    NotProjectScoped,
    ProjectMismatch,
    Forbidden(String),
    BadRequest(String),
    Quota(String),
    ServiceNotFound(String),
    ApiNotFound(String),
    ApiNotInService {
        api_id: String,
        service_id: String,
    },
    ApiConflict(String),
    AppNotFound(String),
    AppCodeNotFound(String),
    AppConflict(String),
    AppStillBound(String),
    /// A throttling policy, binding or special limit; the text names which.
    ThrottleNotFound(String),
    Conflict(String),
    NoRoute {
        method: String,
        path: String,
    },
    MethodNotAllowed {
        method: String,
        path: String,
    },
    PayloadTooLarge(String),
    Unavailable,
    Internal,
}

impl ApiError {
    /// The one table: status, `error_code`, `error_msg`.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use ApiError::*;
        match self {
            MissingToken => (
                StatusCode::UNAUTHORIZED,
                "ModelArts.0201",
                "X-Auth-Token is missing in the request".into(),
            ),
            TokenExpired { expires_at } => (
                StatusCode::UNAUTHORIZED,
                "ModelArts.0202",
                format!("token expired at {expires_at}"),
            ),
            TokenInvalid(why) => (
                StatusCode::UNAUTHORIZED,
                "ModelArts.0203",
                format!("token is invalid: {why}"),
            ),
            AkSkInvalid(why) => (
                StatusCode::UNAUTHORIZED,
                "ModelArts.0206",
                format!("AK/SK authentication failed: {why}"),
            ),
            NotProjectScoped => (
                StatusCode::UNAUTHORIZED,
                "ModelArts.0212",
                "token is not scoped to a project".into(),
            ),
            ProjectMismatch => (
                StatusCode::FORBIDDEN,
                "ModelArts.0210",
                "project_id in the URL differs from the project of the token".into(),
            ),
            Forbidden(what) => (
                StatusCode::FORBIDDEN,
                "ModelArts.0108",
                format!("not allowed to {what}"),
            ),
            BadRequest(msg) => (StatusCode::BAD_REQUEST, "ModelArts.0101", msg.clone()),
            Quota(msg) => (StatusCode::BAD_REQUEST, "ModelArts.0118", msg.clone()),
            ServiceNotFound(id) => (
                StatusCode::NOT_FOUND,
                "ModelArts.3502",
                format!("service {id} does not exist"),
            ),
            ApiNotFound(id) => (
                StatusCode::NOT_FOUND,
                "ModelArts.3935",
                format!("app-auth API {id} does not exist"),
            ),
            ApiNotInService { api_id, service_id } => (
                StatusCode::FORBIDDEN,
                "ModelArts.3936",
                format!("app-auth API {api_id} does not belong to service {service_id}"),
            ),
            ApiConflict(msg) => (
                StatusCode::CONFLICT,
                "ModelArts.3921",
                format!("failed to create app-auth API: {msg}"),
            ),
            AppNotFound(id) => (
                StatusCode::NOT_FOUND,
                "ModelArts.3923",
                format!("app {id} does not exist"),
            ),
            AppCodeNotFound(code) => (
                StatusCode::NOT_FOUND,
                "ModelArts.3923",
                format!("the app has no AppCode {code}"),
            ),
            AppConflict(msg) => (
                StatusCode::CONFLICT,
                "ModelArts.3929",
                format!("failed to create app: {msg}"),
            ),
            AppStillBound(msg) => (
                StatusCode::BAD_REQUEST,
                "ModelArts.3933",
                format!("failed to delete app: {msg}"),
            ),
            ThrottleNotFound(msg) => (StatusCode::NOT_FOUND, "APIG.3005", msg.clone()),
            Conflict(msg) => (StatusCode::CONFLICT, "ModelArts.0104", msg.clone()),
            NoRoute { method, path } => (
                StatusCode::NOT_FOUND,
                "ModelArts.0104",
                format!("no operation at {method} {path}"),
            ),
            MethodNotAllowed { method, path } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "ModelArts.0104",
                format!("method {method} is not allowed on {path}"),
            ),
            PayloadTooLarge(msg) => (StatusCode::PAYLOAD_TOO_LARGE, "ModelArts.0101", msg.clone()),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ModelArts.0503",
                "the configuration store is unavailable; retry later".into(),
            ),
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "ModelArts.0500",
                "internal error; see the server log with the request id".into(),
            ),
        }
    }

    /// How a store failure about `target` is answered: a missing object is that
    /// resource's 404, a clash that resource's conflict; anything else as [`Self::from_store`].
    pub fn about(target: StoreTarget<'_>) -> impl FnOnce(StoreError) -> Self + '_ {
        move |err| match (target, err) {
            (
                StoreTarget::Service(id) | StoreTarget::NewApi { service: id },
                StoreError::NotFound(_),
            ) => ApiError::ServiceNotFound(id.to_owned()),
            (StoreTarget::NewApi { .. }, StoreError::Conflict(msg)) => ApiError::ApiConflict(msg),
            (StoreTarget::Api(id), StoreError::NotFound(_)) => ApiError::ApiNotFound(id.to_owned()),
            (StoreTarget::NewApp, StoreError::Conflict(msg)) => ApiError::AppConflict(msg),
            (StoreTarget::App(_), StoreError::Conflict(msg)) => ApiError::AppStillBound(msg),
            (StoreTarget::AppCode { code, .. }, StoreError::NotFound("AppCode")) => {
                ApiError::AppCodeNotFound(code.to_owned())
            }
            (
                StoreTarget::App(id) | StoreTarget::AppCode { app: id, .. },
                StoreError::NotFound(_),
            ) => ApiError::AppNotFound(id.to_owned()),
            (StoreTarget::Throttle(id), StoreError::NotFound(_)) => {
                ApiError::ThrottleNotFound(format!("throttling policy {id} does not exist"))
            }
            (_, other) => ApiError::from_store(other),
        }
    }

    /// A store failure outside the cases [`Self::about`] words for a resource.
    pub fn from_store(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "store unavailable");
                ApiError::Unavailable
            }
            StoreError::Conflict(msg) => ApiError::Conflict(msg),
            StoreError::Quota(msg) => ApiError::Quota(msg),
            StoreError::NotFound(what) => ApiError::BadRequest(format!("{what} does not exist")),
            StoreError::Internal(cause) => {
                tracing::error!(%cause, "store error");
                ApiError::Internal
            }
        }
    }
}

/// What a store call was about, for the words of its failures.
#[derive(Debug, Clone, Copy)]
pub enum StoreTarget<'a> {
    /// A service.
    Service(&'a str),
    /// An API being created in a service: a clash is its path or name taken.
    NewApi { service: &'a str },
    /// An API.
    Api(&'a str),
    /// An app being created: a clash is its name taken.
    NewApp,
    /// An app: a clash is its still being bound to APIs.
    App(&'a str),
    /// An AppCode of an app.
    AppCode { app: &'a str, code: &'a str },
    /// A throttling policy.
    Throttle(&'a str),
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        ApiError::BadRequest(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::from_store(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, msg) = self.parts();
        (status, Json(json!({"error_code": code, "error_msg": msg}))).into_response()
    }
}

/// Every failure of an IAM (`/v3…`) operation, answered in the Keystone shape.
#[derive(Debug)]
pub enum IamError {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// Too many password hashes at once: retry after a second.
    Busy,
    Unavailable,
    Internal,
}

impl IamError {
    fn parts(&self) -> (StatusCode, String) {
        match self {
            IamError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            IamError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            IamError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            IamError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            IamError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            IamError::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many password checks at once; retry in a second".into(),
            ),
            IamError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the identity store is unavailable; retry later".into(),
            ),
            IamError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the server log with the request id".into(),
            ),
        }
    }

    /// A store failure about an access key: a full key ring is Huawei IAM's
    /// `akSkNumExceed`, a missing key its 404.
    pub fn of_credential(err: StoreError) -> Self {
        match err {
            StoreError::Quota(_) => IamError::BadRequest("akSkNumExceed".into()),
            StoreError::NotFound(_) => IamError::NotFound("Could not find credential".into()),
            other => other.into(),
        }
    }

    pub fn not_authorized() -> Self {
        IamError::Forbidden("You are not authorized to perform the requested action.".into())
    }
}

impl From<StoreError> for IamError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(cause) => {
                tracing::error!(%cause, "store unavailable");
                IamError::Unavailable
            }
            StoreError::Conflict(msg) => IamError::Conflict(msg),
            StoreError::Quota(msg) => IamError::BadRequest(msg),
            StoreError::NotFound(what) => IamError::NotFound(format!("{what} not found")),
            StoreError::Internal(cause) => {
                tracing::error!(%cause, "store error");
                IamError::Internal
            }
        }
    }
}

impl From<FieldError> for IamError {
    fn from(err: FieldError) -> Self {
        IamError::BadRequest(err.to_string())
    }
}

impl IntoResponse for IamError {
    fn into_response(self) -> Response {
        let (status, message) = self.parts();
        let title = status.canonical_reason().unwrap_or("Error");
        let mut response = (
            status,
            Json(json!({"error": {"code": status.as_u16(), "message": message, "title": title}})),
        )
            .into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert("Retry-After", HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Keystone uri=\"/v3\""),
            );
        }
        response
    }
}

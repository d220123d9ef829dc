//! The gateway's error table (spec §4.3): every failure answered by the gateway itself is
//! `{"error_code": "APIG.xxxx", "error_msg": …, "request_id": …}` with the status chosen here.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::body::{full, GatewayBody};

const APP_PREFIX: &str = "Incorrect app authentication information: ";
const IAM_PREFIX: &str = "Incorrect IAM authentication information: ";

/// A call the gateway refuses or cannot complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    NoApi,
    MethodNotAllowed,
    AppAuth(String),
    IamAuth(String),
    NotAuthorized { app_id: String },
    BodyTooLarge { limit: usize },
    UriTooLong { limit: usize },
    HeadersTooLarge(String),
    BadRequest(String),
    UpstreamUnavailable(String),
    UpstreamTimeout { timeout_ms: u128 },
}

impl GatewayError {
    /// The one table: status, `error_code`, `error_msg`.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        use GatewayError::*;
        match self {
            NoApi => (
                StatusCode::NOT_FOUND,
                "APIG.0101",
                "The API does not exist or has not been published in the environment".into(),
            ),
            MethodNotAllowed => (
                StatusCode::NOT_FOUND,
                "APIG.0101",
                "The API does not exist or has not been published in the environment: method not allowed".into(),
            ),
            AppAuth(why) => (StatusCode::UNAUTHORIZED, "APIG.0303", format!("{APP_PREFIX}{why}")),
            IamAuth(why) => (StatusCode::UNAUTHORIZED, "APIG.0301", format!("{IAM_PREFIX}{why}")),
            NotAuthorized { app_id } => (
                StatusCode::FORBIDDEN,
                "APIG.0304",
                format!("The app is not authorized to access the API: app {app_id}"),
            ),
            BodyTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "APIG.0201",
                format!("Request entity too large: the body exceeds {limit} bytes"),
            ),
            UriTooLong { limit } => (
                StatusCode::URI_TOO_LONG,
                "APIG.0201",
                format!("Request-URI too large: the URI exceeds {limit} bytes"),
            ),
            HeadersTooLarge(why) => (
                StatusCode::from_u16(494).unwrap_or(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
                "APIG.0201",
                format!("Request header too large: {why}"),
            ),
            BadRequest(why) => (StatusCode::BAD_REQUEST, "APIG.0201", format!("Bad request: {why}")),
            UpstreamUnavailable(why) => (
                StatusCode::BAD_GATEWAY,
                "APIG.0201",
                format!("Backend unavailable: {why}"),
            ),
            UpstreamTimeout { timeout_ms } => (
                StatusCode::GATEWAY_TIMEOUT,
                "APIG.0203",
                format!("Backend timeout: no response within {timeout_ms} ms"),
            ),
        }
    }

    /// A short, bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        use GatewayError::*;
        match self {
            NoApi | MethodNotAllowed => "no_api",
            AppAuth(_) => "app_auth",
            IamAuth(_) => "iam_auth",
            NotAuthorized { .. } => "not_authorized",
            BodyTooLarge { .. } | UriTooLong { .. } | HeadersTooLarge(_) | BadRequest(_) => {
                "bad_request"
            }
            UpstreamUnavailable(_) => "upstream_unavailable",
            UpstreamTimeout { .. } => "upstream_timeout",
        }
    }

    /// The metric reason of an authentication or authorization refusal; `None` for others.
    pub fn auth_reason(&self) -> Option<&'static str> {
        let why = match self {
            GatewayError::NotAuthorized { .. } => return Some("not_authorized"),
            GatewayError::AppAuth(why) | GatewayError::IamAuth(why) => why.as_str(),
            _ => return None,
        };
        Some(
            if why.starts_with("verify") || why.contains("X-Sdk-Content-Sha256") {
                "bad_signature"
            } else if why.starts_with("signature expired") {
                "expired_date"
            } else if why.starts_with("app not found, appkey")
                || why.starts_with("Get secretKey failed")
            {
                "unknown_key"
            } else if why.starts_with("app not found with specified") {
                "unknown_app_code"
            } else if why.contains("token") {
                "bad_token"
            } else if why.contains("not found") || why.contains("is empty") {
                "missing_credential"
            } else {
                "other"
            },
        )
    }

    /// The status and JSON body of the answer.
    pub fn body(&self, request_id: &str) -> (StatusCode, String) {
        let (status, code, msg) = self.parts();
        let body =
            serde_json::json!({"error_code": code, "error_msg": msg, "request_id": request_id});
        (status, body.to_string())
    }

    pub fn into_response(self, request_id: &str) -> Response<GatewayBody> {
        let (status, body) = self.body(request_id);
        let mut response = Response::new(full(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", id);
        }
        response
    }
}

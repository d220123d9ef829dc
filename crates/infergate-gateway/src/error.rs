//! The gateway's error table (spec §4.3): every failure answered by the gateway itself is
//! `{"error_code": "APIG.xxxx", "error_msg": …, "request_id": …}` with the status chosen here.

use http::StatusCode;
use infergate_core::throttle::ThrottleUnit;

use crate::body::{find_source, BodyIdle};
use crate::throttle::{RateLimitFields, Refusal};

const APP_PREFIX: &str = "Incorrect app authentication information: ";
const IAM_PREFIX: &str = "Incorrect IAM authentication information: ";

/// Why an authentication failed: decided where the credential is checked, carried to the
/// metrics label and the error body without reading any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReason {
    /// No credential the API accepts was presented.
    MissingCredential,
    /// The `Authorization` signature cannot be read or lacks a part it needs.
    MalformedSignature,
    /// The signature, or the body hash it covers, does not match.
    BadSignature,
    /// `X-Sdk-Date` is outside the allowed window.
    ExpiredDate,
    /// No app or IAM key has the signature's `Access`, or the key's user is gone.
    UnknownKey,
    /// No app has the AppCode or `apikey`.
    UnknownAppCode,
    /// The API does not accept AppCodes (or `apikey`), or not over plain HTTP.
    AppCodeNotAllowed,
    /// The IAM token cannot be read, expired, is scoped elsewhere or was revoked.
    BadToken,
    /// The authenticated user has no role in the service's project.
    NoRole,
    /// The IAM access key is locked after consecutive failed signatures.
    LockedKey,
}

impl AuthReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            AuthReason::MissingCredential => "missing_credential",
            AuthReason::MalformedSignature => "malformed_signature",
            AuthReason::BadSignature => "bad_signature",
            AuthReason::ExpiredDate => "expired_date",
            AuthReason::UnknownKey => "unknown_key",
            AuthReason::UnknownAppCode => "unknown_app_code",
            AuthReason::AppCodeNotAllowed => "app_code_not_allowed",
            AuthReason::BadToken => "bad_token",
            AuthReason::NoRole => "no_role",
            AuthReason::LockedKey => "locked_key",
        }
    }
}

/// An authentication failure: its reason and the message the client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub reason: AuthReason,
    pub message: String,
}

impl AuthFailure {
    pub fn new(reason: AuthReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A call the gateway refuses or cannot complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    NoApi,
    MethodNotAllowed,
    AppAuth(AuthFailure),
    IamAuth(AuthFailure),
    NotAuthorized {
        app_id: String,
    },
    BodyTooLarge {
        limit: usize,
    },
    UriTooLong {
        limit: usize,
    },
    HeadersTooLarge(String),
    BadRequest(String),
    /// A request whose framing or head is ambiguous: answered 400 and the connection closed.
    Malformed(String),
    /// The client sent no body bytes for this long.
    BodyTimeout {
        timeout_ms: u128,
    },
    UpstreamUnavailable(String),
    /// This node ran out of a resource (file descriptors, memory) it needs for the call.
    Overloaded(String),
    UpstreamTimeout {
        timeout_ms: u128,
    },
    /// Over a limit of the API's throttling policy.
    Throttled(Box<Refusal>),
    /// The call came back through gateways too often: a service points at a gateway.
    Loop {
        hops: u8,
    },
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
            AppAuth(why) => (
                StatusCode::UNAUTHORIZED,
                "APIG.0303",
                format!("{APP_PREFIX}{}", why.message),
            ),
            IamAuth(why) => (
                StatusCode::UNAUTHORIZED,
                "APIG.0301",
                format!("{IAM_PREFIX}{}", why.message),
            ),
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
            BadRequest(why) | Malformed(why) => {
                (StatusCode::BAD_REQUEST, "APIG.0201", format!("Bad request: {why}"))
            }
            BodyTimeout { timeout_ms } => (
                StatusCode::REQUEST_TIMEOUT,
                "APIG.0201",
                format!("Request timeout: no body bytes within {timeout_ms} ms"),
            ),
            UpstreamUnavailable(why) => (
                StatusCode::BAD_GATEWAY,
                "APIG.0201",
                format!("Backend unavailable: {why}"),
            ),
            Overloaded(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "APIG.0201",
                format!("Service unavailable: {why}"),
            ),
            UpstreamTimeout { timeout_ms } => (
                StatusCode::GATEWAY_TIMEOUT,
                "APIG.0203",
                format!("Backend timeout: no response within {timeout_ms} ms"),
            ),
            Loop { hops } => (
                StatusCode::LOOP_DETECTED,
                "APIG.0201",
                format!(
                    "Loop detected: the call passed through infergate {hops} times; a service points back at a gateway"
                ),
            ),
            Throttled(over) => (
                StatusCode::TOO_MANY_REQUESTS,
                "APIG.0308",
                match over.unit {
                    ThrottleUnit::Request => format!(
                        "The throttling threshold has been reached: policy {} over ratelimit, limit:{}, time:{} {}",
                        over.dimension.as_str(),
                        over.limit,
                        over.time_interval,
                        over.time_unit
                    ),
                    ThrottleUnit::Token => format!(
                        "The throttling threshold has been reached: policy {} over token ratelimit, limit:{} tokens, time:{} {}; the call reserves {} tokens (its max_tokens, or the policy's default_max_tokens, plus its body's bytes / 4)",
                        over.dimension.as_str(),
                        over.limit,
                        over.time_interval,
                        over.time_unit,
                        over.cost
                    ),
                },
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
            BodyTooLarge { .. }
            | UriTooLong { .. }
            | HeadersTooLarge(_)
            | BadRequest(_)
            | Malformed(_)
            | BodyTimeout { .. } => "bad_request",
            UpstreamUnavailable(_) => "upstream_unavailable",
            Overloaded(_) => "overloaded",
            UpstreamTimeout { .. } => "upstream_timeout",
            Throttled(_) => "throttled",
            Loop { .. } => "loop",
        }
    }

    /// The metric reason of an authentication or authorization refusal; `None` for others.
    pub fn auth_reason(&self) -> Option<&'static str> {
        match self {
            GatewayError::NotAuthorized { .. } => Some("not_authorized"),
            GatewayError::AppAuth(why) | GatewayError::IamAuth(why) => Some(why.reason.label()),
            _ => None,
        }
    }

    /// The answer to a failure to read the client's request body: 413 past `limit`, 408
    /// when the client went quiet, 400 (and the connection closed) for anything else.
    pub fn client_body(err: &(dyn std::error::Error + 'static), limit: usize) -> GatewayError {
        if find_source::<http_body_util::LengthLimitError>(err).is_some() {
            GatewayError::BodyTooLarge { limit }
        } else if let Some(BodyIdle(idle)) = find_source(err) {
            GatewayError::BodyTimeout {
                timeout_ms: idle.as_millis(),
            }
        } else {
            GatewayError::Malformed(format!("reading the request body failed: {err}"))
        }
    }

    /// Whether the connection is closed after this answer: its framing cannot be trusted.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::Malformed(_) | GatewayError::BodyTimeout { .. }
        )
    }

    /// The gateway's answer to this error (closing the connection when `close`, or when
    /// the error itself closes it): the one answer both transports write.
    pub fn answer<'r>(&self, request_id: &'r str, close: bool) -> ErrorAnswer<'r> {
        let (status, code, msg) = self.parts();
        let body =
            serde_json::json!({"error_code": code, "error_msg": msg, "request_id": request_id});
        let mut answer = ErrorAnswer {
            status,
            body: body.to_string(),
            request_id,
            close: close || self.closes_connection(),
            lines: Vec::new(),
        };
        if let GatewayError::Throttled(over) = self {
            answer
                .lines
                .push((http::header::RETRY_AFTER, over.retry_after.to_string()));
            answer = answer.with_rate_limit(Some(&over.fields));
        }
        answer
    }
}

/// A response the gateway answers itself: a status and a JSON body (its header lines are
/// `http_rules::answer_headers`).
pub struct ErrorAnswer<'r> {
    pub status: StatusCode,
    pub body: String,
    pub request_id: &'r str,
    close: bool,
    /// Lines beside the fixed ones: `Retry-After`, the rate-limit fields.
    pub(crate) lines: Vec<(http::HeaderName, String)>,
}

impl ErrorAnswer<'_> {
    /// The answer with the rate-limit fields of a throttled API's call.
    pub fn with_rate_limit(mut self, fields: Option<&RateLimitFields>) -> Self {
        if let Some(fields) = fields {
            self.lines
                .push((crate::http_rules::RATELIMIT_POLICY, fields.policy.clone()));
            self.lines
                .push((crate::http_rules::RATELIMIT, fields.state.clone()));
        }
        self
    }

    /// Whether the connection closes after the answer.
    pub fn closes(&self) -> bool {
        self.close
    }
}

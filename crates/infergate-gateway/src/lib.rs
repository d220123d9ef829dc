//! The data plane of infergate. A call goes through named phases, each a small function:
//! limits → route → select API by credential → authenticate → authorize → forward →
//! stream the response back.
//!
//! This crate reads only an `Arc<Snapshot>` (swapped atomically by the control plane); it
//! never touches the store or axum, and it never buffers a response body.

pub mod authn;
pub mod body;
pub mod error;
mod forward;
mod server;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use infergate_core::model::AuthType;
use infergate_core::snapshot::{ApiRoute, Snapshot};
use sha2::{Digest, Sha256};

use crate::authn::{CallRequest, Caller, Presented};
use crate::body::GatewayBody;
use crate::error::GatewayError;
pub use crate::server::serve;

/// Limits of spec §5.1, configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub max_headers_total_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 12 * 1024 * 1024,
            max_uri_bytes: 32 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers_total_bytes: 128 * 1024,
        }
    }
}

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub limits: Limits,
    /// How long an upstream that refused a connection is skipped.
    pub ejection: Duration,
    /// How long in-flight calls may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            ejection: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Request ids: a random per-process prefix and a counter, 32 hex characters.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: rand::random(),
            next: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }

    fn next(&self) -> String {
        format!(
            "{:016x}{:016x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The gateway: shared by every connection.
pub struct Gateway {
    snapshots: Arc<ArcSwap<Snapshot>>,
    settings: GatewaySettings,
    upstreams: forward::Upstreams,
    ids: RequestIds,
}

impl Gateway {
    pub fn new(snapshots: Arc<ArcSwap<Snapshot>>, settings: GatewaySettings) -> Arc<Self> {
        Arc::new(Self {
            upstreams: forward::Upstreams::new(settings.ejection),
            snapshots,
            settings,
            ids: RequestIds::new(),
        })
    }

    /// Serves one call; every failure becomes an `APIG.*` response.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<GatewayBody> {
        let request_id = self.ids.next();
        match self.call(req, remote, &request_id).await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(%request_id, reason = err.reason(), "call refused");
                err.into_response(&request_id)
            }
        }
    }

    fn check_limits(&self, req: &Request<Incoming>) -> Result<(), GatewayError> {
        let limits = &self.settings.limits;
        let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_len > limits.max_uri_bytes {
            return Err(GatewayError::UriTooLong {
                limit: limits.max_uri_bytes,
            });
        }
        let mut total = 0usize;
        for (name, value) in req.headers() {
            let size = name.as_str().len() + value.len();
            if size > limits.max_header_bytes {
                return Err(GatewayError::HeadersTooLarge(format!(
                    "header {} exceeds {} bytes",
                    name.as_str(),
                    limits.max_header_bytes
                )));
            }
            total += size;
        }
        if total > limits.max_headers_total_bytes {
            return Err(GatewayError::HeadersTooLarge(format!(
                "headers exceed {} bytes in all",
                limits.max_headers_total_bytes
            )));
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
            return Err(GatewayError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
        Ok(())
    }

    async fn call(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
        request_id: &str,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        self.check_limits(&req)?;
        let snapshot = self.snapshots.load_full();
        let (mut parts, body) = req.into_parts();
        if !parts.headers.contains_key(http::header::HOST) {
            // HTTP/2 carries the host in :authority; signatures are over `host`.
            if let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(http::header::HOST, value);
            }
        }

        // Route: longest api_path prefix, then the method.
        let on_path = snapshot
            .route(parts.uri.path())
            .ok_or(GatewayError::NoApi)?;
        let method = parts.method.as_str();
        let candidates: Vec<&Arc<ApiRoute>> = on_path
            .iter()
            .filter(|a| a.method.matches(method))
            .collect();
        if candidates.is_empty() {
            return Err(GatewayError::MethodNotAllowed);
        }

        // Select the API by the presented credential.
        let presented = Presented::classify(&parts.headers, &snapshot);
        let api = authn::select(&candidates, &presented)?;

        // A signed body is read and hashed before anything is forwarded.
        let declared_hash = parts
            .headers
            .get(infergate_sign::HEADER_CONTENT_SHA256)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let unsigned_payload = declared_hash == Some(infergate_sign::UNSIGNED_PAYLOAD);
        let needs_hash =
            api.auth_type != AuthType::None && presented.is_signature() && !unsigned_payload;
        let body_is_empty = body.is_end_stream();
        let (forward_body, body_hash) = if needs_hash {
            let bytes = collect_limited(body, self.settings.limits.max_body_bytes).await?;
            let hash = hex::encode(Sha256::digest(&bytes));
            if let Some(declared) = declared_hash {
                if !bytes.is_empty() && !declared.eq_ignore_ascii_case(&hash) {
                    return Err(self
                        .auth_error(&api, "the body does not match X-Sdk-Content-Sha256".into()));
                }
            }
            (forward::ForwardBody::Buffered(bytes), Some(hash))
        } else if body_is_empty {
            (forward::ForwardBody::Buffered(Bytes::new()), None)
        } else {
            (forward::ForwardBody::Stream(Some(body)), None)
        };

        let now = chrono::Utc::now();
        let caller = authn::authenticate(
            &snapshot,
            &api,
            &presented,
            &CallRequest {
                method,
                raw_path: parts.uri.path(),
                raw_query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                body_sha256: body_hash.as_deref(),
                body_is_empty,
            },
            now,
        )?;

        // Authorize: an app must be bound to the API.
        if let Caller::App { app_id } = &caller {
            if !api.authorizes(app_id) {
                return Err(GatewayError::NotAuthorized {
                    app_id: app_id.clone(),
                });
            }
        }

        self.upstreams
            .forward(forward::Call {
                api: &api,
                caller: &caller,
                parts,
                body: forward_body,
                remote,
                request_id,
                max_body: self.settings.limits.max_body_bytes,
            })
            .await
    }

    fn auth_error(&self, api: &ApiRoute, why: String) -> GatewayError {
        match api.auth_type {
            AuthType::Iam => GatewayError::IamAuth(why),
            _ => GatewayError::AppAuth(why),
        }
    }
}

/// Reads a body up to `limit` bytes.
async fn collect_limited(body: Incoming, limit: usize) -> Result<Bytes, GatewayError> {
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if body::is_length_limit(e.as_ref()) {
                GatewayError::BodyTooLarge { limit }
            } else {
                GatewayError::BadRequest(format!("reading the request body failed: {e}"))
            }
        })
}

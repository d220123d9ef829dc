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
mod h1;
mod head_guard;
mod http_rules;
pub mod metrics;
mod pool;
mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Body;
use infergate_core::model::AuthType;
use infergate_core::snapshot::{ApiRoute, Snapshot};
use infergate_sign::HeaderSource;
use smallvec::SmallVec;

use crate::authn::{CallRequest, Caller, Presented};
use crate::body::{ClientBody, GatewayBody};
use crate::error::{AuthFailure, AuthReason, GatewayError};
pub use crate::http_rules::Cidr;
use crate::metrics::GatewayMetrics;
pub use crate::server::{
    serve, serve_with, ConnInfo, ConnectionMetrics, ListenerSettings, TlsFiles,
};
use infergate_core::logsink::LogSink;

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
    /// Refuse AppCode and `apikey` credentials on plain-HTTP connections (spec §5.1).
    pub require_https_for_app_code: bool,
    /// Serve plain HTTP/1.1 calls on the fast path (the general server takes the rest).
    pub http1_fast_path: bool,
    /// Timeouts, the connection cap and the trusted proxies of the gateway's listener.
    pub listener: ListenerSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            ejection: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            require_https_for_app_code: false,
            http1_fast_path: true,
            listener: ListenerSettings::default(),
        }
    }
}

/// Request ids: a random per-process prefix and a counter, 32 hex characters.
struct RequestIds {
    /// The hex digits of a per-process random prefix.
    prefix: [u8; 16],
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: infergate_sign::hex_digits(&rand::random::<u64>().to_be_bytes()),
            next: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }

    fn next(&self) -> RequestId {
        let counter = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        id[..16].copy_from_slice(&self.prefix);
        id[16..].copy_from_slice(&infergate_sign::hex_digits::<16>(&counter.to_be_bytes()));
        RequestId(id)
    }
}

/// A call's id: 32 lowercase hex digits (the process's prefix, then a counter), kept
/// inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 32]);

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Hex digits are ASCII: never the empty fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// Where the gateway reports what it did: metrics and the access log, both optional.
#[derive(Clone, Default)]
pub struct Observers {
    pub metrics: Option<GatewayMetrics>,
    pub access_log: Option<Arc<LogSink>>,
}

impl Observers {
    /// Counts a finished call and writes its access-log line.
    fn finish(&self, record: &CallRecord, status: u16, bytes_out: u64) {
        if let Some(m) = &self.metrics {
            m.in_flight.dec();
            let app = match &record.caller {
                Some(Caller::App { app_id }) => app_id,
                _ => "",
            };
            let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            m.count_request(
                record.api_id.as_deref().unwrap_or("none"),
                app,
                metrics::method_class(&record.method),
                status.as_str(),
            );
        }
        if let Some(sink) = &self.access_log {
            sink.emit(access_line(record, status, bytes_out));
        }
    }
}

/// The API a call's head selected, and the credential it presents.
struct Selected<'h> {
    api: Arc<ApiRoute>,
    presented: Presented<'h>,
    /// Whether the signature covers the body's hash, so the body is read before forwarding.
    needs_hash: bool,
}

/// `X-Sdk-Content-Sha256` as the client sent it.
fn declared_body_hash<H: HeaderSource + ?Sized>(headers: &H) -> Option<&str> {
    headers.text(infergate_sign::HEADER_CONTENT_SHA256)
}

/// A request head as the phases read it: from `http` parts (the general server) or parsed
/// in place (the HTTP/1.1 fast path).
struct Head<'a, H: ?Sized> {
    method: &'a http::Method,
    /// The path as on the request line.
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a H,
}

impl<'a> Head<'a, http::HeaderMap> {
    fn of(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
        }
    }
}

/// What one call did, for its metrics and access-log line.
#[derive(Debug)]
pub struct CallRecord {
    pub request_id: RequestId,
    pub method: http::Method,
    /// The path, and the query's keys without their values.
    pub target: String,
    pub api_id: Option<Arc<str>>,
    pub caller: Option<Caller>,
    pub auth: &'static str,
    pub upstream: Option<Arc<str>>,
    pub upstream_ms: Option<f64>,
    pub bytes_in: u64,
    started: Instant,
}

/// The wall-clock time at `at`: the system's clock is read once a second per thread (or for
/// an instant more than a second from the last reading), and the monotonic clock counts from
/// there. A signature's date window is minutes wide; a change of the system clock is seen
/// within a second.
fn wall_time(at: Instant) -> chrono::DateTime<chrono::Utc> {
    thread_local! {
        static ANCHOR: std::cell::Cell<Option<(Instant, chrono::DateTime<chrono::Utc>)>> =
            const { std::cell::Cell::new(None) };
    }
    // How far `at` lies after `from` (negative: before).
    let offset = |from: Instant| {
        let delta = |d| chrono::TimeDelta::from_std(d).unwrap_or_default();
        match at.checked_duration_since(from) {
            Some(after) => delta(after),
            None => -delta(from.duration_since(at)),
        }
    };
    ANCHOR.with(|anchor| {
        let near = anchor
            .get()
            .map(|(read_at, wall)| (wall, offset(read_at)))
            .filter(|(_, after)| after.abs() < chrono::TimeDelta::seconds(1));
        let (wall, after) = near.unwrap_or_else(|| {
            let (read_at, wall) = (Instant::now(), chrono::Utc::now());
            anchor.set(Some((read_at, wall)));
            (wall, offset(read_at))
        });
        wall.checked_add_signed(after).unwrap_or(wall)
    })
}

/// `path?k1=&k2=`: the query's values never reach a log.
fn loggable_target(path: &str, query: Option<&str>) -> String {
    match query {
        None => path.to_owned(),
        Some(query) => {
            let keys: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split('=').next().unwrap_or(""))
                .collect();
            format!("{path}?{}=", keys.join("=&"))
        }
    }
}

/// The gateway: shared by every connection.
pub struct Gateway {
    snapshots: Arc<ArcSwap<Snapshot>>,
    settings: GatewaySettings,
    upstreams: forward::Upstreams,
    ids: RequestIds,
    /// Shared with every response body still streaming.
    observers: Arc<Observers>,
}

impl Gateway {
    pub fn new(
        snapshots: Arc<ArcSwap<Snapshot>>,
        settings: GatewaySettings,
        observers: Observers,
    ) -> Arc<Self> {
        Arc::new(Self {
            upstreams: forward::Upstreams::new(settings.ejection),
            snapshots,
            settings,
            ids: RequestIds::new(),
            observers: Arc::new(observers),
        })
    }

    pub fn metrics(&self) -> Option<&GatewayMetrics> {
        self.observers.metrics.as_ref()
    }

    /// Starts the record of one call (and counts it in flight).
    fn begin(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        bytes_in: u64,
    ) -> CallRecord {
        if let Some(m) = &self.observers.metrics {
            m.in_flight.inc();
        }
        CallRecord {
            request_id: self.ids.next(),
            method: method.clone(),
            // Only the access log reads it.
            target: if self.observers.access_log.is_some() {
                loggable_target(path, query)
            } else {
                String::new()
            },
            api_id: None,
            caller: None,
            auth: "none",
            upstream: None,
            upstream_ms: None,
            bytes_in,
            started: Instant::now(),
        }
    }

    /// Counts a refusal and logs it at debug level.
    fn refused(&self, err: &GatewayError, record: &mut CallRecord) {
        if let Some(reason) = err.auth_reason() {
            record.auth = reason;
            if let Some(m) = &self.observers.metrics {
                m.auth_failures.with_label_values(&[reason]).inc();
            }
        }
        tracing::debug!(request_id = %record.request_id, reason = err.reason(), "call refused");
    }

    /// Serves one call; every failure becomes an `APIG.*` response. Metrics and the access
    /// log are written when the response body has been streamed (or abandoned).
    pub async fn handle(&self, req: Request<ClientBody>, conn: ConnInfo) -> Response<GatewayBody> {
        let bytes_in = req.body().size_hint().exact().unwrap_or(0);
        let mut record = self.begin(req.method(), req.uri().path(), req.uri().query(), bytes_in);
        let response = match self.call(req, conn, &mut record).await {
            Ok(response) => response,
            Err(err) => {
                self.refused(&err, &mut record);
                err.into_response(record.request_id.as_str())
            }
        };
        self.observe(record, response)
    }

    /// Records the time to the response head, which came at `now`.
    fn observe_head(&self, record: &CallRecord, now: Instant) {
        if let Some(m) = &self.observers.metrics {
            let api = record.api_id.as_deref().unwrap_or("none");
            let took = now.saturating_duration_since(record.started);
            m.observe_duration(api, took.as_secs_f64());
        }
    }

    fn observe(
        &self,
        record: CallRecord,
        response: Response<GatewayBody>,
    ) -> Response<GatewayBody> {
        let status = response.status();
        self.observe_head(&record, Instant::now());
        let observers = self.observers.clone();
        let (parts, body) = response.into_parts();
        let finish = move |bytes_out: u64| observers.finish(&record, status.as_u16(), bytes_out);
        Response::from_parts(parts, body::Observed::new(body, finish).boxed_unsync())
    }

    fn check_limits<H: HeaderSource + ?Sized>(
        &self,
        head: &Head<'_, H>,
    ) -> Result<(), GatewayError> {
        let limits = &self.settings.limits;
        let uri_len = head.path.len() + head.query.map_or(0, |q| q.len() + 1);
        if uri_len > limits.max_uri_bytes {
            return Err(GatewayError::UriTooLong {
                limit: limits.max_uri_bytes,
            });
        }
        let mut total = 0usize;
        for (name, value) in head.headers.all() {
            let size = name.len() + value.len();
            if size > limits.max_header_bytes {
                return Err(GatewayError::HeadersTooLarge(format!(
                    "header {} exceeds {} bytes",
                    name.to_ascii_lowercase(),
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
        let declared = head
            .headers
            .text("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
            return Err(GatewayError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
        Ok(())
    }

    /// What the head alone decides: limits, the route, and the API the credential selects.
    fn select<'h, H: HeaderSource + ?Sized>(
        &self,
        snapshot: &'h Snapshot,
        head: &Head<'h, H>,
        conn: &ConnInfo,
        record: &mut CallRecord,
    ) -> Result<Selected<'h>, GatewayError> {
        self.check_limits(head)?;
        // Only a path that names what it reaches is routed, and forwarded as it was checked.
        http_rules::check_path(head.path)?;

        // Route: longest api_path prefix, then the method.
        let on_path = snapshot.route(head.path).ok_or(GatewayError::NoApi)?;
        let method = head.method.as_str();
        let candidates: SmallVec<[&Arc<ApiRoute>; 4]> = on_path
            .iter()
            .filter(|a| a.method.matches(method))
            .collect();
        if candidates.is_empty() {
            return Err(GatewayError::MethodNotAllowed);
        }

        // Select the API by the presented credential.
        let presented = Presented::classify(head.headers, snapshot);
        let api = authn::select(&candidates, &presented)?;
        record.api_id = Some(api.api_id.clone());
        if !conn.tls
            && self.settings.require_https_for_app_code
            && api.auth_type == AuthType::App
            && matches!(presented, Presented::AppCode(_) | Presented::ApiKey(_))
        {
            return Err(GatewayError::AppAuth(AuthFailure::new(
                AuthReason::AppCodeNotAllowed,
                "AppCode and apikey authentication require HTTPS",
            )));
        }
        // A signed body is read and hashed before anything is forwarded.
        let needs_hash = api.auth_type != AuthType::None
            && presented.is_signature()
            && declared_body_hash(head.headers) != Some(infergate_sign::UNSIGNED_PAYLOAD);
        Ok(Selected {
            api,
            presented,
            needs_hash,
        })
    }

    /// The hex SHA-256 of a signed body, checked against `X-Sdk-Content-Sha256` when the
    /// client declared one.
    fn hash_body<H: HeaderSource + ?Sized>(
        &self,
        api: &ApiRoute,
        headers: &H,
        bytes: &[u8],
    ) -> Result<String, GatewayError> {
        let hash = infergate_sign::sha256_hex(bytes);
        if let Some(declared) = declared_body_hash(headers) {
            if !bytes.is_empty() && !declared.eq_ignore_ascii_case(&hash) {
                return Err(self.auth_error(
                    api,
                    AuthFailure::new(
                        AuthReason::BadSignature,
                        "the body does not match X-Sdk-Content-Sha256",
                    ),
                ));
            }
        }
        Ok(hash)
    }

    /// Authenticates the caller of the selected API and checks the app is authorized.
    fn admit<H: HeaderSource + ?Sized>(
        &self,
        snapshot: &Snapshot,
        selected: &Selected<'_>,
        head: &Head<'_, H>,
        body_hash: Option<&str>,
        body_is_empty: bool,
        record: &mut CallRecord,
    ) -> Result<Caller, GatewayError> {
        // An empty body's hash is a constant.
        let body_sha256 = match body_hash {
            Some(hash) => Some(hash),
            None if selected.needs_hash => Some(infergate_sign::EMPTY_BODY_SHA256),
            None => None,
        };
        let caller = authn::authenticate(
            snapshot,
            &selected.api,
            &selected.presented,
            &CallRequest {
                method: head.method.as_str(),
                raw_path: head.path,
                raw_query: head.query.unwrap_or(""),
                headers: head.headers,
                body_sha256,
                body_is_empty,
            },
            wall_time(record.started),
        )?;
        record.caller = Some(caller.clone());
        // Authorize: an app must be bound to the API.
        if let Caller::App { app_id } = &caller {
            if !selected.api.authorizes(app_id) {
                return Err(GatewayError::NotAuthorized {
                    app_id: app_id.to_string(),
                });
            }
        }
        record.auth = "ok";
        Ok(caller)
    }

    async fn call(
        &self,
        req: Request<ClientBody>,
        conn: ConnInfo,
        record: &mut CallRecord,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let snapshot = self.snapshots.load_full();
        let (mut parts, body) = req.into_parts();
        // The general server parsed the framing already; the gateway's own rules decide
        // whether it is unambiguous enough to forward.
        let framing = http_rules::request_framing(
            parts.version != http::Version::HTTP_10,
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        )?;
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
        let selected = self.select(&snapshot, &Head::of(&parts), &conn, record)?;
        let body_is_empty = body.is_end_stream();
        let (forward_body, body_hash) = if body_is_empty {
            (forward::ForwardBody::Buffered(Bytes::new()), None)
        } else if selected.needs_hash {
            let bytes = collect_limited(body, self.settings.limits.max_body_bytes).await?;
            record.bytes_in = bytes.len() as u64;
            let hash = self.hash_body(&selected.api, &parts.headers, &bytes)?;
            (forward::ForwardBody::Buffered(bytes), Some(hash))
        } else {
            (forward::ForwardBody::Stream(Some(body)), None)
        };
        let caller = self.admit(
            &snapshot,
            &selected,
            &Head::of(&parts),
            body_hash.as_deref(),
            body_is_empty,
            record,
        )?;
        self.upstreams
            .forward(
                forward::Call {
                    api: &selected.api,
                    caller: &caller,
                    parts,
                    body: forward_body,
                    framing,
                    conn,
                    max_body: self.settings.limits.max_body_bytes,
                },
                record,
                self.observers.metrics.as_ref(),
            )
            .await
    }

    fn auth_error(&self, api: &ApiRoute, why: AuthFailure) -> GatewayError {
        match api.auth_type {
            AuthType::Iam => GatewayError::IamAuth(why),
            _ => GatewayError::AppAuth(why),
        }
    }
}

/// One JSON line of the access log. It never holds a credential, token, signature or query
/// value.
fn access_line(record: &CallRecord, status: u16, bytes_out: u64) -> String {
    let (app_id, user_id) = match &record.caller {
        Some(Caller::App { app_id }) => (Some(&**app_id), None),
        Some(Caller::User { user_id }) => (None, Some(&**user_id)),
        _ => (None, None),
    };
    serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "kind": "call",
        "request_id": record.request_id.as_str(),
        "api_id": record.api_id.as_deref(),
        "app_id": app_id,
        "user_id": user_id,
        "method": record.method.as_str(),
        "path": record.target,
        "status": status,
        "bytes_in": record.bytes_in,
        "bytes_out": bytes_out,
        "total_ms": (record.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "upstream": record.upstream.as_deref(),
        "upstream_ms": record.upstream_ms,
        "auth": record.auth,
    })
    .to_string()
}

/// Reads a body up to `limit` bytes.
async fn collect_limited(body: ClientBody, limit: usize) -> Result<Bytes, GatewayError> {
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| GatewayError::client_body(e.as_ref(), limit))
}

#[cfg(test)]
mod request_id_tests {
    use super::{wall_time, RequestIds};
    use std::time::{Duration, Instant};

    #[test]
    fn wall_time_follows_the_system_clock_and_the_instants() {
        let now = Instant::now();
        let before = chrono::Utc::now();
        let wall = wall_time(now);
        let gap = (wall - before).num_milliseconds().abs();
        assert!(gap < 100, "{wall} vs {before}");
        // Within a second of the reading, times differ exactly as the instants do.
        let later = wall_time(now + Duration::from_millis(400));
        assert_eq!((later - wall).num_milliseconds(), 400);
        // Further away, in either direction, the clock is read again and counted back.
        let ahead = wall_time(now + Duration::from_secs(5));
        assert!(((ahead - wall).num_milliseconds() - 5000).abs() < 100);
        if let Some(past) = now.checked_sub(Duration::from_secs(5)) {
            let earlier = wall_time(past);
            assert!(((wall - earlier).num_milliseconds() - 5000).abs() < 100);
        }
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        let (a, b) = (a.as_str(), b.as_str());
        for id in [a, b] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
        }
        assert_ne!(a, b);
        assert_eq!(a[..16], b[..16], "one process prefix");
    }
}

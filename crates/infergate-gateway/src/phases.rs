//! The phases of a call, the same for both transports: the record of what it did, the
//! limits of its head, the API its path and credential select, the hash of a signed body,
//! and admission (authentication and authorization). Each phase reads a [`Head`] (parsed by
//! either transport) and an `Arc<Snapshot>`, and decides; none reads or writes bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use infergate_core::model::AuthType;
use infergate_core::snapshot::{ApiRoute, Snapshot, ThrottleRule};
use infergate_sign::HeaderSource;
use smallvec::SmallVec;

use crate::authn::{self, CallRequest, Caller, Presented};
use crate::error::{AuthFailure, AuthReason, GatewayError};
use crate::http_rules::{self, ConnInfo};
use crate::throttle::{Applicable, Ledger, RateLimitFields, Refusal, Reservation};
use crate::usage::Usage;
use crate::Gateway;

/// Request ids: a random per-process prefix and a counter, 32 hex characters.
pub(crate) struct RequestIds {
    /// The hex digits of a per-process random prefix.
    prefix: [u8; 16],
    next: AtomicU64,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        Self {
            prefix: infergate_sign::hex_digits(&rand::random::<u64>().to_be_bytes()),
            next: AtomicU64::new(rand::random::<u32>() as u64),
        }
    }

    pub(crate) fn next(&self) -> RequestId {
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

/// The API a call's head selected, and the credential it presents.
pub(crate) struct Selected<'h> {
    pub api: Arc<ApiRoute>,
    pub presented: Presented<'h>,
    /// Whether the signature covers the body's hash, so the body is read before forwarding.
    pub needs_hash: bool,
}

/// `X-Sdk-Content-Sha256` as the client sent it.
fn declared_body_hash<H: HeaderSource + ?Sized>(headers: &H) -> Option<&str> {
    headers.text(infergate_sign::HEADER_CONTENT_SHA256)
}

/// A request head as the phases read it: from `http` parts (the general server) or parsed
/// in place (the HTTP/1.1 fast path).
pub(crate) struct Head<'a, H: ?Sized> {
    pub method: &'a http::Method,
    /// The path as on the request line.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a H,
}

impl<'a> Head<'a, http::HeaderMap> {
    pub(crate) fn of(parts: &'a http::request::Parts) -> Self {
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
    /// Gateways the call passed through, this one included.
    pub hops: u8,
    /// The rate-limit fields every response of a throttled API carries.
    pub rate_limit: Option<Arc<RateLimitFields>>,
    /// Whether the path is a model API's (`…/chat/completions` and the like), whose answer
    /// is read for token usage.
    pub model_call: bool,
    /// The model API the call reaches, read from its path or its upstream's.
    pub model_api: Option<crate::usage::ModelApi>,
    /// The project of the call's API.
    pub project_id: Option<Arc<str>>,
    /// The tokens of a model call, once its answer has ended.
    pub usage: Option<Usage>,
    /// Whether the gateway asked the upstream for usage the client did not ask for (the
    /// usage chunk that brings is dropped from the answer).
    pub asked_usage: bool,
    /// The tokens a model call reserved under a TOKEN policy, settled when it ends.
    pub reservation: Option<Box<Reservation>>,
    /// The completion cap added to a model call's forwarded body (member, tokens): a
    /// token-limited call that names none may take what it reserved.
    pub forward_cap: Option<(&'static str, u64)>,
    /// The call's count in flight on the upstream it went to.
    pub in_flight: Option<infergate_core::snapshot::InFlight>,
    /// The trace the call takes part in, when tracing is on.
    pub trace: Option<Box<crate::observe::trace::TraceContext>>,
    pub(crate) started: Instant,
    /// The wall-clock time at `started`, once admission has read it.
    pub(crate) began: Option<chrono::DateTime<chrono::Utc>>,
}

impl CallRecord {
    /// The record of a call of `method` to `path` (the `target` the access log shows).
    fn new(
        request_id: RequestId,
        method: &http::Method,
        target: String,
        path: &str,
        bytes_in: u64,
    ) -> Self {
        // The path comes without its query.
        let model_api = crate::usage::model_api_at("", path);
        CallRecord {
            request_id,
            method: method.clone(),
            target,
            api_id: None,
            caller: None,
            auth: "none",
            upstream: None,
            upstream_ms: None,
            bytes_in,
            hops: 1,
            rate_limit: None,
            model_call: model_api.is_some(),
            model_api,
            project_id: None,
            usage: None,
            asked_usage: false,
            reservation: None,
            forward_cap: None,
            in_flight: None,
            trace: None,
            started: Instant::now(),
            began: None,
        }
    }

    /// A record of a call of `method` to `/`, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(method: http::Method) -> Self {
        Self::new(RequestId([b'0'; 32]), &method, String::new(), "/", 0)
    }
}

/// The wall-clock time at `at`: the system's clock is read once a second per thread (or for
/// an instant more than a second from the last reading), and the monotonic clock counts from
/// there. A signature's date window is minutes wide; a change of the system clock is seen
/// within a second.
pub(crate) fn wall_time(at: Instant) -> chrono::DateTime<chrono::Utc> {
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

impl Gateway {
    /// Starts the record of one call (and counts it in flight).
    pub(crate) fn begin(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        bytes_in: u64,
    ) -> CallRecord {
        self.observers.start();
        // Only the access log reads the target.
        let target = if self.observers.logs_targets() {
            loggable_target(path, query)
        } else {
            String::new()
        };
        CallRecord::new(self.ids.next(), method, target, path, bytes_in)
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
    pub(crate) fn select<'h, H: HeaderSource + ?Sized>(
        &self,
        snapshot: &'h Snapshot,
        head: &Head<'h, H>,
        conn: &ConnInfo,
        record: &mut CallRecord,
    ) -> Result<Selected<'h>, GatewayError> {
        if let Some(tracer) = &self.observers.tracer {
            let mut trace = tracer.context(head.headers, conn.trusted_proxy);
            trace.set_path(head.path);
            trace.client = Some(conn.client_ip.clone());
            trace.https = conn.tls;
            record.trace = Some(Box::new(trace));
        }
        self.check_limits(head)?;
        // Only a path that names what it reaches is routed, and forwarded as it was checked.
        http_rules::check_path(head.path)?;
        let hops = http_rules::hops(head.headers);
        if hops >= http_rules::MAX_HOPS {
            return Err(GatewayError::Loop { hops });
        }
        record.hops = hops + 1;

        // Route: longest api_path prefix, then the method.
        let method = head.method.as_str();
        if http_rules::never_routed(method) {
            return Err(GatewayError::MethodNotAllowed);
        }
        let on_path = snapshot.route(head.path).ok_or(GatewayError::NoApi)?;
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
        record.project_id = Some(api.service.project_id.clone());
        if let Some(trace) = record.trace.as_mut().filter(|t| t.sampled) {
            trace.api = Some(api.clone());
        }
        // The path the upstream receives may name the model API where the client's does
        // not (an API at `/llm` over `…/v1/chat/completions`).
        if record.model_api.is_none() {
            if let Some(first) = api.service.upstreams.first() {
                let rest = head.path.get(api.api_path.len()..).unwrap_or("");
                record.model_api = crate::usage::model_api_at(&first.base_path, rest);
            }
        }
        // A TOKEN policy reads the usage of the calls it limits, whatever the service says.
        record.model_call = record.model_api.is_some()
            && (api.service.usage_accounting
                || snapshot
                    .throttle(&api.api_id)
                    .is_some_and(|bound| bound.token.is_some()));
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

    /// Authenticates the caller of the selected API and checks the app is authorized.
    pub(crate) fn admit<H: HeaderSource + ?Sized>(
        &self,
        snapshot: &Snapshot,
        selected: &Selected<'_>,
        head: &Head<'_, H>,
        conn: &ConnInfo,
        body: BodySeen<'_>,
        record: &mut CallRecord,
    ) -> Result<(Caller, Option<Box<Deferred>>), GatewayError> {
        let BodySeen {
            hash: body_hash,
            is_empty: body_is_empty,
        } = body;
        // An empty body's hash is a constant.
        let body_sha256 = match body_hash {
            Some(hash) => Some(hash),
            None if selected.needs_hash => Some(infergate_sign::EMPTY_BODY_SHA256),
            None => None,
        };
        let began = wall_time(record.started);
        record.began = Some(began);
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
            began,
        );
        self.report_key_verdict(&selected.presented, &caller);
        let caller = caller?;
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
        // Throttle: only an authenticated, authorized call counts.
        let Some(bound) = snapshot.throttle(&selected.api.api_id) else {
            return Ok((caller, None));
        };
        let now = began.timestamp_millis();
        let ip = source_ip(conn, head.headers);
        let counts = |rule: &Arc<ThrottleRule>| {
            let applicable = Applicable::of(rule, &selected.api.api_id, &caller, ip, now);
            (rule.clone(), applicable)
        };
        // A TOKEN policy counts model calls once their body is known, and refuses any
        // other call with a body (a server may generate from it, uncounted) and upgrades.
        if bound.token.is_some() && head.headers.text("upgrade").is_some() {
            return Err(GatewayError::BadRequest(
                "upgrade: a token-limited API takes no upgraded connection (its tokens cannot be counted)".into(),
            ));
        }
        let tokens = bound
            .token
            .as_ref()
            .filter(|_| record.model_api.is_some() || !body_is_empty)
            .map(counts);
        let calls = bound.request.as_ref().map(counts);
        if self.cluster.is_some() || tokens.is_some() {
            let deferred = Deferred { calls, tokens };
            return Ok((caller, Some(Box::new(deferred))));
        }
        if let Some((rule, applicable)) = calls {
            match self.counters.admit(&rule, &applicable, now) {
                Ok(fields) => record.rate_limit = Some(Arc::new(fields)),
                Err(over) => return Err(GatewayError::Throttled(Box::new(over))),
            }
        }
        Ok((caller, None))
    }

    /// Takes the counts admission left for later: the tokens a model call reserves (from
    /// its `body`, the request the upstream gets), and counts shared across nodes. The
    /// tokens are taken first: a call refused by its call limit gives them back whole. They
    /// count in the windows of now, not of when the call began (its body may have taken
    /// longer than a window to arrive).
    pub(crate) async fn count_deferred(
        &self,
        deferred: Option<Box<Deferred>>,
        body: &[u8],
        record: &mut CallRecord,
    ) -> Result<(), GatewayError> {
        let Some(deferred) = deferred else {
            return Ok(());
        };
        let Deferred { calls, tokens } = *deferred;
        let now = wall_time(Instant::now()).timestamp_millis();
        if let Some((rule, mut applicable)) = tokens {
            applicable.move_to(now);
            let reserved = crate::usage::reserve(record.model_api, body, rule.default_max_tokens)
                .map_err(GatewayError::BadRequest)?;
            // A call no window could hold is refused for good, not told to come back.
            let most = applicable.least_limit();
            if reserved.tokens > most {
                return Err(GatewayError::BadRequest(format!(
                    "the call reserves {} tokens (its max_tokens, or the policy's default_max_tokens, times n, plus its body's bytes / 4), more than its token limit of {most} per {} {}: lower max_tokens",
                    reserved.tokens,
                    rule.time_interval,
                    rule.time_unit.word(),
                )));
            }
            applicable.cost = reserved.tokens;
            let fields = self.count(&rule, &applicable, now).await?;
            record.rate_limit = Some(Arc::new(fields));
            record.forward_cap = reserved.cap;
            let ledger = match &self.cluster {
                Some(cluster) => Ledger::Cluster(cluster.clone()),
                None => Ledger::Local(self.counters.clone()),
            };
            record.reservation = Some(Box::new(Reservation::new(
                ledger,
                applicable,
                (reserved.prompt, record.model_call),
            )));
        }
        if let Some((rule, mut applicable)) = calls {
            applicable.move_to(now);
            let fields = match self.count(&rule, &applicable, now).await {
                Ok(fields) => fields,
                Err(over) => {
                    if let Some(reserved) = record.reservation.take() {
                        reserved.settle(0);
                    }
                    // The refusal carries the fields of the limit it is over.
                    record.rate_limit = None;
                    record.forward_cap = None;
                    return Err(over);
                }
            };
            record.rate_limit = Some(Arc::new(match record.rate_limit.take() {
                Some(tokens) => fields.and(&tokens),
                None => fields,
            }));
        }
        Ok(())
    }

    /// Counts a call in one policy's limits: in Redis with other nodes, else on this node.
    async fn count(
        &self,
        rule: &ThrottleRule,
        applicable: &Applicable,
        now: i64,
    ) -> Result<RateLimitFields, GatewayError> {
        let counted = match &self.cluster {
            Some(cluster) => cluster.admit(rule, applicable, now).await,
            None => self.counters.admit(rule, applicable, now).map_err(Box::new),
        };
        counted.map_err(|over: Box<Refusal>| GatewayError::Throttled(over))
    }
}

/// A call's counts left for after admission: its call count where nodes share limits, and
/// the tokens a model call reserves.
pub(crate) struct Deferred {
    calls: Option<(Arc<ThrottleRule>, Applicable)>,
    tokens: Option<(Arc<ThrottleRule>, Applicable)>,
}

impl Deferred {
    /// Whether the call's whole body must be read before it is counted (its tokens).
    pub(crate) fn needs_body(&self) -> bool {
        self.tokens.is_some()
    }
}

impl Gateway {
    /// Tells the store's lockout counter how a signature made with a known IAM key fared.
    fn report_key_verdict(&self, presented: &Presented<'_>, result: &Result<Caller, GatewayError>) {
        let (Some(verdicts), Presented::IamSignature(parts, _)) = (&self.key_verdicts, presented)
        else {
            return;
        };
        match result {
            Ok(_) => verdicts.succeeded(parts.access),
            Err(GatewayError::IamAuth(f)) if f.reason == AuthReason::BadSignature => {
                verdicts.failed(parts.access)
            }
            Err(_) => {}
        }
    }
}

/// What the gateway saw of a request body before admitting the call: its SHA-256 (when
/// it was read for a signature) and whether it is empty.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodySeen<'a> {
    pub hash: Option<&'a str>,
    pub is_empty: bool,
}

/// The address a call comes from: the peer's, or for a trusted proxy the address it
/// appended to `X-Forwarded-For`.
fn source_ip<H: HeaderSource + ?Sized>(conn: &ConnInfo, headers: &H) -> std::net::IpAddr {
    if conn.trusted_proxy {
        let appended = headers
            .text("x-forwarded-for")
            .and_then(|chain| chain.rsplit(',').next())
            .and_then(|last| last.trim().parse().ok());
        if let Some(ip) = appended {
            return ip;
        }
    }
    conn.remote.ip()
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

#[cfg(test)]
mod tests {
    use super::{loggable_target, wall_time, RequestIds};
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

    #[test]
    fn targets_keep_query_keys_and_lose_values() {
        assert_eq!(loggable_target("/a", None), "/a");
        assert_eq!(
            loggable_target("/a", Some("key=secret&x=1&&flag")),
            "/a?key=&x=&flag="
        );
    }
}

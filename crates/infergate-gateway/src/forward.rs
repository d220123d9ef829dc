//! Forwarding: pick an upstream (round robin, skipping ones that recently refused a
//! connection), rewrite the request, and stream the response back frame by frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use infergate_core::snapshot::{ApiRoute, Upstream};

use crate::authn::{Caller, HEADER_API_KEY, HEADER_APP_CODE, HEADER_AUTH_TOKEN};
use crate::body::{full, is_length_limit, streamed, GatewayBody};
use crate::error::GatewayError;
use crate::h1::UpstreamConn;
use crate::metrics::GatewayMetrics;
use crate::pool::{Pool, PooledBody, SendError};
use crate::{CallRecord, ConnInfo};

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_NAMES: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];
static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static(HOP_NAMES[0]),
    HeaderName::from_static(HOP_NAMES[1]),
    HeaderName::from_static(HOP_NAMES[2]),
    HeaderName::from_static(HOP_NAMES[3]),
    HeaderName::from_static(HOP_NAMES[4]),
    HeaderName::from_static(HOP_NAMES[5]),
    HeaderName::from_static(HOP_NAMES[6]),
    HeaderName::from_static(HOP_NAMES[7]),
];

/// What a header name means to the gateway when it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    /// One of [`HOP_NAMES`].
    Hop,
    Upgrade,
    /// Identity headers only the gateway sets.
    Identity,
    /// Credentials the gateway checks.
    Credential,
    Host,
    ForwardedFor,
    ForwardedHost,
    /// Others the gateway sets (`X-Forwarded-Proto`, `X-Request-Id`).
    Set,
    Other,
}

/// Every name [`named`] recognises.
const SPECIAL: [(&str, Named); 21] = [
    (HOP_NAMES[0], Named::Hop),
    (HOP_NAMES[1], Named::Hop),
    (HOP_NAMES[2], Named::Hop),
    (HOP_NAMES[3], Named::Hop),
    (HOP_NAMES[4], Named::Hop),
    (HOP_NAMES[5], Named::Hop),
    (HOP_NAMES[6], Named::Hop),
    (HOP_NAMES[7], Named::Hop),
    ("upgrade", Named::Upgrade),
    (HEADER_APP_ID, Named::Identity),
    (HEADER_API_ID, Named::Identity),
    (HEADER_USER_ID, Named::Identity),
    ("authorization", Named::Credential),
    (HEADER_APP_CODE, Named::Credential),
    (HEADER_API_KEY, Named::Credential),
    (HEADER_AUTH_TOKEN, Named::Credential),
    ("host", Named::Host),
    (FORWARDED_FOR, Named::ForwardedFor),
    (FORWARDED_PROTO, Named::Set),
    (REQUEST_ID, Named::Set),
    (FORWARDED_HOST, Named::ForwardedHost),
];

/// The longest name of [`SPECIAL`].
const LONGEST: usize = 19;
/// Words of eight bytes that hold the longest name.
const WORDS: usize = LONGEST.div_ceil(8);

/// A name of [`SPECIAL`] as words to compare eight bytes at a time: `word` holds its bytes
/// (lowercase letters and `-`, zero-padded), `fold` the bit 0x20 at each letter.
#[derive(Clone, Copy)]
struct Special {
    word: [u64; WORDS],
    fold: [u64; WORDS],
    kind: Named,
}

/// `bytes` zero-padded into words (for the table; [`named`] pads with one copy).
const fn words(bytes: &[u8]) -> [u64; WORDS] {
    let mut padded = [0u8; WORDS * 8];
    let mut i = 0;
    while i < bytes.len() {
        padded[i] = bytes[i];
        i += 1;
    }
    padded_words(&padded)
}

/// Zero-padded bytes as little-endian words.
const fn padded_words(padded: &[u8; WORDS * 8]) -> [u64; WORDS] {
    let mut out = [0u64; WORDS];
    let mut w = 0;
    while w < WORDS {
        let mut chunk = [0u8; 8];
        let mut j = 0;
        while j < 8 {
            chunk[j] = padded[w * 8 + j];
            j += 1;
        }
        out[w] = u64::from_le_bytes(chunk);
        w += 1;
    }
    out
}

/// [`SPECIAL`] by name length: most names are told apart by their length alone.
static BY_LENGTH: [[Option<Special>; 3]; LONGEST + 1] = {
    let mut table = [[None; 3]; LONGEST + 1];
    let mut i = 0;
    while i < SPECIAL.len() {
        let (name, kind) = SPECIAL[i];
        let bytes = name.as_bytes();
        let mut fold = [0u8; LONGEST];
        let mut b = 0;
        while b < bytes.len() {
            assert!(bytes[b].is_ascii_lowercase() || bytes[b] == b'-');
            if bytes[b].is_ascii_lowercase() {
                fold[b] = 0x20;
            }
            b += 1;
        }
        let mut slot = 0;
        while table[bytes.len()][slot].is_some() {
            slot += 1;
        }
        table[bytes.len()][slot] = Some(Special {
            word: words(bytes),
            fold: words(&fold),
            kind,
        });
        i += 1;
    }
    table
};

/// What a header name (in any case) is to the gateway. At a letter of a special name, bit
/// 0x20 set in the name's byte gives that letter only from the letter or its capital; at a
/// `-` nothing is set, so only `-` matches there (a carriage return would fold to `-`).
pub(crate) fn named(name: &[u8]) -> Named {
    // Most lengths have no special name: those need no copy of the name.
    let Some(candidates) = BY_LENGTH.get(name.len()).filter(|c| c[0].is_some()) else {
        return Named::Other;
    };
    let mut padded = [0u8; WORDS * 8];
    padded[..name.len()].copy_from_slice(name);
    let word = padded_words(&padded);
    candidates
        .iter()
        .map_while(Option::as_ref)
        .find(|c| (0..WORDS).all(|w| word[w] | c.fold[w] == c.word[w]))
        .map_or(Named::Other, |c| c.kind)
}

/// Whether a header name, in any case, is one of [`HOP_NAMES`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    named(name) == Named::Hop
}

/// Headers the gateway sets for the upstream; a client's own copies are dropped.
pub const HEADER_APP_ID: &str = "x-app-id";
pub const HEADER_API_ID: &str = "x-api-id";
pub const HEADER_USER_ID: &str = "x-user-id";
static IDENTITY: [HeaderName; 3] = [
    HeaderName::from_static(HEADER_APP_ID),
    HeaderName::from_static(HEADER_API_ID),
    HeaderName::from_static(HEADER_USER_ID),
];
/// The other headers the gateway sets on every forwarded call ([`Forwarded::each`]).
const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_PROTO: &str = "x-forwarded-proto";
const FORWARDED_HOST: &str = "x-forwarded-host";
const REQUEST_ID: &str = "x-request-id";
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static(FORWARDED_FOR);
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static(FORWARDED_PROTO);
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static(FORWARDED_HOST);
const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID);

/// The request body as the gateway holds it.
pub enum ForwardBody {
    /// Read already (signed, or empty): can be sent again to another upstream.
    Buffered(Bytes),
    /// Streamed from the client: sent once.
    Stream(Option<Incoming>),
}

/// The upstreams of a call in the order to try them: a service's only upstream needs no list.
pub(crate) enum Order<'u> {
    One(Option<&'u Upstream>),
    Many(std::vec::IntoIter<&'u Upstream>),
}

impl<'u> Iterator for Order<'u> {
    type Item = &'u Upstream;

    fn next(&mut self) -> Option<&'u Upstream> {
        match self {
            Order::One(only) => only.take(),
            Order::Many(list) => list.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match self {
            Order::One(only) => usize::from(only.is_some()),
            Order::Many(list) => list.len(),
        };
        (len, Some(len))
    }
}

impl ExactSizeIterator for Order<'_> {}

/// One call ready to forward.
pub struct Call<'a> {
    pub api: &'a ApiRoute,
    pub caller: &'a Caller,
    pub parts: Parts,
    pub body: ForwardBody,
    pub conn: ConnInfo,
    pub max_body: usize,
}

/// The connection pool and the passive health of upstreams.
pub struct Upstreams {
    pool: Arc<Pool>,
    /// Connections of the HTTP/1.1 fast path.
    pub(crate) h1_pool: Arc<Pool<UpstreamConn>>,
    ejected: Mutex<HashMap<String, Instant>>,
    /// Whether `ejected` may hold an entry: calls skip its lock while nothing is ejected.
    any_ejected: AtomicBool,
    ejection: Duration,
}

impl Upstreams {
    pub fn new(ejection: Duration) -> Self {
        Self {
            pool: Pool::new(1024, Duration::from_secs(90)),
            h1_pool: Pool::new(1024, Duration::from_secs(90)),
            ejected: Mutex::new(HashMap::new()),
            any_ejected: AtomicBool::new(false),
            ejection,
        }
    }

    fn is_ejected(&self, authority: &str) -> bool {
        let Ok(mut map) = self.ejected.lock() else {
            return false;
        };
        let ejected = match map.get(authority) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                map.remove(authority);
                false
            }
            None => false,
        };
        if map.is_empty() {
            self.any_ejected.store(false, Ordering::Relaxed);
        }
        ejected
    }

    pub(crate) fn eject(&self, authority: &str) {
        if let Ok(mut map) = self.ejected.lock() {
            map.insert(authority.to_owned(), Instant::now() + self.ejection);
            self.any_ejected.store(true, Ordering::Relaxed);
        }
    }

    /// Upstreams in the order to try: healthy ones in rotation, then ejected ones.
    pub(crate) fn order<'u>(&self, api: &'u ApiRoute) -> Result<Order<'u>, GatewayError> {
        let upstreams = &api.service.upstreams;
        if upstreams.len() < 2 {
            // Nothing to rotate or reorder.
            return match upstreams.first() {
                Some(only) => Ok(Order::One(Some(only))),
                None => Err(GatewayError::UpstreamUnavailable(
                    "the service has no upstream".into(),
                )),
            };
        }
        let rotation = api.service.rotation().map(|i| &upstreams[i]);
        let order: Vec<_> = if self.any_ejected.load(Ordering::Relaxed) {
            let (healthy, ejected): (Vec<_>, Vec<_>) =
                rotation.partition(|u| !self.is_ejected(&u.authority));
            healthy.into_iter().chain(ejected).collect()
        } else {
            rotation.collect()
        };
        Ok(Order::Many(order.into_iter()))
    }

    pub async fn forward(
        &self,
        call: Call<'_>,
        record: &mut CallRecord,
        metrics: Option<&GatewayMetrics>,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let Call {
            api,
            caller,
            mut parts,
            body,
            conn,
            max_body,
        } = call;
        let upgrade = is_upgrade(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        let mut headers = std::mem::take(&mut parts.headers);
        let forwarded = Forwarded {
            api_id: &api.api_id,
            caller,
            conn: &conn,
            request_id: record.request_id.as_bytes(),
        };
        rewrite_headers(&mut headers, &forwarded, upgrade);
        let rest = &parts.uri.path()[api.api_path.len().min(parts.uri.path().len())..];
        let query = parts.uri.query();
        let order = self.order(api)?;
        let mut body = body;
        let mut last_error = String::new();
        let attempts = order.len();
        let mut headers = Some(headers);
        for (attempt, upstream) in order.enumerate() {
            if upstream.scheme != "http" {
                last_error = format!("{} upstreams are not supported", upstream.scheme);
                continue;
            }
            let uri = upstream_uri(upstream, rest, query)?;
            let request_body = match &mut body {
                ForwardBody::Buffered(bytes) => full(bytes.clone()),
                ForwardBody::Stream(stream) => match stream.take() {
                    Some(incoming) => streamed(incoming, max_body),
                    None => break,
                },
            };
            let mut request = Request::new(request_body);
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            // The last attempt takes the headers; earlier ones copy them for a retry.
            let attempt_headers = if attempt + 1 < attempts {
                headers.clone()
            } else {
                headers.take()
            };
            *request.headers_mut() = attempt_headers.unwrap_or_default();
            if let Ok(host) = HeaderValue::from_str(&upstream.authority) {
                request.headers_mut().insert(header::HOST, host);
            }
            record.upstream = Some(upstream.authority.clone());
            let sent_at = Instant::now();
            let sent = tokio::time::timeout(
                api.service.timeout,
                self.pool.send(&upstream.authority, request),
            )
            .await;
            let failure = match sent {
                Ok(Ok(response)) => {
                    answered(record, upstream, sent_at, Instant::now(), metrics);
                    return Ok(downstream_response(
                        response,
                        record.request_id.as_bytes(),
                        client_upgrade,
                    ));
                }
                Err(_) => Failure::Timeout,
                Ok(Err(SendError::Connect(err))) => Failure::Connect(err),
                Ok(Err(SendError::Other(err))) if is_length_limit(&err) => {
                    upstream_error(metrics, &upstream.authority, "other");
                    return Err(GatewayError::BodyTooLarge { limit: max_body });
                }
                Ok(Err(SendError::Other(err))) => Failure::Other(err.to_string()),
            };
            record.upstream_ms = Some(millis(sent_at.elapsed()));
            last_error = self.failed(api, upstream, failure, metrics)?;
        }
        Err(GatewayError::UpstreamUnavailable(last_error))
    }
}

/// How an attempt on one upstream went wrong.
pub enum Failure {
    Timeout,
    /// No connection could be opened.
    Connect(String),
    Other(String),
}

impl Upstreams {
    /// Counts and logs a failed attempt. A refused connection ejects the upstream and gives
    /// the reason, to try the next one; any other failure ends the call.
    pub fn failed(
        &self,
        api: &ApiRoute,
        upstream: &Upstream,
        failure: Failure,
        metrics: Option<&GatewayMetrics>,
    ) -> Result<String, GatewayError> {
        let authority = &*upstream.authority;
        match failure {
            Failure::Timeout => {
                upstream_error(metrics, authority, "timeout");
                Err(GatewayError::UpstreamTimeout {
                    timeout_ms: api.service.timeout.as_millis(),
                })
            }
            Failure::Connect(why) => {
                upstream_error(metrics, authority, "connect");
                tracing::warn!(upstream = %authority, error = %why, "upstream refused the connection");
                self.eject(authority);
                Ok(format!("connecting to {authority} failed"))
            }
            Failure::Other(why) => {
                upstream_error(metrics, authority, "other");
                tracing::warn!(upstream = %authority, error = %why, "upstream request failed");
                Err(GatewayError::UpstreamUnavailable(format!(
                    "the request to {authority} failed"
                )))
            }
        }
    }
}

/// Counts an upstream error of `kind`.
pub fn upstream_error(metrics: Option<&GatewayMetrics>, authority: &str, kind: &str) {
    if let Some(m) = metrics {
        m.upstream_errors
            .with_label_values(&[authority, kind])
            .inc();
    }
}

/// Milliseconds with microsecond precision, for the access log.
pub fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Records how long `upstream` took to answer with a response head.
pub fn answered(
    record: &mut CallRecord,
    upstream: &Upstream,
    sent_at: Instant,
    now: Instant,
    metrics: Option<&GatewayMetrics>,
) {
    let elapsed = now.saturating_duration_since(sent_at);
    record.upstream_ms = Some(millis(elapsed));
    if let Some(m) = metrics {
        m.observe_upstream(&upstream.authority, elapsed.as_secs_f64());
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// `{base}{rest}?{query}` in origin form (the request line's target): the matched
/// `api_path` is replaced by the upstream's base path.
fn upstream_uri(upstream: &Upstream, rest: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
    let query_len = query.map_or(0, |q| q.len() + 1);
    let mut target = String::with_capacity(upstream.base_path.len() + rest.len() + query_len + 1);
    target.push_str(&upstream.base_path);
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Uri::try_from(target)
        .map_err(|e| GatewayError::BadRequest(format!("cannot build the upstream URI: {e}")))
}

fn connection_tokens(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Whether a client's header is dropped before forwarding: hop-by-hop (`Upgrade` unless
/// upgrading), identity headers only the gateway sets, and checked credentials. The same
/// names as [`HOP_BY_HOP`] and [`IDENTITY`] and the credential headers, matched as text in
/// any case.
pub(crate) fn dropped(name: &str, upgrade: bool, strip_credentials: bool) -> bool {
    named(name.as_bytes()).dropped(upgrade, strip_credentials)
}

impl Named {
    /// See [`dropped`].
    pub fn dropped(self, upgrade: bool, strip_credentials: bool) -> bool {
        match self {
            Named::Hop | Named::Identity => true,
            Named::Upgrade => !upgrade,
            Named::Credential => strip_credentials,
            _ => false,
        }
    }

    /// Whether [`Forwarded::each`] replaces a client's header of this name.
    pub fn replaced(self, host_sent: bool) -> bool {
        match self {
            Named::ForwardedFor | Named::Set | Named::Identity => true,
            Named::ForwardedHost => host_sent,
            _ => false,
        }
    }
}

/// What the gateway tells the upstream about a call.
pub(crate) struct Forwarded<'a> {
    pub api_id: &'a str,
    pub caller: &'a Caller,
    pub conn: &'a ConnInfo,
    /// The call's id, as the header carries it.
    pub request_id: &'a [u8],
}

impl Forwarded<'_> {
    /// The headers the gateway sets, each replacing the client's own: `X-Forwarded-Host`
    /// (when the client sent `Host`), `-For` (appended to the client's), `-Proto`,
    /// `X-Request-Id` and the caller's identity.
    pub fn each(
        &self,
        host: Option<&[u8]>,
        prior_for: Option<&str>,
        mut set: impl FnMut(&HeaderName, &[u8]),
    ) {
        if let Some(host) = host {
            set(&X_FORWARDED_HOST, host);
        }
        match prior_for {
            Some(prior) => set(
                &X_FORWARDED_FOR,
                format!("{prior}, {}", self.conn.remote.ip()).as_bytes(),
            ),
            None => set(&X_FORWARDED_FOR, self.conn.client_ip.as_bytes()),
        }
        let proto: &[u8] = if self.conn.tls { b"https" } else { b"http" };
        set(&X_FORWARDED_PROTO, proto);
        set(&X_REQUEST_ID, self.request_id);
        set(&IDENTITY[1], self.api_id.as_bytes());
        match self.caller {
            Caller::App { app_id } => set(&IDENTITY[0], app_id.as_bytes()),
            Caller::User { user_id } => set(&IDENTITY[2], user_id.as_bytes()),
            Caller::Anonymous => {}
        }
    }
}

/// Turns the client's headers into those sent upstream, in place: hop-by-hop, credential
/// and spoofed identity headers removed, forwarding and identity headers set.
pub(crate) fn rewrite_headers(headers: &mut HeaderMap, forwarded: &Forwarded<'_>, upgrade: bool) {
    // Names listed in `Connection` are hop-by-hop too; most requests have none.
    if headers.contains_key(header::CONNECTION) {
        for name in connection_tokens(headers) {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
    }
    let strip_credentials = !matches!(forwarded.caller, Caller::Anonymous);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| dropped(name.as_str(), upgrade, strip_credentials))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let host = headers.get(header::HOST).cloned();
    let prior_for = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    forwarded.each(
        host.as_ref().map(HeaderValue::as_bytes),
        prior_for.as_deref(),
        |name, value| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.insert(name.clone(), value);
            }
        },
    );
}

/// The upstream's response, streamed: hop-by-hop headers dropped, `X-Request-Id` added.
/// A `101 Switching Protocols` is spliced to the client's upgraded connection.
fn downstream_response(
    mut response: Response<PooledBody>,
    request_id: &[u8],
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<GatewayBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        response.body_mut().detach();
        if let Some(client) = client_upgrade {
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match (client.await, upstream.await) {
                    (Ok(client), Ok(upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    (client, upstream) => {
                        tracing::debug!(
                            client_ok = client.is_ok(),
                            upstream_ok = upstream.is_ok(),
                            "upgrade failed"
                        );
                    }
                }
            });
        }
    }
    let (mut parts, body) = response.into_parts();
    if parts.headers.contains_key(header::CONNECTION) {
        for name in connection_tokens(&parts.headers) {
            if !(switching && name == header::UPGRADE) {
                parts.headers.remove(name);
            }
        }
    }
    if parts.headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
    }
    if switching {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let Ok(id) = HeaderValue::from_bytes(request_id) {
        parts.headers.insert(X_REQUEST_ID, id);
    }
    let body = body
        .map_err(|e| Box::new(e) as crate::body::BoxError)
        .boxed_unsync();
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(pairs: &[(&str, &str)], caller: Caller, upgrade: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let conn = ConnInfo::new("127.0.0.2:5555".parse().expect("addr"), false);
        let forwarded = Forwarded {
            api_id: "api1",
            caller: &caller,
            conn: &conn,
            request_id: b"rid",
        };
        rewrite_headers(&mut headers, &forwarded, upgrade);
        headers
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text").to_owned())
            .collect()
    }

    #[test]
    fn upstream_headers_lose_hops_credentials_and_spoofed_identity() {
        let h = rewritten(
            &[
                ("host", "gw.example"),
                ("connection", "keep-alive, x-secret-hop"),
                ("keep-alive", "timeout=5"),
                ("x-secret-hop", "1"),
                ("te", "trailers"),
                ("upgrade", "h2c"),
                ("authorization", "SDK-HMAC-SHA256 Access=k"),
                ("x-apig-appcode", "code"),
                ("apikey", "key"),
                ("x-auth-token", "token"),
                ("x-app-id", "spoof"),
                ("x-user-id", "spoof"),
                ("x-forwarded-for", "10.0.0.9"),
                ("accept", "a"),
                ("accept", "b"),
            ],
            Caller::App {
                app_id: "app1".into(),
            },
            false,
        );
        for gone in [
            "connection",
            "keep-alive",
            "x-secret-hop",
            "te",
            "upgrade",
            "authorization",
            "x-apig-appcode",
            "apikey",
            "x-auth-token",
            "x-user-id",
        ] {
            assert!(!h.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(values(&h, "x-app-id"), ["app1"]);
        assert_eq!(values(&h, "x-api-id"), ["api1"]);
        assert_eq!(values(&h, "x-request-id"), ["rid"]);
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.9, 127.0.0.2"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&h, "x-forwarded-host"), ["gw.example"]);
        assert_eq!(values(&h, "accept"), ["a", "b"]);
    }

    #[test]
    fn upgrades_keep_their_headers_and_open_apis_their_credentials() {
        let h = rewritten(
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("authorization", "Bearer model-token"),
            ],
            Caller::Anonymous,
            true,
        );
        assert_eq!(values(&h, "upgrade"), ["websocket"]);
        assert_eq!(values(&h, "connection"), ["upgrade"]);
        assert_eq!(values(&h, "authorization"), ["Bearer model-token"]);
        assert_eq!(values(&h, "x-forwarded-for"), ["127.0.0.2"]);
        assert!(!h.contains_key("x-app-id") && !h.contains_key("x-user-id"));
    }

    /// Credential headers, removed once the gateway has checked them.
    static CREDENTIALS: [HeaderName; 4] = [
        header::AUTHORIZATION,
        HeaderName::from_static(HEADER_APP_CODE),
        HeaderName::from_static(HEADER_API_KEY),
        HeaderName::from_static(HEADER_AUTH_TOKEN),
    ];

    #[test]
    fn the_dropped_names_are_the_listed_ones() {
        for name in HOP_BY_HOP.iter().chain(&IDENTITY) {
            assert!(dropped(name.as_str(), false, false), "{name}");
        }
        for name in &CREDENTIALS {
            assert!(
                dropped(name.as_str(), false, true) && !dropped(name.as_str(), false, false),
                "{name}"
            );
        }
        assert!(dropped("upgrade", false, true));
        assert!(!dropped("Upgrade", true, true));
        assert!(dropped("Proxy-Authorization", false, false));
        assert!(dropped("X-APIG-AppCode", false, true));
        for kept in [
            "host",
            "accept",
            "content-length",
            "x-sdk-date",
            "x-forwarded-for",
        ] {
            assert!(!dropped(kept, false, true), "{kept}");
        }
    }

    #[test]
    fn special_names_are_known_in_any_case_and_no_others() {
        for (name, kind) in SPECIAL {
            assert_eq!(named(name.as_bytes()), kind, "{name}");
            assert_eq!(named(name.to_ascii_uppercase().as_bytes()), kind, "{name}");
        }
        for other in [
            "accept",
            "user-agent",
            "x-sdk-date",
            "x-forwarded",
            "",
            "hosts",
        ] {
            assert_eq!(named(other.as_bytes()), Named::Other, "{other}");
        }
        // Every name with one byte changed, to any value, is told as a comparison of the
        // whole name in any case tells it (a carriage return folds to `-` under bit 0x20:
        // it must not match).
        let by_comparison = |name: &[u8]| {
            SPECIAL
                .iter()
                .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
                .map_or(Named::Other, |(_, kind)| *kind)
        };
        for (name, _) in SPECIAL {
            for at in 0..name.len() {
                for byte in 0..=255u8 {
                    let mut other = name.as_bytes().to_vec();
                    other[at] = byte;
                    let want = by_comparison(&other);
                    assert_eq!(named(&other), want, "{name} with {byte:#x} at {at}");
                }
            }
        }
        assert!(is_hop_by_hop(b"Transfer-Encoding") && !is_hop_by_hop(b"upgrade"));
    }

    #[test]
    fn upstream_uris() {
        let up = Upstream::parse("http://127.0.0.1:9000/base").expect("upstream");
        assert_eq!(
            upstream_uri(&up, "/predictions/poetry", Some("a=1"))
                .expect("uri")
                .to_string(),
            "/base/predictions/poetry?a=1"
        );
        assert_eq!(
            upstream_uri(&up, "", None).expect("uri").to_string(),
            "/base"
        );
        let bare = Upstream::parse("http://h:1").expect("upstream");
        assert_eq!(upstream_uri(&bare, "", None).expect("uri").to_string(), "/");
        assert_eq!(
            upstream_uri(&bare, "/x%20y", None)
                .expect("uri")
                .to_string(),
            "/x%20y"
        );
    }
}

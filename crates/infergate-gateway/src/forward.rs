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
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use infergate_core::snapshot::{ApiRoute, Upstream};
use smallvec::SmallVec;

use crate::authn::Caller;
use crate::body::{find_source, full, streamed, ClientBody, FromClient, GatewayBody};
use crate::error::GatewayError;
use crate::h1::UpstreamConn;
use crate::http_rules::{
    self, forwarded_length, forwards_header, is_hop_by_hop, named, removable_by_connection, tokens,
    Forwarded, RequestFraming, X_REQUEST_ID,
};
use crate::metrics::GatewayMetrics;
use crate::pool::{Pool, PooledBody, SendError};
use crate::{CallRecord, ConnInfo};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The request body as the gateway holds it.
pub enum ForwardBody {
    /// Read already (signed, or empty): can be sent again to another upstream.
    Buffered(Bytes),
    /// Streamed from the client: sent once.
    Stream(Option<ClientBody>),
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
    /// How the client framed the body.
    pub framing: RequestFraming,
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
            framing,
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
            let (request_body, known) = match &mut body {
                ForwardBody::Buffered(bytes) => (full(bytes.clone()), Some(bytes.len() as u64)),
                ForwardBody::Stream(stream) => match stream.take() {
                    Some(incoming) => {
                        let known = incoming.size_hint().exact();
                        (streamed(incoming, max_body), known)
                    }
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
            // The gateway frames the body itself: its length when known, else chunked.
            if let Some(length) = forwarded_length(framing, known) {
                request
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
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
                // The client's body failed (its size, pace or framing), not the upstream.
                Ok(Err(SendError::Other(err))) if find_source::<FromClient>(&err).is_some() => {
                    return Err(GatewayError::client_body(&err, max_body));
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

fn connection_tokens(headers: &HeaderMap) -> SmallVec<[HeaderName; 4]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| tokens(v.as_bytes()))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect()
}

/// Turns the client's headers into those sent upstream, by the rules of [`http_rules`]:
/// only the client's own headers that [`forwards_header`] lets through (less those its
/// `Connection` lists and may remove), then the headers the gateway sets. The framing
/// (`Content-Length`) is the caller's to write.
pub(crate) fn rewrite_headers(headers: &mut HeaderMap, forwarded: &Forwarded<'_>, upgrade: bool) {
    let host = headers.get(header::HOST).cloned();
    let chain = http_rules::client_chain(
        forwarded.conn,
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes),
    );
    // Names listed in `Connection` are hop-by-hop too; most requests have none.
    let listed = if headers.contains_key(header::CONNECTION) {
        connection_tokens(headers)
    } else {
        SmallVec::new()
    };
    let client = std::mem::take(headers);
    let mut current: Option<HeaderName> = None;
    for (name, value) in client {
        if let Some(name) = name {
            current = Some(name);
        }
        let Some(name) = &current else { continue };
        let kind = named(name.as_str().as_bytes());
        if !forwards_header(kind, value.as_bytes(), upgrade)
            || (removable_by_connection(kind) && listed.contains(name))
        {
            continue;
        }
        headers.append(name.clone(), value);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    forwarded.set_forwarded_headers(
        host.as_ref().map(HeaderValue::as_bytes),
        chain.as_deref(),
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
    let hops: SmallVec<[HeaderName; 2]> = parts
        .headers
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in hops {
        parts.headers.remove(name);
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

    fn rewritten_by(
        pairs: &[(&str, &str)],
        caller: Caller,
        upgrade: bool,
        conn: &ConnInfo,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            headers.append(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let forwarded = Forwarded {
            api_id: "api1",
            caller: &caller,
            conn,
            request_id: b"rid",
        };
        rewrite_headers(&mut headers, &forwarded, upgrade);
        headers
    }

    fn rewritten(pairs: &[(&str, &str)], caller: Caller, upgrade: bool) -> HeaderMap {
        let conn = ConnInfo::new("127.0.0.2:5555".parse().expect("addr"), false);
        rewritten_by(pairs, caller, upgrade, &conn)
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
        for caller in [
            Caller::Anonymous,
            Caller::App {
                app_id: "app1".into(),
            },
        ] {
            let h = rewritten(
                &[
                    ("host", "gw.example"),
                    (
                        "connection",
                        "keep-alive, x-secret-hop, content-length, x-app-id",
                    ),
                    ("keep-alive", "timeout=5"),
                    ("x-secret-hop", "1"),
                    ("te", "trailers"),
                    ("upgrade", "h2c"),
                    ("content-length", "5"),
                    ("authorization", "SDK-HMAC-SHA256 Access=k"),
                    ("x-apig-appcode", "code"),
                    ("apikey", "key"),
                    ("x-auth-token", "token"),
                    ("x_apig_appcode", "code"),
                    ("x-app-id", "spoof"),
                    ("x_app_id", "spoof"),
                    ("X_User_Id", "spoof"),
                    ("x-user-id", "spoof"),
                    ("x-forwarded-for", "10.0.0.9"),
                    ("x-forwarded-port", "1"),
                    ("x_forwarded_host", "evil"),
                    ("forwarded", "for=10.0.0.9"),
                    ("x-real-ip", "10.0.0.9"),
                    ("accept", "a"),
                    ("accept", "b"),
                ],
                caller.clone(),
                false,
            );
            for gone in [
                "connection",
                "keep-alive",
                "x-secret-hop",
                "te",
                "upgrade",
                "content-length",
                "authorization",
                "x-apig-appcode",
                "x_apig_appcode",
                "apikey",
                "x-auth-token",
                "x_app_id",
                "x_user_id",
                "x-user-id",
                "x-forwarded-port",
                "x_forwarded_host",
                "forwarded",
                "x-real-ip",
            ] {
                assert!(!h.contains_key(gone), "{gone} was forwarded for {caller:?}");
            }
            let app = match &caller {
                Caller::App { .. } => vec!["app1".to_owned()],
                _ => vec![],
            };
            assert_eq!(values(&h, "x-app-id"), app);
            assert_eq!(values(&h, "x-api-id"), ["api1"]);
            assert_eq!(values(&h, "x-request-id"), ["rid"]);
            assert_eq!(values(&h, "x-forwarded-for"), ["127.0.0.2"]);
            assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
            assert_eq!(values(&h, "x-forwarded-host"), ["gw.example"]);
            assert_eq!(values(&h, "accept"), ["a", "b"]);
        }
    }

    #[test]
    fn a_trusted_proxy_keeps_its_chain() {
        let pairs = [
            ("x-forwarded-for", "203.0.113.7"),
            ("X-Forwarded-For", "10.1.1.1"),
        ];
        let peer = "10.0.0.5:5555".parse().expect("addr");
        let trusted = ConnInfo::new(peer, false)
            .trusting(&[http_rules::Cidr::parse("10.0.0.0/24").expect("cidr")]);
        let h = rewritten_by(&pairs, Caller::Anonymous, false, &trusted);
        assert_eq!(
            values(&h, "x-forwarded-for"),
            ["203.0.113.7, 10.1.1.1, 10.0.0.5"]
        );
        let stranger = ConnInfo::new(peer, false)
            .trusting(&[http_rules::Cidr::parse("10.0.1.0/24").expect("cidr")]);
        let h = rewritten_by(&pairs, Caller::Anonymous, false, &stranger);
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.5"]);
    }

    #[test]
    fn upgrades_keep_their_headers_and_other_schemes_pass() {
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
        let signed = rewritten(
            &[("authorization", "  sdk-hmac-sha256 Access=k")],
            Caller::Anonymous,
            false,
        );
        assert!(!signed.contains_key("authorization"));
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

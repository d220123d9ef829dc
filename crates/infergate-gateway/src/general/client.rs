//! The general server's side of an upstream call, over hyper's client (HTTP/1.1, or HTTP/2
//! where an `https://` upstream chooses it by ALPN): the request built from the client's by
//! the rules of `http_rules`, one attempt per upstream in the loop of `upstreams`, a pool
//! of hyper senders (an HTTP/2 connection shared by the calls in flight on it), and the
//! response streamed back frame by frame (a `101` spliced to the client's upgraded
//! connection).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use infergate_core::snapshot::{ApiRoute, Upstream};
use smallvec::SmallVec;

use crate::authn::Caller;
use crate::body::{streamed, BoxError, ClientBody, ClientFailure, GatewayBody, ReadBody};
use crate::error::GatewayError;
use crate::http_rules::ConnInfo;
use crate::http_rules::{
    self, forwarded_length, ClientHeaders, Forwarded, RequestFraming, ResponseLines, X_REQUEST_ID,
};
use crate::phases::CallRecord;
use crate::throttle::RateLimitFields;
use crate::upstreams::pool::{ConnectError, Pool, Pooled};
use crate::upstreams::tls::{chose_h2, Alpn, UpstreamTls};
use crate::upstreams::{Attempt, Attempted, Attempts, Failure};
use crate::Gateway;

/// A connection to an upstream, as hyper's client holds it.
pub(crate) enum Sender {
    Http1(http1::SendRequest<GatewayBody>),
    /// Shared: each call in flight on the connection holds a copy.
    Http2(http2::SendRequest<GatewayBody>),
}

impl Sender {
    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(sender) => sender.ready().await,
            Sender::Http2(sender) => sender.ready().await,
        }
    }

    async fn try_send_request(
        &mut self,
        request: Request<GatewayBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<GatewayBody>>> {
        match self {
            Sender::Http1(sender) => sender.try_send_request(request).await,
            Sender::Http2(sender) => sender.try_send_request(request).await,
        }
    }

    /// Puts the request target in the form the connection's protocol sends: HTTP/2 names
    /// the upstream in `:scheme` and `:authority` (and no `Host`), HTTP/1.1 in `Host`.
    fn fit(&self, request: &mut Request<GatewayBody>, upstream: &Upstream) {
        let uri = request.uri();
        match self {
            Sender::Http2(_) if uri.scheme().is_none() => {
                let target = uri.path_and_query().map_or("/", |p| p.as_str());
                let absolute = format!("{}://{}{target}", upstream.scheme, upstream.authority);
                if let Ok(absolute) = Uri::try_from(absolute) {
                    *request.uri_mut() = absolute;
                }
                request.headers_mut().remove(header::HOST);
            }
            Sender::Http1(_) if uri.scheme().is_some() => {
                let target = uri.path_and_query().map_or("/", |p| p.as_str());
                if let Ok(origin) = Uri::try_from(target) {
                    *request.uri_mut() = origin;
                }
                if let Ok(host) = HeaderValue::from_str(&upstream.authority) {
                    request.headers_mut().insert(header::HOST, host);
                }
            }
            _ => {}
        }
    }
}

/// The request body as the gateway holds it.
pub(crate) enum ForwardBody {
    /// Read already (signed, or empty): can be sent again to another upstream.
    Buffered(ReadBody),
    /// Streamed from the client: sent once.
    Stream(Option<ClientBody>),
}

/// One call ready to forward.
pub(crate) struct Call<'a> {
    pub api: &'a ApiRoute,
    pub caller: &'a Caller,
    pub parts: Parts,
    pub body: ForwardBody,
    /// How the client framed the body.
    pub framing: RequestFraming,
    pub conn: ConnInfo,
    pub max_body: usize,
}

impl Gateway {
    /// Sends the call to its API's upstreams in turn until one answers, and streams the
    /// answer back.
    pub(crate) async fn forward(
        &self,
        call: Call<'_>,
        record: &mut CallRecord,
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
        let accept = http_rules::websocket_accept(&parts.headers);
        let client = ClientHeaders::new(
            parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
            accept.is_some(),
        )
        .unencoded(record.model_call)
        .traced(record.trace.as_ref().map(|t| t.header()));
        let client_upgrade = if client.upgrade() {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        let forwarded = Forwarded {
            api_id: &api.api_id,
            caller,
            conn: &conn,
            request_id: record.request_id.as_bytes(),
            hops: record.hops,
            trace: record.trace.as_ref().map(|t| t.header()),
        };
        let headers = upstream_headers(std::mem::take(&mut parts.headers), &client, &forwarded);
        let mut attempts = HyperAttempts {
            upgrade: client_upgrade.is_some(),
            pool: &self.general_pool,
            tls: &self.upstream_tls,
            parts: &parts,
            api,
            headers: Some(headers),
            body,
            framing,
            max_body,
            target: Vec::new(),
            client_failure: None,
        };
        let answered = self
            .upstreams
            .try_in_turn(api, record, &self.observers, &mut attempts)
            .await?;
        match answered {
            // A switch the client did not ask for (or was not let ask for), or one that is not
            // the WebSocket handshake asked for, is no answer.
            Some(answered)
                if answered.answer.status() == StatusCode::SWITCHING_PROTOCOLS
                    && !(client_upgrade.is_some()
                        && accept.is_some_and(|accept| {
                            http_rules::websocket_switched(answered.answer.headers(), &accept)
                        })) =>
            {
                Err(GatewayError::UpstreamUnavailable(
                    "the upstream switched protocols unasked, or without completing the \
                     WebSocket handshake"
                        .into(),
                ))
            }
            Some(answered) => Ok(downstream_response(
                answered.answer,
                record.request_id.as_bytes(),
                record.rate_limit.as_deref(),
                client_upgrade,
            )),
            // The general server is never abandoned half-way: hyper drops the whole call.
            None => Err(GatewayError::UpstreamUnavailable(
                "the call was abandoned".into(),
            )),
        }
    }
}

/// The attempts of one call, each on a hyper connection to its upstream.
struct HyperAttempts<'a> {
    /// Whether the call asks for an upgrade (which only HTTP/1.1 carries).
    upgrade: bool,
    pool: &'a Arc<Pool<Sender>>,
    tls: &'a UpstreamTls,
    parts: &'a Parts,
    api: &'a ApiRoute,
    /// The rewritten headers; the last attempt takes them.
    headers: Option<HeaderMap>,
    body: ForwardBody,
    framing: RequestFraming,
    max_body: usize,
    /// The request target, rewritten for each upstream.
    target: Vec<u8>,
    /// Where the streamed client body, once sent, leaves its failure.
    client_failure: Option<ClientFailure>,
}

impl HyperAttempts<'_> {
    /// How the client's streamed body failed, if it did.
    fn client_failed(&self) -> Option<GatewayError> {
        self.client_failure.as_ref()?.get().cloned()
    }
}

impl Attempts for HyperAttempts<'_> {
    type Answer = Response<PooledBody>;

    fn speaks(&self, scheme: &str) -> bool {
        matches!(scheme, "http" | "https")
    }

    fn can_resend(&self) -> bool {
        matches!(self.body, ForwardBody::Buffered(_))
    }

    fn status(answer: &Self::Answer) -> u16 {
        answer.status().as_u16()
    }

    fn retry_after(answer: &Self::Answer) -> Option<u64> {
        if !matches!(answer.status().as_u16(), 429 | 503) {
            return None;
        }
        answer
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| http_rules::retry_after_seconds(v.as_bytes()))
    }

    async fn attempt(&mut self, attempt: &Attempt<'_>) -> Attempted<Response<PooledBody>> {
        let upstream = attempt.upstream;
        self.target.clear();
        http_rules::push_upstream_target(
            &mut self.target,
            &upstream.base_path,
            (&self.api.api_path, self.parts.uri.path()),
            self.parts.uri.query(),
        );
        let uri = match Uri::try_from(self.target.as_slice()) {
            Ok(uri) => uri,
            Err(e) => {
                return Attempted::Failed(Failure::Client(GatewayError::BadRequest(format!(
                    "cannot build the upstream URI: {e}"
                ))))
            }
        };
        let (request_body, known) = match &mut self.body {
            ForwardBody::Buffered(read) => (read.body(), Some(read.len() as u64)),
            ForwardBody::Stream(stream) => match stream.take() {
                Some(incoming) => {
                    let known = incoming.size_hint().exact();
                    let (body, failure) = streamed(incoming, self.max_body);
                    self.client_failure = Some(failure);
                    (body, known)
                }
                None => return Attempted::Spent,
            },
        };
        let mut request = Request::new(request_body);
        *request.method_mut() = self.parts.method.clone();
        *request.uri_mut() = uri;
        // The last attempt takes the headers; earlier ones copy them for a retry.
        let headers = if attempt.last {
            self.headers.take()
        } else {
            self.headers.clone()
        };
        *request.headers_mut() = headers.unwrap_or_default();
        if let Ok(host) = HeaderValue::from_str(&upstream.authority) {
            request.headers_mut().insert(header::HOST, host);
        }
        // The gateway frames the body itself: its length when known, else chunked.
        if let Some(length) = forwarded_length(self.framing, known) {
            request
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        let deadline = tokio::time::Instant::from_std(attempt.deadline);
        let to = To {
            upstream,
            key: self.api.service.pool_key(attempt.index),
            own_key: self.api.service.own_key(attempt.index),
            ca_pem: self.api.service.tls_ca_pem.as_ref(),
            tls: self.tls,
            alpn: if self.upgrade {
                Alpn::Http11
            } else {
                Alpn::H2OrHttp11
            },
        };
        let sent = tokio::time::timeout_at(deadline, self.pool.send(&to, request));
        match sent.await {
            Ok(Ok(response)) => Attempted::Answered(response),
            Err(_) => Attempted::Failed(Failure::Timeout),
            Ok(Err(SendError::Connect(err))) => Attempted::Failed(Failure::from(err)),
            Ok(Err(SendError::Other(err))) => match self.client_failed() {
                // The client's body failed (its size, pace or framing), not the upstream.
                Some(answer) => Attempted::Failed(Failure::Client(answer)),
                None => Attempted::Failed(Failure::Other(err.to_string())),
            },
        }
    }
}

/// The headers an upstream receives: the client's lines that [`ClientHeaders::forwards`]
/// lets through, then the headers the gateway sets. The framing and `Host` are the
/// attempt's to write.
pub(crate) fn upstream_headers(
    client: HeaderMap,
    rules: &ClientHeaders,
    forwarded: &Forwarded<'_>,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(client.len() + 8);
    let mut current: Option<HeaderName> = None;
    let host = client.get(header::HOST).cloned();
    // Only a trusted proxy's chain is read.
    let forwarded_for: SmallVec<[HeaderValue; 2]> = if forwarded.conn.trusted_proxy {
        client
            .get_all(http_rules::X_FORWARDED_FOR)
            .iter()
            .cloned()
            .collect()
    } else {
        SmallVec::new()
    };
    for (name, value) in client {
        if let Some(name) = name {
            current = Some(name);
        }
        let Some(name) = &current else { continue };
        if rules.forwards(name.as_str().as_bytes(), value.as_bytes()) {
            headers.append(name.clone(), value);
        }
    }
    forwarded.set_forwarded_headers(
        rules,
        host.as_ref().map(HeaderValue::as_bytes),
        forwarded_for.iter().map(HeaderValue::as_bytes),
        |name, value| {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.insert(name.clone(), value);
            }
        },
    );
    headers
}

/// The upstream's response, streamed: its lines as [`ResponseLines::forwards`] lets them
/// through, and `X-Request-Id` set. A `101 Switching Protocols` is spliced to the client's
/// upgraded connection.
fn downstream_response(
    mut response: Response<PooledBody>,
    request_id: &[u8],
    rate_limit: Option<&RateLimitFields>,
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
    // The client's connection has its own protocol.
    parts.version = Version::HTTP_11;
    let headers = &mut parts.headers;
    let (dropped, connection) = {
        let lines = ResponseLines::new(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
            switching,
            headers.contains_key(header::TRANSFER_ENCODING),
            parts.status.as_u16(),
        );
        let dropped: SmallVec<[HeaderName; 4]> = headers
            .keys()
            .filter(|name| !lines.forwards(name.as_str().as_bytes()))
            .cloned()
            .collect();
        (dropped, lines.connection())
    };
    for name in dropped {
        headers.remove(name);
    }
    if let Some(Ok(value)) = connection.map(HeaderValue::from_bytes) {
        headers.insert(header::CONNECTION, value);
    }
    if let Ok(id) = HeaderValue::from_bytes(request_id) {
        headers.insert(X_REQUEST_ID, id);
    }
    if let Some(fields) = rate_limit {
        for (name, value) in [
            (http_rules::RATELIMIT_POLICY, &fields.policy),
            (http_rules::RATELIMIT, &fields.state),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
    }
    let body = body.map_err(|e| Box::new(e) as BoxError).boxed_unsync();
    Response::from_parts(parts, body)
}

/// Why a request got no response.
#[derive(Debug)]
enum SendError {
    /// No connection could be opened: the upstream is down (or not resolvable), or this
    /// node ran out of something.
    Connect(ConnectError),
    /// The request failed on an open connection.
    Other(hyper::Error),
}

impl Pooled for Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    fn shared(&self) -> Option<Sender> {
        match self {
            Sender::Http1(_) => None,
            Sender::Http2(sender) => Some(Sender::Http2(sender.clone())),
        }
    }
}

/// Where an attempt goes: the upstream, the key of its idle connections, and how its TLS
/// is verified.
struct To<'a> {
    upstream: &'a Upstream,
    /// Idle HTTP/1.1 connections, lent to any service that reaches the upstream alike.
    key: &'a Arc<str>,
    /// A shared HTTP/2 connection, this service's alone: one tenant's streams never take
    /// the stream slots or the flow-control window of another's.
    own_key: &'a Arc<str>,
    ca_pem: Option<&'a Arc<str>>,
    tls: &'a UpstreamTls,
    /// The protocols a new TLS connection offers.
    alpn: Alpn,
}

/// An HTTP/1 client connection over `io`, driven by a task of its own.
async fn handshake<T>(io: T, authority: &str) -> Result<Sender, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| SendError::Connect(format!("handshake with {authority}: {e}").into()))?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    });
    Ok(Sender::Http1(sender))
}

/// How often a shared HTTP/2 connection is pinged, and how long its answer may take.
const H2_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const H2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An HTTP/2 client connection over `io`, driven by a task of its own.
async fn handshake_h2<T>(io: T, authority: &str) -> Result<Sender, SendError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    // A connection whose peer went silent is found by its pings and closed (its calls
    // fail, later ones open a new connection) rather than holding every call to a timeout.
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .adaptive_window(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| {
            SendError::Connect(format!("HTTP/2 handshake with {authority}: {e}").into())
        })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "upstream connection ended with an error");
        }
    });
    Ok(Sender::Http2(sender))
}

impl Pool<Sender> {
    async fn connect_sender(&self, to: &To<'_>) -> Result<Sender, SendError> {
        let authority = &*to.upstream.authority;
        if to.upstream.scheme != "https" {
            let stream = self
                .connect_tcp(authority, 80)
                .await
                .map_err(SendError::Connect)?;
            return handshake(stream, authority).await;
        }
        let tls = to
            .tls
            .connect_upstream(self, authority, to.ca_pem, to.alpn)
            .await
            .map_err(SendError::Connect)?;
        if chose_h2(&tls) {
            return handshake_h2(tls, authority).await;
        }
        handshake(tls, authority).await
    }

    /// Sends `request` to `to`: on an idle connection (or a shared HTTP/2 one), else on a
    /// new one. A request that a reused connection could not take (it closed meanwhile) is
    /// sent on a new one. An upgrade over TLS takes a new HTTP/1.1 connection, since an
    /// idle one may speak HTTP/2.
    async fn send(
        self: &Arc<Self>,
        to: &To<'_>,
        mut request: Request<GatewayBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let key = to.key;
        loop {
            let idle = match to.alpn {
                Alpn::Http11 if to.upstream.scheme == "https" => None,
                _ if to.upstream.scheme == "https" => {
                    let now = Instant::now();
                    self.take(to.own_key, now).or_else(|| self.take(key, now))
                }
                _ => self.take(key, Instant::now()),
            };
            let (mut sender, reused) = match idle {
                Some(sender) => (sender, true),
                None => (self.connect_sender(to).await?, false),
            };
            // Other calls of this service may use a new HTTP/2 connection meanwhile (a
            // reused one is still in the pool, until its idle timeout from when it was
            // opened: then calls move to a new one).
            if !reused {
                if let Some(shared) = sender.shared() {
                    self.put(to.own_key, shared, Instant::now());
                }
            }
            sender.fit(&mut request, to.upstream);
            if let Err(err) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Other(err));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // An HTTP/2 connection is in the pool already.
                    let back = match sender {
                        Sender::Http1(_) => Some((self.clone(), key.clone(), sender)),
                        Sender::Http2(_) => None,
                    };
                    let pooled = PooledBody::new(body, back);
                    return Ok(Response::from_parts(parts, pooled));
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(SendError::Other(err.into_error())),
                },
            }
        }
    }
}

/// A response body from a pooled connection: once read to its end the connection goes back
/// to the pool; dropped before that, the connection is closed with it.
struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<Pool<Sender>>, Arc<str>, Sender)>,
}

impl PooledBody {
    fn new(inner: Incoming, back: Option<(Arc<Pool<Sender>>, Arc<str>, Sender)>) -> Self {
        let mut body = Self { inner, back };
        if body.inner.is_end_stream() {
            // No body to read (204, 304, HEAD, length 0): the connection is free now.
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((pool, authority, sender)) = self.back.take() {
            pool.put(&authority, sender, Instant::now());
        }
    }

    /// Keeps the connection out of the pool: it now carries an upgraded protocol.
    fn detach(&mut self) {
        self.back = None;
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        match &poll {
            // A body of known length is over with its last byte; the server may never poll
            // for the end.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_rules::Cidr;

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
            hops: 1,
            trace: None,
        };
        let rules = ClientHeaders::new(
            headers
                .get_all(header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
            http_rules::websocket_accept(&headers).is_some(),
        );
        assert_eq!(rules.upgrade(), upgrade);
        upstream_headers(headers, &rules, &forwarded)
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
        let trusted =
            ConnInfo::new(peer, false).trusting(&[Cidr::parse("10.0.0.0/24").expect("cidr")]);
        let h = rewritten_by(&pairs, Caller::Anonymous, false, &trusted);
        assert_eq!(
            values(&h, "x-forwarded-for"),
            ["203.0.113.7, 10.1.1.1, 10.0.0.5"]
        );
        let stranger =
            ConnInfo::new(peer, false).trusting(&[Cidr::parse("10.0.1.0/24").expect("cidr")]);
        let h = rewritten_by(&pairs, Caller::Anonymous, false, &stranger);
        assert_eq!(values(&h, "x-forwarded-for"), ["10.0.0.5"]);
    }

    #[test]
    fn upgrades_keep_their_headers_and_other_schemes_pass() {
        let h = rewritten(
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("sec-websocket-version", "13"),
                ("authorization", "Bearer model-token"),
            ],
            Caller::Anonymous,
            true,
        );
        assert_eq!(values(&h, "upgrade"), ["websocket"]);
        assert_eq!(
            values(&h, "sec-websocket-key"),
            ["dGhlIHNhbXBsZSBub25jZQ=="]
        );
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

    /// An upgrade to anything but WebSocket (`h2c` above all: after the upstream's 101 the
    /// connection would carry requests no gateway rule sees) goes on as an ordinary request.
    #[test]
    fn other_upgrades_are_dropped() {
        for (upgrade, connection) in [
            ("h2c", "Upgrade, HTTP2-Settings"),
            ("websocket, h2c", "upgrade"),
            // WebSocket without its key and version is no opening handshake.
            ("websocket", "upgrade"),
            ("TLS/1.2", "upgrade"),
        ] {
            let h = rewritten(
                &[
                    ("upgrade", upgrade),
                    ("connection", connection),
                    ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
                ],
                Caller::Anonymous,
                false,
            );
            for gone in ["upgrade", "connection", "http2-settings"] {
                assert!(!h.contains_key(gone), "{gone} passed with {upgrade}");
            }
        }
    }
}

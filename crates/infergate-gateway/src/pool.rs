//! Keep-alive HTTP/1.1 connections to upstreams. A call takes an idle connection of its
//! upstream (or opens one), sends on it, and the connection goes back to the pool when the
//! response body has been read to its end; a response abandoned half-way closes it. (The
//! HTTP/1.1 fast path keeps the connection of a client connection's last call with that
//! client connection, and hands it to the pool when the client leaves: see `h1`.)
//!
//! Built on `hyper::client::conn` directly: a call costs one uncontended lock to take a
//! connection and one to return it, with no dispatch task or pool checkout future between.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::GatewayBody;

type Sender = SendRequest<GatewayBody>;

/// A connection the pool can hold while idle.
pub trait Pooled: Send + 'static {
    /// Whether the peer closed it (or it is otherwise unusable) while idle.
    fn is_closed(&self) -> bool;
}

impl Pooled for Sender {
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: the upstream is down (or not resolvable).
    Connect(String),
    /// The request failed on an open connection.
    Other(hyper::Error),
}

struct Idle<C> {
    since: Instant,
    conn: C,
}

/// Idle connections by upstream authority, and when they were last swept for expired ones.
struct IdleSet<C> {
    by_authority: HashMap<String, Vec<Idle<C>>, foldhash::fast::RandomState>,
    swept: Instant,
}

/// Idle connections, by upstream.
pub struct Pool<C = Sender> {
    idle: Mutex<IdleSet<C>>,
    max_idle_per_upstream: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

impl<C: Pooled> Pool<C> {
    pub fn new(max_idle_per_upstream: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(IdleSet {
                by_authority: HashMap::default(),
                swept: Instant::now(),
            }),
            max_idle_per_upstream,
            idle_timeout,
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// The most recently used idle connection that is still open (`now`: the caller's
    /// reading of the clock).
    pub fn take(&self, authority: &str, now: Instant) -> Option<C> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.by_authority.get_mut(authority)?;
        while let Some(entry) = list.pop() {
            if self.still_fresh(entry.since, now) && !entry.conn.is_closed() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Whether a connection idle since `since` may still be used at `now`.
    pub fn still_fresh(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) < self.idle_timeout
    }

    /// Keeps `conn` for a later call, idle since `now` (which also dates the sweep of expired
    /// connections). Whether it is still open is checked when it is taken.
    pub fn put(&self, authority: &str, conn: C, now: Instant) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let entry = Idle { since: now, conn };
        let timeout = self.idle_timeout;
        if now.saturating_duration_since(idle.swept) >= timeout {
            // Upstreams no longer called keep no connection open past the idle timeout.
            idle.by_authority.retain(|_, list| {
                list.retain(|e| {
                    now.saturating_duration_since(e.since) < timeout && !e.conn.is_closed()
                });
                !list.is_empty()
            });
            idle.swept = now;
        }
        match idle.by_authority.get_mut(authority) {
            Some(list) => {
                // The oldest are at the front; drop those past the idle timeout.
                let expired = list
                    .iter()
                    .take_while(|e| now.saturating_duration_since(e.since) >= timeout)
                    .count();
                list.drain(..expired);
                if list.len() < self.max_idle_per_upstream {
                    list.push(entry);
                }
            }
            None => {
                idle.by_authority.insert(authority.to_owned(), vec![entry]);
            }
        }
    }

    /// A new TCP connection to `authority`; the error says why there is none.
    pub async fn connect_tcp(&self, authority: &str) -> Result<TcpStream, String> {
        let (host, port) =
            split_authority(authority).ok_or_else(|| format!("{authority} is not host:port"))?;
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| format!("connecting to {authority} timed out"))?
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Pool<Sender> {
    async fn connect(&self, authority: &str) -> Result<Sender, SendError> {
        let stream = self
            .connect_tcp(authority)
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(format!("handshake with {authority}: {e}")))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `request` to `authority`: on an idle connection, else on a new one. A request
    /// that a reused connection could not take (it closed meanwhile) is sent on a new one.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Arc<str>,
        mut request: Request<GatewayBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.take(authority, Instant::now()) {
                Some(sender) => (sender, true),
                None => (self.connect(authority).await?, false),
            };
            if let Err(err) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Other(err));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let pooled = PooledBody::new(body, self.clone(), authority.clone(), sender);
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

/// `host` (without IPv6 brackets) and port (80 when absent).
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), parsed.port_u16().unwrap_or(80)))
}

/// A response body from a pooled connection: once read to its end the connection goes back
/// to the pool; dropped before that, the connection is closed with it.
pub struct PooledBody {
    inner: Incoming,
    back: Option<(Arc<Pool>, Arc<str>, Sender)>,
}

impl PooledBody {
    fn new(inner: Incoming, pool: Arc<Pool>, authority: Arc<str>, sender: Sender) -> Self {
        let mut body = Self {
            inner,
            back: Some((pool, authority, sender)),
        };
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
    pub fn detach(&mut self) {
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
    use super::split_authority;

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            split_authority("127.0.0.1:9000"),
            Some(("127.0.0.1".into(), 9000))
        );
        assert_eq!(
            split_authority("model.internal"),
            Some(("model.internal".into(), 80))
        );
        assert_eq!(split_authority("[::1]:8080"), Some(("::1".into(), 8080)));
        assert_eq!(split_authority("bad host:1"), None);
    }
}

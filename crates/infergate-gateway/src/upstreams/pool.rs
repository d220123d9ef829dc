//! Idle keep-alive connections to upstreams, by authority, for both transports: each keeps
//! its own kind of connection (a hyper sender, a raw stream) in a pool of its own. A call
//! takes the most recent idle connection of its upstream (or opens one); the transport puts
//! it back once the response has been read to its end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infergate_core::net::UpstreamPolicy;
use tokio::net::TcpStream;

/// A connection the pool can hold while idle.
pub trait Pooled: Send + 'static {
    /// Whether the peer closed it (or it is otherwise unusable) while idle.
    fn is_closed(&self) -> bool;

    /// Another handle on a connection that carries many calls at once (HTTP/2): it stays
    /// in the pool while calls use it.
    fn shared(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
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
pub struct Pool<C> {
    idle: Mutex<IdleSet<C>>,
    max_idle_per_upstream: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    /// Where a new connection may lead.
    policy: Arc<UpstreamPolicy>,
}

impl<C: Pooled> Pool<C> {
    pub fn new(
        max_idle_per_upstream: usize,
        idle_timeout: Duration,
        policy: Arc<UpstreamPolicy>,
    ) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(IdleSet {
                by_authority: HashMap::default(),
                swept: Instant::now(),
            }),
            max_idle_per_upstream,
            idle_timeout,
            connect_timeout: Duration::from_secs(5),
            policy,
        })
    }

    /// The most recently used idle connection that is still open (`now`: the caller's
    /// reading of the clock); a shared one stays in the pool until the idle timeout from
    /// when it was put there, so no connection carries calls forever.
    pub fn take(&self, authority: &str, now: Instant) -> Option<C> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.by_authority.get_mut(authority)?;
        while let Some(entry) = list.last_mut() {
            if self.still_fresh(entry.since, now) && !entry.conn.is_closed() {
                if let Some(shared) = entry.conn.shared() {
                    return Some(shared);
                }
            }
            let entry = list.pop()?;
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

    /// A new TCP connection to `authority` (`default_port` when it names none), if the
    /// address it reached is one services may call (never this node's own listener); the
    /// error says why there is none, and whether this node ran out of something.
    pub async fn connect_tcp(
        &self,
        authority: &str,
        default_port: u16,
    ) -> Result<TcpStream, ConnectError> {
        let (host, port) = split_authority(authority, default_port)
            .ok_or_else(|| format!("{authority} is not host:port"))?;
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| format!("connecting to {authority} timed out"))?
        .map_err(|e| ConnectError::io(authority, &e))?;
        let (peer, local) = (stream.peer_addr(), stream.local_addr());
        let (peer, local) = peer
            .and_then(|p| local.map(|l| (p, l)))
            .map_err(|e| format!("connecting to {authority}: {e}"))?;
        self.policy
            .check_connection(&host, peer, local)
            .map_err(|why| format!("refused upstream: {why}"))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Why no connection to an upstream could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectError {
    pub why: String,
    /// What this node ran out of (file descriptors, memory, buffers), if that was it: the
    /// upstream is not to blame.
    pub local: Option<&'static str>,
}

impl ConnectError {
    /// A failure on the way to the upstream, or of the upstream.
    pub fn remote(why: String) -> Self {
        Self { why, local: None }
    }

    /// A failure to connect with `err`, local when it says this node ran out of something,
    /// or when this node cannot open a file either (a name's resolution fails with other
    /// errors when descriptors run out).
    fn io(authority: &str, err: &std::io::Error) -> Self {
        let local = local_resource(err).or_else(|| {
            std::fs::File::open("/dev/null")
                .err()
                .and_then(|e| local_resource(&e))
        });
        Self {
            why: format!("connecting to {authority}: {err}"),
            local,
        }
    }
}

impl From<String> for ConnectError {
    fn from(why: String) -> Self {
        Self::remote(why)
    }
}

/// The resource an error says this process or host ran out of: file descriptors
/// (EMFILE, ENFILE), memory (ENOMEM) or socket buffers (ENOBUFS).
pub(crate) fn local_resource(err: &std::io::Error) -> Option<&'static str> {
    match err.raw_os_error()? {
        libc::EMFILE | libc::ENFILE => Some("file_descriptors"),
        libc::ENOMEM => Some("memory"),
        libc::ENOBUFS => Some("socket_buffers"),
        _ => None,
    }
}

/// `host` (without IPv6 brackets) and port (`default_port` when absent).
pub(crate) fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), parsed.port_u16().unwrap_or(default_port)))
}

#[cfg(test)]
mod tests {
    use super::{local_resource, split_authority};

    #[test]
    fn running_out_of_descriptors_or_memory_is_this_nodes_limit() {
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(local_resource(&os(libc::EMFILE)), Some("file_descriptors"));
        assert_eq!(local_resource(&os(libc::ENFILE)), Some("file_descriptors"));
        assert_eq!(local_resource(&os(libc::ENOMEM)), Some("memory"));
        assert_eq!(local_resource(&os(libc::ENOBUFS)), Some("socket_buffers"));
        for upstreams in [
            libc::ECONNREFUSED,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ECONNRESET,
        ] {
            assert_eq!(local_resource(&os(upstreams)), None);
        }
        let other = std::io::Error::other("no errno");
        assert_eq!(local_resource(&other), None);
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            split_authority("127.0.0.1:9000", 80),
            Some(("127.0.0.1".into(), 9000))
        );
        assert_eq!(
            split_authority("model.internal", 80),
            Some(("model.internal".into(), 80))
        );
        assert_eq!(
            split_authority("model.internal", 443),
            Some(("model.internal".into(), 443))
        );
        assert_eq!(
            split_authority("[::1]:8080", 80),
            Some(("::1".into(), 8080))
        );
        assert_eq!(split_authority("bad host:1", 80), None);
    }
}

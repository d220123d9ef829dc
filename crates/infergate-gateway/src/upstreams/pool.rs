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
        let (stream, _) = self
            .connect_tcp_sending(authority, default_port, &[])
            .await?;
        Ok(stream)
    }

    /// [`Self::connect_tcp`], and as much of `first` (a request) as the kernel takes at
    /// once written on the new connection: how much, beside it. It is written as soon as
    /// the address is checked, not after a turn of the event loop reports the connection
    /// made: on loopback and nearby hosts the handshake is over when `connect` returns, and
    /// in a burst of new connections each turn waits behind every other connection's.
    /// The addresses a name resolves to are tried in turn; one the policy refuses ends it.
    pub async fn connect_tcp_sending(
        &self,
        authority: &str,
        default_port: u16,
        first: &[u8],
    ) -> Result<(TcpStream, usize), ConnectError> {
        let (host, port) = split_authority(authority, default_port)
            .ok_or_else(|| format!("{authority} is not host:port"))?;
        let connecting = async {
            let addrs = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ConnectError::io(authority, &e))?;
            let mut failed = None;
            for addr in addrs {
                match self.connect_addr(authority, &host, addr, first).await {
                    Ok(connected) => return Ok(connected),
                    Err(Refused::Policy(why)) => return Err(ConnectError::remote(why)),
                    Err(Refused::Io(e)) => failed = Some(e),
                }
            }
            Err(failed.map_or_else(
                || ConnectError::remote(format!("{authority} resolves to no address")),
                |e| ConnectError::io(authority, &e),
            ))
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| format!("connecting to {authority} timed out"))?
    }

    async fn connect_addr(
        &self,
        authority: &str,
        host: &str,
        addr: std::net::SocketAddr,
        first: &[u8],
    ) -> Result<(TcpStream, usize), Refused> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::from(libc::SOCK_STREAM | libc::SOCK_NONBLOCK),
            Some(Protocol::TCP),
        )?;
        let _ = socket.set_tcp_nodelay(true);
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        // The address is checked before a byte is written to it.
        let local = socket.local_addr()?.as_socket().ok_or_else(|| {
            std::io::Error::other(format!("connecting to {authority}: no local address"))
        })?;
        self.policy
            .check_connection(host, addr, local)
            .map_err(|why| Refused::Policy(format!("refused upstream: {why}")))?;
        // A connection still being made takes nothing yet (EAGAIN).
        let sent = if first.is_empty() {
            0
        } else {
            match socket.send_with_flags(first, libc::MSG_NOSIGNAL) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e.into()),
            }
        };
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
        if sent == 0 {
            // Made, or failed, once the socket is writable.
            stream.writable().await?;
            if let Some(e) = stream.take_error()? {
                return Err(e.into());
            }
        }
        Ok((stream, sent))
    }
}

/// Why one address of an upstream gave no connection.
enum Refused {
    /// The upstream policy refuses it: no other address is tried.
    Policy(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
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

    /// Holds nothing: the pool's connections do not matter to how it connects.
    struct Nothing;

    impl super::Pooled for Nothing {
        fn is_closed(&self) -> bool {
            false
        }
    }

    fn pool(policy: infergate_core::net::UpstreamPolicy) -> std::sync::Arc<super::Pool<Nothing>> {
        super::Pool::new(
            4,
            std::time::Duration::from_secs(60),
            std::sync::Arc::new(policy),
        )
    }

    /// A listener that hands back every byte its first connection received.
    async fn receiver() -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let authority = listener.local_addr().expect("address").to_string();
        let received = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            let _ = tcp.read_to_end(&mut got).await;
            got
        });
        (authority, received)
    }

    #[tokio::test]
    async fn a_new_connection_carries_the_request_as_it_is_made_and_the_rest_follows() {
        use tokio::io::AsyncWriteExt;
        let pool = pool(Default::default());
        // On loopback the handshake is over when connect returns: a request goes out whole.
        let (authority, received) = receiver().await;
        let request = b"GET /v1/models HTTP/1.1\r\nhost: model\r\n\r\n";
        let (tcp, sent) = pool
            .connect_tcp_sending(&authority, 80, request)
            .await
            .expect("connected");
        assert_eq!(sent, request.len());
        drop(tcp);
        assert_eq!(received.await.expect("receiver"), request);
        // More than the socket takes at once: the rest is written after, in order.
        let (authority, received) = receiver().await;
        let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let (mut tcp, sent) = pool
            .connect_tcp_sending(&authority, 80, &big)
            .await
            .expect("connected");
        assert!(sent < big.len(), "{sent} bytes taken at once");
        tcp.write_all(&big[sent..]).await.expect("the rest");
        tcp.shutdown().await.expect("shutdown");
        assert!(
            received.await.expect("receiver") == big,
            "bytes lost or out of order"
        );
    }

    #[tokio::test]
    async fn an_address_the_policy_refuses_gets_no_byte_and_a_closed_port_is_the_upstreams_fault() {
        use infergate_core::net::{AllowedHost, UpstreamPolicy};
        let request = b"POST /v1/chat HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}";
        // This node's own listener (a call would loop), and one not in upstream_allow.
        let (authority, received) = receiver().await;
        let own = UpstreamPolicy {
            own: vec![authority.parse().expect("address")],
            ..Default::default()
        };
        let err = pool(own)
            .connect_tcp_sending(&authority, 80, request)
            .await
            .expect_err("refused");
        assert!(err.why.contains("would loop"), "{}", err.why);
        assert_eq!(err.local, None);
        assert_eq!(received.await.expect("receiver"), b"");
        let (authority, received) = receiver().await;
        let elsewhere = UpstreamPolicy {
            allow: vec![AllowedHost::parse("10.0.0.0/8").expect("network")],
            ..Default::default()
        };
        let err = pool(elsewhere)
            .connect_tcp_sending(&authority, 80, request)
            .await
            .expect_err("refused");
        assert!(err.why.contains("not in upstream_allow"), "{}", err.why);
        assert_eq!(received.await.expect("receiver"), b"");
        // A port nobody listens on: the upstream's failure, not this node's limit.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let authority = closed.local_addr().expect("address").to_string();
        drop(closed);
        let err = pool(Default::default())
            .connect_tcp_sending(&authority, 80, request)
            .await
            .expect_err("refused");
        assert!(
            err.why.starts_with(&format!("connecting to {authority}")),
            "{}",
            err.why
        );
        assert_eq!(err.local, None);
    }
}

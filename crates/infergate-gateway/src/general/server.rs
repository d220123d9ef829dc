//! Listeners: an accept loop serving HTTP/1.1 and HTTP/2 (h2c in the clear, ALPN over TLS)
//! with upgrades, optional TLS whose certificate is re-read when its files change or on
//! SIGHUP (new connections get the new certificate, open ones are not touched), and a
//! graceful shutdown that stops accepting and lets in-flight calls finish (bounded).

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use super::head_guard::HeadGuard;
use crate::body::{BoxError, ClientBody, IdleTimeout};
use crate::http_rules::{self, ConnInfo};
use crate::{fast, Gateway, ListenerSettings};

/// A certificate and key read from PEM files, re-read when they change.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    /// Makes the session tickets a client resumes with (no full handshake); its keys
    /// rotate on their own and outlive a certificate reload.
    tickets: Arc<dyn rustls::server::ProducesTickets>,
    config: ArcSwap<rustls::ServerConfig>,
    stamp: std::sync::Mutex<Option<(SystemTime, SystemTime)>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load_config(
    cert: &Path,
    key: &Path,
    tickets: &Arc<dyn rustls::server::ProducesTickets>,
) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("reading {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(server_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = tickets.clone();
    // The server's order of suites decides, not the client's (most list AES-256 first).
    config.ignore_client_order = true;
    Ok(config)
}

/// *ring*'s suites, AES-128-GCM with SHA-256 first (TLS 1.3's mandatory suite, and what
/// Go's servers prefer): ring hashes SHA-256 with the CPU's SHA extensions, but SHA-384
/// (the AES-256 suites' hash) in portable code on AMD CPUs, which made it a tenth of a
/// handshake's time there. Every suite stays on offer.
fn server_provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

impl TlsFiles {
    /// Reads the files once; an error here stops the start.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Arc<Self>, String> {
        let (cert, key) = (cert.into(), key.into());
        let tickets = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| format!("making session tickets: {e}"))?;
        let config = load_config(&cert, &key, &tickets)?;
        Ok(Arc::new(Self {
            tickets,
            stamp: std::sync::Mutex::new(modified(&cert).zip(modified(&key))),
            cert,
            key,
            config: ArcSwap::from_pointee(config),
        }))
    }

    /// Re-reads the files; a broken pair is logged and the current certificate kept.
    pub fn reload(&self) -> bool {
        match load_config(&self.cert, &self.key, &self.tickets) {
            Ok(config) => {
                self.config.store(Arc::new(config));
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "TLS certificate reload failed; keeping the current one");
                false
            }
        }
    }

    fn changed(&self) -> bool {
        let now = modified(&self.cert).zip(modified(&self.key));
        let Ok(mut stamp) = self.stamp.lock() else {
            return false;
        };
        if *stamp != now {
            *stamp = now;
            return true;
        }
        false
    }

    /// Watches the files (every second) and SIGHUP, reloading on either.
    pub fn watch(self: &Arc<Self>) {
        let files = self.clone();
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let signalled = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await.is_some(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tick.tick() => {
                        if files.changed() {
                            // Let a writer finish both files before reading them.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            files.changed();
                            files.reload();
                        }
                    }
                    true = signalled => { files.reload(); }
                }
            }
        });
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

/// The metrics of a listener's connections.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Option<prometheus::IntGauge>,
    /// Connections closed at once because the listener had `max_connections` open.
    pub refused: Option<prometheus::IntCounter>,
}

/// Counts a connection among the listener's open ones (and in the gauge) while it lives.
struct OpenConnection {
    gauge: Option<prometheus::IntGauge>,
    count: Arc<AtomicUsize>,
}

impl OpenConnection {
    /// `None` when `max` connections are open already.
    fn admit(
        count: &Arc<AtomicUsize>,
        max: usize,
        gauge: Option<prometheus::IntGauge>,
    ) -> Option<Self> {
        let admitted = count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            return None;
        }
        if let Some(g) = &gauge {
            g.inc();
        }
        Some(Self {
            gauge,
            count: count.clone(),
        })
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        if let Some(g) = &self.gauge {
            g.dec();
        }
    }
}

/// Serves every connection of `listener` with the service `make` builds for it, until
/// `shutdown` resolves; then waits up to `grace` for open connections. With `fast`,
/// HTTP/1.1 connections (plain TCP, or TLS without `h2` chosen) start on that gateway's
/// fast path and reach `make`'s service only for what the fast path does not take.
/// `settings` bound how long a client may take over a head or a body and how many may be
/// connected.
#[allow(clippy::too_many_arguments)]
pub async fn serve_with<M, S, B>(
    listener: TcpListener,
    tls: Option<Arc<TlsFiles>>,
    fast: Option<Arc<Gateway>>,
    make: M,
    grace: Duration,
    settings: ListenerSettings,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: hyper::service::Service<http::Request<ClientBody>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's head timer runs from when it waits for a head; the guard hands it only whole
    // heads (keeping the header timeout itself), so to hyper this is the idle time allowed
    // between requests: the fast path's.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(fast::IDLE);
    // HTTP/2 has no head to time: a client that stops answering (one that sent its preface
    // and nothing since, among them) is found by a ping it must answer within the header
    // timeout, and its connection closed.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(settings.header_timeout))
        .keep_alive_timeout(settings.header_timeout);
    let open_count = Arc::new(AtomicUsize::new(0));
    let header_timeout = settings.header_timeout;
    let body_idle = settings.body_idle_timeout;
    let graceful = GracefulShutdown::new();
    // What a connection handed to the general server needs, shared by every connection.
    let general = Arc::new((builder, make));
    // Tells fast-path connections to close once their call is answered.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(open) = OpenConnection::admit(&open_count, settings.max_connections, metrics.open.clone()) else {
                    // Over the cap: closed at once, before any byte is read.
                    drop(stream);
                    if let Some(refused) = &metrics.refused {
                        refused.inc();
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let info = ConnInfo::new(remote, tls.is_some()).trusting(&settings.trusted_proxies);
                // The general server's service and connection are made only for a
                // connection the fast path hands over: most never are.
                let general = general.clone();
                let watcher = graceful.watcher();
                match &tls {
                    None => {
                        let fast = fast.clone();
                        let mut stopping = stopping.clone();
                        tokio::spawn(async move {
                            let _open = open;
                            let Some(io) = http1_first(stream, fast, &info, &mut stopping, header_timeout).await else {
                                return;
                            };
                            let (builder, make) = &*general;
                            let service = general_service(make(info), body_idle);
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                            // Allocated once the fast path hands the connection over: a
                            // fast-path connection's task holds none of it.
                            if let Err(err) = Box::pin(watcher.watch(connection)).await {
                                tracing::debug!(error = %err, "connection ended with an error");
                            }
                        });
                    }
                    Some(files) => {
                        let acceptor = files.acceptor();
                        let handshake = settings.header_timeout;
                        let fast = fast.clone();
                        let mut stopping = stopping.clone();
                        tokio::spawn(async move {
                            let _open = open;
                            let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(err)) => {
                                    tracing::debug!(error = %err, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            };
                            // HTTP/2 (chosen by ALPN) goes to hyper; HTTP/1.1 starts on the
                            // fast path, as in the clear.
                            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                            let fast = fast.filter(|_| !h2);
                            let Some(io) = http1_first(stream, fast, &info, &mut stopping, header_timeout).await else {
                                return;
                            };
                            let (builder, make) = &*general;
                            let service = general_service(make(info), body_idle);
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                            if let Err(err) = Box::pin(watcher.watch(connection)).await {
                                tracing::debug!(error = %err, "connection ended with an error");
                            }
                        });
                    }
                }
                // One connection per turn: the connections already open go on between two
                // accepts, so a burst of new ones does not hold back the calls under way.
                tokio::task::yield_now().await;
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Fast-path connections hold a watcher too, so this waits for them as well.
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight calls did not finish within the shutdown grace period");
    }
}

/// The general server's service for one connection: `inner`, its bodies read under the body
/// idle timeout, and a connection whose head asked to switch protocols closed after an
/// answer that does not switch.
fn general_service<S, B>(
    inner: S,
    body_idle: Duration,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<B>,
    Error = S::Error,
    Future = impl Future<Output = Result<http::Response<B>, S::Error>> + Send + 'static,
> + Send
       + 'static
where
    S: hyper::service::Service<http::Request<ClientBody>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body,
{
    service_fn(move |req: http::Request<Incoming>| {
        // What follows a head that asks to switch protocols is not checked as requests (see
        // the head guard): unless the answer switches, the connection ends with it.
        let switching = http_rules::asks_to_switch(
            req.method().as_str(),
            req.headers().keys().map(|name| name.as_str().as_bytes()),
        );
        let call = inner.call(req.map(|body| IdleTimeout::new(body, body_idle)));
        async move {
            let mut response = call.await?;
            if switching
                .is_some_and(|connect| !http_rules::switched(connect, response.status().as_u16()))
            {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        }
    })
}

/// Serves a new connection on the fast path of `fast` (when given) until it ends or hands
/// the connection over: then the head guard, holding the bytes read so far, that the
/// general server reads from. `None` once the fast path closed the connection.
async fn http1_first<S: fast::ClientIo>(
    stream: S,
    fast: Option<Arc<Gateway>>,
    info: &ConnInfo,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    header_timeout: Duration,
) -> Option<HeadGuard<S>> {
    let Some(gateway) = fast else {
        return Some(HeadGuard::new(stream, &[], header_timeout));
    };
    match fast::serve(&gateway, stream, info, stopping).await {
        fast::Ended::Closed => None,
        fast::Ended::Fallback { read, stream } => {
            Some(HeadGuard::new(stream, &read, header_timeout))
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<Arc<TlsFiles>>,
    shutdown: impl Future<Output = ()>,
) {
    let grace = gateway.settings.shutdown_grace;
    let settings = gateway.settings.listener.clone();
    let metrics = ConnectionMetrics {
        open: gateway.metrics().map(|m| m.open_connections.clone()),
        refused: gateway.metrics().map(|m| m.refused_connections.clone()),
    };
    let fast = gateway.settings.http1_fast_path.then(|| gateway.clone());
    let make = move |info: ConnInfo| {
        let gateway = gateway.clone();
        service_fn(move |req| {
            let gateway = gateway.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(gateway.handle(req, info).await) }
        })
    };
    serve_with(
        listener, tls, fast, make, grace, settings, metrics, shutdown,
    )
    .await;
}

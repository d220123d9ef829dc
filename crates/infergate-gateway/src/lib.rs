//! The data plane of infergate. A call goes through named phases, each a small function:
//! limits → route → select API by credential → authenticate → authorize → forward →
//! stream the response back.
//!
//! This crate reads only an `Arc<Snapshot>` (swapped atomically by the control plane); it
//! never touches the store or axum, and it never buffers a response body.
//!
//! Its files, one concern each: `phases` (what a call's head decides), `http_rules` (every
//! rule about headers, framing and paths), `upstreams` (selection, health, the attempt loop,
//! the pool), `observe` (metrics and the access log), and two transports that only read and
//! write bytes: `fast` (the HTTP/1.1 fast path) and `general` (hyper: HTTP/1, HTTP/2, TLS,
//! upgrades, the listener).

pub mod authn;
pub mod body;
pub mod error;
mod fast;
mod general;
mod http_rules;
mod observe;
mod phases;
mod throttle;
mod upstreams;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use infergate_core::lockout::KeyVerdicts;
use infergate_core::net::UpstreamPolicy;
use infergate_core::snapshot::Snapshot;

pub use crate::general::{serve, serve_with, ConnectionMetrics, TlsFiles};
pub use crate::http_rules::cors::CorsOrigins;
pub use crate::http_rules::{Cidr, ConnInfo};
pub use crate::observe::trace::{TraceSettings, Tracer};
pub use crate::observe::{metrics, Observers};
pub use crate::phases::{CallRecord, RequestId};
pub use crate::throttle::{ClusterLimits, ClusterMetrics, Dimension, RateLimitFields, Refusal};

use crate::metrics::GatewayMetrics;
use crate::phases::RequestIds;
use crate::upstreams::pool::Pool;
use crate::upstreams::Upstreams;

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
    /// Where upstream connections may lead (`upstream_allow`, never this node).
    pub upstream_policy: Arc<UpstreamPolicy>,
    /// Origins whose web pages may call the gateway and read its answers (the console's).
    pub cors: CorsOrigins,
    /// Idle connections kept per upstream (per transport); more are closed.
    pub upstream_keepalive: usize,
}

/// Idle connections kept per upstream unless configured (nginx's `keepalive` of a busy site).
pub const DEFAULT_UPSTREAM_KEEPALIVE: usize = 256;

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            ejection: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            require_https_for_app_code: false,
            http1_fast_path: true,
            listener: ListenerSettings::default(),
            upstream_policy: Arc::default(),
            cors: CorsOrigins::default(),
            upstream_keepalive: DEFAULT_UPSTREAM_KEEPALIVE,
        }
    }
}

/// What a listener allows its clients: how long they may take, how many may be connected,
/// and whose forwarding headers are believed.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// A request head must arrive whole within this time of its first byte (and a
    /// connection's first head within this time of the connection).
    pub header_timeout: Duration,
    /// A request body may pause this long between two reads.
    pub body_idle_timeout: Duration,
    /// Open connections beyond this are accepted and closed at once.
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` chain is kept (and appended to).
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The gateway: shared by every connection.
/// What a gateway may work with beside its snapshot and settings.
#[derive(Default)]
pub struct Collaborators {
    /// Where verdicts on IAM signatures go, so failures lock keys cluster-wide.
    pub key_verdicts: Option<Arc<dyn KeyVerdicts>>,
    /// Throttling counts shared with other nodes (else each node counts alone).
    pub shared_limits: Option<Arc<ClusterLimits>>,
}

pub struct Gateway {
    snapshots: Arc<ArcSwap<Snapshot>>,
    settings: GatewaySettings,
    upstreams: Upstreams,
    /// Idle upstream connections of the fast path, and of the general server.
    fast_pool: Arc<Pool<fast::UpstreamConn>>,
    general_pool: Arc<Pool<general::Sender>>,
    /// TLS to `https://` upstreams.
    upstream_tls: upstreams::tls::UpstreamTls,
    ids: RequestIds,
    /// Shared with every response body still streaming.
    observers: Arc<Observers>,
    /// Where verdicts on IAM signatures go, so failures lock keys cluster-wide.
    key_verdicts: Option<Arc<dyn KeyVerdicts>>,
    /// The counts of throttled APIs' calls on this node.
    counters: Arc<throttle::Counters>,
    /// The counts shared with other nodes through Redis, when configured.
    cluster: Option<Arc<ClusterLimits>>,
}

impl Gateway {
    pub fn new(
        snapshots: Arc<ArcSwap<Snapshot>>,
        settings: GatewaySettings,
        observers: Observers,
    ) -> Arc<Self> {
        Self::with(snapshots, settings, observers, Collaborators::default())
    }

    /// The gateway with the collaborators a node has.
    pub fn with(
        snapshots: Arc<ArcSwap<Snapshot>>,
        settings: GatewaySettings,
        observers: Observers,
        collaborators: Collaborators,
    ) -> Arc<Self> {
        Arc::new(Self {
            upstreams: Upstreams::new(settings.ejection),
            fast_pool: Pool::new(
                settings.upstream_keepalive,
                Duration::from_secs(90),
                settings.upstream_policy.clone(),
            ),
            general_pool: Pool::new(
                settings.upstream_keepalive,
                Duration::from_secs(90),
                settings.upstream_policy.clone(),
            ),
            upstream_tls: Default::default(),
            snapshots,
            settings,
            ids: RequestIds::new(),
            observers: Arc::new(observers),
            key_verdicts: collaborators.key_verdicts,
            counters: Arc::default(),
            cluster: collaborators.shared_limits,
        })
    }

    pub fn metrics(&self) -> Option<&GatewayMetrics> {
        self.observers.metrics.as_ref()
    }
}

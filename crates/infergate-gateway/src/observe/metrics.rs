//! Prometheus metrics of the data plane. Label values are ids from the configuration,
//! fixed reason words, method classes and status codes: never user input.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The gateway's metrics, registered in the process registry.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: IntCounterVec,
    pub auth_failures: IntCounterVec,
    /// Calls refused by a throttling policy, by API, app, policy and dimension.
    pub throttled: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    /// Tokens of model calls, by API, app and kind (prompt, completion, reasoning, cached,
    /// estimated).
    pub tokens: IntCounterVec,
    pub open_connections: IntGauge,
    /// Connections closed at once because the listener was at its cap.
    pub refused_connections: IntCounter,
    pub in_flight: IntGauge,
    /// 1 while an upstream passes its service's health checks, 0 while it is out of
    /// rotation; by service and upstream.
    pub upstream_healthy: IntGaugeVec,
    /// Spans of traced calls, by outcome: exported, queue_full, export_failed.
    pub trace_spans: IntCounterVec,
    /// Calls answered 503 because this node ran out of a resource while connecting to an
    /// upstream, by resource (file_descriptors, memory, socket_buffers).
    pub local_limits: IntCounterVec,
    /// Client connections of the fast path that hold buffers or an upstream connection (a
    /// connection idle past a moment gives them back).
    pub holding_connections: IntGauge,
    /// Tells these metrics from another set's in the per-thread cache of handles.
    id: u64,
}

/// Where the ids of metric sets come from.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A metric's handle for the label values it was last used with.
struct Cached<M> {
    owner: u64,
    labels: Vec<String>,
    handle: M,
}

/// The handles this thread used last: consecutive calls to the same API from the same app
/// (the usual case) skip the label lookup of the metric vectors.
struct Recent {
    duration: Option<Cached<Histogram>>,
    upstream: Option<Cached<Histogram>>,
    requests: Option<Cached<IntCounter>>,
    /// One per kind of [`TOKEN_KINDS`].
    tokens: [Option<Cached<IntCounter>>; 5],
}

impl Recent {
    const EMPTY: Recent = Recent {
        duration: None,
        upstream: None,
        requests: None,
        tokens: [None, None, None, None, None],
    };
}

/// The `kind` labels of `infergate_gateway_tokens_total`.
pub const TOKEN_KINDS: [&str; 5] = ["prompt", "completion", "reasoning", "cached", "estimated"];

thread_local! {
    static RECENT: RefCell<Recent> = const { RefCell::new(Recent::EMPTY) };
}

/// Uses the handle of `labels` in `slot` (looked up with `lookup` when the slot holds
/// another's).
fn with_cached<M>(
    slot: &mut Option<Cached<M>>,
    owner: u64,
    labels: &[&str],
    lookup: impl FnOnce(&[&str]) -> M,
    apply: impl FnOnce(&M),
) {
    let hit = slot.as_ref().is_some_and(|c| {
        c.owner == owner
            && c.labels.len() == labels.len()
            && c.labels.iter().zip(labels).all(|(a, b)| a == b)
    });
    if !hit {
        *slot = Some(Cached {
            owner,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            handle: lookup(labels),
        });
    }
    if let Some(cached) = slot {
        apply(&cached.handle);
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl GatewayMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "infergate_gateway_requests_total",
                "Calls answered, by API, app, method and status.",
            ),
            &["api", "app", "method", "status"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "infergate_gateway_auth_failures_total",
                "Calls refused by authentication or authorization, by reason.",
            ),
            &["reason"],
        )?;
        let throttled = IntCounterVec::new(
            Opts::new(
                "infergate_gateway_throttled_total",
                "Calls refused by a throttling policy, by API, app, policy and the limit reached.",
            ),
            &["api", "app", "policy", "dimension"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "infergate_gateway_request_duration_seconds",
                "Whole call, until the response head.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["api"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "infergate_gateway_upstream_duration_seconds",
                "Upstream part: request sent to response head.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["upstream"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "infergate_gateway_upstream_errors_total",
                "Upstream failures, by upstream and kind (connect, timeout, status: an answer that moved the call on, other).",
            ),
            &["upstream", "kind"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "infergate_gateway_tokens_total",
                "Tokens of model calls as their upstreams reported them, by API, app and kind: \
                 prompt, completion (reasoning and cached are parts of those), and estimated \
                 (the total of calls whose usage was not reported).",
            ),
            &["api", "app", "kind"],
        )?;
        let open_connections = IntGauge::new(
            "infergate_gateway_open_connections",
            "Client connections open.",
        )?;
        let refused_connections = IntCounter::new(
            "infergate_gateway_refused_connections_total",
            "Client connections closed at once because max_connections were open.",
        )?;
        let in_flight = IntGauge::new(
            "infergate_gateway_in_flight_requests",
            "Calls being served.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(throttled.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(refused_connections.clone()))?;
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "infergate_upstream_healthy",
                "1 while an upstream passes its service's active health checks, 0 while it is out of rotation.",
            ),
            &["service", "upstream"],
        )?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(upstream_healthy.clone()))?;
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "infergate_trace_spans_total",
                "Spans of traced calls, by outcome: exported, queue_full (dropped at once), export_failed.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(trace_spans.clone()))?;
        let local_limits = IntCounterVec::new(
            Opts::new(
                "infergate_gateway_local_limits_total",
                "Calls answered 503 because this node ran out of a resource while connecting to an upstream (the upstream is not ejected), by resource.",
            ),
            &["resource"],
        )?;
        let holding_connections = IntGauge::new(
            "infergate_gateway_holding_connections",
            "Client connections of the fast path holding buffers or an upstream connection; one idle for a moment gives them back.",
        )?;
        registry.register(Box::new(local_limits.clone()))?;
        registry.register(Box::new(holding_connections.clone()))?;
        Ok(Self {
            requests,
            auth_failures,
            throttled,
            duration,
            upstream_duration,
            upstream_errors,
            tokens,
            open_connections,
            refused_connections,
            in_flight,
            upstream_healthy,
            trace_spans,
            local_limits,
            holding_connections,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Runs `f` on this thread's cache (or, were it in use, on an empty one).
    fn recent(&self, f: impl FnOnce(&mut Recent)) {
        RECENT.with(|recent| match recent.try_borrow_mut() {
            Ok(mut recent) => f(&mut recent),
            Err(_) => {
                let mut empty = Recent::EMPTY;
                f(&mut empty)
            }
        });
    }

    /// A call's time to its response head.
    pub fn observe_duration(&self, api: &str, seconds: f64) {
        self.recent(|r| {
            with_cached(
                &mut r.duration,
                self.id,
                &[api],
                |l| self.duration.with_label_values(l),
                |h| h.observe(seconds),
            );
        });
    }

    /// An upstream's time from request sent to response head.
    pub fn observe_upstream(&self, upstream: &str, seconds: f64) {
        self.recent(|r| {
            with_cached(
                &mut r.upstream,
                self.id,
                &[upstream],
                |l| self.upstream_duration.with_label_values(l),
                |h| h.observe(seconds),
            );
        });
    }

    /// Counts an answered call.
    /// Adds `n` tokens of `TOKEN_KINDS[kind]` to an API's and app's count.
    pub fn count_tokens(&self, api: &str, app: &str, kind: usize, n: u64) {
        let Some(name) = TOKEN_KINDS.get(kind) else {
            return;
        };
        self.recent(|r| {
            with_cached(
                &mut r.tokens[kind],
                self.id,
                &[api, app, name],
                |l| self.tokens.with_label_values(l),
                |counter| counter.inc_by(n),
            );
        });
    }

    pub fn count_request(&self, api: &str, app: &str, method: &str, status: &str) {
        self.recent(|r| {
            with_cached(
                &mut r.requests,
                self.id,
                &[api, app, method, status],
                |l| self.requests.with_label_values(l),
                IntCounter::inc,
            );
        });
    }
}

/// The method as a bounded label: the standard methods, else `OTHER`.
pub fn method_class(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_into_their_own_set_and_labels() {
        let (ra, rb) = (Registry::new(), Registry::new());
        let a = GatewayMetrics::new(&ra).expect("metrics");
        let b = GatewayMetrics::new(&rb).expect("metrics");
        for (m, api, status) in [
            (&a, "api1", "200"),
            (&a, "api1", "200"),
            (&b, "api1", "200"),
            (&a, "api2", "200"),
            (&a, "api1", "500"),
            (&a, "api1", "200"),
        ] {
            m.count_request(api, "app", "GET", status);
            m.observe_duration(api, 0.25);
            m.observe_upstream(status, 0.5);
        }
        let count = |m: &GatewayMetrics, api, status| {
            m.requests
                .with_label_values(&[api, "app", "GET", status])
                .get()
        };
        assert_eq!(count(&a, "api1", "200"), 3);
        assert_eq!(count(&a, "api2", "200"), 1);
        assert_eq!(count(&a, "api1", "500"), 1);
        assert_eq!(count(&b, "api1", "200"), 1);
        assert_eq!(count(&b, "api2", "200"), 0);
        let observed = |h: &HistogramVec, label| h.with_label_values(&[label]).get_sample_count();
        assert_eq!(observed(&a.duration, "api1"), 4);
        assert_eq!(observed(&a.duration, "api2"), 1);
        assert_eq!(observed(&b.duration, "api1"), 1);
        assert_eq!(observed(&a.upstream_duration, "200"), 4);
        assert_eq!(observed(&a.upstream_duration, "500"), 1);
        assert_eq!(observed(&b.upstream_duration, "200"), 1);
    }
}

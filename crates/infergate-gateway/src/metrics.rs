//! Prometheus metrics of the data plane. Label values are ids from the configuration,
//! fixed reason words, method classes and status codes: never user input.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The gateway's metrics, registered in the process registry.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub open_connections: IntGauge,
    pub in_flight: IntGauge,
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
                "Upstream failures, by upstream and kind (connect, timeout, other).",
            ),
            &["upstream", "kind"],
        )?;
        let open_connections = IntGauge::new(
            "infergate_gateway_open_connections",
            "Client connections open.",
        )?;
        let in_flight = IntGauge::new(
            "infergate_gateway_in_flight_requests",
            "Calls being served.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            requests,
            auth_failures,
            duration,
            upstream_duration,
            upstream_errors,
            open_connections,
            in_flight,
        })
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

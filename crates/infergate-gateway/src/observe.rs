//! What the gateway reports about its calls: the metrics of each phase and one access-log
//! line per call. Both transports report through [`Observers`]; neither formats a record
//! itself.

pub mod metrics;
pub mod trace;

use std::sync::Arc;
use std::time::{Duration, Instant};

use infergate_core::logsink::LogSink;
use infergate_core::snapshot::Upstream;

use crate::authn::Caller;
use crate::phases::CallRecord;
use crate::usage::UsageBook;
use metrics::GatewayMetrics;

/// Where the gateway reports what it did: metrics and the access log, both optional.
#[derive(Clone, Default)]
pub struct Observers {
    pub metrics: Option<GatewayMetrics>,
    pub access_log: Option<Arc<LogSink>>,
    /// Where calls (by answer) and model calls' tokens are summed per minute for the store.
    pub usage: Option<Arc<UsageBook>>,
    /// Where calls' spans go, when tracing is on.
    pub tracer: Option<Arc<trace::Tracer>>,
}

impl Observers {
    /// Counts a call in flight (until [`Observers::finish`]).
    pub(crate) fn start(&self) {
        if let Some(m) = &self.metrics {
            m.in_flight.inc();
        }
    }

    /// Whether anything reads a record's target (only the access log does).
    pub(crate) fn logs_targets(&self) -> bool {
        self.access_log.is_some()
    }

    /// Counts a finished call and writes its access-log line.
    pub(crate) fn finish(&self, record: &CallRecord, status: u16, bytes_out: u64) {
        if let Some(reserved) = &record.reservation {
            reserved.settle_with(record.usage.as_ref());
        }
        let app = match &record.caller {
            Some(Caller::App { app_id }) => Some(app_id),
            _ => None,
        };
        if let Some(m) = &self.metrics {
            m.in_flight.dec();
            let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            let api = record.api_id.as_deref().unwrap_or("none");
            let app = app.map_or("", |a| a);
            m.count_request(
                api,
                app,
                metrics::method_class(&record.method),
                status.as_str(),
            );
            if let Some(usage) = &record.usage {
                // By their place in `metrics::TOKEN_KINDS`.
                let counts = if usage.estimated {
                    [0, 0, 0, 0, usage.total]
                } else {
                    [
                        usage.prompt,
                        usage.completion,
                        usage.reasoning,
                        usage.cached,
                        0,
                    ]
                };
                for (kind, n) in counts.into_iter().enumerate() {
                    if n > 0 {
                        m.count_tokens(api, app, kind, n);
                    }
                }
            }
        }
        if let (Some(book), Some(project), Some(api)) =
            (&self.usage, &record.project_id, &record.api_id)
        {
            // The minute the call began in: no reading of the clock.
            let began = record
                .began
                .unwrap_or_else(|| crate::phases::wall_time(record.started));
            let minute = began.timestamp().div_euclid(60);
            book.record((project, app, api), minute, status, record.usage.as_ref());
        }
        if let Some(sink) = &self.access_log {
            sink.emit(access_line(record, status, bytes_out));
        }
        if let Some(tracer) = &self.tracer {
            tracer.finish(record, status);
        }
    }

    /// Records the time to the response head, which came at `now`.
    pub(crate) fn response_head(&self, record: &CallRecord, now: Instant) {
        if let Some(m) = &self.metrics {
            let api = record.api_id.as_deref().unwrap_or("none");
            let took = now.saturating_duration_since(record.started);
            m.observe_duration(api, took.as_secs_f64());
        }
    }

    /// Counts a refusal (by its authentication reason, when it has one) and logs it at debug
    /// level.
    pub(crate) fn refused(&self, err: &crate::error::GatewayError, record: &mut CallRecord) {
        if let Some(reason) = err.auth_reason() {
            record.auth = reason;
            if let Some(m) = &self.metrics {
                m.auth_failures.with_label_values(&[reason]).inc();
            }
        }
        if let (crate::error::GatewayError::Throttled(over), Some(m)) = (err, &self.metrics) {
            let app = match &record.caller {
                Some(crate::authn::Caller::App { app_id }) => app_id.as_ref(),
                _ => "",
            };
            let api = record.api_id.as_deref().unwrap_or("");
            m.throttled
                .with_label_values(&[api, app, &over.policy_id, over.dimension.as_str()])
                .inc();
        }
        if let crate::error::GatewayError::Throttled(over) = err {
            // The access log says which limit refused the call.
            record.auth = over.dimension.refusal(over.unit);
        }
        tracing::debug!(request_id = %record.request_id, reason = err.reason(), "call refused");
    }

    /// Records how long `upstream` took to answer with a response head, which came at `now`.
    pub(crate) fn upstream_answered(
        &self,
        record: &mut CallRecord,
        upstream: &Upstream,
        sent_at: Instant,
        now: Instant,
    ) {
        let elapsed = now.saturating_duration_since(sent_at);
        record.upstream_ms = Some(millis(elapsed));
        if let Some(m) = &self.metrics {
            m.observe_upstream(&upstream.authority, elapsed.as_secs_f64());
        }
    }

    /// Records a failed attempt on an upstream, sent at `sent_at`, by `kind` of failure.
    pub(crate) fn upstream_failed(
        &self,
        record: &mut CallRecord,
        authority: &str,
        sent_at: Instant,
        kind: &str,
    ) {
        record.upstream_ms = Some(millis(sent_at.elapsed()));
        self.upstream_error(authority, kind);
    }

    /// Counts a call this node could not make for want of `resource`.
    pub(crate) fn local_limit(&self, resource: &str) {
        if let Some(m) = &self.metrics {
            m.local_limits.with_label_values(&[resource]).inc();
        }
    }

    /// Counts an upstream error of `kind`.
    pub(crate) fn upstream_error(&self, authority: &str, kind: &str) {
        if let Some(m) = &self.metrics {
            m.upstream_errors
                .with_label_values(&[authority, kind])
                .inc();
        }
    }
}

/// Milliseconds with microsecond precision, for the access log.
fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One JSON line of the access log. It never holds a credential, token, signature or query
/// value.
fn access_line(record: &CallRecord, status: u16, bytes_out: u64) -> String {
    let (app_id, user_id) = match &record.caller {
        Some(Caller::App { app_id }) => (Some(&**app_id), None),
        Some(Caller::User { user_id }) => (None, Some(&**user_id)),
        _ => (None, None),
    };
    serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "kind": "call",
        "request_id": record.request_id.as_str(),
        "api_id": record.api_id.as_deref(),
        "app_id": app_id,
        "user_id": user_id,
        "method": record.method.as_str(),
        "path": record.target,
        "status": status,
        "bytes_in": record.bytes_in,
        "bytes_out": bytes_out,
        "total_ms": millis(record.started.elapsed()),
        "upstream": record.upstream.as_deref(),
        "upstream_ms": record.upstream_ms,
        "auth": record.auth,
        "tokens": record.usage.as_ref().map(|u| serde_json::json!({
            "prompt": u.prompt,
            "completion": u.completion,
            "total": u.total,
            "reasoning": u.reasoning,
            "cached": u.cached,
            "estimated": u.estimated,
        })),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_keep_microseconds() {
        assert_eq!(millis(Duration::from_micros(1_234_567)), 1234.567);
    }
}

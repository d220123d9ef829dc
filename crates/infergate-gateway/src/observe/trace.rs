//! Tracing by W3C Trace Context, exported to an OpenTelemetry collector over OTLP/HTTP.
//!
//! Each call continues the trace of the client's `traceparent` (or starts one) with a span of
//! its own, kind SERVER, from its first byte to its answer's last; the upstream receives a
//! `traceparent` whose parent is that span. A call that a trusted proxy marked sampled is
//! sampled; a new trace is sampled when its id falls under the sampling ratio (as
//! OpenTelemetry's parent-based, trace-id-ratio sampler decides). Any other client's trace
//! is continued but sampled by a draw of the gateway's own under the ratio: no stranger
//! makes the gateway record and export a span of every call it sends. Finished spans go into a
//! bounded queue (a full queue drops the span, counted; a call never waits) and a task of
//! their own sends them in batches, protobuf-encoded, to the collector. Off (no tracer),
//! nothing of this runs.

use std::sync::Arc;
use std::time::Duration;

use infergate_core::snapshot::ApiRoute;
use infergate_sign::HeaderSource;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::authn::Caller;
use crate::phases::CallRecord;

/// Spans waiting for export; more are dropped.
const QUEUE: usize = 8192;
/// Spans in one export.
const MAX_BATCH: usize = 512;
/// The longest a span waits for others to fill its batch.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// How often a gathering batch looks at the queue.
const GATHER_TICK: Duration = Duration::from_millis(20);
/// The longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a path a span keeps.
const MAX_PATH: usize = 512;

/// How calls are traced.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// Where spans are sent: the collector's OTLP/HTTP traces URL (`…/v1/traces`).
    pub endpoint: String,
    /// The share of new traces that are sampled, 0 to 1.
    pub sampling_ratio: f64,
    /// `service.name` of the spans' resource.
    pub service_name: String,
}

/// The trace a call takes part in.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The call's own span.
    pub span_id: [u8; 8],
    /// The client's span, when it sent a valid `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// Where and from whom a sampled call came, for the span's attributes.
    pub(crate) path: String,
    pub(crate) api: Option<Arc<ApiRoute>>,
    /// The peer's address, as written once for its connection.
    pub(crate) client: Option<http::HeaderValue>,
    pub(crate) https: bool,
}

impl TraceContext {
    /// Notes the path (its first [`MAX_PATH`] bytes) of a sampled call.
    pub(crate) fn set_path(&mut self, path: &str) {
        if self.sampled {
            let mut end = path.len().min(MAX_PATH);
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            self.path = path[..end].to_owned();
        }
    }
}

/// A `traceparent` as W3C Trace Context reads it: (trace id, parent span id, sampled).
pub type Parent = ([u8; 16], [u8; 8], bool);

/// The trace context of a request's `traceparent` lines: exactly one, of version `00`
/// (exactly 55 bytes) or a later version (55 bytes, then `-` and more), lowercase hex, ids
/// not all zero, version not `ff`. Anything else is no parent: the trace starts here.
pub fn parse_traceparent<'v>(mut lines: impl Iterator<Item = &'v [u8]>) -> Option<Parent> {
    let value = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let value = value.trim_ascii();
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    if value.len() > 55 && value[55] != b'-' {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, byte) in trace_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut span_id = [0u8; 8];
    for (i, byte) in span_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some((trace_id, span_id, flags & 1 == 1))
}

/// Two lowercase hex digits as a byte.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

#[cfg(test)]
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// What a traced call's upstream receives of its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceHeader {
    /// The `traceparent`: this trace, the call's span as parent.
    value: [u8; 55],
    /// Whether the call continues the client's trace (its `tracestate` then goes on too).
    pub continued: bool,
}

impl TraceHeader {
    pub fn as_bytes(&self) -> &[u8] {
        &self.value
    }
}

impl TraceContext {
    /// What the upstream receives of this trace.
    pub fn header(&self) -> TraceHeader {
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        value[3..35].copy_from_slice(&infergate_sign::hex_digits::<32>(&self.trace_id));
        value[36..52].copy_from_slice(&infergate_sign::hex_digits::<16>(&self.span_id));
        if self.sampled {
            value[54] = b'1';
        }
        TraceHeader {
            value,
            continued: self.parent.is_some(),
        }
    }
}

/// A random id, never all zero.
pub(crate) fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    let mut rng = rand::thread_rng();
    while id == [0; N] {
        rng.fill_bytes(&mut id);
    }
    id
}

/// Starts traces and sends their spans to the collector.
pub struct Tracer {
    ratio: f64,
    /// Finished spans, each an encoded OTLP `Span`.
    queue: mpsc::Sender<Vec<u8>>,
    /// Spans by outcome (`exported`, `queue_full`, `export_failed`).
    outcomes: Option<prometheus::IntCounterVec>,
}

impl Tracer {
    /// A tracer whose export task runs on the current runtime.
    pub fn start(
        settings: &TraceSettings,
        outcomes: Option<prometheus::IntCounterVec>,
    ) -> Result<Arc<Self>, String> {
        let (queue, spans) = mpsc::channel(QUEUE);
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("the OTLP client: {e}"))?;
        let mut resource = Vec::new();
        for (key, value) in [
            ("service.name", settings.service_name.as_str()),
            ("telemetry.sdk.name", "infergate"),
            ("service.version", env!("CARGO_PKG_VERSION")),
        ] {
            pb::attr(&mut resource, 1, key, value);
        }
        tokio::spawn(export(
            spans,
            client,
            settings.endpoint.clone(),
            resource,
            outcomes.clone(),
        ));
        Ok(Arc::new(Self {
            ratio: settings.sampling_ratio,
            queue,
            outcomes,
        }))
    }

    /// The trace context of a call with these request headers, from a trusted proxy or not.
    pub(crate) fn context<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        trusted: bool,
    ) -> TraceContext {
        let (trace_id, parent, sampled) = match parse_traceparent(headers.values("traceparent")) {
            Some((trace_id, parent, sampled)) if trusted => (trace_id, Some(parent), sampled),
            // The client chose the id (and so where it falls under the ratio): a random
            // draw decides.
            Some((trace_id, parent, _)) => (trace_id, Some(parent), self.samples(&random_id())),
            None => {
                let trace_id = random_id::<16>();
                (trace_id, None, self.samples(&trace_id))
            }
        };
        TraceContext {
            trace_id,
            span_id: random_id(),
            parent,
            sampled,
            path: String::new(),
            api: None,
            client: None,
            https: false,
        }
    }

    /// Whether a new trace is sampled: the low 8 bytes of its id, read as a number, fall
    /// under the ratio's share of their range.
    fn samples(&self, trace_id: &[u8; 16]) -> bool {
        if self.ratio >= 1.0 {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        let bound = (self.ratio * u64::MAX as f64) as u64;
        u64::from_be_bytes(low) < bound
    }

    /// Ends the span of a sampled call that answered `status`.
    pub(crate) fn finish(&self, record: &CallRecord, status: u16) {
        let Some(trace) = record.trace.as_deref().filter(|t| t.sampled) else {
            return;
        };
        let span = encode_span(trace, record, status);
        let outcome = match self.queue.try_send(span) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => "queue_full",
            Err(mpsc::error::TrySendError::Closed(_)) => "export_failed",
        };
        if let Some(outcomes) = &self.outcomes {
            outcomes.with_label_values(&[outcome]).inc();
        }
    }
}

/// The wall-clock times, in nanoseconds since the Unix epoch, of a call that began at
/// `started` and ends now: the clock is read once, the start counted back from it.
fn span_times(started: std::time::Instant) -> (u64, u64) {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    (end.saturating_sub(took), end)
}

/// The span of a finished call as an OTLP `Span`, named and attributed as OpenTelemetry's
/// HTTP server spans are, with the gateway's own attributes and the model call's tokens.
fn encode_span(trace: &TraceContext, record: &CallRecord, status: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(640 + trace.path.len());
    let buf = &mut out;
    pb::bytes(buf, 1, &trace.trace_id);
    pb::bytes(buf, 2, &trace.span_id);
    if let Some(parent) = &trace.parent {
        pb::bytes(buf, 4, parent);
    }
    let method = record.method.as_str();
    let route = trace.api.as_ref().map(|api| api.api_path.as_str());
    match route {
        Some(route) => pb::joined(buf, 5, method, route),
        None => pb::bytes(buf, 5, method.as_bytes()),
    }
    pb::varint(buf, 6, SPAN_KIND_SERVER);
    let (start, end) = span_times(record.started);
    pb::fixed64(buf, 7, start);
    pb::fixed64(buf, 8, end);
    pb::attr(buf, 9, "http.request.method", method);
    pb::attr(buf, 9, "url.path", &trace.path);
    pb::attr(
        buf,
        9,
        "url.scheme",
        if trace.https { "https" } else { "http" },
    );
    pb::int_attr(buf, 9, "http.response.status_code", u64::from(status));
    pb::attr(buf, 9, "infergate.request_id", record.request_id.as_str());
    if let Some(route) = route {
        pb::attr(buf, 9, "http.route", route);
    }
    if let Some(client) = trace.client.as_ref().and_then(|c| c.to_str().ok()) {
        pb::attr(buf, 9, "client.address", client);
    }
    if let Some(api) = &record.api_id {
        pb::attr(buf, 9, "infergate.api_id", api);
    }
    match &record.caller {
        Some(Caller::App { app_id }) => pb::attr(buf, 9, "infergate.app_id", app_id),
        Some(Caller::User { user_id }) => pb::attr(buf, 9, "infergate.user_id", user_id),
        _ => {}
    }
    if let Some(upstream) = &record.upstream {
        pb::attr(buf, 9, "infergate.upstream", upstream);
    }
    if let Some(api) = record.model_api {
        pb::attr(buf, 9, "gen_ai.operation.name", api.operation());
    }
    if let Some(usage) = record.usage.as_ref().filter(|u| !u.estimated) {
        pb::int_attr(buf, 9, "gen_ai.usage.input_tokens", usage.prompt);
        pb::int_attr(buf, 9, "gen_ai.usage.output_tokens", usage.completion);
    }
    if status >= 500 {
        let mut digits = [0u8; 3];
        let text = [status / 100, status / 10 % 10, status % 10];
        for (d, n) in digits.iter_mut().zip(text) {
            *d = b'0' + n as u8;
        }
        pb::attr(
            buf,
            9,
            "error.type",
            std::str::from_utf8(&digits).unwrap_or("5xx"),
        );
        // Status { code: ERROR }.
        pb::message_head(buf, 15, 2);
        pb::varint(buf, 3, STATUS_ERROR);
    }
    // W3C flags, and whether the parent is remote (it is, when there is one).
    let flags = u32::from(trace.sampled) | 0x100 | if trace.parent.is_some() { 0x200 } else { 0 };
    pb::fixed32(buf, 16, flags);
    out
}

const SPAN_KIND_SERVER: u64 = 2;
const STATUS_ERROR: u64 = 2;

/// Protobuf writing of the OTLP fields the gateway sends: each message is written in one
/// pass (the lengths of attributes are known beforehand), every key and length in place.
mod pb {
    /// The wire types the gateway writes.
    const VARINT: u32 = 0;
    const FIXED64: u32 = 1;
    const DELIMITED: u32 = 2;
    const FIXED32: u32 = 5;

    /// `value` as a base-128 varint; a value under 128 (most keys and lengths) is one byte.
    #[inline(always)]
    fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
        if value < 0x80 {
            buf.push(value as u8);
            return;
        }
        let mut bytes = [0u8; 10];
        let mut len = 0;
        while value >= 0x80 {
            bytes[len] = (value as u8) | 0x80;
            value >>= 7;
            len += 1;
        }
        bytes[len] = value as u8;
        buf.extend_from_slice(&bytes[..=len]);
    }

    /// How many bytes `value` takes as a varint.
    #[inline(always)]
    fn varint_len(value: u64) -> usize {
        // Each byte holds 7 bits; zero still takes one byte.
        (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
    }

    #[inline(always)]
    fn key(buf: &mut Vec<u8>, tag: u32, wire: u32) {
        put_varint(buf, u64::from(tag << 3 | wire));
    }

    /// A length-delimited field (bytes, string, or a message written before).
    #[inline(always)]
    pub fn bytes(buf: &mut Vec<u8>, tag: u32, value: &[u8]) {
        message_head(buf, tag, value.len());
        buf.extend_from_slice(value);
    }

    /// A string field of `a`, a space and `b`.
    pub fn joined(buf: &mut Vec<u8>, tag: u32, a: &str, b: &str) {
        message_head(buf, tag, a.len() + 1 + b.len());
        buf.extend_from_slice(a.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(b.as_bytes());
    }

    /// The key and length of a length-delimited field of `len` bytes.
    #[inline(always)]
    pub fn message_head(buf: &mut Vec<u8>, tag: u32, len: usize) {
        key(buf, tag, DELIMITED);
        put_varint(buf, len as u64);
    }

    #[inline(always)]
    pub fn varint(buf: &mut Vec<u8>, tag: u32, value: u64) {
        key(buf, tag, VARINT);
        put_varint(buf, value);
    }

    #[inline(always)]
    pub fn fixed64(buf: &mut Vec<u8>, tag: u32, value: u64) {
        key(buf, tag, FIXED64);
        buf.extend_from_slice(&value.to_le_bytes());
    }

    #[inline(always)]
    pub fn fixed32(buf: &mut Vec<u8>, tag: u32, value: u32) {
        key(buf, tag, FIXED32);
        buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `KeyValue` field whose value is `AnyValue { string_value }`.
    #[inline(always)]
    pub fn attr(buf: &mut Vec<u8>, tag: u32, key: &str, value: &str) {
        let (k, v) = (key.len(), value.len());
        let kv = k + v + 6;
        if kv < 0x80 && tag < 16 {
            // Every key and length is one byte: the heads are written whole.
            buf.extend_from_slice(&[(tag << 3 | DELIMITED) as u8, kv as u8, 0x0a, k as u8]);
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(&[0x12, (v + 2) as u8, 0x0a, v as u8]);
            buf.extend_from_slice(value.as_bytes());
            return;
        }
        let any = 1 + varint_len(v as u64) + v;
        key_value_head(buf, tag, key, any);
        bytes(buf, 1, value.as_bytes());
    }

    /// A `KeyValue` field whose value is `AnyValue { int_value }`.
    #[inline(always)]
    pub fn int_attr(buf: &mut Vec<u8>, tag: u32, key: &str, value: u64) {
        let any = 1 + varint_len(value);
        key_value_head(buf, tag, key, any);
        varint(buf, 3, value);
    }

    /// A `KeyValue`'s head, its key and its `AnyValue`'s head (of `any` bytes).
    #[inline(always)]
    fn key_value_head(buf: &mut Vec<u8>, tag: u32, key: &str, any: usize) {
        let len = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
        message_head(buf, tag, len);
        bytes(buf, 1, key.as_bytes());
        message_head(buf, 2, any);
    }

    /// The length of a length-delimited field of `len` bytes, key and length included.
    pub fn field_len(tag: u32, len: usize) -> usize {
        varint_len(u64::from(tag << 3)) + varint_len(len as u64) + len
    }

    #[cfg(test)]
    mod tests {
        use proptest::prelude::*;

        proptest! {
            /// The varints, keys and lengths read back as prost reads them.
            #[test]
            fn varints_are_protobufs(value in any::<u64>(), tag in 1u32..(1 << 29)) {
                let mut buf = Vec::new();
                super::put_varint(&mut buf, value);
                prop_assert_eq!(buf.len(), super::varint_len(value));
                prop_assert_eq!(buf.len(), prost::encoding::encoded_len_varint(value));
                let read = prost::encoding::decode_varint(&mut &buf[..]);
                prop_assert_eq!(read.ok(), Some(value));
                let mut field = Vec::new();
                super::message_head(&mut field, tag, 0);
                prop_assert_eq!(field.len(), super::field_len(tag, 0));
                let (read_tag, wire) = prost::encoding::decode_key(&mut &field[..]).expect("key");
                prop_assert_eq!(read_tag, tag);
                prop_assert_eq!(wire, prost::encoding::WireType::LengthDelimited);
            }
        }
    }
}

/// An `ExportTraceServiceRequest` of `spans` (each an encoded `Span`) under one resource
/// (its encoded attributes) and the gateway's instrumentation scope.
fn export_request(resource: &[u8], spans: &[Vec<u8>]) -> Vec<u8> {
    let mut scope = Vec::new();
    pb::bytes(&mut scope, 1, b"infergate");
    pb::bytes(&mut scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let spans_len: usize = spans.iter().map(|s| pb::field_len(2, s.len())).sum();
    let scope_spans = pb::field_len(1, scope.len()) + spans_len;
    let resource_spans = pb::field_len(1, resource.len()) + pb::field_len(2, scope_spans);
    let mut out = Vec::with_capacity(pb::field_len(1, resource_spans));
    pb::message_head(&mut out, 1, resource_spans);
    pb::bytes(&mut out, 1, resource);
    pb::message_head(&mut out, 2, scope_spans);
    pb::bytes(&mut out, 1, &scope);
    for span in spans {
        pb::bytes(&mut out, 2, span);
    }
    out
}

/// Sends the queued spans in batches until the tracer is dropped.
async fn export(
    mut spans: mpsc::Receiver<Vec<u8>>,
    client: reqwest::Client,
    endpoint: String,
    resource: Vec<u8>,
    outcomes: Option<prometheus::IntCounterVec>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some(first) = spans.recv().await else {
            return;
        };
        batch.push(first);
        // The batch gathers while the task sleeps: it looks at the queue every tick rather
        // than wait on it, which would wake it (and set a timer) for every span.
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        loop {
            while batch.len() < MAX_BATCH {
                match spans.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            let now = tokio::time::Instant::now();
            if batch.len() >= MAX_BATCH || now >= deadline || spans.is_closed() {
                break;
            }
            tokio::time::sleep(GATHER_TICK.min(deadline - now)).await;
        }
        let count = batch.len() as u64;
        let body = export_request(&resource, &batch);
        batch.clear();
        let sent = client
            .post(&endpoint)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Ok(reply) if reply.status().is_success() => "exported",
            Ok(reply) => {
                tracing::warn!(status = reply.status().as_u16(), endpoint = %endpoint, spans = count, "the OTLP collector refused spans");
                "export_failed"
            }
            Err(err) => {
                tracing::warn!(error = %err, endpoint = %endpoint, spans = count, "exporting spans failed");
                "export_failed"
            }
        };
        if let Some(outcomes) = &outcomes {
            outcomes.with_label_values(&[outcome]).inc_by(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(value: &str) -> Option<Parent> {
        parse_traceparent(std::iter::once(value.as_bytes()))
    }

    #[test]
    fn the_specifications_example_is_read() {
        let (trace, parent, sampled) = parse(VALID).expect("valid");
        let mut ids = Vec::new();
        push_hex(&mut ids, &trace);
        push_hex(&mut ids, &parent);
        assert_eq!(ids, b"4bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b7");
        assert!(sampled);
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!unsampled.expect("valid").2);
        // A later version may carry more after its flags.
        assert!(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what").is_some());
        // Surrounding whitespace is the header's, not the value's.
        assert!(parse(&format!(" {VALID} ")).is_some());
    }

    #[test]
    fn hostile_traceparents_start_a_trace_of_their_own() {
        let corpus = [
            "",
            "00",
            "00-",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, and version 00 with more after the flags.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // A later version whose flags run on.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // Wrong separators, short and long ids.
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
            // Not hex; a sign; a NUL; non-ASCII.
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in corpus {
            assert_eq!(parse(value), None, "{value:?}");
        }
        // Two lines are no parent either.
        let two = [VALID.as_bytes(), VALID.as_bytes()];
        assert_eq!(parse_traceparent(two.into_iter()), None);
    }

    #[test]
    fn the_forwarded_traceparent_names_the_gateways_span() {
        let context = TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent: Some([0x02; 8]),
            sampled: true,
            path: String::new(),
            api: None,
            client: None,
            https: false,
        };
        let header = context.header();
        assert!(header.continued);
        assert_eq!(
            header.as_bytes(),
            b"00-abababababababababababababababab-0101010101010101-01"
        );
        let (trace, parent, sampled) =
            parse_traceparent(std::iter::once(header.as_bytes())).expect("own");
        assert_eq!((trace, parent, sampled), ([0xab; 16], [0x01; 8], true));
    }

    proptest! {
        /// Whatever the bytes, reading them never panics, and what is read is written back
        /// as the same trace (for version 00).
        #[test]
        fn any_bytes_are_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some((trace, parent, sampled)) = parse_traceparent(std::iter::once(&bytes[..])) {
                prop_assert!(trace != [0; 16] && parent != [0; 8]);
                let _ = sampled;
            }
        }

        #[test]
        fn written_headers_read_back(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>(), sampled in any::<bool>()) {
            prop_assume!(trace != [0; 16] && span != [0; 8]);
            let context = TraceContext {
                trace_id: trace,
                span_id: span,
                parent: None,
                sampled,
                path: String::new(),
                api: None,
                client: None,
                https: false,
            };
            let header = context.header();
            prop_assert!(!header.continued);
            prop_assert_eq!(parse_traceparent(std::iter::once(header.as_bytes())), Some((trace, span, sampled)));
        }

        /// Valid headers with one character changed are either still valid in the same
        /// shape or refused, never misread into other ids silently beyond that character.
        #[test]
        fn one_changed_byte_is_never_a_panic(at in 0usize..55, byte in any::<u8>()) {
            let mut value = VALID.as_bytes().to_vec();
            value[at] = byte;
            let _ = parse_traceparent(std::iter::once(&value[..]));
        }
    }

    /// The OTLP messages as their definitions declare them, read back with prost.
    mod otlp {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ExportTraceServiceRequest {
            #[prost(message, repeated, tag = "1")]
            pub resource_spans: Vec<ResourceSpans>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ResourceSpans {
            #[prost(message, optional, tag = "1")]
            pub resource: Option<Resource>,
            #[prost(message, repeated, tag = "2")]
            pub scope_spans: Vec<ScopeSpans>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Resource {
            #[prost(message, repeated, tag = "1")]
            pub attributes: Vec<KeyValue>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct ScopeSpans {
            #[prost(message, optional, tag = "1")]
            pub scope: Option<Scope>,
            #[prost(message, repeated, tag = "2")]
            pub spans: Vec<Span>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Scope {
            #[prost(string, tag = "1")]
            pub name: String,
            #[prost(string, tag = "2")]
            pub version: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Span {
            #[prost(bytes = "vec", tag = "1")]
            pub trace_id: Vec<u8>,
            #[prost(bytes = "vec", tag = "2")]
            pub span_id: Vec<u8>,
            #[prost(bytes = "vec", tag = "4")]
            pub parent_span_id: Vec<u8>,
            #[prost(string, tag = "5")]
            pub name: String,
            #[prost(int32, tag = "6")]
            pub kind: i32,
            #[prost(fixed64, tag = "7")]
            pub start_time_unix_nano: u64,
            #[prost(fixed64, tag = "8")]
            pub end_time_unix_nano: u64,
            #[prost(message, repeated, tag = "9")]
            pub attributes: Vec<KeyValue>,
            #[prost(message, optional, tag = "15")]
            pub status: Option<Status>,
            #[prost(fixed32, tag = "16")]
            pub flags: u32,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Status {
            #[prost(int32, tag = "3")]
            pub code: i32,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct KeyValue {
            #[prost(string, tag = "1")]
            pub key: String,
            #[prost(message, optional, tag = "2")]
            pub value: Option<AnyValue>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct AnyValue {
            #[prost(oneof = "Value", tags = "1, 3")]
            pub value: Option<Value>,
        }
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(string, tag = "1")]
            String(String),
            #[prost(int64, tag = "3")]
            Int(i64),
        }
    }

    #[test]
    fn encoded_spans_read_back_as_otlp_messages() {
        use prost::Message;
        let mut record = CallRecord::for_tests(http::Method::POST);
        record.api_id = Some(Arc::from("api-1"));
        record.caller = Some(Caller::App {
            app_id: Arc::from("app-1"),
        });
        record.upstream = Some(Arc::from("10.0.0.1:8000"));
        let mut trace = TraceContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent: Some([0x02; 8]),
            sampled: true,
            path: String::new(),
            api: None,
            client: Some(http::HeaderValue::from_static("2001:db8::1")),
            https: true,
        };
        // A path past the bound is cut at a character's edge.
        trace.set_path(&format!("/v1/{}", "é".repeat(400)));
        assert!(trace.path.len() <= MAX_PATH && trace.path.len() > MAX_PATH - 2);
        let span = encode_span(&trace, &record, 503);
        let mut resource = Vec::new();
        pb::attr(&mut resource, 1, "service.name", "edge");
        let body = export_request(&resource, &[span.clone(), span]);
        let request = otlp::ExportTraceServiceRequest::decode(&body[..]).expect("decodes");
        let resource_spans = &request.resource_spans[0];
        let service = &resource_spans
            .resource
            .as_ref()
            .expect("resource")
            .attributes[0];
        assert_eq!(service.key, "service.name");
        let scope_spans = &resource_spans.scope_spans[0];
        assert_eq!(scope_spans.scope.as_ref().expect("scope").name, "infergate");
        assert_eq!(scope_spans.spans.len(), 2);
        let span = &scope_spans.spans[0];
        assert_eq!(span.trace_id, [0xab; 16]);
        assert_eq!(span.span_id, [0x01; 8]);
        assert_eq!(span.parent_span_id, [0x02; 8]);
        assert_eq!(span.name, "POST");
        assert_eq!(span.kind, 2);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(span.flags, 0x301);
        let attr = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
                .and_then(|v| v.value)
                .unwrap_or_else(|| panic!("no {key}"))
        };
        assert_eq!(attr("http.response.status_code"), otlp::Value::Int(503));
        assert_eq!(attr("error.type"), otlp::Value::String("503".into()));
        assert_eq!(
            attr("client.address"),
            otlp::Value::String("2001:db8::1".into())
        );
        assert_eq!(attr("url.scheme"), otlp::Value::String("https".into()));
        assert_eq!(attr("url.path"), otlp::Value::String(trace.path.clone()));
        assert_eq!(
            attr("infergate.app_id"),
            otlp::Value::String("app-1".into())
        );
        assert_eq!(
            attr("infergate.upstream"),
            otlp::Value::String("10.0.0.1:8000".into())
        );
    }

    proptest! {
        /// Attributes of any lengths (one-byte lengths or longer) read back as OTLP
        /// `KeyValue`s.
        #[test]
        fn attributes_of_any_length_read_back(key in ".{0,80}", value in ".{0,200}", number in any::<u64>()) {
            use prost::Message;
            let mut buf = Vec::new();
            pb::attr(&mut buf, 1, &key, &value);
            pb::int_attr(&mut buf, 1, &key, number);
            let read = otlp::Resource::decode(&buf[..]).expect("decodes");
            prop_assert_eq!(read.attributes.len(), 2);
            prop_assert_eq!(&read.attributes[0].key, &key);
            let string = read.attributes[0].value.clone().and_then(|v| v.value);
            prop_assert_eq!(string, Some(otlp::Value::String(value)));
            let int = read.attributes[1].value.clone().and_then(|v| v.value);
            prop_assert_eq!(int, Some(otlp::Value::Int(number as i64)));
        }
    }

    #[test]
    fn ratio_sampling_takes_its_share_of_new_traces() {
        let (queue, _spans) = mpsc::channel(1);
        let tracer = |ratio| Tracer {
            ratio,
            queue: queue.clone(),
            outcomes: None,
        };
        let none = tracer(0.0);
        let all = tracer(1.0);
        let quarter = tracer(0.25);
        let mut taken = 0;
        for _ in 0..4000 {
            let id = random_id::<16>();
            assert!(!none.samples(&id));
            assert!(all.samples(&id));
            taken += usize::from(quarter.samples(&id));
        }
        // 1000 expected; the binomial spread is about 27.
        assert!((850..1150).contains(&taken), "{taken}");
    }
}

//! The general server: hyper serves every connection the fast path does not (HTTP/2, TLS,
//! upgrades, chunked and large bodies, anything unusual), and the admin listener. It reads
//! and writes through hyper; every decision comes from `phases`, `http_rules` and
//! `upstreams`.

mod client;
mod head_guard;
mod server;

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::body::{self, read_whole, ClientBody, GatewayBody, ReadBody};
use crate::error::{ErrorAnswer, GatewayError};
use crate::http_rules;
use crate::http_rules::cors::{self, Cross};
use crate::http_rules::ConnInfo;
use crate::phases::{BodySeen, CallRecord, Head};
use crate::usage::{Media, Usage, UsageChunkFilter, UsageTap};
use crate::Gateway;
use client::{Call, ForwardBody};

#[cfg(test)]
pub(crate) use client::upstream_headers;
pub(crate) use client::Sender;
pub use server::{serve, serve_with, ConnectionMetrics, TlsFiles};

impl Gateway {
    /// Serves one call; every failure becomes an `APIG.*` response. Metrics and the access
    /// log are written when the response body has been streamed (or abandoned).
    pub async fn handle(&self, req: Request<ClientBody>, conn: ConnInfo) -> Response<GatewayBody> {
        let bytes_in = req.body().size_hint().exact().unwrap_or(0);
        let mut record = self.begin(req.method(), req.uri().path(), req.uri().query(), bytes_in);
        let cross = cors::classify(&self.settings.cors, req.method(), req.headers());
        if let Cross::Preflight(origin) = cross {
            // Answered here, whatever the origin: a preflight carries no credential and
            // reaches no upstream.
            let mut response = Response::new(body::full(Bytes::new()));
            *response.status_mut() = http::StatusCode::NO_CONTENT;
            *response.headers_mut() = cors::preflight(origin, req.headers());
            if let Ok(id) = http::HeaderValue::from_str(record.request_id.as_str()) {
                response.headers_mut().insert(http_rules::X_REQUEST_ID, id);
            }
            return self.observed(record, response);
        }
        let mut response = match self.call(req, conn, &mut record).await {
            Ok(response) => response,
            Err(err) => {
                self.observers.refused(&err, &mut record);
                answer_response(
                    err.answer(record.request_id.as_str(), false)
                        .with_rate_limit(record.rate_limit.as_deref()),
                )
            }
        };
        cors::answer(response.headers_mut(), cross, &self.settings.cors);
        self.observed(record, response)
    }
    /// Reports the response head now, and the call once its body has been streamed.
    fn observed(
        &self,
        record: CallRecord,
        response: Response<GatewayBody>,
    ) -> Response<GatewayBody> {
        let status = response.status();
        self.observers.response_head(&record, Instant::now());
        let observers = self.observers.clone();
        let (mut parts, body) = response.into_parts();
        // A model call's answer from its upstream (not the gateway's own) is read for usage.
        let media = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map_or(Media::Other, |v| Media::of(v.as_bytes()));
        let tap = if record.model_call && record.upstream.is_some() {
            UsageTap::for_answer(media, record.bytes_in as usize)
        } else {
            None
        };
        // The usage chunk the gateway asked for is dropped; the length changes with it.
        let filter = (record.asked_usage && tap.is_some() && media == Media::EventStream)
            .then(UsageChunkFilter::default);
        if filter.is_some() {
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        let mut record = record;
        let finish = move |bytes_out: u64, usage: Option<Usage>| {
            record.usage = usage;
            observers.finish(&record, status.as_u16(), bytes_out)
        };
        Response::from_parts(
            parts,
            body::Observed::new(body, tap, filter, finish).boxed_unsync(),
        )
    }
    async fn call(
        &self,
        req: Request<ClientBody>,
        conn: ConnInfo,
        record: &mut CallRecord,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        let snapshot = self.snapshots.load_full();
        let (mut parts, body) = req.into_parts();
        // The general server parsed the framing already; the gateway's own rules decide
        // whether it is unambiguous enough to forward.
        let framing = http_rules::request_framing(
            http_rules::Version::of(parts.version),
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        )?;
        http_rules::check_target_authority(&parts.uri, parts.headers.get(http::header::HOST))?;
        if !parts.headers.contains_key(http::header::HOST) {
            // HTTP/2 carries the host in :authority; signatures are over `host`.
            if let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(http::header::HOST, value);
            }
        }
        let selected = self.select(&snapshot, &Head::of(&parts), &conn, record)?;
        let body_is_empty = body.is_end_stream();
        let limit = self.settings.limits.max_body_bytes;
        let (forward_body, body_hash) = if body_is_empty {
            (ForwardBody::Buffered(ReadBody::default()), None)
        } else if selected.needs_hash {
            let (read, hash) = read_whole(body, limit, true).await?;
            record.bytes_in = read.len() as u64;
            (ForwardBody::Buffered(read), hash)
        } else {
            (ForwardBody::Stream(Some(body)), None)
        };
        let (caller, deferred) = self.admit(
            &snapshot,
            &selected,
            &Head::of(&parts),
            &conn,
            BodySeen {
                hash: body_hash.as_deref(),
                is_empty: body_is_empty,
            },
            record,
        )?;
        // An admitted model call's body is read whole (never a stranger's): it may be
        // asked for usage, and it says what tokens the call reserves. So is the body of a
        // call that may go to another upstream after an answer (up to the body limit).
        // Read as one slice by those that look into it.
        let looked_into = record.model_call || deferred.as_ref().is_some_and(|d| d.needs_body());
        let whole =
            looked_into || (selected.api.service.retry.as_ref()).is_some_and(|r| r.on_answers());
        let mut forward_body = match forward_body {
            ForwardBody::Stream(Some(body)) if whole => {
                let (read, _) = read_whole(body, limit, false).await?;
                record.bytes_in = read.len() as u64;
                ForwardBody::Buffered(read)
            }
            other => other,
        };
        let sent: &[u8] = match &mut forward_body {
            ForwardBody::Buffered(read) if looked_into => read.joined(),
            _ => &[],
        };
        self.count_deferred(deferred, sent, record).await?;
        let model_api = record.model_api.filter(|_| record.model_call);
        let forward_body = match (forward_body, model_api) {
            (ForwardBody::Buffered(mut read), Some(api)) => {
                let edited =
                    crate::usage::forwarded_request(api, read.joined(), record.forward_cap)
                        .map_err(GatewayError::BadRequest)?;
                match edited {
                    Some((edited, asked)) => {
                        record.asked_usage = asked;
                        ForwardBody::Buffered(ReadBody::from(Bytes::from(edited)))
                    }
                    None => ForwardBody::Buffered(read),
                }
            }
            (other, _) => other,
        };
        self.forward(
            Call {
                api: &selected.api,
                caller: &caller,
                parts,
                body: forward_body,
                framing,
                conn,
                max_body: self.settings.limits.max_body_bytes,
            },
            record,
        )
        .await
    }
}

/// The gateway's own answer as a response.
fn answer_response(answer: ErrorAnswer<'_>) -> Response<GatewayBody> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in http_rules::answer_headers(&answer) {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    let mut response = Response::new(body::full(Bytes::from(answer.body)));
    *response.status_mut() = answer.status;
    *response.headers_mut() = headers;
    response
}

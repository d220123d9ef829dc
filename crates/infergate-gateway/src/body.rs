//! Body types: responses are streamed frame by frame as boxed bodies; request bodies are
//! either buffered (signed, so hashed before forwarding) or streamed under the size limit.

use crate::error::GatewayError;
use crate::usage::{Usage, UsageChunkFilter, UsageTap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the gateway produces.
pub type GatewayBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: Bytes) -> GatewayBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> GatewayBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A request body as a listener hands it to its service: the client's bytes, failing when
/// none arrive for the listener's body idle timeout.
pub type ClientBody = IdleTimeout<Incoming>;

/// A body whose next frame must come within `timeout` of being waited for: a client that
/// stops sending in the middle of a body does not hold its connection (and an upstream's)
/// open. The timer runs only while the body's reader waits, never while the reader itself
/// is slow to ask.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error of a body whose client went quiet.
#[derive(Debug)]
pub struct BodyIdle(pub Duration);

impl std::fmt::Display for BodyIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no body bytes arrived for {} ms", self.0.as_millis())
    }
}

impl std::error::Error for BodyIdle {}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyIdle(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a streamed client body leaves its failure, as the answer the client gets: a
/// connection reports a body's error its own way (HTTP/2 as a reset of the stream, with no
/// cause), so the attempt reads the cause here rather than from the connection's error.
pub type ClientFailure = Arc<OnceLock<GatewayError>>;

/// A client body streamed to the upstream, failing once it passes `limit` bytes (the
/// failure also kept in the returned slot). Its trailers are never forwarded: their names
/// would bypass every header rule (identity headers included), and no upstream needs them.
pub fn streamed(body: ClientBody, limit: usize) -> (GatewayBody, ClientFailure) {
    let failure = ClientFailure::default();
    let stream = ClientStream {
        inner: Limited::new(body, limit),
        limit,
        failure: failure.clone(),
    };
    (stream.boxed_unsync(), failure)
}

/// See [`streamed`].
struct ClientStream {
    inner: Limited<ClientBody>,
    limit: usize,
    failure: ClientFailure,
}

impl Body for ClientStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => continue,
                Poll::Ready(Some(Err(err))) => {
                    // The first failure is the cause.
                    let _ = this
                        .failure
                        .set(GatewayError::client_body(err.as_ref(), this.limit));
                    Poll::Ready(Some(Err(Box::new(FromClient(err)))))
                }
                other => other,
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An error of the client's request body (its framing, its size, its pace): the client's
/// fault, not the upstream's.
#[derive(Debug)]
pub struct FromClient(pub BoxError);

impl std::fmt::Display for FromClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the request body failed: {}", self.0)
    }
}

impl std::error::Error for FromClient {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The first error of type `T` among `err` and its sources.
pub fn find_source<'e, T: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// What [`Observed`] runs when its body has ended: the bytes streamed, and the usage its
/// tap read.
type Finish = Box<dyn FnOnce(u64, Option<Usage>) + Send>;

/// A response body that counts the bytes it streams (reading a model call's usage from
/// them) and runs `finish` once, when the stream ends or the body is dropped (the client
/// went away).
pub struct Observed {
    inner: GatewayBody,
    bytes: u64,
    tap: Option<UsageTap>,
    /// Drops the usage chunk the gateway asked for (the tap still reads it).
    filter: Option<UsageChunkFilter>,
    /// What the filter still held when the stream ended, sent as a last frame.
    last: Option<Bytes>,
    finish: Option<Finish>,
}

impl Observed {
    pub fn new(
        inner: GatewayBody,
        tap: Option<UsageTap>,
        filter: Option<UsageChunkFilter>,
        finish: impl FnOnce(u64, Option<Usage>) + Send + 'static,
    ) -> Self {
        Self {
            inner,
            bytes: 0,
            tap,
            filter,
            last: None,
            finish: Some(Box::new(finish)),
        }
    }

    fn complete(&mut self) {
        if let Some(finish) = self.finish.take() {
            let usage = self.tap.take().map(UsageTap::finish);
            finish(self.bytes, usage);
        }
    }
}

impl hyper::body::Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(last) = this.last.take() {
                this.bytes += last.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(last))));
            }
            let poll = Pin::new(&mut this.inner).poll_frame(cx);
            match poll {
                Poll::Ready(Some(Ok(frame))) => {
                    let Some(data) = frame.data_ref() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    if let Some(tap) = &mut this.tap {
                        tap.feed(data);
                    }
                    let Some(filter) = &mut this.filter else {
                        this.bytes += data.len() as u64;
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let mut passed = Vec::new();
                    filter.push(data, &mut passed);
                    if passed.is_empty() {
                        // All of it held (an event not yet ended) or dropped: read on.
                        continue;
                    }
                    this.bytes += passed.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(passed)))));
                }
                Poll::Ready(None) => {
                    if let Some(mut filter) = this.filter.take() {
                        let mut held = Vec::new();
                        filter.finish(&mut held);
                        if !held.is_empty() {
                            this.last = Some(Bytes::from(held));
                            continue;
                        }
                    }
                    this.complete();
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.last.is_none()
            && !self.filter.as_ref().is_some_and(UsageChunkFilter::holds)
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.filter.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // hyper stops polling a body that says it has ended, so its end may come as a drop.
        self.complete();
    }
}

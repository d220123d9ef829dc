//! Body types: responses are streamed frame by frame as boxed bodies; request bodies are
//! either read whole (signed, so hashed as they arrive, before forwarding) or streamed under
//! the size limit.

use crate::error::GatewayError;
use crate::usage::{Usage, UsageChunkFilter, UsageTap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
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

/// A request body read whole before it is forwarded: its frames as they came (joined only
/// for a reader that needs one slice), so it can be sent again to another upstream.
#[derive(Debug, Clone, Default)]
pub struct ReadBody {
    chunks: Vec<Bytes>,
    len: usize,
}

impl ReadBody {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body as one slice: its frames joined (once) when there are several.
    pub fn joined(&mut self) -> &[u8] {
        if self.chunks.len() > 1 {
            let mut all = BytesMut::with_capacity(self.len);
            for chunk in &self.chunks {
                all.extend_from_slice(chunk);
            }
            self.chunks = vec![all.freeze()];
        }
        self.chunks.first().map_or(&[], |chunk| chunk)
    }

    /// A body that sends the frames (again), each as it came.
    pub fn body(&self) -> GatewayBody {
        ReadFrames {
            chunks: self.chunks.clone().into_iter(),
            left: self.len as u64,
        }
        .boxed_unsync()
    }
}

impl From<Bytes> for ReadBody {
    fn from(bytes: Bytes) -> Self {
        Self {
            len: bytes.len(),
            chunks: if bytes.is_empty() {
                Vec::new()
            } else {
                vec![bytes]
            },
        }
    }
}

/// See [`ReadBody::body`].
struct ReadFrames {
    chunks: std::vec::IntoIter<Bytes>,
    left: u64,
}

impl Body for ReadFrames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let next = self.chunks.next();
        if let Some(chunk) = &next {
            self.left -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Reads a client body whole, failing once it passes `limit` bytes; with `hash`, each frame
/// is hashed as it arrives (no second pass over the body, no copy of it): the body, and
/// its SHA-256 in hex when asked for.
pub async fn read_whole(
    body: ClientBody,
    limit: usize,
    hash: bool,
) -> Result<(ReadBody, Option<String>), GatewayError> {
    let mut limited = Limited::new(body, limit);
    let mut read = ReadBody::default();
    let mut hasher = hash.then(infergate_sign::BodyHasher::default);
    while let Some(frame) = limited.frame().await {
        let frame = frame.map_err(|e| GatewayError::client_body(e.as_ref(), limit))?;
        // Trailers are never forwarded (see `streamed`).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        if let Some(hasher) = &mut hasher {
            hasher.update(&data);
        }
        read.len += data.len();
        read.chunks.push(data);
    }
    Ok((read, hasher.map(infergate_sign::BodyHasher::finish_hex)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_body_is_sent_again_frame_by_frame_and_joined_once() {
        let mut read = ReadBody::default();
        for piece in ["ab", "cde", "f"] {
            read.len += piece.len();
            read.chunks.push(Bytes::from_static(piece.as_bytes()));
        }
        for _ in 0..2 {
            let mut body = read.body();
            assert_eq!(body.size_hint().exact(), Some(6));
            let mut frames = Vec::new();
            while let Some(frame) = body.frame().await {
                frames.push(frame.expect("frame").into_data().expect("data"));
            }
            assert_eq!(frames, ["ab", "cde", "f"]);
            assert!(body.is_end_stream());
        }
        assert_eq!(read.joined(), b"abcdef");
        assert_eq!(read.chunks.len(), 1);
        assert_eq!(read.body().size_hint().exact(), Some(6));
        assert!(ReadBody::from(Bytes::new()).body().is_end_stream());
    }
}

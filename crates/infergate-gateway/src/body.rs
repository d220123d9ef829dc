//! Body types: responses are streamed frame by frame as boxed bodies; request bodies are
//! either buffered (signed, so hashed before forwarding) or streamed under the size limit.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;

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

/// A client body streamed to the upstream, failing once it passes `limit` bytes.
pub fn streamed(body: Incoming, limit: usize) -> GatewayBody {
    Limited::new(body, limit).boxed_unsync()
}

/// Whether an error (or one of its sources) is the body limit being passed.
pub fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A response body that counts the bytes it streams and runs `finish` once, when the
/// stream ends or the body is dropped (the client went away).
pub struct Observed {
    inner: GatewayBody,
    bytes: u64,
    finish: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl Observed {
    pub fn new(inner: GatewayBody, finish: impl FnOnce(u64) + Send + 'static) -> Self {
        Self {
            inner,
            bytes: 0,
            finish: Some(Box::new(finish)),
        }
    }

    fn complete(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish(self.bytes);
        }
    }
}

impl hyper::body::Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let poll = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &poll {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            std::task::Poll::Ready(None) => this.complete(),
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.complete();
    }
}

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

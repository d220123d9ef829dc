//! The fast path's upstream side: a kept-alive connection to an upstream, the exchange of
//! one request on it, the response head rewritten for the client, and the body relayed as
//! its bytes arrive. Every decision about the response comes from `http_rules`.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use http::Method;
use infergate_core::snapshot::Upstream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::client_io::ClientIo;
use super::head::{push_header, LineCopier};
use crate::error::GatewayError;
use crate::http_rules::{self, ChunkedEnd, ResponseFraming, MAX_HEADERS};
use crate::throttle::RateLimitFields;
use crate::upstreams::pool::{Pool, Pooled};
use crate::upstreams::tls::{Alpn, UpstreamTls};
use crate::upstreams::Failure;
use crate::usage::{Media, UsageChunkFilter, UsageTap};

/// The most read at a time.
pub(super) const READ_SIZE: usize = 16 * 1024;

/// How much a connection reads at a time: little at first (most heads, answers and events
/// fit), doubling up to [`READ_SIZE`] while reads fill the room, so an open stream or a
/// quiet connection holds small buffers and a large body is still read in large pieces.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadSize(usize);

impl Default for ReadSize {
    fn default() -> Self {
        Self(Self::FIRST)
    }
}

impl ReadSize {
    pub const FIRST: usize = 4 * 1024;

    /// Makes room in `buf` for the next read; the room.
    pub fn room(&self, buf: &mut BytesMut) -> usize {
        buf.reserve(self.0);
        buf.capacity() - buf.len()
    }

    /// After a read of `n` bytes into `room`: a read that filled it makes the next larger.
    pub fn after(&mut self, n: usize, room: usize) {
        if n >= room && n > 0 {
            self.0 = (self.0 * 2).min(READ_SIZE);
        }
    }
}
/// A response head larger than this is refused.
const MAX_RESPONSE_HEAD: usize = 128 * 1024;

/// A response head rewritten for the client (without its final empty line), and what the
/// relay needs to know of it.
#[derive(Debug)]
pub(super) struct ClientHead {
    pub status: u16,
    pub out: Vec<u8>,
    pub framing: ResponseFraming,
    /// Whether the upstream keeps the connection open after this response.
    pub keep_alive: bool,
    /// The answer's media, read for a model call only.
    pub media: Media,
    /// A length-framed event stream sent to the client chunked, so the usage chunk the
    /// gateway asked for can be left out.
    pub rechunked: bool,
    /// A 429's or 503's `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

/// The lines the gateway adds to every response head it relays.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnLines<'a> {
    pub request_id: &'a [u8],
    /// A throttled API's rate-limit fields.
    pub rate_limit: Option<&'a RateLimitFields>,
    /// Whether the call is a model API's, whose answer's media matters.
    pub model_call: bool,
    /// Whether the gateway asked the upstream for usage the client did not ask for.
    pub asked_usage: bool,
}

/// Appends `data` to `out` as one chunk of a chunked body.
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes what `out` holds to the client, leaving it empty.
async fn send(client: &mut impl ClientIo, out: &mut Vec<u8>) -> Result<(), RelayError> {
    if !out.is_empty() {
        client.send_all(out).await.map_err(|_| RelayError::Client)?;
        out.clear();
    }
    Ok(())
}

/// Writes a parsed response head for the client as [`http_rules::response_head`] decides
/// it: the status line, the lines it forwards, the framing, the gateway's `X-Request-Id`.
/// A chunked body is relayed as it came, its `Transfer-Encoding` lines with it; one that
/// ends with the connection is sent chunked.
pub(super) fn client_head(
    res: &httparse::Response<'_, '_>,
    raw: &[u8],
    head_only: bool,
    own: OwnLines<'_>,
    mut out: Vec<u8>,
) -> Result<ClientHead, String> {
    let request_id = own.request_id;
    let status = res.code.unwrap_or(0);
    let code = http::StatusCode::from_u16(status)
        .map_err(|_| format!("the upstream answered status {status}"))?;
    let lines = res.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    let decided = http_rules::response_head(res.version.unwrap_or(0), status, head_only, lines)?;
    let size: usize = res
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 4)
        .sum();
    out.clear();
    out.reserve(64 + request_id.len() + size);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    let reason = res
        .reason
        .filter(|r| !r.is_empty())
        .or_else(|| code.canonical_reason());
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let relays_codings = decided.framing == ResponseFraming::Chunked;
    let media = if own.model_call {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map_or(Media::Other, |h| Media::of(h.value))
    } else {
        Media::Other
    };
    let rechunked = own.asked_usage
        && media == Media::EventStream
        && matches!(decided.framing, ResponseFraming::Length(_));
    let mut copier = LineCopier::new(raw);
    // One `Content-Length` reaches the client (the upstream may repeat the same value).
    let mut length_sent = rechunked;
    for header in res.headers.iter() {
        let name = header.name.as_bytes();
        let coding = relays_codings && name.eq_ignore_ascii_case(b"transfer-encoding");
        let length = name.eq_ignore_ascii_case(b"content-length");
        if coding || (decided.lines.forwards(name) && !(length && length_sent)) {
            length_sent |= length;
            copier.keep(&mut out, header);
        }
    }
    copier.flush(&mut out);
    if decided.framing == ResponseFraming::UntilClose || rechunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    if let Some(fields) = own.rate_limit {
        push_header(&mut out, b"ratelimit-policy", fields.policy.as_bytes());
        push_header(&mut out, b"ratelimit", fields.state.as_bytes());
    }
    let retry_after = if matches!(status, 429 | 503) {
        res.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
            .and_then(|h| crate::http_rules::retry_after_seconds(h.value))
    } else {
        None
    };
    Ok(ClientHead {
        status,
        out,
        framing: decided.framing,
        keep_alive: decided.keep_alive,
        media,
        rechunked,
        retry_after,
    })
}

/// The whole answer the gateway gives itself to `err`, as [`GatewayError::answer`] makes it.
pub(super) fn error_bytes(
    err: &GatewayError,
    request_id: &str,
    close: bool,
    rate_limit: Option<&RateLimitFields>,
) -> (u16, bool, Vec<u8>) {
    let answer = err.answer(request_id, close).with_rate_limit(rate_limit);
    let status = answer.status;
    let mut out = Vec::with_capacity(160 + answer.body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in http_rules::answer_headers(&answer) {
        push_header(&mut out, name.as_str().as_bytes(), value);
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "content-length: {}\r\n\r\n", answer.body.len());
    out.extend_from_slice(answer.body.as_bytes());
    (status.as_u16(), answer.closes(), out)
}

/// The bytes of an upstream connection: plain TCP, or TLS (HTTP/1.1 by ALPN) over it.
pub(crate) enum UpstreamIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A kept-alive connection to an upstream and the bytes read from it but not yet used.
pub(crate) struct UpstreamConn {
    pub(super) stream: UpstreamIo,
    pub(super) buf: BytesMut,
    read_size: ReadSize,
}

impl Pooled for UpstreamConn {
    fn is_closed(&self) -> bool {
        // An idle connection has nothing to read: if it is readable, the upstream closed it
        // (or sent bytes nobody asked for). The readiness flag can be stale, so a readable
        // one is probed once: plain TCP by a read, TLS by a peek (a read would take bytes
        // of a record from under the TLS session).
        let mut cx = Context::from_waker(Waker::noop());
        match &self.stream {
            UpstreamIo::Plain(tcp) => match tcp.poll_read_ready(&mut cx) {
                Poll::Pending => false,
                Poll::Ready(Err(_)) => true,
                Poll::Ready(Ok(())) => {
                    let mut probe = [0u8; 1];
                    !matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            },
            UpstreamIo::Tls(tls) => {
                let mut probe = [0u8; 1];
                let mut probe = ReadBuf::new(&mut probe);
                // A close_notify, stray bytes or the end: not an idle connection.
                !matches!(
                    tls.get_ref().0.poll_peek(&mut cx, &mut probe),
                    Poll::Pending
                )
            }
        }
    }
}

/// Where an exchange goes: the upstream, the key of its idle connections, and how its TLS
/// is verified.
pub(super) struct FastTo<'a> {
    pub upstream: &'a Upstream,
    pub key: &'a Arc<str>,
    pub ca_pem: Option<&'a Arc<str>>,
    pub tls: &'a UpstreamTls,
}

impl FastTo<'_> {
    /// A new connection to the upstream (TLS for `https://`), and how much of `request`
    /// went out on it as it was made (in the clear only).
    async fn connect(
        &self,
        pool: &Pool<UpstreamConn>,
        request: &[u8],
    ) -> Result<(UpstreamConn, usize), Failure> {
        let authority = &*self.upstream.authority;
        let (stream, sent) = if self.upstream.scheme == "https" {
            let tls = self
                .tls
                .connect_upstream(pool, authority, self.ca_pem, Alpn::Http11)
                .await
                .map_err(Failure::from)?;
            (UpstreamIo::Tls(Box::new(tls)), 0)
        } else {
            let (tcp, sent) = pool
                .connect_tcp_sending(authority, 80, request)
                .await
                .map_err(Failure::from)?;
            (UpstreamIo::Plain(tcp), sent)
        };
        Ok((UpstreamConn::new(stream), sent))
    }
}

/// Why relaying a response body stopped early.
pub(super) enum RelayError {
    Upstream(String),
    Client,
}

impl UpstreamConn {
    /// A connection with nothing read yet (its buffer taken when bytes arrive).
    pub(super) fn new(stream: UpstreamIo) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            read_size: ReadSize::default(),
        }
    }

    /// Whether the connection holds nothing past the answer just relayed, so the next call
    /// may take it: no bytes read and left over, and for TLS no plaintext the session
    /// decrypted already (which no readiness check or peek of the socket sees) and no
    /// close_notify.
    pub(super) fn is_clean(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match &mut self.stream {
            UpstreamIo::Plain(_) => true,
            UpstreamIo::Tls(tls) => match tls.get_mut().1.process_new_packets() {
                Ok(state) => state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed(),
                Err(_) => false,
            },
        }
    }

    /// Reads the next response head, skipping informational (1xx) responses.
    async fn read_head(
        &mut self,
        head_only: bool,
        own: OwnLines<'_>,
        received: &mut bool,
        out: &mut Vec<u8>,
    ) -> Result<ClientHead, Option<String>> {
        loop {
            if !self.buf.is_empty() {
                *received = true;
                // Slots left unwritten until a header fills one.
                let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default()
                    .parse_response_with_uninit_headers(&mut res, &self.buf, &mut slots);
                match parsed {
                    Ok(httparse::Status::Complete(len)) => {
                        let code = res.code.unwrap_or(0);
                        if code == 101 {
                            return Err(Some("the upstream switched protocols unasked".into()));
                        }
                        if (100..200).contains(&code) {
                            self.buf.advance(len);
                            continue;
                        }
                        let out = std::mem::take(out);
                        let head =
                            client_head(&res, &self.buf, head_only, own, out).map_err(Some)?;
                        self.buf.advance(len);
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_RESPONSE_HEAD => {}
                    Ok(httparse::Status::Partial) => {
                        return Err(Some("the upstream response head is too large".into()))
                    }
                    Err(e) => return Err(Some(format!("invalid upstream response: {e}"))),
                }
            }
            let room = self.read_size.room(&mut self.buf);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) if !*received => return Err(None),
                Ok(0) => return Err(Some("the upstream closed mid-response".into())),
                Ok(n) => self.read_size.after(n, room),
                Err(e) if !*received => {
                    tracing::debug!(error = %e, "upstream connection failed before a response");
                    return Err(None);
                }
                Err(e) => return Err(Some(format!("reading the upstream response: {e}"))),
            }
        }
    }

    /// Relays the body after `out` (the client's response head) to the client, writing each
    /// piece as it arrives. Returns the body bytes sent, and whether any had to be waited
    /// for (when none had, the response ended as its head arrived).
    pub(super) async fn relay(
        &mut self,
        client: &mut impl ClientIo,
        out: &mut Vec<u8>,
        framing: ResponseFraming,
        mut tap: Option<&mut UsageTap>,
    ) -> Result<(u64, bool), RelayError> {
        let mut sent = 0u64;
        let mut waited = false;
        let mut chunked = ChunkedEnd::default();
        let mut left = match framing {
            ResponseFraming::Length(total) => total,
            _ => 0,
        };
        loop {
            // Move what belongs to the body from the buffer to `out`; `ended` once it is all
            // there.
            let ended = match framing {
                ResponseFraming::Empty => true,
                ResponseFraming::Length(_) => {
                    let take = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&self.buf[..take]);
                    if let Some(tap) = tap.as_deref_mut() {
                        tap.feed(&self.buf[..take]);
                    }
                    self.buf.advance(take);
                    left -= take as u64;
                    sent += take as u64;
                    left == 0
                }
                ResponseFraming::Chunked => {
                    let take = match tap.as_deref_mut() {
                        Some(tap) => chunked.advance_with(&self.buf, |data| tap.feed(data)),
                        None => chunked.advance(&self.buf),
                    }
                    .map_err(RelayError::Upstream)?;
                    out.extend_from_slice(&self.buf[..take]);
                    self.buf.advance(take);
                    sent += take as u64;
                    chunked.done()
                }
                ResponseFraming::UntilClose => {
                    if !self.buf.is_empty() {
                        push_chunk(out, &self.buf);
                        if let Some(tap) = tap.as_deref_mut() {
                            tap.feed(&self.buf);
                        }
                        sent += self.buf.len() as u64;
                        self.buf.clear();
                    }
                    false
                }
            };
            send(client, out).await?;
            if ended {
                return Ok((sent, waited));
            }
            waited = true;
            if self.read_more(framing).await? {
                client
                    .send_all(b"0\r\n\r\n")
                    .await
                    .map_err(|_| RelayError::Client)?;
                return Ok((sent, waited));
            }
        }
    }

    /// Reads more of the response into the buffer; `true` when the upstream closed a body
    /// that ends with the connection (any other close is an error).
    async fn read_more(&mut self, framing: ResponseFraming) -> Result<bool, RelayError> {
        let room = self.read_size.room(&mut self.buf);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) if framing == ResponseFraming::UntilClose => Ok(true),
            Ok(0) => Err(RelayError::Upstream(
                "the upstream closed mid-response".into(),
            )),
            Ok(n) => {
                self.read_size.after(n, room);
                Ok(false)
            }
            Err(e) => Err(RelayError::Upstream(format!(
                "reading the upstream response: {e}"
            ))),
        }
    }

    /// Relays an event stream (chunked, or ending with the connection) through `filter`,
    /// which drops the usage chunk the gateway caused by asking for usage: the body is
    /// decoded, filtered and sent to the client chunked, each piece as it arrives (an event
    /// waits only for its own end). The tap reads the decoded body, the dropped chunk too.
    pub(super) async fn relay_filtered(
        &mut self,
        client: &mut impl ClientIo,
        out: &mut Vec<u8>,
        framing: ResponseFraming,
        tap: &mut UsageTap,
        filter: &mut UsageChunkFilter,
    ) -> Result<(u64, bool), RelayError> {
        let mut sent = 0u64;
        let mut waited = false;
        let mut chunked = ChunkedEnd::default();
        let mut left = match framing {
            ResponseFraming::Length(total) => total,
            _ => 0,
        };
        let mut decoded = Vec::new();
        let mut passed = Vec::new();
        // An until-close body has ended when the upstream closed.
        let mut closed = false;
        loop {
            decoded.clear();
            let ended = match framing {
                ResponseFraming::Chunked => {
                    let take = chunked
                        .advance_with(&self.buf, |data| decoded.extend_from_slice(data))
                        .map_err(RelayError::Upstream)?;
                    self.buf.advance(take);
                    chunked.done()
                }
                ResponseFraming::Length(_) => {
                    let take = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    decoded.extend_from_slice(&self.buf[..take]);
                    self.buf.advance(take);
                    left -= take as u64;
                    left == 0
                }
                _ => {
                    decoded.extend_from_slice(&self.buf);
                    self.buf.clear();
                    closed
                }
            };
            tap.feed(&decoded);
            passed.clear();
            filter.push(&decoded, &mut passed);
            if ended {
                filter.finish(&mut passed);
            }
            if !passed.is_empty() {
                push_chunk(out, &passed);
                sent += passed.len() as u64;
            }
            if ended {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            send(client, out).await?;
            if ended {
                return Ok((sent, waited));
            }
            waited = true;
            closed = self.read_more(framing).await?;
        }
    }

    /// Writes `request` to a connection of `to` (`held`, else an idle one, else a new one)
    /// and reads the response head. A reused connection that fails before any response
    /// byte is replaced by another when the request (of `method`) can be sent twice (or
    /// was not sent).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange(
        pool: &Pool<UpstreamConn>,
        to: &FastTo<'_>,
        mut held: Option<UpstreamConn>,
        sent_at: Instant,
        request: &[u8],
        method: &Method,
        own: OwnLines<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(UpstreamConn, ClientHead), Failure> {
        let head_only = *method == Method::HEAD;
        let retry_safe = method.is_idempotent();
        loop {
            let (mut up, reused, sent) = match held.take().or_else(|| pool.take(to.key, sent_at)) {
                Some(up) => (up, true, 0),
                // A new connection (a TLS handshake, maybe) is the rare case: its state
                // is boxed, not carried in every call's.
                None => {
                    let (up, sent) = Box::pin(to.connect(pool, request)).await?;
                    (up, false, sent)
                }
            };
            let written = match up.stream.write_all(&request[sent..]).await {
                Ok(()) => up.stream.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                if reused {
                    continue;
                }
                return Err(Failure::Other(format!("writing the request: {e}")));
            }
            let mut received = false;
            match up.read_head(head_only, own, &mut received, out).await {
                Ok(head) => return Ok((up, head)),
                Err(None) if reused && retry_safe => continue,
                Err(None) => {
                    return Err(Failure::Other(
                        "the upstream closed the connection without a response".into(),
                    ))
                }
                Err(Some(why)) => return Err(Failure::Other(why)),
            }
        }
    }
}

//! The HTTP/1.1 fast path for plain-TCP connections: the request head is parsed once from
//! the connection's buffer, the call goes through the same phases as every other (limits,
//! route, select, authenticate, authorize), the head is written to a kept-alive upstream
//! connection with the gateway's edits, and the response is relayed as its bytes arrive:
//! no dispatch task, no body channel, no per-frame boxing.
//!
//! It takes only the common case: HTTP/1.1 in origin form, no `Transfer-Encoding`, no
//! `Upgrade` or `Expect`, a body of at most [`MAX_BODY`] bytes. The first request that is
//! anything else hands the connection, with the bytes read so far, to the general server
//! (hyper: HTTP/2, upgrades, chunked and large bodies), which serves it from then on.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use infergate_core::snapshot::{ApiRoute, Upstream};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::authn::Caller;
use crate::error::GatewayError;
use crate::forward::{answered, millis, upstream_error, Failure};
use crate::http_rules::{
    self, content_length, forwarded_length, forwards_header, is_hop_by_hop, named,
    removable_by_connection, tokens, ChunkedEnd, Forwarded, RequestFraming,
};
use crate::pool::{Pool, Pooled};
use crate::{CallRecord, ConnInfo, Gateway, Head};
use infergate_sign::HeaderSource;

/// The largest request body the fast path reads whole; larger ones are streamed by the
/// general server.
pub const MAX_BODY: usize = 64 * 1024;
/// Header lines a head may have (the general server's limit too).
const MAX_HEADERS: usize = 100;
/// A request head that has not ended by this size goes to the general server, which answers
/// it with its own error.
const MAX_HEAD: usize = 256 * 1024;
/// A response head larger than this is refused.
const MAX_RESPONSE_HEAD: usize = 128 * 1024;
/// How long a kept-alive client connection may wait idle between requests (the general
/// server's too).
pub(crate) const IDLE: Duration = Duration::from_secs(75);
/// What is read at a time.
const READ_SIZE: usize = 16 * 1024;
/// Bytes a client may send ahead (pipelined) while its call is with the upstream.
const MAX_AHEAD: usize = 1024 * 1024;

/// How a connection served by the fast path ended.
pub enum Ended {
    Closed,
    /// A request the fast path does not take: the general server serves the rest, starting
    /// with the bytes read so far.
    Fallback {
        read: Bytes,
        stream: TcpStream,
    },
}

/// Where the request head at the start of a buffer ends.
#[derive(Debug, PartialEq, Eq)]
enum HeadEnd {
    /// Its length, empty line included.
    At(usize),
    NotYet,
    /// Lines ended by a bare LF, or no end within [`MAX_HEAD`]: the general server reads it.
    Elsewhere,
}

fn head_end(buf: &[u8]) -> HeadEnd {
    static EMPTY_LINE: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    if let Some(at) = EMPTY_LINE.find(buf) {
        return HeadEnd::At(at + 4);
    }
    if buf.len() > MAX_HEAD
        || memchr::memmem::find(buf, b"\n\n").is_some()
        || memchr::memmem::find(buf, b"\n\r\n").is_some()
    {
        return HeadEnd::Elsewhere;
    }
    HeadEnd::NotYet
}

/// A request head the fast path takes, read in place.
struct Parsed<'h> {
    method: Method,
    target: &'h str,
    headers: RawHeaders<'h>,
    framing: RequestFraming,
    body_len: usize,
    close: bool,
}

/// What the fast path makes of a whole request head.
enum HeadRead<'h> {
    Take(Parsed<'h>),
    /// Its framing is ambiguous: answered with an error, and the connection closed.
    Refuse(Refused<'h>),
    /// Not one the fast path takes (or not valid HTTP/1: the general server answers it).
    Elsewhere,
}

/// A head refused for its framing: what the access log names, and why.
struct Refused<'h> {
    method: Method,
    target: &'h str,
    error: GatewayError,
}

/// Parses a whole head (as [`head_end`] found it).
fn read_head<'h>(head: &'h [u8], slots: &'h mut [httparse::Header<'h>]) -> HeadRead<'h> {
    match parse_head(head, slots) {
        Ok(Some(parsed)) => HeadRead::Take(parsed),
        Ok(None) => HeadRead::Elsewhere,
        Err(refused) => HeadRead::Refuse(refused),
    }
}

fn parse_head<'h>(
    head: &'h [u8],
    slots: &'h mut [httparse::Header<'h>],
) -> Result<Option<Parsed<'h>>, Refused<'h>> {
    let mut req = httparse::Request::new(slots);
    // A head that ended earlier, at a bare LF, is not all of `head`.
    if req.parse(head).ok() != Some(httparse::Status::Complete(head.len())) {
        return Ok(None);
    }
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    let (Some(target), Some(1), Some(method)) = (path.filter(|p| plain_target(p)), version, method)
    else {
        return Ok(None);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Ok(None);
    };
    let framing = http_rules::request_framing(true, headers.iter().map(|h| (h.name, h.value)))
        .map_err(|error| Refused {
            method: method.clone(),
            target,
            error,
        })?;
    let body_len = match framing {
        RequestFraming::None => 0,
        RequestFraming::Length(n) => n,
        // Chunked bodies are the general server's.
        RequestFraming::Chunked => return Ok(None),
    };
    let mut close = false;
    for header in headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect") {
            return Ok(None);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(header.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Ok(None);
                }
            }
        }
    }
    let Some(body_len) = usize::try_from(body_len).ok().filter(|&n| n <= MAX_BODY) else {
        return Ok(None);
    };
    Ok(Some(Parsed {
        method,
        target,
        headers: RawHeaders {
            lines: headers,
            head,
        },
        framing,
        body_len,
        close,
    }))
}

/// The header lines of a request head parsed in place, as the call's phases read them, and
/// the head they lie in.
#[derive(Debug, Clone, Copy)]
pub struct RawHeaders<'h> {
    pub lines: &'h [httparse::Header<'h>],
    pub head: &'h [u8],
}

impl HeaderSource for RawHeaders<'_> {
    fn values<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]> {
        self.lines
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    fn all(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.lines.iter().map(|h| (h.name, h.value))
    }
}

/// Where `part` lies in `within`, when it is a slice of it.
fn offset_in(within: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(within.as_ptr() as usize)?;
    (at + part.len() <= within.len()).then_some(at)
}

/// Copies header lines to an output buffer: lines kept as they were sent go in runs of whole
/// lines straight from the head they were parsed from, one copy per run.
struct LineCopier<'h> {
    head: &'h [u8],
    /// The run of whole lines not yet copied.
    run: std::ops::Range<usize>,
}

impl<'h> LineCopier<'h> {
    fn new(head: &'h [u8]) -> Self {
        Self { head, run: 0..0 }
    }

    /// The span of `header`'s line in the head, CRLF included: `name: value` with nothing
    /// but spaces between colon and value (as the line will be written anyway).
    fn line(&self, header: &httparse::Header<'_>) -> Option<std::ops::Range<usize>> {
        let start = offset_in(self.head, header.name.as_bytes())?;
        let value = offset_in(self.head, header.value)?;
        let colon = start + header.name.len();
        let end = value + header.value.len();
        let gap = self.head.get(colon..value)?;
        let plain = gap.first() == Some(&b':') && gap[1..].iter().all(|&b| b == b' ');
        (plain && self.head.get(end..end + 2) == Some(b"\r\n")).then_some(start..end + 2)
    }

    /// Copies `header` (now, or with the run it continues).
    fn keep(&mut self, out: &mut Vec<u8>, header: &httparse::Header<'_>) {
        match self.line(header) {
            Some(line) if line.start == self.run.end && !self.run.is_empty() => {
                self.run.end = line.end;
            }
            Some(line) => {
                self.flush(out);
                self.run = line;
            }
            None => {
                self.flush(out);
                push_header(out, header.name.as_bytes(), header.value);
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(run) = self.head.get(self.run.clone()) {
            out.extend_from_slice(run);
        }
        self.run = 0..0;
    }
}

/// Writes one `name: value` line.
fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A request target (as httparse took it) the fast path takes as it is: origin form, ASCII,
/// none of the bytes the general server's URI parser treats specially or refuses (`#`
/// starts a fragment it drops; `"<>`{}` it refuses in part of the target), at most its
/// length limit.
fn plain_target(target: &str) -> bool {
    // httparse took no control byte, space or DEL: what remains to refuse is non-ASCII and
    // seven characters, searched for several bytes at a time.
    let bytes = target.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes.len() < usize::from(u16::MAX)
        && bytes.is_ascii()
        && memchr::memchr3(b'"', b'#', b'<', bytes).is_none()
        && memchr::memchr3(b'>', b'`', b'{', bytes).is_none()
        && memchr::memchr(b'}', bytes).is_none()
}

/// The path and query of an origin-form target.
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.bytes().position(|b| b == b'?') {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    }
}

/// A connection's timer, re-armed lazily: a deadline later than the one armed costs nothing
/// until the timer fires early and finds it moved; only an earlier deadline resets it.
struct LazyTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Deadline,
}

type Deadline = tokio::time::Instant;

impl LazyTimer {
    fn new(deadline: Deadline) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed: deadline,
        }
    }

    /// Resolves at `deadline`.
    async fn until(&mut self, deadline: Deadline) {
        loop {
            if self.armed > deadline {
                self.arm(deadline);
            }
            self.sleep.as_mut().await;
            if Deadline::now() >= deadline {
                return;
            }
            self.arm(deadline);
        }
    }

    fn arm(&mut self, deadline: Deadline) {
        self.sleep.as_mut().reset(deadline);
        self.armed = deadline;
    }
}

/// Serves `stream` until it closes, the gateway stops, or a request needs the general
/// server.
pub async fn serve(
    gateway: &Gateway,
    mut stream: TcpStream,
    conn: &ConnInfo,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    // What the client sends while a call is with the upstream; appended to `buf` after it.
    let mut ahead = BytesMut::new();
    let listener = &gateway.settings.listener;
    let mut active = Deadline::now();
    // When the head being read began (the connection's start counts for its first).
    let mut head_started = Some(active);
    let mut idle = LazyTimer::new(active + listener.header_timeout);
    let mut exchanges = LazyTimer::new(active + IDLE);
    let mut scratch = Scratch::new(gateway.upstreams.h1_pool.clone());
    loop {
        let end = loop {
            match head_end(&buf) {
                HeadEnd::At(end) => break end,
                HeadEnd::Elsewhere => {
                    return Ended::Fallback {
                        read: buf.freeze(),
                        stream,
                    }
                }
                HeadEnd::NotYet => {}
            }
            if *stop.borrow() && buf.is_empty() {
                return Ended::Closed;
            }
            // A head that began and did not end in what was read: its clock starts now (the
            // clock is read only when a head takes more than one read).
            if !buf.is_empty() {
                head_started.get_or_insert_with(Deadline::now);
            }
            buf.reserve(READ_SIZE);
            // Idle between requests, then the whole head within the header timeout.
            let deadline = match head_started {
                Some(started) => started + listener.header_timeout,
                None => active + IDLE,
            };
            // In this order: no random draw per wake-up.
            let read = tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => read,
                _ = stop.changed(), if buf.is_empty() => return Ended::Closed,
                () = idle.until(deadline) => return Ended::Closed,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Ended::Closed;
            }
        };
        // The head is read in place; when its body has not all arrived, the rest is read
        // and the head parsed again (the buffer may have moved).
        let used = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let request = match read_head(&buf[..end], &mut slots) {
                HeadRead::Take(request) => request,
                HeadRead::Elsewhere => {
                    return Ended::Fallback {
                        read: buf.freeze(),
                        stream,
                    }
                }
                HeadRead::Refuse(refused) => {
                    let (path, query) = split_target(refused.target);
                    let record = gateway.begin(&refused.method, path, query, 0);
                    gateway
                        .answer_error(refused.error, record, &mut stream, true)
                        .await;
                    return Ended::Closed;
                }
            };
            let used = end + request.body_len;
            if buf.len() >= used {
                let close = request.close || *stop.borrow();
                let mut client = Client {
                    stream: &mut stream,
                    ahead: &mut ahead,
                    timer: &mut exchanges,
                    scratch: &mut scratch,
                };
                let body = &buf[end..used];
                match gateway
                    .serve_fast(&request, body, conn, &mut client, close)
                    .await
                {
                    Some(ended) if !*stop.borrow() => active = Deadline::from_std(ended),
                    _ => return Ended::Closed,
                }
                break used;
            }
            buf.reserve(used - buf.len());
            // The body may pause at most the body idle timeout between reads.
            let read = tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => read,
                () = idle.until(Deadline::now() + listener.body_idle_timeout) => return Ended::Closed,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Ended::Closed;
            }
        };
        buf.advance(used);
        if !ahead.is_empty() {
            buf.extend_from_slice(&ahead);
            ahead.clear();
        }
        head_started = None;
    }
}

/// The client's connection, the bytes it sent past the current request, and the timer of
/// upstream exchanges.
struct Client<'c> {
    stream: &'c mut TcpStream,
    ahead: &'c mut BytesMut,
    timer: &'c mut LazyTimer,
    scratch: &'c mut Scratch,
}

/// A client connection's buffers for the bytes of upstream requests and client response
/// heads, reused from call to call, and the upstream connection of its last call.
struct Scratch {
    request: Vec<u8>,
    response: Vec<u8>,
    held: Option<Held>,
    pool: Arc<Pool<UpstreamConn>>,
}

/// An upstream connection kept by a client connection for its next call: a client mostly
/// calls the same API again, and then takes it back with no pool lock and no lookup.
struct Held {
    authority: Arc<str>,
    conn: UpstreamConn,
    since: Instant,
}

impl Held {
    /// Hands the connection to the pool, idle since it was held.
    fn release(self, pool: &Pool<UpstreamConn>) {
        pool.put(&self.authority, self.conn, self.since);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The client is gone: its upstream connection serves the other clients.
        if let Some(held) = self.held.take() {
            held.release(&self.pool);
        }
    }
}

impl Scratch {
    /// Buffers larger than this are not kept while the connection waits.
    const KEPT: usize = 16 * 1024;

    fn new(pool: Arc<Pool<UpstreamConn>>) -> Self {
        Self {
            request: Vec::new(),
            response: Vec::new(),
            held: None,
            pool,
        }
    }

    /// The held connection when it is to `authority` and still usable at `now`; one to
    /// another upstream goes to the pool.
    fn take_held(&mut self, authority: &Arc<str>, now: Instant) -> Option<UpstreamConn> {
        let held = self.held.take()?;
        if *held.authority == **authority {
            return (self.pool.still_fresh(held.since, now) && !held.conn.is_closed())
                .then_some(held.conn);
        }
        held.release(&self.pool);
        None
    }

    /// Keeps `conn`, idle since `since`, for the connection's next call.
    fn hold(&mut self, authority: &Arc<str>, conn: UpstreamConn, since: Instant) {
        let held = Held {
            authority: authority.clone(),
            conn,
            since,
        };
        if let Some(before) = self.held.replace(held) {
            before.release(&self.pool);
        }
    }

    fn keep(&mut self, request: Vec<u8>, response: Vec<u8>) {
        if request.capacity() <= Self::KEPT {
            self.request = request;
        }
        if response.capacity() <= Self::KEPT {
            self.response = response;
        }
    }
}

/// How waiting for an upstream exchange ended.
enum Waited<T> {
    Done(T),
    TimedOut,
    /// The client closed its connection.
    Gone,
}

impl Client<'_> {
    /// Waits for `work` until `deadline`; dropping `work` (when the client closes its
    /// connection first, or time runs out) cancels the upstream call. Bytes the client sends
    /// meanwhile are kept for later.
    async fn unless_gone<T>(
        &mut self,
        work: impl std::future::Future<Output = T>,
        deadline: Deadline,
    ) -> Waited<T> {
        tokio::pin!(work);
        loop {
            // The exchange first: once it is done, nothing else is polled. The client's
            // bytes are read only once they are there: no buffer is set aside before.
            let ready = tokio::select! {
                biased;
                done = &mut work => return Waited::Done(done),
                () = self.timer.until(deadline) => return Waited::TimedOut,
                ready = std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)),
                    if self.ahead.len() < MAX_AHEAD => ready,
            };
            if ready.is_err() {
                return Waited::Gone;
            }
            self.ahead.reserve(READ_SIZE);
            match self.stream.try_read_buf(self.ahead) {
                Ok(0) => return Waited::Gone,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Waited::Gone,
            }
        }
    }
}

/// The framing of a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    /// Relayed as it is, chunk framing included.
    Chunked,
    /// Ends when the upstream closes; sent to the client chunked.
    UntilClose,
}

/// A response head, rewritten for the client (without its final empty line).
#[derive(Debug)]
struct ResponseHead {
    status: u16,
    out: Vec<u8>,
    framing: Framing,
    /// Whether the upstream keeps the connection open after this response.
    keep_alive: bool,
}

/// Rewrites a parsed response head for the client: hop-by-hop headers (and those the
/// upstream lists in `Connection`) dropped, `X-Request-Id` set, framing decided.
fn response_head(
    res: &httparse::Response<'_, '_>,
    raw: &[u8],
    head_only: bool,
    request_id: &[u8],
    mut out: Vec<u8>,
) -> Result<ResponseHead, String> {
    let status = res.code.unwrap_or(0);
    let mut listed: SmallVec<[&[u8]; 4]> = SmallVec::new();
    let mut close = res.version != Some(1);
    let mut chunked = None;
    let mut length: Option<u64> = None;
    let mut size = 64 + request_id.len();
    for header in res.headers.iter() {
        let name = header.name.as_bytes();
        size += name.len() + header.value.len() + 4;
        if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(header.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && res.version == Some(0) {
                    close = false;
                }
                listed.push(token);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = tokens(header.value).last().unwrap_or(b"");
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(header.value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Err("the upstream sent an invalid Content-Length".into()),
            }
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    out.clear();
    out.reserve(size);
    out.extend_from_slice(b"HTTP/1.1 ");
    let code = http::StatusCode::from_u16(status)
        .map_err(|_| format!("the upstream answered status {status}"))?;
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b' ');
    let reason = res
        .reason
        .filter(|r| !r.is_empty())
        .or_else(|| code.canonical_reason());
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut lines = LineCopier::new(raw);
    for header in res.headers.iter() {
        let name = header.name.as_bytes();
        // The upstream's `X-Request-Id` is replaced by the gateway's.
        let hop = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case(b"x-request-id")
            || listed.iter().any(|l| name.eq_ignore_ascii_case(l))
            || (chunked.is_some() && name.eq_ignore_ascii_case(b"content-length"));
        let keep_te =
            framing == Framing::Chunked && name.eq_ignore_ascii_case(b"transfer-encoding");
        if !hop || keep_te {
            lines.keep(&mut out, header);
        }
    }
    lines.flush(&mut out);
    if framing == Framing::UntilClose {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    Ok(ResponseHead {
        status,
        out,
        framing,
        keep_alive: !close && framing != Framing::UntilClose,
    })
}

/// A kept-alive connection to an upstream and the bytes read from it but not yet used.
pub struct UpstreamConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Pooled for UpstreamConn {
    fn is_closed(&self) -> bool {
        // An idle connection has nothing to read: if it is readable, the upstream closed it
        // (or sent bytes nobody asked for). The readiness flag can be stale, so a readable
        // one is probed once.
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Why relaying a response body stopped early.
enum RelayError {
    Upstream(String),
    Client,
}

impl UpstreamConn {
    /// Reads the next response head, skipping informational (1xx) responses.
    async fn read_head(
        &mut self,
        head_only: bool,
        request_id: &[u8],
        received: &mut bool,
        out: &mut Vec<u8>,
    ) -> Result<ResponseHead, Option<String>> {
        loop {
            if !self.buf.is_empty() {
                *received = true;
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut headers);
                match res.parse(&self.buf) {
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
                        let head = response_head(&res, &self.buf, head_only, request_id, out)
                            .map_err(Some)?;
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
            self.buf.reserve(READ_SIZE);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) if !*received => return Err(None),
                Ok(0) => return Err(Some("the upstream closed mid-response".into())),
                Ok(_) => {}
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
    async fn relay(
        &mut self,
        client: &mut TcpStream,
        out: &mut Vec<u8>,
        framing: Framing,
    ) -> Result<(u64, bool), RelayError> {
        let mut sent = 0u64;
        let mut waited = false;
        let mut chunked = ChunkedEnd::default();
        let mut left = match framing {
            Framing::Length(total) => total,
            _ => 0,
        };
        loop {
            // Move what belongs to the body from the buffer to `out`; `ended` once it is all
            // there.
            let ended = match framing {
                Framing::Empty => true,
                Framing::Length(_) => {
                    let take = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&self.buf[..take]);
                    self.buf.advance(take);
                    left -= take as u64;
                    sent += take as u64;
                    left == 0
                }
                Framing::Chunked => {
                    let take = chunked.advance(&self.buf).map_err(RelayError::Upstream)?;
                    out.extend_from_slice(&self.buf[..take]);
                    self.buf.advance(take);
                    sent += take as u64;
                    chunked.done()
                }
                Framing::UntilClose => {
                    if !self.buf.is_empty() {
                        // Writing to a Vec cannot fail.
                        let _ = write!(out, "{:x}\r\n", self.buf.len());
                        out.extend_from_slice(&self.buf);
                        out.extend_from_slice(b"\r\n");
                        sent += self.buf.len() as u64;
                        self.buf.clear();
                    }
                    false
                }
            };
            if !out.is_empty() {
                client
                    .write_all(out)
                    .await
                    .map_err(|_| RelayError::Client)?;
                out.clear();
            }
            if ended {
                return Ok((sent, waited));
            }
            waited = true;
            self.buf.reserve(READ_SIZE);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) if framing == Framing::UntilClose => {
                    client
                        .write_all(b"0\r\n\r\n")
                        .await
                        .map_err(|_| RelayError::Client)?;
                    return Ok((sent, waited));
                }
                Ok(0) => {
                    return Err(RelayError::Upstream(
                        "the upstream closed mid-response".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(RelayError::Upstream(format!(
                        "reading the upstream response: {e}"
                    )))
                }
            }
        }
    }
}

/// `METHOD target HTTP/1.1`, `host`, the client's headers that [`forwards_header`] lets
/// through (less those its `Connection` lists and may remove), the headers the gateway sets,
/// the framing the gateway decides, the body.
fn request_bytes(
    head: &Head<'_, RawHeaders<'_>>,
    upstream: &Upstream,
    rest: &str,
    forwarded: &Forwarded<'_>,
    framing: RequestFraming,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    let headers = head.headers.lines;
    out.clear();
    out.reserve(256 + head.headers.head.len() + upstream.base_path.len() + body.len());
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream.base_path.as_bytes());
    out.extend_from_slice(rest.as_bytes());
    if upstream.base_path.is_empty() && rest.is_empty() {
        out.push(b'/');
    }
    if let Some(query) = head.query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(upstream.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    let host = head.headers.values("host").next();
    // Names listed in `Connection` are hop-by-hop too; most requests have none.
    let connection = head.headers.values("connection").next().is_some();
    let listed = |name: &str| {
        connection
            && head
                .headers
                .values("connection")
                .flat_map(tokens)
                .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut lines = LineCopier::new(head.headers.head);
    for header in headers {
        let kind = named(header.name.as_bytes());
        if !forwards_header(kind, header.value, false)
            || (removable_by_connection(kind) && listed(header.name))
        {
            continue;
        }
        lines.keep(out, header);
    }
    lines.flush(out);
    let chain = http_rules::client_chain(forwarded.conn, head.headers.values("x-forwarded-for"));
    forwarded.set_forwarded_headers(host, chain.as_deref(), |name, value| {
        push_header(out, name.as_str().as_bytes(), value);
    });
    if let Some(length) = forwarded_length(framing, Some(body.len() as u64)) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {length}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A whole response the gateway answers itself.
fn error_bytes(err: &GatewayError, request_id: &str, close: bool) -> (u16, Vec<u8>) {
    let (status, body) = err.body(request_id);
    let reason = status.canonical_reason().unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\nx-request-id: {request_id}\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    (status.as_u16(), out)
}

impl Gateway {
    /// Serves one call of the fast path: `Some(when it ended)` while the client connection
    /// stays open, `None` when it must close.
    async fn serve_fast(
        &self,
        request: &Parsed<'_>,
        body: &[u8],
        conn: &ConnInfo,
        client: &mut Client<'_>,
        close: bool,
    ) -> Option<Instant> {
        let (path, query) = split_target(request.target);
        let head = Head {
            method: &request.method,
            path,
            query,
            headers: &request.headers,
        };
        let mut record = self.begin(&request.method, path, query, body.len() as u64);
        let admitted = self.admit_fast(&head, body, conn, &mut record);
        let (api, caller) = match admitted {
            Ok(admitted) => admitted,
            Err(err) => return self.answer_error(err, record, client.stream, close).await,
        };
        let forwarded = self
            .forward_fast(
                &api,
                &head,
                &caller,
                conn,
                (body, request.framing),
                &mut record,
                client,
                close,
            )
            .await;
        match forwarded {
            Ok(ended) => ended,
            Err(err) => self.answer_error(err, record, client.stream, close).await,
        }
    }

    fn admit_fast(
        &self,
        head: &Head<'_, RawHeaders<'_>>,
        body: &[u8],
        conn: &ConnInfo,
        record: &mut CallRecord,
    ) -> Result<(Arc<ApiRoute>, Caller), GatewayError> {
        let snapshot = self.snapshots.load();
        let selected = self.select(&snapshot, head, conn, record)?;
        let body_hash = if selected.needs_hash && !body.is_empty() {
            Some(self.hash_body(&selected.api, head.headers, body)?)
        } else {
            None
        };
        let caller = self.admit(
            &snapshot,
            &selected,
            head,
            body_hash.as_deref(),
            body.is_empty(),
            record,
        )?;
        Ok((selected.api, caller))
    }

    /// Answers `err` on `stream`; `Some(when)` while the connection stays open (not when
    /// `close` or the error itself closes it).
    async fn answer_error(
        &self,
        err: GatewayError,
        mut record: CallRecord,
        stream: &mut TcpStream,
        close: bool,
    ) -> Option<Instant> {
        let close = close || err.closes_connection();
        self.refused(&err, &mut record);
        let (status, bytes) = error_bytes(&err, record.request_id.as_str(), close);
        let now = Instant::now();
        self.observe_head(&record, now);
        let written = stream.write_all(&bytes).await.is_ok();
        self.observers.finish(&record, status, 0);
        (written && !close).then_some(now)
    }

    /// Sends the call to the API's upstreams in turn until one answers, then relays the
    /// response. `Ok` once a response head was relayed: `Some(when the response ended)` while
    /// the client connection stays open.
    #[allow(clippy::too_many_arguments)]
    async fn forward_fast(
        &self,
        api: &ApiRoute,
        head: &Head<'_, RawHeaders<'_>>,
        caller: &Caller,
        conn: &ConnInfo,
        (body, framing): (&[u8], RequestFraming),
        record: &mut CallRecord,
        client: &mut Client<'_>,
        close: bool,
    ) -> Result<Option<Instant>, GatewayError> {
        let metrics = self.observers.metrics.as_ref();
        let path = head.path;
        let rest = &path[api.api_path.len().min(path.len())..];
        let order = self.upstreams.order(api)?;
        let mut last_error = String::new();
        // The connection's buffers, given back once the call is relayed.
        let mut request = std::mem::take(&mut client.scratch.request);
        let mut response = std::mem::take(&mut client.scratch.response);
        for upstream in order {
            if upstream.scheme != "http" {
                last_error = format!("{} upstreams are not supported", upstream.scheme);
                continue;
            }
            let forwarded = Forwarded {
                api_id: &api.api_id,
                caller,
                conn,
                request_id: record.request_id.as_bytes(),
            };
            request_bytes(
                head,
                upstream,
                rest,
                &forwarded,
                framing,
                body,
                &mut request,
            );
            record.upstream = Some(upstream.authority.clone());
            let sent_at = Instant::now();
            let held = client.scratch.take_held(&upstream.authority, sent_at);
            let exchange = self.exchange(
                &upstream.authority,
                held,
                sent_at,
                &request,
                head.method,
                record.request_id.as_bytes(),
                &mut response,
            );
            let result = match client
                .unless_gone(exchange, Deadline::from_std(sent_at) + api.service.timeout)
                .await
            {
                Waited::Done(result) => result,
                Waited::TimedOut => Err(Failure::Timeout),
                Waited::Gone => {
                    // The client went away: the upstream call was dropped with it.
                    self.observers.finish(record, 499, 0);
                    return Ok(None);
                }
            };
            let (mut up, head) = match result {
                Ok(pair) => pair,
                Err(failure) => {
                    record.upstream_ms = Some(millis(sent_at.elapsed()));
                    last_error = self.upstreams.failed(api, upstream, failure, metrics)?;
                    continue;
                }
            };
            // One reading of the clock for the upstream's time and the time to the head.
            let now = Instant::now();
            answered(record, upstream, sent_at, now, metrics);
            self.observe_head(record, now);
            let mut out = head.out;
            if close {
                out.extend_from_slice(b"connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
            let relayed = up.relay(client.stream, &mut out, head.framing).await;
            client.scratch.keep(request, out);
            let ended = match relayed {
                Ok((sent, waited)) => {
                    let ended = if waited { Instant::now() } else { now };
                    if head.keep_alive && up.buf.is_empty() {
                        client.scratch.hold(&upstream.authority, up, ended);
                    }
                    self.observers.finish(record, head.status, sent);
                    (!close).then_some(ended)
                }
                Err(err) => {
                    if let RelayError::Upstream(why) = err {
                        upstream_error(metrics, &upstream.authority, "other");
                        tracing::warn!(upstream = %upstream.authority, error = %why, "upstream response failed");
                    }
                    self.observers.finish(record, head.status, 0);
                    None
                }
            };
            return Ok(ended);
        }
        Err(GatewayError::UpstreamUnavailable(last_error))
    }

    /// Writes `request` to a connection of `authority` (`held`, else an idle one, else a
    /// new one) and reads the response head. A reused connection that fails before any
    /// response byte is replaced by another when the request (of `method`) can be sent
    /// twice (or was not sent).
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        authority: &str,
        mut held: Option<UpstreamConn>,
        sent_at: Instant,
        request: &[u8],
        method: &Method,
        request_id: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(UpstreamConn, ResponseHead), Failure> {
        let pool = &self.upstreams.h1_pool;
        let head_only = *method == Method::HEAD;
        let retry_safe = method.is_idempotent();
        loop {
            let (mut up, reused) = match held.take().or_else(|| pool.take(authority, sent_at)) {
                Some(up) => (up, true),
                None => {
                    let stream = pool
                        .connect_tcp(authority)
                        .await
                        .map_err(Failure::Connect)?;
                    let up = UpstreamConn {
                        stream,
                        buf: BytesMut::with_capacity(READ_SIZE),
                    };
                    (up, false)
                }
            };
            if let Err(e) = up.stream.write_all(request).await {
                if reused {
                    continue;
                }
                return Err(Failure::Other(format!("writing the request: {e}")));
            }
            let mut received = false;
            match up
                .read_head(head_only, request_id, &mut received, out)
                .await
            {
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

#[cfg(test)]
mod tests;

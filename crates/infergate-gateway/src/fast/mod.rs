//! The HTTP/1.1 fast path for plain-TCP connections and TLS ones that chose HTTP/1.1
//! (what differs between the two is in [`ClientIo`]): the request head is parsed once from
//! the connection's buffer, the call goes through the same phases as every other (limits,
//! route, select, authenticate, authorize), the head is written to a kept-alive upstream
//! connection with the gateway's edits, and the response is relayed as its bytes arrive:
//! no dispatch task, no body channel, no per-frame boxing.
//!
//! It takes only the common case: HTTP/1.1 in origin form, no `Transfer-Encoding`, no
//! `Upgrade` or `Expect`, not `CONNECT`, a body of at most [`MAX_BODY`] bytes. The first
//! request that is anything else hands the connection, with the bytes read so far, to the
//! general server (hyper: HTTP/2, upgrades, chunked and large bodies), which serves it
//! from then on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use infergate_core::snapshot::ApiRoute;
use tokio::sync::watch;

use crate::authn::Caller;
use crate::error::GatewayError;
use crate::http_rules::ConnInfo;
use crate::http_rules::{Forwarded, RequestFraming, ResponseFraming};
use crate::phases::{BodySeen, CallRecord, Deferred, Head};
use crate::upstreams::pool::{Pool, Pooled};
use crate::upstreams::tls::UpstreamTls;
use crate::upstreams::{Answered, Attempt, Attempted, Attempts, Failure};
use crate::usage::{Media, UsageChunkFilter, UsageTap};
use crate::Gateway;
use head::{
    head_end, read_head, request_bytes, split_target, HeadEnd, HeadRead, Parsed, RawHeaders,
    FAST_HEADERS,
};
use relay::{error_bytes, ClientHead, FastTo, OwnLines, ReadSize, RelayError};

pub(crate) use client_io::ClientIo;
pub(crate) use relay::UpstreamConn;

mod client_io;
mod head;
mod relay;

/// How long a kept-alive client connection may wait idle between requests (the general
/// server's too).
pub(crate) const IDLE: Duration = Duration::from_secs(75);
/// Bytes a client may send ahead (pipelined) while its call is with the upstream.
const MAX_AHEAD: usize = 1024 * 1024;
/// How long a kept-alive client connection waits for its next request before it gives back
/// its buffers and its upstream connection (to the pool) and waits holding nothing.
const REST_AFTER: Duration = Duration::from_millis(100);

/// Whether a connection holds buffers or an upstream connection (else it rests, idle
/// between requests), counted in a gauge while it does.
struct Holding {
    gauge: Option<prometheus::IntGauge>,
    on: bool,
}

impl Holding {
    fn new(gauge: Option<prometheus::IntGauge>) -> Self {
        if let Some(gauge) = &gauge {
            gauge.inc();
        }
        Self { gauge, on: true }
    }

    fn set(&mut self, on: bool) {
        if on != self.on {
            if let Some(gauge) = &self.gauge {
                if on {
                    gauge.inc();
                } else {
                    gauge.dec();
                }
            }
            self.on = on;
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// How a connection served by the fast path ended.
pub enum Ended<S> {
    Closed,
    /// A request the fast path does not take: the general server serves the rest, starting
    /// with the bytes read so far.
    Fallback {
        read: Bytes,
        stream: S,
    },
}

/// A connection's timer, re-armed lazily: a deadline later than the one armed costs nothing
/// until the timer fires early and finds it moved; only an earlier deadline resets it.
/// Polled again by the task whose waker it holds, while the timer has neither fired nor
/// been re-armed, it answers from the timer's state alone: the waker registered at the last
/// poll (made outside the task's budget, so that it does register) is still the one the
/// timer will wake.
struct LazyTimer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Deadline,
    /// The waker the armed timer holds, once polled since it was armed.
    waker: Option<Waker>,
}

type Deadline = tokio::time::Instant;

impl LazyTimer {
    fn new(deadline: Deadline) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed: deadline,
            waker: None,
        }
    }

    /// Resolves at `deadline`.
    async fn until(&mut self, deadline: Deadline) {
        loop {
            if self.armed > deadline {
                self.arm(deadline);
            }
            std::future::poll_fn(|cx| self.poll_armed(cx)).await;
            if Deadline::now() >= deadline {
                return;
            }
            self.arm(deadline);
        }
    }

    /// Whether the armed deadline has passed.
    fn poll_armed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(waker) = &self.waker {
            if waker.will_wake(cx.waker()) && !self.sleep.is_elapsed() {
                return Poll::Pending;
            }
        }
        // Polled outside the task's budget: a `Sleep` out of budget answers `Pending` without
        // holding the waker, which the polls after this one count on.
        match std::pin::pin!(tokio::task::unconstrained(self.sleep.as_mut())).poll(cx) {
            Poll::Ready(()) => {
                self.waker = None;
                Poll::Ready(())
            }
            Poll::Pending => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn arm(&mut self, deadline: Deadline) {
        self.sleep.as_mut().reset(deadline);
        self.armed = deadline;
        self.waker = None;
    }
}

/// Pins the future `make` gives in a box allocated before it is made, so that it can be
/// written in place: the call's state is a few KB, and built on the stack it would be copied.
fn boxed<F: std::future::Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// Whether the gateway is stopping. The signal only ever turns `true`, and a connection's
/// receiver marks no value seen before it returns (its `changed` ends the connection at
/// once): a change since the receiver was made is the stop. An atomic load, where reading
/// the value takes the channel's lock.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    stop.has_changed().unwrap_or(true)
}

/// Serves `stream` until it closes, the gateway stops, or a request needs the general
/// server.
pub async fn serve<S: ClientIo>(
    gateway: &Gateway,
    mut stream: S,
    conn: &ConnInfo,
    stop: &mut watch::Receiver<bool>,
) -> Ended<S> {
    // Taken when the first bytes arrive.
    let mut buf = BytesMut::new();
    let mut read_size = ReadSize::default();
    // What the client sends while a call is with the upstream; appended to `buf` after it.
    let mut ahead = BytesMut::new();
    let listener = &gateway.settings.listener;
    let mut active = Deadline::now();
    // When the head being read began (the connection's start counts for its first).
    let mut head_started = Some(active);
    // One timer for every wait of the connection: for its next request's head or body, and
    // for its calls' upstream exchanges (never two at once).
    let mut timer = LazyTimer::new(active + listener.header_timeout);
    let mut scratch = Scratch::new(gateway.fast_pool.clone());
    let mut holding = Holding::new(gateway.metrics().map(|m| m.holding_connections.clone()));
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
            if stopping(stop) && buf.is_empty() {
                return Ended::Closed;
            }
            // A head that began and did not end in what was read: its clock starts now (the
            // clock is read only when a head takes more than one read).
            if !buf.is_empty() {
                head_started.get_or_insert_with(Deadline::now);
            }
            // Idle between requests, then the whole head within the header timeout.
            let deadline = match head_started {
                Some(started) => started + listener.header_timeout,
                None => active + IDLE,
            };
            let between = head_started.is_none() && buf.is_empty();
            if between && !holding.on {
                // Holding nothing until the client sends again.
                let ready = tokio::select! {
                    biased;
                    ready = stream.readable() => ready,
                    _ = stop.changed() => return Ended::Closed,
                    () = timer.until(deadline) => return Ended::Closed,
                };
                if ready.is_err() {
                    return Ended::Closed;
                }
                holding.set(true);
            }
            let room = read_size.room(&mut buf);
            // Between requests, the connection rests after a moment idle; with a head begun
            // (and not ended), it still gives back its upstream connection then.
            let restable = (between && holding.on) || scratch.holds();
            let wake = if restable {
                deadline.min(active + REST_AFTER)
            } else {
                deadline
            };
            // In this order: no random draw per wake-up. A connection that rests within
            // `REST_AFTER` sees the stop then, at the top of the loop: it waits on the signal
            // only when it will not rest (waiting takes a lock to join the signal's waiters
            // and another to leave them, which every call would pay).
            let read = tokio::select! {
                biased;
                read = stream.read_some(&mut buf) => Some(read),
                _ = stop.changed(), if buf.is_empty() && !restable => return Ended::Closed,
                () = timer.until(wake) => None,
            };
            let Some(read) = read else {
                if Deadline::now() >= deadline {
                    return Ended::Closed;
                }
                // Its upstream connection goes to the pool, its buffers to the allocator
                // (those of a head begun are kept).
                scratch.rest();
                if between {
                    buf = BytesMut::new();
                    ahead = BytesMut::new();
                    read_size = ReadSize::default();
                    holding.set(false);
                }
                continue;
            };
            match read {
                Ok(n) if n > 0 => read_size.after(n, room),
                _ => return Ended::Closed,
            }
        };
        // The head is read in place; when its body has not all arrived, the rest is read
        // and the head parsed again (the buffer may have moved).
        let used = loop {
            let mut client = Client {
                stream: &mut stream,
                ahead: &mut ahead,
                timer: &mut timer,
                scratch: &mut scratch,
                stop,
            };
            // The head's slots and the call's state are allocated together, for the call
            // alone: a connection waiting between calls holds none of it.
            let call = boxed(|| gateway.serve_head(&buf, end, conn, &mut client));
            let used = match call.await {
                HeadServed::Called { used, ended } => match ended {
                    Some(ended) if !stopping(stop) => {
                        active = Deadline::from_std(ended);
                        break used;
                    }
                    _ => return Ended::Closed,
                },
                HeadServed::Elsewhere => {
                    return Ended::Fallback {
                        read: buf.freeze(),
                        stream,
                    }
                }
                HeadServed::Refused => return Ended::Closed,
                HeadServed::BodyToCome { used } => used,
            };
            buf.reserve(used - buf.len());
            // The body may pause at most the body idle timeout between reads.
            let read = tokio::select! {
                biased;
                read = stream.read_some(&mut buf) => read,
                () = timer.until(Deadline::now() + listener.body_idle_timeout) => return Ended::Closed,
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

/// The client's connection, the bytes it sent past the current request, the connection's
/// timer (for its upstream exchanges), and the gateway's stop signal.
struct Client<'c, S> {
    stream: &'c mut S,
    ahead: &'c mut BytesMut,
    timer: &'c mut LazyTimer,
    scratch: &'c mut Scratch,
    stop: &'c watch::Receiver<bool>,
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
        if Arc::ptr_eq(&held.authority, authority) || *held.authority == **authority {
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

    /// Whether the connection holds an upstream connection or buffers for calls.
    fn holds(&self) -> bool {
        self.held.is_some() || self.request.capacity() > 0 || self.response.capacity() > 0
    }

    /// Gives back what the connection holds while idle: its upstream connection to the
    /// pool, its buffers to the allocator.
    fn rest(&mut self) {
        if let Some(held) = self.held.take() {
            held.release(&self.pool);
        }
        self.request = Vec::new();
        self.response = Vec::new();
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

impl<S: ClientIo> Client<'_, S> {
    /// Waits for `work` until `deadline`; dropping `work` (when the client closes its
    /// connection first, or time runs out) cancels the upstream call. Bytes the client sends
    /// meanwhile are kept for later. `work` is pinned where it was made: a future moved in
    /// here would take its room twice in every call's state (as the argument, and pinned).
    async fn unless_gone<T>(
        &mut self,
        mut work: Pin<&mut impl std::future::Future<Output = T>>,
        deadline: Deadline,
    ) -> Waited<T> {
        loop {
            // The exchange first: once it is done, nothing else is polled. The client's
            // bytes are read only once they are there: no buffer is set aside before.
            let read = tokio::select! {
                biased;
                done = &mut work => return Waited::Done(done),
                () = self.timer.until(deadline) => return Waited::TimedOut,
                read = std::future::poll_fn(|cx| self.stream.poll_read_some(cx, self.ahead, ReadSize::FIRST)),
                    if self.ahead.len() < MAX_AHEAD => read,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Waited::Gone;
            }
        }
    }
}

/// What became of a whole head in the connection's buffer.
enum HeadServed {
    /// Its call was served; the connection stays open when `ended` is `Some(when)`.
    Called { used: usize, ended: Option<Instant> },
    /// Its body has not all arrived: the buffer must hold `used` bytes first.
    BodyToCome { used: usize },
    /// A request the fast path does not take.
    Elsewhere,
    /// Refused and answered: the connection closes.
    Refused,
}

impl Gateway {
    /// Parses the head that ends at `end` in `buf` and serves its call once its body is
    /// there. The head's slots live in this future's state, with the call's.
    async fn serve_head<S: ClientIo>(
        &self,
        buf: &[u8],
        end: usize,
        conn: &ConnInfo,
        client: &mut Client<'_, S>,
    ) -> HeadServed {
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
        let request = match read_head(&buf[..end], &mut slots[..]) {
            HeadRead::Take(request) => request,
            HeadRead::Elsewhere => return HeadServed::Elsewhere,
            HeadRead::Refuse(refused) => {
                let (path, query) = split_target(refused.target);
                let record = self.begin(&refused.method, path, query, 0);
                Box::pin(self.answer_error(refused.error, record, client, true)).await;
                return HeadServed::Refused;
            }
        };
        let used = end + request.body_len;
        if buf.len() < used {
            return HeadServed::BodyToCome { used };
        }
        let ended = self
            .serve_fast(&request, &buf[end..used], conn, client, request.close)
            .await;
        HeadServed::Called { used, ended }
    }

    /// Serves one call of the fast path: `Some(when it ended)` while the client connection
    /// stays open, `None` when it must close. `close`: the client asked that it close; a
    /// stop of the gateway is read when the answer's head is written (it may come while
    /// the upstream has the call).
    async fn serve_fast<S: ClientIo>(
        &self,
        request: &Parsed<'_>,
        body: &[u8],
        conn: &ConnInfo,
        client: &mut Client<'_, S>,
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
        let (api, caller, deferred) = match admitted {
            Ok(admitted) => admitted,
            Err(err) => return self.answer_error(err, record, client, close).await,
        };
        if deferred.is_some() {
            // Counting in Redis or reserving tokens: its state is boxed, not carried in
            // every call's.
            let counted = Box::pin(self.count_deferred(deferred, body, &mut record)).await;
            if let Err(err) = counted {
                return self.answer_error(err, record, client, close).await;
            }
        }
        let forwarded = self
            .forward_fast(
                (&api, &caller),
                &head,
                (body, request.framing),
                (conn, &mut record),
                client,
                close,
            )
            .await;
        match forwarded {
            Ok(ended) => ended,
            Err(err) => self.answer_error(err, record, client, close).await,
        }
    }

    fn admit_fast(
        &self,
        head: &Head<'_, RawHeaders<'_>>,
        body: &[u8],
        conn: &ConnInfo,
        record: &mut CallRecord,
    ) -> Result<FastAdmitted, GatewayError> {
        let snapshot = self.snapshots.load();
        let selected = self.select(&snapshot, head, conn, record)?;
        let body_hash = if selected.needs_hash && !body.is_empty() {
            Some(infergate_sign::sha256_hex(body))
        } else {
            None
        };
        let (caller, shared) = self.admit(
            &snapshot,
            &selected,
            head,
            conn,
            BodySeen {
                hash: body_hash.as_deref(),
                is_empty: body.is_empty(),
            },
            record,
        )?;
        Ok((selected.api, caller, shared))
    }

    /// Answers `err` to the client; `Some(when)` while the connection stays open (not when
    /// `close`, the error itself or a stop since the call began closes it).
    async fn answer_error<S: ClientIo>(
        &self,
        err: GatewayError,
        mut record: CallRecord,
        client: &mut Client<'_, S>,
        close: bool,
    ) -> Option<Instant> {
        let close = close || stopping(client.stop);
        self.observers.refused(&err, &mut record);
        let (status, close, bytes) = error_bytes(
            &err,
            record.request_id.as_str(),
            close,
            record.rate_limit.as_deref(),
        );
        let now = Instant::now();
        self.observers.response_head(&record, now);
        let written = client.stream.send_all(&bytes).await.is_ok();
        self.observers.finish(&record, status, 0);
        (written && !close).then_some(now)
    }

    /// Sends the call to the API's upstreams in turn until one answers, then relays the
    /// response. `Ok` once a response head was relayed: `Some(when the response ended)` while
    /// the client connection stays open.
    async fn forward_fast<S: ClientIo>(
        &self,
        (api, caller): (&ApiRoute, &Caller),
        head: &Head<'_, RawHeaders<'_>>,
        (body, framing): (&[u8], RequestFraming),
        (conn, record): (&ConnInfo, &mut CallRecord),
        client: &mut Client<'_, S>,
        close: bool,
    ) -> Result<Option<Instant>, GatewayError> {
        // The connection's buffers, given back once the call is relayed.
        let mut request = std::mem::take(&mut client.scratch.request);
        let mut response = std::mem::take(&mut client.scratch.response);
        let request_id = record.request_id;
        let rate_limit = record.rate_limit.clone();
        // A streamed model call that did not ask for usage is asked for it; the chunk that
        // brings is dropped from the answer below.
        let edited = match record.model_api.filter(|_| record.model_call) {
            Some(api) => crate::usage::forwarded_request(api, body, record.forward_cap)
                .map_err(GatewayError::BadRequest)?,
            None => None,
        };
        let asked = edited.as_ref().is_some_and(|(_, asked)| *asked);
        let body = edited.as_ref().map_or(body, |(edited, _)| edited);
        let mut attempts = FastAttempts {
            own: OwnLines {
                request_id: request_id.as_bytes(),
                rate_limit: rate_limit.as_deref(),
                model_call: record.model_call,
                asked_usage: asked,
            },
            api,
            pool: &self.fast_pool,
            tls: &self.upstream_tls,
            head,
            api_path: &api.api_path,
            forwarded: Forwarded {
                api_id: &api.api_id,
                caller,
                conn,
                request_id: request_id.as_bytes(),
                hops: record.hops,
                trace: record.trace.as_ref().map(|t| t.header()),
            },
            framing,
            body,
            request: &mut request,
            response: &mut response,
            client: &mut *client,
        };
        let answered = self
            .upstreams
            .try_in_turn(api, record, &self.observers, &mut attempts)
            .await?;
        let Some(Answered {
            answer: (mut up, head),
            upstream,
            index,
            at: now,
        }) = answered
        else {
            // The client went away: the upstream call was dropped with it.
            self.observers.finish(record, 499, 0);
            return Ok(None);
        };
        self.observers.response_head(record, now);
        let mut out = head.out;
        // A stop that came while the upstream had the call: the client learns from this
        // answer that the connection closes after it, and sends it nothing more.
        let close = close || stopping(client.stop);
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let filtering = asked
            && head.media == Media::EventStream
            && (head.rechunked
                || matches!(
                    head.framing,
                    ResponseFraming::Chunked | ResponseFraming::UntilClose
                ));
        let mut tap = if record.model_call {
            // The prompt is estimated from the client's body, as on the general server.
            UsageTap::for_answer(head.media, record.bytes_in as usize)
        } else {
            None
        };
        let relayed = match (filtering, tap.as_mut()) {
            (true, Some(tap)) => {
                let mut filter = UsageChunkFilter::default();
                up.relay_filtered(client.stream, &mut out, head.framing, tap, &mut filter)
                    .await
            }
            (_, tap) => up.relay(client.stream, &mut out, head.framing, tap).await,
        };
        record.usage = tap.map(UsageTap::finish);
        client.scratch.keep(request, out);
        let ended = match relayed {
            Ok((sent, waited)) => {
                let ended = if waited { Instant::now() } else { now };
                if head.keep_alive && up.is_clean() {
                    client.scratch.hold(api.service.pool_key(index), up, ended);
                }
                self.observers.finish(record, head.status, sent);
                (!close).then_some(ended)
            }
            Err(err) => {
                if let RelayError::Upstream(why) = err {
                    self.observers.upstream_error(&upstream.authority, "other");
                    tracing::warn!(upstream = %upstream.authority, error = %why, "upstream response failed");
                }
                self.observers.finish(record, head.status, 0);
                None
            }
        };
        Ok(ended)
    }
}

/// The attempts of one fast-path call, each writing the request to a kept-alive connection
/// of its upstream while watching the client.
/// An admitted fast-path call: its API, its caller and the counts still to take.
type FastAdmitted = (Arc<ApiRoute>, Caller, Option<Box<Deferred>>);

struct FastAttempts<'a, 'c, 'h, S> {
    api: &'a ApiRoute,
    pool: &'a Pool<UpstreamConn>,
    tls: &'a UpstreamTls,
    head: &'a Head<'h, RawHeaders<'h>>,
    api_path: &'a str,
    forwarded: Forwarded<'a>,
    own: OwnLines<'a>,
    framing: RequestFraming,
    body: &'a [u8],
    request: &'a mut Vec<u8>,
    response: &'a mut Vec<u8>,
    client: &'a mut Client<'c, S>,
}

impl<S: ClientIo> Attempts for FastAttempts<'_, '_, '_, S> {
    type Answer = (UpstreamConn, ClientHead);

    /// HTTP/1.1, in the clear or over TLS.
    fn speaks(&self, scheme: &str) -> bool {
        matches!(scheme, "http" | "https")
    }

    /// The fast path holds the whole body.
    fn can_resend(&self) -> bool {
        true
    }

    fn status((_, head): &Self::Answer) -> u16 {
        head.status
    }

    fn retry_after((_, head): &Self::Answer) -> Option<u64> {
        head.retry_after
    }

    async fn attempt(&mut self, attempt: &Attempt<'_>) -> Attempted<Self::Answer> {
        let upstream = attempt.upstream;
        request_bytes(
            self.head,
            (upstream, self.api_path),
            &self.forwarded,
            self.framing,
            self.body,
            self.own.model_call,
            self.request,
        );
        let service = &self.api.service;
        let to = FastTo {
            upstream,
            key: service.pool_key(attempt.index),
            ca_pem: service.tls_ca_pem.as_ref(),
            tls: self.tls,
        };
        let held = self.client.scratch.take_held(to.key, attempt.sent_at);
        let exchange = std::pin::pin!(UpstreamConn::exchange(
            self.pool,
            &to,
            held,
            attempt.sent_at,
            self.request,
            self.head.method,
            self.own,
            self.response,
        ));
        match self
            .client
            .unless_gone(exchange, Deadline::from_std(attempt.deadline))
            .await
        {
            Waited::Done(Ok(answer)) => Attempted::Answered(answer),
            Waited::Done(Err(failure)) => Attempted::Failed(failure),
            Waited::TimedOut => Attempted::Failed(Failure::Timeout),
            Waited::Gone => Attempted::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests;

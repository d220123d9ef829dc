//! The general server's HTTP/1 heads checked by the gateway's own framing rules before the
//! HTTP library reads them. hyper resolves some ambiguities itself (it drops a
//! `Content-Length` sent with `Transfer-Encoding` and reads the body chunked), so by the
//! time a request reaches the gateway the ambiguity cannot be seen. This reader sits
//! between the connection and hyper: it holds each request head back until it is whole,
//! decides its framing with [`http_rules::request_framing`] (the rule the fast path
//! applies), follows the body to find the next head, and replaces a refused head with one
//! hyper itself answers with 400 and a closed connection. A chunked body whose lines break
//! the rules (a line not ended by CRLF, one too long) ends the stream at that line: where
//! hyper would read the rest differently, it reads none of it. HTTP/2, upgrades and heads
//! hyper refuses anyway pass through untouched; a head too long to check is refused.
//!
//! It also keeps the header timeout: a head must be whole within it of its first byte (the
//! first head, of the connection's start), or the connection ends. hyper's own timer never
//! starts while the head is held back here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http_rules::{self, ChunkedEnd, RequestFraming, MAX_HEAD, MAX_HEADERS};

/// A head hyper refuses with 400 (an invalid `Content-Length`) and then closes.
const REFUSED_HEAD: &[u8] = b"GET / HTTP/1.1\r\ncontent-length: refused\r\n\r\n";

enum State {
    /// Reading a request head (held back until whole).
    Head,
    /// This many body bytes follow.
    Body(u64),
    Chunked(ChunkedEnd),
    /// Not HTTP/1 requests any more (HTTP/2, an upgrade), or bytes hyper refuses anyway.
    Passthrough,
    /// A head was refused: the rest of the connection is dropped.
    Refused,
}

/// A connection's read side with its request heads checked.
pub struct HeadGuard<IO> {
    io: IO,
    state: State,
    /// The head being read, not yet handed on.
    head: BytesMut,
    /// Bytes checked and ready to hand on.
    out: BytesMut,
    /// The connection ended (or was refused): after `out`, end of stream.
    ended: bool,
    header_timeout: Duration,
    /// While a head is awaited or being read: when it must be whole.
    deadline: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> HeadGuard<IO> {
    /// Guards `io`, of which `read` was read already (it is read again first); the first
    /// head must be whole within `header_timeout` from now.
    pub fn new(io: IO, read: &[u8], header_timeout: Duration) -> Self {
        let mut guard = Self {
            io,
            state: State::Head,
            head: BytesMut::new(),
            out: BytesMut::new(),
            ended: false,
            header_timeout,
            deadline: Some(tokio::time::Instant::now() + header_timeout),
            timer: None,
        };
        guard.feed(BytesMut::from(read));
        guard
    }

    /// Whether the head being read is past its deadline (arming the timer to wake `cx`
    /// at the deadline otherwise).
    fn head_late(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    /// Takes `bytes` read from the client through the state machine: what is checked goes
    /// to `out`, a head not yet whole waits in `head`.
    fn feed(&mut self, mut bytes: BytesMut) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Passthrough => {
                    self.out.extend_from_slice(&bytes);
                    return;
                }
                State::Refused => return,
                State::Body(left) => {
                    let take = bytes
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    self.out.extend_from_slice(&bytes[..take]);
                    bytes.advance(take);
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(end) => match end.advance(&bytes) {
                    Ok(used) => {
                        self.out.extend_from_slice(&bytes[..used]);
                        bytes.advance(used);
                        if end.done() {
                            self.state = State::Head;
                        }
                    }
                    Err(_) => {
                        self.cut_off();
                        return;
                    }
                },
                State::Head => {
                    if self.head.is_empty() && self.deadline.is_none() {
                        self.deadline = Some(tokio::time::Instant::now() + self.header_timeout);
                    }
                    self.head.extend_from_slice(&bytes);
                    // The bytes after a whole head go round again.
                    bytes = self.vet_head().unwrap_or_default();
                }
            }
        }
    }

    /// How many of `read` (just read into the reader's buffer) go on as they are, the state
    /// following them: a passed-through stream, a body's bytes, and heads that are whole in
    /// them and accepted. What follows (a head not yet whole, one refused, bytes hyper reads
    /// its own way) is for [`HeadGuard::feed`].
    fn pass_in_place(&mut self, read: &[u8]) -> usize {
        let mut used = 0;
        while used < read.len() {
            let rest = &read[used..];
            match &mut self.state {
                State::Passthrough => return read.len(),
                State::Refused => return used,
                State::Body(left) => {
                    let take = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    used += take;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::Chunked(end) => match end.advance(rest) {
                    Ok(n) => {
                        used += n;
                        if end.done() {
                            self.state = State::Head;
                        } else if n < rest.len() {
                            return used;
                        }
                    }
                    Err(_) => {
                        self.cut_off();
                        return used;
                    }
                },
                // A head begun in an earlier read is completed in `self.head`.
                State::Head if !self.head.is_empty() => return used,
                State::Head => match vet(rest) {
                    Vetted::Whole { len, next } => {
                        self.state = next;
                        self.deadline = None;
                        used += len;
                    }
                    _ => return used,
                },
            }
        }
        used
    }

    /// Ends the connection's stream where a chunked body broke the gateway's framing rules
    /// (a line without CRLF, a line too long): hyper gets no byte past it, so the body
    /// fails and the connection closes, whatever hyper would have made of the rest.
    fn cut_off(&mut self) {
        self.head.clear();
        self.state = State::Refused;
        self.ended = true;
    }

    /// Decides the head in `self.head` once it is whole; the bytes after it, if any.
    fn vet_head(&mut self) -> Option<BytesMut> {
        match vet(&self.head) {
            Vetted::Partial => None,
            // Not HTTP/1 (an HTTP/2 preface), or invalid: hyper answers it.
            Vetted::Unusual => {
                self.state = State::Passthrough;
                self.deadline = None;
                let held = self.head.split();
                self.out.extend_from_slice(&held);
                None
            }
            Vetted::Refused => {
                self.cut_off();
                self.deadline = None;
                self.out.extend_from_slice(REFUSED_HEAD);
                None
            }
            Vetted::Whole { len, next } => {
                let rest = self.head.split_off(len);
                let head = self.head.split();
                self.deadline = None;
                self.out.extend_from_slice(&head);
                self.state = next;
                (!rest.is_empty()).then_some(rest)
            }
        }
    }
}

/// What the start of some bytes is as a request head.
enum Vetted {
    /// Not whole yet.
    Partial,
    /// Not HTTP/1 (an HTTP/2 preface) or invalid: hyper answers it (and closes).
    Unusual,
    /// Framed ambiguously, or too long to check: never handed on.
    Refused,
    /// A head of `len` bytes, accepted; what follows it.
    Whole { len: usize, next: State },
}

/// Vets the head at the start of `bytes` by the gateway's framing rules.
fn vet(bytes: &[u8]) -> Vetted {
    // Empty lines before a request line are hyper's to skip.
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if bytes.len() <= MAX_HEAD => return Vetted::Partial,
        // Too long, however it arrived: refused.
        Ok(_) => return Vetted::Refused,
        Err(_) => return Vetted::Unusual,
    };
    let upgrade = http_rules::asks_to_switch(
        req.method.unwrap_or_default(),
        req.headers.iter().map(|h| h.name.as_bytes()),
    )
    .is_some();
    let framing = http_rules::request_framing(
        if req.version == Some(1) {
            http_rules::Version::Http11
        } else {
            http_rules::Version::Http10
        },
        req.headers.iter().map(|h| (h.name, h.value)),
    );
    match framing {
        Err(_) => Vetted::Refused,
        Ok(framing) => Vetted::Whole {
            len,
            next: match framing {
                _ if upgrade => State::Passthrough,
                RequestFraming::None | RequestFraming::Length(0) => State::Head,
                RequestFraming::Length(n) => State::Body(n),
                RequestFraming::Chunked => State::Chunked(ChunkedEnd::default()),
            },
        },
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            // Read straight into the reader's buffer: most bytes are handed on as they are.
            let before = buf.filled().len();
            match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Pending if this.head_late(cx) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request head did not arrive within the header timeout",
                    )))
                }
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let read = buf.filled().len() - before;
            if read == 0 {
                // The client ended: what it sent of a head goes on as it is.
                let held = this.head.split();
                this.out.extend_from_slice(&held);
                this.ended = true;
                continue;
            }
            // Most bytes go on where they were read (a large body is never copied); the
            // rest is taken back and checked on its own, handed on after them.
            let passed = this.pass_in_place(&buf.filled()[before..]);
            if passed == read {
                return Poll::Ready(Ok(()));
            }
            let taken = BytesMut::from(&buf.filled()[before + passed..]);
            buf.set_filled(before + passed);
            this.feed(taken);
            if passed > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper would read of `input` fed in pieces of `piece` bytes.
    fn guarded(input: &[u8], piece: usize) -> Vec<u8> {
        let mut guard = HeadGuard::new(tokio::io::empty(), &[], Duration::from_secs(1));
        for part in input.chunks(piece.max(1)) {
            guard.feed(BytesMut::from(part));
        }
        let mut out = guard.out.to_vec();
        if !guard.ended {
            out.extend_from_slice(&guard.head);
        }
        out
    }

    /// Where the stream of `input` is cut off by a chunked body that breaks the rules, if
    /// it is: fed byte by byte, the guard hands on every byte up to the one that broke them.
    fn cut_off_at(input: &[u8]) -> Option<usize> {
        let mut guard = HeadGuard::new(tokio::io::empty(), &[], Duration::from_secs(1));
        for byte in input.chunks(1) {
            guard.feed(BytesMut::from(byte));
        }
        let cut = guard.ended
            && matches!(guard.state, State::Refused)
            && !guard.out.ends_with(REFUSED_HEAD);
        cut.then_some(guard.out.len())
    }

    /// Whether what the reader handed on (`read`) agrees with what the state machine
    /// decides (`fed`): the same bytes; or, where a broken chunked body cuts the stream
    /// off, each a part of the input that ends before the byte that broke the rules (how
    /// much of a line not yet ended went on depends on how the bytes arrived).
    fn agrees(input: &[u8], read: &[u8], fed: &[u8]) -> bool {
        match cut_off_at(input) {
            Some(limit) => [read, fed]
                .iter()
                .all(|out| out.len() <= limit && input.starts_with(out)),
            None => read == fed,
        }
    }

    #[test]
    fn plain_requests_pass_unchanged_in_any_pieces() {
        let requests: &[&[u8]] = &[
            b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: g\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\nGET /c HTTP/1.1\r\nHost: g\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
            b"GET /ws HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET raw bytes \r\n\r\n Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET bad\r\nHost: x\r\n\r\n",
        ];
        for input in requests {
            for piece in [1, 2, 3, 7, 64, 4096] {
                assert_eq!(
                    guarded(input, piece),
                    input.to_vec(),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[tokio::test]
    async fn bytes_read_before_come_first_then_the_socket_and_writes_go_through() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"ost: g\r\n\r\n").await.expect("write");
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.expect("read");
            back
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let mut guard = HeadGuard::new(stream, b"GET / HTTP/1.1\r\nH", Duration::from_secs(5));
        let want = b"GET / HTTP/1.1\r\nHost: g\r\n\r\n";
        let mut got = vec![0u8; want.len()];
        guard.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, want);
        guard.write_all(b"ok").await.expect("write");
        guard.shutdown().await.expect("shutdown");
        assert_eq!(client.await.expect("client"), b"ok");
    }

    #[tokio::test]
    async fn a_head_that_does_not_finish_in_time_ends_the_connection() {
        use tokio::io::AsyncReadExt;
        let (near, _far) = tokio::io::duplex(64);
        let mut guard = HeadGuard::new(near, b"GET / HT", Duration::from_millis(50));
        let mut buf = [0u8; 16];
        let read = guard.read(&mut buf).await;
        assert_eq!(read.expect_err("timed out").kind(), io::ErrorKind::TimedOut);
    }

    /// What hyper reads of `input` written in pieces of `piece` bytes, through `poll_read`.
    async fn read_through(input: &[u8], piece: usize) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let pieces: Vec<Vec<u8>> = input.chunks(piece).map(<[u8]>::to_vec).collect();
        let writer = tokio::spawn(async move {
            for piece in pieces {
                if far.write_all(&piece).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let mut guard = HeadGuard::new(near, &[], Duration::from_secs(5));
        let mut got = Vec::new();
        let _ = guard.read_to_end(&mut got).await;
        let _ = writer.await;
        got
    }

    #[tokio::test]
    async fn the_reader_hands_on_what_the_state_machine_decides() {
        let refused = b"GET /ok HTTP/1.1\r\nHost: g\r\n\r\nPOST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let inputs: [&[u8]; 4] = [
            b"POST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 20000\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: g\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            refused,
        ];
        for input in inputs {
            let mut input = input.to_vec();
            if input.ends_with(b"20000\r\n\r\n") {
                input.extend(std::iter::repeat_n(b'x', 20000));
                input.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: g\r\n\r\n");
            }
            for piece in [1, 9, 4096, 70000] {
                assert_eq!(
                    read_through(&input, piece).await,
                    guarded(&input, piece),
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(&input[..input.len().min(60)])
                );
            }
        }
    }

    /// Requests of every framing, accepted and refused, for the property below.
    const PARTS: &[&[u8]] = &[
        b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nraw",
        b"\r\nGET /after-empty-line HTTP/1.1\r\nHost: g\r\n\r\n",
        b"GET bad\r\nHost: x\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]
        /// Bytes handed on where they were read and bytes taken back through the state
        /// machine make the same stream: whatever the requests and however they arrive.
        #[test]
        fn reading_in_place_hands_on_what_the_state_machine_decides(
            parts in proptest::collection::vec(0..PARTS.len(), 1..8),
            body in 0usize..3000,
            piece in 1usize..5000,
        ) {
            let mut input = Vec::new();
            for part in parts {
                input.extend_from_slice(PARTS[part]);
                if part == 1 {
                    // A longer body of known length.
                    let head = format!("POST /b HTTP/1.1\r\nHost: g\r\nContent-Length: {body}\r\n\r\n");
                    input.extend_from_slice(head.as_bytes());
                    input.extend(std::iter::repeat_n(b'x', body));
                }
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let read = runtime.block_on(read_through(&input, piece));
            let fed = guarded(&input, piece);
            proptest::prop_assert!(agrees(&input, &read, &fed), "{:?} against {:?}", read, fed);
        }
    }

    /// Chunked bodies hyper and the gateway could read differently (a line ended by a bare
    /// LF, a line longer than the gateway reads) end the stream where they break: the
    /// request after them never reaches hyper. A head too long to check is refused.
    #[tokio::test]
    async fn a_chunked_body_that_breaks_the_rules_ends_the_stream_there() {
        let smuggled = b"POST /SMUGGLED HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let cover = format!(
            "POST /cover HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n",
            smuggled.len()
        );
        let chunked =
            b"POST /first HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let long_extension = [
            chunked.clone(),
            b"5;".to_vec(),
            vec![b'e'; 9000],
            b"\r\nhello\r\n0\r\n\r\n".to_vec(),
            smuggled.to_vec(),
        ]
        .concat();
        let long_trailer = [
            chunked.clone(),
            b"5\r\nhello\r\n0\r\nX-T: ".to_vec(),
            vec![b't'; 9000],
            b"\r\n\r\n".to_vec(),
            smuggled.to_vec(),
        ]
        .concat();
        let bare_lf_end = [
            chunked.clone(),
            b"5\r\nhello\r\n0\r\n\n".to_vec(),
            cover.into_bytes(),
            smuggled.to_vec(),
        ]
        .concat();
        let bare_lf_size = [
            chunked.clone(),
            b"5\nhello\r\n0\r\n\r\n".to_vec(),
            smuggled.to_vec(),
        ]
        .concat();
        for input in [long_extension, long_trailer, bare_lf_end, bare_lf_size] {
            for piece in [1, 7, 4096, 70_000] {
                if piece == 1 && input.len() > 20_000 {
                    continue;
                }
                let fed = guarded(&input, piece);
                let read = read_through(&input, piece).await;
                for out in [&fed, &read] {
                    let seen = String::from_utf8_lossy(out);
                    assert!(
                        !seen.contains("SMUGGLED"),
                        "{seen:.200} in pieces of {piece}"
                    );
                }
                assert!(agrees(&input, &read, &fed), "in pieces of {piece}");
            }
        }
        // A head too long to check, however it arrives: refused, and nothing after it.
        let long_head = [
            b"GET /long HTTP/1.1\r\nHost: g\r\nX-Long: ".to_vec(),
            vec![b'l'; MAX_HEAD + 10],
            b"\r\n\r\n".to_vec(),
            smuggled.to_vec(),
        ]
        .concat();
        for piece in [4096, 70_000, 300_000] {
            assert_eq!(
                guarded(&long_head, piece),
                REFUSED_HEAD,
                "in pieces of {piece}"
            );
            assert_eq!(read_through(&long_head, piece).await, REFUSED_HEAD);
        }
    }

    #[test]
    fn a_refused_head_becomes_one_hyper_refuses_and_the_rest_is_dropped() {
        let first = b"GET /ok HTTP/1.1\r\nHost: g\r\n\r\n".as_slice();
        for bad in [
            b"POST /a HTTP/1.1\r\nHost: g\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG".as_slice(),
            b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /no-host HTTP/1.1\r\nX-Host: g\r\n\r\n",
            b"GET /bad-host HTTP/1.1\r\nHost: g/x\r\n\r\n",
        ] {
            let mut input = first.to_vec();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: g\r\n\r\n");
            for piece in [1, 5, 4096] {
                let mut want = first.to_vec();
                want.extend_from_slice(REFUSED_HEAD);
                assert_eq!(guarded(&input, piece), want, "{:?}", String::from_utf8_lossy(bad));
            }
        }
    }
}

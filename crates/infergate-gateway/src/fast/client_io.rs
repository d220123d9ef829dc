//! The client connections the fast path serves: plain TCP, or TLS whose handshake chose
//! HTTP/1.1 (or no protocol). What differs between the two is here; the rest of the fast
//! path reads and writes through these methods alone.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client connection of the fast path.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {
    /// Ready once a read would not wait: bytes (or their end) are there. Nothing is read.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Sends what reading queued to send back, if anything.
    fn after_read(&mut self, cx: &mut Context<'_>);

    /// Reads what is there into `buf` (making room for `room` bytes only once something
    /// is), waiting for it otherwise; `Ok(0)` at the end of the stream.
    ///
    /// Through the stream's `poll_read`: a read shorter than the room clears the socket's
    /// readiness (the kernel's buffer is drained), so the next wait costs no system call
    /// that finds nothing.
    fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        room: usize,
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_read_ready(cx))?;
        // A stale readiness, or a TLS record only partly there: the read waits (its waker
        // set by the socket), and nothing was taken from the buffer's room.
        buf.reserve(room);
        let read = pin!(self.read_buf(buf)).poll(cx);
        self.after_read(cx);
        read
    }

    /// Waits until a read would not wait.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }

    /// Reads what is there into the room `buf` already has, waiting for it otherwise.
    fn read_some<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        std::future::poll_fn(move |cx| self.poll_read_some(cx, buf, 0))
    }

    /// Writes all of `bytes` and sends them on: none stays buffered in the connection.
    fn send_all<'a>(
        &'a mut self,
        bytes: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        async move {
            self.write_all(bytes).await?;
            self.flush().await
        }
    }
}

impl ClientIo for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn after_read(&mut self, _: &mut Context<'_>) {}

    fn send_all<'a>(
        &'a mut self,
        bytes: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        // Nothing is buffered in a TCP stream: no flush.
        self.write_all(bytes)
    }
}

impl ClientIo for TlsStream<TcpStream> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        // Records already read may hold plaintext (or the peer's close) that no readiness
        // of the socket will announce.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        tcp.poll_read_ready(cx)
    }

    fn after_read(&mut self, cx: &mut Context<'_>) {
        // Reading may have queued records to send back (an alert refusing a renegotiation,
        // the answer to a key update): they go now, not with the next response. What the
        // socket does not take yet goes with the next read or write.
        if self.get_ref().1.wants_write() {
            let _ = Pin::new(&mut *self).poll_flush(cx);
        }
    }
}

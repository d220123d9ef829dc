//! One event stream on a connection of its own, written and read by hand, each event timed
//! twice: when the client read it, and when the kernel received it (a software receive
//! timestamp, `SO_TIMESTAMPING`). In a burst of thousands of streams the client's own
//! scheduling delays its reads by as much as the proxy under test takes; the kernel's
//! stamp is not delayed by it, so it tells the proxies apart where the read times cannot.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, TimestampingFlag, Timestamps,
};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What one stream saw, in microseconds: the time to its first event (from the request
/// written to the read that brought it, and to the kernel's stamp on it), and the gaps
/// between later events (read to read, stamp to stamp).
#[derive(Default)]
pub(crate) struct Timed {
    pub sent_at_us: u32,
    pub first_read_us: Option<u32>,
    pub first_kernel_us: Option<u32>,
    pub gaps_read_us: Vec<u32>,
    pub gaps_kernel_us: Vec<u32>,
    pub status: u16,
    pub complete: bool,
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Turns the kernel's receive stamps on for as long as the socket it gives is open. The
/// kernel turns them on for every socket a moment after the first socket asks (deferred
/// work) and off when the last one closes: a burst whose first answers come within that
/// moment would find them unstamped. Held through the burst and asked a while before it.
pub(crate) fn stamps_on() -> Result<std::net::UdpSocket, String> {
    let socket = std::net::UdpSocket::bind(("127.0.0.1", 0)).map_err(|e| format!("bind: {e}"))?;
    setsockopt(
        &socket,
        sockopt::Timestamping,
        &(TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE),
    )
    .map_err(|e| format!("SO_TIMESTAMPING: {e}"))?;
    Ok(socket)
}

/// Sends `request` on a new connection to `addr` and reads the answer to its end.
pub(crate) async fn stream(
    addr: std::net::SocketAddr,
    request: &[u8],
    start: Instant,
) -> Result<Timed, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    setsockopt(
        &tcp,
        sockopt::Timestamping,
        &(TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
            | TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE),
    )
    .map_err(|e| format!("SO_TIMESTAMPING: {e}"))?;
    tcp.write_all(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let sent = Instant::now();
    let sent_wall = SystemTime::now();
    let mut timed = Timed {
        sent_at_us: micros(sent.saturating_duration_since(start)),
        ..Timed::default()
    };
    let mut answer = Answer::default();
    let mut last: Option<(Instant, Option<SystemTime>)> = None;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (n, stamp) = read_stamped(&tcp, &mut buf).await?;
        let read_at = Instant::now();
        if n == 0 {
            timed.complete = answer.ends_at_close();
            return Ok(timed);
        }
        let data = answer.feed(&buf[..n])?;
        timed.status = answer.status;
        if data == 0 {
            if answer.ended {
                timed.complete = true;
                return Ok(timed);
            }
            continue;
        }
        match last {
            None => {
                timed.first_read_us = Some(micros(read_at - sent));
                timed.first_kernel_us =
                    stamp.and_then(|at| at.duration_since(sent_wall).ok().map(micros));
            }
            Some((read_before, stamp_before)) => {
                timed.gaps_read_us.push(micros(read_at - read_before));
                if let (Some(at), Some(before)) = (stamp, stamp_before) {
                    if let Ok(gap) = at.duration_since(before) {
                        timed.gaps_kernel_us.push(micros(gap));
                    }
                }
            }
        }
        last = Some((read_at, stamp));
        if answer.ended {
            timed.complete = true;
            return Ok(timed);
        }
    }
}

/// Reads what is there, with the kernel's receive stamp of the last segment read.
async fn read_stamped(
    tcp: &TcpStream,
    buf: &mut [u8],
) -> Result<(usize, Option<SystemTime>), String> {
    let mut control = nix::cmsg_space!(Timestamps);
    loop {
        tcp.readable().await.map_err(|e| format!("reading: {e}"))?;
        let got = tcp.try_io(Interest::READABLE, || {
            let mut iov = [io::IoSliceMut::new(buf)];
            let msg = recvmsg::<()>(
                tcp.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?;
            let mut stamp = None;
            for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmTimestampsns(ts) = cmsg {
                    let (secs, nanos) = (ts.system.tv_sec(), ts.system.tv_nsec());
                    if secs > 0 {
                        stamp =
                            Some(SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos as u32));
                    }
                }
            }
            Ok((msg.bytes, stamp))
        });
        match got {
            Ok(got) => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

/// The answer as it arrives: its head, then its body by its framing.
#[derive(Default)]
struct Answer {
    head: Vec<u8>,
    status: u16,
    framing: Option<Framing>,
    /// Bytes of a chunked body not decoded yet.
    pending: Vec<u8>,
    ended: bool,
}

enum Framing {
    Chunked(Chunk),
    Length(u64),
    UntilClose,
}

enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl Answer {
    /// Takes the next bytes read; how many of them were body data.
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, String> {
        if self.framing.is_none() {
            self.head.extend_from_slice(bytes);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.head.len() > 64 * 1024 {
                    return Err("a response head over 64 KiB".into());
                }
                return Ok(0);
            };
            let rest = self.head.split_off(end + 4);
            self.parse_head()?;
            return self.body(&rest);
        }
        self.body(bytes)
    }

    fn parse_head(&mut self) -> Result<(), String> {
        let head = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        self.status = status
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("a status line without a status: {status:?}"))?;
        let mut framing = Framing::UntilClose;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match (name.trim(), value.trim()) {
                ("transfer-encoding", v) if v.ends_with("chunked") => {
                    framing = Framing::Chunked(Chunk::Size);
                }
                ("content-length", v) if !matches!(framing, Framing::Chunked(_)) => {
                    let n = v.parse().map_err(|_| format!("content-length {v:?}"))?;
                    framing = Framing::Length(n);
                }
                _ => {}
            }
        }
        if let Framing::Length(0) = framing {
            self.ended = true;
        }
        self.framing = Some(framing);
        Ok(())
    }

    fn body(&mut self, bytes: &[u8]) -> Result<usize, String> {
        match &mut self.framing {
            Some(Framing::Length(left)) => {
                let n = (bytes.len() as u64).min(*left);
                *left -= n;
                self.ended = *left == 0;
                Ok(n as usize)
            }
            Some(Framing::UntilClose) | None => Ok(bytes.len()),
            Some(Framing::Chunked(_)) => {
                self.pending.extend_from_slice(bytes);
                self.chunks()
            }
        }
    }

    /// Decodes what it can of the pending chunked bytes; the data bytes among them.
    fn chunks(&mut self) -> Result<usize, String> {
        let Some(Framing::Chunked(state)) = &mut self.framing else {
            return Ok(0);
        };
        let mut data = 0;
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            match state {
                Chunk::Size | Chunk::Trailer => {
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let line = &rest[..eol];
                    at += eol + 2;
                    if let Chunk::Trailer = state {
                        if line.is_empty() {
                            self.ended = true;
                            break;
                        }
                        continue;
                    }
                    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                        .ok_or_else(|| format!("a chunk size line {line:?}"))?;
                    *state = if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let n = (rest.len() as u64).min(*left);
                    *left -= n;
                    data += n as usize;
                    at += n as usize;
                    if *left == 0 {
                        *state = Chunk::DataEnd;
                    }
                }
                Chunk::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err("a chunk not ended by CRLF".into());
                    }
                    at += 2;
                    *state = Chunk::Size;
                }
            }
        }
        self.pending.drain(..at);
        Ok(data)
    }

    fn ends_at_close(&self) -> bool {
        matches!(self.framing, Some(Framing::UntilClose)) || self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_in_pieces_counts_its_data_and_ends() {
        let whole = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\n\r\n";
        for split in 1..whole.len() {
            let mut answer = Answer::default();
            let a = answer.feed(&whole[..split]).expect("first piece");
            let b = answer.feed(&whole[split..]).expect("second piece");
            assert_eq!(a + b, 8, "split at {split}");
            assert!(answer.ended, "split at {split}");
            assert_eq!(answer.status, 200);
        }
    }

    #[test]
    fn a_sized_answer_ends_at_its_length_and_a_bad_chunk_is_an_error() {
        let mut answer = Answer::default();
        assert_eq!(
            answer
                .feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nab")
                .expect("head"),
            2
        );
        assert!(!answer.ended);
        assert_eq!(answer.feed(b"cd").expect("rest"), 2);
        assert!(answer.ended);
        assert_eq!(answer.status, 404);
        let mut bad = Answer::default();
        assert!(bad
            .feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .is_err());
    }
}

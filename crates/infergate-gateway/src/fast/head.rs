//! The fast path's request side: where a head ends in the connection's buffer, the head
//! parsed in place, and the request an upstream receives written from it (lines kept as
//! sent are copied in runs). Every decision about framing and headers comes from
//! `http_rules`.

use std::io::Write;
use std::sync::LazyLock;

use http::Method;
use infergate_core::snapshot::Upstream;
use infergate_sign::HeaderSource;

use crate::error::GatewayError;
use crate::http_rules::{
    self, forwarded_length, tokens, ClientHeaders, Forwarded, RequestFraming, MAX_HEAD,
};
use crate::phases::Head;

/// The largest request body the fast path reads whole; larger ones are streamed by the
/// general server.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// Where the request head at the start of a buffer ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeadEnd {
    /// Its length, empty line included.
    At(usize),
    NotYet,
    /// Lines ended by a bare LF, or no end within [`MAX_HEAD`]: the general server reads it
    /// (and answers a head that long with its own error).
    Elsewhere,
}

pub(super) fn head_end(buf: &[u8]) -> HeadEnd {
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
pub(super) struct Parsed<'h> {
    pub method: Method,
    pub target: &'h str,
    pub headers: RawHeaders<'h>,
    pub framing: RequestFraming,
    pub body_len: usize,
    pub close: bool,
}

/// What the fast path makes of a whole request head.
pub(super) enum HeadRead<'h> {
    Take(Parsed<'h>),
    /// Its framing is ambiguous: answered with an error, and the connection closed.
    Refuse(Refused<'h>),
    /// Not one the fast path takes (or not valid HTTP/1: the general server answers it).
    Elsewhere,
}

/// A head refused for its framing: what the access log names, and why.
pub(super) struct Refused<'h> {
    pub method: Method,
    pub target: &'h str,
    pub error: GatewayError,
}

/// Header lines of a head the fast path takes: a head with more goes to the general server,
/// which takes up to [`MAX_HEADERS`](http_rules::MAX_HEADERS). Their slots (32 bytes each)
/// are part of every call's state, which is moved into its allocation.
pub(crate) const FAST_HEADERS: usize = 32;

/// Header slots to parse into, left unwritten until a header fills one.
pub(super) type Slots<'h> = [std::mem::MaybeUninit<httparse::Header<'h>>];

/// Parses a whole head (as [`head_end`] found it).
pub(super) fn read_head<'h>(head: &'h [u8], slots: &'h mut Slots<'h>) -> HeadRead<'h> {
    match parse_head(head, slots) {
        Ok(Some(parsed)) => HeadRead::Take(parsed),
        Ok(None) => HeadRead::Elsewhere,
        Err(refused) => HeadRead::Refuse(refused),
    }
}

fn parse_head<'h>(
    head: &'h [u8],
    slots: &'h mut Slots<'h>,
) -> Result<Option<Parsed<'h>>, Refused<'h>> {
    let mut req = httparse::Request::new(&mut []);
    // A head that ended earlier, at a bare LF, is not all of `head`.
    if req.parse_with_uninit_headers(head, slots).ok()
        != Some(httparse::Status::Complete(head.len()))
    {
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
    // `CONNECT` asks to switch protocols: the general server refuses it and closes.
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Ok(None);
    };
    if method == Method::CONNECT {
        return Ok(None);
    }
    let framing = http_rules::request_framing(
        http_rules::Version::Http11,
        headers.iter().map(|h| (h.name, h.value)),
    )
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
        // Calls from web pages of other origins are the general server's, where the CORS
        // rules are applied.
        if name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"origin")
        {
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
pub(crate) struct RawHeaders<'h> {
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
pub(super) struct LineCopier<'h> {
    head: &'h [u8],
    /// The run of whole lines not yet copied.
    run: std::ops::Range<usize>,
}

impl<'h> LineCopier<'h> {
    pub(super) fn new(head: &'h [u8]) -> Self {
        Self { head, run: 0..0 }
    }

    /// The span of `header`'s line in the head, CRLF included: `name: value` with nothing
    /// but spaces between colon and value (as the line will be written anyway).
    pub(super) fn line(&self, header: &httparse::Header<'_>) -> Option<std::ops::Range<usize>> {
        let start = offset_in(self.head, header.name.as_bytes())?;
        let value = offset_in(self.head, header.value)?;
        let colon = start + header.name.len();
        let end = value + header.value.len();
        let gap = self.head.get(colon..value)?;
        let plain = gap.first() == Some(&b':') && gap[1..].iter().all(|&b| b == b' ');
        (plain && self.head.get(end..end + 2) == Some(b"\r\n")).then_some(start..end + 2)
    }

    /// Copies `header` (now, or with the run it continues).
    pub(super) fn keep(&mut self, out: &mut Vec<u8>, header: &httparse::Header<'_>) {
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

    pub(super) fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(run) = self.head.get(self.run.clone()) {
            out.extend_from_slice(run);
        }
        self.run = 0..0;
    }
}

/// Writes one `name: value` line.
pub(super) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A request target (as httparse took it) the fast path takes as it is: origin form, ASCII,
/// none of the bytes the general server's URI parser treats specially or refuses (`#`
/// starts a fragment it drops; `"<>`{}` it refuses in part of the target), at most its
/// length limit.
pub(super) fn plain_target(target: &str) -> bool {
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
pub(super) fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.bytes().position(|b| b == b'?') {
        Some(at) => (&target[..at], Some(&target[at + 1..])),
        None => (target, None),
    }
}

/// The request an upstream receives, in `out`: `METHOD target HTTP/1.1`, `host`, the
/// client's lines that [`ClientHeaders::forwards`] lets through, the headers the gateway
/// sets, the framing the gateway decides, the body.
pub(super) fn request_bytes(
    head: &Head<'_, RawHeaders<'_>>,
    (upstream, api_path): (&Upstream, &str),
    forwarded: &Forwarded<'_>,
    framing: RequestFraming,
    body: &[u8],
    unencoded: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.reserve(256 + head.headers.head.len() + upstream.base_path.len() + body.len());
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    http_rules::push_upstream_target(out, &upstream.base_path, (api_path, head.path), head.query);
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(upstream.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    // The fast path takes no upgrade.
    let client = ClientHeaders::new(head.headers.values("connection"), false)
        .unencoded(unencoded)
        .traced(forwarded.trace);
    let mut lines = LineCopier::new(head.headers.head);
    for header in head.headers.lines {
        if client.forwards(header.name.as_bytes(), header.value) {
            lines.keep(out, header);
        }
    }
    lines.flush(out);
    forwarded.set_forwarded_headers(
        &client,
        head.headers.values("host").next(),
        head.headers.values("x-forwarded-for"),
        |name, value| push_header(out, name.as_str().as_bytes(), value),
    );
    if let Some(length) = forwarded_length(framing, Some(body.len() as u64)) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {length}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

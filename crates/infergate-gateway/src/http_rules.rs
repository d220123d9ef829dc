//! The rules about HTTP requests that both transports apply, and the only place they live:
//! which header names mean something to the gateway, which of a client's headers reach an
//! upstream, which names `Connection` may remove, how a request body is framed (RFC 9112
//! §6), which paths may be routed at all, and the headers the gateway sets for the upstream.
//!
//! The fast path and the general server each read bytes and write bytes; every decision
//! about headers, framing and paths is one of these functions.

use infergate_sign::HeaderSource;
use std::net::{IpAddr, SocketAddr};

use http::header::HeaderName;
use smallvec::SmallVec;

use crate::authn::{Caller, HEADER_API_KEY, HEADER_APP_CODE, HEADER_AUTH_TOKEN};
use crate::error::{ErrorAnswer, GatewayError};
use crate::observe::trace::TraceHeader;

// === Header names ===

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), and `HTTP2-Settings`,
/// which belongs to an upgrade to `h2c` (RFC 7540 §3.2.1), never passed on.
pub(crate) const HOP_NAMES: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "http2-settings",
];

/// Headers the gateway sets for the upstream; a client's own copies are dropped.
pub const HEADER_APP_ID: &str = "x-app-id";
pub const HEADER_API_ID: &str = "x-api-id";
pub const HEADER_USER_ID: &str = "x-user-id";
const FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED_PROTO: &str = "x-forwarded-proto";
const FORWARDED_HOST: &str = "x-forwarded-host";
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// Every `X-Forwarded-*` name is the gateway's, whatever follows this.
const FORWARDED_PREFIX: &[u8] = b"x-forwarded-";

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static(FORWARDED_FOR);
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static(FORWARDED_PROTO);
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static(FORWARDED_HOST);
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID);
const X_APP_ID: HeaderName = HeaderName::from_static(HEADER_APP_ID);
const X_API_ID: HeaderName = HeaderName::from_static(HEADER_API_ID);
const X_USER_ID: HeaderName = HeaderName::from_static(HEADER_USER_ID);

/// What a header name means to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    /// One of [`HOP_NAMES`].
    Hop,
    Upgrade,
    /// The gateway writes the forwarded request's framing itself.
    ContentLength,
    /// The gateway writes the upstream's own.
    Host,
    /// `X-App-Id`, `X-Api-Id`, `X-User-Id`: who the gateway says is calling.
    Identity,
    /// `X-Apig-AppCode`, `apikey`, `X-Auth-Token`: credentials the gateway checks.
    Credential,
    /// A credential when it is an `SDK-HMAC-SHA256` signature; another scheme's (a key the
    /// model server checks itself) passes.
    Authorization,
    /// The forwarding headers and the request id: `X-Forwarded-*`, `Forwarded`,
    /// `X-Real-IP`, `X-Request-Id` (a trusted proxy's `X-Forwarded-For` chain is read
    /// by [`client_chain`], then written anew).
    GatewaySet,
    Other,
}

/// Every name [`named`] recognises by itself (besides the `X-Forwarded-` prefix).
const SPECIAL: [(&str, Named); 26] = [
    (HOP_NAMES[0], Named::Hop),
    (HOP_NAMES[1], Named::Hop),
    (HOP_NAMES[2], Named::Hop),
    (HOP_NAMES[3], Named::Hop),
    (HOP_NAMES[4], Named::Hop),
    (HOP_NAMES[5], Named::Hop),
    (HOP_NAMES[6], Named::Hop),
    (HOP_NAMES[7], Named::Hop),
    (HOP_NAMES[8], Named::Hop),
    ("upgrade", Named::Upgrade),
    ("content-length", Named::ContentLength),
    ("host", Named::Host),
    (HEADER_APP_ID, Named::Identity),
    (HEADER_API_ID, Named::Identity),
    (HEADER_USER_ID, Named::Identity),
    (HEADER_APP_CODE, Named::Credential),
    (HEADER_API_KEY, Named::Credential),
    (HEADER_AUTH_TOKEN, Named::Credential),
    ("authorization", Named::Authorization),
    (FORWARDED_FOR, Named::GatewaySet),
    (FORWARDED_PROTO, Named::GatewaySet),
    (FORWARDED_HOST, Named::GatewaySet),
    ("forwarded", Named::GatewaySet),
    ("x-real-ip", Named::GatewaySet),
    (REQUEST_ID, Named::GatewaySet),
    (HOPS, Named::GatewaySet),
];

/// How many infergate gateways a call passed through: read from the request (any value a
/// client sends only brings its refusal closer), written one more to the upstream.
pub(crate) const HOPS: &str = "x-infergate-hops";
const X_INFERGATE_HOPS: HeaderName = HeaderName::from_static(HOPS);
/// Gateways a call may pass through: a service pointed back at a gateway (through any
/// proxy that keeps headers) is refused after this many rounds, not served forever.
pub(crate) const MAX_HOPS: u8 = 5;

/// `n` in decimal digits, written into `buf`.
fn decimal(n: u8, buf: &mut [u8; 3]) -> &[u8] {
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = b'0' + n % 10;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The hops a request says it made (0 when it says nothing readable).
pub(crate) fn hops<H: HeaderSource + ?Sized>(headers: &H) -> u8 {
    headers
        .text(HOPS)
        .and_then(|v| v.trim().parse::<u8>().ok())
        .unwrap_or(0)
}

/// The longest name of [`SPECIAL`].
const LONGEST: usize = 19;
/// Words of eight bytes that hold the longest name.
const WORDS: usize = LONGEST.div_ceil(8);
/// Names of one length at most.
const SLOTS: usize = 4;

/// A name of [`SPECIAL`] as words to compare eight bytes at a time: `word` holds its bytes
/// (lowercase letters and `-`, zero-padded), `fold` the bit 0x20 at each letter.
#[derive(Clone, Copy)]
struct Special {
    word: [u64; WORDS],
    fold: [u64; WORDS],
    kind: Named,
}

/// `bytes` zero-padded into words (for the table; [`named`] pads with one copy).
const fn words(bytes: &[u8]) -> [u64; WORDS] {
    let mut padded = [0u8; WORDS * 8];
    let mut i = 0;
    while i < bytes.len() {
        padded[i] = bytes[i];
        i += 1;
    }
    padded_words(&padded)
}

/// Zero-padded bytes as little-endian words.
const fn padded_words(padded: &[u8; WORDS * 8]) -> [u64; WORDS] {
    let mut out = [0u64; WORDS];
    let mut w = 0;
    while w < WORDS {
        let mut chunk = [0u8; 8];
        let mut j = 0;
        while j < 8 {
            chunk[j] = padded[w * 8 + j];
            j += 1;
        }
        out[w] = u64::from_le_bytes(chunk);
        w += 1;
    }
    out
}

/// [`SPECIAL`] by name length: most names are told apart by their length alone.
static BY_LENGTH: [[Option<Special>; SLOTS]; LONGEST + 1] = {
    let mut table = [[None; SLOTS]; LONGEST + 1];
    let mut i = 0;
    while i < SPECIAL.len() {
        let (name, kind) = SPECIAL[i];
        let bytes = name.as_bytes();
        let mut fold = [0u8; LONGEST];
        let mut b = 0;
        while b < bytes.len() {
            assert!(bytes[b].is_ascii_lowercase() || bytes[b].is_ascii_digit() || bytes[b] == b'-');
            if bytes[b].is_ascii_lowercase() {
                fold[b] = 0x20;
            }
            b += 1;
        }
        let mut slot = 0;
        while table[bytes.len()][slot].is_some() {
            slot += 1;
        }
        table[bytes.len()][slot] = Some(Special {
            word: words(bytes),
            fold: words(&fold),
            kind,
        });
        i += 1;
    }
    table
};

/// What a header name is to the gateway, read in any case and with `_` as `-` (many
/// servers read `X_App_Id` as `X-App-Id`). At a letter of a special name, bit 0x20 set in
/// the name's byte gives that letter only from the letter or its capital; at a `-` or a digit
/// nothing is set, so only that byte (or `_`, turned into `-` first) matches there: a carriage return
/// would fold to `-`.
pub(crate) fn named(name: &[u8]) -> Named {
    if let Some(candidates) = BY_LENGTH.get(name.len()).filter(|c| c[0].is_some()) {
        // Copied and `_` folded in one loop, with no branch and no call.
        let mut padded = [0u8; WORDS * 8];
        for (to, &byte) in padded.iter_mut().zip(name) {
            *to = if byte == b'_' { b'-' } else { byte };
        }
        let word = padded_words(&padded);
        if let Some(found) = candidates
            .iter()
            .map_while(Option::as_ref)
            .find(|c| (0..WORDS).all(|w| word[w] | c.fold[w] == c.word[w]))
        {
            return found.kind;
        }
    }
    let forwarding = name.len() > FORWARDED_PREFIX.len()
        && name
            .iter()
            .zip(FORWARDED_PREFIX)
            .all(|(&b, &p)| b.to_ascii_lowercase() == p || (b == b'_' && p == b'-'));
    if forwarding {
        Named::GatewaySet
    } else {
        Named::Other
    }
}

/// Whether an `Authorization` value is a credential the gateway checks (an
/// `SDK-HMAC-SHA256` signature, in any case).
fn is_gateway_signature(value: &[u8]) -> bool {
    let algorithm = infergate_sign::ALGORITHM.as_bytes();
    let value = value.trim_ascii_start();
    value.len() >= algorithm.len() && value[..algorithm.len()].eq_ignore_ascii_case(algorithm)
}

/// Whether a client's header of this name and value reaches the upstream. Credentials the
/// gateway recognises never do, whatever the API's auth type; nor do the names the gateway
/// writes itself (framing, `Host`, identity, forwarding, request id) or hop-by-hop ones
/// (`Upgrade` only while upgrading).
pub(crate) fn forwards_header(kind: Named, value: &[u8], upgrade: bool) -> bool {
    match kind {
        Named::Other => true,
        Named::Upgrade => upgrade,
        Named::Authorization => !is_gateway_signature(value),
        Named::Hop
        | Named::ContentLength
        | Named::Host
        | Named::Identity
        | Named::Credential
        | Named::GatewaySet => false,
    }
}

/// Whether a name listed in the client's `Connection` header removes the client's header of
/// that name. Only headers the client could have left out anyway: never the framing,
/// `Host`, or a header the gateway writes.
pub(crate) fn removable_by_connection(kind: Named) -> bool {
    matches!(kind, Named::Other | Named::Authorization)
}

/// Comma-separated tokens of a header value, trimmed.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The value of a `Content-Length` line: digits only (RFC 9110 §8.6), at most 15 of them.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

// === Sizes ===

/// Header lines a request head may have: both servers parse at most this many (hyper's own
/// limit).
pub(crate) const MAX_HEADERS: usize = 100;
/// A request head that has not ended by this size is refused (hyper would read heads up
/// to about 400 KiB).
pub(crate) const MAX_HEAD: usize = 256 * 1024;

// === Framing ===

/// How a client's request body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No `Content-Length` nor `Transfer-Encoding`: no body.
    None,
    Length(u64),
    Chunked,
}

/// The HTTP version of a request, as the rules about its head read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
    /// HTTP/2 and later: the authority comes as a pseudo-header, `Host` is optional.
    Http2,
}

impl Version {
    pub fn of(version: http::Version) -> Self {
        if version == http::Version::HTTP_10 || version == http::Version::HTTP_09 {
            Self::Http10
        } else if version == http::Version::HTTP_11 {
            Self::Http11
        } else {
            Self::Http2
        }
    }
}

/// Decides the framing of a request from its header lines, refusing every ambiguous case:
/// `Content-Length` with `Transfer-Encoding`, differing or malformed `Content-Length`
/// values, a `Transfer-Encoding` other than exactly `chunked`, or one on HTTP/1.0; and the
/// request's `Host`: a second one (which one would be signed, which one routed?), none on
/// HTTP/1.1, or one that is not a host and port (RFC 9112 §3.2: all three are answered 400).
pub(crate) fn request_framing<'a>(
    version: Version,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<RequestFraming, GatewayError> {
    let mut length: Option<u64> = None;
    let mut codings = 0usize;
    let mut chunked_last = false;
    let mut hosts = 0usize;
    // Only the names themselves frame a body (`Content_Length` is merely dropped); a name
    // of another length is passed over by its length alone.
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if hosts > 1 {
                return Err(malformed("the request has more than one Host"));
            }
            if !is_host(value) {
                return Err(malformed(
                    "Host must be a host name or address with an optional port \
                     (RFC 3986 uri-host, no percent-encoding)",
                ));
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            match content_length(value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                Some(_) => {
                    return Err(malformed("the request has differing Content-Length values"))
                }
                None => return Err(malformed("Content-Length must be digits only")),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for token in tokens(value) {
                codings += 1;
                chunked_last = token.eq_ignore_ascii_case(b"chunked");
            }
            if tokens(value).next().is_none() {
                return Err(malformed("Transfer-Encoding is empty"));
            }
        }
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(malformed(
            "an HTTP/1.1 request must have a Host (RFC 9112 §3.2)",
        ));
    }
    match (codings, length) {
        (0, None) => Ok(RequestFraming::None),
        (0, Some(n)) => Ok(RequestFraming::Length(n)),
        (_, Some(_)) => Err(malformed(
            "the request has both Content-Length and Transfer-Encoding",
        )),
        _ if version == Version::Http10 => {
            Err(malformed("Transfer-Encoding is not allowed in HTTP/1.0"))
        }
        (1, None) if chunked_last => Ok(RequestFraming::Chunked),
        _ => Err(malformed(
            "Transfer-Encoding must be exactly chunked (no other coding)",
        )),
    }
}

/// Whether `value` is a `Host` value: `uri-host [":" port]` (RFC 3986) as host names and
/// addresses are written: a name of letters, digits and `-._~` (RFC 3986 also allows
/// `!$&'()*+,;=`, which no DNS name holds and which would make `X-Forwarded-Host`, a list,
/// read as two hosts), at most [`MAX_HOST_NAME`] bytes and not empty (RFC 9110 §4.2.1), or
/// a bracketed IPv6 address; a port of at most 65535 (or none after the colon). No
/// percent-encoding: an upstream that decoded `X-Forwarded-Host` would read what this rule
/// keeps out (`/`, `@`, spaces).
pub(crate) fn is_host(value: &[u8]) -> bool {
    let (host_ok, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let port = match &rest[end + 1..] {
                [] => &[][..],
                [b':', port @ ..] => port,
                _ => return false,
            };
            let literal = std::str::from_utf8(&rest[..end])
                .is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok());
            (literal, port)
        }
        None => {
            let (host, port) = match value.iter().rposition(|&b| b == b':') {
                Some(colon) => (&value[..colon], &value[colon + 1..]),
                None => (value, &[][..]),
            };
            let name = !host.is_empty()
                && host.len() <= MAX_HOST_NAME
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            (name, port)
        }
    };
    host_ok
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(port)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p <= 65535)
}

/// The rules for a request whose target names its scheme and authority (an absolute-form
/// target, HTTP/2's `:scheme` and `:authority`), beside its `Host` (if any): the scheme is
/// `http` or `https`; the authority, which stands in for a missing `Host` and reaches the
/// upstream as `X-Forwarded-Host`, is held to [`is_host`] (so credentials, `user@host`, RFC
/// 9110 §4.2.4, are refused with the rest); and a `Host` that names another host is refused:
/// which one a signature, a route or the upstream went by would depend on who reads it (RFC
/// 9113 §8.3.1: malformed; RFC 9112 §3.2.2 lets the target win, the gateway refuses).
pub(crate) fn check_target_authority(
    target: &http::Uri,
    host: Option<&http::HeaderValue>,
) -> Result<(), GatewayError> {
    if let Some(scheme) = target.scheme_str() {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(malformed("the request's scheme must be http or https"));
        }
    }
    let Some(authority) = target.authority() else {
        return Ok(());
    };
    let authority = authority.as_str().as_bytes();
    if !is_host(authority) {
        return Err(malformed(
            "the request's authority must be a host and port (no user information, \
             no percent-encoding)",
        ));
    }
    if host.is_some_and(|host| !host.as_bytes().eq_ignore_ascii_case(authority)) {
        return Err(malformed(
            "the host header differs from the request's authority",
        ));
    }
    Ok(())
}

/// The longest host name a `Host` may carry: a DNS name is at most 253 bytes.
pub(crate) const MAX_HOST_NAME: usize = 255;

fn malformed(why: &str) -> GatewayError {
    GatewayError::Malformed(why.into())
}

/// The `Content-Length` the gateway writes on the forwarded request: the length of a body
/// it knows the size of (an empty one only when the client framed it with a length), none
/// when the body is sent chunked or there is none.
pub(crate) fn forwarded_length(client: RequestFraming, known: Option<u64>) -> Option<u64> {
    match (client, known) {
        (_, None) => None,
        (RequestFraming::None, Some(0)) => None,
        (_, Some(n)) => Some(n),
    }
}

/// Methods no API serves, whatever its method (`ANY` included), refused before routing as
/// nginx refuses them: `CONNECT` asks for a tunnel, not a call (the upstream's 2xx would
/// hand it the client's connection), and `TRACE` would echo the request with the lines
/// the gateway adds. In any case: methods are case-sensitive, but an upstream that reads
/// them without regard to case would take `connect` for `CONNECT`.
pub(crate) fn never_routed(method: &str) -> bool {
    method.eq_ignore_ascii_case("CONNECT") || method.eq_ignore_ascii_case("TRACE")
}

/// Whether a request asks to switch protocols, and whether by `CONNECT`: `Some(true)` for
/// `CONNECT`, `Some(false)` for a request with an `Upgrade` line, `None` otherwise. The
/// general server's head guard stops reading what follows such a head as requests, so the
/// server ends the connection after any answer that does not switch ([`switched`]).
pub(crate) fn asks_to_switch<'a>(
    method: &str,
    mut names: impl Iterator<Item = &'a [u8]>,
) -> Option<bool> {
    if method == "CONNECT" {
        Some(true)
    } else if names.any(|name| name.eq_ignore_ascii_case(b"upgrade")) {
        Some(false)
    } else {
        None
    }
}

/// Whether `Upgrade` lines (`values`) name WebSocket and nothing else (a list that names it
/// beside another protocol is not: the upstream could choose the other).
fn websocket_only<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut protocols = 0usize;
    for value in values {
        for protocol in tokens(value) {
            protocols += 1;
            // `protocol-name ["/" protocol-version]` (RFC 9110 §7.8); WebSocket has no version.
            if !protocol.eq_ignore_ascii_case(b"websocket") {
                return false;
            }
        }
    }
    protocols > 0
}

/// The GUID a WebSocket server hashes with the client's key (RFC 6455 §1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// WebSocket is the one protocol a client may switch to through the gateway. Any other
/// (`h2c` above all) would turn the connection, after the upstream's 101, into a tunnel to
/// the upstream in which requests are neither routed, authenticated nor rewritten; so would
/// an upstream's 101 that is no WebSocket handshake (a server that echoes a status and goes
/// on reading HTTP/1.1). A request's headers ask for a WebSocket opening handshake when
/// `Upgrade` names WebSocket only, `Sec-WebSocket-Version` is 13 and `Sec-WebSocket-Key` is
/// a base64 nonce of 16 bytes (RFC 6455 §4.1); then this is the `Sec-WebSocket-Accept` the
/// upstream's 101 must carry ([`websocket_switched`]). Other `Upgrade` lines are dropped and
/// the request goes on as an ordinary one, as nginx does.
pub(crate) fn websocket_accept<H: HeaderSource + ?Sized>(headers: &H) -> Option<[u8; 28]> {
    use base64::Engine;
    if !websocket_only(headers.values("upgrade")) {
        return None;
    }
    let mut versions = headers.values("sec-websocket-version");
    if versions.next().map(<[u8]>::trim_ascii) != Some(b"13") || versions.next().is_some() {
        return None;
    }
    let mut keys = headers.values("sec-websocket-key");
    let key = keys.next()?.trim_ascii();
    let nonce = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
    if nonce.len() != 16 || keys.next().is_some() {
        return None;
    }
    let mut hash = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    hash.update(key);
    hash.update(WEBSOCKET_GUID);
    let mut accept = [0u8; 28];
    base64::engine::general_purpose::STANDARD
        .encode_slice(hash.finish().as_ref(), &mut accept)
        .ok()?;
    Some(accept)
}

/// Whether an upstream's 101 (its `headers`) completes the WebSocket handshake whose
/// answer is `accept`: `Upgrade` names WebSocket only and `Sec-WebSocket-Accept` is
/// `accept`.
pub(crate) fn websocket_switched<H: HeaderSource + ?Sized>(headers: &H, accept: &[u8; 28]) -> bool {
    let mut answers = headers.values("sec-websocket-accept");
    websocket_only(headers.values("upgrade"))
        && answers.next().map(<[u8]>::trim_ascii) == Some(accept.as_slice())
        && answers.next().is_none()
}

/// Whether the answer `status` to a request that asked to switch protocols switched them:
/// 101, or a 2xx to `CONNECT` (as hyper decides).
pub(crate) fn switched(connect: bool, status: u16) -> bool {
    status == 101 || (connect && (200..300).contains(&status))
}

/// Tracks where a chunked body ends while its bytes are relayed unchanged.
#[derive(Debug, Default)]
pub(crate) struct ChunkedEnd {
    state: ChunkState,
    /// The current size or trailer line, until its end arrives.
    line: Vec<u8>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

/// The longest chunk-size or trailer line accepted.
pub(crate) const MAX_CHUNK_LINE: usize = 8 * 1024;

impl ChunkedEnd {
    pub(crate) fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// How many bytes of `input` belong to the body; fewer than all only once it ended.
    pub(crate) fn advance(&mut self, input: &[u8]) -> Result<usize, String> {
        self.advance_with(input, |_| {})
    }

    /// [`ChunkedEnd::advance`], giving `data` each piece of chunk data passed (the body
    /// decoded, for whoever reads it as it is relayed).
    pub(crate) fn advance_with(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data(left) => {
                    let take = (input.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                    data(&input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let rest = &input[at..];
                    let (piece, ended) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (&rest[..=i], true),
                        None => (rest, false),
                    };
                    if self.line.len() + piece.len() > MAX_CHUNK_LINE {
                        return Err("a chunk line is too long".into());
                    }
                    self.line.extend_from_slice(piece);
                    at += piece.len();
                    if ended {
                        self.line_ended()?;
                    }
                }
            }
        }
        Ok(at)
    }

    fn line_ended(&mut self) -> Result<(), String> {
        let line = std::mem::take(&mut self.line);
        // Every line ends with CRLF, as hyper reads them: a bare LF would end a line here
        // and not there, and the two would see the body end in different places.
        if !line.ends_with(b"\r\n") {
            return Err("a chunk line ends without CRLF".into());
        }
        let blank = line == b"\r\n";
        self.state = match self.state {
            ChunkState::Size => match httparse::parse_chunk_size(&line) {
                Ok(httparse::Status::Complete((_, 0))) => ChunkState::Trailer,
                Ok(httparse::Status::Complete((_, size))) => ChunkState::Data(size),
                _ => return Err("the upstream sent an invalid chunk size".into()),
            },
            ChunkState::DataEnd if blank => ChunkState::Size,
            ChunkState::DataEnd => return Err("a chunk of the upstream response overran".into()),
            ChunkState::Trailer if blank => ChunkState::Done,
            ChunkState::Trailer => ChunkState::Trailer,
            ChunkState::Data(_) | ChunkState::Done => return Err("chunk framing".into()),
        };
        self.line = line;
        self.line.clear();
        Ok(())
    }
}

/// The seconds of a `Retry-After` value given as a number of seconds (an HTTP date is
/// not read).
pub(crate) fn retry_after_seconds(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

// === Paths ===

/// Refuses a path that could reach something other than what its text names once an
/// upstream normalises or decodes it, by the rule of [`infergate_core::paths::path_problem`]
/// (which the management API applies to `api_path` too). Routing and forwarding use the
/// path only after this check.
pub(crate) fn check_path(path: &str) -> Result<(), GatewayError> {
    match infergate_core::paths::path_problem(path) {
        None => Ok(()),
        Some(why) => Err(bad_path(why)),
    }
}

fn bad_path(why: &str) -> GatewayError {
    GatewayError::BadRequest(why.into())
}

// === Trusted proxies ===

pub use infergate_core::net::Cidr;

// === The forwarded request head ===

/// Appends the request target an upstream receives: its base path, the path below the
/// API's `api_path` (as [`check_path`] checked it), and the query as the client sent it.
pub(crate) fn push_upstream_target(
    out: &mut Vec<u8>,
    base_path: &str,
    (api_path, path): (&str, &str),
    query: Option<&str>,
) {
    let rest = path.get(api_path.len()..).unwrap_or("");
    out.extend_from_slice(base_path.as_bytes());
    out.extend_from_slice(rest.as_bytes());
    if base_path.is_empty() && rest.is_empty() {
        out.push(b'/');
    }
    if let Some(query) = query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
}

/// Which of a client's header lines reach the upstream, decided from its `Connection`
/// header once per request.
pub(crate) struct ClientHeaders {
    /// The client's `Connection` values, joined by commas.
    listed: SmallVec<[u8; 32]>,
    upgrade: bool,
    /// The answer must come unencoded (a model call whose usage is read): the client's
    /// `Accept-Encoding` stays here and the upstream is asked for `identity`.
    unencoded: bool,
    /// The call is traced: the gateway sets `traceparent` (the client's is dropped), and
    /// the client's `tracestate` goes on only with the trace it continues.
    trace: Option<TraceRewrite>,
}

/// How a traced call's trace headers are rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TraceRewrite {
    /// The client's trace goes on: its `tracestate` with it.
    Continue,
    /// A new trace starts here: the client's `tracestate` belongs to none.
    Restart,
}

impl ClientHeaders {
    /// The rules for a request whose `Connection` lines are `connection`, and that asks for
    /// a WebSocket opening handshake ([`websocket_accept`]) or not.
    pub(crate) fn new<'v>(connection: impl Iterator<Item = &'v [u8]>, has_upgrade: bool) -> Self {
        let mut listed = SmallVec::new();
        for value in connection {
            if !listed.is_empty() {
                listed.push(b',');
            }
            listed.extend_from_slice(value);
        }
        let upgrade = has_upgrade && tokens(&listed).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        Self {
            listed,
            upgrade,
            unencoded: false,
            trace: None,
        }
    }

    /// The same rules for a call traced in `trace` (none: the trace headers pass as sent).
    pub(crate) fn traced(mut self, trace: Option<TraceHeader>) -> Self {
        self.trace = trace.map(|t| {
            if t.continued {
                TraceRewrite::Continue
            } else {
                TraceRewrite::Restart
            }
        });
        self
    }

    /// The same rules, asking the upstream for an unencoded answer when `unencoded`.
    pub(crate) fn unencoded(mut self, unencoded: bool) -> Self {
        self.unencoded = unencoded;
        self
    }

    /// Whether the request asks to upgrade its connection (`Upgrade`, and `Connection:
    /// upgrade`).
    pub(crate) fn upgrade(&self) -> bool {
        self.upgrade
    }

    /// Whether the client's line `name: value` reaches the upstream: [`forwards_header`]
    /// lets it through, and `Connection` does not list it (or may not remove it).
    pub(crate) fn forwards(&self, name: &[u8], value: &[u8]) -> bool {
        let kind = named(name);
        let dropped = (removable_by_connection(kind) && self.lists(name))
            || (self.unencoded && name.eq_ignore_ascii_case(b"accept-encoding"))
            || self.rewrites_trace(name);
        forwards_header(kind, value, self.upgrade) && !dropped
    }

    /// Whether the gateway's tracing replaces or drops the client's trace line `name`.
    fn rewrites_trace(&self, name: &[u8]) -> bool {
        match self.trace {
            None => false,
            Some(rewrite) => {
                name.eq_ignore_ascii_case(b"traceparent")
                    || (rewrite == TraceRewrite::Restart
                        && name.eq_ignore_ascii_case(b"tracestate"))
            }
        }
    }

    fn lists(&self, name: &[u8]) -> bool {
        !self.listed.is_empty() && tokens(&self.listed).any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Who connected, for the service of that connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// The client's address as a header value, written once per connection.
    pub client_ip: http::HeaderValue,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-For` chain is kept.
    pub trusted_proxy: bool,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        Self {
            remote,
            tls,
            client_ip: ip_header_value(remote.ip()),
            trusted_proxy: false,
        }
    }

    /// The same, trusting the peer when it lies in one of `proxies`.
    pub fn trusting(mut self, proxies: &[Cidr]) -> Self {
        self.trusted_proxy = proxies.iter().any(|net| net.contains(self.remote.ip()));
        self
    }
}

/// `ip` as its text (`Display`) in a header value. An IPv4 address is written digit by
/// digit: every connection makes one, and the formatting machinery costs it ten times as
/// much and two allocations.
pub(crate) fn ip_header_value(ip: IpAddr) -> http::HeaderValue {
    // The longest text of an IPv6 address (`ffff:…:255.255.255.255`) is 45 bytes.
    let mut text = [0u8; 45];
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut at = 0;
            let mut push = |byte: u8| {
                text[at] = byte;
                at += 1;
            };
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    push(b'.');
                }
                if octet >= 100 {
                    push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    push(b'0' + octet / 10 % 10);
                }
                push(b'0' + octet % 10);
            }
            at
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            // 45 bytes hold any IPv6 address's text.
            let _ = write!(cursor, "{v6}");
            cursor.position() as usize
        }
    };
    http::HeaderValue::from_bytes(&text[..len])
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// What the gateway tells the upstream about a call.
pub(crate) struct Forwarded<'a> {
    pub api_id: &'a str,
    pub caller: &'a Caller,
    pub conn: &'a ConnInfo,
    /// The call's id, as the header carries it.
    pub request_id: &'a [u8],
    /// Gateways the call passed through, this one included.
    pub hops: u8,
    /// The trace of a traced call: the upstream's `traceparent` names its span.
    pub trace: Option<TraceHeader>,
}

impl Forwarded<'_> {
    /// Calls `set` for each header the gateway sets, in order: `Connection: upgrade` (when
    /// the request upgrades), `X-Forwarded-Host` (the client's `Host`, when it sent one),
    /// `X-Forwarded-For` (the peer's address, after the chain [`client_chain`] keeps of a
    /// trusted proxy's `forwarded_for` lines), `X-Forwarded-Proto`, `X-Request-Id` and the
    /// caller's identity. Every client header of these names was dropped by
    /// [`ClientHeaders::forwards`].
    pub fn set_forwarded_headers<'v>(
        &self,
        client: &ClientHeaders,
        host: Option<&[u8]>,
        forwarded_for: impl Iterator<Item = &'v [u8]>,
        mut set: impl FnMut(&HeaderName, &[u8]),
    ) {
        if client.upgrade {
            set(&http::header::CONNECTION, b"upgrade");
        }
        if client.unencoded {
            set(&http::header::ACCEPT_ENCODING, b"identity");
        }
        if let Some(host) = host {
            set(&X_FORWARDED_HOST, host);
        }
        match client_chain(self.conn, forwarded_for) {
            Some(mut chain) => {
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(self.conn.client_ip.as_bytes());
                set(&X_FORWARDED_FOR, &chain);
            }
            None => set(&X_FORWARDED_FOR, self.conn.client_ip.as_bytes()),
        }
        let proto: &[u8] = if self.conn.tls { b"https" } else { b"http" };
        set(&X_FORWARDED_PROTO, proto);
        set(&X_REQUEST_ID, self.request_id);
        let mut digits = [0u8; 3];
        set(&X_INFERGATE_HOPS, decimal(self.hops, &mut digits));
        set(&X_API_ID, self.api_id.as_bytes());
        match self.caller {
            Caller::App { app_id } => set(&X_APP_ID, app_id.as_bytes()),
            Caller::User { user_id } => set(&X_USER_ID, user_id.as_bytes()),
            Caller::Anonymous => {}
        }
        if let Some(trace) = self.trace {
            set(&TRACEPARENT, trace.as_bytes());
        }
    }
}

/// The client's `X-Forwarded-For` chain (its lines joined), read only when the peer is a
/// trusted proxy: nobody else's chain is kept.
fn client_chain<'v>(conn: &ConnInfo, values: impl Iterator<Item = &'v [u8]>) -> Option<Vec<u8>> {
    if !conn.trusted_proxy {
        return None;
    }
    let mut chain: Option<Vec<u8>> = None;
    for value in values.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) {
        match &mut chain {
            Some(chain) => {
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(value);
            }
            None => chain = Some(value.to_vec()),
        }
    }
    chain
}

/// The header lines of an answer the gateway gives itself, less the framing
/// (`Content-Length`, the transport's to write).
pub(crate) fn answer_headers<'a>(
    answer: &'a ErrorAnswer<'_>,
) -> impl Iterator<Item = (HeaderName, &'a [u8])> {
    [
        Some((http::header::CONTENT_TYPE, b"application/json".as_slice())),
        Some((X_REQUEST_ID, answer.request_id.as_bytes())),
        answer
            .closes()
            .then_some((http::header::CONNECTION, b"close".as_slice())),
    ]
    .into_iter()
    .flatten()
    .chain(
        answer
            .lines
            .iter()
            .map(|(name, value)| (name.clone(), value.as_bytes())),
    )
}

/// W3C Trace Context's parent of a traced call.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The rate-limit fields of draft-ietf-httpapi-ratelimit-headers.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

// === The response head a client receives ===

/// Which of an upstream's response header lines reach the client.
pub(crate) struct ResponseLines<'h> {
    /// The names the upstream's `Connection` lists.
    listed: SmallVec<[&'h [u8]; 4]>,
    /// A `101 Switching Protocols`, whose `Upgrade` stays.
    switching: bool,
    /// Whether the response has a `Transfer-Encoding`, which overrides a `Content-Length`.
    transfer_encoded: bool,
    /// A status that may carry no `Content-Length` (1xx, 204: RFC 9110 §8.6).
    no_length: bool,
}

impl<'h> ResponseLines<'h> {
    pub(crate) fn new(
        connection: impl Iterator<Item = &'h [u8]>,
        switching: bool,
        transfer_encoded: bool,
        status: u16,
    ) -> Self {
        Self {
            listed: connection.flat_map(tokens).collect(),
            switching,
            transfer_encoded,
            no_length: no_length(status),
        }
    }

    /// Whether the upstream's line named `name` reaches the client: not hop-by-hop, not
    /// listed in its `Connection` (but a switch keeps its `Upgrade`), not its `X-Request-Id`
    /// (the gateway's replaces it). `Content-Length` is the framing a relayed body keeps:
    /// `Connection` cannot remove it (as on the request side); it goes only beside a
    /// `Transfer-Encoding` or on a status that may carry none.
    pub(crate) fn forwards(&self, name: &[u8]) -> bool {
        let listed = self.listed.iter().any(|l| name.eq_ignore_ascii_case(l));
        match named(name) {
            Named::Hop => false,
            Named::ContentLength => !self.transfer_encoded && !self.no_length,
            Named::Upgrade => self.switching || !listed,
            _ if name.eq_ignore_ascii_case(REQUEST_ID.as_bytes()) => false,
            _ => !listed,
        }
    }

    /// The `Connection` value the gateway writes to the client: `upgrade` on a switch.
    pub(crate) fn connection(&self) -> Option<&'static [u8]> {
        self.switching.then_some(b"upgrade".as_slice())
    }
}

/// Whether a response of `status` may carry no `Content-Length` (RFC 9110 §8.6).
fn no_length(status: u16) -> bool {
    (100..200).contains(&status) || status == 204
}

/// How an upstream's response body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFraming {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    /// Chunked (its `Transfer-Encoding` ends in `chunked`).
    Chunked,
    /// Ends when the upstream closes the connection.
    UntilClose,
}

/// What an upstream's response head decides, for a transport that relays its bytes.
pub(crate) struct ResponseHead<'h> {
    pub lines: ResponseLines<'h>,
    pub framing: ResponseFraming,
    /// Whether the upstream keeps the connection open after this response.
    pub keep_alive: bool,
}

/// Decides a response head: which lines reach the client, how its body is framed, and
/// whether the connection stays open. Differing or malformed `Content-Length` values are
/// refused. `minor`: the HTTP/1 minor version; `head_only`: the answer to a `HEAD`.
pub(crate) fn response_head<'h>(
    minor: u8,
    status: u16,
    head_only: bool,
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
) -> Result<ResponseHead<'h>, String> {
    let mut close = minor != 1;
    let mut chunked = None;
    let mut length: Option<u64> = None;
    // The names the upstream's `Connection` lists, gathered in the one pass over the lines.
    let mut listed = SmallVec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"connection") {
            for token in tokens(value) {
                listed.push(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = tokens(value).last().unwrap_or(b"");
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match content_length(value) {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Err("the upstream sent an invalid Content-Length".into()),
            }
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        ResponseFraming::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => ResponseFraming::Chunked,
            (Some(false), _) | (None, None) => ResponseFraming::UntilClose,
            (None, Some(n)) => ResponseFraming::Length(n),
        }
    };
    Ok(ResponseHead {
        lines: ResponseLines {
            listed,
            switching: false,
            transfer_encoded: chunked.is_some(),
            no_length: no_length(status),
        },
        framing,
        keep_alive: !close && framing != ResponseFraming::UntilClose,
    })
}

pub mod cors;

#[cfg(test)]
mod tests;

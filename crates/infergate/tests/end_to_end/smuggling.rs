//! Hostile request bytes against the real binary, with a raw upstream that counts the
//! requests it parses: every request is refused with 400 or reaches the upstream exactly
//! once, never twice, and the fast path and the general server decide the same.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{start_with, Admin, Server, PASSWORD};
use proptest::prelude::*;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request as the upstream parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    method: String,
    target: String,
    /// Lowercase names, sorted; the ids that differ between two servers left out.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A raw upstream: parses requests with httparse (framing by `Content-Length` or chunked),
/// records each, and answers each with `200 ok`.
#[derive(Clone, Default)]
struct Counting {
    seen: Arc<Mutex<Vec<Received>>>,
    /// Bytes it could not parse as a request.
    garbled: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Counting {
    fn taken(&self) -> Vec<Received> {
        std::mem::take(&mut *self.seen.lock().expect("seen"))
    }

    fn garbled(&self) -> usize {
        self.garbled.lock().expect("garbled").len()
    }
}

/// Decodes a chunked body at the start of `buf`: (body, bytes used), `None` while partial.
fn dechunk(buf: &[u8]) -> Option<Result<(Vec<u8>, usize), ()>> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete((used, 0))) => {
                at += used;
                // Trailer lines up to the empty one.
                loop {
                    let rest = &buf[at..];
                    let end = rest.windows(2).position(|w| w == b"\r\n")?;
                    at += end + 2;
                    if end == 0 {
                        return Some(Ok((body, at)));
                    }
                }
            }
            Ok(httparse::Status::Complete((used, size))) => {
                let size = usize::try_from(size).ok()?;
                let start = at + used;
                let data = buf.get(start..start + size)?;
                body.extend_from_slice(data);
                if buf.get(start + size..start + size + 2)? != b"\r\n" {
                    return Some(Err(()));
                }
                at = start + size + 2;
            }
            Ok(httparse::Status::Partial) => return None,
            Err(_) => return Some(Err(())),
        }
    }
}

/// Parses one request at the start of `buf`: `None` while partial.
fn parse_request(buf: &[u8]) -> Option<Result<(Received, usize), ()>> {
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Err(())),
    };
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let chunked = headers.iter().any(|(n, _)| n == "transfer-encoding");
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.trim().parse::<usize>());
    let (body, used) = if chunked {
        match dechunk(&buf[head_len..])? {
            Ok((body, used)) => (body, head_len + used),
            Err(()) => return Some(Err(())),
        }
    } else {
        match length {
            Some(Ok(n)) => (buf.get(head_len..head_len + n)?.to_vec(), head_len + n),
            Some(Err(_)) => return Some(Err(())),
            None => (Vec::new(), head_len),
        }
    };
    headers.retain(|(n, _)| n != "x-request-id" && n != "x-api-id" && n != "host");
    headers.sort();
    Some(Ok((
        Received {
            method: req.method.unwrap_or("").to_owned(),
            target: req.path.unwrap_or("").to_owned(),
            headers,
            body,
        },
        used,
    )))
}

async fn start_counting() -> (String, Counting) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/base", listener.local_addr().expect("addr"));
    let counting = Counting::default();
    let state = counting.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    match parse_request(&buf) {
                        Some(Ok((received, used))) => {
                            buf.drain(..used);
                            state.seen.lock().expect("seen").push(received);
                            // It would let any page read its answers: the gateway decides.
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\
                                       Access-Control-Allow-Origin: *\r\n\
                                       Access-Control-Allow-Credentials: true\r\n\r\nok";
                            if socket.write_all(ok).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Some(Err(())) => {
                            state.garbled.lock().expect("garbled").push(buf);
                            return;
                        }
                        None => {}
                    }
                    let mut chunk = [0u8; 8192];
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, counting)
}

/// A gateway (fast path on or off) with an open API in front of a counting upstream.
struct Node {
    server: Server,
    _dir: tempfile::TempDir,
    gateway: String,
    /// The admin listener's address.
    admin: String,
    /// The API's path prefix.
    prefix: String,
    upstream: Counting,
    /// Set when the gateway listens over TLS.
    tls: Option<tokio_rustls::TlsConnector>,
}

/// A client connection, in the clear or over TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn node(fast_path: bool) -> Node {
    let flag = if fast_path { "true" } else { "false" };
    node_with(&["--http1-fast-path", flag]).await
}

/// The same, with these flags of `serve`.
async fn node_with(args: &[&str]) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    node_in(dir, args, None).await
}

/// A gateway listening over TLS (HTTP/1.1 chosen by ALPN), fast path on or off.
async fn tls_node(fast_path: bool) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut flags, der) = common::tls::listener_flags(dir.path());
    flags.extend(["--http1-fast-path".to_owned(), fast_path.to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let connector = common::tls::connector(&der, &[b"http/1.1"]);
    node_in(dir, &flags, Some(connector)).await
}

async fn node_in(
    dir: tempfile::TempDir,
    args: &[&str],
    tls: Option<tokio_rustls::TlsConnector>,
) -> Node {
    let (url, upstream) = start_counting().await;
    node_over(dir, args, tls, &url, upstream).await
}

/// A gateway with an open API in front of the upstream at `url` (`upstream` counts what it
/// parses, when it is the counting one).
async fn node_over(
    dir: tempfile::TempDir,
    args: &[&str],
    tls: Option<tokio_rustls::TlsConnector>,
    url: &str,
    upstream: Counting,
) -> Node {
    let server = start_with(&dir.path().join("data"), Some(PASSWORD), args).await;
    let admin = Admin::login(&server).await;
    let (sid, _) = admin
        .service_with_api("open", url, json!({"auth_type": "NONE"}))
        .await;
    let gateway = server
        .gateway
        .split_once("://")
        .expect("scheme")
        .1
        .to_owned();
    Node {
        admin: server.admin.trim_start_matches("http://").to_owned(),
        server,
        _dir: dir,
        gateway,
        prefix: format!("/v1/infers/{sid}"),
        upstream,
        tls,
    }
}

/// What the gateway did with some bytes: the statuses it answered on that connection and
/// the requests the upstream parsed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    statuses: Vec<u16>,
    upstream: Vec<Received>,
    garbled: usize,
}

/// The statuses of the whole responses in `bytes`.
fn statuses(mut bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut slots);
        let Ok(httparse::Status::Complete(len)) = res.parse(bytes) else {
            return out;
        };
        out.push(res.code.unwrap_or(0));
        let body = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        match bytes.get(len + body..) {
            Some(rest) => bytes = rest,
            None => return out,
        }
    }
}

impl Node {
    /// A new client connection to the gateway.
    async fn connect(&self) -> Box<dyn Stream> {
        match &self.tls {
            Some(tls) => Box::new(common::tls::connect(tls, &self.gateway).await),
            None => Box::new(TcpStream::connect(&self.gateway).await.expect("connect")),
        }
    }

    /// Sends `raw` (with `{P}` standing for the API's prefix) on a new connection, reads
    /// what comes back until the connection is quiet, and collects what reached upstream.
    async fn send(&self, raw: &[u8]) -> Outcome {
        self.send_raw(raw).await.0
    }

    /// The same, with the bytes that came back.
    async fn send_raw(&self, raw: &[u8]) -> (Outcome, Vec<u8>) {
        let raw = String::from_utf8_lossy(raw).replace("{P}", &self.prefix);
        let mut socket = self.connect().await;
        socket.write_all(raw.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            // Quiet for this long after an answer: nothing more is coming.
            let wait = if statuses(&answer).is_empty() {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                Duration::from_millis(150)
            };
            match tokio::time::timeout(wait, socket.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        drop(socket);
        // The upstream side of a forwarded call is complete before its answer came back.
        let outcome = Outcome {
            statuses: statuses(&answer),
            upstream: self.upstream.taken(),
            garbled: self.upstream.garbled(),
        };
        (outcome, answer)
    }

    /// A plain call after a hostile one gets its own answer, and is the only request the
    /// upstream parses.
    async fn still_clean(&self, after: &str) {
        let outcome = self
            .send(b"GET {P}/after HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await;
        assert_eq!(outcome.statuses, [200], "the call after {after:?}");
        assert_eq!(outcome.upstream.len(), 1, "the call after {after:?}");
        assert_eq!(outcome.upstream[0].target, "/base/after");
        assert_eq!(outcome.garbled, 0, "after {after:?}");
    }
}

/// What a hostile request must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// 400 and nothing upstream.
    Refused,
    /// Exactly one request upstream, answered 200.
    Once,
}

/// The corpus: classic smuggling (CL.TE, TE.CL, TE.TE, folding), `Connection` naming the
/// framing, traversal, bad bytes, spoofed identity and credentials on an open API.
const CORPUS: &[(&str, &[u8], Want)] = &[
    (
        "Connection: content-length",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nConnection: content-length\r\nContent-Length: 49\r\n\r\nGET /internal HTTP/1.1\r\nHost: x\r\nX-App-Id: evil\r\n\r\n",
        Want::Once,
    ),
    (
        "absolute-form target naming another host than Host",
        b"GET http://other{P}/a HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "absolute-form target with user information",
        b"GET http://user@gw{P}/a HTTP/1.1\r\nHost: user@gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "absolute-form target naming Host's host",
        b"GET http://gw{P}/a HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Once,
    ),
    (
        "Connection: close, Content-Length",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nConnection: close, Content-Length\r\nContent-Length: 30\r\n\r\nGET /internal HTTP/1.1\r\nA: b\r\n\r\n",
        Want::Once,
    ),
    (
        "Connection: keep-alive, content-length",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, content-length\r\nContent-Length: 30\r\n\r\nGET /internal HTTP/1.1\r\nA: b\r\n\r\n",
        Want::Once,
    ),
    (
        "Connection: host, transfer-encoding",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nConnection: host, transfer-encoding, x-request-id\r\nContent-Length: 5\r\n\r\nhello",
        Want::Once,
    ),
    (
        "CL.TE",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        Want::Refused,
    ),
    (
        "TE.CL",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "TE.TE with a second coding",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "TE xchunked",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "TE gzip, chunked",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "space before the colon",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "obs-fold",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\n\r\n",
        Want::Refused,
    ),
    (
        "folded Transfer-Encoding",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "bare CR",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nX-A: a\rb\r\n\r\n",
        Want::Refused,
    ),
    (
        "NUL in a value",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n",
        Want::Refused,
    ),
    (
        "invalid name byte",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nX(A): b\r\n\r\n",
        Want::Refused,
    ),
    (
        "differing Content-Length",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        Want::Refused,
    ),
    (
        "signed Content-Length",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\nhello",
        Want::Refused,
    ),
    (
        "two Hosts",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nHost: evil\r\n\r\n",
        Want::Refused,
    ),
    (
        "huge chunk size",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "dot segments",
        b"GET {P}/../../internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "encoded dots",
        b"GET {P}/%2e%2e/%2E%2E/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "dots encoded twice",
        b"GET {P}/%252e%252e/%252E%252E/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "dots that a second decoding completes",
        b"GET {P}/%2%65%2%65/%%32%65%%32%65/%25%32%65%25%32%65/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "a dot segment that a decoded ; or ? ends",
        b"GET {P}/..%3bx/..%3f/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "overlong UTF-8 dots",
        b"GET {P}/%c0%ae%c0%ae/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "dots after Unicode compatibility or a lax decoder",
        b"GET {P}/%ef%bc%8e%ef%bc%8e/..%ff/%ae%ae/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "HTTP/1.1 with no Host",
        b"GET {P}/a HTTP/1.1\r\nX-Host: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "HTTP/1.1 with no Host, chunked (the general server's way)",
        b"POST {P}/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "a Host that names a path or a user",
        b"GET {P}/a HTTP/1.1\r\nHost: gw/evil@x\r\n\r\n",
        Want::Refused,
    ),
    (
        "a Host that hides a slash in an escape",
        b"POST {P}/a HTTP/1.1\r\nHost: gw%2fevil\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Want::Refused,
    ),
    (
        "HTTP/1.0 with no Host",
        b"GET {P}/a HTTP/1.0\r\n\r\n",
        Want::Once,
    ),
    (
        "an absolute-form authority that is not a host, standing in for Host",
        b"GET http://x:abc{P}/a HTTP/1.0\r\n\r\n",
        Want::Refused,
    ),
    (
        "an absolute-form target of another scheme",
        b"GET foo://gw{P}/a HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "a Host that reads as a list of two",
        b"GET {P}/a HTTP/1.1\r\nHost: gw,evil.example\r\n\r\n",
        Want::Refused,
    ),
    (
        "an absolute-form authority with escapes in brackets",
        b"GET http://x[%2f%40evil]{P}/a HTTP/1.0\r\n\r\n",
        Want::Refused,
    ),
    (
        "dot segments with path parameters",
        b"GET {P}/..;/..;x=1/internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "encoded slash",
        b"GET {P}%2f..%2finternal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "backslash",
        b"GET {P}/..\\internal HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Refused,
    ),
    (
        "chunked with extensions and a trailer",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: evil\r\n\r\n",
        Want::Once,
    ),
    (
        "spoofed identity and forwarding",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nX_App_Id: evil\r\nx_api_id: evil\r\nX-User-Id: evil\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX_Forwarded_Host: evil\r\n\r\n",
        Want::Once,
    ),
    (
        "credentials on an open API",
        b"GET {P}/a HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: c\r\napikey: k\r\nX-Auth-Token: t\r\nAuthorization: SDK-HMAC-SHA256 Access=k, SignedHeaders=host, Signature=00\r\nX_Apig_AppCode: c\r\n\r\n",
        Want::Once,
    ),
    (
        "pipelined after a body",
        b"POST {P}/a HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhelloGET {P}/b HTTP/1.1\r\nHost: gw\r\n\r\n",
        Want::Once,
    ),
];

/// Headers that must never reach the upstream from a client.
const NEVER_UPSTREAM: &[&str] = &[
    "x_app_id",
    "x_api_id",
    "x-user-id",
    "forwarded",
    "x-real-ip",
    "x_forwarded_host",
    "x-apig-appcode",
    "x_apig_appcode",
    "apikey",
    "x-auth-token",
    "authorization",
];

fn check(name: &str, want: Want, outcome: &Outcome) {
    assert_eq!(
        outcome.garbled, 0,
        "{name}: the upstream got bytes it could not parse"
    );
    match want {
        Want::Refused => {
            assert_eq!(outcome.statuses, [400], "{name}: {outcome:?}");
            assert!(outcome.upstream.is_empty(), "{name}: {outcome:?}");
        }
        Want::Once => {
            assert_eq!(outcome.statuses.first(), Some(&200), "{name}: {outcome:?}");
            let forwarded = &outcome.upstream[..1.min(outcome.upstream.len())];
            assert_eq!(forwarded.len(), 1, "{name}: {outcome:?}");
            for (header, value) in &forwarded[0].headers {
                assert!(
                    !NEVER_UPSTREAM.contains(&header.as_str()),
                    "{name}: {header} reached the upstream"
                );
                if header == "x-forwarded-for" {
                    assert_eq!(value, "127.0.0.1", "{name}");
                }
                if header == "x-app-id" || header == "x-user-id" {
                    panic!("{name}: {header} on an anonymous call");
                }
            }
            assert!(
                !forwarded[0].target.contains("internal"),
                "{name}: {outcome:?}"
            );
        }
    }
    // One client request, one upstream request: a pipelined second request is a second
    // call with its own answer.
    assert_eq!(
        outcome.upstream.len(),
        outcome.statuses.iter().filter(|&&s| s == 200).count(),
        "{name}: {outcome:?}"
    );
}

/// Heads of more lines than the fast path parses (it hands them to the general server whole,
/// with what it read): the same decisions as for short ones.
fn long_heads() -> Vec<(&'static str, Vec<u8>, Want)> {
    let filler: String = (0..60).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    vec![
        (
            "60 header lines, then spoofed identity and forwarding",
            format!("GET {{P}}/a HTTP/1.1\r\nHost: gw\r\n{filler}X-App-Id: evil\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n").into_bytes(),
            Want::Once,
        ),
        (
            "60 header lines, then CL.TE",
            format!("POST {{P}}/a HTTP/1.1\r\nHost: gw\r\n{filler}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG").into_bytes(),
            Want::Refused,
        ),
    ]
}

#[tokio::test]
async fn hostile_requests_reach_the_upstream_once_or_not_at_all_on_both_servers() {
    let fast = node(true).await;
    let general = node(false).await;
    // HTTPS: HTTP/1.1 over TLS starts on the fast path too.
    let tls = tls_node(true).await;
    let cases = CORPUS
        .iter()
        .map(|&(name, raw, want)| (name, raw.to_vec(), want))
        .chain(long_heads());
    for (name, raw, want) in cases {
        let (name, raw, want) = (&name, &raw[..], &want);
        let on_fast = fast.send(raw).await;
        check(name, *want, &on_fast);
        fast.still_clean(name).await;
        let on_general = general.send(raw).await;
        check(name, *want, &on_general);
        general.still_clean(name).await;
        assert_eq!(on_fast, on_general, "{name}: the servers differ");
        let mut on_tls = tls.send(raw).await;
        tls.still_clean(name).await;
        // What differs, and must: the upstream learns the client came over TLS.
        for received in &mut on_tls.upstream {
            for (header, value) in &mut received.headers {
                if header == "x-forwarded-proto" {
                    assert_eq!(value, "https", "{name}");
                    *value = "http".to_owned();
                }
            }
        }
        assert_eq!(on_fast, on_tls, "{name}: TLS and the clear differ");
    }
}

/// Chunked bodies that hyper and the gateway's own framing rules could read differently
/// (a chunk line longer than the gateway reads, a line ended by a bare LF) followed by a
/// request the gateway refuses: the connection ends at the broken line on both servers,
/// and nothing after it, least of all the refused request, reaches the upstream.
#[tokio::test]
async fn a_broken_chunked_body_lets_nothing_after_it_through() {
    let smuggled = "POST {P}/SMUGGLED HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let first = "POST {P}/first HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cover = format!(
        "POST {{P}}/cover HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    );
    let long = "e".repeat(9000);
    let cases = [
        format!("{first}5;{long}\r\nhello\r\n0\r\n\r\n{smuggled}"),
        format!(
            "{first}11170\r\n{}\r\n5;{long}\r\nhello\r\n0\r\n\r\n{smuggled}",
            "x".repeat(0x11170)
        ),
        format!("{first}5\r\nhello\r\n0\r\nX-T: {long}\r\n\r\n{smuggled}"),
        format!("{first}5\r\nhello\r\n0\r\n\n{cover}{smuggled}"),
        format!("{first}5\nhello\r\n0\r\n\r\n{smuggled}"),
    ];
    // Over TLS the same bytes arrive in records, and the fast path reads them through it.
    for node in [node(true).await, node(false).await, tls_node(true).await] {
        for case in &cases {
            let name = &case[first.len()..first.len() + 20];
            let outcome = node.send(case.as_bytes()).await;
            assert!(
                outcome
                    .upstream
                    .iter()
                    .all(|r| r.target.ends_with("/first")),
                "{name:?}: {outcome:?}"
            );
            assert!(outcome.statuses.len() <= 1, "{name:?}: {outcome:?}");
            node.still_clean(name).await;
        }
    }
}

/// A request that asks to switch protocols (an `Upgrade` line, `CONNECT`) and is answered
/// without switching ends its connection: what came after it is never read as requests,
/// so a request the gateway refuses cannot follow it to the upstream, on either server.
#[tokio::test]
async fn an_upgrade_that_does_not_happen_ends_the_connection() {
    let smuggled = "POST {P}/SMUGGLED HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let cases = [
        format!("GET {{P}}/up HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\r\n{smuggled}"),
        format!("GET {{P}}/up HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n{smuggled}"),
        format!("GET {{P}}/up HTTP/1.0\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n{smuggled}"),
        format!("GET {{P}}/up HTTP/1.1\r\nHost: gw\r\nUpgrade:\r\n\r\n{smuggled}"),
        format!("GET /nowhere HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\r\n{smuggled}"),
        format!("CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: gw\r\n\r\n{smuggled}"),
        format!("POST {{P}}/up HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc{smuggled}"),
        format!("GET {{P}}/a HTTP/1.1\r\nHost: gw\r\n\r\nGET {{P}}/up HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n\r\nGET {{P}}/b HTTP/1.1\r\nHost: gw\r\n\r\n{smuggled}"),
    ];
    for node in [node(true).await, node(false).await, tls_node(true).await] {
        for case in &cases {
            let (outcome, answer) = node.send_raw(case.as_bytes()).await;
            let name = case
                .lines()
                .find(|l| l.contains("/up") || l.contains("CONNECT") || l.contains("nowhere"));
            assert!(
                outcome
                    .upstream
                    .iter()
                    .all(|r| !r.target.contains("SMUGGLED") && !r.target.ends_with("/b")),
                "{name:?}: {outcome:?}"
            );
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            assert!(text.contains("connection: close"), "{name:?}: {text}");
            node.still_clean(case).await;
        }
    }
}

/// An upstream that switches protocols as an HTTP/2 server does for `Upgrade: h2c`
/// (hypercorn, among others): a request with an `Upgrade` line is answered 101 with that
/// protocol (and the `Sec-WebSocket-Accept` of its key, but under `…/noaccept`), and so is
/// any request to `…/always`, asked or not; others are answered 200. Records each request
/// head (lowercase) and every byte that came after a switch.
#[derive(Clone, Default)]
struct Switching {
    heads: Arc<Mutex<Vec<String>>>,
    tunneled: Arc<Mutex<Vec<u8>>>,
}

async fn start_switching() -> (String, Switching) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/base", listener.local_addr().expect("addr"));
    let switching = Switching::default();
    let state = switching.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let sent = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let head = sent.to_ascii_lowercase();
                    buf.drain(..end + 4);
                    state.heads.lock().expect("heads").push(head.clone());
                    let asked = head
                        .lines()
                        .find_map(|l| l.strip_prefix("upgrade:"))
                        .map(|p| p.trim().to_owned());
                    let always = head.lines().next().is_some_and(|l| l.contains("/always "));
                    let Some(protocol) = asked.or(always.then(|| "h2c".to_owned())) else {
                        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if socket.write_all(ok).await.is_err() {
                            return;
                        }
                        continue;
                    };
                    let accept = sent
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("sec-websocket-key")
                                .then_some(value)
                        })
                        .filter(|_| !head.contains("/noaccept "))
                        .map(|key| {
                            format!(
                                "Sec-WebSocket-Accept: {}\r\n",
                                common::upstream::websocket_accept(key)
                            )
                        })
                        .unwrap_or_default();
                    let switched = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n{accept}\r\n"
                    );
                    if socket.write_all(switched.as_bytes()).await.is_err() {
                        return;
                    }
                    // From here on, whatever arrives is the other protocol's.
                    state.tunneled.lock().expect("tunneled").append(&mut buf);
                    while let Ok(n) = socket.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        state
                            .tunneled
                            .lock()
                            .expect("tunneled")
                            .extend_from_slice(&chunk[..n]);
                    }
                    return;
                }
            });
        }
    });
    (url, switching)
}

/// Upgrades pass to WebSocket only. An `Upgrade: h2c` (or a list naming another protocol)
/// goes on as an ordinary request without it: were the upstream's 101 relayed, the client
/// would speak HTTP/2 straight to the upstream through the gateway, to any path, with any
/// identity headers, no credential checked. An upstream that switches unasked gets its
/// answer refused (502) and no byte after it. On both servers and over TLS.
#[tokio::test]
async fn only_websocket_upgrades_reach_the_upstream_and_no_unasked_switch_the_client() {
    let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let after = "GET /private/secret HTTP/1.1\r\nHost: up\r\nX-App-Id: forged\r\n\r\n";
    let refused_upgrades = [
        "GET {P}/h2c HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "GET {P}/h2c HTTP/1.1\r\nHost: gw\r\nconnection: UPGRADE\r\nupgrade: H2C\r\nhttp2_settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        "GET {P}/h2c HTTP/1.1\r\nHost: gw\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        "GET {P}/h2c HTTP/1.1\r\nHost: gw\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut tls_flags, der) = common::tls::listener_flags(dir.path());
    tls_flags.extend(["--http1-fast-path".to_owned(), "true".to_owned()]);
    let tls_flags: Vec<&str> = tls_flags.iter().map(String::as_str).collect();
    let connector = common::tls::connector(&der, &[b"http/1.1"]);
    let mut nodes = Vec::new();
    for (args, tls) in [
        (&["--http1-fast-path", "true"][..], None),
        (&["--http1-fast-path", "false"][..], None),
        (&tls_flags[..], Some(connector)),
    ] {
        let (url, switching) = start_switching().await;
        let node_dir = tempfile::tempdir_in(dir.path()).expect("tempdir");
        let node = node_over(node_dir, args, tls, &url, Counting::default()).await;
        nodes.push((node, switching));
    }
    for (node, switching) in &nodes {
        let quiet = || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            std::mem::take(&mut *switching.tunneled.lock().expect("tunneled"))
        };
        // What the client sent after its request: through a switch, it would reach the
        // upstream as it is (a request's own body, sent before the answer, may).
        let leaked = |bytes: &[u8]| {
            [&b"PRI * HTTP/2.0"[..], b"/private/secret"]
                .iter()
                .any(|sent| bytes.windows(sent.len()).any(|w| w == *sent))
        };
        for case in refused_upgrades {
            let raw = format!("{case}{preface}{after}");
            let (outcome, answer) = node.send_raw(raw.as_bytes()).await;
            let heads = std::mem::take(&mut *switching.heads.lock().expect("heads"));
            assert_eq!(
                outcome.statuses.first(),
                Some(&200),
                "{case:?}: {outcome:?}"
            );
            assert!(!outcome.statuses.contains(&101), "{case:?}: {outcome:?}");
            assert!(
                !leaked(&quiet().await),
                "{case:?}: bytes went through a switch"
            );
            assert_eq!(heads.len(), 1, "{case:?}: {heads:?}");
            assert!(heads[0].starts_with("get /base/h2c "), "{heads:?}");
            for line in [
                "upgrade:",
                "connection:",
                "http2-settings:",
                "http2_settings:",
            ] {
                assert!(
                    !heads[0].contains(line),
                    "{case:?}: {line} reached the upstream: {heads:?}"
                );
            }
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            assert!(!text.contains("switching protocols"), "{case:?}: {text}");
        }
        // An upstream that switches when nobody asked: refused, nothing tunneled.
        for case in [
            "GET {P}/always HTTP/1.1\r\nHost: gw\r\n\r\n",
            "POST {P}/always HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi",
        ] {
            let raw = format!("{case}{preface}{after}");
            let (outcome, answer) = node.send_raw(raw.as_bytes()).await;
            switching.heads.lock().expect("heads").clear();
            assert_eq!(
                outcome.statuses.first(),
                Some(&502),
                "{case:?}: {outcome:?}"
            );
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            assert!(!text.contains("switching protocols"), "{case:?}: {text}");
            assert!(
                !leaked(&quiet().await),
                "{case:?}: bytes went through a switch"
            );
        }
        // A WebSocket handshake that the upstream's 101 does not complete (no
        // `Sec-WebSocket-Accept`): refused, nothing tunneled.
        let handshake = "Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        let raw = format!("GET {{P}}/noaccept HTTP/1.1\r\nHost: gw\r\n{handshake}\r\n{after}");
        let (outcome, _) = node.send_raw(raw.as_bytes()).await;
        switching.heads.lock().expect("heads").clear();
        assert_eq!(outcome.statuses.first(), Some(&502), "{outcome:?}");
        assert!(
            !leaked(&quiet().await),
            "a switch without the handshake's answer"
        );
        // Nor is WebSocket without its key and version an opening handshake: an ordinary
        // request.
        let raw = format!(
            "GET {{P}}/ws HTTP/1.1\r\nHost: gw\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n{after}"
        );
        let (outcome, _) = node.send_raw(raw.as_bytes()).await;
        switching.heads.lock().expect("heads").clear();
        assert_eq!(outcome.statuses.first(), Some(&200), "{outcome:?}");
        assert!(!leaked(&quiet().await));
        // A WebSocket handshake still switches, and the bytes after it go through.
        let raw = format!("GET {{P}}/ws HTTP/1.1\r\nHost: gw\r\n{handshake}\r\n{after}");
        let (outcome, _) = node.send_raw(raw.as_bytes()).await;
        switching.heads.lock().expect("heads").clear();
        assert_eq!(outcome.statuses.first(), Some(&101), "{outcome:?}");
        assert_eq!(quiet().await, after.as_bytes());
    }
}

/// `CONNECT` and `TRACE`, in any case, reach no upstream, on an API that takes any method:
/// each gets one refusal (404: no API serves them), `CONNECT` in any form ends its
/// connection, and nothing after it is read; on both servers and over TLS.
#[tokio::test]
async fn connect_and_trace_reach_no_upstream() {
    let cases = [
        ("TRACE {P}/a HTTP/1.1\r\nHost: gw\r\n\r\n", false),
        ("TRACE {P}/a HTTP/1.0\r\nHost: gw\r\n\r\n", false),
        (
            "CONNECT {P}/a HTTP/1.1\r\nHost: gw\r\n\r\nGET {P}/b HTTP/1.1\r\nHost: gw\r\n\r\n",
            true,
        ),
        (
            "CONNECT {P}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            true,
        ),
        (
            "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
            true,
        ),
        ("CONNECT {P}/a HTTP/1.0\r\nHost: gw\r\n\r\n", true),
        ("CONNECT 127.0.0.1:1 HTTP/1.0\r\n\r\n", true),
        // Another method to HTTP, but not to an upstream that reads methods in any case.
        ("connect {P}/a HTTP/1.1\r\nHost: gw\r\n\r\n", false),
        ("Trace {P}/a HTTP/1.1\r\nHost: gw\r\n\r\n", false),
    ];
    for node in [node(true).await, node(false).await, tls_node(true).await] {
        for (case, closes) in cases {
            let (outcome, answer) = node.send_raw(case.as_bytes()).await;
            let name = case.lines().next();
            // 404 (no API serves the method), or 400 for a target that is no path.
            assert!(
                matches!(outcome.statuses[..], [404] | [400]),
                "{name:?}: {outcome:?}"
            );
            assert!(outcome.upstream.is_empty(), "{name:?}: {outcome:?}");
            assert_eq!(outcome.garbled, 0, "{name:?}");
            if closes {
                let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
                assert!(text.contains("connection: close"), "{name:?}: {text}");
            }
            node.still_clean(case).await;
        }
    }
}

/// A request head made of lines that touch framing, hop-by-hop names, identity, paths and
/// credentials, with the body its framing asks for.
fn generated_request() -> impl Strategy<Value = Vec<u8>> {
    let path = prop_oneof![
        Just(""),
        Just("/a"),
        Just("/a/../b"),
        Just("/%2e%2e/x"),
        Just("/a%2Fb"),
        Just("/ok?x=1&y=%2e"),
        Just("/./a"),
        Just("/..;/a"),
    ];
    let line = prop_oneof![
        Just("Content-Length: 5"),
        Just("Content-Length: 0"),
        Just("content-length: 6"),
        Just("Transfer-Encoding: chunked"),
        Just("Transfer-Encoding: gzip"),
        Just("Connection: content-length"),
        Just("Connection: close"),
        Just("Connection: x-keep, host"),
        Just("X-Keep: 1"),
        Just("X_App_Id: e"),
        Just("Forwarded: for=x"),
        Just("X-Forwarded-For: 9.9.9.9"),
        Just("Authorization: SDK-HMAC-SHA256 Access=x"),
        Just("Authorization: Bearer k"),
        Just("apikey: k"),
        Just("Host: second"),
        Just("Content_Length: 3"),
    ];
    (
        prop_oneof![Just("GET"), Just("POST")],
        path,
        proptest::collection::vec(line, 0..5),
    )
        .prop_map(|(method, path, lines)| {
            let mut raw = format!("{method} {{P}}{path} HTTP/1.1\r\nHost: gw\r\n");
            for line in &lines {
                raw.push_str(line);
                raw.push_str("\r\n");
            }
            raw.push_str("\r\n");
            let chunked = lines.iter().any(|l| l.starts_with("Transfer-Encoding"));
            let length = lines
                .iter()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.parse::<usize>().ok());
            if chunked {
                raw.push_str("5\r\nhello\r\n0\r\n\r\n");
            } else if let Some(n) = length {
                raw.push_str(&"hello!"[..n]);
            }
            raw.into_bytes()
        })
}

#[test]
fn generated_requests_get_the_same_decision_from_both_servers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (fast, general) = runtime.block_on(async { (node(true).await, node(false).await) });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&generated_request(), |raw| {
            let (on_fast, on_general) =
                runtime.block_on(async { (fast.send(&raw).await, general.send(&raw).await) });
            let text = String::from_utf8_lossy(&raw).into_owned();
            prop_assert_eq!(&on_fast, &on_general, "{}", text);
            prop_assert!(on_fast.upstream.len() <= on_fast.statuses.len(), "{}", text);
            prop_assert_eq!(on_fast.garbled, 0);
            for received in &on_fast.upstream {
                for (header, _) in &received.headers {
                    prop_assert!(
                        !NEVER_UPSTREAM.contains(&header.as_str()) || header == "authorization"
                    );
                }
            }
            Ok(())
        })
        .expect("both servers decide the same");
}

/// Whether the server closes `socket` within `within` (reading whatever it answers).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, socket.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, answer),
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => return (false, answer),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off_on_both_servers_and_both_listeners() {
    let limits = [
        "--header-timeout-ms",
        "400",
        "--body-idle-timeout-ms",
        "400",
    ];
    for fast_path in ["true", "false"] {
        let mut args = limits.to_vec();
        args.extend(["--http1-fast-path", fast_path]);
        let node = node_with(&args).await;
        for (listener, addr) in [("gateway", &node.gateway), ("admin", &node.admin)] {
            // Half a head, then nothing.
            let mut socket = TcpStream::connect(addr).await.expect("connect");
            socket
                .write_all(b"GET /v1/infers/x HTTP/1.1\r\nHost: g")
                .await
                .expect("write");
            let (closed, _) = closed_within(&mut socket, Duration::from_secs(5)).await;
            assert!(
                closed,
                "{listener} (fast path {fast_path}) kept half a head open"
            );
            // A connection that sends nothing at all.
            let mut silent = TcpStream::connect(addr).await.expect("connect");
            let (closed, _) = closed_within(&mut silent, Duration::from_secs(5)).await;
            assert!(
                closed,
                "{listener} (fast path {fast_path}) kept a silent connection"
            );
            // HTTP/2 (h2c): the preface alone, or with its SETTINGS, then nothing: the
            // client answers no ping.
            let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
            let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
            for sent in [preface.to_vec(), [&preface[..], &settings[..]].concat()] {
                let mut h2 = TcpStream::connect(addr).await.expect("connect");
                h2.write_all(&sent).await.expect("write");
                let (closed, _) = closed_within(&mut h2, Duration::from_secs(5)).await;
                assert!(
                    closed,
                    "{listener} (fast path {fast_path}) kept a silent HTTP/2 connection"
                );
            }
        }
        // Half a body: the call is cut off and nothing half-read reaches the upstream.
        let mut socket = TcpStream::connect(&node.gateway).await.expect("connect");
        let head = format!(
            "POST {}/a HTTP/1.1\r\nHost: g\r\nContent-Length: 10\r\n\r\nabc",
            node.prefix
        );
        socket.write_all(head.as_bytes()).await.expect("write");
        let (closed, answer) = closed_within(&mut socket, Duration::from_secs(5)).await;
        assert!(
            closed,
            "fast path {fast_path}: half a body kept the connection"
        );
        let statuses = statuses(&answer);
        assert!(
            statuses.is_empty() || statuses == [408],
            "fast path {fast_path}: {statuses:?}"
        );
        assert!(
            node.upstream.taken().iter().all(|r| r.body.len() == 10),
            "a partial body was forwarded as whole"
        );
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(
        &dir.path().join("data"),
        Some(PASSWORD),
        &["--max-connections", "3"],
    )
    .await;
    let gateway = server.gateway.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut socket = TcpStream::connect(&gateway).await.expect("connect");
        // Each is served: a request on it is answered.
        socket
            .write_all(b"GET /nothing HTTP/1.1\r\nHost: g\r\n\r\n")
            .await
            .expect("write");
        let mut chunk = [0u8; 1024];
        let n = socket.read(&mut chunk).await.expect("read");
        assert!(
            chunk[..n].starts_with(b"HTTP/1.1 404"),
            "{:?}",
            String::from_utf8_lossy(&chunk[..n])
        );
        held.push(socket);
    }
    let mut over = TcpStream::connect(&gateway)
        .await
        .expect("the kernel accepts it");
    let _ = over
        .write_all(b"GET /nothing HTTP/1.1\r\nHost: g\r\n\r\n")
        .await;
    let (closed, answer) = closed_within(&mut over, Duration::from_secs(2)).await;
    assert!(
        closed && answer.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let metrics = server.scrape().await;
    assert!(
        metrics.contains("infergate_gateway_refused_connections_total 1"),
        "{metrics}"
    );
    // Once one closes, a new connection is served again.
    drop(held.pop());
    let mut served = None;
    for _ in 0..50 {
        let mut socket = TcpStream::connect(&gateway).await.expect("connect");
        let _ = socket
            .write_all(b"GET /nothing HTTP/1.1\r\nHost: g\r\n\r\n")
            .await;
        let (_, answer) = closed_within(&mut socket, Duration::from_millis(300)).await;
        if answer.starts_with(b"HTTP/1.1 404") {
            served = Some(socket);
            break;
        }
    }
    assert!(served.is_some(), "no connection served after one closed");

    // The admin listener has the same cap, counted apart.
    let admin = server.admin.trim_start_matches("http://").to_owned();
    let mut held_admin = Vec::new();
    for _ in 0..3 {
        held_admin.push(TcpStream::connect(&admin).await.expect("connect"));
    }
    let mut over = TcpStream::connect(&admin)
        .await
        .expect("the kernel accepts it");
    let _ = over
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let (closed, answer) = closed_within(&mut over, Duration::from_secs(2)).await;
    assert!(
        closed && answer.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(held_admin);
    let mut metrics = String::new();
    for _ in 0..50 {
        if let Ok(text) = reqwest::get(format!("{}/metrics", server.admin))
            .await
            .and_then(|r| r.error_for_status())
        {
            metrics = text.text().await.expect("text");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At least the one above; a poll that came before the held connections were seen to
    // close was refused and counted too.
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("infergate_admin_refused_connections_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 1, "{metrics}");
}

/// An attacker with no credential, or with the credential of an app not authorized for the
/// API, gets nothing behind an APP API, whatever it smuggles, spoofs or encodes: each
/// attempt is refused and neither upstream parses a request; the authorized app's call goes
/// through once, without its AppCode.
#[tokio::test]
async fn callers_without_the_right_credential_reach_nothing_behind_an_app_api() {
    let node = node(true).await;
    let admin = Admin::login(&node.server).await;
    let (url, behind) = start_counting().await;
    let (sid, _api, app_id, code) = admin.app_code_setup(&url, "client").await;
    let stranger = admin.app("stranger").await;
    let stranger_code = admin
        .app_code(stranger["app_id"].as_str().expect("id"))
        .await;
    let api = format!("/v1/infers/{sid}");
    let smuggled = format!("GET {api}/b HTTP/1.1\r\nHost: gw\r\nX-App-Id: {app_id}\r\n\r\n");
    let cases = [
        (
            "a body smuggled past Connection: content-length",
            format!(
                "POST {api}/a HTTP/1.1\r\nHost: gw\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
            401,
        ),
        (
            "the app's id spoofed",
            format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nX-App-Id: {app_id}\r\nX_App_Id: {app_id}\r\n\r\n"),
            401,
        ),
        (
            "the AppCode under a name the gateway does not read",
            format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nX_Apig_AppCode: {code}\r\n\r\n"),
            401,
        ),
        (
            "a signature in another case",
            format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nAuthorization: sdk-hmac-sha256 Access=x, SignedHeaders=host, Signature=00\r\n\r\n"),
            401,
        ),
        (
            "the app's AppCode and id in a chunked body's trailers",
            format!("POST {api}/a HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Apig-AppCode: {code}\r\nX-App-Id: {app_id}\r\n\r\n"),
            401,
        ),
        (
            "an app that is not authorized",
            format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: {stranger_code}\r\n\r\n"),
            403,
        ),
        (
            "a WebSocket handshake with no credential, a request behind it",
            format!("GET {api}/ws HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n{smuggled}"),
            401,
        ),
        (
            "a WebSocket handshake by an app that is not authorized",
            format!("GET {api}/ws HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: {stranger_code}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n{smuggled}"),
            403,
        ),
        (
            "an upgrade to h2c with no credential, HTTP/2 behind it",
            format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n{smuggled}"),
            401,
        ),
        (
            "from the open API's path up into the app's",
            format!("GET {{P}}/../{sid}/a HTTP/1.1\r\nHost: gw\r\n\r\n"),
            400,
        ),
        (
            "the same, encoded",
            format!("GET {{P}}/%2e%2e%2f{sid}/a HTTP/1.1\r\nHost: gw\r\n\r\n"),
            400,
        ),
    ];
    for (name, raw, status) in &cases {
        let outcome = node.send(raw.as_bytes()).await;
        assert_eq!(outcome.statuses, [*status], "{name}: {outcome:?}");
        assert!(
            outcome.upstream.is_empty(),
            "{name}: the open API's upstream was reached"
        );
        assert!(
            behind.taken().is_empty(),
            "{name}: the app API's upstream was reached"
        );
    }
    let call = format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: {code}\r\n\r\n");
    let outcome = node.send(call.as_bytes()).await;
    assert_eq!(outcome.statuses, [200]);
    let forwarded = behind.taken();
    assert_eq!(forwarded.len(), 1);
    assert!(forwarded[0]
        .headers
        .contains(&("x-app-id".to_owned(), app_id.clone())));
    assert!(!forwarded[0]
        .headers
        .iter()
        .any(|(n, _)| n == "x-apig-appcode"));
}

/// The header lines of the first response in `bytes`, names in lowercase.
fn first_head(bytes: &[u8]) -> Vec<(String, String)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut slots);
    let _ = res.parse(bytes);
    res.headers
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Web pages of the console's origin may ask (a preflight) and read answers; any preflight
/// is answered by the gateway, authenticates nothing and reaches no upstream, nor does what
/// a preflight's body smuggles; a page of another origin gets no CORS line (not even the
/// upstream's, which allows everyone) and its preflight allows nothing; a call from the
/// console's origin is authenticated as any other.
#[tokio::test]
async fn pages_of_other_origins_reach_nothing_a_credential_would_not() {
    const CONSOLE: &str = "http://console.example:8081";
    let node = node_with(&["--cors-origins", CONSOLE]).await;
    let admin = Admin::login(&node.server).await;
    let (url, behind) = start_counting().await;
    let (sid, _api, app_id, code) = admin.app_code_setup(&url, "page").await;
    let api = format!("/v1/infers/{sid}");
    let allowed = |head: &[(String, String)]| {
        head.iter()
            .filter(|(n, _)| n == "access-control-allow-origin")
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let smuggled = format!("GET {api}/b HTTP/1.1\r\nHost: gw\r\nX-App-Id: {app_id}\r\n\r\n");
    let preflight = |origin: &str, body: &str| {
        format!(
            "OPTIONS {api}/a HTTP/1.1\r\nHost: gw\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: authorization, x-sdk-date\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Asked by the console's page: answered here, nothing upstream, even with a request
    // smuggled in its body.
    for body in ["", smuggled.as_str()] {
        let (outcome, bytes) = node.send_raw(preflight(CONSOLE, body).as_bytes()).await;
        assert_eq!(outcome.statuses, [204], "{outcome:?}");
        let head = first_head(&bytes);
        assert_eq!(allowed(&head), [CONSOLE]);
        assert!(head.contains(&("access-control-allow-methods".into(), "POST".into())));
        assert!(head.contains(&(
            "access-control-allow-headers".into(),
            "authorization, x-sdk-date".into()
        )));
        assert!(!head
            .iter()
            .any(|(n, _)| n == "access-control-allow-credentials"));
        assert!(outcome.upstream.is_empty() && behind.taken().is_empty());
    }
    // Asked by another page: answered here too, allowing nothing.
    let (outcome, bytes) = node
        .send_raw(preflight("http://evil.example", "").as_bytes())
        .await;
    assert_eq!(outcome.statuses, [204]);
    let head = first_head(&bytes);
    assert!(
        !head.iter().any(|(n, _)| n.starts_with("access-control-")),
        "{head:?}"
    );
    assert!(outcome.upstream.is_empty() && behind.taken().is_empty());
    let cases = [
        // The console's page without a credential: refused, but the refusal is readable
        // there (a signature's refusal names the canonical request).
        (CONSOLE, String::new(), 401, vec![CONSOLE]),
        (
            CONSOLE,
            format!("X-Apig-AppCode: {code}\r\n"),
            200,
            vec![CONSOLE],
        ),
        (
            "http://evil.example",
            format!("X-Apig-AppCode: {code}\r\n"),
            200,
            vec![],
        ),
        ("null", format!("X-Apig-AppCode: {code}\r\n"), 200, vec![]),
        (
            "http://console.example:8081\r\nOrigin: http://evil.example",
            format!("X-Apig-AppCode: {code}\r\n"),
            200,
            vec![],
        ),
    ];
    for (origin, credential, status, readable) in cases {
        let raw =
            format!("GET {api}/a HTTP/1.1\r\nHost: gw\r\nOrigin: {origin}\r\n{credential}\r\n");
        let (outcome, bytes) = node.send_raw(raw.as_bytes()).await;
        assert_eq!(outcome.statuses, [status], "{origin}: {outcome:?}");
        let head = first_head(&bytes);
        assert_eq!(allowed(&head), readable, "{origin}");
        if !readable.is_empty() {
            assert!(head
                .iter()
                .any(|(n, v)| n == "access-control-expose-headers" && v.contains("x-request-id")));
        }
        assert_eq!(behind.taken().len(), usize::from(status == 200), "{origin}");
    }

    // A member of another project, calling from the console's page (the origin every
    // project's users share) with a token of their project, reaches nothing behind this
    // project's IAM API: the page may read the refusal, no more.
    let (iam_upstream, iam_behind) = start_counting().await;
    let (iam_sid, _) = admin
        .service_with_api("iam", &iam_upstream, json!({"auth_type": "IAM"}))
        .await;
    let member = member_of_new_project(&admin, "elsewhere", "carol").await;
    let token = &member.token;
    let raw = format!(
        "POST /v1/infers/{iam_sid}/a HTTP/1.1\r\nHost: gw\r\nOrigin: {CONSOLE}\r\n\
         X-Auth-Token: {token}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let (outcome, bytes) = node.send_raw(raw.as_bytes()).await;
    assert!(matches!(outcome.statuses[..], [401] | [403]), "{outcome:?}");
    assert_eq!(allowed(&first_head(&bytes)), [CONSOLE]);
    assert!(outcome.upstream.is_empty() && iam_behind.taken().is_empty());
    assert!(behind.taken().is_empty());
}

/// A new project and a new user who is a member of it, signed in to it.
async fn member_of_new_project(admin: &Admin, project: &str, user: &str) -> Admin {
    let password = format!("{user}-password-1");
    let project_id = admin
        .ok(
            Method::POST,
            "/v3/projects",
            Some(json!({"project": {"name": project}})),
        )
        .await["project"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let user_id = admin
        .ok(
            Method::POST,
            "/v3/users",
            Some(json!({"user": {"name": user, "password": password}})),
        )
        .await["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (granted, _) = admin
        .send(
            Method::PUT,
            &format!("/v3/projects/{project_id}/users/{user_id}/roles/member"),
            None,
        )
        .await;
    assert!(granted.is_success(), "{granted}");
    let token = admin
        .client
        .post(format!("{}/v3/auth/tokens", admin.base))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": "default"}}}},
            "scope": {"project": {"name": project}}}}),
        )
        .send()
        .await
        .expect("token")
        .headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    Admin {
        client: admin.client.clone(),
        base: admin.base.clone(),
        project: project_id,
        token,
    }
}

/// A member of another project cannot take a path of this one: it is refused the paths in
/// this project's service namespaces and its other paths (in any case), and an API it
/// registers above them catches no call
/// made under them (sent over a raw socket, with no credential), not even under a service
/// of this project that has no API; nor can it read this project's usage.
#[tokio::test]
async fn another_project_catches_no_call_under_this_projects_services() {
    let node = node(true).await;
    let admin = Admin::login(&node.server).await;
    let sid_a = node.prefix.trim_start_matches("/v1/infers/").to_owned();
    let bare = admin
        .ok(
            Method::POST,
            "/services",
            Some(json!({"service_name": "bare", "upstreams": ["http://127.0.0.1:9"]})),
        )
        .await["service_id"]
        .as_str()
        .expect("sid")
        .to_owned();
    // Project B and its member.
    let member_b = member_of_new_project(&admin, "team-b", "bob").await;
    let (url_b, upstream_b) = start_counting().await;
    let sid_b = member_b
        .ok(
            Method::POST,
            "/services",
            Some(json!({"service_name": "theirs", "upstreams": [url_b]})),
        )
        .await["service_id"]
        .as_str()
        .expect("sid")
        .to_owned();
    // A path of A's outside the namespaces, in a case they do not use.
    admin
        .ok(
            Method::POST,
            &format!("/app-auth/{sid_a}/apis"),
            Some(json!({"auth_type": "APP", "api_path": "/V1/Infers/chat"})),
        )
        .await;
    for path in [
        format!("/v1/infers/{sid_a}"),
        format!("/v1/infers/{sid_a}/predict"),
        format!("/v1/infers/{bare}"),
        "/V1/Infers/chat".to_owned(),
        "/V1/Infers/chat/completions".to_owned(),
    ] {
        let (status, body) = member_b
            .send(
                Method::POST,
                &format!("/app-auth/{sid_b}/apis"),
                Some(json!({"auth_type": "NONE", "api_path": path})),
            )
            .await;
        assert_eq!(status.as_u16(), 409, "{path}: {body}");
    }
    member_b
        .ok(
            Method::POST,
            &format!("/app-auth/{sid_b}/apis"),
            Some(json!({"auth_type": "NONE", "api_path": "/v1"})),
        )
        .await;
    // Raw calls, no credential.
    for (target, status, a, b) in [
        (format!("/v1/infers/{sid_a}/x"), 200, 1, 0),
        (format!("/v1/infers/{bare}/x"), 404, 0, 0),
        (format!("/v1/infers/{sid_a}x/y"), 404, 0, 0),
        ("/v1/other".to_owned(), 200, 0, 1),
        // A's APP API: no credential, nothing reaches either upstream.
        ("/V1/Infers/chat/completions".to_owned(), 401, 0, 0),
    ] {
        let outcome = node
            .send(format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
            .await;
        let to_b = upstream_b.taken().len();
        assert_eq!(
            (outcome.statuses.as_slice(), outcome.upstream.len(), to_b),
            ([status].as_slice(), a, b),
            "{target}"
        );
    }
    // Nor does B read how A's services are used: not under A's project, in any view.
    let b_in_a = Admin {
        client: member_b.client.clone(),
        base: member_b.base.clone(),
        project: admin.project.clone(),
        token: member_b.token.clone(),
    };
    for view in ["", "?granularity=day", "?granularity=week"] {
        let (status, body) = b_in_a
            .send(Method::GET, &format!("/app-auth/usage{view}"), None)
            .await;
        assert_eq!(status.as_u16(), 403, "{view}: {body}");
    }
    let (status, _) = admin.send(Method::GET, "/app-auth/usage", None).await;
    assert_eq!(status.as_u16(), 200, "A's admin reads A's usage");
}

/// Callers without the API's credential spend none of its throttling budget: their calls
/// are refused before anything is counted, whatever they spoof, so the app's calls are
/// admitted up to the limit. A client's hop count never reaches the upstream as sent, and
/// another project's member cannot bind its policy to this project's API.
#[tokio::test]
async fn strangers_spend_none_of_a_throttled_apis_budget() {
    let node = node(true).await;
    let admin = Admin::login(&node.server).await;
    let (url, behind) = start_counting().await;
    let (sid, api, _, code) = admin.app_code_setup(&url, "budget").await;
    let stranger = admin.app("stranger_app").await;
    let stranger_code = admin
        .app_code(stranger["app_id"].as_str().expect("id"))
        .await;
    admin
        .throttle(
            json!({"name": "two_a_day", "api_call_limits": 2, "ip_call_limits": 2,
                   "time_interval": 1, "time_unit": "DAY"}),
            &[&api],
        )
        .await;
    let path = format!("/v1/infers/{sid}/x");
    let strangers = [
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n"),
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: not-a-code-at-all\r\n\r\n"),
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: {stranger_code}\r\n\r\n"),
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nX-Forwarded-For: 10.9.9.9\r\nX_Apig_AppCode: {code}\r\n\r\n"),
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: SDK-HMAC-SHA256 Access=x, SignedHeaders=host, Signature=00\r\n\r\n"),
    ];
    for _ in 0..4 {
        for raw in &strangers {
            let outcome = node.send(raw.as_bytes()).await;
            assert!(
                matches!(outcome.statuses.as_slice(), [401] | [403]),
                "{raw:?}: {outcome:?}"
            );
        }
    }
    assert!(behind.taken().is_empty());
    let call =
        format!("GET {path} HTTP/1.1\r\nHost: gw\r\nX-Apig-AppCode: {code}\r\nX-Infergate-Hops: 0\r\nX_Infergate_Hops: 0\r\n\r\n");
    for _ in 0..2 {
        assert_eq!(node.send(call.as_bytes()).await.statuses, [200]);
    }
    assert_eq!(node.send(call.as_bytes()).await.statuses, [429]);
    let forwarded = behind.taken();
    assert_eq!(forwarded.len(), 2);
    for request in &forwarded {
        let hops: Vec<&str> = request
            .headers
            .iter()
            .filter(|(n, _)| n == "x-infergate-hops")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(hops, ["1"], "the gateway's own count, once");
    }
    // A hop count at the limit is refused before routing: no loop can be faked into a call.
    let looped = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nX-Infergate-Hops: 5\r\n\r\n");
    assert_eq!(node.send(looped.as_bytes()).await.statuses, [508]);

    // Another project's member: its policy cannot be bound to this project's API.
    let other = admin
        .ok(
            Method::POST,
            "/v3/projects",
            Some(json!({"project": {"name": "elsewhere"}})),
        )
        .await["project"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let member = admin
        .ok(
            Method::POST,
            "/v3/users",
            Some(json!({"user": {"name": "outsider", "password": "outsider-pass-1"}})),
        )
        .await["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    admin
        .ok(
            Method::PUT,
            &format!("/v3/projects/{other}/users/{member}/roles/admin"),
            None,
        )
        .await;
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("http://{}/v3/auth/tokens", node.admin))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "outsider", "password": "outsider-pass-1", "domain": {"name": "default"}}}},
            "scope": {"project": {"id": other}}}}),
        )
        .send()
        .await
        .expect("token");
    let token = reply.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let outsider = Admin {
        token,
        project: other.clone(),
        ..Admin::login(&node.server).await
    };
    let (status, created) = outsider
        .apigw(
            Method::POST,
            "/throttles",
            Some(json!({"name": "theirs", "api_call_limits": 1_000_000, "time_interval": 1, "time_unit": "DAY"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let theirs = created["id"].as_str().expect("id").to_owned();
    let (status, body) = outsider
        .apigw(
            Method::POST,
            "/throttle-bindings",
            Some(json!({"policy_id": theirs, "publish_ids": [api]})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // Its list holds its own policy only.
    let (status, listed) = outsider.apigw(Method::GET, "/throttles", None).await;
    assert_eq!(
        (status, listed["total"].clone()),
        (200, json!(1)),
        "{listed}"
    );
}

/// Model calls from strangers over raw sockets: no credential, a made-up AppCode, another
/// app's AppCode, a signature of an unknown key, on both servers (a plain body and
/// `Expect: 100-continue`). None reaches the upstream, none is asked for usage, none is
/// counted; the usage API answers no one without a token; the app's own call is forwarded
/// asking for usage with the client's `Accept-Encoding` replaced by `identity`.
#[tokio::test]
async fn strangers_make_no_model_call_and_count_no_usage() {
    let node = node_with(&["--usage-flush-ms", "100"]).await;
    let admin = Admin::login(&node.server).await;
    let (url, behind) = start_counting().await;
    let (sid, _api, _, code) = admin.app_code_setup(&url, "model_owner").await;
    let stranger = admin.app("model_stranger").await;
    let stranger_code = admin
        .app_code(stranger["app_id"].as_str().expect("id"))
        .await;
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let call = |credential: &str, expect: bool| {
        let expect = if expect {
            "Expect: 100-continue\r\n"
        } else {
            ""
        };
        format!(
            "POST /v1/infers/{sid}/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{credential}{expect}Accept-Encoding: gzip\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for expect in [false, true] {
        for credential in [
            String::new(),
            "X-Apig-AppCode: not-a-code-at-all\r\n".to_owned(),
            format!("X-Apig-AppCode: {stranger_code}\r\n"),
            "Authorization: SDK-HMAC-SHA256 Access=x, SignedHeaders=host, Signature=00\r\n"
                .to_owned(),
        ] {
            let raw = call(&credential, expect);
            let outcome = node.send(raw.as_bytes()).await;
            // A signature covers the body, so it is read (`100 Continue`) before the key is
            // checked; every other refusal comes before the body is asked for.
            let refused = if credential.starts_with("Authorization") && expect {
                matches!(outcome.statuses.as_slice(), [100, 401])
            } else {
                matches!(outcome.statuses.as_slice(), [401] | [403])
            };
            assert!(refused, "{raw:?}: {outcome:?}");
        }
    }
    assert!(behind.taken().is_empty());
    // The usage API over a raw socket: no token, no answer of substance.
    let mut socket = TcpStream::connect(&node.admin).await.expect("connect");
    let raw = format!(
        "GET /v1/{}/app-auth/usage HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        node.server.project_id
    );
    socket.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut answer)).await;
    assert_eq!(
        statuses(&answer),
        [401],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Nothing was counted for anyone.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let usage = admin.ok(Method::GET, "/app-auth/usage", None).await;
    assert_eq!(usage["total"]["calls"], 0, "{usage}");
    // The owner's call is forwarded, asked for usage, unencoded.
    let owner = call(&format!("X-Apig-AppCode: {code}\r\n"), false);
    let outcome = node.send(owner.as_bytes()).await;
    assert_eq!(outcome.statuses, [200], "{outcome:?}");
    let forwarded = behind.taken();
    assert_eq!(forwarded.len(), 1);
    let sent: serde_json::Value = serde_json::from_slice(&forwarded[0].body).expect("json");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let encodings: Vec<&str> = forwarded[0]
        .headers
        .iter()
        .filter(|(n, _)| n == "accept-encoding")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(encodings, ["identity"]);
}

/// A TOKEN policy's budget over raw sockets, on both servers: strangers' model calls that
/// each ask for the whole budget (no credential, a made-up AppCode, another app's AppCode,
/// an unknown key's signature) reach no upstream and reserve nothing, so the app's own call
/// that needs exactly the whole budget is still admitted; the one after it is refused.
#[tokio::test]
async fn strangers_reserve_none_of_a_token_budget() {
    const BUDGET: u64 = 500;
    let body = |max_tokens: u64| {
        format!(
            r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"hi"}}]}}"#
        )
    };
    // The cap whose reservation (cap + body bytes / 4) is the whole budget.
    let whole = (1..BUDGET)
        .find(|&m| m + (body(m).len() as u64).div_ceil(4) == BUDGET)
        .expect("a cap that fills the budget");
    for fast_path in [true, false] {
        let node = node(fast_path).await;
        let admin = Admin::login(&node.server).await;
        let (url, behind) = start_counting().await;
        let (sid, api, _, code) = admin.app_code_setup(&url, "token_owner").await;
        let stranger = admin.app("token_stranger").await;
        let stranger_code = admin
            .app_code(stranger["app_id"].as_str().expect("id"))
            .await;
        admin
            .throttle(
                json!({"name": "token_budget", "unit": "TOKEN", "api_call_limits": BUDGET,
                       "time_interval": 1, "time_unit": "DAY"}),
                &[&api],
            )
            .await;
        let call = |credential: &str, max_tokens: u64| {
            let body = body(max_tokens);
            format!(
                "POST /v1/infers/{sid}/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n{credential}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        for _ in 0..3 {
            for credential in [
                String::new(),
                "X-Apig-AppCode: not-a-code-at-all\r\n".to_owned(),
                format!("X-Apig-AppCode: {stranger_code}\r\n"),
                format!("X_Apig_AppCode: {code}\r\n"),
                "Authorization: SDK-HMAC-SHA256 Access=x, SignedHeaders=host, Signature=00\r\n"
                    .to_owned(),
            ] {
                let raw = call(&credential, BUDGET);
                let outcome = node.send(raw.as_bytes()).await;
                assert!(
                    matches!(outcome.statuses.as_slice(), [401] | [403]),
                    "fast path {fast_path}: {raw:?}: {outcome:?}"
                );
            }
        }
        assert!(behind.taken().is_empty(), "a stranger reached the upstream");
        let own = call(&format!("X-Apig-AppCode: {code}\r\n"), whole);
        assert_eq!(
            node.send(own.as_bytes()).await.statuses,
            [200],
            "fast path {fast_path}: the whole budget is still there"
        );
        assert_eq!(node.send(own.as_bytes()).await.statuses, [429]);
        assert_eq!(behind.taken().len(), 1);
    }
}

/// A service that retries on answers keeps a streamed body for another attempt: only an
/// authenticated, authorized call's. Strangers' chunked bodies (no credential, a made-up
/// AppCode, another app's, an underscore-spelled header, a bad signature) are refused on
/// both servers and reach neither upstream; the owner's call reaches one.
#[tokio::test]
async fn strangers_bodies_are_not_kept_for_retries() {
    for fast_path in [true, false] {
        let node = node(fast_path).await;
        let admin = Admin::login(&node.server).await;
        let (first, first_seen) = start_counting().await;
        let (second, second_seen) = start_counting().await;
        let service = admin
            .ok(
                Method::POST,
                "/services",
                Some(
                    json!({"service_name": "retrying", "upstreams": [first, second],
                            "retry": {"attempts": 2, "on": ["connect", "5xx", "429"]}}),
                ),
            )
            .await;
        let sid = service["service_id"].as_str().expect("sid").to_owned();
        let api = admin
            .ok(
                Method::POST,
                &format!("/app-auth/{sid}/apis"),
                Some(json!({"auth_type": "APP", "support_app_code": true})),
            )
            .await["api"]["api_id"]
            .as_str()
            .expect("api")
            .to_owned();
        let owner = admin.app("retry_owner").await;
        let owner_id = owner["app_id"].as_str().expect("id").to_owned();
        admin.authorize(&sid, &api, &owner_id).await;
        let code = admin.app_code(&owner_id).await;
        let stranger = admin.app("retry_stranger").await;
        let stranger_code = admin
            .app_code(stranger["app_id"].as_str().expect("id"))
            .await;
        let call = |credential: &str| {
            format!(
                "POST /v1/infers/{sid}/predict HTTP/1.1\r\nHost: gw\r\n{credential}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
        };
        for credential in [
            String::new(),
            "X-Apig-AppCode: not-a-code-at-all\r\n".to_owned(),
            format!("X-Apig-AppCode: {stranger_code}\r\n"),
            format!("X_Apig_AppCode: {code}\r\n"),
            "Authorization: SDK-HMAC-SHA256 Access=x, SignedHeaders=host, Signature=00\r\n"
                .to_owned(),
        ] {
            let raw = call(&credential);
            let outcome = node.send(raw.as_bytes()).await;
            assert!(
                matches!(outcome.statuses.as_slice(), [401] | [403]),
                "fast path {fast_path}: {raw:?}: {outcome:?}"
            );
        }
        assert!(first_seen.taken().is_empty() && second_seen.taken().is_empty());
        let own = call(&format!("X-Apig-AppCode: {code}\r\n"));
        assert_eq!(node.send(own.as_bytes()).await.statuses, [200]);
        let reached: Vec<Received> = first_seen
            .taken()
            .into_iter()
            .chain(second_seen.taken())
            .collect();
        assert_eq!(reached.len(), 1, "{reached:?}");
        assert_eq!(reached[0].body, b"hello");
    }
}

/// Over HTTP/2 with no `host` header, `:authority` stands in for it (and reaches the upstream
/// as `X-Forwarded-Host`): one that is not a host and port is refused as such a `Host` is.
#[tokio::test]
async fn an_http2_authority_that_is_no_host_reaches_nothing() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let node = node(true).await;
    let tcp = TcpStream::connect(&node.gateway).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(connection);
    for (authority, status) in [
        ("a:b", 400),
        ("x[%2f%40evil]", 400),
        ("evil.com[x]y", 400),
        ("gw:99999", 400),
        ("gw:8080", 200),
    ] {
        let request = hyper::Request::get(format!("http://{authority}{}/a", node.prefix))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let answer = sender.send_request(request).await.expect("answer");
        assert_eq!(answer.status().as_u16(), status, "{authority}");
        let reached = node.upstream.taken();
        if status == 400 {
            assert!(reached.is_empty(), "{authority}: {reached:?}");
        } else {
            assert_eq!(reached.len(), 1, "{authority}: {reached:?}");
            assert!(
                reached[0]
                    .headers
                    .contains(&("x-forwarded-host".to_owned(), authority.to_owned())),
                "{reached:?}"
            );
        }
    }
}

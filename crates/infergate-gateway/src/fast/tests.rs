use super::head::*;
use super::relay::*;
use super::*;
use crate::http_rules::{ChunkedEnd, ResponseFraming, MAX_CHUNK_LINE, MAX_HEAD, MAX_HEADERS};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use infergate_core::snapshot::Upstream;
use infergate_sign::HeaderSource;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the fast path makes of the bytes at the start of a connection's buffer.
#[derive(Debug, PartialEq, Eq)]
enum Inspect {
    Complete(HeadInfo),
    Partial,
    Elsewhere,
    /// Answered 400 by the fast path itself, the connection closed.
    Refused,
}

#[derive(Debug, PartialEq, Eq)]
struct HeadInfo {
    len: usize,
    body_len: usize,
    close: bool,
}

fn inspect(buf: &[u8]) -> Inspect {
    match head_end(buf) {
        HeadEnd::NotYet => Inspect::Partial,
        HeadEnd::Elsewhere => Inspect::Elsewhere,
        HeadEnd::At(len) => {
            let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
            match read_head(&buf[..len], &mut slots[..]) {
                HeadRead::Take(parsed) => info(len, parsed.body_len, parsed.close),
                HeadRead::Elsewhere => Inspect::Elsewhere,
                HeadRead::Refuse(_) => Inspect::Refused,
            }
        }
    }
}

fn info(len: usize, body_len: usize, close: bool) -> Inspect {
    Inspect::Complete(HeadInfo {
        len,
        body_len,
        close,
    })
}

#[test]
fn plain_http11_heads_take_the_fast_path() {
    let get = b"GET /v1/infers/x?a=1 HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\n\r\n";
    assert_eq!(inspect(get), info(get.len(), 0, false));
    let mut pipelined = get.to_vec();
    pipelined.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: gw\r\n");
    assert_eq!(inspect(&pipelined), info(get.len(), 0, false));
    let post = b"POST /p HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\nhello";
    assert_eq!(inspect(post), info(post.len() - 5, 5, true));
    assert_eq!(inspect(b""), Inspect::Partial);
    assert_eq!(inspect(b"GET /v1 HTTP/1.1\r\nHost: g"), Inspect::Partial);
}

#[test]
fn everything_else_goes_to_the_general_server() {
    let big = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    for head in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET http://gw/x HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\nUpgrade: h2c\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw\r\nBad Header: x\r\n\r\n",
        "garbage\r\n\r\n",
        "GET / HTTP/1.1\nHost: gw\n\n",
        "GET / HTTP/1.1\r\nHost: gw\n\r\n",
        "GET / HTTP/1.1\nHost: gw\n\nGET / HTTP/1.1\r\n\r\n",
        "GET /a#b HTTP/1.1\r\n\r\n",
        "FOO@ / HTTP/1.1\r\n\r\n",
        &big,
    ] {
        assert_eq!(inspect(head.as_bytes()), Inspect::Elsewhere, "{head:?}");
    }
    for head in [
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX-Host: gw\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw/x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a@gw\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw:80:80\r\n\r\n",
    ] {
        assert_eq!(inspect(head.as_bytes()), Inspect::Refused, "{head:?}");
    }
    let endless = format!("GET / HTTP/1.1\r\nHost: gw\r\nX: {}", "a".repeat(MAX_HEAD));
    assert_eq!(inspect(endless.as_bytes()), Inspect::Elsewhere);
}

#[test]
fn heads_are_read_in_place() {
    let head = b"PUT /v1/infers/s/p%20q?x=1&y HTTP/1.1\r\nHost: gw:80\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
    let HeadRead::Take(parsed) = read_head(head, &mut slots[..]) else {
        panic!("not taken")
    };
    assert_eq!(parsed.method, Method::PUT);
    assert_eq!(
        split_target(parsed.target),
        ("/v1/infers/s/p%20q", Some("x=1&y"))
    );
    assert_eq!(split_target("/a?"), ("/a", Some("")));
    assert_eq!(split_target("/a"), ("/a", None));
    let headers = parsed.headers;
    assert_eq!(headers.text("host"), Some("gw:80"));
    let all: Vec<_> = headers.values("x-a").collect();
    assert_eq!(all, [b"1", b"2"]);
    assert_eq!(headers.values("x-b").count(), 0);
}

#[test]
fn heads_of_more_lines_than_the_slots_go_to_the_general_server() {
    let head = |lines: usize| {
        let mut head = String::from("GET /a HTTP/1.1\r\nHost: gw\r\n");
        for i in 1..lines {
            head.push_str(&format!("X-{i}: {i}\r\n"));
        }
        head + "\r\n"
    };
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
    let full = head(FAST_HEADERS);
    assert!(matches!(
        read_head(full.as_bytes(), &mut slots[..]),
        HeadRead::Take(_)
    ));
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
    let over = head(FAST_HEADERS + 1);
    assert!(matches!(
        read_head(over.as_bytes(), &mut slots[..]),
        HeadRead::Elsewhere
    ));
}

#[test]
fn targets_the_general_server_reads_differently_go_there() {
    for target in ["/a", "/a/b%20c?x=1&y=%2F", "/~!$&'()*+,;=:@[]|\\^"] {
        assert!(plain_target(target), "{target}");
        assert!(
            http::Uri::try_from(target).is_ok(),
            "the general server takes {target} too"
        );
    }
    for target in ["a", "/a#f", "/\"q\"", "/{x}", "/<x>", "/`", "/}", "/\u{e9}"] {
        assert!(!plain_target(target), "{target}");
    }
    // Spaces and control bytes never get that far.
    for head in ["GET /a\x7fb HTTP/1.1\r\n\r\n", "GET /a\tb HTTP/1.1\r\n\r\n"] {
        assert_eq!(inspect(head.as_bytes()), Inspect::Elsewhere, "{head:?}");
    }
    // Every target taken reads the same to the general server's URI parser.
    for b in 0x21..=0x7eu8 {
        for target in [format!("/a{}b", b as char), format!("/p?q{}r", b as char)] {
            if plain_target(&target) {
                let uri = http::Uri::try_from(target.as_str()).expect("the parser takes it");
                assert_eq!(
                    split_target(&target),
                    (uri.path(), uri.query()),
                    "{target:?}"
                );
            }
        }
    }
}

fn header_lines(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
    let HeadRead::Take(parsed) = read_head(text, &mut slots[..]) else {
        panic!("not taken")
    };
    parsed
        .headers
        .lines
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

fn client_conn() -> ConnInfo {
    ConnInfo::new("127.0.0.2:5555".parse().expect("addr"), false)
}

fn forwarded<'a>(caller: &'a Caller, conn: &'a ConnInfo) -> Forwarded<'a> {
    Forwarded {
        api_id: "api1",
        caller,
        conn,
        request_id: b"rid",
        hops: 1,
        trace: None,
    }
}

fn forwarded_bytes(text: &[u8], caller: &Caller, upstream: &Upstream, api_path: &str) -> String {
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
    let HeadRead::Take(parsed) = read_head(text, &mut slots[..]) else {
        panic!("not taken")
    };
    let (path, query) = split_target(parsed.target);
    let head = Head {
        method: &parsed.method,
        path,
        query,
        headers: &parsed.headers,
    };
    let conn = client_conn();
    let forwarded = forwarded(caller, &conn);
    let mut out = Vec::new();
    // The body the head frames: "hi" where it says 2 bytes.
    let body: &[u8] = if parsed.body_len == 2 { b"hi" } else { b"" };
    request_bytes(
        &head,
        (upstream, api_path),
        &forwarded,
        parsed.framing,
        body,
        false,
        &mut out,
    );
    String::from_utf8(out).expect("text")
}

#[test]
fn upstream_request_bytes() {
    let head = b"POST /v1/infers/s/run?a=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nX-Api-Id: spoof\r\n\r\n";
    let upstream = Upstream::parse("http://10.0.0.1:9000/base").expect("upstream");
    let app = Caller::App {
        app_id: "app1".into(),
    };
    assert_eq!(
        forwarded_bytes(head, &app, &upstream, "/v1/infers/s"),
        "POST /base/run?a=1 HTTP/1.1\r\nhost: 10.0.0.1:9000\r\n\
         x-forwarded-host: gw\r\nx-forwarded-for: 127.0.0.2\r\nx-forwarded-proto: http\r\n\
         x-request-id: rid\r\nx-infergate-hops: 1\r\nx-api-id: api1\r\nx-app-id: app1\r\ncontent-length: 2\r\n\r\nhi"
    );
    let bare = Upstream::parse("http://h:1").expect("upstream");
    assert!(forwarded_bytes(head, &app, &bare, "/v1/infers/s/run")
        .starts_with("POST /?a=1 HTTP/1.1\r\n"));
}

/// The fast path forwards the same headers as the general server's rewrite of a
/// `HeaderMap`, whatever the case of the client's names.
#[test]
fn both_servers_forward_the_same_headers() {
    let head =
        b"GET /v1/x HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Secret-Hop\r\n\
        Keep-Alive: timeout=5\r\nx-secret-hop: 1\r\nTE: trailers\r\n\
        Authorization: SDK-HMAC-SHA256 Access=k\r\nX-Apig-AppCode: code\r\napikey: key\r\n\
        X-Auth-Token: t\r\nX-App-Id: spoof\r\nX-User-Id: spoof\r\nX-Request-Id: spoof\r\n\
        X-Forwarded-Proto: https\r\nX-Forwarded-Host: spoof\r\nX-Forwarded-For: 10.0.0.9\r\n\
        x-forwarded-for: 10.0.0.8\r\nAccept: a\r\naccept: b\r\nX-Sdk-Date: 20240102T030405Z\r\n\
        X_App_Id: spoof\r\nx_apig_appcode: c\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\
        X-Forwarded-Port: 1\r\n\r\n";
    let upstream = Upstream::parse("http://up:1").expect("upstream");
    for caller in [
        Caller::Anonymous,
        Caller::App {
            app_id: "app1".into(),
        },
        Caller::User {
            user_id: "u1".into(),
        },
    ] {
        let fast = forwarded_bytes(head, &caller, &upstream, "/v1/x");
        let mut fast: Vec<(String, String)> = fast
            .split("\r\n")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("header line");
                (name.to_ascii_lowercase(), value.to_owned())
            })
            .filter(|(name, _)| name != "host")
            .collect();
        fast.sort();

        let pairs = header_lines(head);
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(&value).expect("value"),
            );
        }
        let conn = client_conn();
        let rules = crate::http_rules::ClientHeaders::new(
            map.get_all(http::header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
            false,
        );
        let map = crate::general::upstream_headers(map, &rules, &forwarded(&caller, &conn));
        let mut general: Vec<(String, String)> = map
            .iter()
            .filter(|(name, _)| *name != http::header::HOST)
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("text").to_owned()))
            .collect();
        general.sort();
        assert_eq!(fast, general, "{caller:?}");
        assert!(fast.contains(&("x-forwarded-for".into(), "127.0.0.2".into())));
        for (name, _) in &fast {
            assert!(
                !name.contains('_') && name != "authorization" && name != "forwarded",
                "{name} reached the upstream"
            );
        }
    }
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<ClientHead, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    assert!(res.parse(raw).expect("parse").is_complete());
    client_head(
        &res,
        raw,
        head_only,
        super::relay::OwnLines {
            request_id: b"rid",
            rate_limit: None,
            model_call: true,
            asked_usage: false,
        },
        Vec::new(),
    )
}

fn text(head: &ClientHead) -> String {
    String::from_utf8(head.out.clone()).expect("text")
}

#[test]
fn response_heads_lose_hops_and_get_the_request_id() {
    let head = parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nX-Request-Id: upstream\r\nContent-Length: 3\r\n\r\n",
        false,
    )
    .expect("head");
    assert_eq!(head.status, 200);
    assert_eq!(head.framing, ResponseFraming::Length(3));
    assert!(head.keep_alive);
    assert_eq!(
        text(&head),
        "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 3\r\nx-request-id: rid\r\n"
    );
}

/// The body's framing reaches the client whatever the upstream's `Connection` lists; a 204
/// carries no `Content-Length`; a repeated one goes once.
#[test]
fn response_heads_keep_their_framing() {
    let listed = parse_response(
        b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
        false,
    )
    .expect("head");
    assert_eq!(listed.framing, ResponseFraming::Length(5));
    assert!(listed.keep_alive);
    assert_eq!(
        text(&listed),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-request-id: rid\r\n"
    );
    let no_content = parse_response(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 38\r\nX-A: b\r\n\r\n",
        false,
    )
    .expect("head");
    assert_eq!(no_content.framing, ResponseFraming::Empty);
    assert_eq!(
        text(&no_content),
        "HTTP/1.1 204 No Content\r\nX-A: b\r\nx-request-id: rid\r\n"
    );
    // A HEAD's answer and a 304 keep theirs: the length of what a GET would get.
    for (raw, head_only) in [
        (&b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n"[..], true),
        (
            &b"HTTP/1.1 304 Not Modified\r\nContent-Length: 38\r\n\r\n"[..],
            false,
        ),
    ] {
        let head = parse_response(raw, head_only).expect("head");
        assert_eq!(head.framing, ResponseFraming::Empty);
        assert!(text(&head).contains("\r\nContent-Length: 38\r\n"));
    }
    let repeated = parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\nContent-Length: 3\r\n\r\n",
        false,
    )
    .expect("head");
    assert_eq!(
        text(&repeated),
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\nx-request-id: rid\r\n"
    );
}

#[test]
fn response_framing() {
    let chunked = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
        false,
    )
    .expect("head");
    assert_eq!(chunked.framing, ResponseFraming::Chunked);
    assert_eq!(
        text(&chunked),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-request-id: rid\r\n"
    );
    let until_close = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false).expect("head");
    assert_eq!(until_close.framing, ResponseFraming::UntilClose);
    assert!(!until_close.keep_alive);
    assert!(text(&until_close).contains("transfer-encoding: chunked\r\n"));
    let gzip_only =
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).expect("head");
    assert_eq!(gzip_only.framing, ResponseFraming::UntilClose);
    let head =
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true).expect("head");
    assert_eq!(head.framing, ResponseFraming::Empty);
    assert!(text(&head).contains("Content-Length: 50"));
    for status in ["204 No Content", "304 Not Modified"] {
        let raw = format!("HTTP/1.1 {status}\r\n\r\n");
        let head = parse_response(raw.as_bytes(), false).expect("head");
        assert_eq!(head.framing, ResponseFraming::Empty);
        assert!(head.keep_alive);
    }
    let old = parse_response(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).expect("head");
    assert!(!old.keep_alive);
    assert!(text(&old).starts_with("HTTP/1.1 200 OK\r\n"));
    let old_kept = parse_response(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        false,
    )
    .expect("head");
    assert!(old_kept.keep_alive);
    let closing = parse_response(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        false,
    )
    .expect("head");
    assert!(!closing.keep_alive);
    let no_reason =
        parse_response(b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false).expect("head");
    assert!(text(&no_reason).starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        false
    )
    .is_err());
}

const CHUNKED: &[u8] =
    b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";

#[test]
fn the_end_of_a_chunked_body_is_found_across_any_split() {
    let mut stream = CHUNKED.to_vec();
    stream.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for split in 0..=stream.len() {
        let mut end = ChunkedEnd::default();
        let first = end.advance(&stream[..split]).expect("first");
        assert_eq!(first, split.min(CHUNKED.len()), "split {split}");
        let second = end.advance(&stream[first..]).expect("second");
        assert_eq!(first + second, CHUNKED.len(), "split {split}");
        assert!(end.done());
    }
    // Byte by byte.
    let mut end = ChunkedEnd::default();
    let mut used = 0;
    for byte in &stream {
        used += end.advance(std::slice::from_ref(byte)).expect("byte");
    }
    assert_eq!(used, CHUNKED.len());
}

#[test]
fn broken_chunk_framing_is_an_error() {
    for raw in [
        &b"zz\r\nhello\r\n"[..],
        b"2\r\nhello\r\n",
        b"2\r\nhe\r\n0\r\nbad trailer",
        // Lines end with CRLF, as hyper reads them: a bare LF anywhere is an error.
        b"5\nhello\r\n0\r\n\r\n",
        b"5;ext\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\n",
        b"5\r\nhello\r\n0\r\nT: 1\n\r\n",
    ] {
        let mut end = ChunkedEnd::default();
        let result = end.advance(raw);
        if raw.ends_with(b"bad trailer") {
            // A trailer line still open: not an error yet, and not the end.
            assert_eq!(result, Ok(raw.len()));
            assert!(!end.done());
        } else {
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }
    let mut end = ChunkedEnd::default();
    let long = vec![b'1'; MAX_CHUNK_LINE + 1];
    assert!(end.advance(&long).is_err());
}

#[tokio::test]
async fn an_idle_upstream_connection_closed_by_its_peer_is_not_reused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (peer, _) = listener.accept().await.expect("accept");
    let up = UpstreamConn::new(super::relay::UpstreamIo::Plain(stream));
    assert!(!up.is_closed(), "open and quiet");
    drop(peer);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !up.is_closed() {
        assert!(Instant::now() < deadline, "the close was never seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_lazy_timer_fires_at_each_deadline_moved_later_or_earlier() {
    // A timer that never wakes its task fails the test instead of holding it.
    let checks = async {
        let start = Deadline::now();
        let mut timer = LazyTimer::new(start + Duration::from_millis(20));
        // Later than armed: it fires early, finds the deadline moved, and waits on.
        timer.until(start + Duration::from_millis(60)).await;
        assert!(start.elapsed() >= Duration::from_millis(60));
        let far = Deadline::now() + Duration::from_secs(30);
        tokio::select! {
            () = timer.until(far) => panic!("fired 30 s early"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        // Earlier than armed: it is reset.
        let near = Deadline::now();
        timer.until(near + Duration::from_millis(40)).await;
        let waited = near.elapsed();
        assert!(
            waited >= Duration::from_millis(40) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        // Polled again and again by the same task before it fires (answered from the timer's
        // state, not polling it), then awaited alone: the waker of its first poll wakes it.
        let at = Deadline::now() + Duration::from_millis(80);
        for _ in 0..5 {
            tokio::select! {
                biased;
                () = timer.until(at) => panic!("fired early"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        timer.until(at).await;
        assert!(Deadline::now() >= at);
    };
    tokio::time::timeout(Duration::from_secs(20), checks)
        .await
        .expect("the timer woke its task at each deadline");
}

/// A timer first polled when its task has used up its turn's budget (tokio's `Sleep` then
/// answers `Pending` without holding the task's waker) still wakes its task at its deadline.
#[tokio::test]
async fn a_lazy_timer_polled_without_budget_still_wakes_its_task() {
    let at = Deadline::now() + Duration::from_millis(50);
    let mut timer = LazyTimer::new(at);
    std::future::poll_fn(|cx| {
        // Spends the rest of this turn's budget.
        while std::pin::pin!(tokio::task::consume_budget())
            .poll(cx)
            .is_ready()
        {}
        let until = std::pin::pin!(timer.until(at));
        assert!(until.poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), timer.until(at))
        .await
        .expect("the timer woke its task");
    assert!(Deadline::now() >= at);
}

#[test]
fn header_lines_are_copied_in_runs_or_rewritten_when_not_plain() {
    let head = b"GET /v1/x HTTP/1.1\r\nHost: gw\r\nX-A:1\r\nX-B:  2\r\nAuthorization: SDK-HMAC-SHA256 x\r\nX-C: 3 \r\nX-T:\tv\r\nX-E:\r\nX-F: 6\r\n\r\n";
    let upstream = Upstream::parse("http://up:1").expect("upstream");
    let app = Caller::App {
        app_id: "app1".into(),
    };
    let bytes = forwarded_bytes(head, &app, &upstream, "/v1/x");
    let lines: Vec<&str> = bytes.split("\r\n").skip(2).take(6).collect();
    assert_eq!(
        lines,
        ["X-A:1", "X-B:  2", "X-C: 3", "X-T: v", "X-E:", "X-F: 6"],
        "{bytes}"
    );
    // Kept as a run of whole lines where they were plain, around the dropped credential.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
    let HeadRead::Take(parsed) = read_head(head, &mut slots[..]) else {
        panic!("not taken")
    };
    let copier = LineCopier::new(head);
    let spans: Vec<bool> = parsed
        .headers
        .lines
        .iter()
        .map(|h| copier.line(h).is_some())
        .collect();
    assert_eq!(spans, [true, true, true, true, false, false, true, true]);
}

/// Request heads built from pieces an attacker would try: names in any case or with
/// underscores, framing and credential lines, folded and bare-CR lines, odd targets.
fn hostile_head() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        1 => proptest::sample::select(vec![
            "Host", "Content-Length", "content_length", "Transfer-Encoding", "Connection",
            "X-Apig-AppCode", "apikey", "X-Auth-Token", "Authorization", "X_App_Id",
            "X-Forwarded-For", "Upgrade", "Expect", "Bad Name",
        ]),
        1 => Just("X-Other"),
    ];
    let value = prop_oneof![
        1 => proptest::sample::select(vec![
            "0", "2", "2, 2", "-1", "chunked", "content-length, close",
            "SDK-HMAC-SHA256 Access=k", "a\rb", "a\0b", " folded",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,8}",
    ];
    let line = (
        name,
        value,
        prop_oneof![3 => Just(": "), 1 => proptest::sample::select(vec![":", " : ", ":\t"])],
    );
    let target = prop_oneof![
        Just("/v1/x"),
        Just("/v1/x?a=1"),
        Just("/v1/../x"),
        Just("/v1/%2e%2e/x"),
        Just("*"),
        Just("http://h/x"),
        Just("/v1/x#f"),
    ];
    (
        prop_oneof![Just("GET"), Just("POST"), Just("get"), Just("P\0ST")],
        target,
        prop_oneof![8 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0"), 1 => Just("HTTP/2.0")],
        proptest::collection::vec(
            (
                line,
                prop_oneof![8 => Just("\r\n"), 1 => Just("\n"), 1 => Just("\r\n ")],
            ),
            0..6,
        ),
    )
        .prop_map(|(method, target, version, lines)| {
            let mut head = format!("{method} {target} {version}\r\n").into_bytes();
            for ((name, value, colon), end) in lines {
                head.extend_from_slice(format!("{name}{colon}{value}{end}").as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            head
        })
}

/// A forwarded request as an upstream parses it: its header lines, and where its head ends.
fn upstream_parse(bytes: &[u8]) -> (Vec<(String, Vec<u8>)>, usize) {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    let Ok(httparse::Status::Complete(len)) = req.parse(bytes) else {
        panic!(
            "the upstream cannot parse {:?}",
            String::from_utf8_lossy(bytes)
        )
    };
    let lines = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    (lines, len)
}

proptest! {
    // About one generated head in seven is one the fast path takes.
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever the head, the fast path takes it, refuses it or hands it on without a panic;
    /// what it takes reaches the upstream as exactly one request, framed by the gateway's
    /// own `Content-Length`, with no credential, no underscore name and no client framing.
    #[test]
    fn any_head_is_forwarded_as_one_clean_request_or_not_at_all(head in hostile_head()) {
        let end = match head_end(&head) {
            HeadEnd::At(end) => end,
            HeadEnd::NotYet | HeadEnd::Elsewhere => return Ok(()),
        };
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; FAST_HEADERS];
        let HeadRead::Take(parsed) = read_head(&head[..end], &mut slots[..]) else {
            return Ok(());
        };
        prop_assert!(plain_target(parsed.target));
        prop_assert!(parsed.body_len <= MAX_BODY);
        let (path, query) = split_target(parsed.target);
        let request = Head { method: &parsed.method, path, query, headers: &parsed.headers };
        let conn = client_conn();
        let caller = Caller::App { app_id: "app1".into() };
        let body = vec![b'x'; parsed.body_len];
        let mut out = Vec::new();
        let upstream = Upstream::parse("http://up:1/base").expect("upstream");
        request_bytes(
            &request,
            (&upstream, "/v1"),
            &forwarded(&caller, &conn),
            parsed.framing,
            &body,
            false,
            &mut out,
        );
        let (lines, len) = upstream_parse(&out);
        let lengths: Vec<&[u8]> = lines
            .iter()
            .filter(|(n, _)| n == "content-length")
            .map(|(_, v)| v.as_slice())
            .collect();
        let expected = parsed.body_len.to_string();
        match parsed.body_len {
            0 => prop_assert!(lengths.is_empty() || lengths == [b"0"]),
            _ => prop_assert_eq!(lengths, vec![expected.as_bytes()]),
        }
        prop_assert_eq!(out.len() - len, parsed.body_len, "one request, its body and nothing after");
        for (name, value) in &lines {
            prop_assert!(!name.contains('_'), "{name}");
            prop_assert!(
                !["transfer-encoding", "connection", "x-apig-appcode", "apikey", "x-auth-token"]
                    .contains(&name.as_str()),
                "{name}"
            );
            prop_assert!(!(name == "authorization" && value.starts_with(b"SDK-HMAC")));
        }
        prop_assert_eq!(lines.iter().filter(|(n, _)| n == "host").count(), 1);
        prop_assert_eq!(lines.iter().filter(|(n, _)| n == "x-app-id").count(), 1);
    }

    /// Whatever the upstream answers, the client's head has one framing: never a
    /// `Content-Length` beside a `Transfer-Encoding`, never the upstream's `X-Request-Id`.
    #[test]
    fn any_response_head_reaches_the_client_with_one_framing(
        lines in proptest::collection::vec(
            (
                prop_oneof![
                    Just("Content-Length"), Just("Transfer-Encoding"), Just("Connection"),
                    Just("X-Request-Id"), Just("Keep-Alive"), Just("X-Hop"), Just("Upgrade"),
                    Just("Content-Type"),
                ],
                prop_oneof![
                    Just("3"), Just("3, 3"), Just("chunked"), Just("gzip, chunked"),
                    Just("gzip"), Just("close"), Just("keep-alive, X-Hop"), Just("x"),
                    Just("content-length"), Just("Content-Length, close"),
                    Just("transfer-encoding"),
                ],
            ),
            0..6,
        ),
        status in prop_oneof![Just(200u16), Just(204), Just(304), Just(404)],
        minor in 0u8..2,
        head_only in any::<bool>(),
    ) {
        let mut raw = format!("HTTP/1.{minor} {status} X\r\n").into_bytes();
        for (name, value) in &lines {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let Ok(head) = parse_response(&raw, head_only) else {
            return Ok(());
        };
        let mut out = head.out.clone();
        out.extend_from_slice(b"\r\n");
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut slots);
        prop_assert!(res.parse(&out).expect("parse").is_complete());
        let count = |name: &str| res.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).count();
        prop_assert!(count("content-length") == 0 || count("transfer-encoding") == 0);
        prop_assert_eq!(count("x-request-id"), 1);
        prop_assert_eq!(count("keep-alive") + count("connection"), 0);
        if head.framing == ResponseFraming::UntilClose {
            prop_assert!(!head.keep_alive);
        }
        // The client reads the body the way it is relayed: by its length, or chunked.
        match head.framing {
            ResponseFraming::Length(_) => prop_assert_eq!(count("content-length"), 1),
            ResponseFraming::Chunked | ResponseFraming::UntilClose => {
                prop_assert!(count("transfer-encoding") > 0);
            }
            ResponseFraming::Empty => {}
        }
        if status == 204 {
            prop_assert_eq!(count("content-length"), 0);
        }
    }
}

/// Plaintext an upstream sent past its answer, in the same TLS record, sits decrypted in
/// the TLS session where no check of the socket sees it: a connection holding any is not
/// clean, so it is never kept for the next call (which would read it as its answer).
#[tokio::test]
async fn plaintext_left_in_a_tls_session_keeps_the_connection_from_the_next_call() {
    use crate::upstreams::tls::Alpn;
    use rustls::pki_types::pem::PemObject;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
            .expect("key"),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(tcp).await.expect("handshake");
        // One write: one record.
        tls.write_all(b"answerstray").await.expect("write");
        tls.flush().await.expect("flush");
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let ca_pem: Arc<str> = Arc::from(ca.pem());
    let tls = UpstreamTls::default()
        .connect(tcp, "localhost", Some(&ca_pem), Alpn::Http11)
        .await
        .expect("TLS");
    let mut conn = UpstreamConn::new(relay::UpstreamIo::Tls(Box::new(tls)));
    let mut answer = [0u8; 6];
    conn.stream.read_exact(&mut answer).await.expect("answer");
    assert_eq!(&answer, b"answer");
    assert!(
        conn.buf.is_empty() && !conn.is_closed(),
        "the socket shows nothing"
    );
    assert!(!conn.is_clean(), "five bytes wait in the TLS session");
    let mut stray = [0u8; 5];
    conn.stream.read_exact(&mut stray).await.expect("stray");
    assert_eq!(&stray, b"stray");
    assert!(conn.is_clean());
}

/// A connection waiting between calls holds a small task: a call's state (its request's
/// header slots, the upstream exchange) is allocated for the call alone.
#[tokio::test]
async fn a_waiting_connections_task_is_small() {
    let (snapshot, _) = crate::authn::tests::fixture(false);
    let gateway = crate::Gateway::new(
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(snapshot)),
        crate::GatewaySettings::default(),
        crate::Observers::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _client = TcpStream::connect(addr).await.expect("connect");
    let (stream, remote) = listener.accept().await.expect("accept");
    let info = crate::ConnInfo::new(remote, false);
    let (_stop, mut stopping) = tokio::sync::watch::channel(false);
    let task = super::serve(&gateway, stream, &info, &mut stopping);
    let size = std::mem::size_of_val(&task);
    assert!(
        size <= 2048,
        "a fast-path connection's task takes {size} bytes"
    );
}

#[test]
fn reads_start_small_and_grow_while_they_fill_the_room() {
    let mut size = ReadSize::default();
    let mut buf = BytesMut::new();
    let room = size.room(&mut buf);
    assert!(
        (ReadSize::FIRST..2 * ReadSize::FIRST).contains(&room),
        "{room}"
    );
    // A read that leaves room: the next is as small.
    size.after(100, room);
    assert_eq!(size.room(&mut BytesMut::new()), room);
    // Reads that fill it: doubling up to READ_SIZE.
    let mut last = room;
    for _ in 0..8 {
        let mut fresh = BytesMut::new();
        let room = size.room(&mut fresh);
        assert!(room >= last);
        size.after(room, room);
        last = room;
    }
    assert!(
        (relay::READ_SIZE..2 * relay::READ_SIZE).contains(&last),
        "{last}"
    );
}

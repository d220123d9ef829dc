use super::*;

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
    pipelined.extend_from_slice(b"GET /next HTTP/1.1\r\n");
    assert_eq!(inspect(&pipelined), info(get.len(), 0, false));
    let post = b"POST /p HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\nhello";
    assert_eq!(inspect(post), info(post.len() - 5, 5, true));
    assert_eq!(inspect(b""), Inspect::Partial);
    assert_eq!(inspect(b"GET /v1 HTTP/1.1\r\nHost: g"), Inspect::Partial);
}

#[test]
fn everything_else_goes_to_the_general_server() {
    let big = format!(
        "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    for head in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET http://gw/x HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "garbage\r\n\r\n",
        &big,
    ] {
        assert_eq!(inspect(head.as_bytes()), Inspect::Elsewhere, "{head:?}");
    }
    let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
    assert_eq!(inspect(endless.as_bytes()), Inspect::Elsewhere);
}

#[test]
fn request_parts_share_the_head() {
    let head = Bytes::from_static(
        b"PUT /v1/infers/s/p%20q?x=1&y HTTP/1.1\r\nHost: gw:80\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    );
    let parts = request_parts(&head).expect("parts");
    assert_eq!(parts.method, Method::PUT);
    assert_eq!(parts.uri.path(), "/v1/infers/s/p%20q");
    assert_eq!(parts.uri.query(), Some("x=1&y"));
    assert_eq!(parts.headers["host"], "gw:80");
    let all: Vec<_> = parts.headers.get_all("x-a").iter().collect();
    assert_eq!(all, ["1", "2"]);
}

#[test]
fn upstream_request_bytes() {
    let head = Bytes::from_static(
        b"POST /v1/infers/s/run?a=1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nX-Api-Id: api\r\n\r\n",
    );
    let parts = request_parts(&head).expect("parts");
    let upstream = Upstream::parse("http://10.0.0.1:9000/base").expect("upstream");
    let bytes = request_bytes(&parts, &upstream, "/run", b"hi");
    assert_eq!(
        String::from_utf8(bytes).expect("text"),
        "POST /base/run?a=1 HTTP/1.1\r\nhost: 10.0.0.1:9000\r\ncontent-length: 2\r\nx-api-id: api\r\n\r\nhi"
    );
    let bare = Upstream::parse("http://h:1").expect("upstream");
    let bytes = request_bytes(&parts, &bare, "", b"");
    assert!(bytes.starts_with(b"POST /?a=1 HTTP/1.1\r\n"));
}

fn parse_response(raw: &[u8], head_only: bool) -> Result<ResponseHead, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    assert!(res.parse(raw).expect("parse").is_complete());
    response_head(&res, head_only, "rid")
}

fn text(head: &ResponseHead) -> String {
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
    assert_eq!(head.framing, Framing::Length(3));
    assert!(head.keep_alive);
    assert_eq!(
        text(&head),
        "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 3\r\nx-request-id: rid\r\n"
    );
}

#[test]
fn response_framing() {
    let chunked = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
        false,
    )
    .expect("head");
    assert_eq!(chunked.framing, Framing::Chunked);
    assert_eq!(
        text(&chunked),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-request-id: rid\r\n"
    );
    let until_close = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", false).expect("head");
    assert_eq!(until_close.framing, Framing::UntilClose);
    assert!(!until_close.keep_alive);
    assert!(text(&until_close).contains("transfer-encoding: chunked\r\n"));
    let gzip_only =
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false).expect("head");
    assert_eq!(gzip_only.framing, Framing::UntilClose);
    let head =
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true).expect("head");
    assert_eq!(head.framing, Framing::Empty);
    assert!(text(&head).contains("Content-Length: 50"));
    for status in ["204 No Content", "304 Not Modified"] {
        let raw = format!("HTTP/1.1 {status}\r\n\r\n");
        let head = parse_response(raw.as_bytes(), false).expect("head");
        assert_eq!(head.framing, Framing::Empty);
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
async fn a_prefixed_stream_reads_its_prefix_first_then_the_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b" world").await.expect("write");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        back
    });
    let (stream, _) = listener.accept().await.expect("accept");
    let mut prefixed = Prefixed::new(Bytes::from_static(b"hello"), stream);
    let mut got = vec![0u8; 11];
    prefixed.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"hello world");
    prefixed.write_all(b"ok").await.expect("write");
    prefixed.shutdown().await.expect("shutdown");
    assert_eq!(client.await.expect("client"), b"ok");
}

#[tokio::test]
async fn an_idle_upstream_connection_closed_by_its_peer_is_not_reused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (peer, _) = listener.accept().await.expect("accept");
    let up = UpstreamConn {
        stream,
        buf: BytesMut::new(),
    };
    assert!(!up.is_closed(), "open and quiet");
    drop(peer);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !up.is_closed() {
        assert!(Instant::now() < deadline, "the close was never seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

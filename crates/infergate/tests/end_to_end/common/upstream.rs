//! A mock model server on a loopback port: echoes requests, streams server-sent events,
//! answers slowly, and records when a call it was serving is cancelled.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

#[derive(Clone, Default)]
pub struct Recorder {
    pub cancelled: Arc<AtomicBool>,
    pub calls: Arc<AtomicUsize>,
    /// The client address of every connection a call arrived on.
    pub peers: Arc<std::sync::Mutex<std::collections::HashSet<std::net::SocketAddr>>>,
}

impl Recorder {
    /// How many connections calls arrived on.
    pub fn connections(&self) -> usize {
        self.peers.lock().expect("peers").len()
    }
}

pub struct Mock {
    /// Base URL of the upstream, with the base path `/base`.
    pub url: String,
    pub recorder: Recorder,
}

/// Sets the flag when a handler future is dropped before it finished.
struct CancelGuard {
    flag: Arc<AtomicBool>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

pub fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

/// The `Sec-WebSocket-Accept` a WebSocket server answers the client's `key` with (RFC 6455
/// §4.2.2), as a WebSocket library computes it.
pub fn websocket_accept(key: &str) -> String {
    use base64::Engine;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    hash.update(key.trim().as_bytes());
    hash.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(hash.finish())
}

/// Answers a WebSocket opening handshake with 101 (its `Sec-WebSocket-Accept` computed from
/// the key) and echoes raw bytes on the connection.
fn upgrade_echo(mut req: Request) -> Response {
    let accept = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|key| key.to_str().ok())
        .map(websocket_accept)
        .and_then(|accept| HeaderValue::from_str(&accept).ok());
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "no upgrade").into_response();
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response
        .headers_mut()
        .insert("upgrade", HeaderValue::from_static("websocket"));
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("upgrade"));
    if let Some(accept) = accept {
        response
            .headers_mut()
            .insert("sec-websocket-accept", accept);
    }
    response
}

async fn handle(
    State(recorder): State<Recorder>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    recorder.calls.fetch_add(1, Ordering::SeqCst);
    recorder.peers.lock().expect("peers").insert(peer);
    if req.headers().contains_key("upgrade") {
        return upgrade_echo(req);
    }
    let path = req.uri().path().to_owned();
    let tail = path.strip_prefix("/base").unwrap_or(&path).to_owned();
    match tail.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late".into_response()
        }
        "/cancel" => {
            let mut guard = CancelGuard {
                flag: recorder.cancelled.clone(),
                finished: false,
            };
            tokio::time::sleep(Duration::from_secs(30)).await;
            guard.finished = true;
            "finished".into_response()
        }
        "/sse" => {
            let stream = futures_util::stream::unfold(0u32, |n| async move {
                if n >= 20 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let event = format!("id: {n}\ndata: {}\n\n", now_micros());
                Some((Ok::<Bytes, Infallible>(Bytes::from(event)), n + 1))
            });
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            response
        }
        _ => {
            let method = req.method().to_string();
            let query = req.uri().query().unwrap_or("").to_owned();
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
                .collect();
            let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024)
                .await
                .unwrap_or_default();
            let reply = json!({
                "method": method,
                "path": path,
                "query": query,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
                "body_len": body.len(),
            });
            (StatusCode::OK, axum::Json(reply)).into_response()
        }
    }
}

pub async fn start_mock() -> Mock {
    let recorder = Recorder::default();
    let app = Router::new().fallback(handle).with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    Mock {
        url: format!("http://{addr}/base"),
        recorder,
    }
}

/// A loopback port with nothing listening on it.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/base")
}

/// An upstream written byte by byte: answers each request with the raw response its path
/// names, to exercise every response framing. Counts the connections it accepted.
pub struct RawUpstream {
    pub url: String,
    pub connections: Arc<AtomicUsize>,
    /// The connections open now.
    pub open: Arc<AtomicUsize>,
}

fn raw_answer(method: &str, path: &str) -> (&'static [u8], bool) {
    match (method, path) {
        (_, "/raw/length") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Request-Id: spoofed\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\nhello",
            false,
        ),
        (_, "/raw/chunked") => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
            false,
        ),
        (_, "/raw/close") => (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the upstream closes",
            true,
        ),
        // Framing lines no client may lose or see: one `Connection` lists, one a 204 may
        // not carry.
        (_, "/raw/length-listed") => (
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
            false,
        ),
        (_, "/raw/nocontent") => (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n",
            false,
        ),
        // The same stream framed by its length.
        (_, "/raw/sse-length/chat/completions") => (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 151\r\n\r\n\
              data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
              data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1,\"total_tokens\":3}}\n\n\
              data: [DONE]\n\n",
            false,
        ),
        // A model server's event stream that ends with the connection, usage chunk included.
        (_, "/raw/sse/chat/completions") => (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
              data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
              data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1,\"total_tokens\":3}}\n\n\
              data: [DONE]\n\n",
            true,
        ),
        (_, "/raw/early") => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        ("HEAD", _) => (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false),
        (_, "/raw/bad") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
            true,
        ),
        _ => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
    }
}

pub async fn start_raw() -> RawUpstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind raw upstream");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (counted, open_now) = (connections.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            open_now.fetch_add(1, Ordering::SeqCst);
            let closed = OpenGuard(open_now.clone());
            tokio::spawn(async move {
                let _closed = closed;
                let mut pending = Vec::new();
                loop {
                    let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                    pending.drain(..end + 4);
                    let mut words = head.split_whitespace();
                    let method = words.next().unwrap_or("").to_owned();
                    let path = words.next().unwrap_or("").to_owned();
                    let (answer, close) = raw_answer(&method, &path);
                    if socket.write_all(answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    RawUpstream {
        url: format!("http://{addr}"),
        connections,
        open,
    }
}

/// Counts a connection out of the open ones when its task ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts the examples' stand-in OpenAI-compatible model server (`examples/model-server.py`)
/// on a free port: the process (stopped when dropped) and its base URL.
pub async fn model_server() -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = tokio::process::Command::new("python3")
        .arg(root.join("examples/model-server.py"))
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("model server");
    let mut first = String::new();
    tokio::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .await
        .expect("its address");
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on …")
        .to_owned();
    (child, url)
}

/// How many `step`s the model stub takes to answer with JSON.
const JSON_STEPS: u32 = 40;

/// A model server written from the OpenAI API reference for token limits: `POST
/// …/chat/completions` answers with as many completion tokens as the request's
/// `max_completion_tokens` or `max_tokens` allow (at most `words`), one SSE chunk per token
/// `step` apart when streamed (as JSON after [`JSON_STEPS`] steps), with the usage object (prompt tokens: words of the messages)
/// in the JSON answer or, when asked with `stream_options.include_usage`, in a last chunk.
/// Counts the calls it served and the total tokens it reported.
pub struct ModelStub {
    pub url: String,
    pub calls: Arc<AtomicUsize>,
    pub reported: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Clone)]
struct StubState {
    words: u64,
    step: Duration,
    calls: Arc<AtomicUsize>,
    reported: Arc<std::sync::atomic::AtomicU64>,
}

async fn model_stub_call(State(state): State<StubState>, req: Request) -> Response {
    let body = axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    state.calls.fetch_add(1, Ordering::SeqCst);
    let prompt = request["messages"].as_array().map_or(0, |m| {
        m.iter()
            .map(|m| {
                m["content"]
                    .as_str()
                    .unwrap_or("")
                    .split_whitespace()
                    .count()
            })
            .sum::<usize>()
    }) as u64;
    let cap = request["max_completion_tokens"]
        .as_u64()
        .or(request["max_tokens"].as_u64())
        .unwrap_or(u64::MAX);
    let completion = state.words.min(cap);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion});
    state
        .reported
        .fetch_add(prompt + completion, Ordering::SeqCst);
    if request["stream"] != true {
        // Generating takes a while: calls sent together are all in flight together.
        tokio::time::sleep(state.step * JSON_STEPS).await;
        let text = vec!["tok"; completion as usize].join(" ");
        return axum::Json(json!({"id": "cmpl-stub", "object": "chat.completion",
            "created": 0, "model": "stub", "usage": usage,
            "choices": [{"index": 0, "finish_reason": "length",
                "message": {"role": "assistant", "content": text}}]}))
        .into_response();
    }
    let include_usage = request["stream_options"]["include_usage"] == true;
    let step = state.step;
    let chunk = |delta: serde_json::Value, usage: serde_json::Value| {
        let choices = if delta.is_null() {
            json!([])
        } else {
            json!([{"index": 0, "delta": delta, "finish_reason": null}])
        };
        let mut event = json!({"id": "cmpl-stub", "object": "chat.completion.chunk",
            "created": 0, "model": "stub", "choices": choices});
        if !usage.is_null() {
            event["usage"] = usage;
        }
        Bytes::from(format!("data: {event}\n\n"))
    };
    let mut events: Vec<Bytes> = (0..completion)
        .map(|i| {
            chunk(
                json!({"content": if i == 0 { "tok" } else { " tok" }}),
                json!(null),
            )
        })
        .collect();
    if include_usage {
        events.push(chunk(json!(null), usage));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let stream = futures_util::stream::unfold(events.into_iter(), move |mut events| async move {
        let event = events.next()?;
        tokio::time::sleep(step).await;
        Some((Ok::<Bytes, Infallible>(event), events))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

pub async fn model_stub(words: u64, step: Duration) -> ModelStub {
    let state = StubState {
        words,
        step,
        calls: Arc::default(),
        reported: Arc::default(),
    };
    let app = Router::new()
        .fallback(model_stub_call)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind model stub");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ModelStub {
        url: format!("http://{addr}/v1"),
        calls: state.calls,
        reported: state.reported,
    }
}

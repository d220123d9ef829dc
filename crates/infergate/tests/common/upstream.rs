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

/// Answers an `Upgrade: echo` request with 101 and echoes raw bytes on the connection.
fn upgrade_echo(mut req: Request) -> Response {
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
        .insert("upgrade", HeaderValue::from_static("echo"));
    response
        .headers_mut()
        .insert("connection", HeaderValue::from_static("upgrade"));
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

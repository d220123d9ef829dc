//! Fleets of model servers behind one service: how calls are spread over the upstreams.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

use common::Admin;

/// A replica whose `…/slow` calls stream until released (or 20 s), and whose other calls
/// answer at once; it counts both.
struct Replica {
    url: String,
    fast: Arc<AtomicUsize>,
    slow: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

#[derive(Clone)]
struct ReplicaState {
    fast: Arc<AtomicUsize>,
    slow: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

async fn replica_call(State(state): State<ReplicaState>, req: Request) -> axum::response::Response {
    if !req.uri().path().ends_with("/slow") {
        state.fast.fetch_add(1, Ordering::SeqCst);
        return axum::response::Response::new(Body::from("fast"));
    }
    state.slow.fetch_add(1, Ordering::SeqCst);
    let release = state.release.clone();
    let chunks = futures_util::stream::unfold(0u8, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, Infallible>(Bytes::from("start\n")), 1)),
                1 => {
                    let _ = tokio::time::timeout(Duration::from_secs(20), release.notified()).await;
                    Some((Ok(Bytes::from("end\n")), 2))
                }
                _ => None,
            }
        }
    });
    axum::response::Response::new(Body::from_stream(chunks))
}

async fn replica() -> Replica {
    let state = ReplicaState {
        fast: Arc::default(),
        slow: Arc::default(),
        release: Arc::new(Notify::new()),
    };
    let app = Router::new()
        .fallback(replica_call)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind replica");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Replica {
        url: format!("http://{addr}"),
        fast: state.fast,
        slow: state.slow,
        release: state.release,
    }
}

/// With one long stream on one replica, `least_outstanding` (the default of a new service)
/// sends every new call to the other; `round_robin` takes turns whatever each holds.
async fn least_outstanding(fast_path: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), fast_path).await;
    let admin = Admin::login(&server).await;
    let replicas = [replica().await, replica().await];
    let service = admin
        .ok(
            reqwest::Method::POST,
            "/services",
            Some(json!({"service_name": "fleet",
                        "upstreams": [replicas[0].url, replicas[1].url]})),
        )
        .await;
    assert_eq!(service["load_balancing"], "least_outstanding");
    let sid = service["service_id"].as_str().expect("sid").to_owned();
    admin
        .ok(
            reqwest::Method::POST,
            &format!("/app-auth/{sid}/apis"),
            Some(json!({"auth_type": "NONE"})),
        )
        .await;
    let base = format!("{}/v1/infers/{sid}", server.gateway);
    let client = reqwest::Client::new();

    for balancing in ["least_outstanding", "round_robin"] {
        if balancing == "round_robin" {
            let updated = admin
                .ok(
                    reqwest::Method::PUT,
                    &format!("/services/{sid}"),
                    Some(json!({"load_balancing": "round_robin"})),
                )
                .await;
            assert_eq!(updated["load_balancing"], "round_robin");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for r in &replicas {
            r.fast.store(0, Ordering::SeqCst);
            r.slow.store(0, Ordering::SeqCst);
        }
        // A long stream, in flight once its first bytes are here.
        let mut stream = client
            .get(format!("{base}/slow"))
            .send()
            .await
            .expect("stream");
        assert_eq!(stream.status(), 200);
        let first = stream.chunk().await.expect("chunk").expect("first bytes");
        assert_eq!(&first[..], b"start\n");
        let busy = replicas
            .iter()
            .position(|r| r.slow.load(Ordering::SeqCst) == 1)
            .expect("one replica streams");
        for _ in 0..20 {
            let reply = client
                .get(format!("{base}/fast"))
                .send()
                .await
                .expect("call");
            assert_eq!(reply.status(), 200);
            assert_eq!(reply.text().await.expect("body"), "fast");
        }
        let fast: Vec<usize> = replicas
            .iter()
            .map(|r| r.fast.load(Ordering::SeqCst))
            .collect();
        if balancing == "least_outstanding" {
            assert_eq!(fast[busy], 0, "{balancing}: {fast:?}");
            assert_eq!(fast[1 - busy], 20, "{balancing}: {fast:?}");
        } else {
            assert_eq!(fast, [10, 10], "{balancing}");
        }
        replicas[busy].release.notify_waiters();
        let rest = stream.chunk().await.expect("chunk");
        assert_eq!(rest.as_deref(), Some(&b"end\n"[..]));
        drop(stream);
    }

    // A value the gateway does not know is refused, naming the field.
    let (status, refused) = admin
        .send(
            reqwest::Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"load_balancing": "random"})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let message = refused.to_string();
    assert!(message.contains("load_balancing"), "{message}");
    let shown: Value = admin
        .ok(reqwest::Method::GET, &format!("/services/{sid}"), None)
        .await;
    assert_eq!(shown["load_balancing"], "round_robin");
}

#[tokio::test]
async fn least_outstanding_spares_a_busy_replica_on_the_fast_path() {
    least_outstanding(true).await;
}

#[tokio::test]
async fn least_outstanding_spares_a_busy_replica_on_the_general_server() {
    least_outstanding(false).await;
}

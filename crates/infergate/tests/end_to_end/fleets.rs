//! Fleets of model servers behind one service: how calls are spread over the upstreams.

use crate::common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::Router;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use common::Admin;

/// Serves `app` on a loopback port of its own; the address.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind replica");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

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
    let addr = serve(app).await;
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
    let sid = admin.open_api(&service).await;
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
    assert_eq!(shown["upstream_weights"], json!([1, 1]));

    // Weights: round robin gives each upstream its share of the turns, least_outstanding
    // its share of the ties.
    let calls = |n: usize| {
        let client = client.clone();
        let base = base.clone();
        let replicas = &replicas;
        async move {
            for r in replicas {
                r.fast.store(0, Ordering::SeqCst);
            }
            for _ in 0..n {
                let reply = client.get(format!("{base}/fast")).send().await;
                assert_eq!(reply.expect("call").status(), 200);
            }
            [0, 1].map(|i| replicas[i].fast.load(Ordering::SeqCst))
        }
    };
    let weighted = admin
        .ok(
            reqwest::Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"upstream_weights": [3, 1]})),
        )
        .await;
    assert_eq!(weighted["upstream_weights"], json!([3, 1]));
    assert_eq!(calls(40).await, [30, 10]);
    admin
        .ok(
            reqwest::Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"load_balancing": "least_outstanding"})),
        )
        .await;
    // 150 expected; the binomial spread is about 6.
    let served = calls(200).await;
    assert!((120..=180).contains(&served[0]), "{served:?}");
    for (weights, field) in [
        (json!([0, 1]), "upstream_weights[0]"),
        (json!([1, 101]), "upstream_weights[1]"),
        (json!([1]), "upstream_weights"),
        (json!([1, 1, 1]), "upstream_weights"),
    ] {
        let (status, refused) = admin
            .send(
                reqwest::Method::PUT,
                &format!("/services/{sid}"),
                Some(json!({"upstream_weights": weights})),
            )
            .await;
        assert_eq!(status, 400, "{weights}: {refused}");
        assert!(refused.to_string().contains(field), "{weights}: {refused}");
    }
    // New upstreams without weights are weighed alike again.
    let replaced = admin
        .ok(
            reqwest::Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"upstreams": [replicas[0].url, replicas[1].url]})),
        )
        .await;
    assert_eq!(replaced["upstream_weights"], json!([1, 1]));
}

#[tokio::test]
async fn least_outstanding_spares_a_busy_replica_on_the_fast_path() {
    least_outstanding(true).await;
}

#[tokio::test]
async fn least_outstanding_spares_a_busy_replica_on_the_general_server() {
    least_outstanding(false).await;
}

/// A private CA and a certificate for `localhost` it signed: (CA PEM, certificate PEM,
/// key PEM).
fn private_ca() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "infergate test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key"))
            .expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A model server over HTTPS with `cert_pem` and `key_pem`, speaking the protocols of
/// `alpn`: answers every call with `secure <path>`, and a POST with
/// `secure <version> <path> <body>`. Its `https://localhost:PORT` URL and the count of
/// connections it accepted.
async fn tls_replica(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> (String, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let (parts, body) = req.into_parts();
                        let answer = if parts.method == hyper::Method::POST {
                            let Ok(body) = body.collect().await else {
                                return Ok(hyper::Response::builder()
                                    .status(499)
                                    .body(http_body_util::Full::new(Bytes::from("cut")))
                                    .expect("response"));
                            };
                            let trailers = body
                                .trailers()
                                .map(|t| format!(" trailers {:?}", t.keys().collect::<Vec<_>>()))
                                .unwrap_or_default();
                            format!(
                                "secure {:?} {} {}{trailers}",
                                parts.version,
                                parts.uri.path(),
                                String::from_utf8_lossy(&body.to_bytes())
                            )
                        } else {
                            format!("secure {}", parts.uri.path())
                        };
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            Bytes::from(answer),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (format!("https://localhost:{port}"), accepted)
}

/// An `https://` upstream is called over TLS, verified against the service's `tls_ca_pem`
/// (a private CA) or, without one, the system's roots, on both servers: the private CA's
/// certificate is accepted where the service names the CA and refused (502 APIG.0201, the
/// upstream never answering) where it does not.
async fn https_upstreams(fast_path: bool) {
    let (ca_pem, cert_pem, key_pem) = private_ca();
    let (upstream, h1_connections) = tls_replica(&cert_pem, &key_pem, &[b"http/1.1"]).await;
    let (h2_upstream, h2_connections) =
        tls_replica(&cert_pem, &key_pem, &[b"h2", b"http/1.1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), fast_path).await;
    let admin = Admin::login(&server).await;
    let service = |name: &str, ca: Option<&str>| {
        let mut body = json!({"service_name": name, "upstreams": [format!("{upstream}/base")]});
        if let Some(ca) = ca {
            body["tls_ca_pem"] = json!(ca);
        }
        body
    };
    let mut urls = Vec::new();
    for (name, ca) in [
        ("trusted", Some(ca_pem.as_str())),
        ("untrusted", None),
        ("http2", Some(ca_pem.as_str())),
    ] {
        let mut body = service(name, ca);
        if name == "http2" {
            body["upstreams"] = json!([format!("{h2_upstream}/base")]);
        }
        let created = admin
            .ok(reqwest::Method::POST, "/services", Some(body))
            .await;
        let sid = admin.open_api(&created).await;
        urls.push(format!("{}/v1/infers/{sid}/predict", server.gateway));
    }
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let reply = client.get(&urls[0]).send().await.expect("call");
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.text().await.expect("body"), "secure /base/predict");
    }
    // A POST's body goes over HTTP/1.1 to an upstream that offers only that.
    let reply = client
        .post(&urls[0])
        .body("one")
        .send()
        .await
        .expect("call");
    assert_eq!(
        reply.text().await.expect("body"),
        "secure HTTP/1.1 /base/predict one"
    );
    // One kept-alive TLS connection carried them.
    assert_eq!(h1_connections.load(Ordering::SeqCst), 1);
    let refused = client.get(&urls[1]).send().await.expect("call");
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0201", "{body}");

    // An upstream that chooses HTTP/2 by ALPN is called over it by the general server, with
    // the request's body, and one connection carries the calls (sequential and
    // concurrent); the fast path relays HTTP/1.1 over TLS.
    let version = if fast_path { "HTTP/1.1" } else { "HTTP/2.0" };
    for n in 0..3 {
        let reply = client
            .post(&urls[2])
            .body(format!("body {n}"))
            .send()
            .await
            .expect("call");
        assert_eq!(reply.status(), 200);
        assert_eq!(
            reply.text().await.expect("body"),
            format!("secure {version} /base/predict body {n}")
        );
    }
    let concurrent = (0..8).map(|n| {
        let client = client.clone();
        let url = urls[2].clone();
        async move {
            let reply = client.post(&url).body(format!("c{n}")).send().await;
            reply.expect("call").text().await.expect("body")
        }
    });
    let answers = futures_util::future::join_all(concurrent).await;
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer, &format!("secure {version} /base/predict c{n}"));
    }
    if !fast_path {
        assert_eq!(h2_connections.load(Ordering::SeqCst), 1);
        // Another service's calls to the same upstream share no HTTP/2 connection with
        // these: one tenant's streams never hold another's up.
        let mut body = service("http2-other", Some(ca_pem.as_str()));
        body["upstreams"] = json!([format!("{h2_upstream}/base")]);
        let created = admin
            .ok(reqwest::Method::POST, "/services", Some(body))
            .await;
        let sid = admin.open_api(&created).await;
        let other = format!("{}/v1/infers/{sid}/predict", server.gateway);
        for _ in 0..2 {
            let reply = client.post(&other).body("x").send().await.expect("call");
            assert_eq!(reply.status(), 200);
        }
        assert_eq!(h2_connections.load(Ordering::SeqCst), 2);
    }

    // A chunked body's trailers reach no upstream (their names would pass no header rule:
    // identity headers among them), and a body that breaks its framing is the client's 400,
    // not the upstream's fault.
    let gateway = server.gateway.trim_start_matches("http://");
    let path = &urls[2][server.gateway.len()..];
    for (body, status, answer) in [
        (
            "3\r\nabc\r\n0\r\nx-user-id: admin\r\nappcode: stolen\r\n\r\n",
            "200",
            " /base/predict abc",
        ),
        ("3\r\nabc\r\nzz\r\n\r\n", "400", ""),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(gateway)
            .await
            .expect("connect");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{body}"
        );
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut reply))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
        assert!(reply.ends_with(answer), "{reply}");
    }

    // A CA bundle that holds no certificate is refused, naming the field.
    let (status, refused) = admin
        .send(
            reqwest::Method::POST,
            "/services",
            Some(service("broken", Some("not a certificate"))),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("tls_ca_pem"), "{refused}");
}

#[tokio::test]
async fn https_upstreams_are_verified_on_the_fast_path() {
    https_upstreams(true).await;
}

#[tokio::test]
async fn https_upstreams_are_verified_on_the_general_server() {
    https_upstreams(false).await;
}

/// A replica whose `…/health` answers 200 while `healthy` is set (503 otherwise) and counts
/// its other calls.
struct Checked {
    url: String,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<AtomicUsize>,
}

async fn checked_replica() -> Checked {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let (h, c) = (healthy.clone(), calls.clone());
    let app = Router::new().fallback(move |req: Request| {
        let (healthy, calls) = (h.clone(), c.clone());
        async move {
            if req.uri().path().ends_with("/health") {
                let status = if healthy.load(Ordering::SeqCst) {
                    200
                } else {
                    503
                };
                return axum::http::StatusCode::from_u16(status).expect("status");
            }
            calls.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::OK
        }
    });
    let addr = serve(app).await;
    Checked {
        url: format!("http://{addr}/base"),
        healthy,
        calls,
    }
}

/// Active health checks take a replica out of rotation within interval × threshold of its
/// failing them, and back once it passes again; with every replica down, calls answer 502.
/// (Probes come at most once a second: a probe of 100 ms is refused.)
#[tokio::test]
async fn health_checks_take_an_upstream_out_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), true).await;
    let admin = Admin::login(&server).await;
    let replicas = [checked_replica().await, checked_replica().await];
    let check = json!({"path": "/health", "interval_ms": 1000, "timeout_ms": 200,
                       "healthy_threshold": 1, "unhealthy_threshold": 1});
    let service = admin
        .ok(
            reqwest::Method::POST,
            "/services",
            Some(
                json!({"service_name": "checked", "load_balancing": "round_robin",
                        "upstreams": [replicas[0].url, replicas[1].url],
                        "health_check": check}),
            ),
        )
        .await;
    assert_eq!(service["health_check"]["unhealthy_threshold"], 1);
    assert_eq!(service["health_check"]["expected_statuses"], json!([200]));
    let sid = admin.open_api(&service).await;
    let url = format!("{}/v1/infers/{sid}/predict", server.gateway);
    let client = reqwest::Client::new();
    let spread = |n: usize| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut statuses = Vec::new();
            for _ in 0..n {
                let reply = client.get(&url).send().await.expect("call");
                statuses.push(reply.status().as_u16());
            }
            statuses
        }
    };
    let counts = || -> Vec<usize> {
        replicas
            .iter()
            .map(|r| r.calls.swap(0, Ordering::SeqCst))
            .collect()
    };
    // Ten calls in turn, once the checks have had `wait` to act: their statuses and the
    // calls each replica served.
    let after = |wait: Duration| async move {
        tokio::time::sleep(wait).await;
        let _ = counts();
        let statuses = spread(10).await;
        (statuses, counts())
    };
    let (statuses, served) = after(Duration::ZERO).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(served, [5, 5]);

    // What ten calls see once the checks have acted: the expected spread is waited for up
    // to 10 s (a probe a second, and a busy machine), then asserted; nothing is timed.
    let settled = |want_status: u16, want_served: [usize; 2]| async move {
        let mut seen = after(Duration::from_millis(300)).await;
        for _ in 0..40 {
            if seen.1 == want_served && seen.0.iter().all(|&s| s == want_status) {
                break;
            }
            seen = after(Duration::from_millis(250)).await;
        }
        assert!(seen.0.iter().all(|&s| s == want_status), "{seen:?}");
        assert_eq!(seen.1, want_served);
    };

    // The first fails its checks: within a probe's interval it gets no calls.
    replicas[0].healthy.store(false, Ordering::SeqCst);
    settled(200, [0, 10]).await;
    let scrape = server.scrape().await;
    for (replica, value) in replicas.iter().zip([0, 1]) {
        let authority = replica
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/base");
        let line = format!(
            "infergate_upstream_healthy{{service=\"{sid}\",upstream=\"{authority}\"}} {value}"
        );
        assert!(scrape.contains(&line), "{line} not in the scrape");
    }
    // `/readyz` counts it, and the node stays ready.
    let ready = server.readyz().await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(
        ready["upstreams"],
        json!({"checked": 2, "unhealthy": 1}),
        "{ready}"
    );
    // Both down: nothing to call.
    replicas[1].healthy.store(false, Ordering::SeqCst);
    settled(502, [0, 0]).await;
    // Both pass again: back in rotation.
    for r in &replicas {
        r.healthy.store(true, Ordering::SeqCst);
    }
    settled(200, [5, 5]).await;

    // Settings are checked, naming the one at fault.
    for (bad, field) in [
        (json!({"interval_ms": 100}), "health_check.path"),
        (
            json!({"path": "/h", "interval_ms": 100}),
            "health_check.interval_ms",
        ),
        (
            json!({"path": "/h", "timeout_ms": 9000}),
            "health_check.timeout_ms",
        ),
        (
            json!({"path": "/h", "expected_statuses": [99]}),
            "health_check.expected_statuses",
        ),
        (json!({"path": "/h", "every": 1}), "health_check.every"),
    ] {
        let (status, refused) = admin
            .send(
                reqwest::Method::PUT,
                &format!("/services/{sid}"),
                Some(json!({"health_check": bad})),
            )
            .await;
        assert_eq!(status, 400, "{refused}");
        assert!(refused.to_string().contains(field), "{field}: {refused}");
    }
    // `null` removes the check.
    let updated = admin
        .ok(
            reqwest::Method::PUT,
            &format!("/services/{sid}"),
            Some(json!({"health_check": null})),
        )
        .await;
    assert!(updated.get("health_check").is_none(), "{updated}");
}

/// A replica that answers every call with `status` (and `Retry-After: 30` on a 503),
/// echoing its body; it counts its calls.
async fn status_replica(status: u16) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().fallback(move |body: Bytes| {
        let calls = counted.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut response = axum::response::Response::new(Body::from(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).expect("status");
            if status == 503 {
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from_static("30"));
            }
            response
        }
    });
    (format!("http://{}", serve(app).await), calls)
}

/// With `retry` on 5xx, a call answered 503 goes on to the other upstream with the same
/// body (a streamed one too, on the general server, which keeps it for this), and the 503's
/// `Retry-After` keeps its upstream last; without `retry`, the client gets the 503.
async fn retries(fast_path: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_on(dir.path(), fast_path).await;
    let admin = Admin::login(&server).await;
    // A failing replica for each service: a Retry-After keeps one out of every service's
    // rotation.
    let (failing, failing_calls) = status_replica(503).await;
    let (failing_streamed, _) = status_replica(503).await;
    let (failing_plain, _) = status_replica(503).await;
    let (broken, broken_calls) = status_replica(500).await;
    let (working, working_calls) = status_replica(200).await;
    let mut urls = Vec::new();
    for (name, failing, retry) in [
        ("retrying", &failing, json!({"attempts": 2, "on": ["5xx"]})),
        (
            "streamed",
            &failing_streamed,
            json!({"attempts": 2, "on": ["5xx", "429"]}),
        ),
        ("plain", &failing_plain, Value::Null),
        ("broken", &broken, json!({"attempts": 2, "on": ["5xx"]})),
    ] {
        let service = admin
            .ok(
                reqwest::Method::POST,
                "/services",
                Some(
                    json!({"service_name": name, "load_balancing": "round_robin",
                            "upstreams": [failing, working], "retry": retry}),
                ),
            )
            .await;
        let sid = admin.open_api(&service).await;
        urls.push(format!("{}/v1/infers/{sid}/predict", server.gateway));
    }
    let client = reqwest::Client::new();
    for i in 0..4 {
        let sent = format!("body {i}");
        let reply = client
            .post(&urls[0])
            .body(sent.clone())
            .send()
            .await
            .expect("call");
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.text().await.expect("body"), sent);
    }
    // The failing upstream was tried once: its Retry-After put it last.
    assert_eq!(failing_calls.swap(0, Ordering::SeqCst), 1);
    assert_eq!(working_calls.swap(0, Ordering::SeqCst), 4);
    // A streamed (chunked) body, which the general server takes, is kept for the second
    // attempt.
    let path = urls[1].splitn(4, '/').nth(3).expect("path").to_owned();
    let addr = server.gateway.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /{path} HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n9\r\nstreamed \r\n4\r\nbody\r\n0\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut answer)
        .await
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("streamed body"), "{answer}");

    // Without retry, round robin hands one of two calls to the failing upstream: its 503
    // reaches the client.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let reply = client.post(&urls[2]).body("x").send().await.expect("call");
        statuses.push(reply.status().as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 503]);

    // A 500 may come from a call that was taken in: a POST is not sent again, a GET is.
    let reply = client
        .post(&urls[3])
        .body("once")
        .send()
        .await
        .expect("call");
    assert_eq!(reply.status(), 500);
    assert_eq!(broken_calls.swap(0, Ordering::SeqCst), 1);
    let _ = client.get(&urls[3]).send().await.expect("call");
    let reply = client.get(&urls[3]).send().await.expect("call");
    assert_eq!(reply.status(), 200);
    assert_eq!(
        broken_calls.swap(0, Ordering::SeqCst),
        1,
        "the GET went on after a 500"
    );

    let (status, refused) = admin
        .send(
            reqwest::Method::POST,
            "/services",
            Some(json!({"service_name": "bad", "upstreams": [working],
                        "retry": {"attempts": 2, "on": ["timeout"]}})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("retry.on"), "{refused}");
}

#[tokio::test]
async fn retries_move_a_call_on_after_a_5xx_on_the_fast_path() {
    retries(true).await;
}

#[tokio::test]
async fn retries_move_a_call_on_after_a_5xx_on_the_general_server() {
    retries(false).await;
}

/// A real OTLP/HTTP receiver (`tests/interop/otlp_receiver.py`, decoding with the official
/// opentelemetry-proto definitions) and the spans it printed, by trace id.
struct Collector {
    _child: tokio::process::Child,
    url: String,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Collector {
    async fn start() -> Self {
        use tokio::io::AsyncBufReadExt;
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/interop/otlp_receiver.py");
        let mut child = tokio::process::Command::new(common::python())
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), reader.next_line())
            .await
            .expect("the receiver printed its port")
            .expect("read")
            .expect("a port line");
        let (send, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = send.send(serde_json::from_str::<Value>(&line).expect("JSON line"));
            }
        });
        Collector {
            _child: child,
            url: format!("http://127.0.0.1:{}", port.trim()),
            lines,
            seen: Vec::new(),
        }
    }

    /// The span of trace `trace_id`, waiting for its export (at most 15 s).
    async fn span_of(&mut self, trace_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(span) = self.seen.iter().find(|s| s["trace_id"] == trace_id) {
                return span.clone();
            }
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no span of {trace_id}; saw {:?}", self.seen))
                .expect("receiver running");
            assert!(line.get("error").is_none(), "the receiver refused: {line}");
            self.seen.push(line);
        }
    }
}

/// The (trace id, parent id, flags) of a `traceparent` the upstream received.
fn traceparent_parts(echo: &Value) -> (String, String, String) {
    let value = echo["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent reached the upstream: {echo}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// A node exporting spans to a [`Collector`] (with `args` besides), and an open API of a
/// service on a mock upstream: its id and the URL of its `echo` path.
struct Traced {
    mock: common::upstream::Mock,
    collector: Collector,
    server: common::Server,
    sid: String,
    url: String,
    _dir: tempfile::TempDir,
}

impl Traced {
    async fn start(args: &[&str]) -> Self {
        let mock = common::upstream::start_mock().await;
        let collector = Collector::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all = vec!["--otlp-endpoint", &collector.url];
        all.extend_from_slice(args);
        let server = common::start_with(dir.path(), Some(common::PASSWORD), &all).await;
        let admin = Admin::login(&server).await;
        let created = admin
            .ok(
                reqwest::Method::POST,
                "/services",
                Some(json!({"service_name": "traced", "upstreams": [mock.url]})),
            )
            .await;
        let sid = admin.open_api(&created).await;
        let url = format!("{}/v1/infers/{sid}/echo", server.gateway);
        Traced {
            mock,
            collector,
            server,
            sid,
            url,
            _dir: dir,
        }
    }
}

/// Calls are traced by W3C Trace Context and their spans reach a real OTLP receiver:
/// a client's sampled trace is continued (the span's parent is the client's span, the
/// upstream's parent is the gateway's span, `tracestate` goes on); a call without a
/// (valid) `traceparent` starts a trace whose span has no parent (and the client's
/// `tracestate`, belonging to no trace, is dropped); a stranger's unsampled trace is
/// continued but sampled by the gateway's own ratio (here 1: no client opts out).
async fn traces(fast_path: bool) {
    let flag = if fast_path { "true" } else { "false" };
    let traced = Traced::start(&["--http1-fast-path", flag]).await;
    let (mock, mut collector, server) = (&traced.mock, traced.collector, &traced.server);
    let (sid, url) = (&traced.sid, &traced.url);
    let client = reqwest::Client::new();
    let call = |traceparent: Option<&'static str>| {
        let mut request = client.get(url).header("tracestate", "vendor=1");
        if let Some(value) = traceparent {
            request = request.header("traceparent", value);
        }
        async move {
            let reply = request.send().await.expect("call");
            assert_eq!(reply.status(), 200);
            reply.json::<Value>().await.expect("echo")
        }
    };

    // The client's sampled trace goes on.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let echo = call(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ))
    .await;
    let (trace, parent, flags) = traceparent_parts(&echo);
    assert_eq!((trace.as_str(), flags.as_str()), (client_trace, "01"));
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(echo["headers"]["tracestate"], "vendor=1");
    let span = collector.span_of(client_trace).await;
    assert_eq!(span["parent_span_id"], "00f067aa0ba902b7", "{span}");
    assert_eq!(span["span_id"], parent.as_str(), "{span}");
    assert_eq!(span["kind"], 2, "a SERVER span: {span}");
    assert_eq!(span["name"], format!("GET /v1/infers/{sid}"), "{span}");
    let attributes = &span["attributes"];
    assert_eq!(attributes["http.request.method"], "GET", "{span}");
    assert_eq!(attributes["http.response.status_code"], 200, "{span}");
    assert_eq!(
        attributes["url.path"],
        format!("/v1/infers/{sid}/echo"),
        "{span}"
    );
    assert_eq!(
        attributes["http.route"],
        format!("/v1/infers/{sid}"),
        "{span}"
    );
    assert_eq!(attributes["client.address"], "127.0.0.1", "{span}");
    let upstream = mock
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/base");
    assert_eq!(attributes["infergate.upstream"], upstream, "{span}");
    assert_eq!(span["resource"]["service.name"], "infergate", "{span}");
    let (start, end) = (span["start"].as_u64(), span["end"].as_u64());
    assert!(
        start.is_some_and(|s| s > 1_700_000_000_000_000_000) && end >= start,
        "{span}"
    );

    // No traceparent, or one that is not valid: a new trace, its span without a parent,
    // and the client's tracestate dropped.
    for sent in [
        None,
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"),
    ] {
        let echo = call(sent).await;
        let (trace, parent, flags) = traceparent_parts(&echo);
        assert_ne!(trace, client_trace);
        assert_eq!(flags, "01");
        assert!(echo["headers"].get("tracestate").is_none(), "{echo}");
        let span = collector.span_of(&trace).await;
        assert_eq!(span["parent_span_id"], "", "{span}");
        assert_eq!(span["span_id"], parent.as_str(), "{span}");
    }

    // A stranger's unsampled trace goes on, sampled all the same.
    let echo = call(Some(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ))
    .await;
    let (trace, _, flags) = traceparent_parts(&echo);
    assert_eq!(
        (trace.as_str(), flags.as_str()),
        ("0af7651916cd43dd8448eb211c80319c", "01")
    );
    let span = collector.span_of(&trace).await;
    assert_eq!(span["parent_span_id"], "b7ad6b7169203331", "{span}");
    let metrics = server.scrape().await;
    assert!(
        metrics.contains("infergate_trace_spans_total{outcome=\"exported\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn traces_reach_an_otlp_receiver_on_the_fast_path() {
    traces(true).await;
}

#[tokio::test]
async fn traces_reach_an_otlp_receiver_on_the_general_server() {
    traces(false).await;
}

/// Only a trusted proxy decides whether a call is sampled: at a ratio of 0 a stranger's
/// sampled `traceparent` is continued unsampled (its id kept) and exports nothing, while a
/// trusted proxy's is sampled and exported, and its unsampled one is not.
#[tokio::test]
async fn only_a_trusted_proxy_makes_a_call_sampled() {
    let traced = Traced::start(&[
        "--trace-sampling-ratio",
        "0",
        "--trusted-proxies",
        "127.0.0.2/32",
    ])
    .await;
    let (mut collector, url) = (traced.collector, &traced.url);
    let stranger = reqwest::Client::new();
    let proxy = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let call = |client: &reqwest::Client, traceparent: &'static str| {
        let request = client.get(url).header("traceparent", traceparent);
        async move {
            let reply = request.send().await.expect("call");
            assert_eq!(reply.status(), 200);
            traceparent_parts(&reply.json::<Value>().await.expect("echo"))
        }
    };
    let forced = "0af7651916cd43dd8448eb211c80319c";
    let (trace, _, flags) = call(
        &stranger,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    .await;
    assert_eq!((trace.as_str(), flags.as_str()), (forced, "00"));
    let declined = "1af7651916cd43dd8448eb211c80319c";
    let (_, _, flags) = call(
        &proxy,
        "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    )
    .await;
    assert_eq!(flags, "00");
    let (trace, _, flags) = call(
        &proxy,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    .await;
    assert_eq!(flags, "01");
    // By the time the proxy's span is in, the others would be too.
    let span = collector.span_of(&trace).await;
    assert_eq!(span["attributes"]["client.address"], "127.0.0.2", "{span}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    while let Ok(line) = collector.lines.try_recv() {
        collector.seen.push(line);
    }
    assert!(
        collector
            .seen
            .iter()
            .all(|s| s["trace_id"] != forced && s["trace_id"] != declined),
        "an unsampled trace was exported: {:?}",
        collector.seen
    );
}

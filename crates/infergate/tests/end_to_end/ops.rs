//! Operating the gateway: Prometheus metrics, the access log (and what it must never
//! contain), and TLS with certificate reload.

use crate::common;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use common::tls::self_signed;
use common::upstream::{closed_port_url, start_mock};
use common::{start_logging, start_with, Admin, PASSWORD};

fn sample(metrics: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn signed(method: &str, url: &str, key: &str, secret: &str) -> Vec<(String, String)> {
    let parsed = reqwest::Url::parse(url).expect("url");
    let host = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().expect("port")
    );
    let headers = vec![
        ("Host".to_string(), host),
        (
            "X-Sdk-Date".to_string(),
            infergate_sign::format_sdk_date(chrono::Utc::now()),
        ),
    ];
    let s = infergate_sign::sign(
        key,
        secret.as_bytes(),
        method,
        parsed.path(),
        parsed.query().unwrap_or(""),
        &headers,
        b"",
    );
    let mut out: Vec<(String, String)> = headers.into_iter().filter(|(n, _)| n != "Host").collect();
    out.push(("Authorization".into(), s.authorization.header_value()));
    out
}

#[tokio::test]
async fn metrics_count_each_outcome_once_and_logs_hold_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let access_log = dir.path().join("access.log");
    let stderr = dir.path().join("stderr.log");
    let server = start_logging(
        &dir.path().join("data"),
        Some(PASSWORD),
        &["--access-log", access_log.to_str().expect("path")],
        Some(&stderr),
    )
    .await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let (sid, api, app) = admin.authorized_app(&mock.url, "app_ok").await;
    let app_id = app["app_id"].as_str().expect("id").to_owned();
    let stranger = admin.app("app_stranger").await;
    let code = admin.app_code(&app_id).await;
    let stranger_code = admin
        .app_code(stranger["app_id"].as_str().expect("id"))
        .await;
    let down_url = closed_port_url().await;
    let (down, down_api) = admin
        .service_with_api("down", &down_url, json!({"auth_type": "NONE"}))
        .await;
    let (iam_sid, _) = admin
        .service_with_api("iam", &mock.url, json!({"auth_type": "IAM"}))
        .await;

    let client = reqwest::Client::new();
    let gw = &server.gateway;
    let url = format!("{gw}/v1/infers/{sid}/predict?secret_looking_value=s3cr3t");
    let key = app["app_key"].as_str().expect("key");
    let secret = app["app_secret"].as_str().expect("secret");
    let mut signature = String::new();

    // ok (signed), bad signature, not authorized (AppCode of an unbound app), upstream down,
    // plus an AppCode call and an IAM token call for the secrets check.
    let mut req = client.get(&url);
    for (n, v) in signed("GET", &url, key, secret) {
        if n == "Authorization" {
            signature = v.rsplit('=').next().expect("signature").to_owned();
        }
        req = req.header(n, v);
    }
    assert_eq!(req.send().await.expect("call").status().as_u16(), 200);
    let mut bad = client.get(&url);
    for (n, v) in signed("GET", &url, key, "wrong-secret") {
        bad = bad.header(n, v);
    }
    assert_eq!(bad.send().await.expect("call").status().as_u16(), 401);
    let denied = client
        .get(&url)
        .header("X-Apig-AppCode", &stranger_code)
        .send()
        .await
        .expect("call");
    assert_eq!(denied.status().as_u16(), 403);
    let down_call = client
        .get(format!("{gw}/v1/infers/{down}"))
        .send()
        .await
        .expect("call");
    assert_eq!(down_call.status().as_u16(), 502);
    let by_code = client
        .get(&url)
        .header("X-Apig-AppCode", &code)
        .send()
        .await
        .expect("call");
    assert_eq!(by_code.status().as_u16(), 200);
    let by_token = client
        .get(format!("{gw}/v1/infers/{iam_sid}"))
        .header("X-Auth-Token", &admin.token)
        .send()
        .await
        .expect("call");
    assert_eq!(by_token.status().as_u16(), 200);

    let text = server.scrape().await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    let requests = "infergate_gateway_requests_total";
    assert_eq!(
        sample(
            &scrape,
            requests,
            &[
                ("api", &api),
                ("app", &app_id),
                ("status", "200"),
                ("method", "GET")
            ]
        ),
        2.0
    );
    assert_eq!(
        sample(&scrape, requests, &[("api", &api), ("status", "401")]),
        1.0
    );
    assert_eq!(
        sample(&scrape, requests, &[("api", &api), ("status", "403")]),
        1.0
    );
    assert_eq!(
        sample(&scrape, requests, &[("api", &down_api), ("status", "502")]),
        1.0
    );
    let failures = "infergate_gateway_auth_failures_total";
    assert_eq!(
        sample(&scrape, failures, &[("reason", "bad_signature")]),
        1.0
    );
    assert_eq!(
        sample(&scrape, failures, &[("reason", "not_authorized")]),
        1.0
    );
    let authority = down_url
        .trim_start_matches("http://")
        .trim_end_matches("/base");
    assert_eq!(
        sample(
            &scrape,
            "infergate_gateway_upstream_errors_total",
            &[("upstream", authority), ("kind", "connect")]
        ),
        1.0
    );
    assert!(
        sample(
            &scrape,
            "infergate_gateway_request_duration_seconds_count",
            &[("api", &api)]
        ) >= 4.0
    );
    assert!(
        sample(
            &scrape,
            "infergate_gateway_upstream_duration_seconds_count",
            &[]
        ) >= 3.0
    );
    assert_eq!(
        sample(&scrape, "infergate_gateway_in_flight_requests", &[]),
        0.0
    );
    assert!(sample(&scrape, "infergate_snapshot_revision", &[]) > 0.0);
    let admin_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("infergate_admin_requests_total"))
        .collect();
    assert!(
        sample(
            &scrape,
            "infergate_admin_requests_total",
            &[
                ("operation", "POST /v1/:project_id/services"),
                ("status", "200")
            ]
        ) >= 3.0,
        "{admin_lines:?}"
    );
    for sample in &scrape.samples {
        for value in sample.labels.values() {
            assert!(
                !value.contains("s3cr3t") && !value.contains("/predict"),
                "unbounded label {value}"
            );
        }
    }

    // One JSON line per call; no credential anywhere in the logs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(&access_log).expect("access log");
    let calls: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|l| l["kind"] == "call")
        .collect();
    assert_eq!(calls.len(), 6, "{log}");
    let first = &calls[0];
    assert_eq!(first["status"], 200);
    assert_eq!(first["app_id"], app_id.as_str());
    assert_eq!(
        first["path"],
        format!("/v1/infers/{sid}/predict?secret_looking_value=")
    );
    assert!(first["total_ms"].as_f64().is_some() && first["upstream_ms"].as_f64().is_some());
    assert!(
        log.lines()
            .any(|l| l.contains("\"kind\":\"management\"") && l.contains("\"user_id\":\"")),
        "management calls are logged with the user"
    );
    let process_log = std::fs::read_to_string(&stderr).expect("stderr");
    for (what, needle) in [
        ("AppSecret", secret),
        ("AppCode", code.as_str()),
        ("token", admin.token.as_str()),
        ("signature", signature.as_str()),
        ("query value", "s3cr3t"),
    ] {
        assert!(!needle.is_empty());
        assert!(!log.contains(needle), "the access log holds the {what}");
        assert!(
            !process_log.contains(needle),
            "the process log holds the {what}"
        );
    }
}

fn peer_cert(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

#[tokio::test]
async fn https_with_http2_and_certificate_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_a, key_a, der_a) = self_signed();
    let (cert_b, key_b, der_b) = self_signed();
    let cert_path = dir.path().join("gateway.crt");
    let key_path = dir.path().join("gateway.key");
    std::fs::write(&cert_path, &cert_a).expect("cert");
    std::fs::write(&key_path, &key_a).expect("key");
    let server = start_with(
        &dir.path().join("data"),
        Some(PASSWORD),
        &[
            "--gateway-tls-cert",
            cert_path.to_str().expect("path"),
            "--gateway-tls-key",
            key_path.to_str().expect("path"),
            "--access-log",
            "off",
        ],
    )
    .await;
    assert!(server.gateway.starts_with("https://"), "{}", server.gateway);
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let (sid, _) = admin
        .service_with_api("open", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let port = server.gateway.rsplit(':').next().expect("port").to_owned();
    let url = format!("https://localhost:{port}/v1/infers/{sid}");
    let client = |h2: bool| {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_der(&der_a).expect("a"))
            .add_root_certificate(reqwest::Certificate::from_der(&der_b).expect("b"))
            .tls_info(true)
            .pool_idle_timeout(Duration::from_secs(60));
        builder = if h2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        builder.build().expect("client")
    };

    let h1 = client(false);
    let first = h1.get(&url).send().await.expect("https call");
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.version(), reqwest::Version::HTTP_11);
    assert_eq!(peer_cert(&first), der_a);
    let echoed: Value = first.json().await.expect("json");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    let h2 = client(true);
    let over_h2 = h2.get(&url).send().await.expect("h2 call");
    assert_eq!(over_h2.status().as_u16(), 200);
    assert_eq!(over_h2.version(), reqwest::Version::HTTP_2);
    let echoed: Value = over_h2.json().await.expect("json");
    assert_eq!(
        echoed["headers"]["x-forwarded-host"],
        format!("localhost:{port}")
    );
    // A host header that names another host than :authority is malformed over HTTP/2.
    let two_hosts = h2
        .get(&url)
        .header("host", "evil.example")
        .send()
        .await
        .expect("h2 call");
    assert_eq!(two_hosts.status().as_u16(), 400);

    // Replace the files; the watcher picks them up within about a second.
    std::fs::write(&key_path, &key_b).expect("key");
    std::fs::write(&cert_path, &cert_b).expect("cert");
    let mut fresh_der = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = client(false)
            .get(&url)
            .send()
            .await
            .expect("new connection");
        assert_eq!(fresh.status().as_u16(), 200);
        fresh_der = peer_cert(&fresh);
        if fresh_der == der_b {
            break;
        }
    }
    assert_eq!(
        fresh_der, der_b,
        "a new connection sees the new certificate"
    );
    // The connections opened before still work, on the old certificate.
    let again = h2.get(&url).send().await.expect("old h2 connection");
    assert_eq!(again.status().as_u16(), 200);
    let again = h1.get(&url).send().await.expect("old h1 connection");
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        peer_cert(&again),
        der_a,
        "the pooled connection kept its TLS session"
    );
}

/// One response read from `stream` (after what `pending` holds): its status and its body,
/// framed by `Content-Length` or chunked.
async fn read_one<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
) -> (u16, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    loop {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut slots);
        if let Ok(httparse::Status::Complete(head)) = res.parse(pending) {
            let status = res.code.expect("status");
            let header = |name: &str| {
                res.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let framed = match (header("content-length"), header("transfer-encoding")) {
                (Some(length), _) => {
                    let end = head + length.parse::<usize>().expect("length");
                    (pending.len() >= end).then(|| (pending[head..end].to_vec(), end))
                }
                (None, Some(_)) => {
                    let (mut at, mut body) = (head, Vec::new());
                    loop {
                        match httparse::parse_chunk_size(&pending[at..]) {
                            Ok(httparse::Status::Complete((used, 0))) => {
                                let end = at + used + 2;
                                break (pending.len() >= end).then_some((body, end));
                            }
                            Ok(httparse::Status::Complete((used, size))) => {
                                let start = at + used;
                                let Some(data) = pending.get(start..start + size as usize + 2)
                                else {
                                    break None;
                                };
                                body.extend_from_slice(&data[..size as usize]);
                                at = start + size as usize + 2;
                            }
                            _ => break None,
                        }
                    }
                }
                (None, None) => Some((Vec::new(), head)),
            };
            if let Some((body, end)) = framed {
                pending.drain(..end);
                return (status, body);
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "the connection closed: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// HTTP/1.1 over TLS is served by the fast path as in the clear: calls pipelined on one
/// connection are answered in order, a head begun and paused holds the connection's
/// buffers (the fast path's gauge counts it; the general server's connections never
/// do), a chunked request on the same connection is handed on to the general server,
/// which serves the rest; and a client that comes back resumes its session (a ticket:
/// no full handshake). The gateway picks AES-128-GCM whatever the client's order.
#[tokio::test]
async fn https_http1_takes_the_fast_path_and_sessions_resume() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut flags, der) = common::tls::listener_flags(dir.path());
    flags.extend(["--access-log".to_owned(), "off".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = start_with(&dir.path().join("data"), Some(PASSWORD), &flags).await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let (sid, _) = admin
        .service_with_api("open", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let addr = server.gateway.trim_start_matches("https://").to_owned();
    let connector = common::tls::connector(&der, &[b"http/1.1"]);
    let holding = || async {
        let text = server.scrape().await;
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse");
        sample(&scrape, "infergate_gateway_holding_connections", &[])
    };

    let mut tls = common::tls::connect(&connector, &addr).await;
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // The client lists AES-256 first; the gateway's order decides.
    assert_eq!(
        tls.get_ref().1.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    let get =
        |name: &str| format!("GET /v1/infers/{sid}/{name} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut pending = Vec::new();
    tls.write_all(format!("{}{}", get("one"), get("two")).as_bytes())
        .await
        .expect("write");
    for name in ["one", "two"] {
        let (status, body) = read_one(&mut tls, &mut pending).await;
        assert_eq!(status, 200);
        let echoed: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(echoed["path"], format!("/base/{name}"));
        assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    }
    // A head begun and left: past the moment after a call, only the fast path holds it.
    let three = get("three");
    tls.write_all(&three.as_bytes()[..20]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        holding().await,
        1.0,
        "the fast path reads the TLS connection"
    );
    tls.write_all(&three.as_bytes()[20..]).await.expect("write");
    let (status, body) = read_one(&mut tls, &mut pending).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("/base/three"));
    // Chunked: the general server takes the connection over, with what was read.
    tls.write_all(
        format!(
            "POST /v1/infers/{sid}/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{}",
            get("four")
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (status, body) = read_one(&mut tls, &mut pending).await;
    assert_eq!(status, 200);
    let echoed: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(echoed["body"], "hello");
    let (status, body) = read_one(&mut tls, &mut pending).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("/base/four"));
    tls.write_all(&get("five").as_bytes()[..20])
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        holding().await,
        0.0,
        "the general server has the connection now"
    );
    drop(tls);

    // The client comes back with the ticket of its last session.
    let mut again = common::tls::connect(&connector, &addr).await;
    assert_eq!(
        again.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    again.write_all(get("six").as_bytes()).await.expect("write");
    let (status, _) = read_one(&mut again, &mut Vec::new()).await;
    assert_eq!(status, 200);
}

/// `/docs/` of the admin listener, opened in a real headless Chromium (Debian's `chromium`,
/// which `scripts/test.sh` installs), where Swagger UI, served from
/// the binary under its Content-Security-Policy, renders the operations of `/openapi.json`.
/// The access log is reopened by its path on SIGHUP and on SIGUSR1 (what logrotate
/// expects after it renames the file), while calls keep coming: every call has one whole
/// line in one of the files, and the lines after a signal are in the new file.
#[tokio::test]
async fn the_access_log_is_reopened_on_sighup_and_sigusr1_without_losing_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, access_log) = common::start_with_access_log(dir.path()).await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let (sid, _) = admin
        .service_with_api("logged", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let url = format!("{}/v1/infers/{sid}/predict", server.gateway);
    let client = reqwest::Client::new();
    let pid = server.child.id().expect("pid").to_string();
    const PER_ROUND: usize = 300;
    let mut files = Vec::new();
    for (round, signal) in ["-HUP", "-USR1", ""].into_iter().enumerate() {
        // Calls eight at a time, the file renamed and the signal sent while they run.
        let calls = futures_util::stream::iter(0..PER_ROUND)
            .map(|i| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let reply = client
                        .get(format!("{url}/r{round}c{i}"))
                        .send()
                        .await
                        .expect("call");
                    assert_eq!(reply.status(), 200);
                }
            })
            .buffer_unordered(8)
            .collect::<Vec<()>>();
        let rotate = async {
            if signal.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rotated = dir.path().join(format!("access.log.{round}"));
            std::fs::rename(&access_log, &rotated).expect("rename");
            files.push(rotated);
            let sent = std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill");
            assert!(sent.success());
            // Calls after this (the next round) go to the new file.
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        tokio::join!(calls, rotate);
    }
    files.push(access_log.clone());
    // The writer flushes as its queue empties.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut seen = std::collections::HashSet::new();
    for (n, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).expect("log file");
        assert!(text.ends_with('\n'), "{} ends mid-line", file.display());
        let (mut lines, mut last_round) = (0, 0);
        for line in text.lines() {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()));
            // (Management requests have lines too.)
            let Some(target) = entry["path"].as_str().filter(|p| p.contains("/predict/r")) else {
                continue;
            };
            assert!(seen.insert(target.to_owned()), "twice: {target}");
            lines += 1;
            if target.contains("/predict/r2c") {
                last_round += 1;
            }
        }
        assert!(lines > 0, "{} is empty", file.display());
        // The last round's calls began after the second signal: all in the new file
        // (which may also hold the second round's calls made after its signal).
        if n == 2 {
            assert_eq!(
                last_round, PER_ROUND,
                "the file opened last holds the whole last round"
            );
        } else {
            assert_eq!(
                last_round,
                0,
                "{} holds calls of the last round",
                file.display()
            );
        }
    }
    assert_eq!(seen.len(), 3 * PER_ROUND);
}

#[tokio::test]
async fn the_api_reference_renders_in_a_browser() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .expect("a Chromium to drive: scripts/test.sh installs Debian's chromium");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(&dir.path().join("data"), Some(PASSWORD), &[]).await;
    let profile = dir.path().join("browser");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("{}/docs/", server.admin))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished")
    .expect("chromium ran");
    let dom = String::from_utf8_lossy(&output.stdout);
    for path in [
        "data-path=\"/v1/{project_id}/app-auth/apps\"",
        "data-path=\"/v3/auth/tokens\"",
    ] {
        assert!(
            dom.contains(path),
            "{path} not rendered; stderr: {}\n{dom}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Schemathesis (PyPI, in `.venv-interop`) generates requests from `/openapi.json`, valid
/// and invalid, for every operation, as the bootstrap admin of the default project: no
/// answer may be a 5xx, have a status the document does not list for that operation, or
/// a body or content type that does not match what it documents. Bounded: 25 examples
/// per operation and phase, a fixed seed (`INFERGATE_SCHEMATHESIS_SEED` picks another).
#[tokio::test]
async fn the_openapi_document_holds_for_generated_requests() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let schemathesis = root.join(".venv-interop/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "run scripts/setup-interop.sh (or scripts/test.sh) to install schemathesis"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(
        &dir.path().join("data"),
        Some(PASSWORD),
        &["--access-log", "off"],
    )
    .await;
    let token =
        common::issue_token(&reqwest::Client::new(), &server.admin, "admin", PASSWORD).await;
    // Every operation in the token's project (another project's id is refused before its
    // rules are reached).
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.project_id\" = \"{}\"\n",
            server.project_id
        ),
    )
    .expect("config");
    let seed = std::env::var("INFERGATE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("{}/openapi.json", server.admin))
            .args(["-H", &format!("X-Auth-Token: {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "25",
                "--seed",
                &seed,
                "--generation-database",
                "none",
                "--no-color",
            ])
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finished within 5 minutes")
    .expect("schemathesis ran");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems (seed {seed}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It did reach every operation.
    assert!(report.contains("Tested: 62"), "{report}");
}

/// The web console, driven in a real headless Chromium by Playwright
/// (`tests/interop/console_e2e.py`): a user signs in, creates a service, an API and an app,
/// authorizes the app, sees its calls counted on the usage page and signs out; a viewer then
/// sees no write control and no credential.
/// What the console showed is real: the key and secret it displayed once sign a call the
/// gateway relays, and the token it signed out with opens nothing any more. Screenshots go
/// to `INFERGATE_CONSOLE_SHOTS` (`docs/console/` holds those of the README), else a
/// temporary folder.
#[tokio::test]
async fn the_console_manages_apps_in_a_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start_counting(dir.path()).await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let viewer = admin
        .ok(
            reqwest::Method::POST,
            "/v3/users",
            Some(json!({"user": {"name": "watcher", "password": "watcher-password-1"}})),
        )
        .await;
    let uid = viewer["user"]["id"].as_str().expect("id");
    admin
        .ok(
            reqwest::Method::PUT,
            &format!("/v3/projects/{}/users/{uid}/roles/viewer", admin.project),
            None,
        )
        .await;
    let shots = std::env::var("INFERGATE_CONSOLE_SHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("shots"));
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/console_e2e.py");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(common::python())
            .arg(script)
            .args([&server.admin, PASSWORD, &mock.url])
            .args(["watcher", "watcher-password-1"])
            .arg(&shots)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the console test finished within 180 s")
    .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("the script's JSON line");
    for page in [
        "sign-in",
        "services",
        "apis",
        "apps",
        "app",
        "throttling",
        "usage",
        "users",
        "tester",
        "viewer",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "{page}.png");
    }

    // The key and secret the console showed sign a call the gateway relays to the service.
    let predict = seen["predict_url"].as_str().expect("predict_url");
    let path = &predict[predict.find("/v1/infers/").expect("a predict path")..];
    let url = format!("{}{path}/hello", server.gateway);
    let (key, secret) = (seen["app_key"].as_str(), seen["app_secret"].as_str());
    let mut call = reqwest::Client::new().get(&url);
    for (name, value) in signed("GET", &url, key.expect("key"), secret.expect("secret")) {
        call = call.header(name, value);
    }
    let reply = call.send().await.expect("call");
    assert_eq!(
        reply.status(),
        200,
        "{}",
        reply.text().await.unwrap_or_default()
    );

    // The token of the session that signed out is revoked.
    let token = seen["revoked_token"].as_str().expect("token");
    let reply = reqwest::Client::new()
        .get(format!("{}/v1/{}/services", server.admin, admin.project))
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("call");
    assert_eq!(reply.status(), 401);
}

/// SIGTERM on both servers: the listener closes, a connection waiting between calls is
/// closed at once, an answer under way (an event stream of 2 s) is relayed to its end and
/// its connection closed after it, and the process exits once it is.
#[tokio::test]
async fn sigterm_closes_idle_connections_and_lets_calls_under_way_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for fast_path in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = fast_path.to_string();
        let mut server = start_with(
            &dir.path().join("data"),
            Some(PASSWORD),
            &["--http1-fast-path", &flag],
        )
        .await;
        let admin = Admin::login(&server).await;
        let mock = start_mock().await;
        // Time enough for the upstream's slow answer (3 s).
        let service = admin
            .ok(
                reqwest::Method::POST,
                "/services",
                Some(json!({"service_name": "draining", "upstreams": [mock.url], "timeout_ms": 10000})),
            )
            .await;
        let sid = admin.open_api(&service).await;
        // And one whose upstream is given 1 s: its slow call times out after the stop.
        let (hurried, _) = admin
            .service_with_api("hurried", &mock.url, json!({"auth_type": "NONE"}))
            .await;
        let address = server.gateway.trim_start_matches("http://").to_owned();
        let call = |path: &str| {
            let (service, path) = match path.strip_prefix("hurried:") {
                Some(path) => (&hurried, path),
                None => (&sid, path),
            };
            format!("GET /v1/infers/{service}{path} HTTP/1.1\r\nHost: gw\r\n\r\n")
        };
        let sent = |path: &str| {
            let (address, request) = (address.clone(), call(path));
            async move {
                let mut stream = tokio::net::TcpStream::connect(&address)
                    .await
                    .expect("connect");
                stream.write_all(request.as_bytes()).await.expect("write");
                stream
            }
        };
        // One connection waits between calls, another has a stream under way, a third a
        // call whose upstream answers after the stop, and a fourth made a call just before.
        let mut idle = sent("/a").await;
        assert_eq!(read_one(&mut idle, &mut Vec::new()).await.0, 200);
        let mut busy = sent("/sse").await;
        let slow = sent("/slow").await;
        let timed_out = sent("hurried:/slow").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut recent = sent("/b").await;
        assert_eq!(read_one(&mut recent, &mut Vec::new()).await.0, 200);
        let pid = server.child.id().expect("pid").to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(killed.success());
        // The idle connection ends well before the call under way is answered.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest))
            .await
            .expect("the idle connection was closed");
        assert!(closed.is_ok() && rest.is_empty(), "fast path {fast_path}");
        let closed = tokio::time::timeout(Duration::from_secs(2), recent.read_to_end(&mut rest))
            .await
            .expect("the connection of a recent call was closed");
        assert!(closed.is_ok() && rest.is_empty(), "fast path {fast_path}");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), busy.read_to_end(&mut answer))
            .await
            .expect("the call under way was answered")
            .expect("read");
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(
            text.starts_with("http/1.1 200"),
            "fast path {fast_path}: {text}"
        );
        // Every event, the last one included.
        assert!(text.contains("id: 19\n"), "fast path {fast_path}: {text}");
        // An answer whose head comes after the stop says that the connection closes; so
        // does the gateway's own error answer.
        for (mut stream, status) in [(slow, "200"), (timed_out, "504")] {
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .expect("answered")
                .expect("read");
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            let head = text.split("\r\n\r\n").next().unwrap_or_default();
            assert!(
                head.starts_with(&format!("http/1.1 {status}"))
                    && head.contains("\r\nconnection: close"),
                "fast path {fast_path}: {text}"
            );
        }
        let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
            .await
            .expect("the process exited")
            .expect("wait");
        assert!(status.success(), "fast path {fast_path}: {status}");
        assert!(tokio::net::TcpStream::connect(&address).await.is_err());
    }
}

/// An address of this host other than loopback: the source address of the route to a
/// documentation address (no datagram is sent).
fn this_hosts_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    socket
        .connect("192.0.2.1:9")
        .expect("this host has a route off loopback");
    let ip = socket.local_addr().expect("address").ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

/// `/metrics` names every project's APIs, apps and upstreams, and the admin listener also
/// serves tenants: without a metrics token it answers clients on this host only; with one,
/// only clients that send it as a bearer token.
#[tokio::test]
async fn metrics_answer_this_host_or_the_metrics_token_only() {
    const TOKEN: &str = "scrape-4c1d5e0f9a7b";
    let dir = tempfile::tempdir().expect("tempdir");
    let host = this_hosts_address();
    let listen = ["--admin-listen", "0.0.0.0:0"];
    let port = |server: &common::Server| {
        server
            .admin
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("admin port")
    };
    let client = reqwest::Client::new();
    let scrape = |ip: std::net::IpAddr, port: u16, bearer: Option<&str>| {
        let mut request = client.get(format!(
            "http://{}/metrics",
            std::net::SocketAddr::new(ip, port)
        ));
        if let Some(bearer) = bearer {
            request = request.header("authorization", bearer);
        }
        async move { request.send().await.expect("scrape") }
    };
    let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("ip");

    let open = start_with(&dir.path().join("open"), Some(PASSWORD), &listen).await;
    let here = scrape(loopback, port(&open), None).await;
    assert_eq!(here.status(), 200);
    assert!(here
        .text()
        .await
        .expect("text")
        .contains("infergate_gateway_open_connections"));
    let there = scrape(host, port(&open), None).await;
    assert_eq!(there.status(), 403, "from {host}");
    let body: Value = there.json().await.expect("json");
    assert_eq!(body["error_code"], "ModelArts.0108", "{body}");
    assert!(
        body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("metrics_token"),
        "{body}"
    );
    // A page of another name that a resolver pointed at 127.0.0.1 (DNS rebinding) reaches
    // it from here, under its own name.
    let rebound = client
        .get(format!("http://127.0.0.1:{}/metrics", port(&open)))
        .header("host", format!("evil.example:{}", port(&open)))
        .send()
        .await
        .expect("scrape");
    assert_eq!(rebound.status(), 403);
    let localhost = client
        .get(format!("http://127.0.0.1:{}/metrics", port(&open)))
        .header("host", format!("localhost:{}", port(&open)))
        .send()
        .await
        .expect("scrape");
    assert_eq!(localhost.status(), 200);
    // The management API itself still answers from there.
    let healthz = client
        .get(format!(
            "http://{}/healthz",
            std::net::SocketAddr::new(host, port(&open))
        ))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    drop(open);

    let guarded = common::start_full(
        &dir.path().join("guarded"),
        Some(PASSWORD),
        &listen,
        None,
        &[("INFERGATE_METRICS_TOKEN", TOKEN)],
    )
    .await;
    for (ip, bearer) in [
        (loopback, None),
        (loopback, Some("Bearer scrape-4c1d5e0f9a7")),
        (host, Some("Basic c2NyYXBlOg==")),
        (host, None),
    ] {
        let refused = scrape(ip, port(&guarded), bearer).await;
        assert_eq!(refused.status(), 401, "{ip} {bearer:?}");
        assert!(refused.headers().contains_key("www-authenticate"));
        let body: Value = refused.json().await.expect("json");
        assert_eq!(body["error_code"], "ModelArts.0203", "{body}");
        assert!(!body.to_string().contains(TOKEN), "{body}");
    }
    for ip in [loopback, host] {
        let answered = scrape(ip, port(&guarded), Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(answered.status(), 200, "{ip}");
        assert!(answered
            .text()
            .await
            .expect("text")
            .contains("infergate_gateway_open_connections"));
    }
    drop(guarded);

    // A token too short to stand guard stops the start, naming the setting.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_infergate"))
        .args([
            "serve",
            "--admin-listen",
            "127.0.0.1:0",
            "--gateway-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("short"))
        .args(["--metrics-token", "short"])
        .output()
        .expect("run");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("metrics_token"), "{stderr}");
}

/// A web page may post a "simple" request (`text/plain`, no preflight) to any address, the
/// admin listener on 127.0.0.1 among them: writes that a browser marks as sent from a page
/// of another site are refused before they are read, so a page cannot lock the admin out
/// with wrong passwords (nor log in, nor change anything), and neither can a page whose name
/// was rebound to 127.0.0.1; the same request from a client that is no browser, from the
/// console's own origin, or under a name the node was given, is served.
#[tokio::test]
async fn pages_of_other_sites_cannot_write_to_the_admin_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(
        &dir.path().join("data"),
        Some(PASSWORD),
        &["--admin-hosts", "console.example"],
    )
    .await;
    let port = server.admin.rsplit(':').next().expect("port").to_owned();
    let (rebound_host, rebound_origin) = (
        format!("evil.example:{port}"),
        format!("http://evil.example:{port}"),
    );
    let (named_host, named_origin) = (
        format!("console.example:{port}"),
        format!("http://console.example:{port}"),
    );
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let (machine_host, machine_origin) = (
        format!("{}:{port}", machine.trim()),
        format!("http://{}:{port}", machine.trim()),
    );
    let client = reqwest::Client::new();
    let login = |password: &str| {
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "password": password, "domain": {"name": "default"}}}},
            "scope": {"project": {"name": "default"}}}})
        .to_string()
    };
    let own_origin = server.admin.clone();
    let post = |body: String, marks: &[(&'static str, &str)]| {
        let mut request = client
            .post(format!("{}/v3/auth/tokens", server.admin))
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body);
        for (name, value) in marks {
            request = request.header(*name, *value);
        }
        async move { request.send().await.expect("post") }
    };
    for marks in [
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        &[
            ("sec-fetch-site", "same-site"),
            ("origin", "http://127.0.0.1:1"),
        ],
        // A page whose name an attacker's DNS points at 127.0.0.1 (DNS rebinding): to the
        // browser it is same-origin, but the name is none of this node's.
        &[
            ("host", rebound_host.as_str()),
            ("origin", rebound_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        &[
            ("host", rebound_host.as_str()),
            ("origin", rebound_origin.as_str()),
        ],
    ] {
        // More wrong passwords than the lockout allows, then the right one.
        for _ in 0..6 {
            let refused = post(login("wrong"), marks).await;
            assert_eq!(refused.status(), 403, "{marks:?}");
        }
        let refused = post(login(PASSWORD), marks).await;
        assert_eq!(refused.status(), 403, "{marks:?}");
        assert!(!refused.headers().contains_key("x-subject-token"));
        let body: Value = refused.json().await.expect("json");
        assert!(body.to_string().contains("from a page"), "{body}");
    }
    // None of it counted against the admin: a client that is no browser logs in, and so
    // does the console's own origin.
    let admin = Admin::login(&server).await;
    for marks in [
        &[("origin", own_origin.as_str())][..],
        &[
            ("sec-fetch-site", "same-origin"),
            ("origin", own_origin.as_str()),
        ],
        // A name it was given (`--admin-hosts`).
        &[
            ("host", named_host.as_str()),
            ("origin", named_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        // The machine's own name.
        &[
            ("host", machine_host.as_str()),
            ("origin", machine_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
    ] {
        let served = post(login(PASSWORD), marks).await;
        assert_eq!(served.status(), 201, "{marks:?}");
    }
    // The management API's writes are guarded alike; its reads are not.
    let write = client
        .post(format!(
            "{}/v1/{}/app-auth/apps",
            server.admin, server.project_id
        ))
        .header("x-auth-token", &admin.token)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(json!({"app_name": "from_a_page"}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(write.status(), 403);
    let body: Value = write.json().await.expect("json");
    assert_eq!(body["error_code"], "ModelArts.0108", "{body}");
    let (status, apps) = admin
        .send(reqwest::Method::GET, "/app-auth/apps", None)
        .await;
    assert_eq!(status, 200);
    assert!(!apps.to_string().contains("from_a_page"), "{apps}");
}

/// The environment of process `pid`, one `NAME=value` per entry.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("environ")
        .split(|&b| b == 0)
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect()
}

/// The server's own process (the one started, same id) runs its allocator with a 10 s
/// purge delay when the environment sets none, and with the operator's when it does.
#[tokio::test]
async fn the_server_runs_its_allocator_with_its_purge_delay_unless_told_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (envs, expected) in [
        (&[][..], "MIMALLOC_PURGE_DELAY=10000"),
        (
            &[("MIMALLOC_PURGE_DELAY", "250")][..],
            "MIMALLOC_PURGE_DELAY=250",
        ),
    ] {
        let data = dir.path().join(expected.replace('=', "-"));
        let server = common::start_full(&data, Some(PASSWORD), &[], None, envs).await;
        let pid = server.child.id().expect("pid");
        let set: Vec<String> = environ(pid)
            .into_iter()
            .filter(|entry| entry.starts_with("MIMALLOC_"))
            .collect();
        assert_eq!(set, [expected], "{envs:?}");
        // Started again by the path it was started by: it keeps its name.
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
        assert_eq!(name.trim(), "infergate");
        // The process that answers is the one started.
        let healthz = reqwest::get(format!("{}/healthz", server.admin))
            .await
            .expect("healthz");
        assert_eq!(healthz.status(), 200);
    }
    // Started through the dynamic loader, the running program is the loader: the server is
    // not started again (it would start the loader with the server's arguments) and runs
    // with the allocator's default.
    let loader = "/lib64/ld-linux-x86-64.so.2";
    if std::path::Path::new(loader).exists() {
        let data = dir.path().join("through-the-loader");
        let mut child = tokio::process::Command::new(loader)
            .arg(env!("CARGO_BIN_EXE_infergate"))
            .args(["serve", "--admin-listen", "127.0.0.1:0"])
            .args(["--gateway-listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("INFERGATE_ADMIN_PASSWORD", PASSWORD)
            .env_remove("MIMALLOC_PURGE_DELAY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn through the loader");
        let pid = child.id().expect("pid");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let admin = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read") {
                if let Some(url) = line.trim_start().strip_prefix("admin API:") {
                    return url.trim().to_owned();
                }
            }
            panic!("the server ended before its banner");
        })
        .await
        .expect("banner");
        let healthz = reqwest::get(format!("{admin}/healthz"))
            .await
            .expect("healthz");
        assert_eq!(healthz.status(), 200);
        assert!(
            !environ(pid).iter().any(|e| e.starts_with("MIMALLOC_")),
            "{:?}",
            environ(pid)
        );
    }
}

//! The gateway end to end: the real binary on port 0, a mock model server, and requests
//! signed by the official signing SDKs from PyPI (see `scripts/setup-interop.sh`).

use crate::common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use common::upstream::{closed_port_url, now_micros, start_mock, Mock};
use common::{issue_token, python, start_with, Admin, Server, PASSWORD};

/// Signs with an official SDK (`signer`: "core" or "apig") and sends it; returns
/// (status, body, headers as sent).
async fn sdk_call(
    gateway: &str,
    signer: &str,
    app: &Value,
    mut spec: Value,
) -> (u16, Value, Value) {
    spec["signer"] = json!(signer);
    spec["base"] = json!(gateway);
    spec["key"] = app["app_key"].clone();
    spec["secret"] = app["app_secret"].clone();
    for (field, default) in [
        ("query", json!([])),
        ("headers", json!({})),
        ("body", json!("")),
    ] {
        if spec.get(field).is_none() {
            spec[field] = default;
        }
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/sign_call.py");
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(spec.to_string().as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("python ran");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply: Value = serde_json::from_slice(&output.stdout).expect("json from python");
    (
        reply["status"].as_u64().expect("status") as u16,
        reply["body"].clone(),
        reply["sent_headers"].clone(),
    )
}

struct Setup {
    server: Server,
    admin: Admin,
    mock: Mock,
    sid: String,
    api: String,
    app: Value,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A service on the mock upstream with one open (auth type NONE) API; its id.
    async fn open_service(&self, name: &str) -> String {
        let (sid, _) = self
            .admin
            .service_with_api(name, &self.mock.url, json!({"auth_type": "NONE"}))
            .await;
        sid
    }
}

/// A server with one APP API (AppCode enabled) and one authorized app.
async fn setup(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(&dir.path().join("data"), Some(PASSWORD), extra).await;
    let admin = Admin::login(&server).await;
    let mock = start_mock().await;
    let (sid, api, app) = admin.authorized_app(&mock.url, "app_client").await;
    Setup {
        server,
        admin,
        mock,
        sid,
        api,
        app,
        _dir: dir,
    }
}

#[tokio::test]
async fn official_sdk_signed_calls_reach_the_model() {
    let s = setup(&[]).await;
    let base = format!("/v1/infers/{}", s.sid);
    for signer in ["core", "apig"] {
        // GET with a query.
        let (status, body, _) = sdk_call(
            &s.server.gateway,
            signer,
            &s.app,
            json!({"method": "GET", "path": format!("{base}/health"), "query": [["limit", "10"], ["b", "2"], ["a", "1"], ["name", "hello world"]]}),
        )
        .await;
        assert_eq!(status, 200, "{signer}: {body}");
        assert_eq!(body["method"], "GET");
        assert_eq!(
            body["path"], "/base/health",
            "the api_path prefix is replaced by the upstream base"
        );
        assert!(
            body["query"]
                .as_str()
                .expect("query")
                .contains("name=hello%20world"),
            "{body}"
        );
        let headers = &body["headers"];
        assert!(
            headers.get("authorization").is_none(),
            "credentials are stripped: {headers}"
        );
        assert_eq!(headers["x-app-id"], s.app["app_id"]);
        assert_eq!(headers["x-api-id"], s.api.as_str());
        assert_eq!(headers["x-request-id"].as_str().map(str::len), Some(32));
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");

        // POST JSON: the body hash is signed.
        let payload = json!({"inputs": "你好", "max_tokens": 16}).to_string();
        let (status, body, _) = sdk_call(
            &s.server.gateway,
            signer,
            &s.app,
            json!({"method": "POST", "path": format!("{base}/v1/chat/completions"), "headers": {"Content-Type": "application/json"}, "body": payload}),
        )
        .await;
        assert_eq!(status, 200, "{signer}: {body}");
        assert_eq!(body["body"], payload.as_str());

        // PUT on a path needing percent-encoding, non-JSON body.
        let (status, body, sent) = sdk_call(
            &s.server.gateway,
            signer,
            &s.app,
            json!({"method": "PUT", "path": format!("{base}/files/a%20b+c/%C3%BC~"), "query": [["q", "x/y"], ["z", "*"]], "headers": {"Content-Type": "text/plain"}, "body": "hello"}),
        )
        .await;
        assert_eq!(status, 200, "{signer}: {body} (sent {sent})");
        assert_eq!(body["path"], "/base/files/a%20b+c/%C3%BC~");
        assert_eq!(body["body"], "hello");
    }
}

#[tokio::test]
async fn any_changed_byte_or_a_stale_date_is_refused() {
    let s = setup(&[]).await;
    let base = format!("/v1/infers/{}", s.sid);
    for mutate in ["body", "path", "query", "header"] {
        let (status, body, _) = sdk_call(
            &s.server.gateway,
            "apig",
            &s.app,
            json!({"method": "POST", "path": format!("{base}/x"), "query": [["a", "1"]], "headers": {"Content-Type": "application/json"}, "body": "{\"a\":1}", "mutate": mutate}),
        )
        .await;
        assert_eq!(status, 401, "{mutate}: {body}");
        assert_eq!(body["error_code"], "APIG.0303", "{mutate}");
        assert_eq!(body["request_id"].as_str().map(str::len), Some(32));
        if mutate != "header" {
            let msg = body["error_msg"].as_str().expect("msg");
            assert!(
                msg.contains("verify signature fail, canonicalRequest:POST|"),
                "{msg}"
            );
            assert!(!msg.contains(s.app["app_secret"].as_str().expect("secret")));
        }
    }
    // A signed call replayed with another body: with the signed body's hash added by the
    // attacker, or signed by the client, both signers.
    let hash = infergate_sign::sha256_hex(b"{\"a\":1}");
    for (signer, headers) in [
        ("apig", json!({"Content-Type": "application/json"})),
        ("core", json!({"Content-Type": "application/json"})),
        (
            "apig",
            json!({"Content-Type": "application/json", "X-Sdk-Content-Sha256": hash}),
        ),
    ] {
        let (status, body, _) = sdk_call(
            &s.server.gateway,
            signer,
            &s.app,
            json!({"method": "POST", "path": format!("{base}/x"), "headers": headers, "body": "{\"a\":1}", "mutate": "swap"}),
        )
        .await;
        assert_eq!(status, 401, "{signer} {headers}: {body}");
    }
    let stale = infergate_sign::format_sdk_date(chrono::Utc::now() - chrono::Duration::minutes(16));
    let (status, body, _) = sdk_call(
        &s.server.gateway,
        "core",
        &s.app,
        json!({"method": "GET", "path": base, "headers": {"X-Sdk-Date": stale}}),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_msg"]
            .as_str()
            .expect("msg")
            .contains("signature expired"),
        "{body}"
    );
}

#[tokio::test]
async fn authorization_app_codes_iam_and_open_apis() {
    let s = setup(&[]).await;
    let gw = &s.server.gateway;
    let client = reqwest::Client::new();
    let base = format!("{gw}/v1/infers/{}", s.sid);

    // An app that is not authorized: 403.
    let stranger = s.admin.app("app_stranger").await;
    let (status, body, _) = sdk_call(
        gw,
        "core",
        &stranger,
        json!({"method": "GET", "path": format!("/v1/infers/{}", s.sid)}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (403, json!("APIG.0304")),
        "{body}"
    );

    // AppCode and apikey on an API with support_app_code.
    let app_id = s.app["app_id"].as_str().expect("id");
    let code = s.admin.app_code(app_id).await;
    let via_code = client
        .get(&base)
        .header("X-Apig-AppCode", &code)
        .send()
        .await
        .expect("call");
    assert_eq!(via_code.status().as_u16(), 200);
    let echoed: Value = via_code.json().await.expect("json");
    assert!(
        echoed["headers"].get("x-apig-appcode").is_none(),
        "the AppCode is not forwarded"
    );
    let via_key = client
        .get(&base)
        .header("apikey", s.app["app_key"].as_str().expect("key"))
        .send()
        .await
        .expect("call");
    assert_eq!(via_key.status().as_u16(), 200);
    let wrong_code = client
        .get(&base)
        .header("X-Apig-AppCode", "nope")
        .send()
        .await
        .expect("call");
    assert_eq!(wrong_code.status().as_u16(), 401);
    let none = client.get(&base).send().await.expect("call");
    assert_eq!(none.status().as_u16(), 401);
    let body: Value = none.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0303");

    // Without support_app_code, an AppCode is refused.
    let (sid2, api2) = s
        .admin
        .service_with_api(
            "strict",
            &s.mock.url,
            json!({"auth_type": "APP", "support_app_code": false}),
        )
        .await;
    s.admin.authorize(&sid2, &api2, app_id).await;
    let strict = client
        .get(format!("{gw}/v1/infers/{sid2}"))
        .header("X-Apig-AppCode", &code)
        .send()
        .await
        .expect("call");
    assert_eq!(strict.status().as_u16(), 401);

    // IAM: a project token and an AK/SK signature; NONE: open.
    let (sid3, _) = s
        .admin
        .service_with_api("iam", &s.mock.url, json!({"auth_type": "IAM"}))
        .await;
    let iam_url = format!("{gw}/v1/infers/{sid3}/predict");
    let by_token = client
        .post(&iam_url)
        .header("X-Auth-Token", &s.admin.token)
        .body("x")
        .send()
        .await
        .expect("call");
    assert_eq!(by_token.status().as_u16(), 200);
    let echoed: Value = by_token.json().await.expect("json");
    assert!(echoed["headers"].get("x-auth-token").is_none());
    // A revoked token is refused on the very next call.
    let session = issue_token(&client, &s.server.admin, "admin", PASSWORD).await;
    let with_session = || client.get(&iam_url).header("X-Auth-Token", &session).send();
    assert_eq!(with_session().await.expect("call").status().as_u16(), 200);
    let revoked = client
        .delete(format!("{}/v3/auth/tokens", s.server.admin))
        .header("X-Auth-Token", &session)
        .header("X-Subject-Token", &session)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status().as_u16(), 204);
    assert_eq!(with_session().await.expect("call").status().as_u16(), 401);
    assert!(echoed["headers"]["x-user-id"].is_string());
    let bad_token = client
        .get(&iam_url)
        .header("X-Auth-Token", "igt1.bad.token")
        .send()
        .await
        .expect("call");
    assert_eq!(bad_token.status().as_u16(), 401);
    let body: Value = bad_token.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0301");
    let users = s.admin.ok(Method::GET, "/v3/users?name=admin", None).await;
    let admin_id = users["users"][0]["id"].as_str().expect("id").to_owned();
    let cred = s
        .admin
        .ok(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(json!({"credential": {"user_id": admin_id}})),
        )
        .await;
    let iam_key = json!({"app_key": cred["credential"]["access"], "app_secret": cred["credential"]["secret"]});
    let (status, body, _) = sdk_call(
        gw,
        "core",
        &iam_key,
        json!({"method": "GET", "path": format!("/v1/infers/{sid3}/predict")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Disabled, the key is refused on the very next call; enabled again, accepted; deleted,
    // refused for good.
    let access = cred["credential"]["access"]
        .as_str()
        .expect("ak")
        .to_owned();
    let key_path = format!("/v3.0/OS-CREDENTIAL/credentials/{access}");
    let signed_call = || {
        sdk_call(
            gw,
            "core",
            &iam_key,
            json!({"method": "GET", "path": format!("/v1/infers/{sid3}/predict")}),
        )
    };
    for (change, expected) in [(Some("inactive"), 401), (Some("active"), 200), (None, 401)] {
        match change {
            Some(status) => {
                s.admin
                    .ok(
                        Method::PUT,
                        &key_path,
                        Some(json!({"credential": {"status": status}})),
                    )
                    .await;
            }
            None => {
                s.admin.ok(Method::DELETE, &key_path, None).await;
            }
        }
        let (status, body, _) = signed_call().await;
        assert_eq!(status, expected, "after {change:?}: {body}");
    }
    // An AppKey signature on an IAM-only path gets the IAM error.
    let (status, body, _) = sdk_call(
        gw,
        "core",
        &s.app,
        json!({"method": "GET", "path": format!("/v1/infers/{sid3}")}),
    )
    .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (401, json!("APIG.0301")),
        "{body}"
    );

    let sid4 = s.open_service("open").await;
    let open = client
        .get(format!("{gw}/v1/infers/{sid4}"))
        .send()
        .await
        .expect("call");
    assert_eq!(open.status().as_u16(), 200);
    let nothing = client
        .get(format!("{gw}/v1/infers/unknown"))
        .send()
        .await
        .expect("call");
    assert_eq!(nothing.status().as_u16(), 404);
    let body: Value = nothing.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0101");
}

#[tokio::test]
async fn revoked_credentials_fail_on_the_very_next_call() {
    let s = setup(&[]).await;
    let gw = &s.server.gateway;
    let client = reqwest::Client::new();
    let app_id = s.app["app_id"].as_str().expect("id").to_owned();
    let path = format!("/v1/infers/{}", s.sid);
    let call = json!({"method": "GET", "path": path});

    assert_eq!(sdk_call(gw, "core", &s.app, call.clone()).await.0, 200);
    // Resetting the secret: the old one fails at once.
    s.admin
        .ok(
            Method::PUT,
            &format!("/app-auth/apps/{app_id}/app-secret"),
            None,
        )
        .await;
    assert_eq!(sdk_call(gw, "core", &s.app, call.clone()).await.0, 401);
    let fresh = s
        .admin
        .ok(Method::GET, &format!("/app-auth/apps/{app_id}"), None)
        .await["app"]
        .clone();
    assert_eq!(sdk_call(gw, "core", &fresh, call.clone()).await.0, 200);

    // Deleting an AppCode.
    let code = s.admin.app_code(&app_id).await;
    let with_code = || {
        client
            .get(format!("{gw}{path}"))
            .header("X-Apig-AppCode", &code)
            .send()
    };
    assert_eq!(with_code().await.expect("call").status().as_u16(), 200);
    s.admin
        .ok(
            Method::DELETE,
            &format!("/app-auth/apps/{app_id}/app-code/{code}"),
            None,
        )
        .await;
    assert_eq!(with_code().await.expect("call").status().as_u16(), 401);

    // Revoking the authorization.
    s.admin
        .ok(
            Method::DELETE,
            &format!("/services/{}/app-auth-apis/{}/app-auth-api", s.sid, s.api),
            Some(json!({"apps": [{"app_id": app_id}]})),
        )
        .await;
    let (status, body, _) = sdk_call(gw, "core", &fresh, call).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (403, json!("APIG.0304"))
    );
}

#[tokio::test]
async fn server_sent_events_arrive_as_they_are_sent() {
    let s = setup(&[]).await;
    let sid = s.open_service("stream").await;
    let mut response = reqwest::get(format!("{}/v1/infers/{sid}/sse", s.server.gateway))
        .await
        .expect("call");
    assert_eq!(response.status().as_u16(), 200);
    let mut pending = String::new();
    let mut delays = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        let received = now_micros();
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let sent: u128 = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data line")
                .parse()
                .expect("micros");
            delays.push(received.saturating_sub(sent));
        }
    }
    assert_eq!(delays.len(), 20, "every event arrived");
    let worst = delays.iter().max().copied().unwrap_or_default();
    assert!(
        worst < 50_000,
        "an event took {worst} µs to arrive: {delays:?}"
    );
}

/// Calls one after another share one upstream connection; a response abandoned half-way
/// does not put its connection back, and the next call still works.
#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let s = setup(&[]).await;
    let sid = s.open_service("reuse").await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let response = client
            .post(format!("{}/v1/infers/{sid}/echo", s.server.gateway))
            .body(format!("call {i}"))
            .send()
            .await
            .expect("call");
        assert_eq!(response.status().as_u16(), 200);
        let reply: Value = response.json().await.expect("json");
        assert_eq!(reply["body"], format!("call {i}"));
    }
    assert_eq!(
        s.mock.recorder.connections(),
        1,
        "one kept-alive connection"
    );

    // Read one event of a stream, then walk away: that connection is not reused.
    let mut stream = client
        .get(format!("{}/v1/infers/{sid}/sse", s.server.gateway))
        .send()
        .await
        .expect("sse");
    assert!(stream.chunk().await.expect("chunk").is_some());
    drop(stream);
    for _ in 0..3 {
        let response = client
            .get(format!("{}/v1/infers/{sid}/after", s.server.gateway))
            .send()
            .await
            .expect("call after");
        assert_eq!(response.status().as_u16(), 200);
        let reply: Value = response.json().await.expect("json");
        assert_eq!(reply["path"], "/base/after");
    }
    assert!(
        s.mock.recorder.connections() <= 3,
        "{}",
        s.mock.recorder.connections()
    );
}

/// The gateway's `infergate_gateway_open_connections` gauge, from the admin API's metrics.
async fn open_client_connections(admin: &str) -> f64 {
    gauge(admin, "infergate_gateway_open_connections").await
}

/// A gauge of the admin API's metrics.
async fn gauge(admin: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("the gauge {name}"))
}

/// Idle clients hold no upstream connection: a client connection idle for a moment gives
/// its upstream connection to the pool, which keeps `upstream_keepalive` of them and closes
/// the rest, and gives back its buffers (the gauge of connections holding them falls to
/// zero); each client's next call is served as before.
#[tokio::test]
async fn idle_clients_give_back_their_upstream_connections_and_buffers() {
    let s = setup(&["--upstream-keepalive", "2"]).await;
    let raw = common::upstream::start_raw().await;
    let (sid, _) = s
        .admin
        .service_with_api("idle", &raw.url, json!({"auth_type": "NONE"}))
        .await;
    let call = format!("GET /v1/infers/{sid}/raw/length HTTP/1.1\r\nHost: gw\r\n\r\n");
    let mut clients = Vec::new();
    // Each client calls while those before it still hold their upstream connections.
    for _ in 0..12 {
        let (mut socket, _) = connect(&s.server.gateway).await;
        socket.write_all(call.as_bytes()).await.expect("write");
        let mut pending = Vec::new();
        let (head, body) = read_response(&mut socket, &mut pending).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"hello");
        clients.push(socket);
    }
    let opened = raw.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened >= 2, "{opened}");
    // Three clients begin their next head and pause: that pins no upstream connection.
    for socket in &mut clients[..3] {
        socket.write_all(b"G").await.expect("write");
    }
    // Idle: the pool keeps two, the others are closed; only the clients with a head begun
    // hold a buffer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = raw.open.load(std::sync::atomic::Ordering::SeqCst);
        let holding = gauge(&s.server.admin, "infergate_gateway_holding_connections").await;
        if open <= 2 && holding == 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} upstream connections open, {holding} client connections holding buffers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open_client_connections(&s.server.admin).await, 12.0);
    // Every client calls again, on the pooled connections and new ones.
    for (i, socket) in clients.iter_mut().enumerate() {
        let rest = if i < 3 { &call[1..] } else { &call[..] };
        socket.write_all(rest.as_bytes()).await.expect("write");
        let mut pending = Vec::new();
        let (head, body) = read_response(socket, &mut pending).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(body, b"hello");
    }
}

/// A client connection keeps the upstream connection of its last call for its next one:
/// two clients calling in turn use two; once they have gone, a third takes theirs over.
#[tokio::test]
async fn a_client_connection_keeps_its_upstream_connection_then_leaves_it_to_others() {
    let s = setup(&[]).await;
    let sid = s.open_service("held").await;
    let url = format!("{}/v1/infers/{sid}/echo", s.server.gateway);
    let call = |client: &reqwest::Client, body: String| {
        let request = client.post(&url).body(body.clone()).send();
        async move {
            let response = request.await.expect("call");
            assert_eq!(response.status().as_u16(), 200);
            let reply: Value = response.json().await.expect("json");
            assert_eq!(reply["body"], body);
        }
    };
    let (a, b) = (reqwest::Client::new(), reqwest::Client::new());
    for i in 0..5 {
        call(&a, format!("a {i}")).await;
        call(&b, format!("b {i}")).await;
    }
    assert_eq!(
        s.mock.recorder.connections(),
        2,
        "one per client connection"
    );
    drop((a, b));
    // Once the gateway counts no open client connection, both have handed theirs to the pool.
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_client_connections(&s.server.admin).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the clients' closes were never seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = reqwest::Client::new();
    for i in 0..5 {
        call(&c, format!("c {i}")).await;
    }
    assert_eq!(
        s.mock.recorder.connections(),
        2,
        "the third client took one over"
    );
}

/// The lowest descriptor number `pid` has free.
fn lowest_free_descriptor(pid: u32) -> u64 {
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !open.contains(n)).unwrap_or(0)
}

/// Waits until `pid` has accepted the connection `client` made: the kernel completes the
/// handshake before the process takes the socket, and until then the socket has no descriptor.
async fn wait_accepted(pid: u32, client: &tokio::net::TcpStream) {
    let (local, peer) = (
        client.local_addr().expect("local").port(),
        client.peer_addr().expect("peer").port(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The server's end: its local port is the client's peer port and the other way round.
        let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .find_map(|table| socket_inode(table, peer, local));
        if let Some(inode) = inode {
            let wanted = format!("socket:[{inode}]");
            let held = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("the process's descriptors")
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .any(|target| target.to_str() == Some(wanted.as_str()));
            if held {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the connection was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The inode of the TCP socket from port `local` to port `remote` in `table` (a
/// `/proc/net/tcp` file); none while it waits in the listen queue (inode 0).
fn socket_inode(table: &str, local: u16, remote: u16) -> Option<u64> {
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    std::fs::read_to_string(table)
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if port(fields.get(1)?)? != local || port(fields.get(2)?)? != remote {
                return None;
            }
            fields
                .get(9)?
                .parse()
                .ok()
                .filter(|&inode: &u64| inode != 0)
        })
}

/// Sets the soft open-file limit of `pid` (with util-linux's `prlimit`).
fn set_open_files(pid: u32, soft: u64) {
    let done = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .status()
        .expect("prlimit runs");
    assert!(done.success(), "prlimit --nofile={soft}:");
}

/// A call that finds the node out of file descriptors when it connects to the upstream is
/// answered 503 (the node's own shortage, counted as such) and ejects no upstream: once
/// descriptors are free again, calls reach both upstreams in turn at once.
#[tokio::test]
async fn running_out_of_descriptors_answers_503_and_ejects_no_upstream() {
    let s = setup(&[]).await;
    let (a, b) = (
        common::upstream::start_raw().await,
        common::upstream::start_raw().await,
    );
    let body = json!({
        "service_name": "short",
        "upstreams": [a.url, b.url],
        "load_balancing": "round_robin",
    });
    let service = s.admin.ok(Method::POST, "/services", Some(body)).await;
    let sid = service["service_id"].as_str().expect("id").to_owned();
    s.admin
        .ok(
            Method::POST,
            &format!("/app-auth/{sid}/apis"),
            Some(json!({"auth_type": "NONE"})),
        )
        .await;
    let pid = s.server.child.id().expect("pid");
    let call = format!("GET /v1/infers/{sid}/raw/length HTTP/1.1\r\nHost: gw\r\n\r\n");
    // The node may open exactly one more descriptor: the client's connection is accepted,
    // the connection to the upstream cannot be made.
    let (mut socket, _) = connect(&s.server.gateway).await;
    wait_accepted(pid, &socket).await;
    set_open_files(pid, lowest_free_descriptor(pid));
    socket.write_all(call.as_bytes()).await.expect("write");
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut socket, &mut pending).await;
    set_open_files(pid, 65536.min(rlimit_hard(pid)));
    assert!(head.starts_with("http/1.1 503"), "{head}");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["error_code"], "APIG.0201", "{body}");
    assert_eq!(a.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(b.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    let metrics = s.server.scrape().await;
    assert!(
        metrics.contains("infergate_gateway_local_limits_total{resource=\"file_descriptors\"} 1"),
        "{metrics}"
    );
    // Both upstreams take calls again at once: neither was ejected.
    for _ in 0..4 {
        socket.write_all(call.as_bytes()).await.expect("write");
        let (head, _) = read_response(&mut socket, &mut pending).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    let reached = [&a, &b].map(|u| u.connections.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        reached.iter().all(|&n| n >= 1),
        "calls per upstream {reached:?}"
    );
}

/// The hard open-file limit of `pid`.
fn rlimit_hard(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .expect("limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or(1024)
}

#[tokio::test]
async fn upstream_failures_limits_and_cancellation() {
    let s = setup(&["--max-body-bytes", "4096"]).await;
    let gw = &s.server.gateway;
    let client = reqwest::Client::new();
    let (down, _) = s
        .admin
        .service_with_api(
            "down",
            &closed_port_url().await,
            json!({"auth_type": "NONE"}),
        )
        .await;
    let reply = client
        .get(format!("{gw}/v1/infers/{down}"))
        .send()
        .await
        .expect("call");
    assert_eq!(reply.status().as_u16(), 502);
    let body: Value = reply.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0201");

    // A second upstream that works: the refused one is skipped or retried past.
    let failover = s
        .admin
        .ok(Method::POST, "/services", Some(json!({"service_name": "failover", "upstreams": [closed_port_url().await, s.mock.url]})))
        .await;
    let fid = failover["service_id"].as_str().expect("id").to_owned();
    s.admin
        .ok(
            Method::POST,
            &format!("/app-auth/{fid}/apis"),
            Some(json!({"auth_type": "NONE"})),
        )
        .await;
    for _ in 0..4 {
        let reply = client
            .get(format!("{gw}/v1/infers/{fid}"))
            .send()
            .await
            .expect("call");
        assert_eq!(reply.status().as_u16(), 200);
    }

    let open = s.open_service("open").await;
    let started = Instant::now();
    let slow = client
        .get(format!("{gw}/v1/infers/{open}/slow"))
        .send()
        .await
        .expect("call");
    assert_eq!(slow.status().as_u16(), 504, "timeout_ms is 1000");
    assert!(started.elapsed() < Duration::from_secs(3));
    let body: Value = slow.json().await.expect("json");
    assert_eq!(body["error_code"], "APIG.0203");

    let big = client
        .post(format!("{gw}/v1/infers/{open}"))
        .body(vec![b'x'; 5000])
        .send()
        .await
        .expect("call");
    assert_eq!(big.status().as_u16(), 413);
    let fits = client
        .post(format!("{gw}/v1/infers/{open}"))
        .body(vec![b'x'; 4000])
        .send()
        .await
        .expect("call");
    assert_eq!(fits.status().as_u16(), 200);
    let long_uri = client
        .get(format!("{gw}/v1/infers/{open}?q={}", "a".repeat(40_000)))
        .send()
        .await
        .expect("call");
    assert_eq!(long_uri.status().as_u16(), 414);

    // A client that goes away cancels the upstream call.
    let (mut socket, addr) = connect(&s.server.gateway).await;
    let calls = &s.mock.recorder.calls;
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    socket
        .write_all(
            format!("GET /v1/infers/{open}/cancel HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let deadline = Instant::now() + Duration::from_secs(5);
    while calls.load(std::sync::atomic::Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!s
        .mock
        .recorder
        .cancelled
        .load(std::sync::atomic::Ordering::SeqCst));
    drop(socket);
    while !s
        .mock
        .recorder
        .cancelled
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        assert!(
            Instant::now() < deadline,
            "the upstream call was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket opening handshake passes, the upstream's 101 with its `Sec-WebSocket-Accept`
/// comes back, and bytes flow both ways on the switched connection.
#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let s = setup(&[]).await;
    let open = s.open_service("ws").await;
    let (mut socket, addr) = connect(&s.server.gateway).await;
    socket
        .write_all(
            format!("GET /v1/infers/{open}/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::io::AsyncReadExt::read(&mut socket, &mut byte)
            .await
            .expect("read");
        assert_eq!(
            n,
            1,
            "connection closed before the response head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    socket
        .write_all(b"ping over the upgraded connection")
        .await
        .expect("write");
    let mut echoed = vec![0u8; 33];
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(&mut socket, &mut echoed),
    )
    .await
    .expect("echo in time")
    .expect("read");
    assert_eq!(&echoed, b"ping over the upgraded connection");
}

/// A raw connection to the gateway, and its `host:port`.
async fn connect(gateway: &str) -> (tokio::net::TcpStream, String) {
    let addr = gateway.trim_start_matches("http://").to_owned();
    let socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    (socket, addr)
}

/// Everything the gateway sends until it closes the connection.
async fn read_to_close(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(socket, &mut all),
    )
    .await
    .expect("closed in time")
    .expect("read");
    all
}

/// Reads one response from a raw socket: its head (lowercased) and a body of
/// `Content-Length` bytes or chunked to its end.
async fn read_response(
    socket: &mut tokio::net::TcpStream,
    pending: &mut Vec<u8>,
) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    async fn more(socket: &mut tokio::net::TcpStream, pending: &mut Vec<u8>) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut chunk))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(pending));
        pending.extend_from_slice(&chunk[..n]);
    }
    let end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        more(socket, pending).await;
    };
    let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
    pending.drain(..end + 4);
    let mut body = Vec::new();
    if let Some(length) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let length: usize = length.trim().parse().expect("length");
        while pending.len() < length {
            more(socket, pending).await;
        }
        body = pending.drain(..length).collect();
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = pending.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                more(socket, pending).await;
            };
            let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..i + 4);
                        break;
                    }
                    more(socket, pending).await;
                }
                break;
            }
            while pending.len() < line_end + 2 + size + 2 {
                more(socket, pending).await;
            }
            body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
            pending.drain(..line_end + 2 + size + 2);
        }
    }
    (head, body)
}

/// Every framing of an upstream response is relayed intact, pipelined requests are
/// answered in order, and one client connection keeps using one upstream connection.
#[tokio::test]
async fn response_framings_pipelining_and_fallbacks_on_one_connection() {
    let s = setup(&[]).await;
    let raw = common::upstream::start_raw().await;
    let (sid, _) = s
        .admin
        .service_with_api("raw", &raw.url, json!({"auth_type": "NONE"}))
        .await;
    let (mut socket, addr) = connect(&s.server.gateway).await;
    let get =
        |path: &str| format!("GET /v1/infers/{sid}/raw/{path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // Two requests in one write.
    socket
        .write_all(format!("{}{}", get("length"), get("chunked")).as_bytes())
        .await
        .expect("write");
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut socket, &mut pending).await;
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert_eq!(body, b"hello");
    assert!(
        !head.contains("spoofed") && !head.contains("x-hop"),
        "{head}"
    );
    let request_id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id");
    assert_eq!(request_id.len(), 32, "{head}");
    let (head, body) = read_response(&mut socket, &mut pending).await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, b"hello, world");

    for (path, status, expected) in [
        ("length-listed", "200", &b"hello"[..]),
        ("nocontent", "204", b""),
        ("early", "200", b"ok"),
        ("close", "200", b"until the upstream closes"),
        ("bad", "502", b""),
    ] {
        socket.write_all(get(path).as_bytes()).await.expect("write");
        let (head, body) = read_response(&mut socket, &mut pending).await;
        assert!(
            head.starts_with(&format!("http/1.1 {status}")),
            "{path}: {head}"
        );
        assert_eq!(
            head.contains("content-length"),
            !["nocontent", "close"].contains(&path),
            "{path}: {head}"
        );
        if status == "502" {
            let error: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(error["error_code"], "APIG.0201");
        } else {
            assert_eq!(body, expected, "{path}");
        }
    }
    socket
        .write_all(
            format!("HEAD /v1/infers/{sid}/raw/x HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut socket, &mut chunk)
            .await
            .expect("read");
        assert!(n > 0);
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
    pending.drain(..end + 4);
    assert!(head.contains("content-length: 10"), "{head}");
    // Connections: one for length/chunked/length-listed/nocontent/early/close (closed by
    // the upstream after `close`), then one for bad (closed after it), then one for HEAD.
    assert_eq!(raw.connections.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A chunked request body, on the same connection, goes to the general server; so does
    // everything after it.
    let echo = s.open_service("echo").await;
    socket
        .write_all(
            format!("POST /v1/infers/{echo}/in HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\nGET /v1/infers/{echo}/next HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let (head, body) = read_response(&mut socket, &mut pending).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["body"], "abcd");
    let (head, body) = read_response(&mut socket, &mut pending).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["path"], "/base/next");
    let rest = read_to_close(&mut socket).await;
    assert!(rest.is_empty());
}

/// A body that arrives in pieces is read whole before the call, and a request the client
/// sends while its previous call is still with the upstream is answered after it, in order.
#[tokio::test]
async fn bodies_in_pieces_and_requests_sent_during_a_call() {
    let s = setup(&[]).await;
    let open = s.open_service("pieces").await;
    let (mut socket, addr) = connect(&s.server.gateway).await;
    let mut pending = Vec::new();
    socket
        .write_all(
            format!("POST /v1/infers/{open}/a HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\r\nabcd")
                .as_bytes(),
        )
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(b"efg").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(b"hij").await.expect("write");
    let (head, body) = read_response(&mut socket, &mut pending).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["body"], "abcdefghij");

    // The upstream takes 3 s to answer `slow`, past the service's 1 s: the next request
    // comes meanwhile, in two writes.
    socket
        .write_all(
            format!("GET /v1/infers/{open}/slow HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = format!(
        "POST /v1/infers/{open}/next HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\nok"
    );
    let (first, second) = next.as_bytes().split_at(20);
    socket.write_all(first).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    socket.write_all(second).await.expect("write");
    let (head, body) = read_response(&mut socket, &mut pending).await;
    assert!(head.starts_with("http/1.1 504"), "{head}");
    let error: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        error["error_code"]
            .as_str()
            .is_some_and(|c| c.starts_with("APIG.")),
        "{error}"
    );
    let (head, body) = tokio::time::timeout(
        Duration::from_secs(10),
        read_response(&mut socket, &mut pending),
    )
    .await
    .expect("the request sent during the call is answered");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let reply: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(reply["path"], "/base/next");
    assert_eq!(reply["body"], "ok");
}

/// A signed body past the fast path's limit, sent in many pieces (by length and chunked),
/// is hashed as it arrives and reaches the upstream byte for byte; the same with one byte
/// changed on the way is refused and reaches nothing.
#[tokio::test]
async fn large_signed_bodies_in_pieces_are_hashed_whole() {
    use std::sync::atomic::Ordering;
    let s = setup(&[]).await;
    let (mut socket, addr) = connect(&s.server.gateway).await;
    let path = format!("/v1/infers/{}/large", s.sid);
    let body: Vec<u8> = (0..300 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let date = infergate_sign::format_sdk_date(chrono::Utc::now());
    let headers = vec![
        ("Host".to_string(), addr.clone()),
        ("X-Sdk-Date".to_string(), date.clone()),
    ];
    let key = s.app["app_key"].as_str().expect("key");
    let secret = s.app["app_secret"].as_str().expect("secret");
    let signed = infergate_sign::sign(key, secret.as_bytes(), "POST", &path, "", &headers, &body);
    let auth = signed.authorization.header_value();
    let head = |framing: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-Sdk-Date: {date}\r\nAuthorization: {auth}\r\n{framing}\r\n")
    };
    let mut pending = Vec::new();
    let calls = s.mock.recorder.calls.load(Ordering::SeqCst);
    for (chunked, tampered) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut sent = body.clone();
        if tampered {
            sent[200 * 1024] ^= 1;
        }
        let framing = if chunked {
            "Transfer-Encoding: chunked\r\n".to_string()
        } else {
            format!("Content-Length: {}\r\n", sent.len())
        };
        socket
            .write_all(head(&framing).as_bytes())
            .await
            .expect("head");
        for piece in sent.chunks(7 * 1024 + 3) {
            if chunked {
                let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                framed.extend_from_slice(piece);
                framed.extend_from_slice(b"\r\n");
                socket.write_all(&framed).await.expect("chunk");
            } else {
                socket.write_all(piece).await.expect("piece");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if chunked {
            socket.write_all(b"0\r\n\r\n").await.expect("last chunk");
        }
        let (answer, reply) = read_response(&mut socket, &mut pending).await;
        let reply: Value = serde_json::from_slice(&reply).expect("json");
        if tampered {
            assert!(answer.starts_with("http/1.1 401"), "{answer}");
            assert_eq!(reply["error_code"], "APIG.0303", "{reply}");
        } else {
            assert!(answer.starts_with("http/1.1 200"), "{answer}");
            assert_eq!(reply["body_len"], body.len());
            assert!(
                reply["body"].as_str().is_some_and(|b| b.as_bytes() == body),
                "the upstream received other bytes"
            );
        }
        if answer.contains("connection: close") {
            (socket, _) = connect(&s.server.gateway).await;
            pending.clear();
        }
    }
    assert_eq!(s.mock.recorder.calls.load(Ordering::SeqCst), calls + 2);
}

/// Bodies past the fast path's limit are streamed by the general server; a request that
/// asks to close gets `Connection: close` and a closed connection.
#[tokio::test]
async fn large_bodies_and_connection_close() {
    let s = setup(&[]).await;
    let open = s.open_service("big").await;
    let client = reqwest::Client::new();
    for size in [0usize, 1, 64 * 1024, 64 * 1024 + 1, 1024 * 1024] {
        let reply: Value = client
            .post(format!("{}/v1/infers/{open}/big", s.server.gateway))
            .body(vec![b'x'; size])
            .send()
            .await
            .expect("call")
            .json()
            .await
            .expect("json");
        assert_eq!(reply["body_len"], size, "{size}");
    }
    let (mut socket, addr) = connect(&s.server.gateway).await;
    socket
        .write_all(
            format!("POST /v1/infers/{open}/c HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc").as_bytes(),
        )
        .await
        .expect("write");
    let all = read_to_close(&mut socket).await;
    let text = String::from_utf8_lossy(&all).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.contains("\"body\":\"abc\""), "{text}");
}

/// A service pointed back at the gateway through a proxy that keeps headers is refused
/// with 508 after a few rounds, on both servers, instead of looping until its timeout.
#[tokio::test]
async fn a_service_pointed_back_at_the_gateway_loops_a_few_times_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for fast in ["true", "false"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start_with(dir.path(), Some(PASSWORD), &["--http1-fast-path", fast]).await;
        let admin = Admin::login(&server).await;
        let gateway_addr = server.gateway.trim_start_matches("http://").to_owned();
        // A plain TCP proxy in front of the gateway.
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let proxy_addr = proxy.local_addr().expect("addr");
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = proxy.accept().await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                let target = gateway_addr.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        let (sid, _) = admin
            .service_with_api("looped", "http://127.0.0.1:9", json!({"auth_type": "NONE"}))
            .await;
        admin
            .ok(
                Method::PUT,
                &format!("/services/{sid}"),
                Some(json!({"upstreams": [format!("http://{proxy_addr}/v1/infers/{sid}")], "timeout_ms": 20000})),
            )
            .await;
        let started = Instant::now();
        let reply = reqwest::Client::new()
            .get(format!("{}/v1/infers/{sid}/x", server.gateway))
            .send()
            .await
            .expect("call");
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap_or(Value::Null);
        // The innermost round answers 508; each outer one relays it.
        assert_eq!(status, 508, "fast={fast}: {body}");
        assert!(
            body["error_msg"]
                .as_str()
                .unwrap_or("")
                .contains("Loop detected"),
            "{body}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let n = rounds.load(Ordering::SeqCst);
        assert!(
            (1..=5).contains(&n),
            "fast={fast}: {n} rounds through the proxy"
        );
        forwarder.abort();
        drop(server);
    }
}

/// The README's OpenAI-client example (`examples/openai-chat.py`), run with the official
/// `openai` package from PyPI against the stand-in model server of the walk-through
/// (`examples/model-server.py`): the predict_url is the client's base_url and the AppCode a
/// default header; the answer streams back word by word.
#[tokio::test]
async fn the_openai_client_streams_a_chat_completion_through_the_gateway() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (_model, model_url) = common::upstream::model_server().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(&dir.path().join("data"), Some(common::PASSWORD), &[]).await;
    let admin = Admin::login(&server).await;
    let (sid, _api, _app, code) = admin
        .app_code_setup(&format!("{model_url}/v1"), "openai_example")
        .await;
    let predict_url = format!("{}/v1/infers/{sid}", server.gateway);
    let run = |code: String| {
        let predict_url = predict_url.clone();
        let script = root.join("examples/openai-chat.py");
        async move {
            tokio::process::Command::new(python())
                .arg(script)
                .args(["streamed", "through", "infergate"])
                .env("PREDICT_URL", predict_url)
                .env("APP_CODE", code)
                .env_remove("OPENAI_API_KEY")
                .env_remove("OPENAI_BASE_URL")
                .output()
                .await
                .expect("python")
        }
    };
    let output = run(code).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "streamed through infergate\n"
    );
    // A wrong AppCode is refused before the model is reached, and the client says so.
    let refused = run("not-a-code-of-this-app-0123456789".into()).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
}

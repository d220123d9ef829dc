//! Several nodes on one PostgreSQL: propagation of changes, a database outage, and a
//! bootstrap race. Each test works in its own schema of `INFERGATE_TEST_DATABASE_URL`.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use common::upstream::{model_stub, start_mock};
use common::{start_full, Admin, Server, PASSWORD};

const MASTER_KEY: &str = "5f1c0e3a9b7d4c2e8a6b1f0d3c5e7a9b2d4f6a8c0e1b3d5f7a9c1e3b5d7f9a0c";

struct Schema {
    base: String,
    name: String,
}

impl Schema {
    async fn new() -> Self {
        let base = std::env::var("INFERGATE_TEST_DATABASE_URL").expect(
            "INFERGATE_TEST_DATABASE_URL must name a PostgreSQL database (scripts/test.sh sets it)",
        );
        let name = format!(
            "c_{:x}_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos(),
            std::process::id()
        );
        let pool = sqlx::PgPool::connect(&base).await.expect("connect");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&pool)
            .await
            .expect("schema");
        pool.close().await;
        Self { base, name }
    }

    /// The URL of this schema, optionally through another host:port (a proxy).
    fn url(&self, via: Option<&str>) -> String {
        let mut url = self.base.clone();
        if let Some(addr) = via {
            url = url
                .replace("127.0.0.1:5432", addr)
                .replace("localhost:5432", addr);
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{}", self.name)
    }

    async fn drop_schema(self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.base).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .execute(&pool)
                .await;
        }
    }
}

async fn node(dir: &std::path::Path, name: &str, url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--database-url", url, "--access-log", "off"];
    args.extend_from_slice(extra);
    start_full(
        &dir.join(name),
        Some(PASSWORD),
        &args,
        None,
        &[("INFERGATE_MASTER_KEY", MASTER_KEY)],
    )
    .await
}

/// Polls `url` with the AppCode until its status is `want`; returns how long that took.
/// How long the polls of the lockout tests may wait.
const FIVE_S: Duration = Duration::from_secs(5);

async fn until_status(
    client: &reqwest::Client,
    url: &str,
    code: &str,
    want: u16,
    limit: Duration,
) -> Duration {
    let call = || async {
        client
            .get(url)
            .header("X-Apig-AppCode", code)
            .send()
            .await
            .expect("call")
    };
    until(url, want, "", limit, call).await
}

#[tokio::test]
async fn changes_reach_every_node_within_a_second() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let a = node(dir.path(), "a", &url, &[]).await;
    let b = node(dir.path(), "b", &url, &[]).await;
    let c = node(dir.path(), "c", &url, &[]).await;
    assert_eq!(a.project_id, b.project_id);
    assert_eq!(b.project_id, c.project_id);
    let admin_a = Admin::login(&a).await;
    // A token issued by one node is accepted by the others.
    let admin_c = Admin {
        base: c.admin.clone(),
        ..Admin::login(&a).await
    };
    let mock = start_mock().await;
    let (sid, api, app_id, code) = admin_a.app_code_setup(&mock.url, "app_cluster").await;
    let client = reqwest::Client::new();
    let path = format!("/v1/infers/{sid}");
    let limit = Duration::from_secs(1);

    for n in [&b, &c] {
        until_status(&client, &format!("{}{path}", n.gateway), &code, 200, limit).await;
    }
    let unauth = json!({"apps": [{"app_id": app_id}]});
    let auth_path = format!("/services/{sid}/app-auth-apis/{api}/app-auth-api");
    admin_c
        .ok(Method::DELETE, &auth_path, Some(unauth.clone()))
        .await;
    for n in [&a, &b] {
        until_status(&client, &format!("{}{path}", n.gateway), &code, 403, limit).await;
    }

    // Propagation time over 100 changes made on A, observed on B.
    let mut times = Vec::new();
    for i in 0..100 {
        let (method, want) = if i % 2 == 0 {
            (Method::POST, 200)
        } else {
            (Method::DELETE, 403)
        };
        let written = Instant::now();
        admin_a.ok(method, &auth_path, Some(unauth.clone())).await;
        let write_ms = written.elapsed();
        let seen = until_status(&client, &format!("{}{path}", b.gateway), &code, want, limit).await;
        times.push(write_ms + seen);
    }
    times.sort();
    let p50 = times[49];
    let p99 = times[98];
    eprintln!(
        "propagation A→B over 100 changes (write + visibility): p50 {p50:?}, p99 {p99:?}, max {:?}",
        times[99]
    );
    assert!(p99 < limit);
    drop((a, b, c));
    schema.drop_schema().await;
}

/// A TCP proxy to PostgreSQL that can be cut (every connection closed, new ones refused)
/// and restored.
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Self {
        Self::start_to("127.0.0.1:5432").await
    }

    /// A proxy to `target` that can be cut.
    async fn start_to(target: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open2.lock().expect("lock").push(task);
            }
        });
        Self { addr, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.open.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_database_outage_never_stops_the_gateway() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = Proxy::start().await;
    let direct = node(dir.path(), "direct", &schema.url(None), &[]).await;
    let proxied = node(
        dir.path(),
        "proxied",
        &schema.url(Some(&proxy.addr)),
        &["--refresh-interval-ms", "300"],
    )
    .await;
    let admin = Admin::login(&direct).await;
    let proxied_admin = Admin {
        base: proxied.admin.clone(),
        ..Admin::login(&direct).await
    };
    let mock = start_mock().await;
    let (sid, api, app_id, code) = admin.app_code_setup(&mock.url, "app_outage").await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/infers/{sid}", proxied.gateway);
    until_status(&client, &url, &code, 200, Duration::from_secs(2)).await;

    proxy.cut();
    for _ in 0..20 {
        let status = client
            .get(&url)
            .header("X-Apig-AppCode", &code)
            .send()
            .await
            .expect("call")
            .status();
        assert_eq!(
            status.as_u16(),
            200,
            "the gateway serves from its snapshot during the outage"
        );
    }
    let (status, body) = proxied_admin
        .send(
            Method::POST,
            "/services",
            Some(json!({"service_name": "during", "upstreams": [mock.url.clone()]})),
        )
        .await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert_eq!(body["error_code"], "ModelArts.0503");
    let ready = client
        .get(format!("{}/readyz", proxied.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);

    // A change made elsewhere during the outage arrives once the database is back.
    admin
        .ok(
            Method::DELETE,
            &format!("/services/{sid}/app-auth-apis/{api}/app-auth-api"),
            Some(json!({"apps": [{"app_id": app_id}]})),
        )
        .await;
    assert_eq!(
        client
            .get(&url)
            .header("X-Apig-AppCode", &code)
            .send()
            .await
            .expect("call")
            .status()
            .as_u16(),
        200
    );
    proxy.restore();
    until_status(&client, &url, &code, 403, Duration::from_secs(10)).await;
    let ready = client
        .get(format!("{}/readyz", proxied.admin))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    drop((direct, proxied));
    schema.drop_schema().await;
}

#[tokio::test]
async fn two_nodes_bootstrapping_together_make_one_admin() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let (a, b) = tokio::join!(
        node(dir.path(), "a", &url, &[]),
        node(dir.path(), "b", &url, &[])
    );
    assert_eq!(a.project_id, b.project_id, "one default project");
    let admin = Admin::login(&b).await;
    let users = admin.ok(Method::GET, "/v3/users", None).await;
    let admins = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter(|u| u["name"] == "admin")
        .count();
    assert_eq!(admins, 1);
    let projects = admin.ok(Method::GET, "/v3/projects", None).await;
    assert_eq!(projects["projects"].as_array().expect("projects").len(), 1);
    // Both nodes share one data key: a token of A works on B.
    let from_a = Admin::login(&a).await;
    let on_b = Admin {
        base: b.admin.clone(),
        ..from_a
    };
    on_b.ok(Method::GET, "/services", None).await;
    drop((a, b));
    schema.drop_schema().await;
}

#[tokio::test]
async fn a_gateway_only_node_serves_what_an_admin_node_configures() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let admin_node = node(dir.path(), "admin", &url, &["--role", "admin"]).await;
    let gateway_node = node(dir.path(), "gateway", &url, &["--role", "gateway"]).await;
    assert!(
        admin_node.gateway.starts_with("(off"),
        "{}",
        admin_node.gateway
    );
    assert!(
        gateway_node.admin.starts_with("(off"),
        "{}",
        gateway_node.admin
    );
    let admin = Admin::login(&admin_node).await;
    let mock = start_mock().await;
    let (sid, _) = admin
        .service_with_api("open", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let status = client
            .get(format!("{}/v1/infers/{sid}", gateway_node.gateway))
            .send()
            .await
            .expect("call")
            .status();
        if status.as_u16() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not served within 1 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop((admin_node, gateway_node));
    schema.drop_schema().await;
}

/// A request signed with an IAM AK/SK, as the signing SDKs make it.
fn signed_get(client: &reqwest::Client, url: &str, ak: &str, sk: &str) -> reqwest::RequestBuilder {
    let parsed = url::Url::parse(url).expect("url");
    let host = format!(
        "{}:{}",
        parsed.host_str().expect("host"),
        parsed.port().expect("port")
    );
    let date = infergate_sign::format_sdk_date(chrono::Utc::now());
    let headers = vec![
        ("Host".to_string(), host.clone()),
        ("X-Sdk-Date".to_string(), date.clone()),
    ];
    let signed = infergate_sign::sign(
        ak,
        sk.as_bytes(),
        "GET",
        parsed.path(),
        parsed.query().unwrap_or(""),
        &headers,
        b"",
    );
    client
        .get(url)
        .header("Host", host)
        .header("X-Sdk-Date", date)
        .header("Authorization", signed.authorization.header_value())
}

/// Polls until `call` answers `want` (and, when `text` is not empty, a body with it);
/// returns how long that took.
async fn until<F, Fut>(what: &str, want: u16, text: &str, limit: Duration, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = Instant::now();
    loop {
        let reply = call().await;
        let status = reply.status().as_u16();
        let body = if text.is_empty() {
            String::new()
        } else {
            reply.text().await.unwrap_or_default()
        };
        if status == want && body.contains(text) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: {status} {body}, not {want} with {text:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Failures counted on one node lock the key and the user on every node; a revocation made
/// on one node is honoured by the gateway of another.
#[tokio::test]
async fn lockouts_and_revocations_hold_on_every_node() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let a = node(dir.path(), "a", &url, &[]).await;
    let b = node(dir.path(), "b", &url, &[]).await;
    let admin = Admin::login(&a).await;
    let mock = start_mock().await;
    let (sid, _) = admin
        .service_with_api("iam-locks", &mock.url, json!({"auth_type": "IAM"}))
        .await;
    let client = reqwest::Client::new();
    let call_a = format!("{}/v1/infers/{sid}/predict", a.gateway);
    let call_b = format!("{}/v1/infers/{sid}/predict", b.gateway);

    // Revocation: a session revoked at node a is refused by node b's gateway.
    let session = common::issue_token(&client, &a.admin, "admin", PASSWORD).await;
    let with_session = || client.get(&call_b).header("X-Auth-Token", &session).send();
    until("session at b", 200, "", FIVE_S, || async {
        with_session().await.expect("call")
    })
    .await;
    let revoked = client
        .delete(format!("{}/v3/auth/tokens", a.admin))
        .header("X-Auth-Token", &session)
        .header("X-Subject-Token", &session)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status().as_u16(), 204);
    until("revoked session at b", 401, "APIG.0301", FIVE_S, || async {
        with_session().await.expect("call")
    })
    .await;

    // An AK: five bad signatures at node a lock it at node b too, on both planes.
    let user = admin
        .ok(
            Method::POST,
            "/v3/users",
            Some(json!({"user": {"name": "locks", "password": "locks-password-1"}})),
        )
        .await;
    let uid = user["user"]["id"].as_str().expect("id").to_owned();
    let project = admin.project.clone();
    admin
        .ok(
            Method::PUT,
            &format!("/v3/projects/{project}/users/{uid}/roles/member"),
            None,
        )
        .await;
    let cred = admin
        .ok(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(json!({"credential": {"user_id": uid}})),
        )
        .await;
    let ak = cred["credential"]["access"]
        .as_str()
        .expect("ak")
        .to_owned();
    let sk = cred["credential"]["secret"]
        .as_str()
        .expect("sk")
        .to_owned();
    let wrong = "1".repeat(40);
    until("right signature at b", 200, "", FIVE_S, || async {
        signed_get(&client, &call_b, &ak, &sk)
            .send()
            .await
            .expect("call")
    })
    .await;
    for _ in 0..5 {
        let reply = signed_get(&client, &call_a, &ak, &wrong)
            .send()
            .await
            .expect("call");
        assert_eq!(reply.status().as_u16(), 401);
    }
    let limit = "AK access failed to reach the limit,forbidden";
    until("locked key at b", 401, limit, FIVE_S, || async {
        signed_get(&client, &call_b, &ak, &sk)
            .send()
            .await
            .expect("call")
    })
    .await;
    until("locked key at a", 401, limit, FIVE_S, || async {
        signed_get(&client, &call_a, &ak, &sk)
            .send()
            .await
            .expect("call")
    })
    .await;
    let management = format!("{}/v3/roles", b.admin);
    until(
        "locked key on b's management plane",
        401,
        limit,
        FIVE_S,
        || async {
            signed_get(&client, &management, &ak, &sk)
                .send()
                .await
                .expect("call")
        },
    )
    .await;

    // A password: five failures at node a lock the user at node b.
    for _ in 0..5 {
        let reply = client
            .post(format!("{}/v3/auth/tokens", a.admin))
            .json(&json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "locks", "password": "not-the-password", "domain": {"name": "default"}}}}}}))
            .send()
            .await
            .expect("login");
        assert_eq!(reply.status().as_u16(), 401);
    }
    let login_b = client
        .post(format!("{}/v3/auth/tokens", b.admin))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "locks", "password": "locks-password-1", "domain": {"name": "default"}}}}}}),
        )
        .send()
        .await
        .expect("login");
    assert_eq!(login_b.status().as_u16(), 401);
    // The admin of node b unlocks it for both.
    let admin_b = Admin::login(&b).await;
    admin_b
        .ok(
            Method::PATCH,
            &format!("/v3/users/{uid}"),
            Some(json!({"user": {"enabled": true}})),
        )
        .await;
    common::issue_token(&client, &a.admin, "locks", "locks-password-1").await;

    // A key locked by management calls: that node's gateway refuses it before the last
    // refusal is answered; the other node's soon after.
    let cred = admin
        .ok(
            Method::POST,
            "/v3.0/OS-CREDENTIAL/credentials",
            Some(json!({"credential": {"user_id": uid}})),
        )
        .await;
    let ak = cred["credential"]["access"]
        .as_str()
        .expect("ak")
        .to_owned();
    let sk = cred["credential"]["secret"]
        .as_str()
        .expect("sk")
        .to_owned();
    until("second key at b", 200, "", FIVE_S, || async {
        signed_get(&client, &call_b, &ak, &sk)
            .send()
            .await
            .expect("call")
    })
    .await;
    for _ in 0..5 {
        let reply = signed_get(&client, &management, &ak, &wrong)
            .send()
            .await
            .expect("call");
        assert_eq!(reply.status().as_u16(), 401);
    }
    let at_once = signed_get(&client, &call_b, &ak, &sk)
        .send()
        .await
        .expect("call");
    assert_eq!(at_once.status().as_u16(), 401);
    until(
        "key locked by b's management plane, at a",
        401,
        limit,
        FIVE_S,
        || async {
            signed_get(&client, &call_a, &ak, &sk)
                .send()
                .await
                .expect("call")
        },
    )
    .await;
    drop((a, b));
    schema.drop_schema().await;
}

/// Each gateway judges every new upstream connection by the address it reached: a node
/// with `upstream_allow` refuses a service another node accepted, and no node calls its
/// own listener (a service pointed at one gets 502, not a loop).
#[tokio::test]
async fn gateways_refuse_upstreams_outside_their_rules() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let open = node(dir.path(), "open", &url, &[]).await;
    let strict = node(
        dir.path(),
        "strict",
        &url,
        &["--upstream-allow", "10.0.0.0/8"],
    )
    .await;
    let admin = Admin::login(&open).await;
    let mock = start_mock().await;
    let (sid, _) = admin
        .service_with_api("outside", &mock.url, json!({"auth_type": "NONE"}))
        .await;
    let client = reqwest::Client::new();
    let call = |node: &Server| {
        client
            .get(format!("{}/v1/infers/{sid}", node.gateway))
            .send()
    };
    until("open node", 200, "", FIVE_S, || async {
        call(&open).await.expect("call")
    })
    .await;
    until("strict node", 502, "", FIVE_S, || async {
        call(&strict).await.expect("call")
    })
    .await;
    let calls = mock.recorder.calls.load(Ordering::SeqCst);

    // The open node's admin cannot know the strict node's listeners; its gateway refuses
    // to call itself.
    let (looped, _) = admin
        .service_with_api("loop", &strict.gateway, json!({"auth_type": "NONE"}))
        .await;
    let through_strict = format!("{}/v1/infers/{looped}", strict.gateway);
    until("loop at strict", 502, "", FIVE_S, || async {
        client.get(&through_strict).send().await.expect("call")
    })
    .await;
    // Its own listeners, the open node's admin refuses at once.
    let (status, body) = admin
        .send(
            Method::POST,
            "/services",
            Some(json!({"service_name": "own", "upstreams": [open.gateway.clone()]})),
        )
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(
        body["error_msg"].as_str().unwrap_or("").contains("loop"),
        "{body}"
    );
    assert_eq!(mock.recorder.calls.load(Ordering::SeqCst), calls);
    drop((open, strict));
    schema.drop_schema().await;
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

async fn limits_status(node: &Server) -> String {
    let ready = node.readyz().await;
    ready["limits"].as_str().unwrap_or("").to_owned()
}

/// Three nodes on one PostgreSQL and one Redis: an app's limit of 1,000 calls in 20 s,
/// called round robin over the nodes at several times the limit for two windows, admits
/// at most 1,000 per window and no fewer than 970. With Redis cut mid-window the nodes
/// keep answering, admitting on their local shares and refusing, never over the limit, and
/// share the counts again once it returns.
#[tokio::test]
async fn limits_hold_across_three_nodes_and_through_a_redis_outage() {
    const LIMIT: u64 = 1_000;
    const WINDOW: u64 = 20_000;
    const GUARD: u64 = 300;
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let redis = Proxy::start_to("127.0.0.1:6379").await;
    let redis_url = format!("redis://{}", redis.addr);
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(node(dir.path(), name, &url, &["--redis-url", &redis_url]).await);
    }
    let admin = Admin::login(&nodes[0]).await;
    let mock = start_mock().await;
    let (sid, api, _, code) = admin.app_code_setup(&mock.url, "busy_app").await;
    admin
        .throttle(
            json!({"name": "per_20s", "api_call_limits": 1_000_000, "app_call_limits": LIMIT,
                   "time_interval": WINDOW / 1_000, "time_unit": "SECOND"}),
            &[&api],
        )
        .await;
    let client = reqwest::Client::new();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}/v1/infers/{sid}", n.gateway))
        .collect();
    for (node, url) in nodes.iter().zip(&urls) {
        until_status(&client, url, &code, 200, Duration::from_secs(5)).await;
        let started = Instant::now();
        while limits_status(node).await != "shared in Redis" {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "Redis not reached"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // From the start of the next window, two windows of load.
    let first = epoch_ms() / WINDOW + 1;
    tokio::time::sleep(Duration::from_millis(first * WINDOW + GUARD - epoch_ms())).await;
    let end = (first + 2) * WINDOW - GUARD;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let outcomes = Arc::new(Mutex::new(Vec::<(u64, u16)>::new()));
    let mut workers = Vec::new();
    for _ in 0..12 {
        let (client, urls, code) = (client.clone(), urls.clone(), code.clone());
        let (next, outcomes) = (next.clone(), outcomes.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let now = epoch_ms();
                if now >= end {
                    return;
                }
                // No call near a window's edge, so each counts in the window it was sent in.
                let into = now % WINDOW;
                if !(GUARD..=WINDOW - GUARD).contains(&into) {
                    tokio::time::sleep(Duration::from_millis(2 * GUARD)).await;
                    continue;
                }
                let url = &urls[next.fetch_add(1, Ordering::Relaxed) % urls.len()];
                let status = client
                    .get(url)
                    .header("X-Apig-AppCode", &code)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                outcomes.lock().expect("lock").push((now, status));
                // About 20 calls a second each: 240 a second in all, ~5x the limit.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // Redis goes away 1.5 s into the second window (about a third of the limit taken), for
    // 10 s.
    let cut_at = (first + 1) * WINDOW + 1_500;
    tokio::time::sleep(Duration::from_millis(cut_at.saturating_sub(epoch_ms()))).await;
    redis.cut();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let during = limits_status(&nodes[1]).await;
    tokio::time::sleep(Duration::from_millis(8_000)).await;
    redis.restore();
    for worker in workers {
        worker.await.expect("worker");
    }
    let outcomes = outcomes.lock().expect("lock").clone();
    assert!(
        outcomes.iter().all(|(_, s)| *s == 200 || *s == 429),
        "every call answered 200 or 429"
    );
    let admitted = |window: u64, from: u64, to: u64| {
        outcomes
            .iter()
            .filter(|(at, s)| {
                *s == 200 && at / WINDOW == window && (from..to).contains(&(at % WINDOW))
            })
            .count() as u64
    };
    let sent = outcomes
        .iter()
        .filter(|(at, _)| at / WINDOW == first)
        .count() as u64;
    let one = admitted(first, 0, WINDOW);
    assert!(sent > 3 * LIMIT, "only {sent} calls in the first window");
    assert!(
        (LIMIT - 30..=LIMIT).contains(&one),
        "first window admitted {one}"
    );
    let two = admitted(first + 1, 0, WINDOW);
    assert!(two <= LIMIT, "second window admitted {two}");
    assert_eq!(during, "counted on this node (Redis unreachable)");
    // During the outage the nodes admitted on their shares, then refused.
    let outage = (2_000, 11_000);
    let ok_during = admitted(first + 1, outage.0, outage.1);
    let refused_during = outcomes
        .iter()
        .filter(|(at, s)| {
            *s == 429 && at / WINDOW == first + 1 && (outage.0..outage.1).contains(&(at % WINDOW))
        })
        .count();
    assert!(
        ok_during > 0 && refused_during > 0,
        "{ok_during} admitted, {refused_during} refused"
    );
    // Redis is back: the counts are shared again, and a new window admits.
    for node in &nodes {
        let started = Instant::now();
        while limits_status(node).await != "shared in Redis" {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "Redis not reached again"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(
        (first + 2) * WINDOW + GUARD - epoch_ms().min((first + 2) * WINDOW + GUARD),
    ))
    .await;
    until_status(&client, &urls[2], &code, 200, Duration::from_secs(5)).await;
    let _ = mock;
    drop(nodes);
    schema.drop_schema().await;
}

/// Three nodes on one PostgreSQL and one Redis, each API with its own TOKEN policy (tokens
/// an app may take a minute). Eight concurrent first calls spread over the nodes take
/// exactly the reservations that fit; 200 concurrent streams spread over them take no
/// more tokens than the limit. Refused calls never reach the model server.
#[tokio::test]
async fn token_limits_hold_across_three_nodes() {
    let schema = Schema::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = schema.url(None);
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let redis = ["--redis-url", "redis://127.0.0.1:6379"];
        nodes.push(node(dir.path(), name, &url, &redis).await);
    }
    let admin = Admin::login(&nodes[0]).await;
    let client = reqwest::Client::new();
    // (case, tokens a minute, max_tokens (all of which each answer takes), calls at once)
    for (case, limit, max_tokens, calls) in [
        ("first", 10_000u64, 2_400u64, 8usize),
        ("streams", 20_000, 400, 200),
    ] {
        let stub = model_stub(max_tokens, Duration::from_millis(5)).await;
        let (sid, api) = admin
            .service_with_api(
                &format!("svc{case}"),
                &stub.url,
                json!({"auth_type": "APP", "support_app_code": true}),
            )
            .await;
        let app = admin.app(&format!("{case}_app")).await;
        let app_id = app["app_id"].as_str().expect("id");
        admin.authorize(&sid, &api, app_id).await;
        let code = admin.app_code(app_id).await;
        admin
            .throttle(
                json!({"name": format!("{case}_tpm"), "unit": "TOKEN",
                       "api_call_limits": 100_000_000, "app_call_limits": limit,
                       "time_interval": 1, "time_unit": "MINUTE"}),
                &[&api],
            )
            .await;
        let base: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}/v1/infers/{sid}", n.gateway))
            .collect();
        for (node, base) in nodes.iter().zip(&base) {
            // The stub refuses a GET's empty body: the API is live on the node.
            until_status(&client, &format!("{base}/models"), &code, 400, FIVE_S).await;
            let started = Instant::now();
            while limits_status(node).await != "shared in Redis" {
                assert!(started.elapsed() < FIVE_S, "Redis not reached");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // All in one window: not within 20 s of a minute's end.
        let into = epoch_ms() % 60_000;
        if into > 40_000 {
            tokio::time::sleep(Duration::from_millis(60_050 - into)).await;
        }
        let body = serde_json::to_vec(&json!({"model": "stub", "stream": calls > 8,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "one two three"}]}))
        .expect("json");
        let reserve = (body.len() as u64).div_ceil(4) + max_tokens;
        let sent = (0..calls).map(|i| {
            let req = client
                .post(format!("{}/chat/completions", base[i % base.len()]))
                .header("X-Apig-AppCode", &code)
                .header("content-type", "application/json")
                .body(body.clone());
            async move {
                let reply = req.send().await.expect("call");
                let status = reply.status().as_u16();
                (status, reply.text().await.unwrap_or_default())
            }
        });
        let answers = futures_util::future::join_all(sent).await;
        for (status, text) in &answers {
            assert!(
                *status == 200 || (*status == 429 && text.contains("APIG.0308")),
                "{case}: {status} {text}"
            );
        }
        let admitted = answers.iter().filter(|(s, _)| *s == 200).count() as u64;
        assert_eq!(
            stub.calls.load(Ordering::SeqCst) as u64,
            admitted,
            "{case}: refused calls reached the model server"
        );
        let reported = stub.reported.load(Ordering::SeqCst);
        assert_eq!(reported, admitted * (3 + max_tokens), "{case}");
        assert!(reported <= limit, "{case}: {reported} tokens served");
        let fit = limit / reserve;
        if case == "first" {
            // Each batch from Redis is exactly one call's reservation here.
            assert_eq!(admitted, fit, "{case}: {admitted} of {calls} admitted");
        } else {
            assert!(
                admitted >= fit / 2 && admitted < calls as u64,
                "{case}: {admitted} admitted; {fit} fit"
            );
        }
    }
    drop(nodes);
    schema.drop_schema().await;
}

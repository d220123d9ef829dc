//! Shared by the end-to-end tests: the real binary on port 0, an admin client, and a mock
//! model server.

#![allow(dead_code)]

pub mod tls;
pub mod upstream;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const PASSWORD: &str = "e2e-admin-password";

/// The Python of `.venv-interop` (or `INFERGATE_TEST_PYTHON`), with the official signing
/// SDKs, the OpenAI client and the OpenTelemetry definitions the interop tests drive.
pub fn python() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("INFERGATE_TEST_PYTHON") {
        return std::path::PathBuf::from(path);
    }
    let venv =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-interop/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need .venv-interop: run scripts/setup-interop.sh (or scripts/test.sh)"
    );
    venv
}

pub struct Server {
    pub child: Child,
    pub admin: String,
    pub gateway: String,
    pub project_id: String,
    pub stdout: Vec<String>,
    /// The process log, when no file was asked for: shown only if the test fails, so the
    /// errors a test provokes on purpose (a store outage) do not read as failures.
    log: Option<tempfile::NamedTempFile>,
}

impl Server {
    /// The node's metrics, as Prometheus scrapes them.
    pub async fn scrape(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }

    /// The node's `/readyz` answer.
    pub async fn readyz(&self) -> Value {
        reqwest::get(format!("{}/readyz", self.admin))
            .await
            .expect("readyz")
            .json()
            .await
            .expect("readyz JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let (true, Some(log)) = (std::thread::panicking(), &self.log) {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            eprintln!("--- process log of the node at {}\n{text}---", self.admin);
        }
    }
}

pub async fn start(data_dir: &Path, password: Option<&str>) -> Server {
    start_with(data_dir, password, &[]).await
}

/// Starts `infergate serve` and waits for its banner.
pub async fn start_with(data_dir: &Path, password: Option<&str>, extra: &[&str]) -> Server {
    start_logging(data_dir, password, extra, None).await
}

/// A server with the admin password (its data in `dir/data`) writing its access log to
/// `dir/access.log`; the server and the log's path.
pub async fn start_with_access_log(dir: &Path) -> (Server, std::path::PathBuf) {
    let access_log = dir.join("access.log");
    let path = access_log.to_str().expect("path");
    let server = start_with(&dir.join("data"), Some(PASSWORD), &["--access-log", path]).await;
    (server, access_log)
}

/// A server with the admin password (its data in `dir/data`) that stores its usage every
/// 200 ms.
pub async fn start_counting(dir: &Path) -> Server {
    start_with(
        &dir.join("data"),
        Some(PASSWORD),
        &["--usage-flush-ms", "200"],
    )
    .await
}

/// A server with the admin password, its HTTP/1.1 fast path on or off (off: every call goes
/// to the general server).
pub async fn start_on(data_dir: &Path, fast_path: bool) -> Server {
    let flag = if fast_path { "true" } else { "false" };
    start_with(data_dir, Some(PASSWORD), &["--http1-fast-path", flag]).await
}

/// Like [`start_with`], with the process log (stderr) written to `stderr_file` at debug level.
pub async fn start_logging(
    data_dir: &Path,
    password: Option<&str>,
    extra: &[&str],
    stderr_file: Option<&Path>,
) -> Server {
    start_full(data_dir, password, extra, stderr_file, &[]).await
}

/// Starts a node with extra environment variables.
pub async fn start_full(
    data_dir: &Path,
    password: Option<&str>,
    extra: &[&str],
    stderr_file: Option<&Path>,
    envs: &[(&str, &str)],
) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_infergate"));
    cmd.arg("serve");
    // The admin listener on loopback unless the test names another address.
    if !extra.contains(&"--admin-listen") {
        cmd.args(["--admin-listen", "127.0.0.1:0"]);
    }
    cmd.args(["--gateway-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("INFERGATE_ADMIN_PASSWORD")
        .env_remove("INFERGATE_MASTER_KEY")
        .env_remove("MIMALLOC_PURGE_DELAY")
        .env("INFERGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if let Some(pw) = password {
        cmd.env("INFERGATE_ADMIN_PASSWORD", pw);
    }
    for (name, value) in envs {
        cmd.env(name, value);
    }
    let mut log = None;
    if let Some(path) = stderr_file {
        let file = std::fs::File::create(path).expect("stderr file");
        cmd.stderr(Stdio::from(file)).env("INFERGATE_LOG", "debug");
    } else {
        let file = tempfile::NamedTempFile::new().expect("log file");
        cmd.stderr(Stdio::from(file.reopen().expect("log file")));
        log = Some(file);
    }
    let mut child = cmd.spawn().expect("spawn infergate");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            let done = line.trim_start().starts_with("data directory:");
            seen.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("server printed its banner");
    let field = |name: &str| {
        seen.iter()
            .find_map(|l| {
                l.trim_start()
                    .strip_prefix(name)
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{name} missing in {seen:?}"))
    };
    Server {
        admin: field("admin API:"),
        gateway: field("gateway:"),
        project_id: field("project default:"),
        stdout: seen.clone(),
        child,
        log,
    }
}

/// A management client logged in as the bootstrap admin.
pub struct Admin {
    pub client: reqwest::Client,
    pub base: String,
    pub project: String,
    pub token: String,
}

impl Admin {
    pub async fn login(server: &Server) -> Self {
        let client = reqwest::Client::new();
        let token = issue_token(&client, &server.admin, "admin", PASSWORD).await;
        Self {
            client,
            base: server.admin.clone(),
            project: server.project_id.clone(),
            token,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("/v3") {
            format!("{}{path}", self.base)
        } else {
            format!("{}/v1/{}{path}", self.base, self.project)
        };
        let mut req = self
            .client
            .request(method, url)
            .header("X-Auth-Token", &self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let reply = req.send().await.expect("admin request");
        let status = reply.status();
        let text = reply.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.send(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// Adds an API anyone may call to a created `service`; the service's id.
    pub async fn open_api(&self, service: &Value) -> String {
        let sid = service["service_id"].as_str().expect("sid").to_owned();
        self.ok(
            Method::POST,
            &format!("/app-auth/{sid}/apis"),
            Some(json!({"auth_type": "NONE"})),
        )
        .await;
        sid
    }

    /// A service over `upstream` with one API of `auth_type`; returns (service id, api id).
    pub async fn service_with_api(
        &self,
        name: &str,
        upstream: &str,
        api: Value,
    ) -> (String, String) {
        let service = self
            .ok(
                Method::POST,
                "/services",
                Some(json!({"service_name": name, "upstreams": [upstream], "timeout_ms": 1000})),
            )
            .await;
        let sid = service["service_id"].as_str().expect("sid").to_owned();
        let created = self
            .ok(Method::POST, &format!("/app-auth/{sid}/apis"), Some(api))
            .await;
        (
            sid,
            created["api"]["api_id"]
                .as_str()
                .expect("api id")
                .to_owned(),
        )
    }

    /// An app; returns its `app` object.
    pub async fn app(&self, name: &str) -> Value {
        self.ok(
            Method::POST,
            "/app-auth/apps",
            Some(json!({"app_name": name})),
        )
        .await["app"]
            .clone()
    }

    /// Adds an AppCode to an app and returns it.
    pub async fn app_code(&self, app_id: &str) -> String {
        self.ok(
            Method::POST,
            &format!("/app-auth/apps/{app_id}/app-code"),
            None,
        )
        .await["app"]["app_codes"]
            .as_array()
            .and_then(|codes| codes.last())
            .and_then(Value::as_str)
            .expect("code")
            .to_owned()
    }

    /// A service "svc" over `upstream` with an APP API (AppCode on) and an app authorized
    /// to it: (service id, API id, the app object).
    pub async fn authorized_app(&self, upstream: &str, app_name: &str) -> (String, String, Value) {
        let (sid, api) = self
            .service_with_api(
                "svc",
                upstream,
                json!({"auth_type": "APP", "support_app_code": true}),
            )
            .await;
        let app = self.app(app_name).await;
        self.authorize(&sid, &api, app["app_id"].as_str().expect("id"))
            .await;
        (sid, api, app)
    }

    /// [`Admin::authorized_app`] with one AppCode: (service id, API id, app id, AppCode).
    pub async fn app_code_setup(
        &self,
        upstream: &str,
        app_name: &str,
    ) -> (String, String, String, String) {
        let (sid, api, app) = self.authorized_app(upstream, app_name).await;
        let app_id = app["app_id"].as_str().expect("id").to_owned();
        let code = self.app_code(&app_id).await;
        (sid, api, app_id, code)
    }

    /// A request to the throttling API (`/v2/{project}/apigw/instances/default{rest}`).
    pub async fn apigw(&self, method: Method, rest: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!(
            "{}/v2/{}/apigw/instances/default{rest}",
            self.base, self.project
        );
        let mut req = self
            .client
            .request(method, url)
            .header("X-Auth-Token", &self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let reply = req.send().await.expect("apigw request");
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    /// A throttling policy bound to `apis`; returns its id.
    pub async fn throttle(&self, policy: Value, apis: &[&str]) -> String {
        let (status, created) = self.apigw(Method::POST, "/throttles", Some(policy)).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let (status, bound) = self
            .apigw(
                Method::POST,
                "/throttle-bindings",
                Some(json!({"policy_id": id, "publish_ids": apis})),
            )
            .await;
        assert_eq!(status, 201, "{bound}");
        id
    }

    pub async fn authorize(&self, sid: &str, api: &str, app_id: &str) {
        let reply = self
            .ok(
                Method::POST,
                &format!("/services/{sid}/app-auth-apis/{api}/app-auth-api"),
                Some(json!({"apps": [{"app_id": app_id}]})),
            )
            .await;
        assert_eq!(reply["auth_result"][0]["success"], true, "{reply}");
    }
}

pub async fn issue_token(
    client: &reqwest::Client,
    admin: &str,
    user: &str,
    password: &str,
) -> String {
    let reply = client
        .post(format!("{admin}/v3/auth/tokens"))
        .json(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "password": password, "domain": {"name": "default"}}}},
            "scope": {"project": {"name": "default"}}}}),
        )
        .send()
        .await
        .expect("token request");
    assert_eq!(reply.status().as_u16(), 201);
    reply.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

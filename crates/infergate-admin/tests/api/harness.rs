//! A management plane over a fresh temporary store, driven in process with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use infergate_admin::bootstrap::{default_project_id, ensure_bootstrap};
use infergate_admin::{app, AdminSettings, AdminState};
use infergate_core::{MasterKey, Secret};
use infergate_store::{PgStore, SqliteStore, Store};

/// A PostgreSQL store in a fresh schema of `INFERGATE_TEST_DATABASE_URL` (the schemas are
/// named `api_test_*`; `scripts/test.sh` drops them after the run).
async fn open_postgres() -> PgStore {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = std::env::var("INFERGATE_TEST_DATABASE_URL").expect("INFERGATE_TEST_DATABASE_URL");
    let schema = format!(
        "api_test_{}_{}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("schema");
    pool.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    PgStore::connect(&format!("{url}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .expect("open")
}
use serde_json::{json, Value};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "admin-pass-1";
pub const PUBLIC_URL: &str = "https://infer.example.test";

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or("")
    }

    /// Asserts a ModelArts error: status and `error_code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "body: {}",
            self.body
        );
        assert!(self.body["error_msg"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert!(self.status.is_success(), "{} {}", self.status, self.body);
        &self.body
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: Arc<AdminState>,
    pub project_id: String,
    pub admin_token: String,
    _dir: tempfile::TempDir,
    pg: Option<PgStore>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_settings(AdminSettings::new(PUBLIC_URL, "http://127.0.0.1:8081")).await
    }

    pub async fn with_settings(settings: AdminSettings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, pg): (Arc<dyn Store>, Option<PgStore>) =
            match std::env::var("INFERGATE_TEST_BACKEND").as_deref() {
                Ok("postgres") => {
                    let pg = open_postgres().await;
                    (Arc::new(pg.clone()), Some(pg))
                }
                _ => (
                    Arc::new(
                        SqliteStore::open(&dir.path().join("t.db"))
                            .await
                            .expect("open"),
                    ),
                    None,
                ),
            };
        ensure_bootstrap(store.as_ref(), &Secret::new(ADMIN_PASSWORD))
            .await
            .expect("bootstrap");
        let project_id = default_project_id(store.as_ref())
            .await
            .expect("q")
            .expect("project");
        let state = Arc::new(AdminState::new(store, MasterKey::generate(), settings));
        let mut test = Self {
            router: app(state.clone()),
            state,
            project_id,
            admin_token: String::new(),
            _dir: dir,
            pg,
        };
        test.admin_token = test.token("admin", ADMIN_PASSWORD, "default").await;
        test
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A request with an optional token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header("X-Auth-Token", token);
        }
        let body = match body {
            Some(v) => {
                req = req.header("Content-Type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).expect("request")).await
    }

    pub async fn raw(&self, method: Method, path: &str, token: &str, body: &str) -> Reply {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("X-Auth-Token", token)
            .body(Body::from(body.to_owned()))
            .expect("request");
        self.send(req).await
    }

    pub async fn issue(&self, name: &str, password: &str, scope: Value) -> Reply {
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": name, "password": password, "domain": {"name": "default"}}}}});
        if !scope.is_null() {
            auth["scope"] = scope;
        }
        self.call(
            Method::POST,
            "/v3/auth/tokens",
            None,
            Some(json!({"auth": auth})),
        )
        .await
    }

    /// A project-scoped token.
    pub async fn token(&self, name: &str, password: &str, project: &str) -> String {
        let reply = self
            .issue(name, password, json!({"project": {"name": project}}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.headers["x-subject-token"]
            .to_str()
            .expect("ascii")
            .to_owned()
    }

    pub async fn create_user(&self, name: &str) -> String {
        let reply = self
            .call(
                Method::POST,
                "/v3/users",
                Some(&self.admin_token),
                Some(json!({"user": {"name": name, "password": format!("{name}-password")}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["user"]["id"].as_str().expect("id").to_owned()
    }

    pub async fn create_project(&self, name: &str) -> String {
        let reply = self
            .call(
                Method::POST,
                "/v3/projects",
                Some(&self.admin_token),
                Some(json!({"project": {"name": name}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["project"]["id"].as_str().expect("id").to_owned()
    }

    pub async fn grant(&self, project_id: &str, user_id: &str, role: &str) {
        let reply = self
            .call(
                Method::PUT,
                &format!("/v3/projects/{project_id}/users/{user_id}/roles/{role}"),
                Some(&self.admin_token),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }

    /// A user with `role` in the default project, and a token scoped to it.
    pub async fn user_with_role(&self, name: &str, role: &str) -> (String, String) {
        let id = self.create_user(name).await;
        self.grant(&self.project_id, &id, role).await;
        let token = self
            .token(name, &format!("{name}-password"), "default")
            .await;
        (id, token)
    }

    pub fn v1(&self, rest: &str) -> String {
        format!("/v1/{}{rest}", self.project_id)
    }

    pub async fn create_service(&self, token: &str, name: &str) -> Reply {
        self.call(
            Method::POST,
            &self.v1("/services"),
            Some(token),
            Some(json!({"service_name": name, "upstreams": ["http://127.0.0.1:9/v1"]})),
        )
        .await
    }

    /// Creates a service and returns its id.
    pub async fn service(&self, token: &str, name: &str) -> String {
        let reply = self.create_service(token, name).await;
        reply.assert_ok()["service_id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Everything the store holds of apps and AppCodes, as bytes: the SQLite files, or on
    /// PostgreSQL the rows as text.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        if let Some(pg) = &self.pg {
            let mut out = Vec::new();
            for table in ["apps", "app_codes"] {
                let sql =
                    format!("SELECT COALESCE(string_agg(t::text, ' '), '') AS rows FROM {table} t");
                let row = sqlx::query(&sql).fetch_one(pg.pool()).await.expect("dump");
                let text: String = sqlx::Row::try_get(&row, "rows").expect("rows");
                out.extend(text.into_bytes());
            }
            return out;
        }
        let mut out = Vec::new();
        for file in ["t.db", "t.db-wal"] {
            if let Ok(content) = std::fs::read(self._dir.path().join(file)) {
                out.extend(content);
            }
        }
        out
    }

    pub async fn create_app(&self, token: &str, name: &str) -> Reply {
        self.call(
            Method::POST,
            &self.v1("/app-auth/apps"),
            Some(token),
            Some(json!({"app_name": name, "app_remark": "test app"})),
        )
        .await
    }

    /// Creates an app and returns its `app` object.
    pub async fn app(&self, token: &str, name: &str) -> Value {
        self.create_app(token, name).await.assert_ok()["app"].clone()
    }

    /// Creates an APP API on a service and returns its id.
    pub async fn app_api(&self, token: &str, service_id: &str) -> String {
        let reply = self
            .create_api(token, service_id, json!({"auth_type": "APP"}))
            .await;
        reply.assert_ok()["api"]["api_id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    pub fn auth_path(&self, service_id: &str, api_id: &str) -> String {
        self.v1(&format!(
            "/services/{service_id}/app-auth-apis/{api_id}/app-auth-api"
        ))
    }

    /// Sends a batch of app ids to an authorization path.
    pub async fn batch(&self, method: Method, path: &str, token: &str, app_ids: &[&str]) -> Reply {
        let apps: Vec<Value> = app_ids.iter().map(|id| json!({"app_id": id})).collect();
        self.call(method, path, Some(token), Some(json!({"apps": apps})))
            .await
    }

    pub async fn create_api(&self, token: &str, service_id: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &self.v1(&format!("/app-auth/{service_id}/apis")),
            Some(token),
            Some(body),
        )
        .await
    }
}

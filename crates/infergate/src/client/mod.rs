//! The command-line client of the management API and the gateway: a saved login, one
//! request function whose failures map to exit codes, and name-to-id lookups.

pub mod call;
pub mod commands;
pub mod complete;
pub mod output;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::{Global, Output};

/// Why a client command failed, and its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Exit 1: the server answered with an error.
    Refused {
        status: u16,
        code: String,
        message: String,
        request_id: String,
    },
    /// Exit 2: the command line is incomplete or wrong.
    Usage(String),
    /// Exit 3: the server could not be reached.
    Connect(String),
    /// Exit 1: anything else (a local file, an unexpected answer).
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { .. } | CliError::Other(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Connect(_) => 3,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Refused {
                status,
                code,
                message,
                request_id,
            } => {
                write!(f, "error: {code} ({status}): {message}")?;
                if !request_id.is_empty() {
                    write!(f, " [request {request_id}]")?;
                }
                Ok(())
            }
            CliError::Usage(m) => write!(f, "usage error: {m}"),
            CliError::Connect(m) => write!(f, "cannot connect: {m}"),
            CliError::Other(m) => write!(f, "error: {m}"),
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// What `infergate login` saves.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub url: String,
    pub gateway: Option<String>,
    pub project_id: String,
    pub token: String,
    pub user: String,
    pub expires_at: String,
}

impl Profile {
    /// `$INFERGATE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/infergate`, else `~/.config/infergate`.
    pub fn path() -> PathBuf {
        let dir = std::env::var_os("INFERGATE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("infergate"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/infergate"))
            })
            .unwrap_or_else(|| PathBuf::from(".infergate"));
        dir.join("credentials.json")
    }

    pub fn load() -> Option<Self> {
        let text = std::fs::read_to_string(Self::path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the profile readable by the owner only.
    pub fn save(&self) -> CliResult<PathBuf> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Other(format!("creating {}: {e}", dir.display())))?;
        }
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CliError::Other(format!("writing {}: {e}", path.display())))?;
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        file.write_all(text.as_bytes())
            .map_err(|e| CliError::Other(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// A client bound to one management API, project and token.
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub project: String,
    pub token: String,
    pub output: Output,
    /// `--field`: print only the values of this name.
    pub field: Option<String>,
}

fn connect_error(url: &str, err: reqwest::Error) -> CliError {
    if err.is_connect() || err.is_timeout() {
        CliError::Connect(format!("{url}: {err}"))
    } else {
        CliError::Other(format!("{url}: {err}"))
    }
}

/// Turns an error response into [`CliError::Refused`], whichever surface answered.
pub fn refused(status: u16, body: &Value, request_id: &str) -> CliError {
    let (code, message) = if let Some(code) = body["error_code"].as_str() {
        (
            code.to_owned(),
            body["error_msg"].as_str().unwrap_or("").to_owned(),
        )
    } else if body["error"].is_object() {
        (
            body["error"]["title"]
                .as_str()
                .unwrap_or("Error")
                .to_owned(),
            body["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    } else {
        (
            "HTTP".to_owned(),
            body.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string()),
        )
    };
    let request_id = body["request_id"].as_str().unwrap_or(request_id).to_owned();
    CliError::Refused {
        status,
        code,
        message,
        request_id,
    }
}

impl Client {
    /// Flags and environment over the saved profile.
    pub fn from_global(global: &Global) -> CliResult<Self> {
        let saved = Profile::load().unwrap_or_default();
        let pick =
            |flag: &Option<String>, saved: &str| flag.clone().unwrap_or_else(|| saved.to_owned());
        let url = pick(&global.url, &saved.url);
        let token = pick(&global.token, &saved.token);
        let project = pick(&global.project, &saved.project_id);
        if url.is_empty() || token.is_empty() {
            return Err(CliError::Usage(
                "not logged in: run `infergate login --url URL --user NAME` or pass --url and --token".into(),
            ));
        }
        Ok(Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            project,
            token,
            output: global.output,
            field: global.field.clone(),
        })
    }

    /// `/v1/{project}{rest}`.
    pub fn v1(&self, rest: &str) -> String {
        format!("/v1/{}{rest}", self.project)
    }

    /// Sends a management request; non-2xx answers become [`CliError::Refused`].
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> CliResult<Value> {
        if (path.starts_with("/v1/") || path.starts_with("/v2/")) && self.project.is_empty() {
            return Err(CliError::Usage(
                "no project: pass --project or log in again".into(),
            ));
        }
        let url = format!("{}{path}", self.url);
        let mut request = self
            .http
            .request(method, &url)
            .header("X-Auth-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| connect_error(&self.url, e))?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response
            .text()
            .await
            .map_err(|e| connect_error(&self.url, e))?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        if status.as_u16() == 401 && body["error_code"] == "ModelArts.0202" {
            return Err(CliError::Refused {
                status: 401,
                code: "ModelArts.0202".into(),
                message: "the saved token expired; run `infergate login` again".into(),
                request_id,
            });
        }
        Err(refused(status.as_u16(), &body, &request_id))
    }

    /// The item of a list answer whose id or name field equals `name_or_id`.
    async fn find(
        &self,
        path: &str,
        list: &str,
        id: &str,
        name: &str,
        name_or_id: &str,
    ) -> CliResult<Value> {
        let answer = self.send(Method::GET, path, None).await?;
        answer[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|item| item[id] == name_or_id || item[name] == name_or_id)
            .cloned()
            .ok_or_else(|| {
                CliError::Usage(format!("no {list} entry named or with id {name_or_id:?}"))
            })
    }

    /// `/v2/{project}/apigw/instances/default{rest}`: the throttling API.
    pub fn apigw(&self, rest: &str) -> String {
        format!("/v2/{}/apigw/instances/default{rest}", self.project)
    }

    /// A throttling policy id from a name or id.
    pub async fn throttle_id(&self, name_or_id: &str) -> CliResult<String> {
        let found = self
            .find(
                &self.apigw("/throttles"),
                "throttles",
                "id",
                "name",
                name_or_id,
            )
            .await?;
        Ok(found["id"].as_str().unwrap_or_default().to_owned())
    }

    /// A service id from a name or id.
    pub async fn service_id(&self, name_or_id: &str) -> CliResult<String> {
        let found = self
            .find(
                &self.v1("/services"),
                "services",
                "service_id",
                "service_name",
                name_or_id,
            )
            .await?;
        Ok(found["service_id"].as_str().unwrap_or_default().to_owned())
    }

    /// An app object (of the caller's apps) from a name or id.
    pub async fn app(&self, name_or_id: &str) -> CliResult<Value> {
        self.find(
            &self.v1("/app-auth/apps"),
            "apps",
            "app_id",
            "app_name",
            name_or_id,
        )
        .await
    }

    pub async fn app_id(&self, name_or_id: &str) -> CliResult<String> {
        let app = self.app(name_or_id).await?;
        Ok(app["app_id"].as_str().unwrap_or_default().to_owned())
    }

    /// The id of a service's APP API (the one authorizations refer to).
    pub async fn app_api_id(&self, service_id: &str) -> CliResult<String> {
        let info = self
            .send(
                Method::GET,
                &self.v1(&format!("/services/{service_id}/api-auths")),
                None,
            )
            .await?;
        info["app_auth_api"]["api_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                CliError::Usage(
                    "the service has no APP API; create one with `infergate api create`".into(),
                )
            })
    }

    /// The id of the user the token belongs to.
    pub async fn my_user_id(&self) -> CliResult<String> {
        let url = format!("{}/v3/auth/tokens", self.url);
        let response = self
            .http
            .get(&url)
            .header("X-Auth-Token", &self.token)
            .header("X-Subject-Token", &self.token)
            .send()
            .await
            .map_err(|e| connect_error(&self.url, e))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(refused(status, &body, ""));
        }
        body["token"]["user"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::Other("the token answer names no user".into()))
    }

    pub async fn user_id(&self, name_or_id: &str) -> CliResult<String> {
        let found = self
            .find("/v3/users", "users", "id", "name", name_or_id)
            .await?;
        Ok(found["id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn project_id(&self, name_or_id: &str) -> CliResult<String> {
        let found = self
            .find("/v3/projects", "projects", "id", "name", name_or_id)
            .await?;
        Ok(found["id"].as_str().unwrap_or_default().to_owned())
    }
}

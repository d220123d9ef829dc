//! The resources of infergate as the domain sees them (not as rows, not as DTOs).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IAM domain (account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub id: String,
    pub name: String,
}

/// An IAM project; every management resource lives in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// An IAM user. `password_changed_at` kills tokens issued before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub domain_id: String,
    pub name: String,
    pub description: String,
    pub password_hash: String,
    pub password_changed_at: i64,
    /// Administers the domain's users, projects and role grants (the bootstrap user).
    pub domain_admin: bool,
    pub enabled: bool,
    pub created_at: i64,
}

/// A permanent AK/SK pair; the secret is stored encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access: String,
    pub user_id: String,
    pub secret_sealed: String,
    pub description: String,
    pub status: String,
    pub created_at: i64,
    /// Until when failed signatures lock the key (ms since the epoch); 0 when never.
    /// Kept by the store beside the key, read with it.
    pub locked_until: i64,
}

/// A token revoked before its expiry, kept until then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// The token's id (its nonce).
    pub token_id: String,
    pub user_id: String,
    pub expires_at: i64,
}

/// The roles a user may hold in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Member, Role::Viewer];

    /// The role's name, which is also its id in the IAM API.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Role::ALL.into_iter().find(|r| r.name() == s).ok_or(())
    }
}

/// One inference backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub upstreams: Vec<String>,
    /// The weight of each upstream (by index) in balancing; empty: all equal.
    pub upstream_weights: Vec<u32>,
    pub timeout_ms: u64,
    /// Whether model calls' answers are read for token usage (and streamed requests asked
    /// for it); off leaves bodies untouched.
    pub usage_accounting: bool,
    pub load_balancing: LoadBalancing,
    /// PEM certificates `https://` upstreams are verified against instead of the system's
    /// roots.
    pub tls_ca_pem: Option<String>,
    /// Probes of each upstream that take it out of rotation while it fails them.
    pub health_check: Option<HealthCheck>,
    /// When a call goes on to another upstream; none: on a refused connection, through
    /// every upstream.
    pub retry: Option<Retry>,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An active health check of a service's upstreams: `GET {base path}{path}` every
/// `interval_ms`; an upstream is taken out of rotation after `unhealthy_threshold` probes
/// in a row fail (no answer within `timeout_ms`, or a status not in `expected_statuses`),
/// and back after `healthy_threshold` in a row pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub expected_statuses: Vec<u16>,
}

/// When a call goes on to another upstream: at most `attempts` in all, after a refused
/// connection (`connect`), an answer of 500–599 (`5xx`) or 429 (`429`), as `on` lists. A
/// call is tried again only before any byte of its answer went to the client, with its
/// body in hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub on: Vec<String>,
}

impl Retry {
    /// Whether a refused connection moves the call on.
    pub fn on_connect(&self) -> bool {
        self.on.iter().any(|o| o == "connect")
    }

    /// Whether an answer of `status` moves the call on.
    pub fn on_status(&self, status: u16) -> bool {
        self.on.iter().any(|o| match o.as_str() {
            "5xx" => (500..=599).contains(&status),
            "429" => status == 429,
            _ => false,
        })
    }

    /// Whether any answer can move the call on (its body is then kept for another try).
    pub fn on_answers(&self) -> bool {
        self.on.iter().any(|o| o == "5xx" || o == "429")
    }
}

/// How a service's calls are spread over its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancing {
    /// In turn.
    RoundRobin,
    /// To the upstream with the fewest calls in flight from this node (ties broken at
    /// random): a replica busy with long answers gets the next call last.
    #[default]
    LeastOutstanding,
}

impl LoadBalancing {
    pub const ALL: [LoadBalancing; 2] =
        [LoadBalancing::RoundRobin, LoadBalancing::LeastOutstanding];

    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancing::RoundRobin => "round_robin",
            LoadBalancing::LeastOutstanding => "least_outstanding",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == text)
    }
}

/// How callers of an API authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuthType {
    None,
    App,
    Iam,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "NONE",
            AuthType::App => "APP",
            AuthType::Iam => "IAM",
        }
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthType {
    type Err = ();
    /// Case-insensitive, trimmed; `APIG` is an alias of `APP` (spec §7 #1).
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_uppercase().as_str() {
            "NONE" => Ok(AuthType::None),
            "APP" | "APIG" => Ok(AuthType::App),
            "IAM" => Ok(AuthType::Iam),
            _ => Err(()),
        }
    }
}

/// The HTTP method an API answers; `Any` matches every method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiMethod {
    Get,
    Post,
    Put,
    Delete,
    Head,
    Patch,
    Options,
    Any,
}

impl ApiMethod {
    pub const ALL: [ApiMethod; 8] = [
        ApiMethod::Get,
        ApiMethod::Post,
        ApiMethod::Put,
        ApiMethod::Delete,
        ApiMethod::Head,
        ApiMethod::Patch,
        ApiMethod::Options,
        ApiMethod::Any,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiMethod::Get => "GET",
            ApiMethod::Post => "POST",
            ApiMethod::Put => "PUT",
            ApiMethod::Delete => "DELETE",
            ApiMethod::Head => "HEAD",
            ApiMethod::Patch => "PATCH",
            ApiMethod::Options => "OPTIONS",
            ApiMethod::Any => "ANY",
        }
    }

    /// Whether a request with `method` matches an API of this method.
    pub fn matches(self, method: &str) -> bool {
        self == ApiMethod::Any || self.as_str().eq_ignore_ascii_case(method)
    }
}

impl FromStr for ApiMethod {
    type Err = ();
    /// Case-insensitive and trimmed (the definition lists `" POST"`, spec §7 #2).
    fn from_str(s: &str) -> Result<Self, ()> {
        let wanted = s.trim();
        ApiMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(wanted))
            .ok_or(())
    }
}

/// An API exposing a service under `api_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub id: String,
    pub service_id: String,
    pub project_id: String,
    pub name: String,
    pub auth_type: AuthType,
    pub support_app_code: bool,
    pub api_path: String,
    /// Stored as given; the management API always returns `ANY` (spec §7 #1, #22).
    pub api_method: ApiMethod,
    pub remark: String,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One AppCode of an app: sealed for recovery, indexed by a keyed hash for lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCode {
    pub sealed: String,
    pub index: String,
    pub created_at: i64,
}

/// A client credential: AppKey/AppSecret and up to a quota of AppCodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub remark: String,
    pub app_key: String,
    pub secret_sealed: String,
    /// Always `APIG` for apps created here (spec §3).
    pub app_type: String,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// In the order they were added; a reset keeps the position.
    pub codes: Vec<AppCode>,
    /// Number of APIs the app is authorized for; derived from the authorizations.
    pub bounded_api_count: i64,
}

/// Permission for an app's credentials to call an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub auth_id: String,
    pub api_id: String,
    pub app_id: String,
    pub created_at: i64,
}

/// Sums of calls to APIs: all of them by how they were answered, and of the model calls
/// among them the tokens by kind and how many were estimated (their tokens are in the sums
/// too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    /// Every call to the API, whatever its answer.
    #[serde(default)]
    pub requests: i64,
    /// Calls answered 4xx (the 429s among them).
    #[serde(default)]
    pub client_errors: i64,
    /// Calls answered 5xx.
    #[serde(default)]
    pub server_errors: i64,
    /// Calls refused 429 by a limit or answered 429 by the upstream.
    #[serde(default)]
    pub throttled: i64,
    /// Model calls whose tokens are counted.
    pub calls: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Part of the completion tokens, where the model server reports it.
    pub reasoning_tokens: i64,
    /// Part of the prompt tokens, where the model server reports it.
    pub cached_tokens: i64,
    pub estimated_calls: i64,
}

impl UsageCounts {
    /// One call answered `status`.
    pub fn answered(status: u16) -> UsageCounts {
        UsageCounts {
            requests: 1,
            client_errors: i64::from((400..500).contains(&status)),
            server_errors: i64::from(status >= 500),
            throttled: i64::from(status == 429),
            ..UsageCounts::default()
        }
    }

    /// Every count with its name (the store's column), in one order: the one list of them.
    pub fn named_mut(&mut self) -> [(&'static str, &mut i64); 11] {
        [
            ("requests", &mut self.requests),
            ("client_errors", &mut self.client_errors),
            ("server_errors", &mut self.server_errors),
            ("throttled", &mut self.throttled),
            ("calls", &mut self.calls),
            ("prompt_tokens", &mut self.prompt_tokens),
            ("completion_tokens", &mut self.completion_tokens),
            ("total_tokens", &mut self.total_tokens),
            ("reasoning_tokens", &mut self.reasoning_tokens),
            ("cached_tokens", &mut self.cached_tokens),
            ("estimated_calls", &mut self.estimated_calls),
        ]
    }

    /// Every count with its name, as [`Self::named_mut`] lists them.
    pub fn named(&self) -> [(&'static str, i64); 11] {
        let mut copy = *self;
        copy.named_mut().map(|(name, value)| (name, *value))
    }

    /// Adds `other`, saturating.
    pub fn merge(&mut self, other: &UsageCounts) {
        for ((_, sum), (_, add)) in self.named_mut().into_iter().zip(other.named()) {
            *sum = sum.saturating_add(add);
        }
    }
}

/// Calls' usage in one minute, of one app (empty for other callers) on one API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    pub project_id: String,
    pub app_id: String,
    pub api_id: String,
    /// Minutes since the epoch.
    pub minute: i64,
    pub counts: UsageCounts,
}

/// Which usage rows to read: a project's, optionally of one app and one API, from `from`
/// up to (not including) `to`, in minutes since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    pub project_id: String,
    pub app_id: Option<String>,
    pub api_id: Option<String>,
    pub from: i64,
    pub to: i64,
}

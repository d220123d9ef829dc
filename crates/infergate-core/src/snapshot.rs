//! The immutable configuration the gateway serves from: routes, app credentials,
//! authorizations and IAM credentials, with secrets already unsealed.
//!
//! Built from a [`ConfigDump`] (everything the store holds, read in one transaction) and
//! swapped whole; the gateway never reads the store on a request.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{MasterKey, Secret};
use crate::model::{Api, ApiMethod, App, AuthType, Authorization, Credential, Role, Service, User};
use crate::token::TokenCodec;

/// A role grant: (project id, user id, role).
pub type Grant = (String, String, Role);

/// Everything a snapshot is built from, read consistently at one revision.
#[derive(Debug, Clone, Default)]
pub struct ConfigDump {
    pub revision: i64,
    pub services: Vec<Service>,
    pub apis: Vec<Api>,
    pub apps: Vec<App>,
    pub authorizations: Vec<Authorization>,
    pub users: Vec<User>,
    pub credentials: Vec<Credential>,
    pub grants: Vec<Grant>,
}

/// The objects that changed between two revisions, as they are now (`None`: deleted).
/// Each list replaces what the dump held for those ids.
#[derive(Debug, Clone, Default)]
pub struct ConfigDelta {
    pub revision: i64,
    pub services: Vec<(String, Option<Service>)>,
    /// The current APIs of each changed service.
    pub apis_of_services: Vec<(String, Vec<Api>)>,
    pub apis: Vec<(String, Option<Api>)>,
    /// The current authorizations of each changed API (and of each changed service's APIs).
    pub authorizations_of_apis: Vec<(String, Vec<Authorization>)>,
    pub apps: Vec<(String, Option<App>)>,
    pub users: Vec<(String, Option<User>)>,
    pub credentials_of_users: Vec<(String, Vec<Credential>)>,
    pub grants_of_users: Vec<(String, Vec<Grant>)>,
}

/// Drops the items whose `key` is `id` and adds what stands there now.
fn replace<T>(
    items: &mut Vec<T>,
    id: &str,
    key: impl Fn(&T) -> &str,
    now: impl IntoIterator<Item = T>,
) {
    items.retain(|item| key(item) != id);
    items.extend(now);
}

impl ConfigDump {
    /// Applies the changes of later revisions, leaving the dump as a full read at
    /// `delta.revision` would have returned it (up to order).
    pub fn apply(&mut self, delta: ConfigDelta) {
        for (id, now) in delta.services {
            replace(&mut self.services, &id, |s| &s.id, now);
        }
        for (id, now) in delta.apis_of_services {
            replace(&mut self.apis, &id, |a| &a.service_id, now);
        }
        for (id, now) in delta.apis {
            replace(&mut self.apis, &id, |a| &a.id, now);
        }
        for (id, now) in delta.authorizations_of_apis {
            replace(&mut self.authorizations, &id, |a| &a.api_id, now);
        }
        for (id, now) in delta.apps {
            replace(&mut self.apps, &id, |a| &a.id, now);
        }
        for (id, now) in delta.users {
            replace(&mut self.users, &id, |u| &u.id, now);
        }
        for (id, now) in delta.credentials_of_users {
            replace(&mut self.credentials, &id, |c| &c.user_id, now);
        }
        for (id, now) in delta.grants_of_users {
            replace(&mut self.grants, &id, |g| &g.1, now);
        }
        self.revision = delta.revision;
    }
}

/// One upstream base URL of a service, split for request building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: String,
    /// `host[:port]`
    pub authority: String,
    /// Base path without a trailing `/` (empty for none).
    pub base_path: String,
}

impl Upstream {
    /// Splits a validated base URL (`http://host:port/base`).
    pub fn parse(base: &str) -> Option<Self> {
        let (scheme, rest) = base.split_once("://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return None;
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_owned(),
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// A service as the gateway needs it.
#[derive(Debug)]
pub struct ServiceRoute {
    pub id: String,
    pub project_id: String,
    pub upstreams: Vec<Upstream>,
    pub timeout: Duration,
    next: AtomicUsize,
}

impl ServiceRoute {
    /// Upstream indexes in round-robin order starting at the next one.
    pub fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let len = self.upstreams.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % len;
        (0..self.upstreams.len()).map(move |i| (start + i) % len)
    }
}

/// An API as the gateway routes it.
#[derive(Debug)]
pub struct ApiRoute {
    pub api_id: String,
    pub api_path: String,
    pub auth_type: AuthType,
    pub support_app_code: bool,
    pub method: ApiMethod,
    pub service: Arc<ServiceRoute>,
    authorized_apps: HashSet<String>,
}

impl ApiRoute {
    pub fn authorizes(&self, app_id: &str) -> bool {
        self.authorized_apps.contains(app_id)
    }
}

/// An app's credential material.
#[derive(Debug)]
pub struct AppCredential {
    pub app_id: String,
    pub app_key: String,
    pub secret: Secret,
}

/// An IAM AK/SK pair.
#[derive(Debug)]
pub struct IamKey {
    pub user_id: String,
    pub secret: Secret,
}

/// What the gateway knows of an IAM user.
#[derive(Debug)]
pub struct IamUser {
    pub enabled: bool,
    pub password_changed_at: i64,
    /// Projects where the user holds any role.
    pub projects: HashSet<String>,
}

/// The gateway's view of the configuration at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    /// When the publisher made this snapshot current (epoch ms; 0 for an empty one).
    pub published_at_ms: i64,
    routes: HashMap<String, Vec<Arc<ApiRoute>>>,
    apps_by_key: HashMap<String, Arc<AppCredential>>,
    apps_by_code: HashMap<String, Arc<AppCredential>>,
    iam_keys: HashMap<String, IamKey>,
    users: HashMap<String, IamUser>,
    tokens: Option<TokenCodec>,
    api_count: usize,
}

impl Snapshot {
    /// An empty snapshot: every call is answered "no API".
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds the snapshot; secrets that cannot be unsealed are left out and reported.
    pub fn build(dump: ConfigDump, master: &MasterKey) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let services: HashMap<String, Arc<ServiceRoute>> = dump
            .services
            .into_iter()
            .map(|s| {
                let upstreams = s
                    .upstreams
                    .iter()
                    .filter_map(|u| {
                        let parsed = Upstream::parse(u);
                        if parsed.is_none() {
                            problems.push(format!("service {}: bad upstream {u:?}", s.id));
                        }
                        parsed
                    })
                    .collect();
                let route = ServiceRoute {
                    id: s.id.clone(),
                    project_id: s.project_id,
                    upstreams,
                    timeout: Duration::from_millis(s.timeout_ms),
                    next: AtomicUsize::new(0),
                };
                (s.id, Arc::new(route))
            })
            .collect();
        let mut authorized: HashMap<String, HashSet<String>> = HashMap::new();
        for grant in dump.authorizations {
            authorized
                .entry(grant.api_id)
                .or_default()
                .insert(grant.app_id);
        }
        let mut routes: HashMap<String, Vec<Arc<ApiRoute>>> = HashMap::new();
        let mut api_count = 0;
        for api in dump.apis {
            let Some(service) = services.get(&api.service_id) else {
                problems.push(format!(
                    "api {}: service {} missing",
                    api.id, api.service_id
                ));
                continue;
            };
            let route = ApiRoute {
                authorized_apps: authorized.remove(&api.id).unwrap_or_default(),
                api_id: api.id,
                api_path: api.api_path.clone(),
                auth_type: api.auth_type,
                support_app_code: api.support_app_code,
                method: api.api_method,
                service: service.clone(),
            };
            routes
                .entry(api.api_path)
                .or_default()
                .push(Arc::new(route));
            api_count += 1;
        }
        let mut apps_by_key = HashMap::with_capacity(dump.apps.len());
        let mut apps_by_code = HashMap::new();
        for app in dump.apps {
            let secret = match master.decrypt(&app.secret_sealed) {
                Ok(secret) => secret,
                Err(e) => {
                    problems.push(format!("app {}: secret: {e}", app.id));
                    continue;
                }
            };
            let credential = Arc::new(AppCredential {
                app_id: app.id.clone(),
                app_key: app.app_key.clone(),
                secret,
            });
            for code in &app.codes {
                match master.decrypt(&code.sealed) {
                    Ok(value) => {
                        apps_by_code.insert(value.expose().to_owned(), credential.clone());
                    }
                    Err(e) => problems.push(format!("app {}: AppCode: {e}", app.id)),
                }
            }
            apps_by_key.insert(app.app_key, credential);
        }
        let mut users: HashMap<String, IamUser> = dump
            .users
            .into_iter()
            .map(|u| {
                (
                    u.id,
                    IamUser {
                        enabled: u.enabled,
                        password_changed_at: u.password_changed_at,
                        projects: HashSet::new(),
                    },
                )
            })
            .collect();
        for (project, user, _) in dump.grants {
            if let Some(u) = users.get_mut(&user) {
                u.projects.insert(project);
            }
        }
        let mut iam_keys = HashMap::new();
        for credential in dump
            .credentials
            .into_iter()
            .filter(|c| c.status == "active")
        {
            match master.decrypt(&credential.secret_sealed) {
                Ok(secret) => {
                    iam_keys.insert(
                        credential.access,
                        IamKey {
                            user_id: credential.user_id,
                            secret,
                        },
                    );
                }
                Err(e) => problems.push(format!("credential {}: {e}", credential.access)),
            }
        }
        let snapshot = Self {
            revision: dump.revision,
            published_at_ms: 0,
            routes,
            apps_by_key,
            apps_by_code,
            iam_keys,
            users,
            tokens: Some(TokenCodec::new(master)),
            api_count,
        };
        (snapshot, problems)
    }

    /// The APIs registered on the longest `api_path` that prefixes `path` at a `/`
    /// boundary, with that prefix.
    pub fn route(&self, path: &str) -> Option<&[Arc<ApiRoute>]> {
        let mut candidate = path;
        loop {
            if let Some(apis) = self.routes.get(candidate) {
                return Some(apis);
            }
            match candidate.rfind('/') {
                Some(0) | None => return None,
                Some(i) => candidate = &candidate[..i],
            }
        }
    }

    pub fn app_by_key(&self, app_key: &str) -> Option<&Arc<AppCredential>> {
        self.apps_by_key.get(app_key)
    }

    pub fn app_by_code(&self, code: &str) -> Option<&Arc<AppCredential>> {
        self.apps_by_code.get(code)
    }

    pub fn iam_key(&self, access: &str) -> Option<&IamKey> {
        self.iam_keys.get(access)
    }

    pub fn user(&self, user_id: &str) -> Option<&IamUser> {
        self.users.get(user_id)
    }

    pub fn tokens(&self) -> Option<&TokenCodec> {
        self.tokens.as_ref()
    }

    pub fn api_count(&self) -> usize {
        self.api_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppCode;

    fn service(id: &str) -> Service {
        Service {
            id: id.into(),
            project_id: "p".into(),
            name: id.into(),
            description: String::new(),
            upstreams: vec!["http://127.0.0.1:9000/base".into(), "http://h2".into()],
            timeout_ms: 1000,
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn api(id: &str, path: &str, auth_type: AuthType) -> Api {
        Api {
            id: id.into(),
            service_id: "s".into(),
            project_id: "p".into(),
            name: id.into(),
            auth_type,
            support_app_code: true,
            api_path: path.into(),
            api_method: ApiMethod::Any,
            remark: String::new(),
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn longest_prefix_at_slash_boundaries() {
        let master = MasterKey::generate();
        let dump = ConfigDump {
            services: vec![service("s")],
            apis: vec![
                api("a", "/v1/infers/x", AuthType::App),
                api("b", "/v1/infers/x", AuthType::Iam),
                api("c", "/v1/infers/x/special", AuthType::None),
            ],
            ..ConfigDump::default()
        };
        let (snap, problems) = Snapshot::build(dump, &master);
        assert!(problems.is_empty());
        let ids = |path: &str| -> Vec<String> {
            snap.route(path)
                .map(|r| r.iter().map(|a| a.api_id.clone()).collect())
                .unwrap_or_default()
        };
        assert_eq!(ids("/v1/infers/x"), ["a", "b"]);
        assert_eq!(ids("/v1/infers/x/"), ["a", "b"]);
        assert_eq!(ids("/v1/infers/x/predictions/poetry"), ["a", "b"]);
        assert_eq!(ids("/v1/infers/x/special/y"), ["c"]);
        assert!(
            ids("/v1/infers/xy").is_empty(),
            "prefix must end at a / boundary"
        );
        assert!(ids("/v1/infers").is_empty());
        assert!(ids("/").is_empty());
    }

    #[test]
    fn credentials_are_unsealed_and_bad_ones_reported() {
        let master = MasterKey::generate();
        let code = "c".repeat(64);
        let app = App {
            id: "x".into(),
            project_id: "p".into(),
            name: "app".into(),
            remark: String::new(),
            app_key: "key".into(),
            secret_sealed: master.encrypt(&Secret::new("sec")),
            app_type: "APIG".into(),
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
            codes: vec![AppCode {
                sealed: master.encrypt(&Secret::new(code.clone())),
                index: "i".into(),
                created_at: 0,
            }],
            bounded_api_count: 0,
        };
        let broken = App {
            id: "y".into(),
            app_key: "key2".into(),
            secret_sealed: "v1:garbage".into(),
            ..app.clone()
        };
        let (snap, problems) = Snapshot::build(
            ConfigDump {
                apps: vec![app, broken],
                ..ConfigDump::default()
            },
            &master,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            snap.app_by_key("key").map(|a| a.secret.expose()),
            Some("sec")
        );
        assert_eq!(
            snap.app_by_code(&code).map(|a| a.app_id.as_str()),
            Some("x")
        );
        assert!(snap.app_by_key("key2").is_none());
    }

    #[test]
    fn round_robin_rotation() {
        let master = MasterKey::generate();
        let (snap, _) = Snapshot::build(
            ConfigDump {
                services: vec![service("s")],
                apis: vec![api("a", "/a", AuthType::None)],
                ..ConfigDump::default()
            },
            &master,
        );
        let route = &snap.route("/a").expect("route")[0];
        let first: Vec<usize> = route.service.rotation().collect();
        let second: Vec<usize> = route.service.rotation().collect();
        assert_eq!(first, [0, 1]);
        assert_eq!(second, [1, 0]);
        assert_eq!(route.service.upstreams[0].base_path, "/base");
        assert_eq!(route.service.upstreams[1].authority, "h2");
    }
}

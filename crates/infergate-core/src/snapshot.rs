//! The immutable configuration the gateway serves from: routes, app credentials,
//! authorizations and IAM credentials, with secrets already unsealed.
//!
//! Built from a [`ConfigDump`] (everything the store holds, read in one transaction) and
//! swapped whole; the gateway never reads the store on a request.

/// The snapshot's maps hash with foldhash: keys come from the configuration, and lookups
/// are on every call's path, where SipHash's cost shows.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{MasterKey, Secret};
use crate::model::{
    Api, ApiMethod, App, AuthType, Authorization, Credential, HealthCheck, LoadBalancing,
    RevokedToken, Role, Service, User,
};
use crate::throttle::{
    SpecialKind, Throttle, ThrottleBinding, ThrottleSpecial, ThrottleType, ThrottleUnit, TimeUnit,
};
use crate::token::TokenCodec;
use infergate_sign::SigningKey;

/// A role grant: (project id, user id, role).
pub type Grant = (String, String, Role);

/// Everything a snapshot is built from, read consistently at one revision.
#[derive(Debug, Clone, Default)]
pub struct ConfigDump {
    pub revision: i64,
    pub services: Vec<Service>,
    pub apis: Vec<Api>,
    pub apps: Vec<App>,
    pub authorizations: AuthorizationsByApi,
    pub users: Vec<User>,
    pub credentials: Vec<Credential>,
    pub grants: Vec<Grant>,
    /// Tokens revoked before their expiry.
    pub revoked_tokens: Vec<RevokedToken>,
    pub throttles: Vec<Throttle>,
    pub throttle_bindings: Vec<ThrottleBinding>,
    pub throttle_specials: Vec<ThrottleSpecial>,
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
    /// The revoked tokens of each changed user.
    pub revoked_tokens_of_users: Vec<(String, Vec<RevokedToken>)>,
    pub throttles: Vec<(String, Option<Throttle>)>,
    /// The current bindings of each changed policy.
    pub bindings_of_throttles: Vec<(String, Vec<ThrottleBinding>)>,
    /// The current special limits of each changed policy.
    pub specials_of_throttles: Vec<(String, Vec<ThrottleSpecial>)>,
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

/// The authorizations of a configuration, grouped by API, so that one API's grants are
/// replaced without scanning everyone else's.
#[derive(Clone, Default)]
pub struct AuthorizationsByApi(std::collections::HashMap<String, Vec<Authorization>>);

impl AuthorizationsByApi {
    /// The grants of one API.
    pub fn of(&self, api_id: &str) -> &[Authorization] {
        self.0.get(api_id).map_or(&[], Vec::as_slice)
    }

    /// Every grant, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Authorization> {
        self.0.values().flatten()
    }

    /// How many grants there are.
    pub fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(Vec::is_empty)
    }

    /// Replaces the grants of `api_id` by `now`.
    pub fn replace(&mut self, api_id: &str, now: Vec<Authorization>) {
        self.0.remove(api_id);
        self.extend(now);
    }
}

impl Extend<Authorization> for AuthorizationsByApi {
    fn extend<I: IntoIterator<Item = Authorization>>(&mut self, items: I) {
        for item in items {
            self.0.entry(item.api_id.clone()).or_default().push(item);
        }
    }
}

impl FromIterator<Authorization> for AuthorizationsByApi {
    fn from_iter<I: IntoIterator<Item = Authorization>>(items: I) -> Self {
        let mut grouped = Self::default();
        grouped.extend(items);
        // A full read is kept for long: no spare room in the lists.
        for list in grouped.0.values_mut() {
            list.shrink_to_fit();
        }
        grouped
    }
}

/// Sorted by `auth_id`, so that equal contents print the same.
impl std::fmt::Debug for AuthorizationsByApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut all: Vec<&Authorization> = self.iter().collect();
        all.sort_by(|a, b| a.auth_id.cmp(&b.auth_id));
        f.debug_list().entries(all).finish()
    }
}

impl ConfigDump {
    /// Applies the changes of later revisions, leaving the dump as a full read at
    /// `delta.revision` would have returned it (up to order).
    pub fn apply(&mut self, delta: &ConfigDelta) {
        for (id, now) in &delta.services {
            replace(&mut self.services, id, |s| &s.id, now.clone());
        }
        for (id, now) in &delta.apis_of_services {
            replace(&mut self.apis, id, |a| &a.service_id, now.clone());
        }
        for (id, now) in &delta.apis {
            replace(&mut self.apis, id, |a| &a.id, now.clone());
        }
        for (id, now) in &delta.authorizations_of_apis {
            self.authorizations.replace(id, now.clone());
        }
        for (id, now) in &delta.apps {
            replace(&mut self.apps, id, |a| &a.id, now.clone());
        }
        for (id, now) in &delta.users {
            replace(&mut self.users, id, |u| &u.id, now.clone());
        }
        for (id, now) in &delta.credentials_of_users {
            replace(&mut self.credentials, id, |c| &c.user_id, now.clone());
        }
        for (id, now) in &delta.grants_of_users {
            replace(&mut self.grants, id, |g| &g.1, now.clone());
        }
        for (id, now) in &delta.revoked_tokens_of_users {
            replace(&mut self.revoked_tokens, id, |t| &t.user_id, now.clone());
        }
        for (id, now) in &delta.throttles {
            replace(&mut self.throttles, id, |t| &t.id, now.clone());
        }
        for (id, now) in &delta.bindings_of_throttles {
            replace(
                &mut self.throttle_bindings,
                id,
                |b| &b.throttle_id,
                now.clone(),
            );
        }
        for (id, now) in &delta.specials_of_throttles {
            replace(
                &mut self.throttle_specials,
                id,
                |s| &s.throttle_id,
                now.clone(),
            );
        }
        self.revision = delta.revision;
    }
}

/// One upstream base URL of a service, split for request building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub scheme: String,
    /// `host[:port]`; shared, since every call through the upstream names it.
    pub authority: Arc<str>,
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
            authority: Arc::from(authority),
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// A service as the gateway needs it.
#[derive(Debug)]
pub struct ServiceRoute {
    pub id: String,
    pub project_id: Arc<str>,
    pub upstreams: Vec<Upstream>,
    pub timeout: Duration,
    /// Whether its model calls are read for token usage.
    pub usage_accounting: bool,
    pub load_balancing: LoadBalancing,
    /// Whether an upstream is `https://`.
    pub tls: bool,
    /// The PEM certificates its `https://` upstreams are verified against, if not the
    /// system's roots.
    pub tls_ca_pem: Option<Arc<str>>,
    /// The active health check of its upstreams.
    pub health_check: Option<HealthCheck>,
    /// When a call goes on to another upstream (none: on a refused connection, through
    /// every upstream).
    pub retry: Option<crate::model::Retry>,
    next: AtomicUsize,
    /// The weight of each upstream (by index); empty: all equal.
    weights: Box<[u32]>,
    /// One cycle of smooth weighted round robin (upstream indexes), when weighted.
    schedule: Box<[u8]>,
    /// Calls in flight from this node on each upstream (by index).
    in_flight: Box<[AtomicUsize]>,
    /// The key of each upstream's idle connections (by index): its authority, and for
    /// `https://` the scheme and the roots it was verified against (a connection one
    /// service trusted is never lent to a service that trusts other roots).
    pool_keys: Box<[Arc<str>]>,
    /// The key of each upstream as this service reaches it (by index): its health checks
    /// and the `Retry-After` of its answers concern this service alone.
    own_keys: Box<[Arc<str>]>,
}

impl ServiceRoute {
    /// Upstream indexes in round-robin order starting at the next one (by weight: an
    /// upstream of weight 3 leads three times as often as one of weight 1, spread out).
    pub fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let len = self.upstreams.len().max(1);
        let tick = self.next.fetch_add(1, Ordering::Relaxed);
        let start = match self.schedule.len() {
            0 => tick % len,
            cycle => usize::from(self.schedule[tick % cycle]) % len,
        };
        (0..self.upstreams.len()).map(move |i| (start + i) % len)
    }

    /// The weight of upstream `index` (1 unless the service weighs its upstreams).
    pub fn weight(&self, index: usize) -> u32 {
        self.weights.get(index).copied().unwrap_or(1)
    }

    /// The key of upstream `index` as this service alone reaches it: its health, the
    /// `Retry-After` of its answers, and the HTTP/2 connection its calls share.
    pub fn own_key(&self, index: usize) -> &Arc<str> {
        &self.own_keys[index.min(self.own_keys.len().saturating_sub(1))]
    }

    /// The key of upstream `index`'s idle connections.
    pub fn pool_key(&self, index: usize) -> &Arc<str> {
        &self.pool_keys[index.min(self.pool_keys.len().saturating_sub(1))]
    }

    /// Calls in flight from this node on upstream `index`.
    pub fn in_flight(&self, index: usize) -> usize {
        self.in_flight
            .get(index)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

/// A call in flight on one upstream of a service, counted until it is dropped.
#[derive(Debug)]
pub struct InFlight {
    service: Arc<ServiceRoute>,
    index: usize,
}

impl InFlight {
    /// Counts a call on upstream `index` of `service`.
    pub fn start(service: &Arc<ServiceRoute>, index: usize) -> Self {
        if let Some(n) = service.in_flight.get(index) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            service: service.clone(),
            index,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.service.in_flight.get(self.index) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// An API as the gateway routes it.
#[derive(Debug)]
pub struct ApiRoute {
    pub api_id: Arc<str>,
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
    pub app_id: Arc<str>,
    pub app_key: String,
    pub secret: Secret,
    /// The secret prepared for verifying signatures.
    pub signing_key: SigningKey,
}

/// An IAM AK/SK pair.
#[derive(Debug)]
pub struct IamKey {
    pub user_id: Arc<str>,
    /// Until when failed signatures lock the key (ms since the epoch).
    pub locked_until: i64,
    pub secret: Secret,
    /// The secret prepared for verifying signatures.
    pub signing_key: SigningKey,
}

/// What the gateway knows of an IAM user.
#[derive(Debug)]
pub struct IamUser {
    pub enabled: bool,
    pub password_changed_at: i64,
    /// Projects where the user holds any role.
    pub projects: HashSet<String>,
    /// The ids of the user's tokens revoked before their expiry.
    pub revoked_tokens: HashSet<String>,
}

impl IamUser {
    /// Whether a token of this user, issued at `issued_at` with id `token_id`, still stands:
    /// the user is enabled, has not changed password since, and the token was not revoked.
    pub fn accepts_token(&self, issued_at: i64, token_id: &str) -> bool {
        self.enabled
            && self.password_changed_at <= issued_at
            && !self.revoked_tokens.contains(token_id)
    }
}

/// Map from a shared key: cloning the map copies pointers, not strings.
type Shared<V> = Arc<HashMap<Arc<str>, V>>;
/// `api_path` → the APIs registered on it.
type Routes = Shared<Arc<[Arc<ApiRoute>]>>;

/// The gateway's view of the configuration at one revision. Its maps are shared between
/// snapshots, so a change copies only the maps it touches.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: i64,
    /// When the publisher made this snapshot current (epoch ms; 0 for an empty one).
    pub published_at_ms: i64,
    routes: Routes,
    /// API id → its `api_path`, to find the route of a changed API.
    api_paths: Shared<Arc<str>>,
    apps_by_key: Shared<Arc<AppCredential>>,
    apps_by_code: Shared<Arc<AppCredential>>,
    /// App id → the keys it holds in `apps_by_key` and `apps_by_code`.
    app_keys: Shared<Arc<AppKeys>>,
    iam_keys: Arc<HashMap<String, IamKey>>,
    users: Arc<HashMap<String, IamUser>>,
    tokens: Option<TokenCodec>,
    /// API id → the throttling policies bound to it.
    throttles: Shared<Arc<BoundThrottles>>,
    /// Whether a routed service has an `https://` upstream.
    https_upstreams: bool,
}

/// The policies bound to one API: at most one of each unit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BoundThrottles {
    /// Counts calls.
    pub request: Option<Arc<ThrottleRule>>,
    /// Counts the tokens of model calls.
    pub token: Option<Arc<ThrottleRule>>,
}

/// A throttling policy as the gateway counts it.
#[derive(Debug, PartialEq, Eq)]
pub struct ThrottleRule {
    pub throttle_id: Arc<str>,
    pub name: String,
    pub kind: ThrottleType,
    pub time_interval: u64,
    pub time_unit: TimeUnit,
    pub api_call_limits: u64,
    pub user_call_limits: Option<u64>,
    pub app_call_limits: Option<u64>,
    pub ip_call_limits: Option<u64>,
    /// What the limits count.
    pub unit: ThrottleUnit,
    /// TOKEN: the completion tokens reserved for a call that does not cap its answer.
    pub default_max_tokens: u64,
    /// Special limits by app id and by user id, in place of the app and user limits.
    pub special_apps: std::collections::BTreeMap<String, u64>,
    pub special_users: std::collections::BTreeMap<String, u64>,
}

impl ThrottleRule {
    pub fn window_ms(&self) -> u64 {
        self.time_interval.saturating_mul(self.time_unit.millis())
    }

    /// The limit on one app's calls: its special limit, else the policy's.
    pub fn app_limit(&self, app_id: &str) -> Option<u64> {
        self.special_apps
            .get(app_id)
            .copied()
            .or(self.app_call_limits)
    }

    /// The limit on one user's calls: its special limit, else the policy's.
    pub fn user_limit(&self, user_id: &str) -> Option<u64> {
        self.special_users
            .get(user_id)
            .copied()
            .or(self.user_call_limits)
    }
}

/// The policies of every bound API.
fn throttle_rules(dump: &ConfigDump) -> HashMap<Arc<str>, Arc<BoundThrottles>> {
    let mut rules: HashMap<&str, Arc<ThrottleRule>> = HashMap::default();
    for t in &dump.throttles {
        let mut rule = ThrottleRule {
            throttle_id: t.id.as_str().into(),
            name: t.name.clone(),
            kind: t.kind,
            time_interval: t.time_interval,
            time_unit: t.time_unit,
            api_call_limits: t.api_call_limits,
            user_call_limits: t.user_call_limits,
            app_call_limits: t.app_call_limits,
            ip_call_limits: t.ip_call_limits,
            unit: t.unit,
            default_max_tokens: t.default_max_tokens,
            special_apps: Default::default(),
            special_users: Default::default(),
        };
        for special in dump
            .throttle_specials
            .iter()
            .filter(|s| s.throttle_id == t.id)
        {
            let by = match special.object_type {
                SpecialKind::App => &mut rule.special_apps,
                SpecialKind::User => &mut rule.special_users,
            };
            by.insert(special.object_id.clone(), special.call_limits);
        }
        rules.insert(t.id.as_str(), Arc::new(rule));
    }
    let mut bound: HashMap<Arc<str>, BoundThrottles> = HashMap::default();
    for b in &dump.throttle_bindings {
        let Some(rule) = rules.get(b.throttle_id.as_str()) else {
            continue;
        };
        let of_api = bound.entry(Arc::from(b.api_id.as_str())).or_default();
        let slot = match rule.unit {
            ThrottleUnit::Request => &mut of_api.request,
            ThrottleUnit::Token => &mut of_api.token,
        };
        *slot = Some(rule.clone());
    }
    bound.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()
}

/// The lookup keys of one app: its AppKey and its AppCodes.
#[derive(Debug)]
struct AppKeys {
    app_key: Arc<str>,
    codes: Vec<Arc<str>>,
}

fn service_route(s: &Service, problems: &mut Vec<String>) -> Arc<ServiceRoute> {
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
        .collect::<Vec<Upstream>>();
    let roots = match &s.tls_ca_pem {
        Some(pem) => {
            use sha2::{Digest, Sha256};
            hex::encode(&Sha256::digest(pem.as_bytes())[..12])
        }
        None => "system".into(),
    };
    let pool_keys: Box<[Arc<str>]> = upstreams
        .iter()
        .map(|u| match u.scheme.as_str() {
            "https" => Arc::from(format!("https://{}#{roots}", u.authority)),
            _ => u.authority.clone(),
        })
        .collect();
    // Weights count only where each upstream has one (a service whose upstreams changed
    // under them, or one the snapshot could not read, balances evenly).
    let weights: Box<[u32]> =
        if s.upstream_weights.len() == s.upstreams.len() && upstreams.len() == s.upstreams.len() {
            // Bounded as the API bounds them, whatever the store holds.
            let most = crate::validate::MAX_UPSTREAM_WEIGHT as u32;
            s.upstream_weights
                .iter()
                .map(|&w| w.clamp(1, most))
                .collect()
        } else {
            Box::new([])
        };
    let own_keys = pool_keys
        .iter()
        .enumerate()
        .map(|(i, key)| Arc::from(format!("{} {i} {key}", s.id)))
        .collect();
    Arc::new(ServiceRoute {
        own_keys,
        pool_keys,
        tls: upstreams.iter().any(|u| u.scheme == "https"),
        tls_ca_pem: s.tls_ca_pem.as_deref().map(Arc::from),
        health_check: s.health_check.clone(),
        retry: s.retry.clone(),
        id: s.id.clone(),
        project_id: Arc::from(s.project_id.as_str()),
        in_flight: upstreams.iter().map(|_| AtomicUsize::new(0)).collect(),
        upstreams,
        timeout: Duration::from_millis(s.timeout_ms),
        usage_accounting: s.usage_accounting,
        load_balancing: s.load_balancing,
        schedule: smooth_schedule(&weights),
        weights,
        next: AtomicUsize::new(0),
    })
}

/// One cycle of smooth weighted round robin over `weights` (as nginx spreads its
/// `weight`s): each step every upstream gains its weight, the one with the most leads and
/// gives back the total. Empty when the weights are equal (plain rotation does).
fn smooth_schedule(weights: &[u32]) -> Box<[u8]> {
    if weights.windows(2).all(|w| w[0] == w[1]) || weights.len() > usize::from(u8::MAX) {
        return Box::new([]);
    }
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += i64::from(w);
        }
        let lead = (0..current.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[lead] -= total;
        cycle.push(lead as u8);
    }
    cycle.into_boxed_slice()
}

fn api_route(
    api: &Api,
    service: Arc<ServiceRoute>,
    authorized_apps: HashSet<String>,
) -> Arc<ApiRoute> {
    Arc::new(ApiRoute {
        authorized_apps,
        api_id: api.id.as_str().into(),
        api_path: api.api_path.clone(),
        auth_type: api.auth_type,
        support_app_code: api.support_app_code,
        method: api.api_method,
        service,
    })
}

/// Adds an app's credential under its AppKey and AppCodes.
fn insert_app(
    app: &App,
    master: &MasterKey,
    apps_by_key: &mut HashMap<Arc<str>, Arc<AppCredential>>,
    apps_by_code: &mut HashMap<Arc<str>, Arc<AppCredential>>,
    app_keys: &mut HashMap<Arc<str>, Arc<AppKeys>>,
    problems: &mut Vec<String>,
) {
    let secret = match master.decrypt(&app.secret_sealed) {
        Ok(secret) => secret,
        Err(e) => {
            problems.push(format!("app {}: secret: {e}", app.id));
            return;
        }
    };
    let credential = Arc::new(AppCredential {
        app_id: app.id.as_str().into(),
        app_key: app.app_key.clone(),
        signing_key: SigningKey::new(secret.expose().as_bytes()),
        secret,
    });
    let mut codes = Vec::with_capacity(app.codes.len());
    for code in &app.codes {
        match master.decrypt(&code.sealed) {
            Ok(value) => {
                let code: Arc<str> = Arc::from(value.expose());
                apps_by_code.insert(code.clone(), credential.clone());
                codes.push(code);
            }
            Err(e) => problems.push(format!("app {}: AppCode: {e}", app.id)),
        }
    }
    let app_key: Arc<str> = Arc::from(app.app_key.as_str());
    apps_by_key.insert(app_key.clone(), credential);
    app_keys.insert(
        Arc::from(app.id.as_str()),
        Arc::new(AppKeys { app_key, codes }),
    );
}

/// IAM users (with the projects where they hold a role) and active AK/SK pairs.
fn iam(
    dump: &ConfigDump,
    master: &MasterKey,
    problems: &mut Vec<String>,
) -> (HashMap<String, IamUser>, HashMap<String, IamKey>) {
    let mut users: HashMap<String, IamUser> = dump
        .users
        .iter()
        .map(|u| {
            (
                u.id.clone(),
                IamUser {
                    enabled: u.enabled,
                    password_changed_at: u.password_changed_at,
                    projects: HashSet::default(),
                    revoked_tokens: HashSet::default(),
                },
            )
        })
        .collect();
    for (project, user, _) in &dump.grants {
        if let Some(u) = users.get_mut(user) {
            u.projects.insert(project.clone());
        }
    }
    for token in &dump.revoked_tokens {
        if let Some(u) = users.get_mut(&token.user_id) {
            u.revoked_tokens.insert(token.token_id.clone());
        }
    }
    let mut iam_keys = HashMap::default();
    for credential in dump.credentials.iter().filter(|c| c.status == "active") {
        match master.decrypt(&credential.secret_sealed) {
            Ok(secret) => {
                iam_keys.insert(
                    credential.access.clone(),
                    IamKey {
                        user_id: credential.user_id.as_str().into(),
                        locked_until: credential.locked_until,
                        signing_key: SigningKey::new(secret.expose().as_bytes()),
                        secret,
                    },
                );
            }
            Err(e) => problems.push(format!("credential {}: {e}", credential.access)),
        }
    }
    (users, iam_keys)
}

impl Snapshot {
    /// An empty snapshot: every call is answered "no API".
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds the snapshot; secrets that cannot be unsealed are left out and reported.
    pub fn build(dump: &ConfigDump, master: &MasterKey) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let services: HashMap<&str, Arc<ServiceRoute>> = dump
            .services
            .iter()
            .map(|s| (s.id.as_str(), service_route(s, &mut problems)))
            .collect();
        let mut authorized: HashMap<&str, HashSet<String>> = HashMap::default();
        for grant in dump.authorizations.iter() {
            authorized
                .entry(grant.api_id.as_str())
                .or_default()
                .insert(grant.app_id.clone());
        }
        let mut routes: HashMap<Arc<str>, Vec<Arc<ApiRoute>>> = HashMap::default();
        let mut api_paths = HashMap::with_capacity_and_hasher(dump.apis.len(), Default::default());
        for api in &dump.apis {
            let Some(service) = services.get(api.service_id.as_str()) else {
                problems.push(format!(
                    "api {}: service {} missing",
                    api.id, api.service_id
                ));
                continue;
            };
            let grants = authorized.remove(api.id.as_str()).unwrap_or_default();
            let path: Arc<str> = Arc::from(api.api_path.as_str());
            routes
                .entry(path.clone())
                .or_default()
                .push(api_route(api, service.clone(), grants));
            api_paths.insert(Arc::from(api.id.as_str()), path);
        }
        let mut apps_by_key =
            HashMap::with_capacity_and_hasher(dump.apps.len(), Default::default());
        let mut apps_by_code = HashMap::default();
        let mut app_keys = HashMap::with_capacity_and_hasher(dump.apps.len(), Default::default());
        for app in &dump.apps {
            insert_app(
                app,
                master,
                &mut apps_by_key,
                &mut apps_by_code,
                &mut app_keys,
                &mut problems,
            );
        }
        let (users, iam_keys) = iam(dump, master, &mut problems);
        let snapshot = Self {
            revision: dump.revision,
            published_at_ms: 0,
            routes: Arc::new(routes.into_iter().map(|(k, v)| (k, v.into())).collect()),
            api_paths: Arc::new(api_paths),
            apps_by_key: Arc::new(apps_by_key),
            apps_by_code: Arc::new(apps_by_code),
            app_keys: Arc::new(app_keys),
            iam_keys: Arc::new(iam_keys),
            users: Arc::new(users),
            tokens: Some(TokenCodec::new(master)),
            throttles: Arc::new(throttle_rules(dump)),
            https_upstreams: false,
        }
        .with_https_noted();
        (snapshot, problems)
    }

    /// The snapshot after `delta`, given `dump` with `delta` already applied. Only what the
    /// delta names is rebuilt; every other route and credential is shared with `self`. Gives
    /// what [`Snapshot::build`] gives for `dump`.
    pub fn patch(
        &self,
        delta: &ConfigDelta,
        dump: &ConfigDump,
        master: &MasterKey,
    ) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let (routes, api_paths) = self.patch_routes(delta, dump, &mut problems);
        let (apps_by_key, apps_by_code, app_keys) = if delta.apps.is_empty() {
            (
                self.apps_by_key.clone(),
                self.apps_by_code.clone(),
                self.app_keys.clone(),
            )
        } else {
            let mut by_key = (*self.apps_by_key).clone();
            let mut by_code = (*self.apps_by_code).clone();
            let mut keys = (*self.app_keys).clone();
            for (id, now) in &delta.apps {
                if let Some(old) = keys.remove(id.as_str()) {
                    by_key.remove(&old.app_key);
                    for code in &old.codes {
                        by_code.remove(code);
                    }
                }
                if let Some(app) = now {
                    insert_app(
                        app,
                        master,
                        &mut by_key,
                        &mut by_code,
                        &mut keys,
                        &mut problems,
                    );
                }
            }
            (Arc::new(by_key), Arc::new(by_code), Arc::new(keys))
        };
        let iam_changed = !(delta.users.is_empty()
            && delta.credentials_of_users.is_empty()
            && delta.grants_of_users.is_empty()
            && delta.revoked_tokens_of_users.is_empty());
        let (users, iam_keys) = if iam_changed {
            let (users, keys) = iam(dump, master, &mut problems);
            (Arc::new(users), Arc::new(keys))
        } else {
            (self.users.clone(), self.iam_keys.clone())
        };
        let throttles_changed = !(delta.throttles.is_empty()
            && delta.bindings_of_throttles.is_empty()
            && delta.specials_of_throttles.is_empty());
        let throttles = if throttles_changed {
            Arc::new(throttle_rules(dump))
        } else {
            self.throttles.clone()
        };
        let snapshot = Self {
            revision: delta.revision,
            published_at_ms: 0,
            throttles,
            routes,
            api_paths,
            apps_by_key,
            apps_by_code,
            app_keys,
            iam_keys,
            users,
            // The token key derives from the master key alone.
            tokens: self
                .tokens
                .clone()
                .or_else(|| Some(TokenCodec::new(master))),
            https_upstreams: false,
        }
        .with_https_noted();
        (snapshot, problems)
    }

    /// Rebuilds the routes of the APIs the delta touches (changed APIs, APIs of changed
    /// services, APIs whose authorizations changed); other APIs on the same paths are kept.
    fn patch_routes(
        &self,
        delta: &ConfigDelta,
        dump: &ConfigDump,
        problems: &mut Vec<String>,
    ) -> (Routes, Shared<Arc<str>>) {
        let changed_services: HashSet<&str> = delta
            .services
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(delta.apis_of_services.iter().map(|(id, _)| id.as_str()))
            .collect();
        let mut affected: HashSet<&str> = delta
            .apis
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(
                delta
                    .authorizations_of_apis
                    .iter()
                    .map(|(id, _)| id.as_str()),
            )
            .chain(
                delta
                    .apis_of_services
                    .iter()
                    .flat_map(|(_, apis)| apis.iter().map(|a| a.id.as_str())),
            )
            .collect();
        // The old APIs of a changed service, wherever they are now.
        let mut old: HashMap<&str, &Arc<ApiRoute>> = HashMap::default();
        if !changed_services.is_empty() {
            for route in self.routes.values().flat_map(|apis| apis.iter()) {
                if changed_services.contains(route.service.id.as_str()) {
                    affected.insert(&*route.api_id);
                }
            }
        }
        if affected.is_empty() {
            return (self.routes.clone(), self.api_paths.clone());
        }
        let mut paths: HashSet<Arc<str>> = HashSet::default();
        for id in &affected {
            if let Some(path) = self.api_paths.get(*id) {
                paths.insert(path.clone());
                if let Some(route) = self.routes[path].iter().find(|r| &*r.api_id == *id) {
                    old.insert(id, route);
                }
            }
        }
        let current: Vec<&Api> = dump
            .apis
            .iter()
            .filter(|a| affected.contains(a.id.as_str()))
            .collect();
        // The services of the affected APIs: changed ones anew, others as they were.
        let wanted: HashSet<&str> = current.iter().map(|a| a.service_id.as_str()).collect();
        let mut services: HashMap<&str, Arc<ServiceRoute>> = HashMap::default();
        for route in old.values() {
            let id = route.service.id.as_str();
            if wanted.contains(id) && !changed_services.contains(id) {
                services.insert(id, route.service.clone());
            }
        }
        if wanted.iter().any(|id| !services.contains_key(id)) {
            for s in &dump.services {
                if wanted.contains(s.id.as_str()) && !services.contains_key(s.id.as_str()) {
                    services.insert(s.id.as_str(), service_route(s, problems));
                }
            }
        }
        let grants: HashMap<&str, &Vec<Authorization>> = delta
            .authorizations_of_apis
            .iter()
            .map(|(id, grants)| (id.as_str(), grants))
            .collect();
        let mut api_paths = (*self.api_paths).clone();
        for id in &affected {
            api_paths.remove(*id);
        }
        let mut rebuilt: HashMap<Arc<str>, Vec<Arc<ApiRoute>>> = HashMap::default();
        for api in current {
            let Some(service) = services.get(api.service_id.as_str()) else {
                problems.push(format!(
                    "api {}: service {} missing",
                    api.id, api.service_id
                ));
                continue;
            };
            let authorized = match grants.get(api.id.as_str()) {
                Some(list) => list.iter().map(|g| g.app_id.clone()).collect(),
                None => match old.get(api.id.as_str()) {
                    Some(route) => route.authorized_apps.clone(),
                    None => dump
                        .authorizations
                        .of(&api.id)
                        .iter()
                        .map(|g| g.app_id.clone())
                        .collect(),
                },
            };
            let path: Arc<str> = Arc::from(api.api_path.as_str());
            paths.insert(path.clone());
            api_paths.insert(Arc::from(api.id.as_str()), path.clone());
            rebuilt
                .entry(path)
                .or_default()
                .push(api_route(api, service.clone(), authorized));
        }
        let mut routes = (*self.routes).clone();
        for path in paths {
            let mut apis: Vec<Arc<ApiRoute>> = routes
                .get(&path)
                .map(|apis| {
                    apis.iter()
                        .filter(|r| !affected.contains(&*r.api_id))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            apis.extend(rebuilt.remove(&path).unwrap_or_default());
            if apis.is_empty() {
                routes.remove(&path);
            } else {
                routes.insert(path, apis.into());
            }
        }
        (Arc::new(routes), Arc::new(api_paths))
    }

    /// The snapshot with [`Snapshot::has_https_upstreams`] found from its routes.
    fn with_https_noted(mut self) -> Self {
        self.https_upstreams = self
            .routes
            .values()
            .flat_map(|apis| apis.iter())
            .any(|api| api.service.tls);
        self
    }

    /// The routed services that check their upstreams' health, each once.
    pub fn health_checked(&self) -> Vec<Arc<ServiceRoute>> {
        let mut seen: HashSet<String> = HashSet::default();
        self.routes
            .values()
            .flat_map(|apis| apis.iter())
            .map(|api| &api.service)
            .filter(|s| s.health_check.is_some() && seen.insert(s.id.clone()))
            .cloned()
            .collect()
    }

    /// Whether any routed service has an `https://` upstream (most have none: the fast
    /// path asks before it looks a route up).
    pub fn has_https_upstreams(&self) -> bool {
        self.https_upstreams
    }

    /// The APIs registered on the longest `api_path` that prefixes `path` at a `/`
    /// boundary, with that prefix.
    pub fn route(&self, path: &str) -> Option<&[Arc<ApiRoute>]> {
        let mut candidate = path;
        loop {
            if let Some(apis) = self.routes.get(candidate) {
                // A call under a service's namespace reaches that service's APIs or none.
                if let Some(owner) = crate::paths::service_namespace(path) {
                    if apis.iter().any(|api| api.service.id != owner) {
                        return None;
                    }
                }
                return Some(&apis[..]);
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

    /// The throttling policies bound to an API.
    pub fn throttle(&self, api_id: &str) -> Option<&Arc<BoundThrottles>> {
        self.throttles.get(api_id)
    }

    pub fn api_count(&self) -> usize {
        self.api_paths.len()
    }

    /// The content of the snapshot as sorted lines (secrets as their SHA-256), for comparing
    /// two snapshots: a patched one and one built whole must describe alike.
    pub fn describe(&self) -> Vec<String> {
        use sha2::{Digest, Sha256};
        let digest = |s: &Secret| hex::encode(Sha256::digest(s.expose().as_bytes()));
        let mut lines = vec![format!("revision {}", self.revision)];
        for (path, apis) in self.routes.iter() {
            for a in apis.iter() {
                let mut apps: Vec<&String> = a.authorized_apps.iter().collect();
                apps.sort();
                let s = &a.service;
                lines.push(format!(
                    "route {path} api={} path={} auth={:?} code={} method={:?} service={}/{}/{:?}/{:?}/{}/{:?}/{:?} apps={apps:?}",
                    a.api_id, a.api_path, a.auth_type, a.support_app_code, a.method, s.id,
                    s.project_id, s.upstreams, s.timeout, s.usage_accounting, s.load_balancing,
                    (&s.tls_ca_pem, &s.health_check, &s.retry),
                ));
            }
        }
        for (id, path) in self.api_paths.iter() {
            lines.push(format!("api {id} {path}"));
        }
        for (api, rule) in self.throttles.iter() {
            lines.push(format!("throttle {api} {rule:?}"));
        }
        for (key, c) in self.apps_by_key.iter() {
            lines.push(format!("key {key} app={} {}", c.app_id, digest(&c.secret)));
        }
        for (code, c) in self.apps_by_code.iter() {
            lines.push(format!("code {code} app={} key={}", c.app_id, c.app_key));
        }
        for (id, keys) in self.app_keys.iter() {
            let mut codes = keys.codes.clone();
            codes.sort();
            lines.push(format!("app {id} key={} codes={codes:?}", keys.app_key));
        }
        for (access, k) in self.iam_keys.iter() {
            lines.push(format!(
                "ak {access} user={} {}",
                k.user_id,
                digest(&k.secret)
            ));
        }
        for (id, u) in self.users.iter() {
            let mut projects: Vec<&String> = u.projects.iter().collect();
            projects.sort();
            lines.push(format!(
                "user {id} enabled={} changed={} projects={projects:?}",
                u.enabled, u.password_changed_at
            ));
        }
        lines.sort();
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AppCode;

    #[test]
    fn weighted_rotation_spreads_each_upstream_by_its_weight() {
        assert!(smooth_schedule(&[1, 1, 1]).is_empty());
        assert!(smooth_schedule(&[]).is_empty());
        // nginx's example: weights 5, 1, 1 give a a a b a c a... spread, not bunched.
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        let cycle = smooth_schedule(&[3, 1]);
        assert_eq!(&*cycle, &[0, 0, 1, 0]);
        let mut weighted = service("w");
        weighted.upstream_weights = vec![3, 1];
        let route = service_route(&weighted, &mut Vec::new());
        let mut leads = [0usize; 2];
        for _ in 0..40 {
            let order: Vec<usize> = route.rotation().collect();
            assert_eq!(order.len(), 2);
            leads[order[0]] += 1;
        }
        assert_eq!(leads, [30, 10]);
        assert_eq!(
            (route.weight(0), route.weight(1), route.weight(7)),
            (3, 1, 1)
        );
        // Weights that do not match the upstreams count for nothing.
        weighted.upstream_weights = vec![3];
        let route = service_route(&weighted, &mut Vec::new());
        assert_eq!(route.weight(0), 1);
    }

    fn service(id: &str) -> Service {
        Service {
            id: id.into(),
            project_id: "p".into(),
            name: id.into(),
            description: String::new(),
            upstreams: vec!["http://127.0.0.1:9000/base".into(), "http://h2".into()],
            upstream_weights: vec![],
            timeout_ms: 1000,
            usage_accounting: true,
            load_balancing: LoadBalancing::RoundRobin,
            tls_ca_pem: None,
            health_check: None,
            retry: None,
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
                api("a", "/v1/infers/s", AuthType::App),
                api("b", "/v1/infers/s", AuthType::Iam),
                api("c", "/v1/infers/s/special", AuthType::None),
            ],
            ..ConfigDump::default()
        };
        let (snap, problems) = Snapshot::build(&dump, &master);
        assert!(problems.is_empty());
        let ids = |path: &str| -> Vec<String> {
            snap.route(path)
                .map(|r| r.iter().map(|a| a.api_id.to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(ids("/v1/infers/s"), ["a", "b"]);
        assert_eq!(ids("/v1/infers/s/"), ["a", "b"]);
        assert_eq!(ids("/v1/infers/s/predictions/poetry"), ["a", "b"]);
        assert_eq!(ids("/v1/infers/s/special/y"), ["c"]);
        assert!(
            ids("/v1/infers/sy").is_empty(),
            "prefix must end at a / boundary"
        );
        assert!(ids("/v1/infers").is_empty());
        assert!(ids("/").is_empty());
    }

    #[test]
    fn a_call_under_a_service_namespace_reaches_that_service_or_nothing() {
        let master = MasterKey::generate();
        let mut above = api("a", "/v1", AuthType::None);
        above.service_id = "s".into();
        let mut theirs = api("b", "/v1/infers/t", AuthType::None);
        theirs.service_id = "t".into();
        let dump = ConfigDump {
            services: vec![service("s"), service("t")],
            apis: vec![above, theirs],
            ..ConfigDump::default()
        };
        let (snap, problems) = Snapshot::build(&dump, &master);
        assert!(problems.is_empty(), "{problems:?}");
        let ids = |path: &str| -> Vec<String> {
            snap.route(path)
                .map(|r| r.iter().map(|a| a.api_id.to_string()).collect())
                .unwrap_or_default()
        };
        assert_eq!(ids("/v1/infers/t/x"), ["b"]);
        assert_eq!(ids("/v1/other"), ["a"]);
        assert_eq!(ids("/v1/infers/s/x"), ["a"], "its own service's API above");
        assert!(
            ids("/v1/infers/u/x").is_empty(),
            "another service's namespace"
        );
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
            &ConfigDump {
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
        assert_eq!(snap.app_by_code(&code).map(|a| &*a.app_id), Some("x"));
        assert!(snap.app_by_key("key2").is_none());
    }

    #[test]
    fn round_robin_rotation() {
        let master = MasterKey::generate();
        let (snap, _) = Snapshot::build(
            &ConfigDump {
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
        assert_eq!(&*route.service.upstreams[1].authority, "h2");
    }

    fn app(master: &MasterKey, id: &str, codes: &[&str]) -> App {
        App {
            id: id.into(),
            project_id: "p".into(),
            name: id.into(),
            remark: String::new(),
            app_key: format!("key-{id}"),
            secret_sealed: master.encrypt(&Secret::new(format!("secret-{id}"))),
            app_type: "APIG".into(),
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
            codes: codes
                .iter()
                .map(|c| AppCode {
                    sealed: master.encrypt(&Secret::new(*c)),
                    index: (*c).into(),
                    created_at: 0,
                })
                .collect(),
            bounded_api_count: 0,
        }
    }

    fn grant(api_id: &str, app_id: &str) -> Authorization {
        Authorization {
            auth_id: format!("{api_id}-{app_id}"),
            api_id: api_id.into(),
            app_id: app_id.into(),
            created_at: 0,
        }
    }

    fn grants_of(dump: &ConfigDump, api_id: &str) -> Vec<Authorization> {
        dump.authorizations.of(api_id).to_vec()
    }

    #[test]
    fn authorizations_are_replaced_per_api() {
        let mut all: AuthorizationsByApi = [grant("a1", "x"), grant("a1", "y"), grant("a2", "x")]
            .into_iter()
            .collect();
        assert_eq!(all.len(), 3);
        all.replace("a1", vec![grant("a1", "z")]);
        let apps =
            |api: &str| -> Vec<String> { all.of(api).iter().map(|g| g.app_id.clone()).collect() };
        assert_eq!(apps("a1"), ["z"]);
        assert_eq!(apps("a2"), ["x"]);
        all.replace("a2", Vec::new());
        assert!(all.of("a2").is_empty());
        assert_eq!(all.len(), 1);
        let printed = format!("{all:?}");
        let again: AuthorizationsByApi = all.iter().cloned().collect();
        assert_eq!(printed, format!("{again:?}"));
    }

    /// Each step's delta, patched into the previous snapshot, gives what a whole build of the
    /// resulting configuration gives; untouched maps stay shared.
    #[test]
    fn patching_matches_a_full_build() {
        let master = MasterKey::generate();
        let s2 = Service {
            id: "s2".into(),
            ..service("s")
        };
        let mut dump = ConfigDump {
            revision: 1,
            services: vec![service("s"), s2.clone()],
            apis: vec![
                api("a1", "/p/one", AuthType::App),
                api("a2", "/p/one", AuthType::Iam),
                Api {
                    service_id: "s2".into(),
                    ..api("b1", "/p/two", AuthType::App)
                },
            ],
            apps: vec![app(&master, "x", &["code-x"]), app(&master, "y", &[])],
            authorizations: [grant("a1", "x"), grant("b1", "y")].into_iter().collect(),
            ..ConfigDump::default()
        };
        let (mut snap, _) = Snapshot::build(&dump, &master);
        let user = User {
            id: "u1".into(),
            domain_id: "d".into(),
            name: "u1".into(),
            description: String::new(),
            password_hash: String::new(),
            password_changed_at: 0,
            domain_admin: false,
            enabled: true,
            created_at: 0,
        };
        type Step<'a> = Box<dyn Fn(&ConfigDump) -> ConfigDelta + 'a>;
        let steps: Vec<Step> = vec![
            // An authorization added.
            Box::new(|d| {
                let mut g = grants_of(d, "a1");
                g.push(grant("a1", "y"));
                ConfigDelta {
                    authorizations_of_apis: vec![("a1".into(), g)],
                    ..ConfigDelta::default()
                }
            }),
            // An API moved to another path, keeping its authorizations.
            Box::new(|d| ConfigDelta {
                apis: vec![("a1".into(), Some(api("a1", "/p/moved", AuthType::App)))],
                authorizations_of_apis: vec![("a1".into(), grants_of(d, "a1"))],
                ..ConfigDelta::default()
            }),
            // A new API on a service that had none listed in the delta.
            Box::new(|_| ConfigDelta {
                apis: vec![(
                    "b2".into(),
                    Some(Api {
                        service_id: "s2".into(),
                        ..api("b2", "/p/one", AuthType::None)
                    }),
                )],
                authorizations_of_apis: vec![("b2".into(), vec![])],
                ..ConfigDelta::default()
            }),
            // A service's upstreams changed: its APIs follow.
            Box::new(|d| {
                let s2 = Service {
                    upstreams: vec!["http://10.0.0.1:81".into()],
                    ..s2.clone()
                };
                let apis: Vec<Api> = d
                    .apis
                    .iter()
                    .filter(|a| a.service_id == "s2")
                    .cloned()
                    .collect();
                ConfigDelta {
                    authorizations_of_apis: apis
                        .iter()
                        .map(|a| (a.id.clone(), grants_of(d, &a.id)))
                        .collect(),
                    services: vec![("s2".into(), Some(s2))],
                    apis_of_services: vec![("s2".into(), apis)],
                    ..ConfigDelta::default()
                }
            }),
            // An app deleted, another given a new AppCode.
            Box::new(|_| ConfigDelta {
                apps: vec![
                    ("x".into(), None),
                    ("y".into(), Some(app(&master, "y", &["code-y"]))),
                ],
                ..ConfigDelta::default()
            }),
            // An API deleted.
            Box::new(|_| ConfigDelta {
                apis: vec![("a2".into(), None)],
                authorizations_of_apis: vec![("a2".into(), vec![])],
                ..ConfigDelta::default()
            }),
            // A service deleted with its APIs.
            Box::new(|_| ConfigDelta {
                services: vec![("s2".into(), None)],
                apis_of_services: vec![("s2".into(), vec![])],
                ..ConfigDelta::default()
            }),
            // A user with a key and a grant.
            Box::new(|_| ConfigDelta {
                users: vec![("u1".into(), Some(user.clone()))],
                credentials_of_users: vec![(
                    "u1".into(),
                    vec![Credential {
                        access: "AK1".into(),
                        user_id: "u1".into(),
                        secret_sealed: master.encrypt(&Secret::new("sk")),
                        description: String::new(),
                        status: "active".into(),
                        created_at: 0,
                        locked_until: 0,
                    }],
                )],
                grants_of_users: vec![("u1".into(), vec![("p".into(), "u1".into(), Role::Member)])],
                ..ConfigDelta::default()
            }),
            // A throttling policy bound to an API, with a special limit.
            Box::new(|_| ConfigDelta {
                throttles: vec![("t1".into(), Some(throttle("t1", 10)))],
                bindings_of_throttles: vec![(
                    "t1".into(),
                    vec![crate::throttle::ThrottleBinding {
                        id: "b".into(),
                        throttle_id: "t1".into(),
                        api_id: "a1".into(),
                        created_at: 0,
                    }],
                )],
                specials_of_throttles: vec![(
                    "t1".into(),
                    vec![crate::throttle::ThrottleSpecial {
                        id: "sp".into(),
                        throttle_id: "t1".into(),
                        object_type: SpecialKind::App,
                        object_id: "y".into(),
                        call_limits: 3,
                        created_at: 0,
                        updated_at: 0,
                    }],
                )],
                ..ConfigDelta::default()
            }),
            // The policy changed.
            Box::new(|d| ConfigDelta {
                throttles: vec![("t1".into(), Some(throttle("t1", 20)))],
                bindings_of_throttles: vec![("t1".into(), d.throttle_bindings.clone())],
                specials_of_throttles: vec![("t1".into(), d.throttle_specials.clone())],
                ..ConfigDelta::default()
            }),
        ];
        for (i, step) in steps.iter().enumerate() {
            let mut delta = step(&dump);
            delta.revision = dump.revision + 1;
            dump.apply(&delta);
            let (patched, problems) = snap.patch(&delta, &dump, &master);
            assert!(problems.is_empty(), "step {i}: {problems:?}");
            let (built, _) = Snapshot::build(&dump, &master);
            assert_eq!(patched.describe(), built.describe(), "step {i}");
            if delta.apps.is_empty() {
                assert!(
                    Arc::ptr_eq(&patched.apps_by_key, &snap.apps_by_key),
                    "step {i}"
                );
            }
            if delta.apis.is_empty()
                && delta.services.is_empty()
                && delta.authorizations_of_apis.is_empty()
            {
                assert!(Arc::ptr_eq(&patched.routes, &snap.routes), "step {i}");
            }
            snap = patched;
        }
        assert_eq!(snap.api_count(), 1);
        assert!(snap
            .route("/p/moved/x")
            .is_some_and(|apis| apis[0].authorizes("y")));
        assert!(snap.app_by_code("code-y").is_some() && snap.app_by_code("code-x").is_none());
        assert!(snap.iam_key("AK1").is_some());
        let bound = snap.throttle("a1").expect("bound");
        assert!(bound.token.is_none());
        let rule = bound.request.as_ref().expect("request policy");
        assert_eq!((rule.api_call_limits, rule.app_limit("y")), (20, Some(3)));
    }

    fn throttle(id: &str, limit: u64) -> Throttle {
        Throttle {
            id: id.into(),
            project_id: "p".into(),
            name: "policy".into(),
            remark: String::new(),
            api_call_limits: limit,
            user_call_limits: None,
            app_call_limits: Some(1),
            ip_call_limits: None,
            time_interval: 1,
            time_unit: TimeUnit::Minute,
            kind: ThrottleType::PerApi,
            unit: ThrottleUnit::Request,
            default_max_tokens: 0,
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
        }
    }
}

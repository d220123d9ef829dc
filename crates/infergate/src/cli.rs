//! Command-line grammar. Every `serve` option is also an `INFERGATE_*` variable and a key
//! of the TOML file given by `--config`; flags win over the environment, the environment
//! over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "infergate",
    version,
    about = "An authenticating gateway for model-inference services"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every client command; each overrides what `infergate login` saved.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// Management API base URL.
    #[arg(long, global = true, env = "INFERGATE_URL")]
    pub url: Option<String>,
    /// Gateway base URL, for `call` with a path.
    #[arg(long, global = true, env = "INFERGATE_GATEWAY_URL")]
    pub gateway: Option<String>,
    /// Project id.
    #[arg(long, global = true, env = "INFERGATE_PROJECT")]
    pub project: Option<String>,
    /// IAM token.
    #[arg(long, global = true, env = "INFERGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print only this field of the answer, for scripts: every value of that name, at any
    /// depth, one per line, a list's items each on its own (e.g. `--field service_id`).
    #[arg(long, global = true, value_name = "NAME")]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// An aligned table for people.
    #[default]
    Table,
    /// The API's own JSON, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the management plane and the gateway (embedded SQLite by default).
    #[command(
        after_help = "Examples:\n  infergate serve\n  INFERGATE_ADMIN_PASSWORD=s3cret-pass infergate serve --data-dir /var/lib/infergate\n  infergate serve --config /etc/infergate.toml --public-url https://infer.example.com"
    )]
    Serve(Box<ServeArgs>),
    /// Run the PostgreSQL migrations and exit.
    Migrate {
        /// postgres://… of the shared database.
        #[arg(long, env = "INFERGATE_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// End a user's password lockout on the store itself, with no server or login (for
    /// when the only domain admin is locked out).
    #[command(
        after_help = "Examples:\n  infergate unlock --user admin\n  infergate unlock --user admin --data-dir /var/lib/infergate\n  INFERGATE_DATABASE_URL=postgres://… infergate unlock --user admin"
    )]
    Unlock {
        /// The user's name in the default domain.
        #[arg(long)]
        user: String,
        /// Directory of the embedded SQLite store [default: ./infergate-data].
        #[arg(long, env = "INFERGATE_DATA_DIR")]
        data_dir: Option<std::path::PathBuf>,
        /// postgres://… of a shared store (instead of the data directory's SQLite).
        #[arg(long, env = "INFERGATE_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Log in to a management API and save the token (mode 0600).
    #[command(
        after_help = "Examples:\n  infergate login --url http://127.0.0.1:8081 --user admin\n  INFERGATE_PASSWORD=… infergate login --url http://10.0.0.2:8081 --user ops --project team-a"
    )]
    Login(LoginArgs),
    /// Revoke the saved token on the server and forget it here.
    Logout,
    /// Inference services (backends).
    #[command(
        subcommand,
        after_help = "Examples:\n  infergate service create --name llama --upstream http://10.0.0.5:8000/v1\n  infergate service list"
    )]
    Service(ServiceCmd),
    /// APIs that expose services through the gateway.
    #[command(
        subcommand,
        after_help = "Examples:\n  infergate api create --service llama --auth-type APP --app-code\n  infergate api list --service llama"
    )]
    Api(ApiCmd),
    /// Apps (AppKey/AppSecret), their AppCodes and authorizations.
    #[command(
        subcommand,
        after_help = "Examples:\n  infergate app create --name mobile\n  infergate app authorize --app mobile --service llama\n  infergate app code add mobile"
    )]
    App(AppCmd),
    /// Which apps may call a service's API.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// IAM users.
    #[command(subcommand)]
    User(UserCmd),
    /// IAM projects.
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Role grants of users in projects.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Permanent IAM access keys (AK/SK).
    #[command(subcommand)]
    Key(KeyCmd),
    /// Throttling policies: limits per API, user, app and source IP.
    #[command(
        subcommand,
        after_help = "Examples:\n  infergate throttle create --name per_app --api-limit 600 --app-limit 60 --unit MINUTE\n  infergate throttle bind per_app --service poetry\n  infergate throttle special per_app --app mobile --limit 300"
    )]
    Throttle(ThrottleCmd),
    /// Call an inference API, signing like the official SDKs; streams the answer.
    #[command(
        after_help = "Examples:\n  infergate call --app mobile -X POST /v1/infers/<id>/chat/completions -d @req.json\n  infergate call --app-code <code> /v1/infers/<id>/health\n  infergate call --app mobile --explain /v1/infers/<id>"
    )]
    Call(CallArgs),
    /// Print the signature headers of a request (for curl).
    #[command(
        after_help = "Examples:\n  infergate sign --app-key K --app-secret S -X GET 'http://127.0.0.1:8080/v1/infers/<id>?q=1'\n  infergate sign --app-key K --app-secret S --curl -X POST -d '{}' http://…"
    )]
    Sign(SignArgs),
    /// Shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long)]
    pub user: String,
    /// Project name to scope the token to.
    #[arg(long, default_value = "default")]
    pub project_name: String,
    /// Domain name.
    #[arg(long, default_value = "default")]
    pub domain: String,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Create a service.
    Create {
        #[arg(long)]
        name: String,
        /// Upstream base URL; repeat for several.
        #[arg(long = "upstream", required = true)]
        upstreams: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        timeout_ms: Option<i64>,
    },
    /// List services.
    List,
    /// Show a service (by name or id).
    Show { service: String },
    /// Change a service's upstreams, description or timeout.
    Update {
        service: String,
        #[arg(long = "upstream")]
        upstreams: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        timeout_ms: Option<i64>,
    },
    /// Delete a service with its APIs and their authorizations.
    Delete { service: String },
}

#[derive(Debug, Subcommand)]
pub enum ApiCmd {
    /// Create an API of a service.
    Create {
        #[arg(long)]
        service: String,
        /// NONE, APP or IAM.
        #[arg(long, default_value = "APP")]
        auth_type: String,
        /// Allow AppCode and apikey authentication.
        #[arg(long, conflicts_with = "no_app_code")]
        app_code: bool,
        /// Refuse AppCode and apikey authentication.
        #[arg(long)]
        no_app_code: bool,
        #[arg(long)]
        name: Option<String>,
        /// API path (default /v1/infers/<service id>).
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        remark: Option<String>,
    },
    /// List the APIs of a service.
    List {
        #[arg(long)]
        service: String,
    },
    /// Show an API.
    Show {
        #[arg(long)]
        service: String,
        api: String,
    },
    /// Delete an API and its authorizations.
    Delete {
        #[arg(long)]
        service: String,
        api: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Create an app; its AppSecret is shown once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        remark: Option<String>,
    },
    /// List your apps.
    List {
        /// Substring of the app name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show an app (by name or id).
    Show { app: String },
    /// Whether an app of that name exists.
    Exists { name: String },
    /// Delete an app (it must not be authorized to any API).
    Delete { app: String },
    /// Replace the AppSecret; the old one stops working at once.
    ResetSecret { app: String },
    /// The APIs an app is authorized for.
    Apis { app: String },
    /// AppCodes.
    #[command(subcommand)]
    Code(CodeCmd),
    /// Authorize an app to a service's API (registering the APP API if needed).
    Authorize {
        #[arg(long)]
        app: String,
        #[arg(long)]
        service: String,
        /// A specific API id (default: the service's APP API).
        #[arg(long)]
        api: Option<String>,
    },
    /// Revoke an app's authorization to a service's API.
    Unauthorize {
        #[arg(long)]
        app: String,
        #[arg(long)]
        service: String,
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CodeCmd {
    /// Add a generated AppCode.
    Add { app: String },
    /// Replace an AppCode by a new one.
    Reset { app: String, code: String },
    /// Delete an AppCode; it stops working at once.
    Delete { app: String, code: String },
}

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Apps and whether each may call the API.
    List {
        #[arg(long)]
        service: String,
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user; the password is read from INFERGATE_NEW_PASSWORD or prompted.
    Create {
        #[arg(long)]
        name: String,
    },
    List,
    Delete {
        user: String,
    },
    /// End a password lockout (enables the user).
    Unlock {
        user: String,
    },
    /// Disable a user: no logins, tokens or keys work until it is enabled again.
    Disable {
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    List,
}

#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// The roles that exist.
    List,
    /// Give a user a role in a project.
    Grant {
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        role: String,
    },
    /// Take a role away.
    Revoke {
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ThrottleCmd {
    /// Create a policy.
    Create {
        /// 3-64 letters, digits or _, starting with a letter.
        #[arg(long)]
        name: String,
        /// Calls per window of each bound API (or of all together, with --shared).
        #[arg(long)]
        api_limit: i64,
        /// Calls per window by one IAM user.
        #[arg(long)]
        user_limit: Option<i64>,
        /// Calls per window by one app.
        #[arg(long)]
        app_limit: Option<i64>,
        /// Calls per window from one source IP.
        #[arg(long)]
        ip_limit: Option<i64>,
        /// The window's length, in units.
        #[arg(long, default_value_t = 1)]
        interval: i64,
        /// SECOND, MINUTE, HOUR or DAY.
        #[arg(long, default_value = "MINUTE")]
        unit: String,
        /// One count for all bound APIs (type 2) instead of one per API.
        #[arg(long)]
        shared: bool,
        #[arg(long)]
        remark: Option<String>,
    },
    /// List the project's policies.
    List,
    /// Delete a policy with its bindings and special limits.
    Delete { policy: String },
    /// Bind a policy to every API of services, or to APIs by id.
    Bind {
        policy: String,
        #[arg(long = "service")]
        services: Vec<String>,
        #[arg(long = "api")]
        apis: Vec<String>,
    },
    /// The APIs a policy is bound to, with their binding ids.
    Bound { policy: String },
    /// Remove a binding (its id from `throttle bound`).
    Unbind { binding: String },
    /// Give one app or one user its own limit under a policy.
    Special {
        policy: String,
        #[arg(long, conflicts_with = "user")]
        app: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an AK/SK for yourself (or, as domain admin, another user); the SK is shown once.
    Create {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List your access keys (or, as domain admin, another user's); never their secrets.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Disable an access key: it signs nothing on either plane until enabled again.
    Disable { access_key: String },
    /// Enable a disabled access key.
    Enable { access_key: String },
    /// Delete an access key for good.
    Delete { access_key: String },
}

/// Request options shared by `call` and `sign`.
#[derive(Debug, Args, Clone)]
pub struct RequestArgs {
    /// HTTP method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub method: String,
    /// Header `Name: value`; repeat for several.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Body text, or @file.
    #[arg(short = 'd', long = "data", conflicts_with = "data_binary")]
    pub data: Option<String>,
    /// Body bytes from @file or text, sent as they are.
    #[arg(long)]
    pub data_binary: Option<String>,
    /// Full URL, or a path on the gateway.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// Sign with this app's AppKey/AppSecret (looked up through the management API).
    #[arg(long, group = "credential")]
    pub app: Option<String>,
    #[arg(
        long,
        env = "INFERGATE_APP_KEY",
        requires = "app_secret",
        group = "credential"
    )]
    pub app_key: Option<String>,
    #[arg(long, env = "INFERGATE_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Authenticate with an AppCode.
    #[arg(long, group = "credential")]
    pub app_code: Option<String>,
    /// Authenticate with an IAM token (the saved one with --iam).
    #[arg(long, group = "credential")]
    pub iam: bool,
    /// Print the response status and headers.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// Print what is sent and received on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the canonical request and string to sign on stderr, then send the call.
    #[arg(long)]
    pub explain: bool,
    /// Print the request that would be sent (headers, canonical request, string to sign)
    /// and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The target is a sub-path of this service's APIs (`/v1/infers/<id>` + target); a
    /// service name or id.
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[arg(long, env = "INFERGATE_APP_KEY")]
    pub app_key: String,
    #[arg(long, env = "INFERGATE_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// Signing time `YYYYMMDDTHHMMSSZ` (default now).
    #[arg(long)]
    pub date: Option<String>,
    /// Print a ready curl command instead of the headers.
    #[arg(long)]
    pub curl: bool,
    /// Print the canonical request and string to sign too.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the keys data_dir, admin_listen, gateway_listen, public_url,
    /// max_apps_per_user, max_app_codes_per_app, mask_app_secrets, max_body_bytes,
    /// max_uri_bytes, max_header_bytes, max_headers_total_bytes, access_log, log_format,
    /// gateway_tls_cert, gateway_tls_key, admin_tls_cert, admin_tls_key,
    /// require_https_for_app_code, workers, http1_fast_path, database_url, role,
    /// refresh_interval_ms, header_timeout_ms, body_idle_timeout_ms, max_connections,
    /// trusted_proxies, lockout_failure_attempts, lockout_duration_s,
    /// ak_lockout_failure_attempts, ak_lockout_duration_s, max_password_hashes,
    /// upstream_allow, redis_url.
    #[arg(long, env = "INFERGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the SQLite database, master key and initial password [default: ./infergate-data].
    #[arg(long, env = "INFERGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the management API [default: 127.0.0.1:8081].
    #[arg(long, env = "INFERGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the gateway [default: 127.0.0.1:8080].
    #[arg(long, env = "INFERGATE_GATEWAY_LISTEN")]
    pub gateway_listen: Option<SocketAddr>,
    /// Base URL of every predict_url [default: http://<gateway-listen>].
    #[arg(long, env = "INFERGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Shared PostgreSQL (postgres://…) instead of the embedded SQLite; needs
    /// INFERGATE_MASTER_KEY, the same on every node.
    #[arg(long, env = "INFERGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Planes to run: all, gateway or admin [default: all].
    #[arg(long, env = "INFERGATE_ROLE")]
    pub role: Option<String>,
    /// How often the configuration revision is checked besides change notices, in ms
    /// [default: 5000].
    #[arg(long, env = "INFERGATE_REFRESH_INTERVAL_MS")]
    pub refresh_interval_ms: Option<u64>,
    /// Threads serving both listeners [default: one per available core]; 1 runs everything
    /// on one thread, the fastest choice for a gateway given a single core.
    #[arg(long, env = "INFERGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Apps one user may own [default: 5].
    #[arg(long, env = "INFERGATE_MAX_APPS_PER_USER")]
    pub max_apps_per_user: Option<u32>,
    /// AppCodes one app may hold [default: 5].
    #[arg(long, env = "INFERGATE_MAX_APP_CODES_PER_APP")]
    pub max_app_codes_per_app: Option<u32>,
    /// Show app_secret as ****** in reads unless the request asks for it (iphertext_enabled
    /// with app_ids) [default: false].
    #[arg(long, env = "INFERGATE_MASK_APP_SECRETS", num_args = 0..=1, default_missing_value = "true")]
    pub mask_app_secrets: Option<bool>,
    /// Access log: `stdout`, `off` or a file path (one JSON line per call) [default: stdout].
    #[arg(long, env = "INFERGATE_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Format of the process log on stderr: `text` or `json` [default: text].
    #[arg(long, env = "INFERGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// PEM certificate chain of the gateway listener (enables HTTPS and HTTP/2 via ALPN).
    #[arg(long, env = "INFERGATE_GATEWAY_TLS_CERT", requires = "gateway_tls_key")]
    pub gateway_tls_cert: Option<PathBuf>,
    /// PEM private key of the gateway listener.
    #[arg(long, env = "INFERGATE_GATEWAY_TLS_KEY", requires = "gateway_tls_cert")]
    pub gateway_tls_key: Option<PathBuf>,
    /// PEM certificate chain of the admin listener.
    #[arg(long, env = "INFERGATE_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of the admin listener.
    #[arg(long, env = "INFERGATE_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// Serve plain HTTP/1.1 calls on the gateway's fast path; `false` sends every call
    /// through the general HTTP server [default: true].
    #[arg(long, env = "INFERGATE_HTTP1_FAST_PATH", num_args = 0..=1, default_missing_value = "true")]
    pub http1_fast_path: Option<bool>,
    /// Refuse AppCode and apikey credentials over plain HTTP [default: false].
    #[arg(long, env = "INFERGATE_REQUIRE_HTTPS_FOR_APP_CODE", num_args = 0..=1, default_missing_value = "true")]
    pub require_https_for_app_code: Option<bool>,
    /// Largest request body the gateway accepts, in bytes [default: 12582912].
    #[arg(long, env = "INFERGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Longest request URI, in bytes [default: 32768].
    #[arg(long, env = "INFERGATE_MAX_URI_BYTES")]
    pub max_uri_bytes: Option<usize>,
    /// Largest single request header, in bytes [default: 32768].
    #[arg(long, env = "INFERGATE_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Largest total of request headers, in bytes [default: 131072].
    #[arg(long, env = "INFERGATE_MAX_HEADERS_TOTAL_BYTES")]
    pub max_headers_total_bytes: Option<usize>,
    /// Time a client has to send a whole request head, on both listeners, in milliseconds
    /// [default: 15000].
    #[arg(long, env = "INFERGATE_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Longest pause between two reads of a request body, on both listeners, in
    /// milliseconds [default: 60000].
    #[arg(long, env = "INFERGATE_BODY_IDLE_TIMEOUT_MS")]
    pub body_idle_timeout_ms: Option<u64>,
    /// Open connections per listener; more are accepted and closed at once [default: 16384].
    #[arg(long, env = "INFERGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Comma-separated networks (CIDR) of proxies whose X-Forwarded-For chain the gateway
    /// keeps and appends to [default: none: X-Forwarded-For is the peer's address alone].
    #[arg(long, env = "INFERGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Consecutive wrong passwords that lock a user; 0 turns the lockout off [default: 5].
    #[arg(long, env = "INFERGATE_LOCKOUT_FAILURE_ATTEMPTS")]
    pub lockout_failure_attempts: Option<u32>,
    /// How long a password lockout lasts, in seconds [default: 900].
    #[arg(long, env = "INFERGATE_LOCKOUT_DURATION_S")]
    pub lockout_duration_s: Option<u64>,
    /// Consecutive failed signatures that lock an IAM access key; 0 turns it off
    /// [default: 5].
    #[arg(long, env = "INFERGATE_AK_LOCKOUT_FAILURE_ATTEMPTS")]
    pub ak_lockout_failure_attempts: Option<u32>,
    /// How long an access-key lockout lasts, in seconds [default: 300].
    #[arg(long, env = "INFERGATE_AK_LOCKOUT_DURATION_S")]
    pub ak_lockout_duration_s: Option<u64>,
    /// Password hashes computed at once; more logins are answered 429 with Retry-After
    /// [default: one per available core].
    #[arg(long, env = "INFERGATE_MAX_PASSWORD_HASHES")]
    pub max_password_hashes: Option<usize>,
    /// Comma-separated hosts (`models.internal`, `*.gpu.internal`) and networks (CIDR) that
    /// services may point at [default: any host; never this node's own listeners].
    #[arg(long, env = "INFERGATE_UPSTREAM_ALLOW", value_delimiter = ',')]
    pub upstream_allow: Option<Vec<String>>,
    /// redis://… shared by the nodes of a cluster, where throttling limits are counted so
    /// they hold across nodes [default: none: each node counts alone].
    #[arg(long, env = "INFERGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
}

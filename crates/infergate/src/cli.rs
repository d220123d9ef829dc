//! Command-line grammar. Every `serve` option is also an `INFERGATE_*` variable and a key
//! of the TOML file given by `--config`; flags win over the environment, the environment
//! over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::ArgValueCandidates;

use crate::client::complete;

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

/// The client options, listed once under the top command: in each command's own help they
/// would repeat (they are hidden there, and accepted before or after the command).
const CLIENT_OPTIONS: &str = "\
Client options (any command that talks to a server, before or after it; each overrides what
`infergate login` saved):
      --url <URL>          Management API base URL [env: INFERGATE_URL]
      --gateway <URL>      Gateway base URL, for `call` with a path [env: INFERGATE_GATEWAY_URL]
      --project <ID>       Project id [env: INFERGATE_PROJECT]
      --token <TOKEN>      IAM token [env: INFERGATE_TOKEN]
  -o, --output <FORMAT>    table (aligned, for people; the default) or json (the API's own)
      --field <NAME>       Print only this field of the answer, one value per line

Shell completion (names of services, apps, policies and users from the server):
  bash: source <(infergate completions bash)     zsh: source <(infergate completions zsh)
  fish: infergate completions fish | source";

/// The footer of each client command's help.
const CLIENT_FOOTER: &str =
    "Client options (--url, --gateway, --project, --token, -o/--output, --field): infergate --help";

/// Commands that run on the server's side, with no client options.
const SERVER_SIDE: &[&str] = &["serve", "migrate", "unlock", "completions"];

/// The whole grammar, with the client options listed once (see [`CLIENT_OPTIONS`]).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command().after_help(CLIENT_OPTIONS);
    let clients: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .filter(|name| !SERVER_SIDE.contains(&name.as_str()))
        .collect();
    for name in clients {
        cmd = cmd.mut_subcommand(name, |sub| {
            let after = sub
                .get_after_help()
                .map(|help| format!("{help}\n\n"))
                .unwrap_or_default();
            sub.after_help(format!("{after}{CLIENT_FOOTER}"))
        });
    }
    cmd
}

/// Options of every client command; each overrides what `infergate login` saved.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// Management API base URL.
    #[arg(long, global = true, hide = true, env = "INFERGATE_URL")]
    pub url: Option<String>,
    /// Gateway base URL, for `call` with a path.
    #[arg(long, global = true, hide = true, env = "INFERGATE_GATEWAY_URL")]
    pub gateway: Option<String>,
    /// Project id.
    #[arg(long, global = true, hide = true, env = "INFERGATE_PROJECT")]
    pub project: Option<String>,
    /// IAM token.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "INFERGATE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, hide = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print only this field of the answer, for scripts: every value of that name, at any
    /// depth, one per line, a list's items each on its own (e.g. `--field service_id`).
    #[arg(long, global = true, hide = true, value_name = "NAME")]
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
        #[arg(add = ArgValueCandidates::new(complete::users), long)]
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
        after_help = "Examples:\n  infergate login --url http://127.0.0.1:8081 --user admin\n  INFERGATE_PASSWORD=… infergate login --url http://10.0.0.2:8081 --user ops --project-name team-a"
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
    /// Token usage of model calls (chat/completions, completions, embeddings, responses),
    /// per app and API.
    #[command(
        after_help = "Examples:\n  infergate usage\n  infergate usage --app mobile --granularity day --from 2026-12-01T00:00:00Z\n  infergate usage --service llama --granularity minute"
    )]
    Usage(UsageArgs),
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
    /// Print the shell's completion script: names of services, apps, policies and users
    /// are asked of the server (with the saved login) as you type.
    #[command(
        after_help = "Install:\n  bash: echo 'source <(infergate completions bash)' >> ~/.bashrc\n  zsh:  echo 'source <(infergate completions zsh)' >> ~/.zshrc\n  fish: echo 'infergate completions fish | source' >> ~/.config/fish/config.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this app's calls (name or id).
    #[arg(add = ArgValueCandidates::new(complete::apps), long)]
    pub app: Option<String>,
    /// Only calls of this service's APIs (name or id).
    #[arg(add = ArgValueCandidates::new(complete::services), long)]
    pub service: Option<String>,
    /// Start: RFC 3339 or epoch milliseconds [default: a day before --to].
    #[arg(long)]
    pub from: Option<String>,
    /// End: RFC 3339 or epoch milliseconds [default: now].
    #[arg(long)]
    pub to: Option<String>,
    /// minute, hour or day (UTC).
    #[arg(long, default_value = "hour")]
    pub granularity: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(add = ArgValueCandidates::new(complete::users), long)]
    pub user: String,
    /// Project name to scope the token to.
    #[arg(long, default_value = "default")]
    pub project_name: String,
    /// Domain name.
    #[arg(long, default_value = "default")]
    pub domain: String,
}

/// The settings a service is created with or changed to (each left out: the default on
/// create, kept on update).
#[derive(Debug, Args)]
pub struct ServiceSettings {
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// How long a call waits for the upstream's answer, in milliseconds [new services:
    /// 40000].
    #[arg(long)]
    pub timeout_ms: Option<i64>,
    /// Read model calls' token usage (on by default); false leaves bodies untouched.
    #[arg(long)]
    pub usage_accounting: Option<bool>,
    /// How calls are spread over the upstreams [new services: least_outstanding].
    #[arg(long, value_parser = ["least_outstanding", "round_robin"])]
    pub load_balancing: Option<String>,
    /// The weight of each upstream (1-100, in their order), comma-separated, e.g. 3,1
    /// [default: all equal; on update, new upstreams reset it].
    #[arg(long, value_delimiter = ',')]
    pub upstream_weights: Option<Vec<i64>>,
    /// A PEM file of the CA certificates `https://` upstreams are verified against
    /// (instead of the system's roots); on update, an empty file removes it.
    #[arg(long)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The upstreams' active health check as JSON, e.g. '{"path": "/health",
    /// "interval_ms": 5000}'; on update, 'null' removes it.
    #[arg(long)]
    pub health_check: Option<String>,
    /// When a call goes on to another upstream, as JSON, e.g. '{"attempts": 2, "on":
    /// ["connect", "5xx", "429"]}'; on update, 'null' removes it.
    #[arg(long)]
    pub retry: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Create a service.
    Create {
        /// The service's name, unique in the project.
        #[arg(long)]
        name: String,
        /// Upstream base URL; repeat for several.
        #[arg(long = "upstream", required = true)]
        upstreams: Vec<String>,
        #[command(flatten)]
        settings: ServiceSettings,
    },
    /// List services.
    List,
    /// Show a service (by name or id).
    Show {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: String,
    },
    /// Change a service's upstreams, description or timeout.
    Update {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: String,
        /// New upstream base URLs, replacing the old; repeat for several.
        #[arg(long = "upstream")]
        upstreams: Vec<String>,
        #[command(flatten)]
        settings: ServiceSettings,
    },
    /// Delete a service with its APIs and their authorizations.
    Delete {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiCmd {
    /// Create an API of a service.
    Create {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
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
        /// The API's name [default: infer_<service id>].
        #[arg(long)]
        name: Option<String>,
        /// API path (default /v1/infers/<service id>).
        #[arg(long)]
        path: Option<String>,
        /// Free text.
        #[arg(long)]
        remark: Option<String>,
    },
    /// List the APIs of a service.
    List {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
        service: String,
    },
    /// Show an API.
    Show {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
        service: String,
        /// The API's id (see `infergate api list`).
        api: String,
    },
    /// Delete an API and its authorizations.
    Delete {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
        service: String,
        /// The API's id (see `infergate api list`).
        api: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Create an app; its AppSecret is shown once.
    Create {
        /// 3-64 letters, digits or _, starting with a letter; unique among your apps.
        #[arg(long)]
        name: String,
        /// Free text.
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
    Show {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
    },
    /// Whether an app of that name exists.
    Exists {
        /// The app name to look for.
        name: String,
    },
    /// Delete an app (it must not be authorized to any API).
    Delete {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
    },
    /// Replace the AppSecret; the old one stops working at once.
    ResetSecret {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
    },
    /// The APIs an app is authorized for.
    Apis {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
    },
    /// AppCodes.
    #[command(subcommand)]
    Code(CodeCmd),
    /// Authorize an app to a service's API (registering the APP API if needed).
    Authorize {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps), long)]
        app: String,
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
        service: String,
        /// A specific API id (default: the service's APP API).
        #[arg(long)]
        api: Option<String>,
    },
    /// Revoke an app's authorization to a service's API.
    Unauthorize {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps), long)]
        app: String,
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
        service: String,
        /// A specific API id [default: the service's APP API].
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CodeCmd {
    /// Add a generated AppCode.
    Add {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
    },
    /// Replace an AppCode by a new one.
    Reset {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
        /// The AppCode's id.
        code: String,
    },
    /// Delete an AppCode; it stops working at once.
    Delete {
        /// The app, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::apps))]
        app: String,
        /// The AppCode's id.
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Apps and whether each may call the API.
    List {
        /// The service, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::services), long)]
        service: String,
        /// A specific API id [default: the service's APP API].
        #[arg(long)]
        api: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user; the password is read from INFERGATE_NEW_PASSWORD or prompted.
    Create {
        /// The user's name in the default domain.
        #[arg(long)]
        name: String,
    },
    List,
    Delete {
        /// The user, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::users))]
        user: String,
    },
    /// End a password lockout (enables the user).
    Unlock {
        /// The user, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::users))]
        user: String,
    },
    /// Disable a user: no logins, tokens or keys work until it is enabled again.
    Disable {
        /// The user, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::users))]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    Create {
        /// The project's name.
        #[arg(long)]
        name: String,
        /// Free text.
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
        /// The user, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::users), long)]
        user: String,
        /// The project, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::projects), long)]
        project: String,
        /// admin, member or viewer.
        #[arg(long)]
        role: String,
    },
    /// Take a role away.
    Revoke {
        /// The user, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::users), long)]
        user: String,
        /// The project, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::projects), long)]
        project: String,
        /// admin, member or viewer.
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
        /// Calls (tokens, with --tokens) per window of each bound API (or of all together,
        /// with --shared).
        #[arg(long)]
        api_limit: i64,
        /// Calls (tokens) per window by one IAM user.
        #[arg(long)]
        user_limit: Option<i64>,
        /// Calls (tokens) per window by one app.
        #[arg(long)]
        app_limit: Option<i64>,
        /// Calls (tokens) per window from one source IP.
        #[arg(long)]
        ip_limit: Option<i64>,
        /// Count the total tokens of model calls instead of calls (a TOKEN policy: each
        /// call reserves its max_tokens plus its body's bytes / 4, settled when it ends).
        #[arg(long)]
        tokens: bool,
        /// With --tokens: the completion tokens reserved for a call without max_tokens
        /// [default: 1024].
        #[arg(long, requires = "tokens")]
        default_max_tokens: Option<i64>,
        /// The window's length, in units.
        #[arg(long, default_value_t = 1)]
        interval: i64,
        /// SECOND, MINUTE, HOUR or DAY.
        #[arg(long, default_value = "MINUTE")]
        unit: String,
        /// One count for all bound APIs (type 2) instead of one per API.
        #[arg(long)]
        shared: bool,
        /// Free text.
        #[arg(long)]
        remark: Option<String>,
    },
    /// List the project's policies.
    List,
    /// Delete a policy with its bindings and special limits.
    Delete {
        /// The throttling policy, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::throttles))]
        policy: String,
    },
    /// Bind a policy to every API of services, or to APIs by id.
    Bind {
        /// The throttling policy, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::throttles))]
        policy: String,
        /// Bind every API of this service (name or id); repeat for several.
        #[arg(add = ArgValueCandidates::new(complete::services), long = "service")]
        services: Vec<String>,
        /// Bind this API (id); repeat for several.
        #[arg(long = "api")]
        apis: Vec<String>,
    },
    /// The APIs a policy is bound to, with their binding ids.
    Bound {
        /// The throttling policy, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::throttles))]
        policy: String,
    },
    /// Remove a binding (its id from `throttle bound`).
    Unbind {
        /// The binding's id (see `infergate throttle bound`).
        binding: String,
    },
    /// Give one app or one user its own limit under a policy.
    Special {
        /// The throttling policy, by name or id.
        #[arg(add = ArgValueCandidates::new(complete::throttles))]
        policy: String,
        /// The app (name or id) that gets its own limit.
        #[arg(add = ArgValueCandidates::new(complete::apps), long, conflicts_with = "user")]
        app: Option<String>,
        /// The user (name or id) that gets its own limit.
        #[arg(add = ArgValueCandidates::new(complete::users), long)]
        user: Option<String>,
        /// Calls per window for that app or user, instead of the policy's.
        #[arg(long)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create an AK/SK for yourself (or, as domain admin, another user); the SK is shown once.
    Create {
        /// Another user's name or id (domain admins only) [default: yourself].
        #[arg(add = ArgValueCandidates::new(complete::users), long)]
        user: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// List your access keys (or, as domain admin, another user's); never their secrets.
    List {
        /// Another user's name or id (domain admins only) [default: yourself].
        #[arg(add = ArgValueCandidates::new(complete::users), long)]
        user: Option<String>,
    },
    /// Disable an access key: it signs nothing on either plane until enabled again.
    Disable {
        /// The access key (AK).
        access_key: String,
    },
    /// Enable a disabled access key.
    Enable {
        /// The access key (AK).
        access_key: String,
    },
    /// Delete an access key for good.
    Delete {
        /// The access key (AK).
        access_key: String,
    },
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
    #[arg(add = ArgValueCandidates::new(complete::apps), long, group = "credential")]
    pub app: Option<String>,
    #[arg(
        long,
        env = "INFERGATE_APP_KEY",
        requires = "app_secret",
        group = "credential"
    )]
    /// Sign with this AppKey (with --app-secret).
    pub app_key: Option<String>,
    /// The AppSecret of --app-key.
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
    #[arg(add = ArgValueCandidates::new(complete::services), long)]
    pub service: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    /// The app's AppKey.
    #[arg(long, env = "INFERGATE_APP_KEY")]
    pub app_key: String,
    /// The app's AppSecret.
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
    /// upstream_allow, cors_origins, upstream_keepalive, listen_backlog, redis_url,
    /// usage_flush_ms, otlp_endpoint, trace_sampling_ratio, otlp_service_name, metrics_token,
    /// admin_hosts.
    #[arg(long, env = "INFERGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the SQLite database, master key and initial password [default: ./infergate-data].
    #[arg(help_heading = "Store and cluster", long, env = "INFERGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the management API [default: 127.0.0.1:8081].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the gateway [default: 127.0.0.1:8080].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_GATEWAY_LISTEN")]
    pub gateway_listen: Option<SocketAddr>,
    /// Base URL of every predict_url [default: http://<gateway-listen>].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Shared PostgreSQL (postgres://…) instead of the embedded SQLite; needs
    /// INFERGATE_MASTER_KEY, the same on every node.
    #[arg(
        help_heading = "Store and cluster",
        long,
        env = "INFERGATE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Planes to run: all, gateway or admin [default: all].
    #[arg(help_heading = "Store and cluster", long, env = "INFERGATE_ROLE")]
    pub role: Option<String>,
    /// How often the configuration revision is checked besides change notices, in ms
    /// [default: 5000].
    #[arg(
        help_heading = "Store and cluster",
        long,
        env = "INFERGATE_REFRESH_INTERVAL_MS"
    )]
    pub refresh_interval_ms: Option<u64>,
    /// Threads serving both listeners [default: one per available core]; 1 runs everything
    /// on one thread, the fastest choice for a gateway given a single core.
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Apps one user may own [default: 5].
    #[arg(help_heading = "Quotas", long, env = "INFERGATE_MAX_APPS_PER_USER")]
    pub max_apps_per_user: Option<u32>,
    /// AppCodes one app may hold [default: 5].
    #[arg(help_heading = "Quotas", long, env = "INFERGATE_MAX_APP_CODES_PER_APP")]
    pub max_app_codes_per_app: Option<u32>,
    /// Show app_secret as ****** in reads unless the request asks for it (iphertext_enabled
    /// with app_ids) [default: false].
    #[arg(help_heading = "Credentials and security", long, env = "INFERGATE_MASK_APP_SECRETS", num_args = 0..=1, default_missing_value = "true")]
    pub mask_app_secrets: Option<bool>,
    /// Access log: `stdout`, `off` or a file path (one JSON line per call) [default: stdout].
    #[arg(help_heading = "Logging", long, env = "INFERGATE_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Format of the process log on stderr: `text` or `json` [default: text].
    #[arg(help_heading = "Logging", long, env = "INFERGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// PEM certificate chain of the gateway listener (enables HTTPS and HTTP/2 via ALPN).
    #[arg(
        help_heading = "Listeners",
        long,
        env = "INFERGATE_GATEWAY_TLS_CERT",
        requires = "gateway_tls_key"
    )]
    pub gateway_tls_cert: Option<PathBuf>,
    /// PEM private key of the gateway listener.
    #[arg(
        help_heading = "Listeners",
        long,
        env = "INFERGATE_GATEWAY_TLS_KEY",
        requires = "gateway_tls_cert"
    )]
    pub gateway_tls_key: Option<PathBuf>,
    /// PEM certificate chain of the admin listener.
    #[arg(
        help_heading = "Listeners",
        long,
        env = "INFERGATE_ADMIN_TLS_CERT",
        requires = "admin_tls_key"
    )]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of the admin listener.
    #[arg(
        help_heading = "Listeners",
        long,
        env = "INFERGATE_ADMIN_TLS_KEY",
        requires = "admin_tls_cert"
    )]
    pub admin_tls_key: Option<PathBuf>,
    /// Serve HTTP/1.1 calls (in the clear or over TLS) on the gateway's fast path; `false`
    /// sends every call through the general HTTP server [default: true].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_HTTP1_FAST_PATH", num_args = 0..=1, default_missing_value = "true")]
    pub http1_fast_path: Option<bool>,
    /// Refuse AppCode and apikey credentials over plain HTTP [default: false].
    #[arg(help_heading = "Credentials and security", long, env = "INFERGATE_REQUIRE_HTTPS_FOR_APP_CODE", num_args = 0..=1, default_missing_value = "true")]
    pub require_https_for_app_code: Option<bool>,
    /// Largest request body the gateway accepts, in bytes [default: 12582912].
    #[arg(
        help_heading = "Request limits",
        long,
        env = "INFERGATE_MAX_BODY_BYTES"
    )]
    pub max_body_bytes: Option<usize>,
    /// Longest request URI, in bytes [default: 32768].
    #[arg(help_heading = "Request limits", long, env = "INFERGATE_MAX_URI_BYTES")]
    pub max_uri_bytes: Option<usize>,
    /// Largest single request header, in bytes [default: 32768].
    #[arg(
        help_heading = "Request limits",
        long,
        env = "INFERGATE_MAX_HEADER_BYTES"
    )]
    pub max_header_bytes: Option<usize>,
    /// Largest total of request headers, in bytes [default: 131072].
    #[arg(
        help_heading = "Request limits",
        long,
        env = "INFERGATE_MAX_HEADERS_TOTAL_BYTES"
    )]
    pub max_headers_total_bytes: Option<usize>,
    /// Time a client has to send a whole request head, on both listeners, in milliseconds
    /// [default: 15000].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Longest pause between two reads of a request body, on both listeners, in
    /// milliseconds [default: 60000].
    #[arg(
        help_heading = "Listeners",
        long,
        env = "INFERGATE_BODY_IDLE_TIMEOUT_MS"
    )]
    pub body_idle_timeout_ms: Option<u64>,
    /// Idle connections kept open per upstream (per transport); more are closed [default: 256].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_UPSTREAM_KEEPALIVE")]
    pub upstream_keepalive: Option<usize>,
    /// Connections a listener's queue holds before they are accepted (capped by the
    /// kernel's net.core.somaxconn) [default: 4096].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_LISTEN_BACKLOG")]
    pub listen_backlog: Option<u32>,
    /// Open connections per listener; more are accepted and closed at once [default: 16384].
    #[arg(help_heading = "Listeners", long, env = "INFERGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Comma-separated networks (CIDR) of proxies whose X-Forwarded-For chain the gateway
    /// keeps and appends to [default: none: X-Forwarded-For is the peer's address alone].
    #[arg(
        help_heading = "Listeners",
        long,
        env = "INFERGATE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Consecutive wrong passwords that lock a user; 0 turns the lockout off [default: 5].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_LOCKOUT_FAILURE_ATTEMPTS"
    )]
    pub lockout_failure_attempts: Option<u32>,
    /// How long a password lockout lasts, in seconds [default: 900].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_LOCKOUT_DURATION_S"
    )]
    pub lockout_duration_s: Option<u64>,
    /// Consecutive failed signatures that lock an IAM access key; 0 turns it off
    /// [default: 5].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_AK_LOCKOUT_FAILURE_ATTEMPTS"
    )]
    pub ak_lockout_failure_attempts: Option<u32>,
    /// How long an access-key lockout lasts, in seconds [default: 300].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_AK_LOCKOUT_DURATION_S"
    )]
    pub ak_lockout_duration_s: Option<u64>,
    /// Password hashes computed at once; more logins are answered 429 with Retry-After
    /// [default: one per available core].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_MAX_PASSWORD_HASHES"
    )]
    pub max_password_hashes: Option<usize>,
    /// Comma-separated hosts (`models.internal`, `*.gpu.internal`) and networks (CIDR) that
    /// services may point at [default: any host; never this node's own listeners].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_UPSTREAM_ALLOW",
        value_delimiter = ','
    )]
    pub upstream_allow: Option<Vec<String>>,
    /// Comma-separated origins (scheme://host[:port]) whose web pages may call the gateway
    /// and read its answers (CORS); '' for none [default: the console's, http://<admin-listen>].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Option<Vec<String>>,
    /// Comma-separated host names under which web pages may write to the admin listener
    /// besides IP addresses, localhost, this machine's name and the public URL's host: the
    /// console's name behind a proxy or DNS; a page under any other name (a name rebound to
    /// this node) is refused [default: none, only those].
    #[arg(
        help_heading = "Credentials and security",
        long,
        env = "INFERGATE_ADMIN_HOSTS",
        value_delimiter = ','
    )]
    pub admin_hosts: Option<Vec<String>>,
    /// redis://… shared by the nodes of a cluster, where throttling limits are counted so
    /// they hold across nodes [default: none: each node counts alone].
    #[arg(
        help_heading = "Store and cluster",
        long,
        env = "INFERGATE_REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// How often this node adds its calls by answer and its model calls' token usage to the
    /// store, in milliseconds [default: 10000].
    #[arg(
        help_heading = "Store and cluster",
        long,
        env = "INFERGATE_USAGE_FLUSH_MS"
    )]
    pub usage_flush_ms: Option<u64>,
    /// OpenTelemetry collector that receives a span per call, over OTLP/HTTP (protobuf):
    /// its traces URL, or a base URL that `/v1/traces` is added to
    /// (`http://127.0.0.1:4318`) [default: none: tracing off].
    #[arg(help_heading = "Logging", long, env = "INFERGATE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces that are sampled, 0 to 1; a client's trace keeps its own
    /// sampling decision [default: 1, every new trace].
    #[arg(help_heading = "Logging", long, env = "INFERGATE_TRACE_SAMPLING_RATIO")]
    pub trace_sampling_ratio: Option<f64>,
    /// `service.name` of the exported spans [default: infergate].
    #[arg(help_heading = "Logging", long, env = "INFERGATE_OTLP_SERVICE_NAME")]
    pub otlp_service_name: Option<String>,
    /// Bearer token `/metrics` asks for (Prometheus: `authorization: {credentials: …}`), at
    /// least 16 visible ASCII characters [default: none: `/metrics` answers loopback
    /// clients only].
    #[arg(
        help_heading = "Logging",
        long,
        env = "INFERGATE_METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every command, with the path of commands to it.
    fn arguments(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for arg in cmd.get_arguments() {
            out.push((path.to_owned(), arg.clone()));
        }
        for sub in cmd.get_subcommands() {
            arguments(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_is_described_and_client_options_are_listed_once() {
        let mut cmd = command();
        cmd.build();
        let mut all = Vec::new();
        arguments(&cmd, "infergate", &mut all);
        let undescribed: Vec<String> = all
            .iter()
            .filter(|(_, arg)| !matches!(arg.get_id().as_str(), "help" | "version"))
            .filter(|(_, arg)| {
                arg.get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
            })
            .map(|(path, arg)| format!("{path}: {}", arg.get_id()))
            .collect();
        assert!(undescribed.is_empty(), "no description: {undescribed:#?}");
        // The client options: hidden in each command, listed under the top command.
        let top = cmd.render_help().to_string();
        for arg in Cli::command().get_arguments().filter(|a| a.is_global_set()) {
            assert!(arg.is_hide_set(), "{}", arg.get_id());
            let long = format!("--{}", arg.get_long().expect("long"));
            assert!(top.contains(&long), "infergate --help lacks {long}");
        }
        let serve = cmd
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_help()
            .to_string();
        assert!(
            !serve.contains("--url") && !serve.contains("--token"),
            "{serve}"
        );
        for heading in [
            "Listeners:",
            "Store and cluster:",
            "Request limits:",
            "Logging:",
        ] {
            assert!(serve.contains(heading), "{heading} in {serve}");
        }
        let service = cmd
            .find_subcommand_mut("service")
            .expect("service")
            .render_help()
            .to_string();
        assert!(service.contains(CLIENT_FOOTER), "{service}");
        assert!(!service.contains("--token <"), "{service}");
    }
}

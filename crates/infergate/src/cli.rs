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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the management plane and the gateway (embedded SQLite by default).
    #[command(
        after_help = "Examples:\n  infergate serve\n  INFERGATE_ADMIN_PASSWORD=s3cret-pass infergate serve --data-dir /var/lib/infergate\n  infergate serve --config /etc/infergate.toml --public-url https://infer.example.com"
    )]
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the keys data_dir, admin_listen, gateway_listen, public_url,
    /// max_apps_per_user, max_app_codes_per_app, mask_app_secrets, max_body_bytes,
    /// max_uri_bytes, max_header_bytes, max_headers_total_bytes.
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
}

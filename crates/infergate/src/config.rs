//! The resolved configuration of `serve`: flags and environment (through clap), then the
//! TOML file, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use infergate_admin::AdminSettings;
use infergate_core::crypto::Secret;
use infergate_core::lockout::LockoutPolicy;
use infergate_core::net::AllowedHost;
use infergate_gateway::{Cidr, CorsOrigins, Limits, ListenerSettings, TraceSettings};

use crate::cli::ServeArgs;

/// Keys of the optional TOML file; unknown keys are an error so typos do not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub admin_listen: Option<SocketAddr>,
    pub gateway_listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
    pub role: Option<String>,
    pub refresh_interval_ms: Option<u64>,
    pub max_apps_per_user: Option<u32>,
    pub max_app_codes_per_app: Option<u32>,
    pub mask_app_secrets: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_headers_total_bytes: Option<usize>,
    pub access_log: Option<String>,
    pub log_format: Option<String>,
    pub gateway_tls_cert: Option<PathBuf>,
    pub gateway_tls_key: Option<PathBuf>,
    pub admin_tls_cert: Option<PathBuf>,
    pub admin_tls_key: Option<PathBuf>,
    pub require_https_for_app_code: Option<bool>,
    pub workers: Option<usize>,
    pub http1_fast_path: Option<bool>,
    pub header_timeout_ms: Option<u64>,
    pub body_idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub trusted_proxies: Option<Vec<String>>,
    pub lockout_failure_attempts: Option<u32>,
    pub lockout_duration_s: Option<u64>,
    pub ak_lockout_failure_attempts: Option<u32>,
    pub ak_lockout_duration_s: Option<u64>,
    pub max_password_hashes: Option<usize>,
    pub upstream_allow: Option<Vec<String>>,
    pub cors_origins: Option<Vec<String>>,
    pub admin_hosts: Option<Vec<String>>,
    pub upstream_keepalive: Option<usize>,
    pub listen_backlog: Option<u32>,
    pub redis_url: Option<String>,
    pub usage_flush_ms: Option<u64>,
    pub otlp_endpoint: Option<String>,
    pub trace_sampling_ratio: Option<f64>,
    pub metrics_token: Option<String>,
    pub otlp_service_name: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub admin_listen: SocketAddr,
    pub gateway_listen: SocketAddr,
    /// `None`: derived from the bound gateway address once it is known.
    pub public_url: Option<String>,
    pub max_apps_per_user: u32,
    pub max_app_codes_per_app: u32,
    pub mask_app_secrets: bool,
    pub limits: Limits,
    pub database_url: Option<String>,
    pub role: Role,
    pub refresh_interval: std::time::Duration,
    pub access_log: AccessLogTarget,
    pub log_json: bool,
    /// (certificate, key) PEM files.
    pub gateway_tls: Option<(PathBuf, PathBuf)>,
    pub admin_tls: Option<(PathBuf, PathBuf)>,
    pub require_https_for_app_code: bool,
    /// Runtime threads; `None`: one per available core.
    pub workers: Option<usize>,
    /// Whether HTTP/1.1 calls (in the clear or over TLS) take the gateway's fast path.
    pub http1_fast_path: bool,
    /// Timeouts, connection cap and trusted proxies of both listeners.
    pub listener: ListenerSettings,
    /// Consecutive wrong passwords that lock a user, and for how long.
    pub password_lockout: LockoutPolicy,
    /// Consecutive failed signatures that lock an IAM access key, and for how long.
    pub access_key_lockout: LockoutPolicy,
    /// Password hashes computed at once.
    pub max_password_hashes: usize,
    /// Hosts and networks services may point at; empty: any (never this node).
    pub upstream_allow: Vec<AllowedHost>,
    /// Origins whose pages may call the gateway; `None`: the console's own.
    pub cors_origins: Option<CorsOrigins>,
    /// Idle connections kept per upstream.
    pub upstream_keepalive: usize,
    /// The listen queue of both listeners.
    pub listen_backlog: u32,
    /// Redis holding the throttling counts of several nodes.
    pub redis_url: Option<String>,
    /// How often calls by answer and model calls' token usage are added to the store.
    pub usage_flush: std::time::Duration,
    /// Where spans of calls go; none: tracing off.
    pub tracing: Option<TraceSettings>,
    /// The bearer token `/metrics` asks for; none: loopback clients only.
    pub metrics_token: Option<Secret>,
    /// Host names besides IP addresses and `localhost` under which pages may write to the
    /// admin listener, lowercase.
    pub admin_hosts: Vec<String>,
}

/// An entry of `admin_hosts`: a DNS name (letters, digits, `-` and `.`), no port.
fn admin_host(entry: &str) -> Result<String, String> {
    infergate_core::net::host_name(entry).ok_or_else(|| {
        format!("{entry:?} is not a host name (letters, digits, '-' and '.', no port or scheme)")
    })
}

/// The metrics token, if one is set: at least 16 characters, each visible ASCII (it is sent
/// as `Authorization: Bearer <token>`).
fn metrics_token(token: Option<String>) -> anyhow::Result<Option<Secret>> {
    let Some(token) = token else {
        return Ok(None);
    };
    if token.len() < 16 {
        bail!(
            "metrics_token must have at least 16 characters, got {}",
            token.len()
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("metrics_token must be visible ASCII characters (no spaces or control characters)");
    }
    Ok(Some(Secret::new(token)))
}

/// The tracing settings: the endpoint (a traces URL, or a base URL `/v1/traces` is added
/// to), the sampling ratio (0 to 1) and the service name; without an endpoint, none.
fn trace_settings(
    endpoint: Option<String>,
    ratio: Option<f64>,
    service_name: Option<String>,
) -> anyhow::Result<Option<TraceSettings>> {
    if let Some(ratio) = ratio {
        if !(0.0..=1.0).contains(&ratio) {
            bail!("trace_sampling_ratio must be between 0 and 1, got {ratio}");
        }
    }
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let mut url = url::Url::parse(&endpoint)
        .with_context(|| format!("otlp_endpoint {endpoint:?} is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("otlp_endpoint {endpoint:?} must be an http or https URL with a host");
    }
    if matches!(url.path(), "" | "/") {
        url.set_path("/v1/traces");
    }
    let service_name = service_name.unwrap_or_else(|| "infergate".into());
    if service_name.trim().is_empty() {
        bail!("otlp_service_name must not be empty");
    }
    Ok(Some(TraceSettings {
        endpoint: url.to_string(),
        sampling_ratio: ratio.unwrap_or(1.0),
        service_name,
    }))
}

/// A list setting's entries, each read by `parse` (blank ones skipped).
fn entries<T>(
    name: &str,
    values: Option<Vec<String>>,
    parse: fn(&str) -> Result<T, String>,
) -> anyhow::Result<Vec<T>> {
    values
        .unwrap_or_default()
        .iter()
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| parse(entry).map_err(|e| anyhow::anyhow!("{name}: {e}")))
        .collect()
}

/// A lockout policy from its two settings; 0 attempts turns it off.
fn lockout(
    name: &str,
    attempts: Option<u32>,
    duration_s: Option<u64>,
    default: LockoutPolicy,
) -> anyhow::Result<LockoutPolicy> {
    let duration_s = positive(
        &format!("{name}_duration_s"),
        duration_s,
        (default.duration_ms / 1000) as u64,
    )?;
    if duration_s > 7 * 24 * 3600 {
        bail!("{name}_duration_s must be at most 604800 (a week)");
    }
    Ok(LockoutPolicy {
        attempts: attempts.unwrap_or(default.attempts),
        duration_ms: duration_s as i64 * 1000,
    })
}

/// Which planes a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Gateway,
    Admin,
}

impl Role {
    pub fn admin(self) -> bool {
        self != Role::Gateway
    }

    pub fn gateway(self) -> bool {
        self != Role::Admin
    }
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

fn tls_pair(
    name: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        _ => bail!("{name}_tls_cert and {name}_tls_key go together"),
    }
}

fn positive<N: PartialEq + Default + Copy>(
    name: &str,
    value: Option<N>,
    default: N,
) -> anyhow::Result<N> {
    match value {
        Some(n) if n == N::default() => bail!("{name} must be at least 1"),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_GATEWAY_LISTEN: &str = "127.0.0.1:8080";
/// The listen queue nginx uses by default on Linux (the kernel caps it at somaxconn).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;

impl Settings {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let public_url = args.public_url.or(file.public_url);
        if let Some(url) = &public_url {
            let parsed = url::Url::parse(url)
                .with_context(|| format!("public_url {url:?} is not an absolute URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                bail!("public_url {url:?} must be an http or https URL with a host");
            }
        }
        let access_log = match args.access_log.or(file.access_log).as_deref() {
            None | Some("stdout") | Some("-") => AccessLogTarget::Stdout,
            Some("off") => AccessLogTarget::Off,
            Some(path) => AccessLogTarget::File(PathBuf::from(path)),
        };
        let log_json = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format {other:?} is not text or json"),
        };
        let gateway_tls = tls_pair(
            "gateway",
            args.gateway_tls_cert.or(file.gateway_tls_cert),
            args.gateway_tls_key.or(file.gateway_tls_key),
        )?;
        let admin_tls = tls_pair(
            "admin",
            args.admin_tls_cert.or(file.admin_tls_cert),
            args.admin_tls_key.or(file.admin_tls_key),
        )?;
        let require_https_for_app_code = args
            .require_https_for_app_code
            .or(file.require_https_for_app_code)
            .unwrap_or(false);
        let role = match args.role.or(file.role).as_deref() {
            None | Some("all") => Role::All,
            Some("gateway") => Role::Gateway,
            Some("admin") => Role::Admin,
            Some(other) => bail!("role {other:?} is not all, gateway or admin"),
        };
        let refresh_interval = std::time::Duration::from_millis(positive(
            "refresh_interval_ms",
            args.refresh_interval_ms.or(file.refresh_interval_ms),
            5000,
        )?);
        let workers = match args.workers.or(file.workers) {
            None => None,
            Some(n) => Some(positive("workers", Some(n), 1)?),
        };
        let database_url = args.database_url.or(file.database_url);
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("database_url must be a postgres:// URL");
            }
        }
        let listener_defaults = ListenerSettings::default();
        let millis = |name: &str, value: Option<u64>, default: std::time::Duration| {
            positive(name, value, default.as_millis() as u64).map(std::time::Duration::from_millis)
        };
        let trusted_proxies = entries(
            "trusted_proxies",
            args.trusted_proxies.or(file.trusted_proxies),
            Cidr::parse,
        )?;
        let listener = ListenerSettings {
            header_timeout: millis(
                "header_timeout_ms",
                args.header_timeout_ms.or(file.header_timeout_ms),
                listener_defaults.header_timeout,
            )?,
            body_idle_timeout: millis(
                "body_idle_timeout_ms",
                args.body_idle_timeout_ms.or(file.body_idle_timeout_ms),
                listener_defaults.body_idle_timeout,
            )?,
            max_connections: positive(
                "max_connections",
                args.max_connections.or(file.max_connections),
                listener_defaults.max_connections,
            )?,
            trusted_proxies,
        };
        let upstream_allow = entries(
            "upstream_allow",
            args.upstream_allow.or(file.upstream_allow),
            AllowedHost::parse,
        )?;
        let cors_origins = match args.cors_origins.or(file.cors_origins) {
            None => None,
            Some(list) => {
                let list: Vec<&str> = list
                    .iter()
                    .map(|o| o.trim())
                    .filter(|o| !o.is_empty())
                    .collect();
                Some(CorsOrigins::new(&list).map_err(|e| anyhow::anyhow!("cors_origins: {e}"))?)
            }
        };
        let redis_url = args.redis_url.or(file.redis_url);
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                bail!("redis_url must be a redis:// or rediss:// URL");
            }
        }
        let usage_flush = std::time::Duration::from_millis(positive(
            "usage_flush_ms",
            args.usage_flush_ms.or(file.usage_flush_ms),
            10_000,
        )?);
        let tracing = trace_settings(
            args.otlp_endpoint.or(file.otlp_endpoint),
            args.trace_sampling_ratio.or(file.trace_sampling_ratio),
            args.otlp_service_name.or(file.otlp_service_name),
        )?;
        Ok(Self {
            tracing,
            metrics_token: metrics_token(args.metrics_token.or(file.metrics_token))?,
            admin_hosts: entries(
                "admin_hosts",
                args.admin_hosts.or(file.admin_hosts),
                admin_host,
            )?,
            redis_url,
            usage_flush,
            upstream_allow,
            cors_origins,
            upstream_keepalive: positive(
                "upstream_keepalive",
                args.upstream_keepalive.or(file.upstream_keepalive),
                infergate_gateway::DEFAULT_UPSTREAM_KEEPALIVE,
            )?,
            listen_backlog: positive(
                "listen_backlog",
                args.listen_backlog.or(file.listen_backlog),
                DEFAULT_LISTEN_BACKLOG,
            )?,
            password_lockout: lockout(
                "lockout",
                args.lockout_failure_attempts
                    .or(file.lockout_failure_attempts),
                args.lockout_duration_s.or(file.lockout_duration_s),
                LockoutPolicy::PASSWORD,
            )?,
            access_key_lockout: lockout(
                "ak_lockout",
                args.ak_lockout_failure_attempts
                    .or(file.ak_lockout_failure_attempts),
                args.ak_lockout_duration_s.or(file.ak_lockout_duration_s),
                LockoutPolicy::ACCESS_KEY,
            )?,
            max_password_hashes: positive(
                "max_password_hashes",
                args.max_password_hashes.or(file.max_password_hashes),
                AdminSettings::default_password_hashes(),
            )?,
            listener,
            workers,
            http1_fast_path: args
                .http1_fast_path
                .or(file.http1_fast_path)
                .unwrap_or(true),
            database_url,
            role,
            refresh_interval,
            access_log,
            log_json,
            gateway_tls,
            admin_tls,
            require_https_for_app_code,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./infergate-data")),
            admin_listen: match args.admin_listen.or(file.admin_listen) {
                Some(addr) => addr,
                None => DEFAULT_ADMIN_LISTEN.parse()?,
            },
            gateway_listen: match args.gateway_listen.or(file.gateway_listen) {
                Some(addr) => addr,
                None => DEFAULT_GATEWAY_LISTEN.parse()?,
            },
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            max_apps_per_user: positive(
                "max_apps_per_user",
                args.max_apps_per_user.or(file.max_apps_per_user),
                AdminSettings::DEFAULT_MAX_APPS_PER_USER,
            )?,
            max_app_codes_per_app: positive(
                "max_app_codes_per_app",
                args.max_app_codes_per_app.or(file.max_app_codes_per_app),
                AdminSettings::DEFAULT_MAX_APP_CODES_PER_APP,
            )?,
            mask_app_secrets: args
                .mask_app_secrets
                .or(file.mask_app_secrets)
                .unwrap_or(false),
            limits: {
                let defaults = Limits::default();
                Limits {
                    max_body_bytes: positive(
                        "max_body_bytes",
                        args.max_body_bytes.or(file.max_body_bytes),
                        defaults.max_body_bytes,
                    )?,
                    max_uri_bytes: positive(
                        "max_uri_bytes",
                        args.max_uri_bytes.or(file.max_uri_bytes),
                        defaults.max_uri_bytes,
                    )?,
                    max_header_bytes: positive(
                        "max_header_bytes",
                        args.max_header_bytes.or(file.max_header_bytes),
                        defaults.max_header_bytes,
                    )?,
                    max_headers_total_bytes: positive(
                        "max_headers_total_bytes",
                        args.max_headers_total_bytes
                            .or(file.max_headers_total_bytes),
                        defaults.max_headers_total_bytes,
                    )?,
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample file at the repository's root.
    const EXAMPLE: &str = include_str!("../../../infergate.example.toml");

    /// `key = value` lines of the sample, commented (`# key = …`) or not.
    fn example_keys() -> Vec<(String, String, bool)> {
        EXAMPLE
            .lines()
            .filter_map(|line| {
                let (active, rest) = match line.strip_prefix("# ") {
                    Some(rest) => (false, rest),
                    None => (true, line),
                };
                let (key, value) = rest.split_once(" = ")?;
                let key = key.trim();
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    return None;
                }
                let value = value.split("  #").next().unwrap_or("").trim();
                Some((key.to_owned(), value.trim_matches('"').to_owned(), active))
            })
            .collect()
    }

    #[test]
    fn the_sample_configuration_names_every_key_with_the_default_serve_help_gives() {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("infergate.toml");
        std::fs::write(&path, EXAMPLE).expect("write");
        // It parses (unknown keys would be refused), and its values are the defaults.
        let from_sample = Settings::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .expect("the sample parses");
        let defaults = Settings::resolve(ServeArgs::default()).expect("defaults");
        assert_eq!(format!("{from_sample:?}"), format!("{defaults:?}"));

        let keys = example_keys();
        let mut cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand_mut("serve").expect("serve");
        let mut flags = Vec::new();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" || arg.is_global_set() || long == "help" {
                continue;
            }
            let key = long.replace('-', "_");
            let Some((_, value, active)) = keys.iter().find(|(k, _, _)| *k == key) else {
                panic!("the sample lacks {key}");
            };
            // Where `serve --help` states a plain default, the sample sets that value.
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let stated = help
                .rsplit_once("[default: ")
                .and_then(|(_, rest)| rest.strip_suffix(']'))
                .filter(|d| !d.contains(' ') && !d.contains('<'));
            if let Some(stated) = stated {
                assert!(
                    *active,
                    "{key}: serve --help gives {stated}, the sample comments it out"
                );
                assert_eq!(value, stated, "{key}");
            }
            flags.push(key);
        }
        for (key, _, _) in &keys {
            assert!(
                flags.contains(key),
                "the sample has {key}, serve has no such flag"
            );
        }
        // The --config help lists every key too.
        let config_help = serve
            .get_arguments()
            .find(|a| a.get_long() == Some("config"))
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for key in &flags {
            assert!(
                config_help.contains(key.as_str()),
                "--config's help omits {key}"
            );
        }
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("infergate.toml");
        std::fs::write(
            &path,
            "data_dir = \"/tmp/from-file\"\nadmin_listen = \"127.0.0.1:9001\"\npublic_url = \"https://file.example/\"\n",
        )
        .expect("write");
        let settings = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            admin_listen: Some("127.0.0.1:9999".parse().expect("addr")),
            ..ServeArgs::default()
        })
        .expect("resolve");
        assert_eq!(settings.admin_listen.port(), 9999);
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(settings.gateway_listen.to_string(), DEFAULT_GATEWAY_LISTEN);
        assert_eq!(settings.public_url.as_deref(), Some("https://file.example"));

        std::fs::write(&path, "admin_lisen = \"x\"\n").expect("write");
        let err = Settings::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .expect_err("unknown key");
        assert!(format!("{err:#}").contains("admin_lisen"), "{err:#}");
    }

    #[test]
    fn listener_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("infergate.toml");
        std::fs::write(
            &path,
            "header_timeout_ms = 500\nmax_connections = 7\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .expect("write");
        let settings = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            body_idle_timeout_ms: Some(900),
            ..ServeArgs::default()
        })
        .expect("resolve");
        let listener = &settings.listener;
        assert_eq!(
            listener.header_timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(
            listener.body_idle_timeout,
            std::time::Duration::from_millis(900)
        );
        assert_eq!(listener.max_connections, 7);
        assert_eq!(listener.trusted_proxies.len(), 2);
        assert!(listener.trusted_proxies[0].contains("10.1.2.3".parse().expect("ip")));

        std::fs::write(&path, "trusted_proxies = [\"10.0.0.0/33\"]\n").expect("write");
        let err = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        })
        .expect_err("bad network");
        assert!(format!("{err:#}").contains("trusted_proxies"), "{err:#}");
        let err = Settings::resolve(ServeArgs {
            header_timeout_ms: Some(0),
            ..ServeArgs::default()
        })
        .expect_err("zero timeout");
        assert!(format!("{err:#}").contains("header_timeout_ms"), "{err:#}");
    }

    #[test]
    fn guessing_brakes_and_upstream_rules_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("infergate.toml");
        std::fs::write(
            &path,
            "lockout_failure_attempts = 3\nak_lockout_duration_s = 60\nupstream_allow = [\"10.0.0.0/8\", \"*.gpu.internal\"]\n",
        )
        .expect("write");
        let settings = Settings::resolve(ServeArgs {
            config: Some(path.clone()),
            max_password_hashes: Some(3),
            ..ServeArgs::default()
        })
        .expect("resolve");
        assert_eq!(settings.password_lockout.attempts, 3);
        assert_eq!(settings.password_lockout.duration_ms, 900_000);
        assert_eq!(settings.access_key_lockout.attempts, 5);
        assert_eq!(settings.access_key_lockout.duration_ms, 60_000);
        assert_eq!(settings.max_password_hashes, 3);
        assert_eq!(settings.upstream_allow.len(), 2);
        let off = Settings::resolve(ServeArgs {
            ak_lockout_failure_attempts: Some(0),
            ..ServeArgs::default()
        })
        .expect("resolve");
        assert!(!off.access_key_lockout.enabled());
        for (args, named) in [
            (
                ServeArgs {
                    upstream_allow: Some(vec!["http://x".into()]),
                    ..ServeArgs::default()
                },
                "upstream_allow",
            ),
            (
                ServeArgs {
                    lockout_duration_s: Some(0),
                    ..ServeArgs::default()
                },
                "lockout_duration_s",
            ),
            (
                ServeArgs {
                    max_password_hashes: Some(0),
                    ..ServeArgs::default()
                },
                "max_password_hashes",
            ),
        ] {
            let err = Settings::resolve(args).expect_err(named);
            assert!(format!("{err:#}").contains(named), "{err:#}");
        }
    }

    #[test]
    fn the_metrics_token_is_long_and_visible_ascii() {
        let resolve = |token: &str| {
            Settings::resolve(ServeArgs {
                metrics_token: Some(token.into()),
                ..ServeArgs::default()
            })
        };
        for bad in [
            "",
            "short-token",
            "sixteen chars ok",
            "tab\tin-the-token-here",
            "ünicode-token-value",
        ] {
            let err = resolve(bad).expect_err(bad);
            assert!(format!("{err:#}").contains("metrics_token"), "{err:#}");
        }
        let settings = resolve("0123456789abcdef").expect("16 characters");
        assert_eq!(
            settings.metrics_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn admin_hosts_are_host_names() {
        let resolve = |list: &[&str]| {
            Settings::resolve(ServeArgs {
                admin_hosts: Some(list.iter().map(|o| o.to_string()).collect()),
                ..ServeArgs::default()
            })
        };
        for bad in [
            "http://console.example",
            "console.example:8081",
            "a..b",
            "a b",
            "-",
            "é.example",
        ] {
            let err = resolve(&[bad]).expect_err(bad);
            assert!(format!("{err:#}").contains("admin_hosts"), "{err:#}");
        }
        let settings = resolve(&["Console.Example.", " admin-1.internal ", ""]).expect("names");
        assert_eq!(
            settings.admin_hosts,
            ["console.example", "admin-1.internal"]
        );
    }

    #[test]
    fn public_url_is_checked() {
        let err = Settings::resolve(ServeArgs {
            public_url: Some("not a url".into()),
            ..ServeArgs::default()
        })
        .expect_err("bad url");
        assert!(format!("{err:#}").contains("public_url"));
    }

    #[test]
    fn cors_origins_are_checked_and_an_empty_list_allows_none() {
        let resolve = |list: &[&str]| {
            Settings::resolve(ServeArgs {
                cors_origins: Some(list.iter().map(|o| o.to_string()).collect()),
                ..ServeArgs::default()
            })
        };
        let err = resolve(&["http://console.example/path"]).expect_err("a path");
        assert!(format!("{err:#}").contains("cors_origins"), "{err:#}");
        let none = resolve(&[""]).expect("empty");
        assert!(none.cors_origins.expect("set").is_empty());
        let two = resolve(&["https://Console.Example", " http://10.0.0.1:8081 "]).expect("two");
        let two = two.cors_origins.expect("set");
        assert_eq!(
            two.iter().collect::<Vec<_>>(),
            ["https://console.example", "http://10.0.0.1:8081"]
        );
        // Not set: the console's own origin, decided once the admin listener is bound.
        assert!(Settings::resolve(ServeArgs::default())
            .expect("defaults")
            .cors_origins
            .is_none());
    }

    #[test]
    fn tracing_settings_are_checked_and_complete_the_endpoint() {
        let base = trace_settings(Some("http://127.0.0.1:4318".into()), None, None)
            .expect("base URL")
            .expect("on");
        assert_eq!(base.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(base.sampling_ratio, 1.0);
        assert_eq!(base.service_name, "infergate");
        let full = trace_settings(
            Some("https://otel.example/custom/traces".into()),
            Some(0.25),
            Some("edge".into()),
        )
        .expect("full URL")
        .expect("on");
        assert_eq!(full.endpoint, "https://otel.example/custom/traces");
        assert_eq!(full.sampling_ratio, 0.25);
        assert!(trace_settings(None, Some(0.5), None)
            .expect("off")
            .is_none());
        for (endpoint, ratio) in [
            ("http://127.0.0.1:4318", 1.5),
            ("http://127.0.0.1:4318", -0.1),
            ("http://127.0.0.1:4318", f64::NAN),
            ("ftp://127.0.0.1/", 1.0),
            ("not a url", 1.0),
        ] {
            let refused = trace_settings(Some(endpoint.into()), Some(ratio), None);
            assert!(refused.is_err(), "{endpoint} {ratio}");
        }
        assert!(trace_settings(None, Some(2.0), None).is_err());
        assert!(trace_settings(Some("http://h:1".into()), None, Some(" ".into())).is_err());
    }
}

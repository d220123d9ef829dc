//! `infergate serve`: the composition root. Opens the data directory, the store and the
//! master key, bootstraps an empty store, binds both listeners and runs until a signal.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use hyper_util::service::TowerToHyperService;
use infergate_admin::bootstrap;
use infergate_admin::Observability;
use infergate_admin::{AdminSettings, AdminState, UpstreamHealth};
use infergate_core::logsink::LogSink;
use infergate_core::model::UsageRow;
use infergate_core::net::UpstreamPolicy;
use infergate_core::{ids, validate, MasterKey, Secret};
use infergate_gateway::metrics::GatewayMetrics;
use infergate_gateway::usage::UsageBook;
use infergate_gateway::{
    serve_with, ClusterLimits, ClusterMetrics, Collaborators, ConnectionMetrics, CorsOrigins,
    Gateway, GatewaySettings, Observers, TlsFiles, Tracer,
};
use infergate_store::{ConfigPublisher, KeyLockouts, PgStore, SqliteStore, Store};
use tokio::net::TcpListener;

use crate::config::{AccessLogTarget, Settings};

const DATABASE_FILE: &str = "infergate.db";
const MASTER_KEY_FILE: &str = "master.key";
const PASSWORD_FILE: &str = "initial-admin-password";

/// Writes `contents` to a new file readable by the owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The master key from `INFERGATE_MASTER_KEY`, else `<data-dir>/master.key`, created on the
/// first start only: a database without its key would hold secrets nobody can read.
fn load_master_key(data_dir: &Path, database_exists: bool) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("INFERGATE_MASTER_KEY") {
        return MasterKey::parse(&text).context("INFERGATE_MASTER_KEY");
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::parse(&text).with_context(|| format!("reading {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if database_exists {
                bail!(
                    "{} is missing but the database exists; restore the key or set INFERGATE_MASTER_KEY",
                    path.display()
                );
            }
            let key = MasterKey::generate();
            write_private(&path, &format!("{}\n", key.to_hex()))?;
            Ok(key)
        }
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Bootstraps an empty store; prints and saves a generated admin password once.
async fn bootstrap(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if store
        .domain_by_name(bootstrap::DEFAULT_DOMAIN)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let (password, generated) = match std::env::var("INFERGATE_ADMIN_PASSWORD") {
        Ok(pw) => {
            validate::password("INFERGATE_ADMIN_PASSWORD", &pw).map_err(anyhow::Error::msg)?;
            (pw, false)
        }
        Err(_) => (ids::new_password(), true),
    };
    let created = bootstrap::ensure_bootstrap(store, &Secret::new(password.clone())).await?;
    if created && generated {
        let path = data_dir.join(PASSWORD_FILE);
        write_private(&path, &format!("{password}\n"))?;
        println!("Generated password of user admin: {password}");
        println!("  (also written to {}; shown only once)", path.display());
    }
    Ok(())
}

/// Catches any change a write did not publish (its refresh failed) within a few seconds.
async fn refresh_periodically(publisher: Arc<ConfigPublisher>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = publisher.refresh().await {
            tracing::warn!(error = %err, "configuration refresh failed; serving the last snapshot");
        }
    }
}

/// Adds the calls and token usage the gateway summed to the store every `every`.
async fn store_usage(book: Arc<UsageBook>, store: Arc<dyn Store>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        flush_usage(&book, store.as_ref()).await;
    }
}

/// Adds what the book holds to the store; a batch the store refuses goes back to the book
/// and is tried again with the next.
async fn flush_usage(book: &UsageBook, store: &dyn Store) {
    let taken = book.take();
    if taken.is_empty() {
        return;
    }
    {
        let rows: Vec<UsageRow> = taken
            .iter()
            .map(|(key, counts)| UsageRow {
                project_id: key.project_id.to_string(),
                app_id: key.app_id.to_string(),
                api_id: key.api_id.to_string(),
                minute: key.minute,
                counts: *counts,
            })
            .collect();
        if let Err(err) = store.add_usage(&rows).await {
            tracing::warn!(error = %err, rows = rows.len(), "storing usage failed; kept for the next try");
            book.put_back(taken);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Starts the access-log writer thread; lines are written in batches and flushed when
/// the queue is empty, so a burst costs one flush. A log file is reopened by its path on
/// SIGHUP or SIGUSR1 (what logrotate expects after it renames the file): a line goes whole
/// to one file or the other, and none is lost (lines wait in the queue meanwhile).
fn start_access_log(target: &AccessLogTarget) -> anyhow::Result<Option<Arc<LogSink>>> {
    fn open(path: &Path) -> std::io::Result<Box<dyn Write + Send>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Box::new(std::io::BufWriter::with_capacity(64 * 1024, file)))
    }
    let (mut writer, path): (Box<dyn Write + Send>, Option<PathBuf>) = match target {
        AccessLogTarget::Off => return Ok(None),
        AccessLogTarget::Stdout => (Box::new(std::io::stdout()), None),
        AccessLogTarget::File(path) => (
            open(path).with_context(|| format!("opening the access log {}", path.display()))?,
            Some(path.clone()),
        ),
    };
    let reopen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if path.is_some() {
        use tokio::signal::unix::{signal, SignalKind};
        for kind in [SignalKind::hangup(), SignalKind::user_defined1()] {
            let mut signals = signal(kind).context("watching signals for the access log")?;
            let reopen = reopen.clone();
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    reopen.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    }
    let (sink, rx) = LogSink::new(65_536);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || loop {
            // Woken now and then while idle, so a reopen does not wait for the next call.
            let first = match rx.recv_timeout(std::time::Duration::from_millis(250)) {
                Ok(line) => Some(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            if let Some(path) = path
                .as_deref()
                .filter(|_| reopen.swap(false, std::sync::atomic::Ordering::SeqCst))
            {
                let _ = writer.flush();
                match open(path) {
                    Ok(reopened) => {
                        writer = reopened;
                        tracing::info!(path = %path.display(), "access log reopened");
                    }
                    Err(e) => tracing::error!(
                        path = %path.display(),
                        error = %e,
                        "could not reopen the access log; still writing the file open before"
                    ),
                }
            }
            let Some(line) = first else { continue };
            let mut batch = vec![line];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            for line in batch {
                let _ = writer.write_all(line.as_bytes());
                let _ = writer.write_all(b"\n");
            }
            let _ = writer.flush();
        })
        .context("starting the access-log writer")?;
    Ok(Some(Arc::new(sink)))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("INFERGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into files or pipes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_tls(pair: &Option<(PathBuf, PathBuf)>) -> anyhow::Result<Option<Arc<TlsFiles>>> {
    let Some((cert, key)) = pair else {
        return Ok(None);
    };
    let files = TlsFiles::load(cert, key).map_err(anyhow::Error::msg)?;
    files.watch();
    Ok(Some(files))
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    init_logging(settings.log_json);
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", data_dir.display()))?;
    let (store, master, postgres): (Arc<dyn Store>, MasterKey, Option<PgStore>) =
        match &settings.database_url {
            Some(url) => {
                let pg = PgStore::connect(url).await?;
                let master = cluster_master_key(&pg).await?;
                (Arc::new(pg.clone()), master, Some(pg))
            }
            None => {
                let database = data_dir.join(DATABASE_FILE);
                let master = load_master_key(data_dir, database.exists())?;
                (Arc::new(SqliteStore::open(&database).await?), master, None)
            }
        };
    bootstrap(store.as_ref(), data_dir).await?;

    let role = settings.role;
    if let Some(limit) = raise_open_files() {
        warn_past_open_files(&settings, limit);
    }
    tracing::info!(
        purge_delay_ms = %crate::allocator::purge_delay(),
        "allocator: free memory goes back to the system after this delay"
    );
    let admin_listener = listen(settings.admin_listen, settings.listen_backlog)
        .with_context(|| format!("binding the admin listener {}", settings.admin_listen))?;
    let gateway_listener = listen(settings.gateway_listen, settings.listen_backlog)
        .with_context(|| format!("binding the gateway listener {}", settings.gateway_listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let gateway_addr = gateway_listener.local_addr()?;
    let gateway_scheme = if settings.gateway_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let admin_scheme = if settings.admin_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{gateway_scheme}://{gateway_addr}"));
    let admin_url = format!("{admin_scheme}://{admin_addr}");
    let upstream_policy = UpstreamPolicy {
        allow: settings.upstream_allow.clone(),
        own: vec![admin_addr, gateway_addr],
    };

    let default_project = bootstrap::default_project_id(store.as_ref())
        .await?
        .unwrap_or_else(|| "(deleted)".into());

    let publisher = ConfigPublisher::start(store.clone(), master.clone()).await?;
    let registry = prometheus::Registry::new();
    let access_log = start_access_log(&settings.access_log)?;
    let gateway_metrics = GatewayMetrics::new(&registry)?;
    let tracer = match &settings.tracing {
        Some(trace) => {
            let tracer = Tracer::start(trace, Some(gateway_metrics.trace_spans.clone()))
                .map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(endpoint = %trace.endpoint, sampling_ratio = trace.sampling_ratio, "tracing calls");
            Some(tracer)
        }
        None => None,
    };
    let admin_connections = admin_connection_metrics(&registry)?;
    let observability = Observability::new(registry.clone(), access_log.clone())?;
    let gateway_tls = load_tls(&settings.gateway_tls)?;
    let admin_tls = load_tls(&settings.admin_tls)?;
    let shared_limits = match &settings.redis_url {
        Some(url) => {
            let metrics = ClusterMetrics::new(&registry)?;
            let prefix = redis_prefix(&settings);
            Some(ClusterLimits::start(url, &prefix, Some(metrics)).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let store_for_lockouts = store.clone();
    let usage_store = store.clone();
    let key_lockouts = KeyLockouts::start(
        store_for_lockouts,
        publisher.clone(),
        settings.access_key_lockout,
    );
    let usage_book = Arc::new(UsageBook::default());
    tokio::spawn(store_usage(
        usage_book.clone(),
        usage_store.clone(),
        settings.usage_flush,
    ));
    let gateway = Gateway::with(
        publisher.snapshots(),
        GatewaySettings {
            limits: settings.limits.clone(),
            require_https_for_app_code: settings.require_https_for_app_code,
            http1_fast_path: settings.http1_fast_path,
            listener: settings.listener.clone(),
            upstream_policy: Arc::new(upstream_policy.clone()),
            upstream_keepalive: settings.upstream_keepalive,
            cors: match &settings.cors_origins {
                Some(origins) => origins.clone(),
                None => console_origins(admin_scheme, admin_addr),
            },
            ..GatewaySettings::default()
        },
        Observers {
            metrics: Some(gateway_metrics),
            access_log,
            usage: Some(usage_book.clone()),
            tracer,
        },
        Collaborators {
            key_verdicts: Some(key_lockouts),
            shared_limits: shared_limits.clone(),
        },
    );
    gateway.start_health_checks();
    let state = Arc::new(
        AdminState::new(
            store,
            master,
            AdminSettings {
                mask_app_secrets: settings.mask_app_secrets,
                max_apps_per_user: settings.max_apps_per_user,
                max_app_codes_per_app: settings.max_app_codes_per_app,
                password_lockout: settings.password_lockout,
                access_key_lockout: settings.access_key_lockout,
                max_password_hashes: settings.max_password_hashes,
                upstream_policy: upstream_policy.clone(),
                metrics_token: settings.metrics_token.clone(),
                admin_hosts: page_names(&settings.admin_hosts, &public_url),
                ..AdminSettings::new(public_url.clone(), admin_url.clone())
            },
        )
        .with_publisher(publisher.clone())
        .with_observability(observability)
        .with_limits_status(shared_limits.clone().map(|limits| {
            Arc::new(move || {
                if limits.redis_up() {
                    "shared in Redis"
                } else {
                    "counted on this node (Redis unreachable)"
                }
            }) as Arc<dyn Fn() -> &'static str + Send + Sync>
        }))
        .with_upstream_health({
            let gateway = gateway.clone();
            Arc::new(move || {
                let (checked, unhealthy) = gateway.upstream_health();
                UpstreamHealth { checked, unhealthy }
            })
        }),
    );
    tokio::spawn(refresh_periodically(
        publisher.clone(),
        settings.refresh_interval,
    ));
    if let Some(pg) = postgres {
        tokio::spawn(pg.follow_changes(publisher));
    }
    let off = |on: bool, url: String| if on { url } else { "(off: --role)".into() };
    println!("infergate {} ready", env!("CARGO_PKG_VERSION"));
    println!("  project default: {default_project}");
    println!("  admin API:       {}", off(role.admin(), admin_url));
    println!(
        "  gateway:         {}",
        off(role.gateway(), format!("{gateway_scheme}://{gateway_addr}"))
    );
    println!("  public URL:      {public_url}");
    match &settings.database_url {
        Some(_) => println!("  store:           PostgreSQL"),
        None => println!("  store:           SQLite"),
    }
    println!("  data directory:  {}", data_dir.display());
    std::io::stdout().flush()?;

    let router = infergate_admin::app(state);
    // The admin listener has the same timeouts and cap; nobody proxies to it.
    let admin_listener_settings = infergate_gateway::ListenerSettings {
        trusted_proxies: Vec::new(),
        ..settings.listener.clone()
    };
    // One signal stops both listeners (and is logged once).
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let (admin_stop, gateway_stop) = (stopped(stopping.clone()), stopped(stopping));
    let admin = async move {
        if role.admin() {
            serve_with(
                admin_listener,
                admin_tls,
                None,
                move |conn: infergate_gateway::ConnInfo| {
                    let peer = infergate_admin::Peer(conn.remote);
                    TowerToHyperService::new(tower::ServiceExt::map_request(
                        router.clone(),
                        move |mut req: axum::http::Request<_>| {
                            req.extensions_mut().insert(peer);
                            req
                        },
                    ))
                },
                std::time::Duration::from_secs(10),
                admin_listener_settings,
                admin_connections,
                admin_stop,
            )
            .await;
        }
    };
    let gateway = async move {
        if role.gateway() {
            infergate_gateway::serve(gateway_listener, gateway, gateway_tls, gateway_stop).await;
        }
    };
    tokio::join!(admin, gateway);
    // The calls of the last moments are stored before the process ends.
    flush_usage(&usage_book, usage_store.as_ref()).await;
    Ok(())
}

/// The data key shared by every node of a PostgreSQL cluster, sealed in the database by
/// INFERGATE_MASTER_KEY; the first node to start creates it.
async fn cluster_master_key(pg: &PgStore) -> anyhow::Result<MasterKey> {
    let wrapping = std::env::var("INFERGATE_MASTER_KEY").context(
        "INFERGATE_MASTER_KEY is required with --database-url (the same 32-byte key on every node)",
    )?;
    let wrapping = MasterKey::parse(&wrapping).context("INFERGATE_MASTER_KEY")?;
    let candidate = wrapping.encrypt(&Secret::new(MasterKey::generate().to_hex()));
    let sealed = pg.shared_key(&candidate).await?;
    let data = wrapping
        .decrypt(&sealed)
        .context("the cluster's data key does not open with this INFERGATE_MASTER_KEY")?;
    MasterKey::parse(data.expose()).context("the cluster's data key is malformed")
}

/// The keys of this cluster's counts in Redis: one prefix per store, so clusters (and
/// tests) sharing a Redis keep apart.
fn redis_prefix(settings: &Settings) -> String {
    use sha2::{Digest, Sha256};
    let store = match &settings.database_url {
        Some(url) => url.clone(),
        None => std::fs::canonicalize(&settings.data_dir)
            .unwrap_or_else(|_| settings.data_dir.clone())
            .display()
            .to_string(),
    };
    let digest = Sha256::digest(store.as_bytes());
    format!("infergate:{}", &hex::encode(digest)[..12])
}

/// `infergate unlock`: ends a user's password lockout (and enables it) in the store.
pub async fn unlock(
    user: &str,
    data_dir: Option<&Path>,
    database_url: Option<&str>,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = match database_url {
        Some(url) => Arc::new(PgStore::connect(url).await?),
        None => {
            let dir = data_dir.unwrap_or(Path::new("./infergate-data"));
            let database = dir.join(DATABASE_FILE);
            if !database.exists() {
                bail!("no store at {}", database.display());
            }
            Arc::new(SqliteStore::open(&database).await?)
        }
    };
    let domain = store
        .domain_by_name(bootstrap::DEFAULT_DOMAIN)
        .await?
        .context("the default domain does not exist")?;
    let found = store
        .user_by_name(&domain.id, user)
        .await?
        .with_context(|| format!("no user named {user:?} in the default domain"))?;
    store.update_user(&found.id, Some(true), None).await?;
    println!("unlocked and enabled user {user} ({})", found.id);
    Ok(())
}

/// `infergate migrate`.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    PgStore::connect(url).await?;
    println!("migrations applied");
    Ok(())
}

/// The admin listener's open and refused connections, apart from the gateway's.
fn admin_connection_metrics(registry: &prometheus::Registry) -> anyhow::Result<ConnectionMetrics> {
    let open = prometheus::IntGauge::new(
        "infergate_admin_open_connections",
        "Client connections open on the admin listener.",
    )?;
    let refused = prometheus::IntCounter::new(
        "infergate_admin_refused_connections_total",
        "Admin listener connections closed at once because max_connections were open.",
    )?;
    registry.register(Box::new(open.clone()))?;
    registry.register(Box::new(refused.clone()))?;
    Ok(ConnectionMetrics {
        open: Some(open),
        refused: Some(refused),
    })
}

/// The origins the console is served from, whose pages may call the gateway (the request
/// tester): the admin listener's address, and `localhost` and `127.0.0.1` for a loopback or
/// unspecified one.
fn console_origins(scheme: &str, addr: SocketAddr) -> CorsOrigins {
    let port = addr.port();
    let mut origins = Vec::new();
    let ip = addr.ip();
    if !ip.is_unspecified() {
        origins.push(format!("{scheme}://{addr}"));
    }
    if ip.is_loopback() || ip.is_unspecified() {
        origins.push(format!("{scheme}://127.0.0.1:{port}"));
        origins.push(format!("{scheme}://localhost:{port}"));
    }
    CorsOrigins::new(&origins).unwrap_or_default()
}

/// A listener on `addr` whose queue holds `backlog` connections (the kernel caps it at
/// net.core.somaxconn).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Raises the soft limit of open files to the hard limit, as nginx's
/// `worker_rlimit_nofile` does: each client connection and each upstream connection takes
/// one. Logs what it found and what it set; the limit now in force.
fn raise_open_files() -> Option<u64> {
    let before = rlimit::Resource::NOFILE.get();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            let (soft, hard) = before.unwrap_or((now, now));
            if now > soft {
                tracing::info!(from = soft, to = now, hard, "raised the open-file limit");
            } else {
                tracing::info!(limit = now, hard, "open-file limit");
            }
            Some(now)
        }
        Err(err) => {
            tracing::warn!(error = %err, "the open-file limit could not be raised");
            before.ok().map(|(soft, _)| soft)
        }
    }
}

/// Warns when the connections the listeners accept (each gateway connection with an
/// upstream connection of its own while it calls) may need more descriptors than `limit`:
/// past it, calls are answered 503 and new connections wait in the listen queue.
fn warn_past_open_files(settings: &Settings, limit: u64) {
    let max = settings.listener.max_connections as u64;
    let needed = 3 * max + settings.upstream_keepalive as u64 + 256;
    if needed > limit {
        tracing::warn!(
            limit,
            max_connections = max,
            needed,
            "the open-file limit is below what max_connections allows (gateway and admin connections, and an upstream connection per gateway call): raise the hard limit (LimitNOFILE in systemd, ulimit -Hn) or lower max_connections"
        );
    }
}

/// The host names under which web pages may write to the admin listener, besides IP
/// addresses and `localhost`: `admin_hosts`, this machine's name and the public URL's host.
/// An attacker's DNS can point its own names at this node, never these.
fn page_names(admin_hosts: &[String], public_url: &str) -> Vec<String> {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let public = url::Url::parse(public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned));
    let mut names = admin_hosts.to_vec();
    for name in [machine, public].iter().flatten() {
        if let Some(name) = infergate_core::net::host_name(name) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

//! `infergate serve`: the composition root. Opens the data directory, the store and the
//! master key, bootstraps an empty store, binds both listeners and runs until a signal.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use infergate_admin::bootstrap;
use infergate_admin::{AdminSettings, AdminState};
use infergate_core::{ids, validate, MasterKey, Secret};
use infergate_gateway::{Gateway, GatewaySettings};
use infergate_store::{ConfigPublisher, SqliteStore, Store};
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::config::Settings;

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
async fn refresh_periodically(publisher: Arc<ConfigPublisher>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = publisher.refresh().await {
            tracing::warn!(error = %err, "configuration refresh failed; serving the last snapshot");
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

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INFERGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::resolve(args)?;
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", data_dir.display()))?;
    let database = data_dir.join(DATABASE_FILE);
    let master = load_master_key(data_dir, database.exists())?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&database).await?);
    bootstrap(store.as_ref(), data_dir).await?;

    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener {}", settings.admin_listen))?;
    let gateway_listener = TcpListener::bind(settings.gateway_listen)
        .await
        .with_context(|| format!("binding the gateway listener {}", settings.gateway_listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let gateway_addr = gateway_listener.local_addr()?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{gateway_addr}"));
    let admin_url = format!("http://{admin_addr}");

    let default_project = bootstrap::default_project_id(store.as_ref())
        .await?
        .unwrap_or_else(|| "(deleted)".into());

    let publisher = ConfigPublisher::start(store.clone(), master.clone()).await?;
    let state = Arc::new(
        AdminState::new(
            store,
            master,
            AdminSettings {
                mask_app_secrets: settings.mask_app_secrets,
                max_apps_per_user: settings.max_apps_per_user,
                max_app_codes_per_app: settings.max_app_codes_per_app,
                ..AdminSettings::new(public_url.clone(), admin_url.clone())
            },
        )
        .with_publisher(publisher.clone()),
    );
    let gateway = Gateway::new(
        publisher.snapshots(),
        GatewaySettings {
            limits: settings.limits.clone(),
            ..GatewaySettings::default()
        },
    );
    tokio::spawn(refresh_periodically(publisher));
    println!("infergate {} ready", env!("CARGO_PKG_VERSION"));
    println!("  project default: {default_project}");
    println!("  admin API:       {admin_url}");
    println!("  gateway:         http://{gateway_addr}");
    println!("  public URL:      {public_url}");
    println!("  data directory:  {}", data_dir.display());
    std::io::stdout().flush()?;

    let admin = axum::serve(admin_listener, infergate_admin::app(state))
        .with_graceful_shutdown(shutdown_signal());
    let gateway = infergate_gateway::serve(gateway_listener, gateway, shutdown_signal());
    let (admin_result, ()) = tokio::join!(admin, gateway);
    admin_result.context("admin listener")?;
    Ok(())
}

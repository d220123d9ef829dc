//! Keeps the gateway's snapshot in step with the store. The first build reads everything;
//! after that only the objects changed since the published revision are read (from the
//! change log written by every write) and patched into the kept configuration and into the
//! current snapshot (only the routes and credentials they touch are rebuilt); the new
//! snapshot is swapped atomically. Refreshes are serialised, so a
//! slower, older build never replaces a newer one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use infergate_core::snapshot::{ConfigDump, Snapshot};
use infergate_core::MasterKey;
use tokio::sync::Mutex;

use crate::{Store, StoreError, StoreResult};

/// Publishes snapshots of one store to the gateway.
pub struct ConfigPublisher {
    store: Arc<dyn Store>,
    master: MasterKey,
    current: Arc<ArcSwap<Snapshot>>,
    /// The configuration the published snapshot was built from; held while refreshing.
    config: Mutex<Option<ConfigDump>>,
}

/// How the last refresh obtained its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    Incremental,
    Full,
}

impl ConfigPublisher {
    /// Builds the first snapshot from the store.
    pub async fn start(store: Arc<dyn Store>, master: MasterKey) -> StoreResult<Arc<Self>> {
        let publisher = Arc::new(Self {
            store,
            master,
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            config: Mutex::new(None),
        });
        publisher.refresh_with().await?;
        Ok(publisher)
    }

    /// The handle the gateway reads from.
    pub fn snapshots(&self) -> Arc<ArcSwap<Snapshot>> {
        self.current.clone()
    }

    pub fn revision(&self) -> i64 {
        self.current.load().revision
    }

    async fn publish(&self, mut snapshot: Snapshot, problems: Vec<String>) {
        for problem in problems {
            tracing::error!(%problem, "configuration item left out of the snapshot");
        }
        snapshot.published_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        tracing::debug!(
            revision = snapshot.revision,
            apis = snapshot.api_count(),
            "snapshot published"
        );
        self.current.store(Arc::new(snapshot));
    }

    /// Publishes the store's current configuration if its revision moved, reading only the
    /// changed objects when the change log covers the gap and rebuilding only what they
    /// touch.
    pub async fn refresh_with(&self) -> StoreResult<Refresh> {
        let mut config = self.config.lock().await;
        if let Some(mut dump) = config.take() {
            match self.store.changes_since(dump.revision).await {
                Ok(Some(delta)) if delta.revision == dump.revision => {
                    *config = Some(dump);
                    return Ok(Refresh::Unchanged);
                }
                Ok(Some(delta)) => {
                    let current = self.current.load_full();
                    let master = self.master.clone();
                    let (dump, snapshot, problems) = tokio::task::spawn_blocking(move || {
                        dump.apply(&delta);
                        let (snapshot, problems) = current.patch(&delta, &dump, &master);
                        (dump, snapshot, problems)
                    })
                    .await
                    .map_err(|e| StoreError::Internal(format!("snapshot patch failed: {e}")))?;
                    self.publish(snapshot, problems).await;
                    *config = Some(dump);
                    return Ok(Refresh::Incremental);
                }
                // The change log no longer covers the gap: read everything.
                Ok(None) => {}
                Err(err) => {
                    *config = Some(dump);
                    return Err(err);
                }
            }
        }
        let dump = self.store.load_config().await?;
        *config = Some(self.build(dump).await?);
        Ok(Refresh::Full)
    }

    /// Builds and publishes a snapshot of the whole of `dump`; gives the dump back to keep.
    async fn build(&self, dump: ConfigDump) -> StoreResult<ConfigDump> {
        let master = self.master.clone();
        let (dump, snapshot, problems) = tokio::task::spawn_blocking(move || {
            let (snapshot, problems) = Snapshot::build(&dump, &master);
            (dump, snapshot, problems)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("snapshot build failed: {e}")))?;
        self.publish(snapshot, problems).await;
        Ok(dump)
    }

    /// Like [`ConfigPublisher::refresh_with`]; returns whether a new snapshot was published.
    pub async fn refresh(&self) -> StoreResult<bool> {
        Ok(self.refresh_with().await? != Refresh::Unchanged)
    }
}

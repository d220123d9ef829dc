//! Keeps the gateway's snapshot in step with the store. The first build reads everything;
//! after that only the objects changed since the published revision are read (from the
//! change log written by every write) and patched into the kept configuration, which is
//! then rebuilt into a snapshot and swapped atomically. Refreshes are serialised, so a
//! slower, older build never replaces a newer one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use infergate_core::snapshot::{ConfigDump, Snapshot};
use infergate_core::MasterKey;
use tokio::sync::Mutex;

use crate::{Store, StoreResult};

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

    async fn publish(&self, dump: ConfigDump) -> StoreResult<()> {
        let master = self.master.clone();
        let (mut snapshot, problems) =
            tokio::task::spawn_blocking(move || Snapshot::build(dump, &master))
                .await
                .map_err(|e| crate::StoreError::Internal(format!("snapshot build failed: {e}")))?;
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
        Ok(())
    }

    /// Publishes the store's current configuration if its revision moved, reading only the
    /// changed objects when the change log covers the gap.
    pub async fn refresh_with(&self) -> StoreResult<Refresh> {
        let mut config = self.config.lock().await;
        let (dump, how) = match config.take() {
            Some(mut dump) => match self.store.changes_since(dump.revision).await {
                Ok(Some(delta)) if delta.revision == dump.revision => {
                    *config = Some(dump);
                    return Ok(Refresh::Unchanged);
                }
                Ok(Some(delta)) => {
                    dump.apply(delta);
                    (dump, Refresh::Incremental)
                }
                Ok(None) => (self.store.load_config().await?, Refresh::Full),
                Err(err) => {
                    *config = Some(dump);
                    return Err(err);
                }
            },
            None => (self.store.load_config().await?, Refresh::Full),
        };
        *config = Some(dump.clone());
        if let Err(err) = self.publish(dump).await {
            // The kept configuration is ahead of the snapshot: start over next time.
            *config = None;
            return Err(err);
        }
        Ok(how)
    }

    /// Like [`ConfigPublisher::refresh_with`]; returns whether a new snapshot was published.
    pub async fn refresh(&self) -> StoreResult<bool> {
        Ok(self.refresh_with().await? != Refresh::Unchanged)
    }
}

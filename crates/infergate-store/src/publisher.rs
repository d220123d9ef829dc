//! Keeps the gateway's snapshot in step with the store: rebuilds it when the configuration
//! revision moves, and swaps it atomically. Refreshes are serialised, so a slower, older
//! build never replaces a newer one.

use std::sync::Arc;

use arc_swap::ArcSwap;
use infergate_core::snapshot::Snapshot;
use infergate_core::MasterKey;
use tokio::sync::Mutex;

use crate::{Store, StoreResult};

/// Publishes snapshots of one store to the gateway.
pub struct ConfigPublisher {
    store: Arc<dyn Store>,
    master: MasterKey,
    current: Arc<ArcSwap<Snapshot>>,
    refreshing: Mutex<()>,
}

impl ConfigPublisher {
    /// Builds the first snapshot from the store.
    pub async fn start(store: Arc<dyn Store>, master: MasterKey) -> StoreResult<Arc<Self>> {
        let publisher = Arc::new(Self {
            store,
            master,
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            refreshing: Mutex::new(()),
        });
        publisher.rebuild().await?;
        Ok(publisher)
    }

    /// The handle the gateway reads from.
    pub fn snapshots(&self) -> Arc<ArcSwap<Snapshot>> {
        self.current.clone()
    }

    pub fn revision(&self) -> i64 {
        self.current.load().revision
    }

    async fn rebuild(&self) -> StoreResult<()> {
        let dump = self.store.load_config().await?;
        let master = self.master.clone();
        let (mut snapshot, problems) =
            tokio::task::spawn_blocking(move || Snapshot::build(dump, &master))
                .await
                .map_err(|e| crate::StoreError::Internal(format!("snapshot build failed: {e}")))?;
        for problem in problems {
            tracing::error!(%problem, "configuration item left out of the snapshot");
        }
        tracing::debug!(
            revision = snapshot.revision,
            apis = snapshot.api_count(),
            "snapshot published"
        );
        snapshot.published_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        self.current.store(Arc::new(snapshot));
        Ok(())
    }

    /// Rebuilds the snapshot if the store's revision differs from the published one.
    /// Returns whether a new snapshot was published.
    pub async fn refresh(&self) -> StoreResult<bool> {
        let _serial = self.refreshing.lock().await;
        let revision = self.store.revision().await?;
        if revision == self.revision() {
            return Ok(false);
        }
        self.rebuild().await?;
        Ok(true)
    }
}

//! The gateway's verdicts on IAM access-key signatures, counted in the store: the gateway
//! answers without waiting, a task records each failure under the lockout policy, and a
//! lock reaches every node's snapshot with the key's user's revision (this node's at once).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use infergate_core::lockout::{KeyVerdicts, LockSubject, LockoutPolicy};
use tokio::sync::mpsc;

use crate::{ConfigPublisher, Store};

/// Verdicts waiting to be recorded; beyond this, failures are dropped (a flood of bad
/// signatures cannot queue writes without bound, and a handful recorded already lock).
const QUEUE: usize = 1024;

enum Verdict {
    Failed(Arc<str>),
    Succeeded(Arc<str>),
}

/// Records verdicts on IAM signatures in the store.
pub struct KeyLockouts {
    queue: mpsc::Sender<Verdict>,
    /// Keys with failures recorded from this node: only their successes need a write.
    failing: Mutex<HashSet<Arc<str>>>,
    failing_count: AtomicUsize,
}

impl KeyLockouts {
    /// Starts the recording task.
    pub fn start(
        store: Arc<dyn Store>,
        publisher: Arc<ConfigPublisher>,
        policy: LockoutPolicy,
    ) -> Arc<Self> {
        let (queue, mut receiver) = mpsc::channel(QUEUE);
        let lockouts = Arc::new(Self {
            queue,
            failing: Mutex::new(HashSet::new()),
            failing_count: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&lockouts);
        tokio::spawn(async move {
            while let Some(verdict) = receiver.recv().await {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let changed = match &verdict {
                    Verdict::Failed(access) => store
                        .record_failure(LockSubject::AccessKey(access), now, policy)
                        .await
                        .map(|recorded| recorded.locked_now(now)),
                    Verdict::Succeeded(access) => {
                        if let Some(me) = weak.upgrade() {
                            me.forget(access);
                        }
                        store
                            .clear_failures(LockSubject::AccessKey(access), Some(now))
                            .await
                    }
                };
                match changed {
                    // This node serves the lock (or its end) before the next verdict.
                    Ok(true) => {
                        if let Err(err) = publisher.refresh().await {
                            tracing::warn!(error = %err, "publishing an access-key lock failed");
                        }
                    }
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "recording a signature verdict failed")
                    }
                }
            }
        });
        lockouts
    }

    fn forget(&self, access: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.remove(access) {
            self.failing_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl KeyVerdicts for KeyLockouts {
    fn failed(&self, access: &str) {
        let access: Arc<str> = access.into();
        {
            let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            if failing.len() < QUEUE && failing.insert(access.clone()) {
                self.failing_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.queue.try_send(Verdict::Failed(access)).is_err() {
            tracing::debug!("signature verdicts queue full; a failure was not counted");
        }
    }

    fn succeeded(&self, access: &str) {
        // The usual case: no key has failures from this node, and nothing is written.
        if self.failing_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let known = {
            let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            failing.get(access).cloned()
        };
        if let Some(access) = known {
            let _ = self.queue.try_send(Verdict::Succeeded(access));
        }
    }
}

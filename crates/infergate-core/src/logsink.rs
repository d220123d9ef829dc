//! The hand-off of access-log lines from request handlers to a writer thread: a bounded
//! channel that never blocks a request. When the writer falls behind, lines are dropped
//! and counted rather than slowing calls down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Where request handlers put access-log lines.
#[derive(Debug)]
pub struct LogSink {
    tx: SyncSender<String>,
    dropped: AtomicU64,
}

impl LogSink {
    /// A sink holding at most `capacity` lines not yet written, and the receiving end.
    pub fn new(capacity: usize) -> (Self, Receiver<String>) {
        let (tx, rx) = sync_channel(capacity);
        (
            Self {
                tx,
                dropped: AtomicU64::new(0),
            },
            rx,
        )
    }

    /// Queues one line; never waits.
    pub fn emit(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sink_drops_and_counts() {
        let (sink, rx) = LogSink::new(1);
        sink.emit("a".into());
        sink.emit("b".into());
        assert_eq!(sink.dropped(), 1);
        assert_eq!(rx.recv().ok().as_deref(), Some("a"));
    }
}

//! The memory ceiling: past 90 % of it the edge sheds (idle keep-alive connections closed, new
//! connections refused, established ones served), until the process is back under 85 %. The
//! resident size is read once a second, off the edge threads.

use crate::proxy::connection::shed::{Reason, Shed};
use crate::proxy::Edge;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether the process is over its memory ceiling.
pub(crate) struct MemoryCeiling {
    /// The ceiling in KiB; 0 for none.
    limit_kib: u64,
    over: AtomicBool,
}

impl MemoryCeiling {
    /// A ceiling of `limit` bytes (`None` or 0: none).
    pub(crate) fn new(limit: Option<u64>) -> Self {
        MemoryCeiling {
            limit_kib: limit.unwrap_or(0) / 1024,
            over: AtomicBool::new(false),
        }
    }

    /// Whether new connections are refused now.
    pub(crate) fn over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Reads the resident size once a second until `stop`, asking `edges` to close their
    /// idle connections while over the ceiling.
    pub(crate) async fn watch(
        self: Arc<Self>,
        edges: Vec<Arc<Edge>>,
        shed: Arc<Shed>,
        stop: CancellationToken,
    ) {
        if self.limit_kib == 0 {
            // Nothing to watch; a service that ended early would be reported as a fault.
            stop.cancelled().await;
            return;
        }
        tracing::info!(ceiling_mib = self.limit_kib / 1024, "memory ceiling");
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let Some(rss) = crate::runtime::memory::rss_kib(std::process::id()) else {
                continue;
            };
            let was = self.over();
            if rss * 100 >= self.limit_kib * 90 {
                if !was {
                    tracing::warn!(
                        rss_mib = rss / 1024,
                        ceiling_mib = self.limit_kib / 1024,
                        "near the memory ceiling: closing idle connections, refusing new ones"
                    );
                }
                self.over.store(true, Ordering::Relaxed);
                shed.note(Reason::Memory);
                for edge in &edges {
                    edge.crowded.notify_waiters();
                }
            } else if was && rss * 100 < self.limit_kib * 85 {
                self.over.store(false, Ordering::Relaxed);
                tracing::info!(
                    rss_mib = rss / 1024,
                    "back under the memory ceiling: accepting again"
                );
            }
        }
    }
}

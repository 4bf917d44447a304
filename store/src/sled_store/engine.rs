//! How the sled backend runs its operations: every write goes to the one writer thread
//! ([`super::writer`]) and is durable when it returns; every read runs on a blocking thread, at
//! most [`MAX_READS`] at once. Each operation has a deadline: one that has not finished by
//! then is logged, counted and answered as [`StoreError::Stalled`], so a disk that stops
//! answering stalls no caller for good.

use super::shared::Shared;
use super::trees::Trees;
use super::writer;
use crate::error::StoreError;
use crate::poison::Recover as _;
use crate::{Change, StoreHealth};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
/// Writes that may wait for the writer; a caller past that waits for room.
const WRITE_QUEUE: usize = 1024;
/// Reads running at once; a disk that stops answering holds at most this many threads.
const MAX_READS: usize = 32;

/// How the sled backend is run.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// How long an operation may take before it is answered as [`StoreError::Stalled`].
    pub deadline: Duration,
    /// For tests: while this file exists, every operation waits before it touches the
    /// database, as on a disk that stopped answering.
    pub stall_while: Option<PathBuf>,
    /// How long opening waits while another process holds the database (a server that is
    /// handing over to this one); zero fails at once.
    pub lock_wait: Duration,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            deadline: Duration::from_secs(10),
            stall_while: None,
            lock_wait: Duration::ZERO,
        }
    }
}

/// The sled backend. One process at a time may open a database.
pub struct SledStore {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<writer::Job>,
    reads: Arc<Semaphore>,
    deadline: Duration,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, SledOptions::default())
    }

    /// [`SledStore::open`] with other options.
    pub fn open_with(dir: &Path, options: SledOptions) -> Result<Self, StoreError> {
        let trees = Trees::open_waiting(dir, options.lock_wait)?;
        let shared = Arc::new(Shared::new(dir.to_path_buf(), trees, options.stall_while));
        let (jobs, queue) = mpsc::channel(WRITE_QUEUE);
        writer::spawn(shared.clone(), queue).map_err(|e| StoreError::Io {
            op: "start the writer of the store at",
            path: dir.to_path_buf(),
            cause: e.into(),
        })?;
        Ok(SledStore {
            shared,
            jobs,
            reads: Arc::new(Semaphore::new(MAX_READS)),
            deadline: options.deadline,
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Lets go of the database so that another process can open it (a server handing over to
    /// its successor): every operation fails from now on, until [`SledStore::reclaim`]. The file
    /// lock goes once the reads and the write under way have finished.
    pub fn release(&self) {
        self.shared.released.store(true, Ordering::Release);
        self.shared.set_trees(None);
    }

    /// Opens the database again after [`SledStore::release`] (the successor gave up), waiting
    /// up to `within` for the other process to let go of it.
    pub async fn reclaim(&self, within: Duration) -> Result<(), StoreError> {
        let path = self.shared.path.clone();
        let trees = tokio::task::spawn_blocking(move || Trees::open_waiting(&path, within))
            .await
            .map_err(|e| StoreError::Task {
                op: "reclaim",
                cause: e.into(),
            })??;
        self.shared.set_trees(Some(Arc::new(trees)));
        self.shared.released.store(false, Ordering::Release);
        Ok(())
    }

    /// Runs `work` within the deadline; past it, logs and counts the stall and answers an error.
    async fn watched<R>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        match tokio::time::timeout(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => {
                let stalled = self.shared.stalled.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(op, deadline = ?self.deadline, stalled, "store operation did not finish in time");
                Err(StoreError::Stalled {
                    op,
                    after: self.deadline,
                })
            }
        }
    }

    /// Runs a read on a blocking thread: sled may wait on the disk or its own locks, and
    /// decoding a whole tree of 100,000 records would stall the async runtime.
    pub(super) async fn read<R: Send + 'static>(
        &self,
        op: &'static str,
        read: impl FnOnce(&Trees) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let shared = self.shared.clone();
        let reads = self.reads.clone();
        self.watched(op, async move {
            let permit = reads
                .acquire_owned()
                .await
                .map_err(|_| StoreError::WriterStopped)?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                shared.wait_while_stalled();
                read(&*shared.trees()?)
            })
            .await
            .map_err(|e| StoreError::Task {
                op,
                cause: e.into(),
            })?
        })
        .await
    }

    /// Hands a write to the writer thread and waits until it is durable and announced.
    pub(super) async fn write(
        &self,
        op: &'static str,
        apply: impl FnOnce(&Trees) -> Result<Vec<Change>, StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = writer::Job {
            op,
            apply: Box::new(apply),
            reply,
        };
        self.watched(op, async move {
            self.jobs
                .send(job)
                .await
                .map_err(|_| StoreError::WriterStopped)?;
            answer.await.map_err(|_| StoreError::WriterStopped)?
        })
        .await
    }
}

impl SledStore {
    /// A receiver of every change committed from now on.
    pub(super) fn changes(&self) -> broadcast::Receiver<Change> {
        self.shared.changes.subscribe()
    }

    /// The unrecovered failure and the stall count.
    pub(super) fn health_now(&self) -> StoreHealth {
        let mut failure = self.shared.failure.lock().recover();
        // A full disk that has room again is healthy before the next write proves it.
        if failure.is_some()
            && !self.shared.broken.load(Ordering::Acquire)
            && writer::room(&self.shared.path).is_ok()
        {
            *failure = None;
        }
        StoreHealth {
            failure: failure.clone(),
            stalled: self.shared.stalled.load(Ordering::Relaxed),
            unreachable_since: None,
        }
    }
}

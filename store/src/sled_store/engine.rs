//! How the sled backend runs its operations: every write goes to the one writer thread
//! ([`super::writer`]) and is durable when it returns; every read runs on a blocking thread, at
//! most [`MAX_READS`] at once. Each operation has a deadline: one that has not finished by
//! then is logged, counted and answered as [`StoreError::Stalled`], so a disk that stops
//! answering stalls no caller for good.

use super::trees::Trees;
use super::writer;
use crate::error::StoreError;
use crate::{Change, StoreHealth};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

/// Capacity of the change channel; a subscriber further behind re-reads everything.
const CHANGE_BUFFER: usize = 4096;
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

/// What the writer thread and the readers share.
pub(super) struct Shared {
    pub(super) path: PathBuf,
    /// The open database; `None` only while the writer reopens it.
    trees: RwLock<Option<Arc<Trees>>>,
    pub(super) changes: broadcast::Sender<Change>,
    /// The failed write the store has not recovered from yet (or the full disk it waits on).
    pub(super) failure: Mutex<Option<String>>,
    /// Whether sled itself failed a write, and the database must be reopened before the next.
    pub(super) broken: AtomicBool,
    /// Whether a failed database could not even be closed: only a restart reopens the store.
    pub(super) wedged: AtomicBool,
    stalled: AtomicU64,
    stall_while: Option<PathBuf>,
    /// Set while another process has the database (see [`SledStore::release`]).
    pub(super) released: AtomicBool,
}

impl Shared {
    pub(super) fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        self.trees
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Backend(if self.released.load(Ordering::Acquire) {
                    format!(
                        "the store at {} was handed over to a new server",
                        self.path.display()
                    )
                } else {
                    format!(
                        "the store at {} is being reopened after a failed write",
                        self.path.display()
                    )
                })
            })
    }

    /// Puts `trees` in place; the database it replaces is dropped after the lock is let go
    /// (closing one may take time: readers must not wait on it).
    pub(super) fn set_trees(&self, trees: Option<Arc<Trees>>) {
        let old = std::mem::replace(
            &mut *self.trees.write().unwrap_or_else(|p| p.into_inner()),
            trees,
        );
        drop(old);
    }

    /// Takes the open database out (readers are told it is being reopened meanwhile).
    pub(super) fn take_trees(&self) -> Option<Arc<Trees>> {
        self.trees.write().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(super) fn wait_while_stalled(&self) {
        if let Some(path) = &self.stall_while {
            while path.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
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
        let shared = Arc::new(Shared {
            path: dir.to_path_buf(),
            trees: RwLock::new(Some(Arc::new(trees))),
            changes: broadcast::channel(CHANGE_BUFFER).0,
            failure: Mutex::new(None),
            broken: AtomicBool::new(false),
            wedged: AtomicBool::new(false),
            stalled: AtomicU64::new(0),
            stall_while: options.stall_while,
            released: AtomicBool::new(false),
        });
        let (jobs, queue) = mpsc::channel(WRITE_QUEUE);
        writer::spawn(shared.clone(), queue)
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
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
            .map_err(|e| StoreError::Backend(format!("reopening the store: {e}")))??;
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
            let permit = reads.acquire_owned().await.map_err(|_| gone())?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                shared.wait_while_stalled();
                read(&*shared.trees()?)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("{op}: {e}")))?
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
            self.jobs.send(job).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
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
        let mut failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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

fn gone() -> StoreError {
    StoreError::Backend("the store's writer has stopped".into())
}

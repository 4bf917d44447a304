//! What the writer thread and the readers of the sled backend share: the open database (swapped
//! when the writer reopens it), the change feed, and the store's failure and stall records.
//! Both `engine` (the readers and the store's handle) and `writer` use it; it uses neither.

use super::trees::Trees;
use crate::error::StoreError;
use crate::poison::Recover as _;
use crate::Change;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// Capacity of the change channel; a subscriber further behind re-reads everything.
const CHANGE_BUFFER: usize = 4096;

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
    /// Operations that missed their deadline.
    pub(super) stalled: AtomicU64,
    stall_while: Option<PathBuf>,
    /// Set while another process has the database (see `SledStore::release`).
    pub(super) released: AtomicBool,
}

impl Shared {
    /// The state of a store just opened at `path` with `trees`; `stall_while` as in
    /// `SledOptions`.
    pub(super) fn new(path: PathBuf, trees: Trees, stall_while: Option<PathBuf>) -> Shared {
        Shared {
            path,
            trees: RwLock::new(Some(Arc::new(trees))),
            changes: broadcast::channel(CHANGE_BUFFER).0,
            failure: Mutex::new(None),
            broken: AtomicBool::new(false),
            wedged: AtomicBool::new(false),
            stalled: AtomicU64::new(0),
            stall_while,
            released: AtomicBool::new(false),
        }
    }

    pub(super) fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        self.trees.read().recover().clone().ok_or_else(|| {
            if self.released.load(Ordering::Acquire) {
                StoreError::HandedOver(self.path.clone())
            } else {
                StoreError::Reopening(self.path.clone())
            }
        })
    }

    /// Puts `trees` in place; the database it replaces is dropped after the lock is let go
    /// (closing one may take time: readers must not wait on it).
    pub(super) fn set_trees(&self, trees: Option<Arc<Trees>>) {
        let old = std::mem::replace(&mut *self.trees.write().recover(), trees);
        drop(old);
    }

    /// Takes the open database out (readers are told it is being reopened meanwhile).
    pub(super) fn take_trees(&self) -> Option<Arc<Trees>> {
        self.trees.write().recover().take()
    }

    pub(super) fn wait_while_stalled(&self) {
        if let Some(path) = &self.stall_while {
            while path.exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

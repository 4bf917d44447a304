//! The one writer: a thread that owns the write side of the database. It takes the writes
//! waiting in its queue as one batch, applies them in order, makes them durable with one flush
//! (group commit), then announces each change and answers each caller. No other thread ever
//! writes or flushes, so sled's flushes never race each other (where sled 0.34 deadlocks), and
//! no async runtime thread ever waits on the disk.
//!
//! A full disk is kept from sled: before each write the writer checks that the disk has
//! [`RESERVE_BYTES`] free, and refuses the write (changing nothing) when it has not. sled 0.34
//! does not survive running out of space in the middle of a write: a large value's blob that
//! cannot be written leaves a log buffer that never completes, and every later flush, the
//! database's own close included, waits for it for ever. With room kept, the store takes
//! writes again as soon as the disk has room, without a reopen.
//!
//! After a failed write all the same (another process filled the disk between the check and
//! the write, an I/O error), sled refuses every later one with the same error (it keeps the
//! first I/O error for the whole database), so the writer reopens the database at the next
//! write, once the disk takes writes again. The failed database is closed on a thread of its
//! own, within [`REOPEN_WAIT`]: one that cannot close is left behind and said so, and never
//! holds up readers.

use super::shared::Shared;
use super::trees::{sled_failed, Trees};
use crate::error::StoreError;
use crate::poison::Recover as _;
use crate::Change;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes made durable by one flush.
const MAX_BATCH: usize = 256;
/// How long a reopen waits for readers and sled's own threads to let go of the old database.
const REOPEN_WAIT: Duration = Duration::from_secs(5);
/// What the disk must take before a reopen is tried: more than sled writes to open.
const PROBE_BYTES: usize = 256 * 1024;
/// Free space a write needs on the store's disk: more than the largest record (a site with
/// every error page, under 1 MiB) and the log segments sled may add for it.
const RESERVE_BYTES: u64 = 4 * 1024 * 1024;

/// A change to make: applied on the writer thread, it returns the changes to announce.
pub(super) type Apply = Box<dyn FnOnce(&Trees) -> Result<Vec<Change>, StoreError> + Send>;

/// One write waiting for the writer.
pub(super) struct Job {
    pub(super) op: &'static str,
    pub(super) apply: Apply,
    pub(super) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Starts the writer thread; it ends once every sender of `jobs` is dropped.
pub(super) fn spawn(shared: Arc<Shared>, jobs: mpsc::Receiver<Job>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("porter-store-writer".into())
        .spawn(move || run(&shared, jobs))
        .map(drop)
}

fn run(shared: &Shared, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        shared.wait_while_stalled();
        // A caller whose deadline passed was told its write failed: do not make it after all.
        batch.retain(|job| !job.reply.is_closed());
        if !batch.is_empty() {
            commit(shared, batch);
        }
    }
}

fn commit(shared: &Shared, batch: Vec<Job>) {
    let trees = match writable(shared) {
        Ok(trees) => trees,
        Err(e) => {
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut refused = false;
    let applied: Vec<_> = batch
        .into_iter()
        .map(|job| {
            if let Err(e) = room(&shared.path) {
                refused = true;
                return (job.reply, Err(e));
            }
            // A bug in one write must not stop every later one with the thread.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| (job.apply)(&trees)))
                .unwrap_or_else(|_| Err(StoreError::Panicked { op: job.op }));
            if let Err(e @ (StoreError::Sled { .. } | StoreError::Panicked { .. })) = &result {
                failed(shared, job.op, e);
            }
            (job.reply, result)
        })
        .collect();
    if refused {
        short_of_room(shared);
    } else if applied.iter().any(|(_, result)| result.is_ok()) {
        room_again(shared);
    }
    let flushed = if applied.iter().any(|(_, result)| result.is_ok()) {
        trees.db.flush().map(drop).map_err(sled_failed("flush"))
    } else {
        Ok(())
    };
    if let Err(e) = &flushed {
        failed(shared, "flush", e);
    }
    for (reply, result) in applied {
        let result = result.and_then(|changes| {
            flushed.clone()?;
            for change in changes {
                // No subscriber is fine: nobody needs telling.
                let _ = shared.changes.send(change);
            }
            Ok(())
        });
        let _ = reply.send(result);
    }
}

/// Notes a failed write: later writes reopen the database first.
fn failed(shared: &Shared, op: &str, error: &StoreError) {
    tracing::error!(op, %error, "store write failed; the store reopens at the next write once the disk takes writes again");
    *shared.failure.lock().recover() = Some(format!("{op}: {error}"));
    shared.broken.store(true, Ordering::Release);
}

/// Whether the disk under `dir` has the room a write needs.
pub(super) fn room(dir: &Path) -> Result<(), StoreError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|errno| StoreError::Io {
        op: "read the free space of",
        path: dir.to_path_buf(),
        cause: Arc::new(errno.into()),
    })?;
    // u64 here; other platforms' statvfs fields are narrower.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    if free >= RESERVE_BYTES {
        return Ok(());
    }
    Err(StoreError::DiskFull {
        path: dir.to_path_buf(),
        free_kib: free / 1024,
        reserve_kib: RESERVE_BYTES / 1024,
    })
}

/// Notes (once) that writes are refused for want of room: the health says so until one works.
fn short_of_room(shared: &Shared) {
    let mut failure = shared.failure.lock().recover();
    if failure.is_none() {
        tracing::error!(path = %shared.path.display(), "the store's disk is full: writes are refused until it has room again");
        *failure = Some(format!("the disk of {} is full", shared.path.display()));
    }
}

/// Clears a shortage of room once a write has gone through (a broken database stays noted).
fn room_again(shared: &Shared) {
    if shared.broken.load(Ordering::Acquire) {
        return;
    }
    if let Some(was) = shared.failure.lock().recover().take() {
        tracing::info!(after = %was, "the store's disk has room again: writes work");
    }
}

/// The database to write to, reopened first when an earlier write failed.
fn writable(shared: &Shared) -> Result<Arc<Trees>, StoreError> {
    let failure = shared.failure.lock().recover().clone();
    let Some(failure) = failure.filter(|_| shared.broken.load(Ordering::Acquire)) else {
        return shared.trees();
    };
    if shared.released.load(Ordering::Acquire) {
        // Another process has the database now: reopening it is not this writer's to do.
        return shared.trees();
    }
    if shared.wedged.load(Ordering::Acquire) {
        return Err(StoreError::Wedged);
    }
    // Keep the old database (it still reads) until the disk can take a reopen.
    probe(&shared.path).map_err(|e| StoreError::StillFailing {
        earlier: failure.clone(),
        cause: e.into(),
    })?;
    close(&shared.path, shared.take_trees())
        .inspect_err(|_| shared.wedged.store(true, Ordering::Release))?;
    let trees = Arc::new(Trees::open_waiting(&shared.path, REOPEN_WAIT)?);
    shared.set_trees(Some(trees.clone()));
    *shared.failure.lock().recover() = None;
    shared.broken.store(false, Ordering::Release);
    tracing::info!(after = %failure, "store reopened: writes work again");
    Ok(trees)
}

/// Closes a failed database on a thread of its own, waiting up to [`REOPEN_WAIT`]: sled
/// flushes at close, which a broken database may wait on for ever.
fn close(path: &Path, trees: Option<Arc<Trees>>) -> Result<(), StoreError> {
    let Some(trees) = trees else {
        return Ok(());
    };
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("porter-store-close".into())
        .spawn(move || {
            drop(trees);
            let _ = done.send(());
        })
        .map_err(|e| StoreError::Io {
            op: "start closing the failed database at",
            path: path.to_path_buf(),
            cause: e.into(),
        })?;
    closed.recv_timeout(REOPEN_WAIT).map_err(|_| {
        tracing::error!("the failed database does not close (sled waits on a write that cannot finish): restart Porter to reopen the store");
        StoreError::Wedged
    })
}

/// Whether the disk under `dir` takes a write again, by writing and syncing a scratch file.
fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".write-probe");
    let result = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&[0; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    result
}

//! The one writer: a thread that owns the write side of the database. It takes the writes
//! waiting in its queue as one batch, applies them in order, makes them durable with one flush
//! (group commit), then announces each change and answers each caller. No other thread ever
//! writes or flushes, so sled's flushes never race each other (where sled 0.34 deadlocks), and
//! no async runtime thread ever waits on the disk.
//!
//! After a failed write sled refuses every later one with the same error (it keeps the first
//! I/O error for the whole database), so the writer reopens the database at the next write,
//! once the disk takes writes again.

use super::engine::Shared;
use super::trees::{backend, Trees};
use crate::error::StoreError;
use crate::Change;
use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most writes made durable by one flush.
const MAX_BATCH: usize = 256;
/// How long a reopen waits for readers and sled's own threads to let go of the old database.
const REOPEN_WAIT: Duration = Duration::from_secs(5);
/// What the disk must take before a reopen is tried: more than sled writes to open.
const PROBE_BYTES: usize = 256 * 1024;

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
    let applied: Vec<_> = batch
        .into_iter()
        .map(|job| {
            // A bug in one write must not stop every later one with the thread.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| (job.apply)(&trees)))
                .unwrap_or_else(|_| Err(StoreError::Backend(format!("{} panicked", job.op))));
            if let Err(StoreError::Backend(e)) = &result {
                failed(shared, job.op, e);
            }
            (job.reply, result)
        })
        .collect();
    let flushed = if applied.iter().any(|(_, result)| result.is_ok()) {
        trees.db.flush().map(drop).map_err(backend)
    } else {
        Ok(())
    };
    if let Err(StoreError::Backend(e)) = &flushed {
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
fn failed(shared: &Shared, op: &str, error: &str) {
    tracing::error!(op, %error, "store write failed; the store reopens at the next write once the disk takes writes again");
    *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{op}: {error}"));
}

/// The database to write to, reopened first when an earlier write failed.
fn writable(shared: &Shared) -> Result<Arc<Trees>, StoreError> {
    let failure = shared
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(failure) = failure else {
        return shared.trees();
    };
    if shared.released.load(std::sync::atomic::Ordering::Acquire) {
        // Another process has the database now: reopening it is not this writer's to do.
        return shared.trees();
    }
    // Keep the old database (it still reads) until the disk can take a reopen.
    probe(&shared.path).map_err(|e| {
        StoreError::Backend(format!(
            "an earlier write failed ({failure}) and the disk still refuses writes: {e}"
        ))
    })?;
    shared.set_trees(None);
    let trees = Arc::new(Trees::open_waiting(&shared.path, REOPEN_WAIT)?);
    shared.set_trees(Some(trees.clone()));
    *shared.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
    tracing::info!(after = %failure, "store reopened: writes work again");
    Ok(trees)
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

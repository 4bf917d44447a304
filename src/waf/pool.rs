//! The threads the WAF engine runs on: a few dedicated threads and a bounded queue, so that a
//! millisecond of rule matching never holds an edge thread's event loop, and a flood of
//! requests to inspect is refused at once rather than queued without end.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The worker threads; they end when the pool is dropped (after the jobs queued).
pub(crate) struct Pool {
    queue: SyncSender<Job>,
}

/// The queue is full: the request is not inspected.
#[derive(Debug)]
pub(crate) struct Full;

impl Pool {
    /// `threads` workers and room for `queued` jobs waiting.
    pub(crate) fn new(threads: usize, queued: usize) -> std::io::Result<Self> {
        let (queue, jobs) = sync_channel::<Job>(queued);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads.max(1) {
            let jobs = Arc::clone(&jobs);
            std::thread::Builder::new()
                .name(format!("porter-waf-{n}"))
                .spawn(move || work(&jobs))?;
        }
        Ok(Pool { queue })
    }

    /// Runs `job` on a worker, and its answer comes back; `Full` when the queue is.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, Full> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic ends this job only: the request is answered as not inspected.
            if let Ok(value) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                let _ = answer.send(value);
            }
        });
        match self.queue.try_send(job) {
            Ok(()) => Ok(answered.await.ok()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Full),
        }
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

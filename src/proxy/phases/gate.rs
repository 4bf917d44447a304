//! Concurrency per site and per upstream, with a bounded wait: at most `limit` requests of one
//! key are in flight (from request admission to the end of the response body), at most
//! `queue` more wait for a slot, for at most `wait`; past that a request is refused at once
//! (503 with `Retry-After`). One attacked or slow site then holds at most its share of the
//! upstream's workers, and everyone else's requests keep going. The gates are shared by every
//! edge thread; the table holds the keys in use and is pruned as it grows, so that names
//! that come and go cannot grow it.

use porter_store::Recover as _;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every slot was taken and the queue was full.
    QueueFull,
    /// It waited `wait` in the queue without a slot.
    Waited,
}

/// The bounds of one kind of gate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Requests in flight per key; 0 for no limit.
    pub(crate) limit: u32,
    /// Requests waiting per key beyond those.
    pub(crate) queue: u32,
    /// How long one may wait.
    pub(crate) wait: Duration,
}

/// One gate per key in use.
pub(crate) struct Gates<K> {
    bounds: Bounds,
    table: Mutex<Table<K>>,
}

struct Table<K> {
    gates: HashMap<K, Arc<Gate>>,
    /// The size at which the unused gates are dropped next.
    prune_at: usize,
}

struct Gate {
    slots: Semaphore,
    waiting: AtomicU32,
}

/// A gate whose slots are all taken.
pub(crate) struct Queue {
    gate: Arc<Gate>,
    bounds: Bounds,
}

impl Queue {
    /// Waits for a slot, unless the queue is full, for at most the gate's wait.
    pub(crate) async fn wait(self) -> Result<Pass, Refusal> {
        let Queue { gate, bounds } = self;
        if gate.waiting.fetch_add(1, Ordering::Relaxed) >= bounds.queue {
            gate.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::QueueFull);
        }
        // The semaphore is never closed; a timeout is the only other way out.
        let acquired = match tokio::time::timeout(bounds.wait, gate.slots.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                true
            }
            _ => false,
        };
        gate.waiting.fetch_sub(1, Ordering::Relaxed);
        if acquired {
            Ok(Pass(gate))
        } else {
            Err(Refusal::Waited)
        }
    }
}

/// A slot held until dropped.
pub(crate) struct Pass(Arc<Gate>);

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.slots.add_permits(1);
    }
}

/// The table is pruned when it reaches this size, and then at twice what it kept.
const PRUNE_FIRST: usize = 1024;

impl<K: Hash + Eq + Clone> Gates<K> {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Gates {
            bounds,
            table: Mutex::new(Table {
                gates: HashMap::new(),
                prune_at: PRUNE_FIRST,
            }),
        }
    }

    /// A slot for `key` if one is free now (`None` when there is no limit), else the queue to
    /// wait in.
    pub(crate) fn try_enter(&self, key: &K) -> Result<Option<Pass>, Queue> {
        if self.bounds.limit == 0 {
            return Ok(None);
        }
        let gate = self.gate(key);
        let acquired = match gate.slots.try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        };
        if acquired {
            Ok(Some(Pass(gate)))
        } else {
            Err(Queue {
                gate,
                bounds: self.bounds,
            })
        }
    }

    /// A slot for `key`: at once if one is free, after a wait in the queue otherwise.
    #[cfg(test)]
    async fn enter(&self, key: &K) -> Result<Option<Pass>, Refusal> {
        match self.try_enter(key) {
            Ok(pass) => Ok(pass),
            Err(queue) => queue.wait().await.map(Some),
        }
    }

    fn gate(&self, key: &K) -> Arc<Gate> {
        let mut table = self.table.lock().recover();
        if let Some(gate) = table.gates.get(key) {
            return Arc::clone(gate);
        }
        if table.gates.len() >= table.prune_at {
            // A gate nobody holds (no pass, nobody waiting) has all its slots and can go.
            table.gates.retain(|_, gate| Arc::strong_count(gate) > 1);
            table.prune_at = (table.gates.len() * 2).max(PRUNE_FIRST);
        }
        let gate = Arc::new(Gate {
            slots: Semaphore::new(self.bounds.limit as usize),
            waiting: AtomicU32::new(0),
        });
        table.gates.insert(key.clone(), Arc::clone(&gate));
        gate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(limit: u32, queue: u32) -> Arc<Gates<&'static str>> {
        Arc::new(Gates::new(Bounds {
            limit,
            queue,
            wait: Duration::from_secs(5),
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_holds_its_limit_queues_its_queue_and_refuses_the_rest() {
        let gates = gates(2, 1);
        let a = gates.enter(&"a").await.unwrap().unwrap();
        let _b = gates.enter(&"a").await.unwrap().unwrap();
        // Another key is not held up.
        let _other = gates.enter(&"b").await.unwrap().unwrap();
        let queued = tokio::spawn({
            let gates = Arc::clone(&gates);
            async move { gates.enter(&"a").await }
        });
        tokio::task::yield_now().await;
        assert_eq!(gates.enter(&"a").await.err(), Some(Refusal::QueueFull));
        drop(a);
        let _queued = queued
            .await
            .unwrap()
            .expect("the freed slot goes to the queue")
            .unwrap();
        // Nobody frees a slot now: the next one waits its time and is refused.
        let started = tokio::time::Instant::now();
        assert_eq!(gates.enter(&"a").await.err(), Some(Refusal::Waited));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn no_limit_holds_nothing() {
        let gates = gates(0, 0);
        for _ in 0..10 {
            assert!(gates.enter(&"a").await.unwrap().is_none());
        }
        assert!(gates.table.lock().recover().gates.is_empty());
    }

    #[tokio::test]
    async fn keys_that_come_and_go_do_not_grow_the_table() {
        let gates: Gates<u32> = Gates::new(Bounds {
            limit: 1,
            queue: 0,
            wait: Duration::from_secs(1),
        });
        let held = gates.enter(&0).await.unwrap();
        for key in 1..10 * PRUNE_FIRST as u32 {
            drop(gates.enter(&key).await.unwrap());
        }
        let table = gates.table.lock().recover();
        assert!(table.gates.len() <= PRUNE_FIRST, "{}", table.gates.len());
        assert!(table.gates.contains_key(&0), "a gate in use is kept");
        drop(held);
    }
}

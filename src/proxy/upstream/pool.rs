//! Upstream connections and their reuse. A client connection keeps the upstream connection its
//! last request used (HTTP/1 requests come one at a time, so the next one takes it without a
//! lock or a lookup); the rest wait in an idle pool per upstream, one per edge thread, bounded in
//! number and in idle time. A connection is lent for one exchange and goes home when its response body
//! has been read to the end; one whose response was abandoned is never reused.

use crate::proxy::upstream::body::UpstreamBody;
use crate::proxy::upstream::connector;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use porter_store::Recover as _;
use porter_store::Upstream;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Idle connections kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Idle connections kept in all (each holds a file descriptor).
const MAX_IDLE: usize = 4096;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the expired are closed even if their upstream is not asked for again.
const REAP_EVERY: Duration = Duration::from_secs(10);

type Sender = SendRequest<UpstreamBody>;

/// Whether a connection idle since `since` may still be used at `now`.
fn fresh(since: Instant, now: Instant) -> bool {
    now - since < IDLE_TIMEOUT
}

/// Idle upstream connections shared by the client connections of one edge thread.
pub(crate) struct Pool {
    idle: Mutex<Idle>,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Idle {
    /// Per upstream, oldest first.
    lists: HashMap<Upstream, VecDeque<(Sender, Instant)>>,
    total: usize,
}

impl Pool {
    pub(crate) fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Pool {
            idle: Mutex::new(Idle::default()),
            connect_timeout,
        })
    }

    /// The most recently idled live connection to `upstream`, if any, and since when it idles.
    fn take(&self, upstream: &Upstream) -> Option<(Sender, Instant)> {
        let mut idle = self.idle.lock().recover();
        let Idle { lists, total } = &mut *idle;
        let list = lists.get_mut(upstream)?;
        let now = Instant::now();
        let found = std::iter::from_fn(|| {
            let entry = list.pop_back()?;
            *total -= 1;
            Some(entry)
        })
        .find(|(sender, since)| !sender.is_closed() && fresh(*since, now));
        if list.is_empty() {
            lists.remove(upstream);
        }
        found
    }

    /// Keeps `sender`, idle since `since`, for later, dropping (and so closing) the expired
    /// and the surplus.
    fn put(&self, upstream: Upstream, sender: Sender, since: Instant) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().recover();
        let Idle { lists, total } = &mut *idle;
        let list = lists.entry(upstream).or_default();
        // Oldest first: the expired are at the front.
        while list.front().is_some_and(|(_, since)| !fresh(*since, now))
            || list.len() >= MAX_IDLE_PER_UPSTREAM
        {
            list.pop_front();
            *total -= 1;
        }
        if *total < MAX_IDLE {
            list.push_back((sender, since));
            *total += 1;
        }
    }

    /// Closes the connections that are closed or expired at `now`.
    fn prune(&self, now: Instant) {
        let mut idle = self.idle.lock().recover();
        let Idle { lists, total } = &mut *idle;
        lists.retain(|_, list| {
            list.retain(|(sender, since)| !sender.is_closed() && fresh(*since, now));
            !list.is_empty()
        });
        *total = lists.values().map(VecDeque::len).sum();
    }

    /// Closes expired connections every [`REAP_EVERY`] until `shutdown`.
    pub(crate) async fn reap(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(REAP_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => self.prune(Instant::now()),
            }
        }
    }

    /// A new connection to `upstream`, its protocol driven by a task of its own.
    pub(crate) async fn connect(&self, upstream: &Upstream) -> io::Result<Sender> {
        let stream = connector::connect(upstream, self.connect_timeout).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// The upstream connection a client connection used last; handed to the pool when the client
/// connection ends.
pub(crate) struct Affinity {
    pool: Arc<Pool>,
    /// The connection, its upstream, and since when it idles.
    last: Mutex<Option<(Upstream, Sender, Instant)>>,
}

impl Affinity {
    pub(crate) fn new(pool: Arc<Pool>) -> Arc<Self> {
        Arc::new(Affinity {
            pool,
            last: Mutex::new(None),
        })
    }

    /// A connection to `upstream` ready for a request: this client connection's own, else an
    /// idle one of the pool, else a new one (an error only from connecting). With it, since
    /// when it was idle; `None` for a new one.
    pub(crate) async fn checkout(
        &self,
        upstream: &Upstream,
    ) -> io::Result<(Sender, Option<Instant>)> {
        let own = {
            let mut last = self.last.lock().recover();
            match last.take() {
                Some((u, sender, since)) if &u == upstream => Some((sender, since)),
                other => {
                    *last = other;
                    None
                }
            }
        };
        for (mut sender, since) in own
            .into_iter()
            .chain(std::iter::from_fn(|| self.pool.take(upstream)))
        {
            // Ready at once unless its last response is still being read; an error means
            // the upstream closed it.
            if sender.ready().await.is_ok() {
                return Ok((sender, Some(since)));
            }
        }
        // Boxed: the rare path would otherwise add its size to every request's future.
        Ok((Box::pin(self.pool.connect(upstream)).await?, None))
    }

    /// A loan of `sender` that brings it back here (`keep`: HTTP/1 clients, whose next
    /// request comes after this one) or to the thread's pool (HTTP/2 streams, which run at once).
    pub(crate) fn lend(self: &Arc<Self>, upstream: &Upstream, sender: Sender, keep: bool) -> Loan {
        Loan {
            sender,
            upstream: upstream.clone(),
            home: if keep {
                Home::Affinity(Arc::clone(self))
            } else {
                Home::Pool(Arc::clone(&self.pool))
            },
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        if let Some((upstream, sender, since)) = self.last.get_mut().expect("affinity lock").take()
        {
            self.pool.put(upstream, sender, since);
        }
    }
}

enum Home {
    Affinity(Arc<Affinity>),
    Pool(Arc<Pool>),
}

/// An upstream connection lent for one exchange. [`Loan::give_back`] returns it once its
/// response has been read to the end; dropped otherwise (an upgrade, a failed or abandoned
/// body), it is not reused and hyper closes it.
pub(crate) struct Loan {
    sender: Sender,
    upstream: Upstream,
    home: Home,
}

impl Loan {
    /// The connection, to send the request on.
    pub(crate) fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// Returns the connection for the next exchange.
    pub(crate) fn give_back(self) {
        let Loan {
            sender,
            upstream,
            home,
        } = self;
        let now = Instant::now();
        match home {
            Home::Affinity(affinity) => {
                let previous = affinity
                    .last
                    .lock()
                    .recover()
                    .replace((upstream, sender, now));
                if let Some((upstream, sender, since)) = previous {
                    affinity.pool.put(upstream, sender, since);
                }
            }
            Home::Pool(pool) => pool.put(upstream, sender, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sender() -> Sender {
        let (io, _peer) = tokio::io::duplex(64);
        let (sender, connection) = http1::handshake(TokioIo::new(io)).await.unwrap();
        // Keep the connection's I/O open for the test's length.
        std::mem::forget((connection, _peer));
        sender
    }

    #[tokio::test]
    async fn idle_connections_are_lent_newest_first_and_expire() {
        let pool = Pool::new(Duration::from_secs(1));
        let (a, b) = (
            Upstream::parse("127.0.0.1:1").unwrap(),
            Upstream::parse("127.0.0.1:2").unwrap(),
        );
        pool.put(a.clone(), sender().await, Instant::now());
        pool.put(a.clone(), sender().await, Instant::now());
        pool.put(b.clone(), sender().await, Instant::now());
        assert_eq!(pool.idle.lock().recover().total, 3);
        assert!(pool.take(&a).is_some());
        assert_eq!(pool.idle.lock().recover().total, 2);

        pool.prune(Instant::now());
        assert_eq!(pool.idle.lock().recover().total, 2, "nothing expired yet");
        pool.prune(Instant::now() + IDLE_TIMEOUT);
        assert_eq!(pool.idle.lock().recover().total, 0);
        assert!(pool.idle.lock().recover().lists.is_empty());
        assert!(pool.take(&a).is_none() && pool.take(&b).is_none());
    }

    #[tokio::test]
    async fn the_pool_is_bounded_per_upstream() {
        let pool = Pool::new(Duration::from_secs(1));
        let a = Upstream::parse("127.0.0.1:1").unwrap();
        for _ in 0..MAX_IDLE_PER_UPSTREAM + 3 {
            pool.put(a.clone(), sender().await, Instant::now());
        }
        assert_eq!(pool.idle.lock().recover().total, MAX_IDLE_PER_UPSTREAM);
    }
}

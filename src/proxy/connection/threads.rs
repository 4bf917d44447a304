//! The edge's threads: one single-threaded runtime per thread, each accepting on the shared
//! listeners and serving the connections it accepted to their end, with its own upstream pool.
//! A connection never moves between threads, so its requests take no cross-thread wake-up or
//! work-stealing bookkeeping (measured against tokio's multi-threaded runtime: about 8% less
//! CPU per keep-alive request, 12% per HTTP/2 request, but 4% more per 64 KiB response, as
//! woken tasks run in turn rather than the one just woken first). Every thread waits on the same
//! listening sockets, so the one that is free takes the next connection.

use crate::proxy::connection::listener::{drain, serve_http, serve_https, Limits};
use crate::proxy::Edge;
use rustls::ServerConfig;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every edge thread shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) tls: Arc<ServerConfig>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) shutdown: CancellationToken,
    /// Time open connections get to finish once `shutdown` fires.
    pub(crate) grace: Duration,
}

/// The running edge threads.
pub(crate) struct EdgeThreads {
    /// One per thread; it resolves (or fails, if the thread panicked) once the thread's
    /// connections are closed.
    finished: Vec<oneshot::Receiver<()>>,
}

impl EdgeThreads {
    /// Starts one thread per entry of `edges`, each serving `http` and `https` (plain
    /// listeners, not registered with any runtime) until `shared.shutdown`, then draining.
    pub(crate) fn start(
        http: &std::net::TcpListener,
        https: &std::net::TcpListener,
        edges: Vec<Arc<Edge>>,
        shared: &Shared,
    ) -> io::Result<Self> {
        let mut finished = Vec::with_capacity(edges.len());
        for (index, edge) in edges.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Registered here, on the caller's thread, so that a failure stops the start.
            let (http, https) = {
                let _entered = runtime.enter();
                (
                    TcpListener::from_std(http.try_clone()?)?,
                    TcpListener::from_std(https.try_clone()?)?,
                )
            };
            let (done, on_done) = oneshot::channel();
            let serving = serve(http, https, edge, shared.clone());
            std::thread::Builder::new()
                .name(format!("porter-edge-{index}"))
                .spawn(move || {
                    runtime.block_on(serving);
                    // Dropping the runtime cancels what outlived the grace period, before
                    // the caller hears that this thread is done.
                    drop(runtime);
                    let _ = done.send(());
                })?;
            finished.push(on_done);
        }
        Ok(EdgeThreads { finished })
    }

    /// How many threads there are.
    pub(crate) fn count(&self) -> usize {
        self.finished.len()
    }

    /// Resolves once every thread has closed its connections (each within its grace period).
    pub(crate) async fn finished(self) {
        for thread in self.finished {
            // An error means the thread panicked; it is gone all the same.
            let _ = thread.await;
        }
    }
}

/// One thread's work: accept on both listeners and reap idle upstream connections until
/// shutdown, then give the open connections the grace period.
async fn serve(http: TcpListener, https: TcpListener, edge: Arc<Edge>, shared: Shared) {
    let connections = TaskTracker::new();
    tokio::join!(
        serve_http(
            http,
            edge.clone(),
            shared.limits.clone(),
            shared.shutdown.clone(),
            connections.clone(),
        ),
        serve_https(
            https,
            edge.clone(),
            shared.tls,
            shared.limits,
            shared.shutdown.clone(),
            connections.clone(),
        ),
        edge.forwarder.reap_idle(shared.shutdown.clone()),
    );
    drain(&connections, shared.grace).await;
}

//! The edge's threads: one single-threaded runtime per thread, each accepting on the shared
//! listeners and serving the connections it accepted to their end, with its own upstream pool.
//! A connection never moves between threads, so its requests take no cross-thread wake-up or
//! work-stealing bookkeeping (measured against tokio's multi-threaded runtime: about 8% less
//! CPU per keep-alive request, 12% per HTTP/2 request, but 4% more per 64 KiB response, as
//! woken tasks run in turn rather than the one just woken first). Every thread waits on the same
//! listening sockets, so the one that is free takes the next connection.

use crate::proxy::connection::listener::{drain, serve_http, serve_https, Limits};
use crate::proxy::h3::Quic;
use crate::proxy::Edge;
use rustls::ServerConfig;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
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

/// HTTP/3 for the edge threads: the UDP socket of the HTTPS port and its configuration.
pub(crate) struct Http3 {
    pub(crate) socket: std::net::UdpSocket,
    pub(crate) config: quinn::ServerConfig,
    /// True once the socket is this server's alone to read: a predecessor that handed it over
    /// reads it until it has drained its own QUIC connections (two readers would split a
    /// connection's packets between them).
    pub(crate) free: watch::Receiver<bool>,
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
        (http, https, http3): (
            &std::net::TcpListener,
            &std::net::TcpListener,
            Option<Http3>,
        ),
        edges: Vec<Arc<Edge>>,
        shared: &Shared,
    ) -> io::Result<Self> {
        let mut finished = Vec::with_capacity(edges.len());
        // The first thread opens the QUIC endpoint (its driver reads the socket there) and
        // hands it to the others.
        let (opened, quic) = watch::channel(None);
        let mut opener = http3.map(|http3| (http3, opened));
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
            let quic = QuicStart {
                open: opener.take(),
                opened: quic.clone(),
            };
            let serving = serve(http, https, quic, edge, shared.clone());
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

/// How a thread comes by the QUIC endpoint: it opens it (the first thread), or waits for the
/// first thread to.
struct QuicStart {
    open: Option<(Http3, watch::Sender<Option<Arc<Quic>>>)>,
    opened: watch::Receiver<Option<Arc<Quic>>>,
}

impl QuicStart {
    /// The endpoint, once open; `None` when HTTP/3 is off, could not start, or `shutdown` came
    /// first.
    async fn ready(mut self, shutdown: &CancellationToken) -> Option<Arc<Quic>> {
        let waiting = async {
            if let Some((mut http3, opened)) = self.open.take() {
                let _ = http3.free.wait_for(|free| *free).await;
                match Quic::open(http3.socket, http3.config) {
                    Ok(quic) => {
                        opened.send_replace(Some(quic));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serve HTTP/3: the QUIC endpoint does not open");
                        return None;
                    }
                }
            }
            // An error: the first thread is gone, or HTTP/3 is off (no sender was kept).
            let opened = self.opened.wait_for(Option::is_some).await.ok()?;
            opened.clone()
        };
        tokio::select! {
            quic = waiting => quic,
            _ = shutdown.cancelled() => None,
        }
    }
}

/// One thread's work: accept on the listeners (QUIC's too) and reap idle upstream connections
/// until shutdown, then give the open connections the grace period. The thread that opened the
/// QUIC endpoint closes it once every thread's QUIC connections have ended.
async fn serve(
    http: TcpListener,
    https: TcpListener,
    quic: QuicStart,
    edge: Arc<Edge>,
    shared: Shared,
) {
    let connections = TaskTracker::new();
    let opens = quic.open.is_some();
    let (shutdown, limits) = (shared.shutdown.clone(), shared.limits.clone());
    let quic = async {
        let quic = quic.ready(&shutdown).await?;
        let serving =
            quic.clone()
                .serve(edge.clone(), limits, shutdown.clone(), connections.clone());
        serving.await;
        Some(quic)
    };
    let (_, _, quic, _) = tokio::join!(
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
        quic,
        edge.forwarder.reap_idle(shared.shutdown.clone()),
    );
    drain(&connections, shared.grace).await;
    if let (true, Some(quic)) = (opens, quic) {
        quic.close(shared.grace).await;
    }
}

//! The QUIC endpoint on the HTTPS port, shared by the edge threads: each waits on it for new
//! connections, as on the TCP listeners, and serves those it takes to their end. New connections
//! are bounded as on TCP: the memory ceiling, the connection limit, and per client address its
//! connections, handshakes under way and handshake rate. A client whose address QUIC has not
//! validated yet is sent a Retry (RFC 9000 section 8.1) instead of a refusal when handshakes pile
//! up or its address is over its bounds: a flood of Initials from forged addresses then costs one
//! small packet each, cannot lock a real address out, and is not amplified (quinn sends at most
//! three times what an unvalidated address sent).

use super::connection::{self, Handshaking};
use crate::observe::metrics::Listener;
use crate::proxy::connection::listener::Limits;
use crate::proxy::connection::per_ip::Counted;
use crate::proxy::connection::shed::Reason;
use crate::proxy::Edge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handshakes under way, node-wide, from which every unvalidated client is sent a Retry.
const RETRY_ABOVE: usize = 64;
/// HTTP/3's code for "no error", with which the endpoint closes what is left at the end.
const H3_NO_ERROR: u32 = 0x100;

/// The QUIC endpoint and what the edge threads count on it.
pub(crate) struct Quic {
    endpoint: quinn::Endpoint,
    /// Handshakes under way, all threads together.
    handshaking: Arc<AtomicUsize>,
    /// Every thread's QUIC connections: the endpoint, whose driver runs on the thread that
    /// opened it, closes once they have ended.
    connections: TaskTracker,
}

impl Quic {
    /// The endpoint on `socket`, its driver spawned on the current runtime.
    pub(crate) fn open(
        socket: std::net::UdpSocket,
        config: quinn::ServerConfig,
    ) -> std::io::Result<Arc<Quic>> {
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        Ok(Arc::new(Quic {
            endpoint,
            handshaking: Arc::default(),
            connections: TaskTracker::new(),
        }))
    }

    /// Accepts connections for `edge`'s thread until `shutdown`; `tracker` learns of each.
    pub(crate) async fn serve(
        self: Arc<Self>,
        edge: Arc<Edge>,
        limits: Arc<Limits>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
            };
            let Some(admitted) = self.admit(incoming, &edge, &limits) else {
                continue;
            };
            let quic = self.clone();
            let (edge, limits, shutdown) = (edge.clone(), limits.clone(), shutdown.clone());
            let counted = self.connections.token();
            tracker.spawn(async move {
                let (incoming, handshake, held) = admitted;
                let handshaking = Handshaking::start(&quic.handshaking, handshake);
                // The first flight is read here: a handshake may fail at once.
                let connecting = incoming.accept();
                connection::serve(connecting, handshaking, edge, limits, shutdown).await;
                drop((held, counted));
            });
        }
        // New connections are refused from here; those open are drained by their tasks.
        self.endpoint.set_server_config(None);
    }

    /// Whether `incoming` may connect now, with what it holds while it is open; otherwise it
    /// is sent a Retry, refused or ignored here.
    fn admit(
        &self,
        incoming: quinn::Incoming,
        edge: &Edge,
        limits: &Arc<Limits>,
    ) -> Option<(quinn::Incoming, Option<Counted>, impl Send + 'static)> {
        if limits.memory.over() {
            incoming.ignore();
            return None;
        }
        let peer = incoming.remote_address().ip();
        let validated = incoming.remote_address_validated();
        if !validated && self.handshaking.load(Ordering::Relaxed) >= RETRY_ABOVE {
            retry(incoming, limits);
            return None;
        }
        let handshake = match limits.handshake(peer) {
            Some(counted) => counted,
            None if validated => {
                incoming.refuse();
                return None;
            }
            None => {
                retry(incoming, limits);
                return None;
            }
        };
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            limits.shed.note(Reason::Connections);
            incoming.refuse();
            return None;
        };
        let Some(per_ip) = limits.per_ip.admit(peer) else {
            limits.shed.note(Reason::ConnectionsPerIp);
            incoming.refuse();
            return None;
        };
        // The handshake's count goes with its end (see `Handshaking`), the rest with the
        // connection's.
        let open = edge.stats.open(Listener::Quic);
        Some((incoming, handshake, (permit, per_ip, open)))
    }

    /// Once every thread's connections have ended (within `grace`), closes what is left and
    /// waits for the endpoint's last packets to go. Called by the thread the endpoint runs on.
    pub(crate) async fn close(&self, grace: Duration) {
        self.connections.close();
        let _ = tokio::time::timeout(grace, self.connections.wait()).await;
        self.endpoint
            .close(quinn::VarInt::from_u32(H3_NO_ERROR), b"");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Asks `incoming`'s client to prove its address first.
fn retry(incoming: quinn::Incoming, limits: &Limits) {
    // Only an Initial without a token can be asked; one that came back with a token that did
    // not validate is dropped.
    if incoming.may_retry() {
        limits.shed.note(Reason::QuicRetry);
        let _ = incoming.retry();
    } else {
        incoming.ignore();
    }
}

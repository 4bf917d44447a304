//! The ACME challenge answers the edge gives validators (HTTP-01 key authorizations, TLS-ALPN-01
//! configurations), held in memory and kept current from the store's change feed as the
//! snapshot is: answering a validation never waits on the store.

use crate::tls::acme_tls;
use arc_swap::ArcSwap;
use bytes::Bytes;
use porter_store::{Change, Store};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// What the answers say of a token or name.
pub(crate) enum Lookup<T> {
    /// The answer to give.
    Found(T),
    /// The store holds no such challenge.
    Absent,
    /// The answers are not known to be current (not read yet, or a change not read yet): the
    /// store may hold one.
    Unknown,
}

/// The challenge answers held in memory.
#[derive(Default)]
pub(crate) struct Answers {
    http01: HashMap<String, Bytes>,
    tls_alpn: HashMap<String, Arc<ServerConfig>>,
    /// Whether these are what the store holds.
    current: bool,
}

impl Answers {
    /// The key authorization for the HTTP-01 `token`.
    pub(crate) fn http01(&self, token: &str) -> Lookup<Bytes> {
        self.lookup(self.http01.get(token))
    }

    /// The configuration answering a TLS-ALPN-01 validation of `name`.
    pub(crate) fn tls_alpn(&self, name: &str) -> Lookup<Arc<ServerConfig>> {
        self.lookup(self.tls_alpn.get(name))
    }

    fn lookup<T: Clone>(&self, found: Option<&T>) -> Lookup<T> {
        match (found, self.current) {
            (Some(answer), _) => Lookup::Found(answer.clone()),
            (None, true) => Lookup::Absent,
            (None, false) => Lookup::Unknown,
        }
    }

    /// The same answers, no longer known to be current.
    fn outdated(&self) -> Answers {
        Answers {
            http01: self.http01.clone(),
            tls_alpn: self.tls_alpn.clone(),
            current: false,
        }
    }
}

/// Reads every challenge of the store into `answers`, then again after each change of one,
/// until `shutdown`. `changes` must have been subscribed before, so that nothing committed in
/// between is missed.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    answers: Arc<ArcSwap<Answers>>,
    mut changes: broadcast::Receiver<Change>,
    shutdown: CancellationToken,
) {
    loop {
        match store.challenges().await {
            Ok((http01, tls_alpn)) => answers.store(Arc::new(Answers {
                http01: http01
                    .into_iter()
                    .map(|c| (c.token, Bytes::from(c.key_authorization)))
                    .collect(),
                tls_alpn: tls_alpn
                    .into_iter()
                    .filter_map(|c| Some((c.domain.to_string(), acme_tls::config(c)?)))
                    .collect(),
                current: true,
            })),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the ACME challenges; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        }
        // Wait for a change of a challenge; the ones already waiting are covered by one read.
        loop {
            let change = tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            match change {
                Ok(Change::Challenges(_) | Change::Everything) | Err(RecvError::Lagged(_)) => break,
                Ok(_) => {}
                Err(RecvError::Closed) => return,
            }
        }
        answers.store(Arc::new(answers.load().outdated()));
        while !matches!(
            changes.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }
}

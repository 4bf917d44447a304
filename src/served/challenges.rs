//! The ACME challenge answers the edge gives validators (HTTP-01 key authorizations, TLS-ALPN-01
//! configurations), held in memory and kept current from the store's change feed as the
//! snapshot is, so that answering a validation of a challenge in memory does not wait on the
//! store.
//!
//! In a fleet the feed may lag: another node writes a challenge and tells the CA, whose check
//! can land here before the change does. A token or name the answers lack is therefore looked
//! up in the store once more before the answer is no: in one read begun after the ask, shared
//! by every ask meanwhile, at most one every [`RECHECK_SPACING`] (a client asking for unknown
//! tokens costs the store ten reads a second, whatever its rate), and only for well-formed
//! tokens.

use crate::runtime::service::{follow, Follower};
use crate::served::acme_tls;
use arc_swap::ArcSwap;
use bytes::Bytes;
use porter_store::{Change, Store, StoreError};
use rustls::ServerConfig;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// The least time between two reads of the store for answers the memory lacks.
const RECHECK_SPACING: Duration = Duration::from_millis(100);
/// How long an ask waits for such a read before it is answered from memory.
const RECHECK_WAIT: Duration = Duration::from_secs(3);

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
struct Answers {
    http01: HashMap<String, Bytes>,
    tls_alpn: HashMap<String, Arc<ServerConfig>>,
    /// Whether these are what the store holds.
    current: bool,
}

impl Answers {
    /// The key authorization for the HTTP-01 `token`.
    fn http01(&self, token: &str) -> Lookup<Bytes> {
        self.lookup(self.http01.get(token))
    }

    /// The configuration answering a TLS-ALPN-01 validation of `name`.
    fn tls_alpn(&self, name: &str) -> Lookup<Arc<ServerConfig>> {
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

/// The answers in memory, and a second look at the store for what they lack.
pub(crate) struct Challenges {
    answers: ArcSwap<Answers>,
    /// Wakes the reader of [`recheck`]; its one permit makes the asks made meanwhile share a
    /// read.
    wanted: Notify,
    /// The latest read made for asks the answers lacked.
    fresh: watch::Sender<Fresh>,
}

/// A read of the store's challenges made for asks the memory lacked.
#[derive(Clone)]
struct Fresh {
    started: Instant,
    /// `None` when the store did not answer.
    answers: Option<Arc<Answers>>,
}

impl Challenges {
    pub(crate) fn new() -> Challenges {
        Challenges {
            answers: ArcSwap::from_pointee(Answers::default()),
            wanted: Notify::new(),
            fresh: watch::Sender::new(Fresh {
                started: Instant::now(),
                answers: None,
            }),
        }
    }

    /// The key authorization for the HTTP-01 `token`, from the store when the memory lacks it.
    pub(crate) async fn http01(&self, token: &str) -> Lookup<Bytes> {
        if !well_formed_token(token) {
            return self.answers.load().http01(token);
        }
        self.find(|answers| answers.http01(token)).await
    }

    /// The configuration answering a TLS-ALPN-01 validation of `name` (a valid DNS name),
    /// from the store when the memory lacks it.
    pub(crate) async fn tls_alpn(&self, name: &str) -> Lookup<Arc<ServerConfig>> {
        self.find(|answers| answers.tls_alpn(name)).await
    }

    async fn find<T>(&self, pick: impl Fn(&Answers) -> Lookup<T>) -> Lookup<T> {
        let held = pick(&self.answers.load());
        if matches!(held, Lookup::Found(_)) {
            return held;
        }
        match self.read_after(Instant::now()).await {
            Some(fresh) => pick(&fresh),
            None => held,
        }
    }

    /// The challenges of a read of the store begun after `asked`; `None` when none finished
    /// within [`RECHECK_WAIT`] or the store did not answer.
    async fn read_after(&self, asked: Instant) -> Option<Arc<Answers>> {
        let mut fresh = self.fresh.subscribe();
        self.wanted.notify_one();
        let wait = async {
            loop {
                {
                    let read = fresh.borrow_and_update();
                    if read.started >= asked {
                        return read.answers.clone();
                    }
                }
                fresh.changed().await.ok()?;
            }
        };
        tokio::time::timeout(RECHECK_WAIT, wait)
            .await
            .ok()
            .flatten()
    }
}

/// Whether `token` may be an ACME token (RFC 8555 section 8.3: base64url, at least 128 bits):
/// anything else is not looked up in the store.
fn well_formed_token(token: &str) -> bool {
    (22..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Every challenge the store holds, as answers.
async fn read(store: &dyn Store) -> Result<Answers, StoreError> {
    let (http01, tls_alpn) = store.challenges().await?;
    Ok(Answers {
        http01: http01
            .into_iter()
            .map(|c| (c.token, Bytes::from(c.key_authorization)))
            .collect(),
        tls_alpn: tls_alpn
            .into_iter()
            .filter_map(|c| Some((c.domain.to_string(), acme_tls::config(c)?)))
            .collect(),
        current: true,
    })
}

/// Keeps `challenges` current from the store (see [`Following`]) and answers their asks for what
/// they lack (see [`recheck`]), until `shutdown`.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    challenges: Arc<Challenges>,
    changes: broadcast::Receiver<Change>,
    shutdown: CancellationToken,
) {
    let following = Following {
        store: &*store,
        answers: &challenges.answers,
    };
    tokio::join!(
        follow(&following, changes, &shutdown),
        recheck(&*store, &challenges, &shutdown),
    );
}

/// Reads the store's challenges for the asks the answers lacked, one read at a time and at
/// most one every [`RECHECK_SPACING`], until `shutdown`.
async fn recheck(store: &dyn Store, challenges: &Challenges, shutdown: &CancellationToken) {
    let mut last: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // No read comes any more: asks (during the drain) take what memory holds at once,
                // instead of waiting RECHECK_WAIT for nothing.
                challenges.fresh.send_replace(Fresh {
                    started: Instant::now() + Duration::from_secs(24 * 3600),
                    answers: None,
                });
                return;
            }
            _ = challenges.wanted.notified() => {}
        }
        if let Some(last) = last {
            tokio::time::sleep_until((last + RECHECK_SPACING).into()).await;
        }
        let started = Instant::now();
        last = Some(started);
        let answers = match tokio::time::timeout(RECHECK_WAIT, read(store)).await {
            Ok(Ok(answers)) => Some(Arc::new(answers)),
            Ok(Err(_)) | Err(_) => None,
        };
        challenges.fresh.send_replace(Fresh { started, answers });
    }
}

/// Keeps the answers what the store holds: read in full at the start and after each change
/// of a challenge.
struct Following<'a> {
    store: &'a dyn Store,
    answers: &'a ArcSwap<Answers>,
}

impl Follower for Following<'_> {
    const NAME: &'static str = "challenge answers";

    fn cares(&self, change: &Change) -> bool {
        matches!(change, Change::Challenges(_))
    }

    async fn reload(&self) -> Result<(), StoreError> {
        // Until this read is in, an answer the memory lacks may be in the store.
        self.answers.store(Arc::new(self.answers.load().outdated()));
        self.answers.store(Arc::new(read(self.store).await?));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tokens_that_may_be_acme_tokens_are_looked_up() {
        let pebble = "kW4qR6Gq1EC3zzXBUbyBZ4lm1ikOkqhxsHgV2Ow-Pcc";
        assert!(well_formed_token(pebble));
        assert!(well_formed_token(&"a".repeat(22)));
        assert!(!well_formed_token(&"a".repeat(21)), "under 128 bits");
        assert!(!well_formed_token(&"a".repeat(129)));
        assert!(!well_formed_token(
            "kW4qR6Gq1EC3zzXBUbyBZ4lm1ikOkqhxsHgV2Ow+Pcc"
        ));
        assert!(!well_formed_token(
            "kW4qR6Gq1EC3zzXBUbyBZ4lm1ikOkqhxsHgV2Ow%2F"
        ));
    }
}

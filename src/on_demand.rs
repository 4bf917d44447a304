//! On-demand TLS (`--on-demand-ask URL`): a handshake for a name Porter does not serve yet asks
//! the operator's endpoint (`GET URL?domain=NAME`: 200 allows it; anything else, or no answer
//! within [`ASK_TIMEOUT`], refuses it) and only then adds the site (to
//! `--on-demand-upstream`, ACME on) and waits, within the handshake timeout, for its
//! certificate; concurrent handshakes for the name wait on the same order. Refused unless the
//! endpoint says yes; refusals are remembered for [`REFUSED_FOR`] (an allowed name is a site
//! from then on); at most `--on-demand-rate` sites are added a minute and [`ASKING`] asks run at
//! once, so that handshakes for random names cannot spend the CA's limits or flood the
//! endpoint; a name whose order is failing is refused until its back-off ends, not waited for.

use crate::reload::LiveSites;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use porter_store::{unix_now, DomainName, Site, Store, StoreError, Target, Upstream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the ask endpoint has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a refusal is remembered.
const REFUSED_FOR: Duration = Duration::from_secs(600);
/// Asks in flight at once; handshakes beyond are refused.
const ASKING: usize = 16;
/// Names remembered (refusals, and the per-name gates); past it the memory starts again.
const REMEMBERED: usize = 65_536;

/// What `serve` is told.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The ask endpoint, `http://HOST:PORT/PATH`.
    pub(crate) ask: http::Uri,
    /// Where the sites it adds send their requests.
    pub(crate) upstream: Upstream,
    /// Sites added a minute, at most.
    pub(crate) per_minute: u32,
}

/// An `http://` URL with a host (the endpoint is the operator's own service, next to Porter).
pub(crate) fn ask_url(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() || uri.query().is_some() {
        return Err(format!(
            "{text:?}: the ask endpoint is an http:// URL without a query (Porter adds ?domain=NAME)"
        ));
    }
    Ok(uri)
}

/// On-demand issuance for the edge.
pub(crate) struct OnDemand {
    settings: Settings,
    store: Arc<dyn Store>,
    /// Names refused, until when.
    refused: Mutex<HashMap<String, Instant>>,
    /// One gate a name: the first handshake asks and adds, the others wait behind it.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    asking: tokio::sync::Semaphore,
    /// Token bucket of site additions: tokens, and when it was last filled.
    bucket: Mutex<(f64, Instant)>,
}

impl OnDemand {
    pub(crate) fn new(settings: Settings, store: Arc<dyn Store>) -> Self {
        let full = f64::from(settings.per_minute.max(1));
        OnDemand {
            settings,
            store,
            refused: Mutex::default(),
            gates: Mutex::default(),
            asking: tokio::sync::Semaphore::new(ASKING),
            bucket: Mutex::new((full, Instant::now())),
        }
    }

    /// Whether a certificate for `name` is served once this returns true; false refuses the
    /// handshake. The caller bounds the wait (the handshake timeout).
    pub(crate) async fn obtain(&self, name: &str, sites: &LiveSites) -> bool {
        if name.contains('*') {
            return false;
        }
        let Ok(domain) = DomainName::parse(name) else {
            return false;
        };
        if self.still_refused(name) {
            return false;
        }
        let gate = self.gate(name);
        let _turn = gate.lock().await;
        // Another handshake may have done it meanwhile.
        if sites.current().cert(name).is_some() {
            return true;
        }
        if sites.current().site(name).is_some() {
            // Added before: its order is under way, unless it is failing.
            if self.failing(&domain).await {
                return false;
            }
        } else if !self.add(&domain).await {
            return false;
        }
        wait_for_cert(sites, name).await;
        true
    }

    fn still_refused(&self, name: &str) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused
            .get(name)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn refuse(&self, name: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.len() >= REMEMBERED {
            refused.clear();
        }
        refused.insert(name.to_owned(), Instant::now() + REFUSED_FOR);
    }

    fn gate(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if gates.len() >= REMEMBERED {
            // Only gates nobody holds go.
            gates.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        gates.entry(name.to_owned()).or_default().clone()
    }

    /// Whether the site's order failed and its back-off has not ended.
    async fn failing(&self, domain: &DomainName) -> bool {
        match self.store.acme_state(domain).await {
            Ok(Some(state)) => state.retry_at.is_some_and(|at| at > unix_now()),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Asks, then adds the site when allowed and within the rate; whether it was added (or
    /// existed already).
    async fn add(&self, domain: &DomainName) -> bool {
        let name = domain.as_str();
        let Ok(_asking) = self.asking.try_acquire() else {
            tracing::warn!(%name, "on-demand: too many asks at once; refused");
            return false;
        };
        if !self.ask(name).await {
            tracing::debug!(%name, "on-demand: the ask endpoint refused the name");
            self.refuse(name);
            return false;
        }
        if !self.take_token() {
            tracing::warn!(%name, per_minute = self.settings.per_minute, "on-demand: the site rate is spent; refused for now");
            return false;
        }
        let site = Site {
            domain: domain.clone(),
            target: Target::Upstream(self.settings.upstream.clone()),
            acme: true,
            hsts_max_age: porter_store::DEFAULT_HSTS_MAX_AGE,
            features: Default::default(),
            challenge: None,
        };
        match self.store.add_site(site).await {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => {
                tracing::info!(%name, "on-demand: allowed; site added, obtaining its certificate");
                true
            }
            Err(e) => {
                tracing::error!(%name, error = %e, "on-demand: cannot add the site");
                false
            }
        }
    }

    fn take_token(&self) -> bool {
        let per_minute = f64::from(self.settings.per_minute.max(1));
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, filled) = &mut *bucket;
        *tokens = (*tokens + filled.elapsed().as_secs_f64() * per_minute / 60.0).min(per_minute);
        *filled = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// `GET ask?domain=NAME`: whether it answered 200 in time.
    async fn ask(&self, name: &str) -> bool {
        let uri = &self.settings.ask;
        let (Some(host), port) = (uri.host(), uri.port_u16().unwrap_or(80)) else {
            return false;
        };
        let target = format!("{}?domain={name}", uri.path());
        let attempt = async {
            let stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(conn);
            let request = http::Request::get(target)
                .header(http::header::HOST, host)
                .body(Empty::<Bytes>::new())
                .ok()?;
            let response = sender.send_request(request).await.ok()?;
            Some(response.status() == http::StatusCode::OK)
        };
        match tokio::time::timeout(ASK_TIMEOUT, attempt).await {
            Ok(Some(allowed)) => allowed,
            Ok(None) => {
                tracing::warn!(%name, endpoint = %uri, "on-demand: the ask endpoint cannot be reached; refused");
                false
            }
            Err(_) => {
                tracing::warn!(%name, endpoint = %uri, "on-demand: the ask endpoint did not answer in time; refused");
                false
            }
        }
    }
}

/// Waits until the snapshot serves a certificate for `name`.
async fn wait_for_cert(sites: &LiveSites, name: &str) {
    let mut swaps = sites.swaps();
    while sites.current().cert(name).is_none() {
        if swaps.changed().await.is_err() {
            // The server is stopping: the caller's timeout ends the handshake.
            std::future::pending::<()>().await;
        }
    }
}

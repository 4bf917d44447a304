//! On-demand TLS (`--on-demand-upstream ADDR`): a handshake for a name Porter does not serve
//! yet is allowed when one of the operator's rules in the store covers it (`porter on-demand
//! allow example.com`), else when the ask endpoint says so (`--on-demand-ask URL`: `GET
//! URL?domain=NAME`, 200 allows it, and may name the site's target with `Porter-Upstream` or
//! `Porter-App`; anything else, or no answer within [`ASK_TIMEOUT`], refuses it). Only then is
//! the site added (ACME on), and the handshake waits, within the handshake timeout, for its
//! certificate; concurrent handshakes for the name wait on the same order. Refused unless a
//! rule or the endpoint says yes; refusals are remembered for [`REFUSED_FOR`] (an allowed name
//! is a site from then on); at most `--on-demand-rate` sites are added a minute and [`ASKING`]
//! asks run at once, so that handshakes for random names cannot spend the CA's limits or flood
//! the endpoint; a name whose order is failing is refused until its back-off ends, not waited
//! for.

use crate::runtime::log_limit::limited;
use crate::runtime::service::{follow, Follower};
use crate::served::reload::LiveSites;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use porter_store::Recover as _;
use porter_store::{
    on_demand_allows, unix_now, AppId, Change, DomainName, Site, Store, StoreError, Target,
    Upstream,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How long the ask endpoint has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a refusal is remembered.
const REFUSED_FOR: Duration = Duration::from_secs(600);
/// Asks in flight at once; handshakes beyond are refused.
const ASKING: usize = 16;
/// Names remembered (refusals, and the per-name gates); past it the memory starts again.
const REMEMBERED: usize = 65_536;

/// What on-demand TLS decided for a handshake, as the metrics name it.
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// A rule in the store allowed the name.
    AllowedByRule,
    /// The ask endpoint allowed it.
    AllowedByAsk,
    /// Neither did (or the name cannot be a site).
    Refused,
    /// Too many asks were in flight.
    Busy,
    /// The site rate was spent.
    RateLimited,
    /// Its order is failing and backing off.
    Failing,
}

impl Decision {
    /// Every decision, in the order of [`OnDemand::decisions`].
    const ALL: [Decision; 6] = [
        Decision::AllowedByRule,
        Decision::AllowedByAsk,
        Decision::Refused,
        Decision::Busy,
        Decision::RateLimited,
        Decision::Failing,
    ];

    /// Its metric label.
    fn label(self) -> &'static str {
        match self {
            Decision::AllowedByRule => "allowed_by_rule",
            Decision::AllowedByAsk => "allowed_by_ask",
            Decision::Refused => "refused",
            Decision::Busy => "busy",
            Decision::RateLimited => "rate_limited",
            Decision::Failing => "failing",
        }
    }

    fn allows(self) -> bool {
        matches!(self, Decision::AllowedByRule | Decision::AllowedByAsk)
    }
}

/// What `serve` is told.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The ask endpoint, `http://HOST:PORT/PATH`, if any (without one, only rules allow).
    pub(crate) ask: Option<http::Uri>,
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
    /// The operator's allow rules, as the store last had them.
    rules: RwLock<Vec<DomainName>>,
    /// Handshakes by [`Decision`].
    decisions: [AtomicU64; Decision::ALL.len()],
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
            rules: RwLock::default(),
            decisions: Default::default(),
        }
    }

    /// Handshakes for unknown names since the start, by decision.
    pub(crate) fn decisions(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Decision::ALL.iter().map(|d| {
            (
                d.label(),
                self.decisions[*d as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Counts `decision` for the metrics, and says whether it lets the handshake go on.
    fn decided(&self, decision: Decision) -> bool {
        self.decisions[decision as usize].fetch_add(1, Ordering::Relaxed);
        decision.allows()
    }

    /// Keeps the allow rules as the store has them, until `stop` (read in full at the start,
    /// after missed changes, and at each change of the rules).
    pub(crate) async fn follow_rules(
        self: Arc<Self>,
        changes: broadcast::Receiver<Change>,
        stop: CancellationToken,
    ) {
        follow(&*self, changes, &stop).await;
    }

    fn rule_allows(&self, domain: &DomainName) -> bool {
        let rules = self.rules.read().recover();
        rules.iter().any(|rule| on_demand_allows(rule, domain))
    }

    /// Whether a certificate for `name` is served once this returns true; false refuses the
    /// handshake. The caller bounds the wait (the handshake timeout).
    pub(crate) async fn obtain(&self, name: &str, sites: &LiveSites) -> bool {
        if name.contains('*') {
            return self.decided(Decision::Refused);
        }
        let Ok(domain) = DomainName::parse(name) else {
            return self.decided(Decision::Refused);
        };
        if self.still_refused(name) {
            return self.decided(Decision::Refused);
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
                return self.decided(Decision::Failing);
            }
        } else if !self.add(&domain).await {
            return false;
        }
        wait_for_cert(sites, name).await;
        true
    }

    fn still_refused(&self, name: &str) -> bool {
        let refused = self.refused.lock().recover();
        refused
            .get(name)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn refuse(&self, name: &str) {
        let mut refused = self.refused.lock().recover();
        if refused.len() >= REMEMBERED {
            refused.clear();
        }
        refused.insert(name.to_owned(), Instant::now() + REFUSED_FOR);
    }

    fn gate(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.gates.lock().recover();
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

    /// Checks the rules, else asks; then adds the site when allowed and within the rate;
    /// whether it was added (or existed already).
    async fn add(&self, domain: &DomainName) -> bool {
        let name = domain.as_str();
        let default = || Target::Upstream(self.settings.upstream.clone());
        let (allowed, target) = if self.rule_allows(domain) {
            (Decision::AllowedByRule, default())
        } else if let Some(ask) = &self.settings.ask {
            let Ok(_asking) = self.asking.try_acquire() else {
                limited!(
                    warn,
                    name = name,
                    "on-demand: too many asks at once; refused"
                );
                return self.decided(Decision::Busy);
            };
            let Some(target) = self.ask(ask, name).await else {
                tracing::debug!(%name, "on-demand: the ask endpoint refused the name");
                self.refuse(name);
                return self.decided(Decision::Refused);
            };
            (Decision::AllowedByAsk, target.unwrap_or_else(default))
        } else {
            self.refuse(name);
            return self.decided(Decision::Refused);
        };
        if !self.take_token() {
            limited!(
                warn,
                name = name,
                "on-demand: the site rate is spent; refused for now",
                per_minute = self.settings.per_minute
            );
            return self.decided(Decision::RateLimited);
        }
        let site = Site {
            domain: domain.clone(),
            target,
            acme: true,
            hsts_max_age: None,
            features: Default::default(),
            challenge: None,
            needs_cert_since: Some(porter_store::unix_now()),
            balancing: None,
        };
        match self.store.add_site(site).await {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => {
                tracing::info!(%name, by = allowed.label(), "on-demand: allowed; site added, obtaining its certificate");
                self.decided(allowed)
            }
            Err(e) => {
                tracing::error!(%name, error = %e, "on-demand: cannot add the site");
                false
            }
        }
    }

    fn take_token(&self) -> bool {
        let per_minute = f64::from(self.settings.per_minute.max(1));
        let mut bucket = self.bucket.lock().recover();
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

    /// `GET ask?domain=NAME`: `None` unless it answered 200 in time; with 200, where the
    /// site's requests go when the answer says (`Porter-Upstream: HOST:PORT` or `Porter-App:
    /// ID`; an answer naming something invalid refuses).
    async fn ask(&self, uri: &http::Uri, name: &str) -> Option<Option<Target>> {
        let (Some(host), port) = (uri.host(), uri.port_u16().unwrap_or(80)) else {
            return None;
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
            Some((response.status(), answered_target(response.headers())))
        };
        match tokio::time::timeout(ASK_TIMEOUT, attempt).await {
            Ok(Some((http::StatusCode::OK, Ok(target)))) => Some(target),
            Ok(Some((http::StatusCode::OK, Err(e)))) => {
                limited!(warn, name = name, "on-demand: the ask endpoint allowed the name with a target that cannot be used; refused", endpoint = %uri, error = %e);
                None
            }
            Ok(Some(_)) => None,
            Ok(None) => {
                limited!(warn, name = name, "on-demand: the ask endpoint cannot be reached; refused", endpoint = %uri);
                None
            }
            Err(_) => {
                limited!(warn, name = name, "on-demand: the ask endpoint did not answer in time; refused", endpoint = %uri);
                None
            }
        }
    }
}

impl Follower for OnDemand {
    const NAME: &'static str = "on-demand rules";

    fn cares(&self, change: &Change) -> bool {
        matches!(change, Change::OnDemandRules)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let rules = self.store.on_demand_rules().await?;
        *self.rules.write().recover() = rules;
        // A name refused under the old rules may be allowed now.
        self.refused.lock().recover().clear();
        Ok(())
    }
}

/// The target an allowing answer names, if any.
fn answered_target(headers: &http::HeaderMap) -> Result<Option<Target>, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(|_| format!("{name} is not text")))
            .transpose()
    };
    match (text("porter-upstream")?, text("porter-app")?) {
        (Some(_), Some(_)) => Err("it names both Porter-Upstream and Porter-App".into()),
        (Some(upstream), None) => Upstream::parse(upstream.trim())
            .map(|u| Some(Target::Upstream(u)))
            .map_err(|e| e.to_string()),
        (None, Some(app)) => AppId::parse(app.trim())
            .map(|a| Some(Target::App(a)))
            .map_err(|e| e.to_string()),
        (None, None) => Ok(None),
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

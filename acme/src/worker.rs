//! The ACME worker: derives from the store which sites need a certificate and when, runs those
//! attempts with bounded concurrency (one order per domain at a time), records each outcome in
//! the store, and wakes on store changes (a site added, a renewal asked for) or when the next
//! site falls due.

use crate::account;
use crate::agenda::Agenda;
use crate::cert_pages::for_each_cert;
use crate::config::Config;
use crate::error::{AcmeError, AtStep as _};
use crate::http::PacedClient;
use crate::order::{self, Ctx, Issued};
use crate::outcomes::Outcomes;
use crate::request;
use crate::schedule::{self, backoff, pick_in_window, renewal_at, unit_jitter};
use instant_acme::{Account, CertificateIdentifier, RevocationRequest};
use porter_store::{
    unix_now, AcmeRequest, AcmeState, AriWindow, CertRecord, CertSource, Change, DnsZone,
    DomainName, Recover as _, Site, Store, StoreError,
};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Mutex;
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// How long a domain whose ACME lock another node holds waits before it is looked at again
/// (its certificate, when that node stores it, re-plans it at once).
const LOCKED_RETRY: i64 = 5;

/// How an attempt ended.
enum Attempted {
    /// Carried out (or failed and recorded).
    Done,
    /// Not made: another node holds the domain's lock, or the store is out of reach.
    ElsewhereInFleet,
}

/// Why an attempt stopped before its end.
enum Stopped {
    /// The CA failed, or the way to it: recorded as a failed attempt, retried after a backoff.
    AtCa(AcmeError),
    /// The store failed, so the attempt cannot be recorded: the worker plans the site again.
    Unrecorded(AcmeError),
}

/// What `?` passes on in a step is the recording's failure (the store, or a request update
/// that ended in a store error); a CA call says [`Stopped::AtCa`] where it is made.
impl From<AcmeError> for Stopped {
    fn from(e: AcmeError) -> Self {
        Stopped::Unrecorded(e)
    }
}

impl From<StoreError> for Stopped {
    fn from(e: StoreError) -> Self {
        Stopped::Unrecorded(e.into())
    }
}

/// What the store holds about one ACME site, as read for planning or at the start of an
/// attempt.
struct Records {
    site: Site,
    cert: Option<CertRecord>,
    state: AcmeState,
    /// What is asked of the worker. Only what is read here is taken off the request at the
    /// end of an attempt: what is asked while it runs stays for the next one.
    asked: Option<AcmeRequest>,
    /// Every DNS zone (a wildcard is validated in its zone).
    zones: Vec<DnsZone>,
}

impl Records {
    /// The records of `domain`, if it is a site.
    async fn read(store: &dyn Store, domain: &DomainName) -> Result<Option<Self>, StoreError> {
        let Some(site) = store.site(domain).await? else {
            return Ok(None);
        };
        Ok(Some(Records {
            site,
            cert: store.cert(domain).await?,
            state: store.acme_state(domain).await?.unwrap_or_default(),
            asked: store.acme_request(domain).await?,
            zones: store.dns_zones().await?,
        }))
    }
}

/// One CA the worker orders from.
struct Ca {
    config: Config,
    /// Whether it offers ARI (RFC 9773); learned at start.
    ari: bool,
    /// Created on first need, then reused.
    account: Mutex<Option<Account>>,
    /// The id of an account the CA no longer knows: the stored one, if it is this, is replaced
    /// by a new registration at the next need.
    gone: std::sync::Mutex<Option<String>>,
}

/// What the worker shares between attempts.
struct Worker {
    store: Arc<dyn Store>,
    /// The CAs in the order they are tried (at least one).
    cas: Vec<Ca>,
    http: PacedClient,
    outcomes: Arc<Outcomes>,
}

/// A configured ACME worker: [`AcmeWorker::new`] checks what can be checked at start (the CA
/// root loads), [`AcmeWorker::run`] does the work.
pub struct AcmeWorker {
    store: Arc<dyn Store>,
    config: Config,
    http: PacedClient,
    outcomes: Arc<Outcomes>,
}

impl AcmeWorker {
    /// Prepares the worker; fails with an operator-facing message when the configuration
    /// cannot work (an unreadable `--acme-ca-root`, no system roots).
    pub fn new(store: Arc<dyn Store>, config: Config) -> Result<Self, AcmeError> {
        let http = PacedClient::new(config.ca_root.as_deref(), config.requests_per_second)
            .map_err(AcmeError::Config)?;
        Ok(AcmeWorker {
            store,
            config,
            http,
            outcomes: Arc::default(),
        })
    }

    /// What its orders come to, as they happen (for metrics).
    pub fn outcomes(&self) -> Arc<Outcomes> {
        self.outcomes.clone()
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let AcmeWorker {
            store,
            config,
            http,
            outcomes,
        } = self;
        let mut cas = Vec::new();
        for config in config.per_ca() {
            let ari = match http.directory_has_ari(&config.directory).await {
                Ok(ari) => ari,
                Err(e) => {
                    tracing::warn!(directory = %config.directory, error = %e, "cannot read the ACME directory yet; assuming no ARI");
                    false
                }
            };
            cas.push(Ca {
                config,
                ari,
                account: Mutex::new(None),
                gone: std::sync::Mutex::default(),
            });
        }
        let with_ari: Vec<(&str, bool)> = cas
            .iter()
            .map(|c| (c.config.directory.as_str(), c.ari))
            .collect();
        tracing::info!(cas = ?with_ari, "ACME worker started (CAs in the order tried, with whether they offer ARI)");
        let worker = Arc::new(Worker {
            store,
            cas,
            http,
            outcomes,
        });
        worker.run(shutdown).await;
    }
}

/// Revokes each of `leaves` at the CA; one the CA already revoked counts as done.
async fn revoke(account: &Account, directory: &str, leaves: &[Vec<u8>]) -> Result<(), AcmeError> {
    for leaf in leaves {
        let leaf = CertificateDer::from(leaf.as_slice());
        let request = RevocationRequest {
            certificate: &leaf,
            reason: None,
        };
        match account.revoke(&request).await {
            Ok(()) => {}
            Err(instant_acme::Error::Api(problem))
                if problem.r#type.as_deref()
                    == Some("urn:ietf:params:acme:error:alreadyRevoked") => {}
            Err(e) => return Err(e).at(directory, "revocation"),
        }
    }
    Ok(())
}

/// When `site` needs the worker next, if ever (`ari`: whether the CA that issued `cert` offers
/// ARI; `zones`: the DNS zones, without which a wildcard cannot be validated).
fn due_at(
    site: &Site,
    cert: Option<&CertRecord>,
    state: &AcmeState,
    request: Option<&AcmeRequest>,
    (ari, zones): (bool, &[DnsZone]),
    now: i64,
) -> Option<i64> {
    if !site.acme || DnsZone::wildcard_without_zone(zones, &site.domain) {
        return None;
    }
    if cert.is_some_and(|c| c.source == CertSource::Imported) {
        return None;
    }
    // A request made since the last attempt goes first, whatever the backoff says; one the
    // last attempt failed to carry out waits for the backoff like any retry.
    if request.is_some_and(|r| state.last_attempt.is_none_or(|at| r.requested_at >= at)) {
        return Some(now);
    }
    let want = match cert {
        Some(cert) => {
            let renew = renewal_at(cert, state, request, now);
            let ari_check = match &state.ari {
                _ if !ari => i64::MAX,
                Some(window) if window.serial == cert.serial => window.next_check,
                _ => now,
            };
            renew.min(ari_check)
        }
        None => now,
    };
    Some(want.max(state.retry_at.unwrap_or(i64::MIN)))
}

/// The attempts under way: at most one per domain.
#[derive(Default)]
struct Attempts {
    tasks: JoinSet<Attempted>,
    by_domain: HashMap<DomainName, AbortHandle>,
    /// The domain of each task, to know whose attempt ended.
    domains: HashMap<tokio::task::Id, DomainName>,
}

impl Attempts {
    /// Runs `attempt` as the attempt of `domain`.
    fn start(
        &mut self,
        domain: DomainName,
        attempt: impl Future<Output = Attempted> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(attempt);
        self.domains.insert(handle.id(), domain.clone());
        self.by_domain.insert(domain, handle);
    }

    /// Takes an ended attempt off the list: its domain and how it ended (one that panicked or
    /// was stopped counts as done: its records say what comes next).
    fn ended(
        &mut self,
        done: Result<(tokio::task::Id, Attempted), JoinError>,
    ) -> Option<(DomainName, Attempted)> {
        let (id, attempted) = match done {
            Ok((id, attempted)) => (id, attempted),
            Err(e) => {
                if e.is_panic() {
                    tracing::error!("an ACME attempt panicked; it will be retried");
                }
                (e.id(), Attempted::Done)
            }
        };
        let domain = self.domains.remove(&id)?;
        self.by_domain.remove(&domain);
        Some((domain, attempted))
    }
}

impl Worker {
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.store.subscribe();
        let mut attempts = Attempts::default();
        // A full plan at start, then hourly as a safety net, and after missed changes; in
        // between, each change re-plans just its site.
        let mut agenda = Agenda::default();
        let mut paused = false;
        loop {
            let now = unix_now();
            paused = self.paused(paused, &mut agenda);
            let next = if paused {
                now + 1
            } else {
                if agenda.full_plan_due(now) {
                    agenda.replace(self.plan(now).await, now);
                }
                self.start_due(&agenda, &mut attempts, now);
                agenda.next_wake(now)
            };
            let sleep = tokio::time::sleep(Duration::from_secs((next - now).max(0) as u64));
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Every step of an order is in the store: the next start resumes it.
                    attempts.tasks.abort_all();
                    return;
                }
                Some(done) = attempts.tasks.join_next_with_id(), if !attempts.tasks.is_empty() => {
                    match attempts.ended(done) {
                        // Another node is at it: look again later (or when its work lands).
                        Some((domain, Attempted::ElsewhereInFleet)) => {
                            agenda.set(domain, Some(unix_now() + LOCKED_RETRY));
                        }
                        // Its state has changed: when is it due now?
                        Some((domain, Attempted::Done)) => self.replan(&mut agenda, domain).await,
                        None => {}
                    }
                }
                change = changes.recv() => self.follow(change, &attempts, &mut agenda).await,
                _ = sleep => {}
            }
        }
    }

    /// Whether new work waits (`was`: whether it did): while the store is out of reach (etcd
    /// away), no order starts; orders resume from the store once it answers, on whichever node
    /// takes their lock, after a full plan.
    fn paused(&self, was: bool, agenda: &mut Agenda) -> bool {
        let paused = self.store.health().unreachable_since.is_some();
        if paused != was {
            if paused {
                tracing::warn!("ACME work paused: the store does not answer");
            } else {
                tracing::info!("ACME work resumes: the store answers again");
                agenda.plan_all();
            }
        }
        paused
    }

    /// Starts the attempts due at `now` whose domain has none under way, up to the limit of
    /// concurrent orders.
    fn start_due(self: &Arc<Self>, agenda: &Agenda, attempts: &mut Attempts, now: i64) {
        let limit = self.cas[0].config.max_concurrent_orders.max(1);
        let startable: Vec<DomainName> = agenda
            .due(now)
            .filter(|domain| !attempts.by_domain.contains_key(*domain))
            .take(limit.saturating_sub(attempts.by_domain.len()))
            .cloned()
            .collect();
        for domain in startable {
            attempts.start(domain.clone(), self.clone().attempt(domain));
        }
    }

    /// Brings a change of the store to the agenda: its site is planned again, unless an
    /// attempt for it is under way (then the change is its own, seen when it ends, or the
    /// site's removal, which stops it).
    async fn follow(
        &self,
        change: Result<Change, RecvError>,
        attempts: &Attempts,
        agenda: &mut Agenda,
    ) {
        match change {
            // A zone added or changed can make wildcards due.
            Ok(Change::DnsZone(_)) => agenda.plan_all(),
            Ok(Change::Site(domain) | Change::Cert(domain) | Change::Acme(domain)) => {
                if let Some(handle) = attempts.by_domain.get(&domain) {
                    if matches!(self.store.site(&domain).await, Ok(None)) {
                        tracing::info!(%domain, "site removed; stopping its ACME work");
                        handle.abort();
                    }
                } else {
                    self.replan(agenda, domain).await;
                }
            }
            // Changes were missed: only a full plan knows what they were.
            Ok(Change::Everything) | Err(_) => agenda.plan_all(),
            Ok(_) => {}
        }
    }

    /// Puts `domain` on the agenda at the time it is due from its current records (on a store
    /// error, asks for a full plan instead).
    async fn replan(&self, agenda: &mut Agenda, domain: DomainName) {
        match Records::read(self.store.as_ref(), &domain).await {
            Ok(records) => {
                let at = records.and_then(|r| self.due(&r, unix_now()));
                agenda.set(domain, at);
            }
            Err(e) => {
                tracing::error!(%domain, error = %e, "cannot read the store; planning again in full");
                agenda.plan_all();
            }
        }
    }

    /// When the site of `records` needs the worker next, if ever.
    fn due(&self, records: &Records, now: i64) -> Option<i64> {
        let ari = self.issuer(records.cert.as_ref()).ari;
        due_at(
            &records.site,
            records.cert.as_ref(),
            &records.state,
            records.asked.as_ref(),
            (ari, &records.zones),
            now,
        )
    }

    /// Every ACME site with the time it is due.
    async fn plan(&self, now: i64) -> Result<Vec<(DomainName, i64)>, StoreError> {
        let mut sites: HashMap<DomainName, Site> = self
            .store
            .sites()
            .await?
            .into_iter()
            .filter(|site| site.acme)
            .map(|site| (site.domain.clone(), site))
            .collect();
        let mut states: HashMap<DomainName, AcmeState> =
            self.store.acme_states().await?.into_iter().collect();
        let requests: HashMap<DomainName, AcmeRequest> =
            self.store.acme_requests().await?.into_iter().collect();
        let zones = self.store.dns_zones().await?;
        let mut plan = Vec::new();
        let mut consider = |site: Site, cert: Option<&CertRecord>| {
            let state = states.remove(&site.domain).unwrap_or_default();
            let request = requests.get(&site.domain);
            let ari = self.issuer(cert).ari;
            if let Some(at) = due_at(&site, cert, &state, request, (ari, &zones), now) {
                plan.push((site.domain, at));
            }
        };
        for_each_cert(self.store.as_ref(), |cert| {
            if let Some(site) = sites.remove(&cert.domain) {
                consider(site, Some(&cert));
            }
        })
        .await?;
        // The ACME sites that have no certificate yet.
        for site in sites.into_values() {
            consider(site, None);
        }
        Ok(plan)
    }

    /// The CA the attempts of `state` go to.
    fn ca(&self, state: &AcmeState) -> &Ca {
        &self.cas[(state.ca as usize).min(self.cas.len() - 1)]
    }

    /// The CA that issued `cert` (by the host of the directory it recorded: records written
    /// before the URL was kept hold the host alone), else the first.
    fn issuer(&self, cert: Option<&CertRecord>) -> &Ca {
        let host = cert
            .and_then(|c| c.ca.as_deref())
            .map(crate::config::ca_host);
        self.cas
            .iter()
            .find(|ca| host.as_deref() == Some(ca.config.ca_host().as_str()))
            .unwrap_or(&self.cas[0])
    }
    /// One attempt for `domain`: refresh its ARI window when due, then order if due, holding
    /// the domain's lock across the fleet (so that one node orders, and the others leave it).
    async fn attempt(self: Arc<Self>, domain: DomainName) -> Attempted {
        let mut lock = match self.store.try_lock(&format!("acme/{domain}")).await {
            Ok(Some(lock)) => lock,
            Ok(None) => return Attempted::ElsewhereInFleet,
            Err(e) => {
                tracing::debug!(%domain, error = %e, "cannot take the domain's ACME lock");
                return Attempted::ElsewhereInFleet;
            }
        };
        tokio::select! {
            result = self.try_attempt(&domain) => {
                if let Err(e) = result {
                    tracing::error!(%domain, error = %e, "ACME attempt could not be recorded");
                }
            }
            // Every step of the order is in the store: the node that takes the lock next
            // resumes it.
            _ = lock.lost() => tracing::warn!(%domain, "lost the domain's ACME lock (the store is out of reach): stopping its order here"),
        }
        Attempted::Done
    }

    /// Does what `domain` is due for, as its records stand now (nothing when it is not due): a
    /// fresh ARI window, the revocations asked for, a new certificate. A failure at the CA is
    /// recorded with when to try again; an error is returned when the store fails.
    async fn try_attempt(&self, domain: &DomainName) -> Result<(), AcmeError> {
        let Some(mut records) = Records::read(self.store.as_ref(), domain).await? else {
            return Ok(());
        };
        let now = unix_now();
        if self.due(&records, now).is_none_or(|at| at > now) {
            return Ok(());
        }
        match self.carry_out(domain, &mut records, now).await {
            Ok(()) => Ok(()),
            Err(Stopped::AtCa(e)) => {
                self.failed(domain, records.cert.as_ref(), records.state, e)
                    .await
            }
            Err(Stopped::Unrecorded(e)) => Err(e),
        }
    }

    /// The steps of an attempt that is due, each recorded in `records.state` as it goes.
    async fn carry_out(
        &self,
        domain: &DomainName,
        records: &mut Records,
        now: i64,
    ) -> Result<(), Stopped> {
        // ARI and revocations go to the CA that issued the certificate; new orders to the CA
        // the attempts are at (the first, unless its orders kept failing).
        let issuer = self.issuer(records.cert.as_ref());
        if let (Some(cert), true) = (&records.cert, issuer.ari) {
            let state = &mut records.state;
            if state
                .ari
                .as_ref()
                .is_none_or(|w| w.serial != cert.serial || w.next_check <= now)
            {
                let account = issuer
                    .account(self.store.as_ref(), &self.http)
                    .await
                    .map_err(Stopped::AtCa)?;
                self.refresh_ari(&account, cert, state, now).await;
                self.store.put_acme_state(domain, state.clone()).await?;
            }
        }
        let asked = records.asked.as_ref();
        if let Some(leaves) = asked.map(|a| &a.revoke).filter(|l| !l.is_empty()) {
            self.revoke_asked(issuer, domain, records.cert.as_ref(), leaves)
                .await?;
        }
        if let Some(cert) = &records.cert {
            if renewal_at(cert, &records.state, asked, now) > now {
                return Ok(());
            }
        }
        self.order(issuer, domain, records, now).await
    }

    /// Revokes `leaves` (asked for) at `issuer` and takes them off the request; a renewal stays
    /// asked for when the current certificate is among them.
    async fn revoke_asked(
        &self,
        issuer: &Ca,
        domain: &DomainName,
        cert: Option<&CertRecord>,
        leaves: &[Vec<u8>],
    ) -> Result<(), Stopped> {
        let store = self.store.as_ref();
        let account = issuer
            .account(store, &self.http)
            .await
            .map_err(Stopped::AtCa)?;
        let revoked = revoke(&account, &issuer.config.directory, leaves).await;
        issuer.answered(&account, revoked).await?;
        let current = cert.is_some_and(|c| leaves.contains(&c.chain[0]));
        tracing::warn!(%domain, count = leaves.len(), current, "certificates revoked at the CA");
        request::revoked(store, domain, leaves, current).await?;
        Ok(())
    }

    /// Orders a certificate for `domain` from the CA the attempts are at (naming the one it
    /// replaces when `issuer` is that CA and offers ARI), then stores it.
    async fn order(
        &self,
        issuer: &Ca,
        domain: &DomainName,
        records: &mut Records,
        now: i64,
    ) -> Result<(), Stopped> {
        let store = self.store.as_ref();
        let ca = self.ca(&records.state);
        let account = ca.account(store, &self.http).await.map_err(Stopped::AtCa)?;
        records.state.last_attempt = Some(now);
        // `replaces` (RFC 9773) names a certificate of the same CA.
        let replaces = records
            .cert
            .as_ref()
            .filter(|_| issuer.ari && std::ptr::eq(ca, issuer))
            .and_then(|c| {
                CertificateIdentifier::try_from(&CertificateDer::from(c.chain[0].clone())).ok()
            })
            .map(CertificateIdentifier::into_owned);
        let ctx = Ctx {
            store,
            account: &account,
            config: &ca.config,
            zones: &records.zones,
            now,
        };
        let preferred =
            order::preferred(domain, records.site.challenge, &records.state, &ca.config);
        let result = order::obtain(&ctx, domain, &mut records.state, preferred, replaces).await;
        store.remove_challenges(domain).await?;
        let issued = ca.answered(&account, result).await?;
        self.store_issued(domain, issued, records).await
    }

    /// Stores a certificate issued with the state of a site that has one (the challenge type
    /// that worked kept), and takes the renewal that was asked for off the request.
    async fn store_issued(
        &self,
        domain: &DomainName,
        issued: Issued,
        records: &mut Records,
    ) -> Result<(), Stopped> {
        let store = self.store.as_ref();
        let fresh = AcmeState {
            challenge: issued.challenge.or(records.state.challenge),
            // Records that could not be removed yet stay listed until they are.
            dns_records: std::mem::take(&mut records.state.dns_records),
            ..AcmeState::default()
        };
        let (serial, not_after) = (issued.cert.serial.clone(), issued.cert.not_after);
        store.put_issued(issued.cert, fresh).await?;
        self.outcomes.issued_one();
        tracing::info!(%domain, %serial, not_after, "certificate issued");
        if let Some(asked_at) = records.asked.as_ref().and_then(|a| a.renew) {
            request::renewed(store, domain, asked_at).await?;
        }
        Ok(())
    }

    /// Records a failure and when to try again (the worker's state; a request stays).
    async fn failed(
        &self,
        domain: &DomainName,
        cert: Option<&CertRecord>,
        mut state: AcmeState,
        error: AcmeError,
    ) -> Result<(), AcmeError> {
        let now = unix_now();
        self.outcomes.failed_one(domain);
        state.attempts = state.attempts.saturating_add(1);
        let remaining = cert.map(|c| c.not_after - now);
        let mut wait = backoff(
            state.attempts,
            unit_jitter(&format!("{domain}{}", state.attempts)),
            remaining,
        );
        if error.is_rate_limited() {
            // The CA said to slow down: never retry sooner than an hour.
            wait = wait.max(3600);
        } else if error.account_gone() {
            // Nothing wrong with the name: again at once, with a new account.
            wait = 0;
        }
        state.ca_attempts = state.ca_attempts.saturating_add(1);
        let fallback_after = self.cas[0].config.fallback_after.max(1);
        let spent = !error.account_gone() && !matches!(error, AcmeError::Store(_));
        if spent && self.cas.len() > 1 && state.ca_attempts >= fallback_after {
            // Orders keep failing at this CA: the next one is tried at once (after the last,
            // the first again; the backoff still grows with every failed attempt).
            let (from, to) = (state.ca as usize, (state.ca as usize + 1) % self.cas.len());
            tracing::warn!(%domain, from = %self.cas[from].config.directory, to = %self.cas[to].config.directory, failed = state.ca_attempts, "ACME orders keep failing at this CA: trying the next one");
            state.ca = to as u32;
            state.ca_attempts = 0;
            state.pending = None;
            wait = 0;
        }
        state.retry_at = Some(now + wait);
        if !matches!(error, AcmeError::Protocol { .. } | AcmeError::Store(_)) {
            // The order itself is spent; the next attempt places a new one.
            state.pending = None;
        }
        state.last_error = Some(error.to_string());
        tracing::warn!(%domain, attempts = state.attempts, retry_in_s = wait, error = %error, "ACME attempt failed");
        self.store.put_acme_state(domain, state).await?;
        Ok(())
    }

    /// Fetches the CA's suggested renewal window for `cert` (RFC 9773).
    async fn refresh_ari(
        &self,
        account: &Account,
        cert: &CertRecord,
        state: &mut AcmeState,
        now: i64,
    ) {
        let leaf = CertificateDer::from(cert.chain[0].clone());
        let Ok(id) = CertificateIdentifier::try_from(&leaf) else {
            return;
        };
        match account.renewal_info(&id).await {
            Ok((info, retry_after)) => {
                let (start, end) = (
                    info.suggested_window.start.unix_timestamp(),
                    info.suggested_window.end.unix_timestamp(),
                );
                let renew_at = pick_in_window(start, end, unit_jitter(&cert.serial)).max(now);
                let recheck = (retry_after.as_secs() as i64).clamp(60, 24 * 3600);
                tracing::info!(domain = %cert.domain, start, end, renew_at, "ARI window");
                state.ari = Some(AriWindow {
                    serial: cert.serial.clone(),
                    start,
                    end,
                    renew_at,
                    next_check: now + recheck,
                });
            }
            Err(e) => {
                tracing::warn!(domain = %cert.domain, error = %e, "cannot fetch the ARI window; using the lifetime rule");
                state.ari = Some(AriWindow {
                    serial: cert.serial.clone(),
                    start: 0,
                    end: 0,
                    renew_at: schedule::renewal_by_lifetime(
                        cert.not_before,
                        cert.not_after,
                        unit_jitter(&cert.serial),
                    ),
                    next_check: now + 3600,
                });
            }
        }
    }
}

impl Ca {
    async fn account(&self, store: &dyn Store, http: &PacedClient) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let gone = self.gone.lock().recover().take();
        let account = account::load_or_create(store, &self.config, http, gone.as_deref()).await?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// `result` of a request made with `account`, a failure as [`Stopped::AtCa`]; an account
    /// the CA no longer knows is forgotten first.
    async fn answered<T>(
        &self,
        account: &Account,
        result: Result<T, AcmeError>,
    ) -> Result<T, Stopped> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => {
                if e.account_gone() {
                    self.forget(account, &e).await;
                }
                Err(Stopped::AtCa(e))
            }
        }
    }

    /// Forgets `account` when the CA said it does not know it (any more): the next attempt
    /// registers a new one with the same contact. Said once, with the CA's words.
    async fn forget(&self, account: &Account, error: &AcmeError) {
        let mut slot = self.account.lock().await;
        if slot.as_ref().is_none_or(|a| a.id() != account.id()) {
            // Already forgotten (another attempt heard the same).
            return;
        }
        *slot = None;
        *self.gone.lock().recover() = Some(account.id().to_owned());
        tracing::warn!(directory = %self.config.directory, account = account.id(), %error, "the CA no longer knows Porter's ACME account (as after a CA reset): registering a new one");
    }
}

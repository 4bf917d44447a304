//! One certificate over ACME (RFC 8555 section 7.4): resume the order a crash interrupted or
//! place a new one, answer its challenges (the preferred type first, another when that fails;
//! a wildcard over DNS-01 only), then finalize with a fresh key that is stored before the CSR
//! leaves, so that a certificate issued while Porter was down is still usable.

use crate::challenge;
use crate::config::{ChallengeKind, Config};
use crate::dns::{self, ZoneClient};
use crate::error::{AcmeError, AtStep as _};
use crate::keys;
use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeHandle, ChallengeType,
    Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};
use porter_store::{
    AcmeState, CertRecord, CertSource, DnsTxtRecord, DnsZone, DomainName, PendingOrder, Store,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::time::Duration;

/// How long the CA may take to validate, and to issue.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(90);

/// What an order needs.
pub(crate) struct Ctx<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) account: &'a Account,
    pub(crate) config: &'a Config,
    /// The DNS zones, as read when the attempt started.
    pub(crate) zones: &'a [DnsZone],
    /// The moment the attempt started (Unix seconds).
    pub(crate) now: i64,
}

/// A certificate obtained, and the challenge type that validated it (if one was needed).
pub(crate) struct Issued {
    pub(crate) cert: CertRecord,
    pub(crate) challenge: Option<ChallengeKind>,
}

/// The ACME client's name of `kind`.
fn acme_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    }
}

/// The challenge type to try when `kind` fails for `domain` (none for a wildcard: only DNS-01
/// can prove one).
fn fallback(domain: &DomainName, kind: ChallengeKind) -> Option<ChallengeKind> {
    match kind {
        _ if domain.is_wildcard() => None,
        ChallengeKind::Http01 => Some(ChallengeKind::TlsAlpn01),
        ChallengeKind::TlsAlpn01 | ChallengeKind::Dns01 => Some(ChallengeKind::Http01),
    }
}

/// The challenge type tried first: DNS-01 for a wildcard, else the site's choice, else the
/// one that worked last, else the server's.
pub(crate) fn preferred(
    domain: &DomainName,
    site: Option<ChallengeKind>,
    state: &AcmeState,
    config: &Config,
) -> ChallengeKind {
    if domain.is_wildcard() {
        return ChallengeKind::Dns01;
    }
    site.or(state.challenge).unwrap_or(config.challenge)
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION_TIMEOUT)
}

/// Obtains a certificate for `domain`, trying `preferred` first and keeping `state.pending`
/// and `state.dns_records` (persisted) up to date.
pub(crate) async fn obtain(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
    preferred: ChallengeKind,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Issued, AcmeError> {
    // TXT records a crash left behind go first.
    remove_dns_records(ctx, domain, state).await?;
    let mut order = match resume(ctx, domain, state).await {
        Some(order) => order,
        None => new_order(ctx, domain, state, replaces.clone()).await?,
    };
    let mut used = None;
    if order.state().status == OrderStatus::Pending {
        let result = validate(ctx, domain, state, &mut order, preferred).await;
        remove_dns_records(ctx, domain, state).await?;
        match (result, fallback(domain, preferred)) {
            (Ok(()), _) => used = Some(preferred),
            (Err(AcmeError::Challenge { kind, detail }), Some(other)) => {
                tracing::warn!(%domain, kind, %detail, fallback = other.as_str(), "challenge failed; trying another type");
                ctx.store.remove_challenges(domain).await?;
                order = new_order(ctx, domain, state, replaces).await?;
                let result = validate(ctx, domain, state, &mut order, other).await;
                remove_dns_records(ctx, domain, state).await?;
                result?;
                used = Some(other);
            }
            (Err(e), _) => return Err(e),
        }
    }
    let chain_pem = finish(ctx, domain, state, &mut order).await?;
    let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| AcmeError::Order(format!("the CA sent an unreadable chain: {e}")))?;
    let key = state
        .pending
        .as_ref()
        .and_then(|p| p.key.clone())
        .ok_or_else(|| AcmeError::Order("the order was finished without a stored key".into()))?;
    let mut cert = CertRecord::from_der(domain, chain, &key.to_der(), ctx.now, CertSource::Acme)?;
    cert.ca = Some(ctx.config.directory.clone());
    Ok(Issued {
        cert,
        challenge: used,
    })
}

/// The order a previous run left, when it can still be finished.
async fn resume(ctx: &Ctx<'_>, domain: &DomainName, state: &mut AcmeState) -> Option<Order> {
    let pending = state.pending.clone()?;
    if pending.directory != ctx.config.directory {
        state.pending = None;
        return None;
    }
    match ctx.account.order(pending.url.clone()).await {
        Ok(mut order) => {
            let status = order.state().status;
            let usable = match status {
                OrderStatus::Pending | OrderStatus::Ready => true,
                // Finalized before the crash: only usable with the key that was stored for it.
                OrderStatus::Processing | OrderStatus::Valid => pending.key.is_some(),
                OrderStatus::Invalid => false,
            };
            tracing::info!(%domain, ?status, usable, "found an order from a previous run");
            if usable {
                return Some(order);
            }
        }
        Err(e) => tracing::info!(%domain, error = %e, "the order from a previous run is gone"),
    }
    state.pending = None;
    None
}

async fn new_order(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Order, AcmeError> {
    let identifiers = [Identifier::Dns(domain.to_string())];
    let directory = &ctx.config.directory;
    let request = || {
        let request = NewOrder::new(&identifiers);
        match &ctx.config.profile {
            Some(profile) => request.profile(profile),
            None => request,
        }
    };
    let order = match replaces {
        Some(id) => match ctx.account.new_order(&request().replaces(id)).await {
            Ok(order) => order,
            // A CA that announces ARI but does not take `replaces`: an order without it is
            // still better than none.
            Err(e @ (instant_acme::Error::Other(_) | instant_acme::Error::Unsupported(_))) => {
                tracing::warn!(%domain, error = %e, "the CA refused `replaces`; ordering without it");
                ctx.account
                    .new_order(&request())
                    .await
                    .at(directory, "order")?
            }
            Err(e) => return Err(e).at(directory, "order"),
        },
        None => ctx
            .account
            .new_order(&request())
            .await
            .at(directory, "order")?,
    };
    state.pending = Some(PendingOrder {
        directory: ctx.config.directory.clone(),
        url: order.url().to_owned(),
        key: None,
    });
    ctx.store.put_acme_state(domain, state.clone()).await?;
    Ok(order)
}

/// Publishes the challenge material for every pending authorization, tells the CA, and waits
/// for the order to become ready.
async fn validate(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
    order: &mut Order,
    kind: ChallengeKind,
) -> Result<(), AcmeError> {
    let fail = challenge_failed(kind);
    let zone = match kind {
        ChallengeKind::Dns01 => Some(DnsZone::for_name(ctx.zones, domain).ok_or_else(|| {
            fail(format!(
                "no DNS zone covers {domain}: add its zone with `porter dns add`"
            ))
        })?),
        _ => None,
    };
    let directory = &ctx.config.directory;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.at(directory, "authorization")?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(AcmeError::Order(format!("authorization is {other:?}"))),
        }
        let mut challenge = authz
            .challenge(acme_type(kind))
            .ok_or_else(|| fail("the CA does not offer it".into()))?;
        publish(ctx, domain, state, &challenge, kind, zone).await?;
        match challenge.set_ready().await {
            Ok(()) => {}
            // A CA may validate at once and answer with the validation's failure: the challenge
            // failed (and the other type is tried), not the CA.
            Err(instant_acme::Error::Api(problem)) if validation_failed(&problem) => {
                return Err(fail(problem.to_string()))
            }
            Err(e) => return Err(e).at(directory, "challenge"),
        }
    }
    match order.poll_ready(&retry_policy()).await {
        Ok(OrderStatus::Ready) => Ok(()),
        Ok(_) | Err(instant_acme::Error::Api(_)) => Err(fail(challenge_error(order).await)),
        Err(e) => Err(e).at(directory, "order"),
    }
}

/// Whether `problem` says a validation failed (RFC 8555 section 6.7: the CA could not reach
/// the name, or did not find what the challenge asked for).
fn validation_failed(problem: &instant_acme::Problem) -> bool {
    const VALIDATION: [&str; 6] = [
        "caa",
        "connection",
        "dns",
        "incorrectResponse",
        "tls",
        "unauthorized",
    ];
    problem
        .r#type
        .as_deref()
        .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
        .is_some_and(|t| VALIDATION.contains(&t))
}

/// The error of a `kind` challenge that failed for the reason given.
fn challenge_failed(kind: ChallengeKind) -> impl Fn(String) -> AcmeError + Copy {
    move |detail| AcmeError::Challenge {
        kind: kind.as_str(),
        detail,
    }
}

/// Publishes what `challenge` asks for where the CA looks for it: in the store for HTTP-01
/// and TLS-ALPN-01 (the edge answers from there), in `zone` for DNS-01.
async fn publish(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
    challenge: &ChallengeHandle<'_>,
    kind: ChallengeKind,
    zone: Option<&DnsZone>,
) -> Result<(), AcmeError> {
    let fail = challenge_failed(kind);
    let key_authorization = challenge.key_authorization();
    match kind {
        ChallengeKind::Http01 => {
            let record = challenge::http01(domain, &challenge.token, key_authorization.as_str());
            ctx.store.put_http01(record).await?;
        }
        ChallengeKind::TlsAlpn01 => {
            let record = challenge::tls_alpn01(domain, key_authorization.digest().as_ref())?;
            ctx.store.put_tls_alpn(record).await?;
        }
        ChallengeKind::Dns01 => {
            let zone = zone.expect("read above for DNS-01");
            let instant_acme::Identifier::Dns(name) = challenge.identifier().identifier else {
                return Err(fail(
                    "the CA asked about an identifier that is not a name".into(),
                ));
            };
            let record = DnsTxtRecord {
                zone: zone.zone.clone(),
                name: dns::record_name(name),
                value: key_authorization.dns_value(),
            };
            publish_txt(ctx, domain, state, zone, record, fail).await?;
        }
    }
    Ok(())
}

/// Sets a DNS-01 TXT record in `zone` and waits until it is visible, listing it in `state`
/// (persisted) first, so that a crash in between still removes it.
async fn publish_txt(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
    zone: &DnsZone,
    record: DnsTxtRecord,
    fail: impl Fn(String) -> AcmeError,
) -> Result<(), AcmeError> {
    state.dns_records.push(record.clone());
    ctx.store.put_acme_state(domain, state.clone()).await?;
    let mut client = ZoneClient::new(zone)
        .await
        .map_err(|e| fail(e.to_string()))?;
    client.add(&record).await.map_err(|e| fail(e.to_string()))?;
    client
        .wait_visible(&record)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Removes the TXT records `state` lists (a zone removed meanwhile takes its records with it
/// as far as Porter is concerned); those that cannot be removed now stay listed for the next
/// attempt.
async fn remove_dns_records(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
) -> Result<(), AcmeError> {
    if state.dns_records.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::new();
    for record in std::mem::take(&mut state.dns_records) {
        let Some(zone) = ctx.zones.iter().find(|z| z.zone == record.zone) else {
            tracing::warn!(%domain, zone = %record.zone, name = %record.name, "the zone is no longer configured: its challenge record is left to its owner");
            continue;
        };
        let removed = match ZoneClient::new(zone).await {
            Ok(mut client) => client.remove(&record).await,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::warn!(%domain, error = %e, "cannot remove a DNS-01 record yet; trying again at the next attempt");
            kept.push(record);
        }
    }
    state.dns_records = kept;
    ctx.store.put_acme_state(domain, state.clone()).await?;
    Ok(())
}

/// What the CA said about the failed challenge.
async fn challenge_error(order: &mut Order) -> String {
    if let Some(problem) = &order.state().error {
        return problem.to_string();
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if authz.refresh().await.is_err() {
            continue;
        }
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                return problem.to_string();
            }
        }
    }
    "the CA marked the order invalid".into()
}

/// Finalizes a ready order with a fresh key (stored first) and downloads the chain.
async fn finish(
    ctx: &Ctx<'_>,
    domain: &DomainName,
    state: &mut AcmeState,
    order: &mut Order,
) -> Result<String, AcmeError> {
    if order.state().status == OrderStatus::Ready {
        let key = keys::generate(ctx.config.key_type)?;
        let csr = keys::csr(domain, &key)?;
        if let Some(pending) = &mut state.pending {
            pending.key = Some(key);
        }
        ctx.store.put_acme_state(domain, state.clone()).await?;
        order
            .finalize_csr(&csr)
            .await
            .at(&ctx.config.directory, "finalize")?;
    }
    order
        .poll_certificate(&retry_policy())
        .await
        .at(&ctx.config.directory, "download")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str) -> instant_acme::Problem {
        serde_json::from_value(serde_json::json!({ "type": kind, "detail": "x" })).unwrap()
    }

    #[test]
    fn a_failed_validation_is_told_from_the_cas_own_errors() {
        for failed in [
            "connection",
            "dns",
            "tls",
            "unauthorized",
            "incorrectResponse",
            "caa",
        ] {
            let problem = problem(&format!("urn:ietf:params:acme:error:{failed}"));
            assert!(validation_failed(&problem), "{failed}");
        }
        for other in ["rateLimited", "badNonce", "serverInternal", "malformed"] {
            let problem = problem(&format!("urn:ietf:params:acme:error:{other}"));
            assert!(!validation_failed(&problem), "{other}");
        }
        assert!(!validation_failed(&problem("about:blank")));
    }
}

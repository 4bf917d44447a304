//! The one watch on the store's prefix: every committed write, this node's or another's, turned
//! into [`Change`]s for the subscribers. A broken watch resumes from the first revision it has
//! not announced (etcd replays what was missed); when etcd no longer has that history
//! (compacted), subscribers are told to read everything again. It runs until the store's work
//! stops.

use super::Inner;
use crate::codec::domain_key;
use crate::error::etcd_why;
use crate::{keys, AppId, Change, Http01Challenge};
use etcd_client::{Event, EventType, WatchOptions};
use std::sync::Arc;
use std::time::Duration;

/// Pause before watching again after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// Why a watch ended.
enum Gap {
    /// etcd no longer has the revisions after the last one announced.
    Compacted,
    /// The connection or the watch broke; the history is still there.
    Broken(String),
}

/// Follows the prefix from revision `from` until the store's work stops.
pub(super) async fn run(inner: Arc<Inner>, mut from: i64) {
    loop {
        let gap = tokio::select! {
            () = inner.stop.cancelled() => return,
            gap = follow(&inner, &mut from) => gap,
        };
        match gap {
            Gap::Compacted => match current_revision(&inner).await {
                Ok(revision) => {
                    tracing::warn!(from, revision, "the etcd watch's history was compacted: every subscriber reads everything again");
                    from = revision + 1;
                    inner.watched.send_if_modified(|seen| raise(seen, revision));
                    let _ = inner.changes.send(Change::Everything);
                    continue;
                }
                Err(e) => tracing::debug!(error = %e, "cannot read etcd's revision"),
            },
            Gap::Broken(why) => {
                tracing::debug!(from, why, "the etcd watch broke; watching again");
                inner.unreached(&why);
            }
        }
        tokio::select! {
            () = inner.stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The revision etcd is at.
async fn current_revision(inner: &Inner) -> Result<i64, crate::StoreError> {
    let mut client = inner.client.clone();
    let key = inner.key(keys::META, "schema_version");
    let answer = inner.call("watch", client.get(key, None)).await?;
    Ok(answer.header().map_or(0, |h| h.revision()))
}

fn raise(seen: &mut i64, revision: i64) -> bool {
    let higher = revision > *seen;
    if higher {
        *seen = revision;
    }
    higher
}

/// Announces every change from revision `from` on (advancing it) until the watch ends.
async fn follow(inner: &Inner, from: &mut i64) -> Gap {
    let mut client = inner.client.clone();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(*from)
        .with_prev_key();
    let mut stream = match client.watch(inner.data_prefix(), Some(options)).await {
        Ok(stream) => stream,
        Err(e) => return Gap::Broken(etcd_why(Some(&e))),
    };
    loop {
        let answer = match stream.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Gap::Broken("the watch ended".into()),
            Err(e) => return Gap::Broken(etcd_why(Some(&e))),
        };
        if answer.canceled() {
            return if answer.compact_revision() > 0 {
                Gap::Compacted
            } else {
                Gap::Broken(format!(
                    "the watch was cancelled: {}",
                    answer.cancel_reason()
                ))
            };
        }
        inner.reached();
        // One write (one revision) announces each change once, as sled's writer does.
        let mut revision = None;
        let mut announced: Vec<Change> = Vec::new();
        for event in answer.events() {
            let Some(kv) = event.kv() else { continue };
            if revision != Some(kv.mod_revision()) {
                revision = Some(kv.mod_revision());
                announced.clear();
            }
            if let Some(change) = change_of(inner, event) {
                if !announced.contains(&change) {
                    announced.push(change.clone());
                    let _ = inner.changes.send(change);
                }
            }
        }
        if let Some(revision) = revision {
            *from = revision + 1;
            inner.watched.send_if_modified(|seen| raise(seen, revision));
        }
    }
}

/// The change an event is, if subscribers care.
fn change_of(inner: &Inner, event: &Event) -> Option<Change> {
    let kv = event.kv()?;
    let prefix = inner.data_prefix();
    let rest = kv.key().strip_prefix(prefix.as_slice())?;
    let slash = rest.iter().position(|b| *b == b'/')?;
    let (kind, id) = (&rest[..slash], &rest[slash + 1..]);
    let kind = std::str::from_utf8(kind).ok()?;
    let domain = |tree| domain_key(tree, id).ok();
    Some(match kind {
        keys::SITES => Change::Site(domain(keys::SITES)?),
        keys::CERTS => Change::Cert(domain(keys::CERTS)?),
        keys::ACME_STATES | keys::ACME_REQUESTS => Change::Acme(domain(keys::ACME_STATES)?),
        keys::OCSP => Change::Ocsp(domain(keys::OCSP)?),
        keys::APPS => Change::App(AppId::parse(std::str::from_utf8(id).ok()?).ok()?),
        keys::TLS_ALPN01 => Change::Challenges(domain(keys::TLS_ALPN01)?),
        keys::HTTP01 => {
            // Keyed by token: the domain is in the record (the one removed, for a removal).
            let record = match event.event_type() {
                EventType::Put => kv,
                EventType::Delete => event.prev_kv()?,
            };
            let challenge: Http01Challenge =
                crate::codec::decode(keys::HTTP01, id, record.value()).ok()?;
            Change::Challenges(challenge.domain)
        }
        keys::DNS_ZONES => Change::DnsZone(domain(keys::DNS_ZONES)?),
        keys::ON_DEMAND_RULES => Change::OnDemandRules,
        keys::PURGES => Change::Purges,
        keys::NODES => Change::Nodes,
        keys::META if id == keys::TICKET_KEYS.as_bytes() => Change::TicketKeys,
        _ => return None,
    })
}

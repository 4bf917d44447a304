//! Several upstreams per site. A site with more than one (or with active checks) has a
//! [`Balancer`]: its members (the site's target, then the upstreams beside it), each with its
//! requests under way and its health ([`health`]), the policy that picks one for a request
//! ([`pick`]), and the budget that bounds its retries. The active checks run off the edge
//! threads ([`checks`]) with the one check both they and the apps' readiness use ([`probe`]).
//!
//! A balancer lives as long as a served entry of its site holds it; the entries made again
//! for the same settings (a new certificate, a snapshot read again) find it in the registry
//! and keep its state; new settings start a new one.

pub(crate) mod checks;
mod health;
mod pick;
pub(crate) mod probe;

pub(crate) use health::State;

use crate::runtime::hash::fnv1a;
use health::{Change, Health, Share};
use http::HeaderMap;
use porter_store::{Balancing, Policy, Recover as _, Target, Upstream};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// A retry costs this many tokens, a request earns [`EARNED`]: retries are at most a fifth of
/// the requests, past a burst of [`BURST`] (the budget starts full).
const RETRY_COST: i64 = 10;
const EARNED: i64 = 2;
const BURST: i64 = 10 * RETRY_COST;

/// Where a member forwards to.
pub(crate) enum To {
    Upstream(Upstream),
    /// The site's app (its address is its lease's).
    App,
}

/// One of a site's upstreams.
pub(crate) struct Member {
    pub(crate) to: To,
    /// As the operator wrote it: the address, or `app:ID`.
    pub(crate) name: Box<str>,
    weight: u32,
    in_flight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    /// When its next active check is due (process milliseconds; see `checks`).
    next_check_ms: AtomicU64,
    /// Shared with the member of the same address in the balancer the site had before its
    /// settings changed: adding an upstream does not bring back one that is down.
    health: Arc<Health>,
}

/// A site's upstreams and what is known of them.
pub(crate) struct Balancer {
    pub(crate) site: Arc<str>,
    /// What it was made from, to tell whether new settings need a new one.
    made_from: (Target, Balancing),
    members: Box<[Member]>,
    /// Round robin's order of member indexes.
    order: Box<[u8]>,
    /// Per member, a hash of its name: what the consistent hash scores it by, so that a
    /// client's upstream does not depend on where it is in the list.
    seeds: Box<[u64]>,
    turn: AtomicU64,
    /// Tokens for retries (see [`RETRY_COST`]).
    budget: AtomicI64,
}

/// A member, as `site status` and the metrics show it.
#[derive(Debug)]
pub(crate) struct MemberStatus {
    pub(crate) name: String,
    pub(crate) state: State,
    /// Since when it is in that state (Unix seconds).
    pub(crate) since: i64,
    pub(crate) in_flight: u32,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) last_error: Option<String>,
}

type Registry = Mutex<HashMap<Arc<str>, Weak<Balancer>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Balancer {
    /// The balancer of `site` for these settings: the one it has when they are the same, else
    /// a new one.
    pub(crate) fn for_site(site: &Arc<str>, target: &Target, settings: &Balancing) -> Arc<Self> {
        let mut registry = registry().lock().recover();
        let before = registry.get(site).and_then(Weak::upgrade);
        if let Some(live) = &before {
            if live.made_from.0 == *target && live.made_from.1 == *settings {
                return Arc::clone(live);
            }
        }
        let balancer = Arc::new(Balancer::new(site, target, settings, before.as_deref()));
        registry.insert(Arc::clone(site), Arc::downgrade(&balancer));
        balancer
    }

    /// Every balancer of a site still served.
    pub(crate) fn live() -> Vec<Arc<Balancer>> {
        let mut registry = registry().lock().recover();
        registry.retain(|_, weak| weak.strong_count() > 0);
        registry.values().filter_map(Weak::upgrade).collect()
    }

    fn new(
        site: &Arc<str>,
        target: &Target,
        settings: &Balancing,
        before: Option<&Balancer>,
    ) -> Self {
        let member = |to: To, name: String, weight: u32| {
            let known = before.and_then(|b| b.members.iter().find(|m| *m.name == *name));
            Member {
                to,
                name: name.into(),
                weight,
                in_flight: AtomicU32::new(0),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                next_check_ms: AtomicU64::new(0),
                health: known.map_or_else(|| Arc::new(Health::new()), |m| Arc::clone(&m.health)),
            }
        };
        let first = match target {
            Target::Upstream(upstream) => To::Upstream(upstream.clone()),
            Target::App(_) => To::App,
        };
        let members: Box<[Member]> =
            std::iter::once(member(first, target.to_string(), settings.weight))
                .chain(settings.more.iter().map(|m| {
                    member(
                        To::Upstream(m.upstream.clone()),
                        m.upstream.to_string(),
                        m.weight,
                    )
                }))
                .collect();
        let weights: Vec<u32> = members.iter().map(|m| m.weight).collect();
        Balancer {
            site: Arc::clone(site),
            order: pick::smooth_order(&weights),
            seeds: members.iter().map(|m| fnv1a(m.name.as_bytes())).collect(),
            members,
            made_from: (target.clone(), settings.clone()),
            turn: AtomicU64::new(0),
            budget: AtomicI64::new(BURST),
        }
    }

    fn settings(&self) -> &Balancing {
        &self.made_from.1
    }

    /// Whether a failed request may be tried on another upstream.
    pub(crate) fn retries(&self) -> bool {
        self.settings().retries && self.members.len() > 1
    }

    /// How long an idempotent request waits for a head before another upstream is tried.
    pub(crate) fn try_timeout(&self) -> Option<Duration> {
        self.settings().try_timeout_ms.map(Duration::from_millis)
    }

    /// The consistent hash's key of a request from `peer` with `headers`, when the policy
    /// hashes.
    pub(crate) fn key(&self, peer: IpAddr, headers: &HeaderMap) -> Option<u64> {
        let by_address = || match peer {
            IpAddr::V4(v4) => fnv1a(&v4.octets()),
            IpAddr::V6(v6) => fnv1a(&v6.octets()),
        };
        match &self.settings().policy {
            Policy::RoundRobin | Policy::LeastConn => None,
            Policy::IpHash => Some(by_address()),
            Policy::Cookie(name) => {
                Some(cookie(headers, name).map(fnv1a).unwrap_or_else(by_address))
            }
        }
    }

    /// The member for a request with `key` (see [`Balancer::key`]), other than `not` (the
    /// one a retry failed on) when there is another. When every one is out, the one that
    /// failed least recently: never an outage of Porter's making.
    pub(crate) fn pick(self: &Arc<Self>, key: Option<u64>, not: Option<usize>) -> Picked {
        let turn = self.turn.fetch_add(1, Relaxed);
        self.budget
            .fetch_update(Relaxed, Relaxed, |t| (t < BURST).then_some(t + EARNED))
            .ok();
        // On the stack: a pick allocates nothing.
        let mut candidates = [pick::Candidate::OUT; porter_store::MAX_UPSTREAMS];
        let candidates = &mut candidates[..self.members.len()];
        for (i, (member, candidate)) in self.members.iter().zip(candidates.iter_mut()).enumerate() {
            let share = match self.share(member) {
                _ if Some(i) == not => 0.0,
                Share::Out => 0.0,
                Share::Part(part) => part,
            };
            *candidate = pick::Candidate {
                share,
                weight: member.weight,
                in_flight: member.in_flight.load(Relaxed),
            };
        }
        let chosen = match (key, &self.settings().policy) {
            (Some(key), _) => pick::rendezvous(key, &self.seeds, candidates),
            (None, Policy::RoundRobin) => pick::round_robin(&self.order, turn, candidates),
            (None, _) => pick::least_conn(&self.order, turn, candidates),
        };
        let index = chosen.unwrap_or_else(|| self.least_recently_failed(not));
        let member = &self.members[index];
        member.in_flight.fetch_add(1, Relaxed);
        member.requests.fetch_add(1, Relaxed);
        Picked {
            balancer: Arc::clone(self),
            index,
        }
    }

    /// What `member` may take now, logging the end of its back-off or probation.
    fn share(&self, member: &Member) -> Share {
        let (share, change) = member.health.share(self.check().is_some());
        if let Some(change) = change {
            self.log(member, &change);
        }
        share
    }

    fn least_recently_failed(&self, not: Option<usize>) -> usize {
        (0..self.members.len())
            .filter(|i| Some(*i) != not || self.members.len() == 1)
            .min_by_key(|i| self.members[*i].health.last_failure())
            .unwrap_or(0)
    }

    /// Takes a retry from the budget; false when it is spent.
    pub(crate) fn spend_retry(&self) -> bool {
        self.budget
            .fetch_update(Relaxed, Relaxed, |t| {
                (t >= RETRY_COST).then_some(t - RETRY_COST)
            })
            .is_ok()
    }

    fn log(&self, member: &Member, change: &Change) {
        let (site, upstream) = (&*self.site, &*member.name);
        match change {
            Change::Down { reason, back_off } => tracing::warn!(
                site,
                upstream,
                reason = %reason,
                back_off_s = back_off.as_secs(),
                checked = self.check().is_some(),
                "upstream down"
            ),
            Change::Probation => tracing::info!(site, upstream, "upstream on probation"),
            Change::Up => tracing::info!(site, upstream, "upstream up"),
        }
    }

    /// Each member as it is now.
    pub(crate) fn status(&self) -> Vec<MemberStatus> {
        self.members
            .iter()
            .map(|member| {
                let (since, last_error) = member.health.since_and_error();
                MemberStatus {
                    name: member.name.to_string(),
                    state: member.health.state(),
                    since,
                    in_flight: member.in_flight.load(Relaxed),
                    requests: member.requests.load(Relaxed),
                    failures: member.failures.load(Relaxed),
                    last_error,
                }
            })
            .collect()
    }

    /// The members of this balancer.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// The site's active check, when it has one.
    pub(crate) fn check(&self) -> Option<&porter_store::ActiveCheck> {
        self.settings().check.as_ref()
    }

    /// What an active check of member `index` said.
    pub(crate) fn checked(&self, index: usize, result: Result<(), String>) {
        let member = &self.members[index];
        if let Some(change) = member.health.checked(result) {
            self.log(member, &change);
        }
    }
}

/// The value of cookie `name` in `headers`, the first one sent.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii_start();
            let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(value.trim_ascii_end())
        })
}

/// The member a request was sent to: counted under way until dropped (with the response's
/// body), and told how it went.
pub(crate) struct Picked {
    balancer: Arc<Balancer>,
    index: usize,
}

impl Picked {
    /// Its index among the site's members (what a retry avoids).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn member(&self) -> &Member {
        &self.balancer.members[self.index]
    }

    /// It answered (a status below 500).
    pub(crate) fn succeeded(&self) {
        self.member().health.succeeded();
    }

    /// It failed the request: `broken` (refused, reset, timed out), or answered 5xx.
    pub(crate) fn failed(&self, reason: &str, broken: bool) {
        let member = self.member();
        member.failures.fetch_add(1, Relaxed);
        if let Some(change) = member.health.failed(reason, broken) {
            self.balancer.log(member, &change);
        }
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.member().in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use porter_store::Weighted;

    fn balancer(policy: Policy) -> Arc<Balancer> {
        let target = Target::Upstream(Upstream::parse("127.0.0.1:1").unwrap());
        let settings = Balancing {
            more: vec![Weighted::parse("127.0.0.1:2,weight=3").unwrap()],
            policy,
            ..Balancing::default()
        };
        Balancer::for_site(&Arc::from("b.test"), &target, &settings)
    }

    #[test]
    fn the_same_settings_keep_their_balancer_and_new_ones_start_afresh() {
        let a = balancer(Policy::LeastConn);
        assert!(Arc::ptr_eq(&a, &balancer(Policy::LeastConn)));
        let picked = a.pick(None, Some(1));
        for _ in 0..3 {
            picked.failed("connection refused", true);
        }
        let b = balancer(Policy::RoundRobin);
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Balancer::live().iter().any(|l| Arc::ptr_eq(l, &b)));
        assert_eq!(
            b.status()[0].state,
            State::Down,
            "an upstream down stays down when the settings change"
        );
    }

    #[test]
    fn a_dead_member_is_avoided_and_when_all_are_out_the_least_recently_failed_is_tried() {
        let b = balancer(Policy::RoundRobin);
        for _ in 0..3 {
            b.pick(None, None);
        }
        let picked = b.pick(None, Some(1));
        assert_eq!(picked.index(), 0, "a retry avoids the one it failed on");
        for _ in 0..3 {
            picked.failed("connection refused", true);
        }
        drop(picked);
        assert!((0..20).all(|_| b.pick(None, None).index() == 1));
        let other = b.pick(None, None);
        for _ in 0..3 {
            other.failed("connection refused", true);
        }
        assert_eq!(b.pick(None, None).index(), 0, "the one that failed first");
    }

    #[test]
    fn in_flight_counts_until_the_pick_is_dropped() {
        let b = balancer(Policy::LeastConn);
        let held: Vec<Picked> = (0..8).map(|_| b.pick(None, None)).collect();
        let under_way: u32 = b.status().iter().map(|m| m.in_flight).sum();
        assert_eq!(under_way, 8);
        let on_heavy = held.iter().filter(|p| p.index() == 1).count();
        assert_eq!(on_heavy, 6, "weights 1 and 3");
        drop(held);
        assert!(b.status().iter().all(|m| m.in_flight == 0));
    }

    #[test]
    fn the_retry_budget_allows_a_burst_then_a_fifth_of_requests() {
        let b = balancer(Policy::LeastConn);
        let burst = (0..100).filter(|_| b.spend_retry()).count();
        assert_eq!(burst, 10);
        for _ in 0..50 {
            b.pick(None, None);
        }
        assert_eq!((0..100).filter(|_| b.spend_retry()).count(), 10);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append("cookie", "a=1; sid=abc ; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "sid"), Some(&b"abc"[..]));
        assert_eq!(cookie(&headers, "si"), None);
        headers.append("cookie", http::HeaderValue::from_bytes(b"x=\xff").unwrap());
        assert_eq!(cookie(&headers, "x"), Some(&b"\xff"[..]));
        let b = balancer(Policy::Cookie("sid".into()));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_ne!(b.key(peer, &headers), b.key(peer, &HeaderMap::new()));
    }
}

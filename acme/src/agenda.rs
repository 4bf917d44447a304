//! The worker's agenda: when each ACME site is next due, kept in memory and updated one site at
//! a time as the store changes, so that a change costs a few reads rather than a read of every
//! site and certificate (which at 100,000 sites is half a second of CPU).

use porter_store::{DomainName, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Longest time between two full plans: a safety net, since changes re-plan their own site.
const FULL_PLAN_EVERY: i64 = 3600;
/// When to try a full plan again after the store could not be read.
const RETRY_AFTER: i64 = 5;

#[derive(Default)]
pub(crate) struct Agenda {
    by_time: BTreeMap<i64, HashSet<DomainName>>,
    at: HashMap<DomainName, i64>,
    /// When the next full plan is due (0 at first: at once).
    full_plan_at: i64,
}

impl Agenda {
    /// Whether a full plan is due: at first, hourly, after missed changes, and a few seconds
    /// after a plan that could not read the store.
    pub(crate) fn full_plan_due(&self, now: i64) -> bool {
        now >= self.full_plan_at
    }

    /// Asks for a full plan at once (changes were missed, or a point read failed).
    pub(crate) fn plan_all(&mut self) {
        self.full_plan_at = i64::MIN;
    }

    /// Takes the result of a full plan made at `now`: the whole agenda on success; on a store
    /// error, the old agenda stays and the plan is tried again shortly.
    pub(crate) fn replace(&mut self, plan: Result<Vec<(DomainName, i64)>, StoreError>, now: i64) {
        match plan {
            Ok(plan) => {
                self.by_time.clear();
                self.at.clear();
                for (domain, at) in plan {
                    self.set(domain, Some(at));
                }
                self.full_plan_at = now + FULL_PLAN_EVERY;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the store; retrying");
                self.full_plan_at = now + RETRY_AFTER;
            }
        }
    }

    /// When to look again: the next due time after `now`, or the next full plan.
    pub(crate) fn next_wake(&self, now: i64) -> i64 {
        self.next_after(now)
            .unwrap_or(i64::MAX)
            .min(self.full_plan_at)
    }

    /// Puts `domain` at `at`, or takes it off the agenda (`None`).
    pub(crate) fn set(&mut self, domain: DomainName, at: Option<i64>) {
        if let Some(old) = self.at.remove(&domain) {
            if let Some(bucket) = self.by_time.get_mut(&old) {
                bucket.remove(&domain);
                if bucket.is_empty() {
                    self.by_time.remove(&old);
                }
            }
        }
        if let Some(at) = at {
            self.by_time.entry(at).or_default().insert(domain.clone());
            self.at.insert(domain, at);
        }
    }

    /// The domains due at `now`, earliest first.
    pub(crate) fn due(&self, now: i64) -> impl Iterator<Item = &DomainName> {
        self.by_time.range(..=now).flat_map(|(_, domains)| domains)
    }

    /// The first time after `now` something is due.
    fn next_after(&self, now: i64) -> Option<i64> {
        self.by_time
            .range(now.saturating_add(1)..)
            .next()
            .map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str) -> DomainName {
        DomainName::parse(name).unwrap()
    }

    #[test]
    fn sites_move_and_leave() {
        let mut agenda = Agenda::default();
        assert!(agenda.full_plan_due(1));
        agenda.replace(
            Ok(vec![(d("a.test"), 10), (d("b.test"), 20), (d("c.test"), 5)]),
            1,
        );
        assert!(!agenda.full_plan_due(1));
        assert_eq!(agenda.next_wake(1), 5);
        let due: Vec<_> = agenda.due(10).map(|d| d.to_string()).collect();
        assert_eq!(due, ["c.test", "a.test"]);
        assert_eq!(agenda.next_after(10), Some(20));
        agenda.set(d("a.test"), Some(30));
        agenda.set(d("c.test"), None);
        assert_eq!(agenda.due(10).count(), 0);
        assert_eq!(agenda.next_after(10), Some(20));
        agenda.set(d("b.test"), None);
        assert_eq!(agenda.next_after(0), Some(30));
        agenda.set(d("a.test"), None);
        assert_eq!(agenda.next_after(0), None);
        assert!(agenda.by_time.is_empty() && agenda.at.is_empty());
        assert_eq!(agenda.next_wake(0), 1 + FULL_PLAN_EVERY);
        agenda.replace(Err(StoreError::WriterStopped), 100);
        assert_eq!(agenda.next_wake(100), 100 + RETRY_AFTER);
        agenda.plan_all();
        assert!(agenda.full_plan_due(0));
    }
}

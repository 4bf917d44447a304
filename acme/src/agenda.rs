//! The worker's agenda: when each ACME site is next due, kept in memory and updated one site at
//! a time as the store changes, so that a change costs a few reads rather than a read of every
//! site and certificate (which at 100,000 sites is half a second of CPU).

use porter_store::DomainName;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Default)]
pub(crate) struct Agenda {
    by_time: BTreeMap<i64, HashSet<DomainName>>,
    at: HashMap<DomainName, i64>,
}

impl Agenda {
    /// An agenda holding `plan`.
    pub(crate) fn from_plan(plan: impl IntoIterator<Item = (DomainName, i64)>) -> Self {
        let mut agenda = Agenda::default();
        for (domain, at) in plan {
            agenda.set(domain, Some(at));
        }
        agenda
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
    pub(crate) fn next_after(&self, now: i64) -> Option<i64> {
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
        let mut agenda =
            Agenda::from_plan([(d("a.test"), 10), (d("b.test"), 20), (d("c.test"), 5)]);
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
    }
}

//! What the worker's orders came to since the start, for metrics: orders by result, and failed
//! attempts per domain. Counted in memory (a restart starts from zero, as counters do).

use porter_store::{DomainName, Recover as _};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Domains whose failures are counted one by one; beyond it (a store of that many failing
/// sites) new ones count only in the total.
const MAX_DOMAINS: usize = 100_000;

/// The worker's results since the start.
#[derive(Debug, Default)]
pub struct Outcomes {
    issued: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<HashMap<DomainName, u64>>,
}

impl Outcomes {
    pub(crate) fn issued_one(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed_one(&self, domain: &DomainName) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().recover();
        if let Some(count) = failures.get_mut(domain) {
            *count += 1;
        } else if failures.len() < MAX_DOMAINS {
            failures.insert(domain.clone(), 1);
        }
    }

    /// Certificates issued.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Attempts that failed (an order, or the account or revocation before it).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Failed attempts per domain.
    pub fn failures(&self) -> Vec<(DomainName, u64)> {
        let failures = self.failures.lock().recover();
        failures.iter().map(|(d, n)| (d.clone(), *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_domain_and_in_total() {
        let outcomes = Outcomes::default();
        let a = DomainName::parse("a.test").unwrap();
        outcomes.failed_one(&a);
        outcomes.failed_one(&a);
        outcomes.issued_one();
        assert_eq!((outcomes.issued(), outcomes.failed()), (1, 2));
        assert_eq!(outcomes.failures(), vec![(a, 2)]);
    }
}

//! What the WAF counts for metrics: requests by site and action (`passed`, `detected`,
//! `blocked`, `skipped`) and rule matches by site and rule id. Counted on the WAF's threads,
//! never the edge's; the label sets are bounded (beyond, counts go under the site `_other`).

use super::engine::Match;
use porter_store::Recover as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most label sets a family keeps.
const MAX_KEYS: usize = 10_000;
/// The site label of counts beyond [`MAX_KEYS`].
const OTHER: &str = "_other";

/// The WAF's counts.
#[derive(Default)]
pub(crate) struct Stats {
    requests: Mutex<HashMap<(Arc<str>, &'static str), u64>>,
    rules: Mutex<HashMap<(Arc<str>, u32), u64>>,
}

impl Stats {
    /// A request not inspected.
    pub(crate) fn count(&self, site: &Arc<str>, action: &'static str) {
        bump(&self.requests, (Arc::clone(site), action), |k| {
            (OTHER.into(), k.1)
        });
    }

    /// A request inspected, with the action taken and the rules that counted.
    pub(crate) fn inspected(&self, site: &Arc<str>, action: &'static str, kept: &[Match]) {
        self.count(site, action);
        for found in kept {
            bump(&self.rules, (Arc::clone(site), found.id), |k| {
                (OTHER.into(), k.1)
            });
        }
    }

    /// Requests by site and action.
    pub(crate) fn requests(&self) -> Vec<((Arc<str>, &'static str), u64)> {
        sorted(&self.requests)
    }

    /// Rule matches by site and rule.
    pub(crate) fn rules(&self) -> Vec<((Arc<str>, u32), u64)> {
        sorted(&self.rules)
    }
}

fn sorted<K: Clone + Ord>(map: &Mutex<HashMap<K, u64>>) -> Vec<(K, u64)> {
    let map = map.lock().recover();
    let mut out: Vec<(K, u64)> = map.iter().map(|(k, n)| (k.clone(), *n)).collect();
    out.sort();
    out
}

fn bump<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, u64>>, key: K, other: impl Fn(&K) -> K) {
    let mut map = map.lock().recover();
    let key = if map.len() >= MAX_KEYS && !map.contains_key(&key) {
        other(&key)
    } else {
        key
    };
    *map.entry(key).or_default() += 1;
}

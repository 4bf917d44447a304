//! Rate-limited logging for what a remote party can cause (a dead upstream, a malformed
//! hello, a full WAF log): at most one line per kind every [`INTERVAL`], each carrying how many
//! of its kind were left out since the previous one, so that a flood of clients cannot flood
//! the log. What is left out at the end of a flood is summed up by [`run`] an interval later.
//!
//! A kind is one call site of [`limited!`] (a static of its own); the hot path pays a relaxed
//! load and an increment, and the shared registry is locked once per kind, at its first line.

use porter_store::Recover as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Level;

/// How often one kind of line is logged, at most.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Logs a line of its kind unless one was logged in the last [`INTERVAL`], with the field
/// `suppressed`: how many were left out since the previous one. `site = EXPR` (a `&str`; or
/// `name = EXPR`, any field name) names the site the line is about, which the summary of what
/// was left out names too (as `site`).
///
/// `limited!(warn, site = domain, "cannot connect to upstream", error = %e)`
macro_rules! limited {
    ($level:ident, $key:ident = $site:expr, $what:literal $(, $($field:tt)+)?) => {{
        static LIMIT: $crate::runtime::log_limit::Limit =
            $crate::runtime::log_limit::Limit::new($crate::runtime::log_limit::level!($level), $what);
        let site: &str = $site;
        if let Some(suppressed) = LIMIT.admit(Some(site)) {
            tracing::$level!($key = site, $($($field)+,)? suppressed, $what);
        }
    }};
    ($level:ident, $what:literal $(, $($field:tt)+)?) => {{
        static LIMIT: $crate::runtime::log_limit::Limit =
            $crate::runtime::log_limit::Limit::new($crate::runtime::log_limit::level!($level), $what);
        if let Some(suppressed) = LIMIT.admit(None) {
            tracing::$level!($($($field)+,)? suppressed, $what);
        }
    }};
}
pub(crate) use limited;

/// The [`Level`] of a `tracing` macro's name.
macro_rules! level {
    (error) => {
        tracing::Level::ERROR
    };
    (warn) => {
        tracing::Level::WARN
    };
    (info) => {
        tracing::Level::INFO
    };
}
pub(crate) use level;

/// One kind of line: when it was last logged and what was left out since.
pub(crate) struct Limit {
    level: Level,
    what: &'static str,
    /// When a line of this kind was last logged, in milliseconds of [`clock`] (0: never).
    logged_ms: AtomicU64,
    suppressed: AtomicU64,
    /// The sites of the lines left out since the last one logged, the first [`SITES_NAMED`]
    /// of them (told apart by hash: a site already named takes no lock on the hot path), and
    /// whether there were more: one noisy site does not hide the others.
    sites: Mutex<Vec<Box<str>>>,
    site_hashes: [AtomicU64; SITES_NAMED],
    more_sites: AtomicBool,
    /// Whether [`run`] knows of it.
    registered: AtomicBool,
}

/// Sites a summary names, at most.
const SITES_NAMED: usize = 8;

/// The kinds that have logged, for [`run`]'s summaries: as many as call sites, at most.
static REGISTERED: Mutex<Vec<&'static Limit>> = Mutex::new(Vec::new());

/// Milliseconds since the first call, plus an interval: 0 is "never" and the first line of
/// every kind is logged at once.
fn clock() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    (START.elapsed() + INTERVAL).as_millis() as u64
}

impl Limit {
    pub(crate) const fn new(level: Level, what: &'static str) -> Limit {
        Limit {
            level,
            what,
            logged_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            sites: Mutex::new(Vec::new()),
            site_hashes: [const { AtomicU64::new(0) }; SITES_NAMED],
            more_sites: AtomicBool::new(false),
            registered: AtomicBool::new(false),
        }
    }

    /// What its lines say.
    pub(crate) fn what(&self) -> &'static str {
        self.what
    }

    /// `Some(lines left out since the previous one)` when this one is to be logged, `None`
    /// when it is left out (and counted).
    pub(crate) fn admit(&'static self, site: Option<&str>) -> Option<u64> {
        let now = clock();
        let last = self.logged_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= INTERVAL.as_millis() as u64
            && self
                .logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if !due {
            self.left_out(site);
            return None;
        }
        if !self.registered.swap(true, Ordering::Relaxed) {
            lock(&REGISTERED).push(self);
        }
        Some(self.take().0)
    }

    /// Counts a line left out, and which site it was about.
    fn left_out(&self, site: Option<&str>) {
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        let Some(site) = site else { return };
        // Never 0, which marks a free slot.
        let hash = crate::runtime::hash::fnv1a(site.as_bytes()) | 1;
        let named = |h: &AtomicU64| h.load(Ordering::Relaxed) == hash;
        if self.site_hashes.iter().any(named) || self.more_sites.load(Ordering::Relaxed) {
            return;
        }
        let mut sites = lock(&self.sites);
        if self.site_hashes.iter().any(named) {
            return;
        }
        if sites.len() < SITES_NAMED {
            self.site_hashes[sites.len()].store(hash, Ordering::Relaxed);
            sites.push(site.into());
        } else {
            self.more_sites.store(true, Ordering::Relaxed);
        }
    }

    /// The lines left out since the last logged one, the sites they were about (the first
    /// ones), and whether there were more; counting starts again.
    fn take(&self) -> (u64, Vec<Box<str>>, bool) {
        let n = self.suppressed.swap(0, Ordering::Relaxed);
        let mut sites = lock(&self.sites);
        for hash in &self.site_hashes {
            hash.store(0, Ordering::Relaxed);
        }
        let taken = std::mem::take(&mut *sites);
        (n, taken, self.more_sites.swap(false, Ordering::Relaxed))
    }

    /// Logs what was left out once the interval has passed with no line to carry the count.
    fn summarize(&self) {
        let last = self.logged_ms.load(Ordering::Relaxed);
        let now = clock();
        if self.suppressed.load(Ordering::Relaxed) == 0
            || now.saturating_sub(last) < INTERVAL.as_millis() as u64
            || self
                .logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let (suppressed, sites, more) = self.take();
        // Left out (by `tracing`) for kinds that name no site.
        let site = sites.first().map(|s| &**s);
        let other_sites = (sites.len() > 1 || more).then(|| {
            let mut others = sites[1..].join(", ");
            if more {
                others.push_str(", and more");
            }
            others
        });
        let other_sites = other_sites.as_deref();
        let secs = (now - last).div_ceil(1000);
        let what = self.what;
        match self.level {
            Level::ERROR => {
                tracing::error!(
                    site,
                    other_sites,
                    suppressed,
                    "{what}: {suppressed} more in the last {secs} s"
                )
            }
            Level::WARN => {
                tracing::warn!(
                    site,
                    other_sites,
                    suppressed,
                    "{what}: {suppressed} more in the last {secs} s"
                )
            }
            _ => {
                tracing::info!(
                    site,
                    other_sites,
                    suppressed,
                    "{what}: {suppressed} more in the last {secs} s"
                )
            }
        }
    }
}

/// Sums up, every interval, what each kind left out since its last line, until `shutdown`.
pub(crate) async fn run(shutdown: CancellationToken) {
    let mut every = tokio::time::interval(INTERVAL / 2);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let kinds = lock(&REGISTERED).clone();
        for kind in kinds {
            kind.summarize();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().recover()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_an_interval_with_the_count_of_the_others() {
        static KIND: Limit = Limit::new(Level::WARN, "test");
        assert_eq!(KIND.admit(Some("a.test")), Some(0), "the first is logged");
        for _ in 0..5 {
            assert_eq!(KIND.admit(Some("a.test")), None);
        }
        assert_eq!(KIND.admit(Some("b.test")), None);
        // As if the interval had passed.
        KIND.logged_ms.store(0, Ordering::Relaxed);
        let (n, sites, more) = KIND.take();
        assert_eq!(
            (n, sites, more),
            (6, vec!["a.test".into(), "b.test".into()], false)
        );
        assert_eq!(KIND.admit(None), Some(0), "the count was taken");
        assert_eq!(KIND.admit(Some("c.test")), None);
        assert_eq!(KIND.take(), (1, vec!["c.test".into()], false));
    }

    #[test]
    fn a_summary_names_the_first_sites_and_says_when_there_were_more() {
        static KIND: Limit = Limit::new(Level::WARN, "test");
        assert_eq!(KIND.admit(None), Some(0));
        // A noisy site first, then others: each named once, up to SITES_NAMED.
        for round in 0..3 {
            for i in 0..SITES_NAMED + 4 {
                assert_eq!(KIND.admit(Some(&format!("s{i}.test"))), None, "{round}");
            }
        }
        let (n, sites, more) = KIND.take();
        assert_eq!(n, 3 * (SITES_NAMED as u64 + 4));
        let named: Vec<Box<str>> = (0..SITES_NAMED)
            .map(|i| format!("s{i}.test").into())
            .collect();
        assert_eq!((sites, more), (named, true));
        assert_eq!(KIND.take(), (0, vec![], false), "all taken");
    }

    #[test]
    fn a_summary_waits_for_the_interval_and_takes_the_count_once() {
        static KIND: Limit = Limit::new(Level::INFO, "test");
        KIND.admit(None);
        KIND.admit(None);
        KIND.summarize();
        assert_eq!(KIND.suppressed.load(Ordering::Relaxed), 1, "not due yet");
        KIND.logged_ms.store(0, Ordering::Relaxed);
        KIND.summarize();
        assert_eq!(KIND.suppressed.load(Ordering::Relaxed), 0, "summed up");
        assert!(lock(&REGISTERED).iter().any(|k| std::ptr::eq(*k, &KIND)));
    }
}

//! One upstream's health as this edge sees it. Passive: what its requests did (refused, reset,
//! timed out, 5xx). Active: what its checks said. A request reads the state without a lock;
//! failures, checks and the moments a state ends take one.
//!
//! - **up**: gets its share.
//! - **down**: gets nothing, for a back-off that doubles while it keeps failing
//!   ([`BACK_OFF_FIRST`] to [`BACK_OFF_MAX`]); with active checks, until they pass again too.
//! - **probation**: back, its share ramping from a tenth to all of it over [`SLOW_START`]; a
//!   failure sends it down again with the next back-off.

use porter_store::{unix_now, Recover as _};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The window 5xx answers are counted in.
const WINDOW: Duration = Duration::from_secs(10);
/// Failures that take an upstream out: this many broken exchanges (refused, reset, timed out)
/// in a row, or this many 5xx answers in a window if they are half its requests or more (so
/// that one failing page among many good ones takes nothing out).
const FAILS: u32 = 3;
/// The first back-off, and the longest.
pub(crate) const BACK_OFF_FIRST: Duration = Duration::from_secs(5);
const BACK_OFF_MAX: Duration = Duration::from_secs(60);
/// How long a returning upstream's share takes to ramp to all of it.
pub(crate) const SLOW_START: Duration = Duration::from_secs(10);
/// The share a returning upstream starts with.
const FIRST_SHARE: f64 = 0.1;
/// Failed checks in a row that take an upstream out, and passed ones that bring it back.
const CHECKS_FALL: u8 = 2;
const CHECKS_RISE: u8 = 2;

/// An upstream's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Up = 0,
    Down = 1,
    Probation = 2,
}

impl State {
    /// Every state, as the metrics and views name them.
    pub(crate) const NAMES: [&'static str; 3] = ["up", "down", "probation"];

    fn of(code: u8) -> State {
        match code {
            1 => State::Down,
            2 => State::Probation,
            _ => State::Up,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Milliseconds since the first use: what the lock-free fields hold.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What a request may take of an upstream now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Share {
    /// None: it is down.
    Out,
    /// This part of its weight, 0.1 to 1.
    Part(f64),
}

/// One upstream's health.
pub(crate) struct Health {
    state: AtomicU8,
    /// Down: when its back-off ends. Probation: when it began.
    mark_ms: AtomicU64,
    /// When it last failed (0: never), to try the least recently failed when all are down.
    last_failure_ms: AtomicU64,
    /// Requests in the current window, counted without the lock.
    window_requests: AtomicU32,
    /// Broken exchanges since its last good one.
    broken_in_a_row: AtomicU32,
    slow: Mutex<Slow>,
}

/// What only failures, checks and state changes touch.
struct Slow {
    window_start_ms: u64,
    window_failures: u32,
    back_off: Duration,
    /// When the current state began (Unix seconds), for the views.
    since: i64,
    last_error: Option<String>,
    checks_failed: u8,
    checks_passed: u8,
}

/// A state change, for the caller to log (it knows the site and upstream).
#[derive(Debug, PartialEq)]
pub(crate) enum Change {
    Down { reason: String, back_off: Duration },
    Probation,
    Up,
}

impl Health {
    pub(crate) fn new() -> Health {
        Health {
            state: AtomicU8::new(State::Up as u8),
            mark_ms: AtomicU64::new(0),
            last_failure_ms: AtomicU64::new(0),
            window_requests: AtomicU32::new(0),
            broken_in_a_row: AtomicU32::new(0),
            slow: Mutex::new(Slow {
                window_start_ms: now_ms(),
                window_failures: 0,
                back_off: BACK_OFF_FIRST,
                since: unix_now(),
                last_error: None,
                checks_failed: 0,
                checks_passed: 0,
            }),
        }
    }

    pub(crate) fn state(&self) -> State {
        State::of(self.state.load(Relaxed))
    }

    /// When it last failed, in this process's milliseconds (0: never).
    pub(crate) fn last_failure(&self) -> u64 {
        self.last_failure_ms.load(Relaxed)
    }

    /// When its state began (Unix seconds), and its last error.
    pub(crate) fn since_and_error(&self) -> (i64, Option<String>) {
        let slow = self.slow.lock().recover();
        (slow.since, slow.last_error.clone())
    }

    /// What it may take now; the end of a back-off or of a probation is noticed here.
    /// `checked`: active checks decide when it comes back.
    pub(crate) fn share(&self, checked: bool) -> (Share, Option<Change>) {
        match self.state() {
            // The common case reads no clock.
            State::Up => (Share::Part(1.0), None),
            _ => self.share_at(checked, now_ms()),
        }
    }

    fn share_at(&self, checked: bool, now: u64) -> (Share, Option<Change>) {
        let mark = self.mark_ms.load(Relaxed);
        match self.state() {
            State::Up => (Share::Part(1.0), None),
            State::Down if checked || now < mark => (Share::Out, None),
            State::Down => {
                let change = self.set(State::Down, State::Probation, now);
                (
                    Share::Part(FIRST_SHARE),
                    change.then_some(Change::Probation),
                )
            }
            State::Probation => {
                let ramp = now.saturating_sub(mark) as f64 / ms(SLOW_START) as f64;
                if ramp < 1.0 {
                    return (Share::Part(FIRST_SHARE + (1.0 - FIRST_SHARE) * ramp), None);
                }
                let change = self.set(State::Probation, State::Up, now);
                if change {
                    self.slow.lock().recover().back_off = BACK_OFF_FIRST;
                }
                (Share::Part(1.0), change.then_some(Change::Up))
            }
        }
    }

    /// Moves from `from` to `to` at `now` unless another thread did first; whether this did.
    fn set(&self, from: State, to: State, now: u64) -> bool {
        let mut slow = self.slow.lock().recover();
        if self.state() != from {
            return false;
        }
        self.mark_ms.store(now, Relaxed);
        self.state.store(to as u8, Relaxed);
        slow.since = unix_now();
        if to == State::Probation {
            slow.window_start_ms = now;
            slow.window_failures = 0;
            self.window_requests.store(0, Relaxed);
        }
        true
    }

    /// A request that it answered well.
    pub(crate) fn succeeded(&self) {
        self.window_requests.fetch_add(1, Relaxed);
        if self.broken_in_a_row.load(Relaxed) > 0 {
            self.broken_in_a_row.store(0, Relaxed);
        }
    }

    /// A request it failed (`reason` says how): `broken`, refused, reset or timed out, else
    /// answered with a 5xx. A change when this takes it out.
    pub(crate) fn failed(&self, reason: &str, broken: bool) -> Option<Change> {
        let in_a_row = match broken {
            true => self.broken_in_a_row.fetch_add(1, Relaxed) + 1,
            false => 0,
        };
        let now = now_ms();
        self.last_failure_ms.store(now.max(1), Relaxed);
        let mut slow = self.slow.lock().recover();
        slow.last_error = Some(reason.to_owned());
        if now.saturating_sub(slow.window_start_ms) >= ms(WINDOW) {
            slow.window_start_ms = now;
            slow.window_failures = 0;
            self.window_requests.store(0, Relaxed);
        }
        slow.window_failures += 1;
        let requests = self.window_requests.fetch_add(1, Relaxed) + 1;
        let out = match self.state() {
            State::Down => false,
            State::Probation => true,
            State::Up if broken => in_a_row >= FAILS,
            State::Up => slow.window_failures >= FAILS && slow.window_failures * 2 >= requests,
        };
        out.then(|| self.take_out(&mut slow, now, reason))
    }

    /// Down from now, for the current back-off (then the next one doubles).
    fn take_out(&self, slow: &mut Slow, now: u64, reason: &str) -> Change {
        let back_off = slow.back_off;
        slow.back_off = (back_off * 2).min(BACK_OFF_MAX);
        slow.since = unix_now();
        slow.checks_passed = 0;
        self.mark_ms.store(now + ms(back_off), Relaxed);
        self.state.store(State::Down as u8, Relaxed);
        Change::Down {
            reason: reason.to_owned(),
            back_off,
        }
    }

    /// What an active check said (`Err`: why it failed); a change when this takes it out or
    /// brings it back.
    pub(crate) fn checked(&self, result: Result<(), String>) -> Option<Change> {
        let now = now_ms();
        let mut slow = self.slow.lock().recover();
        match result {
            Ok(()) => {
                slow.checks_failed = 0;
                slow.checks_passed = slow.checks_passed.saturating_add(1);
                let back = self.state() == State::Down
                    && slow.checks_passed >= CHECKS_RISE
                    && now >= self.mark_ms.load(Relaxed);
                drop(slow);
                (back && self.set(State::Down, State::Probation, now)).then_some(Change::Probation)
            }
            Err(why) => {
                slow.checks_passed = 0;
                slow.checks_failed = slow.checks_failed.saturating_add(1);
                let reason = format!("health check: {why}");
                slow.last_error = Some(reason.clone());
                self.last_failure_ms.store(now.max(1), Relaxed);
                let out = self.state() != State::Down && slow.checks_failed >= CHECKS_FALL;
                out.then(|| self.take_out(&mut slow, now, &reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_exchanges_in_a_row_or_half_its_answers_in_5xx_take_it_out() {
        let health = Health::new();
        for _ in 0..20 {
            health.succeeded();
        }
        assert_eq!(health.failed("answered 500", false), None);
        assert_eq!(health.failed("answered 500", false), None);
        assert_eq!(
            health.failed("answered 500", false),
            None,
            "3 of 23: a failing page"
        );
        let downs = (0..20)
            .filter(|_| health.failed("answered 500", false).is_some())
            .count();
        assert_eq!(downs, 1);
        assert_eq!(health.state(), State::Down, "half of its answers are 500s");
        let flaky = Health::new();
        for _ in 0..5 {
            assert_eq!(flaky.failed("reset", true), None);
            assert_eq!(flaky.failed("reset", true), None);
            flaky.succeeded();
        }
        let dead = Health::new();
        assert_eq!(dead.failed("refused", true), None);
        assert_eq!(dead.failed("refused", true), None);
        assert!(matches!(
            dead.failed("refused", true),
            Some(Change::Down { back_off, .. }) if back_off == BACK_OFF_FIRST
        ));
        assert_eq!(dead.share(false).0, Share::Out);
        assert_eq!(dead.failed("refused", true), None, "down already");
    }

    #[test]
    fn a_back_off_ends_in_probation_and_a_failure_there_doubles_it() {
        let health = Health::new();
        for _ in 0..3 {
            health.failed("reset", true);
        }
        assert_eq!(health.state(), State::Down);
        // As if the back-off had passed.
        health.mark_ms.store(now_ms(), Relaxed);
        let (share, change) = health.share(false);
        assert_eq!(
            (share, change),
            (Share::Part(FIRST_SHARE), Some(Change::Probation))
        );
        assert!(matches!(
            health.failed("refused", true),
            Some(Change::Down { back_off, .. }) if back_off == BACK_OFF_FIRST * 2
        ));
        health.mark_ms.store(now_ms(), Relaxed);
        health.share(false);
        // As if the probation had passed.
        let later = now_ms() + ms(SLOW_START);
        assert_eq!(
            health.share_at(false, later),
            (Share::Part(1.0), Some(Change::Up))
        );
        assert_eq!(health.slow.lock().recover().back_off, BACK_OFF_FIRST);
    }

    #[test]
    fn with_checks_it_comes_back_when_they_pass() {
        let health = Health::new();
        assert_eq!(health.checked(Err("500".into())), None);
        assert!(matches!(
            health.checked(Err("500".into())),
            Some(Change::Down { .. })
        ));
        health.mark_ms.store(0, Relaxed);
        assert_eq!(
            health.share(true).0,
            Share::Out,
            "back-off over, checks failing"
        );
        assert_eq!(health.checked(Ok(())), None);
        assert_eq!(health.checked(Ok(())), Some(Change::Probation));
        assert!(matches!(health.share(true).0, Share::Part(p) if p < 0.2));
    }
}

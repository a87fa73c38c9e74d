//! Password-guessing limits for SMTP AUTH, per account and per client
//! address, shared by every session of the server.
//!
//! An attempt is counted when it *starts*, not when it fails: 36 guesses
//! sent in parallel on 36 connections all start before the first one's
//! argon2 finishes, so counting failures alone would let all of them in.
//! Once the failures (plus the attempts still being checked) reach the
//! limit, every further attempt for that account or from that address is
//! answered `454 4.7.0` without checking the password, until the lockout
//! ends. Unknown accounts are counted like known ones, so the lockout tells
//! nothing about which accounts exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; beyond it, finished entries are dropped first.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// Failed logins for one account within `window` before it is locked.
    pub per_account: u32,
    /// Failed logins from one client address within `window`.
    pub per_address: u32,
    pub window: Duration,
    pub lockout: Duration,
}

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    pending: u32,
    /// When the failures counted so far began; they are forgotten `window` later.
    since: Option<Instant>,
    locked_until: Option<Instant>,
}

impl Entry {
    fn refresh(&mut self, now: Instant, window: Duration) {
        if self.since.is_some_and(|s| now.duration_since(s) > window) {
            self.failures = 0;
            self.since = None;
        }
        if self.locked_until.is_some_and(|t| now >= t) {
            self.locked_until = None;
            self.failures = 0;
            self.since = None;
        }
    }

    fn full(&self, limit: u32) -> bool {
        self.locked_until.is_some() || self.failures + self.pending >= limit
    }

    fn idle(&self) -> bool {
        self.pending == 0 && self.locked_until.is_none() && self.failures == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

pub struct AuthGuard {
    limits: GuardLimits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// One attempt in progress; hand it back to [`AuthGuard::finish`].
#[must_use]
pub struct Attempt {
    account: Key,
    address: Key,
}

impl AuthGuard {
    pub fn new(limits: GuardLimits) -> AuthGuard {
        AuthGuard { limits, entries: Mutex::new(HashMap::new()) }
    }

    /// Starts an attempt, or `None` when the account or the address is
    /// locked out (answer 454).
    pub fn begin(&self, account: &str, address: IpAddr) -> Option<Attempt> {
        let now = Instant::now();
        let account = Key::Account(account.to_lowercase());
        let address = Key::Address(address);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| {
                e.refresh(now, self.limits.window);
                !e.idle()
            });
        }
        let limit = |k: &Key| match k {
            Key::Account(_) => self.limits.per_account,
            Key::Address(_) => self.limits.per_address,
        };
        for key in [&account, &address] {
            let e = entries.entry(key.clone()).or_default();
            e.refresh(now, self.limits.window);
            if e.full(limit(key)) {
                if e.locked_until.is_none() && e.failures >= limit(key) {
                    e.locked_until = Some(now + self.limits.lockout);
                }
                return None;
            }
        }
        for key in [&account, &address] {
            if let Some(e) = entries.get_mut(key) {
                e.pending += 1;
            }
        }
        Some(Attempt { account, address })
    }

    /// Ends an attempt. A success forgets the account's failures; a failure
    /// counts against both, and locks whichever reached its limit.
    pub fn finish(&self, attempt: Attempt, success: bool) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (key, limit) in [(&attempt.account, self.limits.per_account), (&attempt.address, self.limits.per_address)] {
            let Some(e) = entries.get_mut(key) else { continue };
            e.pending = e.pending.saturating_sub(1);
            if success {
                if matches!(key, Key::Account(_)) {
                    e.failures = 0;
                    e.since = None;
                }
            } else {
                e.failures += 1;
                e.since.get_or_insert(now);
                if e.failures >= limit {
                    e.locked_until.get_or_insert(now + self.limits.lockout);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(lockout_ms: u64) -> AuthGuard {
        AuthGuard::new(GuardLimits {
            per_account: 3,
            per_address: 5,
            window: Duration::from_secs(600),
            lockout: Duration::from_millis(lockout_ms),
        })
    }

    #[test]
    fn parallel_attempts_count_before_they_finish() {
        let g = guard(60_000);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let started: Vec<Attempt> = (0..10).filter_map(|_| g.begin("taro@example.com", ip)).collect();
        assert_eq!(started.len(), 3, "only as many guesses as the limit may be in flight");
        for a in started {
            g.finish(a, false);
        }
        assert!(g.begin("taro@example.com", ip).is_none(), "locked, even for the right password");
        // Another account from the same address still has the address's room left.
        let other = g.begin("hanako@example.com", ip).expect("address not yet at its limit");
        g.finish(other, false);
        let other = g.begin("hanako@example.com", ip).expect("two of five");
        g.finish(other, false);
        assert!(g.begin("jiro@example.com", ip).is_none(), "five failures from one address lock it");
        assert!(g.begin("jiro@example.com", "192.0.2.8".parse().unwrap()).is_some());
    }

    #[test]
    fn success_forgets_and_lockout_ends() {
        let g = guard(50);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..2 {
            let a = g.begin("Taro@Example.com", ip).unwrap();
            g.finish(a, false);
        }
        let a = g.begin("taro@example.com", ip).unwrap();
        g.finish(a, true);
        for _ in 0..3 {
            let a = g.begin("taro@example.com", ip).expect("failures were forgotten after the success");
            g.finish(a, false);
        }
        assert!(g.begin("taro@example.com", ip).is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(g.begin("taro@example.com", ip).is_some(), "the lockout is temporary");
    }
}

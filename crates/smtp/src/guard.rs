//! Password-guessing limits for SMTP AUTH, shared by every session of the
//! server: per account from one client address, per account from
//! everywhere (ten times as many), and per client address (IPv6 by /64).
//!
//! An attempt is counted when it *starts*, not when it fails: 36 guesses
//! sent in parallel on 36 connections all start before the first one's
//! argon2 finishes, so counting failures alone would let all of them in.
//! Once the failures (plus the attempts still being checked) reach a
//! limit, every further attempt under that key is answered `454 4.7.0`
//! without checking the password, until the lockout ends. Unknown accounts
//! are counted like known ones, so the lockout tells nothing about which
//! accounts exist; and a stranger's guesses lock an account only for the
//! stranger's address until they pass the much higher limit for everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries past which finished ones are dropped (and then any not locked).
const PRUNE_AT: usize = 100_000;
/// Account names are cut to this for their key (an address is at most 320).
const MAX_KEY: usize = 320;
/// The limit for an account from everywhere, as a multiple of the limit
/// from one address.
const EVERYWHERE: u32 = 10;

#[derive(Debug, Clone, Copy)]
pub struct GuardLimits {
    /// Failed logins for one account from one address within `window`.
    pub per_account: u32,
    /// Failed logins from one client address within `window`, any account.
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
    AccountFrom(String, IpAddr),
    Address(IpAddr),
}

/// The address a client is counted under: IPv4 (mapped or not) as it is,
/// IPv6 by its /64, which one host usually has whole.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

pub struct AuthGuard {
    limits: GuardLimits,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
}

/// One attempt in progress. [`Attempt::finish`] says how it went; dropped
/// without that (the session was cut), it only stops being in progress.
pub struct Attempt {
    limits: GuardLimits,
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
    keys: [Key; 3],
    done: bool,
}

impl AuthGuard {
    pub fn new(limits: GuardLimits) -> AuthGuard {
        AuthGuard { limits, entries: Arc::default() }
    }

    fn limit(limits: &GuardLimits, key: &Key) -> u32 {
        match key {
            Key::AccountFrom(..) => limits.per_account,
            Key::Account(_) => limits.per_account.saturating_mul(EVERYWHERE),
            Key::Address(_) => limits.per_address,
        }
    }

    /// Starts an attempt, or `None` when the account (from this address or
    /// from everywhere) or the address is locked out: answer 454.
    pub fn begin(&self, account: &str, address: IpAddr) -> Option<Attempt> {
        let now = Instant::now();
        let account: String = account.to_lowercase().chars().take(MAX_KEY).collect();
        let address = client_key(address);
        let keys = [Key::AccountFrom(account.clone(), address), Key::Account(account), Key::Address(address)];
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= PRUNE_AT {
            entries.retain(|_, e| {
                e.refresh(now, self.limits.window);
                !e.idle()
            });
        }
        if entries.len() >= PRUNE_AT {
            // A flood of names: keep only what is locked or being checked.
            entries.retain(|_, e| e.pending > 0 || e.locked_until.is_some());
        }
        for key in &keys {
            let limit = Self::limit(&self.limits, key);
            let e = entries.entry(key.clone()).or_default();
            e.refresh(now, self.limits.window);
            if e.full(limit) {
                if e.locked_until.is_none() && e.failures >= limit {
                    e.locked_until = Some(now + self.limits.lockout);
                }
                return None;
            }
        }
        for key in &keys {
            if let Some(e) = entries.get_mut(key) {
                e.pending += 1;
            }
        }
        Some(Attempt { limits: self.limits, entries: self.entries.clone(), keys, done: false })
    }
}

impl Attempt {
    /// A success forgets the account's failures; a failure counts under
    /// every key, and locks whichever reached its limit.
    pub fn finish(mut self, success: bool) {
        self.done = true;
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            let limit = AuthGuard::limit(&self.limits, key);
            let Some(e) = entries.get_mut(key) else { continue };
            e.pending = e.pending.saturating_sub(1);
            if success {
                if !matches!(key, Key::Address(_)) {
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

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(e) = entries.get_mut(key) {
                e.pending = e.pending.saturating_sub(1);
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
            a.finish(false);
        }
        assert!(g.begin("taro@example.com", ip).is_none(), "locked, even for the right password");
        // From elsewhere the account still works: a stranger cannot lock it
        // for everyone with a few guesses.
        let elsewhere = g.begin("taro@example.com", "198.51.100.1".parse().unwrap()).expect("not locked everywhere");
        elsewhere.finish(true);
        // Another account from the same address has the address's room left.
        for _ in 0..2 {
            g.begin("hanako@example.com", ip).expect("address not yet at its limit").finish(false);
        }
        assert!(g.begin("jiro@example.com", ip).is_none(), "five failures from one address lock it");
        assert!(g.begin("jiro@example.com", "192.0.2.8".parse().unwrap()).is_some());
    }

    #[test]
    fn an_account_is_locked_everywhere_after_many_addresses_failed() {
        let g = guard(60_000);
        for i in 0..30u8 {
            let ip = IpAddr::from([10, 0, 0, i]);
            g.begin("taro@example.com", ip).expect("under every limit").finish(false);
        }
        assert!(g.begin("taro@example.com", "10.9.9.9".parse().unwrap()).is_none(), "3 × 10 failures in all");
    }

    #[test]
    fn success_forgets_lockout_ends_and_cut_attempts_do_not_stay_pending() {
        let g = guard(50);
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..2 {
            g.begin("Taro@Example.com", ip).unwrap().finish(false);
        }
        g.begin("taro@example.com", ip).unwrap().finish(true);
        for _ in 0..3 {
            g.begin("taro@example.com", ip).expect("failures were forgotten after the success").finish(false);
        }
        assert!(g.begin("taro@example.com", ip).is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(g.begin("taro@example.com", ip).is_some(), "the lockout is temporary");
        // Dropped unfinished (a session cut mid-check): no longer pending.
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        for _ in 0..10 {
            drop(g.begin("x@example.com", other).expect("cut attempts are not counted as in flight"));
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_slash_64() {
        let a = client_key("2001:db8:1:2::1".parse().unwrap());
        assert_eq!(a, client_key("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_ne!(a, client_key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(client_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}

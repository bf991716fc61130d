//! Per-party limits that keep one client from starving the others:
//! back-off for failed logins (per account and address, per address, per
//! account), a cap on how fast one address may create accounts, and each
//! account's share of the upload slots.
//!
//! The counters live in this node's memory: a party that spreads its
//! attempts over every node gets each node's budget, which the limits
//! below allow for. A map holds at most `MAX_TRACKED` parties; when it is
//! full, parties with nothing to remember are dropped first, then the
//! oldest.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_config::UserId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Parties one map remembers at most.
const MAX_TRACKED: usize = 100_000;
/// Failures are forgotten after this long without a new one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// How one kind of party is slowed down: `free` failures cost nothing,
/// each one after doubles the wait, from one second up to `max_wait`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub free: u32,
    pub max_wait: Duration,
}

impl Backoff {
    fn wait_after(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free - 1).min(20);
        Duration::from_secs(1u64 << doublings).min(self.max_wait)
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

/// Failure counts of one kind of party.
struct Ledger<K> {
    backoff: Backoff,
    map: Mutex<HashMap<K, Record>>,
}

impl<K: Hash + Eq + Clone> Ledger<K> {
    fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Record>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `key` must still wait, if at all.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let map = self.lock();
        let r = map.get(key)?;
        (r.blocked_until > now).then(|| r.blocked_until - now)
    }

    fn fail(&self, key: K, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            map.retain(|_, r| now.duration_since(r.last) < FORGET_AFTER || r.blocked_until > now);
            if map.len() >= MAX_TRACKED {
                // Still full: forget the half that failed longest ago.
                let mut lasts: Vec<Instant> = map.values().map(|r| r.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                map.retain(|_, r| r.last > cut);
            }
        }
        let r = map.entry(key).or_insert(Record {
            failures: 0,
            blocked_until: now,
            last: now,
        });
        if now.duration_since(r.last) >= FORGET_AFTER {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        r.blocked_until = now + self.backoff.wait_after(r.failures);
    }

    fn clear(&self, key: &K) {
        self.lock().remove(key);
    }
}

/// Back-off for failed logins. Guessing one account from one address is
/// slowed first and hardest; one address trying many accounts, and many
/// addresses trying one account, are slowed too, more gently, so that a
/// stranger cannot keep the owner out for long.
pub struct LoginThrottle {
    pair: Ledger<(String, IpAddr)>,
    address: Ledger<IpAddr>,
    account: Ledger<String>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            pair: Ledger::new(Backoff {
                free: 3,
                max_wait: Duration::from_secs(15 * 60),
            }),
            address: Ledger::new(Backoff {
                free: 20,
                max_wait: Duration::from_secs(15 * 60),
            }),
            account: Ledger::new(Backoff {
                free: 50,
                max_wait: Duration::from_secs(60),
            }),
        }
    }
}

impl LoginThrottle {
    /// `Err(wait)` when a login for `account` from `addr` must wait.
    pub fn check(&self, account: &str, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let waits = [
            self.pair.blocked(&(account.to_string(), addr), now),
            self.address.blocked(&addr, now),
            self.account.blocked(&account.to_string(), now),
        ];
        match waits.into_iter().flatten().max() {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    pub fn failed(&self, account: &str, addr: IpAddr) {
        let now = Instant::now();
        self.pair.fail((account.to_string(), addr), now);
        self.address.fail(addr, now);
        self.account.fail(account.to_string(), now);
    }

    /// A correct password clears what this address and account owed.
    pub fn succeeded(&self, account: &str, addr: IpAddr) {
        self.pair.clear(&(account.to_string(), addr));
        self.account.clear(&account.to_string());
    }
}

/// Accounts one address may create per window.
pub struct SignupLimit {
    per_window: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignupLimit {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one signup from `addr`, or says how long it must wait.
    pub fn take(&self, addr: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let (start, n) = map.entry(addr).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *n = 0;
        }
        if *n >= self.per_window {
            return Err(self.window.saturating_sub(now.duration_since(*start)));
        }
        *n += 1;
        Ok(())
    }
}

/// Things (connections, password checks) held per client address.
#[derive(Default)]
pub struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One address's hold; counted down when dropped.
pub struct AddressSlot {
    map: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// One more for `ip`, unless it holds `limit` already.
    pub fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The slots in which request bodies become blocks, shared out so that
/// one account cannot hold them all: each account holds at most
/// `per_user` at once and is told to come back (`429`) past that, while
/// others still get theirs.
pub struct UploadSlots {
    global: Arc<Semaphore>,
    per_user: usize,
    held: Mutex<HashMap<UserId, usize>>,
}

/// One slot; given back when dropped.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    slots: Arc<UploadSlots>,
    user: UserId,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        self.slots.release(&self.user);
    }
}

impl UploadSlots {
    pub fn new(total: usize, per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            global: Arc::new(Semaphore::new(total)),
            per_user: per_user.clamp(1, total.max(1)),
            held: Mutex::new(HashMap::new()),
        })
    }

    fn release(&self, user: &UserId) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                held.remove(user);
            }
        }
    }

    /// A slot for `user`: `Ok(None)` when the account already holds its
    /// share (the caller answers `429`), `Err` when shutting down.
    pub async fn acquire(self: &Arc<Self>, user: UserId) -> Result<Option<UploadSlot>, ()> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let n = held.entry(user).or_default();
            if *n >= self.per_user {
                return Ok(None);
            }
            *n += 1;
        }
        match self.global.clone().acquire_owned().await {
            Ok(permit) => Ok(Some(UploadSlot {
                _permit: permit,
                slots: self.clone(),
                user,
            })),
            Err(_) => {
                self.release(&user);
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_account_holds_at_most_its_share_of_upload_slots() {
        let slots = UploadSlots::new(8, 2);
        let (a, b) = (UserId([1; 16]), UserId([2; 16]));
        let first = slots.acquire(a).await.unwrap().unwrap();
        let _second = slots.acquire(a).await.unwrap().unwrap();
        assert!(slots.acquire(a).await.unwrap().is_none());
        // Another account is not held up by the first.
        let _other = slots.acquire(b).await.unwrap().unwrap();
        drop(first);
        assert!(slots.acquire(a).await.unwrap().is_some());
    }

    #[test]
    fn backoff_doubles_after_the_free_failures_up_to_the_cap() {
        let b = Backoff {
            free: 3,
            max_wait: Duration::from_secs(60),
        };
        let waits: Vec<u64> = (1..=10).map(|n| b.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60]);
    }

    #[test]
    fn a_guesser_is_slowed_and_the_owner_elsewhere_is_not() {
        let t = LoginThrottle::default();
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let owner: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check("ann", attacker).is_ok());
            t.failed("ann", attacker);
        }
        assert!(t.check("ann", attacker).is_ok());
        t.failed("ann", attacker);
        let wait = t.check("ann", attacker).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // The same account from the owner's address: not blocked.
        assert!(t.check("ann", owner).is_ok());
        // Another account from the attacker's address: not yet.
        assert!(t.check("bob", attacker).is_ok());
        t.succeeded("ann", owner);
        assert!(t.check("ann", owner).is_ok());
    }

    #[test]
    fn signups_per_address_are_capped() {
        let l = SignupLimit::new(2, Duration::from_secs(3600));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.take(a).is_ok());
        assert!(l.take(a).is_ok());
        assert!(l.take(a).is_err());
        assert!(l.take("10.0.0.9".parse().unwrap()).is_ok());
    }
}

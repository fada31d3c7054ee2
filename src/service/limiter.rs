//! Failed-attempt limiter, per client address, in a fixed window.
//!
//! Why per address only: a per-application limit is a lockout a stranger can
//! trigger by flooding forged secrets for an AppId they read off a prefix.
//! Here a flood costs the flooding addresses their own budget and nothing
//! else; the holder of the real secret, on another address, is never
//! refused (and forged generated keys are refused without argon2 at all, see
//! `service::token`).
//!
//! Count before the work: an attempt reserves a slot before any hashing and
//! gives it back only when it succeeds, so concurrent attempts can never
//! exceed the limit (check-then-record let 400 parallel requests through).
//! IPv6 clients are grouped by /64: one host usually holds a whole /64.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts failures per key (a client address, by default) in windows of
/// fixed length.
pub struct FailureLimiter<K: Hash + Eq + Clone = IpAddr> {
    window: Duration,
    per_ip: u32,
    counts: Counts<K>,
}

type Counts<K> = Arc<Mutex<HashMap<K, (u32, Instant)>>>;

const MAX_KEYS: usize = 200_000;

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// One attempt's slot. Dropped without [`Reservation::fail`], the slot is
/// given back (a success, or a refusal that was not the client's doing).
pub struct Reservation<K: Hash + Eq + Clone = IpAddr> {
    counts: Counts<K>,
    key: K,
    started: Instant,
    failed: bool,
}

impl<K: Hash + Eq + Clone> Reservation<K> {
    /// Keeps the slot: the attempt failed and counts against the address.
    pub fn fail(mut self) {
        self.failed = true;
    }
}

impl<K: Hash + Eq + Clone> Drop for Reservation<K> {
    fn drop(&mut self) {
        if self.failed {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, start)) = counts.get_mut(&self.key)
            // Only refund into the window the slot was taken from.
            && *start <= self.started
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Nothing left to remember: successes never hold a place.
                counts.remove(&self.key);
            }
        }
    }
}

impl FailureLimiter<IpAddr> {
    /// Takes a slot for one attempt from `ip`, or `Err(seconds)` to wait
    /// when the address has used up its failures.
    pub fn reserve(&self, ip: IpAddr) -> Result<Reservation<IpAddr>, u64> {
        self.reserve_key(client_key(ip))
    }
}

impl<K: Hash + Eq + Clone> FailureLimiter<K> {
    /// `per_ip` failures are allowed per key per `window`.
    pub fn new(window: Duration, per_ip: u32) -> Self {
        Self {
            window,
            per_ip,
            counts: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a slot for one attempt counted under `key`, or `Err(seconds)`
    /// to wait when the key has used up its failures.
    pub fn reserve_key(&self, key: K) -> Result<Reservation<K>, u64> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_KEYS && !counts.contains_key(&key) {
            let w = self.window;
            counts.retain(|_, (n, start)| *n > 0 && start.elapsed() < w);
            if counts.len() >= MAX_KEYS {
                // Every tracked key is mid-window with failures. Refusing a
                // newcomer would be a lockout anyone spread over enough
                // addresses could cause; forgetting the older half only
                // gives those addresses their budget back early. Amortised:
                // the next purge is half a table away.
                let mut starts: Vec<Instant> = counts.values().map(|(_, s)| *s).collect();
                let mid = starts.len() / 2;
                let median = *starts.select_nth_unstable(mid).1;
                counts.retain(|_, (_, s)| *s > median);
            }
        }
        let now = Instant::now();
        let e = counts.entry(key.clone()).or_insert((0, now));
        if e.1.elapsed() >= self.window {
            *e = (0, now);
        }
        if e.0 >= self.per_ip {
            return Err((self.window.saturating_sub(e.1.elapsed())).as_secs().max(1));
        }
        e.0 += 1;
        Ok(Reservation {
            counts: self.counts.clone(),
            key,
            started: now,
            failed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_count_per_address_and_successes_are_refunded() {
        let l = FailureLimiter::new(Duration::from_millis(80), 2);
        let a = ip("127.0.0.1");
        let b = ip("10.0.0.1");
        // Successes never use the budget up.
        for _ in 0..10 {
            drop(l.reserve(a).unwrap());
        }
        l.reserve(a).unwrap().fail();
        l.reserve(a).unwrap().fail();
        assert!(l.reserve(a).is_err());
        assert!(l.reserve(b).is_ok(), "another address is not affected");
        std::thread::sleep(Duration::from_millis(90));
        assert!(l.reserve(a).is_ok(), "the window passes");
    }

    #[test]
    fn concurrent_attempts_cannot_overrun_the_limit() {
        let l = FailureLimiter::new(Duration::from_secs(60), 5);
        let a = ip("192.0.2.1");
        // Reserved but not yet settled: the sixth is refused up front.
        let held: Vec<_> = (0..5).map(|_| l.reserve(a).unwrap()).collect();
        assert!(l.reserve(a).is_err());
        drop(held);
    }

    #[test]
    fn ipv6_is_grouped_by_64() {
        let l = FailureLimiter::new(Duration::from_secs(60), 1);
        l.reserve(ip("2001:db8:1:2::1")).unwrap().fail();
        assert!(l.reserve(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(l.reserve(ip("2001:db8:1:3::1")).is_ok());
        assert_eq!(client_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}

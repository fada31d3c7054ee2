//! Failed-attempt limiter: per application id and per client IP, in a fixed
//! window. Checked before any argon2 work, so guessing costs the attacker a
//! 429 and costs us almost nothing. A correct secret already in the verified
//! cache bypasses it: that proves knowledge of the secret without hashing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per key in windows of fixed length.
pub struct FailureLimiter {
    window: Duration,
    per_app: u32,
    per_ip: u32,
    counts: Mutex<HashMap<String, (u32, Instant)>>,
}

const MAX_KEYS: usize = 200_000;

impl FailureLimiter {
    /// `per_app` and `per_ip` failures are allowed per `window`.
    pub fn new(window: Duration, per_app: u32, per_ip: u32) -> Self {
        Self {
            window,
            per_app,
            per_ip,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn keys(app_id: &str, ip: IpAddr) -> [String; 2] {
        [format!("a:{app_id}"), format!("i:{ip}")]
    }

    /// `Err(seconds)` when the application or the IP is over its limit.
    pub fn check(&self, app_id: &str, ip: IpAddr) -> Result<(), u64> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let [a, i] = Self::keys(app_id, ip);
        for (key, limit) in [(a, self.per_app), (i, self.per_ip)] {
            if let Some((n, start)) = counts.get(&key) {
                let age = start.elapsed();
                if age < self.window && *n >= limit {
                    return Err((self.window - age).as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    /// Records one failure for the application and the IP.
    pub fn record_failure(&self, app_id: &str, ip: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_KEYS {
            let w = self.window;
            counts.retain(|_, (_, start)| start.elapsed() < w);
        }
        for key in Self::keys(app_id, ip) {
            let e = counts.entry(key).or_insert((0, Instant::now()));
            if e.1.elapsed() >= self.window {
                *e = (0, Instant::now());
            }
            e.0 = e.0.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_then_recovers() {
        let l = FailureLimiter::new(Duration::from_millis(50), 2, 5);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check("a", ip).is_ok());
        l.record_failure("a", ip);
        l.record_failure("a", ip);
        assert!(l.check("a", ip).is_err());
        assert!(l.check("a", other).is_err(), "per-application limit");
        assert!(l.check("b", other).is_ok());
        for _ in 0..5 {
            l.record_failure("c", other);
        }
        assert!(l.check("d", other).is_err(), "per-IP limit");
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.check("a", ip).is_ok());
    }
}

//! Request budgets (docs/api.md, "At the edge") on the embedded store: in this process only
//! (one gateway owns an embedded store), in a bounded map behind a mutex.
//! Nothing is written to disk: a restart gives every budget back, which is
//! what a bucket past its window would hold anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use super::EmbeddedStore;
use crate::store::{Gcra, RateLimitStore, RateVerdict, StoreError};

/// Buckets remembered at most. Beyond it, buckets whose budget is whole
/// again are swept; if all are still in use, the map is cleared: that
/// gives some callers their budget back early, where refusing newcomers
/// would be an outage anyone with enough ids could cause.
const MAX_BUCKETS: usize = 100_000;

/// Theoretical arrival times by bucket, µs on this process's monotonic
/// clock (a wall clock stepping back would refill every budget).
pub(super) struct Budgets {
    start: Instant,
    tats: Mutex<HashMap<String, u64>>,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl Budgets {
    fn now_us(&self) -> u64 {
        // Never 0, which stands for a fresh bucket.
        u64::try_from(self.start.elapsed().as_micros())
            .unwrap_or(u64::MAX / 2)
            .saturating_add(1)
    }

    fn take(&self, bucket: &str, budget: Gcra, max: usize) -> RateVerdict {
        let now = self.now_us();
        // A poisoned lock still holds consistent integers: carry on.
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if tats.len() >= max && !tats.contains_key(bucket) {
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= max {
                tats.clear();
            }
        }
        let tat = tats.get(bucket).copied().unwrap_or(0);
        let (verdict, next) = budget.step(tat, now);
        if verdict.allowed {
            tats.insert(bucket.to_owned(), next);
        }
        verdict
    }
}

#[async_trait]
impl RateLimitStore for EmbeddedStore {
    async fn take(&self, bucket: &str, budget: Gcra) -> Result<RateVerdict, StoreError> {
        // A map lookup under a mutex: no need for the blocking pool.
        Ok(self.budgets.take(bucket, budget, MAX_BUCKETS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_is_swept_then_cleared() {
        let b = Budgets::default();
        let g = Gcra::new(1, 3600);
        for id in ["a", "b", "c"] {
            assert!(b.take(id, g, 3).allowed);
        }
        // Every bucket is mid-window: a newcomer clears the map and fits.
        assert!(b.take("d", g, 3).allowed);
        assert_eq!(b.tats.lock().unwrap().len(), 1);
        // "a" was forgotten with the rest: its budget is whole again.
        assert!(b.take("a", g, 3).allowed);
        assert!(!b.take("a", g, 3).allowed, "and then spent");
    }
}

//! Per-application request budgets at the edge (docs/api.md, "At the edge"): GCRA, shared
//! through Redis by every gateway on it, in process on the embedded store.
//!
//! A budget of `requests` per window lets a whole budget through at once
//! and then one request every window/requests; what is left and when it is
//! whole again are reported as draft-ietf-httpapi-ratelimit-headers has
//! them (`RateLimit-Policy`, `RateLimit`).

use super::Gateway;
use crate::domain::{DomainError, RateLimit};
use crate::store::Gcra;

/// What one request's check decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Whether the request fits the budget.
    pub allowed: bool,
    /// The budget applied (the application's, or the gateway's default).
    pub limit: RateLimit,
    /// Requests left in the budget now.
    pub remaining: u32,
    /// Seconds until the whole budget is available again.
    pub reset_secs: u64,
    /// Seconds until one more request fits (0 when allowed).
    pub retry_after_secs: u64,
}

/// Whole seconds, rounded up: a client told to wait must not come back a
/// moment too early.
fn ceil_secs(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// Takes one request from the budget of `bucket` (an application or user
/// id): the application's own limit `own`, else the gateway's default.
/// `None` when no budget applies.
///
/// A store that cannot answer refuses the request (503 `unavailable`)
/// rather than letting it through: an operator set the limit to protect a
/// service, and an outage of the store must not lift that protection for
/// every caller at once.
pub async fn take(
    gw: &Gateway,
    bucket: &str,
    own: Option<&RateLimit>,
) -> Result<Option<Decision>, DomainError> {
    let Some(limit) = own.or(gw.policy.rate_limit.as_ref()).copied() else {
        return Ok(None);
    };
    let budget = Gcra::new(limit.requests, limit.window_secs());
    let verdict = gw.rate_limits.take(bucket, budget).await?;
    Ok(Some(Decision {
        allowed: verdict.allowed,
        limit,
        remaining: u32::try_from(verdict.remaining)
            .unwrap_or(u32::MAX)
            .min(limit.requests),
        reset_secs: ceil_secs(verdict.reset_us),
        retry_after_secs: if verdict.allowed {
            0
        } else {
            ceil_secs(verdict.retry_after_us).max(1)
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_budget_then_one_per_interval() {
        let g = Gcra::new(5, 5);
        assert_eq!(g.interval_us, 1_000_000);
        let t0 = 1_000;
        let mut tat = 0;
        for left in (0..5).rev() {
            let (v, next) = g.step(tat, t0);
            assert!(v.allowed);
            assert_eq!(v.remaining, left);
            tat = next;
        }
        assert_eq!(tat - t0, 5_000_000, "whole again in one window");
        let (v, same) = g.step(tat, t0);
        assert!(!v.allowed);
        assert_eq!(same, tat, "a refusal takes nothing");
        assert_eq!(v.retry_after_us, 1_000_000);
        assert_eq!(v.reset_us, 5_000_000);
        // One interval later, exactly one more fits.
        let (v, tat2) = g.step(tat, t0 + 1_000_000);
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
        assert!(!g.step(tat2, t0 + 1_000_000).0.allowed);
    }

    #[test]
    fn an_uneven_window_still_lets_exactly_the_budget_through() {
        for (n, w) in [(7, 60), (3, 10), (999_999, 1), (1_000_000, 86_400), (1, 1)] {
            let g = Gcra::new(n, w);
            let mut tat = 0;
            let now = 42;
            for _ in 0..n {
                let (v, next) = g.step(tat, now);
                assert!(v.allowed, "{n}/{w}");
                tat = next;
            }
            assert!(!g.step(tat, now).0.allowed, "{n}/{w}");
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(1_000_000), 1);
        assert_eq!(ceil_secs(1_000_001), 2);
    }
}

//! Request budgets (docs/api.md, "At the edge") in the Redis store: `rl:{bucket}` holds the
//! bucket's theoretical arrival time (µs since the epoch, Redis's clock)
//! and expires when the budget is whole again. One script does the whole
//! GCRA step, reading the clock with `TIME` itself, so every gateway on
//! this Redis shares one budget and one clock, whatever their own clocks
//! say.

use std::sync::LazyLock;

use async_trait::async_trait;

use super::{RedisStore, bounded, unavailable};
use crate::store::{Gcra, RateLimitStore, RateVerdict, StoreError};

/// KEYS: bucket. ARGV: emission interval µs, burst window µs (see
/// [`Gcra`]; the same arithmetic as `Gcra::step`). Returns `{allowed (0 or
/// 1), remaining, reset µs, retry-after µs}`. Every value stays below 2^53,
/// exact in Lua's doubles.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > window then
  return {0, 0, tat - now, nxt - window - now}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000))
return {1, math.floor((window - (nxt - now)) / interval), nxt - now, 0}",
    )
});

impl RedisStore {
    fn rate_key(&self, bucket: &str) -> String {
        self.key(&format!("rl:{bucket}"))
    }
}

#[async_trait]
impl RateLimitStore for RedisStore {
    async fn take(&self, bucket: &str, budget: Gcra) -> Result<RateVerdict, StoreError> {
        let key = self.rate_key(bucket);
        bounded(async {
            let mut c = self.conn().await?;
            let v: Vec<i64> = TAKE
                .key(&key)
                .arg(budget.interval_us)
                .arg(budget.window_us)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            let [allowed, remaining, reset, retry] = v[..] else {
                return Err(StoreError::Unavailable(
                    "unexpected answer from the rate-limit script".into(),
                ));
            };
            let n = |x: i64| u64::try_from(x).unwrap_or(0);
            Ok(RateVerdict {
                allowed: allowed == 1,
                remaining: n(remaining),
                reset_us: n(reset),
                retry_after_us: n(retry),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands;

    use super::super::test_server::RedisServer;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bucket_lives_until_its_budget_is_whole_and_prefixes_do_not_share() {
        let redis = RedisServer::start();
        let a = RedisStore::connect(&redis.url(), "rla:").await.unwrap();
        let a2 = RedisStore::connect(&redis.url(), "rla:").await.unwrap();
        let b = RedisStore::connect(&redis.url(), "rlb:").await.unwrap();
        let budget = Gcra::new(2, 10);
        assert!(a.take("app_x", budget).await.unwrap().allowed);
        let second = a2.take("app_x", budget).await.unwrap();
        assert!(second.allowed, "one budget through two connections");
        assert_eq!(second.remaining, 0);
        assert!(!a.take("app_x", budget).await.unwrap().allowed);
        assert!(
            b.take("app_x", budget).await.unwrap().allowed,
            "another prefix, another budget"
        );
        let mut c = a.conn().await.unwrap();
        let pttl: i64 = c.pttl("rla:rl:app_x").await.unwrap();
        assert!(
            pttl > 9_000 && pttl <= 10_000,
            "expires when the budget is whole again: {pttl}"
        );
    }
}

//! Device authorization requests (RFC 8628) in the Redis store.
//!
//! `device:{sha256 of the device code}` is a hash: `rec` (the
//! [`DeviceRequest`] as JSON, as inserted), `client`, `state` (`pending`,
//! `approved`, `denied`, `consumed`), `user` and `sid` once approved,
//! `exp_us`, `last_us` (the last poll) and `interval` (seconds); it expires
//! [`DEVICE_MEMORY_SECS`] after the request. `device_uc:{sha256 of the
//! user code}` names it until the request expires. Every decision is one
//! Lua script, so gateways racing on one request see one order.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RedisStore, bounded, unavailable};
use crate::store::common::{Record, decode, encode};
use crate::store::{
    DEVICE_MEMORY_SECS, DEVICE_SLOW_DOWN_SECS, DeviceDecision, DevicePoll, DeviceRequest,
    DeviceStore, Entity, StoreError,
};

impl Record for DeviceRequest {
    const KIND: &'static str = "device request";
}

/// KEYS: request, user code. ARGV: record, client, exp µs, forget ms,
/// interval, device hash, exp ms, prefix, now µs. Returns 1; 0 when a live
/// request holds the user code; -1 when the device hash exists.
static INSERT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local holder = redis.call('GET', KEYS[2])
if holder then
  local e = redis.call('HGET', ARGV[8] .. 'device:' .. holder, 'exp_us')
  if e and tonumber(e) > tonumber(ARGV[9]) then return 0 end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'client', ARGV[2], 'state', 'pending',
  'exp_us', ARGV[3], 'interval', ARGV[5], 'last_us', '')
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[6])
redis.call('PEXPIREAT', KEYS[2], ARGV[7])
return 1",
    )
});

/// KEYS: user code. ARGV: prefix, now µs, new state, user, session.
/// Returns 1 when the pending, unexpired request was decided, else 0.
static DECIDE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local h = redis.call('GET', KEYS[1])
if not h then return 0 end
local k = ARGV[1] .. 'device:' .. h
local v = redis.call('HMGET', k, 'state', 'exp_us')
if v[1] ~= 'pending' then return 0 end
if tonumber(ARGV[2]) >= tonumber(v[2]) then return 0 end
redis.call('HSET', k, 'state', ARGV[3], 'user', ARGV[4], 'sid', ARGV[5])
return 1",
    )
});

/// KEYS: request. ARGV: client, now µs, slow-down seconds. Follows
/// `DeviceStore::poll_device`: `{'unknown'}`, `{'expired'}`, `{'denied'}`,
/// `{'pending'}`, `{'slow_down', interval}` or `{'approved', rec, user,
/// session}`.
static POLL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'rec', 'client', 'state', 'exp_us', 'last_us',
  'interval', 'user', 'sid')
if not v[1] then return {'unknown'} end
if v[2] ~= ARGV[1] or v[3] == 'consumed' then return {'unknown'} end
local now = tonumber(ARGV[2])
if now >= tonumber(v[4]) then return {'expired'} end
if v[3] == 'denied' then return {'denied'} end
if v[3] == 'approved' then
  redis.call('HSET', KEYS[1], 'state', 'consumed')
  return {'approved', v[1], v[7], v[8]}
end
local interval = tonumber(v[6])
redis.call('HSET', KEYS[1], 'last_us', ARGV[2])
if v[5] and v[5] ~= '' and now - tonumber(v[5]) < interval * 1000000 then
  interval = interval + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'interval', interval)
  return {'slow_down', string.format('%d', interval)}
end
return {'pending'}",
    )
});

impl RedisStore {
    fn device_key(&self, hash: &str) -> String {
        self.key(&format!("device:{hash}"))
    }

    fn device_code_key(&self, user_code_hash: &str) -> String {
        self.key(&format!("device_uc:{user_code_hash}"))
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn unexpected() -> StoreError {
    StoreError::Unavailable("unexpected answer from the device script".into())
}

#[async_trait]
impl DeviceStore for RedisStore {
    async fn insert_device(
        &self,
        device_hash: &str,
        request: &DeviceRequest,
    ) -> Result<(), StoreError> {
        let rec = encode(request)?;
        let forget_ms = request
            .expires_at
            .timestamp_millis()
            .saturating_add(DEVICE_MEMORY_SECS.saturating_mul(1000));
        let (key, uc) = (
            self.device_key(device_hash),
            self.device_code_key(&request.user_code_hash),
        );
        let answer: i64 = bounded(async {
            let mut c = self.conn().await?;
            INSERT
                .key(&key)
                .key(&uc)
                .arg(&rec)
                .arg(&request.client_id)
                .arg(micros(request.expires_at))
                .arg(forget_ms)
                .arg(request.interval_secs)
                .arg(device_hash)
                .arg(request.expires_at.timestamp_millis())
                .arg(&self.prefix)
                .arg(micros(Utc::now()))
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match answer {
            1 => Ok(()),
            // Never shown: the service draws another code.
            0 | -1 => Err(StoreError::Conflict {
                what: Entity::Session,
                id: "device code".into(),
            }),
            _ => Err(unexpected()),
        }
    }

    async fn find_device(
        &self,
        user_code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceRequest>, StoreError> {
        let uc = self.device_code_key(user_code_hash);
        let fields: Vec<Option<String>> = bounded(async {
            let mut c = self.conn().await?;
            let hash: Option<String> = redis::cmd("GET")
                .arg(&uc)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let Some(hash) = hash else {
                return Ok(Vec::new());
            };
            redis::cmd("HMGET")
                .arg(self.device_key(&hash))
                .arg("rec")
                .arg("state")
                .query_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match fields.as_slice() {
            [Some(rec), Some(state)] if state == "pending" => {
                let r: DeviceRequest = decode(rec.as_bytes())?;
                Ok((now < r.expires_at).then_some(r))
            }
            _ => Ok(None),
        }
    }

    async fn decide_device(
        &self,
        user_code_hash: &str,
        decision: &DeviceDecision,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let uc = self.device_code_key(user_code_hash);
        let (state, user, sid) = match decision {
            DeviceDecision::Approve {
                user_id,
                session_id,
            } => ("approved", user_id.as_str(), session_id.as_str()),
            DeviceDecision::Deny => ("denied", "", ""),
        };
        let done: i64 = bounded(async {
            let mut c = self.conn().await?;
            DECIDE
                .key(&uc)
                .arg(&self.prefix)
                .arg(micros(now))
                .arg(state)
                .arg(user)
                .arg(sid)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        Ok(done == 1)
    }

    async fn poll_device(
        &self,
        device_hash: &str,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DevicePoll, StoreError> {
        let key = self.device_key(device_hash);
        let answer: Vec<String> = bounded(async {
            let mut c = self.conn().await?;
            POLL.key(&key)
                .arg(client_id)
                .arg(micros(now))
                .arg(DEVICE_SLOW_DOWN_SECS)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match answer.as_slice() {
            [w] if w == "unknown" => Ok(DevicePoll::Unknown),
            [w] if w == "expired" => Ok(DevicePoll::Expired),
            [w] if w == "denied" => Ok(DevicePoll::Denied),
            [w] if w == "pending" => Ok(DevicePoll::Pending),
            [w, n] if w == "slow_down" => Ok(DevicePoll::SlowDown {
                interval_secs: n.parse().map_err(|_| unexpected())?,
            }),
            [w, rec, user, sid] if w == "approved" => Ok(DevicePoll::Approved {
                request: decode(rec.as_bytes())?,
                user_id: user.clone(),
                session_id: sid.clone(),
            }),
            _ => Err(unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_server::RedisServer;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_device_requests_pass_the_conformance_suite() {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&redis.url(), "dev:").await.unwrap();
        crate::store::conformance::devices(&store).await;
    }
}

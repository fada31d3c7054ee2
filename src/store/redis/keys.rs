//! The signing-key ring in the Redis store: `signing:keys` (a hash, `kid` →
//! a `StoredKey` as JSON) and `signing:version` (a counter, absent for 0).
//! A swap is one script that also publishes `ChangeEvent::Keys`, so every
//! gateway following the channel reads the ring again.

use async_trait::async_trait;

use super::{RedisStore, bounded, unavailable};
use crate::store::common::{decode, encode};
use crate::store::{KeyStore, StoreError, StoredKey, StoredRing};

// KEYS: the keys hash, the version, the channel. ARGV: the expected version,
// the number n of upserts, then n pairs (kid, JSON), then the kids to remove.
// Returns the new version, or 0 when the ring is no longer at the expected
// one (nothing written, nothing published). Versions are compared as the
// strings INCR writes, so no precision is lost to Lua's numbers.
const SWAP: &str = r#"
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[3 + 2 * i], ARGV[4 + 2 * i])
end
for i = 3 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], '{"kind":"keys"}')
return v"#;

#[async_trait]
impl KeyStore for RedisStore {
    async fn load_keys(&self) -> Result<StoredRing, StoreError> {
        let (hash, counter) = (self.key("signing:keys"), self.key("signing:version"));
        bounded(async {
            let mut c = self.conn().await?;
            // MULTI/EXEC: no swap can land between the two reads, so the
            // keys are those of the version read with them.
            let (version, values): (Option<u64>, Vec<String>) = redis::pipe()
                .atomic()
                .get(&counter)
                .hvals(&hash)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let keys = values
                .iter()
                .map(|v| decode::<StoredKey>(v.as_bytes()))
                .collect::<Result<_, _>>()?;
            Ok(StoredRing {
                version: version.unwrap_or(0),
                keys,
            })
        })
        .await
    }

    async fn swap_keys(
        &self,
        version: u64,
        upsert: &[StoredKey],
        remove: &[String],
    ) -> Result<Option<u64>, StoreError> {
        let script = redis::Script::new(SWAP);
        let mut call = script.prepare_invoke();
        call.key(self.key("signing:keys"))
            .key(self.key("signing:version"))
            .key(self.channel())
            .arg(version)
            .arg(upsert.len());
        for k in upsert {
            call.arg(&k.kid).arg(encode(k)?);
        }
        for kid in remove {
            call.arg(kid);
        }
        bounded(async {
            let mut c = self.conn().await?;
            let next: u64 = call.invoke_async(&mut c).await.map_err(unavailable)?;
            // INCR starts at 1: 0 is only ever the refusal.
            Ok((next != 0).then_some(next))
        })
        .await
    }
}

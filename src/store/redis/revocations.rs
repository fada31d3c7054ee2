//! Revocations in the Redis store: entries by feed position (`rev:entries`,
//! `rev:order`), indexes by `jti`, by subject and by session (`rev:sid:…`)
//! that expire with what they cover, and the feed's position, floor and
//! epoch.

use async_trait::async_trait;
use redis::AsyncCommands;
use serde_json::json;

use super::{Connection, RedisStore, bounded, hmget, unavailable};
use crate::domain::{Revocation, RevocationKind, TokenRef};
use crate::store::common::{SnapshotPager, decode, increments};
use crate::store::{FeedPage, FeedPosition, RevocationStore, Revoked, StoreError};

// KEYS: seq, entries, order, index key, channel. ARGV: entry JSON without
// `seq` (its closing brace removed), expires_at, kind ('jti'|'sub'|'sid'|'kid'),
// not_before_ms. Returns {appended (0|1), entry JSON}. An entry already
// covering this one (`store::already_covered`) is returned as it is: nothing
// appended, nothing published. The index of a jti or a session holds the
// position of its latest entry; that of a subject holds
// `{not-before}:{position}` (older data holds only the instant). The event is
// a `ChangeEvent::Revocation` written by concatenation (the position is only
// known here); `domain::change` tests that exact shape.
const REVOKE: &str = r#"
local exat = tonumber(ARGV[2])
local old = redis.call('GET', KEYS[4])
local old_seq, old_nb = nil, nil
if old then
  if ARGV[3] == 'sub' then
    local nb, s = string.match(old, '^(-?%d+):(%d+)$')
    if nb then old_nb, old_seq = tonumber(nb), s else old_nb = tonumber(old) end
  else
    old_seq = old
  end
end
if old_seq and (ARGV[3] ~= 'sub' or old_nb >= tonumber(ARGV[4])) then
  local existing = redis.call('HGET', KEYS[2], old_seq)
  if existing and tonumber(cjson.decode(existing)['expiresAt']) >= exat then
    return {0, existing}
  end
end
local seq = redis.call('INCR', KEYS[1])
local entry = ARGV[1] .. ',"seq":' .. seq .. '}'
redis.call('HSET', KEYS[2], seq, entry)
redis.call('ZADD', KEYS[3], seq, seq)
if ARGV[3] ~= 'sub' then
  redis.call('SET', KEYS[4], seq, 'EXAT', exat)
elseif (not old_nb) or old_nb <= tonumber(ARGV[4]) then
  redis.call('SET', KEYS[4], ARGV[4] .. ':' .. seq, 'EXAT', exat)
end
redis.call('PUBLISH', KEYS[5], '{"kind":"revocation","entry":' .. entry .. '}')
return {1, entry}"#;

// KEYS: one index key. ARGV: the values that point at a retired entry.
const DELETE_IF_ONE_OF: &str = r"
local v = redis.call('GET', KEYS[1])
for _, a in ipairs(ARGV) do
  if v == a then redis.call('DEL', KEYS[1]) return 1 end
end
return 0";

const RAISE_FLOOR: &str = r"
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if old < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1";

/// The entry as JSON without its position: the script appends `"seq"` and
/// the closing brace.
fn kind_json(kind: &RevocationKind, expires_at: i64) -> Result<String, StoreError> {
    let mut v = serde_json::to_value(kind)
        .map_err(|e| StoreError::Corrupt(format!("revocation entry: {:?}", e.classify())))?;
    v["expiresAt"] = json!(expires_at);
    let s = v.to_string();
    Ok(s.strip_suffix('}').unwrap_or(&s).to_owned())
}

/// The not-before instant a subject index value holds (`{instant}` or
/// `{instant}:{position}`).
fn index_instant(v: &str) -> Option<i64> {
    v.split(':').next()?.parse().ok()
}

impl RedisStore {
    /// Creates the feed's epoch once (a random id, so a reader's cursor from
    /// another store is recognised); kept when it exists.
    pub(super) async fn init_feed_epoch(&self) -> Result<(), StoreError> {
        let epoch = crate::crypto::random::base62(12).map_err(unavailable)?;
        let key = self.key("rev:epoch");
        bounded(async {
            let mut c = self.conn().await?;
            let _: bool = c.set_nx(key, epoch).await.map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    fn jti_key(&self, jti: &str) -> String {
        self.key(&format!("rev:jti:{jti}"))
    }

    fn subject_key(&self, sub: &str) -> String {
        self.key(&format!("rev:sub:{sub}"))
    }

    fn revoked_session_key(&self, sid: &str) -> String {
        self.key(&format!("rev:sid:{sid}"))
    }

    fn revoked_kid_key(&self, kid: &str) -> String {
        self.key(&format!("rev:kid:{kid}"))
    }
}

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, kind: RevocationKind, expires_at: i64) -> Result<Revoked, StoreError> {
        let (index, tag, nb) = match &kind {
            RevocationKind::Jti { jti } => (self.jti_key(jti), "jti", 0),
            RevocationKind::Subject { sub, not_before_ms } => {
                (self.subject_key(sub), "sub", *not_before_ms)
            }
            RevocationKind::Session { sid } => (self.revoked_session_key(sid), "sid", 0),
            RevocationKind::Key { kid } => (self.revoked_kid_key(kid), "kid", 0),
        };
        let body = kind_json(&kind, expires_at)?;
        bounded(async {
            let mut c = self.conn().await?;
            let (appended, entry): (i64, String) = redis::Script::new(REVOKE)
                .key(self.key("rev:seq"))
                .key(self.key("rev:entries"))
                .key(self.key("rev:order"))
                .key(&index)
                .key(self.channel())
                .arg(&body)
                .arg(expires_at)
                .arg(tag)
                .arg(nb)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            Ok(Revoked {
                entry: decode(entry.as_bytes())?,
                appended: appended == 1,
            })
        })
        .await
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        let (jti_key, sub_key) = (self.jti_key(token.jti), self.subject_key(token.sub));
        let sid_key = token.sid.map(|sid| self.revoked_session_key(sid));
        let client_key = token.client.map(|c| self.subject_key(c));
        let issued_ms = token.issued_ms;
        bounded(async {
            let mut c = self.conn().await?;
            // One round trip: the jti and subject indexes, and the session's
            // and the client's when the token has them.
            let mut p = redis::pipe();
            // A key never written stands in for one the token lacks.
            let absent = self.key("rev:absent");
            p.get(&jti_key)
                .get(&sub_key)
                .get(client_key.as_deref().unwrap_or(&absent));
            p.exists(sid_key.as_deref().unwrap_or(&absent));
            let (j, s, cl, ses): (Option<String>, Option<String>, Option<String>, bool) =
                p.query_async(&mut c).await.map_err(unavailable)?;
            let (cl, ses) = (
                cl.filter(|_| client_key.is_some()),
                ses && sid_key.is_some(),
            );
            let covers = |v: Option<&str>| -> Result<bool, StoreError> {
                match v {
                    Some(v) => {
                        let nb = index_instant(v)
                            .ok_or_else(|| StoreError::Corrupt(format!("subject index {v:?}")))?;
                        Ok(issued_ms < nb)
                    }
                    None => Ok(false),
                }
            };
            Ok(j.is_some() || ses || covers(s.as_deref())? || covers(cl.as_deref())?)
        })
        .await
    }

    async fn feed(&self, cursor: Option<&str>, limit: usize) -> Result<FeedPage, StoreError> {
        let cursor = cursor.map(str::to_owned);
        let limit = limit.max(1);
        bounded(async {
            let mut c = self.conn().await?;
            let (epoch, current, floor): (Option<String>, Option<u64>, Option<u64>) = redis::pipe()
                .get(self.key("rev:epoch"))
                .get(self.key("rev:seq"))
                .get(self.key("rev:floor"))
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let (epoch, current, floor) = (
                epoch.unwrap_or_default(),
                current.unwrap_or(0),
                floor.unwrap_or(0),
            );
            let (position, reset) =
                FeedPosition::resolve(cursor.as_deref(), &epoch, current, floor);
            let order = self.key("rev:order");
            let entries_key = self.key("rev:entries");
            match position {
                FeedPosition::After(since) => {
                    // One more than asked: tells whether entries remain.
                    let seqs = positions_after(&mut c, &order, since, "+inf", limit + 1).await?;
                    let entries = entries_at(&mut c, &entries_key, &seqs).await?;
                    Ok(increments(entries, since, limit, &epoch))
                }
                FeedPosition::Snapshot { after, upto } => {
                    // Every position up to `upto` was stored with its entry
                    // in one script, before `rev:seq` said so.
                    let chunk = (limit + 1).clamp(64, 1024);
                    let upto_s = upto.to_string();
                    let mut pager = SnapshotPager::new(after, upto, limit);
                    let mut from = after;
                    'scan: loop {
                        let seqs = positions_after(&mut c, &order, from, &upto_s, chunk).await?;
                        for rev in entries_at(&mut c, &entries_key, &seqs).await? {
                            if !pager.offer(rev) {
                                break 'scan;
                            }
                        }
                        let Some(&last) = seqs.last() else { break };
                        pager.passed(last);
                        if seqs.len() < chunk {
                            break;
                        }
                        from = last;
                    }
                    let later = !pager.is_full()
                        && !positions_after(&mut c, &order, upto, "+inf", 1)
                            .await?
                            .is_empty();
                    Ok(pager.finish(&epoch, reset, later))
                }
            }
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        let entries_key = self.key("rev:entries");
        let order = self.key("rev:order");
        bounded(async {
            let mut c = self.conn().await?;
            let seqs: Vec<u64> = c.zrange(&order, 0, -1).await.map_err(unavailable)?;
            let all = entries_at(&mut c, &entries_key, &seqs).await?;
            let retired: Vec<&Revocation> = all.iter().filter(|r| r.expires_at <= now).collect();
            let expired: Vec<u64> = retired.iter().map(|r| r.seq).collect();
            let Some(max) = expired.iter().max().copied() else {
                return Ok(0);
            };
            // Index keys also expire by themselves (EXAT); this removes them
            // at once when they still point at a retired entry.
            for r in &retired {
                let (key, values) = match &r.kind {
                    RevocationKind::Jti { jti } => (self.jti_key(jti), vec![r.seq.to_string()]),
                    RevocationKind::Session { sid } => {
                        (self.revoked_session_key(sid), vec![r.seq.to_string()])
                    }
                    RevocationKind::Key { kid } => {
                        (self.revoked_kid_key(kid), vec![r.seq.to_string()])
                    }
                    RevocationKind::Subject { sub, not_before_ms } => (
                        self.subject_key(sub),
                        vec![
                            format!("{not_before_ms}:{}", r.seq),
                            not_before_ms.to_string(),
                        ],
                    ),
                };
                redis::Script::new(DELETE_IF_ONE_OF)
                    .key(&key)
                    .arg(&values)
                    .invoke_async::<i64>(&mut c)
                    .await
                    .map_err(unavailable)?;
            }
            let mut p = redis::pipe();
            p.atomic()
                .hdel(&entries_key, &expired)
                .ignore()
                .zrem(&order, &expired)
                .ignore();
            p.query_async::<()>(&mut c).await.map_err(unavailable)?;
            redis::Script::new(RAISE_FLOOR)
                .key(self.key("rev:floor"))
                .arg(max)
                .invoke_async::<i64>(&mut c)
                .await
                .map_err(unavailable)?;
            Ok(expired.len())
        })
        .await
    }
}

/// Up to `count` feed positions after `after` (exclusive) and up to `upto`
/// (inclusive, or `+inf`), in order.
async fn positions_after(
    c: &mut Connection,
    order: &str,
    after: u64,
    upto: &str,
    count: usize,
) -> Result<Vec<u64>, StoreError> {
    redis::cmd("ZRANGE")
        .arg(order)
        .arg(format!("({after}"))
        .arg(upto)
        .arg("BYSCORE")
        .arg("LIMIT")
        .arg(0)
        .arg(count)
        .query_async(c)
        .await
        .map_err(unavailable)
}

/// The entries at these positions, in order; purged ones are skipped.
async fn entries_at(
    c: &mut Connection,
    key: &str,
    seqs: &[u64],
) -> Result<Vec<Revocation>, StoreError> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    hmget(c, key, seqs).await
}

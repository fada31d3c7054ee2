//! People's sessions, authorization codes and refresh-token families in the
//! Redis store (docs/api.md, "People"); the key layout is in the parent module.
//!
//! Each record is a hash: the JSON written at insert (`rec`) beside the few
//! fields that change later, as text (what the record reports) and as
//! microseconds (what the scripts compare). Scripts never re-encode JSON, so
//! what serde wrote is what serde reads. Everything that reads, decides and
//! writes (spending a code, rotating a token, touching a session) is one Lua
//! script: gateways racing on one record see one order. Scripts that start
//! from one record derive the keys it names (`user_sessions:{user}`,
//! `rtf:{family}`, `session:{id}`) from the prefix, as a single-node Redis
//! allows.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use redis::AsyncCommands;

use super::{RedisStore, bounded, unavailable};
use crate::domain::session::{
    AuthCode, CodeUse, RefreshFamily, RefreshUse, Session, StoredSession,
};
use crate::store::common::{decode, encode};
use crate::store::{Entity, SPENT_CODE_MEMORY_SECS, SessionStore, SsoLogin, StoreError};

/// KEYS: session, user's set. ARGV: record, user, seen, seen µs, retain,
/// retain µs, retain ms, session id, `auth_time` ms. Returns 1, or 0 if the
/// id exists. The user's set lives as long as its longest-lived session.
static INSERT_SESSION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'user', ARGV[2], 'seen', ARGV[3],
  'seen_us', ARGV[4], 'retain', ARGV[5], 'retain_us', ARGV[6])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[9], ARGV[8])
local t = redis.call('PEXPIRETIME', KEYS[2])
if t == -1 or t < tonumber(ARGV[7]) then redis.call('PEXPIREAT', KEYS[2], ARGV[7]) end
return 1",
    )
});

/// KEYS: session. ARGV: prefix, seen, seen µs, retain, retain µs, retain ms.
/// Moves `seen` and `retain` forward only (and the expiry of the session and
/// of its user's set with `retain`). Returns 1, or 0 if absent.
static TOUCH_SESSION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local cur = redis.call('HMGET', KEYS[1], 'seen_us', 'retain_us', 'user')
if not cur[1] then return 0 end
if tonumber(ARGV[3]) > tonumber(cur[1]) then
  redis.call('HSET', KEYS[1], 'seen', ARGV[2], 'seen_us', ARGV[3])
end
if tonumber(ARGV[5]) > tonumber(cur[2]) then
  redis.call('HSET', KEYS[1], 'retain', ARGV[4], 'retain_us', ARGV[5])
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  local set = ARGV[1] .. 'user_sessions:' .. cur[3]
  local t = redis.call('PEXPIRETIME', set)
  if t == -1 or (t >= 0 and t < tonumber(ARGV[6])) then
    redis.call('PEXPIREAT', set, ARGV[6])
  end
end
return 1",
    )
});

/// KEYS: session. ARGV: prefix, session id. Deletes it and its entry in its
/// user's set; returns `{rec, seen, retain}`, or nil if absent.
static DELETE_SESSION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'rec', 'seen', 'retain', 'user')
if not v[1] then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[1] .. 'user_sessions:' .. v[4], ARGV[2])
return {v[1], v[2], v[3]}",
    )
});

/// KEYS: user's set. ARGV: prefix. Deletes every session of the set and the
/// set; returns `rec, seen, retain` of each session that was there, oldest
/// first, flattened.
static DELETE_USER_SESSIONS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local k = ARGV[1] .. 'session:' .. id
  local v = redis.call('HMGET', k, 'rec', 'seen', 'retain')
  if v[1] then
    redis.call('DEL', k)
    table.insert(out, v[1])
    table.insert(out, v[2])
    table.insert(out, v[3])
  end
end
redis.call('DEL', KEYS[1])
return out",
    )
});

/// KEYS: user's set. ARGV: prefix, then session ids read as gone. Removes
/// those still gone (one inserted meanwhile keeps its entry).
static TRIM_USER_SESSIONS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 'session:' .. ARGV[i]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0",
    )
});

/// KEYS: code. ARGV: now µs. Returns `{'fresh', rec}` (and marks it
/// spent), `{'replayed', rec}`, or `{'unknown'}` (absent, forgotten, or
/// expired unspent).
static TAKE_CODE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'rec', 'spent', 'exp_us', 'forget_us')
if not v[1] then return {'unknown'} end
local now = tonumber(ARGV[1])
if now >= tonumber(v[4]) then return {'unknown'} end
if v[2] == '1' then return {'replayed', v[1]} end
if now >= tonumber(v[3]) then return {'unknown'} end
redis.call('HSET', KEYS[1], 'spent', '1')
return {'fresh', v[1]}",
    )
});

/// KEYS: token, next token. ARGV: prefix, now µs, now (text), grace µs,
/// idle µs. Follows `SessionStore::use_refresh`; returns `{'unknown'}`,
/// `{'ended'}`, or `{'rotated' | 'reused', family rec, last used (text)}`.
static USE_REFRESH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local tok = redis.call('HMGET', KEYS[1], 'fam', 'replaced_us')
if not tok[1] then return {'unknown'} end
local fk = ARGV[1] .. 'rtf:' .. tok[1]
local f = redis.call('HMGET', fk, 'rec', 'last', 'last_us', 'exp_us', 'exp_ms', 'revoked')
if not f[1] then return {'unknown'} end
local now = tonumber(ARGV[2])
if f[6] == '1' or now >= tonumber(f[4]) or now - tonumber(f[3]) > tonumber(ARGV[5]) then
  return {'ended'}
end
if tok[2] then
  if now - tonumber(tok[2]) >= tonumber(ARGV[4]) then
    redis.call('HSET', fk, 'revoked', '1')
    return {'reused', f[1], f[2]}
  end
else
  redis.call('HSET', KEYS[1], 'replaced_us', ARGV[2])
end
local last = f[2]
if now > tonumber(f[3]) then
  redis.call('HSET', fk, 'last', ARGV[3], 'last_us', ARGV[2])
  last = ARGV[3]
end
redis.call('HSET', KEYS[2], 'fam', tok[1])
redis.call('PEXPIREAT', KEYS[2], f[5])
return {'rotated', f[1], last}",
    )
});

/// An instant as the records write it (RFC 3339, exact to the nanosecond).
fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An instant read back from [`text`].
fn parse(s: &str, what: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("{what}: not an instant")))
}

/// Microseconds since the epoch: exact in a Lua number (below 2^53).
fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A duration in microseconds; an unrepresentable one is as long as can be.
fn duration_micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// A session from its stored JSON and its moving parts.
fn session_of(rec: &str, seen: &str, retain: &str) -> Result<StoredSession, StoreError> {
    let mut s: StoredSession = decode(rec.as_bytes())?;
    s.session.last_seen_at = parse(seen, "session last seen")?;
    s.session.retain_until = parse(retain, "session retained until")?;
    Ok(s)
}

/// A session from the `[rec, seen, retain]` an HMGET read, if all are there.
fn session_from_fields(v: &[Option<String>]) -> Result<Option<StoredSession>, StoreError> {
    match v {
        [Some(rec), Some(seen), Some(retain)] => session_of(rec, seen, retain).map(Some),
        _ => Ok(None),
    }
}

/// A family from its stored JSON and its moving parts.
fn family_of(rec: &str, last: &str, revoked: bool) -> Result<RefreshFamily, StoreError> {
    let mut f: RefreshFamily = decode(rec.as_bytes())?;
    f.last_used_at = parse(last, "refresh family last used")?;
    f.revoked = revoked;
    Ok(f)
}

fn live(s: StoredSession, now: DateTime<Utc>) -> Option<StoredSession> {
    (s.session.retain_until > now).then_some(s)
}

/// Sessions from flattened `rec, seen, retain` triples, live ones only.
fn sessions_of(flat: &[String], now: DateTime<Utc>) -> Result<Vec<Session>, StoreError> {
    let mut out = Vec::new();
    for t in flat.chunks_exact(3) {
        if let [rec, seen, retain] = t
            && let Some(s) = live(session_of(rec, seen, retain)?, now)
        {
            out.push(s.session);
        }
    }
    Ok(out)
}

/// A script's answer that matches none it gives.
fn unexpected(script: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected answer from the {script} script"))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn insert_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        let s = &session.session;
        let (key, set) = (self.session_key(&s.id), self.user_sessions_key(&s.user_id));
        let rec = encode(session)?;
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = INSERT_SESSION
                .key(&key)
                .key(&set)
                .arg(&rec)
                .arg(&s.user_id)
                .arg(text(s.last_seen_at))
                .arg(micros(s.last_seen_at))
                .arg(text(s.retain_until))
                .arg(micros(s.retain_until))
                .arg(s.retain_until.timestamp_millis())
                .arg(&s.id)
                .arg(s.auth_time.timestamp_millis())
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            if done == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict {
                    what: Entity::Session,
                    id: s.id.clone(),
                })
            }
        })
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let key = self.session_key(id);
        let fields: Vec<Option<String>> = bounded(async {
            let mut c = self.conn().await?;
            redis::cmd("HMGET")
                .arg(&key)
                .arg("rec")
                .arg("seen")
                .arg("retain")
                .query_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        // Redis expires the key at `retain_until`; the check covers the
        // millisecond it rounds to and clocks that disagree.
        Ok(session_from_fields(&fields)?.and_then(|s| live(s, Utc::now())))
    }

    async fn touch_session(
        &self,
        id: &str,
        seen: DateTime<Utc>,
        retain_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = self.session_key(id);
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = TOUCH_SESSION
                .key(&key)
                .arg(&self.prefix)
                .arg(text(seen))
                .arg(micros(seen))
                .arg(text(retain_until))
                .arg(micros(retain_until))
                .arg(retain_until.timestamp_millis())
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            Ok(done == 1)
        })
        .await
    }

    async fn list_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let set = self.user_sessions_key(user_id);
        bounded(async {
            let mut c = self.conn().await?;
            // By score (`auth_time`), then id: oldest first.
            let ids: Vec<String> = c.zrange(&set, 0, -1).await.map_err(unavailable)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut p = redis::pipe();
            for id in &ids {
                p.cmd("HMGET")
                    .arg(self.session_key(id))
                    .arg("rec")
                    .arg("seen")
                    .arg("retain");
            }
            let rows: Vec<Vec<Option<String>>> =
                p.query_async(&mut c).await.map_err(unavailable)?;
            let now = Utc::now();
            let mut out = Vec::new();
            let mut gone = Vec::new();
            for (id, row) in ids.iter().zip(&rows) {
                match session_from_fields(row)? {
                    Some(s) => {
                        if let Some(s) = live(s, now)
                            && s.session.user_id == user_id
                        {
                            out.push(s.session);
                        }
                    }
                    None => gone.push(id),
                }
            }
            if !gone.is_empty() {
                let () = TRIM_USER_SESSIONS
                    .key(&set)
                    .arg(&self.prefix)
                    .arg(&gone)
                    .invoke_async(&mut c)
                    .await
                    .map(|_: i64| ())
                    .map_err(unavailable)?;
            }
            Ok(out)
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let key = self.session_key(id);
        let fields: Option<Vec<String>> = bounded(async {
            let mut c = self.conn().await?;
            DELETE_SESSION
                .key(&key)
                .arg(&self.prefix)
                .arg(id)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match fields.as_deref() {
            None => Ok(None),
            Some(flat) if flat.len() == 3 => Ok(sessions_of(flat, Utc::now())?.into_iter().next()),
            Some(_) => Err(unexpected("session delete")),
        }
    }

    async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let set = self.user_sessions_key(user_id);
        let flat: Vec<String> = bounded(async {
            let mut c = self.conn().await?;
            DELETE_USER_SESSIONS
                .key(&set)
                .arg(&self.prefix)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        if flat.len() % 3 != 0 {
            return Err(unexpected("user sessions delete"));
        }
        sessions_of(&flat, Utc::now())
    }

    async fn put_code(&self, code_hash: &str, code: &AuthCode) -> Result<(), StoreError> {
        let key = self.code_key(code_hash);
        let rec = encode(code)?;
        let memory_us = SPENT_CODE_MEMORY_SECS.saturating_mul(1_000_000);
        let forget_us = micros(code.expires_at).saturating_add(memory_us);
        let forget_ms = code
            .expires_at
            .timestamp_millis()
            .saturating_add(SPENT_CODE_MEMORY_SECS.saturating_mul(1000));
        bounded(async {
            let mut c = self.conn().await?;
            let mut p = redis::pipe();
            p.atomic()
                .del(&key)
                .ignore()
                .cmd("HSET")
                .arg(&key)
                .arg("rec")
                .arg(&rec)
                .arg("spent")
                .arg("0")
                .arg("exp_us")
                .arg(micros(code.expires_at))
                .arg("forget_us")
                .arg(forget_us)
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&key)
                .arg(forget_ms)
                .ignore();
            p.query_async::<()>(&mut c).await.map_err(unavailable)
        })
        .await
    }

    async fn take_code(&self, code_hash: &str, now: DateTime<Utc>) -> Result<CodeUse, StoreError> {
        let key = self.code_key(code_hash);
        let answer: Vec<String> = bounded(async {
            let mut c = self.conn().await?;
            TAKE_CODE
                .key(&key)
                .arg(micros(now))
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match answer.as_slice() {
            [what] if what == "unknown" => Ok(CodeUse::Unknown),
            [what, rec] if what == "fresh" => Ok(CodeUse::Fresh(decode(rec.as_bytes())?)),
            [what, rec] if what == "replayed" => Ok(CodeUse::Replayed(decode(rec.as_bytes())?)),
            _ => Err(unexpected("code")),
        }
    }

    async fn insert_refresh(
        &self,
        family: &RefreshFamily,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        let (fam_key, tok_key) = (
            self.family_key(&family.id),
            self.refresh_token_key(token_hash),
        );
        let rec = encode(family)?;
        let exp_ms = family.expires_at.timestamp_millis();
        bounded(async {
            let mut c = self.conn().await?;
            let mut p = redis::pipe();
            p.atomic()
                .del(&fam_key)
                .ignore()
                .cmd("HSET")
                .arg(&fam_key)
                .arg("rec")
                .arg(&rec)
                .arg("last")
                .arg(text(family.last_used_at))
                .arg("last_us")
                .arg(micros(family.last_used_at))
                .arg("exp_us")
                .arg(micros(family.expires_at))
                .arg("exp_ms")
                .arg(exp_ms)
                .arg("revoked")
                .arg(if family.revoked { "1" } else { "0" })
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&fam_key)
                .arg(exp_ms)
                .ignore()
                .del(&tok_key)
                .ignore()
                .cmd("HSET")
                .arg(&tok_key)
                .arg("fam")
                .arg(&family.id)
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&tok_key)
                .arg(exp_ms)
                .ignore();
            p.query_async::<()>(&mut c).await.map_err(unavailable)
        })
        .await
    }

    async fn use_refresh(
        &self,
        token_hash: &str,
        next_hash: &str,
        now: DateTime<Utc>,
        grace: std::time::Duration,
        idle: std::time::Duration,
    ) -> Result<RefreshUse, StoreError> {
        let (key, next) = (
            self.refresh_token_key(token_hash),
            self.refresh_token_key(next_hash),
        );
        let answer: Vec<String> = bounded(async {
            let mut c = self.conn().await?;
            USE_REFRESH
                .key(&key)
                .key(&next)
                .arg(&self.prefix)
                .arg(micros(now))
                .arg(text(now))
                .arg(duration_micros(grace))
                .arg(duration_micros(idle))
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match answer.as_slice() {
            [what] if what == "unknown" => Ok(RefreshUse::Unknown),
            [what] if what == "ended" => Ok(RefreshUse::Ended),
            [what, rec, last] if what == "rotated" => {
                Ok(RefreshUse::Rotated(family_of(rec, last, false)?))
            }
            [what, rec, last] if what == "reused" => {
                Ok(RefreshUse::Reused(family_of(rec, last, true)?))
            }
            _ => Err(unexpected("refresh")),
        }
    }

    async fn get_refresh_family(&self, id: &str) -> Result<Option<RefreshFamily>, StoreError> {
        let key = self.family_key(id);
        let fields: Vec<Option<String>> = bounded(async {
            let mut c = self.conn().await?;
            redis::cmd("HMGET")
                .arg(&key)
                .arg("rec")
                .arg("last")
                .arg("revoked")
                .query_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        let family = match fields.as_slice() {
            [Some(rec), Some(last), Some(revoked)] => family_of(rec, last, revoked == "1")?,
            _ => return Ok(None),
        };
        Ok((family.expires_at > Utc::now()).then_some(family))
    }

    async fn find_refresh(&self, token_hash: &str) -> Result<Option<RefreshFamily>, StoreError> {
        let key = self.refresh_token_key(token_hash);
        let family: Option<String> = bounded(async {
            let mut c = self.conn().await?;
            redis::cmd("HGET")
                .arg(&key)
                .arg("fam")
                .query_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match family {
            Some(id) => self.get_refresh_family(&id).await,
            None => Ok(None),
        }
    }

    async fn purge_people(&self, _now: DateTime<Utc>) -> Result<usize, StoreError> {
        // Every key here carries its own expiry: Redis forgets them itself.
        Ok(0)
    }

    async fn put_sso_login(&self, state_hash: &str, login: &SsoLogin) -> Result<(), StoreError> {
        let key = self.key(&format!("sso:{state_hash}"));
        let body = encode(login)?;
        let ms = (login.expires_at - Utc::now()).num_milliseconds();
        if ms <= 0 {
            // Already lapsed: nothing to keep.
            return Ok(());
        }
        bounded(async {
            let mut c = self.conn().await?;
            redis::cmd("SET")
                .arg(&key)
                .arg(&body)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn take_sso_login(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SsoLogin>, StoreError> {
        let key = self.key(&format!("sso:{state_hash}"));
        // GETDEL is one command: of gateways racing on one state, exactly
        // one gets the record.
        let v: Option<String> = bounded(async {
            let mut c = self.conn().await?;
            redis::cmd("GETDEL")
                .arg(&key)
                .query_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        let login: Option<SsoLogin> = v.map(|v| decode(v.as_bytes())).transpose()?;
        Ok(login.filter(|l| l.expires_at > now))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::super::test_server::RedisServer;
    use super::*;

    fn session(id: &str, retain: DateTime<Utc>) -> StoredSession {
        StoredSession {
            session: Session {
                id: id.into(),
                user_id: "usr_ttl".into(),
                client_id: "tessera-console".into(),
                auth_time: Utc::now(),
                amr: vec![],
                idp: None,
                last_seen_at: Utc::now(),
                expires_at: retain,
                retain_until: retain,
                ip: "192.0.2.1".into(),
                user_agent: String::new(),
            },
            secret_hash: "00".into(),
        }
    }

    async fn expiry(c: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
        redis::cmd("PEXPIRETIME")
            .arg(key)
            .query_async(c)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_key_expires_with_what_it_holds() {
        let redis = RedisServer::start();
        let store = RedisStore::connect(&redis.url(), "ttl:").await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let now = Utc::now();
        let (hour, two) = (now + Duration::hours(1), now + Duration::hours(2));

        store
            .insert_session(&session("ses_t1", hour))
            .await
            .unwrap();
        store
            .insert_session(&session("ses_t2", now + Duration::minutes(1)))
            .await
            .unwrap();
        let set = "ttl:user_sessions:usr_ttl";
        assert_eq!(
            expiry(&mut c, "ttl:session:ses_t1").await,
            hour.timestamp_millis()
        );
        assert_eq!(expiry(&mut c, set).await, hour.timestamp_millis());
        store.touch_session("ses_t2", now, two).await.unwrap();
        assert_eq!(
            expiry(&mut c, "ttl:session:ses_t2").await,
            two.timestamp_millis()
        );
        assert_eq!(expiry(&mut c, set).await, two.timestamp_millis());
        // A shorter retention moves neither back.
        store.touch_session("ses_t2", now, hour).await.unwrap();
        assert_eq!(
            expiry(&mut c, "ttl:session:ses_t2").await,
            two.timestamp_millis()
        );
        assert_eq!(expiry(&mut c, set).await, two.timestamp_millis());
        // An empty `amr` survives the scripts (they never re-encode JSON).
        let got = store.get_session("ses_t2").await.unwrap().unwrap();
        assert!(got.session.amr.is_empty());

        // A session key gone leaves its member until the next list trims it.
        let _: i64 = redis::cmd("DEL")
            .arg("ttl:session:ses_t1")
            .query_async(&mut c)
            .await
            .unwrap();
        let listed = store.list_sessions("usr_ttl").await.unwrap();
        assert_eq!(listed.len(), 1);
        let members: i64 = redis::cmd("ZCARD")
            .arg(set)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(members, 1);

        let code = AuthCode {
            client_id: "app_c".into(),
            redirect_uri: "https://c.example/cb".into(),
            user_id: "usr_ttl".into(),
            session_id: "ses_t1".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: "x".into(),
            expires_at: now + Duration::seconds(60),
        };
        store.put_code("h_ttl", &code).await.unwrap();
        let forget = code.expires_at + Duration::seconds(SPENT_CODE_MEMORY_SECS);
        assert_eq!(
            expiry(&mut c, "ttl:code:h_ttl").await,
            forget.timestamp_millis()
        );

        let family = RefreshFamily {
            id: "rtf_ttl".into(),
            user_id: "usr_ttl".into(),
            client_id: "tessera-cli".into(),
            session_id: "ses_t1".into(),
            scope: "openid offline_access".into(),
            created_at: now,
            last_used_at: now,
            expires_at: two,
            revoked: false,
        };
        store.insert_refresh(&family, "h_rt_ttl").await.unwrap();
        let grace = std::time::Duration::from_secs(10);
        let used = store
            .use_refresh("h_rt_ttl", "h_rt_ttl2", now, grace, grace)
            .await
            .unwrap();
        assert!(matches!(used, RefreshUse::Rotated(_)));
        for key in ["ttl:rtf:rtf_ttl", "ttl:rt:h_rt_ttl", "ttl:rt:h_rt_ttl2"] {
            assert_eq!(expiry(&mut c, key).await, two.timestamp_millis(), "{key}");
        }
    }
}

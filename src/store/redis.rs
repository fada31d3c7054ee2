//! The Redis backend: shared state for several gateways. The only module that
//! imports `redis`. Key layout (all under one prefix, default `tessera:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `app:{id}` | string | a `StoredApp` as JSON |
//! | `apps:order` | sorted set, score 0 | `{created µs, 20 digits}:{id}`, for paging by creation |
//! | `role:{name}` | string | a `Role` as JSON |
//! | `roles` | sorted set, score 0 | role names |
//! | `user:{id}` | string | a `StoredUser` as JSON |
//! | `user_email:{email}` | string | the user id owning that email |
//! | `users` | sorted set, score 0 | user ids |
//! | `audit` | hash | record id → `AuditRecord` JSON |
//! | `audit:order` | sorted set, score 0 | record ids |
//! | `rev:seq`, `rev:floor`, `rev:epoch` | strings | feed position, oldest forgotten position, feed epoch |
//! | `rev:entries` | hash | position → `Revocation` JSON |
//! | `rev:order` | sorted set, score = position | positions |
//! | `rev:jti:{jti}` | string, expires with the token | position |
//! | `rev:sub:{sub}` | string, expires with the entry | `{not-before ms}:{position}` of the latest subject entry (older data: the instant alone) |
//! | channel `events` | pub/sub | `{"kind":"app","id":…}`, `{"kind":"roles"}`, `{"kind":"users"}`, `{"kind":"revocation","entry":…}` |
//!
//! Every write that touches several keys is one Lua script or one
//! WATCH/MULTI/EXEC transaction, so a crash or a dropped connection never
//! leaves half an application. Each write publishes its change event inside
//! the same transaction, so a revocation is on the channel before the API
//! call that made it answers. Every call is bounded by a timeout: a Redis
//! that does not answer becomes `StoreError::Unavailable`, promptly.

use async_trait::async_trait;
use chrono::Utc;
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde_json::json;
use std::future::Future;
use std::time::Duration;

use super::{
    AppStore, AuditRecord, AuditStore, FeedPage, FeedPosition, ListPage, ListQuery,
    RevocationStore, Revoked, RoleDelete, RoleStore, StoreError, StoredApp, StoredUser, UsageDelta,
    UserStore, order_key,
};
use crate::domain::{Revocation, RevocationKind, Role};

/// How long one Redis call may take before the store reports it unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Optimistic transactions retried this often before giving up.
const RETRIES: usize = 16;

/// The Redis-backed store.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// WATCHes `keys` and reads the first: how every optimistic transaction here
/// starts (EXEC then fails if any watched key changed meanwhile).
async fn watch_get(
    c: &mut deadpool_redis::Connection,
    keys: &[&String],
) -> Result<Option<String>, StoreError> {
    redis::cmd("WATCH")
        .arg(keys)
        .query_async::<()>(&mut *c)
        .await
        .map_err(unavailable)?;
    let first = keys.first().map_or("", |k| k.as_str());
    c.get(first).await.map_err(unavailable)
}

/// Gives up an optimistic transaction without writing.
async fn unwatch(c: &mut deadpool_redis::Connection) -> Result<(), StoreError> {
    redis::cmd("UNWATCH")
        .query_async::<()>(c)
        .await
        .map_err(unavailable)
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

async fn bounded<T>(f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| StoreError::Unavailable("redis did not answer in time".into()))?
}

/// A change other gateways must apply to their caches.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeEvent {
    /// An application changed or vanished.
    App(String),
    /// Roles changed: every application's grants may have.
    Roles,
    /// Users changed: owner bounds may have.
    Users,
    /// A revocation was stored.
    Revocation(Revocation),
    /// The subscription was (re)established: anything may have been missed.
    Resynced,
}

const INSERT_IF_ABSENT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1";

const UPDATE_IF_PRESENT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1";

const INSERT_USER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[3])
return 1";

// KEYS: seq, entries, order, index key, channel. ARGV: entry JSON without
// `seq` (its closing brace removed), expires_at, kind ('jti'|'sub'),
// not_before_ms. Returns {appended (0|1), entry JSON}. An entry already
// covering this one (`store::already_covered`) is returned as it is: nothing
// appended, nothing published. The index of a subject holds
// `{not-before}:{position}` (older data holds only the instant).
const REVOKE: &str = r#"
local exat = tonumber(ARGV[2])
local old = redis.call('GET', KEYS[4])
local old_seq, old_nb = nil, nil
if old then
  if ARGV[3] == 'jti' then
    old_seq = old
  else
    local nb, s = string.match(old, '^(-?%d+):(%d+)$')
    if nb then old_nb, old_seq = tonumber(nb), s else old_nb = tonumber(old) end
  end
end
if old_seq and (ARGV[3] == 'jti' or old_nb >= tonumber(ARGV[4])) then
  local existing = redis.call('HGET', KEYS[2], old_seq)
  if existing and tonumber(cjson.decode(existing)['expiresAt']) >= exat then
    return {0, existing}
  end
end
local seq = redis.call('INCR', KEYS[1])
local entry = ARGV[1] .. ',"seq":' .. seq .. '}'
redis.call('HSET', KEYS[2], seq, entry)
redis.call('ZADD', KEYS[3], seq, seq)
if ARGV[3] == 'jti' then
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

impl RedisStore {
    /// Connects to `url` (a bounded pool) and checks Redis answers.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let mut cfg = Config::from_url(url);
        cfg.pool = Some(PoolConfig {
            max_size: 32,
            timeouts: Timeouts {
                wait: Some(CALL_TIMEOUT),
                create: Some(CALL_TIMEOUT),
                recycle: Some(CALL_TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        let store = Self {
            pool,
            prefix: prefix.to_owned(),
        };
        store.ping().await?;
        let epoch = crate::crypto::random::base62(12).map_err(unavailable)?;
        let key = store.key("rev:epoch");
        bounded(async {
            let mut c = store.conn().await?;
            let _: bool = c.set_nx(key, epoch).await.map_err(unavailable)?;
            Ok(())
        })
        .await?;
        Ok(store)
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Stores `body` at `key` and adds `member` to the `index` set, unless
    /// `key` exists; publishes `event` in the same script. False if it existed.
    async fn insert_indexed(
        &self,
        key: &str,
        index: &str,
        member: &str,
        body: &str,
        event: &str,
    ) -> Result<bool, StoreError> {
        let channel = self.key("events");
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = redis::Script::new(INSERT_IF_ABSENT)
                .key(key)
                .key(index)
                .key(&channel)
                .arg(body)
                .arg(member)
                .arg(event)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            Ok(done == 1)
        })
        .await
    }

    fn event(&self, e: &serde_json::Value) -> String {
        e.to_string()
    }

    /// Reads many JSON values at once (missing ones are skipped).
    async fn mget<T: serde::de::DeserializeOwned>(
        c: &mut deadpool_redis::Connection,
        keys: &[String],
    ) -> Result<Vec<T>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys)
            .query_async(c)
            .await
            .map_err(unavailable)?;
        values.into_iter().flatten().map(|v| decode(&v)).collect()
    }

    /// Follows the change channel for as long as the process lives,
    /// reconnecting with a short back-off; `apply` gets every change, and
    /// `Resynced` after each (re)subscription, when changes may have been
    /// missed.
    pub fn follow_changes(
        url: String,
        prefix: String,
        apply: impl Fn(ChangeEvent) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let channel = format!("{prefix}events");
            let mut backoff = Duration::from_millis(100);
            loop {
                let attempt = async {
                    let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                    let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, client.get_async_pubsub())
                        .await
                        .map_err(|_| StoreError::Unavailable("pubsub connect timed out".into()))?
                        .map_err(unavailable)?;
                    pubsub.subscribe(&channel).await.map_err(unavailable)?;
                    Ok::<_, StoreError>(pubsub)
                };
                match attempt.await {
                    Ok(mut pubsub) => {
                        backoff = Duration::from_millis(100);
                        apply(ChangeEvent::Resynced);
                        let mut stream = pubsub.on_message();
                        while let Some(msg) = stream.next().await {
                            let Ok(payload) = msg.get_payload::<String>() else {
                                continue;
                            };
                            if let Some(e) = parse_event(&payload) {
                                apply(e);
                            }
                        }
                        tracing::warn!("redis change subscription lost; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis change subscription failed; retrying");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        })
    }
}

/// Parses a message of the change channel.
pub fn parse_event(payload: &str) -> Option<ChangeEvent> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    match v["kind"].as_str()? {
        "app" => Some(ChangeEvent::App(v["id"].as_str()?.to_owned())),
        "roles" => Some(ChangeEvent::Roles),
        "users" => Some(ChangeEvent::Users),
        "revocation" => serde_json::from_value(v["entry"].clone())
            .ok()
            .map(ChangeEvent::Revocation),
        _ => None,
    }
}

#[async_trait]
impl AppStore for RedisStore {
    async fn insert(&self, app: &StoredApp) -> Result<(), StoreError> {
        let key = self.key(&format!("app:{}", app.app.id));
        let event = self.event(&json!({"kind": "app", "id": app.app.id}));
        let inserted = self
            .insert_indexed(
                &key,
                &self.key("apps:order"),
                &order_key(&app.app),
                &encode(app)?,
                &event,
            )
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict(app.app.id.clone()))
        }
    }

    async fn get(&self, id: &str) -> Result<Option<StoredApp>, StoreError> {
        let key = self.key(&format!("app:{id}"));
        bounded(async {
            let mut c = self.conn().await?;
            let v: Option<String> = c.get(&key).await.map_err(unavailable)?;
            v.map(|v| decode(&v)).transpose()
        })
        .await
    }

    async fn update(&self, app: &StoredApp) -> Result<(), StoreError> {
        let id = app.app.id.clone();
        let (key, order, channel) = (
            self.key(&format!("app:{id}")),
            self.key("apps:order"),
            self.key("events"),
        );
        let event = self.event(&json!({"kind": "app", "id": id}));
        bounded(async {
            let mut c = self.conn().await?;
            for _ in 0..RETRIES {
                let old = watch_get(&mut c, &[&key]).await?;
                let Some(old) = old else {
                    unwatch(&mut c).await?;
                    return Err(StoreError::NotFound(id.clone()));
                };
                let old: StoredApp = decode(&old)?;
                let mut new = app.clone();
                new.app.use_count = old.app.use_count;
                new.app.last_used_at = old.app.last_used_at;
                new.app.last_used_ip = old.app.last_used_ip.clone();
                let mut p = redis::pipe();
                p.atomic().set(&key, encode(&new)?).ignore();
                let (old_order, new_order) = (order_key(&old.app), order_key(&new.app));
                if old_order != new_order {
                    p.zrem(&order, old_order)
                        .ignore()
                        .zadd(&order, new_order, 0)
                        .ignore();
                }
                p.publish(&channel, &event).ignore();
                let done: Option<()> = p.query_async(&mut c).await.map_err(unavailable)?;
                if done.is_some() {
                    return Ok(());
                }
            }
            Err(StoreError::Unavailable(
                "too much contention on an application".into(),
            ))
        })
        .await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        bounded(async {
            let mut c = self.conn().await?;
            for d in batch {
                let key = self.key(&format!("app:{}", d.app_id));
                for _ in 0..RETRIES {
                    let old = watch_get(&mut c, &[&key]).await?;
                    let Some(old) = old else {
                        unwatch(&mut c).await?;
                        break;
                    };
                    let mut stored: StoredApp = decode(&old)?;
                    let a = &mut stored.app;
                    a.use_count = a.use_count.saturating_add(d.count);
                    if a.last_used_at.is_none_or(|t| t <= d.last_at) {
                        a.last_used_at = Some(d.last_at);
                        a.last_used_ip = Some(d.last_ip.clone());
                    }
                    // No event: usage figures do not affect any cache.
                    let done: Option<()> = redis::pipe()
                        .atomic()
                        .set(&key, encode(&stored)?)
                        .ignore()
                        .query_async(&mut c)
                        .await
                        .map_err(unavailable)?;
                    if done.is_some() {
                        break;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let (key, order, channel) = (
            self.key(&format!("app:{id}")),
            self.key("apps:order"),
            self.key("events"),
        );
        let event = self.event(&json!({"kind": "app", "id": id}));
        bounded(async {
            let mut c = self.conn().await?;
            for _ in 0..RETRIES {
                let old = watch_get(&mut c, &[&key]).await?;
                let Some(old) = old else {
                    unwatch(&mut c).await?;
                    return Ok(false);
                };
                let old: StoredApp = decode(&old)?;
                let done: Option<()> = redis::pipe()
                    .atomic()
                    .del(&key)
                    .ignore()
                    .zrem(&order, order_key(&old.app))
                    .ignore()
                    .publish(&channel, &event)
                    .ignore()
                    .query_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                if done.is_some() {
                    return Ok(true);
                }
            }
            Err(StoreError::Unavailable(
                "too much contention on an application".into(),
            ))
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let order = self.key("apps:order");
        bounded(async {
            let mut c = self.conn().await?;
            let now = Utc::now();
            let limit = query.limit.max(1);
            let mut items = Vec::new();
            let mut last: Option<String> = None;
            let mut more = false;
            let mut from = match &query.after {
                Some(a) => format!("({a}"),
                None => "-".to_owned(),
            };
            'scan: loop {
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&order)
                    .arg(&from)
                    .arg("+")
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(200)
                    .query_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                if members.is_empty() {
                    break;
                }
                let keys: Vec<String> = members
                    .iter()
                    .filter_map(|m| {
                        m.split_once(':')
                            .map(|(_, id)| self.key(&format!("app:{id}")))
                    })
                    .collect();
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                for (member, value) in members.iter().zip(values) {
                    let Some(value) = value else { continue };
                    let app: StoredApp = decode(&value)?;
                    if !query.filter.matches(&app.app, now) {
                        continue;
                    }
                    if items.len() == limit {
                        more = true;
                        break 'scan;
                    }
                    items.push(app);
                    last = Some(member.clone());
                }
                match members.last() {
                    Some(m) => from = format!("({m}"),
                    None => break,
                }
            }
            Ok(ListPage {
                items,
                next: if more { last } else { None },
            })
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let order = self.key("apps:order");
        bounded(async {
            let mut c = self.conn().await?;
            c.zcard(&order).await.map_err(unavailable)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        bounded(async {
            let mut c = self.conn().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map(|_| ())
                .map_err(unavailable)
        })
        .await
    }
}

#[async_trait]
impl RoleStore for RedisStore {
    async fn insert_role(&self, role: &Role) -> Result<(), StoreError> {
        let key = self.key(&format!("role:{}", role.name));
        let event = self.event(&json!({"kind": "roles"}));
        let inserted = self
            .insert_indexed(&key, &self.key("roles"), &role.name, &encode(role)?, &event)
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("role {}", role.name)))
        }
    }

    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        let key = self.key(&format!("role:{name}"));
        bounded(async {
            let mut c = self.conn().await?;
            let v: Option<String> = c.get(&key).await.map_err(unavailable)?;
            v.map(|v| decode(&v)).transpose()
        })
        .await
    }

    async fn list_roles(&self) -> Result<Vec<Role>, StoreError> {
        let set = self.key("roles");
        bounded(async {
            let mut c = self.conn().await?;
            let names: Vec<String> = c.zrange(&set, 0, -1).await.map_err(unavailable)?;
            let keys: Vec<String> = names
                .iter()
                .map(|n| self.key(&format!("role:{n}")))
                .collect();
            Self::mget(&mut c, &keys).await
        })
        .await
    }

    async fn update_role(&self, role: &Role) -> Result<(), StoreError> {
        let (key, channel) = (self.key(&format!("role:{}", role.name)), self.key("events"));
        let body = encode(role)?;
        let event = self.event(&json!({"kind": "roles"}));
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = redis::Script::new(UPDATE_IF_PRESENT)
                .key(&key)
                .key(&channel)
                .arg(&body)
                .arg(&event)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            if done == 1 {
                Ok(())
            } else {
                Err(StoreError::NotFound(format!("role {}", role.name)))
            }
        })
        .await
    }

    async fn delete_role(&self, name: &str, detach: bool) -> Result<RoleDelete, StoreError> {
        let role_key = self.key(&format!("role:{name}"));
        let (roles, apps_order, users, channel) = (
            self.key("roles"),
            self.key("apps:order"),
            self.key("users"),
            self.key("events"),
        );
        bounded(async {
            let mut c = self.conn().await?;
            for _ in 0..RETRIES {
                // Watch the role and both indexes first: a new holder created
                // meanwhile changes an index and fails the transaction.
                redis::cmd("WATCH")
                    .arg(&role_key)
                    .arg(&apps_order)
                    .arg(&users)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(unavailable)?;
                let exists: bool = c.exists(&role_key).await.map_err(unavailable)?;
                if !exists {
                    unwatch(&mut c).await?;
                    return Ok(RoleDelete::NotFound);
                }
                let members: Vec<String> =
                    c.zrange(&apps_order, 0, -1).await.map_err(unavailable)?;
                let app_keys: Vec<String> = members
                    .iter()
                    .filter_map(|m| {
                        m.split_once(':')
                            .map(|(_, id)| self.key(&format!("app:{id}")))
                    })
                    .collect();
                let user_ids: Vec<String> = c.zrange(&users, 0, -1).await.map_err(unavailable)?;
                let user_keys: Vec<String> = user_ids
                    .iter()
                    .map(|u| self.key(&format!("user:{u}")))
                    .collect();
                if !app_keys.is_empty() || !user_keys.is_empty() {
                    redis::cmd("WATCH")
                        .arg(&app_keys)
                        .arg(&user_keys)
                        .query_async::<()>(&mut c)
                        .await
                        .map_err(unavailable)?;
                }
                let apps: Vec<StoredApp> = Self::mget(&mut c, &app_keys).await?;
                let all_users: Vec<StoredUser> = Self::mget(&mut c, &user_keys).await?;
                let name_s = name.to_owned();
                let held_apps: Vec<StoredApp> = apps
                    .into_iter()
                    .filter(|a| {
                        a.app.roles.contains(&name_s)
                            || a.app.access_rules.iter().any(|r| r.roles.contains(&name_s))
                    })
                    .collect();
                let held_users: Vec<StoredUser> = all_users
                    .into_iter()
                    .filter(|u| u.user.roles.contains(&name_s))
                    .collect();
                let held = !(held_apps.is_empty() && held_users.is_empty());
                if held && !detach {
                    unwatch(&mut c).await?;
                    return Ok(RoleDelete::InUse {
                        apps: held_apps.into_iter().map(|a| a.app.id).collect(),
                        users: held_users.into_iter().map(|u| u.user.id).collect(),
                    });
                }
                let mut p = redis::pipe();
                p.atomic();
                for mut a in held_apps {
                    a.app.roles.retain(|r| *r != name_s);
                    for rule in &mut a.app.access_rules {
                        rule.roles.retain(|r| *r != name_s);
                    }
                    a.app
                        .access_rules
                        .retain(|r| !(r.roles.is_empty() && r.permissions.is_empty()));
                    p.set(self.key(&format!("app:{}", a.app.id)), encode(&a)?)
                        .ignore();
                    p.publish(
                        &channel,
                        self.event(&json!({"kind": "app", "id": a.app.id})),
                    )
                    .ignore();
                }
                for mut u in held_users {
                    u.user.roles.retain(|r| *r != name_s);
                    p.set(self.key(&format!("user:{}", u.user.id)), encode(&u)?)
                        .ignore();
                }
                p.del(&role_key).ignore().zrem(&roles, name).ignore();
                p.publish(&channel, self.event(&json!({"kind": "roles"})))
                    .ignore();
                let done: Option<()> = p.query_async(&mut c).await.map_err(unavailable)?;
                if done.is_some() {
                    return Ok(RoleDelete::Deleted);
                }
            }
            Err(StoreError::Unavailable(
                "too much contention deleting a role".into(),
            ))
        })
        .await
    }
}

#[async_trait]
impl UserStore for RedisStore {
    async fn insert_user(&self, user: &StoredUser) -> Result<(), StoreError> {
        let u = &user.user;
        let (key, email_key, set, channel) = (
            self.key(&format!("user:{}", u.id)),
            self.key(&format!("user_email:{}", u.email)),
            self.key("users"),
            self.key("events"),
        );
        let body = encode(user)?;
        let event = self.event(&json!({"kind": "users"}));
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = redis::Script::new(INSERT_USER)
                .key(&key)
                .key(&email_key)
                .key(&set)
                .key(&channel)
                .arg(&body)
                .arg(&u.id)
                .arg(&event)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            match done {
                1 => Ok(()),
                0 => Err(StoreError::Conflict(format!("user {}", u.id))),
                _ => Err(StoreError::Conflict(format!(
                    "a user with email {}",
                    u.email
                ))),
            }
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        let key = self.key(&format!("user:{id}"));
        bounded(async {
            let mut c = self.conn().await?;
            let v: Option<String> = c.get(&key).await.map_err(unavailable)?;
            v.map(|v| decode(&v)).transpose()
        })
        .await
    }

    async fn list_users(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<(Vec<StoredUser>, Option<String>), StoreError> {
        let set = self.key("users");
        bounded(async {
            let mut c = self.conn().await?;
            let limit = limit.max(1);
            let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&set)
                .arg(&from)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(limit + 1)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let more = ids.len() > limit;
            let keys: Vec<String> = ids
                .iter()
                .take(limit)
                .map(|u| self.key(&format!("user:{u}")))
                .collect();
            let users: Vec<StoredUser> = Self::mget(&mut c, &keys).await?;
            let next = if more {
                users.last().map(|u| u.user.id.clone())
            } else {
                None
            };
            Ok((users, next))
        })
        .await
    }

    async fn update_user(&self, user: &StoredUser) -> Result<(), StoreError> {
        let id = user.user.id.clone();
        let key = self.key(&format!("user:{id}"));
        let new_email_key = self.key(&format!("user_email:{}", user.user.email));
        let channel = self.key("events");
        let event = self.event(&json!({"kind": "users"}));
        bounded(async {
            let mut c = self.conn().await?;
            for _ in 0..RETRIES {
                let old = watch_get(&mut c, &[&key, &new_email_key]).await?;
                let Some(old) = old else {
                    unwatch(&mut c).await?;
                    return Err(StoreError::NotFound(format!("user {id}")));
                };
                let old: StoredUser = decode(&old)?;
                let mut p = redis::pipe();
                p.atomic();
                if old.user.email != user.user.email {
                    let taken: Option<String> = c.get(&new_email_key).await.map_err(unavailable)?;
                    if taken.is_some() {
                        unwatch(&mut c).await?;
                        return Err(StoreError::Conflict(format!(
                            "a user with email {}",
                            user.user.email
                        )));
                    }
                    p.del(self.key(&format!("user_email:{}", old.user.email)))
                        .ignore()
                        .set(&new_email_key, &id)
                        .ignore();
                }
                p.set(&key, encode(user)?)
                    .ignore()
                    .publish(&channel, &event)
                    .ignore();
                let done: Option<()> = p.query_async(&mut c).await.map_err(unavailable)?;
                if done.is_some() {
                    return Ok(());
                }
            }
            Err(StoreError::Unavailable(
                "too much contention on a user".into(),
            ))
        })
        .await
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let key = self.key(&format!("user:{id}"));
        let (set, channel) = (self.key("users"), self.key("events"));
        let event = self.event(&json!({"kind": "users"}));
        bounded(async {
            let mut c = self.conn().await?;
            for _ in 0..RETRIES {
                let old = watch_get(&mut c, &[&key]).await?;
                let Some(old) = old else {
                    unwatch(&mut c).await?;
                    return Ok(false);
                };
                let old: StoredUser = decode(&old)?;
                let done: Option<()> = redis::pipe()
                    .atomic()
                    .del(&key)
                    .ignore()
                    .del(self.key(&format!("user_email:{}", old.user.email)))
                    .ignore()
                    .zrem(&set, id)
                    .ignore()
                    .publish(&channel, &event)
                    .ignore()
                    .query_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                if done.is_some() {
                    return Ok(true);
                }
            }
            Err(StoreError::Unavailable(
                "too much contention on a user".into(),
            ))
        })
        .await
    }
}

#[async_trait]
impl AuditStore for RedisStore {
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let (hash, order) = (self.key("audit"), self.key("audit:order"));
        let body = encode(record)?;
        bounded(async {
            let mut c = self.conn().await?;
            redis::pipe()
                .atomic()
                .hset(&hash, &record.id, body)
                .ignore()
                .zadd(&order, &record.id, 0)
                .ignore()
                .query_async::<()>(&mut c)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn list_audit(
        &self,
        limit: usize,
        before: Option<String>,
    ) -> Result<(Vec<AuditRecord>, Option<String>), StoreError> {
        let (hash, order) = (self.key("audit"), self.key("audit:order"));
        bounded(async {
            let mut c = self.conn().await?;
            let limit = limit.max(1);
            let from = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&order)
                .arg(&from)
                .arg("-")
                .arg("BYLEX")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(limit + 1)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let more = ids.len() > limit;
            let ids: Vec<String> = ids.into_iter().take(limit).collect();
            if ids.is_empty() {
                return Ok((Vec::new(), None));
            }
            let values: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&hash)
                .arg(&ids)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let records: Vec<AuditRecord> = values
                .into_iter()
                .flatten()
                .map(|v| decode(&v))
                .collect::<Result<_, _>>()?;
            let next = if more {
                records.last().map(|r| r.id.clone())
            } else {
                None
            };
            Ok((records, next))
        })
        .await
    }
}

fn kind_json(kind: &RevocationKind, expires_at: i64) -> Result<String, StoreError> {
    // The script appends `"seq"` and the closing brace.
    let mut v = serde_json::to_value(kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    v["expiresAt"] = json!(expires_at);
    let s = v.to_string();
    Ok(s.strip_suffix('}').unwrap_or(&s).to_owned())
}

/// The not-before instant a subject index value holds (`{instant}` or
/// `{instant}:{position}`).
fn index_instant(v: &str) -> Option<i64> {
    v.split(':').next()?.parse().ok()
}

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, kind: RevocationKind, expires_at: i64) -> Result<Revoked, StoreError> {
        let (index, tag, nb) = match &kind {
            RevocationKind::Jti { jti } => (self.key(&format!("rev:jti:{jti}")), "jti", 0),
            RevocationKind::Subject { sub, not_before_ms } => {
                (self.key(&format!("rev:sub:{sub}")), "sub", *not_before_ms)
            }
        };
        let body = kind_json(&kind, expires_at)?;
        bounded(async {
            let mut c = self.conn().await?;
            let (appended, entry): (i64, String) = redis::Script::new(REVOKE)
                .key(self.key("rev:seq"))
                .key(self.key("rev:entries"))
                .key(self.key("rev:order"))
                .key(&index)
                .key(self.key("events"))
                .arg(&body)
                .arg(expires_at)
                .arg(tag)
                .arg(nb)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            Ok(Revoked {
                entry: decode(&entry)?,
                appended: appended == 1,
            })
        })
        .await
    }

    async fn is_revoked(&self, jti: &str, sub: &str, issued_ms: i64) -> Result<bool, StoreError> {
        let (jti_key, sub_key) = (
            self.key(&format!("rev:jti:{jti}")),
            self.key(&format!("rev:sub:{sub}")),
        );
        bounded(async {
            let mut c = self.conn().await?;
            let (j, s): (Option<String>, Option<String>) = redis::pipe()
                .get(&jti_key)
                .get(&sub_key)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            let nb = match s.as_deref() {
                Some(v) => Some(
                    index_instant(v)
                        .ok_or_else(|| StoreError::Corrupt(format!("subject index {v:?}")))?,
                ),
                None => None,
            };
            Ok(j.is_some() || nb.is_some_and(|nb| issued_ms < nb))
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
                    let mut seqs =
                        positions_after(&mut c, &order, since, "+inf", limit + 1).await?;
                    let more = seqs.len() > limit;
                    seqs.truncate(limit);
                    let entries = hmget_revocations(&mut c, &entries_key, &seqs).await?;
                    let last = seqs.last().copied().unwrap_or(since);
                    Ok(FeedPage {
                        entries,
                        cursor: FeedPosition::After(last).cursor(&epoch),
                        snapshot: false,
                        reset: false,
                        more,
                    })
                }
                FeedPosition::Snapshot { after, upto } => {
                    // Every position up to `upto` was stored with its entry
                    // in one script, before `rev:seq` said so.
                    let now = Utc::now().timestamp();
                    let chunk = (limit + 1).clamp(64, 1024);
                    let upto_s = upto.to_string();
                    let mut out = Vec::new();
                    let mut last = after;
                    let mut unread = false;
                    'scan: loop {
                        let seqs = positions_after(&mut c, &order, last, &upto_s, chunk).await?;
                        let revs = hmget_revocations(&mut c, &entries_key, &seqs).await?;
                        for rev in revs {
                            if out.len() >= limit {
                                unread = true;
                                break 'scan;
                            }
                            last = rev.seq;
                            // Expired entries cover nothing: skipped, and
                            // they do not count towards the page.
                            if rev.expires_at > now {
                                out.push(rev);
                            }
                        }
                        // Positions whose entry was purged meanwhile are
                        // passed over too.
                        last = seqs.last().copied().unwrap_or(last).max(last);
                        if seqs.len() < chunk {
                            break;
                        }
                    }
                    let (next, more) = if unread {
                        (FeedPosition::Snapshot { after: last, upto }, true)
                    } else {
                        let later = positions_after(&mut c, &order, upto, "+inf", 1).await?;
                        (FeedPosition::After(upto), !later.is_empty())
                    };
                    Ok(FeedPage {
                        entries: out,
                        cursor: next.cursor(&epoch),
                        snapshot: true,
                        reset,
                        more,
                    })
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
            let all = hmget_revocations(&mut c, &entries_key, &seqs).await?;
            let retired: Vec<&Revocation> = all.iter().filter(|r| r.expires_at <= now).collect();
            let expired: Vec<u64> = retired.iter().map(|r| r.seq).collect();
            let Some(max) = expired.iter().max().copied() else {
                return Ok(0);
            };
            // Index keys also expire by themselves (EXAT); this removes them
            // at once when they still point at a retired entry.
            for r in &retired {
                let (key, values) = match &r.kind {
                    RevocationKind::Jti { jti } => {
                        (self.key(&format!("rev:jti:{jti}")), vec![r.seq.to_string()])
                    }
                    RevocationKind::Subject { sub, not_before_ms } => (
                        self.key(&format!("rev:sub:{sub}")),
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
    c: &mut deadpool_redis::Connection,
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

async fn hmget_revocations(
    c: &mut deadpool_redis::Connection,
    key: &str,
    seqs: &[u64],
) -> Result<Vec<Revocation>, StoreError> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(key)
        .arg(seqs)
        .query_async(c)
        .await
        .map_err(unavailable)?;
    values.into_iter().flatten().map(|v| decode(&v)).collect()
}

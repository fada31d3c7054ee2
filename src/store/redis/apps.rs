//! Applications in the Redis store: `app:{id}` records, the `apps:order`
//! index by creation and the `app_names` index by name.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{
    Lex, RedisStore, Tx, bounded, get, members_after, mget_each, transact, unavailable, watch,
};
use crate::domain::ChangeEvent;
use crate::store::common::{
    AppPager, add_usage, encode, keep_usage, kept_hours, order_key, order_key_id,
};
use crate::store::{
    AppStore, Entity, ListPage, ListQuery, StoreError, StoredApp, USAGE_KEPT_SECS, UsageDelta,
    name_key, oldest_kept_hour,
};

/// Members of `apps:order` read per round trip while listing.
const LIST_CHUNK: usize = 200;

/// Adds to applications' hourly buckets. KEYS: their `usage:{id}` hashes;
/// ARGV[1]: the oldest hour kept; ARGV[2]: seconds a hash outlives this
/// write; then, for each key in turn, how many hours follow and that many
/// (hour start, count) pairs. One script for the whole batch (its text
/// travels once per flush), queued inside the usage transaction's MULTI so
/// it is written with the totals or not at all. Older hours are deleted
/// only when a new hour opens (an increment that created its field), so the
/// scan of a hash runs about once per application-hour.
const ADD_HOURS: &str = r"
local oldest = tonumber(ARGV[1])
local a = 3
for k = 1, #KEYS do
  local opened = false
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    if redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1]) == tonumber(ARGV[a + 1]) then
      opened = true
    end
    a = a + 2
  end
  if opened then
    for _, field in ipairs(redis.call('HKEYS', KEYS[k])) do
      local hour = tonumber(field)
      if hour == nil or hour < oldest then redis.call('HDEL', KEYS[k], field) end
    end
  end
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return 0";

/// Inserts an application. KEYS: its `app:{id}`, `apps:order`, the
/// channel, `app_names`; ARGV: the record, its ordering key, the event, its
/// name key, its id, and `1` to insert only into a store holding no
/// application (bootstrap). Returns 1 when inserted, 0 when the id exists,
/// -1 when the name is taken, 2 when applications exist and ARGV[6] is `1`.
/// One script, so the record and both indexes are written together or not
/// at all, and two writers racing for one name see one order.
const INSERT_APP: &str = r"
if ARGV[6] == '1' and redis.call('ZCARD', KEYS[2]) > 0 then return 2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('HEXISTS', KEYS[4], ARGV[4]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[5])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1";

/// Frees a name. KEYS[1]: `app_names`; ARGV: the name key and the id that
/// must hold it (an unindexed duplicate frees nothing). Queued in the
/// MULTI of a rename or a delete.
const FREE_NAME: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0";

/// Indexes the name of an application written before the index existed.
/// KEYS: its `app:{id}`, `app_names`; ARGV: the name key, the id, the name
/// as read. Nothing happens if the record is gone or renamed since it was
/// read (its writer kept the index then). Returns 1 when indexed or
/// already indexed under this id, 0 when another application holds the
/// name, 2 when skipped.
const INDEX_NAME: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 2 end
local ok, rec = pcall(cjson.decode, v)
if not ok or type(rec) ~= 'table' or type(rec.app) ~= 'table' or rec.app.name ~= ARGV[3] then
  return 2
end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then return 1 end
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 1 end
return 0";

impl RedisStore {
    /// The name index (`store::name_key` → id).
    fn names_key(&self) -> String {
        self.key("app_names")
    }

    /// Indexes the names of a store written before the name index existed,
    /// once (a marker says it was done), oldest application first. A later
    /// application with a name already taken stays unindexed: it keeps
    /// working by id, and is reported so an operator can rename it.
    /// Gateways starting together may both run it: every step is idempotent.
    pub(super) async fn index_names(&self) -> Result<(), StoreError> {
        let marker = self.key("app_names:indexed");
        let (order, names) = (self.key("apps:order"), self.names_key());
        let mut c = self.conn().await?;
        let done: bool = c.exists(&marker).await.map_err(unavailable)?;
        if done {
            return Ok(());
        }
        let mut from: Option<String> = None;
        let mut duplicates = Vec::new();
        loop {
            let members =
                members_after(&mut c, &order, from.as_deref(), Lex::Up, LIST_CHUNK).await?;
            let Some(last) = members.last().cloned() else {
                break;
            };
            let ids: Vec<&str> = members.iter().filter_map(|m| order_key_id(m)).collect();
            let keys: Vec<String> = ids.iter().map(|id| self.app_key(id)).collect();
            let apps = mget_each::<StoredApp>(&mut c, &keys).await?;
            for ((id, key), app) in ids.iter().zip(&keys).zip(apps) {
                let Some(app) = app else { continue };
                let indexed: i64 = redis::Script::new(INDEX_NAME)
                    .key(key)
                    .key(&names)
                    .arg(name_key(&app.app.name))
                    .arg(*id)
                    .arg(&app.app.name)
                    .invoke_async(&mut c)
                    .await
                    .map_err(unavailable)?;
                if indexed == 0 {
                    duplicates.push((*id).to_owned());
                }
            }
            from = Some(last);
        }
        if !duplicates.is_empty() {
            tracing::warn!(
                app_ids = ?duplicates,
                "applications share a name with an older one: they are found by id only until renamed"
            );
        }
        let _: () = c.set(&marker, 1).await.map_err(unavailable)?;
        Ok(())
    }

    /// Runs [`INSERT_APP`]; `Ok(false)` when `only_first` and applications
    /// exist.
    async fn insert_app(&self, app: &StoredApp, only_first: bool) -> Result<bool, StoreError> {
        let (key, order, names, channel) = (
            self.app_key(&app.app.id),
            self.key("apps:order"),
            self.names_key(),
            self.channel(),
        );
        let (body, event) = (encode(app)?, Self::app_event(&app.app.id)?);
        let done: i64 = bounded(async {
            let mut c = self.conn().await?;
            redis::Script::new(INSERT_APP)
                .key(&key)
                .key(&order)
                .key(&channel)
                .key(&names)
                .arg(&body)
                .arg(order_key(&app.app))
                .arg(&event)
                .arg(name_key(&app.app.name))
                .arg(&app.app.id)
                .arg(if only_first { "1" } else { "0" })
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)
        })
        .await?;
        match done {
            1 => Ok(true),
            2 => Ok(false),
            -1 => Err(StoreError::Conflict {
                what: Entity::ApplicationName,
                id: app.app.name.trim().to_owned(),
            }),
            _ => Err(StoreError::Conflict {
                what: Entity::Application,
                id: app.app.id.clone(),
            }),
        }
    }

    fn app_event(id: &str) -> Result<String, StoreError> {
        encode(&ChangeEvent::App { id: id.to_owned() })
    }
}

#[async_trait]
impl AppStore for RedisStore {
    async fn insert(&self, app: &StoredApp) -> Result<(), StoreError> {
        self.insert_app(app, false).await.map(|_| ())
    }

    async fn insert_first(&self, app: &StoredApp) -> Result<bool, StoreError> {
        self.insert_app(app, true).await
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<String>, StoreError> {
        let (names, field) = (self.names_key(), name_key(name));
        bounded(async {
            let mut c = self.conn().await?;
            c.hget(&names, &field).await.map_err(unavailable)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredApp>, StoreError> {
        self.read(&self.app_key(id)).await
    }

    async fn update(
        &self,
        app: &StoredApp,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let id = &app.app.id;
        let (key, order, channel) = (self.app_key(id), self.key("apps:order"), self.channel());
        let names = self.names_key();
        let event = Self::app_event(id)?;
        let (key, order, channel, event, names) = (&key, &order, &channel, &event, &names);
        bounded(async {
            let c = self.conn().await?;
            let watched = [key.clone()];
            transact(c, &watched, "an application", move |mut c| async move {
                let step = async {
                    let Some(old) = get::<StoredApp>(&mut c, key).await? else {
                        return Err(StoreError::NotFound {
                            what: Entity::Application,
                            id: id.clone(),
                        });
                    };
                    if old.app.updated_at != read_at {
                        return Err(StoreError::Stale {
                            what: Entity::Application,
                            id: id.clone(),
                        });
                    }
                    let mut new = app.clone();
                    keep_usage(&mut new, &old);
                    let mut p = redis::pipe();
                    let (old_name, new_name) = (name_key(&old.app.name), name_key(&new.app.name));
                    if old_name != new_name {
                        // Watched before it is read: a name taken meanwhile
                        // fails the EXEC, and the retry sees the holder.
                        watch(&mut c, std::slice::from_ref(names)).await?;
                        let holder: Option<String> =
                            c.hget(names, &new_name).await.map_err(unavailable)?;
                        if holder.is_some_and(|h| h != *id) {
                            return Err(StoreError::Conflict {
                                what: Entity::ApplicationName,
                                id: new.app.name.trim().to_owned(),
                            });
                        }
                        p.cmd("EVAL")
                            .arg(FREE_NAME)
                            .arg(1)
                            .arg(names)
                            .arg(&old_name)
                            .arg(id)
                            .ignore()
                            .hset(names, &new_name, id)
                            .ignore();
                    }
                    p.set(key, encode(&new)?).ignore();
                    let (old_order, new_order) = (order_key(&old.app), order_key(&new.app));
                    if old_order != new_order {
                        p.zrem(order, old_order)
                            .ignore()
                            .zadd(order, new_order, 0)
                            .ignore();
                    }
                    p.publish(channel, event).ignore();
                    Ok(Tx::Write(p, ()))
                }
                .await;
                (c, step)
            })
            .await
        })
        .await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = batch.iter().map(|d| self.app_key(&d.app_id)).collect();
        let usage_keys: Vec<String> = batch.iter().map(|d| self.usage_key(&d.app_id)).collect();
        let (keys, usage_keys) = (&keys, &usage_keys);
        let oldest = oldest_kept_hour(chrono::Utc::now());
        bounded(async {
            let c = self.conn().await?;
            // The whole batch in one transaction: it is written entirely or
            // not at all, so the flusher may retry it without counting twice.
            transact(c, keys, "usage figures", move |mut c| async move {
                let step = async {
                    let stored = mget_each::<StoredApp>(&mut c, keys).await?;
                    let mut p = redis::pipe();
                    let mut any = false;
                    let (mut hour_keys, mut hour_args) = (Vec::new(), Vec::new());
                    for (((key, usage), d), app) in
                        keys.iter().zip(usage_keys).zip(batch).zip(stored)
                    {
                        // Absent applications are skipped.
                        let Some(mut app) = app else { continue };
                        add_usage(&mut app, d);
                        // No event: usage figures do not affect any cache.
                        p.set(key, encode(&app)?).ignore();
                        any = true;
                        let hours: Vec<(i64, u64)> = kept_hours(d, oldest).collect();
                        if !hours.is_empty() {
                            hour_keys.push(usage);
                            hour_args.push(i64::try_from(hours.len()).unwrap_or(i64::MAX));
                            for (hour, n) in hours {
                                // HINCRBY takes a signed count.
                                hour_args.push(hour);
                                hour_args.push(i64::try_from(n).unwrap_or(i64::MAX));
                            }
                        }
                    }
                    if !hour_keys.is_empty() {
                        p.cmd("EVAL")
                            .arg(ADD_HOURS)
                            .arg(hour_keys.len())
                            .arg(&hour_keys)
                            .arg(oldest)
                            .arg(USAGE_KEPT_SECS + 3600)
                            .arg(&hour_args)
                            .ignore();
                    }
                    Ok(if any { Tx::Write(p, ()) } else { Tx::Done(()) })
                }
                .await;
                (c, step)
            })
            .await
        })
        .await
    }

    async fn hourly_usage(&self, id: &str, since_hour: i64) -> Result<Vec<(i64, u64)>, StoreError> {
        let key = self.usage_key(id);
        let from = since_hour.max(oldest_kept_hour(chrono::Utc::now()));
        bounded(async {
            let mut c = self.conn().await?;
            let fields: Vec<(String, String)> = c.hgetall(&key).await.map_err(unavailable)?;
            let mut out = Vec::with_capacity(fields.len());
            for (hour, n) in fields {
                let (Ok(hour), Ok(n)) = (hour.parse::<i64>(), n.parse::<u64>()) else {
                    return Err(StoreError::Corrupt("hourly usage bucket".into()));
                };
                // Lapsed hours not yet deleted are as good as absent.
                if hour >= from {
                    out.push((hour, n));
                }
            }
            out.sort_unstable();
            Ok(out)
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let (key, order, channel) = (self.app_key(id), self.key("apps:order"), self.channel());
        let (usage, names) = (self.usage_key(id), self.names_key());
        let event = Self::app_event(id)?;
        let (key, order, channel, event, usage, names) =
            (&key, &order, &channel, &event, &usage, &names);
        bounded(async {
            let c = self.conn().await?;
            let watched = [key.clone()];
            transact(c, &watched, "an application", move |mut c| async move {
                let step = async {
                    let Some(old) = get::<StoredApp>(&mut c, key).await? else {
                        return Ok(Tx::Done(false));
                    };
                    let mut p = redis::pipe();
                    p.del(key)
                        .ignore()
                        .del(usage)
                        .ignore()
                        .zrem(order, order_key(&old.app))
                        .ignore()
                        .cmd("EVAL")
                        .arg(FREE_NAME)
                        .arg(1)
                        .arg(names)
                        .arg(name_key(&old.app.name))
                        .arg(id)
                        .ignore()
                        .publish(channel, event)
                        .ignore();
                    Ok(Tx::Write(p, true))
                }
                .await;
                (c, step)
            })
            .await
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let order = self.key("apps:order");
        bounded(async {
            let mut c = self.conn().await?;
            let mut pager = AppPager::new(query);
            let mut from = query.after.clone();
            'scan: loop {
                let members =
                    members_after(&mut c, &order, from.as_deref(), Lex::Up, LIST_CHUNK).await?;
                let Some(last) = members.last() else { break };
                let members: Vec<(&String, String)> = members
                    .iter()
                    .filter_map(|m| order_key_id(m).map(|id| (m, self.app_key(id))))
                    .collect();
                let keys: Vec<String> = members.iter().map(|(_, k)| k.clone()).collect();
                let apps = mget_each::<StoredApp>(&mut c, &keys).await?;
                for ((member, _), app) in members.iter().zip(apps) {
                    // Deleted since the index was read: passed over.
                    let Some(app) = app else { continue };
                    if !pager.offer(member, app) {
                        break 'scan;
                    }
                }
                from = Some(last.clone());
            }
            Ok(pager.finish())
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

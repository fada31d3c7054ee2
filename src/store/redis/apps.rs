//! Applications in the Redis store: `app:{id}` records and the `apps:order`
//! index by creation.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{Lex, RedisStore, Tx, bounded, get, members_after, mget_each, transact, unavailable};
use crate::domain::ChangeEvent;
use crate::store::common::{
    AppPager, add_usage, encode, keep_usage, kept_hours, order_key, order_key_id,
};
use crate::store::{
    AppStore, Entity, ListPage, ListQuery, StoreError, StoredApp, USAGE_KEPT_SECS, UsageDelta,
    oldest_kept_hour,
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

impl RedisStore {
    fn app_event(id: &str) -> Result<String, StoreError> {
        encode(&ChangeEvent::App { id: id.to_owned() })
    }
}

#[async_trait]
impl AppStore for RedisStore {
    async fn insert(&self, app: &StoredApp) -> Result<(), StoreError> {
        let inserted = self
            .insert_indexed(
                &self.app_key(&app.app.id),
                &self.key("apps:order"),
                &order_key(&app.app),
                &encode(app)?,
                &Self::app_event(&app.app.id)?,
            )
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                what: Entity::Application,
                id: app.app.id.clone(),
            })
        }
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
        let event = Self::app_event(id)?;
        let (key, order, channel, event) = (&key, &order, &channel, &event);
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
        let usage = self.usage_key(id);
        let event = Self::app_event(id)?;
        let (key, order, channel, event, usage) = (&key, &order, &channel, &event, &usage);
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

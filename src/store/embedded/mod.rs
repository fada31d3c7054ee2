//! The embedded store: one redb file under the data directory.
//!
//! redb commits are copy-on-write with an fsync before `commit` returns, so
//! an acknowledged write survives a crash or `kill -9`, and a failed write
//! leaves the previous state intact. redb is synchronous, so every call runs
//! on tokio's blocking pool, never on an actix worker.

use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use std::path::Path;
use std::sync::Arc;

use super::common::{
    AppPager, Record, add_usage, decode, encode, keep_usage, kept_hours, order_key,
};
use super::{
    AppStore, Entity, ListPage, ListQuery, StoreError, StoredApp, UsageDelta, name_key,
    oldest_kept_hour,
};

mod audit;
mod device;
mod identity;
mod keys;
mod people;
mod ratelimit;
mod revocations;

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const BY_CREATED: TableDefinition<&str, &str> = TableDefinition::new("apps_by_created");
/// Application name (`store::name_key`) → id: names are unique ignoring case.
const APP_NAMES: TableDefinition<&str, &str> = TableDefinition::new("app_names");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const USERS_BY_EMAIL: TableDefinition<&str, &str> = TableDefinition::new("users_by_email");
const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
/// Linked identity (`store::identity_key`) → user id.
const USERS_BY_IDENTITY: TableDefinition<&str, &str> = TableDefinition::new("users_by_identity");
/// (application id, hour start in unix seconds) → exchanges in that hour.
/// Keyed by application first, so one application's hours are one range.
const USAGE_HOURS: TableDefinition<(&str, i64), u64> = TableDefinition::new("usage_hours");
/// The same rows by (hour start, application id): lapsed hours, whoever
/// they belong to, are one range at the front.
const USAGE_BY_HOUR: TableDefinition<(i64, &str), ()> = TableDefinition::new("usage_by_hour");
/// Lapsed hourly rows forgotten by one usage write at most, so a write after
/// a long quiet spell stays short; the rest go with the following writes.
const USAGE_PURGE_PER_WRITE: usize = 4096;

/// The redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// Request budgets, in memory (see `ratelimit`).
    budgets: Arc<ratelimit::Budgets>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStore")
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Indexes the names of a store written before the name index existed
/// (an empty index beside applications), oldest application first. A
/// later application with a name already taken is left unindexed: it keeps
/// working by id, and is reported so an operator can rename it.
fn index_names(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut names = txn.open_table(APP_NAMES).map_err(backend)?;
    let apps = txn.open_table(APPS).map_err(backend)?;
    if !names.is_empty().map_err(backend)? || apps.is_empty().map_err(backend)? {
        return Ok(());
    }
    let order = txn.open_table(BY_CREATED).map_err(backend)?;
    let mut duplicates = Vec::new();
    for entry in order.range::<&str>(..).map_err(backend)? {
        let (_, id) = entry.map_err(backend)?;
        let id = id.value();
        let Some(v) = apps.get(id).map_err(backend)? else {
            continue;
        };
        let key = name_key(&decode::<StoredApp>(v.value())?.app.name);
        if names.get(key.as_str()).map_err(backend)?.is_some() {
            duplicates.push(id.to_owned());
        } else {
            names.insert(key.as_str(), id).map_err(backend)?;
        }
    }
    if !duplicates.is_empty() {
        tracing::warn!(
            app_ids = ?duplicates,
            "applications share a name with an older one: they are found by id only until renamed"
        );
    }
    Ok(())
}

/// Inserts an application with its ordering key and name, in `txn`.
/// `Ok(false)` (nothing written) when `only_first` and applications exist.
fn insert_app(
    txn: &WriteTransaction,
    app: &StoredApp,
    bytes: &[u8],
    only_first: bool,
) -> Result<bool, StoreError> {
    let id = app.app.id.as_str();
    let mut apps = txn.open_table(APPS).map_err(backend)?;
    if only_first && !apps.is_empty().map_err(backend)? {
        return Ok(false);
    }
    if apps.get(id).map_err(backend)?.is_some() {
        return Err(StoreError::Conflict {
            what: Entity::Application,
            id: id.to_owned(),
        });
    }
    let mut names = txn.open_table(APP_NAMES).map_err(backend)?;
    let key = name_key(&app.app.name);
    if names.get(key.as_str()).map_err(backend)?.is_some() {
        return Err(StoreError::Conflict {
            what: Entity::ApplicationName,
            id: app.app.name.trim().to_owned(),
        });
    }
    names.insert(key.as_str(), id).map_err(backend)?;
    apps.insert(id, bytes).map_err(backend)?;
    let mut idx = txn.open_table(BY_CREATED).map_err(backend)?;
    idx.insert(order_key(&app.app).as_str(), id)
        .map_err(backend)?;
    Ok(true)
}

/// Frees the name `old` held by application `id` (only if it is that
/// application's: an unindexed duplicate frees nothing).
fn free_name(txn: &WriteTransaction, old: &str, id: &str) -> Result<(), StoreError> {
    let mut names = txn.open_table(APP_NAMES).map_err(backend)?;
    let key = name_key(old);
    let held = names
        .get(key.as_str())
        .map_err(backend)?
        .is_some_and(|v| v.value() == id);
    if held {
        names.remove(key.as_str()).map_err(backend)?;
    }
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates) `tessera.redb` in `dir`, creating `dir` (0700).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let path = dir.join("tessera.redb");
        let db = Database::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        // Create the tables once so read transactions never meet a missing one.
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(APPS).map_err(backend)?;
        txn.open_table(BY_CREATED).map_err(backend)?;
        index_names(&txn)?;
        txn.open_table(ROLES).map_err(backend)?;
        txn.open_table(USERS).map_err(backend)?;
        txn.open_table(USERS_BY_EMAIL).map_err(backend)?;
        txn.open_table(AUDIT).map_err(backend)?;
        txn.open_table(USERS_BY_IDENTITY).map_err(backend)?;
        txn.open_table(USAGE_HOURS).map_err(backend)?;
        txn.open_table(USAGE_BY_HOUR).map_err(backend)?;
        revocations::init(&txn)?;
        people::init(&txn)?;
        device::init(&txn)?;
        keys::init(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(Self {
            db: Arc::new(db),
            budgets: Arc::default(),
        })
    }

    /// Reads one record of `table` by key.
    async fn read_one<T: Record + Send + 'static>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(table).map_err(backend)?;
            match t.get(key.as_str()).map_err(backend)? {
                Some(v) => decode(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl AppStore for EmbeddedStore {
    async fn insert(&self, app: &StoredApp) -> Result<(), StoreError> {
        let bytes = encode(app)?;
        let app = app.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            insert_app(&txn, &app, bytes.as_bytes(), false)?;
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn insert_first(&self, app: &StoredApp) -> Result<bool, StoreError> {
        let bytes = encode(app)?;
        let app = app.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            if !insert_app(&txn, &app, bytes.as_bytes(), true)? {
                return Ok(false);
            }
            txn.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<String>, StoreError> {
        let key = name_key(name);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let names = txn.open_table(APP_NAMES).map_err(backend)?;
            Ok(names
                .get(key.as_str())
                .map_err(backend)?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredApp>, StoreError> {
        self.read_one(APPS, id).await
    }

    async fn update(
        &self,
        app: &StoredApp,
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let mut new = app.clone();
        let id = app.app.id.clone();
        let order = order_key(&app.app);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut apps = txn.open_table(APPS).map_err(backend)?;
                let old = match apps.get(id.as_str()).map_err(backend)? {
                    Some(v) => decode::<StoredApp>(v.value())?,
                    None => {
                        return Err(StoreError::NotFound {
                            what: Entity::Application,
                            id,
                        });
                    }
                };
                if old.app.updated_at != read_at {
                    return Err(StoreError::Stale {
                        what: Entity::Application,
                        id,
                    });
                }
                keep_usage(&mut new, &old);
                let (old_name, new_name) = (name_key(&old.app.name), name_key(&new.app.name));
                if old_name != new_name {
                    let mut names = txn.open_table(APP_NAMES).map_err(backend)?;
                    if names.get(new_name.as_str()).map_err(backend)?.is_some() {
                        return Err(StoreError::Conflict {
                            what: Entity::ApplicationName,
                            id: new.app.name.trim().to_owned(),
                        });
                    }
                    names
                        .insert(new_name.as_str(), id.as_str())
                        .map_err(backend)?;
                    drop(names);
                    free_name(&txn, &old.app.name, &id)?;
                }
                let bytes = encode(&new)?;
                apps.insert(id.as_str(), bytes.as_bytes())
                    .map_err(backend)?;
                let old_order = order_key(&old.app);
                if old_order != order {
                    let mut idx = txn.open_table(BY_CREATED).map_err(backend)?;
                    idx.remove(old_order.as_str()).map_err(backend)?;
                    idx.insert(order.as_str(), id.as_str()).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        let batch = batch.to_vec();
        let oldest = oldest_kept_hour(chrono::Utc::now());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut apps = txn.open_table(APPS).map_err(backend)?;
                let mut hours = txn.open_table(USAGE_HOURS).map_err(backend)?;
                let mut by_hour = txn.open_table(USAGE_BY_HOUR).map_err(backend)?;
                for d in &batch {
                    let id = d.app_id.as_str();
                    let mut stored = match apps.get(id).map_err(backend)? {
                        Some(v) => decode::<StoredApp>(v.value())?,
                        None => continue,
                    };
                    add_usage(&mut stored, d);
                    let bytes = encode(&stored)?;
                    apps.insert(id, bytes.as_bytes()).map_err(backend)?;
                    for (hour, n) in kept_hours(d, oldest) {
                        let before = hours.get((id, hour)).map_err(backend)?.map(|v| v.value());
                        let after = before.unwrap_or(0).saturating_add(n);
                        hours.insert((id, hour), after).map_err(backend)?;
                        if before.is_none() {
                            by_hour.insert((hour, id), ()).map_err(backend)?;
                        }
                    }
                }
                // Lapsed hours of every application go with the write that
                // follows their lapse: the front of the index, usually empty.
                let lapsed: Vec<(i64, String)> = by_hour
                    .extract_from_if(..(oldest, ""), |_, _| true)
                    .map_err(backend)?
                    .take(USAGE_PURGE_PER_WRITE)
                    .map(|e| {
                        e.map(|(k, _)| {
                            let (hour, id) = k.value();
                            (hour, id.to_owned())
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map_err(backend)?;
                for (hour, id) in &lapsed {
                    hours.remove((id.as_str(), *hour)).map_err(backend)?;
                }
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let existed = {
                let mut apps = txn.open_table(APPS).map_err(backend)?;
                let old = match apps.remove(id.as_str()).map_err(backend)? {
                    Some(v) => Some(decode::<StoredApp>(v.value())?),
                    None => None,
                };
                if let Some(old) = &old {
                    let mut idx = txn.open_table(BY_CREATED).map_err(backend)?;
                    idx.remove(order_key(&old.app).as_str()).map_err(backend)?;
                    free_name(&txn, &old.app.name, &id)?;
                }
                let mut hours = txn.open_table(USAGE_HOURS).map_err(backend)?;
                let mut by_hour = txn.open_table(USAGE_BY_HOUR).map_err(backend)?;
                let gone: Vec<i64> = hours
                    .extract_from_if((id.as_str(), i64::MIN)..=(id.as_str(), i64::MAX), |_, _| {
                        true
                    })
                    .map_err(backend)?
                    .map(|e| e.map(|(k, _)| k.value().1))
                    .collect::<Result<_, _>>()
                    .map_err(backend)?;
                for hour in gone {
                    by_hour.remove((hour, id.as_str())).map_err(backend)?;
                }
                old.is_some()
            };
            txn.commit().map_err(backend)?;
            Ok(existed)
        })
        .await
    }

    async fn hourly_usage(&self, id: &str, since_hour: i64) -> Result<Vec<(i64, u64)>, StoreError> {
        let id = id.to_owned();
        let from = since_hour.max(oldest_kept_hour(chrono::Utc::now()));
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let hours = txn.open_table(USAGE_HOURS).map_err(backend)?;
            let mut out = Vec::new();
            for entry in hours
                .range((id.as_str(), from)..=(id.as_str(), i64::MAX))
                .map_err(backend)?
            {
                let (k, v) = entry.map_err(backend)?;
                out.push((k.value().1, v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let query = query.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let apps = txn.open_table(APPS).map_err(backend)?;
            let idx = txn.open_table(BY_CREATED).map_err(backend)?;
            let mut pager = AppPager::new(&query);
            let range = match &query.after {
                Some(after) => idx.range::<&str>((
                    std::ops::Bound::Excluded(after.as_str()),
                    std::ops::Bound::Unbounded,
                )),
                None => idx.range::<&str>(..),
            }
            .map_err(backend)?;
            for entry in range {
                let (order, id) = entry.map_err(backend)?;
                let Some(v) = apps.get(id.value()).map_err(backend)? else {
                    continue;
                };
                if !pager.offer(order.value(), decode(v.value())?) {
                    break;
                }
            }
            Ok(pager.finish())
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let apps = txn.open_table(APPS).map_err(backend)?;
            apps.len().map_err(backend)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            txn.open_table(APPS).map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        crate::store::conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lapsed_hours_are_purged_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for id in ["app_l", "app_m"] {
            store
                .insert(&crate::store::conformance::sample_app(id, 1))
                .await
                .unwrap();
        }
        let now = chrono::Utc::now();
        let (hour, oldest) = (crate::store::hour_start(now), oldest_kept_hour(now));
        // Left by earlier writes: hours past keeping, of the application
        // written next and of another one, and an hour just kept.
        store
            .blocking(move |db| {
                let txn = db.begin_write().map_err(backend)?;
                {
                    let mut t = txn.open_table(USAGE_HOURS).map_err(backend)?;
                    let mut idx = txn.open_table(USAGE_BY_HOUR).map_err(backend)?;
                    for (id, h, n) in [
                        ("app_l", oldest - 9 * 3600, 3),
                        ("app_l", oldest - 3600, 4),
                        ("app_l", oldest, 5),
                        ("app_m", oldest - 3600, 6),
                    ] {
                        t.insert((id, h), n).map_err(backend)?;
                        idx.insert((h, id), ()).map_err(backend)?;
                    }
                }
                txn.commit().map_err(backend)
            })
            .await
            .unwrap();
        assert_eq!(
            store.hourly_usage("app_l", 0).await.unwrap(),
            [(oldest, 5)],
            "lapsed hours are never returned"
        );
        let delta = UsageDelta {
            app_id: "app_l".into(),
            count: 1,
            last_at: now,
            last_ip: "192.0.2.1".into(),
            hours: vec![(hour, 1)],
        };
        store.record_usage(&[delta]).await.unwrap();
        let rows = || {
            store.blocking(|db| {
                let txn = db.begin_read().map_err(backend)?;
                let t = txn.open_table(USAGE_HOURS).map_err(backend)?;
                let mut rows = Vec::new();
                for e in t.range::<(&str, i64)>(..).map_err(backend)? {
                    let (k, v) = e.map_err(backend)?;
                    let (id, h) = k.value();
                    rows.push((id.to_owned(), h, v.value()));
                }
                let idx = txn.open_table(USAGE_BY_HOUR).map_err(backend)?;
                let mut index = Vec::new();
                for e in idx.range::<(i64, &str)>(..).map_err(backend)? {
                    let (k, _) = e.map_err(backend)?;
                    let (h, id) = k.value();
                    index.push((id.to_owned(), h));
                }
                Ok((rows, index))
            })
        };
        let (got, index) = rows().await.unwrap();
        assert_eq!(
            got,
            [
                ("app_l".to_owned(), oldest, 5),
                ("app_l".to_owned(), hour, 1)
            ],
            "every application's lapsed hours are gone, the kept ones stay"
        );
        assert_eq!(
            index,
            [("app_l".to_owned(), oldest), ("app_l".to_owned(), hour)],
            "the index follows"
        );
        assert!(store.delete("app_l").await.unwrap());
        assert_eq!(rows().await.unwrap(), (vec![], vec![]), "delete takes both");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_from_before_the_name_index_opens_and_is_indexed() {
        use crate::store::conformance::sample_app;
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            // Written as an older gateway did: two "Billing"s, no index.
            let mut apps = vec![sample_app("app_new", 3), sample_app("app_old", 1)];
            apps[0].app.name = "billing".into();
            apps[1].app.name = "Billing".into();
            apps.push(sample_app("app_solo", 2));
            store
                .blocking(move |db| {
                    let txn = db.begin_write().map_err(backend)?;
                    {
                        let mut t = txn.open_table(APPS).map_err(backend)?;
                        let mut idx = txn.open_table(BY_CREATED).map_err(backend)?;
                        for a in &apps {
                            let bytes = encode(a)?;
                            t.insert(a.app.id.as_str(), bytes.as_bytes())
                                .map_err(backend)?;
                            idx.insert(order_key(&a.app).as_str(), a.app.id.as_str())
                                .map_err(backend)?;
                        }
                    }
                    txn.commit().map_err(backend)
                })
                .await
                .unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(
            store.find_by_name("BILLING").await.unwrap().as_deref(),
            Some("app_old"),
            "the oldest holder keeps the name"
        );
        assert_eq!(
            store
                .find_by_name("sample app_solo")
                .await
                .unwrap()
                .as_deref(),
            Some("app_solo")
        );
        assert!(store.get("app_new").await.unwrap().is_some(), "kept, by id");
        assert_eq!(store.count().await.unwrap(), 3);
        // Deleting the indexed one frees the name; the duplicate's delete
        // frees nothing it did not hold.
        assert!(store.delete("app_new").await.unwrap());
        assert_eq!(
            store.find_by_name("billing").await.unwrap().as_deref(),
            Some("app_old")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let app = crate::store::conformance::sample_app("app_reopen", 1);
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.insert(&app).await.unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.get("app_reopen").await.unwrap(), Some(app));
    }
}

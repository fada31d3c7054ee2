//! The embedded store: one redb file under the data directory.
//!
//! redb commits are copy-on-write with an fsync before `commit` returns, so
//! an acknowledged write survives a crash or `kill -9`, and a failed write
//! leaves the previous state intact. redb is synchronous, so every call runs
//! on tokio's blocking pool, never on an actix worker.

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::Arc;

use super::common::{AppPager, Record, add_usage, decode, encode, keep_usage, order_key};
use super::{AppStore, Entity, ListPage, ListQuery, StoreError, StoredApp, UsageDelta};

mod audit;
mod identity;
mod people;
mod revocations;

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const BY_CREATED: TableDefinition<&str, &str> = TableDefinition::new("apps_by_created");
const ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const USERS_BY_EMAIL: TableDefinition<&str, &str> = TableDefinition::new("users_by_email");
const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
/// Linked identity (`store::identity_key`) → user id.
const USERS_BY_IDENTITY: TableDefinition<&str, &str> = TableDefinition::new("users_by_identity");

/// The redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStore")
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
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
        txn.open_table(ROLES).map_err(backend)?;
        txn.open_table(USERS).map_err(backend)?;
        txn.open_table(USERS_BY_EMAIL).map_err(backend)?;
        txn.open_table(AUDIT).map_err(backend)?;
        txn.open_table(USERS_BY_IDENTITY).map_err(backend)?;
        revocations::init(&txn)?;
        people::init(&txn)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
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
        let id = app.app.id.clone();
        let order = order_key(&app.app);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut apps = txn.open_table(APPS).map_err(backend)?;
                if apps.get(id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        what: Entity::Application,
                        id,
                    });
                }
                apps.insert(id.as_str(), bytes.as_bytes())
                    .map_err(backend)?;
                let mut idx = txn.open_table(BY_CREATED).map_err(backend)?;
                idx.insert(order.as_str(), id.as_str()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
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
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut apps = txn.open_table(APPS).map_err(backend)?;
                for d in &batch {
                    let mut stored = match apps.get(d.app_id.as_str()).map_err(backend)? {
                        Some(v) => decode::<StoredApp>(v.value())?,
                        None => continue,
                    };
                    add_usage(&mut stored, d);
                    let bytes = encode(&stored)?;
                    apps.insert(d.app_id.as_str(), bytes.as_bytes())
                        .map_err(backend)?;
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
                }
                old.is_some()
            };
            txn.commit().map_err(backend)?;
            Ok(existed)
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

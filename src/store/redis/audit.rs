//! The audit log in the Redis store: records in the `audit` hash, their ids
//! in the `audit:order` index (ids sort by time).

use async_trait::async_trait;

use super::{RedisStore, bounded, hmget, unavailable};
use crate::store::common::{encode, page};
use crate::store::{AuditRecord, AuditStore, StoreError};

#[async_trait]
impl AuditStore for RedisStore {
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let (hash, order) = (self.key("audit"), self.key("audit:order"));
        let body = encode(record)?;
        bounded(async {
            let mut c = self.conn().await?;
            // Two keys, no read: one MULTI/EXEC, nothing to watch.
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
            // One past the limit: tells whether more remain.
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&order)
                .arg(&from)
                .arg("-")
                .arg("BYLEX")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(limit.saturating_add(1))
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            if ids.is_empty() {
                return Ok((Vec::new(), None));
            }
            let records: Vec<AuditRecord> = hmget(&mut c, &hash, &ids).await?;
            Ok(page(records, limit, |r| r.id.clone()))
        })
        .await
    }
}

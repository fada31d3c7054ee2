//! The audit log in the Redis store: records in the `audit` hash, their ids
//! in the `audit:order` index (ids sort by time).

use async_trait::async_trait;

use super::{Lex, RedisStore, bounded, hmget, members_after, unavailable};
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
            // One past the limit: tells whether more remain.
            let ids = members_after(
                &mut c,
                &order,
                before.as_deref(),
                Lex::Down,
                limit.saturating_add(1),
            )
            .await?;
            if ids.is_empty() {
                return Ok((Vec::new(), None));
            }
            let records: Vec<AuditRecord> = hmget(&mut c, &hash, &ids).await?;
            Ok(page(records, limit, |r| r.id.clone()))
        })
        .await
    }
}

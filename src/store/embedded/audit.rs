//! The audit log in the embedded store, keyed by its ordered id.

use async_trait::async_trait;
use redb::ReadableDatabase;

use super::{AUDIT, EmbeddedStore, backend, decode, encode};
use crate::store::{AuditRecord, AuditStore, StoreError};

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.blocking(move |db| {
            let bytes = encode(&record)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(AUDIT).map_err(backend)?;
                t.insert(record.id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn list_audit(
        &self,
        limit: usize,
        before: Option<String>,
    ) -> Result<(Vec<AuditRecord>, Option<String>), StoreError> {
        self.blocking(move |db| {
            let limit = limit.max(1);
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(AUDIT).map_err(backend)?;
            let range = match &before {
                Some(b) => t.range::<&str>(..b.as_str()),
                None => t.range::<&str>(..),
            }
            .map_err(backend)?;
            let mut out: Vec<AuditRecord> = Vec::new();
            let mut more = false;
            for entry in range.rev() {
                let (_, v) = entry.map_err(backend)?;
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push(decode(v.value())?);
            }
            let next = if more {
                out.last().map(|r| r.id.clone())
            } else {
                None
            };
            Ok((out, next))
        })
        .await
    }
}

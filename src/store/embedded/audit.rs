//! The audit log in the embedded store, keyed by its ordered id.

use async_trait::async_trait;
use redb::ReadableDatabase;

use super::{AUDIT, EmbeddedStore, backend};
use crate::store::common::{decode, encode, page};
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
                t.insert(record.id.as_str(), bytes.as_bytes())
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
            // One past the limit: tells whether more remain.
            let mut out: Vec<AuditRecord> = Vec::new();
            for entry in range.rev().take(limit.saturating_add(1)) {
                let (_, v) = entry.map_err(backend)?;
                out.push(decode(v.value())?);
            }
            Ok(page(out, limit, |r| r.id.clone()))
        })
        .await
    }
}

//! The signing-key ring in the embedded store: one table of keys by `kid`
//! and the ring's version in the meta table. One process owns the file, so
//! nothing is published: the key-ring follower polls the version.

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::revocations::META;
use super::{EmbeddedStore, backend};
use crate::store::common::{decode, encode};
use crate::store::{KeyStore, StoreError, StoredKey, StoredRing};

/// `kid` → a `StoredKey` as JSON.
const SIGNING_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("signing_keys");
/// The ring's version in [`META`]: 8 bytes big-endian, absent for 0.
const VERSION: &str = "signing_keys_version";

/// Creates the table, so read transactions never meet a missing one.
pub(super) fn init(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SIGNING_KEYS).map_err(backend)?;
    Ok(())
}

/// The version stored in `meta`; 0 when absent. A value of another length
/// is a damaged store, not version 0: a swap from 0 would then overwrite a
/// ring it never read.
fn read_version(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, StoreError> {
    match meta.get(VERSION).map_err(backend)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("signing key ring version".into())),
    }
}

#[async_trait]
impl KeyStore for EmbeddedStore {
    async fn load_keys(&self) -> Result<StoredRing, StoreError> {
        self.blocking(|db| {
            // One read transaction: the version and the keys are one snapshot.
            let txn = db.begin_read().map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let version = read_version(&meta)?;
            let table = txn.open_table(SIGNING_KEYS).map_err(backend)?;
            let mut keys = Vec::new();
            for entry in table.iter().map_err(backend)? {
                let (_, v) = entry.map_err(backend)?;
                keys.push(decode::<StoredKey>(v.value())?);
            }
            Ok(StoredRing { version, keys })
        })
        .await
    }

    async fn swap_keys(
        &self,
        version: u64,
        upsert: &[StoredKey],
        remove: &[String],
    ) -> Result<Option<u64>, StoreError> {
        // Encoded before the transaction: an unencodable key writes nothing.
        let upsert = upsert
            .iter()
            .map(|k| Ok((k.kid.clone(), encode(k)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let remove = remove.to_vec();
        self.blocking(move |db| {
            // redb runs one write transaction at a time: nothing can change
            // the version between the comparison and the commit.
            let txn = db.begin_write().map_err(backend)?;
            let next = {
                let mut meta = txn.open_table(META).map_err(backend)?;
                let current = read_version(&meta)?;
                if current != version {
                    None
                } else {
                    let next = current.checked_add(1).ok_or_else(|| {
                        StoreError::Corrupt("signing key ring version overflows".into())
                    })?;
                    let mut table = txn.open_table(SIGNING_KEYS).map_err(backend)?;
                    for (kid, json) in &upsert {
                        table
                            .insert(kid.as_str(), json.as_bytes())
                            .map_err(backend)?;
                    }
                    for kid in &remove {
                        table.remove(kid.as_str()).map_err(backend)?;
                    }
                    meta.insert(VERSION, next.to_be_bytes().as_slice())
                        .map_err(backend)?;
                    Some(next)
                }
            };
            match next {
                Some(_) => txn.commit().map_err(backend)?,
                None => txn.abort().map_err(backend)?,
            }
            Ok(next)
        })
        .await
    }
}

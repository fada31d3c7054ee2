//! The signing-key ring in the Redis store. PLACEHOLDER: replaced by the
//! keystore branch.

use async_trait::async_trait;

use super::RedisStore;
use crate::store::{KeyStore, StoreError, StoredKey, StoredRing};

#[async_trait]
impl KeyStore for RedisStore {
    async fn load_keys(&self) -> Result<StoredRing, StoreError> {
        Err(StoreError::Unavailable("placeholder".into()))
    }
    async fn swap_keys(
        &self,
        _version: u64,
        _upsert: &[StoredKey],
        _remove: &[String],
    ) -> Result<Option<u64>, StoreError> {
        Err(StoreError::Unavailable("placeholder".into()))
    }
}

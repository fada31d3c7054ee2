//! The signing-key ring in the embedded store. PLACEHOLDER: replaced by the
//! keystore branch.

use async_trait::async_trait;

use super::EmbeddedStore;
use crate::store::{KeyStore, StoreError, StoredKey, StoredRing};

#[async_trait]
impl KeyStore for EmbeddedStore {
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

//! The gateway's shared state, built once at start-up and passed to every
//! handler as `web::Data<Gateway>`.

use std::sync::Arc;
use std::time::Duration;

use super::cache::{AppCache, SecretCache};
use super::limiter::FailureLimiter;
use super::metrics::Metrics;
use super::usage::UsageRecorder;
use crate::config::Settings;
use crate::crypto::{KeyRing, Pepper, SecretHasher};
use crate::domain::Catalogue;
use crate::store::AppStore;

/// Everything a request may need.
pub struct Gateway {
    /// The loaded settings.
    pub settings: Settings,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Signing keys.
    pub keys: KeyRing,
    /// Permission catalogue.
    pub catalogue: Catalogue,
    /// Application storage.
    pub apps: Arc<dyn AppStore>,
    /// argon2id on a bounded pool.
    pub hasher: SecretHasher,
    /// Applications recently read.
    pub app_cache: AppCache,
    /// Secrets recently verified (keyed by HMAC, never the secret).
    pub secret_cache: SecretCache,
    /// Failed-attempt limiter.
    pub limiter: FailureLimiter,
    /// Per-process HMAC key for the secret cache.
    pub pepper: Pepper,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Usage figures waiting to be written.
    pub usage: UsageRecorder,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// Why the gateway could not be assembled.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl Gateway {
    /// Assembles the state from settings, a key ring and a store.
    pub fn new(
        settings: Settings,
        keys: KeyRing,
        apps: Arc<dyn AppStore>,
    ) -> Result<Self, BuildError> {
        let catalogue = Catalogue::new(settings.permissions.clone())
            .map_err(|e| BuildError(format!("permissions: {e}")))?;
        let hasher = SecretHasher::new(settings.hash_concurrency, settings.hash_queue)
            .map_err(|e| BuildError(e.to_string()))?;
        let pepper = Pepper::random().map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            issuer: settings.issuer(),
            keys,
            catalogue,
            apps,
            hasher,
            // Changes made here invalidate at once; the TTL bounds staleness
            // for changes made elsewhere.
            app_cache: AppCache::new(Duration::from_secs(30), 100_000),
            secret_cache: SecretCache::new(Duration::from_secs(settings.secret_cache_ttl), 100_000),
            limiter: FailureLimiter::new(
                Duration::from_secs(60),
                settings.max_failures_per_app,
                settings.max_failures_per_ip,
            ),
            pepper,
            metrics: Metrics::default(),
            usage: UsageRecorder::default(),
            settings,
        })
    }
}

//! The JWKS cache: fetched at start, refreshed when it expires
//! (`Cache-Control: max-age`) or when an unknown `kid` appears. Refreshes are
//! rate-limited and single-flight (concurrent requests wait for one fetch),
//! and a failed fetch keeps the last good key set.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{VerifierConfig, VerifyError};
use crate::crypto::jose::{self, JoseError, VerifyingKey};

struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    fetched: Instant,
    max_age: Duration,
}

/// Keys by `kid`.
pub struct JwksCache {
    url: String,
    http: reqwest::Client,
    set: RwLock<Arc<KeySet>>,
    /// Held during a fetch; holds the time of the last attempt.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    default_max_age: Duration,
    /// Fetches that succeeded, and that failed (`Verifier` registers them).
    pub(super) refreshes: prometheus::IntCounterVec,
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    v.split(',').find_map(|d| {
        let (k, n) = d.trim().split_once('=')?;
        (k.eq_ignore_ascii_case("max-age"))
            .then(|| n.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

impl JwksCache {
    /// An empty cache for `config.jwks_url`.
    pub fn new(config: &VerifierConfig) -> Result<Self, VerifyError> {
        let refreshes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "tessera_verifier_jwks_refreshes_total",
                "JWKS fetches by result (ok, failed).",
            ),
            &["result"],
        )
        .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        for result in ["ok", "failed"] {
            refreshes.with_label_values(&[result]);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        Ok(Self {
            url: config.jwks_url.clone(),
            http,
            set: RwLock::new(Arc::new(KeySet {
                keys: HashMap::new(),
                fetched: Instant::now(),
                max_age: Duration::ZERO,
            })),
            refresh: tokio::sync::Mutex::new(None),
            min_refresh: config.jwks_min_refresh,
            default_max_age: config.jwks_default_max_age,
            refreshes,
        })
    }

    /// A cache holding `jwks_json` for good (it never expires or refreshes).
    pub fn fixed(config: &VerifierConfig, jwks_json: &str) -> Result<Self, VerifyError> {
        let me = Self::new(config)?;
        let keys =
            jose::parse_jwks(jwks_json).map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        *me.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(KeySet {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
            fetched: Instant::now(),
            max_age: Duration::MAX,
        });
        Ok(me)
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the key set and counts the result.
    async fn fetch(&self) -> Result<(), String> {
        let res = self.fetch_uncounted().await;
        let result = if res.is_ok() { "ok" } else { "failed" };
        self.refreshes.with_label_values(&[result]).inc();
        res
    }

    async fn fetch_uncounted(&self) -> Result<(), String> {
        let res = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let age = max_age(res.headers()).unwrap_or(self.default_max_age);
        let text = res.text().await.map_err(|e| e.to_string())?;
        let keys = jose::parse_jwks(&text).map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Err("the JWKS holds no usable key".into());
        }
        let set = KeySet {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
            fetched: Instant::now(),
            max_age: age,
        };
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }

    /// Fetches now, unconditionally (start-up).
    pub async fn refresh_now(&self) -> Result<(), String> {
        let mut last = self.refresh.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    /// Refreshes unless one happened within the minimum interval; callers
    /// arriving during a fetch wait for it instead of starting another.
    async fn refresh_limited(&self) {
        let mut last = self.refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.fetch().await {
            // Keep serving with the last good set.
            tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed");
        }
    }

    /// The key for `kid`, refreshing when the set expired or lacks it.
    pub async fn key(&self, kid: &str) -> Result<VerifyingKey, JoseError> {
        let set = self.current();
        if set.max_age != Duration::MAX && set.fetched.elapsed() > set.max_age {
            self.refresh_limited().await;
        } else if let Some(k) = set.keys.get(kid) {
            return Ok(k.clone());
        }
        if let Some(k) = self.current().keys.get(kid) {
            return Ok(k.clone());
        }
        self.refresh_limited().await;
        self.current()
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| JoseError::UnknownKey(kid.chars().take(64).collect()))
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.current().keys.len()
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age_is_read() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::CACHE_CONTROL,
            "public, max-age=120".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(120)));
        h.insert(reqwest::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&h), None);
    }
}

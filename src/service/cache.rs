//! In-process caches on the token-exchange path.
//!
//! Both are bounded: when full, expired entries are swept, and if that frees
//! nothing the cache is cleared (a cold miss is slower, never wrong).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::StoredApp;

struct Bounded<K, V> {
    ttl: Duration,
    max: usize,
    map: RwLock<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            map: RwLock::new(HashMap::new()),
        }
    }

    fn get<Q>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        // A poisoned lock only means another thread panicked mid-insert of a
        // plain value; the map is still consistent.
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(k) {
            Some((at, v)) if at.elapsed() < self.ttl => Some(v.clone()),
            _ => None,
        }
    }

    fn put(&self, k: K, v: V) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(k, (Instant::now(), v));
    }

    fn remove_where(&self, f: impl Fn(&K, &V) -> bool) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, (_, v)| !f(k, v));
    }
}

/// Applications by id, as last read from the store.
pub struct AppCache(Bounded<String, Arc<StoredApp>>);

impl AppCache {
    /// A cache whose entries live `ttl`, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self(Bounded::new(ttl, max))
    }
    /// A fresh-enough copy, if any.
    pub fn get(&self, id: &str) -> Option<Arc<StoredApp>> {
        self.0.get(id)
    }
    /// Remembers what the store returned.
    pub fn put(&self, app: Arc<StoredApp>) {
        self.0.put(app.app.id.clone(), app);
    }
    /// Forgets one application (after any change to it).
    pub fn invalidate(&self, id: &str) {
        self.0.remove_where(|k, _| k == id);
    }
    /// Forgets every application (after a change touching many).
    pub fn clear(&self) {
        self.0.remove_where(|_, _| true);
    }
}

/// Effective grants per application id (see `service::grants`).
pub struct GrantsCache(Bounded<String, Arc<crate::service::grants::Grants>>);

impl GrantsCache {
    /// A cache whose entries live `ttl`, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self(Bounded::new(ttl, max))
    }
    /// The cached grants of an application.
    pub fn get(&self, id: &str) -> Option<Arc<crate::service::grants::Grants>> {
        self.0.get(id)
    }
    /// Remembers computed grants.
    pub fn put(&self, id: String, g: Arc<crate::service::grants::Grants>) {
        self.0.put(id, g);
    }
    /// Forgets one application's grants.
    pub fn invalidate(&self, id: &str) {
        self.0.remove_where(|k, _| k == id);
    }
    /// Forgets everything (a role or a user changed).
    pub fn clear(&self) {
        self.0.remove_where(|_, _| true);
    }
}

/// A verified secret: which application, and which hash it matched.
#[derive(Clone)]
pub struct VerifiedSecret {
    /// The application it belongs to.
    pub app_id: String,
    /// The stored hash it was verified against; a hit counts only while the
    /// application still holds this very hash (rotation changes it).
    pub secret_hash: Arc<str>,
}

/// Recently verified secrets keyed by HMAC-SHA256(pepper, secret).
pub struct SecretCache(Bounded<[u8; 32], VerifiedSecret>);

impl SecretCache {
    /// A cache whose entries live `ttl`, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self(Bounded::new(ttl, max))
    }
    /// The entry for a digest, if fresh.
    pub fn get(&self, digest: &[u8; 32]) -> Option<VerifiedSecret> {
        self.0.get(digest)
    }
    /// Remembers a successful verification.
    pub fn put(&self, digest: [u8; 32], v: VerifiedSecret) {
        self.0.put(digest, v);
    }
    /// Forgets everything.
    pub fn clear(&self) {
        self.0.remove_where(|_, _| true);
    }
    /// Forgets every entry of one application (revocation, rotation).
    pub fn invalidate_app(&self, app_id: &str) {
        self.0.remove_where(|_, v| v.app_id == app_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let c: Bounded<u32, u32> = Bounded::new(Duration::from_millis(30), 3);
        for i in 0..10 {
            c.put(i, i);
        }
        assert!(c.map.read().unwrap().len() <= 3);
        c.put(42, 1);
        assert_eq!(c.get(&42), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&42), None);
    }
}

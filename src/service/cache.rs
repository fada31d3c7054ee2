//! In-process caches on the token-exchange path.
//!
//! Both are bounded: when full, expired entries are swept, and if that frees
//! nothing the cache is cleared (a cold miss is slower, never wrong).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::domain::claims::ClaimsTemplate;
use crate::service::grants::Grants;
use crate::store::StoredApp;

struct Bounded<K, V> {
    ttl: Duration,
    max: usize,
    map: RwLock<HashMap<K, (Instant, V)>>,
    /// Bumped by every invalidation. A value read from the store before an
    /// invalidation must not be cached after it, or a revoked application
    /// could come back from a read that raced the revoke.
    epoch: AtomicU64,
}

impl<K: Eq + Hash, V: Clone> Bounded<K, V> {
    fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            map: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches `v` only if nothing was invalidated since `epoch` was read.
    fn put_if_current(&self, k: K, v: V, epoch: u64) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if map.len() >= self.max {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(k, (Instant::now(), v));
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

    fn remove_where(&self, f: impl Fn(&K, &V) -> bool) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.retain(|k, (_, v)| !f(k, v));
    }
}

/// An application as read from the store, and when: `as_of_ms` is taken
/// before the read began, so every change committed after it is newer.
/// Tokens minted from a snapshot carry this instant (`iat_ms`), which is
/// what subject revocations compare against.
#[derive(Debug)]
pub struct AppSnapshot {
    /// The record.
    pub stored: Arc<StoredApp>,
    /// Milliseconds since the epoch, no later than the read.
    pub as_of_ms: i64,
    /// The claims of this application's default token, serialized once
    /// (`token::issue`): they follow from this record and its grants alone.
    default_token: RwLock<Option<DefaultToken>>,
}

/// What every token of an application asked for without `scope` or
/// `audience` shares, prepared from one snapshot and one grants value:
/// each token adds only its instants and its id.
#[derive(Debug)]
pub struct DefaultToken {
    /// The grants it was prepared with: it serves only those (the record
    /// is the snapshot holding it).
    pub grants: Arc<Grants>,
    /// Every claim but `exp`, `iat`, `iat_ms`, `nbf` and `jti`.
    pub claims: ClaimsTemplate,
    /// The granted scope, as answered.
    pub scope: Arc<str>,
    /// The token lifetime, seconds.
    pub ttl: u64,
}

impl AppSnapshot {
    /// `stored`, read no earlier than `as_of_ms`.
    pub fn new(stored: Arc<StoredApp>, as_of_ms: i64) -> Self {
        Self {
            stored,
            as_of_ms,
            default_token: RwLock::new(None),
        }
    }

    /// Runs `f` on the default token prepared for exactly `grants` (the
    /// same value, not an equal one), if there is one.
    pub fn with_default_token<R>(
        &self,
        grants: &Arc<Grants>,
        f: impl FnOnce(&DefaultToken) -> R,
    ) -> Option<R> {
        // A poisoned lock holds a complete value or none: writes are plain.
        let slot = self.default_token.read().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|d| Arc::ptr_eq(&d.grants, grants))
            .map(f)
    }

    /// Keeps `prepared`, replacing one prepared for other grants.
    pub fn keep_default_token(&self, prepared: DefaultToken) {
        *self
            .default_token
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(prepared);
    }
}

/// Applications by id, as last read from the store.
pub struct AppCache(Bounded<String, Arc<AppSnapshot>>);

impl AppCache {
    /// A cache whose entries live `ttl`, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self(Bounded::new(ttl, max))
    }
    /// A fresh-enough copy, if any.
    pub fn get(&self, id: &str) -> Option<Arc<AppSnapshot>> {
        self.0.get(id)
    }
    /// The invalidation epoch; read it before reading the store.
    pub fn epoch(&self) -> u64 {
        self.0.epoch()
    }
    /// Remembers what the store returned, unless an invalidation happened
    /// since `epoch` (then the read may be stale and is not kept).
    pub fn put(&self, snap: Arc<AppSnapshot>, epoch: u64) {
        self.0
            .put_if_current(snap.stored.app.id.clone(), snap, epoch);
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
pub struct GrantsCache(Bounded<String, Arc<Grants>>);

impl GrantsCache {
    /// A cache whose entries live `ttl`, holding at most `max`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self(Bounded::new(ttl, max))
    }
    /// The cached grants of an application.
    pub fn get(&self, id: &str) -> Option<Arc<Grants>> {
        self.0.get(id)
    }
    /// The invalidation epoch; read it before computing grants.
    pub fn epoch(&self) -> u64 {
        self.0.epoch()
    }
    /// Remembers computed grants unless invalidated since `epoch`.
    pub fn put(&self, id: String, g: Arc<Grants>, epoch: u64) {
        self.0.put_if_current(id, g, epoch);
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
    /// The application it belongs to (shared: a hit clones it).
    pub app_id: Arc<str>,
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
    /// The invalidation epoch; read it before verifying.
    pub fn epoch(&self) -> u64 {
        self.0.epoch()
    }
    /// Remembers a successful verification, unless the application was
    /// invalidated since `epoch` (a revoke or rotation raced it).
    pub fn put(&self, digest: [u8; 32], v: VerifiedSecret, epoch: u64) {
        self.0.put_if_current(digest, v, epoch);
    }
    /// Forgets everything.
    pub fn clear(&self) {
        self.0.remove_where(|_, _| true);
    }
    /// Forgets every entry of one application (revocation, rotation).
    pub fn invalidate_app(&self, app_id: &str) {
        self.0.remove_where(|_, v| *v.app_id == *app_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let c: Bounded<u32, u32> = Bounded::new(Duration::from_millis(30), 3);
        for i in 0..10 {
            c.put_if_current(i, i, c.epoch());
        }
        assert!(c.map.read().unwrap().len() <= 3);
        c.put_if_current(42, 1, c.epoch());
        assert_eq!(c.get(&42), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&42), None);
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let c: Bounded<u32, u32> = Bounded::new(Duration::from_secs(30), 10);
        let before = c.epoch();
        c.remove_where(|k, _| *k == 1);
        c.put_if_current(1, 1, before);
        assert_eq!(c.get(&1), None, "stale read cached after an invalidation");
        c.put_if_current(1, 2, c.epoch());
        assert_eq!(c.get(&1), Some(2));
    }
}

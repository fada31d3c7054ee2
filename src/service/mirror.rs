//! The gateway's own in-memory copy of the revocation list: the same
//! [`RevocationMirror`] verifiers hold, so the edge (`/auth/forward`)
//! refuses a revoked token with no store read per request.
//!
//! It is fed from three places: the whole live set read at start-up (and
//! again after the Redis subscription was lost), every revocation this
//! gateway stores (applied before the call that stored it answers), and,
//! on Redis, every revocation another gateway publishes. Entries only ever
//! get stricter (a later not-before, a longer life), so applying one twice
//! or out of order changes nothing; a reload merges instead of replacing,
//! and an entry published while a reload runs is never lost.
//!
//! Until a load has completed the mirror is not trusted: checks go to the
//! store, as they did before there was a mirror. On Redis it is trusted
//! only while the change subscription is up and a load has completed since
//! it was (re)established: what another gateway revokes while this one is
//! not subscribed reaches it through nobody, so until then the store
//! answers (and an unreachable store refuses: fail closed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Gateway;
use crate::domain::{DomainError, Revocation, TokenRef};
use crate::verifier::mirror::RevocationMirror;

/// Entries read per page while loading.
const LOAD_PAGE: usize = 1_000;

/// The mirror and whether it may be trusted.
#[derive(Default)]
pub struct GatewayMirror {
    mirror: RevocationMirror,
    /// Bumped whenever the subscription is lost or (re)established: only a
    /// load begun under the current generation makes the mirror trusted.
    generation: AtomicU64,
    /// One more than the generation the latest completed load began under
    /// (0: none has completed). One number, so a load finishing while the
    /// subscription changes can never mark the mirror fresh by mistake.
    loaded: AtomicU64,
    /// On Redis: the change subscription is down (or not yet up).
    unsubscribed: AtomicBool,
}

impl GatewayMirror {
    /// Adds an entry this gateway stored or heard of.
    pub fn apply(&self, entry: &Revocation) {
        self.mirror.apply(entry);
    }

    /// The subscription was (re)established: entries may have been missed
    /// until the next load completes.
    pub fn lost_track(&self) {
        // Generation first: between the two stores the mirror must not look
        // fresh from a load made while unsubscribed.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.unsubscribed.store(false, Ordering::SeqCst);
    }

    /// The subscription is down (or, at start on Redis, not up yet): other
    /// gateways' revocations may be missed from now on, so the store
    /// answers until the subscription is back and a load has completed.
    pub fn unsubscribed(&self) {
        self.unsubscribed.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The generation a load begins under; `None` while unsubscribed.
    fn begin_load(&self) -> Option<u64> {
        (!self.unsubscribed.load(Ordering::SeqCst)).then(|| self.generation.load(Ordering::SeqCst))
    }

    /// A load begun under `generation` completed.
    fn finish_load(&self, generation: u64) {
        self.loaded.fetch_max(generation + 1, Ordering::SeqCst);
    }

    /// Whether checks may rely on the mirror alone.
    pub fn is_fresh(&self) -> bool {
        !self.unsubscribed.load(Ordering::SeqCst)
            && self.loaded.load(Ordering::SeqCst) == self.generation.load(Ordering::SeqCst) + 1
    }

    /// The signing keys withdrawn (key revocations held).
    pub fn revoked_kids(&self) -> Vec<String> {
        self.mirror.revoked_kids()
    }

    /// Forgets entries whose tokens have all expired.
    pub fn purge(&self, now: i64) -> usize {
        self.mirror.purge(now)
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.mirror.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.mirror.is_empty()
    }

    /// The highest feed position this gateway has applied.
    pub fn position(&self) -> u64 {
        self.mirror.position()
    }
}

/// Exposes the feed position this gateway has seen as
/// `tessera_revocation_feed_position`: a verifier's
/// `tessera_verifier_mirror_position` below it is how far behind that
/// verifier is. Holds the gateway weakly (the gauge lives in the gateway).
pub fn watch(gw: &std::sync::Arc<Gateway>) {
    let weak = std::sync::Arc::downgrade(gw);
    gw.metrics.gauge_fn(
        "tessera_revocation_feed_position",
        "Highest revocation feed position this gateway has applied.",
        move || {
            weak.upgrade()
                .map_or(0.0, |g| g.revocation_mirror.position() as f64)
        },
    );
}

/// Reads every live entry from the store into the mirror; the mirror is
/// trusted afterwards unless the subscription was lost or re-established
/// meanwhile (or is down: then nothing is read).
pub async fn load(gw: &Gateway) -> Result<usize, DomainError> {
    let m = &gw.revocation_mirror;
    let Some(generation) = m.begin_load() else {
        // It could not make the mirror trusted: nothing to gain reading.
        return Ok(0);
    };
    let mut cursor: Option<String> = None;
    let mut loaded = 0;
    loop {
        let page = gw.revocations.feed(cursor.as_deref(), LOAD_PAGE).await?;
        for e in &page.entries {
            m.apply(e);
        }
        loaded += page.entries.len();
        if !page.more {
            break;
        }
        cursor = Some(page.cursor);
    }
    m.finish_load(generation);
    Ok(loaded)
}

/// Whether a token is revoked: by the mirror when it is fresh (no I/O),
/// else by the store.
pub async fn is_revoked(gw: &Gateway, token: &TokenRef<'_>) -> Result<bool, DomainError> {
    if gw.revocation_mirror.is_fresh() {
        return Ok(gw.revocation_mirror.mirror.is_revoked(token));
    }
    Ok(gw.revocations.is_revoked(token).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_load_begun_while_subscribed_makes_the_mirror_fresh() {
        // The embedded store: one load and it is trusted.
        let m = GatewayMirror::default();
        assert!(!m.is_fresh());
        let g = m.begin_load().unwrap();
        m.finish_load(g);
        assert!(m.is_fresh());

        // On Redis, before the first subscription: no load counts.
        let m = GatewayMirror::default();
        m.unsubscribed();
        assert!(m.begin_load().is_none());
        assert!(!m.is_fresh());
        m.lost_track();
        assert!(!m.is_fresh(), "subscribed, but nothing loaded since");
        let g = m.begin_load().unwrap();
        m.finish_load(g);
        assert!(m.is_fresh());

        // A load that began before the subscription dropped and came back
        // finishes afterwards: still not fresh.
        let g = m.begin_load().unwrap();
        m.unsubscribed();
        assert!(!m.is_fresh());
        m.lost_track();
        m.finish_load(g);
        assert!(!m.is_fresh());
        // Nor does an older load finishing late undo a newer one.
        let newer = m.begin_load().unwrap();
        m.finish_load(newer);
        m.finish_load(g);
        assert!(m.is_fresh());
    }
}

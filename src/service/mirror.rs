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
//! store, as they did before there was a mirror.

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
    /// A load completed and no subscription was lost since.
    fresh: AtomicBool,
    /// Bumped when the subscription is lost: a load that began before it
    /// does not make the mirror fresh.
    generation: AtomicU64,
}

impl GatewayMirror {
    /// Adds an entry this gateway stored or heard of.
    pub fn apply(&self, entry: &Revocation) {
        self.mirror.apply(entry);
    }

    /// The subscription was (re)established: entries may have been missed
    /// until the next load completes.
    pub fn lost_track(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.fresh.store(false, Ordering::Release);
    }

    /// Whether checks may rely on the mirror alone.
    pub fn is_fresh(&self) -> bool {
        self.fresh.load(Ordering::Acquire)
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
}

/// Reads every live entry from the store into the mirror; the mirror is
/// trusted afterwards unless the subscription was lost meanwhile.
pub async fn load(gw: &Gateway) -> Result<usize, DomainError> {
    let m = &gw.revocation_mirror;
    let generation = m.generation.load(Ordering::Acquire);
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
    if m.generation.load(Ordering::Acquire) == generation {
        m.fresh.store(true, Ordering::Release);
    }
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

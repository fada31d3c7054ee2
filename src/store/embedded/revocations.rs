//! Revocations in the embedded store: entries by feed position, indexes by
//! `jti`, by subject and by session, and a little metadata (next position, the oldest
//! forgotten position, and the feed's epoch).

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{EmbeddedStore, backend};
use crate::domain::{Revocation, RevocationKind, TokenRef};
use crate::store::common::{SnapshotPager, decode, encode, increments};
use crate::store::{FeedPage, FeedPosition, RevocationStore, Revoked, StoreError, already_covered};

pub(super) const REVOCATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revocations");
pub(super) const REV_JTI: TableDefinition<&str, u64> = TableDefinition::new("revocations_by_jti");
pub(super) const REV_SUBJECT: TableDefinition<&str, u64> =
    TableDefinition::new("revocations_by_subject");
pub(super) const REV_SESSION: TableDefinition<&str, u64> =
    TableDefinition::new("revocations_by_session");
/// Withdrawn signing keys, by `kid` (docs/api.md, "Signing keys over time").
pub(super) const REV_KID: TableDefinition<&str, u64> = TableDefinition::new("revocations_by_kid");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const SEQ: &str = "revocation_seq";
const FLOOR: &str = "revocation_floor";
const EPOCH: &str = "revocation_epoch";

fn read_u64(v: Option<redb::AccessGuard<'_, &[u8]>>) -> u64 {
    v.and_then(|g| <[u8; 8]>::try_from(g.value()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Creates the feed's epoch once: a random id that changes only when the
/// store is new, so a reader's cursor from another store is recognised.
pub(super) fn init(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(REVOCATIONS).map_err(backend)?;
    txn.open_table(REV_JTI).map_err(backend)?;
    txn.open_table(REV_SUBJECT).map_err(backend)?;
    txn.open_table(REV_SESSION).map_err(backend)?;
    txn.open_table(REV_KID).map_err(backend)?;
    let mut meta = txn.open_table(META).map_err(backend)?;
    if meta.get(EPOCH).map_err(backend)?.is_none() {
        let epoch = crate::crypto::random::base62(12).map_err(backend)?;
        meta.insert(EPOCH, epoch.as_bytes()).map_err(backend)?;
    }
    Ok(())
}

/// The index an entry of this kind is found by, and its key there.
fn index_of(kind: &RevocationKind) -> (TableDefinition<'static, &'static str, u64>, &str) {
    match kind {
        RevocationKind::Jti { jti } => (REV_JTI, jti.as_str()),
        RevocationKind::Subject { sub, .. } => (REV_SUBJECT, sub.as_str()),
        RevocationKind::Session { sid } => (REV_SESSION, sid.as_str()),
        RevocationKind::Key { kid } => (REV_KID, kid.as_str()),
    }
}

#[async_trait]
impl RevocationStore for EmbeddedStore {
    async fn revoke(&self, kind: RevocationKind, expires_at: i64) -> Result<Revoked, StoreError> {
        self.blocking(move |db| {
            // One write transaction at a time: the check for an existing
            // entry and the append cannot interleave with another revoke.
            let txn = db.begin_write().map_err(backend)?;
            let done = {
                let mut entries = txn.open_table(REVOCATIONS).map_err(backend)?;
                let (index, key) = index_of(&kind);
                let mut index = txn.open_table(index).map_err(backend)?;
                let existing = match index.get(key).map_err(backend)?.map(|g| g.value()) {
                    Some(seq) => entries
                        .get(seq)
                        .map_err(backend)?
                        .map(|v| decode::<Revocation>(v.value()))
                        .transpose()?,
                    None => None,
                };
                match existing {
                    Some(old) if already_covered(&old, &kind, expires_at) => Revoked {
                        entry: old,
                        appended: false,
                    },
                    _ => {
                        let mut meta = txn.open_table(META).map_err(backend)?;
                        let seq = read_u64(meta.get(SEQ).map_err(backend)?) + 1;
                        meta.insert(SEQ, seq.to_be_bytes().as_slice())
                            .map_err(backend)?;
                        // The index names the entry with the latest instant
                        // (for a jti or a session, the latest written, which
                        // outlives what it replaces): an earlier
                        // instant is implied by a later one.
                        let keep_old = match (&existing, &kind) {
                            (
                                Some(Revocation {
                                    kind:
                                        RevocationKind::Subject {
                                            not_before_ms: old_nb,
                                            ..
                                        },
                                    ..
                                }),
                                RevocationKind::Subject { not_before_ms, .. },
                            ) => old_nb > not_before_ms,
                            _ => false,
                        };
                        if !keep_old {
                            index.insert(key, seq).map_err(backend)?;
                        }
                        let rev = Revocation {
                            seq,
                            kind: kind.clone(),
                            expires_at,
                        };
                        entries
                            .insert(seq, encode(&rev)?.as_bytes())
                            .map_err(backend)?;
                        Revoked {
                            entry: rev,
                            appended: true,
                        }
                    }
                }
            };
            if done.appended {
                txn.commit().map_err(backend)?;
            } else {
                txn.abort().map_err(backend)?;
            }
            Ok(done)
        })
        .await
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        // Owned copies: the lookup runs on the blocking pool.
        let (jti, sub, sid, client) = (
            token.jti.to_owned(),
            token.sub.to_owned(),
            token.sid.map(str::to_owned),
            token.client.map(str::to_owned),
        );
        let issued_ms = token.issued_ms;
        self.blocking(move |db| {
            let token = TokenRef {
                jti: &jti,
                sub: &sub,
                sid: sid.as_deref(),
                client: client.as_deref(),
                issued_ms,
            };
            let txn = db.begin_read().map_err(backend)?;
            let entries = txn.open_table(REVOCATIONS).map_err(backend)?;
            let by_jti = txn.open_table(REV_JTI).map_err(backend)?;
            let by_sub = txn.open_table(REV_SUBJECT).map_err(backend)?;
            let by_sid = txn.open_table(REV_SESSION).map_err(backend)?;
            let at_sid = match token.sid {
                Some(sid) => by_sid.get(sid).map_err(backend)?.map(|g| g.value()),
                None => None,
            };
            let at_client = match token.client {
                Some(c) => by_sub.get(c).map_err(backend)?.map(|g| g.value()),
                None => None,
            };
            for seq in [
                by_jti.get(token.jti).map_err(backend)?.map(|g| g.value()),
                by_sub.get(token.sub).map_err(backend)?.map(|g| g.value()),
                at_sid,
                at_client,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(v) = entries.get(seq).map_err(backend)? {
                    let rev: Revocation = decode(v.value())?;
                    if rev.covers(&token) {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        })
        .await
    }

    async fn feed(&self, cursor: Option<&str>, limit: usize) -> Result<FeedPage, StoreError> {
        let cursor = cursor.map(str::to_owned);
        let limit = limit.max(1);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let epoch = meta
                .get(EPOCH)
                .map_err(backend)?
                .map(|g| String::from_utf8_lossy(g.value()).into_owned())
                .unwrap_or_default();
            let current = read_u64(meta.get(SEQ).map_err(backend)?);
            let floor = read_u64(meta.get(FLOOR).map_err(backend)?);
            let entries = txn.open_table(REVOCATIONS).map_err(backend)?;
            let (position, reset) =
                FeedPosition::resolve(cursor.as_deref(), &epoch, current, floor);
            match position {
                FeedPosition::After(since) => {
                    // One more than asked: tells whether entries remain.
                    let mut out = Vec::new();
                    for entry in entries
                        .range(since.saturating_add(1)..)
                        .map_err(backend)?
                        .take(limit.saturating_add(1))
                    {
                        let (_, v) = entry.map_err(backend)?;
                        out.push(decode(v.value())?);
                    }
                    Ok(increments(out, since, limit, &epoch))
                }
                FeedPosition::Snapshot { after, upto } => {
                    let mut pager = SnapshotPager::new(after, upto, limit);
                    if after < upto {
                        for entry in entries.range(after + 1..=upto).map_err(backend)? {
                            let (_, v) = entry.map_err(backend)?;
                            if !pager.offer(decode(v.value())?) {
                                break;
                            }
                        }
                    }
                    let later = if pager.is_full() {
                        false
                    } else {
                        entries
                            .range(upto.saturating_add(1)..)
                            .map_err(backend)?
                            .next()
                            .is_some()
                    };
                    Ok(pager.finish(&epoch, reset, later))
                }
            }
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> Result<usize, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let purged = {
                let mut entries = txn.open_table(REVOCATIONS).map_err(backend)?;
                let mut expired: Vec<(u64, Revocation)> = Vec::new();
                for entry in entries.iter().map_err(backend)? {
                    let (k, v) = entry.map_err(backend)?;
                    let rev: Revocation = decode(v.value())?;
                    if rev.expires_at <= now {
                        expired.push((k.value(), rev));
                    }
                }
                let mut by_jti = txn.open_table(REV_JTI).map_err(backend)?;
                let mut by_sub = txn.open_table(REV_SUBJECT).map_err(backend)?;
                let mut by_sid = txn.open_table(REV_SESSION).map_err(backend)?;
                let mut by_kid = txn.open_table(REV_KID).map_err(backend)?;
                let mut meta = txn.open_table(META).map_err(backend)?;
                let mut floor = read_u64(meta.get(FLOOR).map_err(backend)?);
                for (seq, rev) in &expired {
                    entries.remove(*seq).map_err(backend)?;
                    let (table, key) = match &rev.kind {
                        RevocationKind::Jti { jti } => (&mut by_jti, jti.as_str()),
                        RevocationKind::Subject { sub, .. } => (&mut by_sub, sub.as_str()),
                        RevocationKind::Session { sid } => (&mut by_sid, sid.as_str()),
                        RevocationKind::Key { kid } => (&mut by_kid, kid.as_str()),
                    };
                    let points_here =
                        table.get(key).map_err(backend)?.map(|g| g.value()) == Some(*seq);
                    if points_here {
                        table.remove(key).map_err(backend)?;
                    }
                    floor = floor.max(*seq);
                }
                meta.insert(FLOOR, floor.to_be_bytes().as_slice())
                    .map_err(backend)?;
                expired.len()
            };
            txn.commit().map_err(backend)?;
            Ok(purged)
        })
        .await
    }
}

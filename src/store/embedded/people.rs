//! People's sessions, authorization codes and refresh-token families in the
//! embedded store (docs/api.md, "People").
//!
//! Tables: `sessions` (id → [`StoredSession`]), `user_sessions`
//! (`{user}\0{session}` → session id, range-scanned by the `{user}\0`
//! prefix), `auth_codes` (code hash → [`CodeRecord`]), `refresh_families`
//! (id → [`RefreshFamily`]) and `refresh_tokens` (token hash →
//! [`TokenRecord`]). Every change that touches several records is one write
//! transaction, and a check-then-write (spending a code, rotating a token)
//! happens inside it: redb runs one write transaction at a time, so two
//! callers racing on one code or token see one order.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{EmbeddedStore, backend};
use crate::domain::session::{
    AuthCode, CodeUse, RefreshFamily, RefreshUse, Session, StoredSession,
};
use crate::store::common::{Record, decode, encode};
use crate::store::{Entity, SPENT_CODE_MEMORY_SECS, SessionStore, SsoLogin, StoreError};

const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const USER_SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("user_sessions");
const CODES: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_codes");
const FAMILIES: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_families");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh_tokens");
/// Single sign-on attempts: SHA-256 of `state` → [`SsoLogin`].
const SSO_LOGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("sso_logins");

/// An authorization code and whether it was spent.
#[derive(Serialize, Deserialize)]
struct CodeRecord {
    code: AuthCode,
    spent: bool,
}

impl Record for CodeRecord {
    const KIND: &'static str = "authorization code entry";
}

/// One refresh token of a family, by the hash of its value.
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    family_id: String,
    /// When a rotation replaced it; `None` while it is current.
    replaced_at: Option<DateTime<Utc>>,
    /// The family's absolute limit: forgotten after it.
    expires_at: DateTime<Utc>,
}

impl Record for TokenRecord {
    const KIND: &'static str = "refresh token entry";
}

/// Creates the tables, so read transactions never meet a missing one.
pub(super) fn init(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(SESSIONS).map_err(backend)?;
    txn.open_table(USER_SESSIONS).map_err(backend)?;
    txn.open_table(CODES).map_err(backend)?;
    txn.open_table(FAMILIES).map_err(backend)?;
    txn.open_table(TOKENS).map_err(backend)?;
    txn.open_table(SSO_LOGINS).map_err(backend)?;
    Ok(())
}

/// The index row of a session: the user id, a NUL, the session id. Ids never
/// hold a NUL, and listing checks the record's user anyway.
fn index_key(user_id: &str, session_id: &str) -> String {
    format!("{user_id}\0{session_id}")
}

/// The range of a user's index rows: `{user}\0` up to `{user}\x01`.
fn user_range(user_id: &str) -> (String, String) {
    (format!("{user_id}\0"), format!("{user_id}\x01"))
}

fn lapsed(s: &StoredSession, now: DateTime<Utc>) -> bool {
    s.session.retain_until <= now
}

/// When a code is forgotten, spent or not; `None` past the calendar's end.
fn code_forgotten_at(code: &AuthCode) -> Option<DateTime<Utc>> {
    code.expires_at
        .checked_add_signed(TimeDelta::seconds(SPENT_CODE_MEMORY_SECS))
}

/// Whether `later - earlier` is at least `limit` (an unrepresentable limit
/// is never reached).
fn at_least(later: DateTime<Utc>, earlier: DateTime<Utc>, limit: std::time::Duration) -> bool {
    TimeDelta::from_std(limit).is_ok_and(|limit| later.signed_duration_since(earlier) >= limit)
}

/// Whether `later - earlier` exceeds `limit`.
fn more_than(later: DateTime<Utc>, earlier: DateTime<Utc>, limit: std::time::Duration) -> bool {
    TimeDelta::from_std(limit).is_ok_and(|limit| later.signed_duration_since(earlier) > limit)
}

/// Reads and decodes one record of `table` within a transaction.
fn read<T: Record>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(key).map_err(backend)? {
        Some(v) => decode(v.value()).map(Some),
        None => Ok(None),
    }
}

/// The live sessions among `ids`, oldest first (by `auth_time`, then id).
fn oldest_first(mut sessions: Vec<Session>) -> Vec<Session> {
    sessions.sort_by(|a, b| a.auth_time.cmp(&b.auth_time).then_with(|| a.id.cmp(&b.id)));
    sessions
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    async fn insert_session(&self, session: &StoredSession) -> Result<(), StoreError> {
        let stored = session.clone();
        self.blocking(move |db| {
            let bytes = encode(&stored)?;
            let s = &stored.session;
            let now = Utc::now();
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let mut index = txn.open_table(USER_SESSIONS).map_err(backend)?;
                if let Some(old) = read::<StoredSession>(&sessions, &s.id)? {
                    if !lapsed(&old, now) {
                        return Err(StoreError::Conflict {
                            what: Entity::Session,
                            id: s.id.clone(),
                        });
                    }
                    // A lapsed record not yet purged is as good as absent.
                    index
                        .remove(index_key(&old.session.user_id, &s.id).as_str())
                        .map_err(backend)?;
                }
                sessions
                    .insert(s.id.as_str(), bytes.as_bytes())
                    .map_err(backend)?;
                index
                    .insert(index_key(&s.user_id, &s.id).as_str(), s.id.as_str())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let found: Option<StoredSession> = self.read_one(SESSIONS, id).await?;
        let now = Utc::now();
        Ok(found.filter(|s| !lapsed(s, now)))
    }

    async fn touch_session(
        &self,
        id: &str,
        seen: DateTime<Utc>,
        retain_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let now = Utc::now();
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let Some(mut stored) = read::<StoredSession>(&sessions, &id)? else {
                    return Ok(false);
                };
                if lapsed(&stored, now) {
                    return Ok(false);
                }
                let s = &mut stored.session;
                if seen <= s.last_seen_at && retain_until <= s.retain_until {
                    // Nothing moves forward: spare the write (and its fsync).
                    return Ok(true);
                }
                s.last_seen_at = s.last_seen_at.max(seen);
                s.retain_until = s.retain_until.max(retain_until);
                sessions
                    .insert(id.as_str(), encode(&stored)?.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn list_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let now = Utc::now();
            let txn = db.begin_read().map_err(backend)?;
            let sessions = txn.open_table(SESSIONS).map_err(backend)?;
            let index = txn.open_table(USER_SESSIONS).map_err(backend)?;
            let (from, to) = user_range(&user_id);
            let mut out = Vec::new();
            for row in index
                .range::<&str>(from.as_str()..to.as_str())
                .map_err(backend)?
            {
                let (_, sid) = row.map_err(backend)?;
                if let Some(s) = read::<StoredSession>(&sessions, sid.value())?
                    && s.session.user_id == user_id
                    && !lapsed(&s, now)
                {
                    out.push(s.session);
                }
            }
            Ok(oldest_first(out))
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let now = Utc::now();
            let txn = db.begin_write().map_err(backend)?;
            let old = {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let old: Option<StoredSession> =
                    match sessions.remove(id.as_str()).map_err(backend)? {
                        Some(v) => Some(decode(v.value())?),
                        None => None,
                    };
                if let Some(old) = &old {
                    let mut index = txn.open_table(USER_SESSIONS).map_err(backend)?;
                    index
                        .remove(index_key(&old.session.user_id, &id).as_str())
                        .map_err(backend)?;
                }
                old
            };
            txn.commit().map_err(backend)?;
            Ok(old.filter(|s| !lapsed(s, now)).map(|s| s.session))
        })
        .await
    }

    async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let user_id = user_id.to_owned();
        self.blocking(move |db| {
            let now = Utc::now();
            let txn = db.begin_write().map_err(backend)?;
            let deleted = {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let mut index = txn.open_table(USER_SESSIONS).map_err(backend)?;
                let (from, to) = user_range(&user_id);
                let mut rows: Vec<(String, String)> = Vec::new();
                for row in index
                    .range::<&str>(from.as_str()..to.as_str())
                    .map_err(backend)?
                {
                    let (k, sid) = row.map_err(backend)?;
                    rows.push((k.value().to_owned(), sid.value().to_owned()));
                }
                let mut deleted = Vec::new();
                for (key, sid) in rows {
                    index.remove(key.as_str()).map_err(backend)?;
                    let old: Option<StoredSession> =
                        match sessions.remove(sid.as_str()).map_err(backend)? {
                            Some(v) => Some(decode(v.value())?),
                            None => None,
                        };
                    if let Some(s) = old
                        && s.session.user_id == user_id
                        && !lapsed(&s, now)
                    {
                        deleted.push(s.session);
                    }
                }
                deleted
            };
            txn.commit().map_err(backend)?;
            Ok(oldest_first(deleted))
        })
        .await
    }

    async fn put_code(&self, code_hash: &str, code: &AuthCode) -> Result<(), StoreError> {
        let hash = code_hash.to_owned();
        let record = CodeRecord {
            code: code.clone(),
            spent: false,
        };
        self.blocking(move |db| {
            let bytes = encode(&record)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut codes = txn.open_table(CODES).map_err(backend)?;
                codes
                    .insert(hash.as_str(), bytes.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn take_code(&self, code_hash: &str, now: DateTime<Utc>) -> Result<CodeUse, StoreError> {
        let hash = code_hash.to_owned();
        self.blocking(move |db| {
            // The read and the mark are one write transaction: of racing
            // callers, exactly one sees the code unspent.
            let txn = db.begin_write().map_err(backend)?;
            let found = {
                let mut codes = txn.open_table(CODES).map_err(backend)?;
                let Some(mut record) = read::<CodeRecord>(&codes, &hash)? else {
                    return Ok(CodeUse::Unknown);
                };
                if code_forgotten_at(&record.code).is_some_and(|t| t <= now) {
                    return Ok(CodeUse::Unknown);
                }
                if record.spent {
                    return Ok(CodeUse::Replayed(record.code));
                }
                if record.code.expires_at <= now {
                    return Ok(CodeUse::Unknown);
                }
                record.spent = true;
                codes
                    .insert(hash.as_str(), encode(&record)?.as_bytes())
                    .map_err(backend)?;
                record.code
            };
            txn.commit().map_err(backend)?;
            Ok(CodeUse::Fresh(found))
        })
        .await
    }

    async fn insert_refresh(
        &self,
        family: &RefreshFamily,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        let family = family.clone();
        let hash = token_hash.to_owned();
        self.blocking(move |db| {
            let token = TokenRecord {
                family_id: family.id.clone(),
                replaced_at: None,
                expires_at: family.expires_at,
            };
            let (fam_bytes, token_bytes) = (encode(&family)?, encode(&token)?);
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut families = txn.open_table(FAMILIES).map_err(backend)?;
                let mut tokens = txn.open_table(TOKENS).map_err(backend)?;
                families
                    .insert(family.id.as_str(), fam_bytes.as_bytes())
                    .map_err(backend)?;
                tokens
                    .insert(hash.as_str(), token_bytes.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn use_refresh(
        &self,
        token_hash: &str,
        next_hash: &str,
        now: DateTime<Utc>,
        grace: std::time::Duration,
        idle: std::time::Duration,
    ) -> Result<RefreshUse, StoreError> {
        let (hash, next) = (token_hash.to_owned(), next_hash.to_owned());
        self.blocking(move |db| {
            // Read, decide and write in one write transaction: racing
            // presentations of one token are serialised.
            let txn = db.begin_write().map_err(backend)?;
            let outcome = {
                let mut families = txn.open_table(FAMILIES).map_err(backend)?;
                let mut tokens = txn.open_table(TOKENS).map_err(backend)?;
                let Some(mut token) = read::<TokenRecord>(&tokens, &hash)? else {
                    return Ok(RefreshUse::Unknown);
                };
                let Some(mut family) = read::<RefreshFamily>(&families, &token.family_id)? else {
                    return Ok(RefreshUse::Unknown);
                };
                if family.revoked
                    || family.expires_at <= now
                    || more_than(now, family.last_used_at, idle)
                {
                    return Ok(RefreshUse::Ended);
                }
                match token.replaced_at {
                    None => {
                        token.replaced_at = Some(now);
                        tokens
                            .insert(hash.as_str(), encode(&token)?.as_bytes())
                            .map_err(backend)?;
                    }
                    Some(replaced) if !at_least(now, replaced, grace) => {}
                    Some(_) => {
                        family.revoked = true;
                        families
                            .insert(family.id.as_str(), encode(&family)?.as_bytes())
                            .map_err(backend)?;
                        drop((families, tokens));
                        txn.commit().map_err(backend)?;
                        return Ok(RefreshUse::Reused(family));
                    }
                }
                family.last_used_at = family.last_used_at.max(now);
                let next_token = TokenRecord {
                    family_id: family.id.clone(),
                    replaced_at: None,
                    expires_at: family.expires_at,
                };
                tokens
                    .insert(next.as_str(), encode(&next_token)?.as_bytes())
                    .map_err(backend)?;
                families
                    .insert(family.id.as_str(), encode(&family)?.as_bytes())
                    .map_err(backend)?;
                RefreshUse::Rotated(family)
            };
            txn.commit().map_err(backend)?;
            Ok(outcome)
        })
        .await
    }

    async fn get_refresh_family(&self, id: &str) -> Result<Option<RefreshFamily>, StoreError> {
        let found: Option<RefreshFamily> = self.read_one(FAMILIES, id).await?;
        let now = Utc::now();
        Ok(found.filter(|f| f.expires_at > now))
    }

    async fn find_refresh(&self, token_hash: &str) -> Result<Option<RefreshFamily>, StoreError> {
        let token: Option<TokenRecord> = self.read_one(TOKENS, token_hash).await?;
        match token {
            Some(t) => self.get_refresh_family(&t.family_id).await,
            None => Ok(None),
        }
    }

    async fn purge_people(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let purged = {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let mut index = txn.open_table(USER_SESSIONS).map_err(backend)?;
                let mut gone: Vec<(String, String)> = Vec::new();
                for entry in sessions.iter().map_err(backend)? {
                    let (k, v) = entry.map_err(backend)?;
                    let s: StoredSession = decode(v.value())?;
                    if lapsed(&s, now) {
                        gone.push((k.value().to_owned(), s.session.user_id));
                    }
                }
                for (id, user) in &gone {
                    sessions.remove(id.as_str()).map_err(backend)?;
                    index
                        .remove(index_key(user, id).as_str())
                        .map_err(backend)?;
                }
                let mut purged = gone.len();

                let mut codes = txn.open_table(CODES).map_err(backend)?;
                purged += remove_where::<CodeRecord>(&mut codes, |c| {
                    code_forgotten_at(&c.code).is_some_and(|t| t <= now)
                })?;
                let mut families = txn.open_table(FAMILIES).map_err(backend)?;
                purged += remove_where::<RefreshFamily>(&mut families, |f| f.expires_at <= now)?;
                let mut tokens = txn.open_table(TOKENS).map_err(backend)?;
                purged += remove_where::<TokenRecord>(&mut tokens, |t| t.expires_at <= now)?;
                let mut logins = txn.open_table(SSO_LOGINS).map_err(backend)?;
                purged += remove_where::<SsoLogin>(&mut logins, |l| l.expires_at <= now)?;
                purged
            };
            txn.commit().map_err(backend)?;
            Ok(purged)
        })
        .await
    }

    async fn put_sso_login(&self, state_hash: &str, login: &SsoLogin) -> Result<(), StoreError> {
        let hash = state_hash.to_owned();
        let login = login.clone();
        self.blocking(move |db| {
            let bytes = encode(&login)?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut t = txn.open_table(SSO_LOGINS).map_err(backend)?;
                t.insert(hash.as_str(), bytes.as_bytes()).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn take_sso_login(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SsoLogin>, StoreError> {
        let hash = state_hash.to_owned();
        self.blocking(move |db| {
            // Removal inside one write transaction: of racing callers,
            // exactly one gets the record.
            let txn = db.begin_write().map_err(backend)?;
            let found = {
                let mut t = txn.open_table(SSO_LOGINS).map_err(backend)?;
                match t.remove(hash.as_str()).map_err(backend)? {
                    Some(v) => Some(decode::<SsoLogin>(v.value())?),
                    None => None,
                }
            };
            txn.commit().map_err(backend)?;
            Ok(found.filter(|l| l.expires_at > now))
        })
        .await
    }
}

/// Removes the records of `table` that `lapsed` picks; returns how many.
fn remove_where<T: Record>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    lapsed: impl Fn(&T) -> bool,
) -> Result<usize, StoreError> {
    let mut gone: Vec<String> = Vec::new();
    for entry in table.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        if lapsed(&decode::<T>(v.value())?) {
            gone.push(k.value().to_owned());
        }
    }
    for k in &gone {
        table.remove(k.as_str()).map_err(backend)?;
    }
    Ok(gone.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use redb::ReadableTableMetadata;

    fn session(id: &str, user: &str, retain: DateTime<Utc>) -> StoredSession {
        StoredSession {
            session: Session {
                id: id.into(),
                user_id: user.into(),
                client_id: "tessera-console".into(),
                auth_time: retain - Duration::hours(1),
                amr: vec!["pwd".into()],
                idp: None,
                last_seen_at: retain - Duration::hours(1),
                expires_at: retain,
                retain_until: retain,
                ip: "192.0.2.1".into(),
                user_agent: String::new(),
            },
            secret_hash: "00".into(),
        }
    }

    fn code(expires_at: DateTime<Utc>) -> AuthCode {
        AuthCode {
            client_id: "app_c".into(),
            redirect_uri: "https://c.example/cb".into(),
            user_id: "usr_x".into(),
            session_id: "ses_x".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: "x".into(),
            expires_at,
        }
    }

    fn family(id: &str, expires_at: DateTime<Utc>) -> RefreshFamily {
        RefreshFamily {
            id: id.into(),
            user_id: "usr_x".into(),
            client_id: "tessera-cli".into(),
            session_id: "ses_x".into(),
            scope: "openid offline_access".into(),
            created_at: expires_at - Duration::days(30),
            last_used_at: expires_at - Duration::days(30),
            expires_at,
            revoked: false,
        }
    }

    /// Rows in each people table: sessions, index, codes, families, tokens.
    fn rows(store: &EmbeddedStore) -> [u64; 5] {
        let txn = store.db.begin_read().unwrap();
        let n = |t| txn.open_table(t).unwrap().len().unwrap();
        [
            n(SESSIONS),
            txn.open_table(USER_SESSIONS).unwrap().len().unwrap(),
            n(CODES),
            n(FAMILIES),
            n(TOKENS),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purging_forgets_lapsed_records_with_their_index_rows_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = Utc::now();
        let hour = Duration::hours(1);
        store
            .insert_session(&session("ses_old", "usr_x", now - hour))
            .await
            .unwrap();
        store
            .insert_session(&session("ses_new", "usr_x", now + hour))
            .await
            .unwrap();
        // Spent or not, a code is kept for the memory after its expiry.
        let memory = Duration::seconds(SPENT_CODE_MEMORY_SECS);
        store
            .put_code("h_forgotten", &code(now - memory))
            .await
            .unwrap();
        store
            .put_code("h_remembered", &code(now - memory + hour))
            .await
            .unwrap();
        store
            .insert_refresh(&family("rtf_old", now), "h_old")
            .await
            .unwrap();
        store
            .insert_refresh(&family("rtf_new", now + hour), "h_new")
            .await
            .unwrap();
        let rotated = store
            .use_refresh(
                "h_new",
                "h_new2",
                now,
                std::time::Duration::ZERO,
                std::time::Duration::MAX,
            )
            .await
            .unwrap();
        assert!(matches!(rotated, RefreshUse::Rotated(_)));
        assert_eq!(rows(&store), [2, 2, 2, 2, 3]);

        // One session, one code, one family and its one token.
        assert_eq!(store.purge_people(now).await.unwrap(), 4);
        assert_eq!(rows(&store), [1, 1, 1, 1, 2]);
        assert!(store.get_session("ses_new").await.unwrap().is_some());
        assert_eq!(
            store.take_code("h_forgotten", now - hour).await.unwrap(),
            CodeUse::Unknown
        );
        assert_eq!(
            store
                .use_refresh(
                    "h_old",
                    "h_x",
                    now - hour,
                    std::time::Duration::ZERO,
                    std::time::Duration::MAX
                )
                .await
                .unwrap(),
            RefreshUse::Unknown
        );
        assert_eq!(store.purge_people(now).await.unwrap(), 0);
        // Later, everything has lapsed.
        assert_eq!(store.purge_people(now + hour + memory).await.unwrap(), 5);
        assert_eq!(rows(&store), [0; 5]);
    }
}

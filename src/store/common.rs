//! Rules both backends follow, written once below both: how records are
//! encoded, how lists are ordered and paged, how usage figures merge, how a
//! deleted role leaves its holders, and how a page of the revocation feed is
//! cut. A backend only reads and writes; what the data means is decided here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AuditRecord, FeedPage, FeedPosition, ListPage, ListQuery, RoleDelete, StoreError, StoredApp,
    StoredUser, UsageDelta,
};
use crate::domain::session::{AuthCode, RefreshFamily, StoredSession};
use crate::domain::{Application, ChangeEvent, Revocation, Role};

/// A value stored (or published) as JSON, and the name a corrupt one is
/// reported by.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// What [`StoreError::Corrupt`] names when one does not decode.
    const KIND: &'static str;
}

impl Record for StoredApp {
    const KIND: &'static str = "application record";
}
impl Record for Role {
    const KIND: &'static str = "role record";
}
impl Record for StoredUser {
    const KIND: &'static str = "user record";
}
impl Record for AuditRecord {
    const KIND: &'static str = "audit record";
}
impl Record for Revocation {
    const KIND: &'static str = "revocation entry";
}
impl Record for ChangeEvent {
    const KIND: &'static str = "change event";
}
impl Record for StoredSession {
    const KIND: &'static str = "session record";
}
impl Record for AuthCode {
    const KIND: &'static str = "authorization code record";
}
impl Record for RefreshFamily {
    const KIND: &'static str = "refresh family record";
}
impl Record for super::SsoLogin {
    const KIND: &'static str = "single sign-on attempt";
}
impl Record for super::StoredKey {
    const KIND: &'static str = "signing key record";
}

/// The identity-index keys of a user's linked identities
/// ([`super::identity_key`]), without repeats.
pub(crate) fn identity_keys(user: &StoredUser) -> Vec<String> {
    let mut keys: Vec<String> = user
        .user
        .identities
        .iter()
        .map(|i| super::identity_key(&i.idp, &i.subject))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Encodes a record as JSON (bytes for redb, a string for Redis).
pub(crate) fn encode<T: Record>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt::<T>(&e))
}

/// Decodes a stored record.
pub(crate) fn decode<T: Record>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt::<T>(&e))
}

/// Names the record and where it breaks, never what it holds: serde's own
/// message may quote a stored value, and a stored value may be a hash.
fn corrupt<T: Record>(e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "{}: {:?} error at line {}, column {}",
        T::KIND,
        e.classify(),
        e.line(),
        e.column()
    ))
}

/// The ordering key of an application: creation time (20 digits of
/// microseconds), then id. Lists of applications are in this order, and a
/// list cursor is the key of the last application of a page.
pub fn order_key(app: &Application) -> String {
    format!(
        "{:020}:{}",
        app.created_at.timestamp_micros().max(0),
        app.id
    )
}

/// The application id an ordering key ends with.
pub(crate) fn order_key_id(key: &str) -> Option<&str> {
    key.split_once(':').map(|(_, id)| id)
}

/// Cuts records read one past `limit` to a page: the cursor to continue
/// from is the position of the page's last record, when more remained.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    position: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(position)
    } else {
        None
    };
    (items, next)
}

/// Collects one page of a filtered listing of applications, offered in
/// ordering-key order.
pub(crate) struct AppPager<'q> {
    query: &'q ListQuery,
    limit: usize,
    now: DateTime<Utc>,
    items: Vec<StoredApp>,
    last: Option<String>,
    more: bool,
}

impl<'q> AppPager<'q> {
    /// An empty page for `query`, filtering as of now.
    pub(crate) fn new(query: &'q ListQuery) -> Self {
        Self {
            query,
            limit: query.limit.max(1),
            now: Utc::now(),
            items: Vec::new(),
            last: None,
            more: false,
        }
    }

    /// Offers the next application (at ordering key `order`); false once the
    /// page is full: a matching application beyond it was seen, so the
    /// caller stops reading.
    pub(crate) fn offer(&mut self, order: &str, app: StoredApp) -> bool {
        if !self.query.filter.matches(&app.app, self.now) {
            return true;
        }
        if self.items.len() == self.limit {
            self.more = true;
            return false;
        }
        self.items.push(app);
        self.last = Some(order.to_owned());
        true
    }

    /// The page; a cursor only when more remained.
    pub(crate) fn finish(self) -> ListPage {
        ListPage {
            items: self.items,
            next: if self.more { self.last } else { None },
        }
    }
}

/// Carries the usage figures of `old` into `new`: an update made from an
/// older read must not undo counted usage (only `record_usage` changes them).
pub(crate) fn keep_usage(new: &mut StoredApp, old: &StoredApp) {
    new.app.use_count = old.app.use_count;
    new.app.last_used_at = old.app.last_used_at;
    new.app.last_used_ip.clone_from(&old.app.last_used_ip);
}

/// Adds one delta to an application's usage: the count grows (saturating)
/// and the last use is the latest seen, whichever batch reports it first.
pub(crate) fn add_usage(stored: &mut StoredApp, d: &UsageDelta) {
    let a = &mut stored.app;
    a.use_count = a.use_count.saturating_add(d.count);
    if a.last_used_at.is_none_or(|t| t <= d.last_at) {
        a.last_used_at = Some(d.last_at);
        a.last_used_ip = Some(d.last_ip.clone());
    }
}

/// The hourly buckets a delta adds to: its hours from `oldest` (see
/// [`super::oldest_kept_hour`]) on, with exchanges. Older ones would be
/// purged at once, so they are not written.
pub(crate) fn kept_hours(d: &UsageDelta, oldest: i64) -> impl Iterator<Item = (i64, u64)> + '_ {
    d.hours
        .iter()
        .copied()
        .filter(move |&(hour, n)| hour >= oldest && n > 0)
}

/// Whether an application holds role `name`, directly or in an access rule.
pub(crate) fn app_holds_role(app: &StoredApp, name: &str) -> bool {
    app.app.roles.iter().any(|r| r == name)
        || app
            .app
            .access_rules
            .iter()
            .any(|rule| rule.roles.iter().any(|r| r == name))
}

/// Whether a user holds role `name`.
pub(crate) fn user_holds_role(user: &StoredUser, name: &str) -> bool {
    user.user.roles.iter().any(|r| r == name)
}

/// The holders of a role being deleted.
#[derive(Debug, Default)]
pub(crate) struct RoleHolders {
    /// Applications holding it (see [`app_holds_role`]).
    pub(crate) apps: Vec<StoredApp>,
    /// Users holding it.
    pub(crate) users: Vec<StoredUser>,
}

impl RoleHolders {
    /// Decides a role deletion: a held role is refused (`Err`, with what to
    /// answer) unless `detach`; otherwise the holders come back with the role
    /// removed, to be written in the same atomic write as the deletion. An
    /// access rule left with neither roles nor permissions is dropped.
    pub(crate) fn settle(self, name: &str, detach: bool) -> Result<Self, RoleDelete> {
        let held = !(self.apps.is_empty() && self.users.is_empty());
        if held && !detach {
            return Err(RoleDelete::InUse {
                apps: self.apps.into_iter().map(|a| a.app.id).collect(),
                users: self.users.into_iter().map(|u| u.user.id).collect(),
            });
        }
        let mut apps = self.apps;
        for a in &mut apps {
            a.app.roles.retain(|r| r != name);
            for rule in &mut a.app.access_rules {
                rule.roles.retain(|r| r != name);
            }
            a.app
                .access_rules
                .retain(|r| !(r.roles.is_empty() && r.permissions.is_empty()));
        }
        let mut users = self.users;
        for u in &mut users {
            u.user.roles.retain(|r| r != name);
        }
        Ok(Self { apps, users })
    }
}

/// A page of increments: `entries` are those after `since`, in order, read
/// one past `limit` (that extra one only tells whether more remain).
pub(crate) fn increments(
    mut entries: Vec<Revocation>,
    since: u64,
    limit: usize,
    epoch: &str,
) -> FeedPage {
    let more = entries.len() > limit;
    entries.truncate(limit);
    let last = entries.last().map_or(since, |e| e.seq);
    FeedPage {
        entries,
        cursor: FeedPosition::After(last).cursor(epoch),
        snapshot: false,
        reset: false,
        more,
    }
}

/// Collects one page of a snapshot from the entries stored after `after` up
/// to `upto`, offered in position order.
pub(crate) struct SnapshotPager {
    limit: usize,
    now: i64,
    upto: u64,
    out: Vec<Revocation>,
    last: u64,
    full: bool,
}

impl SnapshotPager {
    /// An empty page of the snapshot continuing after `after`.
    pub(crate) fn new(after: u64, upto: u64, limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            now: Utc::now().timestamp(),
            upto,
            out: Vec::new(),
            last: after,
            full: false,
        }
    }

    /// Offers the entry at the next position; false once the page is full
    /// (the entry is left for the next page). Expired entries cover nothing:
    /// they are passed over and do not count towards the page.
    pub(crate) fn offer(&mut self, rev: Revocation) -> bool {
        if self.out.len() >= self.limit {
            self.full = true;
            return false;
        }
        self.last = self.last.max(rev.seq);
        if rev.expires_at > self.now {
            self.out.push(rev);
        }
        true
    }

    /// Positions read whose entries were purged meanwhile move the page on
    /// too (unless it is already full).
    pub(crate) fn passed(&mut self, seq: u64) {
        if !self.full {
            self.last = self.last.max(seq);
        }
    }

    /// Whether entries of the snapshot remain after this page.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// The page. `later` says whether entries exist after `upto` (only read
    /// once the snapshot is complete, so a full page may pass `false`).
    pub(crate) fn finish(self, epoch: &str, reset: bool, later: bool) -> FeedPage {
        let (next, more) = if self.full {
            (
                FeedPosition::Snapshot {
                    after: self.last,
                    upto: self.upto,
                },
                true,
            )
        } else {
            (FeedPosition::After(self.upto), later)
        };
        FeedPage {
            entries: self.out,
            cursor: next.cursor(epoch),
            snapshot: true,
            reset,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccessRule, RevocationKind};
    use crate::store::conformance::sample_app;

    #[test]
    fn corrupt_records_are_named_without_their_content() {
        let Err(StoreError::Corrupt(m)) = decode::<StoredApp>(br#"{"secret_hash": "$argon2id$x"#)
        else {
            panic!("must not decode");
        };
        assert!(m.starts_with("application record: "), "{m}");
        assert!(!m.contains("argon2"), "{m}");
    }

    #[test]
    fn records_round_trip() {
        let a = sample_app("app_rt", 1);
        assert_eq!(
            decode::<StoredApp>(encode(&a).unwrap().as_bytes()).unwrap(),
            a
        );
    }

    #[test]
    fn ordering_keys_sort_by_creation_then_id() {
        let (a, b) = (sample_app("app_b", 1), sample_app("app_a", 2));
        assert!(order_key(&a.app) < order_key(&b.app));
        assert_eq!(order_key_id(&order_key(&a.app)), Some("app_b"));
    }

    #[test]
    fn pages_carry_a_cursor_only_when_more_remain() {
        let pos = |n: &u32| n.to_string();
        assert_eq!(page(vec![1, 2, 3], 2, pos), (vec![1, 2], Some("2".into())));
        assert_eq!(page(vec![1, 2], 2, pos), (vec![1, 2], None));
        assert_eq!(page(Vec::<u32>::new(), 2, pos), (vec![], None));
    }

    #[test]
    fn detaching_a_role_drops_rules_left_empty() {
        let mut a = sample_app("app_h", 1);
        a.app.roles = vec!["r".into(), "s".into()];
        a.app.access_rules = vec![
            AccessRule {
                scope: "cluster:c1".into(),
                roles: vec!["r".into()],
                permissions: vec![],
            },
            AccessRule {
                scope: "cluster:c2".into(),
                roles: vec!["r".into(), "s".into()],
                permissions: vec![],
            },
        ];
        assert!(app_holds_role(&a, "r") && !app_holds_role(&a, "t"));
        let held = RoleHolders {
            apps: vec![a],
            users: vec![],
        };
        let Err(RoleDelete::InUse { apps, users }) = RoleHolders {
            apps: held.apps.clone(),
            users: vec![],
        }
        .settle("r", false) else {
            panic!("held and not detached");
        };
        assert_eq!((apps, users), (vec!["app_h".to_owned()], vec![]));
        let done = held.settle("r", true).unwrap();
        let a = &done.apps[0].app;
        assert_eq!(a.roles, ["s"]);
        assert_eq!(a.access_rules.len(), 1);
        assert_eq!(a.access_rules[0].roles, ["s"]);
    }

    #[test]
    fn usage_merges_keep_the_latest_use() {
        let mut a = sample_app("app_u", 1);
        let t = Utc::now();
        let d = |count, secs, ip: &str| UsageDelta {
            app_id: "app_u".into(),
            count,
            last_at: t + chrono::Duration::seconds(secs),
            last_ip: ip.into(),
            hours: vec![],
        };
        add_usage(&mut a, &d(2, 10, "192.0.2.1"));
        add_usage(&mut a, &d(3, 5, "192.0.2.2"));
        assert_eq!(a.app.use_count, 5);
        assert_eq!(a.app.last_used_ip.as_deref(), Some("192.0.2.1"));
        let mut stale = sample_app("app_u", 1);
        keep_usage(&mut stale, &a);
        assert_eq!(stale.app.use_count, 5);
    }

    #[test]
    fn snapshot_pages_skip_expired_entries_and_stop_when_full() {
        let now = Utc::now().timestamp();
        let rev = |seq, expires_at| Revocation {
            seq,
            kind: RevocationKind::Jti {
                jti: format!("j{seq}"),
            },
            expires_at,
        };
        let mut p = SnapshotPager::new(0, 9, 2);
        assert!(p.offer(rev(1, now + 60)));
        assert!(p.offer(rev(2, now - 1)), "expired: passed over");
        p.passed(3);
        assert!(p.offer(rev(4, now + 60)));
        assert!(!p.offer(rev(5, now + 60)), "full");
        p.passed(6);
        let page = p.finish("e", true, false);
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 4]
        );
        assert_eq!(page.cursor, "e.4.9");
        assert!(page.more && page.snapshot && page.reset);

        let page = SnapshotPager::new(4, 9, 2).finish("e", false, true);
        assert_eq!(page.cursor, "e.9");
        assert!(page.more && !page.reset);
    }

    #[test]
    fn increment_pages_continue_after_their_last_entry() {
        let rev = |seq| Revocation {
            seq,
            kind: RevocationKind::Jti { jti: "j".into() },
            expires_at: 0,
        };
        let p = increments(vec![rev(3), rev(5), rev(8)], 2, 2, "e");
        assert_eq!(
            (p.cursor.as_str(), p.more, p.entries.len()),
            ("e.5", true, 2)
        );
        let p = increments(vec![], 8, 2, "e");
        assert_eq!((p.cursor.as_str(), p.more), ("e.8", false));
    }
}

//! Storage: the traits the services use, and the backends behind them.
//!
//! The backend is chosen once, in `startup`; services only see the traits.
//! Every backend must pass the conformance suite (`store::conformance`,
//! compiled for tests only), unchanged. What the data means (ordering,
//! paging, usage, role detachment, record encoding) is decided once, in
//! `store::common`, below both backends.

mod common;
#[cfg(test)]
pub(crate) mod conformance;
pub mod embedded;
pub mod redis;

pub use common::order_key;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::error::shown;
use crate::domain::session::{
    AuthCode, CodeUse, RefreshFamily, RefreshUse, Session, StoredSession,
};
use crate::domain::{
    AppStatus, Application, Environment, KeyType, Revocation, RevocationKind, Role, TokenRef, User,
};

/// An application as stored: the public record plus its argon2id hash.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredApp {
    /// What operators see.
    pub app: Application,
    /// PHC-format argon2id hash of the current secret. Never the secret.
    pub secret_hash: String,
    /// The first characters of the current secret's random part (24 of its
    /// 256 bits): picks which hash to verify during a rotation grace period,
    /// so every attempt costs exactly one argon2 verification.
    #[serde(default)]
    pub secret_hint: Option<String>,
    /// The secret replaced by a rotation, while its grace period lasts.
    #[serde(default)]
    pub previous_secret: Option<PreviousSecret>,
}

/// A rotated-out secret that keeps working until `until`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct PreviousSecret {
    /// Its argon2id hash.
    pub hash: String,
    /// Its hint (see [`StoredApp::secret_hint`]).
    pub hint: Option<String>,
    /// End of the grace period.
    pub until: DateTime<Utc>,
}

impl std::fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("hash", &"<hidden>")
            .field("until", &self.until)
            .finish()
    }
}

/// Usage gathered since the last flush, for one application.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageDelta {
    /// The application.
    pub app_id: String,
    /// Successful exchanges to add.
    pub count: u64,
    /// The latest of them.
    pub last_at: DateTime<Utc>,
    /// Its client IP.
    pub last_ip: String,
    /// The same exchanges by the hour they happened in: (hour start, unix
    /// seconds, see [`hour_start`]; count). Hours older than
    /// [`USAGE_KEPT_SECS`] may be left out (and are ignored by the stores),
    /// so these may add up to less than `count`.
    pub hours: Vec<(i64, u64)>,
}

/// How long hourly usage is kept: 8 days, one more than the console shows.
/// A bucket is live while its hour started less than this long ago.
pub const USAGE_KEPT_SECS: i64 = 8 * 24 * 3600;

/// The start (unix seconds, UTC) of the hour `at` falls in.
pub fn hour_start(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600) * 3600
}

/// The oldest hour start still kept at `now`: buckets of earlier hours are
/// never returned and are purged.
pub fn oldest_kept_hour(now: DateTime<Utc>) -> i64 {
    hour_start(now) - USAGE_KEPT_SECS + 3600
}

impl std::fmt::Debug for StoredApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredApp")
            .field("app", &self.app)
            .field("secret_hash", &"<hidden>")
            .finish()
    }
}

/// Filters for listing applications; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct AppFilter {
    /// Only this environment.
    pub environment: Option<Environment>,
    /// Only this key type.
    pub key_type: Option<KeyType>,
    /// Only this status (evaluated at the time of the query).
    pub status: Option<AppStatus>,
    /// Only this owner.
    pub owner: Option<String>,
    /// Only those whose name, id or prefix contains this text, ignoring
    /// case (the caller bounds its length).
    pub search: Option<String>,
}

impl AppFilter {
    /// Whether `app` passes the filter at `now`.
    pub fn matches(&self, app: &Application, now: DateTime<Utc>) -> bool {
        self.environment.is_none_or(|e| app.environment == e)
            && self.key_type.is_none_or(|t| app.key_type == t)
            && self.status.is_none_or(|s| app.status_at(now) == s)
            && self.owner.as_deref().is_none_or(|o| app.owner == o)
            && self
                .search
                .as_deref()
                .is_none_or(|q| contains_folded(app, q))
    }
}

/// Whether the name, id or prefix of `app` contains `q`, ignoring case.
fn contains_folded(app: &Application, q: &str) -> bool {
    let q = q.to_lowercase();
    [&app.name, &app.id, &app.prefix]
        .iter()
        .any(|s| s.to_lowercase().contains(&q))
}

/// One page request, in creation order.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Page size, at least 1.
    pub limit: usize,
    /// Continue after this position (from a previous page's `next`).
    pub after: Option<String>,
    /// Which applications.
    pub filter: AppFilter,
}

/// One page of results.
#[derive(Clone, Debug)]
pub struct ListPage {
    /// The applications, oldest first.
    pub items: Vec<StoredApp>,
    /// Position to continue from, when there may be more.
    pub next: Option<String>,
}

/// What a store error is about: which kind of record an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    /// An application, by id.
    Application,
    /// An application, by name (unique ignoring case, see [`name_key`]).
    ApplicationName,
    /// A role, by name.
    Role,
    /// A user, by id.
    User,
    /// A user, by email address (unique among users).
    UserEmail,
    /// A person's session, by id.
    Session,
    /// A user, by a linked identity (`{idp}/{subject}`).
    UserIdentity,
}

impl Entity {
    /// How a message names one: "application", "role", "user", "user with
    /// email", "session".
    pub fn noun(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::ApplicationName => "application named",
            Self::Role => "role",
            Self::User => "user",
            Self::UserEmail => "user with email",
            Self::Session => "session",
            Self::UserIdentity => "user with identity",
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.noun())
    }
}

/// A store failure. Messages quote an id only through
/// [`shown`](crate::domain::error::shown): never arbitrary input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Insert of an id (or a unique email) that exists.
    #[error("{what} {} already exists", shown(.id))]
    Conflict {
        /// What kind of record.
        what: Entity,
        /// The id, name or email that is taken.
        id: String,
    },
    /// Update of an id that does not exist.
    #[error("{what} {} not found", shown(.id))]
    NotFound {
        /// What kind of record.
        what: Entity,
        /// The id or name that was asked for.
        id: String,
    },
    /// An update computed from a version that is no longer the stored one:
    /// another call changed the record in between (optimistic concurrency).
    #[error("{what} {} changed since it was read", shown(.id))]
    Stale {
        /// What kind of record.
        what: Entity,
        /// Its id.
        id: String,
    },
    /// A list cursor this store did not produce.
    #[error("invalid cursor")]
    BadCursor,
    /// The backend cannot be reached or failed; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data does not decode; names the kind of record and where it
    /// breaks, never its content.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// The key of an application's name in the name index: trimmed, then
/// lower-cased (Unicode simple case folding is close enough for names
/// people type), so `Billing` and `billing ` are one name.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Applications and their secret hashes.
///
/// Names are unique ignoring case ([`name_key`]): every backend keeps a name
/// index written in the same atomic write as the application, so of two
/// writers racing for one name exactly one wins. A store written before the
/// index existed is indexed when opened, oldest application first: a later
/// duplicate stays unindexed (found by id only, and its name is free again
/// once the indexed one is renamed or deleted) and is reported in the log.
#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    /// Stores a new application; `Conflict` if the id exists
    /// ([`Entity::Application`]) or its name is taken
    /// ([`Entity::ApplicationName`], naming the requested name). Atomic:
    /// either everything is written and durable when this returns, or
    /// nothing.
    async fn insert(&self, app: &StoredApp) -> Result<(), StoreError>;
    /// Stores `app` as [`insert`](Self::insert) does, but only while the
    /// store holds no application at all, decided in the same atomic write:
    /// of gateways bootstrapping one empty store at once, exactly one gets
    /// `true`; the others write nothing and get `false`.
    async fn insert_first(&self, app: &StoredApp) -> Result<bool, StoreError>;
    /// Reads one application.
    async fn get(&self, id: &str) -> Result<Option<StoredApp>, StoreError>;
    /// The id of the application indexed under this name, ignoring case.
    async fn find_by_name(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Replaces an existing application; `NotFound` if it is absent. The
    /// usage figures are kept as stored: only `record_usage` changes them.
    /// A new name is checked and indexed in the same write (`Conflict`
    /// with [`Entity::ApplicationName`] when another application holds it);
    /// the old one is freed.
    /// `read_at` is the `updatedAt` of the version the change was computed
    /// from: if the stored one differs, another call changed it in between
    /// and nothing is written (`Stale`), so a late write can never undo a
    /// revoke, a rotation or a demotion.
    async fn update(&self, app: &StoredApp, read_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Adds usage figures in one atomic batch, totals and hourly buckets
    /// together; absent ids are skipped, and so are hours older than
    /// [`oldest_kept_hour`]. Buckets that have lapsed since are purged by
    /// later writes or expire; reads never return them.
    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError>;
    /// An application's exchanges per hour, for the hours from `since_hour`
    /// (an hour start, unix seconds) that are still kept: (hour start,
    /// count), oldest first, only hours with exchanges. Empty for an
    /// unknown id.
    async fn hourly_usage(&self, id: &str, since_hour: i64) -> Result<Vec<(i64, u64)>, StoreError>;
    /// Deletes an application, its hourly usage and its name; false if it
    /// was absent.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// A page of applications in creation order.
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError>;
    /// How many applications exist.
    async fn count(&self) -> Result<u64, StoreError>;
    /// Whether the store is usable now.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A user as stored. Login secrets (password hash, SSO links) will live here
/// beside the public record, never in it.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredUser {
    /// What operators see.
    pub user: User,
    /// argon2id hash of the password, once password login exists.
    #[serde(default)]
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("user", &self.user)
            .field("password_hash", &"<hidden>")
            .finish()
    }
}

/// What deleting a role did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleDelete {
    /// Gone (and detached from its holders, when asked).
    Deleted,
    /// Still held, and detaching was not asked for: nothing changed.
    InUse {
        /// Applications holding it.
        apps: Vec<String>,
        /// Users holding it.
        users: Vec<String>,
    },
    /// No such role.
    NotFound,
}

/// Roles (permission templates).
#[async_trait]
pub trait RoleStore: Send + Sync + 'static {
    /// Stores a new role; `Conflict` if the name exists.
    async fn insert_role(&self, role: &Role) -> Result<(), StoreError>;
    /// Reads one role.
    async fn get_role(&self, name: &str) -> Result<Option<Role>, StoreError>;
    /// Every role, by name.
    async fn list_roles(&self) -> Result<Vec<Role>, StoreError>;
    /// Replaces a role; `NotFound` if absent, `Stale` if its stored
    /// `updatedAt` is no longer `read_at` (changed by another call since).
    async fn update_role(&self, role: &Role, read_at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Deletes a role. Held roles are refused unless `detach`, which removes
    /// them from every application (including its access rules) and user in
    /// the same atomic write.
    async fn delete_role(&self, name: &str, detach: bool) -> Result<RoleDelete, StoreError>;
}

/// Users.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Stores a new user; `Conflict` if the id or the email exists.
    async fn insert_user(&self, user: &StoredUser) -> Result<(), StoreError>;
    /// Reads one user.
    async fn get_user(&self, id: &str) -> Result<Option<StoredUser>, StoreError>;
    /// A page of users by id, after `after`.
    async fn list_users(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<(Vec<StoredUser>, Option<String>), StoreError>;
    /// Replaces a user; `NotFound` if absent, `Conflict` if the new email
    /// belongs to someone else, `Stale` if its stored `updatedAt` is no
    /// longer `read_at` (changed by another call since).
    async fn update_user(
        &self,
        user: &StoredUser,
        read_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Deletes a user; false if absent.
    async fn delete_user(&self, id: &str) -> Result<bool, StoreError>;
    /// Reads the user with this (normalised, lower-case) email address.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<StoredUser>, StoreError>;
    /// Reads the user holding the linked identity (`idp`, `subject`). The
    /// index follows `insert_user`, `update_user` and `delete_user`: an
    /// identity linked to another user is a `Conflict`
    /// ([`Entity::UserIdentity`]).
    async fn find_user_by_identity(
        &self,
        idp: &str,
        subject: &str,
    ) -> Result<Option<StoredUser>, StoreError>;
}

/// The key of a linked identity in the identity index: the provider's
/// name (URL-safe, no `/`), a `/`, then the subject as given.
pub fn identity_key(idp: &str, subject: &str) -> String {
    format!("{idp}/{subject}")
}

/// A single sign-on attempt waiting for the provider's answer, stored under
/// the SHA-256 (hex) of its `state` until taken once or expired.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct SsoLogin {
    /// The provider's configured name.
    pub idp: String,
    /// The `nonce` sent; the ID token must carry it.
    pub nonce: String,
    /// The PKCE verifier (a secret until the code is exchanged).
    pub code_verifier: String,
    /// SHA-256 (hex) of the browser-binding cookie: the callback must come
    /// from the browser that started.
    pub browser: String,
    /// The client the session is for.
    pub client_id: String,
    /// Where to continue afterwards: a same-origin path (`/...`).
    pub return_to: Option<String>,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SsoLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoLogin")
            .field("idp", &self.idp)
            .field("nonce", &"<hidden>")
            .field("code_verifier", &"<hidden>")
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// People's sessions, authorization codes and refresh-token families
/// (docs/api.md, "People"). Every key here is an id or the SHA-256 (hex) of a random
/// secret, never the secret. Records are forgotten on their own after they
/// lapse (Redis key expiry; the embedded store purges in `purge_people`,
/// and never returns a lapsed record before that). Every such store keeps
/// device requests too ([`DeviceStore`]).
#[async_trait]
pub trait SessionStore: DeviceStore + Send + Sync + 'static {
    /// Stores a new session; `Conflict` if its id exists.
    async fn insert_session(&self, session: &StoredSession) -> Result<(), StoreError>;
    /// Reads a session; `None` once past its `retain_until`.
    async fn get_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError>;
    /// Records use of a session: `last_seen_at` moves forward to `seen`
    /// (never back) and `retain_until` to `retain_until` when later (never
    /// shorter). False when the session is absent (nothing written).
    async fn touch_session(
        &self,
        id: &str,
        seen: DateTime<Utc>,
        retain_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The user's sessions not past `retain_until`, oldest first.
    async fn list_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError>;
    /// Deletes a session; returns it, or `None` if it was absent.
    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Deletes every session of a user; returns those deleted.
    async fn delete_user_sessions(&self, user_id: &str) -> Result<Vec<Session>, StoreError>;
    /// Stores an authorization code under the SHA-256 of its value.
    async fn put_code(&self, code_hash: &str, code: &AuthCode) -> Result<(), StoreError>;
    /// Spends a code, atomically: the first call gets `Fresh`, every later
    /// one `Replayed` (remembered for [`SPENT_CODE_MEMORY_SECS`] past its
    /// expiry), an expired or unknown code `Unknown`.
    async fn take_code(&self, code_hash: &str, now: DateTime<Utc>) -> Result<CodeUse, StoreError>;
    /// Stores a new refresh family and its first token's hash.
    async fn insert_refresh(
        &self,
        family: &RefreshFamily,
        token_hash: &str,
    ) -> Result<(), StoreError>;
    /// Presents a refresh token, atomically (two gateways racing on one
    /// token see one order):
    /// - unknown hash: `Unknown`;
    /// - family revoked, past `expires_at`, or unused for longer than
    ///   `idle`: `Ended`, nothing written;
    /// - the token is current: it is marked replaced at `now`, `next_hash`
    ///   is stored as a current token of the family, `last_used_at` = `now`:
    ///   `Rotated`;
    /// - the token was replaced less than `grace` ago (concurrent refreshes
    ///   of one token): the same, without changing when it was replaced;
    /// - replaced longer ago: the family is marked revoked: `Reused`.
    async fn use_refresh(
        &self,
        token_hash: &str,
        next_hash: &str,
        now: DateTime<Utc>,
        grace: std::time::Duration,
        idle: std::time::Duration,
    ) -> Result<RefreshUse, StoreError>;
    /// Reads a family.
    async fn get_refresh_family(&self, id: &str) -> Result<Option<RefreshFamily>, StoreError>;
    /// The family a refresh token (by its hash) belongs to, changing
    /// nothing: for revoking it (RFC 7009) after checking who asks.
    async fn find_refresh(&self, token_hash: &str) -> Result<Option<RefreshFamily>, StoreError>;
    /// Forgets lapsed sessions, codes, families and tokens (a no-op where
    /// the backend expires keys itself); returns how many.
    async fn purge_people(&self, now: DateTime<Utc>) -> Result<usize, StoreError>;
    /// Stores a single sign-on attempt under the SHA-256 of its `state`.
    async fn put_sso_login(&self, state_hash: &str, login: &SsoLogin) -> Result<(), StoreError>;
    /// Takes an attempt, atomically: the first call gets it (and it is
    /// gone), every later one, and any call after `expires_at`, `None`.
    async fn take_sso_login(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SsoLogin>, StoreError>;
}

/// How long a spent authorization code is remembered after its expiry, so
/// a replay is recognised (and its tokens revoked) rather than unknown.
pub const SPENT_CODE_MEMORY_SECS: i64 = 600;

/// One audited admin action. Never holds a secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Ordered, unique id.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the token's subject).
    pub actor: String,
    /// What, e.g. `app.create`, `role.delete`.
    pub action: String,
    /// On what (an id or a role name).
    pub target: String,
    /// From where.
    pub source_ip: String,
    /// Non-secret details (changed field names, grace period, …).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The audit log, newest first.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends a record.
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError>;
    /// A page of records, newest first, older than `before` when given.
    async fn list_audit(
        &self,
        limit: usize,
        before: Option<String>,
    ) -> Result<(Vec<AuditRecord>, Option<String>), StoreError>;
}

/// A page of the revocation feed.
///
/// A reader follows it like this: ask with the last `cursor` (none at
/// first); a page with `reset` starts a new snapshot, whose entries (on this
/// page and the following `snapshot` pages) together make the whole live set;
/// the snapshot is complete at its first page with `more` false or at the
/// first page that is not a `snapshot` page. Ask again at once while `more`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedPage {
    /// Entries after the cursor, in order, or the next part of a snapshot.
    pub entries: Vec<Revocation>,
    /// The cursor to ask with next time.
    pub cursor: String,
    /// True when `entries` belong to a snapshot of the live set (the cursor
    /// was absent, foreign or too old, or continued a snapshot) rather than
    /// being increments.
    pub snapshot: bool,
    /// True on the first page of a snapshot: the reader starts a new live set
    /// and, once the snapshot is complete, replaces its mirror with it.
    pub reset: bool,
    /// True when entries remain after this page: the reader is behind until
    /// it has asked again with `cursor`.
    pub more: bool,
}

/// What storing a revocation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The entry that covers the request: the new one, or an existing one
    /// that already covered everything the new one would.
    pub entry: Revocation,
    /// Whether a new entry was appended to the feed (and published).
    pub appended: bool,
}

/// Where a read of the revocation feed starts, as its cursor encodes it.
/// Both backends share the encoding: `{epoch}.{position}` for increments,
/// `{epoch}.{after}.{upto}` while a snapshot is being paged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedPosition {
    /// The entries stored after this position.
    After(u64),
    /// A snapshot being paged: the live entries after `after` up to `upto`
    /// (the last position when the snapshot began), then `After(upto)`.
    Snapshot {
        /// The last position already read.
        after: u64,
        /// Where the snapshot ends and increments begin.
        upto: u64,
    },
}

impl FeedPosition {
    /// Decodes `cursor` against the store's `epoch`, last position `current`
    /// and oldest forgotten position `floor`. An absent, foreign or too old
    /// cursor starts a new snapshot up to `current`: the second value is then
    /// true (the page is a `reset`).
    pub fn resolve(cursor: Option<&str>, epoch: &str, current: u64, floor: u64) -> (Self, bool) {
        let parsed = cursor.and_then(|c| {
            let (e, rest) = c.split_once('.')?;
            if e != epoch {
                return None;
            }
            match rest.split_once('.') {
                // Entries the snapshot skips by being continued later have
                // all expired (only expired entries are forgotten), so the
                // floor does not matter here.
                Some((after, upto)) => {
                    let (after, upto) = (after.parse().ok()?, upto.parse().ok()?);
                    (after <= upto && upto <= current).then_some(Self::Snapshot { after, upto })
                }
                None => {
                    let seq = rest.parse().ok()?;
                    (seq <= current && seq >= floor).then_some(Self::After(seq))
                }
            }
        });
        match parsed {
            Some(p) => (p, false),
            None => (
                Self::Snapshot {
                    after: 0,
                    upto: current,
                },
                true,
            ),
        }
    }

    /// The cursor that continues from here.
    pub fn cursor(self, epoch: &str) -> String {
        match self {
            Self::After(seq) => format!("{epoch}.{seq}"),
            Self::Snapshot { after, upto } => format!("{epoch}.{after}.{upto}"),
        }
    }
}

/// Whether an existing entry already covers everything `kind` expiring at
/// `expires_at` would: then revoking again appends nothing. The same `jti`
/// or the same session lasting at least as long, or the same subject with a
/// not-before at least as late lasting at least as long.
pub fn already_covered(existing: &Revocation, kind: &RevocationKind, expires_at: i64) -> bool {
    existing.expires_at >= expires_at
        && match (&existing.kind, kind) {
            (RevocationKind::Jti { jti: old }, RevocationKind::Jti { jti: new }) => old == new,
            (
                RevocationKind::Subject {
                    sub: old,
                    not_before_ms: old_nb,
                },
                RevocationKind::Subject {
                    sub: new,
                    not_before_ms: new_nb,
                },
            ) => old == new && old_nb >= new_nb,
            (RevocationKind::Session { sid: old }, RevocationKind::Session { sid: new }) => {
                old == new
            }
            (RevocationKind::Key { kid: old }, RevocationKind::Key { kid: new }) => old == new,
            // Listed rather than `_`: a new kind must decide here.
            (
                RevocationKind::Jti { .. },
                RevocationKind::Subject { .. }
                | RevocationKind::Session { .. }
                | RevocationKind::Key { .. },
            )
            | (
                RevocationKind::Subject { .. },
                RevocationKind::Jti { .. }
                | RevocationKind::Session { .. }
                | RevocationKind::Key { .. },
            )
            | (
                RevocationKind::Session { .. },
                RevocationKind::Jti { .. }
                | RevocationKind::Subject { .. }
                | RevocationKind::Key { .. },
            )
            | (
                RevocationKind::Key { .. },
                RevocationKind::Jti { .. }
                | RevocationKind::Subject { .. }
                | RevocationKind::Session { .. },
            ) => false,
        }
}

/// A signing key as stored (docs/api.md, "Signing keys over time"). Its state is not stored: it follows
/// from these instants and the other keys of its algorithm at the time of
/// asking (`service::keyring`), so every gateway sharing the store derives
/// the same ring without a coordinator.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it starts signing (published from `created_at` on).
    pub activates_at: DateTime<Utc>,
    /// When it was withdrawn; a revoked key is never published again.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The private half at rest.
    pub private: SealedKey,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("activates_at", &self.activates_at)
            .field("revoked_at", &self.revoked_at)
            .field("private", &"<hidden>")
            .finish()
    }
}

/// A private key at rest: PKCS#8 PEM in the clear (the embedded store
/// without a key-encryption key, as `keys/` files are), or sealed with
/// AES-256-GCM under the key-encryption key, the `kid` bound as associated
/// data. Base64url, no padding.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "enc")]
pub enum SealedKey {
    /// Not encrypted.
    #[serde(rename = "none")]
    Plain {
        /// The PEM text.
        pem: String,
    },
    /// Encrypted with the key-encryption key.
    #[serde(rename = "A256GCM")]
    Sealed {
        /// The 96-bit nonce.
        nonce: String,
        /// Ciphertext and tag.
        ciphertext: String,
    },
}

/// Every stored signing key, and the version of the ring they were read at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredRing {
    /// Changes with every successful [`KeyStore::swap_keys`]; 0 for a store
    /// that never held a key.
    pub version: u64,
    /// The keys, in no particular order.
    pub keys: Vec<StoredKey>,
}

/// The signing-key ring shared by every gateway on one store.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Every key, with the ring's version.
    async fn load_keys(&self) -> Result<StoredRing, StoreError>;
    /// Writes `upsert` (by `kid`) and removes `remove`, atomically and only
    /// if the ring is still at `version`; then publishes
    /// [`ChangeEvent::Keys`](crate::domain::ChangeEvent::Keys). `Ok(None)`
    /// when another write came first (nothing written: read again and
    /// retry), else the new version.
    async fn swap_keys(
        &self,
        version: u64,
        upsert: &[StoredKey],
        remove: &[String],
    ) -> Result<Option<u64>, StoreError>;
}

/// Revocations: stored with a bounded lifetime, readable as a versioned feed.
#[async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Stores a revocation, assigning its feed position, and publishes it.
    /// Idempotent: when an existing entry already covers it
    /// ([`already_covered`]), nothing is appended or published and that
    /// entry is returned, so repeating a revocation cannot grow the feed.
    async fn revoke(&self, kind: RevocationKind, expires_at: i64) -> Result<Revoked, StoreError>;
    /// Whether `token` is revoked now: by its `jti`, its subject, or its
    /// session. Each is one indexed lookup, whatever the number of entries.
    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError>;
    /// One page of at most `limit` entries (at least 1): those after
    /// `cursor`, or the next part of a snapshot of every live entry when the
    /// cursor is absent, foreign or older than what was forgotten (see
    /// [`FeedPage`] for how a reader follows it).
    async fn feed(&self, cursor: Option<&str>, limit: usize) -> Result<FeedPage, StoreError>;
    /// Forgets entries that expired before `now` (seconds); returns how many.
    async fn purge_expired(&self, now: i64) -> Result<usize, StoreError>;
}

/// The device authorization grant's requests (RFC 8628), kept under the
/// SHA-256 (hex) of the device code and found by the SHA-256 of the
/// normalised user code. A request is remembered for
/// [`DEVICE_MEMORY_SECS`] past its expiry, so a late poll hears
/// `expired_token` rather than an unknown code.
#[async_trait]
pub trait DeviceStore: Send + Sync + 'static {
    /// Stores a new, pending request; `Conflict` if a live request holds
    /// the same user code (the caller draws another).
    async fn insert_device(
        &self,
        device_hash: &str,
        request: &DeviceRequest,
    ) -> Result<(), StoreError>;
    /// The request a user code names while it is pending and not expired
    /// at `now`.
    async fn find_device(
        &self,
        user_code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceRequest>, StoreError>;
    /// Approves (for a user, in a session) or denies a pending request,
    /// atomically. False when it is not pending and unexpired at `now`
    /// (decided already, expired, unknown): nothing is written.
    async fn decide_device(
        &self,
        user_code_hash: &str,
        decision: &DeviceDecision,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// A poll by `client_id`, atomically (gateways racing on one code see
    /// one order):
    /// - unknown, forgotten, another client's, or already consumed: `Unknown`;
    /// - past `expires_at`: `Expired`;
    /// - denied: `Denied`;
    /// - approved: `Approved`, and the request is consumed (a later poll
    ///   is `Unknown`);
    /// - pending, and the previous poll less than the interval ago: the
    ///   interval grows by [`DEVICE_SLOW_DOWN_SECS`]: `SlowDown`;
    /// - pending: `Pending`.
    ///
    /// Every pending poll records `now` as the last poll.
    async fn poll_device(
        &self,
        device_hash: &str,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DevicePoll, StoreError>;
}

/// How long a device request is remembered after it expires.
pub const DEVICE_MEMORY_SECS: i64 = 600;
/// How much a `slow_down` adds to the polling interval (RFC 8628 §3.5).
pub const DEVICE_SLOW_DOWN_SECS: u64 = 5;

/// What a device asked for (RFC 8628 §3.1), as it was when created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// The client asking.
    pub client_id: String,
    /// The scope requested (space-separated).
    pub scope: String,
    /// SHA-256 (hex) of the normalised user code.
    pub user_code_hash: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the codes stop working.
    pub expires_at: DateTime<Utc>,
    /// The polling interval at first, seconds.
    pub interval_secs: u64,
}

/// A person's answer to a device request.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceDecision {
    /// Allowed: tokens for this user, in this session.
    Approve {
        /// The user.
        user_id: String,
        /// The session they approved from.
        session_id: String,
    },
    /// Refused.
    Deny,
}

/// What a poll found.
#[derive(Clone, Debug, PartialEq)]
pub enum DevicePoll {
    /// No such request for this client (or consumed, or forgotten).
    Unknown,
    /// Not decided yet.
    Pending,
    /// Not decided yet, and polled too fast: the new interval.
    SlowDown {
        /// Seconds to wait from now on.
        interval_secs: u64,
    },
    /// Past its expiry.
    Expired,
    /// The person refused.
    Denied,
    /// The person allowed it; the request is now consumed.
    Approved {
        /// The request.
        request: DeviceRequest,
        /// Who approved it.
        user_id: String,
        /// In which session.
        session_id: String,
    },
}

/// One GCRA budget, as the stores apply it (docs/api.md, "At the edge"): `requests` per
/// window, one request every [`Gcra::interval_us`], bursts of up to
/// `requests`. Computed once here so both backends agree to the microsecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// The emission interval T: one request's share of the window, µs.
    pub interval_us: u64,
    /// The burst window, µs: `requests × T`, so exactly `requests` fit in a
    /// whole budget even when the window does not divide evenly.
    pub window_us: u64,
}

impl Gcra {
    /// The budget of `requests` per `window_secs` (both at least 1).
    pub fn new(requests: u32, window_secs: u32) -> Self {
        let requests = u64::from(requests.max(1));
        let window = u64::from(window_secs.max(1)) * 1_000_000;
        // Rounded to the nearest µs, at least 1: an integer step keeps the
        // arithmetic exact in Redis's Lua (doubles) and here alike.
        let interval_us = ((window + requests / 2) / requests).max(1);
        Self {
            interval_us,
            window_us: interval_us * requests,
        }
    }

    /// One GCRA step at `now_us` with the stored theoretical arrival time
    /// `tat_us` (0 when the bucket is fresh): the verdict and the new TAT to
    /// store (unchanged when refused).
    pub fn step(&self, tat_us: u64, now_us: u64) -> (RateVerdict, u64) {
        let tat = tat_us.max(now_us);
        let next = tat + self.interval_us;
        if next - now_us > self.window_us {
            let verdict = RateVerdict {
                allowed: false,
                remaining: 0,
                reset_us: tat - now_us,
                retry_after_us: next - self.window_us - now_us,
            };
            return (verdict, tat_us);
        }
        let verdict = RateVerdict {
            allowed: true,
            remaining: (self.window_us - (next - now_us)) / self.interval_us,
            reset_us: next - now_us,
            retry_after_us: 0,
        };
        (verdict, next)
    }
}

/// What one request's GCRA step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateVerdict {
    /// Whether the request fits (and was counted).
    pub allowed: bool,
    /// Requests that would still fit now, after this one.
    pub remaining: u64,
    /// µs until the whole budget is available again.
    pub reset_us: u64,
    /// µs until one more request fits (0 when allowed).
    pub retry_after_us: u64,
}

/// Request budgets (docs/api.md, "At the edge"), by bucket: an application id or a user id.
/// The store keeps the clock too, so gateways sharing a store share one
/// budget and one notion of now.
#[async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    /// Takes one request from `bucket` under `budget`, atomically: a refused
    /// request takes nothing. A bucket is forgotten once its budget is whole
    /// again.
    async fn take(&self, bucket: &str, budget: Gcra) -> Result<RateVerdict, StoreError>;
}

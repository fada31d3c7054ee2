//! The store conformance suite: every backend runs these checks unchanged.
//!
//! Compiled for unit tests only: the embedded store runs it in
//! `store::embedded`, the Redis store in `store::redis` against a
//! `redis-server` of its own.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::{
    AppFilter, AppStore, AuditRecord, AuditStore, Entity, KeyStore, ListQuery, RevocationStore,
    RoleDelete, RoleStore, SealedKey, StoreError, StoredApp, StoredKey, StoredRing, StoredUser,
    UserStore,
};
use super::{SPENT_CODE_MEMORY_SECS, SessionStore};
use crate::domain::session::{
    AuthCode, CodeUse, RefreshFamily, RefreshUse, Session, StoredSession,
};
use crate::domain::{
    AccessRule, AppStatus, Application, Environment, KeyType, Permission, Role, User,
};
use crate::domain::{RevocationKind, TokenRef};

fn must<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// A sample application with a deterministic creation time (`n` seconds
/// after a fixed instant), so ordering checks do not depend on the clock.
pub fn sample_app(id: &str, n: i64) -> StoredApp {
    let base = Utc
        .timestamp_opt(1_700_000_000, 0)
        .single()
        .unwrap_or_else(Utc::now);
    let t = base + Duration::seconds(n);
    StoredApp {
        app: Application {
            id: id.to_owned(),
            name: format!("sample {id}"),
            description: "conformance".into(),
            owner: "gateway".into(),
            key_type: KeyType::Secret,
            environment: Environment::Live,
            prefix: "tsr_sk_live_x".into(),
            roles: vec![],
            permissions: vec![must(Permission::parse("content:read"), "permission")],
            access_rules: vec![],
            audiences: vec![],
            allowed_ips: vec![],
            expires_at: None,
            token_ttl: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            rate_limit: None,
            revoked_at: None,
            leaked_at: None,
            created_at: t,
            updated_at: t,
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
        },
        secret_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash{id}"),
        secret_hint: Some("abcd".into()),
        previous_secret: None,
    }
}

/// Runs every check against an empty store.
pub async fn run_all<
    S: AppStore
        + RoleStore
        + UserStore
        + AuditStore
        + RevocationStore
        + SessionStore
        + super::RateLimitStore
        + KeyStore,
>(
    store: &S,
) {
    // First: it checks the bootstrap claim on the empty store.
    names(store).await;
    crud(store).await;
    listing(store).await;
    usage(store).await;
    hourly_usage(store).await;
    roles(store).await;
    users(store).await;
    audit(store).await;
    revocations(store).await;
    people(store).await;
    identities(store).await;
    sso_logins(store).await;
    rate_limits(store).await;
    signing_keys(store).await;
}

/// GCRA budgets (docs/api.md, "At the edge"): a whole budget passes, the next request is
/// refused with a wait of at most one interval, the budget refills with
/// time, and buckets do not share.
async fn rate_limits<S: super::RateLimitStore>(store: &S) {
    use super::Gcra;
    // One request every 20 s: nothing refills while the test runs.
    let slow = Gcra::new(3, 60);
    for left in [2, 1, 0] {
        let v = must(store.take("app_rl1", slow).await, "take");
        assert!(v.allowed, "within the budget");
        assert_eq!(v.remaining, left);
        assert_eq!(v.retry_after_us, 0);
        assert!(v.reset_us <= 60_000_000, "{v:?}");
    }
    let refused = must(store.take("app_rl1", slow).await, "take beyond");
    assert!(!refused.allowed, "the 4th of 3 is refused");
    assert_eq!(refused.remaining, 0);
    assert!(
        refused.retry_after_us > 19_000_000 && refused.retry_after_us <= 20_000_000,
        "one interval at most: {refused:?}"
    );
    assert!(refused.reset_us > 59_000_000 && refused.reset_us <= 60_000_000);
    let again = must(store.take("app_rl1", slow).await, "take beyond again");
    assert!(
        !again.allowed,
        "a refusal takes nothing, but gives nothing back"
    );
    assert!(again.retry_after_us <= refused.retry_after_us);

    let other = must(store.take("usr_rl1", slow).await, "another bucket");
    assert!(other.allowed, "buckets are independent");
    assert_eq!(other.remaining, 2);

    // One request a second: spent, then one more fits once it has waited.
    let fast = Gcra::new(2, 2);
    for _ in 0..2 {
        assert!(must(store.take("app_rl2", fast).await, "take").allowed);
    }
    let wait = must(store.take("app_rl2", fast).await, "take beyond");
    assert!(!wait.allowed);
    assert!(wait.retry_after_us > 0 && wait.retry_after_us <= 1_000_000);
    tokio::time::sleep(std::time::Duration::from_micros(
        wait.retry_after_us + 50_000,
    ))
    .await;
    let refilled = must(store.take("app_rl2", fast).await, "take after the wait");
    assert!(refilled.allowed, "the budget refills: {refilled:?}");
}

async fn revocations<S: RevocationStore>(store: &S) {
    let now = Utc::now().timestamp();
    let first = must(store.feed(None, 100).await, "empty snapshot");
    assert!(first.snapshot && first.reset && !first.more && first.entries.is_empty());

    let a = must(
        store
            .revoke(RevocationKind::Jti { jti: "j1".into() }, now + 60)
            .await,
        "revoke jti",
    );
    assert!(a.appended);
    let a = a.entry;
    let b = must(
        store
            .revoke(
                RevocationKind::Subject {
                    sub: "app_s".into(),
                    not_before_ms: 5_000,
                },
                now + 60,
            )
            .await,
        "revoke subject",
    )
    .entry;
    assert!(b.seq > a.seq, "positions increase");
    assert!(must(is_revoked(store, "j1", "anyone", 0).await, "jti"));
    assert!(!must(
        is_revoked(store, "j2", "anyone", 0).await,
        "other jti"
    ));
    assert!(must(is_revoked(store, "x", "app_s", 4_999).await, "before"));
    assert!(!must(
        is_revoked(store, "x", "app_s", 5_000).await,
        "at or after"
    ));
    // An earlier instant never weakens a later one (and adds nothing).
    let older = must(
        store
            .revoke(
                RevocationKind::Subject {
                    sub: "app_s".into(),
                    not_before_ms: 1_000,
                },
                now + 60,
            )
            .await,
        "older subject",
    );
    assert!(!older.appended && older.entry == b, "covered by {b:?}");
    assert!(must(
        is_revoked(store, "x", "app_s", 4_999).await,
        "still before"
    ));

    // Incremental reading from the cursor of the first snapshot.
    let page = must(store.feed(Some(&first.cursor), 1).await, "incremental");
    assert!(!page.snapshot && !page.reset);
    assert_eq!(page.entries, vec![a.clone()]);
    assert!(page.more, "one entry left");
    let rest = must(store.feed(Some(&page.cursor), 10).await, "rest");
    assert_eq!(rest.entries, vec![b.clone()]);
    assert!(!rest.more);
    let empty = must(store.feed(Some(&rest.cursor), 10).await, "nothing new");
    assert!(empty.entries.is_empty() && !empty.snapshot && !empty.more);
    assert_eq!(empty.cursor, rest.cursor);
    // A foreign cursor gets the whole live set.
    let snap = must(store.feed(Some("elsewhere.3"), 10).await, "foreign");
    assert!(snap.snapshot && snap.reset && !snap.more);
    assert_eq!(snap.entries, vec![a, b]);

    // Expired entries are forgotten, and an old cursor then gets a snapshot.
    let c = must(
        store
            .revoke(
                RevocationKind::Jti {
                    jti: "short".into(),
                },
                now - 1,
            )
            .await,
        "expired",
    )
    .entry;
    assert_eq!(must(store.purge_expired(now).await, "purge"), 1);
    assert!(!must(is_revoked(store, "short", "x", 0).await, "purged"));
    let after_purge = must(store.feed(Some(&first.cursor), 10).await, "old cursor");
    assert!(
        after_purge.snapshot && after_purge.reset,
        "a cursor from before a purge is too old"
    );
    assert!(after_purge.entries.iter().all(|e| e.seq != c.seq));
    let purged_all = must(store.purge_expired(now + 61).await, "purge all");
    assert_eq!(purged_all, 2);
    assert!(!must(is_revoked(store, "j1", "x", 0).await, "gone"));

    revocation_idempotence(store).await;
    feed_paging(store).await;
    session_revocations(store).await;
    key_revocations(store).await;
}

/// Whether a token without a session is revoked.
async fn is_revoked<S: RevocationStore>(
    store: &S,
    jti: &str,
    sub: &str,
    issued_ms: i64,
) -> Result<bool, StoreError> {
    store
        .is_revoked(&TokenRef {
            jti,
            sub,
            sid: None,
            client: None,
            issued_ms,
        })
        .await
}

/// Session entries cover exactly the tokens carrying their `sid`, however
/// early or late issued; travel in the increments and in snapshots; repeat
/// without appending; and are forgotten once expired, without the index
/// losing a longer-lived entry of the same session.
async fn session_revocations<S: RevocationStore>(store: &S) {
    let now = Utc::now().timestamp();
    // Earlier checks leave expired entries behind: forget them, so that the
    // purge counted below is this check's own.
    must(store.purge_expired(now).await, "clean up");
    let (_, before) = read_to_end(store, None, 1000).await;
    let sid = "ses_4fGh7Kq2LmN9pQrStUvWx0";
    let session = |s: &str| RevocationKind::Session { sid: s.into() };
    let revoked = |sid: Option<&'static str>, issued_ms: i64| async move {
        must(
            store
                .is_revoked(&TokenRef {
                    jti: "ses_test_jti",
                    sub: "usr_ses",
                    sid,
                    client: None,
                    issued_ms,
                })
                .await,
            "is_revoked",
        )
    };
    assert!(!revoked(Some(sid), 0).await, "nothing revoked yet");

    let first = must(store.revoke(session(sid), now + 60).await, "session");
    assert!(first.appended);
    assert_eq!(first.entry.kind, session(sid));
    assert_eq!(first.entry.expires_at, now + 60);
    assert!(revoked(Some(sid), i64::MIN).await, "issued long ago");
    assert!(revoked(Some(sid), i64::MAX).await, "issued after the entry");
    assert!(!revoked(None, 0).await, "a token without a session");
    assert!(!revoked(Some("ses_other"), 0).await, "another session");
    assert!(
        !revoked(Some("ses_4fGh7Kq2LmN9pQrStUvWx"), 0).await,
        "a prefix"
    );
    assert!(
        !must(is_revoked(store, sid, sid, 0).await, "same text"),
        "a jti or subject spelled like the sid is not the session"
    );

    for _ in 0..20 {
        let again = must(store.revoke(session(sid), now + 60).await, "again");
        assert!(!again.appended);
        assert_eq!(again.entry, first.entry, "the existing entry is returned");
    }
    assert!(!must(store.revoke(session(sid), now + 30).await, "shorter").appended);
    let longer = must(store.revoke(session(sid), now + 90).await, "longer");
    assert!(longer.appended && longer.entry.seq > first.entry.seq);
    assert!(!must(store.revoke(session(sid), now + 90).await, "longer again").appended);
    // Kinds never cover each other, even when spelled alike.
    let jti_alike = must(
        store
            .revoke(RevocationKind::Jti { jti: sid.into() }, now + 60)
            .await,
        "jti alike",
    );
    assert!(jti_alike.appended);
    assert!(
        !revoked(Some("ses_third"), 0).await,
        "the jti entry covers no session"
    );

    let (grown, _) = read_to_end(store, Some(&before), 1000).await;
    assert_eq!(
        grown,
        vec![
            first.entry.clone(),
            longer.entry.clone(),
            jti_alike.entry.clone()
        ],
        "the increments carry session entries, once each"
    );
    let (snapshot, _) = read_to_end(store, None, 2).await;
    for e in [&first.entry, &longer.entry] {
        assert!(snapshot.contains(e), "the snapshot carries {e:?}");
    }

    let short = must(store.revoke(session("ses_short"), now - 1).await, "short");
    assert!(short.appended);
    assert_eq!(must(store.purge_expired(now).await, "purge"), 1);
    assert!(!revoked(Some("ses_short"), 0).await, "purged");
    let (snapshot, _) = read_to_end(store, None, 1000).await;
    assert!(!snapshot.contains(&short.entry));
    // The first entry expires; the longer one still revokes the session.
    must(store.purge_expired(now + 61).await, "purge the first");
    assert!(revoked(Some(sid), 0).await, "the longer entry remains");
    let (snapshot, _) = read_to_end(store, None, 1000).await;
    assert!(!snapshot.contains(&first.entry) && snapshot.contains(&longer.entry));
    must(store.purge_expired(now + 91).await, "purge the longer");
    assert!(!revoked(Some(sid), 0).await, "all gone");
    // Once forgotten, the same session may be revoked anew.
    let anew = must(store.revoke(session(sid), now + 60).await, "anew");
    assert!(anew.appended && anew.entry.seq > jti_alike.entry.seq);
    assert!(revoked(Some(sid), 0).await);

    // A subject entry for a client application also covers the people's
    // tokens issued through it before the entry's instant.
    must(
        store
            .revoke(
                RevocationKind::Subject {
                    sub: "app_client_x".into(),
                    not_before_ms: 5_000,
                },
                now + 60,
            )
            .await,
        "revoke a client",
    );
    let through = |issued_ms: i64, client: Option<&'static str>| async move {
        must(
            store
                .is_revoked(&TokenRef {
                    jti: "through_client_jti",
                    sub: "usr_through",
                    sid: Some("ses_Through000000000000000"),
                    client,
                    issued_ms,
                })
                .await,
            "is_revoked through a client",
        )
    };
    assert!(through(4_999, Some("app_client_x")).await);
    assert!(!through(5_000, Some("app_client_x")).await, "minted after");
    assert!(!through(0, Some("app_other")).await, "another client");
    assert!(!through(0, None).await, "no client");
}

/// Reads the feed from `cursor` until no entry remains; returns the entries
/// and the cursor to continue from.
async fn read_to_end<S: RevocationStore>(
    store: &S,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<crate::domain::Revocation>, String) {
    let mut cursor = cursor.map(str::to_owned);
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = must(store.feed(cursor.as_deref(), limit).await, "read to end");
        assert!(
            page.entries.len() <= limit,
            "a page holds at most the limit"
        );
        out.extend(page.entries);
        cursor = Some(page.cursor);
        if !page.more {
            return (out, cursor.unwrap_or_default());
        }
    }
    panic!("the feed never ended");
}

/// Revoking again what is already revoked appends nothing and publishes
/// nothing; a later subject instant is always written.
async fn revocation_idempotence<S: RevocationStore>(store: &S) {
    let now = Utc::now().timestamp();
    let (_, before) = read_to_end(store, None, 1000).await;
    let jti = || RevocationKind::Jti {
        jti: "idem_j".into(),
    };
    let first = must(store.revoke(jti(), now + 60).await, "first revoke");
    assert!(first.appended);
    for _ in 0..49 {
        let again = must(store.revoke(jti(), now + 60).await, "again");
        assert!(!again.appended);
        assert_eq!(again.entry, first.entry, "the existing entry is returned");
    }
    let (grown, after_jti) = read_to_end(store, Some(&before), 1000).await;
    assert_eq!(grown, vec![first.entry.clone()], "fifty revokes, one entry");
    // A shorter lifetime is covered; a longer one is written.
    assert!(!must(store.revoke(jti(), now + 30).await, "shorter").appended);
    let longer = must(store.revoke(jti(), now + 90).await, "longer");
    assert!(longer.appended && longer.entry.seq > first.entry.seq);
    assert!(!must(store.revoke(jti(), now + 90).await, "longer again").appended);

    let subject = |nb: i64| RevocationKind::Subject {
        sub: "idem_s".into(),
        not_before_ms: nb,
    };
    let s1 = must(store.revoke(subject(10_000), now + 60).await, "subject");
    assert!(s1.appended);
    let same = must(
        store.revoke(subject(10_000), now + 60).await,
        "same subject",
    );
    assert!(!same.appended && same.entry == s1.entry);
    let earlier = must(store.revoke(subject(9_000), now + 60).await, "earlier");
    assert!(!earlier.appended && earlier.entry == s1.entry);
    let later = must(store.revoke(subject(11_000), now + 60).await, "later");
    assert!(later.appended, "a later instant must be written");
    assert!(must(
        is_revoked(store, "x", "idem_s", 10_500).await,
        "later wins"
    ));
    assert!(!must(
        is_revoked(store, "x", "idem_s", 11_000).await,
        "at it"
    ));
    assert!(!must(store.revoke(subject(11_000), now + 60).await, "later again").appended);
    assert!(must(is_revoked(store, "idem_j", "x", 0).await, "jti kept"));

    let (grown, _) = read_to_end(store, Some(&after_jti), 1000).await;
    assert_eq!(
        grown.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![longer.entry.seq, s1.entry.seq, later.entry.seq]
    );
}

/// Every page honours `limit`, snapshots included, and says whether more
/// remains; a snapshot continues with its own cursor.
async fn feed_paging<S: RevocationStore>(store: &S) {
    let now = Utc::now().timestamp();
    let (_, start) = read_to_end(store, None, 1000).await;
    let mut added = Vec::new();
    for n in 0..6 {
        // One expired entry among them: the increments carry it, the
        // snapshots do not.
        let exp = if n == 3 { now - 1 } else { now + 60 };
        let r = must(
            store
                .revoke(
                    RevocationKind::Jti {
                        jti: format!("page_{n}"),
                    },
                    exp,
                )
                .await,
            "add",
        );
        added.push(r.entry);
    }

    // Increments, two at a time.
    let mut cursor = start.clone();
    let mut pages = Vec::new();
    loop {
        let p = must(store.feed(Some(&cursor), 2).await, "increments");
        assert!(!p.snapshot && !p.reset && p.entries.len() <= 2);
        cursor = p.cursor.clone();
        let more = p.more;
        pages.push(p.entries);
        if !more {
            break;
        }
    }
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages.concat(), added);

    // A snapshot in one page and the same one paged.
    let whole = must(store.feed(None, 10_000).await, "whole");
    assert!(whole.snapshot && whole.reset && !whole.more);
    assert!(whole.entries.iter().all(|e| e.expires_at > now));
    assert!(whole.entries.len() >= 5, "{:?}", whole.entries);
    let one = must(store.feed(None, 1).await, "limit 1");
    assert!(one.snapshot && one.reset && one.more);
    assert_eq!(one.entries.len(), 1);
    let mut collected = one.entries.clone();
    let mut cursor = one.cursor.clone();
    let mut last_snapshot_more = true;
    while last_snapshot_more {
        let p = must(store.feed(Some(&cursor), 2).await, "snapshot continued");
        assert!(p.snapshot && !p.reset, "a continuation, not a new snapshot");
        assert!(p.entries.len() <= 2);
        // A new entry mid-snapshot comes after it, as an increment.
        if collected.len() == 1 {
            must(
                store
                    .revoke(RevocationKind::Jti { jti: "late".into() }, now + 60)
                    .await,
                "late",
            );
        }
        collected.extend(p.entries);
        cursor = p.cursor;
        last_snapshot_more = p.more;
        // The snapshot is complete when its page ends where increments begin.
        if collected.len() == whole.entries.len() {
            break;
        }
    }
    assert_eq!(
        collected, whole.entries,
        "the paged snapshot is the snapshot"
    );
    let (tail, _) = read_to_end(store, Some(&cursor), 10).await;
    assert!(
        tail.iter()
            .all(|e| e.seq > whole.entries.last().map_or(0, |e| e.seq)),
        "{tail:?}"
    );
    assert_eq!(
        tail.iter()
            .filter(|e| e.kind == RevocationKind::Jti { jti: "late".into() })
            .count(),
        1,
        "{tail:?}"
    );

    // Cursors that do not continue anything start a new snapshot.
    for bad in ["elsewhere.0.5", "x", "", "1.2.3.4"] {
        let p = must(store.feed(Some(bad), 1).await, "bad cursor");
        assert!(p.snapshot && p.reset, "{bad:?}");
    }
    let own_epoch = start.split('.').next().unwrap_or_default();
    for bad in [
        format!("{own_epoch}.9.5"),
        format!("{own_epoch}.0.999999999"),
        format!("{own_epoch}.999999999"),
    ] {
        let p = must(store.feed(Some(&bad), 1).await, "impossible cursor");
        assert!(p.snapshot && p.reset, "{bad:?}");
    }
}

/// Withdrawn signing keys (docs/api.md, "Signing keys over time"): stored, carried by the feed once each,
/// never repeated, covering no token by its other fields, and forgotten
/// once expired, index included.
async fn key_revocations<S: RevocationStore>(store: &S) {
    let now = Utc::now().timestamp();
    // Forget what earlier checks left expired: the purges counted below are
    // this check's own.
    must(store.purge_expired(now).await, "clean up");
    let (_, before) = read_to_end(store, None, 1000).await;
    let key = |kid: &str| RevocationKind::Key { kid: kid.into() };
    let kid = "kid_Vq3p0ZuB7yXr1tWcLmN2aDe5Hs8";

    let first = must(store.revoke(key(kid), now + 60).await, "revoke a key");
    assert!(first.appended);
    assert_eq!(first.entry.kind, key(kid));
    assert_eq!(first.entry.expires_at, now + 60);
    for _ in 0..10 {
        let again = must(store.revoke(key(kid), now + 60).await, "again");
        assert!(!again.appended, "revoking a key again appends nothing");
        assert_eq!(again.entry, first.entry, "the existing entry is returned");
    }
    assert!(!must(store.revoke(key(kid), now + 30).await, "shorter").appended);
    // Kinds never cover each other, even when spelled alike.
    let jti_alike = must(
        store
            .revoke(RevocationKind::Jti { jti: kid.into() }, now + 60)
            .await,
        "jti alike",
    );
    assert!(jti_alike.appended);
    let other = must(store.revoke(key("kid_other"), now + 60).await, "other");
    assert!(other.appended && other.entry.seq > jti_alike.entry.seq);
    // A key entry covers no token through its jti, subject or session: the
    // verifier refuses by the token's `kid`, which stores never see.
    let spelled_alike = must(
        store
            .is_revoked(&TokenRef {
                jti: "kid_other",
                sub: "kid_other",
                sid: Some("kid_other"),
                client: Some("kid_other"),
                issued_ms: 0,
            })
            .await,
        "is_revoked",
    );
    assert!(!spelled_alike);

    let (grown, _) = read_to_end(store, Some(&before), 1000).await;
    assert_eq!(
        grown,
        vec![
            first.entry.clone(),
            jti_alike.entry.clone(),
            other.entry.clone()
        ],
        "the increments carry key entries, once each"
    );
    let (snapshot, _) = read_to_end(store, None, 2).await;
    for e in [&first.entry, &other.entry] {
        assert!(snapshot.contains(e), "the snapshot carries {e:?}");
    }

    let short = must(store.revoke(key("kid_short"), now - 1).await, "short");
    assert!(short.appended);
    assert_eq!(must(store.purge_expired(now).await, "purge"), 1);
    let (snapshot, _) = read_to_end(store, None, 1000).await;
    assert!(!snapshot.contains(&short.entry) && snapshot.contains(&first.entry));
    assert!(
        must(store.revoke(key("kid_short"), now + 60).await, "short anew").appended,
        "the purge took its index entry too"
    );
    assert!(must(store.purge_expired(now + 61).await, "purge the first") >= 3);
    let (snapshot, _) = read_to_end(store, None, 1000).await;
    assert!(!snapshot.contains(&first.entry), "{snapshot:?}");
    let anew = must(store.revoke(key(kid), now + 60).await, "anew");
    assert!(anew.appended, "a forgotten key may be revoked anew");
    assert!(anew.entry.seq > other.entry.seq);
}

/// A signing key for the ring checks, created now (sub-second instants must
/// survive the round trip).
fn stored_key(kid: &str, private: SealedKey) -> StoredKey {
    let t = Utc::now();
    StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        created_at: t,
        activates_at: t + Duration::minutes(15),
        revoked_at: None,
        private,
    }
}

fn plain_pem(n: &str) -> SealedKey {
    SealedKey::Plain {
        pem: format!("-----BEGIN PRIVATE KEY-----\nMIGHAgEA{n}\n-----END PRIVATE KEY-----\n"),
    }
}

fn sealed_pem(n: &str) -> SealedKey {
    SealedKey::Sealed {
        nonce: "AAECAwQFBgcICQoL".into(),
        ciphertext: format!("c2VhbGVkLXByaXZhdGUta2V5{n}"),
    }
}

/// The ring with its keys in `kid` order (stores return them unordered).
async fn sorted_ring<S: KeyStore>(store: &S) -> StoredRing {
    let mut ring = must(store.load_keys().await, "load keys");
    ring.keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    ring
}

/// The signing-key ring (docs/api.md, "Signing keys over time"): versioned compare-and-swap of upserts
/// and removals, all or nothing, one winner among racing writers, and the
/// version always read with the keys it belongs to.
async fn signing_keys<S: KeyStore>(store: &S) {
    assert_eq!(
        must(store.load_keys().await, "empty ring"),
        StoredRing::default(),
        "a new store: version 0, no keys"
    );
    let a = stored_key("kid_a", plain_pem("a"));
    let mut b = stored_key("kid_b", sealed_pem("b"));
    b.alg = "EdDSA".into();
    let v1 = must(
        store.swap_keys(0, &[a.clone(), b.clone()], &[]).await,
        "first swap",
    )
    .unwrap_or_else(|| panic!("a new ring is at version 0"));
    assert!(v1 > 0);
    let ring = sorted_ring(store).await;
    assert_eq!(
        ring,
        StoredRing {
            version: v1,
            keys: vec![a.clone(), b.clone()]
        },
        "every field of both kinds of private key comes back"
    );

    // Another version, older or newer: refused whole, nothing written.
    let c = stored_key("kid_c", sealed_pem("c"));
    for stale in [0, v1 + 1, u64::MAX] {
        let refused = must(
            store
                .swap_keys(stale, std::slice::from_ref(&c), &["kid_a".into()])
                .await,
            "stale swap",
        );
        assert_eq!(refused, None, "at {stale}, the ring is at {v1}");
        assert_eq!(sorted_ring(store).await, ring, "nothing changed");
    }

    // An upsert replaces the key of the same kid.
    let mut revoked_a = a.clone();
    revoked_a.revoked_at = Some(Utc::now());
    let v2 = must(
        store
            .swap_keys(v1, std::slice::from_ref(&revoked_a), &[])
            .await,
        "upsert",
    )
    .unwrap_or_else(|| panic!("upsert at the current version"));
    assert!(v2 > v1);
    assert_eq!(
        sorted_ring(store).await,
        StoredRing {
            version: v2,
            keys: vec![revoked_a.clone(), b.clone()]
        }
    );

    // A removal deletes; an absent kid is no error.
    let v3 = must(
        store
            .swap_keys(v2, &[], &["kid_b".into(), "kid_absent".into()])
            .await,
        "remove",
    )
    .unwrap_or_else(|| panic!("remove at the current version"));
    assert!(v3 > v2);
    assert_eq!(
        sorted_ring(store).await,
        StoredRing {
            version: v3,
            keys: vec![revoked_a.clone()]
        }
    );

    // Upserts and removals together: neither without the other.
    let drop_a = ["kid_a".to_owned()];
    let both = |v| store.swap_keys(v, std::slice::from_ref(&c), &drop_a);
    assert_eq!(must(both(v2).await, "stale both"), None);
    assert_eq!(
        sorted_ring(store).await,
        StoredRing {
            version: v3,
            keys: vec![revoked_a.clone()]
        },
        "a refused swap neither added nor removed"
    );
    let v4 = must(both(v3).await, "both").unwrap_or_else(|| panic!("both at v3"));
    assert!(v4 > v3);
    assert_eq!(
        sorted_ring(store).await,
        StoredRing {
            version: v4,
            keys: vec![c.clone()]
        }
    );

    // Writers racing from one version: exactly one wins.
    let racers: Vec<StoredKey> = (0..8)
        .map(|n| stored_key(&format!("kid_race{n}"), plain_pem(&n.to_string())))
        .collect();
    let results = futures_util::future::join_all(
        racers
            .iter()
            .map(|k| store.swap_keys(v4, std::slice::from_ref(k), &[])),
    )
    .await;
    let winners: Vec<(usize, u64)> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| must(r, "racing swap").map(|v| (i, v)))
        .collect();
    let [(winner, v5)] = winners[..] else {
        panic!("exactly one racing swap wins: {winners:?}");
    };
    assert!(v5 > v4);
    assert_eq!(
        sorted_ring(store).await,
        StoredRing {
            version: v5,
            keys: vec![c.clone(), racers[winner].clone()]
        }
    );

    // Reads racing with swaps: each version comes with its own keys. The
    // writer marks every swap in the `alg` of one key and remembers which
    // version that swap made.
    let mut made = std::collections::HashMap::from([(v5, None)]);
    let writer = async {
        let mut marks = Vec::new();
        let mut version = v5;
        for n in 0..40 {
            let mut marker = stored_key("kid_marker", plain_pem("m"));
            marker.alg = format!("mark{n}");
            let next = must(
                store
                    .swap_keys(version, std::slice::from_ref(&marker), &[])
                    .await,
                "marked swap",
            )
            .unwrap_or_else(|| panic!("the only writer"));
            marks.push((next, Some(marker.alg)));
            version = next;
        }
        marks
    };
    let reader = async {
        let mut seen = Vec::new();
        for _ in 0..120 {
            let ring = must(store.load_keys().await, "racing load");
            let mark = ring
                .keys
                .iter()
                .find(|k| k.kid == "kid_marker")
                .map(|k| k.alg.clone());
            seen.push((ring.version, mark));
        }
        seen
    };
    let (marks, seen) = futures_util::future::join(writer, reader).await;
    made.extend(marks);
    for (version, mark) in seen {
        assert_eq!(
            made.get(&version),
            Some(&mark),
            "version {version} was read with the keys of another"
        );
    }
}

fn role(name: &str, perms: &[&str]) -> Role {
    let t = Utc::now();
    Role {
        name: name.into(),
        description: String::new(),
        permissions: perms
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect(),
        created_at: t,
        updated_at: t,
    }
}

fn user(id: &str, email: &str, roles: &[&str]) -> StoredUser {
    let t = Utc::now();
    StoredUser {
        user: User {
            id: id.into(),
            email: email.into(),
            name: String::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: vec![],
            status: crate::domain::UserStatus::Active,
            identities: vec![],
            has_password: false,
            created_at: t,
            updated_at: t,
            last_login_at: None,
        },
        password_hash: None,
    }
}

async fn roles<S: AppStore + RoleStore + UserStore>(store: &S) {
    must(
        store.insert_role(&role("reader", &["content:read"])).await,
        "insert role",
    );
    must(
        store.insert_role(&role("writer", &["content:write"])).await,
        "insert role",
    );
    assert!(matches!(
        store.insert_role(&role("reader", &[])).await,
        Err(StoreError::Conflict { what: Entity::Role, id }) if id == "reader"
    ));
    let mut r = must(store.get_role("reader").await, "get role")
        .unwrap_or_else(|| panic!("reader missing"));
    r.description = "changed".into();
    must(store.update_role(&r, r.updated_at).await, "update role");
    assert_eq!(must(store.get_role("reader").await, "get"), Some(r.clone()));
    // A change computed from an older version is refused whole.
    let mut newer = r.clone();
    newer.updated_at = Utc::now();
    must(
        store.update_role(&newer, r.updated_at).await,
        "update role again",
    );
    assert!(matches!(
        store.update_role(&r, r.updated_at).await,
        Err(StoreError::Stale { what: Entity::Role, id }) if id == "reader"
    ));
    assert_eq!(must(store.get_role("reader").await, "get"), Some(newer));
    assert!(matches!(
        store.update_role(&role("ghost", &[]), Utc::now()).await,
        Err(StoreError::NotFound { what: Entity::Role, id }) if id == "ghost"
    ));
    let names: Vec<String> = must(store.list_roles().await, "list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["reader", "writer"]);

    let mut a = sample_app("app_roles", 1);
    a.app.roles = vec!["reader".into()];
    a.app.access_rules = vec![AccessRule {
        scope: "cluster:c1".into(),
        roles: vec!["reader".into()],
        permissions: vec![],
    }];
    must(store.insert(&a).await, "insert app with role");
    must(
        store
            .insert_user(&user("usr_roles", "roles@example.com", &["reader"]))
            .await,
        "insert user",
    );

    // Held and not detached: refused, nothing changed.
    assert_eq!(
        must(store.delete_role("reader", false).await, "delete held"),
        RoleDelete::InUse {
            apps: vec!["app_roles".into()],
            users: vec!["usr_roles".into()]
        }
    );
    assert!(must(store.get_role("reader").await, "still there").is_some());
    // Detached: gone from the role table, the app, its rules and the user, at once.
    assert_eq!(
        must(store.delete_role("reader", true).await, "detach"),
        RoleDelete::Deleted
    );
    assert_eq!(must(store.get_role("reader").await, "gone"), None);
    let got = must(store.get("app_roles").await, "app").unwrap_or_else(|| panic!("app missing"));
    assert!(got.app.roles.is_empty());
    assert!(got.app.access_rules.is_empty(), "an empty rule is dropped");
    let u =
        must(store.get_user("usr_roles").await, "user").unwrap_or_else(|| panic!("user missing"));
    assert!(u.user.roles.is_empty());
    assert_eq!(
        must(store.delete_role("reader", true).await, "again"),
        RoleDelete::NotFound
    );
    assert_eq!(
        must(store.delete_role("writer", false).await, "unheld"),
        RoleDelete::Deleted
    );
    must(store.delete("app_roles").await, "cleanup");
    must(store.delete_user("usr_roles").await, "cleanup");
}

async fn users<S: UserStore>(store: &S) {
    must(
        store
            .insert_user(&user("usr_a", "a@example.com", &[]))
            .await,
        "insert a",
    );
    must(
        store
            .insert_user(&user("usr_b", "b@example.com", &[]))
            .await,
        "insert b",
    );
    assert!(
        matches!(
            store
                .insert_user(&user("usr_c", "a@example.com", &[]))
                .await,
            Err(StoreError::Conflict { what: Entity::UserEmail, id }) if id == "a@example.com"
        ),
        "emails are unique"
    );
    assert!(
        matches!(
            store
                .insert_user(&user("usr_a", "z@example.com", &[]))
                .await,
            Err(StoreError::Conflict { what: Entity::User, id }) if id == "usr_a"
        ),
        "ids are unique"
    );
    let b_at = must(store.get_user("usr_b").await, "get user")
        .unwrap_or_else(|| panic!("usr_b missing"))
        .user
        .updated_at;
    let mut b = user("usr_b", "a@example.com", &[]);
    assert!(matches!(
        store.update_user(&b, b_at).await,
        Err(StoreError::Conflict {
            what: Entity::UserEmail,
            ..
        })
    ));
    assert!(matches!(
        store
            .update_user(&user("usr_ghost", "g@example.com", &[]), Utc::now())
            .await,
        Err(StoreError::NotFound { what: Entity::User, id }) if id == "usr_ghost"
    ));
    b.user.email = "bee@example.com".into();
    assert!(
        matches!(
            store.update_user(&b, Utc::now()).await,
            Err(StoreError::Stale {
                what: Entity::User,
                ..
            })
        ),
        "a change computed from an older version is refused"
    );
    must(store.update_user(&b, b_at).await, "change email");
    // Sign-in finds people by email: the new one, never the old one.
    let found = must(
        store.find_user_by_email("bee@example.com").await,
        "by email",
    );
    assert_eq!(found.map(|u| u.user.id).as_deref(), Some("usr_b"));
    assert!(
        must(store.find_user_by_email("b@example.com").await, "old email").is_none(),
        "a changed email no longer finds its old owner"
    );
    assert!(
        must(
            store.find_user_by_email("nobody@example.com").await,
            "unknown"
        )
        .is_none()
    );
    // The password hash and status survive a round trip.
    let mut with_pw = user("usr_pw", "pw@example.com", &[]);
    with_pw.password_hash = Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into());
    with_pw.user.status = crate::domain::UserStatus::Disabled;
    must(store.insert_user(&with_pw).await, "insert with password");
    let back = must(
        store.find_user_by_email("pw@example.com").await,
        "pw by email",
    )
    .unwrap_or_else(|| panic!("usr_pw missing"));
    assert_eq!(back, with_pw);
    must(store.delete_user("usr_pw").await, "cleanup pw");
    // The old email is free again.
    must(
        store
            .insert_user(&user("usr_c", "b@example.com", &[]))
            .await,
        "reuse email",
    );
    let (page, next) = must(store.list_users(2, None).await, "page 1");
    assert_eq!(
        page.iter().map(|u| u.user.id.as_str()).collect::<Vec<_>>(),
        ["usr_a", "usr_b"]
    );
    let (page, next2) = must(store.list_users(2, next).await, "page 2");
    assert_eq!(page.len(), 1);
    assert!(next2.is_none());
    for id in ["usr_a", "usr_b", "usr_c"] {
        assert!(must(store.delete_user(id).await, "delete"));
    }
    assert!(!must(store.delete_user("usr_a").await, "delete again"));
    must(
        store
            .insert_user(&user("usr_d", "a@example.com", &[]))
            .await,
        "email freed by delete",
    );
    must(store.delete_user("usr_d").await, "cleanup");
}

async fn audit<S: AuditStore>(store: &S) {
    for i in 0..5 {
        let rec = AuditRecord {
            id: format!("{i:020}-x"),
            at: Utc::now(),
            actor: "admin".into(),
            action: "app.create".into(),
            target: format!("app_{i}"),
            source_ip: "127.0.0.1".into(),
            details: serde_json::json!({}),
        };
        must(store.append(&rec).await, "append");
    }
    let (page, next) = must(store.list_audit(3, None).await, "newest first");
    assert_eq!(
        page.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
        ["app_4", "app_3", "app_2"]
    );
    let (page, next) = must(store.list_audit(3, next).await, "older");
    assert_eq!(
        page.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
        ["app_1", "app_0"]
    );
    assert!(next.is_none());
}

/// `sample_app` under another name.
fn named_app(id: &str, n: i64, name: &str) -> StoredApp {
    let mut a = sample_app(id, n);
    a.app.name = name.to_owned();
    a
}

/// Whether `r` is the name conflict for `name`.
fn name_taken<T>(r: &Result<T, StoreError>, name: &str) -> bool {
    matches!(r, Err(StoreError::Conflict { what: Entity::ApplicationName, id }) if id == name)
}

/// Names are unique ignoring case, on insert and rename, with racing
/// writers; delete and rename free them; the bootstrap claim wins once.
/// Starts on an empty store and leaves it empty.
async fn names(store: &dyn AppStore) {
    // Gateways bootstrapping one empty store at once: exactly one claim.
    let admins: Vec<StoredApp> = (0..4)
        .map(|i| named_app(&format!("app_first{i}"), 1, &format!("admin {i}")))
        .collect();
    let claims = futures_util::future::join_all(admins.iter().map(|a| store.insert_first(a))).await;
    let won: Vec<usize> = claims
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Ok(true)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "exactly one bootstrap claim wins: {claims:?}");
    assert!(claims.iter().all(Result::is_ok), "{claims:?}");
    assert_eq!(must(store.count().await, "count"), 1);
    let late = named_app("app_first_late", 2, "late admin");
    assert!(!must(
        store.insert_first(&late).await,
        "claim on a used store"
    ));
    assert_eq!(must(store.get("app_first_late").await, "get"), None);

    // Racing creates of one name, spelt differently: exactly one wins.
    let spellings = [
        "billing",
        "Billing",
        "BILLING",
        " billing ",
        "BiLLinG",
        "billinG",
    ];
    let racers: Vec<StoredApp> = spellings
        .iter()
        .enumerate()
        .map(|(i, n)| named_app(&format!("app_race{i}"), 10, n))
        .collect();
    let results = futures_util::future::join_all(racers.iter().map(|a| store.insert(a))).await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {results:?}");
    let winner = winners[0];
    for (i, r) in results.iter().enumerate() {
        if i != winner {
            assert!(name_taken(r, spellings[i].trim()), "{i}: {r:?}");
            let id = format!("app_race{i}");
            assert_eq!(must(store.get(&id).await, "loser absent"), None);
        }
    }
    let billing = format!("app_race{winner}");
    for q in ["billing", "BILLING", "  Billing"] {
        assert_eq!(
            must(store.find_by_name(q).await, "find"),
            Some(billing.clone()),
            "{q}"
        );
    }
    assert_eq!(must(store.find_by_name("billin").await, "find"), None);

    // A rename onto a taken name is refused whole; a change of case is not
    // a clash with itself; a rename frees the old name.
    let other = named_app("app_other", 11, "other");
    must(store.insert(&other).await, "insert other");
    let onto = named_app("app_other", 11, "Billing");
    assert!(name_taken(
        &store.update(&onto, other.app.updated_at).await,
        "Billing"
    ));
    assert_eq!(
        must(store.get("app_other").await, "get"),
        Some(other.clone())
    );
    let recased = named_app("app_other", 11, "Other");
    must(store.update(&recased, other.app.updated_at).await, "recase");
    assert_eq!(
        must(store.find_by_name("OTHER").await, "find"),
        Some("app_other".into())
    );
    let moved = named_app("app_other", 11, "elsewhere");
    must(store.update(&moved, other.app.updated_at).await, "rename");
    assert_eq!(must(store.find_by_name("other").await, "find"), None);
    assert_eq!(
        must(store.find_by_name("Elsewhere").await, "find"),
        Some("app_other".into())
    );
    let reuse = named_app("app_reuse", 12, "OTHER");
    must(store.insert(&reuse).await, "a freed name is free");

    // Racing renames onto one name: exactly one wins.
    let renames: Vec<StoredApp> = ["app_other", "app_reuse"]
        .iter()
        .map(|id| named_app(id, if *id == "app_other" { 11 } else { 12 }, "Contested"))
        .collect();
    let results =
        futures_util::future::join_all(renames.iter().map(|a| store.update(a, a.app.updated_at)))
            .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one rename wins: {results:?}"
    );
    assert!(results.iter().any(|r| name_taken(r, "Contested")));
    let holder = must(store.find_by_name("contested").await, "find");
    let holder = holder.unwrap_or_default();
    let loser = if holder == "app_other" {
        "app_reuse"
    } else {
        "app_other"
    };
    let kept = must(store.get(loser).await, "get").map(|a| a.app.name);
    assert_ne!(
        kept.as_deref(),
        Some("Contested"),
        "the loser kept its name"
    );

    // Delete frees the name.
    assert!(must(store.delete(&billing).await, "delete"));
    assert_eq!(must(store.find_by_name("billing").await, "find"), None);
    let again = named_app("app_billing2", 13, "billing");
    must(store.insert(&again).await, "the name is free after delete");

    for id in [
        format!("app_first{}", won[0]),
        "app_other".into(),
        "app_reuse".into(),
        "app_billing2".into(),
    ] {
        assert!(must(store.delete(&id).await, "cleanup"), "{id}");
    }
    assert_eq!(must(store.count().await, "count"), 0, "left empty");
    assert_eq!(must(store.find_by_name("admin 0").await, "find"), None);
}

async fn crud(store: &dyn AppStore) {
    must(store.ping().await, "ping");
    let a = sample_app("app_crud", 1);
    assert_eq!(must(store.get("app_crud").await, "get missing"), None);
    must(store.insert(&a).await, "insert");
    assert_eq!(must(store.get("app_crud").await, "get"), Some(a.clone()));
    assert!(
        matches!(
            store.insert(&a).await,
            Err(StoreError::Conflict { what: Entity::Application, id }) if id == "app_crud"
        ),
        "a second insert of one id must conflict"
    );

    let mut changed = a.clone();
    changed.app.name = "renamed".into();
    changed.app.revoked_at = Some(Utc::now());
    changed.secret_hash = "$argon2id$other".into();
    changed.previous_secret = Some(super::PreviousSecret {
        hash: "$argon2id$old".into(),
        hint: Some("wxyz".into()),
        until: Utc::now(),
    });
    must(store.update(&changed, a.app.updated_at).await, "update");
    // A change computed from a version that is no longer stored is refused
    // whole: a late write never undoes a revoke or a rotation.
    let mut late = a.clone();
    late.app.revoked_at = None;
    late.app.updated_at = Utc::now();
    let mut moved = changed.clone();
    moved.app.updated_at = Utc::now();
    must(
        store.update(&moved, changed.app.updated_at).await,
        "update again",
    );
    assert!(
        matches!(
            store.update(&late, a.app.updated_at).await,
            Err(StoreError::Stale { what: Entity::Application, id }) if id == "app_crud"
        ),
        "a stale update must be refused"
    );
    let changed = moved;
    assert_eq!(
        must(store.get("app_crud").await, "get after update"),
        Some(changed)
    );

    let ghost = sample_app("app_ghost", 2);
    assert!(
        matches!(
            store.update(&ghost, ghost.app.updated_at).await,
            Err(StoreError::NotFound { what: Entity::Application, id }) if id == "app_ghost"
        ),
        "update of a missing id must be NotFound"
    );
    assert_eq!(must(store.get("app_ghost").await, "no upsert"), None);

    assert_eq!(must(store.count().await, "count"), 1);
    assert!(must(store.delete("app_crud").await, "delete"));
    assert!(!must(store.delete("app_crud").await, "delete again"));
    assert_eq!(must(store.get("app_crud").await, "get deleted"), None);
    assert_eq!(must(store.count().await, "count after delete"), 0);
}

async fn listing(store: &dyn AppStore) {
    // Inserted out of order: listing follows creation time, not insertion.
    for (i, n) in [3, 1, 4, 0, 2].iter().enumerate() {
        let mut a = sample_app(&format!("app_list{n}"), *n);
        if i % 2 == 0 {
            a.app.environment = Environment::Test;
        }
        must(store.insert(&a).await, "insert for listing");
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = ListQuery {
            limit: 2,
            after: after.clone(),
            filter: AppFilter::default(),
        };
        let page = must(store.list(&q).await, "list page");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|a| a.app.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "app_list0",
            "app_list1",
            "app_list2",
            "app_list3",
            "app_list4"
        ],
        "pages in creation order, each once"
    );

    let test_only = ListQuery {
        limit: 10,
        after: None,
        filter: AppFilter {
            environment: Some(Environment::Test),
            ..AppFilter::default()
        },
    };
    let page = must(store.list(&test_only).await, "filtered list");
    let ids: Vec<_> = page.items.iter().map(|a| a.app.id.as_str()).collect();
    assert_eq!(ids, ["app_list2", "app_list3", "app_list4"]);
    assert!(page.next.is_none(), "a short last page has no cursor");

    let revoked = ListQuery {
        limit: 10,
        after: None,
        filter: AppFilter {
            status: Some(AppStatus::Revoked),
            ..AppFilter::default()
        },
    };
    assert!(
        must(store.list(&revoked).await, "status filter")
            .items
            .is_empty()
    );

    for n in 0..5 {
        must(store.delete(&format!("app_list{n}")).await, "cleanup");
    }
    assert_eq!(must(store.count().await, "empty again"), 0);
}

async fn usage(store: &dyn AppStore) {
    let a = sample_app("app_usage", 1);
    must(store.insert(&a).await, "insert for usage");
    let t1 = Utc::now();
    let batch = [
        super::UsageDelta {
            app_id: "app_usage".into(),
            count: 3,
            last_at: t1,
            last_ip: "192.0.2.1".into(),
            hours: vec![],
        },
        super::UsageDelta {
            app_id: "app_missing".into(),
            count: 1,
            last_at: t1,
            last_ip: "192.0.2.2".into(),
            hours: vec![],
        },
    ];
    must(store.record_usage(&batch).await, "record usage");
    must(store.record_usage(&batch[..1]).await, "record usage again");
    let got = must(store.get("app_usage").await, "get").map(|s| s.app);
    let got = got.unwrap_or_else(|| panic!("app_usage vanished"));
    assert_eq!(got.use_count, 6);
    assert_eq!(got.last_used_ip.as_deref(), Some("192.0.2.1"));
    assert!(got.last_used_at.is_some());
    assert_eq!(
        must(store.get("app_missing").await, "no upsert by usage"),
        None
    );

    // An update made from an older read keeps the counted usage.
    let mut stale = a.clone();
    stale.app.name = "renamed".into();
    must(store.update(&stale, a.app.updated_at).await, "update");
    let got = must(store.get("app_usage").await, "get").map(|s| s.app);
    let got = got.unwrap_or_else(|| panic!("app_usage vanished"));
    assert_eq!((got.name.as_str(), got.use_count), ("renamed", 6));
    must(store.delete("app_usage").await, "cleanup");
}

/// A usage delta whose total is its hours' sum.
fn hourly_delta(id: &str, hours: &[(i64, u64)]) -> super::UsageDelta {
    super::UsageDelta {
        app_id: id.to_owned(),
        count: hours.iter().map(|h| h.1).sum(),
        last_at: Utc::now(),
        last_ip: "192.0.2.9".into(),
        hours: hours.to_vec(),
    }
}

async fn hourly_usage(store: &dyn AppStore) {
    let h = super::hour_start(Utc::now());
    let day = 24 * 3600;
    for (n, id) in ["app_hourly", "app_hourly2"].into_iter().enumerate() {
        must(store.insert(&sample_app(id, n as i64)).await, "insert");
    }
    // A batch that spans the turn of an hour adds to both hours; an
    // absent application gets no buckets.
    let first = [
        hourly_delta("app_hourly", &[(h - 3600, 2), (h, 3)]),
        hourly_delta("app_hourly2", &[(h, 7)]),
        hourly_delta("app_hourly_gone", &[(h, 1)]),
    ];
    must(store.record_usage(&first).await, "first batch");
    // Counts add across batches; hours older than kept are never stored.
    let second = [hourly_delta(
        "app_hourly",
        &[(h, 4), (h - 7 * day, 1), (h - 8 * day, 5), (h - 9 * day, 6)],
    )];
    must(store.record_usage(&second).await, "second batch");

    let hourly = |id: &'static str, since: i64| async move {
        must(store.hourly_usage(id, since).await, "hourly usage")
    };
    assert_eq!(
        hourly("app_hourly", 0).await,
        [(h - 7 * day, 1), (h - 3600, 2), (h, 7)],
        "oldest first, nothing older than 8 days"
    );
    assert_eq!(
        hourly("app_hourly", h - 3600).await,
        [(h - 3600, 2), (h, 7)]
    );
    assert_eq!(hourly("app_hourly", h + 3600).await, []);
    assert_eq!(hourly("app_hourly2", 0).await, [(h, 7)]);
    assert_eq!(hourly("app_hourly_gone", 0).await, []);
    assert_eq!(hourly("app_nobody", 0).await, []);
    // The totals moved in the same writes, stale hours included.
    let total = must(store.get("app_hourly").await, "get").map(|a| a.app.use_count);
    assert_eq!(total, Some(5 + 16));

    // Deleting removes the buckets: an application created again under the
    // same id starts from nothing.
    assert!(must(store.delete("app_hourly").await, "delete"));
    assert_eq!(hourly("app_hourly", 0).await, []);
    must(
        store.insert(&sample_app("app_hourly", 0)).await,
        "insert again",
    );
    assert_eq!(hourly("app_hourly", 0).await, []);
    assert_eq!(
        hourly("app_hourly2", 0).await,
        [(h, 7)],
        "others keep theirs"
    );
    for id in ["app_hourly", "app_hourly2"] {
        must(store.delete(id).await, "cleanup");
    }
    assert_eq!(hourly("app_hourly2", 0).await, []);
}

// People: sessions, authorization codes and refresh-token families
// (`SessionStore`, docs/api.md, "People"). Kept in one block, apart from the other suites.

/// A session of `user` that authenticated at `auth_time`, retained until
/// `retain`. Instants keep their nanoseconds: both stores must give them
/// back exactly.
fn sample_session(
    id: &str,
    user: &str,
    auth_time: DateTime<Utc>,
    retain: DateTime<Utc>,
) -> StoredSession {
    StoredSession {
        session: Session {
            id: id.to_owned(),
            user_id: user.to_owned(),
            client_id: "tessera-console".into(),
            auth_time,
            amr: vec!["pwd".into()],
            idp: None,
            last_seen_at: auth_time,
            expires_at: retain,
            retain_until: retain,
            ip: "192.0.2.7".into(),
            user_agent: "conformance/1.0 (ünïcode)".into(),
        },
        secret_hash: format!("{:0>64}", id.len()),
    }
}

fn sample_code(user: &str, expires_at: DateTime<Utc>) -> AuthCode {
    AuthCode {
        client_id: "app_client".into(),
        redirect_uri: "https://client.example/cb?x=/y".into(),
        user_id: user.to_owned(),
        session_id: "ses_code".into(),
        scope: "openid offline_access".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        expires_at,
    }
}

fn sample_family(id: &str, now: DateTime<Utc>, expires_at: DateTime<Utc>) -> RefreshFamily {
    RefreshFamily {
        id: id.to_owned(),
        user_id: "usr_rt".into(),
        client_id: "tessera-cli".into(),
        session_id: "ses_rt".into(),
        scope: "openid offline_access".into(),
        created_at: now,
        last_used_at: now,
        expires_at,
        revoked: false,
    }
}

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

/// Every check of sessions, codes and refresh families, against an empty
/// store.
pub(crate) async fn people<S: SessionStore>(store: &S) {
    sessions(store).await;
    session_lapse(store).await;
    codes(store).await;
    refresh_rotation(store).await;
    refresh_limits(store).await;
    people_purge(store).await;
}

async fn sessions<S: SessionStore>(store: &S) {
    let now = Utc::now();
    // The older session has the later id: lists go by auth_time, not id.
    let older = sample_session(
        "ses_z1",
        "usr_p1",
        now - Duration::hours(2),
        now + Duration::hours(1),
    );
    let newer = sample_session(
        "ses_a1",
        "usr_p1",
        now - Duration::hours(1),
        now + Duration::hours(1),
    );
    let other = sample_session(
        "ses_o1",
        "usr_p2",
        now - Duration::hours(3),
        now + Duration::hours(1),
    );
    for s in [&newer, &older, &other] {
        must(store.insert_session(s).await, "insert session");
    }
    match store.insert_session(&older).await {
        Err(StoreError::Conflict {
            what: Entity::Session,
            id,
        }) => assert_eq!(id, "ses_z1"),
        other => panic!("a taken session id must conflict, got {other:?}"),
    }
    assert_eq!(
        must(store.get_session("ses_z1").await, "get"),
        Some(older.clone())
    );
    assert_eq!(
        must(store.get_session("ses_none").await, "get unknown"),
        None
    );
    let listed = must(store.list_sessions("usr_p1").await, "list");
    assert_eq!(listed, vec![older.session.clone(), newer.session.clone()]);
    assert!(must(store.list_sessions("usr_none").await, "list unknown").is_empty());

    // Touching moves both instants forward...
    let (seen, retain) = (now + Duration::minutes(1), now + Duration::hours(2));
    assert!(must(
        store.touch_session("ses_z1", seen, retain).await,
        "touch"
    ));
    let got = must(store.get_session("ses_z1").await, "get touched");
    let got = got.unwrap_or_else(|| panic!("touched session vanished"));
    assert_eq!(
        (got.session.last_seen_at, got.session.retain_until),
        (seen, retain)
    );
    // ...never back, and never shortens what is retained.
    let (early, short) = (now, now + Duration::minutes(30));
    assert!(must(
        store.touch_session("ses_z1", early, short).await,
        "touch back"
    ));
    let got = must(store.get_session("ses_z1").await, "get after touch back");
    let got = got.unwrap_or_else(|| panic!("session vanished"));
    assert_eq!(
        (got.session.last_seen_at, got.session.retain_until),
        (seen, retain)
    );
    // Each moves on its own.
    let later_seen = seen + ms(1);
    assert!(must(
        store.touch_session("ses_z1", later_seen, short).await,
        "touch seen only"
    ));
    let got = must(store.get_session("ses_z1").await, "get").map(|s| s.session);
    let got = got.unwrap_or_else(|| panic!("session vanished"));
    assert_eq!((got.last_seen_at, got.retain_until), (later_seen, retain));
    let mut touched = older.session.clone();
    touched.last_seen_at = later_seen;
    touched.retain_until = retain;
    // An absent session is not created by a touch.
    assert!(!must(
        store.touch_session("ses_none", seen, retain).await,
        "touch unknown"
    ));
    assert_eq!(must(store.get_session("ses_none").await, "get"), None);

    assert_eq!(
        must(store.delete_session("ses_a1").await, "delete"),
        Some(newer.session.clone())
    );
    assert_eq!(
        must(store.delete_session("ses_a1").await, "delete again"),
        None
    );
    assert_eq!(must(store.get_session("ses_a1").await, "get deleted"), None);
    assert_eq!(
        must(store.list_sessions("usr_p1").await, "list"),
        vec![touched.clone()]
    );

    // A user's sessions go together; another user's stay.
    must(
        store.insert_session(&newer).await,
        "insert again after delete",
    );
    assert_eq!(
        must(store.delete_user_sessions("usr_p1").await, "delete user's"),
        vec![touched, newer.session.clone()]
    );
    assert!(must(store.list_sessions("usr_p1").await, "list").is_empty());
    assert_eq!(must(store.get_session("ses_z1").await, "get"), None);
    assert!(must(store.delete_user_sessions("usr_p1").await, "again").is_empty());
    assert_eq!(
        must(store.list_sessions("usr_p2").await, "other user"),
        vec![other.session.clone()]
    );
    must(store.delete_user_sessions("usr_p2").await, "cleanup");
}

async fn session_lapse<S: SessionStore>(store: &S) {
    let now = Utc::now();
    // Lapsed from the start: never returned.
    let past = sample_session(
        "ses_past",
        "usr_l",
        now - Duration::hours(1),
        now - Duration::seconds(1),
    );
    must(store.insert_session(&past).await, "insert lapsed");
    assert_eq!(
        must(store.get_session("ses_past").await, "get lapsed"),
        None
    );
    assert!(must(store.list_sessions("usr_l").await, "list").is_empty());
    assert!(!must(
        store
            .touch_session("ses_past", now, now + Duration::hours(1))
            .await,
        "touch lapsed"
    ));
    assert_eq!(
        must(store.delete_session("ses_past").await, "delete lapsed"),
        None
    );

    // Two sessions lapse soon; one is kept alive by a touch.
    let soon = now + ms(300);
    let lapses = sample_session("ses_soon", "usr_l", now - ms(2), soon);
    let kept = sample_session("ses_kept", "usr_l", now - ms(1), soon);
    must(store.insert_session(&lapses).await, "insert");
    must(store.insert_session(&kept).await, "insert");
    let retain = now + Duration::hours(1);
    assert!(must(
        store.touch_session("ses_kept", now, retain).await,
        "touch"
    ));
    // A real wait: Redis forgets keys on its own clock.
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(
        must(store.get_session("ses_soon").await, "get lapsed"),
        None
    );
    let listed = must(store.list_sessions("usr_l").await, "list");
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["ses_kept"]
    );
    assert_eq!(listed[0].retain_until, retain);
    // A lapsed id is free again.
    let mut again = lapses.clone();
    again.session.retain_until = retain;
    must(store.insert_session(&again).await, "reuse a lapsed id");
    assert_eq!(
        must(store.get_session("ses_soon").await, "get"),
        Some(again)
    );
    assert_eq!(
        must(store.delete_user_sessions("usr_l").await, "cleanup").len(),
        2
    );
}

async fn codes<S: SessionStore>(store: &S) {
    let now = Utc::now();
    let expires = now + Duration::seconds(60);
    let code = sample_code("usr_c", expires);
    must(store.put_code("h_code1", &code).await, "put code");
    assert_eq!(
        must(store.take_code("h_code1", now).await, "take"),
        CodeUse::Fresh(code.clone())
    );
    assert_eq!(
        must(store.take_code("h_code1", now + ms(1)).await, "take again"),
        CodeUse::Replayed(code.clone())
    );
    // A spent code is remembered past its expiry...
    let after_expiry = expires + Duration::seconds(1);
    assert_eq!(
        must(
            store.take_code("h_code1", after_expiry).await,
            "replay after expiry"
        ),
        CodeUse::Replayed(code.clone())
    );
    // ...for SPENT_CODE_MEMORY_SECS.
    let forgotten = expires + Duration::seconds(SPENT_CODE_MEMORY_SECS);
    assert_eq!(
        must(store.take_code("h_code1", forgotten).await, "forgotten"),
        CodeUse::Unknown
    );

    // An expired code was never spent: unknown, every time.
    let expired = sample_code("usr_c", now + Duration::seconds(60));
    must(store.put_code("h_code2", &expired).await, "put code");
    assert_eq!(
        must(
            store.take_code("h_code2", expired.expires_at).await,
            "expired"
        ),
        CodeUse::Unknown
    );
    assert_eq!(
        must(
            store.take_code("h_code2", expired.expires_at + ms(1)).await,
            "expired again"
        ),
        CodeUse::Unknown
    );
    assert_eq!(
        must(store.take_code("h_code_none", now).await, "unknown"),
        CodeUse::Unknown
    );

    // Racing takers: exactly one gets the code.
    let raced = sample_code("usr_race", now + Duration::seconds(60));
    must(store.put_code("h_code3", &raced).await, "put code");
    let takes = (0..8).map(|_| store.take_code("h_code3", now));
    let results = futures_util::future::join_all(takes).await;
    let (mut fresh, mut replayed) = (0, 0);
    for r in results {
        match must(r, "racing take") {
            CodeUse::Fresh(c) => {
                assert_eq!(c, raced);
                fresh += 1;
            }
            CodeUse::Replayed(c) => {
                assert_eq!(c, raced);
                replayed += 1;
            }
            CodeUse::Unknown => panic!("a stored code was unknown"),
        }
    }
    assert_eq!((fresh, replayed), (1, 7));
}

async fn refresh_rotation<S: SessionStore>(store: &S) {
    let now = Utc::now();
    let (grace, idle) = (
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(3600),
    );
    let family = sample_family("rtf_rot", now, now + Duration::hours(1));
    must(
        store.insert_refresh(&family, "h_rt0").await,
        "insert family",
    );
    assert_eq!(
        must(store.get_refresh_family("rtf_rot").await, "get"),
        Some(family.clone())
    );
    assert_eq!(
        must(store.get_refresh_family("rtf_none").await, "get unknown"),
        None
    );

    let t1 = now + ms(10);
    let mut expected = family.clone();
    expected.last_used_at = t1;
    assert_eq!(
        must(
            store.use_refresh("h_rt0", "h_rt1", t1, grace, idle).await,
            "rotate"
        ),
        RefreshUse::Rotated(expected.clone())
    );
    // Two tabs refreshing with the same, just replaced, token: both rotate.
    let (a, b) = futures_util::future::join(
        store.use_refresh("h_rt0", "h_rt2a", now + ms(50), grace, idle),
        store.use_refresh("h_rt0", "h_rt2b", now + ms(60), grace, idle),
    )
    .await;
    for r in [a, b] {
        match must(r, "rotate within grace") {
            RefreshUse::Rotated(f) => assert!(!f.revoked && f.last_used_at >= now + ms(50)),
            other => panic!("within grace a replaced token rotates, got {other:?}"),
        }
    }
    match must(
        store
            .use_refresh("h_rt1", "h_rt3", now + ms(100), grace, idle)
            .await,
        "rotate t1",
    ) {
        RefreshUse::Rotated(f) => assert_eq!(f.last_used_at, now + ms(100)),
        other => panic!("the current token rotates, got {other:?}"),
    }
    // The grace counts from the first replacement (at t1): presenting the
    // token again within it did not restart it.
    let reuse_at = t1 + ms(200);
    match must(
        store
            .use_refresh("h_rt0", "h_rt4", reuse_at, grace, idle)
            .await,
        "reuse",
    ) {
        RefreshUse::Reused(f) => {
            assert!(f.revoked);
            assert_eq!((f.id.as_str(), f.last_used_at), ("rtf_rot", now + ms(100)));
        }
        other => panic!("a token replaced longer than the grace ago is reuse, got {other:?}"),
    }
    let stored = must(store.get_refresh_family("rtf_rot").await, "get revoked");
    assert!(stored.is_some_and(|f| f.revoked));
    // The whole family has ended, its newest tokens too.
    for hash in ["h_rt3", "h_rt2a", "h_rt2b", "h_rt1", "h_rt0"] {
        assert_eq!(
            must(
                store
                    .use_refresh(hash, "h_rt5", reuse_at + ms(1), grace, idle)
                    .await,
                hash
            ),
            RefreshUse::Ended,
            "{hash}"
        );
    }
    // Nothing was stored for the refused presentations.
    assert_eq!(
        must(
            store
                .use_refresh("h_rt4", "h_rt6", reuse_at, grace, idle)
                .await,
            "h_rt4"
        ),
        RefreshUse::Unknown
    );
    assert_eq!(
        must(
            store
                .use_refresh("h_rt_none", "h_rt7", now, grace, idle)
                .await,
            "unknown"
        ),
        RefreshUse::Unknown
    );
}

async fn refresh_limits<S: SessionStore>(store: &S) {
    let now = Utc::now();
    let grace = std::time::Duration::from_millis(200);
    let idle = std::time::Duration::from_secs(1);

    // Idle: unused for longer than `idle` ends it, and writes nothing.
    let family = sample_family("rtf_idle", now, now + Duration::hours(1));
    must(store.insert_refresh(&family, "h_idle0").await, "insert");
    assert_eq!(
        must(
            store
                .use_refresh("h_idle0", "h_idle1", now + ms(1001), grace, idle)
                .await,
            "idle"
        ),
        RefreshUse::Ended
    );
    match must(
        store
            .use_refresh("h_idle0", "h_idle1", now + ms(1000), grace, idle)
            .await,
        "at idle",
    ) {
        RefreshUse::Rotated(f) => assert_eq!(f.last_used_at, now + ms(1000)),
        other => panic!("a token used exactly at the idle limit rotates, got {other:?}"),
    }
    // Rotation restarts the idle clock.
    assert!(matches!(
        must(
            store
                .use_refresh("h_idle1", "h_idle2", now + ms(1900), grace, idle)
                .await,
            "use"
        ),
        RefreshUse::Rotated(_)
    ));

    // Absolute: past `expires_at` it has ended, however recently used.
    let expires = now + Duration::hours(1);
    let family = sample_family("rtf_abs", now, expires);
    must(store.insert_refresh(&family, "h_abs0").await, "insert");
    let long_idle = std::time::Duration::from_secs(7200);
    for at in [expires, expires + Duration::seconds(1)] {
        assert_eq!(
            must(
                store
                    .use_refresh("h_abs0", "h_abs1", at, grace, long_idle)
                    .await,
                "absolute"
            ),
            RefreshUse::Ended
        );
    }
    assert!(matches!(
        must(
            store
                .use_refresh("h_abs0", "h_abs1", now, grace, long_idle)
                .await,
            "before"
        ),
        RefreshUse::Rotated(_)
    ));

    // A revoked family has ended.
    let mut revoked = sample_family("rtf_rev", now, now + Duration::hours(1));
    revoked.revoked = true;
    must(store.insert_refresh(&revoked, "h_rev0").await, "insert");
    assert_eq!(
        must(
            store
                .use_refresh("h_rev0", "h_rev1", now, grace, long_idle)
                .await,
            "revoked"
        ),
        RefreshUse::Ended
    );
}

/// Purging now forgets nothing live (what it forgets of lapsed records is
/// backend-specific: the embedded store's own tests count it).
async fn people_purge<S: SessionStore>(store: &S) {
    let now = Utc::now();
    let live = sample_session("ses_purge", "usr_purge", now, now + Duration::hours(1));
    must(store.insert_session(&live).await, "insert");
    let code = sample_code("usr_purge", now + Duration::seconds(60));
    must(store.put_code("h_purge", &code).await, "put code");
    let family = sample_family("rtf_purge", now, now + Duration::hours(1));
    must(
        store.insert_refresh(&family, "h_purge_rt").await,
        "insert family",
    );
    must(store.purge_people(Utc::now()).await, "purge");
    assert_eq!(
        must(store.get_session("ses_purge").await, "get"),
        Some(live)
    );
    assert_eq!(
        must(store.get_refresh_family("rtf_purge").await, "get"),
        Some(family)
    );
    assert_eq!(
        must(store.take_code("h_purge", now).await, "take"),
        CodeUse::Fresh(code)
    );
    assert!(matches!(
        must(
            store
                .use_refresh(
                    "h_purge_rt",
                    "h_purge_rt1",
                    now,
                    std::time::Duration::ZERO,
                    std::time::Duration::from_secs(60)
                )
                .await,
            "use"
        ),
        RefreshUse::Rotated(_)
    ));
    must(store.delete_user_sessions("usr_purge").await, "cleanup");
}

/// Every check of device authorization requests (RFC 8628), against an
/// empty store.
pub(crate) async fn devices<S: super::DeviceStore>(store: &S) {
    use super::{DEVICE_SLOW_DOWN_SECS, DeviceDecision, DevicePoll, DeviceRequest};
    let now = Utc::now();
    let request = |uc: &str, expires_in: i64| DeviceRequest {
        client_id: "tessera-cli".into(),
        scope: "openid offline_access".into(),
        user_code_hash: uc.into(),
        created_at: now,
        expires_at: now + Duration::seconds(expires_in),
        interval_secs: 5,
    };
    let approve = DeviceDecision::Approve {
        user_id: "usr_a".into(),
        session_id: "ses_a".into(),
    };

    // Created, found by its user code, pending to its own client only.
    let a = request("uc_a", 600);
    must(store.insert_device("dc_a", &a).await, "insert");
    assert_eq!(
        must(store.find_device("uc_a", now).await, "find"),
        Some(a.clone())
    );
    assert_eq!(must(store.find_device("uc_zz", now).await, "find"), None);
    assert!(matches!(
        store.insert_device("dc_other", &request("uc_a", 600)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        must(store.poll_device("dc_a", "app_other", now).await, "poll"),
        DevicePoll::Unknown
    );
    assert_eq!(
        must(
            store.poll_device("dc_nope", "tessera-cli", now).await,
            "poll"
        ),
        DevicePoll::Unknown
    );
    assert_eq!(
        must(store.poll_device("dc_a", "tessera-cli", now).await, "poll"),
        DevicePoll::Pending
    );
    // Too fast: the interval grows by 5 s each time, measured from the
    // latest poll.
    let t1 = now + Duration::seconds(1);
    assert_eq!(
        must(store.poll_device("dc_a", "tessera-cli", t1).await, "poll"),
        DevicePoll::SlowDown {
            interval_secs: 5 + DEVICE_SLOW_DOWN_SECS
        }
    );
    let t2 = t1 + Duration::seconds(6);
    assert_eq!(
        must(store.poll_device("dc_a", "tessera-cli", t2).await, "poll"),
        DevicePoll::SlowDown {
            interval_secs: 5 + 2 * DEVICE_SLOW_DOWN_SECS
        }
    );
    let t3 = t2 + Duration::seconds(15);
    assert_eq!(
        must(store.poll_device("dc_a", "tessera-cli", t3).await, "poll"),
        DevicePoll::Pending
    );

    // Approved once; a second decision changes nothing; consumed once.
    assert!(must(
        store.decide_device("uc_a", &approve, t3).await,
        "approve"
    ));
    assert!(!must(
        store.decide_device("uc_a", &DeviceDecision::Deny, t3).await,
        "decide twice"
    ));
    assert_eq!(must(store.find_device("uc_a", t3).await, "find"), None);
    assert_eq!(
        must(store.poll_device("dc_a", "app_other", t3).await, "poll"),
        DevicePoll::Unknown,
        "another client cannot take it"
    );
    assert_eq!(
        must(store.poll_device("dc_a", "tessera-cli", t3).await, "poll"),
        DevicePoll::Approved {
            request: a.clone(),
            user_id: "usr_a".into(),
            session_id: "ses_a".into(),
        }
    );
    assert_eq!(
        must(store.poll_device("dc_a", "tessera-cli", t3).await, "poll"),
        DevicePoll::Unknown,
        "consumed once"
    );

    // Denied stays denied.
    must(
        store.insert_device("dc_b", &request("uc_b", 600)).await,
        "insert",
    );
    assert!(must(
        store
            .decide_device("uc_b", &DeviceDecision::Deny, now)
            .await,
        "deny"
    ));
    assert!(!must(
        store.decide_device("uc_b", &approve, now).await,
        "approve"
    ));
    for _ in 0..2 {
        assert_eq!(
            must(store.poll_device("dc_b", "tessera-cli", now).await, "poll"),
            DevicePoll::Denied
        );
    }

    // Expiry: no longer found nor decidable, and polls hear it.
    must(
        store.insert_device("dc_c", &request("uc_c", 60)).await,
        "insert",
    );
    let late = now + Duration::seconds(61);
    assert_eq!(must(store.find_device("uc_c", late).await, "find"), None);
    assert!(!must(
        store.decide_device("uc_c", &approve, late).await,
        "late"
    ));
    assert_eq!(
        must(store.poll_device("dc_c", "tessera-cli", late).await, "poll"),
        DevicePoll::Expired
    );
    // An approved request not collected in time expires too.
    must(
        store.insert_device("dc_d", &request("uc_d", 60)).await,
        "insert",
    );
    assert!(must(
        store.decide_device("uc_d", &approve, now).await,
        "approve"
    ));
    assert_eq!(
        must(store.poll_device("dc_d", "tessera-cli", late).await, "poll"),
        DevicePoll::Expired
    );
    // An expired request's user code may be drawn again.
    let mut again = request("uc_e", -1);
    must(store.insert_device("dc_e", &again).await, "insert expired");
    again.expires_at = now + Duration::seconds(600);
    must(
        store.insert_device("dc_e2", &again).await,
        "user code reused",
    );
    assert_eq!(
        must(store.find_device("uc_e", now).await, "find"),
        Some(again)
    );

    // Racing polls of an approved request: exactly one wins.
    must(
        store.insert_device("dc_f", &request("uc_f", 600)).await,
        "insert",
    );
    assert!(must(
        store.decide_device("uc_f", &approve, now).await,
        "approve"
    ));
    let polls = futures_util::future::join_all(
        (0..8).map(|_| store.poll_device("dc_f", "tessera-cli", now)),
    )
    .await;
    let won = polls
        .iter()
        .filter(|p| matches!(p, Ok(DevicePoll::Approved { .. })))
        .count();
    assert_eq!(won, 1, "{polls:?}");
}

fn linked(idp: &str, subject: &str) -> crate::domain::user::LinkedIdentity {
    crate::domain::user::LinkedIdentity {
        idp: idp.into(),
        subject: subject.into(),
        email: None,
        roles: Vec::new(),
    }
}

/// The identity index follows insert, update and delete, and an identity
/// belongs to one user at most.
async fn identities<S: UserStore>(store: &S) {
    let mut a = user("usr_ida", "ida@example.com", &[]);
    a.user.identities = vec![linked("corp", "sub-1")];
    must(store.insert_user(&a).await, "insert with identity");
    let found = must(store.find_user_by_identity("corp", "sub-1").await, "find");
    assert_eq!(found.map(|u| u.user.id), Some("usr_ida".to_owned()));
    assert!(
        must(store.find_user_by_identity("corp", "sub-2").await, "find").is_none(),
        "another subject is nobody"
    );
    assert!(
        must(store.find_user_by_identity("other", "sub-1").await, "find").is_none(),
        "the same subject at another provider is nobody"
    );
    let mut b = user("usr_idb", "idb@example.com", &[]);
    b.user.identities = vec![linked("corp", "sub-1")];
    assert!(
        matches!(
            store.insert_user(&b).await,
            Err(StoreError::Conflict {
                what: Entity::UserIdentity,
                ..
            })
        ),
        "an identity is linked to one user"
    );
    assert!(
        must(store.get_user("usr_idb").await, "get").is_none(),
        "nothing written"
    );
    b.user.identities = vec![];
    must(store.insert_user(&b).await, "insert b");
    let b_at = b.user.updated_at;
    b.user.identities = vec![linked("corp", "sub-1")];
    assert!(
        matches!(
            store.update_user(&b, b_at).await,
            Err(StoreError::Conflict {
                what: Entity::UserIdentity,
                ..
            })
        ),
        "linking another's identity is refused"
    );
    // Moving the identity: a's link goes, then b's comes.
    let a_at = a.user.updated_at;
    a.user.identities = vec![linked("corp", "sub-9")];
    a.user.updated_at = a_at + chrono::Duration::milliseconds(1);
    must(store.update_user(&a, a_at).await, "relink a");
    assert!(must(store.find_user_by_identity("corp", "sub-1").await, "find").is_none());
    let found = must(store.find_user_by_identity("corp", "sub-9").await, "find");
    assert_eq!(found.map(|u| u.user.id), Some("usr_ida".to_owned()));
    b.user.updated_at = b_at + chrono::Duration::milliseconds(1);
    must(store.update_user(&b, b_at).await, "link b");
    let found = must(store.find_user_by_identity("corp", "sub-1").await, "find");
    assert_eq!(found.map(|u| u.user.id), Some("usr_idb".to_owned()));
    assert!(must(store.delete_user("usr_idb").await, "delete b"));
    assert!(
        must(store.find_user_by_identity("corp", "sub-1").await, "find").is_none(),
        "a deleted user's identities go with it"
    );
    must(store.insert_user(&b).await, "the identity is free again");
    assert!(must(store.delete_user("usr_idb").await, "delete b"));
    assert!(must(store.delete_user("usr_ida").await, "delete a"));
}

fn sso_login(expires_at: DateTime<Utc>) -> crate::store::SsoLogin {
    crate::store::SsoLogin {
        idp: "corp".into(),
        nonce: "n".into(),
        code_verifier: "v".into(),
        browser: "b".into(),
        client_id: "tessera-console".into(),
        return_to: Some("/oauth/authorize?x=1".into()),
        expires_at,
    }
}

/// A sign-on attempt is taken once, never after it lapsed, and racing
/// takers get it once between them.
async fn sso_logins<S: SessionStore>(store: &S) {
    let now = Utc::now();
    let l = sso_login(now + chrono::Duration::minutes(10));
    must(store.put_sso_login("h1", &l).await, "put");
    assert!(must(store.take_sso_login("nope", now).await, "take").is_none());
    assert_eq!(
        must(store.take_sso_login("h1", now).await, "take"),
        Some(l.clone())
    );
    assert!(
        must(store.take_sso_login("h1", now).await, "take").is_none(),
        "a state is single-use"
    );
    must(store.put_sso_login("h2", &l).await, "put");
    assert!(
        must(
            store
                .take_sso_login("h2", now + chrono::Duration::minutes(11))
                .await,
            "take"
        )
        .is_none(),
        "a lapsed attempt is refused"
    );
    must(store.put_sso_login("h3", &l).await, "put");
    let takes =
        futures_util::future::join_all((0..8).map(|_| store.take_sso_login("h3", now))).await;
    let got = takes
        .into_iter()
        .map(|t| must(t, "take"))
        .filter(Option::is_some)
        .count();
    assert_eq!(got, 1, "racing takers get the attempt once");
}

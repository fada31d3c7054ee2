//! The store conformance suite: every backend runs these checks unchanged.
//!
//! Test support, compiled into the library so the integration tests can run
//! it against backends that need a live server (Redis).

use chrono::{Duration, TimeZone, Utc};

use super::{AppFilter, AppStore, ListQuery, StoreError, StoredApp};
use crate::domain::{AppStatus, Application, Environment, KeyType, Permission};

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
            revoked_at: None,
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
pub async fn run_all(store: &dyn AppStore) {
    crud(store).await;
    listing(store).await;
    usage(store).await;
}

async fn crud(store: &dyn AppStore) {
    must(store.ping().await, "ping");
    let a = sample_app("app_crud", 1);
    assert_eq!(must(store.get("app_crud").await, "get missing"), None);
    must(store.insert(&a).await, "insert");
    assert_eq!(must(store.get("app_crud").await, "get"), Some(a.clone()));
    assert!(
        matches!(store.insert(&a).await, Err(StoreError::Conflict(_))),
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
    must(store.update(&changed).await, "update");
    assert_eq!(
        must(store.get("app_crud").await, "get after update"),
        Some(changed)
    );

    let ghost = sample_app("app_ghost", 2);
    assert!(
        matches!(store.update(&ghost).await, Err(StoreError::NotFound(_))),
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
        },
        super::UsageDelta {
            app_id: "app_missing".into(),
            count: 1,
            last_at: t1,
            last_ip: "192.0.2.2".into(),
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
    must(store.update(&stale).await, "update");
    let got = must(store.get("app_usage").await, "get").map(|s| s.app);
    let got = got.unwrap_or_else(|| panic!("app_usage vanished"));
    assert_eq!((got.name.as_str(), got.use_count), ("renamed", 6));
    must(store.delete("app_usage").await, "cleanup");
}

//! Hourly usage end to end: secrets exchanged against a real gateway land
//! in the hour buckets its usage flusher writes, on the embedded store and
//! on Redis, and read back through the store and `service::usage::hourly`.

use chrono::Utc;
use serde_json::json;
use std::time::{Duration, Instant};
use tessera::service::{Gateway, Stores, usage, usage_chart};
use tessera::store::embedded::EmbeddedStore;
use tessera::store::redis::RedisStore;
use tessera::store::{AppStore, hour_start};

use crate::helpers::*;
use crate::redis_server::RedisServer;

const EXCHANGES: u64 = 5;

/// Creates an application and exchanges its secret [`EXCHANGES`] times
/// (plus refused attempts, which count for nothing); returns its id and the
/// first and last hour the exchanges can fall in.
async fn exchange_a_few(app: &TestApp) -> (String, i64, i64) {
    let (created, secret) = app
        .create_app(json!({"name": "hourly", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let first = hour_start(Utc::now());
    for _ in 0..EXCHANGES {
        app.token_for(Some(&id), &secret).await;
    }
    let res = app
        .exchange(Some(&id), "tsr_sk_live_not-the-right-secret")
        .await;
    assert_ne!(res.status(), 200);
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "app_token", "AppSecret": secret, "scope": "nope:nope"}),
        )
        .await;
    assert_ne!(res.status(), 200, "a refused exchange of a good secret");
    (id, first, hour_start(Utc::now()))
}

/// The buckets hold exactly the exchanges, in the hours they happened.
fn assert_counted(buckets: &[(i64, u64)], first: i64, last: i64) {
    assert_eq!(
        buckets.iter().map(|b| b.1).sum::<u64>(),
        EXCHANGES,
        "{buckets:?}"
    );
    assert!(
        buckets.iter().all(|&(h, _)| first <= h && h <= last),
        "{buckets:?} outside {first}..={last}"
    );
}

/// Reads the figures through the service, on a second gateway built over
/// `stores` (as the console's would be), and draws them.
async fn assert_service_reports(stores: Stores, id: &str, first: i64, last: i64) {
    let dir = tempfile::tempdir().unwrap();
    let settings = base_settings(dir.path());
    // The ring the running gateway stored (sealed with the tests' key).
    let kek = tessera::crypto::kek::Kek::parse(crate::helpers::TEST_KEK).unwrap();
    let keys = tessera::service::keyring::KeyRingCell::open(
        tessera::service::keyring::KeyPolicy::from(&settings),
        stores.keys.clone(),
        Some(kek),
    )
    .await
    .unwrap();
    let gw = Gateway::new(settings, keys, stores).unwrap();
    let now = Utc::now();
    let hours = usage::hourly(&gw, id, now).await.unwrap();
    assert_eq!(hours.iter().sum::<u64>(), EXCHANGES);
    // The window ends with the current hour: the exchanges are in its last
    // slots (the last two when an hour turned meanwhile).
    let from_end = usize::try_from((hour_start(now) - first) / 3600).unwrap();
    let from_end_last = usize::try_from((hour_start(now) - last) / 3600).unwrap();
    let slots = 167 - from_end..=167 - from_end_last;
    assert_eq!(hours[slots].iter().sum::<u64>(), EXCHANGES, "{hours:?}");
    let unknown = usage::hourly(&gw, "app_unknown", now).await.unwrap();
    assert!(unknown.iter().all(|&n| n == 0));

    let svg = usage_chart::svg(&hours, now);
    assert!(
        svg.contains(&format!("{EXCHANGES} in total")),
        "the chart tells the total: {svg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_are_counted_by_the_hour_on_the_embedded_store() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let app = {
        let data_dir = data_dir.clone();
        spawn_with(move |s| s.data_dir = data_dir).await
    };
    let (id, first, last) = exchange_a_few(&app).await;
    // Stopping the gateway writes what it counted since its last flush and
    // closes the store, which can then be opened here.
    drop(app);
    let start = Instant::now();
    let store = loop {
        match EmbeddedStore::open(&data_dir) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "the gateway did not close its store: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_counted(&store.hourly_usage(&id, 0).await.unwrap(), first, last);
    let total = store.get(&id).await.unwrap().unwrap().app.use_count;
    assert_eq!(total, EXCHANGES, "the total agrees with the hours");
    assert_service_reports(Stores::all(store), &id, first, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_are_counted_by_the_hour_on_redis() {
    let redis = RedisServer::start();
    let prefix = format!("h{}:", tessera::crypto::random::base62(10).unwrap());
    let app = {
        let (url, prefix) = (redis.url(), prefix.clone());
        spawn_with(move |s| {
            s.redis_url = Some(url);
            s.redis_prefix = prefix;
        })
        .await
    };
    let (id, first, last) = exchange_a_few(&app).await;
    // The running gateway flushes about every second.
    let store = RedisStore::connect(&redis.url(), &prefix).await.unwrap();
    let start = Instant::now();
    loop {
        let buckets = store.hourly_usage(&id, 0).await.unwrap();
        if buckets.iter().map(|b| b.1).sum::<u64>() >= EXCHANGES {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not flushed: {buckets:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Later flushes add nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_counted(&store.hourly_usage(&id, 0).await.unwrap(), first, last);
    assert_service_reports(Stores::all(store.clone()), &id, first, last).await;

    // Deleting the application through the API removes its buckets.
    let admin = app.admin_token().await;
    let res = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/apps/{id}"),
            &admin,
        )
        .await
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(store.hourly_usage(&id, 0).await.unwrap(), []);
}

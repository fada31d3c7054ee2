//! The Redis backend against a real redis-server: several gateways acting as
//! one, publication, and Redis failing. (The store conformance suite runs
//! against Redis in the unit tests of `store::redis`.)

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::redis_server::RedisServer;

const SHARED_ISSUER: &str = "http://gateways.test";

fn prefix() -> String {
    format!("t{}:", tessera::crypto::random::base62(10).unwrap())
}

/// Two gateways on one Redis, each with its own key ring directory holding
/// the same key (operators share the ring by mounting one directory).
async fn two_gateways(redis: &RedisServer) -> (TestApp, TestApp) {
    pair_on_redis(&redis.url(), SHARED_ISSUER).await
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_act_as_one() {
    let redis = RedisServer::start();
    let (a, b) = two_gateways(&redis).await;
    assert_eq!(a.jwks().await, b.jwks().await, "one key ring");

    // Created on A, exchanged on B.
    let (created, secret) = a
        .create_app(json!({"name": "shared", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let token_b = b.token_for(None, &secret).await;
    verify_with_jwks(&a.jwks().await, &token_b, SHARED_ISSUER, "tessera")
        .expect("A's JWKS verifies B's token");
    assert_eq!(
        a.exchange(None, &secret).await.status(),
        200,
        "A has it cached now"
    );

    // Revoked on B: A refuses within a second, caches and all.
    let admin_b = b.admin_token().await;
    let res = b
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin_b)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let took = eventually("A refusing the revoked secret", async || {
        a.exchange(None, &secret).await.status() == 401
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Rotated on B: A refuses the old secret and accepts the new one.
    let (c2, s2) = a.create_app(json!({"name": "rotating"})).await;
    let id2 = c2["id"].as_str().unwrap();
    assert_eq!(a.exchange(None, &s2).await.status(), 200);
    let res = b
        .authed(
            Method::POST,
            &format!("/api/v1/apps/{id2}/rotate"),
            &admin_b,
        )
        .await
        .send()
        .await
        .unwrap();
    let new_secret = res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("A refusing the rotated-out secret", async || {
        a.exchange(None, &s2).await.status() == 401
    })
    .await;
    assert_eq!(a.exchange(None, &new_secret).await.status(), 200);

    // Deleted on B: gone on A.
    let res = b
        .authed(Method::DELETE, &format!("/api/v1/apps/{id2}"), &admin_b)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    eventually("A refusing the deleted app", async || {
        a.exchange(None, &new_secret).await.status() == 401
    })
    .await;

    // A role changed on A applies to tokens minted on B.
    let admin_a = a.admin_token().await;
    a.authed(Method::POST, "/api/v1/roles", &admin_a)
        .await
        .json(&json!({"name": "r", "permissions": ["content:read"]}))
        .send()
        .await
        .unwrap();
    let (_c3, s3) = a.create_app(json!({"name": "roled", "roles": ["r"]})).await;
    assert_eq!(
        claims_of(&b.token_for(None, &s3).await)["permissions"],
        json!(["content:read"])
    );
    a.authed(Method::PATCH, "/api/v1/roles/r", &admin_a)
        .await
        .json(&json!({"permissions": ["content:read", "content:write"]}))
        .send()
        .await
        .unwrap();
    eventually("B seeing the role change", async || {
        claims_of(&b.token_for(None, &s3).await)["permissions"]
            == json!(["content:read", "content:write"])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_shared_published_and_fed() {
    let redis = RedisServer::start();
    let (a, b) = two_gateways(&redis).await;
    let (_i, intro) = a
        .create_app(json!({"name": "verifier", "permissions": ["tokens:introspect"]}))
        .await;
    let (svc, secret) = a.create_app(json!({"name": "svc"})).await;
    let id = svc["id"].as_str().unwrap();
    let token = a.token_for(None, &secret).await;
    let intro_token = b.token_for(None, &intro).await;

    let introspect = |gw: &TestApp, t: &str| {
        gw.client
            .post(gw.url("/oauth/introspect"))
            .bearer_auth(&intro_token)
            .form(&[("token", t.to_owned())])
            .send()
    };
    // Each gateway introspects tokens of its own issuer.
    let r: Value = introspect(&a, &token).await.unwrap().json().await.unwrap();
    assert_eq!(r["active"], true);

    let feed0: Value = b
        .client
        .get(b.url("/api/v1/revocations"))
        .bearer_auth(&intro_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = feed0["cursor"].as_str().unwrap().to_owned();

    // Listen on the channel as a verifier would.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    let channel = format!("{}events", a.settings_prefix());
    pubsub.subscribe(&channel).await.unwrap();
    let mut messages = pubsub.into_on_message();

    let admin = a.admin_token().await;
    let res = a
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // On the channel, by the time the call answered.
    use futures_util::StreamExt;
    let mut seen = false;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
        let payload: String = msg.get_payload().unwrap();
        let v: Value = serde_json::from_str(&payload).unwrap();
        if v["kind"] == "revocation" && v["entry"]["sub"] == id {
            seen = true;
            break;
        }
    }
    assert!(seen, "no revocation message on {channel}");

    // In B's feed after A's cursor, and the token is dead for both.
    let page: Value = b
        .client
        .get(b.url(&format!("/api/v1/revocations?since={cursor}")))
        .bearer_auth(&intro_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["snapshot"], false);
    assert!(
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["sub"] == id)
    );
    let r: Value = introspect(&a, &token).await.unwrap().json().await.unwrap();
    assert_eq!(r["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_prompt_503s_and_it_heals_without_a_restart() {
    let mut redis = RedisServer::start();
    let p = prefix();
    let gw = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = p.clone();
    })
    .await;
    let (created, secret) = gw.create_app(json!({"name": "before"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let admin = gw.admin_token().await;
    assert_eq!(gw.exchange(None, &secret).await.status(), 200);

    // Traffic throughout: creates (each acknowledged id remembered) and exchanges.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let met_outage = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let traffic = {
        let (client, url, admin, secret, stop, met) = (
            gw.client.clone(),
            gw.address.clone(),
            admin.clone(),
            secret.clone(),
            stop.clone(),
            met_outage.clone(),
        );
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut failures = 0u32;
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let res = client
                    .post(format!("{url}/api/v1/apps"))
                    .bearer_auth(&admin)
                    .json(&json!({"name": format!("traffic {i}")}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 201 => acknowledged.push(
                        r.json::<Value>().await.unwrap()["id"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    ),
                    Ok(r) => {
                        assert!(
                            r.status() == 503,
                            "only 503 while Redis is away, got {}",
                            r.status()
                        );
                        failures += 1;
                        met.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => panic!("the gateway itself must stay up: {e}"),
                }
                let _ = client
                    .post(format!("{url}/api/v1/token"))
                    .json(&json!({"AppSecret": secret}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, failures)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill();
    // Admin writes fail promptly with 503 and write nothing.
    let started = Instant::now();
    let res = gw
        .authed(Method::POST, "/api/v1/apps", &admin)
        .await
        .json(&json!({"name": "during"}))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    let ready = gw.client.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // An application already verified keeps exchanging from cache (bounded: see README).
    assert_eq!(gw.exchange(None, &secret).await.status(), 200);

    // Stay down until the traffic has met the outage at least once.
    let down_since = Instant::now();
    while met_outage.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            down_since.elapsed() < Duration::from_secs(10),
            "the traffic never met the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.restart();
    // Heals by itself: readiness, writes, and everything acknowledged before.
    eventually("readiness after restart", async || {
        gw.client
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let got = gw
        .authed(Method::GET, &format!("/api/v1/apps/{id}"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.status(),
        200,
        "acknowledged before the crash, still there"
    );
    let (_c, s2) = gw.create_app(json!({"name": "after"})).await;
    assert_eq!(gw.exchange(None, &s2).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, failures) = traffic.await.unwrap();
    assert!(failures > 0, "the traffic met the outage");
    // A loaded machine creates few; what matters is that some went through.
    assert!(acknowledged.len() >= 3, "the traffic went on around it");
    for ack in &acknowledged {
        let res = gw
            .authed(Method::GET, &format!("/api/v1/apps/{ack}"), &admin)
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged {ack} was lost");
    }
    let list: Value = gw
        .authed(Method::GET, "/api/v1/apps?limit=200", &admin)
        .await
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"before") && names.contains(&"after") && !names.contains(&"during"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_starting_together_both_ensure_the_admin() {
    let redis = RedisServer::start();
    let p = prefix();
    let settings = |dir: &std::path::Path| {
        let mut s = base_settings(dir);
        s.redis_url = Some(redis.url());
        s.redis_prefix = p.clone();
        s
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (settings(da.path()), settings(db.path()));
    // Both read "no admin", both hash, one inserts first.
    let (a, b) = tokio::join!(spawn_in(da, sa), spawn_in(db, sb));
    assert_eq!(a.exchange(Some(ADMIN_ID), ADMIN_SECRET).await.status(), 200);
    assert_eq!(b.exchange(Some(ADMIN_ID), ADMIN_SECRET).await.status(), 200);
}

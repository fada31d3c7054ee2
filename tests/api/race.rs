//! Revocation that cannot be raced (docs/api.md, "Revocation"): while clients hammer the
//! exchange, an application is revoked, deleted or rotated; afterwards no
//! token collected from the hammering may be accepted, by introspection or by
//! a verifier that is not stale. Warm and cold paths, both stores.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig};

use crate::helpers::*;
use crate::redis_server::RedisServer;

const HAMMERS: usize = 6;

/// Exchanges `secret` in a loop on `HAMMERS` tasks until `stop`; returns
/// every token minted.
fn hammer(
    gw: &TestApp,
    secret: &str,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..HAMMERS)
        .map(|_| {
            let (client, url, secret, stop) = (
                gw.client.clone(),
                gw.url("/api/v1/token"),
                secret.to_owned(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut tokens = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let res = client
                        .post(&url)
                        .json(&json!({"AppSecret": secret}))
                        .send()
                        .await
                        .unwrap();
                    if res.status() == 200 {
                        let v: Value = res.json().await.unwrap();
                        tokens.push(v["accessToken"].as_str().unwrap().to_owned());
                    }
                }
                tokens
            })
        })
        .collect()
}

async fn introspector(gw: &TestApp) -> (String, String) {
    let (created, secret) = gw
        .create_app(json!({"name": format!("introspector {}", tessera::crypto::random::base62(8).unwrap()), "permissions": ["tokens:introspect"]}))
        .await;
    (created["id"].as_str().unwrap().to_owned(), secret)
}

async fn active(gw: &TestApp, who: &(String, String), token: &str) -> bool {
    let res = gw
        .client
        .post(gw.url("/oauth/introspect"))
        .form(&[
            ("client_id", who.0.as_str()),
            ("client_secret", who.1.as_str()),
            ("token", token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["active"] == json!(true)
}

async fn verifier_for(gw: &TestApp, source: RevocationSource) -> Arc<Verifier> {
    let meta: Value = gw
        .client
        .get(gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let config = VerifierConfig::new(
        &gw.address,
        meta["issuer"].as_str().unwrap(),
        "tessera",
        source,
    );
    Verifier::start(config).await.unwrap()
}

/// Every hammering client shares the loopback address; after the call,
/// their refusals must not rate-limit the checks that follow.
fn lenient(s: &mut tessera::Settings) {
    s.max_failures_per_ip = 1_000_000;
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Revoke,
    Delete,
    Rotate,
}

/// One trial: hammer, act, keep hammering a while, then check every token.
async fn trial(gw: &TestApp, verifier: &Verifier, who: &(String, String), action: Action) {
    let (created, secret) = gw
        .create_app(json!({"name": format!("raced {}", tessera::crypto::random::base62(8).unwrap()), "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let first = gw.token_for(None, &secret).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = hammer(gw, &secret, stop.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (method, path) = match action {
        Action::Revoke => (reqwest::Method::POST, format!("/api/v1/apps/{id}/revoke")),
        Action::Delete => (reqwest::Method::DELETE, format!("/api/v1/apps/{id}")),
        Action::Rotate => (reqwest::Method::POST, format!("/api/v1/apps/{id}/rotate")),
    };
    let admin = gw.admin_token().await;
    let mut req = gw.authed(method, &path, &admin).await;
    if matches!(action, Action::Rotate) {
        req = req.json(&json!({"gracePeriodSeconds": 0}));
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{action:?}: {}", res.status());
    // Keep hammering after the answer: a late mint from stale state must
    // die too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tokens = vec![first.clone()];
    for t in tasks {
        tokens.extend(t.await.unwrap());
    }
    // The verifier has caught up once it refuses the first token.
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.verify(&first).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{action:?}: the verifier never saw the revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut survivors = 0;
    for t in &tokens {
        if active(gw, who, t).await || verifier.verify(t).await.is_ok() {
            survivors += 1;
        }
    }
    eprintln!(
        "{action:?}: {} tokens collected across the call, {survivors} survived",
        tokens.len()
    );
    assert_eq!(
        survivors,
        0,
        "{action:?}: {survivors} of {} tokens survived",
        tokens.len()
    );
    // And the old secret is refused outright.
    assert_eq!(gw.exchange(None, &secret).await.status(), 401);
}

async fn all_actions(gw: &TestApp, verifier: &Verifier) {
    let who = introspector(gw).await;
    for action in [Action::Revoke, Action::Delete, Action::Rotate] {
        trial(gw, verifier, &who, action).await;
    }
}

async fn feed_verifier(gw: &TestApp) -> Arc<Verifier> {
    let (reader, secret) = gw
        .create_app(json!({"name": "feed-reader", "permissions": ["tokens:introspect"]}))
        .await;
    verifier_for(
        gw,
        RevocationSource::Feed {
            gateway_url: gw.address.clone(),
            app_id: reader["id"].as_str().unwrap().to_owned(),
            app_secret: secret.into(),
            every: Duration::from_millis(100),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_survives_a_revoke_race_warm_embedded() {
    let gw = spawn_with(lenient).await;
    let verifier = feed_verifier(&gw).await;
    all_actions(&gw, &verifier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_survives_a_revoke_race_cold_embedded() {
    // No verified-secret cache: every exchange runs argon2, so mints land
    // long after the application was read.
    let gw = spawn_with(|s| {
        lenient(s);
        s.secret_cache_ttl = 0;
    })
    .await;
    let verifier = feed_verifier(&gw).await;
    all_actions(&gw, &verifier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_survives_a_revoke_race_on_redis() {
    let redis = RedisServer::start();
    let prefix = format!("r{}:", tessera::crypto::random::base62(8).unwrap());
    for cache_ttl in [300, 0] {
        let gw = spawn_with(|s| {
            s.redis_url = Some(redis.url());
            s.redis_prefix = prefix.clone();
            s.secret_cache_ttl = cache_ttl;
            lenient(s);
        })
        .await;
        let verifier = verifier_for(
            &gw,
            RevocationSource::Redis {
                url: redis.url(),
                prefix: prefix.clone(),
            },
        )
        .await;
        all_actions(&gw, &verifier).await;
    }
}

/// A key holding `api_keys:manage` keeps PATCHing itself while the admin
/// revokes it: a write computed from the version before the revoke must not
/// land after it and bring the key back (optimistic concurrency).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_patch_cannot_undo_a_revoke_or_a_rotation() {
    let gw = spawn_with(lenient).await;
    for trial in 0..6 {
        let (created, secret) = gw
            .create_app(
                json!({"name": format!("self-{trial}"), "permissions": ["api_keys:manage"]}),
            )
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let own = gw.token_for(None, &secret).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..6 {
            let (client, url, own, stop) = (
                gw.client.clone(),
                gw.url(&format!("/api/v1/apps/{id}")),
                own.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let _ = client
                        .patch(&url)
                        .bearer_auth(&own)
                        .json(&json!({"description": format!("writer {n} round {i}")}))
                        .send()
                        .await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let admin = gw.admin_token().await;
        let rotate = trial % 2 == 1;
        let path = if rotate {
            format!("/api/v1/apps/{id}/rotate")
        } else {
            format!("/api/v1/apps/{id}/revoke")
        };
        let mut res = gw.authed(reqwest::Method::POST, &path, &admin).await;
        if rotate {
            res = res.json(&json!({"gracePeriodSeconds": 0}));
        }
        let res = res.send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        if status == 409 {
            // The admin's own call lost the race to a PATCH: it changed
            // nothing and said so; nothing to check.
            continue;
        }
        assert!(status.is_success(), "{status} {body}");
        assert_eq!(
            gw.exchange(None, &secret).await.status(),
            401,
            "trial {trial}: the old secret works again after the {}",
            if rotate { "rotation" } else { "revoke" }
        );
        if rotate {
            let new = body["secret"].as_str().unwrap();
            assert_eq!(
                gw.exchange(None, new).await.status(),
                200,
                "the new secret was undone"
            );
        } else {
            let app = ok(
                call(
                    &gw,
                    reqwest::Method::GET,
                    &format!("/api/v1/apps/{id}"),
                    None,
                )
                .await,
                200,
            )
            .await;
            assert_eq!(
                app["status"], "revoked",
                "trial {trial}: revoked_at was overwritten"
            );
        }
    }
}

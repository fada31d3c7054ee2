//! Signing keys over time (docs/api.md, "Signing keys over time"): a ring shared by every gateway on one
//! store, keys that turn active by themselves, revocation that reaches
//! verifiers, keys sealed with a key-encryption key.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig, VerifyError};

use crate::helpers::{TEST_KEK, TestApp, base_settings, claims_of, spawn_in, spawn_with};
use crate::redis_server::RedisServer;

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn kids(jwks: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(jwks).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn call(app: &TestApp, method: Method, path: &str, token: &str) -> (u16, Value) {
    let res = app.authed(method, path, token).await.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn rotate(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, v) = call(app, Method::POST, "/api/v1/keys/rotate", token).await;
    assert_eq!(status, 201, "{v}");
    v["keys"].as_array().unwrap().clone()
}

async fn list(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, v) = call(app, Method::GET, "/api/v1/keys", token).await;
    assert_eq!(status, 200, "{v}");
    v["keys"].as_array().unwrap().clone()
}

fn kid_of(keys: &[Value], alg: &str) -> String {
    keys.iter().find(|k| k["alg"] == alg).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn state_of(keys: &[Value], kid: &str) -> String {
    keys.iter()
        .find(|k| k["kid"] == kid)
        .map_or("absent".into(), |k| k["state"].as_str().unwrap().to_owned())
}

/// Polls `f` every 10 ms until it holds; how long it took, or a failure
/// after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_on_one_gateway_is_published_by_the_other_and_signs_everywhere_in_time() {
    let redis = RedisServer::start();
    let prefix = format!("k{}:", tessera::crypto::random::base62(8).unwrap());
    let issuer = "https://keys.example";
    let on_redis = |s: &mut tessera::Settings| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
        s.issuer = Some(issuer.into());
        s.key_publish_ahead = 3;
    };
    let a = spawn_with(on_redis).await;
    let b = spawn_with(on_redis).await;
    assert_eq!(kids(&a.jwks().await), kids(&b.jwks().await), "one ring");
    let admin = a.admin_token().await;

    // Rotate on A: B publishes the next key within a second.
    let added = rotate(&a, &admin).await;
    assert_eq!(added.len(), 2, "one per configured algorithm: {added:?}");
    assert!(added.iter().all(|k| k["state"] == "next"), "{added:?}");
    let next = kid_of(&added, "ES256");
    let took = within(
        Duration::from_secs(1),
        "B publishes the next key",
        || async { kids(&b.jwks().await).contains(&next) },
    )
    .await;
    eprintln!("next key published by the other gateway after {took:?}");
    let (_, secret) = b
        .create_app(json!({"name": "cluster", "permissions": ["content:read"]}))
        .await;
    let before = b.token_for(None, &secret).await;
    assert_ne!(header_of(&before)["kid"], next.as_str(), "not signing yet");

    // A verifier that fetched its JWKS from A before the key signed.
    let verifier = Verifier::start(VerifierConfig::new(
        &a.address,
        issuer,
        "tessera",
        RevocationSource::Redis {
            url: redis.url(),
            prefix: prefix.clone(),
        },
    ))
    .await
    .unwrap();
    within(
        Duration::from_secs(5),
        "the verifier's mirror is fresh",
        || async { verifier.verify(&before).await.is_ok() },
    )
    .await;
    // A goes away: the verifier can fetch nothing more from it.
    drop(a);

    // After `key_publish_ahead`, B signs with the key A published.
    let after = within(
        Duration::from_secs(6),
        "B signs with the new key",
        || async {
            let t = b.token_for(None, &secret).await;
            header_of(&t)["kid"] == next.as_str()
        },
    )
    .await;
    eprintln!("the next key signed {after:?} later");
    let signed = b.token_for(None, &secret).await;
    assert_eq!(header_of(&signed)["kid"], next.as_str());
    let claims = verifier.verify(&signed).await.unwrap();
    assert_eq!(claims.claims.sub, claims_of(&signed)["sub"]);
    assert!(
        verifier.verify(&before).await.is_ok(),
        "the retired key still verifies"
    );
    let keys = list(&b, &b.admin_token().await).await;
    assert_eq!(state_of(&keys, &next), "active", "{keys:?}");
    let old = claims_of(&before);
    assert!(old["sub"].is_string());
    let retired = header_of(&before)["kid"].as_str().unwrap().to_owned();
    assert_eq!(state_of(&keys, &retired), "retired", "{keys:?}");
    let retired_view = keys.iter().find(|k| k["kid"] == retired.as_str()).unwrap();
    assert!(retired_view["publishedUntil"].is_string(), "{retired_view}");

    // Revoked on B: the verifier refuses the key's tokens within a second,
    // though its cached JWKS still holds the key.
    let admin_b = b.admin_token().await;
    let (status, v) = call(
        &b,
        Method::POST,
        &format!("/api/v1/keys/{next}/revoke"),
        &admin_b,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "revoked");
    let took = within(
        Duration::from_secs(1),
        "the verifier refuses the revoked key",
        || async { matches!(verifier.verify(&signed).await, Err(VerifyError::Revoked)) },
    )
    .await;
    eprintln!("revoked key refused by the verifier after {took:?}");
    assert!(
        !kids(&b.jwks().await).contains(&next),
        "out of the JWKS at once"
    );
    // B signs with a replacement at once; the gateway refuses the old token.
    let fresh = b.token_for(None, &secret).await;
    assert_ne!(header_of(&fresh)["kid"], next.as_str());
    let (status, _) = call(&b, Method::GET, "/api/v1/keys", &admin_b).await;
    assert_eq!(
        status, 401,
        "the admin's token was signed by the revoked key"
    );
    // The feed carries the new kind, for verifiers that poll.
    let admin_b = b.admin_token().await;
    let (status, feed) = call(&b, Method::GET, "/api/v1/revocations", &admin_b).await;
    assert_eq!(status, 200, "{feed}");
    let entries = feed["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "key" && e["kid"] == next.as_str()),
        "{feed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_a_next_key_turns_active_by_itself_and_a_revoked_one_leaves() {
    let app = spawn_with(|s| s.key_publish_ahead = 1).await;
    let admin = app.admin_token().await;
    let keys = list(&app, &admin).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["state"] == "active"), "{keys:?}");
    let first = kid_of(&keys, "ES256");
    let es = keys.iter().find(|k| k["alg"] == "ES256").unwrap();
    assert_eq!(es["signs"], json!(["access"]));
    assert!(
        keys.iter()
            .all(|k| k.get("secret").is_none() && !k.to_string().contains("PRIVATE")),
        "no private half is ever shown: {keys:?}"
    );
    let added = rotate(&app, &admin).await;
    let next = kid_of(&added, "ES256");
    assert!(kids(&app.jwks().await).contains(&next));
    within(Duration::from_secs(5), "the next key signs", || async {
        let t = app.admin_token().await;
        header_of(&t)["kid"] == next.as_str()
    })
    .await;
    let admin = app.admin_token().await;
    let keys = list(&app, &admin).await;
    assert_eq!(state_of(&keys, &first), "retired", "{keys:?}");
    assert_eq!(state_of(&keys, &next), "active", "{keys:?}");
    // The retired key is published until its tokens have expired.
    assert!(kids(&app.jwks().await).contains(&first));
    let (status, v) = call(
        &app,
        Method::POST,
        &format!("/api/v1/keys/{first}/revoke"),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(!kids(&app.jwks().await).contains(&first));
    // Again: harmless, the same answer.
    let (status, again) = call(
        &app,
        Method::POST,
        &format!("/api/v1/keys/{first}/revoke"),
        &admin,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["revokedAt"], v["revokedAt"]);
    let keys = list(&app, &admin).await;
    assert_eq!(state_of(&keys, &first), "revoked");
    // Graphed: the ring by state, and the key revocation published.
    let metrics = app
        .authed(Method::GET, "/metrics", &admin)
        .await
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"tessera_signing_keys{state="active"} 2"#,
        r#"tessera_signing_keys{state="next"} 0"#,
        r#"tessera_signing_keys{state="retired"} 1"#,
        r#"tessera_revocations_published_total{kind="key"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert_eq!(
        state_of(&keys, &next),
        "active",
        "a retired key needs no stand-in"
    );
    // Unknown and malformed kids: 404 in the error shape, nothing changes.
    for kid in ["no-such-key", "%3Cscript%3E", &"x".repeat(300)] {
        let (status, v) = call(
            &app,
            Method::POST,
            &format!("/api/v1/keys/{kid}/revoke"),
            &admin,
        )
        .await;
        assert_eq!(status, 404, "{kid}: {v}");
        assert_eq!(v["error"]["code"], "not_found", "{v}");
        assert!(!v.to_string().contains("script"), "{v}");
    }
    assert_eq!(list(&app, &admin).await.len(), keys.len());
    // Audited.
    let (status, log) = call(&app, Method::GET, "/api/v1/audit?limit=50", &admin).await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"key.rotate"), "{actions:?}");
    assert!(actions.contains(&"key.revoke"), "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_manage_is_needed_and_is_enough() {
    let app = spawn_with(|_| {}).await;
    let (_, plain) = app
        .create_app(json!({"name": "plain", "permissions": ["api_keys:manage"]}))
        .await;
    let plain = app.token_for(None, &plain).await;
    for (method, path) in [
        (Method::GET, "/api/v1/keys"),
        (Method::POST, "/api/v1/keys/rotate"),
        (Method::POST, "/api/v1/keys/anything/revoke"),
    ] {
        let (status, v) = call(&app, method, path, &plain).await;
        assert_eq!(status, 403, "{path}: {v}");
        assert_eq!(v["error"]["code"], "insufficient_permissions", "{v}");
    }
    let (_, keeper) = app
        .create_app(json!({"name": "keeper", "permissions": ["keys:manage"]}))
        .await;
    let keeper = app.token_for(None, &keeper).await;
    assert_eq!(list(&app, &keeper).await.len(), 2);
    let added = rotate(&app, &keeper).await;
    assert_eq!(added.len(), 2);
    // One pending key at a time (it signs in 6 minutes): a second rotation
    // adds nothing.
    let (status, v) = call(&app, Method::POST, "/api/v1/keys/rotate", &keeper).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        added
            .iter()
            .any(|k| message.contains(k["kid"].as_str().unwrap())),
        "names the pending key: {v}"
    );
    assert_eq!(list(&app, &keeper).await.len(), 4);
}

/// The ring's Redis hash: what a gateway wrote, byte for byte.
async fn redis_ring(url: &str, prefix: &str) -> (Option<String>, Vec<(String, String)>) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let version: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}signing:version"))
        .query_async(&mut c)
        .await
        .unwrap();
    let mut all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{prefix}signing:keys"))
        .query_async(&mut c)
        .await
        .unwrap();
    all.sort();
    (version, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_dir_is_imported_once_sealed_and_a_wrong_kek_starts_nothing() {
    let redis = RedisServer::start();
    let prefix = format!("i{}:", tessera::crypto::random::base62(8).unwrap());
    let dirs = tempfile::tempdir().unwrap();
    let keys_dir = dirs.path().join("keys");
    let es = tessera::crypto::keys::generate_file(&keys_dir, tessera::crypto::SigningAlg::ES256)
        .unwrap();
    tessera::crypto::keys::generate_file(&keys_dir, tessera::crypto::SigningAlg::RS256).unwrap();
    let files = tessera::crypto::keys::load_dir(&keys_dir).unwrap();
    let es_kid = files
        .iter()
        .find(|k| k.file() == es)
        .unwrap()
        .kid()
        .to_owned();
    let mut settings = base_settings(dirs.path());
    settings.redis_url = Some(redis.url());
    settings.redis_prefix = prefix.clone();
    let a = spawn_in(dirs, settings.clone()).await;
    let published = kids(&a.jwks().await);
    let mut want: Vec<String> = files.iter().map(|k| k.kid().to_owned()).collect();
    want.sort();
    let mut got = published.clone();
    got.sort();
    assert_eq!(got, want, "the files' keys, and only those");
    let token = a.admin_token().await;
    assert_eq!(header_of(&token)["kid"], es_kid.as_str());
    // At rest in Redis: sealed, no PEM, no private member.
    let (_, stored) = redis_ring(&redis.url(), &prefix).await;
    assert_eq!(stored.len(), 2);
    for (kid, v) in &stored {
        assert!(v.contains(r#""enc":"A256GCM""#), "{kid}: {v}");
        assert!(!v.contains("PRIVATE KEY"), "{kid}");
        assert!(!v.contains(r#""d":"#), "{kid}");
    }

    // A second gateway with other files imports nothing: the store decides.
    let other = tempfile::tempdir().unwrap();
    tessera::crypto::keys::generate_file(
        &other.path().join("keys"),
        tessera::crypto::SigningAlg::ES256,
    )
    .unwrap();
    let mut s2 = base_settings(other.path());
    s2.redis_url = Some(redis.url());
    s2.redis_prefix = prefix.clone();
    let b = spawn_in(other, s2).await;
    assert_eq!(kids(&b.jwks().await), published);

    // A wrong key-encryption key: a clear error, and nothing written.
    let before = redis_ring(&redis.url(), &prefix).await;
    let wrong = tempfile::tempdir().unwrap();
    let mut s3 = base_settings(wrong.path());
    s3.redis_url = Some(redis.url());
    s3.redis_prefix = prefix.clone();
    s3.kek = Some(secrecy::SecretString::from(
        "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc0MjQ=",
    ));
    let err = tessera::Application::build(s3.clone()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("key-encryption key") && msg.contains("TESSERA_KEK"),
        "{msg}"
    );
    assert!(!msg.contains("d3Jvbmct"), "the key is never echoed: {msg}");
    assert_eq!(
        redis_ring(&redis.url(), &prefix).await,
        before,
        "nothing changed"
    );
    // None at all, and one that is not 32 bytes: refused too.
    s3.kek = None;
    let msg = tessera::Application::build(s3.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("TESSERA_KEK"), "{msg}");
    s3.kek = Some(secrecy::SecretString::from("c2hvcnQ="));
    let msg = tessera::Application::build(s3)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("TESSERA_KEK") && !msg.contains("c2hvcnQ"),
        "{msg}"
    );
    assert_eq!(redis_ring(&redis.url(), &prefix).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_gets_its_keys_sealed_once_a_kek_is_set() {
    // The directories outlive each gateway started on them.
    let keep = tempfile::tempdir().unwrap();
    let settings = base_settings(keep.path());
    let app = spawn_in(tempfile::tempdir().unwrap(), settings.clone()).await;
    let published = kids(&app.jwks().await);
    drop(app);
    // Restarted with a key-encryption key: the same ring, now sealed.
    let mut sealed = settings.clone();
    sealed.kek = Some(secrecy::SecretString::from(TEST_KEK));
    let app = spawn_in(tempfile::tempdir().unwrap(), sealed.clone()).await;
    assert_eq!(kids(&app.jwks().await), published);
    drop(app);
    // Without it now: refused, naming the setting.
    let mut bare = sealed;
    bare.kek = None;
    let mut tries = 0;
    let msg = loop {
        match tessera::Application::build(bare.clone()).await {
            Err(e) if e.to_string().contains("Cannot acquire lock") && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => break e.to_string(),
            Ok(_) => panic!("started without the key that seals its keys"),
        }
    };
    assert!(msg.contains("TESSERA_KEK"), "{msg}");
}

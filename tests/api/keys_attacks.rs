//! A hostile review of the signing-key lifecycle (docs/api.md, "Signing keys over time"): races between
//! gateways, records written into the store by hand, the key-encryption
//! key, the lifetime of a key revocation, and what one caller holding
//! `keys:manage` can make every gateway do. Each test states what must hold;
//! a failing one is a finding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tessera::Settings;
use tessera::crypto::SigningAlg;
use tessera::crypto::kek::Kek;
use tessera::crypto::keys::SigningKey;
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig, VerifyError};

use crate::helpers::{
    ADMIN_ID, ADMIN_SECRET, TEST_KEK, TestApp, base_settings, claims_of, spawn_with,
};
use crate::redis_server::RedisServer;

const ISSUER: &str = "https://keys-attack.example";

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn kid_of_token(token: &str) -> String {
    header_of(token)["kid"].as_str().unwrap().to_owned()
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

async fn list(app: &TestApp) -> Vec<Value> {
    let admin = app.admin_token().await;
    let (status, v) = call(app, Method::GET, "/api/v1/keys", &admin).await;
    assert_eq!(status, 200, "{v}");
    v["keys"].as_array().unwrap().clone()
}

fn count(keys: &[Value], alg: &str, state: &str) -> usize {
    keys.iter()
        .filter(|k| k["alg"] == alg && k["state"] == state)
        .count()
}

fn prefix() -> String {
    format!("ka{}:", tessera::crypto::random::base62(8).unwrap())
}

/// The settings of a gateway on `url` under `prefix`.
fn on_redis(url: String, prefix: String) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.redis_url = Some(url);
        s.redis_prefix = prefix;
        s.issuer = Some(ISSUER.into());
    }
}

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Writes a key record straight into the ring's hash, bumps the version
/// and tells every gateway, as a script of the store would.
async fn inject(url: &str, prefix: &str, record: &Value) {
    let mut c = conn(url).await;
    let kid = record["kid"].as_str().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}signing:keys"))
        .arg(kid)
        .arg(record.to_string())
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg(format!("{prefix}signing:version"))
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{prefix}events"))
        .arg(r#"{"kind":"keys"}"#)
        .query_async(&mut c)
        .await
        .unwrap();
}

/// A fresh ES256 key: its PEM and its kid.
fn fresh_key() -> (String, String) {
    let pem = tessera::crypto::keys::generate_pem(SigningAlg::ES256).unwrap();
    let key = SigningKey::from_pem(pem.as_bytes(), PathBuf::new()).unwrap();
    (pem.to_string(), key.kid().to_owned())
}

fn record(kid: &str, activates: DateTime<Utc>, private: Value) -> Value {
    json!({
        "kid": kid,
        "alg": "ES256",
        "createdAt": Utc::now().to_rfc3339(),
        "activatesAt": activates.to_rfc3339(),
        "revokedAt": null,
        "private": private,
    })
}

/// A token like `model`, signed with `pem` under `kid`, fresh now: what
/// whoever stole the key's private half can make.
fn forge(pem: &str, kid: &str, model: &str) -> String {
    let mut claims = claims_of(model);
    let now = Utc::now().timestamp();
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now);
    claims["exp"] = json!(now + 600);
    claims["jti"] = json!(format!("forged-{now}"));
    if claims.get("iat_ms").is_some() {
        claims["iat_ms"] = json!(now * 1000);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

// ---------------------------------------------------------------- races

/// Three gateways start at once on a ring whose newest key is older than
/// `key_rotation_days`: the schedule must add ONE `next` key, not one per
/// gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_on_three_gateways_at_once_adds_one_key_not_one_each() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let first = spawn_with(|s| {
        on_redis(redis.url(), prefix.clone())(s);
        s.key_rotation_days = 0;
    })
    .await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Make the ring 2 days old (instants are outside the sealed part).
    let mut c = conn(&redis.url()).await;
    let all: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{prefix}signing:keys"))
        .query_async(&mut c)
        .await
        .unwrap();
    let old = Utc::now() - chrono::Duration::days(2);
    for (i, (kid, v)) in all.iter().enumerate() {
        let mut r: Value = serde_json::from_str(v).unwrap();
        let at = old + chrono::Duration::milliseconds(i64::try_from(i).unwrap());
        r["createdAt"] = json!(at.to_rfc3339());
        r["activatesAt"] = json!(at.to_rfc3339());
        let _: () = redis::cmd("HSET")
            .arg(format!("{prefix}signing:keys"))
            .arg(kid)
            .arg(r.to_string())
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let url = redis.url();
    let start = |p: String| {
        let url = url.clone();
        spawn_with(move |s| {
            on_redis(url, p)(s);
            s.key_rotation_days = 1;
            s.key_publish_ahead = 3600;
        })
    };
    let (a, _b, _c) = tokio::join!(
        start(prefix.clone()),
        start(prefix.clone()),
        start(prefix.clone())
    );
    // The follower does its chores as soon as its subscription is up.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let keys = list(&a).await;
    let (es, rs) = (count(&keys, "ES256", "next"), count(&keys, "RS256", "next"));
    eprintln!("after one scheduled rotation on 3 gateways: {es} ES256 and {rs} RS256 next keys");
    assert_eq!(
        (es, rs),
        (1, 1),
        "one scheduled rotation, one key per algorithm: {keys:#?}"
    );
}

/// Two gateways starting at once on an empty Redis end with ONE ring.
/// (Expected to hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_starting_at_once_on_an_empty_redis_share_one_ring() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let (a, b) = tokio::join!(
        spawn_with(on_redis(redis.url(), prefix.clone())),
        spawn_with(on_redis(redis.url(), prefix.clone()))
    );
    let (ja, jb) = (a.jwks().await, b.jwks().await);
    assert_eq!(ja, jb, "one JWKS");
    assert_eq!(kids(&ja).len(), 2, "ES256 and RS256, once: {ja}");
    let mut c = conn(&redis.url()).await;
    let n: usize = redis::cmd("HLEN")
        .arg(format!("{prefix}signing:keys"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2, "no orphan keys written by the loser");
    assert_eq!(
        kid_of_token(&a.admin_token().await),
        kid_of_token(&b.admin_token().await)
    );
}

/// Rotate on A while B revokes the active key (with a rotation already
/// pending): one ring, one active key, the revoked key nowhere.
/// (Expected to hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_revoke_at_once_on_two_gateways_leave_one_consistent_ring() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let settings = |s: &mut Settings| {
        on_redis(redis.url(), prefix.clone())(s);
        s.key_publish_ahead = 3600;
    };
    let a = spawn_with(settings).await;
    let b = spawn_with(settings).await;
    let admin_a = a.admin_token().await;
    let admin_b = b.admin_token().await;
    let active = kid_of_token(&admin_a);
    // A rotation on A and a revocation of the signing key on B, at once:
    // whichever lands first, the ring ends whole (one pending rotation at
    // a time: the rotation is not refused, since none was pending).
    let revoke_path = format!("/api/v1/keys/{active}/revoke");
    let ((s1, v1), (s2, v2)) = tokio::join!(
        call(&a, Method::POST, "/api/v1/keys/rotate", &admin_a),
        call(&b, Method::POST, &revoke_path, &admin_b)
    );
    assert_eq!(s1, 201, "{v1}");
    assert_eq!(s2, 200, "{v2}");
    // Both gateways converge on one ring (on a loaded machine the change
    // messages may take a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (ja, ta) = loop {
        let (ja, jb) = (a.jwks().await, b.jwks().await);
        let (ta, tb) = (a.admin_token().await, b.admin_token().await);
        if ja == jb && kid_of_token(&ta) == kid_of_token(&tb) {
            break (ja, ta);
        }
        assert!(
            Instant::now() < deadline,
            "two rings: {ja} / {jb}, signing {} / {}",
            kid_of_token(&ta),
            kid_of_token(&tb)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!kids(&ja).contains(&active), "revoked key published: {ja}");
    assert_ne!(kid_of_token(&ta), active);
    let keys = list(&a).await;
    assert_eq!(count(&keys, "ES256", "active"), 1, "{keys:#?}");
    assert!(count(&keys, "ES256", "next") <= 1, "{keys:#?}");
    let added = v1["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == "ES256")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The rotated-in key either took over (the revoke came second and
    // promoted it) or waits as the next key.
    let state = keys
        .iter()
        .find(|k| k["kid"] == added.as_str())
        .map(|k| k["state"].as_str().unwrap().to_owned());
    assert!(
        matches!(state.as_deref(), Some("active" | "next")),
        "{added}: {state:?}"
    );
}

// ------------------------------------------------- records in the store

/// A key sealed with ANOTHER key-encryption key lands in the store at
/// runtime and turns active by the clock. No gateway can open it; then the
/// operator revokes the key still signing. Once the revoke has answered,
/// no gateway may publish or sign with the revoked key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sealed_with_another_kek_is_left_out_and_a_revocation_still_holds() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let a = spawn_with(on_redis(redis.url(), prefix.clone())).await;
    let b = spawn_with(on_redis(redis.url(), prefix.clone())).await;
    let old = kid_of_token(&a.admin_token().await);
    let (pem, kid) = fresh_key();
    let other = Kek::parse(&Kek::generate().unwrap()).unwrap();
    let (nonce, ct) = other
        .seal(
            format!("tessera signing key {kid}").as_bytes(),
            pem.as_bytes(),
        )
        .unwrap();
    let private = json!({"enc": "A256GCM", "nonce": URL_SAFE_NO_PAD.encode(nonce),
        "ciphertext": URL_SAFE_NO_PAD.encode(ct)});
    inject(
        &redis.url(),
        &prefix,
        &record(&kid, Utc::now() + chrono::Duration::seconds(2), private),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Every gateway fails to rebuild from here on; a rotation cannot help.
    let admin = a.admin_token().await;
    let (status, v) = call(&a, Method::POST, "/api/v1/keys/rotate", &admin).await;
    eprintln!("rotate with the foreign key active: {status} {v}");
    let (status, v) = call(
        &a,
        Method::POST,
        &format!("/api/v1/keys/{old}/revoke"),
        &admin,
    )
    .await;
    eprintln!("revoke of the key still signing: {status} {v}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, gw) in [("A", &a), ("B", &b)] {
        let t = gw.admin_token().await;
        let signer = kid_of_token(&t);
        let published = kids(&gw.jwks().await);
        assert!(
            signer != old && !published.contains(&old),
            "gateway {name} still signs with ({signer}) or publishes the revoked key {old} \
             after its revoke answered {status}"
        );
    }
}

/// A key stored IN THE CLEAR is written into a Redis ring whose keys are
/// sealed: with a key-encryption key configured, nothing but a sealed key
/// (that opens with it) may sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_key_written_into_redis_is_refused_not_signing() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let a = spawn_with(on_redis(redis.url(), prefix.clone())).await;
    let (pem, kid) = fresh_key();
    inject(
        &redis.url(),
        &prefix,
        &record(&kid, Utc::now(), json!({"enc": "none", "pem": pem})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signer = kid_of_token(&a.admin_token().await);
    assert_ne!(
        signer, kid,
        "the gateway signs with a key someone wrote into Redis in the clear \
         (and so holds the private half of)"
    );
    assert!(!kids(&a.jwks().await).contains(&kid), "published");
}

/// A record's instants and `revokedAt` are outside what the KEK seals (the
/// associated data is the kid alone): clearing `revokedAt` by hand brings a
/// revoked key back, signing on every gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_revoked_at_in_redis_does_not_bring_a_revoked_key_back() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let a = spawn_with(|s| {
        on_redis(redis.url(), prefix.clone())(s);
        s.key_publish_ahead = 3600;
    })
    .await;
    let admin = a.admin_token().await;
    let old = kid_of_token(&admin);
    let (status, v) = call(
        &a,
        Method::POST,
        &format!("/api/v1/keys/{old}/revoke"),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(kid_of_token(&a.admin_token().await), old);
    let mut c = conn(&redis.url()).await;
    let stored: String = redis::cmd("HGET")
        .arg(format!("{prefix}signing:keys"))
        .arg(&old)
        .query_async(&mut c)
        .await
        .unwrap();
    let mut r: Value = serde_json::from_str(&stored).unwrap();
    r["revokedAt"] = Value::Null;
    r["activatesAt"] = json!(Utc::now().to_rfc3339());
    inject(&redis.url(), &prefix, &r).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signer = kid_of_token(&a.admin_token().await);
    assert_ne!(
        signer, old,
        "the revoked key signs again once its record's revokedAt is cleared in Redis"
    );
}

/// A record whose sealed private half belongs to another record (blobs
/// swapped by hand), and a plain record whose PEM is another key than its
/// kid: neither is used, and the gateway keeps its ring. (Expected to hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_or_mislabelled_records_are_not_used() {
    let redis = RedisServer::start();
    let prefix = prefix();
    let a = spawn_with(|s| {
        on_redis(redis.url(), prefix.clone())(s);
        s.key_publish_ahead = 3600;
    })
    .await;
    let before = kids(&a.jwks().await);
    let signer = kid_of_token(&a.admin_token().await);
    // A sealed key made with the right KEK, but for another kid.
    let (pem, _real) = fresh_key();
    let (_, claimed) = fresh_key();
    let kek = Kek::parse(TEST_KEK).unwrap();
    let (nonce, ct) = kek
        .seal(
            format!("tessera signing key {_real}").as_bytes(),
            pem.as_bytes(),
        )
        .unwrap();
    let private = json!({"enc": "A256GCM", "nonce": URL_SAFE_NO_PAD.encode(nonce),
        "ciphertext": URL_SAFE_NO_PAD.encode(ct)});
    let later = Utc::now() + chrono::Duration::hours(1);
    inject(&redis.url(), &prefix, &record(&claimed, later, private)).await;
    // A plain PEM of one key, labelled with another kid.
    let (pem2, _) = fresh_key();
    let (_, claimed2) = fresh_key();
    inject(
        &redis.url(),
        &prefix,
        &record(&claimed2, later, json!({"enc": "none", "pem": pem2})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = kids(&a.jwks().await);
    assert!(
        !after.contains(&claimed) && !after.contains(&claimed2),
        "{after:?}"
    );
    assert_eq!(after, before);
    assert_eq!(kid_of_token(&a.admin_token().await), signer);
}

// ------------------------------------------------ revocation lifetimes

/// A compromised key is revoked; the thief keeps its private half. A
/// verifier fetched the JWKS (max-age 300 s, the gateway's own header) just
/// before. The key revocation must outlive every JWKS a verifier may still
/// hold: a token forged with the key must be refused as long as any
/// verifier may still trust the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revocation_must_outlive_the_jwks_cache_that_still_lists_the_key() {
    let app = spawn_with(|s| {
        s.token_ttl = 10;
        s.leeway = 0;
    })
    .await;
    let issuer = app.issuer_hint();
    let model = app.admin_token().await;
    let kid = kid_of_token(&model);
    // The embedded default writes its first keys as files: the "stolen" half.
    let files = tessera::crypto::keys::load_dir(&app.keys_dir()).unwrap();
    let file = files
        .iter()
        .find(|k| k.kid() == kid)
        .unwrap()
        .file()
        .to_owned();
    let pem = std::fs::read_to_string(file).unwrap();
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let max_age = res.headers()["cache-control"].to_str().unwrap().to_owned();
    let verifier = Verifier::start(VerifierConfig::new(
        &app.address,
        &issuer,
        "tessera",
        RevocationSource::Feed {
            gateway_url: app.address.clone(),
            app_id: ADMIN_ID.into(),
            app_secret: ADMIN_SECRET.into(),
            every: Duration::from_millis(200),
        },
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match verifier.verify(&forge(&pem, &kid, &model)).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "a forged token is a good one: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = app.admin_token().await;
    let (status, v) = call(
        &app,
        Method::POST,
        &format!("/api/v1/keys/{kid}/revoke"),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !matches!(
        verifier.verify(&forge(&pem, &kid, &model)).await,
        Err(VerifyError::Revoked)
    ) {
        assert!(Instant::now() < deadline, "the revocation never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = app.admin_token().await;
    let (_, feed) = call(&app, Method::GET, "/api/v1/revocations", &admin).await;
    let entry = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "key")
        .unwrap()
        .clone();
    let lives = entry["expiresAt"].as_i64().unwrap() - Utc::now().timestamp();
    eprintln!("key revocation kept {lives} s; JWKS served with `{max_age}`");
    // The entry must outlive every JWKS a verifier may still hold (fetched
    // just before the revocation, kept max-age), and every token the key
    // signed (token_ttl). Checked on the entry itself rather than by waiting
    // minutes for it to lapse.
    let max_age: i64 = max_age
        .split(',')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .expect("the JWKS names its max-age");
    assert!(
        lives >= max_age + 10,
        "the key revocation lapses after {lives} s, while a verifier may hold the key \
         in a JWKS for {max_age} s: a token forged with it would then be accepted"
    );
    assert!(matches!(
        verifier.verify(&forge(&pem, &kid, &model)).await,
        Err(VerifyError::Revoked)
    ));
}

// ---------------------------------------------------------- availability

/// One caller with `keys:manage` rotates in a loop. Every call adds a key
/// per algorithm (RSA keygen on the request path), every key stays in the
/// JWKS that every gateway rebuilds and every verifier downloads. Expected:
/// some bound (a pending rotation refused, or a cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_in_a_loop_is_refused_while_a_key_is_pending() {
    let app = spawn_with(|s| s.key_publish_ahead = 3600).await;
    let admin = app.admin_token().await;
    let n = 50;
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut refused = 0;
    for i in 0..n {
        let t = Instant::now();
        let (status, v) = call(&app, Method::POST, "/api/v1/keys/rotate", &admin).await;
        // The first adds a pending key; the others are refused while it waits.
        if i == 0 {
            assert_eq!(status, 201, "{v}");
        } else {
            assert_eq!(status, 409, "{v}");
            refused += 1;
        }
        slowest = slowest.max(t.elapsed());
    }
    assert_eq!(refused, n - 1);
    let total = started.elapsed();
    let jwks = app.jwks().await;
    let t = Instant::now();
    let _ = app.jwks().await;
    eprintln!(
        "{n} rotations: {total:?} ({:?} each, slowest {slowest:?}); JWKS now {} keys, {} bytes, served in {:?}",
        total / n,
        kids(&jwks).len(),
        jwks.len(),
        t.elapsed()
    );
    assert!(
        kids(&jwks).len() <= 8,
        "{n} rotations in a row: {} keys published, nothing bounds them",
        kids(&jwks).len()
    );
}

// ------------------------------------------------------------- the KEK

/// KEK files: a trailing newline or CRLF is fine; garbage, short, huge and
/// missing files are refused naming the setting, never echoing the content.
/// (Expected to hold; the file's mode is reported, not judged.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_files_are_read_strictly_and_never_echoed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let build = |content: &[u8], name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut s = base_settings(data.path());
        s.kek_file = Some(path);
        (s, data)
    };
    for (content, name) in [
        (format!("{TEST_KEK}\n").into_bytes(), "lf"),
        (format!("{TEST_KEK}\r\n").into_bytes(), "crlf"),
    ] {
        let (s, _data) = build(&content, name);
        let app = tessera::Application::build(s).await;
        assert!(app.is_ok(), "{name}: {:?}", app.err());
        eprintln!("a KEK file of mode 0644 (world-readable) is accepted without a word ({name})");
    }
    let secretish = "U0VDUkVULUdBUkJBR0UtVEhBVC1NVVNULU5PVC1CRS1FQ0hPRUQ";
    for (content, name) in [
        (format!("{secretish}!!\n").into_bytes(), "garbage"),
        (b"c2hvcnQtc2VjcmV0LWtleQ==".to_vec(), "short"),
        (secretish.repeat(100).into_bytes(), "huge"),
        (vec![0xff, 0xfe, 0x00, 0x41], "binary"),
        (Vec::new(), "empty"),
    ] {
        let (s, _data) = build(&content, name);
        let msg = tessera::Application::build(s)
            .await
            .unwrap_err()
            .to_string();
        eprintln!("{name}: {msg}");
        assert!(msg.contains("TESSERA_KEK_FILE"), "{name}: {msg}");
        assert!(
            !msg.contains("U0VDUkVU") && !msg.contains("c2hvcnQ"),
            "{name}: {msg}"
        );
    }
    let mut s = base_settings(dir.path());
    s.kek_file = Some(dir.path().join("absent"));
    let msg = tessera::Application::build(s)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("TESSERA_KEK_FILE"), "{msg}");
}

// -------------------------------------------------- who, and what leaks

/// Only `keys:manage` (or `*`) reaches the key API; refusals are audited;
/// kids of every shape give a 404 that echoes nothing; a holder of
/// `api_keys:manage` cannot mint itself `keys:manage`. (Expected to hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_api_refusals_are_audited_and_kids_are_never_echoed() {
    let app = spawn_with(|_| {}).await;
    let (_, manager) = app
        .create_app(
            json!({"name": "apps-manager", "permissions": ["api_keys:manage", "api_keys:read"]}),
        )
        .await;
    let manager = app.token_for(None, &manager).await;
    let (status, v) = call(&app, Method::POST, "/api/v1/keys/rotate", &manager).await;
    assert_eq!(status, 403, "{v}");
    let res = app
        .authed(Method::POST, "/api/v1/apps", &manager)
        .await
        .json(&json!({"name": "escalate", "permissions": ["keys:manage"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "widened its own reach");
    let admin = app.admin_token().await;
    let (status, log) = call(&app, Method::GET, "/api/v1/audit?limit=50", &admin).await;
    assert_eq!(status, 200);
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "refused" && e["details"]["action"] == "key.rotate"),
        "the refused rotation is audited: {log}"
    );
    for kid in [
        "ключ-🔑",
        "..%2F..%2Frotate",
        "%00",
        "a%20b",
        &"k".repeat(8000),
        "<img src=x>",
    ] {
        let (status, v) = call(
            &app,
            Method::POST,
            &format!("/api/v1/keys/{kid}/revoke"),
            &admin,
        )
        .await;
        assert!(
            status == 404 || status == 400 || status == 414,
            "{kid}: {status} {v}"
        );
        let text = v.to_string();
        assert!(
            !text.contains("ключ") && !text.contains("kkkkkkkk") && !text.contains("img"),
            "{text}"
        );
    }
    assert_eq!(kids(&app.jwks().await).len(), 2, "nothing changed");
}

/// The real binary at TESSERA_LOG=debug: rotating, listing and revoking
/// log no private key, no sealed blob and no KEK. (Expected to hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_carry_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::serve::command(dir.path(), 2);
    cmd.env("TESSERA_LOG", "debug")
        .env("TESSERA_KEK", TEST_KEK)
        .env("TESSERA_ADMIN_APP_ID", ADMIN_ID)
        .env("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET);
    let mut gw = crate::serve::spawn(cmd);
    let address = gw.address();
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{address}/api/v1/token"))
        .json(&json!({"grantType": "app_token", "AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["accessToken"].as_str().unwrap().to_owned();
    let rotated: Value = client
        .post(format!("{address}/api/v1/keys/rotate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = rotated["keys"][0]["kid"].as_str().unwrap().to_owned();
    for (m, path) in [
        (Method::GET, "/api/v1/keys".to_owned()),
        (Method::POST, format!("/api/v1/keys/{kid}/revoke")),
        (Method::POST, "/api/v1/keys/nope/revoke".to_owned()),
    ] {
        let res = client
            .request(m, format!("{address}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(res.status().as_u16() < 500, "{path}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = gw.child.kill();
    gw.wait_exit(Duration::from_secs(10));
    let logs = format!("{}{}", gw.stdout(), gw.stderr());
    assert!(logs.contains("DEBUG") || logs.contains("debug"), "debug on");
    for needle in [
        "PRIVATE KEY",
        "BEGIN",
        TEST_KEK,
        &TEST_KEK[..20],
        "ciphertext",
        "A256GCM",
        ADMIN_SECRET,
    ] {
        assert!(!logs.contains(needle), "{needle} in the logs");
    }
    eprintln!("{} lines of debug logs checked", logs.lines().count());
}

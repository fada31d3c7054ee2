//! The downstream verifier with the real gateway, a real Redis and the
//! example services' own routes (plus the example binaries themselves).

#[path = "../../examples/downstream/common.rs"]
pub(crate) mod downstream;

use actix_web::{App, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig};

use crate::helpers::*;
use crate::redis_server::RedisServer;

struct Downstream {
    url: String,
    verifier: Arc<Verifier>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        std::mem::drop(self.handle.stop(false));
    }
}

async fn downstream(
    gw: &TestApp,
    audience: &str,
    source: RevocationSource,
    admin: bool,
) -> Downstream {
    let issuer: Value = gw
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
        issuer["issuer"].as_str().unwrap(),
        audience,
        source,
    );
    let verifier = Verifier::start(config).await.unwrap();
    let v = verifier.clone();
    let server = HttpServer::new(move || {
        let app = App::new().app_data(web::Data::from(v.clone()));
        if admin {
            app.configure(downstream::admin_routes)
        } else {
            app.configure(downstream::cluster_routes)
        }
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Downstream {
        url: format!("http://127.0.0.1:{port}"),
        verifier,
        handle,
    }
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let res = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Signs arbitrary claims with the gateway's own active key (read from its
/// keys directory), to make tokens the gateway would never mint.
fn forge(gw: &TestApp, claims: &Value, header_alg: jsonwebtoken::Algorithm) -> String {
    let keys = tessera::crypto::keys::load_dir(&gw.keys_dir()).unwrap();
    let active = keys.last().unwrap();
    let mut header = jsonwebtoken::Header::new(header_alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(active.kid().to_owned());
    let pem = std::fs::read(active.file()).unwrap();
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

fn claims_for(gw: &TestApp, aud: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": gw.issuer_hint(), "sub": "app_forged0000000000", "aud": aud, "exp": now + exp_in, "iat": now, "nbf": now,
           "jti": "AAAAAAAAAAAAAAAAAAAAAA", "client_id": "app_forged0000000000", "scope": "workloads:read",
           "roles": [], "permissions": ["workloads:read"], "env": "live", "key_type": "secret"})
}

async fn cluster_app(gw: &TestApp) -> (String, String) {
    let (created, secret) = gw
        .create_app(json!({"name": "ci", "audiences": ["cluster-api"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]}))
        .await;
    (created["id"].as_str().unwrap().to_owned(), secret)
}

async fn cluster_token(gw: &TestApp, secret: &str) -> String {
    let res = gw
        .post_json(
            "/api/v1/token",
            &json!({"AppSecret": secret, "audience": "cluster-api"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_normal_path_and_every_refusal() {
    let gw = spawn_app().await;
    let ds = downstream(&gw, "cluster-api", RevocationSource::Disabled, false).await;
    let client = reqwest::Client::new();
    let (_id, secret) = cluster_app(&gw).await;
    let token = cluster_token(&gw, &secret).await;
    let url = |c: &str| format!("{}/api/v1/clusters/{c}/workloads", ds.url);

    let (status, body) = get(&client, &url("c1"), &token).await;
    assert_eq!((status, body["cluster"].as_str()), (200, Some("c1")));
    // The permission is missing (write), or the scope does not match (c2).
    let res = client
        .post(url("c1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_permissions");
    let (status, body) = get(&client, &url("c2"), &token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_permissions"))
    );
    // No token.
    let res = client.get(url("c1")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("www-authenticate").is_some());

    // A token for the gateway's own audience is not for this service.
    let admin = gw.admin_token().await;
    assert_eq!(get(&client, &url("c1"), &admin).await.0, 401);

    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    // alg: none.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
        parts[1]
    );
    assert_eq!(get(&client, &url("c1"), &none).await.0, 401, "alg none");
    // HS256 with the public key (its JWKS JSON) as the HMAC secret.
    let jwks = gw.jwks().await;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.to_owned());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        get(&client, &url("c1"), &confused).await.0,
        401,
        "HS256 key confusion"
    );
    // Unknown kid.
    let unknown = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"}).to_string()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        get(&client, &url("c1"), &unknown).await.0,
        401,
        "unknown kid"
    );
    // Tampered payload.
    let mut forged_claims = claims.clone();
    forged_claims["access"][0]["scope"] = json!("cluster:c2");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    assert_eq!(
        get(&client, &url("c2"), &tampered).await.0,
        401,
        "tampered payload"
    );
    // Oversized.
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]);
    assert_eq!(get(&client, &url("c1"), &huge).await.0, 401, "oversized");

    // Validly signed by the gateway's key, but expired, or for another aud or iss.
    let mut c = claims_for(&gw, "cluster-api", 600);
    c["access"] = json!([{"scope": "cluster:c1", "permissions": ["workloads:read"]}]);
    assert_eq!(
        get(
            &client,
            &url("c1"),
            &forge(&gw, &c, jsonwebtoken::Algorithm::ES256)
        )
        .await
        .0,
        200,
        "the forging itself works"
    );
    let mut expired = c.clone();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 120);
    assert_eq!(
        get(
            &client,
            &url("c1"),
            &forge(&gw, &expired, jsonwebtoken::Algorithm::ES256)
        )
        .await
        .0,
        401,
        "expired"
    );
    let mut other_aud = c.clone();
    other_aud["aud"] = json!("admin-api");
    assert_eq!(
        get(
            &client,
            &url("c1"),
            &forge(&gw, &other_aud, jsonwebtoken::Algorithm::ES256)
        )
        .await
        .0,
        401,
        "wrong aud"
    );
    let mut other_iss = c.clone();
    other_iss["iss"] = json!("http://evil.example");
    assert_eq!(
        get(
            &client,
            &url("c1"),
            &forge(&gw, &other_iss, jsonwebtoken::Algorithm::ES256)
        )
        .await
        .0,
        401,
        "wrong iss"
    );
    let mut not_yet = c.clone();
    not_yet["nbf"] = json!(chrono::Utc::now().timestamp() + 600);
    assert_eq!(
        get(
            &client,
            &url("c1"),
            &forge(&gw, &not_yet, jsonwebtoken::Algorithm::ES256)
        )
        .await
        .0,
        401,
        "not yet valid"
    );

    // A token carrying an IP allow-list is enforced here too.
    let (_ipa, ip_secret) = gw
        .create_app(
            json!({"name": "pinned", "audiences": ["cluster-api"], "allowedIps": ["127.0.0.1"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]}),
        )
        .await;
    let pinned = cluster_token(&gw, &ip_secret).await;
    assert_eq!(get(&client, &url("c1"), &pinned).await.0, 200);
    let mut far = c.clone();
    far["allowed_cidrs"] = json!(["10.0.0.0/8"]);
    let (status, body) = get(
        &client,
        &url("c1"),
        &forge(&gw, &far, jsonwebtoken::Algorithm::ES256),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("ip_not_allowed"))
    );
    drop(ds);
}

async fn refused_within(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if get(client, url, token).await.0 == 401 {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_the_verifier_by_redis_and_by_feed() {
    let redis = RedisServer::start();
    let prefix = format!("v{}:", tessera::crypto::random::base62(8).unwrap());
    let gw = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
    })
    .await;
    let (_f, feed_secret) = gw
        .create_app(json!({"name": "feed-reader", "permissions": ["tokens:introspect"]}))
        .await;
    let feed_id = claims_of(&gw.token_for(None, &feed_secret).await)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_redis = downstream(
        &gw,
        "cluster-api",
        RevocationSource::Redis {
            url: redis.url(),
            prefix: prefix.clone(),
        },
        false,
    )
    .await;
    let by_feed = downstream(
        &gw,
        "cluster-api",
        RevocationSource::Feed {
            gateway_url: gw.address.clone(),
            app_id: feed_id,
            app_secret: feed_secret.into(),
            every: Duration::from_millis(200),
        },
        false,
    )
    .await;
    let client = reqwest::Client::new();
    let (id, secret) = cluster_app(&gw).await;
    let t1 = cluster_token(&gw, &secret).await;
    let t2 = cluster_token(&gw, &secret).await;
    let t3 = cluster_token(&gw, &secret).await;
    for ds in [&by_redis, &by_feed] {
        let url = format!("{}/api/v1/clusters/c1/workloads", ds.url);
        let deadline = Instant::now() + Duration::from_secs(5);
        while get(&client, &url, &t1).await.0 != 200 {
            assert!(Instant::now() < deadline, "the mirror never became fresh");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // One token revoked: refused by both, the others still accepted.
    let res = gw
        .client
        .post(gw.url("/oauth/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", t1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let took = refused_within(
        &client,
        &format!("{}/api/v1/clusters/c1/workloads", by_redis.url),
        &t1,
        Duration::from_millis(500),
    )
    .await;
    assert!(
        took < Duration::from_millis(100),
        "redis propagation took {took:?}"
    );
    refused_within(
        &client,
        &format!("{}/api/v1/clusters/c1/workloads", by_feed.url),
        &t1,
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(
        get(
            &client,
            &format!("{}/api/v1/clusters/c1/workloads", by_redis.url),
            &t2
        )
        .await
        .0,
        200
    );

    // The application revoked: every live token refused.
    let admin = gw.admin_token().await;
    gw.client
        .post(gw.url(&format!("/api/v1/apps/{id}/revoke")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    for ds in [&by_redis, &by_feed] {
        for t in [&t2, &t3] {
            refused_within(
                &client,
                &format!("{}/api/v1/clusters/c1/workloads", ds.url),
                t,
                Duration::from_millis(1500),
            )
            .await;
        }
    }
    assert!(by_redis.verifier.mirror().unwrap().len() >= 2);

    // Redis gone for longer than the staleness bound: fail closed (503).
    drop(redis);
    let url = format!("{}/api/v1/clusters/c1/workloads", by_redis.url);
    let start = Instant::now();
    loop {
        let (status, body) = get(&client, &url, &t2).await;
        if status == 503 {
            assert_eq!(body["error"]["code"], "unavailable");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never failed closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_key_still_verifies_and_a_gateway_restart_loses_nothing() {
    // Two keys before start: the older one is retired but still published.
    // The directories outlive each gateway process, as on a real host.
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let old =
        tessera::crypto::keys::generate_file(&keys, tessera::crypto::SigningAlg::ES256).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    tessera::crypto::keys::generate_file(&keys, tessera::crypto::SigningAlg::ES256).unwrap();
    let mut settings = base_settings(root.path());
    settings.issuer = Some("http://gateway.test".into());
    let gw = spawn_in(tempfile::tempdir().unwrap(), settings.clone()).await;
    let jwks: Value = serde_json::from_str(&gw.jwks().await).unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        3,
        "two ES256 keys, one RS256 ID-token key"
    );
    let ds = downstream(&gw, "cluster-api", RevocationSource::Disabled, false).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/clusters/c1/workloads", ds.url);

    let old_kid = tessera::crypto::keys::load_dir(&keys)
        .unwrap()
        .into_iter()
        .find(|k| k.file() == old)
        .unwrap()
        .kid()
        .to_owned();
    let mut c = claims_for(&gw, "cluster-api", 600);
    c["access"] = json!([{"scope": "cluster:c1", "permissions": ["workloads:read"]}]);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(old_kid);
    let by_old_key = jsonwebtoken::encode(
        &header,
        &c,
        &jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&old).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        get(&client, &url, &by_old_key).await.0,
        200,
        "a retired but published key still verifies"
    );

    // The gateway goes away: verification goes on from the cached key set.
    let (_id, secret) = cluster_app(&gw).await;
    let token = cluster_token(&gw, &secret).await;
    drop(gw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        get(&client, &url, &token).await.0,
        200,
        "no call to the gateway per request"
    );
    assert_eq!(get(&client, &url, &by_old_key).await.0, 200);

    // It comes back on the same directories: old and new tokens both verify.
    let gw = spawn_in(tempfile::tempdir().unwrap(), settings).await;
    let fresh = cluster_token(&gw, &secret).await;
    assert_eq!(
        get(&client, &url, &fresh).await.0,
        200,
        "a token of the restarted gateway"
    );
    assert_eq!(
        get(&client, &url, &token).await.0,
        200,
        "a token from before the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_binaries_run_as_the_spec_says() {
    let redis = RedisServer::start();
    let prefix = format!("x{}:", tessera::crypto::random::base62(8).unwrap());
    let gw = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
    })
    .await;
    let examples = std::path::Path::new(env!("CARGO_BIN_EXE_tessera"))
        .parent()
        .unwrap()
        .join("examples");
    let bin = |name: &str| {
        let p = examples.join(name);
        assert!(
            p.exists(),
            "{} is missing: `cargo test` builds the examples",
            p.display()
        );
        p
    };
    let (reader, reader_secret) = gw.create_app(json!({"name": "summary-reader", "permissions": ["api_keys:read", "tokens:introspect"], "audiences": ["admin-api"]})).await;
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (cport, aport) = (port(), port());
    let mut cluster = std::process::Command::new(bin("cluster_api"))
        .args([
            "--listen",
            &format!("127.0.0.1:{cport}"),
            "--gateway",
            &gw.address,
            "--audience",
            "cluster-api",
        ])
        .args(["--redis", &redis.url(), "--redis-prefix", &prefix])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut admin = std::process::Command::new(bin("admin_api"))
        .args([
            "--listen",
            &format!("127.0.0.1:{aport}"),
            "--gateway",
            &gw.address,
            "--audience",
            "admin-api",
        ])
        .env("TESSERA_APP_ID", reader["id"].as_str().unwrap())
        .env("TESSERA_APP_SECRET", &reader_secret)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let (_id, secret) = cluster_app(&gw).await;
    let token = cluster_token(&gw, &secret).await;
    let summary_token = {
        let res = gw
            .post_json(
                "/api/v1/token",
                &json!({"AppSecret": reader_secret, "audience": "admin-api"}),
            )
            .await;
        res.json::<Value>().await.unwrap()["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let wait_for = async |url: &str, token: &str, want: u16| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = client.get(url).bearer_auth(token).send().await
                && res.status().as_u16() == want
            {
                return;
            }
            assert!(Instant::now() < deadline, "{url} never answered {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for(
        &format!("http://127.0.0.1:{cport}/api/v1/clusters/c1/workloads"),
        &token,
        200,
    )
    .await;
    wait_for(
        &format!("http://127.0.0.1:{cport}/api/v1/clusters/c9/workloads"),
        &token,
        403,
    )
    .await;
    wait_for(
        &format!("http://127.0.0.1:{aport}/api/v1/admin/summary"),
        &summary_token,
        200,
    )
    .await;
    // Each accepts only tokens minted for its own audience.
    wait_for(
        &format!("http://127.0.0.1:{aport}/api/v1/admin/summary"),
        &token,
        401,
    )
    .await;
    wait_for(
        &format!("http://127.0.0.1:{cport}/api/v1/clusters/c1/workloads"),
        &summary_token,
        401,
    )
    .await;
    let _ = cluster.kill();
    let _ = admin.kill();
    let _ = cluster.wait();
    let _ = admin.wait();
}

/// The gateway's real JWKS, served by a small HTTP server that counts its
/// fetches and can be told to fail, to watch the verifier's key cache.
struct JwksOrigin {
    url: String,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for JwksOrigin {
    fn drop(&mut self) {
        std::mem::drop(self.handle.stop(false));
    }
}

fn jwks_origin(jwks: String, max_age: u32) -> JwksOrigin {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let (h, f) = (hits.clone(), failing.clone());
    let server = HttpServer::new(move || {
        let (h, f, jwks) = (h.clone(), f.clone(), jwks.clone());
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let (h, f, jwks) = (h.clone(), f.clone(), jwks.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    if f.load(Ordering::SeqCst) {
                        return actix_web::HttpResponse::ServiceUnavailable().finish();
                    }
                    actix_web::HttpResponse::Ok()
                        .insert_header(("cache-control", format!("public, max-age={max_age}")))
                        .content_type("application/json")
                        .body(jwks)
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    JwksOrigin {
        url: format!("http://127.0.0.1:{port}"),
        hits,
        failing,
        handle,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_share_one_rate_limited_refresh_and_outages_keep_the_last_keys() {
    use std::sync::atomic::Ordering;
    let gw = spawn_app().await;
    let origin = jwks_origin(gw.jwks().await, 1);
    let mut config = VerifierConfig::new(
        &origin.url,
        &gw.issuer_hint(),
        "cluster-api",
        RevocationSource::Disabled,
    );
    config.jwks_min_refresh = Duration::from_millis(400);
    let verifier = Verifier::start(config).await.unwrap();
    assert_eq!(origin.hits.load(Ordering::SeqCst), 1, "fetched at start");
    // The start-up fetch counts against the interval too.
    tokio::time::sleep(Duration::from_millis(450)).await;

    let (_id, secret) = cluster_app(&gw).await;
    let token = cluster_token(&gw, &secret).await;
    let parts: Vec<&str> = token.split('.').collect();
    let unknown = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(
            json!({"alg": "ES256", "typ": "at+jwt", "kid": "rotated-in-elsewhere"}).to_string()
        ),
        parts[1],
        parts[2]
    );
    // 50 concurrent requests naming an unknown kid: one refresh between them.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (v, t) = (verifier.clone(), unknown.clone());
        tasks.push(tokio::spawn(async move { v.verify(&t).await.is_err() }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "an unknown kid is refused");
    }
    assert_eq!(origin.hits.load(Ordering::SeqCst), 2, "one shared refresh");
    // More unknown kids within the interval: no more fetches.
    for _ in 0..20 {
        assert!(verifier.verify(&unknown).await.is_err());
    }
    assert_eq!(origin.hits.load(Ordering::SeqCst), 2, "rate-limited");

    // The origin fails after the keys' max-age: the last good set still serves.
    origin.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        verifier.verify(&token).await.is_ok(),
        "the last good key set keeps serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_built_from_path_segments_stay_one_segment() {
    let gw = spawn_app().await;
    let ds = downstream(&gw, "cluster-api", RevocationSource::Disabled, false).await;
    let client = reqwest::Client::new();
    let url = |c: &str| format!("{}/api/v1/clusters/{c}/workloads", ds.url);
    // A token scoped below a cluster, and one scoped to the cluster.
    let (_p, project_secret) = gw
        .create_app(json!({"name": "project", "audiences": ["cluster-api"],
            "accessRules": [{"scope": "cluster:c1/project:p2", "permissions": ["workloads:read"]}]}))
        .await;
    let project = cluster_token(&gw, &project_secret).await;
    let (_c, cluster_secret) = cluster_app(&gw).await;
    let cluster = cluster_token(&gw, &cluster_secret).await;

    // actix decodes `%2F` in the path parameter: `cluster:c1/project:p2`
    // must not be built from it, or the project token passes a
    // cluster-wide check.
    for token in [&project, &cluster] {
        for bad in [
            "c1%2Fproject:p2",
            "c1%2fproject:p2",
            "c1%2F..%2Fc2",
            "*",
            "%2A",
            "c1:x",
            "c1%20x",
            "c1%2F",
        ] {
            let (status, body) = get(&client, &url(bad), token).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (400, Some("invalid_request")),
                "{bad}: {body}"
            );
            assert_eq!(body["error"]["type"], "invalid_request_error");
        }
    }
    // The project token never held the cluster; the cluster token does.
    let (status, body) = get(&client, &url("c1"), &project).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("insufficient_permissions"))
    );
    let (status, body) = get(&client, &url("c1"), &cluster).await;
    assert_eq!((status, body["cluster"].as_str()), (200, Some("c1")));
    // Writes take the same path.
    let res = client
        .post(url("c1%2Fproject:p2"))
        .bearer_auth(&project)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// docs/api.md, "People" "Ending access": logout, a deleted session, a disabled user and
/// a refresh-token reuse each reach the `cluster_api` service's verifier,
/// by Redis and by the feed, without a call to the gateway per token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_persons_access_reaches_the_cluster_api() {
    use crate::people::{Browser, PASSWORD, code_for, create_user, redeem};
    let redis = RedisServer::start();
    let prefix = format!("p{}:", tessera::crypto::random::base62(8).unwrap());
    let gw = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
        s.people.refresh_grace = 0;
    })
    .await;
    let (_f, feed_secret) = gw
        .create_app(json!({"name": "feed-reader", "permissions": ["tokens:introspect"]}))
        .await;
    let feed_id = claims_of(&gw.token_for(None, &feed_secret).await)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    // People's tokens carry the gateway's default audience.
    let by_redis = downstream(
        &gw,
        "tessera",
        RevocationSource::Redis {
            url: redis.url(),
            prefix: prefix.clone(),
        },
        false,
    )
    .await;
    let by_feed = downstream(
        &gw,
        "tessera",
        RevocationSource::Feed {
            gateway_url: gw.address.clone(),
            app_id: feed_id,
            app_secret: feed_secret.into(),
            every: Duration::from_millis(200),
        },
        false,
    )
    .await;
    let uid = create_user(&gw, "ops@example.com", &["workloads:read"]).await;
    let client = reqwest::Client::new();
    let password_token = async || {
        let v: Value = gw
            .post_json(
                "/api/v1/token",
                &json!({"grantType": "password", "email": "ops@example.com", "password": PASSWORD}),
            )
            .await
            .json()
            .await
            .unwrap();
        v
    };
    let accepted = async |token: &str| {
        for ds in [&by_redis, &by_feed] {
            let url = format!("{}/api/v1/clusters/c1/workloads", ds.url);
            let deadline = Instant::now() + Duration::from_secs(5);
            while get(&client, &url, token).await.0 != 200 {
                assert!(
                    Instant::now() < deadline,
                    "a person's token is never accepted"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let refused = async |token: &str, what: &str| {
        for ds in [&by_redis, &by_feed] {
            let url = format!("{}/api/v1/clusters/c1/workloads", ds.url);
            let took = refused_within(&client, &url, token, Duration::from_secs(5)).await;
            eprintln!("{what}: refused by {} after {took:?}", ds.url);
        }
    };

    // Logout through the browser flow (RP-initiated, with the ID token).
    let mut b = Browser::new(&gw);
    let code = code_for(&mut b, &gw, "ops@example.com", "openid").await;
    let t = redeem(&gw, &code, Some(crate::people::VERIFIER)).await;
    let t: Value = t.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap().to_owned();
    accepted(&access).await;
    let res = b
        .get(&format!(
            "/oauth/logout?id_token_hint={}",
            t["id_token"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status(), 200);
    refused(&access, "logout").await;

    // A session deleted by its owner from another session.
    let one = password_token().await;
    let two = password_token().await;
    let a1 = one["accessToken"].as_str().unwrap().to_owned();
    accepted(&a1).await;
    let sid = claims_of(&a1)["sid"].as_str().unwrap().to_owned();
    let res = gw
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/me/sessions/{sid}"),
            two["accessToken"].as_str().unwrap(),
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    refused(&a1, "session deleted").await;

    // A refresh token reused after its grace: the family's session ends.
    let three = password_token().await;
    let a3 = three["accessToken"].as_str().unwrap().to_owned();
    let rt = three["refreshToken"].as_str().unwrap().to_owned();
    let res = gw
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "refresh_token", "refreshToken": rt}),
        )
        .await;
    assert_eq!(res.status(), 200);
    accepted(&a3).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let res = gw
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "refresh_token", "refreshToken": rt}),
        )
        .await;
    assert_eq!(res.status(), 400);
    refused(&a3, "refresh reuse").await;

    // The user disabled: every session's tokens, at once.
    let a2 = two["accessToken"].as_str().unwrap().to_owned();
    accepted(&a2).await;
    let res = call(
        &gw,
        reqwest::Method::PATCH,
        &format!("/api/v1/users/{uid}"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(res.status(), 200);
    refused(&a2, "user disabled").await;
}

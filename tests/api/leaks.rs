//! `POST /api/v1/leaks` (docs/api.md, "At the edge"): what a secret scanner reports is
//! labelled, and every genuine credential dies at once.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::redis_server::RedisServer;

/// A reporter's token: an application holding only `leaks:report`.
async fn reporter(app: &TestApp) -> String {
    let (_, secret) = app
        .create_app(json!({"name": "scanner", "permissions": ["leaks:report"]}))
        .await;
    app.token_for(None, &secret).await
}

/// One entry as a scanner sends it.
fn found(token: &str) -> Value {
    json!({"token": token, "url": "https://git.example/someone/repo/blob/main/.env", "source": "content"})
}

async fn report(app: &TestApp, bearer: &str, body: &Value) -> reqwest::Response {
    app.authed(Method::POST, "/api/v1/leaks", bearer)
        .await
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The labels of a 200 answer, checking that each verdict holds nothing
/// but its label.
async fn labels(res: reqwest::Response) -> Vec<String> {
    let v = ok(res, 200).await;
    v.as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            let o = e.as_object().expect("an object per entry");
            assert_eq!(o.len(), 1, "nothing but the label: {e}");
            o["label"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn get_app(app: &TestApp, id: &str) -> Value {
    ok(
        call(app, Method::GET, &format!("/api/v1/apps/{id}"), None).await,
        200,
    )
    .await
}

/// Whether `/oauth/introspect` still calls `token` active.
async fn active(app: &TestApp, introspector: &(String, String), token: &str) -> bool {
    let res = app
        .client
        .post(app.url("/oauth/introspect"))
        .form(&[
            ("client_id", introspector.0.as_str()),
            ("client_secret", introspector.1.as_str()),
            ("token", token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["active"]
        .as_bool()
        .unwrap()
}

async fn introspector(app: &TestApp) -> (String, String) {
    let (v, secret) = app
        .create_app(json!({"name": "introspector", "permissions": ["tokens:introspect"]}))
        .await;
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// The status `/auth/forward` answers for a bearer credential.
async fn forward(app: &TestApp, credential: &str) -> u16 {
    app.client
        .get(app.url("/auth/forward"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A key in this gateway's format, with a valid checksum, naming `id`, but
/// not its secret.
fn forged_for(secret: &str, id: &str) -> String {
    let prefix = secret.split('_').next().unwrap();
    let g = tessera::crypto::secret::generate(
        prefix,
        tessera::domain::KeyType::Secret,
        tessera::domain::Environment::Live,
        id,
    )
    .unwrap();
    secrecy::ExposeSecret::expose_secret(&g.secret).to_owned()
}

/// `s` with its last character changed: the checksum no longer holds.
fn mistyped(s: &str) -> String {
    let mut t = s.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'a' { 'b' } else { 'a' });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_key_is_revoked_and_fakes_change_nothing() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    let scanner = reporter(&app).await;
    let intro = introspector(&app).await;
    let (victim, secret) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let victim_id = victim["id"].as_str().unwrap().to_owned();
    let (bystander, bystander_secret) = app
        .create_app(json!({"name": "bystander", "permissions": ["content:read"]}))
        .await;
    let bystander_id = bystander["id"].as_str().unwrap().to_owned();
    let before = app.token_for(None, &secret).await;
    assert!(active(&app, &intro, &before).await);
    assert_eq!(forward(&app, &before).await, 200);
    assert_eq!(forward(&app, &secret).await, 200);

    let foreign_jwt = other.admin_token().await;
    let body = json!([
        found(&forged_for(&bystander_secret, &bystander_id)),
        found(&mistyped(&bystander_secret)),
        found("correct horse battery staple"),
        found("ghp_0123456789abcdefghijABCDEFGHIJ012345"),
        found(&foreign_jwt),
        found(&secret),
        found(&forged_for(&secret, &victim_id)),
    ]);
    let got = labels(report(&app, &scanner, &body).await).await;
    assert_eq!(
        got,
        [
            "false_positive",
            "false_positive",
            "false_positive",
            "false_positive",
            "false_positive",
            "true_positive",
            "false_positive"
        ]
    );

    // The genuine key is dead, and so is every token it minted.
    let v = get_app(&app, &victim_id).await;
    assert_eq!(v["status"], "revoked", "{v}");
    assert!(v["leakedAt"].is_string(), "{v}");
    assert_eq!(v["leakedAt"], v["revokedAt"]);
    let (status, code, _) = error_code(app.exchange(None, &secret).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert!(!active(&app, &intro, &before).await);
    assert_eq!(forward(&app, &before).await, 401);
    assert_eq!(forward(&app, &secret).await, 401);

    // The fakes changed nothing: the bystander works as before.
    let b = get_app(&app, &bystander_id).await;
    assert_eq!(b["status"], "active");
    assert!(b["leakedAt"].is_null(), "{b}");
    assert_eq!(app.exchange(None, &bystander_secret).await.status(), 200);
    // The other gateway's token was not ours to revoke.
    let me = other
        .authed(Method::GET, "/api/v1/apps", &foreign_jwt)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // Reporting it again is harmless and still says it was genuine.
    let again = labels(report(&app, &scanner, &json!([found(&secret)])).await).await;
    assert_eq!(again, ["true_positive"]);
    assert_eq!(get_app(&app, &victim_id).await["leakedAt"], v["leakedAt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_leaks_report_is_refused_and_nothing_changes() {
    let app = spawn_app().await;
    let (victim, secret) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    let token = app.token_for(None, &secret).await;
    let (_, manager) = app
        .create_app(json!({"name": "manager", "permissions": ["api_keys:manage", "content:*", "tokens:revoke"]}))
        .await;
    let manager = app.token_for(None, &manager).await;
    for bearer in [manager.as_str(), token.as_str()] {
        let res = report(&app, bearer, &json!([found(&secret), found(&token)])).await;
        let (status, code, body) = error_code(res).await;
        assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
        assert!(!body.to_string().contains(&secret));
    }
    let res = app
        .client
        .post(app.url("/api/v1/leaks"))
        .json(&json!([found(&secret)]))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await.0, 401);
    assert_eq!(get_app(&app, id).await["status"], "active");
    assert_eq!(app.exchange(None, &secret).await.status(), 200);
    assert_eq!(forward(&app, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_access_token_is_revoked_and_its_key_is_not() {
    let app = spawn_app().await;
    let scanner = reporter(&app).await;
    let intro = introspector(&app).await;
    let (victim, secret) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    let leaked = app.token_for(None, &secret).await;
    let kept = app.token_for(None, &secret).await;
    let got = labels(report(&app, &scanner, &json!([found(&leaked)])).await).await;
    assert_eq!(got, ["true_positive"]);
    assert!(!active(&app, &intro, &leaked).await);
    assert_eq!(forward(&app, &leaked).await, 401);
    // Only that token: its sibling and its key live on.
    assert!(active(&app, &intro, &kept).await);
    assert_eq!(get_app(&app, id).await["status"], "active");
    assert_eq!(app.exchange(None, &secret).await.status(), 200);
    // A token that verifies but is altered is not ours.
    let mut forged = leaked.clone();
    forged.push('A');
    let got = labels(report(&app, &scanner, &json!([found(&forged)])).await).await;
    assert_eq!(got, ["false_positive"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_secret_within_grace_is_cut_off_and_the_new_one_works() {
    let app = spawn_app().await;
    let scanner = reporter(&app).await;
    let intro = introspector(&app).await;
    let (victim, old) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    let rotated = ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{id}/rotate"),
            Some(json!({"gracePeriodSeconds": 3600})),
        )
        .await,
        200,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    let old_token = app.token_for(None, &old).await;
    assert_eq!(app.exchange(None, &old).await.status(), 200, "in grace");

    let got = labels(report(&app, &scanner, &json!([found(&old)])).await).await;
    assert_eq!(got, ["true_positive"]);
    assert_eq!(app.exchange(None, &old).await.status(), 401);
    assert!(!active(&app, &intro, &old_token).await);
    let v = get_app(&app, id).await;
    assert_eq!(v["status"], "active", "{v}");
    assert!(v["leakedAt"].is_null(), "{v}");
    let fresh = app.token_for(None, &new).await;
    assert!(active(&app, &intro, &fresh).await);
    assert_eq!(forward(&app, &new).await, 200);
    // Once cut off, the old secret is nobody's any more.
    let got = labels(report(&app, &scanner, &json!([found(&old)])).await).await;
    assert_eq!(got, ["false_positive"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_revoked_app_comes_back_only_by_a_rotation_in_reach() {
    let app = spawn_app().await;
    let scanner = reporter(&app).await;
    let (victim, leaked) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read", "workloads:write"]}))
        .await;
    let id = victim["id"].as_str().unwrap().to_owned();
    let path = |tail: &str| format!("/api/v1/apps/{id}{tail}");
    assert_eq!(
        labels(report(&app, &scanner, &json!([found(&leaked)])).await).await,
        ["true_positive"]
    );

    // Nothing else brings it back.
    let patched = ok(
        call(
            &app,
            Method::PATCH,
            &path(""),
            Some(json!({"description": "still here"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["status"], "revoked");
    assert!(patched["leakedAt"].is_string());
    // No grace for a leaked secret.
    let res = call(
        &app,
        Method::POST,
        &path("/rotate"),
        Some(json!({"gracePeriodSeconds": 60})),
    )
    .await;
    assert_eq!(error_code(res).await.1, "validation_failed");
    // The reach rule holds: a manager without `workloads:write` may not.
    let (_, manager) = app
        .create_app(json!({"name": "manager", "permissions": ["api_keys:manage", "content:*"]}))
        .await;
    let manager = app.token_for(None, &manager).await;
    let res = app
        .authed(Method::POST, &path("/rotate"), &manager)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await.0, 403);
    assert_eq!(get_app(&app, &id).await["status"], "revoked");
    assert_eq!(app.exchange(None, &leaked).await.status(), 401);

    // The rotation does, with a new secret; the leaked one stays dead.
    let back = ok(call(&app, Method::POST, &path("/rotate"), None).await, 200).await;
    assert_eq!(back["status"], "active", "{back}");
    assert!(
        back["revokedAt"].is_null() && back["leakedAt"].is_null(),
        "{back}"
    );
    let new = back["secret"].as_str().unwrap();
    assert_ne!(new, leaked);
    assert_eq!(app.exchange(None, new).await.status(), 200);
    assert_eq!(app.exchange(None, &leaked).await.status(), 401);
    assert_eq!(
        labels(report(&app, &scanner, &json!([found(&leaked)])).await).await,
        ["false_positive"]
    );

    // An operator's revocation stays final: no rotation for it.
    let (plain, _) = app
        .create_app(json!({"name": "plain", "permissions": ["content:read"]}))
        .await;
    let plain = plain["id"].as_str().unwrap();
    ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{plain}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;
    let res = call(
        &app,
        Method::POST,
        &format!("/api/v1/apps/{plain}/rotate"),
        None,
    )
    .await;
    assert_eq!(error_code(res).await.0, 409);

    // A leak-revoked application an operator then revokes is final too.
    let (twice, twice_secret) = app
        .create_app(json!({"name": "twice", "permissions": ["content:read"]}))
        .await;
    let twice = twice["id"].as_str().unwrap();
    assert_eq!(
        labels(report(&app, &scanner, &json!([found(&twice_secret)])).await).await,
        ["true_positive"]
    );
    let revoked = ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{twice}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["leakedAt"].is_null(), "{revoked}");
    let res = call(
        &app,
        Method::POST,
        &format!("/api/v1/apps/{twice}/rotate"),
        None,
    )
    .await;
    assert_eq!(error_code(res).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_tells_the_story_and_holds_no_token() {
    let app = spawn_app().await;
    let scanner = reporter(&app).await;
    let (victim, secret) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    let token = app.token_for(None, &secret).await;
    let url = format!("https://paste.example/raw?k={secret}");
    let body = json!([
        {"token": token, "url": "https://ci.example/log/1", "source": "build log"},
        {"token": secret, "url": url, "source": "paste"},
        {"token": "nothing of ours", "url": "https://x.example/", "source": "commit"},
    ]);
    let got = labels(report(&app, &scanner, &body).await).await;
    assert_eq!(got, ["true_positive", "true_positive", "false_positive"]);

    let audit = ok(call(&app, Method::GET, "/api/v1/audit", None).await, 200).await;
    let text = audit.to_string();
    assert!(!text.contains(&secret), "the key is in the audit log");
    assert!(!text.contains(&token), "the token is in the audit log");
    let records = audit["data"].as_array().unwrap();
    let one = |action: &str| -> Vec<&Value> {
        records.iter().filter(|r| r["action"] == action).collect()
    };
    let rep = one("leak.report");
    assert_eq!(rep.len(), 1, "{text}");
    assert_eq!(rep[0]["details"]["entries"], 3);
    assert_eq!(rep[0]["details"]["truePositives"], 2);
    assert_eq!(
        rep[0]["details"]["sources"],
        json!(["build log", "paste", "commit"])
    );
    let leaked = one("app.leaked");
    assert_eq!(leaked.len(), 1, "{text}");
    assert_eq!(leaked[0]["target"], id);
    assert_eq!(leaked[0]["details"]["source"], "paste");
    assert_eq!(
        leaked[0]["details"]["url"],
        "https://paste.example/raw?k=<redacted>"
    );
    assert_eq!(leaked[0]["details"]["effect"], "revoked");
    let tok = one("token.leaked");
    assert_eq!(tok.len(), 1, "{text}");
    assert_eq!(tok[0]["target"], id);
    assert_eq!(tok[0]["details"]["url"], "https://ci.example/log/1");
    assert_eq!(
        tok[0]["details"]["jti"],
        claims_of(&token)["jti"].as_str().unwrap()
    );
    // Nor anywhere on disk.
    let dir = app.keys_dir();
    let root = dir.parent().unwrap();
    assert_absent_under(root, &secret);
    assert_absent_under(root, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_bounds_reports_are_refused_whole_in_the_error_shape() {
    let app = spawn_app().await;
    let scanner = reporter(&app).await;
    let (victim, secret) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    let entry = |token: &str, url: &str, source: &str| json!({"token": token, "url": url, "source": source});
    let many: Vec<Value> = (0..101).map(|_| found("x")).collect();
    let mut genuine_first = vec![found(&secret)];
    genuine_first.extend((0..100).map(|_| found("x")));
    let cases = [
        (json!(many), 422, "validation_failed"),
        (json!(genuine_first), 422, "validation_failed"),
        (
            json!([found(&secret), entry(&"t".repeat(8193), "u", "s")]),
            422,
            "validation_failed",
        ),
        (
            json!([found(&secret), entry("t", &"u".repeat(2049), "s")]),
            422,
            "validation_failed",
        ),
        (
            json!([found(&secret), entry("t", "u", &"s".repeat(101))]),
            422,
            "validation_failed",
        ),
        (
            json!([found(&secret), entry("t", "u", "two\nlines")]),
            422,
            "validation_failed",
        ),
        (json!({"token": secret}), 400, "invalid_request"),
        (json!([secret]), 400, "invalid_request"),
        (
            json!([{"token": secret, "url": "u"}]),
            400,
            "invalid_request",
        ),
        (
            json!([{"token": secret, "url": "u", "source": "s", "type": "x"}]),
            400,
            "invalid_request",
        ),
        (
            json!([{"token": 7, "url": "u", "source": "s"}]),
            400,
            "invalid_request",
        ),
    ];
    for (body, want_status, want_code) in cases {
        let res = report(&app, &scanner, &body).await;
        let (status, code, err) = error_code(res).await;
        assert_eq!((status, code.as_str()), (want_status, want_code), "{err}");
        assert!(err["error"]["message"].is_string() && err["error"]["type"].is_string());
        assert!(!err.to_string().contains(&secret), "the key echoed: {err}");
    }
    // Limits hold exactly at the bound.
    let at_bound = json!([entry(
        &"t".repeat(8192),
        &"u".repeat(2048),
        &"s".repeat(100)
    )]);
    assert_eq!(
        labels(report(&app, &scanner, &at_bound).await).await,
        ["false_positive"]
    );
    // An empty report is answered in kind.
    assert!(
        labels(report(&app, &scanner, &json!([])).await)
            .await
            .is_empty()
    );
    // A report over the body limit is a 413, before anything is read.
    let huge: Vec<Value> = (0..100)
        .map(|_| entry(&"t".repeat(8192), "u", "s"))
        .collect();
    let res = report(&app, &scanner, &json!(huge)).await;
    assert_eq!(res.status(), 413);
    // Its body was never read: the connection is closed, and says so.
    assert_eq!(res.headers()["connection"], "close", "{:?}", res.headers());
    // Nothing was revoked by any of them.
    assert_eq!(get_app(&app, id).await["status"], "active");
    assert_eq!(app.exchange(None, &secret).await.status(), 200);
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_leak_reported_to_one_gateway_is_refused_by_the_other() {
    let redis = RedisServer::start();
    // Behind one balancer: one issuer, one Redis, one key ring.
    let (a, b) = pair_on_redis(&redis.url(), "https://auth.leaks.example").await;
    let (victim, secret) = a
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    // B has the key and its token cached.
    assert_eq!(b.exchange(None, &secret).await.status(), 200);
    assert_eq!(forward(&b, &secret).await, 200);
    let (_, leaky) = b
        .create_app(json!({"name": "leaky", "permissions": ["content:read"]}))
        .await;
    let leaky_token = b.token_for(None, &leaky).await;

    let scanner = reporter(&a).await;
    let got = labels(report(&a, &scanner, &json!([found(&secret), found("nope")])).await).await;
    assert_eq!(got, ["true_positive", "false_positive"]);
    let seen = get_app(&b, id).await;
    assert_eq!(seen["status"], "revoked");
    assert!(seen["leakedAt"].is_string(), "{seen}");
    eventually("B refuses the leaked key", async || {
        b.exchange(None, &secret).await.status() == 401 && forward(&b, &secret).await == 401
    })
    .await;
    // A token of B's, reported to A, is refused by B.
    let got = labels(report(&a, &scanner, &json!([found(&leaky_token)])).await).await;
    assert_eq!(got, ["true_positive"]);
    eventually("B refuses the leaked token", async || {
        forward(&b, &leaky_token).await == 401
    })
    .await;
    assert_eq!(b.exchange(None, &leaky).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_leaked_key_and_offers_only_the_rotation() {
    let app = spawn_app().await;
    crate::people::create_user(&app, "ops@example.com", &["api_keys:manage", "content:*"]).await;
    let mut c = crate::console::Console::sign_in(&app, "ops@example.com").await;
    let scanner = reporter(&app).await;
    let (victim, leaked) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = victim["id"].as_str().unwrap();
    let details = format!("/console/apps/{id}");
    let (_, before) = c.page(&details).await;
    assert!(!before.contains("leaked"), "{before}");

    labels(report(&app, &scanner, &json!([found(&leaked)])).await).await;
    let (status, html) = c.page(&details).await;
    assert_eq!(status, 200);
    assert!(html.contains("(revoked: leaked)"), "{html}");
    assert!(html.contains(">Rotate and restore</button>"), "{html}");
    assert!(!html.contains(">Rotate</button>"), "{html}");
    assert!(!html.contains("value=\"3600\""), "no grace offered: {html}");

    let res = c
        .post(&format!("{details}/rotate"), &[("grace", "0")])
        .await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let (_, shown) = c.page(&to).await;
    let at = shown
        .find("id=\"secret\" value=\"")
        .expect("the new secret");
    let new = shown[at + 19..].split('"').next().unwrap().to_owned();
    assert_eq!(app.exchange(None, &new).await.status(), 200);
    assert_eq!(app.exchange(None, &leaked).await.status(), 401);
    let (_, after) = c.page(&details).await;
    assert!(
        after.contains("(active)") && !after.contains("leaked"),
        "{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_admins_secret_is_genuine_but_stays_configuration() {
    let app = spawn_app().await;
    let scanner = reporter(&app).await;
    let got = labels(
        report(
            &app,
            &scanner,
            &json!([
                found(ADMIN_SECRET),
                found("admin-secret-for-tests-0123456788")
            ]),
        )
        .await,
    )
    .await;
    assert_eq!(got, ["true_positive", "false_positive"]);
    // The API never revokes the operator's admin (docs/api.md, "Applications"): the operator
    // must change TESSERA_ADMIN_APP_SECRET; the audit log says so.
    assert_eq!(
        app.exchange(Some(ADMIN_ID), ADMIN_SECRET).await.status(),
        200
    );
    let audit = ok(
        call(&app, Method::GET, "/api/v1/audit?action=app.leaked", None).await,
        200,
    )
    .await;
    let text = audit.to_string();
    assert!(!text.contains(ADMIN_SECRET), "{text}");
    assert_eq!(audit["data"][0]["target"], ADMIN_ID, "{text}");
    assert_eq!(
        audit["data"][0]["details"]["effect"],
        "operatorAdminNotRevoked"
    );
}

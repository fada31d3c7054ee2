//! Names as AppIds (issue 16): application names are unique ignoring case
//! (409 naming the clash, on create and rename, on the embedded store and
//! on Redis), a deleted application's name is free again, `AppId` and
//! `client_id` accept the name, and an unknown name, an unknown id and a
//! wrong secret are answered alike. Bootstrap happens once per store, even
//! when gateways start together on one empty Redis.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::helpers::{
    TEST_KEK, TestApp, call, claims_of, error_code, ok, spawn_app, spawn_on_redis, spawn_with,
};
use crate::redis_server::RedisServer;
use crate::serve::Served;

/// Creates an application named `name` as the admin: the raw response.
async fn create(app: &TestApp, name: &str) -> reqwest::Response {
    call(
        app,
        Method::POST,
        "/api/v1/apps",
        Some(json!({"name": name, "permissions": ["content:read"]})),
    )
    .await
}

/// Creates one, which must succeed: (id, secret).
async fn created(app: &TestApp, name: &str) -> (String, String) {
    let body = ok(create(app, name).await, 201).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// Asserts a 409 `conflict` in the docs/errors.md shape whose message quotes `name`.
async fn assert_name_clash(res: reqwest::Response, name: &str) {
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (409, "conflict"), "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{name:?}")),
        "the clash is named: {message}"
    );
}

async fn rename(app: &TestApp, id: &str, name: &str) -> reqwest::Response {
    call(
        app,
        Method::PATCH,
        &format!("/api/v1/apps/{id}"),
        Some(json!({"name": name})),
    )
    .await
}

/// Names are unique ignoring case on create and rename; a change of case
/// of one's own name is no clash; a rename or a delete frees the name.
async fn names_are_unique(app: &TestApp) {
    let (billing, _) = created(app, "Billing").await;
    for clash in ["Billing", "billing", "BILLING", "  billing "] {
        assert_name_clash(create(app, clash).await, clash.trim()).await;
    }
    let (other, _) = created(app, "reports").await;
    assert_name_clash(rename(app, &other, "bILLING").await, "bILLING").await;
    let kept = ok(
        call(app, Method::GET, &format!("/api/v1/apps/{other}"), None).await,
        200,
    )
    .await;
    assert_eq!(kept["name"], "reports", "a refused rename changes nothing");
    // Its own name in another case is no clash.
    let renamed = ok(rename(app, &other, "Reports").await, 200).await;
    assert_eq!(renamed["name"], "Reports");
    // A rename frees the old name.
    ok(rename(app, &other, "reports-v2").await, 200).await;
    created(app, "REPORTS").await;
    // A delete frees it too.
    ok(
        call(
            app,
            Method::DELETE,
            &format!("/api/v1/apps/{billing}"),
            None,
        )
        .await,
        204,
    )
    .await;
    created(app, "billing").await;
    // Bulk delete as well.
    let (bulk, _) = created(app, "bulk one").await;
    let out = ok(
        call(
            app,
            Method::POST,
            "/api/v1/apps/bulk-delete",
            Some(json!({"ids": [bulk]})),
        )
        .await,
        200,
    )
    .await;
    assert!(out.to_string().contains("deleted"), "{out}");
    created(app, "Bulk One").await;
}

#[tokio::test]
async fn names_are_unique_ignoring_case_on_the_embedded_store() {
    let app = spawn_app().await;
    names_are_unique(&app).await;
    // A name the exchange would read as an id is refused.
    let (status, code, body) = error_code(create(&app, "app_0123456789abcdef").await).await;
    assert_eq!(
        (status, code.as_str()),
        (422, "validation_failed"),
        "{body}"
    );
    assert!(
        body.to_string().contains("form of an application id"),
        "{body}"
    );
    // A name that looks like a secret pasted by mistake is not repeated.
    let pasted = "Q2x9vP0aZ4mLr7TtYb1cWd3eFg5h";
    created(&app, pasted).await;
    let (status, code, body) = error_code(create(&app, pasted).await).await;
    assert_eq!((status, code.as_str()), (409, "conflict"), "{body}");
    assert!(!body.to_string().contains("Q2x9"), "{body}");
    assert_eq!(
        body["error"]["message"],
        "application with that name already exists"
    );
}

#[tokio::test]
async fn names_are_unique_ignoring_case_on_redis_across_gateways() {
    let redis = RedisServer::start();
    let prefix = format!("n{}:", tessera::crypto::random::base62(8).unwrap());
    let a = spawn_on_redis(&redis.url(), &prefix, "http://names.test", None).await;
    let b = spawn_on_redis(
        &redis.url(),
        &prefix,
        "http://names.test",
        Some(a.keys_dir()),
    )
    .await;
    names_are_unique(&a).await;
    // Another gateway on the store sees the same names.
    assert_name_clash(create(&b, "REPORTS").await, "REPORTS").await;
    // Both gateways race to create one name: exactly one wins.
    let (ra, rb) = tokio::join!(create(&a, "Racer"), create(&b, "racer"));
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    // And they exchange by name on either gateway.
    let (id, secret) = created(&a, "Shared Name").await;
    for gw in [&a, &b] {
        let token = gw.token_for(Some("shared name"), &secret).await;
        assert_eq!(claims_of(&token)["sub"], id.as_str());
    }
}

/// `POST /oauth/token` with client credentials; Basic when `basic`.
async fn oauth(app: &TestApp, client_id: &str, secret: &str, basic: bool) -> reqwest::Response {
    let mut req = app.client.post(app.url("/oauth/token"));
    let mut form = vec![("grant_type", "client_credentials".to_owned())];
    if basic {
        req = req.basic_auth(client_id, Some(secret));
    } else {
        form.push(("client_id", client_id.to_owned()));
        form.push(("client_secret", secret.to_owned()));
    }
    req.form(&form).send().await.unwrap()
}

#[tokio::test]
async fn the_name_is_an_app_id_at_both_token_endpoints() {
    let app = spawn_app().await;
    let (id, secret) = created(&app, "Billing Service").await;
    for name in ["Billing Service", "billing service", "BILLING SERVICE"] {
        let token = app.token_for(Some(name), &secret).await;
        let claims = claims_of(&token);
        assert_eq!(claims["sub"], id.as_str(), "the token names the id");
        assert_eq!(claims["client_id"], id.as_str());
        for basic in [true, false] {
            let res = oauth(&app, name, &secret, basic).await;
            assert_eq!(
                res.status(),
                200,
                "basic {basic}: {}",
                res.text().await.unwrap()
            );
            let body: Value = res.json().await.unwrap();
            let token = body["access_token"].as_str().unwrap();
            assert_eq!(claims_of(token)["sub"], id.as_str());
        }
    }
    // The id still works, and so does the secret alone.
    app.token_for(Some(&id), &secret).await;
    app.token_for(None, &secret).await;
    // The configured admin (an operator-chosen id and secret) still works
    // by id, and by its name too.
    app.admin_token().await;
    app.token_for(Some("Bootstrap Admin"), crate::helpers::ADMIN_SECRET)
        .await;
}

/// The (status, body) of a refusal.
async fn refusal(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn unknown_name_unknown_id_wrong_secret_and_revoked_look_alike() {
    // Room for every refusal below within the failure budget.
    let app = spawn_with(|s| s.max_failures_per_ip = 1000).await;
    let (id, secret) = created(&app, "Payments").await;
    let (other_id, other_secret) = created(&app, "Ledger").await;
    // A well-formed id that no application has.
    let unknown_id = format!("app_{}", "Z".repeat(16));
    assert_ne!(unknown_id, id);
    let wrong_opaque = "not-the-secret-0123456789";
    let cases: Vec<(&str, String, String)> = vec![
        ("unknown name", "No Such App".into(), secret.clone()),
        ("unknown id", unknown_id.clone(), secret.clone()),
        (
            "another app's secret by name",
            "payments".into(),
            other_secret.clone(),
        ),
        (
            "another app's secret by id",
            id.clone(),
            other_secret.clone(),
        ),
        (
            "wrong opaque secret by name",
            "payments".into(),
            wrong_opaque.into(),
        ),
        ("wrong opaque secret by id", id.clone(), wrong_opaque.into()),
        (
            "unknown name, opaque secret",
            "No Such App".into(),
            wrong_opaque.into(),
        ),
    ];
    let mut json_answers = Vec::new();
    let mut oauth_answers = Vec::new();
    let mut timings = Vec::new();
    for (what, app_id, s) in &cases {
        json_answers.push((what, refusal(app.exchange(Some(app_id), s).await).await));
        oauth_answers.push((what, refusal(oauth(&app, app_id, s, true).await).await));
        oauth_answers.push((what, refusal(oauth(&app, app_id, s, false).await).await));
        // Time a few more of each.
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let res = app.exchange(Some(app_id), s).await;
            times.push(started.elapsed());
            assert_eq!(res.status(), 401, "{what}");
        }
        times.sort_unstable();
        timings.push((what, times[2]));
    }
    // Revoked, by name: refused like the rest.
    ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{other_id}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;
    json_answers.push((
        &"revoked, by name",
        refusal(app.exchange(Some("LEDGER"), &other_secret).await).await,
    ));
    oauth_answers.push((
        &"revoked, by name",
        refusal(oauth(&app, "ledger", &other_secret, true).await).await,
    ));
    let (first, rest) = json_answers.split_first().unwrap();
    assert_eq!(first.1.0, 401, "{}", first.1.1);
    assert!(first.1.1.contains("invalid_api_key"), "{}", first.1.1);
    for (what, answer) in rest {
        assert_eq!(*answer, first.1, "{what} answers as {}", first.0);
    }
    let (first, rest) = oauth_answers.split_first().unwrap();
    assert_eq!(first.1.0, 401, "{}", first.1.1);
    assert!(first.1.1.contains("invalid_client"), "{}", first.1.1);
    for (what, answer) in rest {
        assert_eq!(*answer, first.1, "{what} answers as {}", first.0);
    }
    // None of them reaches argon2 (tens of milliseconds): their medians
    // stay within a few milliseconds of each other.
    let fastest = timings.iter().map(|t| t.1).min().unwrap();
    let slowest = timings.iter().map(|t| t.1).max().unwrap();
    eprintln!("refusal medians: {timings:?}");
    assert!(
        slowest - fastest < Duration::from_millis(15),
        "refusals take alike: {timings:?}"
    );
    // The genuine one still works, by name.
    app.token_for(Some("PAYMENTS"), &secret).await;
}

/// A `tessera serve` process on a shared Redis, with its data directory.
struct Gateway {
    served: Served,
    _dir: tempfile::TempDir,
}

/// Starts `tessera serve` on the Redis at `url` under `prefix`, with no
/// configured admin and a fresh data directory of its own.
fn serve(url: &str, prefix: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::serve::command(dir.path(), 1);
    cmd.env("TESSERA_ISSUER", "http://once.test")
        .env("TESSERA_REDIS_URL", url)
        .env("TESSERA_REDIS_PREFIX", prefix)
        .env("TESSERA_KEK", TEST_KEK);
    Gateway {
        served: crate::serve::spawn(cmd),
        _dir: dir,
    }
}

#[tokio::test]
async fn gateways_starting_together_on_an_empty_redis_bootstrap_once() {
    let redis = RedisServer::start();
    let prefix = format!("once{}:", tessera::crypto::random::base62(8).unwrap());
    // Started at the same instant, before any has answered.
    let mut gateways: Vec<Gateway> = (0..3).map(|_| serve(&redis.url(), &prefix)).collect();
    let addresses: Vec<String> = gateways.iter_mut().map(|g| g.served.address()).collect();
    let printed: Vec<(String, String)> = gateways
        .iter()
        .filter_map(|g| Some((g.served.printed("AppId:")?, g.served.printed("AppSecret:")?)))
        .collect();
    assert_eq!(
        printed.len(),
        1,
        "exactly one gateway printed an admin: {:?}",
        gateways
            .iter()
            .map(|g| g.served.stdout())
            .collect::<Vec<_>>()
    );
    let (admin_id, admin_secret) = &printed[0];
    // The admin works on every gateway, and the store holds one `*` app.
    let client = reqwest::Client::new();
    for address in &addresses {
        let res = client
            .post(format!("{address}/api/v1/token"))
            .json(&json!({"grantType": "app_token", "AppId": admin_id, "AppSecret": admin_secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{address}");
        let token: Value = res.json().await.unwrap();
        let token = token["accessToken"].as_str().unwrap();
        let list: Value = client
            .get(format!("{address}/api/v1/apps?limit=100"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let apps = list["data"].as_array().unwrap();
        assert_eq!(apps.len(), 1, "{list}");
        assert_eq!(apps[0]["id"], admin_id.as_str());
        assert_eq!(apps[0]["permissions"], json!(["*"]));
    }
    // A restart on the store creates nothing more.
    let mut again = serve(&redis.url(), &prefix);
    again.served.address();
    assert_eq!(again.served.printed("AppSecret:"), None);
}

#[tokio::test]
async fn the_openapi_document_says_names_are_unique_and_stand_for_ids() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    for (path, method) in [("/api/v1/apps", "post"), ("/api/v1/apps/{id}", "patch")] {
        let clash = doc["paths"][path][method]["responses"]["409"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            clash.contains("unique ignoring case"),
            "{method} {path}: {clash}"
        );
    }
    let text = doc.to_string();
    assert!(
        text.contains("The application id, or its name (ignoring case)"),
        "AppId is described"
    );
}

#[tokio::test]
async fn the_console_shows_a_taken_name_on_its_form() {
    let app = spawn_app().await;
    crate::people::create_user(&app, "ops@example.com", &["api_keys:manage", "content:*"]).await;
    created(&app, "Billing").await;
    let mut c = crate::console::Console::sign_in(&app, "ops@example.com").await;
    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "BILLING"),
                ("description", "a second billing"),
                ("type", "secret"),
                ("environment", "live"),
                ("permissions", "content:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 409);
    let html = res.text().await.unwrap();
    assert!(html.contains("application named"), "{html}");
    assert!(html.contains("BILLING"), "the form keeps the input");
    let list = ok(
        call(&app, Method::GET, "/api/v1/apps?q=billing", None).await,
        200,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "nothing created");
}

//! Token exchange over real HTTP: both endpoints, every credential path.

use reqwest::header::WWW_AUTHENTICATE;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_minted_token_verifies_with_the_published_jwks() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read", "content:write"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let res = app.exchange(Some(id), &secret).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 600);
    assert_eq!(body["scope"], "content:read content:write");

    let token = body["accessToken"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(header.kid.is_some());
    let claims = verify_with_jwks(&app.jwks().await, token, &app.address, "tessera").unwrap();
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "roles",
        "permissions",
        "env",
        "key_type",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "claim {claim} missing: {claims}"
        );
    }
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["client_id"], id);
    assert_eq!(claims["env"], "live");
    assert_eq!(claims["key_type"], "secret");
    assert_eq!(
        claims["permissions"],
        json!(["content:read", "content:write"])
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
}

#[tokio::test]
async fn aliases_and_a_key_presented_alone_work() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "app_token", "appId": created["id"], "appSecret": secret}),
        )
        .await;
    assert_eq!(res.status(), 200);
    // The generated key embeds its application: no AppId needed.
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "app_token", "AppSecret": secret}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let token: Value = res.json().await.unwrap();
    assert_eq!(
        claims_of(token["accessToken"].as_str().unwrap())["sub"],
        created["id"]
    );
}

#[tokio::test]
async fn client_credentials_by_basic_and_by_body() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();

    let res = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);

    let res = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", &secret),
            ("scope", "content:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["scope"], "content:read");
    let claims = verify_with_jwks(
        &app.jwks().await,
        body["access_token"].as_str().unwrap(),
        &app.address,
        "tessera",
    )
    .unwrap();
    assert_eq!(claims["sub"], id);
}

#[tokio::test]
async fn oauth_errors_follow_rfc6749() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let post = |form: Vec<(&'static str, String)>| {
        app.client.post(app.url("/oauth/token")).form(&form).send()
    };

    let res = post(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", id.into()),
        ("client_secret", "wrong".into()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get(WWW_AUTHENTICATE).is_some());
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let res = post(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", id.into()),
        ("client_secret", secret.clone()),
        ("scope", "content:write".into()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");

    let res = post(vec![("grant_type", "implicit".into())]).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    // A people grant without a client is a client authentication failure.
    let res = post(vec![("grant_type", "authorization_code".into())])
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let res = post(vec![("client_id", id.into())]).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    let res = post(vec![
        ("grant_type", "client_credentials".into()),
        ("grant_type", "client_credentials".into()),
    ])
    .await
    .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // Two authentication methods at once are refused.
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    let res = post(vec![("grant_type", "client_credentials".into())])
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(!body.to_string().contains(&secret));
}

#[tokio::test]
async fn scope_narrows_and_cannot_widen() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:*"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppId": id, "AppSecret": secret, "scope": "content:read"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["scope"], "content:read");
    assert_eq!(
        claims_of(body["accessToken"].as_str().unwrap())["permissions"],
        json!(["content:read"])
    );

    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppId": id, "AppSecret": secret, "scope": "content:read api_keys:manage"}),
        )
        .await;
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api_keys:manage")
    );
}

#[tokio::test]
async fn unknown_id_and_wrong_secret_are_byte_identical() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": []}))
        .await;
    let id = created["id"].as_str().unwrap();

    let wrong = app.exchange(Some(id), "not-the-secret-at-all").await;
    let unknown = app
        .exchange(Some("app_doesnotexist00"), "not-the-secret-at-all")
        .await;
    let wrong_headers = (
        wrong.status(),
        wrong.headers().get(WWW_AUTHENTICATE).cloned(),
    );
    let unknown_headers = (
        unknown.status(),
        unknown.headers().get(WWW_AUTHENTICATE).cloned(),
    );
    assert_eq!(wrong_headers, unknown_headers);
    assert_eq!(wrong_headers.0, 401);
    let (a, b) = (wrong.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    assert_eq!(a, b);
    let body: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "authentication_error");

    // A revoked application answers exactly the same.
    let admin = app.admin_token().await;
    let res = app
        .authed(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{id}/revoke"),
            &admin,
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked = app.exchange(Some(id), &secret).await;
    assert_eq!(revoked.status(), 401);
    assert_eq!(revoked.bytes().await.unwrap(), a);
}

#[tokio::test]
async fn a_mistyped_key_is_refused_and_never_echoed() {
    let app = spawn_app().await;
    let (_created, secret) = app
        .create_app(json!({"name": "svc", "permissions": []}))
        .await;
    let mut typo = secret.clone().into_bytes();
    let i = typo.len() - 8;
    typo[i] = if typo[i] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let res = app.exchange(None, &typo).await;
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    assert!(!body.to_string().contains(&typo[12..]));

    let res = app
        .post_json("/api/v1/token", &json!({"grantType": "app_token"}))
        .await;
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
}

#[tokio::test]
async fn audience_and_ttl_follow_the_application() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(
            json!({"name": "svc", "permissions": [], "audiences": ["cluster-api"], "tokenTtl": 60}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppId": id, "AppSecret": secret, "audience": "cluster-api"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["expiresIn"], 60);
    let claims = verify_with_jwks(
        &app.jwks().await,
        body["accessToken"].as_str().unwrap(),
        &app.address,
        "cluster-api",
    )
    .unwrap();
    assert_eq!(claims["aud"], "cluster-api");

    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppId": id, "AppSecret": secret, "audience": "admin-api"}),
        )
        .await;
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
}

/// The claims of an application's default token are serialized once per
/// application state (`cache::DefaultToken`): every token still gets its
/// own instants and id, and the next change to the application or to a
/// role it holds shows in the next token.
#[tokio::test]
async fn default_tokens_share_only_what_the_state_fixes() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let res = app
        .authed(reqwest::Method::POST, "/api/v1/roles", &admin)
        .await
        .json(&json!({"name": "r", "permissions": ["content:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (created, secret) = app
        .create_app(json!({
            "name": "svc", "environment": "test", "roles": ["r"],
            "permissions": ["content:write"], "tokenTtl": 300,
            "allowedIps": ["127.0.0.0/8"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]
        }))
        .await;
    let id = created["id"].as_str().unwrap();
    let per_token = ["exp", "iat", "iat_ms", "nbf", "jti"];
    let fixed = |c: &Value| {
        let mut c = c.clone();
        for k in per_token {
            c.as_object_mut().unwrap().remove(k);
        }
        c
    };
    let jwks = app.jwks().await;
    let verified = |t: &str| verify_with_jwks(&jwks, t, &app.address, "tessera").unwrap();
    // The first token is built in full, the next ones from the template.
    let tokens: Vec<Value> = futures_util::future::join_all(
        (0..3).map(|_| async { verified(&app.token_for(Some(id), &secret).await) }),
    )
    .await;
    // A blank scope and audience ask for the default token too, and so does
    // the OAuth endpoint.
    let blank = app
        .post_json(
            "/api/v1/token",
            &json!({"AppSecret": secret, "scope": " \t ", "audience": " "}),
        )
        .await;
    assert_eq!(blank.status(), 200);
    let blank: Value = blank.json().await.unwrap();
    let oauth = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(oauth.status(), 200);
    let oauth: Value = oauth.json().await.unwrap();
    let tokens = [
        tokens,
        vec![
            verified(&app.token_for(None, &secret).await),
            verified(blank["accessToken"].as_str().unwrap()),
            verified(oauth["access_token"].as_str().unwrap()),
        ],
    ]
    .concat();
    for c in &tokens {
        assert_eq!(fixed(c), fixed(&tokens[0]));
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
        assert_eq!(c["nbf"], c["iat"]);
        assert!(c["iat_ms"].as_i64().unwrap() <= c["iat"].as_i64().unwrap() * 1000 + 999);
    }
    let mut ids: Vec<&str> = tokens.iter().map(|c| c["jti"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), tokens.len(), "every token has its own id");
    let c = &tokens[0];
    assert_eq!(c["sub"], id);
    assert_eq!(c["env"], "test");
    assert_eq!(c["roles"], json!(["r"]));
    assert_eq!(c["permissions"], json!(["content:read", "content:write"]));
    assert_eq!(c["scope"], "content:read content:write");
    assert_eq!(c["allowed_cidrs"], json!(["127.0.0.0/8"]));
    assert_eq!(
        c["access"],
        json!([{"scope": "cluster:c1", "permissions": ["workloads:read"]}])
    );

    // A role's change reaches the next token.
    let res = app
        .authed(reqwest::Method::PATCH, "/api/v1/roles/r", &admin)
        .await
        .json(&json!({"permissions": ["content:read", "tokens:introspect"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c = verified(&app.token_for(None, &secret).await);
    assert_eq!(
        c["permissions"],
        json!(["content:read", "content:write", "tokens:introspect"])
    );
    assert_eq!(c["roles"], json!(["r"]));

    // So does the application's.
    let res = app
        .authed(
            reqwest::Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            &admin,
        )
        .await
        .json(&json!({"tokenTtl": 120, "allowedIps": [], "permissions": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let c = verified(&app.token_for(None, &secret).await);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
    assert_eq!(
        c["permissions"],
        json!(["content:read", "tokens:introspect"])
    );
    assert!(c.get("allowed_cidrs").is_none(), "{c}");
}

#[tokio::test]
async fn an_expired_key_says_so_only_after_the_right_secret() {
    let app = spawn_app().await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(2);
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": [], "expiresAt": soon}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.exchange(Some(id), &secret).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (status, code, _) = error_code(app.exchange(Some(id), &secret).await).await;
    assert_eq!((status, code.as_str()), (401, "key_expired"));
    let (status, code, _) = error_code(app.exchange(Some(id), "wrong-secret-here").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_before_hashing() {
    let app = spawn_with(|s| s.max_failures_per_ip = 3).await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": []}))
        .await;
    let id = created["id"].as_str().unwrap();
    // Warm the verified-secret cache first: the owner keeps working.
    assert_eq!(app.exchange(Some(id), &secret).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(
            app.exchange(Some(id), "guess-guess-guess").await.status(),
            401
        );
    }
    let res = app.exchange(Some(id), "guess-guess-guess").await;
    assert!(res.headers().get("retry-after").is_some());
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert_eq!(
        app.exchange(Some(id), &secret).await.status(),
        200,
        "cached secret bypasses the limiter"
    );
}

#[tokio::test]
async fn other_grants_are_named_as_unsupported() {
    let app = spawn_app().await;
    for grant in ["client_credentials", "authorization_code", "implicit"] {
        let res = app
            .post_json("/api/v1/token", &json!({"grantType": grant}))
            .await;
        let (status, code, _) = error_code(res).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "unsupported_grant_type"),
            "{grant}"
        );
    }
    // The password grant lives on the JSON endpoint only.
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "a@b.c"),
            ("password", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
}

async fn verifications(app: &TestApp) -> u64 {
    let admin = app.admin_token().await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("tessera_secret_verifications_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_requests_share_one_argon2_run() {
    let app = spawn_app().await;
    let (created, secret) = app.create_app(json!({"name": "herd"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let before = verifications(&app).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url, secret) = (app.client.clone(), app.url("/api/v1/token"), secret.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"AppSecret": secret}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        verifications(&app).await - before,
        1,
        "one argon2 run for 16 identical first requests"
    );

    // Wrong secrets share too, for a known id and an unknown one alike, so
    // N copies of a request reveal nothing about whether the id exists.
    for who in [id.as_str(), "app_nosuchapp00000"] {
        let before = verifications(&app).await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, url, who) = (app.client.clone(), app.url("/api/v1/token"), who.to_owned());
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"AppId": who, "AppSecret": "not-the-secret-at-all"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 401);
        }
        let runs = verifications(&app).await - before;
        assert!(
            runs <= 12,
            "{who}: {runs} argon2 runs for 16 identical requests (16 without sharing)"
        );
    }
}

/// The cold path under concurrency: the first exchanges of many distinct
/// applications at once each need their own argon2 run, and each answer is
/// a token for the application that asked, with its own permissions (a
/// mix-up in the hashing pool or the caches would hand out another's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_exchanges_of_distinct_applications_at_once_each_get_their_own_token() {
    let app = spawn_app().await;
    let perms = ["api_keys:read", "tokens:introspect", "tokens:revoke"];
    let mut made = Vec::new();
    for i in 0..12 {
        let perm = perms[i % perms.len()];
        let (created, secret) = app
            .create_app(json!({"name": format!("cold-{i}"), "permissions": [perm]}))
            .await;
        made.push((created["id"].as_str().unwrap().to_owned(), secret, perm));
    }
    let before = verifications(&app).await;
    let mut tasks = Vec::new();
    for (id, secret, perm) in made.clone() {
        let (client, url) = (app.client.clone(), app.url("/oauth/token"));
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id.as_str()),
                    ("client_secret", secret.as_str()),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{id}");
            let body: Value = res.json().await.unwrap();
            (id, perm, body["access_token"].as_str().unwrap().to_owned())
        }));
    }
    for t in tasks {
        let (id, perm, token) = t.await.unwrap();
        let claims = claims_of(&token);
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["client_id"], id.as_str());
        assert_eq!(claims["permissions"], json!([perm]), "{id}");
    }
    assert_eq!(
        verifications(&app).await - before,
        12,
        "one argon2 run per application"
    );
}

/// `/api/v1/token` reads its body straight into its request type for speed;
/// a body that does not fit still gets an answer naming the field, as
/// every other endpoint's does, and repeated keys are still refused.
#[tokio::test]
async fn a_token_request_that_does_not_fit_names_the_field() {
    let app = spawn_app().await;
    for (body, field, what) in [
        (r#"{"AppSecret": 5}"#, "AppSecret", "string"),
        (
            r#"{"AppSecret": "tsr_one", "AppSecret": "tsr_two"}"#,
            "AppSecret",
            "more than once",
        ),
        (r#"["tsr_one"]"#, "JSON object", "must be"),
        (r#"{"AppSecret": "tsr_one""#, "not valid JSON", ""),
    ] {
        let res = app
            .client
            .post(app.url("/api/v1/token"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let v: Value = res.json().await.unwrap();
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) && message.contains(what),
            "{body}: {message}"
        );
        assert!(!message.contains("tsr_"), "{body}: echoed {message}");
    }
    // The fast path still takes what fits.
    let (_, secret) = app.create_app(json!({"name": "fits"})).await;
    let res = app
        .client
        .post(app.url("/api/v1/token"))
        .json(&json!({"grantType": "app_token", "AppSecret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

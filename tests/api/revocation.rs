//! Revocation, introspection and the feed, on one gateway.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

async fn form(
    app: &TestApp,
    path: &str,
    id: &str,
    secret: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut f: Vec<(&str, &str)> = vec![("client_id", id), ("client_secret", secret)];
    f.extend_from_slice(fields);
    app.client
        .post(app.url(path))
        .form(&f)
        .send()
        .await
        .unwrap()
}

async fn active(app: &TestApp, introspector: (&str, &str), token: &str) -> bool {
    let res = form(
        app,
        "/oauth/introspect",
        introspector.0,
        introspector.1,
        &[("token", token)],
    )
    .await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["active"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn introspection_sees_revocation_and_refuses_strangers() {
    let app = spawn_app().await;
    let (svc, svc_secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let svc_id = svc["id"].as_str().unwrap().to_owned();
    let (intro, intro_secret) = app
        .create_app(json!({"name": "introspector", "permissions": ["tokens:introspect"]}))
        .await;
    let intro = (intro["id"].as_str().unwrap().to_owned(), intro_secret);
    let who = (intro.0.as_str(), intro.1.as_str());

    let token = app.token_for(None, &svc_secret).await;
    let res = form(
        &app,
        "/oauth/introspect",
        who.0,
        who.1,
        &[("token", &token)],
    )
    .await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], svc_id.as_str());
    assert_eq!(body["scope"], "content:read");
    assert_eq!(body["token_type"], "Bearer");

    for junk in ["garbage", "a.b.c", ""] {
        assert!(!active(&app, who, junk).await, "{junk:?}");
    }
    // A token from another gateway (another key ring) is not ours.
    let other = spawn_app().await;
    let foreign = other.admin_token().await;
    assert!(!active(&app, who, &foreign).await);

    // The owner revokes its own token.
    let res = form(
        &app,
        "/oauth/revoke",
        &svc_id,
        &svc_secret,
        &[("token", &token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(!active(&app, who, &token).await);
    // Unknown tokens are fine to "revoke" (RFC 7009 §2.2).
    assert_eq!(
        form(
            &app,
            "/oauth/revoke",
            &svc_id,
            &svc_secret,
            &[("token", "nonsense")]
        )
        .await
        .status(),
        200
    );

    // Introspection needs tokens:introspect.
    let res = form(
        &app,
        "/oauth/introspect",
        &svc_id,
        &svc_secret,
        &[("token", &token)],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );
    let res = form(
        &app,
        "/oauth/introspect",
        &svc_id,
        "wrong",
        &[("token", &token)],
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("www-authenticate").is_some());
}

#[tokio::test]
async fn only_holders_of_tokens_revoke_may_revoke_others_tokens() {
    let app = spawn_app().await;
    let (a, a_secret) = app
        .create_app(json!({"name": "a", "permissions": ["api_keys:read"]}))
        .await;
    let (b, b_secret) = app.create_app(json!({"name": "b"})).await;
    let (_r, r_secret) = app
        .create_app(json!({"name": "revoker", "permissions": ["tokens:revoke"]}))
        .await;
    let a_token = app.token_for(None, &a_secret).await;
    assert_eq!(
        app.authed(Method::GET, "/api/v1/apps", &a_token)
            .await
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let res = form(
        &app,
        "/oauth/revoke",
        b["id"].as_str().unwrap(),
        &b_secret,
        &[("token", &a_token)],
    )
    .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    assert_eq!(
        app.authed(Method::GET, "/api/v1/apps", &a_token)
            .await
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "nothing revoked"
    );

    // A bearer token with tokens:revoke works too.
    let revoker = app.token_for(None, &r_secret).await;
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .bearer_auth(&revoker)
        .form(&[("token", &a_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .authed(Method::GET, "/api/v1/apps", &a_token)
        .await
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    // Other tokens of the same application live on.
    let fresh = app
        .token_for(Some(a["id"].as_str().unwrap()), &a_secret)
        .await;
    assert_eq!(
        app.authed(Method::GET, "/api/v1/apps", &fresh)
            .await
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn revoking_an_application_kills_every_token_it_minted_and_feeds_it() {
    let app = spawn_app().await;
    let (_i, intro_secret) = app
        .create_app(json!({"name": "verifier", "permissions": ["tokens:introspect"]}))
        .await;
    let intro_token = app.token_for(None, &intro_secret).await;
    let feed = |since: Option<String>| {
        let mut path = "/api/v1/revocations".to_owned();
        if let Some(s) = since {
            path.push_str(&format!("?since={s}"));
        }
        app.client
            .get(app.url(&path))
            .bearer_auth(&intro_token)
            .send()
    };
    let first: Value = feed(None).await.unwrap().json().await.unwrap();
    assert_eq!(first["snapshot"], true);
    let cursor = first["cursor"].as_str().unwrap().to_owned();

    let (svc, secret) = app.create_app(json!({"name": "svc"})).await;
    let id = svc["id"].as_str().unwrap();
    let t1 = app.token_for(None, &secret).await;
    let t2 = app.token_for(None, &secret).await;
    let admin = app.admin_token().await;
    let res = app
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for t in [&t1, &t2] {
        let res = app
            .client
            .post(app.url("/oauth/introspect"))
            .bearer_auth(&intro_token)
            .form(&[("token", t.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.json::<Value>().await.unwrap()["active"], false);
    }

    let page: Value = feed(Some(cursor.clone()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["snapshot"], false);
    let entries = page["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["type"] == "subject" && e["sub"] == id),
        "{page}"
    );
    let e = entries.iter().find(|e| e["sub"] == id).unwrap();
    assert!(e["expiresAt"].as_i64().unwrap() <= chrono::Utc::now().timestamp() + 600 + 30 + 1);
    let next: Value = feed(page["cursor"].as_str().map(str::to_owned))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(next["entries"].as_array().unwrap().is_empty());
    let stale: Value = feed(Some("not-a-cursor".into()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stale["snapshot"], true);
    assert!(!stale["entries"].as_array().unwrap().is_empty());

    // The feed needs tokens:introspect.
    let (_p, plain) = app.create_app(json!({"name": "plain"})).await;
    let plain = app.token_for(None, &plain).await;
    let res = app
        .client
        .get(app.url("/api/v1/revocations"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn rotation_without_grace_kills_old_tokens_not_new_ones() {
    let app = spawn_app().await;
    let (svc, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["api_keys:read"]}))
        .await;
    let id = svc["id"].as_str().unwrap();
    let old_token = app.token_for(None, &secret).await;
    let admin = app.admin_token().await;
    let res = app
        .authed(Method::POST, &format!("/api/v1/apps/{id}/rotate"), &admin)
        .await
        .send()
        .await
        .unwrap();
    let new_secret = res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // Minted within the same second as the rotation, after it.
    let new_token = app.token_for(None, &new_secret).await;
    let res = app
        .authed(Method::GET, "/api/v1/apps", &old_token)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .authed(Method::GET, "/api/v1/apps", &new_token)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

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
    assert!(body.get("access").is_none() && body.get("allowed_cidrs").is_none());

    // Access rules and an IP allow-list reach the resource server, under
    // the token's own claim names.
    let (fenced, fenced_secret) = app
        .create_app(
            json!({"name": "fenced", "allowedIps": ["127.0.0.1", "10.0.0.0/8"],
            "accessRules": [{"scope": "cluster:c1/project:*", "permissions": ["workloads:read"]}]}),
        )
        .await;
    let fenced_token = app
        .token_for(Some(fenced["id"].as_str().unwrap()), &fenced_secret)
        .await;
    let claims = claims_of(&fenced_token);
    let body: Value = form(
        &app,
        "/oauth/introspect",
        who.0,
        who.1,
        &[("token", &fenced_token)],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(
        body["access"],
        json!([{"scope": "cluster:c1/project:*", "permissions": ["workloads:read"]}])
    );
    assert_eq!(body["access"], claims["access"]);
    assert_eq!(body["allowed_cidrs"], claims["allowed_cidrs"]);
    let cidrs = body["allowed_cidrs"].as_array().unwrap();
    assert_eq!(cidrs.len(), 2);
    assert!(cidrs.contains(&json!("127.0.0.1/32")) && cidrs.contains(&json!("10.0.0.0/8")));

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
    // The token lifetime, the leeway and the longest an application
    // snapshot may be minted from.
    let max_state_age = tessera::service::revocation::MAX_STATE_AGE_SECS;
    assert!(
        e["expiresAt"].as_i64().unwrap()
            <= chrono::Utc::now().timestamp() + 600 + 30 + max_state_age + 1
    );
    assert!(
        e["expiresAt"].as_i64().unwrap()
            >= chrono::Utc::now().timestamp() + 600 + 30 + max_state_age - 5
    );
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

/// Reads the feed from `cursor` to its end; returns the entries and the
/// cursor to continue from.
async fn read_feed(app: &TestApp, token: &str, cursor: Option<&str>) -> (Vec<Value>, String) {
    let mut cursor = cursor.map(str::to_owned);
    let mut entries = Vec::new();
    for _ in 0..1000 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/revocations?since={c}"),
            None => "/api/v1/revocations".to_owned(),
        };
        let page: Value = app
            .authed(Method::GET, &path, token)
            .await
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        cursor = Some(page["cursor"].as_str().unwrap().to_owned());
        if page["more"] == false {
            return (entries, cursor.unwrap());
        }
        assert_eq!(page["more"], true, "{page}");
    }
    panic!("the feed never ended");
}

async fn revoke_as(app: &TestApp, id: &str, secret: &str, token: &str) -> reqwest::Response {
    form(app, "/oauth/revoke", id, secret, &[("token", token)]).await
}

#[tokio::test]
async fn revoking_the_same_token_fifty_times_adds_one_entry() {
    let app = spawn_app().await;
    let (_i, intro_secret) = app
        .create_app(json!({"name": "verifier", "permissions": ["tokens:introspect"]}))
        .await;
    let intro = app.token_for(None, &intro_secret).await;
    let (svc, secret) = app.create_app(json!({"name": "svc"})).await;
    let id = svc["id"].as_str().unwrap();
    let token = app.token_for(None, &secret).await;
    let (_, before) = read_feed(&app, &intro, None).await;

    for _ in 0..50 {
        assert_eq!(revoke_as(&app, id, &secret, &token).await.status(), 200);
    }
    let (grown, after) = read_feed(&app, &intro, Some(&before)).await;
    assert_eq!(grown.len(), 1, "{grown:?}");
    assert_eq!(grown[0]["jti"], claims_of(&token)["jti"]);

    // A token whose application is revoked needs no entry of its own.
    let other = app.token_for(None, &secret).await;
    let admin = app.admin_token().await;
    let res = app
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .bearer_auth(&admin)
        .form(&[("token", other.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (grown, _) = read_feed(&app, &intro, Some(&after)).await;
    assert_eq!(grown.len(), 1, "only the subject entry: {grown:?}");
    assert_eq!(grown[0]["type"], "subject");
}

#[tokio::test]
async fn a_client_revoking_beyond_its_allowance_gets_429() {
    let app = spawn_app().await;
    let (svc, secret) = app.create_app(json!({"name": "svc"})).await;
    let id = svc["id"].as_str().unwrap();
    let allowance = tessera::service::revocation::REVOCATIONS_PER_WINDOW;
    let mut tokens = Vec::new();
    for _ in 0..=allowance {
        tokens.push(app.token_for(None, &secret).await);
    }
    for t in &tokens[..allowance as usize] {
        assert_eq!(revoke_as(&app, id, &secret, t).await.status(), 200);
    }
    let res = revoke_as(&app, id, &secret, &tokens[allowance as usize]).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].is_string());
    assert!(!body.to_string().contains(&tokens[allowance as usize]));

    // Repeating a revocation adds nothing, so it is still answered; the
    // token refused is still live; another client has its own allowance.
    assert_eq!(revoke_as(&app, id, &secret, &tokens[0]).await.status(), 200);
    let res = app
        .authed(
            Method::GET,
            "/api/v1/permissions",
            &tokens[allowance as usize],
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "not revoked");
    let (other, other_secret) = app.create_app(json!({"name": "other"})).await;
    let mine = app.token_for(None, &other_secret).await;
    assert_eq!(
        revoke_as(&app, other["id"].as_str().unwrap(), &other_secret, &mine)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn feed_pages_honour_limit_and_say_whether_more_remains() {
    let app = spawn_app().await;
    let (_i, intro_secret) = app
        .create_app(json!({"name": "verifier", "permissions": ["tokens:introspect"]}))
        .await;
    let intro = app.token_for(None, &intro_secret).await;
    let (svc, secret) = app.create_app(json!({"name": "svc"})).await;
    let id = svc["id"].as_str().unwrap();
    for _ in 0..3 {
        let t = app.token_for(None, &secret).await;
        assert_eq!(revoke_as(&app, id, &secret, &t).await.status(), 200);
    }
    let get = |path: String| {
        let app = &app;
        let intro = &intro;
        async move {
            let res = app
                .authed(Method::GET, &path, intro)
                .await
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };

    // A fresh cursor: a snapshot, one entry at a time.
    let first = get("/api/v1/revocations?limit=1".into()).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(
        (&first["snapshot"], &first["reset"], &first["more"]),
        (&json!(true), &json!(true), &json!(true))
    );
    let mut seen = first["entries"].as_array().unwrap().clone();
    let mut cursor = first["cursor"].as_str().unwrap().to_owned();
    loop {
        let page = get(format!("/api/v1/revocations?since={cursor}&limit=1")).await;
        assert!(page["entries"].as_array().unwrap().len() <= 1, "{page}");
        assert_eq!(page["reset"], false, "the snapshot continues");
        seen.extend(page["entries"].as_array().unwrap().iter().cloned());
        cursor = page["cursor"].as_str().unwrap().to_owned();
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let whole = get("/api/v1/revocations".into()).await;
    assert_eq!(whole["entries"].as_array().unwrap(), &seen);
    assert_eq!(whole["more"], false);

    // Increments are paged the same way.
    let t = app.token_for(None, &secret).await;
    revoke_as(&app, id, &secret, &t).await;
    let t = app.token_for(None, &secret).await;
    revoke_as(&app, id, &secret, &t).await;
    let page = get(format!("/api/v1/revocations?since={cursor}&limit=1")).await;
    assert_eq!(page["snapshot"], false);
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["more"], true);
    let c = page["cursor"].as_str().unwrap();
    let page = get(format!("/api/v1/revocations?since={c}&limit=1")).await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["more"], false);

    for bad in ["0", "10001"] {
        let res = app
            .authed(
                Method::GET,
                &format!("/api/v1/revocations?limit={bad}"),
                &intro,
            )
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{bad}");
    }
}

//! Rotation, deletion, PATCH, IP allow-lists, usage figures.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_period_only() {
    let app = spawn_app().await;
    let (created, old) = app
        .create_app(json!({"name": "svc", "permissions": []}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.exchange(None, &old).await.status(),
        200,
        "warm the caches"
    );

    let res = call(
        &app,
        Method::POST,
        &format!("/api/v1/apps/{id}/rotate"),
        Some(json!({"gracePeriodSeconds": 2})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let new = body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with(body["prefix"].as_str().unwrap()));

    assert_eq!(app.exchange(None, &new).await.status(), 200);
    assert_eq!(
        app.exchange(Some(id), &old).await.status(),
        200,
        "old secret within grace"
    );
    let got = call(&app, Method::GET, &format!("/api/v1/apps/{id}"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!got.contains(&new) && !got.contains(&old));

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (status, code, _) = error_code(app.exchange(Some(id), &old).await).await;
    assert_eq!(
        (status, code.as_str()),
        (401, "invalid_api_key"),
        "old secret after grace"
    );
    assert_eq!(app.exchange(None, &new).await.status(), 200);

    // Without a grace period the old secret stops at once, even when cached.
    let res = call(
        &app,
        Method::POST,
        &format!("/api/v1/apps/{id}/rotate"),
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let newer = res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.exchange(None, &new).await.status(), 401);
    assert_eq!(app.exchange(None, &newer).await.status(), 200);

    let res = call(
        &app,
        Method::POST,
        &format!("/api/v1/apps/{id}/rotate"),
        Some(json!({"gracePeriodSeconds": 604_801})),
    )
    .await;
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    assert_eq!(
        app.exchange(None, &newer).await.status(),
        200,
        "a refused rotation changes nothing"
    );
    let res = call(
        &app,
        Method::POST,
        &format!("/api/v1/apps/{ADMIN_ID}/rotate"),
        None,
    )
    .await;
    assert_eq!(res.status(), 409);
    let res = call(&app, Method::POST, "/api/v1/apps/app_unknown/rotate", None).await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn delete_and_bulk_delete_take_effect_at_once() {
    let app = spawn_app().await;
    let (a, a_secret) = app.create_app(json!({"name": "a"})).await;
    let (b, _) = app.create_app(json!({"name": "b"})).await;
    let (c, c_secret) = app.create_app(json!({"name": "c"})).await;
    assert_eq!(app.exchange(None, &a_secret).await.status(), 200);
    let a_id = a["id"].as_str().unwrap();

    let res = call(&app, Method::DELETE, &format!("/api/v1/apps/{a_id}"), None).await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.exchange(None, &a_secret).await.status(), 401);
    assert_eq!(
        call(&app, Method::GET, &format!("/api/v1/apps/{a_id}"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        call(&app, Method::DELETE, &format!("/api/v1/apps/{a_id}"), None)
            .await
            .status(),
        404
    );

    let res = call(
        &app,
        Method::POST,
        "/api/v1/apps/bulk-delete",
        Some(json!({"ids": [b["id"], "app_nope", c["id"]]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["results"],
        json!([
            {"id": b["id"], "result": "deleted"},
            {"id": "app_nope", "result": "not_found"},
            {"id": c["id"], "result": "deleted"}
        ])
    );
    assert_eq!(app.exchange(None, &c_secret).await.status(), 401);
    let res = call(
        &app,
        Method::POST,
        "/api/v1/apps/bulk-delete",
        Some(json!({"ids": []})),
    )
    .await;
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn patch_is_all_or_nothing_and_applies_to_new_tokens() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/apps/{id}");

    let res = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"name": "renamed", "allowedIps": ["not-an-ip"]})),
    )
    .await;
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not-an-ip")
    );
    let res = call(
        &app,
        Method::PATCH,
        &path,
        Some(json!({"name": "renamed", "permissions": ["content:read", "nope:nope"]})),
    )
    .await;
    assert_eq!(res.status(), 422);
    let got: Value = call(&app, Method::GET, &path, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "svc", "nothing written on a bad field");

    let soon = chrono::Utc::now() + chrono::Duration::days(1);
    let res = call(&app, Method::PATCH, &path, Some(json!({"name": "renamed", "permissions": ["content:read", "content:write"], "expiresAt": soon}))).await;
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["name"], "renamed");
    assert!(got["expiresAt"].is_string());
    let token = app.token_for(None, &secret).await;
    assert_eq!(
        claims_of(&token)["permissions"],
        json!(["content:read", "content:write"])
    );

    let res = call(&app, Method::PATCH, &path, Some(json!({"expiresAt": null}))).await;
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await.unwrap()["expiresAt"].is_null());
    let res = call(&app, Method::PATCH, &path, Some(json!({"secret": "x"}))).await;
    assert_eq!(res.status(), 400, "unknown fields are refused");
    let res = call(
        &app,
        Method::PATCH,
        "/api/v1/apps/app_nope",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn the_ip_allow_list_is_enforced_and_carried_in_tokens() {
    let app = spawn_app().await;
    let (far, far_secret) = app
        .create_app(json!({"name": "far", "allowedIps": ["10.0.0.0/8", "2001:db8::/32"]}))
        .await;
    assert_eq!(far["allowedIps"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    let res = app.exchange(None, &far_secret).await;
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (403, "ip_not_allowed"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{body}"
    );
    // Forwarding headers from an untrusted peer change nothing.
    let res = app
        .client
        .post(app.url("/api/v1/token"))
        .header("x-forwarded-for", "10.1.2.3")
        .json(&json!({"AppSecret": far_secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let (_near, near_secret) = app
        .create_app(json!({"name": "near", "allowedIps": ["127.0.0.1"]}))
        .await;
    let token = app.token_for(None, &near_secret).await;
    assert_eq!(claims_of(&token)["allowed_cidrs"], json!(["127.0.0.1/32"]));
    let open = app.admin_token().await;
    assert!(claims_of(&open).get("allowed_cidrs").is_none());
}

#[tokio::test]
async fn usage_figures_appear_within_seconds() {
    let app = spawn_app().await;
    let (created, secret) = app.create_app(json!({"name": "svc"})).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["useCount"], 0);
    assert!(created["lastUsedAt"].is_null());
    for _ in 0..3 {
        assert_eq!(app.exchange(None, &secret).await.status(), 200);
    }
    assert_eq!(
        app.exchange(Some(id), "wrong-wrong-wrong").await.status(),
        401
    );
    let mut got = Value::Null;
    for _ in 0..50 {
        got = call(&app, Method::GET, &format!("/api/v1/apps/{id}"), None)
            .await
            .json()
            .await
            .unwrap();
        if got["useCount"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got["useCount"], 3, "{got}");
    assert_eq!(got["lastUsedIp"], "127.0.0.1");
    assert!(got["lastUsedAt"].is_string());
    let list: Value = call(&app, Method::GET, "/api/v1/apps", None)
        .await
        .json()
        .await
        .unwrap();
    let row = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap();
    assert_eq!(row["useCount"], 3);
}

#[tokio::test]
async fn test_keys_never_reach_live_only_audiences() {
    let app = spawn_with(|s| s.live_audiences = vec!["payments".into()]).await;
    let res = call(
        &app,
        Method::POST,
        "/api/v1/apps",
        Some(json!({"name": "t", "environment": "test", "audiences": ["payments"]})),
    )
    .await;
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    let (_live, live_secret) = app
        .create_app(json!({"name": "l", "environment": "live", "audiences": ["payments"]}))
        .await;
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppSecret": live_secret, "audience": "payments"}),
        )
        .await;
    assert_eq!(res.status(), 200);
}

//! `/api/v1/apps` over real HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn create_shows_the_secret_once() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "billing", "description": "nightly jobs", "type": "secret", "environment": "test", "permissions": ["content:read"]}))
        .await;
    assert!(secret.starts_with("tsr_sk_test_"), "{secret}");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("app_"));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    for field in [
        "name",
        "description",
        "owner",
        "type",
        "environment",
        "prefix",
        "permissions",
        "createdAt",
        "updatedAt",
        "status",
    ] {
        assert!(created.get(field).is_some(), "{field} missing: {created}");
    }
    assert_eq!(created["status"], "active");
    assert_eq!(created["environment"], "test");
    assert_eq!(created["type"], "secret");

    let admin = app.admin_token().await;
    let res = app
        .authed(Method::GET, &format!("/api/v1/apps/{id}"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&secret), "GET shows the secret");
    assert!(!text.contains("argon2"), "GET shows the hash");
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["name"], "billing");
    assert!(got.get("secret").is_none());

    let res = app
        .authed(Method::GET, "/api/v1/apps", &admin)
        .await
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(!text.contains(&secret), "the list shows the secret");

    // The new key works on its own.
    let token = app.token_for(None, &secret).await;
    assert_eq!(claims_of(&token)["env"], "test");
}

#[tokio::test]
async fn list_pages_with_an_opaque_cursor_and_filters() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let env = if i % 2 == 0 { "live" } else { "test" };
        let (c, _) = app
            .create_app(json!({"name": format!("app {i}"), "environment": env}))
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/apps?limit=2&environment=test".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let res = app
            .authed(Method::GET, &path, &admin)
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        for a in page["data"].as_array().unwrap() {
            assert_eq!(a["environment"], "test");
            seen.push(a["id"].as_str().unwrap().to_owned());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec![ids[1].clone(), ids[3].clone()]);

    let res = app
        .authed(Method::GET, "/api/v1/apps?limit=0", &admin)
        .await
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    let res = app
        .authed(Method::GET, "/api/v1/apps?cursor=%%%", &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .authed(Method::GET, "/api/v1/apps?environment=prod", &admin)
        .await
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
}

#[tokio::test]
async fn unknown_permissions_are_named_and_nothing_is_written() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let res = app
        .authed(Method::POST, "/api/v1/apps", &admin)
        .await
        .json(&json!({"name": "x", "permissions": ["content:read", "rockets:launch"]}))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rockets:launch")
    );
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let res = app
        .authed(Method::GET, "/api/v1/apps", &admin)
        .await
        .send()
        .await
        .unwrap();
    let page: Value = res.json().await.unwrap();
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        1,
        "only the admin exists"
    );

    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "tokenTtl": 100000}),
        json!({"name": "x", "type": "public", "permissions": ["content:write"]}),
        json!({"name": "x", "type": "public", "permissions": ["content:*"]}),
    ] {
        let res = app
            .authed(Method::POST, "/api/v1/apps", &admin)
            .await
            .json(&bad)
            .send()
            .await
            .unwrap();
        let (status, code, _) = error_code(res).await;
        assert_eq!((status, code.as_str()), (422, "validation_failed"), "{bad}");
    }
}

#[tokio::test]
async fn a_public_key_holds_public_permissions() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "browser", "type": "public", "permissions": ["content:read"]}))
        .await;
    assert_eq!(created["type"], "public");
    assert!(secret.starts_with("tsr_pk_live_"));
    let token = app.token_for(None, &secret).await;
    assert_eq!(claims_of(&token)["key_type"], "public");
}

#[tokio::test]
async fn admin_endpoints_need_the_right_permission() {
    let app = spawn_app().await;
    let (_reader, reader_secret) = app
        .create_app(json!({"name": "reader", "permissions": ["api_keys:read"]}))
        .await;
    let (_plain, plain_secret) = app
        .create_app(json!({"name": "plain", "permissions": ["content:read"]}))
        .await;
    let reader = app.token_for(None, &reader_secret).await;
    let plain = app.token_for(None, &plain_secret).await;

    let res = app
        .authed(Method::GET, "/api/v1/apps", &reader)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .authed(Method::POST, "/api/v1/apps", &reader)
        .await
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
    assert_eq!(body["error"]["type"], "authorization_error");
    let res = app
        .authed(Method::GET, "/api/v1/apps", &plain)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Any valid token reads the catalogue.
    let res = app
        .authed(Method::GET, "/api/v1/permissions", &plain)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cat: Value = res.json().await.unwrap();
    let names: Vec<&str> = cat["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"content:read") && names.contains(&"api_keys:manage"));

    let res = app
        .client
        .get(app.url("/api/v1/apps"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("www-authenticate").is_some());
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    let res = app
        .authed(Method::GET, "/api/v1/apps", "not.a.token")
        .await
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
}

#[tokio::test]
async fn nobody_grants_what_they_do_not_hold() {
    let app = spawn_app().await;
    let (_m, manager_secret) = app
        .create_app(json!({"name": "manager", "permissions": ["api_keys:manage", "content:read"]}))
        .await;
    let manager = app.token_for(None, &manager_secret).await;
    let res = app
        .authed(Method::POST, "/api/v1/apps", &manager)
        .await
        .json(&json!({"name": "x", "permissions": ["*"]}))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
    assert!(body["error"]["message"].as_str().unwrap().contains('*'));
    let res = app
        .authed(Method::POST, "/api/v1/apps", &manager)
        .await
        .json(&json!({"name": "x", "permissions": ["content:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

#[tokio::test]
async fn revoke_takes_effect_at_once_for_secret_and_tokens() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["api_keys:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    // Warm every cache on the way: the token, the verified secret.
    let token = app.token_for(Some(id), &secret).await;
    assert_eq!(
        app.authed(Method::GET, "/api/v1/apps", &token)
            .await
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let admin = app.admin_token().await;
    let res = app
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "revoked");
    assert!(body["revokedAt"].is_string());

    let (status, code, _) = error_code(app.exchange(Some(id), &secret).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    let res = app
        .authed(Method::GET, "/api/v1/apps", &token)
        .await
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));

    // Revoking again is harmless; unknown ids are 404.
    let res = app
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .authed(Method::POST, "/api/v1/apps/app_nope/revoke", &admin)
        .await
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let res = app
        .authed(Method::GET, "/api/v1/apps/app_nope", &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

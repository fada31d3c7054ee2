//! Roles, users, the owner bound, access rules and the audit log.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn roles_expand_into_tokens_and_changes_apply_to_new_ones() {
    let app = spawn_app().await;
    let role = ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "editor", "permissions": ["content:read"]})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(role["name"], "editor");
    let (created, secret) = app
        .create_app(json!({"name": "svc", "roles": ["editor"]}))
        .await;
    assert_eq!(created["roles"], json!(["editor"]));
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(claims["roles"], json!(["editor"]));
    assert_eq!(claims["permissions"], json!(["content:read"]));

    ok(
        call(
            &app,
            Method::PATCH,
            "/api/v1/roles/editor",
            Some(json!({"permissions": ["content:read", "content:write"]})),
        )
        .await,
        200,
    )
    .await;
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(
        claims["permissions"],
        json!(["content:read", "content:write"])
    );

    let res = call(
        &app,
        Method::POST,
        "/api/v1/apps",
        Some(json!({"name": "x", "roles": ["ghost"]})),
    )
    .await;
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (422, "validation_failed"));
    assert!(body["error"]["message"].as_str().unwrap().contains("ghost"));
    let res = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        Some(json!({"name": "editor"})),
    )
    .await;
    assert_eq!(res.status(), 409);
    let res = call(
        &app,
        Method::POST,
        "/api/v1/roles",
        Some(json!({"name": "bad", "permissions": ["rockets:fly"]})),
    )
    .await;
    assert_eq!(res.status(), 422);

    // Held: refused; detached: removed from its holders in one step.
    let res = call(&app, Method::DELETE, "/api/v1/roles/editor", None).await;
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert_eq!(
        claims_of(&app.token_for(None, &secret).await)["roles"],
        json!(["editor"])
    );
    let res = call(
        &app,
        Method::DELETE,
        "/api/v1/roles/editor?detach=true",
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(claims["roles"], json!([]));
    assert_eq!(claims["permissions"], json!([]));
    assert_eq!(
        call(&app, Method::GET, "/api/v1/roles/editor", None)
            .await
            .status(),
        404
    );

    // roles:manage is needed.
    let (_p, plain) = app
        .create_app(json!({"name": "plain", "permissions": ["content:read"]}))
        .await;
    let plain = app.token_for(None, &plain).await;
    let res = app
        .authed(Method::GET, "/api/v1/roles", &plain)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn an_application_never_holds_more_than_its_owner() {
    let app = spawn_app().await;
    let user = ok(
        call(
            &app,
            Method::POST,
            "/api/v1/users",
            Some(
                json!({"email": "Ada@Example.com", "name": "Ada", "permissions": ["content:read"]}),
            ),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(user["email"], "ada@example.com");
    let uid = user["id"].as_str().unwrap();
    let (created, secret) = app
        .create_app(
            json!({"name": "ada's", "owner": uid, "permissions": ["content:*", "workloads:read"]}),
        )
        .await;
    assert_eq!(created["owner"], uid);
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(
        claims["permissions"],
        json!(["content:read"]),
        "bounded by the owner"
    );

    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"permissions": []})),
        )
        .await,
        200,
    )
    .await;
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(
        claims["permissions"],
        json!([]),
        "the owner lost it, so new tokens lose it"
    );

    // Re-binding to the gateway lifts the bound.
    let id = created["id"].as_str().unwrap();
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some(json!({"owner": "gateway"})),
        )
        .await,
        200,
    )
    .await;
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(
        claims["permissions"],
        json!(["content:*", "workloads:read"])
    );
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some(json!({"owner": uid})),
        )
        .await,
        200,
    )
    .await;

    let res = call(&app, Method::DELETE, &format!("/api/v1/users/{uid}"), None).await;
    assert_eq!(res.status(), 409, "a user who owns applications stays");
    let res = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/apps/{id}"),
        Some(json!({"owner": "usr_nobody"})),
    )
    .await;
    assert_eq!(res.status(), 422);
    let res = call(
        &app,
        Method::POST,
        "/api/v1/users",
        Some(json!({"email": "ada@example.com"})),
    )
    .await;
    assert_eq!(res.status(), 409, "emails are unique");
    let res = call(
        &app,
        Method::POST,
        "/api/v1/users",
        Some(json!({"email": "not an email"})),
    )
    .await;
    assert_eq!(res.status(), 422);
    let list = ok(call(&app, Method::GET, "/api/v1/users", None).await, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn access_rules_travel_in_tokens_with_roles_expanded() {
    let app = spawn_app().await;
    ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "operator", "permissions": ["workloads:write"]})),
        )
        .await,
        201,
    )
    .await;
    let (created, secret) = app
        .create_app(json!({
            "name": "ci",
            "permissions": ["content:read"],
            "accessRules": [{"scope": "cluster:c1/project:*", "roles": ["operator"], "permissions": ["workloads:read"]}]
        }))
        .await;
    assert_eq!(created["accessRules"][0]["scope"], "cluster:c1/project:*");
    let claims = claims_of(&app.token_for(None, &secret).await);
    assert_eq!(
        claims["access"],
        json!([{"scope": "cluster:c1/project:*", "permissions": ["workloads:read", "workloads:write"]}])
    );
    // Downscoping narrows the rules too, and a scope held only under a rule is allowed.
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppSecret": secret, "scope": "workloads:read"}),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let claims = claims_of(body["accessToken"].as_str().unwrap());
    assert_eq!(claims["permissions"], json!([]));
    assert_eq!(
        claims["access"][0]["permissions"],
        json!(["workloads:read"])
    );

    for bad in [
        json!([{"scope": "cluster", "permissions": ["workloads:read"]}]),
        json!([{"scope": "cluster:c1", "roles": ["ghost"]}]),
        json!([{"scope": "cluster:c1"}]),
        json!([{"scope": "cluster:c1", "permissions": ["nope:nope"]}]),
    ] {
        let res = call(
            &app,
            Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "x", "accessRules": bad})),
        )
        .await;
        let (status, code, _) = error_code(res).await;
        assert_eq!((status, code.as_str()), (422, "validation_failed"), "{bad}");
    }
}

#[tokio::test]
async fn every_admin_action_is_audited_without_secrets() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some(json!({"name": "renamed"})),
        )
        .await,
        200,
    )
    .await;
    let rotated = ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{id}/rotate"),
            Some(json!({"gracePeriodSeconds": 60})),
        )
        .await,
        200,
    )
    .await;
    ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{id}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;
    ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "r1"})),
        )
        .await,
        201,
    )
    .await;
    let user = ok(
        call(
            &app,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "x@example.com"})),
        )
        .await,
        201,
    )
    .await;
    call(&app, Method::DELETE, &format!("/api/v1/apps/{id}"), None).await;

    let res = call(&app, Method::GET, "/api/v1/audit?limit=200", None).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&secret) && !text.contains(rotated["secret"].as_str().unwrap()));
    assert!(!text.contains("argon2"));
    let log: Value = serde_json::from_str(&text).unwrap();
    let actions: Vec<(String, String)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (action, target) in [
        ("app.delete", id),
        ("user.create", user["id"].as_str().unwrap()),
        ("role.create", "r1"),
        ("app.revoke", id),
        ("app.rotate", id),
        ("app.update", id),
        ("app.create", id),
    ] {
        assert!(
            actions.contains(&(action.to_owned(), target.to_owned())),
            "{action} {target} missing: {actions:?}"
        );
    }
    assert_eq!(actions[0].0, "app.delete", "newest first");
    let first = &log["data"][0];
    assert_eq!(first["actor"], ADMIN_ID);
    assert_eq!(first["sourceIp"], "127.0.0.1");
    assert!(first["at"].is_string());

    let page = ok(
        call(&app, Method::GET, "/api/v1/audit?limit=2", None).await,
        200,
    )
    .await;
    let cursor = page["nextCursor"].as_str().unwrap();
    let older = ok(
        call(
            &app,
            Method::GET,
            &format!("/api/v1/audit?limit=2&cursor={cursor}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_ne!(older["data"][0]["id"], page["data"][0]["id"]);

    let (_p, plain) = app
        .create_app(json!({"name": "plain", "permissions": ["content:read"]}))
        .await;
    let plain = app.token_for(None, &plain).await;
    let res = app
        .authed(Method::GET, "/api/v1/audit", &plain)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

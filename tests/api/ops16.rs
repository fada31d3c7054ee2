//! Issue 16's operations part: errors that name the field and what it
//! accepts, logs fit for their reader, and safe defaults at start-up.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "tsr_sk_live_Q2x9vP0aZ4mLr7TtYb1cWd3eFg5hJk8nMp6sRu0vXy";

async fn refused(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, String) {
    let (status, _, v) = error_code(call(app, method, path, Some(body)).await).await;
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message.contains(SECRET), "a secret came back: {message}");
    (status, message)
}

/// What the issue met through the CLI (`--env staging`, `--expires-at
/// tomorrow`) and what a hand-written body gets wrong most: each answer
/// names the field and what it accepts, and never the value sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_fit_names_the_field_and_the_allowed_values() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "e", "environment": "staging"}),
            "environment: expected one of live, test",
        ),
        (
            json!({"name": "e", "environment": SECRET}),
            "environment: expected one of live, test",
        ),
        (
            json!({"name": "e", "type": 3}),
            "type: expected one of secret, public",
        ),
        (
            json!({"name": "e", "expiresAt": "tomorrow"}),
            "expiresAt: expected an RFC 3339 instant, e.g. 2030-01-31T00:00:00Z",
        ),
        (
            json!({"name": "e", "roles": "reader"}),
            "roles: expected an array of strings",
        ),
        (
            json!({"name": "e", "tokenTtl": "an hour"}),
            "tokenTtl: expected a non-negative integer",
        ),
        (json!({"description": "no name"}), "name: required"),
    ];
    for (body, want) in cases {
        let (status, message) = refused(&app, Method::POST, "/api/v1/apps", body.clone()).await;
        assert_eq!((status, message.as_str()), (400, want), "{body}");
    }
    // An unknown field: its object and the fields it has, not the name sent.
    let (status, message) = refused(
        &app,
        Method::POST,
        "/api/v1/apps",
        json!({"name": "e", SECRET: 1}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.starts_with("the request body: unknown field; the fields are name, "),
        "{message}"
    );
    assert!(message.contains("environment"), "{message}");
    // The same on PATCH and on the roles API.
    let (_, message) = refused(
        &app,
        Method::PATCH,
        &format!("/api/v1/apps/{ADMIN_ID}"),
        json!({"expiresAt": "soon"}),
    )
    .await;
    assert!(
        message.starts_with("expiresAt: expected an RFC 3339"),
        "{message}"
    );
    let (_, message) = refused(
        &app,
        Method::POST,
        "/api/v1/roles",
        json!({"name": "r", "permissions": "content:read"}),
    )
    .await;
    assert_eq!(message, "permissions: expected an array of strings");
}

/// Values are quoted only when short, printable and not shaped like a
/// credential: an unknown role is named, a secret pasted as one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_errors_quote_plain_names_and_never_a_credential() {
    let app = spawn_app().await;
    let (status, message) = refused(
        &app,
        Method::POST,
        "/api/v1/apps",
        json!({"name": "q", "roles": ["reader", SECRET]}),
    )
    .await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("\"reader\""), "{message}");
    assert!(
        message.contains(&format!("(a value of {} bytes)", SECRET.len())),
        "{message}"
    );
}

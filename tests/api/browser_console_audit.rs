//! The audit log, signing keys, identity providers and 404 pages of the
//! console (docs/api.md, "The console") in a real headless Chromium: something done through
//! the API is found by filtering the log with the keyboard, a refused
//! filter is shown beside its field, and every page visited passes
//! `Chrome::check_page` (axe-core, CSP, same origin only, 375 px).

use fantoccini::Locator;
use fantoccini::key::Key;
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::config::{IdpSettings, RoleMapping};

use crate::browser::{Chrome, Js};
use crate::browser_console::console_sign_in;
use crate::helpers::{spawn_app, spawn_with};
use crate::people::create_user;

/// The text of every cell of the audit table, row by row.
async fn table(chrome: &Chrome) -> Vec<String> {
    let rows = chrome
        .client()
        .find_all(Locator::Css("table.audit tbody tr"))
        .await
        .unwrap();
    let mut out = Vec::new();
    for r in rows {
        out.push(r.text().await.unwrap());
    }
    out
}

#[tokio::test]
async fn browser_console_audit_filter_keys_and_not_found() {
    let app = spawn_app().await;
    create_user(&app, "auditor@example.com", &["audit:read", "users:manage"]).await;
    // Something audited: an application created through the API.
    let (created, _) = app
        .create_app(json!({"name": "billing-worker", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let chrome = Chrome::start("console_audit", &app.address, Js::On).await;
    console_sign_in(&chrome, &app, "auditor@example.com", "/console/audit").await;
    chrome.wait_for_text("h1", "Audit log").await;
    chrome.check_page("audit").await;
    let all = table(&chrome).await;
    assert!(all.len() >= 2, "the app and the user: {all:?}");

    // Filter by the action, with the keyboard: the entry, and only it.
    chrome
        .client()
        .find(Locator::Id("action"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome.type_text("app.create").await;
    chrome.press(Key::Enter).await;
    chrome
        .wait_for_url("the filtered log", |u| {
            u.query_pairs()
                .any(|(k, v)| k == "action" && v == "app.create")
        })
        .await;
    chrome.wait_for("table.audit").await;
    let rows = table(&chrome).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].contains("app.create") && rows[0].contains(&id),
        "{rows:?}"
    );
    let kept: Value = chrome
        .js("return document.getElementById('action').value")
        .await;
    assert_eq!(kept, "app.create", "the filter stays in its field");
    chrome.check_page("audit-filtered").await;

    // A filter the service refuses: the message beside the field.
    chrome
        .visit(
            &app.url(
                "/console/audit?action=app.create&since=2030-01-01T00:00&until=2020-01-01T00:00",
            ),
        )
        .await;
    chrome.wait_for("#since-error").await;
    let error = chrome
        .client()
        .find(Locator::Id("since-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(error, "Since must be before until.");
    chrome.check_page("audit-refused").await;

    // Signing keys: every key of the JWKS.
    chrome.visit(&app.url("/console/keys")).await;
    chrome.wait_for_text("h1", "Signing keys").await;
    let jwks: Value = serde_json::from_str(&app.jwks().await).unwrap();
    let shown = chrome
        .client()
        .find(Locator::Css("table.keys"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for k in jwks["keys"].as_array().unwrap() {
        assert!(shown.contains(k["kid"].as_str().unwrap()), "{shown}");
    }
    chrome.check_page("keys").await;

    // No provider configured: said so.
    chrome.visit(&app.url("/console/idps")).await;
    chrome.wait_for_text("h1", "Identity providers").await;
    let main = chrome
        .client()
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        main.contains("No identity provider is configured"),
        "{main}"
    );
    chrome.check_page("idps-none").await;

    // A console address that does not exist.
    chrome.visit(&app.url("/console/no-such-page")).await;
    chrome.wait_for_text("h1", "Page not found").await;
    chrome.check_page("not-found").await;
    chrome
        .client()
        .find(Locator::LinkText("Back to the console"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome
        .wait_for_url("the console's home", |u| u.path() == "/console")
        .await;
}

#[tokio::test]
async fn browser_console_audit_providers_page() {
    let secret = "idp-secret-not-on-the-page-0042";
    let provider = IdpSettings {
        name: "corp".into(),
        display_name: Some("Corp SSO".into()),
        // Nothing listens there.
        issuer: "http://127.0.0.1:9/realms/corp".into(),
        client_id: "tessera-at-corp".into(),
        client_secret: Some(SecretString::from(secret)),
        scopes: vec!["openid".into(), "email".into()],
        groups_claim: "groups".into(),
        create_users: true,
        allowed_domains: vec!["example.com".into()],
        link_by_verified_email: true,
        token_exchange: true,
        role_map: vec![RoleMapping {
            group: "ops-team".into(),
            roles: vec!["operators".into()],
        }],
    };
    let app = spawn_with(move |s| s.idp = vec![provider]).await;
    create_user(&app, "admin@example.com", &["users:manage"]).await;
    let chrome = Chrome::start("console_idps", &app.address, Js::On).await;
    console_sign_in(&chrome, &app, "admin@example.com", "/console/idps").await;
    chrome.wait_for_text("h1", "Identity providers").await;
    chrome.wait_for_text("section.idp h2", "Corp SSO").await;
    let source = chrome.client().source().await.unwrap();
    assert!(!source.contains(secret), "never the client secret");
    assert!(source.contains("tessera-at-corp") && source.contains("ops-team"));
    chrome.check_page("idps").await;
}

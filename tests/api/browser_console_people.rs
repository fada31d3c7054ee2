//! The console's Users and Roles sections in a real headless Chromium
//! (docs/api.md, "The console"): create a user (a refused password shown beside its field,
//! the rest kept), disable them behind a confirmation, reset a password,
//! end a session, create, edit and delete a role; and, with JavaScript off,
//! a refused role form shown again with the error beside the field. Every
//! page visited passes `Chrome::check_page` (axe-core, CSP, same origin,
//! 375 px, screenshots under target/screenshots/).

use fantoccini::Locator;

use crate::browser::{Chrome, Js};
use crate::browser_console::console_sign_in;
use crate::helpers::{TestApp, call, ok, spawn_app};
use crate::people::{PASSWORD, create_user};

const ADMIN: &str = "admin@example.com";
const ALL: &[&str] = &["users:manage", "roles:manage", "content:*", "workloads:*"];

async fn click(chrome: &Chrome, css: &str) {
    chrome
        .client()
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn click_link(chrome: &Chrome, text: &str) {
    chrome
        .client()
        .find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("no link {text}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {text}: {e}"));
}

async fn type_into(chrome: &Chrome, id: &str, text: &str) {
    let el = chrome
        .client()
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"));
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

async fn value_of(chrome: &Chrome, id: &str) -> String {
    chrome
        .client()
        .find(Locator::Id(id))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// The checkbox whose value is `value` among the fields named `name`.
async fn tick(chrome: &Chrome, name: &str, value: &str) {
    click(
        chrome,
        &format!("form.people-form input[name={name}][value=\"{value}\"]"),
    )
    .await;
}

async fn user_json(app: &TestApp, path: &str) -> serde_json::Value {
    ok(call(app, reqwest::Method::GET, path, None).await, 200).await
}

/// The error beside `field` reads something, and the field points at it.
async fn error_beside(chrome: &Chrome, field: &str) -> String {
    let error = chrome
        .wait_for(&format!("p.field-error#{field}-error"))
        .await;
    let input = chrome
        .client()
        .find(Locator::Id(field))
        .await
        .unwrap_or_else(|e| panic!("no #{field}: {e}"));
    assert_eq!(
        input.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    let described = input.attr("aria-describedby").await.unwrap().unwrap();
    assert!(
        described.split(' ').any(|d| d == format!("{field}-error")),
        "{described}"
    );
    let text = error.text().await.unwrap();
    assert!(!text.is_empty());
    text
}

#[tokio::test]
async fn browser_console_people_users_and_roles() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let chrome = Chrome::start("console_people", &app.address, Js::On).await;
    console_sign_in(&chrome, &app, ADMIN, "/console/users").await;
    chrome.wait_for_text("h1", "Users").await;
    chrome.check_page("users").await;

    // Create: a short password is refused beside its field; the rest stays.
    click_link(&chrome, "Create user").await;
    chrome.wait_for_text("h1", "Create a user").await;
    chrome.check_page("user-new").await;
    type_into(&chrome, "email", "bea@example.com").await;
    type_into(&chrome, "name", "Bea").await;
    type_into(&chrome, "password", "too short").await;
    tick(&chrome, "permissions", "content:read").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    let error = error_beside(&chrome, "password").await;
    assert!(error.contains("12 to 128"), "{error}");
    chrome.wait_for("[role=alert]").await;
    assert_eq!(value_of(&chrome, "email").await, "bea@example.com");
    assert_eq!(value_of(&chrome, "name").await, "Bea");
    assert_eq!(value_of(&chrome, "password").await, "", "never echoed");
    let kept = chrome
        .client()
        .find(Locator::Css(
            "input[name=permissions][value=\"content:read\"]",
        ))
        .await
        .unwrap();
    assert!(kept.is_selected().await.unwrap(), "the ticked box is kept");
    chrome.check_page("user-new-refused").await;
    type_into(&chrome, "password", PASSWORD).await;
    click(&chrome, "form.people-form button[type=submit]").await;
    chrome
        .wait_for_text("p.notice", "The user was created.")
        .await;
    chrome.wait_for_text("h1", "bea@example.com").await;
    chrome.check_page("user").await;
    let user_page = chrome.url().await;
    let id = user_page.path().rsplit('/').next().unwrap().to_owned();

    // Disable, behind a page of its own.
    click_link(&chrome, "Disable").await;
    chrome.wait_for_text("h1", "Disable bea@example.com?").await;
    chrome.check_page("user-disable").await;
    click(&chrome, "main form button.danger").await;
    chrome
        .wait_for_text(
            "p.notice",
            "The user was disabled: their sessions ended and their tokens were revoked.",
        )
        .await;
    chrome.check_page("user-disabled").await;
    let v = user_json(&app, &format!("/api/v1/users/{id}")).await;
    assert_eq!(v["status"], "disabled");

    // Reset the password: two fields that must match.
    click_link(&chrome, "Reset password").await;
    chrome
        .wait_for_text("h1", "Reset the password of bea@example.com")
        .await;
    chrome.check_page("user-password").await;
    type_into(&chrome, "password", "a whole new password").await;
    type_into(&chrome, "password_confirm", "a whole new passwort").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    let error = error_beside(&chrome, "password_confirm").await;
    assert!(error.contains("do not match"), "{error}");
    assert_eq!(value_of(&chrome, "password").await, "");
    chrome.check_page("user-password-refused").await;
    type_into(&chrome, "password", "a whole new password").await;
    type_into(&chrome, "password_confirm", "a whole new password").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    chrome
        .wait_for_text(
            "p.notice",
            "The password was reset: the user's sessions ended.",
        )
        .await;
    chrome.check_page("user-password-reset").await;

    // The person's own sessions on their own page, and the confirmation to
    // end one (cancelled: it is the one in use).
    let admin_id = user_json(&app, "/api/v1/users?limit=10").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == ADMIN)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    chrome
        .visit(&app.url(&format!("/console/users/{admin_id}")))
        .await;
    chrome.wait_for_text("h1", ADMIN).await;
    chrome.check_page("own-user").await;
    click(&chrome, "a[href*='/sessions/']").await;
    chrome
        .wait_for_text("h1", &format!("End this session of {ADMIN}?"))
        .await;
    chrome.check_page("session-end").await;
    click_link(&chrome, "Cancel").await;
    chrome.wait_for_text("h1", ADMIN).await;

    // Roles: create, edit, delete.
    click_link(&chrome, "Roles").await;
    chrome.wait_for_text("h1", "Roles").await;
    chrome.check_page("roles").await;
    click_link(&chrome, "Create role").await;
    chrome.wait_for_text("h1", "Create a role").await;
    chrome.check_page("role-new").await;
    type_into(&chrome, "name", "reader").await;
    type_into(&chrome, "description", "Reads content").await;
    tick(&chrome, "permissions", "content:read").await;
    type_into(&chrome, "permissions_other", "workloads:*").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    chrome
        .wait_for_text("p.notice", "The role was created.")
        .await;
    chrome.wait_for_text("h1", "Role reader").await;
    chrome.check_page("role-edit").await;
    assert_eq!(value_of(&chrome, "permissions_other").await, "workloads:*");
    tick(&chrome, "permissions", "content:write").await;
    type_into(&chrome, "permissions_other", "").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    chrome
        .wait_for_text("p.notice", "The role was saved.")
        .await;
    chrome.check_page("role-saved").await;
    let role = user_json(&app, "/api/v1/roles/reader").await;
    assert_eq!(
        role["permissions"],
        serde_json::json!(["content:read", "content:write"])
    );
    click_link(&chrome, "Delete role").await;
    chrome.wait_for_text("h1", "Delete the role reader?").await;
    chrome.check_page("role-delete").await;
    click(&chrome, "main form button.danger").await;
    chrome
        .wait_for_text("p.notice", "The role was deleted.")
        .await;
    chrome.check_page("roles-after-delete").await;
}

#[tokio::test]
async fn browser_console_people_errors_beside_fields_without_js() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let chrome = Chrome::start("console_people_no_js", &app.address, Js::Off).await;
    // Signing in as `console_sign_in` does, with the script-free checks
    // (axe needs scripts).
    chrome.visit(&app.url("/console/roles/new")).await;
    chrome.wait_for("#password").await;
    chrome.check_page_without_js("sign-in").await;
    type_into(&chrome, "email", ADMIN).await;
    type_into(&chrome, "password", PASSWORD).await;
    click(&chrome, "form button[type=submit]").await;
    chrome.wait_for_text("h1", "Create a role").await;
    chrome.check_page_without_js("role-new").await;
    type_into(&chrome, "name", "Not A Name").await;
    type_into(&chrome, "description", "Kept as typed").await;
    tick(&chrome, "permissions", "workloads:read").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    let error = error_beside(&chrome, "name").await;
    assert!(error.contains("a-z"), "{error}");
    assert_eq!(value_of(&chrome, "name").await, "Not A Name");
    assert_eq!(value_of(&chrome, "description").await, "Kept as typed");
    let kept = chrome
        .client()
        .find(Locator::Css(
            "input[name=permissions][value=\"workloads:read\"]",
        ))
        .await
        .unwrap();
    assert!(kept.is_selected().await.unwrap());
    chrome.check_page_without_js("role-new-refused").await;
    // Corrected, it is created without any script.
    type_into(&chrome, "name", "runner").await;
    click(&chrome, "form.people-form button[type=submit]").await;
    chrome
        .wait_for_text("p.notice", "The role was created.")
        .await;
    chrome.check_page_without_js("role-created").await;
    let role = user_json(&app, "/api/v1/roles/runner").await;
    assert_eq!(role["description"], "Kept as typed");
}

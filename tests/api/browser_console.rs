//! The console in a real headless Chromium: signing in with email and
//! password from `/console`, the home page, and signing out. Every page
//! passes `Chrome::check_page` (axe-core, CSP, same origin, 375 px,
//! screenshots under target/screenshots/).

use fantoccini::Locator;

use crate::browser::{Chrome, Js};
use crate::helpers::{TestApp, spawn_app};
use crate::people::{PASSWORD, create_user};

/// Signs `email` in from `/console` through the sign-in page; lands on
/// `start` (a console path).
pub async fn console_sign_in(chrome: &Chrome, app: &TestApp, email: &str, start: &str) {
    chrome.visit(&app.url(start)).await;
    chrome.wait_for("#password").await;
    chrome.check_page("sign-in").await;
    let c = chrome.client();
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let path = start.split('?').next().unwrap_or(start).to_owned();
    chrome
        .wait_for_url("the console page asked for", |u| u.path() == path)
        .await;
}

#[tokio::test]
async fn sign_in_from_the_console_and_sign_out() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["api_keys:read", "audit:read"]).await;
    let chrome = Chrome::start("console_sign_in_out", &app.address, Js::On).await;
    console_sign_in(&chrome, &app, "ops@example.com", "/console").await;
    chrome.wait_for_text("h1", "Welcome, Ada").await;
    chrome.check_page("home").await;
    let nav = chrome
        .client()
        .find(Locator::Css("header nav"))
        .await
        .unwrap();
    let text = nav.text().await.unwrap();
    assert!(
        text.contains("Applications") && text.contains("Audit log"),
        "{text}"
    );
    assert!(!text.contains("Users"), "users:manage is not held: {text}");

    chrome
        .client()
        .find(Locator::Css("form.signout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    chrome.wait_for_text("h1", "Signed out").await;
    chrome.check_page("signed-out").await;
    // Back to the console: the sign-in form again.
    chrome.visit(&app.url("/console")).await;
    chrome.wait_for("#password").await;
}

//! The people pages (docs/api.md, "People") in a real headless Chromium: signing in with
//! the keyboard alone through `/oauth/authorize`, a wrong password with
//! JavaScript on and off, the logout confirmation and signing out, and the
//! error pages. Every page visited passes `Chrome::check_page` (axe-core,
//! CSP, same origin only, 375 px, screenshots). Also, the checks
//! themselves catch what they look for.

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::Value;

use crate::browser::loopback::Loopback;
use crate::browser::{Chrome, Js};
use crate::helpers::{TestApp, spawn_app};
use crate::people::{PASSWORD, VERIFIER, authorize_path, create_user};

const EMAIL: &str = "ada@example.com";

fn query(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Redeems a code the browser brought back, as the CLI would.
async fn redeem(app: &TestApp, code: &str, redirect: &str) -> Value {
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "tessera-cli"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// From a freshly loaded sign-in page: Tab to each field, type, and press
/// Enter. Asserts the focus order on the way.
async fn sign_in_by_keyboard(chrome: &Chrome, email: Option<&str>, password: &str) {
    chrome.press(Key::Tab).await;
    assert_eq!(
        chrome.focused().await,
        "#email",
        "the first Tab reaches Email"
    );
    if let Some(e) = email {
        chrome.type_text(e).await;
    }
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "#password", "then Password");
    chrome.type_text(password).await;
    chrome.press(Key::Enter).await;
}

#[tokio::test]
async fn keyboard_sign_in_lands_on_the_redirect_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    create_user(&app, EMAIL, &["content:read"]).await;
    let rp = Loopback::start();
    let redirect = rp.url("/callback");
    let authorize = app.url(&authorize_path("tessera-cli", &redirect, "openid", "st-kb"));
    let chrome = Chrome::start("keyboard_sign_in_and_out", &app.address, Js::On).await;

    chrome.visit(&authorize).await;
    assert_eq!(chrome.client().title().await.unwrap(), "Sign in · Tessera");
    chrome.check_page("sign-in").await;
    sign_in_by_keyboard(&chrome, Some(EMAIL), PASSWORD).await;

    let landed = chrome
        .wait_for_url("the redirect", |u| u.as_str().starts_with(&redirect))
        .await;
    assert_eq!(query(&landed, "state").as_deref(), Some("st-kb"));
    assert_eq!(query(&landed, "iss"), Some(app.issuer_hint()));
    let code = query(&landed, "code").expect("a code in the redirect");
    assert!(
        rp.requests()
            .iter()
            .any(|r| r.contains(&format!("code={code}"))),
        "the listener got the code: {:?}",
        rp.requests()
    );
    chrome.screenshot("redirect").await;
    let session = chrome
        .client()
        .get_named_cookie("tessera_session")
        .await
        .expect("the session cookie is set");
    assert_eq!(session.http_only(), Some(true));
    let tokens = redeem(&app, &code, &redirect).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // Signed in: a second authorization skips the form.
    chrome.visit(&authorize).await;
    chrome
        .wait_for_url("the redirect again", |u| u.as_str().starts_with(&redirect))
        .await;

    // No id_token_hint: the gateway asks first.
    chrome.visit(&app.url("/oauth/logout")).await;
    assert_eq!(chrome.client().title().await.unwrap(), "Sign out · Tessera");
    chrome.check_page("logout-confirm").await;
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "Sign out", "Tab reaches the button");
    chrome.press(Key::Enter).await;
    chrome.wait_for_text("h1", "Signed out").await;
    chrome.check_page("signed-out").await;
    assert!(
        chrome
            .client()
            .get_named_cookie("tessera_session")
            .await
            .is_err(),
        "the session cookie is gone"
    );

    // Signed out: the form is shown again instead of a code.
    chrome.visit(&authorize).await;
    chrome.wait_for("#password").await;
    assert!(chrome.url().await.as_str().starts_with(&app.address));
}

#[tokio::test]
async fn a_wrong_password_is_shown_beside_the_form_and_keeps_the_email_with_or_without_js() {
    let app = spawn_app().await;
    create_user(&app, EMAIL, &[]).await;
    let rp = Loopback::start();
    let redirect = rp.url("/callback");
    let authorize = app.url(&authorize_path("tessera-cli", &redirect, "openid", "st-wp"));

    for js in [Js::On, Js::Off] {
        let test = match js {
            Js::On => "wrong_password",
            Js::Off => "wrong_password_no_js",
        };
        let chrome = Chrome::start(test, &app.address, js).await;
        if js == Js::Off {
            // Scripts really are off in this browser.
            chrome.visit(&rp.url("/noscript")).await;
            let shown = chrome.wait_for("#noscript").await;
            assert!(shown.is_displayed().await.unwrap());
        }
        chrome.visit(&authorize).await;
        sign_in_by_keyboard(&chrome, Some(EMAIL), "not the password at all").await;

        // The same form again, the error right before it, the email kept.
        let error = chrome.wait_for("p.error[role=alert]").await;
        let text = error.text().await.unwrap();
        assert!(!text.is_empty());
        assert!(!text.contains(EMAIL), "the error names no account: {text}");
        chrome
            .client()
            .find(Locator::Css("main > p.error[role=alert] + form"))
            .await
            .expect("the error sits next to the form");
        let email = chrome.client().find(Locator::Id("email")).await.unwrap();
        assert_eq!(email.prop("value").await.unwrap().as_deref(), Some(EMAIL));
        let password = chrome.client().find(Locator::Id("password")).await.unwrap();
        assert_eq!(password.prop("value").await.unwrap().as_deref(), Some(""));
        match js {
            Js::On => chrome.check_page("wrong-password").await,
            Js::Off => chrome.check_page_without_js("wrong-password").await,
        }

        // From there, the keyboard alone still signs in.
        sign_in_by_keyboard(&chrome, None, PASSWORD).await;
        let landed = chrome
            .wait_for_url("the redirect", |u| u.as_str().starts_with(&redirect))
            .await;
        assert!(query(&landed, "code").is_some(), "{landed}");
        drop(chrome);
    }
}

#[tokio::test]
async fn the_error_pages_explain_and_pass_every_check() {
    let app = spawn_app().await;
    let rp = Loopback::start();
    let chrome = Chrome::start("error_pages", &app.address, Js::On).await;
    let cases = [
        (
            "unknown-client",
            authorize_path("no-such-client", &rp.url("/callback"), "openid", "s"),
        ),
        (
            "bad-redirect-uri",
            authorize_path(
                "tessera-cli",
                "https://evil.example/callback",
                "openid",
                "s",
            ),
        ),
        (
            "repeated-parameter",
            format!(
                "{}&state=again",
                authorize_path("tessera-cli", &rp.url("/callback"), "openid", "s")
            ),
        ),
    ];
    for (name, path) in cases {
        let url = app.url(&path);
        chrome.visit(&url).await;
        assert_eq!(chrome.url().await.as_str(), url, "{name}: no redirect");
        let h1 = chrome.wait_for("h1").await.text().await.unwrap();
        assert_eq!(h1, "This sign-in request cannot be completed", "{name}");
        let why = chrome
            .wait_for("p.error[role=alert]")
            .await
            .text()
            .await
            .unwrap();
        assert!(!why.is_empty(), "{name}");
        chrome.check_page(name).await;
    }
    assert!(rp.requests().is_empty(), "nothing reached the client");
}

#[tokio::test]
async fn the_page_checks_catch_what_they_look_for() {
    let rp = Loopback::start();
    let chrome = Chrome::start("page_checks", &rp.origin(), Js::On).await;
    chrome.visit(&rp.url("/broken")).await;
    assert_eq!(
        chrome.client().title().await.unwrap(),
        "Broken",
        "the script was blocked"
    );

    let csp = chrome.csp_violations().await;
    assert!(
        csp.iter().any(|v| v.contains("script-src")),
        "the blocked inline script is reported: {csp:?}"
    );
    let foreign = chrome.foreign_requests(&rp.origin()).await;
    assert!(
        foreign.iter().any(|r| r.starts_with("http://localhost:")),
        "the image from another origin is reported: {foreign:?}"
    );
    let axe = chrome.axe().await;
    assert!(
        axe.iter().any(|v| v.contains("\"label\"")),
        "the unlabelled field is reported: {axe:?}"
    );
    chrome.resize(crate::browser::NARROW).await;
    assert!(
        chrome.too_wide().await.is_some(),
        "the 900 px box is reported"
    );
    let shot = chrome.screenshot("broken").await;
    assert!(shot.ends_with("1-broken.png"), "{}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 100);
}

//! The device pages (RFC 8628, docs/api.md, "The device grant") in a real headless Chromium,
//! keyboard only: a client starts a device authorization over HTTP, the
//! browser opens the address it was given, signs in, enters the code and
//! answers; the client's poll sees the answer. Every page visited with
//! JavaScript on passes `Chrome::check_page`; the code form and the
//! confirmation also pass `check_page_without_js` in a browser with
//! scripts off.

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::Value;

use crate::browser::{Chrome, Js};
use crate::device::authorize;
use crate::helpers::{TestApp, claims_of, ok, spawn_with};
use crate::people::{PASSWORD, create_user};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CLIENT_NAME: &str = "Tessera command line (tessera-cli)";

/// A gateway whose devices may poll every second.
async fn gateway() -> TestApp {
    spawn_with(|s| {
        s.people.device_poll_interval = 1;
        s.people.device_code_lifetime = 600;
    })
    .await
}

/// The client's side: a device authorization for `tessera-cli`.
async fn start_device(app: &TestApp, scope: &str) -> Value {
    ok(authorize(app, "tessera-cli", scope).await, 200).await
}

/// One poll of `/oauth/token`, waiting out `slow_down` as a client would.
async fn poll(app: &TestApp, device_code: &str) -> (u16, Value) {
    for _ in 0..5 {
        let res = app
            .client
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", GRANT),
                ("client_id", "tessera-cli"),
                ("device_code", device_code),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        if body["error"] != "slow_down" {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    panic!("the poll was slowed down five times in a row");
}

/// `BCDF-GHJK` as a person might type it: lower case, no hyphen.
fn sloppy(user_code: &str) -> String {
    user_code.replace('-', "").to_lowercase()
}

/// On the freshly loaded sign-in page the detour led to: checks it, then
/// Tab, email, Tab, password, Enter; waits until the browser is back on
/// `/device` showing the code form.
async fn sign_in_by_keyboard(chrome: &Chrome, js: Js, email: &str) {
    chrome.wait_for("#password").await;
    assert_eq!(
        chrome.url().await.path(),
        "/oauth/authorize",
        "no session: /device sends the browser to sign in"
    );
    if js == Js::On {
        chrome.check_page("sign-in").await;
    }
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "#email", "Tab reaches Email");
    chrome.type_text(email).await;
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "#password", "then Password");
    chrome.type_text(PASSWORD).await;
    chrome.press(Key::Enter).await;
    chrome
        .wait_for_url("the code form", |u| u.path() == "/device")
        .await;
    chrome.wait_for("#user_code").await;
}

/// From the code form as loaded: Tab to the field, type `typed`, Enter.
async fn enter_code(chrome: &Chrome, typed: &str) {
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "#user_code", "Tab reaches the code");
    chrome.type_text(typed).await;
    chrome.press(Key::Enter).await;
}

/// The value the code field holds.
async fn field_value(chrome: &Chrome) -> String {
    chrome
        .client()
        .find(Locator::Id("user_code"))
        .await
        .expect("the code field")
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Waits for the confirmation and checks that it names the client, the
/// person, the code and what is asked for.
async fn confirmation_names_everything(chrome: &Chrome, user_code: &str, email: &str) {
    chrome
        .wait_for_text("h1", &format!("Allow {CLIENT_NAME} to sign in as you?"))
        .await;
    let text = chrome.wait_for("main").await.text().await.unwrap();
    for shown in [CLIENT_NAME, email, user_code, "openid", "content:read"] {
        assert!(
            text.contains(shown),
            "the confirmation shows {shown}: {text}"
        );
    }
}

/// Tabs to the button reading `label` (Allow first, then Deny) and
/// presses Enter.
async fn answer(chrome: &Chrome, label: &str) {
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "Allow", "Tab reaches Allow first");
    if label == "Deny" {
        chrome.press(Key::Tab).await;
        assert_eq!(chrome.focused().await, "Deny", "then Deny");
    }
    chrome.press(Key::Enter).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signs_in_after_the_person_allows_it_with_the_keyboard_alone() {
    let app = gateway().await;
    let email = "device@example.com";
    let user = create_user(&app, email, &["content:read"]).await;

    for js in [Js::On, Js::Off] {
        let d = start_device(&app, "openid content:read").await;
        let user_code = d["user_code"].as_str().unwrap();
        let device_code = d["device_code"].as_str().unwrap();
        let (s, v) = poll(&app, device_code).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("authorization_pending"))
        );

        let test = match js {
            Js::On => "device_allow",
            Js::Off => "device_allow_no_js",
        };
        let chrome = Chrome::start(test, &app.address, js).await;
        chrome.visit(d["verification_uri"].as_str().unwrap()).await;
        sign_in_by_keyboard(&chrome, js, email).await;
        assert_eq!(field_value(&chrome).await, "", "nothing prefilled");
        assert_eq!(
            chrome.client().title().await.unwrap(),
            "Connect a device · Tessera"
        );
        match js {
            Js::On => chrome.check_page("code-form").await,
            Js::Off => chrome.check_page_without_js("code-form").await,
        }

        enter_code(&chrome, &sloppy(user_code)).await;
        confirmation_names_everything(&chrome, user_code, email).await;
        match js {
            Js::On => chrome.check_page("confirm").await,
            Js::Off => chrome.check_page_without_js("confirm").await,
        }
        let (s, v) = poll(&app, device_code).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("authorization_pending")),
            "showing the confirmation allows nothing"
        );

        answer(&chrome, "Allow").await;
        chrome.wait_for_text("h1", "Device connected").await;
        let done = chrome.wait_for("main").await.text().await.unwrap();
        assert!(done.contains(CLIENT_NAME), "{done}");
        match js {
            Js::On => chrome.check_page("connected").await,
            Js::Off => chrome.check_page_without_js("connected").await,
        }
        drop(chrome);

        let (s, t) = poll(&app, device_code).await;
        assert_eq!(s, 200, "{t}");
        let claims = claims_of(t["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], user);
        assert_eq!(claims["client_id"], "tessera-cli");
        assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
        let (s, v) = poll(&app, device_code).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_is_shown_beside_the_field_and_deny_refuses_the_device() {
    let app = gateway().await;
    let email = "deny@example.com";
    create_user(&app, email, &["content:read"]).await;
    let d = start_device(&app, "openid content:read").await;
    let user_code = d["user_code"].as_str().unwrap();
    let device_code = d["device_code"].as_str().unwrap();
    // A well-formed code that is not this one.
    let wrong = if sloppy(user_code) == "bcdfghjk" {
        "bcdfghjl"
    } else {
        "bcdfghjk"
    };

    let chrome = Chrome::start("device_deny", &app.address, Js::On).await;
    chrome.visit(d["verification_uri"].as_str().unwrap()).await;
    sign_in_by_keyboard(&chrome, Js::On, email).await;
    enter_code(&chrome, wrong).await;

    // The same form, the error between the label and the field, the field
    // naming it and still holding what was typed.
    chrome.wait_for("p.error[role=alert]").await;
    let placed = chrome
        .client()
        .find(Locator::Css(
            "label[for=user_code] + p#code_error.error[role=alert] + input#user_code",
        ))
        .await;
    if placed.is_err() {
        let shot = chrome.screenshot("misplaced-error").await;
        let html = chrome.client().source().await.unwrap();
        panic!(
            "the error is not between the label and the field ({}):\n{html}",
            shot.display()
        );
    }
    let field = chrome
        .client()
        .find(Locator::Id("user_code"))
        .await
        .unwrap();
    assert_eq!(
        field.attr("aria-invalid").await.unwrap().as_deref(),
        Some("true")
    );
    let described = field.attr("aria-describedby").await.unwrap().unwrap();
    assert!(
        described.split(' ').any(|id| id == "code_error"),
        "the field names its error: {described}"
    );
    let message = chrome
        .client()
        .find(Locator::Id("code_error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(message.contains("not valid"), "{message}");
    assert_eq!(field_value(&chrome).await, wrong, "what was typed is kept");
    chrome.check_page("wrong-code").await;

    // Correct it with the keyboard: Tab to the field, clear it, type.
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "#user_code");
    chrome.press(Key::End).await;
    for _ in 0..wrong.len() {
        chrome.press(Key::Backspace).await;
    }
    assert_eq!(field_value(&chrome).await, "");
    chrome.type_text(&sloppy(user_code)).await;
    chrome.press(Key::Enter).await;
    confirmation_names_everything(&chrome, user_code, email).await;
    chrome.check_page("confirm").await;

    answer(&chrome, "Deny").await;
    chrome.wait_for_text("h1", "Request denied").await;
    chrome.check_page("denied").await;
    drop(chrome);

    let (s, v) = poll(&app, device_code).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("access_denied")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_uri_complete_brings_the_code_through_sign_in() {
    let app = gateway().await;
    let email = "complete@example.com";
    create_user(&app, email, &["content:read"]).await;
    let d = start_device(&app, "openid content:read").await;
    let user_code = d["user_code"].as_str().unwrap();
    let device_code = d["device_code"].as_str().unwrap();

    let chrome = Chrome::start("device_complete", &app.address, Js::On).await;
    chrome
        .visit(d["verification_uri_complete"].as_str().unwrap())
        .await;
    sign_in_by_keyboard(&chrome, Js::On, email).await;
    let at = chrome.url().await;
    assert_eq!(
        at.query(),
        Some(format!("user_code={user_code}").as_str()),
        "back with the code and nothing else: {at}"
    );
    assert_eq!(
        field_value(&chrome).await,
        user_code,
        "the code is filled in"
    );
    chrome.check_page("code-prefilled").await;

    // The code is there: Enter alone (the field has the focus after Tab)
    // shows the confirmation.
    chrome.press(Key::Tab).await;
    assert_eq!(chrome.focused().await, "#user_code");
    chrome.press(Key::Enter).await;
    confirmation_names_everything(&chrome, user_code, email).await;
    chrome.check_page("confirm").await;
    answer(&chrome, "Allow").await;
    chrome.wait_for_text("h1", "Device connected").await;
    drop(chrome);

    let (s, t) = poll(&app, device_code).await;
    assert_eq!(s, 200, "{t}");
}

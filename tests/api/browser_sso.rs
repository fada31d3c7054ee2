//! Single sign-on's pages (docs/api.md, "Single sign-on") in a real headless Chromium: the
//! sign-in page's provider link, reached and followed with the keyboard,
//! and the refusal pages (the provider declined, a forged state, an
//! unknown provider). The provider is a minimal one the test runs: its
//! discovery document, and an authorization endpoint that always sends
//! the browser back declined. Every page on the gateway passes
//! `Chrome::check_page`.

use std::collections::HashMap;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use fantoccini::key::Key;
use secrecy::SecretString;
use serde_json::json;
use tessera::config::IdpSettings;

use crate::browser::loopback::Loopback;
use crate::browser::{Chrome, Js};
use crate::helpers::{TestApp, spawn_with};
use crate::people::authorize_path;

/// A provider that serves discovery and declines every sign-in.
struct Provider {
    base: String,
    handle: ServerHandle,
}

impl Drop for Provider {
    fn drop(&mut self) {
        // Stops accepting at once; the server task ends on its own.
        drop(self.handle.stop(false));
    }
}

async fn start_provider() -> Provider {
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/{t}/.well-known/openid-configuration",
                web::get().to(|req: HttpRequest, t: web::Path<String>| async move {
                    let base = format!("http://{}/{t}", req.connection_info().host());
                    HttpResponse::Ok().json(json!({
                        "issuer": base,
                        "authorization_endpoint": format!("{base}/authorize"),
                        "token_endpoint": format!("{base}/token"),
                        "jwks_uri": format!("{base}/jwks"),
                        "id_token_signing_alg_values_supported": ["ES256"],
                    }))
                }),
            )
            .route(
                "/{t}/authorize",
                // The person said no: back to the redirect with the state.
                web::get().to(|q: web::Query<HashMap<String, String>>| async move {
                    let mut back = url::Url::parse(&q["redirect_uri"]).unwrap();
                    back.query_pairs_mut()
                        .append_pair("error", "access_denied")
                        .append_pair("state", &q["state"]);
                    HttpResponse::Found()
                        .insert_header(("location", back.as_str()))
                        .finish()
                }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Provider {
        base: format!("http://127.0.0.1:{port}"),
        handle,
    }
}

async fn gateway(provider: &Provider) -> TestApp {
    let corp = IdpSettings {
        name: "corp".into(),
        display_name: Some("Corp SSO".into()),
        issuer: format!("{}/corp", provider.base),
        client_id: "tessera-at-corp".into(),
        client_secret: Some(SecretString::from("corp-client-secret-0123")),
        scopes: vec!["openid".into(), "email".into()],
        groups_claim: "groups".into(),
        create_users: false,
        allowed_domains: vec![],
        link_by_verified_email: false,
        token_exchange: false,
        role_map: vec![],
    };
    spawn_with(move |s| s.idp = vec![corp]).await
}

/// Waits for the refusal page and returns what it says.
async fn refusal(chrome: &Chrome) -> String {
    chrome.wait_for_text("h1", "Sign-in refused").await;
    assert_eq!(
        chrome.client().title().await.unwrap(),
        "Sign-in refused · Tessera"
    );
    let why = chrome
        .wait_for("main > p.error[role=alert]")
        .await
        .text()
        .await
        .unwrap();
    assert!(!why.is_empty());
    why
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_link_is_reached_by_keyboard_and_a_declined_sign_in_is_refused_clearly() {
    let provider = start_provider().await;
    let app = gateway(&provider).await;
    let rp = Loopback::start();
    let authorize = app.url(&authorize_path(
        "tessera-cli",
        &rp.url("/callback"),
        "openid",
        "st-sso",
    ));
    let chrome = Chrome::start("sso_link", &app.address, Js::On).await;
    chrome.visit(&authorize).await;
    chrome.wait_for("a.idp").await;
    chrome.check_page("sign-in-with-provider").await;

    // Email, Password, Sign in, then the provider's link.
    for expected in ["#email", "#password", "Sign in", "Sign in with Corp SSO"] {
        chrome.press(Key::Tab).await;
        assert_eq!(chrome.focused().await, expected);
    }
    chrome.press(Key::Enter).await;

    // Off to the provider and, declined there, back to a clear refusal.
    let why = refusal(&chrome).await;
    let at = chrome.url().await;
    assert_eq!(at.path(), "/sso/corp/callback", "{at}");
    assert!(at.as_str().starts_with(&app.address), "{at}");
    // The state was good (not the forged-state refusal): the provider's
    // "no" is what is reported, in words.
    assert!(why.contains("identity provider"), "{why}");
    assert!(!why.contains("access_denied"), "said in words: {why}");
    chrome.check_page("provider-declined").await;
    assert!(rp.requests().is_empty(), "nothing reached the client");
    assert!(
        chrome
            .client()
            .get_named_cookie("tessera_session")
            .await
            .is_err(),
        "no session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_state_and_an_unknown_provider_are_refused_with_pages_that_pass_the_checks() {
    let provider = start_provider().await;
    let app = gateway(&provider).await;
    let chrome = Chrome::start("sso_refusals", &app.address, Js::On).await;
    let cases = [
        (
            "forged-state",
            "/sso/corp/callback?code=c1&state=forged-state",
        ),
        ("unknown-provider", "/sso/nobody/login"),
    ];
    let mut said = Vec::new();
    for (name, path) in cases {
        chrome.visit(&app.url(path)).await;
        said.push(refusal(&chrome).await);
        assert_eq!(chrome.url().await.path(), path.split('?').next().unwrap());
        chrome.check_page(name).await;
    }
    assert_ne!(said[0], said[1], "each refusal says why");
}

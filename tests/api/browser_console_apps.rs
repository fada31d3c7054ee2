//! The console's Applications section in a real headless Chromium
//! (docs/api.md, "The console"): create and see the secret once, exchange it, edit, rotate with a
//! grace period, revoke (and watch the `cluster_api` example refuse a token
//! minted before), bulk delete behind a confirmation, a read-only view, and
//! a form without its CSRF token refused. Every page visited passes
//! `Chrome::check_page` (axe-core, CSP, same origin, 375 px, screenshots).

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::browser::{Chrome, Js};
use crate::browser_console::console_sign_in;
use crate::helpers::{TestApp, call, ok, spawn_with};
use crate::people::create_user;
use crate::redis_server::RedisServer;

async fn click(chrome: &Chrome, css: &str) {
    chrome.wait_for(css).await.click().await.unwrap();
}

/// Clicks the button or link whose text is exactly `text`.
async fn click_text(chrome: &Chrome, text: &str) {
    let xpath = format!("//main//*[self::button or self::a][normalize-space(.)='{text}']");
    chrome
        .client()
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no control {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Replaces the text of the field `id`.
async fn fill(chrome: &Chrome, id: &str, text: &str) {
    let el = chrome.wait_for(&format!("#{id}")).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// The secret shown on the page.
async fn shown_secret(chrome: &Chrome) -> String {
    chrome.wait_for("#secret").await;
    chrome
        .js("return document.getElementById('secret').value")
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The application id of a `/console/apps/{id}/…` address.
fn app_id(u: &url::Url) -> String {
    u.path()
        .trim_start_matches("/console/apps/")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn api_get(app: &TestApp, path: &str) -> reqwest::Response {
    call(app, reqwest::Method::GET, path, None).await
}

/// The `cluster_api` example, verifying tokens against this gateway, with
/// revocations from its Redis; killed when dropped.
struct ClusterApi {
    child: std::process::Child,
    url: String,
}

impl Drop for ClusterApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_api(gw: &TestApp, redis: &RedisServer, prefix: &str) -> ClusterApi {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_tessera"))
        .parent()
        .unwrap()
        .join("examples")
        .join("cluster_api");
    assert!(bin.exists(), "`cargo test` builds the examples");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--gateway", &gw.address, "--audience", "cluster-api"])
        .args(["--redis", &redis.url(), "--redis-prefix", prefix])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ClusterApi {
        child,
        url: format!("http://127.0.0.1:{port}/api/v1/clusters/c1/workloads"),
    }
}

/// Waits until `url` answers `want` to `token`.
async fn answers(url: &str, token: &str, want: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(url).bearer_auth(token).send().await
            && res.status().as_u16() == want
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_see_once_edit_rotate_revoke_and_a_forged_form() {
    let redis = RedisServer::start();
    let prefix = format!("c{}:", tessera::crypto::random::base62(8).unwrap());
    let app = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
    })
    .await;
    create_user(
        &app,
        "ops@example.com",
        &["api_keys:manage", "content:*", "workloads:read"],
    )
    .await;
    let new_owner = create_user(&app, "owner@example.com", &["content:read"]).await;
    let cluster = cluster_api(&app, &redis, &prefix);
    let chrome = Chrome::start("console_apps_lifecycle", &app.address, Js::On).await;
    console_sign_in(&chrome, &app, "ops@example.com", "/console/apps").await;
    chrome.wait_for_text("h1", "Applications").await;
    chrome.check_page("apps-table").await;

    // Create.
    click_text(&chrome, "Create application").await;
    chrome.wait_for_text("h1", "Create application").await;
    chrome.check_page("apps-new").await;
    fill(&chrome, "name", "browser-made").await;
    fill(&chrome, "description", "Made in Chromium").await;
    click(&chrome, "#perm-content-read").await;
    click_text(&chrome, "Create application").await;
    let at = chrome
        .wait_for_url("the secret page", |u| u.path().ends_with("/secret"))
        .await;
    let id = app_id(&at);
    let secret = shown_secret(&chrome).await;
    assert!(secret.starts_with("tsr_sk_live_"), "{secret}");
    let copy = chrome
        .js("return document.querySelector('[data-copy=secret]').hidden")
        .await;
    assert_eq!(copy, Value::Bool(false), "the copy button shows with JS");
    chrome.check_page("apps-secret").await;
    assert_eq!(app.exchange(None, &secret).await.status(), 200);
    // A reload shows it no more.
    chrome.client().refresh().await.unwrap();
    chrome.wait_for(".notice").await;
    let gone = chrome
        .js("return document.getElementById('secret') === null")
        .await;
    assert_eq!(gone, Value::Bool(true));
    let body = chrome.js("return document.body.innerText").await;
    assert!(!body.as_str().unwrap().contains(&secret));
    chrome.check_page("apps-secret-gone").await;

    // Edit owner, name and description.
    chrome.visit(&app.url(&format!("/console/apps/{id}"))).await;
    chrome.wait_for_text("h1", "browser-made (active)").await;
    chrome.check_page("apps-details").await;
    fill(&chrome, "owner", &new_owner).await;
    fill(&chrome, "name", "renamed-in-browser").await;
    fill(&chrome, "description", "Edited in Chromium").await;
    click_text(&chrome, "Save changes").await;
    chrome
        .wait_for_url("the saved details", |u| u.query() == Some("done=saved"))
        .await;
    chrome
        .wait_for_text(".notice", "Your changes were saved.")
        .await;
    chrome.check_page("apps-details-saved").await;
    let v = ok(api_get(&app, &format!("/api/v1/apps/{id}")).await, 200).await;
    assert_eq!(v["name"], "renamed-in-browser");
    assert_eq!(v["description"], "Edited in Chromium");
    assert_eq!(v["owner"], new_owner.as_str());

    // Rotate with a one-hour grace period: both secrets work.
    chrome
        .js("document.getElementById('grace').value = '3600'")
        .await;
    click_text(&chrome, "Rotate").await;
    chrome
        .wait_for_url("the new secret", |u| u.path().ends_with("/secret"))
        .await;
    let rotated = shown_secret(&chrome).await;
    assert_ne!(rotated, secret);
    chrome.check_page("apps-rotated").await;
    assert_eq!(
        app.exchange(None, &secret).await.status(),
        200,
        "in its grace"
    );
    assert_eq!(app.exchange(None, &rotated).await.status(), 200);

    // Revoke: the verifier refuses a token minted before.
    let (created, cluster_secret) = app
        .create_app(json!({"name": "cluster-ci", "audiences": ["cluster-api"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]}))
        .await;
    let cid = created["id"].as_str().unwrap().to_owned();
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"AppSecret": cluster_secret, "audience": "cluster-api"}),
        )
        .await;
    let token = res.json::<Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    answers(&cluster.url, &token, 200).await;
    chrome
        .visit(&app.url(&format!("/console/apps/{cid}")))
        .await;
    chrome.wait_for_text("h1", "cluster-ci (active)").await;
    click_text(&chrome, "Revoke").await;
    chrome.wait_for_text("h1", "Revoke cluster-ci?").await;
    chrome.check_page("apps-revoke-confirm").await;
    click_text(&chrome, "Revoke cluster-ci").await;
    chrome.wait_for_text("h1", "cluster-ci (revoked)").await;
    chrome.check_page("apps-revoked").await;
    answers(&cluster.url, &token, 401).await;
    assert_eq!(app.exchange(None, &cluster_secret).await.status(), 401);

    // A form whose CSRF token was removed is refused, and nothing is made.
    chrome.visit(&app.url("/console/apps/new")).await;
    fill(&chrome, "name", "no-token").await;
    chrome
        .js("document.querySelector('form.app-form input[name=csrf]').remove()")
        .await;
    click_text(&chrome, "Create application").await;
    chrome.wait_for_text("h1", "This form was refused").await;
    chrome.check_page("apps-forged").await;
    let list = ok(api_get(&app, "/api/v1/apps?q=no-token").await, 200).await;
    assert!(list["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bulk_delete_with_confirmation_and_a_read_only_view() {
    let app = crate::helpers::spawn_app().await;
    create_user(
        &app,
        "ops@example.com",
        &["api_keys:manage", "content:read"],
    )
    .await;
    create_user(&app, "reader@example.com", &["api_keys:read"]).await;
    let mut ids = Vec::new();
    for n in ["bulk-a", "bulk-b", "bulk-c"] {
        let (v, _) = app
            .create_app(json!({"name": n, "permissions": ["content:read"]}))
            .await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let chrome = Chrome::start("console_apps_bulk", &app.address, Js::On).await;
    console_sign_in(&chrome, &app, "ops@example.com", "/console/apps?q=bulk").await;
    chrome.wait_for_text("h1", "Applications").await;
    chrome.check_page("apps-bulk-table").await;
    click(&chrome, &format!("#sel-{}", ids[0])).await;
    click(&chrome, &format!("#sel-{}", ids[1])).await;
    click_text(&chrome, "Delete selected").await;
    chrome.wait_for_text("h1", "Delete 2 applications?").await;
    chrome.check_page("apps-bulk-confirm").await;
    // Nothing is gone before the confirmation.
    assert_eq!(
        api_get(&app, &format!("/api/v1/apps/{}", ids[0]))
            .await
            .status(),
        200
    );
    click_text(&chrome, "Delete 2 applications").await;
    chrome
        .wait_for_text("#bulk-title", "Delete selected: the outcome")
        .await;
    chrome.check_page("apps-bulk-done").await;
    for (id, want) in [(&ids[0], 404), (&ids[1], 404), (&ids[2], 200)] {
        assert_eq!(
            api_get(&app, &format!("/api/v1/apps/{id}")).await.status(),
            want
        );
    }

    // Signed out, then in as a reader: the table without its controls.
    click(&chrome, "form.signout button").await;
    chrome.wait_for_text("h1", "Signed out").await;
    console_sign_in(&chrome, &app, "reader@example.com", "/console/apps").await;
    chrome.wait_for_text("h1", "Applications").await;
    chrome.check_page("apps-read-only").await;
    let body = chrome
        .js("return document.querySelector('main').innerText")
        .await;
    let body = body.as_str().unwrap();
    assert!(body.contains("bulk-c"));
    for control in ["Create application", "Revoke selected", "Delete selected"] {
        assert!(!body.contains(control), "a reader is offered {control}");
    }
    chrome
        .visit(&app.url(&format!("/console/apps/{}", ids[2])))
        .await;
    chrome.wait_for_text("h1", "bulk-c (active)").await;
    chrome.check_page("apps-read-only-details").await;
    let controls = chrome
        .js("return document.querySelectorAll('main button, main a.button, main form').length")
        .await;
    assert_eq!(
        controls,
        json!(0),
        "a reader is offered no edit, rotate, revoke or delete"
    );

    // Forced anyway: a form the page never offered, built in the page
    // with this session's own CSRF token (from the sign-out form), posts a
    // revoke. The API's 403 comes back as a page, and nothing changed.
    chrome
        .js(&format!(
            "const f = document.createElement('form'); f.method = 'post'; \
             f.action = '/console/apps/{}/revoke'; \
             const t = document.querySelector('form.signout input[name=csrf]').cloneNode(); \
             f.appendChild(t); document.body.appendChild(f); f.submit();",
            ids[2]
        ))
        .await;
    chrome.wait_for_text("h1", "Not allowed").await;
    chrome.check_page("apps-read-only-forged").await;
    assert_eq!(
        api_get(&app, &format!("/api/v1/apps/{}", ids[2]))
            .await
            .status(),
        200
    );
    let v: serde_json::Value = api_get(&app, &format!("/api/v1/apps/{}", ids[2]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "active", "the forged revoke changed nothing");
}

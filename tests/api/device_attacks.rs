//! The device authorization grant under attack (RFC 8628 §5): guessing
//! user codes from many sessions of one account, filling the store through
//! the endpoint that takes no secret, two people answering one code at
//! once, parallel polls, and an approval whose session ended before the
//! device collected it.

use reqwest::Method;
use serde_json::Value;

use crate::device::{answer, authorize, enter, sign_in_at_device};
use crate::helpers::{TestApp, call, claims_of, ok, spawn_with};
use crate::people::{Browser, create_user};

async fn gateway() -> TestApp {
    spawn_with(|s| {
        s.people.device_poll_interval = 1;
        s.people.device_code_lifetime = 600;
    })
    .await
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

/// Wrong codes from one browser until the counter stops it; returns the
/// statuses.
async fn guesses(b: &mut Browser, app: &TestApp, csrf: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..n {
        // Vowels never appear in a real code: always wrong, always counted.
        let guess = format!("BCDF-GHA{}", ["B", "C", "D", "F"][i % 4]);
        out.push(enter(b, app, csrf, &guess).await.status().as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_buys_no_new_guesses() {
    let app = gateway().await;
    create_user(&app, "guesser@example.com", &[]).await;
    let mut first = Browser::new(&app);
    let html = sign_in_at_device(&mut first, &app, "/device", "guesser@example.com").await;
    let s = guesses(&mut first, &app, &csrf_of(&html), 11).await;
    assert_eq!(&s[..10], &[400; 10], "{s:?}");
    assert_eq!(s[10], 429, "{s:?}");
    // A fresh session of the same account, from the same address (well
    // under the per-address limit): still spent.
    let mut second = Browser::new(&app);
    let html = sign_in_at_device(&mut second, &app, "/device", "guesser@example.com").await;
    let s = guesses(&mut second, &app, &csrf_of(&html), 2).await;
    assert_eq!(s, [429, 429], "a new session must not reset the count");
    // Another person at that address is not stopped by this account.
    create_user(&app, "bystander@example.com", &[]).await;
    let mut other = Browser::new(&app);
    let html = sign_in_at_device(&mut other, &app, "/device", "bystander@example.com").await;
    let s = guesses(&mut other, &app, &csrf_of(&html), 1).await;
    assert_eq!(s, [400]);
    // The guessing is in the audit log; refusals past the limit are not
    // (a flood must not fill the log), and the codes typed never are.
    let log = ok(
        call(&app, Method::GET, "/api/v1/audit?limit=100", None).await,
        200,
    )
    .await;
    let rejected: Vec<&Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "device.code_rejected")
        .collect();
    assert_eq!(rejected.len(), 11, "{log}");
    assert!(!log.to_string().contains("GHA"), "no code typed in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_store_with_device_requests() {
    let app = gateway().await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..40 {
        let res = authorize(&app, "tessera-cli", "openid").await;
        statuses.push(res.status().as_u16());
        if res.status() == 429 {
            retry_after = res.headers().get("retry-after").cloned();
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["error"], "temporarily_unavailable", "{v}");
        }
    }
    assert!(statuses[..30].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    assert!(retry_after.is_some(), "429 says when to come back");
}

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn poll(app: &TestApp, device_code: &str) -> (u16, Value) {
    poll_at(&app.client, &app.url("/oauth/token"), device_code).await
}

async fn poll_at(http: &reqwest::Client, endpoint: &str, device_code: &str) -> (u16, Value) {
    let res = http
        .post(endpoint)
        .form(&[
            ("grant_type", GRANT),
            ("client_id", "tessera-cli"),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The confirmation page for `user_code`, in a signed-in browser.
async fn confirmation(b: &mut Browser, app: &TestApp, html: &str, user_code: &str) -> String {
    let res = enter(b, app, &csrf_of(html), user_code).await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_answering_one_code_at_once_one_wins_and_one_device_gets_tokens() {
    let app = gateway().await;
    let alice = create_user(&app, "alice@example.com", &[]).await;
    let bob = create_user(&app, "bob@example.com", &[]).await;
    let d: Value = ok(authorize(&app, "tessera-cli", "openid").await, 200).await;
    let (user_code, device_code) = (
        d["user_code"].as_str().unwrap(),
        d["device_code"].as_str().unwrap(),
    );
    let mut a = Browser::new(&app);
    let html = sign_in_at_device(&mut a, &app, "/device", "alice@example.com").await;
    let page_a = confirmation(&mut a, &app, &html, user_code).await;
    let mut b = Browser::new(&app);
    let html = sign_in_at_device(&mut b, &app, "/device", "bob@example.com").await;
    let page_b = confirmation(&mut b, &app, &html, user_code).await;
    let (ra, rb) = tokio::join!(
        answer(&mut a, &app, &page_a, "allow"),
        answer(&mut b, &app, &page_b, "allow")
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "exactly one approval holds");
    let winner = if ra.status() == 200 { &alice } else { &bob };
    // Parallel polls: one gets the tokens, for the person who won.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (http, endpoint) = (app.client.clone(), app.url("/oauth/token"));
        let code = device_code.to_owned();
        set.spawn(async move { poll_at(&http, &endpoint, &code).await });
    }
    let polls: Vec<(u16, Value)> = set.join_all().await;
    let won: Vec<&Value> = polls
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(won.len(), 1, "{polls:?}");
    assert_eq!(
        claims_of(won[0]["access_token"].as_str().unwrap())["sub"],
        winner.as_str()
    );
    assert!(
        polls
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, v)| *s == 400 && v["error"] == "invalid_grant"),
        "{polls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_dies_with_its_session() {
    let app = gateway().await;
    create_user(&app, "carol@example.com", &[]).await;
    let mut b = Browser::new(&app);
    let html = sign_in_at_device(&mut b, &app, "/device", "carol@example.com").await;
    // A first device: its token names the browser's session.
    let first: Value = ok(authorize(&app, "tessera-cli", "openid").await, 200).await;
    let page = confirmation(&mut b, &app, &html, first["user_code"].as_str().unwrap()).await;
    assert_eq!(answer(&mut b, &app, &page, "allow").await.status(), 200);
    let (s, t) = poll(&app, first["device_code"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let sid = claims_of(&token)["sid"].as_str().unwrap().to_owned();
    // A second device approved in the same session, then the person ends
    // that session (they noticed a phishing link) before it polls.
    let second: Value = ok(authorize(&app, "tessera-cli", "openid").await, 200).await;
    let page = confirmation(&mut b, &app, &html, second["user_code"].as_str().unwrap()).await;
    assert_eq!(answer(&mut b, &app, &page, "allow").await.status(), 200);
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/me/sessions/{sid}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let (s, v) = poll(&app, second["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
}

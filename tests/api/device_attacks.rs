//! The device authorization grant under attack (RFC 8628 §5): guessing
//! user codes from many sessions of one account, and filling the store
//! through the endpoint that takes no secret.

use reqwest::Method;
use serde_json::Value;

use crate::device::{authorize, enter, sign_in_at_device};
use crate::helpers::{TestApp, call, ok, spawn_with};
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

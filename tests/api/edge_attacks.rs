//! Attacks on the edge (SPEC §13): leaked-key reports, rate limits and the
//! shipped nginx config. Each test is a hole that was found, kept so it
//! stays closed.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// One entry as a scanner sends it.
fn found(token: &str) -> Value {
    json!({"token": token, "url": "https://paste.example/x", "source": "content"})
}

async fn timed_report(app: &TestApp, bearer: &str, body: &Value) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let res = app
        .authed(Method::POST, "/api/v1/leaks", bearer)
        .await
        .json(body)
        .send()
        .await
        .unwrap();
    let v = ok(res, 200).await;
    let took = started.elapsed();
    let labels = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["label"].as_str().unwrap().to_owned())
        .collect();
    (took, labels)
}

/// A key that leaked publicly stays genuine once revoked (reporting it
/// again says `true_positive`), so anyone holding `leaks:report` and that
/// public string could send it 100 times per report: 100 argon2
/// verifications per request on the pool the exchange shares. One report
/// must cost one verification per distinct string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_repeated_in_a_report_is_verified_once() {
    let app = spawn_app().await;
    let (_, scanner) = app
        .create_app(json!({"name": "scanner", "permissions": ["leaks:report"]}))
        .await;
    let scanner = app.token_for(None, &scanner).await;
    let (_, leaked) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let (_, first) = timed_report(&app, &scanner, &json!([found(&leaked)])).await;
    assert_eq!(first, ["true_positive"]);
    // One verification of the (now revoked) key, the slowest of three.
    let mut one = Duration::ZERO;
    for _ in 0..3 {
        let (took, labels) = timed_report(&app, &scanner, &json!([found(&leaked)])).await;
        assert_eq!(labels, ["true_positive"]);
        one = one.max(took);
    }
    let many: Vec<Value> = (0..100).map(|_| found(&leaked)).collect();
    let (took, labels) = timed_report(&app, &scanner, &Value::Array(many)).await;
    assert_eq!(labels.len(), 100);
    assert!(labels.iter().all(|l| l == "true_positive"), "{labels:?}");
    assert!(
        took < one * 10,
        "100 copies of one key took {took:?}, one took {one:?}: each copy was verified"
    );
}

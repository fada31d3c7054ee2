//! Attacks on the edge (docs/api.md, "At the edge"): leaked-key reports, rate limits and the
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

/// A gateway may read the client's address from `Forwarded` instead of
/// `X-Forwarded-For` (`forwarded_header`). The shipped nginx config set
/// only `X-Forwarded-For` on its question to the gateway, and passed the
/// client's own `Forwarded` header along: a client outside an
/// application's `allowedIps` claimed an address inside it and passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_forwarded_header_never_reaches_the_gateway() {
    use crate::edge_nginx::{Edge, client_from, cluster_key, parts};
    use tessera::domain::cidr::ForwardedHeader;
    let edge = Edge::start_tweaked(1, |s| s.forwarded_header = ForwardedHeader::Forwarded).await;
    // 127.0.0.1 is nginx's address, which cluster_api (trusting no proxy)
    // checks the token's CIDRs against.
    let (_, key) = cluster_key(
        edge.gw(),
        json!({"allowedIps": ["127.0.0.3/32", "127.0.0.1/32"]}),
    )
    .await;
    let get_from = async |last: u8, spoof: Option<&str>| {
        let mut req = client_from(last)
            .get(edge.workloads("c1"))
            .header("X-Api-Key", &key);
        if let Some(s) = spoof {
            req = req.header("Forwarded", s);
        }
        parts(req.send().await.unwrap()).await
    };
    for spoof in [
        "for=127.0.0.3",
        "for=\"127.0.0.3\";proto=https",
        "for=127.0.0.3, for=127.0.0.3",
    ] {
        let (status, _, body) = get_from(2, Some(spoof)).await;
        assert_eq!(status, 403, "{spoof}: {body}");
        assert_eq!(body["error"]["code"], "ip_not_allowed", "{body}");
    }
    // nginx tells the gateway the address it saw, in the header it reads.
    let (status, _, body) = get_from(3, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get_from(3, Some("for=127.0.0.2")).await;
    assert_eq!(status, 200, "{body}");
}

/// `/oauth/revoke` lets one client add 60 revocation entries a minute,
/// which keeps it from growing the feed every verifier follows. A
/// reporter could mint tokens of its own and report them as leaked, 100
/// new entries per request, without end. The report takes from the same
/// allowance: past it, a 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_tokens_take_from_the_reporters_revocation_allowance() {
    let app = spawn_app().await;
    let (scanner, secret) = app
        .create_app(json!({"name": "scanner", "permissions": ["leaks:report"]}))
        .await;
    let scanner_id = scanner["id"].as_str().unwrap().to_owned();
    // The reporter keeps one token to report with and mints 70 others.
    let bearer = app.token_for(None, &secret).await;
    let mut minted = Vec::new();
    for _ in 0..70 {
        minted.push(app.token_for(None, &secret).await);
    }
    let body: Vec<Value> = minted.iter().map(|t| found(t)).collect();
    // Two reports of 35 (the request body bound holds fewer than 100).
    let (_, labels) = timed_report(&app, &bearer, &Value::Array(body[..35].to_vec())).await;
    assert!(labels.iter().all(|l| l == "true_positive"), "{labels:?}");
    let res = app
        .authed(Method::POST, "/api/v1/leaks", &bearer)
        .await
        .json(&body[35..])
        .send()
        .await
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, code, _) = error_code(res).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "rate_limited"),
        "70 new revocations in a minute"
    );
    assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)));
    // Reported again, the ones already revoked add nothing and stay
    // genuine; only the allowance's end stops the rest.
    let (_, labels) = timed_report(&app, &bearer, &Value::Array(body[..35].to_vec())).await;
    assert!(labels.iter().all(|l| l == "true_positive"), "{labels:?}");
    // The reporter's own key was never at stake.
    assert_eq!(app.exchange(Some(&scanner_id), &secret).await.status(), 200);
}

/// The key format is public (scanners check the checksum), so one key that
/// leaked yields any number of checksum-valid variants carrying its id and
/// its hint: each passed the hint check and cost an argon2 run, 100 per
/// report. One report verifies each (application, hint) pair once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_of_a_leaked_key_placed_first_do_not_keep_it_alive() {
    let app = spawn_app().await;
    let (_, scanner) = app
        .create_app(json!({"name": "scanner", "permissions": ["leaks:report"]}))
        .await;
    let scanner = app.token_for(None, &scanner).await;
    let (_, leaked) = app
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    // The body without its checksum; its last characters varied (the hint
    // is at the front of the random part), then sealed again: each variant
    // carries the real key's id and hint.
    let body = &leaked[..leaked.len() - 6];
    let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
    let variants: Vec<String> = (0..12)
        .map(|i| {
            let mut v = body[..body.len() - 2].to_owned();
            v.push(alphabet[i % alphabet.len()]);
            v.push(alphabet[i / alphabet.len()]);
            tessera::crypto::secret::seal(&v)
        })
        .filter(|v| *v != leaked)
        .collect();
    let mut entries: Vec<Value> = variants[..8].iter().map(|v| found(v)).collect();
    entries.push(found(&leaked));
    entries.extend(variants[8..].iter().map(|v| found(v)));
    let (_, labels) = timed_report(&app, &scanner, &Value::Array(entries)).await;
    let genuine: Vec<usize> = labels
        .iter()
        .enumerate()
        .filter(|(_, l)| *l == "true_positive")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(genuine, [8], "{labels:?}");
    assert_eq!(
        app.exchange(None, &leaked).await.status(),
        401,
        "the key still works"
    );
}
